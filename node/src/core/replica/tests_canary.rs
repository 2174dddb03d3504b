//! The replication canaries of design §8, each caught by the replica's own tests: with the
//! bug planted (`core::log::canary`, thread-local, so parallel tests do not see it) a story
//! test of `tests` fails, and where the seeded random harness of `tests_random` can see the
//! bug, a run fails within a stated number of seeds. Needs `--features canary`.

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::{tests, tests_random};
use crate::core::log::canary::{self, Canary};
use crate::core::topic::Durability;

/// Whether `test` fails with `canary` planted.
fn fails_with(canary: Canary, test: impl FnOnce()) -> bool {
    canary::set(Some(canary));
    let failed = catch_unwind(AssertUnwindSafe(test)).is_err();
    canary::set(None);
    failed
}

/// The seeds of `seeds` whose random run (fsync, crashes, 400 steps) fails with `canary`.
fn failing_seeds(canary: Canary, seeds: std::ops::Range<u64>, stop_at_first: bool) -> Vec<u64> {
    let mut failing = Vec::new();
    for seed in seeds {
        let run = || {
            tests_random::run(seed, Durability::Fsync, true, 400);
        };
        if fails_with(canary, run) {
            failing.push(seed);
            if stop_at_first {
                break;
            }
        }
    }
    failing
}

/// Asserts that the story test `story` fails with `canary` planted and, if `seeds_max` is
/// given, that a random run fails within the first `seeds_max` seeds.
fn caught(canary: Canary, story: fn(), seeds_max: Option<u64>) {
    assert!(fails_with(canary, story), "{canary:?}: the story test passed");
    if let Some(max) = seeds_max {
        let found = failing_seeds(canary, 0..max, true);
        assert!(!found.is_empty(), "{canary:?}: no random seed of 0..{max} failed");
    }
}

// Figures: `measure_replication_canaries`, seeds 0..100 (docs/simulator.md).

/// Random runs: 93 of 100 seeds fail (acknowledged writes lost after a leader crash), the
/// first at seed 0.
#[test]
fn acks_all_before_isr_is_caught() {
    caught(Canary::AcksAllBeforeIsr, tests::acks_all_waits_for_every_isr_member_fsync, Some(5));
}

/// A liveness bug (a replica out of the ISR holds the HW back; healed runs catch up), so
/// random runs, which heal before they check, never fail: the story test catches it.
#[test]
fn hw_over_all_replicas_is_caught() {
    caught(Canary::HwOverAllReplicas, tests::hw_is_min_flushed_leo_over_isr_not_all_replicas, None);
}

/// Random runs: 99 of 100 seeds fail (a consumer reads at or above the HW), the first at 0.
#[test]
fn leader_leo_visible_is_caught() {
    caught(Canary::LeaderLeoVisible, tests::consumers_read_only_below_the_hw, Some(5));
}

/// Random runs: 16 of 100 seeds fail (committed prefixes disagree, or an acknowledged write
/// is lost), the first at seed 1, at most 29 apart.
#[test]
fn follower_truncating_to_its_hw_is_caught() {
    caught(Canary::FollowerTruncatesToHw, tests::follower_never_truncates_to_own_hw, Some(40));
}

/// The story test catches it (the follower keeps "b"). Random runs need a leader elected
/// over a divergent suffix of its own (from the ELR), which this harness does not do.
#[test]
fn offset_for_newer_epoch_is_caught() {
    let story = tests::leader_answers_an_epoch_it_lacks_with_the_one_before;
    caught(Canary::OffsetForNewerEpoch, story, None);
}

/// Random runs: 24 of 100 seeds fail (a follower's HW covers its divergent suffix, so
/// committed prefixes disagree), the first at seed 6, at most 11 apart. (62 before the
/// strict min ISR rule: a shrunk ISR no longer moves the HW, so fewer followers are told
/// one over a divergent suffix.)
#[test]
fn follower_hw_before_truncation_is_caught() {
    caught(
        Canary::FollowerHwBeforeTruncation,
        tests::follower_applies_leader_hw_only_after_truncation,
        Some(20),
    );
}

/// Prints, for every replication canary, the seeds of 0..100 the random harness catches it
/// on (the figures in docs/simulator.md). Slow: `cargo test -p cairn-node --features canary
/// --lib measure_replication_canaries -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_replication_canaries() {
    for canary in Canary::REPLICATION {
        let failing = failing_seeds(canary, 0..100, false);
        eprintln!("{canary:?}: {} of 0..100 fail: {failing:?}", failing.len());
    }
}
