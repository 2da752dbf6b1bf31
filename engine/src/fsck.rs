//! Verification of a whole store (the logic behind `hsfs-fsck`).
//!
//! Every chunk is re-hashed; extents, nodes, directory entries, the reverse
//! link index, orphans and xattrs are cross-checked; the log is checked for
//! continuity and the dedupe map against it; the Merkle root is recomputed
//! from scratch and every stored Merkle branch is compared with the
//! canonical one. Each problem names its space and key.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use hsfs_merkle::{Branch, NodePath, Proof, Terminal, branches_from_sorted, root_from_sorted};
use serde::Serialize;

use crate::engine::{Engine, EngineError};
use crate::keys::{self, Space, be_u64};
use crate::op::{Ack, LogEntry};
use crate::records::{self, Extent};
use crate::types::{FileKind, Hash, Ino, ROOT_INO, XATTR_TOTAL_MAX, XATTR_VALUE_MAX, check_name};

/// One inconsistency.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Problem {
    /// Stable kind, e.g. `chunk-corrupt`, `nlink-mismatch`, `log-gap`.
    pub kind: &'static str,
    /// Space of the offending record.
    pub space: &'static str,
    /// Its key, hex.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// Counts gathered while checking.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FsckStats {
    /// Chunks re-hashed.
    pub chunks: u64,
    /// Their bytes.
    pub chunk_bytes: u64,
    /// Node records.
    pub nodes: u64,
    /// Directory entries.
    pub dirents: u64,
    /// Extents.
    pub extents: u64,
    /// Xattrs.
    pub xattrs: u64,
    /// Log entries.
    pub log_entries: u64,
    /// Dedupe records.
    pub dedupe: u64,
    /// Stored Merkle branches.
    pub merkle_branches: u64,
    /// Applied index from meta.
    pub applied_index: u64,
    /// Root stored in meta, hex.
    pub root_stored: String,
    /// Root recomputed from the records, hex.
    pub root_computed: String,
}

/// The outcome of a check.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Problems found; empty means clean.
    pub problems: Vec<Problem>,
    /// Counts.
    pub stats: FsckStats,
}

