//! Readdir cookies, shared by every handle of a directory.
//!
//! Why: with cached listings (`FOPEN_CACHE_DIR`) the kernel fills a
//! directory's listing cache through one handle and serves later handles
//! from it. When it loses a cached page midway, it goes on with a FUSE
//! READDIR from the last cookie it returned, on whichever handle is reading
//! now: a cookie that handle never gave out, and often of an entry deleted
//! since (`rm -rf` unlinks what it has read, then reads on). So a cookie
//! must stand for the same position for every handle, and outlive both the
//! handle that gave it out and the entry it names.
//!
//! A cookie stands for "after this name" (listings are in bytewise name
//! order). Each (directory, name) gets one cookie, the same every time it
//! is listed, from a counter that never repeats, so a cookie cannot come to
//! mean another name. Memory is bounded: past `limit` names in all, the
//! directories listed least recently are forgotten (and the oldest cookies
//! of a directory listed with more names than that), and a forgotten cookie
//! is answered with `EINVAL`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use hsfs_engine::Ino;
use parking_lot::Mutex;

/// Names remembered by default (about 100 bytes each for short names; see
/// `FsConfig::cookie_names`).
pub const DEFAULT_LIMIT: usize = 256 * 1024;

/// The cookie registry of one mount.
pub struct Cookies {
    inner: Mutex<Inner>,
    limit: usize,
}

struct Inner {
    /// The next cookie to give out.
    next: u64,
    /// Use counter, for forgetting the least recently listed directories.
    tick: u64,
    /// Names remembered in all directories.
    names: usize,
    dirs: HashMap<Ino, Dir>,
}

#[derive(Default)]
struct Dir {
    used: u64,
    by_name: HashMap<Arc<[u8]>, u64>,
    by_cookie: BTreeMap<u64, Arc<[u8]>>,
}

impl Cookies {
    /// A registry whose cookies start at `first` (cookies below it are the
    /// caller's, e.g. "." and "..") and that remembers about `limit` names.
    #[must_use]
    pub fn new(first: u64, limit: usize) -> Cookies {
        Cookies {
            inner: Mutex::new(Inner {
                next: first,
                tick: 0,
                names: 0,
                dirs: HashMap::new(),
            }),
            limit: limit.max(1),
        }
    }

    /// The cookie of `name` in directory `dir`: the same one every time.
    pub fn cookie(&self, dir: Ino, name: &[u8]) -> u64 {
        let mut g = self.inner.lock();
        let g = &mut *g;
        g.tick += 1;
        let d = g.dirs.entry(dir).or_default();
        d.used = g.tick;
        if let Some(&c) = d.by_name.get(name) {
            return c;
        }
        let c = g.next;
        g.next += 1;
        let name: Arc<[u8]> = name.into();
        d.by_name.insert(name.clone(), c);
        d.by_cookie.insert(c, name);
        g.names += 1;
        if g.names > self.limit {
            g.forget(dir, self.limit);
        }
        c
    }

    /// The name a cookie of `dir` stands for, if remembered.
    #[must_use]
    pub fn name(&self, dir: Ino, cookie: u64) -> Option<Arc<[u8]>> {
        let mut g = self.inner.lock();
        let g = &mut *g;
        g.tick += 1;
        let d = g.dirs.get_mut(&dir)?;
        d.used = g.tick;
        d.by_cookie.get(&cookie).cloned()
    }

    /// Names remembered in all directories.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.lock().names
    }

    /// Whether no name is remembered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    /// Forgets the least recently listed directories other than `current`
    /// until at most three quarters of `limit` names remain; then, if that
    /// is not enough, the oldest cookies of `current` (a directory listed
    /// with more names than the limit: a listing in progress needs only its
    /// latest cookies).
    fn forget(&mut self, current: Ino, limit: usize) {
        let target = limit - limit / 4;
        let mut others: Vec<(u64, Ino)> = self
            .dirs
            .iter()
            .filter(|(ino, _)| **ino != current)
            .map(|(ino, d)| (d.used, *ino))
            .collect();
        others.sort_unstable();
        for (_, ino) in others {
            if self.names <= target {
                return;
            }
            if let Some(d) = self.dirs.remove(&ino) {
                self.names -= d.by_cookie.len();
            }
        }
        if let Some(d) = self.dirs.get_mut(&current) {
            while self.names > target {
                let Some((_, name)) = d.by_cookie.pop_first() else {
                    break;
                };
                d.by_name.remove(&name);
                self.names -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_keeps_its_cookie_and_cookies_never_repeat() {
        let c = Cookies::new(3, 100);
        let a = c.cookie(1, b"a");
        let b = c.cookie(1, b"b");
        assert_eq!(a, 3);
        assert_eq!(b, 4);
        assert_eq!(c.cookie(1, b"a"), a, "listed again: the same cookie");
        assert_ne!(c.cookie(2, b"a"), a, "another directory: another cookie");
        assert_eq!(c.name(1, b).as_deref(), Some(&b"b"[..]));
        assert_eq!(c.name(2, b), None, "cookies are per directory");
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn the_least_recently_listed_directories_are_forgotten() {
        let c = Cookies::new(3, 8);
        let old = c.cookie(1, b"x");
        for i in 0..4u8 {
            c.cookie(2, &[i]);
        }
        c.cookie(1, b"y"); // directory 1 used last ...
        for i in 0..4u8 {
            c.cookie(3, &[i]); // ... but directory 2 was listed after it
        }
        // 10 names > 8: the least recently used directory (2) goes first,
        // leaving 6 <= 6 (three quarters of 8).
        assert_eq!(c.len(), 6);
        assert_eq!(c.name(1, old).as_deref(), Some(&b"x"[..]));
        assert_eq!(c.name(2, old + 1), None);
        // A cookie given out before is never given to another name.
        let again = c.cookie(2, &[0]);
        assert!(again > old + 9, "{again}");
    }

    #[test]
    fn a_directory_larger_than_the_limit_keeps_its_latest_cookies() {
        let c = Cookies::new(3, 4);
        for i in 0..5u8 {
            c.cookie(1, &[i]);
        }
        // 5 > 4: the oldest two go, down to three quarters of the limit.
        assert_eq!(c.len(), 3);
        assert_eq!(c.name(1, 3), None);
        assert_eq!(c.name(1, 4), None);
        assert_eq!(
            c.name(1, 7).as_deref(),
            Some(&[4u8][..]),
            "the latest stays"
        );
        let next = c.cookie(1, &[0]);
        assert_eq!(next, 8, "a forgotten name gets a fresh cookie");
    }
}
