//! The active controller's handling of topics and partitions: creation (with replica
//! placement), deletion, partition growth, config changes, and AlterPartition.

use rand::Rng;

use super::election;
use super::image::{MetadataImage, NO_LEADER, TopicId, TopicImage, change_record, decision_record};
use super::messages::{
    AlterConfigsRequest, AlterPartitionRequest, ControllerError, CreatePartitionsRequest,
    CreateTopicReply, CreateTopicRequest, DeleteTopicRequest, ReplyKind,
};
use super::placement::place;
use super::records::{
    ConfigRecord, MetadataRecord, PartitionRecord, RecordKind, RemoveTopicRecord, TopicRecord,
};
use super::{Controller, Liveness, Outcome, ReplyPlan, partition_reply};
use crate::core::topic::{ConfigChange, validate_partition_count, validate_topic_name};
use crate::core::topic::{Durability, TopicConfig};

/// Draws before giving up on a fresh topic id: with 128 random bits, one collision is
/// already beyond belief.
const TOPIC_ID_DRAWS_MAX: usize = 8;

fn live_brokers(image: &MetadataImage) -> Vec<i32> {
    image.live_brokers().map(|broker| broker.node_id).collect()
}

fn check_replication_factor(asked: i32, live: &[i32]) -> Result<usize, ControllerError> {
    match usize::try_from(asked) {
        Ok(factor) if factor >= 1 && factor <= live.len() => Ok(factor),
        _ => Err(ControllerError::InvalidReplicationFactor { asked, live: live.len() }),
    }
}

fn unknown_topic(name: &str) -> ControllerError {
    ControllerError::UnknownTopicOrPartition(name.to_string())
}

/// Partition records for new partitions `first..` of `topic`, one per replica list.
fn partition_records(topic: TopicId, first: i32, placed: Vec<Vec<i32>>) -> Vec<MetadataRecord> {
    (first..)
        .zip(placed)
        .map(|(partition, replicas)| {
            let record = PartitionRecord {
                topic_id: topic.to_vec(),
                partition,
                isr: replicas.clone(),
                elr: Vec::new(),
                leader: replicas[0],
                replicas,
                leader_epoch: 0,
                partition_epoch: 0,
            };
            RecordKind::Partition(record).into()
        })
        .collect()
}

impl Controller {
    /// Creates a topic: its settings checked, its partitions placed on the live brokers,
    /// each with ISR = replicas and the first replica leading.
    pub(super) fn create_topic(
        &mut self,
        request: &CreateTopicRequest,
    ) -> Result<Outcome, ControllerError> {
        let name = request.name.as_str();
        validate_topic_name(name).map_err(|e| ControllerError::InvalidTopic(e.to_string()))?;
        let image = &self.active().speculative;
        if image.topic(name).is_some() {
            return Err(ControllerError::TopicAlreadyExists(name.to_string()));
        }
        let partitions = match request.partitions {
            -1 => self.config.default_partitions,
            asked => asked,
        };
        validate_partition_count(partitions)
            .map_err(|e| ControllerError::InvalidPartitions(e.to_string()))?;
        let live = live_brokers(image);
        let factor = match request.replication_factor {
            -1 => self.config.default_replication_factor,
            asked => asked,
        };
        let replication_factor = check_replication_factor(factor, &live)?;
        let defaults = &self.config.topic_defaults;
        let changes: Vec<ConfigChange> = (request.config.iter())
            .map(|(key, value)| ConfigChange::Set { key: key.clone(), value: value.clone() })
            .collect();
        let mut settings = defaults.clone();
        settings
            .apply(&changes, defaults)
            .map_err(|e| ControllerError::InvalidConfig(e.to_string()))?;
        if request.validate_only {
            let reply = CreateTopicReply {
                topic_id: vec![0; 16],
                partitions,
                replication_factor: factor,
                config: settings.to_map(),
            };
            return Ok(Outcome::Reply(Some(ReplyKind::CreateTopic(reply))));
        }
        let id = self.new_topic_id();
        let start = self.rng.random_range(0..live.len());
        let count = usize::try_from(partitions).expect("validated");
        let image = &self.active().speculative;
        let placed = place(image, &live, count, replication_factor, start);
        let topic = TopicRecord {
            name: name.to_string(),
            topic_id: id.to_vec(),
            config: settings.to_map(),
        };
        let mut records: Vec<MetadataRecord> = vec![RecordKind::Topic(topic).into()];
        records.extend(partition_records(id, 0, placed));
        Ok(Outcome::Propose(records, ReplyPlan::CreateTopic { name: name.to_string() }))
    }

