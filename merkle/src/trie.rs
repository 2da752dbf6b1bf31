//! Incremental updates over a persisted trie.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::{Branch, Child, Hash, MAX_DEPTH, NodePath, leaf_hash, nibble};
use crate::{Proof, ProofStep, Terminal};

/// Where persisted branches come from.
pub trait NodeStore {
    /// Error of the underlying storage.
    type Error: std::error::Error + Send + Sync + 'static;
    /// The branch stored at `path`, if any.
    fn load(&self, path: &NodePath) -> Result<Option<Branch>, Self::Error>;
}

/// Failure of a trie operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrieError<E: std::error::Error + 'static> {
    /// The node store failed.
    #[error("merkle node store: {0}")]
    Store(#[source] E),
    /// A slot points at a branch that is not stored.
    #[error("merkle branch missing at depth {depth}: {path:?}")]
    MissingBranch {
        /// Depth of the missing branch.
        depth: usize,
        /// Its position.
        path: NodePath,
    },
    /// Two distinct keys share all 64 nibbles (impossible for BLAKE3 keys).
    #[error("merkle keys collide on all 256 bits")]
    KeyCollision,
}

/// A working set over a persisted trie.
///
/// Mutations are buffered in memory; [`Trie::root`] recomputes the hashes of
/// the branches they touched (deepest first, each once), and
/// [`Trie::writes`] hands the changed branches to the caller, which
/// persists them in the same atomic batch as the records they authenticate
/// and then calls [`Trie::written`].
/// Shallow branches (depth <= `cache_depth`) stay cached between batches since
/// every update passes through them.
///
/// A caller may instead [`Trie::hold`] a batch's changes once the batch is
/// durable by other means (the engine writes the batch's leaf changes as a
/// small delta record): they stay in memory, take part in every later
/// lookup, survive [`Trie::reset`], and are handed over by the next
/// `writes`. The branches near the root change in every batch, so
/// holding them across many batches writes each once instead of once per
/// batch.
#[derive(Debug)]
pub struct Trie {
    cache: HashMap<NodePath, Branch>,
    cache_depth: usize,
    /// Branches changed since the last `written` or `hold`; `None` =
    /// deleted.
    pending: HashMap<NodePath, Option<Branch>>,
    /// Changes of committed batches not yet taken (see [`Trie::hold`]).
    held: HashMap<NodePath, Option<Branch>>,
    /// Branches whose hash, as recorded in their parent's slot, is stale.
    stale: BTreeSet<(std::cmp::Reverse<usize>, NodePath)>,
}

impl Default for Trie {
    fn default() -> Self {
        Trie::new(3)
    }
}

type R<T, S> = Result<T, TrieError<<S as NodeStore>::Error>>;

impl Trie {
    /// A trie that caches branches down to `cache_depth` (3 keeps ~4.4k
    /// branches, a few MiB, and covers the levels every update touches).
    #[must_use]
    pub fn new(cache_depth: usize) -> Trie {
        Trie {
            cache: HashMap::new(),
            cache_depth,
            pending: HashMap::new(),
            held: HashMap::new(),
            stale: BTreeSet::new(),
        }
    }

    fn get<S: NodeStore>(&mut self, store: &S, path: &NodePath) -> R<Option<Branch>, S> {
        if let Some(p) = self.pending.get(path) {
            return Ok(p.clone());
        }
        if let Some(p) = self.held.get(path) {
            return Ok(p.clone());
        }
        if let Some(b) = self.cache.get(path) {
            return Ok(Some(b.clone()));
        }
        let loaded = store.load(path).map_err(TrieError::Store)?;
        if let Some(b) = &loaded
            && path.depth() <= self.cache_depth
        {
            self.cache.insert(*path, b.clone());
        }
        Ok(loaded)
    }

    fn branch<S: NodeStore>(&mut self, store: &S, path: &NodePath) -> R<Branch, S> {
        match self.get(store, path)? {
            Some(b) => Ok(b),
            // The root of an empty trie is not stored.
            None if *path == NodePath::ROOT => Ok(Branch::default()),
            None => Err(TrieError::MissingBranch {
                depth: path.depth(),
                path: *path,
            }),
        }
    }

