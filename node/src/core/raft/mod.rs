//! Raft for Cairn's metadata log: leader election with PreVote and CheckQuorum, log
//! replication, snapshots, and persistence under `raft/` through disk ops (Ongaro's thesis;
//! design §5; decision 0009).
//!
//! A [`Raft`] is one member of a group with static membership: *voters* elect the leader
//! and count for commit; *learners* receive the log and never vote, campaign or count. It
//! replicates opaque payloads; what they mean is the application's (the controller).
//!
//! Methods, in the order a driver uses them:
//! - getters: [`role`](Raft::role), [`leader`](Raft::leader), [`term`](Raft::term),
//!   [`commit_index`](Raft::commit_index), [`is_ready`](Raft::is_ready),
//!   [`fatal`](Raft::fatal), [`owns`](Raft::owns), ...;
//! - inputs: [`handle_disk`](Raft::handle_disk), [`handle_message`](Raft::handle_message),
//!   [`handle_timeout`](Raft::handle_timeout), [`handle_peer_down`](Raft::handle_peer_down);
//! - mutators: [`open`](Raft::open) (starts recovery), [`propose`](Raft::propose),
//!   [`snapshot`](Raft::snapshot), [`transfer_leadership`](Raft::transfer_leadership);
//! - outputs: [`poll_event`](Raft::poll_event) until `None`, then
//!   [`poll_timeout`](Raft::poll_timeout).
//!
//! Contract kept:
//! - **Persist before acknowledge.** Term and vote are synced before a vote is granted or any
//!   message of a new term leaves ([`RaftEvent::Send`] is held until the writes it depends on
//!   are durable); a follower answers AppendEntries with success only for entries it synced;
//!   the leader counts its own log for commit only up to what its own syncs covered.
//! - **Committed entries** are reported in index order, exactly once per process:
//!   [`RaftEvent::Restore`] with the snapshot at start (or when one is installed from the
//!   leader), then [`RaftEvent::Committed`] for each application entry after it.
//! - **Never formats itself.** Without `raft/bootstrap` (written by [`format_ops`]) Raft
//!   stops with [`RaftFatal::NotFormatted`]. A node formatted with `initial = false` (its
//!   disk was wiped and it rejoins) neither votes nor campaigns until it has synced the log
//!   of a leader that contacted it up to that leader's last index at first contact, and has
//!   written down that it caught up. Why: a voter's promises live on its disk; its vote in a
//!   term, and the entries it acknowledged, which counted toward a majority. Wiped, it could
//!   grant its vote to a candidate that lacks a committed entry and hand it the majority that
//!   overwrites the entry (see the test `wiped_voter_does_not_vote_until_caught_up`). The
//!   target is the leader's last index rather than its commit index because a new leader's
//!   commit index may lag entries committed under its predecessor, while its log holds
//!   every one of them (Leader Completeness). Once caught up in term `T`, the node counts its
//!   vote in `T` as cast for `T`'s leader, since its wiped self may have voted in `T`. What
//!   this cannot cover: a vote the wiped disk cast in a term *above* the one it catches up
//!   in, for a candidate that has not won yet; another candidate of that term could then get
//!   a second vote from it. That needs a wipe, a rejoin and a catch-up inside one election
//!   timeout of that candidate's campaign.
//! - **Storage faults.** A failed write or sync steps the node down and rewrites the log
//!   from memory into a new segment (see `storage.rs`); damaged frames are cut or stop Raft
//!   (see `recovery.rs`), and are never applied.
//! - **The network** may lose, duplicate, reorder and delay anything: stale terms are
//!   answered or ignored, rejections older than what the leader knows are ignored, snapshot
//!   chunks are accepted only in order. A follower's match index never goes back on a
//!   reordered answer; it goes back only when the follower shows it lost entries it had
//!   acknowledged (a wiped disk, or a log cut at a damaged frame).
//!
//! Not done: membership changes (the voters and learners are fixed at format), and a
//! check that a message comes from the same cluster (the node's connections carry that).
//!
//! Files: `election.rs` (PreVote, votes, CheckQuorum, TimeoutNow), `replication.rs`
//! (AppendEntries, commit, snapshots sent and installed), `storage.rs` (the on-disk layout
//! and what is durable), `recovery.rs`, `log.rs` (the log in memory), `message.rs` (prost
//! messages and records), `config.rs` (settings, errors, events, formatting).

