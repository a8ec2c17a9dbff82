//! `silt cluster start|status|stop|purge`: a development cluster of N `silt serve` processes
//! on this machine, as `rpk container start` gives one (processes here, not containers).
//!
//! Node `i` gets ports offset by `i` from the bases (Kafka 9092, admin 9644, node RPC 33145
//! by default), its data under `<dir>/node-<i>` and its log in `<dir>/node-<i>/silt.log`; all
//! nodes share one archive, `<dir>/archive` unless `--archive` names another. The first three
//! nodes (five from five on, one for one or two) are the controller's voters and every
//! node's seeds. What was started is kept in `<dir>/cluster.json`, so `status`, `stop`,
//! `purge` and a later `start` find the nodes again.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long `start` waits for the nodes to form the cluster.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long `stop` waits for a node to exit after SIGTERM before it kills it.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const STATE_FILE: &str = "cluster.json";

/// Where the development cluster lives.
#[derive(Debug, Args, Clone)]
pub(crate) struct LocalArgs {
    /// Directory of the cluster's nodes, logs and archive.
    #[arg(long, default_value = "silt-cluster")]
    pub(crate) dir: PathBuf,
}

/// `silt cluster start` options.
#[derive(Debug, Args)]
pub(crate) struct StartArgs {
    #[command(flatten)]
    local: LocalArgs,
    /// Number of nodes.
    #[arg(short = 'n', long, default_value_t = 3)]
    nodes: u16,
    /// The shared archive (a directory, s3://bucket/prefix, ...); `<dir>/archive` by default.
    #[arg(long)]
    archive: Option<String>,
    /// Kafka port of node 0; node i listens on this plus i.
    #[arg(long, default_value_t = 9092)]
    kafka_port: u16,
    /// Admin HTTP port of node 0.
    #[arg(long, default_value_t = 9644)]
    admin_port: u16,
    /// Node RPC port of node 0.
    #[arg(long, default_value_t = 33145)]
    rpc_port: u16,
    /// Extra setting for every node, key=value (repeatable), as `silt serve --set`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

/// One node as started.
#[derive(Debug, Clone)]
pub(crate) struct NodeEntry {
    id: u16,
    kafka: String,
    pub(crate) admin: String,
    rpc: String,
    data_dir: PathBuf,
    pid: Option<u32>,
}

impl NodeEntry {
    fn to_json(&self) -> Value {
        json!({
            "id": self.id, "kafka": self.kafka, "admin": self.admin, "rpc": self.rpc,
            "data_dir": self.data_dir, "pid": self.pid,
        })
    }

    fn from_json(value: &Value) -> Option<NodeEntry> {
        Some(NodeEntry {
            id: u16::try_from(value.get("id")?.as_u64()?).ok()?,
            kafka: value.get("kafka")?.as_str()?.to_string(),
            admin: value.get("admin")?.as_str()?.to_string(),
            rpc: value.get("rpc")?.as_str()?.to_string(),
            data_dir: PathBuf::from(value.get("data_dir")?.as_str()?),
            pid: value
                .get("pid")
                .and_then(Value::as_u64)
                .and_then(|p| u32::try_from(p).ok()),
        })
    }

    fn log_path(&self) -> PathBuf {
        self.data_dir.join("silt.log")
    }

