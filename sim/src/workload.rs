//! Simulated Kafka clients: each is one history process that sends (acks 0, 1 or all) and
//! polls, one operation at a time, over the simulated network; then one drainer reads every
//! partition to its end. Every operation goes into the history of design §9.
//!
//! Client 0 is an idempotent producer (KIP-98): it gets a producer id by InitProducerId,
//! sends acks=all batches stamped with a per-partition sequence, and retries a
//! send whose outcome is unknown (a timeout, an error after which the batch may be in the
//! log) with the same batch and sequence, until an answer is definite; its invoke stays
//! open meanwhile. The broker must answer such a retry with the original's offset: a
//! second copy is a `duplicate` in the history. When the faults heal (the workload stops),
//! a send still unsettled completes as unknown.
//!
//! What goes into the history: partitions of fsync topics without retention are recorded
//! as they are. Sends to topics with retention are recorded with acks=1, since retention may
//! delete an acknowledged record before anyone reads it (the online invariants still check
//! them). Topics with `Replicate` durability acknowledge writes a crash may take back on a
//! single replica, so their offsets can be reused; they stay out of the history and only the
//! online invariants watch them.

use std::collections::BTreeMap;

use bytes::BytesMut;
use cairn_jepsen::{Acks as HAcks, F, History, OpType, Poll, Record, Send, TopicPartition, Value};
use cairn_node::core::log::batch::{BATCH_HEADER_BYTES, BatchScan, build};
use cairn_node::core::log::{LogConfig, LogError};
use cairn_node::core::node::{
    Acks, ClusterView, Durability, PartitionId, ReplicaError, Request, RequestError, Response,
    TopicConfig,
};
use rand::Rng;

use crate::invariants;
use crate::net::Endpoint;
use crate::params::{Params, TopicDurability};
use crate::world::{Event, World};

const MS: u64 = 1_000_000;
/// Bytes a poll asks for.
const FETCH_BYTES_MAX: u32 = 2_048;

/// How long a client passes over a node after a request to it timed out (librdkafka backs
/// off reconnecting to a broker for up to 10 s).
const NODE_DOWN_NS: u64 = 5_000 * MS;
/// Bytes of a batch the clients send: the header and one record of an 8-byte value (15
/// bytes with its framing). A poll's buffer is sized for a full fetch of them.
const CLIENT_BATCH_BYTES: usize = BATCH_HEADER_BYTES + 15;

/// A message on the network.
#[derive(Debug, Clone)]
pub enum Msg {
    /// Client to node.
    Request {
        /// The client.
        client: u32,
        /// Its request number.
        id: u64,
        /// The request.
        request: Request,
    },
    /// Node to client.
    Reply {
        /// The request answered.
        id: u64,
        /// The answer.
        response: Response,
    },
}

/// One partition of the workload.
#[derive(Debug)]
pub struct Part {
    /// Its id.
    pub id: PartitionId,
    /// `topic-partition`, for messages.
    pub name: String,
    /// Replicas per partition of its topic (the cluster's default unless fixed).
    pub replication_factor: i32,
    /// Its topic's `min.insync.replicas`, at most the replication factor.
    pub min_insync_replicas: i32,
    /// The highest high watermark any fetch answer reported: the final drain reads at least
    /// to it (a new leader's HW may lag the old one's for a moment, KIP-101).
    pub max_high_watermark: u64,
    /// Its durability.
    pub durability: TopicDurability,
    /// How many partitions its topic has.
    pub topic_partitions: i32,
    /// Its log config.
    pub log: LogConfig,
    /// Whether it is in the history, and whether with the acks asked for.
    pub recorded: bool,
    /// Whether retention may delete records.
    pub retention: bool,
    /// The next value to send (unique per partition).
    pub next_value: i64,
    /// Offsets acknowledged (acks 1 or all, fsync topics) and their values.
    pub acked: BTreeMap<u64, i64>,
    /// When the world last excused a loss of what this `replicate` partition acknowledged
    /// (every ISR member lost power together): an answer in flight then may name a write
    /// already gone.
    pub loss_excused_at: Option<u64>,
}

impl Part {
    /// The partition's config as the controller hands it to the node.
    pub fn config(&self) -> TopicConfig {
        let durability = match self.durability {
            TopicDurability::Fsync => Durability::Fsync,
            TopicDurability::Replicate => Durability::Replicate,
        };
        TopicConfig {
            log: self.log.clone(),
            durability,
            min_insync_replicas: self.min_insync_replicas,
            ..TopicConfig::default()
        }
    }
}

