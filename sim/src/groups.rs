//! Simulated consumers in consumer groups (design §6), driven through the real coordinator:
//! FindCoordinator, then JoinGroup, SyncGroup, Heartbeat, OffsetFetch, OffsetCommit and
//! LeaveGroup, as a Kafka consumer of the classic group protocol does.
//!
//! Each consumer is one history process, one request at a time (its heartbeats take turns
//! with its polls and commits). It subscribes to every topic in the history (`Part::recorded`);
//! the group's leader computes a range assignment itself ([`range_assignment`]) and sends it
//! in SyncGroup. Once it has its partitions, a member reads their committed offsets
//! (OffsetFetch, a `committed` op) and polls from there (an `assign` op first, so the
//! history's consumer checks restart at that position); it commits its positions now and
//! then (a `commit` op). It rejoins on REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION and
//! UNKNOWN_MEMBER_ID (with an empty member id for the last), and finds the coordinator again
//! on NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS or a timeout.
//! Now and then one leaves the group, or crashes: it stops heartbeating (its session times
//! out and the group rebalances) and comes back later as a new member.
//!
//! What the history gets: a `commit` ends `ok` when the coordinator acknowledged it, `fail`
//! when it was refused before anything was appended (a group error), and `info` otherwise
//! (a timeout, or a coordinator error that may follow an append). The history checker checks
//! the commits and committed reads of each group and partition as a register
//! (linearizability). The run checks besides that a committed offset never passes a record
//! the group did not read ([`check_committed_read`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use cairn_jepsen::{F, GroupOffset, OpType, Poll, Record, TopicPartition, Value};
use cairn_node::core::coordinator::{
    CommittedOffset, CoordinatorError, CoordinatorRequest, CoordinatorResponse, OffsetCommit,
    partition_for,
};
use cairn_node::core::group::{GroupError, JoinRequest, JoinedMember, LeaveMember, SyncRequest};
use cairn_node::core::node::{PartitionId, Request, Response};
use rand::Rng;

use crate::assignor::{
    decode_assignment, decode_topics, encode_assignment, encode_topics, range_assignment,
};
use crate::invariants::{self, Violation};
use crate::net::Endpoint;
use crate::params::{Atlas, Params};
use crate::workload::{Msg, Part, leaders_named, records_read, reset_position};
use crate::world::{Event, MS, World};

/// Partitions of `__consumer_offsets` in the simulated cluster (`offsets.topic.num.partitions`).
pub const OFFSETS_PARTITIONS: i32 = 3;
/// The consumers' session timeout: the coordinator's lowest (`group.min.session.timeout.ms`).
const SESSION_TIMEOUT_MS: u64 = 6_000;
/// How long the coordinator waits for members to rejoin during a rebalance.
const REBALANCE_TIMEOUT_MS: u64 = 3_000;
/// A member heartbeats at least this often while nothing else is due.
const HEARTBEAT_INTERVAL_MS: u64 = 1_000;
/// Bytes a consumer's poll asks for.
const FETCH_BYTES_MAX: u32 = 2_048;
/// Per mille of a stable member's turns that commit its positions.
const COMMIT_PER_MILLE: u32 = 150;
/// A member crashes or leaves once in a while: the time until then is drawn from this range
/// (so about once in a run of the safety phase's length, 5 to 20 s).
const FAULT_GAP_MS: std::ops::RangeInclusive<u64> = 2_000..=20_000;
/// Per cent of those that are crashes; the others leave the group.
const CRASH_PERCENT: u32 = 70;
/// The longest a crashed (or departed) consumer stays away: beyond its session, sometimes.
const DOWN_MS_MAX: u64 = SESSION_TIMEOUT_MS + 2_000;
/// How long a consumer waits before it retries after a coordinator error (Kafka's
/// `retry.backoff.ms`).
const RETRY_BACKOFF_MS: u64 = 100;

/// The name of group `index`.
pub fn group_name(index: usize) -> String {
    format!("g{index}")
}

/// The offsets partition that coordinates group `name` in the simulated cluster.
pub fn offsets_partition(name: &str) -> i32 {
    partition_for(name, OFFSETS_PARTITIONS)
}

