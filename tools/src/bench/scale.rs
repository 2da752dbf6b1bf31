//! `hsfs-bench scale`: the scale, memory and space targets of issue 4, on
//! real `hsfs mount` processes whose state is on the disk under test.
//!
//! - Scale: a 1M-file workspace (one directory of 100k entries, the rest
//!   in directories of 1000) is built with the engine's batch API
//!   (through FUSE it would take 10 to 20 minutes at the mount bench's
//!   create and write rates, an estimate), then timed: mount
//!   start to ready with cold caches, and a cold `ls` of the 100k-entry
//!   directory.
//! - Memory: a 100k-file, 2 GiB workspace is built the same way, mounted,
//!   walked (readdir + lstat) and read in full; then the hsfs process's
//!   VmRSS. A 10 GiB file is written through that mount in 1 MiB writes and
//!   read back after drop_caches, every byte compared (the content is a
//!   function of the offset, so no second copy is needed), and VmRSS again.
//! - Space: `du` of STATE/db after a git clone onto a fresh mount, against
//!   the clone's logical bytes (.git included); and after writing N
//!   identical files, against one copy.
//!
//! Every figure is verified (names, counts, sizes, content) before it is
//! reported; a failed check fails its phase. `--scale F` multiplies every
//! count and size. Mounts are stopped and state directories removed at the
//! end, also on error, panic and Ctrl-C.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hsfs_engine::{Engine, EngineOptions};
use serde_json::{Value, json};

use super::mount::git;
use super::mount::targets::{Mount, Scratch, drop_caches, keep_logs, tree_usage};
use super::populate::{Shape, fill, new_store, populate};
use super::{AlignedBlock, Table, num};

const MIB: u64 = 1 << 20;
const BLOCK: usize = 1 << 20;
/// Bytes of each file of the 1M-file workspace.
const SMALL_FILE: usize = 1024;
/// Bytes of each file of the 100k-file workspace: 2 GiB in all.
const DATA_FILE: usize = (2 << 30) / 100_000;
/// Seed of the 10 GiB file's blocks and of the identical files.
const BIG_SEED: u64 = 0x5ca1_e000;
const SAME_SEED: u64 = 0xd0d0_0000;
/// Identical files written for the dedupe figure.
const IDENTICAL: u64 = 16;

/// Arguments of `hsfs-bench scale`.
#[derive(clap::Args)]
pub struct ScaleArgs {
    /// Directory on the disk under test: the state directories and mount
    /// points go in a temp dir made inside it.
    #[arg(long, default_value = "/var/tmp")]
    dir: PathBuf,
    /// Multiplies every count and size (0.01 for a quick check).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Run only these phases, comma-separated: files, memory, git, dedupe.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Write the tables as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Extra arguments for `hsfs mount`, e.g. "--threads 16".
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    hsfs_args: String,
}

/// What every phase needs.
struct Cx {
    scratch: PathBuf,
    scale: f64,
    hsfs_args: String,
    stop: Arc<AtomicBool>,
}

impl Cx {
    /// `base` scaled, at least `min`.
    fn n(&self, base: u64, min: u64) -> u64 {
        ((base as f64 * self.scale).round() as u64).max(min)
    }

    fn check_stop(&self) -> Result<()> {
        if self.stop.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        Ok(())
    }

    /// Builds `shape` with the engine in a new state directory `name`,
    /// checks the store's counters, and closes it.
    fn build(&self, name: &str, shape: &Shape, t: &mut Table) -> Result<PathBuf> {
        let e = new_store(&self.scratch, name)?;
        let total = shape.files();
        let mut shown = 0;
        let start = Instant::now();
        populate(&e, shape, &mut |done| {
            self.check_stop()?;
            if done * 10 >= (shown + 1) * total {
                shown = done * 10 / total;
                eprintln!("    {name}: {done}/{total} files");
            }
            Ok(())
        })?;
        let secs = start.elapsed().as_secs_f64();
        let m = e.status().meta;
        ensure!(
            m.nodes == shape.nodes() && m.bytes == shape.bytes(),
            "{name}: the store holds {} nodes and {} bytes, expected {} and {}",
            m.nodes,
            m.bytes,
            shape.nodes(),
            shape.bytes()
        );
        drop(e);
        let state = self.scratch.join(name);
        count(t, "files (built with the engine batch API)", total, "files");
        count(
            t,
            "  of which in the largest directory",
            shape.dirs[0].1,
            "files",
        );
        detail(t, "logical bytes", mib(shape.bytes()), "MiB");
        detail(t, "build time", secs, "s");
        detail(t, "store (du of STATE/db)", mib(db_usage(&state)?), "MiB");
        Ok(state)
    }

