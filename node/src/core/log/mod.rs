//! The partition log: segments of Kafka record batches on disk, driven through disk ops.
//!
//! A [`PartitionLog`] owns one partition's directory. It never touches a file: every write,
//! sync, read and listing is a [`DiskOp`] it submits to a [`DiskQueue`], and the driver hands
//! back each result through [`PartitionLog::handle_disk`]. What completes later (a read, a
//! flush, a recovery) comes out as a [`LogEvent`] through [`PartitionLog::poll_event`].
//!
//! Methods, in the order a driver uses them:
//! - getters: [`log_start_offset`](PartitionLog::log_start_offset),
//!   [`log_end_offset`](PartitionLog::log_end_offset),
//!   [`flushed_offset`](PartitionLog::flushed_offset), [`is_ready`](PartitionLog::is_ready),
//!   [`epochs`](PartitionLog::epochs), ...
//! - inputs: [`handle_disk`](PartitionLog::handle_disk) with each completed op;
//! - mutators: [`open`](PartitionLog::open) (starts recovery), `append_as_leader`,
//!   `append_as_follower`, `flush`, `read`, `offset_for_timestamp`, `truncate_to`,
//!   `truncate_fully_and_start_at`, `apply_retention`, `assign_epoch`, `recover`;
//! - outputs: [`poll_event`](PartitionLog::poll_event).
//!
//! Contract kept:
//! - Offsets are dense and increasing: a batch's base offset is the previous batch's next
//!   offset, across segments too.
//! - Bytes are stored exactly as they came; only `baseOffset` and `partitionLeaderEpoch` of a
//!   produced batch are patched, and the CRC-32C does not cover them.
//! - Nothing is reported flushed before the `Sync` that covers it completed (nor a restart's
//!   new log start before its segment was created); a failed write or sync fails the log
//!   (fsyncgate) until [`recover`](PartitionLog::recover) re-reads the disk.
//! - A batch read from disk is returned only after its CRC-32C checked out; a damaged batch is
//!   never returned. A fetch at the tail is answered from the batches as they were appended
//!   (module `tail`), which were checked when they came in.
//! - Layout of the directory: `<base>.log` segments, `<base>.index` beside each sealed one,
//!   `leader-epoch-checkpoint`. See docs/decisions/0001-storage-format.md.

pub mod batch;
pub mod canary;
pub mod epoch;
#[cfg(any(test, feature = "testkit"))]
pub mod harness;
mod read;
mod recovery;
pub mod segment;
mod tail;
#[cfg(test)]
mod tests_read;
#[cfg(test)]
mod tests_restart;

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use self::batch::{BatchError, BatchHeader, BatchScan, ScanStop, patch_batch};
use self::epoch::{EpochCheckpoint, LeaderEpochCache};
use self::read::{ReadAhead, ReadJob, SeekJob, Stream, TruncateJob};
use self::recovery::{Recovery, RecoveryStep};
use self::segment::Segment;
use self::tail::TailCache;
use crate::core::frame::encode_frame;
use crate::core::io::{DiskError, DiskOp, DiskResult, FileName, OpId};
use crate::core::limits::{
    BATCH_BYTES_MAX_DEFAULT, INDEX_INTERVAL_BYTES, RECOVERY_READ_BYTES, SEGMENT_BYTES_MAX,
    SEGMENT_BYTES_MIN, TAIL_CACHE_BYTES,
};
use crate::core::time::Instant;

/// Where a component submits disk ops; the owner numbers them and routes the completions
/// back to [`PartitionLog::handle_disk`].
pub trait DiskQueue {
    /// Queues `op` for the driver and returns the id its completion will carry.
    fn submit(&mut self, op: DiskOp) -> OpId;
}

/// The simplest [`DiskQueue`]: a FIFO of numbered ops.
#[derive(Debug, Default)]
pub struct OpQueue {
    next_id: u64,
    ops: VecDeque<(OpId, DiskOp)>,
}

impl OpQueue {
    /// Takes the oldest queued op.
    pub fn pop(&mut self) -> Option<(OpId, DiskOp)> {
        self.ops.pop_front()
    }

    /// Ops waiting.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether no op waits.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

impl DiskQueue for OpQueue {
    fn submit(&mut self, op: DiskOp) -> OpId {
        let id = OpId(self.next_id);
        self.next_id += 1;
        self.ops.push_back((id, op));
        id
    }
}

/// A partition's log settings (Kafka's topic configs of the same names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll to a new segment before one grows past this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll a non-empty segment whose first batch is older than this.
    pub segment_ms: u64,
    /// `retention.ms`: delete segments whose newest record is older; -1 keeps forever.
    pub retention_ms: i64,
    /// `retention.bytes`: delete the oldest segments while the log is larger; -1 = no limit.
    pub retention_bytes: i64,
    /// `max.message.bytes`: the largest batch accepted.
    pub batch_bytes_max: usize,
    /// `index.interval.bytes`: bytes between sparse index entries.
    pub index_interval_bytes: u32,
    /// Not a topic setting: how many bytes of its newest batches the log keeps in memory to
    /// answer fetches at its tail without a disk read (module `tail`); 0 keeps none.
    pub tail_cache_bytes: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: SEGMENT_BYTES_MAX,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            batch_bytes_max: BATCH_BYTES_MAX_DEFAULT,
            index_interval_bytes: INDEX_INTERVAL_BYTES,
            tail_cache_bytes: TAIL_CACHE_BYTES,
        }
    }
}

