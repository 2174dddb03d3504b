//! One Cairn node as a process: the disk executor, the driver of the core, the Kafka
//! listener and the operations endpoint, started together and stopped together.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::disk::FileDisk;
use super::driver::{self, Clock, NodeHandle};
use super::executor::DiskExecutor;
use super::http::{self, Metrics};
use super::listener::{self, ListenerContext};
use crate::core::node::{Node, NodeConfig};
use crate::kafka::{Broker, FRAME_BYTES_MAX_DEFAULT, FrameDecoder};

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
    /// The disk executor's thread could not be started.
    #[error("cannot start the disk thread: {0}")]
    DiskThread(std::io::Error),
    /// The core stopped serving (its data directory is unreadable).
    #[error("the node stopped: {0}")]
    Fatal(String),
}

/// A running node: disk executor, driver, Kafka listener and operations endpoint.
///
/// [`Server::start`] brings everything up (the node then loads its topics and recovers its
/// partitions in the background; `/health` turns ready when it is done), [`Server::stop`]
/// takes everything down cleanly.
#[derive(Debug)]
pub struct Server {
    kafka_addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    node: NodeHandle,
    driver: JoinHandle<Node>,
    listener: JoinHandle<()>,
    stop_listener: watch::Sender<bool>,
    http: Option<JoinHandle<()>>,
    metrics: Arc<Metrics>,
}

impl Server {
    /// Opens the data directory, binds the listeners and starts the node.
    pub async fn start(config: ServerConfig) -> Result<Server, ServerError> {
        let metrics = Arc::new(Metrics::default());
        let data_dir = |error| ServerError::DataDir { path: config.data_dir.clone(), error };
        let disk = FileDisk::open(&config.data_dir).map_err(data_dir)?;
        let bind = |addr| move |error| ServerError::Bind { addr, error };
        let kafka =
            TcpListener::bind(config.kafka_listener).await.map_err(bind(config.kafka_listener))?;
        let kafka_addr = kafka.local_addr().map_err(bind(config.kafka_listener))?;
        let (http_addr, http) = match config.http_listener {
            Some(addr) => {
                let (bound, task) =
                    http::serve(addr, Arc::clone(&metrics)).await.map_err(bind(addr))?;
                (Some(bound), Some(task))
            }
            None => (None, None),
        };
        let (executor, completions) = DiskExecutor::start_with_metrics(disk, Arc::clone(&metrics))
            .map_err(ServerError::DiskThread)?;
        let clock = Clock::start();
        let (host, port) = advertised(&config, kafka_addr);
        // The node registers where clients reach it; Metadata hands that to every client.
        let mut node_config = config.node.clone();
        node_config.cluster.advertised_host = host.clone();
        node_config.cluster.advertised_port = port;
        let core = Node::new(node_config, clock.now());
        let (node, driver) =
            driver::spawn_with_metrics(core, executor, completions, clock, Arc::clone(&metrics));
        let context = Arc::new(ListenerContext {
            node: node.clone(),
            broker: Broker::new(&config.node, host, port, config.cluster_id.clone()),
            decoder: FrameDecoder::new(config.frame_bytes_max),
            metrics: Arc::clone(&metrics),
        });
        let (stop_listener, stop) = watch::channel(false);
        let listener = tokio::spawn(listener::serve(kafka, context, stop));
        tracing::info!(
            kafka = %kafka_addr,
            http = ?http_addr,
            data_dir = %config.data_dir.display(),
            node_id = config.node.node_id.0,
            "cairn node started"
        );
        Ok(Server { kafka_addr, http_addr, node, driver, listener, stop_listener, http, metrics })
    }

    /// The address the Kafka listener is bound to.
    pub fn kafka_addr(&self) -> SocketAddr {
        self.kafka_addr
    }

    /// The address `/metrics` and `/health` are served on, if any.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The node's counters and gauges.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Stops cleanly: closes the listener and every connection, then has the node refuse
    /// new writes, flush every partition and finish its disk ops.
    pub async fn stop(mut self) -> Result<(), ServerError> {
        self.close_listeners().await;
        self.node.shutdown().await;
        let result = match self.driver.await {
            Ok(core) => match core.fatal() {
                Some(error) => Err(ServerError::Fatal(error.to_string())),
                None => Ok(()),
            },
            Err(error) => Err(ServerError::Fatal(format!("the node's task failed: {error}"))),
        };
        tracing::info!("cairn node stopped");
        result
    }

    /// Closes the Kafka listener, every connection and the operations endpoint.
    async fn close_listeners(&mut self) {
        self.stop_listener.send_replace(true);
        // The listener's task ends once every connection task has.
        if let Err(error) = (&mut self.listener).await {
            tracing::error!(%error, "the Kafka listener's task failed");
        }
        if let Some(http) = &self.http {
            http.abort();
        }
    }
}

/// Why the driver ended by itself (it never does unless the node hit a fatal error or its
/// disk thread died).
fn driver_ended(ended: Result<Node, tokio::task::JoinError>) -> ServerError {
    let error = match ended {
        Ok(core) => core.fatal().unwrap_or("the disk executor stopped").to_string(),
        Err(error) => format!("the node's task failed: {error}"),
    };
    ServerError::Fatal(error)
}

/// The host and port Metadata tells clients to connect to.
fn advertised(config: &ServerConfig, bound: SocketAddr) -> (String, u16) {
    if let Some(advertised) = &config.advertised_listener {
        return advertised.clone();
    }
    if bound.ip().is_unspecified() {
        // 0.0.0.0 is no address to connect to; a client on this host can use localhost.
        tracing::warn!(%bound, "no advertised listener set; telling clients to use localhost");
        return ("localhost".to_string(), bound.port());
    }
    (bound.ip().to_string(), bound.port())
}

/// Runs a node until `shutdown` completes, then stops it cleanly (every partition flushed).
/// Returns early with [`ServerError::Fatal`] if the node stops serving by itself.
pub async fn run(
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServerError> {
    let mut server = Server::start(config).await?;
    tokio::select! {
        () = shutdown => {
            tracing::info!("shutting down");
            server.stop().await
        }
        ended = &mut server.driver => {
            let error = driver_ended(ended);
            tracing::error!(%error, "closing the listeners");
            server.close_listeners().await;
            Err(error)
        }
    }
}
