//! Seeded randomized runs of three replicas: messages reordered, lost and duplicated, disks
//! stalled, nodes crashed (losing unsynced writes) and restarted, leaders changed the way the
//! controller would (a crashed broker leaves the ISR; a leader comes from the ISR). Checked
//! after every step and at the end:
//! - committed prefixes (below each node's HW) are byte-identical across nodes;
//! - a leader's HW never moves back within its epoch;
//! - under `fsync`, no acknowledged acks=all write is lost, even with every node crashed;
//! - a consumer fetch from the leader returns nothing at or above the HW its answer carries.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;

use super::harness::{Cluster, test_config};
use super::*;
use crate::core::io::NodeId;
use crate::core::rng::{CoreRng, seeded};
use crate::core::topic::Durability;

const NODES: u32 = 3;

struct Run {
    c: Cluster,
    rng: CoreRng,
    crashes: bool,
    /// Values sent with acks=all, by token.
    sent: BTreeMap<u64, Bytes>,
    /// acks=all writes acknowledged: offset -> value.
    acked: BTreeMap<u64, Bytes>,
    replies_seen: usize,
    /// Consumer fetches in flight, by token.
    consumes: std::collections::BTreeSet<u64>,
    /// The HW each node showed as leader, by (node, leader epoch).
    leader_hws: BTreeMap<(u32, i32), u64>,
    next_value: u64,
    stats: Stats,
}

#[derive(Debug, Default)]
pub(super) struct Stats {
    acked: usize,
    crashes: usize,
    elections: usize,
    truncations: usize,
}

impl Run {
    fn new(seed: u64, durability: Durability, crashes: bool) -> Run {
        let mut c = Cluster::new(NODES, test_config(durability, 2));
        c.elect(0, &[0, 1, 2]);
        c.hold_network = true;
        Run {
            c,
            rng: seeded(seed),
            crashes,
            sent: BTreeMap::new(),
            acked: BTreeMap::new(),
            replies_seen: 0,
            consumes: std::collections::BTreeSet::new(),
            leader_hws: BTreeMap::new(),
            next_value: 0,
            stats: Stats::default(),
        }
    }

    fn step(&mut self) {
        let roll = self.rng.random_range(0..100);
        match roll {
            0..30 => self.produce(),
            30..60 => self.deliver_one(),
            60..65 => self.drop_one(),
            65..70 => self.duplicate_one(),
            70..85 => {
                let ms = self.rng.random_range(1..300);
                self.c.advance_by(Duration::from_millis(ms), Duration::from_millis(50));
            }
            85..88 if self.crashes => self.crash_one(),
            88..92 if self.crashes => self.restart_one(),
            92..95 => {
                let node = self.rng.random_range(0..NODES);
                let paused = self.c.node(node).disk_paused;
                self.c.node(node).disk_paused = !paused;
            }
            95..98 => self.consume(),
            _ => self.c.pump(),
        }
        self.c.pump();
        self.observe();
    }

    fn produce(&mut self) {
        let Some(leader) = self.c.state.leader else { return };
        if !self.c.nodes[leader.0 as usize].up {
            return;
        }
        self.next_value += 1;
        let value = format!("v{}", self.next_value);
        let acks = if self.rng.random_bool(0.7) { Acks::All } else { Acks::Leader };
        let token = self.c.produce(leader.0, acks, value.as_bytes());
        if acks == Acks::All {
            self.sent.insert(token, Bytes::from(value));
        }
    }

    /// A consumer reads the leader's log from its start.
    fn consume(&mut self) {
        let Some(leader) = self.c.state.leader else { return };
        if !self.c.nodes[leader.0 as usize].up {
            return;
        }
        let start = self.c.replica(leader.0).log().log_start_offset();
        let token = self.c.fetch(leader.0, start);
        self.consumes.insert(token);
    }

    fn pick_message(&mut self) -> Option<usize> {
        let len = self.c.network.len();
        (len > 0).then(|| self.rng.random_range(0..len))
    }

