//! Decoding one request frame: the header (api key, version, correlation id, client id, in
//! the header version the API and version call for) and the body, for the APIs and versions
//! of [`super::versions::SUPPORTED_APIS`].
//!
//! [`decode_request`] has three outcomes:
//!
//! - [`Decoded::Request`]: a typed request to serve;
//! - [`Decoded::Unsupported`]: an API or version Cairn does not serve; the runtime answers it
//!   with [`super::response::encode_unsupported`] and keeps the connection;
//! - [`DecodeError`]: the frame is not a request; the runtime closes the connection (as
//!   Kafka does on a request it cannot parse) and counts it.
//!
//! Every body is walked by [`super::preflight`] before `kafka-protocol` decodes it, so no
//! declared array length can make the decoder allocate more than the frame justifies.

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest,
    DescribeClusterRequest, DescribeConfigsRequest, FetchRequest, IncrementalAlterConfigsRequest,
    InitProducerIdRequest, ListOffsetsRequest, MetadataRequest,
    ProduceRequest as WireProduceRequest, RequestHeader as WireRequestHeader,
};
use kafka_protocol::protocol::Decodable;

use super::preflight;
use super::versions::is_supported;
use crate::core::node::{Acks, OffsetSpec, PartitionId};

/// Bytes every request header starts with: api key (i16), api version (i16), correlation id
/// (i32). They sit at the same place in every header version.
pub const HEADER_IDS_BYTES: usize = 8;

/// The header of a request Cairn serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    /// The API.
    pub api_key: ApiKey,
    /// Its version; the response is encoded at the same version.
    pub api_version: i16,
    /// Echoed in the response.
    pub correlation_id: i32,
    /// The client's self-chosen name, for logs and metrics.
    pub client_id: Option<String>,
}

/// A request for an API or version Cairn does not serve. Answer it with
/// [`super::response::encode_unsupported`]; never close the connection silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsupported {
    /// The api key as sent (possibly one no Kafka version defines).
    pub api_key: i16,
    /// The version as sent.
    pub api_version: i16,
    /// Echoed in the answer.
    pub correlation_id: i32,
}

/// A decoded request body. Apart from Produce, bodies are `kafka-protocol`'s own structs:
/// fields that do not exist at the request's version hold their defaults.
#[derive(Debug, Clone, PartialEq)]
pub enum KafkaRequest {
    /// ApiVersions.
    ApiVersions(ApiVersionsRequest),
    /// Metadata. Whether a missing topic is created is Cairn's `auto.create.topics.enable`
    /// setting and, from v4, the request's `allow_auto_topic_creation`, both required.
    Metadata(MetadataRequest),
    /// Produce, with each partition's records split out as its own buffer.
    Produce(ProduceRequest),
    /// Fetch. Sessions (KIP-227) are not kept: answer with `session_id` 0, which makes
    /// clients send full fetches.
    Fetch(FetchRequest),
    /// ListOffsets; see [`offset_spec`].
    ListOffsets(ListOffsetsRequest),
    /// CreateTopics.
    CreateTopics(CreateTopicsRequest),
    /// DeleteTopics.
    DeleteTopics(DeleteTopicsRequest),
    /// CreatePartitions.
    CreatePartitions(CreatePartitionsRequest),
    /// DescribeConfigs.
    DescribeConfigs(DescribeConfigsRequest),
    /// IncrementalAlterConfigs.
    IncrementalAlterConfigs(IncrementalAlterConfigsRequest),
    /// DescribeCluster.
    DescribeCluster(DescribeClusterRequest),
    /// FindCoordinator.
    FindCoordinator(kafka_protocol::messages::FindCoordinatorRequest),
    /// JoinGroup.
    JoinGroup(kafka_protocol::messages::JoinGroupRequest),
    /// Heartbeat.
    Heartbeat(kafka_protocol::messages::HeartbeatRequest),
    /// LeaveGroup.
    LeaveGroup(kafka_protocol::messages::LeaveGroupRequest),
    /// SyncGroup.
    SyncGroup(kafka_protocol::messages::SyncGroupRequest),
    /// OffsetCommit.
    OffsetCommit(kafka_protocol::messages::OffsetCommitRequest),
    /// OffsetFetch.
    OffsetFetch(kafka_protocol::messages::OffsetFetchRequest),
    /// DescribeGroups.
    DescribeGroups(kafka_protocol::messages::DescribeGroupsRequest),
    /// ListGroups.
    ListGroups(kafka_protocol::messages::ListGroupsRequest),
    /// DeleteGroups.
    DeleteGroups(kafka_protocol::messages::DeleteGroupsRequest),
    /// InitProducerId.
    InitProducerId(InitProducerIdRequest),
}

