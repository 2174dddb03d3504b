//! The fault schedule: a list of (start, fault, targets, duration) drawn from the seed
//! before a run begins and written to `schedule.json`, so a run can be replayed as a
//! schedule. Only the schedule is replayable: the nodes, the kernel's scheduler and the
//! clients are real and not deterministic, so two runs of one seed differ in their
//! histories.
//!
//! Faults come one at a time, each healed before the next begins, with a quiet gap between
//! them: with replication factor 3 and `min.insync.replicas=2`, one fault at a time leaves
//! a majority that can make progress, so the history holds acknowledged writes throughout
//! rather than a run that stalls. A release run with every fault still exercises each kind
//! many times (docs/jepsen.md).

use std::fmt;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// When the first fault may start, in milliseconds: the workload gets going first.
const FIRST_FAULT_MS_MIN: u64 = 3_000;
/// Faults end this long before the workload stops, so the last writes see a whole cluster.
const TAIL_QUIET_MS: u64 = 2_000;
/// The quiet gap between one fault's heal and the next fault, in milliseconds.
const GAP_MS: (u64, u64) = (1_000, 4_000);
/// How long a fault lasts, in milliseconds (a kill's is the time the node stays down).
const DURATION_MS: (u64, u64) = (1_000, 8_000);

/// A kind of fault the harness can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// `kill -9` of a node, then a restart on the same data directory and ports.
    Kill,
    /// SIGSTOP, then SIGCONT after the fault's duration.
    Pause,
    /// Links between nodes, or between clients and a node, closed and refused.
    Partition,
    /// The node's data directory (a small tmpfs of its own) filled with a ballast file.
    DiskFull,
}

impl FaultKind {
    /// Every kind, in the order `--faults all` lists them.
    pub const ALL: [FaultKind; 4] =
        [FaultKind::Kill, FaultKind::Pause, FaultKind::Partition, FaultKind::DiskFull];

    /// The name used by `--faults` and in the results.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::DiskFull => "disk-full",
        }
    }

    /// Parses `--faults`: names separated by commas, `all`, or `none`.
    pub fn parse_list(text: &str) -> Result<Vec<FaultKind>, String> {
        let text = text.trim();
        if text == "none" || text.is_empty() {
            return Ok(Vec::new());
        }
        if text == "all" {
            return Ok(FaultKind::ALL.to_vec());
        }
        let mut kinds = Vec::new();
        for word in text.split(',').map(str::trim) {
            let kind = FaultKind::ALL.into_iter().find(|k| k.name() == word).ok_or_else(|| {
                format!(
                    "unknown fault {word:?}: use kill, pause, partition, disk-full (comma-separated), \
                     all or none"
                )
            })?;
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        Ok(kinds)
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which links a partition closes. Node ids are the cluster's (1 to N).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cut", rename_all = "kebab-case")]
pub enum Cut {
    /// Two sides that cannot reach each other, in either direction.
    Halves {
        /// One side.
        a: Vec<u32>,
        /// The other side.
        b: Vec<u32>,
    },
    /// One node cut from every other node, both ways (clients still reach it).
    Isolate {
        /// The isolated node.
        node: u32,
    },
    /// An asymmetric cut: `from` cannot send to `to`, while `to` still sends to `from`.
    OneWay {
        /// The senders whose links are closed.
        from: Vec<u32>,
        /// The receivers they cannot reach.
        to: Vec<u32>,
    },
    /// Clients cannot reach one node; the nodes still reach each other.
    Clients {
        /// The node clients are cut from.
        node: u32,
    },
}

impl Cut {
    /// Whether this cut closes the directed peer link `from -> to`.
    pub fn blocks_peer(&self, from: u32, to: u32) -> bool {
        match self {
            Cut::Halves { a, b } => {
                (a.contains(&from) && b.contains(&to)) || (b.contains(&from) && a.contains(&to))
            }
            Cut::Isolate { node } => from == *node || to == *node,
            Cut::OneWay { from: senders, to: receivers } => {
                senders.contains(&from) && receivers.contains(&to)
            }
            Cut::Clients { .. } => false,
        }
    }

    /// Whether this cut closes the clients' link to `node`.
    pub fn blocks_clients(&self, node: u32) -> bool {
        matches!(self, Cut::Clients { node: cut } if *cut == node)
    }
}

/// One fault of the schedule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// When it starts, in milliseconds after the workload began.
    pub start_ms: u64,
    /// What it is.
    pub fault: FaultKind,
    /// The nodes it hits (for a partition, every node the cut names).
    pub nodes: Vec<u32>,
    /// For a partition, the links it closes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut: Option<Cut>,
    /// How long until it is healed (a killed node restarted), in milliseconds.
    pub duration_ms: u64,
}

impl Fault {
    /// When it is healed, in milliseconds after the workload began.
    pub fn end_ms(&self) -> u64 {
        self.start_ms + self.duration_ms
    }
}

/// The whole schedule of one run, as written to `schedule.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// The seed it was drawn from.
    pub seed: u64,
    /// The cluster's node count.
    pub nodes: u32,
    /// The workload's length in milliseconds.
    pub time_ms: u64,
    /// The kinds it could draw from.
    pub kinds: Vec<FaultKind>,
    /// The faults, by start time; none overlaps the next.
    pub faults: Vec<Fault>,
}

