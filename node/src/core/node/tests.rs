//! Nodes run together over in-memory disks and a network that delivers in order: a single
//! node serving clients, and a three-node cluster replicating, failing over and healing.
//! The simulator runs the same nodes under faults; these are the stories told exactly.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;

use super::lease::BrokerLease;
use super::*;
use crate::core::coordinator::{
    CoordinatorError, CoordinatorRequest, CoordinatorResponse, OFFSETS_TOPIC, OffsetCommit,
};
use crate::core::io::DiskDriver;
use crate::core::log::batch::build;
use crate::core::raft::tests_harness::MemDisk;
use crate::core::replica::Role;
use crate::core::topic::TopicError;

const T0: Instant = Instant::from_millis(1_700_000_000_000);
const CLIENT: ConnId = ConnId(1);

/// Nodes 1..=n, their disks, and the messages between them.
struct Cluster {
    nodes: Vec<Option<Node>>,
    disks: Vec<MemDisk>,
    cluster: ClusterConfig,
    now: Instant,
    wire: VecDeque<(NodeId, NodeId, Message)>,
    replies: Vec<(RequestId, Response)>,
    next_request: u64,
    seed: u64,
    /// Pairs of nodes whose messages to each other are lost, both ways.
    cut: Vec<(NodeId, NodeId)>,
}

impl Cluster {
    /// A formatted cluster of `n` nodes, all voters, started.
    fn new(n: u32) -> Cluster {
        let ids: Vec<NodeId> = (1..=n).map(NodeId).collect();
        let mut cluster = ClusterConfig::single(NodeId(1));
        cluster.cluster_id = "test".into();
        cluster.voters = ids.clone();
        cluster.default_replication_factor = n.min(3) as i32;
        let mut disks = Vec::new();
        for id in &ids {
            let mut disk = MemDisk::default();
            for op in format_ops(*id, &cluster, true, u64::from(id.0)) {
                disk.execute(op).expect("formatting succeeds");
            }
            disks.push(disk);
        }
        let nodes = ids.iter().map(|_| None).collect();
        let mut c = Cluster {
            nodes,
            disks,
            cluster,
            now: T0,
            wire: VecDeque::new(),
            replies: Vec::new(),
            next_request: 0,
            seed: 7,
            cut: Vec::new(),
        };
        for id in ids {
            c.start(id);
        }
        c
    }

    fn start(&mut self, id: NodeId) {
        self.seed += 1;
        let mut cluster = self.cluster.clone();
        cluster.advertised_host = format!("node-{}", id.0);
        let config = NodeConfig {
            node_id: id,
            seed: self.seed,
            cluster,
            offsets_topic_partitions: 3,
            ..NodeConfig::default()
        };
        self.nodes[id.0 as usize - 1] = Some(Node::new(config, self.now));
        self.settle();
    }

    /// Power loss on node `id`: its memory and unsynced writes are gone.
    fn crash(&mut self, id: NodeId) {
        self.nodes[id.0 as usize - 1] = None;
        let mut rng = crate::core::rng::seeded(self.seed);
        self.disks[id.0 as usize - 1].crash(&mut rng, false);
    }

    /// Node `id`'s transport reports that every connection with `peer` closed.
    fn link_down(&mut self, id: NodeId, peer: NodeId) {
        let now = self.now;
        let node = self.nodes[id.0 as usize - 1].as_mut().expect("up");
        node.handle_peer_link(now, peer, false);
        self.settle();
    }

    /// The active controller, if one node is.
    fn controller(&self) -> Option<NodeId> {
        let mut up = self.nodes.iter().flatten();
        up.find(|node| node.is_controller()).map(|node| node.config.node_id)
    }

    /// The leader epoch of `partition` in node `via`'s image.
    fn leader_epoch(&self, via: NodeId, partition: &PartitionId) -> i32 {
        let topic = self.node(via).image().topic(&partition.topic).expect("the topic exists");
        topic.partitions[partition.partition as usize].leader_epoch
    }

    fn node(&self, id: NodeId) -> &Node {
        self.nodes[id.0 as usize - 1].as_ref().expect("the node is up")
    }