/// A log setting out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `segment.bytes` outside its bounds.
    #[error("segment.bytes = {0} is out of range [{SEGMENT_BYTES_MIN}, {SEGMENT_BYTES_MAX}]")]
    SegmentBytes(u64),
    /// `retention.ms` or `retention.bytes` below -1.
    #[error("{name} = {value} is invalid: use -1 for no limit or a value >= 0")]
    Retention {
        /// The setting's name.
        name: &'static str,
        /// Its value.
        value: i64,
    },
    /// `max.message.bytes` larger than a segment or than one recovery read.
    #[error("max.message.bytes = {0} must be at least 61 and at most segment.bytes and 8 MiB")]
    BatchBytes(usize),
    /// `segment.ms` of zero.
    #[error("segment.ms must be at least 1")]
    SegmentMs,
}

impl LogConfig {
    /// Checks every setting's range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes) {
            return Err(ConfigError::SegmentBytes(self.segment_bytes));
        }
        if self.retention_ms < -1 {
            return Err(ConfigError::Retention { name: "retention.ms", value: self.retention_ms });
        }
        if self.retention_bytes < -1 {
            let value = self.retention_bytes;
            return Err(ConfigError::Retention { name: "retention.bytes", value });
        }
        let batch_bytes_max = (self.segment_bytes as usize).min(RECOVERY_READ_BYTES as usize);
        if self.batch_bytes_max < 61 || self.batch_bytes_max > batch_bytes_max {
            return Err(ConfigError::BatchBytes(self.batch_bytes_max));
        }
        if self.segment_ms == 0 {
            return Err(ConfigError::SegmentMs);
        }
        Ok(())
    }
}

/// Why a log operation failed. Request-level conditions, never bugs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// The batch is malformed (becomes CORRUPT_MESSAGE at the Kafka edge).
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),
    /// The offset is below the log start or above the log end.
    #[error("offset {offset} is outside the log [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        /// The offset asked for.
        offset: u64,
        /// The first offset held.
        log_start_offset: u64,
        /// The offset after the last one held.
        log_end_offset: u64,
    },
    /// The log is still recovering from disk.
    #[error("the log is recovering")]
    Recovering,
    /// A truncation is under way; appends wait for it.
    #[error("the log is truncating")]
    Truncating,
    /// A disk op failed; the log is failed until recovered.
    #[error("storage error on {file}: {error}")]
    Storage {
        /// The file the op was on.
        file: FileName,
        /// What the disk said.
        error: DiskError,
    },
    /// The batch's leader epoch is older than one the log already holds (a fenced leader's
    /// write, or a follower copying from a stale leader).
    #[error("leader epoch {epoch} is older than the log's latest epoch {latest}")]
    StaleEpoch {
        /// The epoch of the append.
        epoch: i32,
        /// The newest epoch in the log's epoch cache.
        latest: i32,
    },
    /// Bytes on disk failed their checksum (on every retry); they are never served.
    #[error("corrupt data in {file} at byte {position}")]
    Corrupt {
        /// The damaged file.
        file: FileName,
        /// Byte position of the damaged batch.
        position: u64,
    },
}

/// What an accepted append was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record appended.
    pub base_offset: u64,
    /// Offset of the last record appended.
    pub last_offset: u64,
    /// Largest record timestamp appended.
    pub max_timestamp: i64,
}

/// Something that completed inside the log, reported by [`PartitionLog::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEvent {
    /// Recovery finished; the log takes appends and reads.
    Recovered {
        /// First offset held.
        log_start_offset: u64,
        /// Offset after the last one held.
        log_end_offset: u64,
        /// Bytes cut from torn or corrupt tails.
        truncated_bytes: u64,
    },
    /// Every offset below `offset` is durable.
    Flushed {
        /// The new flushed log end offset.
        offset: u64,
    },
    /// A [`PartitionLog::read`] finished: whole batches, verified, as one buffer.
    Read {
        /// The caller's token.
        token: u64,
        /// The batches (possibly none), or why not.
        result: Result<Bytes, LogError>,
    },
    /// A [`PartitionLog::offset_for_timestamp`] finished.
    OffsetForTimestamp {
        /// The caller's token.
        token: u64,
        /// The first offset whose record timestamp is at or above the target, with that
        /// timestamp; `None` when no record is that new.
        result: Result<Option<(u64, i64)>, LogError>,
    },
    /// A truncation finished; the log now ends at `offset`.
    Truncated {
        /// The new log end offset.
        offset: u64,
    },
    /// A disk op failed or the disk held damaged data the log cannot continue past; appends
    /// and reads fail until [`PartitionLog::recover`] is called.
    Failed {
        /// What went wrong.
        error: LogError,
    },
}

/// The answer to a read that could be given at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadStart {
    /// Nothing to read (at the end of the log, or above `max_offset`).
    Empty,
    /// A [`LogEvent::Read`] with this token will follow.
    Pending,
}

#[derive(Debug)]
enum Phase {
    Recovering(Box<Recovery>),
    Ready,
    Failed(LogError),
}

