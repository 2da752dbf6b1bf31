//! Root computation from a full record set, independent of any stored trie.
//! `hsfs-fsck` and the tests compare it with the incrementally kept root.

use crate::{Branch, Child, Hash, leaf_hash, nibble};

/// Root of the trie holding `items` (sorted by key, keys unique).
///
/// # Panics
/// If `items` is not strictly sorted by key.
#[must_use]
pub fn root_from_sorted(items: &[(Hash, Hash)]) -> Hash {
    assert!(
        items.windows(2).all(|w| w[0].0 < w[1].0),
        "root_from_sorted needs strictly sorted keys"
    );
    branch(items, 0).hash()
}

fn branch(items: &[(Hash, Hash)], depth: usize) -> Branch {
    let mut b = Branch::default();
    let mut rest = items;
    while let Some((first, _)) = rest.first() {
        let nib = nibble(first, depth);
        let n = rest
            .iter()
            .take_while(|(k, _)| nibble(k, depth) == nib)
            .count();
        let (group, tail) = rest.split_at(n);
        b.children[nib] = match group {
            [(k, v)] => Child::Leaf {
                key: *k,
                hash: leaf_hash(k, v),
            },
            _ => Child::Branch {
                hash: branch(group, depth + 1).hash(),
            },
        };
        rest = tail;
    }
    b
}

/// Every branch of the trie holding `items` (sorted, unique keys), with its
/// position, sorted by position. Stored branches must equal these exactly;
/// `hsfs-fsck` compares them to find stale or missing Merkle nodes.
#[must_use]
pub fn branches_from_sorted(items: &[(Hash, Hash)]) -> Vec<(crate::NodePath, Branch)> {
    assert!(
        items.windows(2).all(|w| w[0].0 < w[1].0),
        "branches_from_sorted needs strictly sorted keys"
    );
    let mut out = Vec::new();
    let root = collect(items, 0, &mut out);
    if root.count() > 0 {
        out.push((crate::NodePath::ROOT, root));
    }
    out.sort_by_key(|a| a.0);
    out
}

fn collect(
    items: &[(Hash, Hash)],
    depth: usize,
    out: &mut Vec<(crate::NodePath, Branch)>,
) -> Branch {
    let mut b = Branch::default();
    let mut rest = items;
    while let Some((first, _)) = rest.first() {
        let nib = nibble(first, depth);
        let n = rest
            .iter()
            .take_while(|(k, _)| nibble(k, depth) == nib)
            .count();
        let (group, tail) = rest.split_at(n);
        b.children[nib] = match group {
            [(k, v)] => Child::Leaf {
                key: *k,
                hash: leaf_hash(k, v),
            },
            _ => {
                let child = collect(group, depth + 1, out);
                let hash = child.hash();
                out.push((crate::NodePath::of_key(first, depth + 1), child));
                Child::Branch { hash }
            }
        };
        rest = tail;
    }
    b
}
