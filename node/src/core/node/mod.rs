//! One Cairn node: routes inputs to its components and owns its timers.
//!
//! A [`Node`] holds the partition logs of one broker. It is the value drivers talk to:
//!
//! - getters: [`Node::partition`], [`Node::is_started`];
//! - inputs: [`Node::handle_request`] (a client asked something), [`Node::handle_message`]
//!   (a peer said something), [`Node::handle_disk`] (a disk op completed),
//!   [`Node::handle_timeout`] (the deadline of [`Node::poll_timeout`] passed);
//! - outputs: [`Node::poll_output`] until `None`, then [`Node::poll_timeout`].
//!
//! Durability (design §3): a partition whose durability is [`Durability::Fsync`] answers a
//! produce with acks 1 or all only once the batch is flushed, and its high watermark is its
//! flushed offset, so a consumer never reads what a power loss could take back. Several
//! produces handled between two `poll_output` calls share one sync (group commit): the node
//! flushes the partitions that have waiting acknowledgements when the driver drains outputs.
//! Under [`Durability::Replicate`] a write is acknowledged once appended, as Kafka does.
//!
//! A partition lives in `partitions/<topic>-<partition>/` of the data directory. At start the
//! node lists `partitions/` and recovers every log it finds before it takes requests for it.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::io::{ConnId, DiskOk, DiskOp, DiskResult, FileName, NodeId, OpId, RequestId};
use super::log::{DiskQueue, LogError, LogEvent, PartitionLog, ReadStart};
use super::metadata::{METADATA_DIR, StoreEvent, TopicStore};
use super::rng::{CoreRng, seeded};
use super::time::Instant;
use super::timer::TimerTable;
use super::topic::{ConfigChange, TopicError};
pub use super::topic::{Durability, TopicConfig};
use super::topic::{validate_partition_count, validate_topic_name};

/// The directory, under the data directory, that holds one directory per partition.
pub const PARTITIONS_DIR: &str = "partitions";

mod message;
mod topics;

pub use self::message::{FromController, Message, MessageKind, ToController};

/// A topic partition. Ordered by topic name, then partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartitionId {
    /// The topic's name.
    pub topic: Arc<str>,
    /// The partition's index in its topic.
    pub partition: i32,
}

impl PartitionId {
    /// Partition `partition` of `topic`.
    pub fn new(topic: impl Into<Arc<str>>, partition: i32) -> PartitionId {
        PartitionId { topic: topic.into(), partition }
    }

    /// The partition's directory: `partitions/<topic>-<partition>`.
    pub fn dir(&self) -> FileName {
        FileName::new(format!("{PARTITIONS_DIR}/{}-{}", self.topic, self.partition))
    }

    /// The partition a directory name `<topic>-<partition>` stands for.
    pub fn from_dir_name(name: &str) -> Option<PartitionId> {
        let (topic, partition) = name.rsplit_once('-')?;
        let partition = partition.parse().ok().filter(|p: &i32| *p >= 0)?;
        (!topic.is_empty()).then(|| PartitionId::new(topic, partition))
    }
}

impl Ord for PartitionId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // A node's partitions share their topic's name (`Node::open_partition`), so the maps
        // keyed by partition mostly compare pointers rather than names (docs/simulator.md,
        // Speed). `Arc<str>`'s `==` takes the same shortcut, so `Eq` agrees.
        let topics = if Arc::ptr_eq(&self.topic, &other.topic) {
            std::cmp::Ordering::Equal
        } else {
            self.topic.cmp(&other.topic)
        };
        topics.then(self.partition.cmp(&other.partition))
    }
}

impl PartialOrd for PartitionId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

pub use super::replica::{Acks, OffsetSpec};