    fn deliver_one(&mut self) {
        if let Some(i) = self.pick_message() {
            let (from, to, message) = self.c.network.remove(i).expect("in range");
            self.c.deliver(from, to, message);
        }
    }

    fn drop_one(&mut self) {
        if let Some(i) = self.pick_message() {
            self.c.network.remove(i);
        }
    }

    fn duplicate_one(&mut self) {
        if let Some(i) = self.pick_message() {
            let copy = self.c.network[i].clone();
            self.c.network.push_back(copy);
        }
    }

    /// The controller's reaction to a crash: the broker leaves the ISR (unless it is the
    /// last member), and a crashed leader is replaced from the ISR (or by none).
    fn crash_one(&mut self) {
        let node = self.rng.random_range(0..NODES);
        if !self.c.nodes[node as usize].up {
            return;
        }
        self.c.crash(node);
        self.stats.crashes += 1;
        let id = NodeId(node);
        let state = &mut self.c.state;
        let was_leader = state.leader == Some(id);
        if state.isr.len() > 1 {
            state.isr.retain(|member| *member != id);
        }
        if was_leader {
            let next = state.isr.iter().copied().find(|m| *m != id);
            state.leader = next;
            state.leader_epoch += 1;
            self.stats.elections += usize::from(next.is_some());
        }
        state.partition_epoch += 1;
        self.c.broadcast_state();
    }

    fn restart_one(&mut self) {
        let node = self.rng.random_range(0..NODES);
        if self.c.nodes[node as usize].up {
            return;
        }
        self.c.restart(node);
        let id = NodeId(node);
        if self.c.state.leader.is_none() && self.c.state.isr == [id] {
            self.c.elect(node, &[node]);
            self.stats.elections += 1;
        } else {
            self.c.send_state(node);
        }
    }

    fn observe(&mut self) {
        for (_, token, response) in &self.c.replies[self.replies_seen..] {
            if let (true, ReplicaResponse::Fetched { records, high_watermark, .. }) =
                (self.consumes.contains(token), response)
            {
                for (_, header) in crate::core::log::batch::BatchScan::new(records, usize::MAX) {
                    let last = header.last_offset() as u64;
                    assert!(last < *high_watermark, "read {last} at or above HW {high_watermark}");
                }
            }
            if let (Some(value), ReplicaResponse::Produced { base_offset }) =
                (self.sent.get(token), response)
            {
                self.acked.insert(*base_offset, value.clone());
                self.stats.acked += 1;
            }
        }
        self.replies_seen = self.c.replies.len();
        for node in 0..NODES {
            let replica = self.c.replica(node);
            if !self.c.nodes[node as usize].up || replica.role() != Role::Leader {
                continue;
            }
            let key = (node, replica.leader_epoch());
            let hw = replica.high_watermark();
            let before = self.leader_hws.insert(key, hw).unwrap_or(0);
            assert!(hw >= before, "leader {node} HW moved back from {before} to {hw}");
        }
        self.check_committed_prefixes();
    }

    fn check_committed_prefixes(&self) {
        let up: Vec<u32> = (0..NODES).filter(|n| self.c.nodes[*n as usize].up).collect();
        for (i, a) in up.iter().enumerate() {
            for b in &up[i + 1..] {
                let (ra, rb) = (self.c.replica(*a), self.c.replica(*b));
                if !ra.log().is_ready() || !rb.log().is_ready() {
                    continue;
                }
                let end = ra.high_watermark().min(rb.high_watermark());
                let start = ra.log().log_start_offset().max(rb.log().log_start_offset());
                if end <= start {
                    continue;
                }
                // Batches still queued for a stalled disk are not in its files yet: compare
                // what both disks hold.
                let (xs, ys) = (self.c.batches_below(*a, end), self.c.batches_below(*b, end));
                let n = xs.len().min(ys.len());
                assert_eq!(xs[..n], ys[..n], "nodes {a} and {b} disagree below {end}");
            }
        }
    }

