//! Every bound of the checker in one place.

/// Anomalies of one kind kept in a report by default (all are counted).
pub const ANOMALIES_PER_KIND_MAX_DEFAULT: usize = 100;

/// Skipped offsets listed in one `poll-skip` (all are counted).
pub const POLL_SKIP_OFFSETS_SHOWN_MAX: usize = 8;

/// Steps of the longest partial linearization shown in a `not-linearizable`.
pub const LINEARIZED_STEPS_SHOWN_MAX: usize = 8;

/// Search steps between two readings of the clock in the linearizability search.
pub const SEARCH_STEPS_PER_CLOCK_READ: u64 = 1024;

/// Default wall-clock limit of the linearizability search, in seconds.
pub const TIME_LIMIT_SECONDS_DEFAULT: u64 = 60;

/// Anomalies drawn in an HTML report, over all kinds.
pub const HTML_ANOMALIES_MAX: usize = 60;

/// Anomalies of one kind drawn in an HTML report.
pub const HTML_ANOMALIES_PER_KIND_MAX: usize = 10;

/// Lines of context drawn on each side of an operation that proves an anomaly.
pub const HTML_CONTEXT_LINES: u64 = 12;

const _: () = assert!(HTML_ANOMALIES_PER_KIND_MAX <= HTML_ANOMALIES_MAX);
const _: () = assert!(SEARCH_STEPS_PER_CLOCK_READ.is_power_of_two());
const _: () = assert!(POLL_SKIP_OFFSETS_SHOWN_MAX > 0 && LINEARIZED_STEPS_SHOWN_MAX > 0);
