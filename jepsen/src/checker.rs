//! The checker: pairs invocations with completions and hands each operation to the Kafka
//! checks and to the register histories, then runs the final analyses.
//!
//! [`Checker`] is fed one operation at a time ([`Checker::handle_op`]) and keeps no
//! operation once it has been handled, only what the checks need; [`Checker::finish`] runs
//! the analyses that need the whole history and returns the [`Report`]. The rules a history
//! must keep (indexes strictly increase, one open operation per process, completions match
//! their invocations) are checked here; breaking one is an [`OpError`].

use std::io::BufRead;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::codec::{HistoryReader, ReadError};
use crate::fast_hash::FastMap;
use crate::found::Found;
use crate::history::{Acks, F, GroupOffset, Op, OpType, Process, Value};
use crate::kafka::{Kafka, PendingSend};
use crate::limits::{ANOMALIES_PER_KIND_MAX_DEFAULT, TIME_LIMIT_SECONDS_DEFAULT};
use crate::linear::{Budget, Registers};
use crate::report::{OpRef, Report, Validity};

/// How to check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Wall-clock limit of the linearizability search (the Kafka checks are scans and
    /// always finish). `None`: no limit. When it runs out the verdict is unknown.
    pub time_limit: Option<Duration>,
    /// Limit on linearizability search steps over all keys: a deterministic budget, for
    /// the simulator, whose verdicts must not depend on the machine's speed.
    pub search_steps_max: Option<u64>,
    /// Anomalies of one kind kept in the report; all are counted.
    pub anomalies_per_kind_max: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            time_limit: Some(Duration::from_secs(TIME_LIMIT_SECONDS_DEFAULT)),
            search_steps_max: None,
            anomalies_per_kind_max: ANOMALIES_PER_KIND_MAX_DEFAULT,
        }
    }
}

/// An operation that breaks the rules of the history format.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum OpError {
    /// Indexes must strictly increase.
    #[error("index {index} does not follow index {previous}: indexes must strictly increase")]
    IndexNotIncreasing {
        /// This operation's index.
        index: u64,
        /// The previous operation's index.
        previous: u64,
    },
    /// A completion with no open invocation of that process.
    #[error("process {process} completed a {f} ({kind:?}) that it never invoked")]
    CompletionWithoutInvoke {
        /// The process.
        process: Process,
        /// The function completed.
        f: F,
        /// The completion's type.
        kind: OpType,
    },
    /// A completion of another function than the process's open invocation.
    #[error(
        "process {process} completed a {f}, but the operation it has open is a {open_f} \
         (index {open_index})"
    )]
    CompletionMismatch {
        /// The process.
        process: Process,
        /// The function completed.
        f: F,
        /// The function of the open invocation.
        open_f: F,
        /// The open invocation's index.
        open_index: u64,
    },
    /// An invocation while the process still has one open: a process runs one operation
    /// at a time.
    #[error(
        "process {process} invoked a {f} while its {open_f} (index {open_index}) is still \
         open; a process runs one operation at a time"
    )]
    InvokeWhileOpen {
        /// The process.
        process: Process,
        /// The function invoked.
        f: F,
        /// The function of the open invocation.
        open_f: F,
        /// The open invocation's index.
        open_index: u64,
    },
    /// The value does not have the shape this function and type need.
    #[error("a {f} {kind:?} needs {expected} as its value")]
    WrongValue {
        /// The function.
        f: F,
        /// The type.
        kind: OpType,
        /// What the value must be.
        expected: &'static str,
    },
    /// A send completed with another record than it was invoked with.
    #[error("process {process} completed a send of {completed}, but invoked it with {invoked}")]
    SendMismatch {
        /// The process.
        process: Process,
        /// The record invoked, as `topic/partition value`.
        invoked: String,
        /// The record completed.
        completed: String,
    },
    /// An `ok` send with `acks` 1 or all must say at which offset its record went.
    #[error("process {process} has an ok send without an offset (only acks=0 sends may omit it)")]
    SendOkWithoutOffset {
        /// The process.
        process: Process,
    },
    /// Every entry of a commit needs the offset it commits.
    #[error("a commit of group {group:?} {topic}/{partition} has no offset")]
    CommitWithoutOffset {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
}

