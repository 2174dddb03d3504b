//! Scenario tests with story names, on the in-test cluster (`tests_harness.rs`), and exact
//! output tests of single handlers.

use std::time::Duration;

use bytes::Bytes;

use super::message::{
    AppendEntries, AppendEntriesResponse, Entry, MessageKind, RaftMessage, VoteRequest,
    VoteResponse,
};
use super::tests_harness::{Cluster, MemDisk, format};
use super::{
    EntryKind, ProposeError, Raft, RaftConfig, RaftEvent, RaftFatal, Role, TransferError,
    segment_file,
};
use crate::core::io::{DiskDriver, DiskOk, DiskOp, FileName, NodeId};
use crate::core::log::OpQueue;
use crate::core::time::Instant;

const SECOND: Duration = Duration::from_secs(1);

fn elect(cluster: &mut Cluster) -> u32 {
    assert!(cluster.run_until(5 * SECOND, |c| c.leader().is_some()), "no leader elected");
    cluster.leader().expect("elected")
}

/// Proposes at the leader and runs until every member that is up applied it.
fn commit_one(cluster: &mut Cluster) -> u64 {
    let leader = elect(cluster);
    let index = cluster.propose(leader).expect("the leader takes proposals");
    let applied = cluster.run_until(5 * SECOND, |c| {
        c.members.values().filter(|m| m.raft.is_some()).all(|m| m.applied >= index)
    });
    assert!(applied, "entry {index} not applied everywhere");
    index
}

/// Proposes at the leader and runs until the leader applied it.
fn commit_at_leader(cluster: &mut Cluster) -> u64 {
    let leader = elect(cluster);
    let index = cluster.propose(leader).expect("the leader takes proposals");
    assert!(cluster.run_until(5 * SECOND, |c| c.member(leader).applied >= index));
    index
}

#[test]
fn elects_one_leader_per_term() {
    for seed in 0..10 {
        let mut cluster = Cluster::new(5, 0, seed);
        let leader = elect(&mut cluster);
        cluster.run_for(2 * SECOND);
        assert_eq!(cluster.leader(), Some(leader), "a healthy leader stays");
        let term = cluster.raft(leader).term();
        for id in 1..=5 {
            assert_eq!(cluster.raft(id).term(), term);
            assert_eq!(cluster.raft(id).leader(), Some(NodeId(leader)));
        }
        assert_eq!(cluster.leaders.len(), 1, "one election, one leader");
    }
}

#[test]
fn single_voter_elects_itself_and_commits() {
    let mut cluster = Cluster::new(1, 0, 3);
    let index = commit_one(&mut cluster);
    assert_eq!(index, 2, "after the leader-change entry at 1");
    assert_eq!(cluster.member(1).state.get(&2), Some(&Bytes::from("p1")));
}

#[test]
fn prevote_stops_a_partitioned_node_from_disrupting() {
    let mut cluster = Cluster::new(3, 0, 7);
    let leader = elect(&mut cluster);
    let term = cluster.raft(leader).term();
    let outcast = (1..=3).find(|id| *id != leader).expect("a follower");
    cluster.isolate(outcast);
    cluster.run_for(10 * SECOND);
    // Cut off, it never got a majority of pre-votes, so it never raised its term.
    assert_eq!(cluster.raft(outcast).term(), term);
    assert_ne!(cluster.raft(outcast).role(), Role::Candidate);
    cluster.heal();
    cluster.run_for(3 * SECOND);
    assert_eq!(cluster.leader(), Some(leader), "the leader was not deposed");
    assert_eq!(cluster.raft(leader).term(), term);
}

#[test]
fn checkquorum_leader_steps_down_when_cut_off() {
    let mut cluster = Cluster::new(3, 0, 11);
    let old = elect(&mut cluster);
    cluster.isolate(old);
    cluster.run_for(3 * SECOND);
    assert_ne!(cluster.raft(old).role(), Role::Leader, "the cut-off leader stepped down");
    let new = cluster.leader().expect("the majority elected another leader");
    assert_ne!(new, old);
    cluster.heal();
    commit_one(&mut cluster);
}

#[test]
fn committed_entries_survive_leader_crash() {
    let mut cluster = Cluster::new(3, 0, 5);
    let index = commit_one(&mut cluster);
    let payload = cluster.committed[&index].1.clone();
    let old = cluster.leader().expect("a leader");
    cluster.crash(old);
    let new = elect(&mut cluster);
    assert_ne!(new, old);
    commit_one(&mut cluster);
    cluster.start(old);
    let caught_up = cluster.run_until(5 * SECOND, |c| c.member(old).applied > index);
    assert!(caught_up, "the old leader replays and catches up");
    assert_eq!(cluster.member(old).state.get(&index), Some(&payload));
    cluster.check_log_matching();
}

