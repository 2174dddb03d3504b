//! Reads: fetches by offset, lookups by timestamp, and the read that locates a truncation
//! point. Each reads from the position the sparse index gives, checks every batch it passes
//! (length, magic, CRC-32C, dense offsets), and reads again from a later position when a batch
//! is cut by the end of the buffer. A batch that fails its check is read once more (a flip in
//! transit is gone the next time) and then reported corrupt, never returned. A fetch walks the
//! batches before the offset it asked for by their headers alone (length, magic, dense
//! offsets, epoch): it does not return them, and their CRC-32C was most of what a fetch cost
//! (docs/simulator.md, Speed); every batch it returns is checked in full.

use bytes::Bytes;

use super::batch::{BatchHeader, BatchScan, ScanStop, visit_record_timestamps};
use super::epoch::LeaderEpochCache;
use super::segment::IndexHit;
use super::{DiskQueue, LogError, LogEvent, PartitionLog, Pending, ReadStart};
use crate::core::io::{DiskOk, DiskOp, DiskResult};
use crate::core::limits::{READ_RETRIES_MAX, RECOVERY_READ_BYTES};

/// A fetch in flight.
#[derive(Debug, Clone)]
pub(super) struct ReadJob {
    pub token: u64,
    offset: u64,
    max_offset: u64,
    max_bytes: u32,
    segment_base: u64,
    /// Where the next read starts, and the base offset of the batch there.
    at: IndexHit,
    retries: u8,
}

/// A lookup by timestamp in flight.
#[derive(Debug, Clone)]
pub(super) struct SeekJob {
    pub token: u64,
    timestamp: i64,
    segment_base: u64,
    at: IndexHit,
    retries: u8,
}

/// The read that finds the batch boundary a truncation cuts at.
#[derive(Debug, Clone)]
pub(super) struct TruncateJob {
    pub offset: u64,
    pub segment_base: u64,
    pub at: Option<IndexHit>,
    pub retries: u8,
}

/// What a scan of a fetch buffer found.
enum Collected {
    /// Whole verified batches in this byte range of the buffer (maybe empty).
    Batches(std::ops::Range<usize>),
    /// The wanted batch is cut by the end of the buffer: read `len` bytes from `position`,
    /// where the batch with base offset `base` starts.
    ReadMore { position: usize, base: u64, len: usize },
    /// A batch at `position` failed its check.
    Corrupt { position: usize },
}

impl PartitionLog {
    /// Reads whole batches from `offset` on, stopping before any batch that reaches
    /// `max_offset` (the high watermark) and after `max_bytes` (but always returning the first
    /// batch whole, as Kafka does since KIP-74). Reads stay within one segment. The batches
    /// come in a [`LogEvent::Read`] carrying `token`, unless the answer is known at once.
    pub fn read(
        &mut self,
        token: u64,
        offset: u64,
        max_offset: u64,
        max_bytes: u32,
        out: &mut impl DiskQueue,
    ) -> Result<ReadStart, LogError> {
        match &self.phase {
            super::Phase::Ready => {}
            super::Phase::Recovering(_) => return Err(LogError::Recovering),
            super::Phase::Failed(error) => return Err(error.clone()),
        }
        if offset < self.log_start_offset || offset > self.log_end_offset {
            return Err(self.out_of_range(offset));
        }
        let max_offset = max_offset.min(self.log_end_offset);
        if offset >= max_offset {
            return Ok(ReadStart::Empty);
        }
        let segment = &self.segments[self.segment_index_for(offset)];
        let job = ReadJob {
            token,
            offset,
            max_offset,
            max_bytes,
            segment_base: segment.base_offset,
            at: segment.locate_offset(offset),
            retries: 0,
        };
        let wanted = u64::from(max_bytes.max(1)) + u64::from(self.config.index_interval_bytes);
        self.submit_fetch_read(job, wanted, out);
        Ok(ReadStart::Pending)
    }

    fn out_of_range(&self, offset: u64) -> LogError {
        LogError::OffsetOutOfRange {
            offset,
            log_start_offset: self.log_start_offset,
            log_end_offset: self.log_end_offset,
        }
    }

