//! The library against a real node over TCP: produce, then consume what was produced with
//! every codec, keys, headers and timestamps; acks; idempotence; admin; metadata refresh.

mod common;

use std::time::Duration;

use cairn_client::*;
use common::{Node, WAIT};

async fn consume_all(client: &Client, topic: &str, expected: usize) -> Vec<ConsumerRecord> {
    let config = ConsumerConfig { auto_offset_reset: OffsetReset::Earliest, ..Default::default() };
    let mut consumer = Consumer::new(client, config);
    consumer.assign_topic(topic).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut records = Vec::new();
    while records.len() < expected {
        assert!(tokio::time::Instant::now() < deadline, "only {} records came", records.len());
        records.extend(consumer.poll(Duration::from_millis(200)).await.unwrap());
    }
    records.sort_by_key(|r| (r.partition, r.offset));
    records
}

async fn create(client: &Client, topic: &str, partitions: i32) {
    let mut new = NewTopic::new(topic);
    new.partitions = partitions;
    Admin::new(client).create_topics(&[new]).await.unwrap();
}

#[tokio::test]
async fn every_codec_round_trips_keys_values_headers_and_timestamps() {
    let node = Node::start().await;
    let client = node.client().await;
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let topic = format!("codec-{codec}");
        create(&client, &topic, 1).await;
        let config = ProducerConfig { compression: codec, ..Default::default() };
        let producer = Producer::new(&client, config).await.unwrap();
        let mut futures = Vec::new();
        for i in 0..50i64 {
            let key = format!("key-{i}");
            let value = format!("value-{i}-{}", "x".repeat(i as usize));
            let header_value = format!("h{i}");
            let headers = [
                Header { key: "index", value: Some(header_value.as_bytes()) },
                Header { key: "empty", value: None },
            ];
            let record = ProducerRecord::new(&topic)
                .key(key.as_bytes())
                .value(value.as_bytes())
                .headers(&headers)
                .timestamp(1_700_000_000_000 + i * 7);
            futures.push(producer.send(record).await.unwrap());
        }
        let mut offsets = Vec::new();
        for future in futures {
            offsets.push(future.await.unwrap().offset);
        }
        assert_eq!(offsets, (0..50).collect::<Vec<_>>(), "{codec}: offsets in send order");
        producer.close().await.unwrap();
        let records = consume_all(&client, &topic, 50).await;
        assert_eq!(records.len(), 50, "{codec}");
        for (i, record) in records.iter().enumerate() {
            let expected_value = format!("value-{i}-{}", "x".repeat(i));
            assert_eq!(record.offset, i as i64);
            assert_eq!(record.key.as_deref(), Some(format!("key-{i}").as_bytes()), "{codec}");
            assert_eq!(record.value.as_deref(), Some(expected_value.as_bytes()), "{codec}");
            assert_eq!(record.timestamp, 1_700_000_000_000 + i as i64 * 7, "{codec}");
            assert_eq!(record.headers.len(), 2);
            assert_eq!(record.headers[0].key, "index");
            assert_eq!(record.headers[0].value.as_deref(), Some(format!("h{i}").as_bytes()));
            assert_eq!(record.headers[1].value, None);
        }
    }
}

#[tokio::test]
async fn keys_land_on_their_murmur2_partition_and_keyless_records_stick() {
    let node = Node::start().await;
    let client = node.client().await;
    create(&client, "keyed", 6).await;
    let producer = Producer::new(&client, ProducerConfig::default()).await.unwrap();
    for i in 0..40 {
        let key = format!("user-{i}");
        let written = producer
            .send(ProducerRecord::new("keyed").key(key.as_bytes()).value(b"v"))
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(written.partition, partition_for_key(key.as_bytes(), 6), "{key}");
    }
    // Keyless records sent together share a batch, hence a partition (KIP-480).
    let mut futures = Vec::new();
    for _ in 0..20 {
        futures.push(producer.send(ProducerRecord::new("keyed").value(b"free")).await.unwrap());
    }
    let mut partitions = Vec::new();
    for future in futures {
        partitions.push(future.await.unwrap().partition);
    }
    assert!(partitions.iter().all(|&p| p == partitions[0]), "{partitions:?}");
    producer.close().await.unwrap();
}

#[tokio::test]
async fn acks_zero_one_and_all_all_write() {
    let node = Node::start().await;
    let client = node.client().await;
    create(&client, "acks", 1).await;
    for acks in [Acks::None, Acks::Leader, Acks::All] {
        let producer =
            Producer::new(&client, ProducerConfig { acks, ..Default::default() }).await.unwrap();
        let written =
            producer.send(ProducerRecord::new("acks").value(b"a")).await.unwrap().await.unwrap();
        if acks == Acks::None {
            assert_eq!(written.offset, -1, "acks=0 learns no offset");
        } else {
            assert!(written.offset >= 0);
        }
        producer.close().await.unwrap();
    }
    let records = consume_all(&client, "acks", 3).await;
    assert_eq!(records.len(), 3);
}

