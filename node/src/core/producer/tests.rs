use rand::Rng;

use super::*;
use crate::core::limits::PRODUCER_ID_EXPIRATION_MS_DEFAULT;
use crate::core::rng::{CoreRng, seeded};

const MAX: i32 = i32::MAX;

/// The header of a produced batch of `records` records, before the leader assigns offsets.
fn header(producer_id: i64, epoch: i16, sequence: i32, records: i32) -> BatchHeader {
    BatchHeader {
        base_offset: 0,
        batch_length: 49,
        partition_leader_epoch: 0,
        magic: 2,
        crc: 0,
        attributes: 0,
        last_offset_delta: records - 1,
        base_timestamp: 1_000,
        max_timestamp: 1_000,
        producer_id,
        producer_epoch: epoch,
        base_sequence: sequence,
        record_count: records,
    }
}

/// What a leader answers a produce with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Appended at this base offset.
    Appended(u64),
    /// Answered as a duplicate with these offsets.
    Duplicate(u64, u64),
    Refused(ProducerError),
}

/// One partition leader: the table and the headers of its log, offsets assigned.
#[derive(Default)]
struct Leader {
    table: ProducerStateTable,
    log: Vec<BatchHeader>,
    end_offset: u64,
}

impl Leader {
    fn produce(&mut self, mut batch: BatchHeader) -> Outcome {
        let outcome = match self.table.check(&batch) {
            Err(error) => Outcome::Refused(error),
            Ok(ProducerCheck::Duplicate { base_offset, last_offset }) => {
                Outcome::Duplicate(base_offset, last_offset)
            }
            Ok(ProducerCheck::Append) => {
                let base_offset = self.end_offset;
                batch.base_offset = base_offset as i64;
                let applied = self.table.appended(&batch, base_offset);
                assert_ne!(applied, Applied::StaleEpochIgnored);
                self.log.push(batch);
                self.end_offset = batch.next_offset() as u64;
                Outcome::Appended(base_offset)
            }
        };
        self.table.invariants();
        outcome
    }
}

/// Replays the log batches below `end_offset` into `table`.
fn replay(mut table: ProducerStateTable, log: &[BatchHeader], end: u64) -> ProducerStateTable {
    for batch in log.iter().filter(|b| (b.base_offset as u64) < end) {
        table.replay(batch);
        table.invariants();
    }
    table
}

fn oos(producer_id: i64, epoch: i16, expected: i32, found: i32) -> Outcome {
    Outcome::Refused(ProducerError::OutOfOrderSequence { producer_id, epoch, expected, found })
}

fn fenced(producer_id: i64, epoch: i16, current: i16) -> Outcome {
    Outcome::Refused(ProducerError::InvalidProducerEpoch { producer_id, epoch, current })
}

#[test]
fn sequences_wrap_past_i32_max_as_kafka_does() {
    let table = [(5, 2, 7), (MAX, 0, MAX), (MAX, 1, 0), (MAX - 1, 3, 1), (MAX - 2, 2, MAX)];
    for (sequence, delta, expected) in table {
        assert_eq!(sequence_after(sequence, delta), expected, "{sequence} + {delta}");
    }
}

