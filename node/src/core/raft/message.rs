//! The prost messages of Raft: what nodes send each other ([`RaftMessage`]) and what a node
//! writes under `raft/` ([`WalRecord`], [`SnapshotRecord`], [`BootstrapRecord`]).
//!
//! Every message carries the sender's term in [`RaftMessage::term`], except that a PreVote
//! request carries the term the sender *would* campaign in and a granted PreVote response
//! echoes it (thesis §9.6): neither side adopts that term.

use bytes::Bytes;

/// What an entry of the log holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum EntryKind {
    /// An application payload, reported as [`super::RaftEvent::Committed`] once committed.
    Normal = 0,
    /// Appended by a new leader at once, so that its commit index can move (§3.6.2 of the
    /// thesis, §5.4.2 of the paper); never reported to the application.
    LeaderChange = 1,
}

/// One entry of the replicated log.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Entry {
    /// Its position, from 1.
    #[prost(uint64, tag = "1")]
    pub index: u64,
    /// The term of the leader that appended it.
    #[prost(uint64, tag = "2")]
    pub term: u64,
    /// What it holds.
    #[prost(enumeration = "EntryKind", tag = "3")]
    pub kind: i32,
    /// The application's payload (empty for a leader change).
    #[prost(bytes = "bytes", tag = "4")]
    pub payload: Bytes,
    /// For a leader change: the new leader.
    #[prost(uint32, tag = "5")]
    pub leader: u32,
}

impl Entry {
    /// Bytes this entry counts for in the bounds on memory and messages.
    pub fn size_bytes(&self) -> u64 {
        self.payload.len() as u64 + 32
    }

    /// Whether it is an application entry.
    pub fn is_normal(&self) -> bool {
        self.kind == EntryKind::Normal as i32
    }
}

/// One message between two members.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RaftMessage {
    /// The sender's term (for PreVote: the term it would campaign in).
    #[prost(uint64, tag = "1")]
    pub term: u64,
    /// What the message is.
    #[prost(oneof = "MessageKind", tags = "2, 3, 4, 5, 6, 7, 8, 9, 10")]
    pub kind: Option<MessageKind>,
}

/// The kinds of [`RaftMessage`].
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum MessageKind {
    /// Would you vote for me in `term`? Changes no state at the receiver (thesis §9.6).
    #[prost(message, tag = "2")]
    PreVote(VoteRequest),
    /// The answer to a PreVote.
    #[prost(message, tag = "3")]
    PreVoteResponse(VoteResponse),
    /// RequestVote (§3.4).
    #[prost(message, tag = "4")]
    Vote(VoteRequest),
    /// The answer to a RequestVote.
    #[prost(message, tag = "5")]
    VoteResponse(VoteResponse),
    /// AppendEntries (§3.5); empty as a heartbeat.
    #[prost(message, tag = "6")]
    AppendEntries(AppendEntries),
    /// The answer to an AppendEntries.
    #[prost(message, tag = "7")]
    AppendEntriesResponse(AppendEntriesResponse),
    /// One chunk of a snapshot (§5.3).
    #[prost(message, tag = "8")]
    InstallSnapshot(InstallSnapshot),
    /// The answer to a chunk.
    #[prost(message, tag = "9")]
    InstallSnapshotResponse(InstallSnapshotResponse),
    /// From a leader handing leadership over: campaign now (thesis §3.10).
    #[prost(message, tag = "10")]
    TimeoutNow(TimeoutNow),
}

/// Asks a caught-up follower to start an election at once, without a pre-vote.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct TimeoutNow {}

/// A (pre)vote request: the candidate's last log position.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VoteRequest {
    /// Index of the candidate's last entry.
    #[prost(uint64, tag = "1")]
    pub last_index: u64,
    /// Term of the candidate's last entry.
    #[prost(uint64, tag = "2")]
    pub last_term: u64,
    /// Whether the candidate campaigns because the leader handed leadership over: voters
    /// then answer even though they heard from that leader recently (§3.10, §4.2.3).
    #[prost(bool, tag = "3")]
    pub transfer: bool,
}

/// A (pre)vote answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VoteResponse {
    /// Whether the vote is granted.
    #[prost(bool, tag = "1")]
    pub granted: bool,
}

/// AppendEntries: entries following `(prev_index, prev_term)`, or none (a heartbeat).
#[derive(Clone, PartialEq, prost::Message)]
pub struct AppendEntries {
    /// Index of the entry just before `entries`.
    #[prost(uint64, tag = "1")]
    pub prev_index: u64,
    /// Its term.
    #[prost(uint64, tag = "2")]
    pub prev_term: u64,
    /// The leader's commit index.
    #[prost(uint64, tag = "3")]
    pub commit: u64,
    /// The leader's last index when it sent this: a rejoining (wiped) node catches up to it
    /// before it votes. See the module documentation of `raft`.
    #[prost(uint64, tag = "4")]
    pub leader_last_index: u64,
    /// The entries, in index order from `prev_index + 1`.
    #[prost(message, repeated, tag = "5")]
    pub entries: Vec<Entry>,
}

