//! Multi-host harness: an `hsfs leader` process and `hsfs mount --leader`
//! worker processes on loopback, each with its own state directory and
//! mount point. Every process is stopped and every mount removed on drop,
//! also when a test panics.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{bin, is_mounted, run, spawn_ready, stop_child};

/// Polls `cond` until it holds or `timeout` passes: for waiting on the
/// observable state of *other processes* (status reports), with a deadline.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for `child` to die of SIGABRT (an armed abort failpoint calls
/// `abort()`). The child stays in its slot until it exited, so a timeout
/// (a panic) still kills it on drop instead of leaking the process.
fn wait_abort(child: &mut Option<Child>, timeout: Duration, what: &str) {
    use std::os::unix::process::ExitStatusExt;
    let c = child.as_mut().expect("running");
    let mut status = None;
    wait_until(timeout, &format!("{what} to exit"), || {
        status = c.try_wait().expect("waiting for a child process");
        status.is_some()
    });
    let status = status.expect("exited");
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{what}: {status}");
    *child = None;
}

/// `hsfs status --json STATE`.
#[must_use]
pub fn status(state: &Path) -> Value {
    let out = run(Command::new(bin("hsfs"))
        .args(["status", "--json"])
        .arg(state));
    serde_json::from_str(&out).expect("status json")
}

/// The leader process.
pub struct LeaderProc {
    /// State directory.
    pub state: PathBuf,
    /// Address it listens on (kept across restarts).
    pub addr: SocketAddr,
    log: PathBuf,
    child: Option<Child>,
}

impl LeaderProc {
    /// Initializes a workspace in `dir/leader` and starts its leader.
    #[must_use]
    pub fn start(dir: &Path) -> LeaderProc {
        let state = dir.join("leader");
        run(Command::new(bin("hsfs"))
            .args(["init", "--mode", "1777"])
            .arg(&state));
        let mut l = LeaderProc {
            state,
            addr: "127.0.0.1:0".parse().expect("addr"),
            log: dir.join("leader.log"),
            child: None,
        };
        l.launch(&[]);
        l
    }

    fn launch(&mut self, env: &[(&str, &str)]) {
        let mut cmd = Command::new(bin("hsfs"));
        cmd.arg("leader")
            .arg(&self.state)
            .arg("--listen")
            .arg(self.addr.to_string());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (child, line) = spawn_ready(&mut cmd, &self.log, "hsfs: leader");
        let addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .expect("address in the readiness line");
        self.addr = addr.parse().expect("leader address");
        self.child = Some(child);
    }

    /// Restarts it on the same address, with extra environment.
    pub fn restart(&mut self, env: &[(&str, &str)]) {
        assert!(self.child.is_none(), "leader still running");
        self.launch(env);
    }