#[test]
fn outcomes_of_one_producer_in_order_retried_gapped_fenced_and_bumped() {
    use Outcome::{Appended, Duplicate};
    let mut leader = Leader::default();
    let table = [
        // Six batches of two records: the first is pushed out of the window of five.
        (header(7, 0, 0, 2), Appended(0)),
        (header(7, 0, 2, 2), Appended(2)),
        (header(7, 0, 4, 2), Appended(4)),
        (header(7, 0, 6, 2), Appended(6)),
        (header(7, 0, 8, 2), Appended(8)),
        (header(7, 0, 10, 2), Appended(10)),
        // A retry of each of the last five gets its original offsets.
        (header(7, 0, 2, 2), Duplicate(2, 3)),
        (header(7, 0, 4, 2), Duplicate(4, 5)),
        (header(7, 0, 6, 2), Duplicate(6, 7)),
        (header(7, 0, 8, 2), Duplicate(8, 9)),
        (header(7, 0, 10, 2), Duplicate(10, 11)),
        // Older than the window, a different span, a gap.
        (header(7, 0, 0, 2), oos(7, 0, 12, 0)),
        (header(7, 0, 4, 3), oos(7, 0, 12, 4)),
        (header(7, 0, 13, 1), oos(7, 0, 12, 13)),
        (header(7, 0, 12, 1), Appended(12)),
        // A new epoch starts at 0; then the old epoch is fenced, even for a retry.
        (header(7, 1, 13, 1), oos(7, 1, 0, 13)),
        (header(7, 1, 0, 3), Appended(13)),
        (header(7, 1, 0, 3), Duplicate(13, 15)),
        (header(7, 0, 13, 1), fenced(7, 0, 1)),
        (header(7, 0, 12, 1), fenced(7, 0, 1)),
        (header(7, 1, 3, 1), Appended(16)),
        // An unknown producer may start anywhere (KIP-360); -1 is not idempotent.
        (header(8, 4, 42, 1), Appended(17)),
        (header(8, 4, 44, 1), oos(8, 4, 43, 44)),
        (header(NO_PRODUCER_ID, -1, -1, 2), Appended(18)),
        (header(NO_PRODUCER_ID, -1, -1, 2), Appended(20)),
        (
            header(9, 0, -1, 1),
            Outcome::Refused(ProducerError::InvalidBatch {
                producer_id: 9,
                epoch: 0,
                sequence: -1,
            }),
        ),
    ];
    for (i, (batch, expected)) in table.into_iter().enumerate() {
        assert_eq!(leader.produce(batch), expected, "row {i}: {batch:?}");
    }
    assert_eq!(leader.table.len(), 2, "producers 7 and 8; -1 and the refused 9 untracked");
    assert_eq!(leader.table.producer(7).map(ProducerEntry::epoch), Some(1));
    assert_eq!(leader.table.producer(7).map(|p| p.batches().len()), Some(2));
    assert_eq!(leader.table.covered_end_offset(), 22);
}

#[test]
fn sequences_wrap_from_i32_max_to_zero() {
    use Outcome::{Appended, Duplicate};
    let mut leader = Leader::default();
    let table = [
        (header(1, 0, MAX - 2, 3), Appended(0)),
        (header(1, 0, 1, 1), oos(1, 0, 0, 1)),
        (header(1, 0, 0, 2), Appended(3)),
        // A batch that itself wraps: sequences MAX-1, MAX, 0.
        (header(2, 0, MAX - 1, 3), Appended(5)),
        (header(2, 0, MAX - 1, 3), Duplicate(5, 7)),
        (header(2, 0, 0, 1), oos(2, 0, 1, 0)),
        (header(2, 0, 1, 1), Appended(8)),
    ];
    for (i, (batch, expected)) in table.into_iter().enumerate() {
        assert_eq!(leader.produce(batch), expected, "row {i}: {batch:?}");
    }
}

/// A batch a simulated producer sent, kept to retry it later.
#[derive(Clone, Copy)]
struct Sent {
    epoch: i16,
    sequence: i32,
    records: i32,
    offsets: (u64, u64),
}

/// A simulated idempotent producer and what the partition should answer it.
struct Model {
    id: i64,
    epoch: i16,
    next_sequence: i32,
    known: bool,
    sent: Vec<Sent>,
}

impl Model {
    /// A random batch and the exact outcome the partition must give it.
    fn step(&mut self, rng: &mut CoreRng, end_offset: u64) -> (BatchHeader, Outcome) {
        let records = rng.random_range(1..4);
        match rng.random_range(0..10) {
            0..=4 => self.in_order(records, end_offset),
            5 | 6 if !self.sent.is_empty() => self.retry(rng),
            7 if self.known => {
                let skip = rng.random_range(1..3);
                let sequence = sequence_after(self.next_sequence, skip);
                let outcome = oos(self.id, self.epoch, self.next_sequence, sequence);
                (header(self.id, self.epoch, sequence, records), outcome)
            }
            8 if self.known && self.epoch > 0 => {
                let stale = self.epoch - 1;
                let batch = header(self.id, stale, self.next_sequence, records);
                (batch, fenced(self.id, stale, self.epoch))
            }
            9 if self.known => {
                self.epoch += 1;
                self.next_sequence = 0;
                self.in_order(records, end_offset)
            }
            _ => self.in_order(records, end_offset),
        }
    }

