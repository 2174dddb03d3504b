//! The producer with several batches of one partition in flight
//! (`max.in.flight.requests.per.connection` above 1) against a real node: without failures
//! the records land in the order they were sent.

mod common;

use std::time::Duration;

use cairn_client::*;
use common::{Node, WAIT};

#[tokio::test]
async fn many_small_batches_in_flight_land_in_send_order() {
    let node = Node::start().await;
    let client = node.client().await;
    let mut topic = NewTopic::new("in-flight");
    topic.partitions = 1;
    Admin::new(&client).create_topics(&[topic]).await.unwrap();
    // Two or three records per batch, five batches in flight, no linger: many requests
    // pipelined on one connection, from many rounds of the sender.
    let config = ProducerConfig {
        acks: Acks::Leader,
        batch_bytes: 200,
        linger: Duration::ZERO,
        max_in_flight: 5,
        ..Default::default()
    };
    let producer = Producer::new(&client, config).await.unwrap();
    const RECORDS: u64 = 3000;
    let mut deliveries = Vec::new();
    for index in 0..RECORDS {
        let value = index.to_be_bytes();
        let record = ProducerRecord::new("in-flight").partition(0).value(&value);
        deliveries.push(producer.send(record).await.unwrap());
    }
    for (index, delivery) in deliveries.into_iter().enumerate() {
        let written = delivery.wait().await.unwrap();
        assert_eq!(written.offset, index as i64, "record {index} landed at its send position");
    }
    producer.close().await.unwrap();

    let config = ConsumerConfig { auto_offset_reset: OffsetReset::Earliest, ..Default::default() };
    let mut consumer = Consumer::new(&client, config);
    consumer.assign(vec![TopicPartition::new("in-flight", 0)]);
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut next = 0u64;
    while next < RECORDS {
        assert!(tokio::time::Instant::now() < deadline, "only {next} records came");
        for record in consumer.poll(Duration::from_millis(200)).await.unwrap() {
            let value = record.value.as_deref().expect("a value");
            assert_eq!(record.offset, next as i64);
            assert_eq!(u64::from_be_bytes(value.try_into().unwrap()), next, "in send order");
            next += 1;
        }
    }
}
