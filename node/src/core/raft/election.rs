//! Elections: terms, PreVote (thesis §9.6), votes (§3.4), leader stickiness (§4.2.3) and
//! CheckQuorum (§6.2), and the role changes they cause.
//!
//! - A voter that hears from no leader for an election timeout first asks for *pre-votes*
//!   for `term + 1` without changing anything durable; only with a majority of pre-votes does
//!   it start a real election. A node cut off from the majority therefore never raises its
//!   term, and cannot depose a healthy leader when it comes back.
//! - A member that heard from a current leader within the minimum election timeout grants
//!   no pre-vote, and ignores a vote request of a higher term (without adopting the term).
//! - A leader that has not heard from a majority of voters within the minimum election
//!   timeout steps down, so that clients stop waiting on a leader that cannot commit.
//! - A follower told that its leader's connections closed ([`Raft::handle_peer_down`])
//!   stops defending that leader and asks for pre-votes after a short random delay instead
//!   of a whole election timeout (decision 0011). A false alarm costs nothing: the other
//!   voters still hear the leader and refuse the pre-vote.

use bytes::Bytes;

use super::message::{MessageKind, RaftMessage, VoteRequest, VoteResponse};
use super::replication::Progress;
use super::{EntryKind, Raft, Role, Timer};
use crate::core::io::NodeId;
use crate::core::log::DiskQueue;
use crate::core::time::Instant;

impl Raft {
    /// Routes one message after the term checks common to all (§3.3: a higher term makes a
    /// member a follower; a lower one is answered so its sender learns, or ignored).
    pub(super) fn step(
        &mut self,
        now: Instant,
        from: NodeId,
        message: RaftMessage,
        out: &mut impl DiskQueue,
    ) {
        let Some(kind) = message.kind else { return };
        let term = message.term;
        match kind {
            MessageKind::PreVote(request) => self.handle_pre_vote(now, from, term, &request),
            MessageKind::PreVoteResponse(response) => {
                self.handle_pre_vote_response(now, from, term, response.granted, out);
            }
            MessageKind::Vote(request) => self.handle_vote(now, from, term, &request, out),
            kind if term < self.hard.term => self.answer_stale(from, &kind),
            kind => {
                if term > self.hard.term {
                    let leader = match kind {
                        MessageKind::AppendEntries(_) | MessageKind::InstallSnapshot(_) => {
                            Some(from)
                        }
                        _ => None,
                    };
                    self.become_follower(now, term, leader);
                    self.persist_term(out);
                }
                match kind {
                    MessageKind::VoteResponse(response) => {
                        self.handle_vote_response(now, from, response.granted, out);
                    }
                    MessageKind::AppendEntries(append) => {
                        self.handle_append(now, from, append, out);
                    }
                    MessageKind::AppendEntriesResponse(response) => {
                        self.handle_append_response(now, from, &response);
                    }
                    MessageKind::InstallSnapshot(chunk) => {
                        self.handle_install(now, from, chunk, out);
                    }
                    MessageKind::InstallSnapshotResponse(response) => {
                        self.handle_install_response(now, from, &response);
                    }
                    MessageKind::TimeoutNow(_) => self.handle_timeout_now(now, from, out),
                    _ => unreachable!("requests for votes are handled above"),
                }
            }
        }
    }

    /// A message of an older term: a stale leader is told the term so it steps down;
    /// answers to old requests are dropped.
    fn answer_stale(&mut self, from: NodeId, kind: &MessageKind) {
        let term = self.hard.term;
        match kind {
            MessageKind::AppendEntries(append) => {
                let response = super::message::AppendEntriesResponse {
                    success: false,
                    reject_index: append.prev_index,
                    ..Default::default()
                };
                self.send(from, term, MessageKind::AppendEntriesResponse(response), self.hard_seq);
            }
            MessageKind::InstallSnapshot(chunk) => {
                let response = super::message::InstallSnapshotResponse {
                    index: chunk.index,
                    next_offset: 0,
                    done: false,
                };
                let kind = MessageKind::InstallSnapshotResponse(response);
                self.send(from, term, kind, self.hard_seq);
            }
            _ => {}
        }
    }

    /// The node's transport saw every connection with `peer` close. If `peer` is this
    /// follower's leader, leader stickiness (§4.2.3) no longer holds here, since it exists to
    /// keep a leader that is alive, and the election timer fires within one heartbeat
    /// interval (a random delay, so that two followers learning it together rarely split
    /// the vote) rather than an election timeout after the leader's last message. Safety
    /// does not depend on it: a pre-vote still needs a majority that does not hear a leader
    /// (§9.6), so a false alarm deposes nobody.
    pub fn handle_peer_down(&mut self, now: Instant, peer: NodeId, out: &mut impl DiskQueue) {
        use rand::Rng;
        if self.role != Role::Follower || self.leader != Some(peer) || !self.may_vote() {
            return;
        }
        self.leader_contact = None;
        let spread = self.config.heartbeat_interval.as_nanos().max(1) as u64;
        let at = now + std::time::Duration::from_nanos(self.rng.random_range(0..spread));
        if self.timers.get(Timer::Election).is_none_or(|deadline| deadline > at) {
            self.timers.set(Timer::Election, at);
        }
        self.after(out);
    }

