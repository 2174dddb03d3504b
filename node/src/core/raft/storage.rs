//! Raft's writes under `raft/`, and which of them are durable.
//!
//! Layout:
//! - `raft/bootstrap`: the [`BootstrapRecord`] written by `format_ops`; never rewritten.
//! - `raft/log-<segment:020>`: the write-ahead log, frames of [`WalRecord`]: a
//!   [`SegmentHeader`] first, then hard states and entries in the order they were written.
//!   Replaying it gives the log: an entry replaces the entry at its index and every entry
//!   after it (so a follower's truncation is just the conflicting entries written again, as
//!   in etcd's WAL), and the last hard state wins. Only the newest segment counts: every
//!   segment is written whole from memory (to `raft/log.tmp`, synced, renamed), then
//!   appended to; older ones are removed once the new one is in place.
//! - `raft/snapshot-<index:020>`: one [`SnapshotRecord`] frame, written to
//!   `raft/snapshot.tmp`, synced, renamed; older snapshots are removed after.
//! - `raft/vote`: one [`HardState`] frame, written whole (to `raft/vote.tmp`, synced,
//!   renamed) whenever the term or the vote changes, besides the hard-state record in the
//!   segment. Recovery cuts a damaged segment tail, and the hard states after the damage with
//!   it; the term and vote must not go back with them (a node that forgot its vote could
//!   vote twice in a term), so recovery takes the newer of the two (decision 0021). A hard
//!   state's record counts as durable only once both copies are.
//!
//! Durability is counted in *records*: every record written gets the next sequence number,
//! and [`Storage::synced_seq`] is the highest one known durable; [`Storage::synced_index`] is
//! the last log index known durable *with the entries memory holds*. A message that depends
//! on a write waits for its sequence number (persist before acknowledge).
//!
//! A failed write or sync makes the whole segment untrusted (fsyncgate: a later sync may
//! report success for pages the kernel dropped). The storage then forgets every op in
//! flight (a new *generation*) and writes a new segment from memory, which holds everything
//! written; the watermarks stay where they were (what was durable still is) until the new
//! segment is in place. Raft gives up after [`RAFT_STORAGE_FAILURES_MAX`] failures in a row
//! (a full disk is not counted: it passes).

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};

use super::log::RaftLog;
use super::message::{HardState, SegmentHeader, SnapshotRecord, WalKind, WalRecord};
use crate::core::frame::encode_frame;
use crate::core::io::{DiskError, DiskOp, DiskResult, FileName, OpId};
use crate::core::limits::RAFT_STORAGE_FAILURES_MAX;
use crate::core::log::DiskQueue;

#[cfg(doc)]
use super::message::BootstrapRecord;

/// The temporary file a segment is written to before it is renamed into place.
pub const LOG_TMP: &str = "raft/log.tmp";
/// The temporary file a snapshot is written to before it is renamed into place.
pub const SNAPSHOT_TMP: &str = "raft/snapshot.tmp";
/// The term and vote, apart from the segment that recovery may cut.
pub const VOTE_FILE: &str = "raft/vote";
/// The temporary file the vote file is written to before it is renamed into place.
pub const VOTE_TMP: &str = "raft/vote.tmp";
/// Rewrite the segment once it holds this many bytes more than the log it replays to (plus
/// this floor), so that truncations and snapshots do not grow it without end.
const SEGMENT_SLACK_BYTES: u64 = 4 << 20;

/// The file of segment `segment`.
pub fn segment_file(segment: u64) -> FileName {
    FileName::new(format!("raft/log-{segment:020}"))
}

/// The file of the snapshot at `index`.
pub fn snapshot_file(index: u64) -> FileName {
    FileName::new(format!("raft/snapshot-{index:020}"))
}

