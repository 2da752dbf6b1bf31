//! The single-process workloads. Each runs in a directory of the target,
//! times every syscall (or every file) it claims to measure, and checks
//! that it did what it claims before it returns a figure.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use super::targets::drop_caches;
use super::{Ctx, Group, Measurement, Spec, Unit};
use crate::bench::populate::fill;
use crate::bench::{AlignedBlock, Samples};

const PAGE: usize = 4096;
const BLOCK: usize = 1 << 20;
const CHUNK: usize = 64 << 10;

pub static FILES: Group = Group {
    name: "files",
    specs: &[
        Spec {
            name: "create",
            unit: Unit::FilesPerSec,
            what: "create 16k empty files in one directory (latency per open(O_CREAT|O_EXCL)+close)",
            base: None,
        },
        Spec {
            name: "stat",
            unit: Unit::OpsPerSec,
            what: "lstat each of the 16k files, right after creating them",
            base: None,
        },
        Spec {
            name: "readdir",
            unit: Unit::EntriesPerSec,
            what: "list the 16k-entry directory, 5 passes (latency per pass)",
            base: None,
        },
        Spec {
            name: "open_close",
            unit: Unit::OpsPerSec,
            what: "open(O_RDONLY)+close each of the 16k files",
            base: None,
        },
    ],
    run: files,
};

pub static WRITE: Group = Group {
    name: "write",
    specs: &[
        Spec {
            name: "write_4k",
            unit: Unit::FilesPerSec,
            what: "5k new files of 4 KiB each (latency per create+write+close)",
            base: None,
        },
        Spec {
            name: "rename",
            unit: Unit::OpsPerSec,
            what: "rename each of the 5k files in its directory",
            base: None,
        },
        Spec {
            name: "unlink",
            unit: Unit::OpsPerSec,
            what: "unlink each of the 5k files",
            base: None,
        },
    ],
    run: write,
};

pub static FSYNC: Group = Group {
    name: "fsync",
    specs: &[Spec {
        name: "fsync_4k",
        unit: Unit::FilesPerSec,
        what: "500 new files of 4 KiB, each fsync'd before close (latency per file)",
        base: None,
    }],
    run: fsync,
};

pub static TREE: Group = Group {
    name: "tree",
    specs: &[
        Spec {
            name: "mkdir_tree",
            unit: Unit::DirsPerSec,
            what: "mkdir a 1110-directory tree (10/100/1000 on 3 levels)",
            base: None,
        },
        Spec {
            name: "walk_tree",
            unit: Unit::DirsPerSec,
            what: "walk it: readdir each directory and lstat each entry (latency per directory)",
            base: None,
        },
    ],
    run: tree,
};

pub static SEQ: Group = Group {
    name: "seq",
    specs: &[
        Spec {
            name: "seq_write",
            unit: Unit::MbPerSec,
            what: "1 GiB sequential write in 1 MiB blocks from a page-aligned buffer + fsync (MB/s over the time in write(2) and fsync)",
            base: None,
        },
        Spec {
            name: "seq_read",
            unit: Unit::MbPerSec,
            what: "read it back after drop_caches in 1 MiB blocks into a page-aligned buffer, compared byte for byte (MB/s over the time in read(2))",
            base: None,
        },
    ],
    run: seq,
};

pub static RANDOM: Group = Group {
    name: "random",
    specs: &[Spec {
        name: "random_write",
        unit: Unit::OpsPerSec,
        what: "4k random 4 KiB pwrites into a 64 MiB file (no fsync)",
        base: None,
    }],
    run: random,
};

pub static APPEND: Group = Group {
    name: "append",
    specs: &[Spec {
        name: "append",
        unit: Unit::OpsPerSec,
        what: "20k appends of 100 bytes to one O_APPEND file",
        base: None,
    }],
    run: append,
};

/// Name of file `i` of a workload.
#[must_use]
pub fn name(i: usize) -> String {
    format!("f{i:06}")
}

fn renamed(i: usize) -> String {
    format!("g{i:06}")
}

/// The content of 4 KiB file `i`.
#[must_use]
pub fn content(i: usize, salt: u64) -> Vec<u8> {
    let mut v = vec![0; PAGE];
    fill(&mut v, salt ^ (i as u64 + 1));
    v
}

/// Creates empty file `i`.
pub fn create_one(dir: &Path, i: usize) -> std::io::Result<()> {
    File::create_new(dir.join(name(i))).map(drop)
}

