//! Property tests: random op sequences applied to the engine and to a plain
//! in-memory reference model must agree after every step (results, errnos,
//! the whole visible tree); fsck stays clean; replaying the log on a second
//! engine reproduces every root; different histories reaching the same
//! state give the same root.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use hsfs_engine::op::{Op, OpResult, RenameMode, SetAttr, WriteAt, XattrMode};
use hsfs_engine::store::mem::MemBackend;
use hsfs_engine::{Engine, Errno, FileKind, Ino, ROOT_INO};
use proptest::prelude::*;

const NAMES: [&str; 5] = ["a", "b", "c", "dd", "e.txt"];
const XNAMES: [&str; 3] = ["user.x", "user.y", "trusted.z"];

#[derive(Clone, Debug)]
struct MNode {
    kind: FileKind,
    perm: u32,
    nlink: u32,
    data: Vec<u8>,
    target: Vec<u8>,
    entries: BTreeMap<Vec<u8>, Ino>,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    parent: Ino,
    mtime: i64,
    ctime: i64,
}

impl MNode {
    fn new(kind: FileKind, perm: u32, now: i64) -> MNode {
        MNode {
            kind,
            perm,
            nlink: if kind == FileKind::Dir { 2 } else { 1 },
            data: Vec::new(),
            target: Vec::new(),
            entries: BTreeMap::new(),
            xattrs: BTreeMap::new(),
            parent: 0,
            mtime: now,
            ctime: now,
        }
    }
}

struct Model {
    nodes: BTreeMap<Ino, MNode>,
    next: Ino,
}

type MR = Result<OpResult, Errno>;

impl Model {
    fn new(now: i64) -> Model {
        let mut root = MNode::new(FileKind::Dir, 0o755, now);
        root.parent = ROOT_INO;
        Model {
            nodes: BTreeMap::from([(ROOT_INO, root)]),
            next: 2,
        }
    }

    fn dir(&self, ino: Ino) -> Result<&MNode, Errno> {
        let n = self.nodes.get(&ino).ok_or(Errno::ENOENT)?;
        if n.kind != FileKind::Dir {
            return Err(Errno::ENOTDIR);
        }
        Ok(n)
    }

    fn touch_dir(&mut self, d: Ino, now: i64) {
        let n = self.nodes.get_mut(&d).unwrap();
        n.mtime = now;
        n.ctime = now;
    }

    fn add(&mut self, parent: Ino, name: &[u8], kind: FileKind, perm: u32, now: i64) -> Ino {
        let ino = self.next;
        self.next += 1;
        let setgid = self.nodes[&parent].perm & 0o2000 != 0;
        let perm = if setgid && kind == FileKind::Dir {
            perm | 0o2000
        } else {
            perm
        };
        let mut n = MNode::new(kind, perm, now);
        if kind == FileKind::Dir {
            n.parent = parent;
            self.nodes.get_mut(&parent).unwrap().nlink += 1;
        }
        self.nodes.insert(ino, n);
        self.nodes
            .get_mut(&parent)
            .unwrap()
            .entries
            .insert(name.to_vec(), ino);
        self.touch_dir(parent, now);
        ino
    }

    fn drop_link(&mut self, ino: Ino, now: i64) {
        let n = self.nodes.get_mut(&ino).unwrap();
        n.nlink -= 1;
        n.ctime = now;
        if n.nlink == 0 {
            self.nodes.remove(&ino);
        }
    }

    fn within(&self, mut d: Ino, anc: Ino) -> bool {
        loop {
            if d == anc {
                return true;
            }
            if d == ROOT_INO {
                return false;
            }
            d = self.nodes[&d].parent;
        }
    }

