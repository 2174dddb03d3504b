//! Redis Streams: each stream is a key `PREFIX-I` holding entries of one field `d`.
//!
//! Produce sends XADD with up to `--window` commands outstanding on one connection (Redis
//! answers in order, so the window is the pipeline depth). Two producers exist, chosen with
//! `--redis-driver`: RESP written and parsed here over a tokio `TcpStream` (the default, the
//! faster; README.md has the measurement) and the `redis` crate's multiplexed connection.
//! Consume reads with XRANGE, one command per key pipelined per round; e2e tails with XREAD;
//! both in RESP by hand too. The crate serves the admin commands (DEL, XLEN).

use std::collections::VecDeque;
use std::ops::Range;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use redis::Value;
use redis::aio::MultiplexedConnection;

use crate::resp::{RespConn, Token, encode_command};

use crate::common::{
    Args, Latency, Op, Outcome, PACE_TICK, PROGRESS_TIMEOUT, Payloads, Progress, READ_BATCH_MAX,
    RedisDriver, now_ns, read_stamp, records_due,
};

/// The one field of every entry.
const FIELD: &[u8] = b"d";

pub async fn run(args: &Args) -> Result<Outcome> {
    if args.server.len() != 1 {
        bail!("redis takes one --server HOST:PORT, got {}", args.server.len());
    }
    let mut admin = connect(args).await?;
    let keys: Vec<String> = (0..args.streams).map(|i| args.stream_name(i)).collect();
    match args.op {
        Op::Produce => {
            delete_keys(&mut admin, &keys).await?;
            let mut latency = Latency::new();
            let start = Instant::now();
            match args.redis_driver {
                RedisDriver::Resp => xadd_resp(args, &keys, Some(&mut latency)).await?,
                RedisDriver::Crate => xadd_crate(args, &admin, &keys, &mut latency).await?,
            }
            Ok(Outcome { records: args.records, elapsed: start.elapsed(), latency: Some(latency) })
        }
        Op::Consume => {
            check_lengths(args, &mut admin, &keys).await?;
            let start = Instant::now();
            xrange_all(args, &keys).await?;
            Ok(Outcome { records: args.records, elapsed: start.elapsed(), latency: None })
        }
        Op::E2e => {
            delete_keys(&mut admin, &keys).await?;
            let start = Instant::now();
            let reading = tokio::spawn(xread_all(args.clone(), keys.clone()));
            xadd_resp(args, &keys, None).await?;
            let latency = reading.await.context("the reader task panicked")??;
            Ok(Outcome { records: args.records, elapsed: start.elapsed(), latency: Some(latency) })
        }
    }
}

async fn connect(args: &Args) -> Result<MultiplexedConnection> {
    let server = &args.server[0];
    let client = redis::Client::open(format!("redis://{server}/"))
        .with_context(|| format!("--server {server}: expected HOST:PORT"))?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(PROGRESS_TIMEOUT));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .with_context(|| format!("cannot connect to redis-server at {server}"))
}

async fn delete_keys(conn: &mut MultiplexedConnection, keys: &[String]) -> Result<()> {
    let _: i64 = redis::cmd("DEL").arg(keys).query_async(conn).await.context("DEL failed")?;
    eprintln!("redis: {} keys deleted", keys.len());
    Ok(())
}

async fn check_lengths(
    args: &Args,
    conn: &mut MultiplexedConnection,
    keys: &[String],
) -> Result<()> {
    for (index, key) in keys.iter().enumerate() {
        let held: u64 =
            redis::cmd("XLEN").arg(key).query_async(conn).await.context("XLEN failed")?;
        let expected = args.records_of_stream(index);
        if held < expected {
            bail!(
                "key {key} holds {held} records, consume expects {expected}: produce at least --records {} first",
                args.records
            );
        }
    }
    Ok(())
}

