//! The Kafka listener over real TCP sockets: a node started with `Server::start` on
//! 127.0.0.1:0 and a temporary data directory, and clients that encode requests and decode
//! answers with `kafka-protocol`'s client side, as a Kafka client library does.

#[path = "common/frame.rs"]
mod frame;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use cairn_node::core::log::batch::build;
use cairn_node::runtime::server::{Server, ServerConfig};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any single answer may take before a test fails instead of hanging.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

fn topic(s: &str) -> TopicName {
    TopicName(text(s))
}

/// A Kafka client reduced to framing, headers and correlation ids.
struct Client {
    stream: TcpStream,
    next_correlation: i32,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        Client { stream: TcpStream::connect(addr).await.unwrap(), next_correlation: 1 }
    }

    /// Writes a request without waiting for its answer; returns its correlation id.
    async fn send<R: Request>(&mut self, version: i16, body: &R) -> i32 {
        let correlation_id = self.next_correlation;
        self.next_correlation += 1;
        let frame = frame::request(version, correlation_id, "kafka-socket-test", body).unwrap();
        self.stream.write_all(&frame).await.unwrap();
        correlation_id
    }

    /// Reads one answer frame: its correlation id and the rest.
    async fn recv_frame(&mut self, header_version: i16) -> (i32, Bytes) {
        let read = async {
            let size = self.stream.read_i32().await.unwrap();
            let mut frame = vec![0; size as usize];
            self.stream.read_exact(&mut frame).await.unwrap();
            let mut frame = Bytes::from(frame);
            let header = ResponseHeader::decode(&mut frame, header_version).unwrap();
            (header.correlation_id, frame)
        };
        tokio::time::timeout(ANSWER_TIMEOUT, read).await.expect("an answer in time")
    }

    /// Reads the answer to request `correlation_id` of type `R`, the next on the wire.
    async fn recv<R: Request>(&mut self, version: i16, correlation_id: i32) -> R::Response {
        let (answered, mut body) =
            self.recv_frame(<R::Response as HeaderVersion>::header_version(version)).await;
        assert_eq!(answered, correlation_id, "answers come in request order");
        R::Response::decode(&mut body, version).unwrap()
    }

    async fn call<R: Request>(&mut self, version: i16, body: &R) -> R::Response {
        let correlation_id = self.send(version, body).await;
        self.recv::<R>(version, correlation_id).await
    }

    /// Waits for the server to close the connection (EOF or reset), ignoring any answers.
    async fn closed_by_server(&mut self) {
        let mut sink = vec![0; 4096];
        let drain = async {
            loop {
                match self.stream.read(&mut sink).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(ANSWER_TIMEOUT, drain).await.expect("the server closes the socket");
    }
}

async fn start(dir: &std::path::Path) -> Server {
    if !dir.join(cairn_node::core::raft::BOOTSTRAP_FILE).exists() {
        use cairn_node::runtime::datadir::{FormatSpec, format};
        let node_id = cairn_node::core::io::NodeId(0);
        let spec =
            FormatSpec { cluster_id: Some("cairn-dev".into()), ..FormatSpec::single(node_id) };
        format(dir, &spec).unwrap();
    }
    let mut config = ServerConfig::new(dir);
    config.kafka_listener = "127.0.0.1:0".parse().unwrap();
    config.http_listener = Some("127.0.0.1:0".parse().unwrap());
    let server = Server::start(config).await.unwrap();
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    while !server.metrics().ready.load(Ordering::Relaxed) {
        assert!(Instant::now() < deadline, "the node never became ready");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server
}

async fn create_topic(client: &mut Client, name: &str, partitions: i32) -> CreateTopicsResponse {
    let request = CreateTopicsRequest::default().with_timeout_ms(5000).with_topics(vec![
        CreatableTopic::default()
            .with_name(topic(name))
            .with_num_partitions(partitions)
            .with_replication_factor(-1),
    ]);
    client.call(7, &request).await
}

fn produce_request(name: &str, partition: i32, acks: i16, records: Bytes) -> ProduceRequest {
    ProduceRequest::default().with_acks(acks).with_timeout_ms(5000).with_topic_data(vec![
        TopicProduceData::default().with_name(topic(name)).with_partition_data(vec![
            PartitionProduceData::default().with_index(partition).with_records(Some(records)),
        ]),
    ])
}

fn record_batch(value: &str, timestamp: i64) -> Bytes {
    build::batch(&[value.as_bytes()], timestamp).freeze()
}

/// Produces one record, retrying while the new partition is still opening; returns its
/// offset.
async fn produce(client: &mut Client, name: &str, value: &str, acks: i16) -> i64 {
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    loop {
        let request = produce_request(name, 0, acks, record_batch(value, 1_700_000_000_000));
        let response = client.call(9, &request).await;
        let partition = &response.responses[0].partition_responses[0];
        // NOT_LEADER_OR_FOLLOWER: the partition is still recovering; a client retries.
        if partition.error_code == 6 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        assert_eq!(partition.error_code, 0, "{partition:?}");
        return partition.base_offset;
    }
}

fn fetch_request(name: &str, offset: i64, max_wait_ms: i32, min_bytes: i32) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(50 << 20)
        .with_topics(vec![FetchTopic::default().with_topic(topic(name)).with_partitions(vec![
            FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20),
        ])])
}

