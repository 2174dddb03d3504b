//! The node's public vocabulary: what clients ask ([`Request`]) and are answered
//! ([`Response`]), what the driver must do ([`Output`]), and the node's settings
//! ([`NodeConfig`], [`ClusterConfig`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::Message;
use crate::core::controller::TopicId;
use crate::core::coordinator::{
    CoordinatorError, CoordinatorRequest, CoordinatorResponse, ListedGroup,
};
use crate::core::io::{ConnId, DiskOp, FileName, NodeId, OpId, RequestId};
use crate::core::log::LogError;
pub use crate::core::replica::{Acks, OffsetSpec, REPLICA_FETCH_BYTES_DEFAULT, ReplicaError};
use crate::core::topic::{ConfigChange, TopicConfig, TopicError};

/// The directory, under the data directory, that holds one directory per partition.
pub const PARTITIONS_DIR: &str = "partitions";
/// The longest topic name a partition's directory spells out; the topic id that follows
/// is what identifies it, so a directory name stays under the file system's 255 bytes.
const DIR_TOPIC_BYTES_MAX: usize = 200;

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

    /// The partition's directory: `partitions/<topic>-<partition>.<id>`, where `<id>` is
    /// the first 8 bytes of the topic's id in hex. The id tells a partition of a topic that
    /// was deleted and created again under the same name from the new one, so that data of
    /// the old topic is never served as the new topic's.
    pub fn dir(&self, topic_id: TopicId) -> FileName {
        FileName::new(format!("{PARTITIONS_DIR}/{}", self.dir_name(topic_id)))
    }

    fn dir_name(&self, topic_id: TopicId) -> String {
        let mut topic = &*self.topic;
        if topic.len() > DIR_TOPIC_BYTES_MAX {
            topic = &topic[..DIR_TOPIC_BYTES_MAX];
        }
        format!("{topic}-{}.{}", self.partition, dir_id(topic_id))
    }
}

