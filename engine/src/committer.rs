//! The mutation seam. A mount hands every mutation to a [`Committer`]: the
//! embedded default commits through this process's own group-commit
//! pipeline; a worker of a multi-host workspace sends intents to the leader.

use crate::chunks::Payload;
use crate::commit::Done;
use crate::errno::Errno;
use crate::op::{Ack, Op};
use crate::types::ClientId;

/// Where mutations go.
///
/// Contract: `done` runs exactly once, after the op is durably committed
/// by the leader AND applied to the engine this mount reads from
/// (read-your-writes), or with the errno the syscall should get. It may run
/// on another thread and must not block for long.
pub trait Committer: Send + Sync {
    /// Submits a mutation; `chunks` carries a write's data.
    fn submit(&self, op: Op, chunks: Payload, done: Done);

    /// Whether mutations are refused right now (read-only mount, or the
    /// leader is unreachable): they fail with EROFS without being sent.
    fn read_only(&self) -> bool;

    /// This client's id (log entries carrying it originate from this mount).
    fn client(&self) -> ClientId;

    /// Whether this mount deletes orphans itself when their last handle
    /// closes (the embedded leader does; workers leave it to the leader,
    /// which sees every worker's open-leases).
    fn reclaims_orphans(&self) -> bool {
        true
    }

    /// Submits and waits (tests and tools; FUSE handlers use `submit`).
    fn commit(&self, op: Op, chunks: Payload) -> Result<Ack, Errno> {
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
