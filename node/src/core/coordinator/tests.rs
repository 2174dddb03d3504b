//! The coordinator against an in-memory offsets partition: commits, loading by a new leader,
//! appends lost to a leader change, rebuilds, tombstones, and the checks of a commit.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rand::Rng;

use super::*;
use crate::core::group::{JoinRequest, JoinResponse, LeaveMember, SyncRequest};
use crate::core::log::batch::{BatchScan, patch_batch};

const PARTITIONS: i32 = 4;

/// One offsets partition's log, as the replica would hold it.
#[derive(Debug, Default, Clone)]
struct Log {
    batches: Vec<(u64, Bytes)>,
    log_end: u64,
}

impl Log {
    fn append(&mut self, mut batch: BytesMut, leader_epoch: i32) {
        let (_, header) = BatchScan::new(&batch, usize::MAX).next().expect("a batch");
        patch_batch(&mut batch, self.log_end, leader_epoch);
        self.batches.push((self.log_end, batch.freeze()));
        self.log_end += header.record_count as u64;
    }

    /// Whole batches from `from` below `high_watermark`, as a consumer fetch returns them.
    fn read(&self, from: u64, high_watermark: u64) -> Bytes {
        let mut out = BytesMut::new();
        for (base, batch) in &self.batches {
            let (_, header) = BatchScan::new(batch, usize::MAX).next().expect("a batch");
            if header.next_offset() as u64 > from && (header.next_offset() as u64) <= high_watermark
            {
                assert!(*base <= high_watermark);
                out.extend_from_slice(batch);
            }
        }
        out.freeze()
    }
}

/// A coordinator, the log of its partition `PARTITION`s, and the answers it gave.
struct Harness {
    coordinator: Coordinator,
    logs: BTreeMap<i32, Log>,
    /// Appends waiting for an acknowledgement (when not acknowledged at once).
    pending: Vec<(u64, i32, BytesMut, i32)>,
    /// Acknowledge appends at once.
    auto_ack: bool,
    /// Reads see the log up to here (per partition), `None`: up to its end.
    high_watermark: BTreeMap<i32, u64>,
    replies: Vec<(u64, CoordinatorResponse)>,
    now: Instant,
    next_token: u64,
}

impl Harness {
    fn new(seed: u64) -> Harness {
        let config = CoordinatorConfig { partitions: PARTITIONS, seed, ..Default::default() };
        Harness {
            coordinator: Coordinator::new(config),
            logs: BTreeMap::new(),
            pending: Vec::new(),
            auto_ack: true,
            high_watermark: BTreeMap::new(),
            replies: Vec::new(),
            now: Instant::from_millis(1_700_000_000_000),
            next_token: 0,
        }
    }

    /// The same logs, led by a new coordinator in `leader_epoch`.
    fn new_leader(&self, seed: u64, leader_epoch: i32) -> Harness {
        let mut next = Harness::new(seed);
        next.logs = self.logs.clone();
        next.now = self.now + Duration::from_secs(1);
        for partition in 0..PARTITIONS {
            let end = next.logs.get(&partition).map_or(0, |log| log.log_end);
            next.coordinator.become_leader(next.now, partition, leader_epoch, 0, end);
            next.pump();
        }
        next
    }

    fn lead_all(&mut self, leader_epoch: i32) {
        for partition in 0..PARTITIONS {
            self.coordinator.become_leader(self.now, partition, leader_epoch, 0, 0);
        }
        self.pump();
    }

    fn pump(&mut self) {
        while let Some(output) = self.coordinator.poll_output() {
            match output {
                CoordinatorOutput::Reply { token, response } => {
                    self.replies.push((token, response))
                }
                CoordinatorOutput::Append { partition, leader_epoch, append, batch } => {
                    if self.auto_ack {
                        self.logs.entry(partition).or_default().append(batch, leader_epoch);
                        self.coordinator.handle_append(append, Ok(()));
                    } else {
                        self.pending.push((append, partition, batch, leader_epoch));
                    }
                }
                CoordinatorOutput::Read { partition, read, offset, .. } => {
                    let log = self.logs.entry(partition).or_default();
                    let hw = self.high_watermark.get(&partition).copied().unwrap_or(log.log_end);
                    let records = log.read(offset, hw);
                    let outcome = ReadOutcome::Read { records, high_watermark: hw };
                    self.coordinator.handle_read(self.now, read, outcome);
                }
            }
        }
    }

