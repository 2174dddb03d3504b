//! Redis Streams: each stream is a key `PREFIX-I` holding entries of one field `d`.
//!
//! Produce sends XADD with up to `--window` commands outstanding on one connection (Redis
//! answers in order, so the window is the pipeline depth). Two producers exist, chosen with
//! `--redis-driver`: RESP written and parsed here over a tokio `TcpStream` (the default, the
//! faster; README.md has the measurement) and the `redis` crate's multiplexed connection.
//! Consume reads with XRANGE, one command per key pipelined per round; e2e tails with XREAD.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use bytes::{Buf as _, BytesMut};
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use redis::Value;
use redis::aio::MultiplexedConnection;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

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
            xrange_all(args, &mut admin, &keys).await?;
            Ok(Outcome { records: args.records, elapsed: start.elapsed(), latency: None })
        }
        Op::E2e => {
            delete_keys(&mut admin, &keys).await?;
            // XREAD BLOCK holds its connection: the reader gets one of its own.
            let tail = connect(args).await?;
            let start = Instant::now();
            let reading = tokio::spawn(xread_all(args.clone(), tail, keys.clone()));
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

/// Appends `XADD key * d payload` in RESP to `out`.
fn encode_xadd(out: &mut Vec<u8>, key: &[u8], payload: &[u8]) {
    fn bulk(out: &mut Vec<u8>, data: &[u8]) {
        out.push(b'$');
        out.extend_from_slice(data.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"*5\r\n");
    bulk(out, b"XADD");
    bulk(out, key);
    bulk(out, b"*");
    bulk(out, FIELD);
    bulk(out, payload);
}

/// Parses the first reply in `buf` if it is complete: the entry ID of an XADD (a bulk string).
/// Returns whether one was taken; an error reply or anything else is an error.
fn take_xadd_reply(buf: &mut BytesMut) -> Result<bool> {
    let Some(line_end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(false);
    };
    let line = &buf[..line_end];
    match line.first() {
        Some(b'$') => {
            let len: usize =
                std::str::from_utf8(&line[1..]).ok().and_then(|s| s.parse().ok()).with_context(
                    || format!("bad RESP bulk length {:?}", String::from_utf8_lossy(line)),
                )?;
            let total = line_end + 2 + len + 2;
            if buf.len() < total {
                return Ok(false);
            }
            buf.advance(total);
            Ok(true)
        }
        Some(b'-') => bail!("XADD refused: {}", String::from_utf8_lossy(&line[1..])),
        _ => bail!("unexpected reply to XADD: {:?}", String::from_utf8_lossy(line)),
    }
}

/// XADDs `--records` records round-robin over `keys` on a connection of its own, RESP by hand,
/// at most `--window` unanswered; paced at `--rate` when given.
async fn xadd_resp(args: &Args, keys: &[String], mut latency: Option<&mut Latency>) -> Result<()> {
    let server = &args.server[0];
    let socket = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(server))
        .await
        .map_err(|_| anyhow::anyhow!("connecting to {server} timed out"))?
        .with_context(|| format!("cannot connect to redis-server at {server}"))?;
    socket.set_nodelay(true)?;
    let (mut reader, mut writer) = socket.into_split();
    let streams = keys.len() as u64;
    let mut payloads = Payloads::new(args.size, args.op == Op::E2e);
    let mut out = Vec::with_capacity(args.window * (args.size + 64));
    let mut replies = BytesMut::with_capacity(64 * 1024);
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
                encode_xadd(&mut out, keys[(sent % streams) as usize].as_bytes(), &payloads.next());
                unanswered.push_back(sent_at);
                sent += 1;
            }
            writer.write_all(&out).await.context("writing XADDs failed")?;
            out.clear();
        }
        if unanswered.is_empty() {
            tick.tick().await;
            continue;
        }
        let paced = args.rate.is_some() && sent < args.records;
        tokio::select! {
            read = tokio::time::timeout(PROGRESS_TIMEOUT, reader.read_buf(&mut replies)) => {
                let read = read.map_err(|_| anyhow::anyhow!(
                    "no XADD reply for {} s: {acked} of {} acknowledged", PROGRESS_TIMEOUT.as_secs(), args.records))?
                    .context("reading XADD replies failed")?;
                if read == 0 {
                    bail!("redis-server closed the connection: {acked} of {} acknowledged", args.records);
                }
            }
            _ = tick.tick(), if paced => {}
        }
        while take_xadd_reply(&mut replies)? {
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

/// Checks one entry `[id, [field, value]]` and returns its ID and value.
fn entry(value: &Value, size: usize) -> Result<(&[u8], &[u8])> {
    let Value::Array(parts) = value else {
        bail!("a stream entry that is not an array: {value:?}")
    };
    let [Value::BulkString(id), Value::Array(fields)] = parts.as_slice() else {
        bail!("a stream entry of unexpected shape: {value:?}");
    };
    let [Value::BulkString(_field), Value::BulkString(data)] = fields.as_slice() else {
        bail!("entry {} has fields of unexpected shape", String::from_utf8_lossy(id));
    };
    if data.len() != size {
        bail!("entry {} has {} bytes, expected {size}", String::from_utf8_lossy(id), data.len());
    }
    Ok((id, data))
}

/// Reads each key from its first entry until it gave its share of `--records`: per round, one
/// XRANGE per unfinished key, pipelined.
async fn xrange_all(args: &Args, conn: &mut MultiplexedConnection, keys: &[String]) -> Result<()> {
    let expected: Vec<u64> = (0..keys.len()).map(|i| args.records_of_stream(i)).collect();
    let mut read = vec![0u64; keys.len()];
    // The exclusive start of each key's next range ("-" for its beginning).
    let mut next: Vec<String> = vec!["-".to_string(); keys.len()];
    let mut progress = Progress::new("redis read", args.records);
    loop {
        let pending: Vec<usize> = (0..keys.len()).filter(|&i| read[i] < expected[i]).collect();
        if pending.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for &i in &pending {
            let count = (expected[i] - read[i]).min(READ_BATCH_MAX as u64);
            pipe.cmd("XRANGE").arg(&keys[i]).arg(&next[i]).arg("+").arg("COUNT").arg(count);
        }
        let replies: Vec<Value> = pipe.query_async(conn).await.context("XRANGE failed")?;
        for (&i, reply) in pending.iter().zip(&replies) {
            let Value::Array(entries) = reply else { bail!("XRANGE replied {reply:?}") };
            if entries.is_empty() {
                bail!("key {} ended after {} of {} records", keys[i], read[i], expected[i]);
            }
            let mut last = None;
            for value in entries {
                last = Some(entry(value, args.size)?.0);
            }
            read[i] += entries.len() as u64;
            let last = String::from_utf8_lossy(last.expect("entries is not empty"));
            next[i] = format!("({last}");
        }
        progress.update(read.iter().sum());
    }
}

/// Tails every key with XREAD BLOCK from its beginning until `--records` records arrived;
/// latency from each record's send stamp to its arrival.
async fn xread_all(
    args: Args,
    mut conn: MultiplexedConnection,
    keys: Vec<String>,
) -> Result<Latency> {
    let mut latency = Latency::new();
    let mut next: Vec<String> = vec!["0-0".to_string(); keys.len()];
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
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(READ_BATCH_MAX)
            .arg("BLOCK")
            .arg(1000)
            .arg("STREAMS")
            .arg(&keys)
            .arg(&next);
        let reply: Value = cmd.query_async(&mut conn).await.context("XREAD failed")?;
        let now = now_ns();
        let per_key = match &reply {
            Value::Nil => continue,
            Value::Array(per_key) => per_key.as_slice(),
            Value::Map(_) => bail!("XREAD replied with a RESP3 map; this driver speaks RESP2"),
            other => bail!("XREAD replied {other:?}"),
        };
        for key_reply in per_key {
            let Value::Array(pair) = key_reply else { bail!("XREAD replied {key_reply:?}") };
            let [Value::BulkString(key), Value::Array(entries)] = pair.as_slice() else {
                bail!("XREAD replied {key_reply:?}");
            };
            let index = keys
                .iter()
                .position(|k| k.as_bytes() == key.as_slice())
                .context("XREAD replied for a key not asked for")?;
            let mut last = None;
            for value in entries {
                let (id, data) = entry(value, args.size)?;
                latency.record_ns(now.saturating_sub(read_stamp(data)?));
                last = Some(id);
            }
            if let Some(last) = last {
                next[index] = String::from_utf8_lossy(last).into_owned();
                read += entries.len() as u64;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xadd_is_encoded_as_resp() {
        let mut out = Vec::new();
        encode_xadd(&mut out, b"bench-0", b"hello");
        assert_eq!(
            out,
            b"*5\r\n$4\r\nXADD\r\n$7\r\nbench-0\r\n$1\r\n*\r\n$1\r\nd\r\n$5\r\nhello\r\n"
        );
    }

    #[test]
    fn xadd_replies_are_taken_whole_or_not_at_all() {
        let mut buf = BytesMut::from(&b"$15\r\n1700000000000-0\r\n$15\r\n17000000"[..]);
        assert!(take_xadd_reply(&mut buf).unwrap());
        assert!(!take_xadd_reply(&mut buf).unwrap());
        buf.extend_from_slice(b"00000-1\r\n");
        assert!(take_xadd_reply(&mut buf).unwrap());
        assert!(buf.is_empty());
        assert!(!take_xadd_reply(&mut buf).unwrap());
    }

    #[test]
    fn error_replies_fail() {
        let mut buf = BytesMut::from(&b"-OOM command not allowed\r\n"[..]);
        let err = take_xadd_reply(&mut buf).unwrap_err();
        assert!(err.to_string().contains("OOM"), "{err}");
    }
}
