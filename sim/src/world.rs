//! The world: one thread, one event queue, virtual time that jumps to the next event, N
//! nodes each a real `cairn_node::core::node::Node` over its own [`FaultyDisk`], simulated
//! clients (`workload`), the network, the faults, and the checks after every step.
//!
//! ```text
//!  queue (time, seq) --pop--> Event --> node.handle_* --> poll_output --> disk ops (run now,
//!      ^                                   |                              complete later)
//!      |                                   +--> replies --> Network::route --> Deliver
//!      +---- timers, deliveries, completions, client wakes, faults, heal, drain
//! ```
//!
//! A run is a safety phase (faults on), then a liveness phase: at `safety_ms` every fault
//! heals, crashed nodes restart, clients stop, and a drain must read every partition to its
//! end within `liveness_ms`.

use cairn_node::core::io::{ConnId, DiskResult, NodeId, OpId, RequestId};
use cairn_node::core::node::{Message, Node, NodeConfig, Output, PartitionId};
use cairn_node::core::replica::Replica;
use cairn_node::core::time::Instant;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::disk::SimDiskFaults;
use crate::faults::{self, FaultAction, NodeRef};
use crate::faulty::FaultyDisk;
use crate::invariants::{self, PartitionWatch, Violation};
use crate::net::{Cut, Endpoint, NetConfig, Network};
use crate::params::{Atlas, Params, Stream, TopicDurability, stream};
use crate::queue::EventQueue;
use crate::run::Coverage;
use crate::scenario::TimedFault;
use crate::workload::{Msg, Part, Workload};

/// The connection id the world's controller uses to create partitions on a node.
pub const ADMIN_CONN: ConnId = ConnId(u64::MAX);

/// Whether the nodes replicate partitions: one cluster, topics placed by the controller,
/// clients following leaders. `false` makes each node a cluster of its own (a lone
/// replica of every partition it is asked about), where a wipe loses the only copy: the
/// random nemesis then draws wipes only under the unrecoverable atlas, and a scenario's
/// wipe makes the run excuse lost writes (`World::losses_excused`).
pub const NODES_REPLICATE: bool = true;

/// Nanoseconds in a millisecond.
pub(crate) const MS: u64 = 1_000_000;
/// How long a fault of the timeline waits at most for the role it names to be held.
const ROLE_WAIT_NS: u64 = 10_000 * MS;
/// How often a waiting fault looks again.
const ROLE_POLL_NS: u64 = 100 * MS;

/// The index of node `node` (nodes are numbered from 1), once resolved (`World::admit`).
fn ix_of(node: &NodeRef) -> u32 {
    match node {
        NodeRef::Id(id) => id - 1,
        other => unreachable!("{other:?} is resolved before a fault applies"),
    }
}

/// Something that happens at a point of simulated time.
#[derive(Debug)]
pub(crate) enum Event {
    /// Node `node`'s timer, scheduled at `at` (world time) for its incarnation
    /// `incarnation`; only the event `SimNode::timer_at` names is live.
    NodeTimer {
        node: u32,
        incarnation: u64,
        at: u64,
    },
    DiskDone {
        node: u32,
        incarnation: u64,
        id: OpId,
        result: DiskResult,
    },
    Deliver {
        from: Endpoint,
        to: Endpoint,
        msg: Msg,
    },
    /// A node's message to node `to` (an index), sent to its incarnation `incarnation`.
    Peer {
        from: u32,
        to: u32,
        incarnation: u64,
        message: Message,
    },
    ClientWake {
        client: u32,
    },
    /// Client `client`'s timeout event for a request due to time out at `at`; only the
    /// event `World::client_timers` names is live (one per client, not one per request).
    ClientTimeout {
        client: u32,
        at: u64,
    },
    /// A fault the world applies as it is (a restart after a crash).
    Fault(FaultAction),
    /// A fault of the scenario's timeline. One naming a role nobody holds yet waits for it,
    /// looked at again every `ROLE_POLL_NS` until `until` (set when it first comes up).
    Timeline {
        action: FaultAction,
        until: Option<u64>,
    },
    Nemesis,
    Heal,
    DrainWake,
    End,
    /// Ends the run where it is (tests that watch the first moments of a run).
    #[cfg(test)]
    Stop,
}

/// A node's clock: offset and drift over the world's time, never going back.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    pub(crate) anchor_world: u64,
    pub(crate) anchor_local: u64,
    pub(crate) drift_ppm: i64,
    pub(crate) last: u64,
}

impl Clock {
    pub(crate) fn local(&mut self, world: u64) -> u64 {
        let elapsed = world.saturating_sub(self.anchor_world) as i128;
        let skewed = elapsed + elapsed * self.drift_ppm as i128 / 1_000_000;
        let local = (self.anchor_local as i128 + skewed).max(0) as u64;
        self.last = self.last.max(local);
        self.last
    }

