//! Counters, and the Prometheus text exposition of them and of every partition's state.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::node::Node;

/// API keys counted (Kafka's keys run below this).
const API_KEYS: usize = 100;

/// The node's counters. All monotonic except `connections_open`.
#[derive(Debug)]
pub struct Metrics {
    requests: [AtomicU64; API_KEYS],
    /// Requests that could not be decoded, or named an unknown API or version.
    pub requests_rejected: AtomicU64,
    /// Connections accepted.
    pub connections_accepted: AtomicU64,
    /// Connections open now.
    pub connections_open: AtomicI64,
    /// Bytes of request frames read.
    pub bytes_received: AtomicU64,
    /// Bytes of response frames written.
    pub bytes_sent: AtomicU64,
    /// Record batches appended by Produce.
    pub produce_batches: AtomicU64,
    /// Bytes of record batches appended by Produce.
    pub produce_bytes: AtomicU64,
    /// Bytes of record batches returned by Fetch.
    pub fetch_bytes: AtomicU64,
    /// Compaction passes that rewrote segments.
    pub compaction_passes: AtomicU64,
    /// Bytes compaction read.
    pub compaction_bytes_read: AtomicU64,
    /// Bytes compaction removed from local logs.
    pub compaction_bytes_reclaimed: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
            requests_rejected: AtomicU64::new(0),
            connections_accepted: AtomicU64::new(0),
            connections_open: AtomicI64::new(0),
            bytes_received: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            produce_batches: AtomicU64::new(0),
            produce_bytes: AtomicU64::new(0),
            fetch_bytes: AtomicU64::new(0),
            compaction_passes: AtomicU64::new(0),
            compaction_bytes_read: AtomicU64::new(0),
            compaction_bytes_reclaimed: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Counts one request of `api_key`.
    pub fn count_request(&self, api_key: i16) {
        if let Some(counter) = usize::try_from(api_key)
            .ok()
            .and_then(|k| self.requests.get(k))
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a compaction pass.
    pub fn add_compaction(&self, report: &crate::log::compactor::PassReport) {
        Metrics::add(&self.compaction_passes, 1);
        Metrics::add(&self.compaction_bytes_read, report.bytes_read);
        Metrics::add(
            &self.compaction_bytes_reclaimed,
            report.bytes_before.saturating_sub(report.bytes_after),
        );
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Renders the node's metrics in the Prometheus text format.
pub fn render(node: &Node) -> String {
    let m = &node.metrics;
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    };
    counter(
        "silt_requests_rejected_total",
        "Requests that could not be decoded or named an unknown API or version.",
        m.requests_rejected.load(Ordering::Relaxed),
    );
    counter(
        "silt_connections_accepted_total",
        "Kafka connections accepted.",
        m.connections_accepted.load(Ordering::Relaxed),
    );
    counter(
        "silt_bytes_received_total",
        "Bytes of Kafka request frames read.",
        m.bytes_received.load(Ordering::Relaxed),
    );
    counter(
        "silt_bytes_sent_total",
        "Bytes of Kafka response frames written.",
        m.bytes_sent.load(Ordering::Relaxed),
    );
    counter(
        "silt_produce_batches_total",
        "Record batches appended by Produce.",
        m.produce_batches.load(Ordering::Relaxed),
    );
    counter(
        "silt_produce_bytes_total",
        "Bytes of record batches appended by Produce.",
        m.produce_bytes.load(Ordering::Relaxed),
    );
    counter(
        "silt_fetch_bytes_total",
        "Bytes of record batches returned by Fetch.",
        m.fetch_bytes.load(Ordering::Relaxed),
    );
    let topics = node.topics.all();
    let sum = |f: fn(&crate::topics::Recompressed) -> &AtomicU64| -> u64 {
        topics
            .iter()
            .map(|t| f(&t.recompressed).load(Ordering::Relaxed))
            .sum()
    };
    counter(
        "silt_produce_recompressed_batches_total",
        "Batches recompressed on produce because the topic's compression.type differs from the producer's codec.",
        sum(|r| &r.batches),
    );
    counter(
        "silt_produce_recompressed_bytes_in_total",
        "Bytes of recompressed batches as the producers sent them.",
        sum(|r| &r.bytes_in),
    );
    counter(
        "silt_produce_recompressed_bytes_out_total",
        "Bytes of recompressed batches as stored.",
        sum(|r| &r.bytes_out),
    );
    let _ = writeln!(
        out,
        "# HELP silt_connections_open Kafka connections open now.\n# TYPE silt_connections_open gauge\nsilt_connections_open {}",
        m.connections_open.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP silt_requests_total Kafka requests handled, by API.\n# TYPE silt_requests_total counter"
    );
    for (key, count) in m.requests.iter().enumerate() {
        let count = count.load(Ordering::Relaxed);
        if count > 0 {
            let name = kafka_protocol::messages::ApiKey::try_from(key as i16)
                .map_or_else(|_| key.to_string(), |k| format!("{k:?}"));
            let _ = writeln!(out, "silt_requests_total{{api=\"{name}\"}} {count}");
        }
    }
    let _ = writeln!(
        out,
        "# HELP silt_uptime_seconds Seconds since the node started.\n# TYPE silt_uptime_seconds gauge\nsilt_uptime_seconds {}",
        node.uptime_secs()
    );
    let gauges = [
        (
            "silt_partition_high_watermark",
            "Offset after the last record of the partition.",
        ),
        (
            "silt_partition_log_start_offset",
            "First offset held in the local log.",
        ),
        (
            "silt_partition_local_bytes",
            "Bytes of the partition's local segments.",
        ),
        (
            "silt_partition_local_segments",
            "Segments in the partition's local log.",
        ),
        (
            "silt_partition_offline",
            "1 when the partition's log failed to open or stopped.",
        ),
    ];
    let mut rows: Vec<Vec<String>> = vec![Vec::new(); gauges.len()];
    for topic in node.topics.all() {
        for partition in topic.partitions() {
            let labels = format!("topic=\"{}\",partition=\"{}\"", topic.name, partition.index);
            match partition.log() {
                Some(log) => {
                    let values = [
                        log.high_watermark().to_string(),
                        log.log_start_offset().to_string(),
                        log.size_bytes().to_string(),
                        log.segments().len().to_string(),
                        u8::from(log.is_closed()).to_string(),
                    ];
                    for (row, value) in rows.iter_mut().zip(values) {
                        row.push(format!("{{{labels}}} {value}"));
                    }
                }
                None => rows[4].push(format!("{{{labels}}} 1")),
            }
        }
    }
    for ((name, help), row) in gauges.iter().zip(rows) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for line in row {
            let _ = writeln!(out, "{name}{line}");
        }
    }
    render_replication(node, &mut out);
    render_transactions(node, &mut out);
    render_groups(node, &mut out);
    render_security(node, &mut out);
    render_compaction(node, &mut out);
    render_tiering(node, &mut out);
    out
}

/// The compactor's counters and, per partition of a compacted topic, where it stands.
fn render_compaction(node: &Node, out: &mut String) {
    let m = &node.metrics;
    write_counters(
        out,
        &[
            (
                "silt_compaction_passes_total",
                "Compaction passes that rewrote segments.",
                m.compaction_passes.load(Ordering::Relaxed),
            ),
            (
                "silt_compaction_read_bytes_total",
                "Bytes the compactor read.",
                m.compaction_bytes_read.load(Ordering::Relaxed),
            ),
            (
                "silt_compaction_reclaimed_bytes_total",
                "Bytes compaction removed from local logs.",
                m.compaction_bytes_reclaimed.load(Ordering::Relaxed),
            ),
        ],
    );
    let gauges = [
        (
            "silt_partition_compaction_dirty_ratio",
            "Share of a compacted partition's compactable bytes not compacted yet.",
        ),
        (
            "silt_partition_compaction_cleaned_offset",
            "Offset below which the partition's local log is compacted.",
        ),
        (
            "silt_partition_compaction_last_ms",
            "When the partition's last compaction pass ended (ms since the epoch; -1: none since start).",
        ),
        (
            "silt_partition_compaction_reclaimed_bytes",
            "Bytes compaction removed from the partition's local log since start.",
        ),
    ];
    let mut rows: Vec<Vec<String>> = vec![Vec::new(); gauges.len()];
    for topic in node.topics.all() {
        if !topic.config().cleanup_policy.compacts() {
            continue;
        }
        for partition in topic.partitions() {
            let Some(log) = partition.log() else { continue };
            let labels = format!("topic=\"{}\",partition=\"{}\"", topic.name, partition.index);
            let status = log.compaction_status();
            let values = [
                format!("{:.4}", status.dirty_ratio),
                status.cleaned_to.to_string(),
                status.last_compaction_ms.to_string(),
                status.bytes_reclaimed.to_string(),
            ];
            for (row, value) in rows.iter_mut().zip(values) {
                row.push(format!("{{{labels}}} {value}"));
            }
        }
    }
    for ((name, help), row) in gauges.iter().zip(rows) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for line in row {
            let _ = writeln!(out, "{name}{line}");
        }
    }
}

