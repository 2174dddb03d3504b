//! For every anomaly of design §9, a small handwritten history that must be flagged and a
//! near-identical one that must pass.

mod common;

use cairn_jepsen::report::Anomaly;
use cairn_jepsen::{AnomalyKind, Options, Report, Validity, check_history};
use common::*;

#[track_caller]
fn assert_flags(report: &Report, kind: AnomalyKind) {
    assert_eq!(report.valid, Validity::Invalid, "{}", json(report));
    assert!(report.has(kind), "expected {kind:?}: {}", json(report));
}

#[track_caller]
fn assert_valid(report: &Report) {
    assert_eq!(report.valid, Validity::Valid, "{}", json(report));
    assert!(report.kinds().is_empty());
}

fn json(report: &Report) -> String {
    serde_json::to_string_pretty(report).unwrap()
}

/// Replaces line `at` of `lines`.
fn with(lines: &[String], at: usize, line: String) -> Vec<String> {
    let mut lines = lines.to_vec();
    lines[at] = line;
    lines
}

// lost-write

fn two_sends_then(poll_records: &[(i64, i64)]) -> Vec<String> {
    vec![
        send(0, "invoke", 1, None),
        send(0, "ok", 1, Some(0)),
        send(0, "invoke", 2, None),
        send(0, "ok", 2, Some(1)),
        poll(1, "invoke", &[]),
        poll(1, "ok", poll_records),
    ]
}

#[test]
fn lost_write_acknowledged_value_below_a_read_offset_never_read() {
    let report = check(&two_sends_then(&[(1, 2)]));
    assert_flags(&report, AnomalyKind::LostWrite);
    let Anomaly::LostWrite(lost) = &report.of(AnomalyKind::LostWrite)[0] else { panic!() };
    assert_eq!((lost.value, lost.offset), (1, 0));
    assert_eq!((lost.send.invoke, lost.send.complete), (Some(0), Some(1)));
    assert_eq!((lost.read_above.offset, lost.read_above.op.complete), (1, Some(5)));
    assert_valid(&check(&two_sends_then(&[(0, 1), (1, 2)])));
}

#[test]
fn lost_write_excuses_acks_1_and_acks_0() {
    let lines = two_sends_then(&[(1, 2)]);
    for acks in ["1", "0"] {
        let lines = with(&lines, 0, send_acks(0, "invoke", 1, None, acks));
        let lines = with(&lines, 1, send_acks(0, "ok", 1, Some(0), acks));
        assert_valid(&check(&lines));
    }
    let lines = with(&lines, 0, send_acks(0, "invoke", 1, None, "\"all\""));
    assert_flags(&check(&lines), AnomalyKind::LostWrite);
}

// unseen

fn send_then_final_drain(records: &[(i64, i64)]) -> Vec<String> {
    vec![
        send(0, "invoke", 1, None),
        send(0, "ok", 1, Some(0)),
        assign(1, "invoke"),
        assign(1, "ok"),
        poll_final(1),
        poll(1, "ok", records),
    ]
}

#[test]
fn unseen_acknowledged_value_missed_by_the_final_drain() {
    assert_flags(&check(&send_then_final_drain(&[])), AnomalyKind::Unseen);
    assert_valid(&check(&send_then_final_drain(&[(0, 1)])));
}

#[test]
fn unseen_needs_a_final_drain() {
    let lines = send_then_final_drain(&[]);
    assert_valid(&check(&with(&lines, 4, poll(1, "invoke", &[]))));
}

/// Two values sent and read during the run, then a final drain that reads `drained`.
fn read_then_final_drain(drained: &[(i64, i64)]) -> Vec<String> {
    let mut lines = two_sends_then(&[(0, 1), (1, 2)]);
    lines.extend([assign(2, "invoke"), assign(2, "ok"), poll_final(2), poll(2, "ok", drained)]);
    lines
}

#[test]
fn unseen_value_read_during_the_run_but_gone_from_the_final_drain() {
    // The log lost offset 1 after a consumer read it: design §9's `unseen`, though a poll
    // read the value.
    let report = check(&read_then_final_drain(&[(0, 1)]));
    assert_flags(&report, AnomalyKind::Unseen);
    assert_eq!(report.anomaly_counts[&AnomalyKind::Unseen], 1);
    let Anomaly::Unseen(unseen) = &report.of(AnomalyKind::Unseen)[0] else { panic!() };
    assert_eq!((unseen.value, unseen.offset), (2, 1));
    assert_eq!((unseen.send.invoke, unseen.send.complete), (Some(2), Some(3)));
    let read = unseen.read_before.expect("a poll read it before");
    assert_eq!((read.offset, read.op.invoke, read.op.complete), (1, Some(4), Some(5)));
    assert!(!report.has(AnomalyKind::LostWrite));
    assert_valid(&check(&read_then_final_drain(&[(0, 1), (1, 2)])));
}

