//! The `cairn` binary's client commands (`topic`, `produce`, `consume`) against a real
//! `cairn dev` process, as a user or a script runs them.

mod common;

use std::io::Write as _;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");
const PROCESS_WAIT_MAX: Duration = Duration::from_secs(30);

fn cairn(args: &[&str]) -> Command {
    let mut command = Command::new(CAIRN);
    command.args(args).env_clear();
    command
}

/// Runs `cairn ARGS --bootstrap BOOTSTRAP` with `stdin`; returns the output and its texts.
fn run(bootstrap: &str, args: &[&str], stdin: &str) -> (Output, String, String) {
    let mut command = cairn(args);
    command.args(["--bootstrap", bootstrap]);
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cairn");
    child.stdin.take().expect("piped stdin").write_all(stdin.as_bytes()).expect("write stdin");
    let output = child.wait_with_output().expect("wait for cairn");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}

fn ok(bootstrap: &str, args: &[&str], stdin: &str) -> String {
    let (output, stdout, stderr) = run(bootstrap, args, stdin);
    assert!(output.status.success(), "cairn {args:?} failed: {stderr}");
    stdout
}

fn start_dev(dir: &std::path::Path) -> (common::Running, String) {
    let data_dir = dir.to_str().expect("UTF-8 path");
    let args = ["dev", "--data-dir", data_dir, "--listener", "127.0.0.1:0", "--http-listener", ""];
    let node = common::start_until_banner(cairn(&args), PROCESS_WAIT_MAX);
    let bootstrap = node.banner_value("bootstrap server").to_string();
    (node, bootstrap)
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines().map(|line| serde_json::from_str(line).expect("a JSON line")).collect()
}

#[test]
fn topics_are_created_listed_described_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (_node, bootstrap) = start_dev(dir.path());
    let b = bootstrap.as_str();
    let created =
        ok(b, &["topic", "create", "orders", "-p", "4", "--config", "retention.ms=60000"], "");
    assert!(created.contains("Created topic orders"), "{created}");

    let listed: serde_json::Value =
        serde_json::from_str(&ok(b, &["topic", "list", "--output", "json"], "")).unwrap();
    let orders = listed.as_array().unwrap().iter().find(|t| t["name"] == "orders").unwrap();
    assert_eq!(orders["partitions"], 4);
    assert!(ok(b, &["topic", "list"], "").contains("orders"));

    let described: serde_json::Value =
        serde_json::from_str(&ok(b, &["topic", "describe", "orders", "-o", "json"], "")).unwrap();
    assert_eq!(described["partitions"].as_array().unwrap().len(), 4);
    assert_eq!(described["configs"]["retention.ms"], "60000");
    let text = ok(b, &["topic", "describe", "orders"], "");
    assert!(text.contains("retention.ms=60000") && text.contains("PARTITION"), "{text}");

    let (output, _, stderr) = run(b, &["topic", "create", "orders"], "");
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("TOPIC_ALREADY_EXISTS"), "{stderr}");

    assert!(ok(b, &["topic", "delete", "orders"], "").contains("Deleted topic orders"));
    let (output, _, stderr) = run(b, &["topic", "describe", "orders"], "");
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("cairn topic create orders"), "says what to do: {stderr}");
}

#[test]
fn produced_lines_come_back_with_their_keys_headers_and_order() {
    let dir = tempfile::tempdir().unwrap();
    let (_node, bootstrap) = start_dev(dir.path());
    let b = bootstrap.as_str();
    ok(b, &["topic", "create", "lines", "--partitions", "2"], "");
    let input: String = (0..300).map(|i| format!("user-{}:event {i}\n", i % 7)).collect();
    let args = ["produce", "lines", "-K", ":", "--compression", "zstd", "--header", "app=test"];
    let (output, _, stderr) = run(b, &args, &input);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("Produced 300 records"), "{stderr}");

    let args = ["consume", "lines", "--from-beginning", "--count", "300", "--output", "json"];
    let records = json_lines(&ok(b, &args, ""));
    assert_eq!(records.len(), 300);
    for record in &records {
        let key = record["key"].as_str().unwrap();
        let value = record["value"].as_str().unwrap();
        let index: usize = value.strip_prefix("event ").unwrap().parse().unwrap();
        assert_eq!(key, format!("user-{}", index % 7));
        assert_eq!(record["headers"][0]["key"], "app");
        assert_eq!(record["headers"][0]["value"], "test");
    }
    // Per key, the records come in the order they were written.
    for user in 0..7 {
        let indexes: Vec<usize> = records
            .iter()
            .filter(|r| r["key"] == format!("user-{user}"))
            .map(|r| r["value"].as_str().unwrap()[6..].parse().unwrap())
            .collect();
        assert!(indexes.windows(2).all(|w| w[0] < w[1]), "user-{user}: {indexes:?}");
    }

    let args =
        ["consume", "lines", "--from-beginning", "--partition", "0", "--idle-timeout-ms", "500"];
    let text = ok(b, &args, "");
    let expected = records.iter().filter(|r| r["partition"] == 0).count();
    assert_eq!(text.lines().count(), expected, "text output is one value per line");
}

#[test]
fn a_node_that_is_not_there_is_named_with_what_to_do() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);
    let (output, _, stderr) = run(&address, &["topic", "list"], "");
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains(&address) && stderr.contains("cairn dev"), "{stderr}");
    let (output, _, stderr) = run(&address, &["produce", "t", "--acks", "2"], "");
    assert_eq!(output.status.code(), Some(2), "a bad flag value is a usage error: {stderr}");
}

#[test]
fn a_group_consumer_resumes_where_the_last_one_committed() {
    let dir = tempfile::tempdir().unwrap();
    let (_node, bootstrap) = start_dev(dir.path());
    let b = bootstrap.as_str();
    ok(b, &["topic", "create", "jobs", "--partitions", "1"], "");
    let input: String = (0..10).map(|i| format!("job {i}\n")).collect();
    ok(b, &["produce", "jobs"], &input);
    let args = ["consume", "jobs", "--group", "workers", "--from-beginning", "--count", "4"];
    assert_eq!(ok(b, &args, ""), "job 0\njob 1\njob 2\njob 3\n");
    let args = ["consume", "jobs", "--group", "workers", "--count", "6", "-o", "json"];
    let offsets: Vec<i64> =
        json_lines(&ok(b, &args, "")).iter().map(|r| r["offset"].as_i64().unwrap()).collect();
    assert_eq!(offsets, [4, 5, 6, 7, 8, 9], "the second member starts at the commit");

    ok(b, &["produce", "jobs"], "job 10\njob 11\njob 12\n");
    let lag = serde_json::from_str::<serde_json::Value>(&ok(
        b,
        &["group", "lag", "workers", "-o", "json"],
        "",
    ))
    .unwrap();
    let row = &lag.as_array().unwrap()[0];
    assert_eq!((row["topic"].as_str(), row["partition"].as_i64()), (Some("jobs"), Some(0)));
    assert_eq!(
        (row["committed"].as_i64(), row["end"].as_i64(), row["lag"].as_i64()),
        (Some(10), Some(13), Some(3))
    );
    let text = ok(b, &["group", "lag", "workers"], "");
    assert!(text.contains("Total lag: 3"), "{text}");
    let groups = ok(b, &["group", "list"], "");
    assert!(groups.contains("workers"), "{groups}");
    let described: serde_json::Value =
        serde_json::from_str(&ok(b, &["group", "describe", "workers", "-o", "json"], "")).unwrap();
    assert_eq!(described["group"], "workers");
    assert_eq!(described["members"].as_array().unwrap().len(), 0, "every member left");
}
