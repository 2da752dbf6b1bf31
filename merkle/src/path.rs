//! Addresses of branches inside the trie.

use crate::{Hash, MAX_DEPTH, nibble};

/// The position of a branch: its depth in nibbles and the key prefix leading
/// to it. Nibbles past `depth` are always zero so equal positions compare
/// equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodePath {
    depth: u8,
    prefix: Hash,
}

impl NodePath {
    /// The root branch.
    pub const ROOT: NodePath = NodePath {
        depth: 0,
        prefix: [0; 32],
    };

    /// The branch at `depth` on the way to `key`.
    #[must_use]
    pub fn of_key(key: &Hash, depth: usize) -> NodePath {
        assert!(depth <= MAX_DEPTH, "trie depth {depth} exceeds {MAX_DEPTH}");
        let mut prefix = [0u8; 32];
        let full = depth / 2;
        prefix[..full].copy_from_slice(&key[..full]);
        if depth % 2 == 1 {
            prefix[full] = key[full] & 0xf0;
        }
        NodePath {
            depth: depth as u8,
            prefix,
        }
    }

    /// Depth in nibbles (0 for the root).
    #[must_use]
    pub fn depth(&self) -> usize {
        self.depth as usize
    }

    /// The child position reached through slot `nib`.
    #[must_use]
    pub fn child(&self, nib: usize) -> NodePath {
        debug_assert!(nib < 16);
        let d = self.depth();
        assert!(d < MAX_DEPTH, "cannot descend below depth {MAX_DEPTH}");
        let mut prefix = self.prefix;
        if d.is_multiple_of(2) {
            prefix[d / 2] = (nib as u8) << 4;
        } else {
            prefix[d / 2] |= nib as u8;
        }
        NodePath {
            depth: self.depth + 1,
            prefix,
        }
    }

    /// The parent position and the slot of this position in it; `None` at
    /// the root.
    #[must_use]
    pub fn parent(&self) -> Option<(NodePath, usize)> {
        let d = self.depth().checked_sub(1)?;
        Some((NodePath::of_key(&self.prefix, d), nibble(&self.prefix, d)))
    }

    /// Whether `key` lies below this position.
    #[must_use]
    pub fn contains(&self, key: &Hash) -> bool {
        (0..self.depth()).all(|i| nibble(key, i) == nibble(&self.prefix, i))
    }

    /// Storage key: one depth byte followed by `ceil(depth / 2)` prefix bytes.
    /// Sorting by it groups branches by depth, shallow first.
    #[must_use]
    pub fn to_key(&self) -> Vec<u8> {
        let n = self.depth().div_ceil(2);
        let mut k = Vec::with_capacity(1 + n);
        k.push(self.depth);
        k.extend_from_slice(&self.prefix[..n]);
        k
    }

    /// Parses a storage key made by [`NodePath::to_key`].
    #[must_use]
    pub fn from_key(key: &[u8]) -> Option<NodePath> {
        let (&depth, rest) = key.split_first()?;
        let d = depth as usize;
        if d > MAX_DEPTH || rest.len() != d.div_ceil(2) {
            return None;
        }
        let mut prefix = [0u8; 32];
        prefix[..rest.len()].copy_from_slice(rest);
        if d % 2 == 1 && prefix[d / 2] & 0x0f != 0 {
            return None;
        }
        Some(NodePath { depth, prefix })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_roundtrip_and_children() {
        let key = *blake3::hash(b"x").as_bytes();
        for d in 0..=MAX_DEPTH {
            let p = NodePath::of_key(&key, d);
            assert!(p.contains(&key));
            assert_eq!(NodePath::from_key(&p.to_key()), Some(p));
            if d < MAX_DEPTH {
                assert_eq!(p.child(nibble(&key, d)), NodePath::of_key(&key, d + 1));
            }
        }
        assert_eq!(
            NodePath::from_key(&[3, 0xab, 0xc1]),
            None,
            "stray low nibble"
        );
        assert_eq!(NodePath::from_key(&[2, 0xab, 0xc0]), None, "wrong length");
    }
}
