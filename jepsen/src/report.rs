//! What a check finds: the verdict, the anomalies with the operations that prove them, and
//! counts of what the history exercised.
//!
//! Serialised, a [`Report`] is the object `cairn-check` prints (design §9):
//! `{"valid": true|false|"unknown", "ops": N, "anomalies": {"lost-write": [..], ...}}`,
//! followed by `anomaly_counts`, `stats` and, when the verdict is unknown, `unknown`.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

use crate::history::{F, OpType, Process};

/// The verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    /// No anomaly, and every check finished.
    Valid,
    /// At least one anomaly.
    Invalid,
    /// No anomaly found, but a check ran out of time or search steps.
    Unknown,
}

impl Serialize for Validity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Validity::Valid => serializer.serialize_bool(true),
            Validity::Invalid => serializer.serialize_bool(false),
            Validity::Unknown => serializer.serialize_str("unknown"),
        }
    }
}

/// The anomalies the checker names (design §9), after Elle's Kafka checker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnomalyKind {
    /// An acknowledged `acks=all` send whose value sits below an offset some poll read, yet
    /// no poll ever read it.
    LostWrite,
    /// An acknowledged `acks=all` send the final drain did not read: no poll read it (and
    /// it is not below an offset read, else it is a `lost-write`), or a poll read it during
    /// the run and it was gone from the log by the drain.
    Unseen,
    /// One value at two offsets.
    Duplicate,
    /// Two values at one offset.
    InconsistentOffsets,
    /// A process's `acks=all` sends to a partition go backwards in offset order.
    NonmonotonicSend,
    /// A consumer's reads of a partition go backwards (or repeat an offset) with no
    /// assign, subscribe or crash in between.
    NonmonotonicPoll,
    /// A consumer's reads of a partition skip offsets known to exist, with no assign,
    /// subscribe or crash in between.
    PollSkip,
    /// A value read whose send failed.
    AbortedRead,
    /// A value read that no one sent.
    PhantomRead,
    /// Send A completed before send B was invoked (same partition, both `acks=all`), yet
    /// offset(A) > offset(B).
    RealtimeOrder,
    /// The committed offsets of a group's partition are not linearizable.
    NotLinearizable,
}

impl AnomalyKind {
    /// Every kind, in report order.
    pub const ALL: [AnomalyKind; 11] = [
        AnomalyKind::LostWrite,
        AnomalyKind::Unseen,
        AnomalyKind::Duplicate,
        AnomalyKind::InconsistentOffsets,
        AnomalyKind::NonmonotonicSend,
        AnomalyKind::NonmonotonicPoll,
        AnomalyKind::PollSkip,
        AnomalyKind::AbortedRead,
        AnomalyKind::PhantomRead,
        AnomalyKind::RealtimeOrder,
        AnomalyKind::NotLinearizable,
    ];

    /// The kebab-case name of design §9.
    pub fn name(self) -> &'static str {
        match self {
            AnomalyKind::LostWrite => "lost-write",
            AnomalyKind::Unseen => "unseen",
            AnomalyKind::Duplicate => "duplicate",
            AnomalyKind::InconsistentOffsets => "inconsistent-offsets",
            AnomalyKind::NonmonotonicSend => "nonmonotonic-send",
            AnomalyKind::NonmonotonicPoll => "nonmonotonic-poll",
            AnomalyKind::PollSkip => "poll-skip",
            AnomalyKind::AbortedRead => "aborted-read",
            AnomalyKind::PhantomRead => "phantom-read",
            AnomalyKind::RealtimeOrder => "realtime-order",
            AnomalyKind::NotLinearizable => "not-linearizable",
        }
    }
}

/// An operation, named by the indexes of its invocation and completion lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct OpRef {
    /// The process.
    pub process: Process,
    /// The function.
    pub f: F,
    /// How it completed; `info` also for operations still open at the end of the history.
    #[serde(rename = "type")]
    pub kind: OpType,
    /// Index of the invocation line, if there was one.
    pub invoke: Option<u64>,
    /// Index of the completion line, if there was one.
    pub complete: Option<u64>,
}

impl OpRef {
    /// The indexes of the lines of this operation.
    pub fn indexes(&self) -> impl Iterator<Item = u64> {
        self.invoke.into_iter().chain(self.complete)
    }

    /// The first line of this operation, for sorting.
    pub fn first_index(&self) -> u64 {
        self.invoke.or(self.complete).unwrap_or(u64::MAX)
    }
}

/// A value seen at an offset by an operation (a poll that read it or a send acknowledged
/// with it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Seen {
    /// The value.
    pub value: i64,
    /// The offset.
    pub offset: i64,
    /// The operation that saw it.
    pub op: OpRef,
}

/// `lost-write`: `send` was acknowledged at `offset`, a poll read the higher offset in
/// `read_above`, and no poll ever read `value`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LostWrite {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The lost value.
    pub value: i64,
    /// The offset its send was acknowledged at.
    pub offset: i64,
    /// The acknowledged send.
    pub send: OpRef,
    /// The highest offset any poll read, and the poll.
    pub read_above: Seen,
}

