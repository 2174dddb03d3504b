//! The world's cluster: every node's `ClusterConfig`, formatting disks, node-to-node
//! messages, the node faults that need the cluster (wipe, clock jump), and what a fault
//! naming a node by role resolves to.
//!
//! Node messages: each `Output::Send { to, message }` goes through the simulated [`Network`]
//! (latency, loss, duplication, reordering, clogged links, cuts: the faults client traffic
//! has, drawn from the same network stream) and is delivered with `Node::handle_message` to
//! the incarnation of `to` that was running when it was sent. A crashed node receives
//! nothing, and a message in flight to a node that crashed (or was wiped) since is dropped,
//! as a TCP connection to it would have broken. A paused node gets its messages when the
//! pause ends. A crash closes the crashed node's connections: every running node the
//! network still links it to is told at once (`Node::handle_peer_link`), as its transport
//! would see a refused reconnect; a cut link carries no such news, so under a partition the
//! lease alone decides (decision 0011). Coverage counts messages sent, delivered and dropped (`Coverage::messages_*`);
//! every send and delivery is folded into the rolling hash.
//!
//! Formatting (decision 0009): a node never formats itself, so the world runs
//! `core::node::format_ops` on every disk before its first start (`initial`), and after a
//! wipe (`initial = false`: the node rejoins). The ops run on the bare disk with its faults
//! held off, as `cairn format` runs before the node does; they are durable when done.
//!
//! [`Network`]: crate::net::Network

use cairn_node::core::coordinator::OFFSETS_TOPIC;
use cairn_node::core::io::{DiskDriver, NodeId, RequestId};
use cairn_node::core::node::{
    ClusterConfig, Message, MessageKind, Request, RequestError, Response, format_ops,
};
use rand::Rng;

use crate::disk::SimDiskFaults;
use crate::faults::{FaultAction, NodeRef};
use crate::net::Endpoint;
use crate::params::Atlas;
use crate::world::{ADMIN_CONN, Event, MS, NODES_REPLICATE, World};

/// How long the world waits before asking again after a topic creation failed.
const CREATE_RETRY_NS: u64 = 100 * MS;
/// How long a topic creation may go unanswered before the world asks again.
const CREATE_TIMEOUT_NS: u64 = 10_000 * MS;

impl World {
    /// The cluster config node `index` runs with: the cluster's id and members (voters
    /// 1..=`Params::voters`, the rest learners), the same for every node, and its own
    /// advertised address `node-N:9092`.
    pub(crate) fn cluster_config(&self, index: u32) -> ClusterConfig {
        if NODES_REPLICATE {
            return self.shared_cluster(index);
        }
        // Until the world routes clients to partition leaders, each node is a cluster of its
        // own, its only voter, holding the partitions placed on it.
        let mut cluster = ClusterConfig::single(NodeId(index + 1));
        cluster.cluster_id = format!("{}-{}", self.params.cluster_id, index + 1);
        cluster.advertised_host = format!("node-{}", index + 1);
        cluster
    }

    /// The one cluster every node belongs to once the world replicates.
    pub(crate) fn shared_cluster(&self, index: u32) -> ClusterConfig {
        let (nodes, voters) = (self.params.nodes, self.params.voters());
        ClusterConfig {
            cluster_id: self.params.cluster_id.clone(),
            voters: (1..=voters).map(NodeId).collect(),
            learners: (voters + 1..=nodes).map(NodeId).collect(),
            advertised_host: format!("node-{}", index + 1),
            advertised_port: 9092,
            default_replication_factor: nodes.min(3) as i32,
            ..ClusterConfig::single(NodeId(index + 1))
        }
    }

