//! Consumer groups on this node (decision 0015): FindCoordinator, the creation of the
//! internal topic `__consumer_offsets`, and the group coordinator ([`Coordinator`]) wired to
//! the replicas of the offsets partitions this node leads.
//!
//! - FindCoordinator names the leader of the group's offsets partition. The first one the
//!   cluster sees creates the topic through the active controller (as Kafka does), with
//!   `offsets_topic_partitions` partitions, min(`offsets_topic_replication_factor`, live
//!   brokers) replicas, and retention off (decision 0015: there is no compaction yet, so
//!   nothing may delete a live commit); it answers COORDINATOR_NOT_AVAILABLE meanwhile, and
//!   clients ask again.
//! - The coordinator leads an offsets partition when its replica here is the leader with a
//!   recovered log: a new leader epoch starts a load, any other role drops the partition's
//!   state ([`Node::coordinator_check`], after every input to such a replica).
//! - It answers group requests only while this broker holds its lease from the controller
//!   (decision 0020), NOT_COORDINATOR otherwise: a broker cut off from the controller may
//!   have lost its offsets partitions without knowing it.
//! - Its appends are acks=all produces in the epoch it loaded; its reads are consumer
//!   fetches (below the HW). Both are replica requests under node tokens of their own, whose
//!   answers come back through the replica's events.

use super::cluster::Purpose;
use super::*;
use crate::core::controller::messages::CreateTopicRequest;
use crate::core::controller::{NO_LEADER, RequestKind};
use crate::core::coordinator::{
    Coordinator, CoordinatorConfig, CoordinatorError, CoordinatorOutput, OFFSETS_TOPIC,
    ReadOutcome, error_response, partition_for,
};
use crate::core::limits::COORDINATOR_LOAD_READ_BYTES;
use crate::core::replica::{ReplicaResponse, Role};

/// A replica request the coordinator made, by node token.
#[derive(Debug, Clone, Copy)]
pub(super) enum CoordinatorCall {
    /// An append, under the coordinator's number, to this offsets partition.
    Append { partition: i32, append: u64 },
    /// A read, under the coordinator's number, of this offsets partition.
    Read { partition: i32, read: u64 },
}

impl CoordinatorCall {
    fn partition(self) -> i32 {
        match self {
            CoordinatorCall::Append { partition, .. } | CoordinatorCall::Read { partition, .. } => {
                partition
            }
        }
    }
}

/// The coordinator of a node with `config`.
pub(super) fn new_coordinator(config: &NodeConfig, seed: u64) -> Coordinator {
    Coordinator::new(CoordinatorConfig {
        partitions: config.offsets_topic_partitions,
        seed,
        ..CoordinatorConfig::default()
    })
}

impl Node {
    /// The group coordinator.
    pub fn coordinator(&self) -> &Coordinator {
        &self.coordinator
    }

    /// Every committed offset of the groups this node coordinates, with the partition's HW
    /// where this node leads it (the lag's other half; decision 0015).
    pub fn group_offsets(&self) -> Vec<GroupOffset> {
        (self.coordinator.committed())
            .map(|(group, id, offset)| GroupOffset {
                group: group.to_owned(),
                partition: id.clone(),
                committed: offset.offset,
                high_watermark: (self.replicas.get(id))
                    .filter(|replica| replica.role() == Role::Leader)
                    .map(Replica::high_watermark),
            })
            .collect()
    }

    /// The high watermark of every partition this node leads, for metrics: with the
    /// coordinators' committed offsets it gives every group's lag in a cluster.
    pub fn led_high_watermarks(&self) -> Vec<(PartitionId, u64)> {
        (self.replicas.iter())
            .filter(|(_, replica)| replica.role() == Role::Leader)
            .map(|(id, replica)| (id.clone(), replica.high_watermark()))
            .collect()
    }

    /// FindCoordinator, a coordinator request, or ListGroups.
    pub(super) fn group_request(
        &mut self,
        now: Instant,
        conn: ConnId,
        id: RequestId,
        request: Request,
    ) {
        match request {
            Request::FindCoordinator { key, key_type } => {
                let response = match self.find_coordinator(now, &key, key_type) {
                    Ok(response) => response,
                    Err(error) => Response::Error(RequestError::Coordinator(error)),
                };
                self.reply(conn, id, response);
            }
            Request::Group(request) if !self.holds_lease(now) => {
                // The controller may have fenced this broker and moved its offsets
                // partitions to another leader that has acknowledged commits since: nothing
                // in this coordinator's memory may be answered (decision 0020). The client
                // looks the coordinator up again.
                tracing::debug!(node = self.config.node_id.0, "group request outside the lease");
                let response = error_response(&request, CoordinatorError::NotCoordinator);
                self.reply(conn, id, Response::Group(response));
            }
            Request::Group(request) => {
                let token = self.token();
                self.group_calls.insert(token, (conn, id));
                self.coordinator.handle_request(now, token, request);
            }
            Request::ListGroups => {
                let groups = self.coordinator.list_groups();
                self.reply(conn, id, Response::Groups(groups));
            }
            _ => unreachable!("not a group request"),
        }
        self.after_coordinator(now);
    }

