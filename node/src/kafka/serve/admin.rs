//! The admin APIs: CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs and
//! IncrementalAlterConfigs. Each names topics (or resources) that succeed or fail one by
//! one; what the request itself gets wrong is answered here, the rest by the core.

use std::collections::HashMap;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::cluster::topic_name;
use super::{Broker, Step, message};
use crate::core::node::{Request, Response, TopicConfig, TopicInfo};
use crate::core::topic::{ConfigChange, ConfigEntry};
use crate::kafka::errors::{request_error_code, topic_error_code};
use crate::kafka::response::KafkaResponse;

/// Kafka's resource type of a topic.
pub const RESOURCE_TOPIC: i8 = 2;
/// Kafka's resource type of a broker.
pub const RESOURCE_BROKER: i8 = 4;
/// DescribeConfigs' `config_source` for a setting set on the topic.
pub const SOURCE_TOPIC_CONFIG: i8 = 1;
/// DescribeConfigs' `config_source` for a setting from the broker's static configuration.
pub const SOURCE_STATIC_BROKER_CONFIG: i8 = 4;
/// DescribeConfigs' `config_source` for a default value.
pub const SOURCE_DEFAULT_CONFIG: i8 = 5;

/// Error code and message of a topic change's answer.
fn outcome(answer: Response) -> (i16, Option<StrBytes>) {
    match answer {
        Response::TopicChanged => (0, None),
        Response::Error(error) => (request_error_code(&error), message(&error)),
        other => unreachable!("a topic change answered with {other:?}"),
    }
}

/// A failure decided without the core.
#[derive(Debug)]
struct Refusal {
    code: i16,
    text: String,
}

impl Refusal {
    fn new(error: ResponseError, text: impl Into<String>) -> Refusal {
        Refusal { code: error.code(), text: text.into() }
    }

    fn invalid(text: impl Into<String>) -> Refusal {
        Refusal::new(ResponseError::InvalidRequest, text)
    }

    fn message(&self) -> Option<StrBytes> {
        message(&self.text)
    }
}

/// Names that appear more than once: Kafka refuses every entry of such a name.
fn duplicates<'a>(names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for name in names {
        *seen.entry(name).or_default() += 1;
    }
    seen.into_iter().filter(|(_, count)| *count > 1).map(|(name, _)| name).collect()
}

fn duplicate(name: &str) -> Refusal {
    Refusal::invalid(format!("{name} appears more than once in the request"))
}

/// Hands answer `i` to `results[waiting[i]]`.
fn fill<R>(
    results: &mut [R],
    waiting: &[usize],
    answers: Vec<Response>,
    mut f: impl FnMut(&mut R, Response),
) {
    assert_eq!(answers.len(), waiting.len(), "one answer per request");
    for (&at, answer) in waiting.iter().zip(answers) {
        f(&mut results[at], answer);
    }
}

/// A CreateTopics waiting for the core's creations.
#[derive(Debug)]
pub(super) struct CreateTopicsCall {
    results: Vec<CreatableTopicResult>,
    /// For each core request: the result it answers, and the topic's settings.
    waiting: Vec<usize>,
    configs: Vec<(i32, i32, TopicConfig)>,
}

impl CreateTopicsCall {
    pub(super) fn start(broker: &Broker, request: CreateTopicsRequest) -> (Self, Step) {
        let repeated = duplicates(request.topics.iter().map(|t| t.name.as_str()));
        let mut call =
            CreateTopicsCall { results: Vec::new(), waiting: Vec::new(), configs: Vec::new() };
        let mut requests = Vec::new();
        for topic in &request.topics {
            let result = CreatableTopicResult::default()
                .with_name(topic.name.clone())
                .with_error_message(None);
            let checked = if repeated.contains(&topic.name.as_str()) {
                Err(duplicate(&topic.name))
            } else {
                new_topic(broker, topic)
            };
            match checked {
                Ok((partitions, replication_factor, config)) => {
                    requests.push(Request::CreateTopic {
                        name: Arc::from(topic.name.as_str()),
                        partitions,
                        replication_factor,
                        config: config.clone(),
                        validate_only: request.validate_only,
                    });
                    call.waiting.push(call.results.len());
                    let replicas = if replication_factor == -1 {
                        broker.default_replication_factor
                    } else {
                        replication_factor
                    };
                    call.configs.push((partitions, replicas, config));
                    call.results.push(result);
                }
                Err(refusal) => call.results.push(
                    result.with_error_code(refusal.code).with_error_message(refusal.message()),
                ),
            }
        }
        (call, Step::Ask(requests))
    }

