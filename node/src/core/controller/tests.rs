//! The controller driven by a test harness that plays Raft (it commits proposals in order,
//! through the batch encoding) and a follower node (it applies every committed batch to its
//! own image): brokers, leases and fencing. Topics and partitions are in `tests_topics.rs`.

use std::collections::VecDeque;
use std::time::Duration;

use super::messages::*;
use super::records::*;
use super::*;

/// A controller with a make-believe Raft log behind it.
pub(super) struct Harness {
    pub controller: Controller,
    pub now: Instant,
    /// The index of the last entry in the log (1: the leader's own first entry).
    pub index: u64,
    /// Proposals not yet committed, in order.
    pub proposed: VecDeque<Vec<MetadataRecord>>,
    /// Replies not yet looked at.
    pub replies: Vec<(Token, ControllerResponse)>,
    /// A follower's image: every committed batch, decoded from its encoding.
    pub follower: MetadataImage,
    next_token: Token,
}

impl Harness {
    pub fn new(seed: u64) -> Harness {
        Harness::with_config(ControllerConfig { seed, ..ControllerConfig::default() })
    }

    pub fn with_config(config: ControllerConfig) -> Harness {
        let mut controller = Controller::new(config);
        let now = Instant::from_millis(1_000_000);
        controller.become_active(now, MetadataImage::default());
        Harness {
            controller,
            now,
            index: 1,
            proposed: VecDeque::new(),
            replies: Vec::new(),
            follower: MetadataImage::default(),
            next_token: 100,
        }
    }

    /// Everything the controller output since the last call.
    pub fn outputs(&mut self) -> Vec<ControllerOutput> {
        let outputs: Vec<ControllerOutput> =
            std::iter::from_fn(|| self.controller.poll_output()).collect();
        for output in &outputs {
            match output {
                ControllerOutput::Propose { records } => self.proposed.push_back(records.clone()),
                ControllerOutput::Reply { token, response } => {
                    self.replies.push((*token, response.clone()))
                }
            }
        }
        outputs
    }

    /// Commits the oldest proposal.
    pub fn commit_one(&mut self) {
        self.outputs();
        let records = self.proposed.pop_front().expect("a proposal to commit");
        self.index += 1;
        let decoded = decode_batch(&encode_batch(&records)).unwrap();
        assert_eq!(decoded, records, "a batch survives its encoding");
        self.follower.apply(self.index, &decoded);
        self.follower.invariants();
        self.controller.handle_committed(self.index, &decoded);
        self.outputs();
    }

    pub fn commit_all(&mut self) {
        self.outputs();
        while !self.proposed.is_empty() {
            self.commit_one();
        }
        if let Some(committed) = self.controller.committed_image() {
            assert_eq!(committed, &self.follower, "the controller and a follower agree");
        }
    }

    /// Sends a request; returns its token. Nothing is committed.
    pub fn send(&mut self, kind: RequestKind) -> Token {
        self.send_raw(kind.into())
    }

    /// Sends a request as it came off the wire; returns its token.
    pub fn send_raw(&mut self, request: ControllerRequest) -> Token {
        self.next_token += 1;
        let token = self.next_token;
        self.controller.handle_request(self.now, token, request);
        token
    }

    /// The reply to `token`, if there is one yet.
    pub fn reply(&mut self, token: Token) -> Option<ControllerResponse> {
        self.outputs();
        let at = self.replies.iter().position(|(t, _)| *t == token)?;
        Some(self.replies.remove(at).1)
    }

    /// Sends a request, commits everything, and returns the reply.
    pub fn call(&mut self, kind: RequestKind) -> ControllerResponse {
        let token = self.send(kind);
        self.commit_all();
        self.reply(token).expect("every request is answered once its batch commits")
    }

    /// Moves time on by `ms` and fires the controller's timers.
    pub fn advance(&mut self, ms: u64) {
        self.now = self.now + Duration::from_millis(ms);
        if self.controller.poll_timeout().is_some_and(|deadline| deadline <= self.now) {
            self.controller.handle_timeout(self.now);
        }
    }

