//! The logged mutations, their results, log entries and acks.
//!
//! Everything here is encoded with postcard (a stable, compact, documented
//! format: varint integers, length-prefixed byte strings, enum variants by
//! index). New variants and fields are only ever appended.

use serde::{Deserialize, Serialize};

use crate::types::{FileKind, Hash, Ino, IntentId, Nanos};

/// Where a write lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteAt {
    /// `pwrite` at this offset.
    Offset(u64),
    /// `O_APPEND`: at end of file as of the commit; the ack reports it.
    Append,
}

/// A chunk a write consists of; the bytes travel separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// BLAKE3 of the chunk bytes.
    pub hash: Hash,
    /// Length (1..=64 KiB).
    pub len: u32,
}

/// A timestamp in a setattr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetTime {
    /// The op's `committed_at` (`UTIME_NOW`).
    Now,
    /// An explicit time.
    At(Nanos),
}

/// `rename` flavours (`renameat2` flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RenameMode {
    /// POSIX `rename`: replace the target if it exists.
    Replace,
    /// `RENAME_NOREPLACE`: fail with EEXIST if the target exists.
    NoReplace,
    /// `RENAME_EXCHANGE`: swap two existing entries.
    Exchange,
}

/// `setxattr` flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum XattrMode {
    /// Create or replace.
    Upsert,
    /// `XATTR_CREATE`: fail with EEXIST if present.
    Create,
    /// `XATTR_REPLACE`: fail with ENODATA if absent.
    Replace,
}

/// Attribute changes of a setattr; `None` leaves a field alone. `ctime`
/// always becomes the commit time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetAttr {
    /// New permission bits (`& 07777`).
    pub perm: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size (truncate or extend with a hole).
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<SetTime>,
    /// New modification time.
    pub mtime: Option<SetTime>,
}

/// One logged mutation. Inode-addressed ops name the inode the caller
/// resolved; path-addressed ops name `(parent, name)` and are resolved at
/// the leader's linearization point, inside `apply`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Creates the root directory (log index 1 of every workspace).
    Genesis {
        /// Root permission bits.
        perm: u32,
        /// Root owner.
        uid: u32,
        /// Root group.
        gid: u32,
    },
    /// Creates a regular file, FIFO or socket node; with `excl` it fails
    /// with EEXIST if the name exists, otherwise an existing non-directory
    /// is returned (and truncated with `truncate`).
    Create {
        /// Parent directory.
        parent: Ino,
        /// Name.
        name: Vec<u8>,
        /// File, Fifo or Socket.
        kind: FileKind,
        /// Permission bits, umask already applied.
        perm: u32,
        /// Owner.
        uid: u32,
        /// Group (a setgid parent's group wins).
        gid: u32,
        /// `O_EXCL`.
        excl: bool,
        /// `O_TRUNC` (applies to an existing file).
        truncate: bool,
    },
    /// Creates a directory.
    Mkdir {
        /// Parent directory.
        parent: Ino,
        /// Name.
        name: Vec<u8>,
        /// Permission bits, umask applied.
        perm: u32,
        /// Owner.
        uid: u32,
        /// Group (a setgid parent's group wins).
        gid: u32,
    },
    /// Creates a symbolic link.
    Symlink {
        /// Parent directory.
        parent: Ino,
        /// Name.
        name: Vec<u8>,
        /// Target bytes, stored verbatim.
        target: Vec<u8>,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
    },
    /// Adds a hard link to an existing non-directory.
    Link {
        /// The linked inode.
        ino: Ino,
        /// New parent.
        parent: Ino,
        /// New name.
        name: Vec<u8>,
    },
    /// Removes a non-directory entry.
    Unlink {
        /// Parent directory.
        parent: Ino,
        /// Name.
        name: Vec<u8>,
        /// Leader's decision at commit: if the link count drops to zero and
        /// this is set, keep the node as an orphan (it is open somewhere).
        keep_orphan: bool,
    },
    /// Removes an empty directory.
    Rmdir {
        /// Parent directory.
        parent: Ino,
        /// Name.
        name: Vec<u8>,
    },
    /// Renames an entry.
    Rename {
        /// Source parent.
        parent: Ino,
        /// Source name.
        name: Vec<u8>,
        /// Target parent.
        new_parent: Ino,
        /// Target name.
        new_name: Vec<u8>,
        /// Replace, no-replace or exchange.
        mode: RenameMode,
        /// As for `Unlink`, for a replaced target.
        keep_orphan: bool,
    },
    /// Writes bytes given as chunks.
    Write {
        /// The file.
        ino: Ino,
        /// Offset or append.
        at: WriteAt,
        /// Chunks, in order; the data is their concatenation.
        chunks: Vec<ChunkRef>,
    },
    /// Changes attributes (chmod, chown, truncate, utimens).
    SetAttr {
        /// The node.
        ino: Ino,
        /// Changes.
        attr: SetAttr,
    },
    /// Sets an extended attribute.
    SetXattr {
        /// The node.
        ino: Ino,
        /// Name.
        name: Vec<u8>,
        /// Value.
        value: Vec<u8>,
        /// Flags.
        mode: XattrMode,
    },
    /// Removes an extended attribute.
    RemoveXattr {
        /// The node.
        ino: Ino,
        /// Name.
        name: Vec<u8>,
    },
    /// fsync/fdatasync barrier: every earlier mutation is durable once it
    /// is acknowledged. Changes nothing; never logged.
    Fsync {
        /// The file or directory synced.
        ino: Ino,
    },
    /// Deletes an orphan (unlinked node) whose last open handle closed.
    Reclaim {
        /// The orphan.
        ino: Ino,
    },
}

