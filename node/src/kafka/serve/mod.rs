//! Serving one Kafka request, sans-IO: a decoded [`KafkaRequest`] becomes the core
//! [`Request`]s it needs, and the core's [`Response`]s become the [`KafkaResponse`].
//!
//! An [`Exchange`] is one request being served. A driver calls, in this order:
//!
//! - [`Exchange::start`] (input: the request, the time): the first [`Step`];
//! - on [`Step::Ask`], sends every core request of the round and hands each answer to
//!   [`Exchange::handle_response`] under its index in the round; the call that completes
//!   the round returns the next [`Step`];
//! - on [`Step::Wait`] (a fetch that found less than `min_bytes`), waits until the node's
//!   data version changes or the deadline passes, then calls [`Exchange::handle_wake`];
//! - on [`Step::Respond`], encodes and writes the answer: the exchange is over;
//! - on [`Step::Tell`] (acks 0 produce), sends the requests, expects no answer and writes
//!   nothing: the exchange is over.
//!
//! [`Exchange::stats`] says how many record bytes the exchange appended and fetched.
//!
//! Nothing here reads a clock or touches a socket; time comes in as `now`. A single node
//! is the whole cluster: it is the leader, the only replica and the controller of
//! everything, with leader epoch 0 (replication, issue 6, brings real epochs).

use std::time::Instant;

use kafka_protocol::protocol::StrBytes;

use super::request::{KafkaRequest, RequestHeader};
use super::response::KafkaResponse;
use super::versions::api_versions_response;
use crate::core::node::{NodeConfig, Request, Response, TopicConfig};

mod admin;
mod cluster;
mod data;
mod groups;
mod producer;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_groups;

/// What this node says about itself: in Metadata, DescribeCluster and DescribeConfigs, and
/// the defaults CreateTopics fills in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// The node's id, as Kafka's broker id.
    pub node_id: i32,
    /// The host clients are told to connect to.
    pub host: String,
    /// The port clients are told to connect to.
    pub port: i32,
    /// The cluster's id.
    pub cluster_id: String,
    /// Whether Metadata may create missing topics (`auto.create.topics.enable`).
    pub auto_create_topics: bool,
    /// Partitions of a topic created without a count (`num.partitions`).
    pub default_partitions: i32,
    /// Settings of a topic created without them.
    pub default_topic: TopicConfig,
    /// Replicas of a topic created without a count (`default.replication.factor`).
    pub default_replication_factor: i32,
}

impl Broker {
    /// The broker a node with `node` settings is, reachable at `host`:`port`.
    pub fn new(node: &NodeConfig, host: String, port: u16, cluster_id: String) -> Broker {
        Broker {
            node_id: i32::try_from(node.node_id.0).unwrap_or(i32::MAX),
            host,
            port: i32::from(port),
            cluster_id,
            auto_create_topics: node.auto_create_topics,
            default_partitions: node.default_partitions,
            default_topic: node.default_topic.clone(),
            default_replication_factor: node.cluster.default_replication_factor,
        }
    }

    fn host(&self) -> StrBytes {
        StrBytes::from_string(self.host.clone())
    }
}

/// What the driver of an [`Exchange`] must do next.
#[derive(Debug)]
pub enum Step {
    /// Send these core requests, answer by answer into [`Exchange::handle_response`].
    Ask(Vec<Request>),
    /// Send these core requests, which get no answer (acks 0); write nothing back.
    Tell(Vec<Request>),
    /// Wait until the node's data version changes (or already changed since the round was
    /// sent) or until `deadline`, then call [`Exchange::handle_wake`].
    Wait {
        /// When to give up waiting.
        deadline: Instant,
    },
    /// Write this answer; the exchange is over.
    Respond(KafkaResponse),
}

/// Record bytes an exchange moved, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExchangeStats {
    /// Record batch bytes the node accepted (sent, for acks 0).
    pub bytes_appended: u64,
    /// Record batch bytes put into the answer.
    pub bytes_fetched: u64,
}

