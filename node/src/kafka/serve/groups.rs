//! The consumer group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! OffsetCommit, OffsetFetch, ListGroups, DescribeGroups and DeleteGroups, mapped onto the
//! node's [`Request::FindCoordinator`], [`Request::Group`] and [`Request::ListGroups`]
//! (decision 0015).
//!
//! Versions before JoinGroup v4 do not know MEMBER_ID_REQUIRED (KIP-394): a new member's
//! join gets the id handed out and joins again with it in a second round, as Kafka does for
//! them.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup as WireListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest,
    SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::cluster::topic_name;
use super::{Step, message};
use crate::core::coordinator::{
    CommittedOffset, CoordinatorError, CoordinatorRequest, CoordinatorResponse, OffsetCommit,
};
use crate::core::group::{
    GroupError, JoinRequest, JoinResponse, LeaveMember, LeaveResult, SyncRequest,
};
use crate::core::node::{PartitionId, Request, Response};
use crate::kafka::errors::request_error_code;
use crate::kafka::response::KafkaResponse;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

/// A core answer as a coordinator result: a node-level error becomes its Kafka code.
fn code_of(response: &Response) -> i16 {
    match response {
        Response::Error(error) => request_error_code(error),
        _ => 0,
    }
}

fn error_code<T>(result: &Result<T, CoordinatorError>) -> i16 {
    result.as_ref().err().map_or(0, CoordinatorError::code)
}

/// A group API call waiting for the node's answers.
#[derive(Debug)]
pub(super) struct GroupCall {
    version: i16,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    FindCoordinator { keys: Vec<StrBytes> },
    Join { group: String, request: JoinRequest, rejoined: bool },
    Sync,
    Heartbeat,
    Leave,
    Commit { topics: Vec<(TopicKey, Vec<i32>)> },
    Fetch { groups: Vec<GroupId> },
    List { states: Vec<StrBytes> },
    Describe { groups: Vec<GroupId> },
    Delete { groups: Vec<GroupId> },
}

type TopicKey = kafka_protocol::messages::TopicName;

fn ask(request: CoordinatorRequest) -> Step {
    Step::Ask(vec![Request::Group(request)])
}

impl GroupCall {
    pub(super) fn find_coordinator(request: FindCoordinatorRequest, version: i16) -> (Self, Step) {
        let keys = if version >= 4 { request.coordinator_keys } else { vec![request.key] };
        let key_type = request.key_type;
        let asks = (keys.iter())
            .map(|key| Request::FindCoordinator { key: key.to_string(), key_type })
            .collect();
        (GroupCall { version, kind: Kind::FindCoordinator { keys } }, Step::Ask(asks))
    }

    pub(super) fn join(
        request: JoinGroupRequest,
        version: i16,
        client_id: Option<&str>,
    ) -> (Self, Step) {
        let session_timeout = millis(request.session_timeout_ms);
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        let rebalance_timeout =
            if version >= 1 { millis(request.rebalance_timeout_ms) } else { session_timeout };
        let protocols = (request.protocols.into_iter())
            .map(|protocol| (protocol.name.to_string(), protocol.metadata))
            .collect();
        let join = JoinRequest {
            member_id: request.member_id.to_string(),
            group_instance_id: request.group_instance_id.map(|id| id.to_string()),
            client_id: client_id.unwrap_or_default().to_owned(),
            session_timeout,
            rebalance_timeout,
            protocol_type: request.protocol_type.to_string(),
            protocols,
        };
        let group = request.group_id.to_string();
        let step = ask(CoordinatorRequest::Join { group: group.clone(), request: join.clone() });
        (GroupCall { version, kind: Kind::Join { group, request: join, rejoined: false } }, step)
    }