#[derive(Debug, Clone)]
enum Pending {
    FindCoordinator,
    Join,
    Sync {
        generation: i32,
    },
    Heartbeat,
    Leave,
    /// An OffsetCommit of these partitions at these offsets.
    Commit {
        offsets: Vec<(usize, u64)>,
    },
    /// An OffsetFetch of the member's partitions.
    Fetch,
    Poll {
        part: usize,
        offset: u64,
    },
    Metadata,
}

/// A JoinGroup answered, before SyncGroup.
#[derive(Debug, Clone)]
struct Joined {
    generation: i32,
    /// The assignment to send, from the leader; empty from the others.
    assignments: Vec<(String, Bytes)>,
}

/// One simulated consumer.
#[derive(Debug)]
struct Consumer {
    group: usize,
    pending: Option<(u64, Pending)>,
    /// When the pending request times out.
    deadline: u64,
    next_id: u64,
    /// The coordinator (node index), once found.
    coordinator: Option<u32>,
    member_id: String,
    joined: Option<Joined>,
    /// The generation it is a member of, once SyncGroup answered.
    generation: Option<i32>,
    /// Its partitions in that generation.
    assignment: Vec<usize>,
    /// Its position in each of them, once OffsetFetch answered.
    positions: BTreeMap<usize, u64>,
    leaders: Vec<Option<u32>>,
    heartbeat_due: u64,
    /// While crashed or away: when it comes back.
    down_until: Option<u64>,
    /// When it next crashes or leaves (drawn at its first turn, and when it comes back).
    fault_at: Option<u64>,
    /// Whether its next turn waits [`RETRY_BACKOFF_MS`] first.
    backoff: bool,
}

/// What the run knows of one group.
#[derive(Debug, Default)]
struct GroupTrack {
    /// Per partition: every offset a member of the group read.
    delivered: BTreeMap<usize, BTreeSet<u64>>,
    /// Per partition: the highest offset a commit or a committed read reported `ok`.
    committed_max: BTreeMap<usize, u64>,
    /// The highest generation a member synced.
    generation_max: i32,
}

/// Every consumer and what the run knows of each group.
#[derive(Debug)]
pub struct Groups {
    consumers: Vec<Consumer>,
    groups: Vec<GroupTrack>,
    /// The first consumer's client number; the others follow it.
    first_client: u32,
    /// Joins answered with a generation.
    pub joins: u64,
    /// Generations completed (a member synced a generation newer than any before).
    pub rebalances: u64,
    /// Commits acknowledged.
    pub commits_ok: u64,
    /// Committed offsets read (OffsetFetch answered).
    pub committed_reads: u64,
}

impl Groups {
    /// The consumers of `params`, numbered after the clients and the drainer.
    pub fn new(params: &Params, parts: &[Part]) -> Groups {
        let first_client = params.clients + 1;
        let consumers = (0..params.consumers)
            .map(|k| Consumer {
                group: (k % params.groups.max(1)) as usize,
                pending: None,
                deadline: 0,
                next_id: 0,
                coordinator: None,
                member_id: String::new(),
                joined: None,
                generation: None,
                assignment: Vec::new(),
                positions: BTreeMap::new(),
                leaders: vec![None; parts.len()],
                heartbeat_due: 0,
                down_until: None,
                fault_at: None,
                backoff: false,
            })
            .collect();
        let groups = (0..params.groups).map(|_| GroupTrack::default()).collect();
        Groups {
            consumers,
            groups,
            first_client,
            joins: 0,
            rebalances: 0,
            commits_ok: 0,
            committed_reads: 0,
        }
    }

    /// Whether client number `client` is a consumer of a group.
    pub fn is_consumer(&self, client: u32) -> bool {
        client >= self.first_client
    }

    /// Client numbers of every consumer.
    pub fn clients(&self) -> impl Iterator<Item = u32> + use<> {
        self.first_client..self.first_client + self.consumers.len() as u32
    }
}

fn consumer(world: &mut World, client: u32) -> &mut Consumer {
    let first = world.work.groups.first_client;
    &mut world.work.groups.consumers[(client - first) as usize]
}

/// The topics a consumer subscribes to: those in the history.
fn subscription(parts: &[Part]) -> Vec<String> {
    let mut topics: Vec<String> =
        parts.iter().filter(|p| p.recorded).map(|p| p.id.topic.to_string()).collect();
    topics.dedup();
    topics
}

