//! The engine: a store, the Merkle trie over its canonical records, and the
//! single-writer batch API used by the leader's commit pipeline and by
//! replicas replaying the log.
//!
//! Lock order: `Inner::writer` is the only lock held across storage writes.
//! Readers never take it: they read the backend directly, which exposes
//! whole batches atomically.

use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hsfs_merkle::{Branch, NodePath, NodeStore, Trie};
use parking_lot::{Condvar, Mutex, MutexGuard, RwLock};

use crate::apply::{self, Fail, Meta};
use crate::errno::Errno;
use crate::failpoint::Failpoints;
use crate::keys::{self, Space, meta};
use crate::op::{Ack, Intent, LogEntry, Op, OpResult, Origin};
use crate::records;
use crate::statedir::{StateDir, StateDirError};
use crate::store::BatchItem;
use crate::store::fjall_backend::{FjallBackend, FjallOptions};
use crate::store::{Backend, StoreError};
use crate::txn::Txn;
use crate::types::{ClientId, Hash, IntentId, Nanos, WorkspaceId};
use crate::wal::{RecordRef, Wal};

/// Errors of opening, reading or writing the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The state directory is unusable.
    #[error(transparent)]
    StateDir(#[from] StateDirError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Stored data is inconsistent.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// The store holds no workspace yet.
    #[error("store is not initialized")]
    Uninitialized,
    /// An earlier durable write failed; the engine accepts no more writes.
    #[error("engine poisoned by an earlier failed write; restart to recover")]
    Poisoned,
    /// A request that has an errno answer (reads).
    #[error("{0}")]
    Errno(Errno),
}

impl EngineError {
    /// The errno to give a syscall that hit this error.
    #[must_use]
    pub fn errno(&self) -> Errno {
        match self {
            EngineError::Errno(e) => *e,
            EngineError::StateDir(_)
            | EngineError::Store(_)
            | EngineError::Corrupt(_)
            | EngineError::Uninitialized
            | EngineError::Poisoned => Errno::EIO,
        }
    }
}

impl From<Fail> for EngineError {
    fn from(f: Fail) -> Self {
        match f {
            Fail::Errno(e) => EngineError::Errno(e),
            Fail::Store(e) => EngineError::Store(e),
            Fail::Corrupt(s) => EngineError::Corrupt(s),
        }
    }
}

/// Why a replica could not apply a committed entry. Apply stops at the
/// entry before; the replica must go read-only.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The entry does not follow the last applied one.
    #[error("log index {got}: expected index {expected} (gap or reorder)")]
    Gap {
        /// The next index this replica can apply.
        expected: u64,
        /// What it was given.
        got: u64,
    },
    /// `committed_at` does not increase.
    #[error("log index {index}: committed_at {time} is not after {last}")]
    Time {
        /// Entry.
        index: u64,
        /// Its time.
        time: Nanos,
        /// The previous entry's time.
        last: Nanos,
    },
    /// A chunk the entry needs is missing or fails its hash.
    #[error("log index {index}: chunk {} {why}", hex::encode(hash))]
    Chunk {
        /// Entry.
        index: u64,
        /// The chunk.
        hash: Hash,
        /// "is missing" or "is corrupt (hash mismatch)".
        why: &'static str,
    },
    /// The op failed here although it committed at the leader: divergence.
    #[error("log index {index}: op failed on replay with {errno}")]
    Apply {
        /// Entry.
        index: u64,
        /// The error.
        errno: Errno,
    },
    /// The computed root differs from the entry's root: divergence.
    #[error(
        "log index {index}: merkle root mismatch (entry {} computed {})",
        hex::encode(expected),
        hex::encode(computed)
    )]
    RootMismatch {
        /// Entry.
        index: u64,
        /// Root in the entry.
        expected: Hash,
        /// Root computed here.
        computed: Hash,
    },
    /// The store failed.
    #[error("log index {index}: {source}")]
    Engine {
        /// Entry.
        index: u64,
        /// The error.
        source: EngineError,
    },
}

impl ReplayError {
    /// The log index the error is about.
    #[must_use]
    pub fn index(&self) -> u64 {
        match self {
            ReplayError::Gap { got, .. } => *got,
            ReplayError::Time { index, .. }
            | ReplayError::Chunk { index, .. }
            | ReplayError::Apply { index, .. }
            | ReplayError::RootMismatch { index, .. }
            | ReplayError::Engine { index, .. } => *index,
        }
    }

    /// An errno describing the error for status reports.
    #[must_use]
    pub fn errno(&self) -> Errno {
        match self {
            ReplayError::Apply { errno, .. } => *errno,
            ReplayError::Engine { source, .. } => source.errno(),
            _ => Errno::EIO,
        }
    }
}

/// One op made durable, as reported to listeners (the FUSE layer turns
/// these into kernel cache invalidations).
#[derive(Clone, Debug)]
pub struct Applied {
    /// The log entry (index, intent — whose client tells which mount issued
    /// it —, op, time, root).
    pub entry: Arc<LogEntry>,
    /// Its result.
    pub result: OpResult,
    /// Canonical records the op changed (space, key).
    pub changes: Vec<(Space, Vec<u8>)>,
}

/// A callback run after every durable batch, before acks are sent. It runs
/// on the writer's thread, so it must be quick, and it must not own the
/// engine (the engine owns it: that cycle would keep the store open).
pub type Listener = Arc<dyn Fn(&[Applied]) + Send + Sync>;

