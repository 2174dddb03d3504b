//! A deterministic test bench for replicas: several nodes, each a [`Replica`] over its own
//! in-memory disk that loses unsynced writes on a crash, a message queue the test controls,
//! and the controller's part played by the test (it elects leaders and answers
//! AlterPartition).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::{
    Acks, PartitionState, Replica, ReplicaConfig, ReplicaEvent, ReplicaMessage, ReplicaResponse,
};
use crate::core::io::{
    DirEntry, DiskDriver, DiskError, DiskOk, DiskOp, DiskResult, FileName, NodeId,
};
use crate::core::log::batch::{BatchHeader, build};
use crate::core::log::{LogConfig, OpQueue};
use crate::core::time::Instant;
use crate::core::topic::Durability;

/// The partition's directory on every node.
pub const DIR: &str = "partitions/t-0";
/// Disk ops one node may run before its queue is empty: more means a loop that never
/// settles (each completion submitting another op), which fails the test rather than hang it.
const DISK_OPS_PER_RUN_MAX: u32 = 1_000_000;

/// The start of test time.
pub const T0: Instant = Instant::from_millis(1_700_000_000_000);

#[derive(Debug, Default, Clone)]
struct MemFile {
    data: Vec<u8>,
    synced: Vec<u8>,
}

/// A disk in memory: writes land in `data`, a sync copies them to `synced`, a crash keeps
/// only what was synced (creates, renames and removes are durable once done, as the disk-op
/// contract says).
#[derive(Debug, Default)]
pub struct MemDisk {
    files: BTreeMap<String, MemFile>,
    /// Syncs still to succeed before one fails with EIO (`None`: never).
    pub syncs_before_failure: Option<u32>,
    /// Files every read of which fails with EIO (a sector gone bad on the medium).
    pub unreadable: BTreeSet<String>,
}

impl MemDisk {
    /// Loses every unsynced write.
    pub fn crash(&mut self) {
        for file in self.files.values_mut() {
            file.data = file.synced.clone();
        }
    }

    /// The bytes of `name` as the running system sees them.
    pub fn contents(&self, name: &FileName) -> &[u8] {
        self.files.get(name.as_str()).map_or(&[], |f| &f.data)
    }

    /// The names of the files in `dir` (not recursively).
    pub fn files_in(&self, dir: &str) -> Vec<String> {
        let prefix = format!("{dir}/");
        let names = self.files.keys().filter_map(|name| name.strip_prefix(&prefix));
        names.filter(|rest| !rest.contains('/')).map(str::to_string).collect()
    }

    /// Flips the bits of byte `pos` of `name`, synced copy included (silent corruption).
    pub fn corrupt(&mut self, name: &str, pos: usize) {
        let file = self.files.get_mut(name).expect("the file exists");
        file.data[pos] ^= 0xff;
        file.synced[pos] ^= 0xff;
    }
}

impl DiskDriver for MemDisk {
    fn execute(&mut self, op: DiskOp) -> DiskResult {
        self.execute_inner(op)
    }
}

impl MemDisk {
    fn execute_inner(&mut self, op: DiskOp) -> DiskResult {
        match op {
            DiskOp::Create { file } => {
                self.files.insert(file.to_string(), MemFile::default());
            }
            DiskOp::Append { file, pos, data } => {
                let f = self.files.get_mut(file.as_str()).ok_or(DiskError::NotFound)?;
                assert_eq!(pos, f.data.len() as u64, "appends write at the end");
                f.data.extend_from_slice(&data);
            }
            DiskOp::Sync { file } => {
                match self.syncs_before_failure.as_mut() {
                    Some(0) => {
                        self.syncs_before_failure = None;
                        return Err(DiskError::Io("injected".into()));
                    }
                    Some(left) => *left -= 1,
                    None => {}
                }
                let f = self.files.get_mut(file.as_str()).ok_or(DiskError::NotFound)?;
                f.synced = f.data.clone();
            }
            DiskOp::Read { file, pos, len } => {
                if self.unreadable.contains(file.as_str()) {
                    return Err(DiskError::Io("injected: bad sector".into()));
                }
                let f = self.files.get(file.as_str()).ok_or(DiskError::NotFound)?;
                let start = (pos as usize).min(f.data.len());
                let end = (start + len as usize).min(f.data.len());
                return Ok(DiskOk::Data(Bytes::copy_from_slice(&f.data[start..end])));
            }
            DiskOp::Truncate { file, len } => {
                let f = self.files.get_mut(file.as_str()).ok_or(DiskError::NotFound)?;
                f.data.truncate(len as usize);
            }
            DiskOp::Remove { file } => {
                self.files.remove(file.as_str());
            }
            DiskOp::Rename { from, to } => {
                let f = self.files.remove(from.as_str()).ok_or(DiskError::NotFound)?;
                self.files.insert(to.to_string(), f);
            }
            DiskOp::List { dir } => {
                let prefix = format!("{dir}/");
                let mut entries = BTreeMap::new();
                for (name, file) in self.files.range(prefix.clone()..) {
                    let Some(rest) = name.strip_prefix(&prefix) else { break };
                    match rest.split_once('/') {
                        Some((sub, _)) => entries.insert(sub.to_string(), (0, true)),
                        None => entries.insert(rest.to_string(), (file.data.len() as u64, false)),
                    };
                }
                let listing = entries
                    .into_iter()
                    .map(|(name, (len, is_dir))| DirEntry { name, len, is_dir })
                    .collect();
                return Ok(DiskOk::Listing(listing));
            }
        }
        Ok(DiskOk::Done)
    }
}

