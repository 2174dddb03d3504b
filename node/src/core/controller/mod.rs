//! The controller: the metadata records, the metadata image, and the logic of the active
//! controller (design §4 and §5, decision 0009).
//!
//! The active controller is the Raft leader of the metadata log. This module knows nothing
//! of Raft: it is told "these records were committed at index i" and "you are (no longer)
//! the active controller", and it answers with records to propose and replies to send.
//!
//! ```text
//!   become_active(now, image) / become_inactive(hint)      (the node, from Raft's role)
//!   handle_request(now, token, ControllerRequest)          (brokers and the node)
//!   handle_committed(index, records)                       (Raft committed a batch)
//!   handle_broker_link_down(now, node_id)                  (its connections closed)
//!   handle_timeout(now)                                    (a broker's lease lapsed)
//!        |
//!        v
//!   poll_output() -> Propose { records }                   (append to the metadata log)
//!                  | Reply { token, response }             (answer request `token`)
//!   poll_timeout() -> the next lease deadline
//! ```
//!
//! # The contract with the node
//!
//! - `become_active` is called once this node leads Raft *and* its image has applied every
//!   entry before the leader's first entry of its term (KRaft waits for the same): from then
//!   on every batch committed is one this controller proposed, in the order it proposed them.
//!   `handle_committed` asserts that.
//! - Each `Propose` is appended to Raft, in order, as one entry ([`encode_batch`]). If Raft
//!   refuses (it is no longer the leader), the node calls `become_inactive`.
//! - Every committed batch is passed to `handle_committed` (and applied to the node's own
//!   image); while inactive the controller ignores them. Raft's own entries may be passed
//!   as empty batches or not at all.
//!
//! # Speculation
//!
//! Requests are checked against a *speculative* image: the committed image with every
//! pending (proposed, not committed) batch applied, so that two requests in flight cannot
//! both create one topic. A request that changes metadata is answered only once its batch
//! commits, from the committed image. An admin request (create or delete a topic, add
//! partitions, alter configs) that changes nothing was still judged against the speculative
//! image ("topic already exists" may be about a topic whose creation is pending), so its
//! answer waits until every batch pending when it came has committed, as Kafka's controller
//! does; a broker's request that changes nothing is answered at once. If leadership is lost,
//! every pending request fails with NOT_CONTROLLER (its change may still commit under the
//! next leader, as in Kafka). A registration's broker epoch is the index of
//! its batch, known only at commit: the speculative image holds epoch 0 until then.
//!
//! # Leases
//!
//! Heartbeats live in memory only. A broker whose lease (`broker_session_timeout`) lapses is
//! fenced: a `FenceBroker` record with the partition changes it causes ([`election`]). A
//! registered broker is fenced until a heartbeat reports it has applied the log up to its
//! registration; it is then unfenced and the partitions without a leader that it can lead
//! get one. A new active controller gives every broker a fresh lease, since their
//! heartbeats went to the old one.
//!
//! A lease is also cut short when the node's transport saw a broker's connections close
//! (a killed process's kernel closes them at once): [`Controller::handle_broker_link_down`]
//! makes it expire within `broker_link_down_grace` unless a heartbeat renews it first, so
//! a dead broker is fenced in a fraction of the session timeout while a reconnect that
//! heartbeats within the grace costs nothing (decision 0011).
//!
//! The broker keeps a lease of its own from the answers (decision 0020): an answer says
//! "fenced" when a committed *or* a pending batch fences the broker, and carries the
//! metadata offset committed when it was given, which the broker applies before it relies
//! on the answer.
//!
//! # Not built yet
//!
//! Preferred-leader rebalancing (a returning broker leads only partitions without a
//! leader), rack-aware placement, unregistering brokers, replica reassignment, and
//! KIP-966's unclean-shutdown handling (a broker
//! registering again after a crash keeps its place in the ISR and the ELR, which is sound
//! under `durability = fsync` only).

mod brokers;
pub mod election;
pub mod image;
pub mod messages;
mod placement;
pub mod records;
pub mod settings;
mod topics;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_liveness;
#[cfg(test)]
mod tests_random;
#[cfg(test)]
mod tests_topics;

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

