//! Reads: fetches by offset, lookups by timestamp, and the read that locates a truncation
//! point. Each reads from the position the sparse index gives, checks every batch it passes
//! (length, magic, CRC-32C, dense offsets), and reads again from a later position when a batch
//! is cut by the end of the buffer. A batch that fails its check is read once more (a flip in
//! transit is gone the next time) and then reported corrupt, never returned. A fetch walks the
//! batches before the offset it asked for by their headers alone (length, magic, dense
//! offsets, epoch): it does not return them, and their CRC-32C was most of what a fetch cost
//! (docs/simulator.md, Speed); every batch it returns is checked in full.
//!
//! A consumer catching up is read ahead of ([`ReadAhead`]): when its fetch starts where its
//! last answer ended and that answer stopped at its byte limit rather than at the high
//! watermark, the log reads the next range while the consumer handles this one, and answers
//! the consumer's next fetch from it at once (or takes over the read still in flight). A
//! kept range is exactly what a read at that moment would return but for batches appended
//! since, so it is dropped by anything that changes bytes the log holds (a truncation, a
//! failure, a recovery), by a fetch elsewhere, and after [`READ_AHEAD_KEEP`].

use bytes::Bytes;

use super::batch::{BatchHeader, BatchScan, ScanStop, visit_record_timestamps};
use super::epoch::LeaderEpochCache;
use super::segment::IndexHit;
use super::tail::TailRead;
use super::{DiskQueue, LogError, LogEvent, PartitionLog, Pending, ReadStart};
use crate::core::io::{DiskOk, DiskOp, DiskResult, OpId};
use crate::core::limits::{
    READ_AHEAD_BYTES_MAX, READ_AHEAD_KEEP, READ_RETRIES_MAX, RECOVERY_READ_BYTES,
};
use crate::core::time::Instant;

/// A fetch in flight.
#[derive(Debug, Clone)]
pub(super) struct ReadJob {
    pub token: u64,
    pub stream: Stream,
    offset: u64,
    max_offset: u64,
    max_bytes: u32,
    segment_base: u64,
    /// Where the next read starts, and the base offset of the batch there.
    at: IndexHit,
    retries: u8,
}

/// Who a fetch read is for, as reading ahead sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stream {
    /// A follower's read or the producer state's: never read ahead of.
    Plain,
    /// A consumer's fetch; `continues`: it starts where the last consumer answer ended.
    Consumer { continues: bool },
    /// A read ahead of a consumer: it answers nobody until a fetch takes it over.
    Ahead,
}

