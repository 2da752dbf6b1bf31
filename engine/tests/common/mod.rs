//! Shared test harness: an engine over an in-memory backend driven through
//! the real commit pipeline with a manual clock.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::Ordering;

use hsfs_engine::chunks::Payload;
use hsfs_engine::commit::{CommitConfig, Committer, ManualClock, NoneOpen, OpenFiles};
use hsfs_engine::op::{Ack, ChunkRef, Intent, Op, OpResult, Origin, SetAttr, WriteAt};
use hsfs_engine::store::mem::MemBackend;
use hsfs_engine::{ClientId, Engine, Errno, Ino, IntentId, ROOT_INO, WorkspaceId};

pub const WS: WorkspaceId = WorkspaceId([7; 16]);
pub const T0: i64 = 1_700_000_000_000_000_000;

pub struct H {
    pub backend: Arc<MemBackend>,
    pub engine: Engine,
    pub committer: Committer,
    pub clock: Arc<ManualClock>,
    pub client: ClientId,
    pub seq: u64,
}

pub fn harness() -> H {
    harness_with(Arc::new(NoneOpen))
}

pub fn harness_with(open: Arc<dyn OpenFiles>) -> H {
    let backend = Arc::new(MemBackend::new());
    let engine = Engine::init(backend.clone(), None, WS, (0o755, 0, 0), T0).unwrap();
    harness_over(backend, engine, open)
}

/// A harness whose engine logs batches to a commit journal in `dir`
/// (files of `size` bytes) and writes the store without syncing.
pub fn harness_journaled(dir: &std::path::Path, size: u64) -> H {
    let backend = Arc::new(MemBackend::new());
    let engine = Engine::create(backend.clone(), None, WS).unwrap();
    assert!(engine.attach_journal(dir, Some(size)).unwrap());
    engine.genesis((0o755, 0, 0), T0).unwrap();
    harness_over(backend, engine, Arc::new(NoneOpen))
}

/// A harness whose pipeline commits on the submitting thread when idle
/// (`CommitConfig::inline_when_idle`, the embedded mount's setting).
pub fn harness_inline() -> H {
    let backend = Arc::new(MemBackend::new());
    let engine = Engine::init(backend.clone(), None, WS, (0o755, 0, 0), T0).unwrap();
    let config = CommitConfig {
        inline_when_idle: true,
        ..CommitConfig::default()
    };
    harness_config(backend, engine, Arc::new(NoneOpen), config)
}

/// A harness over an engine reopened on `backend`, its clock at `now` and
/// its client's sequence at `seq` (to go on where another harness stopped).
pub fn harness_resume(backend: Arc<MemBackend>, engine: Engine, now: i64, seq: u64) -> H {
    let mut h = harness_over(backend, engine, Arc::new(NoneOpen));
    h.clock.0.store(now, Ordering::Relaxed);
    h.seq = seq;
    h
}

fn harness_over(backend: Arc<MemBackend>, engine: Engine, open: Arc<dyn OpenFiles>) -> H {
    harness_config(backend, engine, open, CommitConfig::default())
}

fn harness_config(
    backend: Arc<MemBackend>,
    engine: Engine,
    open: Arc<dyn OpenFiles>,
    config: CommitConfig,
) -> H {
    let clock = Arc::new(ManualClock::default());
    clock.0.store(T0, Ordering::Relaxed);
    let committer = Committer::start(engine.clone(), config, clock.clone(), open);
    H {
        backend,
        engine,
        committer,
        clock,
        client: ClientId([1; 16]),
        seq: 0,
    }
}

/// Creates an empty regular file (`O_EXCL`), as user 1000.
pub fn create_op(parent: Ino, name: &str) -> Op {
    Op::Create {
        parent,
        name: name.into(),
        kind: hsfs_engine::FileKind::File,
        perm: 0o644,
        uid: 1000,
        gid: 1000,
        excl: true,
        truncate: false,
    }
}

/// Makes a directory, as user 1000.
pub fn mkdir_op(parent: Ino, name: &str) -> Op {
    Op::Mkdir {
        parent,
        name: name.into(),
        perm: 0o755,
        uid: 1000,
        gid: 1000,
    }
}