    pub fn register(&mut self, node_id: i32, incarnation: u64) -> ControllerResponse {
        self.call(register(node_id, incarnation))
    }

    pub fn heartbeat(&mut self, node_id: i32, epoch: u64, offset: u64) -> ControllerResponse {
        self.call(heartbeat(node_id, epoch, offset, false))
    }

    /// Registers brokers `1..=count` and unfences them; returns their epochs.
    pub fn start_brokers(&mut self, count: i32) -> Vec<u64> {
        let epochs: Vec<u64> =
            (1..=count).map(|id| epoch_of(&self.register(id, id as u64 * 1000))).collect();
        for (id, epoch) in (1..).zip(&epochs) {
            let response = self.heartbeat(id, *epoch, self.index);
            assert!(!heartbeat_of(&response).is_fenced, "broker {id} unfenced");
        }
        epochs
    }

    pub fn image(&self) -> &MetadataImage {
        self.controller.committed_image().expect("active")
    }

    pub fn topic(&self, name: &str) -> &TopicImage {
        self.image().topic(name).expect("the topic exists")
    }
}

/// A registration of `node_id` from its usual data directory (id `node_id * 7`).
pub(super) fn register(node_id: i32, incarnation: u64) -> RequestKind {
    register_from(node_id, incarnation, node_id as u64 * 7)
}

pub(super) fn register_from(node_id: i32, incarnation: u64, directory_id: u64) -> RequestKind {
    RequestKind::RegisterBroker(RegisterBrokerRequest {
        node_id,
        incarnation,
        host: format!("broker{node_id}"),
        port: 9092,
        rack: None,
        metadata_offset: 0,
        directory_id,
    })
}

pub(super) fn heartbeat(node_id: i32, epoch: u64, offset: u64, shutdown: bool) -> RequestKind {
    RequestKind::BrokerHeartbeat(BrokerHeartbeatRequest {
        node_id,
        broker_epoch: epoch,
        metadata_offset: offset,
        want_shutdown: shutdown,
    })
}

pub(super) fn create(name: &str, partitions: i32, replication_factor: i32) -> RequestKind {
    RequestKind::CreateTopic(CreateTopicRequest {
        name: name.to_string(),
        partitions,
        replication_factor,
        config: Default::default(),
        validate_only: false,
    })
}

pub(super) fn epoch_of(response: &ControllerResponse) -> u64 {
    match &response.reply {
        Some(ReplyKind::RegisterBroker(reply)) => reply.broker_epoch,
        _ => panic!("not a registration reply: {response:?}"),
    }
}

pub(super) fn heartbeat_of(response: &ControllerResponse) -> HeartbeatReply {
    match &response.reply {
        Some(ReplyKind::Heartbeat(reply)) => reply.clone(),
        _ => panic!("not a heartbeat reply: {response:?}"),
    }
}

pub(super) fn error_of(response: &ControllerResponse) -> i32 {
    assert!(response.reply.is_none(), "an error carries no reply: {response:?}");
    response.error_code
}

pub(super) fn change(topic: TopicId, partition: i32) -> PartitionChangeRecord {
    PartitionChangeRecord {
        topic_id: topic.to_vec(),
        partition,
        isr: None,
        elr: None,
        leader: None,
        replicas: None,
    }
}

fn fence(node_id: i32, broker_epoch: u64) -> MetadataRecord {
    RecordKind::FenceBroker(FenceBrokerRecord { node_id, broker_epoch }).into()
}

fn unfence(node_id: i32, broker_epoch: u64) -> MetadataRecord {
    RecordKind::UnfenceBroker(UnfenceBrokerRecord { node_id, broker_epoch }).into()
}

fn proposal(records: Vec<MetadataRecord>) -> ControllerOutput {
    ControllerOutput::Propose { records }
}

