//! `cairn topic create|list|describe|delete`.

use clap::{Args, Subcommand};
use serde_json::json;

use super::{ConnectArgs, Failure, Output};
use crate::{Admin, NewTopic, TopicMetadata};

const TOPIC_EXAMPLES: &str = "\
Examples:
  cairn topic create orders --partitions 6 --config retention.ms=86400000
  cairn topic list
  cairn topic describe orders --output json
  cairn topic delete orders";

/// `cairn topic`.
#[derive(Debug, Args)]
#[command(after_help = TOPIC_EXAMPLES)]
pub struct TopicArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: TopicCommand,
}

/// The topic subcommands.
#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic
    Create(CreateArgs),
    /// List topics and their partition counts
    List(ListArgs),
    /// Show a topic's partitions, leaders, replicas and configs
    Describe(DescribeArgs),
    /// Delete a topic and its records
    Delete(DeleteArgs),
}

/// `cairn topic create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The topic's name
    pub name: String,
    /// How many partitions (the broker's num.partitions when not given)
    #[arg(long, short = 'p', value_name = "N")]
    pub partitions: Option<i32>,
    /// How many replicas of each partition (the broker's default when not given)
    #[arg(long, short = 'r', value_name = "N")]
    pub replication_factor: Option<i16>,
    /// A topic config, KEY=VALUE (repeatable), such as retention.ms=86400000
    #[arg(long = "config", short = 'c', value_name = "KEY=VALUE", value_parser = key_value)]
    pub configs: Vec<(String, String)>,
    /// Where the cluster is.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `cairn topic list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// text or json
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
    /// Where the cluster is.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `cairn topic describe`.
#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// The topic's name
    pub name: String,
    /// text or json
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
    /// Where the cluster is.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `cairn topic delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The topic's name
    pub name: String,
    /// Where the cluster is.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{text:?} is not KEY=VALUE (for example retention.ms=86400000)")),
    }
}

pub(super) async fn run(args: TopicArgs) -> Result<(), Failure> {
    match args.command {
        TopicCommand::Create(args) => create(args).await,
        TopicCommand::List(args) => list(args).await,
        TopicCommand::Describe(args) => describe(args).await,
        TopicCommand::Delete(args) => delete(args).await,
    }
}

async fn create(args: CreateArgs) -> Result<(), Failure> {
    let admin = Admin::new(&args.connect.connect().await?);
    let topic = NewTopic {
        name: args.name.clone(),
        partitions: args.partitions.unwrap_or(-1),
        replication_factor: args.replication_factor.unwrap_or(-1),
        configs: args.configs,
    };
    admin.create_topics(&[topic]).await?;
    println!("Created topic {}.", args.name);
    Ok(())
}

async fn list(args: ListArgs) -> Result<(), Failure> {
    let admin = Admin::new(&args.connect.connect().await?);
    let topics = admin.list_topics().await?;
    match args.output {
        Output::Json => {
            let rows: Vec<_> = topics
                .iter()
                .map(|t| {
                    json!({"name": &*t.name, "partitions": t.partitions.len(),
                        "internal": t.internal})
                })
                .collect();
            println!("{}", serde_json::Value::Array(rows));
        }
        Output::Text => {
            let width = topics.iter().map(|t| t.name.len()).max().unwrap_or(0).max(5);
            println!("{:<width$}  PARTITIONS", "TOPIC");
            for topic in &topics {
                println!("{:<width$}  {}", topic.name, topic.partitions.len());
            }
        }
    }
    Ok(())
}

async fn describe(args: DescribeArgs) -> Result<(), Failure> {
    let admin = Admin::new(&args.connect.connect().await?);
    let topics = admin.describe_topics(&[&args.name]).await?;
    let topic: &TopicMetadata =
        topics.iter().find(|t| *t.name == args.name).expect("describe_topics checks");
    let configs = admin.describe_configs(&args.name).await?;
    match args.output {
        Output::Json => {
            let partitions: Vec<_> = topic
                .partitions
                .iter()
                .map(|p| {
                    json!({"partition": p.partition, "leader": p.leader,
                        "leader_epoch": p.leader_epoch, "replicas": p.replicas, "isr": p.isr})
                })
                .collect();
            let configs: serde_json::Map<String, serde_json::Value> =
                configs.iter().map(|c| (c.name.clone(), c.value.clone().into())).collect();
            let document = json!({"name": &*topic.name, "internal": topic.internal,
                "partitions": partitions, "configs": configs});
            println!("{document}");
        }
        Output::Text => {
            println!("Topic {} ({} partitions)", topic.name, topic.partitions.len());
            println!("PARTITION  LEADER  REPLICAS  ISR");
            for p in &topic.partitions {
                let list =
                    |ids: &[i32]| ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
                println!(
                    "{:<9}  {:<6}  {:<8}  {}",
                    p.partition,
                    p.leader,
                    list(&p.replicas),
                    list(&p.isr)
                );
            }
            let set: Vec<_> = configs.iter().filter(|c| !c.is_default).collect();
            if !set.is_empty() {
                println!("Configs set on the topic:");
                for config in set {
                    println!("  {}={}", config.name, config.value.as_deref().unwrap_or(""));
                }
            }
        }
    }
    Ok(())
}

async fn delete(args: DeleteArgs) -> Result<(), Failure> {
    let admin = Admin::new(&args.connect.connect().await?);
    admin.delete_topics(&[&args.name]).await?;
    println!("Deleted topic {}.", args.name);
    Ok(())
}
