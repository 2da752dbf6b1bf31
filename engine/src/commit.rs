//! The leader's commit pipeline: group commit of intents into the op log.
//!
//! One thread owns the engine's writer. It takes the next intent and
//! gathers whatever else is queued (up to `max_ops` / `max_bytes`) into one
//! transaction, applying each intent as it is gathered (the first ones are
//! applied while the batch still waits for the others), writes the batch
//! with ONE durable journal sync, runs the engine's listeners and only then
//! completes every intent of the batch.
//!
//! Batching never adds latency to a lone writer: with nothing else queued
//! the batch is written at once. When the previous batch held several
//! intents (many writers are active) it lingers up to `window` for as many
//! again. An fsync barrier ends the batch at once.
//!
//! Completion is a callback, so a FUSE request waiting for its commit does
//! not hold a thread: the reply is sent from this thread.
//!
//! With [`CommitConfig::inline_when_idle`] an intent submitted while
//! nothing is queued or in flight is committed on the submitting thread
//! instead, saving the hand-off to the commit thread and its wake-up (tens
//! of microseconds on a VM, a sizeable part of a lone writer's latency).
//! Only callers that may block for a durable write can use it: the FUSE
//! threads of the embedded mount may (at most one of them commits at a
//! time, the others queue), the leader's async tasks may not.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use parking_lot::Mutex;

use crate::apply::Fail;
use crate::chunks::Payload;
use crate::engine::{Batch, Engine};
use crate::errno::Errno;
use crate::keys::{self, Space};
use crate::op::{Ack, Intent, Op};
use crate::records;
use crate::types::{Ino, Nanos};

/// Source of commit timestamps.
pub trait Clock: Send + Sync {
    /// Current time in nanoseconds since the epoch.
    fn now(&self) -> Nanos;
}

/// The system wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Nanos {
        crate::util::now_nanos()
    }
}

/// A clock tests set by hand.
#[derive(Debug, Default)]
pub struct ManualClock(pub AtomicI64);

impl Clock for ManualClock {
    fn now(&self) -> Nanos {
        self.0.load(Ordering::Relaxed)
    }
}

/// Which nodes are open somewhere (open-leases). The leader consults it
/// when an unlink or a replacing rename drops a node's last link: an open
/// node becomes an orphan instead of being deleted.
pub trait OpenFiles: Send + Sync {
    /// Whether `ino` is open on any mount.
    fn is_open(&self, ino: Ino) -> bool;
}

/// No node is ever open (tools, tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoneOpen;

impl OpenFiles for NoneOpen {
    fn is_open(&self, _: Ino) -> bool {
        false
    }
}

/// Group commit settings (SPEC 5). All are named settings of the config.
#[derive(Clone, Debug)]
pub struct CommitConfig {
    /// Longest time a batch waits for more intents once several writers
    /// are active.
    pub window: Duration,
    /// Most intents per batch.
    pub max_ops: usize,
    /// Most payload bytes per batch.
    pub max_bytes: usize,
    /// Intents queued past this bound are refused with EAGAIN.
    pub max_pending: usize,
    /// Free space the store's filesystem must keep; commits that would dip
    /// below fail with ENOSPC before anything is written.
    pub reserve_bytes: u64,
    /// Commit on the submitting thread when the pipeline is idle (see the
    /// module documentation). Off by default.
    pub inline_when_idle: bool,
}

impl Default for CommitConfig {
    fn default() -> Self {
        CommitConfig {
            window: Duration::from_millis(1),
            max_ops: 100,
            max_bytes: 1 << 20,
            max_pending: 10_000,
            reserve_bytes: 64 << 20,
            inline_when_idle: false,
        }
    }
}

/// Completion callback of a submitted intent.
pub type Done = Box<dyn FnOnce(Result<Ack, Errno>) + Send>;

struct Submission {
    intent: Intent,
    chunks: Payload,
    done: Done,
    bytes: usize,
}

/// Counters of the pipeline.
#[derive(Debug, Default)]
pub struct CommitStats {
    /// Durable batch writes that added log entries.
    pub batches: AtomicU64,
    /// Log entries committed.
    pub entries: AtomicU64,
    /// Intents answered (any outcome).
    pub answered: AtomicU64,
    /// Batches the commit thread closed at an fsync barrier.
    pub barrier_flushes: AtomicU64,
    /// Intents refused with EAGAIN.
    pub rejected: AtomicU64,
}

/// The group-commit pipeline under its descriptive name.
pub type GroupCommit = Committer;

