//! Measurement helpers shared by the `hsfs-bench` workloads.

pub mod cluster;
pub mod mount;
pub mod populate;
pub mod scale;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Latency samples of one workload.
#[derive(Default, Clone)]
pub struct Samples {
    v: Vec<Duration>,
}

impl Samples {
    /// Records one sample.
    pub fn push(&mut self, d: Duration) {
        self.v.push(d);
    }

    /// Records every sample of `other`.
    pub fn extend(&mut self, other: &Samples) {
        self.v.extend_from_slice(&other.v);
    }

    /// Times `f` and records it.
    pub fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let r = f();
        self.v.push(t.elapsed());
        r
    }

    /// The q-quantile (0..=1), nearest rank.
    #[must_use]
    pub fn quantile(&self, q: f64) -> Duration {
        if self.v.is_empty() {
            return Duration::ZERO;
        }
        let mut s = self.v.clone();
        s.sort_unstable();
        let i = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1;
        s[i]
    }

    /// Median.
    #[must_use]
    pub fn p50(&self) -> Duration {
        self.quantile(0.5)
    }

    /// 99th percentile.
    #[must_use]
    pub fn p99(&self) -> Duration {
        self.quantile(0.99)
    }

    /// Number of samples.
    #[must_use]
    pub fn len(&self) -> usize {
        self.v.len()
    }

    /// Whether empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.v.is_empty()
    }
}

/// Microseconds with two decimals.
#[must_use]
pub fn us(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e8).round() / 100.0
}

/// Runs `cmd` to completion and returns its output. Failing to start it
/// or a non-zero exit is an error naming `what`, with its stderr.
pub fn checked_output(cmd: &mut Command, what: &str) -> anyhow::Result<Output> {
    use anyhow::Context;
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

/// [`checked_output`], and how long the command took.
pub fn timed_output(cmd: &mut Command, what: &str) -> anyhow::Result<(Duration, Output)> {
    let t = Instant::now();
    let out = checked_output(cmd, what)?;
    Ok((t.elapsed(), out))
}

/// `VmRSS` of process `pid`, in MiB.
pub fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    use anyhow::Context;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .with_context(|| format!("no VmRSS line in /proc/{pid}/status"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kb / 1024.0)
}

/// CPU time (user + system, all threads, live and exited) process `pid`
/// has used so far. The kernel counts it in clock ticks (10 ms on common
/// kernels); kept as a whole number of ticks' nanoseconds, differences of
/// two readings are exact.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    use anyhow::Context;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces:
    // count the fields after its closing one, starting at field 3.
    let rest = stat
        .rsplit_once(')')
        .with_context(|| format!("no command name in /proc/{pid}/stat"))?
        .1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> anyhow::Result<u64> {
        let v = fields
            .get(n - 3)
            .with_context(|| format!("/proc/{pid}/stat has no field {n}"))?;
        v.parse::<u64>()
            .with_context(|| format!("/proc/{pid}/stat field {n}: {v:?}"))
    };
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second)
        .ok()
        .filter(|&t| t > 0)
        .context("sysconf(_SC_CLK_TCK) failed")?;
    // utime (14) + stime (15).
    let ticks = field(14)? + field(15)?;
    Ok(Duration::from_nanos(ticks * 1_000_000_000 / per_second))
}

/// A figure for a table: integers from 100 up, two decimals below.
#[must_use]
pub fn num(x: f64) -> Value {
    if x.abs() >= 100.0 {
        json!(x.round() as i64)
    } else {
        json!(x)
    }
}