    fn create(
        &mut self,
        p: Ino,
        name: &[u8],
        kind: FileKind,
        excl: bool,
        trunc: bool,
        now: i64,
    ) -> MR {
        self.dir(p)?;
        if let Some(&ino) = self.nodes[&p].entries.get(name) {
            if excl {
                return Err(Errno::EEXIST);
            }
            if self.nodes[&ino].kind == FileKind::Dir {
                return Err(Errno::EISDIR);
            }
            if trunc && self.nodes[&ino].kind == FileKind::File {
                let n = self.nodes.get_mut(&ino).unwrap();
                n.data.clear();
                n.mtime = now;
                n.ctime = now;
            }
            return Ok(OpResult::Node {
                ino,
                created: false,
            });
        }
        let perm = if kind == FileKind::Dir { 0o755 } else { 0o644 };
        let ino = self.add(p, name, kind, perm, now);
        Ok(OpResult::Node { ino, created: true })
    }

    fn symlink(&mut self, p: Ino, name: &[u8], now: i64) -> MR {
        self.dir(p)?;
        if self.nodes[&p].entries.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.add(p, name, FileKind::Symlink, 0o777, now);
        self.nodes.get_mut(&ino).unwrap().target = b"target/x".to_vec();
        Ok(OpResult::Node { ino, created: true })
    }

    fn link(&mut self, ino: Ino, p: Ino, name: &[u8], now: i64) -> MR {
        let n = self.nodes.get(&ino).ok_or(Errno::ENOENT)?;
        if n.kind == FileKind::Dir {
            return Err(Errno::EPERM);
        }
        self.dir(p)?;
        if self.nodes[&p].entries.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        self.nodes
            .get_mut(&p)
            .unwrap()
            .entries
            .insert(name.to_vec(), ino);
        self.touch_dir(p, now);
        let n = self.nodes.get_mut(&ino).unwrap();
        n.nlink += 1;
        n.ctime = now;
        Ok(OpResult::Node {
            ino,
            created: false,
        })
    }

    fn unlink(&mut self, p: Ino, name: &[u8], now: i64) -> MR {
        self.dir(p)?;
        let &ino = self.nodes[&p].entries.get(name).ok_or(Errno::ENOENT)?;
        if self.nodes[&ino].kind == FileKind::Dir {
            return Err(Errno::EISDIR);
        }
        self.nodes.get_mut(&p).unwrap().entries.remove(name);
        self.touch_dir(p, now);
        self.drop_link(ino, now);
        Ok(OpResult::Done)
    }

    fn rmdir(&mut self, p: Ino, name: &[u8], now: i64) -> MR {
        self.dir(p)?;
        let &ino = self.nodes[&p].entries.get(name).ok_or(Errno::ENOENT)?;
        if self.nodes[&ino].kind != FileKind::Dir {
            return Err(Errno::ENOTDIR);
        }
        if !self.nodes[&ino].entries.is_empty() {
            return Err(Errno::ENOTEMPTY);
        }
        self.nodes.get_mut(&p).unwrap().entries.remove(name);
        self.nodes.get_mut(&p).unwrap().nlink -= 1;
        self.touch_dir(p, now);
        self.nodes.remove(&ino);
        Ok(OpResult::Done)
    }

