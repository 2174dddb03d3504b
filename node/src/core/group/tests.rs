//! Story tests of one group: each states the exact answers the inputs must produce.

use std::time::Duration;

use bytes::Bytes;

use super::*;

const SESSION: Duration = Duration::from_secs(10);
const REBALANCE: Duration = Duration::from_secs(30);

/// A group with a clock and a token counter, as a node would drive it.
struct Harness {
    group: Group,
    now: Instant,
    next_token: RequestToken,
}

fn config() -> GroupConfig {
    GroupConfig {
        seed: 7,
        session_timeout_min: Duration::from_secs(1),
        session_timeout_max: Duration::from_secs(60),
        group_size_max: 16,
    }
}

fn protocols(names: &[&str]) -> Vec<(String, Bytes)> {
    names.iter().map(|name| (name.to_string(), Bytes::from(format!("meta-{name}")))).collect()
}

fn request(member_id: &str, instance: Option<&str>, assignors: &[&str]) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_owned(),
        group_instance_id: instance.map(str::to_owned),
        client_id: "client".to_owned(),
        session_timeout: SESSION,
        rebalance_timeout: REBALANCE,
        protocol_type: "consumer".to_owned(),
        protocols: protocols(assignors),
    }
}

fn sync_request(
    member_id: &str,
    generation: Generation,
    assignments: &[(&str, &str)],
) -> SyncRequest {
    SyncRequest {
        member_id: member_id.to_owned(),
        group_instance_id: None,
        generation,
        assignments: assignments
            .iter()
            .map(|(id, bytes)| (id.to_string(), Bytes::from(bytes.to_string())))
            .collect(),
    }
}

impl Harness {
    fn new() -> Harness {
        Harness { group: Group::new(config()), now: Instant::from_millis(1_000), next_token: 0 }
    }

    fn token(&mut self) -> RequestToken {
        self.next_token += 1;
        self.next_token
    }

    fn advance(&mut self, by: Duration) {
        self.now = self.now + by;
        self.group.handle_timeout(self.now);
    }

    fn events(&mut self) -> Vec<GroupEvent> {
        std::iter::from_fn(|| self.group.poll_event()).collect()
    }

    fn join(&mut self, request: JoinRequest) -> RequestToken {
        let token = self.token();
        self.group.join(self.now, token, request);
        token
    }

    /// A first join without an id: the group hands out one (KIP-394).
    fn new_member_id(&mut self) -> String {
        let token = self.join(request("", None, &["range", "roundrobin"]));
        match self.events().as_slice() {
            [
                GroupEvent::Join {
                    token: t,
                    result: Err(GroupError::MemberIdRequired { member_id }),
                },
            ] if *t == token => member_id.clone(),
            other => panic!("expected MEMBER_ID_REQUIRED, got {other:?}"),
        }
    }

    fn sync(&mut self, request: SyncRequest) -> RequestToken {
        let token = self.token();
        self.group.sync(self.now, token, request);
        token
    }

    fn heartbeat(&mut self, member_id: &str, generation: Generation) -> Result<(), GroupError> {
        let token = self.token();
        self.group.heartbeat(self.now, token, member_id, None, generation);
        match self.events().as_slice() {
            [GroupEvent::Heartbeat { token: t, result }] if *t == token => result.clone(),
            other => panic!("expected one heartbeat answer, got {other:?}"),
        }
    }