    fn submit_fetch_read(&mut self, job: ReadJob, wanted: u64, out: &mut impl DiskQueue) {
        let Some(segment) = self.segment_by_base(job.segment_base) else {
            // Retention or truncation removed the segment while the read was in flight.
            let error = self.out_of_range(job.offset);
            self.events.push_back(LogEvent::Read { token: job.token, result: Err(error) });
            return;
        };
        let len = wanted.min(segment.size_bytes.saturating_sub(job.at.position));
        let op = DiskOp::Read {
            file: segment.log_file.clone(),
            pos: job.at.position,
            len: u32::try_from(len).expect("segments are under 4 GiB"),
        };
        let id = out.submit(op);
        self.pending.insert(id, Pending::Read(job));
    }

    pub(super) fn complete_read(
        &mut self,
        mut job: ReadJob,
        result: DiskResult,
        out: &mut impl DiskQueue,
    ) {
        let bytes = match self.read_bytes(job.segment_base, result) {
            Ok(bytes) => bytes,
            Err(error) => {
                self.events.push_back(LogEvent::Read { token: job.token, result: Err(error) });
                return;
            }
        };
        if bytes.is_empty() {
            // The file is shorter than the log knows it to be: something lost its tail.
            let error = self.corrupt(job.segment_base, job.at.position);
            self.events.push_back(LogEvent::Read { token: job.token, result: Err(error) });
            return;
        }
        match collect(&bytes, &job, &self.config, &self.epochs) {
            Collected::Batches(range) => {
                let result = Ok(bytes.slice(range));
                self.events.push_back(LogEvent::Read { token: job.token, result });
            }
            Collected::ReadMore { position, base, len } => {
                let start = job.at.position + position as u64;
                let end = self.segment_by_base(job.segment_base).map_or(0, |s| s.size_bytes);
                if start + len as u64 > end {
                    // A batch said to run past the end of its segment (a length damaged on
                    // the way from disk, or on it): reading on would ask for the same bytes
                    // for ever.
                    return self.damaged_read(job, bytes.len(), position, out);
                }
                job.at = IndexHit { position: start, base_offset: base };
                let wanted = (len as u64).max(u64::from(job.max_bytes));
                self.submit_fetch_read(job, wanted, out);
            }
            Collected::Corrupt { position } => self.damaged_read(job, bytes.len(), position, out),
        }
    }

    /// A read found damage at `position` of its `read` bytes: read again (a flip on the way
    /// from disk heals), up to [`READ_RETRIES_MAX`] times, then report the batch corrupt.
    fn damaged_read(
        &mut self,
        mut job: ReadJob,
        read: usize,
        position: usize,
        out: &mut impl DiskQueue,
    ) {
        if job.retries < READ_RETRIES_MAX {
            job.retries += 1;
            self.submit_fetch_read(job, read as u64, out);
        } else {
            let error = self.corrupt(job.segment_base, job.at.position + position as u64);
            self.events.push_back(LogEvent::Read { token: job.token, result: Err(error) });
        }
    }

    /// The bytes of a completed read, or the error to report.
    fn read_bytes(&self, segment_base: u64, result: DiskResult) -> Result<Bytes, LogError> {
        let file = match self.segment_by_base(segment_base) {
            Some(segment) => segment.log_file.clone(),
            None => return Err(self.out_of_range(segment_base)),
        };
        match result {
            Ok(DiskOk::Data(bytes)) => Ok(bytes),
            Ok(other) => panic!("a read completed with {other:?}"),
            Err(error) => Err(LogError::Storage { file, error }),
        }
    }

    fn corrupt(&self, segment_base: u64, position: u64) -> LogError {
        let file = match self.segment_by_base(segment_base) {
            Some(segment) => segment.log_file.clone(),
            None => self.dir.clone(),
        };
        tracing::error!(%file, position, "batch failed its checksum on every read; not served");
        LogError::Corrupt { file, position }
    }

