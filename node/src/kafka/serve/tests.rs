//! Each API served against a scripted core: the exact core requests a Kafka request
//! becomes, and the exact Kafka answer the core's answers become.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::data::whole_batches;
use super::*;
use crate::core::controller::TopicId;
use crate::core::io::NodeId;
use crate::core::log::batch::build;
use crate::core::node::{
    Acks, BrokerInfo, ClusterView, OffsetSpec, PartitionId, PartitionInfo, RequestError, TopicInfo,
    TopicState,
};
use crate::core::topic::ConfigChange;
use crate::kafka::request::{
    ProducePartition, ProduceRequest as CairnProduce, ProduceTopic, RequestHeader,
};
use crate::kafka::response::encode_response;
use crate::kafka::vectored::encode_response_chunks;
use crate::kafka::versions::SUPPORTED_APIS;

fn broker() -> Broker {
    Broker::new(&NodeConfig::default(), "node-0.example".into(), 9092, "cluster-a".into())
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

fn name(s: &str) -> TopicName {
    TopicName(text(s))
}

fn header(api_key: ApiKey, api_version: i16) -> RequestHeader {
    RequestHeader { api_key, api_version, correlation_id: 1, client_id: None }
}

/// Starts serving `body` at `version` and returns the core requests of the first round.
pub(super) fn start(body: KafkaRequest, version: i16, now: Instant) -> (Exchange, Vec<Request>) {
    let api_key = api_key_of(&body);
    let (exchange, step) = Exchange::start(&broker(), &header(api_key, version), body, now);
    let Step::Ask(requests) = step else { panic!("expected core requests, got {step:?}") };
    (exchange, requests)
}

fn api_key_of(body: &KafkaRequest) -> ApiKey {
    match body {
        KafkaRequest::ApiVersions(_) => ApiKey::ApiVersions,
        KafkaRequest::Metadata(_) => ApiKey::Metadata,
        KafkaRequest::Produce(_) => ApiKey::Produce,
        KafkaRequest::Fetch(_) => ApiKey::Fetch,
        KafkaRequest::ListOffsets(_) => ApiKey::ListOffsets,
        KafkaRequest::CreateTopics(_) => ApiKey::CreateTopics,
        KafkaRequest::DeleteTopics(_) => ApiKey::DeleteTopics,
        KafkaRequest::CreatePartitions(_) => ApiKey::CreatePartitions,
        KafkaRequest::DescribeConfigs(_) => ApiKey::DescribeConfigs,
        KafkaRequest::IncrementalAlterConfigs(_) => ApiKey::IncrementalAlterConfigs,
        KafkaRequest::DescribeCluster(_) => ApiKey::DescribeCluster,
        KafkaRequest::FindCoordinator(_) => ApiKey::FindCoordinator,
        KafkaRequest::JoinGroup(_) => ApiKey::JoinGroup,
        KafkaRequest::Heartbeat(_) => ApiKey::Heartbeat,
        KafkaRequest::LeaveGroup(_) => ApiKey::LeaveGroup,
        KafkaRequest::SyncGroup(_) => ApiKey::SyncGroup,
        KafkaRequest::OffsetCommit(_) => ApiKey::OffsetCommit,
        KafkaRequest::OffsetFetch(_) => ApiKey::OffsetFetch,
        KafkaRequest::DescribeGroups(_) => ApiKey::DescribeGroups,
        KafkaRequest::ListGroups(_) => ApiKey::ListGroups,
        KafkaRequest::DeleteGroups(_) => ApiKey::DeleteGroups,
        KafkaRequest::InitProducerId(_) => ApiKey::InitProducerId,
    }
}

/// Hands `answers` to the exchange in reverse order (the core answers in any order) and
/// returns the step that completes the round.
pub(super) fn answer(exchange: &mut Exchange, answers: Vec<Response>, now: Instant) -> Step {
    let count = answers.len();
    let mut last = None;
    for (index, response) in answers.into_iter().enumerate().rev() {
        let step = exchange.handle_response(&broker(), index, response, now);
        assert_eq!(step.is_some(), index == 0, "the round completes with its last answer");
        last = step;
    }
    assert!(count > 0);
    last.expect("the round completed")
}

pub(super) fn respond(step: Step) -> KafkaResponse {
    match step {
        Step::Respond(response) => response,
        other => panic!("expected an answer, got {other:?}"),
    }
}

pub(super) fn requests_eq(actual: &[Request], expected: &[Request]) {
    assert_eq!(format!("{actual:#?}"), format!("{expected:#?}"));
}

fn leader_0() -> PartitionInfo {
    PartitionInfo {
        leader: Some(NodeId(0)),
        leader_epoch: 0,
        replicas: vec![NodeId(0)],
        isr: vec![NodeId(0)],
        offline: vec![],
    }
}

fn topic_state(partitions: i32, config: TopicConfig) -> TopicState {
    let partitions = (0..partitions).map(|_| leader_0()).collect();
    TopicState { id: TopicId([7; 16]), partitions, config }
}

fn topic_ok(topic: &str, partitions: i32) -> TopicInfo {
    TopicInfo { name: topic.into(), state: Ok(topic_state(partitions, TopicConfig::default())) }
}

/// The node's view: node 0 at node-0.example:9092 is the only broker and the controller.
fn view(topics: Vec<TopicInfo>) -> Response {
    Response::Metadata(ClusterView {
        cluster_id: "cluster-a".into(),
        controller: Some(NodeId(0)),
        brokers: vec![BrokerInfo {
            node_id: NodeId(0),
            host: "node-0.example".into(),
            port: 9092,
            rack: None,
        }],
        topics,
    })
}

fn this_node_partition(index: i32) -> MetadataResponsePartition {
    MetadataResponsePartition::default()
        .with_partition_index(index)
        .with_leader_id(BrokerId(0))
        .with_leader_epoch(0)
        .with_replica_nodes(vec![BrokerId(0)])
        .with_isr_nodes(vec![BrokerId(0)])
}

#[test]
fn metadata_names_the_brokers_and_leaders_of_the_view() {
    let now = Instant::now();
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name("a"))),
            MetadataRequestTopic::default().with_name(Some(name("gone"))),
        ]))
        .with_allow_auto_topic_creation(false);
    let (mut exchange, requests) = start(KafkaRequest::Metadata(request), 12, now);
    let topics = Some(vec![Arc::from("a"), Arc::from("gone")]);
    requests_eq(&requests, &[Request::Metadata { topics, auto_create: false }]);
    let gone =
        TopicInfo { name: "gone".into(), state: Err(RequestError::UnknownTopic("gone".into())) };
    let core = view(vec![topic_ok("a", 2), gone]);
    let expected = MetadataResponse::default()
        .with_brokers(vec![
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(0))
                .with_host(text("node-0.example"))
                .with_port(9092),
        ])
        .with_cluster_id(Some(text("cluster-a")))
        .with_controller_id(BrokerId(0))
        .with_topics(vec![
            MetadataResponseTopic::default()
                .with_name(Some(name("a")))
                .with_partitions(vec![this_node_partition(0), this_node_partition(1)]),
            MetadataResponseTopic::default().with_name(Some(name("gone"))).with_error_code(3),
        ]);
    assert_eq!(respond(answer(&mut exchange, vec![core], now)), KafkaResponse::Metadata(expected));
}