#[test]
fn learners_receive_but_never_vote() {
    let mut cluster = Cluster::new(3, 2, 13);
    let index = commit_one(&mut cluster);
    for learner in [4, 5] {
        assert_eq!(cluster.member(learner).applied, index, "learner {learner} has the log");
        assert!(!cluster.raft(learner).may_vote());
    }
    // With the voters down but one, the learners cannot make a majority.
    let leader = cluster.leader().expect("a leader");
    for voter in (1..=3).filter(|v| *v != leader).collect::<Vec<_>>() {
        cluster.crash(voter);
    }
    cluster.run_for(5 * SECOND);
    assert_eq!(cluster.leader(), None, "a lone voter with learners steps down and stays down");
    for learner in [4, 5] {
        assert_eq!(cluster.raft(learner).role(), Role::Follower);
    }
    assert_eq!(cluster.leaders.keys().count(), 1, "no election succeeded");
}

#[test]
fn conflicting_suffix_is_truncated() {
    let mut cluster = Cluster::new(3, 0, 17);
    commit_one(&mut cluster);
    let old = cluster.leader().expect("a leader");
    // The leader appends entries nobody else gets, then loses leadership.
    cluster.isolate(old);
    let mut orphans = Vec::new();
    for _ in 0..3 {
        orphans.push(cluster.propose(old).expect("still leader"));
    }
    cluster.run_for(3 * SECOND);
    let new = cluster.leader().expect("the majority elected a leader");
    assert_ne!(new, old);
    commit_at_leader(&mut cluster);
    commit_at_leader(&mut cluster);
    cluster.heal();
    let index = commit_one(&mut cluster);
    assert!(cluster.member(old).applied >= index);
    // The orphans were replaced by the new leader's entries.
    let old_log = cluster.raft(old).log();
    let new_log = cluster.raft(new).log();
    for index in orphans {
        assert_eq!(old_log.get(index), new_log.get(index), "entry {index} replaced");
    }
    cluster.check_log_matching();
    cluster.check_applications();
}

#[test]
fn restart_replays_committed_entries_exactly() {
    let mut cluster = Cluster::new(3, 0, 19);
    for _ in 0..5 {
        commit_one(&mut cluster);
    }
    let follower = (1..=3).find(|id| Some(*id) != cluster.leader()).expect("a follower");
    let before = cluster.member(follower).state.clone();
    let reported = cluster.member(follower).reported.clone();
    cluster.crash(follower);
    cluster.start(follower);
    let replayed = cluster.run_until(5 * SECOND, |c| c.member(follower).state.len() >= 5);
    assert!(replayed);
    assert_eq!(cluster.member(follower).state, before, "the same entries, nothing else");
    assert_eq!(cluster.member(follower).reported, reported, "once each, in order");
}

#[test]
fn follower_far_behind_gets_snapshot() {
    let mut cluster = Cluster::new(3, 0, 23);
    for id in 1..=3 {
        cluster.member_mut(id).config.snapshot_entries = 4;
        cluster.member_mut(id).snapshots = true;
    }
    // Restart everyone so the small threshold applies.
    for id in 1..=3 {
        cluster.crash(id);
        cluster.start(id);
    }
    commit_one(&mut cluster);
    let leader = cluster.leader().expect("a leader");
    let behind = (1..=3).find(|id| *id != leader).expect("a follower");
    cluster.crash(behind);
    for _ in 0..12 {
        commit_one(&mut cluster);
    }
    assert!(cluster.raft(leader).log().snapshot_index() > 2, "the leader compacted its log");
    cluster.start(behind);
    let leader_applied = cluster.member(leader).applied;
    let caught_up = cluster.run_until(5 * SECOND, |c| c.member(behind).applied >= leader_applied);
    assert!(caught_up, "the follower caught up through the snapshot");
    assert!(cluster.raft(behind).log().snapshot_index() > 2, "it installed a snapshot");
    cluster.check_applications();
    // And a restart of it comes back from its own snapshot.
    cluster.crash(behind);
    cluster.start(behind);
    assert!(cluster.member(behind).applied >= cluster.raft(behind).log().snapshot_index());
    commit_one(&mut cluster);
    cluster.check_applications();
}

#[test]
fn not_formatted_is_fatal() {
    let mut disk = MemDisk::default();
    let mut queue = OpQueue::default();
    let config = RaftConfig::new(NodeId(1), vec![NodeId(1)], vec![]);
    let mut raft = Raft::open(config, Instant::ZERO, &mut queue);
    while let Some((id, op)) = queue.pop() {
        let result = disk.execute(op);
        raft.handle_disk(Instant::ZERO, id, result, &mut queue);
    }
    assert_eq!(raft.fatal(), Some(&RaftFatal::NotFormatted));
    assert!(!raft.is_ready());
    let events: Vec<RaftEvent> = std::iter::from_fn(|| raft.poll_event()).collect();
    assert_eq!(events, [RaftEvent::Fatal(RaftFatal::NotFormatted.to_string())]);
    assert!(disk.names().is_empty(), "nothing was formatted behind the operator's back");
    assert_eq!(raft.poll_timeout(), None);
}

#[test]
fn bootstrap_that_disagrees_with_the_settings_is_fatal() {
    let mut disk = MemDisk::default();
    format(&mut disk, 1, &[1, 2, 3], &[], true);
    let mut queue = OpQueue::default();
    let config = RaftConfig::new(NodeId(1), vec![NodeId(1), NodeId(2)], vec![]);
    let mut raft = Raft::open(config, Instant::ZERO, &mut queue);
    while let Some((id, op)) = queue.pop() {
        let result = disk.execute(op);
        raft.handle_disk(Instant::ZERO, id, result, &mut queue);
    }
    assert!(matches!(raft.fatal(), Some(RaftFatal::Mismatch { .. })), "{:?}", raft.fatal());
}

