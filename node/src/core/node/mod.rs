//! One Cairn node: a member of the metadata quorum (Raft), possibly the active controller,
//! and a broker hosting replicas of partitions (design §4, §5; decision 0009).
//!
//! A [`Node`] routes between its components and owns its timers:
//!
//! ```text
//!   peers ──Raft──▶ raft ──Committed──▶ image ──partition states──▶ replicas
//!                    ▲                    │                           │ ▲
//!                    └──Propose── controller ◀──ToController (peers, │ │ this broker:
//!                                     │          this broker)        │ │ registration,
//!                                     └──FromController──────────────┘ │ heartbeats,
//!   clients ──Produce/Fetch/ListOffsets────────────────────────────────┘   AlterPartition)
//!   clients ──admin requests──▶ forwarded to the active controller
//! ```
//!
//! - getters: [`Node::is_started`], [`Node::fatal`], [`Node::replica`], [`Node::raft`],
//!   [`Node::image`], ...;
//! - inputs: [`Node::handle_request`] (a client asked something), [`Node::handle_message`]
//!   (a peer said something), [`Node::handle_peer_link`] (the transport saw a peer's
//!   connections close or open again), [`Node::handle_disk`] (a disk op completed),
//!   [`Node::handle_timeout`] (the deadline of [`Node::poll_timeout`] passed);
//! - outputs: [`Node::poll_output`] until `None`, then [`Node::poll_timeout`].
//!
//! Contract kept:
//! - The node acts on committed metadata only: every node applies Raft's committed entries
//!   to its [`MetadataImage`] in order, and its replicas take their roles from it.
//! - A replica takes a role only once this broker's registration in its current incarnation
//!   is in the image ([`Node::is_started`]). A restarted broker is registered anew, which
//!   moves its leaderships to other replicas or bumps their leader epoch (the controller's
//!   registration), so a leader never serves one leader epoch across a crash that may have
//!   taken back writes its followers copied.
//! - Group commit: the replicas that want a flush are flushed when the driver drains
//!   outputs, so every produce handled since the last drain shares one sync per partition.
//! - The controller is active only on the Raft leader, once everything in Raft's log is
//!   applied to the image (so every batch committed from then on is one it proposed).
//! - A closed link is a hint, never a verdict (decision 0011): the node remembers which
//!   peers' connections the transport saw close (whatever its role) until it hears from them
//!   again; the active controller cuts such a broker's lease to a short grace, and a Raft
//!   follower whose leader's link closed stops defending that leader and campaigns soon.
//!   The lease and Raft's own timeouts still decide: a heartbeat in the grace keeps the
//!   broker, and PreVote fails while a majority still hears the leader.
//!
//! Files: `types.rs` (the public vocabulary), `message.rs` (what nodes say to each other),
//! `cluster.rs` (Raft, the image, the controller, this broker's registration and the
//! requests to the controller), `replicas.rs` (partitions: roles from the image, client
//! requests, replica traffic, deletion), `admin.rs` (topic requests and Metadata).

mod admin;
mod cluster;
mod groups;
mod lease;
mod message;
mod producer_ids;
mod replicas;
mod types;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use self::cluster::{BrokerSession, Calls};
pub use self::message::{FromController, Message, MessageKind, ToController};
pub use self::types::{
    Acks, BrokerInfo, ClusterConfig, ClusterView, GroupOffset, NodeConfig, OffsetSpec, Output,
    PARTITIONS_DIR, PartitionId, PartitionInfo, ReplicaError, Request, RequestError, Response,
    TopicInfo, TopicState, dir_id, format_ops, parse_dir_name,
};
use super::controller::{Controller, ControllerConfig, MetadataImage};
use super::coordinator::Coordinator;
use super::io::{ConnId, DiskOp, DiskResult, NodeId, OpId, RequestId};
use super::log::{DiskQueue, PartitionLog};
use super::raft::{Raft, RaftConfig};
use super::replica::Replica;
use super::rng::{CoreRng, seeded};
use super::time::Instant;
use super::timer::TimerTable;
pub use super::topic::{Durability, TopicConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Retention,
    Flush,
    /// This broker's next heartbeat (or registration attempt).
    Broker,
    /// The earliest deadline of a request to the controller.
    Calls,
    /// The earliest deadline of a request waiting for the node to start.
    Start,
}

