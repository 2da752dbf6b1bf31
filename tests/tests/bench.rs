//! The benchmarks stay runnable: each `hsfs-bench` command at a small
//! scale. Every benchmark verifies the effect of its workloads before it
//! reports a figure and exits non-zero when a verification fails, so these
//! runs also check that hsfs does what the workloads claim (on four mount
//! targets for `mount`, on a leader and worker processes for `cluster`).
//! No figure is asserted: the machines are noisy, numbers are for
//! docs/PERFORMANCE.md. What is asserted: success, the tables printed, the
//! JSON written, and nothing left behind (mounts, scratch directories).

use std::path::Path;
use std::process::Command;

use hsfs_tests::{bin, run};

/// A scratch directory on the disk (the benchmarks' `--dir`).
fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("hsfs-bench-test-")
        .tempdir_in("/var/tmp")
        .expect("temp dir in /var/tmp")
}

/// Mount points under `dir` still mounted.
fn mounts_under(dir: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = dir.to_string_lossy().replace(' ', "\\040");
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(prefix.as_str()))
        .map(str::to_string)
        .collect()
}

/// Runs `hsfs-bench ARGS --dir DIR --json FILE`; checks the tables named
/// in `titles` were printed, the JSON parses, and the benchmark removed
/// its scratch directory and every mount. Returns the JSON.
fn bench(args: &[&str], titles: &[&str]) -> serde_json::Value {
    let dir = scratch();
    let json = dir.path().join("out.json");
    let out = run(Command::new(bin("hsfs-bench"))
        .args(args)
        .arg("--dir")
        .arg(dir.path())
        .arg("--json")
        .arg(&json));
    for t in titles {
        assert!(out.contains(t), "no table {t:?} in:\n{out}");
    }
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("JSON written")).expect("valid JSON");
    assert_eq!(
        mounts_under(dir.path()),
        Vec::<String>::new(),
        "left mounted"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("scratch dir")
        .map(|e| e.expect("entry").file_name())
        .filter(|n| n != "out.json")
        .collect();
    assert!(
        left.is_empty(),
        "left behind in {}: {left:?}",
        dir.path().display()
    );
    v
}

#[test]
fn engine_bench_runs() {
    bench(
        &["engine", "--files", "2000"],
        &[
            "Durable commit latency",
            "Group commit throughput",
            "hsfs-fsck on 2000 files",
        ],
    );
}

#[test]
fn scale_bench_runs_and_meets_its_checks() {
    let v = bench(
        &["scale", "--scale", "0.005"],
        &[
            "## Scale:",
            "## Memory:",
            "## Space: a git clone",
            "## Issue 4 targets",
        ],
    );
    assert_eq!(v["failures"], serde_json::json!([]), "{v:#}");
}

#[test]
fn mount_bench_runs_on_all_targets() {
    // Every group but cargo (four debug builds of its dependencies would
    // take minutes on two cores).
    let v = bench(
        &[
            "mount",
            "--scale",
            "0.02",
            "--runs",
            "1",
            "--only",
            "files,write,fsync,tree,seq,random,append,git,parallel",
        ],
        &[
            "create:",
            "seq_read:",
            "git_clone:",
            "create_8p:",
            "fdatasync floor",
        ],
    );
    let text = v.to_string();
    assert!(!text.contains("FAILED"), "a workload failed: {v:#}");
}

#[test]
fn cluster_bench_runs() {
    bench(
        &[
            "cluster",
            "--catch-up-ops",
            "300",
            "--files-per-writer",
            "10",
        ],
        &[
            "Commit latency from a remote worker",
            "Commit-to-visible",
            "Catch-up",
        ],
    );
}