    fn running(&self) -> bool {
        self.pid.is_some_and(is_silt_process)
    }
}

/// The cluster as recorded in `cluster.json`.
#[derive(Debug)]
pub(crate) struct LocalCluster {
    dir: PathBuf,
    archive: String,
    settings: Vec<String>,
    /// The controller's voters, as every node is told (fixed when the cluster is made).
    seeds: String,
    nodes: Vec<NodeEntry>,
}

impl LocalCluster {
    pub(crate) fn load(dir: &Path) -> Result<Option<LocalCluster>> {
        let path = dir.join(STATE_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let value: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a cluster file", path.display()))?;
        let nodes = value
            .get("nodes")
            .and_then(Value::as_array)
            .map(|nodes| nodes.iter().filter_map(NodeEntry::from_json).collect())
            .unwrap_or_default();
        Ok(Some(LocalCluster {
            dir: dir.to_path_buf(),
            archive: value
                .get("archive")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            settings: value
                .get("settings")
                .and_then(Value::as_array)
                .map(|s| {
                    s.iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            seeds: value
                .get("seeds")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            nodes,
        }))
    }

    /// The nodes running now.
    pub(crate) fn running_nodes(&self) -> Vec<&NodeEntry> {
        self.nodes.iter().filter(|n| n.running()).collect()
    }

    fn save(&self) -> Result<()> {
        let value = json!({
            "archive": self.archive,
            "settings": self.settings,
            "seeds": self.seeds,
            "nodes": self.nodes.iter().map(NodeEntry::to_json).collect::<Vec<_>>(),
        });
        let path = self.dir.join(STATE_FILE);
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        fs::write(&tmp, serde_json::to_vec_pretty(&value)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
    }

    /// The controller's voters: 1 node of one or two, 3 of three or four, 5 of more.
    fn initial_seeds(nodes: &[NodeEntry]) -> String {
        let voters = match nodes.len() {
            0..=2 => 1,
            3..=4 => 3,
            _ => 5,
        };
        nodes
            .iter()
            .take(voters)
            .map(|n| format!("{}@{}", n.id, n.rpc))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn brokers(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.kafka.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts node `index` (its process outlives this command, in its own process group).
    /// The caller keeps the `Child` to learn whether it exited while starting: its `/proc`
    /// entry is no proof, the command line reads empty for a moment after exec.
    fn spawn(&mut self, index: usize) -> Result<Child> {
        let seeds = self.seeds.clone();
        let node = &self.nodes[index];
        fs::create_dir_all(&node.data_dir)
            .with_context(|| format!("creating {}", node.data_dir.display()))?;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.log_path())
            .with_context(|| format!("opening {}", node.log_path().display()))?;
        let exe = std::env::current_exe().context("finding the silt binary")?;
        let mut command = Command::new(exe);
        command
            .arg("serve")
            .arg("--node-id")
            .arg(node.id.to_string())
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--kafka-addr", &node.kafka])
            .args(["--admin-addr", &node.admin])
            .args(["--rpc-addr", &node.rpc])
            .args(["--seeds", &seeds])
            .args(["--archive", &self.archive]);
        for setting in &self.settings {
            command.args(["--set", setting]);
        }
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting silt serve")?;
        self.nodes[index].pid = Some(child.id());
        Ok(child)
    }
}

/// True if a node this command started has exited.
fn exited(child: &mut Child) -> bool {
    // An error asking is not an exit: the wait for readiness times out instead.
    matches!(child.try_wait(), Ok(Some(_)))
}

/// True if `pid` is a running `silt` process.
fn is_silt_process(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
        let first = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        Path::new(std::str::from_utf8(first).unwrap_or_default())
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with("silt"))
            && cmdline.windows(5).any(|w| w == b"serve")
    })
}

fn signal(pid: u32, signal: libc::c_int) {
    #[allow(unsafe_code)]
    // SAFETY: kill(2) with a pid we started and checked is a silt process; no memory is
    // shared.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// GET `path` from the HTTP server at `addr`; the body parsed as JSON.
pub(crate) async fn get_json(addr: &str, path: &str) -> Result<Value> {
    let (status, body) = http_json(addr, "GET", path, None).await?;
    if status != 200 {
        bail!("{addr}{path}: HTTP {status}");
    }
    Ok(body)
}

/// One HTTP/1.1 request to a node's admin server, with a JSON body if given: the status
/// and the answer's JSON body.
pub(crate) async fn http_json(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value)> {
    let mut stream = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr))
        .await
        .context("timed out connecting")??;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    // Operations wait for what they do (a leadership transfer: up to 10 s).
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut response))
        .await
        .context("timed out waiting for the answer")??;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("not an HTTP response")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no HTTP status")?;
    let value = serde_json::from_str(body).unwrap_or(Value::Null);
    Ok((status, value))
}

