//! One partition on one node: its [`PartitionLog`] and the replication state around it
//! (design §3 durability, §4 replication; decision 0009).
//!
//! A [`Replica`] is the leader of its partition, a follower of another node, or neither, as
//! the committed metadata says ([`Replica::set_partition_state`]). It owns:
//! - as leader: the producers waiting for their acknowledgement, every follower's log end
//!   offset (LEO) and last caught-up time, the high watermark (HW), the fetches of followers
//!   parked until there is something new (long polling), and the one ISR change
//!   (AlterPartition) in flight;
//! - as follower: the truncation protocol of a new leader epoch (OffsetForLeaderEpoch,
//!   KIP-101/279), the one fetch in flight, and the leader's HW once it may apply it;
//! - in both: the log reads in flight, by token.
//!
//! Methods, in the order a driver (the node) uses them:
//! - getters: [`role`](Replica::role), [`leader_epoch`](Replica::leader_epoch),
//!   [`high_watermark`](Replica::high_watermark), [`log`](Replica::log),
//!   [`isr`](Replica::isr), [`state`](Replica::state), [`wants_flush`](Replica::wants_flush);
//! - inputs: [`set_partition_state`](Replica::set_partition_state) (committed metadata),
//!   [`handle_message`](Replica::handle_message) (a peer replica's message),
//!   [`handle_disk`](Replica::handle_disk), [`handle_timeout`](Replica::handle_timeout),
//!   [`alter_partition_failed`](Replica::alter_partition_failed);
//! - client requests: [`produce`](Replica::produce), [`fetch`](Replica::fetch),
//!   [`list_offsets`](Replica::list_offsets), each answered by a [`ReplicaEvent::Reply`]
//!   carrying the caller's token;
//! - mutators: [`flush`](Replica::flush) (group commit: once per round of outputs);
//! - outputs: [`poll_event`](Replica::poll_event) until `None`, then
//!   [`poll_timeout`](Replica::poll_timeout).
//!
//! Contract kept:
//! - The HW is the minimum LEO over the maximal ISR (KIP-497: the committed ISR, plus a
//!   pending expansion, keeping members a pending shrink would drop), where under `fsync`
//!   every LEO is a flushed LEO. A leader's HW never moves back. Consumers never read at or
//!   above it. An acks=all write is acknowledged once the HW passed it.
//! - A follower fetches only after its log agrees with the leader's (OffsetForLeaderEpoch
//!   until the epochs agree), and only then applies the leader's HW. It never truncates to
//!   its own HW.
//! - Divergence is found by OffsetForLeaderEpoch, not by KIP-320's diverging-epoch field: a
//!   fetch whose position does not fit the leader's log (ahead of its LEO, or past the end
//!   of the follower's last epoch there) is answered OFFSET_OUT_OF_RANGE, and the follower
//!   runs the OffsetForLeaderEpoch rounds again (or restarts at the leader's log start when
//!   it is behind it).
//! - A leader relies on a shrunk ISR only once the controller committed it.
//! - After its log failed, a leader stops serving until a newer leader epoch, unless it is
//!   the partition's only replica: followers may have copied writes the failure took back,
//!   and new writes in the same epoch would diverge from them unseen.

mod follower;
pub mod hw;
mod leader;
pub mod messages;
mod producers;
mod types;

#[cfg(test)]
mod harness;
#[cfg(test)]
mod tests;
#[cfg(all(test, feature = "canary"))]
mod tests_canary;
#[cfg(test)]
mod tests_producers;
#[cfg(test)]
mod tests_random;

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

