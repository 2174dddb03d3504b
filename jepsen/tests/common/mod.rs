//! Handwritten histories: helpers that write one JSON line each, numbered by `history`.
//! Every helper works on topic "t", partition 0, group "g".

#![allow(dead_code)]

use cairn_jepsen::{Options, Report, check_history};

/// One line without index and time; `history` adds them.
pub fn op(process: u64, kind: &str, f: &str, value: &str) -> String {
    format!(r#""process":{process},"type":"{kind}","f":"{f}","value":{value}}}"#)
}

/// A send of `value`, acknowledged at `offset` when given.
pub fn send(process: u64, kind: &str, value: i64, offset: Option<i64>) -> String {
    let offset = offset.map(|o| format!(r#","offset":{o}"#)).unwrap_or_default();
    let record = format!(r#"{{"topic":"t","partition":0,"value":{value}{offset}}}"#);
    op(process, kind, "send", &record)
}

/// A send with an explicit `acks` (a JSON value: `0`, `1`, `"all"`).
pub fn send_acks(process: u64, kind: &str, value: i64, offset: Option<i64>, acks: &str) -> String {
    let offset = offset.map(|o| format!(r#","offset":{o}"#)).unwrap_or_default();
    let record = format!(r#"{{"topic":"t","partition":0,"value":{value}{offset},"acks":{acks}}}"#);
    op(process, kind, "send", &record)
}

/// A poll; on `ok`, the (offset, value) records read.
pub fn poll(process: u64, kind: &str, records: &[(i64, i64)]) -> String {
    if kind == "invoke" {
        return op(process, kind, "poll", "null");
    }
    let records: Vec<String> = records
        .iter()
        .map(|(o, v)| format!(r#"{{"topic":"t","partition":0,"offset":{o},"value":{v}}}"#))
        .collect();
    op(process, kind, "poll", &format!(r#"{{"records":[{}]}}"#, records.join(",")))
}

/// The invocation of a poll of the final drain.
pub fn poll_final(process: u64) -> String {
    op(process, "invoke", "poll", r#"{"final":true}"#)
}

/// An assign of partition 0.
pub fn assign(process: u64, kind: &str) -> String {
    op(process, kind, "assign", r#"[{"topic":"t","partition":0}]"#)
}

/// A subscribe to topic "t".
pub fn subscribe(process: u64, kind: &str) -> String {
    op(process, kind, "subscribe", r#"["t"]"#)
}

/// A crash, as one line.
pub fn crash(process: u64) -> String {
    op(process, "info", "crash", "null")
}

/// A commit of `offset` for group "g".
pub fn commit(process: u64, kind: &str, offset: i64) -> String {
    let entry = format!(r#"[{{"group":"g","topic":"t","partition":0,"offset":{offset}}}]"#);
    op(process, kind, "commit", &entry)
}

/// A read of group "g"'s committed offset; on `ok`, `offset` (`None`: nothing committed).
pub fn committed(process: u64, kind: &str, offset: Option<i64>) -> String {
    let offset = offset.map(|o| format!(r#","offset":{o}"#)).unwrap_or_default();
    op(
        process,
        kind,
        "committed",
        &format!(r#"[{{"group":"g","topic":"t","partition":0{offset}}}]"#),
    )
}

/// Numbers the lines (index i, time 1000 i) into a JSON Lines history.
pub fn history(lines: &[String]) -> String {
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| format!("{{\"index\":{i},\"time\":{},{line}\n", i * 1000))
        .collect()
}

/// Checks handwritten lines with the default options.
pub fn check(lines: &[String]) -> Report {
    check_history(history(lines).as_bytes(), &Options::default()).expect("a well-formed history")
}