    /// Formats node `index`'s disk: the bootstrap record its Raft needs to start.
    ///
    /// # Panics
    /// If an op fails: the disk's faults are held off while formatting.
    pub(crate) fn format_node(&mut self, index: u32, initial: bool) {
        let cluster = self.cluster_config(index);
        // Drawn from the disk stream: each format of a directory gets its own id.
        let directory_id = self.rng_disk.random();
        let disk = &mut self.nodes[index as usize].disk.disk;
        let faults = disk.faults().clone();
        disk.set_faults(SimDiskFaults::default());
        // A lone voter has no leader to catch up from after a wipe: it starts afresh.
        let initial = initial || cluster.voters.len() == 1;
        for op in format_ops(NodeId(index + 1), &cluster, initial, directory_id) {
            let what = format!("{op:?}");
            let result = disk.execute(op);
            assert!(result.is_ok(), "formatting node {}: {what}: {result:?}", index + 1);
        }
        disk.set_faults(faults);
    }

    /// Sends node `from`'s (an index) `message` to node `to` through the network.
    ///
    /// # Panics
    /// If `to` is not a node of the cluster: the core only addresses members.
    pub(crate) fn send_peer(&mut self, from: u32, to: NodeId, message: Message) {
        assert!(
            (1..=self.params.nodes).contains(&to.0),
            "node {} sent a message to {to:?}, not a member",
            from + 1
        );
        let to = to.0 - 1;
        self.coverage.messages_sent += 1;
        self.mix(10 << 32 | u64::from(from) << 16 | u64::from(to) << 8 | kind_tag(&message));
        let incarnation = self.nodes[to as usize].incarnation;
        let mut delays = std::mem::take(&mut self.route_buf);
        let (a, b) = (Endpoint::Node(from), Endpoint::Node(to));
        self.net.route(&mut self.rng_net, self.now, a, b, &mut delays);
        if delays.is_empty() {
            self.coverage.messages_dropped += 1;
        }
        if let [first, rest @ ..] = &delays[..] {
            for delay in rest {
                let event = Event::Peer { from, to, incarnation, message: message.clone() };
                self.schedule(self.now + delay, event);
            }
            self.schedule(self.now + first, Event::Peer { from, to, incarnation, message });
        }
        self.route_buf = delays;
    }

    /// Hands a message to node `to` if the incarnation it was sent to still runs.
    pub(crate) fn deliver_peer(&mut self, from: u32, to: u32, incarnation: u64, message: Message) {
        self.mix(11 << 32 | u64::from(from) << 16 | u64::from(to) << 8 | kind_tag(&message));
        let n = &self.nodes[to as usize];
        if n.incarnation != incarnation || n.node.is_none() {
            self.coverage.messages_dropped += 1;
            return;
        }
        if n.paused_until > self.now {
            let at = n.paused_until;
            self.schedule(at, Event::Peer { from, to, incarnation, message });
            return;
        }
        self.coverage.messages_delivered += 1;
        let local = self.local_now(to);
        let core = self.nodes[to as usize].node.as_mut().expect("checked");
        core.handle_message(local, NodeId(from + 1), message);
        self.after_node_step(to);
    }

    /// Node `index` crashed: its host closed its connections, so every running, unpaused
    /// node that the network links it to sees its link go down. One behind a cut sees
    /// nothing, as over a real network partition.
    pub(crate) fn crash_closes_links(&mut self, index: u32) {
        for to in (0..self.params.nodes).filter(|to| *to != index) {
            let n = &self.nodes[to as usize];
            let (a, b) = (Endpoint::Node(index), Endpoint::Node(to));
            if n.node.is_none() || n.paused_until > self.now || self.net.is_cut(self.now, a, b) {
                continue;
            }
            let local = self.local_now(to);
            let core = self.nodes[to as usize].node.as_mut().expect("checked");
            core.handle_peer_link(local, NodeId(index + 1), false);
            self.after_node_step(to);
        }
    }

    /// Resolves the nodes `action` names by role, and keeps a drawn fault within the atlas:
    /// the nemesis wipes at most a minority of the voters within a run, and under the
    /// recoverable atlas a minority of the nodes (a scenario's timeline is applied as
    /// written). `None`: the
    /// fault is not applied.
    pub(crate) fn admit(&mut self, action: FaultAction, drawn: bool) -> Option<FaultAction> {
        let action = self.resolve_action(action);
        if let (true, FaultAction::Wipe { node: NodeRef::Id(id), .. }) = (drawn, &action)
            && !self.wipe_keeps_majority(id - 1)
        {
            return None;
        }
        Some(action)
    }

