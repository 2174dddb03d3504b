//! The replica's public vocabulary: the state the node hands in, the settings, the client
//! answers and errors, and the events the node drains.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::messages::{ErrorCode, ReplicaMessage};
use crate::core::io::NodeId;
use crate::core::limits::PRODUCER_ID_EXPIRATION_MS_DEFAULT;
use crate::core::log::LogError;
use crate::core::producer::ProducerError;
use crate::core::topic::Durability;

/// A partition's replication state as the committed metadata gives it (the node converts
/// from the controller's record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    /// Every replica, in preference order.
    pub replicas: Vec<NodeId>,
    /// The in-sync replicas, a subset of `replicas` holding the leader.
    pub isr: Vec<NodeId>,
    /// The leader, if any.
    pub leader: Option<NodeId>,
    /// Bumped on every leader change.
    pub leader_epoch: i32,
    /// Bumped on every change of the partition (ISR, replicas, leader).
    pub partition_epoch: i32,
}

/// How many acknowledgements a producer waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// No answer at all.
    None,
    /// The leader's.
    Leader,
    /// Every in-sync replica's.
    All,
}

/// Which offset a ListOffsets asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The high watermark.
    Latest,
    /// The first offset whose record timestamp is at or after this (ms since the epoch).
    Timestamp(i64),
}

/// `replica.fetch.max.bytes` unless set: how much of one partition a follower's fetch asks
/// for at most (soft: the first batch is always whole).
pub const REPLICA_FETCH_BYTES_DEFAULT: u32 = 1 << 20;

/// A replica's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// This node.
    pub node_id: NodeId,
    /// The partition's topic.
    pub topic: Arc<str>,
    /// The partition's index.
    pub partition: i32,
    /// When writes count as done (design §3).
    pub durability: Durability,
    /// `min.insync.replicas`: acks=all needs at least this many in-sync replicas.
    pub min_insync_replicas: usize,
    /// `replica.lag.time.max.ms`: a follower not caught up for this long leaves the ISR.
    pub replica_lag_time_max: Duration,
    /// `replica.fetch.max.bytes`: a follower's soft byte limit per fetch.
    pub replica_fetch_bytes_max: u32,
    /// `replica.fetch.wait.max.ms`: how long a leader holds a fetch with nothing new.
    pub replica_fetch_wait_max: Duration,
    /// How long a follower waits for an answer beyond the fetch wait before asking again.
    pub replica_request_timeout: Duration,
    /// `replica.fetch.backoff.ms`: pause after an error answer.
    pub replica_fetch_backoff: Duration,
    /// Pause before proposing an ISR change again after one failed.
    pub alter_partition_backoff: Duration,
    /// How long an ISR change may stay unanswered before it is proposed again.
    pub alter_partition_timeout: Duration,
    /// How long after its log failed the replica recovers it.
    pub recovery_backoff: Duration,
    /// `producer.id.expiration.ms`: an idempotent producer whose last batch is older than
    /// this is forgotten.
    pub producer_id_expiration: Duration,
}

impl ReplicaConfig {
    /// Defaults for partition `partition` of `topic` on node `node_id` (decision 0009's
    /// timeouts: `replica.lag.time.max.ms` 5,000 ms).
    pub fn new(node_id: NodeId, topic: impl Into<Arc<str>>, partition: i32) -> ReplicaConfig {
        ReplicaConfig {
            node_id,
            topic: topic.into(),
            partition,
            durability: Durability::Fsync,
            min_insync_replicas: 1,
            replica_lag_time_max: Duration::from_millis(5_000),
            replica_fetch_bytes_max: REPLICA_FETCH_BYTES_DEFAULT,
            replica_fetch_wait_max: Duration::from_millis(500),
            replica_request_timeout: Duration::from_millis(1_000),
            replica_fetch_backoff: Duration::from_millis(100),
            alter_partition_backoff: Duration::from_millis(100),
            alter_partition_timeout: Duration::from_millis(3_000),
            recovery_backoff: Duration::from_millis(1_000),
            producer_id_expiration: Duration::from_millis(PRODUCER_ID_EXPIRATION_MS_DEFAULT),
        }
    }
}

/// The role the committed metadata gives this replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// No state yet, no leader, or this node is not a replica.
    None,
    /// The leader.
    Leader,
    /// A follower of `leader`.
    Follower {
        /// The leader it fetches from.
        leader: NodeId,
    },
}

