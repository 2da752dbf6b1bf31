//! Open-leases at the leader (SPEC 10): which inodes are open on which
//! worker. The commit pipeline asks it when an unlink or a replacing rename
//! drops a node's last link; the leader reclaims an orphan once no worker
//! holds it.
//!
//! A worker's leases live as long as its connection plus the lease TTL: a
//! worker that vanishes loses them after the TTL, one that reconnects in
//! time renews them with its full open set.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use hsfs_engine::Ino;
use hsfs_engine::commit::OpenFiles;
use parking_lot::Mutex;

#[derive(Default)]
struct Held {
    open: BTreeSet<Ino>,
    /// When the worker's connection was lost (leases expire TTL after).
    lost: Option<Instant>,
}

/// Open-leases of every worker.
pub struct Leases {
    ttl: Duration,
    workers: Mutex<BTreeMap<String, Held>>,
}

impl Leases {
    /// A table whose leases outlive a lost connection by `ttl`.
    #[must_use]
    pub fn new(ttl: Duration) -> Leases {
        Leases {
            ttl,
            workers: Mutex::new(BTreeMap::new()),
        }
    }

    /// Applies a worker's 0->1 / 1->0 transitions.
    pub fn change(&self, worker: &str, acquire: &[Ino], release: &[Ino]) {
        let mut w = self.workers.lock();
        let h = w.entry(worker.to_string()).or_default();
        h.lost = None;
        h.open.extend(acquire.iter().copied());
        for i in release {
            h.open.remove(i);
        }
    }

    /// Replaces a worker's whole set (renewal).
    pub fn renew(&self, worker: &str, open: &[Ino]) {
        let mut w = self.workers.lock();
        let h = w.entry(worker.to_string()).or_default();
        h.lost = None;
        h.open = open.iter().copied().collect();
    }

    /// The worker's connection is gone: its leases start expiring.
    pub fn lost(&self, worker: &str) {
        if let Some(h) = self.workers.lock().get_mut(worker) {
            h.lost.get_or_insert_with(Instant::now);
        }
    }

    /// Drops expired leases; returns the inodes that lost their last lease.
    pub fn expire(&self) -> Vec<Ino> {
        let now = Instant::now();
        let mut w = self.workers.lock();
        let mut freed = Vec::new();
        let expired: Vec<String> = w
            .iter()
            .filter(|(_, h)| h.lost.is_some_and(|t| now.duration_since(t) >= self.ttl))
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            if let Some(h) = w.remove(&k) {
                freed.extend(h.open);
            }
        }
        freed.retain(|i| !w.values().any(|h| h.open.contains(i)));
        freed
    }

    /// Number of leases held by a worker.
    #[must_use]
    pub fn count(&self, worker: &str) -> usize {
        self.workers.lock().get(worker).map_or(0, |h| h.open.len())
    }
}

impl OpenFiles for Leases {
    fn is_open(&self, ino: Ino) -> bool {
        self.workers.lock().values().any(|h| h.open.contains(&ino))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_expire_after_ttl_only_when_lost() {
        let l = Leases::new(Duration::ZERO);
        l.change("a", &[5, 6], &[]);
        l.change("b", &[6], &[]);
        assert!(l.is_open(5));
        assert!(l.expire().is_empty(), "connected workers keep their leases");
        l.lost("a");
        assert_eq!(l.expire(), vec![5], "6 is still held by b");
        assert!(!l.is_open(5) && l.is_open(6));
        l.change("b", &[], &[6]);
        assert!(!l.is_open(6));
        l.renew("c", &[9]);
        assert_eq!(l.count("c"), 1);
    }
}
