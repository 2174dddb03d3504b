//! One Cairn node as a process: the disk executor, the driver of the core, the Kafka
//! listener, the operations endpoint and, in a cluster of several nodes, the peer transport,
//! started together and stopped together. [`run_nodes`] runs several such nodes in one
//! process (`cairn dev --nodes 3`).

use std::collections::BTreeMap;
use std::future::Future as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::disk::FileDisk;
use super::driver::{self, Clock, NodeHandle, PEER_INBOUND_QUEUE_MAX, PeerLink};
use super::executor::DiskExecutor;
use super::http::{self, Metrics};
use super::listener::{self, ListenerContext};
use super::os::{Os, OsListener, Tokio};
use super::peer::{PeerConfig, PeerStats, Peers};
use crate::core::io::NodeId;
use crate::core::node::{Message, Node, NodeConfig};
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
    /// Where this node accepts its peers' connections; needed when `peers` is not empty.
    pub peer_listener: Option<SocketAddr>,
    /// Every other node of the cluster and its peer address (`HOST:PORT`). Empty for a
    /// cluster of one, which then starts no peer transport.
    pub peers: BTreeMap<NodeId, String>,
    /// The core's settings (node id, timers, auto-creation, topic defaults, the cluster's
    /// members). [`Server::start`] fills `cluster.cluster_id` from `cluster_id` and the
    /// advertised host and port from the listener.
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
            peer_listener: None,
            peers: BTreeMap::new(),
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
    /// The node has peers but no address to accept them on.
    #[error(
        "node {0} has peers but no peer listener: set peer.listener, or list this node in cluster.voters or cluster.brokers"
    )]
    NoPeerListener(u32),
    /// The disk executor's thread could not be started.
    #[error("cannot start the disk thread: {0}")]
    DiskThread(std::io::Error),
    /// The core stopped serving (its data directory is unreadable).
    #[error("the node stopped: {0}")]
    Fatal(String),
}

/// A running node: disk executor, driver, Kafka listener, operations endpoint and peers.
///
/// [`Server::start`] brings everything up (the node then loads its topics and recovers its
/// partitions in the background; `/health` turns ready when it is done), [`Server::stop`]
/// takes everything down cleanly.
#[derive(Debug)]
pub struct Server {
    kafka_addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    peer_addr: Option<SocketAddr>,
    node: NodeHandle,
    driver: JoinHandle<Node>,
    listener: JoinHandle<()>,
    stop_listener: watch::Sender<bool>,
    http: Option<JoinHandle<()>>,
    peers: Option<RunningPeers>,
    metrics: Arc<Metrics>,
}

/// The peer transport of a running node and its stop signal.
#[derive(Debug)]
struct RunningPeers {
    peers: Peers<Message>,
    stop: watch::Sender<bool>,
}

impl Server {
    /// Opens the data directory, binds the listeners and starts the node.
    pub async fn start(config: ServerConfig) -> Result<Server, ServerError> {
        Server::start_with_peer_listener(config, None).await
    }

    /// [`Server::start`], accepting peers on `peer_listener` (already bound, so that a
    /// process running several nodes knows every peer address before any node starts)
    /// instead of binding `config.peer_listener`.
    pub async fn start_with_peer_listener(
        config: ServerConfig,
        peer_listener: Option<std::net::TcpListener>,
    ) -> Result<Server, ServerError> {
        let peer_listener = match peer_listener {
            Some(listener) if !config.peers.is_empty() => Some(adopt(listener)?),
            _ => None,
        };
        Server::start_on::<Tokio>(config, peer_listener).await
    }