    /// A fresh topic id from the seeded generator: not all zero, not in use.
    fn new_topic_id(&mut self) -> TopicId {
        for _ in 0..TOPIC_ID_DRAWS_MAX {
            let mut bytes = [0u8; 16];
            self.rng.fill(&mut bytes);
            let Some(id) = TopicId::from_bytes(&bytes) else { continue };
            if self.active().speculative.topic_by_id(id).is_none() {
                return id;
            }
        }
        panic!("{TOPIC_ID_DRAWS_MAX} random topic ids all collided: the generator is broken");
    }

    /// Deletes a topic.
    pub(super) fn delete_topic(
        &mut self,
        request: &DeleteTopicRequest,
    ) -> Result<Outcome, ControllerError> {
        let image = &self.active().speculative;
        let topic = image.topic(&request.name).ok_or_else(|| unknown_topic(&request.name))?;
        let record = RemoveTopicRecord { topic_id: topic.id.to_vec() };
        let plan = ReplyPlan::DeleteTopic { topic: topic.id };
        Ok(Outcome::Propose(vec![RecordKind::RemoveTopic(record).into()], plan))
    }

    /// Grows a topic to `count` partitions, placed like a new topic's.
    pub(super) fn create_partitions(
        &mut self,
        request: &CreatePartitionsRequest,
    ) -> Result<Outcome, ControllerError> {
        let image = &self.active().speculative;
        let topic = image.topic(&request.name).ok_or_else(|| unknown_topic(&request.name))?;
        let current = i32::try_from(topic.partitions.len()).expect("partition counts fit i32");
        if request.count <= current {
            return Err(ControllerError::InvalidPartitions(format!(
                "topic {} has {current} partitions; it can only grow, not go to {}",
                request.name, request.count
            )));
        }
        validate_partition_count(request.count)
            .map_err(|e| ControllerError::InvalidPartitions(e.to_string()))?;
        let live = live_brokers(image);
        let factor = i32::try_from(topic.partitions[0].replicas.len()).expect("short lists");
        let replication_factor = check_replication_factor(factor, &live)?;
        if request.validate_only {
            return Ok(Outcome::Reply(None));
        }
        let id = topic.id;
        let start = self.rng.random_range(0..live.len());
        let image = &self.active().speculative;
        let count = usize::try_from(request.count - current).expect("it grows");
        let placed = place(image, &live, count, replication_factor, start);
        Ok(Outcome::Propose(partition_records(id, current, placed), ReplyPlan::Done))
    }

    /// Changes a topic's settings, all or none. Lowering `min.insync.replicas` empties the
    /// ELR of partitions whose ISR now reaches it (the high watermark may move without
    /// them); enabling unclean election elects leaders for partitions without one.
    pub(super) fn alter_configs(
        &mut self,
        request: &AlterConfigsRequest,
    ) -> Result<Outcome, ControllerError> {
        let image = &self.active().speculative;
        let topic = image.topic(&request.name).ok_or_else(|| unknown_topic(&request.name))?;
        let changes: Vec<ConfigChange> = (request.changes.iter())
            .map(|change| match &change.value {
                Some(value) => ConfigChange::Set { key: change.key.clone(), value: value.clone() },
                None => ConfigChange::Delete { key: change.key.clone() },
            })
            .collect();
        let mut settings = topic.settings.clone();
        settings
            .apply(&changes, &self.config.topic_defaults)
            .map_err(|e| ControllerError::InvalidConfig(e.to_string()))?;
        let diff = topic.settings.diff(&settings);
        if request.validate_only || diff.is_empty() {
            return Ok(Outcome::Reply(None));
        }
        let config = ConfigRecord { topic_id: topic.id.to_vec(), changes: diff };
        let mut records: Vec<MetadataRecord> = vec![RecordKind::Config(config).into()];
        records.extend(settings_changes(self.active().liveness(), topic, &settings));
        Ok(Outcome::Propose(records, ReplyPlan::Done))
    }

