//! What every system's driver shares: the command line, the clock records carry, the latency
//! histogram, the round-robin split of records over streams and the one-line JSON report.
//!
//! The report's shape is fixed by the interface between this driver and the benchmark suite
//! (issue 10): the suite reads the last line of stdout and nothing else.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;

/// How long a run may go without any progress (no acknowledgement, no record read) before it
/// fails. A consume asked for more records than the streams hold ends with this error.
pub const PROGRESS_TIMEOUT: Duration = Duration::from_secs(10);

/// Records per read request when catching up or tailing.
pub const READ_BATCH_MAX: usize = 10_000;

/// Bytes per read request (NATS): six streams' batches of 10,000 1 KiB records at once came
/// near nats-server's 64 MiB limit on a client's pending output, past which it drops
/// messages to a slow consumer (seen as a consume stalling at 60,002 of 83,333).
pub const READ_BATCH_BYTES_MAX: usize = 4 << 20;

/// The largest latency the histogram holds, in microseconds (one minute); larger ones saturate.
const LATENCY_US_MAX: u64 = 60_000_000;

/// The systems this driver speaks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum System {
    /// NATS JetStream: file-backed streams, async publish with PubAck futures.
    Nats,
    /// Redis Streams: pipelined XADD, XRANGE/XREAD in large batches.
    Redis,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Nats => "nats",
            System::Redis => "redis",
        }
    }
}

/// The workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Op {
    /// Recreate the streams empty and send `--records` records as fast as they are acknowledged.
    Produce,
    /// Read `--records` records back from the start of the streams.
    Consume,
    /// Recreate the streams, send at `--rate` records/s while tailing them; latency end to end.
    E2e,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Produce => "produce",
            Op::Consume => "consume",
            Op::E2e => "e2e",
        }
    }
}

/// How the Redis producer talks to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RedisDriver {
    /// RESP written and parsed by hand over one TCP connection: a sliding window of XADDs.
    Resp,
    /// The `redis` crate's multiplexed connection with `--window` XADDs in flight.
    Crate,
}

/// `cairn-peerbench SYSTEM OP --server HOST:PORT[,...] --streams N --size BYTES ...`
#[derive(Parser, Debug, Clone)]
#[command(version, about = "Drives NATS JetStream or Redis Streams for Cairn's benchmark suite")]
pub struct Args {
    /// The system under test.
    pub system: System,
    /// The workload.
    pub op: Op,
    /// The servers, HOST:PORT separated by commas (NATS: any node of the cluster).
    #[arg(long, value_delimiter = ',', required = true)]
    pub server: Vec<String>,
    /// Streams standing for Kafka partitions; records go round-robin over them.
    #[arg(long, default_value_t = 1)]
    pub streams: usize,
    /// Bytes per record (the payload; e2e needs at least 8 for the send stamp).
    #[arg(long)]
    pub size: usize,
    /// Records to send or read.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: u64,
    /// e2e: records per second the producer sends at.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Records sent and not yet acknowledged, at most.
    #[arg(long, default_value_t = 1024)]
    pub window: usize,
    /// NATS: replicas of each stream (1 or 3 on a 3-node cluster).
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
    /// Stream name prefix: NATS streams PREFIX-I with subject PREFIX.I; Redis keys PREFIX-I.
    #[arg(long, default_value = "bench")]
    pub name: String,
    /// Redis: how the producer talks to the server (see README.md for the measurement).
    #[arg(long, value_enum, default_value_t = RedisDriver::Resp)]
    pub redis_driver: RedisDriver,
}