mod config;
mod election;
mod log;
pub mod message;
mod recovery;
mod replication;
mod storage;

#[cfg(test)]
pub(crate) mod tests_harness;
#[cfg(test)]
mod tests_property;
#[cfg(test)]
mod tests_scenarios;
#[cfg(test)]
mod tests_storage;

use std::collections::{BTreeMap, HashSet, VecDeque};

use bytes::Bytes;

pub use self::config::{
    BOOTSTRAP_FILE, ConfigError, ProposeError, RAFT_DIR, RaftConfig, RaftEvent, RaftFatal, Role,
    SnapshotError, TransferError, format_ops,
};
pub use self::log::RaftLog;
pub use self::message::{BootstrapRecord, EntryKind, MessageKind, RaftMessage};
pub use self::storage::{segment_file, snapshot_file};

use self::message::{Entry, HardState, SnapshotRecord, WalKind, WalRecord};
use self::recovery::{Progress as RecoveryProgress, Recovered, Recovery};
use self::replication::{Install, Progress};
use self::storage::{Storage, StorageEvent};
use crate::core::io::{DiskResult, NodeId, OpId};
use crate::core::limits::{
    RAFT_ENTRY_BYTES_MAX, RAFT_HELD_SENDS_MAX, RAFT_LOG_BYTES_MAX, RAFT_NO_SPACE_BACKOFF,
    RAFT_SNAPSHOT_BYTES_MAX, RAFT_UNCOMMITTED_BYTES_MAX, RAFT_UNCOMMITTED_ENTRIES_MAX,
};
use crate::core::log::DiskQueue;
use crate::core::rng::{CoreRng, seeded};
use crate::core::time::Instant;
use crate::core::timer::TimerTable;

/// The timers of one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// A follower or candidate that hears nothing campaigns.
    Election,
    /// A leader sends AppendEntries to every follower.
    Heartbeat,
    /// A leader checks that it heard from a majority (thesis §6.2).
    CheckQuorum,
    /// A rewrite of the log postponed by a full disk.
    StorageRetry,
}

#[derive(Debug)]
enum Phase {
    Recovering(Box<Recovery>),
    Ready,
    Stopped,
}

/// A message waiting for the write it depends on.
#[derive(Debug)]
struct Held {
    seq: u64,
    to: NodeId,
    message: RaftMessage,
}

/// Where a snapshot being stored came from.
#[derive(Debug)]
enum SnapshotSource {
    /// [`Raft::snapshot`].
    Application,
    /// Installed from the leader, who is answered once it is stored.
    Leader(NodeId),
}

/// A snapshot being stored.
#[derive(Debug)]
struct Storing {
    source: SnapshotSource,
    index: u64,
    term: u64,
    data: Bytes,
}

/// One member of a Raft group. See the module documentation.
#[derive(Debug)]
pub struct Raft {
    config: RaftConfig,
    phase: Phase,
    fatal: Option<RaftFatal>,
    cluster_id: String,
    directory_id: u64,
    is_voter: bool,
    /// Term, vote and catch-up flag as last written (not necessarily synced yet).
    hard: HardState,
    /// Sequence number of the record that set the current term and vote.
    hard_seq: u64,
    log: RaftLog,
    storage: Storage,
    snapshot_data: Bytes,
    snapshot_crc: u32,
    role: Role,
    leader: Option<NodeId>,
    commit: u64,
    applied: u64,
    /// When this follower last heard from the current leader (leader stickiness, §4.2.3).
    leader_contact: Option<Instant>,
    /// (Pre)votes of the current campaign.
    votes: BTreeMap<NodeId, bool>,
    /// The leader's view of every other member.
    progress: BTreeMap<NodeId, Progress>,
    /// The last index this follower's log is known to match the leader's, in this term.
    leader_match: u64,
    /// For a rejoining node: the term and index it must catch up to before it votes.
    catch_up: Option<(u64, u64)>,
    install: Option<Install>,
    storing: Option<Storing>,
    /// Whether the log should be rewritten once no rewrite is in flight (after a snapshot).
    compact_wanted: bool,
    snapshot_wanted_reported: bool,
    held: VecDeque<Held>,
    timers: TimerTable<Timer>,
    rng: CoreRng,
    events: VecDeque<RaftEvent>,
    reported_leader: (Option<NodeId>, u64),
    housekeeping: HashSet<OpId>,
    /// A leadership transfer under way: the target and when the leader gives up on it.
    transfer: Option<(NodeId, Instant)>,
}