/// What a pending disk op of the node itself is for.
#[derive(Debug)]
enum NodeOp {
    /// Listing `partitions/` once caught up, to delete what no partition of this node owns.
    ListPartitions,
    /// Listing a deleted partition's directory, to remove what is in it.
    ListDeleted { dir: super::io::FileName },
    /// Removing one file of a deleted partition.
    RemoveFile,
    /// Removing a deleted partition's (now empty) directory.
    RemoveDir { dir: super::io::FileName },
}

/// Who issued a disk op in flight.
#[derive(Debug)]
enum Owner {
    Raft,
    Replica(PartitionId),
    Node(NodeOp),
}

/// The node's outputs and its disk-op numbering, kept apart from its components so that a
/// component and an [`Outbox`] can be borrowed at once.
#[derive(Debug, Default)]
struct Ops {
    outputs: VecDeque<Output>,
    owners: HashMap<OpId, Owner>,
    next_op: u64,
}

impl Ops {
    /// A queue for the disk ops of partition `owner`'s replica.
    fn replica<'a>(&'a mut self, owner: &'a PartitionId) -> Outbox<'a> {
        Outbox { ops: self, owner: Some(owner) }
    }

    /// A queue for Raft's disk ops.
    fn raft(&mut self) -> Outbox<'_> {
        Outbox { ops: self, owner: None }
    }

    fn submit_node_op(&mut self, op: DiskOp, purpose: NodeOp) {
        let id = self.raft().submit(op);
        self.owners.insert(id, Owner::Node(purpose));
    }

    fn reply(&mut self, conn: ConnId, id: RequestId, response: Response) {
        self.outputs.push_back(Output::Reply { conn, id, response });
    }

    fn send(&mut self, to: NodeId, message: Message) {
        self.outputs.push_back(Output::Send { to, message });
    }
}

/// Routes disk ops to the node's outputs, remembering whose they are (a replica's, or else
/// Raft's; the node's own are relabelled by `submit_node_op`).
struct Outbox<'a> {
    ops: &'a mut Ops,
    owner: Option<&'a PartitionId>,
}

impl DiskQueue for Outbox<'_> {
    fn submit(&mut self, op: DiskOp) -> OpId {
        let id = OpId(self.ops.next_op);
        self.ops.next_op += 1;
        let owner = self.owner.map_or(Owner::Raft, |owner| Owner::Replica(owner.clone()));
        self.ops.owners.insert(id, owner);
        self.ops.outputs.push_back(Output::Disk { id, op });
        id
    }
}

/// A client request a replica holds, by the replica's token.
#[derive(Debug, Clone)]
struct ClientCall {
    conn: ConnId,
    id: RequestId,
    partition: PartitionId,
}

