//! Leader election and the ISR and ELR rules, as pure functions of one partition's state and
//! of which brokers are live (design §4; KIP-966 for the eligible leader replicas).
//!
//! - A leader is elected from the ISR first (the first live replica in replica order that is
//!   in the ISR), then from the ELR; then, only where the topic sets
//!   `unclean.leader.election.enable`, from any live replica, losing what it lacks; else the
//!   partition has no leader.
//! - Fencing a broker removes it from the ISR only while another member is live: KRaft keeps
//!   the last member, so that when it comes back it can lead again with every committed
//!   record, and Cairn keeps it too when the others are not known to be live (a member the
//!   controller has not heard from may have lost its unsynced records: decision 0013).
//! - When the ISR shrinks below `min.insync.replicas`, the members removed join the ELR:
//!   acks=all writes cannot complete below that size, so the high watermark cannot pass what
//!   they hold. When the ISR is at least `min.insync.replicas`, the ELR is empty (the high
//!   watermark may move without its members).
//!
//! ISR and ELR are kept in replica order, so that one state has one spelling.

use super::image::{NO_LEADER, PartitionState};

/// A partition's leader, ISR and ELR after a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The leader, or [`NO_LEADER`].
    pub leader: i32,
    /// The ISR.
    pub isr: Vec<i32>,
    /// The eligible leader replicas.
    pub elr: Vec<i32>,
}

impl Decision {
    /// The decision that keeps `state`'s leader, ISR and ELR.
    pub fn unchanged(state: &PartitionState) -> Decision {
        Decision { leader: state.leader, isr: state.isr.clone(), elr: state.elr.clone() }
    }
}

/// The members of `replicas` that `keep` accepts, in replica order.
fn in_replica_order(replicas: &[i32], keep: impl Fn(i32) -> bool) -> Vec<i32> {
    replicas.iter().copied().filter(|id| keep(*id)).collect()
}

/// The ISR becomes `new_isr`: the members it loses join the ELR while it is below
/// `min_isr`, and the ELR empties once it is not.
pub fn change_isr(state: &PartitionState, new_isr: &[i32], min_isr: i32) -> Decision {
    let below_min = len_i32(new_isr) < min_isr;
    let isr = in_replica_order(&state.replicas, |id| new_isr.contains(&id));
    let elr = in_replica_order(&state.replicas, |id| {
        if isr.contains(&id) || !below_min {
            return false;
        }
        state.elr.contains(&id) || state.isr.contains(&id)
    });
    Decision { leader: state.leader, isr, elr }
}

/// Elects a leader from `decision`'s ISR, then its ELR, then (if `unclean`) any live
/// replica; keeps [`NO_LEADER`] when none is live.
pub fn elect(
    replicas: &[i32],
    decision: Decision,
    min_isr: i32,
    unclean: bool,
    live: impl Fn(i32) -> bool,
) -> Decision {
    let pick = |among: &[i32]| replicas.iter().copied().find(|id| among.contains(id) && live(*id));
    if let Some(leader) = pick(&decision.isr) {
        return Decision { leader, ..decision };
    }
    if let Some(leader) = pick(&decision.elr) {
        // KIP-966: the ELR member leads alone; the old ISR members hold every committed
        // record too, so they stay eligible.
        let isr = vec![leader];
        let below_min = 1 < min_isr;
        let elr = in_replica_order(replicas, |id| {
            id != leader && below_min && (decision.elr.contains(&id) || decision.isr.contains(&id))
        });
        return Decision { leader, isr, elr };
    }
    if unclean && let Some(leader) = replicas.iter().copied().find(|id| live(*id)) {
        // Whatever the others held beyond this replica is lost: none of them is eligible.
        return Decision { leader, isr: vec![leader], elr: Vec::new() };
    }
    Decision { leader: NO_LEADER, ..decision }
}

/// What fencing `broker` does to a partition: it leaves the ISR if another member is live
/// (so never the last member), and if it led (or nobody did), a leader is elected among the
/// live replicas. `live` must already answer false for `broker`.
pub fn fence(
    state: &PartitionState,
    broker: i32,
    min_isr: i32,
    unclean: bool,
    live: impl Fn(i32) -> bool,
) -> Decision {
    assert!(!live(broker), "the fenced broker is not live");
    let mut decision = Decision::unchanged(state);
    let another_live = state.isr.iter().any(|id| *id != broker && live(*id));
    if another_live && state.isr.contains(&broker) {
        let rest: Vec<i32> = state.isr.iter().copied().filter(|id| *id != broker).collect();
        decision = change_isr(state, &rest, min_isr);
    }
    if decision.leader == broker || decision.leader == NO_LEADER {
        decision = elect(&state.replicas, decision, min_isr, unclean, live);
    }
    decision
}

