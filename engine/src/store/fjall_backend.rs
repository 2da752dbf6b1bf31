//! The production backend: fjall, one keyspace per space.

use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use fjall::compaction::Leveled;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, KvSeparationOptions, PersistMode};
use parking_lot::{Mutex, RwLock};

use super::{Backend, BatchItem, KvIter, StoreError, Value};
use crate::keys::Space;
use crate::types::Hash;

/// Tuning of the fjall store. Memory is bounded by the block cache plus
/// the memtables (each keyspace's is flushed once it reaches its size):
/// with the defaults at most 32 + 32 + 16 + 2 + 8 x 8 = 146 MiB, plus the
/// chunks held for the next checkpoint (at most the two commit-journal
/// files' worth, 2 x 32 MiB by default).
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
    /// Tables in level 0 of the chunk keyspace that trigger a compaction
    /// into level 1 (fjall's default, 4, for the other keyspaces). Why:
    /// chunk keys are BLAKE3 hashes, so every new run overlaps all of
    /// level 1 and each compaction rewrites the whole chunk index; every
    /// checkpoint ingests one run. Like the memtable sizes, fjall records
    /// it when the keyspace is created: it applies to new stores.
    pub chunk_l0_threshold: u8,
    /// fjall's journal is bounded to this size: past it, the oldest
    /// memtables are flushed so their journal files can go. Opening the
    /// store replays what the journal holds, so this bounds the open time
    /// (`hsfs-bench scale`'s mount of 1M files took 0.42 s with 64 MiB,
    /// 1.66 to 1.94 s with 256 MiB in earlier invocations; see
    /// docs/PERFORMANCE.md, "Scale, memory and space").
    pub journal_bytes: u64,
}

/// Default of [`FjallOptions::chunk_l0_threshold`]: four times fjall's,
/// and below the 20 level-0 runs at which fjall starts to slow a
/// keyspace's writers (it halts them at 30). The embedded mount's chunks
/// arrive by ingestion, which fjall does not slow; a replica's arrive in
/// write batches, and 14 memtable flushes (32 MiB each) during one
/// compaction would halt them until it ends (with 4: 26). `hsfs-bench
/// scale --only memory` (a 10 GiB file written after 2 GiB of small
/// files, two runs each) wrote at 326-327 MiB/s with 4 and 356-393 with
/// 16; fjall's debug log of those runs (`RUST_LOG=lsm_tree=debug,
/// fjall=debug`, not a bench figure) showed the chunk keyspace's
/// compactions taking 12.5 to 12.8 s, then 4.0 to 4.3 s
/// (docs/PERFORMANCE.md, "Scale, memory and space").
pub const CHUNK_L0_THRESHOLD: u8 = 16;

impl Default for FjallOptions {
    fn default() -> Self {
        FjallOptions {
            cache_bytes: 32 << 20,
            blob_threshold: 4096,
            chunk_memtable_bytes: 32 << 20,
            merkle_memtable_bytes: 16 << 20,
            extent_memtable_bytes: 2 << 20,
            memtable_bytes: 8 << 20,
            chunk_l0_threshold: CHUNK_L0_THRESHOLD,
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
///
/// Chunks a synced commit-journal record already holds
/// ([`Backend::put_journaled_chunks`]) are not written through fjall's
/// journal and memtable (which would write each byte twice more: journal,
/// then blob file at flush). They wait in `journaled`, readable, until
/// [`Backend::sync`] (the journal's checkpoint) ingests them in one sorted
/// run straight into a table and a blob file: each byte reaches the store
/// once.
pub struct FjallBackend {
    db: Database,
    spaces: Vec<Keyspace>,
    path: PathBuf,
    /// Chunks held in memory until the next sync, and their total bytes
    /// (the checkpoint will write them: free space must count them).
    journaled: RwLock<BTreeMap<Hash, Value>>,
    journaled_bytes: AtomicU64,
    /// Serializes syncs (the checkpointer's and a shutdown's).
    syncing: Mutex<()>,
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
            let chunk_l0 = opts.chunk_l0_threshold;
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
                    .compaction_strategy(Arc::new(Leveled::default().with_l0_threshold(chunk_l0)))
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
            journaled: RwLock::new(BTreeMap::new()),
            journaled_bytes: AtomicU64::new(0),
            syncing: Mutex::new(()),
        })
    }