    /// Brings `count` dynamic members to a Stable generation; returns their ids, sorted.
    fn stable_group(&mut self, count: usize) -> Vec<String> {
        let ids: Vec<String> = (0..count).map(|_| self.new_member_id()).collect();
        let tokens: Vec<RequestToken> =
            ids.iter().map(|id| self.join(request(id, None, &["range", "roundrobin"]))).collect();
        let events = self.events();
        assert_eq!(events.len(), count, "every parked join answered: {events:?}");
        let answered: Vec<RequestToken> = events.iter().map(GroupEvent::token).collect();
        assert_eq!(
            answered.iter().copied().collect::<std::collections::BTreeSet<_>>(),
            tokens.into_iter().collect()
        );
        let generation = self.group.generation();
        let leader = self.group.leader().expect("a leader").to_owned();
        let assignments: Vec<(String, String)> =
            ids.iter().map(|id| (id.clone(), format!("parts-of-{id}"))).collect();
        let pairs: Vec<(&str, &str)> =
            assignments.iter().map(|(id, a)| (id.as_str(), a.as_str())).collect();
        self.sync(sync_request(&leader, generation, &pairs));
        for id in ids.iter().filter(|id| **id != leader) {
            self.sync(sync_request(id, generation, &[]));
        }
        assert_eq!(self.events().len(), count);
        assert_eq!(self.group.state(), GroupState::Stable);
        let mut sorted = ids;
        sorted.sort();
        sorted
    }
}

fn join_ok(event: &GroupEvent) -> &JoinResponse {
    match event {
        GroupEvent::Join { result: Ok(response), .. } => response,
        other => panic!("expected a successful join, got {other:?}"),
    }
}

#[test]
fn a_new_member_must_rejoin_with_the_id_it_is_given() {
    let mut h = Harness::new();
    let member_id = h.new_member_id();
    assert!(member_id.starts_with("client-"), "{member_id}");
    assert_eq!(h.group.state(), GroupState::Empty, "a pending id is not a member");
    let token = h.join(request(&member_id, None, &["range"]));
    let expected = GroupEvent::Join {
        token,
        result: Ok(JoinResponse {
            generation: 1,
            protocol_type: "consumer".to_owned(),
            protocol_name: "range".to_owned(),
            leader: member_id.clone(),
            member_id: member_id.clone(),
            members: vec![JoinedMember {
                member_id: member_id.clone(),
                group_instance_id: None,
                metadata: Bytes::from("meta-range"),
            }],
            skip_assignment: false,
        }),
    };
    assert_eq!(h.events(), vec![expected]);
    assert_eq!(h.group.state(), GroupState::CompletingRebalance);
}

#[test]
fn member_ids_replay_from_the_seed() {
    let mut a = Harness::new();
    let mut b = Harness::new();
    assert_eq!(a.new_member_id(), b.new_member_id());
    assert_ne!(a.new_member_id(), a.new_member_id());
}

#[test]
fn an_unused_member_id_expires_with_its_session() {
    let mut h = Harness::new();
    let member_id = h.new_member_id();
    assert_eq!(h.group.poll_timeout(), Some(h.now + SESSION));
    h.advance(SESSION);
    assert_eq!(h.group.poll_timeout(), None);
    let token = h.join(request(&member_id, None, &["range"]));
    assert_eq!(
        h.events(),
        vec![GroupEvent::Join { token, result: Err(GroupError::UnknownMemberId) }]
    );
}

#[test]
fn three_members_join_one_leaves_the_others_rebalance() {
    let mut h = Harness::new();
    let ids = h.stable_group(3);
    assert_eq!(h.group.generation(), 1);
    let leaver = ids[2].clone();
    let token = h.token();
    h.group.leave(
        h.now,
        token,
        vec![LeaveMember { member_id: leaver.clone(), group_instance_id: None }],
    );
    let expected = GroupEvent::Leave {
        token,
        result: Ok(vec![LeaveResult {
            member_id: leaver,
            group_instance_id: None,
            result: Ok(()),
        }]),
    };
    assert_eq!(h.events(), vec![expected]);
    assert_eq!(h.group.state(), GroupState::PreparingRebalance);
    // The others learn of the rebalance from their heartbeats and rejoin.
    assert_eq!(h.heartbeat(&ids[0], 1), Err(GroupError::RebalanceInProgress));
    let first = h.join(request(&ids[0], None, &["range", "roundrobin"]));
    assert_eq!(h.events(), vec![], "parked until the other member rejoins");
    let second = h.join(request(&ids[1], None, &["range", "roundrobin"]));
    let events = h.events();
    assert_eq!(events.iter().map(GroupEvent::token).collect::<Vec<_>>(), vec![first, second]);
    let leader = h.group.leader().unwrap().to_owned();
    for event in &events {
        let response = join_ok(event);
        assert_eq!(response.generation, 2);
        assert_eq!(response.leader, leader);
        let expected_members = if response.member_id == leader { 2 } else { 0 };
        assert_eq!(response.members.len(), expected_members);
    }
    assert_eq!(h.group.member_ids().collect::<Vec<_>>(), vec![ids[0].as_str(), ids[1].as_str()]);
}

