//! A structural check of a request body before `kafka-protocol` decodes it.
//!
//! `kafka-protocol` 0.18 sizes every array with `Vec::with_capacity(count)` from the count on
//! the wire, before it decodes a single element (upstream PRs #152, #161, #200 are open). A
//! ten-byte Metadata request declaring 2^31 topics makes it ask for hundreds of gigabytes;
//! the allocator refuses, and Rust aborts the whole process, every client with it. So
//! before the crate sees a body, this module walks it once, field by field, at its version,
//! and refuses it if any array declares more elements than bytes remain after its count
//! (every element takes at least one byte), or if the body ends inside a field. After a
//! successful walk every array count is one the crate will really find elements for, so
//! what it allocates is proportional to the bytes received.
//!
//! The walk only skips over fields; it allocates nothing and loops only as far as bytes
//! remain. Each walker mirrors the crate's decoder for one API, at the versions of
//! [`super::versions::SUPPORTED_APIS`]; the tests encode every API at every version with
//! the crate and check the walk accepts it.

use kafka_protocol::messages::ApiKey;

/// Why a body failed the walk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreflightError {
    /// The body ends inside a field.
    #[error("request body cut short")]
    Truncated,
    /// An array declares more elements than bytes remain.
    #[error("array declares {count} elements but only {bytes_left} bytes remain")]
    ArrayTooLong {
        /// The declared element count.
        count: u64,
        /// Bytes left after the count.
        bytes_left: usize,
    },
    /// A varint runs past 5 bytes.
    #[error("malformed varint")]
    BadVarint,
    /// The walker has no schema for this API.
    #[error("no schema for api key {0}")]
    UnknownApi(i16),
}

type Walk = Result<(), PreflightError>;

/// Walks `body` as a request of `api_key` at `api_version`. Trailing bytes are left for the
/// decoder to judge.
pub fn check_body(api_key: ApiKey, api_version: i16, body: &[u8]) -> Walk {
    let v = api_version;
    let flexible = match api_key {
        ApiKey::Produce => v >= 9,
        ApiKey::Fetch => v >= 12,
        ApiKey::ListOffsets => v >= 6,
        ApiKey::Metadata => v >= 9,
        ApiKey::ApiVersions => v >= 3,
        ApiKey::CreateTopics => v >= 5,
        ApiKey::DeleteTopics => v >= 4,
        ApiKey::DescribeConfigs => v >= 4,
        ApiKey::CreatePartitions => v >= 2,
        ApiKey::IncrementalAlterConfigs => v >= 1,
        ApiKey::DescribeCluster => true,
        ApiKey::FindCoordinator => v >= 3,
        ApiKey::JoinGroup => v >= 6,
        ApiKey::SyncGroup | ApiKey::Heartbeat | ApiKey::LeaveGroup => v >= 4,
        ApiKey::OffsetCommit => v >= 8,
        ApiKey::OffsetFetch => v >= 6,
        ApiKey::ListGroups => v >= 3,
        ApiKey::DescribeGroups => v >= 5,
        ApiKey::DeleteGroups => v >= 2,
        ApiKey::InitProducerId => v >= 2,
        other => return Err(PreflightError::UnknownApi(other as i16)),
    };
    let mut w = Walker { buf: body, flexible };
    match api_key {
        ApiKey::Produce => produce(&mut w, v),
        ApiKey::Fetch => fetch(&mut w, v),
        ApiKey::ListOffsets => list_offsets(&mut w, v),
        ApiKey::Metadata => metadata(&mut w, v),
        ApiKey::ApiVersions => api_versions(&mut w, v),
        ApiKey::CreateTopics => create_topics(&mut w, v),
        ApiKey::DeleteTopics => delete_topics(&mut w, v),
        ApiKey::DescribeConfigs => describe_configs(&mut w, v),
        ApiKey::CreatePartitions => create_partitions(&mut w),
        ApiKey::IncrementalAlterConfigs => incremental_alter_configs(&mut w),
        ApiKey::DescribeCluster => describe_cluster(&mut w, v),
        ApiKey::FindCoordinator => find_coordinator(&mut w, v),
        ApiKey::JoinGroup => join_group(&mut w, v),
        ApiKey::SyncGroup => sync_group(&mut w, v),
        ApiKey::Heartbeat => heartbeat(&mut w, v),
        ApiKey::LeaveGroup => leave_group(&mut w, v),
        ApiKey::OffsetCommit => offset_commit(&mut w, v),
        ApiKey::OffsetFetch => offset_fetch(&mut w, v),
        ApiKey::ListGroups => list_groups(&mut w, v),
        ApiKey::DescribeGroups => describe_groups(&mut w, v),
        ApiKey::DeleteGroups => delete_groups(&mut w),
        ApiKey::InitProducerId => init_producer_id(&mut w, v),
        other => Err(PreflightError::UnknownApi(other as i16)),
    }
}