    fn world(&self, local: u64) -> u64 {
        let ahead = local.saturating_sub(self.anchor_local) as i128;
        let elapsed = ahead * 1_000_000 / (1_000_000 + self.drift_ppm as i128);
        self.anchor_world.saturating_add(elapsed.max(0) as u64)
    }
}

/// One simulated node: the core value (absent while crashed), its disk and its clock.
pub(crate) struct SimNode {
    pub(crate) node: Option<Node>,
    pub(crate) incarnation: u64,
    pub(crate) disk: FaultyDisk,
    pub(crate) paused_until: u64,
    pub(crate) clock: Clock,
    /// The time of its one live timer event (`Event::NodeTimer`), if one is scheduled: a
    /// nearer deadline schedules another and leaves the earlier event to be ignored.
    pub(crate) timer_at: Option<u64>,
    /// Per client: the last request number handled (TCP-like dedup, kept across restarts).
    pub(crate) last_request: Vec<u64>,
    /// When it last lost power (a crash or a wipe), for the `replicate` loss rule.
    pub(crate) lost_power_at: Option<u64>,
    /// Its partitions as [`replicas_by_part`] last saw them.
    pub(crate) part_keys: Vec<(PartitionId, usize)>,
}

/// The whole simulated world of one run.
pub struct World {
    pub(crate) params: Params,
    pub(crate) now: u64,
    t0: Instant,
    queue: EventQueue<Event>,
    /// Per client: the time of its live timeout event, if one is queued.
    client_timers: Vec<Option<u64>>,
    pub(crate) rng_net: ChaCha8Rng,
    pub(crate) rng_disk: ChaCha8Rng,
    pub(crate) rng_work: ChaCha8Rng,
    rng_faults: ChaCha8Rng,
    rng_sched: ChaCha8Rng,
    pub(crate) net: Network,
    pub(crate) nodes: Vec<SimNode>,
    pub(crate) work: Workload,
    /// Per workload partition and node (index): the storage checks' memory.
    pub(crate) watches: Vec<Vec<PartitionWatch>>,
    /// The replication checks' memory (`replicas.rs`).
    pub(crate) replicas: crate::replicas::ReplicaWatch,
    /// The topics (indexes into `Params::topics`) the controller committed.
    pub(crate) topics_created: Vec<bool>,
    /// The topic creation in flight: node (index), its incarnation, topic, when sent.
    pub(crate) creating: Option<(u32, u64, usize, u64)>,
    /// No topic creation is asked before this time (after a failed one).
    pub(crate) create_after: u64,
    /// Nodes (indexes) wiped in this run, for the atlas (`cluster.rs`).
    pub(crate) wiped: std::collections::BTreeSet<u32>,
    /// Whether a wipe lost the only copy of partitions (see [`NODES_REPLICATE`]): the
    /// history check then excuses lost writes as under the unrecoverable atlas.
    pub(crate) losses_excused: bool,
    /// A node stopped because a leader's log conflicted with entries it knew committed:
    /// committed metadata was lost with damaged disks (unrecoverable atlas). Kept for the
    /// run: the node's next process may no longer know what was committed.
    pub(crate) committed_metadata_lost: bool,
    pub(crate) hash: u64,
    pub(crate) events: u64,
    pub(crate) coverage: Coverage,
    pub(crate) violation: Option<Violation>,
    pub(crate) done: bool,
    pub(crate) route_buf: Vec<u64>,
}

/// Node `core`'s replica of each workload partition (by index). `keys` remembers the node's
/// partitions in its order with the index of each (`usize::MAX`: not a workload partition):
/// while the node holds the same ones (the same names, by pointer: `keys` keeps them
/// alive), a walk of its replicas finds them without comparing a name. A lookup per
/// partition after every step was a fifth of a light run (docs/simulator.md, Speed).
pub(crate) fn replicas_by_part<'a>(
    core: &'a Node,
    parts: &[Part],
    keys: &mut Vec<(PartitionId, usize)>,
) -> Vec<Option<&'a Replica>> {
    let mut out = vec![None; parts.len()];
    let same = |(known, _): &(PartitionId, usize), id: &PartitionId| {
        std::sync::Arc::ptr_eq(&known.topic, &id.topic) && known.partition == id.partition
    };
    let mut held = 0;
    for (id, replica) in core.replicas() {
        match keys.get(held) {
            Some(entry) if same(entry, id) => {
                if let Some(slot) = out.get_mut(entry.1) {
                    *slot = Some(replica);
                }
            }
            _ => return replicas_by_part_anew(core, parts, keys),
        }
        held += 1;
    }
    if held != keys.len() {
        return replicas_by_part_anew(core, parts, keys);
    }
    out
}

