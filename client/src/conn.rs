//! One connection to one broker: Kafka framing, correlation ids, ApiVersions negotiation
//! and pipelining.
//!
//! A connection runs two tasks. The writer takes encoded requests from a bounded queue,
//! registers each one that expects an answer with the reader (before its bytes leave, so the
//! answer can never arrive first), and writes them through a buffer that coalesces small
//! frames. The reader reads answer frames and hands each to the oldest registered request:
//! Kafka answers a connection's requests in the order they were sent, and the correlation id
//! of each answer is checked against the one expected. Any failure (a read or write error,
//! a wrong correlation id, an oversized frame, a request timeout) closes the connection
//! and fails every request in flight with `Error::ConnectionClosed`; the caller reconnects.
//!
//! Callers encode their own requests, so encoding runs on the callers' tasks in parallel and
//! no lock is held across any await.

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::error::{Error, Result};
use crate::limits::{
    CONNECTION_QUEUE_MAX, REQUEST_BYTES_MAX, RESPONSE_BYTES_MAX, WRITE_BUFFER_BYTES,
};

/// The API versions this client speaks, per API: the lowest and highest. The highest is
/// the newest version whose fields the client handles (Fetch stops at 12, before topic ids
/// replace names); every Kafka 3.x broker serves these ranges.
const CLIENT_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 6),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 5),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::FindCoordinator, 0, 3),
    (ApiKey::JoinGroup, 1, 7),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 2),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
];

/// The version of ApiVersions the client opens with: flexible, served since Kafka 2.4.
const API_VERSIONS_VERSION: i16 = 3;

/// The highest API key the version table covers.
const API_KEY_MAX: usize = 80;

const CLIENT_SOFTWARE_NAME: &str = "cairn-client";

/// A request on its way to the writer.
struct Outgoing {
    frame: Bytes,
    answer: Option<Pending>,
}

/// A request waiting for its answer.
struct Pending {
    correlation_id: i32,
    header_version: i16,
    reply: oneshot::Sender<Result<Bytes>>,
}

struct Shared {
    addr: SocketAddr,
    closed: AtomicBool,
    stop_writer: Notify,
    stop_reader: Notify,
    /// Why the connection closed, for the errors of the requests that find it closed.
    reason: std::sync::Mutex<Option<String>>,
}

impl Shared {
    fn close(&self, reason: String) {
        let mut slot = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(reason);
        }
        drop(slot);
        self.closed.store(true, Ordering::Release);
        // `notify_one` keeps a permit for a task that is not waiting yet.
        self.stop_writer.notify_one();
        self.stop_reader.notify_one();
    }

    fn closed_error(&self) -> Error {
        let reason = self.reason.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Error::ConnectionClosed {
            addr: self.addr,
            reason: reason.unwrap_or_else(|| "closed".to_string()),
        }
    }
}

/// A pipelined connection to one broker. Cheap to clone; the tasks stop when the last
/// clone is dropped or the connection fails.
#[derive(Clone)]
pub(crate) struct Connection {
    shared: Arc<Shared>,
    requests: mpsc::Sender<Outgoing>,
    correlation: Arc<AtomicI32>,
    /// The version chosen per API key, or -1 when the two sides share none.
    versions: Arc<[i16; API_KEY_MAX]>,
    client_id: Arc<str>,
    request_timeout: Duration,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("addr", &self.shared.addr).finish_non_exhaustive()
    }
}

/// The answer to a request already queued on a [`Connection`] (see
/// [`Connection::submit_call`]).
pub(crate) struct Answer<R: Request> {
    connection: Connection,
    answer: oneshot::Receiver<Result<Bytes>>,
    version: i16,
    request: PhantomData<fn() -> R>,
}

impl<R: Request> Answer<R> {
    /// Waits for the answer, up to the connection's request timeout.
    pub(crate) async fn wait(self) -> Result<R::Response> {
        let timeout = self.connection.request_timeout;
        self.wait_for(timeout).await
    }

