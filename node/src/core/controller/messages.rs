//! What brokers and the node ask the active controller, and what it answers. Both are prost
//! messages, since a request usually travels from a broker to the controller's node.
//!
//! Errors are Kafka's ([`ControllerError::error_code`] is Kafka's numeric code), so that a
//! node can hand them to a Kafka client as they are (CreateTopics, DeleteTopics, ...) and a
//! broker can tell a retriable answer (NOT_CONTROLLER) from a final one.

use std::collections::BTreeMap;

/// A broker registers at start (KRaft's BrokerRegistration).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct RegisterBrokerRequest {
    /// The broker's node id.
    #[prost(int32, tag = "1")]
    pub node_id: i32,
    /// A number drawn at each start, telling two lives of one node id apart.
    #[prost(uint64, tag = "2")]
    pub incarnation: u64,
    /// The host of its Kafka listener.
    #[prost(string, tag = "3")]
    pub host: String,
    /// The port of its Kafka listener.
    #[prost(uint32, tag = "4")]
    pub port: u32,
    /// Its rack.
    #[prost(string, optional, tag = "5")]
    pub rack: Option<String>,
    /// How far it has applied the metadata log.
    #[prost(uint64, tag = "6")]
    pub metadata_offset: u64,
    /// The id of its data directory, drawn when it was formatted (0 if unknown).
    #[prost(uint64, tag = "7")]
    pub directory_id: u64,
}

/// A broker's heartbeat: it renews its lease and reports how far it has applied the log.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct BrokerHeartbeatRequest {
    /// The broker.
    #[prost(int32, tag = "1")]
    pub node_id: i32,
    /// Its broker epoch, from its registration's answer.
    #[prost(uint64, tag = "2")]
    pub broker_epoch: u64,
    /// The index of the last metadata batch it applied.
    #[prost(uint64, tag = "3")]
    pub metadata_offset: u64,
    /// Whether it is shutting down and wants its leaderships moved away.
    #[prost(bool, tag = "4")]
    pub want_shutdown: bool,
}

/// A partition leader asks to change the ISR (KIP-497; checked by partition epoch).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct AlterPartitionRequest {
    /// The leader asking.
    #[prost(int32, tag = "1")]
    pub broker_id: i32,
    /// Its broker epoch.
    #[prost(uint64, tag = "2")]
    pub broker_epoch: u64,
    /// The topic's id.
    #[prost(bytes = "vec", tag = "3")]
    pub topic_id: Vec<u8>,
    /// The partition.
    #[prost(int32, tag = "4")]
    pub partition: i32,
    /// The leader epoch the leader leads in.
    #[prost(int32, tag = "5")]
    pub leader_epoch: i32,
    /// The partition epoch of the state the change is based on.
    #[prost(int32, tag = "6")]
    pub partition_epoch: i32,
    /// The ISR it asks for.
    #[prost(int32, repeated, tag = "7")]
    pub new_isr: Vec<i32>,
    /// Instead of an ISR change: the leader's log failed in this epoch, and it asks for
    /// another leader from the ISR, or itself again in a new epoch.
    #[prost(bool, tag = "8")]
    pub resign: bool,
    /// The broker epoch of each member of `new_isr`, in its order, as the leader last heard
    /// it from that member's fetches (KIP-903; 0 where unknown). A member joining the ISR
    /// must be at its current registration's epoch.
    #[prost(uint64, repeated, tag = "9")]
    pub new_isr_broker_epochs: Vec<u64>,
}

/// Create one topic.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct CreateTopicRequest {
    /// Its name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its partition count; -1 for the controller's default.
    #[prost(int32, tag = "2")]
    pub partitions: i32,
    /// Its replication factor; -1 for the controller's default.
    #[prost(int32, tag = "3")]
    pub replication_factor: i32,
    /// Settings by Kafka name; the rest take the controller's defaults.
    #[prost(btree_map = "string, string", tag = "4")]
    pub config: BTreeMap<String, String>,
    /// Only check that it could be created.
    #[prost(bool, tag = "5")]
    pub validate_only: bool,
}

/// Delete one topic.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct DeleteTopicRequest {
    /// Its name.
    #[prost(string, tag = "1")]
    pub name: String,
}

/// Grow a topic to `count` partitions.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct CreatePartitionsRequest {
    /// The topic's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The partition count it should have.
    #[prost(int32, tag = "2")]
    pub count: i32,
    /// Only check that it could grow.
    #[prost(bool, tag = "3")]
    pub validate_only: bool,
}

