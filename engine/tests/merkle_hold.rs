//! Merkle branches held in memory between flushes: the store stays
//! recoverable from its delta records, and a flush leaves the canonical trie.

mod common;

use std::sync::Arc;

use common::*;
use hsfs_engine::Engine;
use hsfs_engine::engine::MERKLE_HOLD_DELTAS;
use hsfs_engine::keys::{Space, meta};
use hsfs_engine::op::LogEntry;
use hsfs_engine::repair::{self, RepairError};
use hsfs_engine::store::Backend;
use hsfs_engine::store::mem::Faults;

const R: u64 = hsfs_engine::ROOT_INO;

/// Some files with data in two directories.
fn populate(h: &mut H, tag: &str) {
    let d = h.mkdir(R, &format!("dir-{tag}")).unwrap();
    for i in 0..20 {
        let f = h.create(d, &format!("f{i}")).unwrap();
        h.write(f, 0, format!("{tag} {i}").as_bytes()).unwrap();
    }
    h.unlink(d, "f3").unwrap();
    h.rename(d, "f4", R, &format!("moved-{tag}")).unwrap();
}

#[test]
fn held_branches_are_rebuilt_from_the_deltas_on_open() {
    let mut h = harness();
    populate(&mut h, "a");
    let deltas = h.backend.keys(Space::MerkleDelta);
    assert!(
        deltas.len() > 40,
        "each batch left a delta record: {}",
        deltas.len()
    );
    // The process dies with its branches held: the store has the deltas.
    let img = Arc::new(h.backend.process_crash_image());
    let reopened = Engine::open(img.clone(), None).unwrap();
    assert_eq!(reopened.status().meta.root, h.root());
    // Both go on with the same ops and agree on every root.
    let now = h.clock.0.load(std::sync::atomic::Ordering::Relaxed);
    let mut h2 = harness_resume(img, reopened, now, h.seq);
    populate(&mut h, "b");
    populate(&mut h2, "b");
    assert_eq!(h2.root(), h.root());
    h2.fsck();
    assert!(
        h2.backend.keys(Space::MerkleDelta).is_empty(),
        "fsck flushed"
    );
    h.fsck();
}

#[test]
fn a_corrupt_delta_is_refused_on_open() {
    let mut h = harness();
    populate(&mut h, "a");
    let deltas = h.backend.keys(Space::MerkleDelta);
    // The last batch's changes are final (an earlier one's may be
    // overwritten by later batches, and then its bytes do not matter).
    let key = deltas.last().unwrap();
    let mut v = h
        .backend
        .get(Space::MerkleDelta, key)
        .unwrap()
        .unwrap()
        .to_vec();
    v[40] ^= 1; // its first change's value hash
    let img = h.backend.process_crash_image();
    img.corrupt(Space::MerkleDelta, key, Some(v));
    let err = Engine::open(Arc::new(img), None).err().expect("refused");
    assert!(err.to_string().contains("merkle deltas give root"), "{err}");
}

#[test]
fn the_branches_are_written_after_many_batches() {
    let mut h = harness();
    let d = h.mkdir(R, "d").unwrap();
    let mut flushed = false;
    // One batch per create: after MERKLE_HOLD_DELTAS of them the held
    // branches are written (the trie of a few thousand records has too
    // few branches to reach MERKLE_HOLD_BRANCHES).
    for i in 0..2 * MERKLE_HOLD_DELTAS {
        h.create(d, &format!("file-{i:05}")).unwrap();
        let deltas = h.backend.keys(Space::MerkleDelta).len();
        if i > 10 && deltas == 0 {
            flushed = true;
            // What the store holds now is the whole trie.
            let fresh = Engine::open(Arc::new(h.backend.process_crash_image()), None).unwrap();
            assert_eq!(fresh.status().meta.root, h.root());
            break;
        }
    }
    assert!(flushed, "no flush in {} creates", 2 * MERKLE_HOLD_DELTAS);
    h.fsck();
}

