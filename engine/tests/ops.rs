//! Every op and its errno paths, through the real commit pipeline.

mod common;

use common::*;
use hsfs_engine::op::{Op, OpResult, RenameMode, SetAttr, SetTime, XattrMode};
use hsfs_engine::{Errno, FileKind, ROOT_INO};

const R: u64 = ROOT_INO;

#[test]
fn genesis_root() {
    let h = harness();
    let root = h.engine.getattr(R).unwrap();
    assert_eq!(root.kind, FileKind::Dir);
    assert_eq!(root.nlink, 2);
    assert_eq!(root.perm, 0o755);
    assert_eq!(h.engine.applied_index(), 1);
    h.fsck();
}

#[test]
fn create_excl_and_open_existing() {
    let mut h = harness();
    let f = h.create(R, "a").unwrap();
    assert_eq!(h.create(R, "a"), Err(Errno::EEXIST));
    // Non-exclusive create of an existing file opens it without a log entry.
    let before = h.engine.applied_index();
    let a = h
        .run(Op::Create {
            parent: R,
            name: b"a".to_vec(),
            kind: FileKind::File,
            perm: 0o600,
            uid: 0,
            gid: 0,
            excl: false,
            truncate: false,
        })
        .unwrap();
    assert_eq!(
        a.result,
        OpResult::Node {
            ino: f,
            created: false
        }
    );
    assert_eq!(h.engine.applied_index(), before);
    let n = h.engine.getattr(f).unwrap();
    assert_eq!(
        (n.perm, n.uid, n.gid, n.nlink, n.size),
        (0o644, 1000, 1000, 1, 0)
    );
    assert_eq!(n.mtime, n.ctime);
    // Parent bookkeeping.
    let root = h.engine.getattr(R).unwrap();
    assert_eq!(root.entries, 1);
    assert_eq!(root.mtime, n.btime);
    h.fsck();
}

#[test]
fn create_errors() {
    let mut h = harness();
    let f = h.create(R, "f").unwrap();
    let long = "x".repeat(256);
    assert_eq!(h.create(R, &long), Err(Errno::ENAMETOOLONG));
    assert!(h.create(R, &"x".repeat(255)).is_ok());
    assert_eq!(h.create(R, "a/b"), Err(Errno::EINVAL));
    assert_eq!(h.create(R, ""), Err(Errno::EINVAL));
    assert_eq!(h.create(R, ".."), Err(Errno::EINVAL));
    assert_eq!(h.create(f, "x"), Err(Errno::ENOTDIR));
    assert_eq!(h.create(9999, "x"), Err(Errno::ENOENT));
    let d = h.mkdir(R, "d").unwrap();
    let r = h.run(Op::Create {
        parent: R,
        name: b"d".to_vec(),
        kind: FileKind::File,
        perm: 0o644,
        uid: 0,
        gid: 0,
        excl: false,
        truncate: false,
    });
    assert_eq!(r.unwrap_err(), Errno::EISDIR);
    let _ = d;
    h.fsck();
}

#[test]
fn create_truncate_existing() {
    let mut h = harness();
    let f = h.create(R, "f").unwrap();
    h.write(f, 0, b"hello").unwrap();
    h.run(Op::Create {
        parent: R,
        name: b"f".to_vec(),
        kind: FileKind::File,
        perm: 0o644,
        uid: 0,
        gid: 0,
        excl: false,
        truncate: true,
    })
    .unwrap();
    assert_eq!(h.engine.getattr(f).unwrap().size, 0);
    assert!(h.read_all(f).is_empty());
    h.fsck();
}

#[test]
fn fifo_and_socket_nodes() {
    let mut h = harness();
    for (name, kind) in [("p", FileKind::Fifo), ("s", FileKind::Socket)] {
        let ino = H::ino(h.run(Op::Create {
            parent: R,
            name: name.into(),
            kind,
            perm: 0o600,
            uid: 0,
            gid: 0,
            excl: true,
            truncate: false,
        }));
        assert_eq!(h.engine.getattr(ino).unwrap().kind, kind);
        let (c, b) = chunked(0, b"x");
        assert_eq!(
            h.run_with(
                Op::Write {
                    ino,
                    at: hsfs_engine::op::WriteAt::Offset(0),
                    chunks: c
                },
                b
            ),
            Err(Errno::EINVAL)
        );
    }
    h.fsck();
}

#[test]
fn mkdir_rmdir_and_nlink() {
    let mut h = harness();
    let a = h.mkdir(R, "a").unwrap();
    let b = h.mkdir(a, "b").unwrap();
    assert_eq!(h.engine.getattr(R).unwrap().nlink, 3);
    assert_eq!(h.engine.getattr(a).unwrap().nlink, 3);
    assert_eq!(h.engine.getattr(b).unwrap().parent, a);
    assert_eq!(h.mkdir(R, "a"), Err(Errno::EEXIST));
    assert_eq!(h.rmdir(R, "a"), Err(Errno::ENOTEMPTY));
    let f = h.create(a, "f").unwrap();
    assert_eq!(h.rmdir(a, "f"), Err(Errno::ENOTDIR));
    assert_eq!(h.unlink(a, "b"), Err(Errno::EISDIR));
    assert_eq!(h.rmdir(a, "nope"), Err(Errno::ENOENT));
    h.rmdir(a, "b").unwrap();
    h.unlink(a, "f").unwrap();
    assert!(h.engine.node(b).unwrap().is_none());
    assert!(h.engine.node(f).unwrap().is_none());
    h.rmdir(R, "a").unwrap();
    assert_eq!(h.engine.getattr(R).unwrap().nlink, 2);
    assert_eq!(h.engine.getattr(R).unwrap().entries, 0);
    h.fsck();
}

