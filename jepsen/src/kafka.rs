//! The Kafka checks of design §9, after Elle's Kafka checker (jepsen.tests.kafka).
//!
//! Everything is a scan. While the history streams past, [`Kafka`] builds per
//! topic-partition the version order (offset -> value and value -> offset) from every poll
//! and every acknowledged `acks=all` send, and checks what can be checked on the spot:
//! `nonmonotonic-send`, `nonmonotonic-poll` and `realtime-order`. What needs the whole
//! version order waits for [`Kafka::finish`]: `lost-write`, `unseen`, `duplicate`,
//! `inconsistent-offsets`, `aborted-read`, `phantom-read`, and `poll-skip` (a consumer's
//! jump from offset a to offset b is a skip only if some offset strictly between them is
//! known to exist, which the rest of the history may still reveal).
//!
//! Memory grows with the number of distinct values and offsets, not with the number of
//! lines or reads: a value read a thousand times costs one entry.
//!
//! Sends with `acks=0` or `acks=1` add nothing to the version order: Kafka may truncate
//! them on a leader change and hand their offsets to other records, so an offset they were
//! acknowledged at proves nothing. They still count as "sent" for `phantom-read` and
//! `aborted-read`.

use std::collections::hash_map::Entry;

use crate::fast_hash::FastMap;
use crate::found::Found;
use crate::history::{Acks, OpType, Process, Record, Send};
use crate::limits::POLL_SKIP_OFFSETS_SHOWN_MAX;
use crate::report::{
    Anomaly, BadRead, Duplicate, InconsistentOffsets, LostWrite, OpRef, ProcessOrder,
    RealtimeOrder, Seen, Stats, Unseen,
};

/// Index into [`Kafka::partitions`].
type PartitionId = u32;

/// The Kafka checks' state; fed by [`crate::Checker`] one operation at a time.
#[derive(Default)]
pub(crate) struct Kafka {
    topic_ids: FastMap<String, u32>,
    topic_names: Vec<String>,
    partition_ids: FastMap<(u32, i32), PartitionId>,
    partitions: Vec<PartitionLog>,
    processes: FastMap<Process, ProcessTrack>,
    /// Successive reads of one consumer that jump over offsets; a `poll-skip` if an offset
    /// in between is known by the end.
    gaps: Vec<Gap>,
    /// Counts of what the history exercised; the checker adds its own.
    pub(crate) stats: Stats,
}

/// One topic-partition's version order and what was sent to it.
struct PartitionLog {
    topic: u32,
    partition: i32,
    values: FastMap<i64, ValueState>,
    /// The first value seen at each offset.
    offsets: FastMap<i64, Seen>,
    /// Offsets seen with more than one value: every distinct value, first observer each.
    offsets_conflicting: FastMap<i64, Vec<Seen>>,
    /// Values seen at more than one offset: every distinct offset, first observer each.
    values_duplicated: FastMap<i64, Vec<Seen>>,
    /// The highest offset any poll read.
    read_max: Option<Seen>,
    /// The highest offset of an `acks=all` send that completed `ok` so far.
    send_completed_max: Option<Seen>,
}

#[derive(Default)]
struct ValueState {
    send: Option<SendState>,
    /// The first poll that read this value.
    read: Option<Seen>,
    /// Whether a poll of the final drain read this value.
    drained: bool,
    /// The first offset this value was seen at in the version order.
    first: Option<Seen>,
}

#[derive(Clone, Copy)]
struct SendState {
    status: SendStatus,
    acks_all: bool,
    op: OpRef,
    offset: Option<i64>,
}

/// Ordered from weakest to strongest evidence that the value was written.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum SendStatus {
    Failed,
    Unknown,
    Acknowledged,
}

#[derive(Default)]
struct ProcessTrack {
    /// The last acknowledged `acks=all` send to each partition.
    last_sends: FastMap<PartitionId, Seen>,
    /// The last record read from each partition since the last assign, subscribe or crash.
    last_reads: FastMap<PartitionId, Seen>,
}

struct Gap {
    partition: PartitionId,
    process: Process,
    previous: Seen,
    next: Seen,
}

/// What the checker keeps about a send between its invocation and its completion.
#[derive(Clone, Copy)]
pub(crate) struct PendingSend {
    partition: PartitionId,
    value: i64,
    acks: Acks,
    /// The highest acknowledged `acks=all` offset when this send was invoked: every send
    /// that completed before this one began. `realtime-order` compares against it.
    completed_max_at_invoke: Option<Seen>,
}

