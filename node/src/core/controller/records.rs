//! The metadata records: what the controller writes to the metadata log and every node
//! applies to its [`super::MetadataImage`] (design §5, decision 0009).
//!
//! A Raft entry carries one *batch* of records ([`encode_batch`], [`decode_batch`]), and a
//! batch is one atomic unit: it is committed and applied whole or not at all, so a change
//! that needs several records (a topic and its partitions; a fenced broker and the
//! partitions it led) never shows half done. The records follow KRaft's
//! (`RegisterBrokerRecord`, `PartitionChangeRecord`, ...), encoded with prost. A broker's
//! epoch is the Raft index of the entry holding its registration, as in KRaft.

use std::collections::BTreeMap;

use bytes::Bytes;

/// Broker ids as a prost message, so that a list can be present-but-empty or absent.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct BrokerList {
    /// The broker ids, in order.
    #[prost(int32, repeated, tag = "1")]
    pub ids: Vec<i32>,
}

impl BrokerList {
    /// A list holding `ids`.
    pub fn of(ids: &[i32]) -> BrokerList {
        BrokerList { ids: ids.to_vec() }
    }
}

/// A broker registers (or registers again after a restart): it is fenced until it has
/// caught up with the metadata log. Its broker epoch is the index of this record's entry.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct RegisterBrokerRecord {
    /// The broker's node id.
    #[prost(int32, tag = "1")]
    pub node_id: i32,
    /// A number the broker draws at each start, telling two lives of one node id apart.
    #[prost(uint64, tag = "2")]
    pub incarnation: u64,
    /// The host clients reach the broker's Kafka listener at.
    #[prost(string, tag = "3")]
    pub host: String,
    /// The port of the broker's Kafka listener.
    #[prost(uint32, tag = "4")]
    pub port: u32,
    /// The broker's rack, if it has one.
    #[prost(string, optional, tag = "5")]
    pub rack: Option<String>,
    /// Set only in snapshots: the broker epoch it had. A record in the log leaves it unset;
    /// its epoch is then the index of its entry.
    #[prost(uint64, optional, tag = "6")]
    pub broker_epoch: Option<u64>,
    /// The id of the broker's data directory (its raft bootstrap record's); 0 if unknown.
    #[prost(uint64, tag = "7")]
    pub directory_id: u64,
}

/// A broker is fenced: it leads nothing and is not counted live (its lease lapsed, it asked
/// to shut down, or it registered again).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct FenceBrokerRecord {
    /// The broker.
    #[prost(int32, tag = "1")]
    pub node_id: i32,
    /// The epoch of the registration being fenced; a record for an older one does nothing.
    #[prost(uint64, tag = "2")]
    pub broker_epoch: u64,
}

/// A broker caught up with the metadata log and is live.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct UnfenceBrokerRecord {
    /// The broker.
    #[prost(int32, tag = "1")]
    pub node_id: i32,
    /// The epoch of the registration being unfenced; a record for an older one does nothing.
    #[prost(uint64, tag = "2")]
    pub broker_epoch: u64,
}

/// A topic exists, with every setting by its Kafka name as text.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct TopicRecord {
    /// The topic's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its id: 16 bytes, never all zero.
    #[prost(bytes = "vec", tag = "2")]
    pub topic_id: Vec<u8>,
    /// Every setting, resolved against the controller's defaults at creation, so that every
    /// node reads the same values (a setting added later reads its default).
    #[prost(btree_map = "string, string", tag = "3")]
    pub config: BTreeMap<String, String>,
}

/// A topic and its partitions are gone.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct RemoveTopicRecord {
    /// The topic's id.
    #[prost(bytes = "vec", tag = "1")]
    pub topic_id: Vec<u8>,
}

/// A partition exists with this whole state (a new partition, or a snapshot's).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PartitionRecord {
    /// The topic's id.
    #[prost(bytes = "vec", tag = "1")]
    pub topic_id: Vec<u8>,
    /// The partition's index; partitions of a topic are created in order from 0.
    #[prost(int32, tag = "2")]
    pub partition: i32,
    /// The replicas, in preference order.
    #[prost(int32, repeated, tag = "3")]
    pub replicas: Vec<i32>,
    /// The in-sync replicas.
    #[prost(int32, repeated, tag = "4")]
    pub isr: Vec<i32>,
    /// The eligible leader replicas (KIP-966).
    #[prost(int32, repeated, tag = "5")]
    pub elr: Vec<i32>,
    /// The leader, -1 for none.
    #[prost(int32, tag = "6")]
    pub leader: i32,
    /// The leader epoch.
    #[prost(int32, tag = "7")]
    pub leader_epoch: i32,
    /// The partition epoch.
    #[prost(int32, tag = "8")]
    pub partition_epoch: i32,
}

/// A change to a partition. Applying it bumps the partition epoch, and the leader epoch iff
/// the leader changes. Absent fields stay as they are.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PartitionChangeRecord {
    /// The topic's id.
    #[prost(bytes = "vec", tag = "1")]
    pub topic_id: Vec<u8>,
    /// The partition's index.
    #[prost(int32, tag = "2")]
    pub partition: i32,
    /// The new ISR.
    #[prost(message, optional, tag = "3")]
    pub isr: Option<BrokerList>,
    /// The new eligible leader replicas.
    #[prost(message, optional, tag = "4")]
    pub elr: Option<BrokerList>,
    /// The new leader, -1 for none.
    #[prost(int32, optional, tag = "5")]
    pub leader: Option<i32>,
    /// The new replicas.
    #[prost(message, optional, tag = "6")]
    pub replicas: Option<BrokerList>,
}