#[test]
fn setgid_directory_inheritance() {
    let mut h = harness();
    let d = h.mkdir(R, "d").unwrap();
    h.run(Op::SetAttr {
        ino: d,
        attr: SetAttr {
            perm: Some(0o2775),
            gid: Some(50),
            ..SetAttr::default()
        },
    })
    .unwrap();
    let f = h.create(d, "f").unwrap();
    let sub = h.mkdir(d, "sub").unwrap();
    assert_eq!(h.engine.getattr(f).unwrap().gid, 50);
    let s = h.engine.getattr(sub).unwrap();
    assert_eq!(s.gid, 50);
    assert_eq!(s.perm & 0o2000, 0o2000);
    h.fsck();
}

#[test]
fn symlink_rules() {
    let mut h = harness();
    let s = H::ino(h.run(Op::Symlink {
        parent: R,
        name: b"l".to_vec(),
        target: b"../some/where".to_vec(),
        uid: 1,
        gid: 2,
    }));
    let n = h.engine.getattr(s).unwrap();
    assert_eq!((n.kind, n.size, n.perm), (FileKind::Symlink, 13, 0o777));
    assert_eq!(h.engine.readlink(s).unwrap(), b"../some/where");
    let sym = |h: &mut H, name: &str, target: Vec<u8>| {
        h.run(Op::Symlink {
            parent: R,
            name: name.into(),
            target,
            uid: 0,
            gid: 0,
        })
    };
    assert_eq!(sym(&mut h, "l", b"x".to_vec()).unwrap_err(), Errno::EEXIST);
    assert_eq!(sym(&mut h, "e", Vec::new()).unwrap_err(), Errno::ENOENT);
    assert_eq!(
        sym(&mut h, "e", vec![b'a'; 4096]).unwrap_err(),
        Errno::ENAMETOOLONG
    );
    assert_eq!(h.engine.readlink(R).unwrap_err().errno(), Errno::EINVAL);
    h.fsck();
}

#[test]
fn hard_links() {
    let mut h = harness();
    let d = h.mkdir(R, "d").unwrap();
    let f = h.create(R, "f").unwrap();
    let link = |h: &mut H, ino, parent, name: &str| {
        h.run(Op::Link {
            ino,
            parent,
            name: name.into(),
        })
    };
    link(&mut h, f, d, "g").unwrap();
    assert_eq!(h.engine.getattr(f).unwrap().nlink, 2);
    assert_eq!(h.lookup(d, "g"), Some(f));
    assert_eq!(link(&mut h, f, d, "g").unwrap_err(), Errno::EEXIST);
    assert_eq!(link(&mut h, d, R, "dd").unwrap_err(), Errno::EPERM);
    assert_eq!(link(&mut h, 999, R, "x").unwrap_err(), Errno::ENOENT);
    h.unlink(R, "f").unwrap();
    assert_eq!(h.engine.getattr(f).unwrap().nlink, 1);
    h.unlink(d, "g").unwrap();
    assert!(h.engine.node(f).unwrap().is_none());
    h.fsck();
}

#[test]
fn rename_replace_semantics() {
    let mut h = harness();
    let a = h.create(R, "a").unwrap();
    let b = h.create(R, "b").unwrap();
    h.write(b, 0, b"bbb").unwrap();
    h.rename(R, "a", R, "b").unwrap();
    assert_eq!(h.lookup(R, "b"), Some(a));
    assert_eq!(h.lookup(R, "a"), None);
    assert!(h.engine.node(b).unwrap().is_none(), "replaced file is gone");
    let d1 = h.mkdir(R, "d1").unwrap();
    let d2 = h.mkdir(R, "d2").unwrap();
    assert_eq!(h.rename(R, "b", R, "d1").unwrap_err(), Errno::EISDIR);
    assert_eq!(h.rename(R, "d1", R, "b").unwrap_err(), Errno::ENOTDIR);
    h.create(d2, "x").unwrap();
    assert_eq!(h.rename(R, "d1", R, "d2").unwrap_err(), Errno::ENOTEMPTY);
    h.unlink(d2, "x").unwrap();
    h.rename(R, "d1", R, "d2").unwrap();
    assert_eq!(h.lookup(R, "d2"), Some(d1));
    assert!(h.engine.node(d2).unwrap().is_none());
    assert_eq!(h.rename(R, "nope", R, "x").unwrap_err(), Errno::ENOENT);
    // Same inode under both names: nothing happens.
    h.run(Op::Link {
        ino: a,
        parent: R,
        name: b"a2".to_vec(),
    })
    .unwrap();
    h.rename(R, "b", R, "a2").unwrap();
    assert_eq!(h.lookup(R, "b"), Some(a));
    assert_eq!(h.lookup(R, "a2"), Some(a));
    h.fsck();
}