/// Handle to the commit thread.
pub struct Committer {
    tx: Option<Sender<Submission>>,
    /// The writer: held by the commit thread while it gathers and writes a
    /// batch, or by a submitting thread committing inline. Released (with
    /// its engine handle) by [`Committer::shutdown`].
    pipeline: Option<Arc<Mutex<Pipeline>>>,
    pending: Arc<AtomicUsize>,
    stats: Arc<CommitStats>,
    config: CommitConfig,
    thread: Option<JoinHandle<()>>,
}

impl Committer {
    /// Starts the commit thread over `engine`.
    pub fn start(
        engine: Engine,
        config: CommitConfig,
        clock: Arc<dyn Clock>,
        open: Arc<dyn OpenFiles>,
    ) -> Committer {
        let (tx, rx) = crossbeam_channel::unbounded();
        let pending = Arc::new(AtomicUsize::new(0));
        let stats = Arc::new(CommitStats::default());
        let pipeline = Arc::new(Mutex::new(Pipeline {
            engine,
            config: config.clone(),
            clock,
            open,
            pending: pending.clone(),
            stats: stats.clone(),
            crashed: false,
            last_batch: 1,
        }));
        let worker = pipeline.clone();
        let thread = std::thread::Builder::new()
            .name("hsfs-commit".into())
            .spawn(move || Pipeline::run(&worker, &rx))
            .expect("spawn commit thread");
        Committer {
            tx: Some(tx),
            pipeline: Some(pipeline),
            pending,
            stats,
            config,
            thread: Some(thread),
        }
    }

    /// Queues an intent; `done` runs on the commit thread once the intent is
    /// durable (or failed). `chunks` carries the bytes of a write's chunks
    /// when the caller has them (already hashed, see [`Payload`]); without
    /// them every referenced chunk must already be stored.
    pub fn submit(&self, intent: Intent, chunks: Payload, done: Done) {
        let before = self.pending.fetch_add(1, Ordering::AcqRel);
        if before >= self.config.max_pending {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            done(Err(Errno::EAGAIN));
            return;
        }
        let bytes = intent.op.payload_len() + 64;
        let sub = Submission {
            intent,
            chunks,
            done,
            bytes,
        };
        // Idle: nothing queued or in flight (the commit thread decrements
        // `pending` only after answering its batch), so the writer is
        // free unless the commit thread is between batches; then queue.
        // Only for a lone writer: when the last batch held several intents,
        // the others are about to submit again and should share one batch
        // on the commit thread rather than wait behind an inline commit.
        if self.config.inline_when_idle
            && before == 0
            && let Some(mut p) = self.pipeline.as_ref().and_then(|p| p.try_lock())
            && p.last_batch <= 1
        {
            let replies = p.process(sub, &mut |_| None);
            let crashed = p.crashed;
            drop(p);
            answer(&self.pending, &self.stats, replies, crashed);
            return;
        }
        match &self.tx {
            Some(tx) => {
                if let Err(e) = tx.send(sub) {
                    self.pending.fetch_sub(1, Ordering::AcqRel);
                    (e.into_inner().done)(Err(Errno::EIO));
                }
            }
            None => (sub.done)(Err(Errno::EIO)),
        }
    }

    /// Submits and waits for the outcome.
    pub fn commit(&self, intent: Intent, chunks: Payload) -> Result<Ack, Errno> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.submit(
            intent,
            chunks,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        // A crashed pipeline drops the callback unanswered: the caller sees
        // an I/O error, as a client of a dead leader would.
        rx.recv().unwrap_or(Err(Errno::EIO))
    }

    /// Intents queued or in flight.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Pipeline counters.
    #[must_use]
    pub fn stats(&self) -> &CommitStats {
        &self.stats
    }

    /// The settings in force.
    #[must_use]
    pub fn config(&self) -> &CommitConfig {
        &self.config
    }

