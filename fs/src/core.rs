//! The filesystem core: everything the FUSE adapter needs, testable without
//! the kernel.
//!
//! Reads are served from the engine. Mutations become ops for the
//! [`Committer`]; their completion callbacks run on the commit thread.
//!
//! Kernel lookup-count contract: every reply that hands the kernel an inode
//! (lookup, create, mkdir, mknod, symlink, link, readdirplus entries) adds
//! one to that inode's count, and `forget(ino, n)` subtracts `n`. Inodes
//! with a zero count are unknown to the kernel: no invalidation is sent for
//! them, and an orphan (unlinked while open) is reclaimed once it is neither
//! open nor known.
//!
//! Lock order: `handles` and `kernel` are leaf locks (never held while
//! calling the engine, the committer or another lock); `OpenTable::counts`
//! likewise.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hsfs_engine::chunks::Payload;
use hsfs_engine::commit::{Done, OpenFiles};
use hsfs_engine::op::{Ack, Op, OpResult, WriteAt};
use hsfs_engine::{DirEntry, Engine, EngineError, Errno, FileKind, Ino, Node};
use parking_lot::Mutex;

use crate::cookies::Cookies;
use hsfs_engine::committer::Committer;

/// Kernel cache behaviour of the mount (SPEC 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheMode {
    /// Attributes, entries (also negative ones), symlinks, directory
    /// listings and pages of read-only handles are cached by the kernel for
    /// `ttl`; every change is invalidated exactly when it is applied.
    Cached {
        /// Entry and attribute timeout.
        ttl: Duration,
    },
    /// Nothing is cached: zero timeouts and direct I/O on every handle.
    Off,
}

impl CacheMode {
    /// Entry/attribute timeout to give the kernel.
    #[must_use]
    pub fn ttl(self) -> Duration {
        match self {
            CacheMode::Cached { ttl } => ttl,
            CacheMode::Off => Duration::ZERO,
        }
    }
}

/// Mount settings.
#[derive(Clone, Debug)]
pub struct FsConfig {
    /// Kernel caching.
    pub cache: CacheMode,
    /// Whether the kernel may cache that a name does not exist. True where
    /// every change comes through this mount (embedded). A worker's mount
    /// must not: another host's create is invalidated asynchronously, and a
    /// local op can fail because of it (mkdir: EEXIST) before the notice
    /// lands — `mkdir -p` then stats the name and must find it.
    pub negative_entries: bool,
    /// Readdir cookies remembered over all directories (see
    /// [`crate::cookies`]; about 100 bytes each for short names: walking
    /// 100k files grew the mount's RSS by 10 MiB more with the registry
    /// than without, in `hsfs-bench scale --only memory`).
    pub cookie_names: usize,
}

impl Default for FsConfig {
    fn default() -> Self {
        FsConfig {
            cache: CacheMode::Cached {
                ttl: Duration::from_secs(30),
            },
            negative_entries: true,
            cookie_names: crate::cookies::DEFAULT_LIMIT,
        }
    }
}

/// Kernel cache invalidation, implemented over fuser's `Notifier`.
pub trait KernelCache: Send + Sync {
    /// Drops cached attributes and the pages in `[offset, offset+len)`
    /// (`offset < 0`: attributes only; `len <= 0`: to the end).
    fn inval_inode(&self, ino: Ino, offset: i64, len: i64);
    /// Drops a cached directory entry (positive or negative).
    fn inval_entry(&self, parent: Ino, name: &[u8]);
}

/// Called on open-lease transitions: `(ino, true)` when an inode becomes
/// open on this mount, `(ino, false)` when its last handle closes.
pub type LeaseListener = Arc<dyn Fn(Ino, bool) + Send + Sync>;

/// Per-inode open counts: the open-lease table of this mount. The embedded
/// leader asks it whether a node losing its last link is still open; a
/// worker forwards its transitions to the leader.
#[derive(Default)]
pub struct OpenTable {
    counts: Mutex<HashMap<Ino, u32>>,
    listener: OnceLock<LeaseListener>,
}

