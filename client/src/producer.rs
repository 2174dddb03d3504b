//! [`Producer`]: batching by linger and size, a future per record, acks, retries with
//! backoff, idempotence and compression.
//!
//! `send` picks the partition (murmur2 of the key, or KIP-480's sticky choice without one)
//! and appends the record to that partition's open batch under a synchronous lock held for
//! the append alone: the record is encoded straight into the batch's buffer, and its future
//! shares the batch's completion (an `Arc` clone), so no allocation is made per record.
//!
//! A batch is sealed when full, when `flush` asks, or once it is older than `linger` and
//! can be sent (nothing older of its partition waits and the in-flight window has room:
//! until then it goes on filling, as Kafka's clients do). A sender task
//! compresses sealed batches outside the lock, groups them by leader into one Produce request per
//! broker, and sends them pipelined on that broker's connection. Up to `max_in_flight`
//! batches of one partition are in flight at once (`max.in.flight.requests.per.connection`),
//! each in its own request since a Produce request carries one batch per partition; the
//! requests to one broker are queued on its connection in the order the batches were made,
//! and a broker answers a connection's requests in order, so without failures a partition's
//! batches are written in order. With idempotence one batch per partition is in flight, so
//! a retry can never overtake a later batch and sequence numbers stay in order. Without it
//! a retried batch may land after a later one, which is Kafka's documented behaviour for
//! `max.in.flight.requests.per.connection` above 1 with retries. An idempotent batch that
//! fails for good leaves a gap in its partition's sequence numbers, after which the broker
//! would refuse every later batch as out of order: the producer then takes a new producer id
//! (InitProducerId, as librdkafka does for an idempotent producer without transactions) and
//! numbers later batches from 0 under it, while batches already numbered finish under the
//! old one. A retriable error puts the
//! batch back in its partition's queue, in the order the batches were made, after a backoff
//! (and refreshes metadata when the error says leaders moved) until `delivery_timeout` runs
//! out.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse,
};
use rustc_hash::FxHashMap;
use tokio::sync::{Notify, oneshot};

use crate::batch::{BatchBuilder, Header, ProducerFields};
use crate::client::Client;
use crate::compression::Compression;
use crate::consumer::by_topic;
use crate::error::{Error, KafkaCode, Result};
use crate::limits::{
    BATCH_RECORDS_MAX, IN_FLIGHT_PER_PARTITION_MAX, PARTITION_BATCHES_MAX, REQUEST_BYTES_MAX,
};
use crate::partitioner::{Xorshift, partition_for_key};

/// How many replicas must have a record before the broker acknowledges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// No acknowledgement (acks=0): the record's offset is unknown (-1).
    None,
    /// The leader's (acks=1).
    Leader,
    /// Every in-sync replica's (acks=all, -1).
    #[default]
    All,
}

impl Acks {
    fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

impl std::str::FromStr for Acks {
    type Err = String;

    fn from_str(text: &str) -> Result<Acks, String> {
        match text {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "all" | "-1" => Ok(Acks::All),
            _ => Err(format!("acks {text:?}: use 0, 1 or all")),
        }
    }
}

/// The producer's settings, named after the Java client's.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Acknowledgements (`acks`).
    pub acks: Acks,
    /// How long a batch waits for more records before it is sent (`linger.ms`).
    pub linger: Duration,
    /// A batch's size bound in bytes, uncompressed (`batch.size`).
    pub batch_bytes: usize,
    /// The codec for batches (`compression.type`).
    pub compression: Compression,
    /// How long a record may take from `send` to its answer, retries included
    /// (`delivery.timeout.ms`).
    pub delivery_timeout: Duration,
    /// How many times a batch is retried after a retriable error (`retries`).
    pub retries: u32,
    /// The first wait before a retry (`retry.backoff.ms`); it doubles up to
    /// `retry_backoff_max`.
    pub retry_backoff: Duration,
    /// The longest wait before a retry (`retry.backoff.max.ms`).
    pub retry_backoff_max: Duration,
    /// Whether the producer is idempotent (`enable.idempotence`): the broker drops a
    /// retried batch it already has.
    pub idempotence: bool,
    /// The most bytes of records waiting to be sent before `send` waits (`buffer.memory`).
    pub buffer_bytes_max: usize,
    /// How long the broker may take to replicate before answering (`request.timeout.ms`
    /// on the broker side of Produce).
    pub ack_timeout: Duration,
    /// How many batches of one partition may be in flight at once without idempotence
    /// (`max.in.flight.requests.per.connection`, default 5 as in Kafka, at most
    /// [`IN_FLIGHT_PER_PARTITION_MAX`](crate::limits::IN_FLIGHT_PER_PARTITION_MAX)). A
    /// retried batch may then land after a later one, as in Kafka. The idempotent producer
    /// keeps one batch per partition in flight.
    pub max_in_flight: usize,
}

impl Default for ProducerConfig {
    fn default() -> ProducerConfig {
        ProducerConfig {
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_bytes: 16 << 10,
            compression: Compression::None,
            delivery_timeout: Duration::from_secs(120),
            retries: u32::MAX,
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
            idempotence: false,
            buffer_bytes_max: 32 << 20,
            ack_timeout: Duration::from_secs(30),
            max_in_flight: 5,
        }
    }
}

