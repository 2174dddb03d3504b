//! `cairn`: runs a Cairn node (`cairn dev`, `cairn serve`) and formats its data directory
//! (`cairn format`).
//!
//! The binary's own modules, beside the library's in `src/` but not part of it: [`cli`] (the
//! flags and help) and [`config`] (the config keys and their sources). The library takes a
//! finished `ServerConfig`; everything about how an operator spells one lives here.
//!
//! Exit status: 0 after a clean stop; 1 when the node cannot start or fails (data directory,
//! ports, disk); 2 when the command line, a `CAIRN_*` variable or the config file is wrong;
//! 128 + the signal's number (130, 143) when a second SIGINT or SIGTERM cut a stop short.

#![warn(missing_docs)]

mod cli;
mod config;

use std::fs::File;
use std::io::{self, IsTerminal as _, Read as _, Write as _};
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use cairn_client::cli as client_cli;
use cairn_node::core::io::NodeId;
use cairn_node::runtime::datadir::{self, DataDir, DataDirError, FormatSpec};
use cairn_node::runtime::logging;
use cairn_node::runtime::server::{self, Server, ServerConfig};
use clap::Parser as _;

/// jemalloc, not the system allocator: glibc gave the pages of every freed request buffer
/// back to the kernel, and the next request faulted them in again (decision 0024).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command, DevArgs, FormatArgs, NodeFlags, ServeArgs};
use crate::config::{Config, ConfigError, Origin};

/// Why the command failed, which decides the exit status.
#[derive(Debug)]
enum Failure {
    /// The command line, environment or config file is wrong (exit 2).
    Usage(String),
    /// The node could not start or stopped on an error (exit 1).
    Runtime(String),
}

impl From<ConfigError> for Failure {
    fn from(error: ConfigError) -> Self {
        Failure::Usage(error.to_string())
    }
}

impl From<DataDirError> for Failure {
    fn from(error: DataDirError) -> Self {
        match error {
            DataDirError::BadClusterId { .. } | DataDirError::Members { .. } => {
                Failure::Usage(error.to_string())
            }
            _ => Failure::Runtime(error.to_string()),
        }
    }
}