    /// Carries out every output and delivers every message until nothing is left.
    fn settle(&mut self) {
        loop {
            let mut progressed = false;
            for index in 0..self.nodes.len() {
                let from = NodeId(index as u32 + 1);
                while let Some(output) = self.nodes[index].as_mut().and_then(Node::poll_output) {
                    progressed = true;
                    match output {
                        Output::Disk { id, op } => {
                            let result = self.disks[index].execute(op);
                            let node = self.nodes[index].as_mut().expect("up");
                            node.handle_disk(self.now, id, result);
                        }
                        Output::Send { to, message } => self.wire.push_back((from, to, message)),
                        Output::Reply { id, response, .. } => self.replies.push((id, response)),
                    }
                }
            }
            while let Some((from, to, message)) = self.wire.pop_front() {
                progressed = true;
                if self.cut.iter().any(|&(a, b)| (a, b) == (from, to) || (b, a) == (from, to)) {
                    continue;
                }
                if let Some(node) = self.nodes[to.0 as usize - 1].as_mut() {
                    node.handle_message(self.now, from, message);
                }
            }
            if !progressed {
                return;
            }
        }
    }

    /// Runs the cluster for `span` of time, firing every timer due.
    fn run_for(&mut self, span: Duration) {
        let end = self.now + span;
        loop {
            let next = self.nodes.iter().flatten().filter_map(Node::poll_timeout).min();
            let Some(next) = next.filter(|at| *at <= end) else { break };
            self.now = self.now.max(next);
            for node in self.nodes.iter_mut().flatten() {
                if node.poll_timeout().is_some_and(|at| at <= self.now) {
                    node.handle_timeout(self.now);
                }
            }
            self.settle();
        }
        self.now = end;
    }

    /// Sends `request` to node `to`; returns its answer once given (running time as needed).
    fn ask(&mut self, to: NodeId, request: Request) -> Response {
        self.next_request += 1;
        let id = RequestId(self.next_request);
        let node = self.nodes[to.0 as usize - 1].as_mut().expect("up");
        node.handle_request(self.now, CLIENT, id, request);
        self.settle();
        for _ in 0..200 {
            if let Some(at) = self.replies.iter().position(|(r, _)| *r == id) {
                return self.replies.remove(at).1;
            }
            self.run_for(Duration::from_millis(50));
        }
        panic!("no answer to request {id:?}");
    }

    fn create(&mut self, to: NodeId, name: &str, partitions: i32, config: TopicConfig) -> Response {
        let request = Request::CreateTopic {
            name: name.into(),
            partitions,
            replication_factor: -1,
            config,
            validate_only: false,
        };
        self.ask(to, request)
    }

    /// The partition's leader as node `via` knows it.
    fn leader(&self, via: NodeId, partition: &PartitionId) -> Option<NodeId> {
        let leader = self.node(via).image().leader(&partition.topic, partition.partition)?;
        (leader >= 0).then_some(NodeId(leader as u32))
    }

    fn produce(&mut self, to: NodeId, partition: &PartitionId, value: &[u8]) -> Response {
        let batch = build::batch(&[value], 1_000);
        let request = Request::Produce { partition: partition.clone(), acks: Acks::All, batch };
        self.ask(to, request)
    }

    fn fetch(&mut self, to: NodeId, partition: &PartitionId, offset: u64) -> Response {
        let partition = partition.clone();
        self.ask(to, Request::Fetch { partition, offset, max_bytes: 1 << 20, leader_epoch: None })
    }
}

fn values(response: &Response) -> Vec<Bytes> {
    match response {
        Response::Fetched { records, .. } => build::values(records),
        other => panic!("not a fetch answer: {other:?}"),
    }
}

#[test]
fn an_unformatted_node_refuses_to_start() {
    let mut disk = MemDisk::default();
    let mut node = Node::new(NodeConfig::default(), T0);
    while let Some(output) = node.poll_output() {
        if let Output::Disk { id, op } = output {
            let result = disk.execute(op);
            node.handle_disk(T0, id, result);
        }
    }
    let fatal = node.fatal().expect("fatal");
    assert!(fatal.contains("not formatted"), "{fatal}");
}