/// A record to send. Borrows its parts: `send` copies them into a batch.
///
/// ```
/// use cairn_client::{Header, ProducerRecord};
/// let headers = [Header { key: "source", value: Some(b"web") }];
/// let record = ProducerRecord::new("orders")
///     .key(b"customer-7")
///     .value(b"{\"total\": 12}")
///     .headers(&headers)
///     .timestamp(1_700_000_000_000);
/// assert_eq!(record.topic, "orders");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ProducerRecord<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition, or `None` to let the partitioner choose.
    pub partition: Option<i32>,
    /// The key, if any.
    pub key: Option<&'a [u8]>,
    /// The value, if any.
    pub value: Option<&'a [u8]>,
    /// The headers.
    pub headers: &'a [Header<'a>],
    /// The timestamp in milliseconds since the Unix epoch, or `None` for now.
    pub timestamp: Option<i64>,
}

impl<'a> ProducerRecord<'a> {
    /// A record for `topic` with no key, value or headers.
    pub fn new(topic: &'a str) -> ProducerRecord<'a> {
        ProducerRecord {
            topic,
            partition: None,
            key: None,
            value: None,
            headers: &[],
            timestamp: None,
        }
    }

    /// Sets the key.
    pub fn key(mut self, key: &'a [u8]) -> Self {
        self.key = Some(key);
        self
    }

    /// Sets the value.
    pub fn value(mut self, value: &'a [u8]) -> Self {
        self.value = Some(value);
        self
    }

    /// Sets the headers.
    pub fn headers(mut self, headers: &'a [Header<'a>]) -> Self {
        self.headers = headers;
        self
    }

    /// Sets the partition.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Sets the timestamp.
    pub fn timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }
}

/// Where a record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMetadata {
    /// The partition.
    pub partition: i32,
    /// The record's offset, or -1 with acks=0.
    pub offset: i64,
}

/// The outcome of a batch, shared by the futures of its records.
#[derive(Debug)]
struct BatchOutcome {
    partition: i32,
    result: OnceLock<Result<i64>>,
    done: Notify,
}

impl BatchOutcome {
    fn new(partition: i32) -> Arc<BatchOutcome> {
        Arc::new(BatchOutcome { partition, result: OnceLock::new(), done: Notify::new() })
    }

    fn complete(&self, result: Result<i64>) {
        let _ = self.result.set(result);
        self.done.notify_waiters();
    }

    async fn wait(&self) -> Result<i64> {
        // Most records are awaited after their batch's answer came (a batch's records one
        // after another): no need to register with `done` then.
        if let Some(result) = self.result.get() {
            return result.clone();
        }
        loop {
            let notified = self.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(result) = self.result.get() {
                return result.clone();
            }
            notified.await;
        }
    }
}

/// The future of one record: resolves to where it was written, or why it was not.
#[derive(Debug)]
pub struct DeliveryFuture {
    batch: Arc<BatchOutcome>,
    index: i64,
}

impl DeliveryFuture {
    /// Waits for the record's batch to be acknowledged.
    pub async fn wait(self) -> Result<RecordMetadata> {
        let base = self.batch.wait().await?;
        let offset = if base < 0 { -1 } else { base + self.index };
        Ok(RecordMetadata { partition: self.batch.partition, offset })
    }
}

/// Which batch a record went in: `cairn bench` reads the clock once per answered batch.
/// It holds the batch's outcome, so no later batch can take its address.
#[cfg(feature = "cli")]
pub(crate) struct BatchMarker(Arc<BatchOutcome>);

#[cfg(feature = "cli")]
impl DeliveryFuture {
    /// The batch this record went in.
    pub(crate) fn batch_marker(&self) -> BatchMarker {
        BatchMarker(self.batch.clone())
    }

    /// Whether this record went in `batch`.
    pub(crate) fn in_batch(&self, batch: &BatchMarker) -> bool {
        Arc::ptr_eq(&self.batch, &batch.0)
    }
}

/// `delivery.await` for convenience; it boxes the future, so a caller that awaits many
/// records and counts allocations uses [`DeliveryFuture::wait`] instead.
impl std::future::IntoFuture for DeliveryFuture {
    type Output = Result<RecordMetadata>;
    type IntoFuture = std::pin::Pin<Box<dyn Future<Output = Result<RecordMetadata>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.wait())
    }
}

type PartitionKey = (Arc<str>, i32);

struct OpenBatch {
    /// The batch's place in its partition: batches are sent, and retried, in this order.
    number: u64,
    builder: BatchBuilder,
    outcome: Arc<BatchOutcome>,
    created: Instant,
}

/// A sealed batch, waiting or in flight.
struct Sealed {
    number: u64,
    /// The encoded batch, once finished (compressed, sequenced); kept for retries.
    payload: Option<Bytes>,
    /// The producer id whose sequence numbers the payload carries; -1 without idempotence.
    sequenced_by: i64,
    builder: Option<BatchBuilder>,
    count: usize,
    bytes: usize,
    outcome: Arc<BatchOutcome>,
    attempts: u32,
    not_before: Option<Instant>,
    created: Instant,
}

#[derive(Default)]
struct PartitionQueue {
    open: Option<OpenBatch>,
    /// Sealed batches in the order of their numbers.
    sealed: VecDeque<Sealed>,
    /// The batches sent and not answered yet, at most the producer's in-flight window.
    in_flight: VecDeque<Arc<BatchOutcome>>,
    next_batch_number: u64,
    next_sequence: i32,
    /// The producer id `next_sequence` counts for: under a new id a partition starts at 0.
    sequence_of: i64,
}

/// Where a new producer id stands, after an idempotent batch failed for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Renewal {
    /// The current id's sequence numbers have no gap.
    Idle,
    /// A batch numbered under the current id failed: the sender asks for a new id.
    Wanted,
    /// The request is out; no batch is numbered until it is answered.
    Asking,
}

