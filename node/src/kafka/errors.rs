//! The one place the core's errors become Kafka error codes.
//!
//! The choice per error follows what clients do with the code: a retriable code where the
//! condition passes by itself (a starting node, a recovering log), so the client refreshes
//! its metadata and retries; a fatal one where retrying the same bytes cannot help.

use kafka_protocol::ResponseError;

use crate::core::log::LogError;
use crate::core::log::batch::BatchError;
use crate::core::node::{ReplicaError, RequestError};
use crate::core::topic::TopicError;

/// No error.
pub const NONE: i16 = 0;

/// The Kafka error code for a failed core request.
pub fn request_error_code(error: &RequestError) -> i16 {
    match error {
        RequestError::UnknownPartition(_) => ResponseError::UnknownTopicOrPartition.code(),
        RequestError::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition.code(),
        RequestError::InvalidTopic(error) => topic_error_code(error),
        // Every client handles NOT_LEADER_OR_FOLLOWER on produce, fetch and ListOffsets by
        // refreshing its metadata and retrying against the leader it names.
        RequestError::NotLeader { .. } => ResponseError::NotLeaderOrFollower.code(),
        // Retriable: the client waits and asks again, as for a coordinator that is loading.
        RequestError::NodeNotReady => ResponseError::LeaderNotAvailable.code(),
        RequestError::ControllerTimeout => ResponseError::RequestTimedOut.code(),
        RequestError::Controller { code, .. } => *code,
        // A log's passing states keep the log's own codes (retriable NOT_LEADER_OR_FOLLOWER
        // for a recovering log) rather than the replica's catch-all storage error.
        RequestError::Replica(ReplicaError::Log(error)) => log_error_code(error),
        RequestError::Replica(error) => error.code(),
        RequestError::Log(error) => log_error_code(error),
        RequestError::Coordinator(error) => error.code(),
        // INVALID_REQUEST rather than UNSUPPORTED_VERSION: the API and its version are
        // supported (ApiVersions says so), only the transactional use of it is not; both
        // librdkafka and the Java client treat it as fatal and show the message.
        RequestError::TransactionsUnsupported => ResponseError::InvalidRequest.code(),
    }
}

/// The Kafka error code for a refused topic name, partition count or setting.
pub fn topic_error_code(error: &TopicError) -> i16 {
    match error {
        TopicError::BadName { .. } | TopicError::Internal(_) => {
            ResponseError::InvalidTopicException.code()
        }
        TopicError::BadPartitionCount(_) => ResponseError::InvalidPartitions.code(),
        TopicError::UnknownSetting(_)
        | TopicError::ReadOnly(_)
        | TopicError::BadValue { .. }
        | TopicError::Range(_) => ResponseError::InvalidConfig.code(),
    }
}

/// The Kafka error code for a log error.
pub fn log_error_code(error: &LogError) -> i16 {
    match error {
        LogError::InvalidBatch(error) => batch_error_code(error),
        LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange.code(),
        // Passing states of the log; the client retries after a metadata refresh.
        LogError::Recovering | LogError::Truncating => ResponseError::NotLeaderOrFollower.code(),
        // KAFKA_STORAGE_ERROR is retriable: clients refresh metadata and find the replica
        // that can serve (Kafka answers it for a replica on a failed log directory).
        LogError::Storage { .. } | LogError::Corrupt { .. } => {
            ResponseError::KafkaStorageError.code()
        }
        // The append came from an epoch the log has moved past: this node is no longer
        // the leader the client thinks it is.
        LogError::StaleEpoch { .. } => ResponseError::NotLeaderOrFollower.code(),
    }
}

/// The Kafka error code for a refused record batch: CORRUPT_MESSAGE for every kind, since
/// the client sent bytes that are not a valid v2 batch (design §3).
pub fn batch_error_code(_error: &BatchError) -> i16 {
    ResponseError::CorruptMessage.code()
}

/// UNSUPPORTED_VERSION (35).
pub fn unsupported_version_code() -> i16 {
    ResponseError::UnsupportedVersion.code()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::io::{DiskError, FileName};
    use crate::core::node::PartitionId;
    use crate::core::producer::ProducerError;

    #[test]
    fn codes_match_kafkas_numbers() {
        let partition = PartitionId::new("t", 0);
        let file = FileName::new("partitions/t-0/00000000000000000000.log".to_owned());
        let out_of_order =
            ProducerError::OutOfOrderSequence { producer_id: 1, epoch: 0, expected: 3, found: 5 };
        let fenced_producer =
            ProducerError::InvalidProducerEpoch { producer_id: 1, epoch: 0, current: 1 };
        let cases: Vec<(RequestError, i16)> = vec![
            (RequestError::UnknownPartition(partition.clone()), 3),
            (RequestError::NotLeader { partition, leader: None }, 6),
            (RequestError::NodeNotReady, 5),
            (RequestError::ControllerTimeout, 7),
            (RequestError::Controller { code: 36, message: "exists".into() }, 36),
            (ReplicaError::NotEnoughReplicas { isr: 1, min: 2 }.into(), 19),
            (ReplicaError::NotEnoughReplicasAfterAppend { isr: 1, min: 2 }.into(), 20),
            (ReplicaError::FencedLeaderEpoch { request: 1, current: 2 }.into(), 74),
            (ReplicaError::Log(LogError::Recovering).into(), 6),
            (ReplicaError::Producer(out_of_order).into(), 45),
            (ReplicaError::Producer(fenced_producer).into(), 47),
            (LogError::InvalidBatch(BatchError::BadMagic { magic: 1 }).into(), 2),
            (LogError::InvalidBatch(BatchError::TrailingBytes(3)).into(), 2),
            (
                LogError::OffsetOutOfRange { offset: 9, log_start_offset: 0, log_end_offset: 5 }
                    .into(),
                1,
            ),
            (LogError::Recovering.into(), 6),
            (LogError::Truncating.into(), 6),
            (
                LogError::Storage { file: file.clone(), error: DiskError::Io("EIO".into()) }.into(),
                56,
            ),
            (LogError::Corrupt { file, position: 0 }.into(), 56),
            (LogError::StaleEpoch { epoch: 1, latest: 2 }.into(), 6),
        ];
        for (error, code) in cases {
            assert_eq!(request_error_code(&error), code, "{error}");
        }
        assert_eq!(unsupported_version_code(), 35);
    }
}