#[test]
fn metadata_topic_lists_and_auto_creation_by_version() {
    let now = Instant::now();
    let one = || Some(vec![MetadataRequestTopic::default().with_name(Some(name("t")))]);
    // (version, topics, allow_auto_topic_creation, core topics, core auto_create)
    type Case = (i16, Option<Vec<MetadataRequestTopic>>, bool, Option<Vec<Arc<str>>>, bool);
    let cases: [Case; 5] = [
        // v0: an empty list is every topic, and missing topics are created.
        (0, Some(vec![]), false, None, true),
        (1, Some(vec![]), false, Some(vec![]), true),
        (3, one(), false, Some(vec!["t".into()]), true),
        (4, one(), false, Some(vec!["t".into()]), false),
        (12, None, true, None, true),
    ];
    for (version, topics, allow, want_topics, want_auto) in cases {
        let request =
            MetadataRequest::default().with_topics(topics).with_allow_auto_topic_creation(allow);
        let (_, requests) = start(KafkaRequest::Metadata(request), version, now);
        let expected = Request::Metadata { topics: want_topics, auto_create: want_auto };
        requests_eq(&requests, &[expected]);
    }
}

#[test]
fn metadata_while_the_node_starts_gives_every_named_topic_a_retriable_error() {
    let now = Instant::now();
    let request = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(name("t")))]));
    let (mut exchange, _) = start(KafkaRequest::Metadata(request), 9, now);
    let step = answer(&mut exchange, vec![Response::Error(RequestError::NodeNotReady)], now);
    let KafkaResponse::Metadata(response) = respond(step) else { panic!() };
    assert_eq!(response.topics.len(), 1);
    assert_eq!(response.topics[0].error_code, 5, "LEADER_NOT_AVAILABLE");
}