/// One node of the bench.
pub struct TestNode {
    /// Its id.
    pub id: NodeId,
    /// Its replica of the partition.
    pub replica: Replica,
    /// Its disk.
    pub disk: MemDisk,
    /// Ops issued and not yet run.
    pub queue: OpQueue,
    /// While set, no disk op runs (a slow disk; ops run in order, so a held sync holds all
    /// that follow it).
    pub disk_paused: bool,
    /// While unset the node is crashed: nothing reaches it.
    pub up: bool,
}

/// The bench. Every input is followed by [`Cluster::pump`] unless the test says otherwise.
pub struct Cluster {
    /// The time handed to replicas.
    pub now: Instant,
    /// The nodes, indexed by node id.
    pub nodes: Vec<TestNode>,
    /// Messages sent and not yet delivered: (from, to, message).
    pub network: VecDeque<(NodeId, NodeId, ReplicaMessage)>,
    /// While set, [`Cluster::pump`] delivers no messages (the test moves them itself).
    pub hold_network: bool,
    /// Links that drop every message: (from, to).
    pub cut: BTreeSet<(NodeId, NodeId)>,
    /// Client answers: (node, token, response).
    pub replies: Vec<(NodeId, u64, ReplicaResponse)>,
    /// ISR changes asked for: (leader, leader epoch, partition epoch, new ISR).
    pub alters: Vec<(NodeId, i32, i32, Vec<NodeId>)>,
    /// Whether the "controller" accepts ISR changes as soon as asked.
    pub auto_alter: bool,
    /// The controller's view of the partition.
    pub state: PartitionState,
    /// Every other event, for tests that look at them: (node, event).
    pub events: Vec<(NodeId, ReplicaEvent)>,
    /// The settings each replica is opened with (node id set per node).
    pub config: ReplicaConfig,
    /// The log settings of every replica.
    pub log_config: LogConfig,
    next_token: u64,
    trace: bool,
}

/// The settings of a bench replica.
pub fn test_config(durability: Durability, min_insync_replicas: usize) -> ReplicaConfig {
    ReplicaConfig { durability, min_insync_replicas, ..ReplicaConfig::new(NodeId(0), "t", 0) }
}

/// A small log config, so that logs roll segments.
pub fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        batch_bytes_max: 4096,
        ..LogConfig::default()
    }
}

/// A batch holding one record with `value`.
pub fn batch(value: &[u8]) -> BytesMut {
    build::batch(&[value], 1_000)
}

impl Cluster {
    /// `n` nodes (ids 0..n) with empty disks, recovered, without any state yet.
    pub fn new(n: u32, config: ReplicaConfig) -> Cluster {
        Cluster::with_log(n, config, log_config())
    }

