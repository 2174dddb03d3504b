//! The replica's idempotent producer state (design §6, KIP-98): the partition's
//! [`ProducerStateTable`], kept in step with the log, and its snapshots on disk.
//!
//! Contract kept:
//! - The table reflects exactly the log below its covered offset. A leader `check`s each
//!   produced batch against it before appending and records it after; a follower records
//!   every batch it copies from its leader, so a follower that becomes leader has the table
//!   already (no rebuild on a leader change).
//! - After a recovery (at open, or after the log failed) and after a truncation the table
//!   cannot follow exactly, the table is rebuilt: the newest snapshot at or below the log end
//!   offset is restored (a damaged one is refused whole and an older one, or the log start,
//!   used), then the batch headers of the log after it are replayed through the log's own
//!   read path. Until then the replica neither starts leading nor fetches, and produce is
//!   refused with the retriable "recovering". Log it cannot read (damage, a sector gone
//!   bad) is skipped to the next segment, forgetting every producer seen so far; with no
//!   later segment, every producer is forgotten (KIP-360: any sequence accepted).
//! - A snapshot is a file `<offset>.snapshot` (20 digits, as Kafka names them) in the
//!   partition's directory, named by the offset the table covered when written; it is
//!   written when a segment rolls and at a clean stop, and trusted only once its `Sync`
//!   completed (a torn one fails its checksum on restore). The newest
//!   [`PRODUCER_SNAPSHOTS_KEPT`] are kept; a truncation (or a recovery) removes every one
//!   above the new log end, since the log they describe is gone.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use super::{ReadFor, Replica};
use crate::core::io::{DiskOk, DiskOp, DiskResult, FileName, OpId};
use crate::core::limits::{PRODUCER_REPLAY_READ_BYTES, PRODUCER_SNAPSHOTS_KEPT, READ_RETRIES_MAX};
use crate::core::log::batch::BatchHeader;
use crate::core::log::{DiskQueue, LogError, ReadStart};
use crate::core::producer::{ProducerStateTable, Truncation};
use crate::core::time::Instant;

/// Where a rebuild of the table stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    /// Nothing under way.
    Idle,
    /// Reading the snapshot covering `offset`.
    Snapshot { offset: u64 },
    /// Replaying the log from the table's covered offset; the read `token` is in flight.
    Replay { token: u64 },
}

/// What a disk op of the producer state is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SnapshotOp {
    /// Listing the directory at open.
    List,
    /// Reading the snapshot covering `offset`.
    Read { offset: u64 },
    /// Writing the snapshot covering `offset`: its create or append (`sync: false`), or
    /// the sync that makes it trusted.
    Write { offset: u64, len: u64, sync: bool },
    /// Removing a snapshot file.
    Remove,
}

/// The producer state of one replica. See the module docs.
#[derive(Debug)]
pub(super) struct Producers {
    /// The table; exact only when [`Producers::is_ready`].
    pub table: ProducerStateTable,
    dir: FileName,
    /// Whether the directory listing at open came back.
    listed: bool,
    /// Whether the table must be rebuilt (from a snapshot and the log) before it is used.
    reload: bool,
    load: Load,
    /// Synced snapshot files: covered offset -> length in bytes.
    snapshots: BTreeMap<u64, u64>,
    /// The snapshot being written (its covered offset), and whether it was cancelled by a
    /// truncation below it (its file is removed after the write).
    writing: Option<(u64, bool)>,
    ops: HashMap<OpId, SnapshotOp>,
    /// The base offset of the log's active segment when last looked at: a change after an
    /// append is a roll.
    active_segment: Option<u64>,
    /// Replay reads that failed (an I/O error, or a checksum on every try) at the covered
    /// offset `.1`, with no replay getting past it since: a reload reads the good batches
    /// before the damage again, which must not count as getting past it.
    replay_read_failures: (u8, u64),
    /// How many times a rebuild could not read the log and forgot every producer.
    forgets: u64,
    /// Producers a leader handed over with the log start this replica's log restarts at,
    /// until the table takes them in (decision 0034).
    handed: Option<ProducerStateTable>,
}

/// The snapshot file covering `offset` in `dir`.
pub fn snapshot_file(dir: &FileName, offset: u64) -> FileName {
    dir.join(&format!("{offset:020}.snapshot"))
}