fn main() -> ExitCode {
    // clap prints its own errors with a hint and exits 2 (0 for --help and --version).
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Dev(args) => dev(args),
        Command::Serve(args) => serve(args),
        Command::Format(args) => format(args),
        Command::Topic(args) => client_command(client_cli::Command::Topic(args)),
        Command::Produce(args) => client_command(client_cli::Command::Produce(args)),
        Command::Consume(args) => client_command(client_cli::Command::Consume(args)),
        Command::Group(args) => client_command(client_cli::Command::Group(args)),
        Command::Bench(args) => client_command(client_cli::Command::Bench(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}

/// `cairn topic|produce|consume|group`, implemented in the client library.
fn client_command(command: client_cli::Command) -> Result<(), Failure> {
    client_cli::run(command).map_err(|failure| match failure {
        client_cli::Failure::Usage(message) => Failure::Usage(message),
        client_cli::Failure::Runtime(message) => Failure::Runtime(message),
    })
}

/// Logs to stderr at `info`, or as `RUST_LOG` says. A line stderr cannot take is dropped and
/// counted, never a reason to stop (`runtime::logging`).
fn init_logging() {
    let from_env = EnvFilter::try_from_default_env();
    let filter = from_env.as_ref().map_or_else(|_| EnvFilter::new("info"), |f| f.clone());
    // Colour only for a person at a terminal: escape codes make log files hard to grep.
    let ansi = io::stderr().is_terminal();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(logging::stderr)
        .with_ansi(ansi)
        .log_internal_errors(false)
        .init();
    if let (Err(error), Some(value)) = (from_env, std::env::var_os("RUST_LOG")) {
        warn!("RUST_LOG={value:?} is not a valid filter ({error}); logging at info");
    }
}

fn dev(args: DevArgs) -> Result<(), Failure> {
    let mut config = Config::default();
    apply_node_flags(&mut config, &args.node)?;
    config.validate()?;
    if !config.voters.is_empty() || !config.brokers.is_empty() {
        return Err(Failure::Usage(
            "cairn dev makes its own cluster: leave cluster.voters and cluster.brokers out \
             and give --nodes N"
                .to_string(),
        ));
    }
    if args.nodes == 1 {
        return dev_single(config);
    }
    if config.server.advertised_listener.is_some() {
        return Err(Failure::Usage(
            "advertised.listener cannot be set with --nodes: each node advertises its own \
             listener"
                .to_string(),
        ));
    }
    dev_cluster(config, args.nodes)
}

/// `cairn dev`: one node, node.id 0, in the data directory itself.
fn dev_single(mut config: Config) -> Result<(), Failure> {
    let root = config.server.data_dir.clone();
    if !root.join(datadir::META_FILE).exists() && root.join(dev_node_dir(NodeId(1))).exists() {
        return Err(Failure::Runtime(format!(
            "{} holds a dev cluster of several nodes: run `cairn dev --nodes N` with its \
             node count, or delete the directory to start over",
            root.display()
        )));
    }
    let spec = FormatSpec::single(NodeId(0));
    let data_dir = datadir::open_or_format(&root, &spec)?;
    // A node alone has no peers: --peer-listener only matters with --nodes.
    config.peer_listener = None;
    config.apply_cluster(data_dir.meta().node_id)?;
    let server = server_config(config, &data_dir)?;
    let (node_id, cluster_id) = (data_dir.meta().node_id, data_dir.meta().cluster_id.clone());
    let path = data_dir.path().display().to_string();
    run_nodes(vec![(server, None)], vec![data_dir], move |servers| {
        print_banner(&dev_banner(&servers[0], &path, node_id, &cluster_id));
    })
}

/// `cairn dev --nodes N`: nodes 1 to N, all voters, in `<data dir>/node-<id>`, formatted
/// on first use. A node whose directory is missing while the others' exist was wiped: it is
/// formatted to rejoin (decision 0009), never as a new cluster's member.
fn dev_cluster(config: Config, count: u32) -> Result<(), Failure> {
    let root = config.server.data_dir.clone();
    refuse_single_node_root(&root)?;
    let ids: Vec<NodeId> = (1..=count).map(NodeId).collect();
    let (cluster_id, initial) = dev_cluster_id(&root, &ids)?;
    let mut data_dirs = Vec::with_capacity(ids.len());
    for &node_id in &ids {
        let cluster_id = Some(cluster_id.clone());
        let spec =
            FormatSpec { node_id, cluster_id, voters: ids.clone(), learners: Vec::new(), initial };
        data_dirs.push(datadir::open_or_format(&root.join(dev_node_dir(node_id)), &spec)?);
    }
    // Every peer listener is bound before any node starts, so that each node knows every
    // other's address even when the ports are picked by the system (port 0).
    let peer_base = config.peer_listener.unwrap_or(DEV_PEER_LISTENER.into());
    let mut listeners = Vec::with_capacity(ids.len());
    for index in 0..ids.len() {
        let addr = nth_port(peer_base, index, "--peer-listener")?;
        let listener = std::net::TcpListener::bind(addr).map_err(|e| {
            Failure::Runtime(format!(
                "cannot listen for peers on {addr}: {e} (is another \
                process using the port? choose another range with --peer-listener)"
            ))
        })?;
        let bound = listener.local_addr().map_err(|e| Failure::Runtime(e.to_string()))?;
        listeners.push((listener, reachable(bound)));
    }
    let factor = config.default_replication_factor.unwrap_or(count.min(3) as i32);
    let mut servers = Vec::with_capacity(ids.len());
    for (index, (data_dir, (listener, peer_addr))) in data_dirs.iter().zip(listeners).enumerate() {
        let mut node = config.clone();
        node.server.data_dir = data_dir.path().to_path_buf();
        node.server.kafka_listener = nth_port(config.server.kafka_listener, index, "--listener")?;
        if let Some(http) = config.server.http_listener {
            node.server.http_listener = Some(nth_port(http, index, "--http-listener")?);
        }
        let mut server = server_config(node, data_dir)?;
        server.node.cluster.voters = ids.clone();
        server.node.cluster.default_replication_factor = factor;
        server.peer_listener = Some(peer_addr);
        servers.push((server, Some(listener)));
    }
    let addresses: Vec<(NodeId, String)> = servers
        .iter()
        .map(|(s, _)| (s.node.node_id, s.peer_listener.expect("bound").to_string()))
        .collect();
    for (server, _) in &mut servers {
        let own = server.node.node_id;
        server.peers = addresses.iter().filter(|(id, _)| *id != own).cloned().collect();
    }
    let root_shown = root.display().to_string();
    run_nodes(servers, data_dirs, move |servers| {
        print_banner(&dev_cluster_banner(servers, &root_shown, &cluster_id, factor));
    })
}

/// The first peer port of `cairn dev --nodes`: Kafka's ports are 9092 and up.
const DEV_PEER_LISTENER: ([u8; 4], u16) = ([127, 0, 0, 1], 19092);

/// Node `node_id`'s directory under a dev cluster's data directory.
fn dev_node_dir(node_id: NodeId) -> String {
    format!("node-{}", node_id.0)
}

/// `address` with its port moved up by `index`; port 0 stays 0 (the system picks).
fn nth_port(address: SocketAddr, index: usize, flag: &str) -> Result<SocketAddr, Failure> {
    if address.port() == 0 {
        return Ok(address);
    }
    let port = u16::try_from(usize::from(address.port()) + index).map_err(|_| {
        Failure::Usage(format!("{flag} {address}: the ports of every node must fit below 65536"))
    })?;
    let mut address = address;
    address.set_port(port);
    Ok(address)
}

/// A dev cluster's data directory must not be a single node's.
fn refuse_single_node_root(root: &Path) -> Result<(), Failure> {
    match datadir::read_meta(root) {
        Ok(None) => Ok(()),
        Err(DataDirError::OldLayout { dir, .. }) => {
            Err(DataDirError::OldLayout { dir, dev: true }.into())
        }
        Err(error) => Err(error.into()),
        Ok(Some(_)) => Err(Failure::Runtime(format!(
            "{} holds a single dev node: run `cairn dev` without --nodes, or delete the \
             directory to start a cluster",
            root.display()
        ))),
    }
}

/// The cluster id of a dev cluster, and whether the nodes not yet formatted are its first
/// members (`true`) or rejoin it after their directory was deleted (`false`).
fn dev_cluster_id(root: &Path, ids: &[NodeId]) -> Result<(String, bool), Failure> {
    let next = NodeId(ids.len() as u32 + 1);
    if root.join(dev_node_dir(next)).exists() {
        return Err(Failure::Runtime(format!(
            "{} holds a dev cluster of more than {} nodes: give --nodes its node count, or \
             delete the directory to start over",
            root.display(),
            ids.len()
        )));
    }
    let mut found: Option<String> = None;
    let mut missing = Vec::new();
    for &node_id in ids {
        let dir = root.join(dev_node_dir(node_id));
        let Some(meta) = datadir::read_meta(&dir)? else {
            missing.push(node_id.0);
            continue;
        };
        let voters = datadir::read_bootstrap(&dir)?.voters;
        if voters != ids.iter().map(|id| id.0).collect::<Vec<_>>() {
            return Err(Failure::Runtime(format!(
                "{} belongs to a dev cluster whose voters are {voters:?}: give --nodes its node \
                 count, or delete {} to start over",
                dir.display(),
                root.display()
            )));
        }
        if found.as_ref().is_some_and(|id| *id != meta.cluster_id) {
            return Err(Failure::Runtime(format!(
                "the node directories under {} belong to different clusters: delete it to \
                 start over",
                root.display()
            )));
        }
        found = Some(meta.cluster_id);
    }
    match found {
        Some(cluster_id) => {
            if !missing.is_empty() {
                warn!(?missing, "nodes without a data directory: formatting them to rejoin");
            }
            Ok((cluster_id, false))
        }
        None => Ok((datadir::new_cluster_id()?, true)),
    }
}

fn serve(args: ServeArgs) -> Result<(), Failure> {
    let mut config = Config::default();
    if let Some(path) = &args.config {
        config.apply_file(path)?;
    }
    config.apply_env(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))?;
    let names = std::env::vars_os().map(|(k, _)| lossy(&k));
    #[cfg(feature = "canary")]
    let names = names.filter(|name| name != planted::ENV);
    for name in config::unknown_env_names(names) {
        warn!("environment variable {name} is not a Cairn setting and is ignored");
    }
    if let Some(node_id) = &args.node_id {
        config.set("node.id", node_id, &Origin::Flag("--node-id".into()))?;
    }
    if let Some(address) = &args.advertised_listener {
        let origin = Origin::Flag("--advertised-listener".into());
        config.set("advertised.listener", address, &origin)?;
    }
    apply_node_flags(&mut config, &args.node)?;
    config.validate()?;
    let data_dir = datadir::open(&config.server.data_dir, config.node_id)?;
    config.apply_cluster(data_dir.meta().node_id)?;
    let server = server_config(config, &data_dir)?;
    check_members(&data_dir, &server)?;
    run_nodes(vec![(server, None)], vec![data_dir], |_| {})
}

fn format(args: FormatArgs) -> Result<(), Failure> {
    let node_id = NodeId(args.node_id);
    let members = |flag: &str, value: &Option<String>| -> Result<Vec<NodeId>, Failure> {
        let Some(value) = value else { return Ok(Vec::new()) };
        let members = config::parse_members(value).map_err(|expected| {
            Failure::Usage(format!("{flag} {value:?} is not valid: expected {expected}"))
        })?;
        Ok(members.into_iter().map(|m| m.node_id).collect())
    };
    let voters = members("--voters", &args.voters)?;
    let learners = members("--brokers", &args.brokers)?;
    if args.voters.is_some() && args.cluster_id.is_none() {
        return Err(Failure::Usage(
            "--voters needs --cluster-id: every node of a cluster is formatted with the same \
             id; choose one, such as prod-eu-1"
                .to_string(),
        ));
    }
    let spec = FormatSpec {
        node_id,
        cluster_id: args.cluster_id.clone(),
        voters,
        learners,
        initial: !args.rejoin,
    };
    let meta = datadir::format(&args.data_dir, &spec)?;
    let dir = args.data_dir.display();
    let joining = if args.rejoin { " to rejoin its cluster" } else { "" };
    println!(
        "Formatted {dir} for node.id {} of cluster {}{joining}.",
        meta.node_id.0, meta.cluster_id
    );
    let node_flag =
        if node_id.0 == 0 { String::new() } else { format!(" --node-id {}", node_id.0) };
    let mut members_flags = String::new();
    if let Some(voters) = &args.voters {
        members_flags = format!(" --set cluster.voters={voters}");
        if let Some(brokers) = &args.brokers {
            members_flags.push_str(&format!(" --set cluster.brokers={brokers}"));
        }
    }
    println!("Start the node with: cairn serve --data-dir {dir}{node_flag}{members_flags}");
    Ok(())
}

/// Applies `--set` first, so the named flags win over a `--set` of the same key.
fn apply_node_flags(config: &mut Config, flags: &NodeFlags) -> Result<(), ConfigError> {
    for (key, value) in &flags.set {
        config.set(key, value, &Origin::Flag(format!("--set {key}")))?;
    }
    let named = [
        ("data.dir", "--data-dir", &flags.data_dir),
        ("listener", "--listener", &flags.listener),
        ("http.listener", "--http-listener", &flags.http_listener),
        ("peer.listener", "--peer-listener", &flags.peer_listener),
    ];
    for (key, flag, value) in named {
        if let Some(value) = value {
            config.set(key, value, &Origin::Flag(flag.to_string()))?;
        }
    }
    Ok(())
}

/// The server's settings: the operator's, with the identity the data directory records.
fn server_config(config: Config, data_dir: &DataDir) -> Result<ServerConfig, Failure> {
    let mut server = config.server;
    let node_id = data_dir.meta().node_id;
    server.node.node_id = node_id;
    server.cluster_id = data_dir.meta().cluster_id.clone();
    // Each run draws a new seed: the seed makes a simulation reproducible, while a
    // production node wants its random choices (jitter, ids) to differ between restarts.
    server.node.seed = os_random_u64()
        .map_err(|e| Failure::Runtime(format!("cannot read /dev/urandom for a seed: {e}")))?;
    Ok(server)
}

/// Checks the configured members against those the directory was formatted with (they are
/// fixed at format time, decision 0009), so that a typo in `cluster.voters` stops the node
/// with both lists instead of a node that cannot join its quorum.
fn check_members(data_dir: &DataDir, server: &ServerConfig) -> Result<(), Failure> {
    let record = datadir::read_bootstrap(data_dir.path())?;
    let sorted = |ids: &mut dyn Iterator<Item = u32>| {
        let mut ids: Vec<u32> = ids.collect();
        ids.sort_unstable();
        ids
    };
    let cluster = &server.node.cluster;
    let formatted =
        (sorted(&mut record.voters.iter().copied()), sorted(&mut record.learners.iter().copied()));
    let configured = (
        sorted(&mut cluster.voters.iter().map(|id| id.0)),
        sorted(&mut cluster.learners.iter().map(|id| id.0)),
    );
    if formatted != configured {
        return Err(Failure::Usage(format!(
            "{} was formatted with voters {:?} and brokers {:?}, but cluster.voters and \
             cluster.brokers give voters {:?} and brokers {:?}: members are fixed when a \
             cluster is formatted, so list the same nodes (without cluster.voters, a node is \
             a cluster of its own)",
            data_dir.path().display(),
            formatted.0,
            formatted.1,
            configured.0,
            configured.1
        )));
    }
    Ok(())
}

/// Runs the nodes until SIGINT or SIGTERM, holding their data directories' locks
/// throughout. `announce` runs once every node has started and the signals are handled, so
/// whoever reads what it prints may stop the nodes at once and get a clean stop.
fn run_nodes(
    servers: Vec<(ServerConfig, Option<std::net::TcpListener>)>,
    data_dirs: Vec<DataDir>,
    announce: impl FnOnce(&[Server]),
) -> Result<(), Failure> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    #[cfg(feature = "canary")]
    planted::plant(&mut builder)?;
    let runtime = builder
        .build()
        .map_err(|e| Failure::Runtime(format!("cannot start the tokio runtime: {e}")))?;
    let result = runtime.block_on(async {
        let shutdown = shutdown_signal()
            .map_err(|e| Failure::Runtime(format!("cannot handle SIGINT and SIGTERM: {e}")))?;
        for (server, _) in &servers {
            info!(
                node_id = server.node.node_id.0,
                cluster_id = %server.cluster_id,
                listener = %server.kafka_listener,
                data_dir = %server.data_dir.display(),
                "starting"
            );
        }
        server::run_nodes(servers, shutdown, announce)
            .await
            .map_err(|e| Failure::Runtime(e.to_string()))
    });
    // The runtime's tasks go before the locks: nothing may write once another process can
    // take a directory.
    drop(runtime);
    drop(data_dirs);
    if result.is_ok() {
        info!("stopped cleanly");
    }
    result
}

