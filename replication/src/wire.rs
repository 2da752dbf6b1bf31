//! The wire protocol "hypersync/1": messages and the frame codec.
//!
//! A frame is a `u32` little-endian length followed by that many bytes of
//! postcard. The decoder refuses a length above the negotiated maximum
//! *before* allocating, and postcard never allocates more than the bytes
//! it was given, so no untrusted length can make a peer allocate beyond
//! `max_frame`.
//!
//! Streams of one QUIC connection (opened by the worker; the first frame
//! names the stream's purpose, [`Open`]):
//!
//! | stream | worker → leader | leader → worker |
//! |---|---|---|
//! | control (one) | `Hello`, then [`ToLeader`] | `Welcome`/`Refused`, then [`ToWorker`] |
//! | intent (one per intent) | [`IntentFrame`], [`ChunkPut`]s | [`IntentReply`]s |
//! | log (one) | `Subscribe` | [`LogFrame`]s, in index order |
//! | fetch (one per request) | `Fetch` | [`ChunkData`]s |

use hsfs_engine::op::{Ack, Intent, LogEntry};
use hsfs_engine::{ClientId, Hash, Ino, WorkspaceId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Protocol name; also the TLS ALPN.
pub const PROTOCOL: &str = "hypersync/1";

/// Limits a connection agrees on (the leader's answer wins).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest frame either side may send.
    pub max_frame: u32,
    /// Largest chunk.
    pub max_chunk: u32,
    /// Payloads up to this size travel inside the intent.
    pub inline_max: u32,
    /// Most chunk hashes in one `Need` or `Fetch`.
    pub max_hashes: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame: 2 << 20,
            max_chunk: hsfs_engine::CHUNK_MAX as u32,
            inline_max: 8 << 10,
            max_hashes: 1024,
        }
    }
}

impl Limits {
    /// The stricter of two limit sets.
    #[must_use]
    pub fn min(self, o: Limits) -> Limits {
        Limits {
            max_frame: self.max_frame.min(o.max_frame),
            max_chunk: self.max_chunk.min(o.max_chunk),
            inline_max: self.inline_max.min(o.inline_max),
            max_hashes: self.max_hashes.min(o.max_hashes),
        }
    }
}

/// First frame of every stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Open {
    /// The control stream, with the handshake.
    Control(Hello),
    /// One intent.
    Intent(IntentFrame),
    /// The ordered stream of committed entries from `from` on.
    Subscribe {
        /// First index wanted.
        from: u64,
    },
    /// Chunks the worker lacks.
    Fetch {
        /// Their hashes.
        hashes: Vec<Hash>,
    },
}

/// Handshake of a worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Must equal [`PROTOCOL`].
    pub protocol: String,
    /// The workspace the worker replicates.
    pub workspace: WorkspaceId,
    /// Stable worker name.
    pub worker: String,
    /// This process's client id (intents carry it).
    pub client: ClientId,
    /// The worker's applied index.
    pub applied: u64,
    /// The worker's Merkle root at `applied` (checked against the log).
    pub root: Hash,
    /// Optional features the worker speaks.
    pub features: Vec<String>,
    /// The worker's limits.
    pub limits: Limits,
}

/// Why an apply stopped on a worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyErrorReport {
    /// The entry that failed.
    pub index: u64,
    /// Its errno.
    pub errno: i32,
    /// Description.
    pub message: String,
}

/// Control messages from a worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToLeader {
    /// Periodic state of the worker.
    Heartbeat {
        /// Applied index.
        applied: u64,
        /// Whether it refuses mutations.
        read_only: bool,
        /// Chunks it is still missing.
        missing_chunks: u64,
        /// Entries received but not applied yet.
        pressure: u64,
        /// Why apply stopped, if it did.
        last_error: Option<ApplyErrorReport>,
    },
    /// "What is the commit index now?"
    Barrier {
        /// Request id.
        id: u64,
    },
    /// Fate of an intent after a reconnect.
    IntentStatus {
        /// Request id.
        id: u64,
        /// The intent.
        intent: hsfs_engine::IntentId,
    },
    /// Open-lease changes (0 -> 1 and 1 -> 0 transitions of open counts).
    Leases {
        /// Inodes now open on the worker.
        acquire: Vec<Ino>,
        /// Inodes no longer open.
        release: Vec<Ino>,
    },
    /// Every inode the worker has open (sent after connecting and every
    /// lease period / 3).
    LeaseRenew {
        /// The open set.
        open: Vec<Ino>,
    },
}

/// What the leader knows of an intent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IntentState {
    /// Committed: the original ack.
    Committed(Ack),
    /// Never seen (safe to send again with the same id).
    NotFound,
    /// Being committed right now.
    InFlight,
}

/// Control messages from the leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToWorker {
    /// Handshake accepted.
    Welcome {
        /// The leader's workspace.
        workspace: WorkspaceId,
        /// Changes whenever the leader restarts.
        leader_epoch: u64,
        /// The leader's commit index.
        commit_index: u64,
        /// Negotiated limits.
        limits: Limits,
    },
    /// Handshake refused; the connection closes.
    Refused {
        /// Why, for the worker's log and status.
        reason: String,
    },
    /// Periodic news.
    Heartbeat {
        /// The leader's commit index.
        commit_index: u64,
    },
    /// Answer to `Barrier`.
    BarrierDone {
        /// Request id.
        id: u64,
        /// Commit index.
        commit_index: u64,
    },
    /// Answer to `IntentStatus`.
    IntentStatus {
        /// Request id.
        id: u64,
        /// The fate.
        state: IntentState,
    },
}

