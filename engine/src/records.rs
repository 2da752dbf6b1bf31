//! Byte layouts of state records (documented in docs/FORMAT.md).
//!
//! These bytes are hashed into the Merkle root, so the encoding is fixed,
//! explicit and versioned rather than derived from a serializer.

use crate::keys::be_u64;
use crate::types::{FileKind, Hash, Ino, Node, NodeId};

/// Version byte of node records.
pub const NODE_RECORD_V1: u8 = 1;
const NODE_FIXED: usize = 90;

/// A record could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("corrupt {what} record: {why}")]
pub struct RecordError {
    /// Record type.
    pub what: &'static str,
    /// Problem.
    pub why: &'static str,
}

fn err(what: &'static str, why: &'static str) -> RecordError {
    RecordError { what, why }
}

/// Encodes a node record (the key carries the ino).
#[must_use]
pub fn encode_node(n: &Node) -> Vec<u8> {
    let mut v = Vec::with_capacity(NODE_FIXED + n.target.len());
    v.push(NODE_RECORD_V1);
    v.push(n.kind as u8);
    v.extend_from_slice(&n.id.0);
    v.extend_from_slice(&n.perm.to_be_bytes());
    v.extend_from_slice(&n.uid.to_be_bytes());
    v.extend_from_slice(&n.gid.to_be_bytes());
    v.extend_from_slice(&n.size.to_be_bytes());
    v.extend_from_slice(&n.nlink.to_be_bytes());
    for t in [n.atime, n.mtime, n.ctime, n.btime] {
        v.extend_from_slice(&t.to_be_bytes());
    }
    v.extend_from_slice(&n.parent.to_be_bytes());
    v.extend_from_slice(&n.entries.to_be_bytes());
    v.extend_from_slice(&n.target);
    debug_assert_eq!(v.len(), NODE_FIXED + n.target.len());
    v
}