impl PendingSend {
    /// Whether `send` names the same record as the invocation did.
    pub(crate) fn matches(&self, kafka: &Kafka, send: &Send) -> bool {
        let log = &kafka.partitions[self.partition as usize];
        send.value == self.value
            && send.partition == log.partition
            && kafka.topic_names[log.topic as usize] == send.topic
    }

    /// The invocation's `acks`.
    pub(crate) fn acks(&self) -> Acks {
        self.acks
    }

    /// The record invoked, as `topic/partition value v`.
    pub(crate) fn describe(&self, kafka: &Kafka) -> String {
        let log = &kafka.partitions[self.partition as usize];
        let topic = &kafka.topic_names[log.topic as usize];
        format!("{topic}/{} value {}", log.partition, self.value)
    }
}

impl Kafka {
    fn partition_id(&mut self, topic: &str, partition: i32) -> PartitionId {
        let topic_id = match self.topic_ids.get(topic) {
            Some(&id) => id,
            None => {
                let id = u32::try_from(self.topic_names.len()).expect("fewer than 2^32 topics");
                self.topic_ids.insert(topic.to_string(), id);
                self.topic_names.push(topic.to_string());
                id
            }
        };
        match self.partition_ids.entry((topic_id, partition)) {
            Entry::Occupied(entry) => *entry.get(),
            Entry::Vacant(entry) => {
                let id = u32::try_from(self.partitions.len()).expect("fewer than 2^32 partitions");
                self.partitions.push(PartitionLog::new(topic_id, partition));
                *entry.insert(id)
            }
        }
    }

    /// A send was invoked.
    pub(crate) fn handle_send_invoke(&mut self, op: OpRef, send: &Send) -> PendingSend {
        self.stats.sends += 1;
        let partition = self.partition_id(&send.topic, send.partition);
        let log = &mut self.partitions[partition as usize];
        let state = log.values.entry(send.value).or_default();
        let attempt = SendState {
            status: SendStatus::Unknown,
            acks_all: send.acks() == Acks::All,
            op,
            offset: None,
        };
        state.send = Some(match state.send {
            Some(earlier) if earlier.status > attempt.status => earlier,
            _ => attempt,
        });
        PendingSend {
            partition,
            value: send.value,
            acks: send.acks(),
            completed_max_at_invoke: log.send_completed_max,
        }
    }

    /// A send completed (`ok`, `fail` or `info`); `offset` is set on `ok` unless `acks=0`.
    pub(crate) fn handle_send_complete(
        &mut self,
        pending: PendingSend,
        op: OpRef,
        offset: Option<i64>,
        found: &mut Found,
    ) {
        let status = match op.kind {
            OpType::Ok => SendStatus::Acknowledged,
            OpType::Fail => SendStatus::Failed,
            OpType::Info | OpType::Invoke => SendStatus::Unknown,
        };
        match status {
            SendStatus::Acknowledged => self.stats.sends_ok += 1,
            SendStatus::Failed => self.stats.sends_failed += 1,
            SendStatus::Unknown => self.stats.sends_unknown += 1,
        }
        let acks_all = pending.acks == Acks::All;
        let log = &mut self.partitions[pending.partition as usize];
        let state = log.values.entry(pending.value).or_default();
        let completed = SendState { status, acks_all, op, offset };
        state.send = Some(match state.send {
            // Another attempt with the same value already proved more; keep it.
            Some(other) if other.status > status && other.op.invoke != op.invoke => other,
            _ => completed,
        });
        let Some(offset) = offset.filter(|_| status == SendStatus::Acknowledged && acks_all) else {
            return;
        };
        let seen = Seen { value: pending.value, offset, op };
        log.observe(seen);
        let topic = &self.topic_names[log.topic as usize];
        if let Some(earlier) = pending.completed_max_at_invoke.filter(|e| e.offset > offset) {
            found.push(Anomaly::RealtimeOrder(RealtimeOrder {
                topic: topic.clone(),
                partition: log.partition,
                earlier,
                later: seen,
            }));
        }
        if log.send_completed_max.is_none_or(|max| max.offset < offset) {
            log.send_completed_max = Some(seen);
        }
        let track = self.processes.entry(op.process).or_default();
        if let Some(previous) = track.last_sends.insert(pending.partition, seen)
            && offset <= previous.offset
        {
            found.push(Anomaly::NonmonotonicSend(ProcessOrder {
                topic: topic.clone(),
                partition: log.partition,
                process: op.process,
                previous,
                next: seen,
                skipped_count: None,
                skipped: Vec::new(),
            }));
        }
    }

