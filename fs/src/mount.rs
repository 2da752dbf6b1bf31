//! Mounting a core with fuser, and the kernel notifier behind
//! [`KernelCache`].

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use fuser::{Config, INodeNo, MountOption, Notifier, Session, SessionACL, SessionUnmounter};
use hsfs_engine::{Ino, ROOT_INO};

use crate::core::{Core, KernelCache};
use crate::fuse::Fuse;

/// How to mount.
#[derive(Clone, Debug)]
pub struct MountOptions {
    /// Mount read-only (the kernel refuses writes; the committer too).
    pub read_only: bool,
    /// Let other users than the mounting one use the mount (`allow_other`).
    pub allow_other: bool,
    /// FUSE request threads.
    pub threads: usize,
    /// Name shown in /proc/mounts.
    pub fsname: String,
    /// Kernel readahead of the mount in KiB (its bdi's `read_ahead_kb`);
    /// 0 keeps the kernel's default (128 KiB). A larger window lets the
    /// kernel send several read requests at once, which the request
    /// threads serve in parallel.
    pub readahead_kib: u32,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            read_only: false,
            allow_other: false,
            threads: DEFAULT_THREADS,
            fsname: "hsfs".into(),
            readahead_kib: DEFAULT_READAHEAD_KIB,
        }
    }
}

/// Default [`MountOptions::readahead_kib`]: many read requests in flight
/// for a sequential reader instead of one. A file's chunks lie in hash
/// order in the store, so a sequential read of a file is a random read of
/// the disk, whose throughput grows with the number of reads in flight
/// (docs/PERFORMANCE.md, "Sequential read").
pub const DEFAULT_READAHEAD_KIB: u32 = 16 << 10;

/// Default [`MountOptions::threads`]: more of a readahead window's requests
/// (up to 16 of 1 MiB in 16 MiB) served at once, since a request thread
/// spends most of a cold read waiting for the disk.
pub const DEFAULT_THREADS: usize = 8;

struct NotifierCache(Notifier);

impl KernelCache for NotifierCache {
    fn inval_inode(&self, ino: Ino, offset: i64, len: i64) {
        if let Err(e) = self.0.inval_inode(INodeNo(ino), offset, len) {
            tracing::warn!(ino, error = %e, "inval_inode failed");
        }
    }

    fn inval_entry(&self, parent: Ino, name: &[u8]) {
        use std::os::unix::ffi::OsStrExt;
        if let Err(e) = self
            .0
            .inval_entry(INodeNo(parent), std::ffi::OsStr::from_bytes(name))
        {
            tracing::warn!(parent, error = %e, "inval_entry failed");
        }
    }
}

/// A live mount. Dropping it unmounts and waits for the request threads.
pub struct Mounted {
    mountpoint: std::path::PathBuf,
    unmounter: SessionUnmounter,
    thread: Option<JoinHandle<std::io::Result<()>>>,
    ended: crossbeam_channel::Receiver<()>,
}

impl Mounted {
    /// Unmounts and waits until every request thread has finished.
    pub fn unmount(mut self) -> std::io::Result<()> {
        self.finish()
    }

    fn finish(&mut self) -> std::io::Result<()> {
        let Some(t) = self.thread.take() else {
            return Ok(());
        };
        // Already gone (unmounted from outside) is fine.
        let mut r = if self.ended.try_recv().is_ok() {
            Ok(())
        } else {
            self.unmounter.unmount()
        };
        if let Err(e) = &r {
            // Busy (a process has files open or its cwd inside): detach
            // lazily so the session ends; the kernel finishes the unmount
            // when the last user goes.
            tracing::warn!(error = %e, mountpoint = %self.mountpoint.display(), "unmount failed; detaching lazily");
            r = detach(&self.mountpoint);
        }
        let joined = t
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("FUSE session thread panicked")));
        r.and(joined)
    }

    /// Blocks until the filesystem is unmounted (from outside) or `stop`
    /// receives; returns whether it was unmounted from outside.
    pub fn wait(&self, stop: &crossbeam_channel::Receiver<()>) -> bool {
        crossbeam_channel::select! {
            recv(self.ended) -> _ => true,
            recv(stop) -> _ => false,
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            tracing::warn!(error = %e, "unmount failed");
        }
    }
}

fn detach(mountpoint: &Path) -> std::io::Result<()> {
    let c = std::ffi::CString::new(mountpoint.as_os_str().as_encoded_bytes())
        .map_err(std::io::Error::other)?;
    // SAFETY: `c` is a valid NUL-terminated path.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    // Not root: let fusermount3 detach it.
    let ok = std::process::Command::new("fusermount3")
        .args(["-u", "-z"])
        .arg(mountpoint)
        .status()
        .is_ok_and(|s| s.success());
    if ok { Ok(()) } else { Err(e) }
}