    /// [`Server::start_with_peer_listener`] on the files, sockets and clock of `O` (see
    /// `runtime::os`; the `cairn` binary runs on [`Tokio`]). The operations endpoint, if
    /// `config.http_listener` asks for one, is always served on tokio's sockets.
    pub async fn start_on<O: Os>(
        mut config: ServerConfig,
        peer_listener: Option<O::Listener>,
    ) -> Result<Server, ServerError> {
        let metrics = Arc::new(Metrics::default());
        let data_dir = |error| ServerError::DataDir { path: config.data_dir.clone(), error };
        let disk = FileDisk::<O>::open_on(&config.data_dir).map_err(data_dir)?;
        let bind = |addr| move |error| ServerError::Bind { addr, error };
        let kafka = O::bind(config.kafka_listener).await.map_err(bind(config.kafka_listener))?;
        let kafka_addr = kafka.local_addr().map_err(bind(config.kafka_listener))?;
        let peer_listener = bind_peers::<O>(&config, peer_listener).await?;
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
        let (host, port) = advertised(&config, kafka_addr);
        config.node.cluster.cluster_id.clone_from(&config.cluster_id);
        config.node.cluster.advertised_host.clone_from(&host);
        config.node.cluster.advertised_port = port;
        let (peers, link, peer_addr) = match peer_listener {
            Some((listener, addr)) => {
                let (running, link) = start_peers::<O>(&config, listener, &metrics);
                (Some(running), Some(link), Some(addr))
            }
            None => (None, None, None),
        };
        let clock = Clock::start_on::<O>();
        let core = Node::new(config.node.clone(), clock.now());
        let (node, driver) = driver::spawn_with_metrics(
            core,
            executor,
            completions,
            clock,
            Arc::clone(&metrics),
            link,
        );
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
            peers = ?peer_addr,
            data_dir = %config.data_dir.display(),
            node_id = config.node.node_id.0,
            "cairn node started"
        );
        Ok(Server {
            kafka_addr,
            http_addr,
            peer_addr,
            node,
            driver,
            listener,
            stop_listener,
            http,
            peers,
            metrics,
        })
    }

    /// The address the Kafka listener is bound to.
    pub fn kafka_addr(&self) -> SocketAddr {
        self.kafka_addr
    }

    /// The address `/metrics` and `/health` are served on, if any.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The address peers connect to, if the node has peers.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer_addr
    }

    /// The node's counters and gauges.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// What the peer transport did, if the node has peers.
    pub fn peer_stats(&self) -> Option<&Arc<PeerStats>> {
        self.peers.as_ref().map(|running| running.peers.stats())
    }

    /// Stops cleanly: closes the listener and every connection, then has the node refuse
    /// new writes, flush every partition and finish its disk ops.
    pub async fn stop(mut self) -> Result<(), ServerError> {
        self.close_listeners().await;
        self.node.shutdown().await;
        let result = match (&mut self.driver).await {
            Ok(core) => match core.fatal() {
                Some(error) => Err(ServerError::Fatal(error.to_string())),
                None => Ok(()),
            },
            Err(error) => Err(ServerError::Fatal(format!("the node's task failed: {error}"))),
        };
        // The peers go last: a stopping node may still talk to them while it flushes.
        self.stop_peers().await;
        tracing::info!("cairn node stopped");
        result
    }

    /// Waits until the node stops serving by itself (a fatal error, or its disk executor
    /// gone; it never does otherwise), takes down what is left of it (listeners, peers) and
    /// says why. For a supervisor that starts the node again (node/tests/turmoil.rs).
    pub async fn until_failed(mut self) -> ServerError {
        let error = driver_ended((&mut self.driver).await);
        close_after_failure(self).await;
        error
    }

    /// Stops the peer transport and waits for its tasks.
    async fn stop_peers(&mut self) {
        if let Some(running) = self.peers.take() {
            running.stop.send_replace(true);
            running.peers.stopped().await;
        }
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

/// A listener bound by std, handed to tokio.
fn adopt(listener: std::net::TcpListener) -> Result<tokio::net::TcpListener, ServerError> {
    let addr = listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0; 4], 0)));
    let adopt = |error| ServerError::Bind { addr, error };
    listener.set_nonblocking(true).map_err(adopt)?;
    tokio::net::TcpListener::from_std(listener).map_err(adopt)
}

/// Binds the peer listener when the node has peers: `bound` if given, else the configured
/// address. Returns the listener and its address.
async fn bind_peers<O: Os>(
    config: &ServerConfig,
    bound: Option<O::Listener>,
) -> Result<Option<(O::Listener, SocketAddr)>, ServerError> {
    if config.peers.is_empty() {
        return Ok(None);
    }
    let listener = match bound {
        Some(listener) => listener,
        None => {
            let node_id = config.node.node_id.0;
            let addr = config.peer_listener.ok_or(ServerError::NoPeerListener(node_id))?;
            O::bind(addr).await.map_err(|error| ServerError::Bind { addr, error })?
        }
    };
    let addr = listener.local_addr().map_err(|error| {
        let addr = config.peer_listener.unwrap_or_else(|| SocketAddr::from(([0; 4], 0)));
        ServerError::Bind { addr, error }
    })?;
    Ok(Some((listener, addr)))
}

