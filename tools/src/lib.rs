//! Shared pieces of the hsfs command-line tools.

pub mod bench;
pub mod checks;
pub mod control;
pub mod lead;
pub mod report;
pub mod serve;
pub mod settings;
pub mod signals;

use std::path::Path;

/// Initializes logging to stderr from `RUST_LOG` (default: info for hsfs
/// crates, warnings for the rest).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,hsfs=info,hsfs_fs=info,hsfs_engine=info")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Keeps the heap from hoarding memory: large buffers (write payloads,
/// chunk copies) are mmap'ed and returned on free instead of being kept by
/// glibc's adaptive threshold, and few arenas are used.
pub fn tune_malloc() {
    // SAFETY: mallopt only adjusts allocator parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Arms the abort-type failpoints named in `HSFS_FAILPOINTS` (tests crash
/// real processes at exact steps with it; see `engine::failpoint`).
pub fn arm_failpoints(engine: &hsfs_engine::Engine) -> anyhow::Result<()> {
    if let Ok(spec) = std::env::var("HSFS_FAILPOINTS") {
        engine
            .failpoints()
            .arm_from_spec(&spec)
            .map_err(anyhow::Error::msg)?;
        tracing::warn!(%spec, "failpoints armed");
    }
    Ok(())
}

/// Absolute form of a path (without resolving symlinks).
pub fn absolute(p: &Path) -> std::path::PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}