/// What an op in flight is for.
#[derive(Debug)]
enum Pending {
    /// A write the log depends on; its failure fails the log.
    Data,
    /// A sync (or rename, or a restart's create) that makes offsets durable; see `SyncWait`.
    Sync,
    /// Index files and removals: rebuilt or redone at recovery, so failures only count.
    Housekeeping,
    Read(ReadJob),
    Seek(SeekJob),
    Truncate(TruncateJob),
    Recovery(RecoveryStep),
}

/// A sync in flight and the log end offset it makes durable. Completions may come back in
/// any order; the flushed offset advances only over a prefix of completed syncs.
#[derive(Debug)]
struct SyncWait {
    op: OpId,
    target: u64,
    done: bool,
    /// For the sync of a new epoch checkpoint: the rename that installs it, issued only once
    /// the sync succeeded (a driver runs queued ops even after one failed, and renaming an
    /// unsynced file over the checkpoint would lose it). The wait is done when the rename is.
    then_rename: Option<(FileName, FileName)>,
    /// Whether this wait ends with a new epoch checkpoint installed.
    installs_checkpoint: bool,
    /// For the `Create` of the segment a restart (`truncate_fully_and_start_at`) begins the
    /// log with: once it is done the new start is durable and the restart is over.
    ends_restart: bool,
}

/// One partition's log. See the module documentation.
#[derive(Debug)]
pub struct PartitionLog {
    dir: FileName,
    config: LogConfig,
    phase: Phase,
    segments: VecDeque<Segment>,
    log_start_offset: u64,
    log_end_offset: u64,
    flushed_offset: u64,
    sync_issued_offset: u64,
    epochs: LeaderEpochCache,
    epochs_dirty: bool,
    truncating: bool,
    pending: BTreeMap<OpId, Pending>,
    syncs: VecDeque<SyncWait>,
    /// Index files of sealed segments, written once the flushed offset passes the segment's
    /// end: an index makes recovery trust its segment without a scan, so it must never vouch
    /// for bytes (or epochs) that are not durable.
    sealed_indexes: VecDeque<(u64, FileName, Bytes)>,
    events: VecDeque<LogEvent>,
    housekeeping_failures: u64,
    /// Epoch checkpoints written, numbering their temporary files.
    checkpoint_writes: u64,
    /// The consumer read ahead of (module `read`).
    read_ahead: ReadAhead,
    /// Consumer fetches answered by a read ahead, ready or in flight.
    reads_ahead_taken: u64,
    /// The newest batches, for fetches at the tail (module `tail`).
    tail: TailCache,
}

const EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";

impl PartitionLog {
    /// Opens the log in directory `dir` and starts recovery: the log lists its files, checks
    /// them and reports [`LogEvent::Recovered`] before it takes appends. An empty or missing
    /// directory recovers as an empty log starting at offset 0.
    ///
    /// # Panics
    /// If `config` is invalid (callers validate settings where users give them).
    pub fn open(dir: FileName, config: LogConfig, out: &mut impl DiskQueue) -> Self {
        config.validate().expect("a validated log config");
        let mut log = PartitionLog {
            dir,
            config,
            phase: Phase::Ready,
            segments: VecDeque::new(),
            log_start_offset: 0,
            log_end_offset: 0,
            flushed_offset: 0,
            sync_issued_offset: 0,
            epochs: LeaderEpochCache::default(),
            epochs_dirty: false,
            truncating: false,
            pending: BTreeMap::new(),
            syncs: VecDeque::new(),
            sealed_indexes: VecDeque::new(),
            events: VecDeque::new(),
            housekeeping_failures: 0,
            checkpoint_writes: 0,
            read_ahead: ReadAhead::None,
            reads_ahead_taken: 0,
            tail: TailCache::default(),
        };
        log.recover(out);
        log
    }

    /// Forgets the in-memory state and recovers from disk again, as after a restart. Used
    /// after [`LogEvent::Failed`]; results of ops issued before are ignored.
    pub fn recover(&mut self, out: &mut impl DiskQueue) {
        for (_, pending) in std::mem::take(&mut self.pending) {
            self.abandon(pending, &LogError::Recovering);
        }
        self.forget_reads_held();
        self.syncs.clear();
        self.sealed_indexes.clear();
        self.segments.clear();
        self.truncating = false;
        self.epochs_dirty = false;
        let recovery = Recovery::start(self, out);
        self.phase = Phase::Recovering(Box::new(recovery));
    }

    // ----- getters -----

    /// The partition's directory.
    pub fn dir(&self) -> &FileName {
        &self.dir
    }

    /// The settings in force.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Replaces the settings; they apply from the next append or retention pass.
    ///
    /// # Panics
    /// If `config` is invalid.
    pub fn set_config(&mut self, config: LogConfig) {
        config.validate().expect("a validated log config");
        self.config = config;
    }

