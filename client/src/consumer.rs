//! [`Consumer`] with assigned partitions: poll, seek, auto offset reset, long-poll fetch.
//!
//! `poll` fetches from every assigned partition's leader at once (one Fetch per broker,
//! sessionless, so any Kafka 3.x broker serves it), checks and decodes every batch
//! (CRC-32C, then decompression; a bad batch is an error, never records), and advances
//! each partition's position past the batches it read. A partition without a position
//! asks ListOffsets for the earliest or latest offset, as `auto_offset_reset` says; so does
//! one whose position fell out of range. Leader errors refresh the metadata and the
//! partition is fetched again on the next round.
//!
//! With a group (`ConsumerConfig::group`), a consumer may instead `subscribe`: `poll` then
//! joins the group (the classic protocol, with the assignors of `GroupConfig::assignors`),
//! starts where the group committed, and rejoins when a heartbeat says the group is
//! rebalancing. Commits go to the group's coordinator, as a member or, with `assign`, as a
//! simple consumer.
//!
//! How a rebalance goes depends on the assignor the group agreed on. Under `range` it is
//! eager: the member gives up every partition before it rejoins and starts every partition
//! of the new assignment from the group's commits. Under `cooperative-sticky` it is
//! incremental (KIP-429): the member keeps its partitions and their positions through
//! JoinGroup and SyncGroup, tells the group what it owns, then revokes only the partitions
//! no longer assigned (committing their positions first) and rejoins at once if it revoked
//! any, so that the group's next generation can hand them to their new owners.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::batch::{self, ConsumerRecord};
use crate::client::Client;
use crate::error::{Error, KafkaCode, Result};
use crate::group::{self, GroupConfig, Member};

/// Where a partition without a valid position starts (`auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// At the log start offset.
    Earliest,
    /// At the log end offset: only records written from now on.
    #[default]
    Latest,
    /// Nowhere: `poll` fails with `Error::NoOffset` until the partition is sought.
    None,
}

/// The consumer's settings, named after the Java client's.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Where a partition without a position starts.
    pub auto_offset_reset: OffsetReset,
    /// How long the broker may hold a fetch for `fetch_min_bytes` (`fetch.max.wait.ms`).
    pub fetch_max_wait: Duration,
    /// The bytes a fetch waits for (`fetch.min.bytes`).
    pub fetch_min_bytes: i32,
    /// The most bytes one fetch answer carries (`fetch.max.bytes`).
    pub fetch_max_bytes: i32,
    /// The most bytes per partition in one answer (`max.partition.fetch.bytes`).
    pub partition_fetch_max_bytes: i32,
    /// The consumer group, for `subscribe` and commits (`group.id` and its timings).
    pub group: Option<GroupConfig>,
}

impl Default for ConsumerConfig {
    fn default() -> ConsumerConfig {
        ConsumerConfig {
            auto_offset_reset: OffsetReset::Latest,
            fetch_max_wait: Duration::from_millis(500),
            fetch_min_bytes: 1,
            fetch_max_bytes: 50 << 20,
            partition_fetch_max_bytes: 1 << 20,
            group: None,
        }
    }
}

/// A topic and partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
}

impl TopicPartition {
    /// `topic`-`partition`.
    pub fn new(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition { topic: Arc::from(topic), partition }
    }
}

/// `items` grouped by topic, topics in the order they first appear: the shape of every
/// Kafka request that lists partitions under their topics.
pub(crate) fn by_topic<T>(
    items: impl IntoIterator<Item = (Arc<str>, T)>,
) -> Vec<(TopicName, Vec<T>)> {
    let mut groups: Vec<(Arc<str>, Vec<T>)> = Vec::new();
    for (topic, item) in items {
        match groups.iter_mut().find(|(t, _)| *t == topic) {
            Some((_, list)) => list.push(item),
            None => groups.push((topic, vec![item])),
        }
    }
    groups
        .into_iter()
        .map(|(topic, list)| (TopicName(StrBytes::from_string(topic.to_string())), list))
        .collect()
}

/// What a seek asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekTo {
    /// An offset.
    Offset(i64),
    /// The log start offset.
    Beginning,
    /// The log end offset.
    End,
}