#[derive(Debug, Clone)]
enum Pending {
    Send {
        part: usize,
        value: i64,
        acks: Acks,
    },
    Poll {
        part: usize,
        offset: u64,
        is_final: bool,
    },
    /// A Metadata request, to learn the partitions' leaders.
    Metadata,
    /// An InitProducerId, for an idempotent client.
    InitProducerId,
}

/// An idempotent client's send whose outcome is not definite yet: it is sent again, the
/// same bytes, until it is.
#[derive(Debug, Clone)]
struct Unsettled {
    part: usize,
    value: i64,
    acks: Acks,
    batch: BytesMut,
    attempts: u32,
}

/// One simulated client.
#[derive(Debug)]
struct Client {
    pending: Option<(u64, Pending)>,
    /// When the pending request times out.
    deadline: u64,
    next_id: u64,
    positions: Vec<u64>,
    started: bool,
    /// Per partition: its leader (node index) as the last Metadata answer named it; `None`
    /// until one did, and again after an error or a timeout (a Kafka client's cache).
    leaders: Vec<Option<u32>>,
    /// Whether it is an idempotent producer (module docs).
    idempotent: bool,
    /// Its producer id, once InitProducerId answered.
    producer_id: Option<i64>,
    /// Per partition: the sequence of its next batch.
    sequences: Vec<i32>,
    unsettled: Option<Unsettled>,
    /// The node its pending request went to.
    asked: u32,
    /// Per node: until when the client passes it over for a request any node can answer (a
    /// request to it timed out).
    down_until: Vec<u64>,
}

/// Every client, the partitions, and the history.
#[derive(Debug)]
pub struct Workload {
    /// The partitions.
    pub parts: Vec<Part>,
    clients: Vec<Client>,
    /// The history.
    pub history: History,
    /// Whether clients stopped (the liveness phase).
    pub stopped: bool,
    drain: Option<(usize, u64)>,
    drain_done: bool,
    poll_percent: u32,
    acks_weights: [u32; 3],
    pub(crate) think_ms_max: u64,
    pub(crate) timeout_ms: u64,
    /// Sends acknowledged with acks 1 or all.
    pub acked_sends: u64,
    /// acks=all writes acknowledged since a scenario's `acks_all_after_s`.
    pub acks_all_late: u64,
    pub(crate) nodes: u32,
    /// The consumers in groups.
    pub groups: crate::groups::Groups,
    /// The drainer's next wake after an answer, in ms (longer while a leader catches up).
    drain_delay_ms: u64,
}

impl Workload {
    /// The workload of `params`.
    pub fn new(params: &Params) -> Workload {
        let parts: Vec<Part> = params
            .partitions()
            .into_iter()
            .map(|(t, p)| {
                let topic = &params.topics[t];
                let log = LogConfig {
                    segment_bytes: topic.segment_bytes,
                    retention_bytes: topic.retention_bytes,
                    batch_bytes_max: 4096.min(topic.segment_bytes as usize),
                    ..LogConfig::default()
                };
                let replication_factor =
                    topic.replication_factor.unwrap_or(params.nodes.min(3) as i32);
                Part {
                    id: PartitionId::new(topic.name.as_str(), p as i32),
                    name: format!("{}-{p}", topic.name),
                    replication_factor,
                    min_insync_replicas: topic.min_insync_replicas.min(replication_factor),
                    loss_excused_at: None,
                    max_high_watermark: 0,
                    durability: topic.durability,
                    topic_partitions: topic.partitions as i32,
                    log,
                    recorded: topic.durability == TopicDurability::Fsync,
                    retention: topic.retention_bytes >= 0,
                    next_value: 0,
                    acked: BTreeMap::new(),
                }
            })
            .collect();
        // The drainer is one more client, after the others.
        let clients = (0..=params.clients)
            .map(|index| Client {
                pending: None,
                deadline: 0,
                next_id: 0,
                positions: vec![0; parts.len()],
                started: false,
                leaders: vec![None; parts.len()],
                idempotent: index == 0 && index < params.clients,
                producer_id: None,
                sequences: vec![0; parts.len()],
                unsettled: None,
                asked: 0,
                down_until: vec![0; params.nodes as usize],
            })
            .collect();
        let groups = crate::groups::Groups::new(params, &parts);
        Workload {
            parts,
            clients,
            history: History::new(),
            stopped: false,
            drain: None,
            drain_done: false,
            poll_percent: params.poll_percent,
            acks_weights: params.acks_weights,
            think_ms_max: params.think_ms_max,
            timeout_ms: params.request_timeout_ms,
            acked_sends: 0,
            acks_all_late: 0,
            nodes: params.nodes,
            groups,
            drain_delay_ms: 1,
        }
    }

