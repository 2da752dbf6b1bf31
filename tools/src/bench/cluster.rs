//! `hsfs-bench cluster`: a leader and worker processes on loopback QUIC.
//!
//! Figures (baselines measured in the same run): commit latency from a
//! remote worker against the disk's fdatasync floor and against the
//! embedded mount; commit-to-visible latency on another worker; throughput
//! with 1, 2, 4 and 8 workers writing at once; catch-up speed of a worker
//! that missed 100k ops; leader memory with 8 workers connected.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use crate::bench::mount::targets::hsfs_bin;
use crate::bench::populate::data;
use crate::bench::{Samples, Table, fdatasync_floor, us};

/// Settings of the run.
#[derive(Clone, Debug)]
pub struct ClusterArgs {
    /// Where state directories and mounts live (the disk under test).
    pub dir: PathBuf,
    /// Ops a worker missed for the catch-up figure.
    pub catch_up_ops: u64,
    /// Files each writer creates in the throughput figure.
    pub files_per_writer: usize,
}

/// A child process stopped (SIGTERM, then wait) on drop.
struct Proc {
    child: Child,
    mount: Option<PathBuf>,
}

impl Proc {
    /// Spawns and waits for the readiness line starting with `ready`.
    fn spawn(cmd: &mut Command, log: &Path, ready: &str) -> Result<(Proc, String)> {
        let logf = std::fs::File::create(log)?;
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(logf)
            .spawn()
            .with_context(|| format!("{cmd:?}"))?;
        let mut out = BufReader::new(child.stdout.take().context("stdout")?);
        let mut line = String::new();
        loop {
            line.clear();
            if out.read_line(&mut line)? == 0 {
                let _ = child.wait();
                bail!(
                    "{cmd:?} exited before it was ready:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            if line.starts_with(ready) {
                break;
            }
        }
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = out.read_to_end(&mut sink);
        });
        Ok((Proc { child, mount: None }, line))
    }

    fn rss_mib(&self) -> Result<f64> {
        crate::bench::rss_mib(self.child.id())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        if let Some(m) = &self.mount
            // Unknown (mountinfo unreadable): try anyway, it is harmless.
            && crate::checks::is_mount_point(m).unwrap_or(true)
        {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
    }
}

