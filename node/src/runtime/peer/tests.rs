//! The peer transport over real loopback sockets.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::{PeerConfig, PeerHello, Peers, encode_frame};
use crate::core::io::NodeId;

#[derive(Clone, PartialEq, prost::Message)]
struct Note {
    #[prost(uint64, tag = "1")]
    n: u64,
    #[prost(bytes = "bytes", tag = "2")]
    data: Bytes,
}

const WAIT: Duration = Duration::from_secs(10);

struct TestNode {
    id: NodeId,
    peers: Peers<Note>,
    inbound: mpsc::Receiver<(NodeId, Note)>,
    stop: watch::Sender<bool>,
}

impl TestNode {
    async fn stop(self) {
        self.stop.send_replace(true);
        self.peers.stopped().await;
    }

    async fn recv(&mut self) -> (NodeId, Note) {
        let received = tokio::time::timeout(WAIT, self.inbound.recv()).await;
        received.expect("a message within the wait").expect("the transport runs")
    }
}

fn start(id: u32, cluster: &str, listener: TcpListener, peers: &[(u32, String)]) -> TestNode {
    let config = PeerConfig {
        node_id: NodeId(id),
        cluster_id: cluster.to_string(),
        peers: peers.iter().map(|(id, address)| (NodeId(*id), address.clone())).collect(),
    };
    let (sink, inbound) = mpsc::channel(1024);
    let (stop, stopped) = watch::channel(false);
    TestNode { id: NodeId(id), peers: Peers::start(config, listener, sink, stopped), inbound, stop }
}

async fn listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    (listener, address)
}

fn note(n: u64) -> Note {
    Note { n, data: Bytes::from(vec![n as u8; (n % 300) as usize]) }
}

#[tokio::test]
async fn two_nodes_exchange_messages_in_order_both_ways() {
    let ((l1, a1), (l2, a2)) = (listener().await, listener().await);
    let mut one = start(1, "c", l1, &[(2, a2)]);
    let mut two = start(2, "c", l2, &[(1, a1)]);
    // The queue holds messages sent before the connection is up.
    for n in 0..1000 {
        assert!(one.peers.send(two.id, note(n)));
        assert!(two.peers.send(one.id, note(n + 10_000)));
    }
    for n in 0..1000 {
        assert_eq!(two.recv().await, (NodeId(1), note(n)));
        assert_eq!(one.recv().await, (NodeId(2), note(n + 10_000)));
    }
    assert!(!one.peers.send(NodeId(7), note(0)), "node 7 is not a peer");
    one.stop().await;
    two.stop().await;
}

#[tokio::test]
async fn a_restarted_peer_is_reached_again() {
    let ((l1, a1), (l2, a2)) = (listener().await, listener().await);
    let one = start(1, "c", l1, &[(2, a2.clone())]);
    let mut two = start(2, "c", l2, &[(1, a1.clone())]);
    one.peers.send(two.id, note(1));
    assert_eq!(two.recv().await.1, note(1));
    two.stop().await;

    // Messages sent while node 2 is down may be lost; once it is back, they arrive again.
    let listener = TcpListener::bind(a2.as_str()).await.expect("the port is free again");
    let mut two = start(2, "c", listener, &[(1, a1)]);
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut n = 100;
    loop {
        one.peers.send(two.id, note(n));
        match tokio::time::timeout(Duration::from_millis(50), two.inbound.recv()).await {
            Ok(Some((from, got))) => {
                assert_eq!(from, NodeId(1));
                assert!(got.n >= 100, "nothing from before the restart is replayed: {}", got.n);
                break;
            }
            _ => assert!(tokio::time::Instant::now() < deadline, "node 1 never reconnected"),
        }
        n += 1;
    }
    assert!(one.peers.stats().connects.load(std::sync::atomic::Ordering::Relaxed) >= 2);
    one.stop().await;
    two.stop().await;
}

/// Connects to `address` as `node_id` of `cluster` and sends `frames` after the hello.
async fn raw_peer(address: &str, cluster: &str, node_id: u32, frames: &[Bytes]) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let hello = PeerHello { cluster_id: cluster.into(), node_id, version: 1 };
    stream.write_all(&encode_frame(&hello)).await.unwrap();
    for frame in frames {
        stream.write_all(frame).await.unwrap();
    }
    stream
}

