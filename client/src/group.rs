//! Consumer group membership (Kafka's classic group protocol): finding the coordinator,
//! JoinGroup and SyncGroup with the configured assignors, heartbeats, LeaveGroup, and offset
//! commits and fetches.
//!
//! A member offers its assignors in preference order; the coordinator picks the protocol.
//! The leader of a generation computes every member's assignment with it (`assignor`). The
//! embedded protocol (`consumer`) encodes subscriptions as Kafka's
//! `ConsumerProtocolSubscription` v2 (topics, the partitions the member owns and the
//! generation it got them in, KIP-429) and assignments as `ConsumerProtocolAssignment` v0,
//! each a big-endian version prefix and the struct, so Java, librdkafka and this client can
//! share a group.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest,
    SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::assignor::{self, Assignor, Subscription, Tp};
use crate::client::Client;
use crate::conn::Connection;
use crate::consumer::{TopicPartition, by_topic};
use crate::error::{Error, KafkaCode, Result};
use crate::limits::METADATA_ATTEMPTS_MAX;

/// The embedded protocol's type.
const PROTOCOL_TYPE: &str = "consumer";
/// The subscription version this client writes: v2 has the owned partitions (v1, KIP-429)
/// and the generation they were assigned in.
const SUBSCRIPTION_VERSION: i16 = 2;

const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const NOT_COORDINATOR: i16 = 16;
const ILLEGAL_GENERATION: i16 = 22;
const UNKNOWN_MEMBER_ID: i16 = 25;
const REBALANCE_IN_PROGRESS: i16 = 27;
const MEMBER_ID_REQUIRED: i16 = 79;

/// A consumer group's id, timings and assignors (the Java client's names).
///
/// ```
/// use std::time::Duration;
/// use cairn_client::{Assignor, GroupConfig};
/// let group = GroupConfig {
///     assignors: vec![Assignor::CooperativeSticky],
///     session_timeout: Duration::from_secs(10),
///     ..GroupConfig::new("billing")
/// };
/// assert_eq!(group.heartbeat_interval, Duration::from_secs(3));
/// ```
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// The group's id (`group.id`).
    pub group_id: String,
    /// How long the coordinator waits for a heartbeat before it drops the member
    /// (`session.timeout.ms`).
    pub session_timeout: Duration,
    /// How long a rebalance may take (`max.poll.interval.ms` in the Java client).
    pub rebalance_timeout: Duration,
    /// How often the member heartbeats (`heartbeat.interval.ms`).
    pub heartbeat_interval: Duration,
    /// The assignors this member offers, in preference order
    /// (`partition.assignment.strategy`). The coordinator picks the leader's first choice
    /// that every member lists. Default: range, then cooperative-sticky, as the Java client
    /// 3.x, so a group can move to cooperative-sticky one member at a time (KIP-429).
    pub assignors: Vec<Assignor>,
    /// Whether the consumer commits a partition's position before it gives the partition
    /// up in a rebalance (what the Java client does with `enable.auto.commit` in
    /// `onPartitionsRevoked`), so the next owner starts after what `poll` returned here.
    pub commit_on_revoke: bool,
}

impl GroupConfig {
    /// Kafka's defaults for group `group_id`.
    pub fn new(group_id: &str) -> GroupConfig {
        GroupConfig {
            group_id: group_id.to_string(),
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(3),
            assignors: vec![Assignor::Range, Assignor::CooperativeSticky],
            commit_on_revoke: true,
        }
    }
}