/// Summary of the engine's applied state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// Workspace.
    pub workspace: WorkspaceId,
    /// Counters at the last applied index.
    pub meta: Meta,
}

/// Options for opening an engine.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// fjall tuning.
    pub fjall: FjallOptions,
    /// Size of each of the two commit-journal files ([`crate::wal`])
    /// created with a new workspace ([`Engine::init_dir`]); `None` creates
    /// none. A store that has a journal always uses it.
    pub journal_bytes: Option<u64>,
}

/// Default size of each commit-journal file.
pub const DEFAULT_JOURNAL_BYTES: u64 = 32 << 20;

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            fjall: FjallOptions::default(),
            journal_bytes: Some(DEFAULT_JOURNAL_BYTES),
        }
    }
}

/// How many Merkle branches a writer holds in memory before it writes them
/// to the store (a branch takes about 1 KiB of memory).
///
/// Why hold them: every batch changes the branches on the paths from its
/// records to the root, the top ones always. Written with each batch they
/// were ~86% of the bytes put into fjall while 8 processes created files
/// (7.6 branches of ~400 bytes per create, against ~0.5 KiB for the create's
/// own records), and each costs a memtable insert, fjall journal bytes,
/// then flush and compaction work. A held batch writes instead one delta
/// record of its leaf changes (65 bytes each); a flush writes every held
/// branch once and deletes the deltas, atomically with the batch it rides on.
pub const MERKLE_HOLD_BRANCHES: usize = 4096;

/// How many delta records (batches) the held branches may span before they
/// are written: bounds what opening the store replays in a small
/// workspace, whose whole trie has fewer branches than
/// [`MERKLE_HOLD_BRANCHES`]. By hand: `hsfs status` of a stopped
/// workspace holding about 1000 deltas of one create each took 0.03 s,
/// 0.02 s once `hsfs-fsck` had flushed them; a batch of many writes has a
/// larger delta.
pub const MERKLE_HOLD_DELTAS: usize = 1024;

struct Writer {
    trie: Trie,
    meta: Meta,
    /// Keys of the delta records in the store: the batches whose Merkle
    /// branches the trie holds (`Trie::hold`), in index order. Invariant:
    /// the stored branches with these deltas applied in order are the trie
    /// of the stored records.
    deltas: Vec<[u8; 8]>,
}

struct Inner {
    backend: Arc<dyn Backend>,
    workspace: WorkspaceId,
    writer: Mutex<Writer>,
    /// Copy of the writer's meta after the last durable batch.
    published: RwLock<Meta>,
    applied: AtomicU64,
    applied_cv: (Mutex<()>, Condvar),
    poisoned: AtomicBool,
    listeners: RwLock<Vec<Listener>>,
    failpoints: Failpoints,
    /// The commit journal, if the store has one. Lock order: writer, then
    /// journal.
    journal: OnceLock<Mutex<Wal>>,
    _dir: Option<StateDir>,
}

/// The engine. Cheap to clone; all clones share one store.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// [`NodeStore`] over the backend's merkle space.
struct MerkleNodes<'a>(&'a dyn Backend);

/// Merkle node load failure.
#[derive(Debug, thiserror::Error)]
pub enum MerkleLoadError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A branch did not decode.
    #[error("merkle branch {0:?}: {1}")]
    Decode(NodePath, hsfs_merkle::DecodeError),
}

impl NodeStore for MerkleNodes<'_> {
    type Error = MerkleLoadError;
    fn load(&self, path: &NodePath) -> Result<Option<Branch>, MerkleLoadError> {
        match self.0.get(Space::Merkle, &path.to_key())? {
            Some(v) => Branch::decode(&v)
                .map(Some)
                .map_err(|e| MerkleLoadError::Decode(*path, e)),
            None => Ok(None),
        }
    }
}

fn merkle_fail(e: hsfs_merkle::TrieError<MerkleLoadError>) -> Fail {
    match e {
        hsfs_merkle::TrieError::Store(MerkleLoadError::Store(s)) => Fail::Store(s),
        other => Fail::Corrupt(other.to_string()),
    }
}

/// Folds the store's Merkle delta records (batches whose branches were
/// held in memory when the store was last written) into `trie`, checks the
/// result against the stored `root` and holds it; returns the deltas' keys.
fn fold_merkle_deltas(
    b: &dyn Backend,
    trie: &mut Trie,
    root: &Hash,
) -> Result<Vec<[u8; 8]>, EngineError> {
    let store = MerkleNodes(b);
    let fail = |e| EngineError::from(merkle_fail(e));
    let mut keys = Vec::new();
    for r in b.range(Space::MerkleDelta, Bound::Unbounded, Bound::Unbounded) {
        let (k, v) = r?;
        let key: [u8; 8] = k
            .as_ref()
            .try_into()
            .map_err(|_| EngineError::Corrupt("merkle delta key is not a log index".into()))?;
        let changes = records::decode_delta(&v).map_err(|e| {
            EngineError::Corrupt(format!("merkle delta {}: {e}", u64::from_be_bytes(key)))
        })?;
        for (kh, vh) in changes {
            match vh {
                Some(vh) => trie.insert(&store, &kh, &vh).map_err(fail)?,
                None => {
                    trie.remove(&store, &kh).map_err(fail)?;
                }
            }
        }
        keys.push(key);
    }
    if keys.is_empty() {
        return Ok(keys);
    }
    let computed = trie.root(&store).map_err(fail)?;
    if computed != *root {
        return Err(EngineError::Corrupt(format!(
            "the merkle deltas give root {} but the store's root is {}",
            hex::encode(computed),
            hex::encode(root)
        )));
    }
    trie.hold();
    Ok(keys)
}