/// What a client asks of the node. `Clone` so a simulated network can duplicate it.
#[derive(Debug, Clone)]
pub enum Request {
    /// Create a topic and its partitions. Answered once the topic is durably recorded; its
    /// partitions may still be opening (their requests get a retriable error meanwhile).
    CreateTopic {
        /// The topic's name.
        name: Arc<str>,
        /// How many partitions.
        partitions: i32,
        /// Its settings.
        config: TopicConfig,
        /// Check only: change nothing.
        validate_only: bool,
    },
    /// Delete a topic and every partition's data.
    DeleteTopic {
        /// The topic's name.
        name: Arc<str>,
    },
    /// Grow a topic to `count` partitions.
    CreatePartitions {
        /// The topic's name.
        name: Arc<str>,
        /// The new partition count, more than the current one.
        count: i32,
        /// Check only: change nothing.
        validate_only: bool,
    },
    /// Change a topic's settings.
    AlterTopicConfig {
        /// The topic's name.
        name: Arc<str>,
        /// The changes, applied together or not at all.
        changes: Vec<ConfigChange>,
        /// Check only: change nothing.
        validate_only: bool,
    },
    /// Describe topics: every topic when `topics` is `None`. With `auto_create` (and the
    /// node's `auto_create_topics`), topics asked for by name that do not exist are created
    /// with the node's defaults first.
    Metadata {
        /// The topics asked for.
        topics: Option<Vec<Arc<str>>>,
        /// Whether to create missing topics.
        auto_create: bool,
    },
    /// Append one record batch a producer sent.
    Produce {
        /// The partition.
        partition: PartitionId,
        /// Acknowledgements wanted.
        acks: Acks,
        /// The batch, uniquely owned so the node can patch its offsets without a copy.
        batch: BytesMut,
    },
    /// Read batches from an offset.
    Fetch {
        /// The partition.
        partition: PartitionId,
        /// The first offset wanted.
        offset: u64,
        /// A soft byte limit (the first batch is returned whole regardless).
        max_bytes: u32,
    },
    /// Look up an offset.
    ListOffsets {
        /// The partition.
        partition: PartitionId,
        /// Which offset.
        spec: OffsetSpec,
    },
}

/// Why a request failed: each becomes a Kafka error code at the edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The node does not hold the partition.
    #[error("unknown topic or partition {0}")]
    UnknownPartition(PartitionId),
    /// The topic does not exist.
    #[error("unknown topic {0}")]
    UnknownTopic(Arc<str>),
    /// A topic of that name exists (or is being deleted).
    #[error("topic {0} already exists")]
    TopicExists(Arc<str>),
    /// The topic name, partition count or a setting is not valid.
    #[error(transparent)]
    InvalidTopic(#[from] TopicError),
    /// A partition count that does not grow the topic.
    #[error("topic {name} has {current} partitions; it can only grow, not go to {asked}")]
    PartitionsCannotShrink {
        /// The topic.
        name: Arc<str>,
        /// Its partition count.
        current: i32,
        /// The count asked for.
        asked: i32,
    },
    /// The node is still starting, or the partition is recovering: retry.
    #[error("{0} is not ready yet")]
    NotReady(PartitionId),
    /// The node is still starting or stopping: retry.
    #[error("the node is starting or stopping")]
    NodeNotReady,
    /// The metadata file could not be written; nothing changed.
    #[error("storage error writing topic metadata: {0}")]
    MetadataStorage(String),
    /// The log refused or failed.
    #[error(transparent)]
    Log(#[from] LogError),
}

/// The node's answer to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The topic change asked for is durable (or, with `validate_only`, would be valid).
    TopicChanged,
    /// Topics described.
    Metadata {
        /// One entry per topic asked for (every topic when none was named), by name.
        topics: Vec<TopicInfo>,
    },
    /// The batch was appended (and is durable, if its partition asks for that).
    Produced {
        /// The offset of its first record.
        base_offset: u64,
    },
    /// Batches read.
    Fetched {
        /// Whole batches, possibly none.
        records: Bytes,
        /// The partition's high watermark.
        high_watermark: u64,
        /// The partition's log start offset.
        log_start_offset: u64,
    },
    /// An offset looked up (-1 when no record is that new).
    Offset {
        /// The offset.
        offset: i64,
        /// The timestamp found (-1 unless looked up by time).
        timestamp: i64,
    },
    /// The request failed.
    Error(RequestError),
}

/// One topic as Metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic's name.
    pub name: Arc<str>,
    /// Its partition count and settings, or why it cannot be described.
    pub state: Result<TopicState, RequestError>,
}

/// A topic's partition count and settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicState {
    /// How many partitions.
    pub partitions: i32,
    /// Its settings.
    pub config: TopicConfig,
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Answer request `id` on connection `conn`.
    Reply {
        /// The connection.
        conn: ConnId,
        /// The request being answered.
        id: RequestId,
        /// The answer.
        response: Response,
    },
    /// Send a message to a peer.
    Send {
        /// The peer.
        to: NodeId,
        /// The message.
        message: Message,
    },
    /// Carry out a disk op and hand its result to [`Node::handle_disk`] under `id`.
    Disk {
        /// The op's number.
        id: OpId,
        /// The op.
        op: DiskOp,
    },
}