pub use image::{BrokerState, MetadataImage, NO_LEADER, PartitionState, TopicId, TopicImage};
pub use messages::{ControllerError, ControllerRequest, ControllerResponse, RequestKind};
pub use records::{MetadataRecord, RecordKind, decode_batch, encode_batch};

use self::messages::{
    CreateTopicReply, DeleteTopicReply, HeartbeatReply, PartitionReply, ProducerIdsReply,
    RegisterBrokerReply, ReplyKind,
};
use super::limits::{
    BROKER_LINK_DOWN_GRACE_MS_DEFAULT, BROKER_SESSION_TIMEOUT_MS_DEFAULT,
    CONTROLLER_PENDING_BATCHES_MAX,
};
use super::rng::{self, CoreRng};
use super::time::Instant;
use super::timer::TimerTable;
use super::topic::TopicConfig;

/// Identifies a request to the controller; chosen by the node, echoed in the reply.
pub type Token = u64;

/// The controller's settings.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// The seed of the controller's generator (topic ids, placement).
    pub seed: u64,
    /// How long a broker's lease lasts after its last heartbeat.
    pub broker_session_timeout: Duration,
    /// How long a broker's lease lasts at most once its connections closed, unless a
    /// heartbeat renews it ([`Controller::handle_broker_link_down`]).
    pub broker_link_down_grace: Duration,
    /// The settings a new topic takes unless it sets them.
    pub topic_defaults: TopicConfig,
    /// The partition count of a topic created with -1.
    pub default_partitions: i32,
    /// The replication factor of a topic created with -1.
    pub default_replication_factor: i32,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            seed: 0,
            broker_session_timeout: Duration::from_millis(BROKER_SESSION_TIMEOUT_MS_DEFAULT),
            broker_link_down_grace: Duration::from_millis(BROKER_LINK_DOWN_GRACE_MS_DEFAULT),
            topic_defaults: TopicConfig::default(),
            default_partitions: 1,
            default_replication_factor: 1,
        }
    }
}

/// What the controller asks of the node.
#[derive(Debug, Clone, PartialEq)]
pub enum ControllerOutput {
    /// Append these records to the metadata log as one entry.
    Propose {
        /// The batch.
        records: Vec<MetadataRecord>,
    },
    /// Answer request `token`.
    Reply {
        /// The request's token.
        token: Token,
        /// The answer.
        response: ControllerResponse,
    },
}

/// What to answer once a batch commits, read from the committed image then.
#[derive(Debug, Clone, PartialEq)]
enum ReplyPlan {
    /// Success with nothing more to say.
    Done,
    RegisterBroker {
        node_id: i32,
    },
    Heartbeat {
        node_id: i32,
        broker_epoch: u64,
        caught_up: bool,
        want_shutdown: bool,
    },
    Partition {
        topic: TopicId,
        partition: i32,
    },
    CreateTopic {
        name: String,
    },
    DeleteTopic {
        topic: TopicId,
    },
    ProducerIds {
        first_id: i64,
        count: i64,
    },
}

impl ReplyPlan {
    /// The answer, read from `image` right after the batch committed (`speculative` is the
    /// image with the batches still pending).
    fn answer(&self, image: &MetadataImage, speculative: &MetadataImage) -> ControllerResponse {
        let reply = match self {
            ReplyPlan::Done => return ControllerResponse::ok(None),
            ReplyPlan::RegisterBroker { node_id } => {
                let broker = image.broker(*node_id).expect("its registration committed");
                ReplyKind::RegisterBroker(RegisterBrokerReply { broker_epoch: broker.epoch })
            }
            ReplyPlan::Heartbeat { node_id, broker_epoch, caught_up, want_shutdown } => {
                ReplyKind::Heartbeat(heartbeat_reply(
                    (image, speculative),
                    *node_id,
                    *broker_epoch,
                    *caught_up,
                    *want_shutdown,
                ))
            }
            ReplyPlan::Partition { topic, partition } => {
                let state = image.partition(*topic, *partition).expect("its change committed");
                ReplyKind::Partition(partition_reply(*topic, *partition, state))
            }
            ReplyPlan::CreateTopic { name } => {
                let topic = image.topic(name).expect("its creation committed");
                ReplyKind::CreateTopic(create_topic_reply(topic))
            }
            ReplyPlan::DeleteTopic { topic } => {
                ReplyKind::DeleteTopic(DeleteTopicReply { topic_id: topic.to_vec() })
            }
            ReplyPlan::ProducerIds { first_id, count } => {
                ReplyKind::ProducerIds(ProducerIdsReply { first_id: *first_id, count: *count })
            }
        };
        ControllerResponse::ok(Some(reply))
    }
}

