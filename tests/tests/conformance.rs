//! POSIX conformance of an hsfs mount, checked against tmpfs.
//!
//! Every case runs the same syscall sequence in a fresh directory on tmpfs
//! (the reference local filesystem) and in a fresh directory of a real
//! `hsfs mount`, records each outcome (the returned value, or the exact
//! errno name) and requires the two records to be identical. Only what
//! POSIX fixes (or Linux, where POSIX leaves a choice that tools depend on)
//! is recorded: inode numbers, directory sizes, st_blocks, st_dev, atime
//! after reads and readdir order are not. The deliberate divergences of
//! hsfs (SPEC 3 and 6: writable shared mmap, device nodes) are asserted
//! directly against hsfs and say so.
//!
//! Steps that must run as another user re-execute this test binary under
//! that uid/gid ([`as_user`]); the child runs [`user_step_child`], which
//! looks the step up by name in [`USER_STEPS`] and prints its record.
//!
//! Each test function collects the mismatches of all its cases, runs
//! `hsfs-fsck` on the store (unmount, check, remount) and only then fails
//! with the full list, so one bug does not hide the others. Set
//! `HSFS_CONFORMANCE_SHOW=1` (with `--nocapture`) to print every record.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use hsfs_tests::{Workspace, tmpfs_dir};
use libc::{
    O_APPEND, O_CREAT, O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_NONBLOCK, O_RDONLY, O_RDWR, O_TRUNC,
    O_WRONLY,
};

use sys::{Res, Ts, UTIME_NOW, UTIME_OMIT};

/// Thin wrappers over the raw syscalls: `Err` carries the exact errno.
mod sys {
    use std::ffi::CString;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    /// A syscall outcome: the value or the errno.
    pub type Res<T> = Result<T, i32>;
    /// A timestamp for utimensat: (seconds, nanoseconds or UTIME_NOW/OMIT).
    pub type Ts = (i64, i64);
    pub const UTIME_NOW: i64 = libc::UTIME_NOW;
    pub const UTIME_OMIT: i64 = libc::UTIME_OMIT;
    /// "Leave unchanged" for chown.
    pub const KEEP: u32 = u32::MAX;

    pub fn errno() -> i32 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    fn ok(r: libc::c_int) -> Res<()> {
        if r < 0 { Err(errno()) } else { Ok(()) }
    }

    fn count(r: isize) -> Res<usize> {
        usize::try_from(r).map_err(|_| errno())
    }

    fn c(p: &Path) -> CString {
        bytes(p.as_os_str().as_bytes())
    }

    fn bytes(b: &[u8]) -> CString {
        CString::new(b).expect("no NUL byte in a path or name")
    }

    /// Maps a std I/O error to its errno.
    pub fn io(e: &std::io::Error) -> i32 {
        e.raw_os_error().unwrap_or(libc::EIO)
    }

    // SAFETY (every unsafe block below): paths are NUL-terminated CStrings
    // and buffers are live Rust allocations of the length passed; the
    // kernel writes at most that many bytes.

    pub fn open(p: &Path, flags: i32, mode: u32) -> Res<OwnedFd> {
        // O_CLOEXEC: the user-step children must not inherit our files.
        let fd = unsafe { libc::open(c(p).as_ptr(), flags | libc::O_CLOEXEC, mode) };
        if fd < 0 {
            return Err(errno());
        }
        // SAFETY: a fresh descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    pub fn read(fd: &impl AsRawFd, n: usize) -> Res<Vec<u8>> {
        let mut buf = vec![0u8; n];
        let k = count(unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), n) })?;
        buf.truncate(k);
        Ok(buf)
    }

    pub fn write(fd: &impl AsRawFd, data: &[u8]) -> Res<usize> {
        count(unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) })
    }

    pub fn pread(fd: &impl AsRawFd, n: usize, off: i64) -> Res<Vec<u8>> {
        let mut buf = vec![0u8; n];
        let k = count(unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), n, off) })?;
        buf.truncate(k);
        Ok(buf)
    }

    pub fn pwrite(fd: &impl AsRawFd, data: &[u8], off: i64) -> Res<usize> {
        count(unsafe { libc::pwrite(fd.as_raw_fd(), data.as_ptr().cast(), data.len(), off) })
    }

    pub fn lseek(fd: &impl AsRawFd, off: i64, whence: i32) -> Res<i64> {
        let r = unsafe { libc::lseek(fd.as_raw_fd(), off, whence) };
        if r < 0 { Err(errno()) } else { Ok(r) }
    }

    fn stat_with(f: impl FnOnce(*mut libc::stat) -> libc::c_int) -> Res<libc::stat> {
        // SAFETY: an all-zero `stat` is a valid value of the plain C struct.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        ok(f(&raw mut st))?;
        Ok(st)
    }

    pub fn stat(p: &Path) -> Res<libc::stat> {
        let c = c(p);
        stat_with(|st| unsafe { libc::stat(c.as_ptr(), st) })
    }

    pub fn lstat(p: &Path) -> Res<libc::stat> {
        let c = c(p);
        stat_with(|st| unsafe { libc::lstat(c.as_ptr(), st) })
    }

    pub fn fstat(fd: &impl AsRawFd) -> Res<libc::stat> {
        stat_with(|st| unsafe { libc::fstat(fd.as_raw_fd(), st) })
    }

    pub fn mkdir(p: &Path, mode: u32) -> Res<()> {
        ok(unsafe { libc::mkdir(c(p).as_ptr(), mode) })
    }

    pub fn rmdir(p: &Path) -> Res<()> {
        ok(unsafe { libc::rmdir(c(p).as_ptr()) })
    }

    pub fn unlink(p: &Path) -> Res<()> {
        ok(unsafe { libc::unlink(c(p).as_ptr()) })
    }

    pub fn rename(from: &Path, to: &Path) -> Res<()> {
        ok(unsafe { libc::rename(c(from).as_ptr(), c(to).as_ptr()) })
    }

    /// renameat2(2) with RENAME_* flags, through the raw syscall.
    pub fn renameat2(from: &Path, to: &Path, flags: u32) -> Res<()> {
        let r = unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                libc::AT_FDCWD,
                c(from).as_ptr(),
                libc::AT_FDCWD,
                c(to).as_ptr(),
                flags,
            )
        };
        if r < 0 { Err(errno()) } else { Ok(()) }
    }

    pub fn link(from: &Path, to: &Path) -> Res<()> {
        ok(unsafe { libc::link(c(from).as_ptr(), c(to).as_ptr()) })
    }

    pub fn symlink(target: &[u8], p: &Path) -> Res<()> {
        ok(unsafe { libc::symlink(bytes(target).as_ptr(), c(p).as_ptr()) })
    }

    pub fn readlink(p: &Path, size: usize) -> Res<Vec<u8>> {
        let mut buf = vec![0u8; size];
        let k = count(unsafe { libc::readlink(c(p).as_ptr(), buf.as_mut_ptr().cast(), size) })?;
        buf.truncate(k);
        Ok(buf)
    }

    pub fn truncate(p: &Path, size: i64) -> Res<()> {
        ok(unsafe { libc::truncate(c(p).as_ptr(), size) })
    }

    pub fn ftruncate(fd: &impl AsRawFd, size: i64) -> Res<()> {
        ok(unsafe { libc::ftruncate(fd.as_raw_fd(), size) })
    }

    pub fn chmod(p: &Path, mode: u32) -> Res<()> {
        ok(unsafe { libc::chmod(c(p).as_ptr(), mode) })
    }

    pub fn fchmod(fd: &impl AsRawFd, mode: u32) -> Res<()> {
        ok(unsafe { libc::fchmod(fd.as_raw_fd(), mode) })
    }

    pub fn chown(p: &Path, uid: u32, gid: u32) -> Res<()> {
        ok(unsafe { libc::chown(c(p).as_ptr(), uid, gid) })
    }

    pub fn lchown(p: &Path, uid: u32, gid: u32) -> Res<()> {
        ok(unsafe { libc::lchown(c(p).as_ptr(), uid, gid) })
    }

    fn timespecs(times: [Ts; 2]) -> [libc::timespec; 2] {
        times.map(|(s, ns)| libc::timespec {
            tv_sec: s,
            tv_nsec: ns,
        })
    }

    /// utimensat(2); `None` sets both times to now.
    pub fn utimens(p: &Path, times: Option<[Ts; 2]>, flags: i32) -> Res<()> {
        let ts = times.map(timespecs);
        let ptr = ts.as_ref().map_or(std::ptr::null(), |t| t.as_ptr());
        ok(unsafe { libc::utimensat(libc::AT_FDCWD, c(p).as_ptr(), ptr, flags) })
    }

    pub fn futimens(fd: &impl AsRawFd, times: [Ts; 2]) -> Res<()> {
        let ts = timespecs(times);
        ok(unsafe { libc::futimens(fd.as_raw_fd(), ts.as_ptr()) })
    }

    pub fn mknod(p: &Path, mode: u32, dev: u64) -> Res<()> {
        ok(unsafe { libc::mknod(c(p).as_ptr(), mode, dev) })
    }

    pub fn mkfifo(p: &Path, mode: u32) -> Res<()> {
        ok(unsafe { libc::mkfifo(c(p).as_ptr(), mode) })
    }

    pub fn access(p: &Path, mode: i32) -> Res<()> {
        ok(unsafe { libc::access(c(p).as_ptr(), mode) })
    }

    pub fn statvfs(p: &Path) -> Res<libc::statvfs> {
        // SAFETY: an all-zero `statvfs` is a valid value of the C struct.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        ok(unsafe { libc::statvfs(c(p).as_ptr(), &raw mut st) })?;
        Ok(st)
    }

    pub fn fsync(fd: &impl AsRawFd) -> Res<()> {
        ok(unsafe { libc::fsync(fd.as_raw_fd()) })
    }

    pub fn fdatasync(fd: &impl AsRawFd) -> Res<()> {
        ok(unsafe { libc::fdatasync(fd.as_raw_fd()) })
    }

    pub fn syncfs(fd: &impl AsRawFd) -> Res<()> {
        ok(unsafe { libc::syncfs(fd.as_raw_fd()) })
    }

    /// posix_fallocate(3) (returns the error number, not -1/errno).
    pub fn posix_fallocate(fd: &impl AsRawFd, off: i64, len: i64) -> Res<()> {
        match unsafe { libc::posix_fallocate(fd.as_raw_fd(), off, len) } {
            0 => Ok(()),
            e => Err(e),
        }
    }

    /// copy_file_range(2) between explicit offsets.
    pub fn copy_file_range(
        from: &impl AsRawFd,
        off_in: i64,
        to: &impl AsRawFd,
        off_out: i64,
        len: usize,
    ) -> Res<usize> {
        let (mut i, mut o) = (off_in, off_out);
        count(unsafe {
            libc::copy_file_range(
                from.as_raw_fd(),
                &raw mut i,
                to.as_raw_fd(),
                &raw mut o,
                len,
                0,
            )
        })
    }

    pub fn flock(fd: &impl AsRawFd, op: i32) -> Res<()> {
        ok(unsafe { libc::flock(fd.as_raw_fd(), op) })
    }

    /// An open-file-description lock request (F_OFD_SETLK / F_OFD_GETLK)
    /// on `[start, start+len)`; returns the lock type found for GETLK.
    pub fn ofd_lock(fd: &impl AsRawFd, cmd: i32, kind: i32, start: i64, len: i64) -> Res<i32> {
        // SAFETY: an all-zero `flock` is a valid value of the C struct.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = kind as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        fl.l_start = start;
        fl.l_len = len;
        ok(unsafe { libc::fcntl(fd.as_raw_fd(), cmd, &raw mut fl) })?;
        Ok(i32::from(fl.l_type))
    }

    pub fn umask(mask: u32) -> u32 {
        unsafe { libc::umask(mask) }
    }

    pub fn setxattr(p: &Path, name: &str, value: &[u8], flags: i32) -> Res<()> {
        let n = bytes(name.as_bytes());
        ok(unsafe {
            libc::setxattr(
                c(p).as_ptr(),
                n.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                flags,
            )
        })
    }

    pub fn lsetxattr(p: &Path, name: &str, value: &[u8], flags: i32) -> Res<()> {
        let n = bytes(name.as_bytes());
        ok(unsafe {
            libc::lsetxattr(
                c(p).as_ptr(),
                n.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                flags,
            )
        })
    }

    /// getxattr(2) into a buffer of `size` bytes (0: the size probe, which
    /// returns an empty vector and the length separately).
    pub fn getxattr(p: &Path, name: &str, size: usize) -> Res<(usize, Vec<u8>)> {
        let n = bytes(name.as_bytes());
        let mut buf = vec![0u8; size];
        let ptr = if size == 0 {
            std::ptr::null_mut()
        } else {
            buf.as_mut_ptr().cast()
        };
        let k = count(unsafe { libc::getxattr(c(p).as_ptr(), n.as_ptr(), ptr, size) })?;
        buf.truncate(k.min(size));
        Ok((k, buf))
    }

    /// listxattr(2) into a buffer of `size` bytes (0: the size probe).
    pub fn listxattr(p: &Path, size: usize) -> Res<(usize, Vec<u8>)> {
        let mut buf = vec![0u8; size];
        let ptr = if size == 0 {
            std::ptr::null_mut()
        } else {
            buf.as_mut_ptr().cast()
        };
        let k = count(unsafe { libc::listxattr(c(p).as_ptr(), ptr, size) })?;
        buf.truncate(k.min(size));
        Ok((k, buf))
    }

    pub fn removexattr(p: &Path, name: &str) -> Res<()> {
        let n = bytes(name.as_bytes());
        ok(unsafe { libc::removexattr(c(p).as_ptr(), n.as_ptr()) })
    }

    /// One `struct linux_dirent64`.
    #[derive(Clone, Debug)]
    pub struct Dirent {
        pub ino: u64,
        pub off: i64,
        pub kind: u8,
        pub name: Vec<u8>,
    }

    /// One getdents64(2) call with a buffer of `size` bytes.
    pub fn getdents(fd: &impl AsRawFd, size: usize) -> Res<Vec<Dirent>> {
        // u64 storage keeps the records 8-byte aligned, as the kernel lays
        // them out.
        let mut buf = vec![0u64; size.div_ceil(8)];
        let r =
            unsafe { libc::syscall(libc::SYS_getdents64, fd.as_raw_fd(), buf.as_mut_ptr(), size) };
        let n = usize::try_from(r).map_err(|_| errno())?;
        let raw: Vec<u8> = buf.iter().flat_map(|w| w.to_ne_bytes()).take(n).collect();
        let mut out = Vec::new();
        let mut i = 0;
        while i < n {
            let u64_at = |o: usize| u64::from_ne_bytes(raw[o..o + 8].try_into().expect("8 bytes"));
            let reclen = usize::from(u16::from_ne_bytes([raw[i + 16], raw[i + 17]]));
            let name = &raw[i + 19..i + reclen];
            let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            out.push(Dirent {
                ino: u64_at(i),
                off: u64_at(i + 8) as i64,
                kind: raw[i + 18],
                name: name[..end].to_vec(),
            });
            i += reclen;
        }
        Ok(out)
    }

    /// All entries of a directory, "." and ".." included, in readdir order.
    pub fn list(p: &Path) -> Res<Vec<Dirent>> {
        let fd = open(p, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        let mut all = Vec::new();
        loop {
            let batch = getdents(&fd, 32 * 1024)?;
            if batch.is_empty() {
                return Ok(all);
            }
            all.extend(batch);
        }
    }

    /// A memory mapping, unmapped on drop.
    pub struct Map {
        ptr: *mut libc::c_void,
        len: usize,
    }

    impl Map {
        pub fn bytes(&self) -> &[u8] {
            // SAFETY: the mapping is `len` bytes long and lives as long as
            // `self`; the file is at least that long in every use here.
            unsafe { std::slice::from_raw_parts(self.ptr.cast(), self.len) }
        }

        pub fn write(&mut self, off: usize, data: &[u8]) {
            assert!(off + data.len() <= self.len);
            // SAFETY: in bounds of a writable mapping.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    data.as_ptr(),
                    self.ptr.cast::<u8>().add(off),
                    data.len(),
                )
            };
        }
    }

    impl Drop for Map {
        fn drop(&mut self) {
            // SAFETY: unmapping exactly what mmap returned.
            unsafe { libc::munmap(self.ptr, self.len) };
        }
    }

    pub fn mmap(fd: &impl AsRawFd, len: usize, prot: i32, flags: i32) -> Res<Map> {
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            return Err(errno());
        }
        Ok(Map { ptr, len })
    }

    /// CLOCK_REALTIME in nanoseconds.
    pub fn now() -> i128 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &raw mut ts) };
        i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
    }
}