/// How a rebalance hands partitions over: decided by the group's agreed assignor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebalanceProtocol {
    /// Every member gives up all its partitions before it rejoins (`range`).
    Eager,
    /// Members keep their partitions and give up only those that move (KIP-429,
    /// `cooperative-sticky`).
    Cooperative,
}

/// A change of a subscribed consumer's partitions, told to the rebalance listener.
///
/// Under [`RebalanceProtocol::Eager`], `Revoked` lists every partition the consumer held
/// and `Assigned` its whole new assignment. Under [`RebalanceProtocol::Cooperative`] both
/// are increments: `Revoked` lists only the partitions that move away, `Assigned` only the
/// new ones (possibly none); [`Consumer::assignment`] has the whole set.
///
/// ```
/// use cairn_client::{Rebalance, RebalanceProtocol, TopicPartition};
/// let event = Rebalance::Revoked {
///     partitions: vec![TopicPartition::new("demo", 2)],
///     protocol: RebalanceProtocol::Cooperative,
/// };
/// assert_eq!(event.partitions().len(), 1);
/// assert_eq!(event.protocol(), RebalanceProtocol::Cooperative);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebalance {
    /// These partitions are taken away; their positions were committed first when
    /// `GroupConfig::commit_on_revoke` is set.
    Revoked {
        /// The partitions given up.
        partitions: Vec<TopicPartition>,
        /// Eager (all of them) or cooperative (only those that move).
        protocol: RebalanceProtocol,
    },
    /// These partitions are now this consumer's.
    Assigned {
        /// The partitions added (cooperative) or the whole assignment (eager).
        partitions: Vec<TopicPartition>,
        /// Eager or cooperative.
        protocol: RebalanceProtocol,
    },
}

impl Rebalance {
    /// The partitions the event is about.
    pub fn partitions(&self) -> &[TopicPartition] {
        match self {
            Rebalance::Revoked { partitions, .. } | Rebalance::Assigned { partitions, .. } => {
                partitions
            }
        }
    }

    /// Whether the rebalance was eager or cooperative.
    pub fn protocol(&self) -> RebalanceProtocol {
        match self {
            Rebalance::Revoked { protocol, .. } | Rebalance::Assigned { protocol, .. } => *protocol,
        }
    }
}

/// A callback for rebalances (Kafka's `ConsumerRebalanceListener`).
pub type RebalanceListener = Box<dyn FnMut(&Rebalance) + Send>;

/// A consumer of assigned partitions, or of a group's share of subscribed topics.
///
/// ```no_run
/// # async fn run() -> cairn_client::Result<()> {
/// use std::time::Duration;
/// use cairn_client::{Client, ClientConfig, Consumer, ConsumerConfig, OffsetReset};
/// let client = Client::connect(ClientConfig::new("127.0.0.1:9092")).await?;
/// let config = ConsumerConfig { auto_offset_reset: OffsetReset::Earliest, ..Default::default() };
/// let mut consumer = Consumer::new(&client, config);
/// consumer.assign_topic("demo").await?;
/// for record in consumer.poll(Duration::from_secs(1)).await? {
///     println!("{}-{}@{}: {:?}", record.topic, record.partition, record.offset, record.value);
/// }
/// # Ok(()) }
/// ```
pub struct Consumer {
    client: Client,
    config: ConsumerConfig,
    assignment: Vec<TopicPartition>,
    /// The next offset to read per partition; missing until reset or sought.
    positions: HashMap<TopicPartition, i64>,
    /// Partitions sought to the beginning or end, resolved on the next poll.
    pending_seeks: HashMap<TopicPartition, SeekTo>,
    /// The subscribed topics (empty: partitions are assigned by hand).
    subscription: Vec<String>,
    member: Option<Member>,
    /// The member id of the last generation, to rejoin as the same member.
    member_id: String,
    /// The generation the assignment came from (-1 before the first), sent with the owned
    /// partitions so the leader can tell a stale claim from a current one.
    generation: i32,
    /// How the assignment held now was given: a cooperative member keeps it through the
    /// next rebalance, an eager one gives it all up first.
    held_protocol: RebalanceProtocol,
    /// Only ever called through `&mut self`, so the lock is never contended (`get_mut`); it
    /// is there so that the consumer is `Sync` with a listener that is only `Send`, and
    /// `&self` methods such as `committed` can be awaited in a spawned task.
    listener: Option<std::sync::Mutex<RebalanceListener>>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("assignment", &self.assignment)
            .field("subscription", &self.subscription)
            .field("member_id", &self.member_id)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// A consumer with nothing assigned.
    pub fn new(client: &Client, config: ConsumerConfig) -> Consumer {
        Consumer {
            client: client.clone(),
            config,
            assignment: Vec::new(),
            positions: HashMap::new(),
            pending_seeks: HashMap::new(),
            subscription: Vec::new(),
            member: None,
            member_id: String::new(),
            generation: -1,
            held_protocol: RebalanceProtocol::Eager,
            listener: None,
        }
    }