/// This consumer's membership in one generation of its group.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) member_id: String,
    pub(crate) generation: i32,
    /// The assignor the coordinator picked for this generation.
    pub(crate) protocol: Assignor,
    pub(crate) coordinator: Connection,
    /// Set by the heartbeat task when the coordinator says the group is rebalancing or
    /// the member is gone: the next poll rejoins.
    pub(crate) rejoin: Arc<AtomicBool>,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl Drop for Member {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

fn millis(duration: Duration) -> i32 {
    duration.as_millis().min(i32::MAX as u128) as i32
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// The group's coordinator, found with FindCoordinator and retried while the coordinator
/// is loading or moving.
pub(crate) async fn coordinator(client: &Client, group: &str) -> Result<Connection> {
    let request = FindCoordinatorRequest::default().with_key(text(group)).with_key_type(0);
    let mut last = Error::kafka(COORDINATOR_NOT_AVAILABLE, format!("coordinator of {group}"));
    for _ in 0..METADATA_ATTEMPTS_MAX {
        let connection = client.any_broker().await?;
        let response: FindCoordinatorResponse = connection.call(&request).await?;
        if response.error_code == 0 {
            let address = format!("{}:{}", response.host.as_str(), response.port);
            return client.broker_at(response.node_id.0, &address).await;
        }
        last = Error::kafka(response.error_code, format!("coordinator of {group}"));
        if !last.is_retriable() && response.error_code != COORDINATOR_NOT_AVAILABLE {
            return Err(last);
        }
        tokio::time::sleep(client.config().retry_backoff).await;
    }
    Err(last)
}

/// What a member tells the group when it joins: its subscription and what it holds.
#[derive(Debug, Clone)]
pub(crate) struct JoinAs<'a> {
    /// The member id of the last generation ("" for a new member).
    pub member_id: &'a str,
    /// The subscribed topics.
    pub topics: &'a [String],
    /// The partitions the member keeps through this rebalance (cooperative), else none.
    pub owned: &'a [TopicPartition],
    /// The generation `owned` was assigned in (-1 when none).
    pub generation: i32,
}

/// Joins the group and returns the membership and this member's partitions.
pub(crate) async fn join(
    client: &Client,
    config: &GroupConfig,
    join_as: &JoinAs<'_>,
) -> Result<(Member, Vec<TopicPartition>)> {
    let mut member_id = join_as.member_id.to_string();
    let protocols = offered_protocols(config, join_as)?;
    for _ in 0..METADATA_ATTEMPTS_MAX {
        let coordinator = coordinator(client, &config.group_id).await?;
        let request = JoinGroupRequest::default()
            .with_group_id(GroupId(text(&config.group_id)))
            .with_session_timeout_ms(millis(config.session_timeout))
            .with_rebalance_timeout_ms(millis(config.rebalance_timeout))
            .with_member_id(text(&member_id))
            .with_protocol_type(text(PROTOCOL_TYPE))
            .with_protocols(protocols.clone());
        // The coordinator holds JoinGroup until every member has joined.
        let wait = config.rebalance_timeout + client.config().request_timeout;
        let joined: JoinGroupResponse = coordinator.call_timeout(&request, wait).await?;
        match joined.error_code {
            0 => {}
            MEMBER_ID_REQUIRED => {
                member_id = joined.member_id.to_string();
                continue;
            }
            UNKNOWN_MEMBER_ID => {
                member_id.clear();
                continue;
            }
            code if code == NOT_COORDINATOR || code == COORDINATOR_NOT_AVAILABLE => {
                tokio::time::sleep(client.config().retry_backoff).await;
                continue;
            }
            code => return Err(Error::kafka(code, format!("joining group {}", config.group_id))),
        }
        member_id = joined.member_id.to_string();
        let protocol = agreed_assignor(config, &joined)?;
        let assignments = if joined.leader == joined.member_id {
            leader_assignments(client, &joined, protocol).await?
        } else {
            Vec::new()
        };
        let sync = SyncGroupRequest::default()
            .with_group_id(GroupId(text(&config.group_id)))
            .with_generation_id(joined.generation_id)
            .with_member_id(text(&member_id))
            .with_protocol_type(Some(text(PROTOCOL_TYPE)))
            .with_protocol_name(joined.protocol_name.clone())
            .with_assignments(assignments);
        let synced: SyncGroupResponse = coordinator.call_timeout(&sync, wait).await?;
        match synced.error_code {
            0 => {}
            REBALANCE_IN_PROGRESS | ILLEGAL_GENERATION | UNKNOWN_MEMBER_ID => continue,
            code => return Err(Error::kafka(code, format!("syncing group {}", config.group_id))),
        }
        let partitions = decode_assignment(&synced.assignment)?;
        let rejoin = Arc::new(AtomicBool::new(false));
        let heartbeat = tokio::spawn(heartbeat_loop(
            coordinator.clone(),
            config.clone(),
            member_id.clone(),
            joined.generation_id,
            rejoin.clone(),
        ));
        let generation = joined.generation_id;
        let member = Member { member_id, generation, protocol, coordinator, rejoin, heartbeat };
        return Ok((member, partitions));
    }
    Err(Error::kafka(REBALANCE_IN_PROGRESS, format!("joining group {}", config.group_id)))
}

/// JoinGroup's protocols: each configured assignor, in preference order, with the same
/// subscription.
fn offered_protocols(
    config: &GroupConfig,
    join_as: &JoinAs<'_>,
) -> Result<Vec<JoinGroupRequestProtocol>> {
    if config.assignors.is_empty() {
        return Err(Error::Config("GroupConfig::assignors lists no assignor".into()));
    }
    let metadata = encode_subscription(join_as.topics, join_as.owned, join_as.generation)?;
    let protocols = config.assignors.iter().map(|assignor| {
        JoinGroupRequestProtocol::default()
            .with_name(text(assignor.name()))
            .with_metadata(metadata.clone())
    });
    Ok(protocols.collect())
}

/// The assignor the coordinator picked: one this member offered.
fn agreed_assignor(config: &GroupConfig, joined: &JoinGroupResponse) -> Result<Assignor> {
    let name = joined.protocol_name.as_ref().map_or("", |name| name.as_str());
    match name.parse::<Assignor>() {
        Ok(assignor) if config.assignors.contains(&assignor) => Ok(assignor),
        _ => Err(Error::Protocol(format!(
            "group {} picked assignor {name:?}, which this member did not offer",
            config.group_id
        ))),
    }
}

/// The leader's work: every member's assignment by the agreed assignor.
async fn leader_assignments(
    client: &Client,
    joined: &JoinGroupResponse,
    protocol: Assignor,
) -> Result<Vec<SyncGroupRequestAssignment>> {
    let mut subscriptions: BTreeMap<String, Subscription> = BTreeMap::new();
    for member in &joined.members {
        subscriptions.insert(member.member_id.to_string(), decode_subscription(&member.metadata)?);
    }
    let mut partition_counts: BTreeMap<String, i32> = BTreeMap::new();
    for topic in subscriptions.values().flat_map(|s| &s.topics) {
        if partition_counts.contains_key(topic) {
            continue;
        }
        match client.topic(topic, false).await {
            Ok(metadata) => {
                partition_counts.insert(topic.clone(), metadata.partitions.len() as i32);
            }
            Err(Error::UnknownTopic(_)) => {}
            Err(error) => return Err(error),
        }
    }
    let assigned = match protocol {
        Assignor::Range => {
            let topics = subscriptions.into_iter().map(|(m, s)| (m, s.topics)).collect();
            assignor::assign_range(&topics, &partition_counts)
        }
        Assignor::CooperativeSticky => {
            let sticky = assignor::assign_cooperative_sticky(&subscriptions, &partition_counts);
            for (member, withheld) in &sticky.withheld {
                tracing::debug!(member, ?withheld, "withheld until their owner revokes them");
            }
            sticky.assigned
        }
    };
    assigned
        .into_iter()
        .map(|(member, partitions)| {
            Ok(SyncGroupRequestAssignment::default()
                .with_member_id(text(&member))
                .with_assignment(encode_assignment(&partitions)?))
        })
        .collect()
}

fn encode_subscription(
    topics: &[String],
    owned: &[TopicPartition],
    generation: i32,
) -> Result<Bytes> {
    let owned = by_topic(owned.iter().map(|tp| (tp.topic.clone(), tp.partition)));
    let subscription = ConsumerProtocolSubscription::default()
        .with_topics(topics.iter().map(|t| text(t)).collect())
        .with_owned_partitions(
            owned
                .into_iter()
                .map(|(topic, partitions)| {
                    OwnedTopic::default().with_topic(topic).with_partitions(partitions)
                })
                .collect(),
        )
        .with_generation_id(generation);
    let mut buf = BytesMut::new();
    buf.put_i16(SUBSCRIPTION_VERSION);
    subscription.encode(&mut buf, SUBSCRIPTION_VERSION).map_err(Error::protocol)?;
    Ok(buf.freeze())
}

fn decode_subscription(metadata: &Bytes) -> Result<Subscription> {
    let mut buf = metadata.clone();
    if buf.len() < 2 {
        return Err(Error::Protocol("a subscription shorter than its version".to_string()));
    }
    let version = i16::from_be_bytes([buf[0], buf[1]]);
    let _ = buf.split_to(2);
    // A newer member's subscription starts with the fields of the versions we know.
    let version = version.clamp(0, 3);
    let subscription =
        ConsumerProtocolSubscription::decode(&mut buf, version).map_err(Error::protocol)?;
    let owned: Vec<Tp> = subscription
        .owned_partitions
        .iter()
        .flat_map(|t| t.partitions.iter().map(|&p| (t.topic.0.to_string(), p)))
        .collect();
    Ok(Subscription {
        topics: subscription.topics.iter().map(|t| t.to_string()).collect(),
        owned,
        // Before v2 the generation is not sent: an unknown, oldest claim.
        generation: if version >= 2 { subscription.generation_id } else { -1 },
    })
}

fn encode_assignment(partitions: &[Tp]) -> Result<Bytes> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in partitions {
        by_topic.entry(topic).or_default().push(*partition);
    }
    let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
        by_topic
            .into_iter()
            .map(|(topic, partitions)| {
                AssignedTopic::default()
                    .with_topic(TopicName(text(topic)))
                    .with_partitions(partitions)
            })
            .collect(),
    );
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    assignment.encode(&mut buf, 0).map_err(Error::protocol)?;
    Ok(buf.freeze())
}

