//! Log replication (§3.5): AppendEntries with its consistency check and fast backtracking,
//! the leader's commit rule, and snapshots sent in chunks to followers left behind (§5.3).
//!
//! The leader keeps a [`Progress`] per member: `matched`, the last index the member has
//! acknowledged as durable (it never goes back, whatever order answers arrive in), and
//! `next`, the next index to send. A member is *probed* (one AppendEntries at a time, `next`
//! moved back by each rejection's hint) until an answer succeeds; it is then sent entries
//! as they are appended, up to [`RAFT_INFLIGHT_ENTRIES_MAX`] past `matched`, and entries not
//! acknowledged by the next heartbeat are sent again. A member whose `next` is at or before
//! the snapshot gets the snapshot instead, chunk by chunk, each chunk sent once the previous
//! one was acknowledged (and again at each heartbeat until it is).

use bytes::BytesMut;

use super::config::RaftFatal;
use super::message::{
    AppendEntries, AppendEntriesResponse, Entry, InstallSnapshot, InstallSnapshotResponse,
    MessageKind, SnapshotRecord, WalKind, WalRecord,
};
use super::{Raft, Role, SnapshotSource, Storing};
use crate::core::io::NodeId;
use crate::core::limits::{
    RAFT_APPEND_BYTES_MAX, RAFT_APPEND_ENTRIES_MAX, RAFT_INFLIGHT_ENTRIES_MAX,
    RAFT_SNAPSHOT_BYTES_MAX, RAFT_SNAPSHOT_CHUNK_BYTES,
};
use crate::core::log::DiskQueue;
use crate::core::time::Instant;

/// The leader's view of one other member.
#[derive(Debug, Clone)]
pub struct Progress {
    /// The next index to send.
    pub next: u64,
    /// The last index the member acknowledged as durable and matching.
    pub matched: u64,
    /// When the member last answered in this term (CheckQuorum).
    pub last_heard: Instant,
    /// Whether the leader is still looking for the point where the logs agree.
    pub probing: bool,
    /// Whether `matched` moved since the last heartbeat.
    pub advanced: bool,
    /// A snapshot being sent: its index and the next byte to send.
    pub snapshot: Option<(u64, u64)>,
}

impl Progress {
    /// A member whose log is assumed to end where the new leader's does.
    pub fn new(next: u64, now: Instant) -> Progress {
        // Heard "now": a new leader gives everyone one window before CheckQuorum counts.
        Progress {
            next,
            matched: 0,
            last_heard: now,
            probing: true,
            advanced: false,
            snapshot: None,
        }
    }
}

/// A snapshot being received from the leader, chunk by chunk.
#[derive(Debug)]
pub struct Install {
    index: u64,
    term: u64,
    total_bytes: u64,
    crc: u32,
    data: BytesMut,
}

impl Raft {
    // ----- leader side -----

    /// Sends AppendEntries to every member that can take more: all of them when `all`
    /// (a heartbeat, a new leader, a commit to announce), else those not being probed.
    pub(super) fn broadcast_append(&mut self, all: bool) {
        let members: Vec<NodeId> = self.progress.keys().copied().collect();
        for member in members {
            let progress = &self.progress[&member];
            if all || (!progress.probing && progress.snapshot.is_none()) {
                self.send_append(member, all);
            }
        }
    }