/// Settings of a topic change (IncrementalAlterConfigs); a deleted setting is recorded as
/// its default's value, resolved by the controller.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ConfigRecord {
    /// The topic's id.
    #[prost(bytes = "vec", tag = "1")]
    pub topic_id: Vec<u8>,
    /// The settings that change, by Kafka name, with their new values as text.
    #[prost(btree_map = "string, string", tag = "2")]
    pub changes: BTreeMap<String, String>,
}

/// A block of producer ids goes to a broker: ids `first_id .. first_id + count`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ProducerIdsRecord {
    /// The broker the block is for (-1 in a snapshot).
    #[prost(int32, tag = "1")]
    pub broker: i32,
    /// The block's first id.
    #[prost(int64, tag = "2")]
    pub first_id: i64,
    /// How many ids.
    #[prost(int64, tag = "3")]
    pub count: i64,
}

/// One record of the metadata log.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct MetadataRecord {
    /// What the record says; `None` only for a record from a newer version, which is skipped.
    #[prost(oneof = "RecordKind", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9")]
    pub kind: Option<RecordKind>,
}

/// The kinds of [`MetadataRecord`].
#[derive(Clone, PartialEq, Eq, prost::Oneof)]
pub enum RecordKind {
    /// A broker registers.
    #[prost(message, tag = "1")]
    RegisterBroker(RegisterBrokerRecord),
    /// A broker is fenced.
    #[prost(message, tag = "2")]
    FenceBroker(FenceBrokerRecord),
    /// A broker is unfenced.
    #[prost(message, tag = "3")]
    UnfenceBroker(UnfenceBrokerRecord),
    /// A topic is created.
    #[prost(message, tag = "4")]
    Topic(TopicRecord),
    /// A topic is deleted.
    #[prost(message, tag = "5")]
    RemoveTopic(RemoveTopicRecord),
    /// A partition is created.
    #[prost(message, tag = "6")]
    Partition(PartitionRecord),
    /// A partition changes.
    #[prost(message, tag = "7")]
    PartitionChange(PartitionChangeRecord),
    /// A topic's settings change.
    #[prost(message, tag = "8")]
    Config(ConfigRecord),
    /// A producer-id block is handed out.
    #[prost(message, tag = "9")]
    ProducerIds(ProducerIdsRecord),
}

impl From<RecordKind> for MetadataRecord {
    fn from(kind: RecordKind) -> MetadataRecord {
        MetadataRecord { kind: Some(kind) }
    }
}

/// A batch of records as one Raft entry's payload.
#[derive(Clone, PartialEq, prost::Message)]
struct MetadataBatch {
    #[prost(message, repeated, tag = "1")]
    records: Vec<MetadataRecord>,
}

/// Encodes `records` as the payload of one Raft entry.
pub fn encode_batch(records: &[MetadataRecord]) -> Bytes {
    let batch = MetadataBatch { records: records.to_vec() };
    Bytes::from(prost::Message::encode_to_vec(&batch))
}

/// Decodes the payload of one Raft entry.
pub fn decode_batch(bytes: &[u8]) -> Result<Vec<MetadataRecord>, prost::DecodeError> {
    let batch: MetadataBatch = prost::Message::decode(bytes)?;
    Ok(batch.records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_round_trips_with_every_kind() {
        let id = vec![7; 16];
        let records: Vec<MetadataRecord> = vec![
            RecordKind::RegisterBroker(RegisterBrokerRecord {
                node_id: 1,
                incarnation: 9,
                host: "h".into(),
                port: 9092,
                rack: Some("r1".into()),
                broker_epoch: None,
                directory_id: 77,
            })
            .into(),
            RecordKind::FenceBroker(FenceBrokerRecord { node_id: 1, broker_epoch: 4 }).into(),
            RecordKind::UnfenceBroker(UnfenceBrokerRecord { node_id: 1, broker_epoch: 4 }).into(),
            RecordKind::Topic(TopicRecord {
                name: "t".into(),
                topic_id: id.clone(),
                config: [("retention.ms".to_string(), "5".to_string())].into(),
            })
            .into(),
            RecordKind::Partition(PartitionRecord {
                topic_id: id.clone(),
                partition: 0,
                replicas: vec![1, 2],
                isr: vec![1, 2],
                elr: vec![],
                leader: 1,
                leader_epoch: 0,
                partition_epoch: 0,
            })
            .into(),
            RecordKind::PartitionChange(PartitionChangeRecord {
                topic_id: id.clone(),
                partition: 0,
                isr: Some(BrokerList::of(&[])),
                elr: None,
                leader: Some(-1),
                replicas: None,
            })
            .into(),
            RecordKind::Config(ConfigRecord { topic_id: id.clone(), changes: BTreeMap::new() })
                .into(),
            RecordKind::ProducerIds(ProducerIdsRecord { broker: 1, first_id: 0, count: 1000 })
                .into(),
            RecordKind::RemoveTopic(RemoveTopicRecord { topic_id: id }).into(),
        ];
        let bytes = encode_batch(&records);
        assert_eq!(decode_batch(&bytes).unwrap(), records);
        // An empty list and an absent one stay apart: the ISR above is present and empty.
        let RecordKind::PartitionChange(change) =
            decode_batch(&bytes).unwrap()[5].clone().kind.unwrap()
        else {
            panic!("not a partition change")
        };
        assert_eq!(change.isr, Some(BrokerList::of(&[])));
        assert_eq!(change.elr, None);
    }

    #[test]
    fn garbage_does_not_decode() {
        assert!(decode_batch(&[0x0a, 0xff, 0xff]).is_err());
        assert_eq!(decode_batch(&[]).unwrap(), vec![]);
    }
}
