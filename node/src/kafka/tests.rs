//! Tests across the layer: requests encoded the way a client encodes them (with
//! `kafka-protocol`'s client side) go through the frame decoder and the request decoder;
//! responses encoded here are decoded the way a client decodes them; bad input of every
//! kind gets a typed error.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsAssignment, CreatePartitionsTopic,
};
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::frame::FrameDecoder;
use super::preflight::{self, PreflightError};
use super::request::{DecodeError, Decoded, KafkaRequest, RequestHeader, decode_request};
use super::response::{KafkaResponse, encode_response, encode_unsupported};
use super::versions::SUPPORTED_APIS;
use crate::core::node::{Acks, PartitionId};

fn name(s: &'static str) -> TopicName {
    TopicName(StrBytes::from_static_str(s))
}

fn text(s: &'static str) -> StrBytes {
    StrBytes::from_static_str(s)
}

/// A whole request frame (size prefix included) as a client writes it.
fn client_frame<T: Encodable>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> BytesMut {
    let mut out = BytesMut::new();
    out.put_i32(0);
    RequestHeader_::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(text("cairn-test")))
        .encode(&mut out, api_key.request_header_version(version))
        .unwrap();
    body.encode(&mut out, version).unwrap();
    let size = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&size.to_be_bytes());
    out
}

use kafka_protocol::messages::RequestHeader as RequestHeader_;

/// Runs a framed request through the frame decoder and the request decoder.
fn serve(mut wire: BytesMut) -> Result<Decoded, DecodeError> {
    let frame = FrameDecoder::default().decode(&mut wire).unwrap().expect("a whole frame");
    assert!(wire.is_empty());
    decode_request(frame)
}

fn decoded_body(wire: BytesMut) -> (RequestHeader, KafkaRequest) {
    match serve(wire) {
        Ok(Decoded::Request { header, body }) => (header, body),
        other => panic!("expected a request, got {other:?}"),
    }
}

/// A record batch stand-in: the layer never looks inside records.
fn batch(tag: u8, len: usize) -> Bytes {
    Bytes::from((0..len).map(|i| tag.wrapping_add(i as u8)).collect::<Vec<_>>())
}

fn produce_body(version: i16) -> ProduceRequest {
    let partition = |index, records| {
        PartitionProduceData::default().with_index(index).with_records(Some(records))
    };
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            TopicProduceData::default().with_name(name("orders")).with_partition_data(vec![
                partition(0, batch(1, 100)),
                partition(2, batch(50, 3000)),
            ]),
            TopicProduceData::default()
                .with_name(name("audit"))
                .with_partition_data(vec![partition(7, batch(200, 61))]),
        ])
        .with_transactional_id((version >= 3).then_some(TransactionalId(text("tx"))))
}

#[test]
fn produce_batches_come_out_as_separate_buffers_without_a_copy() {
    for range in SUPPORTED_APIS.iter().filter(|r| r.api_key == ApiKey::Produce) {
        for version in range.version_min..=range.version_max {
            let wire = client_frame(ApiKey::Produce, version, 7, &produce_body(version));
            let span = wire.as_ptr() as usize..wire.as_ptr() as usize + wire.len();
            let (header, body) = decoded_body(wire);
            assert_eq!(header.correlation_id, 7);
            assert_eq!(header.client_id.as_deref(), Some("cairn-test"));
            let KafkaRequest::Produce(produce) = body else { panic!("not a produce") };
            assert!(!produce.batches_copied, "v{version}");
            assert_eq!(produce.acks(), Some(Acks::All));
            assert_eq!(produce.transactional_id.as_deref(), Some("tx"));
            let partitions: Vec<_> = produce.into_partitions().collect();
            let expected = [
                (PartitionId::new("orders", 0), batch(1, 100)),
                (PartitionId::new("orders", 2), batch(50, 3000)),
                (PartitionId::new("audit", 7), batch(200, 61)),
            ];
            assert_eq!(partitions.len(), expected.len());
            for ((partition, records), (want_partition, want_records)) in
                partitions.into_iter().zip(expected)
            {
                assert_eq!(partition, want_partition);
                let records = records.expect("records sent");
                assert_eq!(&records[..], &want_records[..], "v{version} {partition}");
                // The batch is a view of the frame the client sent, not a copy.
                assert!(span.contains(&(records.as_ptr() as usize)), "v{version} {partition}");
            }
        }
    }
}

