//! Synthetic histories for tests and benchmarks: a correct in-memory Kafka (one log per
//! partition, one linearizable register per committed offset) driven by concurrent clients
//! whose operations time out, fail and crash, and the faults to inject into such a history.
//!
//! A history generated here is valid by construction: each operation takes effect at one
//! instant between its invocation and its completion, a failed operation never takes
//! effect, and a timed-out one may or may not. [`inject`] then breaks exactly one promise
//! and says which anomaly must be found.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::history::{
    Acks, F, GroupOffset, History, Op, OpType, Poll, Process, Record, Send, TopicPartition, Value,
};
use crate::report::AnomalyKind;

/// The topic every synthetic client uses.
pub const TOPIC: &str = "t";
/// The consumer group every synthetic client commits for.
pub const GROUP: &str = "g";

/// Relative weights of the operations clients invoke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix {
    /// Weight of `send`.
    pub send: u32,
    /// Weight of `poll`.
    pub poll: u32,
    /// Weight of `assign`.
    pub assign: u32,
    /// Weight of `subscribe`.
    pub subscribe: u32,
    /// Weight of `commit`.
    pub commit: u32,
    /// Weight of `committed`.
    pub committed: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Mix { send: 40, poll: 35, assign: 5, subscribe: 2, commit: 9, committed: 9 }
    }
}

/// The shape of a synthetic history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    /// Seed of every random choice.
    pub seed: u64,
    /// Concurrent client processes.
    pub processes: u32,
    /// Partitions of topic [`TOPIC`].
    pub partitions: u32,
    /// Operations invoked before the final drain.
    pub invocations: usize,
    /// Which operations.
    pub mix: Mix,
    /// Per mille of operations that time out (`info`), before or after taking effect.
    pub timeout_per_mille: u32,
    /// Per mille of sends and commits that fail without taking effect.
    pub fail_per_mille: u32,
    /// Per mille of client steps at which the client crashes, open operation or not.
    pub crash_per_mille: u32,
    /// Per mille of sends with `acks=1`, and as many again with `acks=0`.
    pub acks_weak_per_mille: u32,
    /// Records one poll returns per partition at most.
    pub poll_records_max: u32,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            seed: 0,
            processes: 5,
            partitions: 3,
            invocations: 200,
            mix: Mix::default(),
            timeout_per_mille: 30,
            fail_per_mille: 30,
            crash_per_mille: 5,
            acks_weak_per_mille: 50,
            poll_records_max: 4,
        }
    }
}

/// The correct system: one log per partition, one committed offset per partition.
struct Model {
    logs: Vec<Vec<i64>>,
    committed: Vec<Option<i64>>,
}

/// An operation between its invocation and its completion.
struct Pending {
    f: F,
    invoke: Value,
    /// The completion value once the operation took effect.
    result: Option<Value>,
}

#[derive(Default)]
struct Client {
    pending: Option<Pending>,
    /// (partition, next offset to read).
    assignment: Vec<(u32, i64)>,
}

struct Generator<'a> {
    workload: &'a Workload,
    rng: ChaCha8Rng,
    model: Model,
    clients: Vec<Client>,
    history: History,
    time: u64,
    value_next: i64,
}

/// Generates a valid history for `workload`, ending with a final drain by a fresh process
/// that reads every partition from offset 0 to its end.
///
/// # Panics
/// If the workload has no process or no partition.
pub fn generate(workload: &Workload) -> History {
    assert!(workload.processes > 0, "a workload needs a process");
    assert!(workload.partitions > 0, "a workload needs a partition");
    let partitions = workload.partitions as usize;
    let mut generator = Generator {
        workload,
        rng: ChaCha8Rng::seed_from_u64(workload.seed),
        model: Model { logs: vec![Vec::new(); partitions], committed: vec![None; partitions] },
        clients: (0..workload.processes).map(|_| Client::default()).collect(),
        history: History::new(),
        time: 0,
        value_next: 0,
    };
    generator.run();
    generator.drain();
    generator.history
}