/// Writes `text` to stdout. A closed stdout must not stop the node; the logs still say
/// what happens.
fn print_banner(text: &str) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Completes at the first SIGINT or SIGTERM. A second one exits at once, for an operator
/// who will not wait for a slow stop.
fn shutdown_signal() -> io::Result<impl Future<Output = ()> + Send + 'static> {
    // Installed now, before the node starts, so an early SIGTERM stops it cleanly instead of
    // killing the process by the default action.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        let (name, _) = next_signal(&mut interrupt, &mut terminate).await;
        info!("{name} received: stopping (send it again to exit at once)");
        tokio::spawn(async move {
            let (name, number) = next_signal(&mut interrupt, &mut terminate).await;
            warn!("{name} received while stopping: exiting at once, without a clean stop");
            std::process::exit(128 + number);
        });
    })
}

async fn next_signal(interrupt: &mut Signal, terminate: &mut Signal) -> (&'static str, i32) {
    tokio::select! {
        _ = interrupt.recv() => ("SIGINT", 2),
        _ = terminate.recv() => ("SIGTERM", 15),
    }
}

/// What `cairn dev` prints on stdout: how to connect, for someone who has just started it.
fn dev_banner(server: &Server, path: &str, node_id: NodeId, cluster_id: &str) -> String {
    let bootstrap = reachable(server.kafka_addr()).to_string();
    let lines = [
        format!("Cairn {} dev node started.", env!("CARGO_PKG_VERSION")),
        String::new(),
        format!("  data directory    {path}"),
        format!("  node / cluster    {} / {cluster_id}", node_id.0),
        format!("  bootstrap server  {bootstrap}"),
        format!("  produce           echo hello | kcat -P -b {bootstrap} -t demo"),
        format!("  consume           kcat -C -b {bootstrap} -t demo -o beginning"),
        format!("  metrics           {}", metrics_url(server)),
        String::new(),
        "Topics are created when first used. Stop with Ctrl-C.".to_string(),
    ];
    lines.map(|line| line + "\n").concat()
}