    /// A poll completed `ok` with `records`.
    pub(crate) fn handle_poll_ok(
        &mut self,
        op: OpRef,
        records: &[Record],
        is_final: bool,
        found: &mut Found,
    ) {
        self.stats.polls_ok += 1;
        self.stats.records_read += records.len() as u64;
        self.stats.final_drain |= is_final;
        for record in records {
            let partition = self.partition_id(&record.topic, record.partition);
            let seen = Seen { value: record.value, offset: record.offset, op };
            let log = &mut self.partitions[partition as usize];
            log.observe(seen);
            let state = log.values.get_mut(&record.value).expect("observe() created the value");
            state.read.get_or_insert(seen);
            state.drained |= is_final;
            if log.read_max.is_none_or(|max| max.offset < record.offset) {
                log.read_max = Some(seen);
            }
            let track = self.processes.entry(op.process).or_default();
            let Some(previous) = track.last_reads.insert(partition, seen) else {
                continue;
            };
            if record.offset <= previous.offset {
                found.push(Anomaly::NonmonotonicPoll(ProcessOrder {
                    topic: self.topic_names[log.topic as usize].clone(),
                    partition: log.partition,
                    process: op.process,
                    previous,
                    next: seen,
                    skipped_count: None,
                    skipped: Vec::new(),
                }));
            } else if record.offset > previous.offset + 1 {
                self.gaps.push(Gap { partition, process: op.process, previous, next: seen });
            }
        }
    }

    /// The consumer of `process` starts afresh: an assign, a subscribe, a crash, or a poll
    /// whose outcome is unknown (it may have moved the position without telling us).
    pub(crate) fn handle_consumer_reset(&mut self, process: Process) {
        if let Some(track) = self.processes.get_mut(&process) {
            track.last_reads.clear();
        }
    }

    /// Runs the checks that need the whole version order.
    pub(crate) fn finish(&mut self, found: &mut Found) {
        self.stats.partitions = self.partitions.len() as u64;
        let final_drain = self.stats.final_drain;
        for log in &self.partitions {
            let topic = &self.topic_names[log.topic as usize];
            log.check_values(topic, final_drain, found, &mut self.stats);
            log.check_version_order(topic, found);
        }
        self.check_gaps(found);
    }

    fn check_gaps(&mut self, found: &mut Found) {
        let mut known_offsets: FastMap<PartitionId, Vec<i64>> = FastMap::default();
        for gap in &self.gaps {
            let log = &self.partitions[gap.partition as usize];
            let known = known_offsets.entry(gap.partition).or_insert_with(|| {
                let mut offsets: Vec<i64> = log.offsets.keys().copied().collect();
                offsets.sort_unstable();
                offsets
            });
            let low = known.partition_point(|&o| o <= gap.previous.offset);
            let high = known.partition_point(|&o| o < gap.next.offset);
            if high <= low {
                continue;
            }
            let shown = (high - low).min(POLL_SKIP_OFFSETS_SHOWN_MAX);
            found.push(Anomaly::PollSkip(ProcessOrder {
                topic: self.topic_names[log.topic as usize].clone(),
                partition: log.partition,
                process: gap.process,
                previous: gap.previous,
                next: gap.next,
                skipped_count: Some((high - low) as u64),
                skipped: known[low..low + shown].to_vec(),
            }));
        }
    }
}

impl PartitionLog {
    fn new(topic: u32, partition: i32) -> Self {
        PartitionLog {
            topic,
            partition,
            values: FastMap::default(),
            offsets: FastMap::default(),
            offsets_conflicting: FastMap::default(),
            values_duplicated: FastMap::default(),
            read_max: None,
            send_completed_max: None,
        }
    }

    /// Adds one (offset, value) pair to the version order.
    fn observe(&mut self, seen: Seen) {
        let state = self.values.entry(seen.value).or_default();
        match state.first {
            None => state.first = Some(seen),
            Some(first) if first.offset != seen.offset => {
                let all = self.values_duplicated.entry(seen.value).or_insert_with(|| vec![first]);
                if all.iter().all(|s| s.offset != seen.offset) {
                    all.push(seen);
                }
            }
            Some(_) => {}
        }
        match self.offsets.entry(seen.offset) {
            Entry::Vacant(entry) => {
                entry.insert(seen);
            }
            Entry::Occupied(entry) if entry.get().value != seen.value => {
                let first = *entry.get();
                let all =
                    self.offsets_conflicting.entry(seen.offset).or_insert_with(|| vec![first]);
                if all.iter().all(|s| s.value != seen.value) {
                    all.push(seen);
                }
            }
            Entry::Occupied(_) => {}
        }
    }