    pub(super) fn sync(request: SyncGroupRequest, version: i16) -> (Self, Step) {
        let sync = SyncRequest {
            member_id: request.member_id.to_string(),
            group_instance_id: request.group_instance_id.map(|id| id.to_string()),
            generation: request.generation_id,
            assignments: (request.assignments.into_iter())
                .map(|a| (a.member_id.to_string(), a.assignment))
                .collect(),
        };
        let group = request.group_id.to_string();
        (
            GroupCall { version, kind: Kind::Sync },
            ask(CoordinatorRequest::Sync { group, request: sync }),
        )
    }

    pub(super) fn heartbeat(request: HeartbeatRequest, version: i16) -> (Self, Step) {
        let heartbeat = CoordinatorRequest::Heartbeat {
            group: request.group_id.to_string(),
            member_id: request.member_id.to_string(),
            group_instance_id: request.group_instance_id.map(|id| id.to_string()),
            generation: request.generation_id,
        };
        (GroupCall { version, kind: Kind::Heartbeat }, ask(heartbeat))
    }

    pub(super) fn leave(request: LeaveGroupRequest, version: i16) -> (Self, Step) {
        let members = if version >= 3 {
            (request.members.into_iter())
                .map(|m| LeaveMember {
                    member_id: m.member_id.to_string(),
                    group_instance_id: m.group_instance_id.map(|id| id.to_string()),
                })
                .collect()
        } else {
            vec![LeaveMember { member_id: request.member_id.to_string(), group_instance_id: None }]
        };
        let leave = CoordinatorRequest::Leave { group: request.group_id.to_string(), members };
        (GroupCall { version, kind: Kind::Leave }, ask(leave))
    }

    pub(super) fn commit(request: OffsetCommitRequest, version: i16) -> (Self, Step) {
        let mut topics = Vec::with_capacity(request.topics.len());
        let mut offsets = Vec::new();
        for topic in request.topics {
            let name: Arc<str> = Arc::from(topic.name.as_str());
            let mut indexes = Vec::with_capacity(topic.partitions.len());
            for partition in topic.partitions {
                indexes.push(partition.partition_index);
                let id = PartitionId::new(Arc::clone(&name), partition.partition_index);
                let leader_epoch = if version >= 6 { partition.committed_leader_epoch } else { -1 };
                let metadata = partition.committed_metadata.map(|m| m.to_string());
                let entry =
                    (id, partition.committed_offset, leader_epoch, metadata.unwrap_or_default());
                offsets.push(entry);
            }
            topics.push((topic.name, indexes));
        }
        let commit = OffsetCommit {
            group: request.group_id.to_string(),
            generation: request.generation_id_or_member_epoch,
            member_id: request.member_id.to_string(),
            group_instance_id: request.group_instance_id.map(|id| id.to_string()),
            offsets,
        };
        (
            GroupCall { version, kind: Kind::Commit { topics } },
            ask(CoordinatorRequest::Commit(commit)),
        )
    }

    pub(super) fn fetch(request: OffsetFetchRequest, version: i16) -> (Self, Step) {
        let wanted = |topics: Option<Vec<(TopicKey, Vec<i32>)>>| {
            topics.map(|topics| {
                (topics.into_iter())
                    .flat_map(|(name, indexes)| {
                        let name: Arc<str> = Arc::from(name.as_str());
                        indexes.into_iter().map(move |i| PartitionId::new(Arc::clone(&name), i))
                    })
                    .collect()
            })
        };
        let groups: Vec<(GroupId, Option<Vec<PartitionId>>)> = if version >= 8 {
            (request.groups.into_iter())
                .map(|group| {
                    let topics = group.topics.map(|topics| {
                        topics.into_iter().map(|t| (t.name, t.partition_indexes)).collect()
                    });
                    (group.group_id, wanted(topics))
                })
                .collect()
        } else {
            let topics = (request.topics)
                .map(|topics| topics.into_iter().map(|t| (t.name, t.partition_indexes)).collect());
            vec![(request.group_id, wanted(topics))]
        };
        let asks = (groups.iter())
            .map(|(group, partitions)| {
                let fetch = CoordinatorRequest::Fetch {
                    group: group.to_string(),
                    partitions: partitions.clone(),
                };
                Request::Group(fetch)
            })
            .collect();
        let groups = groups.into_iter().map(|(group, _)| group).collect();
        (GroupCall { version, kind: Kind::Fetch { groups } }, Step::Ask(asks))
    }

