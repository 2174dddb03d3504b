//! Topic requests and Metadata.
//!
//! Creation, deletion, growth and setting changes are checked here as far as the request
//! alone allows (a name, a count), then go to the active controller as calls; the client is
//! answered with the controller's answer, once the change is committed. Metadata is answered
//! from this node's image: the image of a node that is not the controller may lag the
//! controller's by a moment, as Kafka's brokers' metadata caches do, and clients retry.
//! A Metadata request that auto-creates topics waits for their creation first.
//!
//! A partition whose leader this node's transport saw die (its connections closed, see
//! [`Node::handle_peer_link`]) is answered with no leader (LEADER_NOT_AVAILABLE) and that
//! replica offline, until the controller has fenced it or it is heard from again: a client
//! told so looks for the new leader again within its retry backoff (librdkafka: 100 ms,
//! doubling), where a client told the old leader waits for its next periodic refresh
//! (decision 0011). The broker list stays the image's live brokers, as Kafka's.

use std::sync::Arc;

use super::cluster::Purpose;
use super::*;
use crate::core::controller::messages::{
    AlterConfigsRequest, ConfigChangeMessage, CreatePartitionsRequest, CreateTopicRequest,
    DeleteTopicRequest,
};
use crate::core::controller::{NO_LEADER, RequestKind, TopicImage};
use crate::core::topic::{ConfigChange, validate_partition_count, validate_topic_name};

/// A Metadata request waiting for the topics it auto-creates.
#[derive(Debug)]
pub(super) struct MetadataWait {
    conn: ConnId,
    id: RequestId,
    topics: Vec<Arc<str>>,
    /// Creations still waiting.
    creations: usize,
    /// Topics whose creation failed, with why.
    failures: Vec<(Arc<str>, RequestError)>,
}

fn create_request(
    name: &str,
    partitions: i32,
    replication_factor: i32,
    config: &TopicConfig,
    validate_only: bool,
) -> RequestKind {
    RequestKind::CreateTopic(CreateTopicRequest {
        name: name.to_string(),
        partitions,
        replication_factor,
        config: config.to_map(),
        validate_only,
    })
}

impl Node {
    /// A topic request: checked, then sent to the active controller.
    pub(super) fn admin_request(
        &mut self,
        now: Instant,
        conn: ConnId,
        id: RequestId,
        request: Request,
    ) {
        if self.shutting_down {
            return self.fail(conn, id, RequestError::NodeNotReady);
        }
        let kind = match request {
            Request::CreateTopic {
                name,
                partitions,
                replication_factor,
                config,
                validate_only,
            } => {
                let checked = validate_topic_name(&name)
                    .and_then(|()| validate_partition_count(partitions))
                    .and_then(|()| config.validate());
                if let Err(error) = checked {
                    return self.fail(conn, id, error);
                }
                create_request(&name, partitions, replication_factor, &config, validate_only)
            }
            Request::DeleteTopic { name } => {
                RequestKind::DeleteTopic(DeleteTopicRequest { name: name.to_string() })
            }
            Request::CreatePartitions { name, count, validate_only } => {
                if let Err(error) = validate_partition_count(count) {
                    return self.fail(conn, id, error);
                }
                let request =
                    CreatePartitionsRequest { name: name.to_string(), count, validate_only };
                RequestKind::CreatePartitions(request)
            }
            Request::AlterTopicConfig { name, changes, validate_only } => {
                let changes = changes
                    .into_iter()
                    .map(|change| match change {
                        ConfigChange::Set { key, value } => {
                            ConfigChangeMessage { key, value: Some(value) }
                        }
                        ConfigChange::Delete { key } => ConfigChangeMessage { key, value: None },
                    })
                    .collect();
                let request =
                    AlterConfigsRequest { name: name.to_string(), changes, validate_only };
                RequestKind::AlterConfigs(request)
            }
            Request::Metadata { .. }
            | Request::Produce { .. }
            | Request::Fetch { .. }
            | Request::ListOffsets { .. }
            | Request::FindCoordinator { .. }
            | Request::Group(_)
            | Request::ListGroups
            | Request::InitProducerId { .. } => unreachable!("not a topic request"),
        };
        self.call(now, Purpose::Client { conn, id }, kind.into());
    }