/// A consumer's turn.
pub(crate) fn consumer_wake(world: &mut World, client: u32) {
    if world.work.stopped || consumer(world, client).pending.is_some() {
        return;
    }
    let now = world.now;
    if let Some(until) = consumer(world, client).down_until {
        if now < until {
            return world.schedule(until, Event::ClientWake { client });
        }
        consumer(world, client).down_until = None;
    }
    if !world.topics_created.iter().all(|created| *created) {
        // A consumer subscribes to topics that exist (and the offsets topic, created on the
        // first FindCoordinator, gets as many replicas as there are brokers up by then).
        return world.schedule(now + 50 * MS, Event::ClientWake { client });
    }
    if consumer(world, client).fault_at.is_none() {
        let gap = world.rng_work.random_range(FAULT_GAP_MS);
        consumer(world, client).fault_at = Some(now + gap * MS);
    }
    let c = consumer(world, client);
    if c.coordinator.is_none() {
        return start_find_coordinator(world, client);
    }
    if let Some(joined) = c.joined.clone() {
        return start_sync(world, client, joined);
    }
    if c.generation.is_none() {
        return start_join(world, client);
    }
    if c.positions.len() != c.assignment.len() {
        return start_offset_fetch(world, client);
    }
    if now >= c.heartbeat_due || c.assignment.is_empty() {
        if now < c.heartbeat_due {
            let due = c.heartbeat_due;
            return world.schedule(due, Event::ClientWake { client });
        }
        return start_heartbeat(world, client);
    }
    if c.fault_at.is_some_and(|at| now >= at) {
        consumer(world, client).fault_at = None;
        if world.rng_work.random_range(0..100) < CRASH_PERCENT {
            return crash(world, client);
        }
        return start_leave(world, client);
    }
    if world.rng_work.random_range(0..1000) < COMMIT_PER_MILLE {
        return start_commit(world, client);
    }
    let count = consumer(world, client).assignment.len();
    let pick = world.rng_work.random_range(0..count);
    let c = consumer(world, client);
    let part = c.assignment[pick];
    if c.leaders[part].is_none() {
        return start_metadata(world, client);
    }
    let offset = c.positions[&part];
    start_poll(world, client, part, offset);
}

/// Sends `request` to node `node` and waits for the answer up to `timeout_ms`.
fn request(world: &mut World, client: u32, node: u32, request: Request, pending: Pending) {
    let timeout_ms = match pending {
        // The coordinator parks a JoinGroup until the rebalance completes, and a member's
        // SyncGroup until the leader's: a Kafka consumer waits for them that much longer.
        Pending::Join | Pending::Sync { .. } => REBALANCE_TIMEOUT_MS + world.work.timeout_ms,
        _ => world.work.timeout_ms,
    };
    let deadline = world.now + timeout_ms * MS;
    let c = consumer(world, client);
    c.next_id += 1;
    let id = c.next_id;
    c.pending = Some((id, pending));
    c.deadline = deadline;
    world.send(
        Endpoint::Client(client),
        Endpoint::Node(node),
        Msg::Request { client, id, request },
    );
    world.arm_client_timeout(client, deadline);
}

/// Consumer `client`'s pending request and when it times out.
pub(crate) fn pending_deadline(world: &World, client: u32) -> Option<(u64, u64)> {
    let c = &world.work.groups.consumers[(client - world.work.groups.first_client) as usize];
    c.pending.as_ref().map(|(id, _)| (*id, c.deadline))
}

fn group_request(world: &mut World, client: u32, body: CoordinatorRequest, pending: Pending) {
    let node = consumer(world, client).coordinator.expect("found before a group request");
    request(world, client, node, Request::Group(body), pending);
}

fn group_of(world: &mut World, client: u32) -> String {
    group_name(consumer(world, client).group)
}

fn start_find_coordinator(world: &mut World, client: u32) {
    let node = world.rng_work.random_range(0..world.work.nodes);
    let key = group_of(world, client);
    request(
        world,
        client,
        node,
        Request::FindCoordinator { key, key_type: 0 },
        Pending::FindCoordinator,
    );
}

