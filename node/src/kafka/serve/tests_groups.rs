//! The consumer group APIs against a scripted core: the exact core requests each becomes,
//! and the exact Kafka answer the core's answers become.

use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartitions, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::tests::{answer, requests_eq, respond, start};
use super::*;
use crate::core::coordinator::{
    CommittedOffset, CoordinatorError, CoordinatorRequest, CoordinatorResponse, OffsetCommit,
};
use crate::core::group::{GroupError, JoinRequest};
use crate::core::io::NodeId;
use crate::core::node::{PartitionId, RequestError};

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

#[test]
fn find_coordinator_v4_answers_each_key_and_a_transaction_key_with_an_error() {
    let now = Instant::now();
    let request = FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_coordinator_keys(vec![text("g"), text("h")]);
    let (mut exchange, asks) = start(KafkaRequest::FindCoordinator(request), 4, now);
    requests_eq(
        &asks,
        &[
            Request::FindCoordinator { key: "g".into(), key_type: 0 },
            Request::FindCoordinator { key: "h".into(), key_type: 0 },
        ],
    );
    let not_available = CoordinatorError::NotAvailable("creating __consumer_offsets".into());
    let answers = vec![
        Response::Coordinator { node_id: NodeId(2), host: "node-2".into(), port: 9093 },
        Response::Error(RequestError::Coordinator(not_available)),
    ];
    let response = respond(answer(&mut exchange, answers, now));
    let expected = FindCoordinatorResponse::default().with_coordinators(vec![
        Coordinator::default()
            .with_key(text("g"))
            .with_node_id(BrokerId(2))
            .with_host(text("node-2"))
            .with_port(9093),
        Coordinator::default()
            .with_key(text("h"))
            .with_node_id(BrokerId(-1))
            .with_host(text(""))
            .with_port(-1)
            .with_error_code(15)
            .with_error_message(Some(text(
                "coordinator not available: creating __consumer_offsets",
            ))),
    ]);
    assert_eq!(response, KafkaResponse::FindCoordinator(expected));
}

#[test]
fn find_coordinator_v0_answers_in_the_top_level_fields() {
    let now = Instant::now();
    let request = FindCoordinatorRequest::default().with_key(text("g"));
    let (mut exchange, _) = start(KafkaRequest::FindCoordinator(request), 0, now);
    let answers = vec![Response::Coordinator { node_id: NodeId(1), host: "h".into(), port: 1 }];
    let response = respond(answer(&mut exchange, answers, now));
    let expected = FindCoordinatorResponse::default()
        .with_node_id(BrokerId(1))
        .with_host(text("h"))
        .with_port(1);
    assert_eq!(response, KafkaResponse::FindCoordinator(expected));
}

fn join_request(version: i16) -> JoinGroupRequest {
    let protocol = JoinGroupRequestProtocol::default()
        .with_name(text("range"))
        .with_metadata(Bytes::from_static(b"sub"));
    let request = JoinGroupRequest::default()
        .with_group_id(GroupId(text("g")))
        .with_session_timeout_ms(10_000)
        .with_protocol_type(text("consumer"))
        .with_protocols(vec![protocol]);
    if version >= 1 { request.with_rebalance_timeout_ms(30_000) } else { request }
}

#[test]
fn a_join_before_v4_given_member_id_required_joins_again_with_that_id() {
    let now = Instant::now();
    let (mut exchange, asks) = start(KafkaRequest::JoinGroup(join_request(2)), 2, now);
    let Request::Group(CoordinatorRequest::Join { request, .. }) = &asks[0] else { panic!() };
    let JoinRequest { member_id, rebalance_timeout, .. } = request;
    assert_eq!((member_id.as_str(), rebalance_timeout.as_millis()), ("", 30_000));
    let required =
        CoordinatorError::Group(GroupError::MemberIdRequired { member_id: "m-1".into() });
    let step =
        answer(&mut exchange, vec![Response::Group(CoordinatorResponse::Join(Err(required)))], now);
    let Step::Ask(again) = step else { panic!("a second round, got {step:?}") };
    let Request::Group(CoordinatorRequest::Join { request, .. }) = &again[0] else { panic!() };
    assert_eq!(request.member_id, "m-1");
}

#[test]
fn a_join_at_v4_returns_member_id_required_to_the_client() {
    let now = Instant::now();
    let (mut exchange, _) = start(KafkaRequest::JoinGroup(join_request(4)), 4, now);
    let required =
        CoordinatorError::Group(GroupError::MemberIdRequired { member_id: "m-1".into() });
    let step =
        answer(&mut exchange, vec![Response::Group(CoordinatorResponse::Join(Err(required)))], now);
    let expected = JoinGroupResponse::default()
        .with_error_code(79)
        .with_generation_id(-1)
        .with_protocol_name(Some(text("")))
        .with_member_id(text("m-1"));
    assert_eq!(respond(step), KafkaResponse::JoinGroup(expected));
}