/// What a frame turned out to be.
// Unboxed on purpose: a `Decoded` is moved once, straight into a match, and boxing would
// cost an allocation per request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// A request to serve.
    Request {
        /// Its header.
        header: RequestHeader,
        /// Its body.
        body: KafkaRequest,
    },
    /// A request Cairn does not serve, to answer with UNSUPPORTED_VERSION.
    Unsupported(Unsupported),
}

/// Why a frame is not a request. Every variant means: close this connection and count it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The frame is shorter than the api key, version and correlation id, so there is no
    /// one to answer.
    #[error("request frame of {frame_bytes} bytes is too short for a header")]
    TooShort {
        /// The frame's size.
        frame_bytes: usize,
    },
    /// The header does not decode.
    #[error(
        "malformed header: api {api_key} v{api_version} correlation {correlation_id}: {reason}"
    )]
    BadHeader {
        /// The api key.
        api_key: i16,
        /// The version.
        api_version: i16,
        /// The correlation id.
        correlation_id: i32,
        /// What the decoder said.
        reason: String,
    },
    /// The body does not decode at its version.
    #[error("malformed body: api {api_key} v{api_version} correlation {correlation_id}: {reason}")]
    BadBody {
        /// The api key.
        api_key: i16,
        /// The version.
        api_version: i16,
        /// The correlation id.
        correlation_id: i32,
        /// What the decoder said.
        reason: String,
    },
}

/// A produce request whose record batches are uniquely owned buffers, ready for
/// [`crate::core::node::Request::Produce`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceRequest {
    /// The transactional id (transactions are not served; a non-null id is the runtime's to
    /// refuse).
    pub transactional_id: Option<String>,
    /// The `acks` field as sent; see [`ProduceRequest::acks`]. With 0 the client expects no
    /// response at all.
    pub acks: i16,
    /// How long the client waits for acknowledgements.
    pub timeout_ms: i32,
    /// The partitions written, by topic, in request order.
    pub topics: Vec<ProduceTopic>,
    /// Whether the batches had to be copied out of the frame (the frame's allocation was
    /// shared with other buffers); the runtime counts this.
    pub batches_copied: bool,
}

/// The partitions of one topic a produce writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceTopic {
    /// The topic's name.
    pub name: Arc<str>,
    /// Its partitions, in request order.
    pub partitions: Vec<ProducePartition>,
}

/// The records a produce writes to one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducePartition {
    /// The partition's index.
    pub index: i32,
    /// The record batches, exactly as sent (`None` if the client sent null).
    pub records: Option<BytesMut>,
}

impl ProduceRequest {
    /// The acknowledgements asked for: 0, 1 or -1 (all); any other value is answered with
    /// INVALID_REQUIRED_ACKS (21) for every partition.
    pub fn acks(&self) -> Option<Acks> {
        match self.acks {
            0 => Some(Acks::None),
            1 => Some(Acks::Leader),
            -1 => Some(Acks::All),
            _ => None,
        }
    }

    /// The partitions and their records, as the core names partitions.
    pub fn into_partitions(self) -> impl Iterator<Item = (PartitionId, Option<BytesMut>)> {
        self.topics.into_iter().flat_map(|topic| {
            let name = topic.name;
            topic.partitions.into_iter().map(move |partition| {
                (PartitionId::new(name.clone(), partition.index), partition.records)
            })
        })
    }
}

/// The core's offset spec for a ListOffsets `timestamp`: -2 earliest, -1 latest, a
/// non-negative value a time in ms. `None` for anything else (-3, max timestamp, needs v7,
/// which Cairn does not serve); answer INVALID_REQUEST (42) for that partition.
pub fn offset_spec(timestamp: i64) -> Option<OffsetSpec> {
    match timestamp {
        -2 => Some(OffsetSpec::Earliest),
        -1 => Some(OffsetSpec::Latest),
        t if t >= 0 => Some(OffsetSpec::Timestamp(t)),
        _ => None,
    }
}

