//! Nothing here: the comparison is `benches/backends.rs`.