/// A node's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// This node's id.
    pub node_id: NodeId,
    /// The seed of the node's random generator.
    pub seed: u64,
    /// How often retention runs (Kafka's `log.retention.check.interval.ms`).
    pub retention_check_interval: Duration,
    /// How often partitions with unflushed data are flushed even when no producer waits.
    pub flush_interval: Duration,
    /// How long after a log failed the node tries to recover it.
    pub recovery_backoff: Duration,
    /// Whether Metadata may create topics that do not exist (`auto.create.topics.enable`).
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic (`num.partitions`).
    pub default_partitions: i32,
    /// Settings of a topic created without them, and what a deleted setting returns to.
    pub default_topic: TopicConfig,
    /// The cluster: its id, its members, and how clients reach this node.
    pub cluster: ClusterConfig,
}

/// The cluster a node belongs to, as its config and `cairn format` give it (decision 0009).
/// Membership is fixed when the cluster is formatted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The cluster's id, as formatted.
    pub cluster_id: String,
    /// The controller quorum: the Raft voters.
    pub voters: Vec<NodeId>,
    /// Every node that is not a voter: Raft learners, brokers only.
    pub learners: Vec<NodeId>,
    /// The host clients reach this node's Kafka listener at; registered with the controller
    /// and handed to clients by Metadata.
    pub advertised_host: String,
    /// The port of that listener.
    pub advertised_port: u16,
    /// `default.replication.factor`: replicas of a topic created without a count.
    pub default_replication_factor: i32,
    /// How often the broker heartbeats to the active controller.
    pub broker_heartbeat_interval: Duration,
    /// How long the controller keeps a broker without a heartbeat before fencing it.
    pub broker_session_timeout: Duration,
    /// Raft's election timeout range (each election draws one from it) and heartbeat.
    pub election_timeout_min: Duration,
    /// See `election_timeout_min`.
    pub election_timeout_max: Duration,
    /// How often a Raft leader contacts its followers when it has nothing to send.
    pub raft_heartbeat_interval: Duration,
    /// `replica.lag.time.max.ms`: a follower not caught up for this long leaves the ISR.
    pub replica_lag_time_max: Duration,
}

impl ClusterConfig {
    /// A cluster of one node, `node_id`, which is its only voter.
    pub fn single(node_id: NodeId) -> ClusterConfig {
        ClusterConfig {
            cluster_id: "cairn-dev".to_string(),
            voters: vec![node_id],
            learners: Vec::new(),
            advertised_host: "127.0.0.1".to_string(),
            advertised_port: 9092,
            default_replication_factor: 1,
            broker_heartbeat_interval: Duration::from_millis(250),
            broker_session_timeout: Duration::from_millis(1_500),
            election_timeout_min: Duration::from_millis(500),
            election_timeout_max: Duration::from_millis(1_000),
            raft_heartbeat_interval: Duration::from_millis(100),
            replica_lag_time_max: Duration::from_millis(5_000),
        }
    }

    /// Every node of the cluster, voters first.
    pub fn nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().chain(&self.learners).copied()
    }
}

