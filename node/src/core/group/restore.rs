//! A group's completed generation as the coordinator persists it, and a group rebuilt from
//! one: what lets a new coordinator carry on a generation after the old one moved
//! (decision 0015).
//!
//! Only a completed generation is persisted (Stable, or Empty with its generation number).
//! A restored group is Stable with the persisted members, each with a full session from the
//! moment of the restore (Kafka restarts session timers at load too); its parked requests
//! died with the old coordinator, whose clients find the new one and ask again.

use std::time::Duration;

use bytes::Bytes;

use super::member::Member;
use super::{Generation, Group, GroupConfig, GroupState, GroupTimer};
use crate::core::time::Instant;

/// One member of a persisted generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSnapshot {
    /// Its id.
    pub member_id: String,
    /// Its `group.instance.id`, for static members.
    pub group_instance_id: Option<String>,
    /// Its `client.id`.
    pub client_id: String,
    /// Its session timeout.
    pub session_timeout: Duration,
    /// Its rebalance timeout.
    pub rebalance_timeout: Duration,
    /// The assignors it listed, in its order, with their metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// Its assignment.
    pub assignment: Bytes,
}

/// A group's completed generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSnapshot {
    /// The generation.
    pub generation: Generation,
    /// The protocol type: the members', or, without members, the one the last members had
    /// (empty if the group never had any).
    pub protocol_type: String,
    /// The assignor chosen, empty without members.
    pub protocol_name: String,
    /// The leader, empty without members.
    pub leader: String,
    /// The members, by member id.
    pub members: Vec<MemberSnapshot>,
}

impl Group {
    /// Whether `member_id` is a member of the current generation.
    pub fn has_member(&self, member_id: &str) -> bool {
        self.members.contains_key(member_id)
    }

    /// The group's generation as persisted: its members only while it is Stable (a group
    /// in any other state is persisted as its generation number alone).
    pub fn snapshot(&self) -> GroupSnapshot {
        if self.state != GroupState::Stable {
            return GroupSnapshot {
                generation: self.generation,
                protocol_type: self.protocol_type().to_owned(),
                protocol_name: String::new(),
                leader: String::new(),
                members: Vec::new(),
            };
        }
        let members = (self.members.values())
            .map(|member| MemberSnapshot {
                member_id: member.member_id.clone(),
                group_instance_id: member.group_instance_id.clone(),
                client_id: member.client_id.clone(),
                session_timeout: member.session_timeout,
                rebalance_timeout: member.rebalance_timeout,
                protocols: member.protocols.clone(),
                assignment: member.assignment.clone(),
            })
            .collect();
        GroupSnapshot {
            generation: self.generation,
            protocol_type: self.protocol_type().to_owned(),
            protocol_name: self.protocol_name.clone().unwrap_or_default(),
            leader: self.leader.clone().unwrap_or_default(),
            members,
        }
    }

    /// A group restored from `snapshot` at `now`: Stable with its members (sessions start
    /// now), or Empty at its generation when it has none. A snapshot that does not hold
    /// together (read from a log a foreign writer touched: a leader that is not a member, a
    /// member without the protocol, a duplicate id) restores as Empty at its generation.
    pub fn restore(config: GroupConfig, now: Instant, snapshot: GroupSnapshot) -> Group {
        let mut group = Group::new(config);
        group.generation = snapshot.generation.max(0);
        group.protocol_type.clone_from(&snapshot.protocol_type);
        if !snapshot_holds(&snapshot, group.config.group_size_max) {
            group.invariants();
            return group;
        }
        for restored in snapshot.members {
            let serial = group.next_serial;
            group.next_serial += 1;
            if let Some(instance) = &restored.group_instance_id {
                group.static_members.insert(instance.clone(), restored.member_id.clone());
            }
            let deadline = now + restored.session_timeout;
            group.timers.set(GroupTimer::Session(serial), deadline);
            let member = Member {
                serial,
                member_id: restored.member_id.clone(),
                group_instance_id: restored.group_instance_id,
                client_id: restored.client_id,
                session_timeout: restored.session_timeout,
                rebalance_timeout: restored.rebalance_timeout,
                protocols: restored.protocols,
                assignment: restored.assignment,
                awaiting_join: None,
                awaiting_sync: None,
            };
            group.members.insert(restored.member_id, member);
        }
        group.protocol_name = Some(snapshot.protocol_name);
        group.leader = Some(snapshot.leader);
        group.state = GroupState::Stable;
        group.invariants();
        group
    }
}

