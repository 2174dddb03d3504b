//! A synchronous driver for one [`PartitionLog`] over any [`DiskDriver`], and a conformance
//! suite of log behaviours that every driver must pass. The node's tests run the suite over
//! real files; the simulator's run it over its faulty in-memory disk.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::{AppendInfo, LogConfig, LogError, LogEvent, OpQueue, PartitionLog, ReadStart};
use crate::core::io::{DiskDriver, FileName};
use crate::core::time::Instant;

/// One log, its disk, and the ops between them, run to completion after every call.
pub struct LogHarness<D: DiskDriver> {
    /// The log under test.
    pub log: PartitionLog,
    /// The disk it runs on.
    pub disk: D,
    /// Ops issued and not yet executed.
    pub queue: OpQueue,
    /// The time handed to the log.
    pub now: Instant,
    events: Vec<LogEvent>,
    next_token: u64,
}

impl<D: DiskDriver> LogHarness<D> {
    /// Opens the log in `dir` on `disk` and runs its recovery.
    pub fn open(disk: D, dir: &str, config: LogConfig, now: Instant) -> Self {
        let mut queue = OpQueue::default();
        let log = PartitionLog::open(FileName::new(dir), config, &mut queue);
        let mut harness = LogHarness { log, disk, queue, now, events: Vec::new(), next_token: 0 };
        harness.run();
        harness
    }

    /// Drops the in-memory log and opens it again from disk, as a restart does. Ops still
    /// queued are dropped unexecuted (a crash loses them).
    pub fn reopen(&mut self) {
        let config = self.log.config().clone();
        let dir = self.log.dir().clone();
        self.queue = OpQueue::default();
        self.events.clear();
        self.log = PartitionLog::open(dir, config, &mut self.queue);
        self.run();
    }

    /// Executes queued ops in order, handing each result to the log, until none is left.
    pub fn run(&mut self) {
        while self.step() {}
    }

    /// Executes at most `count` queued ops; returns how many ran.
    pub fn run_ops(&mut self, count: usize) -> usize {
        (0..count).take_while(|_| self.step()).count()
    }

    fn step(&mut self) -> bool {
        let Some((id, op)) = self.queue.pop() else {
            return false;
        };
        let result = self.disk.execute(op);
        self.log.handle_disk(self.now, id, result, &mut self.queue);
        while let Some(event) = self.log.poll_event() {
            self.events.push(event);
        }
        true
    }

    /// Moves time forward.
    pub fn advance(&mut self, by: Duration) {
        self.now = self.now + by;
    }

    /// Takes the events reported so far.
    pub fn take_events(&mut self) -> Vec<LogEvent> {
        std::mem::take(&mut self.events)
    }

    /// The first failure reported since the events were last taken.
    pub fn failure(&self) -> Option<&LogError> {
        self.events.iter().find_map(|event| match event {
            LogEvent::Failed { error } => Some(error),
            _ => None,
        })
    }

    /// Appends a produced batch as leader of `epoch` (without running its ops).
    pub fn append_queued(&mut self, batch: BytesMut, epoch: i32) -> Result<AppendInfo, LogError> {
        self.log.append_as_leader(self.now, batch, epoch, &mut self.queue)
    }

    /// Appends a produced batch as leader of `epoch` and runs its ops.
    pub fn append(&mut self, batch: BytesMut, epoch: i32) -> Result<AppendInfo, LogError> {
        let info = self.append_queued(batch, epoch);
        self.run();
        info
    }

    /// Flushes and runs; returns the flushed offset afterwards.
    pub fn flush(&mut self) -> u64 {
        self.log.flush(&mut self.queue);
        self.run();
        self.log.flushed_offset()
    }

    /// Reads and runs until the read's answer came back.
    pub fn read(
        &mut self,
        offset: u64,
        max_offset: u64,
        max_bytes: u32,
    ) -> Result<Bytes, LogError> {
        self.next_token += 1;
        let token = self.next_token;
        match self.log.read(token, offset, max_offset, max_bytes, &mut self.queue)? {
            ReadStart::Empty => return Ok(Bytes::new()),
            ReadStart::Pending => self.run(),
        }
        self.answer(token).expect("a read answers once its ops ran")
    }

    /// Submits a consumer's fetch without running any op; returns its token, or `None` if
    /// there was nothing to read. [`Self::answer`] gives the answer once it came.
    pub fn fetch_queued(
        &mut self,
        offset: u64,
        max_offset: u64,
        max_bytes: u32,
    ) -> Result<Option<u64>, LogError> {
        self.next_token += 1;
        let token = self.next_token;
        match self.log.read_for_consumer(token, offset, max_offset, max_bytes, &mut self.queue)? {
            ReadStart::Empty => Ok(None),
            ReadStart::Pending => Ok(Some(token)),
        }
    }

