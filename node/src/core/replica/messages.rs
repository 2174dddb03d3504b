//! The messages replicas of one partition exchange, as prost messages (decision 0009: the
//! runtime frames them on TCP as they are, the simulator passes them as values), and the
//! Kafka error codes they carry.
//!
//! Two request/response pairs, both sent by a follower to its leader:
//! - [`OffsetForLeaderEpochRequest`]: "where does epoch E end in your log?" (KIP-101,
//!   KIP-279), asked before any fetch in a new leader epoch;
//! - [`ReplicaFetch`]: "give me what follows offset O; I hold everything below O, and below
//!   `flushed_offset` durably".
//!
//! Every message may be lost, duplicated, reordered or delayed. Each answer echoes the
//! request's `correlation_id` and the responder's leader epoch, so a follower can tell a stale
//! answer (one it no longer waits for) from the one it waits for.

use bytes::Bytes;

/// A follower's fetch from its leader.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ReplicaFetch {
    /// The topic.
    #[prost(string, tag = "1")]
    pub topic: String,
    /// The partition's index.
    #[prost(int32, tag = "2")]
    pub partition: i32,
    /// Chosen by the follower; echoed by the answer.
    #[prost(uint64, tag = "3")]
    pub correlation_id: u64,
    /// The fetching follower's node id.
    #[prost(uint32, tag = "4")]
    pub replica_id: u32,
    /// The leader epoch the follower follows; the leader fences other epochs.
    #[prost(int32, tag = "5")]
    pub current_leader_epoch: i32,
    /// The follower's log end offset: the first offset it wants, and the proof that it holds
    /// everything below.
    #[prost(uint64, tag = "6")]
    pub fetch_offset: u64,
    /// The epoch of the follower's last batch (-1 when its log holds none).
    #[prost(int32, tag = "7")]
    pub last_fetched_epoch: i32,
    /// Every offset below this is durable on the follower (at most `fetch_offset`).
    #[prost(uint64, tag = "8")]
    pub flushed_offset: u64,
    /// A soft byte limit (the first batch comes whole regardless).
    #[prost(uint32, tag = "9")]
    pub max_bytes: u32,
    /// How long the leader may hold the fetch when it has nothing new (long polling).
    #[prost(uint32, tag = "10")]
    pub max_wait_ms: u32,
    /// The follower's broker epoch when it sent the fetch (KIP-903; 0 before its first
    /// registration). The node fills it in; the leader passes it on when it proposes the
    /// follower into the ISR, and the controller refuses a proposal whose follower has
    /// registered again since (it restarted, and may hold less than it fetched).
    #[prost(uint64, tag = "11")]
    pub broker_epoch: u64,
}

/// The leader's answer to a [`ReplicaFetch`].
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ReplicaFetchResponse {
    /// The topic.
    #[prost(string, tag = "1")]
    pub topic: String,
    /// The partition's index.
    #[prost(int32, tag = "2")]
    pub partition: i32,
    /// The request's correlation id.
    #[prost(uint64, tag = "3")]
    pub correlation_id: u64,
    /// [`ErrorCode`] as its Kafka number; 0 when the fetch was served.
    #[prost(int32, tag = "4")]
    pub error_code: i32,
    /// The responder's leader epoch (-1 when it knows none).
    #[prost(int32, tag = "5")]
    pub leader_epoch: i32,
    /// The leader's high watermark.
    #[prost(uint64, tag = "6")]
    pub high_watermark: u64,
    /// The leader's log start offset.
    #[prost(uint64, tag = "7")]
    pub log_start_offset: u64,
    /// The leader's log end offset.
    #[prost(uint64, tag = "8")]
    pub log_end_offset: u64,
    /// Whole record batches from `fetch_offset` on, exactly as the leader stores them.
    #[prost(bytes = "bytes", tag = "9")]
    pub records: Bytes,
    /// With OFFSET_OUT_OF_RANGE: the leader's idempotent producers whose batches all lie
    /// below its log start, as a producer-state snapshot covering the log below it (empty
    /// when there are none). A follower that restarts its log there takes them in, so a
    /// retry of a batch retention removed is still known as one (decision 0034).
    #[prost(bytes = "bytes", tag = "10")]
    pub producers: Bytes,
}

