//! The hsfs engine: a deterministic, durable, content-addressed state
//! machine over an LSM store (fjall).
//!
//! * [`apply`] is the one state transition, used by the leader and by every
//!   replica; [`op::Op`] lists the logged mutations.
//! * [`Engine`] owns the store and the Merkle trie and offers the single
//!   writer [`engine::Batch`] API plus the lock-free read API ([`read`]).
//! * [`commit::Committer`] is the leader's group-commit pipeline.
//! * [`fsck`] verifies a store; [`trace`] reads and writes golden replay
//!   traces.
//!
//! See docs/ARCHITECTURE.md for the layers and docs/FORMAT.md for the byte
//! layouts.

pub mod apply;
pub mod chunks;
pub mod commit;
pub mod committer;
pub mod engine;
pub mod errno;
pub mod failpoint;
pub mod fsck;
pub mod keys;
pub mod op;
pub mod read;
pub mod records;
pub mod repair;
pub mod statedir;
pub mod store;
pub mod trace;
pub mod txn;
pub mod types;
pub mod util;
pub mod wal;

pub use engine::{
    Applied, Batch, DEFAULT_JOURNAL_BYTES, Engine, EngineError, EngineOptions, Listener,
    ReplayError, Status,
};
pub use errno::Errno;
pub use types::*;
pub use util::random_bytes;