#[test]
fn registration_is_proposed_then_answered_with_its_index_as_epoch() {
    let mut h = Harness::new(1);
    let token = h.send(register(7, 42));
    let expected = RegisterBrokerRecord {
        node_id: 7,
        incarnation: 42,
        host: "broker7".into(),
        port: 9092,
        rack: None,
        broker_epoch: None,
        directory_id: 49,
    };
    assert_eq!(h.outputs(), vec![proposal(vec![RecordKind::RegisterBroker(expected).into()])]);
    assert_eq!(h.reply(token), None, "no answer before the commit");
    h.commit_one();
    let reply = RegisterBrokerReply { broker_epoch: 2 };
    let response = ControllerResponse::ok(Some(ReplyKind::RegisterBroker(reply)));
    assert_eq!(h.reply(token), Some(response));
    let broker = h.image().broker(7).unwrap();
    assert_eq!((broker.epoch, broker.fenced), (2, true), "a new broker starts fenced");
}

#[test]
fn a_broker_is_unfenced_once_it_has_applied_its_registration() {
    let mut h = Harness::new(1);
    let epoch = epoch_of(&h.register(1, 10));
    // Behind its own registration: still fenced, answered at once.
    let token = h.send(heartbeat(1, epoch, epoch - 1, false));
    let metadata_offset = h.image().last_applied();
    let behind = HeartbeatReply {
        is_caught_up: false,
        is_fenced: true,
        should_shut_down: false,
        metadata_offset,
    };
    let expected = ControllerOutput::Reply {
        token,
        response: ControllerResponse::ok(Some(ReplyKind::Heartbeat(behind))),
    };
    assert_eq!(h.outputs(), vec![expected]);
    // Caught up: unfenced, answered once the unfence commits.
    let token = h.send(heartbeat(1, epoch, epoch, false));
    assert_eq!(h.outputs(), vec![proposal(vec![unfence(1, epoch)])]);
    h.commit_one();
    let metadata_offset = h.image().last_applied();
    let live = HeartbeatReply {
        is_caught_up: true,
        is_fenced: false,
        should_shut_down: false,
        metadata_offset,
    };
    assert_eq!(heartbeat_of(&h.reply(token).unwrap()), live);
    assert!(h.image().is_live(1));
}

#[test]
fn a_heartbeat_arriving_after_its_fence_was_proposed_is_answered_fenced() {
    // A broker takes a lease from an "unfenced" answer (decision 0020): a fence already
    // proposed must count, or the lease would outlive it.
    let mut h = Harness::new(5);
    let epoch = h.start_brokers(1)[0];
    h.advance(1_600);
    h.outputs();
    assert_eq!(h.proposed.len(), 1, "the lapsed lease's fence is proposed");
    assert!(!h.image().broker(1).unwrap().fenced, "and not committed yet");
    // Behind its registration, so answered at once, from the committed image and the fence.
    let token = h.send(heartbeat(1, epoch, epoch - 1, false));
    assert!(heartbeat_of(&h.reply(token).unwrap()).is_fenced);
    h.commit_all();
    let fenced_at = h.index;
    assert!(h.image().broker(1).unwrap().fenced);
    // Caught up: unfenced again, and the answer names an offset past the fence, which the
    // broker must apply before it takes the lease.
    let token = h.send(heartbeat(1, epoch, fenced_at, false));
    h.commit_all();
    let reply = heartbeat_of(&h.reply(token).unwrap());
    assert!(!reply.is_fenced);
    assert!(reply.metadata_offset > fenced_at);
    assert_eq!(reply.metadata_offset, h.image().last_applied());
}

#[test]
fn heartbeats_with_a_stale_or_unknown_epoch_are_refused() {
    let mut h = Harness::new(1);
    let epoch = epoch_of(&h.register(1, 10));
    assert_eq!(error_of(&h.call(heartbeat(1, epoch + 1, 99, false))), 77);
    assert_eq!(error_of(&h.call(heartbeat(2, epoch, 99, false))), 102);
    // A registration not yet committed has no epoch anybody can know (0 in speculation).
    h.send(register(3, 30));
    assert_eq!(error_of(&h.call(heartbeat(3, 0, 99, false))), 77);
}

