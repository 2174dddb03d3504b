//! Append and read throughput of the partition log through the real disk driver.
//!
//! Batches are 16 KiB of 100-byte records, as a producer with `batch.size=16384` sends them.
//! Each append gives the log its own copy of the batch (a 16 KiB memcpy), as the network path
//! does when it reads a request off a socket. Run with `cargo bench -p cairn-node --bench log`;
//! docs/benchmarks.md has the figures and the disk's own ceilings beside them.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use cairn_node::core::log::LogConfig;
use cairn_node::core::log::batch::{BatchHeader, build};
use cairn_node::core::log::harness::LogHarness;
use cairn_node::core::time::Instant as CoreInstant;
use cairn_node::runtime::disk::FileDisk;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const BATCH_BYTES: usize = 16 * 1024;
const RECORD_VALUE_BYTES: usize = 100;
const T0: CoreInstant = CoreInstant::from_millis(1_750_000_000_000);

/// A batch of 100-byte records as close to 16 KiB as whole records allow.
fn batch_16k() -> BytesMut {
    let value = [b'x'; RECORD_VALUE_BYTES];
    let one = build::batch(&[&value], 0).len();
    let per_record = build::batch(&[&value, &value], 0).len() - one;
    let records = 1 + (BATCH_BYTES - one) / per_record;
    let values: Vec<&[u8]> = (0..records).map(|_| value.as_slice()).collect();
    build::batch(&values, 1_700_000_000_000)
}

fn open(dir: &tempfile::TempDir) -> LogHarness<FileDisk> {
    let disk = FileDisk::open(dir.path()).expect("a temporary directory");
    LogHarness::open(disk, "bench-0", LogConfig::default(), T0)
}

/// Appends `iters` batches to a fresh log, flushing after every batch if `fsync`.
fn append(iters: u64, batch: &BytesMut, fsync: bool) -> Duration {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut h = open(&dir);
    let start = Instant::now();
    for _ in 0..iters {
        h.append(batch.clone(), 0).expect("append");
        if fsync {
            h.flush();
        }
    }
    let elapsed = start.elapsed();
    black_box(h.log.log_end_offset());
    elapsed
}

fn benches(c: &mut Criterion) {
    let batch = batch_16k();
    let mut group = c.benchmark_group("log");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.sample_size(20).measurement_time(Duration::from_secs(4));
    group.bench_function("append_16KiB_no_fsync", |b| {
        b.iter_custom(|iters| append(iters, &batch, false))
    });
    group.sample_size(10).measurement_time(Duration::from_secs(6));
    group.bench_function("append_16KiB_fsync_each", |b| {
        b.iter_custom(|iters| append(iters, &batch, true))
    });

    // Reads: 256 MiB written once, then read back from the page cache, 1 MiB per fetch.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut h = open(&dir);
    let batches = (256 << 20) / batch.len();
    for _ in 0..batches {
        h.append(batch.clone(), 0).expect("append");
    }
    h.flush();
    let total = h.log.log_end_offset();
    let bytes = h.log.size_bytes();
    group.throughput(Throughput::Bytes(bytes));
    group.sample_size(20).measurement_time(Duration::from_secs(5));
    group.bench_function("read_256MiB_page_cache_1MiB_fetches", |b| {
        // A consumer: fetch 1 MiB, look at it, drop it, fetch the next.
        b.iter(|| {
            let (mut offset, mut read) = (0, 0);
            while offset < total {
                let records = h.read(offset, total, 1 << 20).expect("read");
                offset = last_batch_end(&records);
                read += records.len();
            }
            assert_eq!(read as u64, bytes);
            black_box(read)
        })
    });
    group.finish();
}

/// The offset after the last batch of a fetch: walk the batch headers.
fn last_batch_end(records: &[u8]) -> u64 {
    let mut position = 0;
    let mut next = 0;
    while position < records.len() {
        let header = BatchHeader::parse(&records[position..]).expect("whole batches");
        next = header.next_offset() as u64;
        position += header.total_bytes();
    }
    next
}

criterion_group!(log, benches);
criterion_main!(log);