/// One Cairn node. See the module documentation.
#[derive(Debug)]
pub struct Node {
    config: NodeConfig,
    rng: CoreRng,
    /// Why the node cannot serve at all: a driver reports it and stops.
    fatal: Option<String>,
    raft: Raft,
    image: MetadataImage,
    controller: Controller,
    /// The Raft term the controller became active in.
    controller_term: Option<u64>,
    broker: BrokerSession,
    calls: Calls,
    replicas: BTreeMap<PartitionId, Replica>,
    /// Client requests replicas hold, by token.
    client_calls: HashMap<u64, ClientCall>,
    /// Metadata requests waiting for the topics they auto-create, by token.
    metadata_waits: HashMap<u64, admin::MetadataWait>,
    /// Admin and Metadata requests that came before the node started, with their deadline.
    waiting_start: VecDeque<(Instant, ConnId, RequestId, Request)>,
    ops: Ops,
    next_token: u64,
    /// Directories being deleted.
    deleting: BTreeSet<super::io::FileName>,
    timers: TimerTable<Timer>,
    /// Each replica's next deadline, and the same ordered by time. A `BTreeMap`: a replica's
    /// own id compares by pointer, cheaper than hashing its name after every replica input.
    replica_deadlines: BTreeMap<PartitionId, Instant>,
    replica_timers: BTreeSet<(Instant, PartitionId)>,
    flush_wanted: BTreeSet<PartitionId>,
    /// Partitions changed since the last check other than by an input (flushed by
    /// `poll_output`): the next input's check covers them (see [`Node::invariants`]).
    unchecked: Vec<PartitionId>,
    shutting_down: bool,
    data_version: u64,
    /// Peers whose connections the transport saw close, not heard from since.
    peers_down: BTreeSet<NodeId>,
    /// The group coordinator of the offsets partitions this node leads.
    coordinator: Coordinator,
    /// Coordinator requests from clients, by the token the coordinator answers.
    group_calls: HashMap<u64, (ConnId, RequestId)>,
    /// Replica requests of the coordinator, by node token.
    coordinator_calls: HashMap<u64, groups::CoordinatorCall>,
    /// Whether a creation of `__consumer_offsets` is with the controller.
    offsets_topic_creating: bool,
    /// This broker's block of producer ids (InitProducerId).
    producer_ids: producer_ids::ProducerIdBlock,
}

impl Node {
    /// A node starting at `now`: Raft recovers the metadata log, the node applies it, then
    /// registers this broker with the active controller and opens its replicas.
    pub fn new(config: NodeConfig, now: Instant) -> Node {
        let mut rng = seeded(config.seed);
        let cluster = &config.cluster;
        let mut raft_config =
            RaftConfig::new(config.node_id, cluster.voters.clone(), cluster.learners.clone());
        raft_config.seed = rand::Rng::random(&mut rng);
        raft_config.election_timeout_min = cluster.election_timeout_min;
        raft_config.election_timeout_max = cluster.election_timeout_max;
        raft_config.heartbeat_interval = cluster.raft_heartbeat_interval;
        if cluster.voters.len() == 1 {
            // A lone voter wins its election alone: no reason to wait a long randomized
            // timeout (whose point is to keep several candidates apart) before leading. Raft
            // asks for two heartbeats within the shortest timeout.
            let shortest =
                cluster.raft_heartbeat_interval * 2 + std::time::Duration::from_millis(1);
            raft_config.election_timeout_min = shortest;
            raft_config.election_timeout_max = shortest + std::time::Duration::from_millis(1);
        }
        let controller = Controller::new(ControllerConfig {
            seed: rand::Rng::random(&mut rng),
            broker_session_timeout: cluster.broker_session_timeout,
            // Two heartbeats: a broker that reconnects at once renews its lease in time.
            broker_link_down_grace: (cluster.broker_heartbeat_interval * 2)
                .min(cluster.broker_session_timeout),
            topic_defaults: config.default_topic.clone(),
            default_partitions: config.default_partitions,
            default_replication_factor: cluster.default_replication_factor,
        });
        let mut ops = Ops::default();
        let raft = Raft::open(raft_config, now, &mut ops.raft());
        let broker = BrokerSession::new(rand::Rng::random(&mut rng));
        // Derived from the seed, not drawn from `rng`: the node's own stream stays what it
        // was before the coordinator existed, so simulator runs without groups replay alike.
        let coordinator = groups::new_coordinator(&config, config.seed ^ 0x6772_6f75_7073);
        let mut node = Node {
            config,
            rng,
            fatal: None,
            raft,
            image: MetadataImage::default(),
            controller,
            controller_term: None,
            broker,
            calls: Calls::default(),
            replicas: BTreeMap::new(),
            client_calls: HashMap::new(),
            metadata_waits: HashMap::new(),
            waiting_start: VecDeque::new(),
            ops,
            next_token: 0,
            deleting: BTreeSet::new(),
            timers: TimerTable::default(),
            replica_deadlines: BTreeMap::new(),
            replica_timers: BTreeSet::new(),
            flush_wanted: BTreeSet::new(),
            unchecked: Vec::new(),
            shutting_down: false,
            data_version: 0,
            peers_down: BTreeSet::new(),
            coordinator,
            group_calls: HashMap::new(),
            coordinator_calls: HashMap::new(),
            offsets_topic_creating: false,
            producer_ids: Default::default(),
        };
        node.timers.set(Timer::Retention, now + node.config.retention_check_interval);
        node.timers.set(Timer::Flush, now + node.config.flush_interval);
        node.timers.set(Timer::Broker, now);
        node.after_raft(now);
        node
    }