/// One Kafka request being served. See the module documentation.
#[derive(Debug)]
pub struct Exchange {
    call: Call,
    /// Answers of the current round, by index.
    answers: Vec<Option<Response>>,
    /// Answers of the current round still to come.
    missing: usize,
    stats: ExchangeStats,
}

/// The per-API state of an exchange.
#[derive(Debug)]
enum Call {
    Metadata(cluster::MetadataCall),
    DescribeCluster(cluster::DescribeClusterCall),
    Produce(data::ProduceCall),
    Fetch(data::FetchCall),
    ListOffsets(data::ListOffsetsCall),
    CreateTopics(admin::CreateTopicsCall),
    DeleteTopics(admin::DeleteTopicsCall),
    CreatePartitions(admin::CreatePartitionsCall),
    DescribeConfigs(admin::DescribeConfigsCall),
    AlterConfigs(admin::AlterConfigsCall),
    /// A consumer group API.
    Group(groups::GroupCall),
    InitProducerId(producer::InitProducerIdCall),
    /// Answered without the core.
    Done,
}

impl Exchange {
    /// Starts serving `body` (with `header`) at time `now`; returns the exchange and what
    /// to do first.
    pub fn start(
        broker: &Broker,
        header: &RequestHeader,
        body: KafkaRequest,
        now: Instant,
    ) -> (Exchange, Step) {
        let version = header.api_version;
        let mut stats = ExchangeStats::default();
        let (call, step) = match body {
            KafkaRequest::ApiVersions(_) => {
                (Call::Done, Step::Respond(KafkaResponse::ApiVersions(api_versions_response(0))))
            }
            KafkaRequest::DescribeCluster(request) => {
                let (call, step) = cluster::DescribeClusterCall::start(request, version);
                (Call::DescribeCluster(call), step)
            }
            KafkaRequest::Metadata(request) => {
                let (call, step) = cluster::MetadataCall::start(request, version);
                (Call::Metadata(call), step)
            }
            KafkaRequest::Produce(request) => {
                let (call, step) = data::ProduceCall::start(request, &mut stats);
                (Call::Produce(call), step)
            }
            KafkaRequest::Fetch(request) => {
                let (call, step) = data::FetchCall::start(request, now);
                (Call::Fetch(call), step)
            }
            KafkaRequest::ListOffsets(request) => {
                let (call, step) = data::ListOffsetsCall::start(request, version);
                (Call::ListOffsets(call), step)
            }
            KafkaRequest::CreateTopics(request) => {
                let (call, step) = admin::CreateTopicsCall::start(broker, request);
                (Call::CreateTopics(call), step)
            }
            KafkaRequest::DeleteTopics(request) => {
                let (call, step) = admin::DeleteTopicsCall::start(request, version);
                (Call::DeleteTopics(call), step)
            }
            KafkaRequest::CreatePartitions(request) => {
                let (call, step) = admin::CreatePartitionsCall::start(request);
                (Call::CreatePartitions(call), step)
            }
            KafkaRequest::DescribeConfigs(request) => {
                let (call, step) = admin::DescribeConfigsCall::start(broker, request);
                (Call::DescribeConfigs(call), step)
            }
            KafkaRequest::IncrementalAlterConfigs(request) => {
                let (call, step) = admin::AlterConfigsCall::start(request);
                (Call::AlterConfigs(call), step)
            }
            KafkaRequest::InitProducerId(request) => {
                let (call, step) = producer::InitProducerIdCall::start(request);
                (Call::InitProducerId(call), step)
            }
            group => {
                let client_id = header.client_id.as_deref();
                let (call, step) = start_group_call(group, version, client_id);
                (Call::Group(call), step)
            }
        };
        let mut exchange = Exchange { call, answers: Vec::new(), missing: 0, stats };
        let step = exchange.settle(broker, step, now);
        (exchange, step)
    }

