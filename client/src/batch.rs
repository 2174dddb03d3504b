//! Kafka record batches (magic v2): the producer's encoder and the consumer's decoder.
//!
//! The encoder writes records straight into one `BytesMut` behind room reserved for the
//! batch header, so an uncompressed batch is finished by patching the header in place: no
//! allocation and no copy per record. A compressed batch compresses the records section
//! once, when the batch is sealed. The CRC-32C covers everything from the attributes to the
//! end, as the format requires.
//!
//! The decoder checks every batch (length, magic, CRC-32C) before it reads a record from
//! it; a batch that fails is an error, never records. Keys, values and header values are
//! slices of the fetched (or decompressed) bytes, not copies.
//!
//! The layout (Kafka's `DefaultRecordBatch`):
//!
//! ```text
//! baseOffset i64 | batchLength i32 | partitionLeaderEpoch i32 | magic i8 | crc u32 |
//! attributes i16 | lastOffsetDelta i32 | baseTimestamp i64 | maxTimestamp i64 |
//! producerId i64 | producerEpoch i16 | baseSequence i32 | recordCount i32 | records
//! ```

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::compression::{self, Compression};

/// The batch header's size: everything before the first record.
pub(crate) const HEADER_BYTES: usize = 61;
/// Where `batchLength` counts from: after `baseOffset` and `batchLength` themselves.
const LENGTH_OFFSET: usize = 12;
const MAGIC_OFFSET: usize = 16;
const CRC_OFFSET: usize = 17;
/// The CRC covers the batch from the attributes on.
const ATTRIBUTES_OFFSET: usize = 21;
const MAGIC: i8 = 2;
/// Attribute bit 5: a control batch (transaction markers), which carries no user records.
const CONTROL_FLAG: i16 = 0x20;
/// Attribute bit 3: the batch's timestamps are the broker's append time.
const LOG_APPEND_TIME_FLAG: i16 = 0x08;

/// A record header, borrowed from the caller for the time of `send`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// The header's key.
    pub key: &'a str,
    /// The header's value, if any.
    pub value: Option<&'a [u8]>,
}

/// A record batch being filled by the producer.
#[derive(Debug)]
pub(crate) struct BatchBuilder {
    buf: BytesMut,
    count: usize,
    base_timestamp: i64,
    max_timestamp: i64,
}

impl BatchBuilder {
    /// An empty batch with room for `capacity` bytes before it grows.
    pub(crate) fn new(capacity: usize) -> BatchBuilder {
        let mut buf = BytesMut::with_capacity(capacity.max(HEADER_BYTES));
        buf.put_bytes(0, HEADER_BYTES);
        BatchBuilder { buf, count: 0, base_timestamp: 0, max_timestamp: i64::MIN }
    }

    /// How many records the batch holds.
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// The batch's size so far, uncompressed, header included.
    pub(crate) fn size(&self) -> usize {
        self.buf.len()
    }

    /// The encoded size of a record, with its length prefix, were it appended now.
    pub(crate) fn record_size(
        &self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header<'_>],
    ) -> usize {
        let body = self.body_size(timestamp, key, value, headers);
        varint_size(body as i64) + body
    }

    fn body_size(
        &self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header<'_>],
    ) -> usize {
        let delta = if self.count == 0 { 0 } else { timestamp.wrapping_sub(self.base_timestamp) };
        let mut size = 1 + varint_size(delta) + varint_size(self.count as i64);
        size += bytes_size(key) + bytes_size(value) + varint_size(headers.len() as i64);
        for header in headers {
            size += bytes_size(Some(header.key.as_bytes())) + bytes_size(header.value);
        }
        size
    }

    /// Appends a record. The caller has checked that it fits (`record_size`).
    pub(crate) fn append(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header<'_>],
    ) {
        if self.count == 0 {
            self.base_timestamp = timestamp;
        }
        let body = self.body_size(timestamp, key, value, headers);
        let before = self.buf.len();
        let buf = &mut self.buf;
        put_varint(buf, body as i64);
        let start = buf.len();
        buf.put_i8(0);
        put_varint(buf, timestamp.wrapping_sub(self.base_timestamp));
        put_varint(buf, self.count as i64);
        put_bytes(buf, key);
        put_bytes(buf, value);
        put_varint(buf, headers.len() as i64);
        for header in headers {
            put_bytes(buf, Some(header.key.as_bytes()));
            put_bytes(buf, header.value);
        }
        assert_eq!(buf.len() - start, body, "the record's size as computed");
        assert!(buf.len() > before);
        self.count += 1;
        self.max_timestamp = self.max_timestamp.max(timestamp);
    }

