//! Node-to-node transport: length-framed prost messages over TCP (design §7).
//!
//! Every node listens on its peer address. For each other node it keeps one outgoing
//! connection, owned by a task that connects, introduces itself with a [`PeerHello`]
//! (cluster id and node id), and writes the messages queued for that peer, several per
//! write call. On any error the task drops the connection and connects again after an
//! exponential backoff ([`BACKOFF_MIN`] to [`BACKOFF_MAX`]). Each incoming connection is
//! read by a task of its own: the hello must name this cluster and a known peer, then every
//! frame is decoded and handed to the node with the sender's id.
//!
//! Messages are one-way. An answer travels on the answerer's own outgoing connection, so
//! each ordered pair of nodes has one connection and one order.
//!
//! Link state ([`Peers::links`], decision 0011): the outgoing task says a peer is *down*
//! when connecting to it failed, and *up* when a connection to it is open again. A broken
//! connection alone says nothing: the task connects again at once (without a backoff if the
//! connection had lived [`BACKOFF_MAX`] or more), and only a refusal, which is what a
//! killed process's host answers, reports the peer down. So a reconnect is never a death,
//! and a dead process is known within a millisecond.
//! A peer whose host is gone or cut off answers nothing: no signal, the lease decides.
//!
//! Delivery is best effort, as the simulator's network is: a message queued behind a
//! broken connection, offered to a full queue ([`PEER_QUEUE_MAX`]), or received while the
//! node's inbound queue is full, may be lost and is counted. A full inbound queue drops
//! rather than stops reading, so one busy node never holds a peer's connection still. Every peer protocol of the core retries on its own timers and tells stale or
//! duplicate answers apart by term, epoch or correlation id, so no message needs to arrive.
//!
//! A frame is a 4-byte big-endian length, then that many bytes of prost encoding. A frame
//! longer than [`PEER_FRAME_BYTES_MAX`], a hello from another cluster or an unknown node,
//! or bytes that do not decode close that one connection and count in `rejected`.

use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::os::{Os, OsListener, OsStream, Tokio};
use crate::core::io::NodeId;

/// Messages waiting for one peer's connection before new ones are dropped.
pub const PEER_QUEUE_MAX: usize = 4096;
/// The largest frame a node accepts from a peer (a replica fetch answer with its records).
pub const PEER_FRAME_BYTES_MAX: usize = 128 << 20;
/// Messages encoded into one write call at most.
pub const PEER_WRITE_BATCH_MAX: usize = 64;
/// The first wait before connecting again after a failure.
pub const BACKOFF_MIN: Duration = Duration::from_millis(20);
/// The longest wait between connection attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Bytes asked of the socket per read.
const READ_CHUNK_BYTES: usize = 64 << 10;
/// The version of this framing; a peer speaking another is refused.
const PROTOCOL_VERSION: u32 = 1;

const _: () = assert!(PEER_FRAME_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(PEER_WRITE_BATCH_MAX <= PEER_QUEUE_MAX);

/// What the transport last saw of the connection to one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkState {
    /// Whether the last attempt to connect succeeded (true until one failed).
    pub up: bool,
    /// How many times `up` changed: tells a down, up, down from one down.
    pub changes: u64,
}

/// Every peer's [`LinkState`], by id.
pub type PeerLinks = BTreeMap<NodeId, LinkState>;

/// The first frame on every peer connection.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PeerHello {
    /// The cluster the sender belongs to.
    #[prost(string, tag = "1")]
    pub cluster_id: String,
    /// The sender's node id.
    #[prost(uint32, tag = "2")]
    pub node_id: u32,
    /// The framing version the sender speaks.
    #[prost(uint32, tag = "3")]
    pub version: u32,
}

/// Who this node is and where its peers listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// This node's id.
    pub node_id: NodeId,
    /// The cluster's id: connections from another cluster are refused.
    pub cluster_id: String,
    /// Every other node's peer address (`host:port`), by id.
    pub peers: BTreeMap<NodeId, String>,
}