/// [`replicas_by_part`] by name, remembering the node's partitions in `keys`.
fn replicas_by_part_anew<'a>(
    core: &'a Node,
    parts: &[Part],
    keys: &mut Vec<(PartitionId, usize)>,
) -> Vec<Option<&'a Replica>> {
    let mut out = vec![None; parts.len()];
    keys.clear();
    for (id, replica) in core.replicas() {
        let index = parts.iter().position(|p| p.id == *id);
        if let Some(index) = index {
            out[index] = Some(replica);
        }
        keys.push((id.clone(), index.unwrap_or(usize::MAX)));
    }
    out
}

impl World {
    /// A world for `params` and `seed`, with the scenario's `timeline`.
    pub fn new(seed: u64, params: Params, timeline: &[TimedFault]) -> World {
        let mut rng_sched = stream(seed, Stream::Scheduling);
        let mut rng_disk = stream(seed, Stream::Disk);
        let t0 = Instant::from_millis(1_700_000_000_000 + rng_sched.random_range(0..1 << 36));
        let recoverable = params.atlas == Atlas::Recoverable;
        let nodes = (0..params.nodes)
            .map(|_| {
                let faults = SimDiskFaults {
                    capacity_bytes: None,
                    sync_failure: params.disk_sync_failure,
                    read_bit_flip: params.disk_read_bit_flip,
                    latent_sector_error: if recoverable {
                        0.0
                    } else {
                        params.disk_latent_sector_error
                    },
                    torn_writes: params.disk_torn_writes,
                };
                let latency = (params.disk_latency_us.0 * 1000, params.disk_latency_us.1 * 1000);
                let misdirected = if recoverable { 0.0 } else { params.disk_misdirected_write };
                SimNode {
                    node: None,
                    incarnation: 0,
                    disk: FaultyDisk::new(rng_disk.random(), faults, latency, misdirected),
                    paused_until: 0,
                    clock: Clock { anchor_world: 0, anchor_local: 0, drift_ppm: 0, last: 0 },
                    timer_at: None,
                    last_request: vec![0; (params.clients + 1 + params.consumers) as usize],
                    lost_power_at: None,
                    part_keys: Vec::new(),
                }
            })
            .collect();
        let net = Network::new(NetConfig {
            latency_ns: (params.net_latency_us.0 * 1000, params.net_latency_us.1 * 1000),
            loss: params.net_loss,
            duplicate: params.net_duplicate,
            reorder: params.net_reorder,
        });
        let work = Workload::new(&params);
        let watches =
            vec![vec![PartitionWatch::default(); params.nodes as usize]; work.parts.len()];
        let replicas = crate::replicas::new_watch(work.parts.len(), params.nodes);
        let topics_created = vec![false; params.topics.len()];
        let mut world = World {
            now: 0,
            t0,
            queue: EventQueue::new(),
            client_timers: Vec::new(),
            rng_net: stream(seed, Stream::Network),
            rng_disk,
            rng_work: stream(seed, Stream::Workload),
            rng_faults: stream(seed, Stream::Faults),
            rng_sched,
            net,
            nodes,
            work,
            watches,
            replicas,
            topics_created,
            creating: None,
            create_after: 0,
            wiped: std::collections::BTreeSet::new(),
            losses_excused: false,
            committed_metadata_lost: false,
            hash: 0xcbf2_9ce4_8422_2325,
            events: 0,
            coverage: Coverage::default(),
            violation: None,
            done: false,
            route_buf: Vec::with_capacity(2),
            params,
        };
        for index in 0..world.params.nodes {
            world.format_node(index, true);
        }
        for index in 0..world.params.nodes {
            world.start_node(index);
        }
        for client in 0..world.params.clients {
            let delay = world.rng_work.random_range(0..10 * MS);
            world.schedule(delay, Event::ClientWake { client });
        }
        for client in world.work.groups.clients() {
            let delay = world.rng_work.random_range(0..10 * MS);
            world.schedule(delay, Event::ClientWake { client });
        }
        for timed in timeline {
            let action = timed.action.clone();
            world.schedule((timed.s * 1e9) as u64, Event::Timeline { action, until: None });
        }
        if world.params.faults.random {
            let first = world.nemesis_gap();
            world.schedule(first, Event::Nemesis);
        }
        world.schedule(world.params.safety_ms * MS, Event::Heal);
        world.schedule((world.params.safety_ms + world.params.liveness_ms) * MS, Event::End);
        world
    }

    pub(crate) fn schedule(&mut self, at: u64, event: Event) {
        self.queue.push(at.max(self.now), event);
    }

