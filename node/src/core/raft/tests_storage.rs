//! Exact-output tests of the storage (which ops, and what counts as durable when) and of
//! recovery on damaged files.

use bytes::Bytes;

use super::log::RaftLog;
use super::message::{Entry, EntryKind, HardState, SnapshotRecord, WalKind, WalRecord};
use super::storage::{LOG_TMP, Storage, StorageEvent, segment_file};
use super::tests_harness::{Cluster, MemDisk, format};
use super::{BOOTSTRAP_FILE, Raft, RaftConfig, RaftFatal, snapshot_file};
use crate::core::io::{DiskError, DiskOk, DiskOp, FileName, NodeId, OpId};
use crate::core::limits::RECOVERY_READ_RETRIES_MAX;
use crate::core::log::OpQueue;
use crate::core::time::Instant;

fn entry(index: u64, term: u64) -> Entry {
    Entry { index, term, kind: EntryKind::Normal as i32, payload: Bytes::from("x"), leader: 0 }
}

fn record(entry: Entry) -> WalRecord {
    WalRecord { kind: Some(WalKind::Entry(entry)) }
}

fn take(queue: &mut OpQueue) -> Vec<(OpId, DiskOp)> {
    std::iter::from_fn(|| queue.pop()).collect()
}

/// Storage that has written its first segment (number 1) for an empty log.
fn ready(log: &RaftLog, queue: &mut OpQueue) -> Storage {
    let mut storage = Storage::new(0, None);
    storage.rewrite(log, HardState::default(), queue);
    let ops = take(queue);
    assert!(matches!(
        &ops[..],
        [(_, DiskOp::Create { .. }), (_, DiskOp::Append { .. }), (_, DiskOp::Sync { .. })]
    ));
    assert_eq!(storage.synced_seq(), 0, "nothing durable before the rename");
    for (id, _) in ops {
        assert_eq!(storage.handle_disk(id, Ok(DiskOk::Done), log, queue), None);
    }
    let [(rename, DiskOp::Rename { from, to })] = &take(queue)[..] else { panic!("a rename") };
    assert_eq!((from.as_str(), to), (LOG_TMP, &segment_file(1)));
    let event = storage.handle_disk(*rename, Ok(DiskOk::Done), log, queue);
    assert_eq!(event, Some(StorageEvent::Synced));
    assert_eq!(storage.synced_seq(), 1);
    let [(remove, DiskOp::Remove { file })] = &take(queue)[..] else { panic!("a removal") };
    assert_eq!(file, &segment_file(0), "the segment it replaces");
    assert_eq!(storage.handle_disk(*remove, Ok(DiskOk::Done), log, queue), None);
    storage
}

#[test]
fn entries_count_as_durable_only_once_their_sync_completed() {
    let mut queue = OpQueue::default();
    let mut log = RaftLog::new(0, 0);
    let mut storage = ready(&log, &mut queue);
    log.push(entry(1, 1));
    log.push(entry(2, 1));
    let seq = storage.write(vec![record(entry(1, 1)), record(entry(2, 1))], &log, None, &mut queue);
    assert_eq!(seq, 3);
    let [(append, DiskOp::Append { .. }), (sync, DiskOp::Sync { file })] = &take(&mut queue)[..]
    else {
        panic!("an append and a sync")
    };
    assert_eq!(file, &segment_file(1));
    assert_eq!(storage.handle_disk(*append, Ok(DiskOk::Done), &log, &mut queue), None);
    assert_eq!((storage.synced_seq(), storage.synced_index()), (1, 0));
    let event = storage.handle_disk(*sync, Ok(DiskOk::Done), &log, &mut queue);
    assert_eq!(event, Some(StorageEvent::Synced));
    assert_eq!((storage.synced_seq(), storage.synced_index()), (3, 2));
}

#[test]
fn a_truncation_takes_back_what_a_sync_in_flight_would_make_durable() {
    let mut queue = OpQueue::default();
    let mut log = RaftLog::new(0, 0);
    let mut storage = ready(&log, &mut queue);
    log.push(entry(1, 1));
    log.push(entry(2, 1));
    storage.write(vec![record(entry(1, 1)), record(entry(2, 1))], &log, None, &mut queue);
    let first = take(&mut queue);
    // A new leader replaces entry 2 before the first sync completes.
    log.truncate_after(1);
    log.push(entry(2, 2));
    storage.write(vec![record(entry(2, 2))], &log, Some(1), &mut queue);
    for (id, _) in first {
        storage.handle_disk(id, Ok(DiskOk::Done), &log, &mut queue);
    }
    assert_eq!(storage.synced_index(), 1, "entry 2 of term 1 is not the entry 2 held");
    for (id, _) in take(&mut queue) {
        storage.handle_disk(id, Ok(DiskOk::Done), &log, &mut queue);
    }
    assert_eq!(storage.synced_index(), 2);
}