    /// Whether the final drain read every partition to its end.
    pub fn drained(&self) -> bool {
        self.drain_done
    }

    fn assign_value(&self) -> Value {
        let parts = self.parts.iter().filter(|p| p.recorded);
        Value::Partitions(
            parts
                .map(|p| TopicPartition {
                    topic: p.id.topic.to_string(),
                    partition: p.id.partition,
                })
                .collect(),
        )
    }
}

fn send_value(part: &Part, value: i64, acks: Acks) -> Send {
    let acks = match acks {
        Acks::None => HAcks::Zero,
        Acks::Leader => HAcks::Leader,
        Acks::All if part.retention => HAcks::Leader,
        Acks::All => HAcks::All,
    };
    Send::new(part.id.topic.to_string(), part.id.partition, value).with_acks(acks)
}

/// A client's turn to start an operation.
pub(crate) fn client_wake(world: &mut World, client: u32) {
    let c = client as usize;
    if world.work.stopped || world.work.clients[c].pending.is_some() {
        return;
    }
    let now = world.now;
    if !world.work.clients[c].started {
        world.work.clients[c].started = true;
        let assign = world.work.assign_value();
        world.work.history.invoke(now, u64::from(client), F::Assign, assign.clone());
        world.work.history.complete(now, u64::from(client), OpType::Ok, F::Assign, assign);
    }
    if world.work.clients[c].idempotent {
        if world.work.clients[c].producer_id.is_none() {
            return start_init_producer_id(world, client);
        }
        if let Some(part) = world.work.clients[c].unsettled.as_ref().map(|u| u.part) {
            if world.work.clients[c].leaders[part].is_none() {
                return start_metadata(world, client);
            }
            return send_unsettled(world, client);
        }
    }
    let part = world.rng_work.random_range(0..world.work.parts.len());
    if world.work.clients[c].leaders[part].is_none() {
        return start_metadata(world, client);
    }
    if world.rng_work.random_range(0..100) < world.work.poll_percent {
        let offset = world.work.clients[c].positions[part];
        start_poll(world, client, part, offset, false);
    } else {
        start_send(world, client, part);
    }
}

fn start_send(world: &mut World, client: u32, part: usize) {
    let w = world.work.acks_weights;
    let pick = world.rng_work.random_range(0..w.iter().sum::<u32>().max(1));
    let acks = if world.work.clients[client as usize].idempotent {
        Acks::All // Kafka requires acks=all with idempotence.
    } else if pick < w[0] {
        Acks::None
    } else if pick < w[0] + w[1] {
        Acks::Leader
    } else {
        Acks::All
    };
    let timestamp = world.unix_ms();
    let p = &mut world.work.parts[part];
    let value = p.next_value;
    p.next_value += 1;
    let mut batch = build::batch(&[&value.to_be_bytes()], timestamp);
    let c = &mut world.work.clients[client as usize];
    if let (true, Some(producer_id), false) = (c.idempotent, c.producer_id, acks == Acks::None) {
        build::stamp_producer(&mut batch, producer_id, 0, c.sequences[part]);
        c.unsettled = Some(Unsettled { part, value, acks, batch: batch.clone(), attempts: 1 });
    }
    let request = Request::Produce { partition: p.id.clone(), acks, batch };
    let node = world.work.clients[client as usize].leaders[part].expect("known before a send");
    if p.recorded {
        let send = Value::Send(send_value(p, value, acks));
        world.work.history.invoke(world.now, u64::from(client), F::Send, send);
    }
    let id = next_id(world, client);
    world.send(
        Endpoint::Client(client),
        Endpoint::Node(node),
        Msg::Request { client, id, request },
    );
    if acks == Acks::None {
        // Fire and forget: nothing will answer.
        let p = &world.work.parts[part];
        if p.recorded {
            let send = Value::Send(send_value(p, value, acks));
            world.work.history.complete(world.now, u64::from(client), OpType::Ok, F::Send, send);
        }
        think(world, client);
        return;
    }
    wait(world, client, id, node, Pending::Send { part, value, acks });
}

