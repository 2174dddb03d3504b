//! Scenario tests of replication over the bench in `harness`, one story each, and exact
//! answers of the leader's handlers.

use std::time::Duration;

use bytes::Bytes;

use super::harness::{Cluster, log_config, test_config};
use super::messages::*;
use super::*;
use crate::core::io::NodeId;
use crate::core::log::LogError;
use crate::core::topic::Durability;

const FSYNC: Durability = Durability::Fsync;
const REPLICATE: Durability = Durability::Replicate;

/// Three nodes, node 0 leading epoch 0 with all in the ISR, followers fetching.
fn three(durability: Durability, min_insync: usize) -> Cluster {
    let mut c = Cluster::new(3, test_config(durability, min_insync));
    c.elect(0, &[0, 1, 2]);
    c
}

fn produced(c: &Cluster, token: u64) -> Option<u64> {
    match c.reply(token) {
        Some(ReplicaResponse::Produced { base_offset }) => Some(*base_offset),
        Some(other) => panic!("token {token}: {other:?}"),
        None => None,
    }
}

fn error_of(c: &Cluster, token: u64) -> &ReplicaError {
    match c.reply(token) {
        Some(ReplicaResponse::Error(error)) => error,
        other => panic!("token {token}: expected an error, got {other:?}"),
    }
}

fn values(c: &Cluster, node: u32) -> Vec<Bytes> {
    let leo = c.replica(node).log().log_end_offset();
    c.values_below(node, leo)
}