/// Why a client request failed; each has a Kafka error code ([`ReplicaError::code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    /// This replica is not the leader.
    #[error("not the leader of the partition")]
    NotLeaderOrFollower,
    /// The request's leader epoch is older than this replica's.
    #[error("leader epoch {request} is older than the current {current}")]
    FencedLeaderEpoch {
        /// The request's epoch.
        request: i32,
        /// This replica's.
        current: i32,
    },
    /// The request's leader epoch is newer than this replica's: its metadata lags.
    #[error("leader epoch {request} is newer than the current {current}")]
    UnknownLeaderEpoch {
        /// The request's epoch.
        request: i32,
        /// This replica's.
        current: i32,
    },
    /// acks=all with fewer in-sync replicas than `min.insync.replicas`; nothing appended.
    #[error("{isr} in-sync replicas, fewer than min.insync.replicas = {min}")]
    NotEnoughReplicas {
        /// In-sync replicas.
        isr: usize,
        /// The minimum.
        min: usize,
    },
    /// The batch was appended, but the ISR was below `min.insync.replicas` when it was
    /// replicated: the producer must treat the write as unknown.
    #[error("appended, but {isr} in-sync replicas is fewer than min.insync.replicas = {min}")]
    NotEnoughReplicasAfterAppend {
        /// In-sync replicas.
        isr: usize,
        /// The minimum.
        min: usize,
    },
    /// The leader's log failed in this leader epoch; it waits for a new leader.
    #[error("the leader's log failed in leader epoch {leader_epoch}; waiting for a new leader")]
    LeadershipSuspended {
        /// The epoch it led.
        leader_epoch: i32,
    },
    /// Too many producers wait on this partition already; retry.
    #[error("too many produce requests waiting on the partition")]
    TooManyWaiting,
    /// The log refused or failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The idempotent producer state refused the batch (a sequence gap, a fenced producer
    /// epoch); nothing was appended.
    #[error(transparent)]
    Producer(#[from] ProducerError),
}

impl ReplicaError {
    /// The Kafka error code of the error.
    pub fn code(&self) -> i16 {
        match self {
            ReplicaError::NotLeaderOrFollower => ErrorCode::NotLeaderOrFollower.code(),
            ReplicaError::FencedLeaderEpoch { .. } => ErrorCode::FencedLeaderEpoch.code(),
            ReplicaError::UnknownLeaderEpoch { .. } => ErrorCode::UnknownLeaderEpoch.code(),
            ReplicaError::NotEnoughReplicas { .. } => ErrorCode::NotEnoughReplicas.code(),
            ReplicaError::NotEnoughReplicasAfterAppend { .. } => {
                ErrorCode::NotEnoughReplicasAfterAppend.code()
            }
            ReplicaError::LeadershipSuspended { .. } => ErrorCode::KafkaStorageError.code(),
            ReplicaError::TooManyWaiting => 7, // REQUEST_TIMED_OUT: retriable
            ReplicaError::Log(LogError::InvalidBatch(_)) => ErrorCode::CorruptMessage.code(),
            ReplicaError::Log(LogError::OffsetOutOfRange { .. }) => {
                ErrorCode::OffsetOutOfRange.code()
            }
            ReplicaError::Log(LogError::StaleEpoch { .. }) => ErrorCode::FencedLeaderEpoch.code(),
            ReplicaError::Log(_) => ErrorCode::KafkaStorageError.code(),
            ReplicaError::Producer(ProducerError::OutOfOrderSequence { .. }) => 45,
            ReplicaError::Producer(ProducerError::InvalidProducerEpoch { .. }) => 47,
            ReplicaError::Producer(ProducerError::InvalidBatch { .. }) => 87, // INVALID_RECORD
        }
    }
}

/// The answer to a client request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaResponse {
    /// The batch was appended (and is as durable and replicated as its acks asked).
    Produced {
        /// The offset of its first record.
        base_offset: u64,
    },
    /// Batches read, all below the high watermark.
    Fetched {
        /// Whole batches, possibly none.
        records: Bytes,
        /// The high watermark.
        high_watermark: u64,
        /// The log start offset.
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
    Error(ReplicaError),
}

/// Something the node must act on, from [`Replica::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaEvent {
    /// Answer the client request the node handed in under `token`.
    Reply {
        /// The caller's token.
        token: u64,
        /// The answer.
        response: ReplicaResponse,
    },
    /// Send `message` to the replica of this partition on node `to`.
    Send {
        /// The peer.
        to: NodeId,
        /// The message.
        message: ReplicaMessage,
    },
    /// Ask the controller to change the ISR (the leader's one change in flight). The outcome
    /// comes back as a new [`PartitionState`] or through [`Replica::alter_partition_failed`].
    AlterPartition {
        /// The leader epoch the change is made in.
        leader_epoch: i32,
        /// The partition epoch it is based on.
        partition_epoch: i32,
        /// The ISR proposed.
        new_isr: Vec<NodeId>,
        /// The leader's log failed in this epoch, so it cannot lead on in it: it asks for
        /// another leader from the ISR, or itself again in a new epoch (`new_isr` is then the
        /// ISR as it stands).
        resign: bool,
    },
    /// The high watermark advanced (consumers may see more).
    HighWatermarkAdvanced {
        /// Its new value.
        high_watermark: u64,
    },
    /// The log recovered (at open, or after a failure).
    Recovered {
        /// First offset held.
        log_start_offset: u64,
        /// Offset after the last one held.
        log_end_offset: u64,
    },
    /// The log was truncated (a follower cut a divergent suffix).
    Truncated {
        /// The new log end offset.
        offset: u64,
    },
    /// The log failed; the replica recovers it after `recovery_backoff`. A leader tells the
    /// controller through the node, which should elect another leader.
    Failed {
        /// What went wrong.
        error: LogError,
    },
}