#[test]
fn a_single_node_registers_serves_and_describes_itself() {
    let mut c = Cluster::new(1);
    let one = NodeId(1);
    c.run_for(Duration::from_secs(1));
    assert!(c.node(one).is_started());
    assert!(c.node(one).is_controller());
    let config = TopicConfig { durability: Durability::Fsync, ..TopicConfig::default() };
    assert_eq!(c.create(one, "t", 2, config), Response::TopicChanged);
    c.run_for(Duration::from_millis(100));
    let partition = PartitionId::new("t", 1);
    assert_eq!(c.produce(one, &partition, b"hello"), Response::Produced { base_offset: 0 });
    assert_eq!(values(&c.fetch(one, &partition, 0)), vec![Bytes::from_static(b"hello")]);
    let Response::Metadata(view) =
        c.ask(one, Request::Metadata { topics: Some(vec!["t".into()]), auto_create: false })
    else {
        panic!("a view")
    };
    assert_eq!(view.controller, Some(one));
    assert_eq!(view.brokers.len(), 1);
    assert_eq!((view.brokers[0].host.as_str(), view.brokers[0].port), ("node-1", 9092));
    let state = view.topics[0].state.as_ref().expect("described");
    assert_eq!(state.partitions.len(), 2);
    assert!(state.partitions.iter().all(|p| p.leader == Some(one) && p.isr == vec![one]));
}

#[test]
fn metadata_creates_a_missing_topic_when_asked_to() {
    let mut c = Cluster::new(1);
    c.run_for(Duration::from_secs(1));
    let ask = |auto_create| Request::Metadata { topics: Some(vec!["auto".into()]), auto_create };
    let Response::Metadata(view) = c.ask(NodeId(1), ask(false)) else { panic!() };
    assert_eq!(view.topics[0].state, Err(RequestError::UnknownTopic("auto".into())));
    let Response::Metadata(view) = c.ask(NodeId(1), ask(true)) else { panic!() };
    let state = view.topics[0].state.as_ref().expect("created");
    assert_eq!(state.partitions.len(), 1);
}

#[test]
fn three_nodes_replicate_fail_over_and_heal() {
    let mut c = Cluster::new(3);
    c.run_for(Duration::from_secs(3));
    for id in 1..=3 {
        assert!(c.node(NodeId(id)).is_started(), "node {id} registered");
    }
    // Created through a node that may not be the controller: forwarded.
    assert_eq!(c.create(NodeId(2), "r", 1, TopicConfig::default()), Response::TopicChanged);
    c.run_for(Duration::from_millis(500));
    let partition = PartitionId::new("r", 0);
    let leader = c.leader(NodeId(1), &partition).expect("a leader");
    let replica = c.node(leader).replica(&partition).expect("the leader holds a replica");
    assert_eq!(replica.role(), Role::Leader);
    assert_eq!(replica.isr().len(), 3);
    assert_eq!(c.produce(leader, &partition, b"a"), Response::Produced { base_offset: 0 });
    for id in 1..=3 {
        let log = c.node(NodeId(id)).partition(&partition).expect("every node holds a replica");
        assert_eq!(log.log_end_offset(), 1, "node {id} has the acknowledged write");
    }
    // A follower asked to produce names the leader.
    let follower = NodeId(if leader.0 == 1 { 2 } else { 1 });
    let Response::Error(RequestError::Replica(error)) = c.produce(follower, &partition, b"x")
    else {
        panic!("a follower refuses")
    };
    assert_eq!(error, ReplicaError::NotLeaderOrFollower);

    // The leader loses power; the controller fences it and elects another ISR member.
    let epoch = c.node(follower).replica(&partition).unwrap().leader_epoch();
    c.crash(leader);
    c.run_for(Duration::from_secs(4));
    let new_leader = c.leader(follower, &partition).expect("a new leader");
    assert_ne!(new_leader, leader);
    assert!(c.node(new_leader).replica(&partition).unwrap().leader_epoch() > epoch);
    assert_eq!(c.produce(new_leader, &partition, b"b"), Response::Produced { base_offset: 1 });
    assert_eq!(values(&c.fetch(new_leader, &partition, 0))[0], Bytes::from_static(b"a"));
    assert_eq!(values(&c.fetch(new_leader, &partition, 1)), vec![Bytes::from_static(b"b")]);

    // The old leader comes back, registers anew, catches up and rejoins the ISR.
    c.start(leader);
    c.run_for(Duration::from_secs(8));
    assert!(c.node(leader).is_started());
    let log = c.node(leader).partition(&partition).expect("its replica is back");
    assert_eq!(log.log_end_offset(), 2, "the restarted node caught up");
    let isr = c.node(new_leader).replica(&partition).unwrap().isr().to_vec();
    assert_eq!(isr.len(), 3, "the restarted node rejoined the ISR: {isr:?}");
}

