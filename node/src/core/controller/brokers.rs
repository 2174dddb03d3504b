//! The active controller's handling of brokers: registration, heartbeats and leases,
//! fencing and unfencing, and producer-id blocks.

use super::election;
use super::image::{NO_LEADER, PartitionState, decision_record, fence_record};
use super::messages::{
    AllocateProducerIdsRequest, BrokerHeartbeatRequest, ControllerError, RegisterBrokerReply,
    RegisterBrokerRequest, ReplyKind,
};
use super::records::{
    MetadataRecord, ProducerIdsRecord, RecordKind, RegisterBrokerRecord, UnfenceBrokerRecord,
};
use super::{Controller, Liveness, Outcome, ReplyPlan, heartbeat_reply};
use crate::core::limits::PRODUCER_ID_BLOCK_SIZE;
use crate::core::time::Instant;
use crate::core::topic::{Durability, TopicConfig};

/// The records that fence registration `epoch` of `node_id`: the fence, then each
/// partition it was in the ISR of or led ([`election::fence`]).
pub(super) fn fence_records(live: Liveness<'_>, node_id: i32, epoch: u64) -> Vec<MetadataRecord> {
    let mut records = vec![fence_record(node_id, epoch)];
    records.extend(partition_changes_without(live, node_id));
    records
}

/// The partition changes that taking `node_id` out of the live brokers causes.
fn partition_changes_without(live: Liveness<'_>, node_id: i32) -> Vec<MetadataRecord> {
    partition_changes(live, node_id, |state, settings, live| {
        let (min_isr, unclean) = (settings.min_insync_replicas, settings.unclean_leader_election);
        election::fence(state, node_id, min_isr, unclean, live)
    })
}

/// The partition changes that `node_id` losing its data causes ([`election::forget`]).
fn partition_changes_forgetting(live: Liveness<'_>, node_id: i32) -> Vec<MetadataRecord> {
    partition_changes(live, node_id, |state, settings, live| {
        let (min_isr, unclean) = (settings.min_insync_replicas, settings.unclean_leader_election);
        election::forget(state, node_id, min_isr, unclean, live)
    })
}

/// The partition changes that a new process of `node_id` registering causes: as a fencing
/// if the old one was still live, and, where the topic's durability is `replicate`, the
/// broker also leaves the ISR (unless it is the last member) and the ELR: its last process
/// may have stopped without syncing, and what it acknowledged from memory may be gone
/// (KIP-966 takes a broker back from an unclean shutdown out of the ELR; Cairn does not
/// tell clean from unclean yet, so it assumes unclean, and the old process may never have
/// been fenced if no controller ran meanwhile). Under `fsync` it held on disk everything
/// the HW covered, and keeps its place.
fn partition_changes_restarting(live: Liveness<'_>, node_id: i32) -> Vec<MetadataRecord> {
    let was_live = live.image().is_live(node_id);
    partition_changes(live, node_id, |state, settings, live| {
        let (min_isr, unclean) = (settings.min_insync_replicas, settings.unclean_leader_election);
        let mut decision = if was_live {
            election::fence(state, node_id, min_isr, unclean, live)
        } else {
            election::Decision::unchanged(state)
        };
        if settings.durability == Durability::Replicate {
            decision.elr.retain(|id| *id != node_id);
            if decision.isr.len() > 1 {
                decision.isr.retain(|id| *id != node_id);
            }
            if decision.leader == node_id && !decision.isr.contains(&node_id) {
                decision.leader = NO_LEADER;
            }
            if decision.leader == NO_LEADER {
                decision = election::elect(&state.replicas, decision, min_isr, unclean, live);
            }
        }
        decision
    })
}

/// The records for `rule`'s decision (state, topic settings, who is live) in each partition
/// `node_id` is a replica of, with `node_id` no longer live.
fn partition_changes(
    liveness: Liveness<'_>,
    node_id: i32,
    rule: impl Fn(&PartitionState, &TopicConfig, &dyn Fn(i32) -> bool) -> election::Decision,
) -> Vec<MetadataRecord> {
    let live = |id: i32| id != node_id && liveness.is_live(id);
    let mut records = Vec::new();
    for (topic, partition, state) in liveness.image().partitions_of(node_id) {
        let decision = rule(state, &topic.settings, &live);
        records.extend(decision_record(topic.id, partition, state, &decision));
    }
    records
}

