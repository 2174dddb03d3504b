//! The cluster's plumbing in a world whose nodes are today's (they send no messages of their
//! own): messages the test sends through `World::send_peer`, formatting, wipes, clock jumps
//! and the wipe atlas.

use cairn_node::core::io::{FileName, NodeId};
use cairn_node::core::node::{Message, MessageKind};
use cairn_node::core::replica::ReplicaFetchResponse;

use crate::faults::{FaultAction, NodeRef};
use crate::params::Params;
use crate::run::EVENTS_MAX;
use crate::scenario::Scenario;
use crate::world::{NODES_REPLICATE, World};

/// A calm 3-node world: no random faults, no message or disk faults, a short run.
fn calm(nodes: u32) -> World {
    let text = format!(
        "[cluster]\nnodes = {nodes}\n[workload]\nclients = 1\nsafety_s = 1.0\n\
         [faults]\nrandom = false\natlas = \"recoverable\"\nnet_loss = 0.0\n\
         net_duplicate = 0.0\nnet_reorder = 0.0\ndisk_sync_failure = 0.0\n\
         disk_read_bit_flip = 0.0\n"
    );
    let mut params = Params::draw(7);
    Scenario::parse(&text).unwrap().apply(&mut params).unwrap();
    World::new(7, params, &[])
}

/// A message the receiving node drops without answering (an answer to a fetch it never
/// sent, for a partition it does not hold), so that only the test's messages are counted.
fn stray_answer() -> Message {
    Message::new(MessageKind::FetchResponse(ReplicaFetchResponse::default()))
}

fn id(n: u32) -> NodeRef {
    NodeRef::Id(n)
}

#[test]
fn messages_between_nodes_are_delivered_and_counted() {
    let mut world = calm(3);
    for _ in 0..10 {
        world.send_peer(0, NodeId(2), stray_answer());
    }
    world.send_peer(2, NodeId(1), stray_answer());
    world.run_first_ms(200);
    assert_eq!(world.violation, None);
    let c = &world.coverage;
    assert_eq!((c.messages_sent, c.messages_delivered, c.messages_dropped), (11, 11, 0));
}

#[test]
fn a_one_way_partition_drops_one_direction_only() {
    let mut world = calm(3);
    let cut =
        FaultAction::Partition { from: vec![id(1)], to: vec![id(2)], one_way: true, ms: None };
    world.apply(cut, false);
    world.send_peer(0, NodeId(2), stray_answer()); // 1 -> 2: cut
    world.send_peer(1, NodeId(1), stray_answer()); // 2 -> 1: open
    world.send_peer(0, NodeId(3), stray_answer()); // 1 -> 3: open
    world.run_first_ms(200);
    let c = &world.coverage;
    assert_eq!((c.messages_sent, c.messages_delivered, c.messages_dropped), (3, 2, 1));
}

#[test]
fn an_isolated_node_neither_sends_nor_receives() {
    let mut world = calm(3);
    world.apply(FaultAction::Isolate { node: id(2), ms: 10_000 }, false);
    world.send_peer(1, NodeId(1), stray_answer());
    world.send_peer(0, NodeId(2), stray_answer());
    world.send_peer(0, NodeId(3), stray_answer());
    world.run_first_ms(200);
    let c = &world.coverage;
    assert_eq!((c.messages_delivered, c.messages_dropped), (1, 2));
}

#[test]
fn messages_in_flight_to_a_node_that_crashed_are_dropped() {
    let mut world = calm(3);
    world.send_peer(0, NodeId(2), stray_answer());
    world.apply(FaultAction::Crash { node: id(2), down_ms: None }, false);
    // Sent while it is down: nobody receives it, even once it restarted.
    world.send_peer(0, NodeId(2), stray_answer());
    world.apply(FaultAction::Restart { node: id(2) }, false);
    // Sent to the new incarnation: delivered.
    world.send_peer(0, NodeId(2), stray_answer());
    world.run_first_ms(200);
    let c = &world.coverage;
    assert_eq!((c.messages_sent, c.messages_delivered, c.messages_dropped), (3, 1, 2));
}

#[test]
fn every_node_runs_the_same_cluster_with_its_own_address() {
    let world = calm(5);
    let voters = world.params.voters();
    assert!(voters == 3 || voters == 5, "{voters}");
    let configs: Vec<_> = (0..5).map(|i| world.shared_cluster(i)).collect();
    for (i, config) in configs.iter().enumerate() {
        assert_eq!(config.advertised_host, format!("node-{}", i + 1));
        assert_eq!(config.advertised_port, 9092);
        assert_eq!(config.voters, configs[0].voters);
        assert_eq!(config.learners, configs[0].learners);
        assert_eq!(config.cluster_id, world.params.cluster_id);
        assert_eq!(config.voters.len() + config.learners.len(), 5);
        let bootstrap = FileName::new("raft/bootstrap");
        assert!(world.nodes[i].disk.disk.durable_len(&bootstrap).is_some_and(|len| len > 0));
    }
    assert_eq!(calm(3).shared_cluster(0).voters, [NodeId(1), NodeId(2), NodeId(3)]);
}

#[test]
fn every_node_runs_the_one_shared_cluster() {
    const { assert!(NODES_REPLICATE) };
    let world = calm(3);
    for i in 0..3 {
        assert_eq!(world.cluster_config(i), world.shared_cluster(i));
    }
}

