//! Merkle branches held in memory between flushes: the store stays
//! recoverable from its delta records, and a flush leaves the canonical trie.

mod common;

use std::sync::Arc;

use common::*;
use hsfs_engine::Engine;
use hsfs_engine::engine::MERKLE_HOLD_DELTAS;
use hsfs_engine::keys::Space;
use hsfs_engine::store::Backend;

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