#[test]
fn a_lapsed_lease_fences_the_broker_and_moves_its_leaderships() {
    let mut h = Harness::new(5);
    let epochs = h.start_brokers(3);
    h.call(create("t", 3, 3));
    let id = h.topic("t").id;
    let led_by_1: Vec<i32> =
        (0..3).filter(|p| h.topic("t").partitions[*p].leader == 1).map(|p| p as i32).collect();
    assert_eq!(led_by_1.len(), 1, "leaders are spread");
    // Brokers 2 and 3 keep heartbeating; broker 1 goes silent.
    for _ in 0..3 {
        h.advance(400);
        for id in [2, 3] {
            h.heartbeat(id, epochs[id as usize - 1], h.index);
        }
    }
    h.advance(299);
    assert_eq!(h.outputs(), vec![], "the lease lasts 1500 ms");
    h.advance(1);
    let outputs = h.outputs();
    assert_eq!(outputs.len(), 1, "one batch fences broker 1: {outputs:?}");
    let ControllerOutput::Propose { records } = &outputs[0] else { panic!("{outputs:?}") };
    assert_eq!(records[0], fence(1, epochs[0]));
    // Every partition loses broker 1 from its ISR; the one it led gets the next ISR member.
    let mut expected = vec![fence(1, epochs[0])];
    for partition in 0..3 {
        let state = &h.topic("t").partitions[partition as usize];
        let isr: Vec<i32> = state.replicas.iter().copied().filter(|b| *b != 1).collect();
        let mut change = change(id, partition);
        change.isr = Some(BrokerList::of(&isr));
        if state.leader == 1 {
            change.leader = Some(isr[0]);
        }
        expected.push(RecordKind::PartitionChange(change).into());
    }
    assert_eq!(records, &expected);
    h.commit_all();
    let moved = &h.topic("t").partitions[led_by_1[0] as usize];
    assert_ne!(moved.leader, 1);
    assert_eq!((moved.leader_epoch, moved.partition_epoch), (1, 1));
    assert!(!h.image().is_live(1));
}

#[test]
fn fencing_keeps_the_last_isr_member_so_it_can_lead_again() {
    let mut h = Harness::new(2);
    let epochs = h.start_brokers(1);
    h.call(create("t", 1, 1));
    let id = h.topic("t").id;
    h.advance(1500);
    let mut offline = change(id, 0);
    offline.leader = Some(NO_LEADER);
    let fenced = vec![fence(1, epochs[0]), RecordKind::PartitionChange(offline).into()];
    assert_eq!(h.outputs(), vec![proposal(fenced)]);
    h.commit_all();
    let state = &h.topic("t").partitions[0];
    assert_eq!((state.leader, state.isr.clone()), (NO_LEADER, vec![1]));
    // It comes back and catches up: unfenced, and it leads again in a new epoch.
    h.advance(10);
    let token = h.send(heartbeat(1, epochs[0], h.index, false));
    let mut leads = change(id, 0);
    leads.leader = Some(1);
    let back = vec![unfence(1, epochs[0]), RecordKind::PartitionChange(leads).into()];
    assert_eq!(h.outputs(), vec![proposal(back)]);
    h.commit_all();
    assert!(!heartbeat_of(&h.reply(token).unwrap()).is_fenced);
    let state = &h.topic("t").partitions[0];
    assert_eq!((state.leader, state.leader_epoch, state.partition_epoch), (1, 2, 2));
}

#[test]
fn a_new_active_controller_gives_every_broker_a_fresh_lease() {
    let mut h = Harness::new(3);
    h.start_brokers(2);
    let image = h.image().clone();
    h.controller.become_inactive(Some(9));
    h.advance(5_000);
    let mut next = Controller::new(ControllerConfig::default());
    next.become_active(h.now, image);
    assert_eq!(next.poll_timeout(), Some(h.now + Duration::from_millis(1500)));
    next.handle_timeout(h.now + Duration::from_millis(1499));
    assert_eq!(next.poll_output(), None, "nobody is fenced before their fresh lease lapses");
    next.handle_timeout(h.now + Duration::from_millis(1500));
    let fenced: Vec<ControllerOutput> = std::iter::from_fn(|| next.poll_output()).collect();
    assert_eq!(fenced.len(), 2, "both fenced once it lapses: {fenced:?}");
}