    /// Sends `to` what it needs next: entries from `next` (or none, as a heartbeat when
    /// `heartbeat`), or the next chunk of the snapshot.
    fn send_append(&mut self, to: NodeId, heartbeat: bool) {
        let progress = self.progress.get_mut(&to).expect("a member");
        if progress.snapshot.is_some() || progress.next <= self.log.snapshot_index() {
            return self.send_snapshot_chunk(to);
        }
        let mut entries = Vec::new();
        let window = progress.matched + RAFT_INFLIGHT_ENTRIES_MAX;
        if progress.next <= self.log.last_index() && progress.next <= window {
            let room = usize::try_from(window + 1 - progress.next).unwrap_or(usize::MAX);
            let count = RAFT_APPEND_ENTRIES_MAX.min(room);
            entries = self.log.slice(progress.next, count, RAFT_APPEND_BYTES_MAX);
        }
        if entries.is_empty() && !heartbeat {
            return;
        }
        let prev_index = progress.next - 1;
        if !progress.probing {
            progress.next += entries.len() as u64; // Pipelined: sent, not yet acknowledged.
        }
        let append = AppendEntries {
            prev_index,
            prev_term: self.log.term_at(prev_index).expect("after the snapshot"),
            commit: self.commit,
            leader_last_index: self.log.last_index(),
            entries,
        };
        self.send(to, self.hard.term, MessageKind::AppendEntries(append), self.hard_seq);
    }

    /// The heartbeat: entries not acknowledged since the last one are sent again (the
    /// network may have lost them), everyone gets an AppendEntries.
    pub(super) fn heartbeat(&mut self, now: Instant) {
        if self.role != Role::Leader {
            return;
        }
        for progress in self.progress.values_mut() {
            if !progress.advanced && progress.next > progress.matched + 1 {
                progress.next = progress.matched + 1;
                progress.probing = true;
            }
            progress.advanced = false;
        }
        self.broadcast_append(true);
        if let Some((to, deadline)) = self.transfer {
            if now >= deadline {
                tracing::warn!(?to, "raft: leadership transfer timed out; leading on");
                self.transfer = None;
            } else {
                self.advance_transfer();
            }
        }
        self.timers.set(super::Timer::Heartbeat, now + self.config.heartbeat_interval);
    }

    /// Tells the transfer's target to campaign once it holds the whole log (else the
    /// heartbeats and answers bring it up to date first).
    pub(super) fn advance_transfer(&mut self) {
        let Some((to, _)) = self.transfer else { return };
        let progress = &self.progress[&to];
        if progress.matched == self.log.last_index() {
            let kind = MessageKind::TimeoutNow(super::message::TimeoutNow {});
            self.send(to, self.hard.term, kind, self.hard_seq);
        } else if progress.probing {
            self.send_append(to, true);
        }
    }

    pub(super) fn handle_append_response(
        &mut self,
        now: Instant,
        from: NodeId,
        response: &AppendEntriesResponse,
    ) {
        if self.role != Role::Leader {
            return;
        }
        let last_index = self.log.last_index();
        let snapshot_index = self.log.snapshot_index();
        let Some(progress) = self.progress.get_mut(&from) else { return };
        progress.last_heard = now;
        if response.success {
            if response.match_index > last_index {
                return; // Not an answer to this leader's log: a bug or a stray message.
            }
            if response.match_index > progress.matched {
                progress.matched = response.match_index;
                progress.advanced = true;
            }
            progress.probing = false;
            progress.next = progress.next.max(progress.matched + 1);
            self.maybe_commit();
            if self.transfer.is_some_and(|(to, _)| to == from) {
                self.advance_transfer();
            }
            return self.send_append(from, false);
        }
        if response.reject_index < progress.matched || progress.snapshot.is_some() {
            return; // Stale: the member is known to match further than that.
        }
        // Fast backtracking: skip the whole conflicting term at once.
        let hint = if response.conflict_term > 0 {
            match self.log.last_index_of_term(response.conflict_term) {
                Some(index) if index >= snapshot_index => index + 1,
                _ => response.conflict_index,
            }
        } else {
            response.conflict_index
        };
        let hint = hint.clamp(1, response.reject_index.max(1));
        if hint <= progress.matched {
            // The member no longer holds what it acknowledged: its disk was wiped or cut at
            // a damaged frame (it then votes only once caught up), or this rejection crossed
            // an acknowledgement. Either way, probing from the hint is safe; only the count
            // toward commit gets more cautious.
            progress.matched = hint - 1;
        }
        progress.next = hint.max(progress.matched + 1).min(last_index + 1);
        progress.probing = true;
        self.send_append(from, true);
    }

