//! The on-disk state directory: a format marker, a process lock and the
//! fjall store.
//!
//! ```text
//! STATE_DIR/
//!   FORMAT      "hsfs-state 3\nworkspace <32 hex digits>\n"
//!   lock        flock'ed by the process using the store; holds its pid
//!   db/         the fjall database
//! ```

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::types::WorkspaceId;

/// Format version written by this build (and the only one it reads).
/// 2: Merkle delta records (`Space::MerkleDelta`); a build that reads 1
/// would ignore them and compute wrong roots.
/// 3: "HWA2" commit-journal records (chunk bytes checked by their hash);
/// a build that reads 2 would take the first one for the journal's end
/// and drop the acknowledged commits from there on.
pub const FORMAT_VERSION: u32 = 3;
const MAGIC: &str = "hsfs-state";

/// Why a state directory cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateDirError {
    /// The path does not exist.
    #[error("{0}: no such state directory (create one with `hsfs init {0}`)")]
    Missing(PathBuf),
    /// The path exists but holds no hsfs state.
    #[error("{0}: not an hsfs state directory (no FORMAT file)")]
    NotAStateDir(PathBuf),
    /// A different or unreadable format.
    #[error(
        "{path}: unsupported state format {found:?} (this build reads format {FORMAT_VERSION})"
    )]
    UnknownFormat {
        /// The directory.
        path: PathBuf,
        /// What the FORMAT file says.
        found: String,
    },
    /// Another process holds the lock.
    #[error("{path}: in use by another hsfs process{}", pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Locked {
        /// The directory.
        path: PathBuf,
        /// Pid recorded by the holder, if readable.
        pid: Option<u32>,
    },
    /// `init` on a non-empty directory.
    #[error("{0}: already exists and is not empty")]
    NotEmpty(PathBuf),
    /// Filesystem error.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateDirError + '_ {
    move |source| StateDirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An opened, locked state directory.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    workspace: WorkspaceId,
    _lock: File,
}

impl StateDir {
    /// Creates a new state directory (the path must be absent or empty).
    pub fn create(path: &Path, workspace: WorkspaceId) -> Result<StateDir, StateDirError> {
        match std::fs::read_dir(path) {
            Ok(mut it) => {
                if it.next().is_some() {
                    return Err(StateDirError::NotEmpty(path.to_path_buf()));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(path).map_err(io(path))?;
            }
            Err(e) => return Err(io(path)(e)),
        }
        let lock = Self::lock(path)?;
        let fmt = path.join("FORMAT");
        let tmp = path.join("FORMAT.tmp");
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        write!(f, "{MAGIC} {FORMAT_VERSION}\nworkspace {workspace}\n").map_err(io(&tmp))?;
        // IMPORTANT: the marker must be durable before the store is used,
        // or a crash could leave a store that no longer opens.
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &fmt).map_err(io(&fmt))?;
        File::open(path)
            .and_then(|d| d.sync_all())
            .map_err(io(path))?;
        Ok(StateDir {
            path: path.to_path_buf(),
            workspace,
            _lock: lock,
        })
    }

    /// Opens and locks an existing state directory.
    pub fn open(path: &Path) -> Result<StateDir, StateDirError> {
        let workspace = Self::peek(path)?;
        let lock = Self::lock(path)?;
        Ok(StateDir {
            path: path.to_path_buf(),
            workspace,
            _lock: lock,
        })
    }

    /// Reads the FORMAT marker without locking; returns the workspace id.
    pub fn peek(path: &Path) -> Result<WorkspaceId, StateDirError> {
        if !path.exists() {
            return Err(StateDirError::Missing(path.to_path_buf()));
        }
        let fmt = path.join("FORMAT");
        let text = match std::fs::read_to_string(&fmt) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StateDirError::NotAStateDir(path.to_path_buf()));
            }
            Err(e) => return Err(io(&fmt)(e)),
        };
        let bad = || StateDirError::UnknownFormat {
            path: path.to_path_buf(),
            found: text.lines().next().unwrap_or("").to_string(),
        };
        let mut lines = text.lines();
        let head = lines.next().unwrap_or("");
        if head != format!("{MAGIC} {FORMAT_VERSION}") {
            return Err(bad());
        }
        let ws = lines
            .next()
            .and_then(|l| l.strip_prefix("workspace "))
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
            .ok_or_else(bad)?;
        Ok(WorkspaceId(ws))
    }

    fn lock(path: &Path) -> Result<File, StateDirError> {
        let lp = path.join("lock");
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lp)
            .map_err(io(&lp))?;
        match f.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut s = String::new();
                let pid = f
                    .read_to_string(&mut s)
                    .ok()
                    .and_then(|_| s.trim().parse().ok());
                return Err(StateDirError::Locked {
                    path: path.to_path_buf(),
                    pid,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&lp)(e)),
        }
        f.set_len(0).map_err(io(&lp))?;
        write!(f, "{}", std::process::id()).map_err(io(&lp))?;
        Ok(f)
    }

    /// The directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The fjall database directory.
    #[must_use]
    pub fn db_path(&self) -> PathBuf {
        self.path.join("db")
    }

    /// The commit journal's directory.
    #[must_use]
    pub fn journal_path(&self) -> PathBuf {
        self.path.join("journal")
    }

    /// The workspace this directory belongs to.
    #[must_use]
    pub fn workspace(&self) -> WorkspaceId {
        self.workspace
    }
}