    fn rename(&mut self, p: Ino, n: &[u8], q: Ino, m: &[u8], mode: RenameMode, now: i64) -> MR {
        self.dir(p)?;
        self.dir(q)?;
        let &src = self.nodes[&p].entries.get(n).ok_or(Errno::ENOENT)?;
        let dst = self.nodes[&q].entries.get(m).copied();
        match (mode, dst) {
            (RenameMode::NoReplace, Some(_)) => return Err(Errno::EEXIST),
            (RenameMode::Exchange, None) => return Err(Errno::ENOENT),
            _ => {}
        }
        let src_dir = self.nodes[&src].kind == FileKind::Dir;
        if src_dir && self.within(q, src) {
            return Err(Errno::EINVAL);
        }
        if let Some(d) = dst {
            if d == src {
                return Ok(OpResult::Done);
            }
            let dst_dir = self.nodes[&d].kind == FileKind::Dir;
            if mode == RenameMode::Exchange {
                if dst_dir && self.within(p, d) {
                    return Err(Errno::EINVAL);
                }
                self.nodes
                    .get_mut(&p)
                    .unwrap()
                    .entries
                    .insert(n.to_vec(), d);
                self.nodes
                    .get_mut(&q)
                    .unwrap()
                    .entries
                    .insert(m.to_vec(), src);
                if p != q {
                    let delta = src_dir as i64 - dst_dir as i64;
                    let pn = self.nodes.get_mut(&p).unwrap();
                    pn.nlink = (pn.nlink as i64 - delta) as u32;
                    let qn = self.nodes.get_mut(&q).unwrap();
                    qn.nlink = (qn.nlink as i64 + delta) as u32;
                }
                self.touch_dir(p, now);
                self.touch_dir(q, now);
                for (ino, np) in [(src, q), (d, p)] {
                    let x = self.nodes.get_mut(&ino).unwrap();
                    x.ctime = now;
                    if x.kind == FileKind::Dir {
                        x.parent = np;
                    }
                }
                return Ok(OpResult::Done);
            }
            match (src_dir, dst_dir) {
                (true, false) => return Err(Errno::ENOTDIR),
                (false, true) => return Err(Errno::EISDIR),
                _ => {}
            }
            if dst_dir && !self.nodes[&d].entries.is_empty() {
                return Err(Errno::ENOTEMPTY);
            }
            self.nodes.get_mut(&q).unwrap().entries.remove(m);
            if dst_dir {
                self.nodes.get_mut(&q).unwrap().nlink -= 1;
                self.nodes.remove(&d);
            } else {
                self.drop_link(d, now);
            }
        }
        self.nodes.get_mut(&p).unwrap().entries.remove(n);
        self.nodes
            .get_mut(&q)
            .unwrap()
            .entries
            .insert(m.to_vec(), src);
        if src_dir && p != q {
            self.nodes.get_mut(&p).unwrap().nlink -= 1;
            self.nodes.get_mut(&q).unwrap().nlink += 1;
            self.nodes.get_mut(&src).unwrap().parent = q;
        }
        self.touch_dir(p, now);
        self.touch_dir(q, now);
        self.nodes.get_mut(&src).unwrap().ctime = now;
        Ok(OpResult::Done)
    }

    fn write(&mut self, ino: Ino, at: WriteAt, data: &[u8], now: i64) -> MR {
        let n = self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
        match n.kind {
            FileKind::File => {}
            FileKind::Dir => return Err(Errno::EISDIR),
            _ => return Err(Errno::EINVAL),
        }
        let off = match at {
            WriteAt::Offset(o) => o as usize,
            WriteAt::Append => n.data.len(),
        };
        if data.is_empty() {
            return Ok(OpResult::Written {
                offset: off as u64,
                len: 0,
            });
        }
        if n.data.len() < off + data.len() {
            n.data.resize(off + data.len(), 0);
        }
        n.data[off..off + data.len()].copy_from_slice(data);
        n.mtime = now;
        n.ctime = now;
        Ok(OpResult::Written {
            offset: off as u64,
            len: data.len() as u64,
        })
    }

    fn setattr(&mut self, ino: Ino, perm: Option<u32>, size: Option<u64>, now: i64) -> MR {
        let n = self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
        if let Some(s) = size {
            match n.kind {
                FileKind::File => {}
                FileKind::Dir => return Err(Errno::EISDIR),
                _ => return Err(Errno::EINVAL),
            }
            n.data.resize(s as usize, 0);
            n.mtime = now;
        }
        if let Some(p) = perm {
            n.perm = p;
        }
        n.ctime = now;
        Ok(OpResult::Done)
    }

    fn setxattr(&mut self, ino: Ino, name: &[u8], value: &[u8], mode: XattrMode, now: i64) -> MR {
        let n = self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
        match (mode, n.xattrs.contains_key(name)) {
            (XattrMode::Create, true) => return Err(Errno::EEXIST),
            (XattrMode::Replace, false) => return Err(Errno::ENODATA),
            _ => {}
        }
        n.xattrs.insert(name.to_vec(), value.to_vec());
        n.ctime = now;
        Ok(OpResult::Done)
    }

