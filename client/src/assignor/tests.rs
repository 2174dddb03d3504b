//! The assignors' tables (what each gives for small cases, worked out by hand from Kafka's
//! description) and properties over random groups.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

fn subscriptions(members: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    members
        .iter()
        .map(|(m, topics)| (m.to_string(), topics.iter().map(|t| t.to_string()).collect()))
        .collect()
}

fn counts(topics: &[(&str, i32)]) -> BTreeMap<String, i32> {
    topics.iter().map(|(t, c)| (t.to_string(), *c)).collect()
}

fn names(assigned: &[Tp]) -> Vec<String> {
    assigned.iter().map(|(t, p)| format!("{t}-{p}")).collect()
}

/// Members subscribed to `topics`, each owning the partitions of `t` listed, in generation
/// `generation`.
fn owning(members: &[(&str, &[i32])], generation: i32) -> BTreeMap<String, Subscription> {
    members
        .iter()
        .map(|(m, owned)| {
            let subscription = Subscription {
                topics: vec!["t".to_string()],
                owned: owned.iter().map(|&p| ("t".to_string(), p)).collect(),
                generation,
            };
            (m.to_string(), subscription)
        })
        .collect()
}

/// The range assignor's table: what Kafka's `RangeAssignor` gives for these cases.
#[test]
fn range_gives_consecutive_ranges_and_the_first_members_the_extra() {
    let assigned = assign_range(
        &subscriptions(&[("c", &["t"]), ("a", &["t"]), ("b", &["t"])]),
        &counts(&[("t", 7)]),
    );
    assert_eq!(names(&assigned["a"]), ["t-0", "t-1", "t-2"]);
    assert_eq!(names(&assigned["b"]), ["t-3", "t-4"]);
    assert_eq!(names(&assigned["c"]), ["t-5", "t-6"]);

    let assigned = assign_range(
        &subscriptions(&[("a", &["t", "u"]), ("b", &["u"])]),
        &counts(&[("t", 2), ("u", 3)]),
    );
    assert_eq!(names(&assigned["a"]), ["t-0", "t-1", "u-0", "u-1"]);
    assert_eq!(names(&assigned["b"]), ["u-2"]);

    let assigned =
        assign_range(&subscriptions(&[("a", &["t"]), ("b", &["t"])]), &counts(&[("t", 1)]));
    assert_eq!(names(&assigned["a"]), ["t-0"]);
    assert!(assigned["b"].is_empty(), "more members than partitions");
}

#[test]
fn assignor_names_parse_and_print_as_kafka_spells_them() {
    for assignor in [Assignor::Range, Assignor::CooperativeSticky] {
        assert_eq!(assignor.name().parse::<Assignor>().unwrap(), assignor);
        assert_eq!(assignor.to_string(), assignor.name());
    }
    assert!("sticky".parse::<Assignor>().is_err());
    assert!(Assignor::CooperativeSticky.is_cooperative());
    assert!(!Assignor::Range.is_cooperative());
}

#[test]
fn sticky_spreads_a_new_group_evenly_and_withholds_nothing() {
    let sticky = assign_cooperative_sticky(
        &owning(&[("a", &[]), ("b", &[]), ("c", &[])], -1),
        &counts(&[("t", 7)]),
    );
    assert_eq!(names(&sticky.assigned["a"]), ["t-0", "t-3", "t-6"]);
    assert_eq!(names(&sticky.assigned["b"]), ["t-1", "t-4"]);
    assert_eq!(names(&sticky.assigned["c"]), ["t-2", "t-5"]);
    assert!(sticky.withheld.is_empty());
}

/// KIP-429's example: c joins a and b; it takes one partition from each, and both are
/// withheld until a and b have revoked them; the second rebalance hands them over.
#[test]
fn a_joining_member_gets_moving_partitions_one_generation_later() {
    let first = owning(&[("a", &[0, 1, 2]), ("b", &[3, 4, 5]), ("c", &[])], 4);
    let sticky = assign_cooperative_sticky(&first, &counts(&[("t", 6)]));
    assert_eq!(names(&sticky.assigned["a"]), ["t-1", "t-2"]);
    assert_eq!(names(&sticky.assigned["b"]), ["t-4", "t-5"]);
    assert!(sticky.assigned["c"].is_empty(), "c gets nothing still owned");
    assert_eq!(names(&sticky.withheld["c"]), ["t-0", "t-3"]);

    let second = owning(&[("a", &[1, 2]), ("b", &[4, 5]), ("c", &[])], 5);
    let sticky = assign_cooperative_sticky(&second, &counts(&[("t", 6)]));
    assert_eq!(names(&sticky.assigned["a"]), ["t-1", "t-2"]);
    assert_eq!(names(&sticky.assigned["b"]), ["t-4", "t-5"]);
    assert_eq!(names(&sticky.assigned["c"]), ["t-0", "t-3"]);
    assert!(sticky.withheld.is_empty());
}