#[test]
fn produce_from_a_shared_read_buffer_copies_and_says_so() {
    let mut wire = client_frame(ApiKey::Produce, 9, 1, &produce_body(9));
    wire.put_slice(&client_frame(ApiKey::Produce, 9, 2, &produce_body(9)));
    let decoder = FrameDecoder::default();
    let first = decoder.decode(&mut wire).unwrap().unwrap();
    let Ok(Decoded::Request { body: KafkaRequest::Produce(produce), .. }) = decode_request(first)
    else {
        panic!("not a produce")
    };
    assert!(produce.batches_copied);
    let records: Vec<_> = produce.into_partitions().map(|(_, r)| r.unwrap()).collect();
    assert_eq!(&records[1][..], &batch(50, 3000)[..]);
    let second = decoder.decode(&mut wire).unwrap().unwrap();
    let Ok(Decoded::Request { header, .. }) = decode_request(second) else { panic!() };
    assert_eq!(header.correlation_id, 2);
}

#[test]
fn produce_with_null_and_empty_records() {
    let body = ProduceRequest::default().with_acks(1).with_topic_data(vec![
        TopicProduceData::default().with_name(name("t")).with_partition_data(vec![
            PartitionProduceData::default().with_index(0).with_records(None),
            PartitionProduceData::default().with_index(1).with_records(Some(Bytes::new())),
            PartitionProduceData::default().with_index(2).with_records(Some(batch(9, 10))),
        ]),
    ]);
    let (_, body) = decoded_body(client_frame(ApiKey::Produce, 8, 1, &body));
    let KafkaRequest::Produce(produce) = body else { panic!() };
    assert_eq!(produce.acks(), Some(Acks::Leader));
    let records: Vec<_> = produce.into_partitions().map(|(_, r)| r).collect();
    assert_eq!(records[0], None);
    assert_eq!(records[1].as_deref(), Some(&[][..]));
    assert_eq!(records[2].as_deref(), Some(&batch(9, 10)[..]));
}

#[test]
fn invalid_acks_are_reported_not_guessed() {
    let body = ProduceRequest::default().with_acks(2);
    let (_, body) = decoded_body(client_frame(ApiKey::Produce, 3, 1, &body));
    let KafkaRequest::Produce(produce) = body else { panic!() };
    assert_eq!(produce.acks(), None);
}

