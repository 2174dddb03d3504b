//! Metadata and DescribeCluster, from the node's view of the cluster: the brokers that are
//! registered and not fenced, the active controller, and each partition's leader, replicas
//! and in-sync replicas as the committed metadata says (clients follow leadership changes
//! by asking again after NOT_LEADER_OR_FOLLOWER).

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, MetadataRequest, MetadataResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::{Broker, Step};
use crate::core::io::NodeId;
use crate::core::node::{ClusterView, Request, Response, TopicInfo};
use crate::kafka::errors::request_error_code;
use crate::kafka::response::KafkaResponse;

/// A Metadata request waiting for the core's description of its topics.
#[derive(Debug)]
pub(super) struct MetadataCall {
    /// The topics asked for by name, in request order; `None` for every topic.
    names: Option<Vec<Arc<str>>>,
    /// Entries that named a topic only by id (v10+): Cairn gives topics no ids yet, so none
    /// is known.
    unknown_ids: Vec<MetadataResponseTopic>,
}

impl MetadataCall {
    pub(super) fn start(request: MetadataRequest, version: i16) -> (Self, Step) {
        let mut unknown_ids = Vec::new();
        let names = match request.topics {
            // In v0 an empty list means every topic (v1 made that null).
            Some(topics) if version == 0 && topics.is_empty() => None,
            None => None,
            Some(topics) => {
                let mut names = Vec::with_capacity(topics.len());
                for topic in topics {
                    match topic.name {
                        Some(name) => names.push(Arc::<str>::from(name.as_str())),
                        None => unknown_ids.push(
                            MetadataResponseTopic::default()
                                .with_error_code(ResponseError::UnknownTopicId.code())
                                .with_name(None)
                                .with_topic_id(topic.topic_id),
                        ),
                    }
                }
                Some(names)
            }
        };
        // Before v4 a request could not say, and Kafka created missing topics.
        let auto_create = version < 4 || request.allow_auto_topic_creation;
        let ask = Request::Metadata { topics: names.clone(), auto_create };
        (MetadataCall { names, unknown_ids }, Step::Ask(vec![ask]))
    }

    pub(super) fn advance(&mut self, broker: &Broker, answers: Vec<Response>) -> Step {
        let [answer] = <[Response; 1]>::try_from(answers).expect("one answer");
        let (view, mut topics) = match answer {
            Response::Metadata(view) => {
                let topics: Vec<_> = view.topics.iter().map(topic).collect();
                (Some(view), topics)
            }
            // The node cannot describe anything yet: every named topic gets the error.
            Response::Error(error) => {
                let code = request_error_code(&error);
                let names = self.names.iter().flatten();
                let entry = |name: &Arc<str>| {
                    let entry = MetadataResponseTopic::default().with_error_code(code);
                    entry.with_name(Some(topic_name(name)))
                };
                (None, names.map(entry).collect())
            }
            other => unreachable!("Metadata answered with {other:?}"),
        };
        topics.append(&mut self.unknown_ids);
        let response = metadata_response(broker, view.as_ref(), topics);
        Step::Respond(KafkaResponse::Metadata(response))
    }
}

/// The brokers of `view`, or this node alone while it knows none (a client must always
/// have a broker to ask again).
fn brokers(
    broker: &Broker,
    view: Option<&ClusterView>,
) -> Vec<(i32, StrBytes, i32, Option<StrBytes>)> {
    let known = view.map(|view| view.brokers.as_slice()).unwrap_or_default();
    if known.is_empty() {
        return vec![(broker.node_id, broker.host(), broker.port, None)];
    }
    (known.iter())
        .map(|b| {
            let rack = b.rack.clone().map(StrBytes::from_string);
            (node_id(b.node_id), StrBytes::from_string(b.host.clone()), i32::from(b.port), rack)
        })
        .collect()
}

