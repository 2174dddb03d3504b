//! Determinism (issue 4, design §8): the same seed always gives the same rolling hash of
//! every event, the same coverage and the same verdict; different seeds differ.

use std::collections::BTreeSet;

use cairn_sim::run::{RunSpec, run_seed};

/// Seeds checked; each runs twice.
const SEEDS: std::ops::Range<u64> = 0..24;

#[test]
fn the_same_seed_gives_the_same_hash() {
    let spec = RunSpec { keep_history: true, ..RunSpec::default() };
    let mut hashes = BTreeSet::new();
    for seed in SEEDS {
        let a = run_seed(seed, &spec).unwrap();
        let b = run_seed(seed, &spec).unwrap();
        assert_eq!(a.hash, b.hash, "seed {seed}: the event hashes differ");
        assert_eq!(a.coverage, b.coverage, "seed {seed}: the coverage differs");
        assert_eq!(a.violation, b.violation, "seed {seed}: the verdicts differ");
        assert_eq!(a.history, b.history, "seed {seed}: the histories differ");
        assert!(a.coverage.events > 100, "seed {seed} did almost nothing");
        hashes.insert(a.hash);
    }
    assert_eq!(hashes.len(), SEEDS.count(), "different seeds gave the same hash");
}

#[test]
fn a_sweep_on_two_threads_gives_the_same_verdicts_as_one() {
    let spec = RunSpec::default();
    let one = cairn_sim::run::sweep(0..8, 1, &spec, None).unwrap();
    let two = cairn_sim::run::sweep(0..8, 2, &spec, None).unwrap();
    assert_eq!(one.failures, two.failures);
    assert_eq!(one.coverage, two.coverage);
}
