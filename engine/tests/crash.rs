//! Crash tests.
//!
//! 1. A failpoint matrix: the commit pipeline "dies" at every step of a
//!    batch; the store is reopened from what was durable. All-or-nothing,
//!    fsck clean, every ack a client saw is still in the dedupe map, and a
//!    retry of every intent commits each exactly once.
//! 2. Real crashes: a child process commits to a fjall store and is killed
//!    with SIGKILL at arbitrary moments; the store reopens clean and every
//!    ack the child printed is there.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::*;
use hsfs_engine::commit::{CommitConfig, Committer, ManualClock, NoneOpen, SystemClock};
use hsfs_engine::failpoint::POINTS;
use hsfs_engine::keys::Space;
use hsfs_engine::op::{Ack, Intent, Op, Origin};
use hsfs_engine::store::mem::MemBackend;
use hsfs_engine::{ClientId, Engine, Errno, IntentId, ROOT_INO};

fn intents(n: u64) -> Vec<Intent> {
    (1..=n)
        .map(|seq| Intent {
            id: IntentId {
                client: ClientId([9; 16]),
                seq,
            },
            origin: Origin::default(),
            op: if seq % 3 == 0 {
                Op::Rmdir {
                    parent: ROOT_INO,
                    name: format!("d{}", seq - 1).into_bytes(),
                }
            } else {
                Op::Mkdir {
                    parent: ROOT_INO,
                    name: format!("d{seq}").into_bytes(),
                    perm: 0o755,
                    uid: 0,
                    gid: 0,
                }
            },
        })
        .collect()
}

/// Submits all intents at once (so they batch) and collects outcomes.
fn submit_all(c: &Committer, list: &[Intent]) -> Vec<Result<Ack, Errno>> {
    let (tx, rx) = crossbeam_channel::unbounded();
    for (i, it) in list.iter().enumerate() {
        let tx = tx.clone();
        c.submit(
            it.clone(),
            hsfs_engine::chunks::Payload::none(),
            Box::new(move |r| {
                let _ = tx.send((i, r));
            }),
        );
    }
    drop(tx);
    let mut out = vec![Err(Errno::EIO); list.len()];
    // Callbacks dropped by a "crashed" pipeline never send: the channel
    // closes and those intents stay EIO (unknown outcome).
    for (i, r) in rx {
        out[i] = r;
    }
    out
}

/// What a crash leaves: the store's durable image and, for a journaled
/// engine, a copy of its journal directory.
struct CrashImage {
    store: MemBackend,
    journal: Option<tempfile::TempDir>,
}

fn crash_image(h: &H, journal: Option<&std::path::Path>) -> CrashImage {
    let journal = journal.map(|from| {
        let to = tempfile::tempdir().unwrap();
        for f in std::fs::read_dir(from).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), to.path().join(f.file_name())).unwrap();
        }
        to
    });
    CrashImage {
        store: h.backend.crash_image(),
        journal,
    }
}

fn reopen(img: CrashImage) -> (Engine, Option<tempfile::TempDir>) {
    let engine = Engine::open(Arc::new(img.store), None).unwrap();
    if let Some(j) = &img.journal {
        assert!(engine.attach_journal(j.path(), None).unwrap());
    }
    (engine, img.journal)
}

fn check_reopened(img: CrashImage, list: &[Intent], seen: &[Result<Ack, Errno>]) {
    let (engine, _journal) = reopen(img);
    let r = hsfs_engine::fsck::check(&engine, &mut |_, _| {}).unwrap();
    assert!(r.is_clean(), "{:#?}", r.problems);
    // Every ack a client received survived.
    for (it, s) in list.iter().zip(seen) {
        if let Ok(a) = s
            && a.index > 1
            && a.op_id != [0; 16]
        {
            assert_eq!(engine.dedupe(&it.id).unwrap().as_ref(), Some(a), "lost ack");
        }
    }
    // Retrying everything commits each intent exactly once.
    let clock = Arc::new(ManualClock::default());
    clock.0.store(T0 + 10_000_000_000, Ordering::Relaxed);
    let c = Committer::start(
        engine.clone(),
        CommitConfig::default(),
        clock,
        Arc::new(NoneOpen),
    );
    let again = submit_all(&c, list);
    for (i, (a, b)) in seen.iter().zip(&again).enumerate() {
        if let Ok(a) = a
            && a.op_id != [0; 16]
        {
            assert_eq!(b.as_ref(), Ok(a), "retry of intent {i} got another answer");
        }
    }
    let log = engine.log_range(1, engine.applied_index()).unwrap();
    let mut per_intent: BTreeMap<IntentId, usize> = BTreeMap::new();
    for e in &log {
        *per_intent.entry(e.intent).or_default() += 1;
    }
    assert!(
        per_intent.values().all(|&n| n == 1),
        "an intent committed twice"
    );
    drop(c);
    let r = hsfs_engine::fsck::check(&engine, &mut |_, _| {}).unwrap();
    assert!(r.is_clean(), "{:#?}", r.problems);
}

