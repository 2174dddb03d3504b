//! Encoding answers as chunks for one vectored write, so that Fetch records are never copied.
//!
//! [`encode_response_chunks`] returns a whole frame (size prefix, response header, body) as a
//! list of [`Bytes`] to be written in order. For a Fetch answer the record batches, which are
//! the `Bytes` the log read from its segment, are chunks of their own between the encoded
//! fields around them: `[header and fields][records][fields][records]...[rest]`. Concatenated,
//! the chunks are byte for byte what [`encode_response`] (the `kafka-protocol` encoder)
//! produces for the same answer; the tests here check that for every Fetch version served.
//!
//! Only what Cairn's answers contain is encoded here: Fetch v4 to v12 without tagged fields
//! (Cairn sets none). Any other answer, and a Fetch answer this encoder does not cover, goes
//! through [`encode_response`] as one chunk, so nothing is ever encoded two ways.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchResponse, ResponseHeader};
use kafka_protocol::protocol::Encodable;

use super::frame::FRAME_SIZE_BYTES;
use super::request::RequestHeader;
use super::response::{EncodeError, KafkaResponse, encode_response};

/// Records shorter than this are copied into the encoded fields: below it a chunk of their
/// own costs the write more (one more iovec entry) than the copy saves.
pub const RECORDS_INLINE_BYTES_MAX: usize = 4096;

/// The Fetch versions [`encode_response_chunks`] splits; others are encoded as one chunk.
const SPLIT_VERSIONS: std::ops::RangeInclusive<i16> = 4..=12;
/// The first flexible Fetch version (KIP-482): compact lengths and tagged fields.
const FLEXIBLE_FROM: i16 = 12;

/// Encodes `body` as the answer to `request`: the frame's bytes as chunks to write in order.
/// Empty chunks are left out. Errors as [`encode_response`].
pub fn encode_response_chunks(
    request: &RequestHeader,
    body: &KafkaResponse,
) -> Result<Vec<Bytes>, EncodeError> {
    match body {
        KafkaResponse::Fetch(fetch) if splittable(fetch, request.api_version) => {
            encode_fetch(request, fetch)
        }
        _ => Ok(vec![encode_response(request, body)?.freeze()]),
    }
}

/// Whether the split encoder covers `fetch` at `version`: a served version, no tagged fields,
/// and nothing the version lacks (which `kafka-protocol` refuses, with its own error).
fn splittable(fetch: &FetchResponse, version: i16) -> bool {
    let partition_ok = |p: &PartitionData| {
        p.unknown_tagged_fields.is_empty()
            && p.diverging_epoch == Default::default()
            && p.current_leader == Default::default()
            && p.snapshot_id == Default::default()
            && (version >= 11 || *p.preferred_read_replica == -1)
    };
    let topic_ok = |t: &FetchableTopicResponse| {
        t.unknown_tagged_fields.is_empty() && t.partitions.iter().all(partition_ok)
    };
    SPLIT_VERSIONS.contains(&version)
        && fetch.unknown_tagged_fields.is_empty()
        && fetch.node_endpoints.is_empty()
        && (version >= 7 || fetch.session_id == 0)
        && fetch.responses.iter().all(topic_ok)
}

/// A frame being encoded: the encoded fields in one buffer, and the records to insert into
/// it, each at the position of the buffer where it goes.
struct SplitFrame {
    fields: BytesMut,
    inserts: Vec<(usize, Bytes)>,
    inserted_bytes: usize,
    flexible: bool,
}

impl SplitFrame {
    /// An array's length: INT32, or UNSIGNED_VARINT of length + 1 when flexible; `None` is
    /// a null array.
    fn array_len(&mut self, len: Option<usize>) -> Result<(), String> {
        let len = len.map(|n| u32::try_from(n).map_err(|_| "array too long".to_string()));
        match (len.transpose()?, self.flexible) {
            (None, false) => self.fields.put_i32(-1),
            (Some(n), false) => self.fields.put_i32(i32::try_from(n).map_err(|e| e.to_string())?),
            (None, true) => put_varint(&mut self.fields, 0),
            (Some(n), true) => put_varint(&mut self.fields, n.checked_add(1).ok_or("too long")?),
        }
        Ok(())
    }

