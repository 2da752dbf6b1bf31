//! Inclusion and exclusion proofs.

use serde::{Deserialize, Serialize};

use crate::{BRANCH_TAG, Hash, leaf_hash, nibble};

/// One branch on the way from the root to a key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofStep {
    /// Present-slot bitmap of the branch.
    pub present: u16,
    /// Hashes of the present slots other than the one on the key's path, in
    /// slot order.
    pub siblings: Vec<Hash>,
}

/// What the key's slot holds in the deepest branch of the proof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Terminal {
    /// The key's own leaf (inclusion).
    Found,
    /// Nothing (exclusion).
    Empty,
    /// Another key's leaf sharing the prefix (exclusion).
    Other {
        /// That key.
        key: Hash,
        /// Its leaf hash.
        hash: Hash,
    },
}

/// A proof that `key` maps to a value hash, or to nothing, under a root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    /// The key the proof is about.
    pub key: Hash,
    /// Branches from the root (index 0) down.
    pub steps: Vec<ProofStep>,
    /// The key's slot in the last branch.
    pub terminal: Terminal,
}

/// Why a proof does not check out.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProofError {
    /// The proof shape is inconsistent (bitmaps, sibling counts, terminal).
    #[error("malformed proof: {0}")]
    Malformed(&'static str),
    /// The proof says present where absent was claimed, or the reverse.
    #[error("proof is for {0}")]
    WrongClaim(&'static str),
    /// The recomputed root differs.
    #[error("recomputed root does not match")]
    RootMismatch,
}

impl Proof {
    /// Checks the proof against `root`: with `Some(value_hash)` that the key
    /// maps to it, with `None` that the key is absent.
    pub fn verify(&self, root: &Hash, value_hash: Option<&Hash>) -> Result<(), ProofError> {
        let last = self
            .steps
            .len()
            .checked_sub(1)
            .ok_or(ProofError::Malformed("no steps"))?;
        if last >= crate::MAX_DEPTH {
            return Err(ProofError::Malformed("too deep"));
        }
        let mut cur: Option<Hash> = match (&self.terminal, value_hash) {
            (Terminal::Found, Some(v)) => Some(leaf_hash(&self.key, v)),
            (Terminal::Found, None) => return Err(ProofError::WrongClaim("a present key")),
            (_, Some(_)) => return Err(ProofError::WrongClaim("an absent key")),
            (Terminal::Empty, None) => None,
            (Terminal::Other { key, hash }, None) => {
                if *key == self.key || (0..=last).any(|d| nibble(key, d) != nibble(&self.key, d)) {
                    return Err(ProofError::Malformed("other leaf not on the key's path"));
                }
                Some(*hash)
            }
        };
        for (depth, step) in self.steps.iter().enumerate().rev() {
            let slot = nibble(&self.key, depth);
            let bit = 1u16 << slot;
            if (step.present & bit != 0) != cur.is_some() {
                return Err(ProofError::Malformed("bitmap disagrees with path slot"));
            }
            if depth < last && cur.is_none() {
                return Err(ProofError::Malformed("empty slot above the last step"));
            }
            let others = (step.present & !bit).count_ones() as usize;
            if step.siblings.len() != others {
                return Err(ProofError::Malformed("sibling count"));
            }
            let mut h = blake3::Hasher::new();
            h.update(&[BRANCH_TAG]);
            h.update(&step.present.to_le_bytes());
            let mut sib = step.siblings.iter();
            for i in 0..16 {
                if step.present & (1 << i) == 0 {
                    continue;
                }
                if i == slot {
                    h.update(cur.as_ref().expect("checked above"));
                } else {
                    h.update(sib.next().expect("counted above"));
                }
            }
            cur = Some(*h.finalize().as_bytes());
        }
        if cur.as_ref() == Some(root) {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        }
    }
}