#[test]
fn torn_tail_is_cut_at_recovery() {
    let mut cluster = Cluster::new(1, 0, 29);
    for _ in 0..3 {
        commit_one(&mut cluster);
    }
    let last = cluster.raft(1).last_index();
    cluster.crash(1);
    let segment = segment_name(&cluster.member(1).disk);
    // A frame torn by the crash: a length that promises more than is there.
    cluster.member_mut(1).disk.append_garbage_synced(&segment, &[0, 0, 0, 40, 1, 2, 3]);
    cluster.start(1);
    assert!(cluster.raft(1).is_ready());
    assert_eq!(cluster.raft(1).last_index(), last, "every synced entry is back");
    let index = commit_one(&mut cluster);
    assert_eq!(index, last + 2, "a new leader-change entry, then the proposal");
    // The cut file was replaced: the next start reads it clean.
    cluster.crash(1);
    cluster.start(1);
    assert_eq!(cluster.raft(1).last_index(), index);
}

#[test]
fn damaged_segment_header_is_fatal_not_applied() {
    let mut cluster = Cluster::new(1, 0, 31);
    commit_one(&mut cluster);
    cluster.crash(1);
    let segment = segment_name(&cluster.member(1).disk);
    cluster.member_mut(1).disk.corrupt(&segment, 9);
    cluster.start(1);
    let raft = cluster.raft(1);
    assert!(matches!(raft.fatal(), Some(RaftFatal::Corrupt { .. })), "{:?}", raft.fatal());
    assert!(cluster.member(1).state.is_empty(), "nothing applied");
}

#[test]
fn the_same_bit_flipped_twice_in_the_segment_header_does_not_stop_raft() {
    let mut cluster = Cluster::new(1, 0, 31);
    let index = commit_one(&mut cluster);
    cluster.crash(1);
    let disk = &mut cluster.member_mut(1).disk;
    let segment = segment_name(disk);
    // A bit of the header's length field, flipped alike on two reads: a damaged header stops
    // Raft for good, so it takes a third read to believe it.
    disk.flip_bits.insert(segment, vec![20, 20]);
    cluster.start(1);
    assert_eq!(cluster.raft(1).fatal(), None);
    assert_eq!(cluster.raft(1).last_index(), index);
}

#[test]
fn reads_of_a_segment_header_that_never_agree_are_a_storage_error_not_corruption() {
    let mut cluster = Cluster::new(1, 0, 31);
    commit_one(&mut cluster);
    cluster.crash(1);
    let disk = &mut cluster.member_mut(1).disk;
    let segment = segment_name(disk);
    let reads = usize::from(crate::core::limits::RECOVERY_READ_RETRIES_MAX) + 1;
    disk.flip_bits.insert(segment, (16..16 + reads).collect());
    cluster.start(1);
    let fatal = cluster.raft(1).fatal();
    assert!(matches!(fatal, Some(RaftFatal::Storage { .. })), "{fatal:?}");
}

#[test]
fn a_bit_flipped_in_transit_does_not_cut_the_log() {
    let mut cluster = Cluster::new(1, 0, 37);
    for _ in 0..3 {
        commit_one(&mut cluster);
    }
    let last = cluster.raft(1).last_index();
    cluster.crash(1);
    // The first read of the segment comes back damaged in the middle; the second is clean.
    cluster.member_mut(1).disk.flip_reads = 1;
    cluster.start(1);
    assert_eq!(cluster.raft(1).last_index(), last, "nothing cut");
    // Flipped the same way on two reads in a row, the damage is believed: the log is cut
    // there (the entries after it are not acknowledged by this node any more).
    cluster.crash(1);
    cluster.member_mut(1).disk.flip_reads = 2;
    cluster.start(1);
    assert!(cluster.raft(1).last_index() < last, "cut at the damage");
    assert!(cluster.raft(1).is_ready());
}

#[test]
fn two_different_bit_flips_in_one_frame_do_not_cut_the_log() {
    let mut cluster = Cluster::new(1, 0, 37);
    for _ in 0..3 {
        commit_one(&mut cluster);
    }
    let last = cluster.raft(1).last_index();
    cluster.crash(1);
    let disk = &mut cluster.member_mut(1).disk;
    let segment = segment_name(disk);
    let read = DiskOp::Read { file: FileName::new(segment.as_str()), pos: 0, len: 1 << 20 };
    let Ok(DiskOk::Data(bytes)) = disk.execute(read) else { panic!("the segment reads") };
    // Two bits of one byte in the middle: the same frame fails on both reads, at the same
    // place, but with different bytes, so neither read is believed.
    let middle = bytes.len() / 2 * 8;
    disk.flip_bits.insert(segment, vec![middle, middle + 3]);
    cluster.start(1);
    assert_eq!(cluster.raft(1).last_index(), last, "nothing cut");
}