#[test]
fn an_offset_commit_is_one_core_request_and_every_partition_gets_its_answer() {
    let now = Instant::now();
    let partition = |index, offset| {
        OffsetCommitRequestPartition::default()
            .with_partition_index(index)
            .with_committed_offset(offset)
            .with_committed_leader_epoch(3)
            .with_committed_metadata(Some(text("m")))
    };
    let topic = OffsetCommitRequestTopic::default()
        .with_name(TopicName(text("t")))
        .with_partitions(vec![partition(0, 10), partition(1, 11)]);
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(text("g")))
        .with_generation_id_or_member_epoch(5)
        .with_member_id(text("m-1"))
        .with_topics(vec![topic]);
    let (mut exchange, asks) = start(KafkaRequest::OffsetCommit(request), 8, now);
    let commit = OffsetCommit {
        group: "g".into(),
        generation: 5,
        member_id: "m-1".into(),
        group_instance_id: None,
        offsets: vec![
            (PartitionId::new("t", 0), 10, 3, "m".into()),
            (PartitionId::new("t", 1), 11, 3, "m".into()),
        ],
    };
    requests_eq(&asks, &[Request::Group(CoordinatorRequest::Commit(commit))]);
    let illegal = CoordinatorError::Group(GroupError::IllegalGeneration);
    let answers = vec![Response::Group(CoordinatorResponse::Commit(Err(illegal)))];
    let response = respond(answer(&mut exchange, answers, now));
    let partition = |index| {
        OffsetCommitResponsePartition::default().with_partition_index(index).with_error_code(22)
    };
    let expected = OffsetCommitResponse::default().with_topics(vec![
        OffsetCommitResponseTopic::default()
            .with_name(TopicName(text("t")))
            .with_partitions(vec![partition(0), partition(1)]),
    ]);
    assert_eq!(response, KafkaResponse::OffsetCommit(expected));
}

#[test]
fn offset_fetch_v8_asks_each_group_and_reports_unknown_offsets_as_minus_one() {
    let now = Instant::now();
    let topics = OffsetFetchRequestTopics::default()
        .with_name(TopicName(text("t")))
        .with_partition_indexes(vec![0, 1]);
    let request = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(text("g")))
            .with_topics(Some(vec![topics])),
        OffsetFetchRequestGroup::default().with_group_id(GroupId(text("h"))).with_topics(None),
    ]);
    let (mut exchange, asks) = start(KafkaRequest::OffsetFetch(request), 8, now);
    requests_eq(
        &asks,
        &[
            Request::Group(CoordinatorRequest::Fetch {
                group: "g".into(),
                partitions: Some(vec![PartitionId::new("t", 0), PartitionId::new("t", 1)]),
            }),
            Request::Group(CoordinatorRequest::Fetch { group: "h".into(), partitions: None }),
        ],
    );
    let committed = CommittedOffset {
        offset: 7,
        leader_epoch: 2,
        metadata: "x".into(),
        commit_timestamp_ms: 1,
    };
    let answers = vec![
        Response::Group(CoordinatorResponse::Fetch(Ok(vec![
            (PartitionId::new("t", 0), Some(committed)),
            (PartitionId::new("t", 1), None),
        ]))),
        Response::Group(CoordinatorResponse::Fetch(Err(CoordinatorError::NotCoordinator))),
    ];
    let response = respond(answer(&mut exchange, answers, now));
    let partition = |index, offset, epoch, metadata: &str| {
        OffsetFetchResponsePartitions::default()
            .with_partition_index(index)
            .with_committed_offset(offset)
            .with_committed_leader_epoch(epoch)
            .with_metadata(Some(text(metadata)))
    };
    let expected = OffsetFetchResponse::default().with_groups(vec![
        OffsetFetchResponseGroup::default().with_group_id(GroupId(text("g"))).with_topics(vec![
            OffsetFetchResponseTopics::default()
                .with_name(TopicName(text("t")))
                .with_partitions(vec![partition(0, 7, 2, "x"), partition(1, -1, -1, "")]),
        ]),
        OffsetFetchResponseGroup::default().with_group_id(GroupId(text("h"))).with_error_code(16),
    ]);
    assert_eq!(response, KafkaResponse::OffsetFetch(expected));
}