#[test]
fn deleting_a_topic_drops_every_replica() {
    let mut c = Cluster::new(3);
    c.run_for(Duration::from_secs(3));
    assert_eq!(c.create(NodeId(1), "gone", 2, TopicConfig::default()), Response::TopicChanged);
    c.run_for(Duration::from_millis(500));
    assert_eq!(c.node(NodeId(3)).partitions().count(), 2);
    let delete = Request::DeleteTopic { name: "gone".into() };
    assert_eq!(c.ask(NodeId(3), delete), Response::TopicChanged);
    c.run_for(Duration::from_millis(500));
    for id in 1..=3 {
        assert_eq!(c.node(NodeId(id)).partitions().count(), 0, "node {id} dropped its replicas");
        let files = c.disks[id as usize - 1].names();
        assert!(!files.iter().any(|f| f.starts_with("partitions/")), "{files:?}");
    }
}

/// A follower may learn of a new partition before its leader does (each applies the
/// metadata log on its own): a node that holds no replica of a partition refuses a
/// follower's request for it at once, so the follower backs off and asks again rather than
/// waiting out its request timeout with the HW held back. Answers are not answered.
#[test]
fn a_replica_request_for_a_partition_not_held_here_is_refused_at_once() {
    use crate::core::replica::{
        ErrorCode, OffsetForLeaderEpochRequest, ReplicaFetch, ReplicaMessage,
    };
    let mut c = Cluster::new(3);
    c.run_for(Duration::from_secs(3));
    let (follower, now) = (NodeId(2), c.now);
    let fetch = ReplicaMessage::Fetch(ReplicaFetch {
        topic: "not-yet".into(),
        correlation_id: 41,
        replica_id: follower.0,
        max_wait_ms: 500,
        ..ReplicaFetch::default()
    });
    let epoch = ReplicaMessage::OffsetForLeaderEpoch(OffsetForLeaderEpochRequest {
        topic: "not-yet".into(),
        correlation_id: 42,
        replica_id: follower.0,
        ..OffsetForLeaderEpochRequest::default()
    });
    let expected: Vec<ReplicaMessage> = [&fetch, &epoch]
        .map(|m| m.refusal(ErrorCode::NotLeaderOrFollower).expect("a request"))
        .into();
    let node = c.nodes[0].as_mut().expect("up");
    for (message, refusal) in [fetch, epoch].into_iter().zip(expected.clone()) {
        node.handle_message(now, follower, message.into());
        // Its own answer is not answered again.
        node.handle_message(now, follower, refusal.into());
    }
    let sent: Vec<ReplicaMessage> = std::iter::from_fn(|| node.poll_output())
        .filter_map(|output| match output {
            Output::Send { to, message } if to == follower => message.kind?.into_replica(),
            _ => None,
        })
        .collect();
    assert_eq!(sent, expected);
    for message in &sent {
        let code = match message {
            ReplicaMessage::FetchResponse(r) => r.error_code,
            ReplicaMessage::OffsetForLeaderEpochResponse(r) => r.error_code,
            other => panic!("not an answer: {other:?}"),
        };
        assert_eq!(code, 6, "NOT_LEADER_OR_FOLLOWER");
    }
}

/// A cluster of three with a topic of three partitions, so each node leads one.
fn three_nodes_with_a_topic() -> Cluster {
    let mut c = Cluster::new(3);
    c.run_for(Duration::from_secs(3));
    assert_eq!(c.create(NodeId(1), "f", 3, TopicConfig::default()), Response::TopicChanged);
    c.run_for(Duration::from_millis(500));
    c
}

/// A partition of topic "f" that `wanted` says yes to the leader of, and that leader.
fn partition_led(c: &Cluster, wanted: impl Fn(NodeId) -> bool) -> (PartitionId, NodeId) {
    let controller = c.controller().expect("a controller");
    (0..3)
        .map(|p| PartitionId::new("f", p))
        .find_map(|p| c.leader(controller, &p).filter(|l| wanted(*l)).map(|l| (p, l)))
        .expect("such a partition")
}

/// A cluster from [`three_nodes_with_a_topic`] and a partition led by a broker that is not
/// the active controller.
struct PlainLeader {
    c: Cluster,
    controller: NodeId,
    partition: PartitionId,
    leader: NodeId,
    /// The partition's leader epoch now.
    epoch: i32,
}

