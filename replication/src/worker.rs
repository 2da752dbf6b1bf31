//! The worker: a replica engine fed by the leader's log, and a network
//! [`Committer`] that sends this mount's mutations to the leader.
//!
//! States: *connected* (mutations go to the leader), *catching up*
//! (connected, applied index behind the leader), *read-only* (leader
//! unreachable, or a local apply failed: mutations fail with EROFS at once,
//! reads continue from the last applied state, nothing is queued).
//!
//! An intent whose answer was lost with the connection is *in doubt*: after
//! reconnecting the worker asks the leader (`IntentStatus`) and either takes
//! the original ack or sends the intent again with the same id. Unresolved
//! after the mutation deadline (30 s), the syscall gets EIO.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hsfs_engine::chunks::Payload;
use hsfs_engine::commit::Done;
use hsfs_engine::committer::Committer;
use hsfs_engine::keys::Space;
use hsfs_engine::op::{Ack, Intent, Op, Origin};
use hsfs_engine::{ClientId, Engine, Errno, Hash, Ino, IntentId, ReplayError};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use crate::journal::Journal;
use crate::tls::{self, Bundle};
use crate::wire::{
    self, ApplyErrorReport, ChunkData, ChunkPut, Hello, IntentFrame, IntentReply, IntentState,
    Limits, LogFrame, Open, ToLeader, ToWorker,
};

/// Worker settings.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Leader address (host:port).
    pub leader: String,
    /// This worker's name.
    pub name: String,
    /// Wire limits asked for.
    pub limits: Limits,
    /// Interval of worker heartbeats.
    pub heartbeat: Duration,
    /// No message from the leader for this long: the leader is unreachable
    /// and the mount turns read-only.
    pub leader_timeout: Duration,
    /// Path-based mutations first catch up to the last commit index heard;
    /// when the leader has been silent this long, they ask it first.
    pub stale_after: Duration,
    /// An intent still unresolved after this fails with EIO.
    pub mutation_deadline: Duration,
    /// Open-leases are renewed this often.
    pub lease_renew: Duration,
    /// Journal of intents in flight (`STATE_DIR/intents.log`), so a
    /// restarted worker can resolve what its predecessor left in doubt.
    pub journal: Option<std::path::PathBuf>,
}

impl WorkerConfig {
    /// Defaults for a leader address and worker name.
    #[must_use]
    pub fn new(leader: String, name: String) -> WorkerConfig {
        WorkerConfig {
            leader,
            name,
            limits: Limits::default(),
            heartbeat: Duration::from_millis(100),
            leader_timeout: Duration::from_millis(1000),
            stale_after: Duration::from_millis(250),
            mutation_deadline: Duration::from_secs(30),
            lease_renew: Duration::from_secs(5),
            journal: None,
        }
    }
}

/// A live connection to the leader.
#[derive(Clone)]
struct Session {
    conn: quinn::Connection,
    ctl: mpsc::Sender<ToLeader>,
    limits: Limits,
    epoch: u64,
    waiters: Arc<Mutex<HashMap<u64, oneshot::Sender<ToWorker>>>>,
}

/// Progress of the apply thread, published to waiting intents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Applied {
    index: u64,
    failed: bool,
}

struct Shared {
    engine: Engine,
    config: WorkerConfig,
    client: ClientId,
    seq: AtomicU64,
    req: AtomicU64,
    session: Mutex<Option<Session>>,
    connected: watch::Sender<bool>,
    /// Why the last connection attempt failed or ended.
    disconnect_reason: Mutex<Option<String>>,
    /// An apply failure: the mount stays read-only until restarted.
    apply_error: Mutex<Option<ApplyErrorReport>>,
    applied: Arc<watch::Sender<Applied>>,
    commit_seen: AtomicU64,
    last_news: Mutex<Instant>,
    open: Mutex<BTreeSet<Ino>>,
    pending_frames: AtomicU64,
    missing_chunks: AtomicU64,
    in_doubt: AtomicU64,
    journal: Option<Journal>,
    /// Intents a previous process left unanswered, still to resolve.
    to_resolve: Mutex<Vec<(IntentId, String)>>,
    /// Their outcomes.
    recovered: Mutex<Vec<Recovered>>,
}