    // ----- lookups by timestamp -----

    /// Finds the first offset whose record timestamp is at or above `timestamp` (ListOffsets
    /// by time). For a compressed batch, the answer is the batch's first offset. The answer
    /// comes in a [`LogEvent::OffsetForTimestamp`] carrying `token`, unless known at once
    /// (`Ok(Some(None))` when no record is that new).
    pub fn offset_for_timestamp(
        &mut self,
        token: u64,
        timestamp: i64,
        out: &mut impl DiskQueue,
    ) -> Result<Option<Option<(u64, i64)>>, LogError> {
        match &self.phase {
            super::Phase::Ready => {}
            super::Phase::Recovering(_) => return Err(LogError::Recovering),
            super::Phase::Failed(error) => return Err(error.clone()),
        }
        let Some(segment) = self.segments.iter().find(|s| s.max_timestamp >= timestamp) else {
            return Ok(Some(None));
        };
        let job = SeekJob {
            token,
            timestamp,
            segment_base: segment.base_offset,
            at: segment.locate_timestamp(timestamp),
            retries: 0,
        };
        self.submit_seek_read(job, out);
        Ok(None)
    }

    fn submit_seek_read(&mut self, job: SeekJob, out: &mut impl DiskQueue) {
        let Some(segment) = self.segment_by_base(job.segment_base) else {
            let result = Err(self.out_of_range(job.segment_base));
            self.events.push_back(LogEvent::OffsetForTimestamp { token: job.token, result });
            return;
        };
        let remaining = segment.size_bytes.saturating_sub(job.at.position);
        let len = u64::from(RECOVERY_READ_BYTES).min(remaining) as u32;
        let op = DiskOp::Read { file: segment.log_file.clone(), pos: job.at.position, len };
        let id = out.submit(op);
        self.pending.insert(id, Pending::Seek(job));
    }

    pub(super) fn complete_seek(
        &mut self,
        mut job: SeekJob,
        result: DiskResult,
        out: &mut impl DiskQueue,
    ) {
        let token = job.token;
        let bytes = match self.read_bytes(job.segment_base, result) {
            Ok(bytes) => bytes,
            Err(error) => {
                self.events.push_back(LogEvent::OffsetForTimestamp { token, result: Err(error) });
                return;
            }
        };
        if bytes.is_empty() {
            return self.seek_next_segment(job, out);
        }
        let mut scan = Verified::new(&bytes, job.at.base_offset, &self.epochs, &self.config);
        for (position, header) in scan.by_ref() {
            if header.max_timestamp >= job.timestamp {
                let found = first_record_at_or_after(&bytes[position..], &header, job.timestamp);
                let result = Ok(Some(found));
                self.events.push_back(LogEvent::OffsetForTimestamp { token, result });
                return;
            }
        }
        match scan.stop {
            Some(Stop::Damaged { position }) if job.retries >= READ_RETRIES_MAX => {
                let error = self.corrupt(job.segment_base, job.at.position + position as u64);
                self.events.push_back(LogEvent::OffsetForTimestamp { token, result: Err(error) });
            }
            Some(Stop::Damaged { position }) => {
                job.retries += 1;
                job.at = IndexHit {
                    position: job.at.position + position as u64,
                    base_offset: scan.expected,
                };
                self.submit_seek_read(job, out);
            }
            Some(Stop::Incomplete { position, .. }) => {
                job.at = IndexHit {
                    position: job.at.position + position as u64,
                    base_offset: scan.expected,
                };
                self.submit_seek_read(job, out);
            }
            None => self.seek_next_segment(job, out),
        }
    }

    /// Continues a timestamp lookup in the next segment whose records reach the target.
    fn seek_next_segment(&mut self, job: SeekJob, out: &mut impl DiskQueue) {
        let next = self
            .segments
            .iter()
            .find(|s| s.base_offset > job.segment_base && s.max_timestamp >= job.timestamp);
        match next {
            Some(segment) => {
                let job = SeekJob {
                    segment_base: segment.base_offset,
                    at: segment.locate_timestamp(job.timestamp),
                    retries: 0,
                    ..job
                };
                self.submit_seek_read(job, out);
            }
            None => {
                let token = job.token;
                self.events.push_back(LogEvent::OffsetForTimestamp { token, result: Ok(None) });
            }
        }
    }

