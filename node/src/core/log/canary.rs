//! Deliberate storage bugs for the simulator's canary checks (issue 4, design §8).
//!
//! Compiled only with the `canary` feature, which no release build enables. A canary is
//! chosen at run time, per thread, so that a sweep running seeds on several threads can give
//! each its own: [`set`] before driving a node, [`is`] at each hook. Each hook in
//! `core::log` is marked `#[cfg(feature = "canary")]` and names the bug it plants.

use std::cell::Cell;

/// One deliberate bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Canary {
    /// The flushed offset advances on append, before the sync that makes the batch durable:
    /// an unsynced write is treated as durable (and acknowledged).
    UnsyncedWriteDurable,
    /// After retention deleted segments, the lookup of an offset equal to a segment's base
    /// returns the previous segment (Redpanda issue 2326).
    LookupOffByOneAfterRetention,
    /// Recovery trusts scanned batches without checking their CRC.
    RecoverySkipsCrc,
}

thread_local! {
    static ACTIVE: Cell<Option<Canary>> = const { Cell::new(None) };
}

/// Plants `canary` (or none) for the logs driven on this thread from now on.
pub fn set(canary: Option<Canary>) {
    ACTIVE.with(|active| active.set(canary));
}

/// Whether `canary` is planted on this thread.
pub fn is(canary: Canary) -> bool {
    ACTIVE.with(|active| active.get() == Some(canary))
}