#[test]
fn a_joining_member_takes_only_from_the_most_loaded() {
    let group = owning(&[("a", &[0, 1, 2, 3]), ("b", &[4, 5, 6]), ("c", &[])], 2);
    let sticky = assign_cooperative_sticky(&group, &counts(&[("t", 7)]));
    assert_eq!(names(&sticky.assigned["a"]), ["t-2", "t-3"]);
    assert_eq!(names(&sticky.assigned["b"]), ["t-4", "t-5", "t-6"], "b keeps all three");
    assert_eq!(names(&sticky.withheld["c"]), ["t-0", "t-1"]);
}

#[test]
fn a_leaving_members_partitions_go_to_the_least_loaded_and_nobody_else_moves() {
    // c left holding t-4 and t-5; a holds one more than b.
    let group = owning(&[("a", &[0, 1, 2]), ("b", &[3])], 7);
    let sticky = assign_cooperative_sticky(&group, &counts(&[("t", 6)]));
    assert_eq!(names(&sticky.assigned["a"]), ["t-0", "t-1", "t-2"]);
    assert_eq!(names(&sticky.assigned["b"]), ["t-3", "t-4", "t-5"]);
    assert!(sticky.withheld.is_empty());
}

#[test]
fn a_claim_of_a_later_generation_wins_and_bad_claims_are_ignored() {
    let mut group = owning(&[("a", &[0]), ("b", &[0, 1])], 3);
    group.get_mut("a").unwrap().generation = 5;
    // b also claims a partition that does not exist and one of a topic it left.
    let b = group.get_mut("b").unwrap();
    b.owned.extend([("t".to_string(), 9), ("gone".to_string(), 0)]);
    let owners = current_owners(&group, &counts(&[("t", 2), ("gone", 1)]));
    let expected: BTreeMap<Tp, String> =
        [(("t".to_string(), 0), "a".to_string()), (("t".to_string(), 1), "b".to_string())].into();
    assert_eq!(owners, expected);
    // On equal generations the smaller member id keeps it.
    let owners = current_owners(&owning(&[("b", &[0]), ("a", &[0])], 3), &counts(&[("t", 1)]));
    assert_eq!(owners[&("t".to_string(), 0)], "a");
}

#[test]
fn sticky_balances_within_each_subscription() {
    let group: BTreeMap<String, Subscription> =
        [("a", vec!["t", "u"]), ("b", vec!["u"]), ("c", vec!["u"])]
            .into_iter()
            .map(|(m, topics)| {
                let topics = topics.into_iter().map(String::from).collect();
                (m.to_string(), Subscription { topics, owned: Vec::new(), generation: -1 })
            })
            .collect();
    let sticky = assign_cooperative_sticky(&group, &counts(&[("t", 3), ("u", 3)]));
    assert_eq!(names(&sticky.assigned["a"]), ["t-0", "t-1", "t-2"], "only a reads t");
    assert_eq!(names(&sticky.assigned["b"]), ["u-0", "u-2"]);
    assert_eq!(names(&sticky.assigned["c"]), ["u-1"]);
}

// ----- properties over random groups -----------------------------------------------------

const TOPICS: [&str; 3] = ["t0", "t1", "t2"];

/// A random group: partition counts of the three topics, and per member a subscription
/// (a non-empty set of topics), owned partitions (some stale, some of other topics, some
/// that do not exist) and a generation.
fn group_strategy(
    same_subscription: bool,
) -> impl Strategy<Value = (BTreeMap<String, i32>, BTreeMap<String, Subscription>)> {
    let counts = prop::collection::vec(1..9i32, TOPICS.len());
    let member = (1..8u8, prop::collection::vec((0..3usize, 0..10i32), 0..8), 0..4i32);
    let members = prop::collection::vec(member, 1..6);
    (counts, members, 1..8u8).prop_map(move |(counts, members, shared)| {
        let counts: BTreeMap<String, i32> =
            TOPICS.iter().zip(counts).map(|(t, c)| (t.to_string(), c)).collect();
        let subscriptions = members
            .into_iter()
            .enumerate()
            .map(|(index, (mask, owned, generation))| {
                let mask = if same_subscription { shared } else { mask };
                let topics = TOPICS
                    .iter()
                    .enumerate()
                    .filter(|(bit, _)| mask & (1 << bit) != 0)
                    .map(|(_, t)| t.to_string())
                    .collect();
                let owned = owned.into_iter().map(|(t, p)| (TOPICS[t].to_string(), p)).collect();
                (format!("m{index}"), Subscription { topics, owned, generation })
            })
            .collect();
        (counts, subscriptions)
    })
}