    // ----- locating a truncation point -----

    pub(super) fn submit_truncate_read(&mut self, job: TruncateJob, out: &mut impl DiskQueue) {
        let segment = self.segment_by_base(job.segment_base).expect("truncation holds the log");
        let at = job.at.unwrap_or_else(|| segment.locate_offset(job.offset));
        let remaining = segment.size_bytes.saturating_sub(at.position);
        let len = u64::from(RECOVERY_READ_BYTES).min(remaining) as u32;
        let op = DiskOp::Read { file: segment.log_file.clone(), pos: at.position, len };
        let id = out.submit(op);
        self.pending.insert(id, Pending::Truncate(TruncateJob { at: Some(at), ..job }));
    }

    pub(super) fn complete_truncate_read(
        &mut self,
        mut job: TruncateJob,
        result: DiskResult,
        out: &mut impl DiskQueue,
    ) {
        let bytes = match self.read_bytes(job.segment_base, result) {
            Ok(bytes) => bytes,
            Err(error) => return self.fail(error),
        };
        let at = job.at.expect("a truncation read starts at a known batch");
        let mut scan = Verified::new(&bytes, at.base_offset, &self.epochs, &self.config);
        for (position, header) in scan.by_ref() {
            if header.last_offset() as u64 >= job.offset {
                let index = self.segments.iter().position(|s| s.base_offset == job.segment_base);
                let index = index.expect("the segment is held while truncating");
                let cut = at.position + position as u64;
                self.apply_truncation(index, header.base_offset as u64, cut, out);
                return;
            }
        }
        let resume = |position: usize| IndexHit {
            position: at.position + position as u64,
            base_offset: scan.expected,
        };
        match scan.stop {
            Some(Stop::Incomplete { position }) if position > 0 => {
                job.at = Some(resume(position));
                self.submit_truncate_read(job, out);
            }
            Some(Stop::Damaged { position }) if job.retries < READ_RETRIES_MAX => {
                job.retries += 1;
                job.at = Some(resume(position));
                self.submit_truncate_read(job, out);
            }
            stop => {
                let position = match stop {
                    Some(Stop::Damaged { position } | Stop::Incomplete { position }) => position,
                    None => bytes.len(),
                };
                let error = self.corrupt(job.segment_base, at.position + position as u64);
                self.fail(error);
            }
        }
    }
}

/// Why a [`Verified`] scan stopped before the end of its buffer.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// The batch at `position` is cut by the end of the buffer.
    Incomplete { position: usize },
    /// The batch at `position` failed a check.
    Damaged { position: usize },
}

/// The batches of a buffer read from a known batch boundary, each checked: whole and valid
/// (length, magic, CRC-32C), its base offset continuing the one before (the CRC does not cover
/// it), and its leader epoch the one the epoch cache holds for that offset (nor that).
struct Verified<'a> {
    scan: BatchScan<'a>,
    /// The base offset the next batch must have.
    expected: u64,
    epochs: &'a LeaderEpochCache,
    stop: Option<Stop>,
}

impl<'a> Verified<'a> {
    fn new(
        bytes: &'a [u8],
        base_offset: u64,
        epochs: &'a LeaderEpochCache,
        config: &super::LogConfig,
    ) -> Verified<'a> {
        let scan = BatchScan::new(bytes, config.batch_bytes_max);
        Verified { scan, expected: base_offset, epochs, stop: None }
    }
}