    fn ks(&self, s: Space) -> &Keyspace {
        &self.spaces[s.idx()]
    }

    /// A chunk held in memory, if `key` names one.
    fn journaled(&self, space: Space, key: &[u8]) -> Option<Value> {
        if space != Space::Chunks {
            return None;
        }
        let hash: &Hash = key.try_into().ok()?;
        self.journaled.read().get(hash).cloned()
    }

    /// Writes the chunks held in memory into the chunk keyspace as one
    /// ingested run (sorted, written once, synced by fjall) and returns
    /// their hashes; they stay readable from memory meanwhile.
    fn ingest_journaled(&self) -> Result<Vec<Hash>, StoreError> {
        let chunks: Vec<(Hash, Value)> = self
            .journaled
            .read()
            .iter()
            .map(|(h, v)| (*h, v.clone()))
            .collect();
        if chunks.is_empty() {
            return Ok(Vec::new());
        }
        let ks = self.ks(Space::Chunks);
        let mut blobs = RunBlobs::new(ks.path().join("blobs"));
        let mut run = ks.start_ingestion().map_err(fjall_err)?;
        let mut unpaced = 0;
        for (h, v) in &chunks {
            run.write(h.to_vec(), v.clone()).map_err(fjall_err)?;
            unpaced += v.len();
            if unpaced >= WRITEBACK_STEP {
                unpaced = 0;
                blobs.start_writeback();
            }
        }
        // fjall finishes an ingestion (fsyncing its blob file) while holding
        // the lock every write batch takes, so commits would stall for the
        // whole fsync (16 ms per 32 MiB, timed once on the development VM;
        // 2 ms with the pre-sync; no bench prints it). Syncing
        // the run's blob files first leaves little for that fsync. Finishing
        // also flushes the keyspace's memtable under that lock; it holds
        // only chunks uploaded by workers (a leader's), never the embedded
        // mount's. fjall 3.1 offers no public way to flush it before.
        blobs.sync()?;
        run.finish().map_err(fjall_err)?;
        Ok(chunks.into_iter().map(|(h, _)| h).collect())
    }
}

/// Bytes of chunks an ingestion writes between two writeback starts.
///
/// Why: left to itself, a checkpoint dirties its whole run (up to a journal
/// file's worth, 32 MiB by default) and then syncs it at once; every
/// commit-journal `fdatasync` issued meanwhile queues behind that burst on
/// the disk. Starting writeback every megabyte keeps the disk's queue
/// short: 1 GiB `dd bs=1M conv=fsync` onto a mount went from 488 to 574
/// MB/s on average (by hand, docs/PERFORMANCE.md "Sequential write").
const WRITEBACK_STEP: usize = 1 << 20;

/// The blob files an ingestion run creates, found by listing fjall's blob
/// folder (`<keyspace>/blobs/<id>`) for names that were not there before.
/// A blob file fjall writes meanwhile for something else (a memtable flush
/// of the chunk keyspace, a compaction's relocation) is picked up too: it
/// only gets an early writeback and sync. Pacing and the pre-sync are for
/// speed alone (fjall syncs its blob file when the ingestion finishes), so
/// if the folder cannot be listed or a file opened, or fjall's layout
/// changes, they stop with a warning and the checkpoint goes on.
struct RunBlobs {
    /// The folder; `None` once listing or opening failed.
    dir: Option<PathBuf>,
    before: std::collections::BTreeSet<std::ffi::OsString>,
    open: Vec<(std::ffi::OsString, std::fs::File)>,
    /// Writeback starts since the folder was last listed.
    since_listing: usize,
}