    /// Reads the group's share of these topics: the next `poll` joins the group. Needs
    /// `ConsumerConfig::group`.
    pub fn subscribe(&mut self, topics: &[&str]) -> Result<()> {
        if self.config.group.is_none() {
            return Err(Error::Config("subscribe needs a group: set ConsumerConfig::group".into()));
        }
        self.subscription = topics.iter().map(|t| t.to_string()).collect();
        if let Some(member) = &self.member {
            member.rejoin.store(true, std::sync::atomic::Ordering::Release);
        }
        Ok(())
    }

    /// Calls `listener` on every rebalance of a subscribed consumer.
    ///
    /// ```no_run
    /// # async fn run() -> cairn_client::Result<()> {
    /// use cairn_client::*;
    /// let client = Client::connect(ClientConfig::new("127.0.0.1:9092")).await?;
    /// let mut group = GroupConfig::new("billing");
    /// group.assignors = vec![Assignor::CooperativeSticky];
    /// let mut consumer =
    ///     Consumer::new(&client, ConsumerConfig { group: Some(group), ..Default::default() });
    /// consumer.set_rebalance_listener(Box::new(|event| match event {
    ///     Rebalance::Revoked { partitions, protocol: RebalanceProtocol::Cooperative } => {
    ///         println!("giving up only {partitions:?}")
    ///     }
    ///     other => println!("{other:?}"),
    /// }));
    /// consumer.subscribe(&["payments"])?;
    /// consumer.poll(std::time::Duration::from_secs(1)).await?;
    /// # Ok(()) }
    /// ```
    pub fn set_rebalance_listener(&mut self, listener: RebalanceListener) {
        self.listener = Some(std::sync::Mutex::new(listener));
    }

    /// This member's id and generation in its group, once it joined.
    pub fn membership(&self) -> Option<(&str, i32)> {
        self.member.as_ref().map(|m| (m.member_id.as_str(), m.generation))
    }

    /// Commits the current positions of every assigned partition and waits for the answer.
    pub async fn commit_sync(&mut self) -> Result<()> {
        let offsets: Vec<(TopicPartition, i64)> = self
            .assignment
            .iter()
            .filter_map(|tp| self.positions.get(tp).map(|&offset| (tp.clone(), offset)))
            .collect();
        self.commit_offsets_sync(&offsets).await
    }

    /// Commits these offsets (the next offset to read, per partition) and waits.
    pub async fn commit_offsets_sync(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<()> {
        let result = self.commit_task(offsets.to_vec())?.await;
        let result = result.map_err(|e| Error::Protocol(e.to_string()))?;
        if let Err(Error::Kafka { code, .. }) = &result {
            // The generation is over: rejoin on the next poll.
            if matches!(code.0, 22 | 25 | 27)
                && let Some(member) = &self.member
            {
                member.rejoin.store(true, std::sync::atomic::Ordering::Release);
            }
        }
        result
    }

    /// Commits the current positions without waiting; the handle gives the outcome.
    pub fn commit_async(&self) -> Result<tokio::task::JoinHandle<Result<()>>> {
        let offsets: Vec<(TopicPartition, i64)> = self
            .assignment
            .iter()
            .filter_map(|tp| self.positions.get(tp).map(|&offset| (tp.clone(), offset)))
            .collect();
        self.commit_task(offsets)
    }

    fn commit_task(
        &self,
        offsets: Vec<(TopicPartition, i64)>,
    ) -> Result<tokio::task::JoinHandle<Result<()>>> {
        let group = self.group_id()?.to_string();
        let client = self.client.clone();
        let membership = self
            .member
            .as_ref()
            .map(|m| (m.member_id.clone(), m.generation, m.coordinator.clone()));
        Ok(tokio::spawn(async move {
            let membership = membership.as_ref().map(|(m, g, c)| (m.as_str(), *g, c));
            group::commit(&client, &group, membership, &offsets).await
        }))
    }

    /// The group's committed offsets of these partitions (`None` where none is).
    pub async fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, Option<i64>)>> {
        group::committed(&self.client, self.group_id()?, partitions).await
    }