fn produce(acks: i16, partitions: Vec<(i32, Option<BytesMut>)>) -> KafkaRequest {
    let partitions =
        partitions.into_iter().map(|(index, records)| ProducePartition { index, records });
    KafkaRequest::Produce(CairnProduce {
        transactional_id: None,
        acks,
        timeout_ms: 1000,
        topics: vec![ProduceTopic { name: "t".into(), partitions: partitions.collect() }],
        batches_copied: false,
    })
}

#[test]
fn produce_answers_every_partition_in_request_order() {
    let now = Instant::now();
    let batch = build::batch(&[b"v"], 7);
    let batch_bytes = batch.len() as u64;
    let body = produce(-1, vec![(0, Some(batch.clone())), (1, None), (2, Some(batch.clone()))]);
    let (mut exchange, requests) = start(body, 9, now);
    let expected = [
        Request::Produce {
            partition: PartitionId::new("t", 0),
            acks: Acks::All,
            batch: batch.clone(),
        },
        Request::Produce { partition: PartitionId::new("t", 2), acks: Acks::All, batch },
    ];
    requests_eq(&requests, &expected);
    let missing = RequestError::UnknownPartition(PartitionId::new("t", 2));
    let core = vec![Response::Produced { base_offset: 41 }, Response::Error(missing.clone())];
    let partition = |index| PartitionProduceResponse::default().with_index(index);
    let expected = ProduceResponse::default().with_responses(vec![
        TopicProduceResponse::default().with_name(name("t")).with_partition_responses(vec![
            partition(0).with_base_offset(41),
            partition(1)
                .with_error_code(2)
                .with_base_offset(-1)
                .with_error_message(Some(text("records are null"))),
            partition(2)
                .with_error_code(3)
                .with_base_offset(-1)
                .with_error_message(Some(text(&missing.to_string()))),
        ]),
    ]);
    assert_eq!(respond(answer(&mut exchange, core, now)), KafkaResponse::Produce(expected));
    assert_eq!(exchange.stats().bytes_appended, batch_bytes, "only the accepted batch");
}

#[test]
fn produce_with_acks_0_tells_the_core_and_answers_nothing() {
    let batch = build::batch(&[b"v"], 7);
    let batch_bytes = batch.len() as u64;
    let body = produce(0, vec![(3, Some(batch.clone()))]);
    let (exchange, step) =
        Exchange::start(&broker(), &header(ApiKey::Produce, 7), body, Instant::now());
    let Step::Tell(requests) = step else { panic!("{step:?}") };
    let expected =
        Request::Produce { partition: PartitionId::new("t", 3), acks: Acks::None, batch };
    requests_eq(&requests, &[expected]);
    assert_eq!(exchange.stats().bytes_appended, batch_bytes);
}

#[test]
fn produce_with_invalid_acks_or_a_transaction_is_refused_without_the_core() {
    let batch = build::batch(&[b"v"], 7);
    let (_, step) = Exchange::start(
        &broker(),
        &header(ApiKey::Produce, 9),
        produce(2, vec![(0, Some(batch.clone()))]),
        Instant::now(),
    );
    let KafkaResponse::Produce(response) = respond(step) else { panic!() };
    assert_eq!(response.responses[0].partition_responses[0].error_code, 21);
    let KafkaRequest::Produce(mut transactional) = produce(1, vec![(0, Some(batch))]) else {
        unreachable!()
    };
    transactional.transactional_id = Some("tx".into());
    let body = KafkaRequest::Produce(transactional);
    let (_, step) = Exchange::start(&broker(), &header(ApiKey::Produce, 9), body, Instant::now());
    let KafkaResponse::Produce(response) = respond(step) else { panic!() };
    assert_eq!(response.responses[0].partition_responses[0].error_code, 42);
}

