//! Every bound the client keeps, in one place, with the relations between them checked at
//! compile time.

/// The largest request frame the client writes (Kafka's `max.request.size` is per request
/// too). A record that cannot fit in one is refused with `Error::RecordTooLarge`.
pub const REQUEST_BYTES_MAX: usize = 100 << 20;

/// The largest answer frame the client reads; a larger size prefix closes the connection,
/// since it is either a broken stream or an answer the client never asked for.
pub const RESPONSE_BYTES_MAX: usize = 256 << 20;

/// Requests queued for one connection's writer before `call` waits for room.
pub const CONNECTION_QUEUE_MAX: usize = 1024;

/// The size of the write buffer that coalesces small pipelined requests into one syscall.
pub const WRITE_BUFFER_BYTES: usize = 64 << 10;

/// The most record batches that wait per partition in the producer before `send` waits.
pub const PARTITION_BATCHES_MAX: usize = 1024;

/// The most batches of one partition the producer keeps in flight at once without
/// idempotence (`max.in.flight.requests.per.connection`; Kafka's Java client has no bound
/// there, librdkafka's default is 1,000,000). Each is a request on the leader's
/// connection, so it stays within the connection's queue.
pub const IN_FLIGHT_PER_PARTITION_MAX: usize = 256;

/// The most records one batch carries, whatever its size: Kafka's offset deltas are i32,
/// and a bound keeps a batch of empty records finite.
pub const BATCH_RECORDS_MAX: usize = 1 << 20;

/// The most times the producer or consumer refreshes metadata in a row for one call
/// before it gives the error to the caller.
pub const METADATA_ATTEMPTS_MAX: u32 = 20;

const _: () = assert!(WRITE_BUFFER_BYTES < REQUEST_BYTES_MAX);
const _: () = assert!(IN_FLIGHT_PER_PARTITION_MAX <= CONNECTION_QUEUE_MAX);
const _: () = assert!(REQUEST_BYTES_MAX <= RESPONSE_BYTES_MAX);
const _: () = assert!(BATCH_RECORDS_MAX <= i32::MAX as usize);