use self::follower::FollowerState;
use self::leader::LeaderState;
pub use self::messages::{
    ErrorCode, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, ReplicaFetch,
    ReplicaFetchResponse, ReplicaMessage,
};
use self::producers::Producers;
pub use self::types::{
    Acks, OffsetSpec, PartitionState, REPLICA_FETCH_BYTES_DEFAULT, ReplicaConfig, ReplicaError,
    ReplicaEvent, ReplicaResponse, Role,
};
use super::io::{DiskResult, FileName, NodeId, OpId};
use super::limits::PRODUCER_ID_EXPIRATION_CHECK_INTERVAL;
use super::log::{DiskQueue, LogConfig, LogError, LogEvent, PartitionLog};
use super::time::Instant;
use super::timer::TimerTable;
use super::topic::Durability;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// Leader: look for followers that fell out of sync.
    IsrCheck,
    /// Leader: an ISR change timed out, or its backoff ended.
    AlterPartition,
    /// Leader: the earliest parked fetch is due.
    Parked,
    /// Follower: its request timed out, or its backoff ended.
    Follower,
    /// Recover the failed log.
    Recover,
    /// Forget producers idle for `producer.id.expiration.ms`.
    ProducerExpiry,
    /// Drop the range the log read ahead of a consumer that did not fetch it, and the tail
    /// cache of a log that stopped taking appends.
    ReadsHeld,
}

/// What a log read in flight is for.
#[derive(Debug, Clone, Copy)]
enum ReadFor {
    ClientFetch {
        token: u64,
    },
    ClientOffset {
        token: u64,
    },
    Replica {
        to: NodeId,
        correlation_id: u64,
        leader_epoch: i32,
    },
    /// A stretch of log replayed into the producer state.
    ProducerReplay,
}

#[derive(Debug)]
enum RoleState {
    None,
    Leader(Box<LeaderState>),
    Follower(FollowerState),
}

/// One partition on one node. See the module documentation.
#[derive(Debug)]
pub struct Replica {
    config: ReplicaConfig,
    log: PartitionLog,
    state: Option<PartitionState>,
    role: RoleState,
    high_watermark: u64,
    /// Whether a truncation of the log is under way (until its `Truncated` event).
    truncating: bool,
    /// Whether the log failed in this process and has not recovered since: its recovery
    /// then follows a loss (a log's first recovery, at start, does not).
    failed: bool,
    /// Under `replicate`: the log failed in this process, losing its unsynced tail, and the
    /// replica has not since fetched its way up to a leader's HW. Under any durability: its
    /// recovery after a failure cut records it had synced (damage on the medium). It may
    /// lack records a HW covered, so no committed state may count on it
    /// ([`Replica::act_on_lost_tail`]).
    lost_tail: bool,
    /// The log's flushed offset when it failed, until it recovered: a recovered log ending
    /// below it lost synced records.
    flushed_at_failure: Option<u64>,
    /// Whether it resigned a leadership over `lost_tail` (or its log failed while leading,
    /// which resigns too) and has not followed since: elected again, nobody better was.
    resigned_over_loss: bool,
    reads: HashMap<u64, ReadFor>,
    next_read_token: u64,
    next_correlation_id: u64,
    timers: TimerTable<Timer>,
    events: VecDeque<ReplicaEvent>,
    /// The idempotent producer state (module `producers`).
    producers: Producers,
}

impl Replica {
    /// Opens the partition's log in `dir` (recovery starts at once; [`ReplicaEvent::Recovered`]
    /// reports its end). The replica has no role until [`Replica::set_partition_state`].
    pub fn open(
        config: ReplicaConfig,
        dir: FileName,
        log_config: LogConfig,
        out: &mut impl DiskQueue,
    ) -> Replica {
        assert!(config.min_insync_replicas >= 1, "min.insync.replicas is at least 1");
        let log = PartitionLog::open(dir.clone(), log_config, out);
        let producers = Producers::open(dir, out);
        Replica {
            config,
            log,
            state: None,
            role: RoleState::None,
            high_watermark: 0,
            truncating: false,
            failed: false,
            lost_tail: false,
            flushed_at_failure: None,
            resigned_over_loss: false,
            reads: HashMap::new(),
            next_read_token: 0,
            next_correlation_id: 0,
            timers: TimerTable::default(),
            events: VecDeque::new(),
            producers,
        }
    }

    // ----- getters -----