/// XADDs `--records` records round-robin over `keys` on a connection of its own, RESP by hand,
/// at most `--window` unanswered; paced at `--rate` when given.
async fn xadd_resp(args: &Args, keys: &[String], mut latency: Option<&mut Latency>) -> Result<()> {
    let mut conn = RespConn::connect(&args.server[0], PROGRESS_TIMEOUT).await?;
    let streams = keys.len() as u64;
    let mut payloads = Payloads::new(args.size, args.op == Op::E2e);
    let mut out = Vec::with_capacity(args.window * (args.size + 64));
    // Send times of the unanswered commands, oldest first (Redis answers in order).
    let mut unanswered: VecDeque<Instant> = VecDeque::with_capacity(args.window);
    let mut tick = tokio::time::interval(PACE_TICK);
    let mut progress = Progress::new("redis xadd: acknowledged", args.records);
    let (mut sent, mut acked) = (0u64, 0u64);
    let start = Instant::now();
    while acked < args.records {
        let due = records_due(args.rate, args.records, start.elapsed());
        if sent < due && unanswered.len() < args.window {
            let sent_at = Instant::now();
            while sent < due && unanswered.len() < args.window {
                let key = keys[(sent % streams) as usize].as_bytes();
                encode_command(&mut out, &[b"XADD", key, b"*", FIELD, &payloads.next()]);
                unanswered.push_back(sent_at);
                sent += 1;
            }
            conn.write_all(&out).await.context("writing XADDs failed")?;
            out.clear();
        }
        if unanswered.is_empty() {
            tick.tick().await;
            continue;
        }
        let paced = args.rate.is_some() && sent < args.records;
        tokio::select! {
            read = conn.read_more() => read.with_context(|| format!(
                "waiting for XADD replies: {acked} of {} acknowledged", args.records))?,
            _ = tick.tick(), if paced => {}
        }
        while let Some(token) = conn.try_token()? {
            match token {
                Token::Bulk(_) => {}
                Token::Error(e) => {
                    bail!("XADD refused: {e} ({acked} of {} acknowledged)", args.records)
                }
                other => bail!("unexpected reply to XADD: {other:?}"),
            }
            let sent_at = unanswered.pop_front().context("a reply to no command")?;
            if let Some(latency) = latency.as_deref_mut() {
                latency.record(sent_at.elapsed());
            }
            acked += 1;
        }
        progress.update(acked);
    }
    assert!(unanswered.is_empty());
    Ok(())
}

/// The same as `xadd_resp`, through the `redis` crate's multiplexed connection.
async fn xadd_crate(
    args: &Args,
    conn: &MultiplexedConnection,
    keys: &[String],
    latency: &mut Latency,
) -> Result<()> {
    let streams = keys.len() as u64;
    let mut payloads = Payloads::new(args.size, false);
    let mut replies = FuturesUnordered::new();
    let mut progress = Progress::new("redis xadd (crate): acknowledged", args.records);
    let (mut sent, mut acked) = (0u64, 0u64);
    while acked < args.records {
        while sent < args.records && replies.len() < args.window {
            let mut cmd = redis::cmd("XADD");
            cmd.arg(&keys[(sent % streams) as usize]).arg("*").arg(FIELD).arg(&payloads.next()[..]);
            let mut conn = conn.clone();
            let sent_at = Instant::now();
            replies.push(async move {
                let reply: redis::RedisResult<Value> = cmd.query_async(&mut conn).await;
                (sent_at, reply)
            });
            sent += 1;
        }
        let (sent_at, reply) = replies.next().await.context("no XADD in flight")?;
        reply.with_context(|| format!("XADD failed: {acked} of {} acknowledged", args.records))?;
        latency.record(sent_at.elapsed());
        acked += 1;
        progress.update(acked);
    }
    Ok(())
}

/// Reads one stream entry `[id, [field, value]]`, checks the value's size, copies the ID into
/// `id` (a reused buffer) and returns the value's range, valid until the next token is read.
async fn read_entry(conn: &mut RespConn, size: usize, id: &mut Vec<u8>) -> Result<Range<usize>> {
    if conn.array("stream entry").await? != 2 {
        bail!("a stream entry that is not [id, fields]");
    }
    let id_range = conn.bulk("entry ID").await?;
    id.clear();
    id.extend_from_slice(conn.bytes(id_range));
    let fields = conn.array("entry fields").await?;
    if fields != 2 {
        bail!("entry {} has {fields} field elements, expected 2", String::from_utf8_lossy(id));
    }
    conn.bulk("entry field").await?;
    let data = conn.bulk("entry value").await?;
    if data.len() != size {
        bail!("entry {} has {} bytes, expected {size}", String::from_utf8_lossy(id), data.len());
    }
    Ok(data)
}