/// What an op in flight is for.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// An append to the current segment.
    Write,
    /// A sync of the current segment, covering record `seq` and entries up to `index`.
    Sync,
    /// The create or append of a segment rewrite.
    RewriteWrite,
    /// The sync of a rewrite; its success issues the rename.
    RewriteSync,
    /// The rename that puts a rewrite in place.
    RewriteRename,
    /// An op of snapshot write `write`; `step` 0 = create/append, 1 = sync, 2 = rename.
    Snapshot { write: u64, step: u8 },
    /// An op of a vote file write: `step` 0 = create/append, 1 = sync, 2 = rename.
    Vote { step: u8 },
    /// A removal of a file no longer needed; a failure only leaves garbage for the next start.
    Housekeeping,
}

/// A sync in flight: what it makes durable.
#[derive(Debug, Clone, Copy)]
struct SyncWait {
    seq: u64,
    index: u64,
}

/// A rewrite in flight: records up to `seq` and entries up to `index` are in it.
#[derive(Debug, Clone, Copy)]
struct Rewrite {
    segment: u64,
    seq: u64,
    index: u64,
}

/// A snapshot being stored.
#[derive(Debug, Clone)]
struct SnapshotWrite {
    write: u64,
    index: u64,
    term: u64,
}

/// The vote file's writes: the newest term and vote asked for, the one in flight, and the
/// records that wait for it.
#[derive(Debug, Clone, Copy, Default)]
struct VoteFile {
    /// The (term, vote) of the last write asked for.
    asked: (u64, u32),
    /// A write in flight: the record sequence number whose hard state it holds.
    in_flight: Option<u64>,
    /// A write asked for while one was in flight: its hard state and record number.
    next: Option<(HardState, u64)>,
    /// The lowest record number whose hard state is not yet durable in the vote file: no
    /// record from it on counts as durable.
    barrier: Option<u64>,
}

/// What completed, for Raft to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageEvent {
    /// The watermarks may have moved.
    Synced,
    /// A write failed; Raft steps down and calls [`Storage::rewrite_after_failure`].
    Failed {
        /// The file.
        file: FileName,
        /// The error.
        error: DiskError,
    },
    /// The snapshot at `index` is durable.
    SnapshotStored {
        /// Its index.
        index: u64,
        /// Its term.
        term: u64,
    },
    /// Storing the snapshot at `index` failed; nothing changed.
    SnapshotFailed {
        /// Its index.
        index: u64,
    },
}

/// The write side of Raft's files. See the module documentation.
#[derive(Debug)]
pub struct Storage {
    generation: u64,
    ops: HashMap<OpId, (u64, Op)>,
    segment: u64,
    /// The lowest segment number that may still be on disk.
    segments_from: u64,
    segment_bytes: u64,
    write_seq: u64,
    synced_seq: u64,
    synced_index: u64,
    syncs: HashMap<OpId, SyncWait>,
    rewrite: Option<Rewrite>,
    /// Records written while a rewrite is in flight, appended once it is in place.
    buffered: Vec<WalRecord>,
    /// A rewrite that waits for a full disk to have room again (started by
    /// [`Storage::start_pending_rewrite`]); writes buffer meanwhile, as during a rewrite.
    pending_rewrite: bool,
    failures: u32,
    snapshot_writes: u64,
    snapshot_write: Option<SnapshotWrite>,
    /// The snapshot file in place, if any.
    snapshot_index: Option<u64>,
    vote: VoteFile,
}

impl Storage {
    /// Storage after recovery found segment numbers up to `segment_max` and the snapshot at
    /// `snapshot_index`. Nothing is counted durable until [`Self::rewrite`] completes.
    pub fn new(segment_max: u64, snapshot_index: Option<u64>) -> Storage {
        Storage {
            generation: 0,
            ops: HashMap::new(),
            segment: segment_max,
            // Recovery removed the older segments.
            segments_from: segment_max,
            segment_bytes: 0,
            write_seq: 0,
            synced_seq: 0,
            synced_index: 0,
            syncs: HashMap::new(),
            rewrite: None,
            buffered: Vec::new(),
            pending_rewrite: false,
            failures: 0,
            snapshot_writes: 0,
            snapshot_write: None,
            snapshot_index,
            vote: VoteFile::default(),
        }
    }

