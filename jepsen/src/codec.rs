//! Reading and writing histories as JSON Lines.
//!
//! [`HistoryReader`] streams: it holds one line at a time, so a history larger than memory
//! is read, never refused. Every error names its line (1-based) and, for JSON errors, the
//! column, so a person can open the file at the right place.

use std::io::{self, BufRead, BufWriter, Write};

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use thiserror::Error;

use crate::history::{F, Op, Value};

/// Why a history could not be read.
#[derive(Debug, Error)]
pub enum ReadError {
    /// The file could not be read at this line (an IO error, or bytes that are not UTF-8).
    #[error("line {line}: cannot read the history: {source}")]
    Io {
        /// The 1-based line number.
        line: u64,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The line is not a well-formed operation: broken JSON, a missing field, a value of the
    /// wrong shape for its `f`.
    #[error("line {line}, column {column}: {message}")]
    Malformed {
        /// The 1-based line number.
        line: u64,
        /// The 1-based column where the problem was found.
        column: u64,
        /// What is wrong.
        message: String,
    },
}

impl ReadError {
    /// The 1-based line number of the problem.
    pub fn line(&self) -> u64 {
        match self {
            ReadError::Io { line, .. } | ReadError::Malformed { line, .. } => *line,
        }
    }
}

/// The fields of a history line; unknown fields (an `error` message, say) are ignored.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum Field {
    Index,
    Time,
    Process,
    Type,
    F,
    Value,
    #[serde(other)]
    Other,
}

/// Types an operation's value in the shape its `f` requires.
struct ValueFor(F);

impl<'de> DeserializeSeed<'de> for ValueFor {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Value::deserialize_for(self.0, deserializer)
    }
}

/// A history line in one pass when `f` comes before `value` (as [`HistoryWriter`] writes
/// it); otherwise the value is kept as a borrowed slice and typed at the end.
struct LineVisitor;

impl<'de> Visitor<'de> for LineVisitor {
    type Value = Op;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(
            "an operation {\"index\", \"time\", \"process\", \"type\", \"f\", \"value\"}",
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Op, A::Error> {
        let (mut index, mut time, mut process, mut kind, mut f) = (None, None, None, None, None);
        let mut value = None;
        let mut value_raw: Option<&'de RawValue> = None;
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Index => index = Some(map.next_value()?),
                Field::Time => time = Some(map.next_value()?),
                Field::Process => process = Some(map.next_value()?),
                Field::Type => kind = Some(map.next_value()?),
                Field::F => f = Some(map.next_value()?),
                Field::Value => match f {
                    Some(f) => value = Some(map.next_value_seed(ValueFor(f))?),
                    None => value_raw = Some(map.next_value()?),
                },
                Field::Other => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        let f: F = f.ok_or_else(|| de::Error::missing_field("f"))?;
        let value = match (value, value_raw) {
            (Some(value), _) => value,
            (None, Some(raw)) => {
                let mut de = serde_json::Deserializer::from_str(raw.get());
                Value::deserialize_for(f, &mut de)
                    .and_then(|value| de.end().map(|()| value))
                    .map_err(de::Error::custom)?
            }
            (None, None) => Value::Null,
        };
        Ok(Op {
            index: index.ok_or_else(|| de::Error::missing_field("index"))?,
            time: time.ok_or_else(|| de::Error::missing_field("time"))?,
            process: process.ok_or_else(|| de::Error::missing_field("process"))?,
            kind: kind.ok_or_else(|| de::Error::missing_field("type"))?,
            f,
            value,
        })
    }
}

/// Parses one history line. `line_number` is only used in errors.
pub fn parse_line(line: &str, line_number: u64) -> Result<Op, ReadError> {
    let mut de = serde_json::Deserializer::from_str(line);
    de.deserialize_map(LineVisitor)
        .and_then(|op| de.end().map(|()| op))
        .map_err(|error| malformed(line_number, &error))
}

fn malformed(line: u64, error: &serde_json::Error) -> ReadError {
    // serde_json appends " at line L column C" to its messages; we say where ourselves.
    let text = error.to_string();
    let message = match text.rfind(" at line ") {
        Some(at) => text[..at].to_string(),
        None => text,
    };
    let f_hint = if message.starts_with("unknown variant") {
        " (f is one of send, poll, assign, subscribe, commit, committed, crash; type is one \
         of invoke, ok, fail, info)"
    } else {
        ""
    };
    ReadError::Malformed {
        line,
        column: error.column() as u64,
        message: format!("{message}{f_hint}"),
    }
}

/// Streams operations out of a JSON Lines history, one line in memory at a time. Blank
/// lines are skipped. Yields `(line_number, op)` through [`HistoryReader::next_op`], or
/// plain operations as an [`Iterator`].
pub struct HistoryReader<R> {
    reader: R,
    buffer: String,
    line_number: u64,
}

impl<R: BufRead> HistoryReader<R> {
    /// A reader over `reader`.
    pub fn new(reader: R) -> Self {
        HistoryReader { reader, buffer: String::new(), line_number: 0 }
    }