    /// Waits for the answer, up to `timeout` (longer for a request the broker holds on
    /// purpose, such as JoinGroup).
    pub(crate) async fn wait_for(self, timeout: Duration) -> Result<R::Response> {
        let shared = &self.connection.shared;
        let mut body = match tokio::time::timeout(timeout, self.answer).await {
            Ok(Ok(body)) => body?,
            Ok(Err(_)) => return Err(shared.closed_error()),
            Err(_) => {
                // The stream's state is unknown after a lost answer: start over, as Kafka's
                // clients do.
                shared.close(format!("request timed out after {timeout:?}"));
                return Err(Error::Timeout { addr: shared.addr, timeout });
            }
        };
        R::Response::decode(&mut body, self.version).map_err(Error::protocol)
    }
}

impl Connection {
    /// Connects, starts the tasks and negotiates API versions.
    pub(crate) async fn connect(
        addr: SocketAddr,
        client_id: Arc<str>,
        request_timeout: Duration,
    ) -> Result<Connection> {
        let connect = TcpStream::connect(addr);
        let stream = match tokio::time::timeout(request_timeout, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                return Err(Error::Connect { addr: addr.to_string(), reason: e.to_string() });
            }
            Err(_) => {
                let reason = format!("no answer within {request_timeout:?}");
                return Err(Error::Connect { addr: addr.to_string(), reason });
            }
        };
        // Small pipelined requests must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let shared = Arc::new(Shared {
            addr,
            closed: AtomicBool::new(false),
            stop_writer: Notify::new(),
            stop_reader: Notify::new(),
            reason: std::sync::Mutex::new(None),
        });
        let (requests, queue) = mpsc::channel(CONNECTION_QUEUE_MAX);
        let (pending_tx, pending_rx) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(shared.clone(), write, queue, pending_tx));
        tokio::spawn(read_loop(shared.clone(), read, pending_rx));
        let mut connection = Connection {
            shared,
            requests,
            correlation: Arc::new(AtomicI32::new(0)),
            versions: Arc::new([-1; API_KEY_MAX]),
            client_id,
            request_timeout,
        };
        let versions = connection.negotiate().await?;
        connection.versions = Arc::new(versions);
        Ok(connection)
    }

    /// The broker's address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// Whether the connection has failed or closed; a closed connection is replaced.
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// The version this connection uses for request type `R`.
    pub(crate) fn version<R: Request>(&self) -> Result<i16> {
        let version = usize::try_from(R::KEY).ok().and_then(|key| self.versions.get(key));
        match version {
            Some(&version) if version >= 0 => Ok(version),
            _ => Err(Error::UnsupportedApi { addr: self.shared.addr, api_key: R::KEY }),
        }
    }

    /// Sends `request` at the negotiated version and waits for its answer.
    pub(crate) async fn call<R: Request>(&self, request: &R) -> Result<R::Response> {
        let version = self.version::<R>()?;
        self.call_version(request, version).await
    }

    /// Like `call`, with a longer wait for a request the broker holds on purpose
    /// (JoinGroup waits for the whole group).
    pub(crate) async fn call_timeout<R: Request>(
        &self,
        request: &R,
        timeout: Duration,
    ) -> Result<R::Response> {
        let version = self.version::<R>()?;
        self.call_inner(request, version, timeout).await
    }

    /// Sends `request` at `version` and waits for its answer.
    pub(crate) async fn call_version<R: Request>(
        &self,
        request: &R,
        version: i16,
    ) -> Result<R::Response> {
        self.call_inner(request, version, self.request_timeout).await
    }

    async fn call_inner<R: Request>(
        &self,
        request: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response> {
        self.submit_call_version(request, version).await?.wait_for(timeout).await
    }

    /// Queues `request` at the negotiated version for the writer and returns once it is
    /// queued, with its answer to await: requests queued one after another are written,
    /// and answered, in that order (the producer keeps a partition's batches in order so).
    pub(crate) async fn submit_call<R: Request>(&self, request: &R) -> Result<Answer<R>> {
        let version = self.version::<R>()?;
        self.submit_call_version(request, version).await
    }

    async fn submit_call_version<R: Request>(
        &self,
        request: &R,
        version: i16,
    ) -> Result<Answer<R>> {
        let (correlation_id, frame) = self.encode(request, version)?;
        let (reply, answer) = oneshot::channel();
        let header_version = <R::Response as HeaderVersion>::header_version(version);
        let pending = Pending { correlation_id, header_version, reply };
        self.submit(Outgoing { frame, answer: Some(pending) }).await?;
        Ok(Answer { connection: self.clone(), answer, version, request: PhantomData })
    }

    /// Sends a request that gets no answer (a Produce with acks=0). Returns once it is
    /// queued for the writer.
    pub(crate) async fn send_only<R: Request>(&self, request: &R) -> Result<()> {
        let version = self.version::<R>()?;
        let (_, frame) = self.encode(request, version)?;
        self.submit(Outgoing { frame, answer: None }).await
    }

    async fn submit(&self, outgoing: Outgoing) -> Result<()> {
        if self.is_closed() {
            return Err(self.shared.closed_error());
        }
        self.requests.send(outgoing).await.map_err(|_| self.shared.closed_error())
    }

    fn encode<R: Request>(&self, request: &R, version: i16) -> Result<(i32, Bytes)> {
        let correlation_id = self.correlation.fetch_add(1, Ordering::Relaxed) & i32::MAX;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_string(self.client_id.to_string())));
        let header_version = R::header_version(version);
        let size = header.compute_size(header_version).map_err(Error::protocol)?
            + request.compute_size(version).map_err(Error::protocol)?;
        if size > REQUEST_BYTES_MAX {
            return Err(Error::RecordTooLarge { size, max: REQUEST_BYTES_MAX });
        }
        let mut frame = BytesMut::with_capacity(4 + size);
        frame.extend_from_slice(&(size as i32).to_be_bytes());
        header.encode(&mut frame, header_version).map_err(Error::protocol)?;
        request.encode(&mut frame, version).map_err(Error::protocol)?;
        assert_eq!(frame.len(), 4 + size, "compute_size agrees with encode");
        Ok((correlation_id, frame.freeze()))
    }

    /// ApiVersions: the highest version of each API that both sides support.
    async fn negotiate(&self) -> Result<[i16; API_KEY_MAX]> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(CLIENT_SOFTWARE_NAME))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let response: ApiVersionsResponse =
            self.call_version(&request, API_VERSIONS_VERSION).await?;
        if response.error_code != 0 {
            return Err(Error::kafka(
                response.error_code,
                format!("ApiVersions to {}", self.addr()),
            ));
        }
        let broker: Vec<(i16, i16, i16)> = response
            .api_keys
            .iter()
            .map(|api| (api.api_key, api.min_version, api.max_version))
            .collect();
        Ok(choose_versions(&broker))
    }
}

