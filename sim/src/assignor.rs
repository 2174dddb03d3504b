//! The consumers' side of a group rebalance: Kafka's range assignor, which the group's
//! leader runs over the members' subscriptions, and the bytes the simulated consumers put in
//! JoinGroup (their topics) and SyncGroup (each member's partitions). The encoding is the
//! simulator's own (comma-separated names), not Kafka's ConsumerProtocol: only these
//! consumers read it, and the coordinator passes it through untouched.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::workload::Part;

/// Kafka's range assignor: for each topic, the members subscribed to it sorted by member id
/// share its partitions in consecutive ranges, the first `partitions % members` members one
/// more than the others. `members` gives each member's topics; `partitions` each topic's
/// partition count. Answers each member's `(topic, partition)` list.
pub fn range_assignment(
    members: &[(String, Vec<String>)],
    partitions: &BTreeMap<String, i32>,
) -> BTreeMap<String, Vec<(String, i32)>> {
    let mut out: BTreeMap<String, Vec<(String, i32)>> =
        members.iter().map(|(id, _)| (id.clone(), Vec::new())).collect();
    for (topic, &count) in partitions {
        let mut subscribed: Vec<&String> =
            members.iter().filter(|(_, topics)| topics.contains(topic)).map(|(id, _)| id).collect();
        subscribed.sort();
        if subscribed.is_empty() {
            continue;
        }
        let n = subscribed.len() as i32;
        let (each, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, member) in subscribed.into_iter().enumerate() {
            let take = each + i32::from((i as i32) < extra);
            let list = out.get_mut(member).expect("every member has an entry");
            list.extend((next..next + take).map(|p| (topic.clone(), p)));
            next += take;
        }
        assert_eq!(next, count, "every partition of {topic} assigned once");
    }
    out
}

pub(crate) fn encode_topics(topics: &[String]) -> Bytes {
    Bytes::from(topics.join(","))
}

pub(crate) fn decode_topics(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    text.split(',').filter(|t| !t.is_empty()).map(str::to_string).collect()
}

pub(crate) fn encode_assignment(list: &[(String, i32)]) -> Bytes {
    let items: Vec<String> = list.iter().map(|(t, p)| format!("{t}:{p}")).collect();
    Bytes::from(items.join(","))
}

/// The workload partitions an assignment names.
pub(crate) fn decode_assignment(bytes: &[u8], parts: &[Part]) -> Vec<usize> {
    let text = String::from_utf8_lossy(bytes);
    let mut out: Vec<usize> = text
        .split(',')
        .filter_map(|item| item.rsplit_once(':'))
        .filter_map(|(topic, p)| {
            let p: i32 = p.parse().ok()?;
            parts.iter().position(|part| *part.id.topic == *topic && part.id.partition == p)
        })
        .collect();
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(list: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        (list.iter())
            .map(|(id, topics)| (id.to_string(), topics.iter().map(|t| t.to_string()).collect()))
            .collect()
    }

    /// Kafka's RangeAssignor on its own examples: consecutive ranges per topic, the first
    /// members (by id) one partition more when the count does not divide.
    #[test]
    fn range_assignment_table() {
        let partitions = BTreeMap::from([("t0".to_string(), 3), ("t1".to_string(), 2)]);
        type Members<'a> = &'a [(&'a str, &'a [&'a str])];
        type Assigned<'a> = &'a [(&'a str, &'a [(&'a str, i32)])];
        let table: &[(Members<'_>, Assigned<'_>)] = &[
            (
                &[("a", &["t0", "t1"])],
                &[("a", &[("t0", 0), ("t0", 1), ("t0", 2), ("t1", 0), ("t1", 1)])],
            ),
            (
                &[("b", &["t0", "t1"]), ("a", &["t0", "t1"])],
                &[("a", &[("t0", 0), ("t0", 1), ("t1", 0)]), ("b", &[("t0", 2), ("t1", 1)])],
            ),
            (
                &[("a", &["t0", "t1"]), ("b", &["t0", "t1"]), ("c", &["t0", "t1"])],
                &[
                    ("a", &[("t0", 0), ("t1", 0)]),
                    ("b", &[("t0", 1), ("t1", 1)]),
                    ("c", &[("t0", 2)]),
                ],
            ),
            (
                &[("a", &["t0"]), ("b", &["t1"])],
                &[("a", &[("t0", 0), ("t0", 1), ("t0", 2)]), ("b", &[("t1", 0), ("t1", 1)])],
            ),
        ];
        for (input, expected) in table {
            let got = range_assignment(&members(input), &partitions);
            let expected: BTreeMap<String, Vec<(String, i32)>> = (expected.iter())
                .map(|(m, list)| {
                    (m.to_string(), list.iter().map(|(t, p)| (t.to_string(), *p)).collect())
                })
                .collect();
            assert_eq!(got, expected, "members {input:?}");
        }
    }

    #[test]
    fn assignment_round_trips() {
        let list = vec![("t0".to_string(), 1), ("t1".to_string(), 0)];
        assert_eq!(String::from_utf8_lossy(&encode_assignment(&list)), "t0:1,t1:0");
        let topics = vec!["t0".to_string(), "t2".to_string()];
        assert_eq!(decode_topics(&encode_topics(&topics)), topics);
    }
}
