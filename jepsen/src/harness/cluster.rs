//! The cluster under test: N `cairn serve` processes on loopback, each with its own data
//! directory and ports, configured as docs/operations.md configures a real cluster
//! (formatted with the same cluster id and voters, every node a voter, its own peer
//! listener), with the fault-injecting links of [`crate::harness::proxy`] between them and
//! between clients and them.
//!
//! A node's Kafka, peer and HTTP ports are picked below the kernel's ephemeral port range,
//! so a port left free while its node is down is not taken by some outgoing connection
//! before the restart binds it again.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::proxy::Link;
use super::schedule::Cut;

/// How long a started node may take to accept connections.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// The lowest port picked for a node.
const PORT_MIN: u16 = 20_000;
/// The name of the ballast file that fills a node's disk.
pub const BALLAST: &str = "jepsen-ballast";

/// The cluster id every node is formatted with.
const CLUSTER_ID: &str = "cairn-jepsen";

/// One node: its ports, directories and process.
#[derive(Debug)]
pub struct Node {
    /// The node id (1 to N).
    pub id: u32,
    /// The Kafka listener (the real one; clients use [`Node::client_link`]).
    pub kafka: SocketAddr,
    /// The peer listener.
    pub peer: SocketAddr,
    /// The HTTP listener (metrics, health).
    pub http: SocketAddr,
    /// The data directory.
    pub data_dir: PathBuf,
    /// stdout and stderr of every start, appended.
    pub log: PathBuf,
    /// The link clients reach this node through (its `advertised.listener`).
    pub client_link: Link,
    /// The links this node reaches each other node's peer listener through, by target.
    pub peer_links: BTreeMap<u32, Link>,
    child: Option<Child>,
    /// Whether the process is stopped with SIGSTOP.
    pub paused: bool,
    /// How many times it was started.
    pub starts: u32,
    /// Whether its data directory is a tmpfs mounted by the harness.
    pub mounted: bool,
}

/// An exit that no fault asked for.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UnexpectedExit {
    /// The node.
    pub node: u32,
    /// Its exit status (`None` when killed by a signal).
    pub status: Option<i32>,
    /// Milliseconds after the workload began.
    pub at_ms: u64,
}

/// The nodes of one cluster.
#[derive(Debug)]
pub struct Cluster {
    cairn: PathBuf,
    /// The nodes, by id - 1.
    pub nodes: Vec<Node>,
    /// `cairn serve` settings given to every node (`--set KEY=VALUE`).
    settings: Vec<(String, String)>,
}

impl Cluster {
    /// Picks ports, starts the links, and formats every node's directory under `dir`
    /// (mounting a tmpfs of `disk_mb` MiB on each first when `disk_mb` is given).
    pub async fn create(
        cairn: &Path,
        dir: &Path,
        count: u32,
        settings: Vec<(String, String)>,
        disk_mb: Option<u64>,
    ) -> Result<Cluster, String> {
        let mut ports = free_ports(3 * count as usize)?.into_iter();
        let mut next = || SocketAddr::from(([127, 0, 0, 1], ports.next().expect("3 per node")));
        let mut nodes = Vec::new();
        for id in 1..=count {
            let (kafka, peer, http) = (next(), next(), next());
            let client_link = Link::start(kafka).await.map_err(|e| format!("a proxy: {e}"))?;
            nodes.push(Node {
                id,
                kafka,
                peer,
                http,
                data_dir: dir.join(format!("node-{id}")),
                log: dir.join(format!("node-{id}.log")),
                client_link,
                peer_links: BTreeMap::new(),
                child: None,
                paused: false,
                starts: 0,
                mounted: false,
            });
        }
        let peers: Vec<(u32, SocketAddr)> = nodes.iter().map(|n| (n.id, n.peer)).collect();
        for node in &mut nodes {
            for &(to, address) in peers.iter().filter(|(to, _)| *to != node.id) {
                let link = Link::start(address).await.map_err(|e| format!("a proxy: {e}"))?;
                node.peer_links.insert(to, link);
            }
        }
        let mut cluster = Cluster { cairn: cairn.to_path_buf(), nodes, settings };
        for index in 0..cluster.nodes.len() {
            fs::create_dir_all(&cluster.nodes[index].data_dir)
                .map_err(|e| format!("{}: {e}", cluster.nodes[index].data_dir.display()))?;
            if let Some(mb) = disk_mb {
                mount_tmpfs(&cluster.nodes[index].data_dir, mb)?;
                cluster.nodes[index].mounted = true;
            }
            cluster.format(index).await?;
        }
        Ok(cluster)
    }

