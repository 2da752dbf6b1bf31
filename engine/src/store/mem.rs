//! In-memory backend that models durability, for crash and fault tests.
//!
//! It keeps two images: `live` (what readers see) and `durable` (what would
//! survive a power cut). A batch committed without `sync` reaches `live`
//! only; a synced batch makes every earlier batch durable too, exactly like
//! an append-only journal with fdatasync. [`MemBackend::crash_image`] returns
//! a new backend holding only the durable image: the state after a crash.

use std::collections::BTreeMap;
use std::ops::Bound;

use parking_lot::Mutex;

use super::{Backend, BatchItem, KvIter, StoreError, Value};
use crate::keys::Space;
use crate::types::Hash;

type Image = Vec<BTreeMap<Vec<u8>, Value>>;

fn empty_image() -> Image {
    Space::ALL.iter().map(|_| BTreeMap::new()).collect()
}

/// A planned failure.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// The commit with this number (1 = the next one) fails before writing
    /// anything, and the store is poisoned like a real one.
    pub fail_commit: Option<u64>,
    /// Free space reported to the engine (`None` = unknown).
    pub free_space: Option<u64>,
}

#[derive(Default)]
struct Inner {
    live: Image,
    durable: Image,
    unsynced: Vec<Vec<BatchItem>>,
    /// Chunks stored by `put_journaled_chunks` since the last sync: held
    /// in memory only, like the fjall backend does (only a sync makes them
    /// durable, not a synced commit).
    held: Vec<BatchItem>,
    commits: u64,
    faults: Faults,
    poisoned: bool,
}

/// In-memory [`Backend`] with a durable image and fault injection.
pub struct MemBackend {
    inner: Mutex<Inner>,
}

impl Default for MemBackend {
    fn default() -> Self {
        MemBackend::new()
    }
}

fn apply(img: &mut Image, items: &[BatchItem]) {
    for it in items {
        let m = &mut img[it.space.idx()];
        match &it.value {
            Some(v) => m.insert(it.key.clone(), v.clone()),
            None => m.remove(&it.key),
        };
    }
}

impl MemBackend {
    /// An empty store.
    #[must_use]
    pub fn new() -> MemBackend {
        MemBackend {
            inner: Mutex::new(Inner {
                live: empty_image(),
                durable: empty_image(),
                ..Inner::default()
            }),
        }
    }

    /// The store as a crash right now would leave it: durable data only.
    #[must_use]
    pub fn crash_image(&self) -> MemBackend {
        let g = self.inner.lock();
        MemBackend {
            inner: Mutex::new(Inner {
                live: g.durable.clone(),
                durable: g.durable.clone(),
                ..Inner::default()
            }),
        }
    }

    /// The store as the death of its process right now would leave it:
    /// every batch reached the OS (and survives) except the chunks held in
    /// memory since the last sync.
    #[must_use]
    pub fn process_crash_image(&self) -> MemBackend {
        let g = self.inner.lock();
        let mut img = g.live.clone();
        for i in &g.held {
            img[Space::Chunks.idx()].remove(&i.key);
        }
        MemBackend {
            inner: Mutex::new(Inner {
                live: img.clone(),
                durable: img,
                ..Inner::default()
            }),
        }
    }

    /// Installs a fault plan; commit numbers count from the next commit.
    pub fn set_faults(&self, f: Faults) {
        let mut g = self.inner.lock();
        g.commits = 0;
        g.faults = f;
    }

    /// Test hook: overwrite or delete one record in both images, as a
    /// corruption on disk would.
    pub fn corrupt(&self, space: Space, key: &[u8], value: Option<Vec<u8>>) {
        let mut g = self.inner.lock();
        let g = &mut *g;
        for img in [&mut g.live, &mut g.durable] {
            match &value {
                Some(v) => img[space.idx()].insert(key.to_vec(), Value::from(v.clone())),
                None => img[space.idx()].remove(key),
            };
        }
    }

    /// Every key of a space (test helper).
    #[must_use]
    pub fn keys(&self, space: Space) -> Vec<Vec<u8>> {
        self.inner.lock().live[space.idx()]
            .keys()
            .cloned()
            .collect()
    }
}

impl Backend for MemBackend {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Value>, StoreError> {
        Ok(self.inner.lock().live[space.idx()].get(key).cloned())
    }

    fn range(&self, space: Space, lo: Bound<Vec<u8>>, hi: Bound<Vec<u8>>) -> KvIter<'_> {
        let g = self.inner.lock();
        let items: Vec<_> = g.live[space.idx()]
            .range::<Vec<u8>, _>((lo, hi))
            .map(|(k, v)| Ok((Value::from(k.clone()), v.clone())))
            .collect();
        Box::new(items.into_iter())
    }

    fn commit(&self, items: Vec<BatchItem>, sync: bool) -> Result<(), StoreError> {
        let mut g = self.inner.lock();
        if g.poisoned {
            return Err(StoreError::Poisoned);
        }
        g.commits += 1;
        if g.faults.fail_commit == Some(g.commits) {
            g.poisoned = true;
            return Err(StoreError::Injected("commit failed"));
        }
        apply(&mut g.live, &items);
        g.unsynced.push(items);
        if sync {
            let pending = std::mem::take(&mut g.unsynced);
            for b in &pending {
                apply(&mut g.durable, b);
            }
        }
        Ok(())
    }

    fn put_journaled_chunks(&self, chunks: Vec<(Hash, Value)>) -> Result<(), StoreError> {
        let items: Vec<BatchItem> = chunks
            .into_iter()
            .map(|(h, v)| BatchItem::chunk(&h, v))
            .collect();
        let mut g = self.inner.lock();
        if g.poisoned {
            return Err(StoreError::Poisoned);
        }
        apply(&mut g.live, &items);
        g.held.extend(items);
        Ok(())
    }

    fn sync(&self) -> Result<(), StoreError> {
        let mut g = self.inner.lock();
        if g.poisoned {
            return Err(StoreError::Poisoned);
        }
        let held = std::mem::take(&mut g.held);
        apply(&mut g.durable, &held);
        let pending = std::mem::take(&mut g.unsynced);
        for b in &pending {
            apply(&mut g.durable, b);
        }
        Ok(())
    }

    fn free_space(&self) -> Option<u64> {
        self.inner.lock().faults.free_space
    }

    fn disk_space(&self) -> Option<u64> {
        None
    }
}
