//! The one deterministic state transition used by the leader and every
//! replica: `apply(state, op, committed_at)`.
//!
//! Determinism: the result depends only on the state in the transaction, the
//! op and `committed_at`. No clock, randomness, hash-map iteration or thread
//! timing is consulted; dirty nodes are flushed in inode order.
//!
//! Atomicity: apply may fail half way (validation is spread through the
//! op); the caller rolls the op back with [`Txn::rollback_op`], so a failed
//! op changes nothing.

mod attr;
mod data;
mod namespace;

use std::collections::BTreeMap;

use crate::errno::Errno;
use crate::keys::{self, Space};
use crate::op::{Op, OpResult};
use crate::records::{self, RecordError};
use crate::store::StoreError;
use crate::txn::Txn;
use crate::types::{FileKind, Ino, Nanos, Node, NodeId, ROOT_INO, WorkspaceId};

pub use data::extents_in;

/// Size of an empty directory, and the size each entry adds (tmpfs's
/// convention, so `st_size` of a directory is deterministic).
pub const DIR_BASE_SIZE: u64 = 40;
/// See [`DIR_BASE_SIZE`].
pub const DIR_ENTRY_SIZE: u64 = 20;

/// Why an op did not apply.
#[derive(Debug, thiserror::Error)]
pub enum Fail {
    /// The op is invalid in this state: the caller gets this errno and the
    /// state is unchanged.
    #[error("{0}")]
    Errno(Errno),
    /// The store failed: the whole batch is abandoned.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored record is corrupt: the whole batch is abandoned.
    #[error("corrupt state: {0}")]
    Corrupt(String),
}

impl From<Errno> for Fail {
    fn from(e: Errno) -> Self {
        Fail::Errno(e)
    }
}

impl From<RecordError> for Fail {
    fn from(e: RecordError) -> Self {
        Fail::Corrupt(e.to_string())
    }
}

/// Engine counters that `apply` maintains besides the records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Last applied log index.
    pub applied: u64,
    /// Next inode number to assign.
    pub next_ino: Ino,
    /// `committed_at` of the last applied entry.
    pub last_time: Nanos,
    /// Merkle root after the last applied entry.
    pub root: crate::types::Hash,
    /// Live nodes (orphans included).
    pub nodes: u64,
    /// Sum of regular file sizes.
    pub bytes: u64,
}

impl Meta {
    /// Counters of a store with nothing applied.
    #[must_use]
    pub fn empty() -> Meta {
        Meta {
            applied: 0,
            next_ino: ROOT_INO,
            last_time: 0,
            root: hsfs_merkle::empty_root(),
            nodes: 0,
            bytes: 0,
        }
    }
}

/// The view `apply` works on: the transaction plus a cache of the nodes the
/// op touched.
pub struct State<'t, 'b> {
    txn: &'t mut Txn<'b>,
    ws: WorkspaceId,
    meta: &'t mut Meta,
    now: Nanos,
    nodes: BTreeMap<Ino, Option<Node>>,
}

impl<'t, 'b> State<'t, 'b> {
    fn load(&mut self, ino: Ino) -> Result<Option<Node>, Fail> {
        if let Some(n) = self.nodes.get(&ino) {
            return Ok(n.clone());
        }
        match self.txn.get(Space::Nodes, &keys::ino_key(ino))? {
            Some(v) => Ok(Some(records::decode_node(ino, &v)?)),
            None => Ok(None),
        }
    }

    /// The node, or ENOENT.
    fn get(&mut self, ino: Ino) -> Result<Node, Fail> {
        self.load(ino)?.ok_or(Fail::Errno(Errno::ENOENT))
    }

    /// The directory, or ENOENT / ENOTDIR.
    fn dir(&mut self, ino: Ino) -> Result<Node, Fail> {
        let n = self.get(ino)?;
        if n.kind != FileKind::Dir {
            return Err(Errno::ENOTDIR.into());
        }
        Ok(n)
    }

    fn set(&mut self, n: Node) {
        self.nodes.insert(n.ino, Some(n));
    }

    fn dirent(&self, parent: Ino, name: &[u8]) -> Result<Option<(Ino, FileKind)>, Fail> {
        match self
            .txn
            .get(Space::Dirents, &keys::dirent_key(parent, name))?
        {
            Some(v) => Ok(Some(records::decode_dirent(&v)?)),
            None => Ok(None),
        }
    }

    /// Adds `name -> child` to `parent` (which the caller then `set`s).
    fn link_entry(&mut self, parent: &mut Node, name: &[u8], child: Ino, kind: FileKind) {
        self.txn.put(
            Space::Dirents,
            keys::dirent_key(parent.ino, name),
            records::encode_dirent(child, kind).to_vec(),
        );
        self.txn.put(
            Space::Links,
            keys::link_key(child, parent.ino, name),
            Vec::new(),
        );
        parent.entries += 1;
        parent.size = DIR_BASE_SIZE + DIR_ENTRY_SIZE * parent.entries;
        parent.mtime = self.now;
        parent.ctime = self.now;
    }