    /// A partition leader changes the ISR. Accepted only from the current leader, with its
    /// current broker epoch, leader epoch and partition epoch (KIP-497); a replica joining
    /// must be live (KIP-841); the leader stays in.
    pub(super) fn alter_partition(
        &mut self,
        request: &AlterPartitionRequest,
    ) -> Result<Outcome, ControllerError> {
        let image = &self.active().speculative;
        let node_id = request.broker_id;
        image.broker_at_epoch(node_id, request.broker_epoch)?;
        let id = TopicId::from_bytes(&request.topic_id).ok_or(ControllerError::UnknownTopicId)?;
        let topic = image.topic_by_id(id).ok_or(ControllerError::UnknownTopicId)?;
        let partition = request.partition;
        let state = image.partition(id, partition).ok_or_else(|| {
            ControllerError::UnknownTopicOrPartition(format!("{}-{partition}", topic.name))
        })?;
        // A follower resigning names the ISR without itself (its log lost records the HW
        // counted); one that names itself is a retried resignation of a leader that has been
        // replaced since, and under `fsync` keeps its place.
        let replicate = topic.settings.durability == Durability::Replicate;
        let keeps_place = request.new_isr.contains(&node_id) && !replicate;
        if request.resign && state.leader != node_id && keeps_place {
            let reply = partition_reply(id, partition, state);
            return Ok(Outcome::Reply(Some(ReplyKind::Partition(reply))));
        }
        if request.resign && state.leader != node_id {
            let records = follower_loss_records(id, partition, state, node_id);
            if records.is_empty() {
                let reply = partition_reply(id, partition, state);
                return Ok(Outcome::Reply(Some(ReplyKind::Partition(reply))));
            }
            return Ok(Outcome::Propose(records, ReplyPlan::Partition { topic: id, partition }));
        }
        if request.leader_epoch != state.leader_epoch {
            let (current, given) = (state.leader_epoch, request.leader_epoch);
            return Err(ControllerError::FencedLeaderEpoch { current, given });
        }
        if state.leader != node_id {
            return Err(ControllerError::NotLeader { broker: node_id, leader: state.leader });
        }
        if request.partition_epoch != state.partition_epoch {
            let (current, given) = (state.partition_epoch, request.partition_epoch);
            return Err(ControllerError::InvalidUpdateVersion { current, given });
        }
        if request.resign {
            let live = self.active().liveness();
            // Under `fsync` a leader whose log failed lost only what it had not synced, which
            // the HW never counted: it keeps its ISR place, unless it says otherwise by
            // leaving itself out (its recovered log lacks synced records: damage).
            let records = resignation_records(live, topic, partition, state, node_id, keeps_place);
            return Ok(Outcome::Propose(records, ReplyPlan::Partition { topic: id, partition }));
        }
        check_new_isr(image, state, request, node_id)?;
        let min_isr = topic.settings.min_insync_replicas;
        let decision = election::change_isr(state, &request.new_isr, min_isr);
        let change =
            change_record(id, partition, state, &decision.isr, &decision.elr, state.leader);
        let Some(change) = change else {
            let reply = partition_reply(id, partition, state);
            return Ok(Outcome::Reply(Some(ReplyKind::Partition(reply))));
        };
        let records = vec![RecordKind::PartitionChange(change).into()];
        Ok(Outcome::Propose(records, ReplyPlan::Partition { topic: id, partition }))
    }
}

/// The records for leader `leader`'s resignation (its log failed in its epoch, or it holds
/// a corrupt batch): another member leads, the first of the ISR in replica order, else the
/// first of the ELR (KIP-966: it holds every record the HW covered when it left the ISR),
/// among the live ones ([`Liveness`]). Under `replicate` the leader's recovered log may lack
/// records the HW covered, so a member not heard from yet, but not fenced either, is a
/// better bet than the leader itself: it is taken next, unless a new process of it has
/// already tried to register (its replicas restarted and may lack as much). The one
/// resigning leaves the ELR, and the ISR too under `replicate` (its log may lack what the
/// HW counted; it fetches its way back in); under `fsync` it stays in the ISR if it
/// `keeps_place` (it lost only what it had not synced, which the HW never counted), so that
/// a later resignation of the new leader still finds it eligible. With nobody else eligible,
/// it leads again in a new epoch: leaderless, then elected, in one batch.
fn resignation_records(
    live: Liveness<'_>,
    topic: &TopicImage,
    partition: i32,
    state: &super::PartitionState,
    leader: i32,
    keeps_place: bool,
) -> Vec<MetadataRecord> {
    let without = |ids: &[i32]| ids.iter().copied().filter(|id| *id != leader).collect();
    let min_isr = topic.settings.min_insync_replicas;
    let replicate = topic.settings.durability == Durability::Replicate;
    let heard = |id: i32| id != leader && live.is_live(id);
    let unfenced = |id: i32| id != leader && replicate && live.may_be_running(id);
    let tiers: [&dyn Fn(i32) -> bool; 2] = [&heard, &unfenced];
    for others in tiers {
        let rest = election::Decision {
            leader: NO_LEADER,
            isr: without(&state.isr),
            elr: without(&state.elr),
        };
        let mut decision = election::elect(&state.replicas, rest, min_isr, false, others);
        if decision.leader != NO_LEADER {
            let stays = keeps_place && state.isr.contains(&leader);
            if stays && !decision.isr.contains(&leader) {
                decision.isr.push(leader);
                // Back at min ISR, the ELR empties (KIP-966).
                if decision.isr.len() as i32 >= min_isr {
                    decision.elr.clear();
                }
            }
            let (isr, elr, next) = (&decision.isr, &decision.elr, decision.leader);
            return change_records(change_record(topic.id, partition, state, isr, elr, next));
        }
    }
    let id = topic.id;
    let step_down = change_record(id, partition, state, &state.isr, &state.elr, NO_LEADER);
    let mut stepped = state.clone();
    stepped.leader = NO_LEADER;
    let again = change_record(id, partition, &stepped, &state.isr, &state.elr, leader);
    change_records([step_down, again].into_iter().flatten())
}