#[tokio::test]
async fn an_idempotent_producer_gets_an_id_and_writes_in_order() {
    let node = Node::start().await;
    let client = node.client().await;
    create(&client, "idem", 2).await;
    let config = ProducerConfig { idempotence: true, linger: Duration::ZERO, ..Default::default() };
    let producer = Producer::new(&client, config).await.unwrap();
    let (id, epoch) = producer.producer_id();
    assert!(id >= 0 && epoch >= 0, "{id} {epoch}");
    let mut futures = Vec::new();
    for i in 0..200 {
        let value = format!("{i}");
        let record = ProducerRecord::new("idem").partition(i % 2).value(value.as_bytes());
        futures.push(producer.send(record).await.unwrap());
    }
    for future in futures {
        future.await.unwrap();
    }
    producer.close().await.unwrap();
    let records = consume_all(&client, "idem", 200).await;
    for partition in 0..2 {
        let values: Vec<i32> = records
            .iter()
            .filter(|r| r.partition == partition)
            .map(|r| std::str::from_utf8(r.value.as_deref().unwrap()).unwrap().parse().unwrap())
            .collect();
        let expected: Vec<i32> = (0..200).filter(|i| i % 2 == partition).collect();
        assert_eq!(values, expected, "partition {partition}");
    }
}

/// A batch of an idempotent producer that fails for good leaves a gap in its partition's
/// sequence numbers: the broker would refuse every later batch as out of order. The producer
/// takes a new producer id instead (as librdkafka does), so later records are written.
#[tokio::test]
async fn an_idempotent_producer_writes_on_after_a_batch_failed_for_good() {
    let node = Node::start().await;
    let client = node.client().await;
    let mut topic = NewTopic::new("idem-gap");
    topic.partitions = 1;
    topic.configs.push(("max.message.bytes".to_string(), "2000".to_string()));
    Admin::new(&client).create_topics(&[topic]).await.unwrap();
    let config = ProducerConfig { idempotence: true, linger: Duration::ZERO, ..Default::default() };
    let producer = Producer::new(&client, config).await.unwrap();
    let first_id = producer.producer_id();
    let send = |value: Vec<u8>| {
        let producer = producer.clone();
        async move { producer.send(ProducerRecord::new("idem-gap").value(&value)).await?.await }
    };
    send(b"before".to_vec()).await.unwrap();
    let too_large = send(vec![b'x'; 5000]).await;
    assert!(matches!(&too_large, Err(Error::Kafka { .. })), "{too_large:?}");
    for value in ["after-1", "after-2"] {
        send(value.as_bytes().to_vec()).await.unwrap_or_else(|e| panic!("{value}: {e}"));
    }
    assert_ne!(producer.producer_id(), first_id, "a new producer id after the gap");
    producer.close().await.unwrap();
    let values: Vec<Vec<u8>> = consume_all(&client, "idem-gap", 3)
        .await
        .into_iter()
        .map(|r| r.value.unwrap().to_vec())
        .collect();
    assert_eq!(values, [b"before".to_vec(), b"after-1".to_vec(), b"after-2".to_vec()]);
}

#[tokio::test]
async fn seek_and_offset_reset_place_the_consumer() {
    let node = Node::start().await;
    let client = node.client().await;
    create(&client, "seek", 1).await;
    let producer = Producer::new(&client, ProducerConfig::default()).await.unwrap();
    for i in 0..10 {
        let value = format!("{i}");
        producer.send(ProducerRecord::new("seek").value(value.as_bytes())).await.unwrap();
    }
    producer.flush().await.unwrap();
    let tp = TopicPartition::new("seek", 0);

    let mut latest = Consumer::new(&client, ConsumerConfig::default());
    latest.assign(vec![tp.clone()]);
    assert!(latest.poll(Duration::from_millis(300)).await.unwrap().is_empty());
    assert_eq!(latest.position(&tp), Some(10), "latest starts at the end");

    let mut consumer = Consumer::new(&client, ConsumerConfig::default());
    consumer.assign(vec![tp.clone()]);
    consumer.seek(&tp, SeekTo::Offset(7)).unwrap();
    let records = consumer.poll(WAIT).await.unwrap();
    assert_eq!(records.iter().map(|r| r.offset).collect::<Vec<_>>(), [7, 8, 9]);
    consumer.seek(&tp, SeekTo::Beginning).unwrap();
    let records = consumer.poll(WAIT).await.unwrap();
    assert_eq!(records.first().map(|r| r.offset), Some(0));

    let config = ConsumerConfig { auto_offset_reset: OffsetReset::None, ..Default::default() };
    let mut strict = Consumer::new(&client, config);
    strict.assign(vec![tp.clone()]);
    let error = strict.poll(Duration::from_millis(100)).await.unwrap_err();
    assert!(matches!(error, Error::NoOffset { .. }), "{error}");
    strict.seek(&tp, SeekTo::Offset(1_000)).unwrap();
    let error = strict.poll(WAIT).await.unwrap_err();
    assert!(matches!(error, Error::NoOffset { .. }), "out of range with reset none: {error}");
}