/// What `cairn dev --nodes N` prints: every node, and how to connect to all of them.
fn dev_cluster_banner(servers: &[Server], root: &str, cluster_id: &str, factor: i32) -> String {
    let bootstrap: Vec<String> =
        servers.iter().map(|server| reachable(server.kafka_addr()).to_string()).collect();
    let bootstrap = bootstrap.join(",");
    let mut lines = vec![
        format!(
            "Cairn {} dev cluster of {} nodes started.",
            env!("CARGO_PKG_VERSION"),
            servers.len()
        ),
        String::new(),
        format!("  data directory     {root}/node-1 to node-{}", servers.len()),
        format!("  cluster            {cluster_id}, every node a voter"),
        format!("  replication        auto-created topics get {factor} replicas"),
    ];
    for (index, server) in servers.iter().enumerate() {
        let peers = server.peer_addr().map_or_else(|| "-".to_string(), |a| a.to_string());
        lines.push(format!(
            "  node {:<2}            kafka {}  peers {peers}  metrics {}",
            index + 1,
            reachable(server.kafka_addr()),
            metrics_url(server)
        ));
    }
    lines.extend([
        format!("  bootstrap servers  {bootstrap}"),
        format!("  produce            echo hello | kcat -P -b {bootstrap} -t demo"),
        format!("  consume            kcat -C -b {bootstrap} -t demo -o beginning"),
        String::new(),
        "Topics are created when first used. Stop with Ctrl-C.".to_string(),
    ]);
    lines.into_iter().map(|line| line + "\n").collect()
}