    fn put(&mut self, path: NodePath, b: Branch) {
        self.stale.insert((std::cmp::Reverse(path.depth()), path));
        // An empty root is not stored, so equal key sets store equal branches.
        let keep = path != NodePath::ROOT || b.count() > 0;
        self.pending.insert(path, keep.then_some(b));
    }

    fn delete(&mut self, path: NodePath) {
        self.pending.insert(path, None);
    }

    /// Inserts or replaces `key` with the given value hash.
    pub fn insert<S: NodeStore>(&mut self, store: &S, key: &Hash, value_hash: &Hash) -> R<(), S> {
        let leaf = Child::Leaf {
            key: *key,
            hash: leaf_hash(key, value_hash),
        };
        let mut path = NodePath::ROOT;
        loop {
            let depth = path.depth();
            let mut b = self.branch(store, &path)?;
            let nib = nibble(key, depth);
            match b.children[nib] {
                Child::Empty => {
                    b.children[nib] = leaf;
                    self.put(path, b);
                    return Ok(());
                }
                Child::Leaf { key: k2, .. } if k2 == *key => {
                    if b.children[nib] != leaf {
                        b.children[nib] = leaf;
                        self.put(path, b);
                    }
                    return Ok(());
                }
                other @ Child::Leaf { key: k2, .. } => {
                    // Split the slot: new branches down to the first nibble
                    // where the two keys differ.
                    b.children[nib] = Child::Branch { hash: [0; 32] };
                    self.put(path, b);
                    let mut d = depth + 1;
                    loop {
                        if d >= MAX_DEPTH {
                            return Err(TrieError::KeyCollision);
                        }
                        let (a, c) = (nibble(key, d), nibble(&k2, d));
                        let mut nb = Branch::default();
                        if a != c {
                            nb.children[a] = leaf;
                            nb.children[c] = other;
                            self.put(NodePath::of_key(key, d), nb);
                            return Ok(());
                        }
                        nb.children[a] = Child::Branch { hash: [0; 32] };
                        self.put(NodePath::of_key(key, d), nb);
                        d += 1;
                    }
                }
                Child::Branch { .. } => {
                    // Its hash will change: mark it for recomputation.
                    self.stale.insert((std::cmp::Reverse(depth), path));
                    path = path.child(nib);
                }
            }
        }
    }

    /// Removes `key`; returns whether it was present.
    pub fn remove<S: NodeStore>(&mut self, store: &S, key: &Hash) -> R<bool, S> {
        let mut ancestors = Vec::new();
        let mut path = NodePath::ROOT;
        let (mut b, nib) = loop {
            let b = self.branch(store, &path)?;
            let nib = nibble(key, path.depth());
            match b.children[nib] {
                Child::Empty => return Ok(false),
                Child::Leaf { key: k2, .. } if k2 != *key => return Ok(false),
                Child::Leaf { .. } => break (b, nib),
                Child::Branch { .. } => {
                    ancestors.push(path);
                    path = path.child(nib);
                }
            }
        };
        b.children[nib] = Child::Empty;
        self.put(path, b);
        // Collapse: a non-root branch left holding a single leaf is replaced
        // by that leaf in its parent, repeatedly (chains of one-child
        // branches exist only above two or more keys).
        let mut cur = path;
        while let Some(parent) = ancestors.pop() {
            let b = self.branch(store, &cur)?;
            let Some((_, lf @ Child::Leaf { .. })) = b.single_child() else {
                ancestors.push(parent);
                break;
            };
            self.delete(cur);
            let mut pb = self.branch(store, &parent)?;
            pb.children[nibble(key, parent.depth())] = lf;
            self.put(parent, pb);
            cur = parent;
        }
        for a in ancestors {
            self.stale.insert((std::cmp::Reverse(a.depth()), a));
        }
        Ok(true)
    }

