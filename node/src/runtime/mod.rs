//! The tokio driver of the core: real files, sockets and timers.
//!
//! - [`datadir`]: formatting and locking the data directory (`cairn.meta`, `cairn.lock`).
//! - [`disk`]: `FileDisk`, the disk ops on real files.
//! - [`executor`]: the thread that runs disk ops in order, with group commit.
//! - [`driver`]: the task that feeds a core `Node` its inputs and carries out its outputs.
//! - [`http`]: `/metrics` (Prometheus) and `/health`.
//! - [`listener`]: the Kafka listener, one task per client connection.
//! - [`logging`]: log lines to standard error, dropped and counted when it cannot take them.
//! - [`os`]: the operating system the above run on: real, or a test's simulation.
//! - [`peer`]: node-to-node messages over TCP, reconnecting with backoff.
//! - [`server`]: all of the above started and stopped together.

pub mod datadir;
pub mod disk;
pub mod driver;
pub mod executor;
pub mod http;
pub mod listener;
pub mod logging;
pub mod os;
pub mod peer;
pub mod server;