    /// Makes sure client `client` has a timeout event at or before `deadline`. A client has
    /// one request pending at a time and almost every request is answered long before its
    /// timeout, so one event per client, moved on to the pending request's deadline when it
    /// fires early, stands in for one event per request (a twelfth of a busy run's events
    /// were timeouts of requests already answered). A request times out at its deadline
    /// exactly as before.
    pub(crate) fn arm_client_timeout(&mut self, client: u32, deadline: u64) {
        let index = client as usize;
        if self.client_timers.len() <= index {
            self.client_timers.resize(index + 1, None);
        }
        if self.client_timers[index].is_some_and(|at| at <= deadline) {
            return;
        }
        self.client_timers[index] = Some(deadline);
        self.schedule(deadline, Event::ClientTimeout { client, at: deadline });
    }

    /// The world's time as Unix milliseconds (record timestamps of the clients).
    pub(crate) fn unix_ms(&self) -> i64 {
        ((self.t0.as_nanos() + self.now) / MS) as i64
    }

    pub(crate) fn mix(&mut self, word: u64) {
        self.hash = (self.hash ^ word).wrapping_mul(0x0000_0100_0000_01b3);
    }

    /// Runs until the drain finished, the liveness bound passed, or a violation.
    pub fn run(&mut self, events_max: u64) {
        while !self.done && self.violation.is_none() {
            let Some((time, event)) = self.queue.pop() else { break };
            self.now = time;
            self.events += 1;
            if self.events > events_max {
                self.violation =
                    Some(Violation::Liveness { what: "event budget exhausted".into() });
                break;
            }
            self.step(event);
        }
        // After each input a node checks what that input could change, and everything at
        // each timeout; a last full check covers the end state (docs/simulator.md, Speed).
        for core in self.nodes.iter().filter_map(|n| n.node.as_ref()) {
            core.invariants();
        }
        if self.violation.is_none()
            && let Err(violation) = self.check_cluster()
        {
            self.violation = Some(violation);
        }
        self.coverage.events = self.events;
        self.coverage.sim_ns = self.now;
    }

    fn step(&mut self, event: Event) {
        self.mix(self.now);
        if self.now >= self.replicas.next_cluster_check {
            self.replicas.next_cluster_check = self.now + crate::replicas::CLUSTER_CHECK_NS;
            if let Err(violation) = self.check_cluster() {
                self.violation.get_or_insert(violation);
                return;
            }
        }
        match event {
            Event::NodeTimer { node, incarnation, at } => {
                self.mix(1 << 32 | u64::from(node));
                let n = &self.nodes[node as usize];
                // A timer event that a nearer deadline or a clock change replaced, or one of
                // an earlier life: the node's current timer event is another one.
                if n.incarnation != incarnation || n.node.is_none() || n.timer_at != Some(at) {
                    return;
                }
                if self.defer_if_paused(node, || Event::NodeTimer { node, incarnation, at }) {
                    return;
                }
                let n = &mut self.nodes[node as usize];
                n.timer_at = None;
                let local = self.local_now(node);
                let n = &mut self.nodes[node as usize];
                let core = n.node.as_mut().expect("checked");
                if core.poll_timeout().is_some_and(|deadline| deadline <= local) {
                    core.handle_timeout(local);
                }
                self.after_node_step(node);
            }
            Event::DiskDone { node, incarnation, id, result } => {
                self.mix(2 << 32 | id.0);
                if self.nodes[node as usize].incarnation != incarnation {
                    return;
                }
                if self.nodes[node as usize].paused_until > self.now {
                    let at = self.nodes[node as usize].paused_until;
                    self.schedule(at, Event::DiskDone { node, incarnation, id, result });
                    return;
                }
                let local = self.local_now(node);
                if let Some(core) = self.nodes[node as usize].node.as_mut() {
                    core.handle_disk(local, id, result);
                    self.after_node_step(node);
                }
            }
            Event::Deliver { from, to, msg } => self.deliver(from, to, msg),
            Event::Peer { from, to, incarnation, message } => {
                self.deliver_peer(from, to, incarnation, message)
            }
            Event::ClientWake { client } => {
                self.mix(3 << 32 | u64::from(client));
                if self.work.groups.is_consumer(client) {
                    crate::groups::consumer_wake(self, client);
                } else {
                    crate::workload::client_wake(self, client);
                }
            }
            Event::ClientTimeout { client, at } => {
                self.mix(4 << 32 | u64::from(client));
                let armed = &mut self.client_timers[client as usize];
                if *armed != Some(at) {
                    return;
                }
                *armed = None;
                let consumer = self.work.groups.is_consumer(client);
                let pending = if consumer {
                    crate::groups::pending_deadline(self, client)
                } else {
                    crate::workload::pending_deadline(self, client)
                };
                match pending {
                    Some((id, deadline)) if deadline <= self.now => {
                        if consumer {
                            crate::groups::consumer_timeout(self, client, id);
                        } else {
                            crate::workload::client_timeout(self, client, id);
                        }
                    }
                    Some((_, deadline)) => self.arm_client_timeout(client, deadline),
                    None => {}
                }
            }
            Event::Fault(action) => {
                self.mix(5 << 32);
                self.apply(action, false);
            }
            Event::Timeline { action, until } => {
                self.mix(5 << 32 | 1);
                self.apply_timed(action, until);
            }
            Event::Nemesis => {
                if let Some(action) = faults::draw(&mut self.rng_faults, &self.params) {
                    self.apply(action, true);
                }
                let gap = self.nemesis_gap();
                if self.now + gap < self.params.safety_ms * MS {
                    self.schedule(self.now + gap, Event::Nemesis);
                }
            }
            Event::Heal => {
                if let Some((ms, min)) = self.params.acks_all_expected
                    && self.work.acks_all_late < min
                {
                    let what = format!(
                        "{} acks=all writes acknowledged from {ms} ms to the end of the safety \
                         phase; the scenario expects at least {min}",
                        self.work.acks_all_late
                    );
                    self.violation.get_or_insert(Violation::Liveness { what });
                }
                self.heal();
            }
            Event::DrainWake => crate::workload::drain_wake(self),
            #[cfg(test)]
            Event::Stop => self.done = true,
            Event::End => {
                if !self.done {
                    let what = crate::workload::pending_description(self);
                    self.violation = Some(Violation::Liveness { what });
                }
            }
        }
    }