    pub(super) fn list(request: ListGroupsRequest, version: i16) -> (Self, Step) {
        let states = if version >= 4 { request.states_filter } else { Vec::new() };
        (GroupCall { version, kind: Kind::List { states } }, Step::Ask(vec![Request::ListGroups]))
    }

    pub(super) fn describe(request: DescribeGroupsRequest, version: i16) -> (Self, Step) {
        let asks = (request.groups.iter())
            .map(|group| Request::Group(CoordinatorRequest::Describe { group: group.to_string() }))
            .collect();
        (GroupCall { version, kind: Kind::Describe { groups: request.groups } }, Step::Ask(asks))
    }

    pub(super) fn delete(request: DeleteGroupsRequest, version: i16) -> (Self, Step) {
        let asks = (request.groups_names.iter())
            .map(|group| Request::Group(CoordinatorRequest::Delete { group: group.to_string() }))
            .collect();
        let kind = Kind::Delete { groups: request.groups_names };
        (GroupCall { version, kind }, Step::Ask(asks))
    }

    pub(super) fn advance(&mut self, answers: Vec<Response>) -> Step {
        let version = self.version;
        match &mut self.kind {
            Kind::FindCoordinator { keys } => find_coordinator_response(version, keys, answers),
            Kind::Join { group, request, rejoined } => {
                let [answer] = one(answers);
                if let Some(step) = rejoin_old_client(version, group, request, rejoined, &answer) {
                    return step;
                }
                join_response(version, answer)
            }
            Kind::Sync => sync_response(version, one(answers)),
            Kind::Heartbeat => {
                let [answer] = one(answers);
                let code = match answer {
                    Response::Group(CoordinatorResponse::Heartbeat(result)) => error_code(&result),
                    other => code_of(&other),
                };
                Step::Respond(KafkaResponse::Heartbeat(
                    HeartbeatResponse::default().with_error_code(code),
                ))
            }
            Kind::Leave => leave_response(version, one(answers)),
            Kind::Commit { topics } => commit_response(std::mem::take(topics), one(answers)),
            Kind::Fetch { groups } => fetch_response(version, std::mem::take(groups), answers),
            Kind::List { states } => list_response(version, states, one(answers)),
            Kind::Describe { groups } => {
                describe_response(version, std::mem::take(groups), answers)
            }
            Kind::Delete { groups } => {
                let results = (std::mem::take(groups).into_iter().zip(answers))
                    .map(|(group_id, answer)| {
                        let code = match answer {
                            Response::Group(CoordinatorResponse::Delete(result)) => {
                                error_code(&result)
                            }
                            other => code_of(&other),
                        };
                        DeletableGroupResult::default()
                            .with_group_id(group_id)
                            .with_error_code(code)
                    })
                    .collect();
                let response = DeleteGroupsResponse::default().with_results(results);
                Step::Respond(KafkaResponse::DeleteGroups(response))
            }
        }
    }
}

fn one(answers: Vec<Response>) -> [Response; 1] {
    <[Response; 1]>::try_from(answers).expect("one answer")
}

