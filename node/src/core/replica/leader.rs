//! The leader's side of a replica: client produce, fetch and list-offsets; followers' fetches
//! and OffsetForLeaderEpoch; the high watermark; acks=all waits; ISR proposals (design §4).

use std::collections::{BTreeMap, VecDeque};

use bytes::{Bytes, BytesMut};

use super::hw::{FetchClock, leader_high_watermark};
use super::messages::{
    ErrorCode, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, ReplicaFetch,
    ReplicaFetchResponse, ReplicaMessage,
};
use super::{
    Acks, OffsetSpec, ReadFor, Replica, ReplicaError, ReplicaEvent, ReplicaResponse, RoleState,
    Timer, offset_response,
};
use crate::core::io::NodeId;
use crate::core::limits::REPLICA_ACK_WAITS_MAX;
use crate::core::log::batch::{BatchHeader, validate_produced_batch};
#[cfg(feature = "canary")]
use crate::core::log::canary::{self, Canary};
use crate::core::log::epoch::UNDEFINED_EPOCH;
use crate::core::log::{DiskQueue, LogError, ReadStart};
use crate::core::producer::{ProducerCheck, ProducerStateTable};
use crate::core::time::Instant;
use crate::core::topic::Durability;

/// What the leader knows of one follower, reset when it takes over (Kafka's `Replica`).
#[derive(Debug)]
pub(super) struct Progress {
    /// The follower's LEO from its latest fetch; unknown until it fetched in this epoch.
    leo: Option<u64>,
    /// Its flushed LEO from its latest fetch.
    flushed: Option<u64>,
    clock: FetchClock,
    /// The HW the latest answer to it carried: a fetch is parked only if it knows the HW.
    hw_sent: Option<u64>,
    /// The broker epoch its latest fetch carried (KIP-903).
    broker_epoch: Option<u64>,
}

impl Progress {
    fn new(now: Instant, leader_leo: u64) -> Progress {
        Progress {
            leo: None,
            flushed: None,
            clock: FetchClock::start(now, leader_leo),
            hw_sent: None,
            broker_epoch: None,
        }
    }

    /// The LEO the replication rules count: the flushed one under `fsync` (design §3).
    fn counted_leo(&self, durability: Durability) -> Option<u64> {
        match durability {
            Durability::Fsync => self.flushed,
            Durability::Replicate => self.leo,
        }
    }
}

/// A producer waiting for its acknowledgement.
#[derive(Debug, Clone, Copy)]
pub(super) struct Wait {
    token: u64,
    base_offset: u64,
    last_offset: u64,
}

/// A follower's fetch held until there is something new, or its wait ends.
#[derive(Debug)]
pub(super) struct Parked {
    request: ReplicaFetch,
    deadline: Instant,
}

/// An ISR change sent to the controller and not yet answered.
#[derive(Debug)]
pub(super) struct PendingIsr {
    pub new_isr: Vec<crate::core::io::NodeId>,
}

/// The leader's state in one leader epoch.
#[derive(Debug, Default)]
pub(super) struct LeaderState {
    /// Whether the epoch started (the log was ready and the epoch assigned at its LEO).
    started: bool,
    /// Set when the log failed in this epoch: the replica serves nothing until a new epoch.
    pub suspended_epoch: Option<i32>,
    /// The first offset of this leader epoch: a follower joins the ISR only past it.
    epoch_start_offset: u64,
    followers: BTreeMap<NodeId, Progress>,
    pub pending_isr: Option<PendingIsr>,
    /// Members an expansion proposed whose outcome is unknown (the call timed out, or the
    /// controller refused it because the partition moved on): the controller may have
    /// committed them, so the HW counts them until the next partition state says (KIP-497).
    pub unconfirmed: Vec<NodeId>,
    /// An ISR change failed; the next waits for the AlterPartition timer.
    pub alter_blocked: bool,
    /// acks=1 under `fsync`: waiting for the leader's own flush.
    local_waits: VecDeque<Wait>,
    /// acks=all: waiting for the HW.
    isr_waits: VecDeque<Wait>,
    parked: BTreeMap<NodeId, Parked>,
    /// The (LEO, HW) parked fetches were parked at: a change releases them.
    parked_view: (u64, u64),
}

impl LeaderState {
    pub fn new() -> LeaderState {
        LeaderState::default()
    }
}

impl Replica {
    /// As leader: the broker epoch follower `id`'s latest fetch in this epoch carried
    /// (KIP-903), which the ISR change proposing it in must name.
    pub fn follower_broker_epoch(&self, id: NodeId) -> Option<u64> {
        let RoleState::Leader(leader) = &self.role else { return None };
        leader.followers.get(&id).and_then(|progress| progress.broker_epoch)
    }

    // ----- client requests -----