/// The disk ops that format node `node_id` of `cluster`: the bootstrap record Raft needs to
/// start (decision 0009: a node never formats itself). `initial` for the cluster's first
/// format; `false` for a node whose disk was wiped and that rejoins a running cluster, which
/// then does not vote until it has caught up.
pub fn format_ops(node_id: NodeId, cluster: &ClusterConfig, initial: bool) -> Vec<DiskOp> {
    let record = super::raft::BootstrapRecord {
        cluster_id: cluster.cluster_id.clone(),
        node_id: node_id.0,
        voters: cluster.voters.iter().map(|n| n.0).collect(),
        learners: cluster.learners.iter().map(|n| n.0).collect(),
        initial,
    };
    super::raft::format_ops(&record)
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            node_id: NodeId(0),
            seed: 0,
            retention_check_interval: Duration::from_secs(300),
            flush_interval: Duration::from_secs(1),
            recovery_backoff: Duration::from_secs(1),
            auto_create_topics: true,
            default_partitions: 1,
            default_topic: TopicConfig::default(),
            cluster: ClusterConfig::single(NodeId(0)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Retention,
    Flush,
    Recover,
}

/// What a pending disk op of the node itself (not of a log or the topic store) is for.
#[derive(Debug)]
enum NodeOp {
    /// Listing `partitions/` at start.
    ListPartitions,
    /// Listing a deleted partition's directory, to remove what is in it.
    ListDeleted { topic: Arc<str>, dir: FileName },
    /// Removing one file of a deleted partition.
    RemoveFile,
    /// Removing a deleted partition's (now empty) directory.
    RemoveDir { topic: Arc<str> },
}

/// A topic change waiting for the topic store.
#[derive(Debug)]
struct TopicChange {
    /// Who asked; `None` for a topic a Metadata request auto-creates.
    requester: Option<(ConnId, RequestId)>,
    /// The Metadata request waiting for this creation, by token.
    metadata: Option<u64>,
    /// The topic.
    name: Arc<str>,
}

/// A Metadata request waiting for the topics it auto-creates.
#[derive(Debug)]
struct MetadataWait {
    conn: ConnId,
    id: RequestId,
    topics: Vec<Arc<str>>,
    /// Creations still waiting.
    creations: usize,
    /// Topics whose creation failed, with why.
    failures: Vec<(Arc<str>, RequestError)>,
}

#[derive(Debug)]
struct Partition {
    log: PartitionLog,
    durability: Durability,
    /// Produces waiting for their batch to be flushed: last offset, connection, request.
    waiting_acks: VecDeque<(u64, ConnId, RequestId, u64)>,
    /// Reads and lookups in flight, by token.
    reads: HashMap<u64, (ConnId, RequestId)>,
}

impl Partition {
    fn high_watermark(&self) -> u64 {
        match self.durability {
            Durability::Fsync => self.log.flushed_offset(),
            Durability::Replicate => self.log.log_end_offset(),
        }
    }
}

/// The node's outputs and its disk-op numbering, kept apart from its partitions so that a
/// partition and an [`Outbox`] can be borrowed at once.
#[derive(Debug, Default)]
struct Ops {
    outputs: VecDeque<Output>,
    /// Which partition issued each log op in flight.
    owners: HashMap<OpId, PartitionId>,
    next_op: u64,
}

impl Ops {
    /// A queue for the disk ops of partition `owner`'s log.
    fn outbox<'a>(&'a mut self, owner: &'a PartitionId) -> Outbox<'a> {
        Outbox { ops: self, owner: Some(owner) }
    }

    /// A queue for disk ops the node tracks itself (the topic store's, deletions).
    fn unowned(&mut self) -> Outbox<'_> {
        Outbox { ops: self, owner: None }
    }

    fn reply(&mut self, conn: ConnId, id: RequestId, response: Response) {
        self.outputs.push_back(Output::Reply { conn, id, response });
    }
}

/// Routes disk ops to the node's outputs, remembering which partition's they are.
struct Outbox<'a> {
    ops: &'a mut Ops,
    owner: Option<&'a PartitionId>,
}

impl DiskQueue for Outbox<'_> {
    fn submit(&mut self, op: DiskOp) -> OpId {
        let id = OpId(self.ops.next_op);
        self.ops.next_op += 1;
        if let Some(owner) = self.owner {
            self.ops.owners.insert(id, owner.clone());
        }
        self.ops.outputs.push_back(Output::Disk { id, op });
        id
    }
}

/// One Cairn node. See the module documentation.
#[derive(Debug)]
pub struct Node {
    config: NodeConfig,
    rng: CoreRng,
    started: bool,
    /// Why the node cannot serve at all (its topic store or partitions directory is
    /// unreadable): a driver reports it and stops.
    fatal: Option<String>,
    store: TopicStore,
    partitions: BTreeMap<PartitionId, Partition>,
    ops: Ops,
    node_ops: HashMap<OpId, NodeOp>,
    next_token: u64,
    /// Topic changes waiting for the store, by token.
    topic_changes: HashMap<u64, TopicChange>,
    /// Metadata requests waiting for the topics they auto-create, by token.
    metadata_waits: HashMap<u64, MetadataWait>,
    /// Topics whose partitions' files are being deleted, with the partitions left.
    deleting: BTreeMap<Arc<str>, usize>,
    timers: TimerTable<Timer>,
    flush_wanted: BTreeSet<PartitionId>,
    /// Partitions changed since the last check other than by an input (flushed by
    /// `poll_output`): the next input's check covers them (see [`Node::invariants`]).
    unchecked: Vec<PartitionId>,
    shutting_down: bool,
    data_version: u64,
}