    fn in_order(&mut self, records: i32, end_offset: u64) -> (BatchHeader, Outcome) {
        let batch = header(self.id, self.epoch, self.next_sequence, records);
        let offsets = (end_offset, end_offset + records as u64 - 1);
        let sent = Sent { epoch: self.epoch, sequence: self.next_sequence, records, offsets };
        self.sent.push(sent);
        self.next_sequence = sequence_after(self.next_sequence, records);
        self.known = true;
        (batch, Outcome::Appended(end_offset))
    }

    fn retry(&mut self, rng: &mut CoreRng) -> (BatchHeader, Outcome) {
        let index = rng.random_range(0..self.sent.len());
        let sent = self.sent[index];
        let batch = header(self.id, sent.epoch, sent.sequence, sent.records);
        let same_epoch_after = self.sent[index + 1..].iter().filter(|s| s.epoch == sent.epoch);
        let outcome = if sent.epoch < self.epoch {
            fenced(self.id, sent.epoch, self.epoch)
        } else if same_epoch_after.count() < PRODUCER_BATCH_WINDOW {
            Outcome::Duplicate(sent.offsets.0, sent.offsets.1)
        } else {
            oos(self.id, self.epoch, self.next_sequence, sent.sequence)
        };
        (batch, outcome)
    }
}

/// A leader driven by `steps` random batches of four producers (one starting near the
/// sequence wrap) and non-idempotent ones, every outcome checked against the model; returns
/// the leader and snapshots taken along the way.
fn random_run(seed: u64, steps: usize) -> (Leader, Vec<Vec<u8>>) {
    let mut rng = seeded(seed);
    let mut models: Vec<Model> = (0..4)
        .map(|id| Model { id, epoch: 0, next_sequence: 0, known: false, sent: Vec::new() })
        .collect();
    models[3].next_sequence = MAX - 6;
    let mut leader = Leader::default();
    let mut snapshots = vec![leader.table.snapshot()];
    for step in 0..steps {
        let end_offset = leader.end_offset;
        let (batch, expected) = if rng.random_ratio(1, 12) {
            (header(NO_PRODUCER_ID, -1, -1, 1), Outcome::Appended(end_offset))
        } else {
            let model = rng.random_range(0..models.len());
            models[model].step(&mut rng, end_offset)
        };
        assert_eq!(leader.produce(batch), expected, "seed {seed} step {step}: {batch:?}");
        if rng.random_ratio(1, 25) {
            snapshots.push(leader.table.snapshot());
        }
    }
    (leader, snapshots)
}

#[test]
fn rebuilding_from_the_log_or_a_snapshot_and_its_tail_equals_the_live_table() {
    for seed in 0..24 {
        let (leader, snapshots) = random_run(seed, 300);
        let end = leader.end_offset;
        let rebuilt = replay(ProducerStateTable::new(), &leader.log, end);
        assert_eq!(rebuilt, leader.table, "seed {seed}: rebuilt from the whole log");
        for snapshot in &snapshots {
            let restored = ProducerStateTable::restore(snapshot).expect("an intact snapshot");
            let from = restored.covered_end_offset();
            let rebuilt = replay(restored, &leader.log, end);
            assert_eq!(rebuilt, leader.table, "seed {seed}: from the snapshot at {from}");
        }
    }
}