#[test]
fn unseen_after_a_read_needs_a_final_drain_and_acks_all() {
    let lines = read_then_final_drain(&[(0, 1)]);
    // No final drain: nothing says the value should still be there.
    assert_valid(&check(&with(&lines, 8, poll(2, "invoke", &[]))));
    // acks=1: a leader change may take it back.
    let lines = with(&lines, 2, send_acks(0, "invoke", 2, None, "1"));
    let lines = with(&lines, 3, send_acks(0, "ok", 2, Some(1), "1"));
    assert_valid(&check(&lines));
}

// duplicate

#[test]
fn duplicate_one_value_at_two_offsets() {
    let lines = vec![
        send(0, "invoke", 1, None),
        send(0, "ok", 1, Some(0)),
        poll(1, "invoke", &[]),
        poll(1, "ok", &[(0, 1)]),
        poll(2, "invoke", &[]),
        poll(2, "ok", &[(1, 1)]),
    ];
    let report = check(&lines);
    assert_flags(&report, AnomalyKind::Duplicate);
    let Anomaly::Duplicate(duplicate) = &report.of(AnomalyKind::Duplicate)[0] else { panic!() };
    let offsets: Vec<i64> = duplicate.seen.iter().map(|s| s.offset).collect();
    assert_eq!(offsets, vec![0, 1]);
    assert_valid(&check(&with(&lines, 5, poll(2, "ok", &[(0, 1)]))));
}

// inconsistent-offsets

#[test]
fn inconsistent_offsets_two_values_at_one_offset() {
    let lines = vec![
        send(0, "invoke", 1, None),
        send(0, "ok", 1, Some(0)),
        send(0, "invoke", 2, None),
        send(0, "info", 2, None),
        poll(1, "invoke", &[]),
        poll(1, "ok", &[(0, 2)]),
    ];
    let report = check(&lines);
    assert_flags(&report, AnomalyKind::InconsistentOffsets);
    assert_eq!(report.kinds(), vec![AnomalyKind::InconsistentOffsets]);
    assert_valid(&check(&with(&lines, 5, poll(1, "ok", &[(0, 1), (1, 2)]))));
}

// nonmonotonic-send

#[test]
fn nonmonotonic_send_one_process_goes_backwards() {
    let lines = vec![
        send(0, "invoke", 1, None),
        send(0, "ok", 1, Some(5)),
        send(0, "invoke", 2, None),
        send(0, "ok", 2, Some(3)),
    ];
    assert_flags(&check(&lines), AnomalyKind::NonmonotonicSend);
    assert_valid(&check(&with(&lines, 3, send(0, "ok", 2, Some(6)))));
}

// nonmonotonic-poll

fn poll_twice_with(between: Vec<String>, second: &[(i64, i64)]) -> Vec<String> {
    let mut lines = vec![
        send(0, "invoke", 1, None),
        send(0, "ok", 1, Some(0)),
        send(0, "invoke", 2, None),
        send(0, "ok", 2, Some(1)),
        poll(1, "invoke", &[]),
        poll(1, "ok", &[(0, 1), (1, 2)]),
    ];
    lines.extend(between);
    lines.extend([poll(1, "invoke", &[]), poll(1, "ok", second)]);
    lines
}

#[test]
fn nonmonotonic_poll_a_consumer_reads_an_offset_again() {
    assert_flags(&check(&poll_twice_with(vec![], &[(0, 1)])), AnomalyKind::NonmonotonicPoll);
    assert_valid(&check(&poll_twice_with(vec![], &[])));
}

#[test]
fn nonmonotonic_poll_within_one_poll() {
    let lines = vec![
        send(0, "invoke", 1, None),
        send(0, "ok", 1, Some(0)),
        send(0, "invoke", 2, None),
        send(0, "ok", 2, Some(1)),
        poll(1, "invoke", &[]),
        poll(1, "ok", &[(1, 2), (0, 1)]),
    ];
    assert_flags(&check(&lines), AnomalyKind::NonmonotonicPoll);
    assert_valid(&check(&with(&lines, 5, poll(1, "ok", &[(0, 1), (1, 2)]))));
}

