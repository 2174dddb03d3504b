//! Property tests: histories of a correct in-memory Kafka with concurrent clients, timeouts,
//! failures and crashes are always valid, and one injected fault is always found and named.

use cairn_jepsen::synth::{self, Fault, Mix, Workload};
use cairn_jepsen::{AnomalyKind, History, Options, Validity, check_history, check_ops};
use proptest::prelude::*;

fn workload() -> impl Strategy<Value = Workload> {
    (any::<u64>(), 1u32..=6, 1u32..=4, 40usize..=250, 0u32..=80, 0u32..=60, 0u32..=15).prop_map(
        |(seed, processes, partitions, invocations, timeout, fail, crash)| Workload {
            seed,
            processes,
            partitions,
            invocations,
            mix: Mix::default(),
            timeout_per_mille: timeout,
            fail_per_mille: fail,
            crash_per_mille: crash,
            acks_weak_per_mille: 50,
            poll_records_max: 4,
        },
    )
}

fn options() -> Options {
    Options { search_steps_max: Some(10_000_000), ..Options::default() }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn histories_of_a_correct_log_are_valid(workload in workload()) {
        let history = synth::generate(&workload);
        let report = check_ops(history.ops(), &options()).unwrap();
        prop_assert_eq!(
            report.valid,
            Validity::Valid,
            "{}",
            serde_json::to_string_pretty(&report).unwrap()
        );
        prop_assert!(report.stats.final_drain);
    }

    #[test]
    fn one_injected_fault_is_found_and_named(
        workload in workload(),
        fault_index in 0usize..Fault::ALL.len(),
        fault_seed in any::<u64>(),
    ) {
        let fault = Fault::ALL[fault_index];
        let mut history = synth::generate(&workload);
        let injected = synth::inject(&mut history, fault, fault_seed);
        prop_assume!(injected.is_some(), "no place for {:?}", fault);
        let report = check_ops(history.ops(), &options()).unwrap();
        prop_assert_eq!(report.valid, Validity::Invalid);
        prop_assert!(
            report.has(fault.expected()),
            "{:?} should give {:?}, got {:?}",
            fault,
            fault.expected(),
            report.kinds()
        );
    }

    #[test]
    fn reading_back_a_written_history_gives_the_same_report(workload in workload()) {
        let history = synth::generate(&workload);
        let mut bytes = Vec::new();
        history.write_jsonl(&mut bytes).unwrap();
        let streamed = check_history(&bytes[..], &options()).unwrap();
        let in_memory = check_ops(history.ops(), &options()).unwrap();
        prop_assert_eq!(&streamed, &in_memory);
        prop_assert_eq!(History::read_jsonl(&bytes[..]).unwrap(), history);
    }
}

#[test]
fn each_fault_is_injectable_in_a_typical_history() {
    let history = synth::generate(&Workload { seed: 7, ..Workload::default() });
    for fault in Fault::ALL {
        let mut broken = history.clone();
        assert_eq!(synth::inject(&mut broken, fault, 1), Some(fault.expected()), "{fault:?}");
    }
}

#[test]
fn one_contended_key_is_linearizable() {
    // Ten clients on one key, with repeated offsets and unknown commits: the search
    // backtracks a lot here, and must still answer.
    let history = synth::registers(4, 10, 1, 3_000);
    let report = check_ops(history.ops(), &options()).unwrap();
    assert_eq!(report.valid, Validity::Valid, "{report:?}");
}

#[test]
fn register_workload_is_linearizable_and_nontrivial() {
    let history = synth::registers(3, 10, 5, 2_000);
    let report = check_ops(history.ops(), &options()).unwrap();
    assert_eq!(report.valid, Validity::Valid, "{report:?}");
    assert_eq!(report.stats.register_keys, 5);
    assert!(report.stats.register_ops > 1_500, "{:?}", report.stats);
    assert!(!report.has(AnomalyKind::NotLinearizable));
}