/// Why a history could not be checked.
#[derive(Debug, Error)]
pub enum CheckError {
    /// A line could not be read or parsed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A line parsed but breaks the rules of the format.
    #[error("line {line}: {source}")]
    Op {
        /// The 1-based line number (the operation's position for in-memory histories).
        line: u64,
        /// What is wrong.
        #[source]
        source: OpError,
    },
}

impl CheckError {
    /// The 1-based line of the problem.
    pub fn line(&self) -> u64 {
        match self {
            CheckError::Read(error) => error.line(),
            CheckError::Op { line, .. } => *line,
        }
    }
}

/// An invocation waiting for its completion.
struct Open {
    f: F,
    invoke: u64,
    detail: OpenDetail,
}

enum OpenDetail {
    Send(PendingSend),
    Poll { is_final: bool },
    Commit(Vec<GroupOffset>),
    Other,
}

/// Checks a history one operation at a time.
///
/// Its methods, in the order a driver calls them:
/// - input: [`Checker::handle_op`] for each operation, in history order; it checks the
///   history's rules and runs the streaming checks;
/// - getter: [`Checker::ops`], the operations handled so far;
/// - output: [`Checker::finish`], once, which closes the operations still open as `info`,
///   runs the final scans and the linearizability search, and returns the [`Report`].
///
/// Memory grows with the distinct values, offsets and register operations of the history,
/// never with the number of lines or reads.
pub struct Checker {
    options: Options,
    ops: u64,
    index_last: Option<u64>,
    open: FastMap<Process, Open>,
    kafka: Kafka,
    registers: Registers,
    found: Found,
    crashes: u64,
}

impl Checker {
    /// A checker with `options`.
    pub fn new(options: Options) -> Self {
        let found = Found::new(options.anomalies_per_kind_max);
        Checker {
            options,
            ops: 0,
            index_last: None,
            open: FastMap::default(),
            kafka: Kafka::default(),
            registers: Registers::default(),
            found,
            crashes: 0,
        }
    }

    /// Operations handled so far.
    pub fn ops(&self) -> u64 {
        self.ops
    }

    /// Takes the next operation of the history. On error the checker is unchanged by this
    /// operation, but the history cannot be trusted: stop.
    pub fn handle_op(&mut self, op: &Op) -> Result<(), OpError> {
        if let Some(previous) = self.index_last.filter(|&previous| op.index <= previous) {
            return Err(OpError::IndexNotIncreasing { index: op.index, previous });
        }
        if op.f == F::Crash {
            self.handle_crash(op);
        } else if op.kind == OpType::Invoke {
            self.handle_invoke(op)?;
        } else {
            self.handle_completion(op)?;
        }
        self.index_last = Some(op.index);
        self.ops += 1;
        Ok(())
    }

    /// A crash line, of any type, is an instant: whatever the process had open ends with
    /// an unknown outcome, and its consumer starts afresh. An `invoke` and its completion
    /// count as one crash.
    fn handle_crash(&mut self, op: &Op) {
        match self.open.remove(&op.process) {
            Some(open) if open.f == F::Crash => {}
            Some(open) => {
                self.close_unknown(op.process, open);
                self.crashes += 1;
            }
            None => self.crashes += 1,
        }
        if op.kind == OpType::Invoke {
            self.open.insert(
                op.process,
                Open { f: F::Crash, invoke: op.index, detail: OpenDetail::Other },
            );
        }
        self.kafka.handle_consumer_reset(op.process);
    }