async fn wait_for_rejections(node: &TestNode, count: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let rejected = || node.peers.stats().rejected.load(std::sync::atomic::Ordering::Relaxed);
    while rejected() < count {
        assert!(tokio::time::Instant::now() < deadline, "{} rejections, not {count}", rejected());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn strangers_and_bad_frames_are_refused_and_good_peers_served() {
    let ((l1, a1), (l2, _)) = (listener().await, listener().await);
    let mut one = start(1, "c", l1, &[(2, "127.0.0.1:9".into())]);
    drop(l2);

    let _other_cluster = raw_peer(&a1, "other", 2, &[encode_frame(&note(5))]).await;
    let _unknown_node = raw_peer(&a1, "c", 3, &[encode_frame(&note(6))]).await;
    let mut huge = BytesMut::new();
    huge.put_u32(u32::MAX);
    let _oversized = raw_peer(&a1, "c", 2, &[huge.freeze()]).await;
    let mut garbage = BytesMut::new();
    garbage.put_u32(3);
    garbage.put_slice(&[0xff, 0xff, 0xff]);
    let _undecodable = raw_peer(&a1, "c", 2, &[garbage.freeze()]).await;
    wait_for_rejections(&one, 4).await;

    // A well-behaved peer is served all the while.
    let _good = raw_peer(&a1, "c", 2, &[encode_frame(&note(42))]).await;
    assert_eq!(one.recv().await, (NodeId(2), note(42)));
    assert!(one.inbound.try_recv().is_err(), "nothing from the refused connections");
    one.stop().await;
}

#[tokio::test]
async fn a_full_queue_drops_and_counts() {
    let (l1, _) = listener().await;
    // Port 9 (discard) on loopback refuses connections, so the queue only fills.
    let one = start(1, "c", l1, &[(2, "127.0.0.1:9".into())]);
    let queued = (0..super::PEER_QUEUE_MAX as u64 + 10)
        .filter(|n| one.peers.send(NodeId(2), note(*n)))
        .count();
    assert_eq!(queued, super::PEER_QUEUE_MAX);
    let dropped = one.peers.stats().dropped.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(dropped, 10);
    one.stop().await;
}

async fn wait_for_connected(node: &TestNode, count: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let connected = || node.peers.stats().connected.load(std::sync::atomic::Ordering::Relaxed);
    while connected() != count {
        assert!(tokio::time::Instant::now() < deadline, "{} connected, not {count}", connected());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// An idle connection whose peer went away is noticed without a message to write, and made
/// again once the peer is back.
#[tokio::test]
async fn an_idle_connection_to_a_stopped_peer_is_noticed_and_made_again() {
    let ((l1, a1), (l2, a2)) = (listener().await, listener().await);
    let one = start(1, "c", l1, &[(2, a2.clone())]);
    let two = start(2, "c", l2, &[(1, a1.clone())]);
    wait_for_connected(&one, 1).await;
    two.stop().await;
    wait_for_connected(&one, 0).await;
    let listener = TcpListener::bind(a2.as_str()).await.expect("the port is free again");
    let mut two = start(2, "c", listener, &[(1, a1)]);
    wait_for_connected(&one, 1).await;
    one.peers.send(two.id, note(1));
    assert_eq!(two.recv().await, (NodeId(1), note(1)));
    one.stop().await;
    two.stop().await;
}

/// Waits until node `node` reports peer `peer`'s link as `up` after `changes` changes.
async fn wait_for_link(node: &TestNode, peer: u32, up: bool, changes: u64) {
    let mut links = node.peers.links();
    let wanted = super::LinkState { up, changes };
    let reached = links.wait_for(|links| links.get(&NodeId(peer)) == Some(&wanted));
    let waited = tokio::time::timeout(WAIT, reached).await;
    assert!(waited.is_ok(), "link to {peer}: {:?}, not {wanted:?}", node.peers.links().borrow());
}

/// A peer that stopped (its process killed: its host refuses connections) is reported down
/// as soon as reconnecting fails, and up once a connection opens again.
#[tokio::test]
async fn a_stopped_peer_is_reported_down_and_a_restarted_one_up() {
    let ((l1, a1), (l2, a2)) = (listener().await, listener().await);
    let one = start(1, "c", l1, &[(2, a2.clone())]);
    let two = start(2, "c", l2, &[(1, a1.clone())]);
    wait_for_connected(&one, 1).await;
    wait_for_link(&one, 2, true, 0).await;
    let stopped_at = tokio::time::Instant::now();
    two.stop().await;
    wait_for_link(&one, 2, false, 1).await;
    let noticed = stopped_at.elapsed();
    assert!(noticed < Duration::from_millis(500), "noticed after {noticed:?}");
    let listener = TcpListener::bind(a2.as_str()).await.expect("the port is free again");
    let two = start(2, "c", listener, &[(1, a1)]);
    wait_for_link(&one, 2, true, 2).await;
    one.stop().await;
    two.stop().await;
}

/// A connection that breaks while the peer still accepts is made again without the link
/// ever being reported down: a reconnect is not a death.
#[tokio::test]
async fn a_dropped_connection_to_a_live_peer_is_no_link_change() {
    let ((l1, _), (l2, a2)) = (listener().await, listener().await);
    let one = start(1, "c", l1, &[(2, a2)]);
    let (first, _) = l2.accept().await.expect("node 1 connects");
    drop(first);
    let (_second, _) = l2.accept().await.expect("node 1 connects again");
    let deadline = tokio::time::Instant::now() + WAIT;
    let stats = one.peers.stats();
    let load = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
    while load(&stats.connects) < 2 || load(&stats.connected) != 1 {
        assert!(tokio::time::Instant::now() < deadline, "node 1 never reconnected");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let state = one.peers.links().borrow().get(&NodeId(2)).copied();
    assert_eq!(state, Some(super::LinkState { up: true, changes: 0 }));
    one.stop().await;
}
