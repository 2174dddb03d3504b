//! Who a new active controller counts as live (decision 0013): a broker unfenced in the
//! image it inherits leads, or is the ISR member left behind when another is fenced, only
//! once this controller has heard from it.

use std::collections::BTreeMap;

use super::messages::*;
use super::tests::{Harness, epoch_of, heartbeat, register};
use super::*;

/// Two brokers and topic "t" of one partition on both, with `durability`; returns the
/// epochs and the partition's (leader, follower).
fn two_replicas(seed: u64, durability: &str) -> (Harness, Vec<u64>, (i32, i32)) {
    let mut h = Harness::new(seed);
    let epochs = h.start_brokers(2);
    let config: BTreeMap<String, String> =
        [("durability".to_string(), durability.to_string())].into();
    let request = CreateTopicRequest {
        name: "t".into(),
        partitions: 1,
        replication_factor: 2,
        config,
        validate_only: false,
    };
    h.call(RequestKind::CreateTopic(request));
    let state = h.topic("t").partitions[0].clone();
    assert_eq!(state.isr.len(), 2);
    let follower = *state.isr.iter().find(|id| **id != state.leader).unwrap();
    (h, epochs, (state.leader, follower))
}

/// The active controller fails over: a new one takes the committed image.
fn fail_over(h: &mut Harness) {
    let image = h.image().clone();
    h.controller.become_inactive(None);
    h.controller = Controller::new(ControllerConfig::default());
    h.controller.become_active(h.now, image);
}

/// Leader `leader`'s connections close and its shortened lease lapses.
fn lose(h: &mut Harness, leader: i32) {
    h.controller.handle_broker_link_down(h.now, leader);
    h.advance(600);
    h.commit_all();
}

#[test]
fn a_follower_not_heard_from_is_not_elected_nor_left_alone_in_the_isr() {
    // The story: the follower's process died while no controller ran (it was on the
    // controller's own node), under `replicate`, losing what it had not synced. The new
    // controller inherits it unfenced. The leader then dies too.
    let (mut h, _, (leader, follower)) = two_replicas(31, "replicate");
    fail_over(&mut h);
    lose(&mut h, leader);
    let state = h.topic("t").partitions[0].clone();
    assert_eq!(state.leader, NO_LEADER, "the follower was not heard from: it does not lead");
    assert!(state.isr.contains(&leader), "the leader stays in the ISR beside it");
    // The old follower process's lease lapses too (it never heartbeats); it stays in the
    // ISR beside the leader. Its new process registers: under `replicate` it leaves the
    // ISR, so only the old leader, which holds every acknowledged record, can lead.
    h.advance(1000);
    h.commit_all();
    let state = h.topic("t").partitions[0].clone();
    assert_eq!((state.leader, state.isr.len()), (NO_LEADER, 2));
    let epoch = epoch_of(&h.register(follower, 4242));
    h.heartbeat(follower, epoch, h.index);
    let state = h.topic("t").partitions[0].clone();
    assert_eq!((state.leader, state.isr.clone()), (NO_LEADER, vec![leader]));
    // The leader comes back: it leads again with everything.
    let epoch = epoch_of(&h.register(leader, 4343));
    h.heartbeat(leader, epoch, h.index);
    assert_eq!(h.topic("t").partitions[0].leader, leader);
}

#[test]
fn a_broker_first_heard_by_a_new_controller_leads_where_nobody_does() {
    let (mut h, epochs, (leader, follower)) = two_replicas(32, "fsync");
    fail_over(&mut h);
    lose(&mut h, leader);
    assert_eq!(h.topic("t").partitions[0].leader, NO_LEADER);
    // The follower's first heartbeat to this controller: it is live, and elected.
    let token = h.send(heartbeat(follower, epochs[follower as usize - 1], h.index, false));
    h.commit_all();
    assert_eq!(h.reply(token).expect("answered").error_code, 0);
    let state = h.topic("t").partitions[0].clone();
    assert_eq!(state.leader, follower);
    // A retried registration from a process first heard elects the same way.
    let (mut h, epochs, (leader, follower)) = two_replicas(33, "fsync");
    fail_over(&mut h);
    lose(&mut h, leader);
    let retry = epoch_of(&h.call(register(follower, follower as u64 * 1000)));
    assert_eq!(retry, epochs[follower as usize - 1]);
    assert_eq!(h.topic("t").partitions[0].leader, follower);
}

#[test]
fn a_resigning_leader_does_not_hand_over_to_a_broker_whose_new_process_is_waiting_to_register() {
    // The story (simulator seed 27114): the follower's node, the controller's own, restarts
    // under `replicate` and its replica lost the tail it had not synced. Its new process is
    // refused while the old registration's lease runs. The leader's log then fails: it
    // must not hand over to the follower, which a new process is known to have replaced.
    let (mut h, epochs, (leader, follower)) = two_replicas(34, "replicate");
    fail_over(&mut h);
    let leader_epoch = epochs[leader as usize - 1];
    h.heartbeat(leader, leader_epoch, h.index);
    let refused = h.register(follower, 5151);
    assert_ne!(refused.error_code, 0, "the old registration's lease still runs");
    let state = h.topic("t").partitions[0].clone();
    let resign = AlterPartitionRequest {
        broker_id: leader,
        broker_epoch: leader_epoch,
        topic_id: h.topic("t").id.to_vec(),
        partition: 0,
        leader_epoch: state.leader_epoch,
        partition_epoch: state.partition_epoch,
        new_isr: state.isr.clone(),
        resign: true,
        new_isr_broker_epochs: vec![],
    };
    assert_eq!(h.call(RequestKind::AlterPartition(resign)).error_code, 0);
    let after = h.topic("t").partitions[0].clone();
    assert_eq!(after.leader, leader, "it leads again, in a new epoch, rather than the follower");
    assert!(after.leader_epoch > state.leader_epoch);
}