impl Op {
    /// Short name for logs and `hsfs log`.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Op::Genesis { .. } => "genesis",
            Op::Create { .. } => "create",
            Op::Mkdir { .. } => "mkdir",
            Op::Symlink { .. } => "symlink",
            Op::Link { .. } => "link",
            Op::Unlink { .. } => "unlink",
            Op::Rmdir { .. } => "rmdir",
            Op::Rename { .. } => "rename",
            Op::Write { .. } => "write",
            Op::SetAttr { .. } => "setattr",
            Op::SetXattr { .. } => "setxattr",
            Op::RemoveXattr { .. } => "removexattr",
            Op::Fsync { .. } => "fsync",
            Op::Reclaim { .. } => "reclaim",
        }
    }

    /// Payload bytes the op carries (write data and xattr values).
    #[must_use]
    pub fn payload_len(&self) -> usize {
        match self {
            Op::Write { chunks, .. } => chunks.iter().map(|c| c.len as usize).sum(),
            Op::SetXattr { value, .. } => value.len(),
            Op::Symlink { target, .. } => target.len(),
            _ => 0,
        }
    }

    /// Chunks the op references.
    #[must_use]
    pub fn chunks(&self) -> &[ChunkRef] {
        match self {
            Op::Write { chunks, .. } => chunks,
            _ => &[],
        }
    }
}

/// What a successful op produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpResult {
    /// Nothing beyond success.
    Done,
    /// The node created or opened (`created = false`: it existed).
    Node {
        /// Its inode number.
        ino: Ino,
        /// Whether the op created it.
        created: bool,
    },
    /// Where a write landed.
    Written {
        /// Offset (the end of file at commit for appends).
        offset: u64,
        /// Bytes written.
        len: u64,
    },
}

/// Who issued an intent (informational; shown by `hsfs log`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// Worker (mount) name.
    pub worker: String,
    /// Agent name, if the mount knows it.
    pub agent: String,
}

/// Kinds of conflicts the leader flags on unreserved mutations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HazardKind {
    /// Overlapping byte ranges written by different agents.
    OverlappingWrite,
    /// A rename racing another rename or a write.
    ConcurrentRename,
    /// A write to a node unlinked recently.
    WriteAfterUnlink,
}

/// A conflict noted on a log entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hazard {
    /// What kind.
    pub kind: HazardKind,
    /// The earlier conflicting entry.
    pub conflicting_index: u64,
}

/// A mutation as submitted to the leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// Idempotency key.
    pub id: IntentId,
    /// Issuer.
    pub origin: Origin,
    /// The mutation.
    pub op: Op,
}

/// One committed entry of the op log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Position in the log (1, 2, 3, ... without gaps).
    pub index: u64,
    /// Unique op id.
    pub op_id: [u8; 16],
    /// Leader commit time; strictly increasing along the log.
    pub committed_at: Nanos,
    /// The intent this entry commits.
    pub intent: IntentId,
    /// Issuer.
    pub origin: Origin,
    /// The op, with leader decisions filled in.
    pub op: Op,
    /// Conflict noted at commit, if any.
    pub hazard: Option<Hazard>,
    /// Merkle root of the filesystem state after this op.
    pub root: Hash,
}

impl LogEntry {
    /// Stable encoding (postcard).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("log entries always encode")
    }

    /// Decodes an entry.
    pub fn decode(b: &[u8]) -> Result<LogEntry, postcard::Error> {
        postcard::from_bytes(b)
    }
}

/// The leader's answer to a committed intent. A duplicate intent gets an
/// identical ack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Log index the op committed at (for barriers: the index they cover).
    pub index: u64,
    /// Op id of that entry.
    pub op_id: [u8; 16],
    /// Commit time.
    pub committed_at: Nanos,
    /// Merkle root after the op.
    pub root: Hash,
    /// What the op produced.
    pub result: OpResult,
}

impl Ack {
    /// Stable encoding (postcard).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("acks always encode")
    }

    /// Decodes an ack.
    pub fn decode(b: &[u8]) -> Result<Ack, postcard::Error> {
        postcard::from_bytes(b)
    }
}

/// Op id of the entry at `index` in a workspace.
#[must_use]
pub fn op_id(workspace: &crate::types::WorkspaceId, index: u64) -> [u8; 16] {
    let mut h = blake3::Hasher::new();
    h.update(b"hsfs op");
    h.update(&workspace.0);
    h.update(&index.to_be_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&h.finalize().as_bytes()[..16]);
    id
}
