//! The concurrent workloads: 8 processes (this executable re-run as the
//! hidden `worker` subcommand) each create or write their share of the
//! files, in a directory of their own or all in one directory. They start
//! together: each says "ready", then waits for its stdin to close. The
//! figure is the aggregate rate.
//!
//! In one directory, creates are serialized by the kernel (the VFS holds
//! the parent directory's lock across each create), whatever the
//! filesystem; the one-directory-each variants are where group commit can
//! batch.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use super::workloads::{create_one, name, verify_contents, verify_empty, verify_names, write_one};
use super::{Ctx, Env, Group, Measurement, Spec, Unit};
use crate::bench::Samples;

const PROCS: usize = 8;

pub static PARALLEL: Group = Group {
    name: "parallel",
    specs: &[
        Spec {
            name: "create_8p",
            unit: Unit::FilesPerSec,
            what: "create 16k empty files, 8 processes, one directory each",
            base: Some("create"),
        },
        Spec {
            name: "create_8p_1dir",
            unit: Unit::FilesPerSec,
            what: "create 16k empty files, 8 processes, all in one directory",
            base: Some("create"),
        },
        Spec {
            name: "write_4k_8p",
            unit: Unit::FilesPerSec,
            what: "5k new 4 KiB files, 8 processes, one directory each",
            base: Some("write_4k"),
        },
        Spec {
            name: "fsync_4k_8p",
            unit: Unit::FilesPerSec,
            what: "500 new 4 KiB files, each fsync'd, 8 processes, one directory each",
            base: Some("fsync_4k"),
        },
    ],
    run,
};

/// What a worker does to each of its files.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum WorkerOp {
    Create,
    Write,
    Fsync,
}

/// Arguments of the hidden `hsfs-bench worker` subcommand.
#[derive(clap::Args)]
pub struct WorkerArgs {
    #[arg(long, value_enum)]
    op: WorkerOp,
    /// Directory of the files.
    #[arg(long)]
    dir: PathBuf,
    /// Index of the first file.
    #[arg(long)]
    first: usize,
    /// Number of files.
    #[arg(long)]
    count: usize,
    /// Seed of the files' content.
    #[arg(long)]
    salt: u64,
    /// Where the latency of each file goes (nanoseconds, one per line).
    #[arg(long)]
    lat: PathBuf,
}

/// `hsfs-bench worker`: says "ready", waits for stdin to close, does its
/// files, writes their latencies.
pub fn worker(a: WorkerArgs) -> Result<()> {
    println!("ready");
    std::io::stdout().flush()?;
    std::io::stdin().read_to_end(&mut Vec::new())?;
    let mut lat = String::new();
    for i in a.first..a.first + a.count {
        let t = Instant::now();
        match a.op {
            WorkerOp::Create => create_one(&a.dir, i),
            WorkerOp::Write => write_one(&a.dir, i, a.salt, false),
            WorkerOp::Fsync => write_one(&a.dir, i, a.salt, true),
        }
        .with_context(|| format!("{}", a.dir.join(name(i)).display()))?;
        writeln!(lat, "{}", t.elapsed().as_nanos())?;
    }
    std::fs::write(&a.lat, lat)?;
    Ok(())
}

fn run(cx: &mut Ctx) -> Result<()> {
    let jobs = [
        ("create_8p", WorkerOp::Create, cx.env.n(16_000, 16), false),
        (
            "create_8p_1dir",
            WorkerOp::Create,
            cx.env.n(16_000, 16),
            true,
        ),
        ("write_4k_8p", WorkerOp::Write, cx.env.n(5000, 8), false),
        ("fsync_4k_8p", WorkerOp::Fsync, cx.env.n(500, 8), false),
    ];
    for (spec, op, n, one_dir) in jobs {
        let dir = cx.dir.join(spec);
        let job = Job {
            op,
            n,
            one_dir,
            salt: cx.salt(spec),
        };
        let m = parallel(cx.env, &dir, &job);
        cx.record(spec, m)?;
        // Keeps the inodes the kernel (and passthrough_ll, one fd each)
        // holds bounded.
        std::fs::remove_dir_all(&dir)?;
        cx.restart_cpu();
    }
    Ok(())
}

