//! `cairn-sim`: run one seed, sweep a range of seeds, or measure the simulator's speed.

use std::path::PathBuf;
use std::process::ExitCode;

use cairn_sim::run::{self, Canary, RunSpec};
use cairn_sim::scenario::Scenario;
use clap::{Parser, Subcommand};

/// jemalloc, not the system allocator (measured in docs/simulator.md, "Speed").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "cairn-sim", about = "Cairn's deterministic simulator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs one seed, printing its banner, outcome, hash and speed.
    Run {
        /// The seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// A scenario fixing parts of the run.
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Writes the history (JSON Lines, design §9) here.
        #[arg(long)]
        history: Option<PathBuf>,
        /// Plants a deliberate bug (needs `--features canary`).
        #[arg(long)]
        canary: Option<String>,
        /// Writes a line per fault and per replica role, epoch or ISR change to stderr, and
        /// the core's log lines (filtered by RUST_LOG, `info` by default).
        #[arg(long)]
        trace: bool,
    },
    /// Runs a range of seeds, printing failing seeds with their replay command and coverage.
    Sweep {
        /// Seeds, as `A..B` (B excluded).
        #[arg(long, default_value = "0..100")]
        seeds: String,
        /// Threads.
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// A scenario fixing parts of every run.
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Plants a deliberate bug (needs `--features canary`).
        #[arg(long)]
        canary: Option<String>,
        /// Skips the minimum-coverage check (for scenarios that fix a narrow run).
        #[arg(long)]
        no_coverage_check: bool,
    },
}

fn spec(scenario: Option<PathBuf>, canary: Option<String>) -> Result<RunSpec, String> {
    let canary = canary.map(|name| Canary::parse(&name)).transpose()?;
    if canary.is_some() && !cfg!(feature = "canary") {
        return Err("--canary needs a build with `--features canary`".into());
    }
    let (scenario, scenario_path) = match scenario {
        Some(path) => (Some(Scenario::load(&path)?), Some(path.display().to_string())),
        None => (None, None),
    };
    Ok(RunSpec { scenario, scenario_path, canary, keep_history: false })
}

fn parse_range(text: &str) -> Result<std::ops::Range<u64>, String> {
    let (a, b) = text.split_once("..").ok_or_else(|| format!("seeds {text:?}: use A..B"))?;
    let a = a.parse().map_err(|e| format!("seeds {text:?}: {e}"))?;
    let b = b.parse().map_err(|e| format!("seeds {text:?}: {e}"))?;
    if a >= b {
        return Err(format!("seeds {text:?}: the range is empty"));
    }
    Ok(a..b)
}

fn main() -> ExitCode {
    match main_inner() {
        Ok(code) => code,
        Err(message) => {
            eprintln!("cairn-sim: {message}");
            ExitCode::from(2)
        }
    }
}

fn main_inner() -> Result<ExitCode, String> {
    match Cli::parse().command {
        Command::Run { seed, scenario, history, canary, trace } => {
            if trace {
                cairn_sim::trace::enable();
                // The core's own log lines too (RUST_LOG, `info` by default), in event order,
                // without wall-clock times: they would differ from run to run.
                let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
                tracing_subscriber::fmt()
                    .with_env_filter(filter)
                    .without_time()
                    .with_writer(std::io::stderr)
                    .init();
            }
            let mut spec = spec(scenario, canary)?;
            spec.keep_history = history.is_some();
            println!("cairn-sim run --seed {seed}");
            println!("{}", spec.params(seed)?);
            run::quiet_panics();
            let outcome = run::run_seed(seed, &spec)?;
            if let (Some(path), Some(bytes)) = (&history, &outcome.history) {
                std::fs::write(path, bytes)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            }
            let c = &outcome.coverage;
            let wall = outcome.wall.as_secs_f64().max(1e-9);
            println!("{c}");
            println!(
                "  hash {:016x} wall {:.3} s events/s {:.0} simulated s per wall s {:.0}",
                outcome.hash,
                wall,
                c.events as f64 / wall,
                c.sim_ns as f64 / 1e9 / wall
            );
            match outcome.violation {
                None => {
                    println!("ok: seed {seed}");
                    Ok(ExitCode::SUCCESS)
                }
                Some(violation) => {
                    println!("VIOLATION seed {seed}: {violation}");
                    println!("replay: {}", spec.replay_command(seed));
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Sweep { seeds, jobs, scenario, canary, no_coverage_check } => {
            let spec = spec(scenario, canary)?;
            let range = parse_range(&seeds)?;
            run::quiet_panics();
            let result = run::sweep(range.clone(), jobs, &spec, None)?;
            for (seed, violation) in &result.failures {
                println!("FAIL seed {seed}: {violation}");
                println!("  replay: {}", spec.replay_command(*seed));
            }
            let wall = result.wall.as_secs_f64().max(1e-9);
            let c = &result.coverage;
            println!("sweep {seeds}: {} failing of {}", result.failures.len(), c.runs);
            println!("{c}");
            println!(
                "  wall {:.1} s events/s {:.0} simulated s per wall s {:.0}",
                wall,
                c.events as f64 / wall,
                c.sim_ns as f64 / 1e9 / wall
            );
            let too_little = if no_coverage_check || spec.scenario.is_some() {
                vec![]
            } else {
                c.too_little(range.end - range.start)
            };
            for why in &too_little {
                println!("COVERAGE too low: {why}");
            }
            let ok = result.failures.is_empty() && too_little.is_empty();
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}
