//! The admin HTTP server: `/metrics` (Prometheus text) and `/v1/status` (JSON).

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics;
use crate::node::Node;
use crate::partition::PartitionView;

pub(super) async fn serve(node: Arc<Node>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let app = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/v1/status", get(status))
        .with_state(node);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "admin HTTP server failed");
    }
}

async fn metrics_text(State(node): State<Arc<Node>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics::render(&node),
    )
}

async fn status(State(node): State<Arc<Node>>) -> Json<Value> {
    let topics: Vec<Value> = node
        .topics
        .all()
        .iter()
        .map(|topic| {
            let partitions: Vec<Value> = topic
                .partitions()
                .iter()
                .map(|p| {
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
                    json!({
                        "partition": p.index,
                        "online": !log.is_closed(),
                        "high_watermark": bounds.high_watermark,
                        "log_end_offset": bounds.log_end,
                        // The first offset a consumer can read, across tiers.
                        "start_offset": bounds.log_start,
                        "local_start_offset": bounds.local_start,
                        "local_bytes": log.size_bytes(),
                        "local_segments": log.segments().len(),
                        "archive": tier.map(|t| json!({
                            "archived_next_offset": t.archived_next(),
                            "archive_start_offset": t.archive_start(),
                            "fenced": t.is_fenced(),
                            "backlog_segments": backlog.map(|b| b.0),
                            "backlog_bytes": backlog.map(|b| b.1),
                        })),
                    })
                })
                .collect();
            json!({ "name": topic.name, "id": topic.id, "partitions": partitions })
        })
        .collect();
    Json(json!({
        "node_id": node.config.node_id,
        "cluster_id": node.cluster_id,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": node.uptime_secs(),
        "data_dir": node.config.data_dir,
        "kafka_addr": node.config.advertised_addr(),
        "archive": node.config.value_of("archive"),
        "topics": topics,
    }))
}
