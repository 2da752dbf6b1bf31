//! Named failpoints between the steps of a batch, armed by tests.
//!
//! Each engine has its own set, so tests running in parallel do not
//! interfere. When nothing is armed a hit costs one atomic load.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

/// The failpoints of one engine.
#[derive(Default)]
pub struct Failpoints {
    any: AtomicBool,
    armed: Mutex<HashMap<&'static str, (u64, Action)>>,
}

/// What a failpoint does when it fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Report it to the caller (in-process crash simulation).
    Fire,
    /// Kill the process on the spot (no cleanup, like SIGKILL): for tests
    /// that crash real processes at an exact step.
    Abort,
}

/// Every failpoint name, in pipeline order.
pub const POINTS: &[&str] = &[
    "commit.before_apply",
    "commit.after_apply",
    "batch.before_write",
    "journal.after_write",
    "commit.after_write",
    "worker.ack_received",
];

impl Failpoints {
    /// Makes the `nth` hit (1 = the next) of `name` fire.
    pub fn arm(&self, name: &'static str, nth: u64) {
        self.arm_with(name, nth, Action::Fire);
    }

    /// Arms `name` with an action.
    pub fn arm_with(&self, name: &'static str, nth: u64, action: Action) {
        assert!(POINTS.contains(&name), "unknown failpoint {name}");
        self.armed.lock().insert(name, (nth.max(1), action));
        self.any.store(true, Ordering::Release);
    }

    /// Arms abort-type failpoints from a spec like `commit.after_write=3`
    /// (comma separated): how tests crash a real process at an exact step
    /// (the `HSFS_FAILPOINTS` environment variable of the tools).
    pub fn arm_from_spec(&self, spec: &str) -> Result<(), String> {
        for part in spec.split(',').filter(|p| !p.is_empty()) {
            let (name, n) = part.split_once('=').unwrap_or((part, "1"));
            let name = POINTS
                .iter()
                .find(|p| **p == name)
                .ok_or_else(|| format!("unknown failpoint {name:?} (known: {POINTS:?})"))?;
            let n: u64 = n.parse().map_err(|_| format!("bad count in {part:?}"))?;
            self.arm_with(name, n, Action::Abort);
        }
        Ok(())
    }

    /// Disarms everything.
    pub fn clear(&self) {
        self.armed.lock().clear();
        self.any.store(false, Ordering::Release);
    }

    /// Whether `name` is armed and has not fired yet.
    #[must_use]
    pub fn is_armed(&self, name: &str) -> bool {
        self.armed.lock().contains_key(name)
    }

    /// Counts a hit of `name`; true when it fires.
    pub fn hit(&self, name: &'static str) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let mut m = self.armed.lock();
        match m.get_mut(name) {
            Some((1, action)) => {
                if *action == Action::Abort {
                    eprintln!("hsfs: failpoint {name} fired: aborting the process");
                    std::process::abort();
                }
                m.remove(name);
                true
            }
            Some((n, _)) => {
                *n -= 1;
                false
            }
            None => false,
        }
    }
}