/// The records that unfence registration `epoch` of `node_id`: the unfence, then the
/// elections it allows ([`election_records`]).
fn unfence_records(live: Liveness<'_>, node_id: i32, epoch: u64) -> Vec<MetadataRecord> {
    let unfence = UnfenceBrokerRecord { node_id, broker_epoch: epoch };
    let mut records: Vec<MetadataRecord> = vec![RecordKind::UnfenceBroker(unfence).into()];
    records.extend(election_records(live, node_id));
    records
}

/// An election in each partition of `node_id` that has no leader, with `node_id` live: it
/// was unfenced, or a new active controller heard from it for the first time.
fn election_records(liveness: Liveness<'_>, node_id: i32) -> Vec<MetadataRecord> {
    let live = |id: i32| id == node_id || liveness.is_live(id);
    let mut records = Vec::new();
    for (topic, partition, state) in liveness.image().partitions_of(node_id) {
        if state.leader != NO_LEADER {
            continue;
        }
        let settings = &topic.settings;
        let decision = election::unfence(
            state,
            settings.min_insync_replicas,
            settings.unclean_leader_election,
            live,
        );
        records.extend(decision_record(topic.id, partition, state, &decision));
    }
    records
}

/// Checks what a registration says about the broker: an id and an endpoint clients can use.
fn check_endpoint(request: &RegisterBrokerRequest) -> Result<(), ControllerError> {
    let invalid = |what: String| Err(ControllerError::InvalidRequest(what));
    if request.node_id < 0 {
        return invalid(format!("node id {} is negative", request.node_id));
    }
    if request.host.is_empty() {
        return invalid(format!("broker {} registered without a host", request.node_id));
    }
    if !(1..=u32::from(u16::MAX)).contains(&request.port) {
        return invalid(format!("broker {}: port {} is not a port", request.node_id, request.port));
    }
    Ok(())
}

impl Controller {
    /// A broker registers. A new registration starts fenced; if it replaces a live one (a
    /// restart noticed before the old lease lapsed), the old one's partitions move as if it
    /// had been fenced. The old registration's epoch is stale from then on.
    pub(super) fn register_broker(
        &mut self,
        now: Instant,
        request: &RegisterBrokerRequest,
    ) -> Result<Outcome, ControllerError> {
        let node_id = request.node_id;
        check_endpoint(request)?;
        let timeout = self.config.broker_session_timeout;
        let active = self.active.as_mut().expect("active");
        let image = &active.speculative;
        let mut records = Vec::new();
        if let Some(old) = image.broker(node_id) {
            let lease_live = active.leases.get(node_id).is_some_and(|deadline| deadline > now);
            if old.incarnation == request.incarnation && old.epoch != 0 {
                // A retry from the same process: its registration stands.
                active.leases.set(node_id, now + timeout);
                let first_heard = active.heard.insert(node_id);
                let live = Liveness { image, heard: &active.heard, replaced: &active.replaced };
                if first_heard && !old.fenced {
                    let records = election_records(live, node_id);
                    if !records.is_empty() {
                        return Ok(Outcome::Propose(
                            records,
                            ReplyPlan::RegisterBroker { node_id },
                        ));
                    }
                }
                let reply = RegisterBrokerReply { broker_epoch: old.epoch };
                return Ok(Outcome::Reply(Some(ReplyKind::RegisterBroker(reply))));
            }
            if old.incarnation != request.incarnation && !old.fenced && lease_live {
                // Most likely a restart whose old process no controller saw stop: until
                // its lease lapses, it may not be the one left to lead.
                active.replaced.insert(node_id);
                return Err(ControllerError::DuplicateBrokerRegistration(node_id));
            }
        }
        let register = RegisterBrokerRecord {
            node_id,
            incarnation: request.incarnation,
            host: request.host.clone(),
            port: request.port,
            rack: request.rack.clone(),
            broker_epoch: None,
            directory_id: request.directory_id,
        };
        records.push(RecordKind::RegisterBroker(register).into());
        // Another data directory than the last registration's: the broker was wiped and
        // formatted again, and holds none of the records its replicas had (KIP-858 tells
        // directories apart the same way). It must not lead from the ISR or the ELR.
        let live = Liveness { image, heard: &active.heard, replaced: &active.replaced };
        let lost_data = image.broker(node_id).is_some_and(|old| {
            let known = old.directory_id != 0 && request.directory_id != 0;
            known && old.directory_id != request.directory_id
        });
        if lost_data {
            tracing::warn!(
                node_id,
                "broker registered with another data directory: it leaves \
                every ISR and ELR"
            );
            records.extend(partition_changes_forgetting(live, node_id));
        } else if image.broker(node_id).is_some() {
            records.extend(partition_changes_restarting(live, node_id));
        }
        active.leases.set(node_id, now + timeout);
        active.heard.insert(node_id);
        active.replaced.remove(&node_id);
        Ok(Outcome::Propose(records, ReplyPlan::RegisterBroker { node_id }))
    }

