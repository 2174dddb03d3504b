//! The parameters of one run, every one drawn from the seed (swarm testing) unless a
//! scenario fixes it, and the banner that prints them.
//!
//! The seed is split into independent ChaCha streams ([`Stream`]): changing how the workload
//! draws does not shift the faults, and so on. Parameters come from their own stream, so a
//! scenario that fixes one parameter leaves the others as the seed drew them.

use std::fmt;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The independent random streams one seed is split into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The run's parameters (swarm testing).
    Params = 1,
    /// Latency, loss, duplication and reordering of messages.
    Network = 2,
    /// Disk latencies and the disks' own fault draws.
    Disk = 3,
    /// What the clients do.
    Workload = 4,
    /// When and where faults strike.
    Faults = 5,
    /// Seeds of the nodes' own generators and tie-breaking.
    Scheduling = 6,
}

/// The generator of stream `stream` of `seed`.
pub fn stream(seed: u64, stream: Stream) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream as u64);
    rng
}

/// How bad the disk faults of a run may be (the fault atlas, design §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Atlas {
    /// Only faults a correct node survives without losing acknowledged data: crashes with
    /// torn writes, failed fsyncs, transient read corruption, a full disk, slow IO.
    Recoverable,
    /// Also faults that destroy durable data (silent corruption, latent sector errors,
    /// misdirected writes). With one replica per partition, the only correct outcome is to
    /// detect the damage and never serve wrong data; lost writes are expected.
    Unrecoverable,
}

/// When a topic's writes count as done (mirrors `cairn_node::core::node::Durability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicDurability {
    /// Acknowledged once fsynced: must survive every recoverable fault.
    Fsync,
    /// Acknowledged once appended: a crash may lose it (not checked for lost writes).
    Replicate,
}

/// One topic of the workload.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicSpec {
    /// Its name.
    pub name: String,
    /// Partitions.
    pub partitions: u32,
    /// Durability.
    pub durability: TopicDurability,
    /// `segment.bytes`.
    pub segment_bytes: u64,
    /// `retention.bytes` (-1: keep everything).
    pub retention_bytes: i64,
    /// `min.insync.replicas` (1 or 2 drawn; at most the replication factor).
    pub min_insync_replicas: i32,
    /// Replicas per partition; `None`: the cluster's default, min(3, nodes).
    pub replication_factor: Option<i32>,
}

/// Rates of the random fault schedule (the nemesis), per kind; 0 disables a kind.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRates {
    /// Whether the nemesis runs at all (a scenario with a fixed timeline may turn it off).
    pub random: bool,
    /// Mean simulated milliseconds between two faults.
    pub interval_ms_mean: u64,
    /// Weights of the kinds, in the order of [`crate::faults::FaultKind::ALL`].
    pub weights: Vec<u32>,
}

/// Every parameter of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Nodes (brokers).
    pub nodes: u32,
    /// The cluster's id, as every node is formatted with (from the seed).
    pub cluster_id: String,
    /// Voters of the controller quorum, fixed by a scenario; `None`: [`Params::voters`]'s
    /// rule.
    pub voters_fixed: Option<u32>,
    /// What a 5-node cluster draws: 3 voters (and 2 learners) or 5 voters.
    pub voters_of_five: u32,
    /// Topics; partition `p` of topic `t` lives on node `(t + p) % nodes`.
    pub topics: Vec<TopicSpec>,
    /// Simulated clients (each one history process).
    pub clients: u32,
    /// Simulated consumers in groups (each one history process; `groups` module), 0 for
    /// none.
    pub consumers: u32,
    /// How many groups the consumers are spread over (consumer `k` joins group `k % groups`).
    pub groups: u32,
    /// Length of the safety phase (faults on), simulated milliseconds.
    pub safety_ms: u64,
    /// Bound of the liveness phase: everything must finish within it after the faults heal.
    pub liveness_ms: u64,
    /// How long a client waits for an answer before it records `info`.
    pub request_timeout_ms: u64,
    /// Largest pause of a client between two operations.
    pub think_ms_max: u64,
    /// Percent of operations that are polls (the rest are sends).
    pub poll_percent: u32,
    /// Weights of acks 0, 1 and all.
    pub acks_weights: [u32; 3],
    /// A scenario's expectation: (from this simulated ms, at least this many acks=all
    /// writes acknowledged by the end of the safety phase).
    pub acks_all_expected: Option<(u64, u64)>,
    /// Network latency bounds, microseconds.
    pub net_latency_us: (u64, u64),
    /// Probability a message is lost.
    pub net_loss: f64,
    /// Probability a message is delivered twice.
    pub net_duplicate: f64,
    /// Probability a message is held back (so later ones overtake it).
    pub net_reorder: f64,
    /// Disk op latency bounds, microseconds.
    pub disk_latency_us: (u64, u64),
    /// Probability a sync fails (fsyncgate).
    pub disk_sync_failure: f64,
    /// Probability a read comes back with a flipped bit (transient).
    pub disk_read_bit_flip: f64,
    /// Whether crashes tear unsynced writes at sector granularity.
    pub disk_torn_writes: bool,
    /// Probability a successful sync leaves a latent sector error (unrecoverable atlas only).
    pub disk_latent_sector_error: f64,
    /// Probability an append lands at a wrong position (unrecoverable atlas only).
    pub disk_misdirected_write: f64,
    /// Largest clock offset of a node, milliseconds (either direction).
    pub clock_offset_ms_max: u64,
    /// Largest clock drift of a node, parts per million (either direction).
    pub clock_drift_ppm_max: u64,
    /// The nodes' flush interval, milliseconds.
    pub flush_interval_ms: u64,
    /// The nodes' retention check interval, milliseconds.
    pub retention_check_ms: u64,
    /// The fault atlas.
    pub atlas: Atlas,
    /// The nemesis.
    pub faults: FaultRates,
}