    fn request(&mut self, request: CoordinatorRequest) -> u64 {
        self.next_token += 1;
        let token = self.next_token;
        self.coordinator.handle_request(self.now, token, request);
        self.pump();
        token
    }

    fn reply(&self, token: u64) -> Option<&CoordinatorResponse> {
        self.replies.iter().find(|(t, _)| *t == token).map(|(_, response)| response)
    }

    fn commit(&mut self, group: &str, offsets: &[(i32, i64)]) -> u64 {
        self.request(CoordinatorRequest::Commit(simple_commit(group, offsets)))
    }

    fn fetch(&mut self, group: &str) -> CoordinatorResponse {
        let token =
            self.request(CoordinatorRequest::Fetch { group: group.into(), partitions: None });
        self.reply(token).expect("answered at once").clone()
    }
}

fn simple_commit(group: &str, offsets: &[(i32, i64)]) -> OffsetCommit {
    OffsetCommit {
        group: group.into(),
        generation: -1,
        member_id: String::new(),
        group_instance_id: None,
        offsets: (offsets.iter())
            .map(|(partition, offset)| (PartitionId::new("t", *partition), *offset, 0, "m".into()))
            .collect(),
    }
}

fn offsets_of(response: &CoordinatorResponse) -> Vec<(i32, i64)> {
    let CoordinatorResponse::Fetch(Ok(offsets)) = response else { panic!("{response:?}") };
    offsets
        .iter()
        .map(|(id, offset)| (id.partition, offset.as_ref().expect("known").offset))
        .collect()
}

#[test]
fn groups_map_to_partitions_as_kafkas_java_string_hash_code_does() {
    // Java's "hello".hashCode() is 99162322; "my-group"'s is -1906497762 (negative: the
    // sign bit is masked, not negated); "polygenelubricants"'s is Integer.MIN_VALUE.
    assert_eq!(partition_for("hello", 50), 22);
    assert_eq!(partition_for("my-group", 50), 36);
    assert_eq!(partition_for("polygenelubricants", 50), 0);
    assert_eq!(partition_for("console-consumer-12345", 50), 6);
    assert_eq!(partition_for("été", 50), 42);
    assert_eq!(partition_for("", 50), 0);
}

#[test]
fn commit_then_a_new_leader_loads_and_answers_the_same_offsets() {
    let mut h = Harness::new(1);
    h.lead_all(0);
    let token = h.commit("g", &[(0, 10), (1, 20)]);
    assert_eq!(h.reply(token), Some(&CoordinatorResponse::Commit(Ok(()))));
    let token = h.commit("g", &[(1, 25)]);
    assert_eq!(h.reply(token), Some(&CoordinatorResponse::Commit(Ok(()))));
    assert_eq!(offsets_of(&h.fetch("g")), vec![(0, 10), (1, 25)]);

    let mut next = h.new_leader(2, 1);
    assert!((0..PARTITIONS).all(|p| next.coordinator.is_loaded(p)));
    assert_eq!(offsets_of(&next.fetch("g")), vec![(0, 10), (1, 25)]);
    assert_eq!(next.coordinator.offsets("g"), h.coordinator.offsets("g"));
}

#[test]
fn a_loading_partition_answers_load_in_progress_until_the_high_watermark_reaches_its_end() {
    let mut h = Harness::new(1);
    h.lead_all(0);
    h.commit("g", &[(0, 10)]);
    let partition = partition_for("g", PARTITIONS);
    let end = h.logs[&partition].log_end;

    let mut next = Harness::new(2);
    next.logs = h.logs.clone();
    next.high_watermark.insert(partition, 0);
    next.coordinator.become_leader(next.now, partition, 1, 0, end);
    next.pump();
    assert!(!next.coordinator.is_loaded(partition));
    let fetch = next.fetch("g");
    assert_eq!(fetch, CoordinatorResponse::Fetch(Err(CoordinatorError::LoadInProgress)));

    next.high_watermark.insert(partition, end);
    next.coordinator.handle_high_watermark(next.now, partition);
    next.pump();
    assert!(next.coordinator.is_loaded(partition));
    assert_eq!(offsets_of(&next.fetch("g")), vec![(0, 10)]);
}