    /// The answer to read `token`, if it came (without running any op).
    pub fn answer(&mut self, token: u64) -> Option<Result<Bytes, LogError>> {
        while let Some(event) = self.log.poll_event() {
            self.events.push(event);
        }
        let at = self
            .events
            .iter()
            .position(|event| matches!(event, LogEvent::Read { token: t, .. } if *t == token))?;
        match self.events.remove(at) {
            LogEvent::Read { result, .. } => Some(result),
            _ => unreachable!(),
        }
    }

    /// Reads every batch from `offset` to the log end, `max_bytes` at a time.
    pub fn read_all(&mut self, mut offset: u64, max_bytes: u32) -> Result<Vec<Bytes>, LogError> {
        let mut batches = Vec::new();
        let end = self.log.log_end_offset();
        while offset < end {
            let bytes = self.read(offset, end, max_bytes)?;
            assert!(!bytes.is_empty(), "a read below the end returns a batch");
            // The log verified every batch it returned; split them by their headers only.
            let mut position = 0;
            while position < bytes.len() {
                let header = super::batch::BatchHeader::parse(&bytes[position..])
                    .expect("reads return whole batches");
                let size = header.total_bytes();
                assert!(position + size <= bytes.len(), "reads return whole batches");
                batches.push(bytes.slice(position..position + size));
                offset = header.next_offset() as u64;
                position += size;
            }
        }
        Ok(batches)
    }

    /// Looks up an offset by timestamp and runs until answered.
    pub fn offset_for_timestamp(&mut self, timestamp: i64) -> Result<Option<(u64, i64)>, LogError> {
        self.next_token += 1;
        let token = self.next_token;
        if let Some(answer) = self.log.offset_for_timestamp(token, timestamp, &mut self.queue)? {
            return Ok(answer);
        }
        self.run();
        let at = self.events.iter().position(
            |event| matches!(event, LogEvent::OffsetForTimestamp { token: t, .. } if *t == token),
        );
        match self.events.remove(at.expect("a lookup answers once its ops ran")) {
            LogEvent::OffsetForTimestamp { result, .. } => result,
            _ => unreachable!(),
        }
    }

    /// Truncates and runs; returns the new log end offset.
    pub fn truncate_to(&mut self, offset: u64) -> Result<u64, LogError> {
        self.log.truncate_to(offset, &mut self.queue)?;
        self.run();
        match self.log.failure() {
            Some(error) => Err(error.clone()),
            None => Ok(self.log.log_end_offset()),
        }
    }

    /// Applies retention with everything deletable below the log end.
    pub fn apply_retention(&mut self) -> usize {
        let end = self.log.log_end_offset();
        let deleted = self.log.apply_retention(self.now, end, &mut self.queue);
        self.run();
        deleted
    }

    /// Submits a raw op to the disk, bypassing the log (to damage files in tests).
    pub fn raw(&mut self, op: crate::core::io::DiskOp) -> crate::core::io::DiskResult {
        self.disk.execute(op)
    }

    /// Gives the disk back.
    pub fn into_disk(self) -> D {
        self.disk
    }
}

/// Behaviours every disk driver must support, as a suite of checks over a fresh disk each.
pub mod conformance {
    use super::*;
    use crate::core::io::{DiskOk, DiskOp};
    use crate::core::log::batch::{BatchHeader, build};

    /// A small-segment config so tests roll often.
    pub fn small_config() -> LogConfig {
        LogConfig {
            segment_bytes: 4096,
            index_interval_bytes: 256,
            batch_bytes_max: 4096,
            ..LogConfig::default()
        }
    }

    /// A batch of `records` records of `value_bytes` bytes, stamped from `timestamp`.
    pub fn batch_of(records: usize, value_bytes: usize, timestamp: i64) -> BytesMut {
        let value = vec![b'x'; value_bytes];
        let values: Vec<&[u8]> = (0..records).map(|_| value.as_slice()).collect();
        build::batch(&values, timestamp)
    }

    fn header(bytes: &[u8]) -> BatchHeader {
        BatchHeader::parse(bytes).expect("a header")
    }

    const T0: Instant = Instant::from_millis(1_700_000_000_000);
    const DIR: &str = "topic-0";