/// A populated request of every served API at `version`, with every array non-empty.
fn sample_request(api_key: ApiKey, v: i16) -> KafkaRequest {
    match api_key {
        ApiKey::ApiVersions => {
            let mut body = ApiVersionsRequest::default();
            if v >= 3 {
                body = body
                    .with_client_software_name(text("kcat"))
                    .with_client_software_version(text("1.7"));
            }
            KafkaRequest::ApiVersions(body)
        }
        ApiKey::Metadata => {
            KafkaRequest::Metadata(MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name("a"))),
                MetadataRequestTopic::default().with_name(Some(name("b"))),
            ])))
        }
        ApiKey::Fetch => {
            let partition = FetchPartition::default()
                .with_partition(3)
                .with_fetch_offset(42)
                .with_partition_max_bytes(1 << 20);
            let mut body = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(500)
                .with_min_bytes(1)
                .with_max_bytes(50 << 20)
                .with_topics(vec![
                    FetchTopic::default().with_topic(name("t")).with_partitions(vec![partition]),
                ]);
            if v >= 7 {
                body = body.with_forgotten_topics_data(vec![
                    ForgottenTopic::default().with_topic(name("old")).with_partitions(vec![1, 2]),
                ]);
            }
            if v >= 11 {
                body = body.with_rack_id(text("rack-a"));
            }
            KafkaRequest::Fetch(body)
        }
        ApiKey::ListOffsets => KafkaRequest::ListOffsets(
            ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
                ListOffsetsTopic::default().with_name(name("t")).with_partitions(vec![
                    ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-2),
                    ListOffsetsPartition::default()
                        .with_partition_index(1)
                        .with_timestamp(1_700_000_000_000),
                ]),
            ]),
        ),
        ApiKey::CreateTopics => KafkaRequest::CreateTopics(
            CreateTopicsRequest::default().with_timeout_ms(5000).with_topics(vec![
                CreatableTopic::default()
                    .with_name(name("t"))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
                    .with_assignments(vec![
                        CreatableReplicaAssignment::default()
                            .with_partition_index(0)
                            .with_broker_ids(vec![BrokerId(1), BrokerId(2)]),
                    ])
                    .with_configs(vec![
                        CreatableTopicConfig::default()
                            .with_name(text("retention.ms"))
                            .with_value(Some(text("1000"))),
                    ]),
            ]),
        ),
        ApiKey::DeleteTopics => {
            let body = DeleteTopicsRequest::default().with_timeout_ms(5000);
            KafkaRequest::DeleteTopics(if v >= 6 {
                body.with_topics(vec![DeleteTopicState::default().with_name(Some(name("t")))])
            } else {
                body.with_topic_names(vec![name("t"), name("u")])
            })
        }
        ApiKey::CreatePartitions => KafkaRequest::CreatePartitions(
            CreatePartitionsRequest::default().with_timeout_ms(5000).with_topics(vec![
                CreatePartitionsTopic::default()
                    .with_name(name("t"))
                    .with_count(4)
                    .with_assignments(Some(vec![
                        CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(1)]),
                    ])),
            ]),
        ),
        ApiKey::DescribeConfigs => {
            KafkaRequest::DescribeConfigs(DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(text("t"))
                    .with_configuration_keys(Some(vec![text("retention.ms")])),
            ]))
        }
        ApiKey::IncrementalAlterConfigs => KafkaRequest::IncrementalAlterConfigs(
            IncrementalAlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(text("t"))
                    .with_configs(vec![
                        AlterableConfig::default()
                            .with_name(text("retention.ms"))
                            .with_config_operation(0)
                            .with_value(Some(text("5"))),
                    ]),
            ]),
        ),
        ApiKey::DescribeCluster => KafkaRequest::DescribeCluster(
            DescribeClusterRequest::default().with_include_cluster_authorized_operations(true),
        ),
        ApiKey::Produce => KafkaRequest::Produce(super::request::ProduceRequest {
            transactional_id: None,
            acks: 0,
            timeout_ms: 0,
            topics: Vec::new(),
            batches_copied: false,
        }),
        ApiKey::InitProducerId => KafkaRequest::InitProducerId(
            InitProducerIdRequest::default().with_transaction_timeout_ms(60_000),
        ),
        other => sample_group_request(other, v),
    }
}