/// Splits data into chunks at 64 KiB file-offset boundaries.
pub fn chunked(offset: u64, data: &[u8]) -> (Vec<ChunkRef>, Payload) {
    Payload::split(Some(offset), data)
}

impl H {
    pub fn intent(&mut self, op: Op) -> Intent {
        self.seq += 1;
        Intent {
            id: IntentId {
                client: self.client,
                seq: self.seq,
            },
            origin: Origin {
                worker: "test".into(),
                agent: "agent".into(),
            },
            op,
        }
    }

    pub fn tick(&self) {
        self.clock.0.fetch_add(1000, Ordering::Relaxed);
    }

    pub fn run(&mut self, op: Op) -> Result<Ack, Errno> {
        self.tick();
        let i = self.intent(op);
        self.committer.commit(i, Payload::none())
    }

    pub fn run_with(&mut self, op: Op, chunks: Payload) -> Result<Ack, Errno> {
        self.tick();
        let i = self.intent(op);
        self.committer.commit(i, chunks)
    }

    pub fn ino(r: Result<Ack, Errno>) -> Ino {
        match r.expect("op failed").result {
            OpResult::Node { ino, .. } => ino,
            other => panic!("expected a node, got {other:?}"),
        }
    }

    pub fn create(&mut self, parent: Ino, name: &str) -> Result<Ino, Errno> {
        self.run(create_op(parent, name)).map(|a| Self::ino(Ok(a)))
    }

    pub fn mkdir(&mut self, parent: Ino, name: &str) -> Result<Ino, Errno> {
        self.run(mkdir_op(parent, name)).map(|a| Self::ino(Ok(a)))
    }

    pub fn write(&mut self, ino: Ino, offset: u64, data: &[u8]) -> Result<Ack, Errno> {
        let (chunks, bytes) = chunked(offset, data);
        self.run_with(
            Op::Write {
                ino,
                at: WriteAt::Offset(offset),
                chunks,
            },
            bytes,
        )
    }

    pub fn append(&mut self, ino: Ino, data: &[u8]) -> Result<Ack, Errno> {
        let (chunks, bytes) = Payload::split(None, data);
        self.run_with(
            Op::Write {
                ino,
                at: WriteAt::Append,
                chunks,
            },
            bytes,
        )
    }

    pub fn unlink(&mut self, parent: Ino, name: &str) -> Result<Ack, Errno> {
        self.run(Op::Unlink {
            parent,
            name: name.into(),
            keep_orphan: false,
        })
    }

    pub fn rmdir(&mut self, parent: Ino, name: &str) -> Result<Ack, Errno> {
        self.run(Op::Rmdir {
            parent,
            name: name.into(),
        })
    }

    pub fn rename(&mut self, p: Ino, n: &str, np: Ino, nn: &str) -> Result<Ack, Errno> {
        self.run(Op::Rename {
            parent: p,
            name: n.into(),
            new_parent: np,
            new_name: nn.into(),
            mode: hsfs_engine::op::RenameMode::Replace,
            keep_orphan: false,
        })
    }

    pub fn truncate(&mut self, ino: Ino, size: u64) -> Result<Ack, Errno> {
        self.run(Op::SetAttr {
            ino,
            attr: SetAttr {
                size: Some(size),
                ..SetAttr::default()
            },
        })
    }

    pub fn read_all(&self, ino: Ino) -> Vec<u8> {
        self.engine.read(ino, 0, usize::MAX / 2).unwrap()
    }

    pub fn lookup(&self, parent: Ino, name: &str) -> Option<Ino> {
        self.engine
            .lookup(parent, name.as_bytes())
            .ok()
            .map(|n| n.ino)
    }

    pub fn fsck(&self) {
        let r = hsfs_engine::fsck::check(&self.engine, &mut |_, _| {}).unwrap();
        assert!(r.is_clean(), "fsck problems: {:#?}", r.problems);
    }

    pub fn root(&self) -> [u8; 32] {
        self.engine.status().meta.root
    }
}

pub fn root_ino() -> Ino {
    ROOT_INO
}
