//! Every bound of the core in one place, with the relations between them asserted at compile
//! time (TigerBeetle's `constants.zig` habit).

/// Kafka's default `message.max.bytes`: the largest record batch a produce may carry.
pub const BATCH_BYTES_MAX_DEFAULT: usize = 1_048_588;

/// The largest `segment.bytes` a topic may set: positions inside a segment are `u32`, and a
/// batch must fit in one segment.
pub const SEGMENT_BYTES_MAX: u64 = 1 << 30;

/// The smallest `segment.bytes` a topic may set (Kafka's own floor is 14 bytes; one batch
/// header is a saner floor).
pub const SEGMENT_BYTES_MIN: u64 = 1024;

/// Bytes of log between two entries of a segment's sparse offset and time indexes (Kafka's
/// `index.interval.bytes`).
pub const INDEX_INTERVAL_BYTES: u32 = 4096;

/// Bytes read per disk read while recovery scans a segment.
pub const RECOVERY_READ_BYTES: u32 = 8 << 20;

/// Times a read whose batch fails its checksum is retried before the log calls it corrupt:
/// a bit flipped in transit is gone on the next read, a flipped bit on the medium is not.
pub const READ_RETRIES_MAX: u8 = 2;

/// Times recovery reads a chunk again when it fails a check or shows an epoch change that a
/// second read must confirm. Recovery cuts the log where the checks keep failing, so it tries
/// harder than a fetch, which can simply report the error.
pub const RECOVERY_READ_RETRIES_MAX: u8 = 8;

/// Leader epochs kept in a partition's epoch cache before the oldest are dropped; more than
/// this many leader changes inside the retained log is implausible.
pub const EPOCH_CACHE_ENTRIES_MAX: usize = 4096;

/// The largest topic store file a node reads at start (`metadata/topics.log`); it is
/// compacted at start well before it nears this.
pub const TOPICS_LOG_BYTES_MAX: u64 = 64 << 20;

/// Producers one partition leader keeps waiting for their acknowledgement (acks=1 under
/// `fsync`, acks=all); past it a produce is refused with a retriable error before appending.
pub const REPLICA_ACK_WAITS_MAX: usize = 65_536;

/// OffsetForLeaderEpoch rounds one reconciliation of a follower may take: each round drops at
/// least one epoch of the follower's cache, so one more than the cache holds is a bug.
pub const REPLICA_TRUNCATION_ROUNDS_MAX: usize = EPOCH_CACHE_ENTRIES_MAX + 1;

const _: () = assert!(TOPICS_LOG_BYTES_MAX <= u32::MAX as u64);
const _: () = assert!(SEGMENT_BYTES_MAX <= u32::MAX as u64);
const _: () = assert!(SEGMENT_BYTES_MIN >= 61, "a segment must hold a batch header");
const _: () = assert!(BATCH_BYTES_MAX_DEFAULT as u64 <= SEGMENT_BYTES_MAX);
const _: () = assert!(RECOVERY_READ_BYTES as usize >= BATCH_BYTES_MAX_DEFAULT);
const _: () = assert!(INDEX_INTERVAL_BYTES < RECOVERY_READ_BYTES);
const _: () = assert!(RECOVERY_READ_RETRIES_MAX >= READ_RETRIES_MAX);

/// Metadata batches the active controller may have proposed and not yet seen committed
/// before it refuses requests that would add one (they get a retriable error). Batches it
/// proposes itself (fencing a broker whose lease lapsed) are not refused: there is at most
/// one per broker at a time.
pub const CONTROLLER_PENDING_BATCHES_MAX: usize = 1024;

/// Producer ids in the block one AllocateProducerIds hands a broker (KIP-730's block size).
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// The default broker session timeout: a broker that has not heartbeated to the active
/// controller for this long is fenced (decision 0009: tighter than Kafka's 9 s so that
/// failover stays under 2 s).
pub const BROKER_SESSION_TIMEOUT_MS_DEFAULT: u64 = 1500;

const _: () = assert!(CONTROLLER_PENDING_BATCHES_MAX >= 1);
const _: () = assert!(PRODUCER_ID_BLOCK_SIZE >= 1);
const _: () = assert!(BROKER_SESSION_TIMEOUT_MS_DEFAULT >= 250, "a lease spans heartbeats");
const _: () = assert!(REPLICA_TRUNCATION_ROUNDS_MAX > EPOCH_CACHE_ENTRIES_MAX);
