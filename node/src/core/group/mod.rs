//! One consumer group under Kafka's classic group protocol: JoinGroup, SyncGroup, Heartbeat
//! and LeaveGroup, with generations, session and rebalance timeouts, member ids handed out by
//! the coordinator (KIP-394) and static members (KIP-345).
//!
//! [`Group`] owns the membership of one group and nothing else: no offsets (a later task
//! stores them), no IO. Time comes in as `now`; member ids come from a generator seeded in
//! [`GroupConfig`], so a simulator run replays exactly.
//!
//! Its methods, in the order a driver uses them:
//!
//! - getters: [`Group::state`], [`Group::generation`], [`Group::leader`],
//!   [`Group::describe`];
//! - inputs: [`Group::join`], [`Group::sync`], [`Group::heartbeat`], [`Group::leave`] (each
//!   with the [`RequestToken`] of the request), [`Group::handle_timeout`] once the deadline
//!   of [`Group::poll_timeout`] passed, and [`Group::shutdown`] when the group is deleted or
//!   its coordinator moves;
//! - outputs: [`Group::poll_event`] until `None` after every input, then
//!   [`Group::poll_timeout`].
//!
//! Contract: every token handed in is answered by exactly one [`GroupEvent`], either at once
//! or later (a parked JoinGroup when the rebalance completes, a parked SyncGroup when the
//! leader sends the assignment); [`Group::shutdown`] answers every parked request.
//!
//! The lifecycle (Kafka's `GroupState`):
//!
//! ```text
//!  Empty --join--> PreparingRebalance --all joined | rebalance timeout--> CompletingRebalance
//!    ^                 ^    ^                                                   |
//!    |                 |    +------ join (changed) | leave | session expiry -----+ leader's
//!    +-- no member ----+    +------ join (leader, changed) | leave | expiry --- Stable <-- sync
//!  any --shutdown--> Dead
//! ```

mod join;
mod member;
#[cfg(test)]
mod random_tests;
mod restore;
#[cfg(test)]
mod tests;
mod types;

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use self::member::Member;
pub use self::restore::{GroupSnapshot, MemberSnapshot};
pub use self::types::{
    Generation, GroupConfig, GroupDescription, GroupError, GroupEvent, GroupState, JoinRequest,
    JoinResponse, JoinedMember, LeaveMember, LeaveResult, MemberDescription, RequestToken,
    SyncResponse,
};
use super::limits::{GROUP_EVENTS_MAX, GROUP_MEMBERS_MAX};
use super::rng::{self, CoreRng};
use super::time::Instant;
use super::timer::TimerTable;

/// A SyncGroup request, as the node decoded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    /// The member's id.
    pub member_id: String,
    /// Its `group.instance.id`, for static members.
    pub group_instance_id: Option<String>,
    /// The generation the member joined.
    pub generation: Generation,
    /// From the leader: the assignment of each member; empty from the others.
    pub assignments: Vec<(String, Bytes)>,
}

/// The group's timers. Members are named by their serial because timer keys are `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum GroupTimer {
    /// The end of the rebalance: members that have not rejoined by then are dropped.
    Rebalance,
    /// The session of the member with this serial.
    Session(u64),
    /// A member given an id that has not joined with it yet (KIP-394).
    Pending(u64),
}

/// The membership state machine of one consumer group.
#[derive(Debug, Clone)]
pub struct Group {
    config: GroupConfig,
    rng: CoreRng,
    state: GroupState,
    generation: Generation,
    /// The assignor of the current generation; `None` while the group is Empty or Dead.
    protocol_name: Option<String>,
    /// The protocol type its members share (a joiner with another is refused), or the one of
    /// the members it had last (empty if it never had any). Kept once they are gone, as Kafka
    /// keeps it: a consumer group whose members left is still a
    /// consumer group to ListGroups and DescribeGroups (librdkafka tells a "simple" group,
    /// one that only ever had offsets committed, by an empty protocol type).
    protocol_type: String,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// `group.instance.id` to the member id that holds it (KIP-345).
    static_members: BTreeMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not yet joined, to their serials.
    pending: BTreeMap<String, u64>,
    next_serial: u64,
    timers: TimerTable<GroupTimer>,
    events: VecDeque<GroupEvent>,
    /// What every request gets once the group is Dead.
    dead_error: GroupError,
}

