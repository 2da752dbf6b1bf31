//! `hsfs`: create, mount and inspect hsfs workspaces.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use hsfs_engine::commit::CommitConfig;
use hsfs_engine::{Engine, EngineOptions, WorkspaceId};
use hsfs_fs::CacheMode;
use hsfs_tools::{absolute, control, report, serve};
use serde_json::json;

#[derive(Parser)]
#[command(name = "hsfs", version, about = "Replicated workspace filesystem")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Cache {
    /// Kernel caches attributes, entries and pages; every change is
    /// invalidated exactly.
    On,
    /// Zero timeouts and direct I/O everywhere.
    Off,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a new workspace in STATE_DIR (which must be absent or empty).
    Init {
        /// State directory.
        state_dir: PathBuf,
        /// Owner of the root directory as UID:GID (default: the caller).
        #[arg(long)]
        owner: Option<String>,
        /// Permission bits of the root directory (octal).
        #[arg(long, default_value = "755")]
        mode: String,
    },
    /// Mount a workspace with the embedded leader (foreground).
    Mount {
        /// State directory.
        state_dir: PathBuf,
        /// Mount point (an existing empty directory).
        mountpoint: PathBuf,
        /// Mount read-only.
        #[arg(long)]
        read_only: bool,
        /// Let users other than the mounting one use the mount.
        #[arg(long)]
        allow_other: bool,
        /// Kernel caching.
        #[arg(long, value_enum, default_value = "on")]
        cache: Cache,
        /// Entry and attribute timeout with --cache on, in seconds.
        #[arg(long, default_value_t = 30.0)]
        ttl: f64,
        /// FUSE request threads.
        #[arg(long, default_value_t = 4)]
        threads: usize,
        /// Group commit window in microseconds.
        #[arg(long, default_value_t = 1000)]
        commit_window_us: u64,
        /// Most intents per group commit.
        #[arg(long, default_value_t = 100)]
        commit_max_ops: usize,
        /// Most payload bytes per group commit.
        #[arg(long, default_value_t = 1 << 20)]
        commit_max_bytes: usize,
        /// Pending intents past which mutations get EAGAIN.
        #[arg(long, default_value_t = 10_000)]
        max_pending: usize,
        /// Free space (MiB) the store's filesystem keeps; commits that
        /// would go below it fail with ENOSPC.
        #[arg(long, default_value_t = 64)]
        reserve_mib: u64,
        /// Name of this mount in log entries (default: the host name).
        #[arg(long)]
        name: Option<String>,
    },
    /// Show the state of a workspace (live from its mount if mounted).
    Status {
        /// State directory (default: every hsfs mount of this host).
        state_dir: Option<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Show the op log.
    Log {
        /// State directory.
        state_dir: PathBuf,
        /// Number of entries from the end.
        #[arg(long, default_value_t = 20)]
        tail: u64,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Print shell exports that keep tool caches in a local scratch
    /// directory instead of the replicated workspace.
    Env {
        /// Scratch directory (default: /var/tmp/hsfs-scratch-UID).
        #[arg(long)]
        scratch: Option<PathBuf>,
    },
}

fn parse_owner(s: &str) -> Result<(u32, u32)> {
    let (u, g) = s.split_once(':').context("--owner takes UID:GID")?;
    Ok((u.parse().context("bad UID")?, g.parse().context("bad GID")?))
}

fn init(state_dir: &Path, owner: Option<String>, mode: &str) -> Result<()> {
    let perm = u32::from_str_radix(mode, 8).context("--mode takes octal permission bits")?;
    if perm > 0o7777 {
        bail!("--mode {mode}: not permission bits");
    }
    // SAFETY: getuid/getgid have no preconditions.
    let (uid, gid) = match owner {
        Some(o) => parse_owner(&o)?,
        None => unsafe { (libc::getuid(), libc::getgid()) },
    };
    let ws = WorkspaceId(hsfs_engine::random_bytes());
    let e = Engine::init_dir(
        state_dir,
        ws,
        (perm, uid, gid),
        hsfs_engine::util::now_nanos(),
        &EngineOptions::default(),
    )?;
    drop(e);
    println!("hsfs: created workspace {ws} in {}", state_dir.display());
    Ok(())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Every hsfs mount of this host: (mount point, state dir) from the
/// `hsfs:STATE_DIR` source field in /proc/self/mountinfo.
fn local_mounts() -> Vec<(String, PathBuf)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| {
            let (_, rest) = l.split_once(" - ")?;
            let mut f = rest.split(' ');
            let fstype = f.next()?;
            let source = f.next()?;
            if !fstype.starts_with("fuse") {
                return None;
            }
            let state = hsfs_tools::checks::unescape_mount(source.strip_prefix("hsfs:")?);
            let mp = hsfs_tools::checks::unescape_mount(l.split(' ').nth(4)?);
            Some((mp, PathBuf::from(state)))
        })
        .collect()
}

