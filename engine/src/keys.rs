//! Key codec: every engine partition and how its keys are built.
//!
//! | space    | key                                   | value                    | hashed |
//! |----------|---------------------------------------|--------------------------|--------|
//! | meta     | ASCII name                            | see `meta` constants     | no     |
//! | nodes    | ino (u64 BE)                          | node record              | yes    |
//! | dirents  | parent ino (u64 BE) ‖ name bytes      | child ino (u64 BE) ‖ kind| yes    |
//! | extents  | ino (u64 BE) ‖ end offset (u64 BE)    | extent record            | yes    |
//! | xattrs   | ino (u64 BE) ‖ name bytes             | value bytes              | yes    |
//! | orphans  | ino (u64 BE)                          | empty                    | yes    |
//! | links    | ino ‖ parent ino ‖ name (reverse idx) | empty                    | no     |
//! | chunks   | BLAKE3 hash (32 B)                    | chunk bytes (<= 64 KiB)  | no     |
//! | merkle   | depth (u8) ‖ prefix nibbles           | branch                   | no     |
//! | log      | log index (u64 BE)                    | log entry (postcard)     | no     |
//! | dedupe   | client id (16 B) ‖ seq (u64 BE)       | ack (postcard)           | no     |
//! | merkle_delta | log index (u64 BE)                | leaf changes of a batch  | no     |
//!
//! Big-endian integers make byte order equal numeric order, so a prefix scan
//! of `dirents` returns a directory's names in bytewise order, and a scan of
//! `extents` from `(ino, off + 1)` starts at the first extent that ends past
//! `off`: extents are keyed by their *end* so overlap queries only scan
//! forward. "Hashed" spaces are the canonical state covered by the Merkle
//! root; the others are derived indexes, history, or content addressed by
//! hashes that the hashed records already contain.

use crate::types::{Hash, Ino};

/// An engine partition (a fjall keyspace).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
#[repr(u8)]
pub enum Space {
    /// Engine metadata.
    Meta = 0,
    /// Node records by inode number.
    Nodes = 1,
    /// Directory entries.
    Dirents = 2,
    /// File extents.
    Extents = 3,
    /// Extended attributes.
    Xattrs = 4,
    /// Unlinked nodes kept for open handles.
    Orphans = 5,
    /// Reverse index ino -> (parent, name).
    Links = 6,
    /// Content-addressed chunks.
    Chunks = 7,
    /// Merkle branches.
    Merkle = 8,
    /// The op log.
    Log = 9,
    /// The intent dedupe map.
    Dedupe = 10,
    /// Leaf changes of batches whose Merkle branches are held in memory
    /// (see `Engine`'s Merkle flush).
    MerkleDelta = 11,
}

impl Space {
    /// Every space, in tag order.
    pub const ALL: [Space; 12] = [
        Space::Meta,
        Space::Nodes,
        Space::Dirents,
        Space::Extents,
        Space::Xattrs,
        Space::Orphans,
        Space::Links,
        Space::Chunks,
        Space::Merkle,
        Space::Log,
        Space::Dedupe,
        Space::MerkleDelta,
    ];

    /// Keyspace name on disk.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Space::Meta => "meta",
            Space::Nodes => "nodes",
            Space::Dirents => "dirents",
            Space::Extents => "extents",
            Space::Xattrs => "xattrs",
            Space::Orphans => "orphans",
            Space::Links => "links",
            Space::Chunks => "chunks",
            Space::Merkle => "merkle",
            Space::Log => "log",
            Space::Dedupe => "dedupe",
            Space::MerkleDelta => "merkle_delta",
        }
    }

    /// Whether records of this space are canonical state under the Merkle root.
    #[must_use]
    pub fn hashed(self) -> bool {
        matches!(
            self,
            Space::Nodes | Space::Dirents | Space::Extents | Space::Xattrs | Space::Orphans
        )
    }

    /// Index into per-space arrays.
    #[must_use]
    pub fn idx(self) -> usize {
        self as usize
    }
}

/// Merkle key of a record: `BLAKE3(space tag ‖ key)`.
#[must_use]
pub fn record_key_hash(space: Space, key: &[u8]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(&[space as u8]);
    h.update(key);
    *h.finalize().as_bytes()
}

/// Merkle value hash of a record: `BLAKE3(value)`.
#[must_use]
pub fn record_value_hash(value: &[u8]) -> Hash {
    *blake3::hash(value).as_bytes()
}

/// `ino` as a key.
#[must_use]
pub fn ino_key(ino: Ino) -> [u8; 8] {
    ino.to_be_bytes()
}

/// Reads a big-endian u64 at the start of `b`.
#[must_use]
pub fn be_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

/// `parent ‖ name`.
#[must_use]
pub fn dirent_key(parent: Ino, name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + name.len());
    k.extend_from_slice(&parent.to_be_bytes());
    k.extend_from_slice(name);
    k
}

/// `ino ‖ end`.
#[must_use]
pub fn extent_key(ino: Ino, end: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&ino.to_be_bytes());
    k[8..].copy_from_slice(&end.to_be_bytes());
    k
}

/// `ino ‖ name`.
#[must_use]
pub fn xattr_key(ino: Ino, name: &[u8]) -> Vec<u8> {
    dirent_key(ino, name)
}

/// `ino ‖ parent ‖ name`.
#[must_use]
pub fn link_key(ino: Ino, parent: Ino, name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(16 + name.len());
    k.extend_from_slice(&ino.to_be_bytes());
    k.extend_from_slice(&parent.to_be_bytes());
    k.extend_from_slice(name);
    k
}

/// `client ‖ seq`.
#[must_use]
pub fn dedupe_key(id: &crate::types::IntentId) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..16].copy_from_slice(&id.client.0);
    k[16..].copy_from_slice(&id.seq.to_be_bytes());
    k
}

/// The smallest key greater than every key starting with `prefix`, or
/// `None` when no such key exists (all bytes 0xff).
#[must_use]
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Names of the `meta` keys.
pub mod meta {
    /// On-disk format version (u32 BE).
    pub const FORMAT: &[u8] = b"format";
    /// Workspace id (16 bytes).
    pub const WORKSPACE: &[u8] = b"workspace_id";
    /// Last applied log index (u64 BE).
    pub const APPLIED: &[u8] = b"applied_index";
    /// Next inode number to assign (u64 BE).
    pub const NEXT_INO: &[u8] = b"next_ino";
    /// `committed_at` of the last applied entry (i64 BE).
    pub const LAST_TIME: &[u8] = b"last_committed_at";
    /// Merkle root after the last applied entry (32 bytes).
    pub const ROOT: &[u8] = b"root";
    /// Number of live nodes, orphans included (u64 BE).
    pub const NODES: &[u8] = b"node_count";
    /// Sum of regular file sizes (u64 BE).
    pub const BYTES: &[u8] = b"logical_bytes";
    /// Present while a Merkle rebuild ([`crate::repair`]) is rewriting
    /// the branches: the store is not opened until one completes.
    pub const MERKLE_REBUILD: &[u8] = b"merkle_rebuild";
}