impl Group {
    /// An Empty group at generation 0.
    ///
    /// # Panics
    ///
    /// If the config's bounds are inconsistent (a zero minimum session timeout, a minimum
    /// above the maximum, or a size of zero or above [`GROUP_MEMBERS_MAX`]).
    pub fn new(config: GroupConfig) -> Group {
        assert!(!config.session_timeout_min.is_zero(), "session timeout minimum is zero");
        assert!(config.session_timeout_min <= config.session_timeout_max);
        assert!(config.group_size_max > 0, "a group must admit a member");
        assert!(config.group_size_max <= GROUP_MEMBERS_MAX);
        let group = Group {
            rng: rng::seeded(config.seed),
            config,
            state: GroupState::Empty,
            generation: 0,
            protocol_name: None,
            protocol_type: String::new(),
            leader: None,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            pending: BTreeMap::new(),
            next_serial: 0,
            timers: TimerTable::default(),
            events: VecDeque::new(),
            dead_error: GroupError::CoordinatorNotAvailable,
        };
        group.invariants();
        group
    }

    // ----- getters -----

    /// The group's state.
    pub fn state(&self) -> GroupState {
        self.state
    }

    /// The current generation.
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// The leader of the current generation, if any.
    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    /// The assignor of the current generation, if one is chosen.
    pub fn protocol_name(&self) -> Option<&str> {
        self.protocol_name.as_deref()
    }

    /// The ids of the members, sorted.
    pub fn member_ids(&self) -> impl Iterator<Item = &str> {
        self.members.keys().map(String::as_str)
    }

    /// The group's protocol type: the one its members share, or, without members, the one
    /// its last members had (empty if it never had any).
    pub fn protocol_type(&self) -> &str {
        &self.protocol_type
    }

    /// The group as DescribeGroups reports it.
    pub fn describe(&self) -> GroupDescription {
        let protocol_name = self.protocol_name.clone().unwrap_or_default();
        let members = self
            .members
            .values()
            .map(|member| MemberDescription {
                member_id: member.member_id.clone(),
                group_instance_id: member.group_instance_id.clone(),
                client_id: member.client_id.clone(),
                metadata: member.metadata(&protocol_name),
                assignment: member.assignment.clone(),
            })
            .collect();
        GroupDescription {
            state: self.state,
            protocol_type: self.protocol_type().to_owned(),
            protocol_name,
            members,
        }
    }

    // ----- inputs -----

    /// A SyncGroup. The leader's assignments complete the rebalance: the group turns Stable
    /// and every parked SyncGroup is answered with its member's assignment. Other members'
    /// SyncGroups are parked until then.
    pub fn sync(&mut self, now: Instant, token: RequestToken, request: SyncRequest) {
        let checked = self.check_member(
            &request.member_id,
            request.group_instance_id.as_deref(),
            request.generation,
        );
        if let Err(error) = checked {
            self.answer(GroupEvent::Sync { token, result: Err(error) });
            self.invariants();
            return;
        }
        self.refresh_session(now, &request.member_id);
        match self.state {
            GroupState::PreparingRebalance => {
                let result = Err(GroupError::RebalanceInProgress);
                self.answer(GroupEvent::Sync { token, result });
            }
            GroupState::Stable => {
                let result = Ok(self.sync_response(&request.member_id));
                self.answer(GroupEvent::Sync { token, result });
            }
            GroupState::CompletingRebalance => self.park_sync(token, request),
            GroupState::Empty | GroupState::Dead => unreachable!("checked: a known member"),
        }
        self.invariants();
    }