    /// A non-null string: INT16 length or COMPACT_STRING.
    fn string(&mut self, text: &str) -> Result<(), String> {
        if self.flexible {
            let len = u32::try_from(text.len()).ok().and_then(|n| n.checked_add(1));
            put_varint(&mut self.fields, len.ok_or("string too long")?);
        } else {
            let len = i16::try_from(text.len()).map_err(|_| "string too long".to_string())?;
            self.fields.put_i16(len);
        }
        self.fields.put_slice(text.as_bytes());
        Ok(())
    }

    /// Nullable bytes (INT32 length or COMPACT_BYTES); the bytes themselves become a chunk
    /// of their own unless they are short.
    fn records(&mut self, records: Option<&Bytes>) -> Result<(), String> {
        let Some(records) = records else {
            return self.array_len(None);
        };
        if self.flexible {
            let len = u32::try_from(records.len()).ok().and_then(|n| n.checked_add(1));
            put_varint(&mut self.fields, len.ok_or("records too long")?);
        } else {
            let len = i32::try_from(records.len()).map_err(|_| "records too long".to_string())?;
            self.fields.put_i32(len);
        }
        if records.len() < RECORDS_INLINE_BYTES_MAX {
            self.fields.put_slice(records);
        } else {
            self.inserts.push((self.fields.len(), records.clone()));
            self.inserted_bytes += records.len();
        }
        Ok(())
    }

    /// An empty tagged-field section (flexible versions only).
    fn no_tags(&mut self) {
        if self.flexible {
            put_varint(&mut self.fields, 0);
        }
    }

    fn partition(&mut self, p: &PartitionData, version: i16) -> Result<(), String> {
        let out = &mut self.fields;
        out.put_i32(p.partition_index);
        out.put_i16(p.error_code);
        out.put_i64(p.high_watermark);
        out.put_i64(p.last_stable_offset);
        if version >= 5 {
            out.put_i64(p.log_start_offset);
        }
        let aborted = p.aborted_transactions.as_ref();
        self.array_len(aborted.map(Vec::len))?;
        for transaction in aborted.into_iter().flatten() {
            transaction.encode(&mut self.fields, version).map_err(|e| e.to_string())?;
        }
        if version >= 11 {
            self.fields.put_i32(*p.preferred_read_replica);
        }
        self.records(p.records.as_ref())?;
        self.no_tags();
        Ok(())
    }

    fn body(&mut self, fetch: &FetchResponse, version: i16) -> Result<(), String> {
        self.fields.put_i32(fetch.throttle_time_ms);
        if version >= 7 {
            self.fields.put_i16(fetch.error_code);
            self.fields.put_i32(fetch.session_id);
        }
        self.array_len(Some(fetch.responses.len()))?;
        for topic in &fetch.responses {
            self.string(topic.topic.as_str())?;
            self.array_len(Some(topic.partitions.len()))?;
            for partition in &topic.partitions {
                self.partition(partition, version)?;
            }
            self.no_tags();
        }
        self.no_tags();
        Ok(())
    }

    /// Patches the size prefix and cuts the fields around the inserted records.
    fn finish(mut self) -> Result<Vec<Bytes>, EncodeError> {
        let bytes = self.fields.len() + self.inserted_bytes - FRAME_SIZE_BYTES;
        let size = i32::try_from(bytes).map_err(|_| EncodeError::TooLarge { bytes })?;
        self.fields[..FRAME_SIZE_BYTES].copy_from_slice(&size.to_be_bytes());
        let fields = self.fields.freeze();
        let mut chunks = Vec::with_capacity(2 * self.inserts.len() + 1);
        let mut from = 0;
        for (at, records) in self.inserts {
            if at > from {
                chunks.push(fields.slice(from..at));
            }
            chunks.push(records);
            from = at;
        }
        if from < fields.len() {
            chunks.push(fields.slice(from..));
        }
        Ok(chunks)
    }
}

