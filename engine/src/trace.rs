//! Golden replay traces: a log prefix, the chunk bytes it needs, and the
//! expected root after every entry (each entry carries its root).
//!
//! ```text
//! trace  := "HSFSTRC1" frame* end
//! frame  := tag:u8 len:u32 LE payload[len]
//!   tag 1  header: postcard { workspace: [u8; 16] }
//!   tag 2  chunk:  hash[32] ‖ bytes      (before the first entry using it)
//!   tag 3  entry:  postcard LogEntry     (see docs/FORMAT.md)
//! end    := tag 0xff, len 0
//! ```
//!
//! A fresh engine replays a trace from empty and must reach every root in
//! it; a corrupt chunk or a root mismatch stops the replay with an error
//! naming the log index.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::engine::{Engine, EngineError, ReplayError};
use crate::op::LogEntry;
use crate::store::Backend;
use crate::types::{Hash, WorkspaceId};

const MAGIC: &[u8; 8] = b"HSFSTRC1";
const TAG_HEADER: u8 = 1;
const TAG_CHUNK: u8 = 2;
const TAG_ENTRY: u8 = 3;
const TAG_END: u8 = 0xff;
/// Largest frame accepted (a chunk plus its hash, or one log entry).
const MAX_FRAME: u32 = 1 << 20;

#[derive(Serialize, Deserialize)]
struct Header {
    workspace: WorkspaceId,
}

/// Trace reading or replay failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    /// Malformed trace bytes.
    #[error("malformed trace: {0}")]
    Format(String),
    /// I/O.
    #[error("trace I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The engine could not be set up or written.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Replay stopped at an entry.
    #[error(transparent)]
    Replay(#[from] ReplayError),
}

fn frame(w: &mut impl Write, tag: u8, payload: &[u8]) -> std::io::Result<()> {
    w.write_all(&[tag])?;
    w.write_all(&(payload.len() as u32).to_le_bytes())?;
    w.write_all(payload)
}

/// Writes the engine's log `[1, upto]` with the chunks it needs.
pub fn export(engine: &Engine, upto: u64, w: &mut impl Write) -> Result<(), TraceError> {
    w.write_all(MAGIC)?;
    let header = postcard::to_stdvec(&Header {
        workspace: engine.workspace(),
    })
    .expect("header encodes");
    frame(w, TAG_HEADER, &header)?;
    let mut sent: HashSet<Hash> = HashSet::new();
    let mut from = 1;
    while from <= upto {
        let to = (from + 1023).min(upto);
        for e in engine.log_range(from, to)? {
            for c in e.op.chunks() {
                if sent.insert(c.hash) {
                    let data = engine.chunk(&c.hash)?;
                    let mut p = c.hash.to_vec();
                    p.extend_from_slice(&data);
                    frame(w, TAG_CHUNK, &p)?;
                }
            }
            frame(w, TAG_ENTRY, &e.encode())?;
        }
        from = to + 1;
    }
    frame(w, TAG_END, &[])?;
    Ok(())
}

fn read_frame(r: &mut impl Read) -> Result<(u8, Vec<u8>), TraceError> {
    let mut head = [0u8; 5];
    r.read_exact(&mut head)
        .map_err(|e| TraceError::Format(format!("truncated frame header: {e}")))?;
    let len = u32::from_le_bytes(head[1..].try_into().expect("4 bytes"));
    if len > MAX_FRAME {
        return Err(TraceError::Format(format!(
            "frame of {len} bytes exceeds {MAX_FRAME}"
        )));
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload)
        .map_err(|e| TraceError::Format(format!("truncated frame: {e}")))?;
    Ok((head[0], payload))
}

/// Replays a trace into a new engine over `backend` (which must be empty).
/// Returns the engine and the number of entries applied.
pub fn replay(backend: Arc<dyn Backend>, r: &mut impl Read) -> Result<(Engine, u64), TraceError> {
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(TraceError::Format("not an hsfs trace (bad magic)".into()));
    }
    let (tag, payload) = read_frame(r)?;
    if tag != TAG_HEADER {
        return Err(TraceError::Format("missing header".into()));
    }
    let header: Header =
        postcard::from_bytes(&payload).map_err(|e| TraceError::Format(format!("header: {e}")))?;
    let engine = Engine::create(backend, None, header.workspace)?;
    let mut corrupt: HashSet<Hash> = HashSet::new();
    let mut chunks: Vec<(Hash, Vec<u8>)> = Vec::new();
    let mut entries: Vec<LogEntry> = Vec::new();
    let mut applied = 0;
    let flush = |chunks: &mut Vec<(Hash, Vec<u8>)>,
                 entries: &mut Vec<LogEntry>,
                 corrupt: &mut HashSet<Hash>|
     -> Result<u64, TraceError> {
        let bad = engine.ingest_chunks(chunks.iter().map(|(h, d)| (*h, d.as_slice())))?;
        corrupt.extend(bad);
        chunks.clear();
        // Stop before the first entry needing a corrupt chunk.
        let cut = entries
            .iter()
            .position(|e| e.op.chunks().iter().any(|c| corrupt.contains(&c.hash)));
        let n = engine.replay(entries[..cut.unwrap_or(entries.len())].iter(), 256, false)?;
        if let Some(i) = cut {
            let e = &entries[i];
            let hash =
                e.op.chunks()
                    .iter()
                    .find(|c| corrupt.contains(&c.hash))
                    .expect("found above")
                    .hash;
            return Err(ReplayError::Chunk {
                index: e.index,
                hash,
                why: "is corrupt (hash mismatch)",
            }
            .into());
        }
        entries.clear();
        Ok(n)
    };
    loop {
        let (tag, payload) = read_frame(r)?;
        match tag {
            TAG_CHUNK => {
                if payload.len() < 32 {
                    return Err(TraceError::Format("chunk frame too short".into()));
                }
                let hash: Hash = payload[..32].try_into().expect("32 bytes");
                chunks.push((hash, payload[32..].to_vec()));
            }
            TAG_ENTRY => {
                let e = LogEntry::decode(&payload)
                    .map_err(|e| TraceError::Format(format!("log entry: {e}")))?;
                entries.push(e);
                if entries.len() >= 1024 {
                    applied += flush(&mut chunks, &mut entries, &mut corrupt)?;
                }
            }
            TAG_END => break,
            t => return Err(TraceError::Format(format!("unknown frame tag {t}"))),
        }
    }
    applied += flush(&mut chunks, &mut entries, &mut corrupt)?;
    engine.backend().sync().map_err(EngineError::from)?;
    Ok((engine, applied))
}