    /// Runs the first `ms` of simulated time only (before the nodes elect anyone and talk
    /// on their own: Raft's election timeout is at least 500 ms).
    #[cfg(test)]
    pub(crate) fn run_first_ms(&mut self, ms: u64) {
        self.schedule(ms * MS, Event::Stop);
        self.run(crate::run::EVENTS_MAX);
    }

    fn nemesis_gap(&mut self) -> u64 {
        let mean = self.params.faults.interval_ms_mean.max(1);
        self.rng_faults.random_range(mean / 2..=mean * 3 / 2) * MS
    }

    fn defer_if_paused(&mut self, node: u32, event: impl FnOnce() -> Event) -> bool {
        let until = self.nodes[node as usize].paused_until;
        if until > self.now {
            self.schedule(until, event());
            return true;
        }
        false
    }

    /// The time as node `node` sees it.
    /// Whether node `index` is up but refuses to serve (see [`Node::fatal`]).
    pub(crate) fn node_failed(&self, index: u32) -> bool {
        self.nodes[index as usize].node.as_ref().is_some_and(|core| core.fatal().is_some())
    }

    pub(crate) fn local_now(&mut self, node: u32) -> Instant {
        let local = self.nodes[node as usize].clock.local(self.now);
        Instant::from_nanos(self.t0.as_nanos() + local)
    }

    fn deliver(&mut self, from: Endpoint, to: Endpoint, msg: Msg) {
        match to {
            Endpoint::Client(client) => {
                self.mix(6 << 32 | u64::from(client));
                if self.work.groups.is_consumer(client) {
                    crate::groups::consumer_receive(self, client, msg);
                } else {
                    crate::workload::client_receive(self, client, msg);
                }
            }
            Endpoint::Node(node) => {
                self.mix(7 << 32 | u64::from(node));
                if self.nodes[node as usize].paused_until > self.now {
                    let at = self.nodes[node as usize].paused_until;
                    self.schedule(at, Event::Deliver { from, to, msg });
                    return;
                }
                let Msg::Request { client, id, request } = msg else { return };
                let local = self.local_now(node);
                let n = &mut self.nodes[node as usize];
                let Some(core) = n.node.as_mut() else { return };
                // TCP: a duplicate or a stale request of the client's connection is dropped.
                let last = &mut n.last_request[client as usize];
                if id <= *last {
                    return;
                }
                *last = id;
                core.handle_request(local, ConnId(u64::from(client)), RequestId(id), request);
                self.after_node_step(node);
            }
        }
    }

    /// Sends `msg` from `from` to `to` through the network.
    pub(crate) fn send(&mut self, from: Endpoint, to: Endpoint, msg: Msg) {
        let mut delays = std::mem::take(&mut self.route_buf);
        self.net.route(&mut self.rng_net, self.now, from, to, &mut delays);
        if let [first, rest @ ..] = &delays[..] {
            for delay in rest {
                self.schedule(self.now + delay, Event::Deliver { from, to, msg: msg.clone() });
            }
            self.schedule(self.now + first, Event::Deliver { from, to, msg });
        }
        self.route_buf = delays;
    }

