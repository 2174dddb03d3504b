//! Running seeds: one run ([`run_seed`]) with its banner, history check and coverage, and a
//! sweep over a range of seeds on several threads ([`sweep`]).

use std::collections::BTreeMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cairn_jepsen::{Anomaly, AnomalyKind, Options, Report, Validity};
/// The deliberate bugs a run can plant (`--canary`); planting needs the `canary` feature.
pub use cairn_node::core::log::canary::Canary;

use crate::invariants::Violation;
use crate::params::{Atlas, Params};
use crate::scenario::Scenario;
use crate::world::World;

/// Events one run may take before it counts as stuck.
pub const EVENTS_MAX: u64 = 20_000_000;
/// The deterministic budget of the linearizability search (no wall-clock limit).
pub const SEARCH_STEPS_MAX: u64 = 10_000_000;

/// Plants `canary` (or none) on this thread.
///
/// # Panics
/// If a canary is asked for and the simulator was built without the `canary` feature.
pub fn plant_canary(canary: Option<Canary>) {
    #[cfg(feature = "canary")]
    cairn_node::core::log::canary::set(canary);
    #[cfg(not(feature = "canary"))]
    assert!(canary.is_none(), "built without the `canary` feature: rebuild with it");
}

/// What a run (or a sweep, summed) exercised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Runs summed.
    pub runs: u64,
    /// Events handled.
    pub events: u64,
    /// Simulated nanoseconds.
    pub sim_ns: u64,
    /// Sends acknowledged (acks 1 or all).
    pub writes_acked: u64,
    /// Acknowledged acks=all sends read back (from the history checker).
    pub acked_read_back: u64,
    /// Records fetched.
    pub records_read: u64,
    /// Node crashes.
    pub crashes: u64,
    /// Node restarts through recovery.
    pub restarts: u64,
    /// Recovered logs checked byte for byte.
    pub recoveries_checked: u64,
    /// Raft leader elections (terms seen with a leader).
    pub raft_elections: u64,
    /// Partition leader elections ((partition, leader epoch) seen with a leader).
    pub partition_elections: u64,
    /// Replica logs whose end went back while their node ran (follower truncations).
    pub truncations: u64,
    /// ISR shrinks seen by a leader within its epoch.
    pub isr_shrinks: u64,
    /// ISR expands seen by a leader within its epoch.
    pub isr_expands: u64,
    /// Partitions the drain found with every in-sync copy wiped (an empty ISR).
    pub partitions_lost: u64,
    /// Times every ISR member of a `replicate` partition lost power together, which excuses
    /// the loss of what it acknowledged before.
    pub replicate_losses_excused: u64,
    /// Bytes cut by recoveries (torn or damaged tails) are not visible yet; this counts
    /// acknowledged offsets recovery cut under the unrecoverable atlas.
    pub acked_lost_detected: u64,
    /// Fetches refused because the data was corrupt (detected, not served).
    pub corrupt_reads: u64,
    /// Consumer fetches answered by the log's read ahead.
    pub reads_ahead: u64,
    /// Fetches (followers', consumers', the producer state's) answered from the log's tail
    /// cache without a disk read.
    pub tail_reads: u64,
    /// Node-to-node messages sent.
    pub messages_sent: u64,
    /// Node-to-node messages handed to their node.
    pub messages_delivered: u64,
    /// Node-to-node messages lost: by the network (loss, a cut link) or because the node
    /// they were sent to crashed since.
    pub messages_dropped: u64,
    /// Runs with consumers in groups.
    pub group_runs: u64,
    /// JoinGroups answered with a generation.
    pub group_joins: u64,
    /// Group generations completed (rebalances).
    pub group_rebalances: u64,
    /// OffsetCommits acknowledged.
    pub commits_ok: u64,
    /// OffsetFetches answered (committed offsets read).
    pub committed_reads: u64,
    /// Faults by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// Disk events by kind.
    pub disk: BTreeMap<&'static str, u64>,
    /// Network events by kind.
    pub net: BTreeMap<&'static str, u64>,
}

