//! Every scenario in `scenarios/` parses, opens with a comment saying what it is meant to
//! catch, and passes on a few seeds (issue 4: CI runs every scenario).

use std::path::PathBuf;

use cairn_sim::run::{RunSpec, run_seed};
use cairn_sim::scenario::Scenario;

/// Seeds each scenario runs in this test (CI's sweep runs more through the CLI).
const SEEDS: std::ops::Range<u64> = 0..3;

fn scenarios() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn there_are_at_least_eight_scenarios_each_with_its_purpose() {
    let files = scenarios();
    assert!(files.len() >= 8, "only {} scenarios", files.len());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.starts_with("# "), "{} does not open with a comment", file.display());
    }
}

#[test]
fn every_scenario_passes_on_a_few_seeds() {
    for file in scenarios() {
        let scenario = Scenario::load(&file).unwrap();
        let spec = RunSpec {
            scenario: Some(scenario),
            scenario_path: Some(file.display().to_string()),
            ..RunSpec::default()
        };
        for seed in SEEDS {
            let outcome = run_seed(seed, &spec).unwrap();
            assert_eq!(
                outcome.violation,
                None,
                "{} seed {seed}; replay: {}",
                file.display(),
                spec.replay_command(seed)
            );
            assert!(outcome.coverage.events > 100, "{} seed {seed} did nothing", file.display());
        }
    }
}

#[test]
fn a_bad_scenario_is_refused_with_a_clear_message() {
    let error = Scenario::parse("[cluster]\nnodez = 3\n").unwrap_err();
    assert!(error.contains("nodez"), "{error}");
    let scenario =
        Scenario::parse("[cluster]\nnodes = 2\n[[at]]\ns = 1.0\ndo = \"crash\"\nnode = 3\n")
            .unwrap();
    let mut params = cairn_sim::params::Params::draw(0);
    let error = scenario.apply(&mut params).unwrap_err();
    assert!(error.contains("node 3"), "{error}");
}

#[test]
fn a_scenario_fixes_the_clients_think_time_and_the_run_uses_it() {
    let scenario = Scenario::parse("[workload]\nthink_ms_max = 7\n").unwrap();
    for seed in 0..20 {
        let mut params = cairn_sim::params::Params::draw(seed);
        scenario.apply(&mut params).unwrap();
        assert_eq!(params.think_ms_max, 7, "seed {seed}");
    }
    // Fixing it leaves every other draw as it was: the seed's network is the same.
    let mut fixed = cairn_sim::params::Params::draw(3);
    scenario.apply(&mut fixed).unwrap();
    let drawn = cairn_sim::params::Params::draw(3);
    assert_eq!(fixed.net_latency_us, drawn.net_latency_us);
    // The run uses it, and its banner says so.
    let spec = RunSpec { scenario: Some(scenario), ..RunSpec::default() };
    let outcome = run_seed(3, &spec).unwrap();
    assert_eq!(outcome.params.think_ms_max, 7);
    let banner = outcome.params.to_string();
    assert!(banner.contains("think <= 7 ms"), "{banner}");
}