/// A populated request of every served group API at `v`, with every array non-empty and
/// every field of the version set.
fn sample_group_request(api_key: ApiKey, v: i16) -> KafkaRequest {
    let group = || GroupId(text("g"));
    let instance = |min: i16| (v >= min).then(|| text("i"));
    match api_key {
        ApiKey::FindCoordinator => {
            let mut body = FindCoordinatorRequest::default();
            if v >= 4 {
                body = body.with_coordinator_keys(vec![text("g"), text("h")]);
            } else {
                body = body.with_key(text("g"));
            }
            KafkaRequest::FindCoordinator(body.with_key_type(0))
        }
        ApiKey::JoinGroup => {
            use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
            let protocol = JoinGroupRequestProtocol::default()
                .with_name(text("range"))
                .with_metadata(Bytes::from_static(b"sub"));
            let mut body = JoinGroupRequest::default()
                .with_group_id(group())
                .with_session_timeout_ms(10_000)
                .with_member_id(text("m"))
                .with_group_instance_id(instance(5))
                .with_protocol_type(text("consumer"))
                .with_protocols(vec![protocol]);
            if v >= 1 {
                body = body.with_rebalance_timeout_ms(30_000);
            }
            if v >= 8 {
                body = body.with_reason(Some(text("why")));
            }
            KafkaRequest::JoinGroup(body)
        }
        ApiKey::SyncGroup => {
            use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
            let assignment = SyncGroupRequestAssignment::default()
                .with_member_id(text("m"))
                .with_assignment(Bytes::from_static(b"a"));
            let mut body = SyncGroupRequest::default()
                .with_group_id(group())
                .with_generation_id(3)
                .with_member_id(text("m"))
                .with_group_instance_id(instance(3))
                .with_assignments(vec![assignment]);
            if v >= 5 {
                body = body
                    .with_protocol_type(Some(text("consumer")))
                    .with_protocol_name(Some(text("range")));
            }
            KafkaRequest::SyncGroup(body)
        }
        ApiKey::Heartbeat => KafkaRequest::Heartbeat(
            HeartbeatRequest::default()
                .with_group_id(group())
                .with_generation_id(3)
                .with_member_id(text("m"))
                .with_group_instance_id(instance(3)),
        ),
        ApiKey::LeaveGroup => {
            use kafka_protocol::messages::leave_group_request::MemberIdentity;
            let body = LeaveGroupRequest::default().with_group_id(group());
            KafkaRequest::LeaveGroup(if v >= 3 {
                let mut member = MemberIdentity::default()
                    .with_member_id(text("m"))
                    .with_group_instance_id(Some(text("i")));
                if v >= 5 {
                    member = member.with_reason(Some(text("bye")));
                }
                body.with_members(vec![member])
            } else {
                body.with_member_id(text("m"))
            })
        }
        ApiKey::OffsetCommit => {
            use kafka_protocol::messages::offset_commit_request::{
                OffsetCommitRequestPartition, OffsetCommitRequestTopic,
            };
            let mut partition = OffsetCommitRequestPartition::default()
                .with_partition_index(1)
                .with_committed_offset(42)
                .with_committed_metadata(Some(text("meta")));
            if v >= 6 {
                partition = partition.with_committed_leader_epoch(4);
            }
            let topic = OffsetCommitRequestTopic::default()
                .with_name(name("t"))
                .with_partitions(vec![partition]);
            let mut body = OffsetCommitRequest::default()
                .with_group_id(group())
                .with_generation_id_or_member_epoch(3)
                .with_member_id(text("m"))
                .with_group_instance_id(instance(7))
                .with_topics(vec![topic]);
            if v <= 4 {
                body = body.with_retention_time_ms(-1);
            }
            KafkaRequest::OffsetCommit(body)
        }
        ApiKey::OffsetFetch => {
            use kafka_protocol::messages::offset_fetch_request::{
                OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
            };
            let mut body = OffsetFetchRequest::default();
            if v >= 8 {
                let topics = OffsetFetchRequestTopics::default()
                    .with_name(name("t"))
                    .with_partition_indexes(vec![0, 1]);
                let mut entry = OffsetFetchRequestGroup::default()
                    .with_group_id(group())
                    .with_topics(Some(vec![topics]));
                if v >= 9 {
                    entry = entry.with_member_id(Some(text("m"))).with_member_epoch(3);
                }
                body = body.with_groups(vec![entry]);
            } else {
                let topic = OffsetFetchRequestTopic::default()
                    .with_name(name("t"))
                    .with_partition_indexes(vec![0, 1]);
                body = body.with_group_id(group()).with_topics(Some(vec![topic]));
            }
            if v >= 7 {
                body = body.with_require_stable(true);
            }
            KafkaRequest::OffsetFetch(body)
        }
        ApiKey::ListGroups => {
            let mut body = ListGroupsRequest::default();
            if v >= 4 {
                body = body.with_states_filter(vec![text("Stable")]);
            }
            KafkaRequest::ListGroups(body)
        }
        ApiKey::DescribeGroups => {
            let mut body =
                DescribeGroupsRequest::default().with_groups(vec![group(), GroupId(text("h"))]);
            if v >= 3 {
                body = body.with_include_authorized_operations(true);
            }
            KafkaRequest::DescribeGroups(body)
        }
        ApiKey::DeleteGroups => KafkaRequest::DeleteGroups(
            DeleteGroupsRequest::default().with_groups_names(vec![group()]),
        ),
        other => panic!("no sample for {other:?}"),
    }
}