fn read_u64(b: &dyn Backend, key: &[u8]) -> Result<Option<u64>, EngineError> {
    match b.get(Space::Meta, key)? {
        None => Ok(None),
        Some(v) => keys::be_u64(&v)
            .map(Some)
            .ok_or_else(|| EngineError::Corrupt(format!("meta {}", String::from_utf8_lossy(key)))),
    }
}

/// The state directory's FORMAT file and its store name the same workspace.
pub(crate) fn same_workspace(dir: &StateDir, store: WorkspaceId) -> Result<(), EngineError> {
    if dir.workspace() == store {
        Ok(())
    } else {
        Err(EngineError::Corrupt(format!(
            "FORMAT names workspace {} but the store holds {store}",
            dir.workspace()
        )))
    }
}

pub(crate) fn load_meta(b: &dyn Backend) -> Result<Option<(WorkspaceId, Meta)>, EngineError> {
    let Some(ws) = b.get(Space::Meta, meta::WORKSPACE)? else {
        return Ok(None);
    };
    let ws = WorkspaceId(
        ws.as_ref()
            .try_into()
            .map_err(|_| EngineError::Corrupt("meta workspace_id".into()))?,
    );
    let format = read_u64(b, meta::FORMAT)?;
    if format != Some(u64::from(crate::statedir::FORMAT_VERSION)) {
        return Err(EngineError::Corrupt(format!(
            "unsupported store format {format:?}"
        )));
    }
    let mut m = Meta::empty();
    m.applied = read_u64(b, meta::APPLIED)?.unwrap_or(0);
    m.next_ino = read_u64(b, meta::NEXT_INO)?.unwrap_or(m.next_ino);
    m.last_time = read_u64(b, meta::LAST_TIME)?.unwrap_or(0) as i64;
    m.nodes = read_u64(b, meta::NODES)?.unwrap_or(0);
    m.bytes = read_u64(b, meta::BYTES)?.unwrap_or(0);
    if let Some(r) = b.get(Space::Meta, meta::ROOT)? {
        m.root = r
            .as_ref()
            .try_into()
            .map_err(|_| EngineError::Corrupt("meta root".into()))?;
    }
    Ok(Some((ws, m)))
}

impl Engine {
    /// Creates a state directory with a new workspace and commits the
    /// genesis entry (log index 1: the root directory).
    pub fn init_dir(
        path: &Path,
        workspace: WorkspaceId,
        root: (u32, u32, u32),
        now: Nanos,
        opts: &EngineOptions,
    ) -> Result<Engine, EngineError> {
        let dir = StateDir::create(path, workspace)?;
        let journal = dir.journal_path();
        let backend = Arc::new(FjallBackend::open(&dir.db_path(), &opts.fjall)?);
        let engine = Self::create(backend, Some(dir), workspace)?;
        if let Some(size) = opts.journal_bytes {
            engine.attach_journal(&journal, Some(size))?;
        }
        engine.genesis(root, now)?;
        Ok(engine)
    }

    /// Opens an existing state directory (taking its process lock),
    /// recovering from its commit journal if it has one.
    pub fn open_dir(path: &Path, opts: &EngineOptions) -> Result<Engine, EngineError> {
        let dir = StateDir::open(path)?;
        let backend = Arc::new(FjallBackend::open(&dir.db_path(), &opts.fjall)?);
        Self::open_locked(dir, backend)
    }

    /// Opens the store of a locked state directory (`backend` opened from
    /// its `db`), with its commit journal if it has one.
    pub(crate) fn open_locked(
        dir: StateDir,
        backend: Arc<FjallBackend>,
    ) -> Result<Engine, EngineError> {
        let journal = dir.journal_path();
        let e = Self::open(backend, Some(dir))?;
        e.attach_journal(&journal, None)?;
        Ok(e)
    }

    /// Creates an empty state directory for a workspace: no log entry yet,
    /// ready to replay the leader's log from index 1.
    pub fn create_dir(
        path: &Path,
        workspace: WorkspaceId,
        opts: &EngineOptions,
    ) -> Result<Engine, EngineError> {
        let dir = StateDir::create(path, workspace)?;
        let backend = Arc::new(FjallBackend::open(&dir.db_path(), &opts.fjall)?);
        Self::create(backend, Some(dir), workspace)
    }

    /// Writes the store header of `workspace` into an empty backend.
    pub fn create(
        backend: Arc<dyn Backend>,
        dir: Option<StateDir>,
        workspace: WorkspaceId,
    ) -> Result<Engine, EngineError> {
        if load_meta(&*backend)?.is_some() {
            return Err(EngineError::Corrupt("store already initialized".into()));
        }
        let header = vec![
            BatchItem {
                space: Space::Meta,
                key: meta::FORMAT.to_vec(),
                value: Some(
                    u64::from(crate::statedir::FORMAT_VERSION)
                        .to_be_bytes()
                        .into(),
                ),
            },
            BatchItem {
                space: Space::Meta,
                key: meta::WORKSPACE.to_vec(),
                value: Some(workspace.0.into()),
            },
        ];
        backend.commit(header, true)?;
        Self::open(backend, dir)
    }

