//! The metadata image: the cluster's metadata as of one index of the metadata log, built
//! only by applying committed batches of [`MetadataRecord`]s in log order (design §5).
//!
//! Every node keeps one and acts on it (which partitions it hosts, who leads them, which
//! brokers are live); the active controller keeps its own copy and a speculative one ahead
//! of it. Applying is deterministic and never fails: a record that does not fit the image
//! (a fence for an older registration, a change to a topic already deleted) is skipped,
//! the same way on every node, so that every image of one index is the same image.
//!
//! [`MetadataImage::snapshot`] writes the image as one batch of records, and
//! [`MetadataImage::restore`] reads it back; Raft stores that batch as its snapshot.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use super::records::{
    BrokerList, ConfigRecord, FenceBrokerRecord, MetadataRecord, PartitionChangeRecord,
    PartitionRecord, ProducerIdsRecord, RecordKind, RegisterBrokerRecord, TopicRecord,
    UnfenceBrokerRecord, decode_batch, encode_batch,
};
use crate::core::topic::TopicConfig;

/// "No leader", as Kafka writes it.
pub const NO_LEADER: i32 = -1;

/// A topic's id: 16 random bytes, never all zero (Kafka's topic UUID).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicId(pub [u8; 16]);

impl TopicId {
    /// The id held in a record's bytes, if they are 16 bytes and not all zero.
    pub fn from_bytes(bytes: &[u8]) -> Option<TopicId> {
        let id = TopicId(bytes.try_into().ok()?);
        (id.0 != [0; 16]).then_some(id)
    }

    /// The id as a record carries it.
    pub fn to_vec(self) -> Vec<u8> {
        self.0.to_vec()
    }
}

impl fmt::Debug for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for TopicId {
    /// The UUID's usual text: 8-4-4-4-12 hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// A registered broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerState {
    /// Its node id.
    pub node_id: i32,
    /// Its broker epoch: the index of its registration. In the controller's speculative
    /// image, 0 while that registration is not committed.
    pub epoch: u64,
    /// The incarnation it registered with.
    pub incarnation: u64,
    /// The id of its data directory (0 if unknown).
    pub directory_id: u64,
    /// The host of its Kafka listener.
    pub host: String,
    /// The port of its Kafka listener.
    pub port: u32,
    /// Its rack.
    pub rack: Option<String>,
    /// Whether it is fenced: not live, leads nothing.
    pub fenced: bool,
}

/// One partition's replication state, as the controller decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    /// The replicas, in preference order.
    pub replicas: Vec<i32>,
    /// The in-sync replicas.
    pub isr: Vec<i32>,
    /// The eligible leader replicas (KIP-966): out of the ISR, yet known to hold every
    /// committed record, because they left it while it was below `min.insync.replicas`.
    pub elr: Vec<i32>,
    /// The leader, or [`NO_LEADER`].
    pub leader: i32,
    /// Bumped at every leader change.
    pub leader_epoch: i32,
    /// Bumped at every change.
    pub partition_epoch: i32,
}

impl PartitionState {
    fn of(record: &PartitionRecord) -> PartitionState {
        PartitionState {
            replicas: record.replicas.clone(),
            isr: record.isr.clone(),
            elr: record.elr.clone(),
            leader: record.leader,
            leader_epoch: record.leader_epoch,
            partition_epoch: record.partition_epoch,
        }
    }

    fn apply(&mut self, change: &PartitionChangeRecord) {
        if let Some(replicas) = &change.replicas {
            self.replicas = replicas.ids.clone();
        }
        if let Some(isr) = &change.isr {
            self.isr = isr.ids.clone();
        }
        if let Some(elr) = &change.elr {
            self.elr = elr.ids.clone();
        }
        if let Some(leader) = change.leader
            && leader != self.leader
        {
            self.leader = leader;
            self.leader_epoch += 1;
        }
        self.partition_epoch += 1;
    }

    /// The record that recreates this state.
    pub fn to_record(&self, topic_id: TopicId, partition: i32) -> PartitionRecord {
        PartitionRecord {
            topic_id: topic_id.to_vec(),
            partition,
            replicas: self.replicas.clone(),
            isr: self.isr.clone(),
            elr: self.elr.clone(),
            leader: self.leader,
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
        }
    }

