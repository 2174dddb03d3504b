//! The node's part in the cluster: Raft's events applied to the metadata image, the active
//! controller fed and drained, this broker's registration and heartbeats, and every request
//! to the active controller (this node's own, and its clients' admin requests).
//!
//! A request to the controller is a *call*: it goes to this node's controller when it is
//! active, else to the Raft leader as a [`ToController`] message, and is answered by the
//! same token (the message's correlation id). The network may lose either way, and the
//! leader may change meanwhile, so a call is sent again after `CALL_ATTEMPT_TIMEOUT`, after
//! a NOT_CONTROLLER answer (after a short backoff), or at once when a new leader is known;
//! it fails once its own deadline passes. A call's answer is acted on once: later answers
//! to earlier attempts find no call and are dropped. Only idempotent requests are sent again
//! (a repeated registration of one incarnation is answered with its epoch; a repeated topic
//! creation is answered TOPIC_ALREADY_EXISTS, which a creation treats as done only when it
//! was an automatic one).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use super::lease::BrokerLease;
use super::*;
use crate::core::controller::messages::{
    AlterPartitionRequest, BrokerHeartbeatRequest, RegisterBrokerRequest, ReplyKind,
};
use crate::core::controller::{
    ControllerError, ControllerOutput, ControllerRequest, ControllerResponse, RequestKind,
    decode_batch, encode_batch,
};
use crate::core::raft::{RaftEvent, Role as RaftRole};

/// How long one attempt of a call to a remote controller may go unanswered.
const CALL_ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1_000);
/// The pause before asking again after NOT_CONTROLLER, or while no leader is known.
const CALL_RETRY_BACKOFF: Duration = Duration::from_millis(50);
/// How long a client's admin request may wait for the controller.
const CLIENT_CALL_TIMEOUT: Duration = Duration::from_millis(10_000);
/// How long an ISR change may wait before the replica is told it failed.
const ALTER_PARTITION_CALL_TIMEOUT: Duration = Duration::from_millis(3_000);
/// The pause before registering again after the controller refused.
const REGISTER_BACKOFF: Duration = Duration::from_millis(250);

/// What a call to the controller is for.
#[derive(Debug, Clone)]
pub(super) enum Purpose {
    /// A client's admin request.
    Client { conn: ConnId, id: RequestId },
    /// A topic a Metadata request creates (`wait` is the Metadata request's token).
    AutoCreate { wait: u64, name: Arc<str> },
    /// This broker's registration.
    Register,
    /// This broker's heartbeat, first sent at `sent` (any attempt the controller receives
    /// left at or after it, which is what the lease needs: decision 0020).
    Heartbeat { sent: Instant },
    /// An ISR change one of this node's leaders proposed.
    AlterPartition { partition: PartitionId, leader_epoch: i32, partition_epoch: i32 },
    /// The creation of `__consumer_offsets` a FindCoordinator asked for.
    OffsetsTopic,
    /// A block of producer ids for InitProducerId.
    ProducerIds,
}

/// Where the current attempt of a call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// Not sent: no controller known; try again at `retry_at`.
    Nowhere,
    /// This node's controller holds it.
    Local,
    /// Sent to that node.
    Remote(NodeId),
}

#[derive(Debug)]
struct Call {
    purpose: Purpose,
    request: ControllerRequest,
    /// When the call fails; `None` for a registration, which is tried until it succeeds.
    deadline: Option<Instant>,
    target: Target,
    /// When the current attempt is given up and the call sent again.
    retry_at: Option<Instant>,
}

/// The node's calls to the controller, and the requests of peers its controller holds.
#[derive(Debug, Default)]
pub(super) struct Calls {
    pending: BTreeMap<u64, Call>,
    /// Requests from peers, by the controller token they were handed in under.
    remote: HashMap<u64, (NodeId, u64)>,
}

impl Calls {
    fn next_deadline(&self) -> Option<Instant> {
        let times = self.pending.values().flat_map(|call| [call.deadline, call.retry_at]);
        times.flatten().min()
    }

    /// Whether a call for `purpose` is pending already (only one heartbeat or registration
    /// at a time).
    fn has(&self, wanted: fn(&Purpose) -> bool) -> bool {
        self.pending.values().any(|call| wanted(&call.purpose))
    }
}

