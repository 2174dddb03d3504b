//! Reads of damaged bytes always end: a batch whose length field runs past the end of its
//! segment (damaged on the disk, or flipped on the way from it) is read again a bounded
//! number of times, then reported corrupt. Reading on after it would ask for the same bytes
//! for ever, and every fetch at that offset would hang.

use bytes::Bytes;

use super::batch::build;
use super::{LogConfig, LogError, LogEvent, OpQueue, PartitionLog, ReadStart};
use crate::core::io::{DiskOk, DiskOp, FileName};
use crate::core::time::Instant;

const T0: Instant = Instant::from_millis(1_700_000_000_000);

/// Answers every queued op, reads from `file` (the segment's bytes), a listing as empty;
/// panics if the ops do not end.
fn run(log: &mut PartitionLog, queue: &mut OpQueue, file: &[u8]) {
    for _ in 0..100 {
        let Some((id, op)) = queue.pop() else { return };
        let result = match op {
            DiskOp::List { .. } => Ok(DiskOk::Listing(Vec::new())),
            DiskOp::Read { pos, len, .. } => {
                let start = (pos as usize).min(file.len());
                let end = (start + len as usize).min(file.len());
                Ok(DiskOk::Data(Bytes::copy_from_slice(&file[start..end])))
            }
            _ => Ok(DiskOk::Done),
        };
        log.handle_disk(T0, id, result, queue);
    }
    panic!("the ops never end");
}

#[test]
fn a_batch_length_running_past_its_segment_is_read_again_then_reported_corrupt() {
    let mut queue = OpQueue::default();
    // No tail cache: the fetch reads the damaged file rather than the batch as appended.
    let config = LogConfig { tail_cache_bytes: 0, ..LogConfig::default() };
    let mut log = PartitionLog::open(FileName::new("t-0"), config, &mut queue);
    let batch = build::batch(&[b"v"], 5);
    let mut file = batch.to_vec();
    run(&mut log, &mut queue, &file);
    log.append_as_leader(T0, batch, 1, &mut queue).unwrap();
    run(&mut log, &mut queue, &file);
    std::iter::from_fn(|| log.poll_event()).for_each(drop);
    // Its length field (after the base offset) now says 10,000 bytes: past the segment.
    file[8..12].copy_from_slice(&10_000i32.to_be_bytes());
    assert!(matches!(log.read(7, 0, 1, 1 << 20, &mut queue), Ok(ReadStart::Pending)));
    run(&mut log, &mut queue, &file);
    let events: Vec<LogEvent> = std::iter::from_fn(|| log.poll_event()).collect();
    let corrupt = |e: &LogEvent| {
        matches!(e, LogEvent::Read { token: 7, result: Err(LogError::Corrupt { .. }) })
    };
    assert!(events.len() == 1 && corrupt(&events[0]), "{events:?}");
}
