//! `cairn-peerbench`: drives NATS JetStream or Redis Streams with the workloads of Cairn's
//! benchmark suite (issue 10) and prints one JSON object on the last line of stdout.
//! The command line and the report are fixed by the suite's interface; see README.md.

mod common;
mod nats;
mod redis_streams;
mod resp;

use clap::Parser as _;

use crate::common::{Args, System};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(report) => {
            println!("{report}");
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("cairn-peerbench {} {}: error: {err:#}", args.system.name(), args.op.name());
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> anyhow::Result<serde_json::Value> {
    args.validate()?;
    let outcome = match args.system {
        System::Nats => nats::run(args).await?,
        System::Redis => redis_streams::run(args).await?,
    };
    anyhow::ensure!(
        outcome.latency.as_ref().is_none_or(|l| l.count() == args.records),
        "the latency histogram holds {} samples for {} records",
        outcome.latency.as_ref().map_or(0, |l| l.count()),
        args.records
    );
    Ok(common::report(args, &outcome))
}
