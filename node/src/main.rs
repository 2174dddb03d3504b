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
use std::process::ExitCode;

use cairn_node::core::io::NodeId;
use cairn_node::runtime::datadir::{self, DataDir, DataDirError};
use cairn_node::runtime::server::{self, ServerConfig};
use clap::Parser as _;
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
            DataDirError::BadClusterId { .. } => Failure::Usage(error.to_string()),
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

/// Logs to stderr at `info`, or as `RUST_LOG` says.
fn init_logging() {
    let from_env = EnvFilter::try_from_default_env();
    let filter = from_env.as_ref().map_or_else(|_| EnvFilter::new("info"), |f| f.clone());
    // Colour only for a person at a terminal: escape codes make log files hard to grep.
    let ansi = io::stderr().is_terminal();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(ansi)
        .init();
    if let (Err(error), Some(value)) = (from_env, std::env::var_os("RUST_LOG")) {
        warn!("RUST_LOG={value:?} is not a valid filter ({error}); logging at info");
    }
}

fn dev(args: DevArgs) -> Result<(), Failure> {
    let mut config = Config::default();
    apply_node_flags(&mut config, &args.node)?;
    config.validate()?;
    let data_dir = datadir::open_or_format(&config.server.data_dir)?;
    let server = server_config(config, &data_dir)?;
    let banner = dev_banner(&server, &data_dir);
    run_node(server, data_dir, move || {
        // A closed stdout must not stop the node; the logs still say what happens.
        let mut out = io::stdout().lock();
        let _ = out.write_all(banner.as_bytes());
        let _ = out.flush();
    })
}

fn serve(args: ServeArgs) -> Result<(), Failure> {
    let mut config = Config::default();
    if let Some(path) = &args.config {
        config.apply_file(path)?;
    }
    config.apply_env(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))?;
    for name in config::unknown_env_names(std::env::vars_os().map(|(k, _)| lossy(&k))) {
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
    let server = server_config(config, &data_dir)?;
    run_node(server, data_dir, || {})
}

fn format(args: FormatArgs) -> Result<(), Failure> {
    let node_id = NodeId(args.node_id);
    let meta = datadir::format(&args.data_dir, node_id, args.cluster_id.as_deref())?;
    let dir = args.data_dir.display();
    println!("Formatted {dir} for node.id {} of cluster {}.", meta.node_id.0, meta.cluster_id);
    let node_flag =
        if node_id.0 == 0 { String::new() } else { format!(" --node-id {}", node_id.0) };
    println!("Start the node with: cairn serve --data-dir {dir}{node_flag}");
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
    // A single node is its cluster's only voter; clusters of several nodes come with
    // `cairn format --voters` (issue 6).
    server.node.cluster.cluster_id = server.cluster_id.clone();
    server.node.cluster.voters = vec![node_id];
    server.node.cluster.learners = Vec::new();
    // Each run draws a new seed: the seed makes a simulation reproducible, while a
    // production node wants its random choices (jitter, ids) to differ between restarts.
    server.node.seed = os_random_u64()
        .map_err(|e| Failure::Runtime(format!("cannot read /dev/urandom for a seed: {e}")))?;
    Ok(server)
}

/// Runs the node until SIGINT or SIGTERM, holding the data directory's lock throughout.
/// `announce` runs once the signals are handled, so whoever reads what it prints may stop
/// the node at once and get a clean stop.
fn run_node(
    server: ServerConfig,
    data_dir: DataDir,
    announce: impl FnOnce(),
) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(format!("cannot start the tokio runtime: {e}")))?;
    let result = runtime.block_on(async {
        let shutdown = shutdown_signal()
            .map_err(|e| Failure::Runtime(format!("cannot handle SIGINT and SIGTERM: {e}")))?;
        announce();
        info!(
            node_id = server.node.node_id.0,
            cluster_id = %server.cluster_id,
            listener = %server.kafka_listener,
            data_dir = %data_dir.path().display(),
            "starting"
        );
        server::run(server, shutdown).await.map_err(|e| Failure::Runtime(e.to_string()))
    });
    // The runtime's tasks go before the lock: nothing may write once another process can
    // take the directory.
    drop(runtime);
    drop(data_dir);
    if result.is_ok() {
        info!("stopped cleanly");
    }
    result
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
fn dev_banner(server: &ServerConfig, data_dir: &DataDir) -> String {
    let bootstrap = match &server.advertised_listener {
        Some((host, port)) => format!("{host}:{port}"),
        None => reachable(server.kafka_listener).to_string(),
    };
    let meta = data_dir.meta();
    let lines = [
        format!("Cairn {} dev node starting.", env!("CARGO_PKG_VERSION")),
        String::new(),
        format!("  data directory    {}", data_dir.path().display()),
        format!("  node / cluster    {} / {}", meta.node_id.0, meta.cluster_id),
        format!("  bootstrap server  {bootstrap}"),
        format!("  produce           echo hello | kcat -P -b {bootstrap} -t demo"),
        format!("  consume           kcat -C -b {bootstrap} -t demo -o beginning"),
        match server.http_listener {
            Some(address) => format!("  metrics           http://{}/metrics", reachable(address)),
            None => "  metrics           off".to_string(),
        },
        String::new(),
        "Topics are created when first used. Stop with Ctrl-C.".to_string(),
    ];
    lines.map(|line| line + "\n").concat()
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
