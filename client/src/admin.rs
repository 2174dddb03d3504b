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
    DescribeGroupsRequest, DescribeGroupsResponse, GroupId, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, ListGroupsRequest, ListGroupsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::client::{Client, TopicMetadata};
use crate::consumer::{TopicPartition, list_offsets};
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

/// A group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// The group id.
    pub group_id: String,
    /// Its protocol type (`consumer` for consumer groups).
    pub protocol_type: String,
    /// Its state (Empty, Stable, PreparingRebalance, ...), when the broker says.
    pub state: String,
}

/// A group as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group id.
    pub group_id: String,
    /// Its state.
    pub state: String,
    /// Its protocol type.
    pub protocol_type: String,
    /// The assignor its members agreed on.
    pub protocol: String,
    /// Its members.
    pub members: Vec<GroupMember>,
}

/// A member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// The member id the coordinator gave.
    pub member_id: String,
    /// The member's client id.
    pub client_id: String,
    /// Where the member connects from.
    pub client_host: String,
    /// The partitions assigned to it.
    pub assignment: Vec<TopicPartition>,
}

/// A group's progress on one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// The topic and partition.
    pub partition: TopicPartition,
    /// The group's committed offset.
    pub committed: i64,
    /// The partition's end (its high watermark).
    pub end: i64,
    /// How many records the group has yet to read: `end - committed`, at least 0.
    pub lag: i64,
}

impl Admin {
    /// Every group that any broker coordinates, sorted by id.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        let mut groups = Vec::new();
        for broker in self.client.brokers() {
            let connection = self.client.broker(broker.id).await?;
            let response: ListGroupsResponse =
                connection.call(&ListGroupsRequest::default()).await?;
            if response.error_code != 0 {
                let context = format!("listing the groups of broker {}", broker.id);
                return Err(Error::kafka(response.error_code, context));
            }
            groups.extend(response.groups.iter().map(|g| GroupListing {
                group_id: g.group_id.0.to_string(),
                protocol_type: g.protocol_type.to_string(),
                state: g.group_state.to_string(),
            }));
        }
        groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        groups.dedup_by(|a, b| a.group_id == b.group_id);
        Ok(groups)
    }

    /// A group's state, assignor and members with their partitions.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        let connection = crate::group::coordinator(&self.client, group).await?;
        let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(text(group))]);
        let response: DescribeGroupsResponse = connection.call(&request).await?;
        let described = response
            .groups
            .into_iter()
            .next()
            .ok_or_else(|| Error::Protocol("DescribeGroups answered no group".to_string()))?;
        if described.error_code != 0 {
            return Err(Error::kafka(described.error_code, format!("describing group {group}")));
        }
        let mut members: Vec<GroupMember> = described
            .members
            .iter()
            .map(|m| GroupMember {
                member_id: m.member_id.to_string(),
                client_id: m.client_id.to_string(),
                client_host: m.client_host.to_string(),
                assignment: crate::group::assignment_partitions(&m.member_assignment),
            })
            .collect();
        members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
        Ok(GroupDescription {
            group_id: described.group_id.0.to_string(),
            state: described.group_state.to_string(),
            protocol_type: described.protocol_type.to_string(),
            protocol: described.protocol_data.to_string(),
            members,
        })
    }

    /// The group's committed offset, the partition's end and the lag, for every partition
    /// the group has committed.
    pub async fn group_lag(&self, group: &str) -> Result<Vec<PartitionLag>> {
        let committed = crate::group::all_committed(&self.client, group).await?;
        let wanted: Vec<(TopicPartition, i64)> =
            committed.iter().map(|(tp, _)| (tp.clone(), -1)).collect();
        let ends = list_offsets(&self.client, &wanted).await?;
        Ok(committed
            .into_iter()
            .map(|(partition, committed)| {
                let end = ends.iter().find(|(tp, _)| *tp == partition).map_or(-1, |(_, e)| *e);
                PartitionLag { partition, committed, end, lag: (end - committed).max(0) }
            })
            .collect())
    }
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn topic_name(s: &str) -> TopicName {
    TopicName(text(s))
}