    /// Appends a producer's batch as leader, stamped with the leader epoch. Answered by a
    /// [`ReplicaEvent::Reply`] for `token` (none for acks=0): acks=1 after the local append
    /// (after the local flush under `fsync`), acks=all once the HW passed the batch.
    pub fn produce(
        &mut self,
        now: Instant,
        token: u64,
        acks: Acks,
        batch: BytesMut,
        current_leader_epoch: Option<i32>,
        out: &mut impl DiskQueue,
    ) {
        if let Err(error) = self.try_produce(now, token, acks, batch, current_leader_epoch, out) {
            if acks == Acks::None {
                tracing::debug!(topic = %self.config.topic, %error, "acks=0 produce refused");
            } else {
                let response = ReplicaResponse::Error(error);
                self.events.push_back(ReplicaEvent::Reply { token, response });
            }
        }
        self.after_input(now, out);
    }

    fn try_produce(
        &mut self,
        now: Instant,
        token: u64,
        acks: Acks,
        batch: BytesMut,
        current_leader_epoch: Option<i32>,
        out: &mut impl DiskQueue,
    ) -> Result<(), ReplicaError> {
        self.check_epoch(current_leader_epoch)?;
        self.check_serving()?;
        if !self.producers.is_ready() {
            return Err(ReplicaError::Log(LogError::Recovering)); // Retriable.
        }
        let epoch = self.leader_epoch();
        let isr = self.isr().len();
        let min = self.config.min_insync_replicas;
        if acks == Acks::All && isr < min {
            return Err(ReplicaError::NotEnoughReplicas { isr, min });
        }
        let RoleState::Leader(leader) = &self.role else { unreachable!("checked") };
        if leader.local_waits.len() + leader.isr_waits.len() >= REPLICA_ACK_WAITS_MAX {
            return Err(ReplicaError::TooManyWaiting);
        }
        // The header is read without the CRC here; the append (or, for an answer without
        // one, `validate_produced_batch`) checks the whole batch, so its CRC is computed once.
        let header = BatchHeader::parse(&batch).map_err(LogError::from)?;
        let check = self.producers.table.check(&header);
        if !matches!(check, Ok(ProducerCheck::Append)) {
            validate_produced_batch(&batch, self.log.config().batch_bytes_max)
                .map_err(LogError::from)?;
        }
        #[allow(unused_mut)]
        let mut check = check?;
        #[cfg(feature = "canary")]
        if canary::is(Canary::IdempotenceNotDeduplicated) {
            check = ProducerCheck::Append;
        }
        let wait = match check {
            ProducerCheck::Append => {
                let info = self.log.append_as_leader(now, batch, epoch, out)?;
                self.producers.table.appended(&header, info.base_offset);
                let active = self.log.active_segment_base();
                self.producers.after_append(active, out);
                Wait { token, base_offset: info.base_offset, last_offset: info.last_offset }
            }
            // A retry of a batch in the log: nothing is appended, and the original's offsets
            // are answered under the condition the original's answer waits for (the HW for
            // acks=all), never earlier: the original may not be replicated yet.
            ProducerCheck::Duplicate { base_offset, last_offset } => {
                tracing::info!(topic = %self.config.topic, partition = self.config.partition,
                    producer_id = header.producer_id, sequence = header.base_sequence,
                    base_offset, "a retried batch answered with its original offset");
                Wait { token, base_offset, last_offset }
            }
        };
        self.wait_for_acks(acks, wait);
        Ok(())
    }

    /// Answers a produce now or queues it until the flush or HW its `acks` wait for. A
    /// duplicate's wait may be older than those queued: waits stay ordered by last offset.
    fn wait_for_acks(&mut self, acks: Acks, wait: Wait) {
        let (hw, flushed) = (self.high_watermark, self.log.flushed_offset());
        let RoleState::Leader(leader) = &mut self.role else { unreachable!("checked") };
        let reply = ReplicaResponse::Produced { base_offset: wait.base_offset };
        let queue = match (acks, self.config.durability) {
            (Acks::None, _) => return,
            (Acks::Leader, Durability::Replicate) => None,
            (Acks::Leader, Durability::Fsync) if wait.last_offset < flushed => None,
            (Acks::Leader, Durability::Fsync) => Some(&mut leader.local_waits),
            (Acks::All, _) if wait.last_offset < hw => None,
            (Acks::All, _) => Some(&mut leader.isr_waits),
        };
        match queue {
            None => {
                self.events.push_back(ReplicaEvent::Reply { token: wait.token, response: reply })
            }
            Some(queue) => {
                let at = queue.partition_point(|queued| queued.last_offset <= wait.last_offset);
                queue.insert(at, wait);
            }
        }
    }