#[test]
fn a_snapshot_round_trips_and_any_flipped_byte_is_refused() {
    let (leader, _) = random_run(99, 120);
    let bytes = leader.table.snapshot();
    assert!(leader.table.len() >= 4, "the snapshot holds producers");
    assert_eq!(ProducerStateTable::restore(&bytes), Ok(leader.table.clone()));
    for at in 0..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x04;
        assert!(ProducerStateTable::restore(&damaged).is_err(), "byte {at} flipped");
    }
    assert!(matches!(
        ProducerStateTable::restore(&bytes[..bytes.len() - 1]),
        Err(SnapshotError::Frame(_))
    ));
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(ProducerStateTable::restore(&longer), Err(SnapshotError::TrailingBytes(1)));
}

#[test]
fn truncation_then_rebuild_equals_the_table_of_the_truncated_log() {
    let (mut exact, mut reloads) = (0, 0);
    for seed in 0..16 {
        // Short runs too: there truncations are often exact (nothing pushed out yet).
        let (leader, snapshots) = random_run(seed, 12 + (seed as usize % 4) * 60);
        let mut rng = seeded(seed + 1000);
        for _ in 0..8 {
            let cut = leader.log[rng.random_range(0..leader.log.len())].base_offset as u64;
            let expected = replay(ProducerStateTable::new(), &leader.log, cut);
            let mut truncated = leader.table.clone();
            match truncated.truncate_to(cut) {
                Truncation::Exact => {
                    exact += 1;
                    assert_eq!(truncated, expected, "seed {seed}: exact truncation to {cut}");
                }
                Truncation::ReloadNeeded { producers_forgotten } => {
                    reloads += 1;
                    assert!(producers_forgotten >= 1);
                    let covering = snapshots
                        .iter()
                        .rev()
                        .map(|s| ProducerStateTable::restore(s).unwrap())
                        .find(|t| t.covered_end_offset() <= cut)
                        .expect("the empty snapshot covers every cut");
                    let reloaded = replay(covering, &leader.log, cut);
                    assert_eq!(reloaded, expected, "seed {seed}: reload after truncation");
                }
            }
            assert_eq!(truncated.covered_end_offset(), cut);
            truncated.invariants();
        }
    }
    assert!(exact >= 5 && reloads >= 5, "both kinds exercised: {exact} exact, {reloads} reloads");
}

#[test]
fn truncation_is_exact_within_the_window_and_asks_for_a_reload_beyond_it() {
    let mut leader = Leader::default();
    for sequence in 0..3 {
        leader.produce(header(1, 0, sequence, 1));
    }
    leader.produce(header(2, 0, 0, 1)); // offset 3
    let mut table = leader.table.clone();
    assert_eq!(table.truncate_to(3), Truncation::Exact);
    assert_eq!(table.producer(2), None, "a producer whose batches are all cut is forgotten");
    assert_eq!(table.truncate_to(1), Truncation::Exact);
    assert_eq!(table.producer(1).map(|p| p.batches().len()), Some(1));
    assert_eq!(table.check(&header(1, 0, 1, 1)), Ok(ProducerCheck::Append));

    for sequence in 3..6 {
        leader.produce(header(1, 0, sequence, 1)); // offsets 4..=6; sequence 0 is pushed out
    }
    let mut table = leader.table.clone();
    assert_eq!(table.truncate_to(6), Truncation::ReloadNeeded { producers_forgotten: 1 });
    assert_eq!(table.producer(1), None);

    leader.produce(header(2, 1, 0, 1)); // offset 7, a new epoch of producer 2
    let mut table = leader.table.clone();
    assert_eq!(table.truncate_to(7), Truncation::ReloadNeeded { producers_forgotten: 1 });
    assert_eq!(table.producer(1).map(|p| p.batches().len()), Some(5), "producer 1 untouched");
}