impl Generator<'_> {
    fn per_mille(&mut self, n: u32) -> bool {
        self.rng.random_range(0..1000) < n
    }

    fn tick(&mut self) -> u64 {
        self.time += self.rng.random_range(1..1_000);
        self.time
    }

    fn run(&mut self) {
        let mut invoked = 0;
        loop {
            let all_idle = self.clients.iter().all(|c| c.pending.is_none());
            if invoked >= self.workload.invocations && all_idle {
                return;
            }
            let process = Process::from(self.rng.random_range(0..self.workload.processes));
            if self.per_mille(self.workload.crash_per_mille) {
                self.crash(process);
                continue;
            }
            let client = &self.clients[process as usize];
            match &client.pending {
                None if invoked < self.workload.invocations => {
                    self.invoke(process);
                    invoked += 1;
                }
                None => {}
                Some(pending) if pending.result.is_none() => self.advance(process),
                Some(_) => self.complete(process),
            }
        }
    }

    fn crash(&mut self, process: Process) {
        let time = self.tick();
        if self.rng.random_range(0..2) == 0 {
            self.history.push(time, process, OpType::Info, F::Crash, Value::Null);
        } else {
            self.history.invoke(time, process, F::Crash, Value::Null);
            let time = self.tick();
            self.history.complete(time, process, OpType::Ok, F::Crash, Value::Null);
        }
        self.clients[process as usize] = Client::default();
    }

    fn choose_f(&mut self) -> F {
        let mix = &self.workload.mix;
        let weights = [
            (F::Send, mix.send),
            (F::Poll, mix.poll),
            (F::Assign, mix.assign),
            (F::Subscribe, mix.subscribe),
            (F::Commit, mix.commit),
            (F::Committed, mix.committed),
        ];
        let total: u32 = weights.iter().map(|(_, w)| w).sum();
        assert!(total > 0, "the mix needs a weight");
        let mut roll = self.rng.random_range(0..total);
        for (f, weight) in weights {
            if roll < weight {
                return f;
            }
            roll -= weight;
        }
        unreachable!("roll < total")
    }

    fn invoke(&mut self, process: Process) {
        let f = self.choose_f();
        let partitions = self.workload.partitions;
        let value = match f {
            F::Send => {
                let partition = self.rng.random_range(0..partitions) as i32;
                let mut send = Send::new(TOPIC, partition, self.value_next);
                self.value_next += 1;
                let weak = self.workload.acks_weak_per_mille;
                let roll = self.rng.random_range(0..1000);
                send.acks = if roll < weak {
                    Some(Acks::Leader)
                } else if roll < 2 * weak {
                    Some(Acks::Zero)
                } else if roll < 500 {
                    Some(Acks::All)
                } else {
                    None
                };
                Value::Send(send)
            }
            F::Poll => Value::Null,
            F::Assign => {
                let mut chosen: Vec<TopicPartition> = (0..partitions as i32)
                    .filter(|_| self.rng.random_range(0..2) == 0)
                    .map(|partition| TopicPartition { topic: TOPIC.into(), partition })
                    .collect();
                if chosen.is_empty() {
                    let partition = self.rng.random_range(0..partitions) as i32;
                    chosen.push(TopicPartition { topic: TOPIC.into(), partition });
                }
                Value::Partitions(chosen)
            }
            F::Subscribe => Value::Topics(vec![TOPIC.into()]),
            F::Commit => Value::Offsets(self.commit_entries(process)),
            F::Committed => {
                let count = self.rng.random_range(1..=partitions.min(3));
                let first = self.rng.random_range(0..partitions);
                let keys = (0..count).map(|i| {
                    let partition = ((first + i) % partitions) as i32;
                    GroupOffset::new(GROUP, TOPIC, partition, None)
                });
                Value::Offsets(keys.collect())
            }
            F::Crash => unreachable!("crashes are not in the mix"),
        };
        let time = self.tick();
        self.history.invoke(time, process, f, value.clone());
        self.clients[process as usize].pending = Some(Pending { f, invoke: value, result: None });
    }

    fn commit_entries(&mut self, process: Process) -> Vec<GroupOffset> {
        let assignment = &self.clients[process as usize].assignment;
        if !assignment.is_empty() {
            return assignment
                .iter()
                .map(|&(partition, position)| {
                    GroupOffset::new(GROUP, TOPIC, partition as i32, Some(position))
                })
                .collect();
        }
        // A client with no assignment commits some offset near the end of the log.
        let partition = self.rng.random_range(0..self.workload.partitions);
        let end = self.model.logs[partition as usize].len() as i64;
        let offset = self.rng.random_range(0..=end + 100);
        vec![GroupOffset::new(GROUP, TOPIC, partition as i32, Some(offset))]
    }

    /// The open operation either ends without taking effect (a failure or a timeout) or
    /// takes effect now.
    fn advance(&mut self, process: Process) {
        let pending = self.clients[process as usize].pending.as_ref().expect("open");
        let may_fail = matches!(pending.f, F::Send | F::Commit);
        let f = pending.f;
        let invoke = pending.invoke.clone();
        if self.per_mille(self.workload.timeout_per_mille) {
            return self.finish(process, OpType::Info, invoke);
        }
        if may_fail && self.per_mille(self.workload.fail_per_mille) {
            return self.finish(process, OpType::Fail, invoke);
        }
        let result = self.apply(process, f, &invoke);
        let pending = self.clients[process as usize].pending.as_mut().expect("open");
        pending.result = Some(result);
    }

    /// The operation took effect; it completes `ok`, or `info` if the answer is lost.
    fn complete(&mut self, process: Process) {
        let pending = self.clients[process as usize].pending.as_ref().expect("open");
        let result = pending.result.clone().expect("applied");
        let invoke = pending.invoke.clone();
        if self.per_mille(self.workload.timeout_per_mille) {
            self.finish(process, OpType::Info, invoke);
        } else {
            self.finish(process, OpType::Ok, result);
        }
    }

    fn finish(&mut self, process: Process, kind: OpType, value: Value) {
        let pending = self.clients[process as usize].pending.take().expect("open");
        let time = self.tick();
        self.history.complete(time, process, kind, pending.f, value);
    }

    /// Applies an operation to the model at this instant and returns its `ok` value.
    fn apply(&mut self, process: Process, f: F, invoke: &Value) -> Value {
        match (f, invoke) {
            (F::Send, Value::Send(send)) => {
                let log = &mut self.model.logs[send.partition as usize];
                log.push(send.value);
                let mut acknowledged = send.clone();
                if send.acks() != Acks::Zero {
                    acknowledged.offset = Some(log.len() as i64 - 1);
                }
                Value::Send(acknowledged)
            }
            (F::Poll, _) => {
                let count_max = self.workload.poll_records_max;
                let records = self.read(process, |rng| rng.random_range(0..=count_max));
                Value::Poll(Poll { is_final: false, records })
            }
            (F::Assign, Value::Partitions(partitions)) => {
                let chosen = partitions.iter().map(|tp| tp.partition as u32).collect();
                self.start_consuming(process, chosen);
                Value::Partitions(partitions.clone())
            }
            (F::Subscribe, _) => {
                self.start_consuming(process, (0..self.workload.partitions).collect());
                invoke.clone()
            }
            (F::Commit, Value::Offsets(entries)) => {
                for entry in entries {
                    self.model.committed[entry.partition as usize] = entry.offset;
                }
                invoke.clone()
            }
            (F::Committed, Value::Offsets(keys)) => {
                let read = keys.iter().map(|key| {
                    let offset = self.model.committed[key.partition as usize];
                    GroupOffset { offset, ..key.clone() }
                });
                Value::Offsets(read.collect())
            }
            _ => unreachable!("invocations are built by invoke()"),
        }
    }

    /// The consumer starts at the committed offset, or at the beginning.
    fn start_consuming(&mut self, process: Process, partitions: Vec<u32>) {
        let assignment = partitions
            .into_iter()
            .map(|partition| {
                let committed = self.model.committed[partition as usize];
                let from_committed = self.rng.random_range(0..2) == 0;
                (partition, committed.filter(|_| from_committed).unwrap_or(0))
            })
            .collect();
        self.clients[process as usize].assignment = assignment;
    }

    /// Reads, from each assigned partition, as many records as `count` says (fewer at the
    /// end of the log).
    fn read(&mut self, process: Process, count: impl Fn(&mut ChaCha8Rng) -> u32) -> Vec<Record> {
        let mut records = Vec::new();
        let client = &mut self.clients[process as usize];
        for (partition, position) in &mut client.assignment {
            let log = &self.model.logs[*partition as usize];
            let count = count(&mut self.rng) as usize;
            let start = (*position as usize).min(log.len());
            let end = (start + count).min(log.len());
            for (i, &value) in log[start..end].iter().enumerate() {
                let offset = (start + i) as i64;
                records.push(Record::new(TOPIC, *partition as i32, offset, value));
            }
            *position = end as i64;
        }
        records
    }

    /// A fresh process assigns every partition from offset 0 and polls to the end.
    fn drain(&mut self) {
        let process = Process::from(self.workload.processes);
        self.clients.push(Client::default());
        let all: Vec<TopicPartition> = (0..self.workload.partitions as i32)
            .map(|partition| TopicPartition { topic: TOPIC.into(), partition })
            .collect();
        let time = self.tick();
        self.history.invoke(time, process, F::Assign, Value::Partitions(all.clone()));
        let time = self.tick();
        self.history.complete(time, process, OpType::Ok, F::Assign, Value::Partitions(all));
        self.clients[process as usize].assignment =
            (0..self.workload.partitions).map(|p| (p, 0)).collect();
        loop {
            let final_poll = Value::Poll(Poll { is_final: true, records: Vec::new() });
            let time = self.tick();
            self.history.invoke(time, process, F::Poll, final_poll);
            let count = self.workload.poll_records_max.max(1) * 4;
            let records = self.read(process, |_| count);
            let done = records.is_empty();
            let time = self.tick();
            let value = Value::Poll(Poll { is_final: false, records });
            self.history.complete(time, process, OpType::Ok, F::Poll, value);
            if done {
                return;
            }
        }
    }
}

