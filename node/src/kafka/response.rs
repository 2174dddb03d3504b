//! Encoding responses: a whole frame (size prefix, response header in the version the API
//! and version call for, body at the request's version), ready to write to the socket.
//!
//! The runtime fills the `kafka-protocol` response structs from the core's answers (error
//! codes from [`super::errors`]) and hands them to [`encode_response`] with the request's
//! header. Requests Cairn does not serve get [`encode_unsupported`].

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, CreatePartitionsResponse, CreateTopicsResponse,
    DeleteTopicsResponse, DescribeClusterResponse, DescribeConfigsResponse, FetchResponse,
    IncrementalAlterConfigsResponse, InitProducerIdResponse, ListOffsetsResponse, MetadataResponse,
    ProduceResponse, ResponseHeader,
};
use kafka_protocol::protocol::Encodable;

use super::errors::unsupported_version_code;
use super::frame::FRAME_SIZE_BYTES;
use super::request::{RequestHeader, Unsupported};
use super::versions::api_versions_response;

/// A response body for one of the APIs Cairn serves.
#[derive(Debug, Clone, PartialEq)]
pub enum KafkaResponse {
    /// ApiVersions; build it with [`super::versions::api_versions_response`].
    ApiVersions(ApiVersionsResponse),
    /// Metadata.
    Metadata(MetadataResponse),
    /// Produce (never sent for acks 0).
    Produce(ProduceResponse),
    /// Fetch.
    Fetch(FetchResponse),
    /// ListOffsets.
    ListOffsets(ListOffsetsResponse),
    /// CreateTopics.
    CreateTopics(CreateTopicsResponse),
    /// DeleteTopics.
    DeleteTopics(DeleteTopicsResponse),
    /// CreatePartitions.
    CreatePartitions(CreatePartitionsResponse),
    /// DescribeConfigs.
    DescribeConfigs(DescribeConfigsResponse),
    /// IncrementalAlterConfigs.
    IncrementalAlterConfigs(IncrementalAlterConfigsResponse),
    /// DescribeCluster.
    DescribeCluster(DescribeClusterResponse),
    /// FindCoordinator.
    FindCoordinator(kafka_protocol::messages::FindCoordinatorResponse),
    /// JoinGroup.
    JoinGroup(kafka_protocol::messages::JoinGroupResponse),
    /// Heartbeat.
    Heartbeat(kafka_protocol::messages::HeartbeatResponse),
    /// LeaveGroup.
    LeaveGroup(kafka_protocol::messages::LeaveGroupResponse),
    /// SyncGroup.
    SyncGroup(kafka_protocol::messages::SyncGroupResponse),
    /// OffsetCommit.
    OffsetCommit(kafka_protocol::messages::OffsetCommitResponse),
    /// OffsetFetch.
    OffsetFetch(kafka_protocol::messages::OffsetFetchResponse),
    /// DescribeGroups.
    DescribeGroups(kafka_protocol::messages::DescribeGroupsResponse),
    /// ListGroups.
    ListGroups(kafka_protocol::messages::ListGroupsResponse),
    /// DeleteGroups.
    DeleteGroups(kafka_protocol::messages::DeleteGroupsResponse),
    /// InitProducerId.
    InitProducerId(InitProducerIdResponse),
}

impl KafkaResponse {
    /// The API this answers.
    pub fn api_key(&self) -> ApiKey {
        match self {
            KafkaResponse::ApiVersions(_) => ApiKey::ApiVersions,
            KafkaResponse::Metadata(_) => ApiKey::Metadata,
            KafkaResponse::Produce(_) => ApiKey::Produce,
            KafkaResponse::Fetch(_) => ApiKey::Fetch,
            KafkaResponse::ListOffsets(_) => ApiKey::ListOffsets,
            KafkaResponse::CreateTopics(_) => ApiKey::CreateTopics,
            KafkaResponse::DeleteTopics(_) => ApiKey::DeleteTopics,
            KafkaResponse::CreatePartitions(_) => ApiKey::CreatePartitions,
            KafkaResponse::DescribeConfigs(_) => ApiKey::DescribeConfigs,
            KafkaResponse::IncrementalAlterConfigs(_) => ApiKey::IncrementalAlterConfigs,
            KafkaResponse::DescribeCluster(_) => ApiKey::DescribeCluster,
            KafkaResponse::FindCoordinator(_) => ApiKey::FindCoordinator,
            KafkaResponse::JoinGroup(_) => ApiKey::JoinGroup,
            KafkaResponse::Heartbeat(_) => ApiKey::Heartbeat,
            KafkaResponse::LeaveGroup(_) => ApiKey::LeaveGroup,
            KafkaResponse::SyncGroup(_) => ApiKey::SyncGroup,
            KafkaResponse::OffsetCommit(_) => ApiKey::OffsetCommit,
            KafkaResponse::OffsetFetch(_) => ApiKey::OffsetFetch,
            KafkaResponse::DescribeGroups(_) => ApiKey::DescribeGroups,
            KafkaResponse::ListGroups(_) => ApiKey::ListGroups,
            KafkaResponse::DeleteGroups(_) => ApiKey::DeleteGroups,
            KafkaResponse::InitProducerId(_) => ApiKey::InitProducerId,
        }
    }