fn encode_sample(request: &KafkaRequest, api_key: ApiKey, v: i16) -> BytesMut {
    match request {
        KafkaRequest::ApiVersions(b) => client_frame(api_key, v, 11, b),
        KafkaRequest::Metadata(b) => client_frame(api_key, v, 11, b),
        KafkaRequest::Fetch(b) => client_frame(api_key, v, 11, b),
        KafkaRequest::ListOffsets(b) => client_frame(api_key, v, 11, b),
        KafkaRequest::CreateTopics(b) => client_frame(api_key, v, 11, b),
        KafkaRequest::DeleteTopics(b) => client_frame(api_key, v, 11, b),
        KafkaRequest::CreatePartitions(b) => client_frame(api_key, v, 11, b),
        KafkaRequest::DescribeConfigs(b) => client_frame(api_key, v, 11, b),
        KafkaRequest::IncrementalAlterConfigs(b) => client_frame(api_key, v, 11, b),
        KafkaRequest::DescribeCluster(b) => client_frame(api_key, v, 11, b),
        KafkaRequest::InitProducerId(b) => client_frame(api_key, v, 11, b),
        KafkaRequest::Produce(_) => client_frame(api_key, v, 11, &produce_body(v)),
        KafkaRequest::FindCoordinator(b) => client_frame(api_key, v, 11, b),
        KafkaRequest::JoinGroup(b) => client_frame(api_key, v, 11, b),
        KafkaRequest::Heartbeat(b) => client_frame(api_key, v, 11, b),
        KafkaRequest::LeaveGroup(b) => client_frame(api_key, v, 11, b),
        KafkaRequest::SyncGroup(b) => client_frame(api_key, v, 11, b),
        KafkaRequest::OffsetCommit(b) => client_frame(api_key, v, 11, b),
        KafkaRequest::OffsetFetch(b) => client_frame(api_key, v, 11, b),
        KafkaRequest::DescribeGroups(b) => client_frame(api_key, v, 11, b),
        KafkaRequest::ListGroups(b) => client_frame(api_key, v, 11, b),
        KafkaRequest::DeleteGroups(b) => client_frame(api_key, v, 11, b),
    }
}

#[test]
fn every_served_api_round_trips_at_every_served_version() {
    let mut checked = 0;
    for range in SUPPORTED_APIS {
        for v in range.version_min..=range.version_max {
            let sent = sample_request(range.api_key, v);
            let wire = encode_sample(&sent, range.api_key, v);
            let (header, received) = decoded_body(wire);
            assert_eq!(header.api_key, range.api_key);
            assert_eq!((header.api_version, header.correlation_id), (v, 11));
            if !matches!(sent, KafkaRequest::Produce(_)) {
                assert_eq!(received, sent, "{:?} v{v}", range.api_key);
            }
            checked += 1;
        }
    }
    assert_eq!(
        checked,
        SUPPORTED_APIS.iter().map(|r| (r.version_max - r.version_min + 1) as usize).sum::<usize>()
    );
}

#[test]
fn every_request_cut_short_is_a_typed_error() {
    for range in SUPPORTED_APIS {
        for v in range.version_min..=range.version_max {
            let wire = encode_sample(&sample_request(range.api_key, v), range.api_key, v);
            let frame = wire.freeze().slice(4..);
            // Every strict prefix that still has the ids must fail cleanly or decode a
            // request (a body whose tail is optional); none may panic.
            for cut in 0..frame.len() {
                let result = decode_request(BytesMut::from(&frame[..cut]));
                if cut < 8 {
                    assert_eq!(result, Err(DecodeError::TooShort { frame_bytes: cut }));
                }
            }
            let cut = BytesMut::from(&frame[..frame.len() - 1]);
            assert!(
                matches!(
                    decode_request(cut),
                    Err(DecodeError::BadBody { correlation_id: 11, .. }
                        | DecodeError::BadHeader { correlation_id: 11, .. })
                ),
                "{:?} v{v}",
                range.api_key
            );
        }
    }
}

#[test]
fn an_unknown_api_key_is_unsupported_not_an_error() {
    let mut frame = BytesMut::new();
    frame.put_i16(999);
    frame.put_i16(0);
    frame.put_i32(1234);
    frame.put_slice(b"whatever follows");
    let decoded = decode_request(frame).unwrap();
    let Decoded::Unsupported(unsupported) = decoded else { panic!("{decoded:?}") };
    assert_eq!(
        (unsupported.api_key, unsupported.api_version, unsupported.correlation_id),
        (999, 0, 1234)
    );
}

