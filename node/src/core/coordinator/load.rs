//! Loading an offsets partition: a new leader epoch reads its partition from the log start to
//! the log end it had when it became leader, applying every record in order, then serves the
//! groups it found (module documentation of `core::coordinator`).

use std::collections::BTreeMap;

use bytes::Bytes;

use super::records::{self, GroupValue, Record};
use super::{
    CommittedOffset, Coordinator, CoordinatorOutput, GroupEntry, ReadOutcome, Shard,
    committed_from, group_snapshot,
};
use crate::core::group::Group;
use crate::core::limits::COORDINATOR_LOAD_RETRY;
use crate::core::log::batch::BatchScan;
use crate::core::node::PartitionId;
use crate::core::time::Instant;

/// A group as the records so far describe it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Loaded {
    pub(super) meta: Option<GroupValue>,
    pub(super) offsets: BTreeMap<PartitionId, CommittedOffset>,
}

/// The progress of a load.
#[derive(Debug)]
pub(super) struct Loading {
    /// The next offset to apply.
    next: u64,
    /// The log end offset when this node became leader: the load is done there.
    end: u64,
    /// The read in flight.
    read: Option<u64>,
    /// When to read again after a failed read.
    pub(super) retry_at: Option<Instant>,
    /// The last read found nothing new: read again when the HW moves.
    waiting_hw: bool,
    groups: BTreeMap<String, Loaded>,
    /// Records that were not the coordinator's, skipped.
    skipped: usize,
}

impl Loading {
    pub(super) fn invariants(&self) {
        assert!(self.next <= self.end, "a load applies nothing past its end");
        assert!(!(self.read.is_some() && self.retry_at.is_some()), "one read at a time");
    }
}

/// Applies one record to groups as loaded so far: the same function of the records the live
/// coordinator's state is.
pub(super) fn apply(groups: &mut BTreeMap<String, Loaded>, record: Record) {
    match record {
        Record::Offset { group, topic, partition, value: Some(value) } => {
            let id = PartitionId::new(topic, partition);
            groups.entry(group).or_default().offsets.insert(id, committed_from(value));
        }
        Record::Offset { group, topic, partition, value: None } => {
            if let Some(loaded) = groups.get_mut(&group) {
                loaded.offsets.remove(&PartitionId::new(topic, partition));
            }
        }
        Record::Group { group, value: Some(value) } => {
            groups.entry(group).or_default().meta = Some(value);
        }
        Record::Group { group, value: None } => {
            // A deleted group: its offsets were tombstoned before it, in the same batch.
            if let Some(loaded) = groups.get_mut(&group) {
                loaded.meta = None;
                if loaded.offsets.is_empty() {
                    groups.remove(&group);
                }
            }
        }
    }
}

/// Applies the records of `bytes` (whole batches) from `from` up to `end`; returns the offset
/// after the last batch read, or `None` if the bytes do not scan (a corrupt read).
pub(super) fn apply_batches(
    groups: &mut BTreeMap<String, Loaded>,
    bytes: &Bytes,
    from: u64,
    end: u64,
    skipped: &mut usize,
) -> Option<u64> {
    let mut next = from;
    let mut scan = BatchScan::new(bytes, usize::MAX);
    for (at, header) in scan.by_ref() {
        let batch = &bytes[at..at + header.total_bytes()];
        *skipped += records::decode_batch(batch, &header, |offset, record| {
            if offset >= from && offset < end {
                apply(groups, record);
            }
        });
        next = next.max(header.next_offset().max(0) as u64);
    }
    scan.stop().is_none().then_some(next.min(end))
}

impl Coordinator {
    /// This node leads offsets partition `partition` in `leader_epoch` (a new epoch, its log
    /// recovered, holding `log_start_offset..log_end_offset`): a shard of an older epoch is
    /// dropped, and the partition is loaded.
    pub fn become_leader(
        &mut self,
        now: Instant,
        partition: i32,
        leader_epoch: i32,
        log_start_offset: u64,
        log_end_offset: u64,
    ) {
        assert!(log_start_offset <= log_end_offset, "a log starts before it ends");
        if self.shards.get(&partition).is_some_and(|shard| shard.leader_epoch == leader_epoch) {
            return;
        }
        self.resign(partition);
        tracing::info!(
            partition,
            leader_epoch,
            log_start_offset,
            log_end_offset,
            "coordinator loads an offsets partition"
        );
        let loading = Loading {
            next: log_start_offset,
            end: log_end_offset,
            read: None,
            retry_at: None,
            waiting_hw: false,
            groups: BTreeMap::new(),
            skipped: 0,
        };
        let shard = Shard { leader_epoch, loading: Some(loading), groups: BTreeMap::new() };
        self.shards.insert(partition, shard);
        self.continue_load(now, partition);
        self.invariants();
    }