/// What became of an intent a previous worker process left unanswered.
#[derive(Clone, Debug, Serialize)]
pub struct Recovered {
    /// The intent.
    pub intent: String,
    /// Its op.
    pub op: String,
    /// Log index it committed at, or `None` if it never committed.
    pub committed_at_index: Option<u64>,
}

/// Worker status (for `hsfs status`).
#[derive(Clone, Debug, Serialize)]
pub struct WorkerStatus {
    /// connected / catching-up / read-only.
    pub state: String,
    /// Why read-only, if so.
    pub read_only_reason: Option<String>,
    /// Leader address.
    pub leader: String,
    /// Leader epoch of the current connection.
    pub leader_epoch: Option<u64>,
    /// Last commit index heard from the leader.
    pub commit_index_seen: u64,
    /// Applied index.
    pub applied_index: u64,
    /// Entries behind.
    pub lag: u64,
    /// Received entries not yet applied.
    pub pending_entries: u64,
    /// Intents whose outcome is being resolved after a lost connection.
    pub in_doubt_intents: u64,
    /// Apply failure, if any.
    pub last_apply_error: Option<ApplyErrorReport>,
    /// Intents of a previous process of this worker, resolved after restart.
    pub recovered_intents: Vec<Recovered>,
}

/// A running worker.
pub struct Worker {
    shared: Arc<Shared>,
    rt: Option<tokio::runtime::Runtime>,
    apply: Option<std::thread::JoinHandle<()>>,
}

/// Worker start-up failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// Credentials.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// Runtime or socket.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The bundle is for another workspace than the state directory.
    #[error("the bundle is for workspace {bundle}, the state directory holds {state}")]
    Workspace {
        /// Bundle's workspace.
        bundle: String,
        /// State directory's workspace.
        state: String,
    },
}