    /// Whether this replica serves as leader now; the error says why not.
    fn check_serving(&self) -> Result<(), ReplicaError> {
        let RoleState::Leader(leader) = &self.role else {
            return Err(ReplicaError::NotLeaderOrFollower);
        };
        if let Some(leader_epoch) = leader.suspended_epoch {
            return Err(ReplicaError::LeadershipSuspended { leader_epoch });
        }
        if !leader.started {
            let error = self.log.failure().cloned().unwrap_or(LogError::Recovering);
            return Err(ReplicaError::Log(error));
        }
        Ok(())
    }

    /// A consumer's fetch: whole batches from `offset`, all below the HW. Answered by a
    /// [`ReplicaEvent::Reply`] for `token`.
    pub fn fetch(
        &mut self,
        now: Instant,
        token: u64,
        offset: u64,
        max_bytes: u32,
        current_leader_epoch: Option<i32>,
        out: &mut impl DiskQueue,
    ) {
        let result = self.check_epoch(current_leader_epoch).and_then(|()| self.check_serving());
        let response = match result {
            Err(error) => Some(ReplicaResponse::Error(error)),
            Ok(()) => {
                let read = self.next_read_token();
                #[allow(unused_mut)]
                let mut visible = self.high_watermark;
                #[cfg(feature = "canary")]
                if canary::is(Canary::LeaderLeoVisible) {
                    visible = self.log.log_end_offset();
                }
                match self.log.read_for_consumer(read, offset, visible, max_bytes, out) {
                    Ok(ReadStart::Pending) => {
                        self.reads.insert(read, ReadFor::ClientFetch { token });
                        None
                    }
                    Ok(ReadStart::Empty) => Some(ReplicaResponse::Fetched {
                        records: Bytes::new(),
                        high_watermark: self.high_watermark,
                        log_start_offset: self.log.log_start_offset(),
                    }),
                    Err(error) => Some(ReplicaResponse::Error(error.into())),
                }
            }
        };
        if let Some(response) = response {
            self.events.push_back(ReplicaEvent::Reply { token, response });
        }
        self.after_input(now, out);
    }

    /// A ListOffsets: the log start, the HW, or the first offset at a timestamp (below the
    /// HW). Answered by a [`ReplicaEvent::Reply`] for `token`.
    pub fn list_offsets(
        &mut self,
        now: Instant,
        token: u64,
        spec: OffsetSpec,
        current_leader_epoch: Option<i32>,
        out: &mut impl DiskQueue,
    ) {
        let answer = |offset: u64| ReplicaResponse::Offset { offset: offset as i64, timestamp: -1 };
        let result = self.check_epoch(current_leader_epoch).and_then(|()| self.check_serving());
        let response = match (result, spec) {
            (Err(error), _) => Some(ReplicaResponse::Error(error)),
            (Ok(()), OffsetSpec::Earliest) => Some(answer(self.log.log_start_offset())),
            (Ok(()), OffsetSpec::Latest) => Some(answer(self.high_watermark)),
            (Ok(()), OffsetSpec::Timestamp(timestamp)) => {
                let read = self.next_read_token();
                match self.log.offset_for_timestamp(read, timestamp, out) {
                    Ok(None) => {
                        self.reads.insert(read, ReadFor::ClientOffset { token });
                        None
                    }
                    Ok(Some(found)) => Some(offset_response(found, self.high_watermark)),
                    Err(error) => Some(ReplicaResponse::Error(error.into())),
                }
            }
        };
        if let Some(response) = response {
            self.events.push_back(ReplicaEvent::Reply { token, response });
        }
        self.after_input(now, out);
    }

    // ----- followers' requests -----

    /// A follower's fetch: check it, record the follower's position, then answer with what
    /// follows it (up to the LEO, not the HW), or park it until there is something new.
    pub(super) fn handle_replica_fetch(
        &mut self,
        now: Instant,
        from: NodeId,
        request: ReplicaFetch,
        out: &mut impl DiskQueue,
    ) {
        if let Err(code) = self.check_replica_fetch(from, &request) {
            self.send_fetch_response(from, request.correlation_id, code, Bytes::new());
            return;
        }
        let leo = self.log.log_end_offset();
        let durability = self.config.durability;
        let RoleState::Leader(leader) = &mut self.role else { unreachable!("checked") };
        let progress = leader.followers.get_mut(&from).expect("checked");
        progress.leo = Some(request.fetch_offset);
        progress.flushed = Some(request.flushed_offset.min(request.fetch_offset));
        progress.broker_epoch = Some(request.broker_epoch);
        let counted = progress.counted_leo(durability).expect("just set");
        progress.clock.observe_fetch(now, counted, leo);
        // The HW this fetch may move goes into its own answer (acks=all in one round trip).
        self.update_high_watermark();
        self.serve_replica_fetch(now, from, request, true, out);
    }

