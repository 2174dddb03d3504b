//! `cairn bench produce|consume|e2e` against a real `cairn dev` process: the counts in the
//! JSON reports are exact (a lost or doubled record fails), the figures are sane, and `e2e`
//! at a small rate finishes on its own.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");
const PROCESS_WAIT_MAX: Duration = Duration::from_secs(30);
/// How long one bench command may take before the test fails instead of hanging.
const BENCH_WAIT_MAX: Duration = Duration::from_secs(60);
const RECORDS: u64 = 20_000;

fn cairn(args: &[&str]) -> Command {
    let mut command = Command::new(CAIRN);
    command.args(args).env_clear();
    command
}

/// Runs `cairn ARGS --bootstrap BOOTSTRAP --output json`, killed after `BENCH_WAIT_MAX`.
fn bench(bootstrap: &str, args: &[&str]) -> (Output, Option<Value>) {
    let mut child = cairn(args)
        .args(["--bootstrap", bootstrap, "--output", "json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cairn");
    let deadline = Instant::now() + BENCH_WAIT_MAX;
    while child.try_wait().expect("poll cairn").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("cairn {args:?} ran longer than {BENCH_WAIT_MAX:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("wait for cairn");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = stdout.lines().next().map(|line| serde_json::from_str(line).expect("JSON"));
    (output, report)
}

fn ok(bootstrap: &str, args: &[&str]) -> Value {
    let (output, report) = bench(bootstrap, args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "cairn {args:?} failed: {stderr}");
    report.expect("a report")
}

fn start_dev(dir: &std::path::Path) -> (common::Running, String) {
    let data_dir = dir.to_str().expect("UTF-8 path");
    let args = ["dev", "--data-dir", data_dir, "--listener", "127.0.0.1:0", "--http-listener", ""];
    let node = common::start_until_banner(cairn(&args), PROCESS_WAIT_MAX);
    let bootstrap = node.banner_value("bootstrap server").to_string();
    (node, bootstrap)
}

fn number(report: &Value, field: &str) -> f64 {
    report[field].as_f64().unwrap_or_else(|| panic!("{field} in {report}"))
}

fn assert_latencies_sane(latency: &Value, count: u64) {
    assert_eq!(latency["count"].as_u64(), Some(count), "{latency}");
    let ms = |name: &str| latency[name].as_f64().unwrap_or_else(|| panic!("{name}"));
    let (p50, p90, p99, p999, max) =
        (ms("p50_ms"), ms("p90_ms"), ms("p99_ms"), ms("p99_9_ms"), ms("max_ms"));
    assert!(p50 > 0.0, "{latency}");
    assert!(p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max * 1.001, "{latency}");
    assert!(max < BENCH_WAIT_MAX.as_secs_f64() * 1000.0, "{latency}");
}

#[test]
fn produced_records_are_all_consumed_once_and_no_more() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_node, bootstrap) = start_dev(dir.path());
    let records = RECORDS.to_string();
    // Three partitions: the sticky partitioner spreads the records over all of them.
    let create = cairn(&["topic", "create", "bench", "--partitions", "3", "--bootstrap"])
        .arg(&bootstrap)
        .output()
        .expect("run cairn");
    assert!(create.status.success(), "{}", String::from_utf8_lossy(&create.stderr));

    let args = ["bench", "produce", "bench", "--records", &records, "--batch-size", "4096"];
    let produced = ok(&bootstrap, &args);
    assert_eq!(produced["records_acked"].as_u64(), Some(RECORDS), "{produced}");
    assert_eq!(produced["records_failed"].as_u64(), Some(0), "{produced}");
    assert!(number(&produced, "records_per_s") > 0.0, "{produced}");
    let mb = number(&produced, "records_per_s") * 100.0 / 1e6;
    assert!((number(&produced, "mb_per_s") - mb).abs() < 1e-6 * mb.max(1.0), "{produced}");
    assert_latencies_sane(&produced["latency"], RECORDS);

    let consumed = ok(&bootstrap, &["bench", "consume", "bench", "--records", &records]);
    assert_eq!(consumed["records_consumed"].as_u64(), Some(RECORDS), "{consumed}");
    assert_eq!(consumed["duplicates"].as_u64(), Some(0), "{consumed}");
    assert_eq!(consumed["bytes"].as_u64(), Some(RECORDS * 100), "{consumed}");

    // One more than was produced never comes: the topic holds exactly RECORDS records.
    let more = (RECORDS + 1).to_string();
    let args = ["bench", "consume", "bench", "--records", &more, "--timeout-ms", "2000"];
    let (output, report) = bench(&bootstrap, &args);
    assert!(!output.status.success(), "{report:?}");
    let report = report.expect("a report even on failure");
    assert_eq!(report["records_consumed"].as_u64(), Some(RECORDS), "{report}");
}

#[test]
fn e2e_at_a_small_rate_finishes_on_its_own_with_every_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_node, bootstrap) = start_dev(dir.path());
    let args = ["bench", "e2e", "e2e", "--records", "500", "--throughput", "500", "--acks", "all"];
    let report = ok(&bootstrap, &args);
    assert_eq!(report["records_acked"].as_u64(), Some(500), "{report}");
    assert_eq!(report["records_consumed"].as_u64(), Some(500), "{report}");
    assert_eq!(report["duplicates"].as_u64(), Some(0), "{report}");
    assert_latencies_sane(&report["latency"], 500);
    assert_latencies_sane(&report["produce_latency"], 500);
    // Paced at 500/s, 500 records take about a second, not much less.
    assert!(number(&report, "elapsed_s") >= 0.9, "{report}");
}
