//! Recovery: how a log finds out what its directory holds after a start or a failure.
//!
//! 1. List the directory. Remove leftover temporary files and indexes without a segment.
//! 2. Read `leader-epoch-checkpoint`, if present (a damaged one is ignored and rebuilt from the
//!    epochs the scans see).
//! 3. For each segment in offset order: trust it through its index file when the index is
//!    whole and records the segment file's exact length; otherwise scan it, validating every
//!    batch (length, magic, CRC-32C, dense offsets), and rebuild its index. A scan that stops
//!    early (a torn or corrupt tail, a batch out of place) cuts the segment there and removes
//!    every later segment, so offsets stay dense. Damage, and an epoch change (neither an
//!    epoch nor a length is under the CRC), count only once three reads of the chunk agree
//!    on them (a flip in transit is gone on the next read); reads that agree on their first
//!    batches only confirm those, and reads that never agree fail the log, to be recovered
//!    again later, rather than cut it.
//! 4. Sync every scanned segment (its bytes may have been in the page cache only), open a new
//!    active segment if the last one was sealed, and rebuild the epoch cache.
//!
//! Recovery is idempotent: recovering a recovered log changes nothing.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::batch::{BatchHeader, BatchScan, ScanStop};
use super::epoch::{EpochCheckpoint, EpochEntry, LeaderEpochCache};
use super::segment::{Segment, parse_file_name};
use super::{
    DiskQueue, EPOCH_CHECKPOINT, LogError, LogEvent, PartitionLog, Pending, Phase, SyncWait,
};
use crate::core::frame::decode_frame;
use crate::core::io::{DirEntry, DiskError, DiskOk, DiskOp, DiskResult, OpId};
use crate::core::limits::{
    RECOVERY_READ_BYTES, RECOVERY_READ_RETRIES_MAX, RECOVERY_READS_AGREEING,
};
use crate::core::time::Instant;

/// Which read of recovery an op in flight is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RecoveryStep {
    List,
    ReadCheckpoint,
    ReadIndex,
    Scan,
}

/// A segment being scanned.
#[derive(Debug)]
struct Scan {
    segment: Segment,
    file_len: u64,
    retries: u8,
    /// What each read of the current chunk showed, until enough reads agree.
    outcomes: Vec<ReadOutcome>,
}

/// A valid batch one read of a chunk showed: its position in the segment and its header.
/// Two reads showing the same one hold the same bytes there: the CRC-32C covers everything
/// after the header fields that are compared.
type Seen = (u64, BatchHeader);

/// What one read of a chunk showed during a recovery scan.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ReadOutcome {
    /// Where its valid bytes end in the segment.
    valid_end: u64,
    /// The epoch changes among its batches.
    epoch_changes: Vec<(i32, u64)>,
    /// For a damaged read, a checksum of the bytes from the damage to the end of the chunk.
    damage: Option<u32>,
    /// Its valid batches, in order.
    batches: Vec<Seen>,
}

impl ReadOutcome {
    /// Whether two reads agree on the chunk as a whole: where its valid bytes end, the epoch
    /// changes, and the damage after them.
    fn agrees(&self, other: &ReadOutcome) -> bool {
        (self.valid_end, &self.epoch_changes, self.damage)
            == (other.valid_end, &other.epoch_changes, other.damage)
    }

    /// How many batches, from the chunk's first, both reads show alike.
    fn common_batches(&self, other: &ReadOutcome) -> usize {
        self.batches.iter().zip(&other.batches).take_while(|(a, b)| a == b).count()
    }
}

/// The state of a recovery in progress.
#[derive(Debug, Default)]
pub(super) struct Recovery {
    /// Segment files found: base offset and length, in offset order.
    files: Vec<(u64, u64)>,
    /// Index files found: base offset -> length.
    indexes: BTreeMap<u64, u64>,
    /// The epoch checkpoint read from disk. Without one, no segment is trusted through its
    /// index: the epochs of every segment come from scanning it.
    checkpoint: Option<Vec<EpochEntry>>,
    checkpoint_reads: u8,
    loaded: Vec<Segment>,
    next: usize,
    scan: Option<Scan>,
    /// (epoch, first offset) each time the epoch changes in scanned batches.
    scanned_epochs: Vec<(i32, u64)>,
    /// Syncs of scanned segments: op and the segment's base offset.
    scanned_syncs: Vec<(OpId, u64)>,
    /// The offsets each scanned segment held: base and next offset.
    scanned_ranges: Vec<(u64, u64)>,
    truncated_bytes: u64,
    /// Set when the reads of a chunk never agreed: recovery ends with the log failed.
    gave_up: Option<LogError>,
}

