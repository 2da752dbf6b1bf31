//! The leader: owns the engine and its group-commit pipeline and serves
//! workers over QUIC.
//!
//! Per worker connection: a control stream (handshake, heartbeats both ways,
//! barriers, intent status, open-leases), one stream per intent (chunk
//! upload on demand, ack after the durable commit), one log stream (every
//! committed entry in order, with the bytes of small payloads) and fetch
//! streams for chunks a worker lacks.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hsfs_engine::chunks::Payload;
use hsfs_engine::commit::{CommitConfig, GroupCommit, OpenFiles, SystemClock};
use hsfs_engine::keys::Space;
use hsfs_engine::op::{Intent, LogEntry, Op, Origin};
use hsfs_engine::{ClientId, Engine, Errno, Ino, IntentId};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::leases::Leases;
use crate::tls;
use crate::wire::{
    self, ChunkData, ChunkPut, Hello, IntentFrame, IntentReply, IntentState, Limits, LogFrame,
    Open, ToLeader, ToWorker, WireError,
};

/// Leader settings.
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    /// Address to listen on (UDP).
    pub listen: SocketAddr,
    /// Group commit.
    pub commit: CommitConfig,
    /// Wire limits offered to workers.
    pub limits: Limits,
    /// How long a lost worker's open-leases survive.
    pub lease_ttl: Duration,
    /// Interval of leader heartbeats.
    pub heartbeat: Duration,
    /// Chunks of an entry whose payload is at most this big travel with it
    /// on the log stream.
    pub inline_log_max: usize,
}

impl LeaderConfig {
    /// Defaults for `listen`.
    #[must_use]
    pub fn new(listen: SocketAddr) -> LeaderConfig {
        LeaderConfig {
            listen,
            commit: CommitConfig::default(),
            limits: Limits::default(),
            lease_ttl: Duration::from_millis(15_000),
            heartbeat: Duration::from_millis(100),
            inline_log_max: 64 << 10,
        }
    }
}

/// What the leader knows of a worker (for `hsfs status`).
#[derive(Clone, Debug, Serialize)]
pub struct WorkerInfo {
    /// Worker name.
    pub name: String,
    /// Remote address.
    pub addr: String,
    /// Connected now.
    pub connected: bool,
    /// Its applied index.
    pub applied: u64,
    /// Entries behind the commit index.
    pub lag: u64,
    /// Whether it refuses mutations.
    pub read_only: bool,
    /// Chunks it still lacks.
    pub missing_chunks: u64,
    /// Entries received, not yet applied.
    pub pressure: u64,
    /// Its apply error, if any.
    pub last_error: Option<wire::ApplyErrorReport>,
    /// Seconds since its last message.
    pub silent_s: f64,
    /// Open-leases it holds.
    pub leases: usize,
    #[serde(skip)]
    last_seen: Option<Instant>,
}

struct Shared {
    engine: Engine,
    pipeline: GroupCommit,
    leases: Arc<Leases>,
    epoch: u64,
    config: LeaderConfig,
    /// Every committed entry, as it becomes durable (log streams follow it).
    entries: broadcast::Sender<Arc<LogEntry>>,
    inflight: Mutex<HashSet<IntentId>>,
    workers: Mutex<BTreeMap<String, WorkerInfo>>,
    client: ClientId,
    seq: AtomicU64,
}

/// Leader status.
#[derive(Clone, Debug, Serialize)]
pub struct LeaderStatus {
    /// Epoch of this leader process.
    pub leader_epoch: u64,
    /// Listening address.
    pub listen: String,
    /// Commit index.
    pub commit_index: u64,
    /// Intents queued or in flight in the pipeline.
    pub pending_intents: usize,
    /// Workers seen since start.
    pub workers: Vec<WorkerInfo>,
}

/// A running leader.
pub struct Leader {
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    rt: Option<tokio::runtime::Runtime>,
}