/// Creates file `i` with its 4 KiB content, fsync'd if asked.
pub fn write_one(dir: &Path, i: usize, salt: u64, fsync: bool) -> std::io::Result<()> {
    let mut f = File::create_new(dir.join(name(i)))?;
    f.write_all(&content(i, salt))?;
    if fsync {
        f.sync_all()?;
    }
    Ok(())
}

/// Runs `op(0..n)`, timing each call: (wall time, per-call samples).
fn timed(
    n: usize,
    mut op: impl FnMut(usize) -> std::io::Result<()>,
) -> Result<(Duration, Samples)> {
    let mut lat = Samples::default();
    let start = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        op(i).with_context(|| format!("op {i} of {n}"))?;
        lat.push(t.elapsed());
    }
    Ok((start.elapsed(), lat))
}

/// The directory holds exactly the entries `names(range)`.
pub fn verify_names(
    dir: &Path,
    range: Range<usize>,
    names: impl Fn(usize) -> String,
) -> Result<()> {
    let n = range.len();
    let mut got = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<Vec<_>>>()?;
    got.sort_unstable();
    ensure!(
        got.len() == n,
        "{} holds {} entries, expected {n}",
        dir.display(),
        got.len()
    );
    let mismatch = range.zip(&got).find(|(i, g)| **g != names(*i));
    ensure!(
        mismatch.is_none(),
        "unexpected entry {:?} in {}",
        mismatch.map(|m| m.1),
        dir.display()
    );
    Ok(())
}

/// Files `names(range)` hold exactly their 4 KiB content.
pub fn verify_contents(
    dir: &Path,
    range: Range<usize>,
    names: impl Fn(usize) -> String,
    salt: u64,
) -> Result<()> {
    for i in range {
        let got = fs::read(dir.join(names(i)))?;
        ensure!(
            got == content(i, salt),
            "{} does not hold what was written ({} bytes)",
            names(i),
            got.len()
        );
    }
    Ok(())
}

/// Files `name(range)` are empty regular files.
pub fn verify_empty(dir: &Path, range: Range<usize>) -> Result<()> {
    for i in range {
        let m = fs::symlink_metadata(dir.join(name(i)))?;
        ensure!(
            m.is_file() && m.len() == 0,
            "{} is not an empty file",
            name(i)
        );
    }
    Ok(())
}

fn files(cx: &mut Ctx) -> Result<()> {
    let (dir, n) = (cx.dir.clone(), cx.env.n(16_000, 16));
    cx.record("create", create(&dir, n))?;
    cx.record("stat", stat(&dir, n))?;
    cx.record("readdir", readdir(&dir, n))?;
    cx.record("open_close", open_close(&dir, n))
}

fn create(dir: &Path, n: usize) -> Result<Measurement> {
    let (t, lat) = timed(n, |i| create_one(dir, i))?;
    verify_names(dir, 0..n, name)?;
    Ok(Measurement::rate(n, t, lat))
}

fn stat(dir: &Path, n: usize) -> Result<Measurement> {
    let mut bad = 0;
    let (t, lat) = timed(n, |i| {
        let m = fs::symlink_metadata(dir.join(name(i)))?;
        bad += usize::from(!m.is_file() || m.len() != 0);
        Ok(())
    })?;
    ensure!(bad == 0, "{bad} of the files are not empty regular files");
    Ok(Measurement::rate(n, t, lat))
}

fn readdir(dir: &Path, n: usize) -> Result<Measurement> {
    const PASSES: usize = 5;
    let mut counts = Vec::new();
    let (t, lat) = timed(PASSES, |_| {
        counts.push(fs::read_dir(dir)?.try_fold(0, |c, e| e.map(|_| c + 1))?);
        Ok(())
    })?;
    ensure!(
        counts.iter().all(|&c| c == n),
        "readdir returned {counts:?} entries, expected {n}"
    );
    Ok(Measurement::rate(n * PASSES, t, lat))
}

fn open_close(dir: &Path, n: usize) -> Result<Measurement> {
    let (t, lat) = timed(n, |i| File::open(dir.join(name(i))).map(drop))?;
    Ok(Measurement::rate(n, t, lat))
}

fn write(cx: &mut Ctx) -> Result<()> {
    let (dir, n) = (cx.dir.clone(), cx.env.n(5000, 8));
    let salt = cx.salt("write_4k");
    cx.record("write_4k", write_files(&dir, n, salt, false))?;
    cx.record("rename", rename(&dir, n, salt))?;
    cx.record("unlink", unlink(&dir, n))
}

fn fsync(cx: &mut Ctx) -> Result<()> {
    let (dir, n) = (cx.dir.clone(), cx.env.n(500, 8));
    let salt = cx.salt("fsync_4k");
    cx.record("fsync_4k", write_files(&dir, n, salt, true))
}

