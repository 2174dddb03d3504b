//! The idempotent producer state of one partition (KIP-98, with KIP-360's handling of unknown
//! producers): for each producer id, its current epoch and the sequences and offsets of its
//! last [`PRODUCER_BATCH_WINDOW`] batches.
//!
//! The table is a pure state machine; the replica drives it. Its methods, in the order a
//! driver calls them:
//!
//! - getters: [`ProducerStateTable::check`] before a leader appends a produced batch, which
//!   says whether to append it, to answer it as a duplicate with its original offsets, or to
//!   refuse it; [`ProducerStateTable::covered_end_offset`], [`ProducerStateTable::len`];
//! - mutators: [`ProducerStateTable::appended`] after a batch is in the log (leader or
//!   follower), [`ProducerStateTable::replay`] for each batch of the log in offset order
//!   during recovery or on becoming leader, [`ProducerStateTable::truncate_to`] after a
//!   follower truncated its log (KIP-101), [`ProducerStateTable::log_start_moved`] after
//!   retention moved the log start, [`ProducerStateTable::expire`] by
//!   `producer.id.expiration.ms`;
//! - persistence: [`ProducerStateTable::snapshot`] and [`ProducerStateTable::restore`]
//!   (module [`snapshot`]), a snapshot recording the offset it covers so that recovery
//!   replays only the log after it;
//! - [`ProducerStateTable::invariants`].
//!
//! Contract: replaying the log's batches in offset order into an empty table (or into a table
//! restored from a snapshot, from its covered offset on) gives the same table as the live
//! `check` + `appended` calls did. Nothing is allocated per batch; a producer's window is a
//! fixed array.
//!
//! Kafka 3.x semantics kept here (`ProducerStateManager`, `ProducerAppendInfo`):
//! - a batch of the producer's current epoch is a duplicate when its first and last sequence
//!   match one of the remembered batches; otherwise its first sequence must follow the last
//!   remembered one, wrapping from `i32::MAX` to 0;
//! - an older epoch is fenced (`INVALID_PRODUCER_EPOCH`); a newer epoch must start at
//!   sequence 0 and clears the window;
//! - a producer the partition does not know (never seen, or expired) may start at any
//!   sequence; retention removing its batches does not forget it (KIP-360). Since KIP-360
//!   (Kafka 2.5) the broker no longer answers `UNKNOWN_PRODUCER_ID` to a produce, so
//!   [`ProducerError`] has no such variant; Kafka 3.x returns it only on transactional
//!   paths Cairn does not implement.
//! - batches without a producer id (-1) are always appended and never tracked.
//!
//! Control batches (transaction markers) are not tracked: Cairn has no transactions.

pub mod snapshot;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::core::limits::{PRODUCER_BATCH_WINDOW, PRODUCERS_PER_PARTITION_MAX};
use crate::core::log::batch::BatchHeader;
use crate::core::time::Instant;

pub use snapshot::SnapshotError;

/// The producer id of a batch written without idempotence.
pub const NO_PRODUCER_ID: i64 = -1;

/// The attributes bit of a control batch (transaction markers).
const ATTRIBUTE_CONTROL: i16 = 0x20;

/// What a leader does with a produced batch, as [`ProducerStateTable::check`] decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProducerCheck {
    /// Append it: it is the next batch of its producer, or the first one the partition knows
    /// of, or it has no producer id.
    Append,
    /// A retry of a batch already in the log: answer with its original offsets and do not
    /// append it again.
    Duplicate {
        /// The offset of the original batch's first record.
        base_offset: u64,
        /// The offset of the original batch's last record.
        last_offset: u64,
    },
}