    /// Commits the highest index a majority of voters hold durably, if it is of this term
    /// (§3.6.2). The leader counts itself only up to its own synced index.
    pub(super) fn maybe_commit(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let mut matched: Vec<u64> = self
            .config
            .voters
            .iter()
            .map(|voter| {
                if *voter == self.id() {
                    self.storage.synced_index()
                } else {
                    self.progress.get(voter).map_or(0, |p| p.matched)
                }
            })
            .collect();
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let index = matched[self.quorum() - 1];
        if index > self.commit && self.log.term_at(index) == Some(self.hard.term) {
            self.commit = index;
            self.apply();
            self.broadcast_append(true);
        }
    }

    fn send_snapshot_chunk(&mut self, to: NodeId) {
        let index = self.log.snapshot_index();
        let progress = self.progress.get_mut(&to).expect("a member");
        let offset = match progress.snapshot {
            Some((sending, offset)) if sending == index => offset,
            _ => 0, // A newer snapshot replaced the one being sent: start over.
        };
        progress.snapshot = Some((index, offset));
        let total = self.snapshot_data.len() as u64;
        let start = usize::try_from(offset.min(total)).expect("bounded");
        let end = (start + RAFT_SNAPSHOT_CHUNK_BYTES).min(self.snapshot_data.len());
        let chunk = InstallSnapshot {
            index,
            snapshot_term: self.log.snapshot_term(),
            offset,
            total_bytes: total,
            crc: self.snapshot_crc,
            data: self.snapshot_data.slice(start..end),
        };
        self.send(to, self.hard.term, MessageKind::InstallSnapshot(chunk), self.hard_seq);
    }

    pub(super) fn handle_install_response(
        &mut self,
        now: Instant,
        from: NodeId,
        response: &InstallSnapshotResponse,
    ) {
        if self.role != Role::Leader {
            return;
        }
        let Some(progress) = self.progress.get_mut(&from) else { return };
        progress.last_heard = now;
        let Some((index, _)) = progress.snapshot else { return };
        if response.index != index {
            return; // An answer about another snapshot.
        }
        if response.done {
            progress.snapshot = None;
            progress.matched = progress.matched.max(index);
            progress.next = progress.matched + 1;
            progress.probing = true;
            progress.advanced = true;
            self.maybe_commit();
        } else {
            progress.snapshot = Some((index, response.next_offset));
        }
        self.send_append(from, true);
    }

    // ----- follower side -----

    /// Hears from the leader of the current term: follows it.
    fn follow(&mut self, now: Instant, from: NodeId) -> bool {
        if self.leader.is_some_and(|leader| leader != from) {
            // Two leaders in one term would break election safety; never follow the second.
            tracing::error!(?from, leader = ?self.leader, term = self.hard.term, "two leaders");
            return false;
        }
        if self.role != Role::Follower || self.leader.is_none() {
            self.become_follower(now, self.hard.term, Some(from));
        }
        self.leader_contact = Some(now);
        self.reset_election_timer(now);
        true
    }

    pub(super) fn handle_append(
        &mut self,
        now: Instant,
        from: NodeId,
        append: AppendEntries,
        out: &mut impl DiskQueue,
    ) {
        if !self.follow(now, from) || self.installing() {
            return;
        }
        if !self.hard.caught_up && self.catch_up.is_none_or(|(term, _)| term != self.hard.term) {
            self.catch_up = Some((self.hard.term, append.leader_last_index));
        }
        let AppendEntries { mut prev_index, mut prev_term, commit, mut entries, .. } = append;
        let snapshot_index = self.log.snapshot_index();
        if prev_index < snapshot_index {
            // Entries up to the snapshot are committed and held: skip them.
            let skip = usize::try_from(snapshot_index - prev_index).unwrap_or(usize::MAX);
            if skip > entries.len() {
                let matched = prev_index + entries.len() as u64;
                return self.answer_append(from, true, matched, 0, 0, 0);
            }
            entries.drain(..skip);
            prev_index = snapshot_index;
            prev_term = self.log.snapshot_term();
        }
        match self.log.term_at(prev_index) {
            None => {
                let conflict_index = self.log.last_index() + 1;
                return self.answer_append(from, false, 0, prev_index, 0, conflict_index);
            }
            Some(term) if term != prev_term => {
                let first = self.log.first_index_of_term_at(prev_index);
                return self.answer_append(from, false, 0, prev_index, term, first);
            }
            Some(_) => {}
        }
        let last_new = prev_index + entries.len() as u64;
        if let Err(fatal) = self.append_entries(entries, out) {
            return self.stop(fatal);
        }
        self.leader_match = self.leader_match.max(last_new);
        let commit = commit.min(last_new);
        if commit > self.commit {
            self.commit = commit;
            self.apply();
        }
        self.answer_append(from, true, last_new, 0, 0, 0);
        self.check_caught_up(now, out);
    }