fn start_metadata(world: &mut World, client: u32) {
    let node = world.rng_work.random_range(0..world.work.nodes);
    let body = Request::Metadata { topics: None, auto_create: false };
    request(world, client, node, body, Pending::Metadata);
}

fn start_join(world: &mut World, client: u32) {
    let group = group_of(world, client);
    let topics = subscription(&world.work.parts);
    let c = consumer(world, client);
    let join = JoinRequest {
        member_id: c.member_id.clone(),
        group_instance_id: None,
        client_id: format!("consumer-{client}"),
        session_timeout: Duration::from_millis(SESSION_TIMEOUT_MS),
        rebalance_timeout: Duration::from_millis(REBALANCE_TIMEOUT_MS),
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), encode_topics(&topics))],
    };
    group_request(world, client, CoordinatorRequest::Join { group, request: join }, Pending::Join);
}

fn start_sync(world: &mut World, client: u32, joined: Joined) {
    let group = group_of(world, client);
    let c = consumer(world, client);
    let sync = SyncRequest {
        member_id: c.member_id.clone(),
        group_instance_id: None,
        generation: joined.generation,
        assignments: joined.assignments,
    };
    let pending = Pending::Sync { generation: joined.generation };
    group_request(world, client, CoordinatorRequest::Sync { group, request: sync }, pending);
}

fn start_heartbeat(world: &mut World, client: u32) {
    let group = group_of(world, client);
    let c = consumer(world, client);
    let body = CoordinatorRequest::Heartbeat {
        group,
        member_id: c.member_id.clone(),
        group_instance_id: None,
        generation: c.generation.expect("a member"),
    };
    group_request(world, client, body, Pending::Heartbeat);
}

fn start_leave(world: &mut World, client: u32) {
    let group = group_of(world, client);
    let member_id = consumer(world, client).member_id.clone();
    let members = vec![LeaveMember { member_id, group_instance_id: None }];
    group_request(world, client, CoordinatorRequest::Leave { group, members }, Pending::Leave);
}

/// The history entries of `offsets` (`None` offsets for a `committed` invocation).
fn entries(world: &World, group: &str, offsets: &[(usize, Option<u64>)]) -> Vec<GroupOffset> {
    (offsets.iter())
        .map(|(part, offset)| {
            let p = &world.work.parts[*part];
            let offset = offset.map(|o| o as i64);
            GroupOffset::new(group, p.id.topic.to_string(), p.id.partition, offset)
        })
        .collect()
}

fn start_offset_fetch(world: &mut World, client: u32) {
    let group = group_of(world, client);
    let assignment = consumer(world, client).assignment.clone();
    let keys: Vec<(usize, Option<u64>)> = assignment.iter().map(|p| (*p, None)).collect();
    let value = Value::Offsets(entries(world, &group, &keys));
    world.work.history.invoke(world.now, u64::from(client), F::Committed, value);
    let partitions = Some(assignment.iter().map(|p| world.work.parts[*p].id.clone()).collect());
    let body = CoordinatorRequest::Fetch { group, partitions };
    group_request(world, client, body, Pending::Fetch);
}

fn start_commit(world: &mut World, client: u32) {
    let group = group_of(world, client);
    let c = consumer(world, client);
    let offsets: Vec<(usize, u64)> = c.positions.iter().map(|(p, o)| (*p, *o)).collect();
    let (generation, member_id) = (c.generation.expect("a member"), c.member_id.clone());
    let keys: Vec<(usize, Option<u64>)> = offsets.iter().map(|(p, o)| (*p, Some(*o))).collect();
    let value = Value::Offsets(entries(world, &group, &keys));
    world.work.history.invoke(world.now, u64::from(client), F::Commit, value);
    let commit = OffsetCommit {
        group,
        generation,
        member_id,
        group_instance_id: None,
        offsets: (offsets.iter())
            .map(|(p, o)| (world.work.parts[*p].id.clone(), *o as i64, -1, String::new()))
            .collect(),
    };
    group_request(world, client, CoordinatorRequest::Commit(commit), Pending::Commit { offsets });
}

