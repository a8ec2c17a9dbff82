//! The admin HTTP server: `/metrics` (Prometheus text), `/v1/status` (JSON), and the
//! operator actions on a cluster (JSON in and out), behind TLS and authentication when they
//! are configured (see `admin_auth`):
//!
//! ```text
//! GET    /v1/brokers                                          brokers, what each holds
//! POST   /v1/brokers/{id}/decommission                        move everything off a broker
//! DELETE /v1/brokers/{id}                                     forget an emptied broker
//! POST   /v1/partitions/{topic}/{partition}/reassign          {"replicas": [..]}
//! POST   /v1/partitions/{topic}/{partition}/transfer_leadership  {"to": id}
//! GET    /v1/archive/find?topic=T&key=K                       records by key (admin_archive)
//! GET    /v3/...                                              REST Proxy v3, read side (rest_v3)
//! ```

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::admin_auth::{Gate, TlsListener, authenticate};
use crate::cluster::ops::{self, OpError};
use crate::metrics;
use crate::node::Node;
use crate::partition::PartitionView;

pub(super) async fn serve(node: Arc<Node>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let app = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/v1/status", get(status))
        .route("/v1/brokers", get(brokers))
        .route("/v1/archive/find", get(super::admin_archive::find))
        .route("/v1/brokers/{id}/decommission", post(decommission))
        .route("/v1/brokers/{id}", delete(remove_broker))
        .route(
            "/v1/partitions/{topic}/{partition}/reassign",
            post(reassign),
        )
        .route(
            "/v1/partitions/{topic}/{partition}/transfer_leadership",
            post(transfer_leadership),
        )
        .merge(super::rest_v3::routes())
        .layer(axum::middleware::from_fn_with_state(
            Gate {
                node: node.clone(),
                verified: Default::default(),
            },
            authenticate,
        ))
        .with_state(node.clone());
    let stopped = async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    };
    let result = match (node.config.security.admin_tls, node.security.tls.clone()) {
        (true, Some(tls)) => {
            let handshake =
                std::time::Duration::from_millis(node.config.security.sasl_handshake_timeout_ms);
            axum::serve(TlsListener::new(listener, tls, handshake), app)
                .with_graceful_shutdown(stopped)
                .await
        }
        _ => {
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
        }
    };
    if let Err(e) = result {
        tracing::error!(error = %e, "admin HTTP server failed");
    }
}

/// An operation's answer: 200 with `body`, or the error's status and message.
fn answer(result: Result<Value, OpError>) -> (StatusCode, Json<Value>) {
    match result {
        Ok(body) => (StatusCode::OK, Json(body)),
        Err(e) => {
            let status = match e {
                OpError::NotFound(_) => StatusCode::NOT_FOUND,
                OpError::Invalid(_) => StatusCode::BAD_REQUEST,
                OpError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            (status, Json(json!({ "error": e.to_string() })))
        }
    }
}

#[derive(Debug, serde::Deserialize)]
struct ReassignBody {
    replicas: Vec<i32>,
}

#[derive(Debug, serde::Deserialize)]
struct TransferBody {
    to: i32,
}

async fn reassign(
    State(node): State<Arc<Node>>,
    Path((topic, partition)): Path<(String, i32)>,
    Json(body): Json<ReassignBody>,
) -> (StatusCode, Json<Value>) {
    answer(
        ops::reassign(&node, &topic, partition, body.replicas.clone())
            .await
            .map(
                |()| json!({ "topic": topic, "partition": partition, "moving_to": body.replicas }),
            ),
    )
}

async fn transfer_leadership(
    State(node): State<Arc<Node>>,
    Path((topic, partition)): Path<(String, i32)>,
    Json(body): Json<TransferBody>,
) -> (StatusCode, Json<Value>) {
    answer(
        ops::transfer_leadership(&node, &topic, partition, body.to)
            .await
            .map(|()| json!({ "topic": topic, "partition": partition, "leader": body.to })),
    )
}

async fn decommission(
    State(node): State<Arc<Node>>,
    Path(id): Path<i32>,
) -> (StatusCode, Json<Value>) {
    answer(
        ops::decommission(&node, id)
            .await
            .map(|d| serde_json::to_value(d).unwrap_or_default()),
    )
}

async fn remove_broker(
    State(node): State<Arc<Node>>,
    Path(id): Path<i32>,
) -> (StatusCode, Json<Value>) {
    answer(
        ops::remove_broker(&node, id)
            .await
            .map(|()| json!({ "removed": id })),
    )
}

/// Every broker: addresses, whether it is decommissioning, and the partitions it holds
/// (those still moving to or from it included).
async fn brokers(State(node): State<Arc<Node>>) -> Json<Value> {
    let state = node.cluster.controller.state();
    let list: Vec<Value> = state
        .brokers
        .values()
        .map(|b| {
            let holds: Vec<String> = state
                .partitions_of(b.id)
                .into_iter()
                .map(|(t, p)| format!("{}/{p}", t.name))
                .collect();
            json!({
                "id": b.id,
                "kafka_addr": b.kafka_addr,
                "admin_addr": b.admin_addr,
                "draining": b.draining,
                "alive": b.id == node.config.node_id || node.cluster.pulse.liveness.alive(b.id as u64),
                "replicas": holds.len(),
                "partitions": holds,
            })
        })
        .collect();
    let moving: Vec<Value> = state
        .topics
        .values()
        .flat_map(|t| {
            t.partitions.iter().enumerate().filter_map(move |(i, p)| {
                p.target.as_ref().map(|target| {
                    json!({ "topic": t.name, "partition": i, "replicas": p.replicas, "target": target })
                })
            })
        })
        .collect();
    Json(json!({ "brokers": list, "moving": moving }))
}

async fn metrics_text(State(node): State<Arc<Node>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics::render(&node),
    )
}

