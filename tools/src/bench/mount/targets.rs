//! The targets the workloads run on, their setup and their teardown. Every
//! mount is owned by a guard that unmounts it on drop, also on panic.

use std::ffi::CString;
use std::io::{BufRead, BufReader};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tempfile::TempDir;

use crate::bench::checked_output;
use crate::checks::{is_mount_point, unescape_mount};

const TMPFS_MAGIC: i64 = 0x0102_1994;
const EXT4_MAGIC: i64 = 0xEF53;
const EXAMPLES: &str = "/usr/share/doc/libfuse3-dev/examples";
const SETUP_HINT: &str = "install it with `tools/scripts/setup.sh --bench`";

/// A directory the workloads run in, with whatever serves it.
pub struct Target {
    pub name: &'static str,
    pub root: PathBuf,
    // Fields drop in order: the mount goes before the directories under it.
    mount: Option<Mount>,
    state: Option<PathBuf>,
    _dirs: Vec<TempDir>,
}

impl Target {
    /// A figure of the process serving the target (`None` without one; a
    /// failed read is reported on stderr and shows as "-").
    fn server_figure<T>(&self, what: &str, read: fn(&Mount) -> Result<T>) -> Option<T> {
        let m = self.mount.as_ref()?;
        read(m)
            .map_err(|e| eprintln!("    {what} of {}: {e:#}", self.name))
            .ok()
    }

    /// VmRSS of the process serving the target, in MiB.
    #[must_use]
    pub fn rss_mib(&self) -> Option<f64> {
        self.server_figure("RSS", Mount::rss_mib)
    }

    /// CPU time the process serving the target has used so far.
    #[must_use]
    pub fn cpu_time(&self) -> Option<Duration> {
        self.server_figure("CPU time", Mount::cpu_time)
    }

    /// Disk usage of the hsfs store (allocated bytes under STATE/db, as
    /// `du` counts them: fjall preallocates its journals sparsely); `None`
    /// for a target without a store.
    pub fn store_bytes(&self) -> Result<Option<u64>> {
        let Some(state) = &self.state else {
            return Ok(None);
        };
        let db = state.join("db");
        let bytes = tree_usage(&db).with_context(|| format!("store size of {}", db.display()))?;
        Ok(Some(bytes))
    }

    /// Fails when the serving process has exited.
    pub fn alive(&mut self) -> Result<()> {
        match &mut self.mount {
            Some(m) => m.alive(),
            None => Ok(()),
        }
    }
}

/// Sets up the targets in the order every run visits them.
pub fn setup(scratch: &Path, init_args: &str, hsfs_args: &str) -> Result<Vec<Target>> {
    Ok(vec![
        tmpfs()?,
        passthrough(scratch)?,
        disk(scratch)?,
        hsfs(scratch, init_args, hsfs_args)?,
    ])
}

fn tmpfs() -> Result<Target> {
    let dir = shm_dir("hsfs-bench-tmpfs-")?;
    Ok(Target {
        name: "tmpfs",
        root: dir.path().to_path_buf(),
        mount: None,
        state: None,
        _dirs: vec![dir],
    })
}

fn disk(scratch: &Path) -> Result<Target> {
    let root = scratch.join("disk");
    std::fs::create_dir(&root)?;
    let name = if fs_magic(&root)? == EXT4_MAGIC {
        "ext4"
    } else {
        "local disk"
    };
    Ok(Target {
        name,
        root,
        mount: None,
        state: None,
        _dirs: Vec::new(),
    })
}