    /// Leaves the group, if this consumer is a member, so the others take over at once.
    pub async fn close(mut self) -> Result<()> {
        match (self.member.take(), &self.config.group) {
            (Some(member), Some(group)) => group::leave(&group.group_id, &member).await,
            _ => Ok(()),
        }
    }

    fn group_id(&self) -> Result<&str> {
        self.config
            .group
            .as_ref()
            .map(|g| g.group_id.as_str())
            .ok_or_else(|| Error::Config("commits need a group: set ConsumerConfig::group".into()))
    }

    /// Joins (or rejoins) the group when subscribed and not a member of a live generation.
    async fn maintain_group(&mut self) -> Result<()> {
        if self.subscription.is_empty() {
            return Ok(());
        }
        let current = self.member.as_ref();
        if current.is_some_and(|m| !m.rejoin.load(std::sync::atomic::Ordering::Acquire)) {
            return Ok(());
        }
        let group = self.config.group.clone().expect("subscribe checks for a group");
        if self.held_protocol == RebalanceProtocol::Eager {
            self.revoke(self.assignment.clone(), RebalanceProtocol::Eager).await;
        }
        self.member = None;
        let join_as = group::JoinAs {
            member_id: &self.member_id,
            topics: &self.subscription,
            owned: &self.assignment,
            generation: self.generation,
        };
        let (member, partitions) = group::join(&self.client, &group, &join_as).await?;
        self.member_id = member.member_id.clone();
        self.generation = member.generation;
        let cooperative = member.protocol.is_cooperative();
        self.member = Some(member);
        if cooperative {
            self.take_increment(partitions).await;
        } else {
            // Eager: whatever is still held (kept from a cooperative generation when the
            // group fell back to range) goes, and everything starts from the commits.
            self.revoke(self.assignment.clone(), RebalanceProtocol::Eager).await;
            self.positions.clear();
            self.pending_seeks.clear();
            self.assignment = partitions.clone();
            self.held_protocol = RebalanceProtocol::Eager;
            let partitions = Rebalance::Assigned { partitions, protocol: RebalanceProtocol::Eager };
            self.tell(&partitions);
        }
        Ok(())
    }

    /// KIP-429 after SyncGroup: revoke only what is no longer assigned, keep the rest with
    /// its position, add what is new, and rejoin at once if anything was revoked so that
    /// the group can give it to its new owner.
    async fn take_increment(&mut self, partitions: Vec<TopicPartition>) {
        let protocol = RebalanceProtocol::Cooperative;
        let revoked: Vec<TopicPartition> =
            self.assignment.iter().filter(|tp| !partitions.contains(tp)).cloned().collect();
        let added: Vec<TopicPartition> =
            partitions.iter().filter(|tp| !self.assignment.contains(tp)).cloned().collect();
        let rejoin = !revoked.is_empty();
        self.revoke(revoked, protocol).await;
        // The kept partitions keep their positions; the added ones start from the commits.
        self.assignment = partitions;
        self.held_protocol = protocol;
        self.tell(&Rebalance::Assigned { partitions: added, protocol });
        if rejoin && let Some(member) = &self.member {
            member.rejoin.store(true, std::sync::atomic::Ordering::Release);
        }
    }

    /// Gives up `partitions`: commits their positions first (when configured and a member),
    /// tells the listener, and forgets their positions.
    async fn revoke(&mut self, partitions: Vec<TopicPartition>, protocol: RebalanceProtocol) {
        if partitions.is_empty() {
            return;
        }
        let group = self.config.group.as_ref().expect("only a group member revokes");
        if group.commit_on_revoke
            && let Some(member) = &self.member
        {
            let offsets: Vec<(TopicPartition, i64)> = partitions
                .iter()
                .filter_map(|tp| self.positions.get(tp).map(|&offset| (tp.clone(), offset)))
                .collect();
            if !offsets.is_empty() {
                let membership =
                    (member.member_id.as_str(), member.generation, &member.coordinator);
                let committed =
                    group::commit(&self.client, &group.group_id, Some(membership), &offsets).await;
                if let Err(error) = committed {
                    tracing::info!(%error, "commit before revoking failed");
                }
            }
        }
        self.tell(&Rebalance::Revoked { partitions: partitions.clone(), protocol });
        self.assignment.retain(|tp| !partitions.contains(tp));
        self.positions.retain(|tp, _| !partitions.contains(tp));
        self.pending_seeks.retain(|tp, _| !partitions.contains(tp));
    }

