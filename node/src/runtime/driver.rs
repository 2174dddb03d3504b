//! The task that drives one core [`Node`]: it hands the node every input (requests from
//! connections, disk completions from the executor, timeouts) and carries out its outputs.
//!
//! Connections talk to the driver through a [`NodeHandle`]: they register a reply queue,
//! send numbered requests, and receive the answers in whatever order the node gives them.
//! Peers talk to it through a [`PeerLink`]: the node's `Output::Send`s go to the peer
//! transport's queues (a full one drops the message), and the transport's bounded inbound
//! queue feeds `Node::handle_message`; the transport's link states feed
//! `Node::handle_peer_link` whenever one changes. No lock is held anywhere: every hand-over
//! is a queue or a watch.
//! The driver is the only place that reads a clock ([`Clock`]) and hands its time to the core.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{mpsc, watch};
use tokio::time::sleep_until;

use super::executor::{Completions, DiskExecutor};
use super::http::Metrics;
use super::peer::{PeerLinks, PeerSender};
use crate::core::io::{ConnId, DiskOp, DiskResult, NodeId, OpId, RequestId};
use crate::core::node::{Message, Node, Output, Request, Response};
use crate::core::time::Instant;

/// Requests waiting for the driver at most before a connection waits.
pub const INBOUND_QUEUE_MAX: usize = 4096;
/// Peer messages waiting for the driver at most; more are dropped (and counted) by the peer
/// transport, which never waits on a busy node.
pub const PEER_INBOUND_QUEUE_MAX: usize = 4096;
/// Peer messages handed to the node per wake-up at most, so a flood of them cannot starve
/// clients and timers.
pub const PEER_INBOUND_BATCH_MAX: usize = 64;

const _: () = assert!(PEER_INBOUND_BATCH_MAX <= PEER_INBOUND_QUEUE_MAX);

/// Time for the core: the Unix epoch as the wall clock said at start, advanced by tokio's
/// monotonic clock, so it never goes backwards (docs/decisions/0002-time-is-unix-anchored.md).
/// Under a simulation, tokio's clock is the simulation's and the wall clock its OS's
/// (`runtime::os`), so nothing here reads the host's time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall_at_start_nanos: u64,
    start: tokio::time::Instant,
}

impl Clock {
    /// A clock anchored to the real wall clock now.
    pub fn start() -> Clock {
        Clock::start_on::<super::os::Tokio>()
    }

    /// A clock anchored to the wall clock of `O` now.
    pub fn start_on<O: super::os::Os>() -> Clock {
        Clock { wall_at_start_nanos: O::wall_clock_nanos(), start: tokio::time::Instant::now() }
    }

    /// The core's `now`.
    pub fn now(&self) -> Instant {
        let elapsed = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        Instant::from_nanos(self.wall_at_start_nanos.saturating_add(elapsed))
    }

    /// The tokio instant at which the core's `at` falls.
    fn to_tokio(self, at: Instant) -> tokio::time::Instant {
        let offset = at.as_nanos().saturating_sub(self.wall_at_start_nanos);
        let offset = std::time::Duration::from_nanos(offset);
        self.start + offset
    }
}

/// What a connection sends the driver.
#[derive(Debug)]
enum Inbound {
    Connect { conn: ConnId, replies: mpsc::UnboundedSender<(RequestId, Response)> },
    Request { conn: ConnId, id: RequestId, request: Request },
    Disconnect { conn: ConnId },
    Shutdown,
}

/// A connection's way to the node.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    inbound: mpsc::Sender<Inbound>,
    data_version: watch::Receiver<u64>,
}

/// The node's driver has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the node has stopped")]
pub struct NodeStopped;

impl NodeHandle {
    /// Registers connection `conn`; answers to its requests arrive on the returned queue.
    pub async fn connect(
        &self,
        conn: ConnId,
    ) -> Result<mpsc::UnboundedReceiver<(RequestId, Response)>, NodeStopped> {
        let (replies, receiver) = mpsc::unbounded_channel();
        self.inbound.send(Inbound::Connect { conn, replies }).await.map_err(|_| NodeStopped)?;
        Ok(receiver)
    }

