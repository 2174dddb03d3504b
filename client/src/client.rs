//! [`Client`]: bootstrap, the metadata cache, and one connection per broker, shared by the
//! producer, the consumer and the admin client.
//!
//! The cache maps topics to their partitions' leaders. It is refreshed when a caller sees
//! an error that says it is stale (`Error::needs_metadata`: NOT_LEADER_OR_FOLLOWER,
//! LEADER_NOT_AVAILABLE, UNKNOWN_TOPIC_OR_PARTITION, a closed connection), and on a timer
//! (`metadata_max_age`) by a task that stops when the last `Client` clone is dropped.
//! The cache sits behind a synchronous mutex that is never held across an await; a
//! connection is made outside it, once per broker (a `OnceCell` per broker).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use rustc_hash::FxHashMap;
use tokio::sync::OnceCell;

use crate::conn::Connection;
use crate::error::{Error, KafkaCode, Result};
use crate::limits::METADATA_ATTEMPTS_MAX;

/// Settings shared by every part of the client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` of one or more brokers to learn the cluster from.
    pub bootstrap: Vec<String>,
    /// The client id sent with every request (Kafka's `client.id`).
    pub client_id: String,
    /// How long a request may wait for its answer before its connection is closed.
    pub request_timeout: Duration,
    /// How old cached metadata may get before it is refreshed (`metadata.max.age.ms`).
    pub metadata_max_age: Duration,
    /// How long to wait before retrying after a retriable error (`retry.backoff.ms`).
    pub retry_backoff: Duration,
}

impl ClientConfig {
    /// Defaults with these bootstrap servers (`host:port`, comma-separated).
    ///
    /// ```
    /// let config = cairn_client::ClientConfig::new("127.0.0.1:9092,127.0.0.1:9093");
    /// assert_eq!(config.bootstrap.len(), 2);
    /// ```
    pub fn new(bootstrap: &str) -> ClientConfig {
        ClientConfig {
            bootstrap: bootstrap
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            client_id: "cairn-client".to_string(),
            request_timeout: Duration::from_secs(30),
            metadata_max_age: Duration::from_secs(300),
            retry_backoff: Duration::from_millis(100),
        }
    }
}

/// A partition as the metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    /// The partition's index.
    pub partition: i32,
    /// The leader's broker id, or -1 when it has none.
    pub leader: i32,
    /// The leader's epoch, or -1 when the broker does not say.
    pub leader_epoch: i32,
    /// Every replica's broker id.
    pub replicas: Vec<i32>,
    /// The in-sync replicas' broker ids.
    pub isr: Vec<i32>,
    /// The partition's error code (0 when there is none).
    pub error_code: i16,
}

/// A topic as the metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    /// The topic's name.
    pub name: Arc<str>,
    /// Whether it is internal (`__consumer_offsets`).
    pub internal: bool,
    /// Its partitions, by index.
    pub partitions: Vec<PartitionMetadata>,
}

/// A broker as the metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerMetadata {
    /// The broker id.
    pub id: i32,
    /// Where clients reach it (`host:port`).
    pub address: String,
}

#[derive(Default)]
struct Cache {
    brokers: HashMap<i32, String>,
    /// Looked up once per record sent: hashed with Fx, not SipHash.
    topics: FxHashMap<Arc<str>, Arc<TopicMetadata>>,
    connections: HashMap<i32, Arc<OnceCell<Connection>>>,
    /// A connection to a bootstrap server, used until a broker's is open.
    bootstrap: Option<Connection>,
}

struct Inner {
    config: ClientConfig,
    client_id: Arc<str>,
    cache: Mutex<Cache>,
}

/// A connection to a Kafka cluster: bootstrap, metadata, a connection per broker. Cheap
/// to clone; [`Producer`](crate::Producer), [`Consumer`](crate::Consumer) and
/// [`Admin`](crate::Admin) share one.
///
/// ```no_run
/// # async fn run() -> cairn_client::Result<()> {
/// use cairn_client::{Client, ClientConfig};
/// let client = Client::connect(ClientConfig::new("127.0.0.1:9092")).await?;
/// for broker in client.brokers() {
///     println!("{} at {}", broker.id, broker.address);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("bootstrap", &self.inner.config.bootstrap).finish()
    }
}