    fn find_coordinator(
        &mut self,
        now: Instant,
        key: &str,
        key_type: i8,
    ) -> Result<Response, CoordinatorError> {
        if key_type != 0 {
            return Err(CoordinatorError::UnsupportedKeyType(key_type));
        }
        if key.is_empty() {
            return Err(CoordinatorError::InvalidGroupId);
        }
        let Some(topic) = self.image.topic(OFFSETS_TOPIC) else {
            self.create_offsets_topic(now);
            return Err(CoordinatorError::NotAvailable(format!("creating {OFFSETS_TOPIC}")));
        };
        let partitions = topic.partitions.len() as i32;
        let state = &topic.partitions[partition_for(key, partitions) as usize];
        let leader = (state.leader != NO_LEADER).then_some(state.leader);
        let leader = leader.filter(|leader| !self.peers_down.contains(&NodeId(*leader as u32)));
        let broker = leader
            .and_then(|leader| self.image.live_brokers().find(|broker| broker.node_id == leader));
        let Some(broker) = broker else {
            let why = format!("{OFFSETS_TOPIC} partition has no live leader");
            return Err(CoordinatorError::NotAvailable(why));
        };
        Ok(Response::Coordinator {
            node_id: NodeId(broker.node_id as u32),
            host: broker.host.clone(),
            port: u16::try_from(broker.port).unwrap_or(0),
        })
    }

    /// Asks the active controller to create `__consumer_offsets` (once at a time).
    fn create_offsets_topic(&mut self, now: Instant) {
        if self.offsets_topic_creating {
            return;
        }
        self.offsets_topic_creating = true;
        let live = self.image.live_brokers().count().max(1) as i32;
        let replication_factor = self.config.offsets_topic_replication_factor.clamp(1, live);
        let mut config = self.config.default_topic.clone();
        // No compaction yet: retention must never delete a live commit (decision 0015).
        config.log.retention_ms = -1;
        config.log.retention_bytes = -1;
        let request = RequestKind::CreateTopic(CreateTopicRequest {
            name: OFFSETS_TOPIC.to_string(),
            partitions: self.config.offsets_topic_partitions,
            replication_factor,
            config: config.to_map(),
            validate_only: false,
        });
        tracing::info!(replication_factor, "creating {OFFSETS_TOPIC}");
        self.call(now, Purpose::OffsetsTopic, request.into());
    }

    /// The controller answered the creation of `__consumer_offsets` (or it failed; the next
    /// FindCoordinator asks again).
    pub(super) fn offsets_topic_created(&mut self, failure: Option<RequestError>) {
        self.offsets_topic_creating = false;
        if let Some(error) = failure {
            tracing::info!(%error, "{OFFSETS_TOPIC} not created (it may exist already)");
        }
    }

    /// Carries out what the coordinator asked for.
    pub(super) fn after_coordinator(&mut self, now: Instant) {
        // Bounded: each output is a reply, or one replica request whose answer (if it comes
        // at once) adds at most a bounded number of outputs of a finished append or read.
        while let Some(output) = self.coordinator.poll_output() {
            match output {
                CoordinatorOutput::Reply { token, response } => {
                    if let Some((conn, id)) = self.group_calls.remove(&token) {
                        self.reply(conn, id, Response::Group(response));
                    }
                }
                CoordinatorOutput::Append { partition, leader_epoch, append, batch } => {
                    let id = PartitionId::new(OFFSETS_TOPIC, partition);
                    let Some(replica) = self.replicas.get_mut(&id) else {
                        self.coordinator
                            .handle_append(append, Err(CoordinatorError::NotCoordinator));
                        continue;
                    };
                    self.next_token += 1;
                    let token = self.next_token;
                    let call = CoordinatorCall::Append { partition, append };
                    self.coordinator_calls.insert(token, call);
                    let out = &mut self.ops.replica(&id);
                    replica.produce(now, token, Acks::All, batch, Some(leader_epoch), out);
                    self.replica_touched(now, &id);
                }
                CoordinatorOutput::Read { partition, leader_epoch, read, offset } => {
                    let id = PartitionId::new(OFFSETS_TOPIC, partition);
                    let Some(replica) = self.replicas.get_mut(&id) else {
                        self.coordinator.handle_read(now, read, ReadOutcome::Failed);
                        continue;
                    };
                    self.next_token += 1;
                    let token = self.next_token;
                    self.coordinator_calls.insert(token, CoordinatorCall::Read { partition, read });
                    let out = &mut self.ops.replica(&id);
                    let max_bytes = COORDINATOR_LOAD_READ_BYTES;
                    replica.fetch(now, token, offset, max_bytes, Some(leader_epoch), out);
                    self.replica_touched(now, &id);
                }
            }
        }
    }