    /// Sends request `id` of connection `conn`.
    pub async fn request(
        &self,
        conn: ConnId,
        id: RequestId,
        request: Request,
    ) -> Result<(), NodeStopped> {
        self.inbound.send(Inbound::Request { conn, id, request }).await.map_err(|_| NodeStopped)
    }

    /// Asks the node to stop cleanly: it refuses new writes, flushes every partition and
    /// finishes every disk op, then the driver's task ends and returns the node.
    pub async fn shutdown(&self) {
        let _ = self.inbound.send(Inbound::Shutdown).await;
    }

    /// The node's data version ([`Node::data_version`]): it changes whenever a high
    /// watermark advances or a topic changes, so a fetch that found too little waits on it
    /// (`changed().await`, under the fetch's max wait) before it asks again.
    pub fn data_version(&self) -> watch::Receiver<u64> {
        self.data_version.clone()
    }

    /// Forgets connection `conn`; answers still owed to it are dropped.
    pub async fn disconnect(&self, conn: ConnId) {
        let _ = self.inbound.send(Inbound::Disconnect { conn }).await;
    }
}

/// Starts driving `node` on the current tokio runtime. The driver stops cleanly (every
/// partition flushed) after [`NodeHandle::shutdown`] or once every [`NodeHandle`] is dropped;
/// it stops at once when the executor stops or the node cannot serve ([`Node::fatal`]).
pub fn spawn(
    node: Node,
    executor: DiskExecutor,
    completions: Completions,
    clock: Clock,
) -> (NodeHandle, tokio::task::JoinHandle<Node>) {
    let metrics = Arc::new(Metrics::default());
    spawn_with_metrics(node, executor, completions, clock, metrics, None)
}

/// The peer transport as the driver sees it: where the node's [`Output::Send`]s go, and
/// where its peers' messages come from (a bounded queue: see [`PEER_INBOUND_QUEUE_MAX`]).
#[derive(Debug)]
pub struct PeerLink {
    /// Queues messages for peers; a full queue drops them.
    pub sender: PeerSender<Message>,
    /// Messages from peers, with the sender's id.
    pub inbound: mpsc::Receiver<(NodeId, Message)>,
    /// Every peer's link state ([`super::peer::Peers::links`]).
    pub links: watch::Receiver<PeerLinks>,
}

/// [`spawn`], also keeping `metrics.ready` true while the node is started and not stopping,
/// and, with `peers`, carrying the node's messages to and from its peers.
pub fn spawn_with_metrics(
    node: Node,
    executor: DiskExecutor,
    completions: Completions,
    clock: Clock,
    metrics: Arc<Metrics>,
    peers: Option<PeerLink>,
) -> (NodeHandle, tokio::task::JoinHandle<Node>) {
    let (inbound, receiver) = mpsc::channel(INBOUND_QUEUE_MAX);
    let (version_sender, data_version) = watch::channel(node.data_version());
    let (peer_sender, peer_inbound, links) = match peers {
        Some(link) => (Some(link.sender), Some(link.inbound), Some(link.links)),
        None => (None, None, None),
    };
    let driver = Driver {
        node,
        executor,
        completions,
        inbound: receiver,
        inbound_open: true,
        peers: peer_sender,
        peer_inbound,
        links,
        links_seen: BTreeMap::new(),
        data_version: version_sender,
        clock,
        metrics: Arc::clone(&metrics),
        connections: HashMap::new(),
        disk_ops: Vec::new(),
        peer_batch: Vec::with_capacity(PEER_INBOUND_BATCH_MAX),
        shutting_down: false,
        groups_published: None,
    };
    let task = tokio::spawn(async move {
        let node = driver.run().await;
        metrics.ready.store(false, Ordering::Relaxed);
        node
    });
    (NodeHandle { inbound, data_version }, task)
}