    /// Whether recovery finished and the log has not failed.
    pub fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Ready)
    }

    /// The error that failed the log, if it failed.
    pub fn failure(&self) -> Option<&LogError> {
        match &self.phase {
            Phase::Failed(error) => Some(error),
            _ => None,
        }
    }

    /// The first offset held.
    pub fn log_start_offset(&self) -> u64 {
        self.log_start_offset
    }

    /// The offset the next appended record gets.
    pub fn log_end_offset(&self) -> u64 {
        self.log_end_offset
    }

    /// Every offset below this is durable on disk.
    pub fn flushed_offset(&self) -> u64 {
        self.flushed_offset
    }

    /// The leader-epoch cache.
    pub fn epochs(&self) -> &LeaderEpochCache {
        &self.epochs
    }

    /// The segments, oldest first; the last is the active one.
    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments.iter()
    }

    /// The base offset of the active (last) segment; a change after an append is a roll.
    pub fn active_segment_base(&self) -> Option<u64> {
        self.segments.back().map(|segment| segment.base_offset)
    }

    /// Bytes held in all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|segment| segment.size_bytes).sum()
    }

    /// Index writes and removals that failed (they are redone by recovery).
    pub fn housekeeping_failures(&self) -> u64 {
        self.housekeeping_failures
    }

    /// Takes the next completed event.
    pub fn poll_event(&mut self) -> Option<LogEvent> {
        self.events.pop_front()
    }

    // ----- appends -----

    fn check_writable(&self) -> Result<(), LogError> {
        match &self.phase {
            Phase::Recovering(_) => Err(LogError::Recovering),
            Phase::Failed(error) => Err(error.clone()),
            Phase::Ready if self.truncating => Err(LogError::Truncating),
            Phase::Ready => Ok(()),
        }
    }

    /// Appends one batch a producer sent, assigning its offsets: patches its `baseOffset` to
    /// the log end offset and its `partitionLeaderEpoch` to `leader_epoch`. The batch is
    /// validated first; an invalid one leaves the log untouched.
    pub fn append_as_leader(
        &mut self,
        now: Instant,
        mut batch: BytesMut,
        leader_epoch: i32,
        out: &mut impl DiskQueue,
    ) -> Result<AppendInfo, LogError> {
        self.check_writable()?;
        let mut header = batch::validate_produced_batch(&batch, self.config.batch_bytes_max)?;
        self.check_epoch(leader_epoch)?;
        let base_offset = self.log_end_offset;
        patch_batch(&mut batch, base_offset, leader_epoch);
        header.base_offset = base_offset as i64;
        header.partition_leader_epoch = leader_epoch;
        if self.epochs.assign(leader_epoch, base_offset) {
            self.epochs_dirty = true;
        }
        self.write_batch(now, batch.freeze(), &header, out);
        self.invariants();
        Ok(AppendInfo {
            base_offset,
            last_offset: header.last_offset() as u64,
            max_timestamp: header.max_timestamp,
        })
    }

    /// Appends batches copied from a leader, keeping their offsets and epochs. They must all
    /// be valid and continue at the log end offset; otherwise nothing is appended.
    pub fn append_as_follower(
        &mut self,
        now: Instant,
        records: Bytes,
        out: &mut impl DiskQueue,
    ) -> Result<Option<AppendInfo>, LogError> {
        self.check_writable()?;
        let mut batches: Vec<(usize, BatchHeader)> = Vec::new();
        let mut expected = self.log_end_offset;
        let mut scan = BatchScan::new(&records, self.config.batch_bytes_max);
        for (position, header) in scan.by_ref() {
            if header.base_offset < 0 || header.base_offset as u64 != expected {
                let found = header.base_offset;
                return Err(BatchError::NonContiguous { expected, found }.into());
            }
            self.check_epoch(header.partition_leader_epoch)?;
            expected = header.next_offset() as u64;
            batches.push((position, header));
        }
        match scan.stop() {
            None => {}
            Some(ScanStop::Invalid { error, .. }) => return Err(error.clone().into()),
            Some(ScanStop::Incomplete { pos, needed }) => {
                let available = records.len() - pos;
                return Err(BatchError::Truncated { available, needed: *needed }.into());
            }
        }
        let (Some((_, first)), Some((_, last))) = (batches.first(), batches.last()) else {
            return Ok(None);
        };
        let info = AppendInfo {
            base_offset: first.base_offset as u64,
            last_offset: last.last_offset() as u64,
            max_timestamp: batches.iter().map(|(_, h)| h.max_timestamp).max().unwrap_or(-1),
        };
        for (position, header) in &batches {
            if self.epochs.assign(header.partition_leader_epoch, header.base_offset as u64) {
                self.epochs_dirty = true;
            }
            let bytes = records.slice(*position..*position + header.total_bytes());
            self.write_batch(now, bytes, header, out);
        }
        self.invariants();
        Ok(Some(info))
    }

    fn check_epoch(&self, epoch: i32) -> Result<(), LogError> {
        match self.epochs.latest_epoch() {
            Some(latest) if epoch < latest => Err(LogError::StaleEpoch { epoch, latest }),
            _ => Ok(()),
        }
    }

    /// Records that leader epoch `epoch` starts at the log end offset, as a new leader does
    /// before its first append (so OffsetForLeaderEpoch answers for it). Persisted with the
    /// next flush.
    pub fn assign_epoch(&mut self, epoch: i32) {
        if self.epochs.assign(epoch, self.log_end_offset) {
            self.epochs_dirty = true;
        }
    }

    fn write_batch(
        &mut self,
        now: Instant,
        bytes: Bytes,
        header: &BatchHeader,
        out: &mut impl DiskQueue,
    ) {
        debug_assert_eq!(bytes.len(), header.total_bytes());
        if self.should_roll(now, header) {
            self.roll(now, out);
        }
        let interval = self.config.index_interval_bytes;
        let active = self.segments.back_mut().expect("a ready log has an active segment");
        if active.is_empty() {
            active.created_at = now;
        }
        let position = active.size_bytes;
        active.observe_batch(position, header, interval);
        let limit = self.config.tail_cache_bytes as usize;
        let (base, next) = (header.base_offset as u64, header.next_offset() as u64);
        self.tail.push(now, base, next, bytes.clone(), limit);
        let op = DiskOp::Append { file: active.log_file.clone(), pos: position, data: bytes };
        self.log_end_offset = active.next_offset;
        let id = out.submit(op);
        self.pending.insert(id, Pending::Data);
        // Canary (issue 4): an unsynced write treated as durable.
        #[cfg(feature = "canary")]
        if canary::is(canary::Canary::UnsyncedWriteDurable) {
            self.flushed_offset = self.log_end_offset;
            self.events.push_back(LogEvent::Flushed { offset: self.flushed_offset });
        }
    }

    fn should_roll(&self, now: Instant, header: &BatchHeader) -> bool {
        let active = self.segments.back().expect("an active segment");
        if active.is_empty() {
            return false;
        }
        let too_big = active.size_bytes + header.total_bytes() as u64 > self.config.segment_bytes;
        let too_old = now >= active.created_at + Duration::from_millis(self.config.segment_ms);
        let relative_end = header.next_offset() as u64 - active.base_offset;
        too_big || too_old || relative_end > u64::from(u32::MAX)
    }

    /// Seals the active segment (sync it, then write its index) and opens a new one.
    fn roll(&mut self, now: Instant, out: &mut impl DiskQueue) {
        let active = self.segments.back_mut().expect("an active segment");
        assert!(!active.sealed);
        active.sealed = true;
        let target = active.next_offset;
        let (log_file, index_file, index) =
            (active.log_file.clone(), active.index_file.clone(), active.encode_index());
        // A sealed segment is trusted at recovery without a scan, so the epochs it holds must
        // be on disk before it counts as durable.
        self.submit_durability_point(log_file, target, out);
        self.sealed_indexes.push_back((target, index_file, index));
        let segment = Segment::new(&self.dir, self.log_end_offset, now);
        let id = out.submit(DiskOp::Create { file: segment.log_file.clone() });
        self.pending.insert(id, Pending::Data);
        self.segments.push_back(segment);
    }

    fn write_index_file(&mut self, file: FileName, bytes: Bytes, out: &mut impl DiskQueue) {
        for op in [
            DiskOp::Create { file: file.clone() },
            DiskOp::Append { file: file.clone(), pos: 0, data: bytes },
            DiskOp::Sync { file },
        ] {
            let id = out.submit(op);
            self.pending.insert(id, Pending::Housekeeping);
        }
    }

    // ----- durability -----

    /// Makes everything appended so far durable: syncs the active segment (and persists the
    /// epoch cache if it changed). [`LogEvent::Flushed`] follows once the syncs completed.
    /// Several appends between two flushes share one sync (group commit).
    pub fn flush(&mut self, out: &mut impl DiskQueue) {
        if self.check_writable().is_err() {
            return;
        }
        if self.sync_issued_offset >= self.log_end_offset && !self.epochs_dirty {
            return;
        }
        let file = self.segments.back().expect("an active segment").log_file.clone();
        self.submit_durability_point(file, self.log_end_offset, out);
    }

    /// Persists the epoch cache if it changed, then syncs `file`; once both completed,
    /// offsets below `target` are durable.
    pub(super) fn submit_durability_point(
        &mut self,
        file: FileName,
        target: u64,
        out: &mut impl DiskQueue,
    ) {
        if self.epochs_dirty {
            self.write_epoch_checkpoint(out);
        }
        self.submit_sync(file, target, out);
    }

    /// Whether appended data or epoch changes wait for a flush.
    pub fn needs_flush(&self) -> bool {
        self.sync_issued_offset < self.log_end_offset || self.epochs_dirty
    }

    fn submit_sync(&mut self, file: FileName, target: u64, out: &mut impl DiskQueue) {
        let id = out.submit(DiskOp::Sync { file });
        self.track_sync(id, target);
    }

    fn track_sync(&mut self, id: OpId, target: u64) {
        self.pending.insert(id, Pending::Sync);
        self.syncs.push_back(SyncWait {
            op: id,
            target,
            done: false,
            then_rename: None,
            installs_checkpoint: false,
            ends_restart: false,
        });
        self.sync_issued_offset = self.sync_issued_offset.max(target);
    }

    fn write_epoch_checkpoint(&mut self, out: &mut impl DiskQueue) {
        // A name per write: a second checkpoint may be written before the first one's rename
        // ran, and a shared temporary name would let the first rename move the second file
        // and the second rename find nothing (failing the log). Recovery removes `*.tmp`.
        self.checkpoint_writes += 1;
        let tmp = self.dir.join(&format!("{EPOCH_CHECKPOINT}.{}.tmp", self.checkpoint_writes));
        let mut bytes = BytesMut::new();
        let checkpoint = EpochCheckpoint { entries: self.epochs.entries().to_vec() };
        encode_frame(&checkpoint, &mut bytes);
        for op in [
            DiskOp::Create { file: tmp.clone() },
            DiskOp::Append { file: tmp.clone(), pos: 0, data: bytes.freeze() },
        ] {
            let id = out.submit(op);
            self.pending.insert(id, Pending::Data);
        }
        // Queued as a sync that moves the flushed offset nowhere by itself, so the segment
        // sync queued after it counts only once the checkpoint is installed too.
        let id = out.submit(DiskOp::Sync { file: tmp.clone() });
        self.track_sync(id, self.flushed_offset);
        let wait = self.syncs.back_mut().expect("just queued");
        wait.then_rename = Some((tmp, self.dir.join(EPOCH_CHECKPOINT)));
        wait.installs_checkpoint = true;
        self.epochs_dirty = false;
    }

    fn complete_sync(&mut self, id: OpId, result: DiskResult, out: &mut impl DiskQueue) {
        if let Err(error) = result {
            // fsyncgate: after a failed fsync the unsynced tail may be gone; only a fresh
            // recovery knows what the disk holds.
            self.fail(LogError::Storage { file: self.dir.clone(), error });
            return;
        }
        if let Some(wait) = self.syncs.iter_mut().find(|wait| wait.op == id) {
            match wait.then_rename.take() {
                Some((from, to)) => {
                    let rename = out.submit(DiskOp::Rename { from, to });
                    wait.op = rename;
                    self.pending.insert(rename, Pending::Sync);
                }
                None => wait.done = true,
            }
        }
        self.advance_flushed(out);
    }

    /// Moves the flushed offset over the prefix of completed syncs (once recovery is over:
    /// until then the targets of its syncs are not known).
    fn advance_flushed(&mut self, out: &mut impl DiskQueue) {
        if !self.is_ready() {
            return;
        }
        let before = self.flushed_offset;
        while self.syncs.front().is_some_and(|wait| wait.done) {
            let wait = self.syncs.pop_front().expect("checked");
            self.flushed_offset = self.flushed_offset.max(wait.target.min(self.log_end_offset));
            if wait.ends_restart {
                // The new segment is on disk (and, ops running in order, the old ones gone).
                self.truncating = false;
                self.events.push_back(LogEvent::Truncated { offset: self.log_end_offset });
            }
        }
        // An index makes recovery trust the epoch checkpoint for its segment: write none while
        // an epoch change is not yet on disk.
        let checkpoint_pending =
            self.epochs_dirty || self.syncs.iter().any(|wait| wait.installs_checkpoint);
        while let Some((target, _, _)) = self.sealed_indexes.front() {
            if *target > self.flushed_offset || checkpoint_pending {
                break;
            }
            let (_, file, bytes) = self.sealed_indexes.pop_front().expect("checked");
            self.write_index_file(file, bytes, out);
        }
        if self.flushed_offset > before {
            self.events.push_back(LogEvent::Flushed { offset: self.flushed_offset });
        }
    }

    // ----- truncation -----

    /// Removes every record at or after `offset` (a follower diverging from its leader). If
    /// `offset` falls inside a batch, that whole batch goes. [`LogEvent::Truncated`] reports
    /// the new log end offset; appends are refused until then.
    ///
    /// # Panics
    /// If `offset` is below the log start offset: use
    /// [`truncate_fully_and_start_at`](Self::truncate_fully_and_start_at) for that.
    pub fn truncate_to(&mut self, offset: u64, out: &mut impl DiskQueue) -> Result<(), LogError> {
        self.check_writable()?;
        assert!(offset >= self.log_start_offset, "truncating below the log start");
        if offset >= self.log_end_offset {
            // Nothing to cut but an epoch this replica assigned at its LEO as leader and never
            // wrote in: that entry conflicts with the new leader's epochs (Kafka's
            // `UnifiedLog.truncateTo` drops it the same way).
            if self.epochs.truncate_from_end(self.log_end_offset) {
                self.epochs_dirty = true;
            }
            self.events.push_back(LogEvent::Truncated { offset: self.log_end_offset });
            return Ok(());
        }
        let index = self.segment_index_for(offset);
        let segment = &self.segments[index];
        if offset == segment.base_offset {
            self.apply_truncation(index, offset, 0, out);
            return Ok(());
        }
        let job = TruncateJob { offset, segment_base: segment.base_offset, at: None, retries: 0 };
        self.truncating = true;
        self.submit_truncate_read(job, out);
        Ok(())
    }

    /// Empties the log and restarts it at `offset` (a follower whose leader no longer holds
    /// anything the follower has). Like a truncation, it is under way until
    /// [`LogEvent::Truncated`] reports it: appends are refused until then.
    ///
    /// The old segments' removals run before the new segment's create, and each is durable
    /// once done: until the create completed, a crash or a failed create (a full disk) may
    /// leave no segment at all, and recovery would start the log at 0. So nothing counts as
    /// flushed meanwhile (the flushed offset is 0, below the new log start: the one state in
    /// which it may be), and the restart ends when the create completes.
    pub fn truncate_fully_and_start_at(
        &mut self,
        now: Instant,
        offset: u64,
        out: &mut impl DiskQueue,
    ) -> Result<(), LogError> {
        self.check_writable()?;
        self.forget_reads_held();
        for segment in std::mem::take(&mut self.segments) {
            self.remove_segment_files(&segment, Pending::Data, out);
        }
        let segment = Segment::new(&self.dir, offset, now);
        let id = out.submit(DiskOp::Create { file: segment.log_file.clone() });
        self.segments.push_back(segment);
        self.log_start_offset = offset;
        self.log_end_offset = offset;
        // What earlier syncs cover is gone with the old segments.
        self.flushed_offset = 0;
        self.syncs.iter_mut().for_each(|wait| wait.target = 0);
        self.sealed_indexes.clear();
        self.sync_issued_offset = 0;
        self.track_sync(id, offset);
        self.syncs.back_mut().expect("just queued").ends_restart = true;
        self.truncating = true;
        self.epochs = LeaderEpochCache::default();
        self.epochs_dirty = true;
        self.invariants();
        Ok(())
    }

    /// Whether a restart waits for its new segment to be on disk.
    fn restarting(&self) -> bool {
        self.syncs.iter().any(|wait| wait.ends_restart)
    }

    fn remove_segment_files(
        &mut self,
        segment: &Segment,
        class: Pending,
        out: &mut impl DiskQueue,
    ) {
        let id = out.submit(DiskOp::Remove { file: segment.log_file.clone() });
        self.pending.insert(id, class);
        let id = out.submit(DiskOp::Remove { file: segment.index_file.clone() });
        self.pending.insert(id, Pending::Housekeeping);
    }

    fn reset_flushed_to(&mut self, offset: u64) {
        self.flushed_offset = self.flushed_offset.min(offset).max(self.log_start_offset);
        self.sync_issued_offset = self.sync_issued_offset.min(offset);
        for wait in &mut self.syncs {
            wait.target = wait.target.min(offset);
        }
    }

    /// Cuts the log at `offset`, which starts at byte `position` of segment `index`.
    fn apply_truncation(
        &mut self,
        index: usize,
        offset: u64,
        position: u64,
        out: &mut impl DiskQueue,
    ) {
        self.forget_reads_held();
        while self.segments.len() > index + 1 {
            let segment = self.segments.pop_back().expect("checked");
            self.remove_segment_files(&segment, Pending::Data, out);
        }
        let segment = self.segments.back_mut().expect("the segment holding the offset");
        let was_sealed = segment.sealed;
        segment.truncate(offset, position);
        let (log_file, index_file) = (segment.log_file.clone(), segment.index_file.clone());
        if was_sealed {
            let id = out.submit(DiskOp::Remove { file: index_file });
            self.pending.insert(id, Pending::Housekeeping);
        }
        let id = out.submit(DiskOp::Truncate { file: log_file.clone(), len: position });
        self.pending.insert(id, Pending::Data);
        self.log_end_offset = offset;
        self.reset_flushed_to(offset);
        self.sealed_indexes.retain(|(target, _, _)| *target <= offset);
        if self.epochs.truncate_from_end(offset) {
            self.epochs_dirty = true;
        }
        // A truncation is not durable until synced: until then the cut bytes may come back.
        // The epoch cache goes to disk first, so that no data appended after the truncation
        // is ever on disk beside a checkpoint from before it.
        self.submit_durability_point(log_file, offset, out);
        self.truncating = false;
        self.events.push_back(LogEvent::Truncated { offset });
        self.invariants();
    }

    // ----- retention -----

    /// Deletes whole segments, oldest first, whose newest record is older than `retention.ms`
    /// or while the log is larger than `retention.bytes`. Only segments wholly below
    /// `deletable_below` (the high watermark) go, and never the active one. Returns how many
    /// segments were deleted.
    pub fn apply_retention(
        &mut self,
        now: Instant,
        deletable_below: u64,
        out: &mut impl DiskQueue,
    ) -> usize {
        if self.check_writable().is_err() {
            return 0;
        }
        let mut size = self.size_bytes();
        let mut deleted = 0;
        while self.segments.len() > 1 {
            let oldest = &self.segments[0];
            if oldest.next_offset > deletable_below {
                break;
            }
            let age_ms = now.as_millis().saturating_sub(oldest.max_timestamp);
            let by_time = self.config.retention_ms >= 0
                && oldest.max_timestamp >= 0
                && age_ms > self.config.retention_ms;
            let by_size = self.config.retention_bytes >= 0
                && size - oldest.size_bytes >= self.config.retention_bytes as u64;
            if !(by_time || by_size) {
                break;
            }
            let segment = self.segments.pop_front().expect("checked");
            size -= segment.size_bytes;
            self.remove_segment_files(&segment, Pending::Housekeeping, out);
            deleted += 1;
        }
        if deleted > 0 {
            self.log_start_offset = self.segments[0].base_offset;
            self.flushed_offset = self.flushed_offset.max(self.log_start_offset);
            if self.epochs.truncate_from_start(self.log_start_offset) {
                self.epochs_dirty = true;
            }
            self.invariants();
        }
        deleted
    }

    // ----- inputs -----

    /// Takes the result of disk op `id`. Returns `false` if the op is not this log's (or was
    /// issued before a failure or a new recovery, and is ignored).
    pub fn handle_disk(
        &mut self,
        now: Instant,
        id: OpId,
        result: DiskResult,
        out: &mut impl DiskQueue,
    ) -> bool {
        let Some(pending) = self.pending.remove(&id) else {
            return false;
        };
        match pending {
            Pending::Data => {
                if let Err(error) = result {
                    self.fail(LogError::Storage { file: self.dir.clone(), error });
                }
            }
            Pending::Sync => self.complete_sync(id, result, out),
            Pending::Housekeeping => {
                if result.is_err() {
                    self.housekeeping_failures += 1;
                }
            }
            Pending::Read(job) => self.complete_read(now, id, job, result, out),
            Pending::Seek(job) => self.complete_seek(job, result, out),
            Pending::Truncate(job) => self.complete_truncate_read(job, result, out),
            Pending::Recovery(step) => self.complete_recovery_step(now, step, result, out),
        }
        if !matches!(self.phase, Phase::Recovering(_)) {
            self.invariants();
        }
        true
    }

    /// Fails the log: pending reads fail, appends are refused until [`Self::recover`].
    fn fail(&mut self, error: LogError) {
        if matches!(self.phase, Phase::Failed(_)) {
            return;
        }
        tracing::warn!(dir = %self.dir, %error, "partition log failed");
        for (_, pending) in std::mem::take(&mut self.pending) {
            self.abandon(pending, &error);
        }
        self.forget_reads_held();
        self.syncs.clear();
        self.sealed_indexes.clear();
        self.truncating = false;
        self.phase = Phase::Failed(error.clone());
        self.events.push_back(LogEvent::Failed { error });
    }

    /// Answers the caller of an op that will never complete.
    fn abandon(&mut self, pending: Pending, error: &LogError) {
        let token = match pending {
            Pending::Read(ref job) if job.stream == Stream::Ahead => return,
            Pending::Read(ref job) => job.token,
            Pending::Seek(ref job) => job.token,
            _ => return,
        };
        let event = match pending {
            Pending::Read(_) => LogEvent::Read { token, result: Err(error.clone()) },
            _ => LogEvent::OffsetForTimestamp { token, result: Err(error.clone()) },
        };
        self.events.push_back(event);
    }

    /// The index of the segment holding `offset` (the last whose base is at or below it).
    fn segment_index_for(&self, offset: u64) -> usize {
        let after = self.segments.partition_point(|segment| segment.base_offset <= offset);
        assert!(after > 0, "offset {offset} below the first segment");
        // Canary (issue 4, Redpanda issue 2326): off by one after retention moved the start.
        #[cfg(feature = "canary")]
        if canary::is(canary::Canary::LookupOffByOneAfterRetention)
            && self.log_start_offset > 0
            && after > 1
            && self.segments[after - 1].base_offset == offset
        {
            return after - 2;
        }
        after - 1
    }

    fn segment_by_base(&self, base: u64) -> Option<&Segment> {
        let index = self.segments.binary_search_by_key(&base, |s| s.base_offset).ok()?;
        Some(&self.segments[index])
    }

    /// Checks the log's invariants; a failure is a bug.
    pub fn invariants(&self) {
        if !self.is_ready() {
            return;
        }
        let first = self.segments.front().expect("a ready log has a segment");
        let last = self.segments.back().expect("a ready log has a segment");
        assert_eq!(first.base_offset, self.log_start_offset, "log start is the first segment");
        assert_eq!(last.next_offset, self.log_end_offset, "log end is the active segment's end");
        assert!(
            self.log_start_offset <= self.flushed_offset
                || (self.flushed_offset == 0 && self.restarting()),
            "flushed below the log start"
        );
        assert!(self.flushed_offset <= self.log_end_offset, "flushed beyond the log end");
        assert!(!last.sealed, "the active segment is not sealed");
        // Pairs without collecting them: this runs after every input (docs/simulator.md, Speed).
        for (segment, next) in self.segments.iter().zip(self.segments.iter().skip(1)) {
            assert_eq!(segment.next_offset, next.base_offset, "segments are contiguous");
            assert!(segment.sealed, "only the last segment is active");
        }
        if let Some(last_epoch) = self.epochs.entries().last() {
            assert!(last_epoch.start_offset <= self.log_end_offset, "epoch beyond log end");
        }
        self.tail.invariants(self.log_end_offset);
        match &self.read_ahead {
            ReadAhead::None => {}
            ReadAhead::After { next, .. } | ReadAhead::Ready { next, .. } => {
                assert!(*next <= self.log_end_offset, "read ahead past the log end");
            }
            ReadAhead::Reading { op, .. } => {
                let reading = matches!(self.pending.get(op), Some(Pending::Read(job))
                    if job.stream == Stream::Ahead);
                assert!(reading, "the read ahead in flight is pending");
            }
        }
    }
}

#[cfg(all(test, feature = "runtime"))]
mod tests {
    use super::harness::conformance;
    use crate::runtime::disk::FileDisk;

    /// The log's behaviours hold over real files in a temporary directory.
    #[test]
    fn conformance_over_real_files() {
        let root = tempfile::tempdir().unwrap();
        let mut n = 0;
        conformance::run_all(|| {
            n += 1;
            FileDisk::open(root.path().join(format!("disk-{n}"))).unwrap()
        });
    }
}