    /// Whether this member heard from a live leader recently enough to refuse to help
    /// depose it (§4.2.3); a leader is sticky to itself.
    fn leader_is_fresh(&self, now: Instant) -> bool {
        if self.role == Role::Leader {
            return true;
        }
        match (self.leader, self.leader_contact) {
            (Some(_), Some(contact)) => now < contact + self.config.election_timeout_min,
            _ => false,
        }
    }

    /// Whether a candidate whose log ends at `request` is at least as up to date (§3.6.1).
    fn log_up_to_date(&self, request: &VoteRequest) -> bool {
        (request.last_term, request.last_index) >= (self.log.last_term(), self.log.last_index())
    }

    fn handle_pre_vote(&mut self, now: Instant, from: NodeId, term: u64, request: &VoteRequest) {
        let granted = term > self.hard.term
            && self.may_vote()
            && !self.leader_is_fresh(now)
            && self.log_up_to_date(request);
        // A granted pre-vote echoes the term asked for; a refusal carries ours, so that a
        // pre-candidate that is behind learns the term (and changes nothing here).
        let answer_term = if granted { term } else { self.hard.term };
        let response = MessageKind::PreVoteResponse(VoteResponse { granted });
        self.send(from, answer_term, response, self.hard_seq);
    }

    fn handle_pre_vote_response(
        &mut self,
        now: Instant,
        from: NodeId,
        term: u64,
        granted: bool,
        out: &mut impl DiskQueue,
    ) {
        if !granted && term > self.hard.term {
            self.become_follower(now, term, None);
            self.persist_term(out);
            return;
        }
        if self.role != Role::PreCandidate || (granted && term != self.hard.term + 1) {
            return;
        }
        if !self.config.voters.contains(&from) {
            return;
        }
        self.votes.insert(from, granted);
        if self.votes.values().filter(|granted| **granted).count() >= self.quorum() {
            self.campaign(now, false, out);
        }
    }

    fn handle_vote(
        &mut self,
        now: Instant,
        from: NodeId,
        term: u64,
        request: &VoteRequest,
        out: &mut impl DiskQueue,
    ) {
        if term > self.hard.term {
            if self.leader_is_fresh(now) && !request.transfer {
                return; // §4.2.3: neither adopt the term nor answer.
            }
            self.become_follower(now, term, None);
            self.persist_term(out);
        }
        let vote = self.hard.voted_for;
        let granted = term == self.hard.term
            && self.may_vote()
            && (vote == 0 || vote == from.0 + 1)
            && self.log_up_to_date(request);
        let mut seq = self.hard_seq;
        if granted && vote == 0 {
            self.hard.voted_for = from.0 + 1;
            seq = self.write_hard_state(out);
            self.hard_seq = seq;
        }
        if granted {
            self.reset_election_timer(now);
        }
        let response = MessageKind::VoteResponse(VoteResponse { granted });
        self.send(from, self.hard.term, response, seq);
    }

    fn handle_vote_response(
        &mut self,
        now: Instant,
        from: NodeId,
        granted: bool,
        out: &mut impl DiskQueue,
    ) {
        if self.role != Role::Candidate || !self.config.voters.contains(&from) {
            return;
        }
        self.votes.insert(from, granted);
        self.maybe_win(now, out);
    }

    /// A candidate with a majority of votes, its own durable, becomes leader.
    pub(super) fn maybe_win(&mut self, now: Instant, out: &mut impl DiskQueue) {
        if self.role != Role::Candidate || self.storage.synced_seq() < self.hard_seq {
            return;
        }
        if self.votes.values().filter(|granted| **granted).count() >= self.quorum() {
            self.become_leader(now, out);
        }
    }

    pub(super) fn election_timeout(&mut self, now: Instant, out: &mut impl DiskQueue) {
        if !self.may_vote() || self.role == Role::Leader {
            return;
        }
        self.role = Role::PreCandidate;
        self.leader = None;
        self.leader_contact = None;
        self.votes.clear();
        self.votes.insert(self.id(), true);
        self.reset_election_timer(now);
        if self.quorum() == 1 {
            return self.campaign(now, false, out);
        }
        let request = VoteRequest {
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
            transfer: false,
        };
        for voter in self.config.voters.clone() {
            if voter != self.id() {
                let kind = MessageKind::PreVote(request.clone());
                self.send(voter, self.hard.term + 1, kind, self.hard_seq);
            }
        }
    }