#[test]
fn rename_directories_across_parents() {
    let mut h = harness();
    let p = h.mkdir(R, "p").unwrap();
    let q = h.mkdir(R, "q").unwrap();
    let d = h.mkdir(p, "d").unwrap();
    let inner = h.mkdir(d, "inner").unwrap();
    assert_eq!(h.rename(p, "d", d, "x").unwrap_err(), Errno::EINVAL);
    assert_eq!(h.rename(p, "d", inner, "x").unwrap_err(), Errno::EINVAL);
    h.rename(p, "d", q, "d").unwrap();
    assert_eq!(h.engine.getattr(p).unwrap().nlink, 2);
    assert_eq!(h.engine.getattr(q).unwrap().nlink, 3);
    assert_eq!(h.engine.getattr(d).unwrap().parent, q);
    assert_eq!(h.engine.path_of(inner).unwrap().unwrap(), b"/q/d/inner");
    h.fsck();
}

#[test]
fn rename_noreplace_and_exchange() {
    let mut h = harness();
    let a = h.create(R, "a").unwrap();
    let d = h.mkdir(R, "d").unwrap();
    let sub = h.mkdir(d, "sub").unwrap();
    let rn = |h: &mut H, p, n: &str, np, nn: &str, mode| {
        h.run(Op::Rename {
            parent: p,
            name: n.into(),
            new_parent: np,
            new_name: nn.into(),
            mode,
            keep_orphan: false,
        })
    };
    assert_eq!(
        rn(&mut h, R, "a", R, "d", RenameMode::NoReplace).unwrap_err(),
        Errno::EEXIST
    );
    rn(&mut h, R, "a", R, "b", RenameMode::NoReplace).unwrap();
    assert_eq!(
        rn(&mut h, R, "b", R, "zz", RenameMode::Exchange).unwrap_err(),
        Errno::ENOENT
    );
    // Exchange a file in the root with a directory inside d.
    rn(&mut h, R, "b", d, "sub", RenameMode::Exchange).unwrap();
    assert_eq!(h.lookup(R, "b"), Some(sub));
    assert_eq!(h.lookup(d, "sub"), Some(a));
    assert_eq!(h.engine.getattr(sub).unwrap().parent, R);
    assert_eq!(h.engine.getattr(d).unwrap().nlink, 2);
    assert_eq!(h.engine.getattr(R).unwrap().nlink, 4);
    // A directory cannot be exchanged into its own subtree.
    let deep = h.mkdir(sub, "deep").unwrap();
    let _ = deep;
    assert_eq!(
        rn(&mut h, R, "b", sub, "deep", RenameMode::Exchange).unwrap_err(),
        Errno::EINVAL
    );
    h.fsck();
}

#[test]
fn write_read_holes_and_extents() {
    let mut h = harness();
    let f = h.create(R, "f").unwrap();
    let a = h.write(f, 10, b"hello").unwrap();
    assert_eq!(a.result, OpResult::Written { offset: 10, len: 5 });
    assert_eq!(h.read_all(f), b"\0\0\0\0\0\0\0\0\0\0hello");
    h.write(f, 12, b"LL").unwrap();
    assert_eq!(h.read_all(f), b"\0\0\0\0\0\0\0\0\0\0heLLo");
    assert_eq!(h.engine.read(f, 11, 3).unwrap(), b"eLL");
    assert_eq!(h.engine.read(f, 100, 3).unwrap(), b"");
    // Large write spanning chunk boundaries at an unaligned offset.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    h.write(f, 70_000, &big).unwrap();
    let all = h.read_all(f);
    assert_eq!(all.len(), 370_000);
    assert_eq!(&all[70_000..], &big[..]);
    assert_eq!(&all[..15], b"\0\0\0\0\0\0\0\0\0\0heLLo");
    assert!(all[15..70_000].iter().all(|&b| b == 0));
    assert_eq!(
        h.engine.read(f, 65_530, 10).unwrap(),
        all[65_530..65_540].to_vec()
    );
    h.fsck();
}

#[test]
fn identical_data_stored_once() {
    let mut h = harness();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 97) as u8).collect();
    let f = h.create(R, "f").unwrap();
    let g = h.create(R, "g").unwrap();
    h.write(f, 0, &data).unwrap();
    let chunks_before = h.backend.keys(hsfs_engine::keys::Space::Chunks).len();
    h.write(g, 0, &data).unwrap();
    assert_eq!(
        h.backend.keys(hsfs_engine::keys::Space::Chunks).len(),
        chunks_before
    );
    assert_eq!(h.read_all(g), data);
    h.fsck();
}

#[test]
fn append_picks_eof() {
    let mut h = harness();
    let f = h.create(R, "log").unwrap();
    let mut expect = Vec::new();
    for i in 0..50u32 {
        let rec = format!("record {i}\n");
        let a = h.append(f, rec.as_bytes()).unwrap();
        assert_eq!(
            a.result,
            OpResult::Written {
                offset: expect.len() as u64,
                len: rec.len() as u64
            }
        );
        expect.extend_from_slice(rec.as_bytes());
    }
    assert_eq!(h.read_all(f), expect);
    h.fsck();
}