/// The driver task's state: the node and the queues around it.
struct Driver {
    node: Node,
    executor: DiskExecutor,
    completions: Completions,
    inbound: mpsc::Receiver<Inbound>,
    inbound_open: bool,
    peers: Option<PeerSender<Message>>,
    /// `None` without peers, or once the transport dropped its end.
    peer_inbound: Option<mpsc::Receiver<(NodeId, Message)>>,
    /// `None` without peers, or once the transport stopped.
    links: Option<watch::Receiver<PeerLinks>>,
    /// The `changes` count of each peer's link state the node was last told of.
    links_seen: BTreeMap<NodeId, u64>,
    data_version: watch::Sender<u64>,
    clock: Clock,
    metrics: Arc<Metrics>,
    connections: HashMap<ConnId, mpsc::UnboundedSender<(RequestId, Response)>>,
    disk_ops: Vec<(OpId, DiskOp)>,
    peer_batch: Vec<(NodeId, Message)>,
    shutting_down: bool,
    /// When the committed offsets were last copied into the metrics.
    groups_published: Option<tokio::time::Instant>,
}

impl Driver {
    /// Feeds the node until it stops; returns it.
    async fn run(mut self) -> Node {
        loop {
            self.carry_out_outputs();
            let started = self.node.is_started();
            self.metrics.ready.store(started && !self.shutting_down, Ordering::Relaxed);
            self.publish_group_offsets();
            if *self.data_version.borrow() != self.node.data_version() {
                self.data_version.send_replace(self.node.data_version());
            }
            if let Some(error) = self.node.fatal() {
                tracing::error!(%error, "the node cannot serve; it stops");
                return self.node;
            }
            if self.executor.submit(std::mem::take(&mut self.disk_ops)).await.is_err() {
                tracing::error!("the disk executor stopped; the node stops");
                return self.node;
            }
            if self.shutting_down && self.node.is_quiescent() {
                tracing::info!("every partition flushed; the node stopped cleanly");
                return self.node;
            }
            if !self.wait_for_input().await {
                return self.node;
            }
        }
    }

    /// Copies the committed offsets of the groups this node coordinates, with their lag where
    /// it leads the partition, and the high watermarks of the partitions it leads into the
    /// metrics, at most once per
    /// [`super::http::GROUP_METRICS_INTERVAL`] (the HTTP task cannot read the node).
    fn publish_group_offsets(&mut self) {
        let now = tokio::time::Instant::now();
        let interval = super::http::GROUP_METRICS_INTERVAL;
        if self.groups_published.is_some_and(|at| now.duration_since(at) < interval) {
            return;
        }
        self.groups_published = Some(now);
        self.metrics.set_group_offsets(self.node.group_offsets());
        self.metrics.set_high_watermarks(self.node.led_high_watermarks());
    }

    /// Drains the node's outputs: disk ops are gathered for the executor, replies go to
    /// their connections, messages to the peer transport.
    fn carry_out_outputs(&mut self) {
        while let Some(output) = self.node.poll_output() {
            match output {
                Output::Disk { id, op } => self.disk_ops.push((id, op)),
                Output::Reply { conn, id, response } => {
                    if let Some(replies) = self.connections.get(&conn) {
                        // A connection that went away no longer wants its answers.
                        let _ = replies.send((id, response));
                    }
                }
                // A full queue drops the message: every peer protocol retries (peer.rs).
                Output::Send { to, message } => match &self.peers {
                    Some(peers) => {
                        peers.send(to, message);
                    }
                    None => tracing::debug!(?to, "no peers: message dropped"),
                },
            }
        }
    }

    /// Waits for the next input and hands it to the node. Returns false when the node must
    /// stop at once (the executor's completions ended).
    async fn wait_for_input(&mut self) -> bool {
        let deadline = self.node.poll_timeout().map(|at| self.clock.to_tokio(at));
        let peers_open = self.peer_inbound.is_some();
        let links_open = self.links.is_some();
        tokio::select! {
            batch = self.completions.recv() => {
                let Some(batch) = batch else { return false };
                self.handle_completions(batch);
            }
            message = self.inbound.recv(), if self.inbound_open => self.handle_inbound(message),
            received = recv_peers(&mut self.peer_inbound, &mut self.peer_batch), if peers_open => {
                if received == 0 {
                    self.peer_inbound = None;
                }
                let now = self.clock.now();
                for (from, message) in self.peer_batch.drain(..) {
                    self.node.handle_message(now, from, message);
                }
            }
            changed = links_changed(&mut self.links), if links_open => {
                if changed {
                    self.tell_links();
                } else {
                    self.links = None;
                }
            }
            () = sleep_until(deadline.unwrap_or_else(far_future)) => {
                // What already arrived goes in before time is judged: a deadline must not
                // read a busy queue as silence (Raft's CheckQuorum stepping down with its
                // followers' answers waiting here, a fetch timing out with its answer read).
                self.drain_completions();
                self.drain_peer_messages();
                self.node.handle_timeout(self.clock.now());
            }
        }
        true
    }