/// `count` batches of one record each, concatenated: each is 69 bytes long.
fn batches(count: usize) -> Bytes {
    let mut out = BytesMut::new();
    for _ in 0..count {
        out.extend_from_slice(&build::batch(&[b"v"], 1));
    }
    out.freeze()
}

#[test]
fn whole_batches_cuts_at_batch_boundaries() {
    let records = batches(3);
    assert_eq!(records.len(), 3 * 69);
    // (budget, first batch whole regardless, bytes kept)
    let cases = [
        (1000, false, 207),
        (207, false, 207),
        (206, false, 138),
        (69, false, 69),
        (68, false, 0),
        (68, true, 69),
        (0, true, 69),
        (0, false, 0),
    ];
    for (budget, first_whole, kept) in cases {
        let got = whole_batches(&records, budget, first_whole);
        assert_eq!(got.len(), kept, "budget {budget} first_whole {first_whole}");
        assert_eq!(got.as_ptr(), records.as_ptr(), "a slice, not a copy");
    }
    // A torn tail (which the core never returns) is left out, not passed on.
    assert_eq!(whole_batches(&records.slice(..100), 1000, true).len(), 69);
}

fn fetch_request(
    partitions: &[(i32, i64)],
    max_bytes: i32,
    wait_ms: i32,
    min: i32,
) -> KafkaRequest {
    let partitions = partitions.iter().map(|&(partition, offset)| {
        FetchPartition::default()
            .with_partition(partition)
            .with_fetch_offset(offset)
            .with_partition_max_bytes(1000)
    });
    KafkaRequest::Fetch(
        FetchRequest::default()
            .with_max_wait_ms(wait_ms)
            .with_min_bytes(min)
            .with_max_bytes(max_bytes)
            .with_topics(vec![
                FetchTopic::default().with_topic(name("t")).with_partitions(partitions.collect()),
            ]),
    )
}

fn fetched(records: Bytes) -> Response {
    Response::Fetched { records, high_watermark: 10, log_start_offset: 2 }
}

fn partition_data(index: i32, records: Bytes) -> PartitionData {
    PartitionData::default()
        .with_partition_index(index)
        .with_high_watermark(10)
        .with_last_stable_offset(10)
        .with_log_start_offset(2)
        .with_records(Some(records))
}

#[test]
fn fetch_keeps_the_request_max_bytes_across_partitions() {
    let now = Instant::now();
    let body = fetch_request(&[(0, 4), (1, 0), (2, -1)], 100, 0, 1);
    let (mut exchange, requests) = start(body, 12, now);
    let fetch = |partition, offset| Request::Fetch {
        partition: PartitionId::new("t", partition),
        offset,
        max_bytes: 1000,
        leader_epoch: None,
    };
    requests_eq(&requests, &[fetch(0, 4), fetch(1, 0)]);
    let core = vec![fetched(batches(2)), fetched(batches(1))];
    // 100 bytes: the first batch of partition 0 (69), nothing of partition 1 (69 more).
    let expected = FetchResponse::default().with_responses(vec![
        FetchableTopicResponse::default().with_topic(name("t")).with_partitions(vec![
            partition_data(0, batches(1)),
            partition_data(1, Bytes::new()),
            PartitionData::default()
                .with_partition_index(2)
                .with_error_code(1)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_records(Some(Bytes::new())),
        ]),
    ]);
    assert_eq!(respond(answer(&mut exchange, core, now)), KafkaResponse::Fetch(expected));
    assert_eq!(exchange.stats().bytes_fetched, 69);
}