fn start_poll(world: &mut World, client: u32, part: usize, offset: u64, is_final: bool) {
    let p = &world.work.parts[part];
    let request = Request::Fetch {
        partition: p.id.clone(),
        offset,
        max_bytes: FETCH_BYTES_MAX,
        leader_epoch: None,
    };
    let node = world.work.clients[client as usize].leaders[part].expect("known before a poll");
    if p.recorded {
        let value =
            if is_final { Value::Poll(Poll { is_final, records: vec![] }) } else { Value::Null };
        world.work.history.invoke(world.now, u64::from(client), F::Poll, value);
    }
    let id = next_id(world, client);
    world.send(
        Endpoint::Client(client),
        Endpoint::Node(node),
        Msg::Request { client, id, request },
    );
    wait(world, client, id, node, Pending::Poll { part, offset, is_final });
}

/// Asks a node picked at random for the cluster's metadata, as a Kafka client does to learn
/// (or refresh) the partitions' leaders.
fn start_metadata(world: &mut World, client: u32) {
    let request = Request::Metadata { topics: None, auto_create: false };
    ask_any_node(world, client, request, Pending::Metadata);
}

/// Asks a node picked at random for a producer id (an idempotent client's first step).
fn start_init_producer_id(world: &mut World, client: u32) {
    let request = Request::InitProducerId { transactional_id: None };
    ask_any_node(world, client, request, Pending::InitProducerId);
}

/// Sends `request` to a node picked at random and waits for its answer as `pending`. A node
/// that let a request time out lately is passed over while another is left (a Kafka client
/// marks such a broker down and asks the others for metadata).
fn ask_any_node(world: &mut World, client: u32, request: Request, pending: Pending) {
    let (now, c) = (world.now, &world.work.clients[client as usize]);
    let up = |node: &u32| c.down_until[*node as usize] <= now;
    let up_count = (0..world.work.nodes).filter(up).count() as u32;
    let node = match up_count {
        0 => world.rng_work.random_range(0..world.work.nodes),
        count => {
            let pick = world.rng_work.random_range(0..count);
            (0..world.work.nodes).filter(up).nth(pick as usize).expect("pick < count")
        }
    };
    let id = next_id(world, client);
    world.send(
        Endpoint::Client(client),
        Endpoint::Node(node),
        Msg::Request { client, id, request },
    );
    wait(world, client, id, node, pending);
}

/// Sends an idempotent client's unsettled batch again, the same bytes, to the partition's
/// leader as the client knows it.
fn send_unsettled(world: &mut World, client: u32) {
    let c = &mut world.work.clients[client as usize];
    let unsettled = c.unsettled.as_mut().expect("an unsettled send");
    unsettled.attempts += 1;
    let (part, value, acks) = (unsettled.part, unsettled.value, unsettled.acks);
    let batch = unsettled.batch.clone();
    let node = c.leaders[part].expect("known before a send");
    let partition = world.work.parts[part].id.clone();
    let request = Request::Produce { partition, acks, batch };
    let id = next_id(world, client);
    world.send(
        Endpoint::Client(client),
        Endpoint::Node(node),
        Msg::Request { client, id, request },
    );
    wait(world, client, id, node, Pending::Send { part, value, acks });
}

/// Whether `client` keeps its send of `value` to `part` unsettled rather than completing it
/// as unknown: an idempotent client does, until the workload stops.
fn keeps_unsettled(world: &World, client: u32, part: usize, value: i64) -> bool {
    let c = &world.work.clients[client as usize];
    let ours = c.unsettled.as_ref().is_some_and(|u| u.part == part && u.value == value);
    ours && !world.work.stopped
}

/// The workload stopped: every unsettled send of a client with nothing in flight completes
/// as unknown (one in flight completes with its answer or timeout).
pub(crate) fn settle_unsettled(world: &mut World) {
    for client in 0..world.work.clients.len() {
        let c = &mut world.work.clients[client];
        if c.pending.is_some() {
            continue;
        }
        if let Some(u) = c.unsettled.take() {
            let pending = Pending::Send { part: u.part, value: u.value, acks: u.acks };
            complete(world, client as u32, &pending, OpType::Info, None);
        }
    }
}

/// A Metadata answer: every partition's leader as the answering node knows it.
fn metadata_answered(world: &mut World, client: u32, response: Response) {
    let Response::Metadata(view) = response else { return };
    let work = &mut world.work;
    for (part, leader) in leaders_named(&view, &work.parts, work.nodes) {
        work.clients[client as usize].leaders[part] = leader;
    }
}