/// The answer to a heartbeat. The broker counts as fenced when the committed image fences
/// it *or* a pending batch does: a broker told "unfenced" takes a lease from it (decision
/// 0020), which a fence already proposed would break.
fn heartbeat_reply(
    (committed, speculative): (&MetadataImage, &MetadataImage),
    node_id: i32,
    broker_epoch: u64,
    caught_up: bool,
    want_shutdown: bool,
) -> HeartbeatReply {
    let fenced_in = |image: &MetadataImage| {
        image.broker(node_id).is_none_or(|broker| broker.fenced || broker.epoch != broker_epoch)
    };
    let is_fenced = fenced_in(committed) || fenced_in(speculative);
    HeartbeatReply {
        is_caught_up: caught_up,
        is_fenced,
        should_shut_down: want_shutdown && fenced_in(committed),
        metadata_offset: committed.last_applied(),
    }
}

fn partition_reply(topic: TopicId, partition: i32, state: &PartitionState) -> PartitionReply {
    PartitionReply {
        topic_id: topic.to_vec(),
        partition,
        leader: state.leader,
        leader_epoch: state.leader_epoch,
        partition_epoch: state.partition_epoch,
        isr: state.isr.clone(),
        elr: state.elr.clone(),
    }
}

fn create_topic_reply(topic: &TopicImage) -> CreateTopicReply {
    let replication_factor = topic.partitions.first().map_or(0, |p| p.replicas.len());
    CreateTopicReply {
        topic_id: topic.id.to_vec(),
        partitions: i32::try_from(topic.partitions.len()).expect("partition counts fit i32"),
        replication_factor: i32::try_from(replication_factor).expect("replicas fit i32"),
        config: topic.settings.to_map(),
    }
}

/// What a request handler decided.
#[derive(Debug)]
enum Outcome {
    /// Answer now (nothing to change).
    Reply(Option<ReplyKind>),
    /// Propose these records, answer once they commit.
    Propose(Vec<MetadataRecord>, ReplyPlan),
}

/// A proposed batch waiting for its commit, with the request it answers.
#[derive(Debug)]
struct Pending {
    records: Vec<MetadataRecord>,
    reply: Option<(Token, ReplyPlan)>,
    /// Answers to admin requests judged while this was the newest pending batch, given once
    /// it commits.
    after: Vec<(Token, ControllerResponse)>,
}

/// The state of the active controller.
#[derive(Debug)]
struct Active {
    /// The image as of the last committed batch.
    committed: MetadataImage,
    /// `committed` with every pending batch applied.
    speculative: MetadataImage,
    pending: VecDeque<Pending>,
    /// Each broker's lease deadline.
    leases: TimerTable<i32>,
    /// The brokers that registered or heartbeated since this controller became active.
    heard: BTreeSet<i32>,
    /// The brokers a process of another incarnation tried to register as while the
    /// registered process's lease had not lapsed, and that the registered process has not
    /// heartbeated since: it has most likely stopped, and its replicas may lack what they
    /// held (decision 0013).
    replaced: BTreeSet<i32>,
}

impl Active {
    /// Who counts as live in the speculative image ([`Liveness`]).
    fn liveness(&self) -> Liveness<'_> {
        Liveness { image: &self.speculative, heard: &self.heard, replaced: &self.replaced }
    }
}

