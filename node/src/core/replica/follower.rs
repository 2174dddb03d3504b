//! The follower's side of a replica (design §4, KIP-101, KIP-279): in a new leader epoch it
//! first makes its log agree with the leader's through OffsetForLeaderEpoch rounds, then
//! fetches, one request in flight, and applies the leader's HW only from then on.
//!
//! One round: ask the leader where the follower's latest epoch `E` ends. The leader answers
//! the largest epoch `E'` it knows at or below `E`, and where `E'` ends in its log. The
//! follower truncates to the minimum of that end, its own end of `E'`, and its LEO. If the
//! follower has `E'` itself, both logs now end inside epochs they share: they agree, and
//! fetching starts. Otherwise its latest epoch is now older than `E` and it asks again; each
//! round drops at least one epoch, so the rounds end. Never is the follower's own HW a
//! truncation point (the pre-KIP-101 bug).

use bytes::Bytes;

use super::hw::follower_high_watermark;
use super::messages::{
    ErrorCode, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, ReplicaFetch,
    ReplicaFetchResponse, ReplicaMessage,
};
use super::{Replica, ReplicaEvent, RoleState, Timer};
use crate::core::io::NodeId;
use crate::core::limits::REPLICA_TRUNCATION_ROUNDS_MAX;
#[cfg(feature = "canary")]
use crate::core::log::canary::{self, Canary};
use crate::core::log::{DiskQueue, LogError};
use crate::core::time::Instant;
use crate::core::topic::Durability;

/// What the follower does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Make the log agree with the leader's (OffsetForLeaderEpoch rounds).
    Reconcile,
    /// Fetch.
    Fetch,
}

/// What the one request in flight asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    EpochEnd { epoch: i32 },
    Fetch { fetch_offset: u64 },
}

#[derive(Debug, Clone, Copy)]
struct Outstanding {
    correlation_id: u64,
    asked: Asked,
}

/// A fetch answer that brought records: where they started, and the leader's LEO then.
#[derive(Debug, Clone, Copy)]
struct LastAnswer {
    from: u64,
    leader_log_end: u64,
}

/// The follower's state in one leader epoch.
#[derive(Debug)]
pub(super) struct FollowerState {
    /// The leader it follows.
    pub leader: NodeId,
    phase: Phase,
    outstanding: Option<Outstanding>,
    /// No request before this (after an error answer).
    backoff_until: Option<Instant>,
    /// The leader's HW from the latest fetch answer of this epoch.
    leader_high_watermark: Option<u64>,
    /// The latest fetch answer of this epoch that brought records.
    last_answer: Option<LastAnswer>,
    /// OffsetForLeaderEpoch rounds in this reconciliation.
    rounds: usize,
}

impl FollowerState {
    pub fn new(leader: NodeId) -> FollowerState {
        FollowerState {
            leader,
            phase: Phase::Reconcile,
            outstanding: None,
            backoff_until: None,
            leader_high_watermark: None,
            last_answer: None,
            rounds: 0,
        }
    }

    /// Starts over from reconciliation (the log changed under the follower: it failed and
    /// recovered, or a fetch showed it diverged).
    pub fn reset(&mut self) {
        *self = FollowerState::new(self.leader);
    }

    fn reconcile(&mut self) {
        self.phase = Phase::Reconcile;
        self.leader_high_watermark = None;
        self.last_answer = None;
        self.rounds = 0;
    }
}

impl Replica {
    /// Sends the next request if none is in flight and the log can take its answer. Returns
    /// whether anything happened.
    pub(super) fn step_follower(&mut self, now: Instant, _out: &mut impl DiskQueue) -> bool {
        let mut progressed = self.apply_leader_high_watermark();
        let fsync = self.config.durability == Durability::Fsync;
        let RoleState::Follower(follower) = &mut self.role else { return progressed };
        if !self.log.is_ready() || self.truncating || follower.outstanding.is_some() {
            return progressed;
        }
        if follower.backoff_until.is_some_and(|until| until > now) {
            return progressed;
        }
        follower.backoff_until = None;
        #[cfg(feature = "canary")]
        let follower = {
            if follower.phase == Phase::Reconcile && self.canary_skips_reconciliation(now, _out) {
                return true;
            }
            let RoleState::Follower(follower) = &mut self.role else { unreachable!("checked") };
            follower
        };
        match follower.phase {
            Phase::Reconcile => match self.log.epochs().latest_epoch() {
                Some(epoch) => self.send_epoch_request(now, epoch),
                None if self.log.log_end_offset() > self.log.log_start_offset() => {
                    // Batches of no known epoch cannot be checked against the leader's.
                    let start = self.log.log_start_offset();
                    self.truncate(now, start, Phase::Fetch, _out);
                }
                None => follower.phase = Phase::Fetch,
            },
            // The producer state is being rebuilt: what is fetched could not be recorded.
            Phase::Fetch if !self.producers.is_ready() => return progressed,
            Phase::Fetch => {
                // Under `fsync` the leader counts only flushed offsets. While the leader holds
                // more than this log and all but the last answer is durable, fetch on at
                // once: that answer's sync runs meanwhile and a later fetch reports it (the
                // offsets reported trail the fetches by one round; decision 0029).
                // Otherwise fetch again only once what was appended is durable, so that
                // this fetch, which the leader may hold, moves the HW (group commit keeps
                // that one sync per round).
                let (leo, flushed) = (self.log.log_end_offset(), self.log.flushed_offset());
                let fetch_on = follower
                    .last_answer
                    .is_some_and(|last| last.leader_log_end > leo && flushed >= last.from);
                if fsync && flushed < leo && !fetch_on {
                    return progressed;
                }
                self.send_fetch(now);
            }
        }
        progressed = true;
        progressed
    }