    // ----- getters -----

    /// Whether op `id` is the storage's.
    pub fn owns(&self, id: OpId) -> bool {
        self.ops.contains_key(&id)
    }

    /// The sequence number of the last record written.
    pub fn write_seq(&self) -> u64 {
        self.write_seq
    }

    /// Every record up to this one is durable (a hard state in both of its copies).
    pub fn synced_seq(&self) -> u64 {
        match self.vote.barrier {
            Some(barrier) => self.synced_seq.min(barrier - 1),
            None => self.synced_seq,
        }
    }

    /// Every entry up to this index, as memory holds it, is durable.
    pub fn synced_index(&self) -> u64 {
        self.synced_index
    }

    /// Whether a snapshot is being stored.
    pub fn snapshot_busy(&self) -> bool {
        self.snapshot_write.is_some()
    }

    /// Whether a segment rewrite is in flight or waits for room on a full disk.
    pub fn rewriting(&self) -> bool {
        self.rewrite.is_some() || self.pending_rewrite
    }

    /// Whether the segment has grown enough past `log` that it should be rewritten.
    pub fn wants_rewrite(&self, log: &RaftLog) -> bool {
        !self.rewriting() && self.segment_bytes > 2 * log.bytes() + SEGMENT_SLACK_BYTES
    }

    // ----- mutators -----

    /// Writes `records` (then a sync) and returns the last one's sequence number. `log` is
    /// memory after the change; `truncated_to`, when entries after it were replaced.
    pub fn write(
        &mut self,
        records: Vec<WalRecord>,
        log: &RaftLog,
        truncated_to: Option<u64>,
        out: &mut impl DiskQueue,
    ) -> u64 {
        assert!(!records.is_empty(), "a write has records");
        if let Some(index) = truncated_to {
            self.truncated(index);
        }
        let first_seq = self.write_seq + 1;
        self.write_seq += records.len() as u64;
        let last_hard_state = records.iter().enumerate().rev().find_map(|(i, r)| match r.kind {
            Some(WalKind::HardState(state)) => Some((state, first_seq + i as u64)),
            _ => None,
        });
        if let Some((state, seq)) = last_hard_state {
            self.ask_vote_write(state, seq, out);
        }
        if self.rewriting() {
            self.buffered.extend(records);
        } else {
            self.append(&records, log.last_index(), out);
        }
        self.write_seq
    }

    /// Notes that memory dropped the entries after `index` (a conflicting suffix, or a log
    /// emptied by a snapshot): they are no longer durable, and syncs in flight no longer
    /// make them so.
    pub fn truncated(&mut self, index: u64) {
        self.synced_index = self.synced_index.min(index);
        for wait in self.syncs.values_mut() {
            wait.index = wait.index.min(index);
        }
        if let Some(rewrite) = &mut self.rewrite {
            rewrite.index = rewrite.index.min(index);
        }
    }

    fn append(&mut self, records: &[WalRecord], last_index: u64, out: &mut impl DiskQueue) {
        let mut data = BytesMut::new();
        for record in records {
            encode_frame(record, &mut data);
        }
        let file = segment_file(self.segment);
        let pos = self.segment_bytes;
        self.segment_bytes += data.len() as u64;
        self.submit(
            DiskOp::Append { file: file.clone(), pos, data: data.freeze() },
            Op::Write,
            out,
        );
        let id = self.submit(DiskOp::Sync { file }, Op::Sync, out);
        self.syncs.insert(id, SyncWait { seq: self.write_seq, index: last_index });
    }