/// The covered offset a snapshot file's name gives, if it is one.
fn parse_snapshot_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".snapshot")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl Producers {
    /// Starts listing `dir` for snapshots; the table is rebuilt once the log recovered.
    pub fn open(dir: FileName, out: &mut impl DiskQueue) -> Producers {
        let id = out.submit(DiskOp::List { dir: dir.clone() });
        let mut ops = HashMap::new();
        ops.insert(id, SnapshotOp::List);
        Producers {
            table: ProducerStateTable::new(),
            dir,
            listed: false,
            reload: true,
            load: Load::Idle,
            snapshots: BTreeMap::new(),
            writing: None,
            ops,
            active_segment: None,
            replay_read_failures: (0, 0),
            forgets: 0,
            handed: None,
        }
    }

    /// Whether the table reflects the log and may be used.
    pub fn is_ready(&self) -> bool {
        self.listed && !self.reload && self.load == Load::Idle
    }

    /// The covered offsets of the synced snapshots on disk (tests).
    #[cfg(test)]
    pub fn snapshot_offsets(&self) -> Vec<u64> {
        self.snapshots.keys().copied().collect()
    }

    /// Asks for a rebuild (the log recovered, or a truncation went past what the table
    /// remembers); whatever load was under way is abandoned.
    pub fn want_reload(&mut self) {
        self.reload = true;
        self.load = Load::Idle;
    }

    fn remove_file(&mut self, file: FileName, out: &mut impl DiskQueue) {
        let id = out.submit(DiskOp::Remove { file });
        self.ops.insert(id, SnapshotOp::Remove);
    }

    /// Removes every snapshot covering more than `offset` (the log there is gone), the one
    /// being written included.
    pub fn drop_snapshots_above(&mut self, offset: u64, out: &mut impl DiskQueue) {
        let above: Vec<u64> = self.snapshots.range(offset + 1..).map(|(o, _)| *o).collect();
        for covered in above {
            self.snapshots.remove(&covered);
            self.remove_file(snapshot_file(&self.dir, covered), out);
        }
        if let Some((covered, cancelled)) = &mut self.writing
            && *covered > offset
        {
            // Disk ops run in order: this removal follows the write's own ops.
            *cancelled = true;
            let file = snapshot_file(&self.dir, *covered);
            self.remove_file(file, out);
        }
    }

    /// Writes a snapshot of the table unless one is being written or the table is not
    /// ready or already snapshotted at its covered offset.
    pub fn write_snapshot(&mut self, out: &mut impl DiskQueue) {
        let offset = self.table.covered_end_offset();
        if !self.is_ready() || self.writing.is_some() || self.snapshots.contains_key(&offset) {
            return;
        }
        let bytes = Bytes::from(self.table.snapshot());
        let len = bytes.len() as u64;
        let file = snapshot_file(&self.dir, offset);
        let steps = [
            (DiskOp::Create { file: file.clone() }, false),
            (DiskOp::Append { file: file.clone(), pos: 0, data: bytes }, false),
            (DiskOp::Sync { file }, true),
        ];
        for (op, sync) in steps {
            let id = out.submit(op);
            self.ops.insert(id, SnapshotOp::Write { offset, len, sync });
        }
        self.writing = Some((offset, false));
    }

    /// Notes the log's active segment after an append; writes a snapshot if it rolled.
    pub fn after_append(&mut self, active_segment: Option<u64>, out: &mut impl DiskQueue) {
        if active_segment == self.active_segment {
            return;
        }
        let rolled = self.active_segment.is_some();
        self.active_segment = active_segment;
        if rolled {
            self.write_snapshot(out);
        }
    }

    fn write_done(
        &mut self,
        offset: u64,
        len: u64,
        sync: bool,
        ok: bool,
        out: &mut impl DiskQueue,
    ) {
        let Some((writing, cancelled)) = self.writing else { return };
        if writing != offset || (ok && !sync) {
            return;
        }
        self.writing = None;
        if !ok {
            tracing::debug!(dir = %self.dir, offset, "producer state snapshot not written");
            return;
        }
        if cancelled {
            return;
        }
        self.snapshots.insert(offset, len);
        while self.snapshots.len() > PRODUCER_SNAPSHOTS_KEPT {
            let (oldest, _) = self.snapshots.pop_first().expect("more than kept");
            self.remove_file(snapshot_file(&self.dir, oldest), out);
        }
    }

    fn listed(&mut self, result: &DiskResult) {
        self.listed = true;
        let Ok(DiskOk::Listing(entries)) = result else {
            // Without a listing no snapshot is known: the table is rebuilt from the log start.
            tracing::warn!(dir = %self.dir, "listing for producer snapshots failed");
            return;
        };
        for entry in entries.iter().filter(|entry| !entry.is_dir) {
            if let Some(offset) = parse_snapshot_name(&entry.name) {
                self.snapshots.insert(offset, entry.len);
            }
        }
    }
}

