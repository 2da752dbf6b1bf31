//! The storage seam: the engine talks to an ordered key-value store with
//! atomic multi-space batches through [`Backend`].
//!
//! * [`fjall_backend::FjallBackend`] is the real store (one fjall keyspace
//!   per [`Space`]).
//! * [`mem::MemBackend`] keeps "live" and "durable" images apart so tests can
//!   simulate a crash at any point, and injects write failures.

pub mod fjall_backend;
pub mod mem;

use std::ops::Bound;

use crate::keys::Space;
use crate::types::Hash;

/// A stored value (cheap to clone).
pub type Value = fjall::Slice;

/// A key-value pair from a scan.
pub type Kv = (Value, Value);

/// Iterator over a key range, in key order.
pub type KvIter<'a> = Box<dyn Iterator<Item = Result<Kv, StoreError>> + Send + 'a>;

/// A storage failure. Any of these aborts the batch being built; a failed
/// durable write poisons the store (see [`Backend::commit`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// fjall reported an error.
    #[error("fjall: {0}")]
    Fjall(#[from] fjall::Error),
    /// Plain I/O.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A fault injected by a test.
    #[error("injected fault: {0}")]
    Injected(&'static str),
    /// A previous durable write failed; the store refuses further writes.
    #[error("store poisoned by an earlier failed write; restart to recover")]
    Poisoned,
}

/// One write of a batch: `None` deletes.
#[derive(Clone, Debug)]
pub struct BatchItem {
    /// Partition.
    pub space: Space,
    /// Key.
    pub key: Vec<u8>,
    /// New value, or `None` to delete.
    pub value: Option<Value>,
}

impl BatchItem {
    /// Stores a chunk under its hash.
    #[must_use]
    pub fn chunk(hash: &Hash, data: Value) -> BatchItem {
        BatchItem {
            space: Space::Chunks,
            key: hash.to_vec(),
            value: Some(data),
        }
    }
}

/// An ordered key-value store with atomic batches.
pub trait Backend: Send + Sync {
    /// Point read.
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Value>, StoreError>;

    /// Whether a key exists (may be cheaper than `get` for large values).
    fn contains(&self, space: Space, key: &[u8]) -> Result<bool, StoreError> {
        Ok(self.get(space, key)?.is_some())
    }

    /// Scan `[lo, hi)`-style bounds in key order.
    fn range(&self, space: Space, lo: Bound<Vec<u8>>, hi: Bound<Vec<u8>>) -> KvIter<'_>;

    /// Applies all items atomically: after a crash either every item or none
    /// is visible. Without `sync` the batch reaches the OS (it survives the
    /// process dying, not a power cut); with `sync`, returns only once the
    /// batch (and every batch before it) is on stable storage. A failure
    /// poisons the store.
    fn commit(&self, items: Vec<BatchItem>, sync: bool) -> Result<(), StoreError>;

    /// Stores chunks whose bytes are already on stable storage in a synced
    /// commit-journal record ([`crate::wal`]). The store may keep them in
    /// memory, readable like any other chunk, until the next
    /// [`Backend::sync`], which must make them durable: until then the
    /// journal holds their only durable copy, and a process that dies
    /// loses them from the store (recovery restores them from the
    /// journal). The default writes them as an unsynced batch.
    fn put_journaled_chunks(&self, chunks: Vec<(Hash, Value)>) -> Result<(), StoreError> {
        let items = chunks.into_iter().map(|(h, v)| BatchItem::chunk(&h, v));
        self.commit(items.collect(), false)
    }

    /// Makes every committed batch, and every chunk stored by
    /// [`Backend::put_journaled_chunks`], durable.
    fn sync(&self) -> Result<(), StoreError>;

    /// Bytes available to the store on its filesystem, if known, less what
    /// it has yet to write (chunks held until the next sync).
    fn free_space(&self) -> Option<u64>;

    /// Bytes the store occupies on disk, if known.
    fn disk_space(&self) -> Option<u64>;
}

/// Scans every key starting with `prefix`.
pub fn scan_prefix<'a>(b: &'a dyn Backend, space: Space, prefix: &[u8]) -> KvIter<'a> {
    let hi = match crate::keys::prefix_end(prefix) {
        Some(e) => Bound::Excluded(e),
        None => Bound::Unbounded,
    };
    b.range(space, Bound::Included(prefix.to_vec()), hi)
}