#[test]
fn failed_sync_is_never_acknowledged_and_the_log_is_rewritten() {
    let mut cluster = Cluster::new(3, 0, 41);
    commit_one(&mut cluster);
    let leader = cluster.leader().expect("a leader");
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let other = (1..=3).find(|id| *id != leader && *id != follower).expect("another");
    cluster.crash(other);
    // The follower's next sync fails: the entry must not count for it until rewritten.
    cluster.member_mut(follower).disk.fail_syncs = 1;
    let index = cluster.propose(leader).expect("leader");
    let committed = cluster.run_until(3 * SECOND, |c| c.raft(leader).commit_index() >= index);
    assert!(committed, "committed once the follower rewrote its log");
    assert!(cluster.raft(follower).synced_index() >= index);
    let segments: Vec<String> = cluster
        .member(follower)
        .disk
        .names()
        .into_iter()
        .filter(|name| name.starts_with("raft/log-"))
        .collect();
    assert_eq!(segments.len(), 1, "the old segment was replaced: {segments:?}");
    assert_ne!(segments[0], segment_file(0).as_str());
}

/// An unformatted-looking member (voters 1..=3) as a bare Raft driven by hand.
fn bare(id: u32, initial: bool) -> (Raft, MemDisk, OpQueue) {
    let mut disk = MemDisk::default();
    format(&mut disk, id, &[1, 2, 3], &[], initial);
    let mut queue = OpQueue::default();
    let config = RaftConfig::new(NodeId(id), vec![NodeId(1), NodeId(2), NodeId(3)], vec![]);
    let mut raft = Raft::open(config, Instant::ZERO, &mut queue);
    run_all(&mut raft, &mut disk, &mut queue);
    (raft, disk, queue)
}

fn run_all(raft: &mut Raft, disk: &mut MemDisk, queue: &mut OpQueue) {
    while let Some((id, op)) = queue.pop() {
        let result = disk.execute(op);
        raft.handle_disk(Instant::ZERO, id, result, queue);
    }
}

fn sends(raft: &mut Raft) -> Vec<(NodeId, RaftMessage)> {
    std::iter::from_fn(|| raft.poll_event())
        .filter_map(|event| match event {
            RaftEvent::Send { to, message } => Some((to, message)),
            _ => None,
        })
        .collect()
}

#[test]
fn vote_is_granted_only_once_synced() {
    let (mut raft, mut disk, mut queue) = bare(1, true);
    sends(&mut raft);
    let request = RaftMessage {
        term: 1,
        kind: Some(MessageKind::Vote(VoteRequest { last_index: 0, last_term: 0, transfer: false })),
    };
    raft.handle_message(Instant::ZERO, NodeId(2), request, &mut queue);
    assert_eq!(sends(&mut raft), [], "nothing leaves before the vote is durable");
    assert_eq!(raft.term(), 1);
    run_all(&mut raft, &mut disk, &mut queue);
    let granted = RaftMessage {
        term: 1,
        kind: Some(MessageKind::VoteResponse(VoteResponse { granted: true })),
    };
    assert_eq!(sends(&mut raft), [(NodeId(2), granted)]);
    // Another candidate of the same term gets a refusal.
    let request = RaftMessage {
        term: 1,
        kind: Some(MessageKind::Vote(VoteRequest { last_index: 5, last_term: 1, transfer: false })),
    };
    raft.handle_message(Instant::ZERO, NodeId(3), request, &mut queue);
    let refused = RaftMessage {
        term: 1,
        kind: Some(MessageKind::VoteResponse(VoteResponse { granted: false })),
    };
    assert_eq!(sends(&mut raft), [(NodeId(3), refused)]);
}

/// Makes a bare member leader of term 1 with node 2's vote; returns its leader-change index.
fn make_leader(raft: &mut Raft, disk: &mut MemDisk, queue: &mut OpQueue) -> u64 {
    let timeout = raft.poll_timeout().expect("an election timer");
    raft.handle_timeout(timeout, queue);
    let pre = RaftMessage {
        term: 1,
        kind: Some(MessageKind::PreVoteResponse(VoteResponse { granted: true })),
    };
    raft.handle_message(timeout, NodeId(2), pre, queue);
    assert_eq!(raft.role(), Role::Candidate);
    run_all(raft, disk, queue);
    let vote = RaftMessage {
        term: 1,
        kind: Some(MessageKind::VoteResponse(VoteResponse { granted: true })),
    };
    raft.handle_message(timeout, NodeId(2), vote, queue);
    assert_eq!(raft.role(), Role::Leader);
    sends(raft);
    raft.last_index()
}