fn write_files(dir: &Path, n: usize, salt: u64, fsync: bool) -> Result<Measurement> {
    let (t, lat) = timed(n, |i| write_one(dir, i, salt, fsync))?;
    verify_names(dir, 0..n, name)?;
    verify_contents(dir, 0..n, name, salt)?;
    Ok(Measurement::rate(n, t, lat).wrote((n * PAGE) as u64))
}

fn rename(dir: &Path, n: usize, salt: u64) -> Result<Measurement> {
    let (t, lat) = timed(n, |i| fs::rename(dir.join(name(i)), dir.join(renamed(i))))?;
    verify_names(dir, 0..n, renamed)?;
    verify_contents(dir, 0..n, renamed, salt)?;
    Ok(Measurement::rate(n, t, lat))
}

fn unlink(dir: &Path, n: usize) -> Result<Measurement> {
    let (t, lat) = timed(n, |i| fs::remove_file(dir.join(renamed(i))))?;
    verify_names(dir, 0..0, renamed)?;
    Ok(Measurement::rate(n, t, lat))
}

fn tree(cx: &mut Ctx) -> Result<()> {
    // f + f^2 + f^3 directories: 1110 for f = 10 at scale 1.
    let fanout = ((1110.0 * cx.env.scale).cbrt().round() as usize).max(2);
    let dirs = tree_dirs(fanout);
    let root = cx.dir.clone();
    cx.record("mkdir_tree", mkdir_tree(&root, &dirs))?;
    cx.record("walk_tree", walk_tree(&root, dirs.len()))
}

/// The directories of a 3-level tree, parents first.
fn tree_dirs(fanout: usize) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for a in 0..fanout {
        let pa = PathBuf::from(format!("d{a}"));
        v.push(pa.clone());
        for b in 0..fanout {
            let pb = pa.join(format!("d{b}"));
            v.push(pb.clone());
            v.extend((0..fanout).map(|c| pb.join(format!("d{c}"))));
        }
    }
    v
}

fn mkdir_tree(root: &Path, dirs: &[PathBuf]) -> Result<Measurement> {
    let (t, lat) = timed(dirs.len(), |i| fs::create_dir(root.join(&dirs[i])))?;
    let mut ignored = Samples::default();
    let found = walk(root, &mut ignored)?;
    ensure!(
        found == dirs.len(),
        "the tree holds {found} directories, expected {}",
        dirs.len()
    );
    Ok(Measurement::rate(dirs.len(), t, lat))
}

fn walk_tree(root: &Path, n: usize) -> Result<Measurement> {
    let mut lat = Samples::default();
    let start = Instant::now();
    let found = walk(root, &mut lat)?;
    let t = start.elapsed();
    ensure!(
        found == n,
        "the walk found {found} directories, expected {n}"
    );
    Ok(Measurement::rate(n, t, lat))
}

/// Directories below `dir`; one latency sample per directory listed.
fn walk(dir: &Path, lat: &mut Samples) -> Result<usize> {
    let t = Instant::now();
    let mut subdirs = Vec::new();
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        if fs::symlink_metadata(&p)?.is_dir() {
            subdirs.push(p);
        }
    }
    lat.push(t.elapsed());
    let mut n = subdirs.len();
    for d in subdirs {
        n += walk(&d, lat)?;
    }
    Ok(n)
}

fn seq(cx: &mut Ctx) -> Result<()> {
    let blocks = cx.env.n(1024, 4);
    let path = cx.dir.join("big");
    let mut template = vec![0; BLOCK];
    fill(&mut template, cx.salt("seq"));
    cx.record("seq_write", seq_write(&path, blocks, &template))?;
    cx.record("seq_read", seq_read(&path, blocks, &template))
}

/// Turns the template into block `i`: each 64 KiB piece gets a distinct
/// stamp, so no two chunks of the file are equal (no dedupe shortcut).
fn stamp(block: &mut [u8], i: usize) {
    for (k, piece) in block.chunks_mut(CHUNK).enumerate() {
        piece[..8].copy_from_slice(&((i as u64) << 8 | k as u64).to_le_bytes());
    }
}

