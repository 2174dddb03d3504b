//! Scenarios: TOML files in `scenarios/` that fix parts of a run (cluster size, topics,
//! workload, fault rates) and add a timeline of faults. Whatever a scenario leaves out is
//! drawn from the seed as usual. See docs/simulator.md for the format.

use std::path::Path;

use serde::Deserialize;

use crate::faults::{FaultAction, FaultKind, NodeRef};
use crate::params::{Atlas, Params, TopicDurability, TopicSpec};

/// A parsed scenario.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Cluster settings.
    #[serde(default)]
    pub cluster: ClusterSpec,
    /// Topics; replace the drawn ones when given.
    #[serde(default, rename = "topic")]
    pub topics: Vec<TopicToml>,
    /// Workload settings.
    #[serde(default)]
    pub workload: WorkloadSpec,
    /// Fault settings.
    #[serde(default)]
    pub faults: FaultSpec,
    /// The timeline: faults at fixed simulated times.
    #[serde(default)]
    pub at: Vec<TimedFault>,
}

/// `[cluster]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// Nodes.
    pub nodes: Option<u32>,
    /// Voters of the controller quorum (nodes 1..=voters; the rest are learners).
    pub voters: Option<u32>,
    /// The nodes' flush interval.
    pub flush_interval_ms: Option<u64>,
    /// The nodes' retention check interval.
    pub retention_check_ms: Option<u64>,
}

/// `[[topic]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicToml {
    /// Name.
    pub name: String,
    /// Partitions (default 1).
    pub partitions: Option<u32>,
    /// `"fsync"` (default) or `"replicate"`.
    pub durability: Option<String>,
    /// `segment.bytes` (default 1 MiB).
    pub segment_bytes: Option<u64>,
    /// `retention.bytes` (default -1).
    pub retention_bytes: Option<i64>,
    /// `min.insync.replicas` (default 1).
    pub min_insync_replicas: Option<i32>,
    /// Replicas per partition (default: the cluster's, min(3, nodes)).
    pub replication_factor: Option<i32>,
}

/// `[workload]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// Clients.
    pub clients: Option<u32>,
    /// Consumers in groups (none unless given).
    pub consumers: Option<u32>,
    /// Groups the consumers are spread over.
    pub groups: Option<u32>,
    /// Safety phase, seconds.
    pub safety_s: Option<f64>,
    /// Liveness bound, seconds.
    pub liveness_s: Option<f64>,
    /// Request timeout.
    pub request_timeout_ms: Option<u64>,
    /// Percent of operations that are polls.
    pub poll_percent: Option<u32>,
    /// The longest a client waits between operations, ms (each wait is drawn up to it); the
    /// workload's load: 8 clients at 5 ms make about ten times the requests of 8 at 50 ms.
    pub think_ms_max: Option<u64>,
    /// Weights of acks 0, 1, all.
    pub acks_weights: Option<[u32; 3]>,
    /// With `acks_all_min`: from this simulated second to the end of the safety phase, at
    /// least `acks_all_min` acks=all writes must be acknowledged (a scenario that leaves
    /// enough replicas running expects writes to go on).
    pub acks_all_after_s: Option<f64>,
    /// See `acks_all_after_s`.
    pub acks_all_min: Option<u64>,
}

/// `[faults]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Whether the random nemesis runs (default: as drawn, which is on).
    pub random: Option<bool>,
    /// `"recoverable"` or `"unrecoverable"`.
    pub atlas: Option<String>,
    /// Mean milliseconds between random faults.
    pub interval_ms_mean: Option<u64>,
    /// Kinds the nemesis may draw (names of `FaultKind`); the others get weight 0.
    pub kinds: Option<Vec<String>>,
    /// Network loss probability.
    pub net_loss: Option<f64>,
    /// Network duplication probability.
    pub net_duplicate: Option<f64>,
    /// Network reordering probability.
    pub net_reorder: Option<f64>,
    /// Sync failure probability.
    pub disk_sync_failure: Option<f64>,
    /// Read bit-flip probability.
    pub disk_read_bit_flip: Option<f64>,
    /// Torn writes on crash.
    pub disk_torn_writes: Option<bool>,
    /// Misdirected write probability (unrecoverable atlas).
    pub disk_misdirected_write: Option<f64>,
    /// Latent sector error probability (unrecoverable atlas).
    pub disk_latent_sector_error: Option<f64>,
}