impl OpenTable {
    /// Reports every later 0 -> 1 and 1 -> 0 transition to `l`.
    pub fn set_listener(&self, l: LeaseListener) {
        let _ = self.listener.set(l);
    }

    fn inc(&self, ino: Ino) {
        let first = {
            let mut m = self.counts.lock();
            let c = m.entry(ino).or_default();
            *c += 1;
            *c == 1
        };
        if first && let Some(l) = self.listener.get() {
            l(ino, true);
        }
    }

    /// Returns the count left.
    fn dec(&self, ino: Ino) -> u32 {
        let left = {
            let mut m = self.counts.lock();
            let Some(c) = m.get_mut(&ino) else {
                return 0;
            };
            *c -= 1;
            let left = *c;
            if left == 0 {
                m.remove(&ino);
            }
            left
        };
        if left == 0
            && let Some(l) = self.listener.get()
        {
            l(ino, false);
        }
        left
    }
}

impl OpenFiles for OpenTable {
    fn is_open(&self, ino: Ino) -> bool {
        self.counts.lock().contains_key(&ino)
    }
}

/// What the kernel holds of an inode.
#[derive(Default)]
struct Known {
    /// Lookup count.
    lookups: u64,
    /// Whether pages of it may be in the page cache (it was opened with
    /// FOPEN_KEEP_CACHE since the kernel learnt of it).
    cached_pages: bool,
}

/// Cookies of "." and ".." (the others come from [`Cookies`]: a listing
/// resumes after the name its cookie stands for, so it stays stable while
/// entries come and go).
const COOKIE_DOT: u64 = 1;
const COOKIE_DOTDOT: u64 = 2;
/// Cookies a directory handle remembers itself, besides the shared
/// registry, which may forget a paused listing's cookies when many others
/// are listed meanwhile: the kernel goes on from one of the entries of the
/// handle's last replies (a reply holds at most a few hundred).
const HANDLE_COOKIES: usize = 1024;

enum HandleKind {
    File {
        write: bool,
    },
    /// The handle's latest cookies and their names, oldest first.
    Dir(Mutex<VecDeque<(u64, Vec<u8>)>>),
}

struct Handle {
    ino: Ino,
    kind: HandleKind,
}

/// How an open file is to be flagged to the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenMode {
    /// FOPEN_DIRECT_IO: every read and write reaches us.
    pub direct_io: bool,
    /// FOPEN_KEEP_CACHE: pages cached by earlier opens stay valid.
    pub keep_cache: bool,
}

/// One item of a directory listing.
pub enum DirItem<'a> {
    /// "." or "..": name, inode.
    Dots(&'static str, Ino),
    /// A real entry, with its node when the listing is "plus".
    Entry(&'a DirEntry, Option<&'a Node>),
}

/// The filesystem core.
pub struct Core {
    engine: Engine,
    committer: Arc<dyn Committer>,
    opens: Arc<OpenTable>,
    known: Mutex<HashMap<Ino, Known>>,
    handles: Mutex<HashMap<u64, Arc<Handle>>>,
    next_fh: AtomicU64,
    kernel: OnceLock<Arc<dyn KernelCache>>,
    /// Last attributes of inodes deleted while the kernel still holds them
    /// (an fd of a removed directory or FIFO, an O_PATH fd): `fstat` keeps
    /// working, with nlink 0, until the kernel forgets the inode. Local to
    /// this mount, never replicated.
    ghosts: Mutex<HashMap<Ino, Node>>,
    /// Readdir cookies, shared by all handles (see [`Cookies`]).
    cookies: Cookies,
    config: FsConfig,
}

fn eng(e: EngineError) -> Errno {
    if e.errno() == Errno::EIO {
        tracing::error!(error = %e, "engine error");
    }
    e.errno()
}

impl Core {
    /// A core over `engine`, sending mutations to `committer`. `opens` must
    /// be the table the committer's leader consults.
    pub fn new(
        engine: Engine,
        committer: Arc<dyn Committer>,
        opens: Arc<OpenTable>,
        config: FsConfig,
    ) -> Core {
        Core {
            engine,
            committer,
            opens,
            known: Mutex::new(HashMap::new()),
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            kernel: OnceLock::new(),
            ghosts: Mutex::new(HashMap::new()),
            cookies: Cookies::new(COOKIE_DOTDOT + 1, config.cookie_names),
            config,
        }
    }

