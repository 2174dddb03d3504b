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

/// Times recovery reads a chunk again when it fails a check or shows an epoch change that
/// more reads must confirm. Reads that never agree fail the log (it recovers again later)
/// rather than cut it, so recovery tries harder than a fetch, which can simply report the
/// error.
pub const RECOVERY_READ_RETRIES_MAX: u8 = 8;

/// Reads of a chunk that must agree before recovery believes damage, or an epoch change
/// (neither an epoch nor a length is covered by a batch's CRC-32C). Two are not enough: two
/// reads of a small chunk can flip the same bit (one chance in `8 * len` once both flip).
pub const RECOVERY_READS_AGREEING: usize = 3;

/// The largest per-partition fetch size the log reads ahead for (librdkafka's and the Java
/// client's default `max.partition.fetch.bytes`): a consumer asking for more per fetch is
/// served by plain reads, so a partition's read ahead holds at most this much memory.
pub const READ_AHEAD_BYTES_MAX: u32 = 1 << 20;

/// How long a range read ahead waits for the consumer's next fetch before it is dropped: a
/// consumer that keeps up fetches again within milliseconds.
pub const READ_AHEAD_KEEP: std::time::Duration = std::time::Duration::from_secs(1);

/// How many bytes of its newest batches a partition log keeps in memory by default, to
/// answer fetches at its tail (followers', consumers' that keep up) without a disk read
/// (`LogConfig::tail_cache_bytes`; the default `max.partition.fetch.bytes` of the clients).
pub const TAIL_CACHE_BYTES: u32 = 1 << 20;

/// How long a batch stays in the tail cache: the followers of a partition fetch what it
/// appended within milliseconds, and a batch's bytes may share an allocation with the whole
/// request that brought it, which a batch kept long would pin.
pub const TAIL_CACHE_KEEP: std::time::Duration = std::time::Duration::from_secs(1);

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
const _: () = assert!(RECOVERY_READS_AGREEING >= 2);
const _: () = assert!(RECOVERY_READS_AGREEING <= RECOVERY_READ_RETRIES_MAX as usize + 1);

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

/// The default grace a broker keeps once the transport saw its connections close: its lease
/// is cut to expire this soon unless a heartbeat renews it (decision 0011: two heartbeat
/// intervals of 250 ms, so a reconnect costs nothing and a killed process is fenced at once).
pub const BROKER_LINK_DOWN_GRACE_MS_DEFAULT: u64 = 500;

const _: () = assert!(CONTROLLER_PENDING_BATCHES_MAX >= 1);
const _: () = assert!(PRODUCER_ID_BLOCK_SIZE >= 1);
const _: () = assert!(BROKER_SESSION_TIMEOUT_MS_DEFAULT >= 250, "a lease spans heartbeats");
const _: () = assert!(
    BROKER_LINK_DOWN_GRACE_MS_DEFAULT < BROKER_SESSION_TIMEOUT_MS_DEFAULT,
    "a closed link shortens a lease"
);
const _: () = assert!(REPLICA_TRUNCATION_ROUNDS_MAX > EPOCH_CACHE_ENTRIES_MAX);
/// Members (voters plus learners) of a Raft group; the metadata quorum is a handful of
/// voters and one learner per broker.
pub const RAFT_MEMBERS_MAX: usize = 256;

/// Voters of a Raft group (the controller quorum is 1, 3 or 5 nodes).
pub const RAFT_VOTERS_MAX: usize = 9;

/// The largest payload one proposal may carry.
pub const RAFT_ENTRY_BYTES_MAX: usize = 1 << 20;

/// Entries a leader holds beyond its commit index before proposals are refused.
pub const RAFT_UNCOMMITTED_ENTRIES_MAX: u64 = 4096;

/// Bytes of entries a leader holds beyond its commit index before proposals are refused.
pub const RAFT_UNCOMMITTED_BYTES_MAX: u64 = 16 << 20;

/// Entries and bytes (past the first entry) of one AppendEntries.
pub const RAFT_APPEND_ENTRIES_MAX: usize = 512;
/// See [`RAFT_APPEND_ENTRIES_MAX`].
pub const RAFT_APPEND_BYTES_MAX: u64 = 1 << 20;

/// Entries a leader sends a follower ahead of the follower's acknowledged match index.
pub const RAFT_INFLIGHT_ENTRIES_MAX: u64 = 4 * RAFT_APPEND_ENTRIES_MAX as u64;

/// Bytes of snapshot per InstallSnapshot message.
pub const RAFT_SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

/// The largest snapshot Raft stores, sends or reads back (one disk read at start).
pub const RAFT_SNAPSHOT_BYTES_MAX: u64 = 64 << 20;

/// The largest log segment Raft reads back at start (one disk read). A segment is rewritten
/// well before this; past it the application has not snapshotted and proposals are refused.
pub const RAFT_SEGMENT_BYTES_MAX: u64 = 64 << 20;

/// Bytes of entries held in memory (since the snapshot) past which proposals are refused
/// until the application snapshots.
pub const RAFT_LOG_BYTES_MAX: u64 = RAFT_SEGMENT_BYTES_MAX / 2;

/// Messages held until the writes they depend on are synced; past this the oldest are
/// dropped (the network may lose any message, so the protocol retries them).
pub const RAFT_HELD_SENDS_MAX: usize = 1024;

