//! NATS JetStream: each stream `PREFIX-I` (subject `PREFIX.I`) is file-backed with
//! `--replicas` replicas. Produce publishes asynchronously and keeps up to `--window` PubAck
//! futures outstanding; consume and e2e read through one pull consumer per stream, AckNone.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use async_nats::jetstream::{self, consumer, stream};
use async_nats::{ConnectOptions, ServerAddr, Subject};
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;

use crate::common::{
    Args, Latency, Op, Outcome, PACE_TICK, PROGRESS_TIMEOUT, Payloads, Progress,
    READ_BATCH_BYTES_MAX, READ_BATCH_MAX, now_ns, read_stamp, records_due,
};

pub async fn run(args: &Args) -> Result<Outcome> {
    let js = connect(args).await?;
    match args.op {
        Op::Produce => {
            recreate_streams(args, &js).await?;
            produce(args, &js).await
        }
        Op::Consume => consume(args, &js).await,
        Op::E2e => {
            recreate_streams(args, &js).await?;
            e2e(args, &js).await
        }
    }
}

async fn connect(args: &Args) -> Result<jetstream::Context> {
    let addrs = args
        .server
        .iter()
        .map(|s| format!("nats://{s}").parse::<ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .context("--server: expected HOST:PORT[,HOST:PORT...]")?;
    let client = ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(addrs)
        .await
        .with_context(|| format!("cannot connect to nats-server at {}", args.server.join(",")))?;
    // The driver keeps its own window; the context's limit only has to stay out of its way.
    Ok(jetstream::ContextBuilder::new()
        .timeout(PROGRESS_TIMEOUT)
        .max_ack_inflight(args.window + 64)
        .backpressure_on_inflight(true)
        .build(client))
}

async fn recreate_streams(args: &Args, js: &jetstream::Context) -> Result<()> {
    for index in 0..args.streams {
        let name = args.stream_name(index);
        if js.get_stream(&name).await.is_ok() {
            js.delete_stream(&name)
                .await
                .with_context(|| format!("cannot delete stream {name}"))?;
        }
        let config = stream::Config {
            name: name.clone(),
            subjects: vec![subject(args, index)],
            storage: stream::StorageType::File,
            num_replicas: args.replicas,
            ..Default::default()
        };
        js.create_stream(config).await.with_context(|| {
            format!("cannot create stream {name} (file storage, {} replicas): is JetStream on (-js) and are there enough nodes?", args.replicas)
        })?;
    }
    eprintln!("nats: {} streams recreated, {} replicas", args.streams, args.replicas);
    Ok(())
}

fn subject(args: &Args, index: usize) -> String {
    format!("{}.{index}", args.name)
}

async fn produce(args: &Args, js: &jetstream::Context) -> Result<Outcome> {
    let mut latency = Latency::new();
    let elapsed = publish(args, js, Some(&mut latency)).await?;
    Ok(Outcome { records: args.records, elapsed, latency: Some(latency) })
}

/// Sends `--records` records round-robin, paced at `--rate` if given, and waits for every
/// acknowledgement. Records send-to-acknowledgement latency into `latency` if given.
async fn publish(
    args: &Args,
    js: &jetstream::Context,
    mut latency: Option<&mut Latency>,
) -> Result<Duration> {
    let subjects: Vec<Subject> = (0..args.streams).map(|i| subject(args, i).into()).collect();
    let streams = args.streams as u64;
    let mut payloads = Payloads::new(args.size, args.op == Op::E2e);
    let mut acks = FuturesUnordered::new();
    let mut tick = tokio::time::interval(PACE_TICK);
    let mut progress = Progress::new("nats publish: acknowledged", args.records);
    let (mut sent, mut acked) = (0u64, 0u64);
    let start = Instant::now();
    while acked < args.records {
        let due = records_due(args.rate, args.records, start.elapsed());
        while sent < due && acks.len() < args.window {
            let subject = subjects[(sent % streams) as usize].clone();
            let sent_at = Instant::now();
            let ack = js
                .publish(subject, payloads.next())
                .await
                .with_context(|| format!("cannot publish record {sent}"))?;
            acks.push(async move { (sent_at, ack.await) });
            sent += 1;
        }
        let paced = args.rate.is_some() && sent < args.records;
        tokio::select! {
            biased;
            Some((sent_at, ack)) = acks.next(), if !acks.is_empty() => {
                ack.with_context(|| format!("a record was not acknowledged ({acked} of {} were)", args.records))?;
                if let Some(latency) = latency.as_deref_mut() {
                    latency.record(sent_at.elapsed());
                }
                acked += 1;
                progress.update(acked);
            }
            _ = tick.tick(), if paced => {}
            else => bail!("publish stalled: {sent} sent, {acked} acknowledged"),
        }
    }
    Ok(start.elapsed())
}

/// A pull consumer on each stream, reading from its first record.
async fn open_readers(args: &Args, js: &jetstream::Context) -> Result<Vec<consumer::pull::Stream>> {
    let mut readers = Vec::with_capacity(args.streams);
    for index in 0..args.streams {
        let name = args.stream_name(index);
        let mut stream =
            js.get_stream(&name).await.with_context(|| format!("cannot open stream {name}"))?;
        if args.op == Op::Consume {
            let held = stream.info().await?.state.messages;
            let expected = args.records_of_stream(index);
            if held < expected {
                bail!(
                    "stream {name} holds {held} records, consume expects {expected}: produce at least --records {} first",
                    args.records
                );
            }
        }
        let config = consumer::pull::Config {
            ack_policy: consumer::AckPolicy::None,
            deliver_policy: consumer::DeliverPolicy::All,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        };
        let pull = stream
            .create_consumer(config)
            .await
            .with_context(|| format!("cannot create a consumer on stream {name}"))?;
        let messages = pull
            .stream()
            .max_messages_per_batch(READ_BATCH_MAX)
            .max_bytes_per_batch(READ_BATCH_BYTES_MAX)
            .messages()
            .await
            .with_context(|| format!("cannot start reading stream {name}"))?;
        readers.push(messages);
    }
    Ok(readers)
}

/// Reads `expected` records from one stream, checking each one's size; with `stamped`, the
/// latency from each record's send stamp to its arrival.
async fn read_stream(
    name: String,
    mut messages: consumer::pull::Stream,
    expected: u64,
    size: usize,
    stamped: bool,
    read_total: Arc<AtomicU64>,
) -> Result<Option<Latency>> {
    let mut latency = stamped.then(Latency::new);
    let mut read = 0u64;
    while read < expected {
        let message = match tokio::time::timeout(PROGRESS_TIMEOUT, messages.next()).await {
            Err(_) => bail!(
                "stream {name}: no record for {} s after {read} of {expected}",
                PROGRESS_TIMEOUT.as_secs()
            ),
            Ok(None) => bail!("stream {name}: the consumer ended after {read} of {expected}"),
            Ok(Some(message)) => message.with_context(|| format!("stream {name}: read failed"))?,
        };
        if message.payload.len() != size {
            bail!(
                "stream {name}: record {read} has {} bytes, expected {size}",
                message.payload.len()
            );
        }
        if let Some(latency) = latency.as_mut() {
            latency.record_ns(now_ns().saturating_sub(read_stamp(&message.payload)?));
        }
        read += 1;
        read_total.fetch_add(1, Ordering::Relaxed);
    }
    Ok(latency)
}

/// Runs one reader task per stream until all have read their share.
async fn read_all(
    args: &Args,
    readers: Vec<consumer::pull::Stream>,
    stamped: bool,
) -> Result<tokio::task::JoinHandle<Result<Option<Latency>>>> {
    let read_total = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(readers.len());
    for (index, messages) in readers.into_iter().enumerate() {
        tasks.push(tokio::spawn(read_stream(
            args.stream_name(index),
            messages,
            args.records_of_stream(index),
            args.size,
            stamped,
            read_total.clone(),
        )));
    }
    let total = args.records;
    Ok(tokio::spawn(async move {
        let mut progress = Progress::new("nats read", total);
        let mut merged: Option<Latency> = None;
        let mut tasks: FuturesUnordered<_> = tasks.into_iter().collect();
        let mut report = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                done = tasks.next() => match done {
                    None => return Ok(merged),
                    Some(joined) => {
                        if let Some(latency) = joined.context("a reader task panicked")?? {
                            match merged.as_mut() {
                                None => merged = Some(latency),
                                Some(merged) => merged.add(&latency),
                            }
                        }
                    }
                },
                _ = report.tick() => progress.update(read_total.load(Ordering::Relaxed)),
            }
        }
    }))
}

async fn consume(args: &Args, js: &jetstream::Context) -> Result<Outcome> {
    let readers = open_readers(args, js).await?;
    let start = Instant::now();
    read_all(args, readers, false).await?.await.context("the reader task panicked")??;
    Ok(Outcome { records: args.records, elapsed: start.elapsed(), latency: None })
}

async fn e2e(args: &Args, js: &jetstream::Context) -> Result<Outcome> {
    let readers = open_readers(args, js).await?;
    let start = Instant::now();
    let reading = read_all(args, readers, true).await?;
    publish(args, js, None).await?;
    let latency = reading.await.context("the reader task panicked")??;
    Ok(Outcome { records: args.records, elapsed: start.elapsed(), latency })
}