/// Leader start-up failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeaderError {
    /// Credentials.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// Socket or runtime.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Leader {
    /// Starts serving `engine` (opened from `state_dir`, which holds the
    /// workspace credentials).
    pub fn start(
        engine: Engine,
        state_dir: &std::path::Path,
        config: LeaderConfig,
    ) -> Result<Leader, LeaderError> {
        let (id, ca) = tls::leader_identity(state_dir)?;
        let server = tls::server_config(&id, &ca)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("hsfs-leader")
            .enable_all()
            .build()?;
        let endpoint = {
            let _g = rt.enter();
            quinn::Endpoint::server(server, config.listen)?
        };
        let leases = Arc::new(Leases::new(config.lease_ttl));
        let pipeline = GroupCommit::start(
            engine.clone(),
            config.commit.clone(),
            Arc::new(SystemClock),
            leases.clone() as Arc<dyn OpenFiles>,
        );
        let entries = broadcast::channel(4096).0;
        let shared = Arc::new(Shared {
            engine: engine.clone(),
            pipeline,
            leases,
            epoch: u64::from_le_bytes(hsfs_engine::random_bytes()),
            config,
            entries: entries.clone(),
            inflight: Mutex::new(HashSet::new()),
            workers: Mutex::new(BTreeMap::new()),
            client: ClientId::random(),
            seq: AtomicU64::new(0),
        });
        // The listener must not own the engine (through `shared`): that
        // would be a cycle keeping the store open forever.
        engine.add_listener(Arc::new(move |applied| {
            for a in applied {
                // No receiver (no worker connected) is fine.
                let _ = entries.send(a.entry.clone());
            }
        }));
        rt.spawn(accept(endpoint.clone(), shared.clone()));
        rt.spawn(sweep(shared.clone()));
        tracing::info!(listen = %endpoint.local_addr()?, epoch = shared.epoch, "leader serving");
        Ok(Leader {
            shared,
            endpoint,
            rt: Some(rt),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// The commit pipeline (stats).
    #[must_use]
    pub fn pipeline(&self) -> &GroupCommit {
        &self.shared.pipeline
    }

    /// Current status.
    #[must_use]
    pub fn status(&self) -> LeaderStatus {
        let commit_index = self.shared.engine.applied_index();
        let workers = self
            .shared
            .workers
            .lock()
            .values()
            .cloned()
            .map(|mut w| {
                w.lag = commit_index.saturating_sub(w.applied);
                w.silent_s = w
                    .last_seen
                    .map_or(f64::INFINITY, |t| t.elapsed().as_secs_f64());
                w.leases = self.shared.leases.count(&w.name);
                w
            })
            .collect();
        LeaderStatus {
            leader_epoch: self.shared.epoch,
            listen: self
                .endpoint
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            commit_index,
            pending_intents: self.shared.pipeline.pending(),
            workers,
        }
    }

    /// Stops serving: closes every connection, then drains the pipeline.
    pub fn shutdown(mut self) {
        self.endpoint
            .close(quinn::VarInt::from_u32(0), b"leader shutting down");
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
        match Arc::try_unwrap(self.shared) {
            Ok(mut s) => s.pipeline.shutdown(),
            Err(_) => tracing::warn!("leader state still referenced at shutdown"),
        }
    }
}

async fn accept(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    while let Some(incoming) = endpoint.accept().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            match incoming.await {
                Ok(conn) => {
                    if let Err(e) = serve(conn, shared).await {
                        tracing::info!(%remote, error = %e, "worker connection ended");
                    }
                }
                // A worker whose certificate is not from this workspace's
                // CA ends here.
                Err(e) => {
                    tracing::warn!(%remote, error = %e, "refused connection (TLS handshake failed)")
                }
            }
        });
    }
}

/// Validates a worker's handshake; `Err` is the refusal reason.
fn check_hello(shared: &Shared, h: &Hello) -> Result<(), String> {
    if h.protocol != wire::PROTOCOL {
        return Err(format!(
            "protocol {:?} is not supported: this leader speaks {}",
            h.protocol,
            wire::PROTOCOL
        ));
    }
    let ws = shared.engine.workspace();
    if h.workspace != ws {
        return Err(format!(
            "workspace mismatch: the worker replicates {}, this leader serves {ws}",
            h.workspace
        ));
    }
    let commit = shared.engine.applied_index();
    if h.applied > commit {
        return Err(format!(
            "the worker has applied index {} but the leader's log ends at {commit}: the replica is from another history",
            h.applied
        ));
    }
    if h.applied > 0 {
        let entry = shared
            .engine
            .log_range(h.applied, h.applied)
            .map_err(|e| format!("leader cannot read its log: {e}"))?;
        if entry.first().map(|e| e.root) != Some(h.root) {
            return Err(format!(
                "the worker's state at index {} differs from the leader's (Merkle roots differ): it diverged",
                h.applied
            ));
        }
    }
    Ok(())
}