impl Coverage {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Coverage) {
        self.runs += other.runs;
        self.events += other.events;
        self.sim_ns += other.sim_ns;
        self.writes_acked += other.writes_acked;
        self.acked_read_back += other.acked_read_back;
        self.records_read += other.records_read;
        self.crashes += other.crashes;
        self.restarts += other.restarts;
        self.recoveries_checked += other.recoveries_checked;
        self.raft_elections += other.raft_elections;
        self.partition_elections += other.partition_elections;
        self.truncations += other.truncations;
        self.isr_shrinks += other.isr_shrinks;
        self.isr_expands += other.isr_expands;
        self.partitions_lost += other.partitions_lost;
        self.replicate_losses_excused += other.replicate_losses_excused;
        self.acked_lost_detected += other.acked_lost_detected;
        self.corrupt_reads += other.corrupt_reads;
        self.reads_ahead += other.reads_ahead;
        self.tail_reads += other.tail_reads;
        self.messages_sent += other.messages_sent;
        self.messages_delivered += other.messages_delivered;
        self.messages_dropped += other.messages_dropped;
        self.group_runs += other.group_runs;
        self.group_joins += other.group_joins;
        self.group_rebalances += other.group_rebalances;
        self.commits_ok += other.commits_ok;
        self.committed_reads += other.committed_reads;
        for (mine, theirs) in [
            (&mut self.faults, &other.faults),
            (&mut self.disk, &other.disk),
            (&mut self.net, &other.net),
        ] {
            for (k, v) in theirs {
                *mine.entry(k).or_default() += v;
            }
        }
    }

    /// Why a sweep of `seeds` random seeds exercised too little, if it did.
    pub fn too_little(&self, seeds: u64) -> Vec<String> {
        let mut why = Vec::new();
        let mut want = |ok: bool, what: String| {
            if !ok {
                why.push(what);
            }
        };
        want(
            self.acked_read_back >= 20 * seeds,
            format!("acked writes read back < {}", 20 * seeds),
        );
        want(self.crashes >= seeds / 5, format!("crashes < {}", seeds / 5));
        want(self.recoveries_checked >= seeds / 5, format!("recoveries checked < {}", seeds / 5));
        let kinds = self.faults.len() as u64;
        want(seeds < 50 || kinds >= 10, format!("fault kinds exercised {kinds} < 10"));
        // Replication (issue 6): 0..200 has about 2.5 Raft elections, 7 partition
        // elections, 5 truncations, 3.5 ISR shrinks and 5 expands per seed.
        let big = seeds >= 50;
        want(!big || self.raft_elections >= seeds, format!("raft elections < {seeds}"));
        let elections = self.partition_elections;
        want(!big || elections >= 2 * seeds, format!("partition elections < {}", 2 * seeds));
        want(!big || self.truncations >= seeds / 2, format!("truncations < {}", seeds / 2));
        want(!big || self.isr_shrinks >= seeds / 2, format!("isr shrinks < {}", seeds / 2));
        want(!big || self.isr_expands >= seeds / 2, format!("isr expands < {}", seeds / 2));
        // Groups: 0..2000 has consumers in about 1,300 runs, with 26 commits acknowledged
        // and 2 generations completed per run on average.
        let runs = self.group_runs;
        want(!big || runs >= seeds / 4, format!("runs with consumers < {}", seeds / 4));
        want(!big || self.commits_ok >= 5 * runs, format!("commits acked < {}", 5 * runs));
        let rebalances = self.group_rebalances;
        want(!big || rebalances >= runs / 2, format!("group rebalances < {}", runs / 2));
        // Reads ahead (decision 0028): 0..2000 answers about 8 fetches a seed from one.
        let ahead = self.reads_ahead;
        want(!big || ahead >= seeds, format!("fetches read ahead < {seeds}"));
        // The tail cache: 0..2000 answers about 550 fetches a seed from it.
        let tail = self.tail_reads;
        want(!big || tail >= 100 * seeds, format!("fetches from the tail < {}", 100 * seeds));
        let torn = self.disk.get("torn-blocks-kept").copied().unwrap_or(0);
        want(seeds < 50 || torn > 0, "no torn write survived a crash".into());
        why
    }
}

