//! Criterion micro-benchmarks of the engine pieces: apply, group commit
//! with real syncs, chunk put/get, and the extent lookup of a read.
//! (Merkle update and proof: merkle/benches/merkle.rs; latency percentiles
//! and whole-system figures: `hsfs-bench engine`.)

use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use hsfs_engine::chunks::Payload;
use hsfs_engine::commit::{CommitConfig, Committer, NoneOpen, SystemClock};
use hsfs_engine::op::{Intent, Op, Origin, WriteAt};
use hsfs_engine::store::mem::MemBackend;
use hsfs_engine::{ClientId, Engine, FileKind, IntentId, ROOT_INO, WorkspaceId};

fn intent(seq: u64, op: Op) -> Intent {
    Intent {
        id: IntentId {
            client: ClientId([1; 16]),
            seq,
        },
        origin: Origin::default(),
        op,
    }
}

fn mem_engine() -> Engine {
    Engine::init(
        Arc::new(MemBackend::new()),
        None,
        WorkspaceId([1; 16]),
        (0o755, 0, 0),
        1,
    )
    .unwrap()
}

fn apply(c: &mut Criterion) {
    let e = mem_engine();
    let mut seq = 0u64;
    let mut t = 10i64;
    c.bench_function("apply/create (in-memory store, 100 per batch)", |b| {
        b.iter_batched(
            || (),
            |()| {
                let mut batch = e.batch().unwrap();
                for _ in 0..100 {
                    seq += 1;
                    t += 1;
                    let op = Op::Create {
                        parent: ROOT_INO,
                        name: format!("f{seq}").into_bytes(),
                        kind: FileKind::File,
                        perm: 0o644,
                        uid: 0,
                        gid: 0,
                        excl: true,
                        truncate: false,
                    };
                    batch.commit_intent(&intent(seq, op), t).unwrap();
                }
                batch.finish(false).unwrap();
            },
            BatchSize::PerIteration,
        );
    });
}

fn group_commit(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::init_dir(
        &dir.path().join("s"),
        WorkspaceId([2; 16]),
        (0o755, 0, 0),
        1,
        &Default::default(),
    )
    .unwrap();
    let committer = Committer::start(
        e,
        CommitConfig::default(),
        Arc::new(SystemClock),
        Arc::new(NoneOpen),
    );
    let mut seq = 0u64;
    c.bench_function("commit/create, durable, one committer", |b| {
        b.iter(|| {
            seq += 1;
            let op = Op::Create {
                parent: ROOT_INO,
                name: format!("f{seq}").into_bytes(),
                kind: FileKind::File,
                perm: 0o644,
                uid: 0,
                gid: 0,
                excl: true,
                truncate: false,
            };
            committer.commit(intent(seq, op), Payload::none()).unwrap()
        });
    });
}

fn chunks_and_reads(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::init_dir(
        &dir.path().join("s"),
        WorkspaceId([3; 16]),
        (0o755, 0, 0),
        1,
        &Default::default(),
    )
    .unwrap();
    // A file of 1000 chunks.
    let mut b = e.batch().unwrap();
    let a = b
        .commit_intent(
            &intent(
                1,
                Op::Create {
                    parent: ROOT_INO,
                    name: b"big".to_vec(),
                    kind: FileKind::File,
                    perm: 0o644,
                    uid: 0,
                    gid: 0,
                    excl: true,
                    truncate: false,
                },
            ),
            2,
        )
        .unwrap();
    let ino = match a.result {
        hsfs_engine::op::OpResult::Node { ino, .. } => ino,
        _ => unreachable!(),
    };
    b.finish(true).unwrap();
    for k in 0..100u64 {
        let t = 3 + k as i64;
        let mut b = e.batch().unwrap();
        let data: Vec<u8> = (0..10 * 65536u32)
            .map(|i| (i as u64 * 31 + k) as u8)
            .collect();
        let (refs, p) = Payload::split(Some(k * 10 * 65536), &data);
        for (h, d) in p.pieces() {
            b.put_chunk(*h, d.as_ref());
        }
        b.commit_intent(
            &intent(
                10 + k,
                Op::Write {
                    ino,
                    at: WriteAt::Offset(k * 10 * 65536),
                    chunks: refs,
                },
            ),
            t,
        )
        .unwrap();
        b.finish(false).unwrap();
    }
    let mut g = c.benchmark_group("read");
    g.throughput(Throughput::Bytes(4096));
    let mut off = 0u64;
    g.bench_function("4 KiB from a 1000-chunk file", |bch| {
        bch.iter(|| {
            off = (off + 7 * 65536 + 4096) % (1000 * 65536 - 4096);
            e.read(ino, off, 4096).unwrap()
        });
    });
    g.throughput(Throughput::Bytes(65536));
    g.bench_function("chunk get 64 KiB", |bch| {
        let h = *blake3::hash(
            &(0..65536u32)
                .map(|i| (i as u64 * 31) as u8)
                .collect::<Vec<_>>(),
        )
        .as_bytes();
        bch.iter(|| e.chunk(&h).unwrap());
    });
    g.finish();
    let mut g = c.benchmark_group("chunk");
    g.throughput(Throughput::Bytes(65536));
    let mut n = 0u64;
    g.bench_function("put 64 KiB (hash + store, unsynced)", |bch| {
        bch.iter(|| {
            n += 1;
            let data: Vec<u8> = (0..65536u32).map(|i| (i as u64 ^ n) as u8).collect();
            let h = *blake3::hash(&data).as_bytes();
            e.ingest_chunks([(h, data.as_slice())]).unwrap()
        });
    });
    g.finish();
}

criterion_group!(benches, apply, group_commit, chunks_and_reads);
criterion_main!(benches);