    fn invariants(&self, topic: &str, partition: usize) {
        let at = || format!("{topic}-{partition}");
        assert!(!self.replicas.is_empty(), "{}: no replicas", at());
        assert!(distinct(&self.replicas), "{}: a replica listed twice", at());
        assert!(
            !self.isr.is_empty() || self.leader == NO_LEADER,
            "{}: an empty ISR (its last member lost its data) has no leader",
            at()
        );
        assert!(distinct(&self.isr), "{}: an ISR member listed twice", at());
        assert!(distinct(&self.elr), "{}: an ELR member listed twice", at());
        assert!(self.isr.iter().all(|b| self.replicas.contains(b)), "{}: ISR ⊄ replicas", at());
        assert!(self.elr.iter().all(|b| self.replicas.contains(b)), "{}: ELR ⊄ replicas", at());
        assert!(self.elr.iter().all(|b| !self.isr.contains(b)), "{}: ELR ∩ ISR ≠ ∅", at());
        assert!(
            self.leader == NO_LEADER || self.isr.contains(&self.leader),
            "{}: leader {} is not in the ISR",
            at(),
            self.leader
        );
        assert!(self.leader_epoch >= 0, "{}: negative leader epoch", at());
        assert!(
            self.partition_epoch >= self.leader_epoch,
            "{}: every leader change is a partition change",
            at()
        );
    }
}

fn distinct(ids: &[i32]) -> bool {
    ids.iter().enumerate().all(|(i, id)| !ids[..i].contains(id))
}

/// A topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicImage {
    /// Its name.
    pub name: Arc<str>,
    /// Its id.
    pub id: TopicId,
    /// Its settings.
    pub settings: TopicConfig,
    /// Its partitions, by index.
    pub partitions: Vec<PartitionState>,
}

/// The metadata image. See the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetadataImage {
    last_applied: u64,
    brokers: BTreeMap<i32, BrokerState>,
    topics: BTreeMap<TopicId, TopicImage>,
    topic_ids: BTreeMap<Arc<str>, TopicId>,
    next_producer_id: i64,
}

impl MetadataImage {
    // ----- getters -----

    /// The index of the last batch applied (0: none).
    pub fn last_applied(&self) -> u64 {
        self.last_applied
    }

    /// A broker by node id.
    pub fn broker(&self, node_id: i32) -> Option<&BrokerState> {
        self.brokers.get(&node_id)
    }

    /// Broker `node_id` if `epoch` is its current registration's: a request from an older
    /// registration, or before the registration committed (epoch 0, which nobody can know
    /// yet), is stale.
    pub(super) fn broker_at_epoch(
        &self,
        node_id: i32,
        epoch: u64,
    ) -> Result<&BrokerState, super::ControllerError> {
        let broker =
            self.broker(node_id).ok_or(super::ControllerError::BrokerNotRegistered(node_id))?;
        if broker.epoch == 0 || broker.epoch != epoch {
            return Err(super::ControllerError::StaleBrokerEpoch { node_id, given: epoch });
        }
        Ok(broker)
    }

    /// Every registered broker, by node id.
    pub fn brokers(&self) -> impl Iterator<Item = &BrokerState> {
        self.brokers.values()
    }