/// Who the active controller counts as live when it elects a leader or takes a fenced
/// broker out of an ISR: a broker unfenced in the image *and heard from* (registered or
/// heartbeated) since this controller became active. The image alone is not enough: a
/// broker unfenced in it may have died while no controller ran (every controller
/// restarting, or the broker on the controller's own node), and a new controller learns
/// that only when its lease lapses or a new process of it registers. Until then it must
/// neither lead nor be the ISR member left behind when another is fenced: under
/// `replicate` its new process may hold nothing of what the ISR held (decision 0013).
#[derive(Debug, Clone, Copy)]
pub(super) struct Liveness<'a> {
    image: &'a MetadataImage,
    heard: &'a BTreeSet<i32>,
    replaced: &'a BTreeSet<i32>,
}

impl<'a> Liveness<'a> {
    /// The image this view reads.
    pub(super) fn image(&self) -> &'a MetadataImage {
        self.image
    }

    /// Whether `node_id` is unfenced and heard from.
    pub(super) fn is_live(&self, node_id: i32) -> bool {
        self.heard.contains(&node_id) && self.image.is_live(node_id)
    }

    /// Whether `node_id` is unfenced in the image and no process of another incarnation
    /// has tried to replace its registered one: not known to have stopped, though perhaps
    /// not heard from yet.
    pub(super) fn may_be_running(&self, node_id: i32) -> bool {
        self.image.is_live(node_id) && !self.replaced.contains(&node_id)
    }
}

/// The controller. See the module documentation.
///
/// Getters: [`Self::is_active`], [`Self::committed_image`], [`Self::speculative_image`],
/// [`Self::pending_batches`]. Inputs: [`Self::become_active`], [`Self::become_inactive`],
/// [`Self::handle_request`], [`Self::handle_committed`], [`Self::handle_broker_link_down`],
/// [`Self::handle_timeout`]. Outputs:
/// [`Self::poll_output`], [`Self::poll_timeout`].
#[derive(Debug)]
pub struct Controller {
    config: ControllerConfig,
    rng: CoreRng,
    active: Option<Active>,
    leader_hint: Option<i32>,
    outbox: VecDeque<ControllerOutput>,
}

impl Controller {
    /// An inactive controller.
    pub fn new(config: ControllerConfig) -> Controller {
        Controller {
            rng: rng::seeded(config.seed),
            config,
            active: None,
            leader_hint: None,
            outbox: VecDeque::new(),
        }
    }

    // ----- getters -----