    pub(super) fn metadata(
        &mut self,
        now: Instant,
        conn: ConnId,
        id: RequestId,
        topics: Option<Vec<Arc<str>>>,
        auto_create: bool,
    ) {
        let Some(topics) = topics else {
            let all = self.image.topics().map(|topic| topic.name.clone()).collect();
            let response = self.describe(all, Vec::new());
            return self.reply(conn, id, response);
        };
        let token = self.token();
        let mut wait = MetadataWait { conn, id, topics, creations: 0, failures: Vec::new() };
        if auto_create && self.config.auto_create_topics && !self.shutting_down {
            let partitions = self.config.default_partitions;
            let config = self.config.default_topic.clone();
            for name in wait.topics.clone() {
                if self.image.topic(&name).is_some() {
                    continue;
                }
                if let Err(error) = validate_topic_name(&name) {
                    wait.failures.push((name, error.into()));
                    continue;
                }
                let request = create_request(&name, partitions, -1, &config, false);
                wait.creations += 1;
                self.call(now, Purpose::AutoCreate { wait: token, name }, request.into());
            }
        }
        if wait.creations == 0 {
            let response = self.describe(wait.topics, wait.failures);
            return self.reply(conn, id, response);
        }
        self.metadata_waits.insert(token, wait);
    }

    /// The creation of `name` for Metadata request `wait` is done (or failed).
    pub(super) fn auto_create_done(
        &mut self,
        wait: u64,
        name: Arc<str>,
        failure: Option<RequestError>,
    ) {
        let Some(waiting) = self.metadata_waits.get_mut(&wait) else { return };
        waiting.creations -= 1;
        if let Some(error) = failure {
            waiting.failures.push((name, error));
        }
        if waiting.creations == 0 {
            let waiting = self.metadata_waits.remove(&wait).expect("checked");
            let response = self.describe(waiting.topics, waiting.failures);
            self.reply(waiting.conn, waiting.id, response);
        }
    }

    /// Metadata's answer for topics `names`, from the image.
    fn describe(&self, names: Vec<Arc<str>>, failures: Vec<(Arc<str>, RequestError)>) -> Response {
        let topics = names
            .into_iter()
            .map(|name| {
                let failed = failures.iter().find(|(n, _)| *n == name).map(|(_, e)| e.clone());
                let state = match (self.image.topic(&name), failed) {
                    (Some(topic), _) => Ok(self.topic_state(topic)),
                    (None, Some(error)) => Err(error),
                    (None, None) => Err(RequestError::UnknownTopic(name.clone())),
                };
                TopicInfo { name, state }
            })
            .collect();
        let brokers = (self.image.live_brokers())
            .map(|broker| BrokerInfo {
                node_id: NodeId(broker.node_id as u32),
                host: broker.host.clone(),
                port: u16::try_from(broker.port).unwrap_or(0),
                rack: broker.rack.clone(),
            })
            .collect();
        Response::Metadata(ClusterView {
            cluster_id: self.config.cluster.cluster_id.clone(),
            controller: self.raft.leader(),
            brokers,
            topics,
        })
    }

    fn topic_state(&self, topic: &TopicImage) -> TopicState {
        let ids = |ids: &[i32]| ids.iter().map(|id| NodeId(*id as u32)).collect::<Vec<_>>();
        let reachable = |id: NodeId| !self.peers_down.contains(&id);
        let partitions = (topic.partitions.iter())
            .map(|state| PartitionInfo {
                leader: (state.leader != NO_LEADER)
                    .then_some(NodeId(state.leader as u32))
                    .filter(|leader| reachable(*leader)),
                leader_epoch: state.leader_epoch,
                replicas: ids(&state.replicas),
                isr: ids(&state.isr),
                offline: ids(&state.replicas)
                    .into_iter()
                    .filter(|id| !self.image.is_live(id.0 as i32) || !reachable(*id))
                    .collect(),
            })
            .collect();
        TopicState { id: topic.id, partitions, config: topic.settings.clone() }
    }
}
