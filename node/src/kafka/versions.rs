//! The one table of APIs and versions Cairn serves, and the ApiVersions answer built from it.
//!
//! Every range is inside what the `kafka-protocol` crate can decode and encode (its own
//! ranges, from Kafka 4's schemas, start where KIP-896 removed old versions), and covers the
//! versions librdkafka 2.x, kafka-python and the Java client 3.x pick. `docs/protocol.md`
//! gives the reasoning per API.

use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::api_versions_response::{ApiVersion, ApiVersionsResponse};

/// One API Cairn serves and the versions it accepts (both ends inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRange {
    /// The API.
    pub api_key: ApiKey,
    /// The oldest version accepted.
    pub version_min: i16,
    /// The newest version accepted.
    pub version_max: i16,
}

const fn range(api_key: ApiKey, version_min: i16, version_max: i16) -> ApiRange {
    ApiRange { api_key, version_min, version_max }
}

/// The APIs and versions Cairn serves, in api-key order. Anything else is answered with
/// UNSUPPORTED_VERSION.
pub const SUPPORTED_APIS: &[ApiRange] = &[
    // Topic-name produce; v12 (KIP-890 part 2) and v13 (topic ids) are not served.
    range(ApiKey::Produce, 3, 11),
    // Topic-name fetch; v13+ identifies topics by id only.
    range(ApiKey::Fetch, 4, 12),
    // v7 adds the max-timestamp spec (-3), which the core cannot answer yet; v8+ adds
    // tiered-storage specs. Clients ask for v7+ only for those specs.
    range(ApiKey::ListOffsets, 1, 6),
    // v13 (Kafka 4) only adds a top-level error code.
    range(ApiKey::Metadata, 0, 12),
    // Consumer groups (decision 0015). v2+ of OffsetCommit (v9 is KIP-848's member epoch in
    // the generation's place, the same field for a classic group).
    range(ApiKey::OffsetCommit, 2, 9),
    // v8 batches groups; v9 adds KIP-848's member epoch, ignored for classic groups.
    range(ApiKey::OffsetFetch, 1, 9),
    // v4 batches keys; v5 (KIP-890) and v6 (share groups) are not served.
    range(ApiKey::FindCoordinator, 0, 4),
    range(ApiKey::JoinGroup, 0, 9),
    range(ApiKey::Heartbeat, 0, 4),
    range(ApiKey::LeaveGroup, 0, 5),
    range(ApiKey::SyncGroup, 0, 5),
    // v6 (Kafka 4) only adds an error message.
    range(ApiKey::DescribeGroups, 0, 5),
    // v5 adds a group type filter (KIP-848); Cairn has classic groups only.
    range(ApiKey::ListGroups, 0, 4),
    // v4 (Kafka 4, sent by kafka-python 3) has the v3 schema.
    range(ApiKey::ApiVersions, 0, 4),
    range(ApiKey::CreateTopics, 2, 7),
    range(ApiKey::DeleteTopics, 1, 6),
    // Idempotence without transactions; v5+ (KIP-890, KIP-939) are transactional only.
    range(ApiKey::InitProducerId, 0, 4),
    range(ApiKey::DescribeConfigs, 1, 4),
    range(ApiKey::CreatePartitions, 0, 3),
    range(ApiKey::DeleteGroups, 0, 2),
    range(ApiKey::IncrementalAlterConfigs, 0, 1),
    // v2 (KIP-1073) lists fenced brokers; clients of the era ask for v1.
    range(ApiKey::DescribeCluster, 0, 1),
];

/// The range Cairn accepts for `api_key`, if it serves it at all.
pub fn supported_range(api_key: i16) -> Option<ApiRange> {
    SUPPORTED_APIS.iter().copied().find(|range| range.api_key as i16 == api_key)
}

/// Whether Cairn serves `api_key` at `api_version`.
pub fn is_supported(api_key: i16, api_version: i16) -> bool {
    supported_range(api_key)
        .is_some_and(|range| (range.version_min..=range.version_max).contains(&api_version))
}

/// The ApiVersions answer: every entry of [`SUPPORTED_APIS`], with `error_code`.
pub fn api_versions_response(error_code: i16) -> ApiVersionsResponse {
    let api_keys = SUPPORTED_APIS
        .iter()
        .map(|range| {
            ApiVersion::default()
                .with_api_key(range.api_key as i16)
                .with_min_version(range.version_min)
                .with_max_version(range.version_max)
        })
        .collect();
    ApiVersionsResponse::default().with_error_code(error_code).with_api_keys(api_keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_range_is_inside_what_the_crate_can_encode_and_decode() {
        for range in SUPPORTED_APIS {
            let crate_range = range.api_key.valid_versions();
            assert!(range.version_min <= range.version_max, "{range:?}");
            assert!(crate_range.min <= range.version_min, "{range:?} vs {crate_range}");
            assert!(range.version_max <= crate_range.max, "{range:?} vs {crate_range}");
        }
    }

    #[test]
    fn the_table_is_sorted_and_has_no_duplicates() {
        for pair in SUPPORTED_APIS.windows(2) {
            assert!((pair[0].api_key as i16) < (pair[1].api_key as i16), "{pair:?}");
        }
    }

    #[test]
    fn lookups() {
        assert!(is_supported(ApiKey::Produce as i16, 3));
        assert!(is_supported(ApiKey::Produce as i16, 11));
        assert!(!is_supported(ApiKey::Produce as i16, 2));
        assert!(!is_supported(ApiKey::Produce as i16, 12));
        assert!(is_supported(ApiKey::JoinGroup as i16, 0));
        assert!(!is_supported(ApiKey::JoinGroup as i16, 10));
        assert!(!is_supported(-1, 0));
        assert!(!is_supported(i16::MAX, 0));
        assert_eq!(api_versions_response(0).api_keys.len(), SUPPORTED_APIS.len());
    }
}