    // ----- getters -----

    /// Whether this broker has been registered and unfenced in its current incarnation: it
    /// serves admin requests and Metadata from then on (they wait until then).
    pub fn is_started(&self) -> bool {
        self.broker.started
    }

    /// Why the node cannot serve at all, if it cannot (not formatted, a corrupt metadata
    /// log, an unreadable data directory).
    pub fn fatal(&self) -> Option<&str> {
        self.fatal.as_deref()
    }

    /// The log of a partition, if the node holds a replica of it.
    pub fn partition(&self, partition: &PartitionId) -> Option<&PartitionLog> {
        self.replicas.get(partition).map(Replica::log)
    }

    /// The replica of a partition, if the node holds one.
    pub fn replica(&self, partition: &PartitionId) -> Option<&Replica> {
        self.replicas.get(partition)
    }

    /// The partitions the node holds replicas of.
    pub fn partitions(&self) -> impl Iterator<Item = &PartitionId> {
        self.replicas.keys()
    }

    /// The node's replicas, in the order of their partitions.
    pub fn replicas(&self) -> impl Iterator<Item = (&PartitionId, &Replica)> {
        self.replicas.iter()
    }

    /// The node's member of the metadata quorum.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The committed metadata as this node has applied it.
    pub fn image(&self) -> &MetadataImage {
        &self.image
    }

    /// Whether this node is the active controller.
    pub fn is_controller(&self) -> bool {
        self.controller.is_active()
    }

    /// This broker's epoch, once registered in this incarnation.
    pub fn broker_epoch(&self) -> Option<u64> {
        self.broker.epoch()
    }

    /// A number that grows whenever a high watermark advances or the metadata changes: a
    /// fetch that found too little may wait for it to change before it asks again.
    pub fn data_version(&self) -> u64 {
        self.data_version
    }

    /// The peers whose connections the transport saw close and that have not been heard
    /// from since ([`Node::handle_peer_link`]).
    pub fn peers_down(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.peers_down.iter().copied()
    }

    /// The node's random generator (for components that need randomness).
    pub fn rng(&mut self) -> &mut CoreRng {
        &mut self.rng
    }

    /// Whether every disk op the node issued has completed and nothing waits to be flushed:
    /// after [`Node::begin_shutdown`], the moment a driver may stop.
    pub fn is_quiescent(&self) -> bool {
        self.ops.owners.is_empty() && self.flush_wanted.is_empty()
    }

    // ----- mutators -----