    /// Seals the batch: compresses the records if asked, fills in the header and the CRC.
    ///
    /// # Panics
    /// If the batch is empty.
    pub(crate) fn finish(
        self,
        compression: Compression,
        producer: ProducerFields,
    ) -> Result<Bytes, String> {
        assert!(self.count > 0, "an empty batch is never sent");
        let mut buf = match compression {
            Compression::None => self.buf,
            codec => {
                let records = &self.buf[HEADER_BYTES..];
                let mut out = BytesMut::with_capacity(HEADER_BYTES + records.len() / 2);
                out.put_bytes(0, HEADER_BYTES);
                compression::compress(codec, records, &mut out)?;
                out
            }
        };
        let length = i32::try_from(buf.len() - LENGTH_OFFSET).map_err(|_| "batch too large")?;
        let mut header = &mut buf[..HEADER_BYTES];
        header.put_i64(0);
        header.put_i32(length);
        header.put_i32(-1);
        header.put_i8(MAGIC);
        header.put_u32(0);
        header.put_i16(compression.id());
        header.put_i32(self.count as i32 - 1);
        header.put_i64(self.base_timestamp);
        header.put_i64(self.max_timestamp);
        header.put_i64(producer.producer_id);
        header.put_i16(producer.producer_epoch);
        header.put_i32(producer.base_sequence);
        header.put_i32(self.count as i32);
        assert!(header.is_empty(), "the header fills its reserved room exactly");
        let crc = crc32c::crc32c(&buf[ATTRIBUTES_OFFSET..]);
        buf[CRC_OFFSET..ATTRIBUTES_OFFSET].copy_from_slice(&crc.to_be_bytes());
        Ok(buf.freeze())
    }
}

/// The idempotent producer's fields of a batch header; all -1 without idempotence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerFields {
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
    pub(crate) base_sequence: i32,
}

impl ProducerFields {
    pub(crate) const NONE: ProducerFields =
        ProducerFields { producer_id: -1, producer_epoch: -1, base_sequence: -1 };
}

/// A record read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
    /// Its timestamp in milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Whether the timestamp is the broker's append time (else the producer's create time).
    pub log_append_time: bool,
    /// The key, if any.
    pub key: Option<Bytes>,
    /// The value, if any (a tombstone has none).
    pub value: Option<Bytes>,
    /// The headers, in order.
    pub headers: Vec<RecordHeader>,
}

/// A header of a record read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    /// The header's key.
    pub key: String,
    /// The header's value, if any.
    pub value: Option<Bytes>,
}

/// Where decoding a fetched record set stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decoded {
    /// The offset after the last whole batch read (its last offset plus one), or `None`
    /// when no whole batch was there.
    pub(crate) next_offset: Option<i64>,
}

/// Decodes the whole batches in `data` (a fetch answer may end in a partial one, which is
/// ignored), appending to `out` the records at `from_offset` or later.
pub(crate) fn decode(
    topic: &Arc<str>,
    partition: i32,
    mut data: Bytes,
    from_offset: i64,
    decompressed_bytes_max: usize,
    out: &mut Vec<ConsumerRecord>,
) -> Result<Decoded, DecodeError> {
    let mut next_offset = None;
    // Bounded by the data: every turn consumes one whole batch or stops.
    while data.len() >= LENGTH_OFFSET {
        let base_offset = i64::from_be_bytes(data[..8].try_into().expect("eight bytes"));
        let fail = |reason: String| DecodeError { offset: base_offset, reason };
        let length = i32::from_be_bytes(data[8..12].try_into().expect("four bytes"));
        let length = usize::try_from(length).map_err(|_| fail(format!("length {length}")))?;
        if length < HEADER_BYTES - LENGTH_OFFSET {
            return Err(fail(format!("length {length} is shorter than a batch header")));
        }
        if data.len() < LENGTH_OFFSET + length {
            break;
        }
        let batch = data.split_to(LENGTH_OFFSET + length);
        let magic = batch[MAGIC_OFFSET] as i8;
        if magic != MAGIC {
            return Err(fail(format!("magic {magic}: only record batches v2 are read")));
        }
        let crc = u32::from_be_bytes(batch[CRC_OFFSET..ATTRIBUTES_OFFSET].try_into().unwrap());
        let computed = crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..]);
        if crc != computed {
            return Err(fail(format!("CRC-32C {computed:#010x}, the header says {crc:#010x}")));
        }
        let header = read_header(&batch);
        next_offset = Some(base_offset + i64::from(header.last_offset_delta) + 1);
        if header.attributes & CONTROL_FLAG != 0 {
            continue;
        }
        let codec = Compression::from_id(header.attributes & 0x07)
            .ok_or_else(|| fail(format!("unknown compression {}", header.attributes & 7)))?;
        let records = match codec {
            Compression::None => batch.slice(HEADER_BYTES..),
            codec => {
                let input = &batch[HEADER_BYTES..];
                let plain = compression::decompress(codec, input, decompressed_bytes_max)
                    .map_err(|e| fail(format!("{codec}: {e}")))?;
                Bytes::from(plain)
            }
        };
        let context = BatchContext { topic, partition, base_offset, header, from_offset };
        read_records(&context, records, out).map_err(fail)?;
    }
    Ok(Decoded { next_offset })
}

