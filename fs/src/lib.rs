//! The hsfs FUSE layer.
//!
//! * [`core::Core`] is the filesystem logic over the engine (reads) and a
//!   [`Committer`] (mutations), testable without the kernel.
//! * [`fuse::Fuse`] is the thin fuser adapter.
//! * [`mount`] mounts a core and keeps the kernel notifier.

pub mod committer;
pub mod cookies;
pub mod core;
pub mod fuse;
pub mod invalidate;
pub mod mount;

pub use committer::Embedded;
pub use core::{CacheMode, Core, FsConfig, LeaseListener, OpenTable};
pub use hsfs_engine::committer::Committer;
