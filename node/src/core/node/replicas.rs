//! The node's replicas: roles from the committed metadata, client data requests, replica
//! traffic between nodes, the replicas' events, and the deletion of partitions.
//!
//! After every change of the image ([`Node::metadata_applied`]) the node makes its replicas
//! match it: it opens a replica for each partition whose replica list names this node,
//! hands each its partition state (once this broker is registered in this incarnation: see
//! the module documentation of `core::node`), hands changed topic settings on, and drops the
//! replicas of partitions that are gone or no longer placed here, deleting their files.
//! Once registered, the node also deletes directories under `partitions/` that no replica of
//! its own owns (left by a topic deleted while the node was down).

use std::sync::Arc;

use bytes::BytesMut;

use super::*;
use crate::core::controller::{NO_LEADER, TopicId, TopicImage};
use crate::core::io::{DiskOk, FileName};
use crate::core::replica::{
    PartitionState as ReplicaState, ReplicaConfig, ReplicaEvent, ReplicaMessage, ReplicaResponse,
};

fn node_ids(ids: &[i32]) -> Vec<NodeId> {
    ids.iter().map(|id| NodeId(*id as u32)).collect()
}

impl Node {
    // ----- roles from the image -----

    /// Makes the replicas match the image (see the module documentation).
    pub(super) fn metadata_applied(&mut self, now: Instant) {
        let me = self.config.node_id.0 as i32;
        let started = self.broker.registered(&self.image);
        // The partitions placed here, with their topic's id (which names the directory).
        let mut wanted: Vec<(PartitionId, TopicId)> = Vec::new();
        for topic in self.image.topics() {
            for (index, state) in topic.partitions.iter().enumerate() {
                if state.replicas.contains(&me) {
                    wanted.push((PartitionId::new(topic.name.clone(), index as i32), topic.id));
                }
            }
        }
        // Replicas of partitions gone, moved away, or of a topic deleted and created again.
        let stale: Vec<PartitionId> = (self.replicas.iter())
            .filter(|(id, replica)| {
                let dir = replica.log().dir();
                !wanted.iter().any(|(w, topic_id)| w == *id && id.dir(*topic_id) == *dir)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            self.drop_replica(&id);
        }
        for (id, topic_id) in wanted {
            let topic = self.image.topic_by_id(topic_id).expect("listed from the image");
            let state = &topic.partitions[id.partition as usize];
            let config = self.replica_config(&id, topic);
            let log_config = topic.settings.log.clone();
            let state = ReplicaState {
                replicas: node_ids(&state.replicas),
                isr: node_ids(&state.isr),
                leader: (state.leader != NO_LEADER).then_some(NodeId(state.leader as u32)),
                leader_epoch: state.leader_epoch,
                partition_epoch: state.partition_epoch,
            };
            if !self.replicas.contains_key(&id) {
                self.open_replica(&id, topic_id, config.clone(), log_config.clone());
            }
            let replica = self.replicas.get_mut(&id).expect("opened");
            if *replica.config() != config {
                replica.set_config(config);
            }
            if *replica.log().config() != log_config {
                replica.set_log_config(log_config);
            }
            if started {
                replica.set_partition_state(now, state, &mut self.ops.replica(&id));
            }
            self.replica_touched(now, &id);
        }
        if started && !self.broker.swept {
            self.broker.swept = true;
            let list = DiskOp::List { dir: FileName::new(PARTITIONS_DIR) };
            self.ops.submit_node_op(list, NodeOp::ListPartitions);
        }
        if self.broker.check_started(&self.image, me) {
            tracing::info!(node = me, "broker live: serving admin requests and Metadata");
            self.serve_waiting(now);
        }
    }

    fn replica_config(&self, id: &PartitionId, topic: &TopicImage) -> ReplicaConfig {
        let mut config = ReplicaConfig::new(self.config.node_id, id.topic.clone(), id.partition);
        config.durability = topic.settings.durability;
        config.min_insync_replicas = topic.settings.min_insync_replicas.max(1) as usize;
        config.replica_lag_time_max = self.config.cluster.replica_lag_time_max;
        config.replica_fetch_bytes_max = self.config.cluster.replica_fetch_bytes_max;
        config.recovery_backoff = self.config.recovery_backoff;
        config
    }

    fn open_replica(
        &mut self,
        id: &PartitionId,
        topic_id: TopicId,
        config: ReplicaConfig,
        log_config: crate::core::log::LogConfig,
    ) {
        let dir = id.dir(topic_id);
        let replica = Replica::open(config, dir, log_config, &mut self.ops.replica(id));
        self.replicas.insert(id.clone(), replica);
    }

    /// Drops the replica of `id` and deletes its files; whoever waits on it is told it is
    /// gone.
    fn drop_replica(&mut self, id: &PartitionId) {
        let replica = self.replicas.remove(id).expect("dropping a held replica");
        self.flush_wanted.remove(id);
        if &*id.topic == crate::core::coordinator::OFFSETS_TOPIC {
            self.coordinator_resign(id.partition);
        }
        if let Some(at) = self.replica_deadlines.remove(id) {
            self.replica_timers.remove(&(at, id.clone()));
        }
        let waiting: Vec<u64> = (self.client_calls.iter())
            .filter(|(_, call)| call.partition == *id)
            .map(|(token, _)| *token)
            .collect();
        for token in waiting {
            let call = self.client_calls.remove(&token).expect("listed");
            let error = RequestError::NotLeader { partition: id.clone(), leader: None };
            self.ops.reply(call.conn, call.id, Response::Error(error));
        }
        tracing::info!(%id, "deleting a replica no longer placed on this node");
        self.delete_files(replica.log().dir().clone());
    }

    /// Deletes directory `dir` of a partition and everything in it.
    fn delete_files(&mut self, dir: FileName) {
        if self.deleting.insert(dir.clone()) {
            let list = DiskOp::List { dir: dir.clone() };
            self.ops.submit_node_op(list, NodeOp::ListDeleted { dir });
        }
    }

    pub(super) fn node_op_done(&mut self, op: NodeOp, result: DiskResult) {
        match op {
            NodeOp::ListPartitions => self.partitions_listed(result),
            NodeOp::ListDeleted { dir } => {
                let entries = match result {
                    Ok(DiskOk::Listing(entries)) => entries,
                    Ok(other) => panic!("a listing completed with {other:?}"),
                    Err(error) => {
                        tracing::error!(%dir, %error, "cannot list a deleted partition");
                        Vec::new()
                    }
                };
                for entry in entries.into_iter().filter(|e| !e.is_dir) {
                    let file = dir.join(&entry.name);
                    self.ops.submit_node_op(DiskOp::Remove { file }, NodeOp::RemoveFile);
                }
                let remove = DiskOp::Remove { file: dir.clone() };
                self.ops.submit_node_op(remove, NodeOp::RemoveDir { dir });
            }
            NodeOp::RemoveFile => {
                if let Err(error) = result {
                    tracing::error!(%error, "cannot remove a file of a deleted partition");
                }
            }
            NodeOp::RemoveDir { dir } => {
                if let Err(error) = result {
                    // Left for the next start, which deletes what no replica owns.
                    tracing::error!(%dir, %error, "cannot remove a deleted partition");
                }
                self.deleting.remove(&dir);
            }
        }
    }

    /// Deletes the directories under `partitions/` that no replica of this node owns.
    fn partitions_listed(&mut self, result: DiskResult) {
        let entries = match result {
            Ok(DiskOk::Listing(entries)) => entries,
            Ok(other) => panic!("a listing completed with {other:?}"),
            Err(error) => {
                tracing::warn!(%error, "cannot list {PARTITIONS_DIR}/ for leftover partitions");
                return;
            }
        };
        let owned: Vec<FileName> = self.replicas.values().map(|r| r.log().dir().clone()).collect();
        for entry in entries.into_iter().filter(|entry| entry.is_dir) {
            let dir = FileName::new(PARTITIONS_DIR).join(&entry.name);
            if owned.contains(&dir) || self.deleting.contains(&dir) {
                continue;
            }
            if parse_dir_name(&entry.name).is_none() {
                tracing::warn!(name = %entry.name, "not a partition directory; left alone");
                continue;
            }
            tracing::info!(%dir, "deleting a partition directory no replica of this node owns");
            self.delete_files(dir);
        }
    }

    // ----- client data requests -----

    /// The replica of `id`, or the error a client gets when this node has none.
    fn replica_or_error(&self, id: &PartitionId) -> Result<(), RequestError> {
        if self.replicas.contains_key(id) {
            return Ok(());
        }
        let topic = self.image.topic(&id.topic);
        match topic.and_then(|t| t.partitions.get(id.partition as usize)) {
            Some(state) => Err(RequestError::NotLeader {
                partition: id.clone(),
                leader: (state.leader != NO_LEADER).then_some(NodeId(state.leader as u32)),
            }),
            None => Err(RequestError::UnknownPartition(id.clone())),
        }
    }

    /// Registers a client request under a new token, for the replica's answer.
    fn client_token(&mut self, conn: ConnId, id: RequestId, partition: &PartitionId) -> u64 {
        let token = self.token();
        self.client_calls.insert(token, ClientCall { conn, id, partition: partition.clone() });
        token
    }

    pub(super) fn produce(
        &mut self,
        now: Instant,
        conn: ConnId,
        id: RequestId,
        partition: PartitionId,
        acks: Acks,
        batch: BytesMut,
    ) {
        let refused = if self.shutting_down {
            Err(RequestError::NodeNotReady)
        } else if &*partition.topic == crate::core::coordinator::OFFSETS_TOPIC {
            // The coordinator appends its records to the replica directly; a client's
            // records there would be skipped at load, so they are refused here.
            let topic = partition.topic.to_string();
            Err(RequestError::InvalidTopic(crate::core::topic::TopicError::Internal(topic)))
        } else {
            self.replica_or_error(&partition)
        };
        if let Err(error) = refused {
            if acks != Acks::None {
                self.fail(conn, id, error);
            }
            return;
        }
        let token = if acks == Acks::None { 0 } else { self.client_token(conn, id, &partition) };
        let replica = self.replicas.get_mut(&partition).expect("checked");
        replica.produce(now, token, acks, batch, None, &mut self.ops.replica(&partition));
        self.replica_touched(now, &partition);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn fetch(
        &mut self,
        now: Instant,
        conn: ConnId,
        id: RequestId,
        partition: PartitionId,
        offset: u64,
        max_bytes: u32,
        leader_epoch: Option<i32>,
    ) {
        if let Err(error) = self.replica_or_error(&partition) {
            return self.fail(conn, id, error);
        }
        let token = self.client_token(conn, id, &partition);
        let replica = self.replicas.get_mut(&partition).expect("checked");
        let mut out = self.ops.replica(&partition);
        replica.fetch(now, token, offset, max_bytes, leader_epoch, &mut out);
        self.replica_touched(now, &partition);
    }

    pub(super) fn list_offsets(
        &mut self,
        now: Instant,
        conn: ConnId,
        id: RequestId,
        partition: PartitionId,
        spec: OffsetSpec,
        leader_epoch: Option<i32>,
    ) {
        if let Err(error) = self.replica_or_error(&partition) {
            return self.fail(conn, id, error);
        }
        let token = self.client_token(conn, id, &partition);
        let replica = self.replicas.get_mut(&partition).expect("checked");
        let mut out = self.ops.replica(&partition);
        replica.list_offsets(now, token, spec, leader_epoch, &mut out);
        self.replica_touched(now, &partition);
    }

    // ----- replica traffic and events -----

    /// A peer replica's message; returns the partition it touched.
    pub(super) fn replica_message(
        &mut self,
        now: Instant,
        from: NodeId,
        message: ReplicaMessage,
    ) -> Option<PartitionId> {
        let (topic, partition) = message.partition();
        let id = PartitionId::new(Arc::<str>::from(topic), partition);
        let Some(replica) = self.replicas.get_mut(&id) else {
            // Not (or no longer, or not yet) a replica here. A request is refused at once:
            // a follower may learn of a new partition before its leader does, and it then
            // backs off briefly and asks again instead of waiting out its request timeout
            // (with the HW held back meanwhile).
            tracing::debug!(%id, ?from, "replica message for a partition not held here");
            if let Some(refusal) =
                message.refusal(crate::core::replica::ErrorCode::NotLeaderOrFollower)
            {
                self.ops.send(from, refusal.into());
            }
            return None;
        };
        replica.handle_message(now, from, message, &mut self.ops.replica(&id));
        self.replica_touched(now, &id);
        Some(id)
    }

    /// After any input to replica `id`: acts on its events, re-arms its timer, and notes
    /// whether it wants a flush.
    pub(super) fn replica_touched(&mut self, now: Instant, id: &PartitionId) {
        while let Some(event) = self.replicas.get_mut(id).and_then(Replica::poll_event) {
            self.replica_event(now, id, event);
        }
        self.coordinator_check(now, id);
        let Some(replica) = self.replicas.get(id) else { return };
        if replica.wants_flush() {
            self.flush_wanted.insert(id.clone());
        }
        let deadline = replica.poll_timeout();
        if self.replica_deadlines.get(id).copied() != deadline {
            if let Some(at) = self.replica_deadlines.remove(id) {
                self.replica_timers.remove(&(at, id.clone()));
            }
            if let Some(at) = deadline {
                self.replica_deadlines.insert(id.clone(), at);
                self.replica_timers.insert((at, id.clone()));
            }
        }
    }

    fn replica_event(&mut self, now: Instant, id: &PartitionId, event: ReplicaEvent) {
        match event {
            ReplicaEvent::Reply { token, response } => {
                let Some(call) = self.client_calls.remove(&token) else {
                    return self.coordinator_replica_reply(now, token, response);
                };
                let epoch = self.replicas.get(id).map_or(-1, Replica::leader_epoch);
                let response = match response {
                    ReplicaResponse::Produced { base_offset } => Response::Produced { base_offset },
                    ReplicaResponse::Fetched { records, high_watermark, log_start_offset } => {
                        Response::Fetched { records, high_watermark, log_start_offset }
                    }
                    ReplicaResponse::Offset { offset, timestamp } => {
                        Response::Offset { offset, timestamp, leader_epoch: epoch }
                    }
                    ReplicaResponse::Error(error) => Response::Error(RequestError::Replica(error)),
                };
                self.ops.reply(call.conn, call.id, response);
            }
            ReplicaEvent::Send { to, mut message } => {
                if let ReplicaMessage::Fetch(fetch) = &mut message {
                    // KIP-903: a leader proposing this node into the ISR names this epoch,
                    // and a later registration (a restart) makes that proposal stale.
                    fetch.broker_epoch = self.broker.epoch().unwrap_or(0);
                }
                self.ops.send(to, message.into())
            }
            ReplicaEvent::AlterPartition { leader_epoch, partition_epoch, new_isr, resign } => {
                self.propose_isr(now, id, (leader_epoch, partition_epoch), new_isr, resign);
            }
            ReplicaEvent::HighWatermarkAdvanced { .. } => {
                self.data_version += 1;
                self.coordinator_high_watermark(now, id);
            }
            ReplicaEvent::Recovered { .. } => {
                // What recovery found is durable only once synced; under `fsync` the HW
                // waits for that, so sync at once rather than at the next flush interval.
                self.data_version += 1;
                if self.replicas.get(id).is_some_and(Replica::needs_flush) {
                    self.flush_wanted.insert(id.clone());
                }
            }
            ReplicaEvent::Truncated { .. } => {}
            ReplicaEvent::Failed { error } => {
                tracing::warn!(%id, %error, "a replica's log failed; it recovers after a backoff");
            }
        }
    }

    /// Tells the replica of `id` that its ISR change failed.
    pub(super) fn alter_partition_failed(
        &mut self,
        now: Instant,
        id: &PartitionId,
        epochs: (i32, i32),
        not_committed: bool,
    ) {
        let Some(replica) = self.replicas.get_mut(id) else { return };
        let mut out = self.ops.replica(id);
        replica.alter_partition_failed(now, epochs, not_committed, &mut out);
        self.replica_touched(now, id);
    }

    pub(super) fn apply_retention(&mut self, now: Instant) {
        let ids: Vec<PartitionId> = self.replicas.keys().cloned().collect();
        for id in ids {
            let replica = self.replicas.get_mut(&id).expect("listed");
            replica.apply_retention(now, &mut self.ops.replica(&id));
            self.replica_touched(now, &id);
        }
    }
}