/// What a broker that lost its data does to a partition (it registered with another data
/// directory: wiped and formatted again): it leaves the ISR and the ELR, even as the last
/// member (its copy of the committed records is gone, so it must not lead with what it has
/// now), and if it led, a leader is elected among the live replicas. The ISR may be left
/// empty: then nobody holds the committed records for sure, and only an unclean election
/// can bring the partition back. `live` must answer false for `broker`.
pub fn forget(
    state: &PartitionState,
    broker: i32,
    min_isr: i32,
    unclean: bool,
    live: impl Fn(i32) -> bool,
) -> Decision {
    assert!(!live(broker), "the broker that lost its data is not live");
    let without = |ids: &[i32]| ids.iter().copied().filter(|id| *id != broker).collect();
    let mut decision =
        Decision { leader: state.leader, isr: without(&state.isr), elr: without(&state.elr) };
    if decision.leader == broker {
        decision.leader = NO_LEADER;
    }
    if decision.leader == NO_LEADER {
        decision = elect(&state.replicas, decision, min_isr, unclean, live);
    }
    decision
}

/// What a broker coming back does to a partition without a leader: an election.
pub fn unfence(
    state: &PartitionState,
    min_isr: i32,
    unclean: bool,
    live: impl Fn(i32) -> bool,
) -> Decision {
    let decision = Decision::unchanged(state);
    if state.leader != NO_LEADER {
        return decision;
    }
    elect(&state.replicas, decision, min_isr, unclean, live)
}

