//! The client's one error type, [`Error`], and Kafka's error codes as the client reads them.
//!
//! Errors that a retry may cure (a leader moved, a connection dropped) are told apart from
//! those it cannot by [`Error::is_retriable`]; the producer and consumer retry the former
//! and hand the latter to the caller.

use std::net::SocketAddr;
use std::time::Duration;

/// What went wrong in a client call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// No bootstrap server answered. The message names them.
    #[error(
        "cannot reach {servers}: is a node running? start one with `cairn dev`, or give the \
         right address with --bootstrap ({reason})"
    )]
    Bootstrap {
        /// The bootstrap servers tried, comma-separated.
        servers: String,
        /// The last connection error.
        reason: String,
    },
    /// Connecting to a broker failed.
    #[error("cannot connect to broker {addr}: {reason}")]
    Connect {
        /// The broker's address.
        addr: String,
        /// What the operating system said.
        reason: String,
    },
    /// The connection to a broker closed or failed while requests were in flight.
    #[error("the connection to {addr} closed: {reason}")]
    ConnectionClosed {
        /// The broker's address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// A request got no answer within its timeout.
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout {
        /// The broker's address.
        addr: SocketAddr,
        /// How long the client waited.
        timeout: Duration,
    },
    /// The broker supports no version of an API that the client also supports.
    #[error("the broker at {addr} supports no version of API {api_key} that this client speaks")]
    UnsupportedApi {
        /// The broker's address.
        addr: SocketAddr,
        /// The Kafka API key.
        api_key: i16,
    },
    /// A request or answer could not be encoded or decoded, or broke the protocol (a wrong
    /// correlation id, an oversized frame).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The broker answered with a Kafka error code.
    #[error("{context}: {code}")]
    Kafka {
        /// The error code.
        code: KafkaCode,
        /// What the client asked for (a topic, a partition).
        context: String,
    },
    /// A record batch failed its checks (CRC-32C, length, magic) or could not be
    /// decompressed. Its records are never handed out.
    #[error("corrupt record batch in {topic}-{partition} at offset {offset}: {reason}")]
    CorruptBatch {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The batch's base offset.
        offset: i64,
        /// What check failed.
        reason: String,
    },
    /// A record is larger than a request may carry.
    #[error("a record of {size} bytes exceeds the request size bound of {max} bytes")]
    RecordTooLarge {
        /// The encoded record's size.
        size: usize,
        /// The bound (`request_bytes_max`).
        max: usize,
    },
    /// The topic does not exist (and the broker did not create it).
    #[error("topic {0} does not exist: create it with `cairn topic create {0}`")]
    UnknownTopic(String),
    /// A partition has no position and the offset reset policy is `none`.
    #[error("{topic}-{partition} has no valid position and auto offset reset is none: seek first")]
    NoOffset {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// The producer or consumer was closed.
    #[error("the client is closed")]
    Closed,
    /// A setting is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl Error {
    /// Whether retrying the same request later may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Connect { .. } | Error::ConnectionClosed { .. } | Error::Timeout { .. } => true,
            Error::Kafka { code, .. } => code.is_retriable(),
            _ => false,
        }
    }

    /// Whether the client's metadata may be stale after this error (a leader moved, a
    /// connection dropped), so it should ask for fresh metadata before retrying.
    pub fn needs_metadata(&self) -> bool {
        match self {
            Error::Connect { .. } | Error::ConnectionClosed { .. } | Error::Timeout { .. } => true,
            Error::Kafka { code, .. } => code.needs_metadata(),
            _ => false,
        }
    }

    pub(crate) fn kafka(code: i16, context: impl Into<String>) -> Error {
        Error::Kafka { code: KafkaCode(code), context: context.into() }
    }

    pub(crate) fn protocol(error: impl std::fmt::Display) -> Error {
        Error::Protocol(error.to_string())
    }
}

/// The client's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A Kafka error code, as found in answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KafkaCode(pub i16);

