//! hsfs fs layer.
