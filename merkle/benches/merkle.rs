//! Merkle update and proof cost on a trie of realistic size.
use criterion::{Criterion, criterion_group, criterion_main};
use hsfs_merkle::{MemStore, Trie};

fn h(i: u64) -> [u8; 32] {
    *blake3::hash(&i.to_le_bytes()).as_bytes()
}

/// What a commit does per batch: several records, one root per op.
fn eight_updates(t: &mut Trie, store: &MemStore, v: &mut u64) {
    for _ in 0..8 {
        *v += 1;
        t.insert(store, &h(*v % 100_000), &h(*v)).unwrap();
        t.root(store).unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let mut store = MemStore::default();
    let mut t = Trie::default();
    for i in 0..100_000u64 {
        t.insert(&store, &h(i), &h(i)).unwrap();
    }
    t.root(&store).unwrap();
    store.apply(t.writes());
    t.written();
    let mut v = 0u64;
    c.bench_function("merkle/update_one_record_100k", |b| {
        b.iter(|| {
            v += 1;
            t.insert(&store, &h(v % 100_000), &h(v)).unwrap();
            t.root(&store).unwrap()
        })
    });
    // A batch, then the changed branches handed over for the store's write
    // batch.
    c.bench_function("merkle/batch_of_8_updates_with_writes_100k", |b| {
        b.iter(|| {
            eight_updates(&mut t, &store, &mut v);
            store.apply(t.writes());
            t.written();
        })
    });
    // The same with the branches held in memory between batches, as the
    // engine does since format 2, written every 128 batches.
    let mut batches = 0u64;
    c.bench_function("merkle/batch_of_8_updates_held_100k", |b| {
        b.iter(|| {
            eight_updates(&mut t, &store, &mut v);
            batches += 1;
            if batches.is_multiple_of(128) {
                store.apply(t.writes());
                t.written();
            } else {
                t.hold();
            }
        })
    });
    t.root(&store).unwrap();
    store.apply(t.writes());
    t.written();
    c.bench_function("merkle/prove_100k", |b| {
        t.root(&store).unwrap();
        b.iter(|| t.prove(&store, &h(v % 100_000)).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