fn decode_assignment(data: &Bytes) -> Result<Vec<TopicPartition>> {
    // An empty assignment (a member the leader gave nothing) may come as no bytes at all.
    if data.len() < 2 {
        return Ok(Vec::new());
    }
    let version = i16::from_be_bytes([data[0], data[1]]);
    let mut buf = data.slice(2..);
    let assignment = ConsumerProtocolAssignment::decode(&mut buf, version.clamp(0, 3))
        .map_err(Error::protocol)?;
    let mut partitions: Vec<TopicPartition> = assignment
        .assigned_partitions
        .iter()
        .flat_map(|t| t.partitions.iter().map(|&p| TopicPartition::new(t.topic.0.as_str(), p)))
        .collect();
    partitions.sort();
    Ok(partitions)
}

async fn heartbeat_loop(
    coordinator: Connection,
    config: GroupConfig,
    member_id: String,
    generation: i32,
    rejoin: Arc<AtomicBool>,
) {
    let request = HeartbeatRequest::default()
        .with_group_id(GroupId(text(&config.group_id)))
        .with_generation_id(generation)
        .with_member_id(text(&member_id));
    loop {
        tokio::time::sleep(config.heartbeat_interval).await;
        let answer: Result<HeartbeatResponse> = coordinator.call(&request).await;
        match answer {
            Ok(response) if response.error_code == 0 => {}
            Ok(response) => {
                tracing::debug!(code = response.error_code, "heartbeat refused: rejoining");
                rejoin.store(true, Ordering::Release);
                return;
            }
            Err(error) => {
                tracing::debug!(%error, "heartbeat failed: rejoining");
                rejoin.store(true, Ordering::Release);
                return;
            }
        }
    }
}