#[test]
fn losing_leadership_fails_pending_requests_and_drops_untaken_proposals() {
    let mut h = Harness::new(4);
    h.start_brokers(1);
    let taken = h.send(create("a", 1, 1));
    h.outputs();
    let untaken = h.send(create("b", 1, 1));
    h.controller.become_inactive(Some(3));
    let not_controller =
        ControllerResponse::error(&ControllerError::NotController { leader_hint: Some(3) });
    let outputs: Vec<ControllerOutput> =
        std::iter::from_fn(|| h.controller.poll_output()).collect();
    assert_eq!(
        outputs,
        vec![
            ControllerOutput::Reply { token: taken, response: not_controller.clone() },
            ControllerOutput::Reply { token: untaken, response: not_controller.clone() },
        ]
    );
    // Inactive: every request is refused with the hint, commits and timeouts do nothing.
    let token = h.send(create("c", 1, 1));
    let outputs: Vec<ControllerOutput> =
        std::iter::from_fn(|| h.controller.poll_output()).collect();
    assert_eq!(outputs, vec![ControllerOutput::Reply { token, response: not_controller }]);
    h.controller.handle_committed(99, &[]);
    h.controller.handle_timeout(h.now + Duration::from_secs(60));
    assert_eq!((h.controller.poll_output(), h.controller.poll_timeout()), (None, None));
}

#[test]
fn a_restarted_broker_replaces_its_old_registration() {
    let mut h = Harness::new(6);
    let epochs = h.start_brokers(2);
    h.call(create("t", 2, 2));
    // The new process registers while the old one's lease is still live: refused.
    assert_eq!(error_of(&h.call(register(1, 9999))), 101);
    // The same process retrying its registration gets its epoch back, with no record.
    let token = h.send(register(1, 1000));
    assert_eq!(h.proposed.len(), 0);
    assert_eq!(epoch_of(&h.reply(token).unwrap()), epochs[0]);
    // Once the lease lapsed, the new incarnation registers and the old epoch is stale.
    h.advance(1000);
    h.heartbeat(2, epochs[1], h.index);
    h.advance(600);
    h.commit_all();
    let new_epoch = epoch_of(&h.register(1, 9999));
    assert!(new_epoch > epochs[0]);
    assert_eq!(error_of(&h.call(heartbeat(1, epochs[0], h.index, false))), 77);
    let unfenced = h.heartbeat(1, new_epoch, h.index);
    assert!(!heartbeat_of(&unfenced).is_fenced);
    assert_eq!(h.image().broker(1).unwrap().incarnation, 9999);
}

#[test]
fn a_broker_back_with_another_data_directory_is_no_longer_eligible_to_lead() {
    // (directory broker 1 comes back with) -> its partition's ISR and ELR
    for (directory_id, kept) in [(7, true), (8, false)] {
        let mut h = Harness::new(6);
        let epochs = h.start_brokers(2);
        let mut request = create("t", 1, 2);
        if let RequestKind::CreateTopic(create) = &mut request {
            create.config.insert("min.insync.replicas".into(), "2".into());
        }
        h.call(request);
        // Broker 1's lease lapses: the ISR falls below min isr, so broker 1 stays eligible.
        h.advance(1000);
        h.heartbeat(2, epochs[1], h.index);
        h.advance(600);
        h.commit_all();
        let state = &h.topic("t").partitions[0];
        assert_eq!((state.leader, state.isr.clone(), state.elr.clone()), (2, vec![2], vec![1]));
        // A restart keeps it eligible; a wipe and a new format do not.
        h.call(register_from(1, 5000, directory_id));
        let state = &h.topic("t").partitions[0];
        let elr = if kept { vec![1] } else { vec![] };
        assert_eq!((state.isr.clone(), state.elr.clone()), (vec![2], elr), "dir {directory_id}");
    }
}

