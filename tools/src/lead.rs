//! `hsfs leader`: the leader of a multi-host workspace (no mount of its
//! own; the leader host uses the workspace through a worker mount).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use hsfs_engine::{Engine, EngineOptions};
use hsfs_replication::leader::{Leader, LeaderConfig};
use serde_json::{Value, json};

use crate::{control, report};

struct Live {
    engine: Engine,
    leader: Leader,
    state_dir: PathBuf,
}

impl control::Handler for Live {
    fn status(&self) -> Value {
        let mut v = report::engine_status(&self.engine);
        let stats = self.leader.pipeline().stats();
        let extra = json!({
            "role": "leader",
            "state_dir": self.state_dir.display().to_string(),
            "pid": std::process::id(),
            "read_only": false,
            "leader": self.leader.status(),
            "commit": {
                "pending_intents": self.leader.pipeline().pending(),
                "batches": stats.batches.load(Ordering::Relaxed),
                "entries": stats.entries.load(Ordering::Relaxed),
                "barrier_flushes": stats.barrier_flushes.load(Ordering::Relaxed),
                "rejected_eagain": stats.rejected.load(Ordering::Relaxed),
            },
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

/// Serves until Ctrl-C / SIGTERM.
pub fn run(state_dir: PathBuf, config: LeaderConfig) -> Result<()> {
    let engine = Engine::open_dir(&state_dir, &EngineOptions::default())
        .with_context(|| format!("opening state directory {}", state_dir.display()))?;
    crate::arm_failpoints(&engine)?;
    let leader = Leader::start(engine.clone(), &state_dir, config)
        .with_context(|| format!("starting the leader of {}", state_dir.display()))?;
    let addr: SocketAddr = leader.local_addr()?;
    let live = Arc::new(Live {
        engine: engine.clone(),
        leader,
        state_dir: state_dir.clone(),
    });
    let server = control::Server::start(&state_dir, live.clone())?;
    let stop = crate::signals::on_stop()?;
    println!(
        "hsfs: leader of workspace {} listening on {addr} (state {}); stop with Ctrl-C or kill -TERM {}",
        engine.workspace(),
        state_dir.display(),
        std::process::id()
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = stop.recv();
    tracing::info!("signal received; stopping the leader");
    drop(server);
    match Arc::try_unwrap(live) {
        Ok(l) => l.leader.shutdown(),
        Err(_) => tracing::warn!("leader state still referenced at shutdown"),
    }
    engine.backend().sync().context("final sync of the store")?;
    println!("hsfs: leader stopped");
    Ok(())
}