    /// The root hash, after folding every pending change into the branch
    /// hashes above it.
    pub fn root<S: NodeStore>(&mut self, store: &S) -> R<Hash, S> {
        while let Some((_, path)) = self.stale.pop_first() {
            if path == NodePath::ROOT {
                continue;
            }
            let Some(b) = self.get(store, &path)? else {
                continue; // deleted by a collapse
            };
            let h = b.hash();
            let (parent, slot) = path.parent().expect("not the root");
            let mut pb = self.branch(store, &parent)?;
            if pb.children[slot] != (Child::Branch { hash: h }) {
                pb.children[slot] = Child::Branch { hash: h };
                self.pending.insert(parent, Some(pb));
            }
            self.stale
                .insert((std::cmp::Reverse(parent.depth()), parent));
        }
        Ok(self.branch(store, &NodePath::ROOT)?.hash())
    }

    /// Whether changes are buffered that neither [`Trie::written`] nor
    /// [`Trie::hold`] has taken.
    #[must_use]
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Keeps the pending changes in memory as committed (see the type's
    /// documentation): a later [`Trie::reset`] no longer drops them.
    /// Call [`Trie::root`] first so every hash is current.
    pub fn hold(&mut self) {
        assert!(self.stale.is_empty(), "hold before root()");
        self.held.extend(self.pending.drain());
    }

    /// Number of branches changed since the last `written` or `hold`.
    #[must_use]
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Number of branches held by [`Trie::hold`] and not yet taken.
    #[must_use]
    pub fn held_len(&self) -> usize {
        self.held.len()
    }

    /// Changed branches to persist (`None` = delete), sorted by position:
    /// the held ones and the pending ones (which are newer). They stay
    /// buffered (copied out) until [`Trie::written`] says they are stored:
    /// a caller whose store write fails then calls [`Trie::reset`], which
    /// drops only the pending changes, and the held ones still match the
    /// store. Call [`Trie::root`] first so every hash is current.
    pub fn writes(&self) -> Vec<(NodePath, Option<Branch>)> {
        assert!(self.stale.is_empty(), "writes before root()");
        let mut paths: Vec<NodePath> = self
            .held
            .keys()
            .chain(self.pending.keys())
            .copied()
            .collect();
        paths.sort_unstable();
        paths.dedup();
        paths
            .into_iter()
            .map(|p| {
                let b = self.pending.get(&p).or_else(|| self.held.get(&p));
                (p, b.expect("a changed path").clone())
            })
            .collect()
    }

    /// The changes [`Trie::writes`] handed out are stored: forgets them.
    pub fn written(&mut self) {
        let held: Vec<_> = self.held.drain().collect();
        let pending: Vec<_> = self.pending.drain().collect();
        // Pending after held: it is newer.
        for (p, b) in held.iter().chain(&pending) {
            self.cache_written(p, b);
        }
    }

    /// Keeps the cache in step with a stored change.
    fn cache_written(&mut self, p: &NodePath, b: &Option<Branch>) {
        match b {
            Some(b) if p.depth() <= self.cache_depth => {
                self.cache.insert(*p, b.clone());
            }
            _ => {
                self.cache.remove(p);
            }
        }
    }

    /// Forgets pending changes and cached branches (after a failed batch);
    /// held ones stay.
    pub fn reset(&mut self) {
        self.cache.clear();
        self.pending.clear();
        self.stale.clear();
    }

    /// An inclusion or exclusion proof for `key` against the current root.
    /// Call [`Trie::root`] first if changes are pending.
    pub fn prove<S: NodeStore>(&mut self, store: &S, key: &Hash) -> R<Proof, S> {
        assert!(self.stale.is_empty(), "prove before root()");
        let mut steps = Vec::new();
        let mut path = NodePath::ROOT;
        loop {
            let b = self.branch(store, &path)?;
            let nib = nibble(key, path.depth());
            let siblings = b
                .children
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != nib)
                .filter_map(|(_, c)| c.hash().copied())
                .collect();
            steps.push(ProofStep {
                present: b.present_bitmap(),
                siblings,
            });
            let terminal = match b.children[nib] {
                Child::Empty => Terminal::Empty,
                Child::Leaf { key: k2, hash } if k2 != *key => Terminal::Other { key: k2, hash },
                Child::Leaf { .. } => Terminal::Found,
                Child::Branch { .. } => {
                    path = path.child(nib);
                    continue;
                }
            };
            return Ok(Proof {
                key: *key,
                steps,
                terminal,
            });
        }
    }
}