/// The answer to an AppendEntries.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AppendEntriesResponse {
    /// Whether the consistency check passed; then `match_index` is durable on the follower.
    #[prost(bool, tag = "1")]
    pub success: bool,
    /// On success: the last index known to match the leader's log, synced.
    #[prost(uint64, tag = "2")]
    pub match_index: u64,
    /// On rejection: the `prev_index` that was rejected (to spot stale answers).
    #[prost(uint64, tag = "3")]
    pub reject_index: u64,
    /// On rejection: the follower's term at `reject_index`, or 0 when its log is shorter
    /// (fast backtracking, §5.3 of the paper's extended version).
    #[prost(uint64, tag = "4")]
    pub conflict_term: u64,
    /// On rejection: the first index of `conflict_term` in the follower's log, or its last
    /// index plus one when it is shorter.
    #[prost(uint64, tag = "5")]
    pub conflict_index: u64,
}

/// One chunk of the leader's snapshot.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InstallSnapshot {
    /// The last index the snapshot covers.
    #[prost(uint64, tag = "1")]
    pub index: u64,
    /// The term of that entry.
    #[prost(uint64, tag = "2")]
    pub snapshot_term: u64,
    /// Byte offset of `data` in the snapshot.
    #[prost(uint64, tag = "3")]
    pub offset: u64,
    /// The snapshot's total length.
    #[prost(uint64, tag = "4")]
    pub total_bytes: u64,
    /// CRC-32 (IEEE) of the whole snapshot, checked once every chunk arrived.
    #[prost(uint32, tag = "5")]
    pub crc: u32,
    /// The chunk.
    #[prost(bytes = "bytes", tag = "6")]
    pub data: Bytes,
}

/// The answer to a chunk.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InstallSnapshotResponse {
    /// The snapshot's index.
    #[prost(uint64, tag = "1")]
    pub index: u64,
    /// The next byte the follower wants.
    #[prost(uint64, tag = "2")]
    pub next_offset: u64,
    /// Whether the follower holds the snapshot durably (or already had every entry in it).
    #[prost(bool, tag = "3")]
    pub done: bool,
}

/// What `cairn format` writes to `raft/bootstrap`: who this node is and who the members are.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct BootstrapRecord {
    /// The cluster's id.
    #[prost(string, tag = "1")]
    pub cluster_id: String,
    /// This node's id.
    #[prost(uint32, tag = "2")]
    pub node_id: u32,
    /// The voters.
    #[prost(uint32, repeated, tag = "3")]
    pub voters: Vec<u32>,
    /// The learners.
    #[prost(uint32, repeated, tag = "4")]
    pub learners: Vec<u32>,
    /// Whether this is the cluster's first format (`false`: the node rejoins after a wipe
    /// and must catch up before it votes).
    #[prost(bool, tag = "5")]
    pub initial: bool,
    /// A number drawn when the directory was formatted: a directory wiped and formatted
    /// again has another, so the controller can tell a broker that lost its data from one
    /// that kept it (0 in directories formatted before it existed: unknown).
    #[prost(uint64, tag = "6")]
    pub directory_id: u64,
}

/// The durable term, vote and progress of a node.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct HardState {
    /// The current term.
    #[prost(uint64, tag = "1")]
    pub term: u64,
    /// The candidate voted for in `term`, plus one (0: none).
    #[prost(uint32, tag = "2")]
    pub voted_for: u32,
    /// A commit index known when this was written (a lower bound).
    #[prost(uint64, tag = "3")]
    pub commit: u64,
    /// Whether a rejoining node has caught up and may vote (always true after an initial
    /// format).
    #[prost(bool, tag = "4")]
    pub caught_up: bool,
}

/// The first record of every log segment: the position the segment's entries follow.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct SegmentHeader {
    /// The segment's number (also in its file name).
    #[prost(uint64, tag = "1")]
    pub segment: u64,
    /// Index of the entry before the segment's first entry (the snapshot's index).
    #[prost(uint64, tag = "2")]
    pub prev_index: u64,
    /// Its term.
    #[prost(uint64, tag = "3")]
    pub prev_term: u64,
}

/// One frame of a log segment.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WalRecord {
    /// What the record is.
    #[prost(oneof = "WalKind", tags = "1, 2, 3")]
    pub kind: Option<WalKind>,
}

/// The kinds of [`WalRecord`].
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum WalKind {
    /// The segment's first record.
    #[prost(message, tag = "1")]
    Header(SegmentHeader),
    /// A new hard state; the last one in the segment wins.
    #[prost(message, tag = "2")]
    HardState(HardState),
    /// An entry; it replaces the entry at its index and every entry after it.
    #[prost(message, tag = "3")]
    Entry(Entry),
}

/// The one frame of a snapshot file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SnapshotRecord {
    /// The last index the snapshot covers.
    #[prost(uint64, tag = "1")]
    pub index: u64,
    /// The term of that entry.
    #[prost(uint64, tag = "2")]
    pub term: u64,
    /// The application's image.
    #[prost(bytes = "bytes", tag = "3")]
    pub data: Bytes,
}
