//! `cairn produce`: lines from stdin, one record each.

use std::collections::VecDeque;
use std::io::BufRead as _;
use std::time::Duration;

use clap::Args;

use super::{ConnectArgs, Failure};
use crate::{Acks, Compression, DeliveryFuture, Header, Producer, ProducerConfig, ProducerRecord};

const PRODUCE_EXAMPLES: &str = "\
Examples:
  printf 'one\\ntwo\\n' | cairn produce demo
  printf 'user-1:clicked\\nuser-2:left\\n' | cairn produce demo --key-separator :
  cairn produce demo --compression zstd --acks 1 < lines.txt

Each line is a record's value (or key and value with --key-separator); records with the same
key go to the same partition, with the Java client's partitioner.";

/// Deliveries awaited at once before the next line is read: bounds memory on long inputs.
const DELIVERIES_MAX: usize = 16_384;

/// `cairn produce`.
#[derive(Debug, Args)]
#[command(after_help = PRODUCE_EXAMPLES)]
pub struct ProduceArgs {
    /// The topic
    pub topic: String,
    /// Split each line at the first SEP into key and value (a line without it has no key)
    #[arg(long, short = 'K', value_name = "SEP")]
    pub key_separator: Option<String>,
    /// Write every record to this partition
    #[arg(long, short = 'p', value_name = "N")]
    pub partition: Option<i32>,
    /// A header added to every record, KEY=VALUE (repeatable)
    #[arg(long = "header", short = 'H', value_name = "KEY=VALUE")]
    pub headers: Vec<String>,
    /// Acknowledgements: 0, 1 or all
    #[arg(long, default_value = "all")]
    pub acks: Acks,
    /// Compression: none, gzip, snappy, lz4 or zstd
    #[arg(long, default_value = "none")]
    pub compression: Compression,
    /// How long a batch waits for more records, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 5)]
    pub linger_ms: u64,
    /// A batch's size bound in bytes, uncompressed (Kafka's batch.size)
    #[arg(long, value_name = "BYTES", default_value_t = 16_384)]
    pub batch_size: usize,
    /// Make the producer idempotent (needs --acks all)
    #[arg(long)]
    pub idempotence: bool,
    /// Where the cluster is.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

pub(super) async fn run(args: ProduceArgs) -> Result<(), Failure> {
    let headers = parse_headers(&args.headers)?;
    let headers: Vec<Header<'_>> =
        headers.iter().map(|(k, v)| Header { key: k, value: Some(v.as_bytes()) }).collect();
    let client = args.connect.connect().await?;
    let config = ProducerConfig {
        acks: args.acks,
        compression: args.compression,
        linger: Duration::from_millis(args.linger_ms),
        batch_bytes: args.batch_size,
        idempotence: args.idempotence,
        ..ProducerConfig::default()
    };
    let producer = Producer::new(&client, config).await?;
    let mut pending: VecDeque<DeliveryFuture> = VecDeque::new();
    let (mut sent, mut failed) = (0u64, 0u64);
    let mut first_error = None;
    let stdin = std::io::stdin();
    // Lines are read on this task: stdin is a pipe or a file, and the producer's sender
    // runs on the runtime's other worker meanwhile.
    for line in stdin.lock().lines() {
        let line = line.map_err(|e| Failure::Runtime(format!("cannot read stdin: {e}")))?;
        let (key, value) = match &args.key_separator {
            Some(separator) => match line.split_once(separator.as_str()) {
                Some((key, value)) => (Some(key.as_bytes()), value.as_bytes()),
                None => (None, line.as_bytes()),
            },
            None => (None, line.as_bytes()),
        };
        let mut record = ProducerRecord::new(&args.topic).value(value).headers(&headers);
        record.key = key;
        record.partition = args.partition;
        pending.push_back(producer.send(record).await?);
        sent += 1;
        if pending.len() >= DELIVERIES_MAX {
            let oldest = pending.pop_front().expect("not empty");
            settle(oldest, &mut failed, &mut first_error).await;
        }
    }
    producer.flush().await?;
    for delivery in pending {
        settle(delivery, &mut failed, &mut first_error).await;
    }
    producer.close().await?;
    match first_error {
        None => {
            eprintln!("Produced {sent} records to {}.", args.topic);
            Ok(())
        }
        Some(error) => Err(Failure::Runtime(format!(
            "{failed} of {sent} records were not written; the first error: {error}"
        ))),
    }
}

async fn settle(delivery: DeliveryFuture, failed: &mut u64, first: &mut Option<crate::Error>) {
    if let Err(error) = delivery.wait().await {
        *failed += 1;
        first.get_or_insert(error);
    }
}

fn parse_headers(headers: &[String]) -> Result<Vec<(String, String)>, Failure> {
    headers
        .iter()
        .map(|text| match text.split_once('=') {
            Some((key, value)) => Ok((key.to_string(), value.to_string())),
            None => Err(Failure::Usage(format!("--header {text:?} is not KEY=VALUE"))),
        })
        .collect()
}
