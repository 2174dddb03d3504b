//! The history format of design §9: one operation per line, invocations and completions as
//! separate operations, as in Jepsen.
//!
//! An [`Op`] is one line. Its `value` has a shape that depends on `f`, so the typed [`Value`]
//! is parsed once `f` is known ([`Value::deserialize_for`]); the same rule serves the fast
//! line reader in [`crate::codec`] and the generic `serde` implementation of [`Op`].
//! [`History`] is an in-memory history that hands out indexes, so a driver such as the
//! simulator can record operations and check them without a file.

use std::fmt;
use std::io;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

/// A client process, as Jepsen numbers them. A process runs one operation at a time.
pub type Process = u64;

/// Whether a line is an invocation or one of the three kinds of completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    /// The client started the operation.
    Invoke,
    /// The operation certainly happened, with the value given.
    Ok,
    /// The operation certainly did not happen.
    Fail,
    /// The outcome is unknown (a timeout, a crash): it may or may not have happened.
    Info,
}

impl OpType {
    /// Whether this is a completion (`ok`, `fail` or `info`).
    pub fn is_completion(self) -> bool {
        self != OpType::Invoke
    }
}

/// The function an operation performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum F {
    /// Produce one record to a topic-partition.
    Send,
    /// One consumer poll; its `ok` carries the records read.
    Poll,
    /// Assign a list of topic-partitions to the consumer.
    Assign,
    /// Subscribe the consumer to a list of topics.
    Subscribe,
    /// Commit offsets of a consumer group.
    Commit,
    /// Read committed offsets of a consumer group.
    Committed,
    /// The process's client restarted; its state is gone.
    Crash,
}

impl F {
    /// The name used in histories (`"send"`, `"poll"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            F::Send => "send",
            F::Poll => "poll",
            F::Assign => "assign",
            F::Subscribe => "subscribe",
            F::Commit => "commit",
            F::Committed => "committed",
            F::Crash => "crash",
        }
    }
}

impl fmt::Display for F {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The `acks` setting of a send. Only [`Acks::All`] sends count for `lost-write`, `unseen`,
/// `nonmonotonic-send` and `realtime-order`: with fewer acknowledgements Kafka may lose an
/// acknowledged record on a leader change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Acks {
    /// `acks=0`: the producer does not wait for any answer (no offset is returned).
    Zero,
    /// `acks=1`: the leader alone appended the record.
    Leader,
    /// `acks=all` (`-1`): every in-sync replica has the record. The default.
    All,
}

impl Serialize for Acks {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Acks::Zero => serializer.serialize_i64(0),
            Acks::Leader => serializer.serialize_i64(1),
            Acks::All => serializer.serialize_str("all"),
        }
    }
}

impl<'de> Deserialize<'de> for Acks {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AcksVisitor;
        impl de::Visitor<'_> for AcksVisitor {
            type Value = Acks;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("acks 0, 1, -1 or \"all\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Acks, E> {
                match v {
                    0 => Ok(Acks::Zero),
                    1 => Ok(Acks::Leader),
                    -1 => Ok(Acks::All),
                    _ => Err(E::custom(format_args!("acks {v} is not 0, 1, -1 or \"all\""))),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Acks, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Acks, E> {
                match v {
                    "all" | "-1" => Ok(Acks::All),
                    "0" => Ok(Acks::Zero),
                    "1" => Ok(Acks::Leader),
                    _ => Err(E::custom(format_args!("acks {v:?} is not 0, 1, -1 or \"all\""))),
                }
            }
        }
        deserializer.deserialize_any(AcksVisitor)
    }
}

/// A topic-partition, as `assign` lists them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TopicPartition {
    /// The topic name.
    pub topic: String,
    /// The partition number.
    pub partition: i32,
}

