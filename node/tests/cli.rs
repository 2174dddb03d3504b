//! The `cairn` binary as an operator meets it: help, mistakes, formatting, starting, stopping.
//!
//! Each test runs the real binary with an empty environment, so a developer's own `CAIRN_*`
//! or `RUST_LOG` variables cannot change the outcome. Tests that start a node listen on port
//! 0, with no HTTP endpoint or one on port 0 too, so they run in parallel with each other and
//! with a real node.

mod common;

use std::path::Path;
use std::process::{Command, ExitStatus, Output};
use std::time::{Duration, Instant};

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");
/// How long a node may take to start or stop before a test gives up on it.
const PROCESS_WAIT_MAX: Duration = Duration::from_secs(30);

fn cairn(args: &[&str]) -> Command {
    let mut command = Command::new(CAIRN);
    command.args(args).env_clear();
    command
}

fn run(command: &mut Command) -> (Output, String, String) {
    let output = command.output().expect("run cairn");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}

fn code(output: &Output) -> Option<i32> {
    output.status.code()
}

fn temp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

fn path(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temporary path")
}

#[test]
fn help_names_every_command_and_shows_examples() {
    let (output, stdout, _) = run(&mut cairn(&["--help"]));
    assert_eq!(code(&output), Some(0));
    for word in ["dev", "serve", "format", "Examples:", "cairn format --data-dir"] {
        assert!(stdout.contains(word), "--help lacks {word:?}:\n{stdout}");
    }
    for command in ["dev", "serve", "format"] {
        let (output, stdout, _) = run(&mut cairn(&[command, "--help"]));
        assert_eq!(code(&output), Some(0), "{command} --help");
        assert!(stdout.contains("Examples:"), "{command} --help has no examples:\n{stdout}");
    }
}

