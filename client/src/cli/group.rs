//! `cairn group list|describe|lag`.

use clap::{Args, Subcommand};
use serde_json::json;

use super::{ConnectArgs, Failure, Output};
use crate::Admin;

const GROUP_EXAMPLES: &str = "\
Examples:
  cairn group list
  cairn group describe billing
  cairn group lag billing --output json

lag prints, for every partition the group has committed, the committed offset, the
partition's end offset and the difference: how many records the group has yet to read.";

/// `cairn group`.
#[derive(Debug, Args)]
#[command(after_help = GROUP_EXAMPLES)]
pub struct GroupArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: GroupCommand,
}

/// The group subcommands.
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List the consumer groups
    List(GroupListArgs),
    /// Show a group's state and members with their partitions
    Describe(GroupNameArgs),
    /// Show a group's committed offset, end offset and lag per partition
    Lag(GroupNameArgs),
}

/// `cairn group list`.
#[derive(Debug, Args)]
pub struct GroupListArgs {
    /// text or json
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
    /// Where the cluster is.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `cairn group describe|lag GROUP`.
#[derive(Debug, Args)]
pub struct GroupNameArgs {
    /// The group id
    pub group: String,
    /// text or json
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
    /// Where the cluster is.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

pub(super) async fn run(args: GroupArgs) -> Result<(), Failure> {
    match args.command {
        GroupCommand::List(args) => list(args).await,
        GroupCommand::Describe(args) => describe(args).await,
        GroupCommand::Lag(args) => lag(args).await,
    }
}

async fn list(args: GroupListArgs) -> Result<(), Failure> {
    let admin = Admin::new(&args.connect.connect().await?);
    let groups = admin.list_groups().await?;
    match args.output {
        Output::Json => {
            let rows: Vec<_> = groups
                .iter()
                .map(|g| {
                    json!({"group": g.group_id, "protocol_type": g.protocol_type,
                    "state": g.state})
                })
                .collect();
            println!("{}", serde_json::Value::Array(rows));
        }
        Output::Text => {
            let width = groups.iter().map(|g| g.group_id.len()).max().unwrap_or(0).max(5);
            println!("{:<width$}  STATE", "GROUP");
            for group in &groups {
                println!("{:<width$}  {}", group.group_id, group.state);
            }
        }
    }
    Ok(())
}

async fn describe(args: GroupNameArgs) -> Result<(), Failure> {
    let admin = Admin::new(&args.connect.connect().await?);
    let group = admin.describe_group(&args.group).await?;
    let partitions = |member: &crate::GroupMember| -> Vec<String> {
        member.assignment.iter().map(|tp| format!("{}-{}", tp.topic, tp.partition)).collect()
    };
    match args.output {
        Output::Json => {
            let members: Vec<_> = group
                .members
                .iter()
                .map(|m| {
                    json!({"member_id": m.member_id, "client_id": m.client_id,
                    "client_host": m.client_host, "partitions": partitions(m)})
                })
                .collect();
            let document = json!({"group": group.group_id, "state": group.state,
                "protocol_type": group.protocol_type, "protocol": group.protocol,
                "members": members});
            println!("{document}");
        }
        Output::Text => {
            println!("Group {} ({}, assignor {})", group.group_id, group.state, group.protocol);
            for member in &group.members {
                println!(
                    "  {} ({} at {}): {}",
                    member.member_id,
                    member.client_id,
                    member.client_host,
                    partitions(member).join(", ")
                );
            }
        }
    }
    Ok(())
}

async fn lag(args: GroupNameArgs) -> Result<(), Failure> {
    let admin = Admin::new(&args.connect.connect().await?);
    let rows = admin.group_lag(&args.group).await?;
    match args.output {
        Output::Json => {
            let rows: Vec<_> = rows
                .iter()
                .map(|r| {
                    json!({"topic": &*r.partition.topic, "partition": r.partition.partition,
                    "committed": r.committed, "end": r.end, "lag": r.lag})
                })
                .collect();
            println!("{}", serde_json::Value::Array(rows));
        }
        Output::Text => {
            let width = rows.iter().map(|r| r.partition.topic.len()).max().unwrap_or(0).max(5);
            println!("{:<width$}  PARTITION  COMMITTED  END        LAG", "TOPIC");
            for r in &rows {
                println!(
                    "{:<width$}  {:<9}  {:<9}  {:<9}  {}",
                    r.partition.topic, r.partition.partition, r.committed, r.end, r.lag
                );
            }
            let total: i64 = rows.iter().map(|r| r.lag).sum();
            println!("Total lag: {total}");
        }
    }
    Ok(())
}
