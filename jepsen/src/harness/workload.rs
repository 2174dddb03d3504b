//! The workload: producers, assigned consumers and group consumers driving the cluster
//! through cairn-client, every operation recorded as design §9 says.
//!
//! - Producers send values unique across the run (one counter) with acks=all to a
//!   partition they pick, one record at a time and without the client's own retries, so
//!   every `send` is one attempt whose outcome the history can state: `ok` with its offset,
//!   `fail` only for errors a broker gives before it appends (see [`send_failed_for_sure`]),
//!   `info` for everything else (a timeout, a lost connection, an error that may come after
//!   the append).
//! - Assigned consumers read a fixed set of partitions and commit their positions as a
//!   simple consumer of a group of their own; group consumers subscribe to the topic in one
//!   group, poll, commit and read their committed offsets (`committed`).
//! - A consumer's position moves without a read only where the history says so: the
//!   consumer runs with `auto.offset.reset=none`, and a partition without a position is
//!   sought to its beginning and recorded as an `assign`; a poll during which the group
//!   rebalanced ends `info` (it may have moved positions without saying what it read) and
//!   is followed by an `assign` of the new partitions.
//! - A client that hits an error it cannot recover from records `crash` and starts over
//!   with a new connection.
//! - At the end, [`drain`] reads every partition from its beginning to its end with
//!   `{"final": true}` polls, so `unseen` can be checked.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_client::{
    Acks as ClientAcks, Client, ClientConfig, Consumer, ConsumerConfig, ConsumerRecord, Error,
    GroupConfig, OffsetReset, Producer, ProducerConfig, ProducerRecord, SeekTo,
    TopicPartition as ClientTp,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::watch;

use crate::history::{
    F, GroupOffset, History, OpType, Poll, Process, Record, Send, TopicPartition, Value,
};

/// How long one operation may take before it ends `info`.
pub const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a poll waits for records.
const POLL_WAIT: Duration = Duration::from_millis(200);
/// A client request's timeout (below [`OP_TIMEOUT`], so a request's own timeout shows).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The group the group consumers share.
pub const GROUP: &str = "jepsen-group";

/// The history being recorded, shared by every client task.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    history: Mutex<History>,
}

