//! The production backend: fjall, one keyspace per space.

use std::ops::Bound;
use std::path::{Path, PathBuf};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, KvSeparationOptions, PersistMode};

use super::{Backend, BatchItem, KvIter, StoreError, Value};
use crate::keys::Space;

/// Tuning of the fjall store. Memory is bounded by the block cache plus
/// the memtables (each keyspace's is flushed once it reaches its size):
/// with the defaults at most 32 + 32 + 16 + 2 + 8 x 8 = 146 MiB.
#[derive(Clone, Debug)]
pub struct FjallOptions {
    /// Block cache size in bytes (shared by all keyspaces).
    pub cache_bytes: u64,
    /// Chunks at least this large are stored in blob files (key-value
    /// separation) so compactions do not rewrite file contents.
    pub blob_threshold: u32,
    /// Memtable size of the chunk keyspace.
    pub chunk_memtable_bytes: u64,
    /// Memtable size of the Merkle keyspace (rewritten on every commit).
    pub merkle_memtable_bytes: u64,
    /// Memtable size of the extent keyspace. Small: every overwrite
    /// replaces extent keys, and a range scan over the memtable steps over
    /// each replaced version (slow pointer chasing), while flushed tables
    /// are cheap to skip through and compaction drops the dead versions.
    pub extent_memtable_bytes: u64,
    /// Memtable size of every other keyspace.
    pub memtable_bytes: u64,
    /// fjall's journal is bounded to this size: past it, the oldest
    /// memtables are flushed so their journal files can go. Opening the
    /// store replays what the journal holds, so this bounds the open time
    /// (`hsfs-bench scale`'s mount of 1M files: 1.66 to 1.94 s with
    /// 256 MiB, 0.42 s with 64 MiB; docs/PERFORMANCE.md).
    pub journal_bytes: u64,
}

impl Default for FjallOptions {
    fn default() -> Self {
        FjallOptions {
            cache_bytes: 32 << 20,
            blob_threshold: 4096,
            chunk_memtable_bytes: 32 << 20,
            merkle_memtable_bytes: 16 << 20,
            extent_memtable_bytes: 2 << 20,
            memtable_bytes: 8 << 20,
            journal_bytes: 64 << 20,
        }
    }
}

fn fjall_err(e: fjall::Error) -> StoreError {
    match e {
        fjall::Error::Poisoned => StoreError::Poisoned,
        e => StoreError::Fjall(e),
    }
}

/// fjall-backed [`Backend`].
pub struct FjallBackend {
    db: Database,
    spaces: Vec<Keyspace>,
    path: PathBuf,
}

impl FjallBackend {
    /// Opens (or creates) the store in `path`. Fails with
    /// `fjall::Error::Locked` if another process has it open.
    pub fn open(path: &Path, opts: &FjallOptions) -> Result<FjallBackend, StoreError> {
        let db = Database::builder(path)
            .cache_size(opts.cache_bytes)
            .max_journaling_size(opts.journal_bytes)
            .open()?;
        let mut spaces = Vec::with_capacity(Space::ALL.len());
        for s in Space::ALL {
            let threshold = opts.blob_threshold;
            let memtable = match s {
                Space::Chunks => opts.chunk_memtable_bytes,
                Space::Merkle => opts.merkle_memtable_bytes,
                Space::Extents => opts.extent_memtable_bytes,
                _ => opts.memtable_bytes,
            };
            let ks = db.keyspace(s.name(), move || {
                let o = KeyspaceCreateOptions::default().max_memtable_size(memtable);
                if s == Space::Chunks {
                    o.with_kv_separation(Some(
                        KvSeparationOptions::default().separation_threshold(threshold),
                    ))
                } else {
                    o
                }
            })?;
            spaces.push(ks);
        }
        Ok(FjallBackend {
            db,
            spaces,
            path: path.to_path_buf(),
        })
    }

    fn ks(&self, s: Space) -> &Keyspace {
        &self.spaces[s.idx()]
    }
}

impl Backend for FjallBackend {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Value>, StoreError> {
        Ok(self.ks(space).get(key)?)
    }

    fn contains(&self, space: Space, key: &[u8]) -> Result<bool, StoreError> {
        Ok(self.ks(space).contains_key(key)?)
    }

    fn range(&self, space: Space, lo: Bound<Vec<u8>>, hi: Bound<Vec<u8>>) -> KvIter<'_> {
        let it = self.ks(space).range::<Vec<u8>, _>((lo, hi));
        Box::new(it.map(|g| g.into_inner().map_err(StoreError::from)))
    }

    fn commit(&self, items: Vec<BatchItem>, sync: bool) -> Result<(), StoreError> {
        let mut batch = self.db.batch();
        for it in items {
            let ks = self.ks(it.space);
            match it.value {
                Some(v) => batch.insert(ks, it.key, v),
                None => batch.remove(ks, it.key),
            }
        }
        // IMPORTANT: with SyncData the journal is fdatasync'ed before the
        // batch becomes visible to readers; acks are sent only after this
        // returns. Without it the batch still leaves fjall's userspace
        // buffer (Buffer), so a killed process loses nothing it applied.
        // fjall poisons the database if the write or sync fails.
        let mode = if sync {
            PersistMode::SyncData
        } else {
            PersistMode::Buffer
        };
        batch.durability(Some(mode)).commit().map_err(fjall_err)
    }

    fn sync(&self) -> Result<(), StoreError> {
        // IMPORTANT: the final sync of a clean shutdown (replicas write
        // without syncing; their batches must reach the disk too).
        self.db.persist(PersistMode::SyncData).map_err(fjall_err)
    }

    fn free_space(&self) -> Option<u64> {
        crate::util::free_space(&self.path).ok()
    }

    fn disk_space(&self) -> Option<u64> {
        self.db.disk_space().ok()
    }
}
