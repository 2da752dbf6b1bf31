//! Branch nodes and their byte encoding.

use crate::{BRANCH_TAG, Hash};

/// One slot of a branch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Child {
    /// No key below this slot.
    #[default]
    Empty,
    /// Exactly one key below this slot.
    Leaf {
        /// The full key hash (needed to split the slot on insert).
        key: Hash,
        /// `leaf_hash(key, value_hash)`.
        hash: Hash,
    },
    /// Two or more keys below this slot, held by the branch one level down.
    Branch {
        /// That branch's hash.
        hash: Hash,
    },
}

impl Child {
    /// The hash this slot contributes to its branch, if any.
    #[must_use]
    pub fn hash(&self) -> Option<&Hash> {
        match self {
            Child::Empty => None,
            Child::Leaf { hash, .. } | Child::Branch { hash } => Some(hash),
        }
    }
}

/// A branch: sixteen slots, one per nibble value.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Branch {
    /// Slots indexed by nibble.
    pub children: [Child; 16],
}

/// A stored branch could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("corrupt merkle branch encoding: {0}")]
pub struct DecodeError(pub &'static str);

impl Branch {
    /// Bit i set when slot i is not empty.
    #[must_use]
    pub fn present_bitmap(&self) -> u16 {
        self.children
            .iter()
            .enumerate()
            .filter(|(_, c)| !matches!(c, Child::Empty))
            .fold(0u16, |m, (i, _)| m | (1 << i))
    }

    /// Number of non-empty slots.
    #[must_use]
    pub fn count(&self) -> usize {
        self.present_bitmap().count_ones() as usize
    }

    /// H(0x01 || present bitmap LE || child hashes in slot order).
    #[must_use]
    pub fn hash(&self) -> Hash {
        let mut h = blake3::Hasher::new();
        h.update(&[BRANCH_TAG]);
        h.update(&self.present_bitmap().to_le_bytes());
        for c in &self.children {
            if let Some(ch) = c.hash() {
                h.update(ch);
            }
        }
        *h.finalize().as_bytes()
    }

    /// Encoding: present bitmap (u16 LE), leaf bitmap (u16 LE), then per
    /// present slot in order: `hash` (branch) or `key || hash` (leaf).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut leaf_map = 0u16;
        for (i, c) in self.children.iter().enumerate() {
            if matches!(c, Child::Leaf { .. }) {
                leaf_map |= 1 << i;
            }
        }
        let mut out = Vec::with_capacity(4 + self.count() * 64);
        out.extend_from_slice(&self.present_bitmap().to_le_bytes());
        out.extend_from_slice(&leaf_map.to_le_bytes());
        for c in &self.children {
            match c {
                Child::Empty => {}
                Child::Leaf { key, hash } => {
                    out.extend_from_slice(key);
                    out.extend_from_slice(hash);
                }
                Child::Branch { hash } => out.extend_from_slice(hash),
            }
        }
        out
    }

    /// Inverse of [`Branch::encode`]; rejects trailing or missing bytes.
    pub fn decode(mut bytes: &[u8]) -> Result<Branch, DecodeError> {
        let mut take = |n: usize| -> Result<&[u8], DecodeError> {
            if bytes.len() < n {
                return Err(DecodeError("truncated"));
            }
            let (a, b) = bytes.split_at(n);
            bytes = b;
            Ok(a)
        };
        let present = u16::from_le_bytes(take(2)?.try_into().expect("2 bytes"));
        let leaves = u16::from_le_bytes(take(2)?.try_into().expect("2 bytes"));
        if leaves & !present != 0 {
            return Err(DecodeError("leaf bit set on an empty slot"));
        }
        let mut b = Branch::default();
        for i in 0..16 {
            if present & (1 << i) == 0 {
                continue;
            }
            b.children[i] = if leaves & (1 << i) != 0 {
                let key = take(32)?.try_into().expect("32 bytes");
                let hash = take(32)?.try_into().expect("32 bytes");
                Child::Leaf { key, hash }
            } else {
                Child::Branch {
                    hash: take(32)?.try_into().expect("32 bytes"),
                }
            };
        }
        if !bytes.is_empty() {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(b)
    }

    /// The only occupied slot, if exactly one is occupied.
    #[must_use]
    pub fn single_child(&self) -> Option<(usize, Child)> {
        if self.count() != 1 {
            return None;
        }
        self.children
            .iter()
            .enumerate()
            .find(|(_, c)| !matches!(c, Child::Empty))
            .map(|(i, c)| (i, *c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_roundtrip() {
        let mut b = Branch::default();
        b.children[3] = Child::Leaf {
            key: [1; 32],
            hash: [2; 32],
        };
        b.children[15] = Child::Branch { hash: [9; 32] };
        let enc = b.encode();
        assert_eq!(enc.len(), 4 + 64 + 32);
        assert_eq!(Branch::decode(&enc), Ok(b));
        assert!(Branch::decode(&enc[..enc.len() - 1]).is_err());
        let mut longer = enc.clone();
        longer.push(0);
        assert!(Branch::decode(&longer).is_err());
    }
}