impl fmt::Display for Coverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  runs {} events {} simulated {:.1} s",
            self.runs,
            self.events,
            self.sim_ns as f64 / 1e9
        )?;
        writeln!(
            f,
            "  writes acked {} acked read back {} records read {} corrupt reads refused {} \
             fetches read ahead {} from the tail {}",
            self.writes_acked,
            self.acked_read_back,
            self.records_read,
            self.corrupt_reads,
            self.reads_ahead,
            self.tail_reads
        )?;
        writeln!(
            f,
            "  crashes {} restarts {} recoveries checked {} acked offsets cut (unrecoverable \
             atlas) {}",
            self.crashes, self.restarts, self.recoveries_checked, self.acked_lost_detected
        )?;
        writeln!(
            f,
            "  elections raft {} partition {} truncations {} isr shrinks {} expands {} \
             partitions lost {} replicate losses excused {}",
            self.raft_elections,
            self.partition_elections,
            self.truncations,
            self.isr_shrinks,
            self.isr_expands,
            self.partitions_lost,
            self.replicate_losses_excused
        )?;
        writeln!(
            f,
            "  node messages sent {} delivered {} dropped {}",
            self.messages_sent, self.messages_delivered, self.messages_dropped
        )?;
        writeln!(
            f,
            "  groups: runs {} joins {} rebalances {} commits acked {} committed reads {}",
            self.group_runs,
            self.group_joins,
            self.group_rebalances,
            self.commits_ok,
            self.committed_reads
        )?;
        writeln!(f, "  faults {:?}", self.faults)?;
        writeln!(f, "  disk {:?}", self.disk)?;
        write!(f, "  net {:?}", self.net)
    }
}

/// The result of one run.
#[derive(Debug)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// The parameters it ran with.
    pub params: Params,
    /// The first violation, if any.
    pub violation: Option<Violation>,
    /// The rolling hash of every event.
    pub hash: u64,
    /// What it exercised.
    pub coverage: Coverage,
    /// Wall-clock time taken.
    pub wall: Duration,
    /// The history, as JSON Lines, when asked for.
    pub history: Option<Vec<u8>>,
}

/// How to run one seed.
#[derive(Debug, Clone, Default)]
pub struct RunSpec {
    /// A scenario that fixes parts of the run.
    pub scenario: Option<Scenario>,
    /// Where the scenario came from, for the replay command.
    pub scenario_path: Option<String>,
    /// A canary to plant.
    pub canary: Option<Canary>,
    /// Whether to keep the history in the outcome.
    pub keep_history: bool,
}

impl RunSpec {
    /// The parameters of `seed` under this spec.
    pub fn params(&self, seed: u64) -> Result<Params, String> {
        let mut params = Params::draw(seed);
        if let Some(scenario) = &self.scenario {
            scenario.apply(&mut params)?;
        }
        Ok(params)
    }

    /// The one-line command that replays `seed`.
    pub fn replay_command(&self, seed: u64) -> String {
        let mut command = String::from("cargo run --release -p cairn-sim");
        if self.canary.is_some() {
            command.push_str(" --features canary");
        }
        command.push_str(&format!(" -- run --seed {seed}"));
        if let Some(path) = &self.scenario_path {
            command.push_str(&format!(" --scenario {path}"));
        }
        if let Some(canary) = self.canary {
            command.push_str(&format!(" --canary {}", canary.name()));
        }
        command
    }
}

/// Runs one seed to the end and checks it.
pub fn run_seed(seed: u64, spec: &RunSpec) -> Result<Outcome, String> {
    let params = spec.params(seed)?;
    let timeline = spec.scenario.as_ref().map(|s| s.at.clone()).unwrap_or_default();
    let started = Instant::now();
    plant_canary(spec.canary);
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut world = World::new(seed, params.clone(), &timeline);
        world.run(EVENTS_MAX);
        world
    }));
    plant_canary(None);
    let mut world = match result {
        Ok(world) => world,
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic without a message".into());
            return Ok(Outcome {
                seed,
                params,
                violation: Some(Violation::Panic { message }),
                hash: 0,
                coverage: Coverage { runs: 1, ..Coverage::default() },
                wall: started.elapsed(),
                history: None,
            });
        }
    };
    finish(&mut world);
    let history = spec.keep_history.then(|| {
        let mut bytes = Vec::new();
        world.work.history.write_jsonl(&mut bytes).expect("writing to memory");
        bytes
    });
    Ok(Outcome {
        seed,
        params,
        violation: world.violation.take(),
        hash: world.hash,
        coverage: world.coverage.clone(),
        wall: started.elapsed(),
        history,
    })
}