/// A cursor over a body that skips fields, in the encoding of one version (`flexible`:
/// compact strings, arrays and bytes, and tagged fields, KIP-482).
struct Walker<'a> {
    buf: &'a [u8],
    flexible: bool,
}

impl Walker<'_> {
    fn skip(&mut self, bytes: usize) -> Walk {
        self.buf = self.buf.get(bytes..).ok_or(PreflightError::Truncated)?;
        Ok(())
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], PreflightError> {
        let (head, rest) = self.buf.split_first_chunk::<N>().ok_or(PreflightError::Truncated)?;
        self.buf = rest;
        Ok(*head)
    }

    fn int8(&mut self) -> Walk {
        self.skip(1)
    }

    fn int16(&mut self) -> Walk {
        self.skip(2)
    }

    fn int32(&mut self) -> Walk {
        self.skip(4)
    }

    fn int64(&mut self) -> Walk {
        self.skip(8)
    }

    fn uuid(&mut self) -> Walk {
        self.skip(16)
    }

    fn uvarint(&mut self) -> Result<u64, PreflightError> {
        let mut value = 0u64;
        for shift in (0..35).step_by(7) {
            let [byte] = self.fixed::<1>()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(PreflightError::BadVarint)
    }

    /// A length: compact (unsigned varint, length + 1, 0 for null) when flexible, else a
    /// big-endian i16 or i32 (-1 for null). `None` is null.
    fn length(&mut self, wide: bool) -> Result<Option<u64>, PreflightError> {
        if self.flexible {
            return Ok(self.uvarint()?.checked_sub(1));
        }
        let length = if wide {
            i64::from(i32::from_be_bytes(self.fixed::<4>()?))
        } else {
            i64::from(i16::from_be_bytes(self.fixed::<2>()?))
        };
        Ok(u64::try_from(length).ok())
    }

    fn skip_length(&mut self, length: Option<u64>) -> Walk {
        let bytes = usize::try_from(length.unwrap_or(0)).map_err(|_| PreflightError::Truncated)?;
        self.skip(bytes)
    }

    /// A string, nullable or not (the decoder judges a null where none is allowed).
    fn string(&mut self) -> Walk {
        let length = self.length(false)?;
        self.skip_length(length)
    }

    /// Bytes or records.
    fn bytes(&mut self) -> Walk {
        let length = self.length(true)?;
        self.skip_length(length)
    }

    /// An array (or null) whose elements `element` walks.
    fn array(&mut self, mut element: impl FnMut(&mut Self) -> Walk) -> Walk {
        let Some(count) = self.length(true)? else {
            return Ok(());
        };
        let bytes_left = self.buf.len();
        if count > bytes_left as u64 {
            return Err(PreflightError::ArrayTooLong { count, bytes_left });
        }
        for _ in 0..count {
            element(self)?;
        }
        Ok(())
    }

    /// The tagged fields that end every structure of a flexible version.
    fn tagged(&mut self) -> Walk {
        if !self.flexible {
            return Ok(());
        }
        let count = self.uvarint()?;
        let bytes_left = self.buf.len();
        if count > bytes_left as u64 {
            return Err(PreflightError::ArrayTooLong { count, bytes_left });
        }
        for _ in 0..count {
            self.uvarint()?;
            let size = self.uvarint()?;
            self.skip_length(Some(size))?;
        }
        Ok(())
    }
}

