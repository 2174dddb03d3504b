//! The `cairn` command line: subcommands, flags and their help text.
//!
//! The client commands (topic, produce, consume, group) are defined with the client library, in
//! `cairn_client::cli`; they are routed from here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const ABOUT: &str = "Cairn: a Kafka-compatible distributed log";

const LONG_ABOUT: &str = "Cairn: a Kafka-compatible distributed log.

Kafka clients (librdkafka and kcat, confluent-kafka, kafka-python) connect to a Cairn node as
to a Kafka broker: producers (idempotent ones too), consumers that assign partitions or join
consumer groups, and admin clients. Every write is fsynced before it is acknowledged unless a
topic says otherwise. Transactions are not served yet: a producer with a transactional.id
is refused.";

const EXAMPLES: &str = "\
Examples:
  Try it on this machine (formats ./cairn-data on first use):
    cairn dev

  Try a cluster of three nodes in one process (Kafka on 9092, 9093 and 9094):
    cairn dev --nodes 3

  Create a topic, write two records and read them back:
    cairn topic create demo --partitions 3
    printf 'one\ntwo\n' | cairn produce demo
    cairn consume demo --from-beginning --count 2

  Run a node from a config file:
    cairn format --data-dir /var/lib/cairn
    cairn serve --config /etc/cairn/cairn.toml

Each command has its own help: cairn dev --help, cairn topic --help, cairn produce --help, ...
Logs go to stderr; set RUST_LOG (for example RUST_LOG=debug) for more or less.";

const DEV_EXAMPLES: &str = "\
Examples:
  cairn dev
  cairn dev --data-dir /tmp/cairn --listener 127.0.0.1:19092
  cairn dev --set log.retention.ms=3600000
  cairn dev --nodes 3

Then, with kcat:
  echo hello | kcat -P -b 127.0.0.1:9092 -t demo
  kcat -C -b 127.0.0.1:9092 -t demo -o beginning -e

With --nodes N, node i (1 to N) keeps its data in DIR/node-i and listens on the i-th port
of each range: Kafka from --listener (9092, 9093, ...), peers from --peer-listener (19092,
19093, ...), metrics from --http-listener (9644, 9645, ...). Port 0 picks free ports.
Every node is a voter; auto-created topics get min(3, N) replicas.";

const SERVE_EXAMPLES: &str = "\
Every config file key can also be set by a CAIRN_* environment variable (the key upper-cased,
dots as underscores: log.retention.ms is CAIRN_LOG_RETENTION_MS) and by --set KEY=VALUE.
Flags beat the environment, which beats the file, which beats the defaults.

Examples:
  cairn serve --config cairn.toml
  cairn serve --config cairn.toml --listener 0.0.0.0:9092 --advertised-listener host1:9092
  CAIRN_NODE_ID=2 cairn serve --data-dir /var/lib/cairn --set num.partitions=3

A minimal cairn.toml:
  node.id = 1
  data.dir = \"/var/lib/cairn\"
  listener = \"0.0.0.0:9092\"
  advertised.listener = \"host1.example:9092\"

A node of a three-node cluster adds its members (NODE_ID@HOST:PORT of each node's peer
listener; the same lists on every node, and the same as given to cairn format):
  cluster.voters = \"1@host1.example:19092,2@host2.example:19092,3@host3.example:19092\"
  # cluster.brokers = \"4@host4.example:19092\"   nodes that do not vote (optional)
  # peer.listener = \"0.0.0.0:19092\"   where to accept peers, if not the own entry's address

The data directory must be formatted first: cairn format --data-dir DIR --node-id N.
Every key and its default: docs/operations.md.";

const FORMAT_EXAMPLES: &str = "\
Examples:
  A node of its own:
    cairn format --data-dir /var/lib/cairn

  Node 2 of a three-node cluster (run on each node with its own --node-id, the same
  --cluster-id and the same --voters):
    cairn format --data-dir /var/lib/cairn --node-id 2 --cluster-id prod-eu-1 \\
      --voters 1@host1:19092,2@host2:19092,3@host3:19092

  Node 2 again, after its disk was lost and replaced:
    cairn format --data-dir /var/lib/cairn --node-id 2 --cluster-id prod-eu-1 \\
      --voters 1@host1:19092,2@host2:19092,3@host3:19092 --rejoin

A directory is formatted once. cairn format refuses a directory that already holds Cairn data.";