#[test]
fn after_a_failed_sync_a_later_success_counts_for_nothing_and_the_segment_is_rewritten() {
    let mut queue = OpQueue::default();
    let mut log = RaftLog::new(0, 0);
    let mut storage = ready(&log, &mut queue);
    log.push(entry(1, 1));
    storage.write(vec![record(entry(1, 1))], &log, None, &mut queue);
    log.push(entry(2, 1));
    storage.write(vec![record(entry(2, 1))], &log, None, &mut queue);
    let ops = take(&mut queue);
    assert_eq!(ops.len(), 4, "two appends, two syncs");
    storage.handle_disk(ops[0].0, Ok(DiskOk::Done), &log, &mut queue);
    let failed = storage.handle_disk(ops[1].0, Err(DiskError::Io("EIO".into())), &log, &mut queue);
    let Some(StorageEvent::Failed { file, .. }) = failed else { panic!("{failed:?}") };
    assert_eq!(file, segment_file(1));
    assert!(storage.rewrite_after_failure(&log, HardState::default(), false, &mut queue));
    // fsyncgate: the second sync may report success for pages the kernel dropped.
    storage.handle_disk(ops[2].0, Ok(DiskOk::Done), &log, &mut queue);
    assert_eq!(storage.handle_disk(ops[3].0, Ok(DiskOk::Done), &log, &mut queue), None);
    assert_eq!(storage.synced_index(), 0, "nothing of the failed segment counts");
    // Records written now wait for the rewrite.
    log.push(entry(3, 1));
    storage.write(vec![record(entry(3, 1))], &log, None, &mut queue);
    let rewrite = take(&mut queue);
    assert_eq!(rewrite.len(), 3, "create, append, sync of the new segment only: {rewrite:?}");
    for (id, _) in rewrite {
        storage.handle_disk(id, Ok(DiskOk::Done), &log, &mut queue);
    }
    let [(rename, DiskOp::Rename { to, .. })] = &take(&mut queue)[..] else { panic!("rename") };
    assert_eq!(to, &segment_file(2));
    storage.handle_disk(*rename, Ok(DiskOk::Done), &log, &mut queue);
    assert_eq!(storage.synced_index(), 2, "the rewrite held entries 1 and 2");
    let ops = take(&mut queue);
    let appended: Vec<&FileName> = ops
        .iter()
        .filter(|(_, op)| matches!(op, DiskOp::Append { .. }))
        .map(|(_, op)| op.file())
        .collect();
    assert_eq!(appended, [&segment_file(2)], "entry 3 goes to the new segment");
    for (id, _) in ops {
        storage.handle_disk(id, Ok(DiskOk::Done), &log, &mut queue);
    }
    assert_eq!(storage.synced_index(), 3);
}

#[test]
fn storage_gives_up_after_failures_in_a_row() {
    let mut queue = OpQueue::default();
    let log = RaftLog::new(0, 0);
    let mut storage = ready(&log, &mut queue);
    let mut attempts = 0;
    while storage.rewrite_after_failure(&log, HardState::default(), false, &mut queue) {
        attempts += 1;
        take(&mut queue);
    }
    assert_eq!(attempts, crate::core::limits::RAFT_STORAGE_FAILURES_MAX);
}

