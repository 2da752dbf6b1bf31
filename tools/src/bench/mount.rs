//! `hsfs-bench mount`: the same workloads, in one invocation, on a tmpfs
//! directory, libfuse's passthrough_ll over tmpfs (the FUSE floor), a
//! directory on the local disk, and an hsfs mount whose state is on that
//! disk. Every workload verifies its effect before its figure counts; runs
//! alternate targets and the tables show the median of the runs.

mod cargo;
pub(crate) mod git;
mod parallel;
mod report;
pub(crate) mod targets;
mod workloads;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::{Samples, fdatasync_floor, mib_sync_floor};
use report::{Floors, Outcome, Report};
use targets::{Scratch, Target};

pub use parallel::{WorkerArgs, worker};

/// Arguments of `hsfs-bench mount`.
#[derive(clap::Args)]
pub struct MountArgs {
    /// Directory on the disk under test: the hsfs state, the local-disk
    /// target and scratch files go in a temp dir made inside it.
    #[arg(long, default_value = "/var/tmp")]
    dir: PathBuf,
    /// Runs per workload and target (the tables show the median).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Multiplies file counts and sizes (0.05 for a quick check).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Run only these workload groups (or the groups of these workloads),
    /// comma-separated: files, write, fsync, tree, seq, random, append,
    /// git, cargo, parallel.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Write the tables and every run's raw figures as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Extra arguments for `hsfs mount`, e.g. "--threads 16".
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    hsfs_args: String,
    /// Extra arguments for `hsfs init`, e.g. "--journal-mib 0".
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    hsfs_init_args: String,
}

/// What a figure counts.
#[derive(Clone, Copy)]
pub enum Unit {
    FilesPerSec,
    OpsPerSec,
    EntriesPerSec,
    DirsPerSec,
    MbPerSec,
    Seconds,
}

impl Unit {
    fn label(self) -> &'static str {
        match self {
            Unit::FilesPerSec => "files/s",
            Unit::OpsPerSec => "ops/s",
            Unit::EntriesPerSec => "entries/s",
            Unit::DirsPerSec => "dirs/s",
            Unit::MbPerSec => "MB/s",
            Unit::Seconds => "seconds",
        }
    }
}

/// One measured workload: a table of the report.
pub struct Spec {
    pub name: &'static str,
    pub unit: Unit,
    pub what: &'static str,
    /// For the concurrent workloads: the single-process workload to compare
    /// with.
    pub base: Option<&'static str>,
}

/// Workloads that run in sequence in one fresh directory (stat needs the
/// files create made, and so on).
pub struct Group {
    pub name: &'static str,
    pub specs: &'static [Spec],
    pub run: fn(&mut Ctx) -> Result<()>,
}

/// The verified result of one workload on one target.
pub struct Measurement {
    pub figure: f64,
    /// Per-op latencies (empty when the figure is a single duration).
    pub lat: Samples,
    /// Logical bytes of file data the workload wrote.
    pub written: u64,
}

impl Measurement {
    /// `n` things in `elapsed`.
    #[must_use]
    pub fn rate(n: usize, elapsed: Duration, lat: Samples) -> Measurement {
        Measurement {
            figure: n as f64 / elapsed.as_secs_f64(),
            lat,
            written: 0,
        }
    }

    /// Megabytes (1e6) per second.
    #[must_use]
    pub fn mb_per_s(bytes: u64, elapsed: Duration, lat: Samples) -> Measurement {
        Measurement {
            figure: bytes as f64 / 1e6 / elapsed.as_secs_f64(),
            lat,
            written: 0,
        }
    }

    /// A duration in seconds.
    #[must_use]
    pub fn seconds(d: Duration) -> Measurement {
        Measurement {
            figure: d.as_secs_f64(),
            lat: Samples::default(),
            written: 0,
        }
    }

    /// Records the logical bytes written.
    #[must_use]
    pub fn wrote(mut self, bytes: u64) -> Measurement {
        self.written = bytes;
        self
    }
}

/// What every workload may need besides its directory.
pub struct Env {
    pub scale: f64,
    /// This executable, re-run as `worker` by the concurrent workloads.
    pub exe: PathBuf,
    /// Scratch directory on the disk (outside every target).
    pub scratch: PathBuf,
    pub git: Option<git::Source>,
    pub cargo: Option<cargo::Source>,
}

