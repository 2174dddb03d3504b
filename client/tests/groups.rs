//! Consumer groups against a real node: commits as a simple consumer, and subscribed
//! members that split a topic with the range assignor and take over when one leaves.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_client::*;
use common::{Node, WAIT};

fn group(name: &str) -> GroupConfig {
    GroupConfig {
        group_id: name.to_string(),
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(10),
        heartbeat_interval: Duration::from_millis(100),
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

type Seen = Arc<Mutex<HashMap<&'static str, (Vec<TopicPartition>, BTreeSet<(i32, i64)>)>>>;

/// Polls as member `name` until `stop`, recording its assignment and what it read.
fn member(
    client: &Client,
    name: &'static str,
    seen: Seen,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Rebalance>> {
    let client = client.clone();
    tokio::spawn(async move {
        let config = ConsumerConfig {
            auto_offset_reset: OffsetReset::Earliest,
            group: Some(group("members")),
            ..Default::default()
        };
        let mut consumer = Consumer::new(&client, config);
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        consumer.set_rebalance_listener(Box::new(move |event| {
            sink.lock().unwrap().push(event.clone())
        }));
        consumer.subscribe(&["shared"]).unwrap();
        while !stop.load(Ordering::Acquire) {
            let records = consumer.poll(Duration::from_millis(100)).await.unwrap();
            {
                let mut seen = seen.lock().unwrap();
                let entry = seen.entry(name).or_default();
                entry.0 = consumer.assignment().to_vec();
                entry.1.extend(records.iter().map(|r| (r.partition, r.offset)));
            }
            consumer.commit_sync().await.ok();
        }
        consumer.close().await.unwrap();
        events.lock().unwrap().clone()
    })
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
        let seen = seen.lock().unwrap();
        let (Some(a), Some(b)) = (seen.get("a"), seen.get("b")) else { return false };
        let (a, b): (BTreeSet<_>, BTreeSet<_>) = (
            a.0.iter().map(|tp| tp.partition).collect(),
            b.0.iter().map(|tp| tp.partition).collect(),
        );
        a.len() == 3 && b.len() == 3 && a.is_disjoint(&b)
    };
    wait_until("the two members hold three partitions each, disjoint", split).await;
    let all_read = || {
        let seen = seen.lock().unwrap();
        seen.values().flat_map(|(_, read)| read.iter().copied()).collect::<BTreeSet<_>>().len()
            == 120
    };
    wait_until("every record read", all_read).await;
    let described = Admin::new(&client).describe_group("members").await.unwrap();
    assert_eq!((described.state.as_str(), described.protocol.as_str()), ("Stable", "range"));
    assert_eq!(described.members.len(), 2);
    let held: BTreeSet<i32> =
        described.members.iter().flat_map(|m| m.assignment.iter().map(|tp| tp.partition)).collect();
    assert_eq!(held, (0..6).collect(), "DescribeGroups shows the assignment");
    let listed = Admin::new(&client).list_groups().await.unwrap();
    assert!(listed.iter().any(|g| g.group_id == "members"), "{listed:?}");

    stop_a.store(true, Ordering::Release);
    a.await.unwrap();
    let took_over = || seen.lock().unwrap().get("b").is_some_and(|(held, _)| held.len() == 6);
    // Within the session timeout (10 s): b hears of the rebalance by its heartbeat and
    // rejoins, not by being dropped.
    wait_at_most(Duration::from_secs(5), "b holds all six partitions after a left", took_over)
        .await;
    produce(&client, "shared", 30).await;
    let b_reads_new = || {
        let seen = seen.lock().unwrap();
        seen.values().flat_map(|(_, read)| read.iter().copied()).collect::<BTreeSet<_>>().len()
            == 150
    };
    wait_until("b reads what came after", b_reads_new).await;
    stop_b.store(true, Ordering::Release);
    let events = b.await.unwrap();
    let assigned: Vec<usize> = events
        .iter()
        .filter_map(|e| match e {
            Rebalance::Assigned(partitions) => Some(partitions.len()),
            Rebalance::Revoked(_) => None,
        })
        .collect();
    assert_eq!(assigned.last(), Some(&6), "the listener heard the takeover: {events:?}");
    assert!(events.iter().any(|e| matches!(e, Rebalance::Revoked(_))), "{events:?}");
}