fn millis(ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// A JoinGroup before v4 given MEMBER_ID_REQUIRED joins again at once with the id.
fn rejoin_old_client(
    version: i16,
    group: &str,
    request: &mut JoinRequest,
    rejoined: &mut bool,
    answer: &Response,
) -> Option<Step> {
    let Response::Group(CoordinatorResponse::Join(Err(CoordinatorError::Group(
        GroupError::MemberIdRequired { member_id },
    )))) = answer
    else {
        return None;
    };
    if version >= 4 || *rejoined {
        return None;
    }
    *rejoined = true;
    request.member_id.clone_from(member_id);
    Some(ask(CoordinatorRequest::Join { group: group.to_owned(), request: request.clone() }))
}

fn find_coordinator_response(version: i16, keys: &[StrBytes], answers: Vec<Response>) -> Step {
    let coordinators: Vec<Coordinator> = (keys.iter().zip(answers))
        .map(|(key, answer)| {
            let entry = Coordinator::default().with_key(key.clone());
            match answer {
                Response::Coordinator { node_id, host, port } => entry
                    .with_node_id(BrokerId(node_id.0 as i32))
                    .with_host(text(&host))
                    .with_port(i32::from(port)),
                other => {
                    let Response::Error(error) = &other else {
                        unreachable!("FindCoordinator answered with {other:?}")
                    };
                    (entry.with_node_id(BrokerId(-1)).with_host(text("")).with_port(-1))
                        .with_error_code(request_error_code(error))
                        .with_error_message(message(error))
                }
            }
        })
        .collect();
    let mut response = FindCoordinatorResponse::default();
    if version >= 4 {
        response = response.with_coordinators(coordinators);
    } else {
        let first = coordinators.into_iter().next().expect("one key before v4");
        response = response
            .with_error_code(first.error_code)
            .with_node_id(first.node_id)
            .with_host(first.host)
            .with_port(first.port);
        if version >= 1 {
            response = response.with_error_message(first.error_message);
        }
    }
    Step::Respond(KafkaResponse::FindCoordinator(response))
}

fn join_response(version: i16, answer: Response) -> Step {
    let result = match answer {
        Response::Group(CoordinatorResponse::Join(result)) => result,
        other => return join_error(version, code_of(&other), String::new()),
    };
    let joined: JoinResponse = match result {
        Ok(joined) => joined,
        Err(error) => {
            let member_id = match &error {
                CoordinatorError::Group(GroupError::MemberIdRequired { member_id }) => {
                    member_id.clone()
                }
                _ => String::new(),
            };
            return join_error(version, error.code(), member_id);
        }
    };
    let members = (joined.members.into_iter())
        .map(|member| {
            let entry = JoinGroupResponseMember::default()
                .with_member_id(text(&member.member_id))
                .with_metadata(member.metadata);
            if version >= 5 {
                entry.with_group_instance_id(member.group_instance_id.as_deref().map(text))
            } else {
                entry
            }
        })
        .collect();
    let mut response = JoinGroupResponse::default()
        .with_generation_id(joined.generation)
        .with_protocol_name(Some(text(&joined.protocol_name)))
        .with_leader(text(&joined.leader))
        .with_member_id(text(&joined.member_id))
        .with_members(members);
    if version >= 7 {
        response = response.with_protocol_type(Some(text(&joined.protocol_type)));
    }
    if version >= 9 {
        response = response.with_skip_assignment(joined.skip_assignment);
    }
    Step::Respond(KafkaResponse::JoinGroup(response))
}

fn join_error(version: i16, code: i16, member_id: String) -> Step {
    // Before v7 the protocol name may not be null.
    let protocol_name = if version >= 7 { None } else { Some(text("")) };
    let response = JoinGroupResponse::default()
        .with_error_code(code)
        .with_generation_id(-1)
        .with_protocol_name(protocol_name)
        .with_member_id(StrBytes::from_string(member_id));
    Step::Respond(KafkaResponse::JoinGroup(response))
}

fn sync_response(version: i16, [answer]: [Response; 1]) -> Step {
    let mut response = SyncGroupResponse::default();
    match answer {
        Response::Group(CoordinatorResponse::Sync(Ok(synced))) => {
            response = response.with_assignment(synced.assignment);
            if version >= 5 {
                response = response
                    .with_protocol_type(Some(text(&synced.protocol_type)))
                    .with_protocol_name(Some(text(&synced.protocol_name)));
            }
        }
        Response::Group(CoordinatorResponse::Sync(Err(error))) => {
            response = response.with_error_code(error.code());
        }
        other => response = response.with_error_code(code_of(&other)),
    }
    Step::Respond(KafkaResponse::SyncGroup(response))
}

fn leave_response(version: i16, [answer]: [Response; 1]) -> Step {
    let results: Result<Vec<LeaveResult>, i16> = match answer {
        Response::Group(CoordinatorResponse::Leave(result)) => result.map_err(|e| e.code()),
        other => Err(code_of(&other)),
    };
    let response = match results {
        Err(code) => LeaveGroupResponse::default().with_error_code(code),
        // Before v3 one member leaves: its own error is the request's.
        Ok(results) if version < 3 => {
            let code =
                results.first().and_then(|r| r.result.as_ref().err()).map_or(0, |e| e.code());
            LeaveGroupResponse::default().with_error_code(code)
        }
        Ok(results) => {
            let members = (results.into_iter())
                .map(|result| {
                    MemberResponse::default()
                        .with_member_id(text(&result.member_id))
                        .with_group_instance_id(result.group_instance_id.as_deref().map(text))
                        .with_error_code(result.result.err().map_or(0, |e| e.code()))
                })
                .collect();
            LeaveGroupResponse::default().with_members(members)
        }
    };
    Step::Respond(KafkaResponse::LeaveGroup(response))
}

fn commit_response(topics: Vec<(TopicKey, Vec<i32>)>, [answer]: [Response; 1]) -> Step {
    // A commit is applied whole or not at all: every partition gets the same answer.
    let code = match answer {
        Response::Group(CoordinatorResponse::Commit(result)) => error_code(&result),
        other => code_of(&other),
    };
    let topics = (topics.into_iter())
        .map(|(name, indexes)| {
            let partitions = (indexes.into_iter())
                .map(|index| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(index)
                        .with_error_code(code)
                })
                .collect();
            OffsetCommitResponseTopic::default().with_name(name).with_partitions(partitions)
        })
        .collect();
    Step::Respond(KafkaResponse::OffsetCommit(OffsetCommitResponse::default().with_topics(topics)))
}