/// `unseen`: `send` was acknowledged and a final drain ran, yet the drain did not read
/// `value`: either no poll ever read it (`read_before` is `None`), or some poll read it
/// during the run and it was gone by the end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unseen {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The unseen value.
    pub value: i64,
    /// The offset its send was acknowledged at.
    pub offset: i64,
    /// The acknowledged send.
    pub send: OpRef,
    /// The first poll that read the value, if one did before the final drain missed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_before: Option<Seen>,
}

/// `duplicate`: `value` was seen at each of `offsets`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Duplicate {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The value.
    pub value: i64,
    /// Each offset the value was seen at, with the first operation that saw it there.
    pub seen: Vec<Seen>,
}

/// `inconsistent-offsets`: each of `seen` has a different value at `offset`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InconsistentOffsets {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
    /// Each value seen at the offset, with the first operation that saw it.
    pub seen: Vec<Seen>,
}

/// `nonmonotonic-send`, `nonmonotonic-poll` and `poll-skip`: two successive observations of
/// one process on one partition that go backwards or skip.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProcessOrder {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The process.
    pub process: Process,
    /// The earlier observation.
    pub previous: Seen,
    /// The later observation.
    pub next: Seen,
    /// For `poll-skip`: how many known offsets lie strictly between the two.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped_count: Option<u64>,
    /// For `poll-skip`: the first few of the skipped offsets.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<i64>,
}

/// `aborted-read` (`send` failed) or `phantom-read` (`send` is `None`: never sent): `read`
/// read `value` at `offset` anyway.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BadRead {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The value read.
    pub value: i64,
    /// The offset it was read at.
    pub offset: i64,
    /// The poll that read it.
    pub read: OpRef,
    /// The failed send, for `aborted-read`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send: Option<OpRef>,
}

/// `realtime-order`: `earlier` completed before `later` was invoked, yet got a higher offset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RealtimeOrder {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The send that completed first.
    pub earlier: Seen,
    /// The send invoked after it.
    pub later: Seen,
}

/// One step of a partial linearization of a register: an operation and what it did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RegisterStep {
    /// The operation.
    pub op: OpRef,
    /// `"commit"` wrote `offset`; `"committed"` read it (-1: nothing committed).
    pub offset: i64,
}

/// `not-linearizable`: no order of the operations on this key's committed offset explains
/// what was read. The search got furthest with `linearized` (its last steps) and then could
/// not place `op`, the register holding `state`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NotLinearizable {
    /// The consumer group.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The operation that could not be placed.
    pub op: RegisterStep,
    /// The committed offset (-1: none) after the longest linearizable prefix found.
    pub state: i64,
    /// The last steps of that prefix, oldest first.
    pub linearized: Vec<RegisterStep>,
}

/// One anomaly. The enum's variant is its [`AnomalyKind`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Anomaly {
    /// See [`AnomalyKind::LostWrite`].
    LostWrite(LostWrite),
    /// See [`AnomalyKind::Unseen`].
    Unseen(Unseen),
    /// See [`AnomalyKind::Duplicate`].
    Duplicate(Duplicate),
    /// See [`AnomalyKind::InconsistentOffsets`].
    InconsistentOffsets(InconsistentOffsets),
    /// See [`AnomalyKind::NonmonotonicSend`].
    NonmonotonicSend(ProcessOrder),
    /// See [`AnomalyKind::NonmonotonicPoll`].
    NonmonotonicPoll(ProcessOrder),
    /// See [`AnomalyKind::PollSkip`].
    PollSkip(ProcessOrder),
    /// See [`AnomalyKind::AbortedRead`].
    AbortedRead(BadRead),
    /// See [`AnomalyKind::PhantomRead`].
    PhantomRead(BadRead),
    /// See [`AnomalyKind::RealtimeOrder`].
    RealtimeOrder(RealtimeOrder),
    /// See [`AnomalyKind::NotLinearizable`].
    NotLinearizable(NotLinearizable),
}

impl Anomaly {
    /// Which anomaly this is.
    pub fn kind(&self) -> AnomalyKind {
        match self {
            Anomaly::LostWrite(_) => AnomalyKind::LostWrite,
            Anomaly::Unseen(_) => AnomalyKind::Unseen,
            Anomaly::Duplicate(_) => AnomalyKind::Duplicate,
            Anomaly::InconsistentOffsets(_) => AnomalyKind::InconsistentOffsets,
            Anomaly::NonmonotonicSend(_) => AnomalyKind::NonmonotonicSend,
            Anomaly::NonmonotonicPoll(_) => AnomalyKind::NonmonotonicPoll,
            Anomaly::PollSkip(_) => AnomalyKind::PollSkip,
            Anomaly::AbortedRead(_) => AnomalyKind::AbortedRead,
            Anomaly::PhantomRead(_) => AnomalyKind::PhantomRead,
            Anomaly::RealtimeOrder(_) => AnomalyKind::RealtimeOrder,
            Anomaly::NotLinearizable(_) => AnomalyKind::NotLinearizable,
        }
    }