/// Why a produced batch is refused. Each variant maps to one Kafka error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    /// The batch's first sequence does not follow the producer's last batch (a gap, or a
    /// sequence older than the remembered window), or a new epoch does not start at 0.
    /// Kafka: `OUT_OF_ORDER_SEQUENCE_NUMBER` (45).
    #[error(
        "producer {producer_id} epoch {epoch}: sequence {found} is out of order, expected \
         {expected}"
    )]
    OutOfOrderSequence {
        /// The producer id.
        producer_id: i64,
        /// The batch's producer epoch.
        epoch: i16,
        /// The first sequence the partition would accept.
        expected: i32,
        /// The batch's first sequence.
        found: i32,
    },
    /// The batch's epoch is older than the producer's current one: a newer instance of the
    /// producer fenced it. Kafka: `INVALID_PRODUCER_EPOCH` (47).
    #[error("producer {producer_id}: epoch {epoch} is older than the current epoch {current}")]
    InvalidProducerEpoch {
        /// The producer id.
        producer_id: i64,
        /// The batch's producer epoch.
        epoch: i16,
        /// The producer's current epoch in this partition.
        current: i16,
    },
    /// The batch has a producer id but a negative epoch or first sequence. Kafka:
    /// `INVALID_RECORD` (87).
    #[error("producer {producer_id}: batch has epoch {epoch} and first sequence {sequence}")]
    InvalidBatch {
        /// The producer id.
        producer_id: i64,
        /// The batch's producer epoch.
        epoch: i16,
        /// The batch's first sequence.
        sequence: i32,
    },
}

/// What [`ProducerStateTable::appended`] did with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The batch is now the producer's last remembered batch.
    Tracked,
    /// As `Tracked`, and the table was full, so the producer whose last batch is oldest was
    /// forgotten to make room.
    TrackedEvicting {
        /// The forgotten producer.
        evicted_producer_id: i64,
    },
    /// No producer id, or a control batch: nothing to track.
    Untracked,
    /// The batch's epoch is older than its producer's current epoch. A leader never appends
    /// such a batch (`check` refuses it); a log holding one is left as it is and the batch
    /// does not change the table (Kafka's replica would fail the fetch instead).
    StaleEpochIgnored,
}

/// What [`ProducerStateTable::truncate_to`] could do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncation {
    /// The table is exactly what replaying the log below the truncation point gives.
    Exact,
    /// Some producers had batches the table no longer remembers (pushed out of the window, or
    /// cleared by an epoch bump) that the truncation would bring back into their window. The
    /// table forgot those producers, so until it is reloaded they are treated as unknown
    /// (any sequence accepted). To be exact, restore the newest snapshot covering at most the
    /// truncation point and replay the log from it (Kafka's `truncateAndReload`).
    ReloadNeeded {
        /// Producers forgotten.
        producers_forgotten: usize,
    },
}

/// The metadata of one appended batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchMetadata {
    /// Sequence of the first record.
    pub first_sequence: i32,
    /// Sequence of the last record (wrapping past `i32::MAX` to 0).
    pub last_sequence: i32,
    /// Offset of the first record.
    pub first_offset: u64,
    /// Offset of the last record.
    pub last_offset: u64,
    /// The batch's largest record timestamp (ms since the Unix epoch), as Kafka uses for
    /// producer expiration.
    pub max_timestamp: i64,
}

/// The state of one producer in one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    epoch: i16,
    /// Oldest first; `window[..window_len]` are in use, the rest hold the default.
    window: [BatchMetadata; PRODUCER_BATCH_WINDOW],
    window_len: u8,
    /// Whether batches of the current epoch were pushed out of the window: a truncation into
    /// the window would bring them back, which needs a reload.
    evicted: bool,
    /// Whether the log below the window holds batches of earlier epochs: a truncation of
    /// every batch of the current epoch would make the newest of them current again.
    earlier_epochs: bool,
}

impl ProducerEntry {
    fn new(epoch: i16, earlier_epochs: bool) -> ProducerEntry {
        ProducerEntry {
            epoch,
            window: [BatchMetadata::default(); PRODUCER_BATCH_WINDOW],
            window_len: 0,
            evicted: false,
            earlier_epochs,
        }
    }

    /// The producer's current epoch.
    pub fn epoch(&self) -> i16 {
        self.epoch
    }

    /// The remembered batches, oldest first.
    pub fn batches(&self) -> &[BatchMetadata] {
        &self.window[..usize::from(self.window_len)]
    }

    /// The producer's last remembered batch.
    pub fn last(&self) -> &BatchMetadata {
        self.batches().last().expect("a tracked producer has a batch")
    }

