//! A real Cairn node for the client's tests: `Server::start` on 127.0.0.1:0 with a
//! temporary data directory, reached over real TCP.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cairn_client::{Client, ClientConfig};
use cairn_node::runtime::server::{Server, ServerConfig};

/// How long a test waits for the node before it fails instead of hanging.
pub const WAIT: Duration = Duration::from_secs(20);

/// A node and its data directory, kept for as long as the test runs.
pub struct Node {
    pub server: Server,
    pub _dir: tempfile::TempDir,
}

impl Node {
    pub async fn start() -> Node {
        Node::start_at(Node::formatted_dir(), "127.0.0.1:0".parse().unwrap()).await
    }

    /// A new data directory, formatted for a single node.
    pub fn formatted_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let node_id = cairn_node::core::io::NodeId(0);
        let spec = cairn_node::runtime::datadir::FormatSpec {
            cluster_id: Some("cairn-client-test".into()),
            ..cairn_node::runtime::datadir::FormatSpec::single(node_id)
        };
        cairn_node::runtime::datadir::format(dir.path(), &spec).unwrap();
        dir
    }

    /// Starts (or restarts) a node on a formatted directory, listening on `listener`.
    pub async fn start_at(dir: tempfile::TempDir, listener: std::net::SocketAddr) -> Node {
        let mut config = ServerConfig::new(dir.path());
        config.kafka_listener = listener;
        config.http_listener = None;
        let server = Server::start(config).await.unwrap();
        let deadline = Instant::now() + WAIT;
        while !server.metrics().ready.load(Ordering::Relaxed) {
            assert!(Instant::now() < deadline, "the node never became ready");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Node { server, _dir: dir }
    }

    pub fn bootstrap(&self) -> String {
        self.server.kafka_addr().to_string()
    }

    pub async fn client(&self) -> Client {
        let mut config = ClientConfig::new(&self.bootstrap());
        config.request_timeout = WAIT;
        Client::connect(config).await.unwrap()
    }
}