/// The part of a partition directory's name that identifies its topic.
pub fn dir_id(topic_id: TopicId) -> String {
    // Digit by digit: `format!` per byte was a tenth of a replica's metadata update.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(16);
    for b in &topic_id.0[..8] {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

/// The topic id part and the partition of a partition directory's name, if it is one.
pub fn parse_dir_name(name: &str) -> Option<(String, i32)> {
    let (head, id) = name.rsplit_once('.')?;
    let (topic, partition) = head.rsplit_once('-')?;
    let partition = partition.parse().ok().filter(|p: &i32| *p >= 0)?;
    let hex = id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit());
    (hex && !topic.is_empty()).then(|| (id.to_string(), partition))
}

impl Ord for PartitionId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // A node's partitions share their topic's name (`Node::open_partition`), so the maps
        // keyed by partition mostly compare pointers rather than names (docs/simulator.md,
        // Speed). `Arc<str>`'s `==` takes the same shortcut, so `Eq` agrees.
        // Names that differ in their first byte (most topics' names do) are ordered by it,
        // as the whole comparison would order them, without a call to `memcmp`.
        let topics = if Arc::ptr_eq(&self.topic, &other.topic) {
            std::cmp::Ordering::Equal
        } else {
            let (a, b) = (self.topic.as_bytes(), other.topic.as_bytes());
            a.first().cmp(&b.first()).then_with(|| a.cmp(b))
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

/// What a client asks of the node. `Clone` so a simulated network can duplicate it.
#[derive(Debug, Clone)]
pub enum Request {
    /// Create a topic and its partitions, through the active controller. Answered once the
    /// topic is committed to the metadata log; its partitions may still be electing leaders
    /// (their requests get a retriable error meanwhile).
    CreateTopic {
        /// The topic's name.
        name: Arc<str>,
        /// How many partitions.
        partitions: i32,
        /// How many replicas of each; -1 for the cluster's default.
        replication_factor: i32,
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
    /// Describe the cluster and topics: every topic when `topics` is `None`. With
    /// `auto_create` (and the node's `auto_create_topics`), topics asked for by name that do
    /// not exist are created with the cluster's defaults first.
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
        /// The leader epoch the client believes current (Fetch v9+), fenced if stale.
        leader_epoch: Option<i32>,
    },
    /// Look up an offset.
    ListOffsets {
        /// The partition.
        partition: PartitionId,
        /// Which offset.
        spec: OffsetSpec,
        /// The leader epoch the client believes current (ListOffsets v4+).
        leader_epoch: Option<i32>,
    },
    /// Which node coordinates group `key` (FindCoordinator). The first one creates
    /// `__consumer_offsets` (decision 0015).
    FindCoordinator {
        /// The group id.
        key: String,
        /// Kafka's key type: 0 for a group; 1 (a transaction) has no coordinator here.
        key_type: i8,
    },
    /// A request to the coordinator of a group (this node must be it).
    Group(CoordinatorRequest),
    /// The groups this node coordinates (ListGroups).
    ListGroups,
    /// A producer id for an idempotent producer (InitProducerId), answered with epoch 0.
    InitProducerId {
        /// The producer's transactional id: Cairn has no transactions, so one is refused.
        transactional_id: Option<Arc<str>>,
    },
}

/// Why a request failed: each becomes a Kafka error code at the edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The partition does not exist.
    #[error("unknown topic or partition {0}")]
    UnknownPartition(PartitionId),
    /// The topic does not exist.
    #[error("unknown topic {0}")]
    UnknownTopic(Arc<str>),
    /// The topic name, partition count or a setting is not valid.
    #[error(transparent)]
    InvalidTopic(#[from] TopicError),
    /// This node does not lead the partition; `leader` is the one the metadata names.
    #[error("this node does not lead {partition} (leader: {leader:?})")]
    NotLeader {
        /// The partition.
        partition: PartitionId,
        /// Its leader as this node knows it.
        leader: Option<NodeId>,
    },
    /// The node is still starting or stopping, or has no controller to ask: retry.
    #[error("the node is starting or stopping")]
    NodeNotReady,
    /// The active controller could not be reached in time: retry.
    #[error("no answer from the active controller in time")]
    ControllerTimeout,
    /// The active controller refused, with this Kafka error code.
    #[error("the controller refused: {message}")]
    Controller {
        /// Kafka's error code.
        code: i16,
        /// What went wrong, for people.
        message: String,
    },
    /// The partition's replica refused.
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// The log refused or failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The group coordinator refused.
    #[error(transparent)]
    Coordinator(#[from] CoordinatorError),
    /// A transactional producer asked for an id: Cairn implements idempotence without
    /// transactions.
    #[error(
        "transactions are not supported: use an idempotent producer without a transactional.id"
    )]
    TransactionsUnsupported,
}

/// The node's answer to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The topic change asked for is committed (or, with `validate_only`, would be valid).
    TopicChanged,
    /// The cluster and topics described.
    Metadata(ClusterView),
    /// The batch was appended (and is as durable and replicated as its acks asked).
    Produced {
        /// The offset of its first record.
        base_offset: u64,
    },
    /// Batches read, all below the high watermark.
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
        /// The leader epoch it was answered in.
        leader_epoch: i32,
    },
    /// The request failed.
    Error(RequestError),
    /// The coordinator of the group asked for.
    Coordinator {
        /// Its node id.
        node_id: NodeId,
        /// The host of its Kafka listener.
        host: String,
        /// The port of that listener.
        port: u16,
    },
    /// A coordinator's answer.
    Group(CoordinatorResponse),
    /// The groups this node coordinates.
    Groups(Vec<ListedGroup>),
    /// A producer id handed out (InitProducerId).
    ProducerId {
        /// The id.
        producer_id: i64,
        /// Its epoch: always 0 without transactions.
        producer_epoch: i16,
    },
}