#[test]
fn a_registration_replacing_a_live_broker_moves_its_partitions_in_the_same_batch() {
    let mut h = Harness::new(6);
    h.start_brokers(2);
    h.call(create("t", 2, 2));
    // The lease has lapsed but no timeout has fired yet: the broker is still live.
    h.now = h.now + Duration::from_millis(2000);
    let token = h.send(register(1, 777));
    let outputs = h.outputs();
    let ControllerOutput::Propose { records } = &outputs[0] else { panic!("{outputs:?}") };
    assert_eq!(records.len(), 3, "the registration and both partitions: {records:?}");
    h.commit_all();
    assert!(h.reply(token).is_some());
    for state in &h.topic("t").partitions {
        assert_eq!((state.leader, state.isr.clone()), (2, vec![2]));
    }
}

#[test]
fn a_controlled_shutdown_moves_leaderships_before_the_broker_stops() {
    let mut h = Harness::new(8);
    let epochs = h.start_brokers(2);
    h.call(create("t", 2, 2));
    let token = h.send(heartbeat(1, epochs[0], h.index, true));
    assert_eq!(h.reply(token), None, "answered once the fence commits");
    h.commit_all();
    let reply = heartbeat_of(&h.reply(token).unwrap());
    assert_eq!(
        reply,
        HeartbeatReply {
            is_caught_up: true,
            is_fenced: true,
            should_shut_down: true,
            metadata_offset: h.image().last_applied(),
        }
    );
    for state in &h.topic("t").partitions {
        assert_eq!(state.leader, 2);
    }
    // Heartbeats while shutting down stay fenced and answer at once.
    let again = h.call(heartbeat(1, epochs[0], h.index, true));
    assert!(heartbeat_of(&again).should_shut_down);
}

#[test]
fn producer_ids_come_in_consecutive_blocks_of_a_thousand() {
    let mut h = Harness::new(9);
    let epochs = h.start_brokers(2);
    let allocate = |broker_id: i32, broker_epoch: u64| {
        RequestKind::AllocateProducerIds(AllocateProducerIdsRequest { broker_id, broker_epoch })
    };
    // Two in flight at once get different blocks.
    let first = h.send(allocate(1, epochs[0]));
    let second = h.send(allocate(2, epochs[1]));
    h.commit_all();
    let block = |response: ControllerResponse| match response.reply {
        Some(ReplyKind::ProducerIds(reply)) => (reply.first_id, reply.count),
        _ => panic!("{response:?}"),
    };
    assert_eq!(block(h.reply(first).unwrap()), (0, 1000));
    assert_eq!(block(h.reply(second).unwrap()), (1000, 1000));
    assert_eq!(h.image().next_producer_id(), 2000);
    assert_eq!(error_of(&h.call(allocate(1, epochs[0] + 5))), 77);
}

#[test]
fn too_many_pending_batches_are_refused_until_some_commit() {
    let mut h = Harness::new(10);
    let epochs = h.start_brokers(1);
    let allocate = RequestKind::AllocateProducerIds(AllocateProducerIdsRequest {
        broker_id: 1,
        broker_epoch: epochs[0],
    });
    for _ in 0..crate::core::limits::CONTROLLER_PENDING_BATCHES_MAX {
        h.send(allocate.clone());
    }
    let token = h.send(allocate.clone());
    assert_eq!(error_of(&h.reply(token).unwrap()), 7);
    h.commit_one();
    let token = h.send(allocate);
    assert_eq!(h.reply(token), None, "room again: proposed");
}

