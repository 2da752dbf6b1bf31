//! File content ops: write and truncate, over normalized extents.
//!
//! Invariant (checked by fsck): a file's extents are sorted, non-empty,
//! non-overlapping, end at or before the file size, and no two neighbours
//! are mergeable (same chunk, contiguous in file and chunk). Ranges without
//! an extent read as zeros.
//!
//! Normalization holds by construction, so no merge step exists: a write
//! adds extents that each cover a whole chunk from chunk offset 0, and
//! `punch` only leaves pieces of an old extent on either side of the
//! punched range. A new extent X after a piece L would need
//! `L.chunk_off + L.len == 0`; a piece R after a new extent X of the same
//! chunk would need `R.chunk_off == X.len ==` the chunk's length, leaving R
//! empty. Neither can happen. An op that shares extents between files
//! (copy_file_range) would have to add a merge step.

use super::{Fail, State};
use crate::errno::Errno;
use crate::keys::{self, Space};
use crate::op::{ChunkRef, OpResult, WriteAt};
use crate::records::{self, Extent};
use crate::txn::Txn;
use crate::types::{CHUNK_MAX, FileKind, Ino, MAX_FILE_SIZE};

/// Extents of `ino` that overlap `[start, end)`, in order.
pub fn extents_in(txn: &Txn, ino: Ino, start: u64, end: u64) -> Result<Vec<Extent>, Fail> {
    let lo = keys::extent_key(ino, start.saturating_add(1)).to_vec();
    let hi = keys::prefix_end(&keys::ino_key(ino));
    let mut out = Vec::new();
    for r in txn.scan(Space::Extents, lo, hi) {
        let (k, v) = r?;
        let e = records::decode_extent(&k, &v)?;
        if e.start >= end {
            break;
        }
        out.push(e);
    }
    Ok(out)
}

fn put_extent(txn: &mut Txn, ino: Ino, e: &Extent) {
    txn.put(
        Space::Extents,
        keys::extent_key(ino, e.end).to_vec(),
        records::encode_extent(e).to_vec(),
    );
}

fn del_extent(txn: &mut Txn, ino: Ino, e: &Extent) {
    txn.delete(Space::Extents, keys::extent_key(ino, e.end).to_vec());
}

/// Removes `[start, end)` from the extent map, trimming extents that stick
/// out on either side.
fn punch(txn: &mut Txn, ino: Ino, start: u64, end: u64) -> Result<(), Fail> {
    for e in extents_in(txn, ino, start, end)? {
        del_extent(txn, ino, &e);
        if e.start < start {
            let left = Extent { end: start, ..e };
            put_extent(txn, ino, &left);
        }
        if e.end > end {
            let right = Extent {
                start: end,
                chunk_off: e.chunk_off + (end - e.start) as u32,
                ..e
            };
            put_extent(txn, ino, &right);
        }
    }
    Ok(())
}

pub(super) fn write(
    st: &mut State,
    ino: Ino,
    at: WriteAt,
    chunks: &[ChunkRef],
) -> Result<OpResult, Fail> {
    let mut n = st.get(ino)?;
    match n.kind {
        FileKind::File => {}
        FileKind::Dir => return Err(Errno::EISDIR.into()),
        _ => return Err(Errno::EINVAL.into()),
    }
    if chunks
        .iter()
        .any(|c| c.len == 0 || c.len as usize > CHUNK_MAX)
    {
        return Err(Errno::EINVAL.into());
    }
    let total: u64 = chunks.iter().map(|c| u64::from(c.len)).sum();
    let start = match at {
        WriteAt::Offset(o) => o,
        WriteAt::Append => n.size,
    };
    let end = start
        .checked_add(total)
        .filter(|&e| e <= MAX_FILE_SIZE)
        .ok_or(Errno::EFBIG)?;
    if total == 0 {
        return Ok(OpResult::Written {
            offset: start,
            len: 0,
        });
    }
    for c in chunks {
        // The committer (leader) or the replayer (worker) verified and
        // stored every chunk before apply; a missing one means this replica
        // cannot apply the op.
        if !st.txn.contains(Space::Chunks, &c.hash)? {
            return Err(Fail::Corrupt(format!(
                "chunk {} of a write to inode {ino} is not in the store",
                hex::encode(c.hash)
            )));
        }
    }
    punch(st.txn, ino, start, end)?;
    let mut off = start;
    for c in chunks {
        let e = Extent {
            start: off,
            end: off + u64::from(c.len),
            chunk_off: 0,
            hash: c.hash,
        };
        put_extent(st.txn, ino, &e);
        off = e.end;
    }
    if end > n.size {
        st.meta.bytes += end - n.size;
        n.size = end;
    }
    n.mtime = st.now;
    n.ctime = st.now;
    st.set(n);
    Ok(OpResult::Written {
        offset: start,
        len: total,
    })
}

/// Sets the size of a regular file, dropping data past it; updates mtime
/// and ctime.
pub(super) fn truncate(st: &mut State, ino: Ino, size: u64) -> Result<(), Fail> {
    let mut n = st.get(ino)?;
    match n.kind {
        FileKind::File => {}
        FileKind::Dir => return Err(Errno::EISDIR.into()),
        _ => return Err(Errno::EINVAL.into()),
    }
    if size > MAX_FILE_SIZE {
        return Err(Errno::EFBIG.into());
    }
    if size < n.size {
        punch(st.txn, ino, size, u64::MAX)?;
    }
    st.meta.bytes = st.meta.bytes - n.size + size;
    n.size = size;
    n.mtime = st.now;
    n.ctime = st.now;
    st.set(n);
    Ok(())
}