#[test]
fn the_branches_are_written_once_enough_are_held() {
    // Batches of many creates: the held branches pass MERKLE_HOLD_BRANCHES
    // long before MERKLE_HOLD_DELTAS batches.
    let mut h = harness();
    let d = h.mkdir(R, "d").unwrap();
    let mut now = T0 + 1_000_000_000;
    let mut batches = 0;
    loop {
        let intents: Vec<_> = (0..1000)
            .map(|i| h.intent(create_op(d, &format!("b{batches}-{i}"))))
            .collect();
        let mut b = h.engine.batch().unwrap();
        for intent in &intents {
            now += 1;
            b.commit_intent(intent, now).unwrap();
        }
        b.finish(true).unwrap();
        batches += 1;
        if h.backend.keys(Space::MerkleDelta).is_empty() {
            break;
        }
        assert!(batches < 100, "no flush after {batches} batches");
    }
    assert!(batches < MERKLE_HOLD_DELTAS, "flushed by the branch count");
    let fresh = Engine::open(Arc::new(h.backend.process_crash_image()), None).unwrap();
    assert_eq!(fresh.status().meta.root, h.root());
    h.fsck();
}

#[test]
fn a_failed_flush_keeps_the_held_branches() {
    let mut h = harness();
    populate(&mut h, "a");
    assert!(!h.backend.keys(Space::MerkleDelta).is_empty());
    h.backend.set_faults(hsfs_engine::store::mem::Faults {
        fail_commit: Some(1),
        ..Default::default()
    });
    assert!(h.engine.flush_merkle().is_err());
    // The trie still holds what the store lacks: proofs match the root.
    let key = R.to_be_bytes();
    let value = h.backend.get(Space::Nodes, &key).unwrap().unwrap();
    let proof = h.engine.prove(Space::Nodes, &key).unwrap();
    proof
        .verify(
            &h.root(),
            Some(&hsfs_engine::keys::record_value_hash(&value)),
        )
        .unwrap();
    // And the store, deltas included, reopens to the same root.
    let img = Arc::new(h.backend.process_crash_image());
    let reopened = Engine::open(img.clone(), None).unwrap();
    assert_eq!(reopened.status().meta.root, h.root());
    harness_resume(img, reopened, 0, 0).fsck();
}

/// The store image after `populate`, with the last delta record damaged
/// (so opening it is refused), and the damaged key.
fn damaged_delta_image(h: &mut H) -> Arc<hsfs_engine::store::mem::MemBackend> {
    populate(h, "a");
    let key = h.backend.keys(Space::MerkleDelta).pop().unwrap();
    let mut v = h
        .backend
        .get(Space::MerkleDelta, &key)
        .unwrap()
        .unwrap()
        .to_vec();
    v[40] ^= 1;
    let img = h.backend.process_crash_image();
    img.corrupt(Space::MerkleDelta, &key, Some(v));
    Arc::new(img)
}

/// Opens `img` and checks it whole with fsck.
fn opens_clean(img: Arc<hsfs_engine::store::mem::MemBackend>) -> Engine {
    let e = Engine::open(img, None).unwrap();
    let report = hsfs_engine::fsck::check(&e, &mut |_, _| {}).unwrap();
    assert!(report.is_clean(), "{:#?}", report.problems);
    e
}

#[test]
fn a_rebuild_mends_a_corrupt_delta() {
    let mut h = harness();
    let img = damaged_delta_image(&mut h);
    assert!(Engine::open(img.clone(), None).is_err(), "refused before");
    let r = repair::rebuild_merkle(&*img).unwrap();
    assert!(r.deltas > 0 && r.branches > 0, "{r:?}");
    assert_eq!(r.root, hex::encode(h.root()));
    assert!(img.keys(Space::MerkleDelta).is_empty());
    // The mended store opens at the same root and goes on like the
    // original.
    let reopened = Engine::open(img.clone(), None).unwrap();
    assert_eq!(reopened.status().meta.root, h.root());
    let now = h.clock.0.load(std::sync::atomic::Ordering::Relaxed);
    let mut h2 = harness_resume(img, reopened, now, h.seq);
    h2.fsck();
    populate(&mut h, "b");
    populate(&mut h2, "b");
    assert_eq!(h2.root(), h.root());
    h2.fsck();
}