fn status_of(state_dir: &Path) -> Result<serde_json::Value> {
    if let Some(v) = control::request(state_dir, &json!({"cmd": "status"}))? {
        return Ok(v);
    }
    let e = Engine::open_dir(state_dir, &EngineOptions::default())?;
    let mut v = report::engine_status(&e);
    if let serde_json::Value::Object(m) = &mut v {
        m.insert("state_dir".into(), json!(state_dir.display().to_string()));
        m.insert("mounted".into(), json!(false));
    }
    Ok(v)
}

fn main() -> Result<()> {
    hsfs_tools::init_logging();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Init {
            state_dir,
            owner,
            mode,
        } => init(&state_dir, owner, &mode),
        Cmd::Mount {
            state_dir,
            mountpoint,
            read_only,
            allow_other,
            cache,
            ttl,
            threads,
            commit_window_us,
            commit_max_ops,
            commit_max_bytes,
            max_pending,
            reserve_mib,
            name,
        } => {
            if !(0.0..=86_400.0).contains(&ttl) {
                bail!("--ttl must be between 0 and 86400 seconds");
            }
            serve::run(serve::ServeArgs {
                state_dir: absolute(&state_dir),
                mountpoint: absolute(&mountpoint),
                read_only,
                allow_other,
                cache: match cache {
                    Cache::On => CacheMode::Cached {
                        ttl: Duration::from_secs_f64(ttl),
                    },
                    Cache::Off => CacheMode::Off,
                },
                threads,
                commit: CommitConfig {
                    window: Duration::from_micros(commit_window_us),
                    max_ops: commit_max_ops.max(1),
                    max_bytes: commit_max_bytes.max(1),
                    max_pending,
                    reserve_bytes: reserve_mib << 20,
                },
                worker: name.unwrap_or_else(host_name),
            })
        }
        Cmd::Status { state_dir, json } => {
            let dirs: Vec<PathBuf> = match state_dir {
                Some(d) => vec![absolute(&d)],
                None => {
                    let m = local_mounts();
                    if m.is_empty() {
                        bail!(
                            "no hsfs mount on this host; name a state directory: hsfs status STATE_DIR"
                        );
                    }
                    m.into_iter().map(|(_, s)| s).collect()
                }
            };
            let all: Vec<_> = dirs.iter().map(|d| status_of(d)).collect::<Result<_>>()?;
            if json {
                let v = if all.len() == 1 {
                    all[0].clone()
                } else {
                    json!(all)
                };
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for (i, v) in all.iter().enumerate() {
                    if i > 0 {
                        println!();
                    }
                    report::print_status(v);
                }
            }
            Ok(())
        }
        Cmd::Log {
            state_dir,
            tail,
            json,
        } => {
            let state_dir = absolute(&state_dir);
            let entries = match control::request(&state_dir, &json!({"cmd": "log", "tail": tail}))?
            {
                Some(serde_json::Value::Array(a)) => a,
                Some(_) => bail!("unexpected reply from the mount"),
                None => {
                    let e = Engine::open_dir(&state_dir, &EngineOptions::default())?;
                    report::log_json(&e, tail)?
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
                report::print_log(&entries);
            }
            Ok(())
        }
        Cmd::Env { scratch } => {
            // SAFETY: getuid has no preconditions.
            let uid = unsafe { libc::getuid() };
            let scratch =
                scratch.unwrap_or_else(|| PathBuf::from(format!("/var/tmp/hsfs-scratch-{uid}")));
            std::fs::create_dir_all(&scratch)
                .with_context(|| format!("creating {}", scratch.display()))?;
            let s = absolute(&scratch);
            let vars = [
                ("XDG_CACHE_HOME", "xdg-cache"),
                ("CARGO_TARGET_DIR", "cargo-target"),
                ("GOCACHE", "go-build"),
                ("GOMODCACHE", "go-mod"),
                ("npm_config_cache", "npm"),
                ("YARN_CACHE_FOLDER", "yarn"),
                ("PIP_CACHE_DIR", "pip"),
                ("UV_CACHE_DIR", "uv"),
                ("PYTHONPYCACHEPREFIX", "pycache"),
                ("MYPY_CACHE_DIR", "mypy"),
                ("RUFF_CACHE_DIR", "ruff"),
                ("SCCACHE_DIR", "sccache"),
                ("CCACHE_DIR", "ccache"),
                ("GRADLE_USER_HOME", "gradle"),
                ("TMPDIR", "tmp"),
            ];
            println!(
                "# hsfs: tool caches on local scratch ({}), not in the replicated workspace",
                s.display()
            );
            for (var, sub) in vars {
                let dir = s.join(sub);
                std::fs::create_dir_all(&dir)?;
                println!("export {var}='{}'", dir.display());
            }
            Ok(())
        }
    }
}
