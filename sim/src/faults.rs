//! Faults: the actions a scenario's timeline or the random nemesis applies to the world.
//!
//! Nodes are numbered from 1 (`node = 1` is the first), as in the scenarios and the output.
//! A scenario may also name a node by its role ([`NodeRef`]): `"controller"` or
//! `"leader:TOPIC-PARTITION"` or `"follower:TOPIC-PARTITION"`, resolved by the world when
//! the fault strikes. A fault of the timeline whose role nobody holds at its time (a
//! partition's follower before its topic exists, the controller between two elections)
//! waits until someone does, for at most `ROLE_WAIT_NS` (world.rs) and never past the
//! safety phase; then it strikes the node a role falls back to.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

use crate::params::Params;

/// A kind of fault the nemesis can draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// Power loss of a node: memory and unsynced writes gone; it restarts later.
    Crash,
    /// A node stops handling anything for a while (a long GC).
    Pause,
    /// Clients cannot reach a node (both directions).
    CutClients,
    /// A node's replies to clients are lost, requests still arrive (one way).
    CutReplies,
    /// A node cannot reach or be reached by anyone.
    Isolate,
    /// A node is cut from the other nodes (meaningful once replication lands).
    PartitionNodes,
    /// Messages to and from a node are delayed by a lot.
    Clog,
    /// A node's disk is full for a while.
    DiskFull,
    /// A node's disk is slow for a while.
    SlowDisk,
    /// The next sync of a node's disk fails (fsyncgate).
    FailSync,
    /// A node's clock jumps forward or drifts.
    Clock,
    /// One bit of a node's durable data flips (unrecoverable on a single replica).
    Corrupt,
    /// A sector of a node's data goes bad (unrecoverable on a single replica).
    BadSector,
    /// A node's disk is wiped (every file gone); it is formatted to rejoin and restarted.
    Wipe,
    /// A node's clock leaps forward by seconds (an NTP step, a VM resumed late).
    ClockJump,
}

impl FaultKind {
    /// Every kind, in the order of [`crate::params::FaultRates::weights`].
    /// How many kinds the first version of `Params::draw` drew weights for, in one go.
    pub const FIRST_DRAWN: usize = 13;

    /// Kinds added after the first thirteen come last, so that the weights the params stream
    /// draws for those keep their values (`Params::draw`).
    pub const ALL: [FaultKind; 15] = [
        FaultKind::Crash,
        FaultKind::Pause,
        FaultKind::CutClients,
        FaultKind::CutReplies,
        FaultKind::Isolate,
        FaultKind::PartitionNodes,
        FaultKind::Clog,
        FaultKind::DiskFull,
        FaultKind::SlowDisk,
        FaultKind::FailSync,
        FaultKind::Clock,
        FaultKind::Corrupt,
        FaultKind::BadSector,
        FaultKind::Wipe,
        FaultKind::ClockJump,
    ];

    /// Whether the kind destroys durable data (allowed only by the unrecoverable atlas).
    pub fn unrecoverable(self) -> bool {
        matches!(self, FaultKind::Corrupt | FaultKind::BadSector)
    }

    /// Whether the recoverable atlas may draw the kind. A wipe is recoverable only where the
    /// wiped node's partitions have other replicas: not while each node holds its partitions
    /// alone ([`crate::world::NODES_REPLICATE`]).
    pub fn recoverable(self) -> bool {
        !self.unrecoverable() && (self != FaultKind::Wipe || crate::world::NODES_REPLICATE)
    }

    /// Its name in scenarios and reports.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Crash => "crash",
            FaultKind::Pause => "pause",
            FaultKind::CutClients => "cut-clients",
            FaultKind::CutReplies => "cut-replies",
            FaultKind::Isolate => "isolate",
            FaultKind::PartitionNodes => "partition",
            FaultKind::Clog => "clog",
            FaultKind::DiskFull => "disk-full",
            FaultKind::SlowDisk => "slow-disk",
            FaultKind::FailSync => "fail-sync",
            FaultKind::Clock => "clock",
            FaultKind::Corrupt => "corrupt",
            FaultKind::BadSector => "bad-sector",
            FaultKind::Wipe => "wipe",
            FaultKind::ClockJump => "clock-jump",
        }
    }
}