impl Recovery {
    pub(super) fn start(log: &mut PartitionLog, out: &mut impl DiskQueue) -> Recovery {
        let id = out.submit(DiskOp::List { dir: log.dir.clone() });
        log.pending.insert(id, Pending::Recovery(RecoveryStep::List));
        Recovery::default()
    }
}

impl PartitionLog {
    pub(super) fn complete_recovery_step(
        &mut self,
        now: Instant,
        step: RecoveryStep,
        result: DiskResult,
        out: &mut impl DiskQueue,
    ) {
        let Phase::Recovering(mut recovery) = std::mem::replace(&mut self.phase, Phase::Ready)
        else {
            unreachable!("recovery ops are dropped when recovery ends");
        };
        let result = match result {
            Ok(result) => result,
            Err(error) => {
                self.phase = Phase::Recovering(recovery);
                let file = self.dir.clone();
                return self.fail(LogError::Storage { file, error });
            }
        };
        let done = match (step, result) {
            (RecoveryStep::List, DiskOk::Listing(entries)) => {
                self.recovery_listed(now, &mut recovery, entries, out)
            }
            (RecoveryStep::ReadCheckpoint, DiskOk::Data(bytes)) => {
                match decode_frame::<EpochCheckpoint>(&bytes) {
                    Ok((checkpoint, _)) => recovery.checkpoint = Some(checkpoint.entries),
                    Err(_) if recovery.checkpoint_reads < RECOVERY_READ_RETRIES_MAX => {
                        recovery.checkpoint_reads += 1;
                        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
                        let file = self.dir.join(EPOCH_CHECKPOINT);
                        let op = DiskOp::Read { file, pos: 0, len };
                        self.recovery_submit(op, RecoveryStep::ReadCheckpoint, out);
                        self.phase = Phase::Recovering(recovery);
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(dir = %self.dir, %error, "epoch checkpoint damaged")
                    }
                }
                self.recovery_load_next(now, &mut recovery, out)
            }
            (RecoveryStep::ReadIndex, DiskOk::Data(bytes)) => {
                self.recovery_index_read(now, &mut recovery, &bytes, out)
            }
            (RecoveryStep::Scan, DiskOk::Data(bytes)) => {
                self.recovery_scanned(now, &mut recovery, &bytes, out)
            }
            (step, result) => panic!("recovery step {step:?} completed with {result:?}"),
        };
        if let Some(error) = recovery.gave_up.take() {
            self.phase = Phase::Recovering(recovery);
            return self.fail(error);
        }
        if done {
            self.recovery_finish(now, *recovery, out);
        } else {
            self.phase = Phase::Recovering(recovery);
        }
    }

    fn recovery_submit(&mut self, op: DiskOp, step: RecoveryStep, out: &mut impl DiskQueue) {
        let id = out.submit(op);
        self.pending.insert(id, Pending::Recovery(step));
    }

    fn housekeep(&mut self, op: DiskOp, out: &mut impl DiskQueue) {
        let id = out.submit(op);
        self.pending.insert(id, Pending::Housekeeping);
    }