impl Env {
    /// `base` scaled, at least `min`.
    #[must_use]
    pub fn n(&self, base: usize, min: usize) -> usize {
        ((base as f64 * self.scale).round() as usize).max(min)
    }
}

/// One group's run on one target.
pub struct Ctx<'a> {
    /// Fresh, empty directory on the target.
    pub dir: PathBuf,
    pub env: &'a Env,
    run: usize,
    target: &'a Target,
    outcomes: Vec<Outcome>,
    /// The serving process's CPU time when the current workload began
    /// (the previous one's end).
    cpu_mark: Option<Duration>,
}

impl Ctx<'_> {
    /// Seed of the data `workload` writes in this run: content differs
    /// between workloads and runs, so hsfs's content-addressed chunk store
    /// never finds a later run's data already stored.
    #[must_use]
    pub fn salt(&self, workload: &str) -> u64 {
        let fnv = workload.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        fnv ^ ((self.run as u64 + 1) << 48)
    }

    /// Starts the next workload's CPU window here: work between two
    /// workloads (removing the previous one's files) is nobody's.
    pub fn restart_cpu(&mut self) {
        self.cpu_mark = self.target.cpu_time();
    }

    /// Records a workload's outcome with the target process's RSS and the
    /// CPU time it used since the previous workload ended (or
    /// [`Ctx::restart_cpu`]); a failure stops the group (later workloads
    /// depend on this one).
    pub fn record(&mut self, name: &'static str, r: Result<Measurement>) -> Result<()> {
        let rss_mib = self.target.rss_mib();
        let cpu = self.target.cpu_time();
        let cpu_s = cpu
            .zip(self.cpu_mark)
            .map(|(now, mark)| now.saturating_sub(mark).as_secs_f64());
        self.cpu_mark = cpu;
        let failed = r.is_err();
        self.outcomes.push(Outcome {
            name,
            result: r.map_err(|e| format!("{e:#}")),
            rss_mib,
            cpu_s,
        });
        if failed {
            bail!("{name} failed");
        }
        Ok(())
    }
}

/// Every group, in the order they run.
static GROUPS: &[&Group] = &[
    &workloads::FILES,
    &workloads::WRITE,
    &workloads::FSYNC,
    &workloads::TREE,
    &workloads::SEQ,
    &workloads::RANDOM,
    &workloads::APPEND,
    &git::GIT,
    &cargo::CARGO,
    &parallel::PARALLEL,
];

fn select(only: &[String]) -> Result<Vec<&'static Group>> {
    if only.is_empty() {
        return Ok(GROUPS.to_vec());
    }
    for name in only {
        let known = GROUPS
            .iter()
            .any(|g| g.name == name || g.specs.iter().any(|s| s.name == name));
        if !known {
            let names: Vec<&str> = GROUPS.iter().map(|g| g.name).collect();
            bail!(
                "--only {name}: unknown workload (groups: {})",
                names.join(", ")
            );
        }
    }
    Ok(GROUPS
        .iter()
        .copied()
        .filter(|g| {
            only.iter()
                .any(|n| g.name == n || g.specs.iter().any(|s| s.name == n))
        })
        .collect())
}

/// `hsfs-bench mount`.
pub fn run(args: MountArgs) -> Result<()> {
    if !crate::checks::is_root() {
        bail!("hsfs-bench mount needs root (FUSE mounts and drop_caches)");
    }
    if args.runs == 0 || args.scale <= 0.0 {
        bail!("--runs and --scale must be positive");
    }
    let groups = select(&args.only)?;
    let nofile = targets::raise_nofile_limit();
    eprintln!("open-file limit: {nofile}");
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let scratch = Scratch::new(&args.dir, "hsfs-bench-mount-")?;
    let mibs = ((128.0 * args.scale) as usize).max(8);
    let floors = Floors {
        small: fdatasync_floor(scratch.path(), ((2000.0 * args.scale) as usize).max(200))
            .context("measuring the fdatasync floor")?,
        mib_new: mib_sync_floor(scratch.path(), mibs, false)
            .context("measuring the floor of a durable MiB in new blocks")?,
        mib_overwrite: mib_sync_floor(scratch.path(), mibs, true)
            .context("measuring the floor of a durable MiB over written blocks")?,
    };
    let env = Env {
        scale: args.scale,
        exe: std::env::current_exe()?,
        scratch: scratch.path().to_path_buf(),
        git: if groups.iter().any(|g| g.name == git::GIT.name) {
            Some(git::Source::prepare(scratch.path(), args.scale)?)
        } else {
            None
        },
        cargo: if groups.iter().any(|g| g.name == cargo::CARGO.name) {
            Some(cargo::Source::prepare(scratch.path(), args.scale)?)
        } else {
            None
        },
    };
    let mut targets = targets::setup(scratch.path(), &args.hsfs_init_args, &args.hsfs_args)?;
    let mut report = Report::new(&targets, floors, scratch.path(), &args);
    for t in &targets {
        eprintln!("target {:<15} {}", t.name, t.root.display());
    }
    let result = run_groups(&groups, &mut targets, &env, &mut report, args.runs, &stop);
    drop(targets);
    match targets::keep_logs(scratch.path()) {
        Ok(p) => eprintln!("logs of hsfs and passthrough_ll: {}", p.display()),
        Err(e) => eprintln!("warning: keeping the logs: {e:#}"),
    }
    report.print();
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_string_pretty(&report.to_json())?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    result?;
    let failed = report.failures();
    if failed > 0 {
        bail!("{failed} measurement(s) FAILED (see the tables and the messages above)");
    }
    Ok(())
}