fn start_poll(world: &mut World, client: u32, part: usize, offset: u64) {
    let node = consumer(world, client).leaders[part].expect("known before a poll");
    let partition = world.work.parts[part].id.clone();
    world.work.history.invoke(world.now, u64::from(client), F::Poll, Value::Null);
    let body = Request::Fetch { partition, offset, max_bytes: FETCH_BYTES_MAX, leader_epoch: None };
    request(world, client, node, body, Pending::Poll { part, offset });
}

/// The consumer crashes: what it had in flight ends unknown (a `crash` line), its state is
/// gone, and it stops heartbeating until it comes back as a new member.
fn crash(world: &mut World, client: u32) {
    world.work.history.push(world.now, u64::from(client), OpType::Info, F::Crash, Value::Null);
    away(world, client);
}

/// The consumer forgets its membership and stays away a while (a crash or a leave).
fn away(world: &mut World, client: u32) {
    let down_ms = world.rng_work.random_range(0..=DOWN_MS_MAX);
    let until = world.now + down_ms * MS;
    let c = consumer(world, client);
    c.pending = None;
    c.coordinator = None;
    c.member_id.clear();
    reset_membership(c);
    c.leaders.iter_mut().for_each(|l| *l = None);
    c.down_until = Some(until);
    world.schedule(until, Event::ClientWake { client });
}

/// The member must join again: its generation and partitions are gone.
fn reset_membership(c: &mut Consumer) {
    c.joined = None;
    c.generation = None;
    c.assignment.clear();
    c.positions.clear();
}

fn think(world: &mut World, client: u32) {
    if std::mem::take(&mut consumer(world, client).backoff) {
        let at = world.now + RETRY_BACKOFF_MS * MS;
        return world.schedule(at, Event::ClientWake { client });
    }
    let delay = world.rng_work.random_range(0..=world.work.think_ms_max * MS);
    world.schedule(world.now + delay, Event::ClientWake { client });
}

/// A message reached a consumer.
pub(crate) fn consumer_receive(world: &mut World, client: u32, msg: Msg) {
    let Msg::Reply { id, response } = msg else { return };
    let c = consumer(world, client);
    if c.pending.as_ref().is_none_or(|(pending_id, _)| *pending_id != id) {
        return;
    }
    let (_, pending) = c.pending.take().expect("checked");
    match (pending, response) {
        (Pending::FindCoordinator, Response::Coordinator { node_id, .. }) => {
            let node = node_id.0 - 1;
            consumer(world, client).coordinator = (node < world.work.nodes).then_some(node);
        }
        (Pending::FindCoordinator, _) => consumer(world, client).backoff = true,
        (Pending::Metadata, Response::Metadata(view)) => {
            let named = leaders_named(&view, &world.work.parts, world.work.nodes);
            let c = consumer(world, client);
            for (part, leader) in named {
                c.leaders[part] = leader;
            }
        }
        (Pending::Metadata, _) => {}
        (Pending::Poll { part, offset }, response) => {
            poll_answered(world, client, part, offset, response)
        }
        (pending, Response::Group(response)) => group_answered(world, client, pending, response),
        (pending, Response::Error(_)) => {
            // A node that could not hand the request to a coordinator (it is starting, say).
            match pending {
                Pending::Commit { .. } => complete_commit(world, client, OpType::Info),
                Pending::Fetch => {
                    let process = u64::from(client);
                    let (now, kind) = (world.now, OpType::Fail);
                    world.work.history.complete(now, process, kind, F::Committed, Value::Null);
                }
                Pending::Sync { .. } => reset_membership(consumer(world, client)),
                Pending::Leave => away(world, client),
                _ => {}
            }
            let c = consumer(world, client);
            c.coordinator = None;
            c.backoff = true;
        }
        (pending, other) => panic!("{pending:?} answered with {other:?}"),
    }
    think(world, client);
}

/// What a coordinator's error asks of the member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recovery {
    /// Find the coordinator again.
    FindCoordinator,
    /// Join again with the member id it has.
    Rejoin,
    /// Join again as a new member.
    RejoinAsNew,
}

fn recovery(error: &CoordinatorError) -> Recovery {
    match error {
        CoordinatorError::Group(GroupError::UnknownMemberId) => Recovery::RejoinAsNew,
        CoordinatorError::Group(
            GroupError::RebalanceInProgress
            | GroupError::IllegalGeneration
            | GroupError::MemberIdRequired { .. }
            | GroupError::FencedInstanceId
            | GroupError::InconsistentGroupProtocol
            | GroupError::InvalidSessionTimeout
            | GroupError::GroupMaxSizeReached,
        ) => Recovery::Rejoin,
        _ => Recovery::FindCoordinator,
    }
}