/// Each workload partition a Metadata answer describes, with its leader (a node index) as
/// the answer names it.
pub(crate) fn leaders_named(
    view: &ClusterView,
    parts: &[Part],
    nodes: u32,
) -> Vec<(usize, Option<u32>)> {
    let mut named = Vec::new();
    for topic in &view.topics {
        let Ok(state) = &topic.state else { continue };
        for (part, p) in parts.iter().enumerate() {
            if p.id.topic != topic.name {
                continue;
            }
            let info = usize::try_from(p.id.partition).ok().and_then(|i| state.partitions.get(i));
            let leader = info.and_then(|info| info.leader).map(|node| node.0 - 1);
            named.push((part, leader.filter(|l| *l < nodes)));
        }
    }
    named
}

/// The client forgets `part`'s leader: its next operation on it asks for metadata first.
fn forget_leader(world: &mut World, client: u32, part: usize) {
    world.work.clients[client as usize].leaders[part] = None;
}

fn next_id(world: &mut World, client: u32) -> u64 {
    let c = &mut world.work.clients[client as usize];
    c.next_id += 1;
    c.next_id
}

/// Client `client` waits for the answer to request `id`, sent to node `node`.
fn wait(world: &mut World, client: u32, id: u64, node: u32, pending: Pending) {
    let deadline = world.now + world.work.timeout_ms * MS;
    let c = &mut world.work.clients[client as usize];
    c.pending = Some((id, pending));
    c.asked = node;
    c.deadline = deadline;
    world.arm_client_timeout(client, deadline);
}

/// Client `client`'s pending request and when it times out.
pub(crate) fn pending_deadline(world: &World, client: u32) -> Option<(u64, u64)> {
    let c = &world.work.clients[client as usize];
    c.pending.as_ref().map(|(id, _)| (*id, c.deadline))
}

fn think(world: &mut World, client: u32) {
    if client as usize == world.work.clients.len() - 1 {
        let delay = std::mem::replace(&mut world.work.drain_delay_ms, 1);
        world.schedule(world.now + delay * MS, Event::DrainWake);
        return;
    }
    let delay = world.rng_work.random_range(0..=world.work.think_ms_max * MS);
    world.schedule(world.now + delay, Event::ClientWake { client });
}

/// A request timed out: its outcome is unknown.
pub(crate) fn client_timeout(world: &mut World, client: u32, id: u64) {
    let c = &mut world.work.clients[client as usize];
    if c.pending.as_ref().is_none_or(|(pending_id, _)| *pending_id != id) {
        return;
    }
    let (_, pending) = c.pending.take().expect("checked");
    c.down_until[c.asked as usize] = world.now + NODE_DOWN_NS;
    if crate::trace::enabled() {
        crate::trace::line(world.now, format_args!("client {client}: {pending:?} timed out"));
    }
    match pending {
        // Sent again with the same sequence at the next wake.
        Pending::Send { part, value, .. } if keeps_unsettled(world, client, part, value) => {}
        Pending::Send { .. } => {
            world.work.clients[client as usize].unsettled = None;
            complete(world, client, &pending, OpType::Info, None);
        }
        // A Metadata or InitProducerId: an unsettled send stays so.
        _ => complete(world, client, &pending, OpType::Info, None),
    }
    if let Pending::Send { part, .. } | Pending::Poll { part, .. } = pending {
        forget_leader(world, client, part);
    }
    if client as usize == world.work.clients.len() - 1 {
        world.work.drain_delay_ms = 20;
    }
    think(world, client);
}

/// Records the completion of `pending`; `offset` for an acknowledged send.
fn complete(world: &mut World, client: u32, pending: &Pending, kind: OpType, offset: Option<u64>) {
    let process = u64::from(client);
    match pending {
        Pending::Send { part, value, acks } => {
            let p = &world.work.parts[*part];
            if p.recorded {
                let mut send = send_value(p, *value, *acks);
                if let Some(offset) = offset {
                    send = send.at(offset as i64);
                }
                world.work.history.complete(world.now, process, kind, F::Send, Value::Send(send));
            }
        }
        Pending::Poll { part, .. } => {
            if world.work.parts[*part].recorded {
                world.work.history.complete(world.now, process, kind, F::Poll, Value::Null);
            }
        }
        Pending::Metadata | Pending::InitProducerId => {}
    }
}

