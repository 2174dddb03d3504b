//! The producer state snapshot: one [`crate::core::frame`] holding every tracked producer and
//! the offset the table covers, so that recovery restores it and replays only the log from
//! that offset (Kafka's `<offset>.snapshot` files). [`ProducerStateTable::restore`] checks the
//! frame and every field before building a table: a damaged or inconsistent snapshot is
//! refused whole with a [`SnapshotError`], never half-applied.

use bytes::{Bytes, BytesMut};

use super::{BatchMetadata, ProducerEntry, ProducerStateTable};
use crate::core::frame::{FrameError, decode_frame, encode_frame};
use crate::core::limits::{PRODUCER_BATCH_WINDOW, PRODUCERS_PER_PARTITION_MAX};

/// The snapshot format this code writes and reads.
pub const SNAPSHOT_VERSION: u32 = 1;

/// Why a snapshot was refused. Recovery then rebuilds from an older snapshot or from the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The frame is cut short, fails its checksum or does not decode.
    #[error("producer state snapshot frame: {0}")]
    Frame(#[from] FrameError),
    /// Bytes follow the frame.
    #[error("{0} stray bytes after the producer state snapshot")]
    TrailingBytes(usize),
    /// Written by a format this code does not read.
    #[error("producer state snapshot version {0} is not supported (expected 1)")]
    Version(u32),
    /// The frame is intact but its contents break the table's rules.
    #[error("producer state snapshot is inconsistent: {0}")]
    Invalid(&'static str),
}

#[derive(Clone, PartialEq, prost::Message)]
struct SnapshotMessage {
    #[prost(uint32, tag = "1")]
    version: u32,
    #[prost(uint64, tag = "2")]
    covered_end_offset: u64,
    #[prost(message, repeated, tag = "3")]
    producers: Vec<ProducerMessage>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ProducerMessage {
    #[prost(int64, tag = "1")]
    producer_id: i64,
    #[prost(int32, tag = "2")]
    epoch: i32,
    #[prost(bool, tag = "3")]
    evicted: bool,
    #[prost(bool, tag = "4")]
    earlier_epochs: bool,
    #[prost(message, repeated, tag = "5")]
    batches: Vec<BatchMessage>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct BatchMessage {
    #[prost(int32, tag = "1")]
    first_sequence: i32,
    #[prost(int32, tag = "2")]
    last_sequence: i32,
    #[prost(uint64, tag = "3")]
    first_offset: u64,
    #[prost(uint64, tag = "4")]
    last_offset: u64,
    #[prost(int64, tag = "5")]
    max_timestamp: i64,
}

impl ProducerStateTable {
    /// The table as one frame, covering the log below
    /// [`covered_end_offset`](Self::covered_end_offset).
    pub fn snapshot(&self) -> Vec<u8> {
        let producers = self.producers.iter().map(|(id, entry)| ProducerMessage {
            producer_id: *id,
            epoch: i32::from(entry.epoch),
            evicted: entry.evicted,
            earlier_epochs: entry.earlier_epochs,
            batches: entry.batches().iter().map(batch_message).collect(),
        });
        let message = SnapshotMessage {
            version: SNAPSHOT_VERSION,
            covered_end_offset: self.covered_end_offset,
            producers: producers.collect(),
        };
        let mut out = BytesMut::new();
        encode_frame(&message, &mut out);
        out.to_vec()
    }

    /// The table a [`snapshot`](Self::snapshot) holds; replay the log from its
    /// [`covered_end_offset`](Self::covered_end_offset) on to bring it up to date.
    pub fn restore(bytes: &[u8]) -> Result<ProducerStateTable, SnapshotError> {
        let bytes = Bytes::copy_from_slice(bytes);
        let (message, used) = decode_frame::<SnapshotMessage>(&bytes)?;
        if used != bytes.len() {
            return Err(SnapshotError::TrailingBytes(bytes.len() - used));
        }
        if message.version != SNAPSHOT_VERSION {
            return Err(SnapshotError::Version(message.version));
        }
        if message.producers.len() > PRODUCERS_PER_PARTITION_MAX {
            return Err(SnapshotError::Invalid("more producers than the limit"));
        }
        let mut table = ProducerStateTable {
            producers: Default::default(),
            covered_end_offset: message.covered_end_offset,
        };
        for producer in &message.producers {
            let entry = producer_entry(producer, message.covered_end_offset)?;
            if table.producers.insert(producer.producer_id, entry).is_some() {
                return Err(SnapshotError::Invalid("a producer id appears twice"));
            }
        }
        table.invariants();
        Ok(table)
    }
}

fn batch_message(batch: &BatchMetadata) -> BatchMessage {
    BatchMessage {
        first_sequence: batch.first_sequence,
        last_sequence: batch.last_sequence,
        first_offset: batch.first_offset,
        last_offset: batch.last_offset,
        max_timestamp: batch.max_timestamp,
    }
}

/// One producer of a snapshot, checked against every rule `invariants` asserts, so that a
/// well-framed but wrong snapshot is an error rather than a panic.
fn producer_entry(
    producer: &ProducerMessage,
    covered_end_offset: u64,
) -> Result<ProducerEntry, SnapshotError> {
    let invalid = |why| Err(SnapshotError::Invalid(why));
    if producer.producer_id < 0 {
        return invalid("a negative producer id");
    }
    let Ok(epoch) = i16::try_from(producer.epoch) else {
        return invalid("an epoch out of range");
    };
    if epoch < 0 {
        return invalid("a negative epoch");
    }
    if producer.batches.is_empty() || producer.batches.len() > PRODUCER_BATCH_WINDOW {
        return invalid("a producer without batches or with more than the window");
    }
    let mut entry = ProducerEntry::new(epoch, producer.earlier_epochs);
    entry.evicted = producer.evicted;
    let mut next_offset = 0;
    for batch in &producer.batches {
        if batch.first_offset < next_offset || batch.last_offset < batch.first_offset {
            return invalid("batch offsets out of order");
        }
        if batch.last_offset >= covered_end_offset {
            return invalid("a batch past the covered offset");
        }
        let span = i32::try_from(batch.last_offset - batch.first_offset);
        let (Ok(span), true) = (span, batch.first_sequence >= 0) else {
            return invalid("a batch's sequence or span out of range");
        };
        if super::sequence_after(batch.first_sequence, span) != batch.last_sequence {
            return invalid("a batch's sequences do not span its offsets");
        }
        next_offset = batch.last_offset + 1;
        entry.push(BatchMetadata {
            first_sequence: batch.first_sequence,
            last_sequence: batch.last_sequence,
            first_offset: batch.first_offset,
            last_offset: batch.last_offset,
            max_timestamp: batch.max_timestamp,
        });
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(message: &SnapshotMessage) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode_frame(message, &mut out);
        out.to_vec()
    }

    fn one_producer(batches: Vec<BatchMessage>) -> SnapshotMessage {
        let producer = ProducerMessage {
            producer_id: 4,
            epoch: 2,
            evicted: false,
            earlier_epochs: false,
            batches,
        };
        SnapshotMessage {
            version: SNAPSHOT_VERSION,
            covered_end_offset: 20,
            producers: vec![producer],
        }
    }

    fn batch(first_offset: u64, last_offset: u64, first_sequence: i32) -> BatchMessage {
        let span = (last_offset - first_offset) as i32;
        let last_sequence = crate::core::producer::sequence_after(first_sequence, span);
        BatchMessage { first_sequence, last_sequence, first_offset, last_offset, max_timestamp: 7 }
    }

    #[test]
    fn a_well_framed_snapshot_is_refused_whole_when_its_contents_break_the_rules() {
        let good = one_producer(vec![batch(3, 5, 0), batch(8, 8, 3)]);
        let table = ProducerStateTable::restore(&framed(&good)).expect("a consistent snapshot");
        assert_eq!(table.producer(4).map(|p| p.batches().len()), Some(2));
        assert_eq!(table.covered_end_offset(), 20);

        let newer = SnapshotMessage { version: 2, ..good.clone() };
        assert_eq!(ProducerStateTable::restore(&framed(&newer)), Err(SnapshotError::Version(2)));
        let cases = [
            ("past the covered offset", one_producer(vec![batch(3, 5, 0), batch(20, 20, 3)])),
            ("offsets out of order", one_producer(vec![batch(8, 8, 3), batch(3, 5, 0)])),
            ("no batch", one_producer(vec![])),
            ("more than the window", one_producer((0..6).map(|i| batch(i, i, i as i32)).collect())),
            ("sequences not spanning offsets", {
                let mut bad = batch(3, 5, 0);
                bad.last_sequence = 9;
                one_producer(vec![bad])
            }),
            ("epoch out of range", {
                let mut bad = good.clone();
                bad.producers[0].epoch = i32::from(i16::MAX) + 1;
                bad
            }),
            ("a producer twice", {
                let mut bad = good.clone();
                bad.producers.push(bad.producers[0].clone());
                bad
            }),
        ];
        for (name, message) in cases {
            let refused = ProducerStateTable::restore(&framed(&message));
            assert!(matches!(refused, Err(SnapshotError::Invalid(_))), "{name}: {refused:?}");
        }
    }
}