/// Whether a commit refused with `error` certainly appended nothing: the group refused it
/// before any append. A coordinator error may follow a failed append whose record is in
/// the log all the same (and a later coordinator loads it).
fn commit_refused_before_append(error: &CoordinatorError) -> bool {
    matches!(
        error,
        CoordinatorError::Group(_)
            | CoordinatorError::LoadInProgress
            | CoordinatorError::OffsetMetadataTooLarge
            | CoordinatorError::InvalidGroupId
    )
}

fn apply_recovery(world: &mut World, client: u32, error: &CoordinatorError) {
    let c = consumer(world, client);
    match recovery(error) {
        Recovery::FindCoordinator => {
            c.coordinator = None;
            c.backoff = true;
        }
        Recovery::Rejoin => reset_membership(c),
        Recovery::RejoinAsNew => {
            c.member_id.clear();
            reset_membership(c);
        }
    }
}

fn group_answered(world: &mut World, client: u32, pending: Pending, response: CoordinatorResponse) {
    match (pending, response) {
        (Pending::Join, CoordinatorResponse::Join(result)) => match result {
            Ok(join) => {
                world.work.groups.joins += 1;
                let assignments = if join.leader == join.member_id {
                    leader_assignment(world, &join.members)
                } else {
                    Vec::new()
                };
                let c = consumer(world, client);
                c.member_id = join.member_id;
                c.joined = Some(Joined { generation: join.generation, assignments });
            }
            Err(CoordinatorError::Group(GroupError::MemberIdRequired { member_id })) => {
                consumer(world, client).member_id = member_id;
            }
            Err(error) => apply_recovery(world, client, &error),
        },
        (Pending::Sync { generation }, CoordinatorResponse::Sync(result)) => match result {
            Ok(sync) => synced(world, client, generation, &sync.assignment),
            Err(error) => {
                // Whatever the error, the join is spent: join again.
                reset_membership(consumer(world, client));
                apply_recovery(world, client, &error);
            }
        },
        (Pending::Heartbeat, CoordinatorResponse::Heartbeat(result)) => match result {
            Ok(()) => {
                let due = world.now + HEARTBEAT_INTERVAL_MS * MS;
                consumer(world, client).heartbeat_due = due;
            }
            Err(error) => apply_recovery(world, client, &error),
        },
        (Pending::Leave, CoordinatorResponse::Leave(_)) => away(world, client),
        (Pending::Commit { offsets }, CoordinatorResponse::Commit(result)) => match result {
            Ok(()) => {
                world.work.groups.commits_ok += 1;
                let group = consumer(world, client).group;
                let track = &mut world.work.groups.groups[group];
                for (part, offset) in offsets {
                    let max = track.committed_max.entry(part).or_default();
                    *max = (*max).max(offset);
                }
                complete_commit(world, client, OpType::Ok);
            }
            Err(error) => {
                let definite = commit_refused_before_append(&error);
                complete_commit(world, client, if definite { OpType::Fail } else { OpType::Info });
                apply_recovery(world, client, &error);
            }
        },
        (Pending::Fetch, CoordinatorResponse::Fetch(result)) => match result {
            Ok(offsets) => fetched(world, client, offsets),
            Err(error) => {
                let process = u64::from(client);
                world.work.history.complete(
                    world.now,
                    process,
                    OpType::Fail,
                    F::Committed,
                    Value::Null,
                );
                apply_recovery(world, client, &error);
            }
        },
        (pending, other) => panic!("{pending:?} answered with {other:?}"),
    }
}

/// The group leader's SyncGroup assignments, by the range assignor over the members'
/// subscriptions.
fn leader_assignment(world: &World, members: &[JoinedMember]) -> Vec<(String, Bytes)> {
    let subscriptions: Vec<(String, Vec<String>)> =
        members.iter().map(|m| (m.member_id.clone(), decode_topics(&m.metadata))).collect();
    let mut partitions = BTreeMap::new();
    for p in world.work.parts.iter().filter(|p| p.recorded) {
        partitions.insert(p.id.topic.to_string(), p.topic_partitions);
    }
    let assignment = range_assignment(&subscriptions, &partitions);
    assignment.into_iter().map(|(member, list)| (member, encode_assignment(&list))).collect()
}

