//! The records the coordinator writes to its `__consumer_offsets` partitions, and the Kafka
//! record batches (magic 2) that carry them.
//!
//! Each record's key is a prost [`RecordKey`] naming what it is about: a committed offset
//! (group, topic, partition) or a group's membership (group). Its value is an
//! [`OffsetValue`] or a [`GroupValue`], or null: a tombstone, which deletes what the key
//! names. These are Cairn's own formats, not Kafka's (decision 0015): Kafka tooling reads
//! offsets through OffsetFetch, never from the topic.
//!
//! A batch holds the records of one request (an OffsetCommit's offsets, a generation's
//! metadata, a group's deletion), so a request is in the log whole or not at all: a batch is
//! appended and replicated atomically.

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;

use crate::core::log::batch::{
    BATCH_HEADER_BYTES, BATCH_LENGTH_PREFIX_BYTES, MAGIC_V2, read_varlong,
};

/// What a record is about: its key.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct RecordKey {
    /// [`KIND_OFFSET`] or [`KIND_GROUP`].
    #[prost(uint32, tag = "1")]
    pub kind: u32,
    /// The group.
    #[prost(string, tag = "2")]
    pub group: String,
    /// The topic, for an offset.
    #[prost(string, tag = "3")]
    pub topic: String,
    /// The partition, for an offset.
    #[prost(int32, tag = "4")]
    pub partition: i32,
}

/// A committed offset's key kind.
pub const KIND_OFFSET: u32 = 1;
/// A group metadata key kind.
pub const KIND_GROUP: u32 = 2;

/// A committed offset: the next offset the group consumes from, as in Kafka.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct OffsetValue {
    /// The offset.
    #[prost(int64, tag = "1")]
    pub offset: i64,
    /// The leader epoch of the last record consumed (KIP-320), -1 if unknown.
    #[prost(int32, tag = "2")]
    pub leader_epoch: i32,
    /// The client's metadata string.
    #[prost(string, tag = "3")]
    pub metadata: String,
    /// When it was committed, in ms since the Unix epoch.
    #[prost(int64, tag = "4")]
    pub commit_timestamp_ms: i64,
}

/// A group's completed generation: what a new coordinator restores.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct GroupValue {
    /// The generation.
    #[prost(int32, tag = "1")]
    pub generation: i32,
    /// The protocol type ("consumer"), empty without members.
    #[prost(string, tag = "2")]
    pub protocol_type: String,
    /// The assignor chosen, empty without members.
    #[prost(string, tag = "3")]
    pub protocol_name: String,
    /// The leader's member id, empty without members.
    #[prost(string, tag = "4")]
    pub leader: String,
    /// The members.
    #[prost(message, repeated, tag = "5")]
    pub members: Vec<MemberValue>,
}

/// One member of a generation.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct MemberValue {
    /// Its id.
    #[prost(string, tag = "1")]
    pub member_id: String,
    /// Its `group.instance.id`, for static members.
    #[prost(string, optional, tag = "2")]
    pub group_instance_id: Option<String>,
    /// Its `client.id`.
    #[prost(string, tag = "3")]
    pub client_id: String,
    /// Its session timeout, ms.
    #[prost(uint64, tag = "4")]
    pub session_timeout_ms: u64,
    /// Its rebalance timeout, ms.
    #[prost(uint64, tag = "5")]
    pub rebalance_timeout_ms: u64,
    /// The assignors it listed, in its order, each with its metadata.
    #[prost(message, repeated, tag = "6")]
    pub protocols: Vec<ProtocolValue>,
    /// Its assignment in the generation.
    #[prost(bytes = "bytes", tag = "7")]
    pub assignment: Bytes,
}

/// One assignor a member listed.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ProtocolValue {
    /// The assignor's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The member's metadata (subscription) for it.
    #[prost(bytes = "bytes", tag = "2")]
    pub metadata: Bytes,
}

/// One record: a key and its value, or a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// An offset committed.
    Offset {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The offset, or `None` for a tombstone.
        value: Option<OffsetValue>,
    },
    /// A group's generation.
    Group {
        /// The group.
        group: String,
        /// The generation, or `None` for a tombstone (the group is deleted).
        value: Option<GroupValue>,
    },
}