/// The active controller of `view`, -1 when none is known.
fn controller_id(view: Option<&ClusterView>) -> i32 {
    view.and_then(|view| view.controller).map_or(-1, node_id)
}

fn node_id(id: NodeId) -> i32 {
    i32::try_from(id.0).unwrap_or(i32::MAX)
}

fn metadata_response(
    broker: &Broker,
    view: Option<&ClusterView>,
    topics: Vec<MetadataResponseTopic>,
) -> MetadataResponse {
    let brokers = (brokers(broker, view).into_iter())
        .map(|(id, host, port, rack)| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(id))
                .with_host(host)
                .with_port(port)
                .with_rack(rack)
        })
        .collect();
    let cluster_id = view.map_or_else(|| broker.cluster_id.clone(), |v| v.cluster_id.clone());
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_string(cluster_id)))
        .with_controller_id(BrokerId(controller_id(view)))
        .with_topics(topics)
}

/// One topic of a Metadata answer. Its topic id stays zero: a zero id keeps clients on the
/// name-based Produce and Fetch versions Cairn serves.
fn topic(info: &TopicInfo) -> MetadataResponseTopic {
    let entry = MetadataResponseTopic::default().with_name(Some(topic_name(&info.name)));
    let state = match &info.state {
        Ok(state) => state,
        Err(error) => return entry.with_error_code(request_error_code(error)),
    };
    let ids = |ids: &[NodeId]| ids.iter().map(|id| BrokerId(node_id(*id))).collect::<Vec<_>>();
    let partitions = (state.partitions.iter().enumerate())
        .map(|(index, partition)| {
            let (error, leader) = match partition.leader {
                Some(leader) => (0, node_id(leader)),
                None => (ResponseError::LeaderNotAvailable.code(), -1),
            };
            MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(index as i32)
                .with_leader_id(BrokerId(leader))
                .with_leader_epoch(partition.leader_epoch)
                .with_replica_nodes(ids(&partition.replicas))
                .with_isr_nodes(ids(&partition.isr))
                .with_offline_replicas(ids(&partition.offline))
        })
        .collect();
    // Kafka tooling hides internal topics from listings and refuses to produce to them.
    let internal = &*info.name == crate::core::coordinator::OFFSETS_TOPIC;
    entry.with_partitions(partitions).with_is_internal(internal)
}

pub(super) fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

/// A DescribeCluster waiting for the node's view of the cluster.
#[derive(Debug)]
pub(super) struct DescribeClusterCall {
    request: DescribeClusterRequest,
    version: i16,
}

impl DescribeClusterCall {
    pub(super) fn start(request: DescribeClusterRequest, version: i16) -> (Self, Step) {
        let ask = Request::Metadata { topics: Some(Vec::new()), auto_create: false };
        (DescribeClusterCall { request, version }, Step::Ask(vec![ask]))
    }

    pub(super) fn advance(&mut self, broker: &Broker, answers: Vec<Response>) -> Step {
        let view = match answers.into_iter().next() {
            Some(Response::Metadata(view)) => Some(view),
            _ => None,
        };
        let brokers = (brokers(broker, view.as_ref()).into_iter())
            .map(|(id, host, port, rack)| {
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(id))
                    .with_host(host)
                    .with_port(port)
                    .with_rack(rack)
            })
            .collect();
        let cluster_id =
            view.as_ref().map_or_else(|| broker.cluster_id.clone(), |v| v.cluster_id.clone());
        let mut response = DescribeClusterResponse::default()
            .with_cluster_id(StrBytes::from_string(cluster_id))
            .with_controller_id(BrokerId(controller_id(view.as_ref())))
            .with_brokers(brokers);
        // v1 lets a client ask for controllers (2) instead of brokers (1): every Cairn node
        // serves both roles' requests, so both lists are the brokers.
        if self.version >= 1 {
            response.endpoint_type = self.request.endpoint_type;
        }
        Step::Respond(KafkaResponse::DescribeCluster(response))
    }
}