    /// The checks of a follower's fetch, in Kafka's order: epoch, role, position.
    fn check_replica_fetch(&self, from: NodeId, request: &ReplicaFetch) -> Result<(), ErrorCode> {
        match self.check_epoch(Some(request.current_leader_epoch)) {
            Err(ReplicaError::FencedLeaderEpoch { .. }) => {
                return Err(ErrorCode::FencedLeaderEpoch);
            }
            Err(_) => return Err(ErrorCode::UnknownLeaderEpoch),
            Ok(()) => {}
        }
        let RoleState::Leader(leader) = &self.role else {
            return Err(ErrorCode::NotLeaderOrFollower);
        };
        if leader.suspended_epoch.is_some() || !leader.started {
            return Err(ErrorCode::KafkaStorageError);
        }
        if !leader.followers.contains_key(&from) {
            return Err(ErrorCode::NotLeaderOrFollower);
        }
        let (start, leo) = (self.log.log_start_offset(), self.log.log_end_offset());
        let offset = request.fetch_offset;
        if offset > leo || offset < start {
            return Err(ErrorCode::OffsetOutOfRange);
        }
        // Defence in depth: a follower fetches only after OffsetForLeaderEpoch, so its last
        // epoch ends at or after its fetch offset in this log. If not, it diverged: send it
        // back to OffsetForLeaderEpoch rather than serve it batches that do not follow its log.
        // (The canary of KAFKA-6361 plants Kafka's state before KIP-320 too: no such check.)
        if request.last_fetched_epoch >= 0 && offset > start && !answers_asked_epoch() {
            let (epoch, end) = self.log.epochs().end_offset_for(request.last_fetched_epoch, leo);
            if epoch != request.last_fetched_epoch || end < offset as i64 {
                return Err(ErrorCode::OffsetOutOfRange);
            }
        }
        Ok(())
    }

    /// Answers a checked fetch: reads what follows it, or parks it (`may_park`) when there is
    /// nothing new and the follower already knows the HW.
    fn serve_replica_fetch(
        &mut self,
        now: Instant,
        from: NodeId,
        request: ReplicaFetch,
        may_park: bool,
        out: &mut impl DiskQueue,
    ) {
        let leo = self.log.log_end_offset();
        let epoch = self.leader_epoch();
        let (hw, wait_max) = (self.high_watermark, self.config.replica_fetch_wait_max);
        let correlation_id = request.correlation_id;
        if request.fetch_offset >= leo {
            let RoleState::Leader(leader) = &mut self.role else { return };
            let knows_hw = leader.followers.get(&from).is_some_and(|p| p.hw_sent == Some(hw));
            if may_park && knows_hw && request.max_wait_ms > 0 {
                let wait = std::time::Duration::from_millis(u64::from(request.max_wait_ms));
                let deadline = now + wait.min(wait_max);
                leader.parked.insert(from, Parked { request, deadline });
                leader.parked_view = (leo, hw);
                let due = leader.parked.values().map(|p| p.deadline).min().expect("one parked");
                self.timers.set(Timer::Parked, due);
                return;
            }
            self.send_fetch_response(from, correlation_id, ErrorCode::None, Bytes::new());
            return;
        }
        let token = self.next_read_token();
        let offset = request.fetch_offset;
        match self.log.read(token, offset, leo, request.max_bytes, out) {
            Ok(ReadStart::Pending) => {
                let purpose = ReadFor::Replica { to: from, correlation_id, leader_epoch: epoch };
                self.reads.insert(token, purpose);
            }
            Ok(ReadStart::Empty) => {
                self.send_fetch_response(from, correlation_id, ErrorCode::None, Bytes::new())
            }
            Err(error) => {
                let code = match error {
                    LogError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
                    _ => ErrorCode::KafkaStorageError,
                };
                self.send_fetch_response(from, correlation_id, code, Bytes::new());
            }
        }
    }

    /// A read for a follower finished: answer it if this is still the epoch it was read in.
    pub(super) fn replica_read_done(
        &mut self,
        to: NodeId,
        correlation_id: u64,
        leader_epoch: i32,
        result: Result<Bytes, LogError>,
    ) {
        if leader_epoch != self.leader_epoch() || self.check_serving().is_err() {
            return;
        }
        match result {
            Ok(records) => self.send_fetch_response(to, correlation_id, ErrorCode::None, records),
            Err(LogError::OffsetOutOfRange { .. }) => self.send_fetch_response(
                to,
                correlation_id,
                ErrorCode::OffsetOutOfRange,
                Bytes::new(),
            ),
            Err(_) => self.send_fetch_response(
                to,
                correlation_id,
                ErrorCode::KafkaStorageError,
                Bytes::new(),
            ),
        }
    }