fn v(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[test]
fn roles_follow_the_committed_state() {
    let c = three(FSYNC, 1);
    assert_eq!(c.replica(0).role(), Role::Leader);
    assert_eq!(c.replica(1).role(), Role::Follower { leader: NodeId(0) });
    assert_eq!(c.replica(2).leader_epoch(), 0);
    assert_eq!(c.replica(0).log().epochs().latest_epoch(), Some(0));
}

#[test]
pub(super) fn acks_all_waits_for_every_isr_member_fsync() {
    let mut c = three(FSYNC, 2);
    c.node(2).disk_paused = true;
    let token = c.produce(0, Acks::All, b"a");
    // Node 1 and the leader fsynced; node 2 holds the batch but has not fsynced it.
    assert_eq!(c.replica(1).log().flushed_offset(), 1);
    assert_eq!(c.replica(2).log().log_end_offset(), 1);
    assert_eq!(produced(&c, token), None, "answered before every ISR member fsynced");
    assert_eq!(c.replica(0).high_watermark(), 0);
    c.node(2).disk_paused = false;
    c.pump();
    assert_eq!(produced(&c, token), Some(0));
    assert_eq!(c.replica(0).high_watermark(), 1);
}

#[test]
fn acks_all_under_replicate_waits_for_memory_only() {
    let mut c = three(REPLICATE, 2);
    c.node(2).disk_paused = true;
    let token = c.produce(0, Acks::All, b"a");
    // Node 2's disk has not even run the append: its in-memory LEO counts.
    assert_eq!(produced(&c, token), Some(0));
    assert_eq!(c.replica(2).log().flushed_offset(), 0);
}

#[test]
fn acks_one_under_fsync_waits_for_the_leaders_flush_only() {
    let mut c = three(FSYNC, 1);
    c.node(1).disk_paused = true;
    c.node(0).disk_paused = true;
    let token = c.produce(0, Acks::Leader, b"a");
    assert_eq!(produced(&c, token), None, "answered before the leader's fsync");
    c.node(0).disk_paused = false;
    c.pump();
    assert_eq!(produced(&c, token), Some(0));
    assert_eq!(c.replica(0).high_watermark(), 0, "node 1 has not fsynced");
}

#[test]
pub(super) fn hw_is_min_flushed_leo_over_isr_not_all_replicas() {
    let mut c = Cluster::new(3, test_config(FSYNC, 2));
    // Node 2 is a replica outside the ISR and cannot be reached.
    for other in [0, 1] {
        c.cut.insert((NodeId(2), NodeId(other)));
        c.cut.insert((NodeId(other), NodeId(2)));
    }
    c.elect(0, &[0, 1]);
    let token = c.produce(0, Acks::All, b"a");
    assert_eq!(produced(&c, token), Some(0));
    assert_eq!(c.replica(0).high_watermark(), 1);
    assert_eq!(c.replica(2).log().log_end_offset(), 0, "a replica outside the ISR");
    // And the leader's own LEO is not the bound: with node 1's disk held, the HW waits.
    c.node(1).disk_paused = true;
    let token = c.produce(0, Acks::All, b"b");
    assert_eq!(c.replica(0).log().flushed_offset(), 2);
    assert_eq!(c.replica(0).high_watermark(), 1);
    assert_eq!(produced(&c, token), None);
}

#[test]
fn hw_counts_a_followers_flushed_offset_not_its_fetch_offset() {
    let mut c = three(FSYNC, 1);
    c.hold_network = true;
    c.produce(0, Acks::All, b"a");
    c.network.clear();
    assert_eq!(c.replica(0).log().flushed_offset(), 1);
    let fetch = |replica_id: u32, flushed_offset| ReplicaFetch {
        topic: "t".into(),
        partition: 0,
        correlation_id: 3,
        replica_id,
        current_leader_epoch: 0,
        fetch_offset: 1,
        last_fetched_epoch: 0,
        flushed_offset,
        max_bytes: 1 << 20,
        max_wait_ms: 0,
        broker_epoch: 0,
    };
    // Both followers hold `a`, neither has fsynced it: under fsync the HW stays.
    for follower in [1, 2] {
        c.deliver(NodeId(follower), NodeId(0), ReplicaMessage::Fetch(fetch(follower, 0)));
    }
    c.pump();
    assert_eq!(c.replica(0).high_watermark(), 0);
    c.deliver(NodeId(1), NodeId(0), ReplicaMessage::Fetch(fetch(1, 1)));
    c.pump();
    assert_eq!(c.replica(0).high_watermark(), 0, "node 2 has not fsynced");
    c.deliver(NodeId(2), NodeId(0), ReplicaMessage::Fetch(fetch(2, 1)));
    c.pump();
    assert_eq!(c.replica(0).high_watermark(), 1);
    // The leader counts its own flushed offset too: with its disk held, followers that
    // fsynced `b` do not move the HW.
    c.node(0).disk_paused = true;
    c.produce(0, Acks::All, b"b");
    for follower in [1, 2] {
        let mut request = fetch(follower, 2);
        request.fetch_offset = 2;
        c.deliver(NodeId(follower), NodeId(0), ReplicaMessage::Fetch(request));
    }
    c.pump();
    assert_eq!(c.replica(0).high_watermark(), 1, "the leader has not fsynced");
    c.node(0).disk_paused = false;
    c.pump();
    assert_eq!(c.replica(0).high_watermark(), 2);
}

#[test]
fn a_follower_behind_fetches_on_before_its_sync_under_fsync() {
    // One batch per fetch, so that a follower three batches behind needs three fetches.
    let config = ReplicaConfig { replica_fetch_bytes_max: 1, ..test_config(FSYNC, 2) };
    let mut c = Cluster::new(3, config);
    c.elect(0, &[0, 1, 2]);
    // Node 2 misses three batches, then its disk holds every write and sync.
    c.cut.insert((NodeId(0), NodeId(2)));
    let tokens: Vec<u64> =
        ["a", "b", "c"].map(|value| c.produce(0, Acks::All, v(value).as_ref())).into();
    c.node(2).disk_paused = true;
    c.cut.clear();
    // Its fetch in flight times out; it asks again from offset 0.
    c.advance_by(Duration::from_millis(2_000), Duration::from_millis(100));
    // It fetched the second without waiting for the first's sync, but not the third: one
    // answer at most is not durable ...
    assert_eq!(c.replica(2).log().log_end_offset(), 2);
    assert_eq!(c.replica(2).log().flushed_offset(), 0);
    // ... and the leader counted none of them: its HW waits for node 2's sync.
    assert_eq!(c.replica(0).high_watermark(), 0);
    assert!(tokens.iter().all(|token| produced(&c, *token).is_none()));
    // Caught up, it fetches again only once synced, and that fetch moves the HW.
    c.node(2).disk_paused = false;
    c.pump();
    assert_eq!(c.replica(0).high_watermark(), 3);
    assert_eq!(
        tokens.iter().map(|token| produced(&c, *token)).collect::<Vec<_>>(),
        [Some(0), Some(1), Some(2)]
    );
}

#[test]
fn hw_never_moves_back() {
    let mut c = three(FSYNC, 1);
    for value in [b"a", b"b", b"c"] {
        c.produce(0, Acks::All, value);
    }
    assert_eq!(c.replica(0).high_watermark(), 3);
    // A stale copy of an old fetch (offset 0) reaches the leader: its HW stays.
    let old = ReplicaFetch {
        topic: "t".into(),
        partition: 0,
        correlation_id: 1,
        replica_id: 1,
        current_leader_epoch: 0,
        fetch_offset: 0,
        last_fetched_epoch: -1,
        flushed_offset: 0,
        max_bytes: 1 << 20,
        max_wait_ms: 0,
        broker_epoch: 0,
    };
    c.deliver(NodeId(1), NodeId(0), ReplicaMessage::Fetch(old));
    c.pump();
    assert_eq!(c.replica(0).high_watermark(), 3);
    // A new leader whose followers have not fetched yet keeps the HW it had.
    c.hold_network = true;
    let before = c.replica(1).high_watermark();
    c.elect(1, &[0, 1, 2]);
    assert_eq!(c.replica(1).high_watermark(), before);
    c.hold_network = false;
    c.pump();
    assert_eq!(c.replica(1).high_watermark(), 3);
    let advanced: Vec<u64> = c
        .events
        .iter()
        .filter(|(node, _)| *node == NodeId(0))
        .filter_map(|(_, e)| match e {
            ReplicaEvent::HighWatermarkAdvanced { high_watermark } => Some(*high_watermark),
            _ => None,
        })
        .collect();
    assert!(advanced.windows(2).all(|w| w[0] < w[1]), "{advanced:?}");
}

#[test]
fn slow_follower_is_proposed_out_then_back_in() {
    let mut c = three(FSYNC, 2);
    for other in [0, 1] {
        c.cut.insert((NodeId(2), NodeId(other)));
        c.cut.insert((NodeId(other), NodeId(2)));
    }
    let token = c.produce(0, Acks::All, b"a");
    assert_eq!(produced(&c, token), None);
    c.advance_by(Duration::from_millis(4_000), Duration::from_millis(100));
    assert_eq!(c.state.isr, [NodeId(0), NodeId(1), NodeId(2)], "not yet lagging 5 s");
    c.advance_by(Duration::from_millis(2_000), Duration::from_millis(100));
    assert_eq!(c.state.isr, [NodeId(0), NodeId(1)]);
    assert_eq!(c.alters[0], (NodeId(0), 0, 0, vec![NodeId(0), NodeId(1)]));
    // Only once the controller committed the shrink did the write count as replicated.
    assert_eq!(produced(&c, token), Some(0));
    c.cut.clear();
    c.advance_by(Duration::from_millis(2_000), Duration::from_millis(100));
    assert_eq!(c.state.isr, [NodeId(0), NodeId(1), NodeId(2)]);
    assert_eq!(values(&c, 2), [v("a")]);
    assert_eq!(c.alters.len(), 2);
}

#[test]
fn a_refused_isr_change_is_proposed_again_after_backoff() {
    let mut c = three(FSYNC, 1);
    c.auto_alter = false;
    for other in [0, 1] {
        c.cut.insert((NodeId(other), NodeId(2)));
        c.cut.insert((NodeId(2), NodeId(other)));
    }
    c.advance_by(Duration::from_millis(6_000), Duration::from_millis(100));
    assert_eq!(c.alters.len(), 1);
    let (from, leader_epoch, partition_epoch, _) = c.alters[0].clone();
    // The controller refuses (say, the partition epoch moved on): back off, then again.
    let now = c.now;
    let node = c.node(from.0);
    let epochs = (leader_epoch, partition_epoch);
    node.replica.alter_partition_failed(now, epochs, true, &mut node.queue);
    assert!(c.replica(0).pending_isr().is_none());
    c.advance_by(Duration::from_millis(50), Duration::from_millis(10));
    assert_eq!(c.alters.len(), 1, "within the backoff");
    c.advance_by(Duration::from_millis(100), Duration::from_millis(10));
    assert_eq!(c.alters.len(), 2);
    // An unanswered change is proposed again after its timeout.
    c.advance_by(Duration::from_millis(3_100), Duration::from_millis(100));
    assert_eq!(c.alters.len(), 3);
}

#[test]
fn not_enough_replicas_before_append() {
    let mut c = Cluster::new(3, test_config(FSYNC, 2));
    c.auto_alter = false;
    c.elect(0, &[0]);
    let token = c.produce(0, Acks::All, b"a");
    assert_eq!(error_of(&c, token), &ReplicaError::NotEnoughReplicas { isr: 1, min: 2 });
    assert_eq!(error_of(&c, token).code(), 19);
    assert_eq!(c.replica(0).log().log_end_offset(), 0, "nothing appended");
    let token = c.produce(0, Acks::Leader, b"b");
    assert_eq!(produced(&c, token), Some(0));
}

#[test]
fn not_enough_replicas_after_append() {
    let mut c = three(FSYNC, 2);
    c.node(1).disk_paused = true;
    c.node(2).disk_paused = true;
    let token = c.produce(0, Acks::All, b"a");
    assert_eq!(produced(&c, token), None);
    // The controller drops both followers (their brokers were fenced, say).
    c.set_isr(&[0]);
    let error = error_of(&c, token);
    assert_eq!(error, &ReplicaError::NotEnoughReplicasAfterAppend { isr: 1, min: 2 });
    assert_eq!(error.code(), 20);
    // The strict min ISR rule: below the minimum the HW does not move (KIP-966).
    assert_eq!(c.replica(0).high_watermark(), 0);
    c.produce(0, Acks::Leader, b"b");
    assert_eq!(c.replica(0).high_watermark(), 0, "acks=1 writes do not move it either");
}

/// Node 0 leads epoch 0 and takes `a`, `b` on every node, then `c`, `d` alone (cut off);
/// node 1 leads epoch 1 and takes `e`. Returns the bench with node 0 still cut off and
/// unaware of epoch 1.
fn diverged() -> Cluster {
    let mut c = three(FSYNC, 1);
    c.produce(0, Acks::All, b"a");
    c.produce(0, Acks::All, b"b");
    for other in [1, 2] {
        c.cut.insert((NodeId(0), NodeId(other)));
        c.cut.insert((NodeId(other), NodeId(0)));
    }
    c.produce(0, Acks::Leader, b"c");
    c.produce(0, Acks::Leader, b"d");
    // The controller elects node 1; node 0 does not hear of it yet.
    c.state.leader = Some(NodeId(1));
    c.state.isr = vec![NodeId(1), NodeId(2)];
    c.state.leader_epoch += 1;
    c.state.partition_epoch += 1;
    c.send_state(1);
    c.send_state(2);
    c.pump();
    c.produce(1, Acks::All, b"e");
    assert_eq!(values(&c, 0), [v("a"), v("b"), v("c"), v("d")]);
    assert_eq!(values(&c, 1), [v("a"), v("b"), v("e")]);
    c
}

#[test]
fn follower_truncates_divergent_suffix_via_offset_for_leader_epoch() {
    let mut c = diverged();
    c.cut.clear();
    c.send_state(0);
    c.advance_by(Duration::from_millis(2_000), Duration::from_millis(100));
    assert_eq!(c.replica(0).role(), Role::Follower { leader: NodeId(1) });
    assert_eq!(values(&c, 0), [v("a"), v("b"), v("e")]);
    assert_eq!(c.batches_below(0, 3), c.batches_below(1, 3), "byte for byte");
    assert!(c.events.contains(&(NodeId(0), ReplicaEvent::Truncated { offset: 2 })));
    assert_eq!(c.replica(0).high_watermark(), 3);
}

#[test]
pub(super) fn follower_applies_leader_hw_only_after_truncation() {
    let mut c = diverged();
    let seen = c.events.len();
    c.cut.clear();
    c.send_state(0);
    c.advance_by(Duration::from_millis(2_000), Duration::from_millis(100));
    let node0: Vec<&ReplicaEvent> =
        c.events[seen..].iter().filter(|(n, _)| *n == NodeId(0)).map(|(_, e)| e).collect();
    let truncated = node0.iter().position(|e| matches!(e, ReplicaEvent::Truncated { .. }));
    let advanced =
        node0.iter().position(|e| matches!(e, ReplicaEvent::HighWatermarkAdvanced { .. }));
    assert!(truncated.unwrap() < advanced.unwrap(), "{node0:?}");
    // Node 0 had HW 2 and held `c`, `d` at 2 and 3: had it applied the leader's HW 3 first,
    // `c` would have been visible at offset 2.
}

#[test]
pub(super) fn follower_never_truncates_to_own_hw() {
    let mut c = three(FSYNC, 1);
    c.hold_network = true;
    c.produce(0, Acks::Leader, b"a");
    // The leader's parked fetches answer with `a` and HW 0; the followers take it.
    c.deliver_where(|from, _, m| {
        from == NodeId(0) && matches!(m, ReplicaMessage::FetchResponse(_))
    });
    assert_eq!(c.replica(2).log().log_end_offset(), 1);
    assert_eq!(c.replica(2).high_watermark(), 0);
    // The leader dies before learning that the followers hold `a`.
    c.crash(0);
    c.network.clear();
    c.hold_network = false;
    c.elect(1, &[1, 2]);
    // Node 2 kept `a` (its HW was 0): it truncated at the leader's end of epoch 0, 1.
    assert!(c.events.contains(&(NodeId(2), ReplicaEvent::Truncated { offset: 1 })));
    assert!(!c.events.contains(&(NodeId(2), ReplicaEvent::Truncated { offset: 0 })));
    assert_eq!(values(&c, 2), [v("a")]);
    assert_eq!(c.replica(1).high_watermark(), 1);
}

#[test]
fn follower_reconciles_over_several_epochs() {
    // Node 0 holds epochs 0 and 2 (its epoch 2 suffix never replicated); the new leader
    // holds epochs 0, 1 and 3: two rounds, one per epoch dropped.
    let mut c = three(FSYNC, 1);
    c.produce(0, Acks::All, b"a");
    let isolate = |c: &mut Cluster, node: u32| {
        for other in 0..3 {
            if other != node {
                c.cut.insert((NodeId(node), NodeId(other)));
                c.cut.insert((NodeId(other), NodeId(node)));
            }
        }
    };
    isolate(&mut c, 0);
    c.elect(1, &[1, 2]); // epoch 1
    c.produce(1, Acks::All, b"b");
    c.cut.clear();
    isolate(&mut c, 1);
    c.state.isr = vec![NodeId(0), NodeId(1), NodeId(2)];
    c.crash(1);
    // Node 0 comes back as leader of epoch 2 without ever having seen epoch 1.
    c.elect(0, &[0]);
    c.produce(0, Acks::Leader, b"x");
    c.crash(0);
    c.cut.clear();
    c.restart(1);
    c.elect(1, &[1, 2]); // epoch 3
    c.produce(1, Acks::All, b"c");
    c.restart(0);
    c.send_state(0);
    c.advance_by(Duration::from_millis(2_000), Duration::from_millis(100));
    assert_eq!(values(&c, 0), [v("a"), v("b"), v("c")]);
    assert_eq!(c.batches_below(0, 3), c.batches_below(1, 3));
}

/// KAFKA-6361: node 1 led an epoch briefly and wrote "b" that nobody else got, while node 0
/// held "x", unreplicated, from the epoch before; then node 0 leads again. Asked where node
/// 1's epoch ends, node 0 answers with the epoch before it (the newest it holds at or below
/// it) and where that one ends, so node 1 cuts "b" and takes "x".
#[test]
pub(super) fn leader_answers_an_epoch_it_lacks_with_the_one_before() {
    let mut c = three(FSYNC, 1);
    c.produce(0, Acks::All, b"a");
    c.pump();
    c.crash(2);
    c.hold_network = true;
    c.produce(0, Acks::Leader, b"x");
    c.pump();
    c.elect(1, &[1]);
    c.produce(1, Acks::Leader, b"b");
    c.pump();
    c.network.clear();
    c.elect(0, &[0, 1]);
    assert_eq!(c.replica(0).log().log_end_offset(), 2);
    c.hold_network = false;
    c.pump();
    let expected: Vec<Bytes> = vec![Bytes::from_static(b"a"), Bytes::from_static(b"x")];
    assert_eq!(c.values_below(0, 2), expected);
    assert_eq!(c.values_below(1, 2), expected, "the follower kept a suffix the leader lacks");
}

#[test]
fn leader_refuses_epoch_newer_than_its_own() {
    let mut c = three(FSYNC, 1);
    c.produce(0, Acks::All, b"a");
    c.hold_network = true;
    c.network.clear();
    // (current leader epoch, epoch asked about) -> (error, epoch, end offset)
    let table = [
        (0, 1, (75, -1, -1)),  // newer than the leader's own: refused (KAFKA-6361)
        (0, 0, (0, 0, 1)),     // its latest: ends at the LEO
        (1, 0, (75, -1, -1)),  // the asker knows a newer leader epoch
        (-1, 0, (74, -1, -1)), // the asker is fenced
    ];
    for (current, asked, (error, epoch, end)) in table {
        let request = OffsetForLeaderEpochRequest {
            topic: "t".into(),
            partition: 0,
            correlation_id: 9,
            replica_id: 1,
            current_leader_epoch: current,
            leader_epoch: asked,
        };
        c.deliver(NodeId(1), NodeId(0), ReplicaMessage::OffsetForLeaderEpoch(request));
        c.pump();
        let expected = OffsetForLeaderEpochResponse {
            topic: "t".into(),
            partition: 0,
            correlation_id: 9,
            error_code: error,
            current_leader_epoch: 0,
            leader_epoch: epoch,
            end_offset: end,
        };
        let sent = c.network.pop_front().expect("an answer");
        assert_eq!(
            sent,
            (NodeId(0), NodeId(1), ReplicaMessage::OffsetForLeaderEpochResponse(expected)),
            "current {current}, asked {asked}"
        );
        assert!(c.network.is_empty());
    }
}

#[test]
fn leader_answers_replica_fetches_exactly() {
    let mut c = three(FSYNC, 1);
    c.produce(0, Acks::All, b"a");
    c.hold_network = true;
    c.network.clear();
    let fetch = |current, offset, last_epoch| ReplicaFetch {
        topic: "t".into(),
        partition: 0,
        correlation_id: 5,
        replica_id: 2,
        current_leader_epoch: current,
        fetch_offset: offset,
        last_fetched_epoch: last_epoch,
        flushed_offset: offset,
        max_bytes: 1 << 20,
        max_wait_ms: 0,
        broker_epoch: 0,
    };
    // (request, error, records expected)
    let table = [
        (fetch(-1, 1, 0), 74, false), // stale epoch
        (fetch(3, 1, 0), 75, false),  // newer epoch
        (fetch(0, 2, 0), 1, false),   // ahead of the leader's LEO
        (fetch(0, 1, 7), 1, false),   // an epoch the leader never had: diverged
        (fetch(0, 1, 0), 0, false),   // caught up: nothing new
        (fetch(0, 0, -1), 0, true),   // from the start
    ];
    for (request, error, with_records) in table {
        let label = format!("{request:?}");
        c.deliver(NodeId(2), NodeId(0), ReplicaMessage::Fetch(request));
        c.pump();
        let (from, to, message) = c.network.pop_front().expect("an answer");
        assert_eq!((from, to), (NodeId(0), NodeId(2)));
        let ReplicaMessage::FetchResponse(response) = message else { panic!("{message:?}") };
        assert_eq!(response.error_code, error, "{label}");
        assert_eq!(response.correlation_id, 5);
        assert_eq!(response.leader_epoch, 0);
        assert_eq!((response.high_watermark, response.log_end_offset), (1, 1), "{label}");
        assert_eq!(!response.records.is_empty(), with_records, "{label}");
        assert!(c.network.is_empty());
    }
    // A non-replica is refused.
    c.deliver(NodeId(7), NodeId(0), ReplicaMessage::Fetch(fetch(0, 0, -1)));
    c.pump();
    let Some((_, _, ReplicaMessage::FetchResponse(r))) = c.network.pop_front() else { panic!() };
    assert_eq!(r.error_code, 6);
}

#[test]
fn stale_leader_is_fenced_by_epoch() {
    let mut c = three(FSYNC, 1);
    c.produce(0, Acks::All, b"a");
    let token = c.produce_with_epoch(0, Acks::All, b"b", Some(-1));
    assert_eq!(error_of(&c, token), &ReplicaError::FencedLeaderEpoch { request: -1, current: 0 });
    let token = c.produce_with_epoch(0, Acks::All, b"b", Some(4));
    assert_eq!(error_of(&c, token).code(), 75);
    // Node 0 is cut off and misses the election of node 1: the followers of epoch 1 find
    // it stale (UNKNOWN_LEADER_EPOCH to them) and it never acknowledges acks=all again.
    for other in [1, 2] {
        c.cut.insert((NodeId(other), NodeId(0)));
        c.cut.insert((NodeId(0), NodeId(other)));
    }
    c.state.leader = Some(NodeId(1));
    c.state.isr = vec![NodeId(1), NodeId(2)];
    c.state.leader_epoch += 1;
    c.state.partition_epoch += 1;
    c.send_state(1);
    c.send_state(2);
    c.pump();
    let stale = c.produce(0, Acks::All, b"lost");
    c.advance_by(Duration::from_millis(1_000), Duration::from_millis(100));
    assert_eq!(produced(&c, stale), None);
    let token = c.produce_with_epoch(1, Acks::All, b"c", Some(1));
    assert_eq!(produced(&c, token), Some(1));
    // A follower asked to follow in epoch 1 by a stale leader epoch 0 request is fenced.
    let request = ReplicaFetch {
        topic: "t".into(),
        partition: 0,
        correlation_id: 1,
        replica_id: 0,
        current_leader_epoch: 0,
        fetch_offset: 0,
        last_fetched_epoch: -1,
        flushed_offset: 0,
        max_bytes: 1,
        max_wait_ms: 0,
        broker_epoch: 0,
    };
    c.hold_network = true;
    c.cut.clear();
    c.deliver(NodeId(0), NodeId(1), ReplicaMessage::Fetch(request));
    c.pump();
    let Some((_, _, ReplicaMessage::FetchResponse(r))) = c.network.pop_back() else { panic!() };
    assert_eq!(r.error_code, 74);
}

#[test]
fn new_leader_fails_waiting_producers_of_old_role() {
    let mut c = three(FSYNC, 1);
    c.node(2).disk_paused = true;
    let token = c.produce(0, Acks::All, b"a");
    assert_eq!(produced(&c, token), None);
    c.elect(1, &[0, 1, 2]);
    assert_eq!(error_of(&c, token), &ReplicaError::NotLeaderOrFollower);
    assert_eq!(error_of(&c, token).code(), 6);
    let token = c.produce(0, Acks::All, b"b");
    assert_eq!(error_of(&c, token), &ReplicaError::NotLeaderOrFollower);
}

#[test]
fn follower_behind_log_start_restarts_at_leader_start() {
    let log = LogConfig { retention_bytes: 0, ..log_config() };
    let mut c = Cluster::with_log(3, test_config(FSYNC, 1), log);
    c.crash(2);
    c.elect(0, &[0, 1]);
    let value = vec![b'x'; 900];
    for _ in 0..12 {
        c.produce(0, Acks::All, &value);
    }
    let start = c.apply_retention(0);
    assert!(start > 0);
    c.restart(2);
    c.send_state(2);
    c.advance_by(Duration::from_millis(1_000), Duration::from_millis(100));
    assert_eq!(c.replica(2).log().log_start_offset(), start);
    assert_eq!(c.replica(2).log().log_end_offset(), 12);
    assert_eq!(c.batches_below(2, 12), c.batches_below(0, 12));
    assert_eq!(c.state.isr, [NodeId(0), NodeId(1), NodeId(2)]);
}

#[test]
fn duplicated_and_reordered_fetch_responses_are_harmless() {
    let mut c = three(FSYNC, 2);
    c.hold_network = true;
    let mut tokens = Vec::new();
    for round in 0..6 {
        tokens.push(c.produce(0, Acks::All, format!("v{round}").as_bytes()));
        // Every message twice, newest first.
        let mut queued: Vec<_> = c.network.drain(..).collect();
        queued.reverse();
        for (from, to, message) in queued {
            c.deliver(from, to, message.clone());
            c.pump();
            c.deliver(from, to, message);
            c.pump();
        }
    }
    c.hold_network = false;
    c.advance_by(Duration::from_millis(3_000), Duration::from_millis(100));
    for (i, token) in tokens.iter().enumerate() {
        assert_eq!(produced(&c, *token), Some(i as u64));
    }
    for node in [1, 2] {
        assert_eq!(c.batches_below(node, 6), c.batches_below(0, 6));
    }
    assert_eq!(c.replica(0).high_watermark(), 6);
}

#[test]
pub(super) fn consumers_read_only_below_the_hw() {
    let mut c = three(FSYNC, 1);
    c.produce(0, Acks::All, b"a");
    c.node(2).disk_paused = true;
    c.produce(0, Acks::Leader, b"b");
    assert_eq!(c.replica(0).log().log_end_offset(), 2);
    let token = c.fetch(0, 0);
    let Some(ReplicaResponse::Fetched { records, high_watermark, .. }) = c.reply(token) else {
        panic!()
    };
    assert_eq!(*high_watermark, 1);
    // Every batch returned (`build::values` reads one): `b`, above the HW, must not be.
    let scan = crate::core::log::batch::BatchScan::new(records, usize::MAX >> 1);
    let read: Vec<Bytes> = scan
        .flat_map(|(at, header)| {
            crate::core::log::batch::build::values(&records[at..at + header.total_bytes()])
        })
        .collect();
    assert_eq!(read, [v("a")]);
    let token = c.fetch(1, 0);
    assert_eq!(error_of(&c, token), &ReplicaError::NotLeaderOrFollower);
}

/// A leader's log reads ahead of a consumer that catches up one batch a fetch, and the
/// replica's timer drops the range when no fetch takes it.
#[test]
fn a_range_read_ahead_for_a_consumer_is_dropped_by_the_replica_timer() {
    // No tail cache: these fetches are read from disk, and read ahead of.
    let log = LogConfig { tail_cache_bytes: 0, ..log_config() };
    let mut c = Cluster::with_log(3, test_config(FSYNC, 1), log);
    c.elect(0, &[0, 1, 2]);
    for _ in 0..10 {
        c.produce(0, Acks::All, &[b'x'; 500]);
    }
    let mut offset = 0;
    for _ in 0..2 {
        // One batch of about 570 bytes a fetch: the second does not fit in 1,000.
        let token = c.fetch_bytes(0, offset, 1_000);
        let Some(ReplicaResponse::Fetched { records, .. }) = c.reply(token) else { panic!() };
        let header = crate::core::log::batch::BatchHeader::parse(records).unwrap();
        assert_eq!(header.total_bytes(), records.len(), "one batch");
        offset = header.next_offset() as u64;
    }
    let log = c.replica(0).log();
    assert_eq!(log.reads_ahead_taken(), 0);
    let until = log.read_ahead_deadline().expect("the range after the second answer is read");
    assert!(c.replica(0).poll_timeout().is_some_and(|deadline| deadline <= until));
    let token = c.fetch_bytes(0, offset, 1_000);
    assert!(matches!(c.reply(token), Some(ReplicaResponse::Fetched { .. })));
    assert_eq!(c.replica(0).log().reads_ahead_taken(), 1);
    let until = c.replica(0).log().read_ahead_deadline().expect("read on");
    c.advance_by(until.saturating_duration_since(c.now), Duration::from_millis(250));
    assert_eq!(c.replica(0).log().read_ahead_deadline(), None, "dropped at its deadline");
}

#[test]
fn a_stale_or_duplicate_state_is_ignored() {
    let mut c = three(FSYNC, 1);
    let state = c.state.clone();
    c.elect(1, &[0, 1, 2]);
    let now = c.now;
    let node = c.node(1);
    node.replica.set_partition_state(now, state, &mut node.queue);
    assert_eq!(c.replica(1).role(), Role::Leader);
    assert_eq!(c.replica(1).leader_epoch(), 1);
}

#[test]
fn acks_all_is_answered_in_one_fetch_round_trip() {
    let mut c = three(FSYNC, 2);
    c.hold_network = true;
    let token = c.produce(0, Acks::All, b"a");
    // The followers' parked fetches are answered at once with the batch...
    let kinds = |c: &Cluster| -> Vec<(u32, u32, &'static str)> {
        c.network
            .iter()
            .map(|(from, to, m)| {
                let kind = match m {
                    ReplicaMessage::Fetch(_) => "fetch",
                    ReplicaMessage::FetchResponse(r) if r.records.is_empty() => "empty",
                    ReplicaMessage::FetchResponse(_) => "records",
                    _ => "other",
                };
                (from.0, to.0, kind)
            })
            .collect()
    };
    assert_eq!(kinds(&c), [(0, 1, "records"), (0, 2, "records")]);
    c.deliver_where(|_, _, _| true);
    // ...each follower appends, fsyncs and fetches again; those fetches carry the HW.
    assert_eq!(kinds(&c), [(1, 0, "fetch"), (2, 0, "fetch")]);
    assert_eq!(produced(&c, token), None);
    c.deliver_where(|_, _, _| true);
    assert_eq!(produced(&c, token), Some(0));
}

#[test]
fn idle_follower_fetches_are_parked_until_their_wait_ends() {
    let mut c = three(FSYNC, 1);
    let before = c.network.len();
    c.hold_network = true;
    let mut fetches = 0;
    for _ in 0..20 {
        c.advance_by(Duration::from_millis(100), Duration::from_millis(100));
        fetches +=
            c.network.iter().filter(|(_, _, m)| matches!(m, ReplicaMessage::Fetch(_))).count();
        c.deliver_where(|_, _, _| true);
    }
    // 2 s idle with a 500 ms wait: about four fetches per follower, not a busy loop.
    assert_eq!(before, 0);
    assert!((6..=10).contains(&fetches), "{fetches} fetches");
}

#[test]
fn leader_whose_log_failed_stops_leading_its_epoch() {
    let mut c = three(FSYNC, 1);
    c.produce(0, Acks::All, b"a");
    c.node(0).disk.syncs_before_failure = Some(0);
    c.auto_alter = false;
    let waiting = c.produce(0, Acks::All, b"b");
    assert!(matches!(error_of(&c, waiting), ReplicaError::Log(LogError::Storage { .. })));
    assert!(
        c.events.iter().any(|(n, e)| *n == NodeId(0) && matches!(e, ReplicaEvent::Failed { .. }))
    );
    // Followers may hold what the failure took back: no more writes in epoch 0 from this
    // replica, recovered or not...
    c.advance_by(Duration::from_millis(1_500), Duration::from_millis(100));
    assert!(c.replica(0).log().is_ready(), "recovered");
    let token = c.produce(0, Acks::All, b"c");
    assert_eq!(error_of(&c, token), &ReplicaError::LeadershipSuspended { leader_epoch: 0 });
    assert_eq!(error_of(&c, token).code(), 56);
    // ...and it resigned the epoch: the controller elects the next ISR member without it.
    let (from, leader_epoch, partition_epoch, _) = c.alters.last().cloned().expect("resigned");
    assert_eq!((from, leader_epoch), (NodeId(0), 0));
    c.auto_alter = true;
    c.answer_resign(from, leader_epoch, partition_epoch);
    assert_eq!((c.state.leader, c.state.leader_epoch), (Some(NodeId(1)), 1));
    assert_eq!(c.state.isr, [NodeId(1), NodeId(2)]);
    let token = c.produce(1, Acks::All, b"d");
    assert!(produced(&c, token).is_some());
    c.advance_by(Duration::from_millis(1_000), Duration::from_millis(100));
    let leo = c.replica(1).log().log_end_offset();
    assert_eq!(c.batches_below(0, leo), c.batches_below(1, leo));
}

#[test]
fn a_sole_replica_serves_again_after_its_log_recovered() {
    let mut c = Cluster::new(1, test_config(FSYNC, 1));
    c.elect(0, &[0]);
    c.node(0).disk.syncs_before_failure = Some(0);
    let token = c.produce(0, Acks::Leader, b"a");
    assert!(matches!(error_of(&c, token), ReplicaError::Log(LogError::Storage { .. })));
    c.advance_by(Duration::from_millis(1_500), Duration::from_millis(100));
    let token = c.produce(0, Acks::Leader, b"b");
    assert!(produced(&c, token).is_some());
}

#[test]
fn follower_whose_log_failed_recovers_and_catches_up() {
    let mut c = three(FSYNC, 1);
    c.node(2).disk.syncs_before_failure = Some(0);
    c.produce(0, Acks::All, b"a");
    assert!(
        c.events.iter().any(|(n, e)| *n == NodeId(2) && matches!(e, ReplicaEvent::Failed { .. }))
    );
    c.produce(0, Acks::All, b"b");
    c.advance_by(Duration::from_millis(3_000), Duration::from_millis(100));
    assert_eq!(values(&c, 2), [v("a"), v("b")]);
    assert_eq!(c.replica(2).high_watermark(), 2);
}

/// Under `replicate`: node 2's sync fails and its unsynced tail ("a", "b") is gone, while it
/// cannot reach the leader to fetch it again.
fn follower_2_loses_its_tail(c: &mut Cluster) {
    c.produce(0, Acks::All, b"a");
    c.produce(0, Acks::All, b"b");
    assert_eq!(values(c, 2), [v("a"), v("b")]);
    c.auto_alter = false;
    c.cut.extend([(NodeId(0), NodeId(2)), (NodeId(2), NodeId(0))]);
    let node = c.node(2);
    // Its first flush persists the epoch cache, then syncs the segment: that sync fails.
    node.disk.syncs_before_failure = Some(1);
    node.replica.flush(&mut node.queue);
    c.pump();
    c.node(2).disk.crash();
    c.advance_by(Duration::from_millis(1_500), Duration::from_millis(100));
    assert!(c.replica(2).log().is_ready(), "recovered");
    assert_eq!(c.replica(2).log().log_end_offset(), 0, "its tail is gone");
}

#[test]
fn a_replica_elected_after_losing_its_tail_resigns_for_one_that_holds_it() {
    let mut c = three(REPLICATE, 1);
    follower_2_loses_its_tail(&mut c);
    // Its request to leave the ISR is not committed yet when the leader dies, and the
    // controller elects it: it resigns at once instead of leading with less than the HW.
    c.crash(0);
    c.elect(2, &[1, 2]);
    let epoch = c.state.leader_epoch;
    let token = c.produce(2, Acks::All, b"c");
    assert_eq!(error_of(&c, token), &ReplicaError::LeadershipSuspended { leader_epoch: epoch });
    let (from, leader_epoch, partition_epoch, _) = c.alters.last().cloned().expect("resigned");
    assert_eq!((from, leader_epoch), (NodeId(2), epoch));
    // The controller elects node 1, which holds "a" and "b"; node 2 fetches them back...
    c.answer_resign(from, leader_epoch, partition_epoch);
    assert_eq!((c.state.leader, c.state.isr.clone()), (Some(NodeId(1)), vec![NodeId(1)]));
    c.advance_by(Duration::from_millis(1_000), Duration::from_millis(100));
    assert_eq!(values(&c, 2), [v("a"), v("b")]);
    // ...and having held the HW again, it leads when elected, without resigning.
    c.auto_alter = true;
    c.elect(2, &[1, 2]);
    let token = c.produce(2, Acks::All, b"c");
    assert_eq!(produced(&c, token), Some(2));
}

#[test]
fn the_last_isr_member_after_losing_its_tail_resigns_once_then_leads() {
    let mut c = three(REPLICATE, 1);
    follower_2_loses_its_tail(&mut c);
    // The others are gone and it is the only ISR member: it resigns once, in case the
    // controller knows an eligible replica; re-elected, nobody was, and it leads.
    c.crash(0);
    c.crash(1);
    c.auto_alter = true;
    c.elect(2, &[2]);
    let resigned = |c: &Cluster, epoch| c.alters.iter().filter(|a| a.1 == epoch).count();
    assert_eq!(resigned(&c, 1), 1);
    assert_eq!((c.state.leader, c.state.leader_epoch), (Some(NodeId(2)), 2));
    assert_eq!(resigned(&c, 2), 0);
    let token = c.produce(2, Acks::All, b"c");
    assert_eq!(produced(&c, token), Some(0));
}

#[test]
fn a_follower_whose_epoch_the_leader_no_longer_holds_keeps_nothing_below_its_start() {
    let log = LogConfig { retention_bytes: 0, ..log_config() };
    let mut c = Cluster::with_log(3, test_config(FSYNC, 1), log);
    c.elect(0, &[0, 1, 2]);
    c.produce(0, Acks::All, b"a");
    // Node 2 leads epoch 1 cut off from the others and writes offsets 1..13 alone, then
    // goes down...
    c.cut.extend([(NodeId(2), NodeId(0)), (NodeId(2), NodeId(1))]);
    c.cut.extend([(NodeId(0), NodeId(2)), (NodeId(1), NodeId(2))]);
    c.elect(2, &[2]);
    for _ in 0..12 {
        c.produce(2, Acks::Leader, &[b'x'; 900]);
    }
    c.crash(2);
    // ...while node 0 leads epoch 2, writes other records from offset 1, and retention
    // removes every record of epochs 0 and 1 from its log.
    c.elect(0, &[0, 1]);
    for _ in 0..12 {
        c.produce(0, Acks::All, &[b'y'; 900]);
    }
    let start = c.apply_retention(0);
    assert!(start > 1, "retention took the leader past offset 1");
    // Node 2 comes back with a log end past the leader's start: the leader holds nothing of
    // its epoch 1 to compare, so none of its "x" records may stay, below that start or not.
    c.cut.clear();
    c.restart(2);
    c.send_state(2);
    c.advance_by(Duration::from_millis(1_000), Duration::from_millis(100));
    assert_eq!(c.replica(2).log().log_start_offset(), start);
    assert_eq!(c.batches_below(2, 13), c.batches_below(0, 13));
}