/// This broker's registration with the active controller.
#[derive(Debug)]
pub(super) struct BrokerSession {
    /// Drawn at each start: tells this process's registration from an earlier one's.
    incarnation: u64,
    /// The epoch of this incarnation's registration, once answered.
    epoch: Option<u64>,
    /// Whether `partitions/` was checked for directories no replica of this node owns.
    pub(super) swept: bool,
    /// Whether this incarnation has been live once: from then on it serves admin requests
    /// and Metadata (before, they wait for it: see `Node::handle_request`).
    pub(super) started: bool,
    /// The lease the controller's answers to this incarnation's heartbeats grant.
    pub(super) lease: BrokerLease,
}

impl BrokerSession {
    pub(super) fn new(incarnation: u64) -> BrokerSession {
        BrokerSession {
            incarnation,
            epoch: None,
            swept: false,
            started: false,
            lease: BrokerLease::default(),
        }
    }

    pub(super) fn epoch(&self) -> Option<u64> {
        self.epoch
    }

    /// Notes whether the broker is live now; returns whether it just started.
    pub(super) fn check_started(&mut self, image: &MetadataImage, node_id: i32) -> bool {
        if self.started || !self.live(image, node_id) {
            return false;
        }
        self.started = true;
        true
    }

    /// Whether the image holds this incarnation's registration: replicas take their roles
    /// from the image from then on.
    pub(super) fn registered(&self, image: &MetadataImage) -> bool {
        self.epoch.is_some_and(|epoch| image.last_applied() >= epoch)
    }

    /// Whether the image shows this incarnation registered and unfenced: the broker is live.
    fn live(&self, image: &MetadataImage, node_id: i32) -> bool {
        let broker = image.broker(node_id);
        self.registered(image) && broker.is_some_and(|b| Some(b.epoch) == self.epoch && !b.fenced)
    }
}

fn is_error(response: &ControllerResponse, error: &ControllerError) -> bool {
    response.error_code == i32::from(error.error_code())
}

fn not_controller() -> ControllerError {
    ControllerError::NotController { leader_hint: None }
}

impl Node {
    // ----- Raft and the controller -----

    /// Acts on everything Raft and the controller reported, until neither has more.
    /// Returns whether anything beyond Raft and the outbox changed: a Raft event other than
    /// a message to send, a controller output, or the controller made active (see
    /// [`Node::after_raft_input`]).
    pub(super) fn after_raft(&mut self, now: Instant) -> bool {
        let mut metadata_changed = false;
        let mut beyond_raft = false;
        // Bounded: each pass handles what the other side queued; proposals are bounded by
        // the controller's pending-batch limit.
        for _ in 0..1024 {
            let mut progressed = false;
            while let Some(event) = self.raft.poll_event() {
                progressed = true;
                beyond_raft |= !matches!(event, RaftEvent::Send { .. });
                metadata_changed |= self.raft_event(now, event);
            }
            beyond_raft |= self.maybe_activate_controller(now);
            while let Some(output) = self.controller.poll_output() {
                progressed = true;
                beyond_raft = true;
                self.controller_output(now, output);
            }
            if !progressed {
                break;
            }
        }
        if metadata_changed {
            self.broker.lease.applied(self.image.last_applied());
            self.data_version += 1;
            self.metadata_applied(now);
        }
        beyond_raft
    }

