//! Random sequences of requests, timeouts, commits and failovers, from seeds: after every
//! step the controller's invariants hold (both images, speculation agreeing with the
//! committed image once nothing is pending), a follower applying the same committed batches
//! holds the same image, snapshots round-trip, and every request is answered exactly once.

use std::collections::{BTreeMap, BTreeSet};

use rand::Rng;
use rand::seq::IndexedRandom;

use super::messages::*;
use super::settings::{MIN_INSYNC_REPLICAS, UNCLEAN_LEADER_ELECTION_ENABLE};
use super::tests::{Harness, heartbeat, register};
use super::*;
use crate::core::rng::{CoreRng, seeded};

const BROKERS: i32 = 4;
const NAMES: [&str; 3] = ["a", "b", "c"];

/// What the brokers know, and what happened, over one run.
#[derive(Default)]
struct World {
    /// Each broker's incarnation and the epoch its registration answer gave it.
    brokers: BTreeMap<i32, (u64, Option<u64>)>,
    /// Requests sent and not yet answered, with the broker a registration is for.
    outstanding: BTreeMap<Token, Option<i32>>,
    /// Valid AlterPartition requests sent: they must not be refused.
    valid_alters: BTreeSet<Token>,
    counts: BTreeMap<&'static str, u32>,
}

impl World {
    fn count(&mut self, what: &'static str) {
        *self.counts.entry(what).or_default() += 1;
    }

    fn sent(&mut self, token: Token, registers: Option<i32>) {
        assert!(self.outstanding.insert(token, registers).is_none());
    }

    /// Takes every reply the harness collected, checking each answers one request once.
    fn take_replies(&mut self, h: &mut Harness) {
        h.outputs();
        for (token, response) in std::mem::take(&mut h.replies) {
            let registers = self.outstanding.remove(&token).expect("one answer per request");
            if self.valid_alters.remove(&token) {
                assert!(
                    [0, 41].contains(&response.error_code),
                    "a valid AlterPartition was refused: {response:?}"
                );
                self.count(if response.error_code == 0 { "alter accepted" } else { "alter lost" });
            }
            if let (Some(node_id), Some(ReplyKind::RegisterBroker(reply))) =
                (registers, &response.reply)
            {
                self.brokers.get_mut(&node_id).expect("registered").1 = Some(reply.broker_epoch);
            }
            if response.error_code != 0 {
                self.count("refused");
            }
        }
    }
}

fn step(h: &mut Harness, world: &mut World, rng: &mut CoreRng) {
    match rng.random_range(0..100) {
        0..8 => send_register(h, world, rng),
        8..30 => send_heartbeat(h, world, rng),
        30..42 => h.advance(rng.random_range(0..700)),
        42..50 => send_create(h, world, rng),
        50..53 => {
            send_simple(h, world, rng, |name| RequestKind::DeleteTopic(DeleteTopicRequest { name }))
        }
        53..57 => {
            let count = rng.random_range(1..5);
            send_simple(h, world, rng, |name| {
                RequestKind::CreatePartitions(CreatePartitionsRequest {
                    name,
                    count,
                    validate_only: false,
                })
            })
        }
        57..62 => send_alter_configs(h, world, rng),
        62..72 => send_alter_partition(h, world, rng),
        72..75 => {
            let broker_id = rng.random_range(1..=BROKERS);
            let broker_epoch = world.brokers.get(&broker_id).and_then(|b| b.1).unwrap_or(0);
            let request = AllocateProducerIdsRequest { broker_id, broker_epoch };
            let token = h.send(RequestKind::AllocateProducerIds(request));
            world.sent(token, None);
        }
        75..97 => {
            if !h.outputs().is_empty() || !h.proposed.is_empty() {
                h.commit_one();
            }
        }
        _ => fail_over(h, world, rng),
    }
}

fn send_register(h: &mut Harness, world: &mut World, rng: &mut CoreRng) {
    let node_id = rng.random_range(1..=BROKERS);
    let entry = world.brokers.entry(node_id).or_insert((rng.random(), None));
    if entry.1.is_some() && rng.random_bool(0.3) {
        // A restart: a new incarnation that knows no epoch yet.
        *entry = (rng.random(), None);
    }
    let token = h.send(register(node_id, entry.0));
    world.sent(token, Some(node_id));
}

fn send_heartbeat(h: &mut Harness, world: &mut World, rng: &mut CoreRng) {
    let node_id = rng.random_range(1..=BROKERS);
    let Some(&(_, Some(epoch))) = world.brokers.get(&node_id) else { return };
    let offset = if rng.random_bool(0.8) { h.index } else { epoch.saturating_sub(1) };
    let shutdown = rng.random_bool(0.03);
    let token = h.send(heartbeat(node_id, epoch, offset, shutdown));
    world.sent(token, None);
}

fn send_create(h: &mut Harness, world: &mut World, rng: &mut CoreRng) {
    let min_isr = rng.random_range(1..=3).to_string();
    let unclean = rng.random_bool(0.3).to_string();
    let config = [
        (MIN_INSYNC_REPLICAS.to_string(), min_isr),
        (UNCLEAN_LEADER_ELECTION_ENABLE.to_string(), unclean),
    ];
    let request = CreateTopicRequest {
        name: NAMES.choose(rng).unwrap().to_string(),
        partitions: rng.random_range(1..=4),
        replication_factor: rng.random_range(1..=3),
        config: config.into(),
        validate_only: rng.random_bool(0.1),
    };
    let token = h.send(RequestKind::CreateTopic(request));
    world.sent(token, None);
}