    /// Drains a node's outputs, re-arms its timer, and checks the invariants.
    pub(crate) fn after_node_step(&mut self, node: u32) {
        let index = node as usize;
        self.create_topics(node);
        loop {
            let Some(output) = self.nodes[index].node.as_mut().and_then(|n| n.poll_output()) else {
                break;
            };
            match output {
                Output::Disk { id, op } => {
                    let incarnation = self.nodes[index].incarnation;
                    let (result, at) =
                        self.nodes[index].disk.execute(&mut self.rng_disk, self.now, op);
                    self.mix(8 << 32 | id.0);
                    self.schedule(at, Event::DiskDone { node, incarnation, id, result });
                }
                Output::Reply { conn, id, response } => {
                    if conn == ADMIN_CONN {
                        self.topic_created(node, id, &response);
                        continue;
                    }
                    let client = conn.0 as u32;
                    let msg = Msg::Reply { id: id.0, response };
                    self.send(Endpoint::Node(node), Endpoint::Client(client), msg);
                }
                Output::Send { to, message } => self.send_peer(node, to, message),
            }
        }
        self.arm_timer(node);
        if let Err(violation) = self.check_node(node).and_then(|()| self.check_replicas(node)) {
            self.violation.get_or_insert(violation);
        }
    }

    pub(crate) fn arm_timer(&mut self, node: u32) {
        let n = &mut self.nodes[node as usize];
        let Some(deadline) = n.node.as_ref().and_then(|core| core.poll_timeout()) else { return };
        let local = deadline.as_nanos().saturating_sub(self.t0.as_nanos());
        let at = n.clock.world(local).max(self.now) + 1;
        if n.timer_at.is_some_and(|t| t <= at) {
            return;
        }
        n.timer_at = Some(at);
        let incarnation = n.incarnation;
        self.schedule(at, Event::NodeTimer { node, incarnation, at });
    }

    /// The online invariants of every partition on `node`.
    fn check_node(&mut self, node: u32) -> Result<(), Violation> {
        let recoverable = self.params.atlas == Atlas::Recoverable;
        let n = &mut self.nodes[node as usize];
        let Some(core) = n.node.as_ref() else { return Ok(()) };
        let replicas = replicas_by_part(core, &self.work.parts, &mut n.part_keys);
        if let Some(error) = core.fatal() {
            // A node that cannot read its topic store refuses to serve: a detected loss,
            // which only the unrecoverable atlas may cause.
            if recoverable {
                return Err(invariants::Violation::NodeFailed { node, error: error.to_string() });
            }
        }
        for (index, part) in self.work.parts.iter_mut().enumerate() {
            let watch = &mut self.watches[index][node as usize];
            let Some(log) = replicas[index].map(|r| r.log()).filter(|log| log.is_ready()) else {
                watch.was_ready = false;
                watch.last_flushed = None;
                continue;
            };
            if recoverable && !watch.lost {
                // A follower truncating its divergent tail (KIP-101) may take back what it
                // had flushed, even what an earlier life flushed (a running log's end goes
                // back only by truncation): the checks then start again from the truncated log.
                // So does a follower restarting its log at its leader's log start
                // (`truncate_fully_and_start_at`): it drops the whole log, and until the new
                // start is durable the core counts nothing flushed, the one time the flushed
                // offset is below the log start.
                let restarting = log.flushed_offset() < log.log_start_offset();
                if watch.was_ready && (log.log_end_offset() < watch.max_flushed || restarting) {
                    watch.last_flushed = None;
                    watch.max_flushed = log.flushed_offset();
                }
                invariants::flushed_offset_monotonic(&part.name, watch, log)?;
                invariants::recovery_keeps_flushed(&part.name, watch, log)?;
                if !watch.was_ready {
                    invariants::recovered_log_is_valid(&part.name, log, &n.disk.disk)?;
                    self.coverage.recoveries_checked += 1;
                }
            } else if !watch.was_ready {
                // Detected loss: recovery cut the log. Acknowledgements above the cut are
                // gone, as the unrecoverable atlas allows; what comes next is checked anew.
                let end = log.log_end_offset();
                // With replicas, one replica's damage loses nothing acknowledged: it fetches
                // again from its leader.
                if !NODES_REPLICATE {
                    let lost = part.acked.split_off(&end).len() as u64;
                    self.coverage.acked_lost_detected += lost;
                }
                watch.max_flushed = watch.max_flushed.min(end);
                watch.lost = false;
            }
            watch.was_ready = true;
            watch.last_flushed = Some(log.flushed_offset());
            watch.max_flushed = watch.max_flushed.max(log.flushed_offset());
        }
        Ok(())
    }

