//! One Cairn node as a process: the disk executor, the driver of the core, the Kafka
//! listener and the operations endpoint, started together and stopped together.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::core::node::NodeConfig;
use crate::kafka::FRAME_BYTES_MAX_DEFAULT;

/// Everything a node process needs to run. Built by the `cairn` binary from its file, flags
/// and environment (node/src/config.rs); tests build it directly.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The data directory (formatted; see `runtime::datadir`).
    pub data_dir: PathBuf,
    /// Where the Kafka listener binds.
    pub kafka_listener: SocketAddr,
    /// The host and port clients are told to connect to (Metadata); the listener's address
    /// when `None`.
    pub advertised_listener: Option<(String, u16)>,
    /// Where `/metrics` and `/health` are served; no endpoint when `None`.
    pub http_listener: Option<SocketAddr>,
    /// The largest Kafka request frame accepted, in bytes.
    pub frame_bytes_max: usize,
    /// The cluster's id, as DescribeCluster and Metadata report it (from the data
    /// directory's `cairn.meta`, written by `cairn format`).
    pub cluster_id: String,
    /// The core's settings (node id, timers, auto-creation, topic defaults).
    pub node: NodeConfig,
}

impl ServerConfig {
    /// Settings for a node on `data_dir` listening on loopback port 9092, metrics on 9644.
    pub fn new(data_dir: impl Into<PathBuf>) -> ServerConfig {
        ServerConfig {
            data_dir: data_dir.into(),
            kafka_listener: SocketAddr::from(([127, 0, 0, 1], 9092)),
            advertised_listener: None,
            http_listener: Some(SocketAddr::from(([127, 0, 0, 1], 9644))),
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
            cluster_id: "cairn-dev".to_string(),
            node: NodeConfig::default(),
        }
    }
}

/// Why a node process could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listener could not bind.
    #[error(
        "cannot listen on {addr}: {error} (is another process using the port? choose another with --listener / --http-listener)"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        error: std::io::Error,
    },
    /// The data directory could not be opened.
    #[error("cannot open the data directory {path}: {error}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// The core stopped serving (its data directory is unreadable).
    #[error("the node stopped: {0}")]
    Fatal(String),
}

/// Runs a node until `shutdown` completes, then stops it cleanly (every partition flushed).
pub async fn run(
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServerError> {
    let _ = (config, shutdown);
    unimplemented!("the Kafka listener lands with the listener branch")
}