impl KafkaCode {
    /// OFFSET_OUT_OF_RANGE.
    pub const OFFSET_OUT_OF_RANGE: KafkaCode = KafkaCode(1);
    /// CORRUPT_MESSAGE.
    pub const CORRUPT_MESSAGE: KafkaCode = KafkaCode(2);
    /// UNKNOWN_TOPIC_OR_PARTITION.
    pub const UNKNOWN_TOPIC_OR_PARTITION: KafkaCode = KafkaCode(3);
    /// LEADER_NOT_AVAILABLE.
    pub const LEADER_NOT_AVAILABLE: KafkaCode = KafkaCode(5);
    /// NOT_LEADER_OR_FOLLOWER.
    pub const NOT_LEADER_OR_FOLLOWER: KafkaCode = KafkaCode(6);
    /// REQUEST_TIMED_OUT.
    pub const REQUEST_TIMED_OUT: KafkaCode = KafkaCode(7);
    /// NETWORK_EXCEPTION.
    pub const NETWORK_EXCEPTION: KafkaCode = KafkaCode(13);
    /// COORDINATOR_LOAD_IN_PROGRESS.
    pub const COORDINATOR_LOAD_IN_PROGRESS: KafkaCode = KafkaCode(14);
    /// NOT_ENOUGH_REPLICAS.
    pub const NOT_ENOUGH_REPLICAS: KafkaCode = KafkaCode(19);
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND.
    pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: KafkaCode = KafkaCode(20);
    /// TOPIC_ALREADY_EXISTS.
    pub const TOPIC_ALREADY_EXISTS: KafkaCode = KafkaCode(36);
    /// OUT_OF_ORDER_SEQUENCE_NUMBER.
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: KafkaCode = KafkaCode(45);
    /// DUPLICATE_SEQUENCE_NUMBER.
    pub const DUPLICATE_SEQUENCE_NUMBER: KafkaCode = KafkaCode(46);
    /// KAFKA_STORAGE_ERROR.
    pub const KAFKA_STORAGE_ERROR: KafkaCode = KafkaCode(56);
    /// FENCED_LEADER_EPOCH.
    pub const FENCED_LEADER_EPOCH: KafkaCode = KafkaCode(74);
    /// UNKNOWN_LEADER_EPOCH.
    pub const UNKNOWN_LEADER_EPOCH: KafkaCode = KafkaCode(75);
    /// OFFSET_NOT_AVAILABLE.
    pub const OFFSET_NOT_AVAILABLE: KafkaCode = KafkaCode(78);

    /// Whether Kafka marks this error retriable (its `RetriableException` family).
    pub fn is_retriable(self) -> bool {
        matches!(self.0, 3 | 5 | 6 | 7 | 13 | 14 | 15 | 16 | 19 | 20 | 56 | 74 | 75 | 78 | 79)
    }

    /// Whether this error means the client's view of leaders is stale.
    pub fn needs_metadata(self) -> bool {
        matches!(self.0, 3 | 5 | 6 | 13 | 56 | 74 | 75)
    }

    fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            -1 => "UNKNOWN_SERVER_ERROR",
            1 => "OFFSET_OUT_OF_RANGE",
            2 => "CORRUPT_MESSAGE",
            3 => "UNKNOWN_TOPIC_OR_PARTITION",
            4 => "INVALID_FETCH_SIZE",
            5 => "LEADER_NOT_AVAILABLE",
            6 => "NOT_LEADER_OR_FOLLOWER",
            7 => "REQUEST_TIMED_OUT",
            10 => "MESSAGE_TOO_LARGE",
            13 => "NETWORK_EXCEPTION",
            14 => "COORDINATOR_LOAD_IN_PROGRESS",
            15 => "COORDINATOR_NOT_AVAILABLE",
            16 => "NOT_COORDINATOR",
            17 => "INVALID_TOPIC_EXCEPTION",
            18 => "RECORD_LIST_TOO_LARGE",
            19 => "NOT_ENOUGH_REPLICAS",
            20 => "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
            21 => "INVALID_REQUIRED_ACKS",
            35 => "UNSUPPORTED_VERSION",
            36 => "TOPIC_ALREADY_EXISTS",
            37 => "INVALID_PARTITIONS",
            38 => "INVALID_REPLICATION_FACTOR",
            40 => "INVALID_CONFIG",
            42 => "INVALID_REQUEST",
            45 => "OUT_OF_ORDER_SEQUENCE_NUMBER",
            46 => "DUPLICATE_SEQUENCE_NUMBER",
            47 => "INVALID_PRODUCER_EPOCH",
            56 => "KAFKA_STORAGE_ERROR",
            59 => "UNKNOWN_PRODUCER_ID",
            74 => "FENCED_LEADER_EPOCH",
            75 => "UNKNOWN_LEADER_EPOCH",
            78 => "OFFSET_NOT_AVAILABLE",
            87 => "INVALID_RECORD",
            _ => return None,
        })
    }
}

impl std::fmt::Display for KafkaCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} (error code {})", self.0),
            None => write!(f, "Kafka error code {}", self.0),
        }
    }
}