    fn removexattr(&mut self, ino: Ino, name: &[u8], now: i64) -> MR {
        let n = self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
        if n.xattrs.remove(name).is_none() {
            return Err(Errno::ENODATA);
        }
        n.ctime = now;
        Ok(OpResult::Done)
    }
}

/// An abstract action; indices pick among live inodes when it runs.
#[derive(Clone, Debug)]
enum Act {
    Create(usize, usize, bool, bool),
    Mkdir(usize, usize),
    Symlink(usize, usize),
    Mknod(usize, usize),
    Link(usize, usize, usize),
    Unlink(usize, usize),
    Rmdir(usize, usize),
    Rename(usize, usize, usize, usize, u8),
    Write(usize, u32, u32, u8, bool),
    Truncate(usize, u32),
    Chmod(usize, u16),
    SetX(usize, usize, u16, u8),
    RmX(usize, usize),
    Missing(u8),
}

fn act() -> impl Strategy<Value = Act> {
    let i = 0usize..64;
    let n = 0usize..NAMES.len();
    prop_oneof![
        4 => (i.clone(), n.clone(), any::<bool>(), any::<bool>()).prop_map(|(a, b, c, d)| Act::Create(a, b, c, d)),
        3 => (i.clone(), n.clone()).prop_map(|(a, b)| Act::Mkdir(a, b)),
        1 => (i.clone(), n.clone()).prop_map(|(a, b)| Act::Symlink(a, b)),
        1 => (i.clone(), n.clone()).prop_map(|(a, b)| Act::Mknod(a, b)),
        2 => (i.clone(), i.clone(), n.clone()).prop_map(|(a, b, c)| Act::Link(a, b, c)),
        3 => (i.clone(), n.clone()).prop_map(|(a, b)| Act::Unlink(a, b)),
        2 => (i.clone(), n.clone()).prop_map(|(a, b)| Act::Rmdir(a, b)),
        4 => (i.clone(), n.clone(), i.clone(), n.clone(), 0u8..3).prop_map(|(a, b, c, d, e)| Act::Rename(a, b, c, d, e)),
        6 => (i.clone(), 0u32..200_000, 0u32..140_000, any::<u8>(), prop::bool::weighted(0.2))
            .prop_map(|(a, b, c, d, e)| Act::Write(a, b, c, d, e)),
        2 => (i.clone(), 0u32..200_000).prop_map(|(a, b)| Act::Truncate(a, b)),
        1 => (i.clone(), 0u16..0o7777).prop_map(|(a, b)| Act::Chmod(a, b)),
        2 => (i.clone(), 0usize..XNAMES.len(), 0u16..300, 0u8..3).prop_map(|(a, b, c, d)| Act::SetX(a, b, c, d)),
        1 => (i.clone(), 0usize..XNAMES.len()).prop_map(|(a, b)| Act::RmX(a, b)),
        1 => any::<u8>().prop_map(Act::Missing),
    ]
}

fn bytes(len: u32, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64 * 31 + u64::from(seed)) % 251) as u8)
        .collect()
}