    /// Handles one Raft event; returns whether the image changed.
    fn raft_event(&mut self, now: Instant, event: RaftEvent) -> bool {
        match event {
            RaftEvent::Send { to, message } => self.ops.send(to, message.into()),
            RaftEvent::Committed { index, payload, .. } => {
                let records = match decode_batch(&payload) {
                    Ok(records) => records,
                    Err(error) => {
                        // Raft checked the entry's checksum: a batch that does not decode was
                        // written by a build this one cannot read.
                        self.fatal = Some(format!(
                            "metadata log entry {index} does not decode ({error}); was it \
                             written by a newer Cairn?"
                        ));
                        return false;
                    }
                };
                // Raft reports a step's committed entries before the leader change of the
                // same step: a controller whose term has passed stops before it is handed
                // batches of another leader's.
                let leads = self.raft.role() == RaftRole::Leader;
                if self.controller.is_active()
                    && (!leads || self.controller_term != Some(self.raft.term()))
                {
                    let hint = self.raft.leader().map(|l| l.0 as i32);
                    self.controller.become_inactive(hint);
                    self.controller_term = None;
                }
                self.image.apply(index, &records);
                self.controller.handle_committed(index, &records);
                return true;
            }
            RaftEvent::Restore { index, data, .. } => match MetadataImage::restore(index, &data) {
                Ok(image) => {
                    self.image = image;
                    return true;
                }
                Err(error) => {
                    self.fatal =
                        Some(format!("the metadata snapshot at {index} does not decode: {error}"));
                }
            },
            RaftEvent::LeaderChanged { leader, term } => {
                tracing::info!(?leader, term, node = self.config.node_id.0, "metadata leader");
                let hint = leader.map(|l| l.0 as i32);
                // A new term ends the controller's activity even when this node leads it
                // again (Raft may report only the latest of a step-down and a re-election):
                // its batches of the old term may have been overwritten, and the next batch
                // committed need not be one it proposed.
                let same_term = self.controller_term == Some(term);
                let still_leads = leader == Some(self.config.node_id) && same_term;
                if self.controller.is_active() && !still_leads {
                    self.controller.become_inactive(hint);
                    self.controller_term = None;
                } else {
                    self.controller.set_leader_hint(hint);
                }
                // Calls sent to the old leader go to the new one now.
                for call in self.calls.pending.values_mut() {
                    if call.target != Target::Local {
                        call.retry_at = Some(now);
                    }
                }
                self.arm_calls_timer();
            }
            RaftEvent::SnapshotWanted { applied } => {
                let data = self.image.snapshot();
                if let Err(error) = self.raft.snapshot(applied, data, &mut self.ops.raft()) {
                    tracing::debug!(%error, applied, "metadata snapshot not taken");
                }
            }
            RaftEvent::Fatal(error) => self.fatal = Some(error),
        }
        false
    }

    /// Makes this node's controller active once it leads Raft and has applied everything in
    /// Raft's log, so that every batch committed from then on is one it proposed.
    /// Returns whether it did.
    fn maybe_activate_controller(&mut self, now: Instant) -> bool {
        let leads = self.raft.role() == RaftRole::Leader && self.raft.is_ready();
        let activate = leads
            && !self.controller.is_active()
            && self.raft.applied_index() == self.raft.last_index();
        if activate {
            tracing::info!(
                node = self.config.node_id.0,
                term = self.raft.term(),
                "active controller"
            );
            self.controller.become_active(now, self.image.clone());
            self.controller_term = Some(self.raft.term());
            // Brokers whose connections closed before this term get the grace, not a
            // fresh session timeout: this covers the active controller dying with them.
            for peer in self.peers_down.clone() {
                self.controller.handle_broker_link_down(now, peer.0 as i32);
            }
            // Calls waiting for a controller can be handed to this one.
            for call in self.calls.pending.values_mut() {
                if call.target == Target::Nowhere {
                    call.retry_at = Some(now);
                }
            }
            self.arm_calls_timer();
        }
        activate
    }

    fn controller_output(&mut self, now: Instant, output: ControllerOutput) {
        match output {
            ControllerOutput::Propose { records } => {
                let payload = encode_batch(&records);
                if let Err(error) = self.raft.propose(payload, &mut self.ops.raft()) {
                    tracing::info!(%error, "metadata proposal refused; controller steps down");
                    let hint = self.raft.leader().map(|l| l.0 as i32);
                    self.controller.become_inactive(hint);
                    self.controller_term = None;
                }
            }
            ControllerOutput::Reply { token, response } => {
                if let Some((to, correlation_id)) = self.calls.remote.remove(&token) {
                    let answer = FromController { correlation_id, response: Some(response) };
                    self.ops.send(to, Message::new(MessageKind::FromController(answer)));
                } else {
                    self.call_answered(now, token, Target::Local, response);
                }
            }
        }
    }