/// libfuse's passthrough_ll over a tmpfs directory, default cache mode.
fn passthrough(scratch: &Path) -> Result<Target> {
    let bin = build_passthrough()?;
    let backing = shm_dir("hsfs-bench-passthrough-")?;
    let mnt = scratch.join("passthrough-mnt");
    std::fs::create_dir(&mnt)?;
    let log = scratch.join("passthrough_ll.log");
    let out = std::fs::File::create(&log)?;
    let child = Command::new(&bin)
        .arg("-f")
        .arg("-o")
        .arg(format!("source={}", backing.path().display()))
        .arg(&mnt)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let mut mount = Mount {
        name: "passthrough_ll",
        mnt: mnt.clone(),
        child,
        sigterm: false,
        log,
        stopped: false,
    };
    mount.wait_mounted(Duration::from_secs(10))?;
    Ok(Target {
        name: "passthrough_ll",
        root: mnt,
        mount: Some(mount),
        state: None,
        _dirs: vec![backing],
    })
}

/// Copies the libfuse example sources into target/hsfs-bench/passthrough_ll
/// and builds them.
fn build_passthrough() -> Result<PathBuf> {
    let dir = bench_dir()?.join("passthrough_ll");
    std::fs::create_dir_all(&dir)?;
    for name in ["passthrough_ll.c", "passthrough_helpers.h"] {
        copy_example(name, &dir)?;
    }
    let flags = checked_output(
        Command::new("pkg-config").args(["fuse3", "--cflags", "--libs"]),
        &format!("pkg-config fuse3 (libfuse3-dev missing? {SETUP_HINT})"),
    )?;
    let flags = String::from_utf8(flags.stdout)?;
    checked_output(
        Command::new("gcc")
            .current_dir(&dir)
            .args(["-O2", "-Wall", "passthrough_ll.c", "-o", "passthrough_ll"])
            .args(flags.split_whitespace()),
        &format!("gcc building passthrough_ll (missing? {SETUP_HINT})"),
    )?;
    Ok(dir.join("passthrough_ll"))
}

/// target/hsfs-bench: the cargo target directory is two levels above this
/// executable (target/release/hsfs-bench).
fn bench_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let target_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("cannot locate the cargo target directory")?;
    Ok(target_dir.join("hsfs-bench"))
}

/// Copies the logs of the FUSE servers (every `*.log` of the scratch
/// directory) to target/hsfs-bench/logs before the scratch directory goes.
pub fn keep_logs(scratch: &Path) -> Result<PathBuf> {
    let to = bench_dir()?.join("logs");
    std::fs::create_dir_all(&to)?;
    for e in std::fs::read_dir(scratch)? {
        let from = e?.path();
        if from.extension().is_some_and(|x| x == "log")
            && let Some(name) = from.file_name()
        {
            std::fs::copy(&from, to.join(name))?;
        }
    }
    Ok(to)
}

/// One example file, plain or gzipped.
fn copy_example(name: &str, to: &Path) -> Result<()> {
    let src = Path::new(EXAMPLES).join(name);
    let gz = Path::new(EXAMPLES).join(format!("{name}.gz"));
    if src.exists() {
        std::fs::copy(&src, to.join(name))?;
    } else if gz.exists() {
        let out = checked_output(
            Command::new("gzip").arg("-dc").arg(&gz),
            &format!("gzip -dc {}", gz.display()),
        )?;
        std::fs::write(to.join(name), out.stdout)?;
    } else {
        bail!(
            "{} is missing: libfuse3-dev is not installed; {SETUP_HINT}",
            src.display()
        );
    }
    Ok(())
}

/// The `hsfs` binary next to this executable.
pub fn hsfs_bin() -> Result<PathBuf> {
    let bin = std::env::current_exe()?.with_file_name("hsfs");
    ensure!(
        bin.exists(),
        "{} is missing: cargo build --release -p hsfs-tools",
        bin.display()
    );
    Ok(bin)
}

