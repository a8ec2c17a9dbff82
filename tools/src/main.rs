//! The `silt` binary.
//!
//! `silt serve` runs a node; the other commands are Kafka clients in the manner of Redpanda's
//! `rpk`, so they work against silt or any Kafka-compatible broker.

mod archive;
mod archive_export;
mod archive_find;
mod brokers;
mod client;
mod client_auth;
mod cluster;
mod group;
mod security;
mod serve;
mod topic;
mod transaction;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "silt",
    version,
    about = "A Kafka-API streaming platform built around tiered storage"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node (defaults: data in ./silt-data, Kafka API on 127.0.0.1:9092).
    Serve(serve::ServeArgs),
    /// Create, list, describe, alter, delete topics; produce and consume.
    Topic {
        #[command(flatten)]
        brokers: topic::BrokerArgs,
        #[command(subcommand)]
        command: topic::TopicCommand,
    },
    /// List and verify the archive in its bucket.
    Archive {
        #[command(flatten)]
        args: archive::ArchiveArgs,
        #[command(subcommand)]
        command: archive::ArchiveCommand,
    },
    /// List, describe (members, offsets, lag), seek and delete consumer groups.
    Group {
        #[command(flatten)]
        brokers: topic::BrokerArgs,
        #[command(subcommand)]
        command: group::GroupCommand,
    },
    /// List and describe transactions (their producers, state and partitions).
    Transaction {
        #[command(flatten)]
        brokers: topic::BrokerArgs,
        #[command(subcommand)]
        command: transaction::TransactionCommand,
    },
    /// Create, list and delete SASL/SCRAM users.
    User {
        #[command(flatten)]
        brokers: topic::BrokerArgs,
        #[command(subcommand)]
        command: security::UserCommand,
    },
    /// Create, list and delete ACLs.
    Acl {
        #[command(flatten)]
        brokers: topic::BrokerArgs,
        #[command(subcommand)]
        command: security::AclCommand,
    },
    /// Run a development cluster on this machine; restore a cluster from a bucket.
    Cluster {
        #[command(flatten)]
        brokers: topic::BrokerArgs,
        #[command(subcommand)]
        command: cluster::ClusterCommand,
    },
}

/// Lets a CLI command piped into `head` end quietly when the pipe closes, as Unix tools do
/// (Rust ignores SIGPIPE, and `println!` then panics on the closed pipe).
#[allow(unsafe_code)]
fn default_sigpipe() {
    // SAFETY: called first thing in main, before any other thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        // The server keeps ignoring SIGPIPE: a client's closed socket is an error to handle.
        default_sigpipe();
    }
    let default_level = if matches!(cli.command, Command::Serve(_)) {
        // openraft narrates every election and membership step at info: silt logs the ones
        // a user cares about itself.
        "info,openraft=error"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Topic { brokers, command } => topic::run(command, &brokers).await,
            Command::Group { brokers, command } => group::run(command, &brokers).await,
            Command::Transaction { brokers, command } => transaction::run(command, &brokers).await,
            Command::Archive { args, command } => archive::run(command, &args).await,
            Command::Cluster { brokers, command } => cluster::run(command, &brokers).await,
            Command::User { brokers, command } => security::run_user(command, &brokers).await,
            Command::Acl { brokers, command } => security::run_acl(command, &brokers).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            // A setting that does not parse is a usage error, as clap's are.
            if e.downcast_ref::<silt_config::ConfigError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