/// A message reached a client.
pub(crate) fn client_receive(world: &mut World, client: u32, msg: Msg) {
    let Msg::Reply { id, response } = msg else { return };
    let c = &mut world.work.clients[client as usize];
    if c.pending.as_ref().is_none_or(|(pending_id, _)| *pending_id != id) {
        return;
    }
    let (_, pending) = c.pending.take().expect("checked");
    match pending {
        Pending::Send { part, value, acks } => {
            send_answered(world, client, part, value, acks, response)
        }
        Pending::Poll { part, offset, is_final } => {
            poll_answered(world, client, part, offset, is_final, response)
        }
        Pending::Metadata => metadata_answered(world, client, response),
        Pending::InitProducerId => {
            if let Response::ProducerId { producer_id, .. } = response {
                let c = &mut world.work.clients[client as usize];
                c.producer_id = Some(producer_id);
                c.sequences.iter_mut().for_each(|s| *s = 0);
            }
        }
    }
    think(world, client);
}

fn send_answered(
    world: &mut World,
    client: u32,
    part: usize,
    value: i64,
    acks: Acks,
    response: Response,
) {
    let pending = Pending::Send { part, value, acks };
    match response {
        Response::Produced { base_offset } => {
            world.work.acked_sends += 1;
            let expected_from = world.params.acks_all_expected.map(|(ms, _)| ms * MS);
            if acks == Acks::All && expected_from.is_some_and(|from| world.now >= from) {
                world.work.acks_all_late += 1;
            }
            let checked = world.acks_checked();
            let p = &mut world.work.parts[part];
            // acks=1 promises the leader's copy only: a failover may take it back (KIP-101),
            // so with replicas only acks=all writes must keep their offsets.
            // Under `replicate`, acks=all promises the write survives unless every ISR
            // member loses power together (`World::replicate_losses` then drops it).
            let promised = acks == Acks::All || !crate::world::NODES_REPLICATE;
            // An answer sent before a loss the world excused may arrive after it.
            let in_flight = world.work.timeout_ms * MS;
            let excused = p.loss_excused_at.is_some_and(|at| world.now - at <= in_flight);
            let replicated = crate::world::NODES_REPLICATE && acks == Acks::All && !excused;
            if (World::is_durable(p) || replicated) && promised {
                if checked
                    && let Err(v) =
                        invariants::acked_offset_unique(&p.name, &p.acked, base_offset, value)
                {
                    world.violation.get_or_insert(v);
                }
                p.acked.insert(base_offset, value);
            }
            let c = &mut world.work.clients[client as usize];
            if c.unsettled.take().is_some() {
                c.sequences[part] = c.sequences[part].wrapping_add(1).max(0);
            }
            complete(world, client, &pending, OpType::Ok, Some(base_offset));
        }
        Response::Error(error) => {
            if crate::trace::enabled() {
                let at = format_args!("client {client}: {pending:?} refused: {error:?}");
                crate::trace::line(world.now, at);
            }
            forget_leader(world, client, part);
            let c = &mut world.work.clients[client as usize];
            let first_attempt = c.unsettled.as_ref().is_none_or(|u| u.attempts == 1);
            if let RequestError::Replica(ReplicaError::Producer(_)) = &error {
                // The partition does not take this producer's sequence: start afresh with a
                // new producer id (as a Kafka client resets after such an error).
                c.producer_id = None;
            } else if !(definitely_not_written(&error) && first_attempt)
                && keeps_unsettled(world, client, part, value)
            {
                return; // Sent again with the same sequence at the next wake.
            }
            world.work.clients[client as usize].unsettled = None;
            let definite = definitely_not_written(&error) && first_attempt;
            let kind = if definite { OpType::Fail } else { OpType::Info };
            complete(world, client, &pending, kind, None);
        }
        other => panic!("a produce answered with {other:?}"),
    }
}

/// Whether a produce error proves the batch was never appended.
fn definitely_not_written(error: &RequestError) -> bool {
    match error {
        // Raised before anything is appended.
        RequestError::UnknownPartition(_)
        | RequestError::UnknownTopic(_)
        | RequestError::InvalidTopic(_)
        | RequestError::NotLeader { .. }
        | RequestError::NodeNotReady
        | RequestError::ControllerTimeout
        | RequestError::Controller { .. }
        | RequestError::TransactionsUnsupported => true,
        // NOT_LEADER_OR_FOLLOWER also answers producers whose batch was appended when the
        // leader lost its role, and the rest may follow an append: unknown.
        RequestError::Replica(ReplicaError::Log(error)) | RequestError::Log(error) => matches!(
            error,
            LogError::Recovering
                | LogError::Truncating
                | LogError::InvalidBatch(_)
                | LogError::StaleEpoch { .. }
                | LogError::OffsetOutOfRange { .. }
        ),
        RequestError::Replica(error) => {
            matches!(
                error,
                ReplicaError::NotEnoughReplicas { .. }
                    | ReplicaError::TooManyWaiting
                    | ReplicaError::Producer(_)
            )
        }
        // A coordinator's error never answers a produce.
        RequestError::Coordinator(_) => false,
    }
}