/// One change of a setting: `value` set, or absent to return the setting to its default.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ConfigChangeMessage {
    /// The setting's Kafka name.
    #[prost(string, tag = "1")]
    pub key: String,
    /// The new value; `None` deletes the setting (back to the default).
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// Change a topic's settings (IncrementalAlterConfigs).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct AlterConfigsRequest {
    /// The topic's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The changes, applied in order, all or none.
    #[prost(message, repeated, tag = "2")]
    pub changes: Vec<ConfigChangeMessage>,
    /// Only check that they could apply.
    #[prost(bool, tag = "3")]
    pub validate_only: bool,
}

/// A broker asks for a block of producer ids.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct AllocateProducerIdsRequest {
    /// The broker.
    #[prost(int32, tag = "1")]
    pub broker_id: i32,
    /// Its broker epoch.
    #[prost(uint64, tag = "2")]
    pub broker_epoch: u64,
}

/// A request to the active controller.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ControllerRequest {
    /// What is asked.
    #[prost(oneof = "RequestKind", tags = "1, 2, 3, 4, 5, 6, 7, 8")]
    pub kind: Option<RequestKind>,
}

/// The kinds of [`ControllerRequest`].
#[derive(Clone, PartialEq, Eq, prost::Oneof)]
pub enum RequestKind {
    /// See [`RegisterBrokerRequest`].
    #[prost(message, tag = "1")]
    RegisterBroker(RegisterBrokerRequest),
    /// See [`BrokerHeartbeatRequest`].
    #[prost(message, tag = "2")]
    BrokerHeartbeat(BrokerHeartbeatRequest),
    /// See [`AlterPartitionRequest`].
    #[prost(message, tag = "3")]
    AlterPartition(AlterPartitionRequest),
    /// See [`CreateTopicRequest`].
    #[prost(message, tag = "4")]
    CreateTopic(CreateTopicRequest),
    /// See [`DeleteTopicRequest`].
    #[prost(message, tag = "5")]
    DeleteTopic(DeleteTopicRequest),
    /// See [`CreatePartitionsRequest`].
    #[prost(message, tag = "6")]
    CreatePartitions(CreatePartitionsRequest),
    /// See [`AlterConfigsRequest`].
    #[prost(message, tag = "7")]
    AlterConfigs(AlterConfigsRequest),
    /// See [`AllocateProducerIdsRequest`].
    #[prost(message, tag = "8")]
    AllocateProducerIds(AllocateProducerIdsRequest),
}

impl From<RequestKind> for ControllerRequest {
    fn from(kind: RequestKind) -> ControllerRequest {
        ControllerRequest { kind: Some(kind) }
    }
}

/// The answer to a registration.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct RegisterBrokerReply {
    /// The broker's epoch: the index of its registration.
    #[prost(uint64, tag = "1")]
    pub broker_epoch: u64,
}

/// The answer to a heartbeat.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct HeartbeatReply {
    /// Whether the broker has applied the log up to its registration.
    #[prost(bool, tag = "1")]
    pub is_caught_up: bool,
    /// Whether it is fenced (committed).
    #[prost(bool, tag = "2")]
    pub is_fenced: bool,
    /// Whether it may now shut down: it asked to, and it is fenced and leads nothing.
    #[prost(bool, tag = "3")]
    pub should_shut_down: bool,
    /// The last metadata offset the controller had committed when it answered: a broker
    /// takes the lease this answer grants only once its image has applied that far, so that
    /// it has seen every leadership the controller moved away from it before (decision 0020).
    #[prost(uint64, tag = "4")]
    pub metadata_offset: u64,
}

/// The state of one partition after a change.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PartitionReply {
    /// The topic's id.
    #[prost(bytes = "vec", tag = "1")]
    pub topic_id: Vec<u8>,
    /// The partition.
    #[prost(int32, tag = "2")]
    pub partition: i32,
    /// The leader, -1 for none.
    #[prost(int32, tag = "3")]
    pub leader: i32,
    /// The leader epoch.
    #[prost(int32, tag = "4")]
    pub leader_epoch: i32,
    /// The partition epoch.
    #[prost(int32, tag = "5")]
    pub partition_epoch: i32,
    /// The ISR.
    #[prost(int32, repeated, tag = "6")]
    pub isr: Vec<i32>,
    /// The eligible leader replicas.
    #[prost(int32, repeated, tag = "7")]
    pub elr: Vec<i32>,
}

/// The answer to a topic creation (or its validation).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct CreateTopicReply {
    /// The new topic's id (all zero for a validation).
    #[prost(bytes = "vec", tag = "1")]
    pub topic_id: Vec<u8>,
    /// Its partition count.
    #[prost(int32, tag = "2")]
    pub partitions: i32,
    /// Its replication factor.
    #[prost(int32, tag = "3")]
    pub replication_factor: i32,
    /// Every setting by Kafka name.
    #[prost(btree_map = "string, string", tag = "4")]
    pub config: BTreeMap<String, String>,
}