impl Replica {
    /// The result of a producer-state disk op; returns `false` if `id` is not one.
    pub(super) fn producer_disk_done(
        &mut self,
        id: OpId,
        result: &DiskResult,
        out: &mut impl DiskQueue,
    ) -> bool {
        let Some(op) = self.producers.ops.remove(&id) else { return false };
        match op {
            SnapshotOp::List => self.producers.listed(result),
            SnapshotOp::Read { offset } => self.snapshot_read(offset, result, out),
            SnapshotOp::Write { offset, len, sync } => {
                self.producers.write_done(offset, len, sync, result.is_ok(), out)
            }
            SnapshotOp::Remove => {}
        }
        true
    }

    /// Starts a rebuild of the table when one is wanted and the log can be read. Returns
    /// whether it started.
    pub(super) fn step_producers(&mut self, out: &mut impl DiskQueue) -> bool {
        let p = &self.producers;
        if !p.listed || !p.reload || p.load != Load::Idle {
            return false;
        }
        if !self.log.is_ready() || self.truncating {
            return false;
        }
        self.producers.reload = false;
        let leo = self.log.log_end_offset();
        self.producers.drop_snapshots_above(leo, out);
        self.load_next_snapshot(out);
        true
    }

    /// Reads the newest snapshot not above the log end, or starts from the log start.
    fn load_next_snapshot(&mut self, out: &mut impl DiskQueue) {
        let leo = self.log.log_end_offset();
        let p = &mut self.producers;
        match p.snapshots.range(..=leo).next_back().map(|(o, l)| (*o, *l)) {
            Some((offset, len)) => {
                let file = snapshot_file(&p.dir, offset);
                let len = u32::try_from(len).unwrap_or(u32::MAX);
                let id = out.submit(DiskOp::Read { file, pos: 0, len });
                p.ops.insert(id, SnapshotOp::Read { offset });
                p.load = Load::Snapshot { offset };
            }
            None => {
                p.table = ProducerStateTable::new();
                p.table.log_start_moved(self.log.log_start_offset());
                self.replay_next(out);
            }
        }
    }

    fn snapshot_read(&mut self, offset: u64, result: &DiskResult, out: &mut impl DiskQueue) {
        if self.producers.load != (Load::Snapshot { offset }) {
            return; // Abandoned by a newer reload.
        }
        let restored = match result {
            Ok(DiskOk::Data(bytes)) => ProducerStateTable::restore(bytes)
                .map_err(|error| error.to_string())
                .and_then(|table| match table.covered_end_offset() == offset {
                    true => Ok(table),
                    false => Err("its covered offset is not its name's".to_string()),
                })
                .and_then(|table| match offset <= self.log.log_end_offset() {
                    true => Ok(table),
                    false => Err("it covers more than the log holds".to_string()),
                }),
            Ok(_) => Err("not data".to_string()),
            Err(error) => Err(error.to_string()),
        };
        match restored {
            Ok(mut table) => {
                table.log_start_moved(self.log.log_start_offset());
                self.producers.table = table;
                self.replay_next(out);
            }
            Err(error) => {
                tracing::warn!(dir = %self.producers.dir, offset, %error,
                    "producer state snapshot refused; trying an older one");
                let p = &mut self.producers;
                p.snapshots.remove(&offset);
                p.remove_file(snapshot_file(&p.dir, offset), out);
                self.load_next_snapshot(out);
            }
        }
    }

    /// Reads the next stretch of log after the table's covered offset, or ends the rebuild.
    fn replay_next(&mut self, out: &mut impl DiskQueue) {
        // Bounded: each turn ends the rebuild, starts a read, or skips to a later segment.
        loop {
            let covered = self.producers.table.covered_end_offset();
            let leo = self.log.log_end_offset();
            if covered >= leo {
                self.producers.load = Load::Idle;
                self.producers.table.invariants();
                tracing::debug!(dir = %self.producers.dir, covered,
                    producers = self.producers.table.len(), "producer state rebuilt");
                return self.adopt_handed(out);
            }
            let token = self.next_read_token();
            let error = match self.log.read(token, covered, leo, PRODUCER_REPLAY_READ_BYTES, out) {
                Ok(ReadStart::Pending) => {
                    self.reads.insert(token, ReadFor::ProducerReplay);
                    self.producers.load = Load::Replay { token };
                    return;
                }
                Ok(ReadStart::Empty) => None,
                Err(error) => Some(error),
            };
            if !self.producer_replay_goes_past(covered, error) {
                return;
            }
        }
    }

