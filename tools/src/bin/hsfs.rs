//! `hsfs`: create, mount and inspect hsfs workspaces.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use hsfs_engine::{Engine, EngineOptions, WorkspaceId};
use hsfs_fs::CacheMode;
use hsfs_replication::leader::LeaderConfig;
use hsfs_replication::tls::WorkspaceCa;
use hsfs_tools::{absolute, control, report, serve, settings};
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

/// Mount flags; each overrides the config file.
#[derive(clap::Args)]
struct MountFlags {
    /// Mount read-only.
    #[arg(long)]
    read_only: bool,
    /// Let users other than the mounting one use the mount.
    #[arg(long)]
    allow_other: bool,
    /// Kernel caching.
    #[arg(long, value_enum)]
    cache: Option<Cache>,
    /// Entry and attribute timeout with --cache on, in seconds.
    #[arg(long)]
    ttl: Option<f64>,
    /// FUSE request threads.
    #[arg(long)]
    threads: Option<usize>,
    /// Kernel readahead of the mount in KiB (0 keeps the kernel's 128).
    #[arg(long)]
    readahead_kib: Option<u32>,
    /// Name of this mount in log entries (default: the host name).
    #[arg(long)]
    name: Option<String>,
}

/// Group-commit flags; each overrides the config file.
#[derive(clap::Args)]
struct CommitFlags {
    /// Group commit window in microseconds.
    #[arg(long)]
    commit_window_us: Option<u64>,
    /// Most intents per group commit.
    #[arg(long)]
    commit_max_ops: Option<usize>,
    /// Most payload bytes per group commit.
    #[arg(long)]
    commit_max_bytes: Option<usize>,
    /// Pending intents past which mutations get EAGAIN.
    #[arg(long)]
    max_pending: Option<usize>,
    /// Free space (MiB) the store's filesystem keeps; commits that would go
    /// below it fail with ENOSPC.
    #[arg(long)]
    reserve_mib: Option<u64>,
}

impl CommitFlags {
    fn apply(&self, c: &mut settings::Commit) {
        set(&mut c.window_us, self.commit_window_us);
        set(&mut c.max_ops, self.commit_max_ops);
        set(&mut c.max_bytes, self.commit_max_bytes);
        set(&mut c.max_pending, self.max_pending);
        set(&mut c.reserve_mib, self.reserve_mib);
    }
}

