//! `cairn-jepsen test` refuses bad flags with a message that names the flag, before it
//! starts anything.

#![cfg(feature = "harness")]

use std::process::{Command, Output};

fn cairn_jepsen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn-jepsen")).args(args).output().expect("cairn-jepsen runs")
}

/// Runs with `args` and asserts a refusal (non-zero, nothing started) whose stderr says
/// `expected`.
fn refused(args: &[&str], expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    let out_arg = out.to_str().unwrap();
    // A file that exists stands in for the cairn binary, so only the flag under test is bad.
    let fake_cairn = dir.path().join("cairn");
    std::fs::write(&fake_cairn, b"").unwrap();
    let mut full = vec!["test", "--out", out_arg, "--cairn", fake_cairn.to_str().unwrap()];
    full.extend_from_slice(args);
    let output = cairn_jepsen(&full);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{args:?} was accepted");
    assert!(stderr.contains(expected), "{args:?}: stderr does not say {expected:?}:\n{stderr}");
    assert!(!out.exists(), "{args:?}: the results folder was made for a refused run");
}

#[test]
fn zero_nodes_are_refused() {
    refused(&["--nodes", "0"], "--nodes 0");
}

#[test]
fn too_many_nodes_are_refused() {
    refused(&["--nodes", "10"], "give 1 to 9 nodes");
}

#[test]
fn an_unknown_fault_is_refused_with_the_known_ones() {
    refused(&["--faults", "kill,flood"], "unknown fault \"flood\"");
}

#[test]
fn a_duration_without_a_known_unit_is_refused() {
    refused(&["--time", "2 weeks"], "the unit must be ms, s, m or h");
    refused(&["--time", "abc"], "use e.g. 120s");
}

#[test]
fn a_run_shorter_than_the_minimum_is_refused() {
    refused(&["--time", "1s"], "a run lasts at least");
}

#[test]
fn a_zero_rate_is_refused() {
    refused(&["--rate", "0"], "--rate 0");
}

#[test]
fn a_missing_cairn_binary_is_refused_with_the_build_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    let missing = dir.path().join("no-such-cairn");
    let output = cairn_jepsen(&[
        "test",
        "--out",
        out.to_str().unwrap(),
        "--cairn",
        missing.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cargo build --release -p cairn-node --bin cairn"), "{stderr}");
}

#[test]
fn a_results_folder_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("history.jsonl"), b"{}\n").unwrap();
    let fake_cairn = dir.path().join("cairn");
    std::fs::write(&fake_cairn, b"").unwrap();
    let output = cairn_jepsen(&[
        "test",
        "--out",
        dir.path().to_str().unwrap(),
        "--cairn",
        fake_cairn.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("exists and is not empty"), "{stderr}");
}

#[test]
fn disk_full_without_root_is_refused_as_unavailable() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0");
    if root {
        // As root the fault is available; the refusal cannot be shown here.
        refused(&["--faults", "disk-full", "--disk-mb", "1"], "--disk-mb 1");
    } else {
        refused(&["--faults", "disk-full"], "the disk-full fault is unavailable");
    }
}