    /// The settings in force.
    pub fn config(&self) -> &ReplicaConfig {
        &self.config
    }

    /// The partition's log.
    pub fn log(&self) -> &PartitionLog {
        &self.log
    }

    /// The role the latest committed state gives this replica.
    pub fn role(&self) -> Role {
        match &self.role {
            RoleState::None => Role::None,
            RoleState::Leader(_) => Role::Leader,
            RoleState::Follower(follower) => Role::Follower { leader: follower.leader },
        }
    }

    /// The latest committed state applied, if any.
    pub fn state(&self) -> Option<&PartitionState> {
        self.state.as_ref()
    }

    /// The current leader epoch (-1 before any state).
    pub fn leader_epoch(&self) -> i32 {
        self.state.as_ref().map_or(-1, |state| state.leader_epoch)
    }

    /// The committed ISR (empty before any state).
    pub fn isr(&self) -> &[NodeId] {
        self.state.as_ref().map_or(&[], |state| &state.isr)
    }

    /// The high watermark: consumers read below it.
    pub fn high_watermark(&self) -> u64 {
        self.high_watermark
    }

    /// Whether appended data or epoch changes wait for a flush that replication waits on:
    /// under `fsync`, acknowledgements and the HW wait for every replica's flush, so the node
    /// calls [`Replica::flush`] once per round of outputs (group commit).
    pub fn wants_flush(&self) -> bool {
        self.config.durability == Durability::Fsync && self.log.is_ready() && self.log.needs_flush()
    }

    /// Whether a flush is due for any reason (the node's periodic flush).
    pub fn needs_flush(&self) -> bool {
        self.log.is_ready() && self.log.needs_flush()
    }

    /// The follower this leader proposed an ISR change for and waits on, if any (tests).
    pub fn pending_isr(&self) -> Option<&[NodeId]> {
        match &self.role {
            RoleState::Leader(leader) => leader.pending_isr.as_ref().map(|p| p.new_isr.as_slice()),
            _ => None,
        }
    }

    // ----- mutators -----

    /// Replaces the settings (a topic's config changed).
    ///
    /// # Panics
    /// If the node, topic or partition changes, or `min_insync_replicas` is 0.
    pub fn set_config(&mut self, config: ReplicaConfig) {
        assert_eq!(config.node_id, self.config.node_id);
        assert_eq!(config.topic, self.config.topic);
        assert_eq!(config.partition, self.config.partition);
        assert!(config.min_insync_replicas >= 1, "min.insync.replicas is at least 1");
        self.config = config;
    }

    /// Replaces the log's settings (a topic's config changed).
    ///
    /// # Panics
    /// If `config` is invalid.
    pub fn set_log_config(&mut self, config: LogConfig) {
        self.log.set_config(config);
    }

    /// Syncs what was appended (group commit: call once per round of outputs when
    /// [`Replica::wants_flush`], and on the node's periodic flush).
    pub fn flush(&mut self, out: &mut impl DiskQueue) {
        self.log.flush(out);
    }

    /// Applies retention with the high watermark as the bound (Kafka never deletes what
    /// consumers cannot yet see).
    pub fn apply_retention(&mut self, now: Instant, out: &mut impl DiskQueue) -> usize {
        if !self.producers.is_ready() {
            return 0; // A rebuild reads the log from its covered offset: keep it there.
        }
        let deleted = self.log.apply_retention(now, self.high_watermark, out);
        if deleted > 0 {
            // Producers are kept (KIP-360); only the covered offset moves.
            self.producers.table.log_start_moved(self.log.log_start_offset());
        }
        deleted
    }

    /// Writes a snapshot of the producer state (at a clean stop), so that the next start
    /// replays only the log after it.
    pub fn snapshot_producers(&mut self, out: &mut impl DiskQueue) {
        self.producers.write_snapshot(out);
    }

    // ----- inputs -----