fn synced(world: &mut World, client: u32, generation: i32, assignment: &[u8]) {
    let parts = decode_assignment(assignment, &world.work.parts);
    let group = consumer(world, client).group;
    let track = &mut world.work.groups.groups[group];
    if generation > track.generation_max {
        track.generation_max = generation;
        world.work.groups.rebalances += 1;
    }
    let due = world.now + HEARTBEAT_INTERVAL_MS * MS;
    let c = consumer(world, client);
    c.joined = None;
    c.generation = Some(generation);
    c.assignment = parts;
    c.positions.clear();
    c.heartbeat_due = due;
}

/// OffsetFetch answered: the member polls its partitions from their committed offsets (the
/// earliest offset where none is committed, `auto.offset.reset=earliest`).
fn fetched(world: &mut World, client: u32, offsets: Vec<(PartitionId, Option<CommittedOffset>)>) {
    world.work.groups.committed_reads += 1;
    let assignment = consumer(world, client).assignment.clone();
    let mut positions = BTreeMap::new();
    for part in &assignment {
        let id = &world.work.parts[*part].id;
        let committed = offsets.iter().find(|(p, _)| p == id).and_then(|(_, c)| c.as_ref());
        let offset = committed.map(|c| c.offset).filter(|o| *o >= 0);
        positions.insert(*part, offset.map(|o| o as u64));
    }
    let group_name = group_of(world, client);
    let keys: Vec<(usize, Option<u64>)> = positions.iter().map(|(p, o)| (*p, *o)).collect();
    let value = Value::Offsets(entries(world, &group_name, &keys));
    let process = u64::from(client);
    world.work.history.complete(world.now, process, OpType::Ok, F::Committed, value);
    let group = consumer(world, client).group;
    let track = &mut world.work.groups.groups[group];
    for (part, offset) in &keys {
        if let Some(offset) = offset {
            let max = track.committed_max.entry(*part).or_default();
            *max = (*max).max(*offset);
        }
    }
    let assign = Value::Partitions(
        (assignment.iter())
            .map(|p| {
                let id = &world.work.parts[*p].id;
                TopicPartition { topic: id.topic.to_string(), partition: id.partition }
            })
            .collect(),
    );
    world.work.history.invoke(world.now, process, F::Assign, assign.clone());
    world.work.history.complete(world.now, process, OpType::Ok, F::Assign, assign);
    let c = consumer(world, client);
    c.positions = positions.into_iter().map(|(p, o)| (p, o.unwrap_or(0))).collect();
}

fn complete_commit(world: &mut World, client: u32, kind: OpType) {
    world.work.history.complete(world.now, u64::from(client), kind, F::Commit, Value::Null);
}

fn poll_answered(world: &mut World, client: u32, part: usize, offset: u64, response: Response) {
    let process = u64::from(client);
    match response {
        Response::Fetched { records, high_watermark, .. } => {
            let read = records_read(&records);
            let p = &mut world.work.parts[part];
            p.max_high_watermark = p.max_high_watermark.max(high_watermark);
            let p = &world.work.parts[part];
            let offsets: Vec<u64> = read.iter().map(|(o, _)| *o).collect();
            let mut check = invariants::fetch_in_range(&p.name, offset, &offsets, high_watermark);
            if world.acks_checked() {
                for (o, v) in &read {
                    check = check
                        .and_then(|()| invariants::fetch_matches_acked(&p.name, &p.acked, *o, *v));
                }
            }
            if let Err(v) = check {
                world.violation.get_or_insert(v);
            }
            world.coverage.records_read += read.len() as u64;
            let topic = p.id.topic.to_string();
            let records = (read.iter())
                .map(|(o, v)| Record::new(topic.clone(), p.id.partition, *o as i64, *v))
                .collect();
            let value = Value::Poll(Poll { is_final: false, records });
            world.work.history.complete(world.now, process, OpType::Ok, F::Poll, value);
            let group = consumer(world, client).group;
            let delivered = world.work.groups.groups[group].delivered.entry(part).or_default();
            delivered.extend(offsets.iter().copied());
            if let Some(last) = offsets.last() {
                consumer(world, client).positions.insert(part, last + 1);
            }
        }
        Response::Error(error) if let Some(position) = reset_position(&error, offset) => {
            world.work.history.complete(world.now, process, OpType::Fail, F::Poll, Value::Null);
            // auto.offset.reset, as the other clients do; the history hears of it.
            consumer(world, client).positions.insert(part, position);
            let id = &world.work.parts[part].id;
            let assign = Value::Partitions(vec![TopicPartition {
                topic: id.topic.to_string(),
                partition: id.partition,
            }]);
            world.work.history.invoke(world.now, process, F::Assign, assign.clone());
            world.work.history.complete(world.now, process, OpType::Ok, F::Assign, assign);
        }
        Response::Error(_) => {
            world.work.history.complete(world.now, process, OpType::Fail, F::Poll, Value::Null);
            consumer(world, client).leaders[part] = None;
        }
        other => panic!("a fetch answered with {other:?}"),
    }
}