    /// Under the leader's HW once fetching: the follower's own HW is the leader's, bounded by
    /// its LEO (and its flushed offset under `fsync`).
    fn apply_leader_high_watermark(&mut self) -> bool {
        let RoleState::Follower(follower) = &self.role else { return false };
        #[allow(unused_mut)]
        let mut phase = follower.phase;
        #[cfg(feature = "canary")]
        if canary::is(Canary::FollowerHwBeforeTruncation) {
            phase = Phase::Fetch;
        }
        let (Phase::Fetch, Some(leader_hw)) = (phase, follower.leader_high_watermark) else {
            return false;
        };
        if !self.log.is_ready() || self.truncating {
            return false;
        }
        let flushed = match self.config.durability {
            Durability::Fsync => Some(self.log.flushed_offset()),
            Durability::Replicate => None,
        };
        let before = self.high_watermark;
        let leo = self.log.log_end_offset();
        self.high_watermark = follower_high_watermark(before, leader_hw, leo, flushed);
        if self.high_watermark > before {
            let high_watermark = self.high_watermark;
            self.events.push_back(ReplicaEvent::HighWatermarkAdvanced { high_watermark });
        }
        self.high_watermark > before
    }

    fn send_epoch_request(&mut self, now: Instant, epoch: i32) {
        let correlation_id = self.next_correlation_id();
        let request = OffsetForLeaderEpochRequest {
            topic: self.config.topic.to_string(),
            partition: self.config.partition,
            correlation_id,
            replica_id: self.config.node_id.0,
            current_leader_epoch: self.leader_epoch(),
            leader_epoch: epoch,
        };
        let deadline = now + self.config.replica_request_timeout;
        let asked = Asked::EpochEnd { epoch };
        self.send_request(
            deadline,
            correlation_id,
            asked,
            ReplicaMessage::OffsetForLeaderEpoch(request),
        );
    }

    fn send_fetch(&mut self, now: Instant) {
        let correlation_id = self.next_correlation_id();
        let fetch_offset = self.log.log_end_offset();
        let wait = self.config.replica_fetch_wait_max;
        let request = ReplicaFetch {
            topic: self.config.topic.to_string(),
            partition: self.config.partition,
            correlation_id,
            replica_id: self.config.node_id.0,
            current_leader_epoch: self.leader_epoch(),
            fetch_offset,
            last_fetched_epoch: self.log.epochs().latest_epoch().unwrap_or(-1),
            flushed_offset: self.log.flushed_offset(),
            max_bytes: self.config.replica_fetch_bytes_max,
            max_wait_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
            // The node fills in its own (it knows its registration; the replica does not).
            broker_epoch: 0,
        };
        let deadline = now + wait + self.config.replica_request_timeout;
        let asked = Asked::Fetch { fetch_offset };
        self.send_request(deadline, correlation_id, asked, ReplicaMessage::Fetch(request));
    }

    fn send_request(
        &mut self,
        deadline: Instant,
        correlation_id: u64,
        asked: Asked,
        message: ReplicaMessage,
    ) {
        let RoleState::Follower(follower) = &mut self.role else { unreachable!("a follower") };
        follower.outstanding = Some(Outstanding { correlation_id, asked });
        let to = follower.leader;
        self.timers.set(Timer::Follower, deadline);
        self.events.push_back(ReplicaEvent::Send { to, message });
    }

