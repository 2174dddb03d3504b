//! Metadata and DescribeCluster: the cluster is this one node, leader and only replica of
//! every partition, and its controller.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    DescribeClusterRequest, DescribeClusterResponse, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::{Broker, Step};
use crate::core::node::{Request, Response, TopicInfo};
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
        let mut topics: Vec<MetadataResponseTopic> = match answer {
            Response::Metadata { topics } => topics.iter().map(|t| topic(broker, t)).collect(),
            // The node cannot describe anything yet: every named topic gets the error.
            Response::Error(error) => {
                let code = request_error_code(&error);
                let names = self.names.iter().flatten();
                let entry = |name: &Arc<str>| {
                    let entry = MetadataResponseTopic::default().with_error_code(code);
                    entry.with_name(Some(topic_name(name)))
                };
                names.map(entry).collect()
            }
            other => unreachable!("Metadata answered with {other:?}"),
        };
        topics.append(&mut self.unknown_ids);
        Step::Respond(KafkaResponse::Metadata(metadata_response(broker, topics)))
    }
}

fn metadata_response(broker: &Broker, topics: Vec<MetadataResponseTopic>) -> MetadataResponse {
    let this = MetadataResponseBroker::default()
        .with_node_id(broker.id())
        .with_host(broker.host())
        .with_port(broker.port);
    MetadataResponse::default()
        .with_brokers(vec![this])
        .with_cluster_id(Some(StrBytes::from_string(broker.cluster_id.clone())))
        .with_controller_id(broker.id())
        .with_topics(topics)
}

/// One topic of a Metadata answer. Its topic id stays zero: Cairn has no topic ids yet, and
/// a zero id keeps clients on the name-based Produce and Fetch versions Cairn serves.
fn topic(broker: &Broker, info: &TopicInfo) -> MetadataResponseTopic {
    let entry = MetadataResponseTopic::default().with_name(Some(topic_name(&info.name)));
    let state = match &info.state {
        Ok(state) => state,
        Err(error) => return entry.with_error_code(request_error_code(error)),
    };
    let partitions = (0..state.partitions)
        .map(|index| {
            MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_id(broker.id())
                .with_leader_epoch(0)
                .with_replica_nodes(vec![broker.id()])
                .with_isr_nodes(vec![broker.id()])
        })
        .collect();
    entry.with_partitions(partitions)
}

pub(super) fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

/// DescribeCluster: this node, as broker and controller.
pub(super) fn describe_cluster(
    broker: &Broker,
    request: &DescribeClusterRequest,
    version: i16,
) -> DescribeClusterResponse {
    let this = DescribeClusterBroker::default()
        .with_broker_id(broker.id())
        .with_host(broker.host())
        .with_port(broker.port);
    let mut response = DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(broker.cluster_id.clone()))
        .with_controller_id(broker.id())
        .with_brokers(vec![this]);
    // v1 lets a client ask for controllers (2) instead of brokers (1); this node is both.
    if version >= 1 {
        response.endpoint_type = request.endpoint_type;
    }
    response
}