#[test]
fn version_prints_the_version() {
    let (output, stdout, _) = run(&mut cairn(&["--version"]));
    assert_eq!(code(&output), Some(0));
    assert_eq!(stdout.trim(), format!("cairn {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn no_command_shows_the_help_and_exits_2() {
    let (output, _, stderr) = run(&mut cairn(&[]));
    assert_eq!(code(&output), Some(2));
    assert!(stderr.contains("Usage: cairn <COMMAND>"), "{stderr}");
}

#[test]
fn a_misspelt_flag_exits_2_and_names_the_right_one() {
    let (output, _, stderr) = run(&mut cairn(&["format", "--data-dri", "x"]));
    assert_eq!(code(&output), Some(2));
    assert!(stderr.contains("error: unexpected argument '--data-dri'"), "{stderr}");
    assert!(stderr.contains("'--data-dir'"), "{stderr}");
}

#[test]
fn format_creates_cairn_meta_and_refuses_a_second_time() {
    let root = temp();
    let dir = root.path().join("data");
    let args = ["format", "--data-dir", path(&dir), "--node-id", "2", "--cluster-id", "test"];
    let (output, stdout, _) = run(&mut cairn(&args));
    assert_eq!(code(&output), Some(0));
    assert!(stdout.contains("cairn serve --data-dir"), "{stdout}");
    let meta = std::fs::read_to_string(dir.join("cairn.meta")).expect("cairn.meta");
    assert!(meta.contains("node.id=2\n") && meta.contains("cluster.id=test\n"), "{meta}");
    let (output, _, stderr) = run(&mut cairn(&args));
    assert_eq!(code(&output), Some(1));
    assert!(stderr.starts_with("error: data directory"), "{stderr}");
    assert!(stderr.contains("is already formatted"), "{stderr}");
    let after = std::fs::read_to_string(dir.join("cairn.meta")).expect("cairn.meta");
    assert_eq!(after, meta, "a refused format changes nothing");
}

#[test]
fn serve_on_an_unformatted_directory_says_how_to_format_it() {
    let root = temp();
    let dir = root.path().join("data");
    let (output, _, stderr) = run(&mut cairn(&["serve", "--data-dir", path(&dir)]));
    assert_eq!(code(&output), Some(1));
    let hint = format!("run `cairn format --data-dir {}`", dir.display());
    assert!(stderr.contains(&hint), "{stderr}");
    std::fs::create_dir(&dir).expect("mkdir");
    let args = ["serve", "--data-dir", path(&dir), "--node-id", "4"];
    let (output, _, stderr) = run(&mut cairn(&args));
    assert_eq!(code(&output), Some(1));
    assert!(stderr.contains("is not formatted"), "{stderr}");
    assert!(stderr.contains("--node-id 4`"), "the hint keeps the node's id: {stderr}");
}

#[test]
fn serve_refuses_another_nodes_data_directory() {
    let dir = temp();
    let (output, ..) = run(&mut cairn(&["format", "--data-dir", path(dir.path())]));
    assert_eq!(code(&output), Some(0));
    let args = ["serve", "--data-dir", path(dir.path()), "--node-id", "7"];
    let (output, _, stderr) = run(&mut cairn(&args));
    assert_eq!(code(&output), Some(1));
    assert!(stderr.contains("belongs to node.id 0"), "{stderr}");
}

#[test]
fn a_bad_config_key_is_reported_by_name() {
    let root = temp();
    let file = root.path().join("cairn.toml");
    std::fs::write(&file, "node.id = 1\nlog.retention.msec = 5\n").expect("write config");
    let (output, _, stderr) = run(&mut cairn(&["serve", "--config", path(&file)]));
    assert_eq!(code(&output), Some(2));
    assert!(stderr.starts_with("error: config file"), "{stderr}");
    assert!(stderr.contains("unknown key \"log.retention.msec\""), "{stderr}");
    assert!(stderr.contains("did you mean \"log.retention.ms\"?"), "{stderr}");
}

#[test]
fn a_bad_value_names_its_source() {
    let (output, _, stderr) = run(cairn(&["serve"]).env("CAIRN_NUM_PARTITIONS", "many"));
    assert_eq!(code(&output), Some(2));
    assert!(stderr.contains("environment variable CAIRN_NUM_PARTITIONS"), "{stderr}");
    let (output, _, stderr) = run(&mut cairn(&["serve", "--set", "durability=always"]));
    assert_eq!(code(&output), Some(2));
    assert!(stderr.contains("flag --set durability"), "{stderr}");
}

/// Which directory serve tried shows which source won: file < environment < flag.
#[test]
fn environment_beats_the_file_and_flags_beat_the_environment() {
    let root = temp();
    let file = root.path().join("cairn.toml");
    std::fs::write(&file, "data.dir = \"from-file\"\n").expect("write config");
    let tried = |command: &mut Command| {
        let (output, _, stderr) = run(command.current_dir(root.path()));
        assert_eq!(code(&output), Some(1), "{stderr}");
        let name = ["from-file", "from-env", "from-flag"].into_iter().find(|n| stderr.contains(n));
        name.expect("a directory named").to_string()
    };
    let config = ["serve", "--config", path(&file)];
    assert_eq!(tried(&mut cairn(&config)), "from-file");
    let with_env = || {
        let mut command = cairn(&config);
        command.env("CAIRN_DATA_DIR", "from-env");
        command
    };
    assert_eq!(tried(&mut with_env()), "from-env");
    assert_eq!(tried(with_env().args(["--data-dir", "from-flag"])), "from-flag");
}

/// A running node, killed if a test fails before stopping it.
type Node = common::Running;

/// Starts `cairn dev` on `dir` and waits for it to print how to connect.
fn start_dev(dir: &Path) -> Node {
    let args = ["dev", "--data-dir", path(dir), "--listener", "127.0.0.1:0", "--http-listener", ""];
    common::start_until_banner(cairn(&args), PROCESS_WAIT_MAX)
}

fn terminate(node: &mut Node) -> ExitStatus {
    let pid = node.child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
    assert!(status.success(), "kill -TERM {pid}");
    let deadline = Instant::now() + PROCESS_WAIT_MAX;
    loop {
        if let Some(status) = node.child.try_wait().expect("wait for cairn") {
            return status;
        }
        assert!(Instant::now() < deadline, "cairn did not stop within {PROCESS_WAIT_MAX:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Needs the real `server::run`.
#[test]
fn dev_formats_a_new_directory_says_how_to_connect_and_stops_on_sigterm() {
    let root = temp();
    let dir = root.path().join("dev-data");
    let mut node = start_dev(&dir);
    assert!(dir.join("cairn.meta").exists(), "dev formats a missing directory");
    for expected in ["bootstrap server  127.0.0.1:", "kcat -P -b", "kcat -C -b", "metrics"] {
        assert!(node.banner.contains(expected), "banner lacks {expected:?}:\n{}", node.banner);
    }
    let status = terminate(&mut node);
    assert_eq!(status.code(), Some(0), "a clean stop on SIGTERM");
}

/// Needs the real `server::run`, and Linux's `/dev/full` (every write to it fails with
/// ENOSPC), standing for a log file on a disk that filled up: the node drops the log lines,
/// counts them, serves on and stops cleanly. (It used to exit with status 101 at its first
/// log line: `tracing-subscriber` reported the failed write with `eprintln!`, which panics.)
#[test]
fn a_node_whose_log_cannot_be_written_serves_on_and_stops_cleanly() {
    let root = temp();
    let dir = root.path().join("dev-data");
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("open /dev/full");
    let args = [
        "dev",
        "--data-dir",
        path(&dir),
        "--listener",
        "127.0.0.1:0",
        "--http-listener",
        "127.0.0.1:0",
    ];
    let mut node =
        common::start_until_banner_with_stderr(cairn(&args), PROCESS_WAIT_MAX, full.into());
    let text = common::metrics(node.banner_value("metrics"), PROCESS_WAIT_MAX);
    let dropped = text
        .lines()
        .find_map(|line| line.strip_prefix("cairn_log_lines_dropped_total "))
        .unwrap_or_else(|| panic!("no cairn_log_lines_dropped_total in /metrics:\n{text}"));
    let dropped: u64 = dropped.parse().expect("a count");
    assert!(dropped > 0, "the node logged at info while starting, and every line failed");
    assert!(node.child.try_wait().expect("wait for cairn").is_none(), "the node serves on");
    let status = terminate(&mut node);
    assert_eq!(status.code(), Some(0), "a clean stop on SIGTERM");
}

/// Needs the real `server::run`: the first node must stay up.
#[test]
fn a_second_node_on_the_same_data_directory_is_refused() {
    let dir = temp();
    let mut first = start_dev(dir.path());
    let args = ["serve", "--data-dir", path(dir.path()), "--listener", "127.0.0.1:0"];
    let (output, _, stderr) = run(cairn(&args).args(["--http-listener", ""]));
    assert_eq!(code(&output), Some(1), "{stderr}");
    let expected = format!("in use by another cairn process (pid {})", first.child.id());
    assert!(stderr.contains(&expected), "{stderr}");
    assert_eq!(terminate(&mut first).code(), Some(0));
}

const VOTERS: &str = "1@127.0.0.1:19092,2@127.0.0.1:19093,3@127.0.0.1:19094";

#[test]
fn format_with_voters_writes_the_bootstrap_record_and_refuses_a_second_time() {
    let root = temp();
    let dir = root.path().join("node-2");
    let args = [
        "format",
        "--data-dir",
        path(&dir),
        "--node-id",
        "2",
        "--cluster-id",
        "c3",
        "--voters",
        VOTERS,
    ];
    let (output, stdout, stderr) = run(&mut cairn(&args));
    assert_eq!(code(&output), Some(0), "{stderr}");
    assert!(stdout.contains(&format!("--set cluster.voters={VOTERS}")), "{stdout}");
    let meta = std::fs::read_to_string(dir.join("cairn.meta")).expect("cairn.meta");
    assert!(meta.contains("version=2\n") && meta.contains("node.id=2\n"), "{meta}");
    let bootstrap = std::fs::read(dir.join("raft/bootstrap")).expect("raft/bootstrap");
    assert!(bootstrap.windows(2).any(|w| w == b"c3"), "the record names the cluster");
    let (output, _, stderr) = run(&mut cairn(&args));
    assert_eq!(code(&output), Some(1));
    assert!(stderr.contains("is already formatted"), "{stderr}");
    let rejoin = [&args[..], &["--rejoin"]].concat();
    let (output, _, stderr) = run(&mut cairn(&rejoin));
    assert_eq!(code(&output), Some(1), "a rejoin formats only an empty directory: {stderr}");
}

#[test]
fn format_refuses_members_it_cannot_use_and_writes_nothing() {
    let root = temp();
    let dir = root.path().join("data");
    let base = ["format", "--data-dir", path(&dir), "--cluster-id", "c3"];
    let cases: [(&[&str], &str); 5] = [
        (&["--node-id", "1", "--voters", "1@127.0.0.1"], "expected a list of NODE_ID@HOST:PORT"),
        (&["--node-id", "1", "--voters", "1@h:1,1@h:2"], "node 1 is listed twice"),
        (&["--node-id", "4", "--voters", VOTERS], "node 4 is not in --voters or --brokers"),
        (&["--node-id", "1", "--voters", "1@h:1", "--rejoin"], "format it without --rejoin"),
        (&["--node-id", "3", "--voters", VOTERS, "--brokers", "3@h:1"], "node 3 is listed twice"),
    ];
    for (extra, expected) in cases {
        let (output, _, stderr) = run(cairn(&base).args(extra));
        assert_eq!(code(&output), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
    }
    let args = ["format", "--data-dir", path(&dir), "--node-id", "1", "--voters", VOTERS];
    let (output, _, stderr) = run(&mut cairn(&args));
    assert_eq!(code(&output), Some(2));
    assert!(stderr.contains("--voters needs --cluster-id"), "{stderr}");
    assert!(!dir.exists(), "a refused format writes nothing");
}

#[test]
fn serve_refuses_members_that_do_not_fit() {
    let root = temp();
    let dir = root.path().join("data");
    let args = ["format", "--data-dir", path(&dir), "--node-id", "1", "--cluster-id", "c3"];
    let (output, ..) = run(cairn(&args).args(["--voters", VOTERS]));
    assert_eq!(code(&output), Some(0));
    let serve = ["serve", "--data-dir", path(&dir), "--listener", "127.0.0.1:0"];
    let cases = [
        ("cluster.voters=1@nowhere", "flag --set cluster.voters: cluster.voters = \"1@nowhere\""),
        ("cluster.voters=2@h:1,3@h:1", "node.id 1 is not in cluster.voters or cluster.brokers"),
        ("cluster.voters=1@127.0.0.1:1,2@h:1", "was formatted with voters [1, 2, 3]"),
    ];
    for (set, expected) in cases {
        let (output, _, stderr) = run(cairn(&serve).args(["--http-listener", "", "--set", set]));
        assert_eq!(code(&output), Some(2), "{set}: {stderr}");
        assert!(stderr.contains(expected), "{set}: {stderr}");
    }
    let (output, _, stderr) = run(cairn(&serve).args(["--http-listener", ""]));
    assert_eq!(code(&output), Some(2), "{stderr}");
    assert!(stderr.contains("but cluster.voters and cluster.brokers give voters [1]"), "{stderr}");
}

/// What builds before the controller quorum left behind: cairn.meta version 1, metadata/.
fn old_layout(dir: &Path) {
    std::fs::create_dir_all(dir.join("metadata")).expect("mkdir");
    std::fs::write(dir.join("metadata/topics.log"), b"").expect("write");
    let meta = "version=1\nnode.id=0\ncluster.id=old\ncreated.ms=1\n";
    std::fs::write(dir.join("cairn.meta"), meta).expect("write");
}

#[test]
fn a_version_1_directory_is_refused_with_what_to_do() {
    let root = temp();
    let dir = root.path().join("old");
    old_layout(&dir);
    let (output, _, stderr) = run(&mut cairn(&["serve", "--data-dir", path(&dir)]));
    assert_eq!(code(&output), Some(1));
    assert!(
        stderr.contains("holds data of the old single-node layout (format version 1)"),
        "{stderr}"
    );
    assert!(stderr.contains("move it aside"), "{stderr}");
    let args =
        ["dev", "--data-dir", path(&dir), "--listener", "127.0.0.1:0", "--http-listener", ""];
    let (output, _, stderr) = run(&mut cairn(&args));
    assert_eq!(code(&output), Some(1));
    let expected = format!("delete {} and run `cairn dev` again", dir.display());
    assert!(stderr.contains(&expected), "{stderr}");
    let (output, _, stderr) = run(cairn(&args).args(["--nodes", "3"]));
    assert_eq!(code(&output), Some(1));
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn help_explains_the_cluster_flags() {
    let (_, stdout, _) = run(&mut cairn(&["format", "--help"]));
    for word in ["--voters", "--brokers", "--rejoin", "wiped", "--cluster-id"] {
        assert!(stdout.contains(word), "format --help lacks {word:?}:\n{stdout}");
    }
    let (_, stdout, _) = run(&mut cairn(&["dev", "--help"]));
    for word in ["--nodes", "--peer-listener", "node-i", "min(3, N)"] {
        assert!(stdout.contains(word), "dev --help lacks {word:?}:\n{stdout}");
    }
    let (_, stdout, _) = run(&mut cairn(&["serve", "--help"]));
    for word in ["cluster.voters", "cluster.brokers", "peer.listener"] {
        assert!(stdout.contains(word), "serve --help lacks {word:?}:\n{stdout}");
    }
}
