//! The HTML report: for each anomaly, an SVG timeline of the operations around the ones
//! that prove it, one lane per process. The page is one self-contained file (inline CSS and
//! SVG, no script, nothing fetched), readable in a browser without a network.
//!
//! The report holds only line indexes, so drawing takes a second pass over the history:
//! [`write_report`] keeps the lines within [`HTML_CONTEXT_LINES`] of each proving
//! operation, plus the other half of every operation it keeps. The x axis is the history
//! order, not time: one column per line drawn, with a break where lines are left out.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::{self, Write};

use crate::history::{F, Op, OpType, Process, Value};
use crate::limits::{HTML_ANOMALIES_MAX, HTML_ANOMALIES_PER_KIND_MAX, HTML_CONTEXT_LINES};
use crate::report::{Anomaly, AnomalyKind, OpRef, Report, Validity};

const LANE_HEIGHT: u64 = 34;
const COLUMN_WIDTH: u64 = 30;
const GAP_WIDTH: u64 = 22;
const LABEL_WIDTH: u64 = 96;
const AXIS_HEIGHT: u64 = 44;
const BAR_HEIGHT: u64 = 22;

/// Writes the HTML report of `report` to `out`. `history` is the checked history again, in
/// order; only the lines near the anomalies drawn are kept in memory.
pub fn write_report<I, W>(report: &Report, history: I, mut out: W) -> io::Result<()>
where
    I: IntoIterator,
    I::Item: Borrow<Op>,
    W: Write,
{
    let drawn = select(report);
    let windows = Windows::new(&drawn);
    let kept = keep_lines(history, &windows);
    let ops = pair(&kept);
    let mut page = String::new();
    page_head(&mut page, report);
    let mut numbers: HashMap<AnomalyKind, usize> = HashMap::new();
    for (id, anomaly) in drawn.iter().enumerate() {
        let number = numbers.entry(anomaly.kind()).or_default();
        *number += 1;
        anomaly_section(&mut page, (id, *number), anomaly, &ops);
    }
    page.push_str("</body>\n</html>\n");
    out.write_all(page.as_bytes())?;
    out.flush()
}

/// The anomalies to draw: the first few of each kind, at most [`HTML_ANOMALIES_MAX`].
fn select(report: &Report) -> Vec<&Anomaly> {
    report
        .anomalies
        .values()
        .flat_map(|list| list.iter().take(HTML_ANOMALIES_PER_KIND_MAX))
        .take(HTML_ANOMALIES_MAX)
        .collect()
}

/// The line ranges drawn, merged, to test each line of the history against.
struct Windows {
    ranges: Vec<(u64, u64)>,
}

impl Windows {
    fn new(drawn: &[&Anomaly]) -> Self {
        let mut ranges: Vec<(u64, u64)> = drawn.iter().flat_map(|a| windows_of(a)).collect();
        ranges.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
        for (low, high) in ranges {
            match merged.last_mut() {
                Some(last) if low <= last.1.saturating_add(1) => last.1 = last.1.max(high),
                _ => merged.push((low, high)),
            }
        }
        Windows { ranges: merged }
    }

    fn contains(&self, index: u64) -> bool {
        let after = self.ranges.partition_point(|&(low, _)| low <= index);
        after > 0 && index <= self.ranges[after - 1].1
    }
}

/// The lines around each operation that proves `anomaly`.
fn windows_of(anomaly: &Anomaly) -> Vec<(u64, u64)> {
    let indexes = anomaly.ops().into_iter().flat_map(|op| op.indexes().collect::<Vec<_>>());
    indexes
        .map(|i| (i.saturating_sub(HTML_CONTEXT_LINES), i.saturating_add(HTML_CONTEXT_LINES)))
        .collect()
}

/// Keeps the lines inside the windows, and the invocation or completion that goes with
/// each kept line.
fn keep_lines<I>(history: I, windows: &Windows) -> BTreeMap<u64, Op>
where
    I: IntoIterator,
    I::Item: Borrow<Op>,
{
    let mut kept = BTreeMap::new();
    let mut last_invoke: HashMap<Process, Op> = HashMap::new();
    let mut wants_completion: BTreeSet<Process> = BTreeSet::new();
    for op in history {
        let op = op.borrow();
        let inside = windows.contains(op.index);
        if op.kind == OpType::Invoke {
            wants_completion.remove(&op.process);
            if inside {
                wants_completion.insert(op.process);
                kept.insert(op.index, op.clone());
            } else {
                last_invoke.insert(op.process, op.clone());
            }
            continue;
        }
        if inside || wants_completion.remove(&op.process) {
            if let Some(invoke) = last_invoke.remove(&op.process) {
                kept.insert(invoke.index, invoke);
            }
            kept.insert(op.index, op.clone());
        }
        last_invoke.remove(&op.process);
    }
    kept
}