#[test]
fn fetch_waits_for_min_bytes_until_data_arrives_or_the_deadline() {
    let t0 = Instant::now();
    let (mut exchange, requests) = start(fetch_request(&[(0, 10)], 1 << 20, 500, 1), 11, t0);
    assert_eq!(requests.len(), 1);
    let deadline = t0 + Duration::from_millis(500);
    let step = answer(&mut exchange, vec![fetched(Bytes::new())], t0);
    assert!(matches!(step, Step::Wait { deadline: d } if d == deadline), "{step:?}");
    // New data: read again, and answer with it.
    let t1 = t0 + Duration::from_millis(100);
    let Step::Ask(again) = exchange.handle_wake(&broker(), t1) else { panic!() };
    requests_eq(&again, &requests);
    let KafkaResponse::Fetch(response) =
        respond(answer(&mut exchange, vec![fetched(batches(1))], t1))
    else {
        panic!()
    };
    assert_eq!(response.responses[0].partitions[0].records, Some(batches(1)));

    // No data until the deadline: one last read, then the empty answer.
    let (mut exchange, _) = start(fetch_request(&[(0, 10)], 1 << 20, 500, 1), 11, t0);
    let step = answer(&mut exchange, vec![fetched(Bytes::new())], t0);
    assert!(matches!(step, Step::Wait { .. }));
    assert!(matches!(exchange.handle_wake(&broker(), deadline), Step::Ask(_)));
    let step = answer(&mut exchange, vec![fetched(Bytes::new())], deadline);
    let KafkaResponse::Fetch(response) = respond(step) else { panic!() };
    assert_eq!(response.responses[0].partitions[0].records, Some(Bytes::new()));
}

#[test]
fn fetch_answers_at_once_without_max_wait_or_on_an_error() {
    let now = Instant::now();
    let (mut exchange, _) = start(fetch_request(&[(0, 10)], 1 << 20, 0, 1), 11, now);
    assert!(matches!(answer(&mut exchange, vec![fetched(Bytes::new())], now), Step::Respond(_)));
    let (mut exchange, _) = start(fetch_request(&[(0, 10), (1, 0)], 1 << 20, 500, 1), 11, now);
    let error = Response::Error(RequestError::UnknownPartition(PartitionId::new("t", 1)));
    let step = answer(&mut exchange, vec![fetched(Bytes::new()), error], now);
    assert!(matches!(step, Step::Respond(_)), "an error is news enough: {step:?}");
}

#[test]
fn list_offsets_by_spec_and_version() {
    let now = Instant::now();
    let partitions = [(0, -2), (1, -1), (2, 1_700_000_000_000), (3, -3)].map(|(index, ts)| {
        ListOffsetsPartition::default().with_partition_index(index).with_timestamp(ts)
    });
    let request = ListOffsetsRequest::default().with_topics(vec![
        ListOffsetsTopic::default().with_name(name("t")).with_partitions(partitions.to_vec()),
    ]);
    for (version, leader_epoch) in [(1, -1), (4, 0)] {
        let (mut exchange, requests) =
            start(KafkaRequest::ListOffsets(request.clone()), version, now);
        let list = |partition, spec| Request::ListOffsets {
            partition: PartitionId::new("t", partition),
            spec,
            leader_epoch: None,
        };
        requests_eq(
            &requests,
            &[
                list(0, OffsetSpec::Earliest),
                list(1, OffsetSpec::Latest),
                list(2, OffsetSpec::Timestamp(1_700_000_000_000)),
            ],
        );
        let core = vec![
            Response::Offset { offset: 0, timestamp: -1, leader_epoch: 0 },
            Response::Offset { offset: 9, timestamp: -1, leader_epoch: 0 },
            Response::Error(RequestError::NotLeader {
                partition: PartitionId::new("t", 2),
                leader: None,
            }),
        ];
        let KafkaResponse::ListOffsets(response) = respond(answer(&mut exchange, core, now)) else {
            panic!()
        };
        let got: Vec<(i32, i16, i64, i32)> = response.topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.error_code, p.offset, p.leader_epoch))
            .collect();
        let expected =
            vec![(0, 0, 0, leader_epoch), (1, 0, 9, leader_epoch), (2, 6, -1, -1), (3, 42, -1, -1)];
        assert_eq!(got, expected, "v{version}");
    }
}