/// The cluster as this node sees it (pulses, brokers heard, the controller) and, per
/// replicated partition, its leadership and in-sync replicas.
fn render_replication(node: &Node, out: &mut String) {
    let cluster = &node.cluster;
    let pulse = &cluster.pulse;
    write_counters(
        out,
        &[
            (
                "silt_cluster_pulses_sent_total",
                "Heartbeats sent to other nodes.",
                pulse.counters.sent.load(Ordering::Relaxed),
            ),
            (
                "silt_cluster_pulses_missed_total",
                "Heartbeats that got no answer in time.",
                pulse.counters.missed.load(Ordering::Relaxed),
            ),
            (
                "silt_cluster_elections_total",
                "Partition elections this node stood in.",
                pulse.counters.elections.load(Ordering::Relaxed),
            ),
            (
                "silt_cluster_leadership_transfers_total",
                "Leaderships this node handed to another replica.",
                pulse.counters.transfers.load(Ordering::Relaxed),
            ),
            (
                "silt_cluster_rpc_bytes_sent_total",
                "Bytes this node sent to other nodes (Raft and node requests and answers).",
                cluster.transport.metrics.bytes_sent.load(Ordering::Relaxed),
            ),
            (
                "silt_cluster_rpc_bytes_received_total",
                "Bytes this node received from other nodes (what it copied from leaders, among others).",
                cluster
                    .transport
                    .metrics
                    .bytes_received
                    .load(Ordering::Relaxed),
            ),
        ],
    );
    let state = cluster.controller.state();
    let _ = writeln!(
        out,
        "# HELP silt_cluster_broker_alive 1 when the broker is heard from (this node: always).\n# TYPE silt_cluster_broker_alive gauge"
    );
    for id in state.brokers.keys() {
        let alive = *id == cluster.node_id || pulse.liveness.alive(*id as u64);
        let _ = writeln!(
            out,
            "silt_cluster_broker_alive{{broker=\"{id}\"}} {}",
            u8::from(alive)
        );
    }
    let _ = writeln!(
        out,
        "# HELP silt_cluster_controller_leader The controller's leader as this node knows it (-1: none).\n# TYPE silt_cluster_controller_leader gauge\nsilt_cluster_controller_leader {}",
        cluster.controller.leader().map_or(-1, |l| l as i64)
    );
    let _ = writeln!(
        out,
        "# HELP silt_cluster_controller_voters Voters of the controller's Raft group.\n# TYPE silt_cluster_controller_voters gauge\nsilt_cluster_controller_voters {}",
        cluster.controller.voters().len()
    );
    let gauges = [
        (
            "silt_partition_leader",
            "1 when this node leads the partition.",
        ),
        (
            "silt_partition_leader_epoch",
            "The partition's leader epoch (Raft term).",
        ),
        ("silt_partition_replicas", "Replicas of the partition."),
        (
            "silt_partition_in_sync_replicas",
            "Replicas in sync with the leader (on the leader only).",
        ),
        (
            "silt_partition_under_replicated",
            "1 on the leader when fewer replicas are in sync than the partition has.",
        ),
        (
            "silt_partition_replica_local_start_offset",
            "On the leader: where each replica's local log starts (older offsets are read from the archive).",
        ),
    ];
    let mut rows: Vec<Vec<String>> = vec![Vec::new(); gauges.len()];
    for topic in node.topics.all() {
        for partition in topic.partitions() {
            let Ok(replica) = &partition.replica else {
                continue;
            };
            let Some(raft) = replica.as_raft() else {
                continue;
            };
            let labels = format!("topic=\"{}\",partition=\"{}\"", topic.name, partition.index);
            let leadership = replica.leadership();
            let replicas = raft.voters().len();
            rows[0].push(format!("{{{labels}}} {}", u8::from(leadership.is_leader)));
            rows[1].push(format!("{{{labels}}} {}", leadership.epoch));
            rows[2].push(format!("{{{labels}}} {replicas}"));
            if leadership.is_leader {
                let in_sync = raft.in_sync_nodes().len();
                rows[3].push(format!("{{{labels}}} {in_sync}"));
                rows[4].push(format!("{{{labels}}} {}", u8::from(in_sync < replicas)));
                let mut starts = node.cluster.pulse.replica_starts(raft.group());
                starts.insert(node.config.node_id as u64, replica.log().log_start_offset());
                for (replica, start) in starts {
                    rows[5].push(format!("{{{labels},replica=\"{replica}\"}} {start}"));
                }
            }
        }
    }
    for ((name, help), row) in gauges.iter().zip(rows) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for line in row {
            let _ = writeln!(out, "{name}{line}");
        }
    }
}

