//! Consumer groups against a real node: commits as a simple consumer, subscribed members
//! that split a topic with the range assignor and take over when one leaves, and members
//! under the cooperative-sticky assignor that keep their partitions when a third joins.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_client::*;
use common::{Node, WAIT};

fn group(name: &str) -> GroupConfig {
    GroupConfig {
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(10),
        heartbeat_interval: Duration::from_millis(100),
        ..GroupConfig::new(name)
    }
}

async fn produce(client: &Client, topic: &str, count: usize) {
    let producer = Producer::new(client, ProducerConfig::default()).await.unwrap();
    for i in 0..count {
        let key = format!("k{i}");
        producer.send(ProducerRecord::new(topic).key(key.as_bytes()).value(b"v")).await.unwrap();
    }
    producer.close().await.unwrap();
}

#[tokio::test]
async fn a_simple_consumer_commits_and_a_new_one_resumes_there() {
    let node = Node::start().await;
    let client = node.client().await;
    let mut topic = NewTopic::new("commits");
    topic.partitions = 2;
    Admin::new(&client).create_topics(&[topic]).await.unwrap();
    produce(&client, "commits", 40).await;
    let config = ConsumerConfig {
        auto_offset_reset: OffsetReset::Earliest,
        group: Some(group("simple")),
        ..Default::default()
    };
    let tp = TopicPartition::new("commits", 0);
    let mut consumer = Consumer::new(&client, config.clone());
    consumer.assign(vec![tp.clone()]);
    assert_eq!(consumer.committed(std::slice::from_ref(&tp)).await.unwrap()[0].1, None);
    let records = consumer.poll(WAIT).await.unwrap();
    let end = records.last().unwrap().offset + 1;
    consumer.commit_offsets_sync(&[(tp.clone(), 3)]).await.unwrap();
    assert_eq!(consumer.committed(std::slice::from_ref(&tp)).await.unwrap()[0].1, Some(3));
    consumer.commit_async().unwrap().await.unwrap().unwrap();
    assert_eq!(consumer.committed(std::slice::from_ref(&tp)).await.unwrap()[0].1, Some(end));

    consumer.commit_offsets_sync(&[(tp.clone(), 2)]).await.unwrap();
    let mut resumed = Consumer::new(&client, config);
    resumed.assign(vec![tp.clone()]);
    let records = resumed.poll(WAIT).await.unwrap();
    assert_eq!(records.first().map(|r| r.offset), Some(2), "resumes at the committed offset");
}

/// What a member holds, what it read (every read, so a record read twice shows) and what
/// its rebalance listener heard.
#[derive(Debug, Default)]
struct View {
    held: Vec<TopicPartition>,
    read: Vec<(i32, i64)>,
    events: Vec<Rebalance>,
}

type Seen = Arc<Mutex<HashMap<&'static str, View>>>;

