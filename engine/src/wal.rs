//! The commit journal: a write-ahead log of committed entries and the
//! chunks they need, in two pre-zeroed files.
//!
//! Why: a durable commit costs one `fdatasync`. Appending to a sparse or
//! growing file (what fjall's journal is) makes every such sync allocate
//! blocks, i.e. commit the filesystem's metadata journal, which also waits
//! for other files' data. Overwriting blocks that already exist needs no
//! metadata: the sync only flushes our pages. So the WAL's files are filled
//! with zeros once and then overwritten in a cycle.
//!
//! Protocol of a durable batch (`Batch::finish`):
//! 1. append one record (the batch's entries and new chunks) and
//!    `fdatasync` it — the commit point;
//! 2. hand its chunks to the store, which may hold them in memory until
//!    the checkpoint (`Backend::put_journaled_chunks`), and write the rest
//!    of the batch to fjall without syncing; it becomes visible.
//!
//! Chunks stored outside a batch (uploads from workers) are appended
//! without a sync; the sync of the record that references them covers them,
//! since both live in the same file, written in order.
//!
//! Two files alternate. When the active one is full the writer switches to
//! the other, and a background thread checkpoints: it syncs fjall, after
//! which every record of the file just left is durable in fjall too and the
//! file may be overwritten. On open, records after fjall's applied index are
//! replayed through the normal, root-verifying replay path.
//!
//! Record: `magic u32 ‖ generation u64 ‖ length u32 ‖ xxh3 u64 ‖ payload`,
//! little endian, magic "HWA2". Payload: the entries as a postcard
//! `Vec<LogEntry>`, then each chunk as `hash [32] ‖ length u32 ‖ bytes`.
//! The checksum covers the generation, the length, the checksum of the
//! record before it in the file (0 for the first), the entries and each
//! chunk's hash and length, but not the chunk bytes: those must hash to
//! their BLAKE3 address. The chaining makes a record valid only after the
//! record it was written after: a run that reuses a generation (its
//! predecessor's first record in file 0 was torn, so recovery never saw
//! that generation) cannot have the older run's later records read as
//! successors of its own. So every byte is checked, the writer hashes a
//! megabyte of data once (for its address, on the FUSE thread) rather than
//! twice, and the record is written with `pwritev` straight from the
//! chunks' buffers instead of being copied into one record buffer first.
//! (Format 2's "HWAL" records checksummed the whole payload.)
//!
//! Each file is written from offset 0 with one generation, higher
//! than any before; reading stops at the first record that is torn, fails
//! its checksum or carries another generation (leftovers of an older cycle).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use crate::op::LogEntry;
use crate::store::{Backend, StoreError};
use crate::types::Hash;

const MAGIC: u32 = 0x3241_5748; // "HWA2"
const HEADER: usize = 4 + 8 + 4 + 8;
/// A chunk's header inside a payload: hash and length.
const CHUNK_HEAD: usize = 32 + 4;
/// Most buffers one `pwritev` takes (Linux's `IOV_MAX`).
const IOV_MAX: usize = 1024;
/// Largest record buffer kept for reuse.
const KEEP_BUF: usize = 16 << 20;

/// What one record carries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// Committed entries, in index order (may be empty: chunks only).
    pub entries: Vec<LogEntry>,
    /// Chunks stored with them or before them.
    pub chunks: Vec<(Hash, Vec<u8>)>,
}

/// A record to write, borrowing its parts.
pub struct RecordRef<'a> {
    /// Committed entries, in index order.
    pub entries: Vec<&'a LogEntry>,
    /// Chunks.
    pub chunks: Vec<(Hash, &'a [u8])>,
}