#[test]
fn a_snapshot_is_renamed_into_place_only_after_its_sync() {
    let mut queue = OpQueue::default();
    let log = RaftLog::new(0, 0);
    let mut storage = ready(&log, &mut queue);
    let snapshot = SnapshotRecord { index: 5, term: 2, data: Bytes::from("image") };
    storage.store_snapshot(&snapshot, &mut queue);
    assert!(storage.snapshot_busy());
    let ops = take(&mut queue);
    assert_eq!(ops.len(), 3);
    storage.handle_disk(ops[0].0, Ok(DiskOk::Done), &log, &mut queue);
    storage.handle_disk(ops[1].0, Ok(DiskOk::Done), &log, &mut queue);
    let failed = storage.handle_disk(ops[2].0, Err(DiskError::Io("EIO".into())), &log, &mut queue);
    assert_eq!(failed, Some(StorageEvent::SnapshotFailed { index: 5 }));
    assert!(queue.is_empty(), "no rename of an unsynced snapshot");
    storage.store_snapshot(&snapshot, &mut queue);
    for (id, _) in take(&mut queue) {
        storage.handle_disk(id, Ok(DiskOk::Done), &log, &mut queue);
    }
    let [(rename, DiskOp::Rename { to, .. })] = &take(&mut queue)[..] else { panic!("rename") };
    assert_eq!(to, &snapshot_file(5));
    let stored = storage.handle_disk(*rename, Ok(DiskOk::Done), &log, &mut queue);
    assert_eq!(stored, Some(StorageEvent::SnapshotStored { index: 5, term: 2 }));
}

fn open_on(disk: &mut MemDisk) -> Raft {
    let mut queue = OpQueue::default();
    let config = RaftConfig::new(NodeId(1), vec![NodeId(1)], vec![]);
    let mut raft = Raft::open(config, Instant::ZERO, &mut queue);
    while let Some((id, op)) = queue.pop() {
        let result = crate::core::io::DiskDriver::execute(disk, op);
        raft.handle_disk(Instant::ZERO, id, result, &mut queue);
    }
    raft
}

/// A one-voter cluster that took a snapshot and crashed: its snapshot's index and disk.
fn crashed_after_a_snapshot() -> (u64, MemDisk) {
    let mut cluster = Cluster::new(1, 0, 53);
    cluster.member_mut(1).config.snapshot_entries = 2;
    cluster.member_mut(1).snapshots = true;
    cluster.crash(1);
    cluster.start(1);
    assert!(cluster.run_until(std::time::Duration::from_secs(5), |c| c.leader().is_some()));
    for _ in 0..4 {
        cluster.propose(1);
        cluster.run_for(std::time::Duration::from_millis(50));
    }
    let snapshot = cluster.raft(1).log().snapshot_index();
    assert!(snapshot > 0, "a snapshot was taken");
    cluster.crash(1);
    let disk = cluster.member(1).disk.clone();
    (snapshot, disk)
}

#[test]
fn a_damaged_snapshot_stops_raft_and_is_never_restored() {
    let (snapshot, mut disk) = crashed_after_a_snapshot();
    let name = snapshot_file(snapshot);
    disk.corrupt(name.as_str(), 12);
    let raft = open_on(&mut disk);
    assert!(matches!(raft.fatal(), Some(RaftFatal::Corrupt { file, .. }) if *file == name));
}

/// A formatted single voter whose reads of `file` come back with `bits` flipped, one per read.
fn flipping(file: &str, bits: &[usize]) -> MemDisk {
    let mut disk = MemDisk::default();
    format(&mut disk, 1, &[1], &[], true);
    disk.flip_bits.insert(file.to_string(), bits.to_vec());
    disk
}

#[test]
fn two_different_bit_flips_in_reads_of_the_bootstrap_record_are_not_corruption() {
    // Seed 11602: a payload bit, then a bit of the length field (the frame then claims
    // 4,096 more bytes). Both damages are at byte 0 of a one-frame file, but they differ,
    // so neither is on the medium: the third read is clean.
    let mut disk = flipping(BOOTSTRAP_FILE, &[8 * 12 + 1, 20]);
    let raft = open_on(&mut disk);
    assert_eq!(raft.fatal(), None);
    assert!(raft.is_ready());
    assert_eq!(disk.flip_bits[BOOTSTRAP_FILE], Vec::<usize>::new(), "read three times");
}

#[test]
fn the_same_bit_flipped_in_two_reads_of_the_bootstrap_record_is_not_corruption() {
    // A 23-byte record has 184 bits: two flips in a row land on the same one often enough
    // that two agreeing reads cannot stop a node for good.
    let mut disk = flipping(BOOTSTRAP_FILE, &[8 * 12 + 1, 8 * 12 + 1]);
    let raft = open_on(&mut disk);
    assert_eq!(raft.fatal(), None);
    assert!(raft.is_ready());
}