/// A follower asks where an epoch ends in the leader's log (KIP-101, KIP-279).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct OffsetForLeaderEpochRequest {
    /// The topic.
    #[prost(string, tag = "1")]
    pub topic: String,
    /// The partition's index.
    #[prost(int32, tag = "2")]
    pub partition: i32,
    /// Chosen by the follower; echoed by the answer.
    #[prost(uint64, tag = "3")]
    pub correlation_id: u64,
    /// The asking follower's node id.
    #[prost(uint32, tag = "4")]
    pub replica_id: u32,
    /// The leader epoch the follower follows; the leader fences other epochs.
    #[prost(int32, tag = "5")]
    pub current_leader_epoch: i32,
    /// The epoch asked about: the follower's latest.
    #[prost(int32, tag = "6")]
    pub leader_epoch: i32,
}

/// The leader's answer to an [`OffsetForLeaderEpochRequest`].
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct OffsetForLeaderEpochResponse {
    /// The topic.
    #[prost(string, tag = "1")]
    pub topic: String,
    /// The partition's index.
    #[prost(int32, tag = "2")]
    pub partition: i32,
    /// The request's correlation id.
    #[prost(uint64, tag = "3")]
    pub correlation_id: u64,
    /// [`ErrorCode`] as its Kafka number; 0 when answered.
    #[prost(int32, tag = "4")]
    pub error_code: i32,
    /// The responder's leader epoch.
    #[prost(int32, tag = "5")]
    pub current_leader_epoch: i32,
    /// The largest epoch the leader knows at or below the one asked about (-1 if none).
    #[prost(int32, tag = "6")]
    pub leader_epoch: i32,
    /// Where that epoch ends in the leader's log: the start of the next epoch, or the
    /// leader's log end offset for its latest (-1 if none).
    #[prost(int64, tag = "7")]
    pub end_offset: i64,
}

/// One message between replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaMessage {
    /// Follower -> leader.
    Fetch(ReplicaFetch),
    /// Leader -> follower.
    FetchResponse(ReplicaFetchResponse),
    /// Follower -> leader.
    OffsetForLeaderEpoch(OffsetForLeaderEpochRequest),
    /// Leader -> follower.
    OffsetForLeaderEpochResponse(OffsetForLeaderEpochResponse),
}

impl ReplicaMessage {
    /// The topic and partition the message is about, for the node to route it.
    pub fn partition(&self) -> (&str, i32) {
        match self {
            ReplicaMessage::Fetch(m) => (&m.topic, m.partition),
            ReplicaMessage::FetchResponse(m) => (&m.topic, m.partition),
            ReplicaMessage::OffsetForLeaderEpoch(m) => (&m.topic, m.partition),
            ReplicaMessage::OffsetForLeaderEpochResponse(m) => (&m.topic, m.partition),
        }
    }

    /// The answer that refuses this message with `error` when it is a request, from a node
    /// that cannot serve it at all (it holds no replica of the partition); `None` for an
    /// answer, which nobody waits on.
    pub fn refusal(&self, error: ErrorCode) -> Option<ReplicaMessage> {
        match self {
            ReplicaMessage::Fetch(m) => Some(ReplicaMessage::FetchResponse(ReplicaFetchResponse {
                topic: m.topic.clone(),
                partition: m.partition,
                correlation_id: m.correlation_id,
                error_code: error.wire(),
                leader_epoch: -1,
                ..ReplicaFetchResponse::default()
            })),
            ReplicaMessage::OffsetForLeaderEpoch(m) => {
                Some(ReplicaMessage::OffsetForLeaderEpochResponse(OffsetForLeaderEpochResponse {
                    topic: m.topic.clone(),
                    partition: m.partition,
                    correlation_id: m.correlation_id,
                    error_code: error.wire(),
                    current_leader_epoch: -1,
                    leader_epoch: -1,
                    end_offset: -1,
                }))
            }
            ReplicaMessage::FetchResponse(_) | ReplicaMessage::OffsetForLeaderEpochResponse(_) => {
                None
            }
        }
    }
}

