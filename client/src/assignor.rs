//! The partition assignors a group leader runs: Kafka's range assignor, and the
//! cooperative-sticky assignor of KIP-429 (the sticky assignment of KIP-54/KIP-341, made
//! incremental).
//!
//! Both are pure functions of the members' subscriptions and the topics' partition counts,
//! so they are tested by tables and properties without a broker. The contract of the
//! cooperative-sticky assignor (decision 0022):
//!
//! - every partition of a subscribed topic is in the plan of exactly one member subscribed
//!   to its topic;
//! - among members with the same subscription, plan sizes differ by at most one;
//! - a partition stays with its current owner unless balance needs it elsewhere, and then it
//!   moves from one of the most loaded members;
//! - a partition whose plan gives it to a member other than its current owner is *withheld*:
//!   it is in nobody's assignment this generation, so the owner revokes it first and the
//!   follow-up rebalance hands it over (KIP-429's two rebalances).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// A partition as the assignors see it: the topic's name and the partition's index.
pub(crate) type Tp = (String, i32);

/// A partition assignor a consumer offers when it joins its group; a list of them in
/// preference order is Kafka's `partition.assignment.strategy`.
///
/// The coordinator picks the leader's first choice that every member lists. Under
/// [`Assignor::Range`] rebalances are eager (every member gives up all its partitions);
/// under [`Assignor::CooperativeSticky`] they are incremental (KIP-429): a member keeps its
/// partitions through the rebalance and gives up only those that move.
///
/// ```
/// use cairn_client::{Assignor, GroupConfig};
/// let mut group = GroupConfig::new("billing");
/// group.assignors = vec![Assignor::CooperativeSticky];
/// assert_eq!("cooperative-sticky".parse::<Assignor>().unwrap(), Assignor::CooperativeSticky);
/// assert_eq!(Assignor::Range.name(), "range");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Assignor {
    /// Kafka's `RangeAssignor` (`range`): per topic, consecutive ranges of partitions to the
    /// members sorted by id. Eager rebalancing.
    Range,
    /// Kafka's `CooperativeStickyAssignor` (`cooperative-sticky`): a balanced assignment that
    /// keeps partitions with their owners, with incremental rebalancing.
    CooperativeSticky,
}

impl Assignor {
    /// The assignor's protocol name in JoinGroup, as every Kafka client spells it.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::CooperativeSticky => "cooperative-sticky",
        }
    }

    /// Whether a generation with this assignor rebalances incrementally (KIP-429).
    pub fn is_cooperative(self) -> bool {
        self == Assignor::CooperativeSticky
    }
}

impl fmt::Display for Assignor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Assignor {
    type Err = Error;

    /// Parses a protocol name: `range` or `cooperative-sticky`.
    fn from_str(name: &str) -> Result<Assignor, Error> {
        match name {
            "range" => Ok(Assignor::Range),
            "cooperative-sticky" => Ok(Assignor::CooperativeSticky),
            other => Err(Error::Config(format!(
                "unknown assignor {other:?}: use range or cooperative-sticky"
            ))),
        }
    }
}

/// One member's subscription as the leader decodes it from JoinGroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Subscription {
    /// The topics the member subscribes to.
    pub topics: Vec<String>,
    /// The partitions the member holds (ConsumerProtocolSubscription v1+).
    pub owned: Vec<Tp>,
    /// The generation in which it got them (v2+; -1 when unknown).
    pub generation: i32,
}

/// What the cooperative-sticky assignor decides for one generation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StickyAssignment {
    /// Each member's assignment for this generation.
    pub assigned: BTreeMap<String, Vec<Tp>>,
    /// Per member, the partitions the plan gives it but another member still owns: left
    /// out this generation, handed over in the next.
    pub withheld: BTreeMap<String, Vec<Tp>>,
}