    /// The request in flight timed out (the next step asks again), or a backoff ended.
    pub(super) fn follower_timer(&mut self, now: Instant) {
        if let RoleState::Follower(follower) = &mut self.role
            && follower.backoff_until.is_none_or(|until| until <= now)
        {
            follower.outstanding = None;
        }
    }

    /// Takes the outstanding request if `correlation_id` answers it; `None` for a stale or
    /// duplicated answer, which is ignored.
    fn take_outstanding(&mut self, correlation_id: u64) -> Option<Asked> {
        let RoleState::Follower(follower) = &mut self.role else { return None };
        let outstanding = follower.outstanding.filter(|o| o.correlation_id == correlation_id)?;
        follower.outstanding = None;
        self.timers.stop(Timer::Follower);
        Some(outstanding.asked)
    }

    fn back_off(&mut self, now: Instant) {
        let until = now + self.config.replica_fetch_backoff;
        if let RoleState::Follower(follower) = &mut self.role {
            follower.backoff_until = Some(until);
            self.timers.set(Timer::Follower, until);
        }
    }

    /// The leader's answer to an OffsetForLeaderEpoch: truncate, then ask again or fetch.
    pub(super) fn handle_offset_for_leader_epoch_response(
        &mut self,
        now: Instant,
        response: &OffsetForLeaderEpochResponse,
        out: &mut impl DiskQueue,
    ) {
        let Some(Asked::EpochEnd { epoch: asked }) = self.take_outstanding(response.correlation_id)
        else {
            return;
        };
        let error = ErrorCode::from_code(response.error_code);
        if error != ErrorCode::None || response.current_leader_epoch != self.leader_epoch() {
            self.back_off(now);
            return;
        }
        if self.log.epochs().latest_epoch() != Some(asked) || !self.log.is_ready() {
            return; // The log changed since the question; the next step asks afresh.
        }
        let RoleState::Follower(follower) = &mut self.role else { return };
        follower.rounds += 1;
        let (start, leo) = (self.log.log_start_offset(), self.log.log_end_offset());
        let (target, agreed) = if response.leader_epoch < 0 && response.end_offset >= 0 {
            // The leader holds none of our epochs any more (retention removed them; the end
            // offset is its log start): ours cannot be compared, and only what our HW covers
            // is committed, so the same as the leader's (or removed from it too).
            (self.high_watermark.clamp(start, leo), true)
        } else if response.leader_epoch < 0 || response.end_offset < 0 {
            // The leader holds no epoch at or below ours: nothing of ours is in its log.
            (start, true)
        } else {
            let (own_epoch, own_end) = self.log.epochs().end_offset_for(response.leader_epoch, leo);
            let own_end = u64::try_from(own_end).unwrap_or(start);
            let end = u64::try_from(response.end_offset).expect("checked non-negative");
            (end.min(own_end).min(leo), own_epoch == response.leader_epoch)
        };
        // Each round drops an epoch (module docs); more rounds than epochs is a bug.
        assert!(follower.rounds <= REPLICA_TRUNCATION_ROUNDS_MAX, "reconciliation loops");
        let then = if agreed { Phase::Fetch } else { Phase::Reconcile };
        tracing::debug!(topic = %self.config.topic, partition = self.config.partition,
            asked, answer = response.leader_epoch, end = response.end_offset, target,
            agreed, "OffsetForLeaderEpoch round");
        self.truncate(now, target, then, out);
    }

    /// Cuts the log at `target` (restarting it at its start if `target` is below it) and
    /// continues in `then` once the truncation is done.
    fn truncate(&mut self, now: Instant, target: u64, then: Phase, out: &mut impl DiskQueue) {
        let RoleState::Follower(follower) = &mut self.role else { return };
        follower.phase = then;
        let start = self.log.log_start_offset();
        self.truncating = true;
        let result = if target < start {
            if self.high_watermark > start {
                // Only after data loss (the Truncated handler's case), but the restart moves
                // the log end to `start` at once, and the HW may not stay above it meanwhile.
                tracing::warn!(topic = %self.config.topic, partition = self.config.partition,
                    hw = self.high_watermark, start, "restarting the log below the high watermark");
                self.high_watermark = start;
            }
            let restarted = self.log.truncate_fully_and_start_at(now, start, out);
            if restarted.is_ok() {
                // The producer state follows at once too (again when the restart is done).
                self.producers_truncated(start, out);
            }
            restarted
        } else {
            self.log.truncate_to(target, out)
        };
        if let Err(error) = result {
            // The log is failed or recovering: its failure path restarts reconciliation.
            tracing::debug!(topic = %self.config.topic, %error, "truncation refused");
            self.truncating = false;
            if let RoleState::Follower(follower) = &mut self.role {
                follower.reconcile();
            }
        }
    }