fn fetched_values(response: &FetchResponse) -> Vec<Bytes> {
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0, "{partition:?}");
    let mut records = partition.records.clone().unwrap_or_default();
    let mut values = Vec::new();
    // Bounded by the bytes fetched: every turn consumes one whole batch.
    while records.len() >= 12 {
        let length = i32::from_be_bytes(records[8..12].try_into().unwrap()) as usize;
        let batch = records.split_to(12 + length);
        values.extend(build::values(&batch));
    }
    values
}

#[tokio::test]
async fn api_versions_lists_every_served_api() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut client = Client::connect(server.kafka_addr()).await;
    let response = client.call(3, &ApiVersionsRequest::default()).await;
    assert_eq!(response.error_code, 0);
    let keys: Vec<i16> = response.api_keys.iter().map(|k| k.api_key).collect();
    // The consumer group APIs (8 to 16, 42) are decision 0015's.
    let expected =
        [0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 19, 20, 22, 32, 37, 42, 44, 60];
    assert_eq!(keys, expected);
    let cluster = client.call(1, &DescribeClusterRequest::default()).await;
    assert_eq!(cluster.cluster_id.as_str(), "cairn-dev");
    assert_eq!(cluster.brokers[0].port, i32::from(server.kafka_addr().port()));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn create_topic_then_metadata_describes_it_and_auto_creates_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut client = Client::connect(server.kafka_addr()).await;
    let created = create_topic(&mut client, "orders", 3).await;
    let result = &created.topics[0];
    assert_eq!((result.error_code, result.num_partitions, result.replication_factor), (0, 3, 1));
    assert!(result.configs.as_ref().unwrap().iter().any(|c| c.name.as_str() == "retention.ms"));
    let again = create_topic(&mut client, "orders", 3).await;
    assert_eq!(again.topics[0].error_code, 36, "TOPIC_ALREADY_EXISTS");

    let ask = |name: &str, auto: bool| {
        MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic(name)))]))
            .with_allow_auto_topic_creation(auto)
    };
    let metadata = client.call(12, &ask("orders", false)).await;
    let port = i32::from(server.kafka_addr().port());
    assert_eq!((metadata.brokers[0].node_id.0, metadata.brokers[0].port), (0, port));
    assert_eq!(metadata.controller_id.0, 0);
    let orders = &metadata.topics[0];
    assert_eq!(orders.error_code, 0);
    assert_eq!(orders.partitions.len(), 3);
    assert!(orders.partitions.iter().all(|p| p.leader_id.0 == 0 && p.isr_nodes.len() == 1));

    let refused = client.call(12, &ask("lazy", false)).await;
    assert_eq!(refused.topics[0].error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");
    let created = client.call(12, &ask("lazy", true)).await;
    assert_eq!(created.topics[0].error_code, 0);
    assert_eq!(created.topics[0].partitions.len(), 1, "num.partitions");
    let all = client.call(1, &MetadataRequest::default().with_topics(None)).await;
    let mut names: Vec<&str> =
        all.topics.iter().map(|t| t.name.as_ref().unwrap().as_str()).collect();
    names.sort();
    assert_eq!(names, vec!["lazy", "orders"]);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn create_topics_refuses_more_replicas_than_live_brokers() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut client = Client::connect(server.kafka_addr()).await;
    let request = CreateTopicsRequest::default().with_topics(vec![
        CreatableTopic::default()
            .with_name(topic("replicated"))
            .with_num_partitions(1)
            .with_replication_factor(3),
        CreatableTopic::default()
            .with_name(topic("bad-config"))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(vec![
                CreatableTopicConfig::default()
                    .with_name(text("retention.ms"))
                    .with_value(Some(text("soon"))),
            ]),
        CreatableTopic::default()
            .with_name(topic("dry-run"))
            .with_num_partitions(2)
            .with_replication_factor(1),
    ]);
    let response = client.call(7, &request.with_validate_only(false)).await;
    let codes: Vec<i16> = response.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(codes, vec![38, 40, 0], "INVALID_REPLICATION_FACTOR, INVALID_CONFIG, created");
    let message = response.topics[0].error_message.as_ref().unwrap();
    assert!(message.contains("replication factor 3 is not possible"), "{message}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn produce_with_acks_all_one_and_zero_then_fetch_reads_everything_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut client = Client::connect(server.kafka_addr()).await;
    create_topic(&mut client, "events", 1).await;
    assert_eq!(produce(&mut client, "events", "first", -1).await, 0);
    assert_eq!(produce(&mut client, "events", "second", 1).await, 1);

    // acks 0: no answer at all, so the next answer on the wire is the ApiVersions one.
    client.send(9, &produce_request("events", 0, 0, record_batch("third", 5))).await;
    let versions = client.send(3, &ApiVersionsRequest::default()).await;
    let answer = client.recv::<ApiVersionsRequest>(3, versions).await;
    assert_eq!(answer.error_code, 0);

    let deadline = Instant::now() + ANSWER_TIMEOUT;
    let values = loop {
        let response = client.call(12, &fetch_request("events", 0, 0, 0)).await;
        let values = fetched_values(&response);
        if values.len() == 3 || Instant::now() > deadline {
            let partition = &response.responses[0].partitions[0];
            assert_eq!(partition.high_watermark, 3);
            assert_eq!(partition.last_stable_offset, 3);
            assert_eq!(partition.log_start_offset, 0);
            break values;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(values, vec!["first", "second", "third"]);
    assert!(server.metrics().bytes_appended.load(Ordering::Relaxed) > 0);
    assert!(server.metrics().bytes_fetched.load(Ordering::Relaxed) > 0);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_long_poll_returns_when_data_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut consumer = Client::connect(server.kafka_addr()).await;
    let mut producer = Client::connect(server.kafka_addr()).await;
    create_topic(&mut producer, "waits", 1).await;
    produce(&mut producer, "waits", "before", -1).await;
    let started = Instant::now();
    let fetch = consumer.send(12, &fetch_request("waits", 1, 15_000, 1)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    produce(&mut producer, "waits", "after", -1).await;
    let response = consumer.recv::<FetchRequest>(12, fetch).await;
    assert_eq!(fetched_values(&response), vec!["after"]);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(200), "it waited for the data: {waited:?}");
    assert!(waited < Duration::from_secs(10), "it did not wait for max_wait: {waited:?}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_long_poll_without_data_answers_empty_after_max_wait() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut client = Client::connect(server.kafka_addr()).await;
    create_topic(&mut client, "quiet", 1).await;
    produce(&mut client, "quiet", "only", -1).await;
    let started = Instant::now();
    let response = client.call(11, &fetch_request("quiet", 1, 400, 1)).await;
    let waited = started.elapsed();
    assert_eq!(fetched_values(&response), Vec::<Bytes>::new());
    assert_eq!(response.responses[0].partitions[0].high_watermark, 1);
    assert!(waited >= Duration::from_millis(400), "answered before max_wait: {waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn list_offsets_earliest_latest_and_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut client = Client::connect(server.kafka_addr()).await;
    create_topic(&mut client, "times", 1).await;
    for (i, value) in ["a", "b", "c"].iter().enumerate() {
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            let batch = record_batch(value, 1_000 * (i as i64 + 1));
            let response = client.call(9, &produce_request("times", 0, -1, batch)).await;
            let code = response.responses[0].partition_responses[0].error_code;
            if code == 6 && Instant::now() < deadline {
                continue;
            }
            assert_eq!(code, 0);
            break;
        }
    }
    let spec = |timestamp| {
        ListOffsetsRequest::default().with_topics(vec![
            ListOffsetsTopic::default().with_name(topic("times")).with_partitions(vec![
                ListOffsetsPartition::default().with_partition_index(0).with_timestamp(timestamp),
            ]),
        ])
    };
    let offset = |response: &ListOffsetsResponse| {
        let partition = &response.topics[0].partitions[0];
        (partition.error_code, partition.offset)
    };
    assert_eq!(offset(&client.call(6, &spec(-2)).await), (0, 0));
    assert_eq!(offset(&client.call(6, &spec(-1)).await), (0, 3));
    assert_eq!(offset(&client.call(6, &spec(1_500)).await), (0, 1));
    assert_eq!(offset(&client.call(2, &spec(9_999)).await), (0, -1), "no record that new");
    assert_eq!(offset(&client.call(6, &spec(-3)).await), (42, -1), "max timestamp: refused");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn topic_settings_are_described_altered_and_kept_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut client = Client::connect(server.kafka_addr()).await;
    create_topic(&mut client, "kept", 2).await;
    produce(&mut client, "kept", "durable", -1).await;

    let alter = |op: i8, value: Option<&str>| {
        IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(text("kept"))
                .with_configs(vec![
                    AlterableConfig::default()
                        .with_name(text("retention.ms"))
                        .with_config_operation(op)
                        .with_value(value.map(text)),
                ]),
        ])
    };
    let set = client.call(1, &alter(0, Some("123456"))).await;
    assert_eq!(set.responses[0].error_code, 0, "{:?}", set.responses[0]);
    let append = client.call(1, &alter(2, Some("1"))).await;
    assert_eq!(append.responses[0].error_code, 42, "INVALID_REQUEST for APPEND");
    let grow = CreatePartitionsRequest::default()
        .with_topics(vec![CreatePartitionsTopic::default().with_name(topic("kept")).with_count(4)]);
    let grown = client.call(3, &grow).await;
    assert_eq!(grown.results[0].error_code, 0);

    let describe = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(text("kept"))
            .with_configuration_keys(Some(vec![text("retention.ms"), text("segment.bytes")])),
        DescribeConfigsResource::default().with_resource_type(2).with_resource_name(text("nope")),
        DescribeConfigsResource::default().with_resource_type(4).with_resource_name(text("0")),
    ]);
    let check = |response: &DescribeConfigsResponse| {
        let topic = &response.results[0];
        let entries: Vec<(&str, &str, i8)> = topic
            .configs
            .iter()
            .map(|c| (c.name.as_str(), c.value.as_ref().unwrap().as_str(), c.config_source))
            .collect();
        assert_eq!(entries[0], ("retention.ms", "123456", 1), "TOPIC_CONFIG");
        assert_eq!(entries[1].2, 5, "segment.bytes is a default");
        assert_eq!(entries.len(), 2);
        assert_eq!(response.results[1].error_code, 3, "unknown topic");
        let broker = &response.results[2];
        assert!(broker.configs.iter().any(|c| c.name.as_str() == "num.partitions"));
    };
    check(&client.call(4, &describe).await);
    server.stop().await.unwrap();

    let server = start(dir.path()).await;
    let mut client = Client::connect(server.kafka_addr()).await;
    check(&client.call(4, &describe).await);
    let all = client.call(12, &MetadataRequest::default().with_topics(None)).await;
    assert_eq!(all.topics[0].partitions.len(), 4, "the grown partition count survived");
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    loop {
        // The partition recovers after the restart (a client retries meanwhile), then syncs
        // its recovered tail before its high watermark covers it: the fetch waits for that.
        let response = client.call(12, &fetch_request("kept", 0, 5000, 1)).await;
        if response.responses[0].partitions[0].error_code == 6 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        assert_eq!(fetched_values(&response), vec!["durable"]);
        break;
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn delete_topics_removes_the_topic() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut client = Client::connect(server.kafka_addr()).await;
    create_topic(&mut client, "doomed", 1).await;
    let delete = DeleteTopicsRequest::default()
        .with_topic_names(vec![topic("doomed"), topic("never-was")])
        .with_timeout_ms(5000);
    let response = client.call(5, &delete).await;
    let codes: Vec<i16> = response.responses.iter().map(|r| r.error_code).collect();
    assert_eq!(codes, vec![0, 3]);
    let metadata = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic("doomed")))]))
        .with_allow_auto_topic_creation(false);
    assert_eq!(client.call(12, &metadata).await.topics[0].error_code, 3);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_request_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut client = Client::connect(server.kafka_addr()).await;
    create_topic(&mut client, "piped", 1).await;
    produce(&mut client, "piped", "warm-up", -1).await;
    // Slow (fsync'd produces, a waiting fetch) and fast (ApiVersions) requests interleaved:
    // the fast ones are done first, yet must be answered after the slow ones before them.
    let mut sent = Vec::new();
    for i in 0..40 {
        let correlation_id = match i % 4 {
            0 => client.send(9, &produce_request("piped", 0, -1, record_batch("x", i))).await,
            1 => client.send(3, &ApiVersionsRequest::default()).await,
            2 => client.send(12, &fetch_request("piped", 0, 0, 0)).await,
            _ => client.send(12, &MetadataRequest::default().with_topics(None)).await,
        };
        sent.push((i % 4, correlation_id));
    }
    for (kind, correlation_id) in sent {
        match kind {
            0 => {
                let answer = client.recv::<ProduceRequest>(9, correlation_id).await;
                assert_eq!(answer.responses[0].partition_responses[0].error_code, 0);
            }
            1 => {
                assert_eq!(client.recv::<ApiVersionsRequest>(3, correlation_id).await.error_code, 0)
            }
            2 => drop(client.recv::<FetchRequest>(12, correlation_id).await),
            _ => drop(client.recv::<MetadataRequest>(12, correlation_id).await),
        }
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn more_pipelined_produces_than_the_in_flight_bound_are_all_answered_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut client = Client::connect(server.kafka_addr()).await;
    create_topic(&mut client, "flood", 1).await;
    produce(&mut client, "flood", "warm-up", -1).await;
    // Each waits for an fsync, so the connection reaches its bound of 1024 in flight and
    // stops reading until answers go out.
    let count = 1500;
    let mut sent = Vec::new();
    for i in 0..count {
        let request = produce_request("flood", 0, -1, record_batch("x", i));
        sent.push(client.send(9, &request).await);
    }
    for (i, correlation_id) in sent.into_iter().enumerate() {
        let answer = client.recv::<ProduceRequest>(9, correlation_id).await;
        let partition = &answer.responses[0].partition_responses[0];
        assert_eq!((partition.error_code, partition.base_offset), (0, 1 + i as i64));
    }
    server.stop().await.unwrap();
}