#[test]
fn a_bootstrap_record_damaged_on_the_medium_stops_raft() {
    let mut disk = MemDisk::default();
    format(&mut disk, 1, &[1], &[], true);
    disk.corrupt(BOOTSTRAP_FILE, 12);
    let raft = open_on(&mut disk);
    let file = FileName::new(BOOTSTRAP_FILE);
    assert!(
        matches!(raft.fatal(), Some(RaftFatal::Corrupt { file: f, .. }) if *f == file),
        "{:?}",
        raft.fatal()
    );
    assert!(!raft.is_ready());
}

#[test]
fn reads_of_the_bootstrap_record_that_never_agree_are_a_storage_error_not_corruption() {
    let reads = usize::from(RECOVERY_READ_RETRIES_MAX) + 1;
    let bits: Vec<usize> = (0..reads).map(|read| 8 * 12 + read).collect();
    let mut disk = flipping(BOOTSTRAP_FILE, &bits);
    let raft = open_on(&mut disk);
    let file = FileName::new(BOOTSTRAP_FILE);
    assert!(
        matches!(raft.fatal(), Some(RaftFatal::Storage { file: f, .. }) if *f == file),
        "{:?}",
        raft.fatal()
    );
    assert_eq!(disk.flip_bits[BOOTSTRAP_FILE], Vec::<usize>::new(), "every read tried");
}

#[test]
fn two_different_bit_flips_in_reads_of_a_snapshot_are_not_corruption() {
    let (snapshot, mut disk) = crashed_after_a_snapshot();
    let name = snapshot_file(snapshot);
    disk.flip_bits.insert(name.as_str().to_string(), vec![8 * 12 + 1, 20]);
    let raft = open_on(&mut disk);
    assert_eq!(raft.fatal(), None);
    assert_eq!(raft.log().snapshot_index(), snapshot, "restored from the snapshot");
}

#[test]
fn a_missing_segment_is_fatal_rather_than_a_fresh_start() {
    let mut disk = MemDisk::default();
    format(&mut disk, 1, &[1], &[], true);
    let raft = open_on(&mut disk);
    assert!(raft.is_ready());
    for name in disk.names() {
        if name.starts_with("raft/log-") {
            crate::core::io::DiskDriver::execute(
                &mut disk,
                DiskOp::Remove { file: FileName::new(name) },
            )
            .expect("remove");
        }
    }
    let raft = open_on(&mut disk);
    assert!(matches!(raft.fatal(), Some(RaftFatal::Corrupt { .. })), "{:?}", raft.fatal());
}

/// The same story over real files: format, elect, commit, snapshot, restart, replay.
#[cfg(feature = "runtime")]
#[test]
fn a_single_voter_on_real_files_comes_back_with_its_snapshot_and_log() {
    use crate::core::io::DiskDriver;
    use crate::core::raft::{BootstrapRecord, RaftEvent, format_ops};
    use crate::runtime::disk::FileDisk;

    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut disk = FileDisk::open(dir.path()).expect("a disk");
    let record = BootstrapRecord {
        cluster_id: "files".into(),
        node_id: 1,
        voters: vec![1],
        learners: vec![],
        initial: true,
        directory_id: 1,
    };
    for op in format_ops(&record) {
        disk.execute(op).expect("format");
    }
    let config = RaftConfig::new(NodeId(1), vec![NodeId(1)], vec![]);
    let run = |raft: &mut Raft, disk: &mut FileDisk, queue: &mut OpQueue, now: Instant| {
        while let Some((id, op)) = queue.pop() {
            let result = disk.execute(op);
            raft.handle_disk(now, id, result, queue);
        }
    };
    let mut queue = OpQueue::default();
    let mut raft = Raft::open(config.clone(), Instant::ZERO, &mut queue);
    run(&mut raft, &mut disk, &mut queue, Instant::ZERO);
    assert_eq!(raft.cluster_id(), "files");
    let at = raft.poll_timeout().expect("an election timer");
    raft.handle_timeout(at, &mut queue);
    run(&mut raft, &mut disk, &mut queue, at);
    assert_eq!(raft.role(), super::Role::Leader);
    let mut indexes = Vec::new();
    for payload in ["a", "b", "c"] {
        indexes.push(raft.propose(Bytes::from(payload), &mut queue).expect("leader"));
        run(&mut raft, &mut disk, &mut queue, at);
    }
    assert_eq!(raft.commit_index(), indexes[2]);
    raft.snapshot(indexes[1], Bytes::from("image-ab"), &mut queue).expect("snapshot");
    run(&mut raft, &mut disk, &mut queue, at);
    assert_eq!(raft.log().snapshot_index(), indexes[1]);
    drop(raft);

    let mut disk = FileDisk::open(dir.path()).expect("the disk again");
    let mut queue = OpQueue::default();
    let mut raft = Raft::open(config, at, &mut queue);
    run(&mut raft, &mut disk, &mut queue, at);
    assert!(raft.is_ready(), "{:?}", raft.fatal());
    let events: Vec<RaftEvent> = std::iter::from_fn(|| raft.poll_event()).collect();
    assert_eq!(
        events,
        [
            RaftEvent::Restore { index: indexes[1], term: 1, data: Bytes::from("image-ab") },
            RaftEvent::Committed { index: indexes[2], term: 1, payload: Bytes::from("c") },
            RaftEvent::LeaderChanged { leader: None, term: 1 },
        ],
        "the snapshot, then the committed entry after it, once each"
    );
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("raft"))
        .expect("raft/")
        .map(|e| e.expect("an entry").file_name().into_string().expect("utf-8"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 4, "bootstrap, one segment, one snapshot, the vote: {names:?}");
    assert_eq!(names[0], "bootstrap");
    assert!(names[1].starts_with("log-") && names[2].starts_with("snapshot-"), "{names:?}");
    assert_eq!(names[3], "vote");
}

