//! Golden replay traces. `tests/fixtures/golden.trace` is committed: a fresh
//! engine must replay it to the roots it records, and today's build must
//! produce it byte for byte from the same workload (any change to `apply`,
//! the record layouts or the Merkle hashing shows up here). Regenerate it
//! deliberately with `HSFS_BLESS=1 cargo test -p hsfs-engine --test trace`.

mod common;

use std::sync::Arc;

use common::*;
use hsfs_engine::ReplayError;
use hsfs_engine::op::{LogEntry, Op, RenameMode, SetAttr, SetTime, XattrMode};
use hsfs_engine::store::mem::MemBackend;
use hsfs_engine::trace::{self, TraceError};
use hsfs_engine::{FileKind, ROOT_INO};

const FIXTURE: &str = "tests/fixtures/golden.trace";

fn workload() -> Vec<u8> {
    let mut h = harness();
    let src = h.mkdir(ROOT_INO, "src").unwrap();
    let main = h.create(src, "main.rs").unwrap();
    h.write(main, 0, b"fn main() {\n    println!(\"hello\");\n}\n")
        .unwrap();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 253) as u8).collect();
    let blob = h.create(ROOT_INO, "blob.bin").unwrap();
    h.write(blob, 1000, &big).unwrap();
    h.write(blob, 65_000, b"patch across a chunk boundary")
        .unwrap();
    h.truncate(blob, 150_000).unwrap();
    let log = h.create(ROOT_INO, "agent.log").unwrap();
    for i in 0..20 {
        h.append(log, format!("line {i}\n").as_bytes()).unwrap();
    }
    h.run(Op::Symlink {
        parent: ROOT_INO,
        name: b"link".to_vec(),
        target: b"src/main.rs".to_vec(),
        uid: 0,
        gid: 0,
    })
    .unwrap();
    h.run(Op::Link {
        ino: main,
        parent: ROOT_INO,
        name: b"main.hard".to_vec(),
    })
    .unwrap();
    h.run(Op::SetXattr {
        ino: main,
        name: b"user.owner".to_vec(),
        value: b"agent-7".to_vec(),
        mode: XattrMode::Create,
    })
    .unwrap();
    let tmp = h.create(src, "lib.rs.tmp").unwrap();
    h.write(tmp, 0, b"pub fn lib() {}\n").unwrap();
    h.rename(src, "lib.rs.tmp", src, "lib.rs").unwrap();
    let docs = h.mkdir(ROOT_INO, "docs").unwrap();
    h.run(Op::Rename {
        parent: ROOT_INO,
        name: b"docs".to_vec(),
        new_parent: src,
        new_name: b"docs".to_vec(),
        mode: RenameMode::NoReplace,
        keep_orphan: false,
    })
    .unwrap();
    h.run(Op::SetAttr {
        ino: docs,
        attr: SetAttr {
            perm: Some(0o2750),
            gid: Some(100),
            mtime: Some(SetTime::At(12_345)),
            ..SetAttr::default()
        },
    })
    .unwrap();
    h.run(Op::Create {
        parent: docs,
        name: b"fifo".to_vec(),
        kind: FileKind::Fifo,
        perm: 0o600,
        uid: 0,
        gid: 0,
        excl: true,
        truncate: false,
    })
    .unwrap();
    h.unlink(ROOT_INO, "main.hard").unwrap();
    h.run(Op::RemoveXattr {
        ino: main,
        name: b"user.owner".to_vec(),
    })
    .unwrap();
    h.fsck();
    let mut out = Vec::new();
    trace::export(&h.engine, h.engine.applied_index(), &mut out).unwrap();
    out
}

fn fixture() -> Vec<u8> {
    std::fs::read(FIXTURE)
        .expect("missing golden fixture: run with HSFS_BLESS=1 once and commit it")
}

/// Frames of a trace: (offset of payload, tag, payload).
fn frames(t: &[u8]) -> Vec<(usize, u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pos = 8;
    while pos < t.len() {
        let tag = t[pos];
        let len = u32::from_le_bytes(t[pos + 1..pos + 5].try_into().unwrap()) as usize;
        out.push((pos + 5, tag, t[pos + 5..pos + 5 + len].to_vec()));
        pos += 5 + len;
    }
    out
}

fn replay(t: &[u8]) -> Result<(hsfs_engine::Engine, u64), TraceError> {
    trace::replay(Arc::new(MemBackend::new()), &mut &t[..])
}

#[test]
fn fixture_replays_to_its_roots() {
    let t = fixture();
    let (e, n) = replay(&t).unwrap();
    let entries: Vec<LogEntry> = frames(&t)
        .into_iter()
        .filter(|f| f.1 == 3)
        .map(|f| LogEntry::decode(&f.2).unwrap())
        .collect();
    assert_eq!(n, entries.len() as u64);
    assert_eq!(e.status().meta.root, entries.last().unwrap().root);
    let r = hsfs_engine::fsck::check(&e, &mut |_, _| {}).unwrap();
    assert!(r.is_clean(), "{:#?}", r.problems);
    assert_eq!(
        e.read(e.lookup(ROOT_INO, b"agent.log").unwrap().ino, 0, 1000)
            .unwrap()
            .len(),
        150
    );
}

#[test]
fn workload_reproduces_fixture_byte_for_byte() {
    if std::env::var_os("HSFS_BLESS").is_some() {
        std::fs::create_dir_all("tests/fixtures").unwrap();
        std::fs::write(FIXTURE, workload()).unwrap();
    }
    assert!(
        workload() == fixture(),
        "apply, record layout or Merkle hashing changed: the golden trace differs"
    );
}

#[test]
fn corrupt_chunk_stops_at_first_user() {
    let mut t = fixture();
    let fs = frames(&t);
    let (off, _, payload) = fs.iter().find(|f| f.1 == 2).unwrap().clone();
    let hash: [u8; 32] = payload[..32].try_into().unwrap();
    t[off + 40] ^= 0xff;
    let first_user = fs
        .iter()
        .filter(|f| f.1 == 3)
        .map(|f| LogEntry::decode(&f.2).unwrap())
        .find(|e| e.op.chunks().iter().any(|c| c.hash == hash))
        .unwrap()
        .index;
    match replay(&t) {
        Err(TraceError::Replay(ReplayError::Chunk { index, hash: h, .. })) => {
            assert_eq!((index, h), (first_user, hash));
        }
        other => panic!("expected a chunk error, got {:?}", other.map(|x| x.1)),
    }
}

#[test]
fn root_mismatch_names_the_index() {
    let t = fixture();
    let mut out = t[..8].to_vec();
    for (_, tag, mut payload) in frames(&t) {
        if tag == 3 {
            let mut e = LogEntry::decode(&payload).unwrap();
            if e.index == 9 {
                e.root[5] ^= 1;
                payload = e.encode();
            }
        }
        out.push(tag);
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&payload);
    }
    match replay(&out) {
        Err(TraceError::Replay(ReplayError::RootMismatch { index, .. })) => assert_eq!(index, 9),
        other => panic!("expected a root mismatch, got {:?}", other.map(|x| x.1)),
    }
}

#[test]
fn truncated_or_foreign_input_is_refused() {
    let t = fixture();
    assert!(matches!(
        replay(&t[..t.len() / 2]),
        Err(TraceError::Format(_))
    ));
    assert!(matches!(replay(b"NOTATRACE"), Err(TraceError::Format(_))));
}
