//! Raft's settings, its typed errors, what it reports ([`RaftEvent`]) and the pure function
//! that formats a node ([`format_ops`]).

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::message::{BootstrapRecord, RaftMessage};
use crate::core::frame::encode_frame;
use crate::core::io::{DiskOp, FileName, NodeId};
use crate::core::limits::{RAFT_MEMBERS_MAX, RAFT_VOTERS_MAX};

/// The directory of Raft's files.
pub const RAFT_DIR: &str = "raft";
/// The bootstrap record written by [`format_ops`].
pub const BOOTSTRAP_FILE: &str = "raft/bootstrap";
const BOOTSTRAP_TMP: &str = "raft/bootstrap.tmp";

/// Raft's settings. Membership is static: it is what `cairn format` wrote, and [`super::Raft`]
/// refuses to start when the two disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftConfig {
    /// This node.
    pub node_id: NodeId,
    /// The members that elect leaders and count for commit.
    pub voters: Vec<NodeId>,
    /// The members that receive the log and never vote.
    pub learners: Vec<NodeId>,
    /// Election timeouts are drawn uniformly from `[min, max)`; `min` is also the window of
    /// leader stickiness and of CheckQuorum (thesis §4.2.3, §6.2).
    pub election_timeout_min: Duration,
    /// See `election_timeout_min`.
    pub election_timeout_max: Duration,
    /// How often a leader sends AppendEntries to an idle follower.
    pub heartbeat_interval: Duration,
    /// Seed of the generator that draws election timeouts.
    pub seed: u64,
    /// Ask the application for a snapshot ([`RaftEvent::SnapshotWanted`]) once this many
    /// entries were applied since the last one...
    pub snapshot_entries: u64,
    /// ... or once the entries since the last one hold this many bytes.
    pub snapshot_bytes: u64,
}

impl RaftConfig {
    /// Settings with the default timeouts: elections 500-1000 ms, heartbeats every 100 ms
    /// (decision 0009: failover under 2 s).
    pub fn new(node_id: NodeId, voters: Vec<NodeId>, learners: Vec<NodeId>) -> RaftConfig {
        RaftConfig {
            node_id,
            voters,
            learners,
            election_timeout_min: Duration::from_millis(500),
            election_timeout_max: Duration::from_millis(1000),
            heartbeat_interval: Duration::from_millis(100),
            seed: u64::from(node_id.0),
            snapshot_entries: 10_000,
            snapshot_bytes: 8 << 20,
        }
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.voters.is_empty() || self.voters.len() > RAFT_VOTERS_MAX {
            return Err(ConfigError::Voters(self.voters.len()));
        }
        let mut all: Vec<NodeId> = self.voters.iter().chain(&self.learners).copied().collect();
        if all.len() > RAFT_MEMBERS_MAX {
            return Err(ConfigError::Members(all.len()));
        }
        all.sort();
        if let Some(pair) = all.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(ConfigError::Duplicate(pair[0]));
        }
        if !all.contains(&self.node_id) {
            return Err(ConfigError::NotMember(self.node_id));
        }
        if self.election_timeout_min.is_zero()
            || self.election_timeout_max <= self.election_timeout_min
            || self.heartbeat_interval.is_zero()
            || self.heartbeat_interval * 2 > self.election_timeout_min
        {
            return Err(ConfigError::Timeouts);
        }
        if self.snapshot_entries == 0 || self.snapshot_bytes == 0 {
            return Err(ConfigError::SnapshotThresholds);
        }
        Ok(())
    }
}

/// A setting out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No voter, or too many.
    #[error("a Raft group needs 1 to {RAFT_VOTERS_MAX} voters, not {0}")]
    Voters(usize),
    /// Too many members.
    #[error("a Raft group has at most {RAFT_MEMBERS_MAX} members, not {0}")]
    Members(usize),
    /// A node listed twice.
    #[error("node {0:?} is listed twice among voters and learners")]
    Duplicate(NodeId),
    /// This node is not a member.
    #[error("node {0:?} is neither a voter nor a learner")]
    NotMember(NodeId),
    /// Timeouts that cannot work.
    #[error("need 0 < election_timeout_min < election_timeout_max and 2 heartbeats within min")]
    Timeouts,
    /// A snapshot threshold of zero.
    #[error("snapshot thresholds must be positive")]
    SnapshotThresholds,
}

/// Why Raft stopped. The node cannot take part in the quorum until an operator acts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RaftFatal {
    /// No bootstrap record: the data directory was never formatted.
    #[error("not formatted: {BOOTSTRAP_FILE} is missing; run `cairn format` on this node")]
    NotFormatted,
    /// The settings are invalid.
    #[error("invalid Raft settings: {0}")]
    Config(#[from] ConfigError),
    /// The bootstrap record disagrees with the settings.
    #[error("{BOOTSTRAP_FILE} says {found}, the settings say {expected}; format again or fix")]
    Mismatch {
        /// What the record holds.
        found: String,
        /// What the settings hold.
        expected: String,
    },
    /// A file holds damaged data that Raft cannot do without.
    #[error("corrupt {file}: {detail}")]
    Corrupt {
        /// The file.
        file: FileName,
        /// What is wrong.
        detail: String,
    },
    /// The leader sent entries that conflict with an entry this node knows committed: the
    /// leader's log lost committed entries (damaged disks on a quorum), so this node stops
    /// rather than take back what it applied.
    #[error(
        "leader {leader} sent entries conflicting with committed entry {index} (commit \
         {commit}): the leader's log lost committed metadata; this node stops rather than \
         apply a different history"
    )]
    CommittedConflict {
        /// The first conflicting index.
        index: u64,
        /// This node's commit index.
        commit: u64,
        /// The leader that sent them.
        leader: u32,
    },
    /// The disk keeps failing.
    #[error("storage keeps failing on {file}: {detail}")]
    Storage {
        /// The file of the last failure.
        file: FileName,
        /// The last error.
        detail: String,
    },
}