/// The transactional ids this node coordinates, by state.
fn render_security(node: &Node, out: &mut String) {
    node.security.render(&node.cluster.controller.state(), out);
}

fn render_groups(node: &Node, out: &mut String) {
    let mut counts: std::collections::BTreeMap<(&str, &str), usize> = Default::default();
    let mut members: std::collections::BTreeMap<&str, usize> = Default::default();
    let summaries = node.groups.summaries();
    for g in &summaries {
        *counts.entry((g.kind, g.state)).or_default() += 1;
        *members.entry(g.kind).or_default() += g.members;
    }
    let _ = writeln!(
        out,
        "# HELP silt_groups Consumer groups this node coordinates, by type (classic, consumer) and state.\n# TYPE silt_groups gauge"
    );
    for ((kind, state), n) in counts {
        let _ = writeln!(out, "silt_groups{{type=\"{kind}\",state=\"{state}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP silt_group_members Members of the groups this node coordinates, by group type.\n# TYPE silt_group_members gauge"
    );
    for (kind, n) in members {
        let _ = writeln!(out, "silt_group_members{{type=\"{kind}\"}} {n}");
    }
}

fn render_transactions(node: &Node, out: &mut String) {
    use crate::txn::state::TxnStatus;
    let owned = node.groups.owned_txns();
    let _ = writeln!(
        out,
        "# HELP silt_transactions Transactional ids this node coordinates, by state.\n# TYPE silt_transactions gauge"
    );
    for status in [
        TxnStatus::Empty,
        TxnStatus::Ongoing,
        TxnStatus::PrepareCommit,
        TxnStatus::PrepareAbort,
        TxnStatus::CompleteCommit,
        TxnStatus::CompleteAbort,
    ] {
        let count = owned.iter().filter(|(_, m)| m.status == status).count();
        let _ = writeln!(
            out,
            "silt_transactions{{state=\"{}\"}} {count}",
            status.kafka_name()
        );
    }
}

/// The archive's counters and, per partition, how far the archive trails the log.
fn render_tiering(node: &Node, out: &mut String) {
    use silt_archiver::remote::RemoteMetrics;
    let Some(tiering) = &node.tiering else { return };
    let m = &tiering.metrics;
    let remote = tiering.archive().remote().metrics();
    let counters: [(&str, &str, u64); 20] = [
        (
            "silt_archive_uploads_total",
            "Segments archived (upload and manifest confirmed).",
            m.uploads.load(Ordering::Relaxed),
        ),
        (
            "silt_archive_upload_failures_total",
            "Archive operations that failed and will be retried.",
            m.upload_failures.load(Ordering::Relaxed),
        ),
        (
            "silt_archive_uploaded_bytes_total",
            "Bytes of segments archived.",
            m.uploaded_bytes.load(Ordering::Relaxed),
        ),
        (
            "silt_archive_segments_deleted_total",
            "Archived segments removed by retention and DeleteRecords.",
            m.archive_segments_deleted.load(Ordering::Relaxed),
        ),
        (
            "silt_archive_deleted_topic_objects_total",
            "Objects of deleted topics removed from the bucket (by the controller's leader).",
            m.topic_objects_deleted.load(Ordering::Relaxed),
        ),
        (
            "silt_archive_compaction_passes_total",
            "Archive compaction passes that replaced archived segments.",
            m.compaction_passes.load(Ordering::Relaxed),
        ),
        (
            "silt_archive_compaction_input_bytes_total",
            "Bytes of archived segments replaced by compaction.",
            m.compaction_bytes_before.load(Ordering::Relaxed),
        ),
        (
            "silt_archive_compaction_output_bytes_total",
            "Bytes of the compacted segments that replaced them.",
            m.compaction_bytes_after.load(Ordering::Relaxed),
        ),
        (
            "silt_archive_compaction_gets_total",
            "GETs of segments and sidecars made by archive compaction.",
            m.compaction_gets.load(Ordering::Relaxed),
        ),
        (
            "silt_archive_sent_bytes_total",
            "Bytes of archived batches sent to clients.",
            m.archive_sent_bytes.load(Ordering::Relaxed),
        ),
        (
            "silt_archive_parquet_files_total",
            "Parquet files written as segments were archived (topics with archive.parquet=true).",
            m.parquet_files.load(Ordering::Relaxed),
        ),
        (
            "silt_archive_parquet_bytes_total",
            "Bytes of those Parquet files.",
            m.parquet_bytes.load(Ordering::Relaxed),
        ),
        (
            "silt_object_store_gets_total",
            "GET requests to the object store.",
            RemoteMetrics::get(&remote.gets),
        ),
        (
            "silt_object_store_puts_total",
            "PUT requests (and multipart parts) to the object store.",
            RemoteMetrics::get(&remote.puts),
        ),
        (
            "silt_object_store_deletes_total",
            "DELETE requests to the object store.",
            RemoteMetrics::get(&remote.deletes),
        ),
        (
            "silt_object_store_lists_total",
            "LIST requests to the object store.",
            RemoteMetrics::get(&remote.lists),
        ),
        (
            "silt_object_store_heads_total",
            "HEAD requests to the object store.",
            RemoteMetrics::get(&remote.heads),
        ),
        (
            "silt_object_store_read_bytes_total",
            "Bytes downloaded from the object store.",
            RemoteMetrics::get(&remote.bytes_read),
        ),
        (
            "silt_object_store_written_bytes_total",
            "Bytes uploaded to the object store.",
            RemoteMetrics::get(&remote.bytes_written),
        ),
        (
            "silt_object_store_failures_total",
            "Object-store requests that failed after retries.",
            RemoteMetrics::get(&remote.failures),
        ),
    ];
    write_counters(out, &counters);
    // The economy of the archive, as the store bills it: requests per GiB moved.
    let per_gib = |requests: u64, bytes: u64| {
        if bytes == 0 {
            0.0
        } else {
            requests as f64 / (bytes as f64 / f64::from(1u32 << 30))
        }
    };
    let _ = writeln!(
        out,
        "# HELP silt_archive_puts_per_gib_archived PUT requests (multipart parts counted; sidecars, manifests) per GiB of segments archived, since start.\n# TYPE silt_archive_puts_per_gib_archived gauge\nsilt_archive_puts_per_gib_archived {}",
        per_gib(
            RemoteMetrics::get(&remote.puts),
            m.uploaded_bytes.load(Ordering::Relaxed)
        )
    );
    let _ = writeln!(
        out,
        "# HELP silt_archive_gets_per_gib_replayed GET requests (chunks, sidecars, manifest nodes) per GiB of archived records sent to clients, since start.\n# TYPE silt_archive_gets_per_gib_replayed gauge\nsilt_archive_gets_per_gib_replayed {}",
        per_gib(
            RemoteMetrics::get(&remote.gets),
            m.archive_sent_bytes.load(Ordering::Relaxed)
        )
    );
    let verify = tiering.verifier.snapshot();
    let _ = writeln!(
        out,
        "# HELP silt_archive_verify_running Whether a verification of the archive is running.\n# TYPE silt_archive_verify_running gauge\nsilt_archive_verify_running {}",
        u8::from(verify.running)
    );
    let _ = writeln!(
        out,
        "# HELP silt_archive_verify_runs_total Verifications of the archive finished since start.\n# TYPE silt_archive_verify_runs_total counter\nsilt_archive_verify_runs_total {}",
        verify.runs
    );
    let _ = writeln!(
        out,
        "# HELP silt_archive_verify_checked_bytes Segment bytes the latest verification checked.\n# TYPE silt_archive_verify_checked_bytes gauge\nsilt_archive_verify_checked_bytes {}",
        verify.counts.bytes
    );
    let _ = writeln!(
        out,
        "# HELP silt_archive_verify_faults Faults the latest verification found.\n# TYPE silt_archive_verify_faults gauge\nsilt_archive_verify_faults {}",
        verify.faults_total
    );
    render_remote_reads(tiering, out);
    let mut backlog_segments = 0;
    let mut backlog_bytes = 0;
    let mut lag_rows = Vec::new();
    let mut archived_rows = Vec::new();
    for topic in node.topics.all() {
        if !topic.config().remote_storage_enable {
            continue;
        }
        for partition in topic.partitions() {
            let Some((segments, bytes, lag)) = tiering.backlog(&topic, &partition) else {
                continue;
            };
            backlog_segments += segments;
            backlog_bytes += bytes;
            let labels = format!("topic=\"{}\",partition=\"{}\"", topic.name, partition.index);
            lag_rows.push(format!("silt_archive_lag_offsets{{{labels}}} {lag}"));
            let archived = tiering
                .archived_next(topic.id, partition.index)
                .unwrap_or(-1);
            archived_rows.push(format!("silt_archive_next_offset{{{labels}}} {archived}"));
        }
    }
    let _ = writeln!(
        out,
        "# HELP silt_archive_backlog_segments Sealed segments not archived yet.\n# TYPE silt_archive_backlog_segments gauge\nsilt_archive_backlog_segments {backlog_segments}"
    );
    let _ = writeln!(
        out,
        "# HELP silt_archive_backlog_bytes Bytes of sealed segments not archived yet.\n# TYPE silt_archive_backlog_bytes gauge\nsilt_archive_backlog_bytes {backlog_bytes}"
    );
    let _ = writeln!(
        out,
        "# HELP silt_archive_lag_offsets Offsets between the high watermark and the archive's end.\n# TYPE silt_archive_lag_offsets gauge"
    );
    for row in lag_rows {
        let _ = writeln!(out, "{row}");
    }
    let _ = writeln!(
        out,
        "# HELP silt_archive_next_offset Offset after the last archived record (-1: manifest not loaded yet).\n# TYPE silt_archive_next_offset gauge"
    );
    for row in archived_rows {
        let _ = writeln!(out, "{row}");
    }
    render_read_replicas(node, tiering, out);
}

/// Read replicas: how far each partition is behind its source archive.
fn render_read_replicas(node: &Node, tiering: &crate::tiering::Tiering, out: &mut String) {
    let mut lag_rows = Vec::new();
    let mut age_rows = Vec::new();
    // The same clock the replica's look was stamped with.
    let now = crate::log::Clock::now_ms(&crate::log::SystemClock);
    for topic in node.topics.all() {
        if topic.read_replica_of.is_none() {
            continue;
        }
        for partition in 0..topic.partition_count() {
            let Some(tier) = tiering.get(topic.id, partition) else {
                continue;
            };
            let f = tier.following();
            let Some(lag) = f.lag_offsets() else {
                continue;
            };
            let labels = format!("topic=\"{}\",partition=\"{partition}\"", topic.name);
            lag_rows.push(format!("silt_read_replica_lag_offsets{{{labels}}} {lag}"));
            let age = (now - f.followed_ms).max(0) as f64 / 1000.0;
            age_rows.push(format!(
                "silt_read_replica_followed_age_seconds{{{labels}}} {age:.3}"
            ));
        }
    }
    let _ = writeln!(
        out,
        "# HELP silt_read_replica_lag_offsets Offsets the source archive's root names that this read replica does not serve yet (objects not replicated into the bucket).\n# TYPE silt_read_replica_lag_offsets gauge"
    );
    for row in lag_rows {
        let _ = writeln!(out, "{row}");
    }
    let _ = writeln!(
        out,
        "# HELP silt_read_replica_followed_age_seconds Time since this read replica last read its source's root.\n# TYPE silt_read_replica_followed_age_seconds gauge"
    );
    for row in age_rows {
        let _ = writeln!(out, "{row}");
    }
}

/// Reads served from the archive: cache hits and misses, bytes, GETs, time to first byte.
fn render_remote_reads(tiering: &crate::tiering::Tiering, out: &mut String) {
    let reader = tiering.reader();
    let r = reader.metrics();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let counters: [(&str, &str, u64); 9] = [
        (
            "silt_archive_reads_total",
            "Fetches and timestamp lookups answered from the archive.",
            load(&r.reads),
        ),
        (
            "silt_archive_read_failures_total",
            "Archive reads that failed (store unavailable, timed out, corrupt object).",
            load(&r.read_failures),
        ),
        (
            "silt_archive_cache_hits_total",
            "Chunk reads answered by the archive cache.",
            load(&r.chunk_hits),
        ),
        (
            "silt_archive_cache_misses_total",
            "Chunk reads that waited for the object store.",
            load(&r.chunk_misses),
        ),
        (
            "silt_archive_chunk_gets_total",
            "Chunk GETs sent to the object store (demand and prefetch).",
            load(&r.chunk_gets),
        ),
        (
            "silt_archive_prefetch_gets_total",
            "Chunk GETs sent ahead of sequential readers.",
            load(&r.prefetches),
        ),
        (
            "silt_archive_fetched_bytes_total",
            "Bytes of chunks read from the object store.",
            load(&r.bytes_fetched),
        ),
        (
            "silt_archive_served_bytes_total",
            "Bytes of record batches served from the archive.",
            load(&r.bytes_served),
        ),
        (
            "silt_archive_corrupt_batches_total",
            "Archived batches that failed their checks (never served).",
            load(&r.corrupt_batches),
        ),
    ];
    write_counters(out, &counters);
    let (hits, misses) = (load(&r.chunk_hits), load(&r.chunk_misses));
    let ratio = if hits + misses == 0 {
        0.0
    } else {
        hits as f64 / (hits + misses) as f64
    };
    let _ = writeln!(
        out,
        "# HELP silt_archive_cache_hit_ratio Share of chunk reads answered by the cache.\n# TYPE silt_archive_cache_hit_ratio gauge\nsilt_archive_cache_hit_ratio {ratio}"
    );
    let _ = writeln!(
        out,
        "# HELP silt_archive_cache_bytes Bytes in the archive chunk cache.\n# TYPE silt_archive_cache_bytes gauge\nsilt_archive_cache_bytes {}",
        reader.cache().bytes()
    );
    let _ = writeln!(
        out,
        "# HELP silt_archive_prefetch_window_bytes The widest read-ahead window of a sequential archive reader (it doubles while the reader waits for the store).\n# TYPE silt_archive_prefetch_window_bytes gauge\nsilt_archive_prefetch_window_bytes {}",
        reader.widest_prefetch_window()
    );
    let name = "silt_archive_read_first_byte_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time from the start of an archive read to its bytes.\n# TYPE {name} histogram"
    );
    let (cumulative, sum) = r.time_to_first_byte.snapshot();
    for (bound, count) in silt_archiver::reader::Histogram::BOUNDS_MS
        .iter()
        .zip(&cumulative)
    {
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"{}\"}} {count}",
            *bound as f64 / 1000.0
        );
    }
    let total = cumulative.last().copied().unwrap_or(0);
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
    let _ = writeln!(out, "{name}_sum {sum}");
    let _ = writeln!(out, "{name}_count {total}");
}

/// Writes `(name, help, value)` counters in Prometheus text format.
fn write_counters(out: &mut String, counters: &[(&str, &str, u64)]) {
    for (name, help, value) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
}