impl Node {
    /// A node starting at `now`: it loads its topics, then lists its partitions and recovers
    /// each, deleting what belongs to no topic.
    pub fn new(config: NodeConfig, now: Instant) -> Node {
        let rng = seeded(config.seed);
        let mut ops = Ops::default();
        let store = TopicStore::open(config.default_topic.clone(), &mut ops.unowned());
        let mut node = Node {
            config,
            rng,
            started: false,
            fatal: None,
            store,
            partitions: BTreeMap::new(),
            ops,
            node_ops: HashMap::new(),
            next_token: 0,
            topic_changes: HashMap::new(),
            metadata_waits: HashMap::new(),
            deleting: BTreeMap::new(),
            timers: TimerTable::default(),
            flush_wanted: BTreeSet::new(),
            unchecked: Vec::new(),
            shutting_down: false,
            data_version: 0,
        };
        node.timers.set(Timer::Retention, now + node.config.retention_check_interval);
        node.timers.set(Timer::Flush, now + node.config.flush_interval);
        node
    }

    // ----- getters -----

    /// Whether the node loaded its topics and listed its partitions (each may still be
    /// recovering).
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// Why the node cannot serve at all, if it cannot: its data directory is unreadable.
    pub fn fatal(&self) -> Option<&str> {
        self.fatal.as_deref()
    }

    /// The log of a partition, if the node holds it.
    pub fn partition(&self, partition: &PartitionId) -> Option<&PartitionLog> {
        self.partitions.get(partition).map(|p| &p.log)
    }

    /// The partitions the node holds.
    pub fn partitions(&self) -> impl Iterator<Item = &PartitionId> {
        self.partitions.keys()
    }

    /// The committed topics: partition counts and settings.
    pub fn topics(&self) -> &BTreeMap<Arc<str>, TopicState> {
        self.store.topics()
    }

    /// A number that grows whenever a high watermark advances or a topic changes: a fetch
    /// that found too little may wait for it to change before it asks again.
    pub fn data_version(&self) -> u64 {
        self.data_version
    }

    /// The node's random generator (for components that need randomness).
    pub fn rng(&mut self) -> &mut CoreRng {
        &mut self.rng
    }

    /// Whether every disk op the node issued has completed and nothing waits to be flushed:
    /// after [`Node::begin_shutdown`], the moment a driver may stop.
    pub fn is_quiescent(&self) -> bool {
        self.ops.owners.is_empty()
            && self.node_ops.is_empty()
            && self.store.is_idle()
            && self.flush_wanted.is_empty()
    }

    // ----- mutators -----

    /// Starts a clean stop: produces are refused from now on (with a retriable error), and
    /// every partition with unflushed data is flushed, so that producers waiting on a flush
    /// get their answer and a restart recovers without a torn tail. The driver keeps feeding
    /// the node until [`Node::is_quiescent`].
    pub fn begin_shutdown(&mut self) {
        self.shutting_down = true;
        let unflushed = self.partitions.iter().filter(|(_, p)| p.log.needs_flush());
        let ids: Vec<PartitionId> = unflushed.map(|(id, _)| id.clone()).collect();
        self.flush_wanted.extend(ids);
    }

    // ----- inputs -----

    /// A client's request `id` on connection `conn`.
    pub fn handle_request(&mut self, now: Instant, conn: ConnId, id: RequestId, request: Request) {
        // What the request can change, for the check after it: a data request changes its
        // partition alone; any other may change topics and partitions.
        let touched = match &request {
            Request::Produce { partition, .. }
            | Request::Fetch { partition, .. }
            | Request::ListOffsets { partition, .. } => Some(partition.clone()),
            _ => None,
        };
        match request {
            Request::CreateTopic { name, partitions, config, validate_only } => {
                self.create_topic(conn, id, name, partitions, config, validate_only)
            }
            Request::DeleteTopic { name } => self.delete_topic(conn, id, name),
            Request::CreatePartitions { name, count, validate_only } => {
                self.create_partitions(conn, id, name, count, validate_only)
            }
            Request::AlterTopicConfig { name, changes, validate_only } => {
                self.alter_topic_config(conn, id, name, &changes, validate_only)
            }
            Request::Metadata { topics, auto_create } => {
                self.metadata(conn, id, topics, auto_create)
            }
            Request::Produce { partition, acks, batch } => {
                self.produce(now, conn, id, partition, acks, batch)
            }
            Request::Fetch { partition, offset, max_bytes } => {
                self.fetch(conn, id, partition, offset, max_bytes)
            }
            Request::ListOffsets { partition, spec } => {
                self.list_offsets(conn, id, partition, spec)
            }
        }
        self.invariants_after_input(touched);
    }

