//! The read API the FUSE layer serves from: lookups, attributes, directory
//! listings, byte ranges, links and xattrs, straight from the store.
//!
//! Reads take no engine lock. Each backend batch becomes visible atomically,
//! and a range scan reads one consistent snapshot.

use std::ops::Bound;

use crate::engine::{Engine, EngineError};
use crate::errno::Errno;
use crate::keys::{self, Space};
use crate::op::LogEntry;
use crate::records;
use crate::store::{Value, scan_prefix};
use crate::types::{DirEntry, FileKind, Ino, Node, ROOT_INO};

/// Filesystem-wide figures for statfs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatFs {
    /// Block size reported.
    pub bsize: u32,
    /// Total blocks (used plus available).
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Blocks available to unprivileged users.
    pub bavail: u64,
    /// Inodes in use.
    pub files: u64,
    /// Inodes free (effectively unbounded).
    pub ffree: u64,
    /// Maximum name length.
    pub namelen: u32,
}

impl Engine {
    /// A node's attributes.
    pub fn node(&self, ino: Ino) -> Result<Option<Node>, EngineError> {
        match self.backend().get(Space::Nodes, &keys::ino_key(ino))? {
            Some(v) => Ok(Some(
                records::decode_node(ino, &v).map_err(|e| EngineError::Corrupt(e.to_string()))?,
            )),
            None => Ok(None),
        }
    }

    /// A node's attributes, or ENOENT.
    pub fn getattr(&self, ino: Ino) -> Result<Node, EngineError> {
        self.node(ino)?.ok_or(EngineError::Errno(Errno::ENOENT))
    }

    /// The entry `name` of directory `parent`: ENOENT if absent, ENOTDIR if
    /// `parent` is not a directory, ENAMETOOLONG for long names.
    pub fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Node, EngineError> {
        if name.len() > crate::types::NAME_MAX {
            return Err(EngineError::Errno(Errno::ENAMETOOLONG));
        }
        match self
            .backend()
            .get(Space::Dirents, &keys::dirent_key(parent, name))?
        {
            Some(v) => {
                let (ino, _) =
                    records::decode_dirent(&v).map_err(|e| EngineError::Corrupt(e.to_string()))?;
                self.node(ino)?
                    .ok_or_else(|| EngineError::Corrupt(format!("dirent to missing inode {ino}")))
            }
            None => {
                let p = self.getattr(parent)?;
                if p.kind != FileKind::Dir {
                    return Err(EngineError::Errno(Errno::ENOTDIR));
                }
                Err(EngineError::Errno(Errno::ENOENT))
            }
        }
    }

    /// Up to `limit` entries of a directory in bytewise name order, starting
    /// after `after` (exclusive; `None` = from the first). Resuming by name
    /// keeps a listing stable while entries are added and removed.
    pub fn readdir(
        &self,
        dir: Ino,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<DirEntry>, EngineError> {
        let prefix = keys::ino_key(dir);
        let lo = match after {
            Some(name) => Bound::Excluded(keys::dirent_key(dir, name)),
            None => Bound::Included(prefix.to_vec()),
        };
        let hi = keys::prefix_end(&prefix).map_or(Bound::Unbounded, Bound::Excluded);
        let mut out = Vec::new();
        for r in self.backend().range(Space::Dirents, lo, hi) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = r?;
            let (ino, kind) =
                records::decode_dirent(&v).map_err(|e| EngineError::Corrupt(e.to_string()))?;
            out.push(DirEntry {
                name: k[8..].to_vec(),
                ino,
                kind,
            });
        }
        Ok(out)
    }

    /// Reads up to `len` bytes at `offset` (short at end of file; holes are
    /// zeros). EISDIR for directories, EINVAL for other non-files.
    pub fn read(&self, ino: Ino, offset: u64, len: usize) -> Result<Vec<u8>, EngineError> {
        let n = self.getattr(ino)?;
        match n.kind {
            FileKind::File => {}
            FileKind::Dir => return Err(EngineError::Errno(Errno::EISDIR)),
            _ => return Err(EngineError::Errno(Errno::EINVAL)),
        }
        let end = offset.saturating_add(len as u64).min(n.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; (end - offset) as usize];
        let lo = Bound::Included(keys::extent_key(ino, offset + 1).to_vec());
        let hi = keys::prefix_end(&keys::ino_key(ino)).map_or(Bound::Unbounded, Bound::Excluded);
        for r in self.backend().range(Space::Extents, lo, hi) {
            let (k, v) = r?;
            let e =
                records::decode_extent(&k, &v).map_err(|e| EngineError::Corrupt(e.to_string()))?;
            if e.start >= end {
                break;
            }
            let s = e.start.max(offset);
            let t = e.end.min(end);
            let chunk = self.chunk(&e.hash)?;
            let from = (u64::from(e.chunk_off) + (s - e.start)) as usize;
            let to = from + (t - s) as usize;
            let src = chunk.get(from..to).ok_or_else(|| {
                EngineError::Corrupt(format!(
                    "extent of inode {ino} at {} overruns chunk {}",
                    e.start,
                    hex::encode(e.hash)
                ))
            })?;
            buf[(s - offset) as usize..(t - offset) as usize].copy_from_slice(src);
        }
        Ok(buf)
    }