/// A consumer's request timed out: its outcome is unknown.
pub(crate) fn consumer_timeout(world: &mut World, client: u32, id: u64) {
    let c = consumer(world, client);
    if c.pending.as_ref().is_none_or(|(pending_id, _)| *pending_id != id) {
        return;
    }
    let (_, pending) = c.pending.take().expect("checked");
    let process = u64::from(client);
    match pending {
        Pending::Poll { part, .. } => {
            world.work.history.complete(world.now, process, OpType::Info, F::Poll, Value::Null);
            consumer(world, client).leaders[part] = None;
        }
        Pending::Metadata => {}
        Pending::Commit { .. } => {
            complete_commit(world, client, OpType::Info);
            consumer(world, client).coordinator = None;
        }
        Pending::Fetch => {
            world.work.history.complete(
                world.now,
                process,
                OpType::Info,
                F::Committed,
                Value::Null,
            );
            consumer(world, client).coordinator = None;
        }
        Pending::Join | Pending::Sync { .. } => {
            let c = consumer(world, client);
            reset_membership(c);
            c.coordinator = None;
        }
        Pending::FindCoordinator | Pending::Heartbeat => consumer(world, client).coordinator = None,
        Pending::Leave => away(world, client),
    }
    think(world, client);
}

/// The run's check that a committed offset never passes a record the group did not read
/// (design §6: a committed offset is the next offset to consume; a consumer resuming from
/// it skips nothing): every acknowledged acks=all record of an fsync partition below the
/// highest offset a group committed (or read as committed) was read by a member of that
/// group. Partitions with retention are left out (retention may delete a record before any
/// member reads it, and the members skip it as `auto.offset.reset` does), as are runs whose
/// losses are excused.
pub(crate) fn check_committed_read(world: &World) -> Result<(), Violation> {
    if world.params.atlas == Atlas::Unrecoverable || world.losses_excused {
        return Ok(());
    }
    for (g, track) in world.work.groups.groups.iter().enumerate() {
        for (&part, &committed) in &track.committed_max {
            let p = &world.work.parts[part];
            if p.retention || !World::is_durable(p) {
                continue;
            }
            let delivered = track.delivered.get(&part);
            let unread = (p.acked.range(..committed))
                .map(|(offset, _)| *offset)
                .find(|offset| !delivered.is_some_and(|d| d.contains(offset)));
            if let Some(offset) = unread {
                return Err(Violation::CommittedPastUnread {
                    group: group_name(g),
                    partition: p.name.clone(),
                    offset,
                    committed,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// A sweep whose consumers joined but never committed exercised too little.
    #[test]
    fn a_sweep_whose_groups_commit_nothing_is_too_little() {
        let coverage = crate::run::Coverage {
            group_runs: 100,
            group_joins: 300,
            group_rebalances: 200,
            commits_ok: 0,
            ..crate::run::Coverage::default()
        };
        let why = coverage.too_little(200);
        assert!(why.iter().any(|w| w.starts_with("commits acked")), "{why:?}");
        let enough = crate::run::Coverage { commits_ok: 500, ..coverage };
        assert!(!enough.too_little(200).iter().any(|w| w.contains("commits")));
    }
}