/// Reads each key from its first entry until it gave its share of `--records`: per round, one
/// `XRANGE key (LAST + COUNT N` per unfinished key, pipelined on one connection.
async fn xrange_all(args: &Args, keys: &[String]) -> Result<()> {
    let mut conn = RespConn::connect(&args.server[0], PROGRESS_TIMEOUT).await?;
    let expected: Vec<u64> = (0..keys.len()).map(|i| args.records_of_stream(i)).collect();
    let mut read = vec![0u64; keys.len()];
    // The start of each key's next range: "-" for its beginning, then "(" and the last ID read.
    let mut next: Vec<Vec<u8>> = vec![b"-".to_vec(); keys.len()];
    let mut id = Vec::with_capacity(32);
    let mut out = Vec::new();
    let mut progress = Progress::new("redis read", args.records);
    loop {
        let pending: Vec<usize> = (0..keys.len()).filter(|&i| read[i] < expected[i]).collect();
        if pending.is_empty() {
            return Ok(());
        }
        out.clear();
        for &i in &pending {
            let count = (expected[i] - read[i]).min(READ_BATCH_MAX as u64).to_string();
            let command: [&[u8]; 6] =
                [b"XRANGE", keys[i].as_bytes(), &next[i], b"+", b"COUNT", count.as_bytes()];
            encode_command(&mut out, &command);
        }
        conn.write_all(&out).await?;
        for &i in &pending {
            let at =
                || format!("reading key {}: {} of {} records read", keys[i], read[i], expected[i]);
            let entries = conn.array("XRANGE").await.with_context(at)?;
            if entries == 0 {
                bail!("key {} ended after {} of {} records", keys[i], read[i], expected[i]);
            }
            for _ in 0..entries {
                read_entry(&mut conn, args.size, &mut id).await.with_context(at)?;
            }
            read[i] += entries as u64;
            next[i].clear();
            next[i].push(b'(');
            next[i].extend_from_slice(&id);
        }
        progress.update(read.iter().sum());
    }
}

/// Tails every key with `XREAD COUNT N BLOCK 1000 STREAMS keys... ids...` from its beginning
/// until `--records` records arrived; latency from each record's send stamp to its arrival.
async fn xread_all(args: Args, keys: Vec<String>) -> Result<Latency> {
    // XREAD BLOCK holds its connection: the reader has one of its own.
    let block = Duration::from_millis(1000);
    let mut conn = RespConn::connect(&args.server[0], PROGRESS_TIMEOUT + block).await?;
    let mut latency = Latency::new();
    let mut next: Vec<Vec<u8>> = vec![b"0-0".to_vec(); keys.len()];
    let mut id = Vec::with_capacity(32);
    let mut out = Vec::new();
    let batch = READ_BATCH_MAX.to_string();
    let block_ms = block.as_millis().to_string();
    let mut read = 0u64;
    let mut last_progress = Instant::now();
    let mut progress = Progress::new("redis tail", args.records);
    while read < args.records {
        if last_progress.elapsed() > PROGRESS_TIMEOUT {
            bail!(
                "no record for {} s after {read} of {}",
                PROGRESS_TIMEOUT.as_secs(),
                args.records
            );
        }
        out.clear();
        let mut command: Vec<&[u8]> =
            vec![b"XREAD", b"COUNT", batch.as_bytes(), b"BLOCK", block_ms.as_bytes(), b"STREAMS"];
        command.extend(keys.iter().map(|k| k.as_bytes()));
        command.extend(next.iter().map(|n| n.as_slice()));
        encode_command(&mut out, &command);
        conn.write_all(&out).await?;
        let waiting = || format!("tailing: {read} of {} records read", args.records);
        let per_key = match conn.token().await.with_context(waiting)? {
            Token::Nil => continue,
            Token::Array(n) => n,
            Token::Error(e) => bail!("XREAD: redis-server replied {e}"),
            other => bail!("XREAD: expected an array, got {other:?}"),
        };
        for _ in 0..per_key {
            if conn.array("XREAD key reply").await? != 2 {
                bail!("XREAD: a key reply that is not [key, entries]");
            }
            let key = conn.bulk("XREAD key").await?;
            let index = keys
                .iter()
                .position(|k| k.as_bytes() == conn.bytes(key.clone()))
                .context("XREAD replied for a key not asked for")?;
            let entries = conn.array("XREAD entries").await?;
            for _ in 0..entries {
                let data = read_entry(&mut conn, args.size, &mut id).await?;
                let stamp = read_stamp(conn.bytes(data))?;
                latency.record_ns(now_ns().saturating_sub(stamp));
            }
            if entries > 0 {
                next[index].clear();
                next[index].extend_from_slice(&id);
                read += entries as u64;
                last_progress = Instant::now();
            }
        }
        progress.update(read);
    }
    if read > args.records {
        bail!("read {read} records, {} were sent", args.records);
    }
    Ok(latency)
}