/// p50/p99 of a small append + fdatasync on the filesystem of `dir`: the
/// floor of any durable commit there.
pub fn fdatasync_floor(dir: &Path, n: usize) -> std::io::Result<Samples> {
    use std::os::fd::AsRawFd;
    let path = dir.join(".hsfs-bench-fdatasync");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    let mut s = Samples::default();
    let rec = [b'x'; 100];
    for _ in 0..n {
        let t = Instant::now();
        f.write_all(&rec)?;
        // SAFETY: valid fd.
        if unsafe { libc::fdatasync(f.as_raw_fd()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        s.push(t.elapsed());
    }
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(s)
}

/// p50/p99 of making 1 MiB durable on the filesystem of `dir`, each
/// `pwrite` of 1 MiB followed by `fdatasync`, `n` times: into blocks the
/// file did not have (`overwrite` false: the file grows, as a new file's
/// data must) or over blocks already written and synced (`overwrite`
/// true: what a pre-written journal costs). The floor of a filesystem
/// that makes each 1 MiB `write` durable before it returns.
pub fn mib_sync_floor(dir: &Path, n: usize, overwrite: bool) -> std::io::Result<Samples> {
    use std::os::unix::fs::FileExt;
    const MIB: usize = 1 << 20;
    let path = dir.join(".hsfs-bench-mib-sync");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    let mut block = vec![0; MIB];
    populate::fill(&mut block, 0x6d69_6273);
    if overwrite {
        for i in 0..n {
            f.write_all_at(&block, (i * MIB) as u64)?;
        }
        f.sync_all()?;
    }
    let mut s = Samples::default();
    for i in 0..n {
        let t = Instant::now();
        f.write_all_at(&block, (i * MIB) as u64)?;
        f.sync_data()?;
        s.push(t.elapsed());
    }
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(s)
}

/// The alignment of an [`AlignedBlock`]: a page.
const ALIGN: usize = 4096;

/// Bytes of an [`AlignedBlock`].
pub const ALIGNED_BLOCK: usize = 1 << 20;

/// A 1 MiB block buffer that starts on a page boundary, as `dd` and `fio`
/// allocate theirs. Why: for a handle opened with direct I/O (hsfs's
/// writable handles) the kernel sends the caller's own pages, at most
/// `max_pages` (256) per FUSE request, so a 1 MiB write from a buffer that
/// starts anywhere else in a page (a plain `Vec` does) spans 257 pages and
/// reaches the server as two requests: 1046368 and 2208 bytes in hsfs's
/// log for a buffer 2208 bytes into its page. The workload would no
/// longer be "1 MiB blocks" at the filesystem, and each write would cost
/// a filesystem that commits every request durably two commits.
pub struct AlignedBlock {
    buf: Vec<u8>,
    start: usize,
}

impl AlignedBlock {
    /// A block of zeros.
    #[must_use]
    pub fn zeroed() -> AlignedBlock {
        let buf = vec![0; ALIGNED_BLOCK + ALIGN];
        let start = (ALIGN - buf.as_ptr() as usize % ALIGN) % ALIGN;
        AlignedBlock { buf, start }
    }

    /// A copy of `content` (1 MiB).
    #[must_use]
    pub fn new(content: &[u8]) -> AlignedBlock {
        let mut b = AlignedBlock::zeroed();
        b.get_mut().copy_from_slice(content);
        b
    }

    /// The block's bytes.
    #[must_use]
    pub fn get(&self) -> &[u8] {
        &self.buf[self.start..self.start + ALIGNED_BLOCK]
    }

    /// The block's bytes, to change.
    pub fn get_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + ALIGNED_BLOCK]
    }
}

/// A table printer that also collects rows as JSON.
pub struct Table {
    title: String,
    cols: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    json: Vec<Value>,
}

impl Table {
    /// A table with a title and column headers (the first is the row name).
    #[must_use]
    pub fn new(title: &str, cols: &[&'static str]) -> Table {
        Table {
            title: title.into(),
            cols: cols.to_vec(),
            rows: Vec::new(),
            json: Vec::new(),
        }
    }

    /// Adds a row; `values` are shown as given and stored as JSON.
    pub fn row(&mut self, name: &str, values: &[(&'static str, Value)]) {
        let mut r = vec![name.to_string()];
        for (_, v) in values {
            r.push(match v {
                Value::Number(n) if n.is_f64() => format!("{:.2}", n.as_f64().unwrap_or(0.0)),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        }
        self.rows.push(r);
        let mut o = serde_json::Map::new();
        o.insert("name".into(), json!(name));
        for (k, v) in values {
            o.insert((*k).into(), v.clone());
        }
        self.json.push(Value::Object(o));
    }

    /// Prints the table.
    pub fn print(&self) {
        println!("\n## {}", self.title);
        let widths: Vec<usize> = (0..self.cols.len())
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| r.get(i).map_or(0, String::len))
                    .chain([self.cols[i].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: Vec<&str>| {
            let s: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if i == 0 {
                        format!("{c:<w$}", w = widths[i])
                    } else {
                        format!("{c:>w$}", w = widths[i])
                    }
                })
                .collect();
            println!("| {} |", s.join(" | "));
        };
        line(self.cols.clone());
        println!(
            "|{}|",
            widths
                .iter()
                .map(|w| "-".repeat(w + 2))
                .collect::<Vec<_>>()
                .join("|")
        );
        for r in &self.rows {
            line(r.iter().map(String::as_str).collect());
        }
    }

    /// The table as JSON.
    #[must_use]
    pub fn to_json(&self) -> Value {
        json!({"title": self.title, "rows": self.json})
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    #[test]
    fn an_aligned_block_starts_on_a_page_and_holds_its_content() {
        for _ in 0..4 {
            let content: Vec<u8> = (0..super::ALIGNED_BLOCK).map(|i| i as u8).collect();
            let b = super::AlignedBlock::new(&content);
            assert_eq!(b.get().as_ptr() as usize % super::ALIGN, 0);
            assert_eq!(b.get(), &content[..]);
        }
    }

    #[test]
    fn cpu_time_reads_this_process_and_grows_while_it_computes() {
        let pid = std::process::id();
        let start = super::cpu_time(pid).unwrap();
        // Compute until the kernel has counted at least two more ticks.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut x = 0u64;
        let grown = loop {
            for i in 0..1_000_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
            let now = super::cpu_time(pid).unwrap();
            if now >= start + Duration::from_millis(20) {
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
        };
        assert!(grown, "CPU time did not grow in 30 s of computing");
        assert!(super::cpu_time(u32::MAX).is_err(), "no such process");
    }
}