impl Record {
    /// The group the record is about.
    pub fn group(&self) -> &str {
        match self {
            Record::Offset { group, .. } | Record::Group { group, .. } => group,
        }
    }

    fn key(&self) -> RecordKey {
        match self {
            Record::Offset { group, topic, partition, .. } => RecordKey {
                kind: KIND_OFFSET,
                group: group.clone(),
                topic: topic.clone(),
                partition: *partition,
            },
            Record::Group { group, .. } => RecordKey {
                kind: KIND_GROUP,
                group: group.clone(),
                topic: String::new(),
                partition: 0,
            },
        }
    }

    fn value(&self) -> Option<Vec<u8>> {
        match self {
            Record::Offset { value, .. } => value.as_ref().map(Message::encode_to_vec),
            Record::Group { value, .. } => value.as_ref().map(Message::encode_to_vec),
        }
    }

    /// Decodes a record from its key and value; `None` if they are not a coordinator record.
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Option<Record> {
        let key = RecordKey::decode(key).ok()?;
        match key.kind {
            KIND_OFFSET => {
                let value = match value {
                    Some(bytes) => Some(OffsetValue::decode(bytes).ok()?),
                    None => None,
                };
                let RecordKey { group, topic, partition, .. } = key;
                Some(Record::Offset { group, topic, partition, value })
            }
            KIND_GROUP => {
                let value = match value {
                    Some(bytes) => Some(GroupValue::decode(bytes).ok()?),
                    None => None,
                };
                Some(Record::Group { group: key.group, value })
            }
            _ => None,
        }
    }
}

fn put_varlong(out: &mut BytesMut, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.put_u8((zigzag as u8 & 0x7f) | 0x80);
        zigzag >>= 7;
    }
    out.put_u8(zigzag as u8);
}

const OFFSET_CRC: usize = 17;
const OFFSET_ATTRIBUTES: usize = 21;