async fn serve(conn: quinn::Connection, shared: Arc<Shared>) -> Result<(), WireError> {
    let max = shared.config.limits.max_frame;
    let (mut send, mut recv) = conn.accept_bi().await.map_err(std::io::Error::other)?;
    let Open::Control(hello) = wire::read::<Open>(&mut recv, max).await? else {
        conn.close(
            quinn::VarInt::from_u32(1),
            b"the first stream must be the control stream",
        );
        return Ok(());
    };
    if let Err(reason) = check_hello(&shared, &hello) {
        tracing::warn!(worker = %hello.worker, %reason, "refused worker");
        wire::write(&mut send, &ToWorker::Refused { reason }).await?;
        let _ = send.finish();
        let _ = send.stopped().await;
        conn.close(quinn::VarInt::from_u32(2), b"refused");
        return Ok(());
    }
    let limits = shared.config.limits.min(hello.limits);
    wire::write(
        &mut send,
        &ToWorker::Welcome {
            workspace: shared.engine.workspace(),
            leader_epoch: shared.epoch,
            commit_index: shared.engine.applied_index(),
            limits,
        },
    )
    .await?;
    let name = hello.worker.clone();
    tracing::info!(worker = %name, remote = %conn.remote_address(), applied = hello.applied, "worker connected");
    shared.workers.lock().insert(
        name.clone(),
        WorkerInfo {
            name: name.clone(),
            addr: conn.remote_address().to_string(),
            connected: true,
            applied: hello.applied,
            lag: 0,
            read_only: false,
            missing_chunks: 0,
            pressure: 0,
            last_error: None,
            silent_s: 0.0,
            leases: 0,
            last_seen: Some(Instant::now()),
        },
    );

    // Control writer: heartbeats and replies share the control stream.
    let (ctl_tx, mut ctl_rx) = mpsc::channel::<ToWorker>(256);
    let writer = tokio::spawn(async move {
        while let Some(m) = ctl_rx.recv().await {
            if wire::write(&mut send, &m).await.is_err() {
                break;
            }
        }
    });
    let hb = {
        let tx = ctl_tx.clone();
        let s = shared.clone();
        tokio::spawn(async move {
            let mut t = tokio::time::interval(s.config.heartbeat);
            loop {
                t.tick().await;
                let commit_index = s.engine.applied_index();
                if tx.send(ToWorker::Heartbeat { commit_index }).await.is_err() {
                    break;
                }
            }
        })
    };
    let control = {
        let s = shared.clone();
        let name = name.clone();
        tokio::spawn(async move { control_loop(s, name, recv, ctl_tx, limits).await })
    };
    let result = loop {
        let (send, recv) = match conn.accept_bi().await {
            Ok(x) => x,
            Err(e) => break Err(WireError::Io(std::io::Error::other(e))),
        };
        let s = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = stream(s, send, recv, limits).await {
                tracing::debug!(error = %e, "stream ended with an error");
            }
        });
    };
    hb.abort();
    control.abort();
    writer.abort();
    if let Some(w) = shared.workers.lock().get_mut(&name) {
        w.connected = false;
    }
    shared.leases.lost(&name);
    tracing::info!(worker = %name, "worker disconnected");
    result
}

async fn control_loop(
    shared: Arc<Shared>,
    name: String,
    mut recv: quinn::RecvStream,
    tx: mpsc::Sender<ToWorker>,
    limits: Limits,
) {
    loop {
        let msg = match wire::read::<ToLeader>(&mut recv, limits.max_frame).await {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(worker = %name, error = %e, "control stream ended");
                return;
            }
        };
        if let Some(w) = shared.workers.lock().get_mut(&name) {
            w.last_seen = Some(Instant::now());
        }
        let reply = match msg {
            ToLeader::Heartbeat {
                applied,
                read_only,
                missing_chunks,
                pressure,
                last_error,
            } => {
                if let Some(w) = shared.workers.lock().get_mut(&name) {
                    w.applied = applied;
                    w.read_only = read_only;
                    w.missing_chunks = missing_chunks;
                    w.pressure = pressure;
                    if last_error.is_some() && w.last_error != last_error {
                        tracing::error!(worker = %name, error = ?last_error, "worker reports an apply failure");
                    }
                    w.last_error = last_error;
                }
                None
            }
            ToLeader::Barrier { id } => Some(ToWorker::BarrierDone {
                id,
                commit_index: shared.engine.applied_index(),
            }),
            ToLeader::IntentStatus { id, intent } => {
                let state = if shared.inflight.lock().contains(&intent) {
                    IntentState::InFlight
                } else {
                    match shared.engine.dedupe(&intent) {
                        Ok(Some(ack)) => IntentState::Committed(ack),
                        Ok(None) => IntentState::NotFound,
                        Err(e) => {
                            tracing::error!(error = %e, "dedupe lookup failed");
                            IntentState::InFlight
                        }
                    }
                };
                Some(ToWorker::IntentStatus { id, state })
            }
            ToLeader::Leases { acquire, release } => {
                shared.leases.change(&name, &acquire, &release);
                for ino in release {
                    reclaim_if_free(&shared, ino);
                }
                None
            }
            ToLeader::LeaseRenew { open } => {
                shared.leases.renew(&name, &open);
                None
            }
        };
        if let Some(r) = reply
            && tx.send(r).await.is_err()
        {
            return;
        }
    }
}