impl Iterator for Verified<'_> {
    type Item = (usize, BatchHeader);

    fn next(&mut self) -> Option<(usize, BatchHeader)> {
        if self.stop.is_some() {
            return None;
        }
        let Some((position, header)) = self.scan.next() else {
            self.stop = match self.scan.stop() {
                Some(ScanStop::Incomplete { pos, .. }) => Some(Stop::Incomplete { position: *pos }),
                Some(ScanStop::Invalid { pos, .. }) => Some(Stop::Damaged { position: *pos }),
                None => None,
            };
            return None;
        };
        let in_place = header.base_offset == self.expected as i64;
        let epoch = self.epochs.epoch_for_offset(self.expected);
        if !in_place || epoch.is_some_and(|epoch| epoch != header.partition_leader_epoch) {
            self.stop = Some(Stop::Damaged { position });
            return None;
        }
        self.expected = header.next_offset() as u64;
        Some((position, header))
    }
}

/// The first record of `batch` stamped at or after `timestamp`: its offset and timestamp.
fn first_record_at_or_after(batch: &[u8], header: &BatchHeader, timestamp: i64) -> (u64, i64) {
    let base = header.base_offset as u64;
    let mut found = None;
    let visited = visit_record_timestamps(batch, header, |offset_delta, record_timestamp| {
        if record_timestamp >= timestamp {
            found = Some((base + offset_delta as u64, record_timestamp));
            return false;
        }
        true
    });
    match (visited, found) {
        (Some(()), Some(found)) => found,
        // Compressed, or no record matched despite the header's maximum: the batch start.
        _ => (base, header.max_timestamp),
    }
}

/// Whether the batch at the start of `rest` may join `collected` bytes of a fetch, by its
/// header alone. Checking a batch (its CRC) is what a read costs, so the one past the fetch's
/// end is not checked: whatever comes after the first batch, `collect` returns what it has
/// verified, so an unreadable or damaged header here changes nothing either.
fn fits_after(rest: &[u8], collected: usize, job: &ReadJob) -> bool {
    let Ok(header) = BatchHeader::parse(rest) else { return true };
    let size = usize::try_from(header.batch_length).map_or(usize::MAX, |length| {
        length.saturating_add(super::batch::BATCH_LENGTH_PREFIX_BYTES)
    });
    let next = header.base_offset.saturating_add(i64::from(header.last_offset_delta));
    let within_offsets = u64::try_from(next).is_ok_and(|last| last < job.max_offset);
    within_offsets && collected.saturating_add(size) <= job.max_bytes as usize
}

/// Picks the batches a fetch returns out of a buffer read from `job.at`.
fn collect(
    bytes: &[u8],
    job: &ReadJob,
    config: &super::LogConfig,
    epochs: &LeaderEpochCache,
) -> Collected {
    let mut scan = Verified::new(bytes, job.at.base_offset, epochs, config);
    scan.scan = scan.scan.checking_crc_from(job.offset);
    let mut range: Option<std::ops::Range<usize>> = None;
    loop {
        if let Some(range) = &range
            && !fits_after(&bytes[scan.scan.position()..], range.len(), job)
        {
            break;
        }
        let Some((position, header)) = scan.next() else { break };
        let next = header.next_offset() as u64;
        let size = header.total_bytes();
        match &mut range {
            None if next <= job.offset => continue,
            None if next > job.max_offset => return Collected::Batches(0..0),
            None => range = Some(position..position + size),
            Some(range) => {
                if next > job.max_offset || range.len() + size > job.max_bytes as usize {
                    break;
                }
                range.end += size;
            }
        }
    }
    if let Some(range) = range {
        // Whatever stopped the scan after the first batch, what was collected is verified; a
        // damaged batch further on is reported to the fetch that starts at it.
        return Collected::Batches(range);
    }
    match scan.stop {
        Some(Stop::Damaged { position }) => Collected::Corrupt { position },
        Some(Stop::Incomplete { position }) => {
            let needed = super::batch::BatchHeader::parse(&bytes[position..])
                .map_or(super::batch::BATCH_HEADER_BYTES, |h| h.total_bytes());
            Collected::ReadMore { position, base: scan.expected, len: needed }
        }
        // The buffer ended on a batch boundary before the offset: read on from there.
        None => Collected::ReadMore { position: bytes.len(), base: scan.expected, len: 0 },
    }
}
