//! Cairn's broker.
//!
//! - [`core`]: the sans-IO state machine. It does no IO, reads no clock and draws randomness
//!   only from a seeded generator; drivers feed it inputs and carry out its outputs.
//! - [`kafka`]: the Kafka wire protocol, sans-IO: frames and requests in, responses out.
//! - `runtime` (feature `runtime`, on by default): the tokio driver for production nodes.

#![warn(missing_docs)]

pub mod core;
pub mod kafka;

#[cfg(feature = "runtime")]
pub mod runtime;
