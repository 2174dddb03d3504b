//! [`Admin`]: topics (create, list, describe, delete, add partitions) and their configs
//! (describe, and alter through IncrementalAlterConfigs).

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::client::{Client, TopicMetadata};
use crate::error::{Error, Result};

/// Kafka's resource type of a topic in config requests.
const RESOURCE_TOPIC: i8 = 2;

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// Its name.
    pub name: String,
    /// How many partitions; -1 for the broker's default.
    pub partitions: i32,
    /// How many replicas per partition; -1 for the broker's default.
    pub replication_factor: i16,
    /// Topic configs (`retention.ms`, `cleanup.policy`, ...).
    pub configs: Vec<(String, String)>,
}

impl NewTopic {
    /// A topic with the broker's default partitions and replication factor.
    pub fn new(name: &str) -> NewTopic {
        NewTopic {
            name: name.to_string(),
            partitions: -1,
            replication_factor: -1,
            configs: Vec::new(),
        }
    }
}

/// A config entry of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// The key.
    pub name: String,
    /// The value (`None` when sensitive or unset).
    pub value: Option<String>,
    /// Whether the value is the broker's default rather than set on the topic.
    pub is_default: bool,
    /// Whether it cannot be changed.
    pub read_only: bool,
    /// Whether the value is hidden.
    pub sensitive: bool,
}

/// A change to a topic config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterConfig {
    /// Sets a key to a value.
    Set(String, String),
    /// Removes a key, so the default applies again.
    Delete(String),
}

/// An admin client.
///
/// ```no_run
/// # async fn run() -> cairn_client::Result<()> {
/// use cairn_client::{Admin, Client, ClientConfig, NewTopic};
/// let client = Client::connect(ClientConfig::new("127.0.0.1:9092")).await?;
/// let admin = Admin::new(&client);
/// let mut topic = NewTopic::new("orders");
/// topic.partitions = 6;
/// admin.create_topics(&[topic]).await?;
/// for topic in admin.list_topics().await? {
///     println!("{} ({} partitions)", topic.name, topic.partitions.len());
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Admin {
    client: Client,
    timeout: Duration,
}

impl Admin {
    /// An admin client over `client`.
    pub fn new(client: &Client) -> Admin {
        Admin { client: client.clone(), timeout: Duration::from_secs(30) }
    }

    fn timeout_ms(&self) -> i32 {
        self.timeout.as_millis().min(i32::MAX as u128) as i32
    }

