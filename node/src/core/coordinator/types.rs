//! The coordinator's vocabulary: the requests it serves, its answers, its errors, what it
//! asks the node to do, and its settings.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::core::group::{
    Generation, GroupConfig, GroupDescription, GroupError, GroupState, JoinRequest, JoinResponse,
    LeaveMember, LeaveResult, RequestToken, SyncRequest, SyncResponse,
};
use crate::core::node::PartitionId;

/// The internal topic that holds committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// The coordinator's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorConfig {
    /// Partitions of [`OFFSETS_TOPIC`] (`offsets.topic.num.partitions`); groups hash onto
    /// them, so it must not change once the topic exists.
    pub partitions: i32,
    /// The settings of every group; each group's seed is drawn from `seed`.
    pub group: GroupConfig,
    /// The seed of the generator of group seeds.
    pub seed: u64,
    /// The longest metadata string an offset may carry (`offset.metadata.max.bytes`).
    pub metadata_bytes_max: usize,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            partitions: 50,
            group: GroupConfig::default(),
            seed: 0,
            metadata_bytes_max: 4096,
        }
    }
}

/// An offset a group committed: the next offset it consumes, as in Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The offset.
    pub offset: i64,
    /// The leader epoch of the last record consumed (KIP-320), -1 if unknown.
    pub leader_epoch: i32,
    /// The client's metadata string.
    pub metadata: String,
    /// When it was committed, in ms since the Unix epoch.
    pub commit_timestamp_ms: i64,
}

/// An OffsetCommit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommit {
    /// The group.
    pub group: String,
    /// The committer's generation; -1 for a simple consumer (no group membership).
    pub generation: Generation,
    /// The committer's member id; empty for a simple consumer.
    pub member_id: String,
    /// Its `group.instance.id`, for static members.
    pub group_instance_id: Option<String>,
    /// The offsets: each partition with its offset, leader epoch and metadata (the commit
    /// time is the coordinator's).
    pub offsets: Vec<(PartitionId, i64, i32, String)>,
}

/// A request to the coordinator of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoordinatorRequest {
    /// JoinGroup.
    Join {
        /// The group.
        group: String,
        /// The join.
        request: JoinRequest,
    },
    /// SyncGroup.
    Sync {
        /// The group.
        group: String,
        /// The sync.
        request: SyncRequest,
    },
    /// Heartbeat.
    Heartbeat {
        /// The group.
        group: String,
        /// The member.
        member_id: String,
        /// Its `group.instance.id`, for static members.
        group_instance_id: Option<String>,
        /// Its generation.
        generation: Generation,
    },
    /// LeaveGroup.
    Leave {
        /// The group.
        group: String,
        /// The members leaving.
        members: Vec<LeaveMember>,
    },
    /// OffsetCommit.
    Commit(OffsetCommit),
    /// OffsetFetch of one group: the partitions named, or every partition it committed.
    Fetch {
        /// The group.
        group: String,
        /// The partitions, or `None` for all.
        partitions: Option<Vec<PartitionId>>,
    },
    /// DescribeGroups of one group.
    Describe {
        /// The group.
        group: String,
    },
    /// DeleteGroups of one group: only an Empty (or unknown-to-membership) group.
    Delete {
        /// The group.
        group: String,
    },
}

impl CoordinatorRequest {
    /// The group the request is about.
    pub fn group(&self) -> &str {
        match self {
            CoordinatorRequest::Join { group, .. }
            | CoordinatorRequest::Sync { group, .. }
            | CoordinatorRequest::Heartbeat { group, .. }
            | CoordinatorRequest::Leave { group, .. }
            | CoordinatorRequest::Fetch { group, .. }
            | CoordinatorRequest::Describe { group }
            | CoordinatorRequest::Delete { group } => group,
            CoordinatorRequest::Commit(commit) => &commit.group,
        }
    }
}