#[test]
fn nonmonotonic_poll_forgiven_after_assign_subscribe_crash_or_unknown_poll() {
    let resets = [
        vec![assign(1, "invoke"), assign(1, "ok")],
        vec![subscribe(1, "invoke"), subscribe(1, "ok")],
        vec![crash(1)],
        vec![poll(1, "invoke", &[]), poll(1, "info", &[])],
    ];
    for reset in resets {
        assert_valid(&check(&poll_twice_with(reset, &[(0, 1)])));
    }
    // Another process's reset forgives nothing.
    let other = vec![assign(2, "invoke"), assign(2, "ok")];
    assert_flags(&check(&poll_twice_with(other, &[(0, 1)])), AnomalyKind::NonmonotonicPoll);
}

// poll-skip

fn three_sends_then_polls(first: &[(i64, i64)], second: &[(i64, i64)]) -> Vec<String> {
    vec![
        send(0, "invoke", 1, None),
        send(0, "ok", 1, Some(0)),
        send(0, "invoke", 2, None),
        send(0, "ok", 2, Some(1)),
        send(0, "invoke", 3, None),
        send(0, "ok", 3, Some(2)),
        poll(1, "invoke", &[]),
        poll(1, "ok", first),
        poll(1, "invoke", &[]),
        poll(1, "ok", second),
        poll(2, "invoke", &[]),
        poll(2, "ok", &[(0, 1), (1, 2), (2, 3)]),
    ]
}

#[test]
fn poll_skip_a_consumer_jumps_over_a_known_offset() {
    let report = check(&three_sends_then_polls(&[(0, 1)], &[(2, 3)]));
    assert_flags(&report, AnomalyKind::PollSkip);
    let Anomaly::PollSkip(skip) = &report.of(AnomalyKind::PollSkip)[0] else { panic!() };
    assert_eq!((skip.previous.offset, skip.next.offset, skip.skipped.clone()), (0, 2, vec![1]));
    assert_valid(&check(&three_sends_then_polls(&[(0, 1)], &[(1, 2), (2, 3)])));
}

#[test]
fn poll_skip_ignores_gaps_no_operation_knows_of() {
    // Offsets 1 and 2 hold nothing anyone saw (transaction markers, say).
    let lines = vec![
        send(0, "invoke", 1, None),
        send(0, "ok", 1, Some(0)),
        send(0, "invoke", 3, None),
        send(0, "ok", 3, Some(3)),
        poll(1, "invoke", &[]),
        poll(1, "ok", &[(0, 1)]),
        poll(1, "invoke", &[]),
        poll(1, "ok", &[(3, 3)]),
    ];
    assert_valid(&check(&lines));
}

#[test]
fn poll_skip_forgiven_after_assign() {
    let mut lines = three_sends_then_polls(&[(0, 1)], &[(2, 3)]);
    lines.splice(8..8, [assign(1, "invoke"), assign(1, "ok")]);
    assert_valid(&check(&lines));
}

// aborted-read

#[test]
fn aborted_read_a_failed_send_is_read() {
    let lines = vec![
        send(0, "invoke", 1, None),
        send(0, "fail", 1, None),
        poll(1, "invoke", &[]),
        poll(1, "ok", &[(0, 1)]),
    ];
    let report = check(&lines);
    assert_flags(&report, AnomalyKind::AbortedRead);
    assert_eq!(report.kinds(), vec![AnomalyKind::AbortedRead]);
    assert_valid(&check(&with(&lines, 1, send(0, "info", 1, None))));
}

// phantom-read

#[test]
fn phantom_read_a_value_no_one_sent() {
    let lines = vec![
        send(0, "invoke", 2, None),
        send(0, "info", 2, None),
        poll(1, "invoke", &[]),
        poll(1, "ok", &[(0, 1)]),
    ];
    assert_flags(&check(&lines), AnomalyKind::PhantomRead);
    let sent = with(&with(&lines, 0, send(0, "invoke", 1, None)), 1, send(0, "info", 1, None));
    assert_valid(&check(&sent));
}

#[test]
fn a_send_still_open_at_the_end_may_have_happened() {
    let lines = vec![send(0, "invoke", 1, None), poll(1, "invoke", &[]), poll(1, "ok", &[(0, 1)])];
    assert_valid(&check(&lines));
}

#[test]
fn a_crash_leaves_the_open_send_unknown() {
    let lines = vec![
        send(0, "invoke", 1, None),
        crash(0),
        poll(1, "invoke", &[]),
        poll(1, "ok", &[(0, 1)]),
    ];
    let report = check(&lines);
    assert_valid(&report);
    assert_eq!(report.stats.crashes, 1);
    assert_eq!(report.stats.sends_unknown, 1);
}