async fn status(State(node): State<Arc<Node>>) -> Json<Value> {
    let archive = node.config.value_of("archive");
    let topics: Vec<Value> = node
        .topics
        .all()
        .iter()
        .map(|topic| {
            let partitions: Vec<Value> = topic
                .partitions()
                .iter()
                .map(|p| {
                    if !p.hosted {
                        return json!({ "partition": p.index, "hosted": false });
                    }
                    let view = PartitionView::of(&node, topic.clone(), p.clone());
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
                            "source_manifest_version": tier.and_then(|t| t.root()).map(|r| r.version),
                        });
                    }
                    let Some(log) = p.log() else {
                        unreachable!("online partitions have a log");
                    };
                    let backlog = node.tiering.as_ref().and_then(|t| t.backlog(topic, p));
                    let replica = p.replica.as_ref().ok().map(|r| {
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
                    });
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
                })
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
                    "{}/{}/topic={}/", archive.as_deref().unwrap_or_default().trim_end_matches('/'),
                    silt_archiver::parquet::ARCHIVE_DIR, topic.name,
                )),
                "partitions": partitions,
            })
        })
        .collect();
    Json(json!({
        "node_id": node.config.node_id,
        "cluster_id": node.cluster_id,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": node.uptime_secs(),
        "data_dir": node.config.data_dir,
        "kafka_addr": node.config.advertised_addr(),
        "archive": archive,
        "cluster": cluster_status(&node),
        "transactions": transactions_status(&node),
        // The consumer groups this node coordinates (classic and KIP-848).
        "groups": node.groups.summaries(),
        "security": node.security.status(&node.cluster.controller.state()),
        "topics": topics,
    }))
}

/// The transactional ids this node coordinates, by state.
fn transactions_status(node: &Node) -> Value {
    let mut by_state: std::collections::BTreeMap<&str, usize> = Default::default();
    let owned = node.groups.owned_txns();
    for (_, meta) in &owned {
        *by_state.entry(meta.status.kafka_name()).or_default() += 1;
    }
    json!({ "coordinated": owned.len(), "by_state": by_state })
}

/// The node's view of its cluster: the controller, the brokers and whether they are heard.
fn cluster_status(node: &Node) -> Value {
    let cluster = &node.cluster;
    let state = cluster.controller.state();
    let pulse = &cluster.pulse;
    let heard: std::collections::HashMap<u64, std::time::Duration> =
        pulse.liveness.peers().into_iter().collect();
    let brokers: Vec<Value> = state
        .brokers
        .values()
        .map(|b| {
            let me = b.id == cluster.node_id;
            json!({
                "id": b.id,
                "kafka_addr": b.kafka_addr,
                "rpc_addr": b.rpc_addr,
                "admin_addr": b.admin_addr,
                "draining": b.draining,
                "alive": me || pulse.liveness.alive(b.id as u64),
                "last_heard_ms": if me { Some(0) } else {
                    heard.get(&(b.id as u64)).map(|d| d.as_millis() as u64)
                },
            })
        })
        .collect();
    json!({
        "controller_leader": cluster.controller.leader(),
        "controller_voters": cluster.controller.voters(),
        "controller_learners": cluster.controller.learners(),
        "controller_voters_changing": cluster.controller.voters_changing(),
        "brokers": brokers,
        "raft_groups": cluster.groups.all().len(),
        "pulse": {
            "sent": pulse.counters.sent.load(std::sync::atomic::Ordering::Relaxed),
            "missed": pulse.counters.missed.load(std::sync::atomic::Ordering::Relaxed),
            "elections_stood": pulse.counters.elections.load(std::sync::atomic::Ordering::Relaxed),
            "leaderships_handed_back": pulse.counters.transfers.load(std::sync::atomic::Ordering::Relaxed),
        },
    })
}