    /// Applies a committed state. A state not newer than the one applied (by leader epoch,
    /// then partition epoch) is ignored. A newer leader epoch changes the role: a new leader
    /// starts its epoch at its LEO; a new follower runs the truncation protocol before it
    /// fetches; a leader losing its role fails its waiting producers (retriable
    /// NOT_LEADER_OR_FOLLOWER). A newer partition epoch in the same leader epoch updates the
    /// ISR (the answer to an AlterPartition, or another change).
    ///
    /// # Panics
    /// If the state's ISR is not within its replicas, or its leader is not in its ISR: the
    /// controller never commits such a state.
    pub fn set_partition_state(
        &mut self,
        now: Instant,
        state: PartitionState,
        out: &mut impl DiskQueue,
    ) {
        for member in &state.isr {
            assert!(state.replicas.contains(member), "ISR member {member:?} not a replica");
        }
        if let Some(leader) = state.leader {
            assert!(state.isr.contains(&leader), "leader {leader:?} not in the ISR");
        }
        let (new_epoch, newer) = match &self.state {
            None => (true, true),
            Some(current) => (
                state.leader_epoch > current.leader_epoch,
                (state.leader_epoch, state.partition_epoch)
                    > (current.leader_epoch, current.partition_epoch),
            ),
        };
        if !newer {
            return;
        }
        self.state = Some(state);
        if new_epoch || !self.role_matches_state() {
            self.change_role();
        } else if matches!(self.role, RoleState::Leader(_)) {
            self.leader_isr_changed(now, out);
        }
        self.act_on_lost_tail(new_epoch);
        self.after_input(now, out);
    }

    /// A peer replica's message.
    pub fn handle_message(
        &mut self,
        now: Instant,
        from: NodeId,
        message: ReplicaMessage,
        out: &mut impl DiskQueue,
    ) {
        match message {
            ReplicaMessage::Fetch(request) => self.handle_replica_fetch(now, from, request, out),
            ReplicaMessage::OffsetForLeaderEpoch(request) => {
                self.handle_offset_for_leader_epoch(from, &request)
            }
            ReplicaMessage::FetchResponse(response) => {
                self.handle_fetch_response(now, response, out)
            }
            ReplicaMessage::OffsetForLeaderEpochResponse(response) => {
                self.handle_offset_for_leader_epoch_response(now, &response, out)
            }
        }
        self.after_input(now, out);
    }

    /// The result of disk op `id`. Returns `false` if the op is not this replica's.
    pub fn handle_disk(
        &mut self,
        now: Instant,
        id: OpId,
        result: DiskResult,
        out: &mut impl DiskQueue,
    ) -> bool {
        if !self.producer_disk_done(id, &result, out) && !self.log.handle_disk(now, id, result, out)
        {
            return false;
        }
        self.after_input(now, out);
        true
    }