/// A history of `operations` commits and committed reads by `clients` concurrent clients
/// over `keys` partitions of one group, against a linearizable register per key; for the
/// linearizability benchmark. One operation in a hundred times out.
pub fn registers(seed: u64, clients: u32, keys: u32, operations: usize) -> History {
    let workload = Workload {
        seed,
        processes: clients,
        partitions: keys,
        invocations: operations,
        mix: Mix { send: 0, poll: 0, assign: 0, subscribe: 0, commit: 1, committed: 1 },
        timeout_per_mille: 5,
        fail_per_mille: 5,
        crash_per_mille: 0,
        acks_weak_per_mille: 0,
        poll_records_max: 0,
    };
    let mut history = generate(&workload);
    // Drop the final drain: this history is about registers only.
    let drain_process = Process::from(clients);
    history.ops_mut().retain(|op| op.process != drain_process);
    history
}

/// A fault to inject into a valid history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// An acknowledged `acks=all` value below the highest offset read is read by no poll.
    DropAcknowledged,
    /// A value read is read again at a second, new offset.
    Duplicate,
    /// One poll reports two of its records at each other's offsets.
    SwapOffsets,
    /// Two `acks=all` sends, the first completed before the second was invoked, trade
    /// offsets (the log holds their values the other way round).
    RealtimeReorder,
}