/// The value of a `send`: the record sent and, on `ok`, the offset it got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Send {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The value sent; values are unique per topic-partition.
    pub value: i64,
    /// The offset the broker assigned (on `ok`; absent with `acks=0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    /// The producer's `acks`; absent means [`Acks::All`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acks: Option<Acks>,
}

impl Send {
    /// A send of `value` to `topic`/`partition` with the default `acks=all`.
    pub fn new(topic: impl Into<String>, partition: i32, value: i64) -> Self {
        Send { topic: topic.into(), partition, value, offset: None, acks: None }
    }

    /// The same send, acknowledged at `offset`.
    pub fn at(mut self, offset: i64) -> Self {
        self.offset = Some(offset);
        self
    }

    /// The same send with an explicit `acks`.
    pub fn with_acks(mut self, acks: Acks) -> Self {
        self.acks = Some(acks);
        self
    }

    /// The effective `acks`: absent means `all`.
    pub fn acks(&self) -> Acks {
        self.acks.unwrap_or(Acks::All)
    }
}

/// One record returned by a poll.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
    /// The record's value.
    pub value: i64,
}

impl Record {
    /// A record of `value` at `offset` of `topic`/`partition`.
    pub fn new(topic: impl Into<String>, partition: i32, offset: i64, value: i64) -> Self {
        Record { topic: topic.into(), partition, offset, value }
    }
}

/// The value of a `poll`: `{"final": true}` on the invocations of the final drain, the
/// records read on `ok`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Poll {
    /// Whether this poll belongs to the drain that ends a test and reads every partition to
    /// its end. Only then does `unseen` apply.
    #[serde(rename = "final", default, skip_serializing_if = "is_false")]
    pub is_final: bool,
    /// The records read, in the order the consumer returned them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<Record>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One entry of a `commit` or `committed`: a committed offset of a consumer group. As in
/// Kafka, the committed offset is the next offset to consume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupOffset {
    /// The consumer group.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The committed offset; absent, `null` or negative on a `committed` read means that
    /// nothing was ever committed. Absent on a `committed` invocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
}

impl GroupOffset {
    /// An entry for `group`, `topic`/`partition` with `offset`.
    pub fn new(
        group: impl Into<String>,
        topic: impl Into<String>,
        partition: i32,
        offset: Option<i64>,
    ) -> Self {
        GroupOffset { group: group.into(), topic: topic.into(), partition, offset }
    }
}

/// An operation's value. Which shape is allowed depends on `f`; see
/// [`Value::deserialize_for`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Value {
    /// `null` or absent: a plain poll invocation, a crash, or a completion that repeats
    /// nothing of its invocation.
    #[default]
    Null,
    /// The value of a `send`.
    Send(Send),
    /// The value of a `poll`.
    Poll(Poll),
    /// The value of an `assign`.
    Partitions(Vec<TopicPartition>),
    /// The value of a `subscribe`.
    Topics(Vec<String>),
    /// The value of a `commit` or `committed`.
    Offsets(Vec<GroupOffset>),
}

impl Value {
    /// Parses an operation's `value` in the shape `f` requires: `send` an object or `null`,
    /// `poll` `null` or an object, `assign` a list of topic-partitions, `subscribe` a list of
    /// topics, `commit` and `committed` a list of group offsets, `crash` anything (ignored).
    pub fn deserialize_for<'de, D: Deserializer<'de>>(f: F, d: D) -> Result<Value, D::Error> {
        Ok(match f {
            F::Send => Option::<Send>::deserialize(d)?.map_or(Value::Null, Value::Send),
            F::Poll => Option::<Poll>::deserialize(d)?.map_or(Value::Null, Value::Poll),
            F::Assign => Option::deserialize(d)?.map_or(Value::Null, Value::Partitions),
            F::Subscribe => Option::deserialize(d)?.map_or(Value::Null, Value::Topics),
            F::Commit | F::Committed => Option::deserialize(d)?.map_or(Value::Null, Value::Offsets),
            F::Crash => {
                de::IgnoredAny::deserialize(d)?;
                Value::Null
            }
        })
    }
}