/// Each member's plan: its assignment and what is withheld for it.
fn plans(sticky: &StickyAssignment) -> BTreeMap<String, BTreeSet<Tp>> {
    let mut plans: BTreeMap<String, BTreeSet<Tp>> = BTreeMap::new();
    for (member, list) in sticky.assigned.iter().chain(&sticky.withheld) {
        plans.entry(member.clone()).or_default().extend(list.iter().cloned());
    }
    plans
}

fn check_sticky(
    counts: &BTreeMap<String, i32>,
    group: &BTreeMap<String, Subscription>,
    sticky: &StickyAssignment,
) -> Result<(), TestCaseError> {
    let owners = current_owners(group, counts);
    let plans = plans(sticky);
    let mut seen: BTreeSet<&Tp> = BTreeSet::new();
    for (member, plan) in &plans {
        for tp in plan {
            prop_assert!(seen.insert(tp), "{tp:?} planned twice");
            prop_assert!(group[member].topics.contains(&tp.0), "{member} gets unsubscribed {tp:?}");
            prop_assert!((0..counts[&tp.0]).contains(&tp.1), "{tp:?} does not exist");
        }
    }
    for (topic, &count) in counts {
        if group.values().any(|s| s.topics.contains(topic)) {
            for p in 0..count {
                prop_assert!(seen.contains(&(topic.clone(), p)), "{topic}-{p} unassigned");
            }
        }
    }
    for (member, list) in &sticky.assigned {
        for tp in list {
            let owner = owners.get(tp);
            prop_assert!(
                owner.is_none_or(|o| o == member),
                "{tp:?} assigned while {owner:?} owns it"
            );
        }
    }
    for (member, list) in &sticky.withheld {
        for tp in list {
            let owner = owners.get(tp);
            prop_assert!(
                owner.is_some_and(|o| o != member),
                "{tp:?} withheld from {member}, owner {owner:?}"
            );
        }
    }
    for (a, plan_a) in &plans {
        for (b, plan_b) in &plans {
            let same: BTreeSet<_> = group[a].topics.iter().collect();
            if same == group[b].topics.iter().collect() {
                prop_assert!(
                    plan_a.len() <= plan_b.len() + 1,
                    "{a} has {} and {b} {}",
                    plan_a.len(),
                    plan_b.len()
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// No partition twice, every partition of a subscribed topic planned, to a subscriber;
    /// plans balanced within a subscription; only partitions changing owner withheld.
    #[test]
    fn sticky_assignments_are_complete_disjoint_balanced_and_withhold_only_moves(
        (counts, group) in group_strategy(false)
    ) {
        let sticky = assign_cooperative_sticky(&group, &counts);
        check_sticky(&counts, &group, &sticky)?;
    }

    /// With one subscription for all, every member keeps as many of its partitions as its
    /// share allows, and once the withheld partitions were revoked the next generation
    /// hands them over without withholding anything.
    #[test]
    fn sticky_keeps_what_balance_allows_and_settles_in_one_more_generation(
        (counts, group) in group_strategy(true)
    ) {
        let owners = current_owners(&group, &counts);
        let sticky = assign_cooperative_sticky(&group, &counts);
        check_sticky(&counts, &group, &sticky)?;
        let plans = plans(&sticky);
        for (member, plan) in &plans {
            let owned = owners.values().filter(|o| *o == member).count();
            let kept = sticky.assigned[member].iter().filter(|tp| owners.get(*tp) == Some(member)).count();
            prop_assert_eq!(kept, owned.min(plan.len()), "{} owned {} and plans {}", member, owned, plan.len());
        }
        let next: BTreeMap<String, Subscription> = group
            .iter()
            .map(|(member, s)| {
                let owned = sticky.assigned[member].clone();
                (member.clone(), Subscription { topics: s.topics.clone(), owned, generation: 10 })
            })
            .collect();
        let settled = assign_cooperative_sticky(&next, &counts);
        check_sticky(&counts, &next, &settled)?;
        prop_assert!(settled.withheld.is_empty(), "still moving: {:?}", settled.withheld);
        for (member, list) in &sticky.assigned {
            for tp in list {
                prop_assert!(settled.assigned[member].contains(tp), "{} lost {:?}", member, tp);
            }
        }
    }
}