#[test]
fn a_rebuild_replaces_stale_branches() {
    let mut h = harness();
    populate(&mut h, "a");
    h.fsck(); // writes the held branches: no delta records left
    let branches = h.backend.keys(Space::Merkle);
    let img = Arc::new(h.backend.process_crash_image());
    // One branch damaged, one gone, one that belongs to no trie.
    let v = img.get(Space::Merkle, &branches[0]).unwrap().unwrap();
    let mut bad = v.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    img.corrupt(Space::Merkle, &branches[0], Some(bad));
    img.corrupt(Space::Merkle, &branches[1], None);
    img.corrupt(Space::Merkle, b"not a branch", Some(v.to_vec()));
    let damaged = Engine::open(img.clone(), None).unwrap();
    let report = hsfs_engine::fsck::check(&damaged, &mut |_, _| {}).unwrap();
    assert!(!report.is_clean(), "fsck sees the damage");
    drop(damaged);
    let r = repair::rebuild_merkle(&*img).unwrap();
    assert_eq!(r.stale_branches, 1, "{r:?}");
    assert_eq!(r.branches as usize, branches.len());
    assert_eq!(img.keys(Space::Merkle), branches);
    opens_clean(img);
}

/// Runs a rebuild that must be refused (its message naming `why`) and
/// checks that it wrote nothing.
fn refused_unchanged(img: &hsfs_engine::store::mem::MemBackend, why: &str) {
    let merkle = (img.keys(Space::Merkle), img.keys(Space::MerkleDelta));
    let err = repair::rebuild_merkle(img).unwrap_err();
    assert!(matches!(err, RepairError::Refused(_)), "{err}");
    assert!(err.to_string().contains(why), "{err}");
    assert_eq!(
        (img.keys(Space::Merkle), img.keys(Space::MerkleDelta)),
        merkle
    );
    assert!(
        img.get(Space::Meta, meta::MERKLE_REBUILD)
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_rebuild_refuses_records_that_differ_and_writes_nothing() {
    let mut h = harness();
    let img = damaged_delta_image(&mut h);
    // A node record changed behind the log's back: new branches cannot
    // make the store agree with the committed root.
    let key = img.keys(Space::Nodes).pop().unwrap();
    let mut v = img.get(Space::Nodes, &key).unwrap().unwrap().to_vec();
    v[0] ^= 1;
    img.corrupt(Space::Nodes, &key, Some(v));
    refused_unchanged(&img, "the records give root");
}

#[test]
fn a_rebuild_cut_short_is_refused_on_open_until_run_again() {
    // The dangerous case: no delta records (so an open would not compare
    // the branches with the root) and a rebuild that wrote some of its
    // branches before it stopped.
    let mut h = harness();
    populate(&mut h, "a");
    h.fsck(); // writes the held branches: no delta records left
    let img = Arc::new(h.backend.process_crash_image());
    let branches = img.keys(Space::Merkle);
    img.corrupt(Space::Merkle, &branches[0], None);
    // Commit 1 is the marker, 2 the first batch of 2 branches, 3 fails.
    img.set_faults(Faults {
        fail_commit: Some(3),
        ..Faults::default()
    });
    let err = repair::rebuild_merkle_in_batches(&*img, 2).unwrap_err();
    assert!(matches!(err, RepairError::Engine(_)), "{err}");
    // After the process dies (the unsynced batch reached the OS), and
    // after a power cut (only the synced marker is left): refused.
    for cut in [img.process_crash_image(), img.crash_image()] {
        let cut = Arc::new(cut);
        let err = Engine::open(cut.clone(), None).err().expect("refused");
        assert!(err.to_string().contains("rebuild"), "{err}");
        repair::rebuild_merkle(&*cut).unwrap();
        assert_eq!(opens_clean(cut).status().meta.root, h.root());
    }
}

#[test]
fn a_rebuild_refuses_a_log_whose_root_differs_and_writes_nothing() {
    let mut h = harness();
    let img = damaged_delta_image(&mut h);
    let applied = h.engine.status().meta.applied;
    let key = applied.to_be_bytes();
    let mut e = LogEntry::decode(&img.get(Space::Log, &key).unwrap().unwrap()).unwrap();
    e.root[0] ^= 1;
    img.corrupt(Space::Log, &key, Some(e.encode()));
    refused_unchanged(&img, "log entry");
}