/// Decodes one frame (as [`super::frame::FrameDecoder`] returns it, without its size).
///
/// Produce batches come out without a copy when the frame is the only owner of its
/// allocation; otherwise each batch is copied once (see [`ProduceRequest::batches_copied`]).
pub fn decode_request(frame: BytesMut) -> Result<Decoded, DecodeError> {
    let Some(ids) = frame.first_chunk::<HEADER_IDS_BYTES>() else {
        return Err(DecodeError::TooShort { frame_bytes: frame.len() });
    };
    let unsupported = Unsupported {
        api_key: i16::from_be_bytes([ids[0], ids[1]]),
        api_version: i16::from_be_bytes([ids[2], ids[3]]),
        correlation_id: i32::from_be_bytes([ids[4], ids[5], ids[6], ids[7]]),
    };
    let api_key = match ApiKey::try_from(unsupported.api_key) {
        Ok(key) if is_supported(unsupported.api_key, unsupported.api_version) => key,
        _ => return Ok(Decoded::Unsupported(unsupported)),
    };
    let api_version = unsupported.api_version;
    let bad_header = |reason: String| DecodeError::BadHeader {
        api_key: unsupported.api_key,
        api_version,
        correlation_id: unsupported.correlation_id,
        reason,
    };
    let bad_body = |reason: String| DecodeError::BadBody {
        api_key: unsupported.api_key,
        api_version,
        correlation_id: unsupported.correlation_id,
        reason,
    };
    let frozen = frame.freeze();
    let mut cursor = frozen.clone();
    let header_version = api_key.request_header_version(api_version);
    let wire_header = WireRequestHeader::decode(&mut cursor, header_version)
        .map_err(|error| bad_header(error.to_string()))?;
    let header = RequestHeader {
        api_key,
        api_version,
        correlation_id: wire_header.correlation_id,
        client_id: wire_header.client_id.as_ref().map(|id| id.as_str().to_owned()),
    };
    // The header's handles (client id, tagged fields) share the frame; let them go so a
    // produce can take the frame back.
    drop(wire_header);
    preflight::check_body(api_key, api_version, &cursor)
        .map_err(|error| bad_body(error.to_string()))?;
    let body = match api_key {
        ApiKey::Produce => {
            let wire = body::<WireProduceRequest>(&mut cursor, api_version).map_err(bad_body)?;
            drop(cursor);
            KafkaRequest::Produce(split_produce(wire, frozen))
        }
        ApiKey::Fetch => KafkaRequest::Fetch(body(&mut cursor, api_version).map_err(bad_body)?),
        ApiKey::ListOffsets => {
            KafkaRequest::ListOffsets(body(&mut cursor, api_version).map_err(bad_body)?)
        }
        ApiKey::Metadata => {
            KafkaRequest::Metadata(body(&mut cursor, api_version).map_err(bad_body)?)
        }
        ApiKey::ApiVersions => {
            KafkaRequest::ApiVersions(body(&mut cursor, api_version).map_err(bad_body)?)
        }
        ApiKey::CreateTopics => {
            KafkaRequest::CreateTopics(body(&mut cursor, api_version).map_err(bad_body)?)
        }
        ApiKey::DeleteTopics => {
            KafkaRequest::DeleteTopics(body(&mut cursor, api_version).map_err(bad_body)?)
        }
        ApiKey::CreatePartitions => {
            KafkaRequest::CreatePartitions(body(&mut cursor, api_version).map_err(bad_body)?)
        }
        ApiKey::DescribeConfigs => {
            KafkaRequest::DescribeConfigs(body(&mut cursor, api_version).map_err(bad_body)?)
        }
        ApiKey::IncrementalAlterConfigs => {
            KafkaRequest::IncrementalAlterConfigs(body(&mut cursor, api_version).map_err(bad_body)?)
        }
        ApiKey::DescribeCluster => {
            KafkaRequest::DescribeCluster(body(&mut cursor, api_version).map_err(bad_body)?)
        }
        ApiKey::FindCoordinator => {
            KafkaRequest::FindCoordinator(body(&mut cursor, api_version).map_err(bad_body)?)
        }
        ApiKey::JoinGroup => {
            KafkaRequest::JoinGroup(body(&mut cursor, api_version).map_err(bad_body)?)
        }
        ApiKey::Heartbeat => {
            KafkaRequest::Heartbeat(body(&mut cursor, api_version).map_err(bad_body)?)
        }
        ApiKey::LeaveGroup => {
            KafkaRequest::LeaveGroup(body(&mut cursor, api_version).map_err(bad_body)?)
        }
        ApiKey::SyncGroup => {
            KafkaRequest::SyncGroup(body(&mut cursor, api_version).map_err(bad_body)?)
        }
        ApiKey::OffsetCommit => {
            KafkaRequest::OffsetCommit(body(&mut cursor, api_version).map_err(bad_body)?)
        }
        ApiKey::OffsetFetch => {
            KafkaRequest::OffsetFetch(body(&mut cursor, api_version).map_err(bad_body)?)
        }
        ApiKey::DescribeGroups => {
            KafkaRequest::DescribeGroups(body(&mut cursor, api_version).map_err(bad_body)?)
        }
        ApiKey::ListGroups => {
            KafkaRequest::ListGroups(body(&mut cursor, api_version).map_err(bad_body)?)
        }
        ApiKey::DeleteGroups => {
            KafkaRequest::DeleteGroups(body(&mut cursor, api_version).map_err(bad_body)?)
        }
        ApiKey::InitProducerId => {
            KafkaRequest::InitProducerId(body(&mut cursor, api_version).map_err(bad_body)?)
        }
        // `is_supported` admitted only the APIs above.
        other => unreachable!("api {other:?} passed the version table but has no decoder"),
    };
    Ok(Decoded::Request { header, body })
}