/// Decodes a node record stored under `ino`.
pub fn decode_node(ino: Ino, b: &[u8]) -> Result<Node, RecordError> {
    const W: &str = "node";
    if b.len() < NODE_FIXED {
        return Err(err(W, "truncated"));
    }
    if b[0] != NODE_RECORD_V1 {
        return Err(err(W, "unknown record version"));
    }
    let kind = FileKind::from_u8(b[1]).ok_or(err(W, "unknown kind"))?;
    let u32_at = |o: usize| u32::from_be_bytes(b[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| be_u64(&b[o..]).expect("8 bytes");
    let i64_at = |o: usize| u64_at(o) as i64;
    let node = Node {
        ino,
        id: NodeId(b[2..18].try_into().expect("16 bytes")),
        kind,
        perm: u32_at(18),
        uid: u32_at(22),
        gid: u32_at(26),
        size: u64_at(30),
        nlink: u32_at(38),
        atime: i64_at(42),
        mtime: i64_at(50),
        ctime: i64_at(58),
        btime: i64_at(66),
        parent: u64_at(74),
        entries: u64_at(82),
        target: b[NODE_FIXED..].to_vec(),
    };
    if node.perm & !0o7777 != 0 {
        return Err(err(W, "mode has bits outside 07777"));
    }
    if kind != FileKind::Symlink && !node.target.is_empty() {
        return Err(err(W, "target on a non-symlink"));
    }
    Ok(node)
}

/// Encodes a directory entry value.
#[must_use]
pub fn encode_dirent(child: Ino, kind: FileKind) -> [u8; 9] {
    let mut v = [0u8; 9];
    v[..8].copy_from_slice(&child.to_be_bytes());
    v[8] = kind as u8;
    v
}

/// Decodes a directory entry value.
pub fn decode_dirent(b: &[u8]) -> Result<(Ino, FileKind), RecordError> {
    if b.len() != 9 {
        return Err(err("dirent", "wrong length"));
    }
    let kind = FileKind::from_u8(b[8]).ok_or(err("dirent", "unknown kind"))?;
    Ok((be_u64(b).expect("8 bytes"), kind))
}

/// A contiguous byte range of a file backed by part of one chunk.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Extent {
    /// First file offset covered.
    pub start: u64,
    /// One past the last file offset covered (the key).
    pub end: u64,
    /// Offset of `start` inside the chunk.
    pub chunk_off: u32,
    /// The chunk.
    pub hash: Hash,
}

impl Extent {
    /// Length in bytes.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether the extent is empty (never stored).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// Whether `next` continues this extent in the same chunk, so the two
    /// must be merged by normalization.
    #[must_use]
    pub fn mergeable(&self, next: &Extent) -> bool {
        self.end == next.start
            && self.hash == next.hash
            && u64::from(self.chunk_off) + self.len() == u64::from(next.chunk_off)
    }
}

/// Encodes an extent value: length (u32 BE) ‖ chunk offset (u32 BE) ‖ hash.
#[must_use]
pub fn encode_extent(e: &Extent) -> [u8; 40] {
    let mut v = [0u8; 40];
    let len = u32::try_from(e.len()).expect("extent longer than a chunk");
    v[..4].copy_from_slice(&len.to_be_bytes());
    v[4..8].copy_from_slice(&e.chunk_off.to_be_bytes());
    v[8..].copy_from_slice(&e.hash);
    v
}

/// Decodes an extent from its key (`ino ‖ end`) and value.
pub fn decode_extent(key: &[u8], v: &[u8]) -> Result<Extent, RecordError> {
    const W: &str = "extent";
    if key.len() != 16 || v.len() != 40 {
        return Err(err(W, "wrong length"));
    }
    let end = be_u64(&key[8..]).expect("8 bytes");
    let len = u64::from(u32::from_be_bytes(v[..4].try_into().expect("4 bytes")));
    if len == 0 || len > crate::types::CHUNK_MAX as u64 || len > end {
        return Err(err(W, "bad length"));
    }
    Ok(Extent {
        start: end - len,
        end,
        chunk_off: u32::from_be_bytes(v[4..8].try_into().expect("4 bytes")),
        hash: v[8..].try_into().expect("32 bytes"),
    })
}

/// Bytes of one leaf change in a Merkle delta record (`Space::MerkleDelta`):
/// record key hash (32), then 1 and the value hash (32) for an insert or
/// 0 and 32 zero bytes for a removal.
pub const DELTA_ITEM: usize = 65;

/// Appends one leaf change to a Merkle delta record.
pub fn encode_delta_item(out: &mut Vec<u8>, key: &Hash, value: Option<&Hash>) {
    out.extend_from_slice(key);
    match value {
        Some(v) => {
            out.push(1);
            out.extend_from_slice(v);
        }
        None => {
            out.push(0);
            out.extend_from_slice(&[0; 32]);
        }
    }
}

/// The leaf changes of a Merkle delta record, in the order they were made.
pub fn decode_delta(b: &[u8]) -> Result<Vec<(Hash, Option<Hash>)>, RecordError> {
    if !b.len().is_multiple_of(DELTA_ITEM) {
        return Err(err("merkle delta", "length is not a multiple of 65"));
    }
    b.chunks_exact(DELTA_ITEM)
        .map(|c| {
            let key: Hash = c[..32].try_into().expect("32 bytes");
            let value: Hash = c[33..].try_into().expect("32 bytes");
            match c[32] {
                1 => Ok((key, Some(value))),
                0 if value == [0; 32] => Ok((key, None)),
                _ => Err(err("merkle delta", "bad change tag")),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_roundtrip() {
        let n = Node {
            ino: 7,
            id: NodeId([3; 16]),
            kind: FileKind::Symlink,
            perm: 0o777,
            uid: 1000,
            gid: 100,
            size: 3,
            nlink: 1,
            atime: -5,
            mtime: 6,
            ctime: 7,
            btime: 8,
            parent: 0,
            entries: 0,
            target: b"a/b".to_vec(),
        };
        let enc = encode_node(&n);
        assert_eq!(decode_node(7, &enc), Ok(n));
        assert!(decode_node(7, &enc[..10]).is_err());
    }

    #[test]
    fn extent_roundtrip() {
        let e = Extent {
            start: 10,
            end: 110,
            chunk_off: 5,
            hash: [9; 32],
        };
        let k = crate::keys::extent_key(1, e.end);
        assert_eq!(decode_extent(&k, &encode_extent(&e)), Ok(e));
    }

    #[test]
    fn delta_roundtrip_and_rejects() {
        let mut d = Vec::new();
        encode_delta_item(&mut d, &[1; 32], Some(&[2; 32]));
        encode_delta_item(&mut d, &[3; 32], None);
        assert_eq!(
            decode_delta(&d),
            Ok(vec![([1; 32], Some([2; 32])), ([3; 32], None)])
        );
        assert!(decode_delta(&d[..64]).is_err(), "torn item");
        let mut bad = d.clone();
        bad[32] = 7;
        assert!(decode_delta(&bad).is_err(), "unknown tag");
        bad[32] = 0;
        assert!(decode_delta(&bad).is_err(), "a removal with a value");
    }
}