/// Bad input on one connection while a well-behaved client on another keeps being served.
async fn bad_input_spares_other_clients(bytes: &[u8], rejected: u64) {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut good = Client::connect(server.kafka_addr()).await;
    create_topic(&mut good, "steady", 1).await;
    let mut bad = Client::connect(server.kafka_addr()).await;
    // The server may close before it read everything; the client's write may then fail.
    let _ = bad.stream.write_all(bytes).await;
    let _ = bad.stream.shutdown().await;
    assert_eq!(produce(&mut good, "steady", "still served", -1).await, 0);
    bad.closed_by_server().await;
    assert_eq!(good.call(3, &ApiVersionsRequest::default()).await.error_code, 0);
    assert_eq!(server.metrics().frames_rejected.load(Ordering::Relaxed), rejected);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn random_bytes_close_only_that_connection() {
    // A negative size prefix, then noise.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let mut bytes = vec![0xff, 0x12, 0x34, 0x56];
    bytes.extend_from_slice(&noise);
    bad_input_spares_other_clients(&bytes, 1).await;
}

#[tokio::test]
async fn a_2_gib_frame_size_closes_only_that_connection() {
    bad_input_spares_other_clients(&i32::MAX.to_be_bytes(), 1).await;
}

#[tokio::test]
async fn a_request_cut_short_closes_only_that_connection() {
    // A Metadata v1 frame whose body claims three topics and carries none.
    let mut frame = BytesMut::new();
    frame.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(ApiKey::Metadata as i16)
        .with_request_api_version(1)
        .with_correlation_id(7)
        .encode(&mut frame, 1)
        .unwrap();
    frame.put_i32(3);
    let size = (frame.len() - 4) as i32;
    frame[..4].copy_from_slice(&size.to_be_bytes());
    bad_input_spares_other_clients(&frame, 1).await;
    // A frame the client stops sending halfway is no rejection: the client just left.
    bad_input_spares_other_clients(&[0, 0, 0, 100, 0, 3, 0, 1], 0).await;
}

#[tokio::test]
async fn an_unknown_api_key_is_answered_with_unsupported_version() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut client = Client::connect(server.kafka_addr()).await;
    let mut frame = BytesMut::new();
    frame.put_i32(10);
    frame.put_i16(9999); // no such api
    frame.put_i16(0);
    frame.put_i32(4242);
    frame.put_i16(-1); // null client id
    client.stream.write_all(&frame).await.unwrap();
    let (correlation_id, mut body) = client.recv_frame(0).await;
    assert_eq!(correlation_id, 4242);
    assert_eq!(ApiVersionsResponse::decode(&mut body, 0).unwrap().error_code, 35);
    // The connection stays usable.
    assert_eq!(client.call(3, &ApiVersionsRequest::default()).await.error_code, 0);
    let unknown = client.call(9, &produce_request("absent", 0, 1, record_batch("v", 1))).await;
    assert_eq!(unknown.responses[0].partition_responses[0].error_code, 3);
    let fetch = client.call(12, &fetch_request("absent", 0, 0, 0)).await;
    assert_eq!(fetch.responses[0].partitions[0].error_code, 3);
    assert_eq!(server.metrics().frames_rejected.load(Ordering::Relaxed), 0);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn health_and_metrics_report_the_listener() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let _client = Client::connect(server.kafka_addr()).await;
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    while server.metrics().connections_open.load(Ordering::Relaxed) != 1 {
        assert!(Instant::now() < deadline, "the connection is counted");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut http = TcpStream::connect(server.http_addr().unwrap()).await.unwrap();
    http.write_all(b"GET /health HTTP/1.1\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    http.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    server.stop().await.unwrap();
}
