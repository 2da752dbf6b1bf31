//! Harness for end-to-end tests: real `hsfs` processes serving real FUSE
//! mounts in temporary directories.
//!
//! The binaries are the ones cargo built next to the test executable
//! (`cargo build -p hsfs-tools` with the same profile, which the README's
//! test command does first). A [`Workspace`] unmounts on drop, even when the
//! test panics, so no mount outlives its test.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod cluster;
pub mod proxy;
pub mod raw;

/// Spawns `cmd` with stderr appended to `log`, reads its stdout until a
/// line starting with `ready` (its readiness line) and returns the child
/// and that line. Panics with the log if the process exits first.
pub fn spawn_ready(cmd: &mut Command, log: &Path, ready: &str) -> (Child, String) {
    let logf = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(logf)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    loop {
        line.clear();
        let n = out.read_line(&mut line).expect("read process output");
        if n == 0 {
            let status = child.wait().expect("wait");
            panic!(
                "{cmd:?} exited ({status}) before it was ready:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if line.starts_with(ready) {
            break;
        }
    }
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = out.read_to_end(&mut sink);
    });
    (child, line.trim_end().to_string())
}

/// SIGTERM and wait; asserts a clean exit.
pub fn stop_child(mut child: Child, log: &Path) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().expect("wait");
    assert!(
        status.success(),
        "process exited with {status}:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// Path of a binary built by this workspace (same profile as the tests).
#[must_use]
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: build the tools first (cargo build -p hsfs-tools, same profile as the tests)",
        p.display()
    );
    p
}

/// A directory on tmpfs, the reference local filesystem.
#[must_use]
pub fn tmpfs_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("hsfs-ref-")
        .tempdir_in("/dev/shm")
        .expect("tmpfs dir in /dev/shm")
}

/// Whether `path` is currently a mount point.
#[must_use]
pub fn is_mounted(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = path.to_string_lossy().replace(' ', "\\040");
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

/// Runs a command to completion; panics with its output if it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An initialized workspace, mounted by an `hsfs mount` child process.
pub struct Workspace {
    /// Holds everything of the test.
    pub dir: tempfile::TempDir,
    /// State directory.
    pub state: PathBuf,
    /// Mount point.
    pub mnt: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl Workspace {
    /// A new workspace mounted with `--allow-other` (tests switch uids).
    #[must_use]
    pub fn new() -> Workspace {
        Self::with_args(&[])
    }

    /// A new workspace mounted with extra `hsfs mount` arguments.
    #[must_use]
    pub fn with_args(args: &[&str]) -> Workspace {
        let dir = tempfile::Builder::new()
            .prefix("hsfs-test-")
            .tempdir()
            .expect("tempdir");
        Self::in_dir(dir, args)
    }

    /// A new workspace whose state lives in `dir`.
    #[must_use]
    pub fn in_dir(dir: tempfile::TempDir, args: &[&str]) -> Workspace {
        let state = dir.path().join("state");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir_all(&mnt).expect("mkdir mnt");
        run(Command::new(bin("hsfs"))
            .args(["init", "--mode", "1777"])
            .arg(&state));
        let mut w = Workspace {
            dir,
            state,
            mnt,
            args: args.iter().map(|s| (*s).to_string()).collect(),
            child: None,
        };
        w.mount();
        w
    }

    /// Path inside the mount.
    #[must_use]
    pub fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("mount.log")
    }

    /// The mount process's log so far.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Starts `hsfs mount` and waits for its readiness line.
    pub fn mount(&mut self) {
        assert!(self.child.is_none(), "already mounted");
        let mut cmd = Command::new(bin("hsfs"));
        cmd.arg("mount")
            .arg(&self.state)
            .arg(&self.mnt)
            .arg("--allow-other")
            .args(&self.args);
        let (child, _) = spawn_ready(&mut cmd, &self.log_path(), "hsfs: mounted");
        assert!(
            is_mounted(&self.mnt),
            "readiness line printed but nothing mounted"
        );
        self.child = Some(child);
    }

    /// SIGTERM: clean unmount and durable shutdown; asserts a clean exit.
    pub fn unmount(&mut self) {
        let child = self.child.take().expect("not mounted");
        stop_child(child, &self.log_path());
        assert!(!is_mounted(&self.mnt), "still mounted after hsfs exited");
    }

    /// SIGKILL of the mount process (leaves a dead mount behind).
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("not mounted");
        child.kill().expect("kill -9");
        let _ = child.wait();
    }

    /// Unmount and mount again.
    pub fn remount(&mut self) {
        self.unmount();
        self.mount();
    }

    /// `hsfs-fsck --json` of the (unmounted) state; asserts it is clean.
    pub fn fsck(&self) -> Value {
        assert!(self.child.is_none(), "fsck needs the workspace unmounted");
        let out = Command::new(bin("hsfs-fsck"))
            .arg(&self.state)
            .arg("--json")
            .output()
            .expect("run hsfs-fsck");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("fsck output: {e}: {}", String::from_utf8_lossy(&out.stderr))
        });
        assert!(
            out.status.success() && v["clean"] == true,
            "fsck found problems: {v:#}"
        );
        v
    }

    /// Unmounts, runs fsck, mounts again.
    pub fn check(&mut self) -> Value {
        self.unmount();
        let v = self.fsck();
        self.mount();
        v
    }

    /// `hsfs status --json` from the live mount.
    #[must_use]
    pub fn status(&self) -> Value {
        let out = run(Command::new(bin("hsfs"))
            .args(["status", "--json"])
            .arg(&self.state));
        serde_json::from_str(&out).expect("status json")
    }

    /// Whether the mount process is still running.
    #[must_use]
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if is_mounted(&self.mnt) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}