    /// Runs every check, each on a disk from `make`.
    pub fn run_all<D: DiskDriver>(mut make: impl FnMut() -> D) {
        appends_read_back_exactly(make());
        offsets_stay_dense_across_rolls(make());
        reads_respect_bounds(make());
        lookups_by_timestamp(make());
        truncation_cuts_at_batch_boundaries(make());
        retention_deletes_whole_old_segments(make());
        recovery_keeps_flushed_data_and_epochs(make());
        invalid_batches_leave_the_log_untouched(make());
        a_torn_tail_is_cut_at_recovery(make());
        a_damaged_index_is_rebuilt(make());
        follower_appends_keep_offsets(make());
        rolling_by_age(make());
        a_consumer_catching_up_is_read_ahead_of(make());
        a_fetch_takes_over_the_read_ahead_in_flight(make());
        a_truncation_drops_the_read_ahead(make());
        a_read_ahead_nobody_fetches_is_dropped(make());
        fetches_at_the_tail_are_answered_from_memory(make());
        the_tail_cache_keeps_the_newest_batches_for_a_while(make());
        a_truncation_empties_the_tail_cache(make());
    }

    /// The default settings without a tail cache: every fetch reads the disk.
    fn disk_reads() -> LogConfig {
        LogConfig { tail_cache_bytes: 0, ..LogConfig::default() }
    }

    /// Every (offset, high watermark, max bytes) fetch of the log's first `end` offsets, with
    /// its answer, each answered before any op ran (`at_once`) or by running the ops.
    fn fetch_grid<D: DiskDriver>(
        h: &mut LogHarness<D>,
        end: u64,
        at_once: bool,
    ) -> Vec<((u64, u64, u32), Bytes)> {
        let mut answers = Vec::new();
        for offset in 0..end {
            for max_offset in offset + 1..=end {
                for max_bytes in [1, 700, 1_500, 1 << 20] {
                    let token = h.fetch_queued(offset, max_offset, max_bytes).unwrap();
                    let token = token.expect("data below the bound");
                    if !at_once {
                        h.run();
                    }
                    let answer = h.answer(token).expect("answered").unwrap();
                    answers.push(((offset, max_offset, max_bytes), answer));
                }
            }
        }
        answers
    }

    /// Fetches at the tail are answered from memory, before any op runs, with exactly what a
    /// read of the disk returns: by the same bounds (the high watermark, `max_bytes` but the
    /// first batch whole), from inside a batch too.
    pub fn fetches_at_the_tail_are_answered_from_memory<D: DiskDriver>(disk: D) {
        let mut h = LogHarness::open(disk, DIR, LogConfig::default(), T0);
        for i in 0..6 {
            // Batches of 1, 2 and 3 records, about 600 bytes each.
            let values: Vec<Vec<u8>> = (0..i % 3 + 1).map(|_| vec![b'a' + i as u8; 180]).collect();
            let values: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
            h.append(build::batch(&values, 1_000 + i as i64), 2).unwrap();
        }
        let end = h.log.log_end_offset();
        assert_eq!(end, 12);
        let from_memory = fetch_grid(&mut h, end, true);
        assert!(h.queue.is_empty(), "no read was queued");
        assert_eq!(h.log.tail_reads(), from_memory.len() as u64);
        h.reopen();
        assert_eq!(h.log.tail_reads(), 0, "a log opened holds no tail");
        let from_disk = fetch_grid(&mut h, end, false);
        assert_eq!(from_memory, from_disk);
    }

    /// The tail cache holds the newest `tail_cache_bytes` only, and each batch for
    /// `TAIL_CACHE_KEEP`; a fetch of anything older reads the disk.
    pub fn the_tail_cache_keeps_the_newest_batches_for_a_while<D: DiskDriver>(disk: D) {
        use crate::core::limits::TAIL_CACHE_KEEP;
        let config = LogConfig { tail_cache_bytes: 3_000, ..LogConfig::default() };
        let mut h = LogHarness::open(disk, DIR, config, T0);
        append_values(&mut h, 10, 1_000, b'a', 3);
        let fetch = |h: &mut LogHarness<D>, offset: u64| {
            let end = h.log.log_end_offset();
            let token = h.fetch_queued(offset, end, 1).unwrap().expect("data below");
            let at_once = h.answer(token);
            let held = at_once.is_some();
            h.run();
            at_once.or_else(|| h.answer(token)).expect("answered").unwrap();
            held
        };
        assert!(fetch(&mut h, 9) && fetch(&mut h, 8), "the newest batches are held");
        assert!(!fetch(&mut h, 7) && !fetch(&mut h, 0), "older ones are read");
        assert_eq!(h.log.reads_held_deadline(), Some(T0 + TAIL_CACHE_KEEP));
        h.log.expire_reads_held(T0 + TAIL_CACHE_KEEP - Duration::from_millis(1));
        assert!(fetch(&mut h, 9), "held until its time is up");
        h.log.expire_reads_held(T0 + TAIL_CACHE_KEEP);
        assert!(!fetch(&mut h, 9), "dropped when it is");
        assert_eq!(h.log.reads_held_deadline(), None);
        // A batch larger than the cache is not held, and the next starts a run again.
        h.append(build::batch(&[&[b'b'; 4_000]], 2_000), 3).unwrap();
        assert!(!fetch(&mut h, 10));
        h.append(build::batch(&[b"c"], 2_001), 3).unwrap();
        assert!(fetch(&mut h, 11) && !fetch(&mut h, 10));
    }