// ---------------------------------------------------------------------------
// Recording outcomes
// ---------------------------------------------------------------------------

/// The symbolic name of an errno.
fn errno_name(e: i32) -> String {
    let name = match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::EACCES => "EACCES",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::ESPIPE => "ESPIPE",
        libc::EROFS => "EROFS",
        libc::EMLINK => "EMLINK",
        libc::ERANGE => "ERANGE",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ELOOP => "ELOOP",
        libc::ENODATA => "ENODATA",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ESTALE => "ESTALE",
        _ => return format!("errno {e}"),
    };
    name.to_string()
}

/// How a successful result is written into a record.
trait Show {
    fn show(&self) -> String;
}

impl Show for () {
    fn show(&self) -> String {
        "ok".into()
    }
}

macro_rules! show_display {
    ($($t:ty),*) => {$(
        impl Show for $t {
            fn show(&self) -> String {
                format!("ok {self}")
            }
        }
    )*};
}
show_display!(usize, i64, u64, u32, i32, bool, String);

impl Show for Vec<u8> {
    fn show(&self) -> String {
        format!("ok \"{}\"", self.escape_ascii())
    }
}

impl Show for OwnedFd {
    fn show(&self) -> String {
        "ok fd".into()
    }
}

impl Show for libc::stat {
    fn show(&self) -> String {
        format!("ok {}", describe(self))
    }
}

fn kind_name(mode: u32) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFREG => "reg",
        libc::S_IFDIR => "dir",
        libc::S_IFLNK => "lnk",
        libc::S_IFIFO => "fifo",
        libc::S_IFSOCK => "sock",
        libc::S_IFCHR => "chr",
        libc::S_IFBLK => "blk",
        _ => "?",
    }
}

fn dtype_name(t: u8) -> &'static str {
    match t {
        libc::DT_REG => "reg",
        libc::DT_DIR => "dir",
        libc::DT_LNK => "lnk",
        libc::DT_FIFO => "fifo",
        libc::DT_SOCK => "sock",
        libc::DT_CHR => "chr",
        libc::DT_BLK => "blk",
        _ => "unknown",
    }
}

/// The stat fields both filesystems must agree on. Directory sizes are
/// implementation-defined (POSIX leaves st_size of directories open), so
/// they are left out; inode numbers, st_dev, st_blocks and times too.
fn describe(st: &libc::stat) -> String {
    let mut s = format!(
        "{} {:04o} nlink={} uid={} gid={}",
        kind_name(st.st_mode),
        st.st_mode & 0o7777,
        st.st_nlink,
        st.st_uid,
        st.st_gid
    );
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        let _ = write!(s, " size={}", st.st_size);
    }
    s
}

/// The record of one case on one filesystem: one line per observation.
/// Paths in it are relative to the case directory `root`; records compare
/// by their lines only.
#[derive(Default, Debug, Clone)]
struct Log {
    root: PathBuf,
    lines: Vec<String>,
}

impl PartialEq for Log {
    fn eq(&self, other: &Log) -> bool {
        self.lines == other.lines
    }
}

impl Log {
    fn new(root: &Path) -> Log {
        Log {
            root: root.to_path_buf(),
            lines: Vec::new(),
        }
    }

    fn from_lines(lines: &[&str]) -> Log {
        Log {
            root: PathBuf::new(),
            lines: lines.iter().map(|l| (*l).to_string()).collect(),
        }
    }

    /// `p` relative to the case directory, for record lines.
    fn rel(&self, p: &Path) -> String {
        match p.strip_prefix(&self.root) {
            Ok(r) if r.as_os_str().is_empty() => ".".into(),
            Ok(r) => r.as_os_str().as_bytes().escape_ascii().to_string(),
            Err(_) => p.as_os_str().as_bytes().escape_ascii().to_string(),
        }
    }

    /// Records a syscall outcome: the value or the errno name.
    fn rec<T: Show>(&mut self, what: &str, r: Res<T>) {
        let v = match r {
            Ok(v) => v.show(),
            Err(e) => errno_name(e),
        };
        self.lines.push(format!("{what}: {v}"));
    }

    /// Records a derived value.
    fn note(&mut self, what: &str, v: impl std::fmt::Display) {
        self.lines.push(format!("{what}: {v}"));
    }

    fn stat(&mut self, p: &Path) {
        let what = format!("stat {}", self.rel(p));
        self.rec(&what, sys::stat(p));
    }

    fn lstat(&mut self, p: &Path) {
        let what = format!("lstat {}", self.rel(p));
        self.rec(&what, sys::lstat(p));
    }

    /// The whole content of a file.
    fn content(&mut self, p: &Path) {
        let what = format!("content {}", self.rel(p));
        self.rec(&what, read_file(p));
    }

    /// A directory listing ("." and ".." included) with d_types, sorted.
    fn listing(&mut self, p: &Path) {
        let what = format!("list {}", self.rel(p));
        self.rec(&what, sorted_names(p));
    }
}

fn read_file(p: &Path) -> Res<Vec<u8>> {
    std::fs::read(p).map_err(|e| sys::io(&e))
}

fn write_file(p: &Path, data: &[u8]) -> Res<()> {
    std::fs::write(p, data).map_err(|e| sys::io(&e))
}

fn sorted_names(p: &Path) -> Res<String> {
    let mut names: Vec<String> = sys::list(p)?
        .iter()
        .map(|d| format!("{}:{}", d.name.escape_ascii(), dtype_name(d.kind)))
        .collect();
    names.sort();
    Ok(names.join(" "))
}

/// A short content digest, for large files.
fn digest(data: &[u8]) -> String {
    format!(
        "{} bytes, blake3 {}",
        data.len(),
        &blake3::hash(data).to_hex()[..16]
    )
}

/// Deterministic test bytes.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

fn ino(p: &Path) -> Res<u64> {
    sys::lstat(p).map(|s| s.st_ino)
}

fn mode(p: &Path) -> Res<u32> {
    sys::lstat(p).map(|s| s.st_mode & 0o7777)
}

/// mtime in nanoseconds.
fn mtime(st: &libc::stat) -> i128 {
    i128::from(st.st_mtime) * 1_000_000_000 + i128::from(st.st_mtime_nsec)
}

/// atime in nanoseconds.
fn atime(st: &libc::stat) -> i128 {
    i128::from(st.st_atime) * 1_000_000_000 + i128::from(st.st_atime_nsec)
}

/// Creates a file with `data`, panicking on failure (case setup).
fn make_file(p: &Path, data: &[u8]) {
    write_file(p, data)
        .unwrap_or_else(|e| panic!("setup: writing {}: {}", p.display(), errno_name(e)));
}

/// Creates a directory with exactly `mode`, panicking on failure.
fn make_dir(p: &Path, mode: u32) {
    sys::mkdir(p, 0o700)
        .unwrap_or_else(|e| panic!("setup: mkdir {}: {}", p.display(), errno_name(e)));
    sys::chmod(p, mode)
        .unwrap_or_else(|e| panic!("setup: chmod {}: {}", p.display(), errno_name(e)));
}

/// Sets owner and mode, panicking on failure (case setup).
fn own(p: &Path, uid: u32, gid: u32, mode: u32) {
    sys::lchown(p, uid, gid)
        .unwrap_or_else(|e| panic!("setup: chown {}: {}", p.display(), errno_name(e)));
    sys::chmod(p, mode)
        .unwrap_or_else(|e| panic!("setup: chmod {}: {}", p.display(), errno_name(e)));
}

// ---------------------------------------------------------------------------
// The suite: one hsfs workspace, one tmpfs reference, collected mismatches
// ---------------------------------------------------------------------------

struct Suite {
    w: Workspace,
    reference: tempfile::TempDir,
    failures: Vec<String>,
}

impl Suite {
    fn new() -> Suite {
        let w = Workspace::new();
        let reference = tmpfs_dir();
        // The user steps need to reach the case directories.
        for dir in [w.dir.path(), reference.path()] {
            sys::chmod(dir, 0o755).expect("chmod the test roots");
        }
        Suite {
            w,
            reference,
            failures: Vec::new(),
        }
    }

    /// Fresh directories named `case`: [on tmpfs, in the hsfs mount].
    fn dirs(&self, case: &str) -> [PathBuf; 2] {
        let dirs = [self.reference.path().join(case), self.w.path(case)];
        for d in &dirs {
            make_dir(d, 0o755);
        }
        dirs
    }

    /// Runs `f` in a fresh directory on tmpfs and in the mount.
    fn run_both(&self, case: &str, f: impl Fn(&Path, &mut Log)) -> (Log, Log) {
        let [t, h] = self.dirs(case);
        let mut lt = Log::new(&t);
        f(&t, &mut lt);
        let mut lh = Log::new(&h);
        f(&h, &mut lh);
        (lt, lh)
    }

    /// Runs `f` on both filesystems and requires identical records.
    fn compare(&mut self, case: &str, f: impl Fn(&Path, &mut Log)) {
        let (t, h) = self.run_both(case, f);
        self.same(case, ("tmpfs", &t), ("hsfs", &h));
    }

    /// Records a mismatch of two records. With HSFS_CONFORMANCE_SHOW set,
    /// prints every record compared (run with --nocapture).
    fn same(&mut self, case: &str, (la, a): (&str, &Log), (lb, b): (&str, &Log)) {
        if std::env::var_os("HSFS_CONFORMANCE_SHOW").is_some() {
            eprintln!("case `{case}` ({lb}):\n    {}", b.lines.join("\n    "));
        }
        if a == b {
            return;
        }
        let mut out = format!("case `{case}`: {la} and {lb} differ\n");
        for i in 0..a.lines.len().max(b.lines.len()) {
            match (a.lines.get(i), b.lines.get(i)) {
                (Some(x), Some(y)) if x == y => {
                    let _ = writeln!(out, "          {x}");
                }
                (x, y) => {
                    let _ = writeln!(out, "  {la:>6}: {}", x.map_or("<none>", String::as_str));
                    let _ = writeln!(out, "  {lb:>6}: {}", y.map_or("<none>", String::as_str));
                }
            }
        }
        self.failures.push(out);
    }

    /// Records a failed direct expectation.
    fn expect(&mut self, case: &str, ok: bool, detail: impl std::fmt::Display) {
        if !ok {
            self.failures.push(format!("case `{case}`: {detail}\n"));
        }
    }

    /// Unmount, fsck (asserted clean), remount; returns the fsck report.
    fn check(&mut self) -> serde_json::Value {
        self.w.check()
    }