    /// The bootstrap servers clients use: every node's client link.
    pub fn bootstrap(&self) -> String {
        let links = self.nodes.iter().map(|n| n.client_link.listen.to_string());
        links.collect::<Vec<_>>().join(",")
    }

    /// The voters as formatted: every node's real peer listener.
    fn voters_formatted(&self) -> String {
        let voters = self.nodes.iter().map(|n| format!("{}@{}", n.id, n.peer));
        voters.collect::<Vec<_>>().join(",")
    }

    /// The voters as node `id` is told them: the others through its own links.
    fn voters_seen_by(&self, id: u32) -> String {
        let node = &self.nodes[id as usize - 1];
        let voters = self.nodes.iter().map(|other| match node.peer_links.get(&other.id) {
            Some(link) => format!("{}@{}", other.id, link.listen),
            None => format!("{}@{}", other.id, other.peer),
        });
        voters.collect::<Vec<_>>().join(",")
    }

    async fn format(&self, index: usize) -> Result<(), String> {
        let node = &self.nodes[index];
        let voters = self.voters_formatted();
        let args = [
            "format".to_string(),
            "--data-dir".into(),
            node.data_dir.display().to_string(),
            "--node-id".into(),
            node.id.to_string(),
            "--cluster-id".into(),
            CLUSTER_ID.into(),
            "--voters".into(),
            voters,
        ];
        let log = open_log(&node.log, &format!("cairn {}", args.join(" ")))?;
        let status = Command::new(&self.cairn)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .status()
            .await
            .map_err(|e| format!("cannot run {}: {e}", self.cairn.display()))?;
        if !status.success() {
            return Err(format!(
                "cairn format of node {} failed ({status}); see {}",
                node.id,
                node.log.display()
            ));
        }
        Ok(())
    }