struct Accumulator {
    /// Looked up once per record: hashed with Fx, not SipHash.
    partitions: FxHashMap<PartitionKey, PartitionQueue>,
    /// The producer id and epoch new batches are numbered under; `(-1, -1)` without
    /// idempotence.
    producer: (i64, i16),
    renewal: Renewal,
    sticky: FxHashMap<Arc<str>, i32>,
    queued_bytes: usize,
    flushing: usize,
    closed: bool,
    rng: Xorshift,
}

struct Shared {
    client: Client,
    config: ProducerConfig,
    state: Mutex<Accumulator>,
    /// Wakes the sender: a batch is ready, a flush began, an answer came.
    wake: Notify,
    /// Wakes senders waiting for buffer room.
    room: Notify,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Accumulator> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A Kafka producer. Cheap to clone; clones share batches and the sender task.
///
/// ```no_run
/// # async fn run() -> cairn_client::Result<()> {
/// use cairn_client::{Client, ClientConfig, Producer, ProducerConfig, ProducerRecord};
/// let client = Client::connect(ClientConfig::new("127.0.0.1:9092")).await?;
/// let producer = Producer::new(&client, ProducerConfig::default()).await?;
/// let delivery = producer.send(ProducerRecord::new("demo").key(b"k").value(b"hello")).await?;
/// let written = delivery.await?;
/// println!("partition {} offset {}", written.partition, written.offset);
/// producer.close().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Producer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").field("config", &self.shared.config).finish_non_exhaustive()
    }
}

impl Producer {
    /// A producer over `client`. With idempotence it first gets a producer id
    /// (InitProducerId).
    pub async fn new(client: &Client, config: ProducerConfig) -> Result<Producer> {
        if config.batch_bytes == 0 || config.batch_bytes > REQUEST_BYTES_MAX {
            return Err(Error::Config(format!(
                "batch size {} must be between 1 and {REQUEST_BYTES_MAX}",
                config.batch_bytes
            )));
        }
        if !(1..=IN_FLIGHT_PER_PARTITION_MAX).contains(&config.max_in_flight) {
            return Err(Error::Config(format!(
                "max in flight {} must be between 1 and {IN_FLIGHT_PER_PARTITION_MAX}",
                config.max_in_flight
            )));
        }
        if config.idempotence && config.acks != Acks::All {
            return Err(Error::Config("idempotence needs acks=all".to_string()));
        }
        let producer = if config.idempotence { init_producer_id(client).await? } else { (-1, -1) };
        let shared = Arc::new(Shared {
            client: client.clone(),
            config,
            state: Mutex::new(Accumulator {
                partitions: FxHashMap::default(),
                producer,
                renewal: Renewal::Idle,
                sticky: FxHashMap::default(),
                queued_bytes: 0,
                flushing: 0,
                closed: false,
                rng: Xorshift::seeded(),
            }),
            wake: Notify::new(),
            room: Notify::new(),
        });
        tokio::spawn(run_sender(shared.clone()));
        Ok(Producer { shared })
    }

    /// The producer id and epoch of an idempotent producer, `(-1, -1)` otherwise. It
    /// changes when a batch fails for good (see the module's documentation).
    pub fn producer_id(&self) -> (i64, i16) {
        self.shared.lock().producer
    }

    /// Adds a record to its partition's batch and returns its future. Waits only when the
    /// topic's metadata is not cached yet or the buffer is full.
    pub async fn send(&self, record: ProducerRecord<'_>) -> Result<DeliveryFuture> {
        let shared = &self.shared;
        let metadata = shared.client.topic(record.topic, true).await?;
        let partitions = metadata.partitions.len() as i32;
        if let Some(partition) = record.partition
            && !(0..partitions).contains(&partition)
        {
            return Err(Error::kafka(
                KafkaCode::UNKNOWN_TOPIC_OR_PARTITION.0,
                format!("{}-{partition} (the topic has {partitions} partitions)", record.topic),
            ));
        }
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        // The common case first, without registering for `room`: registering takes the
        // notifier's lock, once per record otherwise (it showed in the profile of `cairn
        // bench produce`).
        if let Some(future) = self.try_append(&record, &metadata.name, partitions, timestamp)? {
            return Ok(future);
        }
        loop {
            let room = shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if let Some(future) = self.try_append(&record, &metadata.name, partitions, timestamp)? {
                return Ok(future);
            }
            room.await;
        }
    }