    /// Time passed; call when the deadline of [`Replica::poll_timeout`] is reached.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut impl DiskQueue) {
        while let Some(timer) = self.timers.pop_expired(now) {
            match timer {
                Timer::IsrCheck => {
                    self.timers.set(Timer::IsrCheck, now + self.config.replica_lag_time_max / 2);
                    self.maybe_propose_isr(now);
                }
                Timer::AlterPartition => self.alter_partition_timer(now),
                Timer::Parked => self.answer_due_parked(now, out),
                Timer::Follower => self.follower_timer(now),
                Timer::Recover => {
                    tracing::info!(topic = %self.config.topic, partition = self.config.partition,
                        "recovering a failed partition log");
                    self.truncating = false;
                    self.log.recover(out);
                }
                Timer::ProducerExpiry => self.expire_producers(now),
                Timer::ReadsHeld => self.log.expire_reads_held(now),
            }
        }
        self.after_input(now, out);
    }

    /// The controller refused (or the node could not deliver) the ISR change proposed in
    /// `leader_epoch` on `partition_epoch`; it is proposed again after a backoff if still
    /// wanted. `not_committed`: the change surely did not commit (a refusal on its merits,
    /// or never sent), so the members it would have added stop counting for the HW; after
    /// a timeout or a refusal because the partition moved on, they count until the next
    /// partition state. An answer about any other proposal is ignored.
    pub fn alter_partition_failed(
        &mut self,
        now: Instant,
        (leader_epoch, partition_epoch): (i32, i32),
        not_committed: bool,
        out: &mut impl DiskQueue,
    ) {
        let backoff = self.config.alter_partition_backoff;
        if let RoleState::Leader(leader) = &mut self.role {
            let ours = self.state.as_ref().is_some_and(|state| {
                state.leader_epoch == leader_epoch && state.partition_epoch == partition_epoch
            });
            if ours && not_committed {
                leader.unconfirmed.clear();
            }
            if ours && leader.pending_isr.take().is_some() {
                self.timers.set(Timer::AlterPartition, now + backoff);
                leader.alter_blocked = true;
            }
        }
        self.after_input(now, out);
    }

    // ----- outputs -----

    /// The next event for the node.
    pub fn poll_event(&mut self) -> Option<ReplicaEvent> {
        self.events.pop_front()
    }

    /// When [`Replica::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    // ----- internals -----

    fn role_matches_state(&self) -> bool {
        let me = self.config.node_id;
        let Some(state) = &self.state else {
            return matches!(self.role, RoleState::None);
        };
        match (&self.role, state.leader) {
            (RoleState::Leader(_), Some(leader)) => leader == me,
            (RoleState::Follower(f), Some(leader)) => f.leader == leader,
            _ => false,
        }
    }

    /// Leaves the old role and takes the one the state gives.
    fn change_role(&mut self) {
        let me = self.config.node_id;
        let previous = std::mem::replace(&mut self.role, RoleState::None);
        if let RoleState::Leader(leader) = previous {
            self.stop_leading(*leader, || ReplicaError::NotLeaderOrFollower);
        }
        let state = self.state.as_ref().expect("a state to take the role from");
        for timer in [Timer::IsrCheck, Timer::AlterPartition, Timer::Parked, Timer::Follower] {
            self.timers.stop(timer);
        }
        let is_replica = state.replicas.contains(&me);
        self.role = match state.leader {
            Some(leader) if leader == me => RoleState::Leader(Box::new(LeaderState::new())),
            Some(leader) if is_replica => RoleState::Follower(FollowerState::new(leader)),
            _ => RoleState::None,
        };
        tracing::debug!(topic = %self.config.topic, partition = self.config.partition,
            epoch = state.leader_epoch, role = ?self.role(), "replica role");
    }

    /// Drains the log's events, moves the role forward, checks the invariants.
    fn after_input(&mut self, now: Instant, out: &mut impl DiskQueue) {
        // Bounded: each pass handles events the log queued; handling one may queue more
        // (a truncation reports at once), never without end.
        for _ in 0..1024 {
            let mut progressed = false;
            while let Some(event) = self.log.poll_event() {
                progressed = true;
                self.handle_log_event(now, event, out);
            }
            progressed |= self.step(now, out);
            if !progressed {
                break;
            }
        }
        match self.log.reads_held_deadline() {
            Some(until) => self.timers.set(Timer::ReadsHeld, until),
            None => self.timers.stop(Timer::ReadsHeld),
        }
        self.invariants();
    }

    /// Starts what the role wants done next; returns whether anything happened.
    /// A leader starts its epoch, and a follower fetches, only once the producer state is
    /// rebuilt (module `producers`); a follower reconciles meanwhile (a truncation restarts
    /// the rebuild).
    fn step(&mut self, now: Instant, out: &mut impl DiskQueue) -> bool {
        if self.timers.get(Timer::ProducerExpiry).is_none() {
            self.timers.set(Timer::ProducerExpiry, now + PRODUCER_ID_EXPIRATION_CHECK_INTERVAL);
        }
        let progressed = self.step_producers(out);
        progressed
            | match &self.role {
                RoleState::Leader(_) => self.step_leader(now, out),
                RoleState::Follower(_) => self.step_follower(now, out),
                RoleState::None => false,
            }
    }

    fn handle_log_event(&mut self, now: Instant, event: LogEvent, out: &mut impl DiskQueue) {
        match event {
            LogEvent::Recovered { log_start_offset, log_end_offset, .. } => {
                // Under `replicate` a crash may take back acknowledged writes (the setting's
                // contract); the HW never exceeds what the log holds.
                self.high_watermark = self.high_watermark.min(log_end_offset);
                self.events.push_back(ReplicaEvent::Recovered { log_start_offset, log_end_offset });
                // What the log holds may have changed under the table (a torn tail cut, or
                // unsynced writes lost): rebuild it.
                self.producers.want_reload();
                self.log_recovered();
            }
            // The step after every input acts on a flush: the leader's HW and acks=1 waits,
            // a follower's next fetch and its HW.
            LogEvent::Flushed { .. } => {}
            LogEvent::Read { token, result } => self.read_done(token, result, out),
            LogEvent::OffsetForTimestamp { token, result } => {
                if let Some(ReadFor::ClientOffset { token: client }) = self.reads.remove(&token) {
                    let response = match result {
                        Ok(found) => offset_response(found, self.high_watermark),
                        Err(error) => ReplicaResponse::Error(error.into()),
                    };
                    self.events.push_back(ReplicaEvent::Reply { token: client, response });
                }
            }
            LogEvent::Truncated { offset } => {
                self.truncating = false;
                if self.high_watermark > offset {
                    // Only after data loss (an unclean election, or a crash under
                    // `replicate`) does a follower cut below its HW; it never aims there.
                    tracing::warn!(topic = %self.config.topic, partition = self.config.partition,
                        hw = self.high_watermark, offset, "truncated below the high watermark");
                    self.high_watermark = offset;
                }
                self.producers_truncated(offset, out);
                self.events.push_back(ReplicaEvent::Truncated { offset });
            }
            LogEvent::Failed { error } => self.log_failed(now, error),
        }
    }

    fn log_failed(&mut self, now: Instant, error: LogError) {
        self.failed = true;
        self.flushed_at_failure.get_or_insert(self.log.flushed_offset());
        if self.config.durability == Durability::Replicate {
            self.lost_tail = true;
            // A leader resigns the epoch its log failed in (`suspend_leadership`).
            self.resigned_over_loss |= matches!(self.role, RoleState::Leader(_));
        }
        self.suspend_leadership(&error);
        if let RoleState::Follower(follower) = &mut self.role {
            follower.reset();
            self.leave_isr_after_loss();
        }
        self.truncating = false;
        self.timers.set(Timer::Recover, now + self.config.recovery_backoff);
        self.events.push_back(ReplicaEvent::Failed { error });
    }

    /// A leader found a batch that fails its checksum on every read: consumers and followers
    /// cannot get past it here, while another ISR member holds it intact. It stops leading
    /// its epoch and resigns it (as after a log failure), so the controller elects another;
    /// a lone replica keeps serving what is intact (the batch is never served).
    fn resign_over_corruption(&mut self, error: &LogError) {
        let me = self.config.node_id;
        let only_replica = self.state.as_ref().is_none_or(|state| state.replicas == [me]);
        let RoleState::Leader(leader) = &self.role else { return };
        if only_replica || leader.suspended_epoch.is_some() {
            return;
        }
        self.suspend_leadership(error);
    }

    /// A follower's log failed under `replicate`: what it had not synced is gone, records the
    /// HW counted among them, so it must not stay in the ISR (or the ELR), where the
    /// controller could elect it. It asks the controller to take it out (a resignation from
    /// a follower); it joins again by fetching. Under `fsync` the HW covers only synced
    /// records, so it keeps its place.
    fn leave_isr_after_loss(&mut self) {
        let me = self.config.node_id;
        let Some(state) = &self.state else { return };
        let member = state.isr.contains(&me);
        let lost = self.config.durability == Durability::Replicate || self.lost_tail;
        if !lost || !member || state.isr.len() < 2 {
            return;
        }
        tracing::info!(topic = %self.config.topic, partition = self.config.partition,
            "the log failed under replicate: asking to leave the ISR");
        self.events.push_back(ReplicaEvent::AlterPartition {
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            new_isr: state.isr.iter().copied().filter(|id| *id != me).collect(),
            resign: true,
        });
    }

    /// Keeps committed states from counting on a replica that lost its unsynced tail
    /// (`lost_tail`), after state `new_epoch` (or the same epoch's new ISR) was applied:
    /// - a follower named in the ISR asks to leave it: the leader may have proposed it on a
    ///   fetch from before the failure, whose answer came after it;
    /// - a new leader resigns the epoch, once: another ISR or ELR member may hold what it
    ///   lost, and the controller elects one that is live (decision 0016). Elected again
    ///   after that, nobody else was eligible, and it leads (a loss is then every ISR
    ///   member's, the `replicate` contract of design §3).
    ///
    /// The flag clears when, as a follower, it holds a leader's HW again (`fetched`).
    fn act_on_lost_tail(&mut self, new_epoch: bool) {
        let me = self.config.node_id;
        let Some(state) = &self.state else { return };
        match &mut self.role {
            RoleState::Follower(_) => {
                self.resigned_over_loss = false;
                if self.lost_tail && !self.failed {
                    self.leave_isr_after_loss();
                }
            }
            RoleState::Leader(leader) if new_epoch && self.lost_tail => {
                // The controller knows who else is eligible (the ELR too): it decides.
                let others = state.replicas.iter().any(|id| *id != me);
                if others && !self.resigned_over_loss {
                    tracing::info!(topic = %self.config.topic, partition = self.config.partition,
                        epoch = state.leader_epoch,
                        "elected after losing unsynced records: resigning for an eligible replica");
                    leader.suspended_epoch = Some(state.leader_epoch);
                    self.resigned_over_loss = true;
                } else {
                    self.lost_tail = false;
                    self.resigned_over_loss = false;
                }
            }
            _ => {}
        }
    }

    /// A leader stops leading its epoch over `error`: producers waiting on it get the error;
    /// it leads no more in it (module docs) but keeps the role, so that a later state of the
    /// same epoch does not make it serve again, and it resigns the epoch (a lone replica
    /// serves again once its log recovered).
    fn suspend_leadership(&mut self, error: &LogError) {
        let RoleState::Leader(leader) = &mut self.role else { return };
        let old = std::mem::take(leader.as_mut());
        let epoch = self.leader_epoch();
        let storage = ReplicaError::Log(error.clone());
        self.stop_leading(old, || storage.clone());
        if let RoleState::Leader(leader) = &mut self.role {
            leader.suspended_epoch = Some(epoch);
        }
    }

    fn log_recovered(&mut self) {
        let after_failure = std::mem::take(&mut self.failed);
        let flushed_before = self.flushed_at_failure.take();
        let end = self.log.log_end_offset();
        let lost_synced = after_failure && flushed_before.is_some_and(|flushed| end < flushed);
        if lost_synced {
            // Recovery cut records this log had synced: damage on the medium, which it
            // cannot tell from a torn tail. A HW may have counted them, whatever the
            // durability: it leaves the ISR, or resigns a leadership, as after a loss under
            // `replicate`, and counts again once it fetched up to a leader's HW.
            tracing::warn!(topic = %self.config.topic, partition = self.config.partition,
                flushed = flushed_before, log_end = end,
                "recovery cut records the log had synced: leaving the ISR");
            self.lost_tail = true;
        }
        let me = self.config.node_id;
        let only_replica = self.state.as_ref().is_some_and(|state| state.replicas == [me]);
        match &mut self.role {
            RoleState::Leader(leader) if only_replica => {
                leader.suspended_epoch = None;
                // Under `fsync` the HW of a lone replica is its flushed offset, and a
                // recovered log counts as flushed only what recovery's own syncs covered
                // (until they complete, consumers see less, as after a restart).
                if self.config.durability == Durability::Fsync {
                    self.high_watermark = self.high_watermark.min(self.log.flushed_offset());
                }
            }
            RoleState::Follower(follower) => {
                follower.reset();
                // The leader may have taken it into the ISR on a fetch from before the
                // failure, while its log was down: what it reported is no longer there. A
                // log's first recovery in this process lost nothing of this process's (a
                // restart is the controller's to handle: it saw the new registration).
                if after_failure {
                    self.leave_isr_after_loss();
                }
            }
            _ => {}
        }
        if lost_synced && matches!(self.role, RoleState::Leader(_)) {
            self.act_on_lost_tail(true);
        }
    }

    fn read_done(&mut self, token: u64, result: Result<Bytes, LogError>, out: &mut impl DiskQueue) {
        if let Err(error @ LogError::Corrupt { .. }) = &result {
            self.resign_over_corruption(error);
        }
        let Some(purpose) = self.reads.remove(&token) else {
            return;
        };
        match purpose {
            ReadFor::ClientFetch { token } => {
                let response = match result {
                    Ok(records) => ReplicaResponse::Fetched {
                        records,
                        high_watermark: self.high_watermark,
                        log_start_offset: self.log.log_start_offset(),
                    },
                    Err(error) => ReplicaResponse::Error(error.into()),
                };
                self.events.push_back(ReplicaEvent::Reply { token, response });
            }
            ReadFor::ClientOffset { .. } => unreachable!("offset lookups answer by their event"),
            ReadFor::ProducerReplay => self.producer_replay_read(token, result, out),
            ReadFor::Replica { to, correlation_id, leader_epoch } => {
                self.replica_read_done(to, correlation_id, leader_epoch, result)
            }
        }
    }

    fn next_read_token(&mut self) -> u64 {
        self.next_read_token += 1;
        self.next_read_token
    }

    fn next_correlation_id(&mut self) -> u64 {
        self.next_correlation_id += 1;
        self.next_correlation_id
    }

    /// Whether `current_leader_epoch` (if given) is this replica's epoch; the error says
    /// which way it is off (Kafka checks the epoch before the role).
    fn check_epoch(&self, current_leader_epoch: Option<i32>) -> Result<(), ReplicaError> {
        let current = self.leader_epoch();
        match current_leader_epoch {
            Some(request) if request < current => {
                Err(ReplicaError::FencedLeaderEpoch { request, current })
            }
            Some(request) if request > current => {
                Err(ReplicaError::UnknownLeaderEpoch { request, current })
            }
            _ => Ok(()),
        }
    }

    /// Checks the replica's invariants; a failure is a bug.
    pub fn invariants(&self) {
        self.log.invariants();
        if self.log.is_ready() {
            assert!(self.high_watermark <= self.log.log_end_offset(), "HW beyond the LEO");
            if self.producers.is_ready() {
                let covered = self.producers.table.covered_end_offset();
                assert!(covered <= self.log.log_end_offset(), "producer state beyond the LEO");
            }
        }
        if let Some(state) = &self.state {
            for member in &state.isr {
                assert!(state.replicas.contains(member), "ISR within the replicas");
            }
            if let Some(leader) = state.leader {
                assert!(state.isr.contains(&leader), "the leader is in the ISR");
            }
        }
        match &self.role {
            RoleState::Leader(leader) => self.leader_invariants(leader),
            RoleState::Follower(follower) => {
                assert_ne!(follower.leader, self.config.node_id, "following itself");
            }
            RoleState::None => {}
        }
    }
}

/// The answer to a lookup by timestamp: offsets at or above the HW are not visible yet.
fn offset_response(found: Option<(u64, i64)>, high_watermark: u64) -> ReplicaResponse {
    match found {
        Some((offset, timestamp)) if offset < high_watermark => {
            ReplicaResponse::Offset { offset: offset as i64, timestamp }
        }
        _ => ReplicaResponse::Offset { offset: -1, timestamp: -1 },
    }
}
