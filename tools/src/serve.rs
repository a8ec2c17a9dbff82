//! `silt serve`: settings from defaults < TOML file < `SILT_*` < flags, then run until SIGINT or
//! SIGTERM, and shut down cleanly.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use silt_broker::server::Server;
use silt_config::{NodeConfig, Source};

/// Flags of `silt serve`. Every setting also has a `SILT_<KEY>` variable and a TOML key.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// TOML file of settings (keys as in `silt serve --list-settings`).
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Data directory.
    #[arg(long)]
    data_dir: Option<String>,
    /// Kafka API listen address.
    #[arg(long)]
    kafka_addr: Option<String>,
    /// host:port advertised to clients.
    #[arg(long)]
    advertised_kafka_addr: Option<String>,
    /// Admin HTTP listen address.
    #[arg(long)]
    admin_addr: Option<String>,
    /// Archive: a directory, file:///dir, s3://bucket/prefix, or none.
    #[arg(long)]
    archive: Option<String>,
    /// Broker id (unique in the cluster).
    #[arg(long)]
    node_id: Option<String>,
    /// Listen address for the other nodes of the cluster.
    #[arg(long)]
    rpc_addr: Option<String>,
    /// host:port the other nodes are told to use.
    #[arg(long)]
    advertised_rpc_addr: Option<String>,
    /// The cluster's founding nodes, id@host:port,... (empty: a cluster of one).
    #[arg(long)]
    seeds: Option<String>,
    /// Any setting, key=value (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Print every setting with its description and exit.
    #[arg(long)]
    list_settings: bool,
}

/// Builds the node settings from the layers.
pub(crate) fn load_config(args: &ServeArgs) -> Result<NodeConfig> {
    let mut config = NodeConfig::default();
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        config.apply_toml(&text, &path.display().to_string())?;
    }
    config.apply_env(std::env::vars().filter(|(k, _)| !is_cli_variable(k)))?;
    let flags = [
        ("data_dir", &args.data_dir),
        ("kafka_addr", &args.kafka_addr),
        ("advertised_kafka_addr", &args.advertised_kafka_addr),
        ("admin_addr", &args.admin_addr),
        ("archive", &args.archive),
        ("node_id", &args.node_id),
        ("rpc_addr", &args.rpc_addr),
        ("advertised_rpc_addr", &args.advertised_rpc_addr),
        ("seeds", &args.seeds),
    ];
    for (key, value) in flags {
        if let Some(value) = value {
            config.set(key, value, Source::Flag)?;
        }
    }
    for pair in &args.set {
        let (key, value) = pair
            .split_once('=')
            .with_context(|| format!("--set takes key=value, not {pair:?}"))?;
        config.set(key, value, Source::Flag)?;
    }
    config
        .security
        .resolve_secrets(
            |name| std::env::var(name).ok(),
            |path| std::fs::read_to_string(path),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(config)
}

/// Runs the node.
pub(crate) async fn run(args: ServeArgs) -> Result<()> {
    if args.list_settings {
        let defaults = NodeConfig::default();
        for (key, doc) in silt_config::all_keys() {
            println!(
                "{key:<28} {:<22} {doc}",
                defaults.value_of(key).unwrap_or_default()
            );
        }
        return Ok(());
    }
    let config = load_config(&args)?;
    let data_dir =
        std::path::absolute(&config.data_dir).unwrap_or_else(|_| config.data_dir.clone());
    let archive = config.value_of("archive").unwrap_or_default();
    let server = Server::bind(config).await?;
    let listeners: Vec<String> = server
        .listeners()
        .iter()
        .map(|l| format!("{}://{}", l.name, l.addr))
        .collect();
    tracing::info!(
        data_dir = %data_dir.display(),
        archive,
        kafka = %server.kafka_addr(),
        admin = %server.admin_addr(),
        rpc = %server.rpc_addr(),
        node_id = server.node().config.node_id,
        topics = server.node().topics.all().iter().filter(|t| !t.internal).count(),
        listeners = listeners.join(","),
        "silt is serving"
    );
    server.run(shutdown_signal()).await;
    Ok(())
}

/// Variables that configure the CLI commands, not the server (`silt cluster start` prints
/// `export SILT_BROKERS=...`, and a node started from that shell must not take it for a
/// setting).
fn is_cli_variable(name: &str) -> bool {
    matches!(name, "SILT_BROKERS" | "SILT_ADMIN") || name.starts_with("SILT_CLI_")
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; use SIGINT");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
    }
}