/// Runs one action on both sides; returns (engine result, model result).
fn step(h: &mut H, m: &mut Model, a: &Act) -> (MR, MR) {
    let live: Vec<Ino> = m.nodes.keys().copied().collect();
    let pick = |i: usize| live[i % live.len()];
    let name = |i: usize| NAMES[i].as_bytes().to_vec();
    let (op, chunks, data) = match a {
        Act::Create(p, n, excl, trunc) => (
            Op::Create {
                parent: pick(*p),
                name: name(*n),
                kind: FileKind::File,
                perm: 0o644,
                uid: 0,
                gid: 0,
                excl: *excl,
                truncate: *trunc,
            },
            hsfs_engine::chunks::Payload::none(),
            vec![],
        ),
        Act::Mknod(p, n) => (
            Op::Create {
                parent: pick(*p),
                name: name(*n),
                kind: FileKind::Fifo,
                perm: 0o644,
                uid: 0,
                gid: 0,
                excl: true,
                truncate: false,
            },
            hsfs_engine::chunks::Payload::none(),
            vec![],
        ),
        Act::Mkdir(p, n) => (
            Op::Mkdir {
                parent: pick(*p),
                name: name(*n),
                perm: 0o755,
                uid: 0,
                gid: 0,
            },
            hsfs_engine::chunks::Payload::none(),
            vec![],
        ),
        Act::Symlink(p, n) => (
            Op::Symlink {
                parent: pick(*p),
                name: name(*n),
                target: b"target/x".to_vec(),
                uid: 0,
                gid: 0,
            },
            hsfs_engine::chunks::Payload::none(),
            vec![],
        ),
        Act::Link(f, p, n) => (
            Op::Link {
                ino: pick(*f),
                parent: pick(*p),
                name: name(*n),
            },
            hsfs_engine::chunks::Payload::none(),
            vec![],
        ),
        Act::Unlink(p, n) => (
            Op::Unlink {
                parent: pick(*p),
                name: name(*n),
                keep_orphan: false,
            },
            hsfs_engine::chunks::Payload::none(),
            vec![],
        ),
        Act::Rmdir(p, n) => (
            Op::Rmdir {
                parent: pick(*p),
                name: name(*n),
            },
            hsfs_engine::chunks::Payload::none(),
            vec![],
        ),
        Act::Rename(p, n, q, k, mode) => (
            Op::Rename {
                parent: pick(*p),
                name: name(*n),
                new_parent: pick(*q),
                new_name: name(*k),
                mode: [
                    RenameMode::Replace,
                    RenameMode::NoReplace,
                    RenameMode::Exchange,
                ][*mode as usize],
                keep_orphan: false,
            },
            hsfs_engine::chunks::Payload::none(),
            vec![],
        ),
        Act::Write(f, off, len, seed, append) => {
            let data = bytes(*len, *seed);
            let at = if *append {
                WriteAt::Append
            } else {
                WriteAt::Offset(u64::from(*off))
            };
            let (refs, bs) = chunked(if *append { 0 } else { u64::from(*off) }, &data);
            (
                Op::Write {
                    ino: pick(*f),
                    at,
                    chunks: refs,
                },
                bs,
                data,
            )
        }
        Act::Truncate(f, s) => (
            Op::SetAttr {
                ino: pick(*f),
                attr: SetAttr {
                    size: Some(u64::from(*s)),
                    ..SetAttr::default()
                },
            },
            hsfs_engine::chunks::Payload::none(),
            vec![],
        ),
        Act::Chmod(f, p) => (
            Op::SetAttr {
                ino: pick(*f),
                attr: SetAttr {
                    perm: Some(u32::from(*p)),
                    ..SetAttr::default()
                },
            },
            hsfs_engine::chunks::Payload::none(),
            vec![],
        ),
        Act::SetX(f, x, len, mode) => (
            Op::SetXattr {
                ino: pick(*f),
                name: XNAMES[*x].as_bytes().to_vec(),
                value: bytes(u32::from(*len), 1),
                mode: [XattrMode::Upsert, XattrMode::Create, XattrMode::Replace][*mode as usize],
            },
            hsfs_engine::chunks::Payload::none(),
            vec![],
        ),
        Act::RmX(f, x) => (
            Op::RemoveXattr {
                ino: pick(*f),
                name: XNAMES[*x].as_bytes().to_vec(),
            },
            hsfs_engine::chunks::Payload::none(),
            vec![],
        ),
        Act::Missing(k) => (
            Op::Unlink {
                parent: 10_000 + u64::from(*k),
                name: b"a".to_vec(),
                keep_orphan: false,
            },
            hsfs_engine::chunks::Payload::none(),
            vec![],
        ),
    };
    let got = h.run_with(op.clone(), chunks);
    let now = got.as_ref().map(|a| a.committed_at).unwrap_or(0);
    let want = match (a, &op) {
        (
            Act::Create(..) | Act::Mknod(..) | Act::Mkdir(..),
            Op::Create {
                parent,
                name,
                kind,
                excl,
                truncate,
                ..
            },
        ) => m.create(*parent, name, *kind, *excl, *truncate, now),
        (_, Op::Mkdir { parent, name, .. }) => {
            m.create(*parent, name, FileKind::Dir, true, false, now)
        }
        (_, Op::Symlink { parent, name, .. }) => m.symlink(*parent, name, now),
        (_, Op::Link { ino, parent, name }) => m.link(*ino, *parent, name, now),
        (_, Op::Unlink { parent, name, .. }) => m.unlink(*parent, name, now),
        (_, Op::Rmdir { parent, name }) => m.rmdir(*parent, name, now),
        (
            _,
            Op::Rename {
                parent,
                name,
                new_parent,
                new_name,
                mode,
                ..
            },
        ) => m.rename(*parent, name, *new_parent, new_name, *mode, now),
        (_, Op::Write { ino, at, .. }) => m.write(*ino, *at, &data, now),
        (_, Op::SetAttr { ino, attr }) => m.setattr(*ino, attr.perm, attr.size, now),
        (
            _,
            Op::SetXattr {
                ino,
                name,
                value,
                mode,
            },
        ) => m.setxattr(*ino, name, value, *mode, now),
        (_, Op::RemoveXattr { ino, name }) => m.removexattr(*ino, name, now),
        _ => unreachable!(),
    };
    (got.map(|a| a.result), want)
}

