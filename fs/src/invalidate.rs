//! Kernel cache invalidation for changes this mount did not make (entries
//! replayed from the leader's log on a worker).
//!
//! The engine calls the listener after each applied batch; the listener
//! turns the batch into notices and queues them for a dedicated thread, so
//! apply never blocks on the kernel. That matters: an entry notice takes the
//! parent directory's lock in the kernel, which a local request waiting for
//! its own commit may hold. The thread sends notices in apply order; only
//! inodes the kernel holds are named.
//!
//! Changes made through this mount need no notice: the kernel updated its
//! caches from the replies (data ranges of our own writes are handled by
//! [`Core::written`]).

use std::collections::BTreeSet;
use std::sync::Arc;

use hsfs_engine::keys::{self, Space};
use hsfs_engine::op::{Op, OpResult};
use hsfs_engine::{Applied, ClientId, Ino, Listener};

use crate::core::Core;

/// One kernel notice.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Notice {
    /// Attributes and pages `[offset, offset + len)` of an inode
    /// (`offset < 0`: attributes only; `len <= 0`: to the end).
    Inode(Ino, i64, i64),
    /// A directory entry.
    Entry(Ino, Vec<u8>),
}

/// The notices one applied op needs.
#[must_use]
pub fn notices(a: &Applied) -> Vec<Notice> {
    let mut out = BTreeSet::new();
    for (space, key) in &a.changes {
        match space {
            Space::Dirents => {
                if let Some(parent) = keys::be_u64(key) {
                    out.insert(Notice::Entry(parent, key[8..].to_vec()));
                    // The directory's listing and attributes changed too.
                    out.insert(Notice::Inode(parent, 0, 0));
                }
            }
            Space::Nodes => {
                if let Some(ino) = keys::be_u64(key) {
                    // A rename changes the moved node's parent: a moved
                    // directory's cached listing (its "..") goes too.
                    let off = if matches!(a.entry.op, Op::Rename { .. }) {
                        0
                    } else {
                        -1
                    };
                    out.insert(Notice::Inode(ino, off, 0));
                }
            }
            _ => {}
        }
    }
    match (&a.entry.op, a.result) {
        (Op::Write { ino, .. }, OpResult::Written { offset, len }) => {
            out.insert(Notice::Inode(*ino, offset as i64, len as i64));
        }
        (Op::SetAttr { ino, attr }, _) if attr.size.is_some() => {
            out.insert(Notice::Inode(*ino, 0, 0));
        }
        _ => {}
    }
    out.into_iter().collect()
}

/// A listener that queues notices for changes made by other clients than
/// `own`, sent to the kernel by a dedicated thread.
pub fn remote_invalidations(core: &Arc<Core>, own: ClientId) -> Listener {
    let (tx, rx) = crossbeam_channel::unbounded::<Vec<Notice>>();
    // A weak reference: the engine owns this listener, and the core owns
    // the engine; a strong one would keep both alive forever.
    let weak = Arc::downgrade(core);
    std::thread::Builder::new()
        .name("hsfs-invalidate".into())
        .spawn(move || {
            for batch in rx {
                let Some(c) = weak.upgrade() else { return };
                for n in batch {
                    c.invalidate(&n);
                }
            }
        })
        .expect("spawn invalidation thread");
    Arc::new(move |applied: &[Applied]| {
        let batch: Vec<Notice> = applied
            .iter()
            .filter(|a| a.entry.intent.client != own)
            .flat_map(notices)
            .collect();
        if !batch.is_empty() {
            let _ = tx.send(batch);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hsfs_engine::IntentId;

    #[test]
    fn rename_names_both_entries_and_touched_inodes() {
        let a = Applied {
            entry: std::sync::Arc::new(hsfs_engine::op::LogEntry {
                index: 9,
                op_id: [0; 16],
                committed_at: 1,
                intent: IntentId {
                    client: ClientId([1; 16]),
                    seq: 1,
                },
                origin: hsfs_engine::op::Origin::default(),
                op: Op::Rename {
                    parent: 1,
                    name: b"a".to_vec(),
                    new_parent: 5,
                    new_name: b"b".to_vec(),
                    mode: hsfs_engine::op::RenameMode::Replace,
                    keep_orphan: false,
                },
                hazard: None,
                root: [0; 32],
            }),
            result: OpResult::Done,
            changes: vec![
                (Space::Nodes, keys::ino_key(1).to_vec()),
                (Space::Nodes, keys::ino_key(7).to_vec()),
                (Space::Dirents, keys::dirent_key(1, b"a")),
                (Space::Dirents, keys::dirent_key(5, b"b")),
            ],
        };
        let n = notices(&a);
        assert!(n.contains(&Notice::Entry(1, b"a".to_vec())));
        assert!(n.contains(&Notice::Entry(5, b"b".to_vec())));
        // The moved node loses its pages too: a directory's cached listing
        // holds its old "..".
        assert!(n.contains(&Notice::Inode(7, 0, 0)));
        assert!(n.contains(&Notice::Inode(5, 0, 0)));
    }
}