    /// Initializes a workspace in an empty backend: the header, then the
    /// genesis entry (log index 1) creating the root directory.
    pub fn init(
        backend: Arc<dyn Backend>,
        dir: Option<StateDir>,
        workspace: WorkspaceId,
        root: (u32, u32, u32),
        now: Nanos,
    ) -> Result<Engine, EngineError> {
        let engine = Self::create(backend, dir, workspace)?;
        engine.genesis(root, now)?;
        Ok(engine)
    }

    /// Commits the genesis entry (log index 1, the root directory) of a
    /// store made by [`Engine::create`].
    pub fn genesis(
        &self,
        (perm, uid, gid): (u32, u32, u32),
        now: Nanos,
    ) -> Result<(), EngineError> {
        let mut b = self.batch()?;
        let intent = Intent {
            id: IntentId {
                client: ClientId::SYSTEM,
                seq: 0,
            },
            origin: Origin {
                worker: "init".into(),
                agent: String::new(),
            },
            op: Op::Genesis { perm, uid, gid },
        };
        b.commit_intent(&intent, now)?;
        b.finish(true)?;
        Ok(())
    }

    /// Opens an initialized backend.
    pub fn open(backend: Arc<dyn Backend>, dir: Option<StateDir>) -> Result<Engine, EngineError> {
        let (workspace, meta) = load_meta(&*backend)?.ok_or(EngineError::Uninitialized)?;
        if let Some(d) = &dir {
            same_workspace(d, workspace)?;
        }
        if backend.get(Space::Meta, meta::MERKLE_REBUILD)?.is_some() {
            return Err(EngineError::Corrupt(
                "a rebuild of the merkle branches was interrupted: run `hsfs-fsck --rebuild-merkle` on the state directory again".into(),
            ));
        }
        let mut trie = Trie::default();
        let deltas = fold_merkle_deltas(&*backend, &mut trie, &meta.root)?;
        Ok(Engine {
            inner: Arc::new(Inner {
                backend,
                workspace,
                applied: AtomicU64::new(meta.applied),
                published: RwLock::new(meta.clone()),
                writer: Mutex::new(Writer { trie, meta, deltas }),
                applied_cv: (Mutex::new(()), Condvar::new()),
                poisoned: AtomicBool::new(false),
                listeners: RwLock::new(Vec::new()),
                failpoints: Failpoints::default(),
                journal: OnceLock::new(),
                _dir: dir,
            }),
        })
    }

    /// Uses the commit journal in directory `path`: restores the chunks it
    /// holds that the store lacks and replays the entries past the store's
    /// applied index (a crash lost them from the unsynced store), syncs the
    /// store, then logs every later batch there first. A missing journal is created with files of `create` bytes;
    /// with `None` a missing journal means the store has none (Ok(false)).
    pub fn attach_journal(&self, path: &Path, create: Option<u64>) -> Result<bool, EngineError> {
        if self.inner.journal.get().is_some() {
            return Err(EngineError::Corrupt("commit journal attached twice".into()));
        }
        if create.is_none() && !Wal::exists(path) {
            return Ok(false);
        }
        let (mut wal, records) = Wal::open(path, create.unwrap_or(0), self.inner.backend.clone())?;
        let applied = self.applied_index();
        let pending: Vec<&LogEntry> = records
            .iter()
            .flat_map(|r| &r.entries)
            .filter(|e| e.index > applied)
            .collect();
        if let Some(first) = pending.first()
            && first.index != applied + 1
        {
            return Err(EngineError::Corrupt(format!(
                "the commit journal resumes at entry {} but the store has applied {applied}",
                first.index
            )));
        }
        // Every chunk the journal holds that the store lacks: those of the
        // entries to replay, and those of applied entries whose chunks the
        // store kept in memory until a checkpoint that never came
        // (`Backend::put_journaled_chunks`).
        // `Wal::open` synced the journal files, so the store may hold
        // them until the sync below writes them, once.
        let mut restored = std::collections::BTreeMap::new();
        for (h, data) in records.iter().flat_map(|r| &r.chunks) {
            if !restored.contains_key(h) && !self.inner.backend.contains(Space::Chunks, h)? {
                restored.insert(*h, crate::store::Value::from(data.as_slice()));
            }
        }
        if !restored.is_empty() {
            tracing::info!(
                chunks = restored.len(),
                "restored chunks from the commit journal"
            );
            self.inner
                .backend
                .put_journaled_chunks(restored.into_iter().collect())?;
        }
        if !pending.is_empty() {
            let last = pending.last().map_or(applied, |e| e.index);
            self.replay(pending.iter().copied(), 256, false)
                .map_err(|e| EngineError::Corrupt(format!("replaying the commit journal: {e}")))?;
            tracing::info!(from = applied + 1, to = last, "replayed the commit journal");
        }
        // IMPORTANT: the replayed entries must be durable in the store
        // before the journal may overwrite their records.
        self.inner.backend.sync()?;
        wal.recovered();
        self.inner
            .journal
            .set(Mutex::new(wal))
            .map_err(|_| EngineError::Corrupt("commit journal attached twice".into()))?;
        Ok(true)
    }

