//! hsfs gc layer.