    /// A peer's request to this node's controller.
    pub(super) fn controller_request_from(
        &mut self,
        now: Instant,
        from: NodeId,
        request: ToController,
    ) {
        let correlation_id = request.correlation_id;
        let Some(inner) = request.request else { return };
        if !self.controller.is_active() {
            let hint = self.raft.leader().map(|l| l.0 as i32);
            let error = ControllerError::NotController { leader_hint: hint };
            let response = Some(ControllerResponse::error(&error));
            let answer = FromController { correlation_id, response };
            self.ops.send(from, Message::new(MessageKind::FromController(answer)));
            return;
        }
        let token = self.token();
        self.calls.remote.insert(token, (from, correlation_id));
        self.controller.handle_request(now, token, inner);
        self.after_raft(now);
    }

    /// The controller's answer to one of this node's calls.
    pub(super) fn controller_response(
        &mut self,
        now: Instant,
        from: NodeId,
        answer: FromController,
    ) {
        let Some(response) = answer.response else { return };
        self.call_answered(now, answer.correlation_id, Target::Remote(from), response);
    }

    // ----- calls -----

    /// Starts a call to the active controller.
    pub(super) fn call(&mut self, now: Instant, purpose: Purpose, request: ControllerRequest) {
        let deadline = match purpose {
            Purpose::Client { .. }
            | Purpose::AutoCreate { .. }
            | Purpose::OffsetsTopic
            | Purpose::ProducerIds => Some(now + CLIENT_CALL_TIMEOUT),
            Purpose::Register => None,
            Purpose::Heartbeat { .. } => {
                Some(now + self.config.cluster.broker_heartbeat_interval * 2)
            }
            Purpose::AlterPartition { .. } => Some(now + ALTER_PARTITION_CALL_TIMEOUT),
        };
        let token = self.token();
        let call = Call { purpose, request, deadline, target: Target::Nowhere, retry_at: None };
        self.calls.pending.insert(token, call);
        self.dispatch(now, token);
    }

    /// Sends call `token`'s request where the controller is believed to be.
    fn dispatch(&mut self, now: Instant, token: u64) {
        let me = self.config.node_id;
        let target = if self.controller.is_active() {
            Target::Local
        } else {
            match self.raft.leader() {
                Some(leader) if leader != me => Target::Remote(leader),
                _ => Target::Nowhere,
            }
        };
        let call = self.calls.pending.get_mut(&token).expect("dispatching a pending call");
        call.target = target;
        call.retry_at = match target {
            Target::Local => None,
            Target::Remote(_) => Some(now + CALL_ATTEMPT_TIMEOUT),
            Target::Nowhere => Some(now + CALL_RETRY_BACKOFF),
        };
        let request = call.request.clone();
        match target {
            Target::Local => {
                self.controller.handle_request(now, token, request);
                self.after_raft(now);
            }
            Target::Remote(to) => {
                let message = ToController { correlation_id: token, request: Some(request) };
                self.ops.send(to, Message::new(MessageKind::ToController(message)));
            }
            Target::Nowhere => {}
        }
        self.arm_calls_timer();
    }

    fn arm_calls_timer(&mut self) {
        match self.calls.next_deadline() {
            Some(at) => self.timers.set(Timer::Calls, at),
            None => self.timers.stop(Timer::Calls),
        }
    }

    pub(super) fn calls_timer(&mut self, now: Instant) {
        let expired: Vec<u64> = (self.calls.pending.iter())
            .filter(|(_, call)| call.deadline.is_some_and(|at| at <= now))
            .map(|(token, _)| *token)
            .collect();
        for token in expired {
            let call = self.calls.pending.remove(&token).expect("listed");
            self.call_failed(now, call.purpose, RequestError::ControllerTimeout);
        }
        let due: Vec<u64> = (self.calls.pending.iter())
            .filter(|(_, call)| call.retry_at.is_some_and(|at| at <= now))
            .map(|(token, _)| *token)
            .collect();
        for token in due {
            self.dispatch(now, token);
        }
        self.arm_calls_timer();
    }