/// Mounts `core` at `mountpoint` and serves it from background threads.
/// Checks that the kernel accepts invalidation notices (SPEC 3.5) before
/// returning.
pub fn mount(core: Arc<Core>, mountpoint: &Path, opts: &MountOptions) -> std::io::Result<Mounted> {
    let mut cfg = Config::default();
    cfg.mount_options = vec![
        MountOption::FSName(opts.fsname.clone()),
        MountOption::Subtype("hsfs".into()),
        MountOption::DefaultPermissions,
        MountOption::NoAtime,
    ];
    if opts.read_only {
        cfg.mount_options.push(MountOption::RO);
    }
    cfg.acl = if opts.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    cfg.n_threads = Some(opts.threads.max(1));
    cfg.clone_fd = opts.threads > 1;
    let mut session = Session::new(Fuse::new(core.clone()), mountpoint, &cfg)?;
    let notifier = session.notifier();
    // The kernel must support invalidation, or cached state could go
    // stale: refuse to serve otherwise.
    if let Err(e) = notifier.inval_inode(INodeNo(ROOT_INO), -1, 0) {
        let _ = session.unmount();
        return Err(std::io::Error::other(format!(
            "the kernel refused a FUSE invalidation notice ({e}); hsfs needs notify-invalidation support"
        )));
    }
    core.set_kernel_cache(Arc::new(NotifierCache(notifier)));
    let unmounter = session.unmount_callable();
    let (tx, ended) = crossbeam_channel::bounded(1);
    let thread = std::thread::Builder::new()
        .name("hsfs-fuse".into())
        .spawn(move || {
            let r = session.run();
            let _ = tx.send(());
            r
        })?;
    if opts.readahead_kib > 0
        && let Err(e) = set_readahead(mountpoint, opts.readahead_kib)
    {
        // Only slower sequential reads: serve anyway.
        tracing::warn!(error = %e, kib = opts.readahead_kib, "cannot set the mount's readahead");
    }
    Ok(Mounted {
        mountpoint: mountpoint.to_path_buf(),
        unmounter,
        thread: Some(thread),
        ended,
    })
}

/// Sets the readahead of the mount at `mountpoint`: `read_ahead_kb` of
/// its backing device info in sysfs, found by the device number that
/// /proc/self/mountinfo gives for it (reading mountinfo sends the mount
/// no request). Needs root.
fn set_readahead(mountpoint: &Path, kib: u32) -> std::io::Result<()> {
    // mountinfo names it with symlinks resolved; resolving the parent
    // sends the mount no request.
    let mountpoint = &std::path::absolute(mountpoint)?;
    let resolved = match (mountpoint.parent(), mountpoint.file_name()) {
        (Some(parent), Some(name)) => std::fs::canonicalize(parent)?.join(name),
        _ => mountpoint.to_path_buf(),
    };
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    let dev = mount_device(&info, &resolved).ok_or_else(|| {
        std::io::Error::other(format!(
            "{} not found in /proc/self/mountinfo",
            mountpoint.display()
        ))
    })?;
    let path = format!("/sys/class/bdi/{dev}/read_ahead_kb");
    std::fs::write(&path, kib.to_string())
        .map_err(|e| std::io::Error::new(e.kind(), format!("writing {path}: {e}")))?;
    tracing::debug!(dev, kib, "readahead set");
    Ok(())
}

/// The `major:minor` of the last mount at `mountpoint` in a mountinfo
/// text (the last one is on top when several are stacked).
fn mount_device<'a>(mountinfo: &'a str, mountpoint: &Path) -> Option<&'a str> {
    // mountinfo escapes space, tab, newline and backslash as octal.
    let mut want = String::new();
    for c in mountpoint.to_string_lossy().chars() {
        match c {
            ' ' => want.push_str("\\040"),
            '\t' => want.push_str("\\011"),
            '\n' => want.push_str("\\012"),
            '\\' => want.push_str("\\134"),
            c => want.push(c),
        }
    }
    mountinfo.lines().rev().find_map(|l| {
        let mut f = l.split(' ');
        let dev = f.nth(2)?;
        (f.nth(1)? == want).then_some(dev)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_device_finds_the_top_mount() {
        let info = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
90 22 0:39 / /tmp/a\\040b rw,nosuid shared:50 - fuse.hsfs hsfs:/s rw,user_id=0
91 90 0:41 / /tmp/a\\040b rw,nosuid shared:51 - fuse.hsfs hsfs:/t rw,user_id=0
";
        assert_eq!(mount_device(info, Path::new("/tmp/a b")), Some("0:41"));
        assert_eq!(mount_device(info, Path::new("/")), Some("254:0"));
        assert_eq!(mount_device(info, Path::new("/tmp/a")), None);
    }
}
