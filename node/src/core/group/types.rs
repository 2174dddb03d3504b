//! The inputs, answers and errors of one consumer group ([`super::Group`]).
//!
//! Every request the node hands to a group carries a [`RequestToken`]; every answer comes back
//! as a [`GroupEvent`] naming that token, exactly once, so the node can route it to the
//! connection that asked.

use std::time::Duration;

use bytes::Bytes;

/// The node's handle for one request; a group answers each token exactly once.
pub type RequestToken = u64;

/// A Kafka group generation (`generation_id`). Kafka starts a group at 0 and adds one per
/// completed rebalance.
pub type Generation = i32;

/// The states of Kafka's classic group protocol (GroupMetadata.scala's `GroupState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupState {
    /// No members; the group only holds its generation (and, later, its offsets).
    Empty,
    /// A rebalance is under way: the coordinator parks JoinGroups until every known member
    /// has rejoined or the rebalance timeout passes.
    PreparingRebalance,
    /// The generation is chosen and the joins answered; the coordinator waits for the
    /// leader's SyncGroup with the assignment.
    CompletingRebalance,
    /// Every member has its assignment; heartbeats keep sessions alive.
    Stable,
    /// The group is gone here (deleted, or its coordinator moved); every request fails.
    Dead,
}

impl GroupState {
    /// The state's name as DescribeGroups and ListGroups report it.
    pub fn kafka_name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// A JoinGroup request, as the node decoded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    /// The member id the client holds; empty on its first join (KIP-394).
    pub member_id: String,
    /// `group.instance.id` of a static member (KIP-345).
    pub group_instance_id: Option<String>,
    /// The client's `client.id`; it prefixes generated member ids, as in Kafka.
    pub client_id: String,
    /// How long the member may stay silent before the coordinator drops it.
    pub session_timeout: Duration,
    /// How long the coordinator waits for the member to rejoin during a rebalance.
    pub rebalance_timeout: Duration,
    /// The protocol type ("consumer" for consumers); all members must agree.
    pub protocol_type: String,
    /// The assignors the member supports, in its order of preference, each with its
    /// subscription metadata.
    pub protocols: Vec<(String, Bytes)>,
}

/// One member as the leader sees it in its JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    /// The member's id.
    pub member_id: String,
    /// Its `group.instance.id`, for static members.
    pub group_instance_id: Option<String>,
    /// Its metadata for the chosen protocol.
    pub metadata: Bytes,
}

/// A successful JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    /// The generation the member joined.
    pub generation: Generation,
    /// The protocol type of the group.
    pub protocol_type: String,
    /// The assignor chosen for this generation.
    pub protocol_name: String,
    /// The leader's member id.
    pub leader: String,
    /// The member id of the member answered (new for a replaced static member).
    pub member_id: String,
    /// Every member with its metadata for the leader; empty for the others.
    pub members: Vec<JoinedMember>,
    /// True when a static leader rejoined without a rebalance: it gets the member list but
    /// must not compute a new assignment (KIP-814's `skip_assignment`).
    pub skip_assignment: bool,
}

/// A successful SyncGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    /// The protocol type of the group.
    pub protocol_type: String,
    /// The assignor of the generation.
    pub protocol_name: String,
    /// The member's own assignment, as the leader computed it (empty if it gave none).
    pub assignment: Bytes,
}

/// One member named in a LeaveGroup request (v3+ batches them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveMember {
    /// The member id; may be empty when a static member is named by instance id only.
    pub member_id: String,
    /// The `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
}

/// The answer for one member of a LeaveGroup request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveResult {
    /// The member id as named in the request.
    pub member_id: String,
    /// The instance id as named in the request.
    pub group_instance_id: Option<String>,
    /// Whether that member left.
    pub result: Result<(), GroupError>,
}

/// An answer to one request, tied to its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupEvent {
    /// The answer to a JoinGroup.
    Join {
        /// The request answered.
        token: RequestToken,
        /// The generation joined, or why not.
        result: Result<JoinResponse, GroupError>,
    },
    /// The answer to a SyncGroup.
    Sync {
        /// The request answered.
        token: RequestToken,
        /// The member's assignment, or why not.
        result: Result<SyncResponse, GroupError>,
    },
    /// The answer to a Heartbeat.
    Heartbeat {
        /// The request answered.
        token: RequestToken,
        /// `Ok` to carry on; `RebalanceInProgress` tells the member to rejoin.
        result: Result<(), GroupError>,
    },
    /// The answer to a LeaveGroup.
    Leave {
        /// The request answered.
        token: RequestToken,
        /// Per-member results, or a group-level error.
        result: Result<Vec<LeaveResult>, GroupError>,
    },
}