/// One concurrent workload.
struct Job {
    op: WorkerOp,
    /// Files in all.
    n: usize,
    /// All processes in one directory (else one directory each).
    one_dir: bool,
    salt: u64,
}

/// The worker children; killed if still running when dropped.
struct Workers(Vec<(Child, PathBuf)>);

impl Drop for Workers {
    fn drop(&mut self) {
        for (c, _) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Process `k`'s files and directory.
struct Share {
    files: Range<usize>,
    dir: PathBuf,
}

fn shares(dir: &Path, job: &Job) -> Vec<Share> {
    let mut first = 0;
    (0..PROCS)
        .map(|k| {
            let count = job.n / PROCS + usize::from(k < job.n % PROCS);
            first += count;
            Share {
                files: first - count..first,
                dir: if job.one_dir {
                    dir.to_path_buf()
                } else {
                    dir.join(format!("p{k}"))
                },
            }
        })
        .collect()
}

fn spawn(env: &Env, k: usize, s: &Share, job: &Job) -> Result<(Child, PathBuf)> {
    let lat = env.scratch.join(format!("worker-{k}.lat"));
    let child = Command::new(&env.exe)
        .arg("worker")
        .arg("--op")
        .arg(match job.op {
            WorkerOp::Create => "create",
            WorkerOp::Write => "write",
            WorkerOp::Fsync => "fsync",
        })
        .arg("--dir")
        .arg(&s.dir)
        .args(["--first", &s.files.start.to_string()])
        .args(["--count", &s.files.len().to_string()])
        .args(["--salt", &job.salt.to_string()])
        .arg("--lat")
        .arg(&lat)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting a worker")?;
    Ok((child, lat))
}

fn parallel(env: &Env, dir: &Path, job: &Job) -> Result<Measurement> {
    let shares = shares(dir, job);
    std::fs::create_dir(dir)?;
    let mut kids = Workers(Vec::new());
    for (k, s) in shares.iter().enumerate() {
        if !job.one_dir {
            std::fs::create_dir(&s.dir)?;
        }
        kids.0.push(spawn(env, k, s, job)?);
    }
    for (c, _) in &mut kids.0 {
        let mut line = String::new();
        BufReader::new(c.stdout.as_mut().context("worker stdout")?).read_line(&mut line)?;
        ensure!(line.trim() == "ready", "worker did not start: {line:?}");
    }
    let start = Instant::now();
    for (c, _) in &mut kids.0 {
        drop(c.stdin.take());
    }
    for (c, _) in &mut kids.0 {
        let st = c.wait()?;
        ensure!(
            st.success(),
            "a worker failed ({st}); see its message above"
        );
    }
    let elapsed = start.elapsed();
    let mut lat = Samples::default();
    for (_, path) in &kids.0 {
        for l in std::fs::read_to_string(path)?.lines() {
            lat.push(Duration::from_nanos(l.parse()?));
        }
        std::fs::remove_file(path)?;
    }
    ensure!(
        lat.len() == job.n,
        "{} latencies for {} files",
        lat.len(),
        job.n
    );
    verify(dir, &shares, job)?;
    let written = match job.op {
        WorkerOp::Create => 0,
        WorkerOp::Write | WorkerOp::Fsync => job.n * 4096,
    };
    Ok(Measurement::rate(job.n, elapsed, lat).wrote(written as u64))
}

/// Every process's files are there, with the right content.
fn verify(dir: &Path, shares: &[Share], job: &Job) -> Result<()> {
    if job.one_dir {
        verify_names(dir, 0..job.n, name)?;
    }
    for s in shares {
        if !job.one_dir {
            verify_names(&s.dir, s.files.clone(), name)?;
        }
        match job.op {
            WorkerOp::Create => verify_empty(&s.dir, s.files.clone())?,
            WorkerOp::Write | WorkerOp::Fsync => {
                verify_contents(&s.dir, s.files.clone(), name, job.salt)?;
            }
        }
    }
    Ok(())
}