fn resolve(addr: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    addr.to_socket_addrs()
        .map_err(|e| format!("cannot resolve leader address {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("leader address {addr} resolves to nothing"))
}

impl Worker {
    /// Starts replicating into `engine` and connecting to the leader.
    pub fn start(
        engine: Engine,
        bundle: &Bundle,
        config: WorkerConfig,
    ) -> Result<Worker, WorkerError> {
        let ws = bundle.workspace_id()?;
        if ws != engine.workspace() {
            return Err(WorkerError::Workspace {
                bundle: ws.to_string(),
                state: engine.workspace().to_string(),
            });
        }
        let (journal, to_resolve) = match &config.journal {
            Some(p) => {
                let (j, left) = Journal::open(p)?;
                if !left.is_empty() {
                    tracing::warn!(
                        count = left.len(),
                        "intents of the previous process are in doubt; resolving them with the leader"
                    );
                }
                (Some(j), left)
            }
            None => (None, Vec::new()),
        };
        let (id, ca) = bundle.identity()?;
        let client_cfg = tls::client_config(&id, &ca)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("hsfs-worker")
            .enable_all()
            .build()?;
        let endpoint = {
            let _g = rt.enter();
            let mut ep = quinn::Endpoint::client("0.0.0.0:0".parse().expect("addr"))?;
            ep.set_default_client_config(client_cfg);
            ep
        };
        let applied = Arc::new(
            watch::channel(Applied {
                index: engine.applied_index(),
                failed: false,
            })
            .0,
        );
        let (connected, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            engine: engine.clone(),
            config,
            client: ClientId::random(),
            seq: AtomicU64::new(0),
            req: AtomicU64::new(0),
            session: Mutex::new(None),
            connected,
            disconnect_reason: Mutex::new(Some("connecting".into())),
            apply_error: Mutex::new(None),
            applied: applied.clone(),
            commit_seen: AtomicU64::new(0),
            last_news: Mutex::new(Instant::now()),
            open: Mutex::new(BTreeSet::new()),
            pending_frames: AtomicU64::new(0),
            missing_chunks: AtomicU64::new(0),
            in_doubt: AtomicU64::new(0),
            journal,
            to_resolve: Mutex::new(to_resolve),
            recovered: Mutex::new(Vec::new()),
        });
        // The listener must not own the engine (through `shared`): that
        // would be a cycle keeping the store open forever.
        engine.add_listener(Arc::new(move |batch| {
            if let Some(last) = batch.last() {
                applied.send_modify(|a| a.index = last.entry.index);
            }
        }));
        let (frames_tx, frames_rx) = crossbeam_channel::unbounded::<LogFrame>();
        let apply = {
            let s = shared.clone();
            let h = rt.handle().clone();
            std::thread::Builder::new()
                .name("hsfs-apply".into())
                .spawn(move || apply_loop(&s, &h, &frames_rx))?
        };
        rt.spawn(connection_loop(shared.clone(), endpoint, frames_tx));
        Ok(Worker {
            shared,
            rt: Some(rt),
            apply: Some(apply),
        })
    }

    /// The committer a mount of this worker uses.
    #[must_use]
    pub fn committer(&self) -> Arc<NetCommitter> {
        Arc::new(NetCommitter {
            shared: self.shared.clone(),
            rt: self.rt.as_ref().expect("running").handle().clone(),
        })
    }

    /// Reports an open-lease transition of this mount (0 -> 1: `open`).
    pub fn lease(&self, ino: Ino, open: bool) {
        lease_changed(&self.shared, ino, open);
    }

    /// Waits until connected (or `timeout`); tests and start-up.
    pub fn wait_connected(&self, timeout: Duration) -> bool {
        let mut rx = self.shared.connected.subscribe();
        self.rt.as_ref().expect("running").block_on(async {
            tokio::time::timeout(timeout, rx.wait_for(|c| *c))
                .await
                .is_ok()
        })
    }

    /// Waits until connected and caught up with the commit index the
    /// leader announced (or `timeout`).
    pub fn wait_caught_up(&self, timeout: Duration) -> bool {
        let s = &self.shared;
        let mut connected = s.connected.subscribe();
        let mut applied = s.applied.subscribe();
        self.rt.as_ref().expect("running").block_on(async {
            tokio::time::timeout(timeout, async {
                let _ = connected.wait_for(|c| *c).await;
                let target = s.commit_seen.load(Ordering::Acquire);
                applied
                    .wait_for(|a| a.failed || a.index >= target)
                    .await
                    .is_ok_and(|a| !a.failed)
            })
            .await
            .unwrap_or(false)
        })
    }

    /// Current status.
    #[must_use]
    pub fn status(&self) -> WorkerStatus {
        let s = &self.shared;
        let applied = s.engine.applied_index();
        let commit = s.commit_seen.load(Ordering::Acquire);
        let err = s.apply_error.lock().clone();
        let session = s.session.lock().clone();
        let reason = match (&err, &session) {
            (Some(e), _) => Some(format!("apply failed at index {}: {}", e.index, e.message)),
            (None, None) => Some(
                s.disconnect_reason
                    .lock()
                    .clone()
                    .unwrap_or_else(|| "leader unreachable".into()),
            ),
            (None, Some(_)) => None,
        };
        let state = match (&reason, applied < commit) {
            (Some(_), _) => "read-only",
            (None, true) => "catching-up",
            (None, false) => "connected",
        };
        WorkerStatus {
            state: state.into(),
            read_only_reason: reason,
            leader: s.config.leader.clone(),
            leader_epoch: session.map(|x| x.epoch),
            commit_index_seen: commit,
            applied_index: applied,
            lag: commit.saturating_sub(applied),
            pending_entries: s.pending_frames.load(Ordering::Relaxed),
            in_doubt_intents: s.in_doubt.load(Ordering::Relaxed),
            last_apply_error: err,
            recovered_intents: s.recovered.lock().clone(),
        }
    }

    /// Closes the connection and stops replicating.
    pub fn shutdown(mut self) {
        if let Some(sess) = self.shared.session.lock().take() {
            sess.conn
                .close(quinn::VarInt::from_u32(0), b"worker shutting down");
        }
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
        // The apply thread ends when the connection task's sender is gone.
        if let Some(t) = self.apply.take() {
            let _ = t.join();
        }
    }
}

fn lease_changed(s: &Arc<Shared>, ino: Ino, open: bool) {
    {
        let mut set = s.open.lock();
        if open {
            set.insert(ino);
        } else {
            set.remove(&ino);
        }
    }
    if let Some(sess) = s.session.lock().clone() {
        let msg = if open {
            ToLeader::Leases {
                acquire: vec![ino],
                release: vec![],
            }
        } else {
            ToLeader::Leases {
                acquire: vec![],
                release: vec![ino],
            }
        };
        // A full control queue drops the event: the periodic renewal sends
        // the whole set anyway.
        let _ = sess.ctl.try_send(msg);
    }
}

/// Connects, serves the session until it ends, reconnects with backoff.
async fn connection_loop(
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    frames: crossbeam_channel::Sender<LogFrame>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        match session(&shared, &endpoint, &frames).await {
            Ok(reason) => {
                backoff = Duration::from_millis(50);
                tracing::warn!(%reason, "lost the leader; read-only until reconnected");
                *shared.disconnect_reason.lock() = Some(reason);
            }
            Err(reason) => {
                tracing::warn!(%reason, "cannot reach the leader");
                *shared.disconnect_reason.lock() = Some(reason);
            }
        }
        *shared.session.lock() = None;
        shared.connected.send_replace(false);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// One connection: handshake, then serve until it breaks. `Ok(reason)`
/// after a session ran, `Err(reason)` if it never got going.
async fn session(
    shared: &Arc<Shared>,
    endpoint: &quinn::Endpoint,
    frames: &crossbeam_channel::Sender<LogFrame>,
) -> Result<String, String> {
    let cfg = &shared.config;
    let addr = resolve(&cfg.leader)?;
    let conn = endpoint
        .connect(addr, tls::LEADER_NAME)
        .map_err(|e| format!("connect to {addr}: {e}"))?
        .await
        .map_err(|e| format!("connection to the leader at {addr} failed: {e} (a certificate from another workspace fails here)"))?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    let applied = shared.engine.applied_index();
    let root = shared.engine.status().meta.root;
    let hello = Hello {
        protocol: wire::PROTOCOL.into(),
        workspace: shared.engine.workspace(),
        worker: cfg.name.clone(),
        client: shared.client,
        applied,
        root,
        features: vec![],
        limits: cfg.limits,
    };
    wire::write(&mut send, &Open::Control(hello))
        .await
        .map_err(|e| e.to_string())?;
    let (epoch, commit_index, limits) =
        match wire::read::<ToWorker>(&mut recv, cfg.limits.max_frame).await {
            Ok(ToWorker::Welcome {
                workspace,
                leader_epoch,
                commit_index,
                limits,
            }) if workspace == shared.engine.workspace() => (leader_epoch, commit_index, limits),
            Ok(ToWorker::Welcome { workspace, .. }) => {
                return Err(format!("leader serves workspace {workspace}, not ours"));
            }
            Ok(ToWorker::Refused { reason }) => {
                return Err(format!("the leader refused this worker: {reason}"));
            }
            Ok(other) => return Err(format!("unexpected handshake reply {other:?}")),
            Err(e) => return Err(format!("handshake failed: {e}")),
        };
    shared.commit_seen.fetch_max(commit_index, Ordering::AcqRel);
    *shared.last_news.lock() = Instant::now();
    let (ctl_tx, mut ctl_rx) = mpsc::channel::<ToLeader>(1024);
    let sess = Session {
        conn: conn.clone(),
        ctl: ctl_tx.clone(),
        limits,
        epoch,
        waiters: Arc::new(Mutex::new(HashMap::new())),
    };
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(async move {
        while let Some(m) = ctl_rx.recv().await {
            if wire::write(&mut send, &m).await.is_err() {
                break;
            }
        }
    });
    {
        let s = shared.clone();
        let waiters = sess.waiters.clone();
        tasks.spawn(async move {
            while let Ok(m) = wire::read::<ToWorker>(&mut recv, limits.max_frame).await {
                *s.last_news.lock() = Instant::now();
                match m {
                    ToWorker::Heartbeat { commit_index } => {
                        s.commit_seen.fetch_max(commit_index, Ordering::AcqRel);
                    }
                    ToWorker::BarrierDone { id, .. } | ToWorker::IntentStatus { id, .. } => {
                        if let ToWorker::BarrierDone { commit_index, .. } = &m {
                            s.commit_seen.fetch_max(*commit_index, Ordering::AcqRel);
                        }
                        if let Some(w) = waiters.lock().remove(&id) {
                            let _ = w.send(m);
                        }
                    }
                    ToWorker::Welcome { .. } | ToWorker::Refused { .. } => {}
                }
            }
        });
    }
    {
        // Heartbeats, lease renewals, and the leader-silence watchdog.
        let s = shared.clone();
        let conn = conn.clone();
        let ctl = ctl_tx.clone();
        tasks.spawn(async move {
            let mut t = tokio::time::interval(s.config.heartbeat);
            let mut last_renew = Instant::now() - s.config.lease_renew;
            loop {
                t.tick().await;
                if s.last_news.lock().elapsed() > s.config.leader_timeout {
                    conn.close(quinn::VarInt::from_u32(3), b"leader silent");
                    break;
                }
                let last_error = s.apply_error.lock().clone();
                let hb = ToLeader::Heartbeat {
                    applied: s.engine.applied_index(),
                    read_only: last_error.is_some(),
                    missing_chunks: s.missing_chunks.load(Ordering::Relaxed),
                    pressure: s.pending_frames.load(Ordering::Relaxed),
                    last_error,
                };
                if ctl.send(hb).await.is_err() {
                    break;
                }
                if last_renew.elapsed() >= s.config.lease_renew {
                    last_renew = Instant::now();
                    let open: Vec<Ino> = s.open.lock().iter().copied().collect();
                    if ctl.send(ToLeader::LeaseRenew { open }).await.is_err() {
                        break;
                    }
                }
            }
        });
    }
    {
        // The log: every committed entry after what we applied, in order.
        let s = shared.clone();
        let conn = conn.clone();
        let frames = frames.clone();
        tasks.spawn(async move {
            let Ok((mut send, mut recv)) = conn.open_bi().await else {
                return;
            };
            let from = s.engine.applied_index() + 1;
            if wire::write(&mut send, &Open::Subscribe { from })
                .await
                .is_err()
            {
                return;
            }
            while let Ok(f) = wire::read::<LogFrame>(&mut recv, limits.max_frame).await {
                s.commit_seen.fetch_max(f.entry.index, Ordering::AcqRel);
                s.pending_frames.fetch_add(1, Ordering::Relaxed);
                if frames.send(f).is_err() {
                    break;
                }
            }
        });
    }
    {
        // Intents a previous process left in doubt.
        let s = shared.clone();
        let sess = sess.clone();
        tasks.spawn(async move { resolve_previous(&s, &sess).await });
    }
    *shared.session.lock() = Some(sess);
    *shared.disconnect_reason.lock() = None;
    shared.connected.send_replace(true);
    tracing::info!(leader = %addr, epoch, commit_index, applied, "connected to the leader");
    let reason = conn.closed().await.to_string();
    *shared.session.lock() = None;
    shared.connected.send_replace(false);
    tasks.abort_all();
    Ok(reason)
}

/// Asks the leader about intents a previous process of this worker left
/// unanswered and records what became of them.
async fn resolve_previous(shared: &Arc<Shared>, sess: &Session) {
    loop {
        let Some((id, op)) = shared.to_resolve.lock().first().cloned() else {
            return;
        };
        let state = match request(sess, shared, |r| ToLeader::IntentStatus {
            id: r,
            intent: id,
        })
        .await
        {
            Some(ToWorker::IntentStatus { state, .. }) => state,
            _ => return, // connection lost: the next session retries
        };
        let committed_at_index = match state {
            IntentState::Committed(ack) => Some(ack.index),
            IntentState::NotFound => None,
            IntentState::InFlight => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        tracing::info!(intent = ?id, %op, ?committed_at_index, "resolved an intent of the previous process");
        shared.to_resolve.lock().retain(|(i, _)| *i != id);
        shared.recovered.lock().push(Recovered {
            intent: format!("{}:{}", hex::encode(id.client.0), id.seq),
            op,
            committed_at_index,
        });
    }
}

/// The network committer of a worker mount.
pub struct NetCommitter {
    shared: Arc<Shared>,
    rt: tokio::runtime::Handle,
}

impl NetCommitter {
    /// Reports an open-lease transition of this mount.
    pub fn lease(&self, ino: Ino, open: bool) {
        lease_changed(&self.shared, ino, open);
    }
}

impl Committer for NetCommitter {
    fn submit(&self, op: Op, chunks: Payload, done: Done) {
        if self.read_only() {
            done(Err(Errno::EROFS));
            return;
        }
        // Keep our own chunks: the entry coming back needs no fetch.
        if !chunks.is_empty() {
            let pieces = chunks.pieces().iter().map(|(h, d)| (*h, d.as_ref()));
            if let Err(e) = self.shared.engine.ingest_chunks(pieces) {
                tracing::warn!(error = %e, "could not keep chunks locally");
            }
        }
        let intent = Intent {
            id: IntentId {
                client: self.shared.client,
                seq: self.shared.seq.fetch_add(1, Ordering::Relaxed) + 1,
            },
            origin: Origin {
                worker: self.shared.config.name.clone(),
                agent: String::new(),
            },
            op,
        };
        let shared = self.shared.clone();
        if let Some(j) = &shared.journal {
            j.sent(intent.id, intent.op.name());
        }
        self.rt.spawn(async move {
            let deadline = tokio::time::Instant::now() + shared.config.mutation_deadline;
            let r = match tokio::time::timeout_at(deadline, drive(&shared, &intent, &chunks)).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::error!(intent = ?intent.id, "intent unresolved past the mutation deadline");
                    Err(Errno::EIO)
                }
            };
            if let Some(j) = &shared.journal {
                j.done(intent.id);
            }
            done(r);
        });
    }

    fn read_only(&self) -> bool {
        self.shared.apply_error.lock().is_some() || self.shared.session.lock().is_none()
    }

    fn client(&self) -> ClientId {
        self.shared.client
    }

    fn reclaims_orphans(&self) -> bool {
        false
    }
}

/// Ops resolved by (parent, name) at the leader: they first catch up.
fn path_based(op: &Op) -> bool {
    matches!(
        op,
        Op::Create { .. }
            | Op::Mkdir { .. }
            | Op::Symlink { .. }
            | Op::Link { .. }
            | Op::Unlink { .. }
            | Op::Rmdir { .. }
            | Op::Rename { .. }
    )
}

fn current(shared: &Shared) -> Option<Session> {
    shared.session.lock().clone()
}

async fn request(
    sess: &Session,
    shared: &Shared,
    make: impl FnOnce(u64) -> ToLeader,
) -> Option<ToWorker> {
    let id = shared.req.fetch_add(1, Ordering::Relaxed) + 1;
    let (tx, rx) = oneshot::channel();
    sess.waiters.lock().insert(id, tx);
    if sess.ctl.send(make(id)).await.is_err() {
        sess.waiters.lock().remove(&id);
        return None;
    }
    rx.await.ok()
}

/// Waits until this replica applied `index` (read-your-writes); EIO if
/// apply has failed.
async fn wait_applied(shared: &Shared, index: u64) -> Result<(), Errno> {
    let mut rx = shared.applied.subscribe();
    let a = rx
        .wait_for(|a| a.failed || a.index >= index)
        .await
        .map_err(|_| Errno::EIO)?;
    if a.index >= index {
        Ok(())
    } else {
        Err(Errno::EIO)
    }
}

/// The freshness barrier of path-based mutations.
async fn barrier(shared: &Shared, sess: &Session) -> Result<(), Errno> {
    let mut target = shared.commit_seen.load(Ordering::Acquire);
    if shared.last_news.lock().elapsed() > shared.config.stale_after
        && let Some(ToWorker::BarrierDone { commit_index, .. }) =
            request(sess, shared, |id| ToLeader::Barrier { id }).await
    {
        target = target.max(commit_index);
    }
    wait_applied(shared, target).await
}

/// Sends an intent and follows it to its ack, through reconnects.
async fn drive(shared: &Arc<Shared>, intent: &Intent, payload: &Payload) -> Result<Ack, Errno> {
    let Some(sess) = current(shared) else {
        return Err(Errno::EROFS);
    };
    if path_based(&intent.op) {
        barrier(shared, &sess).await?;
    }
    let mut sess = sess;
    let mut in_doubt = false;
    loop {
        if in_doubt {
            match request(&sess, shared, |id| ToLeader::IntentStatus {
                id,
                intent: intent.id,
            })
            .await
            {
                Some(ToWorker::IntentStatus {
                    state: IntentState::Committed(ack),
                    ..
                }) => {
                    shared.in_doubt.fetch_sub(1, Ordering::Relaxed);
                    wait_applied(shared, ack.index).await?;
                    return Ok(ack);
                }
                Some(ToWorker::IntentStatus {
                    state: IntentState::InFlight,
                    ..
                }) => {
                    // The leader is committing it right now: ask again.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                Some(ToWorker::IntentStatus {
                    state: IntentState::NotFound,
                    ..
                }) => {
                    shared.in_doubt.fetch_sub(1, Ordering::Relaxed);
                    in_doubt = false;
                }
                _ => {
                    sess = reconnected(shared).await;
                    continue;
                }
            }
        }
        match send_intent(&sess, shared, intent, payload).await {
            Ok(Ok(ack)) => {
                wait_applied(shared, ack.index).await?;
                return Ok(ack);
            }
            Ok(Err((e, index))) => {
                // Read-your-failures: what made it fail is visible here
                // before the syscall returns.
                wait_applied(shared, index).await?;
                return Err(e);
            }
            Err(()) => {
                // The answer is lost: committed or not, only the leader
                // knows. Resolve after reconnecting.
                if !in_doubt {
                    shared.in_doubt.fetch_add(1, Ordering::Relaxed);
                }
                in_doubt = true;
                sess = reconnected(shared).await;
            }
        }
    }
}

