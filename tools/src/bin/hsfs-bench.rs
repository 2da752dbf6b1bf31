//! `hsfs-bench`: whole-system benchmarks that print tables with p50/p99 and
//! ratios against a baseline measured in the same run.
//!
//! `hsfs-bench engine [--dir DIR] [--files N] [--json FILE]`: the engine
//! (no FUSE): durable commit latency against the disk's fdatasync floor,
//! group commit throughput with 1/8/64 committers, apply throughput,
//! Merkle update and proof latency, chunk put/get, fsck speed.
//!
//! `hsfs-bench mount [--dir DIR] [--runs N] [--scale F] [--only W,...]
//! [--json FILE] [--hsfs-args "..."]`: whole-mount workloads on tmpfs,
//! passthrough_ll over tmpfs (the FUSE floor), the local disk and an hsfs
//! mount, with the disk's fdatasync floor (see docs/PERFORMANCE.md).
//!
//! `hsfs-bench scale [--dir DIR] [--scale F] [--json FILE] [--hsfs-args
//! "..."]`: mount time of a 1M-file workspace, `ls` of a 100k-entry
//! directory, RSS after reading a 100k-file 2 GiB workspace, a 10 GiB file
//! read back byte-exact, store size of a git clone and of identical files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use hsfs_engine::chunks::Payload;
use hsfs_engine::commit::{CommitConfig, Committer, NoneOpen, SystemClock};
use hsfs_engine::keys::Space;
use hsfs_engine::op::{Op, WriteAt};
use hsfs_engine::store::mem::MemBackend;
use hsfs_engine::{Engine, EngineOptions, Ino, ROOT_INO, WorkspaceId};
use hsfs_tools::bench::populate::{
    Shape, create, data, ino_of, intent, new_store, new_store_with, populate,
};
use hsfs_tools::bench::{Samples, Table, fdatasync_floor, us};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(
    name = "hsfs-bench",
    about = "hsfs benchmarks (tables with ratios to same-run baselines)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Engine benchmarks (no FUSE).
    Engine {
        /// Directory on the disk under test (default: a temp dir in /var/tmp).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Files in the store used for Merkle, proof and fsck figures.
        #[arg(long, default_value_t = 100_000)]
        files: u64,
        /// Write all tables as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Whole-mount workloads: tmpfs, passthrough_ll, local disk and hsfs.
    Mount(hsfs_tools::bench::mount::MountArgs),
    /// Scale, memory and space targets: a 1M-file workspace, RSS on a
    /// 100k-file one, a 10 GiB file, store size of a git clone and of
    /// identical files.
    Scale(hsfs_tools::bench::scale::ScaleArgs),
    /// One process of the concurrent mount workloads (internal).
    #[command(hide = true)]
    Worker(hsfs_tools::bench::mount::WorkerArgs),
    /// Multi-host figures: a leader and worker processes on loopback QUIC.
    Cluster {
        /// Directory on the disk under test (default: /var/tmp).
        #[arg(long, default_value = "/var/tmp")]
        dir: PathBuf,
        /// Ops a restarted worker must catch up on.
        #[arg(long, default_value_t = 100_000)]
        catch_up_ops: u64,
        /// Files each writer creates in the throughput figure.
        #[arg(long, default_value_t = 400)]
        files_per_writer: usize,
        /// Write all tables as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

/// Creates through the batch API, one durable batch each.
fn direct_creates(e: &Engine, n: u64) -> Result<Samples> {
    let mut s = Samples::default();
    for i in 0..n {
        let mut b = e.batch()?;
        let now = b.meta().last_time + 1;
        s.time(|| -> Result<()> {
            b.commit_intent(&intent(1, i + 1, create(ROOT_INO, format!("f{i}"))), now)
                .map_err(|f| anyhow::anyhow!("{f}"))?;
            b.finish(true)?;
            Ok(())
        })?;
    }
    Ok(s)
}

/// Per-op latency of one committer through a commit pipeline with
/// `config`: for each of `n` files in a fresh directory, a create, a 4 KiB
/// write and an fsync (a barrier: nothing new to sync).
struct PipelineLatency {
    creates: Samples,
    writes: Samples,
    fsyncs: Samples,
}

fn pipeline_latency(
    dir: &Path,
    name: &str,
    config: CommitConfig,
    n: u64,
) -> Result<PipelineLatency> {
    let c = Committer::start(
        new_store(dir, name)?,
        config,
        Arc::new(SystemClock),
        Arc::new(NoneOpen),
    );
    let fail = |e: hsfs_engine::Errno| anyhow::anyhow!("{e}");
    let mkdir = Op::Mkdir {
        parent: ROOT_INO,
        name: b"d".to_vec(),
        perm: 0o755,
        uid: 0,
        gid: 0,
    };
    let d = ino_of(
        c.commit(intent(1, 1, mkdir), Payload::none())
            .map_err(fail)?
            .result,
    );
    let mut out = PipelineLatency {
        creates: Samples::default(),
        writes: Samples::default(),
        fsyncs: Samples::default(),
    };
    let mut seq = 1;
    for i in 0..n {
        seq += 1;
        let create = intent(1, seq, create(d, format!("f{i}")));
        let a = out.creates.time(|| c.commit(create, Payload::none()));
        let ino = ino_of(a.map_err(fail)?.result);
        let buf = data(4096, i);
        let (refs, p) = Payload::split(Some(0), &buf);
        seq += 1;
        let write = Op::Write {
            ino,
            at: WriteAt::Offset(0),
            chunks: refs,
        };
        out.writes
            .time(|| c.commit(intent(1, seq, write), p))
            .map_err(fail)?;
        seq += 1;
        out.fsyncs
            .time(|| c.commit(intent(1, seq, Op::Fsync { ino }), Payload::none()))
            .map_err(fail)?;
    }
    Ok(out)
}

/// Durable commit latency of one committer against the fdatasync floor.
fn latency(dir: &Path, tables: &mut Vec<Table>) -> Result<()> {
    let floor = fdatasync_floor(dir, 2000)?;
    let mut t = Table::new(
        "Durable commit latency, one committer (fdatasync floor measured in the same run)",
        &[
            "op",
            "n",
            "p50 us",
            "p99 us",
            "p50 / floor p50",
            "p50 - floor p50 (us)",
        ],
    );
    let fl = floor.p50();
    let row = |t: &mut Table, name: &str, s: &Samples| {
        t.row(
            name,
            &[
                ("n", json!(s.len())),
                ("p50_us", json!(us(s.p50()))),
                ("p99_us", json!(us(s.p99()))),
                (
                    "ratio_to_floor",
                    json!(s.p50().as_secs_f64() / fl.as_secs_f64()),
                ),
                ("over_floor_us", json!(us(s.p50()) - us(fl))),
            ],
        );
    };
    row(&mut t, "floor: append 100 B + fdatasync", &floor);
    let handed = pipeline_latency(dir, "latency", CommitConfig::default(), 2000)?;
    let inline_config = CommitConfig {
        inline_when_idle: true,
        ..CommitConfig::default()
    };
    let inline = pipeline_latency(dir, "latency-inline", inline_config, 2000)?;
    row(&mut t, "create (empty file)", &handed.creates);
    row(
        &mut t,
        "  same, committed on the caller's thread when idle (the mount's setting)",
        &inline.creates,
    );
    // The same op without the pipeline thread: the engine's own cost, with
    // the commit journal (the default) and with fjall's own journal synced
    // instead (the baseline the journal is measured against).
    let direct = direct_creates(&new_store(dir, "latency-direct")?, 2000)?;
    row(
        &mut t,
        "create, engine batch API (no pipeline thread)",
        &direct,
    );
    let no_journal = EngineOptions {
        journal_bytes: None,
        ..EngineOptions::default()
    };
    let fjall_sync = direct_creates(&new_store_with(dir, "latency-fjall", &no_journal)?, 2000)?;
    row(
        &mut t,
        "  same, syncing fjall's journal instead of the commit journal",
        &fjall_sync,
    );
    row(&mut t, "write 4 KiB", &handed.writes);
    row(
        &mut t,
        "  same, committed on the caller's thread when idle",
        &inline.writes,
    );
    row(&mut t, "fsync after the write (barrier)", &handed.fsyncs);
    row(
        &mut t,
        "  same, committed on the caller's thread when idle",
        &inline.fsyncs,
    );
    tables.push(t);
    Ok(())
}

/// Group commit: K committers each commit creates + 4 KiB writes.
fn throughput(dir: &Path, tables: &mut Vec<Table>) -> Result<()> {
    let mut t = Table::new(
        "Group commit throughput (create + 4 KiB write per file, durable)",
        &[
            "committers",
            "ops/s",
            "durable batches/s",
            "ops per batch",
            "vs 1 committer",
        ],
    );
    let mut base = 0.0;
    for k in [1usize, 8, 64] {
        let e = new_store(dir, &format!("tp{k}"))?;
        let c = Arc::new(Committer::start(
            e,
            CommitConfig::default(),
            Arc::new(SystemClock),
            Arc::new(NoneOpen),
        ));
        let per = (4000 / k).max(40) as u64;
        let start = Instant::now();
        let threads: Vec<_> = (0..k)
            .map(|id| {
                let c = c.clone();
                std::thread::spawn(move || {
                    let client = (id + 1) as u8;
                    let mut seq = 0;
                    for i in 0..per {
                        seq += 1;
                        let a = c
                            .commit(
                                intent(client, seq, create(ROOT_INO, format!("c{id}-f{i}"))),
                                Payload::none(),
                            )
                            .expect("create");
                        let buf = data(4096, i ^ (id as u64) << 32);
                        let (refs, p) = Payload::split(Some(0), &buf);
                        seq += 1;
                        c.commit(
                            intent(
                                client,
                                seq,
                                Op::Write {
                                    ino: ino_of(a.result),
                                    at: WriteAt::Offset(0),
                                    chunks: refs,
                                },
                            ),
                            p,
                        )
                        .expect("write");
                    }
                })
            })
            .collect();
        for th in threads {
            th.join()
                .map_err(|_| anyhow::anyhow!("committer thread panicked"))?;
        }
        let secs = start.elapsed().as_secs_f64();
        let ops = (per * 2 * k as u64) as f64;
        let batches = c.stats().batches.load(std::sync::atomic::Ordering::Relaxed) as f64;
        let rate = ops / secs;
        if k == 1 {
            base = rate;
        }
        t.row(
            &k.to_string(),
            &[
                ("ops_per_s", json!(rate.round())),
                ("batches_per_s", json!((batches / secs).round())),
                ("ops_per_batch", json!(ops / batches)),
                ("ratio_to_1", json!(rate / base)),
            ],
        );
    }
    tables.push(t);
    Ok(())
}

/// Apply throughput without the disk, Merkle update and proof latency,
/// chunk put/get and fsck speed on a store of `files` files.
fn engine_figures(dir: &Path, files: u64, tables: &mut Vec<Table>) -> Result<()> {
    // Apply on an in-memory store: the CPU cost of an op.
    let mem = Engine::init(
        Arc::new(MemBackend::new()),
        None,
        WorkspaceId([8; 16]),
        (0o755, 0, 0),
        1,
    )?;
    let start = Instant::now();
    let n = populate(&mem, &Shape::uniform(20_000, 1000, 1024), &mut |_| Ok(()))?.len() as f64;
    let secs = start.elapsed().as_secs_f64();
    let mut t = Table::new(
        "Apply (in-memory store, batches of 1000 files)",
        &["workload", "ops/s", "us per op"],
    );
    t.row(
        "create + 1 KiB write",
        &[
            ("ops_per_s", json!((2.0 * n / secs).round())),
            ("us_per_op", json!(secs * 1e6 / (2.0 * n))),
        ],
    );
    tables.push(t);

    let e = new_store(dir, "big")?;
    let start = Instant::now();
    let inos = populate(&e, &Shape::uniform(files, 1000, 1024), &mut |_| Ok(()))?;
    let build = start.elapsed();
    // A 1000-chunk file.
    let mut b = e.batch()?;
    let mut time = e.status().meta.last_time + 1;
    let big = ino_of(
        b.commit_intent(&intent(3, 1, create(ROOT_INO, "big".into())), time)
            .map_err(|f| anyhow::anyhow!("{f}"))?
            .result,
    );
    let content = data(1000 * 65536, 77);
    let (refs, p) = Payload::split(Some(0), &content);
    for (h, d) in p.pieces() {
        b.put_chunk(*h, d.as_ref());
    }
    time += 1;
    b.commit_intent(
        &intent(
            3,
            2,
            Op::Write {
                ino: big,
                at: WriteAt::Offset(0),
                chunks: refs,
            },
        ),
        time,
    )
    .map_err(|f| anyhow::anyhow!("{f}"))?;
    b.finish(true)?;

    let mut t = Table::new(
        &format!(
            "Merkle and proofs ({files} files; apply + Merkle update of one op, plus the bare trie update)"
        ),
        &["measure", "n", "p50 us", "p99 us"],
    );
    let mut seq = 10;
    let mut one = |target: Ino, off: u64, t: &mut Samples| -> Result<()> {
        let buf = data(4096, off ^ target);
        let (refs, p) = Payload::split(Some(off), &buf);
        let mut b = e.batch()?;
        for (h, d) in p.pieces() {
            b.put_chunk(*h, d.as_ref());
        }
        seq += 1;
        let now = b.meta().last_time + 1;
        let op = intent(
            3,
            seq,
            Op::Write {
                ino: target,
                at: WriteAt::Offset(off),
                chunks: refs,
            },
        );
        t.time(|| b.commit_intent(&op, now))
            .map_err(|f| anyhow::anyhow!("{f}"))?;
        b.finish(false)?;
        Ok(())
    };
    let (mut small, mut large) = (Samples::default(), Samples::default());
    for i in 0..3000u64 {
        one(inos[(i * 7919 % inos.len() as u64) as usize], 0, &mut small)?;
        one(big, (i * 7919 % 1000) * 65536, &mut large)?;
    }
    let mut row = |name: &str, s: &Samples| {
        t.row(
            name,
            &[
                ("n", json!(s.len())),
                ("p50_us", json!(us(s.p50()))),
                ("p99_us", json!(us(s.p99()))),
            ],
        );
    };
    row("4 KiB write into a 1-chunk file (apply + Merkle)", &small);
    row(
        "4 KiB write into a 1000-chunk file (apply + Merkle)",
        &large,
    );
    let mut trie_store = hsfs_merkle::MemStore::default();
    let mut trie = hsfs_merkle::Trie::default();
    let leaves = files * 3;
    for i in 0..leaves {
        let k = *blake3::hash(&i.to_le_bytes()).as_bytes();
        trie.insert(&trie_store, &k, &k)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    trie.root(&trie_store).map_err(|e| anyhow::anyhow!("{e}"))?;
    trie_store.apply(trie.writes());
    trie.written();
    let mut bare = Samples::default();
    for i in 0..20_000u64 {
        let k = *blake3::hash(&(i * 7 % leaves).to_le_bytes()).as_bytes();
        let v = *blake3::hash(&i.to_be_bytes()).as_bytes();
        bare.time(|| {
            trie.insert(&trie_store, &k, &v).expect("insert");
            trie.root(&trie_store).expect("root")
        });
        trie_store.apply(trie.writes());
        trie.written();
    }
    row(
        &format!("bare trie: one record update + root ({leaves} leaves)"),
        &bare,
    );
    let mut proofs = Samples::default();
    for i in 0..3000u64 {
        let ino = inos[(i * 104_729 % inos.len() as u64) as usize];
        proofs
            .time(|| e.prove(Space::Nodes, &hsfs_engine::keys::ino_key(ino)))
            .map_err(|f| anyhow::anyhow!("{f}"))?;
    }
    row("proof of one record", &proofs);
    tables.push(t);

    let mut t = Table::new(
        "Chunks (64 KiB, fjall with key-value separation)",
        &["op", "MB/s"],
    );
    let chunks: Vec<Vec<u8>> = (0..2000u64).map(|i| data(65536, 1_000_000 + i)).collect();
    let hashes: Vec<[u8; 32]> = chunks.iter().map(|c| *blake3::hash(c).as_bytes()).collect();
    let start = Instant::now();
    for (h, c) in hashes.iter().zip(&chunks) {
        e.ingest_chunks([(*h, c.as_slice())])?;
    }
    e.backend().sync()?;
    let put = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut total = 0;
    for h in &hashes {
        total += e.chunk(h)?.len();
    }
    let get = start.elapsed().as_secs_f64();
    let mb = (chunks.len() * 65536) as f64 / 1e6;
    t.row(
        "put (verify hash + store, one sync at the end)",
        &[("mb_per_s", json!(mb / put))],
    );
    t.row("get", &[("mb_per_s", json!(total as f64 / 1e6 / get))]);
    tables.push(t);

    let start = Instant::now();
    let report = hsfs_engine::fsck::check(&e, &mut |_, _| {})?;
    let secs = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        report.is_clean(),
        "bench store not clean: {:?}",
        &report.problems[..report.problems.len().min(5)]
    );
    let mut t = Table::new(
        &format!(
            "hsfs-fsck on {files} files (store built in {:.1} s)",
            build.as_secs_f64()
        ),
        &["measure", "value"],
    );
    t.row(
        "files/s",
        &[("value", json!((report.stats.nodes as f64 / secs).round()))],
    );
    t.row(
        "MB/s re-hashed",
        &[("value", json!(report.stats.chunk_bytes as f64 / 1e6 / secs))],
    );
    t.row("seconds", &[("value", json!(secs))]);
    tables.push(t);
    Ok(())
}

fn main() -> Result<()> {
    hsfs_tools::init_logging();
    match Cli::parse().cmd {
        Cmd::Engine { dir, files, json } => {
            let holder = tempfile::Builder::new()
                .prefix("hsfs-bench-")
                .tempdir_in(dir.unwrap_or_else(|| PathBuf::from("/var/tmp")))?;
            let mut tables = Vec::new();
            latency(holder.path(), &mut tables)?;
            throughput(holder.path(), &mut tables)?;
            engine_figures(holder.path(), files, &mut tables)?;
            emit(&tables, json)
        }
        Cmd::Mount(args) => hsfs_tools::bench::mount::run(args),
        Cmd::Scale(args) => hsfs_tools::bench::scale::run(args),
        Cmd::Worker(args) => hsfs_tools::bench::mount::worker(args),
        Cmd::Cluster {
            dir,
            catch_up_ops,
            files_per_writer,
            json,
        } => {
            let tables =
                hsfs_tools::bench::cluster::run_all(&hsfs_tools::bench::cluster::ClusterArgs {
                    dir,
                    catch_up_ops,
                    files_per_writer,
                })?;
            emit(&tables, json)
        }
    }
}

/// Prints the tables, and writes them as JSON to `json` if given.
fn emit(tables: &[Table], json: Option<PathBuf>) -> Result<()> {
    for t in tables {
        t.print();
    }
    if let Some(p) = json {
        let v: Vec<Value> = tables.iter().map(Table::to_json).collect();
        std::fs::write(&p, serde_json::to_string_pretty(&v)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}