#[test]
fn write_errors() {
    let mut h = harness();
    let d = h.mkdir(R, "d").unwrap();
    let (c, b) = chunked(0, b"x");
    assert_eq!(
        h.run_with(
            Op::Write {
                ino: d,
                at: hsfs_engine::op::WriteAt::Offset(0),
                chunks: c.clone()
            },
            b.clone()
        ),
        Err(Errno::EISDIR)
    );
    assert_eq!(
        h.run_with(
            Op::Write {
                ino: 4242,
                at: hsfs_engine::op::WriteAt::Offset(0),
                chunks: c.clone()
            },
            b.clone()
        ),
        Err(Errno::ENOENT)
    );
    let f = h.create(R, "f").unwrap();
    assert_eq!(
        h.run_with(
            Op::Write {
                ino: f,
                at: hsfs_engine::op::WriteAt::Offset(i64::MAX as u64),
                chunks: c.clone()
            },
            b.clone()
        ),
        Err(Errno::EFBIG)
    );
    // Payload bytes that do not match the chunk refs are refused.
    assert_eq!(
        h.run_with(
            Op::Write {
                ino: f,
                at: hsfs_engine::op::WriteAt::Offset(0),
                chunks: c.clone()
            },
            hsfs_engine::chunks::Payload::split(Some(0), b"y").1
        ),
        Err(Errno::EINVAL)
    );
    // A chunk the leader does not have is refused.
    assert_eq!(
        h.run(Op::Write {
            ino: f,
            at: hsfs_engine::op::WriteAt::Offset(0),
            chunks: vec![hsfs_engine::op::ChunkRef {
                hash: [1; 32],
                len: 1
            }]
        }),
        Err(Errno::EIO)
    );
    h.fsck();
}

#[test]
fn truncate_shrink_extend() {
    let mut h = harness();
    let f = h.create(R, "f").unwrap();
    let data: Vec<u8> = (0..150_000u32).map(|i| (i % 13) as u8 + 1).collect();
    h.write(f, 0, &data).unwrap();
    h.truncate(f, 70_000).unwrap();
    assert_eq!(h.read_all(f), data[..70_000].to_vec());
    h.truncate(f, 100_000).unwrap();
    let all = h.read_all(f);
    assert_eq!(&all[..70_000], &data[..70_000]);
    assert!(all[70_000..].iter().all(|&b| b == 0));
    h.truncate(f, 0).unwrap();
    assert!(h.read_all(f).is_empty());
    let d = h.mkdir(R, "d").unwrap();
    assert_eq!(h.truncate(d, 0).unwrap_err(), Errno::EISDIR);
    assert_eq!(h.truncate(f, u64::MAX).unwrap_err(), Errno::EFBIG);
    assert_eq!(h.engine.status().meta.bytes, 0);
    h.fsck();
}

#[test]
fn setattr_chmod_chown_times() {
    let mut h = harness();
    let f = h.create(R, "f").unwrap();
    h.run(Op::SetAttr {
        ino: f,
        attr: SetAttr {
            perm: Some(0o6755),
            ..SetAttr::default()
        },
    })
    .unwrap();
    assert_eq!(h.engine.getattr(f).unwrap().perm, 0o6755);
    // chown clears setuid, and setgid when group-executable.
    h.run(Op::SetAttr {
        ino: f,
        attr: SetAttr {
            uid: Some(5),
            ..SetAttr::default()
        },
    })
    .unwrap();
    let n = h.engine.getattr(f).unwrap();
    assert_eq!((n.uid, n.perm), (5, 0o755));
    let a = h
        .run(Op::SetAttr {
            ino: f,
            attr: SetAttr {
                atime: Some(SetTime::At(-1_000_000_000)),
                mtime: Some(SetTime::Now),
                ..SetAttr::default()
            },
        })
        .unwrap();
    let n = h.engine.getattr(f).unwrap();
    assert_eq!(n.atime, -1_000_000_000);
    assert_eq!(n.mtime, a.committed_at);
    assert_eq!(n.ctime, a.committed_at);
    assert_eq!(
        h.run(Op::SetAttr {
            ino: 777,
            attr: SetAttr::default()
        })
        .unwrap_err(),
        Errno::ENOENT
    );
    h.fsck();
}