fn a_partition_led_by_a_broker_alone() -> PlainLeader {
    let c = three_nodes_with_a_topic();
    let controller = c.controller().expect("a controller");
    let (partition, leader) = partition_led(&c, |l| l != controller);
    let epoch = c.leader_epoch(controller, &partition);
    PlainLeader { c, controller, partition, leader, epoch }
}

/// The grace a closed link leaves a broker (two heartbeats), and the lease it cuts short.
fn grace_and_session() -> (Duration, Duration) {
    let cluster = ClusterConfig::single(NodeId(1));
    (cluster.broker_heartbeat_interval * 2, cluster.broker_session_timeout)
}

#[test]
fn a_killed_broker_whose_connections_closed_is_fenced_within_the_grace() {
    let PlainLeader { mut c, controller, partition, leader, epoch } =
        a_partition_led_by_a_broker_alone();
    c.crash(leader);
    for id in (1..=3).map(NodeId).filter(|id| *id != leader) {
        c.link_down(id, leader);
    }
    // Before it is fenced, Metadata already sends clients looking for a new leader.
    let describe = Request::Metadata { topics: Some(vec!["f".into()]), auto_create: false };
    let Response::Metadata(view) = c.ask(controller, describe) else { panic!("a view") };
    let state = view.topics[0].state.as_ref().expect("described");
    let info = &state.partitions[partition.partition as usize];
    assert_eq!((info.leader, info.offline.as_slice()), (None, &[leader][..]));
    assert!(view.brokers.iter().any(|b| b.node_id == leader), "listed until fenced");
    // Its lease, renewed by its last heartbeat, ends at least 1.25 s from now.
    let (grace, session) = grace_and_session();
    c.run_for(grace + Duration::from_millis(100));
    assert!(grace + Duration::from_millis(100) < session - Duration::from_millis(250));
    let broker = c.node(controller).image().broker(leader.0 as i32).expect("registered");
    assert!(broker.fenced, "the dead broker is fenced");
    let new_leader = c.leader(controller, &partition).expect("a new leader");
    assert_ne!(new_leader, leader);
    assert!(c.leader_epoch(controller, &partition) > epoch);
    assert_eq!(c.produce(new_leader, &partition, b"after"), Response::Produced { base_offset: 0 });
}

#[test]
fn a_broker_that_heartbeats_within_the_grace_keeps_its_leadership() {
    let PlainLeader { mut c, controller, partition, leader, epoch } =
        a_partition_led_by_a_broker_alone();
    // A blip: the controller's transport saw the connections close, the broker lives on.
    c.link_down(controller, leader);
    assert_eq!(c.node(controller).peers_down().collect::<Vec<_>>(), vec![leader]);
    c.run_for(Duration::from_secs(3));
    assert_eq!(c.node(controller).peers_down().count(), 0, "its messages showed it alive");
    let broker = c.node(controller).image().broker(leader.0 as i32).expect("registered");
    assert!(!broker.fenced, "a broker that heartbeats in the grace stays unfenced");
    assert_eq!(c.leader(controller, &partition), Some(leader));
    assert_eq!(c.leader_epoch(controller, &partition), epoch, "no election happened");
}

#[test]
fn a_killed_controller_that_led_a_partition_is_replaced_on_both_counts_within_the_grace() {
    let mut c = three_nodes_with_a_topic();
    let controller = c.controller().expect("a controller");
    let (partition, _) = partition_led(&c, |l| l == controller);
    c.crash(controller);
    for id in (1..=3).map(NodeId).filter(|id| *id != controller) {
        c.link_down(id, controller);
    }
    // Without the signal: an election timeout (at least 400 ms from now), then a fresh
    // 1.5 s lease from the new controller. With it: a pre-vote within a Raft heartbeat
    // interval, and the new controller gives the dead broker the grace only (500 ms).
    c.run_for(Duration::from_millis(800));
    let new_controller = c.controller().expect("a new controller");
    assert_ne!(new_controller, controller);
    let new_leader = c.leader(new_controller, &partition).expect("a new leader");
    assert_ne!(new_leader, controller);
    assert_eq!(c.produce(new_leader, &partition, b"after"), Response::Produced { base_offset: 0 });
}

/// Asks node `via` which node coordinates `group` until one is named (the first request
/// creates `__consumer_offsets`).
fn find_coordinator(c: &mut Cluster, via: NodeId, group: &str) -> NodeId {
    for _ in 0..20 {
        let request = Request::FindCoordinator { key: group.into(), key_type: 0 };
        match c.ask(via, request) {
            Response::Coordinator { node_id, .. } => return node_id,
            Response::Error(RequestError::Coordinator(CoordinatorError::NotAvailable(_))) => {
                c.run_for(Duration::from_millis(200));
            }
            other => panic!("FindCoordinator answered {other:?}"),
        }
    }
    panic!("no coordinator for {group}");
}