fn seq_write(path: &Path, blocks: usize, template: &[u8]) -> Result<Measurement> {
    let mut f = File::create_new(path)?;
    let mut buf = AlignedBlock::new(template);
    let mut lat = Samples::default();
    let mut busy = Duration::ZERO;
    for i in 0..blocks {
        stamp(buf.get_mut(), i);
        let t = Instant::now();
        f.write_all(buf.get())
            .with_context(|| format!("writing block {i}"))?;
        let d = t.elapsed();
        lat.push(d);
        busy += d;
    }
    let t = Instant::now();
    f.sync_all()?;
    busy += t.elapsed();
    drop(f);
    let bytes = (blocks * BLOCK) as u64;
    let len = fs::metadata(path)?.len();
    ensure!(len == bytes, "file size {len}, expected {bytes}");
    Ok(Measurement::mb_per_s(bytes, busy, lat).wrote(bytes))
}

fn seq_read(path: &Path, blocks: usize, template: &[u8]) -> Result<Measurement> {
    drop_caches()?;
    let mut f = File::open(path)?;
    let mut buf = AlignedBlock::zeroed();
    let mut want = template.to_vec();
    let mut lat = Samples::default();
    let mut busy = Duration::ZERO;
    for i in 0..blocks {
        let t = Instant::now();
        f.read_exact(buf.get_mut())
            .with_context(|| format!("reading block {i}"))?;
        let d = t.elapsed();
        lat.push(d);
        busy += d;
        stamp(&mut want, i);
        ensure!(buf.get() == want, "block {i} differs from what was written");
    }
    ensure!(f.read(buf.get_mut())? == 0, "data past the end of the file");
    Ok(Measurement::mb_per_s((blocks * BLOCK) as u64, busy, lat))
}

fn random(cx: &mut Ctx) -> Result<()> {
    let mib = cx.env.n(64, 1);
    let n = cx.env.n(4000, 16);
    let path = cx.dir.join("random");
    let salt = cx.salt("random_write");
    cx.record("random_write", random_write(&path, mib, n, salt))
}

fn random_write(path: &Path, mib: usize, n: usize, salt: u64) -> Result<Measurement> {
    let f = File::create_new(path)?;
    let mut block = vec![0; BLOCK];
    for i in 0..mib {
        fill(&mut block, salt ^ (1000 + i as u64));
        f.write_all_at(&block, (i * BLOCK) as u64)?;
    }
    f.sync_all()?;
    let pages = (mib * BLOCK / PAGE) as u64;
    // The writes (page, seed, content), made before the clock starts.
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    let plan: Vec<(u64, u64, Vec<u8>)> = (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let seed = salt ^ (1_000_000 + i as u64);
            let mut page = vec![0; PAGE];
            fill(&mut page, seed);
            (x % pages, seed, page)
        })
        .collect();
    let (t, lat) = timed(n, |i| {
        let (p, _, data) = &plan[i];
        f.write_all_at(data, p * PAGE as u64)
    })?;
    // Page -> seed of the last write there.
    let last: std::collections::HashMap<u64, u64> =
        plan.iter().map(|(p, seed, _)| (*p, *seed)).collect();
    let mut page = vec![0; PAGE];
    let len = f.metadata()?.len();
    ensure!(len == (mib * BLOCK) as u64, "file size changed to {len}");
    let mut want = vec![0; PAGE];
    for (&p, &seed) in &last {
        f.read_exact_at(&mut page, p * PAGE as u64)?;
        fill(&mut want, seed);
        ensure!(page == want, "page {p} does not hold its last write");
    }
    Ok(Measurement::rate(n, t, lat).wrote((mib * BLOCK + n * PAGE) as u64))
}

fn append(cx: &mut Ctx) -> Result<()> {
    let n = cx.env.n(20_000, 100);
    let path = cx.dir.join("log");
    let run = cx.salt("append");
    cx.record("append", appends(&path, n, run))
}

/// Record `i` of the append workload: 100 bytes ending in a newline.
fn record(i: usize, salt: u64) -> [u8; 100] {
    let mut r = [b'.'; 100];
    let s = format!("{i:08} {salt:016x} hsfs-bench append ");
    r[..s.len()].copy_from_slice(s.as_bytes());
    r[99] = b'\n';
    r
}

fn appends(path: &Path, n: usize, salt: u64) -> Result<Measurement> {
    let mut f = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(path)?;
    let (t, lat) = timed(n, |i| f.write_all(&record(i, salt)))?;
    drop(f);
    let data = fs::read(path)?;
    ensure!(
        data.len() == n * 100,
        "log holds {} bytes, expected {}",
        data.len(),
        n * 100
    );
    let bad = data
        .chunks(100)
        .enumerate()
        .find(|(i, r)| *r != record(*i, salt));
    ensure!(
        bad.is_none(),
        "record {:?} is not what was appended",
        bad.map(|b| b.0)
    );
    Ok(Measurement::rate(n, t, lat).wrote((n * 100) as u64))
}
