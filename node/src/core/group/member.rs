//! One member of a group: what it joined with, its assignment and the requests of it the
//! coordinator holds parked.

use std::time::Duration;

use bytes::Bytes;

use super::types::RequestToken;

/// A member of the group.
#[derive(Debug, Clone)]
pub(super) struct Member {
    /// A number unique within the group, naming the member's session timer (timer keys must
    /// be `Copy`; member ids are strings).
    pub serial: u64,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    /// The assignors in the member's order of preference, with their metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// The assignment from the last completed SyncGroup.
    pub assignment: Bytes,
    /// A JoinGroup parked until the rebalance completes.
    pub awaiting_join: Option<RequestToken>,
    /// A SyncGroup parked until the leader sends the assignment.
    pub awaiting_sync: Option<RequestToken>,
}

impl Member {
    /// Whether the member lists the assignor `name`.
    pub fn supports(&self, name: &str) -> bool {
        self.protocols.iter().any(|(protocol, _)| protocol == name)
    }

    /// The member's metadata for the assignor `name` (empty if it does not list it).
    pub fn metadata(&self, name: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(protocol, _)| protocol == name)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    /// Whether a join with `protocols` asks for exactly the assignors the member already
    /// has (same order, same metadata): Kafka's `MemberMetadata.matches`, whose protocol
    /// type half is the group's ([`super::Group::protocol_type`]).
    pub fn matches(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }
}