/// One fault to apply. Durations end the fault on their own; `heal` ends all network faults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "do", rename_all = "kebab-case", deny_unknown_fields)]
pub enum FaultAction {
    /// Power loss of `node`; it restarts after `down_ms` (never, if absent).
    Crash {
        /// The node.
        node: NodeRef,
        /// Time until it restarts.
        down_ms: Option<u64>,
    },
    /// Restarts a crashed `node` through recovery.
    Restart {
        /// The node.
        node: NodeRef,
    },
    /// `node` handles nothing for `ms`.
    Pause {
        /// The node.
        node: NodeRef,
        /// How long.
        ms: u64,
    },
    /// Clients cannot reach `node` for `ms` (with `one_way`, only its replies are lost).
    CutClients {
        /// The node.
        node: NodeRef,
        /// Only node -> client messages are lost.
        #[serde(default)]
        one_way: bool,
        /// How long.
        ms: u64,
    },
    /// Nothing reaches or leaves `node` for `ms`.
    Isolate {
        /// The node.
        node: NodeRef,
        /// How long.
        ms: u64,
    },
    /// Messages from nodes `from` to nodes `to` (and back, unless `one_way`) are lost.
    Partition {
        /// One side.
        from: Vec<NodeRef>,
        /// The other side.
        to: Vec<NodeRef>,
        /// Only `from` -> `to` is cut.
        #[serde(default)]
        one_way: bool,
        /// How long (until `heal` if absent).
        ms: Option<u64>,
    },
    /// Messages to and from `node` take `delay_ms` more, for `ms`.
    Clog {
        /// The node.
        node: NodeRef,
        /// Added delay.
        delay_ms: u64,
        /// How long.
        ms: u64,
    },
    /// Ends every network fault.
    Heal,
    /// `node`'s disk accepts no more bytes for `ms`.
    DiskFull {
        /// The node.
        node: NodeRef,
        /// How long.
        ms: u64,
    },
    /// `node`'s disk ops take `factor` times longer for `ms`.
    SlowDisk {
        /// The node.
        node: NodeRef,
        /// Latency multiplier.
        factor: u64,
        /// How long.
        ms: u64,
    },
    /// The next sync on `node` fails and loses the unsynced writes of its file.
    FailSync {
        /// The node.
        node: NodeRef,
    },
    /// `node`'s clock jumps by `offset_ms` (forward only: time handed to a node is
    /// monotonic) and runs `drift_ppm` fast or slow from now on.
    Clock {
        /// The node.
        node: NodeRef,
        /// Jump forward.
        #[serde(default)]
        offset_ms: u64,
        /// Drift, parts per million.
        #[serde(default)]
        drift_ppm: i64,
    },
    /// Flips one bit of a random durable byte of a random segment file of `node`.
    Corrupt {
        /// The node.
        node: NodeRef,
    },
    /// Makes a random sector of a random segment file of `node` unreadable.
    BadSector {
        /// The node.
        node: NodeRef,
    },
    /// Wipes `node`'s disk (every file gone, as after a disk swap), formats it to rejoin the
    /// cluster (`format_ops` with `initial = false`) and restarts it after `down_ms` (at
    /// once if absent).
    Wipe {
        /// The node.
        node: NodeRef,
        /// Time until it restarts.
        down_ms: Option<u64>,
    },
    /// `node`'s clock leaps forward by `seconds` (it never goes back).
    ClockJump {
        /// The node.
        node: NodeRef,
        /// How far.
        seconds: u64,
    },
}