impl Raft {
    /// Opens Raft and starts recovery: it lists and reads `raft/` through `out` and is
    /// [ready](Self::is_ready) once it read its files. A missing or damaged bootstrap record,
    /// or settings that disagree with it, stop it ([`Self::fatal`], [`RaftEvent::Fatal`]).
    pub fn open(config: RaftConfig, now: Instant, out: &mut impl DiskQueue) -> Raft {
        let _ = now;
        let is_voter = config.voters.contains(&config.node_id);
        let rng = seeded(config.seed);
        let mut raft = Raft {
            phase: Phase::Stopped,
            fatal: None,
            cluster_id: String::new(),
            directory_id: 0,
            is_voter,
            hard: HardState::default(),
            hard_seq: 0,
            log: RaftLog::new(0, 0),
            storage: Storage::new(0, None),
            snapshot_data: Bytes::new(),
            snapshot_crc: crc32fast::hash(&[]),
            role: Role::Follower,
            leader: None,
            commit: 0,
            applied: 0,
            leader_contact: None,
            votes: BTreeMap::new(),
            progress: BTreeMap::new(),
            leader_match: 0,
            catch_up: None,
            install: None,
            storing: None,
            compact_wanted: false,
            snapshot_wanted_reported: false,
            held: VecDeque::new(),
            timers: TimerTable::default(),
            rng,
            events: VecDeque::new(),
            reported_leader: (None, 0),
            housekeeping: HashSet::new(),
            transfer: None,
            config,
        };
        match raft.config.validate() {
            Ok(()) => raft.phase = Phase::Recovering(Box::new(Recovery::start(out))),
            Err(error) => raft.stop(RaftFatal::Config(error)),
        }
        raft
    }

    // ----- getters -----

    /// This node.
    pub fn id(&self) -> NodeId {
        self.config.node_id
    }

    /// The settings.
    pub fn config(&self) -> &RaftConfig {
        &self.config
    }

    /// The cluster id from the bootstrap record (empty before recovery read it).
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The data directory's id from the bootstrap record (0 before recovery read it, or in a
    /// directory formatted before the id existed).
    pub fn directory_id(&self) -> u64 {
        self.directory_id
    }

    /// What this member is doing.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The leader this member knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// The current term.
    pub fn term(&self) -> u64 {
        self.hard.term
    }

    /// The highest index known committed.
    pub fn commit_index(&self) -> u64 {
        self.commit
    }

    /// The highest index reported to the application (by `Committed` or `Restore`).
    pub fn applied_index(&self) -> u64 {
        self.applied
    }

    /// The last index of the log.
    pub fn last_index(&self) -> u64 {
        self.log.last_index()
    }

    /// The log in memory (the snapshot's position and every entry after it).
    pub fn log(&self) -> &RaftLog {
        &self.log
    }

    /// The last index whose entry is durable here.
    pub fn synced_index(&self) -> u64 {
        self.storage.synced_index()
    }