#[test]
fn leader_counts_itself_only_after_sync() {
    let (mut raft, mut disk, mut queue) = bare(1, true);
    let change = make_leader(&mut raft, &mut disk, &mut queue);
    run_all(&mut raft, &mut disk, &mut queue);
    let index = raft.propose(Bytes::from_static(b"x"), &mut queue).expect("leader");
    assert_eq!(index, change + 1);
    let ack = |index| RaftMessage {
        term: 1,
        kind: Some(MessageKind::AppendEntriesResponse(AppendEntriesResponse {
            success: true,
            match_index: index,
            ..Default::default()
        })),
    };
    // Node 2 acknowledges; the leader's own write of the entry is not synced yet.
    raft.handle_message(Instant::ZERO, NodeId(2), ack(index), &mut queue);
    assert_eq!(raft.commit_index(), change, "one durable copy of {index} is not a majority");
    run_all(&mut raft, &mut disk, &mut queue);
    assert_eq!(raft.commit_index(), index, "its own sync completed: two of three");
    let committed: Vec<RaftEvent> = std::iter::from_fn(|| raft.poll_event())
        .filter(|event| matches!(event, RaftEvent::Committed { .. }))
        .collect();
    assert_eq!(
        committed,
        [RaftEvent::Committed { index, term: 1, payload: Bytes::from_static(b"x") }]
    );
}

#[test]
fn stale_rejection_does_not_move_next_back_nor_match() {
    let (mut raft, mut disk, mut queue) = bare(1, true);
    let change = make_leader(&mut raft, &mut disk, &mut queue);
    run_all(&mut raft, &mut disk, &mut queue);
    let success = RaftMessage {
        term: 1,
        kind: Some(MessageKind::AppendEntriesResponse(AppendEntriesResponse {
            success: true,
            match_index: change,
            ..Default::default()
        })),
    };
    raft.handle_message(Instant::ZERO, NodeId(2), success.clone(), &mut queue);
    assert_eq!(raft.commit_index(), change);
    sends(&mut raft);
    // A rejection of an older probe arrives late: ignored.
    let stale = RaftMessage {
        term: 1,
        kind: Some(MessageKind::AppendEntriesResponse(AppendEntriesResponse {
            success: false,
            reject_index: 0,
            conflict_index: 1,
            ..Default::default()
        })),
    };
    raft.handle_message(Instant::ZERO, NodeId(2), stale, &mut queue);
    assert_eq!(sends(&mut raft), [], "no probe from the start of the log");
    // An old success with a lower match changes nothing either.
    let old = RaftMessage {
        term: 1,
        kind: Some(MessageKind::AppendEntriesResponse(AppendEntriesResponse {
            success: true,
            match_index: 0,
            ..Default::default()
        })),
    };
    raft.handle_message(Instant::ZERO, NodeId(2), old, &mut queue);
    assert_eq!(raft.progress[&NodeId(2)].matched, change);
    raft.invariants();
}

#[test]
fn follower_answers_success_only_for_synced_entries() {
    let (mut raft, mut disk, mut queue) = bare(2, true);
    sends(&mut raft);
    let entry = Entry {
        index: 1,
        term: 1,
        kind: EntryKind::LeaderChange as i32,
        leader: 1,
        ..Default::default()
    };
    let append = RaftMessage {
        term: 1,
        kind: Some(MessageKind::AppendEntries(AppendEntries {
            prev_index: 0,
            prev_term: 0,
            commit: 0,
            leader_last_index: 1,
            entries: vec![entry],
        })),
    };
    raft.handle_message(Instant::ZERO, NodeId(1), append, &mut queue);
    assert_eq!(sends(&mut raft), [], "the entry is not synced yet");
    run_all(&mut raft, &mut disk, &mut queue);
    let ok = RaftMessage {
        term: 1,
        kind: Some(MessageKind::AppendEntriesResponse(AppendEntriesResponse {
            success: true,
            match_index: 1,
            ..Default::default()
        })),
    };
    assert_eq!(sends(&mut raft), [(NodeId(1), ok)]);
    assert_eq!(raft.leader(), Some(NodeId(1)));
}

#[test]
fn a_follower_whose_sync_is_in_flight_answers_with_what_is_durable() {
    let (mut raft, mut disk, mut queue) = bare(2, true);
    sends(&mut raft);
    let entry = |index| Entry {
        index,
        term: 1,
        kind: EntryKind::LeaderChange as i32,
        leader: 1,
        ..Default::default()
    };
    let append = |prev_index, entries: Vec<Entry>| RaftMessage {
        term: 1,
        kind: Some(MessageKind::AppendEntries(AppendEntries {
            prev_index,
            prev_term: u64::from(prev_index > 0),
            commit: 0,
            leader_last_index: 2,
            entries,
        })),
    };
    let answer = |match_index| {
        let response = AppendEntriesResponse { success: true, match_index, ..Default::default() };
        (
            NodeId(1),
            RaftMessage { term: 1, kind: Some(MessageKind::AppendEntriesResponse(response)) },
        )
    };
    raft.handle_message(Instant::ZERO, NodeId(1), append(0, vec![entry(1)]), &mut queue);
    run_all(&mut raft, &mut disk, &mut queue);
    assert_eq!(sends(&mut raft), [answer(1)]);
    // Entry 2 is written, its sync not done: the answer claims entry 1 only, at once.
    raft.handle_message(Instant::ZERO, NodeId(1), append(1, vec![entry(2)]), &mut queue);
    assert_eq!(sends(&mut raft), [answer(1)]);
    // So does a heartbeat meanwhile.
    raft.handle_message(Instant::ZERO, NodeId(1), append(2, vec![]), &mut queue);
    assert_eq!(sends(&mut raft), [answer(1)]);
    // Once synced, both appends are acknowledged in full.
    run_all(&mut raft, &mut disk, &mut queue);
    assert_eq!(sends(&mut raft), [answer(2), answer(2)]);
}