#[test]
fn a_snapshot_restores_the_same_image() {
    let mut h = Harness::new(20);
    let epochs = h.start_brokers(3);
    let mut rack = register(4, 4000);
    if let RequestKind::RegisterBroker(request) = &mut rack {
        request.rack = Some("rack-b".into());
    }
    h.call(rack);
    let config = [("min.insync.replicas".to_string(), "3".to_string())].into();
    let request = CreateTopicRequest {
        name: "t".into(),
        partitions: 4,
        replication_factor: 3,
        config,
        validate_only: false,
    };
    h.call(RequestKind::CreateTopic(request));
    h.call(create("u", 2, 1));
    let allocate = AllocateProducerIdsRequest { broker_id: 1, broker_epoch: epochs[0] };
    h.call(RequestKind::AllocateProducerIds(allocate));
    // Broker 3 goes: ISRs shrink below min ISR, so it becomes eligible somewhere.
    for _ in 0..4 {
        h.advance(400);
        for id in [1, 2] {
            h.heartbeat(id, epochs[id as usize - 1], h.index);
        }
    }
    h.commit_all();
    let image = h.image().clone();
    assert!(image.broker(3).unwrap().fenced && image.broker(4).unwrap().fenced);
    assert!(image.topic("t").unwrap().partitions.iter().any(|p| !p.elr.is_empty()));
    let restored = MetadataImage::restore(image.last_applied(), &image.snapshot()).unwrap();
    assert_eq!(restored, image);
    restored.invariants();
    assert!(MetadataImage::restore(1, &[0x0a, 0x05, 0xff]).is_err());
}

#[test]
fn empty_committed_batches_only_move_the_applied_index() {
    let mut h = Harness::new(21);
    h.start_brokers(1);
    let token = h.send(create("t", 1, 1));
    h.outputs();
    h.index += 1;
    h.follower.apply(h.index, &[]);
    h.controller.handle_committed(h.index, &[]);
    assert_eq!(h.image().last_applied(), h.index);
    assert_eq!(h.reply(token), None, "the pending batch is still pending");
    h.commit_all();
    assert_eq!(h.reply(token).unwrap().error_code, 0);
}

#[test]
fn registrations_without_a_usable_endpoint_are_refused() {
    let mut h = Harness::new(22);
    let with = |f: &dyn Fn(&mut RegisterBrokerRequest)| {
        let RequestKind::RegisterBroker(mut request) = register(1, 1) else { unreachable!() };
        f(&mut request);
        RequestKind::RegisterBroker(request)
    };
    for request in [
        with(&|r| r.node_id = -1),
        with(&|r| r.host.clear()),
        with(&|r| r.port = 0),
        with(&|r| r.port = 70_000),
    ] {
        assert_eq!(error_of(&h.call(request.clone())), 42, "{request:?}");
    }
    assert_eq!(h.image().brokers().count(), 0);
}

#[test]
fn two_pending_registrations_of_one_broker_leave_the_last_epoch() {
    let mut h = Harness::new(23);
    let first = h.send(register(1, 10));
    let second = h.send(register(1, 20));
    // The speculative image has no epoch for broker 1 until the second commits.
    h.commit_one();
    assert_eq!(h.controller.speculative_image().unwrap().broker(1).unwrap().epoch, 0);
    h.commit_one();
    assert_eq!(epoch_of(&h.reply(first).unwrap()), 2);
    assert_eq!(epoch_of(&h.reply(second).unwrap()), 3);
    let broker = h.controller.speculative_image().unwrap().broker(1).unwrap().clone();
    assert_eq!((broker.epoch, broker.incarnation), (3, 20));
    assert_eq!(error_of(&h.call(heartbeat(1, 2, 3, false))), 77);
    assert!(!heartbeat_of(&h.heartbeat(1, 3, 3)).is_fenced);
}

#[test]
fn the_next_timeout_is_the_earliest_lease_and_heartbeats_move_it() {
    let mut h = Harness::new(24);
    let start = h.now;
    let epochs = h.start_brokers(2);
    let lease = Duration::from_millis(1500);
    assert_eq!(h.controller.poll_timeout(), Some(start + lease));
    h.advance(1000);
    h.heartbeat(1, epochs[0], h.index);
    assert_eq!(h.controller.poll_timeout(), Some(start + lease), "broker 2's lease is first");
    h.heartbeat(2, epochs[1], h.index);
    assert_eq!(h.controller.poll_timeout(), Some(h.now + lease));
}