/// Starts the peer transport on `listener`; its stats join the node's metrics.
fn start_peers<O: Os>(
    config: &ServerConfig,
    listener: O::Listener,
    metrics: &Metrics,
) -> (RunningPeers, PeerLink) {
    let peer_config = PeerConfig {
        node_id: config.node.node_id,
        cluster_id: config.cluster_id.clone(),
        peers: config.peers.clone(),
    };
    let (sink, inbound) = mpsc::channel(PEER_INBOUND_QUEUE_MAX);
    let (stop, stopped) = watch::channel(false);
    let peers = Peers::start_on::<O>(peer_config, listener, sink, stopped);
    let _ = metrics.peers.set(Arc::clone(peers.stats()));
    let link = PeerLink { sender: peers.sender(), inbound, links: peers.links() };
    (RunningPeers { peers, stop }, link)
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
    run_nodes(vec![(config, None)], shutdown, |_| {}).await
}

/// Runs several nodes in this process (each with an optional pre-bound peer listener; see
/// [`Server::start_with_peer_listener`]) until `shutdown` completes, then stops them all
/// cleanly. `started` runs once every node is up, with the servers, to say where they are.
/// If one node cannot start, those started are stopped and its error returned; if one stops
/// serving by itself, the others are stopped and its error returned.
pub async fn run_nodes(
    nodes: Vec<(ServerConfig, Option<std::net::TcpListener>)>,
    shutdown: impl std::future::Future<Output = ()>,
    started: impl FnOnce(&[Server]),
) -> Result<(), ServerError> {
    let mut servers = Vec::with_capacity(nodes.len());
    for (config, peer_listener) in nodes {
        match Server::start_with_peer_listener(config, peer_listener).await {
            Ok(server) => servers.push(server),
            Err(error) => {
                // The start's error says more than any of the stops'.
                let _ = stop_all(servers).await;
                return Err(error);
            }
        }
    }
    started(&servers);
    let ended = {
        let first_ended = std::future::poll_fn(|cx| {
            for (index, server) in servers.iter_mut().enumerate() {
                if let Poll::Ready(ended) = Pin::new(&mut server.driver).poll(cx) {
                    return Poll::Ready((index, ended));
                }
            }
            Poll::Pending
        });
        tokio::select! {
            () = shutdown => None,
            ended = first_ended => Some(ended),
        }
    };
    match ended {
        None => {
            tracing::info!("shutting down");
            stop_all(servers).await
        }
        Some((index, ended)) => {
            let error = driver_ended(ended);
            tracing::error!(%error, "closing the listeners");
            let failed = servers.remove(index);
            close_after_failure(failed).await;
            let _ = stop_all(servers).await;
            Err(error)
        }
    }
}

/// Stops every server cleanly, one after the other; returns the first error.
async fn stop_all(servers: Vec<Server>) -> Result<(), ServerError> {
    let mut result = Ok(());
    for server in servers {
        let stopped = server.stop().await;
        if result.is_ok() {
            result = stopped;
        }
    }
    result
}

