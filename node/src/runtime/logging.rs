//! Where the node's log lines go: standard error, and never at the node's cost.
//!
//! A log line that cannot be written (the file standard error goes to sits on a full disk,
//! or the pipe to a log collector closed) is dropped and counted
//! (`cairn_log_lines_dropped_total`), and the node serves on. `tracing-subscriber`'s own
//! answer to a failed write is to report it with `eprintln!`, which panics when standard
//! error fails too: a node whose data and log file share a disk that filled up exited with
//! status 101, in the middle of handling the full disk itself.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};

/// Log lines dropped because standard error could not take them, since the process started.
static LINES_DROPPED: AtomicU64 = AtomicU64::new(0);

/// How many log lines were dropped so far.
pub fn lines_dropped() -> u64 {
    LINES_DROPPED.load(Ordering::Relaxed)
}

/// A writer to standard error that drops what it cannot write, and counts it. Give
/// [`stderr`] to `tracing_subscriber`'s `with_writer`: it makes one per log line.
#[derive(Debug)]
pub struct DroppingStderr(io::Stderr);

/// A [`DroppingStderr`], for one log line.
pub fn stderr() -> DroppingStderr {
    DroppingStderr(io::stderr())
}

impl Write for DroppingStderr {
    /// Takes the whole line, written or dropped: a line half written stays so.
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        if self.0.write_all(line).is_err() {
            LINES_DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = self.0.flush();
        Ok(())
    }
}