// realtime-order

fn send_after_send(second_invoke_at: usize) -> Vec<String> {
    let mut lines = vec![send(0, "invoke", 1, None), send(0, "ok", 1, Some(1))];
    lines.insert(second_invoke_at, send(1, "invoke", 2, None));
    lines.push(send(1, "ok", 2, Some(0)));
    lines
}

#[test]
fn realtime_order_a_later_send_gets_a_lower_offset() {
    let report = check(&send_after_send(2));
    assert_flags(&report, AnomalyKind::RealtimeOrder);
    assert_eq!(report.kinds(), vec![AnomalyKind::RealtimeOrder]);
    let Anomaly::RealtimeOrder(order) = &report.of(AnomalyKind::RealtimeOrder)[0] else { panic!() };
    assert_eq!((order.earlier.value, order.later.value), (1, 2));
    // Invoked before the first completed: concurrent, any order is fine.
    assert_valid(&check(&send_after_send(1)));
}

#[test]
fn realtime_order_excuses_acks_1() {
    let mut lines = send_after_send(2);
    lines[0] = send_acks(0, "invoke", 1, None, "1");
    assert_valid(&check(&lines));
}

// not-linearizable

fn commits_then_read(read_invoked_at: usize, read: Option<i64>) -> Vec<String> {
    let mut lines = vec![commit(0, "invoke", 5), commit(0, "ok", 5)];
    lines.extend([commit(0, "invoke", 7), commit(0, "ok", 7)]);
    lines.insert(read_invoked_at, committed(1, "invoke", None));
    lines.push(committed(1, "ok", read));
    lines
}

#[test]
fn not_linearizable_a_stale_committed_offset() {
    let report = check(&commits_then_read(4, Some(5)));
    assert_flags(&report, AnomalyKind::NotLinearizable);
    let Anomaly::NotLinearizable(stale) = &report.of(AnomalyKind::NotLinearizable)[0] else {
        panic!()
    };
    assert_eq!((stale.op.offset, stale.state), (5, 7));
    // Invoked while the second commit was open: it may be ordered before it.
    assert_valid(&check(&commits_then_read(3, Some(5))));
    assert_valid(&check(&commits_then_read(4, Some(7))));
}

#[test]
fn not_linearizable_nothing_committed_is_minus_one_or_absent() {
    assert_flags(&check(&commits_then_read(4, None)), AnomalyKind::NotLinearizable);
    assert_flags(&check(&commits_then_read(4, Some(-1))), AnomalyKind::NotLinearizable);
    let before = vec![committed(1, "invoke", None), committed(1, "ok", Some(-1))];
    assert_valid(&check(&before));
}

#[test]
fn an_unknown_commit_stays_open_to_the_end() {
    let lines = vec![
        commit(0, "invoke", 5),
        commit(0, "ok", 5),
        commit(0, "invoke", 7),
        commit(0, "info", 7),
        committed(1, "invoke", None),
        committed(1, "ok", Some(5)),
        committed(1, "invoke", None),
        committed(1, "ok", Some(7)),
    ];
    assert_valid(&check(&lines));
    // A failed commit certainly did not happen.
    assert_flags(&check(&with(&lines, 3, commit(0, "fail", 7))), AnomalyKind::NotLinearizable);
}

#[test]
fn out_of_search_budget_is_unknown() {
    let text = history(&commits_then_read(3, Some(5)));
    let options = Options { search_steps_max: Some(2), ..Options::default() };
    let report = check_history(text.as_bytes(), &options).unwrap();
    assert_eq!(report.valid, Validity::Unknown);
    assert_eq!(report.exit_code(), 2);
    assert!(report.unknown[0].contains("out of time"), "{:?}", report.unknown);
}

#[test]
fn anomalies_are_counted_beyond_the_kept_list() {
    let mut lines = Vec::new();
    for value in 0..5 {
        lines.extend([poll(1, "invoke", &[]), poll(1, "ok", &[(value, value)])]);
    }
    let options = Options { anomalies_per_kind_max: 2, ..Options::default() };
    let report = check_history(history(&lines).as_bytes(), &options).unwrap();
    assert_eq!(report.of(AnomalyKind::PhantomRead).len(), 2);
    assert_eq!(report.anomaly_counts[&AnomalyKind::PhantomRead], 5);
}