    pub(crate) fn start_node(&mut self, index: u32) {
        let seed = self.rng_sched.random();
        let local = self.local_now(index);
        let config = NodeConfig {
            node_id: NodeId(index + 1),
            cluster: self.cluster_config(index),
            seed,
            retention_check_interval: std::time::Duration::from_millis(
                self.params.retention_check_ms,
            ),
            flush_interval: std::time::Duration::from_millis(self.params.flush_interval_ms),
            recovery_backoff: std::time::Duration::from_millis(200),
            offsets_topic_partitions: crate::groups::OFFSETS_PARTITIONS,
            ..NodeConfig::default()
        };
        let core = Node::new(config, local);
        let n = &mut self.nodes[index as usize];
        n.incarnation += 1;
        n.node = Some(core);
        n.timer_at = None;
        self.after_node_step(index);
    }

    /// Applies a fault of the timeline once every role it names is held, or when it has
    /// waited `ROLE_WAIT_NS` for them, or when the safety phase ends (a fault must not strike
    /// the liveness phase): "crash follower:orders-0" at 2 s means a follower of orders-0,
    /// not whichever node a role falls back to while the topic is still being created.
    fn apply_timed(&mut self, action: FaultAction, until: Option<u64>) {
        let until = until.unwrap_or((self.now + ROLE_WAIT_NS).min(self.params.safety_ms * MS));
        if self.now + ROLE_POLL_NS <= until && !self.roles_held(&action) {
            let until = Some(until);
            self.schedule(self.now + ROLE_POLL_NS, Event::Timeline { action, until });
            return;
        }
        self.apply(action, false);
    }

    /// Applies a fault of the timeline, or one the nemesis `drawn`.
    pub(crate) fn apply(&mut self, action: FaultAction, drawn: bool) {
        let Some(action) = self.admit(action, drawn) else { return };
        if let Some(kind) = action.kind() {
            *self.coverage.faults.entry(kind.name()).or_default() += 1;
        }
        if crate::trace::enabled() {
            crate::trace::line(self.now, format_args!("fault {action:?}"));
        }
        let now = self.now;
        match action {
            FaultAction::Crash { node, down_ms } => {
                let index = ix_of(&node);
                if self.nodes[index as usize].node.is_some() {
                    // Judged while its metadata image still counts among the newest.
                    self.nodes[index as usize].lost_power_at = Some(now);
                    self.replicate_losses(index);
                    let n = &mut self.nodes[index as usize];
                    n.node = None;
                    n.incarnation += 1;
                    n.disk.crash();
                    n.paused_until = 0;
                    self.coverage.crashes += 1;
                    self.crash_closes_links(index);
                }
                if let Some(ms) = down_ms {
                    let restart = FaultAction::Restart { node };
                    self.schedule(now + ms * MS, Event::Fault(restart));
                }
            }
            FaultAction::Restart { node } => {
                let index = ix_of(&node);
                if self.nodes[index as usize].node.is_none() {
                    self.coverage.restarts += 1;
                    self.start_node(index);
                }
            }
            FaultAction::Pause { node, ms } => {
                let n = &mut self.nodes[ix_of(&node) as usize];
                n.paused_until = n.paused_until.max(now + ms * MS);
            }
            FaultAction::Clock { node, offset_ms, drift_ppm } => {
                let index = ix_of(&node);
                let n = &mut self.nodes[index as usize];
                let local = n.clock.local(now);
                n.clock = Clock {
                    anchor_world: now,
                    anchor_local: local + offset_ms * MS,
                    drift_ppm: drift_ppm.clamp(-100_000, 100_000),
                    last: local + offset_ms * MS,
                };
                n.timer_at = None;
                self.arm_timer(index);
            }
            FaultAction::Wipe { node, down_ms } => self.wipe(ix_of(&node), down_ms),
            FaultAction::ClockJump { node, seconds } => self.jump_clock(ix_of(&node), seconds),
            network @ (FaultAction::CutClients { .. }
            | FaultAction::Isolate { .. }
            | FaultAction::Partition { .. }
            | FaultAction::Clog { .. }
            | FaultAction::Heal) => self.apply_network(network),
            disk => self.apply_disk(disk),
        }
    }