    /// Sorts the listing into segments, indexes and the checkpoint. Returns whether recovery
    /// is done (never, here: at least the checkpoint or the first segment is read next, or the
    /// directory is empty and `recovery_load_next` finishes at once).
    fn recovery_listed(
        &mut self,
        now: Instant,
        recovery: &mut Recovery,
        entries: Vec<DirEntry>,
        out: &mut impl DiskQueue,
    ) -> bool {
        let mut checkpoint_len = None;
        for entry in entries.iter().filter(|entry| !entry.is_dir) {
            match parse_file_name(&entry.name) {
                Some((base, "log")) => recovery.files.push((base, entry.len)),
                Some((base, "index")) => {
                    recovery.indexes.insert(base, entry.len);
                }
                _ if entry.name == EPOCH_CHECKPOINT => checkpoint_len = Some(entry.len),
                _ if entry.name.ends_with(".tmp") => {
                    let file = self.dir.join(&entry.name);
                    self.housekeep(DiskOp::Remove { file }, out);
                }
                _ => {
                    tracing::debug!(dir = %self.dir, name = %entry.name, "unknown file left alone")
                }
            }
        }
        recovery.files.sort_unstable();
        let orphans: Vec<u64> = recovery
            .indexes
            .keys()
            .filter(|&&base| recovery.files.binary_search_by_key(&base, |(b, _)| *b).is_err())
            .copied()
            .collect();
        for base in orphans {
            recovery.indexes.remove(&base);
            let file = super::segment::index_file_name(&self.dir, base);
            self.housekeep(DiskOp::Remove { file }, out);
        }
        if let Some(len) = checkpoint_len {
            let file = self.dir.join(EPOCH_CHECKPOINT);
            let len = u32::try_from(len).unwrap_or(u32::MAX);
            self.recovery_submit(
                DiskOp::Read { file, pos: 0, len },
                RecoveryStep::ReadCheckpoint,
                out,
            );
            return false;
        }
        self.recovery_load_next(now, recovery, out)
    }

    /// Starts loading the next segment. Returns whether recovery is done.
    fn recovery_load_next(
        &mut self,
        now: Instant,
        recovery: &mut Recovery,
        out: &mut impl DiskQueue,
    ) -> bool {
        let Some(&(base, len)) = recovery.files.get(recovery.next) else {
            return true;
        };
        if let Some(last) = recovery.loaded.last()
            && base != last.next_offset
        {
            tracing::warn!(dir = %self.dir, base, expected = last.next_offset, "segment gap");
            self.recovery_drop_from(recovery, recovery.next, out);
            return true;
        }
        let index_len = recovery.indexes.get(&base).filter(|_| recovery.checkpoint.is_some());
        if let Some(&index_len) = index_len {
            let file = super::segment::index_file_name(&self.dir, base);
            let len = u32::try_from(index_len).unwrap_or(u32::MAX);
            self.recovery_submit(DiskOp::Read { file, pos: 0, len }, RecoveryStep::ReadIndex, out);
            return false;
        }
        recovery.scan = Some(Scan {
            segment: Segment::new(&self.dir, base, now),
            file_len: len,
            retries: 0,
            outcomes: Vec::new(),
        });
        self.recovery_scan_next(now, recovery, out)
    }

    fn recovery_index_read(
        &mut self,
        now: Instant,
        recovery: &mut Recovery,
        bytes: &Bytes,
        out: &mut impl DiskQueue,
    ) -> bool {
        let (base, len) = recovery.files[recovery.next];
        match Segment::decode_index(&self.dir, bytes, base, len, now) {
            Ok(segment) => {
                recovery.loaded.push(segment);
                recovery.next += 1;
                self.recovery_load_next(now, recovery, out)
            }
            Err(error) => {
                tracing::info!(dir = %self.dir, base, %error, "rebuilding a segment index");
                let segment = Segment::new(&self.dir, base, now);
                recovery.scan =
                    Some(Scan { segment, file_len: len, retries: 0, outcomes: Vec::new() });
                self.recovery_scan_next(now, recovery, out)
            }
        }
    }

    /// Reads the next chunk of the segment being scanned, or ends its scan at the end of the
    /// file. Returns whether recovery is done.
    fn recovery_scan_next(
        &mut self,
        now: Instant,
        recovery: &mut Recovery,
        out: &mut impl DiskQueue,
    ) -> bool {
        let scan = recovery.scan.as_ref().expect("a scan in progress");
        let position = scan.segment.size_bytes;
        if position >= scan.file_len {
            return self.recovery_segment_scanned(now, recovery, false, out);
        }
        let len = u64::from(RECOVERY_READ_BYTES).min(scan.file_len - position) as u32;
        let file = scan.segment.log_file.clone();
        self.recovery_submit(DiskOp::Read { file, pos: position, len }, RecoveryStep::Scan, out);
        false
    }