/// Why a proposal was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// Only the leader appends; `leader` is the one this node knows of.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The current leader, if known.
        leader: Option<NodeId>,
    },
    /// The payload is over [`crate::core::limits::RAFT_ENTRY_BYTES_MAX`].
    #[error("payload of {0} bytes is over the limit")]
    TooLarge(usize),
    /// Too many entries or bytes await commit, or the log awaits a snapshot; try later.
    #[error("too much awaits commit or a snapshot; try again later")]
    Backlog,
    /// Leadership is being handed over; proposals wait for the new leader (§3.10).
    #[error("leadership is being handed over to {to:?}")]
    Transferring {
        /// The member taking over.
        to: NodeId,
    },
}

/// Why a leadership transfer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// Only the leader hands leadership over.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The current leader, if known.
        leader: Option<NodeId>,
    },
    /// The target is this node, or not a voter.
    #[error("{0:?} is not another voter")]
    NotAVoter(NodeId),
}

/// Why a snapshot was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The index is not applied (not yet reported as committed).
    #[error("index {index} is not applied (applied: {applied})")]
    NotApplied {
        /// The index given.
        index: u64,
        /// The applied index.
        applied: u64,
    },
    /// The index is not after the current snapshot.
    #[error("index {index} is not after the snapshot at {snapshot_index}")]
    Stale {
        /// The index given.
        index: u64,
        /// The current snapshot's index.
        snapshot_index: u64,
    },
    /// Another snapshot is being stored.
    #[error("a snapshot is being stored")]
    Busy,
    /// The data is over [`crate::core::limits::RAFT_SNAPSHOT_BYTES_MAX`].
    #[error("snapshot of {0} bytes is over the limit")]
    TooLarge(usize),
    /// Raft is recovering or stopped.
    #[error("raft is not ready")]
    NotReady,
}

/// What a member is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Follows a leader (or waits for one). Learners are always followers.
    Follower,
    /// Asks for pre-votes without changing its term (thesis §9.6).
    PreCandidate,
    /// Asks for votes in a new term.
    Candidate,
    /// Appends and replicates.
    Leader,
}

/// What Raft reports to the node, through [`super::Raft::poll_event`].
#[derive(Debug, Clone, PartialEq)]
pub enum RaftEvent {
    /// Send `message` to `to`. Every write it depends on is durable.
    Send {
        /// The receiver.
        to: NodeId,
        /// The message.
        message: RaftMessage,
    },
    /// An application entry is committed; reported in index order, once per process.
    Committed {
        /// Its index.
        index: u64,
        /// Its term.
        term: u64,
        /// The payload proposed.
        payload: Bytes,
    },
    /// Replace the application's state with this snapshot (at start, or installed from the
    /// leader); `Committed` continues after `index`.
    Restore {
        /// The last index the snapshot covers.
        index: u64,
        /// Its term.
        term: u64,
        /// The application's image.
        data: Bytes,
    },
    /// The leader known to this node changed (or its term did).
    LeaderChanged {
        /// The leader, if known.
        leader: Option<NodeId>,
        /// The current term.
        term: u64,
    },
    /// The log has grown past the snapshot thresholds: the application should call
    /// [`super::Raft::snapshot`] with its applied index.
    SnapshotWanted {
        /// The applied index.
        applied: u64,
    },
    /// Raft stopped; see [`super::Raft::fatal`].
    Fatal(String),
}

/// The disk ops that format a node: the first log segment (term 0, no vote, and whether the
/// node may vote at once: only on the cluster's first format), then the bootstrap record,
/// each written to a temporary file, synced, then renamed into place. A driver runs them in
/// order and must stop at the first that fails (a rename only after its sync succeeded).
/// The bootstrap record comes last, so that a format cut short reads as "not formatted".
pub fn format_ops(record: &BootstrapRecord) -> Vec<DiskOp> {
    let mut frame = BytesMut::new();
    encode_frame(record, &mut frame);
    let tmp = FileName::new(BOOTSTRAP_TMP);
    let mut ops = super::recovery::first_segment_ops(record.initial);
    ops.extend([
        DiskOp::Create { file: tmp.clone() },
        DiskOp::Append { file: tmp.clone(), pos: 0, data: frame.freeze() },
        DiskOp::Sync { file: tmp.clone() },
        DiskOp::Rename { from: tmp, to: FileName::new(BOOTSTRAP_FILE) },
    ]);
    ops
}

/// Checks that `record` describes the members of `config`.
pub(super) fn check_bootstrap(
    record: &BootstrapRecord,
    config: &RaftConfig,
) -> Result<(), RaftFatal> {
    let ids = |nodes: &[NodeId]| {
        let mut ids: Vec<u32> = nodes.iter().map(|n| n.0).collect();
        ids.sort_unstable();
        ids
    };
    let sorted = |ids: &[u32]| {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids
    };
    let found = (record.node_id, sorted(&record.voters), sorted(&record.learners));
    let expected = (config.node_id.0, ids(&config.voters), ids(&config.learners));
    if found != expected {
        let show = |(node, voters, learners): (u32, Vec<u32>, Vec<u32>)| {
            format!("node {node}, voters {voters:?}, learners {learners:?}")
        };
        return Err(RaftFatal::Mismatch { found: show(found), expected: show(expected) });
    }
    Ok(())
}