    /// `hsfs mount STATE` on a new mount point; the time from spawning it
    /// to its readiness line.
    fn mount(&self, state: &Path, name: &str) -> Result<(Mount, Duration)> {
        let mnt = self.scratch.join(format!("{name}-mnt"));
        fs::create_dir_all(&mnt)?;
        let log = self.scratch.join(format!("hsfs-{name}.log"));
        let start = Instant::now();
        let m = Mount::hsfs(state, &mnt, &self.hsfs_args, &log)?;
        Ok((m, start.elapsed()))
    }
}

/// Everything measured: one summary against the targets, one table of
/// figures per phase, and the phases that failed.
struct Results {
    summary: Table,
    details: Vec<Table>,
    failures: Vec<String>,
}

impl Results {
    fn verdict(&mut self, target: &str, value: f64, unit: &str, goal: &str, met: bool) {
        self.summary.row(
            target,
            &[
                ("measured", num(value)),
                ("unit", json!(unit)),
                ("goal", json!(goal)),
                ("met", json!(if met { "yes" } else { "NO" })),
            ],
        );
    }

    /// Runs one phase; its table is kept even when it fails part way.
    fn phase(&mut self, title: &str, f: impl FnOnce(&mut Results, &mut Table) -> Result<()>) {
        eprintln!("[{title}]");
        let mut t = Table::new(title, &["measure", "value", "unit"]);
        let r = f(self, &mut t);
        self.details.push(t);
        if let Err(e) = r {
            eprintln!("    FAILED: {e:#}");
            self.failures.push(format!("{title}: {e:#}"));
            self.summary.row(
                &format!("{title}: FAILED"),
                &[
                    ("measured", json!("-")),
                    ("unit", json!("-")),
                    ("goal", json!("-")),
                    ("met", json!("NO")),
                ],
            );
        }
    }
}

fn detail(t: &mut Table, measure: &str, value: f64, unit: &str) {
    t.row(measure, &[("value", num(value)), ("unit", json!(unit))]);
}