    /// The leader hands leadership over: campaign at once, without a pre-vote (§3.10).
    fn handle_timeout_now(&mut self, now: Instant, from: NodeId, out: &mut impl DiskQueue) {
        if self.leader == Some(from) && self.role == Role::Follower && self.may_vote() {
            tracing::info!(term = self.hard.term, "raft: leadership handed over; campaigning");
            self.campaign(now, true, out);
        }
    }

    /// Starts a real election: a new term, a vote for itself, both written before any vote
    /// request leaves. `transfer`: the leader asked for it, so voters that still hear that
    /// leader answer anyway.
    fn campaign(&mut self, now: Instant, transfer: bool, out: &mut impl DiskQueue) {
        self.role = Role::Candidate;
        self.hard.term += 1;
        self.hard.voted_for = self.id().0 + 1;
        self.leader = None;
        self.leader_match = 0;
        self.held.clear();
        self.hard_seq = self.write_hard_state(out);
        self.votes.clear();
        self.votes.insert(self.id(), true);
        self.reset_election_timer(now);
        let request = VoteRequest {
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
            transfer,
        };
        for voter in self.config.voters.clone() {
            if voter != self.id() {
                let kind = MessageKind::Vote(request.clone());
                self.send(voter, self.hard.term, kind, self.hard_seq);
            }
        }
        self.maybe_win(now, out);
    }

    /// Becomes a follower in `term` (higher than or equal to the current one) of `leader`.
    /// A higher term clears the vote; the caller persists it with [`Self::persist_term`].
    pub(super) fn become_follower(&mut self, now: Instant, term: u64, leader: Option<NodeId>) {
        assert!(term >= self.hard.term, "terms never go back");
        if term > self.hard.term {
            self.hard.term = term;
            self.hard.voted_for = 0;
            self.leader_match = 0;
            // Messages of the old term are moot, and a held acknowledgement of entries
            // that a new leader may truncate must never leave.
            self.held.clear();
        }
        if self.role == Role::Leader {
            self.held.retain(|held| {
                !matches!(
                    held.message.kind,
                    Some(MessageKind::AppendEntries(_) | MessageKind::InstallSnapshot(_))
                )
            });
        }
        self.role = Role::Follower;
        self.transfer = None;
        self.leader = leader;
        self.leader_contact = leader.map(|_| now);
        self.votes.clear();
        self.progress.clear();
        self.timers.stop(Timer::Heartbeat);
        self.timers.stop(Timer::CheckQuorum);
        self.reset_election_timer(now);
    }

    /// Writes a term adopted by [`Self::become_follower`] (when it changed).
    pub(super) fn persist_term(&mut self, out: &mut impl DiskQueue) {
        self.hard_seq = self.write_hard_state(out);
    }

    fn become_leader(&mut self, now: Instant, out: &mut impl DiskQueue) {
        tracing::info!(term = self.hard.term, node = self.id().0, "raft: became leader");
        self.role = Role::Leader;
        self.leader = Some(self.id());
        self.votes.clear();
        self.timers.stop(Timer::Election);
        let next = self.log.last_index() + 1;
        let members: Vec<NodeId> =
            self.config.voters.iter().chain(&self.config.learners).copied().collect();
        for member in members {
            if member != self.id() {
                self.progress.insert(member, Progress::new(next, now));
            }
        }
        // §3.6.2 / §5.4.2: entries of earlier terms commit only through one of this term.
        self.append_as_leader(EntryKind::LeaderChange, Bytes::new(), out);
        self.broadcast_append(true);
        self.timers.set(Timer::Heartbeat, now + self.config.heartbeat_interval);
        self.timers.set(Timer::CheckQuorum, now + self.config.election_timeout_min);
        self.maybe_commit();
    }

    /// CheckQuorum (§6.2): steps down unless a majority of voters answered within the
    /// minimum election timeout.
    pub(super) fn check_quorum(&mut self, now: Instant) {
        if self.role != Role::Leader {
            return;
        }
        let window = self.config.election_timeout_min;
        let heard = self
            .config
            .voters
            .iter()
            .filter(|voter| {
                **voter == self.id()
                    || self.progress.get(voter).is_some_and(|p| p.last_heard + window > now)
            })
            .count();
        if heard < self.quorum() {
            tracing::info!(term = self.hard.term, "raft: no quorum heard; stepping down");
            self.become_follower(now, self.hard.term, None);
        } else {
            self.timers.set(Timer::CheckQuorum, now + window);
        }
    }
}