fn poll_answered(
    world: &mut World,
    client: u32,
    part: usize,
    offset: u64,
    is_final: bool,
    response: Response,
) {
    let process = u64::from(client);
    let pending = Pending::Poll { part, offset, is_final };
    match response {
        Response::Fetched { records, high_watermark, .. } => {
            let read = records_read(&records);
            let p = &mut world.work.parts[part];
            p.max_high_watermark = p.max_high_watermark.max(high_watermark);
            let p = &world.work.parts[part];
            let offsets: Vec<u64> = read.iter().map(|(o, _)| *o).collect();
            let mut check = invariants::fetch_in_range(&p.name, offset, &offsets, high_watermark);
            for (o, v) in &read {
                if world.acks_checked() {
                    check = check
                        .and_then(|()| invariants::fetch_matches_acked(&p.name, &p.acked, *o, *v));
                }
            }
            if let Err(v) = check {
                world.violation.get_or_insert(v);
            }
            if let Some((last, _)) = read.last() {
                world.work.clients[client as usize].positions[part] = last + 1;
            }
            world.coverage.records_read += read.len() as u64;
            if p.recorded {
                let topic = p.id.topic.to_string();
                let records = read
                    .iter()
                    .map(|(o, v)| Record::new(topic.clone(), p.id.partition, *o as i64, *v))
                    .collect();
                let value = Value::Poll(Poll { is_final, records });
                world.work.history.complete(world.now, process, OpType::Ok, F::Poll, value);
            }
            if client as usize == world.work.clients.len() - 1 {
                let position = world.work.clients[client as usize].positions[part];
                // A new leader's HW may lag what earlier answers reported until its
                // followers fetch again, and stays put while the ISR is below
                // min.insync.replicas: the drain waits for it to cover what was told and
                // every acknowledged write under the recoverable atlas (the unrecoverable one
                // may destroy what the HW covered).
                let p = &world.work.parts[part];
                let acked_end = p.acked.last_key_value().map_or(0, |(offset, _)| offset + 1);
                let lagging = high_watermark < p.max_high_watermark.max(acked_end)
                    && world.params.atlas == crate::params::Atlas::Recoverable;
                if read.is_empty() && position >= high_watermark && !lagging {
                    world.work.drain = Some((part + 1, 0));
                } else if read.is_empty() {
                    world.work.drain_delay_ms = 20;
                }
            }
        }
        Response::Error(error) if let Some(position) = reset_position(&error, offset) => {
            complete(world, client, &pending, OpType::Fail, None);
            // Retention moved the start, or a crash took back an unflushed tail: reset the
            // position as a consumer's auto.offset.reset does, and say so in the history.
            world.work.clients[client as usize].positions[part] = position;
            if world.work.parts[part].recorded {
                let assign = world.work.assign_value();
                world.work.history.invoke(world.now, process, F::Assign, assign.clone());
                world.work.history.complete(world.now, process, OpType::Ok, F::Assign, assign);
            }
        }
        Response::Error(error) => {
            complete(world, client, &pending, OpType::Fail, None);
            forget_leader(world, client, part);
            if client as usize == world.work.clients.len() - 1 {
                world.work.drain_delay_ms = 20;
            }
            let log = match &error {
                RequestError::Log(error) | RequestError::Replica(ReplicaError::Log(error)) => {
                    Some(error)
                }
                _ => None,
            };
            let corrupt = matches!(log, Some(LogError::Corrupt { .. }));
            if corrupt {
                world.coverage.corrupt_reads += 1;
            }
            let last = world.work.clients.len() - 1;
            // A lone replica whose log failed serves nothing until it recovers, which a
            // damaged disk may never let it do: the same storage error as a failed read.
            let suspended =
                matches!(error, RequestError::Replica(ReplicaError::LeadershipSuspended { .. }));
            let damaged = corrupt || suspended || matches!(log, Some(LogError::Storage { .. }));
            let unrecoverable = world.params.atlas == crate::params::Atlas::Unrecoverable;
            if damaged && unrecoverable && client as usize == last {
                // Detect and stop: the damage is reported, never served; the drain moves on.
                world.work.drain = Some((part + 1, 0));
            }
        }
        other => panic!("a fetch answered with {other:?}"),
    }
}