#[test]
fn a_member_that_misses_its_session_is_dropped() {
    let mut h = Harness::new();
    let ids = h.stable_group(2);
    h.advance(SESSION / 2);
    assert_eq!(h.heartbeat(&ids[0], 1), Ok(()));
    assert_eq!(h.group.state(), GroupState::Stable);
    h.advance(SESSION / 2);
    assert_eq!(h.group.state(), GroupState::PreparingRebalance, "ids[1] went silent");
    assert_eq!(h.group.member_ids().collect::<Vec<_>>(), vec![ids[0].as_str()]);
    assert_eq!(h.heartbeat(&ids[0], 1), Err(GroupError::RebalanceInProgress));
    assert_eq!(h.heartbeat(&ids[1], 1), Err(GroupError::UnknownMemberId));
    // The survivor rejoins alone and becomes leader of generation 2.
    let token = h.join(request(&ids[0], None, &["range", "roundrobin"]));
    let events = h.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].token(), token);
    assert_eq!(join_ok(&events[0]).generation, 2);
    assert_eq!(join_ok(&events[0]).leader, ids[0]);
}

#[test]
fn the_last_member_leaving_empties_the_group() {
    let mut h = Harness::new();
    let ids = h.stable_group(1);
    h.advance(SESSION);
    assert_eq!(h.group.state(), GroupState::Empty);
    assert_eq!(h.group.generation(), 2, "Kafka moves the generation on to an empty group");
    assert_eq!(h.group.poll_timeout(), None);
    assert_eq!(h.heartbeat(&ids[0], 2), Err(GroupError::UnknownMemberId));
}

#[test]
fn a_member_silent_during_a_rebalance_is_dropped_and_its_late_join_refused() {
    let mut h = Harness::new();
    let ids = h.stable_group(2);
    let newcomer = h.new_member_id();
    let newcomer_join = h.join(request(&newcomer, None, &["range"]));
    h.advance(SESSION / 2);
    assert_eq!(h.heartbeat(&ids[0], 1), Err(GroupError::RebalanceInProgress));
    let rejoin = h.join(request(&ids[0], None, &["range"]));
    assert_eq!(h.events(), vec![], "ids[1] has not rejoined yet");
    // ids[1] is parked-free and silent: the rebalance timeout (30 s) outlasts its session
    // (10 s), so the session drops it first and the rebalance completes without it.
    h.advance(SESSION);
    let events = h.events();
    let mut answered: Vec<RequestToken> = events.iter().map(GroupEvent::token).collect();
    answered.sort();
    assert_eq!(answered, vec![newcomer_join, rejoin]);
    assert!(events.iter().all(|event| join_ok(event).generation == 2));
    let late = h.join(request(&ids[1], None, &["range"]));
    assert_eq!(
        h.events(),
        vec![GroupEvent::Join { token: late, result: Err(GroupError::UnknownMemberId) }]
    );
}