    /// A truncation empties the tail cache: after the tail is cut and written again, a fetch
    /// at the tail returns the new batches, and one of the cut offsets is out of range.
    pub fn a_truncation_empties_the_tail_cache<D: DiskDriver>(disk: D) {
        let mut h = LogHarness::open(disk, DIR, LogConfig::default(), T0);
        append_values(&mut h, 10, 100, b'a', 3);
        let token = h.fetch_queued(9, 10, 1 << 20).unwrap().expect("data below");
        assert!(h.answer(token).is_some(), "the batches are held");
        assert_eq!(h.truncate_to(5).unwrap(), 5);
        assert!(matches!(h.read(7, 10, 1 << 20), Err(LogError::OffsetOutOfRange { .. })));
        append_values(&mut h, 3, 100, b'b', 4);
        let token = h.fetch_queued(5, 8, 1 << 20).unwrap().expect("data below");
        assert!(h.answer(token).is_some(), "the new batches are held");
        let held = h.read(5, 8, 1 << 20).unwrap();
        assert_eq!(header(&held).partition_leader_epoch, 4, "the batches written after the cut");
        h.reopen();
        assert_eq!(held, h.read(5, 8, 1 << 20).unwrap(), "what the disk holds");
    }

    /// `count` batches of one record of `value_bytes` bytes, each `value` throughout, appended
    /// as leader of `epoch`.
    fn append_values<D: DiskDriver>(
        h: &mut LogHarness<D>,
        count: usize,
        value_bytes: usize,
        value: u8,
        epoch: i32,
    ) {
        for i in 0..count {
            let bytes = vec![value; value_bytes];
            h.append(build::batch(&[&bytes], 1_000 + i as i64), epoch).unwrap();
        }
    }

    /// The offset after the last batch of a fetch answer.
    fn end_of(bytes: &[u8]) -> u64 {
        let mut position = 0;
        let mut next = 0;
        while position < bytes.len() {
            let batch = header(&bytes[position..]);
            next = batch.next_offset() as u64;
            position += batch.total_bytes();
        }
        next
    }

    /// Two consumer fetches, each continuing the last, each answered after its read: the
    /// second leaves the log reading ahead from where it ended. Returns that offset.
    fn catch_up_twice<D: DiskDriver>(h: &mut LogHarness<D>, max_bytes: u32) -> u64 {
        let end = h.log.log_end_offset();
        let mut offset = 0;
        for _ in 0..2 {
            let token = h.fetch_queued(offset, end, max_bytes).unwrap().expect("data below");
            assert!(h.answer(token).is_none(), "a first read of a range waits for its op");
            h.run();
            let bytes = h.answer(token).expect("answered").unwrap();
            offset = end_of(&bytes);
        }
        offset
    }

    /// A consumer that fetches on from where its answers end, each answer stopped by its byte
    /// limit, has its next range read while it handles the last: from its third fetch on
    /// every answer is there before any op runs, and is exactly what a plain read returns.
    /// An answer that reaches the high watermark starts no read ahead.
    pub fn a_consumer_catching_up_is_read_ahead_of<D: DiskDriver>(disk: D) {
        let mut h = LogHarness::open(disk, DIR, disk_reads(), T0);
        append_values(&mut h, 40, 1_000, b'a', 3);
        let (end, max_bytes) = (h.log.log_end_offset(), 3_500);
        let mut offset = catch_up_twice(&mut h, max_bytes);
        let mut fetches = 2;
        while offset < end {
            let token = h.fetch_queued(offset, end, max_bytes).unwrap().expect("data below");
            let bytes = h.answer(token).expect("answered before any op ran").unwrap();
            let next = end_of(&bytes);
            // One op queued: the read of the range after this answer, unless it reached the end.
            assert_eq!(h.queue.len(), usize::from(next < end), "at {offset}");
            h.run();
            assert_eq!(bytes, h.read(offset, end, max_bytes).unwrap(), "at {offset}");
            offset = next;
            fetches += 1;
        }
        assert!(fetches > 10, "{fetches} fetches: the test reads ahead many times");
        assert_eq!(h.fetch_queued(end, end, max_bytes).unwrap(), None);
        // A fetch stopped by the high watermark reads nothing ahead.
        let hw = end - 5;
        let token = h.fetch_queued(hw - 3, hw, max_bytes).unwrap().expect("data below");
        h.run();
        assert_eq!(end_of(&h.answer(token).expect("answered").unwrap()), hw);
        let token = h.fetch_queued(hw, end, max_bytes).unwrap().expect("data below");
        assert!(h.answer(token).is_none(), "nothing was read ahead past the HW");
        h.run();
        assert!(h.queue.is_empty());
    }