impl Args {
    /// Rejects combinations that cannot run, with the flag to fix.
    pub fn validate(&self) -> Result<()> {
        if self.streams == 0 {
            bail!("--streams must be at least 1");
        }
        if self.size == 0 {
            bail!("--size must be at least 1 byte");
        }
        if self.records == 0 {
            bail!("--records must be at least 1");
        }
        if self.window == 0 {
            bail!("--window must be at least 1");
        }
        if self.replicas == 0 {
            bail!("--replicas must be at least 1");
        }
        match (self.op, self.rate) {
            (Op::E2e, None) => bail!("e2e needs --rate RECORDS_PER_S"),
            (Op::E2e, Some(rate)) if !(rate.is_finite() && rate > 0.0) => {
                bail!("--rate must be a positive number, got {rate}")
            }
            (Op::E2e, Some(_)) if self.size < STAMP_BYTES => {
                bail!("e2e needs --size of at least {STAMP_BYTES} bytes for the send stamp")
            }
            (Op::Produce | Op::Consume, Some(_)) => bail!("--rate is for e2e only"),
            _ => {}
        }
        Ok(())
    }

    /// The name of stream `index` (a NATS stream or a Redis key).
    pub fn stream_name(&self, index: usize) -> String {
        format!("{}-{index}", self.name)
    }

    /// The records stream `index` receives when `--records` go round-robin over the streams.
    pub fn records_of_stream(&self, index: usize) -> u64 {
        let streams = self.streams as u64;
        let index = index as u64;
        self.records / streams + u64::from(index < self.records % streams)
    }
}

/// Bytes at the start of an e2e record holding its send stamp.
pub const STAMP_BYTES: usize = 8;

/// Nanoseconds on the process's monotonic clock; producer and consumer share its origin.
pub fn now_ns() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    u64::try_from(origin.elapsed().as_nanos()).expect("a run lasts less than 584 years")
}

/// Reads the send stamp of an e2e record.
pub fn read_stamp(payload: &[u8]) -> Result<u64> {
    let Some(head) = payload.get(..STAMP_BYTES) else {
        bail!("a record of {} bytes has no send stamp", payload.len());
    };
    Ok(u64::from_le_bytes(head.try_into().expect("8 bytes")))
}

/// Latencies in microseconds.
pub struct Latency {
    histogram: Histogram<u64>,
}

impl Latency {
    pub fn new() -> Latency {
        let histogram = Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid bounds");
        Latency { histogram }
    }