impl Client {
    /// Connects to the first bootstrap server that answers and reads the cluster's
    /// brokers. Fails with `Error::Bootstrap` when none answers.
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        if config.bootstrap.is_empty() {
            return Err(Error::Config("no bootstrap server given".to_string()));
        }
        let client_id: Arc<str> = Arc::from(config.client_id.as_str());
        let inner = Arc::new(Inner { config, client_id, cache: Mutex::new(Cache::default()) });
        let client = Client { inner };
        let connection = client.connect_bootstrap().await?;
        client.cache().bootstrap = Some(connection);
        client.refresh(&[], false).await?;
        tokio::spawn(refresh_on_timer(Arc::downgrade(&client.inner)));
        Ok(client)
    }

    /// The settings this client was made with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The brokers the last metadata named, by id.
    pub fn brokers(&self) -> Vec<BrokerMetadata> {
        let cache = self.cache();
        let mut brokers: Vec<BrokerMetadata> = cache
            .brokers
            .iter()
            .map(|(&id, address)| BrokerMetadata { id, address: address.clone() })
            .collect();
        brokers.sort_by_key(|b| b.id);
        brokers
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.inner.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn connect_bootstrap(&self) -> Result<Connection> {
        let config = &self.inner.config;
        let mut last = String::from("no address");
        for server in &config.bootstrap {
            match self.connect_to(server).await {
                Ok(connection) => return Ok(connection),
                Err(error) => last = error.to_string(),
            }
        }
        Err(Error::Bootstrap { servers: config.bootstrap.join(","), reason: last })
    }

    async fn connect_to(&self, address: &str) -> Result<Connection> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(address)
            .await
            .map_err(|e| Error::Connect { addr: address.to_string(), reason: e.to_string() })?
            .collect();
        let mut last = Error::Connect {
            addr: address.to_string(),
            reason: "the name resolves to no address".to_string(),
        };
        for addr in addrs {
            let timeout = self.inner.config.request_timeout;
            match Connection::connect(addr, self.inner.client_id.clone(), timeout).await {
                Ok(connection) => return Ok(connection),
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    /// A connection to the broker with this id, made on first use and remade after it
    /// closed.
    pub(crate) async fn broker(&self, id: i32) -> Result<Connection> {
        let (cell, address) = {
            let mut cache = self.cache();
            let address = cache.brokers.get(&id).cloned().ok_or_else(|| {
                Error::kafka(KafkaCode::LEADER_NOT_AVAILABLE.0, format!("broker {id} unknown"))
            })?;
            let closed = cache
                .connections
                .get(&id)
                .and_then(|cell| cell.get())
                .is_some_and(Connection::is_closed);
            if closed {
                cache.connections.remove(&id);
            }
            (cache.connections.entry(id).or_default().clone(), address)
        };
        let connection = cell.get_or_try_init(|| self.connect_to(&address)).await?;
        Ok(connection.clone())
    }

    /// A connection to broker `id` at `address`, which an answer named (FindCoordinator)
    /// and the metadata may not know yet.
    pub(crate) async fn broker_at(&self, id: i32, address: &str) -> Result<Connection> {
        self.cache().brokers.entry(id).or_insert_with(|| address.to_string());
        self.broker(id).await
    }

    /// A connection to any broker: one already open, else the bootstrap's, else a new one.
    pub(crate) async fn any_broker(&self) -> Result<Connection> {
        let (open, ids) = {
            let cache = self.cache();
            let open = cache
                .connections
                .values()
                .filter_map(|cell| cell.get())
                .chain(cache.bootstrap.iter())
                .find(|c| !c.is_closed())
                .cloned();
            let mut ids: Vec<i32> = cache.brokers.keys().copied().collect();
            ids.sort_unstable();
            (open, ids)
        };
        if let Some(connection) = open {
            return Ok(connection);
        }
        for id in ids {
            if let Ok(connection) = self.broker(id).await {
                return Ok(connection);
            }
        }
        let connection = self.connect_bootstrap().await?;
        self.cache().bootstrap = Some(connection.clone());
        Ok(connection)
    }

    /// Asks for the metadata of `topics` (every topic when empty) and updates the cache.
    /// `create` asks the broker to create missing topics (Kafka's auto-creation).
    pub(crate) async fn refresh(
        &self,
        topics: &[&str],
        create: bool,
    ) -> Result<Vec<Arc<TopicMetadata>>> {
        let requested = (!topics.is_empty()).then(|| {
            topics
                .iter()
                .map(|name| {
                    MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
                })
                .collect()
        });
        let request = MetadataRequest::default()
            .with_topics(requested)
            .with_allow_auto_topic_creation(create);
        let connection = self.any_broker().await?;
        let response: MetadataResponse = connection.call(&request).await?;
        Ok(self.apply_metadata(&response, topics.is_empty()))
    }

    fn apply_metadata(&self, response: &MetadataResponse, all: bool) -> Vec<Arc<TopicMetadata>> {
        let mut cache = self.cache();
        cache.brokers = response
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
            .collect();
        let known: Vec<i32> = cache.brokers.keys().copied().collect();
        cache.connections.retain(|id, _| known.contains(id));
        if all {
            cache.topics.clear();
        }
        let mut topics = Vec::with_capacity(response.topics.len());
        for topic in &response.topics {
            let Some(name) = &topic.name else { continue };
            let name: Arc<str> = Arc::from(name.0.as_str());
            if topic.error_code != 0 || topic.partitions.is_empty() {
                cache.topics.remove(&name);
                topics.push(Arc::new(TopicMetadata {
                    name,
                    internal: topic.is_internal,
                    partitions: Vec::new(),
                }));
                continue;
            }
            let mut partitions: Vec<PartitionMetadata> = topic
                .partitions
                .iter()
                .map(|p| PartitionMetadata {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                    error_code: p.error_code,
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            let metadata = Arc::new(TopicMetadata {
                name: name.clone(),
                internal: topic.is_internal,
                partitions,
            });
            cache.topics.insert(name, metadata.clone());
            topics.push(metadata);
        }
        topics
    }

    /// The cached metadata of `topic`, asked for when missing. Waits (with backoff, a
    /// bounded number of times) while a new topic has no partitions yet.
    pub(crate) async fn topic(&self, topic: &str, create: bool) -> Result<Arc<TopicMetadata>> {
        if let Some(metadata) = self.cache().topics.get(topic) {
            return Ok(metadata.clone());
        }
        let mut last_code = KafkaCode::UNKNOWN_TOPIC_OR_PARTITION;
        for _ in 0..METADATA_ATTEMPTS_MAX {
            let found = self.refresh(&[topic], create).await?;
            if let Some(metadata) = found.into_iter().find(|t| &*t.name == topic)
                && !metadata.partitions.is_empty()
            {
                return Ok(metadata);
            }
            last_code = KafkaCode::LEADER_NOT_AVAILABLE;
            if !create {
                return Err(Error::UnknownTopic(topic.to_string()));
            }
            tokio::time::sleep(self.inner.config.retry_backoff).await;
        }
        Err(Error::kafka(last_code.0, format!("metadata of {topic}")))
    }

    /// The cached leader of a partition, if the cache knows one.
    pub(crate) fn cached_leader(&self, topic: &str, partition: i32) -> Option<i32> {
        let cache = self.cache();
        let metadata = cache.topics.get(topic)?;
        let leader = metadata.partitions.iter().find(|p| p.partition == partition)?.leader;
        (leader >= 0).then_some(leader)
    }

    /// The leader of a partition: from the cache, or after a refresh.
    pub(crate) async fn leader(&self, topic: &str, partition: i32) -> Result<i32> {
        if let Some(leader) = self.cached_leader(topic, partition) {
            return Ok(leader);
        }
        self.refresh(&[topic], false).await?;
        self.cached_leader(topic, partition).ok_or_else(|| {
            Error::kafka(KafkaCode::LEADER_NOT_AVAILABLE.0, format!("{topic}-{partition}"))
        })
    }

    /// Forgets a topic's metadata, so the next use asks again.
    pub(crate) fn invalidate(&self, topic: &str) {
        self.cache().topics.remove(topic);
    }

    /// The names of the topics the cache holds.
    fn cached_topics(&self) -> Vec<String> {
        self.cache().topics.keys().map(|t| t.to_string()).collect()
    }
}

/// Refreshes the cached topics' metadata every `metadata_max_age`, until the client is
/// dropped.
async fn refresh_on_timer(inner: Weak<Inner>) {
    let Some(period) = inner.upgrade().map(|inner| inner.config.metadata_max_age) else {
        return;
    };
    loop {
        tokio::time::sleep(period).await;
        let Some(inner) = inner.upgrade() else { return };
        let client = Client { inner };
        let topics = client.cached_topics();
        if topics.is_empty() {
            continue;
        }
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        if let Err(error) = client.refresh(&names, false).await {
            tracing::debug!(%error, "metadata refresh on the timer failed");
        }
    }
}