    /// A fetch of the range whose read ahead is still in flight takes that read over: no
    /// second read is queued, and it is answered when the first completes.
    pub fn a_fetch_takes_over_the_read_ahead_in_flight<D: DiskDriver>(disk: D) {
        let mut h = LogHarness::open(disk, DIR, disk_reads(), T0);
        append_values(&mut h, 20, 1_000, b'a', 3);
        let (end, max_bytes) = (h.log.log_end_offset(), 3_500);
        let token = h.fetch_queued(0, end, max_bytes).unwrap().expect("data below");
        h.run();
        let offset = end_of(&h.answer(token).expect("answered").unwrap());
        let token = h.fetch_queued(offset, end, max_bytes).unwrap().expect("data below");
        assert_eq!(h.run_ops(1), 1);
        let next = end_of(&h.answer(token).expect("answered by its read").unwrap());
        assert_eq!(h.queue.len(), 1, "the read ahead from {next} is queued");
        let token = h.fetch_queued(next, end, max_bytes).unwrap().expect("data below");
        assert!(h.answer(token).is_none(), "the read ahead has not run");
        assert_eq!(h.queue.len(), 1, "the fetch took the read ahead over");
        assert_eq!(h.run_ops(1), 1);
        let bytes = h.answer(token).expect("answered by the read ahead").unwrap();
        assert_eq!(bytes, h.read(next, end, max_bytes).unwrap());
    }

    /// A truncation drops what was read ahead: after the tail is cut and written again, a
    /// fetch from the same offset returns the new batches, not the ones read before.
    pub fn a_truncation_drops_the_read_ahead<D: DiskDriver>(disk: D) {
        let mut h = LogHarness::open(disk, DIR, disk_reads(), T0);
        append_values(&mut h, 20, 1_000, b'a', 3);
        let max_bytes = 3_500;
        let offset = catch_up_twice(&mut h, max_bytes);
        assert_eq!(h.truncate_to(offset).unwrap(), offset);
        append_values(&mut h, 20, 1_000, b'b', 4);
        let end = h.log.log_end_offset();
        let token = h.fetch_queued(offset, end, max_bytes).unwrap().expect("data below");
        h.run();
        let bytes = h.answer(token).expect("answered").unwrap();
        assert_eq!(header(&bytes).partition_leader_epoch, 4, "the batches written after the cut");
        assert_eq!(bytes, h.read(offset, end, max_bytes).unwrap());
    }

    /// A range read ahead that no fetch takes is dropped after `READ_AHEAD_KEEP`; so is one
    /// passed over by a fetch elsewhere.
    pub fn a_read_ahead_nobody_fetches_is_dropped<D: DiskDriver>(disk: D) {
        use crate::core::limits::READ_AHEAD_KEEP;
        let mut h = LogHarness::open(disk, DIR, disk_reads(), T0);
        append_values(&mut h, 20, 1_000, b'a', 3);
        let (end, max_bytes) = (h.log.log_end_offset(), 3_500);
        let offset = catch_up_twice(&mut h, max_bytes);
        assert_eq!(h.log.read_ahead_deadline(), Some(T0 + READ_AHEAD_KEEP));
        h.log.expire_reads_held(T0 + READ_AHEAD_KEEP - Duration::from_millis(1));
        assert!(h.log.read_ahead_deadline().is_some(), "kept until its deadline");
        h.log.expire_reads_held(T0 + READ_AHEAD_KEEP);
        assert_eq!(h.log.read_ahead_deadline(), None);
        let token = h.fetch_queued(offset, end, max_bytes).unwrap().expect("data below");
        assert!(h.answer(token).is_none(), "dropped: the fetch reads");
        h.run();
        assert!(h.answer(token).is_some());
        // Reading ahead again; a fetch from elsewhere (another consumer) drops it.
        let next = catch_up_twice(&mut h, max_bytes);
        assert!(h.log.read_ahead_deadline().is_some());
        let token = h.fetch_queued(0, end, max_bytes).unwrap().expect("data below");
        h.run();
        assert!(h.answer(token).is_some());
        let token = h.fetch_queued(next, end, max_bytes).unwrap().expect("data below");
        assert!(h.answer(token).is_none(), "passed over: the fetch reads");
    }