/// A batch that failed its checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError {
    pub(crate) offset: i64,
    pub(crate) reason: String,
}

#[derive(Debug, Clone, Copy)]
struct BatchHeader {
    attributes: i16,
    last_offset_delta: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    count: i32,
}

fn read_header(batch: &[u8]) -> BatchHeader {
    let i16_at = |at: usize| i16::from_be_bytes(batch[at..at + 2].try_into().unwrap());
    let i32_at = |at: usize| i32::from_be_bytes(batch[at..at + 4].try_into().unwrap());
    let i64_at = |at: usize| i64::from_be_bytes(batch[at..at + 8].try_into().unwrap());
    BatchHeader {
        attributes: i16_at(21),
        last_offset_delta: i32_at(23),
        base_timestamp: i64_at(27),
        max_timestamp: i64_at(35),
        count: i32_at(57),
    }
}

struct BatchContext<'a> {
    topic: &'a Arc<str>,
    partition: i32,
    base_offset: i64,
    header: BatchHeader,
    from_offset: i64,
}

fn read_records(
    context: &BatchContext<'_>,
    records: Bytes,
    out: &mut Vec<ConsumerRecord>,
) -> Result<(), String> {
    let header = context.header;
    let count =
        usize::try_from(header.count).map_err(|_| format!("record count {}", header.count))?;
    let append_time = header.attributes & LOG_APPEND_TIME_FLAG != 0;
    let mut reader = Reader { data: &records, at: 0 };
    for index in 0..count {
        let length = reader.varint()?;
        let length = usize::try_from(length).map_err(|_| format!("record {index}: length"))?;
        let end = reader.at.checked_add(length).filter(|&end| end <= records.len());
        let end = end.ok_or_else(|| format!("record {index} runs past its batch"))?;
        let _attributes = reader.byte()?;
        let timestamp_delta = reader.varint()?;
        let offset_delta = reader.varint()?;
        let key = reader.bytes(&records)?;
        let value = reader.bytes(&records)?;
        let header_count = reader.varint()?;
        let header_count =
            usize::try_from(header_count).map_err(|_| format!("record {index}: header count"))?;
        if header_count > length {
            return Err(format!("record {index}: {header_count} headers in {length} bytes"));
        }
        let mut headers = Vec::with_capacity(header_count);
        for _ in 0..header_count {
            let key = reader.bytes(&records)?.ok_or("a header with a null key")?;
            let key = String::from_utf8_lossy(&key).into_owned();
            headers.push(RecordHeader { key, value: reader.bytes(&records)? });
        }
        if reader.at != end {
            return Err(format!("record {index}: its length says {length} bytes"));
        }
        let offset = context.base_offset + offset_delta;
        if offset < context.from_offset {
            continue;
        }
        let timestamp = if append_time {
            header.max_timestamp
        } else {
            header.base_timestamp.wrapping_add(timestamp_delta)
        };
        out.push(ConsumerRecord {
            topic: context.topic.clone(),
            partition: context.partition,
            offset,
            timestamp,
            log_append_time: append_time,
            key,
            value,
            headers,
        });
    }
    if reader.at != records.len() {
        return Err(format!("{} bytes after the last record", records.len() - reader.at));
    }
    Ok(())
}

