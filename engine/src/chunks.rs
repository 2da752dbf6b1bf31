//! Splitting write data into chunks, and payloads whose hashes are known.
//!
//! Hashing happens where data enters (the FUSE handler thread, or a network
//! receiver verifying what a worker sent), never on the single commit
//! thread: a [`Payload`] can only be built by hashing or verifying, so the
//! pipeline only compares hashes.

use crate::errno::Errno;
use crate::op::ChunkRef;
use crate::store::Value;
use crate::types::{CHUNK_MAX, Hash};

/// Chunk bytes whose BLAKE3 hashes have been computed or checked, each
/// held in the store's value type so that storing it copies nothing.
#[derive(Clone, Debug, Default)]
pub struct Payload {
    pieces: Vec<(Hash, Value)>,
}

impl Payload {
    /// No payload (ops without data, or chunks the store already has).
    #[must_use]
    pub fn none() -> Payload {
        Payload::default()
    }

    /// Splits `data` into chunks. With a file offset, cuts fall on 64 KiB
    /// boundaries of the file, so equal files written the same way share
    /// chunks; appends (no offset known) cut every 64 KiB from the start.
    #[must_use]
    pub fn split(file_offset: Option<u64>, data: &[u8]) -> (Vec<ChunkRef>, Payload) {
        let mut refs = Vec::with_capacity(data.len() / CHUNK_MAX + 1);
        let mut pieces = Vec::with_capacity(refs.capacity());
        let mut pos = 0usize;
        let mut off = file_offset.unwrap_or(0);
        while pos < data.len() {
            let room = CHUNK_MAX - (off % CHUNK_MAX as u64) as usize;
            let n = room.min(data.len() - pos);
            let piece = &data[pos..pos + n];
            let hash = *blake3::hash(piece).as_bytes();
            refs.push(ChunkRef {
                hash,
                len: n as u32,
            });
            pieces.push((hash, Value::from(piece)));
            pos += n;
            off += n as u64;
        }
        (refs, Payload { pieces })
    }

    /// Checks received bytes against the refs they claim to be.
    pub fn verify<D: AsRef<[u8]>>(refs: &[ChunkRef], data: &[D]) -> Result<Payload, Errno> {
        if refs.len() != data.len() {
            return Err(Errno::EINVAL);
        }
        let mut pieces = Vec::with_capacity(refs.len());
        for (r, d) in refs.iter().zip(data) {
            let d = d.as_ref();
            if d.len() != r.len as usize || *blake3::hash(d).as_bytes() != r.hash {
                return Err(Errno::EINVAL);
            }
            pieces.push((r.hash, Value::from(d)));
        }
        Ok(Payload { pieces })
    }

    /// Whether the payload is exactly the chunks `refs` name.
    #[must_use]
    pub fn matches(&self, refs: &[ChunkRef]) -> bool {
        self.pieces.len() == refs.len()
            && self
                .pieces
                .iter()
                .zip(refs)
                .all(|((h, d), r)| *h == r.hash && d.len() == r.len as usize)
    }

    /// Whether there is no payload.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// Total bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.pieces.iter().map(|(_, d)| d.len()).sum()
    }

    /// The pieces.
    #[must_use]
    pub fn pieces(&self) -> &[(Hash, Value)] {
        &self.pieces
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_on_file_boundaries() {
        let data = vec![1u8; 200_000];
        let (refs, p) = Payload::split(Some(60_000), &data);
        let lens: Vec<u32> = refs.iter().map(|r| r.len).collect();
        assert_eq!(lens, [5536, 65536, 65536, 63392]);
        assert!(p.matches(&refs));
        assert_eq!(p.len(), 200_000);
        let raw: Vec<Vec<u8>> = p.pieces().iter().map(|(_, d)| d.to_vec()).collect();
        assert!(Payload::verify(&refs, &raw).is_ok());
        assert_eq!(Payload::verify(&refs, &[b"x"]).unwrap_err(), Errno::EINVAL);
        let (refs, _) = Payload::split(None, &data);
        assert_eq!(refs.len(), 4);
        assert_eq!(refs[0].len, 65536);
    }
}