fn body<T: Decodable>(cursor: &mut Bytes, api_version: i16) -> Result<T, String> {
    T::decode(cursor, api_version).map_err(|error| error.to_string())
}

/// Where one partition's records are, between decoding and splitting.
enum Slot {
    /// The client sent null.
    Null,
    /// A byte range of the frame.
    At {
        /// Offset of the first byte in the frame.
        start: usize,
        /// Length in bytes.
        len: usize,
    },
    /// Already owned: empty records, or (never seen) a slice from outside the frame.
    Owned(BytesMut),
}

/// Turns a decoded produce into one with owned batches, without copying them when it can.
///
/// `kafka-protocol` decodes from `Bytes`, so each partition's records come out as a slice
/// sharing the frame's allocation. This notes where each slice sits, drops every decoded
/// handle (topic names are copied out first), takes the frame back as `BytesMut` with
/// `Bytes::try_into_mut`, which succeeds when no other buffer shares the allocation, and
/// splits it at the slice boundaries. When the allocation is shared (the frame was cut from
/// a read buffer that still holds the next request), each batch is copied instead and
/// `batches_copied` says so.
fn split_produce(wire: WireProduceRequest, frame: Bytes) -> ProduceRequest {
    let frame_start = frame.as_ptr() as usize;
    let mut topics = Vec::with_capacity(wire.topic_data.len());
    let mut slots = Vec::new();
    for (topic, data) in wire.topic_data.iter().enumerate() {
        topics.push(ProduceTopic { name: Arc::from(data.name.as_str()), partitions: Vec::new() });
        for partition in &data.partition_data {
            let slot = match &partition.records {
                None => Slot::Null,
                Some(records) => {
                    let start = (records.as_ptr() as usize).wrapping_sub(frame_start);
                    let inside =
                        start.checked_add(records.len()).is_some_and(|end| end <= frame.len());
                    if !records.is_empty() && inside {
                        Slot::At { start, len: records.len() }
                    } else {
                        Slot::Owned(BytesMut::from(&records[..]))
                    }
                }
            };
            slots.push((topic, partition.index, slot));
        }
    }
    let transactional_id = wire.transactional_id.as_ref().map(|id| id.as_str().to_owned());
    let (acks, timeout_ms) = (wire.acks, wire.timeout_ms);
    // The decoder reads front to back, so the slices are in frame order and disjoint.
    let mut end = 0;
    let in_order = slots.iter().all(|(_, _, slot)| match slot {
        Slot::At { start, len } => {
            let ok = *start >= end;
            end = start + len;
            ok
        }
        _ => true,
    });
    drop(wire);
    let (mut frame, batches_copied) = match frame.try_into_mut() {
        Ok(frame) if in_order => (Some(frame), false),
        Ok(frame) => (None, copy_slots(&frame, &mut slots)),
        Err(frame) => (None, copy_slots(&frame, &mut slots)),
    };
    let mut consumed = 0;
    for (topic, index, slot) in slots {
        let records = match slot {
            Slot::Null => None,
            Slot::Owned(records) => Some(records),
            Slot::At { start, len } => {
                let frame = frame.as_mut().expect("slots are owned unless the frame is kept");
                frame.advance(start - consumed);
                consumed = start + len;
                Some(frame.split_to(len))
            }
        };
        topics[topic].partitions.push(ProducePartition { index, records });
    }
    ProduceRequest { transactional_id, acks, timeout_ms, topics, batches_copied }
}

/// Copies every frame slice into its own buffer; returns whether any was copied.
fn copy_slots(frame: &[u8], slots: &mut [(usize, i32, Slot)]) -> bool {
    let mut copied = false;
    for (_, _, slot) in slots.iter_mut() {
        if let Slot::At { start, len } = *slot {
            *slot = Slot::Owned(BytesMut::from(&frame[start..start + len]));
            copied = true;
        }
    }
    copied
}