    /// Writes the vote file with `state` (record `seq`) if its term or vote is not the last
    /// one asked for: now, or after the write in flight.
    fn ask_vote_write(&mut self, state: HardState, seq: u64, out: &mut impl DiskQueue) {
        if (state.term, state.voted_for) == self.vote.asked {
            return;
        }
        self.vote.asked = (state.term, state.voted_for);
        self.vote.barrier.get_or_insert(seq);
        if self.vote.in_flight.is_some() {
            self.vote.next = Some((state, seq));
        } else {
            self.issue_vote_write(state, seq, out);
        }
    }

    fn issue_vote_write(&mut self, state: HardState, seq: u64, out: &mut impl DiskQueue) {
        let mut data = BytesMut::new();
        encode_frame(&state, &mut data);
        let tmp = FileName::new(VOTE_TMP);
        let step0 = Op::Vote { step: 0 };
        self.submit(DiskOp::Create { file: tmp.clone() }, step0, out);
        self.submit(DiskOp::Append { file: tmp.clone(), pos: 0, data: data.freeze() }, step0, out);
        self.submit(DiskOp::Sync { file: tmp }, Op::Vote { step: 1 }, out);
        self.vote.in_flight = Some(seq);
    }

    /// A vote file write is in place: the records it held are durable in both copies.
    fn vote_written(&mut self, out: &mut impl DiskQueue) -> StorageEvent {
        self.vote.in_flight = None;
        self.vote.barrier = None;
        if let Some((state, seq)) = self.vote.next.take() {
            self.vote.barrier = Some(seq);
            self.issue_vote_write(state, seq, out);
        }
        StorageEvent::Synced
    }

    fn submit(&mut self, op: DiskOp, kind: Op, out: &mut impl DiskQueue) -> OpId {
        let id = out.submit(op);
        self.ops.insert(id, (self.generation, kind));
        id
    }

    /// Writes a new segment holding `hard_state` and every entry of `log`, to replace the
    /// current one once synced. Records written meanwhile wait for it.
    pub fn rewrite(&mut self, log: &RaftLog, hard_state: HardState, out: &mut impl DiskQueue) {
        assert!(self.rewrite.is_none(), "one rewrite at a time");
        self.buffered.clear();
        self.segment += 1;
        let segment = self.segment;
        let header = SegmentHeader {
            segment,
            prev_index: log.snapshot_index(),
            prev_term: log.snapshot_term(),
        };
        let mut data = BytesMut::new();
        encode_frame(&WalRecord { kind: Some(WalKind::Header(header)) }, &mut data);
        encode_frame(&WalRecord { kind: Some(WalKind::HardState(hard_state)) }, &mut data);
        for entry in log.iter() {
            encode_frame(&WalRecord { kind: Some(WalKind::Entry(entry.clone())) }, &mut data);
        }
        self.write_seq += 1;
        if self.vote.barrier.is_some() && self.vote.in_flight.is_none() {
            // A failure forgot the vote file's write in flight: write memory's state again.
            self.issue_vote_write(hard_state, self.write_seq, out);
        } else {
            // After recovery: the vote file gets the state recovery found, if it lacks it.
            self.ask_vote_write(hard_state, self.write_seq, out);
        }
        self.segment_bytes = data.len() as u64;
        let tmp = FileName::new(LOG_TMP);
        self.submit(DiskOp::Create { file: tmp.clone() }, Op::RewriteWrite, out);
        let data: Bytes = data.freeze();
        self.submit(DiskOp::Append { file: tmp.clone(), pos: 0, data }, Op::RewriteWrite, out);
        self.submit(DiskOp::Sync { file: tmp }, Op::RewriteSync, out);
        self.rewrite = Some(Rewrite { segment, seq: self.write_seq, index: log.last_index() });
    }