    /// A replay read finished.
    pub(super) fn producer_replay_read(
        &mut self,
        token: u64,
        result: Result<Bytes, LogError>,
        out: &mut impl DiskQueue,
    ) {
        if self.producers.load != (Load::Replay { token }) {
            return;
        }
        let covered = self.producers.table.covered_end_offset();
        let bytes = match result {
            Ok(bytes) => bytes,
            Err(error) => {
                if self.producer_replay_goes_past(covered, Some(error)) {
                    self.replay_next(out);
                }
                return;
            }
        };
        let mut pos = 0;
        // Bounded by the read's size: each batch advances `pos` by its length.
        while pos < bytes.len() {
            let header = BatchHeader::parse(&bytes[pos..]).expect("the log reads whole batches");
            self.producers.table.replay(&header);
            pos += header.total_bytes();
        }
        let (_, failed_at) = self.producers.replay_read_failures;
        if self.producers.table.covered_end_offset() > failed_at {
            self.producers.replay_read_failures = (0, 0);
        }
        if self.producers.table.covered_end_offset() == covered
            && !self.producer_replay_goes_past(covered, None)
        {
            return;
        }
        self.replay_next(out);
    }

    /// The replay could not read past `covered`: a read failed with `error`, or brought
    /// nothing. Whether it goes on, from a later segment ([`Self::producer_replay_skips`]);
    /// otherwise it reloads to read again, or is over.
    fn producer_replay_goes_past(&mut self, covered: u64, error: Option<LogError>) -> bool {
        if let Some(error) = error
            && !self.producer_replay_gives_up(error)
        {
            return false;
        }
        self.producer_replay_skips(covered)
    }

    /// Whether the rebuild gives up on what a read that failed with `error` could not read.
    /// A failed log recovers and reloads again. A batch failing its checksum on every read of
    /// one log read, or an I/O error, is read again, from a fresh reload, up to
    /// [`READ_RETRIES_MAX`] times at the same offset (the good batches a reload reads before
    /// it do not count as getting past it: counting anew after them reloaded for ever,
    /// simulator seeds 389166 and 409855): bits flipped on the way from the disk are gone on
    /// the next read (recovery had just read the same bytes whole; simulator
    /// `flaky-reads-restart` seed 1164, where three flipped reads in a row made the table
    /// forget a producer, whose retry was then written twice), while damage on the medium,
    /// or a sector gone bad, fails every read until it is rewritten, and a rebuild that waited
    /// for it would keep the partition from serving for good (and reload without pause).
    fn producer_replay_gives_up(&mut self, error: LogError) -> bool {
        let p = &mut self.producers;
        let gives_up = match error {
            LogError::OffsetOutOfRange { .. } => true,
            LogError::Corrupt { .. } | LogError::Storage { .. } => {
                let covered = p.table.covered_end_offset();
                let (failures, at) = p.replay_read_failures;
                let failures = if at == covered { failures.saturating_add(1) } else { 1 };
                p.replay_read_failures = (failures, covered);
                failures > READ_RETRIES_MAX
            }
            _ => false,
        };
        if gives_up {
            p.replay_read_failures = (0, 0);
            tracing::warn!(dir = %p.dir, %error, covered = p.table.covered_end_offset(),
                "producer state replay cannot read the log");
        } else {
            tracing::debug!(dir = %p.dir, %error, "producer state replay read failed; reloading");
            p.want_reload();
        }
        gives_up
    }

    /// How many times this replica's producer state was rebuilt from a log it could not
    /// read whole, forgetting every producer (decision 0014): an idempotent producer's retry
    /// of a batch written before then may be appended again.
    pub fn producer_state_forgets(&self) -> u64 {
        self.producers.forgets
    }