    /// Batches come back byte for byte, offsets patched, bounded by the byte limit.
    pub fn appends_read_back_exactly<D: DiskDriver>(disk: D) {
        let mut h = LogHarness::open(disk, DIR, LogConfig::default(), T0);
        let mut sent = Vec::new();
        for i in 0..50 {
            let batch = batch_of(1 + i % 4, 10 + i, 1_000 + i as i64);
            let info = h.append(batch.clone(), 3).unwrap();
            let mut expected = batch;
            crate::core::log::batch::patch_batch(&mut expected, info.base_offset, 3);
            sent.push(expected.freeze());
        }
        assert_eq!(
            h.log.log_end_offset(),
            sent.iter().map(|b| header(b).record_count as u64).sum::<u64>()
        );
        let back = h.read_all(0, 1 << 20).unwrap();
        assert_eq!(back, sent);
        // A byte limit below one batch still returns that batch whole (KIP-74).
        let one = h.read(0, u64::MAX, 1).unwrap();
        assert_eq!(one, sent[0]);
        // Two batches' worth of bytes returns exactly two.
        let limit = (sent[0].len() + sent[1].len()) as u32;
        assert_eq!(h.read(0, u64::MAX, limit).unwrap().len(), limit as usize);
        // A read from the middle of a batch returns that batch.
        let second = header(&sent[1]);
        if second.record_count > 1 {
            let middle = second.base_offset as u64 + 1;
            assert_eq!(h.read(middle, u64::MAX, 1).unwrap(), sent[1]);
        }
        assert_eq!(h.flush(), h.log.log_end_offset());
    }

    /// Small segments roll; offsets run on without gaps through every segment.
    pub fn offsets_stay_dense_across_rolls<D: DiskDriver>(disk: D) {
        let mut h = LogHarness::open(disk, DIR, small_config(), T0);
        for i in 0..200 {
            h.append(batch_of(3, 50, i), 0).unwrap();
        }
        assert!(h.log.segments().count() > 10, "small segments roll");
        let batches = h.read_all(0, 700).unwrap();
        let mut expected = 0;
        for batch in &batches {
            let header = header(batch);
            assert_eq!(header.base_offset as u64, expected);
            expected = header.next_offset() as u64;
        }
        assert_eq!(expected, 600);
        h.flush();
        h.reopen();
        assert_eq!(h.log.log_end_offset(), 600);
        assert_eq!(h.read_all(0, 5000).unwrap(), batches);
    }

    /// Out-of-range offsets are errors; the high-watermark bound and the log end are empty.
    pub fn reads_respect_bounds<D: DiskDriver>(disk: D) {
        let mut h = LogHarness::open(disk, DIR, small_config(), T0);
        assert_eq!(h.read(0, u64::MAX, 100).unwrap(), Bytes::new());
        for i in 0..10 {
            h.append(batch_of(2, 10, i), 0).unwrap();
        }
        assert!(matches!(h.read(21, u64::MAX, 100), Err(LogError::OffsetOutOfRange { .. })));
        assert_eq!(h.read(20, u64::MAX, 100).unwrap(), Bytes::new());
        // max_offset 6 (a high watermark): batches [0,2) [2,4) [4,6) only.
        let bytes = h.read(0, 6, 1 << 20).unwrap();
        let batches: Vec<_> = crate::core::log::batch::BatchScan::new(&bytes, usize::MAX).collect();
        assert_eq!(batches.len(), 3);
        assert_eq!(h.read(6, 6, 100).unwrap(), Bytes::new());
    }

    /// ListOffsets by time: the first record at or after the timestamp.
    pub fn lookups_by_timestamp<D: DiskDriver>(disk: D) {
        let mut h = LogHarness::open(disk, DIR, small_config(), T0);
        for i in 0..100 {
            // Batch i holds 4 records stamped 10_000 + 10 i + {0,1,2,3}.
            h.append(batch_of(4, 20, 10_000 + 10 * i), 0).unwrap();
        }
        assert_eq!(h.offset_for_timestamp(0).unwrap(), Some((0, 10_000)));
        assert_eq!(h.offset_for_timestamp(10_502).unwrap(), Some((202, 10_502)));
        assert_eq!(h.offset_for_timestamp(10_505).unwrap(), Some((204, 10_510)));
        assert_eq!(h.offset_for_timestamp(10_993).unwrap(), Some((399, 10_993)));
        assert_eq!(h.offset_for_timestamp(10_994).unwrap(), None);
    }