    fn recovery_scanned(
        &mut self,
        now: Instant,
        recovery: &mut Recovery,
        bytes: &Bytes,
        out: &mut impl DiskQueue,
    ) -> bool {
        let interval = self.config.index_interval_bytes;
        let scan = recovery.scan.as_mut().expect("a scan in progress");
        let (start, start_offset) = (scan.segment.size_bytes, scan.segment.next_offset);
        let epochs_before = recovery.scanned_epochs.len();
        let batches = BatchScan::new(bytes, self.config.batch_bytes_max);
        // Canary (issue 4): recovery that skips the checksum.
        #[cfg(feature = "canary")]
        let batches =
            batches.trusting_crc(super::canary::is(super::canary::Canary::RecoverySkipsCrc));
        let mut batches = batches;
        let mut misplaced = false;
        let mut seen = Vec::new();
        for (position, header) in batches.by_ref() {
            let epoch = header.partition_leader_epoch;
            let last_epoch = recovery.scanned_epochs.last().map(|(epoch, _)| *epoch);
            // Offsets are dense and epochs never go back: anything else is damage.
            if header.base_offset < 0
                || header.base_offset as u64 != scan.segment.next_offset
                || last_epoch.is_some_and(|last| epoch < last)
            {
                misplaced = true;
                break;
            }
            let at = start + position as u64;
            take_batch(scan, &mut recovery.scanned_epochs, at, &header, interval);
            seen.push((start + position as u64, header));
        }
        let valid_end = scan.segment.size_bytes;
        let torn = match batches.stop() {
            Some(ScanStop::Incomplete { needed, .. }) => valid_end + *needed as u64 > scan.file_len,
            _ => bytes.is_empty() && valid_end < scan.file_len,
        };
        let damaged = misplaced || torn || matches!(batches.stop(), Some(ScanStop::Invalid { .. }));
        let changes = &recovery.scanned_epochs[epochs_before..];
        if damaged || !changes.is_empty() {
            // The CRC covers neither a batch's epoch nor its length field, and a bit flipped on
            // the way from the disk is gone on the next read: a damaged chunk or an epoch change
            // counts only once `RECOVERY_READS_AGREEING` reads of the chunk agree on it exactly.
            // Damage agrees only when the damaged bytes are the same: a torn or corrupt tail is,
            // two different flips in one batch are not.
            let damaged_bytes = &bytes[(valid_end - start) as usize..];
            let fingerprint = if damaged { crc32c::crc32c(damaged_bytes) } else { 0 };
            let outcome = ReadOutcome {
                valid_end,
                epoch_changes: changes.to_vec(),
                damage: damaged.then_some(fingerprint),
                batches: seen,
            };
            let agreeing = scan.outcomes.iter().filter(|other| other.agrees(&outcome)).count();
            if agreeing + 1 < RECOVERY_READS_AGREEING {
                scan.segment.truncate(start_offset, start);
                recovery.scanned_epochs.truncate(epochs_before);
                // Reads that differ further on (each flipped somewhere else) may still agree
                // on their first batches: those are confirmed, and the scan goes on after them
                // with a fresh count of reads, so transient flips do not stop it.
                let mut shared: Vec<usize> =
                    scan.outcomes.iter().map(|other| other.common_batches(&outcome)).collect();
                shared.sort_unstable_by(|a, b| b.cmp(a));
                let agreed = shared.get(RECOVERY_READS_AGREEING - 2).copied().unwrap_or(0);
                if agreed > 0 {
                    for (position, header) in &outcome.batches[..agreed] {
                        take_batch(scan, &mut recovery.scanned_epochs, *position, header, interval);
                    }
                    scan.retries = 0;
                    scan.outcomes.clear();
                    return self.recovery_scan_next(now, recovery, out);
                }
                if scan.retries < RECOVERY_READ_RETRIES_MAX {
                    scan.retries += 1;
                    scan.outcomes.push(outcome);
                    return self.recovery_scan_next(now, recovery, out);
                }
                // Reads that never agree are a failing disk, not proof of damage: cutting
                // here could drop synced records. The log fails and recovers again later.
                let reads = scan.outcomes.len() + 1;
                let why = format!("{reads} reads from byte {start} never agreed");
                let file = scan.segment.log_file.clone();
                tracing::warn!(dir = %self.dir, %file, start, reads, "recovery reads disagree");
                recovery.gave_up = Some(LogError::Storage { file, error: DiskError::Io(why) });
                return false;
            }
            if damaged {
                return self.recovery_segment_scanned(now, recovery, true, out);
            }
        }
        scan.retries = 0;
        scan.outcomes.clear();
        self.recovery_scan_next(now, recovery, out)
    }