    /// The answer to request `index` of the current round. Returns the next step once the
    /// round is complete, `None` while answers are missing.
    ///
    /// # Panics
    ///
    /// If `index` is not a request of the current round, or was answered already.
    pub fn handle_response(
        &mut self,
        broker: &Broker,
        index: usize,
        response: Response,
        now: Instant,
    ) -> Option<Step> {
        let slot = self.answers.get_mut(index).expect("an answer to a request of this round");
        assert!(slot.is_none(), "request {index} answered twice");
        *slot = Some(response);
        self.missing -= 1;
        if self.missing > 0 {
            return None;
        }
        let answers: Vec<Response> =
            std::mem::take(&mut self.answers).into_iter().map(|a| a.expect("all in")).collect();
        let step = self.advance(broker, answers, now);
        Some(self.settle(broker, step, now))
    }

    /// The wait of a [`Step::Wait`] ended: the data changed or the deadline passed.
    ///
    /// # Panics
    ///
    /// If the exchange is not a waiting fetch.
    pub fn handle_wake(&mut self, broker: &Broker, now: Instant) -> Step {
        assert_eq!(self.missing, 0, "woken while answers are missing");
        let Call::Fetch(fetch) = &mut self.call else { panic!("only a fetch waits") };
        let step = fetch.handle_wake(now, &mut self.stats);
        self.settle(broker, step, now)
    }

    /// What the exchange moved so far.
    pub fn stats(&self) -> ExchangeStats {
        self.stats
    }

    /// Prepares for the answers of an [`Step::Ask`]; an empty round is completed at once.
    fn settle(&mut self, broker: &Broker, mut step: Step, now: Instant) -> Step {
        // Bounded: every call asks at most three rounds before it answers.
        for _ in 0..8 {
            match &step {
                Step::Ask(requests) if requests.is_empty() => {
                    step = self.advance(broker, Vec::new(), now);
                }
                Step::Ask(requests) => {
                    self.missing = requests.len();
                    self.answers = vec![None; requests.len()];
                    return step;
                }
                Step::Tell(_) | Step::Wait { .. } | Step::Respond(_) => return step,
            }
        }
        unreachable!("an exchange asked eight empty rounds")
    }

    fn advance(&mut self, broker: &Broker, answers: Vec<Response>, now: Instant) -> Step {
        let stats = &mut self.stats;
        match &mut self.call {
            Call::Metadata(call) => call.advance(broker, answers),
            Call::DescribeCluster(call) => call.advance(broker, answers),
            Call::Produce(call) => call.advance(answers, stats),
            Call::Fetch(call) => call.advance(answers, now, stats),
            Call::ListOffsets(call) => call.advance(answers),
            Call::CreateTopics(call) => call.advance(broker, answers),
            Call::DeleteTopics(call) => call.advance(answers),
            Call::CreatePartitions(call) => call.advance(answers),
            Call::DescribeConfigs(call) => call.advance(broker, answers),
            Call::AlterConfigs(call) => call.advance(answers),
            Call::Group(call) => call.advance(answers),
            Call::InitProducerId(call) => call.advance(answers),
            Call::Done => unreachable!("a finished exchange gets no answers"),
        }
    }
}

/// Starts a consumer group API call.
fn start_group_call(
    request: KafkaRequest,
    version: i16,
    client_id: Option<&str>,
) -> (groups::GroupCall, Step) {
    use groups::GroupCall;
    match request {
        KafkaRequest::FindCoordinator(request) => GroupCall::find_coordinator(request, version),
        KafkaRequest::JoinGroup(request) => GroupCall::join(request, version, client_id),
        KafkaRequest::SyncGroup(request) => GroupCall::sync(request, version),
        KafkaRequest::Heartbeat(request) => GroupCall::heartbeat(request, version),
        KafkaRequest::LeaveGroup(request) => GroupCall::leave(request, version),
        KafkaRequest::OffsetCommit(request) => GroupCall::commit(request, version),
        KafkaRequest::OffsetFetch(request) => GroupCall::fetch(request, version),
        KafkaRequest::ListGroups(request) => GroupCall::list(request, version),
        KafkaRequest::DescribeGroups(request) => GroupCall::describe(request, version),
        KafkaRequest::DeleteGroups(request) => GroupCall::delete(request, version),
        other => unreachable!("not a group API: {other:?}"),
    }
}

/// Text for an error message field.
fn message(text: impl ToString) -> Option<StrBytes> {
    Some(StrBytes::from_string(text.to_string()))
}
