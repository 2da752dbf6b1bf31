//! fsck finds each injected corruption, naming the record.

mod common;

use common::*;
use hsfs_engine::fsck::{self, Report};
use hsfs_engine::keys::{self, Space};
use hsfs_engine::op::{Op, XattrMode};
use hsfs_engine::{ROOT_INO, records};

const R: u64 = ROOT_INO;

/// A store with directories, files with data, links and xattrs.
fn populated() -> (H, u64, u64) {
    let mut h = harness();
    let d = h.mkdir(R, "src").unwrap();
    let f = h.create(d, "main.rs").unwrap();
    h.write(f, 0, &vec![7u8; 100_000]).unwrap();
    for i in 0..40 {
        let g = h.create(d, &format!("f{i}")).unwrap();
        h.write(g, 0, format!("file {i}").as_bytes()).unwrap();
    }
    h.run(Op::Link {
        ino: f,
        parent: R,
        name: b"main-link".to_vec(),
    })
    .unwrap();
    h.run(Op::SetXattr {
        ino: f,
        name: b"user.k".to_vec(),
        value: b"v".to_vec(),
        mode: XattrMode::Upsert,
    })
    .unwrap();
    h.fsck();
    (h, d, f)
}

fn check(h: &H) -> Report {
    let r = fsck::check(&h.engine, &mut |_, _| {}).unwrap();
    assert!(!r.is_clean(), "corruption not detected");
    r
}

fn has(r: &Report, kind: &str, space: Space, key: &[u8]) {
    assert!(
        r.problems
            .iter()
            .any(|p| p.kind == kind && p.space == space.name() && p.key == hex::encode(key)),
        "expected {kind} on {}:{} in {:#?}",
        space.name(),
        hex::encode(key),
        r.problems
    );
}

fn first_extent(h: &H, ino: u64) -> (Vec<u8>, records::Extent) {
    let k = h
        .backend
        .keys(Space::Extents)
        .into_iter()
        .find(|k| keys::be_u64(k) == Some(ino))
        .unwrap();
    let v = h.backend.get_raw(Space::Extents, &k);
    let e = records::decode_extent(&k, &v).unwrap();
    (k, e)
}

trait Raw {
    fn get_raw(&self, s: Space, k: &[u8]) -> Vec<u8>;
}
impl Raw for hsfs_engine::store::mem::MemBackend {
    fn get_raw(&self, s: Space, k: &[u8]) -> Vec<u8> {
        use hsfs_engine::store::Backend;
        self.get(s, k).unwrap().unwrap().to_vec()
    }
}

#[test]
fn clean_store_reports_counts() {
    let (h, _, _) = populated();
    let r = fsck::check(&h.engine, &mut |_, _| {}).unwrap();
    assert!(r.is_clean());
    assert!(r.stats.chunks >= 3 && r.stats.nodes == 43 && r.stats.log_entries >= 80);
    assert_eq!(r.stats.root_stored, r.stats.root_computed);
}

#[test]
fn flipped_byte_in_chunk() {
    let (h, _, f) = populated();
    let (_, e) = first_extent(&h, f);
    let mut data = h.backend.get_raw(Space::Chunks, &e.hash);
    data[17] ^= 0x40;
    h.backend.corrupt(Space::Chunks, &e.hash, Some(data));
    let r = check(&h);
    has(&r, "chunk-corrupt", Space::Chunks, &e.hash);
}

#[test]
fn missing_chunk() {
    let (h, _, f) = populated();
    let (k, e) = first_extent(&h, f);
    h.backend.corrupt(Space::Chunks, &e.hash, None);
    let r = check(&h);
    has(&r, "chunk-missing", Space::Extents, &k);
}

#[test]
fn deleted_dirent() {
    let (h, d, _) = populated();
    let g = h.lookup(d, "f3").unwrap();
    let key = keys::dirent_key(d, b"f3");
    h.backend.corrupt(Space::Dirents, &key, None);
    let r = check(&h);
    has(&r, "orphan-unrecorded", Space::Nodes, &keys::ino_key(g));
    has(&r, "entries-mismatch", Space::Nodes, &keys::ino_key(d));
    has(&r, "link-stale", Space::Links, &keys::link_key(g, d, b"f3"));
    has(&r, "merkle-root", Space::Meta, keys::meta::ROOT);
}

#[test]
fn wrong_nlink() {
    let (h, _, f) = populated();
    let key = keys::ino_key(f);
    let mut n = records::decode_node(f, &h.backend.get_raw(Space::Nodes, &key)).unwrap();
    n.nlink = 3;
    h.backend
        .corrupt(Space::Nodes, &key, Some(records::encode_node(&n)));
    let r = check(&h);
    has(&r, "nlink-mismatch", Space::Nodes, &key);
    has(&r, "merkle-root", Space::Meta, keys::meta::ROOT);
}

#[test]
fn stale_merkle_node() {
    let (h, _, _) = populated();
    // Pick the deepest stored branch and flip one child hash in it.
    let key = h
        .backend
        .keys(Space::Merkle)
        .into_iter()
        .max_by_key(|k| k[0])
        .unwrap();
    let mut v = h.backend.get_raw(Space::Merkle, &key);
    let last = v.len() - 1;
    v[last] ^= 1;
    h.backend.corrupt(Space::Merkle, &key, Some(v));
    let r = check(&h);
    has(&r, "merkle-node", Space::Merkle, &key);
    // The records themselves are intact: the recomputed root still matches.
    assert_eq!(r.stats.root_stored, r.stats.root_computed);
}

#[test]
fn gap_in_log() {
    let (h, _, _) = populated();
    let k = 10u64.to_be_bytes();
    h.backend.corrupt(Space::Log, &k, None);
    let r = check(&h);
    has(&r, "log-gap", Space::Log, &11u64.to_be_bytes());
    assert!(r.problems.iter().any(|p| p.kind == "dedupe-invalid"));
}

#[test]
fn extent_past_eof_and_unnormalized() {
    let (h, _, f) = populated();
    let (k, e) = first_extent(&h, f);
    // Split the first extent in two mergeable halves: same bytes, but not
    // normalized.
    let mid = e.start + e.len() / 2;
    let left = records::Extent { end: mid, ..e };
    h.backend.corrupt(
        Space::Extents,
        &keys::extent_key(f, mid),
        Some(records::encode_extent(&left).to_vec()),
    );
    let right = records::Extent {
        start: mid,
        chunk_off: e.chunk_off + (mid - e.start) as u32,
        ..e
    };
    h.backend.corrupt(
        Space::Extents,
        &k,
        Some(records::encode_extent(&right).to_vec()),
    );
    let r = check(&h);
    has(&r, "extent-unnormalized", Space::Extents, &k);
}

#[test]
fn path_proofs_verify() {
    let (h, _, f) = populated();
    let p = fsck::prove_path(&h.engine, b"/src/main.rs").unwrap();
    assert_eq!(p.records.len(), 3);
    let root = h.root();
    fsck::verify_path_proof(&p, &root).unwrap();
    let mut other = root;
    other[0] ^= 1;
    assert!(fsck::verify_path_proof(&p, &other).is_err());
    assert!(fsck::prove_path(&h.engine, b"/src/nope").is_err());
    let _ = f;
}