    /// Whether a snapshot from the leader is being stored: the log waits for it.
    fn installing(&self) -> bool {
        matches!(self.storing, Some(Storing { source: SnapshotSource::Leader(_), .. }))
    }

    /// Appends the entries the log does not hold yet, cutting a conflicting suffix first.
    /// A conflict with a committed entry is refused: Raft's leader completeness says it
    /// cannot happen, so the leader's log lost entries a quorum had stored (its disk, and
    /// too many others, were damaged), and this node stops rather than cut what it applied.
    fn append_entries(
        &mut self,
        entries: Vec<Entry>,
        out: &mut impl DiskQueue,
    ) -> Result<(), RaftFatal> {
        let Some(first_new) =
            entries.iter().position(|entry| self.log.term_at(entry.index) != Some(entry.term))
        else {
            return Ok(()); // Every entry is held already (a duplicate or a reordered message).
        };
        let from = entries[first_new].index;
        let truncated = (from <= self.log.last_index()).then_some(from - 1);
        if let Some(index) = truncated {
            if index < self.commit {
                return Err(RaftFatal::CommittedConflict {
                    index: index + 1,
                    commit: self.commit,
                    leader: self.leader.map_or(0, |leader| leader.0),
                });
            }
            self.log.truncate_after(index);
        }
        let mut records = Vec::with_capacity(entries.len() - first_new);
        for entry in entries.into_iter().skip(first_new) {
            self.log.push(entry.clone());
            records.push(WalRecord { kind: Some(WalKind::Entry(entry)) });
        }
        self.storage.write(records, &self.log, truncated, out);
        Ok(())
    }

    fn answer_append(
        &mut self,
        to: NodeId,
        success: bool,
        match_index: u64,
        reject_index: u64,
        conflict_term: u64,
        conflict_index: u64,
    ) {
        let response = AppendEntriesResponse {
            success,
            match_index,
            reject_index,
            conflict_term,
            conflict_index,
        };
        // A success acknowledges entries: it leaves once everything written so far is
        // durable. A rejection only carries the term.
        let seq = if success { self.storage.write_seq() } else { self.hard_seq };
        let synced = self.storage.synced_seq();
        if success && synced < seq && self.hard_seq <= synced {
            // A sync is still in flight, and it can take long while the disk writes back
            // partition data. Until it completes, the leader hears at once an answer that
            // claims only the entries already durable (they match the leader's up to
            // `match_index`): a slow disk must not look like a lost member to CheckQuorum
            // and unseat the leader. (While the term itself is not durable, nothing leaves.)
            let durable = AppendEntriesResponse {
                match_index: match_index.min(self.storage.synced_index()),
                ..response.clone()
            };
            let kind = MessageKind::AppendEntriesResponse(durable);
            self.send(to, self.hard.term, kind, self.hard_seq);
        }
        self.send(to, self.hard.term, MessageKind::AppendEntriesResponse(response), seq);
    }