    /// Truncation keeps everything below the offset, drops whole batches at and after it.
    pub fn truncation_cuts_at_batch_boundaries<D: DiskDriver>(disk: D) {
        let mut h = LogHarness::open(disk, DIR, small_config(), T0);
        for i in 0..100 {
            h.append(batch_of(5, 30, i), 1).unwrap();
        }
        h.log.assign_epoch(2);
        for i in 0..20 {
            h.append(batch_of(5, 30, 100 + i), 2).unwrap();
        }
        h.flush();
        let before = h.read_all(0, 1 << 20).unwrap();
        assert_eq!(h.truncate_to(503).unwrap(), 500, "mid-batch: the batch goes whole");
        assert_eq!(h.log.epochs().latest_epoch(), Some(1), "epoch 2 started at 500");
        assert_eq!(h.truncate_to(250).unwrap(), 250);
        assert_eq!(h.read_all(0, 1 << 20).unwrap(), before[..50].to_vec());
        let info = h.append(batch_of(1, 5, 7), 3).unwrap();
        assert_eq!(info.base_offset, 250);
        h.flush();
        h.reopen();
        assert_eq!(h.log.log_end_offset(), 251);
        assert_eq!(h.log.epochs().end_offset_for(1, 251), (1, 250));
        assert_eq!(h.read_all(0, 1 << 20).unwrap()[..50], before[..50]);
        // Truncating to a segment base empties that segment and drops the later ones.
        let base = h.log.segments().nth(2).unwrap().base_offset;
        assert_eq!(h.truncate_to(base).unwrap(), base);
        assert_eq!(h.log.segments().count(), 3);
        h.log.truncate_fully_and_start_at(h.now, 1_000, &mut h.queue).unwrap();
        h.run();
        h.append(batch_of(1, 5, 7), 4).unwrap();
        h.flush();
        h.reopen();
        assert_eq!((h.log.log_start_offset(), h.log.log_end_offset()), (1_000, 1_001));
    }

    /// Retention removes whole segments from the front, by size and by time.
    pub fn retention_deletes_whole_old_segments<D: DiskDriver>(disk: D) {
        let config = LogConfig { retention_bytes: 8192, ..small_config() };
        let mut h = LogHarness::open(disk, DIR, config, T0);
        for i in 0..200 {
            h.append(batch_of(2, 100, T0.as_millis() + i), 0).unwrap();
        }
        h.flush();
        let segments = h.log.segments().count();
        let deleted = h.apply_retention();
        assert!(deleted > 0 && deleted < segments);
        assert!(h.log.size_bytes() >= 8192, "keeps at least retention.bytes");
        let start = h.log.log_start_offset();
        assert!(start > 0);
        assert!(matches!(h.read(start - 1, u64::MAX, 100), Err(LogError::OffsetOutOfRange { .. })));
        assert_eq!(header(&h.read(start, u64::MAX, 1).unwrap()).base_offset as u64, start);
        h.reopen();
        assert_eq!(h.log.log_start_offset(), start);
        // By time: a week and a bit later every sealed segment is expired.
        let mut config = h.log.config().clone();
        config.retention_bytes = -1;
        config.retention_ms = 1000;
        h.log.set_config(config);
        h.advance(Duration::from_secs(10));
        h.apply_retention();
        assert_eq!(h.log.segments().count(), 1, "only the active segment is left");
        assert_eq!(h.log.log_start_offset(), h.log.segments().next().unwrap().base_offset);
    }

    /// Flushed data and the epoch cache survive a restart.
    pub fn recovery_keeps_flushed_data_and_epochs<D: DiskDriver>(disk: D) {
        let mut h = LogHarness::open(disk, DIR, small_config(), T0);
        for epoch in [1, 1, 4, 4, 4, 7] {
            h.append(batch_of(3, 40, 5), epoch).unwrap();
        }
        h.log.assign_epoch(9);
        assert_eq!(h.flush(), 18);
        let before = h.read_all(0, 1 << 20).unwrap();
        h.reopen();
        h.reopen(); // Recovery is idempotent.
        assert_eq!(h.read_all(0, 1 << 20).unwrap(), before);
        assert_eq!(h.log.flushed_offset(), 18);
        let epochs = h.log.epochs();
        assert_eq!(epochs.end_offset_for(1, 18), (1, 6));
        assert_eq!(epochs.end_offset_for(4, 18), (4, 15));
        assert_eq!(epochs.end_offset_for(7, 18), (7, 18));
        assert_eq!(epochs.latest_epoch(), Some(9), "an assigned epoch is kept");
    }

    /// A batch with a wrong CRC, magic, length, or cut short is refused; nothing changes.
    pub fn invalid_batches_leave_the_log_untouched<D: DiskDriver>(disk: D) {
        let mut h = LogHarness::open(disk, DIR, small_config(), T0);
        h.append(batch_of(2, 10, 0), 0).unwrap();
        let good = batch_of(2, 10, 0);
        let mut bad_crc = good.clone();
        let last = bad_crc.len() - 1;
        bad_crc[last] ^= 0x40;
        let mut bad_magic = good.clone();
        bad_magic[16] = 1;
        let mut bad_length = good.clone();
        bad_length[8..12].copy_from_slice(&40_000i32.to_be_bytes());
        let cut = BytesMut::from(&good[..good.len() - 3]);
        for bad in [bad_crc, bad_magic, bad_length, cut, BytesMut::new()] {
            assert!(matches!(h.append(bad, 0), Err(LogError::InvalidBatch(_))));
            assert!(h.queue.is_empty(), "nothing was written");
        }
        assert_eq!(h.log.log_end_offset(), 2);
        assert_eq!(h.read_all(0, 1 << 20).unwrap().len(), 1);
    }

