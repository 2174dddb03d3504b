//! The Kafka listener: accepts client connections and serves each one on its own task.
//!
//! Per connection, requests are read, framed ([`FrameDecoder`]) and decoded
//! ([`decode_request`]) as they arrive and served concurrently ([`Exchange`]), up to
//! [`CONNECTION_REQUESTS_MAX`] at a time; the answers are written strictly in request order,
//! as Kafka requires, several per write call. At the bound, or with
//! [`CONNECTION_OUTPUT_BYTES_MAX`] of answers unwritten, the connection stops reading: TCP
//! pushes back on the client. An acks 0 produce gets no answer. A request for an API or
//! version Cairn does not serve gets [`encode_unsupported`]. A frame that is oversized,
//! negative or does not decode closes that connection alone and counts in
//! `frames_rejected`.
//!
//! Produce batches stay in the buffer the socket filled: while a frame is incomplete the
//! connection reads no further than its end, so a large frame is the sole owner of its
//! buffer and `decode_request` hands its batches to the core without a copy. Fetched records
//! are not copied either: an answer is a list of chunks ([`encode_response_chunks`]), a
//! Fetch answer's records are the `Bytes` the log read, and the chunks of every waiting
//! answer go to the socket by `writev`.

use std::collections::{HashMap, VecDeque};
use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::driver::{NodeHandle, NodeStopped};
use super::http::Metrics;
use super::os::{OsListener, OsStream};
use crate::core::io::{ConnId, RequestId};
use crate::core::node::Response;
use crate::kafka::request::RequestHeader;
use crate::kafka::{
    Broker, Decoded, Exchange, FrameDecoder, Step, decode_request, encode_response_chunks,
    encode_unsupported,
};

/// Requests one connection may have read and not yet answered.
pub const CONNECTION_REQUESTS_MAX: usize = 1024;
/// Answer bytes one connection may have waiting for the socket before it stops reading.
pub const CONNECTION_OUTPUT_BYTES_MAX: usize = 64 << 20;
/// Bytes asked of the socket per read between frames.
pub const READ_CHUNK_BYTES: usize = 64 << 10;
/// Answer chunks written per system call at most (well under Linux's `IOV_MAX` of 1024). A
/// Fetch answer is two chunks per partition with records, plus one.
pub const WRITE_SLICES_MAX: usize = 64;

const _: () = assert!(WRITE_SLICES_MAX <= 1024, "a writev takes at most IOV_MAX slices");
const _: () = assert!(CONNECTION_REQUESTS_MAX > 0);

/// What every connection shares.
#[derive(Debug)]
pub struct ListenerContext {
    /// The way to the node.
    pub node: NodeHandle,
    /// What the node says about itself.
    pub broker: Broker,
    /// The frame bound.
    pub decoder: FrameDecoder,
    /// Where counts go.
    pub metrics: Arc<Metrics>,
}

/// Accepts connections on `listener` until `stop` turns true, then closes every connection
/// (answers still owed are dropped; clients retry).
pub async fn serve<L: OsListener>(
    listener: L,
    context: Arc<ListenerContext>,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    let mut next_conn = 0u64;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    next_conn += 1;
                    let context = Arc::clone(&context);
                    connections.spawn(serve_connection(stream, peer, ConnId(next_conn), context));
                }
                Err(error) => {
                    // Out of descriptors, most likely: back off instead of spinning.
                    tracing::warn!(%error, "cannot accept a Kafka connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
    }
    connections.shutdown().await;
}

/// Counts a connection as open while it lives, even if its task is aborted.
struct OpenGuard(Arc<Metrics>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve_connection<S: OsStream>(
    stream: S,
    peer: SocketAddr,
    conn: ConnId,
    context: Arc<ListenerContext>,
) {
    context.metrics.connections_open.fetch_add(1, Ordering::Relaxed);
    let _open = OpenGuard(Arc::clone(&context.metrics));
    // Answers are written as soon as they are ready; Nagle would hold small ones back.
    let _ = stream.set_nodelay();
    let Ok(replies) = context.node.connect(conn).await else { return };
    // The socket halves outlive `run`, so a rejection is counted before the client sees
    // the connection close.
    let (mut reader, mut writer) = stream.into_split();
    let data = context.node.data_version();
    let mut connection = Connection::new(conn, peer, Arc::clone(&context));
    match connection.run(&mut reader, &mut writer, replies, data).await {
        Ok(()) => tracing::debug!(%peer, "connection closed"),
        Err(Close::Rejected(reason)) => {
            context.metrics.frames_rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer, %reason, "rejected a frame; closing the connection");
        }
        Err(Close::Io(error)) => tracing::debug!(%peer, %error, "connection failed"),
        Err(Close::NodeStopped) => tracing::debug!(%peer, "the node stopped"),
        Err(Close::Encode(error)) => tracing::error!(%peer, %error, "cannot encode an answer"),
    }
    context.node.disconnect(conn).await;
}