fn send_simple(
    h: &mut Harness,
    world: &mut World,
    rng: &mut CoreRng,
    make: impl FnOnce(String) -> RequestKind,
) {
    let token = h.send(make(NAMES.choose(rng).unwrap().to_string()));
    world.sent(token, None);
}

fn send_alter_configs(h: &mut Harness, world: &mut World, rng: &mut CoreRng) {
    let change = match rng.random_range(0..3) {
        0 => ConfigChangeMessage {
            key: MIN_INSYNC_REPLICAS.into(),
            value: Some(rng.random_range(1..=3).to_string()),
        },
        1 => ConfigChangeMessage {
            key: UNCLEAN_LEADER_ELECTION_ENABLE.into(),
            value: Some(rng.random_bool(0.5).to_string()),
        },
        _ => ConfigChangeMessage { key: MIN_INSYNC_REPLICAS.into(), value: None },
    };
    let changes = vec![change];
    send_simple(h, world, rng, |name| {
        RequestKind::AlterConfigs(AlterConfigsRequest { name, changes, validate_only: false })
    });
}

/// An AlterPartition from the partition's leader as the speculative image has it: valid, or
/// with one thing wrong.
fn send_alter_partition(h: &mut Harness, world: &mut World, rng: &mut CoreRng) {
    let image = h.controller.speculative_image().expect("active").clone();
    let partitions: Vec<(TopicId, i32, PartitionState)> = (image.topics())
        .flat_map(|t| (0..).zip(&t.partitions).map(move |(p, s)| (t.id, p, s.clone())))
        .filter(|(_, _, s)| s.leader != NO_LEADER)
        .collect();
    let Some((id, partition, state)) = partitions.choose(rng).cloned() else { return };
    let leader = image.broker(state.leader).expect("leaders are registered");
    // Members joining must be live; the leader stays.
    let new_isr: Vec<i32> = (state.replicas.iter().copied())
        .filter(|r| {
            *r == state.leader
                || (rng.random_bool(0.6) && (state.isr.contains(r) || image.is_live(*r)))
        })
        .collect();
    // KIP-903: each member at the epoch the leader heard from it (the current one here).
    let new_isr_broker_epochs =
        new_isr.iter().map(|r| image.broker(*r).map_or(0, |broker| broker.epoch)).collect();
    let mut request = AlterPartitionRequest {
        broker_id: state.leader,
        broker_epoch: leader.epoch,
        topic_id: id.to_vec(),
        partition,
        leader_epoch: state.leader_epoch,
        partition_epoch: state.partition_epoch,
        new_isr,
        resign: rng.random_bool(0.1),
        new_isr_broker_epochs,
    };
    let valid = rng.random_bool(0.7);
    if !valid {
        match rng.random_range(0..4) {
            0 => request.partition_epoch -= 1,
            1 => request.leader_epoch += 1,
            2 => request.new_isr = state.replicas.clone(),
            _ => request.broker_id = state.replicas[rng.random_range(0..state.replicas.len())],
        }
    }
    let token = h.send(RequestKind::AlterPartition(request));
    world.sent(token, None);
    if valid {
        world.valid_alters.insert(token);
    }
}

/// The active controller loses leadership; a prefix of its pending batches commits under
/// the next one, which becomes active on the follower's image.
fn fail_over(h: &mut Harness, world: &mut World, rng: &mut CoreRng) {
    h.outputs();
    let pending: Vec<_> = h.proposed.drain(..).collect();
    let keep = rng.random_range(0..=pending.len());
    h.controller.become_inactive(Some(2));
    world.take_replies(h);
    for records in pending.into_iter().take(keep) {
        h.index += 1;
        h.follower.apply(h.index, &records);
    }
    h.index += 1;
    let config = ControllerConfig { seed: rng.random(), ..ControllerConfig::default() };
    h.controller = Controller::new(config);
    h.controller.become_active(h.now, h.follower.clone());
    world.count("failover");
}

fn observe(h: &Harness, world: &mut World) {
    let image = &h.follower;
    for topic in image.topics() {
        for state in &topic.partitions {
            if !state.elr.is_empty() {
                world.count("partition with an ELR");
            }
            if state.leader == NO_LEADER {
                world.count("partition offline");
            }
        }
    }
    if image.brokers().any(|b| b.fenced) {
        world.count("a broker fenced");
    }
}

fn run(seed: u64, steps: usize, world: &mut World) {
    let mut rng = seeded(seed);
    let mut h = Harness::new(seed);
    for _ in 0..steps {
        step(&mut h, world, &mut rng);
        world.take_replies(&mut h);
        h.controller.invariants();
        observe(&h, world);
        if rng.random_bool(0.1) {
            let index = h.follower.last_applied();
            let restored = MetadataImage::restore(index, &h.follower.snapshot()).unwrap();
            assert_eq!(restored, h.follower, "seed {seed}: a snapshot round-trips");
        }
    }
    h.commit_all();
    world.take_replies(&mut h);
    assert!(world.outstanding.is_empty(), "seed {seed}: unanswered {:?}", world.outstanding);
}

#[test]
fn invariants_hold_over_random_sequences() {
    let mut world = World::default();
    for seed in 0..150 {
        world.brokers.clear();
        run(seed, 200, &mut world);
    }
    // A run that exercised nothing proves nothing.
    for what in [
        "alter accepted",
        "alter lost",
        "failover",
        "partition with an ELR",
        "partition offline",
        "a broker fenced",
        "refused",
    ] {
        let count = world.counts.get(what).copied().unwrap_or(0);
        assert!(count > 0, "no '{what}' in any run: {:?}", world.counts);
    }
}