    /// A broker heartbeats: its lease is renewed; it is unfenced once it has caught up, or
    /// fenced if it wants to shut down. The first heartbeat an active controller hears from
    /// an unfenced broker runs the elections that waited for it ([`Liveness`]).
    pub(super) fn heartbeat(
        &mut self,
        now: Instant,
        request: &BrokerHeartbeatRequest,
    ) -> Result<Outcome, ControllerError> {
        let node_id = request.node_id;
        let timeout = self.config.broker_session_timeout;
        let active = self.active.as_mut().expect("active");
        let image = &active.speculative;
        let broker = image.broker_at_epoch(node_id, request.broker_epoch)?;
        active.leases.set(node_id, now + timeout);
        let first_heard = active.heard.insert(node_id);
        // The registered process is running: the other that tried to register is not its
        // successor.
        active.replaced.remove(&node_id);
        let live = Liveness { image, heard: &active.heard, replaced: &active.replaced };
        let epoch = broker.epoch;
        let caught_up = request.metadata_offset >= epoch;
        let want_shutdown = request.want_shutdown;
        let plan = ReplyPlan::Heartbeat { node_id, broker_epoch: epoch, caught_up, want_shutdown };
        if want_shutdown && !broker.fenced {
            // A controlled shutdown: its leaderships move away before it stops.
            tracing::info!(node_id, "broker shutting down: fencing it");
            return Ok(Outcome::Propose(fence_records(live, node_id, epoch), plan));
        }
        if !want_shutdown && broker.fenced && caught_up {
            tracing::info!(node_id, epoch, "broker caught up: unfencing it");
            return Ok(Outcome::Propose(unfence_records(live, node_id, epoch), plan));
        }
        if first_heard && !broker.fenced {
            let records = election_records(live, node_id);
            if !records.is_empty() {
                return Ok(Outcome::Propose(records, plan));
            }
        }
        let images = (&active.committed, &active.speculative);
        let reply = heartbeat_reply(images, node_id, epoch, caught_up, want_shutdown);
        Ok(Outcome::Reply(Some(ReplyKind::Heartbeat(reply))))
    }

    /// A broker asks for a block of producer ids.
    pub(super) fn allocate_producer_ids(
        &mut self,
        request: &AllocateProducerIdsRequest,
    ) -> Result<Outcome, ControllerError> {
        let image = &self.active().speculative;
        let node_id = request.broker_id;
        image.broker_at_epoch(node_id, request.broker_epoch)?;
        let first_id = image.next_producer_id();
        let count = PRODUCER_ID_BLOCK_SIZE;
        if first_id.checked_add(count).is_none() {
            return Err(ControllerError::InvalidRequest("producer ids are exhausted".into()));
        }
        let record = ProducerIdsRecord { broker: node_id, first_id, count };
        let records = vec![RecordKind::ProducerIds(record).into()];
        Ok(Outcome::Propose(records, ReplyPlan::ProducerIds { first_id, count }))
    }
}