    /// The live (unfenced) brokers with their endpoints, by node id: the brokers Kafka's
    /// Metadata response lists.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerState> {
        self.brokers.values().filter(|broker| !broker.fenced)
    }

    /// Whether `node_id` is registered and unfenced.
    pub fn is_live(&self, node_id: i32) -> bool {
        self.brokers.get(&node_id).is_some_and(|broker| !broker.fenced)
    }

    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<&TopicImage> {
        self.topics.get(self.topic_ids.get(name)?)
    }

    /// A topic by id.
    pub fn topic_by_id(&self, id: TopicId) -> Option<&TopicImage> {
        self.topics.get(&id)
    }

    /// Every topic, by name.
    pub fn topics(&self) -> impl Iterator<Item = &TopicImage> {
        self.topic_ids.values().map(|id| &self.topics[id])
    }

    /// A partition's state.
    pub fn partition(&self, id: TopicId, partition: i32) -> Option<&PartitionState> {
        let index = usize::try_from(partition).ok()?;
        self.topics.get(&id)?.partitions.get(index)
    }

    /// The leader of partition `partition` of topic `name`: `None` if there is no such
    /// partition, `Some(NO_LEADER)` if it has no leader.
    pub fn leader(&self, name: &str, partition: i32) -> Option<i32> {
        let index = usize::try_from(partition).ok()?;
        Some(self.topic(name)?.partitions.get(index)?.leader)
    }

    /// The partitions `node_id` is a replica of, with their topics and states.
    pub fn partitions_of(
        &self,
        node_id: i32,
    ) -> impl Iterator<Item = (&TopicImage, i32, &PartitionState)> {
        self.topics().flat_map(move |topic| {
            topic.partitions.iter().enumerate().filter_map(move |(index, state)| {
                let index = i32::try_from(index).expect("partition counts fit i32");
                state.replicas.contains(&node_id).then_some((topic, index, state))
            })
        })
    }

    /// The first producer id not yet handed out.
    pub fn next_producer_id(&self) -> i64 {
        self.next_producer_id
    }

    // ----- mutators -----

    /// Applies the committed batch at `index`.
    ///
    /// # Panics
    /// If `index` is not after the last index applied: the log is applied in order.
    pub fn apply(&mut self, index: u64, records: &[MetadataRecord]) {
        assert!(index > self.last_applied, "batch {index} after {}", self.last_applied);
        self.apply_records(index, records);
        self.last_applied = index;
    }

    /// Applies a batch proposed but not committed (the controller's speculative image): a
    /// registration in it gets epoch 0 until it commits.
    pub(super) fn apply_pending(&mut self, records: &[MetadataRecord]) {
        self.apply_records(0, records);
    }

    /// Overwrites broker `node_id`'s entry with `other`'s (the controller's speculative
    /// image taking a registration's epoch once it committed).
    pub(super) fn copy_broker_from(&mut self, other: &MetadataImage, node_id: i32) {
        match other.brokers.get(&node_id) {
            Some(broker) => self.brokers.insert(node_id, broker.clone()),
            None => self.brokers.remove(&node_id),
        };
    }

    /// Sets the index of the last batch applied (the controller's speculative image follows
    /// the committed one's).
    pub(super) fn set_last_applied(&mut self, index: u64) {
        assert!(index >= self.last_applied, "the applied index never goes back");
        self.last_applied = index;
    }

    fn apply_records(&mut self, index: u64, records: &[MetadataRecord]) {
        for record in records {
            match &record.kind {
                Some(RecordKind::RegisterBroker(r)) => self.register(index, r),
                Some(RecordKind::FenceBroker(r)) => {
                    self.set_fenced(r.node_id, r.broker_epoch, true)
                }
                Some(RecordKind::UnfenceBroker(r)) => {
                    self.set_fenced(r.node_id, r.broker_epoch, false)
                }
                Some(RecordKind::Topic(r)) => self.add_topic(r),
                Some(RecordKind::RemoveTopic(r)) => self.remove_topic(&r.topic_id),
                Some(RecordKind::Partition(r)) => self.add_partition(r),
                Some(RecordKind::PartitionChange(r)) => self.change_partition(r),
                Some(RecordKind::Config(r)) => self.change_config(r),
                Some(RecordKind::ProducerIds(r)) => {
                    let end = r.first_id.saturating_add(r.count);
                    self.next_producer_id = self.next_producer_id.max(end);
                }
                None => tracing::warn!(index, "metadata record of an unknown kind skipped"),
            }
        }
    }

    fn register(&mut self, index: u64, record: &RegisterBrokerRecord) {
        let broker = BrokerState {
            node_id: record.node_id,
            epoch: record.broker_epoch.unwrap_or(index),
            incarnation: record.incarnation,
            directory_id: record.directory_id,
            host: record.host.clone(),
            port: record.port,
            rack: record.rack.clone(),
            fenced: true,
        };
        self.brokers.insert(record.node_id, broker);
    }

    fn set_fenced(&mut self, node_id: i32, epoch: u64, fenced: bool) {
        match self.brokers.get_mut(&node_id) {
            Some(broker) if broker.epoch == epoch => broker.fenced = fenced,
            _ => tracing::warn!(node_id, epoch, fenced, "fencing of a stale registration skipped"),
        }
    }

    fn add_topic(&mut self, record: &TopicRecord) {
        let Some(id) = TopicId::from_bytes(&record.topic_id) else {
            return tracing::warn!(topic = %record.name, "topic record without a valid id skipped");
        };
        if self.topic_ids.contains_key(record.name.as_str()) || self.topics.contains_key(&id) {
            return tracing::warn!(topic = %record.name, %id, "duplicate topic record skipped");
        }
        let name: Arc<str> = record.name.as_str().into();
        let settings = TopicConfig::from_map(&record.config);
        let topic = TopicImage { name: name.clone(), id, settings, partitions: Vec::new() };
        self.topics.insert(id, topic);
        self.topic_ids.insert(name, id);
    }

    fn remove_topic(&mut self, id: &[u8]) {
        let Some(topic) = TopicId::from_bytes(id).and_then(|id| self.topics.remove(&id)) else {
            return tracing::warn!("removal of an unknown topic skipped");
        };
        self.topic_ids.remove(&topic.name);
    }

    fn topic_mut(&mut self, id: &[u8]) -> Option<&mut TopicImage> {
        let found = TopicId::from_bytes(id).and_then(|id| self.topics.get_mut(&id));
        if found.is_none() {
            tracing::warn!("record for an unknown topic skipped");
        }
        found
    }

    fn add_partition(&mut self, record: &PartitionRecord) {
        let Some(topic) = self.topic_mut(&record.topic_id) else { return };
        let state = PartitionState::of(record);
        match usize::try_from(record.partition) {
            Ok(index) if index < topic.partitions.len() => topic.partitions[index] = state,
            Ok(index) if index == topic.partitions.len() => topic.partitions.push(state),
            _ => tracing::warn!(partition = record.partition, "partition out of order skipped"),
        }
    }

    fn change_partition(&mut self, change: &PartitionChangeRecord) {
        let Some(topic) = self.topic_mut(&change.topic_id) else { return };
        let partition = usize::try_from(change.partition).ok();
        match partition.and_then(|index| topic.partitions.get_mut(index)) {
            Some(state) => state.apply(change),
            None => tracing::warn!(partition = change.partition, "change of unknown partition"),
        }
    }

    fn change_config(&mut self, record: &ConfigRecord) {
        if let Some(topic) = self.topic_mut(&record.topic_id) {
            topic.settings.set_from_map(&record.changes);
        }
    }

    // ----- snapshots -----

    /// The image as one batch of records; [`MetadataImage::restore`] reads it back.
    pub fn snapshot(&self) -> Bytes {
        encode_batch(&self.snapshot_records())
    }

    /// The records that rebuild this image when applied to an empty one.
    pub fn snapshot_records(&self) -> Vec<MetadataRecord> {
        let mut records: Vec<MetadataRecord> = Vec::new();
        for broker in self.brokers.values() {
            records.push(
                RecordKind::RegisterBroker(RegisterBrokerRecord {
                    node_id: broker.node_id,
                    incarnation: broker.incarnation,
                    host: broker.host.clone(),
                    port: broker.port,
                    rack: broker.rack.clone(),
                    broker_epoch: Some(broker.epoch),
                    directory_id: broker.directory_id,
                })
                .into(),
            );
            if !broker.fenced {
                let unfence =
                    UnfenceBrokerRecord { node_id: broker.node_id, broker_epoch: broker.epoch };
                records.push(RecordKind::UnfenceBroker(unfence).into());
            }
        }
        for topic in self.topics() {
            let config = topic.settings.to_map();
            let record =
                TopicRecord { name: topic.name.to_string(), topic_id: topic.id.to_vec(), config };
            records.push(RecordKind::Topic(record).into());
            for (index, state) in topic.partitions.iter().enumerate() {
                let index = i32::try_from(index).expect("partition counts fit i32");
                records.push(RecordKind::Partition(state.to_record(topic.id, index)).into());
            }
        }
        let ids = ProducerIdsRecord { broker: -1, first_id: self.next_producer_id, count: 0 };
        records.push(RecordKind::ProducerIds(ids).into());
        records
    }

    /// The image a snapshot taken at `index` holds.
    pub fn restore(index: u64, bytes: &[u8]) -> Result<MetadataImage, prost::DecodeError> {
        let records = decode_batch(bytes)?;
        let mut image = MetadataImage::default();
        image.apply_records(index, &records);
        image.last_applied = index;
        Ok(image)
    }

    // ----- checks -----

    /// Asserts what every image must satisfy.
    ///
    /// # Panics
    /// If one does not hold: the records that built it were wrong.
    pub fn invariants(&self) {
        assert_eq!(self.topics.len(), self.topic_ids.len(), "names and ids are one-to-one");
        for (name, id) in &self.topic_ids {
            let topic = self.topics.get(id).expect("every name maps to a topic");
            assert_eq!(&topic.name, name, "topic {id} is known under two names");
            assert_eq!(topic.id, *id);
            assert_ne!(id.0, [0; 16], "{name}: all-zero topic id");
            assert!(!topic.partitions.is_empty(), "{name} has no partitions");
            for (index, state) in topic.partitions.iter().enumerate() {
                state.invariants(name, index);
                self.partition_invariants(topic, index, state);
            }
        }
        for (node_id, broker) in &self.brokers {
            assert_eq!(broker.node_id, *node_id);
            assert!(broker.epoch <= self.last_applied, "broker {node_id}: epoch from the future");
        }
        assert!(self.next_producer_id >= 0, "producer ids are never negative");
    }
}