    /// The operations that prove the anomaly, in no particular order.
    pub fn ops(&self) -> Vec<OpRef> {
        match self {
            Anomaly::LostWrite(a) => vec![a.send, a.read_above.op],
            Anomaly::Unseen(a) => a.read_before.map(|r| r.op).into_iter().chain([a.send]).collect(),
            Anomaly::Duplicate(a) => a.seen.iter().map(|s| s.op).collect(),
            Anomaly::InconsistentOffsets(a) => a.seen.iter().map(|s| s.op).collect(),
            Anomaly::NonmonotonicSend(a) | Anomaly::NonmonotonicPoll(a) | Anomaly::PollSkip(a) => {
                vec![a.previous.op, a.next.op]
            }
            Anomaly::AbortedRead(a) | Anomaly::PhantomRead(a) => {
                a.send.into_iter().chain([a.read]).collect()
            }
            Anomaly::RealtimeOrder(a) => vec![a.earlier.op, a.later.op],
            Anomaly::NotLinearizable(a) => {
                a.linearized.iter().map(|s| s.op).chain([a.op.op]).collect()
            }
        }
    }

    /// The earliest line any proving operation starts at; reports are sorted by it so that
    /// a history always gives the same report.
    pub fn first_index(&self) -> u64 {
        self.ops().iter().map(OpRef::first_index).min().unwrap_or(u64::MAX)
    }
}

/// What the history exercised, so that a run which tested nothing cannot pass unnoticed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Sends invoked.
    pub sends: u64,
    /// Sends acknowledged (`ok`).
    pub sends_ok: u64,
    /// Sends that certainly failed.
    pub sends_failed: u64,
    /// Sends with an unknown outcome (`info`, or still open at the end).
    pub sends_unknown: u64,
    /// Polls that completed `ok`.
    pub polls_ok: u64,
    /// Records those polls returned.
    pub records_read: u64,
    /// Distinct values read by at least one poll.
    pub values_read: u64,
    /// Acknowledged `acks=all` sends whose value some poll read.
    pub acknowledged_values_read: u64,
    /// Topic-partitions seen.
    pub partitions: u64,
    /// Whether a final drain (a poll invoked with `{"final": true}`) completed `ok`.
    pub final_drain: bool,
    /// Commit and committed operations checked for linearizability, one per key touched.
    pub register_ops: u64,
    /// Keys (group, topic, partition) checked for linearizability.
    pub register_keys: u64,
    /// Crashes.
    pub crashes: u64,
}

/// The result of checking a history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The verdict.
    pub valid: Validity,
    /// Operations (lines) in the history.
    pub ops: u64,
    /// Anomalies by kind, each list sorted by history position and cut at
    /// [`crate::Options::anomalies_per_kind_max`].
    #[serde(serialize_with = "serialize_anomalies")]
    pub anomalies: BTreeMap<AnomalyKind, Vec<Anomaly>>,
    /// How many anomalies of each kind were found, including those cut from the lists.
    pub anomaly_counts: BTreeMap<AnomalyKind, u64>,
    /// What the history exercised.
    pub stats: Stats,
    /// Why the verdict is unknown, when it is.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unknown: Vec<String>,
}

fn serialize_anomalies<S: Serializer>(
    anomalies: &BTreeMap<AnomalyKind, Vec<Anomaly>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(anomalies.iter().filter(|(_, list)| !list.is_empty()))
}

impl Report {
    /// Whether an anomaly of `kind` was found.
    pub fn has(&self, kind: AnomalyKind) -> bool {
        self.anomaly_counts.get(&kind).is_some_and(|&count| count > 0)
    }

    /// The anomalies of `kind` kept in the report.
    pub fn of(&self, kind: AnomalyKind) -> &[Anomaly] {
        self.anomalies.get(&kind).map_or(&[], Vec::as_slice)
    }

    /// The kinds found, in report order.
    pub fn kinds(&self) -> Vec<AnomalyKind> {
        self.anomaly_counts.iter().filter(|&(_, &n)| n > 0).map(|(&kind, _)| kind).collect()
    }

    /// The process exit code of `cairn-check`: 0 valid, 1 anomalies, 2 unknown.
    pub fn exit_code(&self) -> i32 {
        match self.valid {
            Validity::Valid => 0,
            Validity::Invalid => 1,
            Validity::Unknown => 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_serialise_with_the_names_of_design_section_9() {
        for kind in AnomalyKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.name()));
        }
    }

    #[test]
    fn validity_serialises_as_bool_or_unknown() {
        assert_eq!(serde_json::to_string(&Validity::Valid).unwrap(), "true");
        assert_eq!(serde_json::to_string(&Validity::Invalid).unwrap(), "false");
        assert_eq!(serde_json::to_string(&Validity::Unknown).unwrap(), "\"unknown\"");
    }
}