    /// Installs the kernel notifier (available once the mount exists).
    pub fn set_kernel_cache(&self, k: Arc<dyn KernelCache>) {
        let _ = self.kernel.set(k);
    }

    /// The engine.
    #[must_use]
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The committer.
    #[must_use]
    pub fn committer(&self) -> &Arc<dyn Committer> {
        &self.committer
    }

    /// Mount settings.
    #[must_use]
    pub fn config(&self) -> &FsConfig {
        &self.config
    }

    /// Number of open handles (files and directories).
    #[must_use]
    pub fn open_handles(&self) -> usize {
        self.handles.lock().len()
    }

    /// Number of inodes the kernel holds.
    #[must_use]
    pub fn known_inodes(&self) -> usize {
        self.known.lock().len()
    }

    fn remember(&self, ino: Ino) {
        self.known.lock().entry(ino).or_default().lookups += 1;
    }

    /// The kernel forgets `n` lookups of `ino`.
    pub fn forget(&self, ino: Ino, n: u64) {
        let gone = {
            let mut k = self.known.lock();
            match k.get_mut(&ino) {
                Some(e) if e.lookups > n => {
                    e.lookups -= n;
                    false
                }
                Some(_) => {
                    k.remove(&ino);
                    true
                }
                None => false,
            }
        };
        if gone {
            self.ghosts.lock().remove(&ino);
            self.maybe_reclaim(ino);
        }
    }

    /// Attributes of an inode (or of a deleted one the kernel still holds).
    pub fn getattr(&self, ino: Ino) -> Result<Node, Errno> {
        match self.engine.getattr(ino) {
            Err(e) if e.errno() == Errno::ENOENT => {
                self.ghosts.lock().get(&ino).cloned().ok_or(Errno::ENOENT)
            }
            r => r.map_err(eng),
        }
    }

    /// The node a removal of `parent/name` is about to delete (taken before
    /// submitting the unlink, rmdir or replacing rename).
    #[must_use]
    pub fn removal_target(&self, parent: Ino, name: &[u8]) -> Option<Node> {
        self.engine.lookup(parent, name).ok()
    }

    /// After a committed removal: if it deleted a node the kernel still
    /// holds, keep its last attributes as a ghost.
    pub fn removed(&self, target: Option<Node>, ack: &Ack) {
        let Some(mut n) = target else { return };
        if !matches!(self.engine.node(n.ino), Ok(None)) || !self.known.lock().contains_key(&n.ino) {
            return;
        }
        n.nlink = 0;
        n.ctime = ack.committed_at;
        self.ghosts.lock().insert(n.ino, n);
    }

    /// Looks up a name; on success the kernel now holds the inode.
    pub fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Node, Errno> {
        let n = self.engine.lookup(parent, name).map_err(eng)?;
        self.remember(n.ino);
        Ok(n)
    }

    /// Submits a mutation. `done` runs once it is committed and applied here.
    pub fn mutate(&self, op: Op, payload: Payload, done: Done) {
        self.committer.submit(op, payload, done);
    }

    /// For a committed op that produced a node: its attributes, counted as
    /// a lookup (the reply hands the inode to the kernel).
    pub fn entry_of(&self, ack: &Ack) -> Result<Node, Errno> {
        let OpResult::Node { ino, .. } = ack.result else {
            return Err(Errno::EIO);
        };
        let n = self.getattr(ino)?;
        self.remember(ino);
        Ok(n)
    }