/// Checks the history and fills in the coverage the run's parts keep.
fn finish(world: &mut World) {
    let c = &mut world.coverage;
    c.runs = 1;
    c.writes_acked = world.work.acked_sends;
    let groups = &world.work.groups;
    c.group_runs = u64::from(world.params.consumers > 0);
    c.group_joins = groups.joins;
    c.group_rebalances = groups.rebalances;
    c.commits_ok = groups.commits_ok;
    c.committed_reads = groups.committed_reads;
    let net = world.net.stats();
    for (k, v) in [
        ("sent", net.sent),
        ("lost", net.lost),
        ("cut", net.cut),
        ("duplicated", net.duplicated),
        ("reordered", net.reordered),
        ("clogged", net.clogged),
    ] {
        c.net.insert(k, v);
    }
    for node in &world.nodes {
        let d = node.disk.disk.stats();
        let f = node.disk.stats();
        for (k, v) in [
            ("ops", d.ops),
            ("syncs-failed", d.syncs_failed),
            ("read-bit-flips", d.read_bit_flips),
            ("read-errors", d.read_errors),
            ("latent-sector-errors", d.latent_sector_errors),
            ("torn-blocks-kept", d.torn_blocks_kept),
            ("nospace", d.nospace),
            ("corruptions", d.corruptions),
            ("wipes", d.wipes),
            ("misdirected-writes", f.misdirected_writes),
            ("slow-ops", f.slow_ops),
        ] {
            *c.disk.entry(k).or_default() += v;
        }
    }
    if world.violation.is_some() {
        return;
    }
    if let Err(violation) = crate::groups::check_committed_read(world) {
        world.violation = Some(violation);
        return;
    }
    let options = Options {
        time_limit: None,
        search_steps_max: Some(SEARCH_STEPS_MAX),
        // Every duplicate and reused offset is kept: `excused_duplicates` looks at each.
        anomalies_per_kind_max: usize::MAX,
    };
    let report = match world.work.history.check(&options) {
        Ok(report) => report,
        Err(error) => {
            world.violation = Some(Violation::History {
                anomalies: BTreeMap::from([(format!("history error: {error}"), 1)]),
            });
            return;
        }
    };
    world.coverage.acked_read_back = report.stats.acknowledged_values_read;
    // A wipe of a partition's only copy (crate::world::NODES_REPLICATE) is a loss the run
    // expected, as under the unrecoverable atlas.
    let lossy = world.params.atlas == Atlas::Unrecoverable || world.losses_excused;
    let excused = |kind: &AnomalyKind| {
        lossy
            && !matches!(
                kind,
                AnomalyKind::Duplicate | AnomalyKind::PhantomRead | AnomalyKind::AbortedRead
            )
    };
    let forgotten: BTreeMap<(&str, i32), &Vec<u64>> = world
        .replicas
        .producers_forgotten_at
        .iter()
        .map(|(part, at)| {
            let id = &world.work.parts[*part].id;
            ((&*id.topic, id.partition), at)
        })
        .collect();
    let duplicates_excused = if lossy { excused_duplicates(&report, &forgotten) } else { 0 };
    let anomalies: BTreeMap<String, u64> = report
        .anomaly_counts
        .iter()
        .map(|(kind, count)| match kind {
            AnomalyKind::Duplicate => (kind, count - duplicates_excused),
            _ => (kind, *count),
        })
        .filter(|(kind, count)| *count > 0 && !excused(kind))
        .map(|(kind, count)| (kind.name().to_string(), count))
        .collect();
    if !anomalies.is_empty() {
        world.violation = Some(Violation::History { anomalies });
    } else if report.valid == Validity::Unknown {
        world.violation = Some(Violation::History {
            anomalies: BTreeMap::from([("unknown verdict".to_string(), 1)]),
        });
    }
}