#[test]
fn wiped_voter_does_not_vote_until_caught_up() {
    // Voters 1, 2, 3. Entries commit on 1 and 2 while 3 is away; then 2 is wiped.
    let run = |rejoin_initial: bool| {
        let mut cluster = Cluster::new(3, 0, 43);
        cluster.check_completeness = !rejoin_initial;
        let leader = elect(&mut cluster);
        let [a, b] = <[u32; 2]>::try_from((1..=3).filter(|id| *id != leader).collect::<Vec<_>>())
            .expect("two followers");
        let stale = b;
        cluster.crash(stale);
        let index = cluster.propose(leader).expect("leader");
        assert!(cluster.run_until(3 * SECOND, |c| c.raft(leader).commit_index() >= index));
        let payload = cluster.committed.get(&index).map(|(_, p)| p.clone());
        // `a` (which holds the entry) is wiped and formatted again; the leader dies.
        cluster.crash(a);
        cluster.crash(leader);
        let disk = &mut cluster.member_mut(a).disk;
        disk.wipe();
        format(disk, a, &[1, 2, 3], &[], rejoin_initial);
        cluster.start(a);
        cluster.start(stale);
        cluster.run_for(5 * SECOND);
        (cluster, stale, index, payload)
    };
    // Formatted as if new (the rule bypassed): the stale node wins with the wiped node's
    // vote and the committed entry is overwritten. This is the outcome the rule prevents.
    let (cluster, stale, index, _) = run(true);
    assert_eq!(cluster.leader(), Some(stale), "the stale node was elected");
    let entry = cluster.raft(stale).log().get(index).cloned();
    assert!(entry.is_none_or(|e| e.kind == EntryKind::LeaderChange as i32), "entry lost");
    // Formatted to rejoin: no vote for the stale node, no leader until the old one returns.
    let (mut cluster, stale, index, payload) = run(false);
    assert_eq!(cluster.leader(), None, "nobody can be elected without the entry's holder");
    let old_leader = (1..=3).find(|id| cluster.member(*id).raft.is_none()).expect("down");
    cluster.start(old_leader);
    let done = cluster.run_until(5 * SECOND, |c| c.member(stale).applied >= index);
    assert!(done, "the cluster recovers once the holder is back");
    assert_eq!(cluster.member(stale).state.get(&index), payload.as_ref());
    let wiped = (1..=3).find(|id| *id != stale && *id != old_leader).expect("the wiped one");
    let caught_up = cluster.run_until(5 * SECOND, |c| c.raft(wiped).may_vote());
    assert!(caught_up, "the wiped voter votes again once caught up");
    let raft = cluster.raft(wiped);
    let leader = raft.leader().expect("it follows a leader");
    assert_eq!(raft.hard.voted_for, leader.0 + 1, "its vote in this term is the leader's");
    // The flag is durable (once synced): after a restart it still votes.
    cluster.run_for(SECOND / 10);
    cluster.crash(wiped);
    cluster.start(wiped);
    assert!(cluster.raft(wiped).may_vote());
}

#[test]
fn leader_never_commits_an_old_term_entry_by_counting_replicas() {
    // Node 1 holds entry 1 of term 1 from a leader that died before committing it.
    let (mut raft, mut disk, mut queue) = bare(1, true);
    let entry = Entry { index: 1, term: 1, kind: EntryKind::Normal as i32, ..Default::default() };
    let append = RaftMessage {
        term: 1,
        kind: Some(MessageKind::AppendEntries(AppendEntries {
            prev_index: 0,
            prev_term: 0,
            commit: 0,
            leader_last_index: 1,
            entries: vec![entry],
        })),
    };
    raft.handle_message(Instant::ZERO, NodeId(2), append, &mut queue);
    run_all(&mut raft, &mut disk, &mut queue);
    sends(&mut raft);
    // It becomes leader of term 2 with node 3's vote and appends its leader change at 2.
    let timeout = raft.poll_timeout().expect("an election timer");
    raft.handle_timeout(timeout, &mut queue);
    let pre = RaftMessage {
        term: 2,
        kind: Some(MessageKind::PreVoteResponse(VoteResponse { granted: true })),
    };
    raft.handle_message(timeout, NodeId(3), pre, &mut queue);
    run_all(&mut raft, &mut disk, &mut queue);
    let vote = RaftMessage {
        term: 2,
        kind: Some(MessageKind::VoteResponse(VoteResponse { granted: true })),
    };
    raft.handle_message(timeout, NodeId(3), vote, &mut queue);
    assert_eq!((raft.role(), raft.term(), raft.last_index()), (Role::Leader, 2, 2));
    run_all(&mut raft, &mut disk, &mut queue);
    // Node 3 acknowledges entry 1 only: a majority holds it, but it is of term 1, and
    // counting replicas commits only entries of the leader's own term (§3.6.2, Figure 3.7).
    let ack = |index| RaftMessage {
        term: 2,
        kind: Some(MessageKind::AppendEntriesResponse(AppendEntriesResponse {
            success: true,
            match_index: index,
            ..Default::default()
        })),
    };
    raft.handle_message(timeout, NodeId(3), ack(1), &mut queue);
    assert_eq!(raft.commit_index(), 0);
    raft.handle_message(timeout, NodeId(3), ack(2), &mut queue);
    assert_eq!(raft.commit_index(), 2, "entry 1 commits through the leader's own entry");
}