/// The records of a fetch answer: each offset with its client's 8-byte value.
pub(crate) fn records_read(records: &[u8]) -> Vec<(u64, i64)> {
    let mut read = Vec::with_capacity(FETCH_BYTES_MAX as usize / CLIENT_BATCH_BYTES);
    for (position, header) in BatchScan::new(records, usize::MAX >> 1) {
        let end = position + header.total_bytes();
        let mut offset = header.base_offset as u64;
        build::for_each_value(&records[position..end], |bytes| {
            let value = i64::from_be_bytes(bytes[..8].try_into().expect("8-byte values"));
            read.push((offset, value));
            offset += 1;
        });
    }
    read
}

/// Where a consumer whose fetch at `offset` was out of range goes on, as Kafka's
/// `auto.offset.reset` does: to the log start if it was below it, else to the log end.
/// `None` for any other error.
pub(crate) fn reset_position(error: &RequestError, offset: u64) -> Option<u64> {
    let (RequestError::Log(LogError::OffsetOutOfRange {
        log_start_offset, log_end_offset, ..
    })
    | RequestError::Replica(ReplicaError::Log(LogError::OffsetOutOfRange {
        log_start_offset,
        log_end_offset,
        ..
    }))) = error
    else {
        return None;
    };
    Some(if offset < *log_start_offset { *log_start_offset } else { *log_end_offset })
}

/// The drainer's turn: poll the partition it is at, or finish.
pub(crate) fn drain_wake(world: &mut World) {
    let drainer = (world.work.clients.len() - 1) as u32;
    if world.work.clients[drainer as usize].pending.is_some() || world.work.drain_done {
        return;
    }
    let (mut part, _) = world.work.drain.unwrap_or((0, 0));
    if world.work.drain.is_none() && world.work.clients.iter().any(|c| c.pending.is_some()) {
        // The drain reads what every acknowledged send wrote: it waits for the last answers
        // (or timeouts) of the clients.
        world.schedule(world.now + 50 * MS, Event::DrainWake);
        return;
    }
    if world.work.drain.is_none() {
        let assign = world.work.assign_value();
        let process = u64::from(drainer);
        world.work.history.invoke(world.now, process, F::Assign, assign.clone());
        world.work.history.complete(world.now, process, OpType::Ok, F::Assign, assign);
        world.work.drain = Some((0, 0));
    }
    // Partitions of a node that stopped serving (a detected loss under the unrecoverable
    // atlas; the checks count it) cannot be drained, nor can partitions whose every in-sync
    // copy was wiped (the controller left their ISR empty), nor partitions without a leader
    // once the controller quorum lost its log, nor those of a topic that could not be
    // created before too many nodes stopped serving: what they acknowledged is a loss the
    // run expected.
    let failed = |world: &mut World, part: usize| {
        if world.partition_lost(part) || world.topic_uncreatable(part) {
            world.losses_excused = true;
            world.coverage.partitions_lost += 1;
            return true;
        }
        let leader = world.work.clients[drainer as usize].leaders[part];
        if leader.is_none() && world.quorum_failed() {
            world.losses_excused = true;
            return true;
        }
        leader.is_some_and(|node| world.node_failed(node))
    };
    while part < world.work.parts.len() && (!world.work.parts[part].recorded || failed(world, part))
    {
        part += 1;
    }
    if part >= world.work.parts.len() {
        world.work.drain_done = true;
        world.done = true;
        return;
    }
    world.work.drain = Some((part, 0));
    if world.work.clients[drainer as usize].leaders[part].is_none() {
        return start_metadata(world, drainer);
    }
    let offset = world.work.clients[drainer as usize].positions[part];
    start_poll(world, drainer, part, offset, true);
}

/// What is still pending, for a liveness violation.
pub(crate) fn pending_description(world: &World) -> String {
    let (part, _) = world.work.drain.unwrap_or((0, 0));
    let Some(p) = world.work.parts.get(part) else {
        return "the final drain did not finish".into();
    };
    let drainer = &world.work.clients[world.work.clients.len() - 1];
    format!(
        "the final drain did not finish (at partition {}: position {}, highest HW told {}, \
         leader known {:?}; replicas{})",
        p.name,
        drainer.positions[part],
        p.max_high_watermark,
        drainer.leaders[part].map(|l| l + 1),
        world.describe_replicas(part)
    )
}
