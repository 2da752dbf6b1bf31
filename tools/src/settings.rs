//! Every tunable of `hsfs leader` and `hsfs mount`, with its default, read
//! from an optional TOML file (`--config FILE`); command-line flags
//! override the file.
//!
//! ```toml
//! [commit]            # group commit (SPEC 5)
//! window_us = 1000    # longest wait for more intents once several writers are active
//! max_ops = 100
//! max_bytes = 1048576
//! max_pending = 10000 # past this, mutations get EAGAIN
//! reserve_mib = 64    # free space kept on the store's filesystem
//!
//! [mount]
//! cache = "on"        # "on" (exact invalidation) or "off" (nothing cached)
//! ttl_s = 30.0        # entry/attribute timeout with cache = "on"
//! threads = 8
//! readahead_kib = 16384 # kernel readahead of the mount (0: the kernel's 128)
//! allow_other = false
//! read_only = false
//! name = "host-a"     # worker name in log entries (default: host name)
//!
//! [leader]
//! listen = "0.0.0.0:7878"
//! lease_ttl_ms = 15000
//!
//! [worker]
//! leader = "leader-host:7878"
//! join = "/etc/hsfs/worker.bundle"
//! leader_timeout_ms = 1000
//! mutation_deadline_s = 30
//! connect_timeout_s = 30
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use hsfs_engine::commit::CommitConfig;
use serde::Deserialize;

/// `[commit]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Commit {
    /// Group commit window in microseconds.
    pub window_us: u64,
    /// Most intents per batch.
    pub max_ops: usize,
    /// Most payload bytes per batch.
    pub max_bytes: usize,
    /// Pending intents past which mutations get EAGAIN.
    pub max_pending: usize,
    /// Free space (MiB) kept on the store's filesystem.
    pub reserve_mib: u64,
}

impl Default for Commit {
    fn default() -> Self {
        let d = CommitConfig::default();
        Commit {
            window_us: d.window.as_micros() as u64,
            max_ops: d.max_ops,
            max_bytes: d.max_bytes,
            max_pending: d.max_pending,
            reserve_mib: d.reserve_bytes >> 20,
        }
    }
}

impl Commit {
    /// As the engine's config.
    #[must_use]
    pub fn config(&self) -> CommitConfig {
        CommitConfig {
            window: Duration::from_micros(self.window_us),
            max_ops: self.max_ops.max(1),
            max_bytes: self.max_bytes.max(1),
            max_pending: self.max_pending,
            reserve_bytes: self.reserve_mib << 20,
            // Set by the embedded committer (FUSE threads may block); the
            // leader's callers are async tasks, which must not.
            inline_when_idle: false,
        }
    }
}

/// `[mount]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mount {
    /// "on" or "off".
    pub cache: String,
    /// Entry/attribute timeout in seconds.
    pub ttl_s: f64,
    /// FUSE threads.
    pub threads: usize,
    /// Kernel readahead in KiB (0: the kernel's default).
    pub readahead_kib: u32,
    /// allow_other.
    pub allow_other: bool,
    /// Read-only mount.
    pub read_only: bool,
    /// Name in log entries.
    pub name: Option<String>,
}

impl Default for Mount {
    fn default() -> Self {
        Mount {
            cache: "on".into(),
            ttl_s: 30.0,
            threads: hsfs_fs::mount::DEFAULT_THREADS,
            readahead_kib: hsfs_fs::mount::DEFAULT_READAHEAD_KIB,
            allow_other: false,
            read_only: false,
            name: None,
        }
    }
}

/// `[leader]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Leader {
    /// Listen address.
    pub listen: String,
    /// Open-lease TTL of a lost worker, ms.
    pub lease_ttl_ms: u64,
}

impl Default for Leader {
    fn default() -> Self {
        Leader {
            listen: "0.0.0.0:7878".into(),
            lease_ttl_ms: 15_000,
        }
    }
}

/// `[worker]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Worker {
    /// Leader address.
    pub leader: Option<String>,
    /// Credentials bundle.
    pub join: Option<PathBuf>,
    /// Leader silence (ms) after which the mount is read-only.
    pub leader_timeout_ms: u64,
    /// Unresolved intents fail with EIO after this (s).
    pub mutation_deadline_s: u64,
    /// How long a mount waits at start for the leader and the initial
    /// catch-up (s).
    pub connect_timeout_s: u64,
}

impl Default for Worker {
    fn default() -> Self {
        Worker {
            leader: None,
            join: None,
            leader_timeout_ms: 1000,
            mutation_deadline_s: 30,
            connect_timeout_s: 30,
        }
    }
}

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Group commit.
    pub commit: Commit,
    /// Mount.
    pub mount: Mount,
    /// Leader role.
    pub leader: Leader,
    /// Worker role.
    pub worker: Worker,
}

impl Settings {
    /// Reads `path`, or the defaults without one.
    pub fn load(path: Option<&Path>) -> Result<Settings> {
        let Some(p) = path else {
            return Ok(Settings::default());
        };
        let text = std::fs::read_to_string(p)
            .with_context(|| format!("reading config {}", p.display()))?;
        toml::from_str(&text).with_context(|| format!("config {}", p.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_defaults_and_rejects_unknown_keys() {
        let s: Settings =
            toml::from_str("[commit]\nmax_ops = 7\n[mount]\ncache = \"off\"\n").unwrap();
        assert_eq!(s.commit.max_ops, 7);
        assert_eq!(s.commit.window_us, 1000);
        assert_eq!(s.mount.cache, "off");
        assert!(toml::from_str::<Settings>("[commit]\nmax_opz = 7\n").is_err());
    }
}