/// Leaves the group (LeaveGroup), so the others rebalance at once instead of after the
/// session timeout.
pub(crate) async fn leave(group: &str, member: &Member) -> Result<()> {
    member.heartbeat.abort();
    let request = LeaveGroupRequest::default()
        .with_group_id(GroupId(text(group)))
        .with_member_id(text(&member.member_id));
    let response: LeaveGroupResponse = member.coordinator.call(&request).await?;
    match response.error_code {
        0 | UNKNOWN_MEMBER_ID => Ok(()),
        code => Err(Error::kafka(code, format!("leaving group {group}"))),
    }
}

/// Commits `offsets` for the group; as a member of `generation` when given, else as a
/// simple consumer (generation -1, no member id).
pub(crate) async fn commit(
    client: &Client,
    group: &str,
    membership: Option<(&str, i32, &Connection)>,
    offsets: &[(TopicPartition, i64)],
) -> Result<()> {
    let topics = by_topic(offsets.iter().map(|(tp, offset)| {
        let partition = OffsetCommitRequestPartition::default()
            .with_partition_index(tp.partition)
            .with_committed_offset(*offset)
            .with_committed_leader_epoch(-1)
            .with_committed_metadata(Some(StrBytes::from_static_str("")));
        (tp.topic.clone(), partition)
    }));
    let topics: Vec<OffsetCommitRequestTopic> = topics
        .into_iter()
        .map(|(name, list)| {
            OffsetCommitRequestTopic::default().with_name(name).with_partitions(list)
        })
        .collect();
    let (member_id, generation) = membership.map_or(("", -1), |(m, g, _)| (m, g));
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(text(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(text(member_id))
        .with_retention_time_ms(-1)
        .with_topics(topics);
    let connection = match membership {
        Some((_, _, connection)) if !connection.is_closed() => connection.clone(),
        _ => coordinator(client, group).await?,
    };
    let response: OffsetCommitResponse = connection.call(&request).await?;
    for topic in &response.topics {
        for partition in &topic.partitions {
            if partition.error_code != 0 {
                let context = format!(
                    "committing {}-{} for group {group}",
                    topic.name.0.as_str(),
                    partition.partition_index
                );
                return Err(Error::kafka(partition.error_code, context));
            }
        }
    }
    Ok(())
}

/// The group's committed offsets of `partitions` (`None` where nothing is committed).
pub(crate) async fn committed(
    client: &Client,
    group: &str,
    partitions: &[TopicPartition],
) -> Result<Vec<(TopicPartition, Option<i64>)>> {
    let topics = by_topic(partitions.iter().map(|tp| (tp.topic.clone(), tp.partition)));
    let topics: Vec<OffsetFetchRequestTopic> = topics
        .into_iter()
        .map(|(name, list)| {
            OffsetFetchRequestTopic::default().with_name(name).with_partition_indexes(list)
        })
        .collect();
    let response = fetch_offsets(client, group, Some(topics)).await?;
    let mut found = Vec::with_capacity(partitions.len());
    for tp in partitions {
        let answer = response
            .topics
            .iter()
            .filter(|t| t.name.0.as_str() == &*tp.topic)
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == tp.partition);
        let offset = match answer {
            Some(p) if p.error_code != 0 => {
                let context = format!("offset of {}-{} for {group}", tp.topic, tp.partition);
                return Err(Error::kafka(p.error_code, context));
            }
            Some(p) if p.committed_offset >= 0 => Some(p.committed_offset),
            _ => None,
        };
        found.push((tp.clone(), offset));
    }
    Ok(found)
}

/// OffsetFetch of `topics` (all when `None`, which needs v2) from the group's coordinator,
/// retried while the coordinator loads or moves.
async fn fetch_offsets(
    client: &Client,
    group: &str,
    topics: Option<Vec<OffsetFetchRequestTopic>>,
) -> Result<OffsetFetchResponse> {
    let all = topics.is_none();
    let request =
        OffsetFetchRequest::default().with_group_id(GroupId(text(group))).with_topics(topics);
    for _ in 0..METADATA_ATTEMPTS_MAX {
        let connection = coordinator(client, group).await?;
        if all && connection.version::<OffsetFetchRequest>()? < 2 {
            return Err(Error::UnsupportedApi { addr: connection.addr(), api_key: 9 });
        }
        let response: OffsetFetchResponse = connection.call(&request).await?;
        if response.error_code == 0 {
            return Ok(response);
        }
        let error = Error::kafka(response.error_code, format!("offsets of group {group}"));
        if !error.is_retriable() && response.error_code != COORDINATOR_NOT_AVAILABLE {
            return Err(error);
        }
        tokio::time::sleep(client.config().retry_backoff).await;
    }
    Err(Error::kafka(KafkaCode::COORDINATOR_LOAD_IN_PROGRESS.0, format!("offsets of {group}")))
}

/// Every committed offset of a group, by topic and partition (OffsetFetch of all topics).
pub(crate) async fn all_committed(
    client: &Client,
    group: &str,
) -> Result<Vec<(TopicPartition, i64)>> {
    let response = fetch_offsets(client, group, None).await?;
    let mut found: Vec<(TopicPartition, i64)> = response
        .topics
        .iter()
        .flat_map(|t| {
            let name = t.name.0.as_str();
            t.partitions
                .iter()
                .filter(|p| p.error_code == 0 && p.committed_offset >= 0)
                .map(move |p| (TopicPartition::new(name, p.partition_index), p.committed_offset))
        })
        .collect();
    found.sort();
    Ok(found)
}

/// The partitions in a member's assignment as DescribeGroups reports it (empty when the
/// group's protocol is not the consumer protocol or the bytes do not decode).
pub(crate) fn assignment_partitions(data: &Bytes) -> Vec<TopicPartition> {
    decode_assignment(data).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_and_assignments_round_trip_with_their_version_prefix() {
        let topics = vec!["a".to_string(), "b".to_string()];
        let owned = [TopicPartition::new("b", 3), TopicPartition::new("a", 1)];
        let encoded = encode_subscription(&topics, &owned, 7).unwrap();
        assert_eq!(&encoded[..2], &[0, 2], "version 2");
        let expected = Subscription {
            topics: topics.clone(),
            owned: vec![("b".to_string(), 3), ("a".to_string(), 1)],
            generation: 7,
        };
        assert_eq!(decode_subscription(&encoded).unwrap(), expected);
        // A v0 subscription (an older client) owns nothing, in no generation.
        let mut v0 = BytesMut::new();
        v0.put_i16(0);
        let plain = ConsumerProtocolSubscription::default().with_topics(vec![text("a")]);
        plain.encode(&mut v0, 0).unwrap();
        let decoded = decode_subscription(&v0.freeze()).unwrap();
        let expected =
            Subscription { topics: vec!["a".to_string()], owned: vec![], generation: -1 };
        assert_eq!(decoded, expected);
        let assigned = vec![("b".to_string(), 2), ("a".to_string(), 0), ("b".to_string(), 1)];
        let decoded = decode_assignment(&encode_assignment(&assigned).unwrap()).unwrap();
        let expected =
            [TopicPartition::new("a", 0), TopicPartition::new("b", 1), TopicPartition::new("b", 2)];
        assert_eq!(decoded, expected);
        assert!(decode_assignment(&Bytes::new()).unwrap().is_empty());
    }
}