fn set<T>(slot: &mut T, v: Option<T>) {
    if let Some(v) = v {
        *slot = v;
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a new workspace in STATE_DIR (which must be absent or empty),
    /// with its certificate authority for multi-host use.
    Init {
        /// State directory.
        state_dir: PathBuf,
        /// Owner of the root directory as UID:GID (default: the caller).
        #[arg(long)]
        owner: Option<String>,
        /// Permission bits of the root directory (octal).
        #[arg(long, default_value = "755")]
        mode: String,
        /// Size of each of the two commit-journal files in MiB; 0 makes a
        /// store without one, which then syncs fjall's own journal per
        /// commit (slower; for comparisons).
        #[arg(long, default_value_t = 32)]
        journal_mib: u64,
    },
    /// Issue credentials for a worker (run where the leader's state is).
    Join {
        /// The leader's state directory.
        state_dir: PathBuf,
        /// Worker name.
        #[arg(long)]
        name: String,
        /// Where to write the bundle (contains a private key; mode 0600).
        #[arg(long)]
        out: PathBuf,
        /// Leader address to record in the bundle.
        #[arg(long)]
        leader: Option<String>,
    },
    /// Run the leader of a multi-host workspace.
    Leader {
        /// State directory (from `hsfs init`).
        state_dir: PathBuf,
        /// Address to listen on (UDP), e.g. 0.0.0.0:7878.
        #[arg(long)]
        listen: Option<String>,
        /// TOML config file (see docs/OPERATIONS.md).
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        commit: CommitFlags,
    },
    /// Mount a workspace (foreground): with the embedded leader, or as a
    /// worker of a remote leader (--leader and --join).
    Mount {
        /// State directory (a worker creates its replica there if empty).
        state_dir: PathBuf,
        /// Mount point (an existing empty directory).
        mountpoint: PathBuf,
        /// Leader address: mount as a worker.
        #[arg(long, requires = "join")]
        leader: Option<String>,
        /// Worker credentials from `hsfs join`.
        #[arg(long)]
        join: Option<PathBuf>,
        /// Seconds a worker waits at start for the leader and its initial
        /// catch-up.
        #[arg(long)]
        connect_timeout: Option<u64>,
        /// TOML config file (see docs/OPERATIONS.md).
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        mount: MountFlags,
        #[command(flatten)]
        commit: CommitFlags,
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

fn init(state_dir: &Path, owner: Option<String>, mode: &str, journal_mib: u64) -> Result<()> {
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
        &EngineOptions {
            journal_bytes: (journal_mib > 0).then_some(journal_mib << 20),
            ..EngineOptions::default()
        },
    )?;
    drop(e);
    WorkspaceCa::create(state_dir, ws)?;
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
    hsfs_tools::tune_malloc();
    hsfs_tools::init_logging();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Init {
            state_dir,
            owner,
            mode,
            journal_mib,
        } => init(&state_dir, owner, &mode, journal_mib),
        Cmd::Join {
            state_dir,
            name,
            out,
            leader,
        } => {
            let ws = hsfs_engine::statedir::StateDir::peek(&state_dir)?;
            let ca = WorkspaceCa::load(&state_dir, ws)?;
            ca.issue_worker(&name, leader)?.save(&out)?;
            println!(
                "hsfs: wrote credentials of worker {name} for workspace {ws} to {}",
                out.display()
            );
            Ok(())
        }
        Cmd::Leader {
            state_dir,
            listen,
            config,
            commit,
        } => {
            let mut st = settings::Settings::load(config.as_deref())?;
            commit.apply(&mut st.commit);
            set(&mut st.leader.listen, listen);
            let addr = st
                .leader
                .listen
                .parse()
                .with_context(|| format!("--listen {}: not an address", st.leader.listen))?;
            let mut cfg = LeaderConfig::new(addr);
            cfg.commit = st.commit.config();
            cfg.lease_ttl = Duration::from_millis(st.leader.lease_ttl_ms);
            hsfs_tools::lead::run(absolute(&state_dir), cfg)
        }
        Cmd::Mount {
            state_dir,
            mountpoint,
            leader,
            join,
            connect_timeout,
            config,
            mount,
            commit,
        } => {
            let mut st = settings::Settings::load(config.as_deref())?;
            commit.apply(&mut st.commit);
            let m = &mut st.mount;
            m.read_only |= mount.read_only;
            m.allow_other |= mount.allow_other;
            if let Some(c) = mount.cache {
                m.cache = match c {
                    Cache::On => "on".into(),
                    Cache::Off => "off".into(),
                };
            }
            set(&mut m.ttl_s, mount.ttl);
            set(&mut m.threads, mount.threads);
            set(&mut m.readahead_kib, mount.readahead_kib);
            if mount.name.is_some() {
                m.name = mount.name;
            }
            if leader.is_some() {
                st.worker.leader = leader;
            }
            if join.is_some() {
                st.worker.join = join;
            }
            set(&mut st.worker.connect_timeout_s, connect_timeout);
            if !(0.0..=86_400.0).contains(&st.mount.ttl_s) {
                bail!("the entry timeout must be between 0 and 86400 seconds");
            }
            let cache = match st.mount.cache.as_str() {
                "on" => CacheMode::Cached {
                    ttl: Duration::from_secs_f64(st.mount.ttl_s),
                },
                "off" => CacheMode::Off,
                other => bail!("cache must be \"on\" or \"off\", not {other:?}"),
            };
            let role = match (st.worker.leader.clone(), st.worker.join.clone()) {
                (Some(leader), Some(bundle)) => serve::Role::Worker {
                    leader,
                    bundle: absolute(&bundle),
                    leader_timeout: Duration::from_millis(st.worker.leader_timeout_ms),
                    mutation_deadline: Duration::from_secs(st.worker.mutation_deadline_s),
                    connect_timeout: Duration::from_secs(st.worker.connect_timeout_s),
                },
                (None, None) => serve::Role::Embedded {
                    commit: st.commit.config(),
                },
                _ => bail!(
                    "a worker mount needs both the leader address and the credentials bundle (--leader and --join)"
                ),
            };
            serve::run(serve::ServeArgs {
                state_dir: absolute(&state_dir),
                mountpoint: absolute(&mountpoint),
                read_only: st.mount.read_only,
                allow_other: st.mount.allow_other,
                cache,
                threads: st.mount.threads,
                readahead_kib: st.mount.readahead_kib,
                worker: st.mount.name.clone().unwrap_or_else(host_name),
                role,
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
