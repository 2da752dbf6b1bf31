//! A history-independent, authenticated 16-ary trie over 256-bit keys.
//!
//! hsfs hashes every canonical state record (node, directory entry, extent,
//! xattr, orphan) to a 256-bit *key hash* and a 256-bit *value hash*. This crate
//! arranges those pairs in a radix-16 trie whose shape depends only on the set
//! of keys, never on the order they were inserted or removed in:
//!
//! * a **branch** exists at the root and at every nibble prefix shared by at
//!   least two keys;
//! * a **leaf** sits in the slot of the deepest branch whose prefix it shares,
//!   at the key's next nibble.
//!
//! Because record keys are BLAKE3 outputs, the expected depth is
//! `log16(n) + 1` (about 5 for a million records), so an update touches a
//! handful of branches: O(log n) work per changed record.
//!
//! Hashes (all BLAKE3):
//! * leaf   = H(0x00 || key || value_hash)
//! * branch = H(0x01 || present_bitmap as u16 LE || child hashes in slot order)
//!
//! The empty trie is a root branch with no children.
//!
//! The crate is storage agnostic: branches are loaded through [`NodeStore`] and
//! modified branches are handed back by [`Trie::writes`] for the caller to
//! persist in the same atomic batch as the state they authenticate.

mod node;
mod path;
mod proof;
mod scratch;
mod trie;

pub use node::{Branch, Child, DecodeError};
pub use path::NodePath;
pub use proof::{Proof, ProofError, ProofStep, Terminal};
pub use scratch::{branches_from_sorted, root_from_sorted};
pub use trie::{MemStore, NodeStore, Trie, TrieError};

/// A BLAKE3 digest.
pub type Hash = [u8; 32];

/// Domain tag of a leaf preimage.
pub const LEAF_TAG: u8 = 0x00;
/// Domain tag of a branch preimage.
pub const BRANCH_TAG: u8 = 0x01;

/// Leaf hash of a (key, value hash) pair.
#[must_use]
pub fn leaf_hash(key: &Hash, value_hash: &Hash) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(&[LEAF_TAG]);
    h.update(key);
    h.update(value_hash);
    *h.finalize().as_bytes()
}

/// Root hash of the empty trie.
#[must_use]
pub fn empty_root() -> Hash {
    Branch::default().hash()
}

/// The `depth`-th nibble (4 bits) of a key, most significant first.
#[inline]
#[must_use]
pub fn nibble(key: &Hash, depth: usize) -> usize {
    let b = key[depth / 2];
    if depth.is_multiple_of(2) {
        (b >> 4) as usize
    } else {
        (b & 0x0f) as usize
    }
}

/// Maximum trie depth in nibbles (a 256-bit key has 64).
pub const MAX_DEPTH: usize = 64;