/// The Kafka error codes replication uses, with Kafka's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// No error.
    None,
    /// The offset is outside the responder's log (for a follower: it is ahead of the leader,
    /// behind its log start, or diverged; see the follower's handling).
    OffsetOutOfRange,
    /// A batch failed validation.
    CorruptMessage,
    /// The responder is not the leader (or not a replica) of the partition.
    NotLeaderOrFollower,
    /// Fewer in-sync replicas than `min.insync.replicas`; nothing was appended.
    NotEnoughReplicas,
    /// The batch was appended but the ISR shrank below `min.insync.replicas`: its fate is
    /// unknown to the producer.
    NotEnoughReplicasAfterAppend,
    /// The responder's log failed or is recovering.
    KafkaStorageError,
    /// The requester's leader epoch is older than the responder's.
    FencedLeaderEpoch,
    /// The requester's leader epoch is newer than the responder's (or it asked about an epoch
    /// newer than the leader's own, KAFKA-6361).
    UnknownLeaderEpoch,
}

impl ErrorCode {
    /// Kafka's number for the code.
    pub fn code(self) -> i16 {
        match self {
            ErrorCode::None => 0,
            ErrorCode::OffsetOutOfRange => 1,
            ErrorCode::CorruptMessage => 2,
            ErrorCode::NotLeaderOrFollower => 6,
            ErrorCode::NotEnoughReplicas => 19,
            ErrorCode::NotEnoughReplicasAfterAppend => 20,
            ErrorCode::KafkaStorageError => 56,
            ErrorCode::FencedLeaderEpoch => 74,
            ErrorCode::UnknownLeaderEpoch => 75,
        }
    }

    /// The code with Kafka's number `code`; an unknown number reads as a storage error, the
    /// retriable answer that changes nothing.
    pub fn from_code(code: i32) -> ErrorCode {
        match code {
            0 => ErrorCode::None,
            1 => ErrorCode::OffsetOutOfRange,
            2 => ErrorCode::CorruptMessage,
            6 => ErrorCode::NotLeaderOrFollower,
            19 => ErrorCode::NotEnoughReplicas,
            20 => ErrorCode::NotEnoughReplicasAfterAppend,
            74 => ErrorCode::FencedLeaderEpoch,
            75 => ErrorCode::UnknownLeaderEpoch,
            _ => ErrorCode::KafkaStorageError,
        }
    }

    /// The code as the `error_code` field of a message carries it.
    pub fn wire(self) -> i32 {
        i32::from(self.code())
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn codes_round_trip_with_kafka_numbers() {
        let table = [
            (ErrorCode::None, 0),
            (ErrorCode::OffsetOutOfRange, 1),
            (ErrorCode::CorruptMessage, 2),
            (ErrorCode::NotLeaderOrFollower, 6),
            (ErrorCode::NotEnoughReplicas, 19),
            (ErrorCode::NotEnoughReplicasAfterAppend, 20),
            (ErrorCode::KafkaStorageError, 56),
            (ErrorCode::FencedLeaderEpoch, 74),
            (ErrorCode::UnknownLeaderEpoch, 75),
        ];
        for (code, number) in table {
            assert_eq!(code.code(), number);
            assert_eq!(ErrorCode::from_code(i32::from(number)), code);
        }
        assert_eq!(ErrorCode::from_code(9999), ErrorCode::KafkaStorageError);
    }

    #[test]
    fn fetch_response_round_trips_through_prost() {
        let response = ReplicaFetchResponse {
            topic: "t".into(),
            partition: 3,
            correlation_id: 7,
            error_code: 0,
            leader_epoch: 2,
            high_watermark: 10,
            log_start_offset: 1,
            log_end_offset: 12,
            records: Bytes::from_static(b"batches"),
            producers: Bytes::from_static(b"snapshot"),
        };
        let decoded = ReplicaFetchResponse::decode(response.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded, response);
    }
}
