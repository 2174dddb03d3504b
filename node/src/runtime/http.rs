//! The operations endpoint: `GET /metrics` (Prometheus text format) and `GET /health`.
//!
//! Two fixed paths, read-only, on their own port: a small HTTP/1.1 responder is enough and
//! keeps a web framework out of the broker. Each connection gets one request, bounded in size
//! and time, and is closed after the answer.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The largest request head read; anything longer is refused.
pub const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;
/// How long a client has to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Counters and gauges the node's parts update and the endpoint reports. Every field is an
/// atomic: writers never wait for the endpoint.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Whether the node listed and opened its partitions and serves requests.
    pub ready: AtomicBool,
    /// Kafka requests answered.
    pub requests: AtomicU64,
    /// Connections closed because of a malformed or oversized frame.
    pub frames_rejected: AtomicU64,
    /// Client connections open now.
    pub connections_open: AtomicU64,
    /// Record batch bytes appended to partition logs.
    pub bytes_appended: AtomicU64,
    /// Record batch bytes returned by fetches.
    pub bytes_fetched: AtomicU64,
    /// Disk ops executed.
    pub disk_ops: AtomicU64,
    /// `Sync` ops answered.
    pub disk_syncs: AtomicU64,
    /// `fdatasync` calls made for them (group commit makes this smaller).
    pub disk_fdatasyncs: AtomicU64,
    /// The peer transport's stats, once a node of a cluster of several started it.
    pub peers: std::sync::OnceLock<Arc<super::peer::PeerStats>>,
    /// The committed offsets of the groups this node coordinates, as the driver last
    /// copied them (every [`GROUP_METRICS_INTERVAL`]).
    pub groups: std::sync::Mutex<Vec<crate::core::node::GroupOffset>>,
    /// The high watermark of every partition this node leads, copied with `groups`: with
    /// the committed offsets of every coordinator it gives every group's lag, cluster-wide
    /// (docs/operations.md, Consumer groups).
    pub high_watermarks: std::sync::Mutex<Vec<(crate::core::node::PartitionId, u64)>>,
}

/// How often the driver copies the groups' committed offsets into the metrics.
pub const GROUP_METRICS_INTERVAL: Duration = Duration::from_secs(5);

impl Metrics {
    /// The metrics in Prometheus' text exposition format.
    pub fn render(&self) -> String {
        let counters = [
            ("cairn_requests_total", "Kafka requests answered.", &self.requests),
            (
                "cairn_frames_rejected_total",
                "Connections closed on a bad frame.",
                &self.frames_rejected,
            ),
            ("cairn_appended_bytes_total", "Record batch bytes appended.", &self.bytes_appended),
            ("cairn_fetched_bytes_total", "Record batch bytes fetched.", &self.bytes_fetched),
            ("cairn_disk_ops_total", "Disk ops executed.", &self.disk_ops),
            ("cairn_disk_syncs_total", "Sync ops answered.", &self.disk_syncs),
            ("cairn_disk_fdatasyncs_total", "fdatasync calls made.", &self.disk_fdatasyncs),
        ];
        let mut out = String::new();
        for (name, help, value) in counters {
            let value = value.load(Ordering::Relaxed);
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n");
        }
        let dropped = super::logging::lines_dropped();
        let _ = write!(
            out,
            "# HELP cairn_log_lines_dropped_total Log lines standard error could not take.\n\
             # TYPE cairn_log_lines_dropped_total counter\ncairn_log_lines_dropped_total {dropped}\n"
        );
        let open = self.connections_open.load(Ordering::Relaxed);
        let ready = u8::from(self.ready.load(Ordering::Relaxed));
        let _ = write!(
            out,
            "# HELP cairn_connections_open Client connections open.\n\
             # TYPE cairn_connections_open gauge\ncairn_connections_open {open}\n\
             # HELP cairn_ready Whether the node serves requests.\n\
             # TYPE cairn_ready gauge\ncairn_ready {ready}\n"
        );
        if let Some(peers) = self.peers.get() {
            peers.render(&mut out);
        }
        self.render_groups(&mut out);
        self.render_high_watermarks(&mut out);
        out
    }

    /// Replaces the high watermarks shown, one per partition this node leads.
    pub fn set_high_watermarks(&self, hws: Vec<(crate::core::node::PartitionId, u64)>) {
        *self.high_watermarks.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = hws;
    }

    /// Replaces the groups' committed offsets shown.
    pub fn set_group_offsets(&self, offsets: Vec<crate::core::node::GroupOffset>) {
        *self.groups.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = offsets;
    }

    /// Committed offsets per group, topic and partition, and the lag where this node leads
    /// the partition (decision 0015: in a cluster the coordinator and the partition's leader
    /// are often different nodes; each node reports the lag of the partitions it leads).
    fn render_groups(&self, out: &mut String) {
        let groups = self.groups.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let _ = write!(
            out,
            "# HELP cairn_group_committed_offset Offset a consumer group committed (the next \
             to consume), on its coordinator.\n# TYPE cairn_group_committed_offset gauge\n"
        );
        for offset in groups.iter() {
            let labels = group_labels(offset);
            let _ = writeln!(out, "cairn_group_committed_offset{{{labels}}} {}", offset.committed);
        }
        let _ = write!(
            out,
            "# HELP cairn_group_lag High watermark minus the committed offset, where the \
             coordinator also leads the partition.\n# TYPE cairn_group_lag gauge\n"
        );
        for offset in groups.iter() {
            if let Some(hw) = offset.high_watermark {
                let lag = (hw as i64).saturating_sub(offset.committed).max(0);
                let _ = writeln!(out, "cairn_group_lag{{{}}} {lag}", group_labels(offset));
            }
        }
    }
}