    fn park_sync(&mut self, token: RequestToken, request: SyncRequest) {
        assert_eq!(self.state, GroupState::CompletingRebalance);
        let member = self.members.get_mut(&request.member_id).expect("checked: a member");
        // A client sends one SyncGroup at a time; a second one replaces the first, which is
        // still answered so that no request waits forever.
        if let Some(old) = member.awaiting_sync.replace(token) {
            self.answer(GroupEvent::Sync {
                token: old,
                result: Err(GroupError::RebalanceInProgress),
            });
        }
        if self.leader.as_deref() != Some(request.member_id.as_str()) {
            return;
        }
        // Kafka ignores assignments for ids that are not members; members without one get an
        // empty assignment.
        for member in self.members.values_mut() {
            member.assignment = Bytes::new();
        }
        for (member_id, assignment) in request.assignments {
            if let Some(member) = self.members.get_mut(&member_id) {
                member.assignment = assignment;
            }
        }
        self.state = GroupState::Stable;
        for (member_id, token) in self.take_parked(|member| &mut member.awaiting_sync) {
            let result = Ok(self.sync_response(&member_id));
            self.answer(GroupEvent::Sync { token, result });
        }
    }

    /// A Heartbeat: keeps the member's session alive. `RebalanceInProgress` tells the
    /// member to rejoin.
    pub fn heartbeat(
        &mut self,
        now: Instant,
        token: RequestToken,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation: Generation,
    ) {
        let result = self.check_member(member_id, group_instance_id, generation).and_then(|()| {
            self.refresh_session(now, member_id);
            match self.state {
                GroupState::PreparingRebalance => Err(GroupError::RebalanceInProgress),
                // A member may heartbeat between its JoinGroup answer and its SyncGroup.
                GroupState::CompletingRebalance | GroupState::Stable => Ok(()),
                GroupState::Empty | GroupState::Dead => unreachable!("checked: a known member"),
            }
        });
        self.answer(GroupEvent::Heartbeat { token, result });
        self.invariants();
    }

    /// A LeaveGroup naming one or more members (by member id, or by instance id for static
    /// members). Their departure starts a rebalance.
    pub fn leave(&mut self, now: Instant, token: RequestToken, members: Vec<LeaveMember>) {
        if self.state == GroupState::Dead {
            let result = Err(self.dead_error.clone());
            self.answer(GroupEvent::Leave { token, result });
            self.invariants();
            return;
        }
        let mut removed = false;
        let mut results = Vec::with_capacity(members.len());
        for leaving in members {
            let result = self.leave_one(&leaving);
            removed |= result.is_ok();
            results.push(LeaveResult {
                member_id: leaving.member_id,
                group_instance_id: leaving.group_instance_id,
                result,
            });
        }
        if removed {
            self.after_removal(now);
        }
        self.answer(GroupEvent::Leave { token, result: Ok(results) });
        self.invariants();
    }

    fn leave_one(&mut self, leaving: &LeaveMember) -> Result<(), GroupError> {
        if let Some(instance) = &leaving.group_instance_id {
            let holder = self.static_members.get(instance).ok_or(GroupError::UnknownMemberId)?;
            if !leaving.member_id.is_empty() && *holder != leaving.member_id {
                return Err(GroupError::FencedInstanceId);
            }
            let holder = holder.clone();
            self.remove_member(&holder, GroupError::UnknownMemberId);
            return Ok(());
        }
        if self.members.contains_key(&leaving.member_id) {
            self.remove_member(&leaving.member_id, GroupError::UnknownMemberId);
            return Ok(());
        }
        if let Some(serial) = self.pending.remove(&leaving.member_id) {
            self.timers.stop(GroupTimer::Pending(serial));
            return Ok(());
        }
        Err(GroupError::UnknownMemberId)
    }