#[test]
fn failpoint_matrix() {
    failpoint_matrix_of(Mode::Plain);
}

/// The same with a commit journal: the store itself is written without
/// syncing, so recovery depends on replaying the journal. Small journal
/// files make the writer switch files and checkpoint during the run.
#[test]
fn failpoint_matrix_journaled() {
    failpoint_matrix_of(Mode::Journaled);
}

/// The same with the pipeline committing on the submitting thread (every
/// intent of `submit_all` finds the pipeline idle, so each one commits
/// inline, and the crash happens on the test's own thread).
#[test]
fn failpoint_matrix_inline() {
    failpoint_matrix_of(Mode::Inline);
}

/// How the matrix's engine and pipeline are set up.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Plain,
    Journaled,
    Inline,
}

fn failpoint_matrix_of(mode: Mode) {
    // The points this engine passes: the journal's only with a journal;
    // the worker's never (it is tested in the cluster tests).
    let points = POINTS
        .iter()
        .filter(|p| **p != "worker.ack_received")
        .filter(|p| **p != "journal.after_write" || mode == Mode::Journaled);
    for &point in points {
        let mut fired = 0;
        for nth in 1..=4 {
            let jdir = tempfile::tempdir().unwrap();
            let mut h = match mode {
                Mode::Journaled => harness_journaled(jdir.path(), 4096),
                Mode::Inline => harness_inline(),
                Mode::Plain => harness(),
            };
            let journal = (mode == Mode::Journaled).then_some(jdir.path());
            h.mkdir(ROOT_INO, "base").unwrap();
            let list = intents(24);
            let root_before = h.root();
            let idx_before = h.engine.applied_index();
            h.engine.failpoints().arm(point, nth);
            let seen = submit_all(&h.committer, &list);
            if h.engine.failpoints().is_armed(point) {
                // Fewer than `nth` batches passed the point: a clean run.
                assert!(seen.iter().all(Result::is_ok), "{point}#{nth}: {seen:?}");
            } else {
                fired += 1;
                assert!(
                    seen.contains(&Err(Errno::EIO)),
                    "{point}#{nth} fired but every intent succeeded"
                );
            }
            let crash = crash_image(&h, journal);
            // Durable state is a prefix of whole batches: the applied index
            // and root of the image come from one log entry.
            let (e, _j) = reopen(crash_image(&h, journal));
            let m = e.status().meta;
            if m.applied == idx_before {
                assert_eq!(m.root, root_before);
            } else {
                let last = e.log_range(m.applied, m.applied).unwrap();
                assert_eq!(last[0].root, m.root, "{point}#{nth}");
            }
            drop(e);
            check_reopened(crash, &list, &seen);
        }
        assert!(fired > 0, "{point} never fired in {mode:?} mode");
    }
}

#[test]
fn failed_commit_poisons_then_recovers() {
    for fail_at in 1..=3 {
        let mut h = harness();
        h.mkdir(ROOT_INO, "base").unwrap();
        h.backend.set_faults(hsfs_engine::store::mem::Faults {
            fail_commit: Some(fail_at),
            ..Default::default()
        });
        let list = intents(30);
        // Three waves, so the failing write hits wave `fail_at`.
        let mut seen = Vec::new();
        for wave in list.chunks(10) {
            seen.extend(submit_all(&h.committer, wave));
        }
        assert!(seen.contains(&Err(Errno::EIO)), "{seen:?}");
        assert!(h.engine.is_poisoned());
        check_reopened(crash_image(&h, None), &list, &seen);
    }
}