fn commit(c: &mut Cluster, to: NodeId, group: &str, offset: i64) -> Response {
    let offsets = vec![(PartitionId::new("f", 0), offset, 0, String::new())];
    let commit = OffsetCommit {
        group: group.into(),
        generation: -1,
        member_id: String::new(),
        group_instance_id: None,
        offsets,
    };
    c.ask(to, Request::Group(CoordinatorRequest::Commit(commit)))
}

fn committed(c: &mut Cluster, to: NodeId, group: &str) -> Response {
    let fetch = CoordinatorRequest::Fetch { group: group.into(), partitions: None };
    c.ask(to, Request::Group(fetch))
}

#[test]
fn a_commit_survives_the_coordinators_crash_and_the_new_leader_answers_it() {
    let mut c = three_nodes_with_a_topic();
    let coordinator = find_coordinator(&mut c, NodeId(1), "g");
    let topic = c.node(NodeId(1)).image().topic(OFFSETS_TOPIC).expect("created").clone();
    assert_eq!(topic.partitions.len(), 3);
    assert_eq!(topic.settings.log.retention_ms, -1, "retention never deletes a commit");
    assert_eq!(topic.partitions[0].replicas.len(), 3);
    c.run_for(Duration::from_millis(500));
    assert_eq!(
        commit(&mut c, coordinator, "g", 42),
        Response::Group(CoordinatorResponse::Commit(Ok(())))
    );
    // Its metrics: the committed offset, and the lag's HW only where it leads the partition.
    let offsets = c.node(coordinator).group_offsets();
    assert_eq!(offsets.len(), 1);
    assert_eq!((offsets[0].group.as_str(), offsets[0].committed), ("g", 42));
    let leads = c.leader(coordinator, &PartitionId::new("f", 0)) == Some(coordinator);
    assert_eq!(offsets[0].high_watermark.is_some(), leads);
    // Another node is not the coordinator.
    let other = NodeId(if coordinator.0 == 1 { 2 } else { 1 });
    let refused = CoordinatorResponse::Commit(Err(CoordinatorError::NotCoordinator));
    assert_eq!(commit(&mut c, other, "g", 1), Response::Group(refused));

    c.crash(coordinator);
    c.run_for(Duration::from_secs(4));
    let survivor = NodeId(if coordinator.0 == 3 { 2 } else { 3 });
    let next = find_coordinator(&mut c, survivor, "g");
    assert_ne!(next, coordinator);
    c.run_for(Duration::from_millis(500));
    let Response::Group(CoordinatorResponse::Fetch(Ok(offsets))) = committed(&mut c, next, "g")
    else {
        panic!("a fetch answer")
    };
    assert_eq!(offsets.len(), 1);
    assert_eq!(offsets[0].1.as_ref().map(|o| o.offset), Some(42));
}

#[test]
fn a_client_cannot_produce_to_the_offsets_topic_and_commits_are_untouched() {
    let mut c = three_nodes_with_a_topic();
    let coordinator = find_coordinator(&mut c, NodeId(1), "g");
    c.run_for(Duration::from_millis(500));
    assert_eq!(
        commit(&mut c, coordinator, "g", 7),
        Response::Group(CoordinatorResponse::Commit(Ok(())))
    );
    let offsets_partitions = c.node(coordinator).image().topic(OFFSETS_TOPIC).expect("made");
    let count = offsets_partitions.partitions.len() as i32;
    for partition in 0..count {
        let id = PartitionId::new(OFFSETS_TOPIC, partition);
        let leader = c.leader(NodeId(1), &id).expect("a leader");
        let Response::Error(RequestError::InvalidTopic(TopicError::Internal(topic))) =
            c.produce(leader, &id, b"not a coordinator record")
        else {
            panic!("partition {partition}: a client's produce to {OFFSETS_TOPIC} is refused")
        };
        assert_eq!(topic, OFFSETS_TOPIC);
    }
    let Response::Group(CoordinatorResponse::Fetch(Ok(offsets))) =
        committed(&mut c, coordinator, "g")
    else {
        panic!("a fetch answer")
    };
    assert_eq!(offsets[0].1.as_ref().map(|o| o.offset), Some(7));
}