/// Takes down what is left of a server whose driver ended by itself.
async fn close_after_failure(mut server: Server) {
    server.close_listeners().await;
    server.stop_peers().await;
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use super::*;
    use crate::runtime::datadir::{self, FormatSpec};

    const WAIT: Duration = Duration::from_secs(10);

    /// Node `node_id` of the cluster `ids`, formatted on `dir` as `cairn format --voters`
    /// does, with a pre-bound peer listener; `peers` filled in by the caller.
    fn member(
        dir: &std::path::Path,
        node_id: u32,
        ids: &[NodeId],
    ) -> (ServerConfig, std::net::TcpListener) {
        let spec = FormatSpec {
            node_id: NodeId(node_id),
            cluster_id: Some("pair".into()),
            voters: ids.to_vec(),
            learners: Vec::new(),
            initial: true,
        };
        datadir::format(dir, &spec).expect("format");
        let mut config = ServerConfig::new(dir);
        config.kafka_listener = "127.0.0.1:0".parse().unwrap();
        config.http_listener = None;
        config.cluster_id = "pair".into();
        config.node.node_id = NodeId(node_id);
        config.node.cluster.voters = ids.to_vec();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        config.peer_listener = Some(listener.local_addr().unwrap());
        (config, listener)
    }

    async fn wait_until(what: &str, condition: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !condition() {
            assert!(tokio::time::Instant::now() < deadline, "{what} within {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Two nodes of one cluster in one process: each connects to the other, the connections
    /// show in the stats and the metrics, and both stop cleanly with their transports.
    #[tokio::test]
    async fn two_nodes_of_a_cluster_connect_to_each_other() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let ids = [NodeId(1), NodeId(2)];
        let (mut one, one_listener) = member(a.path(), 1, &ids);
        let (mut two, two_listener) = member(b.path(), 2, &ids);
        one.peers.insert(NodeId(2), two.peer_listener.unwrap().to_string());
        two.peers.insert(NodeId(1), one.peer_listener.unwrap().to_string());
        let one = Server::start_with_peer_listener(one, Some(one_listener)).await.unwrap();
        let two = Server::start_with_peer_listener(two, Some(two_listener)).await.unwrap();
        for server in [&one, &two] {
            let stats = Arc::clone(server.peer_stats().expect("a node with peers runs them"));
            wait_until("a connected peer", || stats.connected.load(Ordering::Relaxed) == 1).await;
            assert_eq!(stats.rejected.load(Ordering::Relaxed), 0);
            assert!(server.metrics().render().contains("\ncairn_peers_connected 1\n"));
        }
        let stats = Arc::clone(one.peer_stats().unwrap());
        one.stop().await.expect("a clean stop");
        // Node 2's connection to node 1 breaks once node 1's transport is gone.
        let two_stats = Arc::clone(two.peer_stats().unwrap());
        wait_until("the peer gone", || two_stats.connected.load(Ordering::Relaxed) == 0).await;
        assert_eq!(stats.connected.load(Ordering::Relaxed), 0, "a stopped transport is down");
        two.stop().await.expect("a clean stop");
    }

    /// A peer's messages reach the node's driver; a node alone starts no transport.
    #[tokio::test]
    async fn a_peers_messages_are_received_and_a_lone_node_has_no_transport() {
        let dir = tempfile::tempdir().unwrap();
        let ids = [NodeId(1), NodeId(2)];
        let (mut config, listener) = member(dir.path(), 1, &ids);
        let fake_two = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        config.peers.insert(NodeId(2), fake_two.local_addr().unwrap().to_string());
        let one_addr = config.peer_listener.unwrap().to_string();
        let server = Server::start_with_peer_listener(config, Some(listener)).await.unwrap();
        let peer = PeerConfig {
            node_id: NodeId(2),
            cluster_id: "pair".into(),
            peers: [(NodeId(1), one_addr)].into(),
        };
        let (sink, _inbound) = mpsc::channel(16);
        let (stop, stopped) = watch::channel(false);
        let two: Peers<Message> = Peers::start(peer, fake_two, sink, stopped);
        for _ in 0..3 {
            assert!(two.send(NodeId(1), Message::default()));
        }
        let stats = Arc::clone(server.peer_stats().unwrap());
        wait_until("three messages", || stats.received.load(Ordering::Relaxed) == 3).await;
        assert_eq!(stats.received_dropped.load(Ordering::Relaxed), 0);
        stop.send_replace(true);
        two.stopped().await;
        server.stop().await.expect("a clean stop");

        let alone = tempfile::tempdir().unwrap();
        let spec =
            FormatSpec { cluster_id: Some("cairn-dev".into()), ..FormatSpec::single(NodeId(0)) };
        datadir::format(alone.path(), &spec).unwrap();
        let mut config = ServerConfig::new(alone.path());
        config.kafka_listener = "127.0.0.1:0".parse().unwrap();
        config.http_listener = None;
        let server = Server::start(config).await.unwrap();
        assert!(server.peer_stats().is_none() && server.peer_addr().is_none());
        assert!(!server.metrics().render().contains("cairn_peer"));
        server.stop().await.expect("a clean stop");
    }

    /// A node with peers and nowhere to accept them cannot start.
    #[tokio::test]
    async fn peers_without_a_peer_listener_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig::new(dir.path());
        config.kafka_listener = "127.0.0.1:0".parse().unwrap();
        config.http_listener = None;
        config.node.node_id = NodeId(1);
        config.peers.insert(NodeId(2), "127.0.0.1:1".into());
        let err = Server::start(config).await.unwrap_err();
        assert!(matches!(err, ServerError::NoPeerListener(1)), "{err}");
    }
}