fn produce(w: &mut Walker<'_>, v: i16) -> Walk {
    w.string()?; // transactional_id
    w.int16()?; // acks
    w.int32()?; // timeout_ms
    w.array(|w| {
        if v <= 12 {
            w.string()?
        } else {
            w.uuid()?
        }
        w.array(|w| {
            w.int32()?; // index
            w.bytes()?; // records
            w.tagged()
        })?;
        w.tagged()
    })?;
    w.tagged()
}

fn fetch(w: &mut Walker<'_>, v: i16) -> Walk {
    if v <= 14 {
        w.int32()?; // replica_id
    }
    w.int32()?; // max_wait_ms
    w.int32()?; // min_bytes
    w.int32()?; // max_bytes
    w.int8()?; // isolation_level
    if v >= 7 {
        w.int32()?; // session_id
        w.int32()?; // session_epoch
    }
    w.array(|w| {
        if v <= 12 {
            w.string()?
        } else {
            w.uuid()?
        }
        w.array(|w| {
            w.int32()?; // partition
            if v >= 9 {
                w.int32()?; // current_leader_epoch
            }
            w.int64()?; // fetch_offset
            if v >= 12 {
                w.int32()?; // last_fetched_epoch
            }
            if v >= 5 {
                w.int64()?; // log_start_offset
            }
            w.int32()?; // partition_max_bytes
            w.tagged()
        })?;
        w.tagged()
    })?;
    if v >= 7 {
        w.array(|w| {
            if v <= 12 {
                w.string()?
            } else {
                w.uuid()?
            }
            w.array(Walker::int32)?;
            w.tagged()
        })?;
    }
    if v >= 11 {
        w.string()?; // rack_id
    }
    w.tagged()
}

fn list_offsets(w: &mut Walker<'_>, v: i16) -> Walk {
    w.int32()?; // replica_id
    if v >= 2 {
        w.int8()?; // isolation_level
    }
    w.array(|w| {
        w.string()?;
        w.array(|w| {
            w.int32()?; // partition_index
            if v >= 4 {
                w.int32()?; // current_leader_epoch
            }
            w.int64()?; // timestamp
            w.tagged()
        })?;
        w.tagged()
    })?;
    if v >= 10 {
        w.int32()?; // timeout_ms
    }
    w.tagged()
}

fn metadata(w: &mut Walker<'_>, v: i16) -> Walk {
    w.array(|w| {
        if v >= 10 {
            w.uuid()?;
        }
        w.string()?;
        w.tagged()
    })?;
    if v >= 4 {
        w.int8()?; // allow_auto_topic_creation
    }
    if (8..=10).contains(&v) {
        w.int8()?; // include_cluster_authorized_operations
    }
    if v >= 8 {
        w.int8()?; // include_topic_authorized_operations
    }
    w.tagged()
}

fn api_versions(w: &mut Walker<'_>, v: i16) -> Walk {
    if v >= 3 {
        w.string()?; // client_software_name
        w.string()?; // client_software_version
    }
    w.tagged()
}

fn create_topics(w: &mut Walker<'_>, _v: i16) -> Walk {
    w.array(|w| {
        w.string()?; // name
        w.int32()?; // num_partitions
        w.int16()?; // replication_factor
        w.array(|w| {
            w.int32()?; // partition_index
            w.array(Walker::int32)?; // broker_ids
            w.tagged()
        })?;
        w.array(|w| {
            w.string()?; // name
            w.string()?; // value
            w.tagged()
        })?;
        w.tagged()
    })?;
    w.int32()?; // timeout_ms
    w.int8()?; // validate_only
    w.tagged()
}