/// How many duplicates a run that may lose acknowledged writes excuses:
/// - those of a partition whose offsets were reused (an `inconsistent-offsets` there proves
///   its log was cut back), one of whose copies was seen at or above the lowest reused
///   offset. Such a copy was cut away, and the producer's retry, which the partition's
///   rebuilt producer state could no longer recognise, wrote the record again: the log
///   holds it once;
/// - those of a partition one of whose replicas rebuilt its producer state from a log it
///   could not read whole (`forgotten`: its log end offset then), with a copy below that
///   offset and one at or above it. Damage the unrecoverable atlas does made the replica
///   forget every producer (decision 0014: rather than never serve the partition again), and
///   a retry of a batch written before then was taken as new.
///
/// A duplicate in a partition that lost nothing and forgot nothing is never excused, so
/// idempotence is still checked there. The history cannot tell a true duplicate across the
/// cut from these; a run that may not lose acknowledged writes (the recoverable atlas, no
/// wipe of a partition's only copy) excuses none.
fn excused_duplicates(report: &Report, forgotten: &BTreeMap<(&str, i32), &Vec<u64>>) -> u64 {
    let mut lowest_reused: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    for anomaly in report.anomalies.get(&AnomalyKind::InconsistentOffsets).into_iter().flatten() {
        if let Anomaly::InconsistentOffsets(reused) = anomaly {
            let key = (reused.topic.as_str(), reused.partition);
            let lowest = lowest_reused.entry(key).or_insert(reused.offset);
            *lowest = (*lowest).min(reused.offset);
        }
    }
    let duplicates = report.anomalies.get(&AnomalyKind::Duplicate).into_iter().flatten();
    let excused = duplicates.filter(|anomaly| match anomaly {
        Anomaly::Duplicate(duplicate) => {
            let key = (duplicate.topic.as_str(), duplicate.partition);
            let cut = lowest_reused
                .get(&key)
                .is_some_and(|lowest| duplicate.seen.iter().any(|seen| seen.offset >= *lowest));
            // One copy below where the replica forgot, one at or above it.
            let straddles = |at: &u64| {
                let at = i64::try_from(*at).unwrap_or(i64::MAX);
                duplicate.seen.iter().any(|seen| seen.offset < at)
                    && duplicate.seen.iter().any(|seen| seen.offset >= at)
            };
            let across_forgetting = forgotten.get(&key).is_some_and(|at| at.iter().any(straddles));
            cut || across_forgetting
        }
        _ => false,
    });
    excused.count() as u64
}

/// The result of a sweep.
#[derive(Debug)]
pub struct SweepResult {
    /// Failing seeds with their violation.
    pub failures: Vec<(u64, Violation)>,
    /// Coverage summed over every seed.
    pub coverage: Coverage,
    /// Wall-clock time taken.
    pub wall: Duration,
}

/// Runs seeds `seeds` on `jobs` threads. Stops early after `stop_after` failures if given.
pub fn sweep(
    seeds: std::ops::Range<u64>,
    jobs: usize,
    spec: &RunSpec,
    stop_after: Option<usize>,
) -> Result<SweepResult, String> {
    spec.params(seeds.start)?;
    let started = Instant::now();
    let next = AtomicU64::new(seeds.start);
    let results = Mutex::new((Vec::new(), Coverage::default()));
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= seeds.end || stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let outcome = run_seed(seed, spec).expect("params checked above");
                    let mut guard = results.lock().expect("no poisoning");
                    guard.1.add(&outcome.coverage);
                    if let Some(violation) = outcome.violation {
                        guard.0.push((seed, violation));
                        if stop_after.is_some_and(|n| guard.0.len() >= n) {
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    let (mut failures, coverage) = results.into_inner().expect("no poisoning");
    failures.sort_by_key(|(seed, _)| *seed);
    Ok(SweepResult { failures, coverage, wall: started.elapsed() })
}

/// Silences the default panic message: a panic of the core is reported as a violation.
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|_| {}));
}