/// An intent; payloads up to `inline_max` travel with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentFrame {
    /// The intent.
    pub intent: Intent,
    /// The bytes of every chunk of the op, in order, or empty.
    pub inline: Vec<Vec<u8>>,
}

/// The leader's answers on an intent stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IntentReply {
    /// Send these chunks (as [`ChunkPut`] frames).
    Need(Vec<Hash>),
    /// The outcome: the ack (durable) or an errno (leaders now send
    /// [`IntentReply::Refused`] for errors).
    Done(Result<Ack, i32>),
    /// The intent failed with `errno` against the state at log `index` (or
    /// earlier). The worker returns the error only once its replica has
    /// applied `index`: a local `stat` after `mkdir` failed with EEXIST
    /// must find what made it fail.
    Refused {
        /// The errno.
        errno: i32,
        /// Applied index of the leader when it answered.
        index: u64,
    },
}

/// One chunk sent for an intent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkPut {
    /// Claimed hash (verified by the leader).
    pub hash: Hash,
    /// Bytes.
    pub data: Vec<u8>,
}

/// One committed entry, with the bytes of small payloads so most writes
/// need no chunk fetch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogFrame {
    /// The entry.
    pub entry: LogEntry,
    /// Chunks of the entry, inline when its payload is small.
    pub chunks: Vec<(Hash, Vec<u8>)>,
}

/// One chunk answering a `Fetch`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkData {
    /// The hash asked for.
    pub hash: Hash,
    /// Its bytes, or `None` if the leader does not have it.
    pub data: Option<Vec<u8>>,
}

/// Codec failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The peer announced a frame above the limit.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Announced length.
        len: u32,
        /// Limit.
        max: u32,
    },
    /// The bytes are not a valid message.
    #[error("malformed frame: {0}")]
    Malformed(#[from] postcard::Error),
    /// The stream ended or failed.
    #[error("stream: {0}")]
    Io(#[from] std::io::Error),
    /// The stream ended cleanly before a frame.
    #[error("stream closed")]
    Closed,
}

/// Encodes a message as one frame.
#[must_use]
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let body = postcard::to_stdvec(msg).expect("messages always encode");
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decodes one frame from the start of `buf`; returns the message and the
/// bytes consumed, or `Ok(None)` if `buf` holds no complete frame yet.
pub fn decode<T: DeserializeOwned>(buf: &[u8], max: u32) -> Result<Option<(T, usize)>, WireError> {
    let Some(head) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes(head.try_into().expect("4 bytes"));
    if len > max {
        return Err(WireError::TooLarge { len, max });
    }
    let Some(body) = buf.get(4..4 + len as usize) else {
        return Ok(None);
    };
    Ok(Some((postcard::from_bytes(body)?, 4 + len as usize)))
}

/// Writes one frame.
pub async fn write<T: Serialize>(
    w: &mut (impl AsyncWrite + Unpin),
    msg: &T,
) -> Result<(), WireError> {
    w.write_all(&encode(msg)).await?;
    Ok(())
}

/// Reads one frame; `Closed` at a clean end of stream.
pub async fn read<T: DeserializeOwned>(
    r: &mut (impl AsyncRead + Unpin),
    max: u32,
) -> Result<T, WireError> {
    let mut head = [0u8; 4];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(WireError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_le_bytes(head);
    if len > max {
        return Err(WireError::TooLarge { len, max });
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body).await?;
    Ok(postcard::from_bytes(&body)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn roundtrip_and_limits() {
        let m = Open::Subscribe { from: 42 };
        let f = encode(&m);
        assert_eq!(decode::<Open>(&f, 1024).unwrap(), Some((m, f.len())));
        assert!(decode::<Open>(&f[..f.len() - 1], 1024).unwrap().is_none());
        assert!(matches!(
            decode::<Open>(&[0xff, 0xff, 0xff, 0x7f], 1024),
            Err(WireError::TooLarge { .. })
        ));
        assert!(matches!(
            decode::<Open>(&[1, 0, 0, 0, 0xff], 1024),
            Err(WireError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn async_roundtrip() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let m = ToWorker::Heartbeat { commit_index: 7 };
        write(&mut a, &m).await.unwrap();
        drop(a);
        assert_eq!(read::<ToWorker>(&mut b, 1024).await.unwrap(), m);
        assert!(matches!(
            read::<ToWorker>(&mut b, 1024).await,
            Err(WireError::Closed)
        ));
    }

    proptest! {
        // Arbitrary bytes never panic the decoder of any message type.
        #[test]
        fn decoder_total(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<Open>(&bytes, 256);
            let _ = decode::<ToLeader>(&bytes, 256);
            let _ = decode::<ToWorker>(&bytes, 256);
            let _ = decode::<IntentReply>(&bytes, 256);
            let _ = decode::<LogFrame>(&bytes, 256);
            let _ = decode::<ChunkPut>(&bytes, 256);
            let _ = decode::<ChunkData>(&bytes, 256);
        }
    }
}