fn segment_bytes(records: &[WalRecord]) -> Bytes {
    let mut out = bytes::BytesMut::new();
    for record in records {
        crate::core::frame::encode_frame(record, &mut out);
    }
    out.freeze()
}

#[test]
fn entries_written_after_an_installed_snapshot_replay_past_the_gap() {
    use super::message::SegmentHeader;
    use super::recovery::replay_segment;
    let header = SegmentHeader { segment: 3, prev_index: 0, prev_term: 0 };
    // Entries 1-2 of term 1, then a snapshot at 10 (term 3) emptied the log, then 11, 12.
    let bytes = segment_bytes(&[
        WalRecord { kind: Some(WalKind::Header(header)) },
        record(entry(1, 1)),
        record(entry(2, 1)),
        record(entry(11, 3)),
        record(entry(12, 3)),
    ]);
    let replay = replay_segment(&bytes, (10, 3)).expect("a header");
    assert_eq!(replay.valid_bytes, bytes.len(), "nothing cut");
    assert_eq!((replay.prev_index, replay.prev_term), (10, 3));
    assert_eq!(replay.entries.iter().map(|e| e.index).collect::<Vec<_>>(), [11, 12]);
    // Without that snapshot, the gap is damage: the log is cut before it.
    let replay = replay_segment(&bytes, (0, 0)).expect("a header");
    assert_eq!(replay.entries.len(), 2);
    assert!(replay.valid_bytes < bytes.len());
    // An entry going back in term is damage too.
    let bytes = segment_bytes(&[
        WalRecord { kind: Some(WalKind::Header(header)) },
        record(entry(1, 2)),
        record(entry(2, 1)),
    ]);
    let replay = replay_segment(&bytes, (0, 0)).expect("a header");
    assert_eq!(replay.entries.len(), 1);
}

#[test]
fn an_entry_replaces_the_suffix_from_its_index_at_replay() {
    use super::message::SegmentHeader;
    use super::recovery::replay_segment;
    let header = SegmentHeader { segment: 1, prev_index: 0, prev_term: 0 };
    let bytes = segment_bytes(&[
        WalRecord { kind: Some(WalKind::Header(header)) },
        record(entry(1, 1)),
        record(entry(2, 1)),
        record(entry(3, 1)),
        WalRecord {
            kind: Some(WalKind::HardState(HardState {
                term: 2,
                voted_for: 3,
                commit: 1,
                caught_up: true,
            })),
        },
        record(entry(2, 2)),
    ]);
    let replay = replay_segment(&bytes, (0, 0)).expect("a header");
    let terms: Vec<(u64, u64)> = replay.entries.iter().map(|e| (e.index, e.term)).collect();
    assert_eq!(terms, [(1, 1), (2, 2)]);
    assert_eq!(replay.hard_state.term, 2);
}