    fn send_fetch_response(
        &mut self,
        to: NodeId,
        correlation_id: u64,
        error: ErrorCode,
        records: Bytes,
    ) {
        let hw = self.high_watermark;
        if let RoleState::Leader(leader) = &mut self.role
            && error == ErrorCode::None
            && let Some(progress) = leader.followers.get_mut(&to)
        {
            progress.hw_sent = Some(hw);
        }
        let start = self.log.log_start_offset();
        let producers = match error == ErrorCode::OffsetOutOfRange && self.producers.is_ready() {
            true => self.producers.table.retained_below(start),
            false => ProducerStateTable::new(),
        };
        let producers = match producers.is_empty() {
            true => Bytes::new(),
            false => Bytes::from(producers.snapshot()),
        };
        let response = ReplicaFetchResponse {
            topic: self.config.topic.to_string(),
            partition: self.config.partition,
            correlation_id,
            error_code: error.wire(),
            leader_epoch: self.leader_epoch(),
            high_watermark: hw,
            log_start_offset: start,
            log_end_offset: self.log.log_end_offset(),
            records,
            producers,
        };
        let message = ReplicaMessage::FetchResponse(response);
        self.events.push_back(ReplicaEvent::Send { to, message });
    }

    /// Whether every epoch this log holds is newer than `asked`: it holds no record of
    /// `asked` or older (retention removed them, and moved its oldest epoch's start up to
    /// its log start). A follower's records of those epochs can then not be vouched for:
    /// those at or above the oldest start diverge, and where the divergence began below it
    /// is lost with the records. KIP-279 answers the oldest epoch's start, which let a
    /// follower keep a divergent tail under it (simulator seed 16256). It is answered with
    /// the undefined epoch and this log's start: the follower keeps only what its HW covers
    /// (committed, so in this log too unless retention removed it).
    fn holds_no_epoch_up_to(&self, asked: i32) -> bool {
        self.log.epochs().entries().first().is_some_and(|oldest| asked < oldest.epoch)
    }

    /// A follower asks where an epoch ends in this log (KIP-279): the answer names the
    /// newest epoch at or below the one asked about that this log holds, and where it ends.
    /// Naming the epoch asked about instead would let a follower keep a suffix of an epoch
    /// this leader never had (KAFKA-6361). An epoch newer than this leader's own is refused.
    /// An epoch older than every one it holds is answered undefined
    /// ([`Replica::holds_no_epoch_up_to`]).
    pub(super) fn handle_offset_for_leader_epoch(
        &mut self,
        from: NodeId,
        request: &OffsetForLeaderEpochRequest,
    ) {
        let current = self.leader_epoch();
        let answer = match self.check_epoch(Some(request.current_leader_epoch)) {
            Err(ReplicaError::FencedLeaderEpoch { .. }) => Err(ErrorCode::FencedLeaderEpoch),
            Err(_) => Err(ErrorCode::UnknownLeaderEpoch),
            Ok(()) => match self.check_serving() {
                Err(ReplicaError::NotLeaderOrFollower) => Err(ErrorCode::NotLeaderOrFollower),
                Err(_) => Err(ErrorCode::KafkaStorageError),
                Ok(()) if request.leader_epoch > current => Err(ErrorCode::UnknownLeaderEpoch),
                Ok(()) if self.holds_no_epoch_up_to(request.leader_epoch) => {
                    Ok((UNDEFINED_EPOCH, self.log.log_start_offset() as i64))
                }
                Ok(()) => {
                    let (asked, leo) = (request.leader_epoch, self.log.log_end_offset());
                    match self.log.epochs().end_offset_for(asked, leo) {
                        (_, end) if end >= 0 && answers_asked_epoch() => Ok((asked, end)),
                        found => Ok(found),
                    }
                }
            },
        };
        let (error, (leader_epoch, end_offset)) = match answer {
            Ok(found) => (ErrorCode::None, found),
            Err(code) => (code, (-1, -1)),
        };
        let response = OffsetForLeaderEpochResponse {
            topic: self.config.topic.to_string(),
            partition: self.config.partition,
            correlation_id: request.correlation_id,
            error_code: error.wire(),
            current_leader_epoch: current,
            leader_epoch,
            end_offset,
        };
        let message = ReplicaMessage::OffsetForLeaderEpochResponse(response);
        self.events.push_back(ReplicaEvent::Send { to: from, message });
    }

    // ----- the leader's progress -----

    /// Starts the epoch once the log can take it, moves the HW, releases waits and parked
    /// fetches, proposes ISR changes. Returns whether anything happened.
    pub(super) fn step_leader(&mut self, now: Instant, out: &mut impl DiskQueue) -> bool {
        let RoleState::Leader(leader) = &self.role else { return false };
        if leader.suspended_epoch.is_some() {
            // It serves nothing more in this epoch: it only resigns it.
            return self.maybe_propose_isr(now);
        }
        if !leader.started {
            if !self.log.is_ready() || self.truncating || !self.producers.is_ready() {
                return false;
            }
            // Under `fsync` the epoch starts on a durable log: until recovery's syncs (or a
            // flush) cover the LEO, the HW could not count what the log holds, and a
            // consumer would be told the partition ends before data it may already have
            // been shown. Clients get the retriable "recovering" meanwhile.
            let fsync = self.config.durability == Durability::Fsync;
            if fsync && self.log.flushed_offset() < self.log.log_end_offset() {
                return false;
            }
            self.start_leading(now);
            return true;
        }
        let mut progressed = self.update_high_watermark();
        progressed |= self.release_parked(now, out);
        progressed |= self.maybe_propose_isr(now);
        progressed
    }