/// For each API the client speaks, the highest version inside both its range and the
/// broker's (`(api_key, min, max)` triples), or -1.
fn choose_versions(broker: &[(i16, i16, i16)]) -> [i16; API_KEY_MAX] {
    let mut versions = [-1; API_KEY_MAX];
    for &(api, client_min, client_max) in CLIENT_APIS {
        let key = api as i16;
        let Some(&(_, broker_min, broker_max)) = broker.iter().find(|b| b.0 == key) else {
            continue;
        };
        let (low, high) = (client_min.max(broker_min), client_max.min(broker_max));
        if low <= high {
            versions[key as usize] = high;
        }
    }
    versions
}

async fn write_loop(
    shared: Arc<Shared>,
    write: OwnedWriteHalf,
    mut queue: mpsc::Receiver<Outgoing>,
    pending: mpsc::UnboundedSender<Pending>,
) {
    let mut out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, write);
    let reason = loop {
        let next = tokio::select! {
            next = queue.recv() => next,
            () = shared.stop_writer.notified() => break "closed".to_string(),
        };
        let Some(mut outgoing) = next else { break "dropped by the client".to_string() };
        // Drain what is queued now into one flush: pipelined requests share syscalls.
        let mut result = Ok(());
        for _ in 0..CONNECTION_QUEUE_MAX {
            if let Some(answer) = outgoing.answer.take()
                && let Err(refused) = pending.send(answer)
            {
                let _ = refused.0.reply.send(Err(shared.closed_error()));
                result = Err("the reader stopped".to_string());
                break;
            }
            if let Err(e) = out.write_all(&outgoing.frame).await {
                result = Err(format!("write failed: {e}"));
                break;
            }
            match queue.try_recv() {
                Ok(next) => outgoing = next,
                Err(_) => break,
            }
        }
        if let Err(reason) = result {
            break reason;
        }
        if let Err(e) = out.flush().await {
            break format!("write failed: {e}");
        }
    };
    shared.close(reason);
    // Requests still queued find the connection closed.
    queue.close();
    while let Ok(outgoing) = queue.try_recv() {
        if let Some(answer) = outgoing.answer {
            let _ = answer.reply.send(Err(shared.closed_error()));
        }
    }
}

