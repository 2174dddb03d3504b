//! `cairn consume`: records of a topic to stdout.

use std::io::Write as _;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use super::{ConnectArgs, Failure, Output, json_bytes};
use crate::{
    Assignor, Consumer, ConsumerConfig, ConsumerRecord, GroupConfig, OffsetReset, TopicPartition,
};

const CONSUME_EXAMPLES: &str = "\
Examples:
  cairn consume demo --from-beginning
  cairn consume demo --from-beginning --count 10 --output json
  cairn consume demo --partition 2 --from-beginning --idle-timeout-ms 2000
  cairn consume demo --group billing --count 100
  cairn consume demo --group billing --assignor cooperative-sticky

With --group the command joins the consumer group, reads the group's share of the topic from
where the group committed (or as --from-beginning says when it has not), and commits what it
printed. --assignor (repeatable, in preference order) is the group's
partition.assignment.strategy: range (eager rebalances) or cooperative-sticky (incremental:
partitions that stay are kept through a rebalance). The default offers range, then
cooperative-sticky; `cairn group describe` shows the one the group agreed on.

Text output is one value per line (key, separator, value with --key-separator). JSON output is
one object per line: topic, partition, offset, timestamp, key, value, headers. A key or value
that is not UTF-8 is printed in JSON as an array of its bytes.";

/// `cairn consume`.
#[derive(Debug, Args)]
#[command(after_help = CONSUME_EXAMPLES)]
pub struct ConsumeArgs {
    /// The topic
    pub topic: String,
    /// Start at each partition's first record (else only new records are read)
    #[arg(long)]
    pub from_beginning: bool,
    /// Stop after N records
    #[arg(long, short = 'n', value_name = "N")]
    pub count: Option<u64>,
    /// Read only this partition
    #[arg(long, short = 'p', value_name = "N", conflicts_with = "group")]
    pub partition: Option<i32>,
    /// Read as a member of this consumer group, and commit what was printed
    #[arg(long, short = 'g', value_name = "GROUP")]
    pub group: Option<String>,
    /// With --group, offer this assignor (range or cooperative-sticky); repeat the flag for a
    /// list in preference order
    #[arg(long, value_name = "NAME", requires = "group", value_parser = parse_assignor)]
    pub assignor: Vec<Assignor>,
    /// Stop when no record came for this long (milliseconds)
    #[arg(long, value_name = "MS")]
    pub idle_timeout_ms: Option<u64>,
    /// In text output, print the key before the value, separated by SEP
    #[arg(long, short = 'K', value_name = "SEP")]
    pub key_separator: Option<String>,
    /// text or json
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
    /// Where the cluster is.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

pub(super) async fn run(args: ConsumeArgs) -> Result<(), Failure> {
    let client = args.connect.connect().await?;
    let reset = if args.from_beginning { OffsetReset::Earliest } else { OffsetReset::Latest };
    let group = args.group.as_deref().map(|id| {
        let mut group = GroupConfig::new(id);
        if !args.assignor.is_empty() {
            group.assignors.clone_from(&args.assignor);
        }
        group
    });
    let config = ConsumerConfig { auto_offset_reset: reset, group, ..ConsumerConfig::default() };
    let mut consumer = Consumer::new(&client, config);
    match (args.partition, &args.group) {
        (_, Some(_)) => consumer.subscribe(&[&args.topic])?,
        (Some(partition), None) => {
            consumer.assign(vec![TopicPartition::new(&args.topic, partition)]);
        }
        (None, None) => consumer.assign_topic(&args.topic).await?,
    }
    let result = print_records(&args, &mut consumer).await;
    if args.group.is_some() {
        consumer.close().await?;
    }
    result
}

async fn print_records(args: &ConsumeArgs, consumer: &mut Consumer) -> Result<(), Failure> {
    let idle = args.idle_timeout_ms.map(Duration::from_millis);
    let mut last_record = Instant::now();
    let mut printed = 0u64;
    let mut out = std::io::stdout().lock();
    loop {
        if args.count.is_some_and(|count| printed >= count) {
            return Ok(());
        }
        if idle.is_some_and(|idle| last_record.elapsed() >= idle) {
            return Ok(());
        }
        let records = consumer.poll(Duration::from_millis(500)).await?;
        if !records.is_empty() {
            last_record = Instant::now();
        }
        let mut last_printed: Vec<(TopicPartition, i64)> = Vec::new();
        for record in &records {
            if args.count.is_some_and(|count| printed >= count) {
                break;
            }
            let line = render(record, args.output, args.key_separator.as_deref());
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                // The reader went away (a closed pipe): stop quietly, as `head` expects.
                return Ok(());
            }
            printed += 1;
            let tp = TopicPartition { topic: record.topic.clone(), partition: record.partition };
            match last_printed.iter_mut().find(|(t, _)| *t == tp) {
                Some(entry) => entry.1 = record.offset + 1,
                None => last_printed.push((tp, record.offset + 1)),
            }
        }
        // Commit exactly what was printed (not what was fetched past --count).
        if args.group.is_some() && !last_printed.is_empty() {
            consumer.commit_offsets_sync(&last_printed).await?;
        }
    }
}

fn parse_assignor(name: &str) -> Result<Assignor, String> {
    name.parse().map_err(|error: crate::Error| error.to_string())
}

fn render(record: &ConsumerRecord, output: Output, key_separator: Option<&str>) -> String {
    match output {
        Output::Json => {
            let headers: Vec<_> = record
                .headers
                .iter()
                .map(|h| json!({"key": h.key, "value": json_bytes(h.value.as_deref())}))
                .collect();
            json!({
                "topic": &*record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "timestamp": record.timestamp,
                "timestamp_type": if record.log_append_time { "LogAppendTime" } else { "CreateTime" },
                "key": json_bytes(record.key.as_deref()),
                "value": json_bytes(record.value.as_deref()),
                "headers": headers,
            })
            .to_string()
        }
        Output::Text => {
            let text = |data: Option<&[u8]>| {
                String::from_utf8_lossy(data.unwrap_or_default()).into_owned()
            };
            match key_separator {
                Some(separator) => {
                    format!(
                        "{}{separator}{}",
                        text(record.key.as_deref()),
                        text(record.value.as_deref())
                    )
                }
                None => text(record.value.as_deref()),
            }
        }
    }
}