/// An in-memory [`NodeStore`], for tests and tools.
#[derive(Debug, Default, Clone)]
pub struct MemStore {
    /// Stored branches.
    pub nodes: BTreeMap<NodePath, Branch>,
}

impl MemStore {
    /// Applies writes from [`Trie::writes`].
    pub fn apply(&mut self, writes: Vec<(NodePath, Option<Branch>)>) {
        for (p, b) in writes {
            match b {
                Some(b) => self.nodes.insert(p, b),
                None => self.nodes.remove(&p),
            };
        }
    }
}

impl NodeStore for MemStore {
    type Error = std::convert::Infallible;
    fn load(&self, path: &NodePath) -> Result<Option<Branch>, Self::Error> {
        Ok(self.nodes.get(path).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{empty_root, root_from_sorted};
    use proptest::prelude::*;

    fn h(i: u64) -> Hash {
        *blake3::hash(&i.to_le_bytes()).as_bytes()
    }

    /// Applies one insert (`Some(value)`) or removal to the trie and the model.
    fn apply_op(
        trie: &mut Trie,
        store: &MemStore,
        model: &mut BTreeMap<Hash, Hash>,
        k: u64,
        v: Option<u64>,
    ) {
        match v {
            Some(v) => {
                trie.insert(store, &h(k), &h(v)).unwrap();
                model.insert(h(k), h(v));
            }
            None => {
                let was = trie.remove(store, &h(k)).unwrap();
                assert_eq!(was, model.remove(&h(k)).is_some());
            }
        }
    }

    /// Applies `ops` and checks the incremental root against the from-scratch
    /// root after every step, persisting writes as the engine would.
    fn run(ops: &[(u64, Option<u64>)]) -> (Hash, MemStore) {
        let mut store = MemStore::default();
        let mut trie = Trie::new(2);
        let mut model = BTreeMap::new();
        for &(k, v) in ops {
            apply_op(&mut trie, &store, &mut model, k, v);
            let root = trie.root(&store).unwrap();
            store.apply(trie.writes());
            trie.written();
            let sorted: Vec<_> = model.iter().map(|(a, b)| (*a, *b)).collect();
            assert_eq!(root, root_from_sorted(&sorted));
            let canonical: BTreeMap<_, _> =
                crate::branches_from_sorted(&sorted).into_iter().collect();
            assert_eq!(
                canonical, store.nodes,
                "stored branches are the canonical ones"
            );
        }
        // A fresh trie over the persisted store agrees (no hidden cache state).
        let root = Trie::new(0).root(&store).unwrap();
        (root, store)
    }

    #[test]
    fn empty_and_single() {
        let (r, s) = run(&[]);
        assert_eq!(r, empty_root());
        assert!(s.nodes.is_empty());
        let (r, _) = run(&[(1, Some(1)), (1, None)]);
        assert_eq!(r, empty_root());
    }

    #[test]
    fn removal_collapses_to_canonical_shape() {
        let ops: Vec<_> = (0..500).map(|i| (i, Some(i))).collect();
        let (_, big) = run(&ops);
        let mut ops2 = ops.clone();
        ops2.extend((10..500).map(|i| (i, None)));
        let (r2, s2) = run(&ops2);
        let (r3, s3) = run(&(0..10).map(|i| (i, Some(i))).collect::<Vec<_>>());
        assert_eq!(r2, r3);
        assert_eq!(s2.nodes, s3.nodes, "same key set, same stored branches");
        assert!(big.nodes.len() > s3.nodes.len());
    }

    #[test]
    fn proofs_verify_and_reject() {
        let ops: Vec<_> = (0..300).map(|i| (i, Some(i * 7))).collect();
        let (root, store) = run(&ops);
        let mut t = Trie::new(1);
        for i in 0..300 {
            let p = t.prove(&store, &h(i)).unwrap();
            p.verify(&root, Some(&h(i * 7))).unwrap();
            assert!(p.verify(&root, Some(&h(i * 7 + 1))).is_err());
            assert!(p.verify(&root, None).is_err());
            let mut other = [0u8; 32];
            other[0] = 1;
            assert!(p.verify(&other, Some(&h(i * 7))).is_err());
        }
        for i in 300..400 {
            let p = t.prove(&store, &h(i)).unwrap();
            p.verify(&root, None).unwrap();
            assert!(p.verify(&root, Some(&h(0))).is_err());
        }
    }

    /// Like [`run`], but holds the writes of most steps in memory (storing
    /// them with `writes`/`written` every `every` steps) and, after each step, buffers a junk
    /// change and resets it away, as a failed batch would.
    fn run_held(ops: &[(u64, Option<u64>)], every: usize) -> (Hash, MemStore) {
        let mut store = MemStore::default();
        let mut trie = Trie::new(1);
        let mut model = BTreeMap::new();
        for (step, &(k, v)) in ops.iter().enumerate() {
            apply_op(&mut trie, &store, &mut model, k, v);
            let root = trie.root(&store).unwrap();
            if step % every == 0 {
                store.apply(trie.writes());
                trie.written();
            } else {
                trie.hold();
            }
            let sorted: Vec<_> = model.iter().map(|(a, b)| (*a, *b)).collect();
            assert_eq!(root, root_from_sorted(&sorted));
            // A failed batch: its change is dropped, the held ones stay.
            trie.insert(&store, &h(1_000_000 + k), &h(0)).unwrap();
            trie.root(&store).unwrap();
            trie.reset();
            assert_eq!(
                trie.root(&store).unwrap(),
                root,
                "reset kept the held branches"
            );
            let p = trie.prove(&store, &h(k)).unwrap();
            p.verify(&root, model.get(&h(k))).unwrap();
        }
        trie.root(&store).unwrap();
        store.apply(trie.writes());
        trie.written();
        assert_eq!(trie.held_len(), 0);
        let sorted: Vec<_> = model.iter().map(|(a, b)| (*a, *b)).collect();
        let canonical: BTreeMap<_, _> = crate::branches_from_sorted(&sorted).into_iter().collect();
        assert_eq!(
            canonical, store.nodes,
            "held then taken: the canonical branches"
        );
        (Trie::new(0).root(&store).unwrap(), store)
    }

    proptest! {
        #[test]
        fn held_writes_match_scratch(ops in prop::collection::vec((0u64..64, prop::option::weighted(0.7, 0u64..4)), 0..200), every in 1usize..20) {
            let (held, _) = run_held(&ops, every);
            let (direct, _) = run(&ops);
            prop_assert_eq!(held, direct);
        }

        #[test]
        fn incremental_matches_scratch(ops in prop::collection::vec((0u64..64, prop::option::weighted(0.7, 0u64..4)), 0..200)) {
            run(&ops);
        }

        #[test]
        fn order_independent(mut keys in prop::collection::btree_set(0u64..10_000, 0..100), seed in any::<u64>()) {
            let a: Vec<_> = keys.iter().map(|&k| (k, Some(k))).collect();
            let mut b = a.clone();
            // A different history: a deterministic shuffle plus junk that is removed again.
            let n = b.len().max(1);
            for i in 0..b.len() { b.swap(i, (seed as usize).wrapping_mul(i + 7) % n); }
            let junk: Vec<u64> = (20_000..20_030).collect();
            b.extend(junk.iter().map(|&k| (k, Some(1))));
            b.extend(junk.iter().map(|&k| (k, None)));
            let (ra, sa) = run(&a);
            let (rb, sb) = run(&b);
            prop_assert_eq!(ra, rb);
            prop_assert_eq!(sa.nodes, sb.nodes);
            keys.clear();
        }
    }
}