impl RecordRef<'_> {
    /// Appends the encoded entries, then every chunk's header, to `out`;
    /// returns where the headers start. The payload on disk interleaves
    /// each header with its chunk's bytes (see [`RecordRef::slices`]).
    fn encode_heads(&self, out: &mut Vec<u8>) -> usize {
        postcard::to_io(&self.entries, &mut *out).expect("log entries always encode");
        let heads = out.len();
        for (h, data) in &self.chunks {
            out.extend_from_slice(h);
            out.extend_from_slice(&chunk_len(data).to_le_bytes());
        }
        heads
    }

    /// The record as it goes to disk: `head[..heads]` (record header and
    /// entries), then each chunk's header from `head[heads..]` followed by
    /// its bytes.
    fn slices<'a>(&'a self, head: &'a [u8], heads: usize) -> Vec<std::io::IoSlice<'a>> {
        let mut v = Vec::with_capacity(1 + 2 * self.chunks.len());
        v.push(std::io::IoSlice::new(&head[..heads]));
        for (i, (_, data)) in self.chunks.iter().enumerate() {
            let at = heads + i * CHUNK_HEAD;
            v.push(std::io::IoSlice::new(&head[at..at + CHUNK_HEAD]));
            v.push(std::io::IoSlice::new(data));
        }
        v
    }
}

/// A chunk's length as its header stores it; chunks are far below 4 GiB.
fn chunk_len(data: &[u8]) -> u32 {
    u32::try_from(data.len()).expect("a chunk is smaller than 4 GiB")
}

impl Record {
    /// Decodes a payload; `None` if it is malformed. Also returns the
    /// checksum a record of `generation` written after a record with
    /// checksum `prev` carries for it.
    fn decode(generation: u64, prev: u64, payload: &[u8]) -> Option<(Record, u64)> {
        let (entries, mut rest) = postcard::take_from_bytes::<Vec<LogEntry>>(payload).ok()?;
        let mut sum = Sum::new(generation, payload.len(), prev);
        sum.0.update(&payload[..payload.len() - rest.len()]);
        let mut chunks = Vec::new();
        while !rest.is_empty() {
            let head = rest.get(..CHUNK_HEAD)?;
            sum.0.update(head);
            let (h, r) = rest.split_first_chunk::<32>()?;
            let (n, r) = r.split_first_chunk::<4>()?;
            let n = u32::from_le_bytes(*n) as usize;
            if r.len() < n {
                return None;
            }
            chunks.push((*h, r[..n].to_vec()));
            rest = &r[n..];
        }
        Some((Record { entries, chunks }, sum.0.digest()))
    }
}

struct Slots {
    /// Whether each file may be overwritten (its records are durable in
    /// fjall, or it was never used).
    free: [bool; 2],
    /// The last checkpoint failed: the store is unusable.
    failed: bool,
}

struct Shared {
    slots: Mutex<Slots>,
    changed: Condvar,
}

/// The commit journal of one store.
pub struct Wal {
    files: [File; 2],
    paths: [PathBuf; 2],
    /// Each file's length (fixed between switches).
    lens: [u64; 2],
    active: usize,
    pos: u64,
    /// Checksum of the last record written in the active file (0 before
    /// its first): the next record's checksum covers it.
    prev: u64,
    generation: u64,
    shared: Arc<Shared>,
    /// Files to checkpoint (None once dropping).
    checkpoint: Option<crossbeam_channel::Sender<usize>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The record buffer, kept between appends.
    buf: Vec<u8>,
}