/// Why a connection ends early.
#[derive(Debug)]
enum Close {
    /// The client sent a frame that cannot be served.
    Rejected(String),
    /// The socket failed.
    Io(std::io::Error),
    /// The node's driver is gone.
    NodeStopped,
    /// An answer could not be encoded (a bug).
    Encode(crate::kafka::EncodeError),
}

impl From<NodeStopped> for Close {
    fn from(_: NodeStopped) -> Close {
        Close::NodeStopped
    }
}

/// One request of a connection, from when it is read until its answer is written.
#[derive(Debug)]
enum Slot {
    /// Being served.
    Serving {
        header: RequestHeader,
        exchange: Box<Exchange>,
        /// The node's data version when the exchange's last round was sent.
        version_sent: u64,
        /// Set while a fetch waits for data.
        deadline: Option<Instant>,
    },
    /// Served: the answer's chunks, in order (none for an acks 0 produce).
    Done(Vec<Bytes>),
}

/// A connection's serving state; the socket halves and queues live in [`Connection::run`].
struct Connection {
    conn: ConnId,
    peer: SocketAddr,
    context: Arc<ListenerContext>,
    read_buf: BytesMut,
    /// Requests in arrival order; `slots[0]` has sequence number `first_seq`.
    slots: VecDeque<Slot>,
    first_seq: u64,
    /// Where each core answer goes: the request's sequence number and the index in its round.
    routes: HashMap<RequestId, (u64, usize)>,
    next_request: u64,
    /// The node's data version as last seen.
    data_version: u64,
    /// A round sent for one request saw a newer data version: the fetches waiting on an
    /// older one must be woken here, since `changed()` does not report a version once seen.
    wake_stale: bool,
    /// Chunks of encoded answers, in order, waiting for the socket.
    output: VecDeque<Bytes>,
    output_bytes: usize,
    /// The client sent its last byte.
    eof: bool,
}

impl Connection {
    fn new(conn: ConnId, peer: SocketAddr, context: Arc<ListenerContext>) -> Connection {
        Connection {
            conn,
            peer,
            context,
            read_buf: BytesMut::new(),
            slots: VecDeque::new(),
            first_seq: 0,
            routes: HashMap::new(),
            next_request: 0,
            data_version: 0,
            wake_stale: false,
            output: VecDeque::new(),
            output_bytes: 0,
            eof: false,
        }
    }

    async fn run(
        &mut self,
        reader: &mut (impl AsyncRead + Unpin),
        writer: &mut (impl AsyncWrite + Unpin),
        mut replies: mpsc::UnboundedReceiver<(RequestId, Response)>,
        mut data: watch::Receiver<u64>,
    ) -> Result<(), Close> {
        self.data_version = *data.borrow_and_update();
        loop {
            self.serve_buffered(&mut data).await?;
            // Bounded: each pass wakes only fetches behind the version, which only grows.
            while std::mem::take(&mut self.wake_stale) {
                let current = self.data_version;
                self.wake(&mut data, |version_sent, _| version_sent != current).await?;
            }
            self.collect_answers();
            self.invariants();
            if self.eof && self.slots.is_empty() && self.output.is_empty() {
                return Ok(());
            }
            let reading = !self.eof
                && self.slots.len() < CONNECTION_REQUESTS_MAX
                && self.output_bytes < CONNECTION_OUTPUT_BYTES_MAX;
            let read_limit = self.read_limit();
            let deadline = self.next_deadline();
            let waiting = deadline.is_some();
            let sleep_until = deadline.map(tokio::time::Instant::from_std);
            let mut read_into = (&mut self.read_buf).limit(read_limit);
            tokio::select! {
                read = reader.read_buf(&mut read_into), if reading => {
                    if read.map_err(Close::Io)? == 0 {
                        self.eof = true;
                        if !self.read_buf.is_empty() {
                            tracing::debug!(peer = %self.peer, "the client closed mid-request");
                            return Ok(());
                        }
                    }
                }
                reply = replies.recv() => {
                    let Some((id, response)) = reply else { return Err(Close::NodeStopped) };
                    self.handle_reply(id, response, &mut data).await?;
                }
                written = write_some(writer, &self.output), if !self.output.is_empty() => {
                    self.consume(written.map_err(Close::Io)?);
                }
                changed = data.changed(), if waiting => {
                    changed.map_err(|_| Close::NodeStopped)?;
                    let current = *data.borrow_and_update();
                    self.data_version = current;
                    self.wake(&mut data, |version_sent, _| version_sent != current).await?;
                }
                () = sleep(sleep_until), if waiting => {
                    let now = now();
                    self.wake(&mut data, |_, deadline| deadline <= now).await?;
                }
            }
        }
    }