fn count(t: &mut Table, measure: &str, n: u64, unit: &str) {
    t.row(measure, &[("value", json!(n)), ("unit", json!(unit))]);
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

/// `du` of STATE/db; a store always takes some space.
fn db_usage(state: &Path) -> Result<u64> {
    let db = state.join("db");
    let n = tree_usage(&db).with_context(|| format!("du {}", db.display()))?;
    ensure!(n > 0, "{} takes no space", db.display());
    Ok(n)
}

/// `hsfs-bench scale`.
pub fn run(args: ScaleArgs) -> Result<()> {
    if !crate::checks::is_root() {
        bail!("hsfs-bench scale needs root (FUSE mounts and drop_caches)");
    }
    if args.scale <= 0.0 {
        bail!("--scale must be positive");
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let scratch = Scratch::new(&args.dir, "hsfs-bench-scale-")?;
    let cx = Cx {
        scratch: scratch.path().to_path_buf(),
        scale: args.scale,
        hsfs_args: args.hsfs_args.clone(),
        stop,
    };
    let scaled = if (args.scale - 1.0).abs() > f64::EPSILON {
        format!(
            " at scale {} (counts and sizes scaled; the goals are for scale 1)",
            args.scale
        )
    } else {
        String::new()
    };
    let mut r = Results {
        summary: Table::new(
            &format!("Issue 4 targets{scaled}"),
            &["target", "measured", "unit", "goal", "met"],
        ),
        details: Vec::new(),
        failures: Vec::new(),
    };
    let outcome = run_phases(&cx, &mut r, &args.only);
    match keep_logs(scratch.path()) {
        Ok(p) => eprintln!("hsfs logs: {}", p.display()),
        Err(e) => eprintln!("warning: keeping the logs: {e:#}"),
    }
    for t in r.details.iter().chain([&r.summary]) {
        t.print();
    }
    if let Some(p) = &args.json {
        let v = json!({
            "config": {"dir": cx.scratch.display().to_string(), "scale": args.scale,
                       "hsfs_args": args.hsfs_args, "only": args.only},
            "tables": r.details.iter().chain([&r.summary]).map(Table::to_json).collect::<Vec<Value>>(),
            "failures": r.failures,
        });
        fs::write(p, serde_json::to_string_pretty(&v)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    outcome?;
    if !r.failures.is_empty() {
        println!("\n## FAILED");
        for f in &r.failures {
            println!("- {f}");
        }
        bail!("{} phase(s) FAILED", r.failures.len());
    }
    Ok(())
}

/// One phase: its figures go to the table, its verdicts to the results.
type Phase = fn(&Cx, &mut Results, &mut Table) -> Result<()>;

/// Every phase: the name `--only` takes, its title, the function.
fn phases(cx: &Cx) -> Vec<(&'static str, String, Phase)> {
    let files = cx.n(1_000_000, 1000);
    let data_files = cx.n(100_000, 100);
    vec![
        (
            "files",
            format!("Scale: a {files}-file workspace"),
            many_files,
        ),
        (
            "memory",
            format!(
                "Memory: a {data_files}-file workspace of {DATA_FILE}-byte files, then a big file"
            ),
            memory,
        ),
        ("git", "Space: a git clone".into(), git_space),
        (
            "dedupe",
            format!("Space: {IDENTICAL} identical files"),
            dedupe,
        ),
    ]
}

/// The phases are independent (each has its own store): a failed one is
/// reported and the next one runs; Ctrl-C stops them all.
fn run_phases(cx: &Cx, r: &mut Results, only: &[String]) -> Result<()> {
    let all = phases(cx);
    for o in only {
        ensure!(
            all.iter().any(|p| p.0 == o),
            "--only {o}: unknown phase (phases: files, memory, git, dedupe)"
        );
    }
    for (name, title, f) in all {
        if only.is_empty() || only.iter().any(|o| o == name) {
            r.phase(&title, |r, t| f(cx, r, t));
            cx.check_stop()?;
        }
    }
    Ok(())
}

/// Mount time of the 1M-file workspace and a cold listing of its
/// 100k-entry directory.
fn many_files(cx: &Cx, r: &mut Results, t: &mut Table) -> Result<()> {
    let files = cx.n(1_000_000, 1000);
    let big = cx.n(100_000, 100).min(files);
    let mut shape = Shape::uniform(files - big, 1000, SMALL_FILE);
    shape.dirs.insert(0, ("big".into(), big));
    let state = cx.build("many", &shape, t)?;
    drop_caches()?;
    let (m, took) = cx.mount(&state, "many")?;
    // The mount serves the whole workspace: hsfs reports its node count
    // in statfs's f_files.
    let root: Vec<String> = shape.dirs.iter().map(|d| d.0.clone()).collect();
    check_listing(m.path(), &root)?;
    let nodes = statfs_files(m.path())?;
    ensure!(
        nodes == shape.nodes(),
        "statfs reports {nodes} nodes, expected {}",
        shape.nodes()
    );
    detail(
        t,
        "mount: spawn to ready, caches dropped",
        took.as_secs_f64(),
        "s",
    );
    r.verdict(
        &format!("mount a {files}-file workspace"),
        took.as_secs_f64(),
        "s",
        "< 2 s",
        took < Duration::from_secs(2),
    );
    detail(t, "hsfs RSS after mounting", m.rss_mib()?, "MiB");

    drop_caches()?;
    let dir = m.path().join("big");
    let start = Instant::now();
    let names = list(&dir)?;
    let took = start.elapsed();
    check_indices(names.iter().map(String::as_str), 0..big)?;
    detail(
        t,
        "ls: readdir of the big directory, cold",
        took.as_secs_f64(),
        "s",
    );
    r.verdict(
        &format!("ls of a {big}-entry directory (readdir, cold)"),
        took.as_secs_f64(),
        "s",
        "< 1 s",
        took < Duration::from_secs(1),
    );
    let start = Instant::now();
    let mut sizes = 0;
    for e in fs::read_dir(&dir).with_context(|| format!("opendir {}", dir.display()))? {
        let p = e
            .with_context(|| format!("readdir {}", dir.display()))?
            .path();
        let md = fs::symlink_metadata(&p).with_context(|| format!("lstat {}", p.display()))?;
        ensure!(md.is_file(), "{} is not a regular file", p.display());
        sizes += md.len();
    }
    let took = start.elapsed();
    ensure!(
        sizes == big * SMALL_FILE as u64,
        "the big directory's files hold {sizes} bytes, expected {}",
        big * SMALL_FILE as u64
    );
    detail(
        t,
        "ls -l: readdir + lstat of each, right after",
        took.as_secs_f64(),
        "s",
    );
    detail(t, "hsfs RSS after both listings", m.rss_mib()?, "MiB");
    m.stop()?;
    fs::remove_dir_all(&state).with_context(|| format!("rm -rf {}", state.display()))?;
    Ok(())
}

/// RSS after walking and reading the 100k-file workspace, then a 10 GiB
/// file written and read back through the same mount.
fn memory(cx: &Cx, r: &mut Results, t: &mut Table) -> Result<()> {
    let shape = Shape::uniform(cx.n(100_000, 100), 1000, DATA_FILE);
    let state = cx.build("data", &shape, t)?;
    drop_caches()?;
    let (m, took) = cx.mount(&state, "data")?;
    detail(
        t,
        "mount: spawn to ready, caches dropped",
        took.as_secs_f64(),
        "s",
    );
    detail(t, "hsfs RSS after mounting", m.rss_mib()?, "MiB");

    let start = Instant::now();
    let mut walk = Walk::default();
    walk.visit(m.path(), &cx.stop)?;
    let took = start.elapsed();
    ensure!(
        walk.dirs == shape.dirs.len() as u64 && walk.bytes == shape.bytes(),
        "the walk found {} directories and {} bytes, expected {} and {}",
        walk.dirs,
        walk.bytes,
        shape.dirs.len(),
        shape.bytes()
    );
    check_indices(walk.files.iter().map(|p| file_name(p)), 0..shape.files())?;
    detail(
        t,
        "walk: readdir + lstat of every entry",
        took.as_secs_f64(),
        "s",
    );
    detail(t, "hsfs RSS after the walk", m.rss_mib()?, "MiB");

    // Only the reads are timed, not making the expected content.
    let mut took = Duration::ZERO;
    for p in &walk.files {
        cx.check_stop()?;
        let i = file_index(file_name(p)).context("walked file name")?;
        let start = Instant::now();
        let got = fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        took += start.elapsed();
        ensure!(
            got == shape.content(i),
            "{} does not hold what was stored",
            p.display()
        );
    }
    detail(
        t,
        "read every file (compared byte for byte)",
        took.as_secs_f64(),
        "s",
    );
    detail(
        t,
        "  read rate",
        mib(shape.bytes()) / took.as_secs_f64(),
        "MiB/s",
    );
    let rss = m.rss_mib()?;
    detail(t, "hsfs RSS after reading every file", rss, "MiB");
    r.verdict(
        &format!(
            "hsfs RSS after walking and reading {} files, {:.0} MiB",
            shape.files(),
            mib(shape.bytes())
        ),
        rss,
        "MiB",
        "<= 300 MiB",
        rss <= 300.0,
    );

    let blocks = cx.n(10 << 10, 16);
    let path = m.path().join("big-file");
    let took = write_big(&path, blocks, &cx.stop)?;
    count(t, "big file: size", blocks, "MiB");
    detail(
        t,
        "  write in 1 MiB writes + fsync",
        blocks as f64 / took.as_secs_f64(),
        "MiB/s",
    );
    drop_caches()?;
    let took = read_big(&path, blocks, &cx.stop)?;
    detail(
        t,
        "  read back after drop_caches, every byte compared",
        blocks as f64 / took.as_secs_f64(),
        "MiB/s",
    );
    let size = if blocks.is_multiple_of(1024) {
        format!("{} GiB", blocks / 1024)
    } else {
        format!("{blocks} MiB")
    };
    r.verdict(
        &format!("a {size} file reads back byte-exact"),
        blocks as f64,
        "MiB verified",
        "byte-exact",
        true,
    );
    let rss = m.rss_mib()?;
    detail(t, "hsfs RSS after the big file", rss, "MiB");
    r.verdict(
        "bounded caches: hsfs RSS after also writing and reading the big file",
        rss,
        "MiB",
        "<= 300 MiB",
        rss <= 300.0,
    );
    detail(
        t,
        "store (du of STATE/db) with the big file",
        mib(db_usage(&state)?),
        "MiB",
    );
    m.stop()?;
    fs::remove_dir_all(&state).with_context(|| format!("rm -rf {}", state.display()))?;
    Ok(())
}

/// Store size after a git clone onto a fresh mount, against the clone's
/// logical bytes.
fn git_space(cx: &Cx, r: &mut Results, t: &mut Table) -> Result<()> {
    let src = git::Source::prepare(&cx.scratch, cx.scale)?;
    let state = fresh_store(cx, "git")?;
    let (m, _) = cx.mount(&state, "git")?;
    let repo = m.path().join("repo");
    // The clone's own time (its checks afterwards are not counted).
    let clone = git::clone(&src, m.path(), &repo)?;
    let (logical, took) = (clone.written, clone.figure);
    detail(
        t,
        "git clone --no-local (HEAD and file count checked)",
        took,
        "s",
    );
    detail(
        t,
        "logical bytes of the checkout, .git included",
        mib(logical),
        "MiB",
    );
    let live = db_usage(&state)?;
    detail(
        t,
        "store (du of STATE/db) while mounted, after the clone",
        mib(live),
        "MiB",
    );
    m.stop()?;
    let rest = AtRest::check(&state)?;
    rest.rows(t);
    let ratio = rest.db as f64 / logical as f64;
    detail(t, "store after unmounting / logical bytes", ratio, "x");
    r.verdict(
        "store / logical bytes of a git clone (du of STATE/db after unmount)",
        ratio,
        "x",
        "<= 1.2x",
        ratio <= 1.2,
    );
    Ok(())
}

/// Store growth after writing N identical files, against one copy.
fn dedupe(cx: &Cx, r: &mut Results, t: &mut Table) -> Result<()> {
    let blocks = cx.n(64, 1);
    let state = fresh_store(cx, "same")?;
    let before = db_usage(&state)?;
    let (m, _) = cx.mount(&state, "same")?;
    let mut block = vec![0; BLOCK];
    for copy in 0..IDENTICAL {
        cx.check_stop()?;
        let p = m.path().join(format!("copy{copy}"));
        let mut f = File::create_new(&p).with_context(|| format!("creating {}", p.display()))?;
        for b in 0..blocks {
            fill(&mut block, SAME_SEED ^ b);
            f.write_all(&block)
                .with_context(|| format!("writing {}", p.display()))?;
        }
        f.sync_all()?;
    }
    let mut got = vec![0; BLOCK];
    for copy in 0..IDENTICAL {
        let p = m.path().join(format!("copy{copy}"));
        let mut f = File::open(&p).with_context(|| format!("opening {}", p.display()))?;
        for b in 0..blocks {
            f.read_exact(&mut got)
                .with_context(|| format!("reading {}", p.display()))?;
            fill(&mut block, SAME_SEED ^ b);
            ensure!(got == block, "copy {copy} differs at block {b}");
        }
        ensure!(f.read(&mut got)? == 0, "copy {copy} is too long");
    }
    m.stop()?;
    let one = blocks * MIB;
    count(
        t,
        "files (identical, written and read back)",
        IDENTICAL,
        "files",
    );
    detail(t, "size of each", mib(one), "MiB");
    detail(t, "logical bytes", mib(one * IDENTICAL), "MiB");
    let rest = AtRest::check(&state)?;
    rest.rows(t);
    let stored = rest.chunk_bytes as f64 / one as f64;
    r.verdict(
        &format!("{IDENTICAL} identical files: unique chunk bytes (fsck) / one copy"),
        stored,
        "x",
        "1x (stored once)",
        rest.chunk_bytes == one,
    );
    let grown = rest.db.saturating_sub(before);
    detail(t, "store growth (du of STATE/db)", mib(grown), "MiB");
    let ratio = grown as f64 / one as f64;
    detail(t, "store growth / one copy", ratio, "x");
    r.verdict(
        &format!("{IDENTICAL} identical files: store growth (du) / one copy"),
        ratio,
        "x",
        "~1x (<= 1.2x)",
        ratio <= 1.2,
    );
    Ok(())
}

/// An unmounted store: `du` of STATE/db, the part of it in fjall's
/// journals, and the bytes of the distinct chunks it holds (re-hashed by
/// an fsck, which must find the store clean).
struct AtRest {
    db: u64,
    journals: u64,
    chunk_bytes: u64,
}

impl AtRest {
    fn check(state: &Path) -> Result<AtRest> {
        use std::os::unix::fs::MetadataExt;
        let db = db_usage(state)?;
        let mut journals = 0;
        for e in fs::read_dir(state.join("db"))? {
            let e = e?;
            if e.path().extension().is_some_and(|x| x == "jnl") {
                journals += e.metadata()?.blocks() * 512;
            }
        }
        let e = Engine::open_dir(state, &EngineOptions::default())?;
        let report = hsfs_engine::fsck::check(&e, &mut |_, _| {})?;
        ensure!(
            report.is_clean(),
            "fsck of {}: {:?}",
            state.display(),
            &report.problems[..report.problems.len().min(5)]
        );
        Ok(AtRest {
            db,
            journals,
            chunk_bytes: report.stats.chunk_bytes,
        })
    }

    fn rows(&self, t: &mut Table) {
        detail(
            t,
            "store after unmounting (du of STATE/db)",
            mib(self.db),
            "MiB",
        );
        detail(
            t,
            "  of which fjall journals (db/*.jnl)",
            mib(self.journals),
            "MiB",
        );
        detail(
            t,
            "distinct chunk bytes (fsck: clean)",
            mib(self.chunk_bytes),
            "MiB",
        );
    }
}

/// A new, empty workspace (closed).
fn fresh_store(cx: &Cx, name: &str) -> Result<PathBuf> {
    drop(new_store(&cx.scratch, name)?);
    Ok(cx.scratch.join(name))
}

/// Writes `blocks` MiB, block `i` filled from `BIG_SEED ^ i`, then fsync;
/// returns the time spent in write(2) and fsync.
fn write_big(path: &Path, blocks: u64, stop: &AtomicBool) -> Result<Duration> {
    let mut f = File::create_new(path).with_context(|| format!("creating {}", path.display()))?;
    // Page-aligned, as the mount bench's seq_write: one request per write.
    let mut buf = AlignedBlock::zeroed();
    let mut busy = Duration::ZERO;
    for i in 0..blocks {
        ensure!(!stop.load(Ordering::Relaxed), "interrupted");
        fill(buf.get_mut(), BIG_SEED ^ i);
        let t = Instant::now();
        f.write_all(buf.get())
            .with_context(|| format!("writing block {i}"))?;
        busy += t.elapsed();
    }
    let t = Instant::now();
    f.sync_all()?;
    busy += t.elapsed();
    let len = f.metadata()?.len();
    ensure!(
        len == blocks * MIB,
        "file size {len}, expected {}",
        blocks * MIB
    );
    Ok(busy)
}

/// Reads the big file back, comparing every block; the time in read(2).
fn read_big(path: &Path, blocks: u64, stop: &AtomicBool) -> Result<Duration> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let (mut got, mut want) = (AlignedBlock::zeroed(), vec![0; BLOCK]);
    let mut busy = Duration::ZERO;
    for i in 0..blocks {
        ensure!(!stop.load(Ordering::Relaxed), "interrupted");
        let t = Instant::now();
        f.read_exact(got.get_mut())
            .with_context(|| format!("reading block {i}"))?;
        busy += t.elapsed();
        fill(&mut want, BIG_SEED ^ i);
        ensure!(got.get() == want, "block {i} differs from what was written");
    }
    ensure!(f.read(got.get_mut())? == 0, "data past the end of the file");
    Ok(busy)
}

/// Directories and files under a root: readdir of each directory, lstat
/// of each entry.
#[derive(Default)]
struct Walk {
    dirs: u64,
    bytes: u64,
    files: Vec<PathBuf>,
}

impl Walk {
    fn visit(&mut self, dir: &Path, stop: &AtomicBool) -> Result<()> {
        ensure!(!stop.load(Ordering::Relaxed), "interrupted");
        for e in fs::read_dir(dir).with_context(|| format!("opendir {}", dir.display()))? {
            let p = e
                .with_context(|| format!("readdir {}", dir.display()))?
                .path();
            let md = fs::symlink_metadata(&p).with_context(|| format!("lstat {}", p.display()))?;
            if md.is_dir() {
                self.dirs += 1;
                self.visit(&p, stop)?;
            } else {
                ensure!(md.is_file(), "{} is not a regular file", p.display());
                self.bytes += md.len();
                self.files.push(p);
            }
        }
        Ok(())
    }
}

fn file_name(p: &Path) -> &str {
    p.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

/// `i` of a file named by [`Shape::file_name`].
fn file_index(name: &str) -> Option<u64> {
    name.strip_prefix('f')?.parse().ok()
}

/// `names` are exactly the file names of `range`, in any order.
fn check_indices<'a>(
    names: impl Iterator<Item = &'a str>,
    range: std::ops::Range<u64>,
) -> Result<()> {
    let mut seen = vec![false; (range.end - range.start) as usize];
    let mut n = 0;
    for name in names {
        let i = file_index(name)
            .filter(|i| range.contains(i))
            .with_context(|| format!("unexpected entry {name:?}"))?;
        let slot = &mut seen[(i - range.start) as usize];
        ensure!(!*slot, "entry {name:?} listed twice");
        *slot = true;
        n += 1;
    }
    ensure!(
        n == seen.len(),
        "{n} entries listed, expected {}",
        seen.len()
    );
    Ok(())
}

/// The names in a directory (one readdir pass).
fn list(dir: &Path) -> Result<Vec<String>> {
    fs::read_dir(dir)
        .with_context(|| format!("opendir {}", dir.display()))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("readdir {}", dir.display()))
}

/// The directory holds exactly `names`.
fn check_listing(dir: &Path, names: &[String]) -> Result<()> {
    let mut got = list(dir)?;
    got.sort_unstable();
    let mut want = names.to_vec();
    want.sort_unstable();
    ensure!(
        got == want,
        "{} holds {} entries, not the {} expected",
        dir.display(),
        got.len(),
        want.len()
    );
    Ok(())
}

/// statfs's f_files of `p` (hsfs reports its live node count there).
fn statfs_files(p: &Path) -> Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes())?;
    // SAFETY: statvfs writes into a zeroed struct we own; c is a valid C string.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return Err(std::io::Error::last_os_error()).context(format!("statvfs {}", p.display()));
    }
    Ok(s.f_files)
}