    /// The outcome of read `read`.
    pub fn handle_read(&mut self, now: Instant, read: u64, outcome: ReadOutcome) {
        // Gone: its partition resigned.
        let Some(partition) = self.reads.remove(&read) else { return };
        let loading = self.loading_mut(partition).expect("a read of a loading partition");
        loading.read = None;
        match outcome {
            ReadOutcome::Read { records, high_watermark } => {
                let (from, end) = (loading.next, loading.end);
                let groups = &mut loading.groups;
                match apply_batches(groups, &records, from, end, &mut loading.skipped) {
                    Some(next) if next > from => loading.next = next,
                    // Nothing new below the HW yet: wait until it moves.
                    Some(_) if high_watermark <= from => loading.waiting_hw = true,
                    _ => {
                        tracing::warn!(partition, from, "offsets partition read failed to scan");
                        loading.retry_at = Some(now + COORDINATOR_LOAD_RETRY);
                    }
                }
            }
            ReadOutcome::Failed => loading.retry_at = Some(now + COORDINATOR_LOAD_RETRY),
        }
        self.continue_load(now, partition);
        self.invariants();
    }

    /// The HW of offsets partition `partition` advanced: a load waiting for it reads on.
    pub fn handle_high_watermark(&mut self, now: Instant, partition: i32) {
        let Some(loading) = self.loading_mut(partition) else { return };
        if std::mem::take(&mut loading.waiting_hw) {
            self.continue_load(now, partition);
        }
        self.invariants();
    }

    /// Reads again where a failed read's backoff is over.
    pub(super) fn retry_load(&mut self, now: Instant, partition: i32) {
        let Some(loading) = self.loading_mut(partition) else { return };
        if loading.retry_at.is_some_and(|at| at <= now) {
            loading.retry_at = None;
            self.continue_load(now, partition);
        }
    }

    fn loading_mut(&mut self, partition: i32) -> Option<&mut Loading> {
        self.shards.get_mut(&partition)?.loading.as_mut()
    }

    /// Issues the next read, or finishes the load at its end.
    fn continue_load(&mut self, now: Instant, partition: i32) {
        let shard = self.shards.get_mut(&partition).expect("a loading partition");
        let leader_epoch = shard.leader_epoch;
        let loading = shard.loading.as_mut().expect("loading");
        if loading.next >= loading.end {
            return self.finish_load(now, partition);
        }
        if loading.read.is_some() || loading.retry_at.is_some() || loading.waiting_hw {
            return;
        }
        let offset = loading.next;
        self.next_id += 1;
        let read = self.next_id;
        let shard = self.shards.get_mut(&partition).expect("a loading partition");
        shard.loading.as_mut().expect("loading").read = Some(read);
        self.reads.insert(read, partition);
        self.outputs.push_back(CoordinatorOutput::Read { partition, leader_epoch, read, offset });
    }

    /// The load reached its end: the groups found are served from now on.
    fn finish_load(&mut self, now: Instant, partition: i32) {
        let shard = self.shards.get_mut(&partition).expect("a loading partition");
        let loading = shard.loading.take().expect("loading");
        if loading.skipped > 0 {
            tracing::warn!(
                partition,
                skipped = loading.skipped,
                "records in an offsets partition that are not the coordinator's were skipped"
            );
        }
        let count = loading.groups.len();
        for (name, loaded) in loading.groups {
            let config = self.group_config();
            let written =
                loaded.meta.as_ref().map(|meta| (meta.generation, !meta.members.is_empty()));
            let group = match loaded.meta {
                Some(meta) => Group::restore(config, now, group_snapshot(meta)),
                None => Group::new(config),
            };
            let entry = GroupEntry { group, offsets: loaded.offsets, written };
            let shard = self.shards.get_mut(&partition).expect("a loading partition");
            shard.groups.insert(name, entry);
        }
        self.groups_count += count;
        tracing::info!(partition, groups = count, "coordinator loaded an offsets partition");
    }
}