impl Params {
    /// The parameters seed `seed` draws.
    pub fn draw(seed: u64) -> Params {
        let mut rng = stream(seed, Stream::Params);
        let nodes = rng.random_range(1..=5);
        let topic_count = rng.random_range(1..=3);
        let topics = (0..topic_count).map(|t| draw_topic(&mut rng, t)).collect();
        let atlas = if rng.random_bool(0.15) { Atlas::Unrecoverable } else { Atlas::Recoverable };
        let unrecoverable = atlas == Atlas::Unrecoverable;
        let flaky = rng.random_bool(0.7);
        let mut params = Params {
            nodes,
            cluster_id: format!("sim-{seed:016x}"),
            voters_fixed: None,
            voters_of_five: 3,
            topics,
            clients: rng.random_range(1..=8),
            consumers: 0,
            groups: 1,
            safety_ms: rng.random_range(5_000..=20_000),
            liveness_ms: 30_000,
            request_timeout_ms: rng.random_range(200..=2_000),
            think_ms_max: rng.random_range(1..=50),
            poll_percent: rng.random_range(10..=60),
            acks_weights: [rng.random_range(0..=4), rng.random_range(0..=3), 6],
            acks_all_expected: None,
            net_latency_us: (rng.random_range(50..=500), rng.random_range(500..=20_000)),
            net_loss: if flaky { rng.random_range(0.0..0.02) } else { 0.0 },
            net_duplicate: if flaky { rng.random_range(0.0..0.02) } else { 0.0 },
            net_reorder: if flaky { rng.random_range(0.0..0.05) } else { 0.0 },
            disk_latency_us: (rng.random_range(5..=100), rng.random_range(100..=5_000)),
            disk_sync_failure: if flaky { rng.random_range(0.0..0.01) } else { 0.0 },
            disk_read_bit_flip: if flaky { rng.random_range(0.0..0.005) } else { 0.0 },
            disk_torn_writes: rng.random_bool(0.8),
            disk_latent_sector_error: if unrecoverable { 0.002 } else { 0.0 },
            disk_misdirected_write: if unrecoverable { 0.001 } else { 0.0 },
            clock_offset_ms_max: if rng.random_bool(0.5) { 60_000 } else { 0 },
            clock_drift_ppm_max: if rng.random_bool(0.5) { 500 } else { 0 },
            flush_interval_ms: rng.random_range(50..=3_000),
            retention_check_ms: rng.random_range(200..=3_000),
            atlas,
            faults: FaultRates {
                random: true,
                interval_ms_mean: rng.random_range(300..=3_000),
                weights: crate::faults::FaultKind::ALL[..crate::faults::FaultKind::FIRST_DRAWN]
                    .iter()
                    .map(|kind| if kind.unrecoverable() && !unrecoverable { 0 } else { 1 })
                    .map(|w| w * rng.random_range(0..=4))
                    .collect(),
            },
        };
        params.draw_torn_profile(&mut rng);
        params.draw_late(&mut rng, unrecoverable);
        params.draw_groups(&mut rng);
        params
    }

    /// Consumers in groups, drawn last so that the draws before keep the values they had
    /// before groups existed: a seed that draws no consumer runs as it did then. Only under
    /// the recoverable atlas: under the unrecoverable one the group checks are excused (a
    /// commit may be destroyed with the disk that held it), so consumers would check
    /// nothing there.
    fn draw_groups(&mut self, rng: &mut ChaCha8Rng) {
        let consumers = rng.random_range(0..=3);
        let groups = rng.random_range(1..=2);
        if self.atlas == Atlas::Recoverable {
            self.consumers = consumers;
            self.groups = groups.min(consumers.max(1));
        }
    }