#[test]
fn a_known_but_unserved_api_is_unsupported() {
    let body = TxnOffsetCommitRequest::default();
    let decoded = serve(client_frame(ApiKey::TxnOffsetCommit, 3, 5, &body)).unwrap();
    assert!(matches!(decoded, Decoded::Unsupported(u) if u.api_key == 28 && u.correlation_id == 5));
}

#[test]
fn an_unsupported_version_is_answered_with_unsupported_version() {
    // Produce v13 identifies topics by id; Cairn serves up to v11.
    let decoded = serve(client_frame(ApiKey::Produce, 13, 77, &ProduceRequest::default())).unwrap();
    let Decoded::Unsupported(unsupported) = decoded else { panic!("{decoded:?}") };
    assert_eq!((unsupported.api_version, unsupported.correlation_id), (13, 77));
    // Produce v13's response header is flexible (v1): correlation id, then empty tags.
    let mut answer = encode_unsupported(&unsupported).freeze();
    assert_eq!(answer.len(), 4 + u32::from_be_bytes(answer[..4].try_into().unwrap()) as usize);
    let _ = answer.split_to(4);
    let header = ResponseHeader::decode(&mut answer, 1).unwrap();
    assert_eq!(header.correlation_id, 77);
    let body = ApiVersionsResponse::decode(&mut answer, 0).unwrap();
    assert_eq!(body.error_code, 35);
    assert_eq!(body.api_keys.len(), SUPPORTED_APIS.len());
}

#[test]
fn an_api_versions_of_a_future_version_gets_the_kip_511_answer() {
    let mut frame = BytesMut::new();
    frame.put_i16(ApiKey::ApiVersions as i16);
    frame.put_i16(99);
    frame.put_i32(3);
    frame.put_slice(&[0, 0, 0]);
    let Decoded::Unsupported(unsupported) = decode_request(frame).unwrap() else { panic!() };
    let mut answer = encode_unsupported(&unsupported).freeze().slice(4..);
    // Header v0: the correlation id alone, then the v0 body a client parses.
    assert_eq!(ResponseHeader::decode(&mut answer, 0).unwrap().correlation_id, 3);
    let body = ApiVersionsResponse::decode(&mut answer, 0).unwrap();
    assert_eq!(body.error_code, 35);
    let own = body.api_keys.iter().find(|k| k.api_key == ApiKey::ApiVersions as i16).unwrap();
    assert_eq!((own.min_version, own.max_version), (0, 4));
    assert!(answer.is_empty());
}

#[test]
fn a_huge_array_count_is_refused_before_the_crate_allocates() {
    // Metadata v0 with 0x033c0c00 topics and five bytes of body: the 8-byte reproducer of
    // kafka-protocol PR #152 (3.6 GiB reserved up front without the preflight).
    let mut frame = BytesMut::new();
    frame.put_i16(3);
    frame.put_i16(0);
    frame.put_i32(9);
    frame.put_i16(-1); // null client id
    frame.put_slice(&[0x03, 0x3c, 0x0c, 0x00, 0xb6]);
    let error = decode_request(frame).unwrap_err();
    assert!(matches!(error, DecodeError::BadBody { api_key: 3, correlation_id: 9, .. }), "{error}");
    assert!(matches!(
        preflight::check_body(ApiKey::Metadata, 0, &[0x03, 0x3c, 0x0c, 0x00, 0xb6]),
        Err(PreflightError::ArrayTooLong { count: 0x033c0c00, bytes_left: 1 })
    ));
}

#[test]
fn random_bytes_never_panic() {
    // A small deterministic generator (xorshift) so the test is the same on every run.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let decoder = FrameDecoder::new(1 << 16);
    for _ in 0..20_000 {
        let len = (next() % 200) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Half the time, make the first four bytes a plausible api key and version so the
        // body decoders see the noise too.
        if len >= 4 && next() % 2 == 0 {
            let range = SUPPORTED_APIS[(next() % SUPPORTED_APIS.len() as u64) as usize];
            bytes[..2].copy_from_slice(&(range.api_key as i16).to_be_bytes());
            bytes[2..4].copy_from_slice(&range.version_max.to_be_bytes());
        }
        let _ = decode_request(BytesMut::from(&bytes[..]));
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(frame)) = decoder.decode(&mut buf) {
            let _ = decode_request(frame);
        }
    }
}