    /// Completes everything queued, then stops the thread.
    pub fn shutdown(&mut self) {
        self.tx = None;
        self.pipeline = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Pipeline {
    engine: Engine,
    config: CommitConfig,
    clock: Arc<dyn Clock>,
    open: Arc<dyn OpenFiles>,
    pending: Arc<AtomicUsize>,
    stats: Arc<CommitStats>,
    /// A failpoint simulated a crash: nothing more is written or answered.
    crashed: bool,
    /// Intents in the last batch written: more than one means several
    /// writers are active (the next batch lingers for as many again, and
    /// nothing is committed inline).
    last_batch: usize,
}

/// Outcome of applying one submission inside a batch.
type Reply = (Done, Result<Ack, Errno>);

/// What an open batch holds so far, for the gathering policy.
#[derive(Default)]
struct Gathered {
    /// Submissions handed over.
    count: usize,
    /// Their payload bytes (with a per-intent allowance).
    bytes: usize,
    /// The last one is an fsync barrier: the batch ends with it.
    barrier: bool,
}

/// Answers a processed batch and counts it out of `pending`. A simulated
/// crash drops the callbacks unanswered.
fn answer(pending: &AtomicUsize, stats: &CommitStats, replies: Vec<Reply>, crashed: bool) {
    let n = replies.len();
    if crashed {
        drop(replies);
    } else {
        for (done, r) in replies {
            done(r);
        }
        stats.answered.fetch_add(n as u64, Ordering::Relaxed);
    }
    pending.fetch_sub(n, Ordering::AcqRel);
}

impl Pipeline {
    fn run(shared: &Mutex<Pipeline>, rx: &Receiver<Submission>) {
        while let Ok(first) = rx.recv() {
            // Gather while holding the writer: an idle-path submitter that
            // finds it taken queues, and joins this batch.
            let mut p = shared.lock();
            let config = p.config.clone();
            let deadline = Instant::now() + config.window;
            let target = p.last_batch.min(config.max_ops);
            let (pending, stats) = (p.pending.clone(), p.stats.clone());
            let mut more = |g: &Gathered| -> Option<Submission> {
                if g.barrier {
                    stats.barrier_flushes.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                if g.count >= config.max_ops || g.bytes >= config.max_bytes {
                    return None;
                }
                match rx.try_recv() {
                    Ok(s) => Some(s),
                    Err(TryRecvError::Disconnected) => None,
                    Err(TryRecvError::Empty) if g.count >= target => None,
                    Err(TryRecvError::Empty) => rx.recv_deadline(deadline).ok(),
                }
            };
            let replies = p.process(first, &mut more);
            p.last_batch = replies.len();
            // A simulated crash (process death) drops the callbacks
            // unanswered; `process` refuses everything that follows.
            let crashed = p.crashed;
            drop(p);
            answer(&pending, &stats, replies, crashed);
        }
    }

    /// Commits one batch: `first`, then each submission `more` hands over
    /// while the batch is open (`None` closes it). Each intent is applied
    /// as soon as it is handed over, so the intents that arrive first are
    /// applied while the batch waits for the others: with several writers
    /// the batch's apply work overlaps their turnaround instead of
    /// following it. Every submission handed over gets exactly one reply.
    fn process(
        &mut self,
        first: Submission,
        more: &mut dyn FnMut(&Gathered) -> Option<Submission>,
    ) -> Vec<Reply> {
        if self.crashed || self.engine.is_poisoned() {
            return vec![(first.done, Err(Errno::EIO))];
        }
        // Free space, read once per batch: intents that would take the
        // store's filesystem below the reserve are refused before anything
        // is written, so the store never hits ENOSPC half way through a
        // journal write.
        let free = self.engine.backend().free_space();
        let engine = self.engine.clone();
        let mut b = match engine.batch() {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot start a batch");
                return vec![(first.done, Err(e.errno()))];
            }
        };
        let fp = engine.failpoints();
        let mut replies = Vec::new();
        let mut g = Gathered::default();
        let mut next = Some(first);
        while let Some(sub) = next.take() {
            g.count += 1;
            g.bytes += sub.bytes;
            g.barrier = matches!(sub.intent.op, Op::Fsync { .. });
            let room = free.is_none_or(|f| f >= self.config.reserve_bytes + 2 * g.bytes as u64);
            if fp.hit("commit.before_apply") {
                self.crashed = true;
                replies.push((sub.done, Err(Errno::EIO)));
            } else {
                match self.commit_one(&mut b, &sub, room) {
                    Ok(r) => replies.push((sub.done, r)),
                    Err(fatal) => {
                        tracing::error!(error = %fatal, "batch abandoned");
                        replies.push((sub.done, Err(Errno::EIO)));
                        drop(b);
                        return replies
                            .into_iter()
                            .map(|(d, _)| (d, Err(Errno::EIO)))
                            .collect();
                    }
                }
                if fp.hit("commit.after_apply") {
                    self.crashed = true;
                }
            }
            if !room {
                // The batch ends here: what is queued behind gets a fresh
                // reading of the free space in the next one.
                tracing::warn!(
                    free,
                    reserve = self.config.reserve_bytes,
                    "store filesystem full: refusing commits"
                );
                break;
            }
            // After a simulated crash nothing more is gathered: what is
            // still queued is refused by the next batch.
            if !self.crashed {
                next = more(&g);
            }
        }
        if self.crashed {
            return replies;
        }
        let entries_in_batch = b.len() as u64;
        match b.finish(true) {
            Ok(_) if entries_in_batch == 0 => {} // no log entry: not a batch of the log
            Ok(_) => {
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .entries
                    .fetch_add(entries_in_batch, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::error!(error = %e, "durable batch write failed");
                let errno = match &e {
                    crate::engine::EngineError::Store(crate::store::StoreError::Io(io))
                        if io.raw_os_error() == Some(libc::ENOSPC) =>
                    {
                        Errno::ENOSPC
                    }
                    _ => Errno::EIO,
                };
                return replies.into_iter().map(|(d, _)| (d, Err(errno))).collect();
            }
        }
        if fp.hit("commit.after_write") {
            // Durable, but the acks die with the "process".
            self.crashed = true;
        }
        replies
    }

    /// Applies one intent; without `room` (the store's filesystem is too
    /// full) only a duplicate is answered, with its stored ack, and
    /// anything else gets ENOSPC. `Ok(Err(errno))`: the intent fails, the
    /// batch goes on. `Err`: the batch must be abandoned.
    fn commit_one(
        &self,
        b: &mut Batch<'_>,
        sub: &Submission,
        room: bool,
    ) -> Result<Result<Ack, Errno>, Fail> {
        let intent = &sub.intent;
        if let Some(ack) = b.dedupe(&intent.id).map_err(engine_fail)? {
            return Ok(Ok(ack));
        }
        if !room {
            return Ok(Err(Errno::ENOSPC));
        }
        if intent.origin.worker.len() > 255 || intent.origin.agent.len() > 255 {
            return Ok(Err(Errno::EINVAL));
        }
        if matches!(intent.op, Op::Genesis { .. }) {
            return Ok(Err(Errno::EPERM));
        }
        let refs = intent.op.chunks();
        if !sub.chunks.is_empty() {
            if !sub.chunks.matches(refs) {
                return Ok(Err(Errno::EINVAL));
            }
            for (hash, data) in sub.chunks.pieces() {
                if !b.has_chunk(hash).map_err(engine_fail)? {
                    b.put_chunk(*hash, data.clone());
                }
            }
        } else {
            for r in refs {
                if !b.has_chunk(&r.hash).map_err(engine_fail)? {
                    tracing::warn!(chunk = %hex::encode(r.hash), "intent references a chunk the leader lacks");
                    return Ok(Err(Errno::EIO));
                }
            }
        }
        let resolved = Intent {
            op: resolve(b, &intent.op, &*self.open)?,
            ..intent.clone()
        };
        let now = self.clock.now().max(b.meta().last_time + 1);
        match b.commit_intent(&resolved, now) {
            Ok(ack) => Ok(Ok(ack)),
            Err(Fail::Errno(e)) => Ok(Err(e)),
            Err(f) => Err(f),
        }
    }
}

fn engine_fail(e: crate::engine::EngineError) -> Fail {
    match e {
        crate::engine::EngineError::Store(s) => Fail::Store(s),
        other => Fail::Corrupt(other.to_string()),
    }
}

/// Fills in the leader's decisions at the linearization point: whether a
/// node losing its last link is kept as an orphan because it is open.
fn resolve(b: &Batch<'_>, op: &Op, open: &dyn OpenFiles) -> Result<Op, Fail> {
    let target = |parent: Ino, name: &[u8]| -> Result<Option<Ino>, Fail> {
        match b
            .txn()
            .get(Space::Dirents, &keys::dirent_key(parent, name))?
        {
            Some(v) => Ok(Some(records::decode_dirent(&v)?.0)),
            None => Ok(None),
        }
    };
    Ok(match op {
        Op::Unlink { parent, name, .. } => Op::Unlink {
            parent: *parent,
            name: name.clone(),
            keep_orphan: target(*parent, name)?.is_some_and(|i| open.is_open(i)),
        },
        Op::Rename {
            parent,
            name,
            new_parent,
            new_name,
            mode,
            ..
        } => Op::Rename {
            parent: *parent,
            name: name.clone(),
            new_parent: *new_parent,
            new_name: new_name.clone(),
            mode: *mode,
            keep_orphan: target(*new_parent, new_name)?.is_some_and(|i| open.is_open(i)),
        },
        other => other.clone(),
    })
}