/// The engine's visible state must equal the model's.
fn compare(h: &H, m: &Model) {
    let status = h.engine.status().meta;
    assert_eq!(status.nodes as usize, m.nodes.len(), "node count");
    for (&ino, mn) in &m.nodes {
        let n = h
            .engine
            .getattr(ino)
            .unwrap_or_else(|e| panic!("inode {ino} missing: {e}"));
        assert_eq!(n.kind, mn.kind, "kind of {ino}");
        assert_eq!(n.perm, mn.perm, "perm of {ino}");
        assert_eq!(n.nlink, mn.nlink, "nlink of {ino}");
        assert_eq!((n.mtime, n.ctime), (mn.mtime, mn.ctime), "times of {ino}");
        match mn.kind {
            FileKind::File => {
                assert_eq!(n.size, mn.data.len() as u64, "size of {ino}");
                assert!(h.read_all(ino) == mn.data, "content of {ino}");
            }
            FileKind::Dir => {
                let listed: BTreeMap<Vec<u8>, Ino> = h
                    .engine
                    .readdir(ino, None, usize::MAX)
                    .unwrap()
                    .into_iter()
                    .map(|e| (e.name, e.ino))
                    .collect();
                assert_eq!(listed, mn.entries, "entries of {ino}");
                assert_eq!(n.parent, mn.parent, "parent of {ino}");
            }
            FileKind::Symlink => assert_eq!(h.engine.readlink(ino).unwrap(), mn.target),
            _ => {}
        }
        let xs: BTreeMap<Vec<u8>, Vec<u8>> = h
            .engine
            .listxattr(ino)
            .unwrap()
            .into_iter()
            .map(|k| {
                let v = h.engine.getxattr(ino, &k).unwrap().to_vec();
                (k, v)
            })
            .collect();
        assert_eq!(xs, mn.xattrs, "xattrs of {ino}");
    }
}