    /// Creates topics; fails on the first topic the broker refused (TOPIC_ALREADY_EXISTS
    /// among them).
    pub async fn create_topics(&self, topics: &[NewTopic]) -> Result<()> {
        let request =
            CreateTopicsRequest::default().with_timeout_ms(self.timeout_ms()).with_topics(
                topics
                    .iter()
                    .map(|topic| {
                        CreatableTopic::default()
                            .with_name(topic_name(&topic.name))
                            .with_num_partitions(topic.partitions)
                            .with_replication_factor(topic.replication_factor)
                            .with_configs(
                                topic
                                    .configs
                                    .iter()
                                    .map(|(key, value)| {
                                        CreatableTopicConfig::default()
                                            .with_name(text(key))
                                            .with_value(Some(text(value)))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let connection = self.client.any_broker().await?;
        let response: CreateTopicsResponse = connection.call(&request).await?;
        for result in &response.topics {
            if result.error_code != 0 {
                let message = result.error_message.as_ref().map(|m| m.to_string());
                let context = format!(
                    "creating topic {}{}",
                    result.name.0.as_str(),
                    message.map(|m| format!(" ({m})")).unwrap_or_default()
                );
                return Err(Error::kafka(result.error_code, context));
            }
        }
        for topic in topics {
            self.client.invalidate(&topic.name);
        }
        Ok(())
    }

    /// Deletes topics.
    pub async fn delete_topics(&self, names: &[&str]) -> Result<()> {
        let request = DeleteTopicsRequest::default()
            .with_timeout_ms(self.timeout_ms())
            .with_topic_names(names.iter().map(|name| topic_name(name)).collect());
        let connection = self.client.any_broker().await?;
        let response: DeleteTopicsResponse = connection.call(&request).await?;
        for result in &response.responses {
            if result.error_code != 0 {
                let name = result.name.as_ref().map_or("?", |n| n.0.as_str());
                return Err(Error::kafka(result.error_code, format!("deleting topic {name}")));
            }
        }
        for name in names {
            self.client.invalidate(name);
        }
        Ok(())
    }

    /// Grows a topic to `partitions` partitions in all.
    pub async fn create_partitions(&self, topic: &str, partitions: i32) -> Result<()> {
        let request = CreatePartitionsRequest::default()
            .with_timeout_ms(self.timeout_ms())
            .with_topics(vec![
                CreatePartitionsTopic::default()
                    .with_name(topic_name(topic))
                    .with_count(partitions)
                    .with_assignments(None),
            ]);
        let connection = self.client.any_broker().await?;
        let response: CreatePartitionsResponse = connection.call(&request).await?;
        for result in &response.results {
            if result.error_code != 0 {
                return Err(Error::kafka(
                    result.error_code,
                    format!("adding partitions to {topic}"),
                ));
            }
        }
        Ok(())
    }

    /// Every topic, internal ones included, sorted by name.
    pub async fn list_topics(&self) -> Result<Vec<Arc<TopicMetadata>>> {
        let mut topics = self.client.refresh(&[], false).await?;
        topics.retain(|t| !t.partitions.is_empty());
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    /// The partitions, leaders, replicas and in-sync replicas of these topics. A topic
    /// that does not exist is `Error::UnknownTopic`.
    pub async fn describe_topics(&self, names: &[&str]) -> Result<Vec<Arc<TopicMetadata>>> {
        let topics = self.client.refresh(names, false).await?;
        for name in names {
            let found = topics.iter().any(|t| &*t.name == *name && !t.partitions.is_empty());
            if !found {
                return Err(Error::UnknownTopic(name.to_string()));
            }
        }
        Ok(topics)
    }

    /// A topic's configs, defaults included.
    pub async fn describe_configs(&self, topic: &str) -> Result<Vec<ConfigEntry>> {
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(text(topic))
                .with_configuration_keys(None),
        ]);
        let connection = self.client.any_broker().await?;
        let response: DescribeConfigsResponse = connection.call(&request).await?;
        let result =
            response.results.into_iter().next().ok_or_else(|| {
                Error::Protocol("DescribeConfigs answered no resource".to_string())
            })?;
        if result.error_code != 0 {
            return Err(Error::kafka(result.error_code, format!("configs of {topic}")));
        }
        let version = connection.version::<DescribeConfigsRequest>()?;
        let mut entries: Vec<ConfigEntry> = result
            .configs
            .into_iter()
            .map(|c| ConfigEntry {
                name: c.name.to_string(),
                value: c.value.map(|v| v.to_string()),
                // v0 has is_default (decoded into config_source by the crate as 5 when set);
                // later versions say the source: 5 is DEFAULT_CONFIG, 4 STATIC_BROKER_CONFIG.
                is_default: if version == 0 { c.config_source == 5 } else { c.config_source != 1 },
                read_only: c.read_only,
                sensitive: c.is_sensitive,
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Changes a topic's configs (IncrementalAlterConfigs: keys not named are kept).
    pub async fn alter_configs(&self, topic: &str, changes: &[AlterConfig]) -> Result<()> {
        let configs = changes
            .iter()
            .map(|change| match change {
                AlterConfig::Set(key, value) => AlterableConfig::default()
                    .with_name(text(key))
                    .with_config_operation(0)
                    .with_value(Some(text(value))),
                AlterConfig::Delete(key) => AlterableConfig::default()
                    .with_name(text(key))
                    .with_config_operation(1)
                    .with_value(None),
            })
            .collect();
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(text(topic))
                .with_configs(configs),
        ]);
        let connection = self.client.any_broker().await?;
        let response: IncrementalAlterConfigsResponse = connection.call(&request).await?;
        for result in &response.responses {
            if result.error_code != 0 {
                let message = result.error_message.as_ref().map(|m| m.to_string());
                let context =
                    format!("altering configs of {topic} {}", message.unwrap_or_default());
                return Err(Error::kafka(result.error_code, context.trim_end().to_string()));
            }
        }
        Ok(())
    }

    /// The earliest and latest offsets of every partition of `topic`, by partition.
    pub async fn offsets(&self, topic: &str) -> Result<Vec<(i32, i64, i64)>> {
        use crate::consumer::{TopicPartition, list_offsets};
        let metadata = self.client.topic(topic, false).await?;
        let partitions: Vec<TopicPartition> = metadata
            .partitions
            .iter()
            .map(|p| TopicPartition { topic: metadata.name.clone(), partition: p.partition })
            .collect();
        let ask = |timestamp: i64| -> Vec<(TopicPartition, i64)> {
            partitions.iter().map(|tp| (tp.clone(), timestamp)).collect()
        };
        let earliest = list_offsets(&self.client, &ask(-2)).await?;
        let latest = list_offsets(&self.client, &ask(-1)).await?;
        let mut rows: Vec<(i32, i64, i64)> = earliest
            .iter()
            .map(|(tp, start)| {
                let end = latest.iter().find(|(t, _)| t == tp).map_or(-1, |(_, end)| *end);
                (tp.partition, *start, end)
            })
            .collect();
        rows.sort_unstable();
        Ok(rows)
    }
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn topic_name(s: &str) -> TopicName {
    TopicName(text(s))
}