/// One group's OffsetFetch answer: its error and its partitions by topic, in order.
type FetchedGroup = (i16, Vec<TopicOffsets>);

/// A topic's partitions with their committed offsets.
type TopicOffsets = (Arc<str>, Vec<(i32, Option<CommittedOffset>)>);

fn fetched(answer: Response) -> FetchedGroup {
    let offsets = match answer {
        Response::Group(CoordinatorResponse::Fetch(Ok(offsets))) => offsets,
        Response::Group(CoordinatorResponse::Fetch(Err(error))) => {
            return (error.code(), Vec::new());
        }
        other => return (code_of(&other), Vec::new()),
    };
    let mut topics: Vec<TopicOffsets> = Vec::new();
    for (id, offset) in offsets {
        match topics.last_mut() {
            Some((name, partitions)) if *name == id.topic => {
                partitions.push((id.partition, offset))
            }
            _ => topics.push((id.topic, vec![(id.partition, offset)])),
        }
    }
    (0, topics)
}

/// A partition's committed offset as OffsetFetch reports it: -1 and no metadata if none.
fn offset_fields(offset: Option<CommittedOffset>) -> (i64, i32, StrBytes) {
    match offset {
        Some(offset) => {
            (offset.offset, offset.leader_epoch, StrBytes::from_string(offset.metadata))
        }
        None => (-1, -1, text("")),
    }
}