    /// Applies a (resolved) network fault.
    fn apply_network(&mut self, action: FaultAction) {
        let now = self.now;
        match action {
            FaultAction::CutClients { node, one_way, ms } => {
                let until = now + ms * MS;
                let index = ix_of(&node);
                self.net.cut(Cut::Node(index), Cut::Clients, until);
                if !one_way {
                    self.net.cut(Cut::Clients, Cut::Node(index), until);
                }
            }
            FaultAction::Isolate { node, ms } => {
                let index = ix_of(&node);
                self.net.cut(Cut::Node(index), Cut::Anyone, now + ms * MS);
                self.net.cut(Cut::Anyone, Cut::Node(index), now + ms * MS);
            }
            FaultAction::Partition { from, to, one_way, ms } => {
                let until = ms.map_or(u64::MAX, |ms| now + ms * MS);
                for a in &from {
                    for b in &to {
                        let (a, b) = (Cut::Node(ix_of(a)), Cut::Node(ix_of(b)));
                        self.net.cut(a, b, until);
                        if !one_way {
                            self.net.cut(b, a, until);
                        }
                    }
                }
            }
            FaultAction::Clog { node, delay_ms, ms } => {
                self.net.clog(ix_of(&node), delay_ms * MS, now + ms * MS);
            }
            FaultAction::Heal => self.net.heal(false),
            other => unreachable!("{other:?} is not a network fault"),
        }
    }

    /// Applies a (resolved) disk fault.
    fn apply_disk(&mut self, action: FaultAction) {
        let now = self.now;
        match action {
            FaultAction::DiskFull { node, ms } => {
                self.nodes[ix_of(&node) as usize].disk.fill(now + ms * MS)
            }
            FaultAction::SlowDisk { node, factor, ms } => {
                self.nodes[ix_of(&node) as usize].disk.slow_down(factor, now + ms * MS)
            }
            FaultAction::FailSync { node } => {
                if let Some(file) = self.pick_segment(ix_of(&node), true) {
                    self.nodes[ix_of(&node) as usize].disk.disk.fail_next_sync(&file);
                }
            }
            FaultAction::Corrupt { node } => {
                let index = ix_of(&node);
                self.only_copies_damaged(index);
                if let Some(file) = self.pick_segment(index, false) {
                    let disk = &mut self.nodes[index as usize].disk.disk;
                    if let Some(len) = disk.durable_len(&file).filter(|len| *len > 0) {
                        let pos = self.rng_faults.random_range(0..len);
                        disk.corrupt(&file, pos);
                    }
                }
            }
            FaultAction::BadSector { node } => {
                let index = ix_of(&node);
                self.only_copies_damaged(index);
                if let Some(file) = self.pick_segment(index, false) {
                    let disk = &mut self.nodes[index as usize].disk.disk;
                    if let Some(len) = disk.durable_len(&file).filter(|len| *len > 0) {
                        let sector = self.rng_faults.random_range(0..len.div_ceil(4096));
                        disk.add_bad_sector(&file, sector);
                    }
                }
            }
            other => unreachable!("{other:?} is not a disk fault"),
        }
    }

    /// A segment file of a random partition on node `index` (the active one with `active`).
    fn pick_segment(&mut self, index: u32, active: bool) -> Option<cairn_node::core::io::FileName> {
        let core = self.nodes[index as usize].node.as_ref()?;
        let ids: Vec<&PartitionId> = core.partitions().collect();
        if ids.is_empty() {
            return None;
        }
        let id = ids[self.rng_faults.random_range(0..ids.len())].clone();
        let log = core.partition(&id)?;
        let segments: Vec<_> = log.segments().map(|s| s.log_file.clone()).collect();
        if active {
            return segments.last().cloned();
        }
        (!segments.is_empty())
            .then(|| segments[self.rng_faults.random_range(0..segments.len())].clone())
    }

    /// The liveness phase begins: every fault heals and the drain is scheduled.
    fn heal(&mut self) {
        self.mix(9 << 32);
        self.net.heal(true);
        for index in 0..self.params.nodes {
            let n = &mut self.nodes[index as usize];
            n.disk.heal();
            n.paused_until = 0;
            if n.node.is_none() {
                self.coverage.restarts += 1;
                self.start_node(index);
            }
        }
        self.work.stopped = true;
        crate::workload::settle_unsettled(self);
        self.schedule(self.now + 500 * MS, Event::DrainWake);
    }

    /// Whether acknowledged offsets are checked (`acked_offset_unique`,
    /// `fetch_matches_acked`): always under the recoverable atlas; under the unrecoverable
    /// one only while each partition has one copy, whose recovery cuts the world sees (with
    /// replicas, damage on a leader may lose acknowledged writes anywhere, as the atlas
    /// allows, and the history check excuses it).
    pub(crate) fn acks_checked(&self) -> bool {
        self.params.atlas == Atlas::Recoverable || !NODES_REPLICATE
    }

    /// Whether a partition's topic is fsync-durable.
    pub(crate) fn is_durable(part: &Part) -> bool {
        part.durability == TopicDurability::Fsync
    }
}