impl Fault {
    /// Every fault.
    pub const ALL: [Fault; 4] =
        [Fault::DropAcknowledged, Fault::Duplicate, Fault::SwapOffsets, Fault::RealtimeReorder];

    /// The anomaly the checker must report for this fault.
    pub fn expected(self) -> AnomalyKind {
        match self {
            Fault::DropAcknowledged => AnomalyKind::LostWrite,
            Fault::Duplicate => AnomalyKind::Duplicate,
            Fault::SwapOffsets => AnomalyKind::InconsistentOffsets,
            Fault::RealtimeReorder => AnomalyKind::RealtimeOrder,
        }
    }
}

/// Injects `fault` into `history`, choosing where with `seed`. Returns the anomaly the
/// checker must now report, or `None` if the history offers no place for this fault.
pub fn inject(history: &mut History, fault: Fault, seed: u64) -> Option<AnomalyKind> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let injected = match fault {
        Fault::DropAcknowledged => drop_acknowledged(history.ops_mut(), &mut rng),
        Fault::Duplicate => duplicate(history.ops_mut(), &mut rng),
        Fault::SwapOffsets => swap_offsets(history.ops_mut(), &mut rng),
        Fault::RealtimeReorder => realtime_reorder(history.ops_mut(), &mut rng),
    };
    injected.then_some(fault.expected())
}

fn records_mut(op: &mut Op) -> Option<&mut Vec<Record>> {
    match (&op.kind, &mut op.value) {
        (OpType::Ok, Value::Poll(poll)) => Some(&mut poll.records),
        _ => None,
    }
}

/// Acknowledged `acks=all` sends: (op position, partition, value, offset).
fn acknowledged(ops: &[Op]) -> Vec<(usize, i32, i64, i64)> {
    ops.iter()
        .enumerate()
        .filter_map(|(i, op)| match (&op.kind, &op.value) {
            (OpType::Ok, Value::Send(send)) if send.acks() == Acks::All => {
                Some((i, send.partition, send.value, send.offset?))
            }
            _ => None,
        })
        .collect()
}

fn read_max(ops: &[Op], partition: i32) -> Option<i64> {
    let records = ops.iter().filter_map(|op| match (&op.kind, &op.value) {
        (OpType::Ok, Value::Poll(poll)) => Some(&poll.records),
        _ => None,
    });
    records.flatten().filter(|r| r.partition == partition).map(|r| r.offset).max()
}