fn fetch_response(version: i16, groups: Vec<GroupId>, answers: Vec<Response>) -> Step {
    if version < 8 {
        let [answer] = one(answers);
        let (code, topics) = fetched(answer);
        let topics = (topics.into_iter())
            .map(|(name, partitions)| {
                let partitions = (partitions.into_iter())
                    .map(|(index, offset)| {
                        let (offset, epoch, metadata) = offset_fields(offset);
                        OffsetFetchResponsePartition::default()
                            .with_partition_index(index)
                            .with_committed_offset(offset)
                            .with_committed_leader_epoch(if version >= 5 { epoch } else { -1 })
                            .with_metadata(Some(metadata))
                    })
                    .collect();
                OffsetFetchResponseTopic::default()
                    .with_name(topic_name(&name))
                    .with_partitions(partitions)
            })
            .collect();
        let mut response = OffsetFetchResponse::default().with_topics(topics);
        if version >= 2 {
            response = response.with_error_code(code);
        }
        return Step::Respond(KafkaResponse::OffsetFetch(response));
    }
    let groups = (groups.into_iter().zip(answers))
        .map(|(group_id, answer)| {
            let (code, topics) = fetched(answer);
            let topics = (topics.into_iter())
                .map(|(name, partitions)| {
                    let partitions = (partitions.into_iter())
                        .map(|(index, offset)| {
                            let (offset, epoch, metadata) = offset_fields(offset);
                            OffsetFetchResponsePartitions::default()
                                .with_partition_index(index)
                                .with_committed_offset(offset)
                                .with_committed_leader_epoch(epoch)
                                .with_metadata(Some(metadata))
                        })
                        .collect();
                    OffsetFetchResponseTopics::default()
                        .with_name(topic_name(&name))
                        .with_partitions(partitions)
                })
                .collect();
            OffsetFetchResponseGroup::default()
                .with_group_id(group_id)
                .with_topics(topics)
                .with_error_code(code)
        })
        .collect();
    Step::Respond(KafkaResponse::OffsetFetch(OffsetFetchResponse::default().with_groups(groups)))
}

fn list_response(version: i16, states: &[StrBytes], [answer]: [Response; 1]) -> Step {
    let groups = match answer {
        Response::Groups(groups) => groups,
        other => {
            let response = ListGroupsResponse::default().with_error_code(code_of(&other));
            return Step::Respond(KafkaResponse::ListGroups(response));
        }
    };
    let wanted =
        |state: &str| states.is_empty() || states.iter().any(|s| s.eq_ignore_ascii_case(state));
    let groups = (groups.into_iter())
        .filter(|group| wanted(group.state.kafka_name()))
        .map(|group| {
            let entry = WireListedGroup::default()
                .with_group_id(GroupId(text(&group.group)))
                .with_protocol_type(text(&group.protocol_type));
            if version >= 4 {
                entry.with_group_state(text(group.state.kafka_name()))
            } else {
                entry
            }
        })
        .collect();
    Step::Respond(KafkaResponse::ListGroups(ListGroupsResponse::default().with_groups(groups)))
}

fn describe_response(version: i16, groups: Vec<GroupId>, answers: Vec<Response>) -> Step {
    let described = (groups.into_iter().zip(answers))
        .map(|(group_id, answer)| {
            let entry = DescribedGroup::default().with_group_id(group_id);
            let description = match answer {
                Response::Group(CoordinatorResponse::Describe(Ok(description))) => description,
                Response::Group(CoordinatorResponse::Describe(Err(error))) => {
                    return entry.with_error_code(error.code());
                }
                other => return entry.with_error_code(code_of(&other)),
            };
            let members = (description.members.into_iter())
                .map(|member| {
                    // The instance id is in the schema from v4.
                    let instance = member.group_instance_id.as_deref().filter(|_| version >= 4);
                    DescribedGroupMember::default()
                        .with_member_id(text(&member.member_id))
                        .with_group_instance_id(instance.map(text))
                        .with_client_id(text(&member.client_id))
                        .with_client_host(text(""))
                        .with_member_metadata(member.metadata)
                        .with_member_assignment(member.assignment)
                })
                .collect();
            entry
                .with_group_state(text(description.state.kafka_name()))
                .with_protocol_type(text(&description.protocol_type))
                .with_protocol_data(text(&description.protocol_name))
                .with_members(members)
        })
        .collect();
    let response = DescribeGroupsResponse::default().with_groups(described);
    Step::Respond(KafkaResponse::DescribeGroups(response))
}