impl FaultAction {
    /// The same action with every node it names passed through `f`.
    pub(crate) fn map_nodes(self, mut f: impl FnMut(NodeRef) -> NodeRef) -> FaultAction {
        match self {
            FaultAction::Partition { from, to, one_way, ms } => FaultAction::Partition {
                from: from.into_iter().map(&mut f).collect(),
                to: to.into_iter().map(&mut f).collect(),
                one_way,
                ms,
            },
            FaultAction::Crash { node, down_ms } => FaultAction::Crash { node: f(node), down_ms },
            FaultAction::Restart { node } => FaultAction::Restart { node: f(node) },
            FaultAction::Pause { node, ms } => FaultAction::Pause { node: f(node), ms },
            FaultAction::CutClients { node, one_way, ms } => {
                FaultAction::CutClients { node: f(node), one_way, ms }
            }
            FaultAction::Isolate { node, ms } => FaultAction::Isolate { node: f(node), ms },
            FaultAction::Clog { node, delay_ms, ms } => {
                FaultAction::Clog { node: f(node), delay_ms, ms }
            }
            FaultAction::DiskFull { node, ms } => FaultAction::DiskFull { node: f(node), ms },
            FaultAction::SlowDisk { node, factor, ms } => {
                FaultAction::SlowDisk { node: f(node), factor, ms }
            }
            FaultAction::FailSync { node } => FaultAction::FailSync { node: f(node) },
            FaultAction::Clock { node, offset_ms, drift_ppm } => {
                FaultAction::Clock { node: f(node), offset_ms, drift_ppm }
            }
            FaultAction::Corrupt { node } => FaultAction::Corrupt { node: f(node) },
            FaultAction::BadSector { node } => FaultAction::BadSector { node: f(node) },
            FaultAction::Wipe { node, down_ms } => FaultAction::Wipe { node: f(node), down_ms },
            FaultAction::ClockJump { node, seconds } => {
                FaultAction::ClockJump { node: f(node), seconds }
            }
            FaultAction::Heal => FaultAction::Heal,
        }
    }

    /// The kind counted in coverage, if the action is a fault (not a heal or restart).
    pub fn kind(&self) -> Option<FaultKind> {
        Some(match self {
            FaultAction::Crash { .. } => FaultKind::Crash,
            FaultAction::Pause { .. } => FaultKind::Pause,
            FaultAction::CutClients { one_way: false, .. } => FaultKind::CutClients,
            FaultAction::CutClients { one_way: true, .. } => FaultKind::CutReplies,
            FaultAction::Isolate { .. } => FaultKind::Isolate,
            FaultAction::Partition { .. } => FaultKind::PartitionNodes,
            FaultAction::Clog { .. } => FaultKind::Clog,
            FaultAction::DiskFull { .. } => FaultKind::DiskFull,
            FaultAction::SlowDisk { .. } => FaultKind::SlowDisk,
            FaultAction::FailSync { .. } => FaultKind::FailSync,
            FaultAction::Clock { .. } => FaultKind::Clock,
            FaultAction::Corrupt { .. } => FaultKind::Corrupt,
            FaultAction::BadSector { .. } => FaultKind::BadSector,
            FaultAction::Wipe { .. } => FaultKind::Wipe,
            FaultAction::ClockJump { .. } => FaultKind::ClockJump,
            FaultAction::Restart { .. } | FaultAction::Heal => return None,
        })
    }

    /// The nodes the action names, to validate against the cluster.
    pub fn nodes(&self) -> Vec<&NodeRef> {
        match self {
            FaultAction::Partition { from, to, .. } => from.iter().chain(to).collect(),
            FaultAction::Heal => vec![],
            FaultAction::Crash { node, .. }
            | FaultAction::Restart { node }
            | FaultAction::Pause { node, .. }
            | FaultAction::CutClients { node, .. }
            | FaultAction::Isolate { node, .. }
            | FaultAction::Clog { node, .. }
            | FaultAction::DiskFull { node, .. }
            | FaultAction::SlowDisk { node, .. }
            | FaultAction::FailSync { node }
            | FaultAction::Clock { node, .. }
            | FaultAction::Corrupt { node }
            | FaultAction::BadSector { node }
            | FaultAction::Wipe { node, .. }
            | FaultAction::ClockJump { node, .. } => vec![node],
        }
    }
}