fn len_i32(ids: &[i32]) -> i32 {
    i32::try_from(ids.len()).expect("replica lists are short")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(replicas: &[i32], isr: &[i32], elr: &[i32], leader: i32) -> PartitionState {
        PartitionState {
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            elr: elr.to_vec(),
            leader,
            leader_epoch: 3,
            partition_epoch: 5,
        }
    }

    fn d(leader: i32, isr: &[i32], elr: &[i32]) -> Decision {
        Decision { leader, isr: isr.to_vec(), elr: elr.to_vec() }
    }

    #[test]
    fn elections_prefer_isr_then_elr_then_unclean() {
        // (isr, elr, live brokers, min isr, unclean) -> decision
        type Row = (&'static [i32], &'static [i32], &'static [i32], i32, bool, Decision);
        let rows: Vec<Row> = vec![
            // The first live ISR member in replica order.
            (&[2, 3], &[], &[3, 2], 1, false, d(2, &[2, 3], &[])),
            (&[1, 2, 3], &[], &[3], 1, false, d(3, &[1, 2, 3], &[])),
            // No live ISR member: the ELR's first live member leads alone; the old ISR
            // members become eligible.
            (&[1], &[2, 3], &[3], 2, false, d(3, &[3], &[1, 2])),
            (&[1], &[2, 3], &[2, 3], 3, true, d(2, &[2], &[1, 3])),
            // Nobody eligible is live: unclean only where allowed.
            (&[1], &[2], &[3], 2, false, d(NO_LEADER, &[1], &[2])),
            (&[1], &[2], &[3], 2, true, d(3, &[3], &[])),
            (&[1], &[], &[], 1, true, d(NO_LEADER, &[1], &[])),
        ];
        for (isr, elr, live, min_isr, unclean, expected) in rows {
            let replicas = [1, 2, 3];
            let decision =
                elect(&replicas, d(NO_LEADER, isr, elr), min_isr, unclean, |id| live.contains(&id));
            assert_eq!(decision, expected, "isr {isr:?} elr {elr:?} live {live:?}");
        }
    }

    #[test]
    fn fencing_never_removes_the_last_isr_member() {
        let alone = state(&[1, 2, 3], &[1], &[], 1);
        let decision = fence(&alone, 1, 1, false, |id| id == 2 || id == 3);
        assert_eq!(decision, d(NO_LEADER, &[1], &[]), "the ISR keeps its last member");
        // When it comes back it leads again.
        assert_eq!(unfence(&state(&[1, 2, 3], &[1], &[], NO_LEADER), 1, false, |_| true).leader, 1);
    }

    #[test]
    fn fencing_table() {
        // (state, fenced broker, live, min isr, unclean) -> decision
        type Row = (PartitionState, i32, &'static [i32], i32, bool, Decision);
        let rows: Vec<Row> = vec![
            // A follower leaves the ISR; the ISR stays at min isr, so no ELR.
            (state(&[1, 2, 3], &[1, 2, 3], &[], 1), 3, &[1, 2], 2, false, d(1, &[1, 2], &[])),
            // The leader leaves: the next live ISR member leads.
            (state(&[1, 2, 3], &[1, 2, 3], &[], 1), 1, &[2, 3], 1, false, d(2, &[2, 3], &[])),
            // Below min isr, the member removed becomes eligible.
            (state(&[1, 2, 3], &[1, 2], &[], 1), 2, &[1, 3], 2, false, d(1, &[1], &[2])),
            // The last ISR member goes: kept in the ISR, the ELR member leads.
            (state(&[1, 2, 3], &[1], &[2], 1), 1, &[2, 3], 2, false, d(2, &[2], &[1])),
            // The last ISR member goes and the ELR is empty: offline, unless unclean.
            (state(&[1, 2, 3], &[1], &[], 1), 1, &[2, 3], 2, false, d(NO_LEADER, &[1], &[])),
            (state(&[1, 2, 3], &[1], &[], 1), 1, &[2, 3], 2, true, d(2, &[2], &[])),
            // A replica outside the ISR: nothing changes.
            (state(&[1, 2, 3], &[1, 2], &[], 1), 3, &[1, 2], 1, false, d(1, &[1, 2], &[])),
            // No other ISR member is live (1 not heard from yet): the fenced leader stays
            // in the ISR and nobody leads, whatever min isr says.
            (state(&[1, 2, 3], &[1, 2], &[], 2), 2, &[3], 1, false, d(NO_LEADER, &[1, 2], &[])),
            (state(&[1, 2, 3], &[1, 2], &[], 2), 2, &[3], 2, true, d(3, &[3], &[])),
            // A follower fenced while the leader is not known live: it stays in the ISR.
            (state(&[1, 2, 3], &[1, 2], &[], 1), 2, &[3], 1, false, d(1, &[1, 2], &[])),
        ];
        for (state, broker, live, min_isr, unclean, expected) in rows {
            let decision = fence(&state, broker, min_isr, unclean, |id| live.contains(&id));
            assert_eq!(decision, expected, "{state:?} fencing {broker}");
        }
    }

    #[test]
    fn a_broker_that_lost_its_data_leaves_the_isr_and_elr_even_as_the_last_member() {
        // (state, wiped broker, live, min isr, unclean) -> decision
        type Row = (PartitionState, i32, &'static [i32], i32, bool, Decision);
        let rows: Vec<Row> = vec![
            // A follower in the ISR: it leaves it, and does not join the ELR.
            (state(&[1, 2, 3], &[1, 2, 3], &[], 1), 3, &[1, 2], 3, false, d(1, &[1, 2], &[])),
            // An ELR member: it is no longer eligible.
            (state(&[1, 2, 3], &[1], &[2, 3], 1), 2, &[1, 3], 2, false, d(1, &[1], &[3])),
            // The last ISR member, fenced before (no leader): the ELR member leads.
            (state(&[1, 2, 3], &[1], &[2], NO_LEADER), 1, &[2, 3], 2, false, d(2, &[2], &[])),
            // The last ISR member and nobody eligible: the ISR is left empty, offline...
            (state(&[1, 2, 3], &[1], &[], NO_LEADER), 1, &[2, 3], 2, false, d(NO_LEADER, &[], &[])),
            // ...unless unclean elections are allowed.
            (state(&[1, 2, 3], &[1], &[], NO_LEADER), 1, &[2, 3], 2, true, d(2, &[2], &[])),
            // It led: the next live ISR member leads.
            (state(&[1, 2, 3], &[1, 2], &[], 1), 1, &[2, 3], 1, false, d(2, &[2], &[])),
        ];
        for (state, broker, live, min_isr, unclean, expected) in rows {
            let decision = forget(&state, broker, min_isr, unclean, |id| live.contains(&id));
            assert_eq!(decision, expected, "{state:?} forgetting {broker}");
        }
    }

    #[test]
    fn isr_changes_move_members_to_the_elr_only_below_min_isr() {
        let full = state(&[1, 2, 3], &[1, 2, 3], &[], 1);
        assert_eq!(change_isr(&full, &[1, 2], 2), d(1, &[1, 2], &[]));
        assert_eq!(change_isr(&full, &[1], 2), d(1, &[1], &[2, 3]));
        let shrunk = state(&[1, 2, 3], &[1], &[2, 3], 1);
        // A member rejoining leaves the ELR; reaching min isr empties it.
        assert_eq!(change_isr(&shrunk, &[2, 1], 3), d(1, &[1, 2], &[3]));
        assert_eq!(change_isr(&shrunk, &[1, 3], 2), d(1, &[1, 3], &[]));
    }
}
