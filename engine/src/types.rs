//! Identifiers and attribute types shared by every layer.

use serde::{Deserialize, Serialize};

/// Inode number: leader-assigned, used as `st_ino` on every replica, never
/// reused in a workspace. The root directory is [`ROOT_INO`].
pub type Ino = u64;

/// Inode number of the workspace root (FUSE's root inode number).
pub const ROOT_INO: Ino = 1;

/// Nanoseconds since the Unix epoch (negative before 1970).
pub type Nanos = i64;

/// A BLAKE3 digest.
pub type Hash = [u8; 32];

/// Maximum length of one name component, in bytes.
pub const NAME_MAX: usize = 255;
/// Maximum length of a symlink target, in bytes (PATH_MAX less the NUL).
pub const SYMLINK_MAX: usize = 4095;
/// Maximum hard links to one file, and subdirectories of one directory.
pub const LINK_MAX: u32 = 65_000;
/// Largest file size (the largest offset FUSE and Linux can address).
pub const MAX_FILE_SIZE: u64 = i64::MAX as u64;
/// Xattr limits (SPEC 4).
pub const XATTR_NAME_MAX: usize = 255;
/// Maximum size of one xattr value.
pub const XATTR_VALUE_MAX: usize = 64 * 1024;
/// Maximum total of names and values of one inode's xattrs.
pub const XATTR_TOTAL_MAX: usize = 1024 * 1024;
/// Largest chunk: writes are split into pieces of at most this size.
pub const CHUNK_MAX: usize = 64 * 1024;

/// 128-bit stable node identity. Derived by the leader from the workspace id
/// and the inode number at creation, so it is unique, stable across renames
/// and needs no randomness in `apply`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(pub [u8; 16]);

impl NodeId {
    /// `BLAKE3("hsfs node" || workspace_id || ino)[..16]`.
    #[must_use]
    pub fn derive(workspace: &WorkspaceId, ino: Ino) -> NodeId {
        let mut h = blake3::Hasher::new();
        h.update(b"hsfs node");
        h.update(&workspace.0);
        h.update(&ino.to_be_bytes());
        let mut id = [0u8; 16];
        id.copy_from_slice(&h.finalize().as_bytes()[..16]);
        NodeId(id)
    }
}

impl std::fmt::Debug for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", hex::encode(self.0))
    }
}

/// 128-bit random workspace identity, made by `hsfs init`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WorkspaceId(pub [u8; 16]);

impl std::fmt::Display for WorkspaceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", hex::encode(self.0))
    }
}
impl std::fmt::Debug for WorkspaceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

/// Identity of one client process (a mount): a 128-bit random nonce.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ClientId(pub [u8; 16]);

impl ClientId {
    /// The client id the engine itself uses (genesis, reclaims).
    pub const SYSTEM: ClientId = ClientId([0; 16]);

    /// A fresh random client id (from the OS random source).
    ///
    /// # Panics
    /// If the OS random source is unavailable.
    #[must_use]
    pub fn random() -> ClientId {
        ClientId(crate::random_bytes())
    }
}

impl std::fmt::Debug for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", hex::encode(self.0))
    }
}

/// Idempotency key of an intent: a duplicate gets the same ack.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct IntentId {
    /// The submitting client.
    pub client: ClientId,
    /// Strictly increasing per client.
    pub seq: u64,
}

/// Type of a node.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[repr(u8)]
pub enum FileKind {
    /// Regular file.
    File = 1,
    /// Directory.
    Dir = 2,
    /// Symbolic link.
    Symlink = 3,
    /// Named pipe.
    Fifo = 4,
    /// Unix socket node.
    Socket = 5,
}

impl FileKind {
    /// Decodes the on-disk tag.
    #[must_use]
    pub fn from_u8(v: u8) -> Option<FileKind> {
        Some(match v {
            1 => FileKind::File,
            2 => FileKind::Dir,
            3 => FileKind::Symlink,
            4 => FileKind::Fifo,
            5 => FileKind::Socket,
            _ => return None,
        })
    }

    /// The `S_IFMT` bits of this kind.
    #[must_use]
    pub fn mode_bits(self) -> u32 {
        match self {
            FileKind::File => libc::S_IFREG,
            FileKind::Dir => libc::S_IFDIR,
            FileKind::Symlink => libc::S_IFLNK,
            FileKind::Fifo => libc::S_IFIFO,
            FileKind::Socket => libc::S_IFSOCK,
        }
    }
}

/// A node's attributes: the canonical, replicated part of an inode.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Node {
    /// Inode number.
    pub ino: Ino,
    /// Stable identity.
    pub id: NodeId,
    /// Type.
    pub kind: FileKind,
    /// Permission bits including setuid, setgid and sticky (`& 0o7777`).
    pub perm: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes (files: content length; symlinks: target length;
    /// directories: `40 + 20 * entries`, as tmpfs reports).
    pub size: u64,
    /// Link count (directories: 2 + subdirectories).
    pub nlink: u32,
    /// Access time: set at creation and by explicit utimens only.
    pub atime: Nanos,
    /// Modification time.
    pub mtime: Nanos,
    /// Status change time.
    pub ctime: Nanos,
    /// Creation time.
    pub btime: Nanos,
    /// Directories: the parent directory (the root is its own parent).
    /// Other kinds: 0.
    pub parent: Ino,
    /// Number of entries (directories), else 0.
    pub entries: u64,
    /// Symlink target (opaque bytes), empty for other kinds.
    pub target: Vec<u8>,
}

impl Node {
    /// `st_mode`: type bits and permission bits.
    #[must_use]
    pub fn mode(&self) -> u32 {
        self.kind.mode_bits() | self.perm
    }

    /// Number of 512-byte blocks a file of this size occupies (for
    /// `st_blocks`), rounding up to 4 KiB like a local filesystem.
    #[must_use]
    pub fn blocks(&self) -> u64 {
        self.size.div_ceil(4096) * 8
    }
}

/// One directory entry as returned by `readdir`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DirEntry {
    /// Entry name.
    pub name: Vec<u8>,
    /// Target inode.
    pub ino: Ino,
    /// Target type.
    pub kind: FileKind,
}

/// Checks an xattr name as Linux does: 1..=255 bytes without NUL (else
/// ERANGE), in a known namespace (else EOPNOTSUPP), with a non-empty name
/// after the prefix (else EINVAL).
pub fn check_xattr_name(name: &[u8]) -> Result<(), crate::Errno> {
    if name.is_empty() || name.len() > XATTR_NAME_MAX || name.contains(&0) {
        return Err(crate::Errno::ERANGE);
    }
    const NAMESPACES: [&[u8]; 4] = [b"user.", b"trusted.", b"security.", b"system."];
    let Some(prefix) = NAMESPACES.iter().find(|p| name.starts_with(p)) else {
        return Err(crate::Errno::ENOTSUP);
    };
    if name.len() == prefix.len() {
        return Err(crate::Errno::EINVAL);
    }
    Ok(())
}

/// Checks a name component: non-empty, no `/` or NUL, not `.` or `..`, at
/// most [`NAME_MAX`] bytes.
pub fn check_name(name: &[u8]) -> Result<(), crate::Errno> {
    if name.len() > NAME_MAX {
        return Err(crate::Errno::ENAMETOOLONG);
    }
    if name.is_empty() || name == b"." || name == b".." || name.iter().any(|&b| b == b'/' || b == 0)
    {
        return Err(crate::Errno::EINVAL);
    }
    Ok(())
}