#[test]
fn a_late_joiner_after_the_rebalance_timeout_must_join_again() {
    let mut h = Harness::new();
    let ids = h.stable_group(2);
    h.advance(SESSION / 2);
    assert_eq!(h.heartbeat(&ids[1], 1), Ok(()));
    let rejoin = h.join(request(&ids[0], None, &["range"]));
    // ids[1] keeps heartbeating but never rejoins: only the rebalance timeout ends it.
    for _ in 0..6 {
        h.advance(Duration::from_secs(5));
        if h.group.state() == GroupState::PreparingRebalance {
            assert_eq!(h.heartbeat(&ids[1], 1), Err(GroupError::RebalanceInProgress));
        }
    }
    let events = h.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].token(), rejoin);
    assert_eq!(join_ok(&events[0]).generation, 2);
    assert_eq!(h.group.member_ids().collect::<Vec<_>>(), vec![ids[0].as_str()]);
    assert_eq!(h.heartbeat(&ids[1], 1), Err(GroupError::UnknownMemberId));
    // The late joiner must start over with a new member id.
    let late = h.join(request(&ids[1], None, &["range"]));
    assert_eq!(
        h.events(),
        vec![GroupEvent::Join { token: late, result: Err(GroupError::UnknownMemberId) }]
    );
    let fresh = h.new_member_id();
    h.join(request(&fresh, None, &["range"]));
    assert_eq!(h.group.state(), GroupState::PreparingRebalance);
}

#[test]
fn sync_before_the_leaders_assignment_is_parked() {
    let mut h = Harness::new();
    let a = h.new_member_id();
    let b = h.new_member_id();
    h.join(request(&a, None, &["range"]));
    h.join(request(&b, None, &["range"]));
    assert_eq!(h.events().len(), 2);
    let leader = h.group.leader().unwrap().to_owned();
    let follower = if leader == a { b.clone() } else { a.clone() };
    let parked = h.sync(sync_request(&follower, 1, &[]));
    assert_eq!(h.events(), vec![]);
    assert_eq!(h.heartbeat(&follower, 1), Ok(()), "heartbeats are fine while completing");
    let leader_sync =
        h.sync(sync_request(&leader, 1, &[(&leader, "p0"), (&follower, "p1"), ("stranger", "p9")]));
    let answer = |token, assignment: &'static str| GroupEvent::Sync {
        token,
        result: Ok(SyncResponse {
            protocol_type: "consumer".to_owned(),
            protocol_name: "range".to_owned(),
            assignment: Bytes::from(assignment),
        }),
    };
    let mut events = h.events();
    events.sort_by_key(GroupEvent::token);
    assert_eq!(events, vec![answer(parked, "p1"), answer(leader_sync, "p0")]);
    assert_eq!(h.group.state(), GroupState::Stable);
    // A sync in a Stable generation is answered at once.
    let again = h.sync(sync_request(&follower, 1, &[]));
    assert_eq!(h.events(), vec![answer(again, "p1")]);
}

#[test]
fn a_rebalance_tells_parked_syncs_to_rejoin() {
    let mut h = Harness::new();
    let a = h.new_member_id();
    let b = h.new_member_id();
    h.join(request(&a, None, &["range"]));
    h.join(request(&b, None, &["range"]));
    h.events();
    let follower = if h.group.leader() == Some(a.as_str()) { b } else { a };
    let parked = h.sync(sync_request(&follower, 1, &[]));
    let newcomer = h.new_member_id();
    h.join(request(&newcomer, None, &["range"]));
    assert_eq!(
        h.events(),
        vec![GroupEvent::Sync { token: parked, result: Err(GroupError::RebalanceInProgress) }]
    );
    let sync = h.sync(sync_request(&follower, 1, &[]));
    assert_eq!(
        h.events(),
        vec![GroupEvent::Sync { token: sync, result: Err(GroupError::RebalanceInProgress) }]
    );
}

#[test]
fn heartbeats_with_an_old_generation_are_illegal() {
    let mut h = Harness::new();
    let ids = h.stable_group(2);
    assert_eq!(h.heartbeat(&ids[0], 0), Err(GroupError::IllegalGeneration));
    assert_eq!(h.heartbeat(&ids[0], 2), Err(GroupError::IllegalGeneration));
    assert_eq!(h.heartbeat(&ids[0], 1), Ok(()));
    assert_eq!(h.heartbeat("nobody", 1), Err(GroupError::UnknownMemberId));
    let sync = h.sync(sync_request(&ids[1], 0, &[]));
    assert_eq!(
        h.events(),
        vec![GroupEvent::Sync { token: sync, result: Err(GroupError::IllegalGeneration) }]
    );
}