impl Schedule {
    /// Draws the schedule of a run of `time_ms` over `nodes` nodes from `seed`.
    ///
    /// # Panics
    ///
    /// If `nodes` is 0.
    pub fn draw(seed: u64, nodes: u32, time_ms: u64, kinds: &[FaultKind]) -> Schedule {
        assert!(nodes > 0, "a cluster has at least one node");
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // A partition needs two nodes, or clients and one node.
        let mut faults = Vec::new();
        let mut at = FIRST_FAULT_MS_MIN + rng.random_range(0..=GAP_MS.1);
        let end = time_ms.saturating_sub(TAIL_QUIET_MS);
        while !kinds.is_empty() && at + DURATION_MS.0 <= end {
            let fault = kinds[rng.random_range(0..kinds.len())];
            let duration_ms = rng.random_range(DURATION_MS.0..=DURATION_MS.1).min(end - at);
            let (targets, cut) = match fault {
                FaultKind::Partition => {
                    let cut = draw_cut(&mut rng, nodes);
                    (cut_nodes(&cut), Some(cut))
                }
                _ => (vec![rng.random_range(1..=nodes)], None),
            };
            faults.push(Fault { start_ms: at, fault, nodes: targets, cut, duration_ms });
            at += duration_ms + rng.random_range(GAP_MS.0..=GAP_MS.1);
        }
        Schedule { seed, nodes, time_ms, kinds: kinds.to_vec(), faults }
    }

    /// How many faults of each kind the schedule holds.
    pub fn counts(&self) -> Vec<(FaultKind, usize)> {
        let count = |kind| self.faults.iter().filter(|f| f.fault == kind).count();
        FaultKind::ALL.into_iter().map(|kind| (kind, count(kind))).collect()
    }
}

fn draw_cut(rng: &mut ChaCha8Rng, nodes: u32) -> Cut {
    let node = rng.random_range(1..=nodes);
    if nodes < 2 {
        return Cut::Clients { node };
    }
    let mut ids: Vec<u32> = (1..=nodes).collect();
    ids.shuffle(rng);
    let split = rng.random_range(1..nodes) as usize;
    let (a, b) = (ids[..split].to_vec(), ids[split..].to_vec());
    match rng.random_range(0..4) {
        0 => Cut::Halves { a, b },
        1 => Cut::Isolate { node },
        2 => Cut::OneWay { from: a, to: b },
        _ => Cut::Clients { node },
    }
}

fn cut_nodes(cut: &Cut) -> Vec<u32> {
    let mut nodes = match cut {
        Cut::Halves { a, b } | Cut::OneWay { from: a, to: b } => {
            a.iter().chain(b.iter()).copied().collect()
        }
        Cut::Isolate { node } | Cut::Clients { node } => vec![*node],
    };
    nodes.sort_unstable();
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_draws_the_same_schedule_every_time() {
        let kinds = FaultKind::ALL;
        let one = Schedule::draw(7, 3, 120_000, &kinds);
        assert_eq!(one, Schedule::draw(7, 3, 120_000, &kinds));
        assert_ne!(one, Schedule::draw(8, 3, 120_000, &kinds));
    }

    #[test]
    fn faults_never_overlap_and_end_before_the_tail() {
        for seed in 0..200 {
            let schedule = Schedule::draw(seed, 3, 60_000, &FaultKind::ALL);
            assert!(!schedule.faults.is_empty(), "seed {seed} drew no fault");
            for pair in schedule.faults.windows(2) {
                assert!(pair[0].end_ms() < pair[1].start_ms, "seed {seed}: {pair:?}");
            }
            let last = schedule.faults.last().expect("checked non-empty");
            assert!(last.end_ms() <= 60_000 - TAIL_QUIET_MS, "seed {seed}");
            for fault in &schedule.faults {
                assert!(fault.nodes.iter().all(|n| (1..=3).contains(n)), "{fault:?}");
                assert_eq!(fault.cut.is_some(), fault.fault == FaultKind::Partition);
            }
        }
    }

    #[test]
    fn only_the_asked_kinds_are_drawn() {
        let schedule = Schedule::draw(3, 3, 120_000, &[FaultKind::Pause]);
        assert!(schedule.faults.iter().all(|f| f.fault == FaultKind::Pause));
        assert!(Schedule::draw(3, 3, 120_000, &[]).faults.is_empty());
    }

    #[test]
    fn cuts_close_the_links_they_name() {
        let halves = Cut::Halves { a: vec![1], b: vec![2, 3] };
        assert!(halves.blocks_peer(1, 2) && halves.blocks_peer(3, 1));
        assert!(!halves.blocks_peer(2, 3) && !halves.blocks_clients(1));
        let one_way = Cut::OneWay { from: vec![2], to: vec![1, 3] };
        assert!(one_way.blocks_peer(2, 1) && !one_way.blocks_peer(1, 2));
        let clients = Cut::Clients { node: 2 };
        assert!(clients.blocks_clients(2) && !clients.blocks_clients(1));
        assert!(!clients.blocks_peer(1, 2));
    }

    #[test]
    fn fault_lists_parse_and_refuse_unknown_names() {
        assert_eq!(
            FaultKind::parse_list("kill,pause").unwrap(),
            vec![FaultKind::Kill, FaultKind::Pause]
        );
        assert_eq!(FaultKind::parse_list("all").unwrap().len(), 4);
        assert!(FaultKind::parse_list("none").unwrap().is_empty());
        let error = FaultKind::parse_list("kill,flood").unwrap_err();
        assert!(error.contains("\"flood\""), "{error}");
    }
}