/// The `cairn` command.
#[derive(Debug, Parser)]
#[command(
    name = "cairn",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = EXAMPLES,
    propagate_version = true,
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one node for development, with defaults for everything
    ///
    /// Formats the data directory (./cairn-data) if it is missing or empty, and creates topics
    /// when clients first use them. Reads no config file and no CAIRN_* variables: flags only.
    #[command(after_help = DEV_EXAMPLES)]
    Dev(DevArgs),
    /// Run a node from a config file, CAIRN_* environment variables and flags
    #[command(after_help = SERVE_EXAMPLES)]
    Serve(ServeArgs),
    /// Initialise a data directory for a node (once, before `cairn serve`)
    #[command(after_help = FORMAT_EXAMPLES)]
    Format(FormatArgs),
    /// Create, list, describe and delete topics
    Topic(cairn_client::cli::TopicArgs),
    /// Write lines from stdin to a topic, one record each
    Produce(cairn_client::cli::ProduceArgs),
    /// Print a topic's records
    Consume(cairn_client::cli::ConsumeArgs),
    /// List consumer groups, describe one, show its lag
    Group(cairn_client::cli::GroupArgs),
    /// Measure the client's throughput and latency: produce, consume, or both at once
    Bench(cairn_client::cli::BenchArgs),
}

/// `cairn dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// How many nodes to run in this process, as one cluster (each a voter)
    #[arg(long, value_name = "N", default_value_t = 1,
        value_parser = clap::value_parser!(u32).range(1..=DEV_NODES_MAX))]
    pub nodes: u32,
    /// The flags shared with `serve`.
    #[command(flatten)]
    pub node: NodeFlags,
}

/// The most nodes `cairn dev --nodes` runs.
pub const DEV_NODES_MAX: i64 = 9;

/// `cairn serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The TOML config file
    #[arg(long, short = 'c', value_name = "FILE", env = "CAIRN_CONFIG")]
    pub config: Option<PathBuf>,
    /// This node's id; must match the id the data directory was formatted with
    /// [config: node.id]
    #[arg(long, value_name = "N")]
    pub node_id: Option<String>,
    /// The address clients are told to connect to, if not the listener's
    /// [config: advertised.listener]
    #[arg(long, value_name = "HOST:PORT")]
    pub advertised_listener: Option<String>,
    /// The flags shared with `dev`.
    #[command(flatten)]
    pub node: NodeFlags,
}

/// Flags of both `dev` and `serve`.
#[derive(Debug, Args)]
pub struct NodeFlags {
    /// The node's data directory [default: ./cairn-data] [config: data.dir]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<String>,
    /// Where Kafka clients connect [default: 127.0.0.1:9092] [config: listener]
    #[arg(long, value_name = "HOST:PORT")]
    pub listener: Option<String>,
    /// Where /metrics and /health are served; "" for nowhere [default: 127.0.0.1:9644]
    /// [config: http.listener]
    #[arg(long, value_name = "HOST:PORT")]
    pub http_listener: Option<String>,
    /// Where other nodes of the cluster connect [default: this node's entry in
    /// cluster.voters or cluster.brokers; for dev --nodes, 127.0.0.1:19092]
    /// [config: peer.listener]
    #[arg(long, value_name = "HOST:PORT")]
    pub peer_listener: Option<String>,
    /// Set any config file key, for example --set log.retention.ms=3600000 (repeatable)
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = key_value)]
    pub set: Vec<(String, String)>,
}

/// `cairn format`.
#[derive(Debug, Args)]
pub struct FormatArgs {
    /// The directory to initialise (created if missing)
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// The id of the node that will run on it
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub node_id: u32,
    /// The cluster's id, the same on every node of a cluster [default: a new random id;
    /// required with --voters]
    #[arg(long, value_name = "ID")]
    pub cluster_id: Option<String>,
    /// The controller quorum, NODE_ID@HOST:PORT of each voter's peer listener, separated by
    /// commas; the same on every node (and as cluster.voters) [default: this node alone]
    #[arg(long, value_name = "ID@HOST:PORT,...")]
    pub voters: Option<String>,
    /// The nodes that do not vote, in the same form (as cluster.brokers)
    #[arg(long, value_name = "ID@HOST:PORT,...", requires = "voters")]
    pub brokers: Option<String>,
    /// Format a node whose disk was wiped, to rejoin its running cluster: it does not vote
    /// until it has caught up with the leader, so it cannot help elect a leader that lacks
    /// committed metadata. Not for a new cluster, nor for a cluster's only voter
    #[arg(long, requires = "voters")]
    pub rejoin: bool,
}

fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("expected KEY=VALUE, such as log.retention.ms=3600000, not {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn set_takes_key_equals_value() {
        assert_eq!(key_value("a.b=1=2"), Ok(("a.b".to_string(), "1=2".to_string())));
        assert_eq!(key_value("http.listener="), Ok(("http.listener".to_string(), String::new())));
        assert!(key_value("novalue").is_err());
        assert!(key_value("=1").is_err());
    }
}