#[test]
fn a_commit_not_acknowledged_before_a_leader_change_is_either_there_or_not_never_half() {
    let mut h = Harness::new(1);
    h.lead_all(0);
    h.commit("g", &[(0, 1), (1, 1)]);
    h.auto_ack = false;
    let token = h.commit("g", &[(0, 7), (1, 8)]);
    assert_eq!(h.reply(token), None, "answered only once appended");
    assert_eq!(offsets_of(&h.fetch("g")), vec![(0, 1), (1, 1)], "not applied before");

    // The leader moves: the commit is answered NOT_COORDINATOR, and the batch either made
    // it into the log the new leader holds, or not.
    let (_, partition, batch, epoch) = h.pending.pop().expect("an append in flight");
    h.coordinator.resign(partition);
    h.pump();
    let lost = CoordinatorResponse::Commit(Err(CoordinatorError::NotCoordinator));
    assert_eq!(h.reply(token), Some(&lost));

    let mut without = h.new_leader(2, 1);
    assert_eq!(offsets_of(&without.fetch("g")), vec![(0, 1), (1, 1)]);
    h.logs.get_mut(&partition).expect("a log").append(batch, epoch);
    let mut with = h.new_leader(3, 1);
    assert_eq!(offsets_of(&with.fetch("g")), vec![(0, 7), (1, 8)]);
}

#[test]
fn a_failed_append_answers_its_error_and_changes_nothing() {
    let mut h = Harness::new(1);
    h.lead_all(0);
    h.commit("g", &[(0, 1)]);
    h.auto_ack = false;
    let token = h.commit("g", &[(0, 9)]);
    let (append, ..) = h.pending.pop().expect("an append");
    let error = CoordinatorError::NotAvailable("not enough replicas".into());
    h.coordinator.handle_append(append, Err(error.clone()));
    h.pump();
    assert_eq!(h.reply(token), Some(&CoordinatorResponse::Commit(Err(error))));
    assert_eq!(offsets_of(&h.fetch("g")), vec![(0, 1)]);
}

#[test]
fn a_deleted_group_leaves_only_tombstones_and_a_new_leader_does_not_know_it() {
    let mut h = Harness::new(1);
    h.lead_all(0);
    h.commit("gone", &[(0, 5), (3, 6)]);
    h.commit("kept", &[(0, 1)]);
    let token = h.request(CoordinatorRequest::Delete { group: "gone".into() });
    assert_eq!(h.reply(token), Some(&CoordinatorResponse::Delete(Ok(()))));
    assert_eq!(h.coordinator.offsets("gone"), None);
    let token = h.request(CoordinatorRequest::Delete { group: "gone".into() });
    let not_found = CoordinatorResponse::Delete(Err(CoordinatorError::GroupIdNotFound));
    assert_eq!(h.reply(token), Some(&not_found));

    let mut next = h.new_leader(2, 1);
    assert_eq!(next.coordinator.offsets("gone"), None);
    assert_eq!(offsets_of(&next.fetch("kept")), vec![(0, 1)]);
    let listed: Vec<String> = next.coordinator.list_groups().into_iter().map(|g| g.group).collect();
    assert_eq!(listed, vec!["kept".to_string()]);
}

fn join_request(member_id: &str) -> JoinRequest {
    JoinRequest {
        member_id: member_id.into(),
        group_instance_id: None,
        client_id: "client".into(),
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(1),
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"sub"))],
    }
}

/// One member joins group `g` and completes a generation; returns its id and generation.
fn stable_member(h: &mut Harness) -> (String, Generation) {
    let token =
        h.request(CoordinatorRequest::Join { group: "g".into(), request: join_request("") });
    let Some(CoordinatorResponse::Join(Err(CoordinatorError::Group(
        GroupError::MemberIdRequired { member_id },
    )))) = h.reply(token).cloned()
    else {
        panic!("a member id first: {:?}", h.reply(token))
    };
    let token = h
        .request(CoordinatorRequest::Join { group: "g".into(), request: join_request(&member_id) });
    h.now = h.now + Duration::from_secs(2);
    h.coordinator.handle_timeout(h.now);
    h.pump();
    let Some(CoordinatorResponse::Join(Ok(JoinResponse { generation, .. }))) =
        h.reply(token).cloned()
    else {
        panic!("joined: {:?}", h.reply(token))
    };
    let sync = SyncRequest {
        member_id: member_id.clone(),
        group_instance_id: None,
        generation,
        assignments: vec![(member_id.clone(), Bytes::from_static(b"assignment"))],
    };
    let token = h.request(CoordinatorRequest::Sync { group: "g".into(), request: sync });
    assert!(matches!(h.reply(token), Some(CoordinatorResponse::Sync(Ok(_)))));
    (member_id, generation)
}

