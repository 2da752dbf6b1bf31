//! Collects every run's outcome and turns them into tables (median of the
//! runs per target) and JSON.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Value, json};

use super::targets::Target;
use super::{GroupRun, Measurement, MountArgs, Spec, Unit};
use crate::bench::{Samples, Table, num, us};

const PASSTHROUGH: &str = "passthrough_ll";
const HSFS: &str = "hsfs";
const MIB: f64 = (1 << 20) as f64;
/// The kernel counts CPU time in clock ticks (10 ms): a ratio to a
/// baseline of fewer than ten ticks is not shown.
const MIN_CPU_FOR_RATIO: f64 = 0.1;
/// The single-process mutations, each one durable commit (or more) on hsfs.
const MUTATIONS: &[&str] = &[
    "create",
    "write_4k",
    "rename",
    "unlink",
    "fsync_4k",
    "mkdir_tree",
    "random_write",
    "append",
];

/// The disk's floors, measured in the scratch directory (where the hsfs
/// state lives) before the workloads.
pub struct Floors {
    /// A 100-byte append + `fdatasync`: the floor of any durable commit.
    pub small: Samples,
    /// 1 MiB written into new blocks + `fdatasync`.
    pub mib_new: Samples,
    /// 1 MiB written over written blocks + `fdatasync`.
    pub mib_overwrite: Samples,
}

/// One workload's outcome in one run on one target.
pub struct Outcome {
    pub name: &'static str,
    pub result: Result<Measurement, String>,
    /// RSS of the process serving the target, right after the workload.
    pub rss_mib: Option<f64>,
    /// CPU seconds the process serving the target used from the end of the
    /// previous workload (or the group's start, or the cleanup after the
    /// previous concurrent workload) to the end of this one: the workload
    /// with its setup and checks, and background work either left.
    pub cpu_s: Option<f64>,
}

/// Everything one (workload, target) pair measured over the runs.
#[derive(Default)]
struct Cell {
    figures: Vec<f64>,
    lat: Samples,
    errors: Vec<String>,
    rss_mib: Option<f64>,
    /// Server CPU seconds of each successful run.
    cpu_s: Vec<f64>,
}

impl Cell {
    fn median(&self) -> Option<f64> {
        if !self.errors.is_empty() {
            return None;
        }
        median(&self.figures)
    }

    /// Median server CPU seconds over the runs, when every run has one.
    fn cpu_median(&self) -> Option<f64> {
        if !self.errors.is_empty() || self.cpu_s.len() != self.figures.len() {
            return None;
        }
        median(&self.cpu_s)
    }
}

fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        f64::midpoint(v[m - 1], v[m])
    })
}

/// hsfs store size around one group's run.
struct StoreRow {
    group: &'static str,
    run: usize,
    written: u64,
    /// Before the workloads, after them, after removing their files.
    bytes: [u64; 3],
}

