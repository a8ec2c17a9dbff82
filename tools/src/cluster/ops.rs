//! `silt cluster brokers|move|transfer-leadership|decommission`: operator actions through a
//! node's admin HTTP API (see the broker's `server::admin`), with progress until they are
//! done.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};

use super::local::{LocalCluster, http_json, progress};

/// Longest wait for moves to finish before the command gives up (they go on).
const MOVE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Which node's admin API to ask.
#[derive(Debug, Args, Clone)]
pub(crate) struct AdminArgs {
    /// A node's admin HTTP address; by default the first running node of the development
    /// cluster in --dir, else 127.0.0.1:9644.
    #[arg(long, env = "SILT_ADMIN")]
    admin: Option<String>,
    /// The development cluster's directory (to find a node's admin address).
    #[arg(long, default_value = "silt-cluster")]
    dir: std::path::PathBuf,
}

impl AdminArgs {
    fn address(&self) -> String {
        if let Some(admin) = &self.admin {
            return admin.clone();
        }
        if let Ok(Some(cluster)) = LocalCluster::load(&self.dir)
            && let Some(node) = cluster.running_nodes().first()
        {
            return node.admin.clone();
        }
        "127.0.0.1:9644".to_string()
    }
}

/// `silt cluster move` options.
#[derive(Debug, Args)]
pub(crate) struct MoveArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// Topic.
    #[arg(long)]
    topic: String,
    /// Partition.
    #[arg(long)]
    partition: i32,
    /// The brokers to hold it, comma-separated; the first is its preferred leader.
    #[arg(long, value_delimiter = ',', required = true)]
    to: Vec<i32>,
    /// Return once the move is started, without waiting for it to finish.
    #[arg(long)]
    no_wait: bool,
}

/// `silt cluster transfer-leadership` options.
#[derive(Debug, Args)]
pub(crate) struct TransferArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// Topic.
    #[arg(long)]
    topic: String,
    /// Partition.
    #[arg(long)]
    partition: i32,
    /// The replica to lead.
    #[arg(long)]
    to: i32,
}

/// `silt cluster decommission` options.
#[derive(Debug, Args)]
pub(crate) struct DecommissionArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// The broker to take out of the cluster.
    broker: i32,
    /// Return once the moves are started, without waiting for them or forgetting the broker.
    #[arg(long)]
    no_wait: bool,
}

/// Sends `method path` with `body`; fails with the API's error message unless it is 200.
async fn call(admin: &AdminArgs, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
    let address = admin.address();
    let (status, value) = http_json(&address, method, path, body)
        .await
        .with_context(|| format!("asking {address} (a node's admin address: --admin)"))?;
    if status != 200 {
        let message = value["error"].as_str().unwrap_or("no message");
        bail!("{message} (HTTP {status} from {address})");
    }
    Ok(value)
}

/// `silt cluster brokers`: each broker, what it holds, and the moves under way.
pub(crate) async fn brokers(admin: &AdminArgs) -> Result<()> {
    let value = call(admin, "GET", "/v1/brokers", None).await?;
    println!(
        "{:<6} {:<22} {:<22} {:<6} {:<9} REPLICAS",
        "ID", "KAFKA", "ADMIN", "ALIVE", "STATE"
    );
    for b in value["brokers"].as_array().into_iter().flatten() {
        println!(
            "{:<6} {:<22} {:<22} {:<6} {:<9} {}",
            b["id"],
            b["kafka_addr"].as_str().unwrap_or(""),
            b["admin_addr"].as_str().unwrap_or(""),
            if b["alive"] == json!(true) {
                "yes"
            } else {
                "NO"
            },
            if b["draining"] == json!(true) {
                "leaving"
            } else {
                "serving"
            },
            b["replicas"]
        );
    }
    let moving = value["moving"].as_array().cloned().unwrap_or_default();
    if !moving.is_empty() {
        println!("\nMOVING");
        for m in moving {
            println!(
                "{}/{}  {} -> {}",
                m["topic"].as_str().unwrap_or(""),
                m["partition"],
                m["replicas"],
                m["target"]
            );
        }
    }
    Ok(())
}

/// The moves under way, as "topic/partition".
async fn moving(admin: &AdminArgs) -> Result<Vec<String>> {
    let value = call(admin, "GET", "/v1/brokers", None).await?;
    Ok(value["moving"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| format!("{}/{}", m["topic"].as_str().unwrap_or(""), m["partition"]))
        .collect())
}

/// Waits until none of `partitions` is moving any more, with a progress bar.
async fn wait_moved(admin: &AdminArgs, partitions: Vec<String>) -> Result<()> {
    let bar = progress(partitions.len() as u64);
    bar.set_message("moving (new replicas copy the log, then the voters change)");
    let started = Instant::now();
    loop {
        let still = moving(admin).await?;
        let left = partitions.iter().filter(|p| still.contains(p)).count();
        bar.set_position((partitions.len() - left) as u64);
        if left == 0 {
            break;
        }
        if started.elapsed() > MOVE_TIMEOUT {
            bar.finish_and_clear();
            bail!(
                "{left} moves still under way after {}s; they go on (see `silt cluster brokers`)",
                MOVE_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bar.finish_and_clear();
    Ok(())
}

/// `silt cluster move`.
pub(crate) async fn move_partition(args: &MoveArgs) -> Result<()> {
    let path = format!("/v1/partitions/{}/{}/reassign", args.topic, args.partition);
    call(
        &args.admin,
        "POST",
        &path,
        Some(json!({ "replicas": args.to })),
    )
    .await?;
    let name = format!("{}/{}", args.topic, args.partition);
    if args.no_wait {
        println!("moving {name} to {:?}", args.to);
        return Ok(());
    }
    let started = Instant::now();
    wait_moved(&args.admin, vec![name.clone()]).await?;
    println!(
        "moved {name} to {:?} in {:.1} s",
        args.to,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `silt cluster transfer-leadership`.
pub(crate) async fn transfer(args: &TransferArgs) -> Result<()> {
    let path = format!(
        "/v1/partitions/{}/{}/transfer_leadership",
        args.topic, args.partition
    );
    let started = Instant::now();
    call(&args.admin, "POST", &path, Some(json!({ "to": args.to }))).await?;
    println!(
        "{}/{} is led by broker {} ({:.2} s)",
        args.topic,
        args.partition,
        args.to,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `silt cluster decommission`.
pub(crate) async fn decommission(args: &DecommissionArgs) -> Result<()> {
    let path = format!("/v1/brokers/{}/decommission", args.broker);
    let value = call(&args.admin, "POST", &path, None).await?;
    let moves: BTreeMap<String, Value> = value["moving"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    println!(
        "broker {} takes no new replicas; moving {} partitions off it",
        args.broker,
        moves.len()
    );
    for (partition, to) in &moves {
        println!("  {partition} -> {to}");
    }
    if args.no_wait {
        return Ok(());
    }
    wait_moved(&args.admin, moves.keys().cloned().collect()).await?;
    call(
        &args.admin,
        "DELETE",
        &format!("/v1/brokers/{}", args.broker),
        None,
    )
    .await?;
    println!(
        "broker {} holds nothing and has left the cluster; its process can be stopped",
        args.broker
    );
    Ok(())
}