#[test]
fn the_sync_that_completes_a_generation_is_answered_once_the_generation_is_appended() {
    let mut h = Harness::new(1);
    h.lead_all(0);
    h.auto_ack = false;
    let token =
        h.request(CoordinatorRequest::Join { group: "g".into(), request: join_request("") });
    let Some(CoordinatorResponse::Join(Err(CoordinatorError::Group(
        GroupError::MemberIdRequired { member_id },
    )))) = h.reply(token).cloned()
    else {
        panic!()
    };
    h.request(CoordinatorRequest::Join { group: "g".into(), request: join_request(&member_id) });
    h.now = h.now + Duration::from_secs(2);
    h.coordinator.handle_timeout(h.now);
    h.pump();
    let sync = SyncRequest {
        member_id: member_id.clone(),
        group_instance_id: None,
        generation: 1,
        assignments: vec![(member_id.clone(), Bytes::from_static(b"a"))],
    };
    let token = h.request(CoordinatorRequest::Sync { group: "g".into(), request: sync });
    assert_eq!(h.reply(token), None, "held until the generation is appended");
    let (append, partition, batch, epoch) = h.pending.pop().expect("the generation's append");
    h.logs.entry(partition).or_default().append(batch, epoch);
    h.coordinator.handle_append(append, Ok(()));
    h.pump();
    assert!(matches!(h.reply(token), Some(CoordinatorResponse::Sync(Ok(_)))));
}

#[test]
fn a_new_leader_restores_the_generation_and_its_members_keep_heartbeating() {
    let mut h = Harness::new(1);
    h.lead_all(0);
    let (member_id, generation) = stable_member(&mut h);
    let mut next = h.new_leader(2, 1);
    let group = next.coordinator.group("g").expect("restored");
    assert_eq!(group.state(), GroupState::Stable);
    assert_eq!(group.generation(), generation);
    let heartbeat = CoordinatorRequest::Heartbeat {
        group: "g".into(),
        member_id: member_id.clone(),
        group_instance_id: None,
        generation,
    };
    let token = next.request(heartbeat);
    assert_eq!(next.reply(token), Some(&CoordinatorResponse::Heartbeat(Ok(()))));
    // The member leaves: the Empty group is written too, and a third leader sees it Empty.
    let leave = vec![LeaveMember { member_id, group_instance_id: None }];
    next.request(CoordinatorRequest::Leave { group: "g".into(), members: leave });
    let third = next.new_leader(3, 2);
    let group = third.coordinator.group("g").expect("restored");
    assert_eq!(group.state(), GroupState::Empty);
    assert_eq!(group.generation(), generation + 1);
}

#[test]
fn commits_are_checked_against_the_group_as_kafka_3_checks_them() {
    let mut h = Harness::new(1);
    h.lead_all(0);
    let (member_id, generation) = stable_member(&mut h);
    let commit = |member: &str, generation: i32| {
        let mut commit = simple_commit("g", &[(0, 3)]);
        commit.member_id = member.into();
        commit.generation = generation;
        CoordinatorRequest::Commit(commit)
    };
    let cases = [
        (commit(&member_id, generation), Ok(())),
        (commit(&member_id, generation + 1), Err(GroupError::IllegalGeneration.into())),
        (commit("stranger", generation), Err(GroupError::UnknownMemberId.into())),
        // A simple consumer may not commit while the group has members.
        (commit("", -1), Err(GroupError::UnknownMemberId.into())),
    ];
    for (request, expected) in cases {
        let token = h.request(request.clone());
        assert_eq!(h.reply(token), Some(&CoordinatorResponse::Commit(expected)), "{request:?}");
    }
    // A group this coordinator does not know: only a simple consumer's commit is accepted.
    let mut unknown = simple_commit("other", &[(0, 1)]);
    unknown.generation = 4;
    let token = h.request(CoordinatorRequest::Commit(unknown));
    let illegal = CoordinatorResponse::Commit(Err(GroupError::IllegalGeneration.into()));
    assert_eq!(h.reply(token), Some(&illegal));
    // A member mid-rebalance (another member joined): REBALANCE_IN_PROGRESS once the
    // generation is chosen and the assignment not yet synced.
    let token = h
        .request(CoordinatorRequest::Join { group: "g".into(), request: join_request(&member_id) });
    h.now = h.now + Duration::from_secs(2);
    h.coordinator.handle_timeout(h.now);
    h.pump();
    let Some(CoordinatorResponse::Join(Ok(joined))) = h.reply(token).cloned() else { panic!() };
    let token = h.request(commit(&member_id, joined.generation));
    let rebalancing = CoordinatorResponse::Commit(Err(GroupError::RebalanceInProgress.into()));
    assert_eq!(h.reply(token), Some(&rebalancing));
}