/// Child side of `sigkill_during_commits`: commits forever, printing each
/// ack as `seq index root` once it is durable.
#[test]
#[ignore = "helper process for sigkill_during_commits"]
fn child_commit_loop() {
    let Ok(dir) = std::env::var("HSFS_CRASH_DIR") else {
        return;
    };
    let start: u64 = std::env::var("HSFS_CRASH_START").unwrap().parse().unwrap();
    let engine = Engine::open_dir(std::path::Path::new(&dir), &Default::default()).unwrap();
    let c = Committer::start(
        engine,
        CommitConfig::default(),
        Arc::new(SystemClock),
        Arc::new(NoneOpen),
    );
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut seq = start;
    loop {
        // Several in flight so batches hold more than one intent.
        for _ in 0..8 {
            seq += 1;
            let data = format!("payload {seq}").into_bytes();
            let (chunks, bytes) = chunked(0, &data);
            let (op, bytes) = if seq.is_multiple_of(2) {
                (
                    Op::Mkdir {
                        parent: ROOT_INO,
                        name: format!("d{seq}").into_bytes(),
                        perm: 0o755,
                        uid: 0,
                        gid: 0,
                    },
                    hsfs_engine::chunks::Payload::none(),
                )
            } else {
                (
                    Op::Write {
                        ino: ROOT_INO + 1,
                        at: hsfs_engine::op::WriteAt::Append,
                        chunks,
                    },
                    bytes,
                )
            };
            let it = Intent {
                id: IntentId {
                    client: ClientId([3; 16]),
                    seq,
                },
                origin: Origin::default(),
                op,
            };
            let tx = tx.clone();
            c.submit(
                it,
                bytes,
                Box::new(move |r| {
                    let _ = tx.send((seq, r));
                }),
            );
        }
        for _ in 0..8 {
            let (s, r) = rx.recv().unwrap();
            let a = r.unwrap();
            println!("{s} {} {}", a.index, hex::encode(a.root));
        }
    }
}

