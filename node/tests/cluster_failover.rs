//! A real three-node cluster under a real client: `tests/clients/run.py cluster-failover`
//! (tests/clients/failover.py has the steps and how the log is checked).
//!
//! Three `cairn serve` processes on loopback, a topic with replication factor 3 and
//! `min.insync.replicas=2`, confluent-kafka producing keyed messages with acks=all; the
//! leader of partition 0 is killed with SIGKILL and started again while it produces, and
//! every acknowledged message must then be read back exactly once, in order per partition.
//!
//! The binary is `$CAIRN_BIN` if set, else this package's `cairn` target; the interpreter
//! is `$CAIRN_PYTHON`, else `/opt/cairn-venv/bin/python` if it exists, else `python3`. A
//! missing confluent-kafka skips the test with a notice, except when `CI` is set. The
//! runner, its nodes and its clients form one process group, killed if the test panics
//! or the runner outlives [`RUN_MAX`].

use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// How long the whole scenario may take (it takes about 15 s on 2 idle cores).
const RUN_MAX: Duration = Duration::from_secs(240);
/// run.py's exit status when its scenario was skipped.
const SKIPPED: i32 = 77;

fn in_ci() -> bool {
    std::env::var("CI")
        .is_ok_and(|v| !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "false" | "no"))
}

fn python() -> String {
    let venv = "/opt/cairn-venv/bin/python";
    std::env::var("CAIRN_PYTHON").unwrap_or_else(|_| {
        if Path::new(venv).exists() { venv.to_string() } else { "python3".to_string() }
    })
}

/// Kills the runner's process group (nodes and clients too) unless the runner exited.
struct Group {
    child: Child,
    exited: bool,
}

impl Drop for Group {
    fn drop(&mut self) {
        if !self.exited {
            let group = format!("-{}", self.child.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn kill_9_of_a_partition_leader_under_acks_all_loses_and_reorders_no_acknowledged_message() {
    run_scenario("cluster-failover");
}

/// The same with `enable.idempotence=true` (InitProducerId, five requests in flight): the
/// retries across the leader's death are answered with their original offsets, so no record
/// is written twice.
#[test]
fn kill_9_of_a_partition_leader_under_an_idempotent_producer_writes_no_duplicate() {
    run_scenario("cluster-failover-idempotent");
}

/// Runs `run.py SCENARIO` (a cluster scenario) and checks it passed.
fn run_scenario(scenario: &str) {
    let cairn = std::env::var("CAIRN_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_cairn").into());
    let runner = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/clients/run.py");
    let mut output = tempfile::tempfile().expect("a temporary file for the runner's output");
    let child = Command::new(python())
        .arg(&runner)
        .args(["--cairn", &cairn, scenario])
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(output.try_clone().expect("dup"))
        .stderr(output.try_clone().expect("dup"))
        .process_group(0)
        .spawn()
        .expect("start the Python runner (set CAIRN_PYTHON, or run .ci/install-clients)");
    let mut group = Group { child, exited: false };
    let start = Instant::now();
    let status = loop {
        if let Some(status) = group.child.try_wait().expect("wait for run.py") {
            group.exited = true;
            break Some(status);
        }
        if start.elapsed() > RUN_MAX {
            break None;
        }
        sleep(Duration::from_millis(100));
    };
    drop(group);
    let mut text = String::new();
    output.seek(SeekFrom::Start(0)).and_then(|_| output.read_to_string(&mut text)).ok();
    let Some(status) = status else {
        panic!("run.py did not finish within {RUN_MAX:?} (killed with its nodes)\n{text}");
    };
    if status.code() == Some(SKIPPED) && !in_ci() {
        let _ = writeln!(std::io::stderr(), "skipped {scenario}:\n{text}");
        return;
    }
    assert!(
        status.success() && text.lines().any(|l| l.trim() == "1 passed, 0 failed, 0 skipped"),
        "run.py {scenario} failed ({status})\n{text}"
    );
    print!("{text}");
}

/// The log check itself: on made-up logs it passes retried duplicates and catches a lost,
/// moved, reordered, invented or re-written acknowledged message (needs only Python).
#[test]
fn the_failover_check_catches_every_kind_of_fault_in_a_made_up_log() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/clients/failover_check.py");
    let out = Command::new(python()).arg(&script).arg("--self-test").output();
    let out = match out {
        Ok(out) => out,
        Err(e) if !in_ci() => {
            let _ = writeln!(std::io::stderr(), "skipped: cannot run {}: {e}", python());
            return;
        }
        Err(e) => panic!("cannot run {}: {e}", python()),
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {text}{err}", out.status);
    assert!(text.contains("\"faults_caught\": 6"), "{text}");
}
