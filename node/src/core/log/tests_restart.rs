//! A follower's restart of its log at its leader's log start
//! ([`PartitionLog::truncate_fully_and_start_at`]): nothing counts as flushed until the new
//! segment is on disk, since until then recovery may find no segment at all and start the
//! log at 0 (simulator seeds 5107 and 11305: a wiped follower restarted at its leader's log
//! start on a full disk reported offset 70 flushed, its create failed, and it recovered an
//! empty log at 0).

use super::batch::build;
use super::{LogConfig, LogError, LogEvent, OpQueue, PartitionLog};
use crate::core::io::{DiskError, DiskOk, DiskOp, DiskResult, FileName};
use crate::core::time::Instant;

const T0: Instant = Instant::from_millis(1_700_000_000_000);

/// A log opened on an empty directory, its recovery answered: empty, at 0.
fn empty_log(queue: &mut OpQueue) -> PartitionLog {
    let mut log = PartitionLog::open(FileName::new("t-0"), LogConfig::default(), queue);
    run(&mut log, queue, |_| Ok(DiskOk::Done));
    assert!(log.is_ready());
    log
}

/// Answers every queued op with `answer` (a listing is always empty: the directory as a
/// disk holds it once every file was removed), in order; returns the highest flushed offset
/// the log reported along the way.
fn run(log: &mut PartitionLog, queue: &mut OpQueue, answer: impl Fn(&DiskOp) -> DiskResult) -> u64 {
    let mut max_flushed = log.flushed_offset();
    while let Some((id, op)) = queue.pop() {
        let result = match op {
            DiskOp::List { .. } => Ok(DiskOk::Listing(Vec::new())),
            ref op => answer(op),
        };
        log.handle_disk(T0, id, result, queue);
        max_flushed = max_flushed.max(log.flushed_offset());
    }
    max_flushed
}

fn events(log: &mut PartitionLog) -> Vec<LogEvent> {
    std::iter::from_fn(|| log.poll_event()).collect()
}

#[test]
fn a_restart_whose_create_fails_never_counted_its_start_as_flushed() {
    let mut queue = OpQueue::default();
    let mut log = empty_log(&mut queue);
    events(&mut log);
    log.truncate_fully_and_start_at(T0, 70, &mut queue).unwrap();
    assert_eq!(log.flushed_offset(), 0, "the new start is not on disk yet");
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (70, 70));
    // The disk is full: the new segment's create fails after the old one's removal.
    let max_flushed = run(&mut log, &mut queue, |op| match op {
        DiskOp::Create { .. } => Err(DiskError::NoSpace),
        _ => Ok(DiskOk::Done),
    });
    assert!(!log.is_ready(), "the failed create fails the log");
    log.recover(&mut queue);
    let max_flushed = max_flushed.max(run(&mut log, &mut queue, |_| Ok(DiskOk::Done)));
    assert_eq!(log.log_end_offset(), 0, "no segment left: the log starts again at 0");
    assert!(log.log_end_offset() >= max_flushed, "recovery kept every offset reported flushed");
}

#[test]
fn a_restart_ends_once_its_new_segment_is_created() {
    let mut queue = OpQueue::default();
    let mut log = empty_log(&mut queue);
    events(&mut log);
    log.truncate_fully_and_start_at(T0, 70, &mut queue).unwrap();
    let batch = build::batch(&[b"v"], 5);
    let refused = log.append_as_leader(T0, batch.clone(), 1, &mut queue);
    assert_eq!(refused.unwrap_err(), LogError::Truncating, "appends wait for the restart");
    assert!(events(&mut log).is_empty(), "not truncated before the create completed");
    run(&mut log, &mut queue, |_| Ok(DiskOk::Done));
    assert_eq!(
        events(&mut log),
        vec![LogEvent::Truncated { offset: 70 }, LogEvent::Flushed { offset: 70 }]
    );
    assert_eq!(log.flushed_offset(), 70);
    assert_eq!(log.append_as_leader(T0, batch, 1, &mut queue).unwrap().base_offset, 70);
}