fn decode_client_side<T: Decodable>(
    mut frame: Bytes,
    header_version: i16,
    version: i16,
) -> (i32, T) {
    let size = i32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
    assert_eq!(size, frame.len() - 4);
    let _ = frame.split_to(4);
    let header = ResponseHeader::decode(&mut frame, header_version).unwrap();
    let body = T::decode(&mut frame, version).unwrap();
    assert!(frame.is_empty(), "no stray bytes after the body");
    (header.correlation_id, body)
}

fn header(api_key: ApiKey, api_version: i16) -> RequestHeader {
    RequestHeader { api_key, api_version, correlation_id: 41, client_id: None }
}

#[test]
fn responses_decode_the_way_clients_decode_them() {
    for version in 3..=11 {
        let body = ProduceResponse::default().with_responses(vec![
            TopicProduceResponse::default().with_name(name("t")).with_partition_responses(vec![
                PartitionProduceResponse::default().with_index(0).with_base_offset(100),
            ]),
        ]);
        let frame = encode_response(
            &header(ApiKey::Produce, version),
            &KafkaResponse::Produce(body.clone()),
        )
        .unwrap();
        let hv = ApiKey::Produce.response_header_version(version);
        let (correlation_id, decoded) =
            decode_client_side::<ProduceResponse>(frame.freeze(), hv, version);
        assert_eq!((correlation_id, decoded), (41, body));
    }
    for version in 4..=12 {
        let body = FetchResponse::default().with_responses(vec![
            FetchableTopicResponse::default().with_topic(name("t")).with_partitions(vec![
                PartitionData::default()
                    .with_partition_index(0)
                    .with_high_watermark(10)
                    .with_records(Some(batch(3, 500))),
            ]),
        ]);
        let frame =
            encode_response(&header(ApiKey::Fetch, version), &KafkaResponse::Fetch(body.clone()))
                .unwrap();
        let hv = ApiKey::Fetch.response_header_version(version);
        let (_, decoded) = decode_client_side::<FetchResponse>(frame.freeze(), hv, version);
        assert_eq!(decoded, body);
    }
    for version in 0..=4 {
        let body = super::versions::api_versions_response(0);
        let frame = encode_response(
            &header(ApiKey::ApiVersions, version),
            &KafkaResponse::ApiVersions(body.clone()),
        )
        .unwrap();
        let (_, decoded) = decode_client_side::<ApiVersionsResponse>(frame.freeze(), 0, version);
        assert_eq!(decoded, body);
    }
}

#[test]
fn a_response_for_another_api_is_refused() {
    let error = encode_response(
        &header(ApiKey::Fetch, 4),
        &KafkaResponse::Produce(ProduceResponse::default()),
    )
    .unwrap_err();
    assert!(matches!(error, super::response::EncodeError::WrongApi { .. }));
}

#[test]
fn unknown_tagged_fields_in_flexible_versions_are_walked_and_kept() {
    let mut tags = std::collections::BTreeMap::new();
    tags.insert(999, Bytes::from_static(b"future field"));
    let topic = MetadataRequestTopic::default()
        .with_name(Some(name("a")))
        .with_unknown_tagged_fields(tags.clone());
    let sent =
        MetadataRequest::default().with_topics(Some(vec![topic])).with_unknown_tagged_fields(tags);
    let (_, received) = decoded_body(client_frame(ApiKey::Metadata, 12, 1, &sent));
    assert_eq!(received, KafkaRequest::Metadata(sent));
}

#[test]
fn produce_stays_zero_copy_with_tagged_fields_in_the_header() {
    let mut out = BytesMut::new();
    out.put_i32(0);
    let mut tags = std::collections::BTreeMap::new();
    tags.insert(7, Bytes::from_static(b"header tag"));
    RequestHeader_::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(9)
        .with_correlation_id(3)
        .with_unknown_tagged_fields(tags)
        .encode(&mut out, 2)
        .unwrap();
    produce_body(9).encode(&mut out, 9).unwrap();
    let size = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&size.to_be_bytes());
    let (_, body) = decoded_body(out);
    let KafkaRequest::Produce(produce) = body else { panic!() };
    assert!(!produce.batches_copied);
}