/// What the transport did, for the metrics.
#[derive(Debug, Default)]
pub struct PeerStats {
    /// Messages written to a socket.
    pub sent: AtomicU64,
    /// Messages dropped: the peer's queue was full, or its connection broke.
    pub dropped: AtomicU64,
    /// Messages received and handed to the node.
    pub received: AtomicU64,
    /// Messages received but dropped: the node's inbound queue was full.
    pub received_dropped: AtomicU64,
    /// Incoming connections closed on a bad hello or frame.
    pub rejected: AtomicU64,
    /// Outgoing connections made.
    pub connects: AtomicU64,
    /// Outgoing connections up now (hello written, not yet broken).
    pub connected: AtomicU64,
}

impl PeerStats {
    /// Appends the stats to `out` in Prometheus' text exposition format.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let counters = [
            ("cairn_peer_messages_sent_total", "Peer messages written to a socket.", &self.sent),
            (
                "cairn_peer_messages_dropped_total",
                "Peer messages dropped before sending: queue full or connection broken.",
                &self.dropped,
            ),
            ("cairn_peer_messages_received_total", "Peer messages received.", &self.received),
            (
                "cairn_peer_messages_received_dropped_total",
                "Peer messages received and dropped: the node's queue was full.",
                &self.received_dropped,
            ),
            (
                "cairn_peer_connections_rejected_total",
                "Incoming peer connections closed on a bad hello or frame.",
                &self.rejected,
            ),
            ("cairn_peer_connects_total", "Outgoing peer connections made.", &self.connects),
        ];
        for (name, help, value) in counters {
            let value = value.load(Ordering::Relaxed);
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n");
        }
        let connected = self.connected.load(Ordering::Relaxed);
        let _ = write!(
            out,
            "# HELP cairn_peers_connected Outgoing peer connections up.\n\
             # TYPE cairn_peers_connected gauge\ncairn_peers_connected {connected}\n"
        );
    }
}

/// Queues messages for peers. Cheap to clone: the driver sends through one while the
/// [`Peers`] value that owns the tasks stays with whoever stops them.
#[derive(Debug)]
pub struct PeerSender<M> {
    queues: Arc<BTreeMap<NodeId, mpsc::Sender<M>>>,
    stats: Arc<PeerStats>,
}

impl<M> Clone for PeerSender<M> {
    fn clone(&self) -> Self {
        PeerSender { queues: Arc::clone(&self.queues), stats: Arc::clone(&self.stats) }
    }
}

