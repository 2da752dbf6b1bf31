//! hsfs replication layer.