    /// Whether recovery finished and Raft has not stopped.
    pub fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Ready)
    }

    /// Why Raft stopped, if it did.
    pub fn fatal(&self) -> Option<&RaftFatal> {
        self.fatal.as_ref()
    }

    /// Whether this member may vote now: a voter, and caught up if it rejoined after a wipe.
    pub fn may_vote(&self) -> bool {
        self.is_voter && self.hard.caught_up && self.is_ready()
    }

    /// Whether this is a recovered voter that rejoined after a wipe and neither votes nor
    /// campaigns until a leader has caught it up (before recovery its state is not known).
    pub fn awaits_catch_up(&self) -> bool {
        self.is_voter && !self.hard.caught_up && self.is_ready()
    }

    /// Whether op `id` is Raft's.
    pub fn owns(&self, id: OpId) -> bool {
        self.storage.owns(id)
            || self.housekeeping.contains(&id)
            || matches!(&self.phase, Phase::Recovering(recovery) if recovery.owns(id))
    }

    // ----- outputs -----

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<RaftEvent> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_ready() { self.timers.next_deadline() } else { None }
    }

    // ----- inputs -----

    /// The result of Raft's op `id`.
    ///
    /// # Panics
    /// If `id` is not Raft's (see [`Self::owns`]).
    pub fn handle_disk(
        &mut self,
        now: Instant,
        id: OpId,
        result: DiskResult,
        out: &mut impl DiskQueue,
    ) {
        if self.housekeeping.remove(&id) {
            if let Err(error) = result {
                tracing::warn!(%error, "raft: removing a leftover file failed");
            }
            return;
        }
        if let Phase::Recovering(recovery) = &mut self.phase {
            assert!(recovery.owns(id), "a recovering Raft only has recovery ops");
            let progress = recovery.handle_disk(result, out);
            self.housekeeping.extend(recovery.take_removals());
            match progress {
                RecoveryProgress::Pending => {}
                RecoveryProgress::Done(recovered) => self.recovered(now, *recovered, out),
                RecoveryProgress::Failed(fatal) => self.stop(fatal),
            }
            return self.after(out);
        }
        if matches!(self.phase, Phase::Stopped) {
            return;
        }
        match self.storage.handle_disk(id, result, &self.log, out) {
            None => {}
            Some(StorageEvent::Synced) => self.synced(now, out),
            Some(StorageEvent::Failed { file, error }) => {
                if matches!(self.role, Role::Leader | Role::Candidate | Role::PreCandidate) {
                    self.become_follower(now, self.hard.term, None);
                }
                let no_space = matches!(error, crate::core::io::DiskError::NoSpace);
                if no_space {
                    self.timers.set(Timer::StorageRetry, now + RAFT_NO_SPACE_BACKOFF);
                }
                if !self.storage.rewrite_after_failure(&self.log, self.hard, no_space, out) {
                    let detail = error.to_string();
                    self.stop(RaftFatal::Storage { file, detail });
                }
            }
            Some(StorageEvent::SnapshotStored { index, term }) => {
                self.snapshot_stored(index, term);
            }
            Some(StorageEvent::SnapshotFailed { index }) => {
                tracing::warn!(index, "raft: a snapshot was not stored");
                self.storing = None;
                self.snapshot_wanted_reported = false; // Asked again at the next entry.
            }
        }
        self.after(out);
    }

    /// A message from member `from`.
    pub fn handle_message(
        &mut self,
        now: Instant,
        from: NodeId,
        message: RaftMessage,
        out: &mut impl DiskQueue,
    ) {
        if !self.is_ready() || from == self.id() || !self.is_member(from) {
            return;
        }
        self.step(now, from, message, out);
        self.after(out);
    }

    /// Fires the timers whose deadline passed.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut impl DiskQueue) {
        if !self.is_ready() {
            return;
        }
        while let Some(timer) = self.timers.pop_expired(now) {
            match timer {
                Timer::Election => self.election_timeout(now, out),
                Timer::Heartbeat => self.heartbeat(now),
                Timer::CheckQuorum => self.check_quorum(now),
                Timer::StorageRetry => {
                    self.storage.start_pending_rewrite(&self.log, self.hard, out)
                }
            }
        }
        self.after(out);
    }

    // ----- mutators -----

    /// Appends `payload` as the leader; it is reported as [`RaftEvent::Committed`] once
    /// committed (which may never happen if leadership changes first). Returns its index.
    pub fn propose(
        &mut self,
        payload: Bytes,
        out: &mut impl DiskQueue,
    ) -> Result<u64, ProposeError> {
        if self.role != Role::Leader || !self.is_ready() {
            return Err(ProposeError::NotLeader { leader: self.leader });
        }
        if let Some((to, _)) = self.transfer {
            return Err(ProposeError::Transferring { to });
        }
        if payload.len() > RAFT_ENTRY_BYTES_MAX {
            return Err(ProposeError::TooLarge(payload.len()));
        }
        let uncommitted = self.log.last_index() - self.commit;
        let uncommitted_bytes: u64 = self
            .log
            .iter()
            .skip(usize::try_from(self.commit - self.log.snapshot_index()).unwrap_or(usize::MAX))
            .map(Entry::size_bytes)
            .sum();
        if uncommitted >= RAFT_UNCOMMITTED_ENTRIES_MAX
            || uncommitted_bytes + payload.len() as u64 > RAFT_UNCOMMITTED_BYTES_MAX
            || self.log.bytes() > RAFT_LOG_BYTES_MAX
        {
            return Err(ProposeError::Backlog);
        }
        let index = self.append_as_leader(EntryKind::Normal, payload, out);
        self.broadcast_append(false);
        self.after(out);
        Ok(index)
    }

    /// Hands leadership to voter `to` (thesis §3.10), as before a graceful shutdown: the
    /// leader stops taking proposals, brings `to` up to date, and tells it to campaign at
    /// once. If `to` has not taken over within the minimum election timeout, the leader takes
    /// proposals again. Watch [`RaftEvent::LeaderChanged`] for the outcome.
    pub fn transfer_leadership(&mut self, now: Instant, to: NodeId) -> Result<(), TransferError> {
        if self.role != Role::Leader || !self.is_ready() {
            return Err(TransferError::NotLeader { leader: self.leader });
        }
        if to == self.id() || !self.config.voters.contains(&to) {
            return Err(TransferError::NotAVoter(to));
        }
        self.transfer = Some((to, now + self.config.election_timeout_min));
        self.advance_transfer();
        self.release_held();
        self.invariants();
        Ok(())
    }

    /// Stores `data`, the application's image after applying every entry up to `index`, and
    /// drops the log before it. `index` must be applied and after the current snapshot.
    pub fn snapshot(
        &mut self,
        index: u64,
        data: Bytes,
        out: &mut impl DiskQueue,
    ) -> Result<(), SnapshotError> {
        if !self.is_ready() {
            return Err(SnapshotError::NotReady);
        }
        if self.storing.is_some() || self.storage.snapshot_busy() {
            return Err(SnapshotError::Busy);
        }
        if index > self.applied {
            return Err(SnapshotError::NotApplied { index, applied: self.applied });
        }
        if index <= self.log.snapshot_index() {
            let snapshot_index = self.log.snapshot_index();
            return Err(SnapshotError::Stale { index, snapshot_index });
        }
        if data.len() as u64 > RAFT_SNAPSHOT_BYTES_MAX {
            return Err(SnapshotError::TooLarge(data.len()));
        }
        let term = self.log.term_at(index).expect("applied entries are held");
        let record = SnapshotRecord { index, term, data: data.clone() };
        self.storage.store_snapshot(&record, out);
        self.storing = Some(Storing { source: SnapshotSource::Application, index, term, data });
        self.after(out);
        Ok(())
    }

    // ----- internals -----

    fn is_member(&self, id: NodeId) -> bool {
        self.config.voters.contains(&id) || self.config.learners.contains(&id)
    }

    fn quorum(&self) -> usize {
        self.config.voters.len() / 2 + 1
    }

    fn stop(&mut self, fatal: RaftFatal) {
        tracing::error!(%fatal, "raft stopped");
        self.events.push_back(RaftEvent::Fatal(fatal.to_string()));
        self.fatal = Some(fatal);
        self.phase = Phase::Stopped;
        self.role = Role::Follower;
        self.leader = None;
        self.held.clear();
        self.timers = TimerTable::default();
    }

    fn recovered(&mut self, now: Instant, recovered: Recovered, out: &mut impl DiskQueue) {
        if let Err(fatal) = config::check_bootstrap(&recovered.bootstrap, &self.config) {
            return self.stop(fatal);
        }
        tracing::info!(
            cut_bytes = recovered.cut_bytes,
            last_index = recovered.log.last_index(),
            term = recovered.hard_state.term,
            "raft recovered"
        );
        self.cluster_id = recovered.bootstrap.cluster_id;
        self.directory_id = recovered.bootstrap.directory_id;
        self.hard = recovered.hard_state;
        self.log = recovered.log;
        // A snapshot is synced apart from the log, so it may be durable while the record of
        // the term it came in is not: the term is at least the log's. (No vote was sent in a
        // term whose record is lost, since votes leave only once synced.)
        if self.log.last_term() > self.hard.term {
            self.hard.term = self.log.last_term();
            self.hard.voted_for = 0;
        }
        self.storage =
            Storage::new(recovered.segment, recovered.snapshot.as_ref().map(|s| s.index));
        if let Some(snapshot) = recovered.snapshot {
            self.set_snapshot_data(snapshot.data.clone());
            self.applied = snapshot.index;
            let (index, term, data) = (snapshot.index, snapshot.term, snapshot.data);
            self.events.push_back(RaftEvent::Restore { index, term, data });
        }
        self.commit = self.hard.commit.min(self.log.last_index()).max(self.log.snapshot_index());
        self.phase = Phase::Ready;
        // Whatever was read may sit in the page cache only: nothing counts as durable (and no
        // message depending on it leaves) until it is rewritten and synced.
        self.storage.rewrite(&self.log, self.hard, out);
        self.hard_seq = self.storage.write_seq();
        self.apply();
        self.reset_election_timer(now);
    }

    fn set_snapshot_data(&mut self, data: Bytes) {
        self.snapshot_crc = crc32fast::hash(&data);
        self.snapshot_data = data;
    }

    /// Writes the hard state (term, vote, catch-up flag, commit) and returns its seq.
    fn write_hard_state(&mut self, out: &mut impl DiskQueue) -> u64 {
        self.hard.commit = self.commit;
        let record = WalRecord { kind: Some(WalKind::HardState(self.hard)) };
        self.storage.write(vec![record], &self.log, None, out)
    }

    /// Queues `message` to `to` once every record up to `seq` is durable.
    fn send(&mut self, to: NodeId, term: u64, kind: MessageKind, seq: u64) {
        let message = RaftMessage { term, kind: Some(kind) };
        if self.held.len() >= RAFT_HELD_SENDS_MAX {
            self.held.pop_front();
        }
        self.held.push_back(Held { seq, to, message });
    }

    fn release_held(&mut self) {
        let synced = self.storage.synced_seq();
        let mut kept = VecDeque::with_capacity(self.held.len());
        for held in self.held.drain(..) {
            if held.seq <= synced {
                self.events.push_back(RaftEvent::Send { to: held.to, message: held.message });
            } else {
                kept.push_back(held);
            }
        }
        self.held = kept;
    }

    /// What every input ends with.
    fn after(&mut self, out: &mut impl DiskQueue) {
        if self.is_ready() {
            self.release_held();
            self.maybe_rewrite(out);
            if self.reported_leader != (self.leader, self.hard.term) {
                self.reported_leader = (self.leader, self.hard.term);
                let (leader, term) = self.reported_leader;
                self.events.push_back(RaftEvent::LeaderChanged { leader, term });
            }
        }
        self.invariants();
    }

    fn maybe_rewrite(&mut self, out: &mut impl DiskQueue) {
        if self.storage.rewriting() {
            return;
        }
        if self.compact_wanted || self.storage.wants_rewrite(&self.log) {
            self.compact_wanted = false;
            self.hard.commit = self.commit;
            self.storage.rewrite(&self.log, self.hard, out);
        }
    }

    /// Writes became durable: the leader may commit, a candidate may win, messages may leave.
    fn synced(&mut self, now: Instant, out: &mut impl DiskQueue) {
        match self.role {
            Role::Leader => self.maybe_commit(),
            Role::Candidate => self.maybe_win(now, out),
            Role::Follower | Role::PreCandidate => self.check_caught_up(now, out),
        }
    }

    /// Reports committed entries not yet reported.
    fn apply(&mut self) {
        while self.applied < self.commit {
            self.applied += 1;
            let entry = self.log.get(self.applied).expect("committed entries are held");
            if entry.is_normal() {
                self.events.push_back(RaftEvent::Committed {
                    index: entry.index,
                    term: entry.term,
                    payload: entry.payload.clone(),
                });
            }
        }
        let since = self.applied - self.log.snapshot_index();
        let due =
            since >= self.config.snapshot_entries || self.log.bytes() >= self.config.snapshot_bytes;
        if due && since > 0 && !self.snapshot_wanted_reported {
            self.snapshot_wanted_reported = true;
            self.events.push_back(RaftEvent::SnapshotWanted { applied: self.applied });
        }
    }

    fn snapshot_stored(&mut self, index: u64, term: u64) {
        let Some(storing) = self.storing.take() else { return };
        assert_eq!((storing.index, storing.term), (index, term), "one snapshot at a time");
        self.snapshot_wanted_reported = false;
        if index <= self.log.snapshot_index() {
            return;
        }
        self.log.compact_to(index, term);
        if self.log.last_index() == index {
            self.storage.truncated(index);
        }
        self.storage.snapshot_installed(index);
        self.set_snapshot_data(storing.data.clone());
        self.compact_wanted = true;
        self.commit = self.commit.max(index);
        if self.applied < index {
            self.applied = index;
            self.events.push_back(RaftEvent::Restore { index, term, data: storing.data });
        }
        if let SnapshotSource::Leader(leader) = storing.source {
            self.snapshot_installed_reply(leader, index);
        }
        self.apply();
    }

    /// Appends an entry of the current term as the leader; returns its index.
    fn append_as_leader(
        &mut self,
        kind: EntryKind,
        payload: Bytes,
        out: &mut impl DiskQueue,
    ) -> u64 {
        let index = self.log.last_index() + 1;
        let leader = if kind == EntryKind::LeaderChange { self.id().0 } else { 0 };
        let entry = Entry { index, term: self.hard.term, kind: kind as i32, payload, leader };
        self.log.push(entry.clone());
        let record = WalRecord { kind: Some(WalKind::Entry(entry)) };
        self.storage.write(vec![record], &self.log, None, out);
        index
    }

    fn reset_election_timer(&mut self, now: Instant) {
        use rand::Rng;
        if !self.may_vote() {
            self.timers.stop(Timer::Election);
            return;
        }
        let min = self.config.election_timeout_min.as_nanos() as u64;
        let max = self.config.election_timeout_max.as_nanos() as u64;
        let timeout = self.rng.random_range(min..max);
        self.timers.set(Timer::Election, now + std::time::Duration::from_nanos(timeout));
    }

    /// Checks every invariant; a failure is a bug.
    pub fn invariants(&self) {
        self.log.invariants();
        if !self.is_ready() {
            return;
        }
        self.storage.invariants(&self.log);
        assert!(self.commit <= self.log.last_index(), "commit beyond the log");
        assert!(self.commit >= self.log.snapshot_index(), "the snapshot is committed");
        assert!(self.applied <= self.commit, "applied beyond commit");
        assert!(self.applied >= self.log.snapshot_index(), "the snapshot is applied");
        assert!(self.log.last_term() <= self.hard.term, "no entry from a future term");
        if self.role != Role::Follower {
            assert!(self.may_vote(), "only voters campaign or lead");
        }
        if self.role != Role::Leader {
            assert!(self.transfer.is_none(), "only a leader hands leadership over");
        }
        if self.role == Role::Leader {
            assert_eq!(self.leader, Some(self.id()), "a leader knows itself");
            for (id, progress) in &self.progress {
                assert!(progress.matched <= self.log.last_index(), "{id:?} matches beyond the log");
                assert!(progress.next > progress.matched, "{id:?}: next after match");
                assert!(progress.next <= self.log.last_index() + 1, "{id:?}: next beyond the log");
            }
        } else {
            assert!(self.progress.is_empty(), "only a leader tracks followers");
        }
        if self.role == Role::Candidate {
            assert_eq!(self.hard.voted_for, self.id().0 + 1, "a candidate votes for itself");
        }
        assert!(self.held.len() <= RAFT_HELD_SENDS_MAX, "held messages are bounded");
    }
}