    /// The rebuild cannot read past `covered`: every producer is forgotten (KIP-360: an
    /// unknown producer's first batch is taken at any sequence) rather than the partition
    /// never serving again. Where a later segment starts below the log end, the replay goes
    /// on from its base, as if the log started there (returns true): a producer whose
    /// batches are all below it stays forgotten, and one that wrote after it gets its state
    /// back, so a retry of a batch the log still holds is answered with its offset instead
    /// of appended twice. Otherwise the table covers the log end and the rebuild is over.
    fn producer_replay_skips(&mut self, covered: u64) -> bool {
        let leo = self.log.log_end_offset();
        let resume =
            self.log.segments().map(|s| s.base_offset).find(|base| *base > covered && *base < leo);
        let mut table = ProducerStateTable::new();
        table.log_start_moved(resume.unwrap_or(leo));
        self.producers.table = table;
        self.producers.forgets += 1;
        match resume {
            Some(base) => tracing::warn!(dir = %self.producers.dir, covered, resume = base,
                "producer state replay skips the damage; producers are forgotten and the \
                 replay goes on from the next segment"),
            None => {
                tracing::warn!(dir = %self.producers.dir, covered,
                    "producer state replay gave up; producers are forgotten");
                self.producers.load = Load::Idle;
            }
        }
        resume.is_some()
    }

    /// The log was cut at `offset` (a follower's truncation): the table follows, or is
    /// rebuilt when it cannot (its window lost batches the truncation would bring back).
    pub(super) fn producers_truncated(&mut self, offset: u64, out: &mut impl DiskQueue) {
        self.producers.drop_snapshots_above(offset, out);
        if !self.producers.is_ready() {
            self.producers.want_reload();
            return;
        }
        if let Truncation::ReloadNeeded { producers_forgotten } =
            self.producers.table.truncate_to(offset)
        {
            tracing::debug!(dir = %self.producers.dir, offset, producers_forgotten,
                "truncation into forgotten producer state: rebuilding");
            self.producers.want_reload();
        }
        self.producers.table.log_start_moved(self.log.log_start_offset());
        self.adopt_handed(out);
    }

    /// A leader answered this follower's fetch below its log start with `snapshot`: its
    /// producers whose batches all lie below `start`, where this log restarts. They are
    /// taken in once the restart's truncation is done and the table is ready.
    pub(super) fn producers_handed(&mut self, start: u64, snapshot: &Bytes) {
        self.producers.handed = None;
        if snapshot.is_empty() {
            return;
        }
        match ProducerStateTable::restore(snapshot) {
            Ok(table) if table.covered_end_offset() == start => self.producers.handed = Some(table),
            Ok(table) => tracing::warn!(dir = %self.producers.dir, start,
                covered = table.covered_end_offset(), "handed producer state refused: \
                it does not cover the log start"),
            Err(error) => tracing::warn!(dir = %self.producers.dir, start, %error,
                "handed producer state refused"),
        }
    }

    /// Takes in the producers a leader handed over, once the table is ready and the log
    /// starts where they end, and writes a snapshot so that a restart keeps them (a
    /// rebuild from the log alone cannot know them).
    fn adopt_handed(&mut self, out: &mut impl DiskQueue) {
        if self.producers.handed.is_none() || !self.producers.is_ready() || self.truncating {
            return;
        }
        let handed = self.producers.handed.take().expect("checked");
        let start = self.log.log_start_offset();
        if handed.covered_end_offset() != start || self.producers.table.covered_end_offset() < start
        {
            return; // The log moved on since: the handover no longer describes its start.
        }
        let taken = self.producers.table.adopt(&handed);
        tracing::debug!(dir = %self.producers.dir, start, taken, "handed producer state taken in");
        if taken > 0 {
            self.producers.write_snapshot(out);
        }
    }

    /// Records the batches a follower appended (whole, validated, contiguous).
    pub(super) fn producers_follower_appended(
        &mut self,
        records: &Bytes,
        out: &mut impl DiskQueue,
    ) {
        let mut pos = 0;
        while pos < records.len() {
            let header = BatchHeader::parse(&records[pos..]).expect("appended batches");
            let base = u64::try_from(header.base_offset).expect("appended offsets");
            self.producers.table.appended(&header, base);
            pos += header.total_bytes();
        }
        let active = self.log.active_segment_base();
        self.producers.after_append(active, out);
    }

    /// Forgets producers idle for `producer.id.expiration.ms`.
    pub(super) fn expire_producers(&mut self, now: Instant) {
        if !self.producers.is_ready() {
            return;
        }
        let expired = self.producers.table.expire(now, self.config.producer_id_expiration);
        if expired > 0 {
            tracing::debug!(dir = %self.producers.dir, expired, "producers expired");
        }
    }
}