/// Reads varints and length-prefixed bytes from a records section.
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let byte = *self.data.get(self.at).ok_or("a record runs past its batch")?;
        self.at += 1;
        Ok(byte)
    }

    /// A zigzag varint of up to 64 bits (Kafka's varint and varlong share the encoding).
    fn varint(&mut self) -> Result<i64, String> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err("a varint longer than ten bytes".to_string())
    }

    fn bytes(&mut self, whole: &Bytes) -> Result<Option<Bytes>, String> {
        let length = self.varint()?;
        if length < 0 {
            return Ok(None);
        }
        let start = self.at;
        let end = usize::try_from(length).ok().and_then(|n| start.checked_add(n));
        let end = end.filter(|&end| end <= self.data.len()).ok_or("a field runs past its batch")?;
        self.at = end;
        Ok(Some(whole.slice(start..end)))
    }
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn varint_size(value: i64) -> usize {
    let bits = 64 - zigzag(value).leading_zeros() as usize;
    bits.max(1).div_ceil(7)
}

fn put_varint(buf: &mut BytesMut, value: i64) {
    let mut rest = zigzag(value);
    while rest >= 0x80 {
        buf.put_u8((rest as u8) | 0x80);
        rest >>= 7;
    }
    buf.put_u8(rest as u8);
}

fn bytes_size(data: Option<&[u8]>) -> usize {
    match data {
        None => varint_size(-1),
        Some(data) => varint_size(data.len() as i64) + data.len(),
    }
}