    fn handle_invoke(&mut self, op: &Op) -> Result<(), OpError> {
        match self.open.get(&op.process) {
            // A crash invoked and never completed ended when the process went on.
            Some(open) if open.f == F::Crash => {}
            Some(open) => {
                return Err(OpError::InvokeWhileOpen {
                    process: op.process,
                    f: op.f,
                    open_f: open.f,
                    open_index: open.invoke,
                });
            }
            None => {}
        }
        let wrong = |expected| OpError::WrongValue { f: op.f, kind: op.kind, expected };
        let detail = match (op.f, &op.value) {
            (F::Send, Value::Send(send)) => {
                let op_ref = OpRef {
                    process: op.process,
                    f: F::Send,
                    kind: OpType::Info,
                    invoke: Some(op.index),
                    complete: None,
                };
                OpenDetail::Send(self.kafka.handle_send_invoke(op_ref, send))
            }
            (F::Send, _) => return Err(wrong("a record {\"topic\", \"partition\", \"value\"}")),
            (F::Poll, Value::Null) => OpenDetail::Poll { is_final: false },
            (F::Poll, Value::Poll(poll)) => OpenDetail::Poll { is_final: poll.is_final },
            (F::Poll, _) => return Err(wrong("null or {\"final\": true}")),
            (F::Assign | F::Subscribe, _) => {
                self.kafka.handle_consumer_reset(op.process);
                OpenDetail::Other
            }
            (F::Commit, Value::Offsets(entries)) => {
                if let Some(entry) = entries.iter().find(|entry| entry.offset.is_none()) {
                    return Err(OpError::CommitWithoutOffset {
                        group: entry.group.clone(),
                        topic: entry.topic.clone(),
                        partition: entry.partition,
                    });
                }
                OpenDetail::Commit(entries.clone())
            }
            (F::Commit, _) => {
                return Err(wrong("a list of {\"group\", \"topic\", \"partition\", \"offset\"}"));
            }
            (F::Committed, _) => OpenDetail::Other,
            (F::Crash, _) => unreachable!("crashes are handled apart"),
        };
        self.open.insert(op.process, Open { f: op.f, invoke: op.index, detail });
        Ok(())
    }

    fn handle_completion(&mut self, op: &Op) -> Result<(), OpError> {
        let Some(open) = self.open.get(&op.process) else {
            return Err(OpError::CompletionWithoutInvoke {
                process: op.process,
                f: op.f,
                kind: op.kind,
            });
        };
        if open.f != op.f {
            return Err(OpError::CompletionMismatch {
                process: op.process,
                f: op.f,
                open_f: open.f,
                open_index: open.invoke,
            });
        }
        if let (OpenDetail::Send(pending), Value::Send(send)) = (&open.detail, &op.value)
            && !pending.matches(&self.kafka, send)
        {
            return Err(OpError::SendMismatch {
                process: op.process,
                invoked: self.describe_open_send(op.process),
                completed: format!("{}/{} value {}", send.topic, send.partition, send.value),
            });
        }
        let offset = match &op.value {
            Value::Send(send) => send.offset,
            _ => None,
        };
        if let OpenDetail::Send(pending) = &open.detail {
            let needs_offset = op.kind == OpType::Ok && pending.acks() != Acks::Zero;
            if needs_offset && offset.is_none() {
                return Err(OpError::SendOkWithoutOffset { process: op.process });
            }
        }
        let open = self.open.remove(&op.process).expect("looked up above");
        let op_ref = OpRef {
            process: op.process,
            f: op.f,
            kind: op.kind,
            invoke: Some(open.invoke),
            complete: Some(op.index),
        };
        match open.detail {
            OpenDetail::Send(pending) => {
                self.kafka.handle_send_complete(pending, op_ref, offset, &mut self.found);
            }
            OpenDetail::Poll { is_final } => self.handle_poll_completion(op, op_ref, is_final),
            OpenDetail::Commit(entries) => match op.kind {
                OpType::Ok => {
                    self.registers.handle_commit(&entries, op_ref, open.invoke, Some(op.index));
                }
                OpType::Info => self.registers.handle_commit(&entries, op_ref, open.invoke, None),
                OpType::Fail | OpType::Invoke => {}
            },
            OpenDetail::Other => match (op.f, op.kind, &op.value) {
                (F::Assign | F::Subscribe, _, _) => self.kafka.handle_consumer_reset(op.process),
                (F::Committed, OpType::Ok, Value::Offsets(entries)) => {
                    self.registers.handle_committed(entries, op_ref, open.invoke, op.index);
                }
                _ => {}
            },
        }
        Ok(())
    }