    /// The epoch starts at the LEO: assign it in the epoch cache (so OffsetForLeaderEpoch
    /// answers for it) and start every follower's tracking afresh.
    fn start_leading(&mut self, now: Instant) {
        let me = self.config.node_id;
        let epoch = self.leader_epoch();
        self.log.assign_epoch(epoch);
        let leo = self.log.log_end_offset();
        let entries = self.log.epochs().entries();
        let start =
            entries.iter().find(|entry| entry.epoch == epoch).map_or(leo, |e| e.start_offset);
        let state = self.state.as_ref().expect("a leader has a state");
        let followers = state.replicas.iter().filter(|id| **id != me);
        let followers = followers.map(|id| (*id, Progress::new(now, leo))).collect();
        let RoleState::Leader(leader) = &mut self.role else { unreachable!("a leader") };
        leader.started = true;
        leader.epoch_start_offset = start;
        leader.followers = followers;
        self.timers.set(Timer::IsrCheck, now + self.config.replica_lag_time_max / 2);
        tracing::info!(topic = %self.config.topic, partition = self.config.partition, epoch,
            start, hw = self.high_watermark, "leading");
    }

    /// Recomputes the HW over the maximal ISR and answers the producers it (or the leader's
    /// flush) released. Returns whether the HW moved.
    fn update_high_watermark(&mut self) -> bool {
        let me = self.config.node_id;
        let durability = self.config.durability;
        let min = self.config.min_insync_replicas;
        let Some(state) = &self.state else { return false };
        let RoleState::Leader(leader) = &mut self.role else { return false };
        if !leader.started || leader.suspended_epoch.is_some() || !self.log.is_ready() {
            return false;
        }
        let own = match durability {
            Durability::Fsync => self.log.flushed_offset(),
            Durability::Replicate => self.log.log_end_offset(),
        };
        let pending = leader.pending_isr.as_ref().map_or(&[][..], |p| &p.new_isr[..]);
        let isr = &state.isr[..];
        // The maximal ISR (KIP-497: the committed ISR, the members a pending change adds,
        // the expansions not confirmed yet), walked in place rather than collected.
        let maximal = isr.iter().chain(pending.iter().filter(|id| !isr.contains(id))).chain(
            leader.unconfirmed.iter().filter(|id| !isr.contains(id) && !pending.contains(id)),
        );
        #[allow(unused_mut)]
        let mut all_replicas = false;
        #[cfg(feature = "canary")]
        if canary::is(Canary::HwOverAllReplicas) {
            all_replicas = true;
        }
        let followers = &leader.followers;
        let leo_of = |id: &NodeId| followers.get(id).and_then(|p| p.counted_leo(durability));
        let before = self.high_watermark;
        // The strict min ISR rule (KIP-966): below `min.insync.replicas` committed members
        // the HW stays where it is, acks=0 and acks=1 writes included. The controller counts
        // on it: the members a shrink below the minimum drops stay eligible leaders (the
        // ELR), which is safe only if the HW cannot pass what they hold.
        let under_min = state.isr.len() < min;
        let hw = if under_min {
            before
        } else if all_replicas {
            let others = state.replicas.iter().filter(|id| **id != me);
            leader_high_watermark(before, own, others.map(leo_of))
        } else {
            leader_high_watermark(before, own, maximal.filter(|id| **id != me).map(leo_of))
        };
        assert!(hw >= before, "the HW never moves back");
        self.high_watermark = hw;
        let flushed = self.log.flushed_offset();
        while leader.local_waits.front().is_some_and(|wait| wait.last_offset < flushed) {
            let wait = leader.local_waits.pop_front().expect("checked");
            let response = ReplicaResponse::Produced { base_offset: wait.base_offset };
            self.events.push_back(ReplicaEvent::Reply { token: wait.token, response });
        }
        #[allow(unused_mut)]
        let mut acks_all_bound = hw;
        #[cfg(feature = "canary")]
        if canary::is(Canary::AcksAllBeforeIsr) {
            acks_all_bound = own;
        }
        // Below the minimum no acks=all write can complete: each one waiting is answered
        // now (appended, maybe kept) rather than left to time out.
        while leader
            .isr_waits
            .front()
            .is_some_and(|wait| under_min || wait.last_offset < acks_all_bound)
        {
            let wait = leader.isr_waits.pop_front().expect("checked");
            let isr = state.isr.len();
            let response = if under_min {
                ReplicaResponse::Error(ReplicaError::NotEnoughReplicasAfterAppend { isr, min })
            } else {
                ReplicaResponse::Produced { base_offset: wait.base_offset }
            };
            self.events.push_back(ReplicaEvent::Reply { token: wait.token, response });
        }
        if hw > before {
            self.events.push_back(ReplicaEvent::HighWatermarkAdvanced { high_watermark: hw });
        }
        hw > before
    }