    /// After [`StorageEvent::Failed`]: forgets every op in flight and rewrites the segment
    /// from memory. Returns false once failures in a row pass the limit (Raft stops).
    ///
    /// A full disk (`no_space`) does not count toward the limit: it passes once space is
    /// freed (retention, an operator), and stopping would turn it into an outage. Its rewrite
    /// waits for [`Storage::start_pending_rewrite`] (Raft calls it after a backoff), rather
    /// than failing again at once for as long as the disk stays full.
    pub fn rewrite_after_failure(
        &mut self,
        log: &RaftLog,
        hard_state: HardState,
        no_space: bool,
        out: &mut impl DiskQueue,
    ) -> bool {
        if !no_space {
            self.failures += 1;
        }
        if self.failures > RAFT_STORAGE_FAILURES_MAX {
            return false;
        }
        self.generation += 1;
        self.syncs.clear();
        self.rewrite = None;
        // Its ops are forgotten with the rest; the rewrite writes memory's state again.
        self.vote.in_flight = None;
        self.vote.next = None;
        if no_space {
            self.pending_rewrite = true;
        } else {
            self.pending_rewrite = false;
            self.rewrite(log, hard_state, out);
        }
        true
    }

    /// Starts the rewrite a full disk postponed, if one waits.
    pub fn start_pending_rewrite(
        &mut self,
        log: &RaftLog,
        hard_state: HardState,
        out: &mut impl DiskQueue,
    ) {
        if std::mem::take(&mut self.pending_rewrite) {
            self.rewrite(log, hard_state, out);
        }
    }

    /// Whether a rewrite waits for [`Storage::start_pending_rewrite`].
    #[cfg(test)]
    pub fn rewrite_pending(&self) -> bool {
        self.pending_rewrite
    }

    /// Stores a snapshot: tmp file, sync, rename to `raft/snapshot-<index>`; reported by
    /// [`StorageEvent::SnapshotStored`] or `SnapshotFailed`.
    pub fn store_snapshot(&mut self, record: &SnapshotRecord, out: &mut impl DiskQueue) {
        assert!(self.snapshot_write.is_none(), "one snapshot write at a time");
        self.snapshot_writes += 1;
        let write = self.snapshot_writes;
        let mut data = BytesMut::new();
        encode_frame(record, &mut data);
        let tmp = FileName::new(SNAPSHOT_TMP);
        let step0 = Op::Snapshot { write, step: 0 };
        self.submit(DiskOp::Create { file: tmp.clone() }, step0, out);
        self.submit(DiskOp::Append { file: tmp.clone(), pos: 0, data: data.freeze() }, step0, out);
        self.submit(DiskOp::Sync { file: tmp }, Op::Snapshot { write, step: 1 }, out);
        self.snapshot_write = Some(SnapshotWrite { write, index: record.index, term: record.term });
    }

    /// Notes that the snapshot at `index` is durable and memory compacted to it: entries up
    /// to it are durable.
    pub fn snapshot_installed(&mut self, index: u64) {
        self.synced_index = self.synced_index.max(index);
    }

    // ----- inputs -----