fn put_bytes(buf: &mut BytesMut, data: Option<&[u8]>) {
    match data {
        None => put_varint(buf, -1),
        Some(data) => {
            put_varint(buf, data.len() as i64);
            buf.put_slice(data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic() -> Arc<str> {
        Arc::from("t")
    }

    fn sample(codec: Compression) -> Bytes {
        let mut builder = BatchBuilder::new(1024);
        let headers = [Header { key: "h", value: Some(b"v") }, Header { key: "n", value: None }];
        builder.append(1_700_000_000_000, Some(b"k1"), Some(b"one"), &headers);
        builder.append(1_699_999_999_000, None, None, &[]);
        builder.append(1_700_000_000_500, Some(b""), Some(&[7u8; 300]), &[]);
        builder.finish(codec, ProducerFields::NONE).unwrap()
    }

    #[test]
    fn every_codec_round_trips_keys_values_headers_and_timestamps() {
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut out = Vec::new();
            let decoded = decode(&topic(), 3, sample(codec), 0, 1 << 20, &mut out).unwrap();
            assert_eq!(decoded.next_offset, Some(3), "{codec}");
            assert_eq!(out.len(), 3, "{codec}");
            assert_eq!(out[0].key.as_deref(), Some(&b"k1"[..]));
            assert_eq!(out[0].value.as_deref(), Some(&b"one"[..]));
            assert_eq!(out[0].timestamp, 1_700_000_000_000);
            assert_eq!(out[0].headers.len(), 2);
            assert_eq!(out[0].headers[0].value.as_deref(), Some(&b"v"[..]));
            assert_eq!(out[0].headers[1].value, None);
            assert_eq!((out[1].key.clone(), out[1].value.clone()), (None, None));
            assert_eq!(out[1].timestamp, 1_699_999_999_000, "a negative delta");
            assert_eq!(out[2].key.as_deref(), Some(&b""[..]), "empty is not null");
            assert_eq!(out[2].offset, 2);
            assert_eq!(out[2].partition, 3);
        }
    }

    #[test]
    fn the_header_matches_the_format() {
        let batch = sample(Compression::None);
        assert_eq!(i32::from_be_bytes(batch[8..12].try_into().unwrap()) as usize, batch.len() - 12);
        assert_eq!(batch[16], 2, "magic");
        let header = read_header(&batch);
        assert_eq!(header.count, 3);
        assert_eq!(header.last_offset_delta, 2);
        assert_eq!(header.max_timestamp, 1_700_000_000_500);
    }

    #[test]
    fn a_flipped_bit_anywhere_after_the_crc_is_an_error_not_records() {
        let batch = sample(Compression::Lz4);
        for at in ATTRIBUTES_OFFSET..batch.len() {
            let mut broken = batch.to_vec();
            broken[at] ^= 0x10;
            let mut out = Vec::new();
            let result = decode(&topic(), 0, Bytes::from(broken), 0, 1 << 20, &mut out);
            assert!(result.is_err(), "byte {at}");
            assert!(out.is_empty(), "byte {at}");
        }
    }

    #[test]
    fn records_before_the_position_and_a_partial_tail_are_skipped() {
        let mut data = BytesMut::new();
        data.extend_from_slice(&sample(Compression::None));
        let second = sample(Compression::Zstd);
        data.extend_from_slice(&second[..second.len() - 1]);
        let mut out = Vec::new();
        let decoded = decode(&topic(), 0, data.freeze(), 1, 1 << 20, &mut out).unwrap();
        assert_eq!(out.iter().map(|r| r.offset).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(decoded.next_offset, Some(3));
    }

    type Generated = (i64, Option<Vec<u8>>, Option<Vec<u8>>, Vec<(String, Option<Vec<u8>>)>);

    fn generated_record() -> impl proptest::strategy::Strategy<Value = Generated> {
        use proptest::prelude::*;
        let bytes = proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300));
        let header =
            ("[a-z]{0,8}", proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)));
        (
            1_600_000_000_000i64..1_800_000_000_000,
            bytes.clone(),
            bytes,
            proptest::collection::vec(header, 0..4),
        )
    }

    proptest::proptest! {
        /// Any records, any codec: what the decoder reads is what the encoder was given.
        #[test]
        fn encoded_records_decode_to_themselves(
            records in proptest::collection::vec(generated_record(), 1..40),
            codec in 0i16..5,
        ) {
            let codec = Compression::from_id(codec).unwrap();
            let mut builder = BatchBuilder::new(64);
            for (timestamp, key, value, headers) in &records {
                let headers: Vec<Header<'_>> = headers
                    .iter()
                    .map(|(k, v)| Header { key: k, value: v.as_deref() })
                    .collect();
                builder.append(*timestamp, key.as_deref(), value.as_deref(), &headers);
            }
            let batch = builder.finish(codec, ProducerFields::NONE).unwrap();
            let mut out = Vec::new();
            decode(&topic(), 0, batch, 0, 1 << 24, &mut out).unwrap();
            proptest::prop_assert_eq!(out.len(), records.len());
            for (index, (record, (timestamp, key, value, headers))) in out.iter().zip(&records).enumerate() {
                proptest::prop_assert_eq!(record.offset, index as i64);
                proptest::prop_assert_eq!(record.timestamp, *timestamp);
                proptest::prop_assert_eq!(record.key.as_deref(), key.as_deref());
                proptest::prop_assert_eq!(record.value.as_deref(), value.as_deref());
                let read: Vec<(String, Option<Vec<u8>>)> = record
                    .headers
                    .iter()
                    .map(|h| (h.key.clone(), h.value.as_ref().map(|v| v.to_vec())))
                    .collect();
                proptest::prop_assert_eq!(&read, headers);
            }
        }

        /// Untrusted bytes: decoding never panics, and a batch whose CRC no longer matches
        /// yields an error and no record.
        #[test]
        fn decoding_any_bytes_never_panics(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            flip in 0usize..400,
        ) {
            let mut out = Vec::new();
            let _ = decode(&topic(), 0, Bytes::from(data), 0, 1 << 20, &mut out);
            let mut batch = sample(Compression::Snappy).to_vec();
            let at = ATTRIBUTES_OFFSET + flip % (batch.len() - ATTRIBUTES_OFFSET);
            batch[at] = batch[at].wrapping_add(1);
            let mut out = Vec::new();
            proptest::prop_assert!(decode(&topic(), 0, Bytes::from(batch), 0, 1 << 20, &mut out).is_err());
            proptest::prop_assert!(out.is_empty());
        }
    }

    #[test]
    fn varints_match_kafkas_zigzag_encoding() {
        for (value, encoded) in
            [(0i64, &[0u8][..]), (-1, &[1]), (1, &[2]), (63, &[0x7e]), (64, &[0x80, 1])]
        {
            let mut buf = BytesMut::new();
            put_varint(&mut buf, value);
            assert_eq!(&buf[..], encoded, "{value}");
            assert_eq!(varint_size(value), encoded.len());
            let mut reader = Reader { data: &buf, at: 0 };
            assert_eq!(reader.varint().unwrap(), value);
        }
        for value in [i64::MIN, i64::MAX, i32::MIN as i64, 300, -300] {
            let mut buf = BytesMut::new();
            put_varint(&mut buf, value);
            assert_eq!(varint_size(value), buf.len());
            assert_eq!(Reader { data: &buf, at: 0 }.varint().unwrap(), value);
        }
    }
}
