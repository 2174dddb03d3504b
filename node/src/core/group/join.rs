//! JoinGroup and the rebalance it drives: member ids for new members (KIP-394), static
//! members taking over their instance id (KIP-345), parking joins until every member has
//! rejoined, and completing the generation.

use rand::Rng;

use super::member::Member;
use super::{
    Group, GroupError, GroupEvent, GroupState, GroupTimer, JoinRequest, JoinResponse, JoinedMember,
    RequestToken,
};
use crate::core::time::Instant;

impl Group {
    /// A JoinGroup. A new dynamic member is answered `MemberIdRequired` with its id (KIP-394);
    /// otherwise the join is answered at once when it changes nothing, or parked until the
    /// rebalance it starts (or joins) completes.
    pub fn join(&mut self, now: Instant, token: RequestToken, request: JoinRequest) {
        match self.check_join(&request) {
            Err(error) => self.answer(GroupEvent::Join { token, result: Err(error) }),
            Ok(()) if request.member_id.is_empty() => self.join_new(now, token, request),
            Ok(()) => self.join_known(now, token, request),
        }
        self.invariants();
    }

    /// Checks that hold for every join, whoever sends it.
    fn check_join(&self, request: &JoinRequest) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(self.dead_error.clone());
        }
        let timeout = request.session_timeout;
        if timeout < self.config.session_timeout_min || timeout > self.config.session_timeout_max {
            return Err(GroupError::InvalidSessionTimeout);
        }
        if request.protocol_type.is_empty() || request.protocols.is_empty() {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        // The joiner must share an assignor with every other member, so that a protocol all
        // members support always exists when the rebalance completes. The member itself (or
        // the static member it replaces) is left out: its old list is about to go.
        let others: Vec<&Member> = self
            .members
            .values()
            .filter(|member| member.member_id != request.member_id)
            .filter(|member| {
                request.group_instance_id.is_none()
                    || member.group_instance_id != request.group_instance_id
            })
            .collect();
        if others.is_empty() {
            return Ok(());
        }
        if self.protocol_type != request.protocol_type {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        let shared = request
            .protocols
            .iter()
            .any(|(name, _)| others.iter().all(|member| member.supports(name)));
        if !shared {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        Ok(())
    }

    fn is_full(&self) -> bool {
        self.members.len() + self.pending.len() >= self.config.group_size_max
    }

    /// Member ids are the client id and 128 random bits, as Kafka's are the client id and a
    /// UUID; they come from the seeded generator so a simulation replays.
    fn new_member_id(&mut self, client_id: &str) -> String {
        let high: u64 = self.rng.random();
        let low: u64 = self.rng.random();
        let member_id = format!("{client_id}-{high:016x}{low:016x}");
        assert!(!self.members.contains_key(&member_id), "a fresh member id");
        assert!(!self.pending.contains_key(&member_id), "a fresh member id");
        member_id
    }

    fn next_serial(&mut self) -> u64 {
        self.next_serial += 1;
        self.next_serial
    }

    /// A join without a member id.
    fn join_new(&mut self, now: Instant, token: RequestToken, request: JoinRequest) {
        let holder = request.group_instance_id.as_ref().and_then(|i| self.static_members.get(i));
        if let Some(holder) = holder.cloned() {
            self.replace_static(now, token, &holder, request);
            return;
        }
        if self.is_full() {
            self.answer(GroupEvent::Join { token, result: Err(GroupError::GroupMaxSizeReached) });
            return;
        }
        let member_id = self.new_member_id(&request.client_id);
        if request.group_instance_id.is_some() {
            // KIP-394 exempts static members: their instance id already names them.
            self.add_member(now, token, member_id, request);
            return;
        }
        // KIP-394: the member must come back with this id, so that a client that times out
        // and retries does not leave a stray member behind. Until then the id is pending and
        // expires with the session timeout.
        let serial = self.next_serial();
        self.pending.insert(member_id.clone(), serial);
        self.timers.set(GroupTimer::Pending(serial), now + request.session_timeout);
        let result = Err(GroupError::MemberIdRequired { member_id });
        self.answer(GroupEvent::Join { token, result });
    }

    /// A join with a member id.
    fn join_known(&mut self, now: Instant, token: RequestToken, request: JoinRequest) {
        let member_id = request.member_id.clone();
        if let Some(serial) = self.pending.remove(&member_id) {
            self.timers.stop(GroupTimer::Pending(serial));
            self.add_member(now, token, member_id, request);
            return;
        }
        let Some(member) = self.members.get(&member_id) else {
            self.answer(GroupEvent::Join { token, result: Err(GroupError::UnknownMemberId) });
            return;
        };
        if let Some(instance) = &request.group_instance_id {
            let error = match self.static_members.get(instance) {
                None => Some(GroupError::UnknownMemberId),
                Some(holder) if *holder != member_id => Some(GroupError::FencedInstanceId),
                Some(_) => None,
            };
            if let Some(error) = error {
                self.answer(GroupEvent::Join { token, result: Err(error) });
                return;
            }
        }
        let unchanged =
            self.protocol_type == request.protocol_type && member.matches(&request.protocols);
        let is_leader = self.leader.as_deref() == Some(member_id.as_str());
        let rejoin = match self.state {
            GroupState::PreparingRebalance => true,
            GroupState::CompletingRebalance => !unchanged,
            // The leader rejoining asks for a new assignment (its metadata view changed).
            GroupState::Stable => is_leader || !unchanged,
            GroupState::Empty | GroupState::Dead => unreachable!("a member exists"),
        };
        if !rejoin {
            // A retried join for the generation the member is in: answer it again.
            self.refresh_session(now, &member_id);
            let result = Ok(self.join_response(&member_id, false));
            self.answer(GroupEvent::Join { token, result });
            return;
        }
        self.update_member(now, token, &request);
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now);
        }
        self.try_complete_join(now);
    }

    /// Adds a member that joins with `token` parked, and starts (or joins) a rebalance.
    fn add_member(
        &mut self,
        now: Instant,
        token: RequestToken,
        member_id: String,
        request: JoinRequest,
    ) {
        assert!(!self.members.contains_key(&member_id));
        let serial = self.next_serial();
        if let Some(instance) = &request.group_instance_id {
            let previous = self.static_members.insert(instance.clone(), member_id.clone());
            assert_eq!(previous, None, "a new static member takes a free instance id");
        }
        let member = Member {
            serial,
            member_id: member_id.clone(),
            group_instance_id: request.group_instance_id,
            client_id: request.client_id,
            session_timeout: request.session_timeout,
            rebalance_timeout: request.rebalance_timeout,
            protocols: request.protocols,
            assignment: bytes::Bytes::new(),
            awaiting_join: Some(token),
            awaiting_sync: None,
        };
        self.members.insert(member_id.clone(), member);
        self.protocol_type = request.protocol_type;
        self.refresh_session(now, &member_id);
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now);
        }
        self.try_complete_join(now);
    }

    /// Takes the member's new protocols and timeouts and parks its join.
    fn update_member(&mut self, now: Instant, token: RequestToken, request: &JoinRequest) {
        let member = self.members.get_mut(&request.member_id).expect("updating a member");
        member.client_id.clone_from(&request.client_id);
        member.session_timeout = request.session_timeout;
        member.rebalance_timeout = request.rebalance_timeout;
        member.protocols.clone_from(&request.protocols);
        self.protocol_type.clone_from(&request.protocol_type);
        // A client has one JoinGroup in flight; a second replaces the first, which is still
        // answered so that no request waits forever.
        let old = member.awaiting_join.replace(token);
        if let Some(old) = old {
            let result = Err(GroupError::RebalanceInProgress);
            self.answer(GroupEvent::Join { token: old, result });
        }
        self.refresh_session(now, &request.member_id);
    }

    /// KIP-345: a static member restarted and joined without its member id. It gets a new
    /// member id and the old one is fenced. When the group is Stable and the member asks for
    /// what it had, nothing is rebalanced: it keeps the old member's assignment.
    fn replace_static(
        &mut self,
        now: Instant,
        token: RequestToken,
        old_id: &str,
        request: JoinRequest,
    ) {
        let mut member = self.members.remove(old_id).expect("a static id is held by a member");
        self.timers.stop(GroupTimer::Session(member.serial));
        if let Some(old) = member.awaiting_join.take() {
            let result = Err(GroupError::FencedInstanceId);
            self.answer(GroupEvent::Join { token: old, result });
        }
        if let Some(old) = member.awaiting_sync.take() {
            let result = Err(GroupError::FencedInstanceId);
            self.answer(GroupEvent::Sync { token: old, result });
        }
        let unchanged =
            self.protocol_type == request.protocol_type && member.matches(&request.protocols);
        let member_id = self.new_member_id(&request.client_id);
        let instance = request.group_instance_id.clone().expect("a static member");
        self.static_members.insert(instance, member_id.clone());
        let was_leader = self.leader.as_deref() == Some(old_id);
        if was_leader {
            self.leader = Some(member_id.clone());
        }
        member.member_id.clone_from(&member_id);
        member.serial = self.next_serial();
        member.client_id = request.client_id;
        member.session_timeout = request.session_timeout;
        member.rebalance_timeout = request.rebalance_timeout;
        member.protocols = request.protocols;
        self.members.insert(member_id.clone(), member);
        self.protocol_type = request.protocol_type;
        self.refresh_session(now, &member_id);
        if self.state == GroupState::Stable && unchanged {
            let result = Ok(self.join_response(&member_id, was_leader));
            self.answer(GroupEvent::Join { token, result });
            return;
        }
        // A changed subscription needs a new assignment; so does a group completing its
        // rebalance, whose leader (perhaps the fenced member) may never send one now.
        self.members.get_mut(&member_id).expect("inserted").awaiting_join = Some(token);
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now);
        }
        self.try_complete_join(now);
    }

    /// Starts a rebalance: parked syncs are told to rejoin and the rebalance deadline is the
    /// longest rebalance timeout of the members.
    pub(super) fn prepare_rebalance(&mut self, now: Instant) {
        assert_ne!(self.state, GroupState::PreparingRebalance);
        assert_ne!(self.state, GroupState::Dead);
        let parked: Vec<RequestToken> =
            self.members.values_mut().filter_map(|member| member.awaiting_sync.take()).collect();
        for token in parked {
            self.answer(GroupEvent::Sync { token, result: Err(GroupError::RebalanceInProgress) });
        }
        let timeout = self.members.values().map(|member| member.rebalance_timeout).max();
        self.timers.set(GroupTimer::Rebalance, now + timeout.unwrap_or_default());
        self.state = GroupState::PreparingRebalance;
    }

    /// Completes the rebalance once every member has rejoined and every id handed out has
    /// been used or has expired.
    pub(super) fn try_complete_join(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let all_joined = self.members.values().all(|member| member.awaiting_join.is_some());
        if all_joined && self.pending.is_empty() {
            self.complete_join(now);
        }
    }

    /// Ends the rebalance: dynamic members that did not rejoin are dropped (static members
    /// keep their place until their session expires, KIP-345), the generation moves on, a
    /// leader and an assignor are chosen and every parked join is answered.
    pub(super) fn complete_join(&mut self, now: Instant) {
        assert_eq!(self.state, GroupState::PreparingRebalance);
        self.timers.stop(GroupTimer::Rebalance);
        let absent: Vec<String> = self
            .members
            .values()
            .filter(|member| member.awaiting_join.is_none() && member.group_instance_id.is_none())
            .map(|member| member.member_id.clone())
            .collect();
        for member_id in absent {
            self.remove_member(&member_id, GroupError::UnknownMemberId);
        }
        self.generation = self.generation.checked_add(1).expect("generation overflow");
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.leader = None;
            self.protocol_name = None;
            return;
        }
        let leader = self.choose_leader();
        self.protocol_name = Some(self.choose_protocol(&leader));
        self.leader = Some(leader);
        self.state = GroupState::CompletingRebalance;
        for (member_id, token) in self.take_parked(|member| &mut member.awaiting_join) {
            let result = Ok(self.join_response(&member_id, false));
            self.answer(GroupEvent::Join { token, result });
        }
        // Everyone starts the new generation with a full session.
        let member_ids: Vec<String> = self.members.keys().cloned().collect();
        for member_id in member_ids {
            self.refresh_session(now, &member_id);
        }
    }

    /// The leader stays if it rejoined; otherwise the first member (by id) that rejoined.
    fn choose_leader(&self) -> String {
        let rejoined = |id: &String| self.members[id].awaiting_join.is_some();
        if let Some(leader) = self.leader.as_ref().filter(|leader| rejoined(leader)) {
            return leader.clone();
        }
        let first_joined = self.members.keys().find(|id| rejoined(id));
        first_joined.or_else(|| self.members.keys().next()).expect("members exist").clone()
    }

    /// The first assignor in the leader's order of preference that every member lists.
    fn choose_protocol(&self, leader: &str) -> String {
        let leader = &self.members[leader];
        let chosen = leader
            .protocols
            .iter()
            .map(|(name, _)| name)
            .find(|name| self.members.values().all(|member| member.supports(name)));
        chosen.expect("join checks keep an assignor common to all members").clone()
    }

    /// The JoinGroup answer for `member_id` in the current generation: the leader gets
    /// every member with its metadata, the others an empty list.
    pub(super) fn join_response(&self, member_id: &str, skip_assignment: bool) -> JoinResponse {
        let leader = self.leader.clone().expect("a generation has a leader");
        let protocol_name = self.protocol_name.clone().expect("a generation has a protocol");
        let members = if leader == member_id {
            self.members
                .values()
                .map(|member| JoinedMember {
                    member_id: member.member_id.clone(),
                    group_instance_id: member.group_instance_id.clone(),
                    metadata: member.metadata(&protocol_name),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResponse {
            generation: self.generation,
            protocol_type: self.protocol_type().to_owned(),
            protocol_name,
            leader,
            member_id: member_id.to_owned(),
            members,
            skip_assignment,
        }
    }
}