    fn encode(&self, out: &mut BytesMut, version: i16) -> Result<(), String> {
        match self {
            KafkaResponse::ApiVersions(body) => encode_body(body, out, version),
            KafkaResponse::Metadata(body) => encode_body(body, out, version),
            KafkaResponse::Produce(body) => encode_body(body, out, version),
            KafkaResponse::Fetch(body) => encode_body(body, out, version),
            KafkaResponse::ListOffsets(body) => encode_body(body, out, version),
            KafkaResponse::CreateTopics(body) => encode_body(body, out, version),
            KafkaResponse::DeleteTopics(body) => encode_body(body, out, version),
            KafkaResponse::CreatePartitions(body) => encode_body(body, out, version),
            KafkaResponse::DescribeConfigs(body) => encode_body(body, out, version),
            KafkaResponse::IncrementalAlterConfigs(body) => encode_body(body, out, version),
            KafkaResponse::DescribeCluster(body) => encode_body(body, out, version),
            KafkaResponse::FindCoordinator(body) => encode_body(body, out, version),
            KafkaResponse::JoinGroup(body) => encode_body(body, out, version),
            KafkaResponse::Heartbeat(body) => encode_body(body, out, version),
            KafkaResponse::LeaveGroup(body) => encode_body(body, out, version),
            KafkaResponse::SyncGroup(body) => encode_body(body, out, version),
            KafkaResponse::OffsetCommit(body) => encode_body(body, out, version),
            KafkaResponse::OffsetFetch(body) => encode_body(body, out, version),
            KafkaResponse::DescribeGroups(body) => encode_body(body, out, version),
            KafkaResponse::ListGroups(body) => encode_body(body, out, version),
            KafkaResponse::DeleteGroups(body) => encode_body(body, out, version),
            KafkaResponse::InitProducerId(body) => encode_body(body, out, version),
        }
    }
}

/// Why a response could not be encoded. These are bugs of the caller or of the runtime's
/// limits, not of the client; the runtime logs them and closes the connection, since the
/// client would otherwise wait for an answer forever.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The body answers another API than the request.
    #[error("a {body:?} response cannot answer a {request:?} request")]
    WrongApi {
        /// The request's API.
        request: ApiKey,
        /// The body's API.
        body: ApiKey,
    },
    /// The encoder refused the body at this version (a field set that the version lacks).
    #[error("cannot encode {api_key:?} v{api_version}: {reason}")]
    Encoder {
        /// The API.
        api_key: ApiKey,
        /// The version.
        api_version: i16,
        /// What the encoder said.
        reason: String,
    },
    /// The frame would exceed what a size prefix can say.
    #[error("response of {bytes} bytes exceeds the 2 GiB frame limit")]
    TooLarge {
        /// Bytes of the encoded response.
        bytes: usize,
    },
}

/// Encodes `body` as the answer to `request`: size prefix, response header, body.
pub fn encode_response(
    request: &RequestHeader,
    body: &KafkaResponse,
) -> Result<BytesMut, EncodeError> {
    if body.api_key() != request.api_key {
        return Err(EncodeError::WrongApi { request: request.api_key, body: body.api_key() });
    }
    let header_version = request.api_key.response_header_version(request.api_version);
    let encoder_error = |reason: String| EncodeError::Encoder {
        api_key: request.api_key,
        api_version: request.api_version,
        reason,
    };
    let mut out = BytesMut::with_capacity(64);
    out.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(request.correlation_id)
        .encode(&mut out, header_version)
        .map_err(|error| encoder_error(error.to_string()))?;
    body.encode(&mut out, request.api_version).map_err(encoder_error)?;
    patch_size(out)
}

/// The answer to a request Cairn does not serve: UNSUPPORTED_VERSION in the shape of an
/// ApiVersions v0 response (error code, then the supported API table), as KIP-511 has a
/// broker answer an ApiVersions request of a version it does not know.
///
/// For ApiVersions this is exactly what clients expect: the Java client and librdkafka read
/// the table and retry with the newest ApiVersions version Cairn lists. For any other API
/// the body cannot be in the schema the client expects (Cairn has none for that version);
/// the client reads UNSUPPORTED_VERSION or fails to parse the answer and closes the
/// connection itself, either way with an error, not a silent hang. Clients that negotiate
/// (all of the ones Cairn targets) never send such requests. The response header is the
/// version the client expects for that API and version when `kafka-protocol` knows the API,
/// v0 otherwise (and always v0 for ApiVersions).
pub fn encode_unsupported(request: &Unsupported) -> BytesMut {
    let header_version = match ApiKey::try_from(request.api_key) {
        Ok(ApiKey::ApiVersions) | Err(()) => 0,
        Ok(api_key) => api_key.response_header_version(request.api_version),
    };
    let mut out = BytesMut::with_capacity(128);
    out.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(request.correlation_id)
        .encode(&mut out, header_version)
        .expect("a response header encodes at v0 and v1");
    api_versions_response(unsupported_version_code())
        .encode(&mut out, 0)
        .expect("the ApiVersions table encodes at v0");
    patch_size(out).expect("the ApiVersions table is small")
}

fn encode_body<T: Encodable>(body: &T, out: &mut BytesMut, version: i16) -> Result<(), String> {
    body.encode(out, version).map_err(|error| error.to_string())
}

fn patch_size(mut out: BytesMut) -> Result<BytesMut, EncodeError> {
    let bytes = out.len() - FRAME_SIZE_BYTES;
    let size = i32::try_from(bytes).map_err(|_| EncodeError::TooLarge { bytes })?;
    out[..FRAME_SIZE_BYTES].copy_from_slice(&size.to_be_bytes());
    Ok(out)
}