#[test]
fn retention_keeps_every_producer_and_moves_only_the_covered_offset() {
    let mut leader = Leader::default();
    leader.produce(header(1, 0, 0, 2)); // 0..=1
    leader.produce(header(2, 0, 0, 2)); // 2..=3
    leader.produce(header(1, 0, 2, 2)); // 4..=5
    leader.table.log_start_moved(6);
    assert_eq!(leader.table.len(), 2, "KIP-360: retention forgets no producer");
    assert_eq!(leader.table.covered_end_offset(), 6);
    assert_eq!(
        leader.table.check(&header(2, 0, 0, 2)),
        Ok(ProducerCheck::Duplicate { base_offset: 2, last_offset: 3 }),
        "a retry of a batch retention removed is still a duplicate"
    );
    assert_eq!(
        leader.table.check(&header(1, 0, 5, 1)),
        Err(ProducerError::OutOfOrderSequence { producer_id: 1, epoch: 0, expected: 4, found: 5 }),
        "a gap is still a gap once the log start passed the producer's batches"
    );
    leader.table.log_start_moved(9);
    assert_eq!(leader.table.covered_end_offset(), 9, "nothing below the log start to replay");
    leader.table.log_start_moved(7);
    assert_eq!(leader.table.covered_end_offset(), 9, "the covered offset never moves back");
    assert_eq!(leader.table.check(&header(3, 0, 9, 1)), Ok(ProducerCheck::Append));
}

#[test]
fn producers_expire_by_the_timestamp_of_their_last_batch() {
    let mut leader = Leader::default();
    let mut late = header(2, 0, 0, 1);
    late.max_timestamp = 5_000;
    leader.produce(header(1, 0, 0, 1)); // max_timestamp 1_000
    leader.produce(late);
    let expiration = Duration::from_millis(PRODUCER_ID_EXPIRATION_MS_DEFAULT);
    let at = |ms: u64| Instant::from_millis(ms + PRODUCER_ID_EXPIRATION_MS_DEFAULT);
    assert_eq!(leader.table.expire(at(999), expiration), 0);
    assert_eq!(leader.table.expire(at(1_000), expiration), 1);
    assert_eq!(leader.table.producer(1), None);
    assert!(leader.table.producer(2).is_some());
    assert_eq!(leader.table.expire(at(5_000), expiration), 1);
    assert!(leader.table.is_empty());
}

#[test]
fn a_full_table_forgets_the_producer_whose_last_batch_is_oldest() {
    let mut table = ProducerStateTable::new();
    for id in 0..PRODUCERS_PER_PARTITION_MAX as i64 {
        let offset = table.covered_end_offset();
        assert_eq!(table.appended(&header(id, 0, 0, 1), offset), Applied::Tracked);
    }
    // Producer 0 writes again, so producer 1 now has the oldest last batch.
    let offset = table.covered_end_offset();
    assert_eq!(table.appended(&header(0, 0, 1, 1), offset), Applied::Tracked);
    let offset = table.covered_end_offset();
    let newcomer = header(PRODUCERS_PER_PARTITION_MAX as i64, 0, 0, 1);
    let applied = table.appended(&newcomer, offset);
    assert_eq!(applied, Applied::TrackedEvicting { evicted_producer_id: 1 });
    assert_eq!(table.len(), PRODUCERS_PER_PARTITION_MAX);
    assert_eq!(table.producer(1), None);
    assert_eq!(table.check(&header(1, 0, 7, 1)), Ok(ProducerCheck::Append), "now unknown");
    table.invariants();
}

#[test]
fn follower_appends_take_the_log_as_it_is_and_ignore_a_stale_epoch() {
    let mut table = ProducerStateTable::new();
    assert_eq!(table.appended(&header(1, 3, 0, 1), 10), Applied::Tracked);
    assert_eq!(table.appended(&header(1, 3, 5, 1), 11), Applied::Tracked, "no sequence check");
    assert_eq!(table.appended(&header(1, 2, 6, 1), 12), Applied::StaleEpochIgnored);
    let mut control = header(1, 3, 6, 1);
    control.attributes = ATTRIBUTE_CONTROL;
    assert_eq!(table.appended(&control, 13), Applied::Untracked);
    assert_eq!(table.producer(1).map(|p| p.last().last_offset), Some(11));
    assert_eq!(table.covered_end_offset(), 14);
    table.invariants();
}