    pub(super) fn advance(&mut self, broker: &Broker, answers: Vec<Response>) -> Step {
        let mut configs = self.configs.drain(..);
        fill(&mut self.results, &self.waiting, answers, |result, answer| {
            let (partitions, replicas, config) = configs.next().expect("one config per request");
            let (code, text) = outcome(answer);
            result.error_code = code;
            result.error_message = text;
            if code == 0 {
                result.num_partitions = partitions;
                result.replication_factor = i16::try_from(replicas).unwrap_or(i16::MAX);
                result.configs = Some(created_configs(&config, &broker.default_topic));
            }
        });
        drop(configs);
        let response =
            CreateTopicsResponse::default().with_topics(std::mem::take(&mut self.results));
        Step::Respond(KafkaResponse::CreateTopics(response))
    }
}

/// The partition count, replication factor (-1 for the cluster's default) and settings of a
/// topic to create, or why not. The controller checks the factor against the brokers.
fn new_topic(
    broker: &Broker,
    topic: &kafka_protocol::messages::create_topics_request::CreatableTopic,
) -> Result<(i32, i32, TopicConfig), Refusal> {
    if !topic.assignments.is_empty() {
        return Err(Refusal::invalid(
            "manual replica assignments are not supported: the controller places replicas",
        ));
    }
    if topic.replication_factor == 0 || topic.replication_factor < -1 {
        let text = format!(
            "replication factor {} is not possible: use a positive count, or -1 for the \
             cluster's default",
            topic.replication_factor
        );
        return Err(Refusal::new(ResponseError::InvalidReplicationFactor, text));
    }
    let partitions =
        if topic.num_partitions == -1 { broker.default_partitions } else { topic.num_partitions };
    let changes: Vec<ConfigChange> = topic
        .configs
        .iter()
        .map(|c| match &c.value {
            Some(value) => ConfigChange::Set { key: c.name.to_string(), value: value.to_string() },
            // A null value asks for the default.
            None => ConfigChange::Delete { key: c.name.to_string() },
        })
        .collect();
    let mut config = broker.default_topic.clone();
    config
        .apply(&changes, &broker.default_topic)
        .map_err(|error| Refusal { code: topic_error_code(&error), text: error.to_string() })?;
    Ok((partitions, i32::from(topic.replication_factor), config))
}

fn created_configs(config: &TopicConfig, defaults: &TopicConfig) -> Vec<CreatableTopicConfigs> {
    config
        .entries(defaults)
        .into_iter()
        .map(|entry| {
            CreatableTopicConfigs::default()
                .with_name(StrBytes::from_static_str(entry.name))
                .with_value(Some(StrBytes::from_string(entry.value.clone())))
                .with_read_only(entry.read_only)
                .with_config_source(source(&entry))
        })
        .collect()
}

fn source(entry: &ConfigEntry) -> i8 {
    if entry.is_default { SOURCE_DEFAULT_CONFIG } else { SOURCE_TOPIC_CONFIG }
}

/// A DeleteTopics waiting for the core's deletions.
#[derive(Debug)]
pub(super) struct DeleteTopicsCall {
    results: Vec<DeletableTopicResult>,
    waiting: Vec<usize>,
}