    fn handle_poll_completion(&mut self, op: &Op, op_ref: OpRef, is_final: bool) {
        match (op.kind, &op.value) {
            (OpType::Ok, Value::Poll(poll)) => {
                let is_final = is_final || poll.is_final;
                self.kafka.handle_poll_ok(op_ref, &poll.records, is_final, &mut self.found);
            }
            (OpType::Ok, _) => self.kafka.handle_poll_ok(op_ref, &[], is_final, &mut self.found),
            // The poll may have moved the consumer's position without telling us what it
            // read; Jepsen gives such a process a new identity for the same reason.
            (OpType::Info, _) => self.kafka.handle_consumer_reset(op.process),
            _ => {}
        }
    }

    fn describe_open_send(&self, process: Process) -> String {
        match self.open.get(&process).map(|open| &open.detail) {
            Some(OpenDetail::Send(pending)) => pending.describe(&self.kafka),
            _ => String::from("nothing"),
        }
    }

    /// Ends an open operation with an unknown outcome: a crash, or the end of the history.
    fn close_unknown(&mut self, process: Process, open: Open) {
        let op_ref = OpRef {
            process,
            f: open.f,
            kind: OpType::Info,
            invoke: Some(open.invoke),
            complete: None,
        };
        match open.detail {
            OpenDetail::Send(pending) => {
                self.kafka.handle_send_complete(pending, op_ref, None, &mut self.found);
            }
            OpenDetail::Commit(entries) => {
                self.registers.handle_commit(&entries, op_ref, open.invoke, None);
            }
            OpenDetail::Poll { .. } => self.kafka.handle_consumer_reset(process),
            OpenDetail::Other => {}
        }
    }

    /// Runs the analyses that need the whole history and returns the report.
    pub fn finish(mut self) -> Report {
        let mut open: Vec<(Process, Open)> = self.open.drain().collect();
        open.sort_by_key(|(process, _)| *process);
        for (process, open) in open {
            self.close_unknown(process, open);
        }
        self.kafka.finish(&mut self.found);
        let deadline = self.options.time_limit.map(|limit| Instant::now() + limit);
        let mut budget = Budget::new(deadline, self.options.search_steps_max);
        let unknown = self.registers.finish(&mut budget, &mut self.found);
        let valid = if !self.found.is_empty() {
            Validity::Invalid
        } else if !unknown.is_empty() {
            Validity::Unknown
        } else {
            Validity::Valid
        };
        let mut stats = std::mem::take(&mut self.kafka.stats);
        stats.register_ops = self.registers.op_count();
        stats.register_keys = self.registers.key_count();
        stats.crashes = self.crashes;
        let (anomalies, anomaly_counts) = self.found.into_parts();
        Report { valid, ops: self.ops, anomalies, anomaly_counts, stats, unknown }
    }
}

/// Checks a JSON Lines history read from `reader`, streaming: one line is in memory at a
/// time.
pub fn check_history<R: BufRead>(reader: R, options: &Options) -> Result<Report, CheckError> {
    let mut checker = Checker::new(options.clone());
    let mut reader = HistoryReader::new(reader);
    while let Some(next) = reader.next_op() {
        let (line, op) = next?;
        checker.handle_op(&op).map_err(|source| CheckError::Op { line, source })?;
    }
    Ok(checker.finish())
}

/// Checks operations held in memory, in order; errors name the operation's 1-based
/// position as its line.
pub fn check_ops<'a, I>(ops: I, options: &Options) -> Result<Report, CheckError>
where
    I: IntoIterator<Item = &'a Op>,
{
    let mut checker = Checker::new(options.clone());
    for (position, op) in ops.into_iter().enumerate() {
        let line = position as u64 + 1;
        checker.handle_op(op).map_err(|source| CheckError::Op { line, source })?;
    }
    Ok(checker.finish())
}