    /// An answer to call `token` from `from`; ignored unless the call's current attempt went
    /// there.
    fn call_answered(
        &mut self,
        now: Instant,
        token: u64,
        from: Target,
        response: ControllerResponse,
    ) {
        let Some(call) = self.calls.pending.get_mut(&token) else { return };
        if call.target != from {
            return;
        }
        if is_error(&response, &not_controller()) {
            // Ask again where the hint, or Raft, says the controller is.
            call.target = Target::Nowhere;
            call.retry_at = Some(now + CALL_RETRY_BACKOFF);
            self.arm_calls_timer();
            return;
        }
        let call = self.calls.pending.remove(&token).expect("checked");
        self.arm_calls_timer();
        self.call_done(now, call.purpose, response);
    }

    fn call_done(&mut self, now: Instant, purpose: Purpose, response: ControllerResponse) {
        let refused = (response.error_code != 0).then(|| RequestError::Controller {
            code: response.error_code as i16,
            message: response.error_message.clone(),
        });
        match purpose {
            Purpose::Client { conn, id } => {
                let answer = match refused {
                    None => Response::TopicChanged,
                    Some(error) => Response::Error(error),
                };
                self.reply(conn, id, answer);
            }
            Purpose::AutoCreate { wait, name } => {
                let exists = ControllerError::TopicAlreadyExists(String::new());
                let failure = refused.filter(|_| !is_error(&response, &exists));
                self.auto_create_done(wait, name, failure);
            }
            Purpose::Register => match response.reply {
                Some(ReplyKind::RegisterBroker(reply)) if refused.is_none() => {
                    tracing::info!(
                        node = self.config.node_id.0,
                        epoch = reply.broker_epoch,
                        "broker registered"
                    );
                    self.broker.epoch = Some(reply.broker_epoch);
                    self.timers.set(Timer::Broker, now);
                    self.metadata_applied(now);
                }
                _ => {
                    tracing::info!(error = %response.error_message, "registration refused; retrying");
                    self.timers.set(Timer::Broker, now + REGISTER_BACKOFF);
                }
            },
            Purpose::Heartbeat { sent } => {
                let stale = is_error(
                    &response,
                    &ControllerError::StaleBrokerEpoch { node_id: 0, given: 0 },
                ) || is_error(&response, &ControllerError::BrokerNotRegistered(0));
                if stale {
                    // The controller no longer knows this incarnation: register anew.
                    tracing::info!(
                        node = self.config.node_id.0,
                        "broker epoch stale; registering again"
                    );
                    self.broker.epoch = None;
                    self.broker.lease.revoke();
                    self.timers.set(Timer::Broker, now);
                } else {
                    self.heartbeat_answered(sent, &response);
                }
            }
            Purpose::AlterPartition { partition, leader_epoch, partition_epoch } => {
                if refused.is_some() {
                    // A refusal because the partition moved on may follow a commit of this
                    // very change (a retried call): its outcome is not known.
                    let moved_on = is_error(
                        &response,
                        &ControllerError::InvalidUpdateVersion { current: 0, given: 0 },
                    ) || is_error(
                        &response,
                        &ControllerError::FencedLeaderEpoch { current: 0, given: 0 },
                    );
                    let epochs = (leader_epoch, partition_epoch);
                    self.alter_partition_failed(now, &partition, epochs, !moved_on);
                }
            }
            Purpose::OffsetsTopic => self.offsets_topic_created(refused),
            Purpose::ProducerIds => {
                let block = match (response.reply, refused) {
                    (Some(ReplyKind::ProducerIds(reply)), None) => {
                        Ok((reply.first_id, reply.count))
                    }
                    (_, Some(error)) => Err(error),
                    (_, None) => Err(RequestError::ControllerTimeout),
                };
                self.producer_ids_allocated(now, block);
            }
        }
    }

    fn call_failed(&mut self, now: Instant, purpose: Purpose, error: RequestError) {
        match purpose {
            Purpose::Client { conn, id } => self.fail(conn, id, error),
            Purpose::AutoCreate { wait, name } => self.auto_create_done(wait, name, Some(error)),
            Purpose::Register => self.timers.set(Timer::Broker, now),
            // The lease runs out by itself.
            Purpose::Heartbeat { .. } => {}
            Purpose::AlterPartition { partition, leader_epoch, partition_epoch } => {
                // Timed out: it may have committed.
                let epochs = (leader_epoch, partition_epoch);
                self.alter_partition_failed(now, &partition, epochs, false);
            }
            Purpose::OffsetsTopic => self.offsets_topic_created(Some(error)),
            Purpose::ProducerIds => self.producer_ids_allocated(now, Err(error)),
        }
    }