#[test]
fn a_snapshot_durable_before_its_term_restarts_in_that_term() {
    use super::message::{InstallSnapshot, MessageKind, RaftMessage};
    use rand::SeedableRng;
    let mut disk = MemDisk::default();
    format(&mut disk, 2, &[1, 2, 3], &[], true);
    let config = RaftConfig::new(NodeId(2), vec![NodeId(1), NodeId(2), NodeId(3)], vec![]);
    let mut queue = OpQueue::default();
    let mut raft = Raft::open(config.clone(), Instant::ZERO, &mut queue);
    let run_one = |raft: &mut Raft, disk: &mut MemDisk, queue: &mut OpQueue| {
        let (id, op) = queue.pop().expect("an op");
        let result = crate::core::io::DiskDriver::execute(disk, op);
        raft.handle_disk(Instant::ZERO, id, result, queue);
    };
    while !queue.is_empty() {
        run_one(&mut raft, &mut disk, &mut queue);
    }
    let data = Bytes::from("image");
    let chunk = InstallSnapshot {
        index: 10,
        snapshot_term: 5,
        offset: 0,
        total_bytes: data.len() as u64,
        crc: crc32fast::hash(&data),
        data,
    };
    let message = RaftMessage { term: 5, kind: Some(MessageKind::InstallSnapshot(chunk)) };
    raft.handle_message(Instant::ZERO, NodeId(1), message, &mut queue);
    // The sync of the new term fails; the snapshot's own writes succeed.
    disk.fail_syncs = 1;
    let snapshot = snapshot_file(10);
    while !disk.names().contains(&snapshot.as_str().to_string()) {
        run_one(&mut raft, &mut disk, &mut queue);
    }
    assert_eq!(disk.syncs_failed, 1);
    disk.crash(&mut rand_chacha::ChaCha8Rng::seed_from_u64(1), false);
    let mut queue = OpQueue::default();
    let mut raft = Raft::open(config, Instant::ZERO, &mut queue);
    while !queue.is_empty() {
        run_one(&mut raft, &mut disk, &mut queue);
    }
    assert_eq!(raft.log().snapshot_index(), 10);
    assert_eq!(raft.term(), 5, "not below the term of its own snapshot");
}

#[test]
fn a_full_disk_postpones_the_rewrite_and_never_stops_the_storage() {
    let mut queue = OpQueue::default();
    let mut log = RaftLog::new(0, 0);
    let mut storage = ready(&log, &mut queue);
    for _ in 0..3 * crate::core::limits::RAFT_STORAGE_FAILURES_MAX {
        assert!(storage.rewrite_after_failure(&log, HardState::default(), true, &mut queue));
    }
    assert!(storage.rewrite_pending());
    assert!(take(&mut queue).is_empty(), "nothing is written while the disk is full");
    // Records written meanwhile wait for the rewrite, which holds them.
    log.push(entry(1, 1));
    storage.write(vec![record(entry(1, 1))], &log, None, &mut queue);
    assert!(take(&mut queue).is_empty());
    storage.start_pending_rewrite(&log, HardState::default(), &mut queue);
    assert!(!storage.rewrite_pending());
    let rewrite = take(&mut queue);
    assert_eq!(rewrite.len(), 3, "create, append, sync of the new segment: {rewrite:?}");
    for (id, _) in rewrite {
        storage.handle_disk(id, Ok(DiskOk::Done), &log, &mut queue);
    }
    let [(rename, DiskOp::Rename { .. })] = &take(&mut queue)[..] else { panic!("rename") };
    storage.handle_disk(*rename, Ok(DiskOk::Done), &log, &mut queue);
    assert_eq!(storage.synced_index(), 1, "the rewrite held the entry written meanwhile");
}

/// Runs `raft`'s disk ops on `disk` until none is left.
fn run_disk(raft: &mut Raft, disk: &mut MemDisk, queue: &mut OpQueue) {
    while let Some((id, op)) = queue.pop() {
        let result = crate::core::io::DiskDriver::execute(disk, op);
        raft.handle_disk(Instant::ZERO, id, result, queue);
    }
}