/// A request of group API `api_key` at `version`, for the encoding test of every answer.
pub(super) fn sample_group_body(api_key: ApiKey, version: i16) -> KafkaRequest {
    let group = || GroupId(text("g"));
    match api_key {
        ApiKey::FindCoordinator => {
            let request = FindCoordinatorRequest::default();
            KafkaRequest::FindCoordinator(if version >= 4 {
                request.with_coordinator_keys(vec![text("g")])
            } else {
                request.with_key(text("g"))
            })
        }
        ApiKey::JoinGroup => KafkaRequest::JoinGroup(join_request(version)),
        ApiKey::SyncGroup => {
            KafkaRequest::SyncGroup(SyncGroupRequest::default().with_group_id(group()))
        }
        ApiKey::Heartbeat => {
            KafkaRequest::Heartbeat(HeartbeatRequest::default().with_group_id(group()))
        }
        ApiKey::LeaveGroup => {
            KafkaRequest::LeaveGroup(LeaveGroupRequest::default().with_group_id(group()))
        }
        ApiKey::OffsetCommit => {
            let topic = OffsetCommitRequestTopic::default()
                .with_name(TopicName(text("t")))
                .with_partitions(vec![OffsetCommitRequestPartition::default()]);
            KafkaRequest::OffsetCommit(OffsetCommitRequest::default().with_topics(vec![topic]))
        }
        ApiKey::OffsetFetch => {
            let request = OffsetFetchRequest::default();
            KafkaRequest::OffsetFetch(if version >= 8 {
                request.with_groups(vec![OffsetFetchRequestGroup::default().with_topics(None)])
            } else {
                request.with_group_id(group()).with_topics(None)
            })
        }
        ApiKey::ListGroups => KafkaRequest::ListGroups(ListGroupsRequest::default()),
        ApiKey::DescribeGroups => KafkaRequest::DescribeGroups(
            DescribeGroupsRequest::default().with_groups(vec![group()]),
        ),
        ApiKey::DeleteGroups => KafkaRequest::DeleteGroups(
            DeleteGroupsRequest::default().with_groups_names(vec![group()]),
        ),
        other => panic!("{other:?} is not served"),
    }
}

/// A successful answer, with every field filled (a static member, metadata), to `request`.
pub(super) fn sample_group_answer(request: &Request) -> Response {
    use crate::core::coordinator::ListedGroup;
    use crate::core::group::{
        GroupDescription, GroupState, JoinResponse, JoinedMember, LeaveResult, MemberDescription,
        SyncResponse,
    };
    let response = match request {
        Request::FindCoordinator { .. } => {
            return Response::Coordinator { node_id: NodeId(1), host: "h".into(), port: 9092 };
        }
        Request::ListGroups => {
            let group = ListedGroup {
                group: "g".into(),
                protocol_type: "consumer".into(),
                state: GroupState::Stable,
            };
            return Response::Groups(vec![group]);
        }
        Request::Group(request) => request,
        other => panic!("not a group request: {other:?}"),
    };
    Response::Group(match response {
        CoordinatorRequest::Join { .. } => CoordinatorResponse::Join(Ok(JoinResponse {
            generation: 1,
            protocol_type: "consumer".into(),
            protocol_name: "range".into(),
            leader: "m".into(),
            member_id: "m".into(),
            members: vec![JoinedMember {
                member_id: "m".into(),
                group_instance_id: Some("i".into()),
                metadata: Bytes::from_static(b"sub"),
            }],
            skip_assignment: false,
        })),
        CoordinatorRequest::Sync { .. } => CoordinatorResponse::Sync(Ok(SyncResponse {
            protocol_type: "consumer".into(),
            protocol_name: "range".into(),
            assignment: Bytes::from_static(b"a"),
        })),
        CoordinatorRequest::Heartbeat { .. } => CoordinatorResponse::Heartbeat(Ok(())),
        CoordinatorRequest::Leave { .. } => CoordinatorResponse::Leave(Ok(vec![LeaveResult {
            member_id: "m".into(),
            group_instance_id: Some("i".into()),
            result: Ok(()),
        }])),
        CoordinatorRequest::Commit(_) => CoordinatorResponse::Commit(Ok(())),
        CoordinatorRequest::Fetch { .. } => {
            let committed = CommittedOffset {
                offset: 1,
                leader_epoch: 0,
                metadata: "x".into(),
                commit_timestamp_ms: 0,
            };
            CoordinatorResponse::Fetch(Ok(vec![(PartitionId::new("t", 0), Some(committed))]))
        }
        CoordinatorRequest::Describe { .. } => {
            CoordinatorResponse::Describe(Ok(GroupDescription {
                state: GroupState::Stable,
                protocol_type: "consumer".into(),
                protocol_name: "range".into(),
                members: vec![MemberDescription {
                    member_id: "m".into(),
                    group_instance_id: Some("i".into()),
                    client_id: "c".into(),
                    metadata: Bytes::from_static(b"sub"),
                    assignment: Bytes::from_static(b"a"),
                }],
            }))
        }
        CoordinatorRequest::Delete { .. } => CoordinatorResponse::Delete(Ok(())),
    })
}

#[test]
fn find_coordinator_for_a_transaction_is_an_invalid_request() {
    let now = Instant::now();
    let request = FindCoordinatorRequest::default().with_key(text("tx")).with_key_type(1);
    let (mut exchange, asks) = start(KafkaRequest::FindCoordinator(request), 1, now);
    requests_eq(&asks, &[Request::FindCoordinator { key: "tx".into(), key_type: 1 }]);
    let error = RequestError::Coordinator(CoordinatorError::UnsupportedKeyType(1));
    let response = respond(answer(&mut exchange, vec![Response::Error(error)], now));
    let KafkaResponse::FindCoordinator(response) = response else { panic!("{response:?}") };
    assert_eq!((response.error_code, response.node_id), (42, BrokerId(-1)));
}
