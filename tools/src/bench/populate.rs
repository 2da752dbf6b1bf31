//! Stores built with the engine's batch API directly (no FUSE, no commit
//! pipeline), and the deterministic content their files hold. Used by
//! `hsfs-bench engine` and by `hsfs-bench scale`, whose large workspaces
//! would take many minutes to create through a mount.

use std::path::Path;

use anyhow::{Result, anyhow};
use hsfs_engine::chunks::Payload;
use hsfs_engine::op::{Intent, Op, OpResult, Origin, WriteAt};
use hsfs_engine::{
    ClientId, Engine, EngineOptions, FileKind, Ino, IntentId, ROOT_INO, WorkspaceId,
};

/// A batch is closed once it holds this many files...
const BATCH_FILES: u64 = 1000;
/// ...or this many bytes of file data.
const BATCH_BYTES: usize = 16 << 20;
/// The client id of [`populate`]'s intents.
const POPULATE_CLIENT: u8 = 2;

/// Fills `buf` with deterministic bytes that differ for every seed
/// (xorshift64, 8 bytes per step).
pub fn fill(buf: &mut [u8], seed: u64) {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for c in buf.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
    }
}

/// `len` deterministic bytes of `seed`.
#[must_use]
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0; len];
    fill(&mut v, seed);
    v
}

/// An intent of bench client `client`.
#[must_use]
pub fn intent(client: u8, seq: u64, op: Op) -> Intent {
    Intent {
        id: IntentId {
            client: ClientId([client; 16]),
            seq,
        },
        origin: Origin {
            worker: "bench".into(),
            agent: format!("c{client}"),
        },
        op,
    }
}

/// Exclusive create of an empty regular file.
#[must_use]
pub fn create(parent: Ino, name: String) -> Op {
    Op::Create {
        parent,
        name: name.into_bytes(),
        kind: FileKind::File,
        perm: 0o644,
        uid: 0,
        gid: 0,
        excl: true,
        truncate: false,
    }
}

fn mkdir(parent: Ino, name: &str) -> Op {
    Op::Mkdir {
        parent,
        name: name.as_bytes().to_vec(),
        perm: 0o755,
        uid: 0,
        gid: 0,
    }
}

/// The inode a create or mkdir made.
///
/// # Panics
/// On any other result.
#[must_use]
pub fn ino_of(r: OpResult) -> Ino {
    match r {
        OpResult::Node { ino, .. } => ino,
        other => panic!("expected a node, got {other:?}"),
    }
}

/// A new state directory `dir/name` (replacing any old one) with the
/// default engine options.
pub fn new_store(dir: &Path, name: &str) -> Result<Engine> {
    new_store_with(dir, name, &EngineOptions::default())
}

/// A new state directory `dir/name` (replacing any old one).
pub fn new_store_with(dir: &Path, name: &str, opts: &EngineOptions) -> Result<Engine> {
    let p = dir.join(name);
    let _ = std::fs::remove_dir_all(&p);
    Ok(Engine::init_dir(
        &p,
        WorkspaceId([9; 16]),
        (0o755, 0, 0),
        1,
        opts,
    )?)
}

/// What [`populate`] builds: directories under the root, in order, each
/// holding some files of `file_bytes` bytes. File `i`, counted over the
/// whole tree, is named [`Shape::file_name`]`(i)` and holds
/// [`Shape::content`]`(i)`.
pub struct Shape {
    /// (directory name, files in it).
    pub dirs: Vec<(String, u64)>,
    pub file_bytes: usize,
}

impl Shape {
    /// `n` files in directories `d0`, `d1`, ... of `per_dir` files each
    /// (the last one may hold fewer).
    #[must_use]
    pub fn uniform(n: u64, per_dir: u64, file_bytes: usize) -> Shape {
        let dirs = (0..n.div_ceil(per_dir))
            .map(|k| (format!("d{k}"), per_dir.min(n - k * per_dir)))
            .collect();
        Shape { dirs, file_bytes }
    }

    /// Regular files in the tree.
    #[must_use]
    pub fn files(&self) -> u64 {
        self.dirs.iter().map(|d| d.1).sum()
    }

    /// Inodes in the tree, the root included.
    #[must_use]
    pub fn nodes(&self) -> u64 {
        self.files() + self.dirs.len() as u64 + 1
    }

    /// Logical bytes of file data.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.files() * self.file_bytes as u64
    }

    /// The name of file `i`.
    #[must_use]
    pub fn file_name(i: u64) -> String {
        format!("f{i}")
    }

    /// The content of file `i`.
    #[must_use]
    pub fn content(&self, i: u64) -> Vec<u8> {
        data(self.file_bytes, i)
    }
}

/// Builds `shape` in a store that holds nothing else yet, with unsynced
/// batches of up to 1000 files (create + write each) or 16 MiB, and syncs
/// the store at the end. `progress` is called after each batch with the
/// files made so far; an error from it stops the build. Returns the inode
/// of every file, in order.
pub fn populate(
    e: &Engine,
    shape: &Shape,
    progress: &mut dyn FnMut(u64) -> Result<()>,
) -> Result<Vec<Ino>> {
    let mut inos = Vec::with_capacity(shape.files() as usize);
    let mut seq = 0;
    let mut time = e.status().meta.last_time;
    // One op of the batch: the next intent of POPULATE_CLIENT, one
    // nanosecond after the previous one.
    let mut commit = |b: &mut hsfs_engine::Batch<'_>, op: Op| {
        seq += 1;
        time += 1;
        b.commit_intent(&intent(POPULATE_CLIENT, seq, op), time)
            .map_err(|f| anyhow!("{f}"))
    };
    let mut b = e.batch()?;
    let (mut in_batch, mut batch_bytes) = (0, 0);
    for (name, files) in &shape.dirs {
        let dir = ino_of(commit(&mut b, mkdir(ROOT_INO, name))?.result);
        for _ in 0..*files {
            let i = inos.len() as u64;
            let ino = ino_of(commit(&mut b, create(dir, Shape::file_name(i)))?.result);
            let buf = shape.content(i);
            if !buf.is_empty() {
                let (refs, p) = Payload::split(Some(0), &buf);
                for (h, d) in p.pieces() {
                    b.put_chunk(*h, d.as_ref());
                }
                let at = WriteAt::Offset(0);
                commit(
                    &mut b,
                    Op::Write {
                        ino,
                        at,
                        chunks: refs,
                    },
                )?;
            }
            inos.push(ino);
            in_batch += 1;
            batch_bytes += buf.len();
            if in_batch == BATCH_FILES || batch_bytes >= BATCH_BYTES {
                b.finish(false)?;
                progress(inos.len() as u64)?;
                b = e.batch()?;
                (in_batch, batch_bytes) = (0, 0);
            }
        }
    }
    b.finish(false)?;
    e.backend().sync()?;
    progress(inos.len() as u64)?;
    Ok(inos)
}
