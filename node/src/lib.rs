//! Cairn's broker.
//!
//! - [`core`]: the sans-IO state machine. It does no IO, reads no clock and draws randomness
//!   only from a seeded generator; drivers feed it inputs and carry out its outputs.
//! - `runtime` (feature `runtime`, on by default): the tokio driver for production nodes.

#![warn(missing_docs)]

pub mod core;

#[cfg(feature = "runtime")]
pub mod runtime;
