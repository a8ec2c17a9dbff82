//! `silt cluster ...`: a local development cluster (start, status, stop, purge, add-node),
//! operator actions on any cluster (brokers, move, transfer-leadership, decommission), and
//! restoring a whole cluster from a bucket.

pub(crate) mod local;
mod ops;
mod restore;

use anyhow::Result;
use clap::Subcommand;

use crate::topic::BrokerArgs;

/// Cluster commands.
#[derive(Debug, Subcommand)]
pub(crate) enum ClusterCommand {
    /// Start a development cluster of N `silt serve` processes on this machine (or start
    /// again one that was stopped).
    Start(local::StartArgs),
    /// Show each node of the development cluster: running, the controller, what it leads,
    /// which peers it hears.
    Status(local::LocalArgs),
    /// Stop the development cluster's nodes (their data stays).
    Stop(local::LocalArgs),
    /// Stop the development cluster and delete its directory.
    Purge(local::LocalArgs),
    /// Start one more node in the development cluster; it joins the running cluster.
    AddNode(local::LocalArgs),
    /// List the brokers, what each holds, and the partitions being moved.
    Brokers(ops::AdminArgs),
    /// Move a partition to other brokers: new replicas copy the log as Raft learners, then
    /// the voters change (with progress until done).
    Move(ops::MoveArgs),
    /// Hand a partition's leadership to another of its replicas.
    TransferLeadership(ops::TransferArgs),
    /// Move every partition off a broker, then forget it (with progress until done).
    Decommission(ops::DecommissionArgs),
    /// Restore every topic (with its properties) and every group's committed offsets from a
    /// bucket into the cluster at --brokers, whose archive must be that bucket.
    Restore(restore::RestoreArgs),
}

/// Runs a cluster command.
pub(crate) async fn run(command: ClusterCommand, brokers: &BrokerArgs) -> Result<()> {
    match command {
        ClusterCommand::Start(args) => local::start(args).await,
        ClusterCommand::Status(args) => local::status(&args).await,
        ClusterCommand::Stop(args) => local::stop(&args).await,
        ClusterCommand::Purge(args) => local::purge(&args).await,
        ClusterCommand::AddNode(args) => local::add_node(&args).await,
        ClusterCommand::Brokers(args) => ops::brokers(&args).await,
        ClusterCommand::Move(args) => ops::move_partition(&args).await,
        ClusterCommand::TransferLeadership(args) => ops::transfer(&args).await,
        ClusterCommand::Decommission(args) => ops::decommission(&args).await,
        ClusterCommand::Restore(args) => restore::restore(&args, brokers).await,
    }
}