#[test]
fn sigkill_during_commits() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    {
        let e = Engine::init_dir(
            &state,
            hsfs_engine::WorkspaceId([5; 16]),
            (0o755, 0, 0),
            T0,
            &Default::default(),
        )
        .unwrap();
        let c = Committer::start(
            e.clone(),
            CommitConfig::default(),
            Arc::new(SystemClock),
            Arc::new(NoneOpen),
        );
        let it = Intent {
            id: IntentId {
                client: ClientId([4; 16]),
                seq: 1,
            },
            origin: Origin::default(),
            op: create_op(ROOT_INO, "log"),
        };
        c.commit(it, hsfs_engine::chunks::Payload::none()).unwrap();
    }
    let exe = std::env::current_exe().unwrap();
    let mut acked: BTreeMap<u64, (u64, String)> = BTreeMap::new();
    let mut next_start = 0u64;
    for round in 0..6 {
        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "child_commit_loop",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("HSFS_CRASH_DIR", &state)
            .env("HSFS_CRASH_START", next_start.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        // Let it commit a varying number of acks, then kill it mid-flight.
        let want = 40 + round * 37;
        let mut got = 0;
        let mut line = String::new();
        while got < want {
            line.clear();
            if out.read_line(&mut line).unwrap() == 0 {
                break;
            }
            let mut parts = line.split_whitespace();
            let (Some(s), Some(i), Some(r)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let Ok(s) = s.parse::<u64>() else { continue };
            acked.insert(s, (i.parse().unwrap(), r.to_string()));
            got += 1;
        }
        // SAFETY-free: plain SIGKILL of our own child.
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(got >= want, "child stopped early in round {round}");
        next_start = acked.keys().max().copied().unwrap_or(0) + 1000;

        let e = Engine::open_dir(&state, &Default::default()).unwrap();
        let r = hsfs_engine::fsck::check(&e, &mut |_, _| {}).unwrap();
        assert!(r.is_clean(), "round {round}: {:#?}", r.problems);
        for (seq, (index, root)) in &acked {
            let id = IntentId {
                client: ClientId([3; 16]),
                seq: *seq,
            };
            let a = e
                .dedupe(&id)
                .unwrap()
                .unwrap_or_else(|| panic!("acked intent {seq} lost"));
            assert_eq!((a.index, hex::encode(a.root)), (*index, root.clone()));
        }
    }
}

/// Many batches through small journal files: the writer switches files and
/// checkpoints repeatedly, and chunks arrive both inside batches and ahead
/// of them (`ingest_chunks`, as uploads from workers do). A crash image of
/// the unsynced store plus the journal recovers every acknowledged op,
/// file contents included.
#[test]
fn journal_recovers_across_switches() {
    let jdir = tempfile::tempdir().unwrap();
    let mut h = harness_journaled(jdir.path(), 16 << 10);
    let f = h.create(ROOT_INO, "f").unwrap();
    let mut expect = Vec::new();
    for i in 0..200u32 {
        let data = format!("line {i} {}\n", "x".repeat((i % 7 * 300) as usize)).into_bytes();
        if i % 3 == 0 {
            // Upload the chunks first, as a worker's intent does.
            let hash = *blake3::hash(&data).as_bytes();
            let bad = h.engine.ingest_chunks([(hash, &data[..])]).unwrap();
            assert!(bad.is_empty());
        }
        h.append(f, &data).unwrap();
        expect.extend_from_slice(&data);
        if i % 10 == 0 {
            h.mkdir(ROOT_INO, &format!("d{i}")).unwrap();
        }
    }
    // One more append and op committed with no checkpoint running and no
    // file switch (which would start one): the store alone cannot hold
    // them, and it holds the appended chunk in memory only.
    let mut n = 0;
    loop {
        let generation = h.engine.settle_journal().expect("journaled");
        let data = format!("last {n}\n").into_bytes();
        h.append(f, &data).unwrap();
        expect.extend_from_slice(&data);
        h.mkdir(ROOT_INO, &format!("last{n}")).unwrap();
        if h.engine.settle_journal() == Some(generation) {
            break;
        }
        n += 1;
        assert!(n < 100, "every small op switched journal files");
    }
    let root = h.root();
    // The process dies: what reached the OS survives, the chunks the store
    // kept in memory do not; the journal restores them.
    let died = h.backend.process_crash_image();
    assert!(
        died.keys(Space::Chunks).len() < h.backend.keys(Space::Chunks).len(),
        "the last append's chunk must be held in memory only"
    );
    let (e, _j) = reopen(CrashImage {
        store: died,
        journal: crash_image(&h, Some(jdir.path())).journal,
    });
    assert_eq!(e.applied_index(), h.engine.applied_index());
    assert_eq!(e.read(f, 0, 1 << 20).unwrap(), expect);
    let r = hsfs_engine::fsck::check(&e, &mut |_, _| {}).unwrap();
    assert!(r.is_clean(), "{:#?}", r.problems);
    drop(e);
    let applied = h.engine.applied_index();
    let durable = Engine::open(Arc::new(h.backend.crash_image()), None).unwrap();
    assert!(
        durable.applied_index() < applied,
        "the store alone must lag (the journal is the commit point)"
    );
    drop(durable);
    let (e, _j) = reopen(crash_image(&h, Some(jdir.path())));
    assert_eq!(e.applied_index(), applied);
    assert_eq!(e.status().meta.root, root);
    assert_eq!(e.read(f, 0, 1 << 20).unwrap(), expect);
    let r = hsfs_engine::fsck::check(&e, &mut |_, _| {}).unwrap();
    assert!(r.is_clean(), "{:#?}", r.problems);
}

/// Writes of 256 to 450 KiB of distinct chunks into journal files of
/// 1 MiB: every few records a file switch starts a checkpoint, and each
/// record carries its batch's chunks; after a crash every acknowledged
/// byte reads back from the store and the journal.
#[test]
fn large_writes_across_journal_switches_survive_a_crash() {
    let jdir = tempfile::tempdir().unwrap();
    let mut h = harness_journaled(jdir.path(), 1 << 20);
    let f = h.create(ROOT_INO, "f").unwrap();
    let mut expect = Vec::new();
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    for i in 0..24usize {
        let len = (256 << 10) + i * 7919 % (200 << 10);
        let data: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        h.write(f, expect.len() as u64, &data).unwrap();
        expect.extend_from_slice(&data);
        h.mkdir(ROOT_INO, &format!("d{i}")).unwrap();
    }
    let (e, _journal) = reopen(crash_image(&h, Some(jdir.path())));
    assert_eq!(e.read(f, 0, usize::MAX / 2).unwrap(), expect);
    assert!(e.lookup(ROOT_INO, b"d23").is_ok());
    let r = hsfs_engine::fsck::check(&e, &mut |_, _| {}).unwrap();
    assert!(r.is_clean(), "{:#?}", r.problems);
}
