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
//! GET    /v1/topics/{topic}/tiering                           each partition's local and archived ranges, backlog; the cache
//! GET    /v3/...                                              REST Proxy v3, read side (rest_v3)
//! ```

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::admin_auth::{Gate, TlsListener, authenticate};
use crate::cluster::ops::{self, OpError};
use crate::metrics;
use crate::node::Node;

pub(super) async fn serve(node: Arc<Node>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let app = Router::new()
        .merge(super::rest_v3::routes())
        .merge(super::console::routes())
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
pub(super) struct ReassignBody {
    replicas: Vec<i32>,
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct TransferBody {
    to: i32,
}

pub(super) async fn reassign(
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

pub(super) async fn transfer_leadership(
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

pub(super) async fn decommission(
    State(node): State<Arc<Node>>,
    Path(id): Path<i32>,
) -> (StatusCode, Json<Value>) {
    answer(
        ops::decommission(&node, id)
            .await
            .map(|d| serde_json::to_value(d).unwrap_or_default()),
    )
}

pub(super) async fn remove_broker(
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
pub(super) async fn brokers(State(node): State<Arc<Node>>) -> Json<Value> {
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

pub(super) async fn metrics_text(State(node): State<Arc<Node>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics::render(&node),
    )
}

/// One topic's tiering: per partition the local and archived offset ranges and bytes, the
/// upload backlog; the node's archive cache. Needs Describe on the topic.
pub(super) async fn tiering(
    State(node): State<Arc<Node>>,
    principal: Option<axum::Extension<super::admin_archive::AdminPrincipal>>,
    Path(name): Path<String>,
) -> (StatusCode, Json<Value>) {
    let missing = || {
        (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("topic '{name}' does not exist") })),
        )
    };
    let Some(topic) = node.topics.get(&name) else {
        return missing();
    };
    if super::admin_archive::may_use_topic(
        &node,
        principal.as_ref().map(|p| &p.0),
        crate::security::acl::Operation::Describe,
        &topic.name,
    )
    .is_err()
    {
        return missing();
    }
    let archive = node.config.value_of("archive");
    (
        StatusCode::OK,
        Json(json!({
            "topic": super::admin_status::topic_status(&node, &topic, archive.as_deref()),
            "archive_cache": super::admin_status::cache_status(&node),
        })),
    )
}

pub(super) async fn status(State(node): State<Arc<Node>>) -> Json<Value> {
    let archive = node.config.value_of("archive");
    let topics: Vec<Value> = node
        .topics
        .all()
        .iter()
        .map(|topic| super::admin_status::topic_status(&node, topic, archive.as_deref()))
        .collect();
    Json(json!({
        "node_id": node.config.node_id,
        "cluster_id": node.cluster_id,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": node.uptime_secs(),
        "data_dir": node.config.data_dir,
        "kafka_addr": node.config.advertised_addr(),
        "archive": archive,
        // The latest verification of the archive asked for over this API.
        "archive_verify": node.tiering.as_ref().map(|t| super::admin_archive::verify_json(&t.verifier.snapshot())),
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