/// What the log knows of the consumer it reads ahead of (one per partition: the fetch of
/// another consumer replaces it).
#[derive(Debug, Default)]
pub(super) enum ReadAhead {
    #[default]
    None,
    /// The last consumer answer, for fetches of `max_bytes`, ended before offset `next`.
    After { next: u64, max_bytes: u32 },
    /// Op `op` reads the range from `offset`.
    Reading { op: OpId, offset: u64, max_bytes: u32 },
    /// The range from `offset`, read and verified: `bytes`, ending before `next`; kept until
    /// `until`.
    Ready { offset: u64, max_bytes: u32, bytes: Bytes, next: u64, until: Instant },
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
    /// Whole verified batches in this byte range of the buffer (maybe empty), ending before
    /// offset `next`.
    Batches { range: std::ops::Range<usize>, next: u64 },
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
        let Some(max_offset) = self.readable(offset, max_offset)? else {
            return Ok(ReadStart::Empty);
        };
        if self.answer_from_tail(token, offset, max_offset, max_bytes).is_none() {
            self.start_read(token, offset, max_offset, max_bytes, Stream::Plain, out);
        }
        Ok(ReadStart::Pending)
    }

    /// A consumer's fetch: as [`Self::read`], and read ahead of (module documentation). A
    /// fetch of the range read ahead is answered from it, by a [`LogEvent::Read`] queued at
    /// once, or by the read in flight.
    pub fn read_for_consumer(
        &mut self,
        token: u64,
        offset: u64,
        max_offset: u64,
        max_bytes: u32,
        out: &mut impl DiskQueue,
    ) -> Result<ReadStart, LogError> {
        let Some(max_offset) = self.readable(offset, max_offset)? else {
            return Ok(ReadStart::Empty);
        };
        if let Some(next) = self.answer_from_tail(token, offset, max_offset, max_bytes) {
            // Followed as an answer read from disk is: the next fetch continues there, and
            // is answered from the tail too unless the tail moved on (a read of the disk,
            // read ahead of after that).
            self.read_ahead = ReadAhead::After { next, max_bytes };
            return Ok(ReadStart::Pending);
        }
        let asked = |from: u64, bytes: u32| from == offset && bytes == max_bytes;
        let mut continues = false;
        match std::mem::take(&mut self.read_ahead) {
            ReadAhead::Ready { offset: from, max_bytes: bytes, bytes: records, next, .. }
                if asked(from, bytes) && next <= max_offset =>
            {
                self.events.push_back(LogEvent::Read { token, result: Ok(records) });
                self.reads_ahead_taken += 1;
                self.read_on(next, max_offset, max_bytes, out);
                return Ok(ReadStart::Pending);
            }
            ReadAhead::Reading { op, offset: from, max_bytes: bytes } if asked(from, bytes) => {
                let Some(Pending::Read(job)) = self.pending.get_mut(&op) else {
                    unreachable!("a read ahead in flight is pending");
                };
                job.token = token;
                job.stream = Stream::Consumer { continues: true };
                self.reads_ahead_taken += 1;
                return Ok(ReadStart::Pending);
            }
            ReadAhead::After { next, max_bytes: bytes } => continues = asked(next, bytes),
            _ => {}
        }
        self.start_read(token, offset, max_offset, max_bytes, Stream::Consumer { continues }, out);
        Ok(ReadStart::Pending)
    }

    /// Answers a fetch from the tail cache with a [`LogEvent::Read`] queued at once, if it
    /// holds `offset`; returns where the answer ends.
    fn answer_from_tail(
        &mut self,
        token: u64,
        offset: u64,
        max_offset: u64,
        max_bytes: u32,
    ) -> Option<u64> {
        let TailRead { records, next } = self.tail.read(offset, max_offset, max_bytes)?;
        self.events.push_back(LogEvent::Read { token, result: Ok(records) });
        Some(next)
    }

    /// Whether `offset` may be read: the read's upper bound (`max_offset` within the log), or
    /// `None` if nothing below it is (an empty answer), or the error to answer.
    fn readable(&self, offset: u64, max_offset: u64) -> Result<Option<u64>, LogError> {
        match &self.phase {
            super::Phase::Ready => {}
            super::Phase::Recovering(_) => return Err(LogError::Recovering),
            super::Phase::Failed(error) => return Err(error.clone()),
        }
        if offset < self.log_start_offset || offset > self.log_end_offset {
            return Err(self.out_of_range(offset));
        }
        let max_offset = max_offset.min(self.log_end_offset);
        Ok((offset < max_offset).then_some(max_offset))
    }

    /// Submits the first read of a fetch from `offset` (below `max_offset`); returns its op,
    /// or `None` if it was answered at once.
    fn start_read(
        &mut self,
        token: u64,
        offset: u64,
        max_offset: u64,
        max_bytes: u32,
        stream: Stream,
        out: &mut impl DiskQueue,
    ) -> Option<OpId> {
        let segment = &self.segments[self.segment_index_for(offset)];
        let job = ReadJob {
            token,
            stream,
            offset,
            max_offset,
            max_bytes,
            segment_base: segment.base_offset,
            at: segment.locate_offset(offset),
            retries: 0,
        };
        let wanted = u64::from(max_bytes.max(1)) + u64::from(self.config.index_interval_bytes);
        self.submit_fetch_read(job, wanted, out)
    }

    /// A consumer's answer ended before `next`: read on from there if the answer stopped short
    /// of `max_offset` (the consumer is catching up), else remember where it ended.
    fn read_on(&mut self, next: u64, max_offset: u64, max_bytes: u32, out: &mut impl DiskQueue) {
        self.read_ahead = ReadAhead::None;
        // An answer read before a truncation may end past the log now.
        if !self.is_ready() || next < self.log_start_offset || next > self.log_end_offset {
            return;
        }
        self.read_ahead = ReadAhead::After { next, max_bytes };
        let max_offset = max_offset.min(self.log_end_offset);
        if next < max_offset && max_bytes <= READ_AHEAD_BYTES_MAX {
            let stream = Stream::Ahead;
            if let Some(op) = self.start_read(0, next, max_offset, max_bytes, stream, out) {
                self.read_ahead = ReadAhead::Reading { op, offset: next, max_bytes };
            }
        }
    }

    /// Consumer fetches answered by a read ahead (ready or in flight) since the log opened.
    pub fn reads_ahead_taken(&self) -> u64 {
        self.reads_ahead_taken
    }

    /// Fetches answered from the tail cache since the log opened.
    pub fn tail_reads(&self) -> u64 {
        self.tail.answered()
    }

    /// When the range read ahead is dropped if no fetch took it.
    pub fn read_ahead_deadline(&self) -> Option<Instant> {
        match &self.read_ahead {
            ReadAhead::Ready { until, .. } => Some(*until),
            _ => None,
        }
    }

    /// When [`Self::expire_reads_held`] next drops something: the range read ahead, or the
    /// tail cache of a log that stopped taking appends.
    pub fn reads_held_deadline(&self) -> Option<Instant> {
        match (self.read_ahead_deadline(), self.tail.deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Drops the range read ahead, and the batches in the tail cache, whose time is up.
    pub fn expire_reads_held(&mut self, now: Instant) {
        if self.read_ahead_deadline().is_some_and(|until| until <= now) {
            self.read_ahead = ReadAhead::None;
        }
        self.tail.expire(now);
    }

    /// Forgets the consumer read ahead of and the tail cache: the bytes the log holds
    /// changed, or it failed. A read ahead still in flight is dropped when it completes.
    pub(super) fn forget_reads_held(&mut self) {
        self.read_ahead = ReadAhead::None;
        self.tail.clear();
    }

    /// Answers a fetch read that failed; a read ahead that failed is dropped.
    fn read_failed(&mut self, job: &ReadJob, error: LogError) {
        match job.stream {
            Stream::Ahead => self.read_ahead = ReadAhead::None,
            Stream::Plain | Stream::Consumer { .. } => {
                self.events.push_back(LogEvent::Read { token: job.token, result: Err(error) });
            }
        }
    }

    fn out_of_range(&self, offset: u64) -> LogError {
        LogError::OffsetOutOfRange {
            offset,
            log_start_offset: self.log_start_offset,
            log_end_offset: self.log_end_offset,
        }
    }

    /// Submits a read for `job`; returns its op, or `None` if it was answered at once.
    fn submit_fetch_read(
        &mut self,
        job: ReadJob,
        wanted: u64,
        out: &mut impl DiskQueue,
    ) -> Option<OpId> {
        let Some(segment) = self.segment_by_base(job.segment_base) else {
            // Retention or truncation removed the segment while the read was in flight.
            let error = self.out_of_range(job.offset);
            self.read_failed(&job, error);
            return None;
        };
        let len = wanted.min(segment.size_bytes.saturating_sub(job.at.position));
        let op = DiskOp::Read {
            file: segment.log_file.clone(),
            pos: job.at.position,
            len: u32::try_from(len).expect("segments are under 4 GiB"),
        };
        let id = out.submit(op);
        self.pending.insert(id, Pending::Read(job));
        Some(id)
    }

    /// Op `id`, a read for `job`, completed.
    pub(super) fn complete_read(
        &mut self,
        now: Instant,
        id: OpId,
        mut job: ReadJob,
        result: DiskResult,
        out: &mut impl DiskQueue,
    ) {
        let current = matches!(self.read_ahead, ReadAhead::Reading { op, .. } if op == id);
        if job.stream == Stream::Ahead && !current {
            // Dropped since it started: by another fetch, a truncation or a failure.
            return;
        }
        let bytes = match self.read_bytes(job.segment_base, result) {
            Ok(bytes) => bytes,
            Err(error) => return self.read_failed(&job, error),
        };
        if bytes.is_empty() {
            // The file is shorter than the log knows it to be: something lost its tail.
            let error = self.corrupt(job.segment_base, job.at.position);
            return self.read_failed(&job, error);
        }
        match collect(&bytes, &job, &self.config, &self.epochs) {
            Collected::Batches { range, next } => {
                let records = bytes.slice(range);
                let (offset, max_bytes, empty) = (job.offset, job.max_bytes, records.is_empty());
                let answer = |records| LogEvent::Read { token: job.token, result: Ok(records) };
                match job.stream {
                    // Nothing below the HW that fits (the HW inside a batch): not kept.
                    Stream::Ahead if empty => self.read_ahead = ReadAhead::None,
                    Stream::Ahead => {
                        let until = now + READ_AHEAD_KEEP;
                        self.read_ahead =
                            ReadAhead::Ready { offset, max_bytes, bytes: records, next, until };
                    }
                    Stream::Plain => self.events.push_back(answer(records)),
                    Stream::Consumer { continues } => {
                        self.events.push_back(answer(records));
                        if continues && !empty {
                            self.read_on(next, job.max_offset, max_bytes, out);
                        } else if next <= self.log_end_offset {
                            self.read_ahead = ReadAhead::After { next, max_bytes };
                        }
                    }
                }
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
                self.resubmit(job, wanted, out);
            }
            Collected::Corrupt { position } => self.damaged_read(job, bytes.len(), position, out),
        }
    }

    /// Submits the next read of a fetch in flight, keeping a read ahead's op current.
    fn resubmit(&mut self, job: ReadJob, wanted: u64, out: &mut impl DiskQueue) {
        let ahead = job.stream == Stream::Ahead;
        let op = self.submit_fetch_read(job, wanted, out);
        if let (true, Some(id), ReadAhead::Reading { op, .. }) = (ahead, op, &mut self.read_ahead) {
            *op = id;
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
            self.resubmit(job, read as u64, out);
        } else {
            let error = self.corrupt(job.segment_base, job.at.position + position as u64);
            self.read_failed(&job, error);
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
    // The offset after the last batch collected.
    let mut end = job.offset;
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
            None if next > job.max_offset => {
                return Collected::Batches { range: 0..0, next: job.offset };
            }
            None => range = Some(position..position + size),
            Some(range) => {
                if next > job.max_offset || range.len() + size > job.max_bytes as usize {
                    break;
                }
                range.end += size;
            }
        }
        end = next;
    }
    if let Some(range) = range {
        // Whatever stopped the scan after the first batch, what was collected is verified; a
        // damaged batch further on is reported to the fetch that starts at it.
        return Collected::Batches { range, next: end };
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
