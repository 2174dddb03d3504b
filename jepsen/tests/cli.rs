//! The `cairn-check` binary: its output object, exit codes and error messages.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use serde_json::Value;

fn run(history: &str, extra: &[&str]) -> (Output, Value) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.jsonl");
    std::fs::write(&path, history).unwrap();
    let output = run_on(&path, extra);
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    let json = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout:?}"));
    (output, json)
}

fn run_on(path: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn-check")).arg(path).args(extra).output().unwrap()
}

fn valid_lines() -> Vec<String> {
    vec![
        send(0, "invoke", 1, None),
        send(0, "ok", 1, Some(0)),
        poll(1, "invoke", &[]),
        poll(1, "ok", &[(0, 1)]),
    ]
}

#[test]
fn a_valid_history_exits_0() {
    let (output, json) = run(&history(&valid_lines()), &[]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(json["valid"], Value::Bool(true));
    assert_eq!(json["ops"], 4);
    assert_eq!(json["anomalies"], serde_json::json!({}));
    assert_eq!(String::from_utf8(output.stdout).unwrap().lines().count(), 1, "one object");
}

#[test]
fn anomalies_exit_1_with_kebab_case_names() {
    let mut lines = valid_lines();
    lines[3] = poll(1, "ok", &[(0, 9)]);
    let (output, json) = run(&history(&lines), &[]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(json["valid"], Value::Bool(false));
    assert_eq!(json["anomalies"]["phantom-read"][0]["value"], 9);
    assert_eq!(json["anomalies"]["phantom-read"][0]["read"]["complete"], 3);
    assert_eq!(json["anomalies"]["inconsistent-offsets"][0]["offset"], 0);
}

#[test]
fn a_malformed_line_exits_2_naming_the_line() {
    let mut text = history(&valid_lines());
    text.push_str("{\"index\":4,\"time\":1,\"process\":1,\"type\":\"ok\",\"f\":\"poll\"\n");
    let (output, json) = run(&text, &[]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(json["valid"], "unknown");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("line 5, column"), "{stderr}");
    assert!(stderr.contains("EOF while parsing"), "{stderr}");
}

#[test]
fn a_broken_rule_exits_2_naming_the_line() {
    let mut lines = valid_lines();
    lines.remove(2);
    let (output, _) = run(&history(&lines), &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("line 3: process 1 completed a poll (Ok) that it never invoked"),
        "{stderr}"
    );
}

#[test]
fn a_wrong_value_shape_exits_2() {
    let text = history(&[op(0, "invoke", "assign", r#"{"topic":"t"}"#)]);
    let (output, _) = run(&text, &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("line 1, column"), "{stderr}");
}

#[test]
fn a_missing_file_exits_2() {
    let output = run_on(Path::new("/nonexistent/history.jsonl"), &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8(output.stderr).unwrap().contains("cannot open"));
}

#[test]
fn html_report_is_written() {
    let mut lines = valid_lines();
    lines[3] = poll(1, "ok", &[(0, 9)]);
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.html");
    let (output, _) = run(&history(&lines), &["--html", report.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let page = std::fs::read_to_string(&report).unwrap();
    assert!(page.contains("<h2>phantom-read #1</h2>"), "{page}");
    assert!(page.contains("process 1"));
}

#[test]
fn time_limit_must_be_positive() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.jsonl");
    std::fs::write(&path, history(&valid_lines())).unwrap();
    let output = run_on(&path, &["--time-limit", "0"]);
    assert_eq!(output.status.code(), Some(2), "clap's usage errors exit 2");
    assert_eq!(run_on(&path, &["--time-limit", "0.5"]).status.code(), Some(0));
}