#[test]
fn xattrs_and_limits() {
    let mut h = harness();
    let f = h.create(R, "f").unwrap();
    let set = |h: &mut H, name: &[u8], value: Vec<u8>, mode| {
        h.run(Op::SetXattr {
            ino: f,
            name: name.to_vec(),
            value,
            mode,
        })
    };
    set(&mut h, b"user.b", b"2".to_vec(), XattrMode::Upsert).unwrap();
    set(&mut h, b"user.a", b"1".to_vec(), XattrMode::Create).unwrap();
    assert_eq!(
        set(&mut h, b"user.a", b"x".to_vec(), XattrMode::Create).unwrap_err(),
        Errno::EEXIST
    );
    assert_eq!(
        set(&mut h, b"user.c", b"x".to_vec(), XattrMode::Replace).unwrap_err(),
        Errno::ENODATA
    );
    set(&mut h, b"user.a", b"one".to_vec(), XattrMode::Replace).unwrap();
    assert_eq!(
        h.engine.listxattr(f).unwrap(),
        vec![b"user.a".to_vec(), b"user.b".to_vec()]
    );
    assert_eq!(&*h.engine.getxattr(f, b"user.a").unwrap(), b"one");
    assert_eq!(
        h.engine.getxattr(f, b"user.z").unwrap_err().errno(),
        Errno::ENODATA
    );
    assert_eq!(
        set(&mut h, &[b'n'; 256], Vec::new(), XattrMode::Upsert).unwrap_err(),
        Errno::ERANGE
    );
    assert_eq!(
        set(&mut h, b"", Vec::new(), XattrMode::Upsert).unwrap_err(),
        Errno::ERANGE
    );
    assert_eq!(
        set(&mut h, b"user.big", vec![0; 65537], XattrMode::Upsert).unwrap_err(),
        Errno::E2BIG
    );
    set(&mut h, b"user.max", vec![0; 65536], XattrMode::Upsert).unwrap();
    // Fill towards the 1 MiB per-inode cap.
    for i in 0..14 {
        set(
            &mut h,
            format!("user.f{i:02}").as_bytes(),
            vec![1; 65536],
            XattrMode::Upsert,
        )
        .unwrap();
    }
    assert_eq!(
        set(&mut h, b"user.over", vec![1; 65536], XattrMode::Upsert).unwrap_err(),
        Errno::ENOSPC
    );
    let rm = |h: &mut H, name: &[u8]| {
        h.run(Op::RemoveXattr {
            ino: f,
            name: name.to_vec(),
        })
    };
    rm(&mut h, b"user.a").unwrap();
    assert_eq!(rm(&mut h, b"user.a").unwrap_err(), Errno::ENODATA);
    h.unlink(R, "f").unwrap();
    assert!(h.engine.listxattr(f).is_err());
    h.fsck();
}

#[test]
fn unlink_open_file_becomes_orphan_until_reclaimed() {
    struct AllOpen;
    impl hsfs_engine::commit::OpenFiles for AllOpen {
        fn is_open(&self, _: u64) -> bool {
            true
        }
    }
    let mut h = harness_with(std::sync::Arc::new(AllOpen));
    let f = h.create(R, "f").unwrap();
    h.write(f, 0, b"still here").unwrap();
    h.unlink(R, "f").unwrap();
    assert_eq!(h.lookup(R, "f"), None);
    let n = h.engine.getattr(f).unwrap();
    assert_eq!(n.nlink, 0);
    assert_eq!(h.read_all(f), b"still here");
    h.write(f, 0, b"STILL").unwrap();
    assert_eq!(h.read_all(f), b"STILL here");
    h.fsck();
    // Linking an orphan back is refused, like Linux without O_TMPFILE.
    assert_eq!(
        h.run(Op::Link {
            ino: f,
            parent: R,
            name: b"back".to_vec()
        })
        .unwrap_err(),
        Errno::ENOENT
    );
    h.run(Op::Reclaim { ino: f }).unwrap();
    assert!(h.engine.node(f).unwrap().is_none());
    let g = h.create(R, "g").unwrap();
    assert_eq!(h.run(Op::Reclaim { ino: g }).unwrap_err(), Errno::EINVAL);
    // Rename over an open file orphans it too.
    let x = h.create(R, "x").unwrap();
    h.rename(R, "g", R, "x").unwrap();
    assert_eq!(h.engine.getattr(x).unwrap().nlink, 0);
    h.fsck();
}

#[test]
fn fsync_barrier_changes_nothing() {
    let mut h = harness();
    let f = h.create(R, "f").unwrap();
    let before = h.engine.applied_index();
    let a = h.run(Op::Fsync { ino: f }).unwrap();
    assert_eq!(a.index, before);
    assert_eq!(h.engine.applied_index(), before);
    assert_eq!(h.run(Op::Fsync { ino: 99 }).unwrap_err(), Errno::ENOENT);
}

#[test]
fn duplicate_intent_gets_same_ack() {
    let mut h = harness();
    h.tick();
    let i = h.intent(Op::Mkdir {
        parent: R,
        name: b"d".to_vec(),
        perm: 0o755,
        uid: 0,
        gid: 0,
    });
    let a1 = h
        .committer
        .commit(i.clone(), hsfs_engine::chunks::Payload::none())
        .unwrap();
    h.tick();
    let a2 = h
        .committer
        .commit(i.clone(), hsfs_engine::chunks::Payload::none())
        .unwrap();
    assert_eq!(a1, a2);
    assert_eq!(h.engine.applied_index(), a1.index);
    assert_eq!(h.engine.dedupe(&i.id).unwrap(), Some(a1));
}

#[test]
fn genesis_cannot_be_submitted() {
    let mut h = harness();
    assert_eq!(
        h.run(Op::Genesis {
            perm: 0o777,
            uid: 0,
            gid: 0
        })
        .unwrap_err(),
        Errno::EPERM
    );
}

#[test]
fn committed_at_strictly_increases_even_if_clock_stalls() {
    let mut h = harness();
    let mut last = 0;
    for i in 0..20 {
        let i2 = h.intent(Op::Mkdir {
            parent: R,
            name: format!("d{i}").into_bytes(),
            perm: 0o755,
            uid: 0,
            gid: 0,
        });
        // No tick: the clock stands still.
        let a = h
            .committer
            .commit(i2, hsfs_engine::chunks::Payload::none())
            .unwrap();
        assert!(a.committed_at > last);
        last = a.committed_at;
    }
    h.fsck();
}

