//! `hsfs mount`: the FUSE mount, either with the embedded leader (engine
//! and commit pipeline in this process) or as a worker of a remote leader.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hsfs_engine::commit::CommitConfig;
use hsfs_engine::committer::Committer;
use hsfs_engine::op::Origin;
use hsfs_engine::{Engine, EngineOptions};
use hsfs_fs::mount::{MountOptions, mount};
use hsfs_fs::{CacheMode, Core, Embedded, FsConfig, OpenTable};
use hsfs_replication::tls::Bundle;
use hsfs_replication::worker::{Worker, WorkerConfig};
use serde_json::{Value, json};

use crate::control;
use crate::report;

/// Where mutations go.
#[derive(Clone, Debug)]
pub enum Role {
    /// Leader in this process.
    Embedded {
        /// Group commit settings.
        commit: CommitConfig,
    },
    /// Worker of a remote leader.
    Worker {
        /// Leader address.
        leader: String,
        /// Credentials bundle.
        bundle: PathBuf,
        /// Leader silence after which the mount turns read-only.
        leader_timeout: Duration,
        /// Deadline of an unresolved intent.
        mutation_deadline: Duration,
        /// Wait at start for the leader and the initial catch-up.
        connect_timeout: Duration,
    },
}

/// Settings of one mount.
#[derive(Clone, Debug)]
pub struct ServeArgs {
    /// State directory.
    pub state_dir: PathBuf,
    /// Mount point.
    pub mountpoint: PathBuf,
    /// Read-only mount.
    pub read_only: bool,
    /// allow_other.
    pub allow_other: bool,
    /// Kernel caching.
    pub cache: CacheMode,
    /// FUSE threads.
    pub threads: usize,
    /// Kernel readahead in KiB (0: the kernel's default).
    pub readahead_kib: u32,
    /// Name recorded in log entries.
    pub worker: String,
    /// Embedded leader or worker.
    pub role: Role,
}

enum Backend {
    Embedded(Arc<Embedded>),
    Worker(Worker),
}

struct Live {
    engine: Engine,
    core: Arc<Core>,
    backend: Backend,
    args: ServeArgs,
}

impl control::Handler for Live {
    fn status(&self) -> Value {
        let mut v = report::engine_status(&self.engine);
        let mut extra = json!({
            "state_dir": self.args.state_dir.display().to_string(),
            "mountpoint": self.args.mountpoint.display().to_string(),
            "pid": std::process::id(),
            "read_only": self.core.committer().read_only(),
            "cache": match self.args.cache {
                CacheMode::Cached { ttl } => format!("cached, ttl {}s", ttl.as_secs_f64()),
                CacheMode::Off => "off".into(),
            },
            "open_handles": self.core.open_handles(),
            "kernel_inodes": self.core.known_inodes(),
        });
        match &self.backend {
            Backend::Embedded(c) => {
                let stats = c.pipeline().stats();
                extra["role"] = json!("embedded leader + mount");
                extra["leader_reachable"] = json!(true);
                extra["locks"] = json!("kernel-local (single host)");
                extra["commit"] = json!({
                    "pending_intents": c.pipeline().pending(),
                    "batches": stats.batches.load(Ordering::Relaxed),
                    "entries": stats.entries.load(Ordering::Relaxed),
                    "barrier_flushes": stats.barrier_flushes.load(Ordering::Relaxed),
                    "rejected_eagain": stats.rejected.load(Ordering::Relaxed),
                });
            }
            Backend::Worker(w) => {
                let s = w.status();
                extra["role"] = json!("worker");
                extra["leader_reachable"] = json!(s.leader_epoch.is_some());
                extra["worker"] = json!(s);
            }
        }
        if let (Value::Object(a), Value::Object(b)) = (&mut v, extra) {
            a.extend(b);
        }
        v
    }

    fn log(&self, tail: u64) -> Result<Value> {
        Ok(Value::Array(report::log_json(&self.engine, tail)?))
    }
}

/// Opens the worker's replica, creating an empty one for a new worker.
fn open_replica(args: &ServeArgs, bundle: &Bundle) -> Result<Engine> {
    let ws = bundle.workspace_id()?;
    let fresh = match std::fs::read_dir(&args.state_dir) {
        Ok(mut d) => d.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(e).with_context(|| args.state_dir.display().to_string()),
    };
    let engine = if fresh {
        Engine::create_dir(&args.state_dir, ws, &EngineOptions::default())?
    } else {
        Engine::open_dir(&args.state_dir, &EngineOptions::default())?
    };
    if engine.workspace() != ws {
        bail!(
            "{} replicates workspace {}, but the bundle is for workspace {ws}",
            args.state_dir.display(),
            engine.workspace()
        );
    }
    Ok(engine)
}