/// The last lines of a file (a node's log, for an error).
fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub(crate) fn progress(len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// `silt cluster start`.
pub(crate) async fn start(args: StartArgs) -> Result<()> {
    if args.nodes == 0 {
        bail!("-n must be at least 1");
    }
    let dir = args.local.dir.clone();
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    let mut cluster = match LocalCluster::load(&dir)? {
        Some(existing) => {
            if existing.nodes.len() != usize::from(args.nodes) {
                bail!(
                    "{} holds a cluster of {} nodes; start it with -n {}, or `silt cluster purge --dir {}` first",
                    dir.display(),
                    existing.nodes.len(),
                    existing.nodes.len(),
                    dir.display()
                );
            }
            existing
        }
        None => {
            let port = |base: u16, i: u16| -> Result<String> {
                let port = base
                    .checked_add(i)
                    .context("a port past 65535: choose lower base ports")?;
                Ok(format!("127.0.0.1:{port}"))
            };
            let mut nodes = Vec::new();
            for i in 0..args.nodes {
                nodes.push(NodeEntry {
                    id: i,
                    kafka: port(args.kafka_port, i)?,
                    admin: port(args.admin_port, i)?,
                    rpc: port(args.rpc_port, i)?,
                    data_dir: dir.join(format!("node-{i}")),
                    pid: None,
                });
            }
            let replication = args.nodes.min(3);
            let mut settings = vec![
                format!("default_replication_factor={replication}"),
                format!("default_min_insync_replicas={}", replication.min(2)),
            ];
            settings.extend(args.set.iter().cloned());
            LocalCluster {
                dir: dir.clone(),
                seeds: LocalCluster::initial_seeds(&nodes),
                archive: args
                    .archive
                    .clone()
                    .unwrap_or_else(|| dir.join("archive").display().to_string()),
                settings,
                nodes,
            }
        }
    };
    let bar = progress(cluster.nodes.len() as u64);
    let mut children: Vec<Option<Child>> = Vec::new();
    for i in 0..cluster.nodes.len() {
        if cluster.nodes[i].running() {
            bar.println(format!("node {} is running already", cluster.nodes[i].id));
            children.push(None);
            continue;
        }
        children.push(Some(cluster.spawn(i)?));
    }
    cluster.save()?;
    bar.set_message("waiting for the nodes to form the cluster");
    let started = Instant::now();
    let mut ready = vec![false; cluster.nodes.len()];
    while ready.iter().any(|r| !r) {
        for (i, node) in cluster.nodes.iter().enumerate() {
            if ready[i] {
                continue;
            }
            let gone = match &mut children[i] {
                Some(child) => exited(child),
                None => !node.running(),
            };
            if gone {
                bar.finish_and_clear();
                bail!(
                    "node {} exited; the end of {}:\n{}",
                    node.id,
                    node.log_path().display(),
                    tail(&node.log_path(), 20)
                );
            }
            if let Ok(status) = get_json(&node.admin, "/v1/status").await
                && !status["cluster"]["controller_leader"].is_null()
            {
                ready[i] = true;
                bar.inc(1);
            }
        }
        if started.elapsed() > START_TIMEOUT {
            bar.finish_and_clear();
            let late: Vec<String> = cluster
                .nodes
                .iter()
                .zip(&ready)
                .filter(|(_, r)| !**r)
                .map(|(n, _)| format!("node {} (see {})", n.id, n.log_path().display()))
                .collect();
            bail!(
                "not ready after {}s: {}",
                START_TIMEOUT.as_secs(),
                late.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bar.finish_and_clear();
    println!(
        "started a cluster of {} nodes in {:.1} s",
        cluster.nodes.len(),
        started.elapsed().as_secs_f64()
    );
    print_table(&cluster);
    println!("\narchive: {}", cluster.archive);
    println!("\nexport SILT_BROKERS={}", cluster.brokers());
    println!(
        "# the silt CLI reads SILT_BROKERS; Kafka clients take the same list as bootstrap.servers"
    );
    Ok(())
}

fn print_table(cluster: &LocalCluster) {
    println!(
        "\n{:<6} {:<22} {:<22} {:<22} {:>8}  LOG",
        "NODE", "KAFKA", "ADMIN", "RPC", "PID"
    );
    for node in &cluster.nodes {
        let pid = match node.pid {
            Some(pid) if node.running() => pid.to_string(),
            _ => "-".to_string(),
        };
        println!(
            "{:<6} {:<22} {:<22} {:<22} {pid:>8}  {}",
            node.id,
            node.kafka,
            node.admin,
            node.rpc,
            node.log_path().display()
        );
    }
}

fn require(args: &LocalArgs) -> Result<LocalCluster> {
    LocalCluster::load(&args.dir)?.with_context(|| {
        format!(
            "no cluster in {} (start one with `silt cluster start`)",
            args.dir.display()
        )
    })
}

/// `silt cluster add-node`: one more node for the development cluster, with the next id
/// and ports; it joins through the controller's voters and takes replicas of new topics
/// (move existing ones to it with `silt cluster move`).
pub(crate) async fn add_node(args: &LocalArgs) -> Result<()> {
    let mut cluster = require(args)?;
    let first = cluster
        .nodes
        .first()
        .cloned()
        .context("the cluster has no node")?;
    let id = cluster.nodes.iter().map(|n| n.id).max().unwrap_or(0) + 1;
    let shifted = |addr: &str| -> Result<String> {
        let (host, port) = addr.rsplit_once(':').context("an address without a port")?;
        let port: u16 = port.parse().context("a port that is not a number")?;
        let port = port
            .checked_add(id)
            .context("a port past 65535: choose lower base ports")?;
        Ok(format!("{host}:{port}"))
    };
    cluster.nodes.push(NodeEntry {
        id,
        kafka: shifted(&first.kafka)?,
        admin: shifted(&first.admin)?,
        rpc: shifted(&first.rpc)?,
        data_dir: cluster.dir.join(format!("node-{id}")),
        pid: None,
    });
    let index = cluster.nodes.len() - 1;
    let mut child = cluster.spawn(index)?;
    cluster.save()?;
    let bar = progress(1);
    bar.set_message(format!("waiting for node {id} to join"));
    let started = Instant::now();
    let node = cluster.nodes[index].clone();
    loop {
        if exited(&mut child) {
            bar.finish_and_clear();
            bail!(
                "node {id} exited; the end of {}:\n{}",
                node.log_path().display(),
                tail(&node.log_path(), 20)
            );
        }
        if let Ok(status) = get_json(&node.admin, "/v1/status").await
            && !status["cluster"]["controller_leader"].is_null()
        {
            break;
        }
        if started.elapsed() > START_TIMEOUT {
            bar.finish_and_clear();
            bail!(
                "node {id} did not join in {}s (see {})",
                START_TIMEOUT.as_secs(),
                node.log_path().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bar.finish_and_clear();
    println!(
        "node {id} joined in {:.1} s (kafka {}, admin {})",
        started.elapsed().as_secs_f64(),
        node.kafka,
        node.admin
    );
    println!("\nexport SILT_BROKERS={}", cluster.brokers());
    Ok(())
}

/// `silt cluster status`.
pub(crate) async fn status(args: &LocalArgs) -> Result<()> {
    let cluster = require(args)?;
    println!(
        "{:<6} {:<8} {:<22} {:>10} {:>8} {:>9}  HEARS",
        "NODE", "STATE", "KAFKA", "CONTROLLER", "LEADS", "REPLICAS"
    );
    for node in &cluster.nodes {
        if !node.running() {
            println!("{:<6} {:<8} {:<22}", node.id, "stopped", node.kafka);
            continue;
        }
        let Ok(status) = get_json(&node.admin, "/v1/status").await else {
            println!("{:<6} {:<8} {:<22}", node.id, "starting", node.kafka);
            continue;
        };
        let mut leads = 0;
        let mut replicas = 0;
        for topic in status["topics"].as_array().into_iter().flatten() {
            for p in topic["partitions"].as_array().into_iter().flatten() {
                if p["hosted"] == json!(false) {
                    continue;
                }
                replicas += 1;
                let role = p["replica"]["role"].as_str().unwrap_or("leader");
                if role == "leader" {
                    leads += 1;
                }
            }
        }
        let hears: Vec<String> = status["cluster"]["brokers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["id"] != status["node_id"])
            .map(|b| {
                format!(
                    "{}:{}",
                    b["id"],
                    if b["alive"] == json!(true) {
                        "up"
                    } else {
                        "DOWN"
                    }
                )
            })
            .collect();
        let controller = match status["cluster"]["controller_leader"].as_u64() {
            Some(id) => id.to_string(),
            None => "none".to_string(),
        };
        println!(
            "{:<6} {:<8} {:<22} {controller:>10} {leads:>8} {replicas:>9}  {}",
            node.id,
            "running",
            node.kafka,
            hears.join(" ")
        );
    }
    println!("\nexport SILT_BROKERS={}", cluster.brokers());
    Ok(())
}

/// `silt cluster stop`: SIGTERM to every node (each drains and closes its logs), SIGKILL to
/// any still running after a while.
pub(crate) async fn stop(args: &LocalArgs) -> Result<()> {
    let mut cluster = require(args)?;
    let running: Vec<usize> = (0..cluster.nodes.len())
        .filter(|i| cluster.nodes[*i].running())
        .collect();
    let bar = progress(running.len() as u64);
    bar.set_message("stopping");
    for i in &running {
        if let Some(pid) = cluster.nodes[*i].pid {
            signal(pid, libc::SIGTERM);
        }
    }
    let started = Instant::now();
    loop {
        let left: Vec<usize> = running
            .iter()
            .copied()
            .filter(|i| cluster.nodes[*i].running())
            .collect();
        bar.set_position((running.len() - left.len()) as u64);
        if left.is_empty() {
            break;
        }
        if started.elapsed() > STOP_TIMEOUT {
            for i in left {
                bar.println(format!(
                    "node {} did not stop in {}s: killing it",
                    cluster.nodes[i].id,
                    STOP_TIMEOUT.as_secs()
                ));
                if let Some(pid) = cluster.nodes[i].pid {
                    signal(pid, libc::SIGKILL);
                }
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bar.finish_and_clear();
    for node in &mut cluster.nodes {
        node.pid = None;
    }
    cluster.save()?;
    println!(
        "stopped {} nodes of {}",
        running.len(),
        cluster.dir.display()
    );
    Ok(())
}

/// `silt cluster purge`: stops the cluster and deletes its directory.
pub(crate) async fn purge(args: &LocalArgs) -> Result<()> {
    if LocalCluster::load(&args.dir)?.is_none() {
        bail!(
            "no cluster in {}: nothing to purge (only a directory with a cluster.json is deleted)",
            args.dir.display()
        );
    }
    stop(args).await?;
    fs::remove_dir_all(&args.dir).with_context(|| format!("deleting {}", args.dir.display()))?;
    println!("deleted {}", args.dir.display());
    Ok(())
}
