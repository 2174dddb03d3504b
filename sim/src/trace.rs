//! `cairn-sim run --trace`: a line on stderr for each fault applied and each change of a
//! replica's role, leader epoch or ISR, and each truncation, with the simulated time. A
//! debugging aid for one seed; sweeps never turn it on, and it draws no randomness, so a
//! traced run is the same run.

use std::sync::atomic::{AtomicBool, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns the trace on for this process.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether the trace is on.
pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Writes one trace line at simulated time `now_ns`.
pub(crate) fn line(now_ns: u64, what: std::fmt::Arguments<'_>) {
    eprintln!("{:>10.3}s {what}", now_ns as f64 / 1e9);
}