#[test]
fn a_leader_keeps_its_place_while_the_followers_disks_are_slow() {
    // Both followers' syncs stall (their disks write back other data): an entry proposed
    // meanwhile cannot commit, but the followers still answer every append with what is
    // durable, so CheckQuorum hears a majority and the leader stays.
    let mut cluster = Cluster::new(3, 0, 5);
    commit_one(&mut cluster);
    let leader = elect(&mut cluster);
    let term = cluster.raft(leader).term();
    let followers: Vec<u32> = (1..=3).filter(|id| *id != leader).collect();
    for id in &followers {
        cluster.member_mut(*id).disk_held = true;
    }
    let index = cluster.propose(leader).expect("the leader takes proposals");
    cluster.run_for(5 * SECOND);
    assert_eq!(cluster.leader(), Some(leader), "the leader stays");
    assert_eq!(cluster.raft(leader).term(), term, "and its term did not move");
    assert!(cluster.raft(leader).commit_index() < index, "nothing commits before a follower syncs");
    for id in &followers {
        cluster.member_mut(*id).disk_held = false;
    }
    assert!(cluster.run_until(5 * SECOND, |c| c.member(leader).applied >= index));
}

#[test]
fn followers_that_hear_the_leader_do_not_help_depose_it() {
    // Only the link between the leader and one follower is cut: that follower times out
    // and asks the other follower, which still hears the leader and refuses (§4.2.3).
    let mut cluster = Cluster::new(3, 0, 47);
    commit_one(&mut cluster); // Every log is as long: only stickiness can refuse.
    let leader = elect(&mut cluster);
    let term = cluster.raft(leader).term();
    let cut = (1..=3).find(|id| *id != leader).expect("a follower");
    cluster.cut.insert((leader.min(cut), leader.max(cut)));
    cluster.run_for(5 * SECOND);
    assert_eq!(cluster.leader(), Some(leader), "the leader stays");
    assert_eq!(cluster.raft(leader).term(), term, "and its term did not move");
    assert_eq!(cluster.raft(cut).term(), term, "no pre-vote majority, so no new term");
    assert_ne!(cluster.raft(cut).role(), Role::Leader);
    commit_at_leader(&mut cluster);
}

#[test]
fn leadership_transfer_hands_over_to_a_caught_up_voter() {
    let mut cluster = Cluster::new(3, 1, 59);
    commit_one(&mut cluster);
    let old = cluster.leader().expect("a leader");
    let term = cluster.raft(old).term();
    let to = (1..=3).find(|id| *id != old).expect("a follower");
    let now = cluster.now;
    let member = cluster.member_mut(old);
    let raft = member.raft.as_mut().expect("up");
    assert_eq!(raft.transfer_leadership(now, NodeId(4)), Err(TransferError::NotAVoter(NodeId(4))));
    raft.transfer_leadership(now, NodeId(to)).expect("the leader hands over");
    let refused = raft.propose(Bytes::from_static(b"late"), &mut member.queue);
    assert_eq!(refused, Err(ProposeError::Transferring { to: NodeId(to) }));
    let moved = cluster.run_until(SECOND, |c| c.leader() == Some(to));
    assert!(moved, "the target took over at once, despite leader stickiness");
    assert_eq!(cluster.raft(to).term(), term + 1);
    assert_eq!(cluster.raft(old).role(), Role::Follower);
    commit_one(&mut cluster);
}

#[test]
fn proposals_are_bounded_while_commit_lags() {
    let mut cluster = Cluster::new(3, 0, 61);
    commit_one(&mut cluster);
    let leader = cluster.leader().expect("a leader");
    for id in (1..=3).filter(|id| *id != leader).collect::<Vec<_>>() {
        cluster.crash(id);
    }
    let member = cluster.member_mut(leader);
    let raft = member.raft.as_mut().expect("up");
    let big = Bytes::from(vec![0; crate::core::limits::RAFT_ENTRY_BYTES_MAX + 1]);
    assert_eq!(raft.propose(big, &mut member.queue), Err(ProposeError::TooLarge(1 << 20 | 1)));
    let mut accepted = 0;
    let refused = loop {
        match raft.propose(Bytes::from_static(b"x"), &mut member.queue) {
            Ok(_) => accepted += 1,
            Err(error) => break error,
        }
    };
    assert_eq!(refused, ProposeError::Backlog);
    assert_eq!(accepted, crate::core::limits::RAFT_UNCOMMITTED_ENTRIES_MAX);
}

#[test]
fn leader_whose_sync_fails_steps_down_and_the_cluster_goes_on() {
    let mut cluster = Cluster::new(3, 0, 67);
    commit_one(&mut cluster);
    let leader = cluster.leader().expect("a leader");
    let term = cluster.raft(leader).term();
    cluster.member_mut(leader).disk.fail_syncs = 1;
    cluster.propose(leader);
    cluster.run_for(SECOND / 10);
    let raft = cluster.raft(leader);
    assert!(raft.role() != Role::Leader || raft.term() > term, "the leader stepped down");
    assert_eq!(cluster.member(leader).disk.syncs_failed, 1);
    commit_one(&mut cluster);
    cluster.check_log_matching();
    cluster.check_applications();
}

