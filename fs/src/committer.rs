//! The mutation seam: every FUSE mutation becomes an intent handed to a
//! [`Committer`]. The embedded default commits through the engine's own
//! group-commit pipeline; a network client (multi-host) implements the same
//! trait by sending intents to the leader.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hsfs_engine::chunks::Payload;
use hsfs_engine::commit::{self, Done};
use hsfs_engine::op::{Intent, Op, Origin};
use hsfs_engine::{ClientId, Engine, Errno, IntentId};

/// Where mutations go.
///
/// Contract: `done` runs exactly once, after the op is durably committed
/// AND applied to the engine this mount reads from (read-your-writes), or
/// with the errno the syscall should get. It may run on another thread and
/// must not block for long.
pub trait Committer: Send + Sync {
    /// Submits a mutation; `chunks` carries a write's data.
    fn submit(&self, op: Op, chunks: Payload, done: Done);

    /// Whether mutations are currently refused (read-only mount, or the
    /// leader is unreachable): they fail with EROFS without being sent.
    fn read_only(&self) -> bool;

    /// This client's id (ops carrying it originate from this mount).
    fn client(&self) -> ClientId;

    /// Submits and waits (tests and tools; FUSE handlers use `submit`).
    fn commit(&self, op: Op, chunks: Payload) -> Result<hsfs_engine::op::Ack, Errno> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.submit(
            op,
            chunks,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.recv().unwrap_or(Err(Errno::EIO))
    }
}

/// The embedded leader: the engine's commit pipeline in this process. Its
/// acks arrive after the durable write and after the engine published the
/// new state, so read-your-writes holds when `done` runs.
pub struct Embedded {
    pipeline: commit::Committer,
    client: ClientId,
    seq: AtomicU64,
    origin: Origin,
    read_only: AtomicBool,
}

impl Embedded {
    /// Starts the pipeline over `engine`.
    pub fn start(
        engine: Engine,
        config: commit::CommitConfig,
        open: Arc<dyn commit::OpenFiles>,
        origin: Origin,
    ) -> Embedded {
        Embedded {
            pipeline: commit::Committer::start(engine, config, Arc::new(commit::SystemClock), open),
            client: ClientId::random(),
            seq: AtomicU64::new(0),
            origin,
            read_only: AtomicBool::new(false),
        }
    }

    /// The pipeline (for stats).
    #[must_use]
    pub fn pipeline(&self) -> &commit::Committer {
        &self.pipeline
    }

    /// Refuses (or accepts again) mutations.
    pub fn set_read_only(&self, ro: bool) {
        self.read_only.store(ro, Ordering::Release);
    }

    /// Drains queued intents and stops the pipeline.
    pub fn shutdown(&mut self) {
        self.pipeline.shutdown();
    }
}

impl Committer for Embedded {
    fn submit(&self, op: Op, chunks: Payload, done: Done) {
        if self.read_only() {
            done(Err(Errno::EROFS));
            return;
        }
        let intent = Intent {
            id: IntentId {
                client: self.client,
                seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            },
            origin: self.origin.clone(),
            op,
        };
        self.pipeline.submit(intent, chunks, done);
    }

    fn read_only(&self) -> bool {
        self.read_only.load(Ordering::Acquire)
    }

    fn client(&self) -> ClientId {
        self.client
    }
}