    /// The next operation with its 1-based line number, or `None` at the end.
    pub fn next_op(&mut self) -> Option<Result<(u64, Op), ReadError>> {
        loop {
            self.buffer.clear();
            self.line_number += 1;
            match self.reader.read_line(&mut self.buffer) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(source) => {
                    return Some(Err(ReadError::Io { line: self.line_number, source }));
                }
            }
            let line = self.buffer.trim_end_matches(['\n', '\r']);
            if line.trim().is_empty() {
                continue;
            }
            return Some(parse_line(line, self.line_number).map(|op| (self.line_number, op)));
        }
    }

    /// How many lines were read so far.
    pub fn lines_read(&self) -> u64 {
        self.line_number
    }
}

impl<R: BufRead> Iterator for HistoryReader<R> {
    type Item = Result<Op, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_op().map(|result| result.map(|(_, op)| op))
    }
}

/// Writes operations as JSON Lines, buffered. Call [`HistoryWriter::flush`] at the end.
pub struct HistoryWriter<W: Write> {
    writer: BufWriter<W>,
}

impl<W: Write> HistoryWriter<W> {
    /// A writer over `writer`.
    pub fn new(writer: W) -> Self {
        HistoryWriter { writer: BufWriter::new(writer) }
    }

    /// Writes one operation as one line.
    pub fn write_op(&mut self, op: &Op) -> io::Result<()> {
        serde_json::to_writer(&mut self.writer, op)?;
        self.writer.write_all(b"\n")
    }

    /// Flushes buffered lines to the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }

    /// Flushes and returns the underlying writer.
    pub fn into_inner(self) -> io::Result<W> {
        self.writer.into_inner().map_err(io::IntoInnerError::into_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Acks, OpType, Poll, Record, Send};

    #[test]
    fn parses_the_lines_of_design_section_9() {
        let line = concat!(
            r#"{"index":1,"time":5400,"process":3,"type":"ok","f":"send","#,
            r#""value":{"topic":"t","partition":0,"value":17,"offset":42}}"#
        );
        let op = parse_line(line, 2).unwrap();
        assert_eq!(op.kind, OpType::Ok);
        assert_eq!(op.value, Value::Send(Send::new("t", 0, 17).at(42)));
        let line = concat!(
            r#"{"index":3,"time":6100,"process":5,"type":"ok","f":"poll","#,
            r#""value":{"records":[{"topic":"t","partition":0,"offset":42,"value":17}]}}"#
        );
        let op = parse_line(line, 4).unwrap();
        let records = vec![Record::new("t", 0, 42, 17)];
        assert_eq!(op.value, Value::Poll(Poll { is_final: false, records }));
    }

    #[test]
    fn value_before_f_and_unknown_fields_are_accepted() {
        let line = concat!(
            r#"{"value":{"topic":"t","partition":0,"value":17},"error":"timeout","#,
            r#""index":0,"time":1,"process":3,"type":"info","f":"send"}"#
        );
        let op = parse_line(line, 1).unwrap();
        assert_eq!((op.kind, op.f), (OpType::Info, F::Send));
        assert_eq!(op.value, Value::Send(Send::new("t", 0, 17)));
        let line =
            r#"{"value":{"topic":"t"},"index":0,"time":1,"process":3,"type":"info","f":"send"}"#;
        let text = parse_line(line, 1).unwrap_err().to_string();
        assert!(text.contains("missing field `partition`"), "{text}");
        let line = r#"{"index":0,"time":1,"type":"info","f":"send"}"#;
        let text = parse_line(line, 9).unwrap_err().to_string();
        assert!(text.starts_with("line 9") && text.contains("missing field `process`"), "{text}");
    }

    #[test]
    fn acks_accepts_numbers_and_all() {
        for (text, acks) in [("0", Acks::Zero), ("1", Acks::Leader), ("-1", Acks::All)] {
            let line = format!(
                "{}{}{text}}}}}",
                r#"{"index":0,"time":0,"process":0,"type":"invoke","f":"send","#,
                r#""value":{"topic":"t","partition":0,"value":1,"acks":"#
            );
            let op = parse_line(&line, 1).unwrap();
            assert_eq!(op.value, Value::Send(Send::new("t", 0, 1).with_acks(acks)));
        }
        let line = concat!(
            r#"{"index":0,"time":0,"process":0,"type":"invoke","f":"send","#,
            r#""value":{"topic":"t","partition":0,"value":1,"acks":"all"}}"#
        );
        assert!(parse_line(line, 1).is_ok());
    }

    #[test]
    fn errors_name_line_and_column_inside_the_value() {
        let line = concat!(
            r#"{"index":0,"time":0,"process":0,"type":"invoke","f":"send","#,
            r#""value":{"topic":"t","value":1}}"#
        );
        let error = parse_line(line, 7).unwrap_err();
        let text = error.to_string();
        assert!(text.starts_with("line 7, column "), "{text}");
        assert!(text.contains("missing field `partition`"), "{text}");
        let ReadError::Malformed { column, .. } = error else { panic!("{error:?}") };
        assert!(column as usize > line.find("\"value\":{").unwrap(), "{column}");
    }

    #[test]
    fn unknown_f_is_explained() {
        let line = r#"{"index":0,"time":0,"process":0,"type":"invoke","f":"txn","value":null}"#;
        let text = parse_line(line, 1).unwrap_err().to_string();
        assert!(text.contains("unknown variant `txn`"), "{text}");
        assert!(text.contains("f is one of"), "{text}");
    }

    #[test]
    fn writer_and_reader_round_trip() {
        let mut history = crate::History::new();
        history.invoke(1, 0, F::Send, Value::Send(Send::new("t", 0, 1).with_acks(Acks::Leader)));
        history.complete(2, 0, OpType::Ok, F::Send, Value::Send(Send::new("t", 0, 1).at(0)));
        history.invoke(3, 1, F::Poll, Value::Poll(Poll { is_final: true, records: vec![] }));
        history.complete(
            4,
            1,
            OpType::Ok,
            F::Poll,
            Value::Poll(Poll { is_final: false, records: vec![Record::new("t", 0, 0, 1)] }),
        );
        history.push(5, 1, OpType::Info, F::Crash, Value::Null);
        let mut bytes = Vec::new();
        history.write_jsonl(&mut bytes).unwrap();
        let read = crate::History::read_jsonl(&bytes[..]).unwrap();
        assert_eq!(read, history);
        // The generic serde implementation agrees with the fast reader.
        let text = String::from_utf8(bytes).unwrap();
        for (line, op) in text.lines().zip(history.ops()) {
            assert_eq!(&serde_json::from_str::<Op>(line).unwrap(), op);
        }
    }
}