fn producer_id(response: Response) -> i64 {
    match response {
        Response::ProducerId { producer_id, producer_epoch: 0 } => producer_id,
        other => panic!("not a producer id: {other:?}"),
    }
}

#[test]
fn producer_ids_never_repeat_across_blocks_nodes_and_restarts() {
    use crate::core::limits::PRODUCER_ID_BLOCK_SIZE;
    let mut c = Cluster::new(3);
    c.run_for(Duration::from_secs(3));
    let mut seen = std::collections::BTreeSet::new();
    let init = || Request::InitProducerId { transactional_id: None };
    // More than a block from one broker, and some from each of the others.
    for _ in 0..PRODUCER_ID_BLOCK_SIZE + 2 {
        assert!(seen.insert(producer_id(c.ask(NodeId(2), init()))), "an id twice");
    }
    for id in [1, 3] {
        assert!(seen.insert(producer_id(c.ask(NodeId(id), init()))), "an id twice");
    }
    // Every node loses power and comes back: blocks handed out are committed, so the new
    // ones start past them (the unused rest of a block is abandoned).
    for id in 1..=3 {
        c.crash(NodeId(id));
    }
    for id in 1..=3 {
        c.start(NodeId(id));
    }
    c.run_for(Duration::from_secs(5));
    for id in 1..=3 {
        let fresh = producer_id(c.ask(NodeId(id), init()));
        assert!(fresh > *seen.last().expect("ids"), "node {id}: {fresh} after a restart");
        assert!(seen.insert(fresh));
    }
    let transactional = Request::InitProducerId { transactional_id: Some("tx".into()) };
    assert_eq!(
        c.ask(NodeId(1), transactional),
        Response::Error(RequestError::TransactionsUnsupported)
    );
}

#[test]
fn a_coordinator_cut_off_from_the_controller_stops_answering_once_its_lease_lapses() {
    let mut c = three_nodes_with_a_topic();
    let controller = c.controller().expect("a controller");
    // A group coordinated by a broker that is not the active controller.
    let (group, coordinator) = (0..20)
        .map(|i| format!("g{i}"))
        .find_map(|group| {
            let coordinator = find_coordinator(&mut c, controller, &group);
            (coordinator != controller).then_some((group, coordinator))
        })
        .expect("some group is coordinated away from the controller");
    c.run_for(Duration::from_millis(500));
    assert_eq!(
        commit(&mut c, coordinator, &group, 42),
        Response::Group(CoordinatorResponse::Commit(Ok(())))
    );
    assert!(c.node(coordinator).holds_lease(c.now));
    // Cut off from the controller: its heartbeats go unanswered from now on.
    c.cut.push((coordinator, controller));
    let cut_at = c.now;
    let answered = |response: Response| match response {
        Response::Group(CoordinatorResponse::Fetch(Ok(offsets))) => {
            Ok(offsets[0].1.as_ref().map(|o| o.offset))
        }
        Response::Group(CoordinatorResponse::Fetch(Err(error))) => Err(error),
        other => panic!("a fetch answer, not {other:?}"),
    };
    // Within its lease it still answers: the controller cannot have fenced it yet.
    c.run_for(Duration::from_millis(900));
    assert_eq!(answered(committed(&mut c, coordinator, &group)), Ok(Some(42)));
    // The lease ran from a heartbeat sent before the cut, so it lapses within the session
    // less the margin (1.35 s); a broker does not know whether it was fenced, so it stops.
    let length = BrokerLease::length(c.cluster.broker_session_timeout);
    c.run_for(length.saturating_sub(c.now.saturating_duration_since(cut_at)));
    assert!(!c.node(coordinator).holds_lease(c.now));
    let refused = Err(CoordinatorError::NotCoordinator);
    assert_eq!(answered(committed(&mut c, coordinator, &group)), refused);
    assert_eq!(
        commit(&mut c, coordinator, &group, 43),
        Response::Group(CoordinatorResponse::Commit(Err(CoordinatorError::NotCoordinator)))
    );
    // Healed: whoever coordinates the group now answers the commit.
    c.cut.clear();
    c.run_for(Duration::from_secs(3));
    let next = find_coordinator(&mut c, controller, &group);
    assert!(c.node(next).holds_lease(c.now));
    assert_eq!(answered(committed(&mut c, next, &group)), Ok(Some(42)));
}