#[test]
fn a_closed_link_cuts_a_lease_to_the_grace_and_a_heartbeat_renews_it() {
    let mut h = Harness::new(25);
    let epochs = h.start_brokers(2);
    let (lease, grace) = (Duration::from_millis(1500), Duration::from_millis(500));
    h.heartbeat(1, epochs[0], h.index);
    h.heartbeat(2, epochs[1], h.index);
    let broker_2_lease = h.now + lease;
    h.controller.handle_broker_link_down(h.now, 1);
    assert_eq!(h.controller.poll_timeout(), Some(h.now + grace), "broker 1's lease is cut");
    // A second report, later, never lengthens it.
    let cut = h.now + grace;
    h.advance(100);
    h.controller.handle_broker_link_down(h.now, 1);
    assert_eq!(h.controller.poll_timeout(), Some(cut));
    // A heartbeat within the grace renews the full lease (broker 2's is now the first to
    // end): the blip cost nothing.
    h.heartbeat(1, epochs[0], h.index);
    assert_eq!(h.controller.poll_timeout(), Some(broker_2_lease));
    // Without one, the broker is fenced when the grace ends.
    h.controller.handle_broker_link_down(h.now, 2);
    h.advance(500);
    h.commit_all();
    assert!(h.image().broker(2).expect("registered").fenced);
    assert!(!h.image().broker(1).expect("registered").fenced);
    // Unknown brokers and an inactive controller ignore the news.
    h.controller.handle_broker_link_down(h.now, 9);
    h.controller.become_inactive(None);
    h.controller.handle_broker_link_down(h.now, 1);
    assert_eq!(h.controller.poll_timeout(), None);
}

#[test]
fn a_returning_broker_leads_again_every_partition_it_can() {
    let mut h = Harness::new(25);
    let epochs = h.start_brokers(2);
    h.call(create("t", 4, 1));
    let id = h.topic("t").id;
    let mine: Vec<i32> =
        (0..4).filter(|p| h.topic("t").partitions[*p as usize].leader == 1).collect();
    assert_eq!(mine.len(), 2, "two partitions each");
    // Broker 1's lease lapses: its partitions go offline (they have no other replica).
    h.advance(1000);
    h.heartbeat(2, epochs[1], h.index);
    h.advance(500);
    h.commit_all();
    for &p in &mine {
        assert_eq!(h.topic("t").partitions[p as usize].leader, NO_LEADER);
    }
    // It comes back: one batch unfences it and elects it in both.
    let token = h.send(heartbeat(1, epochs[0], h.index, false));
    let mut expected = vec![unfence(1, epochs[0])];
    for &p in &mine {
        let mut leads = change(id, p);
        leads.leader = Some(1);
        expected.push(RecordKind::PartitionChange(leads).into());
    }
    assert_eq!(h.outputs(), vec![proposal(expected)]);
    h.commit_all();
    assert!(!heartbeat_of(&h.reply(token).unwrap()).is_fenced);
}

#[test]
#[should_panic(expected = "is not the one proposed")]
fn a_committed_batch_that_is_not_the_oldest_proposal_is_a_bug() {
    let mut h = Harness::new(26);
    h.send(register(1, 10));
    h.outputs();
    // Another controller's batch committing while this one is active breaks the contract
    // of become_active.
    h.controller.handle_committed(2, &[fence(9, 1)]);
}

#[test]
fn requests_and_responses_survive_the_wire() {
    let request: ControllerRequest = heartbeat(3, 17, 20, true).into();
    let bytes = prost::Message::encode_to_vec(&request);
    assert_eq!(<ControllerRequest as prost::Message>::decode(bytes.as_slice()).unwrap(), request);
    let mut h = Harness::new(27);
    let response = h.register(1, 10);
    let bytes = prost::Message::encode_to_vec(&response);
    assert_eq!(<ControllerResponse as prost::Message>::decode(bytes.as_slice()).unwrap(), response);
    // A request of a kind this version does not know is refused, not dropped.
    let token = h.send_raw(ControllerRequest { kind: None });
    assert_eq!(error_of(&h.reply(token).unwrap()), 42);
}