    /// Tells the node of every peer link whose state changed since it was last told.
    fn tell_links(&mut self) {
        let Some(links) = &mut self.links else { return };
        let changed: Vec<(NodeId, bool, u64)> = (links.borrow_and_update().iter())
            .filter(|(peer, state)| {
                self.links_seen.get(peer).copied().unwrap_or(0) != state.changes
            })
            .map(|(peer, state)| (*peer, state.up, state.changes))
            .collect();
        if changed.iter().any(|(_, up, _)| !up) {
            // Messages a dead peer sent before it died may still wait in the queue: the node
            // takes them first, so that they do not look like news from it after its death.
            self.drain_peer_messages();
        }
        let now = self.clock.now();
        for (peer, up, changes) in changed {
            self.links_seen.insert(peer, changes);
            self.node.handle_peer_link(now, peer, up);
        }
    }

    /// Hands the node every disk completion queued now.
    fn drain_completions(&mut self) {
        while let Ok(batch) = self.completions.try_recv() {
            self.handle_completions(batch);
        }
    }

    /// Hands the node one batch of disk completions, all at the same time.
    fn handle_completions(&mut self, batch: Vec<(OpId, DiskResult)>) {
        let now = self.clock.now();
        for (id, result) in batch {
            self.node.handle_disk(now, id, result);
        }
    }

    /// Hands the node every peer message queued now (at most the queue's bound).
    fn drain_peer_messages(&mut self) {
        let Some(inbound) = &mut self.peer_inbound else { return };
        let now = self.clock.now();
        for _ in 0..PEER_INBOUND_QUEUE_MAX {
            let Ok((from, message)) = inbound.try_recv() else { break };
            self.node.handle_message(now, from, message);
        }
    }

    fn handle_inbound(&mut self, message: Option<Inbound>) {
        match message {
            None => {
                // Every handle is gone: stop as cleanly as when asked to.
                self.inbound_open = false;
                self.shutting_down = true;
                self.node.begin_shutdown();
            }
            Some(Inbound::Connect { conn, replies }) => {
                self.connections.insert(conn, replies);
            }
            Some(Inbound::Disconnect { conn }) => {
                self.connections.remove(&conn);
            }
            Some(Inbound::Request { conn, id, request }) => {
                self.node.handle_request(self.clock.now(), conn, id, request);
            }
            Some(Inbound::Shutdown) => {
                self.shutting_down = true;
                self.node.begin_shutdown();
            }
        }
    }
}

/// Up to [`PEER_INBOUND_BATCH_MAX`] peer messages into `batch`; 0 once the queue closed.
async fn recv_peers(
    inbound: &mut Option<mpsc::Receiver<(NodeId, Message)>>,
    batch: &mut Vec<(NodeId, Message)>,
) -> usize {
    match inbound {
        Some(receiver) => receiver.recv_many(batch, PEER_INBOUND_BATCH_MAX).await,
        None => 0,
    }
}

