//! `cairn-jepsen test`: starts real `cairn` nodes on this machine, drives them with
//! cairn-client through fault-injecting proxies while killing, pausing, partitioning and
//! filling their disks on a schedule drawn from a seed, then checks the history with the
//! same checker as `cairn-check` and writes a results folder (docs/jepsen.md).
//!
//! Exits 0 when the history is valid, 1 on any anomaly, 2 when the verdict is unknown or
//! the harness itself failed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cairn_jepsen::harness::schedule::FaultKind;
use cairn_jepsen::harness::{self, TestOptions};
use clap::{Parser, Subcommand};

/// Fault testing of real Cairn processes.
#[derive(Parser, Debug)]
#[command(name = "cairn-jepsen", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs a cluster of real nodes under faults, records and checks the history.
    ///
    /// Example: cairn-jepsen test --nodes 3 --time 120s --rate 200
    /// --faults kill,pause,partition --seed 1 --out results/seed-1
    Test(TestArgs),
}

#[derive(clap::Args, Debug)]
struct TestArgs {
    /// Nodes in the cluster (every one a voter).
    #[arg(long, default_value_t = 3)]
    nodes: u32,
    /// How long the workload and its faults run: 120s, 2m, 30m, 1h.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    time: Duration,
    /// Operations per second over every client.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Faults to inject: kill, pause, partition, disk-full (comma-separated), all, or none.
    /// disk-full needs root.
    #[arg(long, default_value = "kill,pause,partition", value_parser = parse_faults)]
    faults: FaultList,
    /// The seed of the fault schedule and the clients' choices (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// The `cairn` binary (default: the one next to this binary).
    #[arg(long, value_name = "PATH")]
    cairn: Option<PathBuf>,
    /// The results folder (default: jepsen-results/seed-N); must be new or empty.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Partitions of the test topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Size of each node's tmpfs for disk-full, in MiB.
    #[arg(long, default_value_t = 256)]
    disk_mb: u64,
    /// Keep the nodes' data directories in the results folder.
    #[arg(long)]
    keep_data: bool,
}

/// The `--faults` list, one flag value.
#[derive(Clone, Debug)]
struct FaultList(Vec<FaultKind>);

fn parse_faults(text: &str) -> Result<FaultList, String> {
    FaultKind::parse_list(text).map(FaultList)
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| format!("{text:?}: use e.g. 120s, 2m, 1h"))?;
    let seconds = match unit {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(format!("{text:?}: the unit must be ms, s, m or h")),
    };
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(format!("{text:?}: give a positive duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn default_cairn() -> PathBuf {
    let here = std::env::current_exe().ok();
    let dir = here.as_ref().and_then(|path| path.parent());
    dir.map_or_else(|| PathBuf::from("cairn"), |dir| dir.join("cairn"))
}

fn main() -> ExitCode {
    let Command::Test(args) = Cli::parse().command;
    let faults = args.faults.0;
    let seed = args.seed.unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        now.map_or(0, |d| d.as_secs())
    });
    let options = TestOptions {
        nodes: args.nodes,
        time: args.time,
        rate: args.rate,
        faults,
        seed,
        cairn: args.cairn.unwrap_or_else(default_cairn),
        out: args.out.unwrap_or_else(|| PathBuf::from(format!("jepsen-results/seed-{seed}"))),
        partitions: args.partitions,
        disk_mb: args.disk_mb,
        keep_data: args.keep_data,
    };
    if let Err(message) = options.validate() {
        eprintln!("cairn-jepsen: {message}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cairn-jepsen: cannot start the runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let out = options.out.clone();
    match runtime.block_on(harness::run(options)) {
        Ok(summary) => {
            match serde_json::to_string_pretty(&summary) {
                Ok(text) => println!("{text}"),
                Err(error) => eprintln!("cairn-jepsen: cannot print the summary: {error}"),
            }
            eprintln!("cairn-jepsen: results in {}", out.display());
            ExitCode::from(summary.exit as u8)
        }
        Err(message) => {
            eprintln!("cairn-jepsen: the harness failed: {message} (results in {})", out.display());
            ExitCode::from(2)
        }
    }
}