    fn tell(&mut self, event: &Rebalance) {
        if let Some(listener) = &mut self.listener {
            // Poisoned only if the listener panicked before, and that panic went through
            // the caller of `poll`: the listener is still the caller's to call.
            let listener = listener.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
            listener(event);
        }
    }

    /// Reads these partitions from now on (and only these). Positions of partitions kept
    /// are kept.
    pub fn assign(&mut self, partitions: Vec<TopicPartition>) {
        self.positions.retain(|tp, _| partitions.contains(tp));
        self.pending_seeks.retain(|tp, _| partitions.contains(tp));
        self.assignment = partitions;
    }

    /// Assigns every partition of `topic`.
    pub async fn assign_topic(&mut self, topic: &str) -> Result<()> {
        let metadata = self.client.topic(topic, false).await?;
        let mut partitions = self.assignment.clone();
        for p in &metadata.partitions {
            let tp = TopicPartition { topic: metadata.name.clone(), partition: p.partition };
            if !partitions.contains(&tp) {
                partitions.push(tp);
            }
        }
        self.assign(partitions);
        Ok(())
    }

    /// The assigned partitions.
    pub fn assignment(&self) -> &[TopicPartition] {
        &self.assignment
    }

    /// The next offset `poll` reads from a partition, if it has one yet.
    pub fn position(&self, partition: &TopicPartition) -> Option<i64> {
        self.positions.get(partition).copied()
    }

    /// Moves a partition's position. `Beginning` and `End` are resolved on the next poll.
    pub fn seek(&mut self, partition: &TopicPartition, to: SeekTo) -> Result<()> {
        if !self.assignment.contains(partition) {
            return Err(Error::Config(format!(
                "{}-{} is not assigned: assign it before seeking",
                partition.topic, partition.partition
            )));
        }
        match to {
            SeekTo::Offset(offset) => {
                self.pending_seeks.remove(partition);
                self.positions.insert(partition.clone(), offset);
            }
            other => {
                self.positions.remove(partition);
                self.pending_seeks.insert(partition.clone(), other);
            }
        }
        Ok(())
    }

