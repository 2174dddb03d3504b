//! `cairn dev --nodes 3` as a process: three nodes of one cluster start on free ports, each
//! Kafka listener answers, their peer connections come up, and SIGTERM stops all three.
//!
//! The nodes' replication is the core's and is tested there and in the simulator; this test
//! holds whatever the core does with peer messages.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");
/// How long the nodes may take to start or stop before the test gives up on them.
const PROCESS_WAIT_MAX: Duration = Duration::from_secs(30);
/// ApiVersions' API key (KIP-35).
const API_VERSIONS: i16 = 18;

/// The process, killed if the test fails before stopping it.
type Cluster = common::Running;

/// Starts `cairn dev --nodes 3` on `dir` with every port picked by the system, and waits
/// for its banner.
fn start_cluster(dir: &Path) -> Cluster {
    let dir = dir.to_str().expect("UTF-8 temporary path");
    let args = [
        "dev",
        "--nodes",
        "3",
        "--data-dir",
        dir,
        "--listener",
        "127.0.0.1:0",
        "--peer-listener",
        "127.0.0.1:0",
        "--http-listener",
        "127.0.0.1:0",
    ];
    let mut command = Command::new(CAIRN);
    command.args(args).env_clear();
    common::start_until_banner(command, PROCESS_WAIT_MAX)
}

/// The value after `label` on the banner's line that has it.
/// Sends ApiVersions v0 with `correlation_id` and returns the answer's error code.
fn api_versions(address: &str, correlation_id: i32) -> i16 {
    let mut stream = TcpStream::connect(address).expect("connect to a Kafka listener");
    stream.set_read_timeout(Some(PROCESS_WAIT_MAX)).unwrap();
    let client_id = b"cluster-test";
    let mut request = Vec::new();
    request.extend_from_slice(&API_VERSIONS.to_be_bytes());
    request.extend_from_slice(&0i16.to_be_bytes());
    request.extend_from_slice(&correlation_id.to_be_bytes());
    request.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
    request.extend_from_slice(client_id);
    let mut frame = (request.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&request);
    stream.write_all(&frame).expect("send ApiVersions");
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).expect("an answer");
    let mut answer = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut answer).expect("the whole answer");
    assert_eq!(answer[..4], correlation_id.to_be_bytes(), "the answer's correlation id");
    i16::from_be_bytes([answer[4], answer[5]])
}

/// `/metrics` of one node.
fn metrics(url: &str) -> String {
    common::metrics(url, PROCESS_WAIT_MAX)
}

fn terminate(cluster: &mut Cluster) -> Option<i32> {
    let pid = cluster.child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
    assert!(status.success(), "kill -TERM {pid}");
    let deadline = Instant::now() + PROCESS_WAIT_MAX;
    loop {
        if let Some(status) = cluster.child.try_wait().expect("wait for cairn") {
            return status.code();
        }
        assert!(Instant::now() < deadline, "cairn did not stop within {PROCESS_WAIT_MAX:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn dev_with_three_nodes_serves_kafka_on_each_connects_the_peers_and_stops_on_sigterm() {
    let root = tempfile::tempdir().expect("temporary directory");
    let dir = root.path().join("cairn-data");
    let mut cluster = start_cluster(&dir);
    let bootstrap = cluster.banner_value("bootstrap servers").to_string();
    let servers: Vec<&str> = bootstrap.split(',').collect();
    assert_eq!(servers.len(), 3, "{}", cluster.banner);
    for (n, server) in servers.iter().enumerate() {
        assert_eq!(api_versions(server, 7 + n as i32), 0, "ApiVersions on {server}");
    }
    assert!(cluster.banner.contains(&format!("kcat -P -b {bootstrap} -t demo")));
    for node in 1..=3 {
        assert!(dir.join(format!("node-{node}/raft/bootstrap")).exists(), "node {node} formatted");
        let line = cluster.banner_value(&format!("node {node} "));
        let url = line.split_whitespace().last().expect("a metrics URL").to_string();
        let deadline = Instant::now() + PROCESS_WAIT_MAX;
        while !metrics(&url).contains("\ncairn_peers_connected 2\n") {
            assert!(Instant::now() < deadline, "node {node} never connected to both peers");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert_eq!(terminate(&mut cluster), Some(0), "a clean stop on SIGTERM");

    // Started again, the cluster finds its directories and keeps its id.
    let id = cluster.banner_value("cluster").to_string();
    let mut again = start_cluster(&dir);
    assert_eq!(again.banner_value("cluster"), id);
    assert_eq!(terminate(&mut again), Some(0));
}