/// Replays the whole log on a fresh engine: every entry's root must be
/// reproduced (checked inside replay) and the final state root equal.
fn replay_matches(h: &H) {
    let entries = h.engine.log_range(1, h.engine.applied_index()).unwrap();
    let b = Arc::new(MemBackend::new());
    let e2 = Engine::create(b, None, h.engine.workspace()).unwrap();
    let mut hashes = std::collections::BTreeSet::new();
    for e in &entries {
        for c in e.op.chunks() {
            hashes.insert(c.hash);
        }
    }
    let chunks: Vec<_> = hashes
        .iter()
        .map(|hh| (*hh, h.engine.chunk(hh).unwrap().to_vec()))
        .collect();
    assert!(
        e2.ingest_chunks(chunks.iter().map(|(hh, d)| (*hh, d.as_slice())))
            .unwrap()
            .is_empty()
    );
    // Odd batch sizes so batch boundaries fall everywhere.
    e2.replay(entries.iter(), 7, false).unwrap();
    assert_eq!(e2.status().meta, h.engine.status().meta);
    let r = hsfs_engine::fsck::check(&e2, &mut |_, _| {}).unwrap();
    assert!(r.is_clean(), "{:#?}", r.problems);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::Direct(
            "tests/proptest-regressions/model.txt",
        ))),
        .. ProptestConfig::default()
    })]

    #[test]
    fn engine_matches_model(acts in prop::collection::vec(act(), 1..60)) {
        let mut h = harness();
        let mut m = Model::new(T0);
        compare(&h, &m);
        for (i, a) in acts.iter().enumerate() {
            let (got, want) = step(&mut h, &mut m, a);
            prop_assert_eq!(got, want, "step {} {:?}", i, a);
            compare(&h, &m);
            if i % 16 == 15 {
                h.fsck();
            }
        }
        h.fsck();
        replay_matches(&h);
    }

    /// Commuting changes applied in two orders, plus noise that is undone,
    /// end in the same state, equalized by the same final setattrs: the
    /// roots must be equal.
    #[test]
    fn same_state_same_root(
        writes in prop::collection::vec((0usize..4, 0u32..100_000, 1u32..70_000, any::<u8>()), 1..8),
        xattrs in prop::collection::btree_map((0usize..4, 0usize..3), 0u16..100, 0..6),
        seed in any::<u64>(),
        noise in 0usize..4,
    ) {
        // Writes to the same file must not overlap to commute: keep one per file.
        let mut per_file = BTreeMap::new();
        for w in writes { per_file.entry(w.0).or_insert(w); }
        let mut actions: Vec<(usize, Op, hsfs_engine::chunks::Payload)> = Vec::new();
        for (&f, &(_, off, len, s)) in &per_file {
            let data = bytes(len, s);
            let (refs, bs) = chunked(u64::from(off), &data);
            actions.push((f, Op::Write { ino: 0, at: WriteAt::Offset(u64::from(off)), chunks: refs }, bs));
        }
        for (&(f, x), &len) in &xattrs {
            actions.push((f, Op::SetXattr { ino: 0, name: XNAMES[x].as_bytes().to_vec(), value: bytes(u32::from(len), 2), mode: XattrMode::Upsert }, hsfs_engine::chunks::Payload::none()));
        }
        let run = |order: &[usize], noise: usize| {
            let mut h = harness();
            let files: Vec<Ino> = (0..4).map(|i| h.create(ROOT_INO, &format!("f{i}")).unwrap()).collect();
            for (k, &i) in order.iter().enumerate() {
                let (f, op, bs) = &actions[i];
                let op = match op.clone() {
                    Op::Write { at, chunks, .. } => Op::Write { ino: files[*f], at, chunks },
                    Op::SetXattr { name, value, mode, .. } => Op::SetXattr { ino: files[*f], name, value, mode },
                    _ => unreachable!(),
                };
                h.run_with(op, bs.clone()).unwrap();
                if k < noise {
                    // A temporary file created and removed again.
                    h.create(ROOT_INO, "tmp").unwrap();
                    h.unlink(ROOT_INO, "tmp").unwrap();
                }
            }
            // Equalize times: same ops at the same clock in both histories.
            h.clock.0.store(T0 + 1_000_000_000_000, std::sync::atomic::Ordering::Relaxed);
            for &ino in files.iter().chain([ROOT_INO].iter()) {
                h.run(Op::SetAttr { ino, attr: SetAttr { mtime: Some(hsfs_engine::op::SetTime::At(5)), ..SetAttr::default() } }).unwrap();
            }
            h.fsck();
            h.root()
        };
        let a: Vec<usize> = (0..actions.len()).collect();
        let mut b = a.clone();
        let n = b.len();
        for i in 0..n { b.swap(i, (seed as usize).wrapping_mul(i * 2 + 3) % n); }
        prop_assert_eq!(run(&a, 0), run(&b, noise));
    }
}