/// Whether a peer's link state changed; false once the transport stopped.
async fn links_changed(links: &mut Option<watch::Receiver<PeerLinks>>) -> bool {
    match links {
        Some(receiver) => receiver.changed().await.is_ok(),
        None => false,
    }
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + std::time::Duration::from_secs(86_400)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::log::batch::{BatchHeader, build};
    use crate::core::node::{
        Acks, Durability, NodeConfig, OffsetSpec, PartitionId, RequestError, TopicConfig,
    };
    use crate::runtime::datadir::{self, FormatSpec};
    use crate::runtime::disk::FileDisk;

    /// A data directory formatted as `cairn format` does for the default node config (node
    /// 0 of a single-node cluster "cairn-dev"), since a node never formats itself.
    fn formatted_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let spec = FormatSpec {
            cluster_id: Some(NodeConfig::default().cluster.cluster_id),
            ..FormatSpec::single(NodeConfig::default().node_id)
        };
        datadir::format(dir.path(), &spec).unwrap();
        dir
    }

    async fn start(dir: &std::path::Path) -> (NodeHandle, tokio::task::JoinHandle<Node>) {
        let clock = Clock::start();
        let (executor, completions) = DiskExecutor::start(FileDisk::open(dir).unwrap()).unwrap();
        let node = Node::new(NodeConfig::default(), clock.now());
        spawn(node, executor, completions, clock)
    }

    async fn ask(
        handle: &NodeHandle,
        replies: &mut mpsc::UnboundedReceiver<(RequestId, Response)>,
        id: u64,
        request: Request,
    ) -> Response {
        handle.request(ConnId(1), RequestId(id), request).await.unwrap();
        let (answered, response) = replies.recv().await.unwrap();
        assert_eq!(answered, RequestId(id));
        response
    }

    /// Creates a one-partition topic, asking again while the node starts, and waits until
    /// its partition takes writes.
    async fn create_topic(
        handle: &NodeHandle,
        replies: &mut mpsc::UnboundedReceiver<(RequestId, Response)>,
        name: &str,
        config: TopicConfig,
    ) {
        let create = || Request::CreateTopic {
            name: name.into(),
            partitions: 1,
            replication_factor: -1,
            config: config.clone(),
            validate_only: false,
        };
        let mut response = ask(handle, replies, 1, create()).await;
        for _ in 0..1000 {
            if response != Response::Error(RequestError::NodeNotReady) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            response = ask(handle, replies, 1, create()).await;
        }
        assert_eq!(response, Response::TopicChanged);
        let partition = PartitionId::new(name, 0);
        let list = || Request::ListOffsets {
            partition: partition.clone(),
            spec: OffsetSpec::Latest,
            leader_epoch: None,
        };
        for _ in 0..1000 {
            if let Response::Offset { .. } = ask(handle, replies, 1, list()).await {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        panic!("partition {partition} never became ready");
    }

    /// A clean stop flushes what was only appended (acks=0 under durability replicate).
    #[tokio::test]
    async fn a_clean_stop_flushes_everything() {
        let dir = formatted_dir();
        let partition = PartitionId::new("quiet", 0);
        let (handle, task) = start(dir.path()).await;
        let mut replies = handle.connect(ConnId(1)).await.unwrap();
        let config = TopicConfig { durability: Durability::Replicate, ..Default::default() };
        create_topic(&handle, &mut replies, "quiet", config).await;
        for i in 0..50 {
            let batch = build::batch(&[b"fire and forget"], i);
            let request =
                Request::Produce { partition: partition.clone(), acks: Acks::None, batch };
            handle.request(ConnId(1), RequestId(2), request).await.unwrap();
        }
        handle.shutdown().await;
        let node = task.await.unwrap();
        let log = node.partition(&partition).unwrap();
        assert_eq!(log.log_end_offset(), 50);
        assert_eq!(log.flushed_offset(), 50, "a clean stop leaves nothing unflushed");
    }

    /// Produce with acks=all under durability fsync, read back, restart, read back again: the
    /// whole path over real files and the executor, without the network.
    #[tokio::test]
    async fn produce_fetch_and_restart_over_real_files() {
        let dir = formatted_dir();
        let partition = PartitionId::new("events", 0);
        let (handle, task) = start(dir.path()).await;
        let mut replies = handle.connect(ConnId(1)).await.unwrap();
        let config = TopicConfig { durability: Durability::Fsync, ..Default::default() };
        create_topic(&handle, &mut replies, "events", config).await;
        for i in 0..10u64 {
            let batch = build::batch(&[format!("value-{i}").as_bytes()], 1_000 + i as i64);
            let produce = Request::Produce { partition: partition.clone(), acks: Acks::All, batch };
            let response = ask(&handle, &mut replies, 2 + i, produce).await;
            assert_eq!(response, Response::Produced { base_offset: i });
        }
        let fetch = || Request::Fetch {
            partition: partition.clone(),
            offset: 3,
            max_bytes: 1 << 20,
            leader_epoch: None,
        };
        let Response::Fetched { records, high_watermark, .. } =
            ask(&handle, &mut replies, 20, fetch()).await
        else {
            panic!("a fetch answers with records")
        };
        assert_eq!(high_watermark, 10);
        assert_eq!(BatchHeader::parse(&records).unwrap().base_offset, 3);
        assert_eq!(build::values(&records), vec![bytes::Bytes::from_static(b"value-3")]);
        drop((handle, replies));
        task.await.unwrap();

        let (handle, _task) = start(dir.path()).await;
        let mut replies = handle.connect(ConnId(1)).await.unwrap();
        // The restarted node recovers the partition before it answers for it, and its high
        // watermark reaches the log end once recovery's own syncs completed.
        let mut response = ask(&handle, &mut replies, 30, fetch()).await;
        for _ in 0..2000 {
            match response {
                Response::Fetched { high_watermark: 10, .. } => break,
                Response::Error(_) | Response::Fetched { .. } => {}
                ref other => panic!("a fetch answered {other:?}"),
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            response = ask(&handle, &mut replies, 31, fetch()).await;
        }
        let Response::Fetched { records, high_watermark, .. } = response else { panic!() };
        assert_eq!(high_watermark, 10, "every acknowledged write survived the restart");
        assert_eq!(build::values(&records), vec![bytes::Bytes::from_static(b"value-3")]);
    }

    /// A topic, its settings and its data come back after a restart over the same files.
    #[tokio::test]
    async fn topics_and_their_settings_survive_a_restart() {
        let dir = formatted_dir();
        let (handle, task) = start(dir.path()).await;
        let mut replies = handle.connect(ConnId(1)).await.unwrap();
        let mut config = TopicConfig::default();
        config.set("retention.ms", "86400000").unwrap();
        config.set("durability", "replicate").unwrap();
        create_topic(&handle, &mut replies, "kept", config.clone()).await;
        let grow =
            Request::CreatePartitions { name: "kept".into(), count: 3, validate_only: false };
        assert_eq!(ask(&handle, &mut replies, 2, grow).await, Response::TopicChanged);
        let batch = build::batch(&[b"still here"], 1_000);
        let partition = PartitionId::new("kept", 0);
        let produce = Request::Produce { partition: partition.clone(), acks: Acks::All, batch };
        assert_eq!(
            ask(&handle, &mut replies, 3, produce).await,
            Response::Produced { base_offset: 0 }
        );
        handle.shutdown().await;
        drop((handle, replies));
        task.await.unwrap();

        let (handle, _task) = start(dir.path()).await;
        let mut replies = handle.connect(ConnId(1)).await.unwrap();
        let describe = || Request::Metadata { topics: None, auto_create: false };
        // The restarted node knows its topics once Raft has replayed the metadata log.
        let mut topics = Vec::new();
        for _ in 0..2000 {
            if let Response::Metadata(view) = ask(&handle, &mut replies, 4, describe()).await {
                topics = view.topics;
            }
            if !topics.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        let [topic] = topics.as_slice() else { panic!("one topic: {topics:?}") };
        assert_eq!(&*topic.name, "kept");
        let state = topic.state.as_ref().unwrap();
        assert_eq!((state.partitions.len(), &state.config), (3, &config));
        let latest =
            Request::ListOffsets { partition, spec: OffsetSpec::Latest, leader_epoch: None };
        let mut response = ask(&handle, &mut replies, 5, latest.clone()).await;
        for _ in 0..2000 {
            if matches!(response, Response::Offset { offset: 1, .. }) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            response = ask(&handle, &mut replies, 5, latest.clone()).await;
        }
        assert!(
            matches!(response, Response::Offset { offset: 1, timestamp: -1, .. }),
            "{response:?}"
        );
    }
}