    /// Starts node `id` without waiting for it to listen.
    pub fn spawn(&mut self, id: u32) -> Result<(), String> {
        let voters = self.voters_seen_by(id);
        let node = &mut self.nodes[id as usize - 1];
        assert!(node.child.is_none(), "node {id} is already running");
        let mut args = vec![
            "serve".to_string(),
            "--data-dir".into(),
            node.data_dir.display().to_string(),
            "--node-id".into(),
            id.to_string(),
            "--listener".into(),
            node.kafka.to_string(),
            "--peer-listener".into(),
            node.peer.to_string(),
            "--http-listener".into(),
            node.http.to_string(),
            "--set".into(),
            format!("cluster.voters={voters}"),
            "--set".into(),
            format!("advertised.listener={}", node.client_link.listen),
        ];
        for (key, value) in &self.settings {
            args.push("--set".into());
            args.push(format!("{key}={value}"));
        }
        node.starts += 1;
        let banner = format!("start #{}: cairn {}", node.starts, args.join(" "));
        let log = open_log(&node.log, &banner)?;
        let child = Command::new(&self.cairn)
            .args(&args)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.cairn.display()))?;
        node.child = Some(child);
        node.paused = false;
        Ok(())
    }

    /// Waits until node `id` accepts connections on its Kafka listener.
    pub async fn wait_listening(&mut self, id: u32) -> Result<(), String> {
        let deadline = Instant::now() + LISTEN_TIMEOUT;
        let node = &mut self.nodes[id as usize - 1];
        loop {
            let child = node.child.as_mut().ok_or_else(|| format!("node {id} is not running"))?;
            if let Ok(Some(status)) = child.try_wait() {
                node.child = None;
                return Err(format!(
                    "node {id} exited ({status}) before listening; see {}",
                    node.log.display()
                ));
            }
            if tokio::net::TcpStream::connect(node.kafka).await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "node {id} did not listen on {} within {LISTEN_TIMEOUT:?}; see {}",
                    node.kafka,
                    node.log.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts every node at once (a quorum must be up to elect a controller), then waits
    /// for each to listen.
    pub async fn start_all(&mut self) -> Result<(), String> {
        for id in 1..=self.nodes.len() as u32 {
            if self.nodes[id as usize - 1].child.is_none() {
                self.spawn(id)?;
            }
        }
        for id in 1..=self.nodes.len() as u32 {
            self.wait_listening(id).await?;
        }
        Ok(())
    }

    /// Whether node `id` has a process (running or paused).
    pub fn is_running(&self, id: u32) -> bool {
        self.nodes[id as usize - 1].child.is_some()
    }

    /// `kill -9` of node `id`; waits for the process to be gone.
    pub async fn kill(&mut self, id: u32) -> Result<(), String> {
        let node = &mut self.nodes[id as usize - 1];
        let Some(mut child) = node.child.take() else { return Ok(()) };
        child.start_kill().map_err(|e| format!("kill -9 of node {id}: {e}"))?;
        let _ = child.wait().await;
        node.paused = false;
        Ok(())
    }

    /// SIGSTOP (`pause`) or SIGCONT of node `id`.
    pub async fn signal_pause(&mut self, id: u32, pause: bool) -> Result<(), String> {
        let node = &mut self.nodes[id as usize - 1];
        let Some(pid) = node.child.as_ref().and_then(Child::id) else { return Ok(()) };
        signal(pid, if pause { "STOP" } else { "CONT" }).await?;
        node.paused = pause;
        Ok(())
    }

    /// Cuts the links `cut` names.
    pub fn apply_cut(&self, cut: &Cut) {
        for node in &self.nodes {
            node.client_link.set_up(!cut.blocks_clients(node.id));
            for (&to, link) in &node.peer_links {
                link.set_up(!cut.blocks_peer(node.id, to));
            }
        }
    }

    /// Heals every link.
    pub fn heal_links(&self) {
        for node in &self.nodes {
            node.client_link.set_up(true);
            node.peer_links.values().for_each(|link| link.set_up(true));
        }
    }

    /// Fills node `id`'s disk with a ballast file until the file system says it is full.
    pub fn fill_disk(&self, id: u32) -> Result<u64, String> {
        let node = &self.nodes[id as usize - 1];
        assert!(node.mounted, "disk-full needs the node's own tmpfs");
        let path = node.data_dir.join(BALLAST);
        let mut file = File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let chunk = vec![0u8; 1 << 20];
        let mut written = 0u64;
        // Bounded by the tmpfs size: every round writes a MiB or stops.
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => return Err(format!("{}: {e}", path.display())),
            }
        }
        Ok(written)
    }

    /// Deletes node `id`'s ballast file if its disk is the harness's own tmpfs.
    pub fn free_disk_if_mounted(&self, id: u32) {
        if self.nodes[id as usize - 1].mounted {
            self.free_disk(id);
        }
    }

    /// Deletes node `id`'s ballast file.
    pub fn free_disk(&self, id: u32) {
        let path = self.nodes[id as usize - 1].data_dir.join(BALLAST);
        let _ = fs::remove_file(path);
    }

    /// Nodes whose process exited without a fault asking for it, since the last call.
    pub fn reap_unexpected(&mut self, at_ms: u64) -> Vec<UnexpectedExit> {
        let mut exits = Vec::new();
        for node in &mut self.nodes {
            let Some(child) = node.child.as_mut() else { continue };
            if let Ok(Some(status)) = child.try_wait() {
                exits.push(UnexpectedExit { node: node.id, status: status.code(), at_ms });
                node.child = None;
                node.paused = false;
            }
        }
        exits
    }

    /// SIGCONT to paused nodes, then SIGTERM to every node at once; kills any still running
    /// after [`STOP_TIMEOUT`]. Returns the nodes that did not exit cleanly.
    pub async fn stop_all(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        for id in 1..=self.nodes.len() as u32 {
            let _ = self.signal_pause(id, false).await;
            if let Some(pid) = self.nodes[id as usize - 1].child.as_ref().and_then(Child::id) {
                let _ = signal(pid, "TERM").await;
            }
        }
        for node in &mut self.nodes {
            let Some(mut child) = node.child.take() else { continue };
            match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
                Ok(Ok(status)) if status.success() => {}
                Ok(Ok(status)) => problems.push(format!("node {} exited {status}", node.id)),
                Ok(Err(e)) => problems.push(format!("node {}: {e}", node.id)),
                Err(_) => {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    problems.push(format!("node {} ignored SIGTERM for {STOP_TIMEOUT:?}", node.id));
                }
            }
        }
        problems
    }

    /// Unmounts the tmpfs data directories (after `stop_all`).
    pub fn unmount_all(&mut self) {
        for node in &mut self.nodes {
            if node.mounted {
                let done = std::process::Command::new("umount").arg(&node.data_dir).status();
                if !matches!(done, Ok(status) if status.success()) {
                    eprintln!("cairn-jepsen: cannot unmount {}", node.data_dir.display());
                }
                node.mounted = false;
            }
        }
    }
}