    /// Whether wiping node `index` too leaves a majority of the voters, and (recoverable
    /// atlas) of the nodes, never wiped in this run.
    fn wipe_keeps_majority(&self, index: u32) -> bool {
        let mut wiped = self.wiped.clone();
        wiped.insert(index);
        let voters = self.params.voters();
        let wiped_voters = wiped.iter().filter(|i| **i < voters).count() as u32;
        // Even the unrecoverable atlas keeps the metadata quorum: wiping a majority of the
        // voters starts another cluster under the same id, which nothing can reconcile.
        let nodes_kept = self.params.atlas == Atlas::Unrecoverable
            || wiped.len() as u32 <= (self.params.nodes - 1) / 2;
        nodes_kept && wiped_voters <= (voters - 1) / 2
    }

    fn resolve_action(&self, action: FaultAction) -> FaultAction {
        action.map_nodes(|node| NodeRef::Id(self.resolve(&node) + 1))
    }

    /// Whether every node `action` names by a role is held by someone now.
    pub(crate) fn roles_held(&self, action: &FaultAction) -> bool {
        let mut held = true;
        action.clone().map_nodes(|node| {
            held &= self.holder(&node).is_some();
            node
        });
        held
    }

    /// The node (index) `node` names now, or where nobody holds its role (no quorum, no
    /// leader yet, no such partition yet) the one it falls back to: the first node, or for a
    /// follower the second.
    fn resolve(&self, node: &NodeRef) -> u32 {
        self.holder(node).unwrap_or(match node {
            NodeRef::Follower { .. } => 1 % self.params.nodes,
            _ => 0,
        })
    }

    /// The node (index) `node` names now, if someone holds its role.
    fn holder(&self, node: &NodeRef) -> Option<u32> {
        match node {
            NodeRef::Id(id) => Some(id - 1),
            NodeRef::Controller => self.controller(),
            NodeRef::Leader { topic, partition } => self.leader_of(topic, *partition),
            NodeRef::Coordinator { group } => {
                let partition = crate::groups::offsets_partition(group) as u32;
                self.leader_of(OFFSETS_TOPIC, partition)
            }
            NodeRef::Follower { topic, partition } => self.follower_of(topic, *partition),
        }
    }

    /// Creates the run's topics once, through the controller (topic requests go to it from
    /// any node): when node `index` has started and no creation is in flight, it is asked
    /// for the first topic not created yet. An answer that is not a success (no quorum yet,
    /// too few brokers registered for the replication factor) is retried after
    /// `CREATE_RETRY_NS`; a creation whose node crashed, or that got no answer within
    /// `CREATE_TIMEOUT_NS`, is asked again (the controller answers "exists" if it was done).
    pub(crate) fn create_topics(&mut self, index: u32) {
        let incarnation = self.nodes[index as usize].incarnation;
        if let Some((node, inc, _, at)) = self.creating {
            let gone = self.nodes[node as usize].incarnation != inc;
            if !gone && self.now < at + CREATE_TIMEOUT_NS {
                return;
            }
            self.creating = None;
        }
        let Some(t) = self.topics_created.iter().position(|done| !done) else { return };
        let n = &self.nodes[index as usize];
        if self.now < self.create_after
            || !n.node.as_ref().is_some_and(|core| core.is_started() && core.fatal().is_none())
        {
            return;
        }
        let part = self.work.parts.iter().find(|p| *p.id.topic == *self.params.topics[t].name);
        let part = part.expect("every topic has partitions");
        let request = Request::CreateTopic {
            name: part.id.topic.clone(),
            partitions: part.topic_partitions,
            replication_factor: part.replication_factor,
            config: part.config(),
            validate_only: false,
        };
        self.creating = Some((index, incarnation, t, self.now));
        if crate::trace::enabled() {
            let at = format_args!("create topic {} at node {}", part.id.topic, index + 1);
            crate::trace::line(self.now, at);
        }
        let now = self.local_now(index);
        let core = self.nodes[index as usize].node.as_mut().expect("checked");
        core.handle_request(now, ADMIN_CONN, RequestId(t as u64), request);
    }