/// Writeback starts between two listings of the blob folder once the run's
/// first file is open: listing it at every step (it holds a file per
/// ingested run until compaction merges them) was 2.6% of the mount's CPU
/// during a sequential write (perf, by hand). A run rarely spans two blob
/// files; a second one is paced from its next listing and synced in full.
const LISTING_EVERY: usize = 8;

impl RunBlobs {
    fn new(dir: PathBuf) -> RunBlobs {
        let mut r = RunBlobs {
            dir: None,
            before: Default::default(),
            open: Vec::new(),
            since_listing: 0,
        };
        match blob_files(&dir) {
            Ok(before) => {
                r.dir = Some(dir);
                r.before = before;
            }
            Err(e) => tracing::warn!(error = %e, "checkpoint writeback not paced"),
        }
        r
    }

    /// Opens the run's files that appeared since the last call.
    fn refresh(&mut self) {
        if let Err(e) = self.try_refresh() {
            tracing::warn!(error = %e, "checkpoint writeback no longer paced");
            self.dir = None;
        }
    }

    fn try_refresh(&mut self) -> Result<(), StoreError> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        for name in blob_files(dir)?.difference(&self.before) {
            if self.open.iter().any(|(n, _)| n == name) {
                continue;
            }
            match std::fs::File::open(dir.join(name)) {
                Ok(f) => self.open.push((name.clone(), f)),
                // Removed meanwhile (a compaction): not ours to sync.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Starts writing what the run has written so far.
    fn start_writeback(&mut self) {
        self.since_listing += 1;
        if self.open.is_empty() || self.since_listing >= LISTING_EVERY {
            self.since_listing = 0;
            self.refresh();
        }
        for (_, f) in &self.open {
            crate::util::start_writeback(f);
        }
    }

    /// Syncs every file of the run. IMPORTANT: a failed sync is an error
    /// (never retried or ignored: the failed pages may be gone).
    fn sync(&mut self) -> Result<(), StoreError> {
        self.refresh();
        for (_, f) in &self.open {
            f.sync_data()?;
        }
        Ok(())
    }
}

/// The names of the files in fjall's blob folder (none if it is absent).
fn blob_files(dir: &Path) -> Result<std::collections::BTreeSet<std::ffi::OsString>, StoreError> {
    match std::fs::read_dir(dir) {
        Ok(rd) => Ok(rd
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
        Err(e) => Err(e.into()),
    }
}

/// Merges the stored chunks with those held in memory, both in key order.
/// A chunk being ingested can be in both: the stored copy is kept.
struct Merge<'a> {
    a: std::iter::Peekable<KvIter<'a>>,
    b: std::iter::Peekable<std::vec::IntoIter<(Value, Value)>>,
}

impl Iterator for Merge<'_> {
    type Item = Result<(Value, Value), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        use std::cmp::Ordering;
        let order = match (self.a.peek(), self.b.peek()) {
            (_, None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            // An error goes out first (the scan stops there).
            (Some(Err(_)), Some(_)) => Ordering::Less,
            (Some(Ok((ka, _))), Some((kb, _))) => ka.cmp(kb),
        };
        match order {
            Ordering::Less => self.a.next(),
            Ordering::Greater => self.b.next().map(Ok),
            Ordering::Equal => {
                self.b.next();
                self.a.next()
            }
        }
    }
}

impl Backend for FjallBackend {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Value>, StoreError> {
        // IMPORTANT: memory first. `sync` removes a chunk from memory only
        // after fjall has it, so a reader that misses it here finds it there.
        if let Some(v) = self.journaled(space, key) {
            return Ok(Some(v));
        }
        Ok(self.ks(space).get(key)?)
    }

    fn contains(&self, space: Space, key: &[u8]) -> Result<bool, StoreError> {
        if self.journaled(space, key).is_some() {
            return Ok(true);
        }
        Ok(self.ks(space).contains_key(key)?)
    }

