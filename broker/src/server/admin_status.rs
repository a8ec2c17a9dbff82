//! What `/v1/status` and `/v1/topics/{topic}/tiering` say of a topic and its partitions:
//! offsets across the tiers, the replica's Raft state, the archive's progress.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::log::PartitionLog;
use crate::node::Node;
use crate::partition::PartitionView;
use crate::replica::Replica;
use crate::tiering::Following;
use crate::topics::{Partition, Topic};

/// A topic: its settings of note and every partition's state. `archive` is the node's archive
/// target, if it has one.
pub(super) fn topic_status(node: &Node, topic: &Arc<Topic>, archive: Option<&str>) -> Value {
    let partitions: Vec<Value> = topic
        .partitions()
        .iter()
        .map(|p| partition_status(node, topic, p))
        .collect();
    let r = &topic.recompressed;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    json!({
        "name": topic.name,
        "id": topic.id,
        "compression_type": topic.compression_type().as_str(),
        "recompressed": { "batches": load(&r.batches), "bytes_in": load(&r.bytes_in), "bytes_out": load(&r.bytes_out) },
        // Where archived segments go as Parquet (archive.parquet=true): a Hive-style table.
        "parquet_table": (topic.config().archive_parquet && archive.is_some()).then(|| format!(
            "{}/{}/topic={}/", archive.unwrap_or_default().trim_end_matches('/'),
            silt_archiver::parquet::ARCHIVE_DIR, topic.name,
        )),
        "partitions": partitions,
    })
}

/// One partition: offsets across the tiers, its replica, its archive.
fn partition_status(node: &Node, topic: &Arc<Topic>, p: &Arc<Partition>) -> Value {
    if !p.hosted {
        return json!({ "partition": p.index, "hosted": false });
    }
    let view = PartitionView::of(node, topic.clone(), p.clone());
    if let Some(error) = view.offline() {
        return json!({ "partition": p.index, "online": false, "error": error });
    }
    let bounds = view.bounds_now();
    let tier = view.tier();
    if let Some(source) = &topic.read_replica_of {
        // A read replica: what it serves of its source's archive.
        return json!({
            "partition": p.index,
            "online": true,
            "read_replica_of": source,
            "high_watermark": bounds.high_watermark,
            "start_offset": bounds.log_start,
            "source_manifest_version": tier.as_ref().and_then(|t| t.root()).map(|r| r.version),
            "following": tier.map(|t| following_json(&t.following())),
        });
    }
    let Some(log) = p.log() else {
        return json!({ "partition": p.index, "online": false, "error": "no local log" });
    };
    let backlog = node.tiering.as_ref().and_then(|t| t.backlog(topic, p));
    let replica = p
        .replica
        .as_ref()
        .ok()
        .map(|r| replica_status(node, r.as_ref(), log));
    json!({
        "partition": p.index,
        "online": !log.is_closed(),
        "replica": replica,
        "high_watermark": bounds.high_watermark,
        // read_committed consumers read below it (an open transaction).
        "last_stable_offset": bounds.last_stable,
        "log_end_offset": bounds.log_end,
        // The first offset a consumer can read, across tiers.
        "start_offset": bounds.log_start,
        "local_start_offset": bounds.local_start,
        "local_bytes": log.size_bytes(),
        "compaction": topic.config().cleanup_policy.compacts().then(|| log.compaction_status()),
        "local_segments": log.segments().len(),
        "archive": tier.map(|t| json!({
            "archived_next_offset": t.archived_next(),
            "archive_start_offset": t.archive_start(),
            // Bytes of the segments the archive's latest root names.
            "archived_bytes": t.root().map(|r| r.bytes),
            "fenced": t.is_fenced(),
            // The last root's writer and term (who uploads: the leader).
            "root_writer": t.root().map(|r| r.writer.clone()),
            "root_term": t.root().map(|r| r.term),
            // The archive pointer the partition's log last carried here.
            "replicated_pointer": log.archived_pointer(),
            "compacted_to": t.root().map(|r| r.compacted_to),
            "compaction_deferred_segments": t.root().map(|r| r.deferred_segments.len()),
            "backlog_segments": backlog.map(|b| b.0),
            "backlog_bytes": backlog.map(|b| b.1),
        })),
    })
}