impl DeleteTopicsCall {
    pub(super) fn start(request: DeleteTopicsRequest, version: i16) -> (Self, Step) {
        let mut call = DeleteTopicsCall { results: Vec::new(), waiting: Vec::new() };
        let mut requests = Vec::new();
        // v6 names topics by name or by id; earlier versions by name only.
        let entries: Vec<(Option<String>, _)> = if version >= 6 {
            request
                .topics
                .iter()
                .map(|t| (t.name.as_ref().map(|n| n.to_string()), t.topic_id))
                .collect()
        } else {
            request.topic_names.iter().map(|n| (Some(n.to_string()), Default::default())).collect()
        };
        for (name, topic_id) in entries {
            let Some(name) = name else {
                // Cairn gives topics no ids yet, so no id names a topic.
                let code = ResponseError::UnknownTopicId.code();
                let result =
                    DeletableTopicResult::default().with_name(None).with_topic_id(topic_id);
                call.results.push(
                    result
                        .with_error_code(code)
                        .with_error_message(message("Cairn has no topic ids; delete by name")),
                );
                continue;
            };
            requests.push(Request::DeleteTopic { name: Arc::from(name.as_str()) });
            call.waiting.push(call.results.len());
            call.results.push(DeletableTopicResult::default().with_name(Some(topic_name(&name))));
        }
        (call, Step::Ask(requests))
    }

    pub(super) fn advance(&mut self, answers: Vec<Response>) -> Step {
        fill(&mut self.results, &self.waiting, answers, |result, answer| {
            (result.error_code, result.error_message) = outcome(answer);
        });
        let response =
            DeleteTopicsResponse::default().with_responses(std::mem::take(&mut self.results));
        Step::Respond(KafkaResponse::DeleteTopics(response))
    }
}

/// A CreatePartitions waiting for the core.
#[derive(Debug)]
pub(super) struct CreatePartitionsCall {
    results: Vec<CreatePartitionsTopicResult>,
    waiting: Vec<usize>,
}

impl CreatePartitionsCall {
    pub(super) fn start(request: CreatePartitionsRequest) -> (Self, Step) {
        let repeated = duplicates(request.topics.iter().map(|t| t.name.as_str()));
        let mut call = CreatePartitionsCall { results: Vec::new(), waiting: Vec::new() };
        let mut requests = Vec::new();
        for topic in &request.topics {
            let result = CreatePartitionsTopicResult::default()
                .with_name(topic.name.clone())
                .with_error_message(None);
            let refusal = if repeated.contains(&topic.name.as_str()) {
                Some(duplicate(&topic.name))
            } else if topic.assignments.as_ref().is_some_and(|a| !a.is_empty()) {
                Some(Refusal::invalid(
                    "manual replica assignments are not supported: this node holds every partition",
                ))
            } else {
                None
            };
            if let Some(refusal) = refusal {
                call.results.push(
                    result.with_error_code(refusal.code).with_error_message(refusal.message()),
                );
                continue;
            }
            requests.push(Request::CreatePartitions {
                name: Arc::from(topic.name.as_str()),
                count: topic.count,
                validate_only: request.validate_only,
            });
            call.waiting.push(call.results.len());
            call.results.push(result);
        }
        (call, Step::Ask(requests))
    }

    pub(super) fn advance(&mut self, answers: Vec<Response>) -> Step {
        fill(&mut self.results, &self.waiting, answers, |result, answer| {
            (result.error_code, result.error_message) = outcome(answer);
        });
        let response =
            CreatePartitionsResponse::default().with_results(std::mem::take(&mut self.results));
        Step::Respond(KafkaResponse::CreatePartitions(response))
    }
}

/// A DescribeConfigs waiting for the settings of the topics it names.
#[derive(Debug)]
pub(super) struct DescribeConfigsCall {
    results: Vec<DescribeConfigsResult>,
    /// Topic resources: the result each fills, and the keys asked for (`None`: all).
    topics: Vec<(usize, Option<Vec<StrBytes>>)>,
}

