//! Multi-host hsfs: a leader that owns the op log and workers that mount
//! the workspace, send their mutations to the leader and replay its log
//! into their own engine. QUIC (quinn) with mutual TLS.

pub mod journal;
pub mod leader;
pub mod leases;
pub mod tls;
pub mod wire;
pub mod worker;