/// Kafka's range assignor: per topic, the subscribed members sorted by id get consecutive
/// ranges of the partitions, the first `partitions % members` of them one more.
pub(crate) fn assign_range(
    subscriptions: &BTreeMap<String, Vec<String>>,
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, Vec<Tp>> {
    let mut assigned: BTreeMap<String, Vec<Tp>> =
        subscriptions.keys().map(|member| (member.clone(), Vec::new())).collect();
    for (topic, &count) in partition_counts {
        let members: Vec<&String> =
            subscriptions.iter().filter(|(_, t)| t.contains(topic)).map(|(m, _)| m).collect();
        if members.is_empty() {
            continue;
        }
        let (each, extra) = (count / members.len() as i32, count % members.len() as i32);
        for (index, member) in members.into_iter().enumerate() {
            let index = index as i32;
            let start = index * each + index.min(extra);
            let length = each + i32::from(index < extra);
            let list = assigned.get_mut(member).expect("every member has a list");
            list.extend((start..start + length).map(|p| (topic.clone(), p)));
        }
    }
    assigned
}

/// The cooperative-sticky assignment: a balanced plan that keeps partitions with their
/// current owners, minus the partitions that change owner (withheld for one generation).
pub(crate) fn assign_cooperative_sticky(
    subscriptions: &BTreeMap<String, Subscription>,
    partition_counts: &BTreeMap<String, i32>,
) -> StickyAssignment {
    let owners = current_owners(subscriptions, partition_counts);
    let plan = sticky_plan(subscriptions, partition_counts, &owners);
    let mut result = StickyAssignment::default();
    for (member, partitions) in plan {
        let (kept, moving): (Vec<Tp>, Vec<Tp>) = partitions
            .into_iter()
            .partition(|tp| owners.get(tp).is_none_or(|owner| *owner == member));
        result.assigned.insert(member.clone(), kept);
        if !moving.is_empty() {
            result.withheld.insert(member, moving);
        }
    }
    result
}

/// Who owns each partition now: the claims of members subscribed to an existing partition's
/// topic. When two members claim one partition (a member that missed a generation still
/// lists what it had), the claim of the later generation wins, then the smaller member id.
pub(crate) fn current_owners(
    subscriptions: &BTreeMap<String, Subscription>,
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<Tp, String> {
    let mut owners: BTreeMap<Tp, (i32, &String)> = BTreeMap::new();
    for (member, subscription) in subscriptions {
        for tp in &subscription.owned {
            let exists =
                partition_counts.get(&tp.0).is_some_and(|&count| (0..count).contains(&tp.1));
            if !exists || !subscription.topics.contains(&tp.0) {
                continue;
            }
            let claim = (subscription.generation, member);
            // Members come in id order, so on equal generations the first claim stays.
            match owners.get(tp) {
                Some(&(generation, _)) if generation >= claim.0 => {}
                _ => {
                    owners.insert(tp.clone(), claim);
                }
            }
        }
    }
    owners.into_iter().map(|(tp, (_, member))| (tp, member.clone())).collect()
}

/// The balanced plan, before withholding: owners keep what they own, every unowned
/// partition goes to the least loaded member subscribed to its topic, then partitions move
/// from the most loaded members to members with at least two fewer until none can.
///
/// Each move lowers the sum of the squares of the plan sizes by at least two, so the moves
/// are bounded by that sum. When no move is left, two members with the same subscription
/// cannot differ by two or more: any partition of the larger could move to the smaller.
fn sticky_plan(
    subscriptions: &BTreeMap<String, Subscription>,
    partition_counts: &BTreeMap<String, i32>,
    owners: &BTreeMap<Tp, String>,
) -> BTreeMap<String, BTreeSet<Tp>> {
    let mut plan: BTreeMap<String, BTreeSet<Tp>> =
        subscriptions.keys().map(|member| (member.clone(), BTreeSet::new())).collect();
    for (tp, owner) in owners {
        plan.get_mut(owner).expect("owners are members").insert(tp.clone());
    }
    let eligible = eligible_members(subscriptions, partition_counts);
    for (topic, &count) in partition_counts {
        let Some(members) = eligible.get(topic) else { continue };
        for partition in 0..count {
            let tp = (topic.clone(), partition);
            if owners.contains_key(&tp) {
                continue;
            }
            let lightest = lightest(&plan, members, None).expect("a topic's members exist");
            plan.get_mut(&lightest).expect("a member").insert(tp);
        }
    }
    let squares: usize = plan.values().map(|p| p.len() * p.len()).sum();
    let mut moves = 0usize;
    while let Some((donor, receiver, tp)) = best_move(&plan, &eligible, owners) {
        moves += 1;
        assert!(moves <= squares / 2 + 1, "balancing moves are bounded by the sum of squares");
        assert!(plan.get_mut(&donor).expect("a donor").remove(&tp), "the donor held it");
        plan.get_mut(&receiver).expect("a receiver").insert(tp);
    }
    plan
}

/// Per topic, the members subscribed to it (only topics that exist).
fn eligible_members(
    subscriptions: &BTreeMap<String, Subscription>,
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, Vec<String>> {
    let mut eligible: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (member, subscription) in subscriptions {
        for topic in subscription.topics.iter().collect::<BTreeSet<_>>() {
            if partition_counts.contains_key(topic) {
                eligible.entry(topic.clone()).or_default().push(member.clone());
            }
        }
    }
    eligible
}

/// The member of `members` (other than `except`) with the smallest plan, smallest id first.
fn lightest(
    plan: &BTreeMap<String, BTreeSet<Tp>>,
    members: &[String],
    except: Option<&str>,
) -> Option<String> {
    members
        .iter()
        .filter(|m| Some(m.as_str()) != except)
        .min_by_key(|m| (plan[*m].len(), *m))
        .cloned()
}

/// The next balancing move: from the most loaded member that can give, a partition to the
/// least loaded member subscribed to its topic with at least two fewer. Partitions the donor
/// does not own yet (given to it in this plan) go first, so owners keep what they have.
fn best_move(
    plan: &BTreeMap<String, BTreeSet<Tp>>,
    eligible: &BTreeMap<String, Vec<String>>,
    owners: &BTreeMap<Tp, String>,
) -> Option<(String, String, Tp)> {
    let mut donors: Vec<(&String, usize)> = plan.iter().map(|(m, p)| (m, p.len())).collect();
    donors.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    for (donor, size) in donors {
        if size < 2 {
            break;
        }
        let mut receivers: BTreeMap<&str, String> = BTreeMap::new();
        for (topic, members) in eligible {
            if let Some(r) =
                lightest(plan, members, Some(donor)).filter(|r| plan[r].len() + 2 <= size)
            {
                receivers.insert(topic, r);
            }
        }
        // Key: owned by the donor (false first), the receiver's size, its id, the partition.
        let best = plan[donor]
            .iter()
            .filter_map(|tp| {
                let receiver = receivers.get(tp.0.as_str())?;
                let owned = owners.get(tp) == Some(donor);
                Some(((owned, plan[receiver].len(), receiver), tp))
            })
            .min();
        if let Some(((_, _, receiver), tp)) = best {
            return Some((donor.clone(), receiver.clone(), tp.clone()));
        }
    }
    None
}

#[cfg(test)]
mod tests;