#[tokio::test]
async fn admin_creates_describes_alters_and_deletes_topics() {
    let node = Node::start().await;
    let client = node.client().await;
    let admin = Admin::new(&client);
    let mut topic = NewTopic::new("admin-topic");
    topic.partitions = 3;
    topic.configs = vec![("retention.ms".into(), "3600000".into())];
    admin.create_topics(&[topic.clone()]).await.unwrap();
    let again = admin.create_topics(&[topic]).await.unwrap_err();
    assert!(
        matches!(&again, Error::Kafka { code, .. } if *code == KafkaCode::TOPIC_ALREADY_EXISTS),
        "{again}"
    );
    let names: Vec<String> =
        admin.list_topics().await.unwrap().iter().map(|t| t.name.to_string()).collect();
    assert!(names.contains(&"admin-topic".to_string()), "{names:?}");
    let described = admin.describe_topics(&["admin-topic"]).await.unwrap();
    assert_eq!(described[0].partitions.len(), 3);
    assert!(described[0].partitions.iter().all(|p| p.leader >= 0 && !p.isr.is_empty()));

    let retention = |entries: &[ConfigEntry]| {
        entries.iter().find(|e| e.name == "retention.ms").and_then(|e| e.value.clone())
    };
    let configs = admin.describe_configs("admin-topic").await.unwrap();
    assert_eq!(retention(&configs).as_deref(), Some("3600000"));
    let change = [AlterConfig::Set("retention.ms".into(), "60000".into())];
    admin.alter_configs("admin-topic", &change).await.unwrap();
    let configs = admin.describe_configs("admin-topic").await.unwrap();
    assert_eq!(retention(&configs).as_deref(), Some("60000"));

    admin.delete_topics(&["admin-topic"]).await.unwrap();
    let error = admin.describe_topics(&["admin-topic"]).await.unwrap_err();
    assert!(matches!(error, Error::UnknownTopic(_)), "{error}");
}

#[tokio::test]
async fn the_producer_sees_new_partitions_after_a_refresh() {
    let node = Node::start().await;
    let mut config = ClientConfig::new(&node.bootstrap());
    config.metadata_max_age = Duration::from_millis(200);
    let client = Client::connect(config).await.unwrap();
    create(&client, "grows", 1).await;
    let producer = Producer::new(&client, ProducerConfig::default()).await.unwrap();
    let send = |partition| {
        let producer = producer.clone();
        async move {
            let record = ProducerRecord::new("grows").partition(partition).value(b"v");
            producer.send(record).await
        }
    };
    send(0).await.unwrap().await.unwrap();
    assert!(send(2).await.is_err(), "partition 2 does not exist yet");
    Admin::new(&client).create_partitions("grows", 3).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let written = loop {
        assert!(tokio::time::Instant::now() < deadline, "the new partition never appeared");
        match send(2).await {
            Ok(future) => break future.await.unwrap(),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    assert_eq!(written.partition, 2);
    producer.close().await.unwrap();
}

#[tokio::test]
async fn a_missing_node_is_a_clear_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let error = Client::connect(ClientConfig::new(&addr.to_string())).await.unwrap_err();
    let message = error.to_string();
    assert!(message.contains(&addr.to_string()) && message.contains("cairn dev"), "{message}");
}

#[tokio::test]
async fn records_sent_while_the_node_is_down_are_retried_and_written_after_its_restart() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let node = Node::start_at(Node::formatted_dir(), port).await;
    let client = node.client().await;
    create(&client, "restart", 1).await;
    let config =
        ProducerConfig { retry_backoff_max: Duration::from_millis(200), ..Default::default() };
    let producer = Producer::new(&client, config).await.unwrap();
    producer.send(ProducerRecord::new("restart").value(b"before")).await.unwrap().await.unwrap();
    let dir = node._dir;
    node.server.stop().await.unwrap();
    // Sent while nothing listens: the batch fails to connect and is retried with backoff.
    let during = producer.send(ProducerRecord::new("restart").value(b"during")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let node = Node::start_at(dir, port).await;
    let written = tokio::time::timeout(WAIT, during).await.expect("delivered in time").unwrap();
    assert_eq!(written.offset, 1);
    let records = consume_all(&client, "restart", 2).await;
    let values: Vec<_> = records.iter().map(|r| r.value.clone().unwrap()).collect();
    assert_eq!(values, [&b"before"[..], &b"during"[..]]);
    drop(node);
}