impl Drop for Wal {
    fn drop(&mut self) {
        // Stop the checkpointer (it finishes a checkpoint in progress) so
        // that no thread holds the store once the engine is gone.
        self.checkpoint = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |e| {
        StoreError::Io(std::io::Error::new(
            e.kind(),
            format!("{}: {e}", path.display()),
        ))
    }
}

/// Records of one file: its generation and records, in order.
fn scan(file: &File) -> std::io::Result<(u64, Vec<Record>)> {
    let len = file.metadata()?.len();
    let mut records = Vec::new();
    let mut generation = None;
    let mut pos = 0u64;
    let mut prev = 0u64;
    let mut head = [0u8; HEADER];
    while pos + HEADER as u64 <= len {
        file.read_exact_at(&mut head, pos)?;
        let magic = u32::from_le_bytes(head[0..4].try_into().expect("4"));
        let g = u64::from_le_bytes(head[4..12].try_into().expect("8"));
        let n = u32::from_le_bytes(head[12..16].try_into().expect("4")) as u64;
        let sum = u64::from_le_bytes(head[16..24].try_into().expect("8"));
        if magic != MAGIC || generation.is_some_and(|x| x != g) || pos + HEADER as u64 + n > len {
            break;
        }
        let mut payload = vec![0u8; n as usize];
        file.read_exact_at(&mut payload, pos + HEADER as u64)?;
        let Some((r, expected)) = Record::decode(g, prev, &payload) else {
            break;
        };
        // IMPORTANT: the checksum skips the chunk bytes; a chunk whose
        // bytes do not hash to its address was not (wholly) written: the
        // record is torn.
        if expected != sum
            || !r
                .chunks
                .iter()
                .all(|(h, d)| blake3::hash(d).as_bytes() == h)
        {
            break;
        }
        generation = Some(g);
        prev = sum;
        records.push(r);
        pos += HEADER as u64 + n;
    }
    Ok((generation.unwrap_or(0), records))
}

/// A record's checksum: xxh3 over its generation, payload length and the
/// previous record's checksum, then (fed by the caller) its entries and
/// chunk headers.
struct Sum(xxhash_rust::xxh3::Xxh3);

impl Sum {
    fn new(generation: u64, len: usize, prev: u64) -> Sum {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(&generation.to_le_bytes());
        h.update(&(len as u32).to_le_bytes());
        h.update(&prev.to_le_bytes());
        Sum(h)
    }
}

/// Writes every byte of `bufs` at `off`, in `pwritev` calls of at most
/// [`IOV_MAX`] buffers, going on after short writes.
fn write_all_vectored_at(
    file: &File,
    mut bufs: &mut [std::io::IoSlice<'_>],
    mut off: u64,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    while !bufs.is_empty() {
        let n = bufs.len().min(IOV_MAX);
        let off_t = libc::off_t::try_from(off).map_err(std::io::Error::other)?;
        // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix, and
        // the `n` buffers stay borrowed for the call.
        let written = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                bufs.as_ptr().cast::<libc::iovec>(),
                n as libc::c_int,
                off_t,
            )
        };
        if written < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        off += written as u64;
        std::io::IoSlice::advance_slices(&mut bufs, written as usize);
    }
    Ok(())
}

/// Creates a file of `size` zero bytes, durably.
fn zeroed(path: &Path, size: u64) -> Result<File, StoreError> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)
        .map_err(io(path))?;
    let zeros = vec![0u8; 1 << 20];
    let mut off = 0;
    while off < size {
        let n = (size - off).min(zeros.len() as u64) as usize;
        f.write_all_at(&zeros[..n], off).map_err(io(path))?;
        off += n as u64;
    }
    // IMPORTANT: the blocks must exist on disk before the journal relies
    // on overwrites needing no metadata.
    f.sync_all().map_err(io(path))?;
    if let Some(parent) = path.parent() {
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io(parent))?;
    }
    Ok(f)
}

impl Wal {
    /// Whether `dir` holds a journal.
    #[must_use]
    pub fn exists(dir: &Path) -> bool {
        dir.join("0.wal").exists()
    }