    /// With a commit journal: waits until no checkpoint is in progress and
    /// returns the journal's current generation (it changes at each file
    /// switch, which starts a checkpoint). For tests that need to know
    /// what the store holds without a sync.
    #[doc(hidden)]
    #[must_use]
    pub fn settle_journal(&self) -> Option<u64> {
        self.inner.journal.get().map(|j| j.lock().settle())
    }

    /// The backend.
    #[must_use]
    pub fn backend(&self) -> &dyn Backend {
        &*self.inner.backend
    }

    /// The workspace id.
    #[must_use]
    pub fn workspace(&self) -> WorkspaceId {
        self.inner.workspace
    }

    /// Last applied (durable here) log index.
    #[must_use]
    pub fn applied_index(&self) -> u64 {
        self.inner.applied.load(Ordering::Acquire)
    }

    /// Counters after the last applied index.
    #[must_use]
    pub fn status(&self) -> Status {
        Status {
            workspace: self.inner.workspace,
            meta: self.inner.published.read().clone(),
        }
    }

    /// Waits until the applied index reaches `index`; false on timeout.
    pub fn wait_applied(&self, index: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &self.inner.applied_cv;
        let mut g = m.lock();
        while self.applied_index() < index {
            if cv.wait_until(&mut g, deadline).timed_out() {
                return self.applied_index() >= index;
            }
        }
        true
    }

    /// Registers a callback run after each durable batch.
    pub fn add_listener(&self, l: Listener) {
        self.inner.listeners.write().push(l);
    }

    /// Named failpoints of this engine (tests).
    #[must_use]
    pub fn failpoints(&self) -> &Failpoints {
        &self.inner.failpoints
    }

    /// Whether a failed durable write has poisoned the engine.
    #[must_use]
    pub fn is_poisoned(&self) -> bool {
        self.inner.poisoned.load(Ordering::Acquire)
    }

    /// Starts a write batch, taking the single-writer lock.
    pub fn batch(&self) -> Result<Batch<'_>, EngineError> {
        if self.is_poisoned() {
            return Err(EngineError::Poisoned);
        }
        let w = self.inner.writer.lock();
        let meta = w.meta.clone();
        Ok(Batch {
            engine: self,
            txn: Txn::new(&*self.inner.backend),
            w,
            meta,
            applied: Vec::new(),
            dirty: false,
            delta: Vec::new(),
            flush_merkle: false,
        })
    }

    /// Writes the Merkle branches held in memory to the store (a store
    /// batch without a log entry), so that the store's merkle space is the
    /// whole trie. [`crate::fsck::check`] does this first. Without it the
    /// store is still complete: opening it folds the delta records in.
    pub fn flush_merkle(&self) -> Result<(), EngineError> {
        let mut b = self.batch()?;
        if b.w.deltas.is_empty() && b.w.trie.held_len() == 0 {
            return Ok(());
        }
        b.flush_merkle = true;
        b.dirty = true;
        b.finish(false)?;
        Ok(())
    }

    /// The ack stored for an intent, if it committed.
    pub fn dedupe(&self, id: &IntentId) -> Result<Option<Ack>, EngineError> {
        match self.backend().get(Space::Dedupe, &keys::dedupe_key(id))? {
            Some(v) => Ack::decode(&v)
                .map(Some)
                .map_err(|e| EngineError::Corrupt(format!("dedupe record: {e}"))),
            None => Ok(None),
        }
    }

    /// The Merkle proof of one canonical record against the current root.
    pub fn prove(&self, space: Space, key: &[u8]) -> Result<hsfs_merkle::Proof, EngineError> {
        let mut w = self.inner.writer.lock();
        let kh = keys::record_key_hash(space, key);
        w.trie
            .prove(&MerkleNodes(self.backend()), &kh)
            .map_err(|e| EngineError::from(merkle_fail(e)))
    }

    fn publish(&self, meta: &Meta, applied: &[Applied]) {
        *self.inner.published.write() = meta.clone();
        self.inner.applied.store(meta.applied, Ordering::Release);
        {
            let _g = self.inner.applied_cv.0.lock();
            self.inner.applied_cv.1.notify_all();
        }
        if !applied.is_empty() {
            for l in self.inner.listeners.read().iter() {
                l(applied);
            }
        }
    }
}

/// A write batch: a transaction plus the writer lock. Ops applied through it
/// become visible and durable together in [`Batch::finish`].
pub struct Batch<'e> {
    engine: &'e Engine,
    w: MutexGuard<'e, Writer>,
    txn: Txn<'e>,
    meta: Meta,
    applied: Vec<Applied>,
    dirty: bool,
    /// The leaf changes of this batch's ops (a `Space::MerkleDelta` record).
    delta: Vec<u8>,
    /// Write every held Merkle branch with this batch.
    flush_merkle: bool,
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        // A batch dropped without `finish` (an error path) must not leave
        // its Merkle changes behind for the next batch.
        if self.w.trie.has_pending() {
            self.w.trie.reset();
        }
    }
}