    /// Final fsck, then fails with every mismatch collected.
    fn finish(mut self) {
        for f in &self.failures {
            eprintln!("{f}");
        }
        self.check();
        assert!(
            self.failures.is_empty(),
            "{} case(s) diverge:\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}

// ---------------------------------------------------------------------------
// Steps run as another user
// ---------------------------------------------------------------------------

const UID_A: u32 = 1001;
const GID_A: u32 = 1001;
const UID_B: u32 = 1002;
const GID_B: u32 = 1002;
/// A group neither user belongs to.
const GID_SHARED: u32 = 2000;

const STEP_ENV: &str = "HSFS_CONFORMANCE_STEP";
const ROOT_ENV: &str = "HSFS_CONFORMANCE_ROOT";
const MARK: &str = "@@conformance@@ ";

type Step = fn(&Path, &mut Log);

/// Steps a child process can run, by name.
const USER_STEPS: &[(&str, Step)] = &[
    ("perm_modes", step_perm_modes),
    ("perm_ownership", step_perm_ownership),
    ("sticky_a_creates", step_sticky_a_creates),
    ("sticky_b_acts", step_sticky_b_acts),
    ("sticky_a_cleans", step_sticky_a_cleans),
    ("setgid_dir", step_setgid_dir),
    ("umask", step_umask),
    ("kill_suid", step_kill_suid),
];

/// Runs the step `step` on `root` as `uid`/`gid` (no supplementary groups)
/// in a child process, and appends its record to `log`.
fn as_user(uid: u32, gid: u32, step: &str, root: &Path, log: &mut Log) {
    let exe = std::env::current_exe().expect("test executable");
    // Without supplementary groups: std drops them when a root parent sets
    // a uid.
    let out = Command::new(exe)
        .args([
            "user_step_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(STEP_ENV, step)
        .env(ROOT_ENV, root)
        .uid(uid)
        .gid(gid)
        .output()
        .expect("spawn the user step");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // libtest may print "test user_step_child ... " before the first line.
    let lines: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split_once(MARK).map(|(_, rest)| rest))
        .collect();
    assert!(
        out.status.success() && lines.last() == Some(&"end"),
        "user step {step} as {uid}:{gid} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for l in &lines[..lines.len() - 1] {
        log.lines.push(format!("[uid {uid}] {l}"));
    }
}

/// Not a test of its own: the entry point of the child processes that run
/// a step of [`USER_STEPS`] as another user (see [`as_user`]). Without the
/// environment variable it does nothing.
#[test]
fn user_step_child() {
    let Ok(step) = std::env::var(STEP_ENV) else {
        return;
    };
    let root = PathBuf::from(std::env::var_os(ROOT_ENV).expect("step root"));
    let (_, f) = USER_STEPS
        .iter()
        .find(|(n, _)| *n == step)
        .unwrap_or_else(|| panic!("unknown user step {step}"));
    let mut log = Log::new(&root);
    f(&root, &mut log);
    for l in &log.lines {
        println!("{MARK}{l}");
    }
    println!("{MARK}end");
}

// ---------------------------------------------------------------------------
// Files: open, create, read, write
// ---------------------------------------------------------------------------

#[test]
fn files_open_create_read_write() {
    let mut s = Suite::new();

    s.compare("excl", |r, log| {
        let f = r.join("f");
        log.rec(
            "create excl",
            sys::open(&f, O_CREAT | O_EXCL | O_WRONLY, 0o640),
        );
        log.rec(
            "create excl again",
            sys::open(&f, O_CREAT | O_EXCL | O_WRONLY, 0o600),
        );
        log.rec("create existing", sys::open(&f, O_CREAT | O_WRONLY, 0o600));
        log.stat(&f);
        make_dir(&r.join("d"), 0o755);
        log.rec(
            "excl on a dir",
            sys::open(&r.join("d"), O_CREAT | O_EXCL | O_RDONLY, 0o644),
        );
        sys::symlink(b"nowhere", &r.join("dangling")).expect("symlink");
        // O_EXCL does not follow the final symlink, dangling or not.
        log.rec(
            "excl on a dangling symlink",
            sys::open(&r.join("dangling"), O_CREAT | O_EXCL | O_WRONLY, 0o644),
        );
        log.rec("dangling target created", sys::lstat(&r.join("nowhere")));
        log.rec("open missing", sys::open(&r.join("missing"), O_RDONLY, 0));
        log.rec(
            "create in a missing dir",
            sys::open(&r.join("nodir/f"), O_CREAT | O_WRONLY, 0o644),
        );
        // Mode bits of create: setuid/setgid/sticky pass for root (the
        // process umask applies the same way on both filesystems).
        log.rec(
            "create 07777",
            sys::open(&r.join("allbits"), O_CREAT | O_WRONLY, 0o7777),
        );
        log.stat(&r.join("allbits"));
        log.rec(
            "mknod regular 06644",
            sys::mknod(&r.join("nod"), libc::S_IFREG | 0o6644, 0),
        );
        log.stat(&r.join("nod"));
    });

    s.compare("open_dirs_and_notdir", |r, log| {
        let d = r.join("d");
        make_dir(&d, 0o755);
        log.rec("dir O_WRONLY", sys::open(&d, O_WRONLY, 0));
        log.rec("dir O_RDWR", sys::open(&d, O_RDWR, 0));
        log.rec(
            "dir O_CREAT|O_WRONLY",
            sys::open(&d, O_CREAT | O_WRONLY, 0o644),
        );
        log.rec(
            "dir O_RDONLY|O_DIRECTORY",
            sys::open(&d, O_RDONLY | O_DIRECTORY, 0),
        );
        match sys::open(&d, O_RDONLY, 0) {
            Ok(fd) => log.rec("read on a dir fd", sys::read(&fd, 10)),
            Err(e) => log.rec("dir O_RDONLY", Err::<(), _>(e)),
        }
        let f = r.join("f");
        make_file(&f, b"x");
        log.rec("file O_DIRECTORY", sys::open(&f, O_RDONLY | O_DIRECTORY, 0));
        log.rec("open f/x", sys::open(&r.join("f/x"), O_RDONLY, 0));
        log.rec(
            "create f/x",
            sys::open(&r.join("f/x"), O_CREAT | O_WRONLY, 0o644),
        );
        log.rec("open f/", sys::open(&r.join("f/"), O_RDONLY, 0));
        log.rec("stat f/x", sys::stat(&r.join("f/x")));
        log.rec("mkdir f/d", sys::mkdir(&r.join("f/d"), 0o755));
        log.rec("unlink f/x", sys::unlink(&r.join("f/x")));
        log.rec("rmdir f/x", sys::rmdir(&r.join("f/x")));
    });

    s.compare("trunc", |r, log| {
        let f = r.join("f");
        make_file(&f, b"hello world");
        let fd = sys::open(&f, O_WRONLY | O_TRUNC, 0);
        log.rec("open O_TRUNC", fd.as_ref().map(|_| ()).map_err(|e| *e));
        log.stat(&f);
        log.content(&f);
        make_file(&f, b"again");
        log.rec(
            "open O_CREAT|O_TRUNC existing",
            sys::open(&f, O_CREAT | O_TRUNC | O_RDWR, 0o600),
        );
        log.stat(&f);
        // POSIX: O_TRUNC on an existing file marks mtime and ctime for
        // update, even when it was already empty.
        let old = [(1_000, 0), (1_000, 0)];
        log.rec("set old times", sys::utimens(&f, Some(old), 0));
        log.rec(
            "O_TRUNC an empty file",
            sys::open(&f, O_WRONLY | O_TRUNC, 0),
        );
        log.rec(
            "mtime moved",
            sys::stat(&f).map(|s| mtime(&s) != 1_000_000_000_000),
        );
        if let Ok(fd) = sys::open(&f, O_RDWR | O_TRUNC, 0) {
            log.rec("write after O_TRUNC", sys::write(&fd, b"new"));
        }
        log.content(&f);
    });

    s.compare("append", |r, log| {
        let f = r.join("f");
        make_file(&f, b"abc");
        let Ok(fd) = sys::open(&f, O_WRONLY | O_APPEND, 0) else {
            log.note("open O_APPEND", "failed");
            return;
        };
        log.rec("seek to 0", sys::lseek(&fd, 0, libc::SEEK_SET));
        log.rec("write", sys::write(&fd, b"def"));
        log.rec("offset after", sys::lseek(&fd, 0, libc::SEEK_CUR));
        // Linux: pwrite on an O_APPEND descriptor appends, whatever the
        // offset (documented in pwrite(2) BUGS).
        log.rec("pwrite at 0", sys::pwrite(&fd, b"ghi", 0));
        log.content(&f);
        // Another descriptor's plain write, then an append: still at EOF.
        if let Ok(other) = sys::open(&f, O_WRONLY, 0) {
            log.rec("overwrite at 0", sys::write(&other, b"ABC"));
            log.rec("extend elsewhere", sys::pwrite(&other, b"!", 20));
        }
        log.rec("append after extension", sys::write(&fd, b"jkl"));
        log.content(&f);
        if let Ok(rw) = sys::open(&f, O_RDWR | O_APPEND, 0) {
            log.rec("read on O_RDWR|O_APPEND", sys::pread(&rw, 6, 0));
        }
    });

    s.compare("name_length", |r, log| {
        let n255 = r.join("n".repeat(255));
        let n256 = r.join("n".repeat(256));
        log.rec("create 255", sys::open(&n255, O_CREAT | O_WRONLY, 0o644));
        log.rec("stat 255", sys::stat(&n255).map(|_| ()));
        log.rec(
            "listed 255",
            sorted_names(r).map(|l| l.contains(&"n".repeat(255))),
        );
        log.rec("create 256", sys::open(&n256, O_CREAT | O_WRONLY, 0o644));
        log.rec("stat 256", sys::stat(&n256));
        log.rec("mkdir 256", sys::mkdir(&n256, 0o755));
        log.rec("symlink 256", sys::symlink(b"x", &n256));
        log.rec("link to 256", sys::link(&n255, &n256));
        log.rec("rename to 256", sys::rename(&n255, &n256));
        log.rec("unlink 256", sys::unlink(&n256));
        log.rec("mkdir 255", sys::mkdir(&r.join("d".repeat(255)), 0o755));
        log.rec(
            "rename to 255",
            sys::rename(&n255, &r.join("m".repeat(255))),
        );
        log.rec("unlink 255", sys::unlink(&r.join("m".repeat(255))));
    });

    s.compare("ebadf", |r, log| {
        let f = r.join("f");
        make_file(&f, b"content");
        let ro = sys::open(&f, O_RDONLY, 0).expect("open");
        let wo = sys::open(&f, O_WRONLY, 0).expect("open");
        log.rec("write on O_RDONLY", sys::write(&ro, b"x"));
        log.rec("pwrite on O_RDONLY", sys::pwrite(&ro, b"x", 0));
        log.rec("read on O_WRONLY", sys::read(&wo, 1));
        log.rec("ftruncate on O_RDONLY", sys::ftruncate(&ro, 0));
        // A closed descriptor: moved to a high number first so that no
        // concurrently opened file can take its number.
        // SAFETY: duplicating a descriptor we own.
        let high = unsafe { libc::fcntl(ro.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 700) };
        assert!(high >= 700, "F_DUPFD: {}", errno_name(sys::errno()));
        // SAFETY: closing the duplicate we just made.
        log.rec(
            "close",
            if unsafe { libc::close(high) } == 0 {
                Ok(())
            } else {
                Err(sys::errno())
            },
        );
        log.rec("read closed", sys::read(&high, 1));
        log.rec("write closed", sys::write(&high, b"x"));
        log.rec("fstat closed", sys::fstat(&high));
        log.rec("lseek closed", sys::lseek(&high, 0, libc::SEEK_SET));
        log.content(&f);
    });

    s.compare("offsets", |r, log| {
        let f = r.join("f");
        let fd = sys::open(&f, O_CREAT | O_RDWR, 0o644).expect("create");
        log.rec("write", sys::write(&fd, b"0123456789"));
        log.rec("pread 2@2", sys::pread(&fd, 2, 2));
        log.rec("pread 8@5", sys::pread(&fd, 8, 5));
        log.rec("pread at EOF", sys::pread(&fd, 4, 10));
        log.rec("pread past EOF", sys::pread(&fd, 4, 100));
        log.rec("pwrite 2@3", sys::pwrite(&fd, b"ab", 3));
        log.rec("pwrite 2@12", sys::pwrite(&fd, b"zz", 12));
        log.rec(
            "file offset unchanged by p*",
            sys::lseek(&fd, 0, libc::SEEK_CUR),
        );
        log.rec("SEEK_END", sys::lseek(&fd, 0, libc::SEEK_END));
        log.rec("SEEK_END -4", sys::lseek(&fd, -4, libc::SEEK_END));
        log.rec("read 4", sys::read(&fd, 4));
        log.rec("SEEK_SET -1", sys::lseek(&fd, -1, libc::SEEK_SET));
        log.rec("SEEK_CUR -2", sys::lseek(&fd, -2, libc::SEEK_CUR));
        log.rec("read 10", sys::read(&fd, 10));
        log.rec("SEEK_END +100", sys::lseek(&fd, 100, libc::SEEK_END));
        log.rec("write past EOF", sys::write(&fd, b"e"));
        log.rec("fstat", sys::fstat(&fd));
        log.rec("content", read_file(&f).map(|b| digest(&b)));
        log.rec("head", sys::pread(&fd, 14, 0));
        log.rec("pwrite at a negative offset", sys::pwrite(&fd, b"x", -1));
        log.rec("zero-length write", sys::write(&fd, b""));
        log.rec("zero-length pwrite past EOF", sys::pwrite(&fd, b"", 1000));
        log.rec("size unchanged", sys::fstat(&fd).map(|s| s.st_size));
        log.rec("pwrite at 1 TiB", sys::pwrite(&fd, b"far", 1 << 40));
        log.rec("size", sys::fstat(&fd).map(|s| s.st_size));
        log.rec("read at 1 TiB", sys::pread(&fd, 8, (1 << 40) - 2));
        log.rec("hole before 1 TiB", sys::pread(&fd, 4, 1 << 39));
    });

    s.compare("sparse", |r, log| {
        let f = r.join("f");
        let fd = sys::open(&f, O_CREAT | O_RDWR, 0o644).expect("create");
        log.rec("head", sys::pwrite(&fd, b"head", 0));
        log.rec("tail at 5 MB", sys::pwrite(&fd, b"tail", 5_000_000));
        log.rec("fstat", sys::fstat(&fd));
        log.rec(
            "hole reads zeros",
            sys::pread(&fd, 8192, 1_000_000).map(|b| b.len() == 8192 && b.iter().all(|&x| x == 0)),
        );
        log.rec("across the end of the hole", sys::pread(&fd, 8, 4_999_998));
        let all = read_file(&f);
        log.rec(
            "whole file",
            all.as_ref().map(|b| digest(b)).map_err(|e| *e),
        );
        log.rec("ftruncate up", sys::ftruncate(&fd, 6_000_000));
        log.rec("extension reads zeros", sys::pread(&fd, 16, 5_999_990));
        log.rec("write in the hole", sys::pwrite(&fd, b"mid", 2_500_000));
        log.rec("mid", sys::pread(&fd, 7, 2_499_998));
        log.rec("whole file", read_file(&f).map(|b| digest(&b)));
    });

    s.compare("fallocate_copy_direct", |r, log| {
        let f = r.join("f");
        let fd = sys::open(&f, O_CREAT | O_RDWR, 0o644).expect("create");
        sys::write(&fd, b"start").expect("write");
        // posix_fallocate is POSIX: glibc emulates it when the filesystem
        // has no fallocate (hsfs answers EOPNOTSUPP, SPEC 6).
        log.rec(
            "posix_fallocate to 100000",
            sys::posix_fallocate(&fd, 0, 100_000),
        );
        log.rec("size", sys::fstat(&fd).map(|s| s.st_size));
        log.rec(
            "contents",
            read_file(&f).map(|b| b.starts_with(b"start") && b[5..].iter().all(|&x| x == 0)),
        );
        log.rec("posix_fallocate inside", sys::posix_fallocate(&fd, 10, 10));
        log.rec("size", sys::fstat(&fd).map(|s| s.st_size));
        // copy_file_range: cp uses it; the kernel falls back to a copy
        // when the filesystem does not share extents.
        let src = r.join("src");
        make_file(&src, &pattern(200_000, 4));
        let from = sys::open(&src, O_RDONLY, 0).expect("open");
        let to = sys::open(&r.join("dst"), O_CREAT | O_WRONLY, 0o644).expect("create");
        let mut copied = 0usize;
        let mut result = Ok(0);
        while copied < 200_000 {
            result =
                sys::copy_file_range(&from, copied as i64, &to, copied as i64, 200_000 - copied);
            match result {
                Ok(0) | Err(_) => break,
                Ok(n) => copied += n,
            }
        }
        log.rec("copy_file_range", result.map(|_| copied));
        log.rec(
            "copy equal",
            read_file(&r.join("dst")).map(|b| b == pattern(200_000, 4)),
        );
        // O_DIRECT is accepted (hsfs strips it, SPEC 6).
        let direct = sys::open(&f, O_RDWR | libc::O_DIRECT, 0);
        log.rec("open O_DIRECT", direct.as_ref().map(|_| ()).map_err(|e| *e));
    });

    s.compare("chunk_boundaries", |r, log| {
        let f = r.join("f");
        let fd = sys::open(&f, O_CREAT | O_RDWR, 0o644).expect("create");
        // Larger than the 1 MiB FUSE max_write: the kernel splits it.
        let big = pattern(1_300_000, 7);
        log.rec("big write", sys::write(&fd, &big));
        log.rec("read back", read_file(&f).map(|b| digest(&b)));
        log.rec("equal", read_file(&f).map(|b| b == big));
        log.rec(
            "overwrite across 64 KiB",
            sys::pwrite(&fd, b"0123456789", 65_530),
        );
        log.rec(
            "overwrite across 128 KiB",
            sys::pwrite(&fd, &[0xAA; 100], 131_000),
        );
        log.rec(
            "extend at the end",
            sys::pwrite(&fd, &[0x55; 20], 1_299_990),
        );
        log.rec("pread around 64 KiB", sys::pread(&fd, 14, 65_528));
        log.rec("pread around 128 KiB", sys::pread(&fd, 4, 131_098));
        log.rec("whole", read_file(&f).map(|b| digest(&b)));
    });

    s.finish();
}

#[test]
fn files_excl_race_and_concurrent_appends() {
    let mut s = Suite::new();
    const THREADS: usize = 8;
    const ROUNDS: usize = 20;

    s.compare("excl_race", |r, log| {
        let barrier = std::sync::Barrier::new(THREADS);
        let results: Vec<Vec<Res<()>>> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..THREADS)
                .map(|_| {
                    sc.spawn(|| {
                        (0..ROUNDS)
                            .map(|round| {
                                barrier.wait();
                                let p = r.join(format!("lock{round}"));
                                sys::open(&p, O_CREAT | O_EXCL | O_WRONLY, 0o644).map(drop)
                            })
                            .collect()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().expect("racer")).collect()
        });
        let mut good = 0;
        for round in 0..ROUNDS {
            let winners = results.iter().filter(|t| t[round].is_ok()).count();
            let others_eexist = results
                .iter()
                .all(|t| t[round].is_ok() || t[round] == Err(libc::EEXIST));
            if winners == 1 && others_eexist {
                good += 1;
            }
        }
        log.note(
            "rounds with exactly one winner, others EEXIST",
            format!("{good}/{ROUNDS}"),
        );
    });

    s.compare("concurrent_appends", |r, log| {
        const WRITERS: usize = 4;
        const RECORDS: usize = 40;
        const LEN: usize = 64;
        let f = r.join("log");
        make_file(&f, b"");
        std::thread::scope(|sc| {
            for t in 0..WRITERS {
                let f = &f;
                sc.spawn(move || {
                    let fd = sys::open(f, O_WRONLY | O_APPEND, 0).expect("open");
                    for i in 0..RECORDS {
                        let mut rec = format!("writer {t} record {i:03} ").into_bytes();
                        rec.resize(LEN - 1, b'.');
                        rec.push(b'\n');
                        assert_eq!(sys::write(&fd, &rec), Ok(LEN));
                    }
                });
            }
        });
        let data = read_file(&f).expect("read");
        log.note("size", data.len());
        let recs: BTreeSet<&[u8]> = data.chunks(LEN).collect();
        let intact = data
            .chunks(LEN)
            .all(|c| c.len() == LEN && c.starts_with(b"writer ") && c.ends_with(b".\n"));
        log.note("records distinct", recs.len());
        log.note("records intact", intact);
    });

    s.finish();
}

// ---------------------------------------------------------------------------
// Directories
// ---------------------------------------------------------------------------

#[test]
fn directories_and_readdir() {
    let mut s = Suite::new();

    s.compare("mkdir_rmdir", |r, log| {
        let d = r.join("d");
        log.rec("mkdir", sys::mkdir(&d, 0o755));
        log.rec("mkdir again", sys::mkdir(&d, 0o755));
        make_file(&r.join("f"), b"");
        log.rec("mkdir over a file", sys::mkdir(&r.join("f"), 0o755));
        log.rec("mkdir in missing", sys::mkdir(&r.join("missing/x"), 0o755));
        log.rec("mkdir trailing slash", sys::mkdir(&r.join("e/"), 0o755));
        // mkdir keeps the sticky bit but not setuid/setgid from its mode.
        log.rec("mkdir 07777", sys::mkdir(&r.join("allbits"), 0o7777));
        log.stat(&r.join("allbits"));
        log.rec("rmdir missing", sys::rmdir(&r.join("missing")));
        log.rec("rmdir a file", sys::rmdir(&r.join("f")));
        log.rec("unlink a dir", sys::unlink(&d));
        log.rec("mkdir d/sub", sys::mkdir(&d.join("sub"), 0o755));
        make_file(&d.join("sub/x"), b"");
        log.rec("rmdir non-empty", sys::rmdir(&d));
        log.rec("rmdir non-empty sub", sys::rmdir(&d.join("sub")));
        log.rec("rmdir d/.", sys::rmdir(&d.join(".")));
        log.rec("rmdir d/..", sys::rmdir(&d.join("sub/..")));
        log.rec("unlink d/sub/x", sys::unlink(&d.join("sub/x")));
        log.rec("rmdir sub/ (trailing slash)", sys::rmdir(&r.join("d/sub/")));
        log.rec("rmdir d", sys::rmdir(&d));
        log.rec("stat d", sys::stat(&d));
        log.listing(r);
    });

    s.compare("dir_nlink", |r, log| {
        let d = r.join("d");
        make_dir(&d, 0o755);
        log.stat(&d);
        for n in ["a", "b", "c"] {
            sys::mkdir(&d.join(n), 0o755).expect("mkdir");
        }
        log.stat(&d);
        make_file(&d.join("f"), b"");
        sys::symlink(b"f", &d.join("l")).expect("symlink");
        log.stat(&d);
        log.rec("rmdir a", sys::rmdir(&d.join("a")));
        log.stat(&d);
        log.rec("move b out", sys::rename(&d.join("b"), &r.join("b")));
        log.stat(&d);
        log.stat(r);
        log.rec(
            "move b back as b2",
            sys::rename(&r.join("b"), &d.join("b2")),
        );
        log.stat(&d);
        log.stat(r);
        log.rec(
            "b2/.. is d",
            ino(&d.join("b2/..")).and_then(|i| ino(&d).map(|j| i == j)),
        );
    });

    s.compare("dir_times", |r, log| {
        // Set the directory's times far in the past, do one thing, and see
        // whether its mtime moved (POSIX says which operations mark it).
        let d = r.join("d");
        make_dir(&d, 0o755);
        let old: [Ts; 2] = [(1_000, 0), (1_000, 0)];
        let moved = |log: &mut Log, what: &str| {
            log.rec(
                &format!("{what}: dir mtime moved"),
                sys::stat(&d).map(|s| mtime(&s) != 1_000_000_000_000),
            );
            sys::utimens(&d, Some(old), 0).expect("reset times");
        };
        sys::utimens(&d, Some(old), 0).expect("set times");
        make_file(&d.join("f"), b"");
        moved(log, "create");
        sys::mkdir(&d.join("sub"), 0o755).expect("mkdir");
        moved(log, "mkdir");
        sys::rename(&d.join("f"), &d.join("g")).expect("rename");
        moved(log, "rename");
        sys::chmod(&d.join("g"), 0o600).expect("chmod");
        moved(log, "chmod of a child");
        write_file(&d.join("g"), b"data").expect("write");
        moved(log, "write to a child");
        sys::link(&d.join("g"), &d.join("h")).expect("link");
        moved(log, "link");
        sys::unlink(&d.join("h")).expect("unlink");
        moved(log, "unlink");
        sys::rmdir(&d.join("sub")).expect("rmdir");
        moved(log, "rmdir");
        sys::symlink(b"g", &d.join("s")).expect("symlink");
        moved(log, "symlink");
    });

    s.compare("readdir_entries", |r, log| {
        let d = r.join("d");
        make_dir(&d, 0o755);
        log.listing(&d);
        let odd: [&[u8]; 6] = [
            b"a",
            b"b c",
            b"\xff\xfe",
            b"new\nline",
            "\u{fc}ml".as_bytes(),
            b" lead",
        ];
        for n in odd {
            make_file(&d.join(std::ffi::OsStr::from_bytes(n)), n);
        }
        sys::mkdir(&d.join("sub"), 0o755).expect("mkdir");
        sys::symlink(b"a", &d.join("lnk")).expect("symlink");
        sys::mkfifo(&d.join("pipe"), 0o644).expect("mkfifo");
        log.listing(&d);
        let entries = sys::list(&d).unwrap_or_default();
        let by_name = |n: &[u8]| entries.iter().find(|e| e.name == n).map(|e| e.ino);
        log.rec("'.' is the dir", ino(&d).map(|i| by_name(b".") == Some(i)));
        log.rec(
            "'..' is the parent",
            ino(r).map(|i| by_name(b"..") == Some(i)),
        );
        log.rec(
            "entry inos match lstat",
            Ok(entries
                .iter()
                .filter(|e| e.name != b"." && e.name != b"..")
                .all(|e| ino(&d.join(std::ffi::OsStr::from_bytes(&e.name))) == Ok(e.ino))),
        );
        for n in odd {
            let p = d.join(std::ffi::OsStr::from_bytes(n));
            log.rec(&format!("content of {}", n.escape_ascii()), read_file(&p));
        }
        // A removed directory still open: getdents fails with ENOENT
        // (Linux), fstat still works on the descriptor.
        let gone = r.join("gone");
        make_dir(&gone, 0o755);
        let fd = sys::open(&gone, O_RDONLY | O_DIRECTORY, 0).expect("open dir");
        log.rec("rmdir while open", sys::rmdir(&gone));
        log.rec(
            "getdents of removed dir",
            sys::getdents(&fd, 4096).map(|v| v.len()),
        );
        log.rec("fstat of removed dir", sys::fstat(&fd));
    });

    s.compare("readdir_while_changing", |r, log| {
        let d = r.join("d");
        make_dir(&d, 0o755);
        let stable_names: Vec<String> = (0..300)
            .filter(|i| i % 3 != 0)
            .map(|i| format!("f{i:03}"))
            .collect();
        let removed: Vec<String> = (0..300)
            .filter(|i| i % 3 == 0)
            .map(|i| format!("f{i:03}"))
            .collect();
        for n in stable_names.iter().chain(&removed) {
            make_file(&d.join(n), b"");
        }
        let fd = sys::open(&d, O_RDONLY | O_DIRECTORY, 0).expect("open dir");
        let mut seen: Vec<Vec<u8>> = Vec::new();
        let mut added = Vec::new();
        let mut phase = 0;
        loop {
            // A small buffer: many getdents calls, each resuming at the
            // offset of the last entry returned.
            let batch = sys::getdents(&fd, 1024).expect("getdents");
            if batch.is_empty() {
                break;
            }
            seen.extend(batch.into_iter().map(|e| e.name));
            if phase == 0 && seen.len() >= 60 {
                // Remove the first half of the doomed names, add new ones
                // sorting before, among and after the existing names.
                for n in &removed[..50] {
                    sys::unlink(&d.join(n)).expect("unlink");
                }
                for i in 0..60 {
                    let n = match i % 3 {
                        0 => format!("a{i:03}"),
                        1 => format!("f{:03}x", i * 5),
                        _ => format!("z{i:03}"),
                    };
                    make_file(&d.join(&n), b"");
                    added.push(n);
                }
                phase = 1;
            } else if phase == 1 && seen.len() >= 180 {
                for n in &removed[50..] {
                    sys::unlink(&d.join(n)).expect("unlink");
                }
                phase = 2;
            }
        }
        let mut counts: BTreeMap<&[u8], usize> = BTreeMap::new();
        for n in &seen {
            *counts.entry(n.as_slice()).or_default() += 1;
        }
        let known: BTreeSet<&[u8]> = stable_names
            .iter()
            .chain(&removed)
            .chain(&added)
            .map(|s| s.as_bytes())
            .chain([b".".as_slice(), b"..".as_slice()])
            .collect();
        log.note("mutated during the listing", phase == 2);
        log.note("no entry returned twice", counts.values().all(|&c| c == 1));
        let missing = stable_names
            .iter()
            .filter(|n| !counts.contains_key(n.as_bytes()))
            .count();
        log.note("stable entries missing", missing);
        log.note(
            "dots returned",
            counts.contains_key(b".".as_slice()) && counts.contains_key(b"..".as_slice()),
        );
        log.note("no unknown names", counts.keys().all(|n| known.contains(n)));
        // A fresh listing shows exactly the final set.
        let now: BTreeSet<Vec<u8>> = sys::list(&d)
            .expect("list")
            .into_iter()
            .map(|e| e.name)
            .collect();
        let expect: BTreeSet<Vec<u8>> = stable_names
            .iter()
            .chain(&added)
            .map(|s| s.as_bytes().to_vec())
            .chain([b".".to_vec(), b"..".to_vec()])
            .collect();
        log.note("final listing exact", now == expect);
    });

    s.compare("readdir_seek", |r, log| {
        let d = r.join("d");
        make_dir(&d, 0o755);
        for i in 0..100 {
            make_file(&d.join(format!("e{i:02}")), b"");
        }
        let fd = sys::open(&d, O_RDONLY | O_DIRECTORY, 0).expect("open dir");
        let mut all = Vec::new();
        loop {
            let b = sys::getdents(&fd, 512).expect("getdents");
            if b.is_empty() {
                break;
            }
            all.extend(b);
        }
        log.note("entries", all.len());
        // telldir/seekdir: seeking to the d_off of entry k resumes at k+1.
        let k = 40;
        log.rec(
            "seek",
            sys::lseek(&fd, all[k].off, libc::SEEK_SET).map(|o| o == all[k].off),
        );
        let mut rest = Vec::new();
        loop {
            let b = sys::getdents(&fd, 512).expect("getdents");
            if b.is_empty() {
                break;
            }
            rest.extend(b.into_iter().map(|e| e.name));
        }
        let want: Vec<Vec<u8>> = all[k + 1..].iter().map(|e| e.name.clone()).collect();
        log.note("resumed after the seek point", rest == want);
        log.rec("rewind", sys::lseek(&fd, 0, libc::SEEK_SET));
        log.rec(
            "first after rewind",
            sys::getdents(&fd, 512)
                .map(|b| b.first().map(|e| e.name.clone()) == Some(all[0].name.clone())),
        );
    });

    s.finish();
}

// ---------------------------------------------------------------------------
// Renames
// ---------------------------------------------------------------------------

const RENAME_NOREPLACE: u32 = 1;
const RENAME_EXCHANGE: u32 = 2;

#[test]
fn renames() {
    let mut s = Suite::new();

    s.compare("rename_files", |r, log| {
        let (f, g) = (r.join("f"), r.join("g"));
        make_file(&f, b"one");
        make_file(&g, b"two");
        let g_ino = ino(&g);
        let reader = sys::open(&g, O_RDONLY, 0).expect("open g");
        log.rec("rename f over g", sys::rename(&f, &g));
        log.content(&g);
        log.stat(&g);
        log.rec("f gone", sys::stat(&f));
        log.rec("replaced g still readable", sys::pread(&reader, 10, 0));
        log.rec("replaced g nlink", sys::fstat(&reader).map(|s| s.st_nlink));
        log.rec("new g is another inode", ino(&g).map(|i| Ok(i) != g_ino));
        log.rec("rename to itself", sys::rename(&g, &g));
        log.content(&g);
        sys::link(&g, &r.join("h")).expect("link");
        // POSIX: two names of one file: rename does nothing.
        log.rec("rename onto a hard link", sys::rename(&g, &r.join("h")));
        make_file(&r.join("k"), b"k");
        log.rec("rename a 2-link file over k", sys::rename(&g, &r.join("k")));
        log.stat(&r.join("k"));
        log.stat(&r.join("h"));
        log.rec(
            "k and h one inode",
            ino(&r.join("k")).and_then(|i| ino(&r.join("h")).map(|j| i == j)),
        );
        log.rec("rename back", sys::rename(&r.join("k"), &g));
        log.listing(r);
        log.rec(
            "rename missing",
            sys::rename(&r.join("missing"), &r.join("x")),
        );
        log.rec(
            "rename into a missing dir",
            sys::rename(&g, &r.join("nodir/x")),
        );
        log.rec(
            "rename to name/ (not a dir)",
            sys::rename(&g, &r.join("g2/")),
        );
        log.rec("rename under a file", sys::rename(&g, &r.join("h/x")));
        log.rec("rename file to existing/ ", sys::rename(&g, &r.join("h/")));
        log.rec("rename . away", sys::rename(&r.join("."), &r.join("dot")));
        log.listing(r);
    });

    s.compare("rename_dirs", |r, log| {
        let (d1, d2, full, f) = (r.join("d1"), r.join("d2"), r.join("full"), r.join("f"));
        make_dir(&d1, 0o755);
        make_dir(&d2, 0o700);
        make_dir(&full, 0o755);
        make_file(&full.join("x"), b"x");
        make_file(&f, b"f");
        make_file(&d1.join("inside"), b"in");
        let old_d2 = sys::open(&d2, O_RDONLY | O_DIRECTORY, 0).expect("open d2");
        log.rec("dir over empty dir", sys::rename(&d1, &d2));
        // The replaced directory is still open: fstat must work.
        log.rec("fstat of the replaced dir", sys::fstat(&old_d2));
        log.stat(&d2);
        log.content(&d2.join("inside"));
        log.rec("d1 gone", sys::stat(&d1));
        log.rec("dir over non-empty dir", sys::rename(&d2, &full));
        log.rec("file over dir", sys::rename(&f, &full));
        log.rec("dir over file", sys::rename(&full, &f));
        sys::mkdir(&d2.join("sub"), 0o755).expect("mkdir");
        log.rec(
            "dir into its own subdir",
            sys::rename(&d2, &d2.join("sub/x")),
        );
        log.rec("dir onto its own subdir", sys::rename(&d2, &d2.join("sub")));
        log.rec("dir onto its parent", sys::rename(&d2.join("sub"), &d2));
        log.rec("dir to itself", sys::rename(&d2, &d2));
        log.rec("dir/. away", sys::rename(&d2.join("."), &r.join("y")));
        log.rec("dir to name/", sys::rename(&d2, &r.join("d3/")));
        log.listing(r);
        log.stat(r);
    });

    s.compare("rename_across_dirs", |r, log| {
        let (a, b) = (r.join("a"), r.join("b"));
        make_dir(&a, 0o755);
        make_dir(&b, 0o755);
        make_dir(&a.join("d"), 0o755);
        make_file(&a.join("d/file"), b"payload");
        make_file(&a.join("f"), b"file");
        // No EXDEV inside one filesystem, for files, dirs and links.
        log.rec(
            "move dir a/d -> b/d",
            sys::rename(&a.join("d"), &b.join("d")),
        );
        log.rec(
            "move file a/f -> b/f",
            sys::rename(&a.join("f"), &b.join("f")),
        );
        log.rec("link b/f -> a/f", sys::link(&b.join("f"), &a.join("f")));
        log.stat(&a);
        log.stat(&b);
        log.content(&b.join("d/file"));
        log.rec(
            "b/d/.. is b (stat)",
            ino(&b.join("d/..")).and_then(|i| ino(&b).map(|j| i == j)),
        );
        // The directory's own ".." entry, as the filesystem lists it.
        let dotdot =
            sys::list(&b.join("d")).map(|l| l.into_iter().find(|e| e.name == b"..").map(|e| e.ino));
        log.rec(
            "b/d lists .. as b",
            dotdot.and_then(|i| ino(&b).map(|j| i == Some(j))),
        );
        let deep = r.join("x/y/z");
        std::fs::create_dir_all(&deep).expect("mkdir -p");
        log.rec("move deep", sys::rename(&b.join("d"), &deep.join("d")));
        log.rec(
            "deep .. listed",
            sys::list(&deep.join("d"))
                .map(|l| l.into_iter().find(|e| e.name == b"..").map(|e| e.ino) == ino(&deep).ok()),
        );
        log.content(&deep.join("d/file"));
        log.stat(&b);
        log.stat(&deep);
    });

    s.compare("renameat2", |r, log| {
        let (f, g, h) = (r.join("f"), r.join("g"), r.join("h"));
        make_file(&f, b"F");
        make_file(&g, b"G");
        log.rec(
            "NOREPLACE onto existing",
            sys::renameat2(&f, &g, RENAME_NOREPLACE),
        );
        log.rec(
            "NOREPLACE onto missing",
            sys::renameat2(&f, &h, RENAME_NOREPLACE),
        );
        log.content(&h);
        log.rec("f gone", sys::stat(&f));
        log.rec("EXCHANGE files", sys::renameat2(&h, &g, RENAME_EXCHANGE));
        log.content(&h);
        log.content(&g);
        log.rec(
            "EXCHANGE with missing",
            sys::renameat2(&g, &r.join("missing"), RENAME_EXCHANGE),
        );
        log.rec(
            "NOREPLACE|EXCHANGE",
            sys::renameat2(&g, &h, RENAME_NOREPLACE | RENAME_EXCHANGE),
        );
        let d = r.join("d");
        make_dir(&d, 0o750);
        make_file(&d.join("child"), b"c");
        log.rec(
            "EXCHANGE file and dir",
            sys::renameat2(&g, &d, RENAME_EXCHANGE),
        );
        log.stat(&g);
        log.stat(&d);
        log.content(&g.join("child"));
        log.content(&d);
        // Across directories, a dir swapped with a file: link counts of
        // both parents and the moved dir's "..".
        let (x, y) = (r.join("x"), r.join("y"));
        make_dir(&x, 0o755);
        make_dir(&y, 0o755);
        make_dir(&x.join("sx"), 0o755);
        make_file(&y.join("fy"), b"fy");
        log.rec(
            "EXCHANGE across dirs",
            sys::renameat2(&x.join("sx"), &y.join("fy"), RENAME_EXCHANGE),
        );
        log.stat(&x);
        log.stat(&y);
        log.lstat(&x.join("sx"));
        log.lstat(&y.join("fy"));
        log.rec(
            "y/fy lists .. as y",
            sys::list(&y.join("fy"))
                .map(|l| l.into_iter().find(|e| e.name == b"..").map(|e| e.ino) == ino(&y).ok()),
        );
        make_dir(&x.join("dx"), 0o700);
        make_dir(&y.join("dy"), 0o755);
        log.rec(
            "EXCHANGE two dirs across parents",
            sys::renameat2(&x.join("dx"), &y.join("dy"), RENAME_EXCHANGE),
        );
        log.lstat(&x.join("dx"));
        log.lstat(&y.join("dy"));
        log.stat(&x);
        log.stat(&y);
        let dotdot_is = |d: &Path, parent: &Path| {
            sys::list(d)
                .map(|l| l.into_iter().find(|e| e.name == b"..").map(|e| e.ino) == ino(parent).ok())
        };
        log.rec("x/dx lists .. as x", dotdot_is(&x.join("dx"), &x));
        log.rec("y/dy lists .. as y", dotdot_is(&y.join("dy"), &y));
        log.rec(
            "x/dx/.. is x (stat)",
            ino(&x.join("dx/..")).and_then(|i| ino(&x).map(|j| i == j)),
        );
        log.rec(
            "EXCHANGE dir with its subdir",
            sys::renameat2(&g, &g.join("child"), RENAME_EXCHANGE),
        );
        make_dir(&g.join("sub"), 0o755);
        log.rec(
            "EXCHANGE dir with its subdir (dir)",
            sys::renameat2(&g, &g.join("sub"), RENAME_EXCHANGE),
        );
        log.rec(
            "EXCHANGE subdir with its parent",
            sys::renameat2(&g.join("sub"), &g, RENAME_EXCHANGE),
        );
        log.rec(
            "EXCHANGE with itself",
            sys::renameat2(&h, &h, RENAME_EXCHANGE),
        );
        log.rec("unknown flag", sys::renameat2(&h, &r.join("k"), 1 << 20));
        log.listing(r);
    });

    s.finish();
}

// ---------------------------------------------------------------------------
// Hard links and symlinks
// ---------------------------------------------------------------------------

#[test]
fn links_and_symlinks() {
    let mut s = Suite::new();

    s.compare("hard_links", |r, log| {
        let (f, g) = (r.join("f"), r.join("g"));
        make_file(&f, b"data");
        let fd = sys::open(&f, O_RDONLY, 0).expect("open");
        log.rec("link", sys::link(&f, &g));
        log.stat(&f);
        log.rec(
            "fstat of an open fd sees nlink 2",
            sys::fstat(&fd).map(|s| s.st_nlink),
        );
        log.rec("same inode", ino(&f).and_then(|i| ino(&g).map(|j| i == j)));
        log.rec("link onto existing", sys::link(&f, &g));
        log.rec("link missing", sys::link(&r.join("missing"), &r.join("x")));
        log.rec("link into missing dir", sys::link(&f, &r.join("nodir/x")));
        make_dir(&r.join("d"), 0o755);
        log.rec("link a dir", sys::link(&r.join("d"), &r.join("d2")));
        log.rec("link into subdir", sys::link(&f, &r.join("d/f3")));
        log.stat(&f);
        log.rec("unlink f", sys::unlink(&f));
        log.stat(&g);
        log.content(&g);
        log.rec(
            "fstat after unlink of one name",
            sys::fstat(&fd).map(|s| s.st_nlink),
        );
        sys::symlink(b"g", &r.join("s")).expect("symlink");
        // link(2) does not follow a final symlink on Linux.
        log.rec("link a symlink", sys::link(&r.join("s"), &r.join("s2")));
        log.lstat(&r.join("s2"));
        log.rec("s2 target", sys::readlink(&r.join("s2"), 100));
        log.listing(r);
    });

    s.compare("symlink_targets", |r, log| {
        let long = vec![b'x'; 4095];
        let targets: [&[u8]; 9] = [
            b"plain",
            b"a/b/../c",
            b"/abs/path",
            b"trailing/",
            b"with space ",
            b"\xff\x01odd\x7f\xc3(",
            b"dots/./../.",
            b"//double//slashes//",
            &long,
        ];
        for (i, t) in targets.iter().enumerate() {
            let p = r.join(format!("l{i}"));
            log.rec(&format!("symlink l{i}"), sys::symlink(t, &p));
            log.rec(
                &format!("readlink l{i} exact"),
                sys::readlink(&p, 8192).map(|b| b == *t),
            );
            log.lstat(&p);
        }
        log.rec(
            "target of 4096 bytes",
            sys::symlink(&[b'y'; 4096], &r.join("toolong")),
        );
        log.rec("empty target", sys::symlink(b"", &r.join("empty")));
        log.rec("symlink over existing", sys::symlink(b"x", &r.join("l0")));
        log.rec("readlink short buffer", sys::readlink(&r.join("l1"), 3));
        make_file(&r.join("f"), b"content");
        make_dir(&r.join("d"), 0o755);
        log.rec("readlink of a file", sys::readlink(&r.join("f"), 100));
        log.rec("readlink of a dir", sys::readlink(&r.join("d"), 100));
        log.rec("readlink missing", sys::readlink(&r.join("missing"), 100));
    });

    s.compare("symlink_resolution", |r, log| {
        make_file(&r.join("f"), b"content");
        make_dir(&r.join("sub"), 0o755);
        make_file(&r.join("sub/inner"), b"inner");
        sys::symlink(b"f", &r.join("tf")).expect("symlink");
        sys::symlink(b"sub", &r.join("ld")).expect("symlink");
        sys::symlink(b"nothere", &r.join("dangling")).expect("symlink");
        log.content(&r.join("tf"));
        log.stat(&r.join("tf"));
        log.lstat(&r.join("tf"));
        log.content(&r.join("ld/inner"));
        log.listing(&r.join("ld"));
        log.rec("stat dangling", sys::stat(&r.join("dangling")));
        log.lstat(&r.join("dangling"));
        log.rec(
            "create through dangling",
            sys::open(&r.join("dangling"), O_CREAT | O_WRONLY, 0o644),
        );
        log.lstat(&r.join("nothere"));
        log.rec("unlink a symlink only", sys::unlink(&r.join("tf")));
        log.stat(&r.join("f"));
        log.rec("rmdir through a symlink", sys::rmdir(&r.join("ld")));
    });

    s.compare("symlink_loops", |r, log| {
        make_file(&r.join("f"), b"content");
        make_dir(&r.join("sub"), 0o755);
        make_file(&r.join("sub/g"), b"g");
        sys::symlink(b"self", &r.join("self")).expect("symlink");
        sys::symlink(b"b", &r.join("a")).expect("symlink");
        sys::symlink(b"a", &r.join("b")).expect("symlink");
        sys::symlink(b"f", &r.join("tf")).expect("symlink");
        sys::symlink(b"sub", &r.join("ld")).expect("symlink");
        sys::symlink(b"nothere", &r.join("dangling")).expect("symlink");
        log.rec("open self", sys::open(&r.join("self"), O_RDONLY, 0));
        log.rec("stat self", sys::stat(&r.join("self")));
        log.lstat(&r.join("self"));
        log.rec("open a (a->b->a)", sys::open(&r.join("a"), O_RDONLY, 0));
        log.rec(
            "create through a loop",
            sys::open(&r.join("self"), O_CREAT | O_WRONLY, 0o644),
        );
        log.rec("open self/x", sys::open(&r.join("self/x"), O_RDONLY, 0));
        log.rec(
            "O_NOFOLLOW on a symlink",
            sys::open(&r.join("tf"), O_RDONLY | O_NOFOLLOW, 0),
        );
        log.rec(
            "O_NOFOLLOW on a file",
            sys::open(&r.join("f"), O_RDONLY | O_NOFOLLOW, 0),
        );
        log.rec(
            "O_NOFOLLOW follows inner components",
            sys::open(&r.join("ld/g"), O_RDONLY | O_NOFOLLOW, 0),
        );
        log.rec(
            "O_NOFOLLOW|O_CREAT on dangling",
            sys::open(&r.join("dangling"), O_CREAT | O_WRONLY | O_NOFOLLOW, 0o644),
        );
        // Linux follows at most 40 symlinks in one lookup.
        for i in 1..=41 {
            let target = if i == 1 {
                "f".to_string()
            } else {
                format!("c{}", i - 1)
            };
            sys::symlink(target.as_bytes(), &r.join(format!("c{i}"))).expect("symlink");
        }
        log.rec("chain of 40", sys::open(&r.join("c40"), O_RDONLY, 0));
        log.rec("chain of 41", sys::open(&r.join("c41"), O_RDONLY, 0));
    });

    s.finish();
}

// ---------------------------------------------------------------------------
// Attributes: truncate, chmod, chown, times, xattrs, statfs
// ---------------------------------------------------------------------------

/// The xattr record of [`xattr_case`] as Linux documents it (xattr(7),
/// getxattr(2), setxattr(2), listxattr(2), removexattr(2)).
const XATTR_LINUX: &[&str] = &[
    "get missing: ENODATA",
    "list empty probe: ok 0",
    "set user.a: ok",
    "set user.b (empty value): ok",
    "XATTR_CREATE existing: EEXIST",
    "XATTR_REPLACE missing: ENODATA",
    "XATTR_REPLACE existing: ok",
    "XATTR_CREATE new: ok",
    "size probe: ok 7",
    "get: ok \"replace\"",
    "get exact size: ok \"replace\"",
    "get small buffer: ERANGE",
    "get empty value: ok 0",
    "list probe: ok 21",
    "list: ok \"user.a\\x00user.b\\x00user.c\\x00\"",
    "list small buffer: ERANGE",
    "remove: ok",
    "remove again: ENODATA",
    "get removed: ENODATA",
    "list after remove: ok \"user.b\\x00user.c\\x00\"",
    "name of 256 bytes: ERANGE",
    "value of 65537 bytes: E2BIG",
    "binary value: ok",
    "binary value back: ok \"\\x00\\xff\\x01\\n\"",
    "on a dir: ok",
    "dir get: ok \"d\"",
    "user.* on a symlink: EPERM",
    "on missing: ENOENT",
    "unknown namespace: EOPNOTSUPP",
];

fn xattr_case(r: &Path, log: &mut Log) {
    let f = r.join("f");
    make_file(&f, b"");
    let k = |(n, _): (usize, Vec<u8>)| n;
    let v = |(_, b): (usize, Vec<u8>)| b;
    log.rec("get missing", sys::getxattr(&f, "user.a", 64).map(v));
    log.rec("list empty probe", sys::listxattr(&f, 0).map(k));
    log.rec("set user.a", sys::setxattr(&f, "user.a", b"first", 0));
    log.rec(
        "set user.b (empty value)",
        sys::setxattr(&f, "user.b", b"", 0),
    );
    log.rec(
        "XATTR_CREATE existing",
        sys::setxattr(&f, "user.a", b"x", libc::XATTR_CREATE),
    );
    log.rec(
        "XATTR_REPLACE missing",
        sys::setxattr(&f, "user.zz", b"x", libc::XATTR_REPLACE),
    );
    log.rec(
        "XATTR_REPLACE existing",
        sys::setxattr(&f, "user.a", b"replace", libc::XATTR_REPLACE),
    );
    log.rec(
        "XATTR_CREATE new",
        sys::setxattr(&f, "user.c", b"c", libc::XATTR_CREATE),
    );
    log.rec("size probe", sys::getxattr(&f, "user.a", 0).map(k));
    log.rec("get", sys::getxattr(&f, "user.a", 64).map(v));
    log.rec("get exact size", sys::getxattr(&f, "user.a", 7).map(v));
    log.rec("get small buffer", sys::getxattr(&f, "user.a", 3).map(v));
    log.rec("get empty value", sys::getxattr(&f, "user.b", 64).map(k));
    log.rec("list probe", sys::listxattr(&f, 0).map(k));
    // listxattr order is unspecified: sort the names.
    let sorted = |(_, b): (usize, Vec<u8>)| {
        let mut names: Vec<&[u8]> = b.split_inclusive(|&c| c == 0).collect();
        names.sort();
        names.concat()
    };
    log.rec("list", sys::listxattr(&f, 1024).map(sorted));
    log.rec("list small buffer", sys::listxattr(&f, 5).map(k));
    log.rec("remove", sys::removexattr(&f, "user.a"));
    log.rec("remove again", sys::removexattr(&f, "user.a"));
    log.rec("get removed", sys::getxattr(&f, "user.a", 64).map(v));
    log.rec("list after remove", sys::listxattr(&f, 1024).map(sorted));
    let long = format!("user.{}", "n".repeat(251));
    log.rec("name of 256 bytes", sys::setxattr(&f, &long, b"x", 0));
    log.rec(
        "value of 65537 bytes",
        sys::setxattr(&f, "user.big", &vec![1; 65_537], 0),
    );
    log.rec(
        "binary value",
        sys::setxattr(&f, "user.bin", b"\x00\xff\x01\n", 0),
    );
    log.rec(
        "binary value back",
        sys::getxattr(&f, "user.bin", 64).map(v),
    );
    let d = r.join("d");
    make_dir(&d, 0o755);
    log.rec("on a dir", sys::setxattr(&d, "user.d", b"d", 0));
    log.rec("dir get", sys::getxattr(&d, "user.d", 64).map(v));
    sys::symlink(b"f", &r.join("s")).expect("symlink");
    // The VFS allows user.* only on regular files and directories.
    log.rec(
        "user.* on a symlink",
        sys::lsetxattr(&r.join("s"), "user.s", b"s", 0),
    );
    log.rec(
        "on missing",
        sys::setxattr(&r.join("missing"), "user.a", b"x", 0),
    );
    // setxattr(2): ENOTSUP "the namespace prefix of name is not valid".
    log.rec("unknown namespace", sys::setxattr(&f, "foo.bar", b"x", 0));
}

#[test]
fn attributes_times_xattrs_statfs() {
    let mut s = Suite::new();

    s.compare("truncate", |r, log| {
        let f = r.join("f");
        let data = pattern(100_000, 3);
        make_file(&f, &data);
        log.rec("shrink to 1000", sys::truncate(&f, 1000));
        log.stat(&f);
        log.rec("grow to 100000", sys::truncate(&f, 100_000));
        let back = read_file(&f);
        log.rec(
            "kept prefix",
            back.as_ref()
                .map(|b| b[..1000] == data[..1000])
                .map_err(|e| *e),
        );
        log.rec(
            "grown part reads zeros",
            back.map(|b| b[1000..].iter().all(|&x| x == 0)),
        );
        let fd = sys::open(&f, O_RDWR, 0).expect("open");
        log.rec("ftruncate to 50", sys::ftruncate(&fd, 50));
        log.rec("pread after shrink", sys::pread(&fd, 100, 40));
        log.rec("ftruncate to 70000", sys::ftruncate(&fd, 70_000));
        log.rec("zeros across 64 KiB", sys::pread(&fd, 12, 65_530));
        log.rec("write beyond", sys::pwrite(&fd, b"end", 80_000));
        log.rec("fstat", sys::fstat(&fd));
        log.rec("truncate to 0", sys::ftruncate(&fd, 0));
        log.rec("write at 10", sys::pwrite(&fd, b"x", 10));
        log.content(&f);
        // truncate(2) marks mtime/ctime even when the size is unchanged.
        sys::utimens(&f, Some([(1_000, 0), (1_000, 0)]), 0).expect("utimens");
        log.rec("truncate to same size", sys::truncate(&f, 11));
        log.rec(
            "mtime moved",
            sys::stat(&f).map(|s| mtime(&s) != 1_000_000_000_000),
        );
        make_dir(&r.join("d"), 0o755);
        log.rec("truncate a dir", sys::truncate(&r.join("d"), 0));
        log.rec("truncate negative", sys::truncate(&f, -1));
        log.rec("truncate missing", sys::truncate(&r.join("missing"), 0));
        let ro = sys::open(&f, O_RDONLY, 0).expect("open");
        log.rec("ftruncate O_RDONLY", sys::ftruncate(&ro, 0));
    });

    s.compare("chmod_chown", |r, log| {
        let f = r.join("f");
        make_file(&f, b"x");
        for m in [0, 0o644, 0o4755, 0o2755, 0o1777, 0o7777, 0o600] {
            log.rec(&format!("chmod {m:04o}"), sys::chmod(&f, m));
            log.stat(&f);
        }
        let d = r.join("d");
        make_dir(&d, 0o755);
        log.rec("chmod dir 3755", sys::chmod(&d, 0o3755));
        log.stat(&d);
        log.rec("chown 1234:5678", sys::chown(&f, 1234, 5678));
        log.stat(&f);
        log.rec("chown -1:-1", sys::chown(&f, sys::KEEP, sys::KEEP));
        log.rec("chown -1:99", sys::chown(&f, sys::KEEP, 99));
        log.stat(&f);
        let fd = sys::open(&f, O_RDONLY, 0).expect("open");
        log.rec("fchmod 0640", sys::fchmod(&fd, 0o640));
        log.rec("fstat", sys::fstat(&fd));
        sys::symlink(b"f", &r.join("s")).expect("symlink");
        log.rec("lchown the symlink", sys::lchown(&r.join("s"), 42, 43));
        log.lstat(&r.join("s"));
        log.stat(&f);
        log.rec("chown through the symlink", sys::chown(&r.join("s"), 7, 8));
        log.stat(&f);
        log.lstat(&r.join("s"));
        // chown clears setuid, and setgid when group-execute is set, on
        // non-directories (Linux chown(2)), even for root.
        for m in [0o6755, 0o6745, 0o4700, 0o2775] {
            sys::chmod(&f, m).expect("chmod");
            log.rec(
                &format!("{m:04o} then chown uid"),
                sys::chown(&f, 1, sys::KEEP),
            );
            log.stat(&f);
            sys::chmod(&f, m).expect("chmod");
            log.rec(
                &format!("{m:04o} then chown -1:-1"),
                sys::chown(&f, sys::KEEP, sys::KEEP),
            );
            log.stat(&f);
        }
        sys::chmod(&d, 0o6755).expect("chmod");
        log.rec("dir 6755 then chown", sys::chown(&d, 5, 5));
        log.stat(&d);
        log.rec("chmod missing", sys::chmod(&r.join("missing"), 0o644));
        log.rec("chown missing", sys::chown(&r.join("missing"), 1, 1));
        log.rec("access X_OK as root on 0644", {
            sys::chmod(&f, 0o644).expect("chmod");
            sys::access(&f, libc::X_OK)
        });
        log.rec("access W_OK as root on 0444", {
            sys::chmod(&f, 0o444).expect("chmod");
            sys::access(&f, libc::W_OK)
        });
        log.rec("open 0444 O_WRONLY as root", sys::open(&f, O_WRONLY, 0));
        log.rec("open 0000 O_RDWR as root", {
            sys::chmod(&f, 0).expect("chmod");
            sys::open(&f, O_RDWR, 0)
        });
    });

    s.compare("utimens", |r, log| {
        let f = r.join("f");
        make_file(&f, b"x");
        let times = |log: &mut Log, what: &str, p: &Path| {
            log.rec(
                what,
                sys::lstat(p).map(|s| format!("atime={} mtime={}", atime(&s), mtime(&s))),
            );
        };
        log.rec(
            "explicit",
            sys::utimens(
                &f,
                Some([(1_000_000_000, 123_456_789), (2_000_000_000, 987_654_321)]),
                0,
            ),
        );
        times(log, "after explicit", &f);
        log.rec(
            "omit atime",
            sys::utimens(&f, Some([(0, UTIME_OMIT), (3_000_000_000, 5)]), 0),
        );
        times(log, "after omit atime", &f);
        log.rec(
            "omit both",
            sys::utimens(&f, Some([(0, UTIME_OMIT), (0, UTIME_OMIT)]), 0),
        );
        times(log, "after omit both", &f);
        log.rec(
            "pre-epoch",
            sys::utimens(&f, Some([(-1_000_000, 500), (-1, 999_999_999)]), 0),
        );
        times(log, "after pre-epoch", &f);
        log.rec(
            "far future (2242)",
            sys::utimens(&f, Some([(1 << 33, 1), (1 << 33, 2)]), 0),
        );
        times(log, "after far future", &f);
        log.rec(
            "invalid nsec",
            sys::utimens(&f, Some([(0, 1_000_000_000), (0, 0)]), 0),
        );
        // "Now" cannot be compared across filesystems: record whether it
        // falls in the window around the call (with slack for tmpfs's
        // coarse clock).
        const SLACK: i128 = 50_000_000;
        let in_window =
            |before: i128, after: i128, t: i128| t >= before - SLACK && t <= after + SLACK;
        let before = sys::now();
        log.rec(
            "mtime now, atime omit",
            sys::utimens(&f, Some([(0, UTIME_OMIT), (0, UTIME_NOW)]), 0),
        );
        let after = sys::now();
        log.rec(
            "mtime is now, atime kept",
            sys::stat(&f).map(|s| {
                in_window(before, after, mtime(&s))
                    && atime(&s) == (1i128 << 33) * 1_000_000_000 + 1
            }),
        );
        let before = sys::now();
        log.rec("both now (NULL)", sys::utimens(&f, None, 0));
        let after = sys::now();
        log.rec(
            "both are now",
            sys::stat(&f).map(|s| {
                in_window(before, after, mtime(&s)) && in_window(before, after, atime(&s))
            }),
        );
        let fd = sys::open(&f, O_RDONLY, 0).expect("open");
        log.rec("futimens", sys::futimens(&fd, [(11, 12), (13, 14)]));
        times(log, "after futimens", &f);
        // A write marks mtime.
        let wfd = sys::open(&f, O_WRONLY, 0).expect("open");
        log.rec("write", sys::write(&wfd, b"y"));
        log.rec(
            "write moved mtime",
            sys::stat(&f).map(|s| mtime(&s) != 13_000_000_014),
        );
        sys::symlink(b"f", &r.join("s")).expect("symlink");
        log.rec(
            "nofollow on a symlink",
            sys::utimens(
                &r.join("s"),
                Some([(21, 0), (22, 0)]),
                libc::AT_SYMLINK_NOFOLLOW,
            ),
        );
        times(log, "symlink times", &r.join("s"));
        log.rec(
            "target untouched",
            sys::stat(&f).map(|s| mtime(&s) != 22_000_000_000),
        );
        log.rec(
            "through the symlink",
            sys::utimens(&r.join("s"), Some([(31, 0), (32, 0)]), 0),
        );
        times(log, "target times", &f);
        log.rec("missing", sys::utimens(&r.join("missing"), None, 0));
        let d = r.join("d");
        make_dir(&d, 0o755);
        log.rec("dir", sys::utimens(&d, Some([(41, 1), (42, 2)]), 0));
        times(log, "dir times", &d);
    });

    // User xattrs on tmpfs exist since Linux 6.6. Where tmpfs supports
    // them, hsfs must match it; in every case both must match the
    // documented Linux semantics (XATTR_LINUX).
    let (t, h) = s.run_both("xattrs", xattr_case);
    let linux = Log::from_lines(XATTR_LINUX);
    let tmpfs_has_user_xattrs = !t
        .lines
        .iter()
        .any(|l| l.starts_with("set user.a: EOPNOTSUPP"));
    if tmpfs_has_user_xattrs {
        s.same("xattrs", ("tmpfs", &t), ("hsfs", &h));
        s.same(
            "xattrs (tmpfs vs Linux docs)",
            ("docs", &linux),
            ("tmpfs", &t),
        );
    }
    s.same("xattrs (Linux docs)", ("docs", &linux), ("hsfs", &h));

    s.compare("statfs_ino_blocks", |r, log| {
        let f = r.join("f");
        make_file(&f, &pattern(10_000, 1));
        let v = sys::statvfs(r);
        log.rec("f_namemax", v.map(|v| v.f_namemax));
        log.rec(
            "f_bsize > 0, f_blocks >= f_bfree >= f_bavail",
            v.map(|v| v.f_bsize > 0 && v.f_blocks >= v.f_bfree && v.f_bfree >= v.f_bavail),
        );
        log.rec(
            "statfs of a file works",
            sys::statvfs(&f).map(|v| v.f_namemax),
        );
        let first = ino(&f);
        log.rec("ino stable across lookups", ino(&f).map(|i| Ok(i) == first));
        let fd = sys::open(&f, O_RDONLY, 0).expect("open");
        log.rec(
            "fstat ino equals stat ino",
            sys::fstat(&fd).map(|s| Ok(s.st_ino) == first),
        );
        sys::rename(&f, &r.join("g")).expect("rename");
        log.rec(
            "ino stable across rename",
            ino(&r.join("g")).map(|i| Ok(i) == first),
        );
        sys::link(&r.join("g"), &r.join("h")).expect("link");
        log.rec(
            "hard link shares ino",
            ino(&r.join("h")).map(|i| Ok(i) == first),
        );
        // st_blocks is implementation-defined; plausible means it covers
        // the data and not wildly more.
        log.rec(
            "st_blocks plausible",
            sys::stat(&r.join("g")).map(|s| {
                let bytes = s.st_blocks * 512;
                (10_000..=10_000 + 64 * 1024).contains(&bytes) && s.st_blksize > 0
            }),
        );
        log.rec(
            "distinct files, distinct inos",
            ino(&r.join("g")).and_then(|i| ino(r).map(|j| i != j)),
        );
    });

    // Inode numbers and xattrs survive an unmount/remount.
    let dir = s.w.path("xattrs");
    let before = (
        ino(&dir.join("f")),
        sys::getxattr(&dir.join("f"), "user.b", 64),
    );
    s.check();
    let after = (
        ino(&dir.join("f")),
        sys::getxattr(&dir.join("f"), "user.b", 64),
    );
    s.expect(
        "remount keeps st_ino and xattrs",
        before == after,
        format!("{before:?} != {after:?}"),
    );

    s.finish();
}

// ---------------------------------------------------------------------------
// Permissions, as other users
// ---------------------------------------------------------------------------

fn step_perm_modes(r: &Path, log: &mut Log) {
    let f = r.join("ro_file");
    log.rec("open 0444 O_WRONLY", sys::open(&f, O_WRONLY, 0));
    log.rec("open 0444 O_RDWR", sys::open(&f, O_RDWR, 0));
    log.rec("open 0444 O_RDONLY", sys::open(&f, O_RDONLY, 0));
    log.rec(
        "O_CREAT|O_WRONLY of an existing 0444",
        sys::open(&f, O_CREAT | O_WRONLY, 0o644),
    );
    log.rec("truncate 0444", sys::truncate(&f, 0));
    log.rec("access W_OK 0444", sys::access(&f, libc::W_OK));
    log.rec("access R_OK 0444", sys::access(&f, libc::R_OK));
    let d = r.join("ro_dir");
    log.rec(
        "create in 0555",
        sys::open(&d.join("new"), O_CREAT | O_WRONLY, 0o644),
    );
    log.rec("mkdir in 0555", sys::mkdir(&d.join("sub"), 0o755));
    log.rec("symlink in 0555", sys::symlink(b"x", &d.join("l")));
    log.rec("unlink in 0555", sys::unlink(&d.join("existing")));
    log.rec(
        "rename in 0555",
        sys::rename(&d.join("existing"), &d.join("moved")),
    );
    log.rec(
        "write existing in 0555",
        write_file(&d.join("existing"), b"ok"),
    );
    log.rec(
        "read root's 0600",
        sys::open(&r.join("secret"), O_RDONLY, 0),
    );
    log.rec(
        "stat root's 0600",
        sys::stat(&r.join("secret")).map(|s| s.st_mode & 0o777),
    );
    log.rec("list 0000", sys::list(&r.join("locked")).map(|l| l.len()));
    log.rec("stat in 0000", sys::stat(&r.join("locked/inner")));
    log.rec("list 0111", sys::list(&r.join("xonly")).map(|l| l.len()));
    log.rec(
        "stat in 0111",
        sys::stat(&r.join("xonly/inner")).map(|s| s.st_size),
    );
    log.rec("list 0444", sorted_names(&r.join("ronly")));
    log.rec("stat in 0444", sys::stat(&r.join("ronly/inner")));
    log.rec("chmod own 0444 file", sys::chmod(&f, 0o644));
    log.rec("now writable", write_file(&f, b"mine"));
    // Access is checked at open: a write descriptor outlives a chmod.
    let fd = sys::open(&f, O_WRONLY, 0);
    log.rec("open for write", fd.as_ref().map(|_| ()).map_err(|e| *e));
    log.rec("chmod 0444 while open", sys::chmod(&f, 0o444));
    if let Ok(fd) = fd {
        log.rec("write through the old fd", sys::pwrite(&fd, b"MINE", 0));
        log.rec("ftruncate through the old fd", sys::ftruncate(&fd, 3));
    }
    log.rec("truncate by path now", sys::truncate(&f, 0));
}

fn step_perm_ownership(r: &Path, log: &mut Log) {
    let (other, other644) = (r.join("other"), r.join("other644"));
    let (mine, mine_g) = (r.join("mine"), r.join("mine_g"));
    log.rec("chmod other's file", sys::chmod(&other, 0o600));
    log.rec(
        "chown other's file to me",
        sys::chown(&other, UID_A, sys::KEEP),
    );
    log.rec("chown my file to B", sys::chown(&mine, UID_B, sys::KEEP));
    log.rec(
        "chgrp my file to a foreign group",
        sys::chown(&mine, sys::KEEP, GID_SHARED),
    );
    log.rec(
        "chgrp my file to my group",
        sys::chown(&mine, sys::KEEP, GID_A),
    );
    log.rec("chown my file to me", sys::chown(&mine, UID_A, sys::KEEP));
    log.rec(
        "explicit times on other's file",
        sys::utimens(&other, Some([(5, 0), (5, 0)]), 0),
    );
    log.rec(
        "now on other's writable file",
        sys::utimens(&other, None, 0),
    );
    log.rec(
        "UTIME_NOW both on other's writable file",
        sys::utimens(&other, Some([(0, UTIME_NOW), (0, UTIME_NOW)]), 0),
    );
    log.rec("now on other's 0644 file", sys::utimens(&other644, None, 0));
    log.rec(
        "explicit times on my file",
        sys::utimens(&mine, Some([(5, 0), (6, 0)]), 0),
    );
    // Not a member of the file's group: the kernel drops S_ISGID.
    log.rec(
        "chmod 2755 of my file in a foreign group",
        sys::chmod(&mine_g, 0o2755),
    );
    log.rec("mode after", mode(&mine_g));
    // Moving a directory to another parent needs write access to it.
    log.rec(
        "move root's dir between my dirs",
        sys::rename(&r.join("p1/d"), &r.join("p2/d")),
    );
    log.rec(
        "rename root's dir within my dir",
        sys::rename(&r.join("p1/d"), &r.join("p1/e")),
    );
    // fs.protected_hardlinks: no links to files one cannot write.
    log.rec(
        "hard link to root's 0600 file",
        sys::link(&r.join("rootfile"), &r.join("p1/hl")),
    );
    log.rec("write other's 0644", write_file(&other644, b"no"));
    log.rec("write other's 0666", write_file(&other, b"yes"));
}

fn step_sticky_a_creates(r: &Path, log: &mut Log) {
    let t = r.join("t");
    log.rec("A creates t/a", write_file(&t.join("a"), b"A"));
    log.rec("A mkdir t/adir", sys::mkdir(&t.join("adir"), 0o777));
    log.rec("A opens t/adir to all", sys::chmod(&t.join("adir"), 0o777));
    log.rec("A creates t/a2", write_file(&t.join("a2"), b"A2"));
}

fn step_sticky_b_acts(r: &Path, log: &mut Log) {
    let t = r.join("t");
    log.rec("B creates t/b", write_file(&t.join("b"), b"B"));
    log.rec("B unlinks A's file", sys::unlink(&t.join("a")));
    log.rec(
        "B renames A's file",
        sys::rename(&t.join("a"), &t.join("x")),
    );
    log.rec(
        "B renames over A's file",
        sys::rename(&t.join("b"), &t.join("a")),
    );
    log.rec("B rmdirs A's dir", sys::rmdir(&t.join("adir")));
    log.rec(
        "B renames its own file",
        sys::rename(&t.join("b"), &t.join("b2")),
    );
    log.rec("B unlinks its own file", sys::unlink(&t.join("b2")));
    log.rec(
        "B creates in A's 0777 dir",
        write_file(&t.join("adir/fromb"), b"b"),
    );
}

fn step_sticky_a_cleans(r: &Path, log: &mut Log) {
    let t = r.join("t");
    log.rec("A unlinks its file", sys::unlink(&t.join("a")));
    log.rec(
        "A unlinks B's file in A's non-sticky dir",
        sys::unlink(&t.join("adir/fromb")),
    );
    log.rec("A rmdirs its dir", sys::rmdir(&t.join("adir")));
}

fn step_setgid_dir(r: &Path, log: &mut Log) {
    let s = r.join("s");
    log.rec(
        "create s/f",
        sys::open(&s.join("f"), O_CREAT | O_WRONLY, 0o644),
    );
    log.rec("mkdir s/sd", sys::mkdir(&s.join("sd"), 0o755));
    log.rec(
        "create s/g 02755",
        sys::open(&s.join("g"), O_CREAT | O_WRONLY, 0o2755),
    );
    log.rec("symlink s/l", sys::symlink(b"f", &s.join("l")));
    log.rec("mkfifo s/p", sys::mkfifo(&s.join("p"), 0o644));
    log.rec(
        "create s/sd/ff",
        sys::open(&s.join("sd/ff"), O_CREAT | O_WRONLY, 0o644),
    );
    log.rec("mkdir s/sd/sub", sys::mkdir(&s.join("sd/sub"), 0o700));
    log.rec(
        "create plain/f",
        sys::open(&r.join("plain/f"), O_CREAT | O_WRONLY, 0o644),
    );
    log.rec("mkdir plain/d", sys::mkdir(&r.join("plain/d"), 0o755));
}

fn step_umask(r: &Path, log: &mut Log) {
    let d = r.join("u");
    sys::umask(0o027);
    log.rec(
        "create 0666 under 027",
        sys::open(&d.join("f"), O_CREAT | O_WRONLY, 0o666),
    );
    log.rec("mkdir 0777 under 027", sys::mkdir(&d.join("d"), 0o777));
    log.rec("mkfifo 0666 under 027", sys::mkfifo(&d.join("p"), 0o666));
    log.rec(
        "mknod reg 0666 under 027",
        sys::mknod(&d.join("n"), libc::S_IFREG | 0o666, 0),
    );
    log.rec("symlink under 027", sys::symlink(b"f", &d.join("l")));
    sys::umask(0);
    log.rec(
        "create 0666 under 0",
        sys::open(&d.join("g"), O_CREAT | O_WRONLY, 0o666),
    );
    log.rec("mkdir 0777 under 0", sys::mkdir(&d.join("e"), 0o777));
    sys::umask(0o777);
    // The descriptor of a file created with mode 0000 is still writable.
    match sys::open(&d.join("h"), O_CREAT | O_RDWR, 0o666) {
        Ok(fd) => log.rec("write via fd of a new 0000 file", sys::write(&fd, b"x")),
        Err(e) => log.rec("create 0666 under 0777", Err::<(), _>(e)),
    }
    log.rec("reopen 0000 file", sys::open(&d.join("h"), O_RDONLY, 0));
    sys::umask(0o022);
}

fn step_kill_suid(r: &Path, log: &mut Log) {
    log.rec("write to root's 06777", write_file(&r.join("w"), b"x"));
    log.rec("truncate root's 06777", sys::truncate(&r.join("t"), 0));
}

#[test]
fn permissions_as_other_users() {
    let mut s = Suite::new();

    s.compare("perm_modes", |r, log| {
        let f = r.join("ro_file");
        make_file(&f, b"read only");
        own(&f, UID_A, GID_A, 0o444);
        let d = r.join("ro_dir");
        make_dir(&d, 0o755);
        make_file(&d.join("existing"), b"e");
        own(&d.join("existing"), UID_A, GID_A, 0o666);
        own(&d, UID_A, GID_A, 0o555);
        make_file(&r.join("secret"), b"s3cret");
        own(&r.join("secret"), 0, 0, 0o600);
        for (name, m) in [("locked", 0o000), ("xonly", 0o111), ("ronly", 0o444)] {
            let p = r.join(name);
            make_dir(&p, 0o755);
            make_file(&p.join("inner"), b"inner");
            own(&p, UID_A, GID_A, m);
        }
        as_user(UID_A, GID_A, "perm_modes", r, log);
        log.stat(&f);
        log.content(&f);
        log.listing(&d);
        // Root passes permission checks, but X_OK needs one x bit.
        log.rec(
            "root writes a 0444 file",
            sys::open(&f, O_WRONLY, 0).map(drop),
        );
        log.rec(
            "root creates in a 0555 dir",
            sys::open(&d.join("root"), O_CREAT | O_WRONLY, 0o644),
        );
        log.rec("root lists a 0000 dir", sorted_names(&r.join("locked")));
    });

    s.compare("perm_ownership", |r, log| {
        for (name, uid, gid, m) in [
            ("other", UID_B, GID_B, 0o666),
            ("other644", UID_B, GID_B, 0o644),
            ("mine", UID_A, GID_A, 0o644),
            ("mine_g", UID_A, GID_SHARED, 0o644),
            ("rootfile", 0, 0, 0o600),
        ] {
            make_file(&r.join(name), name.as_bytes());
            own(&r.join(name), uid, gid, m);
        }
        for p in ["p1", "p2"] {
            make_dir(&r.join(p), 0o755);
            own(&r.join(p), UID_A, GID_A, 0o777);
        }
        make_dir(&r.join("p1/d"), 0o755);
        as_user(UID_A, GID_A, "perm_ownership", r, log);
        for n in ["other", "other644", "mine", "mine_g"] {
            log.stat(&r.join(n));
        }
        log.rec(
            "explicit times not applied",
            sys::stat(&r.join("other")).map(|s| mtime(&s) != 5_000_000_000),
        );
        log.rec(
            "my file times",
            sys::stat(&r.join("mine"))
                .map(|s| (atime(&s), mtime(&s)))
                .map(|t| format!("{t:?}")),
        );
        log.listing(&r.join("p1"));
        log.listing(&r.join("p2"));
        log.content(&r.join("other"));
    });

    s.compare("sticky", |r, log| {
        let t = r.join("t");
        make_dir(&t, 0o1777);
        as_user(UID_A, GID_A, "sticky_a_creates", r, log);
        as_user(UID_B, GID_B, "sticky_b_acts", r, log);
        log.listing(&t);
        log.content(&t.join("a"));
        as_user(UID_A, GID_A, "sticky_a_cleans", r, log);
        log.listing(&t);
        // The directory's owner (root here) may remove anything.
        log.rec("root removes A's file", sys::unlink(&t.join("a2")));
    });

    s.compare("setgid_dir", |r, log| {
        let sg = r.join("s");
        make_dir(&sg, 0o755);
        own(&sg, 0, GID_SHARED, 0o2777);
        make_dir(&r.join("plain"), 0o777);
        as_user(UID_A, GID_A, "setgid_dir", r, log);
        for n in [
            "s/f", "s/sd", "s/g", "s/l", "s/p", "s/sd/ff", "s/sd/sub", "plain/f", "plain/d",
        ] {
            log.lstat(&r.join(n));
        }
    });

    s.compare("umask", |r, log| {
        make_dir(&r.join("u"), 0o777);
        as_user(UID_A, GID_A, "umask", r, log);
        for n in ["f", "d", "p", "n", "l", "g", "e", "h"] {
            log.lstat(&r.join("u").join(n));
        }
    });

    // Linux clears setuid (and setgid with group-execute) when a user
    // without CAP_FSETID writes or truncates a file (file_remove_privs).
    // POSIX allows ("may") it; every local Linux filesystem does it, and
    // it is what stops a shared workspace from turning a user's write into
    // a setuid binary of someone else. (Setgid without group-execute is
    // left out: newer kernels drop it for non-members on local
    // filesystems, while the kernel's FUSE client only drops it with
    // group-execute; POSIX leaves both open.)
    s.compare("kill_suid_on_write", |r, log| {
        for (n, m) in [("w", 0o6777), ("t", 0o6777), ("byroot", 0o6777)] {
            make_file(&r.join(n), b"orig");
            own(&r.join(n), 0, 0, m);
        }
        as_user(UID_A, GID_A, "kill_suid", r, log);
        log.rec("root writes", write_file(&r.join("byroot"), b"root"));
        for n in ["w", "t", "byroot"] {
            log.stat(&r.join(n));
        }
    });

    s.finish();
}

// ---------------------------------------------------------------------------
// FIFOs, sockets, device nodes
// ---------------------------------------------------------------------------

#[test]
fn special_files() {
    let mut s = Suite::new();

    s.compare("fifo", |r, log| {
        let p = r.join("p");
        log.rec("mkfifo", sys::mkfifo(&p, 0o640));
        log.lstat(&p);
        log.rec("mkfifo again", sys::mkfifo(&p, 0o640));
        log.rec(
            "open for write without a reader",
            sys::open(&p, O_WRONLY | O_NONBLOCK, 0),
        );
        match sys::open(&p, O_RDWR | O_NONBLOCK, 0) {
            Ok(fd) => {
                log.rec("write", sys::write(&fd, b"ping"));
                log.rec("read", sys::read(&fd, 16));
                log.rec("read empty", sys::read(&fd, 16));
            }
            Err(e) => log.rec("open O_RDWR", Err::<(), _>(e)),
        }
        log.rec(
            "mknod fifo",
            sys::mknod(&r.join("q"), libc::S_IFIFO | 0o600, 0),
        );
        log.lstat(&r.join("q"));
        log.rec(
            "mknod regular",
            sys::mknod(&r.join("reg"), libc::S_IFREG | 0o600, 0),
        );
        log.lstat(&r.join("reg"));
        log.rec(
            "mknod socket",
            sys::mknod(&r.join("sock"), libc::S_IFSOCK | 0o600, 0),
        );
        log.lstat(&r.join("sock"));
        log.rec("rename a fifo", sys::rename(&p, &r.join("p2")));
        if let Ok(fd) = sys::open(&r.join("p2"), O_RDWR | O_NONBLOCK, 0) {
            log.rec("unlink an open fifo", sys::unlink(&r.join("p2")));
            log.rec("fstat of the unlinked fifo", sys::fstat(&fd));
            log.rec("write through it", sys::write(&fd, b"still"));
            log.rec("read through it", sys::read(&fd, 16));
        }
        log.listing(r);
    });

    s.compare("unix_socket", |r, log| {
        use std::io::{Read, Write};
        let p = r.join("sock");
        let listener = std::os::unix::net::UnixListener::bind(&p);
        log.rec("bind", listener.as_ref().map(|_| ()).map_err(sys::io));
        log.lstat(&p);
        log.rec(
            "bind again",
            std::os::unix::net::UnixListener::bind(&p)
                .map(|_| ())
                .map_err(|e| sys::io(&e)),
        );
        let Ok(listener) = listener else { return };
        let client = std::os::unix::net::UnixStream::connect(&p);
        log.rec("connect", client.as_ref().map(|_| ()).map_err(sys::io));
        if let (Ok(mut c), Ok((mut server, _))) = (client, listener.accept()) {
            c.write_all(b"hello").expect("send");
            let mut buf = [0u8; 5];
            server.read_exact(&mut buf).expect("recv");
            log.note("received", buf.escape_ascii());
        }
        drop(listener);
        log.rec(
            "connect after close",
            std::os::unix::net::UnixStream::connect(&p)
                .map(|_| ())
                .map_err(|e| sys::io(&e)),
        );
    });

    // Device nodes: SPEC 6 says hsfs does not replicate them and answers
    // ENOTSUP (== EOPNOTSUPP on Linux) consistently; tmpfs creates them.
    // A deliberate divergence, asserted directly.
    let [t, h] = s.dirs("devices");
    for (what, m) in [
        ("char device", libc::S_IFCHR),
        ("block device", libc::S_IFBLK),
    ] {
        let dev = libc::makedev(1, 3);
        let on_tmpfs = sys::mknod(&t.join("dev"), m | 0o600, dev);
        let _ = sys::unlink(&t.join("dev"));
        s.expect(
            "devices",
            on_tmpfs.is_ok(),
            format!("tmpfs refused a {what}: {on_tmpfs:?}"),
        );
        let on_hsfs = sys::mknod(&h.join("dev"), m | 0o600, dev);
        s.expect(
            "devices",
            on_hsfs == Err(libc::EOPNOTSUPP),
            format!(
                "hsfs mknod of a {what}: expected EOPNOTSUPP, got {:?}",
                on_hsfs.map_err(errno_name)
            ),
        );
        let left = sys::lstat(&h.join("dev"));
        s.expect(
            "devices",
            matches!(left, Err(libc::ENOENT)),
            "a refused device node left an entry behind",
        );
    }

    s.finish();
}

// ---------------------------------------------------------------------------
// fsync, mmap, unlink while open
// ---------------------------------------------------------------------------

#[test]
fn fsync_mmap_unlink_while_open() {
    let mut s = Suite::new();

    s.compare("fsync", |r, log| {
        let f = r.join("f");
        make_file(&f, b"x");
        let wo = sys::open(&f, O_WRONLY, 0).expect("open");
        log.rec("fsync", sys::fsync(&wo));
        log.rec("fdatasync", sys::fdatasync(&wo));
        let ro = sys::open(&f, O_RDONLY, 0).expect("open");
        log.rec("fsync O_RDONLY", sys::fsync(&ro));
        let d = sys::open(r, O_RDONLY | O_DIRECTORY, 0).expect("open dir");
        log.rec("fsync dir", sys::fsync(&d));
        log.rec("fdatasync dir", sys::fdatasync(&d));
        log.rec("syncfs", sys::syncfs(&d));
    });

    s.compare("locks", |r, log| {
        // Locks are kernel-local on a single host (SPEC 9); two open file
        // descriptions of one process conflict like two processes.
        let f = r.join("f");
        make_file(&f, b"0123456789");
        let a = sys::open(&f, O_RDWR, 0).expect("open");
        let b = sys::open(&f, O_RDWR, 0).expect("open");
        log.rec("flock a EX", sys::flock(&a, libc::LOCK_EX | libc::LOCK_NB));
        log.rec("flock b EX", sys::flock(&b, libc::LOCK_EX | libc::LOCK_NB));
        log.rec("flock b SH", sys::flock(&b, libc::LOCK_SH | libc::LOCK_NB));
        log.rec("unlock a", sys::flock(&a, libc::LOCK_UN));
        log.rec(
            "flock b EX again",
            sys::flock(&b, libc::LOCK_EX | libc::LOCK_NB),
        );
        sys::flock(&b, libc::LOCK_UN).expect("unlock");
        log.rec(
            "OFD write lock a [0,5)",
            sys::ofd_lock(&a, libc::F_OFD_SETLK, libc::F_WRLCK, 0, 5),
        );
        log.rec(
            "OFD write lock b [3,8)",
            sys::ofd_lock(&b, libc::F_OFD_SETLK, libc::F_WRLCK, 3, 5),
        );
        log.rec(
            "OFD read lock b [5,8)",
            sys::ofd_lock(&b, libc::F_OFD_SETLK, libc::F_RDLCK, 5, 3),
        );
        log.rec(
            "OFD getlk b [0,1) is F_WRLCK",
            sys::ofd_lock(&b, libc::F_OFD_GETLK, libc::F_WRLCK, 0, 1).map(|t| t == libc::F_WRLCK),
        );
        log.rec(
            "OFD unlock a",
            sys::ofd_lock(&a, libc::F_OFD_SETLK, libc::F_UNLCK, 0, 5),
        );
        log.rec(
            "OFD write lock b [3,5)",
            sys::ofd_lock(&b, libc::F_OFD_SETLK, libc::F_WRLCK, 3, 2),
        );
    });

    s.compare("mmap_read", |r, log| {
        let f = r.join("f");
        let mut data = b"hello mmap ".to_vec();
        data.extend(pattern(9000, 9));
        make_file(&f, &data);
        let ro = sys::open(&f, O_RDONLY, 0).expect("open");
        match sys::mmap(&ro, data.len(), libc::PROT_READ, libc::MAP_PRIVATE) {
            Ok(m) => log.note("MAP_PRIVATE read", m.bytes() == data.as_slice()),
            Err(e) => log.rec("MAP_PRIVATE read", Err::<(), _>(e)),
        }
        match sys::mmap(&ro, data.len(), libc::PROT_READ, libc::MAP_SHARED) {
            Ok(m) => log.note("MAP_SHARED read of O_RDONLY", m.bytes() == data.as_slice()),
            Err(e) => log.rec("MAP_SHARED read of O_RDONLY", Err::<(), _>(e)),
        }
        let rw = sys::open(&f, O_RDWR, 0).expect("open");
        match sys::mmap(
            &rw,
            data.len(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE,
        ) {
            Ok(mut m) => {
                log.note("MAP_PRIVATE of O_RDWR", m.bytes() == data.as_slice());
                m.write(0, b"PRIVATE");
                log.note(
                    "private write visible in the mapping",
                    m.bytes().starts_with(b"PRIVATE"),
                );
                log.rec("private write not in the file", sys::pread(&ro, 7, 0));
            }
            Err(e) => log.rec("MAP_PRIVATE of O_RDWR", Err::<(), _>(e)),
        }
        log.rec(
            "MAP_SHARED|PROT_WRITE of O_RDONLY",
            sys::mmap(
                &ro,
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
            )
            .map(drop),
        );
    });

    s.compare("read_coherence", |r, log| {
        // A reader (read-only handle: page cached on hsfs) must see writes
        // made through another descriptor, by read(2) and by a shared
        // mapping.
        let f = r.join("f");
        make_file(&f, &[b'a'; 8192]);
        let ro = sys::open(&f, O_RDONLY, 0).expect("open");
        log.rec("first read", sys::pread(&ro, 4, 0));
        let map = sys::mmap(&ro, 8192, libc::PROT_READ, libc::MAP_SHARED);
        log.rec(
            "map",
            map.as_ref()
                .map(|m| m.bytes()[..4].to_vec())
                .map_err(|e| *e),
        );
        let rw = sys::open(&f, O_RDWR, 0).expect("open");
        log.rec("write through another fd", sys::pwrite(&rw, b"BBBB", 0));
        log.rec("reader sees it", sys::pread(&ro, 4, 0));
        if let Ok(m) = &map {
            log.note("mapping sees it", m.bytes()[..4].escape_ascii());
        }
        log.rec("extend", sys::pwrite(&rw, b"tail", 8192));
        log.rec("reader fstat", sys::fstat(&ro));
        log.rec("reader reads the extension", sys::pread(&ro, 8, 8190));
        log.rec("reader SEEK_END", sys::lseek(&ro, 0, libc::SEEK_END));
        log.rec("truncate by path", sys::truncate(&f, 2));
        log.rec("reader after truncate", sys::pread(&ro, 8, 0));
        log.rec(
            "new reader",
            sys::open(&f, O_RDONLY, 0).and_then(|fd| sys::read(&fd, 16)),
        );
        drop(map);
        drop((ro, rw));
        // Cached pages of a closed reader must not survive a later write.
        let g = r.join("g");
        make_file(&g, b"old contents");
        log.rec(
            "read, close",
            sys::open(&g, O_RDONLY, 0).and_then(|fd| sys::read(&fd, 64)),
        );
        log.rec(
            "rewrite in place",
            sys::open(&g, O_WRONLY, 0).and_then(|fd| sys::pwrite(&fd, b"NEW", 0)),
        );
        log.rec(
            "reopen, read",
            sys::open(&g, O_RDONLY, 0).and_then(|fd| sys::read(&fd, 64)),
        );
        log.rec(
            "replace by rename",
            write_file(&r.join("tmp"), b"renamed in")
                .and_then(|()| sys::rename(&r.join("tmp"), &g)),
        );
        log.rec(
            "reopen, read",
            sys::open(&g, O_RDONLY, 0).and_then(|fd| sys::read(&fd, 64)),
        );
    });

    // Writable shared mappings of replicated files are refused (SPEC 3, 6:
    // write-capable handles use DIRECT_IO, and the kernel answers ENODEV).
    // tmpfs allows them: a documented divergence, asserted directly.
    let [t, h] = s.dirs("mmap_shared_write");
    for (fs, dir) in [("tmpfs", &t), ("hsfs", &h)] {
        make_file(&dir.join("f"), &[b'm'; 4096]);
        let fd = sys::open(&dir.join("f"), O_RDWR, 0).expect("open");
        let m = sys::mmap(
            &fd,
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
        )
        .map(drop);
        let want = if fs == "hsfs" {
            Err(libc::ENODEV)
        } else {
            Ok(())
        };
        s.expect(
            "mmap_shared_write",
            m == want,
            format!(
                "{fs}: MAP_SHARED|PROT_WRITE on O_RDWR gave {:?}",
                m.map_err(errno_name)
            ),
        );
    }

    s.compare("unlink_while_open", |r, log| {
        let f = r.join("f");
        let fd = sys::open(&f, O_CREAT | O_RDWR, 0o644).expect("create");
        let second = sys::open(&f, O_RDONLY, 0).expect("open");
        log.rec("write", sys::write(&fd, b"data"));
        log.rec("unlink", sys::unlink(&f));
        log.rec("stat by name", sys::stat(&f));
        log.rec("fstat", sys::fstat(&fd));
        log.rec("pread", sys::pread(&fd, 10, 0));
        log.rec("pwrite", sys::pwrite(&fd, b"more", 4));
        log.rec("read through the second fd", sys::pread(&second, 10, 0));
        log.rec("fchmod", sys::fchmod(&fd, 0o600));
        log.rec("ftruncate", sys::ftruncate(&fd, 6));
        log.rec("fstat after", sys::fstat(&second));
        log.rec("fsync", sys::fsync(&fd));
        log.listing(r);
        log.rec(
            "same name again",
            sys::open(&f, O_CREAT | O_EXCL | O_RDWR, 0o644).map(drop),
        );
        log.rec(
            "new file is empty and distinct",
            sys::stat(&f)
                .and_then(|s| sys::fstat(&fd).map(|o| s.st_size == 0 && s.st_ino != o.st_ino)),
        );
        drop(fd);
        log.rec("last fd still reads", sys::pread(&second, 10, 0));
        // One of two names unlinked: nlink 1, still reachable.
        let (a, b) = (r.join("a"), r.join("b"));
        make_file(&a, b"ab");
        sys::link(&a, &b).expect("link");
        let afd = sys::open(&a, O_RDONLY, 0).expect("open");
        log.rec("unlink one name", sys::unlink(&a));
        log.rec("fstat", sys::fstat(&afd));
        log.content(&b);
        // An O_PATH descriptor also keeps the inode: fstat still works.
        let p = r.join("p");
        make_file(&p, b"path");
        let pfd = sys::open(&p, libc::O_PATH, 0).expect("open O_PATH");
        log.rec("unlink with an O_PATH fd", sys::unlink(&p));
        log.rec("fstat of the O_PATH fd", sys::fstat(&pfd));
    });

    // Space of an unlinked file is reclaimed once closed: after the last
    // close (and at the latest at the next mount) its node and extents
    // are gone, and fsck stays clean throughout.
    let dir = s.w.path("reclaim");
    make_dir(&dir, 0o755);
    // Two rounds settle the orphans of the cases above: the first remount
    // reclaims what was left open at its unmount, the second unmount
    // drains that.
    s.check();
    let base = s.check();
    let fd = sys::open(&dir.join("f"), O_CREAT | O_RDWR, 0o644).expect("create");
    assert_eq!(sys::write(&fd, &pattern(300_000, 5)), Ok(300_000));
    sys::unlink(&dir.join("f")).expect("unlink");
    assert_eq!(sys::pread(&fd, 3, 299_997).map(|b| b.len()), Ok(3));
    drop(fd);
    s.check();
    let after = s.check();
    for key in ["nodes", "extents"] {
        let (b, a) = (&base["stats"][key], &after["stats"][key]);
        s.expect(
            "reclaim after close",
            b.as_u64().is_some() && b == a,
            format!("fsck stats.{key}: {b} before the file, {a} after its last close"),
        );
    }

    s.finish();
}