impl<M> PeerSender<M> {
    /// Queues `message` for peer `to`. Returns whether it was queued: not when `to` is not a
    /// peer or its queue is full (then it is counted as dropped).
    pub fn send(&self, to: NodeId, message: M) -> bool {
        let Some(queue) = self.queues.get(&to) else {
            tracing::warn!(to = to.0, "a message for a node that is not a peer");
            return false;
        };
        let queued = queue.try_send(message).is_ok();
        if !queued {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
        queued
    }

    /// What the transport did so far.
    pub fn stats(&self) -> &Arc<PeerStats> {
        &self.stats
    }
}

/// The transport of one node. Dropping it does not stop its tasks: send `true` on the
/// stop channel given to [`Peers::start`], then await [`Peers::stopped`].
#[derive(Debug)]
pub struct Peers<M> {
    sender: PeerSender<M>,
    links: watch::Receiver<PeerLinks>,
    tasks: JoinSet<()>,
    _message: PhantomData<fn(M)>,
}

impl<M> Peers<M>
where
    M: prost::Message + Default + Send + 'static,
{
    /// Starts accepting peers on `listener` and connecting to every peer of `config`.
    /// Received messages go to `inbound` with their sender's id; the transport stops when
    /// `stop` turns true.
    pub fn start(
        config: PeerConfig,
        listener: tokio::net::TcpListener,
        inbound: mpsc::Sender<(NodeId, M)>,
        stop: watch::Receiver<bool>,
    ) -> Peers<M> {
        Peers::start_on::<Tokio>(config, listener, inbound, stop)
    }

    /// [`Peers::start`] on the sockets of `O`.
    pub fn start_on<O: Os>(
        config: PeerConfig,
        listener: O::Listener,
        inbound: mpsc::Sender<(NodeId, M)>,
        stop: watch::Receiver<bool>,
    ) -> Peers<M> {
        assert!(!config.peers.contains_key(&config.node_id), "a node is not its own peer");
        let stats = Arc::new(PeerStats::default());
        let hello = encode_frame(&PeerHello {
            cluster_id: config.cluster_id.clone(),
            node_id: config.node_id.0,
            version: PROTOCOL_VERSION,
        });
        let mut tasks = JoinSet::new();
        let mut queues = BTreeMap::new();
        let initial = config.peers.keys().map(|&to| (to, LinkState { up: true, changes: 0 }));
        let (links, links_receiver) = watch::channel(initial.collect::<PeerLinks>());
        let links = Arc::new(links);
        for (&to, address) in &config.peers {
            let (sender, receiver) = mpsc::channel(PEER_QUEUE_MAX);
            queues.insert(to, sender);
            let outbound = Outbound::<M, O> {
                to,
                address: address.clone(),
                hello: hello.clone(),
                queue: receiver,
                stats: Arc::clone(&stats),
                links: Arc::clone(&links),
                stop: stop.clone(),
                _os: PhantomData,
            };
            tasks.spawn(outbound.run());
        }
        let known: BTreeSet<NodeId> = config.peers.keys().copied().collect();
        let accept = Accept::<M, O::Listener> {
            listener,
            cluster_id: config.cluster_id,
            known,
            inbound,
            stats: Arc::clone(&stats),
            stop,
        };
        tasks.spawn(accept.run());
        let sender = PeerSender { queues: Arc::new(queues), stats };
        Peers { sender, links: links_receiver, tasks, _message: PhantomData }
    }

    /// Queues `message` for peer `to`; see [`PeerSender::send`].
    pub fn send(&self, to: NodeId, message: M) -> bool {
        self.sender.send(to, message)
    }

    /// A handle that queues messages for the peers, for the task that produces them.
    pub fn sender(&self) -> PeerSender<M> {
        self.sender.clone()
    }

    /// What the transport did so far.
    pub fn stats(&self) -> &Arc<PeerStats> {
        &self.sender.stats
    }

    /// Every peer's link state, changing as connections fail and open (module docs).
    pub fn links(&self) -> watch::Receiver<PeerLinks> {
        self.links.clone()
    }

    /// Waits until every task ended (after the stop signal).
    pub async fn stopped(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// A frame: the length, then the message.
fn encode_frame(message: &impl prost::Message) -> Bytes {
    let mut buf = BytesMut::with_capacity(4 + message.encoded_len());
    put_frame(&mut buf, message);
    buf.freeze()
}

fn put_frame(buf: &mut BytesMut, message: &impl prost::Message) {
    let len = message.encoded_len();
    assert!(len <= PEER_FRAME_BYTES_MAX, "a peer message of {len} bytes is over the frame bound");
    buf.reserve(4 + len);
    buf.put_u32(len as u32);
    message.encode(buf).expect("reserved enough");
}

/// The task that owns the connection to one peer.
struct Outbound<M, O> {
    to: NodeId,
    address: String,
    hello: Bytes,
    queue: mpsc::Receiver<M>,
    stats: Arc<PeerStats>,
    links: Arc<watch::Sender<PeerLinks>>,
    stop: watch::Receiver<bool>,
    _os: PhantomData<fn(O)>,
}

/// How a connection's writing ended.
enum WriteEnd {
    Stopped,
    Failed(std::io::Error),
}

impl<M: prost::Message + Send + 'static, O: Os> Outbound<M, O> {
    async fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        loop {
            let connected = tokio::select! {
                result = O::connect(self.address.as_str()) => result,
                _ = self.stop.changed() => return,
            };
            match connected {
                Ok(stream) => {
                    self.stats.connects.fetch_add(1, Ordering::Relaxed);
                    let opened = tokio::time::Instant::now();
                    match self.write(stream, &mut backoff).await {
                        WriteEnd::Stopped => return,
                        WriteEnd::Failed(error) => {
                            tracing::debug!(to = self.to.0, %error, "peer connection lost")
                        }
                    }
                    // A connection that lived a while is tried again at once, so that a
                    // killed peer is known within a millisecond (module docs); one that
                    // breaks as soon as it opens backs off, so nothing spins.
                    if opened.elapsed() >= BACKOFF_MAX {
                        continue;
                    }
                }
                Err(error) => {
                    tracing::debug!(to = self.to.0, address = %self.address, %error, "cannot connect");
                    self.report(false);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.stop.changed() => return,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Publishes whether the peer's link is up, if that changed.
    fn report(&self, up: bool) {
        let to = self.to;
        self.links.send_if_modified(|links| {
            let state = links.get_mut(&to).expect("every peer has a link state");
            if state.up == up {
                return false;
            }
            tracing::info!(peer = to.0, up, "peer link changed");
            state.up = up;
            state.changes += 1;
            true
        });
    }

    /// Says hello, then writes queued messages until the socket fails or the node stops.
    async fn write(&mut self, stream: O::Stream, backoff: &mut Duration) -> WriteEnd {
        // Raft heartbeats and fetch answers are small and latency-bound.
        let _ = stream.set_nodelay();
        let (mut reader, mut stream) = stream.into_split();
        if let Err(error) = stream.write_all(&self.hello).await {
            return WriteEnd::Failed(error);
        }
        *backoff = BACKOFF_MIN;
        self.report(true);
        let _up = ConnectionUp::new(Arc::clone(&self.stats));
        let mut batch = Vec::with_capacity(PEER_WRITE_BATCH_MAX);
        let mut buf = BytesMut::new();
        loop {
            let received = tokio::select! {
                received = self.queue.recv_many(&mut batch, PEER_WRITE_BATCH_MAX) => received,
                error = closed(&mut reader) => return WriteEnd::Failed(error),
                _ = self.stop.changed() => return WriteEnd::Stopped,
            };
            if received == 0 {
                return WriteEnd::Stopped;
            }
            for message in batch.drain(..) {
                put_frame(&mut buf, &message);
            }
            if let Err(error) = stream.write_all(&buf).await {
                self.stats.dropped.fetch_add(received as u64, Ordering::Relaxed);
                return WriteEnd::Failed(error);
            }
            buf.clear();
            self.stats.sent.fetch_add(received as u64, Ordering::Relaxed);
        }
    }
}

/// Completes when the peer closed `stream` or it failed. The peer never writes on a
/// connection it accepted (messages are one-way), so readable means closed: noticing it
/// while idle reconnects before the next message instead of losing it to a dead socket.
/// (A read is cancel safe: the select that polls this loses no byte it cares about.)
async fn closed(reader: &mut (impl AsyncRead + Unpin)) -> std::io::Error {
    let mut buf = [0u8; 64];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) => return std::io::ErrorKind::UnexpectedEof.into(),
            // Bytes from a peer that should send none: ignored, as the reader would.
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return error,
        }
    }
}

/// Counts an outgoing connection in `connected` while it lives.
struct ConnectionUp(Arc<PeerStats>);

impl ConnectionUp {
    fn new(stats: Arc<PeerStats>) -> ConnectionUp {
        stats.connected.fetch_add(1, Ordering::Relaxed);
        ConnectionUp(stats)
    }
}

impl Drop for ConnectionUp {
    fn drop(&mut self) {
        self.0.connected.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The task that accepts peers' connections.
struct Accept<M, L> {
    listener: L,
    cluster_id: String,
    known: BTreeSet<NodeId>,
    inbound: mpsc::Sender<(NodeId, M)>,
    stats: Arc<PeerStats>,
    stop: watch::Receiver<bool>,
}

impl<M: prost::Message + Default + Send + 'static, L: OsListener> Accept<M, L> {
    async fn run(mut self) {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, address)) => {
                        let _ = stream.set_nodelay();
                        // The writing half is kept, unused, while the connection is read:
                        // dropping it would close this direction, which the peer takes for
                        // a lost connection (`closed`).
                        let (stream, writer) = stream.into_split();
                        let inbound = Inbound::<M, L::Stream> {
                            stream,
                            _writer: writer,
                            buf: BytesMut::new(),
                            cluster_id: self.cluster_id.clone(),
                            known: self.known.clone(),
                            sink: self.inbound.clone(),
                            stats: Arc::clone(&self.stats),
                        };
                        connections.spawn(async move {
                            if let Err(reason) = inbound.run().await {
                                tracing::warn!(%address, %reason, "closed a peer connection");
                            }
                        });
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot accept a peer connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                _ = self.stop.changed() => break,
            }
        }
        connections.shutdown().await;
    }
}