fn run_groups(
    groups: &[&'static Group],
    targets: &mut [Target],
    env: &Env,
    report: &mut Report,
    runs: usize,
    stop: &AtomicBool,
) -> Result<()> {
    for group in groups {
        for run in 0..runs {
            for (i, t) in targets.iter_mut().enumerate() {
                if stop.load(Ordering::Relaxed) {
                    bail!("interrupted");
                }
                eprintln!("[{}] run {}/{runs} on {}", group.name, run + 1, t.name);
                let g = run_one(group, run, t, env);
                for o in &g.outcomes {
                    report_progress(o);
                }
                report.add(group, i, run, g);
            }
        }
    }
    Ok(())
}

fn report_progress(o: &Outcome) {
    match &o.result {
        Ok(m) => eprintln!("    {:<16} {:>12.2}", o.name, m.figure),
        Err(e) => eprintln!("    {:<16} FAILED: {e}", o.name),
    }
}

/// The outcomes of one group's run on one target, with the store's size.
pub struct GroupRun {
    pub outcomes: Vec<Outcome>,
    /// Store bytes before, after the workloads, after removing their files.
    pub store: Option<[u64; 3]>,
    /// What failed around the workloads: removing their files, measuring
    /// the store.
    pub errors: Vec<String>,
}

fn run_one(group: &Group, run: usize, t: &mut Target, env: &Env) -> GroupRun {
    let dir = t.root.join(format!("{}-r{run}", group.name));
    let mut errors = Vec::new();
    let mut store_bytes = |t: &Target| {
        t.store_bytes()
            .map_err(|e| errors.push(format!("{e:#}")))
            .ok()
            .flatten()
    };
    let before = store_bytes(t);
    let alive = t.alive();
    let cpu_mark = t.cpu_time();
    let mut cx = Ctx {
        dir: dir.clone(),
        env,
        run,
        target: t,
        outcomes: Vec::new(),
        cpu_mark,
    };
    let r = alive
        .and_then(|()| std::fs::create_dir(&dir).context("creating the workload dir"))
        .and_then(|()| (group.run)(&mut cx));
    let mut outcomes = cx.outcomes;
    let why = match r {
        Ok(()) => "not run".to_string(),
        Err(e) => format!("not run: {e:#}"),
    };
    for s in group.specs {
        if !outcomes.iter().any(|o| o.name == s.name) {
            outcomes.push(Outcome {
                name: s.name,
                result: Err(why.clone()),
                rss_mib: None,
                cpu_s: None,
            });
        }
    }
    let after = store_bytes(t);
    // A dead mount has nothing left to clean (its failure is reported).
    let cleanup = match t.alive() {
        Ok(()) => remove_tree(&dir).err(),
        Err(_) => None,
    };
    let cleaned = store_bytes(t);
    errors.extend(cleanup.map(|e| format!("cleanup: {e:#}")));
    let store = before.zip(after).zip(cleaned).map(|((b, a), c)| [b, a, c]);
    for e in &errors {
        eprintln!("    {} FAILED: {e}", dir.display());
    }
    GroupRun {
        outcomes,
        store,
        errors,
    }
}

fn remove_tree(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("rm -rf {}", dir.display())),
    }
}