impl MetadataImage {
    /// Asserts that no partition is offline while one of its eligible replicas could lead:
    /// nobody in its ISR or ELR is `live`, nor (where unclean elections are allowed) any
    /// replica. Only the active controller knows who is live in its sense (an unfenced
    /// broker it has not heard from does not count), so it alone checks this.
    ///
    /// # Panics
    /// If a partition is offline needlessly.
    pub fn offline_invariants(&self, live: impl Fn(i32) -> bool) {
        for topic in self.topics.values() {
            let name = &topic.name;
            for (index, state) in topic.partitions.iter().enumerate() {
                if state.leader != NO_LEADER {
                    continue;
                }
                let eligible = |id: &i32| live(*id);
                assert!(!state.isr.iter().any(eligible), "{name}-{index}: offline, ISR live");
                assert!(!state.elr.iter().any(eligible), "{name}-{index}: offline, ELR live");
                if topic.settings.unclean_leader_election {
                    let live = state.replicas.iter().any(eligible);
                    assert!(!live, "{name}-{index}: offline, a replica live, unclean allowed");
                }
            }
        }
    }

    /// What a partition's state must satisfy given the brokers and its topic's settings.
    fn partition_invariants(&self, topic: &TopicImage, index: usize, state: &PartitionState) {
        let name = &topic.name;
        if state.leader != NO_LEADER {
            let leader = state.leader;
            assert!(self.is_live(leader), "{name}-{index}: leader {leader} is not live");
        }
        // KIP-966: the ELR holds replicas only while the ISR is below min.insync.replicas.
        if !state.elr.is_empty() {
            let isr = i64::try_from(state.isr.len()).expect("short lists");
            let min_isr = i64::from(topic.settings.min_insync_replicas);
            assert!(isr < min_isr, "{name}-{index}: an ELR beside an ISR at min ISR");
        }
    }
}