    /// Starts a clean stop: produces are refused from now on (with a retriable error), and
    /// every replica with unflushed data is flushed, so that producers waiting on a flush get
    /// their answer and a restart recovers without a torn tail. The driver keeps feeding the
    /// node until [`Node::is_quiescent`].
    pub fn begin_shutdown(&mut self) {
        self.shutting_down = true;
        // A producer state snapshot covering the whole log, so the restart replays nothing.
        for (id, replica) in &mut self.replicas {
            replica.snapshot_producers(&mut self.ops.replica(id));
        }
        let unflushed = self.replicas.iter().filter(|(_, r)| r.needs_flush());
        let ids: Vec<PartitionId> = unflushed.map(|(id, _)| id.clone()).collect();
        self.flush_wanted.extend(ids);
    }

    // ----- inputs -----

    /// A client's request `id` on connection `conn`.
    pub fn handle_request(&mut self, now: Instant, conn: ConnId, id: RequestId, request: Request) {
        // What the request can change, for the check after it: a data request changes its
        // partition alone; any other may change more.
        let touched = match &request {
            Request::Produce { partition, .. }
            | Request::Fetch { partition, .. }
            | Request::ListOffsets { partition, .. } => Some(partition.clone()),
            _ => None,
        };
        match request {
            Request::Produce { partition, acks, batch } => {
                self.produce(now, conn, id, partition, acks, batch)
            }
            Request::Fetch { partition, offset, max_bytes, leader_epoch } => {
                self.fetch(now, conn, id, partition, offset, max_bytes, leader_epoch)
            }
            Request::ListOffsets { partition, spec, leader_epoch } => {
                self.list_offsets(now, conn, id, partition, spec, leader_epoch)
            }
            group @ (Request::FindCoordinator { .. } | Request::Group(_) | Request::ListGroups) => {
                self.group_request(now, conn, id, group)
            }
            // Before the node has started its image may lack topics that exist, and the
            // controller would refuse to place replicas: such requests wait (boundedly).
            admin if !self.broker.started => self.wait_for_start(now, conn, id, admin),
            Request::Metadata { topics, auto_create } => {
                self.metadata(now, conn, id, topics, auto_create)
            }
            Request::InitProducerId { transactional_id } => {
                self.init_producer_id(now, conn, id, transactional_id)
            }
            admin => self.admin_request(now, conn, id, admin),
        }
        self.after_input(now, touched);
    }

    fn wait_for_start(&mut self, now: Instant, conn: ConnId, id: RequestId, request: Request) {
        if self.waiting_start.len() >= super::limits::START_WAITING_REQUESTS_MAX {
            return self.fail(conn, id, RequestError::NodeNotReady);
        }
        let deadline = now + super::limits::START_WAIT_MAX;
        if self.waiting_start.is_empty() {
            self.timers.set(Timer::Start, deadline);
        }
        self.waiting_start.push_back((deadline, conn, id, request));
    }

    /// Serves the requests that waited for the start (now), or fails those whose wait ran
    /// out (at a `Timer::Start`).
    fn serve_waiting(&mut self, now: Instant) {
        while let Some((deadline, ..)) = self.waiting_start.front() {
            if self.broker.started || *deadline <= now {
                let (_, conn, id, request) = self.waiting_start.pop_front().expect("checked");
                if self.broker.started {
                    self.handle_request(now, conn, id, request);
                } else {
                    self.fail(conn, id, RequestError::NodeNotReady);
                }
            } else {
                self.timers.set(Timer::Start, *deadline);
                return;
            }
        }
    }

    /// A peer's message.
    pub fn handle_message(&mut self, now: Instant, from: NodeId, message: Message) {
        // A message proves its sender runs, whatever the transport last said.
        self.peers_down.remove(&from);
        let Some(kind) = message.kind else {
            tracing::debug!(?from, "an empty peer message ignored");
            return;
        };
        let mut touched = None;
        match kind {
            MessageKind::Raft(message) => {
                self.raft.handle_message(now, from, message, &mut self.ops.raft());
                if !self.after_raft(now) {
                    return self.after_raft_input();
                }
            }
            MessageKind::ToController(request) => self.controller_request_from(now, from, request),
            MessageKind::FromController(response) => self.controller_response(now, from, response),
            other => {
                let message = other.into_replica().expect("every other kind is a replica's");
                touched = self.replica_message(now, from, message);
            }
        }
        self.after_input(now, touched);
    }