    /// `lost-write`, `unseen`, `aborted-read` and `phantom-read`: per value, what was sent
    /// against what was read.
    fn check_values(&self, topic: &str, final_drain: bool, found: &mut Found, stats: &mut Stats) {
        let mut values: Vec<(&i64, &ValueState)> = self.values.iter().collect();
        values.sort_unstable_by_key(|(value, _)| **value);
        for (&value, state) in values {
            if state.read.is_some() {
                stats.values_read += 1;
            }
            let anomaly = match (state.send, state.read) {
                (Some(send), None) => self.check_unread(topic, value, send, final_drain),
                (Some(send), Some(read)) if send.status == SendStatus::Failed => {
                    Some(Anomaly::AbortedRead(self.bad_read(topic, read, Some(send.op))))
                }
                (Some(send), Some(read)) => {
                    if send.status == SendStatus::Acknowledged && send.acks_all {
                        stats.acknowledged_values_read += 1;
                    }
                    self.check_undrained(topic, value, state, send, read, final_drain)
                }
                (None, Some(read)) => Some(Anomaly::PhantomRead(self.bad_read(topic, read, None))),
                (None, None) => None,
            };
            if let Some(anomaly) = anomaly {
                found.push(anomaly);
            }
        }
    }

    fn check_unread(
        &self,
        topic: &str,
        value: i64,
        send: SendState,
        final_drain: bool,
    ) -> Option<Anomaly> {
        if send.status != SendStatus::Acknowledged || !send.acks_all {
            return None;
        }
        let offset = send.offset?;
        match self.read_max {
            Some(read_above) if read_above.offset > offset => Some(Anomaly::LostWrite(LostWrite {
                topic: topic.to_string(),
                partition: self.partition,
                value,
                offset,
                send: send.op,
                read_above,
            })),
            _ if final_drain => Some(Anomaly::Unseen(Unseen {
                topic: topic.to_string(),
                partition: self.partition,
                value,
                offset,
                send: send.op,
                read_before: None,
            })),
            _ => None,
        }
    }

    /// `unseen` for a value some poll read: an acknowledged `acks=all` value that the final
    /// drain, which reads every partition from its log start to its end, did not read. The
    /// log lost it after it was read (truncated below it, say).
    fn check_undrained(
        &self,
        topic: &str,
        value: i64,
        state: &ValueState,
        send: SendState,
        read: Seen,
        final_drain: bool,
    ) -> Option<Anomaly> {
        if !final_drain
            || state.drained
            || send.status != SendStatus::Acknowledged
            || !send.acks_all
        {
            return None;
        }
        Some(Anomaly::Unseen(Unseen {
            topic: topic.to_string(),
            partition: self.partition,
            value,
            // The offset it was acknowledged at, or else the first it was read at.
            offset: send.offset.unwrap_or(read.offset),
            send: send.op,
            read_before: Some(read),
        }))
    }

    fn bad_read(&self, topic: &str, read: Seen, send: Option<OpRef>) -> BadRead {
        BadRead {
            topic: topic.to_string(),
            partition: self.partition,
            value: read.value,
            offset: read.offset,
            read: read.op,
            send,
        }
    }

    /// `duplicate` and `inconsistent-offsets`: the version order must be a bijection.
    fn check_version_order(&self, topic: &str, found: &mut Found) {
        let mut duplicated: Vec<(&i64, &Vec<Seen>)> = self.values_duplicated.iter().collect();
        duplicated.sort_unstable_by_key(|(value, _)| **value);
        for (&value, seen) in duplicated {
            found.push(Anomaly::Duplicate(Duplicate {
                topic: topic.to_string(),
                partition: self.partition,
                value,
                seen: seen.clone(),
            }));
        }
        let mut conflicting: Vec<(&i64, &Vec<Seen>)> = self.offsets_conflicting.iter().collect();
        conflicting.sort_unstable_by_key(|(offset, _)| **offset);
        for (&offset, seen) in conflicting {
            found.push(Anomaly::InconsistentOffsets(InconsistentOffsets {
                topic: topic.to_string(),
                partition: self.partition,
                offset,
                seen: seen.clone(),
            }));
        }
    }
}