/// The answer to a topic deletion.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct DeleteTopicReply {
    /// The deleted topic's id.
    #[prost(bytes = "vec", tag = "1")]
    pub topic_id: Vec<u8>,
}

/// The answer to a producer-id allocation: ids `first_id .. first_id + count`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ProducerIdsReply {
    /// The block's first id.
    #[prost(int64, tag = "1")]
    pub first_id: i64,
    /// How many ids.
    #[prost(int64, tag = "2")]
    pub count: i64,
}

/// The controller's answer: `error_code` 0 and (except for a partition growth or a config
/// change, which answer nothing more) a reply, or an error and no reply.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ControllerResponse {
    /// Kafka's error code, 0 for none.
    #[prost(int32, tag = "1")]
    pub error_code: i32,
    /// What went wrong, for people.
    #[prost(string, tag = "2")]
    pub error_message: String,
    /// With NOT_CONTROLLER: the node believed to be the active controller.
    #[prost(int32, optional, tag = "3")]
    pub leader_hint: Option<i32>,
    /// The answer.
    #[prost(oneof = "ReplyKind", tags = "4, 5, 6, 7, 8, 9")]
    pub reply: Option<ReplyKind>,
}

/// The kinds of answer in a [`ControllerResponse`].
#[derive(Clone, PartialEq, Eq, prost::Oneof)]
pub enum ReplyKind {
    /// To a registration.
    #[prost(message, tag = "4")]
    RegisterBroker(RegisterBrokerReply),
    /// To a heartbeat.
    #[prost(message, tag = "5")]
    Heartbeat(HeartbeatReply),
    /// To an AlterPartition.
    #[prost(message, tag = "6")]
    Partition(PartitionReply),
    /// To a topic creation.
    #[prost(message, tag = "7")]
    CreateTopic(CreateTopicReply),
    /// To a deletion.
    #[prost(message, tag = "8")]
    DeleteTopic(DeleteTopicReply),
    /// To a producer-id allocation.
    #[prost(message, tag = "9")]
    ProducerIds(ProducerIdsReply),
}

impl ControllerResponse {
    /// A successful answer.
    pub fn ok(reply: Option<ReplyKind>) -> ControllerResponse {
        ControllerResponse { reply, ..ControllerResponse::default() }
    }

    /// A failed answer.
    pub fn error(error: &ControllerError) -> ControllerResponse {
        let leader_hint = match error {
            ControllerError::NotController { leader_hint } => *leader_hint,
            _ => None,
        };
        ControllerResponse {
            error_code: i32::from(error.error_code()),
            error_message: error.to_string(),
            leader_hint,
            reply: None,
        }
    }
}

/// Why the controller refused a request. Each variant is one Kafka error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControllerError {
    /// This node is not the active controller (or stopped being it before the change
    /// committed, which then may or may not happen): ask `leader_hint`.
    #[error("not the active controller; try node {leader_hint:?}")]
    NotController {
        /// The node believed to be the active controller.
        leader_hint: Option<i32>,
    },
    /// The broker epoch is not the broker's current one.
    #[error("broker {node_id}: epoch {given} is not its current epoch")]
    StaleBrokerEpoch {
        /// The broker.
        node_id: i32,
        /// The epoch it sent.
        given: u64,
    },
    /// The broker is not registered.
    #[error("broker {0} is not registered")]
    BrokerNotRegistered(i32),
    /// A broker of that id with another incarnation still holds a live lease.
    #[error("broker {0} is registered by a live process; retry once its lease lapsed")]
    DuplicateBrokerRegistration(i32),
    /// The leader epoch is not the partition's.
    #[error("leader epoch {given} is not the current {current}")]
    FencedLeaderEpoch {
        /// The partition's leader epoch.
        current: i32,
        /// The one sent.
        given: i32,
    },
    /// The partition epoch is not the partition's: the change was based on a stale state.
    #[error("partition epoch {given} is not the current {current}")]
    InvalidUpdateVersion {
        /// The partition's epoch.
        current: i32,
        /// The one sent.
        given: i32,
    },
    /// The broker asking does not lead the partition.
    #[error("broker {broker} is not the leader (the leader is {leader})")]
    NotLeader {
        /// The broker asking.
        broker: i32,
        /// The partition's leader.
        leader: i32,
    },
    /// A replica added to the ISR is fenced.
    #[error("replica {0} cannot join the ISR: it is fenced")]
    IneligibleReplica(i32),
    /// The request is malformed.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A topic of that name exists (or is being created).
    #[error("topic {0} already exists")]
    TopicAlreadyExists(String),
    /// No such topic or partition.
    #[error("unknown topic or partition {0}")]
    UnknownTopicOrPartition(String),
    /// No topic with that id.
    #[error("unknown topic id")]
    UnknownTopicId,
    /// The topic name is not valid.
    #[error("{0}")]
    InvalidTopic(String),
    /// More replicas asked for than there are live brokers, or fewer than one.
    #[error("replication factor {asked} is not possible with {live} live brokers")]
    InvalidReplicationFactor {
        /// The factor asked for.
        asked: i32,
        /// The live (unfenced) brokers.
        live: usize,
    },
    /// The partition count is not valid.
    #[error("{0}")]
    InvalidPartitions(String),
    /// A setting is not valid.
    #[error("{0}")]
    InvalidConfig(String),
    /// Too many changes wait for the metadata log; retry later.
    #[error("the controller has too many changes in flight; retry")]
    Busy,
}