fn metrics_url(server: &Server) -> String {
    match server.http_addr() {
        Some(address) => format!("http://{}/metrics", reachable(address)),
        None => "off".to_string(),
    }
}

/// An address a local client can connect to: a wildcard bind is reached over loopback.
fn reachable(address: SocketAddr) -> SocketAddr {
    let mut address = address;
    if address.ip().is_unspecified() {
        let loopback = match address {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        };
        address.set_ip(loopback);
    }
    address
}

fn os_random_u64() -> io::Result<u64> {
    let mut bytes = [0u8; 8];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}

fn lossy(text: &std::ffi::OsStr) -> String {
    text.to_string_lossy().into_owned()
}

/// A deliberate bug planted in a real node, so that `cairn-jepsen test` can be shown to catch
/// one (docs/jepsen.md): `CAIRN_CANARY=NAME`, with the names of `cairn-sim --canary`. Only
/// with the `canary` feature, which no default or release build enables.
#[cfg(feature = "canary")]
mod planted {
    use cairn_node::core::log::canary::{self, Canary};
    use tracing::warn;

    use crate::Failure;

    /// The variable that names the canary.
    pub const ENV: &str = "CAIRN_CANARY";

    /// Plants the canary `CAIRN_CANARY` names, if any, on every thread of the runtime
    /// `builder` makes and on this one (which runs `block_on`): `canary::set` is per thread,
    /// and the core runs in a task that any worker thread may poll. An unknown name is a
    /// usage error that lists the names.
    pub fn plant(builder: &mut tokio::runtime::Builder) -> Result<(), Failure> {
        let Some(name) = std::env::var_os(ENV) else { return Ok(()) };
        let name = name.to_string_lossy();
        let chosen = Canary::parse(&name).map_err(|e| Failure::Usage(format!("{ENV}: {e}")))?;
        warn!(canary = %name, "a deliberate bug is planted ({ENV}): never run this build for real");
        builder.on_thread_start(move || canary::set(Some(chosen)));
        canary::set(Some(chosen));
        Ok(())
    }
}