    /// The result of op `id`; `log` and `hard_state` are memory now (for a rewrite's flush).
    pub fn handle_disk(
        &mut self,
        id: OpId,
        result: DiskResult,
        log: &RaftLog,
        out: &mut impl DiskQueue,
    ) -> Option<StorageEvent> {
        let (generation, op) = self.ops.remove(&id).expect("Raft routes only its ops here");
        let sync = self.syncs.remove(&id);
        if let Op::Snapshot { write, step } = op {
            return self.snapshot_step(write, step, result, out);
        }
        if let Op::Vote { step } = op
            && generation == self.generation
            && result.is_ok()
        {
            return match step {
                0 => None,
                1 => {
                    let rename = DiskOp::Rename {
                        from: FileName::new(VOTE_TMP),
                        to: FileName::new(VOTE_FILE),
                    };
                    self.submit(rename, Op::Vote { step: 2 }, out);
                    None
                }
                _ => Some(self.vote_written(out)),
            };
        }
        if let Op::Housekeeping = op {
            if let Err(error) = result {
                tracing::warn!(%error, "raft: removing an old file failed; retried at start");
            }
            return None;
        }
        if generation != self.generation {
            return None; // An op of a segment that a failure already gave up on.
        }
        if let Err(error) = result {
            let file = match op {
                Op::Write | Op::Sync => segment_file(self.segment),
                Op::Vote { .. } => FileName::new(VOTE_TMP),
                _ => FileName::new(LOG_TMP),
            };
            tracing::error!(%error, %file, "raft: a write failed; the segment is rewritten");
            return Some(StorageEvent::Failed { file, error });
        }
        match op {
            Op::Write | Op::RewriteWrite => None,
            Op::Sync => {
                let wait = sync.expect("every sync waits");
                self.synced_seq = self.synced_seq.max(wait.seq);
                self.synced_index = self.synced_index.max(wait.index);
                Some(StorageEvent::Synced)
            }
            Op::RewriteSync => {
                let rewrite = self.rewrite.expect("a rewrite in flight");
                let rename = DiskOp::Rename {
                    from: FileName::new(LOG_TMP),
                    to: segment_file(rewrite.segment),
                };
                self.submit(rename, Op::RewriteRename, out);
                None
            }
            Op::RewriteRename => Some(self.rewrite_done(log, out)),
            Op::Snapshot { .. } | Op::Vote { .. } | Op::Housekeeping => {
                unreachable!("handled above")
            }
        }
    }

    fn rewrite_done(&mut self, log: &RaftLog, out: &mut impl DiskQueue) -> StorageEvent {
        let rewrite = self.rewrite.take().expect("a rewrite in flight");
        self.failures = 0;
        self.synced_seq = self.synced_seq.max(rewrite.seq);
        self.synced_index = self.synced_index.max(rewrite.index);
        for old in self.segments_from..rewrite.segment {
            self.submit(DiskOp::Remove { file: segment_file(old) }, Op::Housekeeping, out);
        }
        self.segments_from = rewrite.segment;
        let buffered = std::mem::take(&mut self.buffered);
        if !buffered.is_empty() {
            self.append(&buffered, log.last_index(), out);
        }
        StorageEvent::Synced
    }

    fn snapshot_step(
        &mut self,
        write: u64,
        step: u8,
        result: DiskResult,
        out: &mut impl DiskQueue,
    ) -> Option<StorageEvent> {
        let current = self.snapshot_write.as_ref().filter(|w| w.write == write)?.clone();
        if let Err(error) = result {
            tracing::error!(%error, index = current.index, "raft: storing a snapshot failed");
            self.snapshot_write = None;
            return Some(StorageEvent::SnapshotFailed { index: current.index });
        }
        match step {
            0 => None,
            1 => {
                let rename = DiskOp::Rename {
                    from: FileName::new(SNAPSHOT_TMP),
                    to: snapshot_file(current.index),
                };
                self.submit(rename, Op::Snapshot { write, step: 2 }, out);
                None
            }
            _ => {
                self.snapshot_write = None;
                if let Some(old) = self.snapshot_index.replace(current.index) {
                    let remove = DiskOp::Remove { file: snapshot_file(old) };
                    self.submit(remove, Op::Housekeeping, out);
                }
                Some(StorageEvent::SnapshotStored { index: current.index, term: current.term })
            }
        }
    }

    /// Checks the storage's invariants against memory.
    pub fn invariants(&self, log: &RaftLog) {
        assert!(self.synced_seq <= self.write_seq, "nothing durable that was not written");
        assert!(self.synced_index <= log.last_index(), "durable entries are held");
        if !self.rewriting() {
            assert!(self.buffered.is_empty(), "records wait only for a rewrite");
        }
        for wait in self.syncs.values() {
            assert!(wait.seq <= self.write_seq, "a sync waits for a written record");
        }
        if let Some(barrier) = self.vote.barrier {
            assert!(barrier <= self.write_seq, "the vote file waits for a written record");
        }
        if self.vote.next.is_some() {
            assert!(self.vote.in_flight.is_some(), "a vote write waits only for another");
        }
    }
}