    /// The transport saw every connection with `peer` close (`up == false`: its process
    /// died, or its host refuses connections), or a connection open again (`up`). A hint:
    /// the node acts on it only through short timeouts that the peer's own messages beat
    /// (see the module documentation). A message from `peer` counts as `up` too. A driver
    /// reports a drop only once reconnecting failed, so that a reconnect is no death.
    pub fn handle_peer_link(&mut self, now: Instant, peer: NodeId, up: bool) {
        if peer == self.config.node_id || !self.config.cluster.nodes().any(|n| n == peer) {
            tracing::debug!(?peer, up, "link state of a node that is not a peer ignored");
            return;
        }
        if up {
            self.peers_down.remove(&peer);
            return;
        }
        if !self.peers_down.insert(peer) {
            return;
        }
        tracing::info!(node = self.config.node_id.0, peer = peer.0, "peer's connections closed");
        self.controller.handle_broker_link_down(now, peer.0 as i32);
        self.raft.handle_peer_down(now, peer, &mut self.ops.raft());
        self.after_raft(now);
        self.after_input(now, None);
    }

    /// The result of disk op `id`.
    pub fn handle_disk(&mut self, now: Instant, id: OpId, result: DiskResult) {
        let mut touched = None;
        match self.ops.owners.remove(&id) {
            Some(Owner::Replica(owner)) => {
                // A deleted partition's ops still complete; nobody waits for them.
                if let Some(replica) = self.replicas.get_mut(&owner) {
                    replica.handle_disk(now, id, result, &mut self.ops.replica(&owner));
                    self.replica_touched(now, &owner);
                }
                touched = Some(owner);
            }
            Some(Owner::Node(op)) => self.node_op_done(op, result),
            Some(Owner::Raft) => {
                self.raft.handle_disk(now, id, result, &mut self.ops.raft());
                if !self.after_raft(now) {
                    return self.after_raft_input();
                }
            }
            None => tracing::warn!(?id, "a disk op nobody issued completed"),
        }
        self.after_input(now, touched);
    }