impl Report {
    /// Whether no problem was found.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

struct NodeInfo {
    kind: FileKind,
    nlink: u32,
    parent: Ino,
    entries: u64,
    size: u64,
    /// Dirents naming this node.
    names: u64,
    /// Dirents in this directory that are directories.
    subdirs: u64,
    /// Dirents in this directory.
    children: u64,
    /// Parent of the (first) dirent naming this directory.
    named_in: Option<Ino>,
    orphan: bool,
}

/// Progress callback: phase name and items done in it.
pub type Progress<'a> = &'a mut dyn FnMut(&'static str, u64);

struct Checker {
    report: Report,
    merkle_items: Vec<(Hash, Hash)>,
}

fn hexkey(k: &[u8]) -> String {
    hex::encode(k)
}

impl Checker {
    fn problem(&mut self, kind: &'static str, space: Space, key: &[u8], message: String) {
        self.report.problems.push(Problem {
            kind,
            space: space.name(),
            key: hexkey(key),
            message,
        });
    }

    fn hashed(&mut self, space: Space, key: &[u8], value: &[u8]) {
        self.merkle_items.push((
            keys::record_key_hash(space, key),
            keys::record_value_hash(value),
        ));
    }
}

fn scan(
    engine: &Engine,
    space: Space,
) -> impl Iterator<Item = Result<(crate::store::Value, crate::store::Value), EngineError>> + '_ {
    engine
        .backend()
        .range(space, Bound::Unbounded, Bound::Unbounded)
        .map(|r| r.map_err(EngineError::from))
}

/// Checks the whole store behind `engine` (which must not be written to
/// meanwhile: `hsfs-fsck` holds the state directory lock). First writes the
/// Merkle branches the engine holds in memory ([`Engine::flush_merkle`]),
/// so the store's merkle space is checked whole.
pub fn check(engine: &Engine, progress: Progress<'_>) -> Result<Report, EngineError> {
    engine.flush_merkle()?;
    let mut c = Checker {
        report: Report::default(),
        merkle_items: Vec::new(),
    };
    let meta = engine.status().meta;
    c.report.stats.applied_index = meta.applied;
    c.report.stats.root_stored = hex::encode(meta.root);

    // Chunks: re-hash every one.
    let mut chunk_len: HashMap<Hash, u32> = HashMap::new();
    for r in scan(engine, Space::Chunks) {
        let (k, v) = r?;
        c.report.stats.chunks += 1;
        c.report.stats.chunk_bytes += v.len() as u64;
        progress("chunks", c.report.stats.chunks);
        let Ok(h) = <Hash>::try_from(k.as_ref()) else {
            c.problem(
                "chunk-key",
                Space::Chunks,
                &k,
                "key is not a 32-byte hash".into(),
            );
            continue;
        };
        if *blake3::hash(&v).as_bytes() != h {
            c.problem(
                "chunk-corrupt",
                Space::Chunks,
                &k,
                "content does not match its BLAKE3 hash".into(),
            );
            continue;
        }
        if v.is_empty() || v.len() > crate::types::CHUNK_MAX {
            c.problem(
                "chunk-size",
                Space::Chunks,
                &k,
                format!("chunk of {} bytes", v.len()),
            );
        }
        chunk_len.insert(h, v.len() as u32);
    }

    // Nodes.
    let mut nodes: BTreeMap<Ino, NodeInfo> = BTreeMap::new();
    let mut max_ino = 0;
    for r in scan(engine, Space::Nodes) {
        let (k, v) = r?;
        c.hashed(Space::Nodes, &k, &v);
        c.report.stats.nodes += 1;
        progress("nodes", c.report.stats.nodes);
        let Some(ino) = be_u64(&k).filter(|_| k.len() == 8) else {
            c.problem(
                "node-key",
                Space::Nodes,
                &k,
                "key is not an inode number".into(),
            );
            continue;
        };
        let n = match records::decode_node(ino, &v) {
            Ok(n) => n,
            Err(e) => {
                c.problem("node-corrupt", Space::Nodes, &k, e.to_string());
                continue;
            }
        };
        max_ino = max_ino.max(ino);
        if n.id != crate::types::NodeId::derive(&engine.workspace(), ino) {
            c.problem(
                "node-id",
                Space::Nodes,
                &k,
                "node id does not derive from the inode number".into(),
            );
        }
        match n.kind {
            FileKind::Symlink if n.target.is_empty() || n.size != n.target.len() as u64 => {
                c.problem(
                    "node-symlink",
                    Space::Nodes,
                    &k,
                    "symlink size differs from its target".into(),
                );
            }
            FileKind::Dir
                if n.size
                    != crate::apply::DIR_BASE_SIZE + crate::apply::DIR_ENTRY_SIZE * n.entries =>
            {
                c.problem(
                    "node-dirsize",
                    Space::Nodes,
                    &k,
                    "directory size disagrees with its entries".into(),
                );
            }
            _ => {}
        }
        nodes.insert(
            ino,
            NodeInfo {
                kind: n.kind,
                nlink: n.nlink,
                parent: n.parent,
                entries: n.entries,
                size: n.size,
                names: 0,
                subdirs: 0,
                children: 0,
                named_in: None,
                orphan: false,
            },
        );
    }
    if max_ino >= meta.next_ino {
        c.problem(
            "meta-next-ino",
            Space::Meta,
            keys::meta::NEXT_INO,
            format!(
                "next inode number {} is not above the largest inode {max_ino}",
                meta.next_ino
            ),
        );
    }
    if meta.nodes != c.report.stats.nodes {
        c.problem(
            "meta-node-count",
            Space::Meta,
            keys::meta::NODES,
            format!(
                "node count {} but {} node records",
                meta.nodes, c.report.stats.nodes
            ),
        );
    }
    let bytes: u64 = nodes
        .values()
        .filter(|n| n.kind == FileKind::File)
        .map(|n| n.size)
        .sum();
    if meta.bytes != bytes {
        c.problem(
            "meta-bytes",
            Space::Meta,
            keys::meta::BYTES,
            format!("logical bytes {} but files sum to {bytes}", meta.bytes),
        );
    }

    // Directory entries, with the reverse link index.
    for r in scan(engine, Space::Dirents) {
        let (k, v) = r?;
        c.hashed(Space::Dirents, &k, &v);
        c.report.stats.dirents += 1;
        progress("dirents", c.report.stats.dirents);
        let Some(parent) = be_u64(&k) else {
            c.problem("dirent-key", Space::Dirents, &k, "key too short".into());
            continue;
        };
        let name = &k[8..];
        if let Err(e) = check_name(name) {
            c.problem(
                "dirent-name",
                Space::Dirents,
                &k,
                format!("invalid name ({e})"),
            );
        }
        let (child, kind) = match records::decode_dirent(&v) {
            Ok(x) => x,
            Err(e) => {
                c.problem("dirent-corrupt", Space::Dirents, &k, e.to_string());
                continue;
            }
        };
        match nodes.get_mut(&parent) {
            Some(p) if p.kind == FileKind::Dir => {
                p.children += 1;
                if kind == FileKind::Dir {
                    p.subdirs += 1;
                }
            }
            Some(_) => c.problem(
                "dirent-parent",
                Space::Dirents,
                &k,
                format!("parent {parent} is not a directory"),
            ),
            None => c.problem(
                "dirent-parent",
                Space::Dirents,
                &k,
                format!("parent {parent} does not exist"),
            ),
        }
        match nodes.get_mut(&child) {
            None => c.problem(
                "dirent-dangling",
                Space::Dirents,
                &k,
                format!("points at missing inode {child}"),
            ),
            Some(n) => {
                n.names += 1;
                if n.kind != kind {
                    c.problem(
                        "dirent-kind",
                        Space::Dirents,
                        &k,
                        format!("says {kind:?}, inode {child} is {:?}", n.kind),
                    );
                }
                if n.kind == FileKind::Dir {
                    if n.named_in.is_some() {
                        c.problem(
                            "dir-hardlink",
                            Space::Dirents,
                            &k,
                            format!("directory {child} has several names"),
                        );
                    }
                    n.named_in = Some(parent);
                    if n.parent != parent {
                        c.problem(
                            "dir-parent",
                            Space::Nodes,
                            &keys::ino_key(child),
                            format!("parent pointer {} but named in {parent}", n.parent),
                        );
                    }
                }
            }
        }
        if !engine
            .backend()
            .contains(Space::Links, &keys::link_key(child, parent, name))?
        {
            c.problem(
                "link-missing",
                Space::Dirents,
                &k,
                "no reverse link record".into(),
            );
        }
    }
    let mut links = 0u64;
    for r in scan(engine, Space::Links) {
        let (k, _) = r?;
        links += 1;
        let (Some(ino), Some(parent)) = (be_u64(&k), k.get(8..).and_then(be_u64)) else {
            c.problem("link-key", Space::Links, &k, "key too short".into());
            continue;
        };
        let name = &k[16..];
        let ok = engine
            .backend()
            .get(Space::Dirents, &keys::dirent_key(parent, name))?
            .and_then(|v| records::decode_dirent(&v).ok())
            .is_some_and(|(c, _)| c == ino);
        if !ok {
            c.problem(
                "link-stale",
                Space::Links,
                &k,
                "reverse link without a matching entry".into(),
            );
        }
    }
    let _ = links;

    // Orphans.
    for r in scan(engine, Space::Orphans) {
        let (k, v) = r?;
        c.hashed(Space::Orphans, &k, &v);
        let ino = be_u64(&k).unwrap_or(0);
        match nodes.get_mut(&ino) {
            Some(n) if n.nlink == 0 => n.orphan = true,
            Some(_) => c.problem(
                "orphan-linked",
                Space::Orphans,
                &k,
                "orphan record on a linked node".into(),
            ),
            None => c.problem(
                "orphan-dangling",
                Space::Orphans,
                &k,
                "orphan record without a node".into(),
            ),
        }
    }

    // Link counts, entry counts, reachability, cycles.
    let mut problems = Vec::new();
    for (&ino, n) in &nodes {
        let key = keys::ino_key(ino);
        let expected = match n.kind {
            FileKind::Dir => 2 + n.subdirs as u32,
            _ => n.names as u32,
        };
        if n.nlink != expected {
            problems.push((
                "nlink-mismatch",
                key,
                format!("nlink {} but {expected} by the entries", n.nlink),
            ));
        }
        if n.kind == FileKind::Dir && n.entries != n.children {
            problems.push((
                "entries-mismatch",
                key,
                format!("entry count {} but {} entries", n.entries, n.children),
            ));
        }
        if ino != ROOT_INO && n.names == 0 && !n.orphan {
            problems.push((
                "orphan-unrecorded",
                key,
                "node is unreachable and has no orphan record".to_string(),
            ));
        }
        if n.kind == FileKind::Dir {
            // Walk up to the root; more steps than nodes means a cycle.
            let (mut cur, mut steps) = (ino, 0usize);
            while cur != ROOT_INO {
                steps += 1;
                match nodes.get(&cur) {
                    Some(d) if steps <= nodes.len() => cur = d.parent,
                    _ => {
                        problems.push((
                            "cycle",
                            key,
                            "directory does not lead to the root".to_string(),
                        ));
                        break;
                    }
                }
            }
        }
    }
    if !nodes
        .get(&ROOT_INO)
        .is_some_and(|r| r.kind == FileKind::Dir && r.parent == ROOT_INO)
    {
        problems.push((
            "root",
            keys::ino_key(ROOT_INO),
            "root directory missing or malformed".to_string(),
        ));
    }
    for (kind, key, msg) in problems {
        c.problem(kind, Space::Nodes, &key, msg);
    }

    // Extents.
    let mut prev: Option<(Ino, Extent)> = None;
    for r in scan(engine, Space::Extents) {
        let (k, v) = r?;
        c.hashed(Space::Extents, &k, &v);
        c.report.stats.extents += 1;
        progress("extents", c.report.stats.extents);
        let e = match records::decode_extent(&k, &v) {
            Ok(e) => e,
            Err(e) => {
                c.problem("extent-corrupt", Space::Extents, &k, e.to_string());
                continue;
            }
        };
        let ino = be_u64(&k).expect("16-byte key");
        match nodes.get(&ino) {
            Some(n) if n.kind == FileKind::File => {
                if e.end > n.size {
                    c.problem(
                        "extent-past-eof",
                        Space::Extents,
                        &k,
                        format!("ends at {} past size {}", e.end, n.size),
                    );
                }
            }
            _ => c.problem(
                "extent-owner",
                Space::Extents,
                &k,
                format!("inode {ino} is not a regular file"),
            ),
        }
        match chunk_len.get(&e.hash) {
            None => c.problem(
                "chunk-missing",
                Space::Extents,
                &k,
                format!("chunk {} missing or corrupt", hex::encode(e.hash)),
            ),
            Some(&len) if u64::from(e.chunk_off) + e.len() > u64::from(len) => {
                c.problem(
                    "extent-overrun",
                    Space::Extents,
                    &k,
                    format!("reads past the end of a {len}-byte chunk"),
                );
            }
            Some(_) => {}
        }
        if let Some((pino, p)) = prev
            && pino == ino
        {
            if e.start < p.end {
                c.problem(
                    "extent-overlap",
                    Space::Extents,
                    &k,
                    format!("starts at {} before the previous end {}", e.start, p.end),
                );
            } else if p.mergeable(&e) {
                c.problem(
                    "extent-unnormalized",
                    Space::Extents,
                    &k,
                    "should be merged with the previous extent".into(),
                );
            }
        }
        prev = Some((ino, e));
    }

    // Xattrs.
    let mut xtotal: BTreeMap<Ino, usize> = BTreeMap::new();
    for r in scan(engine, Space::Xattrs) {
        let (k, v) = r?;
        c.hashed(Space::Xattrs, &k, &v);
        c.report.stats.xattrs += 1;
        let ino = be_u64(&k).unwrap_or(0);
        let name = k.get(8..).unwrap_or_default();
        if !nodes.contains_key(&ino) {
            c.problem(
                "xattr-owner",
                Space::Xattrs,
                &k,
                format!("inode {ino} does not exist"),
            );
        }
        if name.is_empty() || name.len() > crate::types::XATTR_NAME_MAX || v.len() > XATTR_VALUE_MAX
        {
            c.problem(
                "xattr-limits",
                Space::Xattrs,
                &k,
                "name or value outside the limits".into(),
            );
        }
        *xtotal.entry(ino).or_default() += name.len() + v.len();
    }
    for (ino, t) in xtotal {
        if t > XATTR_TOTAL_MAX {
            c.problem(
                "xattr-total",
                Space::Xattrs,
                &keys::ino_key(ino),
                format!("{t} bytes of xattrs"),
            );
        }
    }

    // Log continuity and the dedupe map.
    let mut last: Option<LogEntry> = None;
    let mut log_ops: HashMap<u64, ([u8; 16], crate::types::IntentId, Hash)> = HashMap::new();
    for r in scan(engine, Space::Log) {
        let (k, v) = r?;
        c.report.stats.log_entries += 1;
        progress("log", c.report.stats.log_entries);
        let e = match LogEntry::decode(&v) {
            Ok(e) => e,
            Err(err) => {
                c.problem("log-corrupt", Space::Log, &k, err.to_string());
                continue;
            }
        };
        if be_u64(&k) != Some(e.index) || k.len() != 8 {
            c.problem(
                "log-key",
                Space::Log,
                &k,
                format!("entry {} stored under another key", e.index),
            );
        }
        if let Some(p) = &last {
            if e.index != p.index + 1 {
                c.problem(
                    "log-gap",
                    Space::Log,
                    &k,
                    format!("index {} follows {}", e.index, p.index),
                );
            }
            if e.committed_at <= p.committed_at {
                c.problem(
                    "log-time",
                    Space::Log,
                    &k,
                    "committed_at does not increase".into(),
                );
            }
        } else if e.index != 1 {
            c.problem(
                "log-gap",
                Space::Log,
                &k,
                format!("log starts at {}", e.index),
            );
        }
        log_ops.insert(e.index, (e.op_id, e.intent, e.root));
        last = Some(e);
    }
    match &last {
        Some(e) => {
            if e.index != meta.applied {
                c.problem(
                    "log-end",
                    Space::Meta,
                    keys::meta::APPLIED,
                    format!(
                        "applied index {} but the log ends at {}",
                        meta.applied, e.index
                    ),
                );
            }
            if e.root != meta.root {
                c.problem(
                    "log-root",
                    Space::Log,
                    &e.index.to_be_bytes(),
                    "last entry's root differs from the stored root".into(),
                );
            }
        }
        None if meta.applied != 0 => {
            c.problem(
                "log-end",
                Space::Meta,
                keys::meta::APPLIED,
                "applied index set but the log is empty".into(),
            );
        }
        None => {}
    }
    for r in scan(engine, Space::Dedupe) {
        let (k, v) = r?;
        c.report.stats.dedupe += 1;
        let ack = match Ack::decode(&v) {
            Ok(a) => a,
            Err(e) => {
                c.problem("dedupe-corrupt", Space::Dedupe, &k, e.to_string());
                continue;
            }
        };
        let ok = log_ops
            .get(&ack.index)
            .is_some_and(|(op_id, intent, root)| {
                *op_id == ack.op_id
                    && keys::dedupe_key(intent).as_slice() == k.as_ref()
                    && *root == ack.root
            });
        if !ok {
            c.problem(
                "dedupe-invalid",
                Space::Dedupe,
                &k,
                format!("ack for index {} matches no log entry", ack.index),
            );
        }
    }

    // Merkle: recompute the root and the canonical branches from scratch.
    progress("merkle", 0);
    let mut items = std::mem::take(&mut c.merkle_items);
    items.sort_unstable();
    let computed = root_from_sorted(&items);
    c.report.stats.root_computed = hex::encode(computed);
    if computed != meta.root {
        c.problem(
            "merkle-root",
            Space::Meta,
            keys::meta::ROOT,
            "stored root differs from the root of the records".into(),
        );
    }
    let canonical = branches_from_sorted(&items);
    drop(items);
    let mut want = canonical.into_iter().peekable();
    let mut merkle_problems = Vec::new();
    for r in scan(engine, Space::Merkle) {
        let (k, v) = r?;
        c.report.stats.merkle_branches += 1;
        let Some(path) = NodePath::from_key(&k) else {
            merkle_problems.push((
                "merkle-node",
                k.to_vec(),
                "undecodable position".to_string(),
            ));
            continue;
        };
        while let Some((p, _)) = want.peek()
            && *p < path
        {
            let (p, _) = want.next().expect("peeked");
            merkle_problems.push(("merkle-node", p.to_key(), "branch missing".to_string()));
        }
        match want.peek() {
            Some((p, b)) if *p == path => {
                if Branch::decode(&v).as_ref() != Ok(b) {
                    merkle_problems.push((
                        "merkle-node",
                        k.to_vec(),
                        "stale or corrupt branch".to_string(),
                    ));
                }
                want.next();
            }
            _ => merkle_problems.push((
                "merkle-node",
                k.to_vec(),
                "branch not in the canonical trie".to_string(),
            )),
        }
    }
    for (p, _) in want {
        merkle_problems.push(("merkle-node", p.to_key(), "branch missing".to_string()));
    }
    for (kind, key, msg) in merkle_problems {
        c.problem(kind, Space::Merkle, &key, msg);
    }
    // The flush at the start deleted every delta record.
    for r in scan(engine, Space::MerkleDelta) {
        let (k, _) = r?;
        c.problem(
            "merkle-delta",
            Space::MerkleDelta,
            &k,
            "delta record left after a flush".into(),
        );
    }
    Ok(c.report)
}

/// A record and its Merkle proof.
#[derive(Clone, Debug, Serialize)]
pub struct RecordProof {
    /// Space of the record.
    pub space: &'static str,
    /// Key, hex.
    pub key: String,
    /// Value, hex.
    pub value: String,
    /// Proof steps (root first): present bitmap and sibling hashes, hex.
    pub steps: Vec<(u16, Vec<String>)>,
    #[serde(skip)]
    proof: Proof,
    #[serde(skip)]
    raw: (Space, Vec<u8>, Vec<u8>),
}

/// Proof that a path resolves, entry by entry, to a node with the given
/// attributes under a root.
#[derive(Clone, Debug, Serialize)]
pub struct PathProof {
    /// The path.
    pub path: String,
    /// Root the proof is against, hex.
    pub root: String,
    /// Applied index of that root.
    pub index: u64,
    /// The directory entries along the path, then the final node record.
    pub records: Vec<RecordProof>,
}

/// Builds a [`PathProof`] for `path` (resolved without following symlinks).
pub fn prove_path(engine: &Engine, path: &[u8]) -> Result<PathProof, EngineError> {
    let chain = engine.resolve(path)?;
    let status = engine.status().meta;
    let mut records = Vec::new();
    let mut add = |space: Space, key: Vec<u8>| -> Result<(), EngineError> {
        let value = engine
            .backend()
            .get(space, &key)?
            .ok_or_else(|| EngineError::Corrupt("record vanished".into()))?
            .to_vec();
        let proof = engine.prove(space, &key)?;
        records.push(RecordProof {
            space: space.name(),
            key: hex::encode(&key),
            value: hex::encode(&value),
            steps: proof
                .steps
                .iter()
                .map(|s| (s.present, s.siblings.iter().map(hex::encode).collect()))
                .collect(),
            proof,
            raw: (space, key, value),
        });
        Ok(())
    };
    for w in chain.windows(2) {
        add(Space::Dirents, keys::dirent_key(w[0].0, &w[1].1))?;
    }
    let last = chain.last().expect("root").0;
    add(Space::Nodes, keys::ino_key(last).to_vec())?;
    Ok(PathProof {
        path: String::from_utf8_lossy(path).into_owned(),
        root: hex::encode(status.root),
        index: status.applied,
        records,
    })
}

/// Verifies a [`PathProof`] against `root`: every record is proven, and each
/// entry leads to the next one's directory and finally to the node.
pub fn verify_path_proof(p: &PathProof, root: &Hash) -> Result<(), String> {
    let mut expect_parent = ROOT_INO;
    for (i, r) in p.records.iter().enumerate() {
        let (space, key, value) = &r.raw;
        if r.proof.key != keys::record_key_hash(*space, key) || r.proof.terminal != Terminal::Found
        {
            return Err(format!("record {i}: proof is not for this record"));
        }
        r.proof
            .verify(root, Some(&keys::record_value_hash(value)))
            .map_err(|e| format!("record {i}: {e}"))?;
        let owner = be_u64(key).ok_or("short key")?;
        if owner != expect_parent {
            return Err(format!(
                "record {i}: belongs to inode {owner}, expected {expect_parent}"
            ));
        }
        if *space == Space::Dirents {
            expect_parent = records::decode_dirent(value).map_err(|e| e.to_string())?.0;
        }
    }
    Ok(())
}