fn delete_topics(w: &mut Walker<'_>, v: i16) -> Walk {
    if v >= 6 {
        w.array(|w| {
            w.string()?;
            w.uuid()?;
            w.tagged()
        })?;
    } else {
        w.array(Walker::string)?;
    }
    w.int32()?; // timeout_ms
    w.tagged()
}

fn describe_configs(w: &mut Walker<'_>, v: i16) -> Walk {
    w.array(|w| {
        w.int8()?; // resource_type
        w.string()?; // resource_name
        w.array(Walker::string)?; // configuration_keys
        w.tagged()
    })?;
    w.int8()?; // include_synonyms
    if v >= 3 {
        w.int8()?; // include_documentation
    }
    w.tagged()
}

fn create_partitions(w: &mut Walker<'_>) -> Walk {
    w.array(|w| {
        w.string()?; // name
        w.int32()?; // count
        w.array(|w| {
            w.array(Walker::int32)?; // broker_ids
            w.tagged()
        })?;
        w.tagged()
    })?;
    w.int32()?; // timeout_ms
    w.int8()?; // validate_only
    w.tagged()
}

fn incremental_alter_configs(w: &mut Walker<'_>) -> Walk {
    w.array(|w| {
        w.int8()?; // resource_type
        w.string()?; // resource_name
        w.array(|w| {
            w.string()?; // name
            w.int8()?; // config_operation
            w.string()?; // value
            w.tagged()
        })?;
        w.tagged()
    })?;
    w.int8()?; // validate_only
    w.tagged()
}

fn describe_cluster(w: &mut Walker<'_>, v: i16) -> Walk {
    w.int8()?; // include_cluster_authorized_operations
    if v >= 1 {
        w.int8()?; // endpoint_type
    }
    if v >= 2 {
        w.int8()?; // include_fenced_brokers
    }
    w.tagged()
}

fn find_coordinator(w: &mut Walker<'_>, v: i16) -> Walk {
    if v <= 3 {
        w.string()?; // key
    }
    if v >= 1 {
        w.int8()?; // key_type
    }
    if v >= 4 {
        w.array(Walker::string)?; // coordinator_keys
    }
    w.tagged()
}

fn join_group(w: &mut Walker<'_>, v: i16) -> Walk {
    w.string()?; // group_id
    w.int32()?; // session_timeout_ms
    if v >= 1 {
        w.int32()?; // rebalance_timeout_ms
    }
    w.string()?; // member_id
    if v >= 5 {
        w.string()?; // group_instance_id
    }
    w.string()?; // protocol_type
    w.array(|w| {
        w.string()?; // name
        w.bytes()?; // metadata
        w.tagged()
    })?;
    if v >= 8 {
        w.string()?; // reason
    }
    w.tagged()
}

fn sync_group(w: &mut Walker<'_>, v: i16) -> Walk {
    w.string()?; // group_id
    w.int32()?; // generation_id
    w.string()?; // member_id
    if v >= 3 {
        w.string()?; // group_instance_id
    }
    if v >= 5 {
        w.string()?; // protocol_type
        w.string()?; // protocol_name
    }
    w.array(|w| {
        w.string()?; // member_id
        w.bytes()?; // assignment
        w.tagged()
    })?;
    w.tagged()
}

fn heartbeat(w: &mut Walker<'_>, v: i16) -> Walk {
    w.string()?; // group_id
    w.int32()?; // generation_id
    w.string()?; // member_id
    if v >= 3 {
        w.string()?; // group_instance_id
    }
    w.tagged()
}

fn init_producer_id(w: &mut Walker<'_>, v: i16) -> Walk {
    w.string()?; // transactional_id
    w.int32()?; // transaction_timeout_ms
    if v >= 3 {
        w.int64()?; // producer_id
        w.int16()?; // producer_epoch
    }
    w.tagged()
}