/// Commits a `Reclaim` of an orphan no worker holds any more.
fn reclaim_if_free(shared: &Arc<Shared>, ino: Ino) {
    if shared.leases.is_open(ino) || !matches!(shared.engine.node(ino), Ok(Some(n)) if n.nlink == 0)
    {
        return;
    }
    let intent = Intent {
        id: IntentId {
            client: shared.client,
            seq: shared.seq.fetch_add(1, Ordering::Relaxed) + 1,
        },
        origin: Origin {
            worker: "leader".into(),
            agent: String::new(),
        },
        op: Op::Reclaim { ino },
    };
    shared.pipeline.submit(
        intent,
        Payload::none(),
        Box::new(move |r| {
            if let Err(e) = r
                && e != Errno::EINVAL
                && e != Errno::ENOENT
            {
                tracing::warn!(ino, error = %e, "orphan reclaim failed");
            }
        }),
    );
}

/// Expires the leases of lost workers and reclaims the orphans they freed;
/// once a lease TTL after start, reclaims orphans nobody renewed.
async fn sweep(shared: Arc<Shared>) {
    let start = Instant::now();
    let mut initial_done = false;
    let mut t = tokio::time::interval((shared.config.lease_ttl / 3).max(Duration::from_millis(10)));
    loop {
        t.tick().await;
        for ino in shared.leases.expire() {
            reclaim_if_free(&shared, ino);
        }
        if !initial_done && start.elapsed() >= shared.config.lease_ttl {
            initial_done = true;
            if let Ok(orphans) = shared.engine.orphans() {
                for ino in orphans {
                    reclaim_if_free(&shared, ino);
                }
            }
        }
    }
}