impl GroupEvent {
    /// The token of the request this event answers.
    pub fn token(&self) -> RequestToken {
        match self {
            GroupEvent::Join { token, .. }
            | GroupEvent::Sync { token, .. }
            | GroupEvent::Heartbeat { token, .. }
            | GroupEvent::Leave { token, .. } => *token,
        }
    }
}

/// Why a group request failed. Each maps to Kafka's error code ([`GroupError::code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// A new dynamic member must rejoin with the id given (KIP-394).
    #[error("member id required: rejoin with member id {member_id}")]
    MemberIdRequired {
        /// The id the member must use.
        member_id: String,
    },
    /// The member id is not (or no longer) in the group.
    #[error("unknown member id: the member was removed; rejoin with an empty member id")]
    UnknownMemberId,
    /// The request names a generation other than the group's.
    #[error("illegal generation: the group moved to another generation; rejoin")]
    IllegalGeneration,
    /// A rebalance is under way; the member must rejoin.
    #[error("rebalance in progress: rejoin the group")]
    RebalanceInProgress,
    /// Another member now holds this `group.instance.id` (KIP-345).
    #[error("fenced instance id: another member took over this group.instance.id")]
    FencedInstanceId,
    /// The protocol type or the assignors do not match the group's.
    #[error("inconsistent group protocol: no assignor in common with the group")]
    InconsistentGroupProtocol,
    /// The session timeout is outside the coordinator's bounds.
    #[error("invalid session timeout: outside the broker's group session timeout bounds")]
    InvalidSessionTimeout,
    /// The group has as many members as it may have.
    #[error("group max size reached")]
    GroupMaxSizeReached,
    /// The group is being loaded or is gone here; find the coordinator again.
    #[error("coordinator not available: find the coordinator again")]
    CoordinatorNotAvailable,
    /// This node no longer coordinates the group.
    #[error("not coordinator: find the coordinator again")]
    NotCoordinator,
}

impl GroupError {
    /// Kafka's error code (the numbers of Kafka's `Errors` enum).
    pub fn code(&self) -> i16 {
        match self {
            GroupError::CoordinatorNotAvailable => 15,
            GroupError::NotCoordinator => 16,
            GroupError::IllegalGeneration => 22,
            GroupError::InconsistentGroupProtocol => 23,
            GroupError::UnknownMemberId => 25,
            GroupError::InvalidSessionTimeout => 26,
            GroupError::RebalanceInProgress => 27,
            GroupError::MemberIdRequired { .. } => 79,
            GroupError::GroupMaxSizeReached => 81,
            GroupError::FencedInstanceId => 82,
        }
    }
}

/// One member as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// The member id.
    pub member_id: String,
    /// Its `group.instance.id`, for static members.
    pub group_instance_id: Option<String>,
    /// Its `client.id`.
    pub client_id: String,
    /// Its metadata for the chosen protocol (empty while none is chosen).
    pub metadata: Bytes,
    /// Its assignment from the last completed SyncGroup (empty before one).
    pub assignment: Bytes,
}

/// A group as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group's state.
    pub state: GroupState,
    /// The protocol type: the members', or the last members' in a group whose members left
    /// (empty for a group that never had any).
    pub protocol_type: String,
    /// The chosen assignor, empty while none is chosen.
    pub protocol_name: String,
    /// The members, by member id.
    pub members: Vec<MemberDescription>,
}

/// The coordinator's settings for a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// Seed of the generator of member ids.
    pub seed: u64,
    /// Kafka's `group.min.session.timeout.ms`.
    pub session_timeout_min: Duration,
    /// Kafka's `group.max.session.timeout.ms`.
    pub session_timeout_max: Duration,
    /// Kafka's `group.max.size`: members plus members that were given an id and have not
    /// joined yet. At most [`crate::core::limits::GROUP_MEMBERS_MAX`].
    pub group_size_max: usize,
}

impl Default for GroupConfig {
    /// Kafka's defaults (6 s and 30 min), with the size capped at the core's bound.
    fn default() -> Self {
        GroupConfig {
            seed: 0,
            session_timeout_min: Duration::from_secs(6),
            session_timeout_max: Duration::from_secs(1800),
            group_size_max: crate::core::limits::GROUP_MEMBERS_MAX,
        }
    }
}
