//! Benchmarks of issue 5, run with `cargo bench -p cairn-jepsen`:
//!
//! 1. the Kafka checks over a history of at least 1,000,000 operations (lines), target
//!    <= 10 s, measured end to end from a JSON Lines file and on operations in memory;
//! 2. linearizability of 100,000 commit/committed operations over 100 keys with 10
//!    concurrent clients, target <= 5 s;
//! 3. no target: linearizability of 50,000 operations on one key, 10 clients (the search's
//!    worst case here: every operation contends, offsets repeat, some commits are `info`).
//!
//! Each measurement runs `CAIRN_BENCH_RUNS` times (default 3) and prints every time and the
//! median. `CAIRN_BENCH_KAFKA_OPS` and `CAIRN_BENCH_REGISTER_OPS` change the sizes;
//! `CAIRN_BENCH_HISTORY_OUT=FILE` keeps the Kafka history in FILE. A plain `harness = false` binary: each run takes seconds, so criterion's
//! statistics would only multiply the wall time.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::time::{Duration, Instant};

use cairn_jepsen::synth::{self, Mix, Workload};
use cairn_jepsen::{History, HistoryReader, Options, Report, Validity, check_history, check_ops};

fn main() {
    let runs: usize = env_or("CAIRN_BENCH_RUNS", 3);
    let kafka_ops: usize = env_or("CAIRN_BENCH_KAFKA_OPS", 1_000_000);
    let register_ops: usize = env_or("CAIRN_BENCH_REGISTER_OPS", 100_000);
    println!("cairn-jepsen benchmarks: {runs} runs each, median reported");
    let hot_key_ops: usize = env_or("CAIRN_BENCH_HOT_KEY_OPS", 50_000);
    kafka(kafka_ops, runs);
    registers(register_ops, 100, runs, Some(5.0));
    registers(hot_key_ops, 1, runs, None);
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A history of Kafka operations only, at least `lines` lines long.
fn kafka_history(lines: usize) -> History {
    let workload = Workload {
        seed: 2024,
        processes: 10,
        partitions: 8,
        invocations: lines / 2,
        mix: Mix { send: 50, poll: 45, assign: 3, subscribe: 2, commit: 0, committed: 0 },
        timeout_per_mille: 10,
        fail_per_mille: 10,
        crash_per_mille: 1,
        acks_weak_per_mille: 50,
        poll_records_max: 4,
    };
    synth::generate(&workload)
}

fn kafka(lines: usize, runs: usize) {
    let started = Instant::now();
    let history = kafka_history(lines);
    let dir = std::env::temp_dir().join(format!("cairn-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // CAIRN_BENCH_HISTORY_OUT keeps the history, to time the cairn-check binary on it.
    let kept = std::env::var_os("CAIRN_BENCH_HISTORY_OUT").map(std::path::PathBuf::from);
    let path = kept.clone().unwrap_or_else(|| dir.join("kafka.jsonl"));
    history.write_jsonl(BufWriter::new(File::create(&path).expect("create"))).expect("write");
    let bytes = std::fs::metadata(&path).expect("metadata").len();
    println!(
        "\n[kafka] history: {} operations (lines), {:.1} MiB, generated in {:.1?}",
        history.ops().len(),
        bytes as f64 / (1 << 20) as f64,
        started.elapsed()
    );
    let options = Options::default();
    let parse_runs: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let started = Instant::now();
            let file = BufReader::with_capacity(1 << 20, File::open(&path).expect("open"));
            let mut parsed = 0;
            for op in HistoryReader::new(file) {
                op.expect("readable");
                parsed += 1;
            }
            assert_eq!(parsed, history.ops().len());
            started.elapsed().as_secs_f64()
        })
        .collect();
    println!("[kafka] read + parse only, no check: median {:.2} s", median(parse_runs));
    let from_file =
        measure("[kafka] from the JSON Lines file (read + parse + check)", runs, || {
            let file = BufReader::with_capacity(1 << 20, File::open(&path).expect("open"));
            check_history(file, &options).expect("readable")
        });
    let in_memory = measure("[kafka] operations in memory (check only)", runs, || {
        check_ops(history.ops(), &options).expect("well-formed")
    });
    verdict("[kafka] target: <= 10 s for 1,000,000 operations", from_file.max(in_memory), 10.0);
    let _ = std::fs::remove_dir_all(&dir);
}

fn registers(operations: usize, keys: u32, runs: usize, target_seconds: Option<f64>) {
    let history = synth::registers(99, 10, keys, operations);
    let invocations = history.ops().iter().filter(|op| op.kind == cairn_jepsen::OpType::Invoke);
    println!(
        "\n[linearizability] history: {} commit/committed operations ({} lines), {keys} keys, \
         10 clients",
        invocations.count(),
        history.ops().len()
    );
    let options = Options::default();
    let elapsed = measure("[linearizability] operations in memory", runs, || {
        check_ops(history.ops(), &options).expect("well-formed")
    });
    if let Some(target) = target_seconds {
        verdict(&format!("[linearizability] target: <= {target} s"), elapsed, target);
    }
}

/// Runs `check` `runs` times, prints each time, and returns the median in seconds.
fn measure(name: &str, runs: usize, check: impl Fn() -> Report) -> f64 {
    let mut times: Vec<Duration> = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        let report = check();
        times.push(started.elapsed());
        last = Some(report);
    }
    let report = last.expect("one run at least");
    assert_eq!(report.valid, Validity::Valid, "a generated history is valid: {:?}", report.kinds());
    times.sort();
    let median = times[times.len() / 2].as_secs_f64();
    let shown: Vec<String> = times.iter().map(|t| format!("{:.2}", t.as_secs_f64())).collect();
    println!(
        "{name}: median {median:.2} s (runs: {} s); {} ops, {} records read, {} register ops",
        shown.join(", "),
        report.ops,
        report.stats.records_read,
        report.stats.register_ops
    );
    median
}

fn median(mut seconds: Vec<f64>) -> f64 {
    seconds.sort_by(f64::total_cmp);
    seconds[seconds.len() / 2]
}

fn verdict(name: &str, seconds: f64, target: f64) {
    let outcome = if seconds <= target { "met" } else { "MISSED" };
    println!("{name}: {outcome} ({seconds:.2} s)");
}