    fn push(&mut self, batch: BatchMetadata) {
        if usize::from(self.window_len) == PRODUCER_BATCH_WINDOW {
            self.window.copy_within(1.., 0);
            self.window_len -= 1;
            self.window[usize::from(self.window_len)] = BatchMetadata::default();
            self.evicted = true;
        }
        self.window[usize::from(self.window_len)] = batch;
        self.window_len += 1;
    }

    fn find_duplicate(&self, first_sequence: i32, last_sequence: i32) -> Option<&BatchMetadata> {
        self.batches()
            .iter()
            .find(|b| b.first_sequence == first_sequence && b.last_sequence == last_sequence)
    }
}

/// The sequence `delta` records after `sequence`, wrapping past `i32::MAX` to 0 as Kafka's
/// `DefaultRecordBatch.incrementSequence` does.
///
/// # Panics
/// If `sequence` or `delta` is negative.
pub fn sequence_after(sequence: i32, delta: i32) -> i32 {
    assert!(sequence >= 0 && delta >= 0, "sequences and deltas are not negative");
    if sequence > i32::MAX - delta { delta - (i32::MAX - sequence) - 1 } else { sequence + delta }
}

/// The producer state of one partition. See the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStateTable {
    /// Ordered by producer id so that snapshots are deterministic.
    producers: BTreeMap<i64, ProducerEntry>,
    /// The offset after the last batch the table has seen: it reflects the log below it.
    covered_end_offset: u64,
}

impl ProducerStateTable {
    /// An empty table covering no log.
    pub fn new() -> ProducerStateTable {
        ProducerStateTable::default()
    }

    /// The offset after the last batch the table reflects; recovery replays from here.
    pub fn covered_end_offset(&self) -> u64 {
        self.covered_end_offset
    }