    /// Answers every parked fetch once the LEO or the HW moved since they were parked.
    fn release_parked(&mut self, now: Instant, out: &mut impl DiskQueue) -> bool {
        let view = (self.log.log_end_offset(), self.high_watermark);
        let RoleState::Leader(leader) = &mut self.role else { return false };
        if leader.parked.is_empty() || leader.parked_view == view {
            return false;
        }
        let parked = std::mem::take(&mut leader.parked);
        self.timers.stop(Timer::Parked);
        for (from, parked) in parked {
            self.serve_replica_fetch(now, from, parked.request, false, out);
        }
        true
    }

    /// Answers the parked fetches whose wait ended.
    pub(super) fn answer_due_parked(&mut self, now: Instant, out: &mut impl DiskQueue) {
        let RoleState::Leader(leader) = &mut self.role else { return };
        let due: Vec<NodeId> =
            leader.parked.iter().filter(|(_, p)| p.deadline <= now).map(|(id, _)| *id).collect();
        let mut answered = Vec::with_capacity(due.len());
        for id in due {
            answered.push((id, leader.parked.remove(&id).expect("listed")));
        }
        if let Some(next) = leader.parked.values().map(|p| p.deadline).min() {
            self.timers.set(Timer::Parked, next);
        }
        for (from, parked) in answered {
            self.serve_replica_fetch(now, from, parked.request, false, out);
        }
    }

    /// Proposes one ISR change if none is in flight: drop the followers not caught up within
    /// `replica.lag.time.max.ms`, else add those caught up within it whose LEO reached the HW
    /// and the start of this epoch (design §4). Returns whether it proposed.
    pub(super) fn maybe_propose_isr(&mut self, now: Instant) -> bool {
        let me = self.config.node_id;
        let (lag, durability) = (self.config.replica_lag_time_max, self.config.durability);
        let hw = self.high_watermark;
        let Some(state) = &self.state else { return false };
        let RoleState::Leader(leader) = &mut self.role else { return false };
        if leader.pending_isr.is_some() || leader.alter_blocked {
            return false;
        }
        if leader.suspended_epoch.is_some_and(|epoch| epoch == state.leader_epoch) {
            // Its log failed: it cannot lead on in this epoch (what it served may be gone
            // from its recovered log), so it asks the controller for a new one.
            tracing::info!(topic = %self.config.topic, partition = self.config.partition,
                epoch = state.leader_epoch, "the log failed: resigning the leadership");
            // A log that lost records the HW counted (`lost_tail`) leaves itself out of the
            // ISR it proposes: the controller then takes it out (under `fsync` a leader
            // that lost only unsynced records keeps its place).
            let new_isr: Vec<NodeId> = match self.lost_tail {
                true => state.isr.iter().copied().filter(|id| *id != me).collect(),
                false => state.isr.clone(),
            };
            self.events.push_back(ReplicaEvent::AlterPartition {
                leader_epoch: state.leader_epoch,
                partition_epoch: state.partition_epoch,
                new_isr,
                resign: true,
            });
            // What it waits on (the ISR it serves under keeps the leader).
            leader.pending_isr = Some(PendingIsr { new_isr: state.isr.clone() });
            self.timers.set(Timer::AlterPartition, now + self.config.alter_partition_timeout);
            return true;
        }
        if !leader.started || leader.suspended_epoch.is_some() {
            return false;
        }
        let lagging = |id: &NodeId| {
            leader
                .followers
                .get(id)
                .is_none_or(|p| now.saturating_duration_since(p.clock.last_caught_up) > lag)
        };
        let out_of_sync: Vec<NodeId> =
            state.isr.iter().copied().filter(|id| *id != me && lagging(id)).collect();
        let new_isr: Vec<NodeId> = if out_of_sync.is_empty() {
            let start = leader.epoch_start_offset;
            // Also caught up by time (Kafka's `isFollowerInSync`): otherwise a follower could
            // be proposed in and out again in turn.
            let joins = |id: &NodeId| {
                let counted = leader.followers.get(id).and_then(|p| p.counted_leo(durability));
                !lagging(id) && counted.is_some_and(|leo| leo >= hw && leo >= start)
            };
            let joining = state.replicas.iter().any(|id| !state.isr.contains(id) && joins(id));
            if !joining {
                return false;
            }
            state
                .replicas
                .iter()
                .copied()
                .filter(|id| state.isr.contains(id) || joins(id))
                .collect()
        } else {
            state.isr.iter().copied().filter(|id| !out_of_sync.contains(id)).collect()
        };
        tracing::info!(topic = %self.config.topic, partition = self.config.partition,
            isr = ?state.isr, ?new_isr, "proposing an ISR change");
        for id in &new_isr {
            if !state.isr.contains(id) && !leader.unconfirmed.contains(id) {
                leader.unconfirmed.push(*id);
            }
        }
        self.events.push_back(ReplicaEvent::AlterPartition {
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            new_isr: new_isr.clone(),
            resign: false,
        });
        leader.pending_isr = Some(PendingIsr { new_isr });
        self.timers.set(Timer::AlterPartition, now + self.config.alter_partition_timeout);
        true
    }