async fn stream(
    shared: Arc<Shared>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    limits: Limits,
) -> Result<(), WireError> {
    match wire::read::<Open>(&mut recv, limits.max_frame).await? {
        Open::Intent(frame) => intent(shared, send, recv, frame, limits).await,
        Open::Subscribe { from } => log(shared, send, from).await,
        Open::Fetch { hashes } => {
            if hashes.len() > limits.max_hashes as usize {
                return Ok(());
            }
            let engine = shared.engine.clone();
            let data = tokio::task::spawn_blocking(move || {
                hashes
                    .into_iter()
                    .map(|hash| ChunkData {
                        hash,
                        data: engine.chunk(&hash).ok().map(|v| v.to_vec()),
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(std::io::Error::other)?;
            for d in data {
                wire::write(&mut send, &d).await?;
            }
            let _ = send.finish();
            Ok(())
        }
        Open::Control(_) => Ok(()),
    }
}

async fn intent(
    shared: Arc<Shared>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    frame: IntentFrame,
    limits: Limits,
) -> Result<(), WireError> {
    let IntentFrame { intent, inline } = frame;
    let refs = intent.op.chunks().to_vec();
    let engine = shared.engine.clone();
    let done = move |r: Result<hsfs_engine::op::Ack, Errno>| match r {
        Ok(ack) => IntentReply::Done(Ok(ack)),
        // The failure was decided against a state at or before this index
        // (a batch's callbacks run once it is durable).
        Err(e) => IntentReply::Refused {
            errno: e.0,
            index: engine.applied_index(),
        },
    };
    if refs.len() > limits.max_hashes as usize || refs.iter().any(|r| r.len > limits.max_chunk) {
        wire::write(&mut send, &done(Err(Errno::EINVAL))).await?;
        return Ok(());
    }
    // A duplicate needs no upload: answer with the original ack.
    if let Ok(Some(ack)) = shared.engine.dedupe(&intent.id) {
        wire::write(&mut send, &done(Ok(ack))).await?;
        return Ok(());
    }
    let payload = if inline.is_empty() {
        let mut missing: Vec<_> = refs
            .iter()
            .map(|r| r.hash)
            .filter(|h| {
                !shared
                    .engine
                    .backend()
                    .contains(Space::Chunks, h)
                    .unwrap_or(false)
            })
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            wire::write(&mut send, &IntentReply::Need(missing.clone())).await?;
            let mut got = Vec::with_capacity(missing.len());
            for _ in 0..missing.len() {
                let p: ChunkPut = wire::read(&mut recv, limits.max_frame).await?;
                if missing.binary_search(&p.hash).is_err()
                    || p.data.len() > limits.max_chunk as usize
                {
                    wire::write(&mut send, &done(Err(Errno::EINVAL))).await?;
                    return Ok(());
                }
                got.push(p);
            }
            // Verified on ingress, off the async threads.
            let engine = shared.engine.clone();
            let bad = tokio::task::spawn_blocking(move || {
                engine.ingest_chunks(got.iter().map(|p| (p.hash, p.data.as_slice())))
            })
            .await
            .map_err(std::io::Error::other)?
            .map_err(std::io::Error::other)?;
            if !bad.is_empty() {
                wire::write(&mut send, &done(Err(Errno::EINVAL))).await?;
                return Ok(());
            }
        }
        Payload::none()
    } else {
        match Payload::verify(&refs, &inline) {
            Ok(p) => p,
            Err(e) => {
                wire::write(&mut send, &done(Err(e))).await?;
                return Ok(());
            }
        }
    };
    let id = intent.id;
    shared.inflight.lock().insert(id);
    let (tx, rx) = oneshot::channel();
    shared.pipeline.submit(
        intent,
        payload,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    let r = rx.await.unwrap_or(Err(Errno::EIO));
    shared.inflight.lock().remove(&id);
    wire::write(&mut send, &done(r)).await?;
    let _ = send.finish();
    Ok(())
}

async fn log(shared: Arc<Shared>, mut send: quinn::SendStream, from: u64) -> Result<(), WireError> {
    // Subscribe first, so nothing committed during the catch-up is missed.
    let mut live = shared.entries.subscribe();
    let mut next = from.max(1);
    let inline_max = shared.config.inline_log_max;
    loop {
        // Catch up from the store to the commit index.
        loop {
            let commit = shared.engine.applied_index();
            if next > commit {
                break;
            }
            let to = (next + 255).min(commit);
            let engine = shared.engine.clone();
            let frames =
                tokio::task::spawn_blocking(move || log_frames(&engine, next, to, inline_max))
                    .await
                    .map_err(std::io::Error::other)??;
            for f in &frames {
                wire::write(&mut send, f).await?;
            }
            next = to + 1;
        }
        // Then follow commits as they happen, straight from memory.
        loop {
            match live.recv().await {
                Ok(e) if e.index < next => {}
                Ok(e) if e.index == next => {
                    let f = frame(&shared.engine, (*e).clone(), inline_max)?;
                    wire::write(&mut send, &f).await?;
                    next += 1;
                }
                // Missed entries (a gap or a lagging receiver): back to the
                // store.
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => break,
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            }
        }
    }
}

/// A log frame: the entry, plus the bytes of its chunks when small.
fn frame(engine: &Engine, entry: LogEntry, inline_max: usize) -> Result<LogFrame, std::io::Error> {
    let chunks = if entry.op.payload_len() <= inline_max {
        entry
            .op
            .chunks()
            .iter()
            .map(|c| {
                Ok((
                    c.hash,
                    engine
                        .chunk(&c.hash)
                        .map_err(std::io::Error::other)?
                        .to_vec(),
                ))
            })
            .collect::<Result<_, std::io::Error>>()?
    } else {
        Vec::new()
    };
    Ok(LogFrame { entry, chunks })
}

fn log_frames(
    engine: &Engine,
    from: u64,
    to: u64,
    inline_max: usize,
) -> Result<Vec<LogFrame>, std::io::Error> {
    let entries = engine.log_range(from, to).map_err(std::io::Error::other)?;
    entries
        .into_iter()
        .map(|e| frame(engine, e, inline_max))
        .collect()
}