    /// Fires the timers due at `now`: the end of a rebalance, expired sessions, and member
    /// ids handed out that were never used.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Bounded: each pop disarms a timer, and a re-armed session is due strictly later
        // (session timeouts are never zero).
        while let Some(timer) = self.timers.pop_expired(now) {
            match timer {
                GroupTimer::Rebalance => {
                    assert_eq!(self.state, GroupState::PreparingRebalance);
                    self.complete_join(now);
                }
                GroupTimer::Session(serial) => self.expire_session(now, serial),
                GroupTimer::Pending(serial) => {
                    self.pending.retain(|_, pending| *pending != serial);
                    self.try_complete_join(now);
                }
            }
        }
        self.invariants();
    }

    fn expire_session(&mut self, now: Instant, serial: u64) {
        let member = self.members.values().find(|member| member.serial == serial);
        let member = member.expect("a session timer belongs to a member");
        // A member whose JoinGroup or SyncGroup is parked is waiting on the coordinator, not
        // silent: Kafka counts a parked request as a heartbeat.
        if member.awaiting_join.is_some() || member.awaiting_sync.is_some() {
            let deadline = now + member.session_timeout;
            self.timers.set(GroupTimer::Session(serial), deadline);
            return;
        }
        let member_id = member.member_id.clone();
        self.remove_member(&member_id, GroupError::UnknownMemberId);
        self.after_removal(now);
    }

    /// The group is deleted here or its coordinator moved: every parked request is answered
    /// with `error`, the group turns Dead, and every later request gets `error` too.
    pub fn shutdown(&mut self, error: GroupError) {
        let members = std::mem::take(&mut self.members);
        for member in members.into_values() {
            if let Some(token) = member.awaiting_join {
                self.answer(GroupEvent::Join { token, result: Err(error.clone()) });
            }
            if let Some(token) = member.awaiting_sync {
                self.answer(GroupEvent::Sync { token, result: Err(error.clone()) });
            }
        }
        self.static_members.clear();
        self.pending.clear();
        self.timers = TimerTable::default();
        self.leader = None;
        self.protocol_name = None;
        self.state = GroupState::Dead;
        self.dead_error = error;
        self.invariants();
    }

    // ----- outputs -----

    /// Takes the next answer.
    pub fn poll_event(&mut self) -> Option<GroupEvent> {
        self.events.pop_front()
    }

    /// When [`Group::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    // ----- helpers -----

    /// Takes every member's request parked in `slot` (a join or a sync), with its member id.
    fn take_parked(
        &mut self,
        slot: fn(&mut Member) -> &mut Option<RequestToken>,
    ) -> Vec<(String, RequestToken)> {
        let members = self.members.iter_mut();
        members.filter_map(|(id, member)| Some((id.clone(), slot(member).take()?))).collect()
    }

    fn answer(&mut self, event: GroupEvent) {
        assert!(self.events.len() < GROUP_EVENTS_MAX, "the driver does not drain answers");
        self.events.push_back(event);
    }

    /// Whether `member_id` (with its `group.instance.id`) is a member of `generation`, in
    /// Kafka's order: a static instance held by another member id is fenced, then an unknown
    /// member, then another generation. SyncGroup, Heartbeat and OffsetCommit ask it.
    pub(crate) fn check_member(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation: Generation,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(self.dead_error.clone());
        }
        if let Some(instance) = group_instance_id {
            match self.static_members.get(instance) {
                Some(holder) if holder != member_id => return Err(GroupError::FencedInstanceId),
                _ => {}
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        Ok(())
    }

    fn sync_response(&self, member_id: &str) -> SyncResponse {
        let member = &self.members[member_id];
        SyncResponse {
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone().expect("a generation has a protocol"),
            assignment: member.assignment.clone(),
        }
    }

    /// A member's accepted OffsetCommit counts as a heartbeat, as Kafka's does: its session
    /// starts again. Nothing for a committer that is not a member (a simple consumer).
    pub fn commit_heard(&mut self, now: Instant, member_id: &str) {
        if self.members.contains_key(member_id) {
            self.refresh_session(now, member_id);
        }
        self.invariants();
    }

    fn refresh_session(&mut self, now: Instant, member_id: &str) {
        let member = &self.members[member_id];
        self.timers.set(GroupTimer::Session(member.serial), now + member.session_timeout);
    }

    /// Removes a member, answering its parked requests with `error`. The caller then calls
    /// [`Group::after_removal`].
    fn remove_member(&mut self, member_id: &str, error: GroupError) {
        let member = self.members.remove(member_id).expect("removing a member");
        self.timers.stop(GroupTimer::Session(member.serial));
        if let Some(instance) = &member.group_instance_id
            && self.static_members.get(instance).map(String::as_str) == Some(member_id)
        {
            self.static_members.remove(instance);
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = None;
        }
        if let Some(token) = member.awaiting_join {
            self.answer(GroupEvent::Join { token, result: Err(error.clone()) });
        }
        if let Some(token) = member.awaiting_sync {
            self.answer(GroupEvent::Sync { token, result: Err(error) });
        }
    }

    /// A member left or expired: the rest must rebalance.
    fn after_removal(&mut self, now: Instant) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now);
                self.try_complete_join(now);
            }
            GroupState::PreparingRebalance => self.try_complete_join(now),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Checks the group's invariants; a failure is a bug.
    pub fn invariants(&self) {
        assert!(self.generation >= 0, "generations never go below zero");
        assert!(self.events.len() <= GROUP_EVENTS_MAX);
        assert!(self.members.len() + self.pending.len() <= self.config.group_size_max);
        let rebalancing = self.timers.get(GroupTimer::Rebalance).is_some();
        assert_eq!(rebalancing, self.state == GroupState::PreparingRebalance);
        match self.state {
            GroupState::Dead => {
                assert!(self.members.is_empty(), "a dead group has no members");
                assert!(self.pending.is_empty(), "a dead group hands out no ids");
                assert_eq!(self.timers.next_deadline(), None, "a dead group has no timers");
            }
            GroupState::Empty => {
                assert!(self.members.is_empty(), "an empty group has no members");
                assert!(self.leader.is_none(), "an empty group has no leader");
                assert!(self.protocol_name.is_none(), "an empty group has no protocol");
            }
            GroupState::PreparingRebalance => {}
            GroupState::CompletingRebalance | GroupState::Stable => {
                let leader = self.leader.as_ref().expect("a generation has a leader");
                assert!(self.members.contains_key(leader), "the leader is a member");
                let protocol = self.protocol_name.as_ref().expect("a generation has a protocol");
                assert!(self.members.values().all(|member| member.supports(protocol)));
            }
        }
        if let Some(leader) = &self.leader {
            assert!(self.members.contains_key(leader), "the leader is a member");
        }
        self.member_invariants();
    }

    fn member_invariants(&self) {
        for (id, member) in &self.members {
            assert_eq!(*id, member.member_id);
            assert!(!member.protocols.is_empty(), "a member lists an assignor");
            assert!(self.timers.get(GroupTimer::Session(member.serial)).is_some());
            assert!(!self.pending.contains_key(id), "a pending id is not a member yet");
            let parked_join = member.awaiting_join.is_some();
            let parked_sync = member.awaiting_sync.is_some();
            assert!(!parked_join || self.state == GroupState::PreparingRebalance);
            assert!(!parked_sync || self.state == GroupState::CompletingRebalance);
            if let Some(instance) = &member.group_instance_id {
                assert_eq!(self.static_members.get(instance), Some(id), "one holder per id");
            }
        }
        for (instance, holder) in &self.static_members {
            let member = self.members.get(holder).expect("a static id is held by a member");
            assert_eq!(member.group_instance_id.as_ref(), Some(instance));
        }
        for serial in self.pending.values() {
            assert!(self.timers.get(GroupTimer::Pending(*serial)).is_some());
        }
    }
}