/// A partition change record for `state` of `topic`, carrying only what differs from it.
pub(super) fn change_record(
    topic: TopicId,
    partition: i32,
    old: &PartitionState,
    new_isr: &[i32],
    new_elr: &[i32],
    new_leader: i32,
) -> Option<PartitionChangeRecord> {
    let isr = (old.isr != new_isr).then(|| BrokerList::of(new_isr));
    let elr = (old.elr != new_elr).then(|| BrokerList::of(new_elr));
    let leader = (old.leader != new_leader).then_some(new_leader);
    if isr.is_none() && elr.is_none() && leader.is_none() {
        return None;
    }
    Some(PartitionChangeRecord {
        topic_id: topic.to_vec(),
        partition,
        isr,
        elr,
        leader,
        replicas: None,
    })
}

/// The record that moves partition `partition` of `topic` from `old` to what an election
/// `decision` chose, or `None` when the decision changes nothing.
pub(super) fn decision_record(
    topic: TopicId,
    partition: i32,
    old: &PartitionState,
    decision: &super::election::Decision,
) -> Option<MetadataRecord> {
    let change =
        change_record(topic, partition, old, &decision.isr, &decision.elr, decision.leader)?;
    Some(RecordKind::PartitionChange(change).into())
}

/// Fences registration `epoch` of `node_id`.
pub(super) fn fence_record(node_id: i32, epoch: u64) -> MetadataRecord {
    RecordKind::FenceBroker(FenceBrokerRecord { node_id, broker_epoch: epoch }).into()
}