    fn range(&self, space: Space, lo: Bound<Vec<u8>>, hi: Bound<Vec<u8>>) -> KvIter<'_> {
        let held: Vec<(Value, Value)> = if space == Space::Chunks {
            let bounds = (
                lo.as_ref().map(Vec::as_slice),
                hi.as_ref().map(Vec::as_slice),
            );
            let in_range = |h: &Hash| RangeBounds::<[u8]>::contains(&bounds, h.as_slice());
            self.journaled
                .read()
                .iter()
                .filter(|(h, _)| in_range(h))
                .map(|(h, v)| (Value::from(h.as_slice()), v.clone()))
                .collect()
        } else {
            Vec::new()
        };
        let it = self.ks(space).range::<Vec<u8>, _>((lo, hi));
        let stored: KvIter<'_> = Box::new(it.map(|g| g.into_inner().map_err(StoreError::from)));
        if held.is_empty() {
            return stored;
        }
        Box::new(Merge {
            a: stored.peekable(),
            b: held.into_iter().peekable(),
        })
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

    fn put_journaled_chunks(&self, chunks: Vec<(Hash, Value)>) -> Result<(), StoreError> {
        let mut held = self.journaled.write();
        for (h, v) in chunks {
            let n = v.len() as u64;
            if held.insert(h, v).is_none() {
                self.journaled_bytes.fetch_add(n, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), StoreError> {
        let _one = self.syncing.lock();
        // IMPORTANT: the chunks first, then the journal: once this returns
        // the commit journal may overwrite the records that held them.
        let ingested = self.ingest_journaled()?;
        // IMPORTANT: the final sync of a clean shutdown (replicas write
        // without syncing; their batches must reach the disk too).
        self.db.persist(PersistMode::SyncData).map_err(fjall_err)?;
        let mut held = self.journaled.write();
        for h in &ingested {
            if let Some(v) = held.remove(h) {
                self.journaled_bytes
                    .fetch_sub(v.len() as u64, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    fn free_space(&self) -> Option<u64> {
        // The chunks held in memory are as good as written: the next
        // checkpoint writes them, and it must not be the write that finds
        // the disk full.
        let held = self.journaled_bytes.load(Ordering::Relaxed);
        crate::util::free_space(&self.path)
            .ok()
            .map(|free| free.saturating_sub(held))
    }

    fn disk_space(&self) -> Option<u64> {
        self.db.disk_space().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(b: &FjallBackend, h: Hash) -> Option<Vec<u8>> {
        b.get(Space::Chunks, &h).unwrap().map(|v| v.to_vec())
    }

    fn scan(b: &FjallBackend) -> Vec<Vec<u8>> {
        b.range(Space::Chunks, Bound::Unbounded, Bound::Unbounded)
            .map(|r| r.unwrap().0.to_vec())
            .collect()
    }

    /// Journaled chunks are readable and scanned in key order while held
    /// in memory, reach the store at sync (one ingested run) and survive a
    /// reopen; chunks committed normally are unaffected.
    #[test]
    fn journaled_chunks_are_held_then_ingested() {
        let d = tempfile::tempdir().unwrap();
        let opts = FjallOptions::default();
        let big = vec![7u8; 10_000];
        {
            let b = FjallBackend::open(d.path(), &opts).unwrap();
            let item = |h: u8| BatchItem::chunk(&[h; 32], Value::from(&[h][..]));
            b.commit(vec![item(2), item(6)], false).unwrap();
            let held: Vec<(Hash, Value)> = vec![
                ([1; 32], Value::from(&b"one"[..])),
                ([4; 32], Value::from(&big[..])),
                ([6; 32], Value::from(&[6u8][..])),
                ([9; 32], Value::from(&b"nine"[..])),
            ];
            b.put_journaled_chunks(held).unwrap();
            assert_eq!(chunk(&b, [4; 32]).unwrap(), big);
            assert!(b.contains(Space::Chunks, &[9; 32]).unwrap());
            // Held bytes count as used: the checkpoint will write them.
            assert_eq!(
                b.journaled_bytes.load(Ordering::Relaxed),
                3 + 10_000 + 1 + 4
            );
            let keys: Vec<u8> = scan(&b).iter().map(|k| k[0]).collect();
            assert_eq!(keys, [1, 2, 4, 6, 9]);
            let part: Vec<u8> = b
                .range(
                    Space::Chunks,
                    Bound::Included(vec![2; 32]),
                    Bound::Excluded(vec![9; 32]),
                )
                .map(|r| r.unwrap().0[0])
                .collect();
            assert_eq!(part, [2, 4, 6]);
            b.sync().unwrap();
            assert!(b.journaled.read().is_empty());
            assert_eq!(b.journaled_bytes.load(Ordering::Relaxed), 0);
            assert_eq!(scan(&b).len(), 5);
            // Held again after a sync: a later sync ingests a second run.
            b.put_journaled_chunks(vec![([5; 32], Value::from(&b"five"[..]))])
                .unwrap();
            b.sync().unwrap();
        }
        let b = FjallBackend::open(d.path(), &opts).unwrap();
        let keys: Vec<u8> = scan(&b).iter().map(|k| k[0]).collect();
        assert_eq!(keys, [1, 2, 4, 5, 6, 9]);
        assert_eq!(chunk(&b, [4; 32]).unwrap(), big);
        assert_eq!(chunk(&b, [1; 32]).unwrap(), b"one");
    }

    #[test]
    fn a_run_larger_than_the_writeback_step_is_stored_whole() {
        let d = tempfile::tempdir().unwrap();
        let opts = FjallOptions::default();
        // 3.5 writeback steps of distinct 64 KiB chunks.
        let chunks: Vec<(Hash, Value)> = (0..56u32)
            .map(|i| {
                let data: Vec<u8> = (0..65_536u32).map(|j| (i * 7 + j % 251) as u8).collect();
                (*blake3::hash(&data).as_bytes(), Value::from(&data[..]))
            })
            .collect();
        assert!(chunks.iter().map(|(_, v)| v.len()).sum::<usize>() > 3 * WRITEBACK_STEP);
        {
            let b = FjallBackend::open(d.path(), &opts).unwrap();
            b.put_journaled_chunks(chunks.clone()).unwrap();
            b.sync().unwrap();
            assert!(b.journaled.read().is_empty());
            // RunBlobs relies on fjall keeping blob files in
            // `<keyspace>/blobs`: without them pacing silently stops.
            let dir = b.ks(Space::Chunks).path().join("blobs");
            assert!(!blob_files(&dir).unwrap().is_empty());
        }
        let b = FjallBackend::open(d.path(), &opts).unwrap();
        assert_eq!(scan(&b).len(), chunks.len());
        for (h, v) in &chunks {
            assert_eq!(chunk(&b, *h).unwrap(), &v[..]);
        }
    }

    #[test]
    fn checkpoint_runs_stay_in_level_0_up_to_the_chunk_threshold() {
        // Each sync ingests one run into level 0 of the chunk keyspace.
        // Below `chunk_l0_threshold` no compaction is due, so the runs
        // stay there; with fjall's default of 4 they are merged into
        // level 1 four at a time (the whole chunk index rewritten each
        // time, see `CHUNK_L0_THRESHOLD`).
        let d = tempfile::tempdir().unwrap();
        let opts = FjallOptions::default();
        let b = FjallBackend::open(d.path(), &opts).unwrap();
        let runs = usize::from(opts.chunk_l0_threshold) - 1;
        for i in 0..runs {
            // 32 hashes span nearly the whole key space, as a real run's
            // hundreds do: the runs overlap (disjoint runs would be moved
            // down a level instead of staying in level 0).
            let chunks = (0..32u8)
                .map(|j| {
                    let data = vec![i as u8, j];
                    (*blake3::hash(&data).as_bytes(), Value::from(data))
                })
                .collect();
            b.put_journaled_chunks(chunks).unwrap();
            b.sync().unwrap();
        }
        // The first run may be moved down to the empty level 1 instead.
        let l0 = b.ks(Space::Chunks).l0_table_count();
        assert!(l0 >= runs - 1, "{l0} of {runs} runs in level 0");
    }
}