async fn read_loop(
    shared: Arc<Shared>,
    mut read: OwnedReadHalf,
    mut pending: mpsc::UnboundedReceiver<Pending>,
) {
    let reason = loop {
        let frame = tokio::select! {
            frame = read_frame(&mut read) => frame,
            () = shared.stop_reader.notified() => break None,
        };
        let mut frame = match frame {
            Ok(frame) => frame,
            Err(reason) => break Some(reason),
        };
        let Ok(waiting) = pending.try_recv() else {
            break Some("an answer came for no request".to_string());
        };
        let header = match ResponseHeader::decode(&mut frame, waiting.header_version) {
            Ok(header) => header,
            Err(e) => break Some(format!("bad answer header: {e}")),
        };
        if header.correlation_id != waiting.correlation_id {
            break Some(format!(
                "answer with correlation id {} where {} was expected",
                header.correlation_id, waiting.correlation_id
            ));
        }
        // A caller that gave up (timed out) has dropped its receiver; nothing to do.
        let _ = waiting.reply.send(Ok(frame));
    };
    shared.close(reason.unwrap_or_else(|| "closed".to_string()));
    pending.close();
    while let Ok(waiting) = pending.try_recv() {
        let _ = waiting.reply.send(Err(shared.closed_error()));
    }
}