/// Whether a snapshot with members describes a generation [`Group::restore`] can resume.
fn snapshot_holds(snapshot: &GroupSnapshot, size_max: usize) -> bool {
    let members = &snapshot.members;
    if members.is_empty() || members.len() > size_max {
        return false;
    }
    let mut ids: Vec<&str> = members.iter().map(|m| m.member_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut instances: Vec<&str> =
        members.iter().filter_map(|m| m.group_instance_id.as_deref()).collect();
    let static_count = instances.len();
    instances.sort_unstable();
    instances.dedup();
    ids.len() == members.len()
        && instances.len() == static_count
        && ids.contains(&snapshot.leader.as_str())
        && members.iter().all(|member| {
            !member.session_timeout.is_zero()
                && member.protocols.iter().any(|(name, _)| *name == snapshot.protocol_name)
        })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::core::group::{GroupEvent, JoinRequest, SyncRequest};

    fn join(member_id: &str) -> JoinRequest {
        JoinRequest {
            member_id: member_id.into(),
            group_instance_id: None,
            client_id: "c".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(1),
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"sub"))],
        }
    }

    /// A Stable group of one member at `now` (its rebalance ended at `now` after a 1 s
    /// timeout); returns it and the member's id.
    fn stable_group(now: Instant) -> (Group, String) {
        let start = now - Duration::from_secs(2);
        let mut group = Group::new(GroupConfig::default());
        group.join(start, 1, join(""));
        let Some(GroupEvent::Join { result: Err(error), .. }) = group.poll_event() else {
            panic!("a member id first")
        };
        let crate::core::group::GroupError::MemberIdRequired { member_id } = error else {
            panic!("{error:?}")
        };
        group.join(start, 2, join(&member_id));
        group.handle_timeout(now);
        while group.poll_event().is_some() {}
        let sync = SyncRequest {
            member_id: member_id.clone(),
            group_instance_id: None,
            generation: group.generation(),
            assignments: vec![(member_id.clone(), Bytes::from_static(b"asg"))],
        };
        group.sync(now, 3, sync);
        while group.poll_event().is_some() {}
        assert_eq!(group.state(), GroupState::Stable);
        (group, member_id)
    }

    #[test]
    fn a_restored_stable_group_answers_its_members_heartbeats_in_the_same_generation() {
        let now = Instant::from_millis(1_000);
        let (group, member_id) = stable_group(now);
        let snapshot = group.snapshot();
        assert_eq!(snapshot.members.len(), 1);
        let later = now + Duration::from_secs(5);
        let mut restored = Group::restore(GroupConfig::default(), later, snapshot.clone());
        assert_eq!(restored.state(), GroupState::Stable);
        assert_eq!(restored.generation(), group.generation());
        assert_eq!(restored.snapshot(), snapshot);
        restored.heartbeat(later, 9, &member_id, None, group.generation());
        assert_eq!(restored.poll_event(), Some(GroupEvent::Heartbeat { token: 9, result: Ok(()) }));
        // The session restarted at the restore: it expires 10 s after it, not after the join.
        assert_eq!(restored.poll_timeout(), Some(later + Duration::from_secs(10)));
    }

    #[test]
    fn a_snapshot_whose_leader_is_not_a_member_restores_as_empty_at_its_generation() {
        let now = Instant::from_millis(1_000);
        let (group, _) = stable_group(now);
        let mut snapshot = group.snapshot();
        snapshot.leader = "someone-else".into();
        let restored = Group::restore(GroupConfig::default(), now, snapshot);
        assert_eq!(restored.state(), GroupState::Empty);
        assert_eq!(restored.generation(), group.generation());
    }

    #[test]
    fn a_group_whose_members_left_keeps_their_protocol_type_through_a_restore() {
        let now = Instant::from_millis(1_000);
        let (mut group, member_id) = stable_group(now);
        let leaving = crate::core::group::LeaveMember { member_id, group_instance_id: None };
        group.leave(now, 4, vec![leaving]);
        while group.poll_event().is_some() {}
        assert_eq!(group.state(), GroupState::Empty);
        assert_eq!(group.describe().protocol_type, "consumer");
        assert_eq!(group.describe().protocol_name, "");
        let snapshot = group.snapshot();
        assert!(snapshot.members.is_empty());
        assert_eq!(snapshot.protocol_type, "consumer");
        let restored = Group::restore(GroupConfig::default(), now, snapshot.clone());
        assert_eq!(restored.state(), GroupState::Empty);
        assert_eq!(restored.describe().protocol_type, "consumer");
        assert_eq!(restored.snapshot(), snapshot);
        // A group that never had members has none.
        assert_eq!(Group::new(GroupConfig::default()).describe().protocol_type, "");
    }
}