impl DescribeConfigsCall {
    pub(super) fn start(broker: &Broker, request: DescribeConfigsRequest) -> (Self, Step) {
        let mut call = DescribeConfigsCall { results: Vec::new(), topics: Vec::new() };
        let mut names = Vec::new();
        for resource in request.resources {
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone())
                .with_error_message(None);
            let keys = resource.configuration_keys;
            match resource.resource_type {
                RESOURCE_TOPIC => {
                    names.push(Arc::<str>::from(resource.resource_name.as_str()));
                    call.topics.push((call.results.len(), keys));
                    call.results.push(result);
                }
                RESOURCE_BROKER => {
                    call.results.push(describe_broker(broker, result, keys.as_deref()))
                }
                other => {
                    let refusal = Refusal::invalid(format!(
                        "resource type {other} is not served; \
                         Cairn describes topics (2) and brokers (4)"
                    ));
                    call.results.push(
                        result.with_error_code(refusal.code).with_error_message(refusal.message()),
                    );
                }
            }
        }
        if names.is_empty() {
            return (call, Step::Ask(Vec::new()));
        }
        (call, Step::Ask(vec![Request::Metadata { topics: Some(names), auto_create: false }]))
    }

    pub(super) fn advance(&mut self, broker: &Broker, answers: Vec<Response>) -> Step {
        let infos: Vec<TopicInfo> = match answers.into_iter().next() {
            None => Vec::new(),
            Some(Response::Metadata(view)) => view.topics,
            Some(Response::Error(error)) => {
                for (at, _) in &self.topics {
                    let result = &mut self.results[*at];
                    result.error_code = request_error_code(&error);
                    result.error_message = message(&error);
                }
                Vec::new()
            }
            Some(other) => unreachable!("Metadata answered with {other:?}"),
        };
        for ((at, keys), info) in self.topics.iter().zip(&infos) {
            let result = &mut self.results[*at];
            debug_assert_eq!(result.resource_name.as_str(), &*info.name);
            match &info.state {
                Ok(state) => {
                    let entries = state.config.entries(&broker.default_topic);
                    let wanted = entries.iter().filter(|e| asked(keys.as_deref(), e.name));
                    result.configs = wanted.map(topic_entry).collect();
                }
                Err(error) => {
                    result.error_code = request_error_code(error);
                    result.error_message = message(error);
                }
            }
        }
        let response =
            DescribeConfigsResponse::default().with_results(std::mem::take(&mut self.results));
        Step::Respond(KafkaResponse::DescribeConfigs(response))
    }
}

/// Whether setting `name` is among `keys`; no keys (null, or as Kafka also reads it, an
/// empty list) asks for every setting.
fn asked(keys: Option<&[StrBytes]>, name: &str) -> bool {
    keys.is_none_or(|keys| keys.is_empty() || keys.iter().any(|k| k.as_str() == name))
}

fn topic_entry(entry: &ConfigEntry) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_static_str(entry.name))
        .with_value(Some(StrBytes::from_string(entry.value.clone())))
        .with_read_only(entry.read_only)
        .with_config_source(source(entry))
        .with_config_type(config_type(entry.name))
        .with_documentation(None)
}

/// Kafka's `ConfigType` of a topic setting (v3+): BOOLEAN 1, STRING 2, INT 3, LONG 5, LIST 7.
fn config_type(name: &str) -> i8 {
    match name {
        "cleanup.policy" => 7,
        "durability" => 2,
        "index.interval.bytes"
        | "max.message.bytes"
        | "segment.bytes"
        | "num.partitions"
        | "default.replication.factor"
        | "message.max.bytes"
        | "log.segment.bytes" => 3,
        "auto.create.topics.enable" => 1,
        _ => 5,
    }
}