fn leave_group(w: &mut Walker<'_>, v: i16) -> Walk {
    w.string()?; // group_id
    if v <= 2 {
        w.string()?; // member_id
    } else {
        w.array(|w| {
            w.string()?; // member_id
            w.string()?; // group_instance_id
            if v >= 5 {
                w.string()?; // reason
            }
            w.tagged()
        })?;
    }
    w.tagged()
}

fn offset_commit(w: &mut Walker<'_>, v: i16) -> Walk {
    w.string()?; // group_id
    w.int32()?; // generation_id_or_member_epoch
    w.string()?; // member_id
    if v >= 7 {
        w.string()?; // group_instance_id
    }
    if v <= 4 {
        w.int64()?; // retention_time_ms
    }
    w.array(|w| {
        w.string()?; // name
        w.array(|w| {
            w.int32()?; // partition_index
            w.int64()?; // committed_offset
            if v >= 6 {
                w.int32()?; // committed_leader_epoch
            }
            w.string()?; // committed_metadata
            w.tagged()
        })?;
        w.tagged()
    })?;
    w.tagged()
}

fn offset_fetch(w: &mut Walker<'_>, v: i16) -> Walk {
    let topics = |w: &mut Walker<'_>| {
        w.array(|w| {
            w.string()?; // name
            w.array(Walker::int32)?; // partition_indexes
            w.tagged()
        })
    };
    if v <= 7 {
        w.string()?; // group_id
        topics(w)?;
    } else {
        w.array(|w| {
            w.string()?; // group_id
            if v >= 9 {
                w.string()?; // member_id
                w.int32()?; // member_epoch
            }
            topics(w)?;
            w.tagged()
        })?;
    }
    if v >= 7 {
        w.int8()?; // require_stable
    }
    w.tagged()
}

fn list_groups(w: &mut Walker<'_>, v: i16) -> Walk {
    if v >= 4 {
        w.array(Walker::string)?; // states_filter
    }
    if v >= 5 {
        w.array(Walker::string)?; // types_filter
    }
    w.tagged()
}

fn describe_groups(w: &mut Walker<'_>, v: i16) -> Walk {
    w.array(Walker::string)?; // groups
    if v >= 3 {
        w.int8()?; // include_authorized_operations
    }
    w.tagged()
}

fn delete_groups(w: &mut Walker<'_>) -> Walk {
    w.array(Walker::string)?; // groups_names
    w.tagged()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metadata_request_declaring_2_pow_31_topics_is_refused() {
        // Metadata v0, topics count 0x7fffffff, then nothing: the crate alone would reserve
        // ~150 GiB and abort the process.
        let body = i32::MAX.to_be_bytes();
        let refused = check_body(ApiKey::Metadata, 0, &body);
        assert_eq!(
            refused,
            Err(PreflightError::ArrayTooLong { count: i32::MAX as u64, bytes_left: 0 })
        );
    }

    #[test]
    fn a_compact_array_count_past_the_body_is_refused() {
        // Metadata v9: compact array with count 2^28 - 1 (varint ff ff ff 7f).
        let body = [0xff, 0xff, 0xff, 0x7f, 0, 0];
        let refused = check_body(ApiKey::Metadata, 9, &body);
        assert!(matches!(refused, Err(PreflightError::ArrayTooLong { .. })), "{refused:?}");
    }

    #[test]
    fn an_endless_varint_is_refused() {
        let refused = check_body(ApiKey::DescribeCluster, 0, &[0, 0xff, 0xff, 0xff, 0xff, 0xff, 1]);
        assert_eq!(refused, Err(PreflightError::BadVarint));
    }

    #[test]
    fn a_cut_body_is_refused() {
        assert_eq!(
            check_body(ApiKey::Produce, 3, &[0xff, 0xff, 0, 1]),
            Err(PreflightError::Truncated)
        );
    }
}