    /// A replica answered request `token`, which is not a client's: the coordinator's, if
    /// it is one of its.
    pub(super) fn coordinator_replica_reply(
        &mut self,
        now: Instant,
        token: u64,
        response: ReplicaResponse,
    ) {
        let Some(call) = self.coordinator_calls.remove(&token) else { return };
        match call {
            CoordinatorCall::Append { append, .. } => {
                let result = match response {
                    ReplicaResponse::Produced { .. } => Ok(()),
                    ReplicaResponse::Error(error) => Err(append_error(&error)),
                    other => panic!("an append answered with {other:?}"),
                };
                self.coordinator.handle_append(append, result);
            }
            CoordinatorCall::Read { read, .. } => {
                let outcome = match response {
                    ReplicaResponse::Fetched { records, high_watermark, .. } => {
                        ReadOutcome::Read { records, high_watermark }
                    }
                    _ => ReadOutcome::Failed,
                };
                self.coordinator.handle_read(now, read, outcome);
            }
        }
    }

    /// After any input to replica `id`: if it is an offsets partition, the coordinator leads
    /// it exactly while the replica leads it with a recovered log.
    pub(super) fn coordinator_check(&mut self, now: Instant, id: &PartitionId) {
        if &*id.topic != OFFSETS_TOPIC {
            return;
        }
        let partition = id.partition;
        let leading = (self.replicas.get(id))
            .filter(|replica| {
                replica.role() == Role::Leader
                    && replica.log().is_ready()
                    && replica.log().failure().is_none()
            })
            .map(|replica| {
                let log = replica.log();
                (replica.leader_epoch(), log.log_start_offset(), log.log_end_offset())
            });
        let current = self.coordinator.leader_epoch(partition);
        match leading {
            Some((epoch, start, end)) if current != Some(epoch) => {
                let topic_partitions = self.image.topic(OFFSETS_TOPIC).map(|t| t.partitions.len());
                if topic_partitions != Some(self.coordinator.config().partitions as usize) {
                    // Groups hash over the partitions the topic has, whatever the setting
                    // says now; a coordinator leading nothing yet takes the topic's count.
                    self.match_offsets_topic(topic_partitions);
                }
                if (0..self.coordinator.config().partitions).contains(&partition) {
                    self.coordinator.become_leader(now, partition, epoch, start, end);
                }
            }
            Some(_) => {}
            None if current.is_some() => self.coordinator_resign(partition),
            None => {}
        }
    }

    fn match_offsets_topic(&mut self, partitions: Option<usize>) {
        let Some(partitions) = partitions.and_then(|p| i32::try_from(p).ok()) else { return };
        if partitions == 0
            || (0..self.coordinator.config().partitions)
                .any(|p| self.coordinator.leader_epoch(p).is_some())
        {
            return;
        }
        let mut config = self.coordinator.config().clone();
        config.partitions = partitions;
        config.seed = rand::Rng::random(&mut self.rng);
        self.coordinator = Coordinator::new(config);
    }

    /// This node no longer leads offsets partition `partition` (or its replica is gone).
    pub(super) fn coordinator_resign(&mut self, partition: i32) {
        self.coordinator.resign(partition);
        self.coordinator_calls.retain(|_, call| call.partition() != partition);
    }

    /// The HW of replica `id` advanced: a load waiting for it goes on.
    pub(super) fn coordinator_high_watermark(&mut self, now: Instant, id: &PartitionId) {
        if &*id.topic == OFFSETS_TOPIC {
            self.coordinator.handle_high_watermark(now, id.partition);
        }
    }
}

/// What a failed append of the coordinator answers, as Kafka's coordinator maps produce
/// errors: a moved leadership is NOT_COORDINATOR, the rest COORDINATOR_NOT_AVAILABLE.
fn append_error(error: &ReplicaError) -> CoordinatorError {
    match error {
        ReplicaError::NotLeaderOrFollower
        | ReplicaError::FencedLeaderEpoch { .. }
        | ReplicaError::UnknownLeaderEpoch { .. } => CoordinatorError::NotCoordinator,
        other => CoordinatorError::NotAvailable(other.to_string()),
    }
}