fn encode_fetch(request: &RequestHeader, fetch: &FetchResponse) -> Result<Vec<Bytes>, EncodeError> {
    let version = request.api_version;
    let encoder_error = |reason: String| EncodeError::Encoder {
        api_key: request.api_key,
        api_version: version,
        reason,
    };
    let mut frame = SplitFrame {
        fields: BytesMut::with_capacity(256),
        inserts: Vec::new(),
        inserted_bytes: 0,
        flexible: version >= FLEXIBLE_FROM,
    };
    frame.fields.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(request.correlation_id)
        .encode(&mut frame.fields, request.api_key.response_header_version(version))
        .map_err(|error| encoder_error(error.to_string()))?;
    frame.body(fetch, version).map_err(encoder_error)?;
    frame.finish()
}

/// UNSIGNED_VARINT: seven bits per byte, least significant first, high bit set on all but
/// the last byte.
fn put_varint(out: &mut BytesMut, mut value: u32) {
    while value >= 0x80 {
        out.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kafka_protocol::messages::fetch_response::{AbortedTransaction, LeaderIdAndEpoch};
    use kafka_protocol::messages::{
        ApiKey, BrokerId, FetchResponse, ProduceResponse, ProducerId, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;

    use super::*;

    fn header(api_version: i16) -> RequestHeader {
        RequestHeader { api_key: ApiKey::Fetch, api_version, correlation_id: 77, client_id: None }
    }

    fn name(text: &str) -> TopicName {
        TopicName(StrBytes::from_string(text.to_string()))
    }

    /// Distinct bytes of `len`, so a misplaced chunk cannot compare equal.
    fn records(len: usize, seed: u8) -> Bytes {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    fn partition(index: i32, records: Option<Bytes>) -> PartitionData {
        PartitionData::default()
            .with_partition_index(index)
            .with_high_watermark(1_000 + i64::from(index))
            .with_last_stable_offset(900)
            .with_log_start_offset(5)
            .with_records(records)
    }

    /// Two topics: large records, small records, null records, an error, empty records,
    /// aborted transactions (null, empty and two entries).
    fn response(version: i16) -> FetchResponse {
        let aborted = vec![
            AbortedTransaction::default().with_producer_id(ProducerId(7)).with_first_offset(12),
            AbortedTransaction::default()
                .with_producer_id(ProducerId(-3))
                .with_first_offset(i64::MAX),
        ];
        let mut first = vec![
            partition(0, Some(records(70_000, 1))),
            partition(1, Some(records(100, 2))).with_aborted_transactions(Some(aborted)),
            partition(2, None).with_aborted_transactions(None),
            partition(3, Some(Bytes::new())).with_error_code(6).with_high_watermark(-1),
        ];
        if version >= 11 {
            first[0].preferred_read_replica = BrokerId(3);
        }
        let second = vec![
            partition(7, Some(records(RECORDS_INLINE_BYTES_MAX, 3))),
            partition(8, Some(records(RECORDS_INLINE_BYTES_MAX - 1, 4))),
        ];
        let mut body = FetchResponse::default().with_throttle_time_ms(25).with_responses(vec![
            FetchableTopicResponse::default().with_topic(name("orders")).with_partitions(first),
            FetchableTopicResponse::default().with_topic(name("")).with_partitions(second),
        ]);
        if version >= 7 {
            body = body.with_error_code(0).with_session_id(0);
        }
        body
    }

    fn concat(chunks: &[Bytes]) -> Vec<u8> {
        chunks.iter().flat_map(|chunk| chunk.iter().copied()).collect()
    }

    fn contiguous(version: i16, body: &FetchResponse) -> Vec<u8> {
        let answer = KafkaResponse::Fetch(body.clone());
        encode_response(&header(version), &answer).unwrap().to_vec()
    }

    #[test]
    fn split_fetch_answers_are_byte_identical_to_the_crate_encoder_at_every_version() {
        for version in 4..=12 {
            let body = response(version);
            let answer = KafkaResponse::Fetch(body.clone());
            let chunks = encode_response_chunks(&header(version), &answer).unwrap();
            assert_eq!(concat(&chunks), contiguous(version, &body), "v{version}");
            assert!(chunks.iter().all(|chunk| !chunk.is_empty()), "v{version}");
        }
    }

    #[test]
    fn large_records_are_chunks_of_their_own_and_small_ones_are_copied() {
        for version in [4, 11, 12] {
            let body = response(version);
            let answer = KafkaResponse::Fetch(body.clone());
            let chunks = encode_response_chunks(&header(version), &answer).unwrap();
            let shared = |records: &Option<Bytes>| {
                let records = records.as_ref().unwrap();
                chunks.iter().any(|c| c.as_ptr() == records.as_ptr() && c.len() == records.len())
            };
            let [first, second] = &body.responses[..] else { unreachable!() };
            assert!(shared(&first.partitions[0].records), "70,000 bytes not copied, v{version}");
            assert!(shared(&second.partitions[0].records), "at the threshold, v{version}");
            assert!(!shared(&first.partitions[1].records), "100 bytes copied, v{version}");
            assert!(!shared(&second.partitions[1].records), "under the threshold, v{version}");
            // fields, records, fields, records, the rest
            assert_eq!(chunks.len(), 5, "v{version}");
        }
    }

    #[test]
    fn an_answer_of_one_large_partition_is_fields_records_and_a_tail() {
        for (version, tail) in [(4, 0), (11, 0), (12, 3)] {
            let body = FetchResponse::default().with_responses(vec![
                FetchableTopicResponse::default()
                    .with_topic(name("t"))
                    .with_partitions(vec![partition(0, Some(records(1 << 20, 9)))]),
            ]);
            let answer = KafkaResponse::Fetch(body.clone());
            let chunks = encode_response_chunks(&header(version), &answer).unwrap();
            assert_eq!(concat(&chunks), contiguous(version, &body), "v{version}");
            assert_eq!(chunks.len(), if tail == 0 { 2 } else { 3 }, "v{version}");
            assert_eq!(chunks[1].len(), 1 << 20);
            // v12: the partition's, the topic's and the response's empty tagged fields.
            assert_eq!(chunks.get(2).map_or(0, Bytes::len), tail, "v{version}");
        }
    }

    #[test]
    fn fetch_answers_with_tagged_fields_or_unserved_versions_go_through_the_crate() {
        let leader = LeaderIdAndEpoch::default().with_leader_id(BrokerId(2)).with_leader_epoch(4);
        let mut tagged = response(12);
        tagged.responses[0].partitions[0].current_leader = leader;
        let mut unknown = response(12);
        unknown.unknown_tagged_fields = BTreeMap::from([(9, Bytes::from_static(b"x"))]);
        for (version, body) in [(12, tagged), (12, unknown), (13, response(13))] {
            let answer = KafkaResponse::Fetch(body.clone());
            let chunks = encode_response_chunks(&header(version), &answer).unwrap();
            assert_eq!(chunks.len(), 1, "one contiguous chunk, v{version}");
            assert_eq!(concat(&chunks), contiguous(version, &body), "v{version}");
        }
    }

    #[test]
    fn fields_a_version_lacks_are_refused_as_the_crate_refuses_them() {
        let mut body = response(10);
        body.responses[0].partitions[0].preferred_read_replica = BrokerId(1);
        let answer = KafkaResponse::Fetch(body);
        let error = encode_response_chunks(&header(10), &answer).unwrap_err();
        assert!(matches!(error, EncodeError::Encoder { api_version: 10, .. }), "{error}");
    }

    #[test]
    fn other_answers_are_one_chunk_and_a_wrong_api_is_refused() {
        let produce = KafkaResponse::Produce(ProduceResponse::default());
        let request = RequestHeader { api_key: ApiKey::Produce, ..header(9) };
        let chunks = encode_response_chunks(&request, &produce).unwrap();
        assert_eq!(chunks, vec![encode_response(&request, &produce).unwrap().freeze()]);
        let error = encode_response_chunks(&header(12), &produce).unwrap_err();
        assert!(matches!(error, EncodeError::WrongApi { .. }));
    }

    #[test]
    fn varints_match_the_protocol_encoding() {
        for (value, encoded) in [
            (0u32, &[0u8][..]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (u32::MAX, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ] {
            let mut out = BytesMut::new();
            put_varint(&mut out, value);
            assert_eq!(&out[..], encoded, "{value}");
        }
    }
}