    // ----- this broker -----

    /// Registers this broker, or heartbeats once registered; runs every heartbeat interval.
    pub(super) fn broker_timer(&mut self, now: Instant) {
        let interval = self.config.cluster.broker_heartbeat_interval;
        self.timers.set(Timer::Broker, now + interval);
        if !self.raft.is_ready() {
            // The registration carries the data directory's id, which Raft's recovery reads.
            return;
        }
        let node_id = self.config.node_id.0 as i32;
        let metadata_offset = self.raft.applied_index();
        match self.broker.epoch {
            None if !self.calls.has(|p| matches!(p, Purpose::Register)) => {
                let cluster = &self.config.cluster;
                let request = RegisterBrokerRequest {
                    node_id,
                    incarnation: self.broker.incarnation,
                    host: cluster.advertised_host.clone(),
                    port: u32::from(cluster.advertised_port),
                    rack: None,
                    metadata_offset,
                    directory_id: self.raft.directory_id(),
                };
                self.call(now, Purpose::Register, RequestKind::RegisterBroker(request).into());
            }
            Some(broker_epoch) if !self.calls.has(|p| matches!(p, Purpose::Heartbeat { .. })) => {
                let request = BrokerHeartbeatRequest {
                    node_id,
                    broker_epoch,
                    metadata_offset,
                    want_shutdown: self.shutting_down,
                };
                let purpose = Purpose::Heartbeat { sent: now };
                self.call(now, purpose, RequestKind::BrokerHeartbeat(request).into());
            }
            _ => {}
        }
    }

    /// The controller answered a heartbeat first sent at `sent`: "unfenced" grants the lease
    /// (decision 0020), "fenced" ends it.
    fn heartbeat_answered(&mut self, sent: Instant, response: &ControllerResponse) {
        let Some(ReplyKind::Heartbeat(reply)) = &response.reply else { return };
        if response.error_code != 0 {
            return;
        }
        if reply.is_fenced {
            self.broker.lease.revoke();
            return;
        }
        let until = sent + BrokerLease::length(self.config.cluster.broker_session_timeout);
        let applied = self.image.last_applied();
        self.broker.lease.granted(until, reply.metadata_offset, applied);
    }

    /// Whether this broker holds its lease at `now`: the controller cannot have fenced it.
    pub fn holds_lease(&self, now: Instant) -> bool {
        self.broker.lease.held(now)
    }

    /// Asks the controller for the ISR change (or the resignation) a leader replica proposed
    /// in its (leader epoch, partition epoch).
    pub(super) fn propose_isr(
        &mut self,
        now: Instant,
        partition: &PartitionId,
        (leader_epoch, partition_epoch): (i32, i32),
        new_isr: Vec<NodeId>,
        resign: bool,
    ) {
        let topic = self.image.topic(&partition.topic);
        let (Some(broker_epoch), Some(topic)) = (self.broker.epoch, topic) else {
            let epochs = (leader_epoch, partition_epoch);
            return self.alter_partition_failed(now, partition, epochs, true);
        };
        let me = self.config.node_id;
        let replica = self.replicas.get(partition);
        let member_epoch = |id: &NodeId| {
            if *id == me {
                broker_epoch
            } else {
                replica.and_then(|r| r.follower_broker_epoch(*id)).unwrap_or(0)
            }
        };
        let request = AlterPartitionRequest {
            broker_id: me.0 as i32,
            broker_epoch,
            topic_id: topic.id.to_vec(),
            partition: partition.partition,
            leader_epoch,
            partition_epoch,
            new_isr: new_isr.iter().map(|n| n.0 as i32).collect(),
            resign,
            new_isr_broker_epochs: new_isr.iter().map(member_epoch).collect(),
        };
        let purpose =
            Purpose::AlterPartition { partition: partition.clone(), leader_epoch, partition_epoch };
        self.call(now, purpose, RequestKind::AlterPartition(request).into());
    }
}