    /// A peer's message.
    pub fn handle_message(&mut self, _now: Instant, from: NodeId, _message: Message) {
        tracing::debug!(?from, "peer message ignored: this node does not replicate yet");
    }

    /// The result of disk op `id`.
    pub fn handle_disk(&mut self, now: Instant, id: OpId, result: DiskResult) {
        let mut touched = None;
        if let Some(op) = self.node_ops.remove(&id) {
            self.node_op_done(op, result);
        } else if self.store.owns(id) {
            self.store.handle_disk(id, result, &mut self.ops.unowned());
            self.drain_store_events();
        } else if let Some(owner) = self.ops.owners.remove(&id) {
            // A deleted partition's ops still complete; nobody waits for them.
            if let Some(partition) = self.partitions.get_mut(&owner) {
                let mut out = self.ops.outbox(&owner);
                partition.log.handle_disk(now, id, result, &mut out);
                self.drain_events(now, &owner);
            }
            touched = Some(owner);
        }
        self.invariants_after_input(touched);
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
                    let unflushed = self.partitions.iter().filter(|(_, p)| p.log.needs_flush());
                    let ids: Vec<PartitionId> = unflushed.map(|(id, _)| id.clone()).collect();
                    self.flush_wanted.extend(ids);
                    self.timers.set(Timer::Flush, now + self.config.flush_interval);
                }
                Timer::Recover => self.recover_failed(now),
            }
        }
        self.invariants_after_input(None);
    }

    // ----- outputs -----

    /// The next thing the driver must do. Flushes the partitions with waiting producers first,
    /// so every produce handled since the last call shares one sync.
    pub fn poll_output(&mut self) -> Option<Output> {
        while let Some(id) = self.flush_wanted.pop_first() {
            if let Some(partition) = self.partitions.get_mut(&id) {
                partition.log.flush(&mut self.ops.outbox(&id));
                self.unchecked.push(id);
            }
        }
        self.ops.outputs.pop_front()
    }

    /// When [`Node::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    // ----- requests -----

    fn reply(&mut self, conn: ConnId, id: RequestId, response: Response) {
        self.ops.reply(conn, id, response);
    }

    fn fail(&mut self, conn: ConnId, id: RequestId, error: impl Into<RequestError>) {
        self.reply(conn, id, Response::Error(error.into()));
    }

    fn open_partition(&mut self, mut id: PartitionId, config: TopicConfig) {
        // Share the topic's name with the store and the partition's siblings (see `Ord for
        // PartitionId`): a partition found on disk comes with a name of its own.
        if let Some((name, _)) = self.store.topics().get_key_value(&id.topic) {
            id.topic = name.clone();
        }
        let log = PartitionLog::open(id.dir(), config.log, &mut self.ops.outbox(&id));
        let partition = Partition {
            log,
            durability: config.durability,
            waiting_acks: VecDeque::new(),
            reads: HashMap::new(),
        };
        self.partitions.insert(id, partition);
    }

    fn produce(
        &mut self,
        now: Instant,
        conn: ConnId,
        id: RequestId,
        partition_id: PartitionId,
        acks: Acks,
        batch: BytesMut,
    ) {
        if self.shutting_down {
            if acks != Acks::None {
                self.fail(conn, id, RequestError::NotReady(partition_id));
            }
            return;
        }
        let Some(partition) = self.partitions.get_mut(&partition_id) else {
            if acks != Acks::None {
                self.fail(conn, id, RequestError::UnknownPartition(partition_id));
            }
            return;
        };
        let mut out = self.ops.outbox(&partition_id);
        // A single node is the leader of epoch 0 of every partition it holds; replication
        // (issue 6) brings real leader epochs.
        let result = partition.log.append_as_leader(now, batch, 0, &mut out);
        if result.is_ok() && partition.durability == Durability::Replicate {
            self.data_version += 1;
        }
        match (result, acks, partition.durability) {
            (Err(error), Acks::None, _) => {
                tracing::debug!(%partition_id, %error, "acks=0 produce refused");
            }
            (Err(error), _, _) => self.fail(conn, id, error),
            (Ok(_), Acks::None, _) => {}
            (Ok(info), _, Durability::Replicate) => {
                self.reply(conn, id, Response::Produced { base_offset: info.base_offset })
            }
            (Ok(info), _, Durability::Fsync) => {
                partition.waiting_acks.push_back((info.last_offset, conn, id, info.base_offset));
                self.flush_wanted.insert(partition_id);
            }
        }
    }

    fn fetch(
        &mut self,
        conn: ConnId,
        id: RequestId,
        partition_id: PartitionId,
        offset: u64,
        max_bytes: u32,
    ) {
        self.next_token += 1;
        let token = self.next_token;
        let Some(partition) = self.partitions.get_mut(&partition_id) else {
            return self.fail(conn, id, RequestError::UnknownPartition(partition_id));
        };
        let high_watermark = partition.high_watermark();
        let mut out = self.ops.outbox(&partition_id);
        match partition.log.read(token, offset, high_watermark, max_bytes, &mut out) {
            Ok(ReadStart::Pending) => {
                partition.reads.insert(token, (conn, id));
            }
            Ok(ReadStart::Empty) => {
                let response = Response::Fetched {
                    records: Bytes::new(),
                    high_watermark,
                    log_start_offset: partition.log.log_start_offset(),
                };
                self.reply(conn, id, response);
            }
            Err(error) => self.fail(conn, id, error),
        }
    }

    fn list_offsets(
        &mut self,
        conn: ConnId,
        id: RequestId,
        partition_id: PartitionId,
        spec: OffsetSpec,
    ) {
        self.next_token += 1;
        let token = self.next_token;
        let Some(partition) = self.partitions.get_mut(&partition_id) else {
            return self.fail(conn, id, RequestError::UnknownPartition(partition_id));
        };
        if !partition.log.is_ready() {
            return self.fail(conn, id, RequestError::NotReady(partition_id));
        }
        let answer = |offset: u64| Response::Offset { offset: offset as i64, timestamp: -1 };
        let response = match spec {
            OffsetSpec::Earliest => answer(partition.log.log_start_offset()),
            OffsetSpec::Latest => answer(partition.high_watermark()),
            OffsetSpec::Timestamp(timestamp) => {
                let mut out = self.ops.outbox(&partition_id);
                match partition.log.offset_for_timestamp(token, timestamp, &mut out) {
                    Ok(None) => {
                        partition.reads.insert(token, (conn, id));
                        return;
                    }
                    Ok(Some(found)) => offset_response(found, partition.high_watermark()),
                    Err(error) => Response::Error(error.into()),
                }
            }
        };
        self.reply(conn, id, response);
    }

    // ----- completions -----

    fn drain_events(&mut self, now: Instant, id: &PartitionId) {
        while let Some(event) = self.partitions.get_mut(id).and_then(|p| p.log.poll_event()) {
            self.handle_log_event(now, id, event);
        }
    }

    fn handle_log_event(&mut self, now: Instant, id: &PartitionId, event: LogEvent) {
        let partition = self.partitions.get_mut(id).expect("events come from held partitions");
        let outputs = &mut self.ops.outputs;
        match event {
            LogEvent::Recovered { .. } => self.data_version += 1,
            LogEvent::Flushed { offset } => {
                self.data_version += 1;
                while partition.waiting_acks.front().is_some_and(|(last, ..)| *last < offset) {
                    let (_, conn, request, base_offset) =
                        partition.waiting_acks.pop_front().expect("checked");
                    let response = Response::Produced { base_offset };
                    outputs.push_back(Output::Reply { conn, id: request, response });
                }
            }
            LogEvent::Read { token, result } => {
                let Some((conn, request)) = partition.reads.remove(&token) else {
                    return;
                };
                let response = match result {
                    Ok(records) => Response::Fetched {
                        records,
                        high_watermark: partition.high_watermark(),
                        log_start_offset: partition.log.log_start_offset(),
                    },
                    Err(error) => Response::Error(error.into()),
                };
                outputs.push_back(Output::Reply { conn, id: request, response });
            }
            LogEvent::OffsetForTimestamp { token, result } => {
                let Some((conn, request)) = partition.reads.remove(&token) else {
                    return;
                };
                let response = match result {
                    Ok(found) => offset_response(found, partition.high_watermark()),
                    Err(error) => Response::Error(error.into()),
                };
                outputs.push_back(Output::Reply { conn, id: request, response });
            }
            LogEvent::Truncated { .. } => {}
            LogEvent::Failed { error } => {
                // Writes that waited for a flush are lost or unknown: tell their producers.
                for (_, conn, request, _) in std::mem::take(&mut partition.waiting_acks) {
                    let response = Response::Error(error.clone().into());
                    outputs.push_back(Output::Reply { conn, id: request, response });
                }
                self.timers.set(Timer::Recover, now + self.config.recovery_backoff);
            }
        }
    }

    fn apply_retention(&mut self, now: Instant) {
        for (id, partition) in &mut self.partitions {
            let high_watermark = partition.high_watermark();
            partition.log.apply_retention(now, high_watermark, &mut self.ops.outbox(id));
        }
    }

    fn recover_failed(&mut self, _now: Instant) {
        for (id, partition) in &mut self.partitions {
            if partition.log.failure().is_some() {
                tracing::info!(%id, "recovering a failed partition log");
                partition.log.recover(&mut self.ops.outbox(id));
            }
        }
    }

    fn submit_node_op(&mut self, op: DiskOp, purpose: NodeOp) {
        let id = self.ops.unowned().submit(op);
        self.node_ops.insert(id, purpose);
    }

    /// Checks all of the node's invariants; a failure is a bug.
    ///
    /// The node runs this full check after every input that may change topics or several
    /// partitions: topic requests, the topic store's and the node's own disk ops, and
    /// timeouts (so at least once per flush interval). After an input that changes one
    /// partition only (a produce, fetch or offset lookup; a completed op of one partition's
    /// log) it checks that partition's own invariants, and those of the partitions
    /// `poll_output` flushed since the last check: nothing else can have changed, and which
    /// partitions and topics exist only changes under a full check (docs/simulator.md, Speed).
    pub fn invariants(&self) {
        self.store.invariants();
        // Partitions and topics are both sorted by topic name, so one merged pass finds each
        // partition's topic without a lookup per partition.
        let mut topics = self.store.topics().iter().peekable();
        for (id, partition) in &self.partitions {
            partition_invariants(partition);
            if self.started {
                let before = |name: &Arc<str>| !Arc::ptr_eq(name, &id.topic) && *name < id.topic;
                while topics.next_if(|(name, _)| before(name)).is_some() {}
                let topic = topics.peek().filter(|(name, _)| **name == id.topic);
                assert!(
                    topic.is_some_and(|(_, t)| id.partition < t.partitions),
                    "{id} has a topic"
                );
            }
        }
    }

    /// The check after an input: everything when `touched` is `None`, else partition
    /// `touched` and the partitions flushed since the last check.
    fn invariants_after_input(&mut self, touched: Option<PartitionId>) {
        let mut unchecked = std::mem::take(&mut self.unchecked);
        match touched {
            None => self.invariants(),
            Some(touched) => {
                unchecked.push(touched);
                for id in &unchecked {
                    if let Some(partition) = self.partitions.get(id) {
                        partition_invariants(partition);
                    }
                }
            }
        }
        unchecked.clear();
        self.unchecked = unchecked;
    }
}

/// The invariants of one partition that its own inputs can break.
fn partition_invariants(partition: &Partition) {
    partition.log.invariants();
    let offsets = partition.waiting_acks.iter().map(|(last, ..)| *last);
    assert!(offsets.clone().zip(offsets.skip(1)).all(|(a, b)| a < b), "acks in order");
    assert!(partition.high_watermark() <= partition.log.log_end_offset());
}

fn offset_response(found: Option<(u64, i64)>, high_watermark: u64) -> Response {
    match found {
        Some((offset, timestamp)) if offset < high_watermark => {
            Response::Offset { offset: offset as i64, timestamp }
        }
        _ => Response::Offset { offset: -1, timestamp: -1 },
    }
}

#[cfg(test)]
mod tests;