#[test]
fn static_member_restart_without_rebalance() {
    let mut h = Harness::new();
    let dynamic = h.new_member_id();
    let t1 = h.join(request("", Some("consumer-1"), &["range"]));
    let t2 = h.join(request(&dynamic, None, &["range"]));
    let events = h.events();
    assert_eq!(events.iter().map(GroupEvent::token).collect::<Vec<_>>().len(), 2);
    assert!(
        events.iter().any(|event| event.token() == t1) && events.iter().any(|e| e.token() == t2)
    );
    let static_id = h.group.member_ids().find(|id| *id != dynamic).unwrap().to_owned();
    let leader = h.group.leader().unwrap().to_owned();
    h.sync(sync_request(&leader, 1, &[(&static_id, "s"), (&dynamic, "d")]));
    let follower = if leader == dynamic { static_id.clone() } else { dynamic.clone() };
    h.sync(sync_request(&follower, 1, &[]));
    assert_eq!(h.events().len(), 2);
    // The static consumer restarts: same instance id, no member id, same subscription.
    let restart = h.join(request("", Some("consumer-1"), &["range"]));
    let events = h.events();
    assert_eq!(events.len(), 1);
    let response = join_ok(&events[0]);
    assert_eq!(events[0].token(), restart);
    assert_ne!(response.member_id, static_id, "a new member id");
    assert_eq!(response.generation, 1, "no rebalance");
    assert_eq!(h.group.state(), GroupState::Stable);
    let new_id = response.member_id.clone();
    // The old id is fenced; the new one gets the old assignment.
    let token = h.token();
    h.group.heartbeat(h.now, token, &static_id, Some("consumer-1"), 1);
    assert_eq!(
        h.events(),
        vec![GroupEvent::Heartbeat { token, result: Err(GroupError::FencedInstanceId) }]
    );
    let sync = h.sync(SyncRequest {
        group_instance_id: Some("consumer-1".into()),
        ..sync_request(&new_id, 1, &[])
    });
    match h.events().as_slice() {
        [GroupEvent::Sync { token, result: Ok(response) }] if *token == sync => {
            assert_eq!(response.assignment, Bytes::from("s"));
        }
        other => panic!("{other:?}"),
    }
    // With a changed subscription the restart does rebalance.
    h.join(request("", Some("consumer-1"), &["range", "sticky"]));
    assert_eq!(h.group.state(), GroupState::PreparingRebalance);
}

#[test]
fn a_static_member_named_by_instance_id_leaves() {
    let mut h = Harness::new();
    h.join(request("", Some("consumer-1"), &["range"]));
    let member_id = join_ok(&h.events()[0]).member_id.clone();
    let token = h.token();
    let by_other_id =
        LeaveMember { member_id: "other".into(), group_instance_id: Some("consumer-1".into()) };
    let by_instance =
        LeaveMember { member_id: String::new(), group_instance_id: Some("consumer-1".into()) };
    h.group.leave(h.now, token, vec![by_other_id.clone(), by_instance.clone()]);
    let expected = GroupEvent::Leave {
        token,
        result: Ok(vec![
            LeaveResult {
                member_id: "other".into(),
                group_instance_id: by_other_id.group_instance_id,
                result: Err(GroupError::FencedInstanceId),
            },
            LeaveResult {
                member_id: String::new(),
                group_instance_id: by_instance.group_instance_id,
                result: Ok(()),
            },
        ]),
    };
    assert_eq!(h.events(), vec![expected]);
    assert_eq!(h.group.state(), GroupState::Empty);
    assert_eq!(h.heartbeat(&member_id, 1), Err(GroupError::UnknownMemberId));
}