/// Storage failures in a row after which Raft stops (reports fatal) instead of rewriting its
/// log once more.
pub const RAFT_STORAGE_FAILURES_MAX: u32 = 8;

/// How long Raft waits before it rewrites its log again after the disk was full.
pub const RAFT_NO_SPACE_BACKOFF: std::time::Duration = std::time::Duration::from_millis(200);

const _: () = assert!(RAFT_VOTERS_MAX <= RAFT_MEMBERS_MAX);
const _: () = assert!(RAFT_ENTRY_BYTES_MAX as u64 <= RAFT_APPEND_BYTES_MAX);
const _: () = assert!(RAFT_ENTRY_BYTES_MAX as u64 <= RAFT_UNCOMMITTED_BYTES_MAX);
const _: () = assert!(RAFT_UNCOMMITTED_BYTES_MAX <= RAFT_LOG_BYTES_MAX);
const _: () = assert!(RAFT_LOG_BYTES_MAX * 2 <= RAFT_SEGMENT_BYTES_MAX);
const _: () = assert!(RAFT_SEGMENT_BYTES_MAX <= u32::MAX as u64);
const _: () = assert!(RAFT_SNAPSHOT_BYTES_MAX <= u32::MAX as u64 / 2);
const _: () = assert!(RAFT_SNAPSHOT_CHUNK_BYTES as u64 <= RAFT_SNAPSHOT_BYTES_MAX);
const _: () = assert!(RAFT_INFLIGHT_ENTRIES_MAX >= RAFT_APPEND_ENTRIES_MAX as u64);

/// Admin and Metadata requests a node holds until it has started; more are refused with a
/// retriable error.
pub const START_WAITING_REQUESTS_MAX: usize = 1024;
/// How long such a request waits for the start before it is refused (retriable).
pub const START_WAIT_MAX: std::time::Duration = std::time::Duration::from_millis(10_000);

/// Batches of one idempotent producer whose sequences and offsets a partition remembers, so
/// that a retry of any of them is answered with its original offsets (Kafka keeps five, the
/// most `max.in.flight.requests.per.connection` may be with idempotence on, KIP-98).
pub const PRODUCER_BATCH_WINDOW: usize = 5;

/// Idempotent producers one partition tracks. Past it the producer whose last batch is oldest
/// is forgotten to make room (a later batch of it is then accepted as from an unknown
/// producer, KIP-360); Kafka bounds the same state only by `producer.id.expiration.ms`.
pub const PRODUCERS_PER_PARTITION_MAX: usize = 8192;

/// Kafka's default `producer.id.expiration.ms` (one day): a producer whose last batch is older
/// than this is forgotten.
pub const PRODUCER_ID_EXPIRATION_MS_DEFAULT: u64 = 86_400_000;

const _: () = assert!(PRODUCER_BATCH_WINDOW >= 1 && PRODUCER_BATCH_WINDOW <= u8::MAX as usize);
const _: () = assert!(PRODUCERS_PER_PARTITION_MAX >= 1);

/// How often a replica forgets the producers older than `producer.id.expiration.ms` (Kafka's
/// `producer.id.expiration.check.interval.ms`, ten minutes).
pub const PRODUCER_ID_EXPIRATION_CHECK_INTERVAL: std::time::Duration =
    std::time::Duration::from_millis(600_000);

/// Producer state snapshots a partition keeps on disk (Kafka keeps them per segment; two are
/// enough here: the newest, and one older in case the newest is damaged or truncated away).
pub const PRODUCER_SNAPSHOTS_KEPT: usize = 2;

/// Bytes of log one read brings in while a replica rebuilds its producer state from the log.
pub const PRODUCER_REPLAY_READ_BYTES: u32 = 1 << 20;

const _: () = assert!(PRODUCER_SNAPSHOTS_KEPT >= 1);

/// Members one consumer group may hold, counting members given an id that have not joined
/// yet (KIP-394); a group's `group.max.size` may only lower it. It bounds every per-group
/// table and the answers one input can release.
pub const GROUP_MEMBERS_MAX: usize = 4096;

/// Answers a group may hold before its driver drains them: one per parked request of every
/// member (a join or a sync) plus the request being handled.
pub const GROUP_EVENTS_MAX: usize = 2 * GROUP_MEMBERS_MAX + 1;

const _: () = assert!(GROUP_EVENTS_MAX > GROUP_MEMBERS_MAX);

/// Bytes one read of an offsets partition asks for while the coordinator loads it; a batch
/// larger than this is still returned whole.
pub const COORDINATOR_LOAD_READ_BYTES: u32 = 1 << 20;

/// How long a coordinator waits before reading its partition again after a failed read.
pub const COORDINATOR_LOAD_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// Appends a coordinator may have in flight (commits, generations, deletions) over all its
/// partitions; past it, a request is refused with COORDINATOR_NOT_AVAILABLE (retriable).
pub const COORDINATOR_APPENDS_MAX: usize = 65_536;

/// Groups one coordinator keeps over all its partitions; past it, a new group is refused.
pub const COORDINATOR_GROUPS_MAX: usize = 1 << 20;

const _: () = assert!(COORDINATOR_LOAD_READ_BYTES > 0 && COORDINATOR_APPENDS_MAX > 0);