/// `hsfs mount` of a fresh workspace whose state is on the disk.
fn hsfs(scratch: &Path, init_args: &str, extra: &str) -> Result<Target> {
    let state = scratch.join("hsfs-state");
    let mnt = scratch.join("hsfs-mnt");
    std::fs::create_dir(&mnt)?;
    checked_output(
        Command::new(hsfs_bin()?)
            .arg("init")
            .arg(&state)
            .args(init_args.split_whitespace()),
        "hsfs init",
    )?;
    let mount = Mount::hsfs(&state, &mnt, extra, &scratch.join("hsfs.log"))?;
    Ok(Target {
        name: "hsfs",
        root: mnt,
        mount: Some(mount),
        state: Some(state),
        _dirs: Vec::new(),
    })
}

/// Signals once when hsfs prints "hsfs: mounted", and keeps draining its
/// stdout so it never blocks on a full pipe.
fn readiness(out: std::process::ChildStdout) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("hsfs: mounted") {
                let _ = tx.send(());
            }
        }
    });
    rx
}

/// A FUSE server child process and its mount point, stopped and unmounted
/// on drop (also on panic).
pub struct Mount {
    name: &'static str,
    mnt: PathBuf,
    child: Child,
    /// Stop with SIGTERM (hsfs); otherwise with `fusermount3 -u`.
    sigterm: bool,
    log: PathBuf,
    /// Stopped already (the child is reaped: never signal its pid again).
    stopped: bool,
}

impl Mount {
    /// `hsfs mount STATE MNT EXTRA...`, returned once hsfs has printed its
    /// readiness line and the mount point is mounted. Its stderr goes to
    /// `log`.
    pub fn hsfs(state: &Path, mnt: &Path, extra: &str, log: &Path) -> Result<Mount> {
        let bin = hsfs_bin()?;
        let mut child = Command::new(&bin)
            .arg("mount")
            .arg(state)
            .arg(mnt)
            .args(extra.split_whitespace())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log)?)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let ready = readiness(child.stdout.take().context("hsfs stdout")?);
        let mount = Mount {
            name: "hsfs",
            mnt: mnt.to_path_buf(),
            child,
            sigterm: true,
            log: log.to_path_buf(),
            stopped: false,
        };
        match ready.recv_timeout(Duration::from_secs(120)) {
            Ok(()) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                bail!("hsfs mount exited before mounting:\n{}", mount.log_tail())
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                bail!("hsfs mount not ready after 120 s:\n{}", mount.log_tail())
            }
        }
        ensure!(
            is_mount_point(mnt)?,
            "hsfs printed its readiness line but nothing is mounted"
        );
        Ok(mount)
    }

    /// VmRSS of the server process, in MiB.
    pub fn rss_mib(&self) -> Result<f64> {
        crate::bench::rss_mib(self.child.id())
    }

    /// CPU time the server process has used so far.
    pub fn cpu_time(&self) -> Result<Duration> {
        crate::bench::cpu_time(self.child.id())
    }

    /// Stops the server; fails unless it exits cleanly and leaves nothing
    /// mounted.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    /// The mount point.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.mnt
    }

    fn wait_mounted(&mut self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if is_mount_point(&self.mnt)? {
                return Ok(());
            }
            if let Some(st) = self.child.try_wait()? {
                bail!(
                    "{} exited ({st}) before mounting:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if Instant::now() > deadline {
                bail!("{} not mounted after {limit:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn alive(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(st) => bail!("{} exited ({st}):\n{}", self.name, self.log_tail()),
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Stops the server (once): SIGTERM or `fusermount3 -u`, a wait, and
    /// a forced unmount if anything is left; fails unless it exited
    /// cleanly.
    fn shutdown(&mut self) -> Result<()> {
        if std::mem::replace(&mut self.stopped, true) {
            return Ok(());
        }
        if self.sigterm {
            // SAFETY: signalling our own child, not yet reaped.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        } else {
            fusermount_u(&self.mnt);
        }
        let exit = match self.wait_exit(Duration::from_secs(120)) {
            Some(st) if st.success() => Ok(()),
            Some(st) => Err(anyhow::anyhow!(
                "{} exited with {st}:\n{}",
                self.name,
                self.log_tail()
            )),
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                Err(anyhow::anyhow!(
                    "{} did not stop in time; killed it",
                    self.name
                ))
            }
        };
        if is_mount_point(&self.mnt).unwrap_or(true) {
            fusermount_u(&self.mnt);
        }
        if is_mount_point(&self.mnt).unwrap_or(true) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
        exit
    }

    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!("warning: {e:#}");
        }
    }
}