    /// Waits up to `timeout` for records and returns those of the first fetch round that
    /// has any (an empty batch when the time ran out).
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        let deadline = Instant::now() + timeout;
        loop {
            self.maintain_group().await?;
            self.resolve_positions().await?;
            let left = deadline.saturating_duration_since(Instant::now());
            let wait = self.config.fetch_max_wait.min(left);
            let records = self.fetch_round(wait).await?;
            if !records.is_empty() || Instant::now() >= deadline {
                return Ok(records);
            }
        }
    }

    /// Gives every assigned partition without a position one, by its pending seek or the
    /// reset policy.
    async fn resolve_positions(&mut self) -> Result<()> {
        let unplaced: Vec<TopicPartition> = self
            .assignment
            .iter()
            .filter(|tp| !self.positions.contains_key(*tp) && !self.pending_seeks.contains_key(*tp))
            .cloned()
            .collect();
        if let Some(group) = &self.config.group
            && !unplaced.is_empty()
        {
            let committed = group::committed(&self.client, &group.group_id, &unplaced).await?;
            for (tp, offset) in committed {
                if let Some(offset) = offset {
                    self.positions.insert(tp, offset);
                }
            }
        }
        let mut wanted: Vec<(TopicPartition, i64)> = Vec::new();
        for tp in &self.assignment {
            if self.positions.contains_key(tp) {
                continue;
            }
            let to = match self.pending_seeks.get(tp) {
                Some(seek) => *seek,
                None => match self.config.auto_offset_reset {
                    OffsetReset::Earliest => SeekTo::Beginning,
                    OffsetReset::Latest => SeekTo::End,
                    OffsetReset::None => {
                        return Err(Error::NoOffset {
                            topic: tp.topic.to_string(),
                            partition: tp.partition,
                        });
                    }
                },
            };
            // ListOffsets' special timestamps: -2 the earliest offset, -1 the latest.
            let timestamp = if to == SeekTo::Beginning { -2 } else { -1 };
            wanted.push((tp.clone(), timestamp));
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let found = list_offsets(&self.client, &wanted).await?;
        for (tp, offset) in found {
            self.pending_seeks.remove(&tp);
            self.positions.insert(tp, offset);
        }
        Ok(())
    }

    async fn fetch_round(&mut self, wait: Duration) -> Result<Vec<ConsumerRecord>> {
        let mut by_leader: HashMap<i32, Vec<(TopicPartition, i64)>> = HashMap::new();
        for tp in &self.assignment {
            let Some(&offset) = self.positions.get(tp) else { continue };
            match self.client.leader(&tp.topic, tp.partition).await {
                Ok(leader) => by_leader.entry(leader).or_default().push((tp.clone(), offset)),
                Err(error) if error.is_retriable() => {
                    tracing::debug!(%error, "no leader for {}-{}", tp.topic, tp.partition);
                }
                Err(error) => return Err(error),
            }
        }
        if by_leader.is_empty() {
            tokio::time::sleep(self.client.config().retry_backoff.min(wait)).await;
            return Ok(Vec::new());
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (leader, partitions) in by_leader {
            let client = self.client.clone();
            let request = fetch_request(&self.config, &partitions, wait);
            tasks.spawn(async move {
                let answer = async {
                    let connection = client.broker(leader).await?;
                    connection.call::<FetchRequest>(&request).await
                };
                (partitions, answer.await)
            });
        }
        let mut records = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let (partitions, answer) = joined.map_err(|e| Error::Protocol(e.to_string()))?;
            match answer {
                Ok(response) => self.handle_fetch(&partitions, response, &mut records)?,
                Err(error) if error.is_retriable() => {
                    tracing::debug!(%error, "fetch failed; refreshing metadata");
                    for (tp, _) in &partitions {
                        self.client.invalidate(&tp.topic);
                    }
                    tokio::time::sleep(self.client.config().retry_backoff).await;
                }
                Err(error) => return Err(error),
            }
        }
        Ok(records)
    }

    fn handle_fetch(
        &mut self,
        asked: &[(TopicPartition, i64)],
        response: FetchResponse,
        records: &mut Vec<ConsumerRecord>,
    ) -> Result<()> {
        if response.error_code != 0 {
            let error = Error::kafka(response.error_code, "fetch");
            if !error.is_retriable() {
                return Err(error);
            }
            return Ok(());
        }
        for topic in response.responses {
            for partition in topic.partitions {
                let Some((tp, offset)) = asked.iter().find(|(tp, _)| {
                    &*tp.topic == topic.topic.0.as_str()
                        && tp.partition == partition.partition_index
                }) else {
                    continue;
                };
                // A seek during this fetch wins over what it read.
                if self.positions.get(tp) != Some(offset) {
                    continue;
                }
                match KafkaCode(partition.error_code) {
                    KafkaCode(0) => {}
                    KafkaCode::OFFSET_OUT_OF_RANGE => {
                        self.reset_out_of_range(tp)?;
                        continue;
                    }
                    code => {
                        let error = Error::Kafka {
                            code,
                            context: format!("fetching {}-{}", tp.topic, tp.partition),
                        };
                        if !error.is_retriable() {
                            return Err(error);
                        }
                        self.client.invalidate(&tp.topic);
                        continue;
                    }
                }
                let Some(data) = partition.records else { continue };
                let bound = self.config.fetch_max_bytes.max(1) as usize * 4;
                let decoded = batch::decode(&tp.topic, tp.partition, data, *offset, bound, records)
                    .map_err(|e| Error::CorruptBatch {
                        topic: tp.topic.to_string(),
                        partition: tp.partition,
                        offset: e.offset,
                        reason: e.reason,
                    })?;
                if let Some(next) = decoded.next_offset.filter(|&next| next > *offset) {
                    self.positions.insert(tp.clone(), next);
                }
            }
        }
        Ok(())
    }

    fn reset_out_of_range(&mut self, tp: &TopicPartition) -> Result<()> {
        self.positions.remove(tp);
        match self.config.auto_offset_reset {
            OffsetReset::None => {
                Err(Error::NoOffset { topic: tp.topic.to_string(), partition: tp.partition })
            }
            _ => Ok(()),
        }
    }
}