    fn dump(&self) -> String {
        let mut text = format!("{:?}\n", self.c.state);
        for (node, event) in &self.c.events {
            if matches!(event, ReplicaEvent::Failed { .. } | ReplicaEvent::Recovered { .. }) {
                text += &format!("node {node:?}: {event:?}\n");
            }
        }
        for node in 0..NODES {
            let r = self.c.replica(node);
            text += &format!(
                "node {node} up {} role {:?} epoch {} leo {} flushed {} hw {} pending {:?}                  epochs {:?} ready {} failure {:?}\n",
                self.c.nodes[node as usize].up,
                r.role(),
                r.leader_epoch(),
                r.log().log_end_offset(),
                r.log().flushed_offset(),
                r.high_watermark(),
                r.pending_isr(),
                r.log().epochs().entries(),
                r.log().is_ready(),
                r.log().failure(),
            );
        }
        text
    }

    /// Heals everything and lets the cluster settle; then every acked write must be in the
    /// leader's log at its offset, and every replica must hold the same log.
    fn finish(&mut self) {
        for node in 0..NODES {
            self.c.node(node).disk_paused = false;
        }
        for node in 0..NODES {
            if !self.c.nodes[node as usize].up {
                self.c.restart(node);
                let id = NodeId(node);
                if self.c.state.leader.is_none() && self.c.state.isr == [id] {
                    self.c.elect(node, &[node]);
                } else {
                    self.c.send_state(node);
                }
            }
        }
        self.c.hold_network = false;
        self.c.advance_by(Duration::from_millis(10_000), Duration::from_millis(100));
        self.observe();
        let leader = self.c.state.leader.expect("a leader after healing").0;
        let leader_replica = self.c.replica(leader);
        let leo = leader_replica.log().log_end_offset();
        assert_eq!(leader_replica.high_watermark(), leo, "healed: {}", self.dump());
        assert_eq!(self.c.state.isr.len(), NODES as usize, "healed: everyone in sync");
        let values = self.c.values_below(leader, leo);
        for (offset, value) in &self.acked {
            assert_eq!(values.get(*offset as usize), Some(value), "acked write at {offset} lost");
        }
        for node in 0..NODES {
            assert_eq!(self.c.batches_below(node, leo), self.c.batches_below(leader, leo));
        }
        self.stats.truncations = self
            .c
            .events
            .iter()
            .filter(|(_, e)| matches!(e, ReplicaEvent::Truncated { .. }))
            .count();
    }
}

/// One seeded run of `steps` steps, then healing; panics on the first broken rule.
pub(super) fn run(seed: u64, durability: Durability, crashes: bool, steps: usize) -> Stats {
    let mut run = Run::new(seed, durability, crashes);
    for _ in 0..steps {
        run.step();
    }
    run.finish();
    run.stats
}

#[test]
fn random_faults_keep_committed_prefixes_and_acked_writes_under_fsync() {
    let mut total = Stats::default();
    for seed in 0..100 {
        let stats = run(seed, Durability::Fsync, true, 400);
        total.acked += stats.acked;
        total.crashes += stats.crashes;
        total.elections += stats.elections;
        total.truncations += stats.truncations;
    }
    eprintln!("fsync runs: {total:?}");
    // A run that exercised nothing must not pass.
    assert!(total.acked > 800, "{total:?}");
    assert!(total.crashes > 400, "{total:?}");
    assert!(total.elections > 150, "{total:?}");
    assert!(total.truncations > 250, "{total:?}");
}

#[test]
fn random_message_faults_keep_committed_prefixes_under_replicate() {
    let mut acked = 0;
    for seed in 1000..1050 {
        acked += run(seed, Durability::Replicate, false, 400).acked;
    }
    eprintln!("replicate runs: {acked} acked");
    assert!(acked > 2_000, "{acked}");
}