    /// `n` nodes whose logs have settings `log`.
    pub fn with_log(n: u32, config: ReplicaConfig, log: LogConfig) -> Cluster {
        let mut cluster = Cluster {
            now: T0,
            nodes: Vec::new(),
            network: VecDeque::new(),
            hold_network: false,
            cut: BTreeSet::new(),
            replies: Vec::new(),
            alters: Vec::new(),
            auto_alter: true,
            state: PartitionState {
                replicas: (0..n).map(NodeId).collect(),
                isr: Vec::new(),
                leader: None,
                leader_epoch: -1,
                partition_epoch: -1,
            },
            events: Vec::new(),
            config,
            log_config: log,
            next_token: 0,
            trace: false,
        };
        for id in 0..n {
            let mut queue = OpQueue::default();
            let replica = cluster.open_replica(NodeId(id), &mut queue);
            let node = TestNode {
                id: NodeId(id),
                replica,
                disk: MemDisk::default(),
                queue,
                disk_paused: false,
                up: true,
            };
            cluster.nodes.push(node);
        }
        cluster.pump();
        cluster
    }

    fn open_replica(&self, id: NodeId, queue: &mut OpQueue) -> Replica {
        let config = ReplicaConfig { node_id: id, ..self.config.clone() };
        Replica::open(config, FileName::new(DIR), self.log_config.clone(), queue)
    }

    /// Node `id`.
    pub fn node(&mut self, id: u32) -> &mut TestNode {
        &mut self.nodes[id as usize]
    }

    /// Node `id`'s replica.
    pub fn replica(&self, id: u32) -> &Replica {
        &self.nodes[id as usize].replica
    }

    /// Makes `leader` the leader of a new epoch with ISR `isr` and tells every node.
    pub fn elect(&mut self, leader: u32, isr: &[u32]) {
        self.state.leader = Some(NodeId(leader));
        self.state.isr = isr.iter().copied().map(NodeId).collect();
        self.state.leader_epoch += 1;
        self.state.partition_epoch += 1;
        self.broadcast_state();
    }

    /// Commits a new ISR in the current leader epoch and tells every node.
    pub fn set_isr(&mut self, isr: &[u32]) {
        self.state.isr = isr.iter().copied().map(NodeId).collect();
        self.state.partition_epoch += 1;
        self.broadcast_state();
    }

    /// Hands the controller's state to every node that is up, then pumps.
    pub fn broadcast_state(&mut self) {
        for i in 0..self.nodes.len() {
            self.send_state(i as u32);
        }
        self.pump();
    }

    /// Hands the controller's state to node `id` (without pumping).
    pub fn send_state(&mut self, id: u32) {
        let (now, state) = (self.now, self.state.clone());
        let node = &mut self.nodes[id as usize];
        if node.up {
            node.replica.set_partition_state(now, state, &mut node.queue);
        }
    }

    /// A produce to node `id`; returns its token.
    pub fn produce(&mut self, id: u32, acks: Acks, value: &[u8]) -> u64 {
        self.produce_with_epoch(id, acks, value, None)
    }

    /// A produce carrying a current leader epoch.
    pub fn produce_with_epoch(
        &mut self,
        id: u32,
        acks: Acks,
        value: &[u8],
        epoch: Option<i32>,
    ) -> u64 {
        self.next_token += 1;
        let (token, now) = (self.next_token, self.now);
        let node = &mut self.nodes[id as usize];
        node.replica.produce(now, token, acks, batch(value), epoch, &mut node.queue);
        self.pump();
        token
    }

    /// A produce of `batch` as built by the test to node `id`; returns its token.
    pub fn produce_batch(&mut self, id: u32, acks: Acks, batch: BytesMut) -> u64 {
        self.next_token += 1;
        let (token, now) = (self.next_token, self.now);
        let node = &mut self.nodes[id as usize];
        node.replica.produce(now, token, acks, batch, None, &mut node.queue);
        self.pump();
        token
    }

    /// A consumer fetch from node `id` (1 MiB at most); returns its token.
    pub fn fetch(&mut self, id: u32, offset: u64) -> u64 {
        self.fetch_bytes(id, offset, 1 << 20)
    }

    /// A consumer fetch of at most `max_bytes` from node `id`; returns its token.
    pub fn fetch_bytes(&mut self, id: u32, offset: u64, max_bytes: u32) -> u64 {
        self.next_token += 1;
        let (token, now) = (self.next_token, self.now);
        let node = &mut self.nodes[id as usize];
        node.replica.fetch(now, token, offset, max_bytes, None, &mut node.queue);
        self.pump();
        token
    }

    /// The answer to `token`, if it came.
    pub fn reply(&self, token: u64) -> Option<&ReplicaResponse> {
        self.replies.iter().find(|(_, t, _)| *t == token).map(|(_, _, r)| r)
    }