/// An uncompressed batch at offset 0 holding `records`, stamped `timestamp_ms`.
///
/// # Panics
///
/// If `records` is empty.
pub fn encode_batch(records: &[Record], timestamp_ms: i64) -> BytesMut {
    assert!(!records.is_empty(), "a batch holds at least one record");
    let mut body = BytesMut::new();
    let mut record = BytesMut::new();
    for (i, item) in records.iter().enumerate() {
        record.clear();
        record.put_u8(0); // attributes
        put_varlong(&mut record, 0); // timestamp delta
        put_varlong(&mut record, i as i64); // offset delta
        let key = item.key().encode_to_vec();
        put_varlong(&mut record, key.len() as i64);
        record.extend_from_slice(&key);
        match item.value() {
            Some(value) => {
                put_varlong(&mut record, value.len() as i64);
                record.extend_from_slice(&value);
            }
            None => put_varlong(&mut record, -1),
        }
        put_varlong(&mut record, 0); // headers
        put_varlong(&mut body, record.len() as i64);
        body.extend_from_slice(&record);
    }
    let count = records.len() as i32;
    let mut out = BytesMut::with_capacity(BATCH_HEADER_BYTES + body.len());
    out.put_i64(0);
    out.put_i32((BATCH_HEADER_BYTES - BATCH_LENGTH_PREFIX_BYTES + body.len()) as i32);
    out.put_i32(-1); // partitionLeaderEpoch, patched by the leader
    out.put_i8(MAGIC_V2);
    out.put_u32(0); // crc, below
    out.put_i16(0); // attributes: uncompressed, not transactional
    out.put_i32(count - 1);
    out.put_i64(timestamp_ms);
    out.put_i64(timestamp_ms);
    out.put_i64(-1); // producerId
    out.put_i16(-1); // producerEpoch
    out.put_i32(-1); // baseSequence
    out.put_i32(count);
    out.extend_from_slice(&body);
    let crc = crc32c::crc32c(&out[OFFSET_ATTRIBUTES..]);
    out[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Calls `visit(offset, record)` for each coordinator record of one batch (the whole of
/// `batch`, whose header is `header`), in order; records that are not the coordinator's
/// (a foreign writer's, or compressed) are skipped and counted in the result.
pub fn decode_batch(
    batch: &[u8],
    header: &crate::core::log::batch::BatchHeader,
    mut visit: impl FnMut(u64, Record),
) -> usize {
    if header.compression() != 0 {
        return header.record_count.max(0) as usize;
    }
    let mut skipped = 0;
    let end = header.total_bytes().min(batch.len());
    let mut pos = BATCH_HEADER_BYTES;
    for _ in 0..header.record_count {
        let Some((offset_delta, key, value, next)) = read_record(batch, pos, end) else {
            return skipped + 1;
        };
        pos = next;
        let offset = header.base_offset.saturating_add(offset_delta).max(0) as u64;
        match key.and_then(|key| Record::decode(key, value)) {
            Some(record) => visit(offset, record),
            None => skipped += 1,
        }
    }
    skipped
}

type RawRecord<'a> = (i64, Option<&'a [u8]>, Option<&'a [u8]>, usize);

/// One record at `pos`: its offset delta, key, value and where the next starts.
fn read_record(batch: &[u8], mut pos: usize, end: usize) -> Option<RawRecord<'_>> {
    let length = usize::try_from(read_varlong(batch, &mut pos)?).ok()?;
    let record_end = pos.checked_add(length)?;
    if record_end > end {
        return None;
    }
    pos += 1; // attributes
    read_varlong(batch, &mut pos)?; // timestamp delta
    let offset_delta = read_varlong(batch, &mut pos)?;
    let field = |pos: &mut usize| -> Option<Option<&[u8]>> {
        let length = read_varlong(batch, pos)?;
        if length < 0 {
            return Some(None);
        }
        let start = *pos;
        let stop = start.checked_add(usize::try_from(length).ok()?)?;
        if stop > record_end {
            return None;
        }
        *pos = stop;
        Some(Some(&batch[start..stop]))
    };
    let key = field(&mut pos)?;
    let value = field(&mut pos)?;
    Some((offset_delta, key, value, record_end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::log::batch::{BatchScan, validate_batch};

    fn offset(group: &str, partition: i32, value: Option<i64>) -> Record {
        Record::Offset {
            group: group.into(),
            topic: "t".into(),
            partition,
            value: value.map(|offset| OffsetValue {
                offset,
                leader_epoch: 3,
                metadata: "m".into(),
                commit_timestamp_ms: 7,
            }),
        }
    }

    #[test]
    fn a_batch_of_records_and_tombstones_reads_back_in_order_with_its_offsets() {
        let group = Record::Group {
            group: "g".into(),
            value: Some(GroupValue {
                generation: 4,
                protocol_type: "consumer".into(),
                protocol_name: "range".into(),
                leader: "m-1".into(),
                members: vec![MemberValue {
                    member_id: "m-1".into(),
                    group_instance_id: Some("i".into()),
                    client_id: "c".into(),
                    session_timeout_ms: 10_000,
                    rebalance_timeout_ms: 30_000,
                    protocols: vec![ProtocolValue { name: "range".into(), metadata: "s".into() }],
                    assignment: Bytes::from_static(b"a"),
                }],
            }),
        };
        let records = vec![
            offset("g", 0, Some(10)),
            offset("g", 1, None),
            group,
            Record::Group { group: "h".into(), value: None },
        ];
        let mut batch = encode_batch(&records, 1_000);
        crate::core::log::batch::patch_batch(&mut batch, 40, 2);
        let header = validate_batch(&batch, 1 << 20).expect("a valid batch");
        assert_eq!(header.record_count, 4);
        let mut read = Vec::new();
        let skipped = decode_batch(&batch, &header, |offset, record| read.push((offset, record)));
        assert_eq!(skipped, 0);
        let expected: Vec<(u64, Record)> = (40..).zip(records).collect();
        assert_eq!(read, expected);
    }

    #[test]
    fn records_that_are_not_the_coordinators_are_skipped_and_counted() {
        let batch = crate::core::log::batch::build::batch(&[b"not a key", b"x"], 5);
        let (_, header) = BatchScan::new(&batch, 1 << 20).next().expect("a batch");
        let mut read = 0;
        assert_eq!(decode_batch(&batch, &header, |_, _| read += 1), 2);
        assert_eq!(read, 0);
    }
}