/// Node 2 of three asked for its vote in `term` by `candidate`: whether it granted it.
fn ask_vote(raft: &mut Raft, disk: &mut MemDisk, term: u64, candidate: u32) -> bool {
    use super::RaftEvent;
    use super::message::{MessageKind, RaftMessage, VoteRequest};
    let mut queue = OpQueue::default();
    let request = VoteRequest { last_index: 0, last_term: 0, transfer: false };
    let message = RaftMessage { term, kind: Some(MessageKind::Vote(request)) };
    raft.handle_message(Instant::ZERO, NodeId(candidate), message, &mut queue);
    run_disk(raft, disk, &mut queue);
    let mut granted = None;
    while let Some(event) = raft.poll_event() {
        if let RaftEvent::Send { to, message } = event
            && to == NodeId(candidate)
            && let Some(MessageKind::VoteResponse(response)) = message.kind
        {
            granted = Some(response.granted);
        }
    }
    granted.expect("an answer, once its vote was durable")
}

#[test]
fn a_vote_outlives_damage_that_cuts_it_from_the_segment() {
    // Simulator seed 24839: damage on the medium in the segment's last frames; recovery cut
    // them (it cannot tell them from a torn tail), the hard state of the newest term with
    // them, and the node came back in an older term and voted a second time in a term it
    // had voted in. The vote file keeps the term and vote apart from the segment.
    let mut disk = MemDisk::default();
    format(&mut disk, 2, &[1, 2, 3], &[], true);
    let config = RaftConfig::new(NodeId(2), vec![NodeId(1), NodeId(2), NodeId(3)], vec![]);
    let open = |disk: &mut MemDisk| {
        let mut queue = OpQueue::default();
        let mut raft = Raft::open(config.clone(), Instant::ZERO, &mut queue);
        run_disk(&mut raft, disk, &mut queue);
        assert!(raft.is_ready(), "{:?}", raft.fatal());
        raft
    };
    let mut raft = open(&mut disk);
    assert!(ask_vote(&mut raft, &mut disk, 6, 1), "a fresh voter grants its vote");
    assert!(disk.names().iter().any(|n| n == super::storage::VOTE_FILE));
    let segment = disk.names().into_iter().find(|n| n.starts_with("raft/log-")).expect("a segment");
    // A bit flipped on the medium in the last frame: the hard state of term 6.
    disk.corrupt(&segment, disk.len(&segment) - 2);
    let mut raft = open(&mut disk);
    assert_eq!(raft.term(), 6, "the term does not go back with the cut");
    assert!(!ask_vote(&mut raft, &mut disk, 6, 3), "no second vote in term 6");
    assert!(ask_vote(&mut raft, &mut disk, 7, 3), "a newer term is a new vote");
}

#[test]
fn a_hard_state_counts_as_durable_only_once_the_vote_file_is_in_place() {
    let mut queue = OpQueue::default();
    let log = RaftLog::new(0, 0);
    let mut storage = ready(&log, &mut queue);
    let state = HardState { term: 3, voted_for: 2, commit: 0, caught_up: true };
    let record = WalRecord { kind: Some(WalKind::HardState(state)) };
    let seq = storage.write(vec![record], &log, None, &mut queue);
    let ops = take(&mut queue);
    let files: Vec<&str> = ops.iter().map(|(_, op)| op.file().as_str()).collect();
    assert_eq!(
        files,
        [
            "raft/vote.tmp",
            "raft/vote.tmp",
            "raft/vote.tmp",
            "raft/log-00000000000000000001",
            "raft/log-00000000000000000001"
        ]
    );
    // The segment's sync first: not durable yet, the vote file is not in place.
    for (id, op) in ops.iter().rev() {
        storage.handle_disk(*id, Ok(DiskOk::Done), &log, &mut queue);
        if matches!(op, DiskOp::Sync { file } if file.as_str().starts_with("raft/log-")) {
            assert_eq!(storage.synced_seq(), seq - 1, "the segment alone is not enough");
        }
    }
    let [(rename, DiskOp::Rename { to, .. })] = &take(&mut queue)[..] else { panic!("rename") };
    assert_eq!(to.as_str(), super::storage::VOTE_FILE);
    assert_eq!(storage.synced_seq(), seq - 1);
    storage.handle_disk(*rename, Ok(DiskOk::Done), &log, &mut queue);
    assert_eq!(storage.synced_seq(), seq);
    // The same term and vote again (a new commit index) write the segment only.
    let record = WalRecord { kind: Some(WalKind::HardState(HardState { commit: 1, ..state })) };
    storage.write(vec![record], &log, None, &mut queue);
    assert!(take(&mut queue).iter().all(|(_, op)| op.file().as_str().starts_with("raft/log-")));
}