impl Recorder {
    /// An empty history whose times count from now.
    pub fn new() -> Recorder {
        Recorder { start: Instant::now(), history: Mutex::new(History::new()) }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Records an invocation.
    pub fn invoke(&self, process: Process, f: F, value: Value) {
        let time = self.now();
        self.history.lock().expect("not poisoned").invoke(time, process, f, value);
    }

    /// Records a completion.
    pub fn complete(&self, process: Process, kind: OpType, f: F, value: Value) {
        let time = self.now();
        self.history.lock().expect("not poisoned").complete(time, process, kind, f, value);
    }

    /// Records that a client restarted and lost its state.
    pub fn crash(&self, process: Process) {
        let time = self.now();
        let mut history = self.history.lock().expect("not poisoned");
        history.push(time, process, OpType::Info, F::Crash, Value::Null);
    }

    /// The history recorded so far.
    pub fn take(&self) -> History {
        std::mem::take(&mut *self.history.lock().expect("not poisoned"))
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

/// What every client task shares.
#[derive(Debug, Clone)]
pub struct Context {
    /// The bootstrap servers (the client links).
    pub bootstrap: String,
    /// The topic.
    pub topic: String,
    /// Its partition count.
    pub partitions: i32,
    /// The history.
    pub recorder: Arc<Recorder>,
    /// The next value to send (values are unique across the run).
    pub next_value: Arc<AtomicI64>,
    /// Turns true when the workload must stop.
    pub stop: watch::Receiver<bool>,
}

impl Context {
    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    async fn connect(&self) -> Option<Client> {
        let mut config = ClientConfig::new(&self.bootstrap);
        config.client_id = "cairn-jepsen".into();
        config.request_timeout = REQUEST_TIMEOUT;
        config.metadata_max_age = Duration::from_secs(2);
        config.retry_backoff = Duration::from_millis(50);
        loop {
            if self.stopped() {
                return None;
            }
            match tokio::time::timeout(OP_TIMEOUT, Client::connect(config.clone())).await {
                Ok(Ok(client)) => return Some(client),
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    fn tp(&self, partition: i32) -> TopicPartition {
        TopicPartition { topic: self.topic.clone(), partition }
    }
}

/// Whether a send that ended with `error` certainly did not append its record. Only
/// errors a broker gives before it appends qualify: a timeout, a lost connection,
/// `NOT_ENOUGH_REPLICAS_AFTER_APPEND`, `REQUEST_TIMED_OUT`, a leader that lost its
/// leadership while waiting for the ISR (`NOT_LEADER_OR_FOLLOWER` can come after the
/// append) or an unknown server error all leave the outcome unknown.
pub fn send_failed_for_sure(error: &Error) -> bool {
    match error {
        // UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE, NOT_ENOUGH_REPLICAS (checked
        // before the append, KIP-1), MESSAGE_TOO_LARGE, CORRUPT_MESSAGE,
        // RECORD_LIST_TOO_LARGE, INVALID_REQUIRED_ACKS, INVALID_RECORD.
        Error::Kafka { code, .. } => matches!(code.0, 2 | 3 | 5 | 10 | 18 | 19 | 21 | 87),
        Error::RecordTooLarge { .. } | Error::UnknownTopic(_) | Error::Config(_) => true,
        _ => false,
    }
}

/// Whether a commit that ended with `error` certainly did not store its offsets: the
/// coordinator refuses these before it appends. NOT_COORDINATOR and
/// COORDINATOR_NOT_AVAILABLE are not among them: they also answer an append in flight when
/// the coordinator resigns or the append fails (as Kafka's do), and the record may be in
/// the log all the same, loaded by the next coordinator (the simulator's workload says the
/// same, `commit_refused_before_append`).
fn commit_failed_for_sure(error: &Error) -> bool {
    // COORDINATOR_LOAD_IN_PROGRESS, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID,
    // REBALANCE_IN_PROGRESS.
    matches!(error, Error::Kafka { code, .. } if matches!(code.0, 14 | 22 | 25 | 27))
}

/// Whether the client must start over after `error`.
fn unrecoverable(error: &Error) -> bool {
    matches!(error, Error::Closed | Error::Protocol(_) | Error::CorruptBatch { .. })
}

/// One producer: sends at `interval` until stopped.
pub async fn producer(ctx: Context, process: Process, seed: u64, interval: Duration) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let config = ProducerConfig {
        acks: ClientAcks::All,
        linger: Duration::ZERO,
        retries: 0,
        idempotence: false,
        delivery_timeout: OP_TIMEOUT,
        ack_timeout: REQUEST_TIMEOUT,
        ..ProducerConfig::default()
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    'client: while let Some(client) = ctx.connect().await {
        let Ok(producer) = Producer::new(&client, config.clone()).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        while !ctx.stopped() {
            ticker.tick().await;
            let partition = rng.random_range(0..ctx.partitions);
            let value = ctx.next_value.fetch_add(1, Ordering::Relaxed);
            let send = Send::new(ctx.topic.clone(), partition, value);
            ctx.recorder.invoke(process, F::Send, Value::Send(send.clone()));
            let text = value.to_string();
            let record =
                ProducerRecord::new(&ctx.topic).partition(partition).value(text.as_bytes());
            let outcome = tokio::time::timeout(OP_TIMEOUT, async {
                producer.send(record).await?.wait().await
            })
            .await;
            let (kind, value, restart) = match outcome {
                Ok(Ok(metadata)) => (OpType::Ok, Value::Send(send.at(metadata.offset)), false),
                Ok(Err(error)) if send_failed_for_sure(&error) => {
                    (OpType::Fail, Value::Send(send), false)
                }
                Ok(Err(error)) => (OpType::Info, Value::Send(send), unrecoverable(&error)),
                Err(_) => (OpType::Info, Value::Send(send), false),
            };
            ctx.recorder.complete(process, kind, F::Send, value);
            if restart {
                ctx.recorder.crash(process);
                continue 'client;
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), producer.close()).await;
        return;
    }
}

/// How a consumer task reads: partitions assigned by hand, or a group subscription.
#[derive(Debug, Clone)]
pub enum Reading {
    /// These partitions, committing as a simple consumer of `group`.
    Assign {
        /// The partitions.
        partitions: Vec<i32>,
        /// The group its commits go to.
        group: String,
    },
    /// The topic, in [`GROUP`].
    Subscribe,
}

impl Reading {
    fn group(&self) -> &str {
        match self {
            Reading::Assign { group, .. } => group,
            Reading::Subscribe => GROUP,
        }
    }
}

/// One consumer: polls at `interval`, commits and reads committed offsets now and then.
pub async fn consumer(
    ctx: Context,
    process: Process,
    seed: u64,
    interval: Duration,
    reading: Reading,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while let Some(client) = ctx.connect().await {
        let mut group = GroupConfig::new(reading.group());
        group.session_timeout = Duration::from_secs(6);
        group.heartbeat_interval = Duration::from_millis(500);
        group.rebalance_timeout = Duration::from_secs(10);
        // Every commit must be in the history: the client's own commit before a revoke would
        // set a committed offset that no recorded `commit` wrote, and `committed` reading it
        // back would look like a register read of a value never written.
        group.commit_on_revoke = false;
        let config = ConsumerConfig {
            auto_offset_reset: OffsetReset::None,
            fetch_max_wait: Duration::from_millis(100),
            group: Some(group),
            ..ConsumerConfig::default()
        };
        let mut consumer = Consumer::new(&client, config);
        let rebalanced = Arc::new(AtomicBool::new(false));
        match &reading {
            Reading::Assign { partitions, .. } => {
                let tps: Vec<TopicPartition> = partitions.iter().map(|&p| ctx.tp(p)).collect();
                ctx.recorder.invoke(process, F::Assign, Value::Partitions(tps.clone()));
                consumer.assign(partitions.iter().map(|&p| ClientTp::new(&ctx.topic, p)).collect());
                ctx.recorder.complete(process, OpType::Ok, F::Assign, Value::Partitions(tps));
            }
            Reading::Subscribe => {
                let topics = Value::Topics(vec![ctx.topic.clone()]);
                ctx.recorder.invoke(process, F::Subscribe, topics.clone());
                let flag = Arc::clone(&rebalanced);
                consumer
                    .set_rebalance_listener(Box::new(move |_| flag.store(true, Ordering::Release)));
                let outcome = consumer.subscribe(&[&ctx.topic]);
                let kind = if outcome.is_ok() { OpType::Ok } else { OpType::Fail };
                ctx.recorder.complete(process, kind, F::Subscribe, topics);
            }
        }
        let mut reader =
            Reader { ctx: &ctx, process, consumer, rebalanced, group: reading.group() };
        let restart = reader.run(&mut rng, &mut ticker).await;
        if !restart {
            let _ = tokio::time::timeout(Duration::from_secs(2), reader.consumer.close()).await;
            return;
        }
        ctx.recorder.crash(process);
    }
}

struct Reader<'a> {
    ctx: &'a Context,
    process: Process,
    consumer: Consumer,
    rebalanced: Arc<AtomicBool>,
    group: &'a str,
}

impl Reader<'_> {
    /// Polls until stopped (`false`) or until the client must start over (`true`).
    async fn run(&mut self, rng: &mut ChaCha8Rng, ticker: &mut tokio::time::Interval) -> bool {
        while !self.ctx.stopped() {
            ticker.tick().await;
            let restart = match rng.random_range(0..10) {
                0..=6 => self.poll().await,
                7 | 8 => self.commit().await,
                _ => self.committed().await,
            };
            if restart {
                return true;
            }
        }
        false
    }

    async fn poll(&mut self) -> bool {
        let (ctx, process) = (self.ctx, self.process);
        self.rebalanced.store(false, Ordering::Release);
        ctx.recorder.invoke(process, F::Poll, Value::Null);
        let outcome = tokio::time::timeout(OP_TIMEOUT, self.consumer.poll(POLL_WAIT)).await;
        let rebalanced = self.rebalanced.swap(false, Ordering::AcqRel);
        match outcome {
            Ok(Ok(records)) if !rebalanced => {
                let value = Value::Poll(Poll { is_final: false, records: records_of(&records) });
                ctx.recorder.complete(process, OpType::Ok, F::Poll, value);
                false
            }
            Ok(Ok(_)) => {
                ctx.recorder.complete(process, OpType::Info, F::Poll, Value::Null);
                self.record_assignment();
                false
            }
            Ok(Err(Error::NoOffset { .. })) => {
                ctx.recorder.complete(process, OpType::Info, F::Poll, Value::Null);
                self.seek_unplaced_to_beginning();
                false
            }
            Ok(Err(error)) => {
                ctx.recorder.complete(process, OpType::Info, F::Poll, Value::Null);
                unrecoverable(&error)
            }
            Err(_) => {
                ctx.recorder.complete(process, OpType::Info, F::Poll, Value::Null);
                false
            }
        }
    }

    /// Records the consumer's current assignment as an `assign`: its positions moved.
    fn record_assignment(&self) {
        let tps: Vec<TopicPartition> = (self.consumer.assignment().iter())
            .map(|tp| TopicPartition { topic: tp.topic.to_string(), partition: tp.partition })
            .collect();
        let value = Value::Partitions(tps);
        self.ctx.recorder.invoke(self.process, F::Assign, value.clone());
        self.ctx.recorder.complete(self.process, OpType::Ok, F::Assign, value);
    }

    /// `auto.offset.reset=earliest`, done by hand so the history hears of it.
    fn seek_unplaced_to_beginning(&mut self) {
        let unplaced: Vec<ClientTp> = (self.consumer.assignment().iter())
            .filter(|tp| self.consumer.position(tp).is_none())
            .cloned()
            .collect();
        for tp in &unplaced {
            let _ = self.consumer.seek(tp, SeekTo::Beginning);
        }
        self.record_assignment();
    }

    async fn commit(&mut self) -> bool {
        let (ctx, process) = (self.ctx, self.process);
        let offsets: Vec<(ClientTp, i64)> = (self.consumer.assignment().iter())
            .filter_map(|tp| self.consumer.position(tp).map(|offset| (tp.clone(), offset)))
            .collect();
        if offsets.is_empty() {
            return false;
        }
        let entries: Vec<GroupOffset> = (offsets.iter())
            .map(|(tp, offset)| {
                GroupOffset::new(self.group, &*tp.topic, tp.partition, Some(*offset))
            })
            .collect();
        ctx.recorder.invoke(process, F::Commit, Value::Offsets(entries.clone()));
        let outcome =
            tokio::time::timeout(OP_TIMEOUT, self.consumer.commit_offsets_sync(&offsets)).await;
        let (kind, restart) = match outcome {
            Ok(Ok(())) => (OpType::Ok, false),
            Ok(Err(error)) if commit_failed_for_sure(&error) => (OpType::Fail, false),
            Ok(Err(error)) => (OpType::Info, unrecoverable(&error)),
            Err(_) => (OpType::Info, false),
        };
        ctx.recorder.complete(process, kind, F::Commit, Value::Offsets(entries));
        restart
    }

    async fn committed(&mut self) -> bool {
        let (ctx, process) = (self.ctx, self.process);
        let partitions: Vec<ClientTp> = self.consumer.assignment().to_vec();
        if partitions.is_empty() {
            return false;
        }
        ctx.recorder.invoke(process, F::Committed, Value::Null);
        let outcome = tokio::time::timeout(OP_TIMEOUT, self.consumer.committed(&partitions)).await;
        match outcome {
            Ok(Ok(found)) => {
                let entries = (found.iter())
                    .map(|(tp, offset)| {
                        GroupOffset::new(self.group, &*tp.topic, tp.partition, *offset)
                    })
                    .collect();
                ctx.recorder.complete(process, OpType::Ok, F::Committed, Value::Offsets(entries));
                false
            }
            // A read that returned nothing constrains nothing: it certainly did not happen
            // as far as the history is concerned.
            Ok(Err(error)) => {
                ctx.recorder.complete(process, OpType::Fail, F::Committed, Value::Null);
                unrecoverable(&error)
            }
            Err(_) => {
                ctx.recorder.complete(process, OpType::Fail, F::Committed, Value::Null);
                false
            }
        }
    }
}

/// The records of a poll as the history writes them. A value that is not a number this
/// harness sent is recorded as -1, which no producer sends: `phantom-read` names it.
fn records_of(records: &[ConsumerRecord]) -> Vec<Record> {
    (records.iter())
        .map(|r| {
            let value = (r.value.as_deref())
                .and_then(|bytes| std::str::from_utf8(bytes).ok())
                .and_then(|text| text.parse::<i64>().ok())
                .unwrap_or(-1);
            Record::new(&*r.topic, r.partition, r.offset, value)
        })
        .collect()
}

/// What the final drain read.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Drain {
    /// Whether every partition was read to the end offset measured before the drain.
    pub complete: bool,
    /// The end offsets the drain read up to, by partition.
    pub ends: Vec<(i32, i64)>,
    /// Records read.
    pub records: u64,
    /// Final polls made.
    pub polls: u64,
    /// Why it is incomplete, if it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Reads every partition from its beginning to its end with `{"final": true}` polls, as
/// process `process`, within `limit`.
pub async fn drain(ctx: &Context, process: Process, limit: Duration) -> Drain {
    let deadline = Instant::now() + limit;
    let mut drain =
        Drain { complete: false, ends: Vec::new(), records: 0, polls: 0, problem: None };
    let mut config = ClientConfig::new(&ctx.bootstrap);
    config.client_id = "cairn-jepsen-drain".into();
    config.request_timeout = REQUEST_TIMEOUT;
    config.metadata_max_age = Duration::from_secs(2);
    let client = loop {
        match tokio::time::timeout(OP_TIMEOUT, Client::connect(config.clone())).await {
            Ok(Ok(client)) => break client,
            _ if Instant::now() > deadline => {
                drain.problem = Some("no node answered the drain's bootstrap".into());
                return drain;
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let admin = cairn_client::Admin::new(&client);
    let ends: HashMap<i32, i64> = loop {
        match tokio::time::timeout(OP_TIMEOUT, admin.offsets(&ctx.topic)).await {
            Ok(Ok(rows)) => break rows.into_iter().map(|(p, _, end)| (p, end)).collect(),
            _ if Instant::now() > deadline => {
                drain.problem = Some("ListOffsets of the topic kept failing".into());
                return drain;
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let mut sorted: Vec<(i32, i64)> = ends.iter().map(|(&p, &e)| (p, e)).collect();
    sorted.sort_unstable();
    drain.ends = sorted;
    let config = ConsumerConfig {
        auto_offset_reset: OffsetReset::Earliest,
        fetch_max_wait: Duration::from_millis(100),
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(&client, config);
    let tps: Vec<TopicPartition> = (0..ctx.partitions).map(|p| ctx.tp(p)).collect();
    ctx.recorder.invoke(process, F::Assign, Value::Partitions(tps.clone()));
    consumer.assign((0..ctx.partitions).map(|p| ClientTp::new(&ctx.topic, p)).collect());
    for p in 0..ctx.partitions {
        let _ = consumer.seek(&ClientTp::new(&ctx.topic, p), SeekTo::Beginning);
    }
    ctx.recorder.complete(process, OpType::Ok, F::Assign, Value::Partitions(tps));
    let done = |consumer: &Consumer| {
        (0..ctx.partitions).all(|p| {
            let end = ends.get(&p).copied().unwrap_or(0);
            consumer.position(&ClientTp::new(&ctx.topic, p)).is_some_and(|at| at >= end)
        })
    };
    while !done(&consumer) {
        if Instant::now() > deadline {
            drain.problem = Some(format!("not every partition was read to its end in {limit:?}"));
            return drain;
        }
        let invoke = Value::Poll(Poll { is_final: true, records: Vec::new() });
        ctx.recorder.invoke(process, F::Poll, invoke);
        drain.polls += 1;
        match tokio::time::timeout(OP_TIMEOUT, consumer.poll(POLL_WAIT)).await {
            Ok(Ok(records)) => {
                drain.records += records.len() as u64;
                let value = Value::Poll(Poll { is_final: true, records: records_of(&records) });
                ctx.recorder.complete(process, OpType::Ok, F::Poll, value);
            }
            _ => {
                // Positions may have moved: a drain that cannot say what it read starts
                // over from the beginning, so the final polls still cover every offset.
                ctx.recorder.complete(process, OpType::Info, F::Poll, Value::Null);
                let tps: Vec<TopicPartition> = (0..ctx.partitions).map(|p| ctx.tp(p)).collect();
                ctx.recorder.invoke(process, F::Assign, Value::Partitions(tps.clone()));
                for p in 0..ctx.partitions {
                    let _ = consumer.seek(&ClientTp::new(&ctx.topic, p), SeekTo::Beginning);
                }
                ctx.recorder.complete(process, OpType::Ok, F::Assign, Value::Partitions(tps));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    drain.complete = true;
    drain
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_client::KafkaCode;

    fn kafka(code: i16) -> Error {
        Error::Kafka { code: KafkaCode(code), context: String::new() }
    }

    #[test]
    fn a_commit_answered_after_its_append_may_have_stored_its_offsets() {
        // NOT_COORDINATOR and COORDINATOR_NOT_AVAILABLE answer appends in flight too.
        assert!(!commit_failed_for_sure(&kafka(16)));
        assert!(!commit_failed_for_sure(&kafka(15)));
        assert!(!commit_failed_for_sure(&Error::Closed));
        // Refused before any append.
        for code in [14, 22, 25, 27] {
            assert!(commit_failed_for_sure(&kafka(code)), "code {code}");
        }
    }
}