fn fetch_request(
    config: &ConsumerConfig,
    partitions: &[(TopicPartition, i64)],
    wait: Duration,
) -> FetchRequest {
    let topics = by_topic(partitions.iter().map(|(tp, offset)| {
        let partition = FetchPartition::default()
            .with_partition(tp.partition)
            .with_current_leader_epoch(-1)
            .with_fetch_offset(*offset)
            .with_last_fetched_epoch(-1)
            .with_log_start_offset(-1)
            .with_partition_max_bytes(config.partition_fetch_max_bytes);
        (tp.topic.clone(), partition)
    }));
    let topics: Vec<FetchTopic> = topics
        .into_iter()
        .map(|(name, list)| FetchTopic::default().with_topic(name).with_partitions(list))
        .collect();
    FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(wait.as_millis().min(i32::MAX as u128) as i32)
        .with_min_bytes(config.fetch_min_bytes)
        .with_max_bytes(config.fetch_max_bytes)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(topics)
}

/// The offsets ListOffsets gives for these partitions and timestamps (-2 earliest, -1
/// latest), asking each partition's leader and retrying leader errors a bounded number of
/// times.
pub(crate) async fn list_offsets(
    client: &Client,
    wanted: &[(TopicPartition, i64)],
) -> Result<Vec<(TopicPartition, i64)>> {
    let mut found = Vec::with_capacity(wanted.len());
    let mut left: Vec<(TopicPartition, i64)> = wanted.to_vec();
    for _ in 0..crate::limits::METADATA_ATTEMPTS_MAX {
        let mut by_leader: HashMap<i32, Vec<(TopicPartition, i64)>> = HashMap::new();
        for (tp, timestamp) in left.drain(..) {
            let leader = client.leader(&tp.topic, tp.partition).await?;
            by_leader.entry(leader).or_default().push((tp, timestamp));
        }
        let mut last_error = None;
        for (leader, partitions) in by_leader {
            let answer = async {
                let connection = client.broker(leader).await?;
                connection.call(&list_offsets_request(&partitions)).await
            };
            let response: ListOffsetsResponse = match answer.await {
                Ok(response) => response,
                Err(error) if error.is_retriable() => {
                    last_error = Some(error);
                    left.extend(partitions);
                    continue;
                }
                Err(error) => return Err(error),
            };
            for (tp, timestamp) in partitions {
                let answer = response
                    .topics
                    .iter()
                    .filter(|t| t.name.0.as_str() == &*tp.topic)
                    .flat_map(|t| t.partitions.iter())
                    .find(|p| p.partition_index == tp.partition);
                let context = format!("offsets of {}-{}", tp.topic, tp.partition);
                let Some(answer) = answer else { return Err(Error::Protocol(context)) };
                let error = Error::kafka(answer.error_code, context);
                match answer.error_code {
                    0 => found.push((tp, answer.offset)),
                    _ if error.is_retriable() => {
                        client.invalidate(&tp.topic);
                        last_error = Some(error);
                        left.push((tp, timestamp));
                    }
                    _ => return Err(error),
                }
            }
        }
        if left.is_empty() {
            return Ok(found);
        }
        tokio::time::sleep(client.config().retry_backoff).await;
        if let Some(error) = &last_error {
            tracing::debug!(%error, "retrying ListOffsets");
        }
    }
    Err(Error::kafka(KafkaCode::LEADER_NOT_AVAILABLE.0, "ListOffsets kept failing"))
}

fn list_offsets_request(partitions: &[(TopicPartition, i64)]) -> ListOffsetsRequest {
    let topics = by_topic(partitions.iter().map(|(tp, timestamp)| {
        let partition = ListOffsetsPartition::default()
            .with_partition_index(tp.partition)
            .with_current_leader_epoch(-1)
            .with_timestamp(*timestamp);
        (tp.topic.clone(), partition)
    }));
    let topics: Vec<ListOffsetsTopic> = topics
        .into_iter()
        .map(|(name, list)| ListOffsetsTopic::default().with_name(name).with_partitions(list))
        .collect();
    ListOffsetsRequest::default().with_replica_id((-1).into()).with_topics(topics)
}