    fn new_handle(&self, ino: Ino, kind: HandleKind) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles
            .lock()
            .insert(fh, Arc::new(Handle { ino, kind }));
        fh
    }

    fn handle(&self, fh: u64) -> Result<Arc<Handle>, Errno> {
        self.handles.lock().get(&fh).cloned().ok_or(Errno::EBADF)
    }

    /// Opens a file: registers the handle and the open-lease. `flags` are
    /// the open(2) flags.
    pub fn open(&self, ino: Ino, flags: i32) -> Result<(u64, OpenMode), Errno> {
        let n = self.getattr(ino)?;
        if n.kind == FileKind::Dir {
            return Err(Errno::EISDIR);
        }
        let write = flags & libc::O_ACCMODE != libc::O_RDONLY;
        if write && self.committer.read_only() {
            return Err(Errno::EROFS);
        }
        let cached = matches!(self.config.cache, CacheMode::Cached { .. }) && !write;
        let mode = OpenMode {
            direct_io: !cached,
            keep_cache: cached,
        };
        if cached && let Some(k) = self.known.lock().get_mut(&ino) {
            k.cached_pages = true;
        }
        self.opens.inc(ino);
        Ok((self.new_handle(ino, HandleKind::File { write }), mode))
    }

    /// Registers the handle of a file just created by a committed op.
    pub fn open_created(&self, ino: Ino, flags: i32) -> (u64, OpenMode) {
        let write = flags & libc::O_ACCMODE != libc::O_RDONLY;
        self.opens.inc(ino);
        let fh = self.new_handle(ino, HandleKind::File { write });
        (
            fh,
            OpenMode {
                direct_io: true,
                keep_cache: false,
            },
        )
    }

    /// Closes a file handle; the last close of an orphan reclaims it.
    pub fn release(&self, fh: u64) {
        let Some(h) = self.handles.lock().remove(&fh) else {
            return;
        };
        if self.opens.dec(h.ino) == 0 {
            self.maybe_reclaim(h.ino);
        }
    }

    /// Deletes `ino` if it is an orphan that nothing holds any more (when
    /// this mount is the one that reclaims; workers leave it to the leader).
    pub fn maybe_reclaim(&self, ino: Ino) {
        if !self.committer.reclaims_orphans()
            || self.opens.is_open(ino)
            || self.known.lock().get(&ino).is_some_and(|k| k.lookups > 0)
        {
            return;
        }
        if !matches!(self.engine.node(ino), Ok(Some(n)) if n.nlink == 0)
            || self.committer.read_only()
        {
            return;
        }
        self.committer.submit(
            Op::Reclaim { ino },
            Payload::none(),
            Box::new(move |r| {
                // EINVAL/ENOENT: someone else reclaimed it first.
                if let Err(e) = r
                    && e != Errno::EINVAL
                    && e != Errno::ENOENT
                {
                    tracing::warn!(ino, error = %e, "orphan reclaim failed");
                }
            }),
        );
    }

    /// Reads from an open file.
    pub fn read(&self, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let h = self.handle(fh)?;
        self.engine.read(h.ino, offset, size as usize).map_err(eng)
    }

    /// Builds the write op for a handle; `append` from the file's current
    /// flags (O_APPEND can be toggled with fcntl after open).
    pub fn write_op(
        &self,
        fh: u64,
        offset: u64,
        data: &[u8],
        append: bool,
    ) -> Result<(Op, Payload), Errno> {
        let h = self.handle(fh)?;
        if !matches!(h.kind, HandleKind::File { write: true }) {
            return Err(Errno::EBADF);
        }
        let (at, off) = if append {
            (WriteAt::Append, None)
        } else {
            (WriteAt::Offset(offset), Some(offset))
        };
        let (chunks, payload) = Payload::split(off, data);
        Ok((
            Op::Write {
                ino: h.ino,
                at,
                chunks,
            },
            payload,
        ))
    }

    /// After a committed write: drop pages other handles may have cached.
    /// Only inval_inode is sent here, which takes no lock the writer holds.
    pub fn written(&self, ino: Ino, ack: &Ack) {
        let OpResult::Written { offset, len } = ack.result else {
            return;
        };
        let cached = self.known.lock().get(&ino).is_some_and(|k| k.cached_pages);
        if cached && let Some(k) = self.kernel.get() {
            k.inval_inode(ino, offset as i64, len as i64);
        }
    }

    /// Sends one invalidation notice, if the kernel holds what it names.
    pub fn invalidate(&self, n: &crate::invalidate::Notice) {
        let Some(k) = self.kernel.get() else { return };
        match n {
            crate::invalidate::Notice::Inode(ino, off, len) => {
                if self.known.lock().contains_key(ino) {
                    k.inval_inode(*ino, *off, *len);
                }
            }
            crate::invalidate::Notice::Entry(parent, name) => {
                if self.known.lock().contains_key(parent) {
                    k.inval_entry(*parent, name);
                }
            }
        }
    }

    /// Inode of an open handle.
    pub fn handle_ino(&self, fh: u64) -> Result<Ino, Errno> {
        Ok(self.handle(fh)?.ino)
    }

    /// Opens a directory.
    pub fn opendir(&self, ino: Ino) -> Result<u64, Errno> {
        let n = self.getattr(ino)?;
        if n.kind != FileKind::Dir {
            return Err(Errno::ENOTDIR);
        }
        Ok(self.new_handle(ino, HandleKind::Dir(Mutex::new(VecDeque::new()))))
    }

    /// Closes a directory handle.
    pub fn releasedir(&self, fh: u64) {
        self.handles.lock().remove(&fh);
    }

    /// Lists a directory from `offset` (0, or a cookie any handle of this
    /// directory gave out).
    /// `emit(cookie, item)` returns true when the reply buffer is full; the
    /// item is then not consumed. With `plus`, entries carry their node and
    /// every consumed entry counts as a lookup.
    pub fn readdir(
        &self,
        fh: u64,
        offset: u64,
        plus: bool,
        mut emit: impl FnMut(u64, DirItem<'_>) -> bool,
    ) -> Result<(), Errno> {
        let h = self.handle(fh)?;
        let HandleKind::Dir(recent) = &h.kind else {
            return Err(Errno::ENOTDIR);
        };
        let dir = self.getattr(h.ino)?;
        let mut after: Option<Vec<u8>> = None;
        if offset == 0 && emit(COOKIE_DOT, DirItem::Dots(".", dir.ino)) {
            return Ok(());
        }
        if offset <= COOKIE_DOT && emit(COOKIE_DOTDOT, DirItem::Dots("..", dir.parent)) {
            return Ok(());
        }
        if offset > COOKIE_DOTDOT {
            let own = recent
                .lock()
                .iter()
                .rev()
                .find(|(c, _)| *c == offset)
                .map(|(_, n)| n.clone());
            let name = match own {
                Some(n) => n,
                None => self
                    .cookies
                    .name(h.ino, offset)
                    .ok_or(Errno::EINVAL)?
                    .to_vec(),
            };
            after = Some(name);
        }
        loop {
            let page = self
                .engine
                .readdir(h.ino, after.as_deref(), 256)
                .map_err(eng)?;
            if page.is_empty() {
                return Ok(());
            }
            for e in &page {
                let node = if plus {
                    match self.engine.node(e.ino).map_err(eng)? {
                        Some(n) => Some(n),
                        None => continue, // removed meanwhile
                    }
                } else {
                    None
                };
                let cookie = self.cookies.cookie(h.ino, &e.name);
                if emit(cookie, DirItem::Entry(e, node.as_ref())) {
                    return Ok(());
                }
                if plus {
                    self.remember(e.ino);
                }
                let mut r = recent.lock();
                if r.len() == HANDLE_COOKIES {
                    r.pop_front();
                }
                r.push_back((cookie, e.name.clone()));
            }
            after = page.last().map(|e| e.name.clone());
        }
    }

    /// Orphans left by an earlier run are reclaimed at mount: no handle of
    /// a previous process can still be open.
    pub fn reclaim_stale_orphans(&self) -> Result<usize, Errno> {
        let orphans = self.engine.orphans().map_err(eng)?;
        for &ino in &orphans {
            self.maybe_reclaim(ino);
        }
        Ok(orphans.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::committer::Embedded;
    use hsfs_engine::ROOT_INO;
    use hsfs_engine::commit::CommitConfig;
    use hsfs_engine::op::Origin;

    fn core() -> (Core, Arc<Embedded>) {
        core_with(FsConfig::default())
    }

    fn core_with(config: FsConfig) -> (Core, Arc<Embedded>) {
        let backend = Arc::new(hsfs_engine::store::mem::MemBackend::new());
        let engine = Engine::init(
            backend,
            None,
            hsfs_engine::WorkspaceId([1; 16]),
            (0o755, 0, 0),
            1,
        )
        .unwrap();
        let opens = Arc::new(OpenTable::default());
        let c = Arc::new(Embedded::start(
            engine.clone(),
            CommitConfig::default(),
            opens.clone(),
            Origin::default(),
        ));
        (Core::new(engine, c.clone(), opens, config), c)
    }

    fn create(core: &Core, name: &str) -> Ino {
        create_in(core, ROOT_INO, name)
    }

    fn create_in(core: &Core, parent: Ino, name: &str) -> Ino {
        let a = core
            .committer()
            .commit(
                Op::Create {
                    parent,
                    name: name.into(),
                    kind: FileKind::File,
                    perm: 0o644,
                    uid: 0,
                    gid: 0,
                    excl: true,
                    truncate: false,
                },
                Payload::none(),
            )
            .unwrap();
        core.entry_of(&a).unwrap().ino
    }

    #[test]
    fn unlinked_open_file_lives_until_last_close_and_forget() {
        let (core, _c) = core();
        let ino = create(&core, "f");
        let (fh, _) = core.open(ino, libc::O_RDWR).unwrap();
        let (op, p) = core.write_op(fh, 0, b"data", false).unwrap();
        core.committer().commit(op, p).unwrap();
        core.committer()
            .commit(
                Op::Unlink {
                    parent: ROOT_INO,
                    name: b"f".to_vec(),
                    keep_orphan: false,
                },
                Payload::none(),
            )
            .unwrap();
        assert_eq!(core.read(fh, 0, 10).unwrap(), b"data");
        core.release(fh);
        // Still known to the kernel (one lookup from create): kept.
        assert!(core.engine().node(ino).unwrap().is_some());
        core.forget(ino, 1);
        // The reclaim is asynchronous; a barrier orders us after it.
        core.committer()
            .commit(Op::Fsync { ino: ROOT_INO }, Payload::none())
            .unwrap();
        assert!(core.engine().node(ino).unwrap().is_none());
        assert!(core.engine().orphans().unwrap().is_empty());
    }

    #[test]
    fn readdir_cookies_resume_by_name() {
        let (core, _c) = core();
        for n in ["b", "a", "c", "d"] {
            create(&core, n);
        }
        let fh = core.opendir(ROOT_INO).unwrap();
        let mut seen = Vec::new();
        let mut last = 0;
        // Take three items, then stop (buffer "full").
        core.readdir(fh, 0, false, |cookie, item| {
            if seen.len() == 3 {
                return true;
            }
            last = cookie;
            seen.push(match item {
                DirItem::Dots(n, _) => n.to_string(),
                DirItem::Entry(e, _) => String::from_utf8_lossy(&e.name).into_owned(),
            });
            false
        })
        .unwrap();
        assert_eq!(seen, [".", "..", "a"]);
        // "b" is removed and "aa" added before the next call.
        core.committer()
            .commit(
                Op::Unlink {
                    parent: ROOT_INO,
                    name: b"b".to_vec(),
                    keep_orphan: false,
                },
                Payload::none(),
            )
            .unwrap();
        create(&core, "aa");
        core.readdir(fh, last, true, |_, item| {
            if let DirItem::Entry(e, n) = item {
                assert!(n.is_some());
                seen.push(String::from_utf8_lossy(&e.name).into_owned());
            }
            false
        })
        .unwrap();
        assert_eq!(seen, [".", "..", "a", "aa", "c", "d"]);
        assert_eq!(
            core.readdir(fh, 999_999, false, |_, _| false),
            Err(Errno::EINVAL)
        );
        core.releasedir(fh);
        assert_eq!(core.open_handles(), 0);
    }

    fn unlink(core: &Core, name: &str) {
        core.committer()
            .commit(
                Op::Unlink {
                    parent: ROOT_INO,
                    name: name.as_bytes().to_vec(),
                    keep_orphan: false,
                },
                Payload::none(),
            )
            .unwrap();
    }

    /// Names listed by `fh` from `offset`, with the last cookie, taking at
    /// most `max` items, "." and ".." included (then the reply buffer is
    /// "full").
    fn list(core: &Core, fh: u64, offset: u64, max: usize) -> (Vec<String>, u64) {
        let (mut names, mut last, mut taken) = (Vec::new(), offset, 0);
        core.readdir(fh, offset, false, |cookie, item| {
            if taken == max {
                return true;
            }
            taken += 1;
            last = cookie;
            if let DirItem::Entry(e, _) = item {
                names.push(String::from_utf8_lossy(&e.name).into_owned());
            }
            false
        })
        .unwrap();
        (names, last)
    }

    #[test]
    fn a_listing_goes_on_from_another_handles_cookie() {
        // What the kernel does with cached listings: a handle fills the
        // cache and is closed; a later handle reads from the cache, the
        // reader unlinks what it read, the cache loses a page, and the
        // kernel asks the later handle to go on from the last cookie.
        let (core, _c) = core();
        for n in ["a", "b", "c", "d", "e"] {
            create(&core, n);
        }
        let first = core.opendir(ROOT_INO).unwrap();
        let (all, _) = list(&core, first, 0, usize::MAX);
        assert_eq!(all, ["a", "b", "c", "d", "e"]);
        let (_, after_b) = list(&core, first, 0, 4); // ".", "..", "a", "b"
        core.releasedir(first);
        unlink(&core, "a");
        unlink(&core, "b");
        let second = core.opendir(ROOT_INO).unwrap();
        assert_eq!(list(&core, second, after_b, usize::MAX).0, ["c", "d", "e"]);
        // And each name keeps its cookie: a new listing gives the same ones.
        let (_, again) = list(&core, second, 0, 3); // ".", "..", "c"
        let (_, from_first) = list(&core, second, after_b, 1);
        assert_eq!(again, from_first, "\"c\" has one cookie");
        core.releasedir(second);
    }

    #[test]
    fn a_paused_listing_keeps_its_cookies_when_the_registry_forgets() {
        // The shared registry remembers 8 names; listing 20 elsewhere makes
        // it forget the paused directory, not the handle its own cookies.
        let (core, _c) = core_with(FsConfig {
            cookie_names: 8,
            ..FsConfig::default()
        });
        for n in ["a", "b", "c", "d"] {
            create(&core, n);
        }
        let a = core
            .committer()
            .commit(
                Op::Mkdir {
                    parent: ROOT_INO,
                    name: b"big".to_vec(),
                    perm: 0o755,
                    uid: 0,
                    gid: 0,
                },
                Payload::none(),
            )
            .unwrap();
        let big = core.entry_of(&a).unwrap().ino;
        for i in 0..20 {
            create_in(&core, big, &format!("n{i:02}"));
        }
        let paused = core.opendir(ROOT_INO).unwrap();
        let (first, after_b) = list(&core, paused, 0, 4); // ".", "..", "a", "b"
        assert_eq!(first, ["a", "b"]);
        let other = core.opendir(big).unwrap();
        assert_eq!(list(&core, other, 0, usize::MAX).0.len(), 20);
        assert!(core.cookies.len() <= 8);
        assert_eq!(
            list(&core, paused, after_b, usize::MAX).0,
            ["big", "c", "d"]
        );
        core.releasedir(other);
        core.releasedir(paused);
    }

    #[test]
    fn read_only_handles_and_ebadf() {
        let (core, c) = core();
        let ino = create(&core, "f");
        let (fh, mode) = core.open(ino, libc::O_RDONLY).unwrap();
        assert!(mode.keep_cache && !mode.direct_io);
        assert_eq!(core.write_op(fh, 0, b"x", false).unwrap_err(), Errno::EBADF);
        assert_eq!(core.read(9999, 0, 1).unwrap_err(), Errno::EBADF);
        c.set_read_only(true);
        assert_eq!(core.open(ino, libc::O_WRONLY).unwrap_err(), Errno::EROFS);
        assert_eq!(
            core.committer()
                .commit(Op::Fsync { ino }, Payload::none())
                .unwrap_err(),
            Errno::EROFS
        );
    }
}