/// Whether the harness runs as root (needed to mount a tmpfs for disk-full).
pub fn is_root() -> bool {
    let Ok(status) = fs::read_to_string("/proc/self/status") else { return false };
    let uid = status.lines().find_map(|line| line.strip_prefix("Uid:"));
    // Real, effective, saved, file system: the effective one decides.
    uid.and_then(|ids| ids.split_whitespace().nth(1)) == Some("0")
}

fn mount_tmpfs(dir: &Path, mb: u64) -> Result<(), String> {
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
        .arg(dir)
        .status()
        .map_err(|e| format!("cannot run mount: {e}"))?;
    if !status.success() {
        return Err(format!("mount -t tmpfs on {} failed ({status})", dir.display()));
    }
    Ok(())
}

async fn signal(pid: u32, name: &str) -> Result<(), String> {
    let status = Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .status()
        .await
        .map_err(|e| format!("cannot run kill -s {name}: {e}"))?;
    if !status.success() {
        return Err(format!("kill -s {name} {pid} failed ({status})"));
    }
    Ok(())
}

fn open_log(path: &Path, banner: &str) -> Result<File, String> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    writeln!(file, "\n===== cairn-jepsen: {banner}").map_err(|e| e.to_string())?;
    Ok(file)
}

/// `count` distinct free loopback ports below the ephemeral range.
fn free_ports(count: usize) -> Result<Vec<u16>, String> {
    let ephemeral_min = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let (low, high) =
        if ephemeral_min > PORT_MIN + 1_000 { (PORT_MIN, ephemeral_min) } else { (10_000, 20_000) };
    // Start somewhere that depends on the process, so parallel runs rarely collide; a port
    // is taken only if it binds now.
    let span = u32::from(high - low);
    let start = (std::process::id().wrapping_mul(7_919)) % span;
    let mut ports = Vec::with_capacity(count);
    for step in 0..span {
        let port = low + ((start + step) % span) as u16;
        if bindable(port) {
            ports.push(port);
            if ports.len() == count {
                return Ok(ports);
            }
        }
    }
    Err(format!("fewer than {count} free loopback ports between {low} and {high}"))
}

fn bindable(port: u16) -> bool {
    match StdListener::bind(("127.0.0.1", port)) {
        Ok(listener) => {
            drop(listener);
            true
        }
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => false,
        Err(_) => false,
    }
}