impl<'e> Batch<'e> {
    /// Counters including the ops applied so far in this batch.
    #[must_use]
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The engine.
    #[must_use]
    pub fn engine(&self) -> &'e Engine {
        self.engine
    }

    /// Bytes buffered so far.
    #[must_use]
    pub fn buffered_bytes(&self) -> usize {
        self.txn.buffered_bytes()
    }

    /// Number of log entries in the batch.
    #[must_use]
    pub fn len(&self) -> usize {
        self.applied.len()
    }

    /// Whether the batch holds no log entry.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.applied.is_empty()
    }

    /// Read access to the state as of this batch (committed plus buffered).
    #[must_use]
    pub fn txn(&self) -> &Txn<'e> {
        &self.txn
    }

    /// The ack stored for an intent (including ones in this batch).
    pub fn dedupe(&self, id: &IntentId) -> Result<Option<Ack>, EngineError> {
        match self.txn.get(Space::Dedupe, &keys::dedupe_key(id))? {
            Some(v) => Ack::decode(&v)
                .map(Some)
                .map_err(|e| EngineError::Corrupt(format!("dedupe record: {e}"))),
            None => Ok(None),
        }
    }

    /// Whether a chunk is stored (or buffered in this batch).
    pub fn has_chunk(&self, hash: &Hash) -> Result<bool, EngineError> {
        Ok(self.txn.contains(Space::Chunks, hash)?)
    }

    /// Buffers a chunk the caller has verified against `hash`.
    ///
    /// IMPORTANT: `hash` must be the BLAKE3 hash of `data` (take both from
    /// a [`crate::chunks::Payload`], which is only built by hashing or
    /// verifying). The commit journal does not checksum chunk bytes: its
    /// reader takes a chunk that does not hash to its address for a torn
    /// record and ends the journal there, so a wrong pair would lose the
    /// commits from that batch on after a crash. Debug builds assert it.
    pub fn put_chunk(&mut self, hash: Hash, data: impl Into<crate::store::Value>) {
        let data = data.into();
        self.txn.put(Space::Chunks, hash.to_vec(), data);
        self.dirty = true;
    }

    /// Applies one op in the transaction; on failure the op is rolled back
    /// (including the counters) and the batch can continue.
    fn apply_op(
        &mut self,
        op: &Op,
        now: Nanos,
    ) -> Result<(OpResult, Vec<crate::txn::Change>), Fail> {
        let saved = self.meta.clone();
        self.txn.begin_op();
        match apply::apply(
            &mut self.txn,
            self.engine.inner.workspace,
            &mut self.meta,
            op,
            now,
        ) {
            Ok(r) => Ok((r, self.txn.finish_op())),
            Err(e) => {
                self.txn.rollback_op();
                self.meta = saved;
                Err(e)
            }
        }
    }

    /// Folds an op's record changes into the Merkle trie; returns the root.
    fn merkle(&mut self, changes: &[crate::txn::Change]) -> Result<Hash, Fail> {
        let store = MerkleNodes(&*self.engine.inner.backend);
        for (space, key, value) in changes {
            let kh = keys::record_key_hash(*space, key);
            match value {
                Some(v) => {
                    let vh = keys::record_value_hash(v);
                    self.w.trie.insert(&store, &kh, &vh).map_err(merkle_fail)?;
                    records::encode_delta_item(&mut self.delta, &kh, Some(&vh));
                }
                None => {
                    self.w.trie.remove(&store, &kh).map_err(merkle_fail)?;
                    records::encode_delta_item(&mut self.delta, &kh, None);
                }
            }
        }
        self.w.trie.root(&store).map_err(merkle_fail)
    }

    fn append(
        &mut self,
        entry: &LogEntry,
        result: OpResult,
        changes: Vec<crate::txn::Change>,
    ) -> Ack {
        let ack = Ack {
            index: entry.index,
            op_id: entry.op_id,
            committed_at: entry.committed_at,
            root: entry.root,
            result,
        };
        self.txn.put(
            Space::Log,
            entry.index.to_be_bytes().to_vec(),
            entry.encode(),
        );
        self.txn.put(
            Space::Dedupe,
            keys::dedupe_key(&entry.intent).to_vec(),
            ack.encode(),
        );
        self.meta.applied = entry.index;
        self.meta.last_time = entry.committed_at;
        self.meta.root = entry.root;
        self.applied.push(Applied {
            entry: Arc::new(entry.clone()),
            result,
            changes: changes.into_iter().map(|(s, k, _)| (s, k)).collect(),
        });
        self.dirty = true;
        ack
    }

    /// Leader path: applies the intent's op as the next log entry at time
    /// `committed_at` (which must exceed the last one). An op that changes
    /// nothing (e.g. opening an existing file with O_CREAT) is acknowledged
    /// at the current index without a log entry. Callers check
    /// [`Batch::dedupe`] first.
    pub fn commit_intent(&mut self, intent: &Intent, committed_at: Nanos) -> Result<Ack, Fail> {
        assert!(
            committed_at > self.meta.last_time,
            "committed_at must increase"
        );
        let (result, changes) = self.apply_op(&intent.op, committed_at)?;
        if changes.is_empty() && !matches!(intent.op, Op::Genesis { .. }) {
            return Ok(Ack {
                index: self.meta.applied,
                op_id: [0; 16],
                committed_at: self.meta.last_time,
                root: self.meta.root,
                result,
            });
        }
        let root = self.merkle(&changes)?;
        let index = self.meta.applied + 1;
        let entry = LogEntry {
            index,
            op_id: crate::op::op_id(&self.engine.inner.workspace, index),
            committed_at,
            intent: intent.id,
            origin: intent.origin.clone(),
            op: intent.op.clone(),
            hazard: None,
            root,
        };
        Ok(self.append(&entry, result, changes))
    }

    /// Replica path: applies a committed entry, checking order, chunks and
    /// the resulting root. On error the batch must be abandoned (see
    /// [`Engine::replay`], which keeps the entries before the failing one).
    pub fn replay(&mut self, entry: &LogEntry) -> Result<(), ReplayError> {
        let index = entry.index;
        if index != self.meta.applied + 1 {
            return Err(ReplayError::Gap {
                expected: self.meta.applied + 1,
                got: index,
            });
        }
        if entry.committed_at <= self.meta.last_time {
            return Err(ReplayError::Time {
                index,
                time: entry.committed_at,
                last: self.meta.last_time,
            });
        }
        for c in entry.op.chunks() {
            let present = self
                .has_chunk(&c.hash)
                .map_err(|source| ReplayError::Engine { index, source })?;
            if !present {
                return Err(ReplayError::Chunk {
                    index,
                    hash: c.hash,
                    why: "is missing",
                });
            }
        }
        let eng = |f: Fail| ReplayError::Engine {
            index,
            source: f.into(),
        };
        let (result, changes) = match self.apply_op(&entry.op, entry.committed_at) {
            Ok(x) => x,
            Err(Fail::Errno(errno)) => return Err(ReplayError::Apply { index, errno }),
            Err(f) => return Err(eng(f)),
        };
        let computed = self.merkle(&changes).map_err(eng)?;
        if computed != entry.root {
            return Err(ReplayError::RootMismatch {
                index,
                expected: entry.root,
                computed,
            });
        }
        self.append(entry, result, changes);
        Ok(())
    }

    /// Writes the batch atomically (durably with `sync`), publishes the new
    /// applied index and runs listeners. Returns what was applied.
    pub fn finish(mut self, sync: bool) -> Result<Vec<Applied>, EngineError> {
        if !self.dirty {
            return Ok(Vec::new());
        }
        let m = &self.meta;
        let counters: [(&[u8], u64); 5] = [
            (meta::APPLIED, m.applied),
            (meta::NEXT_INO, m.next_ino),
            (meta::LAST_TIME, m.last_time as u64),
            (meta::NODES, m.nodes),
            (meta::BYTES, m.bytes),
        ];
        for (k, v) in counters {
            self.txn
                .put(Space::Meta, k.to_vec(), v.to_be_bytes().to_vec());
        }
        self.txn
            .put(Space::Meta, meta::ROOT.to_vec(), m.root.to_vec());
        // `root()` has run for every entry, so every branch hash is current.
        let store = MerkleNodes(&*self.engine.inner.backend);
        self.w
            .trie
            .root(&store)
            .map_err(|e| EngineError::from(merkle_fail(e)))?;
        let fp = &self.engine.inner.failpoints;
        if fp.hit("batch.before_write") {
            self.w.trie.reset();
            return Err(StoreError::Injected("batch.before_write").into());
        }
        // The Merkle branches: all held ones with this batch's (a flush), or
        // only this batch's leaf changes, its branches held in memory.
        let flush = self.flush_merkle
            || self.w.trie.held_len() + self.w.trie.pending_len() >= MERKLE_HOLD_BRANCHES
            || self.w.deltas.len() >= MERKLE_HOLD_DELTAS;
        let delta_key = self.meta.applied.to_be_bytes();
        if flush {
            // Copied out: the trie forgets them only once they are stored
            // (after a failed write it must still hold them).
            for (path, branch) in self.w.trie.writes() {
                match branch {
                    Some(b) => self.txn.put(Space::Merkle, path.to_key(), b.encode()),
                    None => self.txn.delete(Space::Merkle, path.to_key()),
                }
            }
            for k in &self.w.deltas {
                self.txn.delete(Space::MerkleDelta, k.to_vec());
            }
        } else if self.w.trie.has_pending() {
            // IMPORTANT: one delta per batch, keyed by its last index: the
            // batch's entries are consecutive, and a later batch with
            // Merkle changes has a higher last index.
            let delta = std::mem::take(&mut self.delta);
            self.txn.put(Space::MerkleDelta, delta_key.to_vec(), delta);
        }
        let (chunks, mut items): (Vec<_>, Vec<_>) =
            std::mem::replace(&mut self.txn, Txn::new(&*self.engine.inner.backend))
                .into_items()
                .into_iter()
                .partition(|i| i.space == Space::Chunks);
        // Chunks are only ever added (never deleted), under their hash.
        let chunks: Vec<(Hash, crate::store::Value)> = chunks
            .into_iter()
            .map(|i| {
                let hash = i.key.as_slice().try_into().expect("chunk keys are hashes");
                (hash, i.value.expect("chunks are never deleted"))
            })
            .collect();
        // With a journal, the batch's record there is the commit point (one
        // fdatasync of a pre-allocated file); the store is written without
        // a sync and checkpointed in the background.
        let backend = &*self.engine.inner.backend;
        let mut journal = self.engine.inner.journal.get().map(|j| j.lock());
        // A batch with neither entries nor chunks (a Merkle flush) has
        // nothing to log: the store holds it or, after a crash, the deltas.
        if let Some(j) = &mut journal
            && !(self.applied.is_empty() && chunks.is_empty())
        {
            let record = RecordRef {
                entries: self.applied.iter().map(|a| &*a.entry).collect(),
                chunks: chunks.iter().map(|(h, v)| (*h, &v[..])).collect(),
            };
            if let Err(e) = j.append(&record, sync) {
                return Err(self.poison(e, "commit journal write failed"));
            }
            if fp.hit("journal.after_write") {
                // The record is in the journal but the batch is not applied.
                let e = StoreError::Injected("journal.after_write");
                return Err(self.poison(e, "failpoint after the journal write"));
            }
        }
        let held = if journal.is_some() && sync {
            // The synced record holds the chunks: the store may keep them
            // in memory until the checkpoint writes them, once. Unsynced
            // batches (replicas) and stores without a journal keep them in
            // the store's own batch: nothing durable holds them otherwise.
            chunks
        } else {
            let stored = chunks.into_iter().map(|(h, v)| BatchItem::chunk(&h, v));
            items.extend(stored);
            Vec::new()
        };
        // IMPORTANT: the chunks are stored before the entries that use them
        // become visible.
        if !held.is_empty()
            && let Err(e) = backend.put_journaled_chunks(held)
        {
            return Err(self.poison(e, "batch write failed"));
        }
        if let Err(e) = backend.commit(items, sync && journal.is_none()) {
            return Err(self.poison(e, "batch write failed"));
        }
        drop(journal);
        if flush {
            self.w.trie.written();
            self.w.deltas.clear();
        } else if self.w.trie.has_pending() {
            self.w.trie.hold();
            self.w.deltas.push(delta_key);
        }
        self.w.meta = self.meta.clone();
        let applied = std::mem::take(&mut self.applied);
        self.engine.publish(&self.meta, &applied);
        Ok(applied)
    }

    /// A write of this batch failed part way. IMPORTANT: the journal may
    /// hold its record (with a journal, any failure after the append) or
    /// the store may hold part of it: refuse further writes until restart,
    /// or the next batch would reuse the same log indexes and recovery
    /// would find both.
    fn poison(&mut self, e: StoreError, what: &str) -> EngineError {
        self.w.trie.reset();
        self.engine.poison(e, what)
    }

    /// Drops the batch without writing; the trie forgets buffered changes.
    pub fn abandon(self) {
        drop(self);
    }
}