#[test]
fn create_topics_checks_what_the_core_cannot() {
    let now = Instant::now();
    let topic = |n: &str, partitions, replication| {
        CreatableTopic::default()
            .with_name(name(n))
            .with_num_partitions(partitions)
            .with_replication_factor(replication)
    };
    let setting = |key: &str, value: Option<&str>| {
        CreatableTopicConfig::default().with_name(text(key)).with_value(value.map(text))
    };
    let request = CreateTopicsRequest::default().with_validate_only(true).with_topics(vec![
        topic("defaults", -1, -1),
        topic("three", 1, 3),
        topic("zero", 1, 0),
        topic("placed", -1, -1).with_assignments(vec![CreatableReplicaAssignment::default()]),
        topic("twice", 1, 1),
        topic("twice", 2, 1),
        topic("configured", 4, 1).with_configs(vec![
            setting("retention.ms", Some("60000")),
            setting("durability", None),
        ]),
        topic("bad-setting", 1, 1).with_configs(vec![setting("colour", Some("blue"))]),
    ]);
    let (mut exchange, requests) = start(KafkaRequest::CreateTopics(request), 7, now);
    let mut configured = TopicConfig::default();
    configured.log.retention_ms = 60_000;
    let create = |name: &str, partitions, replication_factor, config| Request::CreateTopic {
        name: name.into(),
        partitions,
        replication_factor,
        config,
        validate_only: true,
    };
    requests_eq(
        &requests,
        &[
            create("defaults", 1, -1, TopicConfig::default()),
            create("three", 1, 3, TopicConfig::default()),
            create("configured", 4, 1, configured),
        ],
    );
    // The controller checks a replication factor against the live brokers.
    let too_many = RequestError::Controller { code: 38, message: "1 live broker".into() };
    let exists = RequestError::Controller { code: 36, message: "configured exists".into() };
    let core =
        vec![Response::TopicChanged, Response::Error(too_many), Response::Error(exists.clone())];
    let KafkaResponse::CreateTopics(response) = respond(answer(&mut exchange, core, now)) else {
        panic!()
    };
    let got: Vec<(&str, i16, i32, i16)> = response
        .topics
        .iter()
        .map(|t| (t.name.as_str(), t.error_code, t.num_partitions, t.replication_factor))
        .collect();
    let expected = vec![
        ("defaults", 0, 1, 1),
        ("three", 38, -1, -1),
        ("zero", 38, -1, -1),
        ("placed", 42, -1, -1),
        ("twice", 42, -1, -1),
        ("twice", 42, -1, -1),
        ("configured", 36, -1, -1),
        ("bad-setting", 40, -1, -1),
    ];
    assert_eq!(got, expected);
    assert_eq!(response.topics[0].error_message, None);
    assert_eq!(response.topics[6].error_message, Some(text(&exists.to_string())));
    let configs = response.topics[0].configs.as_ref().unwrap();
    assert_eq!(configs.len(), crate::core::topic::SETTINGS.len());
    assert!(configs.iter().all(|c| c.config_source == admin::SOURCE_DEFAULT_CONFIG));
}

#[test]
fn delete_topics_by_name_and_by_id() {
    let now = Instant::now();
    let request = DeleteTopicsRequest::default().with_topics(vec![
        DeleteTopicState::default().with_name(Some(name("a"))),
        DeleteTopicState::default().with_name(None),
    ]);
    let (mut exchange, requests) = start(KafkaRequest::DeleteTopics(request), 6, now);
    requests_eq(&requests, &[Request::DeleteTopic { name: "a".into() }]);
    let step = answer(&mut exchange, vec![Response::TopicChanged], now);
    let KafkaResponse::DeleteTopics(response) = respond(step) else { panic!() };
    let codes: Vec<i16> = response.responses.iter().map(|r| r.error_code).collect();
    assert_eq!(codes, vec![0, 100], "UNKNOWN_TOPIC_ID: Cairn has no topic ids");

    let request = DeleteTopicsRequest::default().with_topic_names(vec![name("b")]);
    let (_, requests) = start(KafkaRequest::DeleteTopics(request), 5, now);
    requests_eq(&requests, &[Request::DeleteTopic { name: "b".into() }]);
}