pub struct Report {
    targets: Vec<(&'static str, String)>,
    floor: Samples,
    mib_new: Samples,
    mib_overwrite: Samples,
    config: Value,
    runs: usize,
    scale: f64,
    specs: Vec<&'static Spec>,
    cells: HashMap<(&'static str, usize), Cell>,
    store: Vec<StoreRow>,
    raw: Vec<Value>,
    run_failures: Vec<String>,
}

impl Report {
    #[must_use]
    pub fn new(targets: &[Target], floors: Floors, scratch: &Path, args: &MountArgs) -> Report {
        Report {
            targets: targets
                .iter()
                .map(|t| (t.name, t.root.display().to_string()))
                .collect(),
            floor: floors.small,
            mib_new: floors.mib_new,
            mib_overwrite: floors.mib_overwrite,
            config: json!({
                "dir": scratch.display().to_string(),
                "runs": args.runs,
                "scale": args.scale,
                "hsfs_args": args.hsfs_args,
                "hsfs_init_args": args.hsfs_init_args,
                "only": args.only,
            }),
            runs: args.runs,
            scale: args.scale,
            specs: Vec::new(),
            cells: HashMap::new(),
            store: Vec::new(),
            raw: Vec::new(),
            run_failures: Vec::new(),
        }
    }

    /// Adds one group's run on target `t`.
    pub fn add(&mut self, group: &'static super::Group, t: usize, run: usize, g: GroupRun) {
        let target = self.targets[t].0;
        let mut logical = 0;
        for o in g.outcomes {
            let spec = group
                .specs
                .iter()
                .find(|s| s.name == o.name)
                .expect("outcome of a known workload");
            if !self.specs.iter().any(|s| s.name == spec.name) {
                self.specs.push(spec);
            }
            let cell = self.cells.entry((o.name, t)).or_default();
            cell.rss_mib = o.rss_mib.or(cell.rss_mib);
            let mut raw = json!({
                "workload": o.name, "target": target, "run": run + 1, "rss_mib": o.rss_mib,
                "server_cpu_s": o.cpu_s,
            });
            match o.result {
                Ok(m) => {
                    cell.cpu_s.extend(o.cpu_s);
                    raw["figure"] = json!(m.figure);
                    raw["unit"] = json!(spec.unit.label());
                    if !m.lat.is_empty() {
                        raw["p50_us"] = json!(us(m.lat.p50()));
                        raw["p99_us"] = json!(us(m.lat.p99()));
                    }
                    raw["written_bytes"] = json!(m.written);
                    logical += m.written;
                    cell.figures.push(m.figure);
                    cell.lat.extend(&m.lat);
                }
                Err(e) => {
                    raw["error"] = json!(e);
                    cell.errors.push(e);
                }
            }
            self.raw.push(raw);
        }
        for e in g.errors {
            self.run_failures
                .push(format!("{target}, {} run {}: {e}", group.name, run + 1));
        }
        if let Some(bytes) = g.store {
            self.store.push(StoreRow {
                group: group.name,
                run,
                written: logical,
                bytes,
            });
        }
    }

    /// Failed (workload, target) pairs and failures around group runs
    /// (cleanup, store size).
    #[must_use]
    pub fn failures(&self) -> usize {
        self.cells.values().filter(|c| !c.errors.is_empty()).count() + self.run_failures.len()
    }

    fn target_index(&self, name: &str) -> Option<usize> {
        self.targets.iter().position(|t| t.0 == name)
    }

    fn median(&self, spec: &str, t: usize) -> Option<f64> {
        self.cells.get(&(spec, t)).and_then(Cell::median)
    }

    fn tables(&self) -> Vec<Table> {
        let mut tables = vec![self.targets_table(), self.floor_table()];
        tables.extend(self.specs.iter().map(|s| self.spec_table(s)));
        if let Some(t) = self.over_floor_table() {
            tables.push(t);
        }
        if !self.store.is_empty() {
            tables.push(self.store_table());
        }
        tables
    }

    fn targets_table(&self) -> Table {
        let mut t = Table::new(
            &format!(
                "Targets (runs: {}, scale: {}, alternating in this order)",
                self.runs, self.scale
            ),
            &["target", "directory"],
        );
        for (name, root) in &self.targets {
            t.row(name, &[("root", json!(root))]);
        }
        t
    }

    fn floor_table(&self) -> Table {
        let mut t = Table::new(
            &format!(
                "Disk floors in {} (fdatasync after each write)",
                self.config["dir"].as_str().unwrap_or("?")
            ),
            &["measure", "n", "p50 us", "p99 us"],
        );
        let rows = [
            ("append 100 B + fdatasync", &self.floor),
            ("append 1 MiB (new blocks) + fdatasync", &self.mib_new),
            (
                "overwrite 1 MiB (written blocks) + fdatasync",
                &self.mib_overwrite,
            ),
        ];
        for (name, s) in rows {
            t.row(
                name,
                &[
                    ("n", json!(s.len())),
                    ("p50_us", latency(s, Samples::p50)),
                    ("p99_us", latency(s, Samples::p99)),
                ],
            );
        }
        t
    }

    fn spec_table(&self, s: &Spec) -> Table {
        let better = match s.unit {
            Unit::Seconds => "lower is better",
            _ => "higher is better",
        };
        let scaled = if (self.scale - 1.0).abs() > f64::EPSILON {
            format!(", counts x{}", self.scale)
        } else {
            String::new()
        };
        let mut cols = vec![
            "target",
            s.unit.label(),
            "p50 us",
            "p99 us",
            "/passthrough",
            "RSS MiB",
            "server CPU ms",
            "CPU /passthrough",
        ];
        if s.base.is_some() {
            cols.push("/1 process");
        }
        let mut t = Table::new(
            &format!(
                "{}: {} ({}, {better}; median of {} runs{scaled})",
                s.name,
                s.what,
                s.unit.label(),
                self.runs
            ),
            &cols,
        );
        let pt_index = self.target_index(PASSTHROUGH);
        let pt = pt_index.and_then(|i| self.median(s.name, i));
        let pt_cpu = pt_index
            .and_then(|i| self.cells.get(&(s.name, i)))
            .and_then(Cell::cpu_median);
        for (i, (target, _)) in self.targets.iter().enumerate() {
            let Some(cell) = self.cells.get(&(s.name, i)) else {
                continue;
            };
            let mut values = match cell.median() {
                None => vec![
                    ("figure", json!("FAILED")),
                    ("p50_us", dash()),
                    ("p99_us", dash()),
                    ("vs_passthrough", dash()),
                ],
                Some(f) => vec![
                    ("figure", figure(s.unit, f)),
                    ("p50_us", latency(&cell.lat, Samples::p50)),
                    ("p99_us", latency(&cell.lat, Samples::p99)),
                    ("vs_passthrough", pt.map_or_else(dash, |p| json!(f / p))),
                ],
            };
            values.push(("rss_mib", cell.rss_mib.map_or_else(dash, num)));
            let cpu = cell.cpu_median();
            values.push(("server_cpu_ms", cpu.map_or_else(dash, |c| num(c * 1e3))));
            let cpu_ratio = cpu
                .zip(pt_cpu)
                .filter(|&(_, p)| p >= MIN_CPU_FOR_RATIO)
                .map_or_else(dash, |(c, p)| json!(c / p));
            values.push(("cpu_vs_passthrough", cpu_ratio));
            if let Some(base) = s.base {
                let ratio = cell
                    .median()
                    .zip(self.median(base, i))
                    .map_or_else(dash, |(f, b)| json!(f / b));
                values.push(("vs_single_process", ratio));
            }
            t.row(target, &values);
        }
        t
    }

    /// hsfs's per-op p50 of the durable mutations against the floor.
    fn over_floor_table(&self) -> Option<Table> {
        let h = self.target_index(HSFS)?;
        let floor = us(self.floor.p50());
        let mut t = Table::new(
            "hsfs per-op latency of the single-process mutations against the fdatasync floor (p50 over all runs)",
            &["workload", "hsfs p50 us", "floor p50 us", "p50 - floor us"],
        );
        let mut any = false;
        for s in &self.specs {
            let Some(c) = self.cells.get(&(s.name, h)) else {
                continue;
            };
            if c.lat.is_empty() || !MUTATIONS.contains(&s.name) {
                continue;
            }
            let p50 = us(c.lat.p50());
            t.row(
                s.name,
                &[
                    ("hsfs_p50_us", num(p50)),
                    ("floor_p50_us", num(floor)),
                    ("over_floor_us", num(p50 - floor)),
                ],
            );
            any = true;
        }
        any.then_some(t)
    }

    fn store_table(&self) -> Table {
        let mut t = Table::new(
            "hsfs store on disk (du of STATE/db) vs logical bytes written, each run (background compaction can shrink it)",
            &[
                "workload group, run",
                "written MiB",
                "store before MiB",
                "after workload MiB",
                "change MiB",
                "after rm -rf MiB",
            ],
        );
        let mib = |b: u64| num(b as f64 / MIB);
        for r in &self.store {
            let [before, after, end] = r.bytes;
            t.row(
                &format!("{} r{}", r.group, r.run + 1),
                &[
                    ("written_mib", mib(r.written)),
                    ("before_mib", mib(before)),
                    ("after_mib", mib(after)),
                    ("change_mib", num((after as f64 - before as f64) / MIB)),
                    ("after_cleanup_mib", mib(end)),
                ],
            );
        }
        let total: u64 = self.store.iter().map(|r| r.written).sum();
        let end = self.store.last().map_or(0, |r| r.bytes[2]);
        t.row(
            "whole bench",
            &[
                ("written_mib", mib(total)),
                (
                    "before_mib",
                    mib(self.store.first().map_or(0, |r| r.bytes[0])),
                ),
                ("after_mib", dash()),
                ("change_mib", dash()),
                ("after_cleanup_mib", mib(end)),
            ],
        );
        t
    }

    /// Prints every table and the failures.
    pub fn print(&self) {
        for t in self.tables() {
            t.print();
        }
        let failed: Vec<String> = self
            .specs
            .iter()
            .flat_map(|s| {
                self.targets
                    .iter()
                    .enumerate()
                    .filter_map(|(i, (target, _))| {
                        let c = self.cells.get(&(s.name, i))?;
                        let e = c.errors.first()?;
                        Some(format!("{} on {target}: {e}", s.name))
                    })
            })
            .chain(self.run_failures.iter().cloned())
            .collect();
        if !failed.is_empty() {
            println!("\n## FAILED");
            for f in failed {
                println!("- {f}");
            }
        }
    }

    /// Tables and raw per-run figures.
    #[must_use]
    pub fn to_json(&self) -> Value {
        json!({
            "config": self.config,
            "fdatasync_floor": {
                "n": self.floor.len(),
                "p50_us": us(self.floor.p50()),
                "p99_us": us(self.floor.p99()),
            },
            "mib_sync_floor": {
                "n": self.mib_new.len(),
                "new_blocks_p50_us": us(self.mib_new.p50()),
                "new_blocks_p99_us": us(self.mib_new.p99()),
                "overwrite_p50_us": us(self.mib_overwrite.p50()),
                "overwrite_p99_us": us(self.mib_overwrite.p99()),
            },
            "tables": self.tables().iter().map(Table::to_json).collect::<Vec<_>>(),
            "runs": self.raw,
            "run_failures": self.run_failures,
            "failures": self.failures(),
        })
    }
}

fn dash() -> Value {
    json!("-")
}

fn figure(unit: Unit, x: f64) -> Value {
    match unit {
        Unit::Seconds => json!(format!("{x:.3}")),
        _ => num(x),
    }
}

fn latency(s: &Samples, q: fn(&Samples) -> std::time::Duration) -> Value {
    if s.is_empty() { dash() } else { num(us(q(s))) }
}
