//! A small Kafka client over turmoil's TCP: framing, correlation ids, and the few requests
//! the test needs (Metadata, CreateTopics, Produce, Fetch). Every call has a deadline in
//! simulated time, and any failure (timeout, broken connection, undecodable answer) is an
//! error the caller handles by asking Metadata again: the network is partitioned and hosts
//! crash under it.

use std::collections::BTreeMap;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use cairn_node::core::log::batch::{self, build};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable as _, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use turmoil::net::TcpStream;

/// How long one request may take before the connection is given up.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

fn other(what: impl Into<String>) -> io::Error {
    io::Error::other(what.into())
}

/// One connection to one broker.
struct Connection {
    stream: TcpStream,
    next_correlation: i32,
}

impl Connection {
    async fn open(address: &str) -> io::Result<Connection> {
        let stream = tokio::time::timeout(CALL_TIMEOUT, TcpStream::connect(address))
            .await
            .map_err(|_| other(format!("connect to {address}: timed out")))??;
        Ok(Connection { stream, next_correlation: 1 })
    }

    async fn call<R: Request>(&mut self, version: i16, body: &R) -> io::Result<R::Response> {
        let correlation_id = self.next_correlation;
        self.next_correlation += 1;
        let frame =
            crate::frame::request(version, correlation_id, "turmoil-test", body).map_err(other)?;
        let exchange = async {
            self.stream.write_all(&frame).await?;
            let size = self.stream.read_i32().await?;
            let mut answer = vec![0; usize::try_from(size).map_err(|_| other("negative size"))?];
            self.stream.read_exact(&mut answer).await?;
            Ok::<_, io::Error>(Bytes::from(answer))
        };
        let mut answer = tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| other(format!("{:?} timed out", R::KEY)))??;
        let header_version = <R::Response as HeaderVersion>::header_version(version);
        let header = ResponseHeader::decode(&mut answer, header_version)
            .map_err(|e| other(e.to_string()))?;
        if header.correlation_id != correlation_id {
            return Err(other("an answer out of order"));
        }
        R::Response::decode(&mut answer, version).map_err(|e| other(e.to_string()))
    }
}

/// What the cluster looks like from the client.
#[derive(Debug, Default, Clone)]
pub struct Cluster {
    /// Every broker's `HOST:PORT`.
    pub brokers: BTreeMap<i32, String>,
    /// The active controller, if one is known.
    pub controller: Option<i32>,
    /// The leader of each partition of the test's topic that has one.
    pub leaders: BTreeMap<i32, i32>,
}

/// A client with one connection per broker, opened when first needed.
pub struct Client {
    /// Where a first Metadata request may go.
    bootstrap: Vec<String>,
    connections: BTreeMap<String, Connection>,
    /// The cluster as last seen.
    pub cluster: Cluster,
    next_bootstrap: usize,
}

impl Client {
    pub fn new(bootstrap: Vec<String>) -> Client {
        Client {
            bootstrap,
            connections: BTreeMap::new(),
            cluster: Cluster::default(),
            next_bootstrap: 0,
        }
    }

    /// Calls `address`, opening a connection if needed; a failed call closes it.
    async fn call<R: Request>(
        &mut self,
        address: &str,
        version: i16,
        body: &R,
    ) -> io::Result<R::Response> {
        if !self.connections.contains_key(address) {
            let connection = Connection::open(address).await?;
            self.connections.insert(address.to_string(), connection);
        }
        let connection = self.connections.get_mut(address).expect("just opened");
        let result = connection.call(version, body).await;
        if result.is_err() {
            self.connections.remove(address);
        }
        result
    }