/// Draws the nemesis's next fault, or `None` when every weight is zero.
pub fn draw(rng: &mut ChaCha8Rng, params: &Params) -> Option<FaultAction> {
    let total: u32 = params.faults.weights.iter().sum();
    if total == 0 {
        return None;
    }
    let mut pick = rng.random_range(0..total);
    let mut kind = FaultKind::Crash;
    for (k, w) in FaultKind::ALL.iter().zip(&params.faults.weights) {
        if pick < *w {
            kind = *k;
            break;
        }
        pick -= w;
    }
    let id = rng.random_range(1..=params.nodes);
    let node = NodeRef::Id(id);
    let ms = rng.random_range(100..=3_000);
    Some(match kind {
        FaultKind::Crash => FaultAction::Crash { node, down_ms: Some(rng.random_range(0..=3_000)) },
        FaultKind::Pause => FaultAction::Pause { node, ms },
        FaultKind::CutClients => FaultAction::CutClients { node, one_way: false, ms },
        FaultKind::CutReplies => FaultAction::CutClients { node, one_way: true, ms },
        FaultKind::Isolate => FaultAction::Isolate { node, ms },
        FaultKind::PartitionNodes => {
            let others = (1..=params.nodes).filter(|n| *n != id).map(NodeRef::Id).collect();
            FaultAction::Partition { from: vec![node], to: others, one_way: false, ms: Some(ms) }
        }
        FaultKind::Clog => FaultAction::Clog { node, delay_ms: rng.random_range(50..=1_000), ms },
        FaultKind::DiskFull => FaultAction::DiskFull { node, ms },
        FaultKind::SlowDisk => {
            FaultAction::SlowDisk { node, factor: rng.random_range(5..=100), ms }
        }
        FaultKind::FailSync => FaultAction::FailSync { node },
        FaultKind::Clock => {
            let drift = params.clock_drift_ppm_max as i64;
            FaultAction::Clock {
                node,
                offset_ms: rng.random_range(0..=params.clock_offset_ms_max),
                drift_ppm: rng.random_range(-drift..=drift),
            }
        }
        FaultKind::Corrupt => FaultAction::Corrupt { node },
        FaultKind::BadSector => FaultAction::BadSector { node },
        FaultKind::Wipe => FaultAction::Wipe { node, down_ms: Some(rng.random_range(0..=3_000)) },
        FaultKind::ClockJump => FaultAction::ClockJump { node, seconds: rng.random_range(1..=30) },
    })
}

/// A node as a fault names it: by number (from 1), or by its role when the fault strikes.
/// In TOML an integer, `"controller"`, `"leader:TOPIC-PARTITION"` or
/// `"follower:TOPIC-PARTITION"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawNodeRef")]
pub enum NodeRef {
    /// Node `n` (from 1).
    Id(u32),
    /// The active controller (the Raft leader) when the fault strikes.
    Controller,
    /// The leader of partition `partition` of `topic` when the fault strikes.
    Leader {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
    },
    /// The coordinator of consumer group `group` when the fault strikes: the leader of its
    /// partition of `__consumer_offsets`.
    Coordinator {
        /// The group.
        group: String,
    },
    /// A replica of partition `partition` of `topic` that does not lead it when the fault
    /// strikes.
    Follower {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
    },
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawNodeRef {
    Id(u32),
    Role(String),
}

impl TryFrom<RawNodeRef> for NodeRef {
    type Error = String;

    fn try_from(raw: RawNodeRef) -> Result<NodeRef, String> {
        match raw {
            RawNodeRef::Id(id) => Ok(NodeRef::Id(id)),
            RawNodeRef::Role(role) if role == "controller" => Ok(NodeRef::Controller),
            RawNodeRef::Role(role) => {
                let bad = || {
                    format!(
                        "node {role:?}: a number, \"controller\", \"leader:TOPIC-P\", \
                         \"follower:TOPIC-P\" or \"coordinator:GROUP\""
                    )
                };
                let (which, name) = role.split_once(':').ok_or_else(bad)?;
                if which == "coordinator" && !name.is_empty() {
                    return Ok(NodeRef::Coordinator { group: name.to_string() });
                }
                let (topic, partition) = name.rsplit_once('-').ok_or_else(bad)?;
                let (topic, partition) = (topic.to_string(), partition.parse().map_err(|_| bad())?);
                match which {
                    "leader" => Ok(NodeRef::Leader { topic, partition }),
                    "follower" => Ok(NodeRef::Follower { topic, partition }),
                    _ => Err(bad()),
                }
            }
        }
    }
}