/// Waits for the next session.
async fn reconnected(shared: &Shared) -> Session {
    let mut rx = shared.connected.subscribe();
    loop {
        if let Some(s) = current(shared)
            && s.conn.close_reason().is_none()
        {
            return s;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// One attempt on one connection: `Err(())` if the connection failed
/// before the answer came.
async fn send_intent(
    sess: &Session,
    shared: &Shared,
    intent: &Intent,
    payload: &Payload,
) -> Result<Result<Ack, (Errno, u64)>, ()> {
    let (mut send, mut recv) = sess.conn.open_bi().await.map_err(|_| ())?;
    let inline = if !payload.is_empty() && payload.len() <= sess.limits.inline_max as usize {
        payload.pieces().iter().map(|(_, d)| d.to_vec()).collect()
    } else {
        Vec::new()
    };
    wire::write(
        &mut send,
        &Open::Intent(IntentFrame {
            intent: intent.clone(),
            inline,
        }),
    )
    .await
    .map_err(|_| ())?;
    loop {
        match wire::read::<IntentReply>(&mut recv, sess.limits.max_frame)
            .await
            .map_err(|_| ())?
        {
            IntentReply::Done(r) => {
                // Test hook: die between the leader's ack and the syscall's
                // return (the "kill -9 between intent and ack" case).
                shared.engine.failpoints().hit("worker.ack_received");
                return Ok(r.map_err(|e| (Errno(e), 0)));
            }
            IntentReply::Refused { errno, index } => {
                shared.engine.failpoints().hit("worker.ack_received");
                return Ok(Err((Errno(errno), index)));
            }
            IntentReply::Need(hashes) => {
                for h in hashes {
                    let data = match payload.pieces().iter().find(|(ph, _)| *ph == h) {
                        Some((_, d)) => d.to_vec(),
                        None => match shared.engine.chunk(&h) {
                            Ok(d) => d.to_vec(),
                            // We cannot produce it: fail the intent.
                            Err(_) => return Ok(Err((Errno::EIO, 0))),
                        },
                    };
                    wire::write(&mut send, &ChunkPut { hash: h, data })
                        .await
                        .map_err(|_| ())?;
                }
            }
        }
    }
}

/// Fetches chunks from the leader (called from the apply thread).
async fn fetch(shared: &Shared, hashes: Vec<Hash>) -> Result<Vec<ChunkData>, ()> {
    let sess = reconnected(shared).await;
    let mut out = Vec::with_capacity(hashes.len());
    for group in hashes.chunks(sess.limits.max_hashes as usize) {
        let (mut send, mut recv) = sess.conn.open_bi().await.map_err(|_| ())?;
        wire::write(
            &mut send,
            &Open::Fetch {
                hashes: group.to_vec(),
            },
        )
        .await
        .map_err(|_| ())?;
        for _ in group {
            out.push(
                wire::read::<ChunkData>(&mut recv, sess.limits.max_frame)
                    .await
                    .map_err(|_| ())?,
            );
        }
    }
    Ok(out)
}

/// The apply thread: ingests chunks, fetches what is missing, replays
/// entries strictly in order. A failure stops apply at the entry before
/// and turns the mount read-only.
fn apply_loop(
    shared: &Arc<Shared>,
    rt: &tokio::runtime::Handle,
    rx: &crossbeam_channel::Receiver<LogFrame>,
) {
    let engine = &shared.engine;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < 256 {
            match rx.try_recv() {
                Ok(f) => batch.push(f),
                Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        if shared.apply_error.lock().is_some() {
            shared.pending_frames.fetch_sub(n, Ordering::Relaxed);
            continue;
        }
        // Frames of an earlier connection may repeat entries already applied.
        let applied = engine.applied_index();
        batch.retain(|f| f.entry.index > applied);
        let result = apply_batch(shared, rt, &batch);
        shared.pending_frames.fetch_sub(n, Ordering::Relaxed);
        if let Err(e) = result {
            tracing::error!(error = %e, "apply failed; this mount is read-only now");
            *shared.apply_error.lock() = Some(ApplyErrorReport {
                index: e.index(),
                errno: e.errno().0,
                message: e.to_string(),
            });
            shared.applied.send_modify(|a| a.failed = true);
        }
    }
}

fn apply_batch(
    shared: &Shared,
    rt: &tokio::runtime::Handle,
    batch: &[LogFrame],
) -> Result<(), ReplayError> {
    let engine = &shared.engine;
    let Some(first) = batch.first() else {
        return Ok(());
    };
    let io = |e: hsfs_engine::EngineError| ReplayError::Engine {
        index: first.entry.index,
        source: e,
    };
    // Chunks that came with the entries (verified on ingest).
    let mut corrupt: BTreeSet<Hash> = engine
        .ingest_chunks(
            batch
                .iter()
                .flat_map(|f| f.chunks.iter().map(|(h, d)| (*h, d.as_slice()))),
        )
        .map_err(io)?
        .into_iter()
        .collect();
    let mut missing: Vec<Hash> = batch
        .iter()
        .flat_map(|f| f.entry.op.chunks().iter().map(|c| c.hash))
        .filter(|h| !engine.backend().contains(Space::Chunks, h).unwrap_or(false))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    shared
        .missing_chunks
        .store(missing.len() as u64, Ordering::Relaxed);
    while !missing.is_empty() {
        // Blocks this thread until the leader answers (after a reconnect
        // if need be); the FUSE threads keep serving reads meanwhile.
        match rt.block_on(fetch(shared, missing.clone())) {
            Ok(got) => {
                let present: Vec<(Hash, Vec<u8>)> = got
                    .into_iter()
                    .filter_map(|c| c.data.map(|d| (c.hash, d)))
                    .collect();
                corrupt.extend(
                    engine
                        .ingest_chunks(present.iter().map(|(h, d)| (*h, d.as_slice())))
                        .map_err(io)?,
                );
                missing.retain(|h| !engine.backend().contains(Space::Chunks, h).unwrap_or(false));
                if !missing.is_empty() {
                    let index = batch
                        .iter()
                        .find(|f| {
                            f.entry
                                .op
                                .chunks()
                                .iter()
                                .any(|c| missing.contains(&c.hash))
                        })
                        .map_or(first.entry.index, |f| f.entry.index);
                    return Err(ReplayError::Chunk {
                        index,
                        hash: missing[0],
                        why: if corrupt.contains(&missing[0]) {
                            "is corrupt (hash mismatch)"
                        } else {
                            "is missing at the leader"
                        },
                    });
                }
            }
            Err(()) => continue,
        }
    }
    shared.missing_chunks.store(0, Ordering::Relaxed);
    engine.replay(batch.iter().map(|f| &f.entry), 256, false)?;
    Ok(())
}
