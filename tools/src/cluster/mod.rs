//! `silt cluster ...`: a local development cluster (start, status, stop, purge) and restoring
//! a whole cluster from a bucket.

mod local;
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
        ClusterCommand::Restore(args) => restore::restore(&args, brokers).await,
    }
}