#[test]
fn a_wiped_node_is_formatted_to_rejoin_and_restarted() {
    let mut world = calm(3);
    world.run(EVENTS_MAX / 1000);
    let before = world.nodes[1].incarnation;
    world.violation = None;
    world.done = false;
    world.apply(FaultAction::Wipe { node: id(2), down_ms: Some(50) }, false);
    let files = world.nodes[1].disk.disk.files();
    assert!(files.iter().all(|f| f.as_str().starts_with("raft/")), "{files:?}");
    assert!(files.iter().any(|f| f.as_str() == "raft/bootstrap"), "{files:?}");
    assert!(world.nodes[1].node.is_none(), "down until its restart");
    assert!(world.nodes[1].incarnation > before);
    assert_eq!(world.coverage.faults.get("wipe"), Some(&1));
}

#[test]
fn a_clock_jump_moves_the_nodes_time_forward_only() {
    let mut world = calm(3);
    let before = world.local_now(0);
    world.apply(FaultAction::ClockJump { node: id(1), seconds: 30 }, false);
    let after = world.local_now(0);
    assert!(after.as_nanos() >= before.as_nanos() + 30_000_000_000);
    let other = world.local_now(1).as_nanos();
    assert!(other + 29_000_000_000 < after.as_nanos(), "only node 1 jumped");
}

#[test]
fn the_nemesis_wipes_at_most_a_minority() {
    let mut world = calm(5);
    world.params.voters_fixed = Some(5);
    let wipe = |n| FaultAction::Wipe { node: id(n), down_ms: None };
    assert!(world.admit(wipe(1), true).is_some());
    world.wiped.insert(0);
    assert!(world.admit(wipe(1), true).is_some(), "the same node again");
    assert!(world.admit(wipe(2), true).is_some());
    world.wiped.insert(1);
    assert_eq!(world.admit(wipe(3), true), None, "a third of five");
    assert!(world.admit(wipe(3), false).is_some(), "a scenario's timeline as written");
}

#[test]
fn roles_resolve_to_the_nodes_holding_them() {
    let mut world = calm(3);
    let action = FaultAction::Crash { node: NodeRef::Controller, down_ms: None };
    assert_eq!(world.admit(action, false), Some(FaultAction::Crash { node: id(1), down_ms: None }));
    // Once the quorum elected a controller and the topics have leaders, roles name them.
    world.run(EVENTS_MAX / 100);
    let controller = world.controller().expect("a controller within the run");
    let action = FaultAction::Crash { node: NodeRef::Controller, down_ms: None };
    let resolved = FaultAction::Crash { node: id(controller + 1), down_ms: None };
    assert_eq!(world.admit(action, false), Some(resolved));
    let part = &world.work.parts[0];
    let (topic, partition) = (part.id.topic.to_string(), part.id.partition as u32);
    let leader = world.leader_of(&topic, partition).expect("a leader within the run");
    let follower = world.follower_of(&topic, partition).expect("a follower within the run");
    assert_ne!(leader, follower);
    let action = FaultAction::Pause { node: NodeRef::Leader { topic, partition }, ms: 5 };
    assert_eq!(
        world.admit(action, false),
        Some(FaultAction::Pause { node: id(leader + 1), ms: 5 })
    );
}

/// Node messages under loss, duplication and reordering replay from the seed: same hash and
/// counts twice, and the faults did strike.
#[test]
fn node_messages_replay_from_the_seed() {
    let run = |seed: u64| {
        let text = "[cluster]\nnodes = 3\n[workload]\nclients = 1\nsafety_s = 1.0\n\
                    [faults]\nrandom = false\nnet_loss = 0.2\nnet_duplicate = 0.2\n\
                    net_reorder = 0.2\n";
        let mut params = Params::draw(seed);
        Scenario::parse(text).unwrap().apply(&mut params).unwrap();
        let mut world = World::new(seed, params, &[]);
        for i in 0..60 {
            world.send_peer(i % 3, NodeId((i + 1) % 3 + 1), stray_answer());
        }
        world.run_first_ms(200);
        let c = &world.coverage;
        (world.hash, c.messages_sent, c.messages_delivered, c.messages_dropped)
    };
    let first = run(11);
    assert_eq!(first, run(11));
    let (_, sent, delivered, dropped) = first;
    assert_eq!(sent, 60);
    assert!(dropped > 0 && delivered > sent - dropped, "loss and duplicates: {first:?}");
    assert_ne!(first.0, run(12).0);
}

/// A fault of the timeline that names a role nobody holds yet waits until someone does:
/// "crash follower:orders-0" at 0 s, before the topic exists, crashes a follower once it
/// has one. Struck at once, it would crash the node a follower falls back to (node 2), and
/// a topic of replication factor 3 could not be created with two brokers left.
#[test]
fn a_timeline_fault_waits_for_its_role_to_be_held() {
    let text = "[cluster]\nnodes = 3\n[[topic]]\nname = \"orders\"\npartitions = 1\n\
                replication_factor = 3\n[workload]\nclients = 1\nsafety_s = 6.0\n\
                [faults]\nrandom = false\natlas = \"recoverable\"\nnet_loss = 0.0\n\
                net_duplicate = 0.0\nnet_reorder = 0.0\ndisk_sync_failure = 0.0\n\
                disk_read_bit_flip = 0.0\n\
                [[at]]\ns = 0.0\ndo = \"crash\"\nnode = \"follower:orders-0\"\n";
    let scenario = Scenario::parse(text).unwrap();
    let mut params = Params::draw(7);
    scenario.apply(&mut params).unwrap();
    let mut world = World::new(7, params, &scenario.at);
    world.run_first_ms(5_000);
    assert_eq!(world.violation, None);
    assert_eq!(world.coverage.crashes, 1, "the crash struck");
    let leader = world.leader_of("orders", 0).expect("the topic was created, and has a leader");
    let down: Vec<usize> =
        world.nodes.iter().enumerate().filter(|(_, n)| n.node.is_none()).map(|(i, _)| i).collect();
    assert_eq!(down.len(), 1);
    assert_ne!(down[0] as u32, leader, "the node crashed was a follower, not the leader");
}