    /// How much to read next: the rest of an incomplete frame whose size is known (so the
    /// frame ends up alone in its buffer), otherwise a chunk.
    fn read_limit(&mut self) -> usize {
        let decoder = self.context.decoder;
        let limit = match decoder.bytes_missing(&self.read_buf) {
            Ok(missing) if self.read_buf.len() >= 4 && missing > 0 => missing,
            _ => READ_CHUNK_BYTES,
        };
        self.read_buf.reserve(limit);
        limit
    }

    /// Takes complete frames off the read buffer and starts serving them, while there is
    /// room in flight.
    async fn serve_buffered(&mut self, data: &mut watch::Receiver<u64>) -> Result<(), Close> {
        while self.slots.len() < CONNECTION_REQUESTS_MAX {
            let frame = match self.context.decoder.decode(&mut self.read_buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(()),
                Err(error) => return Err(Close::Rejected(error.to_string())),
            };
            match decode_request(frame) {
                Ok(Decoded::Request { header, body }) => {
                    let (exchange, step) =
                        Exchange::start(&self.context.broker, &header, body, now());
                    let slot = Slot::Serving {
                        header,
                        exchange: Box::new(exchange),
                        version_sent: self.data_version,
                        deadline: None,
                    };
                    self.slots.push_back(slot);
                    let seq = self.first_seq + self.slots.len() as u64 - 1;
                    self.apply(seq, step, data).await?;
                }
                Ok(Decoded::Unsupported(unsupported)) => {
                    let answer = encode_unsupported(&unsupported).freeze();
                    self.slots.push_back(Slot::Done(vec![answer]));
                    self.context.metrics.requests.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => return Err(Close::Rejected(error.to_string())),
            }
        }
        Ok(())
    }

    /// Carries out `step` of request `seq`.
    async fn apply(
        &mut self,
        seq: u64,
        mut step: Step,
        data: &mut watch::Receiver<u64>,
    ) -> Result<(), Close> {
        // Bounded: a wake answers with Ask or Respond, never with another Wait.
        for _ in 0..3 {
            match step {
                Step::Ask(requests) => return self.send(seq, requests, true, data).await,
                Step::Tell(requests) => {
                    self.send(seq, requests, false, data).await?;
                    self.finish(seq, Vec::new());
                    return Ok(());
                }
                Step::Respond(response) => {
                    let header = match self.slot(seq) {
                        Slot::Serving { header, .. } => header,
                        Slot::Done(_) => unreachable!("a finished request responds"),
                    };
                    let answer =
                        encode_response_chunks(header, &response).map_err(Close::Encode)?;
                    self.finish(seq, answer);
                    return Ok(());
                }
                Step::Wait { deadline } => {
                    let current = self.data_version;
                    let context = Arc::clone(&self.context);
                    let Slot::Serving { version_sent, deadline: waiting, exchange, .. } =
                        self.slot_mut(seq)
                    else {
                        unreachable!("a finished request waits")
                    };
                    if *version_sent == current {
                        *waiting = Some(deadline);
                        return Ok(());
                    }
                    // The data changed while the round was out: read again at once.
                    step = exchange.handle_wake(&context.broker, now());
                }
            }
        }
        unreachable!("a request woke twice in a row")
    }

    /// Sends the core requests of request `seq`'s round, routing their answers back to it
    /// when `answered`.
    async fn send(
        &mut self,
        seq: u64,
        requests: Vec<crate::core::node::Request>,
        answered: bool,
        data: &mut watch::Receiver<u64>,
    ) -> Result<(), Close> {
        // Note the data version before the requests go out, so a change made after the
        // node read its data cannot slip by a fetch that then waits (no lost wake-up).
        // Marking it seen hides the change from `changed()`, so a fetch already waiting on
        // an older version is woken by the run loop instead.
        let version = *data.borrow_and_update();
        if version != self.data_version {
            self.data_version = version;
            self.wake_stale = true;
        }
        if let Slot::Serving { version_sent, .. } = self.slot_mut(seq) {
            *version_sent = version;
        }
        for (index, request) in requests.into_iter().enumerate() {
            self.next_request += 1;
            let id = RequestId(self.next_request);
            if answered {
                self.routes.insert(id, (seq, index));
            }
            self.context.node.request(self.conn, id, request).await?;
        }
        Ok(())
    }

    async fn handle_reply(
        &mut self,
        id: RequestId,
        response: Response,
        data: &mut watch::Receiver<u64>,
    ) -> Result<(), Close> {
        let Some((seq, index)) = self.routes.remove(&id) else {
            // Only requests sent for an answer are routed, and each is answered once.
            unreachable!("an answer to request {id:?} that nobody waits for");
        };
        let context = Arc::clone(&self.context);
        let Slot::Serving { exchange, .. } = self.slot_mut(seq) else {
            unreachable!("an answer for a finished request")
        };
        let now = now();
        if let Some(step) = exchange.handle_response(&context.broker, index, response, now) {
            self.apply(seq, step, data).await?;
        }
        Ok(())
    }

    /// Wakes every waiting fetch for which `due(version_sent, deadline)` holds.
    async fn wake(
        &mut self,
        data: &mut watch::Receiver<u64>,
        due: impl Fn(u64, Instant) -> bool,
    ) -> Result<(), Close> {
        let mut woken = Vec::new();
        for (offset, slot) in self.slots.iter_mut().enumerate() {
            if let Slot::Serving { version_sent, deadline: Some(deadline), exchange, .. } = slot
                && due(*version_sent, *deadline)
            {
                let step = exchange.handle_wake(&self.context.broker, now());
                woken.push((self.first_seq + offset as u64, step));
                if let Slot::Serving { deadline, .. } = slot {
                    *deadline = None;
                }
            }
        }
        for (seq, step) in woken {
            self.apply(seq, step, data).await?;
        }
        Ok(())
    }

    /// Request `seq` is served: note its answer's chunks (none for acks 0) and count it.
    fn finish(&mut self, seq: u64, answer: Vec<Bytes>) {
        let metrics = Arc::clone(&self.context.metrics);
        let slot = self.slot_mut(seq);
        if let Slot::Serving { exchange, .. } = slot {
            let stats = exchange.stats();
            metrics.bytes_appended.fetch_add(stats.bytes_appended, Ordering::Relaxed);
            metrics.bytes_fetched.fetch_add(stats.bytes_fetched, Ordering::Relaxed);
        }
        *slot = Slot::Done(answer);
        metrics.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Moves the answers at the front, in request order, to the output.
    fn collect_answers(&mut self) {
        while let Some(Slot::Done(_)) = self.slots.front() {
            let Some(Slot::Done(answer)) = self.slots.pop_front() else { unreachable!() };
            self.first_seq += 1;
            // An empty chunk would stay at the front of the output after every write.
            for chunk in answer.into_iter().filter(|chunk| !chunk.is_empty()) {
                self.output_bytes += chunk.len();
                self.output.push_back(chunk);
            }
        }
    }

    /// Drops the first `written` bytes of the output: the socket took them.
    fn consume(&mut self, mut written: usize) {
        self.output_bytes -= written;
        // Bounded by the slices just written.
        while written > 0 {
            let front = self.output.front_mut().expect("written bytes were queued");
            if front.len() <= written {
                written -= front.len();
                self.output.pop_front();
            } else {
                front.advance(written);
                written = 0;
            }
        }
    }

    /// Checks the connection's bookkeeping; a failure is a bug.
    fn invariants(&self) {
        assert!(self.slots.len() <= CONNECTION_REQUESTS_MAX, "in flight is bounded");
        assert!(
            !matches!(self.slots.front(), Some(Slot::Done(_))),
            "finished answers at the front have been moved to the output"
        );
        debug_assert_eq!(self.output_bytes, self.output.iter().map(Bytes::len).sum::<usize>());
        debug_assert!(self.routes.values().all(|(seq, _)| {
            *seq >= self.first_seq && matches!(self.slot(*seq), Slot::Serving { .. })
        }));
    }

    fn next_deadline(&self) -> Option<Instant> {
        let deadlines = self.slots.iter().filter_map(|slot| match slot {
            Slot::Serving { deadline, .. } => *deadline,
            Slot::Done(_) => None,
        });
        deadlines.min()
    }

    fn slot(&self, seq: u64) -> &Slot {
        &self.slots[(seq - self.first_seq) as usize]
    }

    fn slot_mut(&mut self, seq: u64) -> &mut Slot {
        &mut self.slots[(seq - self.first_seq) as usize]
    }
}

/// Writes as many of the waiting answer chunks as the socket takes, in one system call
/// (`writev`), once it takes any; returns how many bytes it took.
async fn write_some(
    writer: &mut (impl AsyncWrite + Unpin),
    output: &VecDeque<Bytes>,
) -> std::io::Result<usize> {
    let slices: Vec<IoSlice<'_>> =
        output.iter().take(WRITE_SLICES_MAX).map(|b| IoSlice::new(b)).collect();
    let written =
        std::future::poll_fn(|cx| Pin::new(&mut *writer).poll_write_vectored(cx, &slices)).await?;
    if written == 0 {
        // Nothing taken of a non-empty output: the socket will take nothing more.
        return Err(std::io::ErrorKind::WriteZero.into());
    }
    Ok(written)
}

/// The time for the Kafka exchanges: tokio's clock, which a simulation controls.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

async fn sleep(until: Option<tokio::time::Instant>) {
    match until {
        Some(until) => tokio::time::sleep_until(until).await,
        None => std::future::pending().await,
    }
}
