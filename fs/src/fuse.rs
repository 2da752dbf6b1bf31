//! The fuser adapter: translates kernel requests into [`Core`] calls and
//! replies. Mutations reply from the commit thread when their commit
//! completes, so a request waiting for a commit holds no FUSE thread.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, CopyFileRangeFlags, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use hsfs_engine::chunks::Payload;
use hsfs_engine::op::{Op, RenameMode, SetAttr, SetTime, XattrMode};
use hsfs_engine::{Errno, FileKind, NAME_MAX, Nanos, Node};
use tracing::debug_span;

use crate::core::{CacheMode, Core, DirItem, OpenMode};
use crate::invalidate::Notice;

/// The `fuser::Filesystem` of an hsfs mount.
pub struct Fuse {
    core: Arc<Core>,
    ttl: Duration,
}

impl Fuse {
    /// Wraps a core.
    #[must_use]
    pub fn new(core: Arc<Core>) -> Fuse {
        let ttl = core.config().cache.ttl();
        Fuse { core, ttl }
    }
}

fn fe(e: Errno) -> fuser::Errno {
    fuser::Errno::from_i32(e.0)
}

fn time(t: Nanos) -> SystemTime {
    let d = Duration::from_nanos(t.unsigned_abs());
    if t >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

fn nanos(t: SystemTime) -> Nanos {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

fn kind(k: FileKind) -> FileType {
    match k {
        FileKind::File => FileType::RegularFile,
        FileKind::Dir => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
    }
}

/// `stat` attributes of a node: st_ino is the leader-assigned inode number.
#[must_use]
pub fn attr(n: &Node) -> FileAttr {
    FileAttr {
        ino: INodeNo(n.ino),
        size: n.size,
        blocks: n.blocks(),
        atime: time(n.atime),
        mtime: time(n.mtime),
        ctime: time(n.ctime),
        crtime: time(n.btime),
        kind: kind(n.kind),
        perm: (n.perm & 0o7777) as u16,
        nlink: n.nlink,
        uid: n.uid,
        gid: n.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

/// The reply for a name that does not exist, cacheable for the entry
/// timeout (a negative dentry): only `ino == 0` matters to the kernel.
fn negative_attr() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn name_of(name: &OsStr) -> Result<Vec<u8>, Errno> {
    let b = name.as_bytes();
    if b.len() > NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(b.to_vec())
}

/// Open flags of a file handle. FOPEN_NOFLUSH always: a write is committed
/// before it returns and locks are not released through FLUSH, so the FLUSH
/// the kernel would send at every close(2) is a round trip that does nothing.
fn fopen(m: OpenMode) -> FopenFlags {
    let mut f = FopenFlags::FOPEN_NOFLUSH;
    if m.direct_io {
        f |= FopenFlags::FOPEN_DIRECT_IO;
    }
    if m.keep_cache {
        f |= FopenFlags::FOPEN_KEEP_CACHE;
    }
    f
}

fn set_time(t: TimeOrNow) -> SetTime {
    match t {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(t) => SetTime::At(setattr_nanos(t)),
    }
}

/// Nanoseconds of a time decoded by fuser from a setattr request.
///
/// fuser 0.18 decodes the kernel's `(secs, nsecs)` of a time before 1970 as
/// `EPOCH - (|secs| s + nsecs ns)` instead of `EPOCH - |secs| s + nsecs ns`
/// (`system_time_from_time`, marked TODO there). Since `nsecs < 1e9`, the
/// original pair is recoverable: undo it here.
fn setattr_nanos(t: SystemTime) -> Nanos {
    match UNIX_EPOCH.duration_since(t) {
        Ok(before) if !before.is_zero() => {
            let secs = i64::try_from(before.as_secs()).unwrap_or(i64::MAX / 1_000_000_000);
            -secs.saturating_mul(1_000_000_000) + i64::from(before.subsec_nanos())
        }
        _ => nanos(t),
    }
}

impl Fuse {
    /// Commits an op whose reply is an entry (create-like ops).
    fn entry_op(&self, op: Op, reply: ReplyEntry) {
        let core = self.core.clone();
        let ttl = self.ttl;
        self.core.mutate(
            op,
            Payload::none(),
            Box::new(move |r| match r.and_then(|a| core.entry_of(&a)) {
                Ok(n) => reply.entry(&ttl, &attr(&n), Generation(0)),
                Err(e) => reply.error(fe(e)),
            }),
        );
    }

    /// Commits a removal (unlink, rmdir, replacing rename) of `parent/name`.
    fn removal_op(&self, op: Op, (parent, name): (u64, &[u8]), reply: ReplyEmpty) {
        let target = self.core.removal_target(parent, name);
        let core = self.core.clone();
        self.core.mutate(
            op,
            Payload::none(),
            Box::new(move |r| match r {
                Ok(ack) => {
                    core.removed(target, &ack);
                    reply.ok();
                }
                Err(e) => reply.error(fe(e)),
            }),
        );
    }

    /// Commits an op whose reply is empty.
    fn empty_op(&self, op: Op, reply: ReplyEmpty) {
        self.core.mutate(
            op,
            Payload::none(),
            Box::new(move |r| match r {
                Ok(_) => reply.ok(),
                Err(e) => reply.error(fe(e)),
            }),
        );
    }
}

impl Filesystem for Fuse {
    fn init(&mut self, _req: &Request, cfg: &mut KernelConfig) -> std::io::Result<()> {
        let mut want = InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_ASYNC_DIO;
        if matches!(self.core.config().cache, CacheMode::Cached { .. }) {
            want |= InitFlags::FUSE_CACHE_SYMLINKS;
        }
        // IMPORTANT: FUSE_WRITEBACK_CACHE must stay off (SPEC 7): with it the
        // kernel would acknowledge writes before they are committed.
        debug_assert!(!want.contains(InitFlags::FUSE_WRITEBACK_CACHE));
        let _ = cfg.add_capabilities(want & cfg.capabilities());
        let _ = cfg.set_max_write(1 << 20);
        let _ = cfg.set_max_background(64);
        let _ = cfg.set_congestion_threshold(48);
        let _ = cfg.set_time_granularity(Duration::from_nanos(1));
        tracing::info!(abi = %cfg.kernel_abi(), "FUSE session initialized");
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let _s = debug_span!("lookup", parent = parent.0, pid = req.pid()).entered();
        let r = name_of(name).and_then(|n| self.core.lookup(parent.0, &n));
        match r {
            Ok(n) => reply.entry(&self.ttl, &attr(&n), Generation(0)),
            // Cached only where every create of the name goes through this
            // mount, whose kernel then drops the negative entry itself
            // (FsConfig::negative_entries).
            Err(Errno::ENOENT) if !self.ttl.is_zero() && self.core.config().negative_entries => {
                reply.entry(&self.ttl, &negative_attr(), Generation(0))
            }
            Err(e) => reply.error(fe(e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.core.forget(ino.0, nlookup);
    }

    fn getattr(&self, req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let _s = debug_span!("getattr", ino = ino.0, pid = req.pid()).entered();
        match self.core.getattr(ino.0) {
            Ok(n) => reply.attr(&self.ttl, &attr(&n)),
            Err(e) => reply.error(fe(e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let _s = debug_span!("setattr", ino = ino.0, pid = req.pid()).entered();
        let attr_change = SetAttr {
            perm: mode.map(|m| m & 0o7777),
            uid,
            gid,
            size,
            atime: atime.map(set_time),
            mtime: mtime.map(set_time),
        };
        let core = self.core.clone();
        let ttl = self.ttl;
        let ino = ino.0;
        self.core.mutate(
            Op::SetAttr {
                ino,
                attr: attr_change,
            },
            Payload::none(),
            Box::new(move |r| match r.and_then(|_| core.getattr(ino)) {
                Ok(n) => reply.attr(&ttl, &attr(&n)),
                Err(e) => reply.error(fe(e)),
            }),
        );
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        let _s = debug_span!("readlink", ino = ino.0, pid = req.pid()).entered();
        match self.core.engine().readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(fe(e.errno())),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        let _s = debug_span!("mknod", parent = parent.0, pid = req.pid()).entered();
        let kind = match mode & libc::S_IFMT {
            libc::S_IFREG | 0 => FileKind::File,
            libc::S_IFIFO => FileKind::Fifo,
            libc::S_IFSOCK => FileKind::Socket,
            // Device nodes are not replicated (SPEC 6).
            _ => return reply.error(fuser::Errno::EOPNOTSUPP),
        };
        match name_of(name) {
            Ok(name) => self.entry_op(
                Op::Create {
                    parent: parent.0,
                    name,
                    kind,
                    perm: mode & !umask & 0o7777,
                    uid: req.uid(),
                    gid: req.gid(),
                    excl: true,
                    truncate: false,
                },
                reply,
            ),
            Err(e) => reply.error(fe(e)),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let _s = debug_span!("mkdir", parent = parent.0, pid = req.pid()).entered();
        match name_of(name) {
            Ok(name) => self.entry_op(
                Op::Mkdir {
                    parent: parent.0,
                    name,
                    perm: mode & !umask & 0o7777,
                    uid: req.uid(),
                    gid: req.gid(),
                },
                reply,
            ),
            Err(e) => reply.error(fe(e)),
        }
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _s = debug_span!("unlink", parent = parent.0, pid = req.pid()).entered();
        match name_of(name) {
            Ok(name) => self.removal_op(
                Op::Unlink {
                    parent: parent.0,
                    name: name.clone(),
                    keep_orphan: false,
                },
                (parent.0, &name),
                reply,
            ),
            Err(e) => reply.error(fe(e)),
        }
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _s = debug_span!("rmdir", parent = parent.0, pid = req.pid()).entered();
        match name_of(name) {
            Ok(name) => self.removal_op(
                Op::Rmdir {
                    parent: parent.0,
                    name: name.clone(),
                },
                (parent.0, &name),
                reply,
            ),
            Err(e) => reply.error(fe(e)),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let _s = debug_span!("symlink", parent = parent.0, pid = req.pid()).entered();
        match name_of(link_name) {
            Ok(name) => self.entry_op(
                Op::Symlink {
                    parent: parent.0,
                    name,
                    target: target.as_os_str().as_bytes().to_vec(),
                    uid: req.uid(),
                    gid: req.gid(),
                },
                reply,
            ),
            Err(e) => reply.error(fe(e)),
        }
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let _s = debug_span!(
            "rename",
            parent = parent.0,
            newparent = newparent.0,
            pid = req.pid()
        )
        .entered();
        let mode = if flags.is_empty() {
            RenameMode::Replace
        } else if flags == RenameFlags::RENAME_NOREPLACE {
            RenameMode::NoReplace
        } else if flags == RenameFlags::RENAME_EXCHANGE {
            RenameMode::Exchange
        } else {
            // RENAME_WHITEOUT (overlayfs) and combinations.
            return reply.error(fuser::Errno::EINVAL);
        };
        let (name, new_name) = match (name_of(name), name_of(newname)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => return reply.error(fe(e)),
        };
        let target = self.core.removal_target(newparent.0, &new_name);
        // A directory moved to another parent has a new ".." entry: the
        // kernel drops the cached listings of both parents itself, not the
        // moved directory's own one, so the core does it before replying.
        let moved = if parent == newparent {
            Vec::new()
        } else {
            [(parent.0, &name), (newparent.0, &new_name)]
                .into_iter()
                .filter_map(|(p, n)| self.core.removal_target(p, n))
                .filter(|n| n.kind == FileKind::Dir)
                .map(|n| n.ino)
                .collect()
        };
        let core = self.core.clone();
        self.core.mutate(
            Op::Rename {
                parent: parent.0,
                name,
                new_parent: newparent.0,
                new_name,
                mode,
                keep_orphan: false,
            },
            Payload::none(),
            Box::new(move |r| match r {
                Ok(ack) => {
                    core.removed(target, &ack);
                    for ino in moved {
                        core.invalidate(&Notice::Inode(ino, 0, 0));
                    }
                    reply.ok();
                }
                Err(e) => reply.error(fe(e)),
            }),
        );
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let _s = debug_span!("link", ino = ino.0, pid = req.pid()).entered();
        match name_of(newname) {
            Ok(name) => self.entry_op(
                Op::Link {
                    ino: ino.0,
                    parent: newparent.0,
                    name,
                },
                reply,
            ),
            Err(e) => reply.error(fe(e)),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let _s = debug_span!("open", ino = ino.0, pid = req.pid()).entered();
        match self.core.open(ino.0, flags.0) {
            Ok((fh, mode)) => reply.opened(FileHandle(fh), fopen(mode)),
            Err(e) => reply.error(fe(e)),
        }
    }

    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let _s = debug_span!("read", ino = ino.0, offset, size, pid = req.pid()).entered();
        match self.core.read(fh.0, offset, size) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(fe(e)),
        }
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let _s = debug_span!(
            "write",
            ino = ino.0,
            offset,
            len = data.len(),
            pid = req.pid()
        )
        .entered();
        let append = flags.0 & libc::O_APPEND != 0;
        let (op, payload) = match self.core.write_op(fh.0, offset, data, append) {
            Ok(x) => x,
            Err(e) => return reply.error(fe(e)),
        };
        let len = data.len() as u32;
        let core = self.core.clone();
        let ino = ino.0;
        self.core.mutate(
            op,
            payload,
            Box::new(move |r| match r {
                Ok(ack) => {
                    core.written(ino, &ack);
                    reply.written(len);
                }
                Err(e) => reply.error(fe(e)),
            }),
        );
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Kernels that know FOPEN_NOFLUSH send none for our handles; older
        // ones still do. Every write is already committed when it returns.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.core.release(fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let _s = debug_span!("fsync", ino = ino.0, pid = req.pid()).entered();
        self.empty_op(Op::Fsync { ino: ino.0 }, reply);
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let _s = debug_span!("opendir", ino = ino.0, pid = req.pid()).entered();
        // With caching on, the kernel keeps listings in the directory's page
        // cache across opens. It drops them itself when this mount changes
        // the directory, and our remote invalidations (`Notice::Inode(dir,
        // 0, 0)` for every changed entry) drop them for other mounts'
        // changes.
        let flags = if matches!(self.core.config().cache, CacheMode::Cached { .. }) {
            FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE
        } else {
            FopenFlags::empty()
        };
        match self.core.opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), flags),
            Err(e) => reply.error(fe(e)),
        }
    }

    fn readdir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let _s = debug_span!("readdir", ino = ino.0, offset, pid = req.pid()).entered();
        let r = self
            .core
            .readdir(fh.0, offset, false, |cookie, item| match item {
                DirItem::Dots(n, i) => reply.add(INodeNo(i), cookie, FileType::Directory, n),
                DirItem::Entry(e, _) => reply.add(
                    INodeNo(e.ino),
                    cookie,
                    kind(e.kind),
                    OsStr::from_bytes(&e.name),
                ),
            });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fe(e)),
        }
    }

    fn readdirplus(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let _s = debug_span!("readdirplus", ino = ino.0, offset, pid = req.pid()).entered();
        let ttl = self.ttl;
        let core = &self.core;
        let r = self
            .core
            .readdir(fh.0, offset, true, |cookie, item| match item {
                DirItem::Dots(n, i) => match core.getattr(i) {
                    // "." and ".." are not counted as lookups by the kernel.
                    Ok(node) => reply.add(
                        INodeNo(i),
                        cookie,
                        n,
                        &Duration::ZERO,
                        &attr(&node),
                        Generation(0),
                    ),
                    Err(_) => false,
                },
                DirItem::Entry(e, Some(node)) => reply.add(
                    INodeNo(e.ino),
                    cookie,
                    OsStr::from_bytes(&e.name),
                    &ttl,
                    &attr(node),
                    Generation(0),
                ),
                DirItem::Entry(_, None) => false,
            });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fe(e)),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.core.releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let _s = debug_span!("fsyncdir", ino = ino.0, pid = req.pid()).entered();
        self.empty_op(Op::Fsync { ino: ino.0 }, reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = self.core.engine().statfs();
        reply.statfs(
            s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.bsize,
        );
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        position: u32,
        reply: ReplyEmpty,
    ) {
        let _s = debug_span!("setxattr", ino = ino.0, pid = req.pid()).entered();
        if position != 0 {
            return reply.error(fuser::Errno::EINVAL);
        }
        let mode = match flags {
            0 => XattrMode::Upsert,
            libc::XATTR_CREATE => XattrMode::Create,
            libc::XATTR_REPLACE => XattrMode::Replace,
            _ => return reply.error(fuser::Errno::EINVAL),
        };
        self.empty_op(
            Op::SetXattr {
                ino: ino.0,
                name: name.as_bytes().to_vec(),
                value: value.to_vec(),
                mode,
            },
            reply,
        );
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let _s = debug_span!("getxattr", ino = ino.0, pid = req.pid()).entered();
        match self.core.engine().getxattr(ino.0, name.as_bytes()) {
            Ok(v) if size == 0 => reply.size(v.len() as u32),
            Ok(v) if v.len() > size as usize => reply.error(fuser::Errno::ERANGE),
            Ok(v) => reply.data(&v),
            Err(e) => reply.error(fe(e.errno())),
        }
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let _s = debug_span!("listxattr", ino = ino.0, pid = req.pid()).entered();
        match self.core.engine().listxattr(ino.0) {
            Ok(names) => {
                let mut buf = Vec::new();
                for n in names {
                    buf.extend_from_slice(&n);
                    buf.push(0);
                }
                if size == 0 {
                    reply.size(buf.len() as u32);
                } else if buf.len() > size as usize {
                    reply.error(fuser::Errno::ERANGE);
                } else {
                    reply.data(&buf);
                }
            }
            Err(e) => reply.error(fe(e.errno())),
        }
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _s = debug_span!("removexattr", ino = ino.0, pid = req.pid()).entered();
        self.empty_op(
            Op::RemoveXattr {
                ino: ino.0,
                name: name.as_bytes().to_vec(),
            },
            reply,
        );
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // With default_permissions the kernel has checked the mode bits.
        match self.core.getattr(ino.0) {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(fe(e)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let _s = debug_span!("create", parent = parent.0, pid = req.pid()).entered();
        let name = match name_of(name) {
            Ok(n) => n,
            Err(e) => return reply.error(fe(e)),
        };
        let kind = match mode & libc::S_IFMT {
            libc::S_IFREG | 0 => FileKind::File,
            _ => return reply.error(fuser::Errno::EINVAL),
        };
        let op = Op::Create {
            parent: parent.0,
            name,
            kind,
            perm: mode & !umask & 0o7777,
            uid: req.uid(),
            gid: req.gid(),
            excl: flags & libc::O_EXCL != 0,
            truncate: flags & libc::O_TRUNC != 0,
        };
        let core = self.core.clone();
        let ttl = self.ttl;
        self.core.mutate(
            op,
            Payload::none(),
            Box::new(move |r| match r.and_then(|a| core.entry_of(&a)) {
                Ok(n) => {
                    let (fh, m) = core.open_created(n.ino, flags);
                    reply.created(&ttl, &attr(&n), Generation(0), FileHandle(fh), fopen(m));
                }
                Err(e) => reply.error(fe(e)),
            }),
        );
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _o: u64,
        _l: u64,
        _m: i32,
        reply: ReplyEmpty,
    ) {
        // Not replicated in V1 (SPEC 6): the same answer on every worker.
        reply.error(fuser::Errno::EOPNOTSUPP);
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        // Not replicated in V1 (SPEC 6); cp and friends fall back to
        // read+write on EOPNOTSUPP.
        reply.error(fuser::Errno::EOPNOTSUPP);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_epoch_setattr_times_are_recovered() {
        // What fuser hands us for (secs, nsecs) = (-1, 999_999_999) and
        // (-1_000_000, 500): EPOCH - (|secs| s + nsecs).
        let garbled = UNIX_EPOCH - Duration::new(1, 999_999_999);
        assert_eq!(setattr_nanos(garbled), -1_000_000_000 + 999_999_999);
        let garbled = UNIX_EPOCH - Duration::new(1_000_000, 500);
        assert_eq!(setattr_nanos(garbled), -1_000_000_000_000_000 + 500);
        assert_eq!(
            setattr_nanos(UNIX_EPOCH - Duration::from_secs(5)),
            -5_000_000_000
        );
        assert_eq!(
            setattr_nanos(UNIX_EPOCH + Duration::new(3, 7)),
            3_000_000_007
        );
        // And attr() encodes such times back correctly.
        assert_eq!(nanos(time(-1)), -1);
    }
}