impl ControllerError {
    /// Kafka's numeric error code.
    pub fn error_code(&self) -> i16 {
        match self {
            ControllerError::NotController { .. } => 41,
            ControllerError::StaleBrokerEpoch { .. } => 77,
            ControllerError::BrokerNotRegistered(_) => 102,
            ControllerError::DuplicateBrokerRegistration(_) => 101,
            ControllerError::FencedLeaderEpoch { .. } => 74,
            ControllerError::InvalidUpdateVersion { .. } => 95,
            ControllerError::NotLeader { .. } => 6,
            ControllerError::IneligibleReplica(_) => 107,
            ControllerError::InvalidRequest(_) => 42,
            ControllerError::TopicAlreadyExists(_) => 36,
            ControllerError::UnknownTopicOrPartition(_) => 3,
            ControllerError::UnknownTopicId => 100,
            ControllerError::InvalidTopic(_) => 17,
            ControllerError::InvalidReplicationFactor { .. } => 38,
            ControllerError::InvalidPartitions(_) => 37,
            ControllerError::InvalidConfig(_) => 40,
            // REQUEST_TIMED_OUT: retriable for every client.
            ControllerError::Busy => 7,
        }
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::error::ResponseError as K;

    use super::*;

    #[test]
    fn error_codes_are_kafkas() {
        let table = [
            (ControllerError::NotController { leader_hint: None }, K::NotController),
            (ControllerError::StaleBrokerEpoch { node_id: 1, given: 2 }, K::StaleBrokerEpoch),
            (ControllerError::BrokerNotRegistered(1), K::BrokerIdNotRegistered),
            (ControllerError::DuplicateBrokerRegistration(1), K::DuplicateBrokerRegistration),
            (ControllerError::FencedLeaderEpoch { current: 1, given: 0 }, K::FencedLeaderEpoch),
            (
                ControllerError::InvalidUpdateVersion { current: 1, given: 0 },
                K::InvalidUpdateVersion,
            ),
            (ControllerError::NotLeader { broker: 1, leader: 2 }, K::NotLeaderOrFollower),
            (ControllerError::IneligibleReplica(1), K::IneligibleReplica),
            (ControllerError::InvalidRequest(String::new()), K::InvalidRequest),
            (ControllerError::TopicAlreadyExists(String::new()), K::TopicAlreadyExists),
            (ControllerError::UnknownTopicOrPartition(String::new()), K::UnknownTopicOrPartition),
            (ControllerError::UnknownTopicId, K::UnknownTopicId),
            (ControllerError::InvalidTopic(String::new()), K::InvalidTopicException),
            (
                ControllerError::InvalidReplicationFactor { asked: 3, live: 1 },
                K::InvalidReplicationFactor,
            ),
            (ControllerError::InvalidPartitions(String::new()), K::InvalidPartitions),
            (ControllerError::InvalidConfig(String::new()), K::InvalidConfig),
            (ControllerError::Busy, K::RequestTimedOut),
        ];
        for (error, kafka) in table {
            assert_eq!(error.error_code(), kafka.code(), "{error:?}");
        }
    }

    #[test]
    fn not_controller_carries_the_hint() {
        let response =
            ControllerResponse::error(&ControllerError::NotController { leader_hint: Some(3) });
        assert_eq!((response.error_code, response.leader_hint), (41, Some(3)));
        let bytes = prost::Message::encode_to_vec(&response);
        let back: ControllerResponse = prost::Message::decode(bytes.as_slice()).unwrap();
        assert_eq!(back, response);
    }
}