/// Mounts and serves until Ctrl-C / SIGTERM or an external unmount; then
/// unmounts, drains what is in flight and closes the store durably.
pub fn run(args: ServeArgs) -> Result<()> {
    crate::checks::fuse_available()?;
    crate::checks::mountpoint_usable(&args.mountpoint)?;
    let opens = Arc::new(OpenTable::default());
    let fs_config = FsConfig {
        cache: args.cache,
        negative_entries: matches!(args.role, Role::Embedded { .. }),
        ..FsConfig::default()
    };
    let (engine, core, backend) = match &args.role {
        Role::Embedded { commit } => {
            let engine = Engine::open_dir(&args.state_dir, &EngineOptions::default())
                .with_context(|| format!("opening state directory {}", args.state_dir.display()))?;
            crate::arm_failpoints(&engine)?;
            let committer = Arc::new(Embedded::start(
                engine.clone(),
                commit.clone(),
                opens.clone(),
                Origin {
                    worker: args.worker.clone(),
                    agent: String::new(),
                },
            ));
            committer.set_read_only(args.read_only);
            let core = Arc::new(Core::new(
                engine.clone(),
                committer.clone(),
                opens.clone(),
                fs_config,
            ));
            if !args.read_only {
                let n = core
                    .reclaim_stale_orphans()
                    .map_err(|e| anyhow::anyhow!("reclaiming orphans: {e}"))?;
                if n > 0 {
                    tracing::info!(orphans = n, "reclaimed files left open by the previous run");
                }
            }
            (engine, core, Backend::Embedded(committer))
        }
        Role::Worker {
            leader,
            bundle,
            leader_timeout,
            mutation_deadline,
            connect_timeout,
        } => {
            let b = Bundle::load(bundle)?;
            let engine = open_replica(&args, &b)?;
            crate::arm_failpoints(&engine)?;
            let mut cfg = WorkerConfig::new(leader.clone(), args.worker.clone());
            cfg.journal = Some(args.state_dir.join("intents.log"));
            cfg.leader_timeout = *leader_timeout;
            cfg.mutation_deadline = *mutation_deadline;
            let worker = Worker::start(engine.clone(), &b, cfg)?;
            // A new replica has nothing to serve (not even the root) until it
            // has caught up; an existing one may serve its last state
            // read-only while the leader is away.
            if !worker.wait_caught_up(*connect_timeout) {
                if engine.applied_index() == 0 {
                    bail!(
                        "cannot reach the leader at {leader} and this replica is empty: {}",
                        worker.status().read_only_reason.unwrap_or_default()
                    );
                }
                tracing::warn!(leader = %leader, "leader unreachable: serving the local replica read-only");
            }
            let committer = worker.committer();
            {
                let c = committer.clone();
                opens.set_listener(Arc::new(move |ino, open| c.lease(ino, open)));
            }
            let core = Arc::new(Core::new(
                engine.clone(),
                committer.clone(),
                opens.clone(),
                fs_config,
            ));
            engine.add_listener(hsfs_fs::invalidate::remote_invalidations(
                &core,
                committer.client(),
            ));
            (engine, core, Backend::Worker(worker))
        }
    };
    let opts = MountOptions {
        read_only: args.read_only,
        allow_other: args.allow_other,
        threads: args.threads,
        readahead_kib: args.readahead_kib,
        fsname: format!("hsfs:{}", args.state_dir.display()),
    };
    let mounted = mount(core.clone(), &args.mountpoint, &opts)
        .with_context(|| format!("mounting at {}", args.mountpoint.display()))?;
    let live = Arc::new(Live {
        engine: engine.clone(),
        core: core.clone(),
        backend,
        args: args.clone(),
    });
    let server = control::Server::start(&args.state_dir, live.clone())?;

    let stop = crate::signals::on_stop()?;
    // The readiness line tests and scripts wait for.
    println!(
        "hsfs: mounted workspace {} at {} (state {}); stop with Ctrl-C, kill -TERM {}, or `fusermount3 -u {}`",
        engine.workspace(),
        args.mountpoint.display(),
        args.state_dir.display(),
        std::process::id(),
        args.mountpoint.display()
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();

    let external = mounted.wait(&stop);
    if external {
        tracing::info!("unmounted from outside; shutting down");
        drop(mounted);
    } else {
        tracing::info!("signal received; unmounting");
        if let Err(e) = mounted.unmount() {
            tracing::warn!(error = %e, "unmount");
        }
    }
    drop(server);
    drop(core);
    // Every queued intent is committed (or failed) before the store closes.
    match Arc::try_unwrap(live).map(|l| l.backend) {
        Ok(Backend::Embedded(c)) => match Arc::try_unwrap(c) {
            Ok(mut c) => c.shutdown(),
            Err(_) => tracing::warn!("commit pipeline still referenced at shutdown"),
        },
        Ok(Backend::Worker(w)) => w.shutdown(),
        Err(_) => tracing::warn!("mount state still referenced at shutdown"),
    }
    engine.backend().sync().context("final sync of the store")?;
    drop(engine);
    println!("hsfs: unmounted {}", args.mountpoint.display());
    Ok(())
}