    /// Ends the scan of the current segment; `cut` means its valid bytes end before its file
    /// does. Returns whether recovery is done.
    fn recovery_segment_scanned(
        &mut self,
        now: Instant,
        recovery: &mut Recovery,
        cut: bool,
        out: &mut impl DiskQueue,
    ) -> bool {
        let Scan { mut segment, file_len, .. } = recovery.scan.take().expect("a scan");
        let next_base = recovery.files.get(recovery.next + 1).map(|(base, _)| *base);
        // A segment that does not run up to the next file's base (its tail was lost) ends the
        // log: what follows would leave a gap in the offsets.
        let cut = cut || next_base.is_some_and(|base| base != segment.next_offset);
        let is_last = recovery.next + 1 == recovery.files.len() || cut;
        if cut {
            let valid = segment.size_bytes;
            tracing::warn!(dir = %self.dir, file = %segment.log_file, valid, file_len, "cutting a torn or damaged tail");
            recovery.truncated_bytes += file_len - valid;
            self.recovery_drop_from(recovery, recovery.next + 1, out);
            let id = out.submit(DiskOp::Truncate { file: segment.log_file.clone(), len: valid });
            self.pending.insert(id, Pending::Data);
        }
        // A process crash leaves unsynced bytes readable in the page cache: make them durable
        // before counting them as flushed.
        let id = out.submit(DiskOp::Sync { file: segment.log_file.clone() });
        self.pending.insert(id, Pending::Sync);
        self.syncs.push_back(SyncWait {
            op: id,
            target: 0,
            done: false,
            then_rename: None,
            installs_checkpoint: false,
            ends_restart: false,
        });
        recovery.scanned_syncs.push((id, segment.base_offset));
        recovery.scanned_ranges.push((segment.base_offset, segment.next_offset));
        let had_index = recovery.indexes.contains_key(&segment.base_offset);
        if !cut && !is_last {
            segment.sealed = true;
            let index = segment.encode_index();
            self.sealed_indexes.push_back((segment.next_offset, segment.index_file.clone(), index));
        } else if had_index {
            self.housekeep(DiskOp::Remove { file: segment.index_file.clone() }, out);
        }
        recovery.loaded.push(segment);
        recovery.next += 1;
        if cut {
            return true;
        }
        self.recovery_load_next(now, recovery, out)
    }

    /// Removes the segment files from position `from` of the listing on.
    fn recovery_drop_from(
        &mut self,
        recovery: &mut Recovery,
        from: usize,
        out: &mut impl DiskQueue,
    ) {
        for &(base, len) in &recovery.files[from..] {
            recovery.truncated_bytes += len;
            let file = super::segment::log_file_name(&self.dir, base);
            self.housekeep(DiskOp::Remove { file }, out);
            if recovery.indexes.contains_key(&base) {
                let file = super::segment::index_file_name(&self.dir, base);
                self.housekeep(DiskOp::Remove { file }, out);
            }
        }
        recovery.files.truncate(from);
    }