impl Engine {
    /// Applies committed entries in order (a replica catching up, or a
    /// golden trace), writing every `batch_size` entries. Stops at the first
    /// entry that cannot be applied, after making every earlier entry
    /// durable, and returns its error.
    pub fn replay<'a>(
        &self,
        entries: impl IntoIterator<Item = &'a LogEntry>,
        batch_size: usize,
        sync: bool,
    ) -> Result<u64, ReplayError> {
        let entries: Vec<&LogEntry> = entries.into_iter().collect();
        let mut done = 0;
        for group in entries.chunks(batch_size.max(1)) {
            let mut b = self.batch().map_err(|source| ReplayError::Engine {
                index: group[0].index,
                source,
            })?;
            for (i, e) in group.iter().enumerate() {
                if let Err(err) = b.replay(e) {
                    b.abandon();
                    // Re-apply the good prefix (deterministic, so it succeeds
                    // again) and keep it.
                    if i > 0 {
                        let mut b = self.batch().map_err(|source| ReplayError::Engine {
                            index: e.index,
                            source,
                        })?;
                        for g in &group[..i] {
                            b.replay(g)?;
                        }
                        b.finish(sync).map_err(|source| ReplayError::Engine {
                            index: e.index,
                            source,
                        })?;
                    }
                    return Err(err);
                }
            }
            let last = group.last().expect("non-empty group").index;
            b.finish(sync).map_err(|source| ReplayError::Engine {
                index: last,
                source,
            })?;
            done += group.len() as u64;
        }
        Ok(done)
    }

    /// Stores chunks for a later replay, verifying each against its hash.
    /// Returns the hashes that did not verify (they are not stored).
    pub fn ingest_chunks<'a>(
        &self,
        chunks: impl IntoIterator<Item = (Hash, &'a [u8])>,
    ) -> Result<Vec<Hash>, EngineError> {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for (h, data) in chunks {
            if *blake3::hash(data).as_bytes() == h {
                good.push((h, data));
            } else {
                bad.push(h);
            }
        }
        if good.is_empty() {
            return Ok(bad);
        }
        let items = || {
            good.iter()
                .map(|(h, data)| BatchItem::chunk(h, (*data).into()))
                .collect()
        };
        let Some(journal) = self.inner.journal.get() else {
            self.backend().commit(items(), false)?;
            return Ok(bad);
        };
        // Journaled without a sync: the sync of the batch that uses them
        // covers them. IMPORTANT: store and journal are written under the
        // journal lock, so a checkpoint (triggered by a later append) always
        // finds them in the store.
        let mut j = journal.lock();
        let record = RecordRef {
            entries: Vec::new(),
            chunks: good.clone(),
        };
        if let Err(e) = j.append(&record, false) {
            return Err(self.poison(e, "commit journal write failed"));
        }
        if let Err(e) = self.backend().commit(items(), false) {
            // The journal holds chunks the store lacks: like a batch.
            return Err(self.poison(e, "chunk write failed"));
        }
        Ok(bad)
    }

    /// A durable write failed part way: refuse further writes until
    /// restart (see `Batch::poison`).
    fn poison(&self, e: StoreError, what: &str) -> EngineError {
        self.inner.poisoned.store(true, Ordering::Release);
        tracing::error!(error = %e, "{what}; engine poisoned");
        e.into()
    }
}