#[test]
fn a_commit_fences_a_replaced_static_instance_and_counts_as_the_members_heartbeat() {
    let mut h = Harness::new(1);
    h.lead_all(0);
    let mut join = join_request("");
    join.group_instance_id = Some("instance".into());
    let token = h.request(CoordinatorRequest::Join { group: "g".into(), request: join });
    h.now = h.now + Duration::from_secs(2);
    h.coordinator.handle_timeout(h.now);
    h.pump();
    let Some(CoordinatorResponse::Join(Ok(JoinResponse { generation, member_id, .. }))) =
        h.reply(token).cloned()
    else {
        panic!("joined: {:?}", h.reply(token))
    };
    let sync = SyncRequest {
        member_id: member_id.clone(),
        group_instance_id: Some("instance".into()),
        generation,
        assignments: vec![(member_id.clone(), Bytes::from_static(b"assignment"))],
    };
    let token = h.request(CoordinatorRequest::Sync { group: "g".into(), request: sync });
    assert!(matches!(h.reply(token), Some(CoordinatorResponse::Sync(Ok(_)))));
    let commit = |member: &str| {
        let mut commit = simple_commit("g", &[(0, 3)]);
        commit.member_id = member.into();
        commit.group_instance_id = Some("instance".into());
        commit.generation = generation;
        CoordinatorRequest::Commit(commit)
    };
    // Another member id naming the instance (an old process of a restarted static member).
    let token = h.request(commit("stale-process"));
    let fenced = CoordinatorResponse::Commit(Err(GroupError::FencedInstanceId.into()));
    assert_eq!(h.reply(token), Some(&fenced));
    // The member commits every 4 s for 40 s and never heartbeats: its 10 s session holds.
    for _ in 0..10 {
        h.now = h.now + Duration::from_secs(4);
        h.coordinator.handle_timeout(h.now);
        h.pump();
        let token = h.request(commit(&member_id));
        assert_eq!(h.reply(token), Some(&CoordinatorResponse::Commit(Ok(()))));
    }
    let group = h.coordinator.group("g").expect("known");
    assert!(group.has_member(&member_id) && group.state() == GroupState::Stable);
    // Silent for longer than its session: it is gone.
    h.now = h.now + Duration::from_secs(11);
    h.coordinator.handle_timeout(h.now);
    h.pump();
    assert!(!h.coordinator.group("g").expect("known").has_member(&member_id));
}

#[test]
fn a_rebuild_from_the_records_equals_the_live_state() {
    for seed in 0..20 {
        let mut rng = crate::core::rng::seeded(seed);
        let mut h = Harness::new(seed);
        h.lead_all(0);
        h.auto_ack = false;
        let groups = ["a", "b", "c", "d", "e"];
        for _ in 0..200 {
            let group = groups[rng.random_range(0..groups.len())];
            match rng.random_range(0..10) {
                0 => {
                    h.request(CoordinatorRequest::Delete { group: group.into() });
                }
                1..=7 => {
                    let count = rng.random_range(1..4);
                    let offsets: Vec<(i32, i64)> = (0..count)
                        .map(|_| (rng.random_range(0..3), rng.random_range(0..1000)))
                        .collect();
                    h.commit(group, &offsets);
                }
                _ => {}
            }
            // Settle some appends in flight, in order, each acknowledged or failed.
            while !h.pending.is_empty() && rng.random_bool(0.7) {
                let (append, partition, batch, epoch) = h.pending.remove(0);
                if rng.random_bool(0.8) {
                    h.logs.entry(partition).or_default().append(batch, epoch);
                    h.coordinator.handle_append(append, Ok(()));
                } else {
                    let error = CoordinatorError::NotAvailable("failed".into());
                    h.coordinator.handle_append(append, Err(error));
                }
                h.pump();
            }
        }
        for (append, partition, batch, epoch) in std::mem::take(&mut h.pending) {
            h.logs.entry(partition).or_default().append(batch, epoch);
            h.coordinator.handle_append(append, Ok(()));
        }
        h.pump();
        let rebuilt = h.new_leader(seed + 100, 1);
        for group in groups {
            let live = h.coordinator.offsets(group).filter(|offsets| !offsets.is_empty());
            let again = rebuilt.coordinator.offsets(group).filter(|offsets| !offsets.is_empty());
            assert_eq!(live, again, "seed {seed} group {group}");
        }
    }
}
