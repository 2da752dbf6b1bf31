//! The embedded default [`Committer`]: the engine's own group-commit
//! pipeline in this process.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hsfs_engine::chunks::Payload;
use hsfs_engine::commit::{self, Done};
use hsfs_engine::committer::Committer;
use hsfs_engine::op::{Intent, Op, Origin};
use hsfs_engine::{ClientId, Engine, Errno, IntentId};

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
        // The callers are FUSE threads, which may block for a durable
        // write: a lone writer's intent is committed on its own thread.
        let config = commit::CommitConfig {
            inline_when_idle: true,
            ..config
        };
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