#[test]
fn the_protocol_is_the_leaders_first_choice_that_all_members_list() {
    let mut h = Harness::new();
    let a = h.new_member_id();
    let b = h.new_member_id();
    let (first, second) = if a < b { (a, b) } else { (b, a) };
    h.join(request(&first, None, &["sticky", "range", "roundrobin"]));
    let refused = h.join(request(&second, None, &["cooperative"]));
    assert_eq!(
        h.events()[..],
        [GroupEvent::Join { token: refused, result: Err(GroupError::InconsistentGroupProtocol) }][..],
        "nothing in common with the first member"
    );
    h.join(request(&second, None, &["roundrobin", "range"]));
    let events = h.events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(h.group.leader(), Some(first.as_str()));
    assert_eq!(h.group.protocol_name(), Some("range"));
    let description = h.group.describe();
    assert_eq!(description.state, GroupState::CompletingRebalance);
    assert_eq!(description.protocol_type, "consumer");
    assert_eq!(description.protocol_name, "range");
    assert_eq!(description.members.len(), 2);
    assert_eq!(description.members[0].metadata, Bytes::from("meta-range"));
}

#[test]
fn joins_outside_the_bounds_are_refused() {
    let mut h = Harness::new();
    let short = h.join(JoinRequest {
        session_timeout: Duration::from_millis(10),
        ..request("", None, &["range"])
    });
    let empty = h.join(request("", None, &[]));
    assert_eq!(
        h.events(),
        vec![
            GroupEvent::Join { token: short, result: Err(GroupError::InvalidSessionTimeout) },
            GroupEvent::Join { token: empty, result: Err(GroupError::InconsistentGroupProtocol) },
        ]
    );
}

#[test]
fn shutdown_answers_every_parked_request() {
    let mut h = Harness::new();
    let ids = h.stable_group(3);
    let newcomer = h.new_member_id();
    let parked = h.join(request(&newcomer, None, &["range"]));
    let rejoin = h.join(request(&ids[0], None, &["range"]));
    assert_eq!(h.events(), vec![]);
    h.group.shutdown(GroupError::NotCoordinator);
    let mut events = h.events();
    events.sort_by_key(GroupEvent::token);
    assert_eq!(
        events,
        vec![
            GroupEvent::Join { token: parked, result: Err(GroupError::NotCoordinator) },
            GroupEvent::Join { token: rejoin, result: Err(GroupError::NotCoordinator) },
        ]
    );
    assert_eq!(h.group.state(), GroupState::Dead);
    assert_eq!(h.group.poll_timeout(), None);
    assert_eq!(h.heartbeat(&ids[1], 1), Err(GroupError::NotCoordinator));
}

#[test]
fn codes_match_kafkas_numbers() {
    use kafka_protocol::ResponseError;
    let cases = [
        (
            GroupError::MemberIdRequired { member_id: String::new() },
            ResponseError::MemberIdRequired,
        ),
        (GroupError::UnknownMemberId, ResponseError::UnknownMemberId),
        (GroupError::IllegalGeneration, ResponseError::IllegalGeneration),
        (GroupError::RebalanceInProgress, ResponseError::RebalanceInProgress),
        (GroupError::FencedInstanceId, ResponseError::FencedInstanceId),
        (GroupError::InconsistentGroupProtocol, ResponseError::InconsistentGroupProtocol),
        (GroupError::InvalidSessionTimeout, ResponseError::InvalidSessionTimeout),
        (GroupError::GroupMaxSizeReached, ResponseError::GroupMaxSizeReached),
        (GroupError::CoordinatorNotAvailable, ResponseError::CoordinatorNotAvailable),
        (GroupError::NotCoordinator, ResponseError::NotCoordinator),
    ];
    for (error, kafka) in cases {
        assert_eq!(error.code(), kafka.code(), "{error:?}");
    }
}