/// `[[at]]`: one fault of the timeline.
#[derive(Debug, Clone, Deserialize)]
pub struct TimedFault {
    /// When, in simulated seconds from the start.
    pub s: f64,
    /// What.
    #[serde(flatten)]
    pub action: FaultAction,
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read scenario {}: {e}", path.display()))?;
        Scenario::parse(&text).map_err(|e| format!("scenario {}: {e}", path.display()))
    }

    /// Parses a scenario.
    pub fn parse(text: &str) -> Result<Scenario, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Fixes what the scenario fixes in `params`, then checks the timeline against them.
    pub fn apply(&self, params: &mut Params) -> Result<(), String> {
        let c = &self.cluster;
        set(&mut params.nodes, c.nodes);
        if let Some(voters) = c.voters {
            if voters == 0 || voters > params.nodes {
                return Err(format!("voters {voters}: between 1 and the {} nodes", params.nodes));
            }
            params.voters_fixed = Some(voters);
        }
        set(&mut params.flush_interval_ms, c.flush_interval_ms);
        set(&mut params.retention_check_ms, c.retention_check_ms);
        if !self.topics.is_empty() {
            params.topics = self.topics.iter().map(topic).collect::<Result<_, _>>()?;
        }
        let w = &self.workload;
        set(&mut params.clients, w.clients);
        // Consumers only where a scenario asks for them: a scenario's timeline is tuned to the
        // workload it names, which random consumers would shift.
        params.consumers = w.consumers.unwrap_or(0);
        set(&mut params.groups, w.groups);
        if params.groups == 0 {
            return Err("groups: at least 1".into());
        }
        set(&mut params.safety_ms, w.safety_s.map(|s| (s * 1000.0) as u64));
        set(&mut params.liveness_ms, w.liveness_s.map(|s| (s * 1000.0) as u64));
        set(&mut params.request_timeout_ms, w.request_timeout_ms);
        set(&mut params.poll_percent, w.poll_percent);
        set(&mut params.think_ms_max, w.think_ms_max);
        set(&mut params.acks_weights, w.acks_weights);
        match (w.acks_all_after_s, w.acks_all_min) {
            (Some(s), Some(min)) => params.acks_all_expected = Some(((s * 1000.0) as u64, min)),
            (None, None) => {}
            _ => return Err("acks_all_after_s and acks_all_min go together".into()),
        }
        self.apply_faults(params)?;
        if params.nodes == 0 || params.clients == 0 || params.topics.is_empty() {
            return Err("a run needs at least one node, one client and one topic".into());
        }
        for timed in &self.at {
            for node in timed.action.nodes() {
                check_node(node, params).map_err(|e| format!("at {} s: {e}", timed.s))?;
            }
        }
        Ok(())
    }

    fn apply_faults(&self, params: &mut Params) -> Result<(), String> {
        let f = &self.faults;
        set(&mut params.faults.random, f.random);
        set(&mut params.faults.interval_ms_mean, f.interval_ms_mean);
        match f.atlas.as_deref() {
            None => {}
            Some("recoverable") => params.atlas = Atlas::Recoverable,
            Some("unrecoverable") => params.atlas = Atlas::Unrecoverable,
            Some(other) => return Err(format!("atlas {other:?}: recoverable or unrecoverable")),
        }
        if let Some(kinds) = &f.kinds {
            for name in kinds {
                if !FaultKind::ALL.iter().any(|k| k.name() == name) {
                    return Err(format!("unknown fault kind {name:?}"));
                }
            }
            params.faults.weights = FaultKind::ALL
                .iter()
                .map(|k| u32::from(kinds.iter().any(|name| name == k.name())))
                .collect();
        }
        if params.atlas == Atlas::Recoverable {
            for (k, w) in FaultKind::ALL.iter().zip(params.faults.weights.iter_mut()) {
                if !k.recoverable() {
                    *w = 0;
                }
            }
            params.disk_misdirected_write = 0.0;
            params.disk_latent_sector_error = 0.0;
        }
        set(&mut params.net_loss, f.net_loss);
        set(&mut params.net_duplicate, f.net_duplicate);
        set(&mut params.net_reorder, f.net_reorder);
        set(&mut params.disk_sync_failure, f.disk_sync_failure);
        set(&mut params.disk_read_bit_flip, f.disk_read_bit_flip);
        set(&mut params.disk_torn_writes, f.disk_torn_writes);
        set(&mut params.disk_misdirected_write, f.disk_misdirected_write);
        set(&mut params.disk_latent_sector_error, f.disk_latent_sector_error);
        Ok(())
    }
}

/// Whether `node` names a node of the cluster (or a partition the run has).
fn check_node(node: &NodeRef, params: &Params) -> Result<(), String> {
    match node {
        NodeRef::Id(id) if *id == 0 || *id > params.nodes => {
            Err(format!("node {id} is not in 1..={}", params.nodes))
        }
        NodeRef::Leader { topic, partition } | NodeRef::Follower { topic, partition } => {
            let found = params.topics.iter().find(|t| t.name == *topic);
            match found {
                Some(t) if *partition < t.partitions => Ok(()),
                _ => Err(format!("{topic}-{partition}: no such partition")),
            }
        }
        NodeRef::Coordinator { group } => {
            let mut groups = (0..params.groups as usize).map(crate::groups::group_name);
            if params.consumers > 0 && groups.any(|g| g == *group) {
                Ok(())
            } else {
                Err(format!("coordinator:{group}: no consumer joins such a group"))
            }
        }
        NodeRef::Id(_) | NodeRef::Controller => Ok(()),
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *slot = value;
    }
}

fn topic(t: &TopicToml) -> Result<TopicSpec, String> {
    let durability = match t.durability.as_deref() {
        None | Some("fsync") => TopicDurability::Fsync,
        Some("replicate") => TopicDurability::Replicate,
        Some(other) => return Err(format!("topic {}: durability {other:?}", t.name)),
    };
    if t.name.is_empty() || t.name.contains(['/', '.']) {
        return Err(format!("topic name {:?} is not allowed", t.name));
    }
    Ok(TopicSpec {
        name: t.name.clone(),
        partitions: t.partitions.unwrap_or(1).max(1),
        durability,
        segment_bytes: t.segment_bytes.unwrap_or(1 << 20),
        retention_bytes: t.retention_bytes.unwrap_or(-1),
        min_insync_replicas: t.min_insync_replicas.unwrap_or(1).max(1),
        replication_factor: t.replication_factor,
    })
}