impl Metrics {
    fn render_high_watermarks(&self, out: &mut String) {
        let hws = self.high_watermarks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let _ = write!(
            out,
            "# HELP cairn_partition_high_watermark High watermark of a partition this node \
             leads.\n# TYPE cairn_partition_high_watermark gauge\n"
        );
        for (partition, hw) in hws.iter() {
            let topic = escape_label(&partition.topic);
            let index = partition.partition;
            let _ = writeln!(
                out,
                "cairn_partition_high_watermark{{topic=\"{topic}\",partition=\"{index}\"}} {hw}"
            );
        }
    }
}

/// `text` escaped as a label value of the Prometheus text format.
fn escape_label(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The labels of one committed offset, escaped as the Prometheus text format asks.
fn group_labels(offset: &crate::core::node::GroupOffset) -> String {
    format!(
        "group=\"{}\",topic=\"{}\",partition=\"{}\"",
        escape_label(&offset.group),
        escape_label(&offset.partition.topic),
        offset.partition.partition
    )
}

/// Binds `addr` and serves the endpoint until the task is dropped. Returns the bound address
/// (useful with port 0) and the serving task.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let metrics = Arc::clone(&metrics);
            tokio::spawn(async move {
                if let Err(error) = answer(stream, &metrics).await {
                    tracing::debug!(%error, "metrics request failed");
                }
            });
        }
    });
    Ok((bound, task))
}

async fn answer(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let read = async {
        // Bounded: stops at the end of the head, at the size limit, or at the client's EOF.
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < REQUEST_HEAD_BYTES_MAX {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&chunk[..n]);
        }
        Ok::<(), std::io::Error>(())
    };
    tokio::time::timeout(REQUEST_TIMEOUT, read)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "slow request"))??;
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (status, content_type, body) = match (parts.next(), parts.next()) {
        (Some("GET"), Some("/metrics")) => {
            ("200 OK", "text/plain; version=0.0.4", metrics.render())
        }
        (Some("GET"), Some("/health")) if metrics.ready.load(Ordering::Relaxed) => {
            ("200 OK", "text/plain", "ok\n".to_string())
        }
        (Some("GET"), Some("/health")) => {
            ("503 Service Unavailable", "text/plain", "starting\n".to_string())
        }
        (Some("GET"), _) => ("404 Not Found", "text/plain", "try /metrics or /health\n".into()),
        _ => ("405 Method Not Allowed", "text/plain", "only GET\n".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn serves_metrics_and_health_over_tcp() {
        let metrics = Arc::new(Metrics::default());
        let (addr, _task) =
            serve("127.0.0.1:0".parse().unwrap(), Arc::clone(&metrics)).await.unwrap();
        let health = get(addr, "GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await;
        assert!(health.starts_with("HTTP/1.1 503"), "{health}");
        metrics.ready.store(true, Ordering::Relaxed);
        metrics.requests.fetch_add(7, Ordering::Relaxed);
        let health = get(addr, "GET /health HTTP/1.1\r\n\r\n").await;
        assert!(health.starts_with("HTTP/1.1 200") && health.ends_with("ok\n"), "{health}");
        let body = get(addr, "GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(body.contains("\ncairn_requests_total 7\n"), "{body}");
        assert!(body.contains("# TYPE cairn_ready gauge\ncairn_ready 1\n"), "{body}");
        metrics.set_group_offsets(vec![
            crate::core::node::GroupOffset {
                group: "g\"1".into(),
                partition: crate::core::node::PartitionId::new("t", 2),
                committed: 40,
                high_watermark: Some(52),
            },
            crate::core::node::GroupOffset {
                group: "h".into(),
                partition: crate::core::node::PartitionId::new("t", 0),
                committed: 7,
                high_watermark: None,
            },
        ]);
        let body = get(addr, "GET /metrics HTTP/1.1\r\n\r\n").await;
        let committed =
            "cairn_group_committed_offset{group=\"g\\\"1\",topic=\"t\",partition=\"2\"} 40\n";
        assert!(body.contains(committed), "{body}");
        assert!(
            body.contains(
                "cairn_group_committed_offset{group=\"h\",topic=\"t\",partition=\"0\"} 7\n"
            )
        );
        assert!(
            body.contains("cairn_group_lag{group=\"g\\\"1\",topic=\"t\",partition=\"2\"} 12\n")
        );
        assert!(!body.contains("cairn_group_lag{group=\"h\""), "no lag where the HW is unknown");
        metrics.set_high_watermarks(vec![(crate::core::node::PartitionId::new("t", 0), 19)]);
        let body = get(addr, "GET /metrics HTTP/1.1\r\n\r\n").await;
        let hw = "cairn_partition_high_watermark{topic=\"t\",partition=\"0\"} 19\n";
        assert!(body.contains(hw), "{body}");
        assert!(get(addr, "GET /nope HTTP/1.1\r\n\r\n").await.starts_with("HTTP/1.1 404"));
        assert!(get(addr, "POST /metrics HTTP/1.1\r\n\r\n").await.starts_with("HTTP/1.1 405"));
        // A head that never ends is cut at the limit and answered, not read forever.
        let junk = "x".repeat(REQUEST_HEAD_BYTES_MAX * 2);
        assert!(get(addr, &junk).await.starts_with("HTTP/1.1 405"));
    }
}