#[test]
fn describe_configs_of_topics_and_of_this_broker() {
    let now = Instant::now();
    let resource = |kind, name: &str, keys: Option<Vec<StrBytes>>| {
        DescribeConfigsResource::default()
            .with_resource_type(kind)
            .with_resource_name(text(name))
            .with_configuration_keys(keys)
    };
    let request = DescribeConfigsRequest::default().with_resources(vec![
        resource(2, "t", Some(vec![text("retention.ms"), text("durability"), text("nope")])),
        resource(4, "0", Some(vec![text("num.partitions")])),
        resource(4, "7", None),
        resource(3, "group", None),
    ]);
    let (mut exchange, requests) = start(KafkaRequest::DescribeConfigs(request), 4, now);
    requests_eq(
        &requests,
        &[Request::Metadata { topics: Some(vec!["t".into()]), auto_create: false }],
    );
    let mut config = TopicConfig::default();
    config.log.retention_ms = 1000;
    let info = TopicInfo { name: "t".into(), state: Ok(topic_state(1, config)) };
    let step = answer(&mut exchange, vec![view(vec![info])], now);
    let entry = |name: &str, value: &str, source, config_type| {
        DescribeConfigsResourceResult::default()
            .with_name(text(name))
            .with_value(Some(text(value)))
            .with_config_source(source)
            .with_config_type(config_type)
            .with_documentation(None)
    };
    let result = |kind, name: &str| {
        DescribeConfigsResult::default()
            .with_resource_type(kind)
            .with_resource_name(text(name))
            .with_error_message(None)
    };
    let expected = DescribeConfigsResponse::default().with_results(vec![
        result(2, "t").with_configs(vec![
            entry("durability", "fsync", 5, 2),
            entry("retention.ms", "1000", 1, 5),
        ]),
        result(4, "0").with_configs(vec![entry("num.partitions", "1", 4, 3).with_read_only(true)]),
        result(4, "7")
            .with_error_code(42)
            .with_error_message(Some(text("this is broker 0, not 7"))),
        result(3, "group").with_error_code(42).with_error_message(Some(text(
            "resource type 3 is not served; Cairn describes topics (2) and brokers (4)",
        ))),
    ]);
    assert_eq!(respond(step), KafkaResponse::DescribeConfigs(expected));
}

#[test]
fn incremental_alter_configs_maps_set_and_delete_and_refuses_the_rest() {
    let now = Instant::now();
    let op = |key: &str, operation, value: Option<&str>| {
        AlterableConfig::default()
            .with_name(text(key))
            .with_config_operation(operation)
            .with_value(value.map(text))
    };
    let resource = |kind, name: &str, configs| {
        AlterConfigsResource::default()
            .with_resource_type(kind)
            .with_resource_name(text(name))
            .with_configs(configs)
    };
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        resource(2, "t", vec![op("retention.ms", 0, Some("5")), op("segment.ms", 1, None)]),
        resource(2, "u", vec![op("cleanup.policy", 2, Some("compact"))]),
        resource(2, "v", vec![op("retention.ms", 0, None)]),
        resource(4, "0", vec![op("num.partitions", 0, Some("3"))]),
    ]);
    let (mut exchange, requests) = start(KafkaRequest::IncrementalAlterConfigs(request), 1, now);
    let changes = vec![
        ConfigChange::Set { key: "retention.ms".into(), value: "5".into() },
        ConfigChange::Delete { key: "segment.ms".into() },
    ];
    let expected = Request::AlterTopicConfig { name: "t".into(), changes, validate_only: false };
    requests_eq(&requests, &[expected]);
    let step = answer(&mut exchange, vec![Response::TopicChanged], now);
    let KafkaResponse::IncrementalAlterConfigs(response) = respond(step) else { panic!() };
    let codes: Vec<i16> = response.responses.iter().map(|r| r.error_code).collect();
    assert_eq!(codes, vec![0, 42, 42, 42]);
}