    /// Node `index` answered the creation of topic `id`.
    pub(crate) fn topic_created(&mut self, index: u32, id: RequestId, response: &Response) {
        let t = id.0 as usize;
        if crate::trace::enabled() {
            crate::trace::line(
                self.now,
                format_args!("node {} answered create: {response:?}", index + 1),
            );
        }
        if self.creating.is_some_and(|(node, _, topic, _)| node == index && topic == t) {
            self.creating = None;
        }
        // TOPIC_ALREADY_EXISTS (36): an earlier attempt whose answer was lost succeeded.
        let done = matches!(response, Response::TopicChanged)
            || matches!(response, Response::Error(RequestError::Controller { code: 36, .. }));
        if done {
            self.topics_created[t] = true;
        } else {
            self.create_after = self.now + CREATE_RETRY_NS;
        }
    }

    /// Wipes node `index`'s disk, formats it to rejoin, and restarts it after `down_ms`.
    pub(crate) fn wipe(&mut self, index: u32, down_ms: Option<u64>) {
        // Judged while its metadata image still counts among the newest.
        self.nodes[index as usize].lost_power_at = Some(self.now);
        self.replicate_losses(index);
        let n = &mut self.nodes[index as usize];
        if n.node.take().is_some() {
            n.incarnation += 1;
            n.paused_until = 0;
            self.crash_closes_links(index);
        }
        let n = &mut self.nodes[index as usize];
        n.disk.disk.wipe();
        self.wiped.insert(index);
        if self.params.voters() == 1 && index == 0 {
            // The lone voter's metadata went with its disk: the topics are created again.
            self.topics_created.iter_mut().for_each(|done| *done = false);
            self.replicas.lone_voter_committed = 0;
        }
        self.format_node(index, false);
        self.only_copies_damaged(index);
        let restart = FaultAction::Restart { node: NodeRef::Id(index + 1) };
        self.schedule(self.now + down_ms.unwrap_or(0) * MS, Event::Fault(restart));
    }

    /// A fault destroyed durable data on node `index` (a wipe, or under the recoverable
    /// atlas a scenario's corruption or bad sector): the next recovery of each of its
    /// partitions is checked as a detected loss, not against what it flushed before. While
    /// each partition lives on one node ([`NODES_REPLICATE`] off) that was its only copy, so
    /// the history check also excuses lost writes, as under the unrecoverable atlas; with
    /// replicas the damaged one fetches again from its leader and nothing is excused.
    pub(crate) fn only_copies_damaged(&mut self, index: u32) {
        for watches in &mut self.watches {
            let watch = &mut watches[index as usize];
            watch.lost = true;
            watch.max_flushed = 0;
        }
        if !NODES_REPLICATE {
            self.losses_excused = true;
        }
    }

    /// Node `index`'s clock leaps `seconds` forward; its drift stays.
    pub(crate) fn jump_clock(&mut self, index: u32, seconds: u64) {
        let now = self.now;
        let n = &mut self.nodes[index as usize];
        let local = n.clock.local(now) + seconds * 1_000 * MS;
        n.clock.anchor_world = now;
        n.clock.anchor_local = local;
        n.clock.last = local;
        n.timer_at = None;
        self.arm_timer(index);
    }
}

/// A number for each kind of message, for the rolling hash.
fn kind_tag(message: &Message) -> u64 {
    match &message.kind {
        None => 0,
        Some(MessageKind::Raft(_)) => 1,
        Some(MessageKind::ToController(_)) => 2,
        Some(MessageKind::FromController(_)) => 3,
        Some(MessageKind::Fetch(_)) => 4,
        Some(MessageKind::FetchResponse(_)) => 5,
        Some(MessageKind::OffsetForLeaderEpoch(_)) => 6,
        Some(MessageKind::OffsetForLeaderEpochResponse(_)) => 7,
    }
}

#[cfg(test)]
mod tests;