    /// Bytes after the last whole batch (a torn write) are cut when the log recovers.
    pub fn a_torn_tail_is_cut_at_recovery<D: DiskDriver>(disk: D) {
        let mut h = LogHarness::open(disk, DIR, LogConfig::default(), T0);
        for _ in 0..5 {
            h.append(batch_of(2, 100, 0), 0).unwrap();
        }
        h.flush();
        let file = h.log.segments().last().unwrap().log_file.clone();
        let size = h.log.segments().last().unwrap().size_bytes;
        let torn = batch_of(2, 100, 0).freeze().slice(..80);
        h.raw(DiskOp::Append { file: file.clone(), pos: size, data: torn }).unwrap();
        h.reopen();
        assert_eq!(h.log.log_end_offset(), 10);
        assert!(
            h.take_events()
                .iter()
                .any(|e| matches!(e, LogEvent::Recovered { truncated_bytes: 80, .. }))
        );
        let listing = h.raw(DiskOp::List { dir: FileName::new(DIR) }).unwrap();
        let DiskOk::Listing(entries) = listing else { panic!() };
        let entry = entries.iter().find(|e| e.name == file.file_name()).unwrap();
        assert_eq!(entry.len, size, "the torn bytes were cut from the file");
        let info = h.append(batch_of(1, 1, 0), 0).unwrap();
        assert_eq!(info.base_offset, 10);
    }

    /// An index file that is damaged or disagrees with its segment is rebuilt by a scan.
    pub fn a_damaged_index_is_rebuilt<D: DiskDriver>(disk: D) {
        let mut h = LogHarness::open(disk, DIR, small_config(), T0);
        for i in 0..60 {
            h.append(batch_of(3, 60, i), 0).unwrap();
        }
        h.flush();
        let before = h.read_all(0, 1 << 20).unwrap();
        let sealed: Vec<FileName> =
            h.log.segments().filter(|s| s.sealed).map(|s| s.index_file.clone()).collect();
        assert!(sealed.len() >= 2);
        h.raw(DiskOp::Append {
            file: sealed[0].clone(),
            pos: 9,
            data: Bytes::from_static(b"junk"),
        })
        .unwrap();
        h.raw(DiskOp::Remove { file: sealed[1].clone() }).unwrap();
        h.reopen();
        assert_eq!(h.read_all(0, 1 << 20).unwrap(), before);
        assert_eq!(h.log.segments().filter(|s| s.sealed).count(), sealed.len());
    }

    /// Follower appends keep the leader's offsets and epochs, and refuse gaps.
    pub fn follower_appends_keep_offsets<D: DiskDriver>(disk: D) {
        let mut h = LogHarness::open(disk, DIR, small_config(), T0);
        let mut records = BytesMut::new();
        for (base, epoch) in [(0u64, 1), (2, 1), (4, 3)] {
            let mut batch = batch_of(2, 10, 0);
            crate::core::log::batch::patch_batch(&mut batch, base, epoch);
            records.extend_from_slice(&batch);
        }
        let info = h.log.append_as_follower(h.now, records.clone().freeze(), &mut h.queue).unwrap();
        h.run();
        assert_eq!(info.map(|i| (i.base_offset, i.last_offset)), Some((0, 5)));
        assert_eq!(h.log.epochs().end_offset_for(1, 6), (1, 4));
        let again = h.log.append_as_follower(h.now, records.freeze(), &mut h.queue);
        assert!(matches!(again, Err(LogError::InvalidBatch(_))), "offsets 0.. again is a gap");
        assert_eq!(h.log.log_end_offset(), 6);
    }

    /// A segment older than segment.ms rolls on the next append.
    pub fn rolling_by_age<D: DiskDriver>(disk: D) {
        let config = LogConfig { segment_ms: 1000, ..LogConfig::default() };
        let mut h = LogHarness::open(disk, DIR, config, T0);
        h.append(batch_of(1, 10, 0), 0).unwrap();
        h.append(batch_of(1, 10, 0), 0).unwrap();
        assert_eq!(h.log.segments().count(), 1);
        h.advance(Duration::from_millis(1500));
        h.append(batch_of(1, 10, 0), 0).unwrap();
        assert_eq!(h.log.segments().count(), 2);
        assert_eq!(h.log.segments().last().unwrap().base_offset, 2);
    }
}