/// Polls `topic` as member `name` of `group` until `stop`, recording its assignment, what it
/// read and its listener's events; commits after every poll.
fn member_of(
    client: &Client,
    group: GroupConfig,
    topic: &'static str,
    name: &'static str,
    seen: Seen,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Rebalance>> {
    let client = client.clone();
    tokio::spawn(async move {
        let config = ConsumerConfig {
            auto_offset_reset: OffsetReset::Earliest,
            group: Some(group),
            ..Default::default()
        };
        let mut consumer = Consumer::new(&client, config);
        let sink = seen.clone();
        consumer.set_rebalance_listener(Box::new(move |event| {
            sink.lock().unwrap().entry(name).or_default().events.push(event.clone())
        }));
        consumer.subscribe(&[topic]).unwrap();
        while !stop.load(Ordering::Acquire) {
            let records = consumer.poll(Duration::from_millis(100)).await.unwrap();
            {
                let mut seen = seen.lock().unwrap();
                let entry = seen.entry(name).or_default();
                entry.held = consumer.assignment().to_vec();
                entry.read.extend(records.iter().map(|r| (r.partition, r.offset)));
            }
            consumer.commit_sync().await.ok();
        }
        consumer.close().await.unwrap();
        seen.lock().unwrap()[name].events.clone()
    })
}

fn member(
    client: &Client,
    name: &'static str,
    seen: Seen,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Rebalance>> {
    // A long session, so that a member taking over by hearing of the rebalance (below)
    // cannot be mistaken for one taking over after the leaver's session expired, even on a
    // machine loaded enough to slow the rejoin by seconds.
    let group = GroupConfig { session_timeout: Duration::from_secs(60), ..group("members") };
    member_of(client, group, "shared", name, seen, stop)
}

/// How many distinct records the members read between them.
fn distinct_reads(seen: &Seen) -> usize {
    let seen = seen.lock().unwrap();
    seen.values().flat_map(|view| view.read.iter().copied()).collect::<BTreeSet<_>>().len()
}

fn held_of(view: &View) -> BTreeSet<i32> {
    view.held.iter().map(|tp| tp.partition).collect()
}

fn held(seen: &Seen, name: &str) -> BTreeSet<i32> {
    seen.lock().unwrap().get(name).map(held_of).unwrap_or_default()
}

async fn wait_until(what: &str, check: impl FnMut() -> bool) {
    wait_at_most(WAIT * 2, what, check).await;
}

async fn wait_at_most(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn members_split_a_topic_by_range_and_one_takes_over_when_the_other_leaves() {
    let node = Node::start().await;
    let client = node.client().await;
    let mut topic = NewTopic::new("shared");
    topic.partitions = 6;
    Admin::new(&client).create_topics(&[topic]).await.unwrap();
    produce(&client, "shared", 120).await;

    let seen: Seen = Arc::default();
    let (stop_a, stop_b) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let a = member(&client, "a", seen.clone(), stop_a.clone());
    let b = member(&client, "b", seen.clone(), stop_b.clone());
    let split = || {
        let (a, b) = (held(&seen, "a"), held(&seen, "b"));
        a.len() == 3 && b.len() == 3 && a.is_disjoint(&b)
    };
    wait_until("the two members hold three partitions each, disjoint", split).await;
    wait_until("every record read", || distinct_reads(&seen) == 120).await;
    let described = Admin::new(&client).describe_group("members").await.unwrap();
    assert_eq!((described.state.as_str(), described.protocol.as_str()), ("Stable", "range"));
    assert_eq!(described.members.len(), 2);
    let described_held: BTreeSet<i32> =
        described.members.iter().flat_map(|m| m.assignment.iter().map(|tp| tp.partition)).collect();
    assert_eq!(described_held, (0..6).collect(), "DescribeGroups shows the assignment");
    let listed = Admin::new(&client).list_groups().await.unwrap();
    assert!(listed.iter().any(|g| g.group_id == "members"), "{listed:?}");

    stop_a.store(true, Ordering::Release);
    a.await.unwrap();
    let took_over = || held(&seen, "b").len() == 6;
    // Well within the session timeout (60 s): a's LeaveGroup started the rebalance, b heard
    // of it by its heartbeat and rejoined; a was not dropped for silence.
    wait_at_most(Duration::from_secs(30), "b holds all six partitions after a left", took_over)
        .await;
    produce(&client, "shared", 30).await;
    wait_until("b reads what came after", || distinct_reads(&seen) == 150).await;
    stop_b.store(true, Ordering::Release);
    let events = b.await.unwrap();
    let assigned: Vec<usize> = events
        .iter()
        .filter_map(|e| match e {
            Rebalance::Assigned { partitions, .. } => Some(partitions.len()),
            Rebalance::Revoked { .. } => None,
        })
        .collect();
    assert_eq!(assigned.last(), Some(&6), "the listener heard the takeover: {events:?}");
    assert!(events.iter().any(|e| matches!(e, Rebalance::Revoked { .. })), "{events:?}");
    let eager = events.iter().all(|e| e.protocol() == RebalanceProtocol::Eager);
    assert!(eager, "range rebalances eagerly: {events:?}");
}

fn cooperative(name: &str) -> GroupConfig {
    GroupConfig { assignors: vec![Assignor::CooperativeSticky], ..group(name) }
}

/// The partitions `events` (from index `from` on) revoked.
fn revoked_since(events: &[Rebalance], from: usize) -> BTreeSet<i32> {
    let revoked = events[from..].iter().filter(|e| matches!(e, Rebalance::Revoked { .. }));
    revoked.flat_map(|e| e.partitions().iter().map(|tp| tp.partition)).collect()
}

/// KIP-429 end to end: a and b split six partitions under cooperative-sticky; c joins. a
/// and b each give up one partition (the only revocations they hear) and keep reading the
/// other two throughout; c gets the two moved partitions a generation later; with commits
/// after every poll (and before each revocation), every record is read exactly once.
#[tokio::test]
async fn cooperative_members_keep_their_partitions_when_a_third_joins() {
    let node = Node::start().await;
    let client = node.client().await;
    let mut topic = NewTopic::new("coop");
    topic.partitions = 6;
    Admin::new(&client).create_topics(&[topic]).await.unwrap();
    produce(&client, "coop", 120).await;

    let seen: Seen = Arc::default();
    let stops: Vec<Arc<AtomicBool>> = (0..3).map(|_| Arc::default()).collect();
    // Each member has its own connection, as separate processes would: a JoinGroup the
    // coordinator holds delays every later answer on its connection (Kafka answers in
    // order), so members sharing one would miss each other's rebalances.
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(node.client().await);
    }
    let start = |index: usize, name| {
        let (client, stop) = (&clients[index], stops[index].clone());
        member_of(client, cooperative("coop"), "coop", name, seen.clone(), stop)
    };
    let (a, b) = (start(0, "a"), start(1, "b"));
    let split = || {
        let (a, b) = (held(&seen, "a"), held(&seen, "b"));
        a.len() == 3 && b.len() == 3 && a.is_disjoint(&b)
    };
    wait_until("a and b hold three partitions each, disjoint", split).await;
    wait_until("a and b read the first 120 records", || distinct_reads(&seen) == 120).await;
    let (held_a, held_b) = (held(&seen, "a"), held(&seen, "b"));
    let marks: HashMap<&str, usize> = {
        let seen = seen.lock().unwrap();
        ["a", "b"].into_iter().map(|name| (name, seen[name].events.len())).collect()
    };

    let c = start(2, "c");
    let spread = || {
        let (a, b, c) = (held(&seen, "a"), held(&seen, "b"), held(&seen, "c"));
        let all: BTreeSet<i32> = a.iter().chain(&b).chain(&c).copied().collect();
        a.len() == 2 && b.len() == 2 && c.len() == 2 && all.len() == 6
    };
    wait_until("a, b and c hold two partitions each", spread).await;
    produce(&client, "coop", 60).await;
    wait_until("the three read all 180 records", || distinct_reads(&seen) == 180).await;
    let described = Admin::new(&client).describe_group("coop").await.unwrap();
    assert_eq!(
        (described.state.as_str(), described.protocol.as_str()),
        ("Stable", "cooperative-sticky")
    );
    // What a and b hold and heard now, before leaving the group rebalances the others.
    let settled: HashMap<&str, (BTreeSet<i32>, Vec<Rebalance>)> = {
        let seen = seen.lock().unwrap();
        let view = |name| (held_of(&seen[name]), seen[name].events.clone());
        [("a", view("a")), ("b", view("b"))].into()
    };
    for stop in &stops {
        stop.store(true, Ordering::Release);
    }
    for task in [a, b, c] {
        task.await.unwrap();
    }
    for (name, before) in [("a", &held_a), ("b", &held_b)] {
        let (now, events) = &settled[name];
        let revoked = revoked_since(events, marks[name]);
        assert!(now.is_subset(before), "{name} kept {now:?} of {before:?}");
        assert_eq!(now.len(), 2, "{name} holds {now:?}");
        assert_eq!(&revoked, &(before - now), "{name} revoked only what moved: {events:?}");
        let cooperative = events.iter().all(|e| e.protocol() == RebalanceProtocol::Cooperative);
        assert!(cooperative, "{name}: {events:?}");
    }
    let seen = Arc::try_unwrap(seen).unwrap().into_inner().unwrap();
    // c's first generation gives it nothing (both partitions it will get are still owned:
    // withheld); the follow-up generation, after a and b revoked them, gives it both.
    let c_events: Vec<(bool, usize)> = seen["c"]
        .events
        .iter()
        .map(|e| (matches!(e, Rebalance::Assigned { .. }), e.partitions().len()))
        .collect();
    assert_eq!(c_events[..2], [(true, 0), (true, 2)], "{:?}", seen["c"].events);
    let mut reads: HashMap<(i32, i64), usize> = HashMap::new();
    for view in seen.values() {
        for read in &view.read {
            *reads.entry(*read).or_default() += 1;
        }
    }
    let twice: Vec<_> = reads.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "records read more than once: {twice:?}");
    assert_eq!(reads.len(), 180);
}
