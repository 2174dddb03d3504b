//! `cairn bench produce|consume|e2e`: load generators with latency percentiles.
//!
//! `produce` sends records of a fixed size as fast as the producer takes them (or at a
//! fixed rate) and measures each record from `send` to its acknowledgement; `consume` reads
//! records from the beginning of a topic (assign mode) and counts them, refusing to count
//! an offset twice; `e2e` runs a producer and a consumer at once at a fixed rate and
//! measures each record from `send` to `poll`, by a timestamp the producer writes into the
//! record's value. Latencies go into an HDR histogram (microseconds, three significant
//! digits); the report gives p50, p90, p99, p99.9 and max, records/s and MB/s (10^6 bytes),
//! as text or as one JSON object with `--output json`.
//!
//! Nothing is allocated per record by the bench itself: every record's value is the same
//! buffer (rewritten in place by `e2e`), the deliveries go through a bounded channel to a
//! task that awaits them in order, and the histogram is allocated once.

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{ConnectArgs, Failure, Output};
use crate::producer::BatchMarker;
use crate::{
    Acks, Client, Compression, Consumer, ConsumerConfig, DeliveryFuture, OffsetReset, Producer,
    ProducerConfig, ProducerRecord, SeekTo, TopicPartition,
};

const BENCH_EXAMPLES: &str = "\
Examples:
  cairn bench produce bench --records 2000000 --record-size 100 --acks 1 --partition 0
  cairn bench produce bench --records 100000 --throughput 20000 --output json
  cairn bench consume bench --records 2000000
  cairn bench e2e bench-e2e --records 10000 --throughput 1000

produce measures each record from send to its acknowledgement; e2e from send to poll.
Latencies are in milliseconds, MB is 10^6 bytes.";

/// Chunks of deliveries waiting for their acknowledgement in the bench before `send`
/// waits: bounds the bench's memory whatever the producer's buffer holds.
const DELIVERY_CHUNKS_MAX: usize = 1 << 12;

/// The largest latency the histograms hold (an hour, in microseconds); a larger one is
/// recorded as this.
const LATENCY_US_MAX: u64 = 3_600_000_000;

/// The first bytes of an `e2e` record's value: tells the bench's records from others.
const E2E_MAGIC: [u8; 8] = *b"cairnE2E";

/// An `e2e` value's header: the magic, then the send time in nanoseconds since the run
/// began (little-endian u64).
const E2E_HEADER_BYTES: usize = 16;

/// `cairn bench`.
#[derive(Debug, Args)]
#[command(after_help = BENCH_EXAMPLES)]
pub struct BenchArgs {
    /// What to measure.
    #[command(subcommand)]
    pub command: BenchCommand,
}

/// The bench's subcommands.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Send records as fast as possible (or at --throughput) and measure send-to-ack latency
    Produce(BenchProduceArgs),
    /// Read records from the beginning of a topic and measure the rate
    Consume(BenchConsumeArgs),
    /// Produce and consume at once at a fixed rate and measure send-to-consume latency
    E2e(BenchE2eArgs),
}

/// The producer's settings, with the Java client's names.
#[derive(Debug, Clone, Args)]
pub struct ProducerFlags {
    /// Acknowledgements (acks): 0, 1 or all
    #[arg(long, default_value = "1")]
    pub acks: Acks,
    /// How long a batch waits for more records (linger.ms)
    #[arg(long, value_name = "MS", default_value_t = 5)]
    pub linger_ms: u64,
    /// A batch's bound in bytes (batch.size)
    #[arg(long, value_name = "BYTES", default_value_t = 16_384)]
    pub batch_size: usize,
    /// Records waiting to be sent, in bytes, before send waits (buffer.memory)
    #[arg(long, value_name = "BYTES", default_value_t = 32 << 20)]
    pub buffer_memory: usize,
    /// none, gzip, snappy, lz4 or zstd (compression.type)
    #[arg(long, default_value = "none")]
    pub compression_type: Compression,
    /// Make the producer idempotent (enable.idempotence; needs --acks all)
    #[arg(long)]
    pub enable_idempotence: bool,
    /// Produce requests in flight per partition without idempotence
    /// (max.in.flight.requests.per.connection)
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub max_in_flight_requests_per_connection: usize,
}