async fn read_frame(read: &mut OwnedReadHalf) -> Result<Bytes, String> {
    let size = match read.read_i32().await {
        Ok(size) => size,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err("the broker closed the connection".to_string());
        }
        Err(e) => return Err(format!("read failed: {e}")),
    };
    let size = usize::try_from(size).map_err(|_| format!("negative frame size {size}"))?;
    if size > RESPONSE_BYTES_MAX {
        return Err(format!("answer of {size} bytes exceeds {RESPONSE_BYTES_MAX}"));
    }
    let mut frame = BytesMut::zeroed(size);
    read.read_exact(&mut frame).await.map_err(|e| format!("read failed: {e}"))?;
    Ok(frame.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
    use tokio::net::TcpListener;

    /// A scripted broker on loopback: it reads `count` request frames before it answers
    /// any, then answers each with a Metadata v1 body, shifting correlation ids by
    /// `correlation_shift` (0 for a correct broker). Returns its address.
    async fn scripted_broker(count: usize, correlation_shift: i32) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            // ApiVersions first: answer it alone, offering Metadata v1 only.
            let (id, _) = read_request(&mut stream).await;
            let api = kafka_protocol::messages::api_versions_response::ApiVersion::default()
                .with_api_key(ApiKey::Metadata as i16)
                .with_min_version(1)
                .with_max_version(1);
            let body = ApiVersionsResponse::default().with_api_keys(vec![api]);
            write_answer(&mut stream, id, &body, API_VERSIONS_VERSION, 0).await;
            let mut ids = Vec::new();
            for _ in 0..count {
                ids.push(read_request(&mut stream).await.0);
            }
            for id in ids {
                let body = MetadataResponse::default();
                write_answer(&mut stream, id + correlation_shift, &body, 1, 0).await;
            }
            // Keep the socket open until the client goes.
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest).await;
        });
        addr
    }

    async fn read_request(stream: &mut TcpStream) -> (i32, i16) {
        let size = stream.read_i32().await.unwrap() as usize;
        let mut frame = vec![0; size];
        stream.read_exact(&mut frame).await.unwrap();
        let key = i16::from_be_bytes([frame[0], frame[1]]);
        (i32::from_be_bytes(frame[4..8].try_into().unwrap()), key)
    }

    async fn write_answer<M: Encodable>(
        stream: &mut TcpStream,
        correlation_id: i32,
        body: &M,
        version: i16,
        header_version: i16,
    ) {
        let mut frame = BytesMut::new();
        frame.extend_from_slice(&[0; 4]);
        ResponseHeader::default()
            .with_correlation_id(correlation_id)
            .encode(&mut frame, header_version)
            .unwrap();
        body.encode(&mut frame, version).unwrap();
        let size = (frame.len() - 4) as i32;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        stream.write_all(&frame).await.unwrap();
    }

    async fn connect(addr: SocketAddr) -> Connection {
        Connection::connect(addr, Arc::from("test"), Duration::from_secs(10)).await.unwrap()
    }

    #[tokio::test]
    async fn many_requests_are_in_flight_at_once_and_answered_in_order() {
        // The broker answers nothing until it has read all 50 requests: only a pipelining
        // client gets any answer at all.
        let connection = connect(scripted_broker(50, 0).await).await;
        assert_eq!(connection.version::<MetadataRequest>().unwrap(), 1, "negotiated");
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let connection = connection.clone();
            calls.spawn(async move { connection.call(&MetadataRequest::default()).await });
        }
        let mut answered = 0;
        let all = async {
            while let Some(result) = calls.join_next().await {
                result.unwrap().unwrap();
                answered += 1;
            }
        };
        let in_time = tokio::time::timeout(Duration::from_secs(5), all).await;
        assert!(in_time.is_ok(), "answers came only with every request in flight");
        assert_eq!(answered, 50);
        assert!(!connection.is_closed());
    }

    #[tokio::test]
    async fn a_wrong_correlation_id_closes_the_connection_and_fails_every_call() {
        let connection = connect(scripted_broker(3, 1).await).await;
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..3 {
            let connection = connection.clone();
            calls.spawn(async move { connection.call(&MetadataRequest::default()).await });
        }
        while let Some(result) = calls.join_next().await {
            let error = result.unwrap().unwrap_err();
            assert!(matches!(error, Error::ConnectionClosed { .. }), "{error}");
            assert!(error.to_string().contains("correlation id"), "{error}");
        }
        assert!(connection.is_closed());
        let later = connection.call(&MetadataRequest::default()).await.unwrap_err();
        assert!(matches!(later, Error::ConnectionClosed { .. }), "{later}");
    }

    #[tokio::test]
    async fn an_api_the_broker_lacks_is_refused_before_sending() {
        let connection = connect(scripted_broker(0, 0).await).await;
        let request = kafka_protocol::messages::FetchRequest::default();
        let error = connection.call(&request).await.unwrap_err();
        assert!(matches!(error, Error::UnsupportedApi { api_key: 1, .. }), "{error}");
    }

    #[test]
    fn versions_are_the_highest_both_sides_support() {
        let broker = [
            (ApiKey::Produce as i16, 0, 11),
            (ApiKey::Fetch as i16, 0, 7),
            (ApiKey::Metadata as i16, 13, 13),
        ];
        let versions = choose_versions(&broker);
        assert_eq!(versions[ApiKey::Produce as usize], 9, "capped by the client");
        assert_eq!(versions[ApiKey::Fetch as usize], 7, "capped by the broker");
        assert_eq!(versions[ApiKey::Metadata as usize], -1, "no overlap");
        assert_eq!(versions[ApiKey::ListOffsets as usize], -1, "the broker lacks it");
    }

    #[test]
    fn every_client_range_is_inside_what_the_crate_encodes() {
        for &(api, min, max) in CLIENT_APIS {
            let crate_range = api.valid_versions();
            assert!(min <= max, "{api:?}");
            assert!(crate_range.min <= min && max <= crate_range.max, "{api:?}");
            assert!((api as i16 as usize) < API_KEY_MAX, "{api:?}");
        }
    }
}