    /// A rejoining node that has synced the leader's log up to its target may vote again;
    /// the flag is written before any vote can depend on it.
    pub(super) fn check_caught_up(&mut self, now: Instant, out: &mut impl DiskQueue) {
        let Some((term, target)) = self.catch_up else { return };
        if self.hard.caught_up || term != self.hard.term {
            return;
        }
        if self.leader_match >= target && self.storage.synced_index() >= target {
            tracing::info!(target, "raft: caught up after a rejoin; voting again");
            self.hard.caught_up = true;
            // The wiped disk may have held a vote in this very term, for this leader: take
            // it as this node's vote, so that no other candidate of the term gets a second.
            if self.hard.voted_for == 0
                && let Some(leader) = self.leader
            {
                self.hard.voted_for = leader.0 + 1;
            }
            self.catch_up = None;
            self.hard_seq = self.write_hard_state(out);
            self.reset_election_timer(now);
        }
    }

    pub(super) fn handle_install(
        &mut self,
        now: Instant,
        from: NodeId,
        chunk: InstallSnapshot,
        out: &mut impl DiskQueue,
    ) {
        if !self.follow(now, from) || self.installing() {
            return;
        }
        if chunk.index <= self.commit {
            // Every entry it covers is committed and held here already.
            self.install = None;
            return self.snapshot_installed_reply(from, chunk.index);
        }
        if chunk.total_bytes > RAFT_SNAPSHOT_BYTES_MAX {
            tracing::error!(bytes = chunk.total_bytes, "raft: the leader's snapshot is too big");
            return;
        }
        let same = |install: &Install| {
            (install.index, install.term, install.total_bytes, install.crc)
                == (chunk.index, chunk.snapshot_term, chunk.total_bytes, chunk.crc)
        };
        if chunk.offset == 0 && !self.install.as_ref().is_some_and(same) {
            self.install = Some(Install {
                index: chunk.index,
                term: chunk.snapshot_term,
                total_bytes: chunk.total_bytes,
                crc: chunk.crc,
                data: BytesMut::new(),
            });
        }
        let next_offset = match &mut self.install {
            Some(install) if same(install) => {
                if chunk.offset == install.data.len() as u64
                    && chunk.offset + chunk.data.len() as u64 <= install.total_bytes
                {
                    install.data.extend_from_slice(&chunk.data);
                }
                install.data.len() as u64
            }
            _ => 0,
        };
        if next_offset == chunk.total_bytes {
            return self.store_install(from, out);
        }
        let response = InstallSnapshotResponse { index: chunk.index, next_offset, done: false };
        let kind = MessageKind::InstallSnapshotResponse(response);
        self.send(from, self.hard.term, kind, self.hard_seq);
    }

    /// Every chunk arrived: checks the whole and stores it; the leader is answered once it
    /// is durable.
    fn store_install(&mut self, from: NodeId, out: &mut impl DiskQueue) {
        let install = self.install.take().expect("complete");
        if crc32fast::hash(&install.data) != install.crc {
            tracing::warn!(index = install.index, "raft: a received snapshot is damaged");
            let response =
                InstallSnapshotResponse { index: install.index, next_offset: 0, done: false };
            let kind = MessageKind::InstallSnapshotResponse(response);
            return self.send(from, self.hard.term, kind, self.hard_seq);
        }
        if self.storage.snapshot_busy() {
            self.install = Some(install); // Asked again by the leader's next chunk.
            return;
        }
        let data = install.data.freeze();
        let (index, term) = (install.index, install.term);
        let record = SnapshotRecord { index, term, data: data.clone() };
        self.storage.store_snapshot(&record, out);
        let source = SnapshotSource::Leader(from);
        self.storing = Some(Storing { source, index, term, data });
    }

    /// Tells the leader that this node holds everything up to `index`.
    pub(super) fn snapshot_installed_reply(&mut self, to: NodeId, index: u64) {
        let response = InstallSnapshotResponse { index, next_offset: 0, done: true };
        let kind = MessageKind::InstallSnapshotResponse(response);
        self.send(to, self.hard.term, kind, self.storage.write_seq());
    }
}