/// One line of a history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Op {
    /// Position in the history; strictly increasing.
    pub index: u64,
    /// Nanoseconds since an arbitrary epoch; only drawn, never trusted for ordering.
    pub time: u64,
    /// The process that performed the operation.
    pub process: Process,
    /// Invocation or completion.
    #[serde(rename = "type")]
    pub kind: OpType,
    /// The function.
    pub f: F,
    /// The value, shaped by `f`.
    pub value: Value,
}

/// What a history line holds before its value is typed. Unknown fields (an `error` message,
/// say) are ignored.
#[derive(Deserialize)]
struct OpRepr {
    index: u64,
    time: u64,
    process: Process,
    #[serde(rename = "type")]
    kind: OpType,
    f: F,
    #[serde(default)]
    value: serde_json::Value,
}

impl<'de> Deserialize<'de> for Op {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let repr = OpRepr::deserialize(deserializer)?;
        let value = Value::deserialize_for(repr.f, repr.value).map_err(de::Error::custom)?;
        Ok(Op {
            index: repr.index,
            time: repr.time,
            process: repr.process,
            kind: repr.kind,
            f: repr.f,
            value,
        })
    }
}

/// A history held in memory. It numbers operations as they are recorded, so a driver only
/// says who did what and when.
///
/// ```
/// use cairn_jepsen::{History, F, OpType, Send, Value};
/// let mut history = History::new();
/// history.invoke(1_000, 3, F::Send, Value::Send(Send::new("t", 0, 17)));
/// history.complete(5_000, 3, OpType::Ok, F::Send, Value::Send(Send::new("t", 0, 17).at(42)));
/// assert_eq!(history.ops().len(), 2);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    ops: Vec<Op>,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        History::default()
    }

    /// Records an invocation and returns its index.
    pub fn invoke(&mut self, time: u64, process: Process, f: F, value: Value) -> u64 {
        self.push(time, process, OpType::Invoke, f, value)
    }

    /// Records a completion (`ok`, `fail` or `info`) and returns its index.
    ///
    /// # Panics
    /// If `kind` is [`OpType::Invoke`].
    pub fn complete(
        &mut self,
        time: u64,
        process: Process,
        kind: OpType,
        f: F,
        value: Value,
    ) -> u64 {
        assert!(kind.is_completion(), "a completion must be ok, fail or info");
        self.push(time, process, kind, f, value)
    }

    /// Records one operation of any type and returns its index, the next one in order.
    pub fn push(&mut self, time: u64, process: Process, kind: OpType, f: F, value: Value) -> u64 {
        let index = self.ops.last().map_or(0, |op| op.index + 1);
        self.ops.push(Op { index, time, process, kind, f, value });
        index
    }

    /// Appends an operation as it is, index included.
    pub fn push_op(&mut self, op: Op) {
        self.ops.push(op);
    }

    /// The operations, in history order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// The operations, to edit (tests inject faults this way).
    pub fn ops_mut(&mut self) -> &mut Vec<Op> {
        &mut self.ops
    }

    /// Writes the history as JSON Lines.
    pub fn write_jsonl<W: io::Write>(&self, writer: W) -> io::Result<()> {
        let mut writer = crate::codec::HistoryWriter::new(writer);
        for op in &self.ops {
            writer.write_op(op)?;
        }
        writer.flush()
    }

    /// Reads a whole history of JSON Lines into memory.
    pub fn read_jsonl<R: io::BufRead>(reader: R) -> Result<Self, crate::codec::ReadError> {
        let ops = crate::codec::HistoryReader::new(reader).collect::<Result<Vec<_>, _>>()?;
        Ok(History { ops })
    }
}

impl From<Vec<Op>> for History {
    fn from(ops: Vec<Op>) -> Self {
        History { ops }
    }
}