    /// Runs disk ops, flushes, routes events and delivers messages until nothing moves.
    pub fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                moved |= self.run_node(i);
            }
            if !self.hold_network
                && let Some((from, to, message)) = self.network.pop_front()
            {
                self.deliver(from, to, message);
                moved = true;
            }
            if !moved {
                return;
            }
        }
        self.trace = true;
        for _ in 0..6 {
            for i in 0..self.nodes.len() {
                self.run_node(i);
            }
            if let Some((from, to, message)) = self.network.pop_front() {
                eprintln!("{from:?} -> {to:?}: {:.300}", format!("{message:?}"));
                self.deliver(from, to, message);
            }
        }
        panic!("the bench did not settle");
    }

    /// Delivers, in queue order, the queued messages `select` picks (the others stay queued),
    /// running disks and routing events after each but delivering nothing else.
    pub fn deliver_where(
        &mut self,
        mut select: impl FnMut(NodeId, NodeId, &ReplicaMessage) -> bool,
    ) {
        let queued = std::mem::take(&mut self.network);
        let mut kept = VecDeque::new();
        let hold = std::mem::replace(&mut self.hold_network, true);
        for (from, to, message) in queued {
            if select(from, to, &message) {
                self.deliver(from, to, message);
                self.pump();
            } else {
                kept.push_back((from, to, message));
            }
        }
        kept.extend(std::mem::take(&mut self.network));
        self.network = kept;
        self.hold_network = hold;
    }

    /// Delivers one message now (unless its link is cut or its target is down).
    pub fn deliver(&mut self, from: NodeId, to: NodeId, message: ReplicaMessage) {
        let now = self.now;
        if self.cut.contains(&(from, to)) {
            return;
        }
        let node = &mut self.nodes[to.0 as usize];
        if node.up {
            node.replica.handle_message(now, from, message, &mut node.queue);
        }
    }

    fn run_node(&mut self, i: usize) -> bool {
        let now = self.now;
        let mut moved = false;
        let node = &mut self.nodes[i];
        if !node.up {
            return false;
        }
        if !node.disk_paused {
            let mut ops = 0u32;
            while let Some((id, op)) = node.queue.pop() {
                let result = node.disk.execute(op);
                node.replica.handle_disk(now, id, result, &mut node.queue);
                moved = true;
                ops += 1;
                assert!(
                    ops < DISK_OPS_PER_RUN_MAX,
                    "node {:?} never stops submitting disk ops",
                    node.id
                );
            }
        }
        if node.replica.wants_flush() {
            node.replica.flush(&mut node.queue);
            moved |= !node.queue.is_empty();
        }
        let id = node.id;
        let mut events = Vec::new();
        while let Some(event) = node.replica.poll_event() {
            events.push(event);
        }
        for event in events {
            moved = true;
            self.route(id, event);
        }
        moved
    }

    fn route(&mut self, from: NodeId, event: ReplicaEvent) {
        if self.trace {
            eprintln!("{from:?} event {:.300}", format!("{event:?}"));
        }
        match event {
            ReplicaEvent::Reply { token, response } => self.replies.push((from, token, response)),
            ReplicaEvent::Send { to, message } => self.network.push_back((from, to, message)),
            ReplicaEvent::AlterPartition { leader_epoch, partition_epoch, new_isr, resign } => {
                self.alters.push((from, leader_epoch, partition_epoch, new_isr.clone()));
                if !self.auto_alter {
                    return;
                }
                if resign {
                    self.answer_resign(from, leader_epoch, partition_epoch);
                } else {
                    self.answer_alter(from, leader_epoch, partition_epoch, new_isr);
                }
            }
            other => self.events.push((from, other)),
        }
    }

    /// The controller's answer to an AlterPartition: accepted if based on the current state
    /// (and the leader is still up), refused otherwise.
    pub fn answer_alter(
        &mut self,
        from: NodeId,
        leader_epoch: i32,
        partition_epoch: i32,
        new_isr: Vec<NodeId>,
    ) {
        let current = (self.state.leader_epoch, self.state.partition_epoch);
        if current == (leader_epoch, partition_epoch) && self.state.leader == Some(from) {
            self.state.isr = new_isr;
            self.state.partition_epoch += 1;
            for i in 0..self.nodes.len() {
                self.send_state(i as u32);
            }
        } else {
            let now = self.now;
            let node = &mut self.nodes[from.0 as usize];
            if node.up {
                node.replica.alter_partition_failed(
                    now,
                    (leader_epoch, partition_epoch),
                    true,
                    &mut node.queue,
                );
            }
        }
    }

    /// The controller's answer to a resignation (as `core::controller` gives it): the first
    /// other ISR member that is up leads, without the one resigning in its ISR; with none,
    /// the same leader leads again in a new epoch. Refused if based on an old state.
    pub fn answer_resign(&mut self, from: NodeId, leader_epoch: i32, partition_epoch: i32) {
        let current = (self.state.leader_epoch, self.state.partition_epoch);
        if current != (leader_epoch, partition_epoch) || self.state.leader != Some(from) {
            return self.answer_alter(from, leader_epoch, partition_epoch, Vec::new());
        }
        let up = |id: &NodeId| self.nodes.get(id.0 as usize).is_some_and(|n| n.up);
        let other = self.state.isr.iter().copied().find(|id| *id != from && up(id));
        if let Some(other) = other {
            self.state.isr.retain(|id| *id != from);
            self.state.leader = Some(other);
        }
        self.state.leader_epoch += 1;
        self.state.partition_epoch += 1;
        for i in 0..self.nodes.len() {
            self.send_state(i as u32);
        }
    }

    /// Moves time forward by `by` in steps of at most `step`, firing due timers and pumping
    /// after each.
    pub fn advance_by(&mut self, by: Duration, step: Duration) {
        let end = self.now + by;
        while self.now < end {
            let next_timer = self
                .nodes
                .iter()
                .filter(|n| n.up)
                .filter_map(|n| n.replica.poll_timeout())
                .min()
                .unwrap_or(Instant::MAX);
            self.now = next_timer.min(self.now + step).min(end).max(self.now);
            self.fire_timers();
            self.pump();
        }
    }

    /// Runs retention on node `id`, which must delete a segment, and returns its log start.
    pub fn apply_retention(&mut self, id: u32) -> u64 {
        let (now, node) = (self.now, self.node(id));
        assert!(node.replica.apply_retention(now, &mut node.queue) > 0, "retention deleted");
        self.pump();
        self.replica(id).log().log_start_offset()
    }

    fn fire_timers(&mut self) {
        let now = self.now;
        for node in &mut self.nodes {
            if node.up && node.replica.poll_timeout().is_some_and(|t| t <= now) {
                node.replica.handle_timeout(now, &mut node.queue);
            }
        }
    }

    /// Crashes node `id`: its unsynced writes and queued ops are gone, it receives nothing.
    pub fn crash(&mut self, id: u32) {
        let node = &mut self.nodes[id as usize];
        node.up = false;
        node.disk.crash();
        node.queue = OpQueue::default();
    }

    /// Restarts node `id` from its disk (recovery runs; no state until the next broadcast).
    pub fn restart(&mut self, id: u32) {
        let mut queue = OpQueue::default();
        let replica = self.open_replica(NodeId(id), &mut queue);
        let node = &mut self.nodes[id as usize];
        node.replica = replica;
        node.queue = queue;
        node.up = true;
        node.disk_paused = false;
        self.pump();
    }

    /// The batches of node `id`'s log below `end`, as stored, read from its disk.
    pub fn batches_below(&self, id: u32, end: u64) -> Vec<Bytes> {
        let node = &self.nodes[id as usize];
        let mut batches = Vec::new();
        for segment in node.replica.log().segments() {
            let bytes = node.disk.contents(&segment.log_file);
            let bytes = &bytes[..(segment.size_bytes as usize).min(bytes.len())];
            let mut pos = 0;
            while pos < bytes.len() {
                let header = BatchHeader::parse(&bytes[pos..]).expect("a batch header");
                if header.last_offset() as u64 >= end {
                    return batches;
                }
                let size = header.total_bytes();
                batches.push(Bytes::copy_from_slice(&bytes[pos..pos + size]));
                pos += size;
            }
        }
        batches
    }

    /// The record values of node `id`'s log below `end`.
    pub fn values_below(&self, id: u32, end: u64) -> Vec<Bytes> {
        self.batches_below(id, end).iter().flat_map(|b| build::values(b)).collect()
    }
}
