//! Cairn's Kafka-protocol client library: a [`Producer`], a [`Consumer`] of assigned
//! partitions and an [`Admin`] client over one [`Client`] (bootstrap, metadata, a
//! pipelined connection per broker). It speaks only standard Kafka, so it works against
//! Cairn and against any Kafka 3.x broker.
//!
//! ```no_run
//! # async fn run() -> cairn_client::Result<()> {
//! use std::time::Duration;
//! use cairn_client::*;
//! let client = Client::connect(ClientConfig::new("127.0.0.1:9092")).await?;
//! let producer = Producer::new(&client, ProducerConfig::default()).await?;
//! producer.send(ProducerRecord::new("demo").value(b"hello")).await?.await?;
//! let mut consumer = Consumer::new(&client, ConsumerConfig {
//!     auto_offset_reset: OffsetReset::Earliest,
//!     ..Default::default()
//! });
//! consumer.assign_topic("demo").await?;
//! let records = consumer.poll(Duration::from_secs(1)).await?;
//! # Ok(()) }
//! ```
//!
//! The modules: `conn` (framing, pipelining, version negotiation), `client` (bootstrap and
//! the metadata cache), `batch` (record batch v2 encoding and checked decoding),
//! `compression`, `partitioner` (murmur2 and sticky), `producer`, `consumer`, `group`
//! (membership), `assignor` (range and cooperative-sticky), `admin`, and
//! behind the `cli` feature the `cairn` binary's client commands.

#![warn(missing_docs)]

mod admin;
mod assignor;
mod batch;
mod client;
mod compression;
mod conn;
mod consumer;
mod error;
mod group;
pub mod limits;
mod partitioner;
mod producer;

#[cfg(feature = "cli")]
pub mod cli;

pub use admin::{
    Admin, AlterConfig, ConfigEntry, GroupDescription, GroupListing, GroupMember, NewTopic,
    PartitionLag,
};
pub use assignor::Assignor;
pub use batch::{ConsumerRecord, Header, RecordHeader};
pub use client::{BrokerMetadata, Client, ClientConfig, PartitionMetadata, TopicMetadata};
pub use compression::Compression;
pub use consumer::{
    Consumer, ConsumerConfig, OffsetReset, Rebalance, RebalanceListener, RebalanceProtocol, SeekTo,
    TopicPartition,
};
pub use error::{Error, KafkaCode, Result};
pub use group::GroupConfig;
pub use partitioner::{murmur2, partition_for_key};
pub use producer::{
    Acks, DeliveryFuture, Producer, ProducerConfig, ProducerRecord, RecordMetadata,
};

#[cfg(test)]
mod tests {
    use super::*;

    fn shareable<T: Send + Sync>() {}

    /// Every handle can be moved into a spawned task and used there, `&self` methods
    /// included: a future holding `&Consumer` across an await is `Send` only if the consumer
    /// is `Sync`.
    #[test]
    fn the_public_handles_are_send_and_sync() {
        shareable::<Client>();
        shareable::<Producer>();
        shareable::<Consumer>();
        shareable::<Admin>();
        fn spawnable<F: std::future::Future + Send>(_: F) {}
        let committed = |consumer: Consumer| async move {
            let _ = consumer.committed(&[]).await;
        };
        let _ = |consumer: Consumer| spawnable(committed(consumer));
    }
}