    pub fn record(&mut self, elapsed: Duration) {
        self.record_ns(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
    }

    pub fn record_ns(&mut self, elapsed_ns: u64) {
        let us = (elapsed_ns / 1_000).clamp(1, LATENCY_US_MAX);
        self.histogram.record(us).expect("clamped into the histogram's bounds");
    }

    /// Adds another reader's latencies into this one.
    pub fn add(&mut self, other: &Latency) {
        self.histogram.add(&other.histogram).expect("histograms of the same bounds");
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    fn json(&self) -> serde_json::Value {
        let h = &self.histogram;
        serde_json::json!({
            "p50": h.value_at_quantile(0.50),
            "p99": h.value_at_quantile(0.99),
            "p999": h.value_at_quantile(0.999),
            "max": h.max(),
        })
    }
}

/// What a run measured.
pub struct Outcome {
    pub records: u64,
    pub elapsed: Duration,
    pub latency: Option<Latency>,
}

/// The one JSON object the suite reads from the last line of stdout.
pub fn report(args: &Args, outcome: &Outcome) -> serde_json::Value {
    let secs = outcome.elapsed.as_secs_f64();
    let records_per_s = outcome.records as f64 / secs;
    let mb_per_s = outcome.records as f64 * args.size as f64 / secs / 1e6;
    serde_json::json!({
        "system": args.system.name(),
        "op": args.op.name(),
        "streams": args.streams,
        "size": args.size,
        "records": outcome.records,
        "secs": round(secs, 3),
        "records_per_s": round(records_per_s, 1),
        "mb_per_s": round(mb_per_s, 2),
        "rate_asked": args.rate,
        "latency_us": outcome.latency.as_ref().map(Latency::json),
    })
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// Sends per tick of a paced producer: how many of `records` are due `elapsed` after the start
/// at `rate` records per second.
pub fn records_due(rate: Option<f64>, records: u64, elapsed: Duration) -> u64 {
    match rate {
        None => records,
        Some(rate) => ((elapsed.as_secs_f64() * rate) as u64).min(records),
    }
}

/// The pacing tick: a paced producer never bursts more than a tick's worth of records.
pub const PACE_TICK: Duration = Duration::from_millis(1);

/// Writes progress to stderr about once a second.
pub struct Progress {
    what: &'static str,
    total: u64,
    last: Instant,
}

impl Progress {
    pub fn new(what: &'static str, total: u64) -> Progress {
        Progress { what, total, last: Instant::now() }
    }

    pub fn update(&mut self, done: u64) {
        if self.last.elapsed() >= Duration::from_secs(1) {
            self.last = Instant::now();
            eprintln!("{}: {done}/{}", self.what, self.total);
        }
    }
}

/// Hands out record payloads without an allocation per record: a produce reuses one `Bytes`;
/// an e2e run stamps each record and cuts it from a shared chunk.
pub struct Payloads {
    size: usize,
    stamped: bool,
    fixed: bytes::Bytes,
    chunk: bytes::BytesMut,
}

/// Records cut from one allocation when each needs its own stamp.
const STAMPED_PER_CHUNK: usize = 1024;

impl Payloads {
    pub fn new(size: usize, stamped: bool) -> Payloads {
        assert!(size > 0);
        assert!(!stamped || size >= STAMP_BYTES);
        // A fixed pattern rather than zeros, so no layer on the way can shortcut empty data.
        let fixed: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        Payloads { size, stamped, fixed: fixed.into(), chunk: bytes::BytesMut::new() }
    }

    pub fn next(&mut self) -> bytes::Bytes {
        if !self.stamped {
            return self.fixed.clone();
        }
        if self.chunk.capacity() < self.size {
            self.chunk = bytes::BytesMut::with_capacity(self.size * STAMPED_PER_CHUNK);
        }
        self.chunk.extend_from_slice(&now_ns().to_le_bytes());
        self.chunk.extend_from_slice(&self.fixed[STAMP_BYTES..]);
        let record = self.chunk.split_to(self.size).freeze();
        debug_assert_eq!(record.len(), self.size);
        record
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(records: u64, streams: usize) -> Args {
        let line = format!(
            "cairn-peerbench nats produce --server 127.0.0.1:4222 --size 100 --records {records} --streams {streams}"
        );
        Args::parse_from(line.split(' '))
    }

    #[test]
    fn round_robin_split_adds_up() {
        for (records, streams) in [(1, 1), (10, 3), (1_000_000, 6), (5, 6)] {
            let args = args(records, streams);
            let split: Vec<u64> = (0..streams).map(|i| args.records_of_stream(i)).collect();
            assert_eq!(split.iter().sum::<u64>(), records);
            assert!(split.windows(2).all(|w| w[0] >= w[1] && w[0] - w[1] <= 1), "{split:?}");
        }
    }

    #[test]
    fn paced_due_never_exceeds_rate_or_records() {
        assert_eq!(records_due(Some(10_000.0), 1_000_000, Duration::from_millis(150)), 1_500);
        assert_eq!(records_due(Some(10_000.0), 100, Duration::from_secs(5)), 100);
        assert_eq!(records_due(None, 7, Duration::ZERO), 7);
    }

    #[test]
    fn validate_refuses_e2e_without_rate_or_stamp_room() {
        let mut a = args(10, 1);
        a.op = Op::E2e;
        assert!(a.validate().is_err());
        a.rate = Some(100.0);
        assert!(a.validate().is_ok());
        a.size = 4;
        assert!(a.validate().is_err());
    }

    #[test]
    fn stamp_round_trips() {
        let stamp = now_ns();
        let mut record = vec![0u8; 100];
        record[..8].copy_from_slice(&stamp.to_le_bytes());
        assert_eq!(read_stamp(&record).unwrap(), stamp);
        assert!(read_stamp(&record[..7]).is_err());
    }
}