    /// Opens the journal in `dir` (creating two zeroed files of `size`
    /// bytes, at least 4 KiB, where absent) and returns it with the records it holds, oldest
    /// first; the caller replays those past its applied index, then calls
    /// [`Wal::recovered`].
    pub fn open(
        dir: &Path,
        size: u64,
        backend: Arc<dyn Backend>,
    ) -> Result<(Wal, Vec<Record>), StoreError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let paths = [dir.join("0.wal"), dir.join("1.wal")];
        let mut files = Vec::new();
        let mut found = Vec::new();
        for p in &paths {
            // An existing file keeps its size (it may hold records); a
            // missing or empty one is created.
            let f = match OpenOptions::new().read(true).write(true).open(p) {
                Ok(f) if f.metadata().map_err(io(p))?.len() > 0 => {
                    f.sync_all().map_err(io(p))?;
                    f
                }
                Ok(_) => zeroed(p, size.max(4096))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => zeroed(p, size.max(4096))?,
                Err(e) => return Err(io(p)(e)),
            };
            found.push(scan(&f).map_err(io(p))?);
            files.push(f);
        }
        let max_gen = found.iter().map(|(g, _)| *g).max().unwrap_or(0);
        let mut by_gen: Vec<(u64, Vec<Record>)> =
            found.into_iter().filter(|(_, r)| !r.is_empty()).collect();
        by_gen.sort_by_key(|(g, _)| *g);
        let records = by_gen.into_iter().flat_map(|(_, r)| r).collect();
        let shared = Arc::new(Shared {
            slots: Mutex::new(Slots {
                free: [true, true],
                failed: false,
            }),
            changed: Condvar::new(),
        });
        let (tx, rx) = crossbeam_channel::unbounded::<usize>();
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("hsfs-checkpoint".into())
            .spawn(move || {
                for file in rx {
                    // Everything committed so far is in fjall (unsynced):
                    // once synced, the file's records are redundant.
                    let synced = backend.sync();
                    let mut g = s.slots.lock();
                    match synced {
                        Ok(()) => g.free[file] = true,
                        Err(e) => {
                            g.failed = true;
                            tracing::error!(error = %e, "checkpoint of the store failed");
                        }
                    }
                    s.changed.notify_all();
                }
            })
            .map_err(StoreError::Io)?;
        let mut lens = [0u64; 2];
        for (i, f) in files.iter().enumerate() {
            lens[i] = f.metadata().map_err(io(&paths[i]))?.len();
        }
        let [f0, f1]: [File; 2] = files
            .try_into()
            .map_err(|_| StoreError::Injected("wal files"))?;
        Ok((
            Wal {
                files: [f0, f1],
                paths,
                lens,
                // Start a fresh generation on file 0 after recovery.
                active: 0,
                pos: 0,
                prev: 0,
                generation: max_gen + 1,
                shared,
                checkpoint: Some(tx),
                thread: Some(thread),
                buf: Vec::new(),
            },
            records,
        ))
    }

    /// Called once the records returned by [`Wal::open`] are applied and
    /// the store is synced: the old records may now be overwritten.
    pub fn recovered(&mut self) {
        let mut g = self.shared.slots.lock();
        g.free = [true, true];
        // Writing starts at file 0 with a new generation.
        g.free[0] = false;
    }

    /// Waits until the file last left is checkpointed (no checkpoint in
    /// progress); returns the generation being written.
    pub fn settle(&self) -> u64 {
        let mut g = self.shared.slots.lock();
        while !g.free[1 - self.active] && !g.failed {
            self.shared.changed.wait(&mut g);
        }
        self.generation
    }

    /// Appends a record; with `sync`, returns once it is on stable storage
    /// (together with every record before it).
    pub fn append(&mut self, r: &RecordRef<'_>, sync: bool) -> Result<(), StoreError> {
        debug_assert!(
            r.chunks
                .iter()
                .all(|(h, d)| blake3::hash(d).as_bytes() == h),
            "journal chunks are stored under their BLAKE3 hash"
        );
        // The buffer (header, entries, chunk headers) is reused between
        // appends; the chunks' bytes are written from their own buffers.
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.resize(HEADER, 0);
        let heads = r.encode_heads(&mut buf);
        let written = self.write_record(r, &mut buf, heads, sync);
        if buf.capacity() <= KEEP_BUF {
            self.buf = buf;
        }
        written
    }

    /// Writes `r`, whose header room, entries and chunk headers are in
    /// `buf` (the chunk headers from `heads` on).
    fn write_record(
        &mut self,
        r: &RecordRef<'_>,
        buf: &mut [u8],
        heads: usize,
        sync: bool,
    ) -> Result<(), StoreError> {
        let n = buf.len() - HEADER + r.chunks.iter().map(|(_, d)| d.len()).sum::<usize>();
        let len = u32::try_from(n).map_err(|_| {
            StoreError::Io(std::io::Error::other(format!(
                "journal record of {n} bytes is too large"
            )))
        })?;
        let need = (HEADER + n) as u64;
        if self.pos + need > self.lens[self.active] {
            self.switch(need)?;
        }
        // The checksum covers the entries and the chunk headers in the
        // order they are written; the chunk bytes are left to their hashes.
        let mut sum = Sum::new(self.generation, n, self.prev);
        sum.0.update(&buf[HEADER..]);
        let sum = sum.0.digest();
        buf[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        buf[4..12].copy_from_slice(&self.generation.to_le_bytes());
        buf[12..16].copy_from_slice(&len.to_le_bytes());
        buf[16..24].copy_from_slice(&sum.to_le_bytes());
        let (f, p) = (&self.files[self.active], &self.paths[self.active]);
        let mut slices = r.slices(buf, heads);
        write_all_vectored_at(f, &mut slices, self.pos).map_err(io(p))?;
        self.pos += need;
        self.prev = sum;
        if sync {
            // IMPORTANT: the commit point. Acks wait for this; the blocks
            // exist already, so only our data is flushed.
            f.sync_data().map_err(io(p))?;
        }
        Ok(())
    }

    /// Moves to the other file (waiting for its checkpoint if need be) and
    /// has the one left checkpointed.
    fn switch(&mut self, need: u64) -> Result<(), StoreError> {
        let next = 1 - self.active;
        // The file left must be durable before anything relies on the new
        // one: sync it, then hand it to the checkpointer.
        self.files[self.active]
            .sync_data()
            .map_err(io(&self.paths[self.active]))?;
        {
            let mut g = self.shared.slots.lock();
            g.free[self.active] = false;
            while !g.free[next] && !g.failed {
                self.shared.changed.wait(&mut g);
            }
            if g.failed {
                return Err(StoreError::Injected("checkpoint failed"));
            }
            g.free[next] = false;
        }
        if let Some(tx) = &self.checkpoint {
            let _ = tx.send(self.active);
        }
        self.active = next;
        self.pos = 0;
        self.prev = 0;
        self.generation += 1;
        if need > self.lens[next] {
            // A record larger than a file (a huge batch): grow this one.
            let p = &self.paths[next];
            let size = need.next_power_of_two();
            self.files[next] = zeroed(p, size)?;
            self.lens[next] = size;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::mem::MemBackend;

    /// A chunk of `size` bytes `n` under its BLAKE3 hash.
    fn chunk(n: u8, size: usize) -> (Hash, Vec<u8>) {
        let data = vec![n; size];
        (*blake3::hash(&data).as_bytes(), data)
    }

    fn append(w: &mut Wal, n: u8, size: usize, sync: bool) {
        let (h, data) = chunk(n, size);
        w.append(
            &RecordRef {
                entries: vec![],
                chunks: vec![(h, &data)],
            },
            sync,
        )
        .unwrap();
    }

    /// A new journal of two `size`-byte files, ready for appends.
    fn recovered(size: u64) -> (tempfile::TempDir, Arc<dyn Backend>, Wal) {
        let d = tempfile::tempdir().unwrap();
        let b: Arc<dyn Backend> = Arc::new(MemBackend::new());
        let (mut w, _) = Wal::open(d.path(), size, b.clone()).unwrap();
        w.recovered();
        (d, b, w)
    }

    /// A closed journal holding records 1, 2 and 3, one `size`-byte chunk
    /// each, synced, in file 0.
    fn three_records(size: usize) -> (tempfile::TempDir, Arc<dyn Backend>) {
        let (d, b, mut w) = recovered(1 << 20);
        for n in 1..=3 {
            append(&mut w, n, size, true);
        }
        (d, b)
    }

    /// Overwrites bytes of journal file 0 at `at`, as a crash or a bad
    /// sector would leave them.
    fn overwrite(dir: &Path, at: u64, bytes: &[u8]) {
        let f = OpenOptions::new()
            .write(true)
            .open(dir.join("0.wal"))
            .unwrap();
        f.write_all_at(bytes, at).unwrap();
    }

    /// The first byte of each record's first chunk.
    fn ids(records: &[Record]) -> Vec<u8> {
        records.iter().map(|r| r.chunks[0].1[0]).collect()
    }

    #[test]
    fn records_survive_reopen_across_switches_and_checkpoints() {
        let d = tempfile::tempdir().unwrap();
        let b: Arc<dyn Backend> = Arc::new(MemBackend::new());
        {
            let (mut w, old) = Wal::open(d.path(), 64 << 10, b.clone()).unwrap();
            assert!(old.is_empty());
            w.recovered();
            for i in 0..10u8 {
                append(&mut w, i, 20_000, i % 2 == 0);
            }
        }
        // Reopen: the records not yet overwritten are there, in order, and
        // the newest ones are the last.
        let (mut w, got) = Wal::open(d.path(), 64 << 10, b.clone()).unwrap();
        let read = ids(&got);
        assert_eq!(*read.last().unwrap(), 9);
        assert!(read.windows(2).all(|x| x[0] < x[1]), "{read:?}");
        w.recovered();
        append(&mut w, 42, 10, true);
        drop(w);
        // After recovery writing restarted on file 0 with a new generation:
        // only the new record is read back from it.
        let (_, got) = Wal::open(d.path(), 64 << 10, b).unwrap();
        assert_eq!(*ids(&got).last().unwrap(), 42);
    }

    #[test]
    fn torn_tail_is_ignored() {
        let (d, b, mut w) = recovered(1 << 20);
        append(&mut w, 1, 100, true);
        append(&mut w, 2, 100, true);
        // Tear the second record.
        overwrite(d.path(), (HEADER + 140) as u64 + 30, &[0xff; 8]);
        drop(w);
        let (_, got) = Wal::open(d.path(), 1 << 20, b).unwrap();
        assert_eq!(ids(&got), [1]);
    }

    /// The checksum of a "HWA2" record skips the chunk bytes: a record
    /// whose bytes were not all written (stale bytes in the middle of a
    /// chunk) must still end the journal there.
    #[test]
    fn a_chunk_not_wholly_written_tears_its_record() {
        let (d, b) = three_records(10_000);
        // Record 2 starts after record 1 (header, one byte of empty
        // entries, one chunk header, 10 000 bytes); damage its chunk's
        // bytes only.
        let second = (HEADER + 1 + CHUNK_HEAD + 10_000) as u64;
        overwrite(
            d.path(),
            second + (HEADER + 1 + CHUNK_HEAD + 5000) as u64,
            &[0; 16],
        );
        let (_, got) = Wal::open(d.path(), 1 << 20, b).unwrap();
        assert_eq!(
            ids(&got),
            [1],
            "the torn record and those after it are dropped"
        );
    }

    /// A crash can leave a file whose first record is torn while later ones
    /// of the same generation reached the disk (writeback order). The next
    /// run then finds no record of that generation, reuses it for file 0,
    /// and may write a first record of exactly the torn one's length: the
    /// stale records after it must still not be read as its successors.
    #[test]
    fn stale_records_of_a_reused_generation_are_not_read() {
        let (d, b) = three_records(1000);
        // Tear the first record (damage its chunk's bytes).
        overwrite(d.path(), (HEADER + 1 + CHUNK_HEAD + 500) as u64, &[0xee; 8]);
        let (mut w, got) = Wal::open(d.path(), 1 << 20, b.clone()).unwrap();
        assert!(got.is_empty());
        w.recovered();
        // Same generation again, a first record of the same length.
        append(&mut w, 9, 1000, true);
        drop(w);
        let (_, got) = Wal::open(d.path(), 1 << 20, b).unwrap();
        assert_eq!(ids(&got), [9], "records 2 and 3 belong to the torn run");
    }
}