fn drop_acknowledged(ops: &mut [Op], rng: &mut ChaCha8Rng) -> bool {
    let candidates: Vec<_> = acknowledged(ops)
        .into_iter()
        .filter(|&(_, partition, _, offset)| read_max(ops, partition) > Some(offset))
        .collect();
    if candidates.is_empty() {
        return false;
    }
    let (_, partition, value, _) = candidates[rng.random_range(0..candidates.len())];
    for op in ops.iter_mut() {
        if let Some(records) = records_mut(op) {
            records.retain(|r| !(r.partition == partition && r.value == value));
        }
    }
    true
}

fn duplicate(ops: &mut [Op], rng: &mut ChaCha8Rng) -> bool {
    // The last poll that read some partition's highest offset: append a record right after
    // it, one offset further, holding an older value of that partition.
    let Some(position) = ops.iter().rposition(
        |op| matches!((&op.kind, &op.value), (OpType::Ok, Value::Poll(p)) if !p.records.is_empty()),
    ) else {
        return false;
    };
    let records = records_mut(&mut ops[position]).expect("a poll");
    let last = records[rng.random_range(0..records.len())].clone();
    let Some(end) =
        records.iter().filter(|r| r.partition == last.partition).map(|r| r.offset).max()
    else {
        return false;
    };
    let older = records.iter().find(|r| r.partition == last.partition).expect("one").clone();
    let at = records.iter().rposition(|r| r.partition == last.partition).expect("one");
    records.insert(at + 1, Record { offset: end + 1, ..older });
    true
}

fn swap_offsets(ops: &mut [Op], rng: &mut ChaCha8Rng) -> bool {
    // A poll that is not the last to read its records, so another poll reads them at their
    // true offsets.
    let candidates: Vec<usize> = (0..ops.len())
        .filter(|&i| {
            let Some(records) = (match (&ops[i].kind, &ops[i].value) {
                (OpType::Ok, Value::Poll(poll)) => Some(&poll.records),
                _ => None,
            }) else {
                return false;
            };
            let later_reads = |r: &Record| {
                ops[i + 1..].iter().any(|op| match (&op.kind, &op.value) {
                    (OpType::Ok, Value::Poll(p)) => p.records.contains(r),
                    _ => false,
                })
            };
            records.windows(2).any(|w| w[0].partition == w[1].partition)
                && records.iter().all(later_reads)
        })
        .collect();
    if candidates.is_empty() {
        return false;
    }
    let position = candidates[rng.random_range(0..candidates.len())];
    let records = records_mut(&mut ops[position]).expect("a poll");
    let pairs: Vec<usize> = (0..records.len() - 1)
        .filter(|&i| records[i].partition == records[i + 1].partition)
        .collect();
    let i = pairs[rng.random_range(0..pairs.len())];
    let (first, second) = (records[i].offset, records[i + 1].offset);
    records[i].offset = second;
    records[i + 1].offset = first;
    true
}

fn realtime_reorder(ops: &mut [Op], rng: &mut ChaCha8Rng) -> bool {
    let sends = acknowledged(ops);
    // The line each send was invoked at: the process's last invocation before it.
    let invoked_at: Vec<Option<usize>> = sends
        .iter()
        .map(|&(complete, ..)| {
            let process = ops[complete].process;
            ops[..complete]
                .iter()
                .rposition(|op| op.process == process && op.kind == OpType::Invoke)
        })
        .collect();
    let mut pairs = Vec::new();
    for &(a, partition, value_a, offset_a) in &sends {
        for (&(b, partition_b, value_b, offset_b), &invoked) in sends.iter().zip(&invoked_at) {
            if partition == partition_b && invoked.is_some_and(|invoke| invoke > a) {
                pairs.push((a, b, partition, (value_a, offset_a), (value_b, offset_b)));
            }
        }
    }
    if pairs.is_empty() {
        return false;
    }
    let (a, b, partition, (value_a, offset_a), (value_b, offset_b)) =
        pairs[rng.random_range(0..pairs.len())];
    for (position, offset) in [(a, offset_b), (b, offset_a)] {
        if let Value::Send(send) = &mut ops[position].value {
            send.offset = Some(offset);
        }
    }
    for op in ops.iter_mut() {
        for record in records_mut(op).into_iter().flatten() {
            if record.partition == partition && record.offset == offset_a {
                record.value = value_b;
            } else if record.partition == partition && record.offset == offset_b {
                record.value = value_a;
            }
        }
    }
    true
}
