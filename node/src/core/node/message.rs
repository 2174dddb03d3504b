//! What nodes say to each other (decision 0009): one prost message with a oneof, so that the
//! runtime frames it on TCP as it is (`runtime::peer`) and the simulator passes it as a value.
//!
//! Three conversations share it:
//! - Raft's, between members of the metadata quorum ([`RaftMessage`]);
//! - a broker and the active controller: a request with a correlation id chosen by the
//!   sender, answered with the same id ([`ToController`], [`FromController`]);
//! - the replicas of a partition: the follower's fetches and OffsetForLeaderEpoch rounds, and
//!   the leader's answers (`core::replica::messages`).
//!
//! Any of them may be lost, duplicated, reordered or delayed; every receiver tells a stale
//! answer from the one it waits for by term, epoch or correlation id.

use crate::core::controller::{ControllerRequest, ControllerResponse};
use crate::core::raft::RaftMessage;
use crate::core::replica::{
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, ReplicaFetch, ReplicaFetchResponse,
    ReplicaMessage,
};

/// One message between two nodes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Message {
    /// What the message is.
    #[prost(oneof = "MessageKind", tags = "1, 2, 3, 4, 5, 6, 7")]
    pub kind: Option<MessageKind>,
}

/// The kinds of [`Message`].
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum MessageKind {
    /// Between members of the metadata quorum.
    #[prost(message, tag = "1")]
    Raft(RaftMessage),
    /// A broker's request to the node it believes is the active controller.
    #[prost(message, tag = "2")]
    ToController(ToController),
    /// The controller's answer.
    #[prost(message, tag = "3")]
    FromController(FromController),
    /// A follower's fetch.
    #[prost(message, tag = "4")]
    Fetch(ReplicaFetch),
    /// The leader's answer to a fetch.
    #[prost(message, tag = "5")]
    FetchResponse(ReplicaFetchResponse),
    /// A follower asks where an epoch ends in the leader's log.
    #[prost(message, tag = "6")]
    OffsetForLeaderEpoch(OffsetForLeaderEpochRequest),
    /// The leader's answer.
    #[prost(message, tag = "7")]
    OffsetForLeaderEpochResponse(OffsetForLeaderEpochResponse),
}

/// A request to the active controller.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ToController {
    /// Chosen by the sender, echoed by the answer.
    #[prost(uint64, tag = "1")]
    pub correlation_id: u64,
    /// The request.
    #[prost(message, optional, tag = "2")]
    pub request: Option<ControllerRequest>,
}

/// The active controller's answer to a [`ToController`].
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct FromController {
    /// The request's correlation id.
    #[prost(uint64, tag = "1")]
    pub correlation_id: u64,
    /// The answer.
    #[prost(message, optional, tag = "2")]
    pub response: Option<ControllerResponse>,
}

impl Message {
    /// A message of kind `kind`.
    pub fn new(kind: MessageKind) -> Message {
        Message { kind: Some(kind) }
    }
}

impl From<RaftMessage> for Message {
    fn from(message: RaftMessage) -> Message {
        Message::new(MessageKind::Raft(message))
    }
}

impl From<ReplicaMessage> for Message {
    fn from(message: ReplicaMessage) -> Message {
        Message::new(match message {
            ReplicaMessage::Fetch(m) => MessageKind::Fetch(m),
            ReplicaMessage::FetchResponse(m) => MessageKind::FetchResponse(m),
            ReplicaMessage::OffsetForLeaderEpoch(m) => MessageKind::OffsetForLeaderEpoch(m),
            ReplicaMessage::OffsetForLeaderEpochResponse(m) => {
                MessageKind::OffsetForLeaderEpochResponse(m)
            }
        })
    }
}

impl MessageKind {
    /// The replica message this is, if it is one (the node routes it by partition).
    pub fn into_replica(self) -> Option<ReplicaMessage> {
        match self {
            MessageKind::Fetch(m) => Some(ReplicaMessage::Fetch(m)),
            MessageKind::FetchResponse(m) => Some(ReplicaMessage::FetchResponse(m)),
            MessageKind::OffsetForLeaderEpoch(m) => Some(ReplicaMessage::OffsetForLeaderEpoch(m)),
            MessageKind::OffsetForLeaderEpochResponse(m) => {
                Some(ReplicaMessage::OffsetForLeaderEpochResponse(m))
            }
            MessageKind::Raft(_)
            | MessageKind::ToController(_)
            | MessageKind::FromController(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::core::controller::RequestKind;
    use crate::core::controller::messages::BrokerHeartbeatRequest;

    #[test]
    fn a_forwarded_request_survives_the_wire() {
        let heartbeat =
            BrokerHeartbeatRequest { node_id: 2, broker_epoch: 7, ..Default::default() };
        let request = ControllerRequest::from(RequestKind::BrokerHeartbeat(heartbeat));
        let message = Message::new(MessageKind::ToController(ToController {
            correlation_id: 42,
            request: Some(request),
        }));
        let bytes = message.encode_to_vec();
        assert_eq!(Message::decode(bytes.as_slice()).unwrap(), message);
    }

    #[test]
    fn replica_messages_round_trip_through_the_envelope() {
        let fetch = ReplicaFetch { topic: "t".into(), partition: 3, ..Default::default() };
        let message = Message::from(ReplicaMessage::Fetch(fetch.clone()));
        let kind = message.kind.expect("a kind");
        assert_eq!(kind.into_replica(), Some(ReplicaMessage::Fetch(fetch)));
    }
}
