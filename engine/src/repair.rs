//! Rebuilding derived data from the records.
//!
//! The Merkle branches (and the delta records that stand in for branches
//! held in memory, FORMAT.md "Held branches and delta records") are derived
//! from the hashed records: if they are damaged, opening the store fails
//! with "the merkle deltas give root X but the store's root is Y", or
//! `hsfs-fsck` reports stale or missing branches. [`rebuild_merkle`]
//! recomputes them from the records, and writes them only if the records
//! give the root the store and its log committed: a store whose records
//! themselves differ is refused, unchanged, since new branches cannot make
//! it agree with the log again.

use std::collections::BTreeSet;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use hsfs_merkle::{branches_from_sorted, root_from_sorted};
use serde::Serialize;

use crate::engine::{Engine, EngineError, EngineOptions, load_meta, same_workspace};
use crate::keys::{self, Space, meta};
use crate::op::LogEntry;
use crate::statedir::{StateDir, StateDirError};
use crate::store::fjall_backend::FjallBackend;
use crate::store::{Backend, BatchItem, StoreError};
use crate::types::Hash;

/// Items per store batch while the branches are rewritten.
const BATCH: usize = 4096;

/// Why a rebuild did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// The records do not give the root the store or its log committed:
    /// the damage is not (only) in the derived data. Nothing was written.
    #[error("{0}")]
    Refused(String),
    /// The store could not be opened, read or written.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<StoreError> for RepairError {
    fn from(e: StoreError) -> Self {
        RepairError::Engine(e.into())
    }
}

impl From<StateDirError> for RepairError {
    fn from(e: StateDirError) -> Self {
        RepairError::Engine(e.into())
    }
}

/// What [`rebuild_merkle`] did.
#[derive(Clone, Debug, Serialize)]
pub struct Rebuilt {
    /// The root of the records, hex: the store's root, unchanged.
    pub root: String,
    /// Hashed records read.
    pub records: u64,
    /// Branches of the rebuilt trie, all written.
    pub branches: u64,
    /// Stored branches that are not in the rebuilt trie, deleted.
    pub stale_branches: u64,
    /// Delta records deleted (the written branches include them).
    pub deltas: u64,
}

/// Rebuilds the Merkle branches of the store in the state directory at
/// `path`, which must not be in use (its lock is taken, and kept), then
/// opens the engine on the result, with its commit journal: the journal
/// is left alone until then, and the open replays what it holds past the
/// store on top of the rebuilt branches.
pub fn rebuild_merkle_dir(
    path: &Path,
    opts: &EngineOptions,
) -> Result<(Rebuilt, Engine), RepairError> {
    let dir = StateDir::open(path)?;
    let backend = Arc::new(FjallBackend::open(&dir.db_path(), &opts.fjall)?);
    if let Some((ws, _)) = load_meta(&*backend)? {
        same_workspace(&dir, ws)?;
    }
    let rebuilt = rebuild_merkle(&*backend)?;
    let engine = Engine::open_locked(dir, backend)?;
    Ok((rebuilt, engine))
}

/// Recomputes the Merkle trie from the hashed records of `b` and, if its
/// root is the store's root (and the root of the log entry the store last
/// applied, when the log holds it), replaces the stored branches and delta
/// records with it, synced. Otherwise returns [`RepairError::Refused`]
/// having written nothing. `b` must not be in use by an [`Engine`] (whose
/// held branches would go stale): open the engine afterwards.
pub fn rebuild_merkle(b: &dyn Backend) -> Result<Rebuilt, RepairError> {
    rebuild_merkle_in_batches(b, BATCH)
}

/// [`rebuild_merkle`] writing the branches `batch` items at a time (tests
/// use small batches to cut a rebuild short between two of them).
pub fn rebuild_merkle_in_batches(b: &dyn Backend, batch: usize) -> Result<Rebuilt, RepairError> {
    let (_, meta) = load_meta(b)?.ok_or(EngineError::Uninitialized)?;
    let mut items = Vec::new();
    for space in Space::ALL.into_iter().filter(|s| s.hashed()) {
        for r in b.range(space, Bound::Unbounded, Bound::Unbounded) {
            let (k, v) = r?;
            items.push((
                keys::record_key_hash(space, &k),
                keys::record_value_hash(&v),
            ));
        }
    }
    items.sort_unstable();
    let root = root_from_sorted(&items);
    if root != meta.root {
        return Err(RepairError::Refused(format!(
            "the records give root {} but the store's root is {}: the records \
             themselves differ from what was committed, which new branches cannot mend",
            hex::encode(root),
            hex::encode(meta.root)
        )));
    }
    if let Some(logged) = logged_root(b, meta.applied)?
        && logged != root
    {
        return Err(RepairError::Refused(format!(
            "the records and the store give root {} but log entry {} gives {}",
            hex::encode(root),
            meta.applied,
            hex::encode(logged)
        )));
    }
    let branches = branches_from_sorted(&items);
    let records = items.len() as u64;
    drop(items);

    // Stored branches that the new trie does not have are deleted; the
    // others are overwritten. A key is never both deleted and written in
    // one batch.
    let fresh: BTreeSet<Vec<u8>> = branches.iter().map(|(p, _)| p.to_key()).collect();
    let mut writes = Vec::new();
    let mut stale = 0;
    for r in b.range(Space::Merkle, Bound::Unbounded, Bound::Unbounded) {
        let (k, _) = r?;
        if !fresh.contains(k.as_ref()) {
            writes.push(item(Space::Merkle, k.to_vec(), None));
            stale += 1;
        }
    }
    drop(fresh);
    let count = branches.len() as u64;
    for (path, branch) in branches {
        writes.push(item(Space::Merkle, path.to_key(), Some(branch.encode())));
    }
    let mut last = vec![item(Space::Meta, meta::MERKLE_REBUILD.to_vec(), None)];
    for r in b.range(Space::MerkleDelta, Bound::Unbounded, Bound::Unbounded) {
        let (k, _) = r?;
        last.push(item(Space::MerkleDelta, k.to_vec(), None));
    }
    let deltas = last.len() as u64 - 1;
    // IMPORTANT: the marker is durable before the first branch is written
    // and goes, with the delta records, in the last (synced) batch: the
    // engine refuses to open a store that has it, so a rebuild cut short
    // (whose branches are part old, part new) is never used, only run
    // again.
    b.commit(
        vec![item(
            Space::Meta,
            meta::MERKLE_REBUILD.to_vec(),
            Some(vec![1]),
        )],
        true,
    )?;
    let mut rest = writes.into_iter().peekable();
    while rest.peek().is_some() {
        b.commit(rest.by_ref().take(batch.max(1)).collect(), false)?;
    }
    b.commit(last, true)?;
    Ok(Rebuilt {
        root: hex::encode(root),
        records,
        branches: count,
        stale_branches: stale,
        deltas,
    })
}

fn item(space: Space, key: Vec<u8>, value: Option<Vec<u8>>) -> BatchItem {
    BatchItem {
        space,
        key,
        value: value.map(Into::into),
    }
}

/// The root of log entry `index`, if the log holds it.
fn logged_root(b: &dyn Backend, index: u64) -> Result<Option<Hash>, RepairError> {
    let Some(v) = b.get(Space::Log, &index.to_be_bytes())? else {
        return Ok(None);
    };
    let e = LogEntry::decode(&v).map_err(|e| {
        RepairError::Refused(format!(
            "log entry {index}, whose root the rebuild must match, is unreadable: {e}"
        ))
    })?;
    Ok(Some(e.root))
}
