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
    armed: Mutex<HashMap<&'static str, u64>>,
}

/// Every failpoint name, in pipeline order.
pub const POINTS: &[&str] = &[
    "commit.before_apply",
    "commit.after_apply",
    "batch.before_write",
    "commit.after_write",
];

impl Failpoints {
    /// Makes the `nth` hit (1 = the next) of `name` fire.
    pub fn arm(&self, name: &'static str, nth: u64) {
        assert!(POINTS.contains(&name), "unknown failpoint {name}");
        self.armed.lock().insert(name, nth.max(1));
        self.any.store(true, Ordering::Release);
    }

    /// Disarms everything.
    pub fn clear(&self) {
        self.armed.lock().clear();
        self.any.store(false, Ordering::Release);
    }

    /// Counts a hit of `name`; true when it fires.
    pub fn hit(&self, name: &'static str) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let mut m = self.armed.lock();
        match m.get_mut(name) {
            Some(1) => {
                m.remove(name);
                true
            }
            Some(n) => {
                *n -= 1;
                false
            }
            None => false,
        }
    }
}