    /// Time passed; call when the deadline of [`Node::poll_timeout`] is reached.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_expired(now) {
            match timer {
                Timer::Retention => {
                    self.apply_retention(now);
                    self.timers.set(Timer::Retention, now + self.config.retention_check_interval);
                }
                Timer::Flush => {
                    let unflushed = self.replicas.iter().filter(|(_, r)| r.needs_flush());
                    let ids: Vec<PartitionId> = unflushed.map(|(id, _)| id.clone()).collect();
                    self.flush_wanted.extend(ids);
                    self.timers.set(Timer::Flush, now + self.config.flush_interval);
                }
                Timer::Broker => self.broker_timer(now),
                Timer::Calls => self.calls_timer(now),
                Timer::Start => self.serve_waiting(now),
            }
        }
        if self.raft.poll_timeout().is_some_and(|at| at <= now) {
            self.raft.handle_timeout(now, &mut self.ops.raft());
            self.after_raft(now);
        }
        if self.controller.poll_timeout().is_some_and(|at| at <= now) {
            self.controller.handle_timeout(now);
            self.after_raft(now);
        }
        if self.coordinator.poll_timeout().is_some_and(|at| at <= now) {
            self.coordinator.handle_timeout(now);
        }
        while let Some((at, id)) = self.replica_timers.first().cloned() {
            if at > now {
                break;
            }
            self.replica_timers.pop_first();
            self.replica_deadlines.remove(&id);
            if let Some(replica) = self.replicas.get_mut(&id) {
                replica.handle_timeout(now, &mut self.ops.replica(&id));
                self.replica_touched(now, &id);
            }
        }
        self.after_input(now, None);
    }

    // ----- outputs -----

    /// The next thing the driver must do. Flushes the replicas with waiting producers first,
    /// so every produce handled since the last call shares one sync.
    pub fn poll_output(&mut self) -> Option<Output> {
        while let Some(id) = self.flush_wanted.pop_first() {
            if let Some(replica) = self.replicas.get_mut(&id) {
                replica.flush(&mut self.ops.replica(&id));
                self.unchecked.push(id);
            }
        }
        self.ops.outputs.pop_front()
    }

    /// When [`Node::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.timers.next_deadline(),
            self.raft.poll_timeout(),
            self.controller.poll_timeout(),
            self.replica_timers.first().map(|(at, _)| *at),
            self.coordinator.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ----- helpers -----

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    fn reply(&mut self, conn: ConnId, id: RequestId, response: Response) {
        self.ops.reply(conn, id, response);
    }

    fn fail(&mut self, conn: ConnId, id: RequestId, error: impl Into<RequestError>) {
        self.reply(conn, id, Response::Error(error.into()));
    }

    /// Checks all of the node's invariants; a failure is a bug.
    ///
    /// The node runs this full check after every input that may change more than one
    /// partition: Raft's, the controller's and the node's own inputs, and timeouts (so at
    /// least once per flush interval). After an input that changes one partition only (a
    /// client's data request, a replica message, a completed op of one replica) it checks
    /// that replica's own invariants, and those of the replicas `poll_output` flushed since
    /// the last check (docs/simulator.md, Speed).
    pub fn invariants(&self) {
        self.raft.invariants();
        self.image.invariants();
        self.controller.invariants();
        self.producer_ids.invariants();
        assert!(
            self.image.last_applied() <= self.raft.applied_index(),
            "the image holds only what Raft reported"
        );
        for (id, replica) in &self.replicas {
            replica.invariants();
            if let Some(state) = replica.state() {
                let topic = self.image.topic(&id.topic);
                let current = topic.and_then(|t| t.partitions.get(id.partition as usize));
                if let Some(current) = current {
                    assert!(
                        state.leader_epoch <= current.leader_epoch,
                        "{id}: a replica's epoch is one the image has applied"
                    );
                }
            }
        }
        for (at, id) in &self.replica_timers {
            assert_eq!(self.replica_deadlines.get(id), Some(at), "replica timers agree");
        }
    }

    /// The check after an input (see [`Node::invariants`]), then the node's reaction to
    /// what its components reported.
    fn after_input(&mut self, now: Instant, touched: Option<PartitionId>) {
        self.after_coordinator(now);
        let mut unchecked = std::mem::take(&mut self.unchecked);
        match touched {
            None => self.invariants(),
            Some(touched) => {
                unchecked.push(touched);
                for id in &unchecked {
                    if let Some(replica) = self.replicas.get(id) {
                        replica.invariants();
                    }
                }
            }
        }
        unchecked.clear();
        self.unchecked = unchecked;
    }

    /// The check after an input that changed Raft's state and the outbox only (a Raft
    /// message or a Raft disk op whose step committed nothing, changed no leader and woke
    /// no controller output; `after_raft` returned `false`): Raft's invariants and the one
    /// between Raft and the image, and the replicas `poll_output` flushed since the last
    /// check. The image, the controller, the replicas and their timers did not change, so
    /// the rest of [`Node::invariants`] would check unchanged state (docs/simulator.md,
    /// Speed).
    fn after_raft_input(&mut self) {
        self.raft.invariants();
        assert!(
            self.image.last_applied() <= self.raft.applied_index(),
            "the image holds only what Raft reported"
        );
        let mut unchecked = std::mem::take(&mut self.unchecked);
        for id in &unchecked {
            if let Some(replica) = self.replicas.get(id) {
                replica.invariants();
            }
        }
        unchecked.clear();
        self.unchecked = unchecked;
    }
}