/// The records for a follower's resignation (its log failed under `replicate`, losing what
/// it had not synced): it leaves the ISR, unless it is the last member, and the ELR. Whatever
/// the epochs it saw: its log lost records either way.
fn follower_loss_records(
    topic: TopicId,
    partition: i32,
    state: &super::PartitionState,
    follower: i32,
) -> Vec<MetadataRecord> {
    let mut isr = state.isr.clone();
    if isr.len() > 1 {
        isr.retain(|id| *id != follower);
    }
    let elr: Vec<i32> = state.elr.iter().copied().filter(|id| *id != follower).collect();
    let change = change_record(topic, partition, state, &isr, &elr, state.leader);
    change_records(change)
}

fn change_records(
    changes: impl IntoIterator<Item = super::records::PartitionChangeRecord>,
) -> Vec<MetadataRecord> {
    changes.into_iter().map(|c| RecordKind::PartitionChange(c).into()).collect()
}

/// Checks an ISR a leader asks for: not empty, no repeats, replicas only, the leader in it,
/// and every member joining it live.
fn check_new_isr(
    image: &MetadataImage,
    state: &super::PartitionState,
    request: &AlterPartitionRequest,
    leader: i32,
) -> Result<(), ControllerError> {
    let new_isr = &request.new_isr;
    let invalid = |what: String| Err(ControllerError::InvalidRequest(what));
    if new_isr.is_empty() {
        return invalid("the ISR cannot be empty".into());
    }
    for (i, id) in new_isr.iter().enumerate() {
        if new_isr[..i].contains(id) {
            return invalid(format!("replica {id} is listed twice in the ISR"));
        }
        if !state.replicas.contains(id) {
            return invalid(format!("{id} is not a replica of the partition"));
        }
    }
    if !new_isr.contains(&leader) {
        return invalid(format!("the leader {leader} must stay in the ISR"));
    }
    // A member joins only live, and (KIP-903) at the registration whose fetches the leader
    // counted: one that registered again since (a restart; a wipe) may hold less than it had
    // fetched, and must catch up again in its new life before it counts.
    for (i, id) in new_isr.iter().enumerate() {
        if state.isr.contains(id) {
            continue;
        }
        let heard = request.new_isr_broker_epochs.get(i).copied();
        let current = image.broker(*id).map(|broker| broker.epoch);
        if !image.is_live(*id) || heard.is_none() || heard != current {
            return Err(ControllerError::IneligibleReplica(*id));
        }
    }
    Ok(())
}

/// The partition changes that `topic` taking `settings` causes.
fn settings_changes(
    live: Liveness<'_>,
    topic: &TopicImage,
    settings: &TopicConfig,
) -> Vec<MetadataRecord> {
    let min_isr = settings.min_insync_replicas;
    let mut records = Vec::new();
    for (partition, state) in (0..).zip(&topic.partitions) {
        // The same ISR under the new minimum: the ELR stays while the ISR is below it and
        // empties once it is not.
        let mut decision = election::change_isr(state, &state.isr, min_isr);
        if state.leader == NO_LEADER {
            let unclean = settings.unclean_leader_election;
            decision =
                election::elect(&state.replicas, decision, min_isr, unclean, |id| live.is_live(id));
        }
        records.extend(decision_record(topic.id, partition, state, &decision));
    }
    records
}