/// Reads one incoming peer connection.
struct Inbound<M, S: OsStream> {
    stream: S::Reader,
    _writer: S::Writer,
    buf: BytesMut,
    cluster_id: String,
    known: BTreeSet<NodeId>,
    sink: mpsc::Sender<(NodeId, M)>,
    stats: Arc<PeerStats>,
}

/// Why an incoming connection closed early.
#[derive(Debug, thiserror::Error)]
enum InboundError {
    #[error("{0}")]
    Rejected(String),
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
}

impl<M: prost::Message + Default, S: OsStream> Inbound<M, S> {
    async fn run(mut self) -> Result<(), InboundError> {
        let result = self.serve().await;
        if let Err(InboundError::Rejected(_)) = &result {
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn serve(&mut self) -> Result<(), InboundError> {
        let Some(frame) = self.next_frame().await? else { return Ok(()) };
        let from = self.check_hello(frame)?;
        while let Some(frame) = self.next_frame().await? {
            let message = M::decode(frame).map_err(|error| {
                InboundError::Rejected(format!("node {} sent a bad message: {error}", from.0))
            })?;
            self.stats.received.fetch_add(1, Ordering::Relaxed);
            match self.sink.try_send((from, message)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // Every protocol retries on its own timers (module docs).
                    self.stats.received_dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return Ok(()), // The node stopped.
            }
        }
        Ok(())
    }

    fn check_hello(&self, frame: Bytes) -> Result<NodeId, InboundError> {
        let hello = <PeerHello as prost::Message>::decode(frame)
            .map_err(|error| InboundError::Rejected(format!("a bad hello: {error}")))?;
        if hello.version != PROTOCOL_VERSION {
            let version = hello.version;
            return Err(InboundError::Rejected(format!("peer protocol version {version}")));
        }
        if hello.cluster_id != self.cluster_id {
            return Err(InboundError::Rejected(format!(
                "node {} belongs to cluster {:?}, this node to {:?}: check cluster ids",
                hello.node_id, hello.cluster_id, self.cluster_id
            )));
        }
        let from = NodeId(hello.node_id);
        if !self.known.contains(&from) {
            return Err(InboundError::Rejected(format!(
                "node {} is not in this node's peer list",
                hello.node_id
            )));
        }
        Ok(from)
    }

    /// The next whole frame, or `None` at a clean end of stream between frames.
    async fn next_frame(&mut self) -> Result<Option<Bytes>, InboundError> {
        loop {
            if self.buf.len() >= 4 {
                let len = (&self.buf[..4]).get_u32() as usize;
                if len > PEER_FRAME_BYTES_MAX {
                    return Err(InboundError::Rejected(format!("a frame of {len} bytes")));
                }
                if self.buf.len() >= 4 + len {
                    self.buf.advance(4);
                    return Ok(Some(self.buf.split_to(len).freeze()));
                }
                self.buf.reserve(4 + len - self.buf.len());
            } else {
                self.buf.reserve(READ_CHUNK_BYTES);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(InboundError::Rejected("the stream ended inside a frame".into()));
            }
        }
    }
}

#[cfg(test)]
mod tests;