    /// Appends under the lock; `None` when the buffer is full.
    fn try_append(
        &self,
        record: &ProducerRecord<'_>,
        topic: &Arc<str>,
        partitions: i32,
        timestamp: i64,
    ) -> Result<Option<DeliveryFuture>> {
        let shared = &self.shared;
        let config = &shared.config;
        let mut state = shared.lock();
        let state = &mut *state;
        if state.closed {
            return Err(Error::Closed);
        }
        if state.queued_bytes >= config.buffer_bytes_max {
            return Ok(None);
        }
        let partition = match (record.partition, record.key) {
            (Some(partition), _) => partition,
            (None, Some(key)) => partition_for_key(key, partitions),
            (None, None) => {
                let rng = &mut state.rng;
                *state.sticky.entry(topic.clone()).or_insert_with(|| rng.below(partitions))
            }
        };
        let queue = state.partitions.entry((topic.clone(), partition)).or_default();
        let (key, value, headers) = (record.key, record.value, record.headers);
        let fits = |open: &OpenBatch, size: usize| {
            open.builder.count() < BATCH_RECORDS_MAX
                && open.builder.size() + size <= config.batch_bytes
        };
        let mut size = queue
            .open
            .as_ref()
            .map(|open| open.builder.record_size(timestamp, key, value, headers));
        let fits_open = queue.open.as_ref().zip(size).is_some_and(|(open, size)| fits(open, size));
        // The partition's queue is full only when the record needs a new batch: the open one
        // fills up while the sender works through the batches before it.
        if !fits_open && queue.sealed.len() >= PARTITION_BATCHES_MAX {
            return Ok(None);
        }
        let mut sealed_one = false;
        if queue.open.is_some() && !fits_open {
            size = None;
            let open = queue.open.take().expect("checked above");
            queue.sealed.push_back(seal(open));
            sealed_one = true;
        }
        let number = queue.next_batch_number;
        let open = queue.open.get_or_insert_with(|| OpenBatch {
            number,
            builder: BatchBuilder::new(config.batch_bytes.min(1 << 20)),
            outcome: BatchOutcome::new(partition),
            created: Instant::now(),
        });
        // In a new batch the record's timestamp delta is 0, so its size is measured there.
        let size = size.unwrap_or_else(|| open.builder.record_size(timestamp, key, value, headers));
        if crate::batch::HEADER_BYTES + size > REQUEST_BYTES_MAX - 1024 {
            return Err(Error::RecordTooLarge { size, max: REQUEST_BYTES_MAX - 1024 });
        }
        let index = open.builder.count() as i64;
        if index == 0 {
            queue.next_batch_number += 1;
        }
        open.builder.append(timestamp, key, value, headers);
        let future = DeliveryFuture { batch: open.outcome.clone(), index };
        let full = open.builder.size() >= config.batch_bytes;
        if full {
            let open = queue.open.take().expect("just appended");
            queue.sealed.push_back(seal(open));
            sealed_one = true;
        }
        state.queued_bytes += size;
        if sealed_one {
            // KIP-480: a keyless record moves on to another partition once its batch is done.
            if record.key.is_none() && record.partition.is_none() {
                state.sticky.remove(topic);
            }
            shared.wake.notify_one();
        } else if index == 0 {
            // A new batch: the sender must know its linger deadline.
            shared.wake.notify_one();
        }
        Ok(Some(future))
    }

    /// Sends every record added before this call and waits for all their answers (the
    /// errors are the records' own; `flush` fails only when the producer is closed).
    pub async fn flush(&self) -> Result<()> {
        let outcomes = {
            let mut state = self.shared.lock();
            state.flushing += 1;
            let mut outcomes = Vec::new();
            for queue in state.partitions.values() {
                outcomes.extend(queue.open.iter().map(|open| open.outcome.clone()));
                outcomes.extend(queue.sealed.iter().map(|sealed| sealed.outcome.clone()));
                outcomes.extend(queue.in_flight.iter().cloned());
            }
            outcomes
        };
        self.shared.wake.notify_one();
        for outcome in &outcomes {
            let _ = outcome.wait().await;
        }
        self.shared.lock().flushing -= 1;
        Ok(())
    }

    /// Flushes, then stops the sender. Sends after `close` fail with `Error::Closed`.
    pub async fn close(&self) -> Result<()> {
        self.flush().await?;
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        Ok(())
    }
}