    /// Removes `name -> child` from `parent` (which the caller then `set`s).
    fn unlink_entry(&mut self, parent: &mut Node, name: &[u8], child: Ino) {
        self.txn
            .delete(Space::Dirents, keys::dirent_key(parent.ino, name));
        self.txn
            .delete(Space::Links, keys::link_key(child, parent.ino, name));
        parent.entries -= 1;
        parent.size = DIR_BASE_SIZE + DIR_ENTRY_SIZE * parent.entries;
        parent.mtime = self.now;
        parent.ctime = self.now;
    }

    /// A new node with the next inode number.
    fn new_node(&mut self, kind: FileKind, perm: u32, uid: u32, gid: u32) -> Node {
        let ino = self.meta.next_ino;
        self.meta.next_ino += 1;
        self.meta.nodes += 1;
        Node {
            ino,
            id: NodeId::derive(&self.ws, ino),
            kind,
            perm: perm & 0o7777,
            uid,
            gid,
            size: 0,
            nlink: 1,
            atime: self.now,
            mtime: self.now,
            ctime: self.now,
            btime: self.now,
            parent: 0,
            entries: 0,
            target: Vec::new(),
        }
    }

    /// Deletes a node and everything it owns (extents, xattrs, orphan mark).
    fn purge(&mut self, n: &Node) -> Result<(), Fail> {
        let key = keys::ino_key(n.ino);
        for space in [Space::Extents, Space::Xattrs] {
            let doomed: Vec<Vec<u8>> = self
                .txn
                .scan_prefix(space, &key)
                .map(|r| r.map(|(k, _)| k))
                .collect::<Result<_, _>>()?;
            for k in doomed {
                self.txn.delete(space, k);
            }
        }
        self.txn.delete(Space::Orphans, key.to_vec());
        if n.kind == FileKind::File {
            self.meta.bytes -= n.size;
        }
        self.meta.nodes -= 1;
        self.nodes.insert(n.ino, None);
        Ok(())
    }

    /// Drops one link of a non-directory; at zero it becomes an orphan (if
    /// the leader said it is open) or is purged.
    fn drop_link(&mut self, mut n: Node, keep_orphan: bool) -> Result<(), Fail> {
        n.nlink -= 1;
        n.ctime = self.now;
        if n.nlink > 0 {
            self.set(n);
        } else if keep_orphan {
            self.txn
                .put(Space::Orphans, keys::ino_key(n.ino).to_vec(), Vec::new());
            self.set(n);
        } else {
            self.purge(&n)?;
        }
        Ok(())
    }

    /// Writes every dirty node, in inode order.
    fn flush(&mut self) {
        for (ino, n) in std::mem::take(&mut self.nodes) {
            match n {
                Some(n) => self.txn.put(
                    Space::Nodes,
                    keys::ino_key(ino).to_vec(),
                    records::encode_node(&n),
                ),
                None => self.txn.delete(Space::Nodes, keys::ino_key(ino).to_vec()),
            }
        }
    }
}

/// Applies `op` at time `now`. On `Err` the caller must roll the op back.
pub fn apply(
    txn: &mut Txn<'_>,
    ws: WorkspaceId,
    meta: &mut Meta,
    op: &Op,
    now: Nanos,
) -> Result<OpResult, Fail> {
    let mut st = State {
        txn,
        ws,
        meta,
        now,
        nodes: BTreeMap::new(),
    };
    let r = match op {
        Op::Genesis { perm, uid, gid } => namespace::genesis(&mut st, *perm, *uid, *gid),
        Op::Create {
            parent,
            name,
            kind,
            perm,
            uid,
            gid,
            excl,
            truncate,
        } => namespace::create(
            &mut st,
            *parent,
            name,
            *kind,
            (*perm, *uid, *gid),
            *excl,
            *truncate,
        ),
        Op::Mkdir {
            parent,
            name,
            perm,
            uid,
            gid,
        } => namespace::create(
            &mut st,
            *parent,
            name,
            FileKind::Dir,
            (*perm, *uid, *gid),
            true,
            false,
        ),
        Op::Symlink {
            parent,
            name,
            target,
            uid,
            gid,
        } => namespace::symlink(&mut st, *parent, name, target, *uid, *gid),
        Op::Link { ino, parent, name } => namespace::link(&mut st, *ino, *parent, name),
        Op::Unlink {
            parent,
            name,
            keep_orphan,
        } => namespace::unlink(&mut st, *parent, name, *keep_orphan),
        Op::Rmdir { parent, name } => namespace::rmdir(&mut st, *parent, name),
        Op::Rename {
            parent,
            name,
            new_parent,
            new_name,
            mode,
            keep_orphan,
        } => namespace::rename(
            &mut st,
            (*parent, name),
            (*new_parent, new_name),
            *mode,
            *keep_orphan,
        ),
        Op::Write { ino, at, chunks } => data::write(&mut st, *ino, *at, chunks),
        Op::SetAttr { ino, attr } => attr::setattr(&mut st, *ino, attr),
        Op::SetXattr {
            ino,
            name,
            value,
            mode,
        } => attr::setxattr(&mut st, *ino, name, value, *mode),
        Op::RemoveXattr { ino, name } => attr::removexattr(&mut st, *ino, name),
        Op::Fsync { ino } => st.get(*ino).map(|_| OpResult::Done),
        Op::Reclaim { ino } => namespace::reclaim(&mut st, *ino),
    }?;
    st.flush();
    Ok(r)
}