    /// The ISR change timed out, or the backoff after a failed one ended: allow the next.
    pub(super) fn alter_partition_timer(&mut self, _now: Instant) {
        if let RoleState::Leader(leader) = &mut self.role {
            leader.pending_isr = None;
            leader.alter_blocked = false;
        }
    }

    /// A new partition epoch in this leader epoch: the controller answered the ISR change (or
    /// changed the partition otherwise). Followers added to the replicas get fresh tracking.
    pub(super) fn leader_isr_changed(&mut self, now: Instant, _out: &mut impl DiskQueue) {
        let me = self.config.node_id;
        let leo = self.log.log_end_offset();
        let state = self.state.as_ref().expect("a leader has a state");
        let RoleState::Leader(leader) = &mut self.role else { return };
        leader.pending_isr = None;
        leader.unconfirmed.clear();
        leader.alter_blocked = false;
        self.timers.stop(Timer::AlterPartition);
        if leader.started {
            leader.followers.retain(|id, _| state.replicas.contains(id));
            for id in state.replicas.iter().filter(|id| **id != me) {
                leader.followers.entry(*id).or_insert_with(|| Progress::new(now, leo));
            }
            // A follower out of the ISR proves what it holds by fetching again: one the
            // controller took out (its log failed and lost records) must not be let back
            // in on what it reported before.
            for (id, progress) in &mut leader.followers {
                if !state.isr.contains(id) {
                    progress.leo = None;
                    progress.flushed = None;
                }
            }
        }
    }

    /// Leaves the leader role: producers still waiting get `error`, parked fetches an answer
    /// saying why (they would otherwise wait for their timeout).
    pub(super) fn stop_leading(&mut self, leader: LeaderState, error: impl Fn() -> ReplicaError) {
        for wait in leader.local_waits.iter().chain(&leader.isr_waits) {
            let response = ReplicaResponse::Error(error());
            self.events.push_back(ReplicaEvent::Reply { token: wait.token, response });
        }
        let code = match error() {
            ReplicaError::NotLeaderOrFollower => ErrorCode::NotLeaderOrFollower,
            _ => ErrorCode::KafkaStorageError,
        };
        for (from, parked) in leader.parked {
            let correlation_id = parked.request.correlation_id;
            self.send_fetch_response(from, correlation_id, code, Bytes::new());
        }
    }

    pub(super) fn leader_invariants(&self, leader: &LeaderState) {
        let me = self.config.node_id;
        let leo = self.log.log_end_offset();
        for waits in [&leader.local_waits, &leader.isr_waits] {
            // Equal last offsets: a duplicate's wait beside its original's.
            let offsets = waits.iter().map(|wait| wait.last_offset);
            assert!(offsets.clone().zip(offsets.skip(1)).all(|(a, b)| a <= b), "waits in order");
            if self.log.is_ready() {
                assert!(waits.back().is_none_or(|wait| wait.last_offset < leo), "wait past LEO");
            }
        }
        if let (Some(state), Some(pending)) = (&self.state, &leader.pending_isr) {
            assert!(pending.new_isr.contains(&me), "a proposed ISR holds the leader");
            for member in &pending.new_isr {
                assert!(state.replicas.contains(member), "a proposed ISR within the replicas");
            }
        }
        assert!(leader.parked.len() <= leader.followers.len(), "one parked fetch per follower");
        let fsync = self.config.durability == Durability::Fsync;
        if fsync && leader.started && self.log.is_ready() && leader.suspended_epoch.is_none() {
            assert!(self.high_watermark <= self.log.flushed_offset(), "fsync: HW past flushed");
        }
    }
}

/// Whether a leader names the epoch asked about in its OffsetForLeaderEpoch answers, and
/// serves fetches without checking their last fetched epoch: never, but for the canary of
/// KAFKA-6361 (Kafka's answers carried no epoch before KIP-279, nor fetches one before
/// KIP-320).
fn answers_asked_epoch() -> bool {
    #[cfg(feature = "canary")]
    if canary::is(Canary::OffsetForNewerEpoch) {
        return true;
    }
    false
}