/// One operation to draw: an invocation and its completion, either possibly missing.
struct DrawnOp<'a> {
    process: Process,
    f: F,
    invoke: Option<&'a Op>,
    complete: Option<&'a Op>,
}

impl DrawnOp<'_> {
    fn first(&self) -> u64 {
        self.invoke.or(self.complete).map_or(0, |op| op.index)
    }

    fn indexes(&self) -> impl Iterator<Item = u64> + '_ {
        self.invoke.into_iter().chain(self.complete).map(|op| op.index)
    }

    fn is(&self, op_ref: &OpRef) -> bool {
        self.process == op_ref.process
            && (self.invoke.map(|op| op.index) == op_ref.invoke && op_ref.invoke.is_some()
                || self.complete.map(|op| op.index) == op_ref.complete && op_ref.complete.is_some())
    }
}

/// Pairs the kept lines into operations, per process, in history order.
fn pair(kept: &BTreeMap<u64, Op>) -> Vec<DrawnOp<'_>> {
    let mut ops: Vec<DrawnOp<'_>> = Vec::new();
    let mut open: HashMap<Process, usize> = HashMap::new();
    for op in kept.values() {
        if op.f == F::Crash {
            // A crash is an instant; whatever the process had open is never completed.
            open.remove(&op.process);
            ops.push(DrawnOp { process: op.process, f: op.f, invoke: None, complete: Some(op) });
            continue;
        }
        if op.kind == OpType::Invoke {
            let drawn = DrawnOp { process: op.process, f: op.f, invoke: Some(op), complete: None };
            open.insert(op.process, ops.len());
            ops.push(drawn);
            continue;
        }
        match open.remove(&op.process) {
            Some(i) if ops[i].f == op.f => ops[i].complete = Some(op),
            _ => {
                ops.push(DrawnOp { process: op.process, f: op.f, invoke: None, complete: Some(op) })
            }
        }
    }
    ops.sort_by_key(DrawnOp::first);
    ops
}