/// A replica's Raft state: role, leader, epoch, replicas, and while leading how far each
/// other replica lags and where its local log starts.
fn replica_status(node: &Node, r: &dyn Replica, log: &PartitionLog) -> Value {
    let leadership = r.leadership();
    // While leading: entries each other replica lacks (a new replica
    // catching up during a move shows here).
    let lags: serde_json::Map<String, Value> = r
        .as_raft()
        .filter(|_| leadership.is_leader)
        .map(|raft| raft.lags())
        .unwrap_or_default()
        .into_iter()
        .map(|(n, lag)| (n.to_string(), json!(lag)))
        .collect();
    // Where this replica's Raft snapshot sits and what its log forgot
    // (a replica that needs older entries gets the snapshot).
    let (snapshot, purged, last) = r
        .as_raft()
        .map(|raft| raft.snapshot_progress())
        .unwrap_or_default();
    // While leading: where each replica's local log starts (the others'
    // as their pulses last said), beside the archive pointer.
    let local_starts: serde_json::Map<String, Value> = r
        .as_raft()
        .filter(|_| leadership.is_leader)
        .map(|raft| {
            let mut starts = node.cluster.pulse.replica_starts(raft.group());
            starts.insert(node.config.node_id as u64, log.log_start_offset());
            starts
        })
        .unwrap_or_default()
        .into_iter()
        .map(|(n, start)| (n.to_string(), json!(start)))
        .collect();
    json!({
        "role": r.role(),
        "leader": leadership.leader,
        "leader_epoch": leadership.epoch,
        "replicas": r.replicas(),
        "in_sync": r.in_sync(),
        "lags": lags,
        "raft_snapshot_index": snapshot,
        "raft_purged_index": purged,
        "raft_last_index": last,
        "replica_local_starts": local_starts,
    })
}

/// The archive's chunk cache on this node: bytes held, hits, misses.
pub(super) fn cache_status(node: &Node) -> Option<Value> {
    let reader = node.tiering.as_ref()?.reader();
    let m = reader.metrics();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let (hits, misses) = (load(&m.chunk_hits), load(&m.chunk_misses));
    Some(json!({
        "bytes": reader.cache().bytes(),
        "chunk_hits": hits,
        "chunk_misses": misses,
        "hit_ratio": if hits + misses == 0 { 0.0 } else { hits as f64 / (hits + misses) as f64 },
    }))
}

/// How far a read replica partition is behind its source.
pub(super) fn following_json(f: &Following) -> Value {
    let mut value = serde_json::to_value(f).unwrap_or_else(|_| json!({}));
    value["lag_offsets"] = json!(f.lag_offsets());
    value
}

/// `GET /v1/read-replicas`: the topics this cluster serves from another cluster's archive,
/// each partition with how far behind its source it is.
pub(super) async fn read_replicas(
    axum::extract::State(node): axum::extract::State<Arc<Node>>,
) -> axum::Json<Value> {
    let topics: Vec<Value> = node
        .topics
        .all()
        .iter()
        .filter_map(|topic| {
            let source = topic.read_replica_of.as_ref()?;
            let target = node.tiering.as_ref().map(|t| t.replica_target(source));
            let followings: Vec<Option<Following>> = (0..topic.partition_count())
                .map(|p| {
                    let tier = node.tiering.as_ref().and_then(|t| t.get(topic.id, p));
                    tier.map(|tier| tier.following())
                })
                .collect();
            let known = || followings.iter().flatten();
            let lag: i64 = known().filter_map(Following::lag_offsets).sum();
            let oldest_look = known().map(|f| f.followed_ms).min();
            let partitions: Vec<Value> = followings
                .iter()
                .enumerate()
                .map(
                    |(p, f)| json!({ "partition": p, "following": f.as_ref().map(following_json) }),
                )
                .collect();
            Some(json!({
                "topic": topic.name,
                "source": source,
                "source_target": match target {
                    Some(Ok(target)) => json!(target),
                    Some(Err(e)) => json!({ "error": e.to_string() }),
                    None => Value::Null,
                },
                "lag_offsets": lag,
                "oldest_followed_ms": oldest_look,
                "partitions": partitions,
            }))
        })
        .collect();
    axum::Json(json!({ "read_replicas": topics }))
}