fn seal(open: OpenBatch) -> Sealed {
    Sealed {
        number: open.number,
        payload: None,
        sequenced_by: -1,
        count: open.builder.count(),
        // What `try_append` counted: the records, not the header.
        bytes: open.builder.size() - crate::batch::HEADER_BYTES,
        builder: Some(open.builder),
        outcome: open.outcome,
        attempts: 0,
        not_before: None,
        created: open.created,
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

async fn init_producer_id(client: &Client) -> Result<(i64, i16)> {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(-1)
        .with_producer_id((-1).into())
        .with_producer_epoch(-1);
    let mut last = None;
    for _ in 0..crate::limits::METADATA_ATTEMPTS_MAX {
        let connection = client.any_broker().await?;
        let response: InitProducerIdResponse = connection.call(&request).await?;
        if response.error_code == 0 {
            return Ok((response.producer_id.0, response.producer_epoch));
        }
        let error = Error::kafka(response.error_code, "InitProducerId");
        if !error.is_retriable() {
            return Err(error);
        }
        last = Some(error);
        tokio::time::sleep(client.config().retry_backoff).await;
    }
    Err(last.expect("at least one attempt"))
}

/// A batch taken by the sender for one request.
struct Taken {
    key: PartitionKey,
    batch: Sealed,
    /// Which of this round's requests to the partition's leader carries the batch: the
    /// partition's first batch taken goes in the first, its second in the second, and so on.
    request: usize,
}

/// The sender task: see the module's documentation.
async fn run_sender(shared: Arc<Shared>) {
    // Per broker, the signal that the last round's requests are queued on its connection:
    // the next round queues its own only after, so requests keep the order of their batches.
    let mut queued: HashMap<i32, oneshot::Receiver<()>> = HashMap::new();
    loop {
        let wake = shared.wake.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        let now = Instant::now();
        let (taken, deadline, stop, renew) = take_ready(&shared, now);
        if stop {
            return;
        }
        if renew {
            tokio::spawn(renew_producer_id(shared.clone()));
        }
        if !taken.is_empty() {
            dispatch(&shared, taken, &mut queued);
            continue;
        }
        match deadline {
            Some(deadline) => {
                tokio::select! {
                    () = wake => {}
                    () = tokio::time::sleep_until(deadline.into()) => {}
                }
            }
            None => wake.await,
        }
    }
}

/// The most batches of one partition in flight at once.
fn in_flight_max(config: &ProducerConfig) -> usize {
    // Sequence numbers must reach the broker in order, and a failed batch would make every
    // later one in flight fail as out of order: the idempotent producer sends one at a time.
    if config.idempotence { 1 } else { config.max_in_flight }
}

/// Seals batches past their linger and takes the head batches of every partition, as many
/// as its in-flight window has room for; returns them, the next deadline, whether the
/// sender should stop, and whether it should ask for a new producer id. While one is asked
/// for, only batches already numbered (retries) are taken.
fn take_ready(shared: &Shared, now: Instant) -> (Vec<Taken>, Option<Instant>, bool, bool) {
    let config = &shared.config;
    let mut state = shared.lock();
    let state = &mut *state;
    let renew = state.renewal == Renewal::Wanted;
    if renew {
        state.renewal = Renewal::Asking;
    }
    let numbering = state.renewal == Renewal::Idle;
    let flushing = state.flushing > 0 || state.closed;
    let mut taken = Vec::new();
    let mut deadline: Option<Instant> = None;
    let mut earliest = |at: Instant| deadline = Some(deadline.map_or(at, |d: Instant| d.min(at)));
    let mut busy = false;
    let window = in_flight_max(config);
    for (key, queue) in &mut state.partitions {
        // A batch past its linger is sealed only when it can be sent now. While older batches
        // wait for the in-flight window it goes on filling, as Kafka's clients do: sealing it
        // would only send a smaller batch later. The answer that frees the window wakes us.
        let can_send = queue.sealed.is_empty() && queue.in_flight.len() < window;
        if let Some(open) = &queue.open {
            let due = open.created + config.linger;
            if flushing || (due <= now && can_send) {
                let open = queue.open.take().expect("checked");
                queue.sealed.push_back(seal(open));
                if state.sticky.get(&key.0) == Some(&key.1) {
                    state.sticky.remove(&key.0);
                }
            } else if due > now {
                earliest(due);
            }
        }
        busy |= !queue.in_flight.is_empty() || !queue.sealed.is_empty();
        let mut request = 0;
        while queue.in_flight.len() < window {
            let Some(head) = queue.sealed.front() else { break };
            if head.payload.is_none() && !numbering {
                break;
            }
            if let Some(not_before) = head.not_before.filter(|&at| at > now) {
                earliest(not_before);
                break;
            }
            let batch = queue.sealed.pop_front().expect("checked");
            queue.in_flight.push_back(batch.outcome.clone());
            taken.push(Taken { key: key.clone(), batch, request });
            request += 1;
        }
        assert!(queue.in_flight.len() <= window, "the in-flight window holds");
    }
    let stop = state.closed && !busy && taken.is_empty();
    (taken, deadline, stop, renew)
}

/// Takes a new producer id after a batch numbered under the current one failed for good.
/// Batches wait for it unnumbered; if none can be had, they fail with the error.
async fn renew_producer_id(shared: Arc<Shared>) {
    let result = init_producer_id(&shared.client).await;
    let failed = {
        let mut state = shared.lock();
        match &result {
            Ok(producer) => {
                tracing::info!(new = ?producer, old = ?state.producer, "a new producer id after a failed batch");
                state.producer = *producer;
                state.renewal = Renewal::Idle;
                Vec::new()
            }
            Err(_) => {
                // The next batch to fail asks again; until then nothing can be numbered.
                state.renewal = Renewal::Wanted;
                let mut failed = Vec::new();
                for queue in state.partitions.values_mut() {
                    while queue.sealed.front().is_some_and(|batch| batch.payload.is_none()) {
                        failed.push(queue.sealed.pop_front().expect("checked"));
                    }
                }
                let bytes: usize = failed.iter().map(|batch: &Sealed| batch.bytes).sum();
                state.queued_bytes = state.queued_bytes.saturating_sub(bytes);
                failed
            }
        }
    };
    if let Err(error) = result {
        let error = Error::Protocol(format!("no new producer id after a failed batch: {error}"));
        for batch in failed {
            batch.outcome.complete(Err(error.clone()));
        }
        shared.room.notify_waiters();
        tokio::time::sleep(shared.client.config().retry_backoff).await;
    }
    shared.wake.notify_one();
}

/// Finishes the taken batches, groups them by leader and by request (one batch per
/// partition in a request), and starts a task per broker that sends them.
fn dispatch(
    shared: &Arc<Shared>,
    taken: Vec<Taken>,
    queued: &mut HashMap<i32, oneshot::Receiver<()>>,
) {
    let mut by_leader: HashMap<i32, Vec<Vec<Taken>>> = HashMap::new();
    for mut item in taken {
        if let Err(error) = finish(shared, &mut item) {
            complete(shared, item, Err(error));
            continue;
        }
        match shared.client.cached_leader(&item.key.0, item.key.1) {
            Some(leader) => {
                let requests = by_leader.entry(leader).or_default();
                if requests.len() <= item.request {
                    requests.resize_with(item.request + 1, Vec::new);
                }
                requests[item.request].push(item);
            }
            None => {
                let error = Error::kafka(KafkaCode::LEADER_NOT_AVAILABLE.0, "no leader known");
                retry_or_fail(shared, item, error);
            }
        }
    }
    for (leader, mut requests) in by_leader {
        // A request may be left empty when a partition's earlier batch failed to finish.
        requests.retain(|batches| !batches.is_empty());
        let (done, next) = oneshot::channel();
        let before = queued.insert(leader, next);
        let shared = shared.clone();
        tokio::spawn(async move { send_to(&shared, leader, requests, before, done).await });
    }
}

/// Compresses and sequences a batch the first time it is sent.
fn finish(shared: &Shared, item: &mut Taken) -> Result<()> {
    if item.batch.payload.is_some() {
        return Ok(());
    }
    let builder = item.batch.builder.take().expect("an unsent batch keeps its builder");
    let fields = if shared.config.idempotence {
        let mut state = shared.lock();
        let (producer_id, producer_epoch) = state.producer;
        let queue = state.partitions.get_mut(&item.key).expect("a taken batch's partition");
        if queue.sequence_of != producer_id {
            queue.sequence_of = producer_id;
            queue.next_sequence = 0;
        }
        let base_sequence = queue.next_sequence;
        queue.next_sequence = base_sequence.wrapping_add(item.batch.count as i32) & i32::MAX;
        item.batch.sequenced_by = producer_id;
        ProducerFields { producer_id, producer_epoch, base_sequence }
    } else {
        ProducerFields::NONE
    };
    let payload = builder
        .finish(shared.config.compression, fields)
        .map_err(|e| Error::Protocol(format!("compressing a batch: {e}")))?;
    item.batch.payload = Some(payload);
    Ok(())
}

/// Queues `requests` on the leader's connection once the round before has queued its
/// own (`before`), says so (`done`), then waits for the answers in order.
async fn send_to(
    shared: &Arc<Shared>,
    leader: i32,
    requests: Vec<Vec<Taken>>,
    before: Option<oneshot::Receiver<()>>,
    done: oneshot::Sender<()>,
) {
    if let Some(before) = before {
        // An error only means that round's task is gone: nothing left to wait for.
        let _ = before.await;
    }
    let connection = match shared.client.broker(leader).await {
        Ok(connection) => connection,
        Err(error) => {
            drop(done);
            requests
                .into_iter()
                .flatten()
                .for_each(|item| retry_or_fail(shared, item, error.clone()));
            return;
        }
    };
    let mut answers = Vec::with_capacity(requests.len());
    for batches in requests {
        let request = produce_request(&shared.config, &batches);
        if shared.config.acks == Acks::None {
            match connection.send_only(&request).await {
                Ok(()) => batches.into_iter().for_each(|item| complete(shared, item, Ok(-1))),
                Err(error) => fail_all(shared, batches, &error),
            }
            continue;
        }
        match connection.submit_call(&request).await {
            Ok(answer) => answers.push((answer, batches)),
            Err(error) => fail_all(shared, batches, &error),
        }
    }
    drop(done);
    for (answer, batches) in answers {
        match answer.wait().await {
            Ok(response) => handle_response(shared, batches, &response),
            Err(error) => fail_all(shared, batches, &error),
        }
    }
}

fn fail_all(shared: &Arc<Shared>, batches: Vec<Taken>, error: &Error) {
    for item in batches {
        retry_or_fail(shared, item, error.clone());
    }
}

/// One Produce request carrying `batches`, at most one per partition.
fn produce_request(config: &ProducerConfig, batches: &[Taken]) -> ProduceRequest {
    let topics = by_topic(batches.iter().map(|item| {
        let data = PartitionProduceData::default()
            .with_index(item.key.1)
            .with_records(item.batch.payload.clone());
        (item.key.0.clone(), data)
    }));
    let topics: Vec<TopicProduceData> = topics
        .into_iter()
        .map(|(name, list)| {
            let mut indexes: Vec<i32> = list.iter().map(|p| p.index).collect();
            indexes.sort_unstable();
            assert!(indexes.windows(2).all(|w| w[0] != w[1]), "one batch per partition");
            TopicProduceData::default().with_name(name).with_partition_data(list)
        })
        .collect();
    ProduceRequest::default()
        .with_acks(config.acks.wire())
        .with_timeout_ms(config.ack_timeout.as_millis().min(i32::MAX as u128) as i32)
        .with_topic_data(topics)
}

fn handle_response(shared: &Arc<Shared>, batches: Vec<Taken>, response: &ProduceResponse) {
    let mut refresh = Vec::new();
    for item in batches {
        let answer = response
            .responses
            .iter()
            .filter(|t| t.name.0.as_str() == &*item.key.0)
            .flat_map(|t| t.partition_responses.iter())
            .find(|p| p.index == item.key.1);
        let Some(answer) = answer else {
            let error = Error::Protocol(format!("no answer for {}-{}", item.key.0, item.key.1));
            complete(shared, item, Err(error));
            continue;
        };
        match KafkaCode(answer.error_code) {
            KafkaCode(0) => complete(shared, item, Ok(answer.base_offset)),
            // The broker has this batch already (a retry of one it wrote): it is written.
            KafkaCode::DUPLICATE_SEQUENCE_NUMBER => complete(shared, item, Ok(answer.base_offset)),
            code => {
                let context = format!("producing to {}-{}", item.key.0, item.key.1);
                let error = Error::Kafka { code, context };
                if error.needs_metadata() {
                    refresh.push(item.key.0.clone());
                }
                retry_or_fail(shared, item, error);
            }
        }
    }
    for topic in refresh {
        shared.client.invalidate(&topic);
        let client = shared.client.clone();
        tokio::spawn(async move { client.refresh(&[&topic], false).await });
    }
}

/// Puts a batch back for another try after a backoff, or fails it for good.
fn retry_or_fail(shared: &Arc<Shared>, mut item: Taken, error: Error) {
    let config = &shared.config;
    let age = item.batch.created.elapsed();
    let retriable = error.is_retriable()
        && item.batch.attempts < config.retries
        && age < config.delivery_timeout;
    if !retriable {
        complete(shared, item, Err(error));
        return;
    }
    if error.needs_metadata() {
        let client = shared.client.clone();
        let topic = item.key.0.clone();
        client.invalidate(&topic);
        tokio::spawn(async move { client.refresh(&[&topic], false).await });
    }
    tracing::debug!(%error, attempt = item.batch.attempts, "retrying a batch");
    let shift = item.batch.attempts.min(16);
    let backoff = config.retry_backoff.saturating_mul(1 << shift).min(config.retry_backoff_max);
    item.batch.attempts += 1;
    item.batch.not_before = Some(Instant::now() + backoff);
    {
        let mut state = shared.lock();
        let queue = state.partitions.get_mut(&item.key).expect("a taken batch's partition");
        forget_in_flight(queue, &item.batch.outcome);
        // Back in the order the batches were made: before every later batch still waiting.
        let at = queue.sealed.partition_point(|waiting| waiting.number < item.batch.number);
        queue.sealed.insert(at, item.batch);
    }
    shared.wake.notify_one();
}

fn complete(shared: &Arc<Shared>, item: Taken, result: Result<i64>) {
    {
        let mut state = shared.lock();
        state.queued_bytes = state.queued_bytes.saturating_sub(item.batch.bytes);
        // A gap in the current id's sequence numbers: every later batch of the partition
        // would be refused as out of order.
        if result.is_err()
            && item.batch.sequenced_by >= 0
            && item.batch.sequenced_by == state.producer.0
            && state.renewal == Renewal::Idle
        {
            state.renewal = Renewal::Wanted;
        }
        if let Some(queue) = state.partitions.get_mut(&item.key) {
            forget_in_flight(queue, &item.batch.outcome);
        }
    }
    item.batch.outcome.complete(result);
    shared.room.notify_waiters();
    shared.wake.notify_one();
}

fn forget_in_flight(queue: &mut PartitionQueue, outcome: &Arc<BatchOutcome>) {
    let before = queue.in_flight.len();
    queue.in_flight.retain(|in_flight| !Arc::ptr_eq(in_flight, outcome));
    assert_eq!(queue.in_flight.len() + 1, before, "an answered batch was in flight");
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use bytes::BytesMut;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::{
        ApiKey, ApiVersionsResponse, BrokerId, MetadataResponse, ProduceRequest, RequestHeader,
        ResponseHeader, TopicName,
    };
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::ClientConfig;

    const TOPIC: &str = "window";

    /// How the scripted broker answers Produce requests.
    #[derive(Clone)]
    struct Script {
        /// Every answer is held until this many Produce requests are in; then all are
        /// answered in order, and later ones at once.
        hold_until: usize,
        /// Each answer waits this long first.
        delay: Duration,
        /// Where the record count of each Produce request's batch goes.
        counts: Option<tokio::sync::mpsc::UnboundedSender<i32>>,
    }

    /// A scripted broker with one partition of `TOPIC`, led by itself, that answers
    /// Produce requests as `script` says, with the offsets of the records they carried.
    async fn scripted_broker(script: Script) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                tokio::spawn(serve(stream, addr, script.clone()));
            }
        });
        addr
    }

    /// A scripted broker that holds every Produce answer until `produce_requests` are in.
    async fn holding_broker(produce_requests: usize) -> SocketAddr {
        scripted_broker(Script {
            hold_until: produce_requests,
            delay: Duration::ZERO,
            counts: None,
        })
        .await
    }

    /// The record count of a Produce request's one batch (`frame` holds header and body).
    fn record_count(frame: &[u8]) -> i32 {
        let mut buf = bytes::Bytes::copy_from_slice(frame);
        RequestHeader::decode(&mut buf, 1).unwrap();
        let request = ProduceRequest::decode(&mut buf, 3).unwrap();
        let records = request.topic_data[0].partition_data[0].records.as_ref().unwrap();
        i32::from_be_bytes(records[57..61].try_into().unwrap())
    }

    async fn serve(mut stream: TcpStream, addr: SocketAddr, script: Script) {
        let mut held = Vec::new();
        let mut answered = 0;
        let mut next_offset = 0i64;
        loop {
            let Ok(size) = stream.read_i32().await else { return };
            let mut frame = vec![0; size as usize];
            stream.read_exact(&mut frame).await.unwrap();
            let key = i16::from_be_bytes([frame[0], frame[1]]);
            let id = i32::from_be_bytes(frame[4..8].try_into().unwrap());
            if key == ApiKey::ApiVersions as i16 {
                let versions =
                    [(ApiKey::ApiVersions, 3), (ApiKey::Metadata, 7), (ApiKey::Produce, 3)];
                let keys = versions.map(|(api, version)| {
                    ApiVersion::default()
                        .with_api_key(api as i16)
                        .with_min_version(version.min(1))
                        .with_max_version(version)
                });
                let body = ApiVersionsResponse::default().with_api_keys(keys.to_vec());
                write_answer(&mut stream, id, &body, 3).await;
            } else if key == ApiKey::Metadata as i16 {
                let broker = MetadataResponseBroker::default()
                    .with_node_id(BrokerId(0))
                    .with_host(StrBytes::from_string(addr.ip().to_string()))
                    .with_port(i32::from(addr.port()));
                let partition = MetadataResponsePartition::default()
                    .with_leader_id(BrokerId(0))
                    .with_replica_nodes(vec![BrokerId(0)])
                    .with_isr_nodes(vec![BrokerId(0)]);
                let topic = MetadataResponseTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str(TOPIC))))
                    .with_partitions(vec![partition]);
                let body =
                    MetadataResponse::default().with_brokers(vec![broker]).with_topics(vec![topic]);
                write_answer(&mut stream, id, &body, 7).await;
            } else {
                assert_eq!(key, ApiKey::Produce as i16, "the producer sends only Produce");
                let count = record_count(&frame);
                if let Some(counts) = &script.counts {
                    counts.send(count).unwrap();
                }
                held.push((id, count));
                if held.len() + answered < script.hold_until {
                    continue;
                }
                tokio::time::sleep(script.delay).await;
                for (id, count) in held.drain(..) {
                    let partition =
                        PartitionProduceResponse::default().with_base_offset(next_offset);
                    next_offset += i64::from(count);
                    let topic = TopicProduceResponse::default()
                        .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                        .with_partition_responses(vec![partition]);
                    let body = ProduceResponse::default().with_responses(vec![topic]);
                    write_answer(&mut stream, id, &body, 3).await;
                    answered += 1;
                }
            }
        }
    }

    async fn write_answer<M: Encodable>(stream: &mut TcpStream, id: i32, body: &M, version: i16) {
        let mut frame = BytesMut::new();
        frame.extend_from_slice(&[0; 4]);
        // Header v0 for every answer here: ApiVersions always, Metadata v7 and Produce v3
        // are not flexible versions.
        ResponseHeader::default().with_correlation_id(id).encode(&mut frame, 0).unwrap();
        body.encode(&mut frame, version).unwrap();
        let size = (frame.len() - 4) as i32;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        stream.write_all(&frame).await.unwrap();
    }

    /// Sends `records` one-record batches and waits for them; `None` when they were not
    /// all acknowledged within two seconds.
    async fn send_one_record_batches(
        broker: SocketAddr,
        config: ProducerConfig,
        records: usize,
    ) -> Option<Vec<i64>> {
        let client = Client::connect(ClientConfig::new(&broker.to_string())).await.unwrap();
        // A batch holds one 100-byte record: the second does not fit.
        let config = ProducerConfig { batch_bytes: 160, linger: Duration::ZERO, ..config };
        let producer = Producer::new(&client, config).await.unwrap();
        let value = [7u8; 100];
        let mut deliveries = Vec::new();
        for _ in 0..records {
            let record = ProducerRecord::new(TOPIC).partition(0).value(&value);
            deliveries.push(producer.send(record).await.unwrap());
        }
        let all = async {
            let mut offsets = Vec::new();
            for delivery in deliveries {
                offsets.push(delivery.wait().await.unwrap().offset);
            }
            offsets
        };
        tokio::time::timeout(Duration::from_secs(2), all).await.ok()
    }

    #[tokio::test]
    async fn batches_of_one_partition_are_in_flight_at_once_up_to_the_window() {
        // The broker answers only once 4 batches are in flight: a window of 4 gets there,
        // in order; a window of 1, or an idempotent producer, never does.
        let config = ProducerConfig { acks: Acks::Leader, max_in_flight: 4, ..Default::default() };
        let offsets = send_one_record_batches(holding_broker(4).await, config.clone(), 4).await;
        assert_eq!(offsets, Some(vec![0, 1, 2, 3]), "four batches in flight, answered in order");

        let narrow = ProducerConfig { max_in_flight: 1, ..config.clone() };
        let offsets = send_one_record_batches(holding_broker(4).await, narrow, 4).await;
        assert_eq!(offsets, None, "one batch in flight at a time");

        let three = ProducerConfig { max_in_flight: 3, ..config };
        let offsets = send_one_record_batches(holding_broker(4).await, three, 4).await;
        assert_eq!(offsets, None, "never more than the window");
    }

    #[tokio::test]
    async fn a_batch_past_its_linger_fills_while_the_window_is_full() {
        // One batch in flight, answered after 300 ms; no linger. The records sent while the
        // first batch waits for its answer go out together in the next batch, not one batch
        // each: sealing a batch that cannot be sent yet would only make it smaller.
        let (counts, mut received) = tokio::sync::mpsc::unbounded_channel();
        let script =
            Script { hold_until: 1, delay: Duration::from_millis(300), counts: Some(counts) };
        let broker = scripted_broker(script).await;
        let client = Client::connect(ClientConfig::new(&broker.to_string())).await.unwrap();
        let config = ProducerConfig {
            acks: Acks::Leader,
            max_in_flight: 1,
            linger: Duration::ZERO,
            ..Default::default()
        };
        let producer = Producer::new(&client, config).await.unwrap();
        let value = [7u8; 100];
        let send = || producer.send(ProducerRecord::new(TOPIC).partition(0).value(&value));
        let first = send().await.unwrap();
        assert_eq!(received.recv().await, Some(1), "the first record goes out at once");
        let mut later = Vec::new();
        for _ in 0..50 {
            later.push(send().await.unwrap());
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(first.wait().await.unwrap().offset, 0);
        for (index, delivery) in later.into_iter().enumerate() {
            assert_eq!(delivery.wait().await.unwrap().offset, index as i64 + 1);
        }
        assert_eq!(received.recv().await, Some(50), "the 50 later records in one batch");
    }

    #[tokio::test]
    async fn a_window_outside_its_bounds_is_refused() {
        let broker = holding_broker(1).await;
        let client = Client::connect(ClientConfig::new(&broker.to_string())).await.unwrap();
        for max_in_flight in [0, IN_FLIGHT_PER_PARTITION_MAX + 1] {
            let config = ProducerConfig { max_in_flight, ..Default::default() };
            let error = Producer::new(&client, config).await.unwrap_err();
            assert!(matches!(error, Error::Config(_)), "{error}");
        }
    }
}