/// One answer of every served API through the exchange, at `version`.
fn sample_response(api_key: ApiKey, version: i16) -> KafkaResponse {
    let now = Instant::now();
    let body = match api_key {
        ApiKey::ApiVersions => KafkaRequest::ApiVersions(ApiVersionsRequest::default()),
        ApiKey::DescribeCluster => KafkaRequest::DescribeCluster(DescribeClusterRequest::default()),
        ApiKey::Metadata => KafkaRequest::Metadata(MetadataRequest::default().with_topics(None)),
        ApiKey::Produce => produce(1, vec![(0, Some(build::batch(&[b"v"], 1)))]),
        ApiKey::Fetch => fetch_request(&[(0, 0)], 1 << 20, 0, 0),
        ApiKey::ListOffsets => {
            KafkaRequest::ListOffsets(ListOffsetsRequest::default().with_topics(
                vec![ListOffsetsTopic::default().with_name(name("t")).with_partitions(vec![
                ListOffsetsPartition::default().with_timestamp(-1),
            ])],
            ))
        }
        ApiKey::CreateTopics => {
            KafkaRequest::CreateTopics(CreateTopicsRequest::default().with_topics(vec![
                CreatableTopic::default().with_name(name("t")).with_num_partitions(1),
            ]))
        }
        ApiKey::DeleteTopics => KafkaRequest::DeleteTopics(
            DeleteTopicsRequest::default()
                .with_topic_names(vec![name("t")])
                .with_topics(vec![DeleteTopicState::default().with_name(Some(name("t")))]),
        ),
        ApiKey::CreatePartitions => {
            KafkaRequest::CreatePartitions(CreatePartitionsRequest::default())
        }
        ApiKey::DescribeConfigs => {
            KafkaRequest::DescribeConfigs(DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(text("0")),
            ]))
        }
        ApiKey::IncrementalAlterConfigs => {
            KafkaRequest::IncrementalAlterConfigs(IncrementalAlterConfigsRequest::default())
        }
        ApiKey::InitProducerId => KafkaRequest::InitProducerId(
            InitProducerIdRequest::default().with_transactional_id(None),
        ),
        other => super::tests_groups::sample_group_body(other, version),
    };
    let (mut exchange, step) = Exchange::start(&broker(), &header(api_key, version), body, now);
    let Step::Ask(requests) = step else { return respond(step) };
    let answers = requests
        .iter()
        .map(|request| match request {
            Request::Metadata { .. } => view(vec![topic_ok("t", 1)]),
            Request::Produce { .. } => Response::Produced { base_offset: 3 },
            Request::Fetch { .. } => fetched(batches(1)),
            Request::ListOffsets { .. } => {
                Response::Offset { offset: 1, timestamp: -1, leader_epoch: 0 }
            }
            Request::FindCoordinator { .. } | Request::Group(_) | Request::ListGroups => {
                super::tests_groups::sample_group_answer(request)
            }
            Request::InitProducerId { .. } => {
                Response::ProducerId { producer_id: 1_000, producer_epoch: 0 }
            }
            _ => Response::TopicChanged,
        })
        .collect();
    respond(answer(&mut exchange, answers, now))
}

#[test]
fn every_answer_encodes_at_every_served_version() {
    for range in SUPPORTED_APIS {
        for version in range.version_min..=range.version_max {
            let response = sample_response(range.api_key, version);
            let encoded = encode_response(&header(range.api_key, version), &response);
            assert!(encoded.is_ok(), "{:?} v{version}: {encoded:?}", range.api_key);
            // What the listener writes: the same bytes, in chunks.
            let chunks = encode_response_chunks(&header(range.api_key, version), &response);
            let written: Vec<u8> = chunks.unwrap().iter().flat_map(|c| c.to_vec()).collect();
            assert_eq!(written, encoded.unwrap().to_vec(), "{:?} v{version}", range.api_key);
        }
    }
}

#[test]
fn init_producer_id_asks_the_core_and_answers_its_id_or_error_exactly() {
    let now = Instant::now();
    for version in 0..=4 {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(if version % 2 == 0 { None } else { Some(Default::default()) })
            .with_transaction_timeout_ms(60_000);
        let (mut exchange, asked) = start(KafkaRequest::InitProducerId(request), version, now);
        requests_eq(&asked, &[Request::InitProducerId { transactional_id: None }]);
        let answered = Response::ProducerId { producer_id: 4_000, producer_epoch: 0 };
        let expected = InitProducerIdResponse::default()
            .with_producer_id(ProducerId(4_000))
            .with_producer_epoch(0);
        let got = respond(answer(&mut exchange, vec![answered], now));
        assert_eq!(got, KafkaResponse::InitProducerId(expected), "v{version}");
    }
    let request = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(text("tx"))))
        .with_transaction_timeout_ms(60_000);
    let (mut exchange, asked) = start(KafkaRequest::InitProducerId(request), 4, now);
    requests_eq(&asked, &[Request::InitProducerId { transactional_id: Some("tx".into()) }]);
    let refused = Response::Error(RequestError::TransactionsUnsupported);
    let expected = InitProducerIdResponse::default()
        .with_error_code(42)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let got = respond(answer(&mut exchange, vec![refused], now));
    assert_eq!(got, KafkaResponse::InitProducerId(expected), "INVALID_REQUEST");
}