    /// Producers tracked.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// Whether no producer is tracked.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// The state of producer `producer_id`, if tracked.
    pub fn producer(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Decides what a leader does with the produced batch `header` before appending it.
    pub fn check(&self, header: &BatchHeader) -> Result<ProducerCheck, ProducerError> {
        if header.producer_id < 0 {
            return Ok(ProducerCheck::Append);
        }
        let (producer_id, epoch, first) =
            (header.producer_id, header.producer_epoch, header.base_sequence);
        if epoch < 0 || first < 0 || header.last_offset_delta < 0 {
            return Err(ProducerError::InvalidBatch { producer_id, epoch, sequence: first });
        }
        let Some(entry) = self.producers.get(&producer_id) else {
            // KIP-360: an unknown producer may start anywhere (its state may have expired).
            return Ok(ProducerCheck::Append);
        };
        if epoch < entry.epoch {
            return Err(ProducerError::InvalidProducerEpoch {
                producer_id,
                epoch,
                current: entry.epoch,
            });
        }
        if epoch > entry.epoch {
            if first != 0 {
                let expected = 0;
                return Err(ProducerError::OutOfOrderSequence {
                    producer_id,
                    epoch,
                    expected,
                    found: first,
                });
            }
            return Ok(ProducerCheck::Append);
        }
        let last = sequence_after(first, header.last_offset_delta);
        if let Some(original) = entry.find_duplicate(first, last) {
            return Ok(ProducerCheck::Duplicate {
                base_offset: original.first_offset,
                last_offset: original.last_offset,
            });
        }
        let expected = sequence_after(entry.last().last_sequence, 1);
        if first != expected {
            return Err(ProducerError::OutOfOrderSequence {
                producer_id,
                epoch,
                expected,
                found: first,
            });
        }
        Ok(ProducerCheck::Append)
    }

    /// Records that the batch `header` is in the log at `base_offset` (a leader's append
    /// after [`check`](Self::check) said `Append`, or a follower's append of the leader's
    /// batch). Sequences are not checked here: a follower takes the leader's log as it is.
    ///
    /// # Panics
    /// If `base_offset` is below [`covered_end_offset`](Self::covered_end_offset): batches
    /// come in offset order.
    pub fn appended(&mut self, header: &BatchHeader, base_offset: u64) -> Applied {
        assert!(base_offset >= self.covered_end_offset, "batches come in offset order");
        assert!(header.last_offset_delta >= 0, "a validated batch");
        let last_offset = base_offset + header.last_offset_delta as u64;
        self.covered_end_offset = last_offset + 1;
        let producer_id = header.producer_id;
        let untracked = producer_id < 0 || header.attributes & ATTRIBUTE_CONTROL != 0;
        if untracked || header.producer_epoch < 0 || header.base_sequence < 0 {
            return Applied::Untracked;
        }
        let batch = BatchMetadata {
            first_sequence: header.base_sequence,
            last_sequence: sequence_after(header.base_sequence, header.last_offset_delta),
            first_offset: base_offset,
            last_offset,
            max_timestamp: header.max_timestamp,
        };
        let mut applied = Applied::Tracked;
        let epoch = header.producer_epoch;
        match self.producers.get_mut(&producer_id) {
            Some(entry) if epoch < entry.epoch => return Applied::StaleEpochIgnored,
            Some(entry) if epoch > entry.epoch => *entry = ProducerEntry::new(epoch, true),
            Some(_) => {}
            None => {
                if self.producers.len() == PRODUCERS_PER_PARTITION_MAX {
                    let evicted_producer_id = self.evict_oldest();
                    applied = Applied::TrackedEvicting { evicted_producer_id };
                }
                self.producers.insert(producer_id, ProducerEntry::new(epoch, false));
            }
        }
        self.producers.get_mut(&producer_id).expect("inserted above").push(batch);
        applied
    }

    /// Forgets the producer whose last batch is oldest and returns its id.
    fn evict_oldest(&mut self) -> i64 {
        let oldest = self
            .producers
            .iter()
            .min_by_key(|(id, entry)| (entry.last().last_offset, **id))
            .map(|(id, _)| *id)
            .expect("a full table is not empty");
        self.producers.remove(&oldest);
        oldest
    }

    /// Applies the log batch `header` (at its own base offset) during recovery or when a new
    /// leader rebuilds its state; a batch wholly below
    /// [`covered_end_offset`](Self::covered_end_offset) (already in a restored snapshot) is
    /// skipped. Returns `None` when skipped.
    ///
    /// # Panics
    /// If the batch straddles the covered offset or has a negative base offset: batches are
    /// whole and the covered offset is a batch boundary.
    pub fn replay(&mut self, header: &BatchHeader) -> Option<Applied> {
        let base_offset = u64::try_from(header.base_offset).expect("log offsets are not negative");
        if base_offset < self.covered_end_offset {
            assert!(
                header.last_offset() < self.covered_end_offset as i64,
                "a batch straddles the covered offset {}",
                self.covered_end_offset
            );
            return None;
        }
        Some(self.appended(header, base_offset))
    }

    /// Drops every remembered batch at or past `offset` after the log was truncated there (a
    /// follower's KIP-101 truncation). A producer left with no batch is forgotten.
    pub fn truncate_to(&mut self, offset: u64) -> Truncation {
        self.covered_end_offset = self.covered_end_offset.min(offset);
        let mut producers_forgotten = 0;
        self.producers.retain(|_, entry| {
            let kept = entry.batches().iter().take_while(|b| b.last_offset < offset).count();
            if kept == usize::from(entry.window_len) {
                return true;
            }
            if entry.evicted || (kept == 0 && entry.earlier_epochs) {
                producers_forgotten += 1;
                return false;
            }
            // Unused slots stay at their default so that equal tables compare equal.
            entry.window[kept..].fill(BatchMetadata::default());
            entry.window_len = u8::try_from(kept).expect("a window fits in u8");
            kept > 0
        });
        self.invariants();
        match producers_forgotten {
            0 => Truncation::Exact,
            producers_forgotten => Truncation::ReloadNeeded { producers_forgotten },
        }
    }

    /// The log start moved to `log_start_offset` (retention, DeleteRecords, or a replica
    /// whose whole log was replaced): nothing below it can be replayed any more, so the
    /// covered offset moves up to it. Every producer is kept, with its whole window, even
    /// one whose batches all lie below the new start: since KIP-360 (Kafka 2.5) only
    /// `producer.id.expiration.ms` ([`ProducerStateTable::expire`]) forgets a producer, so
    /// that a retry of a batch retention removed is still answered as a duplicate rather
    /// than written a second time.
    pub fn log_start_moved(&mut self, log_start_offset: u64) {
        self.covered_end_offset = self.covered_end_offset.max(log_start_offset);
    }

    /// The producers whose every remembered batch lies below `offset`, as a table covering
    /// the log below it: what a replica whose log restarts at `offset` (a follower behind a
    /// leader's log start) cannot learn from the log it copies (decision 0034).
    pub fn retained_below(&self, offset: u64) -> ProducerStateTable {
        let producers = self
            .producers
            .iter()
            .filter(|(_, entry)| entry.last().last_offset < offset)
            .map(|(id, entry)| (*id, entry.clone()))
            .collect();
        let table = ProducerStateTable { producers, covered_end_offset: offset };
        table.invariants();
        table
    }

    /// Takes in the producers of `handed` (a leader's [`Self::retained_below`] this table's
    /// log start) that this table does not know, or knows only from older batches, as long
    /// as the table has room. Returns how many it took.
    ///
    /// # Panics
    /// If `handed` covers more of the log than this table: its batches must lie below what
    /// this table reflects.
    pub fn adopt(&mut self, handed: &ProducerStateTable) -> usize {
        assert!(handed.covered_end_offset <= self.covered_end_offset, "handed state runs ahead");
        let mut taken = 0;
        for (id, entry) in &handed.producers {
            let newer = match self.producers.get(id) {
                Some(ours) => ours.last().last_offset < entry.last().last_offset,
                None => self.producers.len() < PRODUCERS_PER_PARTITION_MAX,
            };
            if newer {
                self.producers.insert(*id, entry.clone());
                taken += 1;
            }
        }
        self.invariants();
        taken
    }

    /// Forgets every producer whose last batch's timestamp is at least `expiration` before
    /// `now` (Kafka's `producer.id.expiration.ms`, default
    /// [`PRODUCER_ID_EXPIRATION_MS_DEFAULT`](crate::core::limits::PRODUCER_ID_EXPIRATION_MS_DEFAULT)).
    /// Returns how many were forgotten.
    pub fn expire(&mut self, now: Instant, expiration: Duration) -> usize {
        let expiration_ms = i64::try_from(expiration.as_millis()).unwrap_or(i64::MAX);
        let now_ms = now.as_millis();
        let before = self.producers.len();
        self.producers
            .retain(|_, entry| now_ms.saturating_sub(entry.last().max_timestamp) < expiration_ms);
        before - self.producers.len()
    }

    /// Checks the table's invariants; a failure is a bug.
    pub fn invariants(&self) {
        assert!(self.producers.len() <= PRODUCERS_PER_PARTITION_MAX, "too many producers");
        for (id, entry) in &self.producers {
            assert!(*id >= 0, "producer ids are not negative");
            assert!(entry.epoch >= 0, "producer epochs are not negative");
            assert!(entry.window_len >= 1, "a tracked producer has a batch");
            assert!(usize::from(entry.window_len) <= PRODUCER_BATCH_WINDOW, "window overflow");
            for batch in entry.batches() {
                assert!(batch.first_offset <= batch.last_offset, "a batch's offsets are ordered");
                assert!(batch.last_offset < self.covered_end_offset, "a batch beyond coverage");
                let span = batch.last_offset - batch.first_offset;
                let span = i32::try_from(span).expect("a batch spans under 2^31 offsets");
                let last = sequence_after(batch.first_sequence, span);
                assert_eq!(batch.last_sequence, last, "sequences span as offsets do");
            }
            let unused = &entry.window[usize::from(entry.window_len)..];
            assert!(unused.iter().all(|b| *b == BatchMetadata::default()), "stale window slots");
            for pair in entry.batches().windows(2) {
                assert!(pair[0].last_offset < pair[1].first_offset, "batches in offset order");
            }
        }
    }
}