/// The answer to a [`CoordinatorRequest`], of the same kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoordinatorResponse {
    /// JoinGroup's.
    Join(Result<JoinResponse, CoordinatorError>),
    /// SyncGroup's.
    Sync(Result<SyncResponse, CoordinatorError>),
    /// Heartbeat's.
    Heartbeat(Result<(), CoordinatorError>),
    /// LeaveGroup's.
    Leave(Result<Vec<LeaveResult>, CoordinatorError>),
    /// OffsetCommit's: every offset of the request is committed, or none.
    Commit(Result<(), CoordinatorError>),
    /// OffsetFetch's: each partition with its committed offset, if any.
    Fetch(Result<Vec<(PartitionId, Option<CommittedOffset>)>, CoordinatorError>),
    /// DescribeGroups': a group unknown here is described as Dead with no members.
    Describe(Result<GroupDescription, CoordinatorError>),
    /// DeleteGroups'.
    Delete(Result<(), CoordinatorError>),
}

/// A group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    /// The group.
    pub group: String,
    /// Its protocol type; empty for a group without members.
    pub protocol_type: String,
    /// Its state.
    pub state: GroupState,
}

/// Why a coordinator request failed. Each maps to Kafka's error code
/// ([`CoordinatorError::code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoordinatorError {
    /// This node does not lead the group's offsets partition.
    #[error("not coordinator: find the coordinator again")]
    NotCoordinator,
    /// This node leads the partition but is still reading it.
    #[error("coordinator load in progress: retry")]
    LoadInProgress,
    /// The coordinator cannot serve now (the offsets topic is being created, or an append
    /// to the partition failed): find the coordinator again and retry.
    #[error("coordinator not available: {0}")]
    NotAvailable(String),
    /// The group state machine refused.
    #[error(transparent)]
    Group(#[from] GroupError),
    /// DeleteGroups of a group that has members.
    #[error("the group has members")]
    NonEmptyGroup,
    /// DeleteGroups of a group unknown here.
    #[error("group id not found")]
    GroupIdNotFound,
    /// An empty group id.
    #[error("invalid group id")]
    InvalidGroupId,
    /// An offset's metadata string is longer than `offset.metadata.max.bytes`.
    #[error("offset metadata too large")]
    OffsetMetadataTooLarge,
    /// FindCoordinator for a key type Cairn has no coordinator of (transactions).
    #[error("key type {0} not supported: Cairn has no transaction coordinator")]
    UnsupportedKeyType(i8),
}

impl CoordinatorError {
    /// Kafka's error code.
    pub fn code(&self) -> i16 {
        match self {
            CoordinatorError::NotCoordinator => 16,
            CoordinatorError::LoadInProgress => 14,
            CoordinatorError::NotAvailable(_) => 15,
            CoordinatorError::Group(error) => error.code(),
            CoordinatorError::NonEmptyGroup => 68,
            CoordinatorError::GroupIdNotFound => 69,
            CoordinatorError::InvalidGroupId => 24,
            CoordinatorError::OffsetMetadataTooLarge => 12,
            // INVALID_REQUEST: a transactional producer fails at once rather than retrying.
            CoordinatorError::UnsupportedKeyType(_) => 42,
        }
    }
}

/// What the coordinator asks the node to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoordinatorOutput {
    /// Answer the request handed in under `token`.
    Reply {
        /// The request's token.
        token: RequestToken,
        /// The answer.
        response: CoordinatorResponse,
    },
    /// Append `batch` to offsets partition `partition` as an acks=all produce in leader epoch
    /// `leader_epoch`; hand the outcome to `Coordinator::handle_append` under `append`.
    Append {
        /// The offsets partition.
        partition: i32,
        /// The leader epoch the coordinator loaded.
        leader_epoch: i32,
        /// The append's number.
        append: u64,
        /// The batch.
        batch: BytesMut,
    },
    /// Read offsets partition `partition` from `offset` (a consumer's fetch, below the HW);
    /// hand the outcome to `Coordinator::handle_read` under `read`.
    Read {
        /// The offsets partition.
        partition: i32,
        /// The leader epoch the coordinator is loading.
        leader_epoch: i32,
        /// The read's number.
        read: u64,
        /// The first offset wanted.
        offset: u64,
    },
}

/// The outcome of a read the coordinator asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Whole batches from the offset asked (possibly none), and the HW.
    Read {
        /// The batches.
        records: Bytes,
        /// The partition's high watermark.
        high_watermark: u64,
    },
    /// The read failed (retried after a backoff).
    Failed,
}

/// A topic name as the coordinator keeps it.
pub type TopicName = Arc<str>;