/// The broker's settings a client may look up: static, from the node's configuration.
fn describe_broker(
    broker: &Broker,
    result: DescribeConfigsResult,
    keys: Option<&[StrBytes]>,
) -> DescribeConfigsResult {
    // An empty name asks for the cluster-wide defaults, which are this node's settings.
    let name = result.resource_name.as_str();
    if !name.is_empty() && name != broker.node_id.to_string() {
        let refusal = Refusal::invalid(format!("this is broker {}, not {name}", broker.node_id));
        return result.with_error_code(refusal.code).with_error_message(refusal.message());
    }
    let defaults = &broker.default_topic;
    let setting = |key: &str| defaults.get(key).expect("a topic setting");
    let settings = [
        ("auto.create.topics.enable", broker.auto_create_topics.to_string()),
        ("default.replication.factor", "1".to_string()),
        ("log.retention.bytes", setting("retention.bytes")),
        ("log.retention.ms", setting("retention.ms")),
        ("log.segment.bytes", setting("segment.bytes")),
        ("message.max.bytes", setting("max.message.bytes")),
        ("min.insync.replicas", setting("min.insync.replicas")),
        ("num.partitions", broker.default_partitions.to_string()),
    ];
    let configs = settings
        .into_iter()
        .filter(|(key, _)| asked(keys, key))
        .map(|(key, value)| {
            DescribeConfigsResourceResult::default()
                .with_name(StrBytes::from_static_str(key))
                .with_value(Some(StrBytes::from_string(value)))
                .with_read_only(true)
                .with_config_source(SOURCE_STATIC_BROKER_CONFIG)
                .with_config_type(config_type(key))
                .with_documentation(None)
        })
        .collect();
    result.with_configs(configs)
}

/// An IncrementalAlterConfigs waiting for the core's setting changes.
#[derive(Debug)]
pub(super) struct AlterConfigsCall {
    results: Vec<AlterConfigsResourceResponse>,
    waiting: Vec<usize>,
}

impl AlterConfigsCall {
    pub(super) fn start(request: IncrementalAlterConfigsRequest) -> (Self, Step) {
        let topic_names = request.resources.iter().filter(|r| r.resource_type == RESOURCE_TOPIC);
        let repeated = duplicates(topic_names.map(|r| r.resource_name.as_str()));
        let mut call = AlterConfigsCall { results: Vec::new(), waiting: Vec::new() };
        let mut requests = Vec::new();
        for resource in &request.resources {
            let result = AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone())
                .with_error_message(None);
            let name = resource.resource_name.as_str();
            let changes = match resource.resource_type {
                RESOURCE_TOPIC if repeated.contains(&name) => Err(duplicate(name)),
                RESOURCE_TOPIC => changes(&resource.configs),
                RESOURCE_BROKER => Err(Refusal::invalid(
                    "broker settings are static: \
                     change the node's configuration file and restart it",
                )),
                other => Err(Refusal::invalid(format!(
                    "resource type {other} is not served; Cairn alters topics (2)"
                ))),
            };
            match changes {
                Ok(changes) => {
                    requests.push(Request::AlterTopicConfig {
                        name: Arc::from(name),
                        changes,
                        validate_only: request.validate_only,
                    });
                    call.waiting.push(call.results.len());
                    call.results.push(result);
                }
                Err(refusal) => call.results.push(
                    result.with_error_code(refusal.code).with_error_message(refusal.message()),
                ),
            }
        }
        (call, Step::Ask(requests))
    }

    pub(super) fn advance(&mut self, answers: Vec<Response>) -> Step {
        fill(&mut self.results, &self.waiting, answers, |result, answer| {
            (result.error_code, result.error_message) = outcome(answer);
        });
        let response = IncrementalAlterConfigsResponse::default()
            .with_responses(std::mem::take(&mut self.results));
        Step::Respond(KafkaResponse::IncrementalAlterConfigs(response))
    }
}

/// The core's changes for a topic resource's operations: SET (0) and DELETE (1) only, since
/// APPEND (2) and SUBTRACT (3) work on list settings and Cairn's settings are single values.
fn changes(configs: &[AlterableConfig]) -> Result<Vec<ConfigChange>, Refusal> {
    configs
        .iter()
        .map(|config| {
            let key = config.name.to_string();
            match (config.config_operation, &config.value) {
                (0, Some(value)) => Ok(ConfigChange::Set { key, value: value.to_string() }),
                (0, None) => Err(Refusal::invalid(format!("SET {key} needs a value"))),
                (1, _) => Ok(ConfigChange::Delete { key }),
                (2 | 3, _) => Err(Refusal::invalid(format!(
                    "APPEND and SUBTRACT work on list settings; {key} is a single value (use SET)"
                ))),
                (other, _) => {
                    Err(Refusal::invalid(format!("unknown config operation {other} on {key}")))
                }
            }
        })
        .collect()
}
