//! `hsfs mount` in the embedded default: the leader (engine + commit
//! pipeline) and the FUSE mount in one process.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use hsfs_engine::commit::CommitConfig;
use hsfs_engine::op::Origin;
use hsfs_engine::{Engine, EngineOptions};
use hsfs_fs::mount::{MountOptions, mount};
use hsfs_fs::{CacheMode, Core, Embedded, FsConfig, OpenTable};
use serde_json::{Value, json};

use crate::control;
use crate::report;

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
    /// Commit pipeline settings.
    pub commit: CommitConfig,
    /// Worker name recorded in log entries.
    pub worker: String,
}

struct Live {
    engine: Engine,
    core: Arc<Core>,
    committer: Arc<Embedded>,
    args: ServeArgs,
}

impl control::Handler for Live {
    fn status(&self) -> Value {
        let mut v = report::engine_status(&self.engine);
        let stats = self.committer.pipeline().stats();
        let extra = json!({
            "role": "embedded leader + mount",
            "state_dir": self.args.state_dir.display().to_string(),
            "mountpoint": self.args.mountpoint.display().to_string(),
            "pid": std::process::id(),
            "read_only": self.core.committer().read_only(),
            "leader_reachable": true,
            "cache": match self.args.cache {
                CacheMode::Cached { ttl } => format!("cached, ttl {}s", ttl.as_secs_f64()),
                CacheMode::Off => "off".into(),
            },
            "open_handles": self.core.open_handles(),
            "kernel_inodes": self.core.known_inodes(),
            "commit": {
                "pending_intents": self.committer.pipeline().pending(),
                "batches": stats.batches.load(Ordering::Relaxed),
                "entries": stats.entries.load(Ordering::Relaxed),
                "barrier_flushes": stats.barrier_flushes.load(Ordering::Relaxed),
                "rejected_eagain": stats.rejected.load(Ordering::Relaxed),
            },
            "workers": [],
            "locks": "kernel-local (single host)",
        });
        if let (Value::Object(a), Value::Object(b)) = (&mut v, extra) {
            a.extend(b);
        }
        v
    }

    fn log(&self, tail: u64) -> Result<Value> {
        Ok(Value::Array(report::log_json(&self.engine, tail)?))
    }
}

/// Mounts and serves until Ctrl-C / SIGTERM or an external unmount; then
/// unmounts, drains the commit pipeline and closes the store durably.
pub fn run(args: ServeArgs) -> Result<()> {
    crate::checks::fuse_available()?;
    crate::checks::mountpoint_usable(&args.mountpoint)?;
    let engine = Engine::open_dir(&args.state_dir, &EngineOptions::default())
        .with_context(|| format!("opening state directory {}", args.state_dir.display()))?;
    if engine.is_poisoned() {
        anyhow::bail!("store is poisoned");
    }
    let opens = Arc::new(OpenTable::default());
    let committer = Arc::new(Embedded::start(
        engine.clone(),
        args.commit.clone(),
        opens.clone(),
        Origin {
            worker: args.worker.clone(),
            agent: String::new(),
        },
    ));
    if args.read_only {
        committer.set_read_only(true);
    }
    let core = Arc::new(Core::new(
        engine.clone(),
        committer.clone(),
        opens,
        FsConfig { cache: args.cache },
    ));
    if !args.read_only {
        let n = core
            .reclaim_stale_orphans()
            .map_err(|e| anyhow::anyhow!("reclaiming orphans: {e}"))?;
        if n > 0 {
            tracing::info!(orphans = n, "reclaimed files left open by the previous run");
        }
    }
    let opts = MountOptions {
        read_only: args.read_only,
        allow_other: args.allow_other,
        threads: args.threads,
        fsname: format!("hsfs:{}", args.state_dir.display()),
    };
    let mounted = mount(core.clone(), &args.mountpoint, &opts)
        .with_context(|| format!("mounting at {}", args.mountpoint.display()))?;
    let live = Arc::new(Live {
        engine: engine.clone(),
        core: core.clone(),
        committer: committer.clone(),
        args: args.clone(),
    });
    let server = control::Server::start(&args.state_dir, live)?;

    let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    let sig_handle = signals.handle();
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            let _ = stop_tx.send(());
        }
    });
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

    let external = mounted.wait(&stop_rx);
    sig_handle.close();
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
    // Every queued intent is committed (or failed) before the store closes.
    drop(core);
    match Arc::try_unwrap(committer) {
        Ok(mut c) => c.shutdown(),
        Err(_) => tracing::warn!("commit pipeline still referenced at shutdown"),
    }
    engine
        .backend()
        .commit(Vec::new(), true)
        .context("final sync of the store")?;
    drop(engine);
    println!("hsfs: unmounted {}", args.mountpoint.display());
    Ok(())
}