fn run(cmd: &mut Command) -> Result<String> {
    let what = format!("{cmd:?}");
    let out = crate::bench::checked_output(cmd, &what)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn status(state: &Path) -> Result<Value> {
    Ok(serde_json::from_str(&run(Command::new(hsfs_bin()?)
        .args(["status", "--json"])
        .arg(state))?)?)
}

struct Cluster {
    dir: PathBuf,
    leader_state: PathBuf,
    addr: String,
    workers: Vec<(PathBuf, PathBuf, Proc)>,
    leader: Option<Proc>,
}

impl Cluster {
    fn new(dir: &Path) -> Result<Cluster> {
        let leader_state = dir.join("leader");
        run(Command::new(hsfs_bin()?)
            .args(["init", "--mode", "1777"])
            .arg(&leader_state))?;
        let mut c = Cluster {
            dir: dir.to_path_buf(),
            leader_state,
            addr: String::new(),
            workers: Vec::new(),
            leader: None,
        };
        c.start_leader()?;
        Ok(c)
    }

    fn start_leader(&mut self) -> Result<()> {
        let (p, line) = Proc::spawn(
            Command::new(hsfs_bin()?)
                .arg("leader")
                .arg(&self.leader_state)
                .args(["--listen", "127.0.0.1:0"]),
            &self.dir.join("leader.log"),
            "hsfs: leader",
        )?;
        self.addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .context("leader address")?
            .to_string();
        self.leader = Some(p);
        Ok(())
    }

    fn add_worker(&mut self) -> Result<usize> {
        let i = self.workers.len();
        let name = format!("w{i}");
        let bundle = self.dir.join(format!("{name}.bundle"));
        run(Command::new(hsfs_bin()?)
            .args(["join", "--name", &name, "--out"])
            .arg(&bundle)
            .arg(&self.leader_state))?;
        let state = self.dir.join(format!("state-{name}"));
        let mnt = self.dir.join(format!("mnt-{name}"));
        std::fs::create_dir_all(&mnt)?;
        let (mut p, _) = Proc::spawn(
            Command::new(hsfs_bin()?)
                .arg("mount")
                .arg(&state)
                .arg(&mnt)
                .args(["--name", &name, "--leader", &self.addr, "--join"])
                .arg(&bundle),
            &self.dir.join(format!("{name}.log")),
            "hsfs: mounted",
        )?;
        p.mount = Some(mnt.clone());
        self.workers.push((state, mnt, p));
        Ok(i)
    }

    fn commit_index(&self) -> Result<u64> {
        status(&self.leader_state)?["commit_index"]
            .as_u64()
            .context("commit index")
    }

    /// Waits (polling the worker's status, bounded) until it applied `k`.
    fn wait_applied(state: &Path, k: u64, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if status(state)?["applied_index"].as_u64().unwrap_or(0) >= k {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "{} did not apply index {k} in {timeout:?}",
                state.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Latency of create, 4 KiB write and fsync'd 4 KiB write from `root`.
fn latencies(root: &Path, n: usize) -> Result<[Samples; 3]> {
    let dir = root.join("lat");
    std::fs::create_dir_all(&dir)?;
    let (mut c, mut w, mut f) = (Samples::default(), Samples::default(), Samples::default());
    for i in 0..n {
        let p = dir.join(format!("c{i}"));
        c.time(|| std::fs::File::create(&p))?;
        // Distinct contents: hsfs stores a chunk once, so a repeated one
        // would skip the chunk's upload and storing.
        let buf = data(4096, i as u64);
        w.time(|| std::fs::write(dir.join(format!("w{i}")), &buf))?;
        let buf = data(4096, (1 << 32) | i as u64);
        f.time(|| -> std::io::Result<()> {
            use std::io::Write;
            let mut file = std::fs::File::create(dir.join(format!("f{i}")))?;
            file.write_all(&buf)?;
            file.sync_all()
        })?;
    }
    ensure!(
        std::fs::read_dir(&dir)?.count() == 3 * n,
        "latency workload: files missing"
    );
    Ok([c, w, f])
}

/// Runs every figure and returns the tables.
pub fn run_all(args: &ClusterArgs) -> Result<Vec<Table>> {
    let holder = tempfile::Builder::new()
        .prefix("hsfs-bench-cluster-")
        .tempdir_in(&args.dir)?;
    let dir = holder.path();
    let mut tables = Vec::new();

    // Baselines: the disk's fdatasync floor and the embedded mount.
    let floor = fdatasync_floor(dir, 1000)?;
    let embedded_state = dir.join("embedded");
    run(Command::new(hsfs_bin()?)
        .args(["init", "--mode", "1777"])
        .arg(&embedded_state))?;
    let emb_mnt = dir.join("mnt-embedded");
    std::fs::create_dir_all(&emb_mnt)?;
    let (mut emb, _) = Proc::spawn(
        Command::new(hsfs_bin()?)
            .arg("mount")
            .arg(&embedded_state)
            .arg(&emb_mnt),
        &dir.join("embedded.log"),
        "hsfs: mounted",
    )?;
    emb.mount = Some(emb_mnt.clone());
    let embedded = latencies(&emb_mnt, 500)?;
    drop(emb);

    let mut c = Cluster::new(dir)?;
    let a = c.add_worker()?;
    let b = c.add_worker()?;
    let remote = latencies(&c.workers[a].1, 500)?;
    let mut t = Table::new(
        "Commit latency from a remote worker (loopback QUIC), same-run baselines",
        &[
            "op",
            "p50 us",
            "p99 us",
            "embedded p50 us",
            "remote / embedded",
            "fdatasync p50 us",
        ],
    );
    for (name, r, e) in [
        ("create", &remote[0], &embedded[0]),
        ("write 4 KiB", &remote[1], &embedded[1]),
        ("write 4 KiB + fsync", &remote[2], &embedded[2]),
    ] {
        t.row(
            name,
            &[
                ("p50_us", json!(us(r.p50()))),
                ("p99_us", json!(us(r.p99()))),
                ("embedded_p50_us", json!(us(e.p50()))),
                (
                    "ratio",
                    json!(r.p50().as_secs_f64() / e.p50().as_secs_f64()),
                ),
                ("fdatasync_p50_us", json!(us(floor.p50()))),
            ],
        );
    }
    tables.push(t);

    // Commit-to-visible: a writer on A, an observer spinning on B.
    let (ma, mb) = (c.workers[a].1.clone(), c.workers[b].1.clone());
    std::fs::create_dir_all(ma.join("vis"))?;
    let k = c.commit_index()?;
    Cluster::wait_applied(&c.workers[b].0, k, Duration::from_secs(30))?;
    let n = 300;
    // When A's create started and returned; when B first saw the file.
    type Times = Vec<std::sync::OnceLock<Instant>>;
    let started: Arc<Times> = Arc::new((0..n).map(|_| std::sync::OnceLock::new()).collect());
    let returned: Arc<Times> = Arc::new((0..n).map(|_| std::sync::OnceLock::new()).collect());
    let obs = std::thread::spawn(move || -> Result<Vec<Instant>> {
        let mut seen = Vec::with_capacity(n);
        for i in 0..n {
            let p = mb.join(format!("vis/f{i}"));
            let deadline = Instant::now() + Duration::from_secs(30);
            while std::fs::symlink_metadata(&p).is_err() {
                ensure!(Instant::now() < deadline, "f{i} never became visible on B");
                std::hint::spin_loop();
            }
            seen.push(Instant::now());
        }
        Ok(seen)
    });
    for i in 0..n {
        let _ = started[i].set(Instant::now());
        std::fs::File::create(ma.join(format!("vis/f{i}")))?;
        let _ = returned[i].set(Instant::now());
        // Paced, so every create is measured on its own.
        std::thread::sleep(Duration::from_millis(2));
    }
    let seen = obs
        .join()
        .map_err(|_| anyhow::anyhow!("observer panicked"))??;
    let signed_us = |from: &Times| -> Vec<f64> {
        let mut v: Vec<f64> = seen
            .iter()
            .zip(from.iter())
            .map(|(s, f)| {
                let f = *f.get().expect("set");
                if *s >= f {
                    s.duration_since(f).as_secs_f64() * 1e6
                } else {
                    -(f.duration_since(*s).as_secs_f64() * 1e6)
                }
            })
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let q = |v: &[f64], q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    let from_start = signed_us(&started);
    let from_return = signed_us(&returned);
    let mut t = Table::new(
        "Commit-to-visible: a create on worker A, first successful stat on worker B (negative = B saw it before A's create returned)",
        &["measured from", "p50 us", "p99 us"],
    );
    for (name, v) in [
        ("A's create starts", &from_start),
        ("A's create returns", &from_return),
    ] {
        t.row(
            name,
            &[
                ("p50_us", json!((q(v, 0.5) * 100.0).round() / 100.0)),
                ("p99_us", json!((q(v, 0.99) * 100.0).round() / 100.0)),
            ],
        );
    }
    tables.push(t);

    // Throughput with 1, 2, 4, 8 workers writing at once.
    while c.workers.len() < 8 {
        c.add_worker()?;
    }
    let mut t = Table::new(
        "Throughput, each worker creating files with 4 KiB of data",
        &["workers", "files/s", "vs 1 worker"],
    );
    let mut base = 0.0;
    for w in [1usize, 2, 4, 8] {
        let mounts: Vec<PathBuf> = c.workers[..w].iter().map(|x| x.1.clone()).collect();
        let per = args.files_per_writer;
        let start = Instant::now();
        let threads: Vec<_> = mounts
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let d = m.join(format!("tp{w}-{i}"));
                std::thread::spawn(move || -> std::io::Result<()> {
                    std::fs::create_dir_all(&d)?;
                    for f in 0..per {
                        // Distinct for every round, worker and file.
                        let seed = (w as u64) << 40 | (i as u64) << 32 | f as u64;
                        std::fs::write(d.join(format!("f{f}")), data(4096, seed))?;
                    }
                    Ok(())
                })
            })
            .collect();
        for th in threads {
            th.join()
                .map_err(|_| anyhow::anyhow!("writer panicked"))??;
        }
        let rate = (w * per) as f64 / start.elapsed().as_secs_f64();
        for (i, m) in mounts.iter().enumerate() {
            ensure!(
                std::fs::read_dir(m.join(format!("tp{w}-{i}")))?.count() == per,
                "throughput: files missing"
            );
        }
        if w == 1 {
            base = rate;
        }
        t.row(
            &w.to_string(),
            &[
                ("files_per_s", json!(rate.round())),
                ("ratio_to_1", json!(rate / base)),
            ],
        );
    }
    tables.push(t);
    let leader_rss = c.leader.as_ref().context("the leader")?.rss_mib()?;
    let worker_rss = c
        .workers
        .iter()
        .map(|w| w.2.rss_mib())
        .collect::<Result<Vec<f64>>>()?;
    let mut t = Table::new("Memory with 8 workers connected", &["process", "RSS MiB"]);
    t.row("leader", &[("rss_mib", json!(leader_rss))]);
    t.row(
        "worker (max)",
        &[(
            "rss_mib",
            json!(worker_rss.iter().copied().fold(0.0, f64::max)),
        )],
    );
    tables.push(t);

    // Catch-up: a worker misses `catch_up_ops` ops, then comes back.
    let missing = args.catch_up_ops;
    let (state_c, mnt_c, pc) = c.workers.pop().context("a worker")?;
    drop(pc);
    let writers = 4;
    let per = (missing as usize / 2).div_ceil(writers);
    let threads: Vec<_> = (0..writers)
        .map(|i| {
            let d = c.workers[i].1.join(format!("catchup-{i}"));
            std::thread::spawn(move || -> std::io::Result<()> {
                std::fs::create_dir_all(&d)?;
                for f in 0..per {
                    // create + write: two ops per file.
                    std::fs::write(d.join(format!("f{f}")), b"abc")?;
                }
                Ok(())
            })
        })
        .collect();
    for th in threads {
        th.join()
            .map_err(|_| anyhow::anyhow!("writer panicked"))??;
    }
    let target = c.commit_index()?;
    let before = status(&state_c)?["applied_index"]
        .as_u64()
        .context("the stopped worker's status has no applied index")?;
    let start = Instant::now();
    let bundle = c.dir.join("w7.bundle");
    let (mut p, _) = Proc::spawn(
        Command::new(hsfs_bin()?)
            .arg("mount")
            .arg(&state_c)
            .arg(&mnt_c)
            .args(["--name", "w7", "--leader", &c.addr, "--join"])
            .arg(&bundle),
        &c.dir.join("w7-again.log"),
        "hsfs: mounted",
    )?;
    p.mount = Some(mnt_c.clone());
    Cluster::wait_applied(&state_c, target, Duration::from_secs(600))?;
    let secs = start.elapsed().as_secs_f64();
    ensure!(
        std::fs::metadata(mnt_c.join("catchup-0/f0"))?.size() == 3,
        "catch-up: the missed files are not there"
    );
    let mut t = Table::new(
        "Catch-up of a restarted worker (mount start to caught up)",
        &["entries", "seconds", "entries/s"],
    );
    let n = (target - before) as f64;
    t.row(
        &format!("{}", target - before),
        &[
            ("seconds", json!(secs)),
            ("entries_per_s", json!((n / secs).round())),
        ],
    );
    tables.push(t);
    drop(p);
    Ok(tables)
}
