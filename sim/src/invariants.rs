//! The online invariants, checked after every step of a run. Each is one function named
//! after what it guards, returning a typed [`Violation`]; the design section or issue it
//! comes from is cited on each.

use std::collections::BTreeMap;
use std::fmt;

use cairn_node::core::log::PartitionLog;
use cairn_node::core::log::batch::BatchScan;

use crate::disk::SimDisk;

/// Something a correct cluster never does. A run stops at the first one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// The core panicked (an `assert!` is a bug by definition, design §2).
    Panic {
        /// The panic's message.
        message: String,
    },
    /// A partition's flushed offset (its high watermark under fsync durability) went back
    /// while its node kept running (design §8: high watermark monotonic).
    FlushedOffsetBackwards {
        /// The partition.
        partition: String,
        /// Before.
        before: u64,
        /// After.
        after: u64,
    },
    /// After a recovery the log ends below an offset once reported flushed (design §3:
    /// recovery never loses flushed data).
    FlushedDataLost {
        /// The partition.
        partition: String,
        /// The highest flushed offset seen.
        flushed: u64,
        /// The log end offset after recovery.
        log_end_offset: u64,
    },
    /// Two different values acknowledged at one offset of an fsync partition: the first
    /// acknowledged write was lost (design §8: no acknowledged write lost).
    AckedOffsetReused {
        /// The partition.
        partition: String,
        /// The offset.
        offset: u64,
        /// The value acknowledged first.
        first: i64,
        /// The value acknowledged later.
        second: i64,
    },
    /// A fetch returned, at an acknowledged offset, a value other than the one acknowledged
    /// (design §8: never serve wrong data).
    FetchMismatch {
        /// The partition.
        partition: String,
        /// The offset.
        offset: u64,
        /// The value acknowledged there.
        acked: i64,
        /// The value read there.
        read: i64,
    },
    /// A fetch at offset `requested` returned a first record at another offset (Redpanda
    /// issue 2326's symptom: the wrong segment served).
    FetchWrongStart {
        /// The partition.
        partition: String,
        /// The offset asked for.
        requested: u64,
        /// The first offset returned.
        first: u64,
    },
    /// A group committed an offset past an acknowledged acks=all record no member of the
    /// group read: a consumer resuming from that offset skips the record (design §6: a
    /// committed offset is the next offset to consume).
    CommittedPastUnread {
        /// The group.
        group: String,
        /// The partition.
        partition: String,
        /// The acknowledged offset no member read.
        offset: u64,
        /// The committed offset above it.
        committed: u64,
    },
    /// A fetch returned a record at or above the high watermark it reported.
    FetchAboveHighWatermark {
        /// The partition.
        partition: String,
        /// The offset read.
        offset: u64,
        /// The high watermark reported.
        high_watermark: u64,
    },
    /// A recovered log keeps bytes that do not scan as valid, dense batches (design §2:
    /// recovery verifies checksums and truncates a torn tail).
    RecoveredLogInvalid {
        /// The partition.
        partition: String,
        /// The segment file.
        file: String,
        /// Byte position where the scan stopped.
        position: u64,
    },
    /// A node stopped serving (its topic store unreadable) although the fault atlas keeps
    /// every fault recoverable (design §8: the atlas).
    NodeFailed {
        /// The node's index.
        node: u32,
        /// Why it stopped.
        error: String,
    },
    /// Two nodes led one partition in one leader epoch, or Raft in one term (design §8;
    /// Raft thesis §3.6.3, Election Safety).
    TwoLeaders {
        /// The partition and epoch, or the Raft term.
        what: String,
        /// The nodes (indexes).
        nodes: (u32, u32),
    },
    /// A running replica truncated its log below its own high watermark: it had counted as
    /// committed what it then took back (design §8: the committed prefix never changes;
    /// KAFKA-14704). Checked for fsync partitions under the recoverable atlas.
    TruncatedBelowHighWatermark {
        /// The partition.
        partition: String,
        /// The node (index).
        node: u32,
        /// The replica's high watermark before.
        high_watermark: u64,
        /// Its log end offset after the truncation.
        log_end_offset: u64,
    },
    /// A leader's high watermark went back within its epoch (design §8).
    HighWatermarkBack {
        /// The partition.
        partition: String,
        /// The leader epoch.
        epoch: i32,
        /// Before.
        before: u64,
        /// After.
        after: u64,
    },
    /// Two Raft logs agree on an entry's index and term but not on an earlier entry
    /// (Raft thesis §3.6.3, Log Matching).
    RaftLogsDiverge {
        /// The first index that differs.
        index: u64,
        /// The nodes (indexes).
        nodes: (u32, u32),
    },
    /// A leader of a later term lacks an entry a node knew committed (Raft thesis §3.6.3,
    /// Leader Completeness).
    RaftCommittedEntryMissing {
        /// The entry's index.
        index: u64,
        /// The node that knew it committed.
        member: u32,
        /// The leader without it.
        leader: u32,
    },
    /// Two ISR replicas hold different batches at one offset below their high watermarks
    /// (design §8: the committed prefix identical across the ISR).
    CommittedPrefixDiffers {
        /// The partition.
        partition: String,
        /// The batch's base offset.
        offset: u64,
        /// The nodes (indexes).
        nodes: (u32, u32),
    },
    /// Something pending did not finish within the liveness bound after the faults healed.
    Liveness {
        /// What.
        what: String,
    },
    /// The history checker found anomalies this atlas does not excuse.
    History {
        /// Anomaly counts by name.
        anomalies: BTreeMap<String, u64>,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

/// Per partition and node: what the invariants remember between steps.
#[derive(Debug, Clone, Default)]
pub struct PartitionWatch {
    /// The flushed offset at the last step, while the node ran and the log was ready.
    pub last_flushed: Option<u64>,
    /// The highest flushed offset ever seen.
    pub max_flushed: u64,
    /// Whether the log was ready at the last step.
    pub was_ready: bool,
    /// Set when the node's disk was wiped while it held the partition's only copy: the next
    /// time the log is ready it is checked as a detected loss (acknowledgements above its
    /// end dropped), not against what it held before.
    pub lost: bool,
}

/// Design §8 (high watermark monotonic): the flushed offset of a ready log never goes back
/// while its node runs.
pub fn flushed_offset_monotonic(
    name: &str,
    watch: &PartitionWatch,
    log: &PartitionLog,
) -> Result<(), Violation> {
    match watch.last_flushed {
        Some(before) if log.flushed_offset() < before => Err(Violation::FlushedOffsetBackwards {
            partition: name.to_string(),
            before,
            after: log.flushed_offset(),
        }),
        _ => Ok(()),
    }
}

/// Design §3: a ready log ends at or above every offset once reported flushed.
pub fn recovery_keeps_flushed(
    name: &str,
    watch: &PartitionWatch,
    log: &PartitionLog,
) -> Result<(), Violation> {
    if log.log_end_offset() < watch.max_flushed {
        return Err(Violation::FlushedDataLost {
            partition: name.to_string(),
            flushed: watch.max_flushed,
            log_end_offset: log.log_end_offset(),
        });
    }
    Ok(())
}

/// Design §2: once recovered, every segment's bytes on disk scan as valid batches whose
/// offsets are dense from the segment's base.
pub fn recovered_log_is_valid(
    name: &str,
    log: &PartitionLog,
    disk: &SimDisk,
) -> Result<(), Violation> {
    for segment in log.segments() {
        let Some(bytes) = disk.contents(&segment.log_file) else { continue };
        let end = (segment.size_bytes as usize).min(bytes.len());
        let mut scan = BatchScan::new(&bytes[..end], usize::MAX >> 1);
        let mut next = segment.base_offset;
        let mut bad = None;
        for (position, header) in scan.by_ref() {
            if header.base_offset < 0 || header.base_offset as u64 != next {
                bad = Some(position as u64);
                break;
            }
            next = header.next_offset() as u64;
        }
        let bad = bad.or_else(|| scan.stop().map(|_| scan.position() as u64));
        if let Some(position) = bad {
            return Err(Violation::RecoveredLogInvalid {
                partition: name.to_string(),
                file: segment.log_file.to_string(),
                position,
            });
        }
    }
    Ok(())
}

/// Design §8 (no acknowledged write lost): an offset of an fsync partition is acknowledged
/// with one value only.
pub fn acked_offset_unique(
    name: &str,
    acked: &BTreeMap<u64, i64>,
    offset: u64,
    value: i64,
) -> Result<(), Violation> {
    match acked.get(&offset) {
        Some(first) if *first != value => Err(Violation::AckedOffsetReused {
            partition: name.to_string(),
            offset,
            first: *first,
            second: value,
        }),
        _ => Ok(()),
    }
}

/// Design §8 (never serve wrong data): a record read at an acknowledged offset carries the
/// acknowledged value.
pub fn fetch_matches_acked(
    name: &str,
    acked: &BTreeMap<u64, i64>,
    offset: u64,
    value: i64,
) -> Result<(), Violation> {
    match acked.get(&offset) {
        Some(acked) if *acked != value => Err(Violation::FetchMismatch {
            partition: name.to_string(),
            offset,
            acked: *acked,
            read: value,
        }),
        _ => Ok(()),
    }
}

/// KIP-74 and Redpanda issue 2326: a fetch starts at the batch holding the offset asked for
/// (every simulated batch holds one record, so at that very offset), and serves nothing at
/// or above the high watermark.
pub fn fetch_in_range(
    name: &str,
    requested: u64,
    offsets: &[u64],
    high_watermark: u64,
) -> Result<(), Violation> {
    if let Some(first) = offsets.first()
        && *first != requested
    {
        return Err(Violation::FetchWrongStart {
            partition: name.to_string(),
            requested,
            first: *first,
        });
    }
    if let Some(last) = offsets.iter().find(|o| **o >= high_watermark) {
        return Err(Violation::FetchAboveHighWatermark {
            partition: name.to_string(),
            offset: *last,
            high_watermark,
        });
    }
    Ok(())
}