fn fusermount_u(mnt: &Path) {
    let _ = Command::new("fusermount3")
        .arg("-u")
        .arg(mnt)
        .stderr(Stdio::null())
        .status();
}

/// Raises the open-file limit (inherited by every child) as far as allowed:
/// passthrough_ll keeps one fd open per inode the kernel knows. Without
/// CAP_SYS_RESOURCE only the soft limit can go up (to the hard limit).
/// Returns the limit now in force.
pub fn raise_nofile_limit() -> u64 {
    let nr_open: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1 << 20);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write a struct we own.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        let all = libc::rlimit {
            rlim_cur: nr_open,
            rlim_max: nr_open,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &all) == 0 {
            return nr_open;
        }
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

/// Drops the page, dentry and inode caches (after a sync), for cold reads.
pub fn drop_caches() -> Result<()> {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "3").context("echo 3 > /proc/sys/vm/drop_caches")
}

/// Sum of the sizes of the files under `dir`.
pub fn tree_bytes(dir: &Path) -> std::io::Result<u64> {
    tree_sum(dir, &|m| m.len())
}

/// Bytes allocated to the files under `dir` (what `du` counts).
pub fn tree_usage(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    tree_sum(dir, &|m| m.blocks() * 512)
}

/// A file removed while it is walked (a store compacting) counts 0; any
/// other error fails the figure.
fn tree_sum(dir: &Path, size: &dyn Fn(&std::fs::Metadata) -> u64) -> std::io::Result<u64> {
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let mut sum = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        match e.metadata() {
            Ok(m) if m.is_dir() => match tree_sum(&e.path(), size) {
                Ok(n) => sum += n,
                Err(err) if gone(&err) => {}
                Err(err) => return Err(err),
            },
            Ok(m) if m.is_file() => sum += size(&m),
            Ok(_) => {}
            Err(err) if gone(&err) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(sum)
}

fn fs_magic(p: &Path) -> Result<i64> {
    let c = CString::new(p.as_os_str().as_bytes())?;
    // SAFETY: statfs writes into a zeroed struct we own; c is a valid C string.
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut s) } != 0 {
        return Err(std::io::Error::last_os_error()).context(format!("statfs {}", p.display()));
    }
    Ok(s.f_type as i64)
}

fn shm_dir(prefix: &str) -> Result<TempDir> {
    let shm = Path::new("/dev/shm");
    ensure!(
        fs_magic(shm)? == TMPFS_MAGIC,
        "/dev/shm is not a tmpfs: the tmpfs targets need it"
    );
    Ok(tempfile::Builder::new().prefix(prefix).tempdir_in(shm)?)
}

/// The bench's scratch directory on the disk under test. It is removed at
/// the end unless something is still mounted below it (then removing it
/// would reach into a mount).
pub struct Scratch(Option<TempDir>);

impl Scratch {
    /// A temp dir `PREFIX*` in `parent`.
    pub fn new(parent: &Path, prefix: &str) -> Result<Scratch> {
        let d = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(parent)
            .with_context(|| format!("creating a temp dir in {}", parent.display()))?;
        Ok(Scratch(Some(d)))
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        self.0.as_ref().map_or(Path::new("/"), TempDir::path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let Some(d) = self.0.take() else { return };
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let busy = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .any(|mp| Path::new(&unescape_mount(mp)).starts_with(d.path()));
        if busy {
            eprintln!(
                "warning: something is still mounted under {}; leaving it in place",
                d.path().display()
            );
            let _ = d.keep();
        }
    }
}