/// One committed offset of a group this node coordinates, for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOffset {
    /// The group.
    pub group: String,
    /// The partition.
    pub partition: PartitionId,
    /// The committed offset (the next to consume).
    pub committed: i64,
    /// The partition's high watermark, where this node leads it.
    pub high_watermark: Option<u64>,
}

/// What Metadata answers: the brokers, the active controller and the topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// The cluster's id.
    pub cluster_id: String,
    /// The active controller, as far as this node knows.
    pub controller: Option<NodeId>,
    /// The brokers clients may connect to (registered and not fenced), by id.
    pub brokers: Vec<BrokerInfo>,
    /// One entry per topic asked for (every topic when none was named), by name.
    pub topics: Vec<TopicInfo>,
}

/// A broker as Metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Its node id.
    pub node_id: NodeId,
    /// The host of its Kafka listener.
    pub host: String,
    /// The port of its Kafka listener.
    pub port: u16,
    /// Its rack, if configured.
    pub rack: Option<String>,
}

/// One topic as Metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic's name.
    pub name: Arc<str>,
    /// Its partitions and settings, or why it cannot be described.
    pub state: Result<TopicState, RequestError>,
}

/// A topic's id, partitions and settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicState {
    /// Its id (Kafka's topic UUID).
    pub id: TopicId,
    /// Its partitions, by index.
    pub partitions: Vec<PartitionInfo>,
    /// Its settings.
    pub config: TopicConfig,
}

/// One partition's replicas and leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Its leader, if it has one.
    pub leader: Option<NodeId>,
    /// Its leader epoch.
    pub leader_epoch: i32,
    /// Its replicas, in preference order.
    pub replicas: Vec<NodeId>,
    /// Its in-sync replicas.
    pub isr: Vec<NodeId>,
    /// Its replicas on brokers that are fenced or not registered.
    pub offline: Vec<NodeId>,
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
    /// Carry out a disk op and hand its result to `Node::handle_disk` under `id`.
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
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets` when it is created.
    pub offsets_topic_partitions: i32,
    /// `offsets.topic.replication.factor`: its replicas, at most the live brokers.
    pub offsets_topic_replication_factor: i32,
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
    /// `replica.fetch.max.bytes`: a follower's soft byte limit per fetch of one partition.
    pub replica_fetch_bytes_max: u32,
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
            replica_fetch_bytes_max: REPLICA_FETCH_BYTES_DEFAULT,
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
/// then does not vote until it has caught up. `directory_id` names this format of the
/// directory: draw it at random, so that a directory formatted again gets another (the
/// controller then knows the broker lost its replicas' data).
pub fn format_ops(
    node_id: NodeId,
    cluster: &ClusterConfig,
    initial: bool,
    directory_id: u64,
) -> Vec<DiskOp> {
    let record = crate::core::raft::BootstrapRecord {
        cluster_id: cluster.cluster_id.clone(),
        node_id: node_id.0,
        voters: cluster.voters.iter().map(|n| n.0).collect(),
        learners: cluster.learners.iter().map(|n| n.0).collect(),
        initial,
        directory_id,
    };
    crate::core::raft::format_ops(&record)
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
            offsets_topic_partitions: 50,
            offsets_topic_replication_factor: 3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_directory_names_its_topic_partition_and_id_prefix() {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&[0x00, 0x01, 0x9a, 0xbf, 0x10, 0xff, 0x7e, 0xc3]);
        assert_eq!(dir_id(TopicId(id)), "00019abf10ff7ec3");
        let dir = PartitionId::new("orders", 2).dir(TopicId(id));
        let name = dir.to_string();
        let last = name.rsplit('/').next().expect("a name");
        assert_eq!(last, "orders-2.00019abf10ff7ec3");
        assert_eq!(parse_dir_name(last), Some(("00019abf10ff7ec3".to_string(), 2)));
    }
}
