//! Seeds the simulator once failed on, outside the ranges CI sweeps, each kept here with what
//! it found: every one must pass. A seed's run changes with the code around it, so a seed that
//! passes here no longer proves its bug absent; it is the test named beside it that does.
//! Still, each of these failed on the code before its fix.

use std::path::PathBuf;

use cairn_sim::run::{RunSpec, run_seed};
use cairn_sim::scenario::Scenario;

fn spec(scenario: Option<&str>) -> RunSpec {
    let path = scenario
        .map(|name| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios").join(name));
    RunSpec {
        scenario: path.as_ref().map(|p| Scenario::load(p).unwrap()),
        scenario_path: path.map(|p| p.display().to_string()),
        ..RunSpec::default()
    }
}

fn passes(seed: u64, scenario: Option<&str>) {
    let outcome = run_seed(seed, &spec(scenario)).unwrap();
    assert_eq!(outcome.violation, None, "seed {seed} of {scenario:?}");
}

/// Decision 0034 (`a_follower_restarting_at_the_leader_log_start_is_handed_the_producers_retention_removed`).
#[test]
fn a_retry_below_a_restarted_followers_log_start_is_not_written_twice() {
    passes(414_939, None);
}

/// Decision 0014's second addendum
/// (`a_rebuild_meeting_damage_after_readable_batches_gives_up_after_bounded_reloads`).
#[test]
fn a_producer_state_rebuild_does_not_reload_for_ever() {
    passes(389_166, None);
    passes(409_855, None);
}

/// A follower restarting its log at its own start, below its HW, after its leader lost the
/// tail (`replicate`): the HW and the producer state follow the log end at once.
#[test]
fn a_follower_restarting_below_its_hw_keeps_the_hw_within_the_log() {
    passes(539_208, None);
}

/// Decisions 0032 (recovery reads that never agree) and 0033 (an answer about a pending
/// topic), and the three-read rule (seed 3259).
#[test]
fn flaky_reads_and_restarts() {
    for seed in [792, 2307, 2489, 2824, 3259] {
        passes(seed, Some("flaky-reads-restart.toml"));
    }
}

/// The checks: a history forked by lost metadata hands epochs out again.
#[test]
fn lost_metadata_starts_the_record_of_epoch_leaders_anew() {
    passes(2027, Some("silent-corruption.toml"));
}

/// The checks: a forked history need not hold what a member knew committed in the old one
/// (Raft's leader completeness is not asked of it).
#[test]
fn lost_metadata_is_not_asked_of_the_leader_of_the_new_history() {
    passes(4818, Some("silent-corruption.toml"));
}