    /// What was added to the draw after its first version, drawn last so that the earlier
    /// parameters of every seed stay as they were: the weights of the newer fault kinds
    /// (`FaultKind::ALL` lists them last) and the voters of a 5-node cluster.
    fn draw_late(&mut self, rng: &mut ChaCha8Rng, unrecoverable: bool) {
        let first = self.faults.weights.len();
        for kind in &crate::faults::FaultKind::ALL[first..] {
            let weight = rng.random_range(0..=4);
            self.faults.weights.push(if kind.recoverable() || unrecoverable { weight } else { 0 });
        }
        self.voters_of_five = if rng.random_bool(0.5) { 3 } else { 5 };
    }

    /// Voters of the controller quorum: nodes 1..=voters; the other nodes are learners. Unless
    /// a scenario fixes it: every node of 1 or 3, one of 2 (two voters would halt with either
    /// down), three of 4, three or five of 5 (drawn).
    pub fn voters(&self) -> u32 {
        self.voters_fixed.unwrap_or(match self.nodes {
            1 | 2 => 1,
            3 | 4 => 3,
            5 => self.voters_of_five,
            n => n - (1 - n % 2),
        })
    }

    /// A swarm profile drawn for some seeds: a node that crashes often while holding many
    /// unsynced sectors, so crashes tear writes. An fsync partition syncs at every send with
    /// acks 1 or all, so the profile sends mostly with acks=0 (canary recovery-skips-crc
    /// needs a batch torn by a lost block with a later block kept), with a long flush
    /// interval.
    fn draw_torn_profile(&mut self, rng: &mut ChaCha8Rng) {
        if rng.random_bool(0.2) {
            self.flush_interval_ms = 5_000;
            self.acks_weights = [12, 1, 1];
            self.disk_torn_writes = true;
            self.faults.weights[0] = 8;
            self.faults.interval_ms_mean = self.faults.interval_ms_mean.min(1_000);
        }
    }

    /// Every partition: topic index and partition index.
    pub fn partitions(&self) -> Vec<(usize, u32)> {
        let mut out = Vec::new();
        for (t, topic) in self.topics.iter().enumerate() {
            out.extend((0..topic.partitions).map(|p| (t, p)));
        }
        out
    }
}

fn draw_topic(rng: &mut ChaCha8Rng, index: u32) -> TopicSpec {
    let durability =
        if rng.random_bool(0.75) { TopicDurability::Fsync } else { TopicDurability::Replicate };
    let small = rng.random_bool(0.5);
    let segment_bytes = if small { rng.random_range(1_024..=8_192) } else { 1 << 20 };
    let retention_bytes = if small && rng.random_bool(0.6) {
        segment_bytes as i64 * rng.random_range(2..=4)
    } else {
        -1
    };
    TopicSpec {
        name: format!("t{index}"),
        partitions: rng.random_range(1..=3),
        durability,
        segment_bytes,
        retention_bytes,
        min_insync_replicas: rng.random_range(1..=2),
        replication_factor: None,
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  nodes {} voters {} cluster {} clients {} consumers {} in {} groups atlas {:?}",
            self.nodes,
            self.voters(),
            self.cluster_id,
            self.clients,
            self.consumers,
            self.groups,
            self.atlas
        )?;
        for topic in &self.topics {
            writeln!(
                f,
                "  topic {} partitions {} {:?} segment.bytes {} retention.bytes {} \
                 min.insync.replicas {} replication {}",
                topic.name,
                topic.partitions,
                topic.durability,
                topic.segment_bytes,
                topic.retention_bytes,
                topic.min_insync_replicas,
                topic.replication_factor.map_or("default".into(), |r| r.to_string())
            )?;
        }
        writeln!(
            f,
            "  safety {} ms liveness {} ms timeout {} ms think <= {} ms polls {}% acks {:?}",
            self.safety_ms,
            self.liveness_ms,
            self.request_timeout_ms,
            self.think_ms_max,
            self.poll_percent,
            self.acks_weights
        )?;
        writeln!(
            f,
            "  net latency {:?} us loss {:.4} dup {:.4} reorder {:.4}",
            self.net_latency_us, self.net_loss, self.net_duplicate, self.net_reorder
        )?;
        writeln!(
            f,
            "  disk latency {:?} us sync-fail {:.4} bit-flip {:.4} torn {} latent {:.4} \
             misdirected {:.4}",
            self.disk_latency_us,
            self.disk_sync_failure,
            self.disk_read_bit_flip,
            self.disk_torn_writes,
            self.disk_latent_sector_error,
            self.disk_misdirected_write
        )?;
        writeln!(
            f,
            "  clock offset <= {} ms drift <= {} ppm flush {} ms retention check {} ms",
            self.clock_offset_ms_max,
            self.clock_drift_ppm_max,
            self.flush_interval_ms,
            self.retention_check_ms
        )?;
        write!(
            f,
            "  nemesis {} every ~{} ms weights {:?}",
            self.faults.random, self.faults.interval_ms_mean, self.faults.weights
        )
    }
}