    /// A chunk's bytes; a missing chunk is corruption.
    pub fn chunk(&self, hash: &crate::types::Hash) -> Result<Value, EngineError> {
        self.backend()
            .get(Space::Chunks, hash)?
            .ok_or_else(|| EngineError::Corrupt(format!("missing chunk {}", hex::encode(hash))))
    }

    /// A symlink's target; EINVAL for other kinds.
    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>, EngineError> {
        let n = self.getattr(ino)?;
        if n.kind != FileKind::Symlink {
            return Err(EngineError::Errno(Errno::EINVAL));
        }
        Ok(n.target)
    }

    /// One xattr value; ENODATA if absent, errors of a bad name as setxattr.
    pub fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Value, EngineError> {
        self.getattr(ino)?;
        crate::types::check_xattr_name(name).map_err(EngineError::Errno)?;
        self.backend()
            .get(Space::Xattrs, &keys::xattr_key(ino, name))?
            .ok_or(EngineError::Errno(Errno::ENODATA))
    }

    /// Xattr names in bytewise order.
    pub fn listxattr(&self, ino: Ino) -> Result<Vec<Vec<u8>>, EngineError> {
        self.getattr(ino)?;
        scan_prefix(self.backend(), Space::Xattrs, &keys::ino_key(ino))
            .map(|r| r.map(|(k, _)| k[8..].to_vec()).map_err(EngineError::from))
            .collect()
    }

    /// statfs figures: space from the store's filesystem, inodes from the
    /// node count.
    #[must_use]
    pub fn statfs(&self) -> StatFs {
        const BSIZE: u64 = 4096;
        let free = self.backend().free_space().unwrap_or(0) / BSIZE;
        let used = self.status().meta.bytes.div_ceil(BSIZE);
        StatFs {
            bsize: BSIZE as u32,
            blocks: used + free,
            bfree: free,
            bavail: free,
            files: self.status().meta.nodes,
            ffree: u64::from(u32::MAX),
            namelen: crate::types::NAME_MAX as u32,
        }
    }

    /// Names linking to `ino` as `(parent, name)` pairs, in key order.
    pub fn links_of(&self, ino: Ino) -> Result<Vec<(Ino, Vec<u8>)>, EngineError> {
        scan_prefix(self.backend(), Space::Links, &keys::ino_key(ino))
            .map(|r| {
                let (k, _) = r?;
                let parent = keys::be_u64(&k[8..]).unwrap_or(0);
                Ok((parent, k[16..].to_vec()))
            })
            .collect()
    }

    /// One path of `ino` from the root (the first link in key order), for
    /// display; `None` for orphans. Bounded against corrupt cycles.
    pub fn path_of(&self, mut ino: Ino) -> Result<Option<Vec<u8>>, EngineError> {
        let mut parts: Vec<Vec<u8>> = Vec::new();
        while ino != ROOT_INO {
            if parts.len() > 4096 {
                return Err(EngineError::Corrupt(format!("path of inode {ino} loops")));
            }
            let Some((parent, name)) = self.links_of(ino)?.into_iter().next() else {
                return Ok(None);
            };
            parts.push(name);
            ino = parent;
        }
        let mut p = Vec::new();
        for part in parts.iter().rev() {
            p.push(b'/');
            p.extend_from_slice(part);
        }
        if p.is_empty() {
            p.push(b'/');
        }
        Ok(Some(p))
    }

    /// Resolves an absolute or root-relative path without following
    /// symlinks; returns the inode chain from the root.
    pub fn resolve(&self, path: &[u8]) -> Result<Vec<(Ino, Vec<u8>)>, EngineError> {
        let mut chain = vec![(ROOT_INO, Vec::new())];
        for comp in path
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
        {
            let cur = chain.last().expect("root").0;
            if comp == b".." {
                let n = self.getattr(cur)?;
                if chain.len() > 1 {
                    chain.pop();
                }
                debug_assert!(n.kind == FileKind::Dir);
                continue;
            }
            let n = self.lookup(cur, comp)?;
            chain.push((n.ino, comp.to_vec()));
        }
        Ok(chain)
    }

    /// Inodes kept as orphans (unlinked while open).
    pub fn orphans(&self) -> Result<Vec<Ino>, EngineError> {
        scan_prefix(self.backend(), Space::Orphans, &[])
            .map(|r| Ok(keys::be_u64(&r?.0).unwrap_or(0)))
            .collect()
    }

    /// Log entries with index in `[from, to]`.
    pub fn log_range(&self, from: u64, to: u64) -> Result<Vec<LogEntry>, EngineError> {
        if from > to {
            return Ok(Vec::new());
        }
        self.backend()
            .range(
                Space::Log,
                Bound::Included(from.to_be_bytes().to_vec()),
                Bound::Included(to.to_be_bytes().to_vec()),
            )
            .map(|r| {
                let (_, v) = r?;
                LogEntry::decode(&v).map_err(|e| EngineError::Corrupt(format!("log entry: {e}")))
            })
            .collect()
    }
}
