//! Real Kafka clients (kcat, confluent-kafka, kafka-python) against a real `cairn` process.
//!
//! Each test runs one scenario of `tests/clients/run.py` (see docs/testing.md), which starts
//! `cairn dev` on a fresh data dir and free loopback ports, runs the client scripts with
//! timeouts and always stops the node. The runner prints what was expected and what was
//! seen, the kept data dir and the tail of the node's log; a failing test shows all of it.
//!
//! The binary is `$CAIRN_BIN` if set, else this package's `cairn` target. The Python
//! interpreter is `$CAIRN_PYTHON`, else `/opt/cairn-venv/bin/python` (made by
//! `.ci/install-clients`) if it exists, else `python3`. A missing client tool skips the
//! scenario with a notice, except when `CI` is set: then the test fails with the install
//! command. The scenarios run one at a time (they are heavy for 2 cores), each bounded.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant};

/// run.py's exit status when every scenario it was asked for was skipped.
const SKIPPED: i32 = 77;

/// One scenario at a time: each starts its own node and clients.
static SERIAL: Mutex<()> = Mutex::new(());

fn in_ci() -> bool {
    std::env::var("CI")
        .is_ok_and(|v| !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "false" | "no"))
}

/// A notice that `cargo test` does not swallow (it captures `print!`, not direct writes).
fn notice(message: &str) {
    let _ = writeln!(std::io::stderr(), "{message}");
}

fn python() -> String {
    if let Ok(p) = std::env::var("CAIRN_PYTHON") {
        return p;
    }
    let venv = "/opt/cairn-venv/bin/python";
    if Path::new(venv).exists() { venv.to_string() } else { "python3".to_string() }
}

/// The runner and everything it started (node, clients) are one process group; dropping the
/// guard kills the group unless the runner already exited, so no node outlives a test, even
/// one that panics or times out. (run.py also makes its children die with it.)
struct RunnerGuard {
    child: Child,
    exited: bool,
}

impl RunnerGuard {
    fn wait_bounded(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.exited = true;
                    return Some(status);
                }
                Ok(None) if start.elapsed() >= limit => return None,
                Ok(None) => sleep(Duration::from_millis(100)),
                Err(e) => panic!("waiting for run.py failed: {e}"),
            }
        }
    }
}

impl Drop for RunnerGuard {
    fn drop(&mut self) {
        if self.exited {
            return;
        }
        // SIGTERM first: run.py then stops its node and reports; SIGKILL the whole group
        // after a grace period.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).stderr(Stdio::null()).status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
        let _ = self.child.wait();
    }
}

fn read_all(mut file: File) -> String {
    let mut bytes = Vec::new();
    let _ = file.seek(SeekFrom::Start(0)).and_then(|_| file.read_to_end(&mut bytes));
    String::from_utf8_lossy(&bytes).into_owned()
}

fn run_scenario(scenario: &str, limit: Duration) {
    let _serial = SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let ci = in_ci();

    // $CAIRN_BIN (e.g. a release build), else the `cairn` binary target of this package,
    // read at compile time so that this file builds even where the target does not exist.
    let cairn =
        std::env::var("CAIRN_BIN").ok().or(option_env!("CARGO_BIN_EXE_cairn").map(String::from));
    let Some(cairn) = cairn else {
        assert!(
            !ci,
            "{scenario}: no `cairn` binary target in cairn-node; cannot run the real-client tests"
        );
        notice(&format!("skipped {scenario}: no `cairn` binary target to test"));
        return;
    };
    let runner = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/clients/run.py");
    let python = python();

    let output = tempfile::tempfile().expect("a temporary file for the runner's output");
    let child = Command::new(&python)
        .arg(&runner)
        .arg("--cairn")
        .arg(&cairn)
        .arg(scenario)
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(output.try_clone().expect("dup output file"))
        .stderr(output.try_clone().expect("dup output file"))
        .process_group(0)
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(e) => {
            let message = format!(
                "cannot start {python} ({e}); install Python 3 and the clients with `bash .ci/install-clients`, \
                 or point CAIRN_PYTHON at an interpreter"
            );
            assert!(!ci, "{scenario}: {message}");
            notice(&format!("skipped {scenario}: {message}"));
            return;
        }
    };
    let mut guard = RunnerGuard { child, exited: false };
    let status = guard.wait_bounded(limit);
    drop(guard); // on a timeout, stops the runner and its node before reading the output
    let text = read_all(output);

    let Some(status) = status else {
        panic!(
            "{scenario}: run.py did not finish within {} s (killed, with its node)\n{text}",
            limit.as_secs()
        );
    };
    match status.code() {
        Some(0) => {
            // The runner says how many scenarios ran; a pass that ran nothing is a failure.
            assert!(
                text.lines().any(|l| l.trim() == "1 passed, 0 failed, 0 skipped"),
                "{scenario}: run.py exited 0 without reporting one passed scenario\n{text}"
            );
            print!("{text}");
        }
        Some(SKIPPED) => {
            let prefix = format!("SKIPPED {scenario}: ");
            let why: Vec<&str> =
                text.lines().filter_map(|l| l.strip_prefix(prefix.as_str())).collect();
            notice(&format!("skipped {scenario}: {}", why.join("; ")));
        }
        _ => panic!(
            "{scenario}: run.py failed ({status}) with {python} {}\n{text}",
            runner.display()
        ),
    }
}

#[test]
fn kcat_produces_and_consumes_10000_lines_byte_for_byte() {
    run_scenario("kcat", Duration::from_secs(600));
}

#[test]
fn confluent_kafka_keyed_100000_acks_all_read_back_with_assign() {
    run_scenario("confluent-keyed", Duration::from_secs(900));
}

#[test]
fn kafka_python_admin_creates_describes_and_deletes_a_topic() {
    run_scenario("kafka-python-admin", Duration::from_secs(300));
}

#[test]
fn aiokafka_produces_idempotently_and_a_group_reads_commits_and_resumes() {
    run_scenario("aiokafka", Duration::from_secs(600));
}

#[test]
fn cairn_client_and_confluent_kafka_read_each_others_records_with_every_codec() {
    run_scenario("cairn-interop", Duration::from_secs(600));
}

#[test]
fn cairn_client_and_confluent_kafka_share_a_cooperative_sticky_group_each_leading_once() {
    run_scenario("cooperative-interop", Duration::from_secs(600));
}

#[test]
fn sigkill_under_acks_all_loses_no_acknowledged_message_with_fsync() {
    run_scenario("crash-fsync", Duration::from_secs(600));
}

#[test]
fn sigterm_and_restart_keep_every_message() {
    run_scenario("clean-restart", Duration::from_secs(600));
}

#[test]
fn consumer_groups_of_three_clients_commit_resume_and_survive_a_sigkill() {
    run_scenario("groups", Duration::from_secs(600));
}

#[test]
fn a_group_of_three_covers_six_partitions_and_two_take_over_when_one_leaves() {
    run_scenario("group-rebalance", Duration::from_secs(600));
}

#[test]
fn committed_offsets_survive_a_sigkill_of_the_groups_coordinator_in_a_cluster() {
    run_scenario("coordinator-failover", Duration::from_secs(600));
}