impl ProducerFlags {
    fn config(&self) -> ProducerConfig {
        ProducerConfig {
            acks: self.acks,
            linger: Duration::from_millis(self.linger_ms),
            batch_bytes: self.batch_size,
            buffer_bytes_max: self.buffer_memory,
            compression: self.compression_type,
            idempotence: self.enable_idempotence,
            max_in_flight: self.max_in_flight_requests_per_connection,
            ..ProducerConfig::default()
        }
    }

    fn json(&self) -> Value {
        json!({
            "acks": match self.acks { Acks::None => "0", Acks::Leader => "1", Acks::All => "all" },
            "linger_ms": self.linger_ms,
            "batch_size": self.batch_size,
            "buffer_memory": self.buffer_memory,
            "compression_type": self.compression_type.name(),
            "enable_idempotence": self.enable_idempotence,
            "max_in_flight_requests_per_connection": self.max_in_flight_requests_per_connection,
        })
    }
}

/// `cairn bench produce`.
#[derive(Debug, Args)]
pub struct BenchProduceArgs {
    /// The topic (created on first use by a node that allows it)
    pub topic: String,
    /// How many records to send
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub records: u64,
    /// Each record's value size in bytes
    #[arg(long, value_name = "BYTES", default_value_t = 100)]
    pub record_size: usize,
    /// Records per second, or -1 for as fast as possible
    #[arg(long, value_name = "N", default_value_t = -1.0, allow_negative_numbers = true)]
    pub throughput: f64,
    /// Write every record to this partition (else the sticky partitioner spreads them)
    #[arg(long, short = 'p', value_name = "N")]
    pub partition: Option<i32>,
    /// The producer's settings.
    #[command(flatten)]
    pub producer: ProducerFlags,
    /// text or json
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
    /// Where the cluster is.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `cairn bench consume`.
#[derive(Debug, Args)]
pub struct BenchConsumeArgs {
    /// The topic
    pub topic: String,
    /// How many records to read
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub records: u64,
    /// Read only this partition
    #[arg(long, short = 'p', value_name = "N")]
    pub partition: Option<i32>,
    /// Give up (exit 1) when the records have not all come after this long
    #[arg(long, value_name = "MS", default_value_t = 60_000)]
    pub timeout_ms: u64,
    /// The most bytes per partition in one fetch answer (max.partition.fetch.bytes)
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    pub max_partition_fetch_bytes: i32,
    /// text or json
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
    /// Where the cluster is.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `cairn bench e2e`.
#[derive(Debug, Args)]
pub struct BenchE2eArgs {
    /// The topic
    pub topic: String,
    /// How many records to send and receive
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub records: u64,
    /// Each record's value size in bytes (at least 16: the value carries its send time)
    #[arg(long, value_name = "BYTES", default_value_t = 100)]
    pub record_size: usize,
    /// Records per second
    #[arg(long, value_name = "N", default_value_t = 1000.0)]
    pub throughput: f64,
    /// Write every record to this partition (else the sticky partitioner spreads them)
    #[arg(long, short = 'p', value_name = "N")]
    pub partition: Option<i32>,
    /// Give up (exit 1) when the records have not all come this long after the last send
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    pub timeout_ms: u64,
    /// The producer's settings.
    #[command(flatten)]
    pub producer: ProducerFlags,
    /// text or json
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
    /// Where the cluster is.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

pub(super) async fn run(args: BenchArgs) -> Result<(), Failure> {
    match args.command {
        BenchCommand::Produce(args) => produce(args).await,
        BenchCommand::Consume(args) => consume(args).await,
        BenchCommand::E2e(args) => e2e(args).await,
    }
}

/// Latencies in microseconds.
struct Latencies {
    histogram: Histogram<u64>,
}

impl Latencies {
    fn new() -> Latencies {
        let histogram = Histogram::new_with_bounds(1, LATENCY_US_MAX, 3)
            .expect("constant bounds that hdrhistogram accepts");
        Latencies { histogram }
    }

    fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.histogram.saturating_record(micros.clamp(1, LATENCY_US_MAX));
    }

    fn ms(&self, quantile: f64) -> f64 {
        self.histogram.value_at_quantile(quantile) as f64 / 1000.0
    }

    fn json(&self) -> Value {
        json!({
            "count": self.histogram.len(),
            "mean_ms": self.histogram.mean() / 1000.0,
            "p50_ms": self.ms(0.5),
            "p90_ms": self.ms(0.9),
            "p99_ms": self.ms(0.99),
            "p99_9_ms": self.ms(0.999),
            "max_ms": self.histogram.max() as f64 / 1000.0,
        })
    }

    fn text(&self) -> String {
        format!(
            "p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2} ms",
            self.ms(0.5),
            self.ms(0.9),
            self.ms(0.99),
            self.ms(0.999),
            self.histogram.max() as f64 / 1000.0
        )
    }
}

/// A progress bar on stderr, hidden when stderr is not a terminal.
fn progress(total: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    let template = format!("{what} {{bar:40}} {{pos}}/{{len}} {{per_sec}} eta {{eta}}");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

/// Holds a sender to `throughput` records per second (none below zero).
struct Pacer {
    start: Instant,
    throughput: Option<f64>,
}

impl Pacer {
    fn new(start: Instant, throughput: f64) -> Pacer {
        Pacer { start, throughput: (throughput > 0.0).then_some(throughput) }
    }

    /// When record `index` is due, if that is later than now.
    fn wait_until(&self, index: u64) -> Option<Instant> {
        let throughput = self.throughput?;
        let due = self.start + Duration::from_secs_f64(index as f64 / throughput);
        (due > Instant::now()).then_some(due)
    }
}

/// What the delivery collector counted.
struct Delivered {
    acked: u64,
    failed: u64,
    first_error: Option<crate::Error>,
    latencies: Latencies,
}

/// A record's delivery and when it was sent.
type Sent = (DeliveryFuture, Instant);

/// Deliveries go to the collector in chunks of at most this many (a channel send per
/// record showed in the profile of `cairn bench produce`)...
const CHUNK_RECORDS_MAX: usize = 64;
/// ... and a chunk is handed over once its first record is this old, and before the sender
/// waits for the pacer, so the collector sees every record long before its answer can come.
const CHUNK_AGE_MAX: Duration = Duration::from_micros(200);

/// Awaits deliveries in the order they were sent and records each one's latency. The
/// records of one batch are answered together: the clock is read once per batch, when the
/// collector first finds it answered.
async fn collect_deliveries(
    mut deliveries: mpsc::Receiver<Vec<Sent>>,
    bar: Option<ProgressBar>,
) -> Delivered {
    let mut delivered =
        Delivered { acked: 0, failed: 0, first_error: None, latencies: Latencies::new() };
    let mut answered: Option<(BatchMarker, Instant)> = None;
    while let Some(chunk) = deliveries.recv().await {
        for (delivery, sent) in chunk {
            let known = answered.as_ref().filter(|(batch, _)| delivery.in_batch(batch));
            let result = match known {
                Some(&(_, at)) => delivery.wait().await.map(|_| at),
                None => {
                    let batch = delivery.batch_marker();
                    let result = delivery.wait().await;
                    let at = Instant::now();
                    answered = Some((batch, at));
                    result.map(|_| at)
                }
            };
            match result {
                Ok(at) => {
                    delivered.latencies.record(at.saturating_duration_since(sent));
                    delivered.acked += 1;
                }
                Err(error) => {
                    delivered.failed += 1;
                    delivered.first_error.get_or_insert(error);
                }
            }
            if let Some(bar) = &bar
                && (delivered.acked + delivered.failed).is_multiple_of(1024)
            {
                bar.set_position(delivered.acked + delivered.failed);
            }
        }
    }
    delivered
}

/// Sends `records` records of `value` (rewritten by `stamp` before each send) at the
/// pacer's rate, and hands the deliveries to the collector in chunks.
async fn send_all(
    producer: &Producer,
    record: ProducerRecord<'_>,
    records: u64,
    pacer: &Pacer,
    value: &mut [u8],
    stamp: impl Fn(&mut [u8], Instant),
    deliveries: &mpsc::Sender<Vec<Sent>>,
) -> Result<(), Failure> {
    let mut chunk: Vec<Sent> = Vec::with_capacity(CHUNK_RECORDS_MAX);
    let hand_over = |chunk: &mut Vec<Sent>| {
        let full = std::mem::replace(chunk, Vec::with_capacity(CHUNK_RECORDS_MAX));
        async move {
            if full.is_empty() {
                return Ok(());
            }
            deliveries
                .send(full)
                .await
                .map_err(|_| Failure::Runtime("the delivery collector stopped".to_string()))
        }
    };
    for index in 0..records {
        if let Some(due) = pacer.wait_until(index) {
            hand_over(&mut chunk).await?;
            tokio::time::sleep_until(due.into()).await;
        }
        let sent = Instant::now();
        stamp(value, sent);
        let delivery = producer.send(ProducerRecord { value: Some(value), ..record }).await?;
        chunk.push((delivery, sent));
        if chunk.len() == CHUNK_RECORDS_MAX || sent.duration_since(chunk[0].1) >= CHUNK_AGE_MAX {
            hand_over(&mut chunk).await?;
        }
    }
    hand_over(&mut chunk).await
}

fn rates(records: u64, bytes: u64, elapsed: Duration) -> (f64, f64) {
    let seconds = elapsed.as_secs_f64().max(1e-9);
    (records as f64 / seconds, bytes as f64 / seconds / 1e6)
}

async fn produce(args: BenchProduceArgs) -> Result<(), Failure> {
    if args.records == 0 {
        return Err(Failure::Usage("--records must be at least 1".to_string()));
    }
    let client = args.connect.connect().await?;
    let producer = Producer::new(&client, args.producer.config()).await?;
    let mut value = vec![b'x'; args.record_size];
    let mut record = ProducerRecord::new(&args.topic);
    record.partition = args.partition;
    let bar = progress(args.records, "produce");
    let (deliveries, receiver) = mpsc::channel(DELIVERY_CHUNKS_MAX);
    let collector = tokio::spawn(collect_deliveries(receiver, Some(bar.clone())));
    let start = Instant::now();
    let pacer = Pacer::new(start, args.throughput);
    let sent =
        send_all(&producer, record, args.records, &pacer, &mut value, |_, _| {}, &deliveries).await;
    drop(deliveries);
    producer.flush().await?;
    let delivered = collector
        .await
        .map_err(|e| Failure::Runtime(format!("the delivery collector failed: {e}")))?;
    let elapsed = start.elapsed();
    bar.finish_and_clear();
    producer.close().await?;
    sent?;
    let (records_per_s, mb_per_s) =
        rates(delivered.acked, delivered.acked * args.record_size as u64, elapsed);
    let report = json!({
        "command": "produce",
        "topic": args.topic,
        "partition": args.partition,
        "records": args.records,
        "record_size": args.record_size,
        "throughput_limit": (args.throughput > 0.0).then_some(args.throughput),
        "records_acked": delivered.acked,
        "records_failed": delivered.failed,
        "elapsed_s": elapsed.as_secs_f64(),
        "records_per_s": records_per_s,
        "mb_per_s": mb_per_s,
        "latency": delivered.latencies.json(),
        "producer": args.producer.json(),
    });
    let text = format!(
        "produce: {} records of {} bytes acknowledged in {:.2} s: {:.0} records/s, {:.2} MB/s; \
         send to ack {}",
        delivered.acked,
        args.record_size,
        elapsed.as_secs_f64(),
        records_per_s,
        mb_per_s,
        delivered.latencies.text()
    );
    print_report(args.output, &report, &text);
    match delivered.first_error {
        None => Ok(()),
        Some(error) => Err(Failure::Runtime(format!(
            "{} of {} records were not written; the first error: {error}",
            delivered.failed, args.records
        ))),
    }
}

fn print_report(output: Output, report: &Value, text: &str) {
    match output {
        Output::Json => println!("{report}"),
        Output::Text => println!("{text}"),
    }
}

/// Counts records once per offset: a record at or below a partition's last offset is a
/// duplicate (a bug in the consumer or the log), never a new record.
#[derive(Default)]
struct OffsetCounter {
    last: HashMap<i32, i64>,
    counted: u64,
    duplicates: u64,
    bytes: u64,
}

impl OffsetCounter {
    /// Whether the record is new.
    fn count(&mut self, partition: i32, offset: i64, bytes: usize) -> bool {
        let last = self.last.entry(partition).or_insert(-1);
        if offset <= *last {
            self.duplicates += 1;
            return false;
        }
        *last = offset;
        self.counted += 1;
        self.bytes += bytes as u64;
        true
    }
}

async fn assign(consumer: &mut Consumer, topic: &str, partition: Option<i32>) -> crate::Result<()> {
    match partition {
        Some(partition) => {
            consumer.assign(vec![TopicPartition::new(topic, partition)]);
            Ok(())
        }
        None => consumer.assign_topic(topic).await,
    }
}

async fn consume(args: BenchConsumeArgs) -> Result<(), Failure> {
    let client = args.connect.connect().await?;
    let config = ConsumerConfig {
        auto_offset_reset: OffsetReset::Earliest,
        partition_fetch_max_bytes: args.max_partition_fetch_bytes,
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(&client, config);
    assign(&mut consumer, &args.topic, args.partition).await?;
    let bar = progress(args.records, "consume");
    let start = Instant::now();
    let deadline = start + Duration::from_millis(args.timeout_ms);
    let mut counter = OffsetCounter::default();
    while counter.counted < args.records && Instant::now() < deadline {
        let wait = deadline.saturating_duration_since(Instant::now()).min(Duration::from_secs(1));
        for record in consumer.poll(wait).await? {
            if counter.counted >= args.records {
                break;
            }
            let bytes = record.value.as_ref().map_or(0, |v| v.len())
                + record.key.as_ref().map_or(0, |k| k.len());
            counter.count(record.partition, record.offset, bytes);
        }
        bar.set_position(counter.counted);
    }
    let elapsed = start.elapsed();
    bar.finish_and_clear();
    let (records_per_s, mb_per_s) = rates(counter.counted, counter.bytes, elapsed);
    let report = json!({
        "command": "consume",
        "topic": args.topic,
        "partition": args.partition,
        "records": args.records,
        "records_consumed": counter.counted,
        "duplicates": counter.duplicates,
        "bytes": counter.bytes,
        "elapsed_s": elapsed.as_secs_f64(),
        "records_per_s": records_per_s,
        "mb_per_s": mb_per_s,
    });
    let text = format!(
        "consume: {} records ({} bytes) in {:.2} s: {:.0} records/s, {:.2} MB/s",
        counter.counted,
        counter.bytes,
        elapsed.as_secs_f64(),
        records_per_s,
        mb_per_s
    );
    print_report(args.output, &report, &text);
    check_counts(counter.counted, counter.duplicates, args.records, args.timeout_ms)
}

fn check_counts(
    counted: u64,
    duplicates: u64,
    wanted: u64,
    timeout_ms: u64,
) -> Result<(), Failure> {
    if duplicates > 0 {
        return Err(Failure::Runtime(format!("{duplicates} records came twice (same offset)")));
    }
    if counted < wanted {
        return Err(Failure::Runtime(format!(
            "only {counted} of {wanted} records came within {timeout_ms} ms: \
             does the topic hold that many? (raise --timeout-ms for a slow cluster)"
        )));
    }
    Ok(())
}

/// What the `e2e` consumer counted.
struct Received {
    counter: OffsetCounter,
    foreign: u64,
    latencies: Latencies,
}

/// A consumer positioned at the end of every assigned partition, so that it reads only
/// what is produced from now on.
async fn consumer_at_end(
    client: &Client,
    topic: &str,
    partition: Option<i32>,
) -> Result<Consumer, Failure> {
    let config = ConsumerConfig {
        auto_offset_reset: OffsetReset::Latest,
        fetch_max_wait: Duration::from_millis(100),
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(client, config);
    assign(&mut consumer, topic, partition).await?;
    let assigned = consumer.assignment().to_vec();
    for tp in &assigned {
        consumer.seek(tp, SeekTo::End)?;
    }
    // A poll resolves the seeks (ListOffsets) before it fetches.
    let early = consumer.poll(Duration::ZERO).await?;
    if !early.is_empty() || assigned.iter().any(|tp| consumer.position(tp).is_none()) {
        return Err(Failure::Runtime(format!(
            "could not position a consumer at the end of {topic}: is another producer writing?"
        )));
    }
    Ok(consumer)
}

/// Reads until `records` of the bench's records came, or `deadline` (which the producer
/// pushes back while it sends) passes.
async fn receive(
    mut consumer: Consumer,
    records: u64,
    start: Instant,
    deadline: tokio::sync::watch::Receiver<Instant>,
    bar: ProgressBar,
) -> crate::Result<Received> {
    let mut received =
        Received { counter: OffsetCounter::default(), foreign: 0, latencies: Latencies::new() };
    while received.counter.counted < records && Instant::now() < *deadline.borrow() {
        for record in consumer.poll(Duration::from_millis(200)).await? {
            let now = Instant::now();
            let Some(sent) = record.value.as_deref().and_then(|value| e2e_sent(value, start))
            else {
                received.foreign += 1;
                continue;
            };
            let bytes = record.value.as_ref().map_or(0, |v| v.len());
            if received.counter.count(record.partition, record.offset, bytes) {
                received.latencies.record(now.saturating_duration_since(sent));
            }
        }
        bar.set_position(received.counter.counted);
    }
    Ok(received)
}

/// The send time an `e2e` value carries, or `None` for a value the bench did not write.
fn e2e_sent(value: &[u8], start: Instant) -> Option<Instant> {
    let header = value.get(..E2E_HEADER_BYTES)?;
    if header[..8] != E2E_MAGIC {
        return None;
    }
    let nanos = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
    Some(start + Duration::from_nanos(nanos))
}

fn e2e_stamp(value: &mut [u8], start: Instant, sent: Instant) {
    let nanos = u64::try_from(sent.saturating_duration_since(start).as_nanos()).unwrap_or(0);
    value[..8].copy_from_slice(&E2E_MAGIC);
    value[8..16].copy_from_slice(&nanos.to_le_bytes());
}

async fn e2e(args: BenchE2eArgs) -> Result<(), Failure> {
    if args.record_size < E2E_HEADER_BYTES {
        return Err(Failure::Usage(format!(
            "--record-size {} is too small: e2e records carry a {E2E_HEADER_BYTES}-byte send time",
            args.record_size
        )));
    }
    if args.throughput <= 0.0 || args.records == 0 {
        return Err(Failure::Usage("e2e needs --throughput above 0 and --records above 0".into()));
    }
    let client = args.connect.connect().await?;
    let producer = Producer::new(&client, args.producer.config()).await?;
    // The topic exists once the producer has its metadata; the consumer needs it too.
    let mut record = ProducerRecord::new(&args.topic);
    record.partition = args.partition;
    client.topic(&args.topic, true).await?;
    let consumer = consumer_at_end(&client, &args.topic, args.partition).await?;
    let start = Instant::now();
    let timeout = Duration::from_millis(args.timeout_ms);
    let expected = Duration::from_secs_f64(args.records as f64 / args.throughput);
    let (deadline_tx, deadline) = tokio::sync::watch::channel(start + expected + timeout);
    let bar = progress(args.records, "e2e");
    let reader = tokio::spawn(receive(consumer, args.records, start, deadline, bar.clone()));
    let (deliveries, receiver) = mpsc::channel(DELIVERY_CHUNKS_MAX);
    let collector = tokio::spawn(collect_deliveries(receiver, None));
    let pacer = Pacer::new(start, args.throughput);
    let mut value = vec![b'x'; args.record_size];
    let stamp = |value: &mut [u8], sent: Instant| e2e_stamp(value, start, sent);
    let sent =
        send_all(&producer, record, args.records, &pacer, &mut value, stamp, &deliveries).await;
    let _ = deadline_tx.send(Instant::now() + timeout);
    drop(deliveries);
    producer.flush().await?;
    let delivered = collector
        .await
        .map_err(|e| Failure::Runtime(format!("the delivery collector failed: {e}")))?;
    let received =
        reader.await.map_err(|e| Failure::Runtime(format!("the consumer failed: {e}")))??;
    let elapsed = start.elapsed();
    bar.finish_and_clear();
    producer.close().await?;
    sent?;
    let counted = received.counter.counted;
    let (records_per_s, mb_per_s) = rates(counted, received.counter.bytes, elapsed);
    let report = json!({
        "command": "e2e",
        "topic": args.topic,
        "partition": args.partition,
        "records": args.records,
        "record_size": args.record_size,
        "throughput_limit": args.throughput,
        "records_acked": delivered.acked,
        "records_failed": delivered.failed,
        "records_consumed": counted,
        "duplicates": received.counter.duplicates,
        "foreign_records": received.foreign,
        "elapsed_s": elapsed.as_secs_f64(),
        "records_per_s": records_per_s,
        "mb_per_s": mb_per_s,
        "latency": received.latencies.json(),
        "produce_latency": delivered.latencies.json(),
        "producer": args.producer.json(),
    });
    let text = format!(
        "e2e: {counted} records at {:.0} records/s; send to consume {}; send to ack {}",
        records_per_s,
        received.latencies.text(),
        delivered.latencies.text()
    );
    print_report(args.output, &report, &text);
    if let Some(error) = delivered.first_error {
        return Err(Failure::Runtime(format!(
            "{} of {} records were not written; the first error: {error}",
            delivered.failed, args.records
        )));
    }
    check_counts(counted, received.counter.duplicates, args.records, args.timeout_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_is_counted_once_per_partition() {
        let mut counter = OffsetCounter::default();
        assert!(counter.count(0, 0, 10));
        assert!(counter.count(0, 1, 10));
        assert!(counter.count(1, 0, 10));
        assert!(!counter.count(0, 1, 10));
        assert!(!counter.count(0, 0, 10));
        assert_eq!((counter.counted, counter.duplicates, counter.bytes), (3, 2, 30));
        assert!(check_counts(3, 2, 3, 1).is_err());
        assert!(check_counts(2, 0, 3, 1).is_err());
        assert!(check_counts(3, 0, 3, 1).is_ok());
    }

    #[test]
    fn an_e2e_stamp_reads_back_and_other_values_are_foreign() {
        let start = Instant::now();
        let sent = start + Duration::from_micros(1234);
        let mut value = vec![0u8; 32];
        e2e_stamp(&mut value, start, sent);
        assert_eq!(e2e_sent(&value, start), Some(sent));
        assert_eq!(e2e_sent(&value[..15], start), None);
        value[0] = b'X';
        assert_eq!(e2e_sent(&value, start), None);
    }

    #[test]
    fn percentiles_come_from_the_recorded_latencies() {
        let mut latencies = Latencies::new();
        for ms in 1..=1000u64 {
            latencies.record(Duration::from_millis(ms));
        }
        let p50 = latencies.ms(0.5);
        assert!((499.0..=501.0).contains(&p50), "p50 {p50}");
        let p99 = latencies.ms(0.99);
        assert!((989.0..=991.0).contains(&p99), "p99 {p99}");
        assert!((999.0..=1001.0).contains(&(latencies.histogram.max() as f64 / 1000.0)));
    }
}