    /// SIGTERM and wait: a clean stop.
    pub fn stop(&mut self) {
        if let Some(c) = self.child.take() {
            stop_child(c, &self.log);
        }
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the process to abort by itself (an armed abort failpoint).
    pub fn wait_exit(&mut self, timeout: Duration) {
        wait_abort(&mut self.child, timeout, "the leader process");
    }

    /// Its status.
    #[must_use]
    pub fn status(&self) -> Value {
        status(&self.state)
    }

    /// Its commit index.
    #[must_use]
    pub fn commit_index(&self) -> u64 {
        self.status()["commit_index"]
            .as_u64()
            .expect("commit index")
    }

    /// The mount log so far.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for LeaderProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A worker mount process.
pub struct WorkerProc {
    /// Worker name.
    pub name: String,
    /// Replica state directory.
    pub state: PathBuf,
    /// Mount point.
    pub mnt: PathBuf,
    /// Credentials.
    pub bundle: PathBuf,
    /// Leader (or proxy) address it dials.
    pub leader: SocketAddr,
    log: PathBuf,
    child: Option<Child>,
}

impl WorkerProc {
    /// Issues credentials from the leader's state and mounts a worker.
    #[must_use]
    pub fn start(
        dir: &Path,
        name: &str,
        leader: &LeaderProc,
        dial: SocketAddr,
        env: &[(&str, &str)],
    ) -> WorkerProc {
        let bundle = dir.join(format!("{name}.bundle"));
        run(Command::new(bin("hsfs"))
            .args(["join", "--name", name, "--out"])
            .arg(&bundle)
            .arg(&leader.state));
        let mnt = dir.join(format!("mnt-{name}"));
        std::fs::create_dir_all(&mnt).expect("mkdir mnt");
        let mut w = WorkerProc {
            name: name.into(),
            state: dir.join(format!("state-{name}")),
            mnt,
            bundle,
            leader: dial,
            log: dir.join(format!("{name}.log")),
            child: None,
        };
        w.mount(env);
        w
    }

    /// Starts (or restarts) the mount process.
    pub fn mount(&mut self, env: &[(&str, &str)]) {
        assert!(self.child.is_none(), "worker still running");
        let mut cmd = Command::new(bin("hsfs"));
        cmd.arg("mount")
            .arg(&self.state)
            .arg(&self.mnt)
            .args([
                "--allow-other",
                "--name",
                &self.name,
                "--leader",
                &self.leader.to_string(),
                "--join",
            ])
            .arg(&self.bundle);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (child, _) = spawn_ready(&mut cmd, &self.log, "hsfs: mounted");
        self.child = Some(child);
    }

    /// Path inside the mount.
    #[must_use]
    pub fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// Its status.
    #[must_use]
    pub fn status(&self) -> Value {
        status(&self.state)
    }

    /// Its applied index.
    #[must_use]
    pub fn applied(&self) -> u64 {
        self.status()["applied_index"]
            .as_u64()
            .expect("applied index")
    }

    /// Waits until it is connected to `leader`'s current process (its
    /// epoch) and writable: after a leader restart, mutations before that
    /// would fail with EROFS.
    pub fn wait_connected(&self, leader: &LeaderProc, timeout: Duration) {
        let epoch = leader.status()["leader"]["leader_epoch"].clone();
        assert!(epoch.is_u64(), "leader status without an epoch");
        wait_until(
            timeout,
            &format!("worker {} to connect to leader epoch {epoch}", self.name),
            || {
                let s = self.status();
                s["worker"]["leader_epoch"] == epoch && s["read_only"] == false
            },
        );
    }

    /// Waits until it applied `index`.
    pub fn wait_applied(&self, index: u64, timeout: Duration) {
        wait_until(
            timeout,
            &format!("worker {} to apply index {index}", self.name),
            || self.applied() >= index,
        );
    }

    /// Clean stop (unmounts).
    pub fn stop(&mut self) {
        if let Some(c) = self.child.take() {
            stop_child(c, &self.log);
        }
    }

    /// SIGKILL, then clears the dead mount.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.clear_mount();
    }

    /// Waits for the process to abort by itself (an armed abort failpoint),
    /// then clears the dead mount.
    pub fn wait_exit(&mut self, timeout: Duration) {
        wait_abort(&mut self.child, timeout, "the worker process");
        self.clear_mount();
    }

    fn clear_mount(&self) {
        if is_mounted(&self.mnt) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }

    /// The process log so far.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `hsfs-fsck --json` of the (stopped) replica; asserts clean.
    #[must_use]
    pub fn fsck(&self) -> Value {
        fsck(&self.state)
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `hsfs-fsck --json STATE`; asserts it is clean.
#[must_use]
pub fn fsck(state: &Path) -> Value {
    let out = Command::new(bin("hsfs-fsck"))
        .arg(state)
        .arg("--json")
        .output()
        .expect("run hsfs-fsck");
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("fsck output: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(
        out.status.success() && v["clean"] == true,
        "fsck of {} found problems: {v:#}",
        state.display()
    );
    v
}

/// A leader and workers; everything stops on drop.
pub struct Cluster {
    /// Workers (dropped before the leader).
    pub workers: Vec<WorkerProc>,
    /// The leader.
    pub leader: LeaderProc,
    /// Holds every state directory and mount point.
    pub dir: tempfile::TempDir,
}

impl Cluster {
    /// A leader and `n` workers named w0, w1, ...
    #[must_use]
    pub fn new(n: usize) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("hsfs-cluster-")
            .tempdir()
            .expect("tempdir");
        let leader = LeaderProc::start(dir.path());
        let workers = (0..n)
            .map(|i| WorkerProc::start(dir.path(), &format!("w{i}"), &leader, leader.addr, &[]))
            .collect();
        Cluster {
            workers,
            leader,
            dir,
        }
    }

    /// Waits until every running worker applied the leader's commit index.
    pub fn converge(&self, timeout: Duration) -> u64 {
        let target = self.leader.commit_index();
        for w in &self.workers {
            if w.child.is_some() {
                w.wait_applied(target, timeout);
            }
        }
        target
    }

    /// Stops everything cleanly and checks every store with fsck: clean,
    /// and the same root for the same index everywhere.
    pub fn stop_and_check(&mut self) {
        for w in &mut self.workers {
            w.stop();
        }
        self.leader.stop();
        let lead = fsck(&self.leader.state);
        for w in &self.workers {
            let r = w.fsck();
            if r["stats"]["applied_index"] == lead["stats"]["applied_index"] {
                assert_eq!(
                    r["stats"]["root_computed"], lead["stats"]["root_computed"],
                    "worker {} diverged",
                    w.name
                );
            }
        }
    }
}