#[test]
fn failed_op_changes_nothing() {
    let mut h = harness();
    let d = h.mkdir(R, "d").unwrap();
    h.create(d, "x").unwrap();
    let root = h.root();
    let idx = h.engine.applied_index();
    let attrs = h.engine.getattr(R).unwrap();
    // Validation fails late inside rename (target directory not empty),
    // after the source entry was already moved in the transaction.
    let e = h.mkdir(R, "e").unwrap();
    h.create(e, "y").unwrap();
    let root2 = h.root();
    let idx2 = h.engine.applied_index();
    assert_eq!(h.rename(R, "d", R, "e").unwrap_err(), Errno::ENOTEMPTY);
    assert_eq!(h.root(), root2);
    assert_eq!(h.engine.applied_index(), idx2);
    let _ = (root, idx, attrs);
    h.fsck();
}

#[test]
fn eagain_past_pending_bound() {
    let backend = std::sync::Arc::new(hsfs_engine::store::mem::MemBackend::new());
    let engine = hsfs_engine::Engine::init(backend, None, WS, (0o755, 0, 0), T0).unwrap();
    let cfg = hsfs_engine::commit::CommitConfig {
        max_pending: 0,
        ..Default::default()
    };
    let c = hsfs_engine::commit::Committer::start(
        engine,
        cfg,
        std::sync::Arc::new(hsfs_engine::commit::SystemClock),
        std::sync::Arc::new(hsfs_engine::commit::NoneOpen),
    );
    let i = hsfs_engine::op::Intent {
        id: hsfs_engine::IntentId {
            client: hsfs_engine::ClientId([2; 16]),
            seq: 1,
        },
        origin: Default::default(),
        op: Op::Fsync { ino: R },
    };
    assert_eq!(
        c.commit(i, hsfs_engine::chunks::Payload::none())
            .unwrap_err(),
        Errno::EAGAIN
    );
    assert_eq!(
        c.stats()
            .rejected
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn enospc_before_writing() {
    let mut h = harness();
    let f = h.create(R, "f").unwrap();
    let idx = h.engine.applied_index();
    h.backend.set_faults(hsfs_engine::store::mem::Faults {
        free_space: Some(1 << 20),
        ..Default::default()
    });
    assert_eq!(h.write(f, 0, b"data").unwrap_err(), Errno::ENOSPC);
    assert_eq!(h.engine.applied_index(), idx);
    assert!(!h.engine.is_poisoned());
    h.backend.set_faults(Default::default());
    h.write(f, 0, b"data").unwrap();
    h.fsck();
}

#[test]
fn failed_write_poisons_engine() {
    let mut h = harness();
    h.backend.set_faults(hsfs_engine::store::mem::Faults {
        fail_commit: Some(1),
        ..Default::default()
    });
    assert_eq!(h.mkdir(R, "d").unwrap_err(), Errno::EIO);
    assert!(h.engine.is_poisoned());
    assert_eq!(h.mkdir(R, "e").unwrap_err(), Errno::EIO);
    // After a restart from what is durable, everything is consistent.
    let img = std::sync::Arc::new(h.backend.crash_image());
    let e2 = hsfs_engine::Engine::open(img, None).unwrap();
    let r = hsfs_engine::fsck::check(&e2, &mut |_, _| {}).unwrap();
    assert!(r.is_clean(), "{:#?}", r.problems);
    assert!(e2.lookup(R, b"d").is_err());
}

#[test]
fn readdir_order_and_resume() {
    let mut h = harness();
    let names = ["b", "a", "ä", "A", "c.txt", "_", "zz", "0"];
    for n in names {
        h.create(R, n).unwrap();
    }
    let all = h.engine.readdir(R, None, 100).unwrap();
    let got: Vec<_> = all.iter().map(|e| e.name.clone()).collect();
    let mut want: Vec<Vec<u8>> = names.iter().map(|n| n.as_bytes().to_vec()).collect();
    want.sort();
    assert_eq!(got, want);
    // Resume after a name, while entries change underneath.
    let first = h.engine.readdir(R, None, 3).unwrap();
    h.create(R, "aa").unwrap(); // sorts before the cursor... after "a"
    h.unlink(R, "c.txt").unwrap();
    let rest = h.engine.readdir(R, Some(&first[2].name), 100).unwrap();
    let rest: Vec<_> = rest
        .iter()
        .map(|e| String::from_utf8_lossy(&e.name).into_owned())
        .collect();
    assert_eq!(
        first
            .iter()
            .map(|e| String::from_utf8_lossy(&e.name).into_owned())
            .collect::<Vec<_>>(),
        ["0", "A", "_"]
    );
    assert_eq!(rest, ["a", "aa", "b", "zz", "ä"]);
}

/// With `inline_when_idle`, a lone intent is committed on the submitting
/// thread (its callback runs there, before `submit` returns); intents from
/// many threads at once (those finding the pipeline busy queue for the
/// commit thread) all commit exactly once.
#[test]
fn inline_when_idle_commits_on_the_caller() {
    use std::sync::atomic::Ordering::Relaxed;

    let mut h = harness_inline();
    let caller = std::thread::current().id();
    let (tx, rx) = crossbeam_channel::bounded(1);
    let it = h.intent(Op::Mkdir {
        parent: R,
        name: b"lone".to_vec(),
        perm: 0o755,
        uid: 0,
        gid: 0,
    });
    h.committer.submit(
        it,
        hsfs_engine::chunks::Payload::none(),
        Box::new(move |r| {
            tx.send((std::thread::current().id(), r)).unwrap();
        }),
    );
    let (on, r) = rx.try_recv().expect("answered before submit returned");
    assert_eq!(on, caller);
    assert!(r.is_ok(), "{r:?}");

    let committer = &h.committer;
    std::thread::scope(|s| {
        for t in 0..8u8 {
            s.spawn(move || {
                for i in 0..50u64 {
                    let it = hsfs_engine::op::Intent {
                        id: hsfs_engine::IntentId {
                            client: hsfs_engine::ClientId([t + 10; 16]),
                            seq: i + 1,
                        },
                        origin: Default::default(),
                        op: Op::Mkdir {
                            parent: R,
                            name: format!("t{t}-{i}").into_bytes(),
                            perm: 0o755,
                            uid: 0,
                            gid: 0,
                        },
                    };
                    committer
                        .commit(it, hsfs_engine::chunks::Payload::none())
                        .unwrap();
                }
            });
        }
    });
    // The counters are updated after the callbacks ran: read them once the
    // commit thread has stopped.
    h.committer.shutdown();
    assert_eq!(h.committer.stats().entries.load(Relaxed), 401);
    assert_eq!(h.committer.stats().answered.load(Relaxed), 401);
    assert_eq!(h.committer.pending(), 0);
    assert_eq!(h.engine.readdir(R, None, 1000).unwrap().len(), 401);
    h.fsck();
}

/// A clock that reports every read and, once armed, holds the next read
/// until the test opens the gate: a test can keep the commit pipeline in
/// the middle of applying an intent while it queues others.
struct GateClock {
    reads: crossbeam_channel::Sender<()>,
    gate: parking_lot::Mutex<Option<crossbeam_channel::Receiver<()>>>,
    t: std::sync::atomic::AtomicI64,
}

impl hsfs_engine::commit::Clock for GateClock {
    fn now(&self) -> i64 {
        self.reads.send(()).unwrap();
        if let Some(gate) = self.gate.lock().take() {
            gate.recv().unwrap();
        }
        self.t.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
    }
}

/// A pipeline over an in-memory store with a [`GateClock`] and a batch
/// window far longer than any test waits.
struct Gated {
    backend: std::sync::Arc<hsfs_engine::store::mem::MemBackend>,
    engine: hsfs_engine::Engine,
    committer: hsfs_engine::commit::Committer,
    clock: std::sync::Arc<GateClock>,
    reads: crossbeam_channel::Receiver<()>,
    answers_tx: crossbeam_channel::Sender<(u64, Result<hsfs_engine::op::Ack, Errno>)>,
    answers: crossbeam_channel::Receiver<(u64, Result<hsfs_engine::op::Ack, Errno>)>,
}

/// How long a test waits for the pipeline before it fails.
const LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

impl Gated {
    fn new() -> Gated {
        let backend = std::sync::Arc::new(hsfs_engine::store::mem::MemBackend::new());
        let engine =
            hsfs_engine::Engine::init(backend.clone(), None, WS, (0o755, 0, 0), T0).unwrap();
        let (reads_tx, reads) = crossbeam_channel::unbounded();
        let clock = std::sync::Arc::new(GateClock {
            reads: reads_tx,
            gate: parking_lot::Mutex::new(None),
            t: std::sync::atomic::AtomicI64::new(T0),
        });
        let config = hsfs_engine::commit::CommitConfig {
            window: std::time::Duration::from_secs(60),
            ..Default::default()
        };
        let committer = hsfs_engine::commit::Committer::start(
            engine.clone(),
            config,
            clock.clone(),
            std::sync::Arc::new(hsfs_engine::commit::NoneOpen),
        );
        let (answers_tx, answers) = crossbeam_channel::unbounded();
        Gated {
            backend,
            engine,
            committer,
            clock,
            reads,
            answers_tx,
            answers,
        }
    }

    /// The next clock read waits until the returned sender sends.
    fn arm(&self) -> crossbeam_channel::Sender<()> {
        let (open, gate) = crossbeam_channel::bounded(1);
        *self.clock.gate.lock() = Some(gate);
        open
    }

    fn submit(&self, seq: u64, op: Op, payload: hsfs_engine::chunks::Payload) {
        let it = hsfs_engine::op::Intent {
            id: hsfs_engine::IntentId {
                client: hsfs_engine::ClientId([9; 16]),
                seq,
            },
            origin: Default::default(),
            op,
        };
        let tx = self.answers_tx.clone();
        self.committer
            .submit(it, payload, Box::new(move |r| tx.send((seq, r)).unwrap()));
    }

    fn mkdir(&self, seq: u64) {
        let op = mkdir_op(R, &format!("d{seq}"));
        self.submit(seq, op, hsfs_engine::chunks::Payload::none());
    }

    /// Answers to `n` intents, by sequence number.
    fn answers(
        &self,
        n: usize,
    ) -> std::collections::BTreeMap<u64, Result<hsfs_engine::op::Ack, Errno>> {
        (0..n)
            .map(|_| self.answers.recv_timeout(LIMIT).expect("answered"))
            .collect()
    }

    /// Makes the pipeline expect batches of three: intent `seq` is held in
    /// its clock read while `seq + 1` and `seq + 2` queue behind it.
    fn batches_of_three(&self, seq: u64) {
        let open = self.arm();
        self.mkdir(seq);
        self.reads
            .recv_timeout(LIMIT)
            .expect("first intent applied");
        self.mkdir(seq + 1);
        self.mkdir(seq + 2);
        open.send(()).unwrap();
        for (i, r) in self.answers(3) {
            assert!(r.is_ok(), "intent {i}: {r:?}");
        }
        assert_eq!(
            self.reads.try_iter().count(),
            2,
            "the other two applied once"
        );
    }
}

/// While a batch waits for more writers, the intents it already gathered
/// are applied: the first intent of a batch that expects three is applied
/// (its commit time read) before the other two are even submitted, and
/// nothing is answered until the batch is written.
#[test]
fn a_batch_applies_its_first_intents_while_it_waits_for_more() {
    use std::sync::atomic::Ordering::Relaxed;

    let mut g = Gated::new();
    g.batches_of_three(1);
    // The next batch waits (up to its 60 s window) for three intents; the
    // first is applied at once.
    g.mkdir(4);
    g.reads
        .recv_timeout(LIMIT)
        .expect("intent 4 applied while its batch waits for more");
    assert!(
        g.answers.try_recv().is_err(),
        "answered before the batch was written"
    );
    g.mkdir(5);
    g.mkdir(6);
    for (i, r) in g.answers(3) {
        assert!(r.is_ok(), "intent {i}: {r:?}");
    }
    let stats = g.committer.stats();
    assert_eq!(stats.batches.load(Relaxed), 2);
    assert_eq!(stats.entries.load(Relaxed), 6);
    g.committer.shutdown();
    for i in 1..=6 {
        assert!(g.engine.lookup(R, format!("d{i}").as_bytes()).is_ok());
    }
}

/// The free-space check counts the whole batch: two writes that would each
/// fit alone do not fit together, so the second is refused with ENOSPC
/// while the first commits, and nothing of the second is stored. The batch
/// ends at the refusal; what comes next gets a fresh reading, and a retried
/// intent that already committed gets its stored ack even on a full disk.
#[test]
fn enospc_counts_the_intents_gathered_before() {
    let g = Gated::new();
    g.batches_of_three(1);
    let reserve = hsfs_engine::commit::CommitConfig::default().reserve_bytes;
    let (a, pa) = chunked(0, &[b'a'; 1000]);
    let (b, pb) = chunked(0, &[b'b'; 1000]);
    // Each write counts its payload plus 64 bytes: either fits alone.
    let each = 1000 + 64;
    let faults = |free| hsfs_engine::store::mem::Faults {
        free_space: Some(free),
        ..Default::default()
    };
    g.backend.set_faults(faults(reserve + 2 * 2 * each - 1));
    let file = |seq: u64| create_op(R, &format!("f{seq}"));
    // Two files first (a batch of their own, with a third intent).
    g.submit(10, file(10), hsfs_engine::chunks::Payload::none());
    g.submit(11, file(11), hsfs_engine::chunks::Payload::none());
    g.mkdir(12);
    let inos: Vec<u64> = g
        .answers(3)
        .into_iter()
        .filter(|(i, _)| *i != 12)
        .map(
            |(i, r)| match r.unwrap_or_else(|e| panic!("intent {i}: {e}")).result {
                OpResult::Node { ino, .. } => ino,
                other => panic!("intent {i}: {other:?}"),
            },
        )
        .collect();
    g.reads.try_iter().count();
    // Both writes in one batch: the first is held in apply while the
    // second queues behind it.
    let open = g.arm();
    let write = |ino, chunks| Op::Write {
        ino,
        at: hsfs_engine::op::WriteAt::Offset(0),
        chunks,
    };
    g.submit(20, write(inos[0], a), pa);
    g.reads.recv_timeout(LIMIT).expect("first write applied");
    g.submit(21, write(inos[1], b), pb);
    open.send(()).unwrap();
    let got = g.answers(2);
    assert!(got[&20].is_ok(), "{:?}", got[&20]);
    assert_eq!(got[&21].as_ref().unwrap_err(), &Errno::ENOSPC);
    assert_eq!(g.engine.getattr(inos[0]).unwrap().size, 1000);
    assert_eq!(g.engine.getattr(inos[1]).unwrap().size, 0);
    // The next batch reads the free space again: two small ops fit.
    g.mkdir(22);
    g.mkdir(23);
    let got = g.answers(2);
    assert!(got.values().all(Result::is_ok), "{got:?}");
    let first = got[&22].unwrap();
    // Full: a retry of 22 gets its ack, a new op ENOSPC.
    g.backend.set_faults(faults(reserve));
    g.mkdir(22);
    g.mkdir(24);
    let got = g.answers(2);
    assert_eq!(got[&22].as_ref().unwrap().index, first.index);
    assert_eq!(got[&24].as_ref().unwrap_err(), &Errno::ENOSPC);
    assert!(!g.engine.is_poisoned());
}