    /// Asks one broker (the bootstrap list in turn) for the cluster and `topic`'s leaders.
    pub async fn refresh(&mut self, topic: &str) -> io::Result<()> {
        let mut addresses: Vec<String> = self.cluster.brokers.values().cloned().collect();
        addresses.extend(self.bootstrap.iter().cloned());
        let address = addresses[self.next_bootstrap % addresses.len()].clone();
        self.next_bootstrap += 1;
        let request = MetadataRequest::default()
            .with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(TopicName(text(topic)))),
            ]))
            .with_allow_auto_topic_creation(false);
        let answer = self.call(&address, 12, &request).await?;
        let mut cluster = Cluster::default();
        for broker in &answer.brokers {
            cluster.brokers.insert(broker.node_id.0, format!("{}:{}", broker.host, broker.port));
        }
        cluster.controller = (answer.controller_id.0 >= 0).then_some(answer.controller_id.0);
        for found in &answer.topics {
            if found.error_code != 0 {
                continue;
            }
            for partition in &found.partitions {
                if partition.error_code == 0 && partition.leader_id.0 >= 0 {
                    cluster.leaders.insert(partition.partition_index, partition.leader_id.0);
                }
            }
        }
        self.cluster = cluster;
        Ok(())
    }

    fn address(&self, node: i32) -> io::Result<String> {
        self.cluster.brokers.get(&node).cloned().ok_or_else(|| other(format!("no broker {node}")))
    }

    /// Creates `topic` on the controller: `partitions`, every replica on a broker of its
    /// own, `configs`. Returns the error code.
    pub async fn create_topic(
        &mut self,
        topic: &str,
        partitions: i32,
        replicas: i16,
        configs: &[(&str, &str)],
    ) -> io::Result<i16> {
        let controller = self.cluster.controller.ok_or_else(|| other("no controller"))?;
        let address = self.address(controller)?;
        let configs = configs
            .iter()
            .map(|(name, value)| {
                CreatableTopicConfig::default().with_name(text(name)).with_value(Some(text(value)))
            })
            .collect();
        let request = CreateTopicsRequest::default().with_timeout_ms(2_000).with_topics(vec![
            CreatableTopic::default()
                .with_name(TopicName(text(topic)))
                .with_num_partitions(partitions)
                .with_replication_factor(replicas)
                .with_configs(configs),
        ]);
        let answer = self.call(&address, 7, &request).await?;
        Ok(answer.topics.first().map_or(-1, |t| t.error_code))
    }

    /// Produces `value` alone in a batch to `partition`'s leader with acks=all. The base
    /// offset if it was acknowledged, the error code if refused.
    pub async fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        value: &[u8],
        timestamp: i64,
    ) -> io::Result<Result<i64, i16>> {
        let leader = *self.cluster.leaders.get(&partition).ok_or_else(|| other("no leader"))?;
        let address = self.address(leader)?;
        let records = build::batch(&[value], timestamp).freeze();
        let request =
            ProduceRequest::default().with_acks(-1).with_timeout_ms(2_000).with_topic_data(vec![
                TopicProduceData::default().with_name(TopicName(text(topic))).with_partition_data(
                    vec![
                        PartitionProduceData::default()
                            .with_index(partition)
                            .with_records(Some(records)),
                    ],
                ),
            ]);
        let answer = self.call(&address, 9, &request).await?;
        let result = answer
            .responses
            .first()
            .and_then(|t| t.partition_responses.first())
            .ok_or_else(|| other("an empty produce answer"))?;
        Ok(if result.error_code == 0 { Ok(result.base_offset) } else { Err(result.error_code) })
    }

    /// Fetches `partition` from `offset` on its leader: the high watermark and the batches,
    /// each checked whole (length and CRC-32C). A batch that fails its check is corrupt
    /// bytes served as data, which the test reports, never an error to retry.
    pub async fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> io::Result<Result<Fetched, i16>> {
        let leader = *self.cluster.leaders.get(&partition).ok_or_else(|| other("no leader"))?;
        let address = self.address(leader)?;
        let request = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![
                FetchTopic::default().with_topic(TopicName(text(topic))).with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(256 << 10),
                ]),
            ]);
        let answer = self.call(&address, 12, &request).await?;
        let found = answer
            .responses
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| other("an empty fetch answer"))?;
        if found.error_code != 0 {
            return Ok(Err(found.error_code));
        }
        let (records, corrupt) = parse_batches(found.records.clone().unwrap_or_default());
        let corrupt = corrupt
            .map(|why| format!("partition {partition} from offset {offset}, node {leader}: {why}"));
        Ok(Ok(Fetched { high_watermark: found.high_watermark, records, corrupt }))
    }
}

/// The records of the batches in `bytes` as (offset, value), each batch checked whole
/// (length and CRC-32C), and why the first that failed its check did, if one did (the
/// records after it are not read). A last batch cut short by the fetch's size limit is
/// left out, as Kafka allows.
pub fn parse_batches(mut bytes: Bytes) -> (Vec<(i64, Bytes)>, Option<String>) {
    let mut records = Vec::new();
    while bytes.len() >= 12 {
        let length = i32::from_be_bytes(bytes[8..12].try_into().expect("4 bytes"));
        let total = usize::try_from(length).map_or(usize::MAX, |length| length.saturating_add(12));
        if total > bytes.len() {
            break;
        }
        let whole = bytes.split_to(total);
        match batch::validate_batch(&whole, 1 << 20) {
            Ok(header) => {
                for (delta, value) in build::values(&whole).into_iter().enumerate() {
                    records.push((header.base_offset + delta as i64, value));
                }
            }
            Err(error) => return (records, Some(format!("a batch fails its check: {error:?}"))),
        }
    }
    (records, None)
}

/// What one Fetch read.
#[derive(Debug)]
pub struct Fetched {
    /// The partition's high watermark.
    pub high_watermark: i64,
    /// Each record's offset and value.
    pub records: Vec<(i64, Bytes)>,
    /// Why a batch failed its check, if one did.
    pub corrupt: Option<String>,
}