    fn recovery_finish(&mut self, now: Instant, recovery: Recovery, out: &mut impl DiskQueue) {
        let mut segments = recovery.loaded;
        if let Some(last) = segments.last_mut().filter(|last| last.sealed && last.is_empty()) {
            // An empty sealed segment (only a damaged history makes one): reopen it as the
            // active segment rather than create a second file at the same base offset.
            last.sealed = false;
            let file = last.index_file.clone();
            self.housekeep(DiskOp::Remove { file }, out);
        }
        let needs_active = segments.last().is_none_or(|last| last.sealed);
        if needs_active {
            let base = segments.last().map_or(0, |last| last.next_offset);
            let segment = Segment::new(&self.dir, base, now);
            let id = out.submit(DiskOp::Create { file: segment.log_file.clone() });
            self.pending.insert(id, Pending::Data);
            segments.push(segment);
        }
        self.segments = segments.into();
        self.log_start_offset = self.segments[0].base_offset;
        self.log_end_offset = self.segments.back().expect("a segment").next_offset;
        self.sync_issued_offset = self.log_end_offset;
        // Everything before the first scanned segment was trusted through its index (it was
        // synced before its index was written); each scanned segment's sync makes the log
        // durable up to the next scanned segment.
        self.flushed_offset = recovery.scanned_syncs.first().map_or(self.log_end_offset, |s| s.1);
        for (i, (id, _)) in recovery.scanned_syncs.iter().enumerate() {
            let target = recovery.scanned_syncs.get(i + 1).map_or(self.log_end_offset, |s| s.1);
            if let Some(wait) = self.syncs.iter_mut().find(|wait| wait.op == *id) {
                wait.target = target;
            }
        }
        let stored = recovery.checkpoint.clone().unwrap_or_default();
        let epochs = rebuild_epochs(
            &stored,
            &recovery.scanned_ranges,
            &recovery.scanned_epochs,
            self.log_start_offset,
            self.log_end_offset,
        );
        self.epochs_dirty = epochs.entries() != stored.as_slice();
        self.epochs = epochs;
        self.phase = Phase::Ready;
        if self.epochs_dirty {
            // Indexes of rebuilt segments wait for the rebuilt epochs to be on disk.
            let file = self.segments.back().expect("a segment").log_file.clone();
            self.submit_durability_point(file, self.log_end_offset, out);
        }
        self.advance_flushed(out);
        self.events.push_back(LogEvent::Recovered {
            log_start_offset: self.log_start_offset,
            log_end_offset: self.log_end_offset,
            truncated_bytes: recovery.truncated_bytes,
        });
        tracing::debug!(dir = %self.dir, start = self.log_start_offset, end = self.log_end_offset, "recovered");
        self.invariants();
    }
}

/// The epoch cache after recovery. For the segments recovery scanned, the batches are the
/// truth (a checkpoint may predate a truncation whose data survived the crash); for the
/// segments it trusted through their index, the checkpoint is, as it was durable before the
/// index was written. An entry starting exactly at the log end is an epoch a leader assigned
/// before its first append, and is kept.
/// A batch the scan keeps, at byte `position` of its segment: the segment's index and end
/// take it in, and its epoch is noted if it starts one.
fn take_batch(
    scan: &mut Scan,
    epochs: &mut Vec<(i32, u64)>,
    position: u64,
    header: &BatchHeader,
    interval: u32,
) {
    scan.segment.observe_batch(position, header, interval);
    let epoch = header.partition_leader_epoch;
    if epochs.last().map(|(e, _)| *e) != Some(epoch) {
        epochs.push((epoch, header.base_offset as u64));
    }
}

fn rebuild_epochs(
    stored: &[EpochEntry],
    scanned_ranges: &[(u64, u64)],
    scanned_epochs: &[(i32, u64)],
    log_start_offset: u64,
    log_end_offset: u64,
) -> LeaderEpochCache {
    let scanned = |offset: u64| scanned_ranges.iter().any(|&(b, n)| b <= offset && offset < n);
    let mut entries: Vec<EpochEntry> = stored
        .iter()
        .filter(|entry| !scanned(entry.start_offset))
        .copied()
        .chain(
            scanned_epochs.iter().map(|&(epoch, start_offset)| EpochEntry { epoch, start_offset }),
        )
        .filter(|entry| entry.start_offset <= log_end_offset)
        .collect();
    entries.sort_by_key(|entry| (entry.start_offset, entry.epoch));
    let mut epochs = LeaderEpochCache::from_entries(entries);
    epochs.truncate_from_start(log_start_offset);
    epochs
}