    /// Whether this is the active controller.
    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }

    /// The committed image, while active.
    pub fn committed_image(&self) -> Option<&MetadataImage> {
        self.active.as_ref().map(|active| &active.committed)
    }

    /// The committed image with the pending batches applied, while active.
    pub fn speculative_image(&self) -> Option<&MetadataImage> {
        self.active.as_ref().map(|active| &active.speculative)
    }

    /// Batches proposed and not yet committed.
    pub fn pending_batches(&self) -> usize {
        self.active.as_ref().map_or(0, |active| active.pending.len())
    }

    // ----- inputs -----

    /// This node became the active controller, with `image` applied up to just before its
    /// term's first entry. Every broker gets a fresh lease from `now`, and counts as live for
    /// elections only once it has been heard from ([`Liveness`]).
    ///
    /// # Panics
    /// If it is already active.
    pub fn become_active(&mut self, now: Instant, image: MetadataImage) {
        assert!(self.active.is_none(), "become_active twice without become_inactive");
        let mut leases = TimerTable::default();
        for broker in image.brokers() {
            leases.set(broker.node_id, now + self.config.broker_session_timeout);
        }
        let speculative = image.clone();
        let pending = VecDeque::new();
        let (heard, replaced) = (BTreeSet::new(), BTreeSet::new());
        let active = Active { committed: image, speculative, pending, leases, heard, replaced };
        self.active = Some(active);
        self.leader_hint = None;
        self.invariants();
    }

    /// This node is no longer the active controller (`leader_hint` may be the new one).
    /// Every pending request fails with NOT_CONTROLLER, proposals not yet taken by the node
    /// are dropped, and the speculative state is gone.
    pub fn become_inactive(&mut self, leader_hint: Option<i32>) {
        self.leader_hint = leader_hint;
        let Some(active) = self.active.take() else { return };
        self.outbox.retain(|output| matches!(output, ControllerOutput::Reply { .. }));
        let error = ControllerError::NotController { leader_hint };
        for pending in active.pending {
            let tokens = pending.reply.map(|(token, _)| token).into_iter();
            for token in tokens.chain(pending.after.into_iter().map(|(token, _)| token)) {
                let response = ControllerResponse::error(&error);
                self.outbox.push_back(ControllerOutput::Reply { token, response });
            }
        }
    }

    /// Updates the hint NOT_CONTROLLER answers carry.
    pub fn set_leader_hint(&mut self, leader_hint: Option<i32>) {
        self.leader_hint = leader_hint;
    }

    /// Handles request `token`. The answer comes out of [`Self::poll_output`], at once or
    /// once the records it causes are committed.
    pub fn handle_request(&mut self, now: Instant, token: Token, request: ControllerRequest) {
        let admin = matches!(
            request.kind,
            Some(
                RequestKind::CreateTopic(_)
                    | RequestKind::DeleteTopic(_)
                    | RequestKind::CreatePartitions(_)
                    | RequestKind::AlterConfigs(_)
            )
        );
        let outcome = match (&self.active, request.kind) {
            (None, _) => Err(ControllerError::NotController { leader_hint: self.leader_hint }),
            (Some(_), None) => Err(ControllerError::InvalidRequest("empty request".into())),
            (Some(_), Some(kind)) => self.dispatch(now, kind),
        };
        let response = match outcome {
            Ok(Outcome::Propose(records, plan)) => {
                self.propose(records, Some((token, plan)));
                return self.invariants();
            }
            Ok(Outcome::Reply(reply)) => ControllerResponse::ok(reply),
            Err(error) => ControllerResponse::error(&error),
        };
        match self.active.as_mut().and_then(|active| active.pending.back_mut()) {
            Some(newest) if admin => newest.after.push((token, response)),
            _ => self.reply(token, response),
        }
        self.invariants();
    }

    fn dispatch(&mut self, now: Instant, kind: RequestKind) -> Result<Outcome, ControllerError> {
        let outcome = match kind {
            RequestKind::RegisterBroker(request) => self.register_broker(now, &request)?,
            RequestKind::BrokerHeartbeat(request) => self.heartbeat(now, &request)?,
            RequestKind::AlterPartition(request) => self.alter_partition(&request)?,
            RequestKind::CreateTopic(request) => self.create_topic(&request)?,
            RequestKind::DeleteTopic(request) => self.delete_topic(&request)?,
            RequestKind::CreatePartitions(request) => self.create_partitions(&request)?,
            RequestKind::AlterConfigs(request) => self.alter_configs(&request)?,
            RequestKind::AllocateProducerIds(request) => self.allocate_producer_ids(&request)?,
        };
        if matches!(outcome, Outcome::Propose(..))
            && self.pending_batches() >= CONTROLLER_PENDING_BATCHES_MAX
        {
            return Err(ControllerError::Busy);
        }
        Ok(outcome)
    }

    /// The batch `records` was committed at `index`. While active it must be the oldest
    /// batch this controller proposed (or empty: an entry of Raft's own); its request is
    /// answered.
    ///
    /// # Panics
    /// While active, if `records` is not the oldest pending batch: the node broke the
    /// contract of `become_active` (see the module documentation).
    pub fn handle_committed(&mut self, index: u64, records: &[MetadataRecord]) {
        let Some(active) = &mut self.active else { return };
        if records.is_empty() {
            // Raft's own entries (the leader's first entry of its term) may come as empty
            // batches; this controller never proposes one.
            active.committed.apply(index, records);
            active.speculative.set_last_applied(index);
            return self.invariants();
        }
        let pending = active.pending.pop_front().expect("a batch committed while active is ours");
        assert!(pending.records == records, "batch {index} committed is not the one proposed");
        active.committed.apply(index, records);
        active.speculative.set_last_applied(index);
        // A registration's epoch is its index: the speculative image learns it now, unless
        // a later pending batch registers the broker again.
        for record in records {
            let Some(RecordKind::RegisterBroker(register)) = &record.kind else { continue };
            let registers_again = active
                .pending
                .iter()
                .any(|later| later.records.iter().any(|r| registers(r, register.node_id)));
            if !registers_again {
                active.speculative.copy_broker_from(&active.committed, register.node_id);
            }
        }
        if let Some((token, plan)) = pending.reply {
            let response = plan.answer(&active.committed, &active.speculative);
            self.reply(token, response);
        }
        for (token, response) in pending.after {
            self.reply(token, response);
        }
        self.invariants();
    }

    /// The node's transport saw broker `node_id`'s connections close: its lease now ends
    /// within `broker_link_down_grace` of `now` (never later than it already did), so a
    /// dead broker is fenced without waiting out the session timeout. A heartbeat in the
    /// grace renews the lease as usual: a reconnect costs nothing (decision 0011). Nothing
    /// happens while inactive or for a broker without a lease.
    pub fn handle_broker_link_down(&mut self, now: Instant, node_id: i32) {
        let grace = self.config.broker_link_down_grace;
        let Some(active) = &mut self.active else { return };
        let Some(deadline) = active.leases.get(node_id) else { return };
        let cut = deadline.min(now + grace);
        if cut < deadline {
            tracing::info!(node_id, "broker's connections closed: its lease ends in the grace");
            active.leases.set(node_id, cut);
        }
        self.invariants();
    }

    /// Fences every unfenced broker whose lease lapsed by `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(active) = &mut self.active else { return };
        let mut lapsed = Vec::new();
        while let Some(node_id) = active.leases.pop_expired(now) {
            lapsed.push(node_id);
        }
        for node_id in lapsed {
            let live = self.active.as_ref().expect("active").liveness();
            let Some(broker) = live.image().broker(node_id).filter(|broker| !broker.fenced) else {
                continue;
            };
            tracing::info!(node_id, epoch = broker.epoch, "broker lease lapsed: fencing it");
            let records = brokers::fence_records(live, node_id, broker.epoch);
            self.propose(records, None);
        }
        self.invariants();
    }

    // ----- outputs -----

    /// The next thing to do, if any.
    pub fn poll_output(&mut self) -> Option<ControllerOutput> {
        self.outbox.pop_front()
    }

    /// When to call [`Self::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.active.as_ref()?.leases.next_deadline()
    }

    // ----- internals -----

    fn active(&self) -> &Active {
        self.active.as_ref().expect("handlers run only while active")
    }

    fn reply(&mut self, token: Token, response: ControllerResponse) {
        self.outbox.push_back(ControllerOutput::Reply { token, response });
    }

    fn propose(&mut self, records: Vec<MetadataRecord>, reply: Option<(Token, ReplyPlan)>) {
        assert!(!records.is_empty(), "a proposal has records");
        let active = self.active.as_mut().expect("only the active controller proposes");
        active.speculative.apply_pending(&records);
        self.outbox.push_back(ControllerOutput::Propose { records: records.clone() });
        active.pending.push_back(Pending { records, reply, after: Vec::new() });
    }

    /// Asserts the controller's invariants. The images' own checks walk every partition, so
    /// they run in debug builds (tests and the simulator) only.
    ///
    /// # Panics
    /// If one does not hold.
    pub fn invariants(&self) {
        let Some(active) = &self.active else {
            assert!(
                self.outbox.iter().all(|o| matches!(o, ControllerOutput::Reply { .. })),
                "an inactive controller proposes nothing"
            );
            return;
        };
        assert_eq!(
            active.committed.last_applied(),
            active.speculative.last_applied(),
            "the speculative image follows the committed one"
        );
        for broker in active.speculative.live_brokers() {
            assert!(active.leases.get(broker.node_id).is_some(), "live broker without lease");
        }
        if cfg!(debug_assertions) {
            active.committed.invariants();
            active.speculative.invariants();
            let live = active.liveness();
            active.speculative.offline_invariants(|id| live.is_live(id));
            if active.pending.is_empty() {
                assert_eq!(active.speculative, active.committed, "nothing pending, same image");
            }
        }
    }
}

/// Whether `record` registers `node_id`.
fn registers(record: &MetadataRecord, node_id: i32) -> bool {
    matches!(&record.kind, Some(RecordKind::RegisterBroker(r)) if r.node_id == node_id)
}
