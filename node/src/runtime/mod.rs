//! The tokio driver of the core: real files, sockets and timers.

pub mod disk;
