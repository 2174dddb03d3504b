//! The `cairn` binary's client commands: `cairn topic create|list|describe|delete`,
//! `cairn produce`, `cairn consume`, `cairn group list|describe|lag` and `cairn bench
//! produce|consume|e2e`. Their flags are defined here (clap), the binary
//! only routes to [`run`]; every command is a thin layer over the library.
//!
//! Output is for people by default and one JSON document (or one JSON object per record
//! for `consume`) with `--output json`, for scripts. Errors say what to do next.

mod bench;
mod consume;
mod group;
mod produce;
mod topic;

use clap::{Args, ValueEnum};

pub use bench::{
    BenchArgs, BenchCommand, BenchConsumeArgs, BenchE2eArgs, BenchProduceArgs, ProducerFlags,
};
pub use consume::ConsumeArgs;
pub use group::{GroupArgs, GroupCommand};
pub use produce::ProduceArgs;
pub use topic::{TopicArgs, TopicCommand};

use crate::{Client, ClientConfig, Error};

/// Where the cluster is.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// Bootstrap servers, host:port, comma-separated
    #[arg(
        long,
        short = 'b',
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:9092",
        env = "CAIRN_BOOTSTRAP"
    )]
    pub bootstrap: String,
}

impl ConnectArgs {
    async fn connect(&self) -> Result<Client, Failure> {
        Ok(Client::connect(ClientConfig::new(&self.bootstrap)).await?)
    }
}

/// How a command prints what it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Output {
    /// For people: aligned text.
    #[default]
    Text,
    /// For scripts: JSON.
    Json,
}

/// A client command, as the binary hands it over.
#[derive(Debug)]
pub enum Command {
    /// `cairn topic ...`.
    Topic(TopicArgs),
    /// `cairn produce`.
    Produce(ProduceArgs),
    /// `cairn consume`.
    Consume(ConsumeArgs),
    /// `cairn group ...`.
    Group(GroupArgs),
    /// `cairn bench ...`.
    Bench(BenchArgs),
}

/// Why a command failed, which decides the exit status.
#[derive(Debug)]
pub enum Failure {
    /// The command line is wrong (exit 2).
    Usage(String),
    /// The cluster refused, or could not be reached (exit 1).
    Runtime(String),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        match error {
            Error::Config(message) => Failure::Usage(message),
            other => Failure::Runtime(other.to_string()),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Usage(message) | Failure::Runtime(message) => f.write_str(message),
        }
    }
}

/// Runs a client command on its own tokio runtime.
pub fn run(command: Command) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(format!("cannot start the tokio runtime: {e}")))?;
    runtime.block_on(async move {
        match command {
            Command::Topic(args) => topic::run(args).await,
            Command::Produce(args) => produce::run(args).await,
            Command::Consume(args) => consume::run(args).await,
            Command::Group(args) => group::run(args).await,
            Command::Bench(args) => bench::run(args).await,
        }
    })
}

/// `text` as a JSON string when it is UTF-8, else as an array of its bytes, so binary keys
/// and values survive a round trip through a script.
fn json_bytes(data: Option<&[u8]>) -> serde_json::Value {
    match data {
        None => serde_json::Value::Null,
        Some(data) => match std::str::from_utf8(data) {
            Ok(text) => serde_json::Value::String(text.to_string()),
            Err(_) => serde_json::Value::Array(data.iter().map(|&b| b.into()).collect()),
        },
    }
}