fn page_head(page: &mut String, report: &Report) {
    let verdict = match report.valid {
        Validity::Valid => "valid",
        Validity::Invalid => "anomalies found",
        Validity::Unknown => "unknown",
    };
    page.push_str(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>cairn-check report</title>\n<style>\n\
         body{font-family:system-ui,sans-serif;margin:24px;color:#222}\n\
         h1{margin-bottom:4px} .verdict{font-size:1.2em;font-weight:600}\n\
         .valid{color:#2e7d32} .invalid{color:#c62828} .unknown{color:#ef6c00}\n\
         table{border-collapse:collapse;margin:12px 0}\n\
         td,th{border:1px solid #ccc;padding:3px 8px}\n\
         section{margin:28px 0;border-top:1px solid #ddd;padding-top:8px}\n\
         .timeline{overflow-x:auto;border:1px solid #eee;background:#fcfcfc}\n\
         pre{background:#f5f5f5;padding:8px;overflow-x:auto;font-size:12px}\n\
         .legend span{display:inline-block;padding:1px 8px;margin-right:6px;border:1px solid}\n\
         </style>\n</head>\n<body>\n<h1>cairn-check report</h1>\n",
    );
    let class = match report.valid {
        Validity::Valid => "valid",
        Validity::Invalid => "invalid",
        Validity::Unknown => "unknown",
    };
    let _ = writeln!(
        page,
        "<p class=\"verdict {class}\">{verdict}</p>\n<p>{} operations; {} partitions; {} \
         register keys.</p>",
        report.ops, report.stats.partitions, report.stats.register_keys
    );
    for reason in &report.unknown {
        let _ = writeln!(page, "<p class=\"unknown\">{}</p>", escape(reason));
    }
    if report.kinds().is_empty() {
        page.push_str("<p>No anomalies.</p>\n");
        return;
    }
    page.push_str("<table><tr><th>anomaly</th><th>found</th><th>drawn below</th></tr>\n");
    for (kind, count) in &report.anomaly_counts {
        let drawn = report.of(*kind).len().min(HTML_ANOMALIES_PER_KIND_MAX);
        let _ = writeln!(page, "<tr><td>{}</td><td>{count}</td><td>{drawn}</td></tr>", kind.name());
    }
    page.push_str(
        "</table>\n<p class=\"legend\">Bars run from invocation to completion: \
         <span style=\"background:#d7efd7;border-color:#2e7d32\">ok</span>\
         <span style=\"background:#f8d0d0;border-color:#c62828\">fail</span>\
         <span style=\"background:#fde3c0;border-color:#ef6c00\">info</span>\
         <span style=\"background:#eee;border-color:#777\">no completion</span>\
         <span style=\"color:#c62828;border-color:#c62828\">&#x2716; crash</span> \
         Thick black outline: an operation that proves the anomaly. \
         Hover for the lines.</p>\n",
    );
}

/// `number` is (position in the page, position among its kind), both counted from 1.
fn anomaly_section(
    page: &mut String,
    (id, number): (usize, usize),
    anomaly: &Anomaly,
    ops: &[DrawnOp<'_>],
) {
    let kind = anomaly.kind().name();
    let json = serde_json::to_string_pretty(anomaly).unwrap_or_default();
    let _ = writeln!(
        page,
        "<section id=\"a{id}\">\n<h2>{kind} #{number}</h2>\n<p>{}</p>\n<div class=\"timeline\">",
        escape(&summary(anomaly))
    );
    let proof = anomaly.ops();
    let windows = Windows::new(&[anomaly]);
    let shown: Vec<&DrawnOp<'_>> = ops
        .iter()
        .filter(|op| proof.iter().any(|p| op.is(p)) || op.indexes().any(|i| windows.contains(i)))
        .collect();
    timeline(page, &shown, &proof);
    let _ = writeln!(
        page,
        "</div>\n<details><summary>the anomaly as JSON</summary><pre>{}</pre></details>\n\
         </section>",
        escape(&json)
    );
}

/// One sentence on what went wrong.
fn summary(anomaly: &Anomaly) -> String {
    match anomaly {
        Anomaly::LostWrite(a) => format!(
            "{}/{}: value {} was acknowledged at offset {}, a poll read offset {}, no poll \
             read it.",
            a.topic, a.partition, a.value, a.offset, a.read_above.offset
        ),
        Anomaly::Unseen(a) => match a.read_before {
            None => format!(
                "{}/{}: value {} was acknowledged at offset {} and never read, not even by \
                 the final drain.",
                a.topic, a.partition, a.value, a.offset
            ),
            Some(read) => format!(
                "{}/{}: value {} was acknowledged at offset {}, read at offset {} during the \
                 run, and not read by the final drain.",
                a.topic, a.partition, a.value, a.offset, read.offset
            ),
        },
        Anomaly::Duplicate(a) => {
            let offsets: Vec<String> = a.seen.iter().map(|s| s.offset.to_string()).collect();
            format!(
                "{}/{}: value {} at offsets {}.",
                a.topic,
                a.partition,
                a.value,
                offsets.join(", ")
            )
        }
        Anomaly::InconsistentOffsets(a) => {
            let values: Vec<String> = a.seen.iter().map(|s| s.value.to_string()).collect();
            format!(
                "{}/{}: offset {} holds values {}.",
                a.topic,
                a.partition,
                a.offset,
                values.join(", ")
            )
        }
        Anomaly::NonmonotonicSend(a) | Anomaly::NonmonotonicPoll(a) | Anomaly::PollSkip(a) => {
            format!(
                "{}/{}: process {} went from offset {} to offset {}{}.",
                a.topic,
                a.partition,
                a.process,
                a.previous.offset,
                a.next.offset,
                a.skipped_count
                    .map(|n| format!(", skipping {n} known offsets"))
                    .unwrap_or_default()
            )
        }
        Anomaly::AbortedRead(a) => format!(
            "{}/{}: value {} was read at offset {} though its send failed.",
            a.topic, a.partition, a.value, a.offset
        ),
        Anomaly::PhantomRead(a) => format!(
            "{}/{}: value {} was read at offset {} though no one sent it.",
            a.topic, a.partition, a.value, a.offset
        ),
        Anomaly::RealtimeOrder(a) => format!(
            "{}/{}: value {} (offset {}) was acknowledged before value {} was sent, yet {} got \
             offset {}.",
            a.topic,
            a.partition,
            a.earlier.value,
            a.earlier.offset,
            a.later.value,
            a.later.value,
            a.later.offset
        ),
        Anomaly::NotLinearizable(a) => format!(
            "group {:?} {}/{}: after the longest linearizable prefix the committed offset is {}, \
             and the {} of {} cannot be placed.",
            a.group, a.topic, a.partition, a.state, a.op.op.f, a.op.offset
        ),
    }
}

/// Draws one SVG timeline of `ops`; the operations in `proof` are outlined.
fn timeline(page: &mut String, ops: &[&DrawnOp<'_>], proof: &[OpRef]) {
    let lanes: Vec<Process> =
        ops.iter().map(|op| op.process).collect::<BTreeSet<_>>().into_iter().collect();
    let indexes: BTreeSet<u64> = ops.iter().flat_map(|op| op.indexes()).collect();
    // x of each line drawn; a break where the history skips lines.
    let mut x_of: HashMap<u64, u64> = HashMap::new();
    let mut breaks: Vec<u64> = Vec::new();
    let mut x = LABEL_WIDTH;
    let mut previous: Option<u64> = None;
    for &index in &indexes {
        if previous.is_some_and(|p| index > p + 1) {
            breaks.push(x + GAP_WIDTH / 2);
            x += GAP_WIDTH;
        }
        x_of.insert(index, x + COLUMN_WIDTH / 2);
        x += COLUMN_WIDTH;
        previous = Some(index);
    }
    let width = x + COLUMN_WIDTH;
    let height = AXIS_HEIGHT + LANE_HEIGHT * lanes.len() as u64 + 8;
    let _ = writeln!(
        page,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"monospace\" font-size=\"11\">"
    );
    for (lane, process) in lanes.iter().enumerate() {
        let y = AXIS_HEIGHT + LANE_HEIGHT * lane as u64;
        let fill = if lane % 2 == 0 { "#f4f6f8" } else { "#ffffff" };
        let _ = writeln!(
            page,
            "<rect x=\"0\" y=\"{y}\" width=\"{width}\" height=\"{LANE_HEIGHT}\" fill=\"{fill}\"/>\
             <text x=\"6\" y=\"{}\" font-family=\"sans-serif\">process {process}</text>",
            y + LANE_HEIGHT / 2 + 4
        );
    }
    for (&index, &x) in &x_of {
        let _ = writeln!(
            page,
            "<text x=\"{x}\" y=\"{}\" transform=\"rotate(-45 {x} {})\" fill=\"#666\" \
             font-size=\"9\">{index}</text>",
            AXIS_HEIGHT - 6,
            AXIS_HEIGHT - 6
        );
    }
    for x in breaks {
        let _ = writeln!(
            page,
            "<line x1=\"{x}\" y1=\"{AXIS_HEIGHT}\" x2=\"{x}\" y2=\"{height}\" stroke=\"#999\" \
             stroke-dasharray=\"3,3\"><title>lines left out</title></line>"
        );
    }
    for op in ops {
        let lane = lanes.iter().position(|p| *p == op.process).expect("a lane per process");
        let lane_y = AXIS_HEIGHT + LANE_HEIGHT * lane as u64;
        match op.complete.filter(|_| op.f == F::Crash) {
            Some(crash) => crash_marker(page, crash, lane_y, x_of[&crash.index]),
            None => {
                let proves = proof.iter().any(|p| op.is(p));
                bar(page, op, lane_y, &x_of, width, proves);
            }
        }
    }
    page.push_str("</svg>\n");
}

fn bar(
    page: &mut String,
    op: &DrawnOp<'_>,
    lane_y: u64,
    x_of: &HashMap<u64, u64>,
    width: u64,
    proves: bool,
) {
    let x_start = op.invoke.map_or(LABEL_WIDTH, |o| x_of[&o.index] - COLUMN_WIDTH / 2 + 2);
    let x_end = op.complete.map_or(width - 2, |o| x_of[&o.index] + COLUMN_WIDTH / 2 - 2);
    let kind = op.complete.map(|o| o.kind);
    let (fill, stroke) = match kind {
        Some(OpType::Ok) => ("#d7efd7", "#2e7d32"),
        Some(OpType::Fail) => ("#f8d0d0", "#c62828"),
        Some(OpType::Info) => ("#fde3c0", "#ef6c00"),
        _ => ("#eeeeee", "#777777"),
    };
    let (stroke, stroke_width) = if proves { ("#000000", 3) } else { (stroke, 1) };
    let y = lane_y + (LANE_HEIGHT - BAR_HEIGHT) / 2;
    let title = op.invoke.into_iter().chain(op.complete).map(line_json).collect::<Vec<_>>();
    let label = label(op);
    let characters = ((x_end - x_start) / 7).max(1) as usize;
    let shown: String = if label.chars().count() > characters {
        label.chars().take(characters.saturating_sub(1)).chain(['…']).collect()
    } else {
        label
    };
    let _ = writeln!(
        page,
        "<g><title>{}</title><rect x=\"{x_start}\" y=\"{y}\" width=\"{}\" height=\"{BAR_HEIGHT}\" \
         rx=\"4\" fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"{stroke_width}\"/>\
         <text x=\"{}\" y=\"{}\">{}</text></g>",
        escape(&title.join("\n")),
        (x_end - x_start).max(4),
        x_start + 4,
        y + BAR_HEIGHT / 2 + 4,
        escape(&shown)
    );
}

fn crash_marker(page: &mut String, crash: &Op, lane_y: u64, x: u64) {
    let (y_top, y_bottom) = (lane_y + 8, lane_y + LANE_HEIGHT - 8);
    let _ = writeln!(
        page,
        "<g stroke=\"#c62828\" stroke-width=\"3\"><title>{}</title>\
         <line x1=\"{}\" y1=\"{y_top}\" x2=\"{}\" y2=\"{y_bottom}\"/>\
         <line x1=\"{}\" y1=\"{y_bottom}\" x2=\"{}\" y2=\"{y_top}\"/></g>",
        escape(&line_json(crash)),
        x - 7,
        x + 7,
        x - 7,
        x + 7
    );
}

fn line_json(op: &Op) -> String {
    serde_json::to_string(op).unwrap_or_default()
}

/// A few words on what the operation did, read off its completion (or invocation).
fn label(op: &DrawnOp<'_>) -> String {
    let value = op.complete.filter(|o| o.value != Value::Null).or(op.invoke).map(|o| &o.value);
    let detail = match value {
        Some(Value::Send(send)) => match send.offset {
            Some(offset) => format!(" {}/{} {}@{offset}", send.topic, send.partition, send.value),
            None => format!(" {}/{} {}", send.topic, send.partition, send.value),
        },
        Some(Value::Poll(poll)) if !poll.records.is_empty() => {
            let records: Vec<String> =
                poll.records.iter().map(|r| format!("{}@{}", r.value, r.offset)).collect();
            format!(" {}", records.join(" "))
        }
        Some(Value::Offsets(entries)) => {
            let offsets: Vec<String> = entries
                .iter()
                .map(|e| format!("{}={}", e.partition, e.offset.unwrap_or(-1)))
                .collect();
            format!(" {}", offsets.join(" "))
        }
        _ => String::new(),
    };
    format!("{}{detail}", op.f)
}

fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{self, Fault, Workload};
    use crate::{Options, check_ops};

    #[test]
    fn report_of_a_lost_write_draws_its_send_and_poll() {
        let mut history = synth::generate(&Workload { seed: 11, ..Workload::default() });
        synth::inject(&mut history, Fault::DropAcknowledged, 3).expect("injectable");
        let report = check_ops(history.ops(), &Options::default()).unwrap();
        let mut page = Vec::new();
        write_report(&report, history.ops(), &mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(page.starts_with("<!doctype html>"));
        assert!(page.contains("<h2>lost-write #1</h2>"));
        assert!(page.contains("<svg"));
        assert!(page.contains("stroke=\"#000000\""), "the proving operations are outlined");
        for fetching in ["src=", "href=", "<script", "@import", "url("] {
            assert!(!page.contains(fetching), "the page fetches nothing: {fetching}");
        }
        assert!(page.trim_end().ends_with("</html>"));
    }

    #[test]
    fn windows_merge_and_contain() {
        let windows = Windows { ranges: vec![(0, 5), (10, 12)] };
        assert!(windows.contains(0) && windows.contains(5) && windows.contains(11));
        assert!(!windows.contains(6) && !windows.contains(13));
    }

    #[test]
    fn escape_covers_markup() {
        assert_eq!(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }
}