    /// The leader's answer to a fetch: append what it sent, learn its HW, or go back to
    /// reconciliation when the position did not fit its log.
    pub(super) fn handle_fetch_response(
        &mut self,
        now: Instant,
        response: ReplicaFetchResponse,
        out: &mut impl DiskQueue,
    ) {
        let Some(Asked::Fetch { fetch_offset }) = self.take_outstanding(response.correlation_id)
        else {
            return;
        };
        match ErrorCode::from_code(response.error_code) {
            ErrorCode::None => self.fetched(now, fetch_offset, response, out),
            ErrorCode::OffsetOutOfRange if response.log_start_offset > fetch_offset => {
                // Behind the leader's log start (or empty): restart the log there.
                let leader_start = response.log_start_offset;
                let RoleState::Follower(follower) = &mut self.role else { return };
                follower.phase = Phase::Fetch;
                self.truncating = true;
                if self.log.truncate_fully_and_start_at(now, leader_start, out).is_err() {
                    self.truncating = false;
                    return;
                }
                // The leader's producers whose batches all lie below its log start: the log
                // copied from there cannot tell of them (decision 0034).
                self.producers_handed(leader_start, &response.producers);
            }
            ErrorCode::OffsetOutOfRange => {
                // Ahead of the leader, or diverged from it: reconcile again.
                if let RoleState::Follower(follower) = &mut self.role {
                    follower.reconcile();
                    #[cfg(feature = "canary")]
                    if canary::is(Canary::FollowerHwBeforeTruncation) {
                        follower.leader_high_watermark = Some(response.high_watermark);
                    }
                }
            }
            _ => self.back_off(now),
        }
    }

    fn fetched(
        &mut self,
        now: Instant,
        fetch_offset: u64,
        response: ReplicaFetchResponse,
        out: &mut impl DiskQueue,
    ) {
        if response.leader_epoch != self.leader_epoch()
            || fetch_offset != self.log.log_end_offset()
            || self.truncating
        {
            return; // Answers a position the log has left; the next step fetches afresh.
        }
        if !self.producers.is_ready() {
            return; // The producer state is being rebuilt; fetch again once it is.
        }
        let records: Bytes = response.records;
        if !records.is_empty() {
            match self.log.append_as_follower(now, records.clone(), out) {
                Ok(_) => self.producers_follower_appended(&records, out),
                Err(LogError::StaleEpoch { .. }) => {
                    // The leader sent batches of an epoch older than our latest: diverged.
                    if let RoleState::Follower(follower) = &mut self.role {
                        follower.reconcile();
                    }
                    return;
                }
                Err(error) => {
                    tracing::debug!(topic = %self.config.topic, %error, "fetched batches refused");
                    self.back_off(now);
                    return;
                }
            }
        }
        if let RoleState::Follower(follower) = &mut self.role {
            follower.leader_high_watermark = Some(response.high_watermark);
            // Only an answer that brought records lets the next fetch go before the sync:
            // an empty one means there is nothing to fetch on.
            follower.last_answer = (!records.is_empty()).then_some(LastAnswer {
                from: fetch_offset,
                leader_log_end: response.log_end_offset,
            });
        }
        // Its log agrees with the leader's, up to at least what the leader's HW covers: it
        // holds every record a HW counted again, whatever its log lost.
        if self.log.log_end_offset() >= response.high_watermark {
            self.lost_tail = false;
        }
    }
}

#[cfg(feature = "canary")]
impl Replica {
    /// The canaries that replace reconciliation; returns whether one acted.
    /// - `FollowerTruncatesToHw`: truncate to the own HW and fetch from there (pre-KIP-101).
    /// - `FollowerHwBeforeTruncation`: fetch first, before any OffsetForLeaderEpoch round; the
    ///   answer's HW is applied at once, even when the answer says the log diverged
    ///   (KAFKA-14704).
    fn canary_skips_reconciliation(&mut self, now: Instant, out: &mut impl DiskQueue) -> bool {
        let RoleState::Follower(follower) = &mut self.role else { return false };
        if canary::is(Canary::FollowerTruncatesToHw) {
            let hw = self.high_watermark;
            if hw < self.log.log_end_offset() {
                self.truncate(now, hw, Phase::Fetch, out);
            } else {
                follower.phase = Phase::Fetch;
            }
            return true;
        }
        if canary::is(Canary::FollowerHwBeforeTruncation)
            && follower.leader_high_watermark.is_none()
        {
            self.send_fetch(now);
            return true;
        }
        false
    }
}