#[test]
fn follower_wiped_under_a_running_leader_is_brought_back() {
    // The leader knows the follower matched its log; after the wipe the follower's rejection
    // says otherwise, and the leader must believe it rather than wait forever.
    let mut cluster = Cluster::new(3, 0, 71);
    for _ in 0..3 {
        commit_one(&mut cluster);
    }
    let leader = cluster.leader().expect("a leader");
    let term = cluster.raft(leader).term();
    let wiped = (1..=3).find(|id| *id != leader).expect("a follower");
    cluster.wipe(wiped);
    cluster.start(wiped);
    assert!(!cluster.raft(wiped).may_vote());
    let index = commit_one(&mut cluster);
    assert_eq!(cluster.raft(leader).term(), term, "the same leader all along");
    assert!(cluster.member(wiped).applied >= index);
    assert!(cluster.run_until(SECOND, |c| c.raft(wiped).may_vote()), "caught up");
    cluster.check_applications();
}

/// The leader's process dies and both followers' transports see its connections close:
/// they elect a new leader before either one's election timeout could have fired (at the
/// earliest `election_timeout_min` after the leader's last heartbeat). Two followers that
/// draw nearly the same delay both win their pre-votes and split the real vote, and then
/// wait a whole election timeout, as Raft does after any split: rare with real latencies,
/// less rare with this harness's 5 ms steps, so most seeds, not all, must be early.
#[test]
fn followers_told_their_leader_died_elect_before_an_election_timeout() {
    let config = RaftConfig::new(NodeId(1), Vec::new(), Vec::new());
    let early = config.election_timeout_min - config.heartbeat_interval;
    let mut early_elections = 0;
    for seed in 0..20 {
        let mut cluster = Cluster::new(3, 0, seed);
        let leader = elect(&mut cluster);
        cluster.run_for(SECOND);
        let term = cluster.raft(leader).term();
        cluster.crash(leader);
        for id in (1..=3).filter(|id| *id != leader) {
            cluster.peer_down(id, leader);
        }
        let new_leader = |c: &Cluster| c.leader().is_some_and(|l| l != leader);
        if cluster.run_until(early, new_leader) {
            early_elections += 1;
        }
        assert!(cluster.run_until(3 * SECOND, new_leader), "seed {seed}: no new leader");
        let elected = cluster.leader().expect("elected");
        assert!(cluster.raft(elected).term() > term);
    }
    assert!(early_elections >= 15, "{early_elections} of 20 elections were early");
}

/// A follower wrongly told its leader's connections closed asks for pre-votes, which the
/// others refuse while they hear the leader: the leader keeps its term.
#[test]
fn a_false_alarm_about_a_live_leader_deposes_nobody() {
    for seed in 0..20 {
        let mut cluster = Cluster::new(3, 0, seed);
        let leader = elect(&mut cluster);
        cluster.run_for(SECOND);
        let term = cluster.raft(leader).term();
        let follower = (1..=3).find(|id| *id != leader).expect("a follower");
        cluster.peer_down(follower, leader);
        cluster.run_for(2 * SECOND);
        assert_eq!(cluster.leader(), Some(leader), "seed {seed}");
        for id in 1..=3 {
            assert_eq!(cluster.raft(id).term(), term, "seed {seed}: node {id}'s term");
            assert_eq!(cluster.raft(id).leader(), Some(NodeId(leader)), "seed {seed}");
        }
    }
}

/// The name of the (one) Raft log segment on `disk`.
fn segment_name(disk: &MemDisk) -> String {
    disk.names().into_iter().find(|name| name.starts_with("raft/log-")).expect("a segment")
}

#[test]
fn a_follower_told_to_cut_a_committed_entry_stops_instead() {
    // One voter and one learner: damage on the voter's disk early in its segment takes
    // committed entries with it (recovery cannot tell it from a torn tail), and nothing
    // else holds a vote to cover them. The learner, told to replace what it applied, stops.
    let mut cluster = Cluster::new(1, 1, 41);
    let mut last = 0;
    for _ in 0..4 {
        last = commit_one(&mut cluster);
    }
    assert_eq!(cluster.member(2).applied, last);
    cluster.crash(1);
    let segment = segment_name(&cluster.member(1).disk);
    cluster.member_mut(1).disk.corrupt(&segment, 40);
    // The voter now breaks leader completeness, which is what the learner must detect.
    cluster.check_completeness = false;
    cluster.start(1);
    cluster.run_for(5 * SECOND);
    assert!(cluster.raft(1).last_index() < last, "the voter lost committed entries");
    match cluster.raft(2).fatal() {
        Some(RaftFatal::CommittedConflict { commit, .. }) => assert_eq!(*commit, last),
        other => panic!("the learner should stop over the conflict, not {other:?}"),
    }
    assert_eq!(cluster.member(2).applied, last, "nothing it applied was taken back");
}
