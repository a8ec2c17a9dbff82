//! `GET /v1/archive/find`: records by key straight from the archive, through the key indexes
//! archived beside segments (the HTTP face of `silt archive find`).
//!
//! ```text
//! GET /v1/archive/find?topic=T&key=K[&key_hex=..][&partition=P|&all_partitions=true]
//!                     [&from=MS][&to=MS][&limit=N]
//! ```
//!
//! Only archived records are searched (the local log's newest ones are not). Without a
//! partition, the partitions the clients' default partitioners put the key in are searched,
//! and the answer says which and why. When the admin API authenticates, the caller needs Read
//! on the topic, as a consumer would; when Kafka requests are authorized but the admin API
//! does not authenticate, records are not served over it at all.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use bytes::Bytes;
use serde_json::{Value, json};
use silt_archiver::keys::{self, KeyQuery};

use crate::node::Node;
use crate::security::acl::Operation;

/// The admin API caller, as the authentication middleware found it.
#[derive(Debug, Clone)]
pub(super) struct AdminPrincipal {
    /// `User:NAME`, or the bearer token's own name.
    pub(super) name: String,
    /// A super user (or the bearer token): no ACL applies.
    pub(super) super_user: bool,
}

/// Most records one answer holds unless `limit` says otherwise.
const LIMIT_DEFAULT: usize = 1000;

#[derive(Debug, serde::Deserialize)]
pub(super) struct FindParams {
    topic: String,
    key: Option<String>,
    key_hex: Option<String>,
    partition: Option<i32>,
    #[serde(default)]
    all_partitions: bool,
    from: Option<i64>,
    to: Option<i64>,
    limit: Option<usize>,
}

fn refuse(status: StatusCode, why: impl Into<String>) -> (StatusCode, Json<Value>) {
    (status, Json(json!({ "error": why.into() })))
}

fn key_of(params: &FindParams) -> Result<Bytes, String> {
    match (&params.key, &params.key_hex) {
        (Some(text), None) => Ok(Bytes::from(text.clone().into_bytes())),
        (None, Some(hex)) => {
            if hex.len() % 2 != 0 {
                return Err(format!("key_hex {hex:?} has an odd number of digits"));
            }
            (0..hex.len())
                .step_by(2)
                .map(|i| {
                    hex.get(i..i + 2)
                        .and_then(|d| u8::from_str_radix(d, 16).ok())
                        .ok_or_else(|| format!("key_hex {hex:?} is not hexadecimal"))
                })
                .collect::<Result<Vec<u8>, String>>()
                .map(Bytes::from)
        }
        _ => Err("give exactly one of key and key_hex".into()),
    }
}

/// Whether the admin API's caller may do `operation` on a topic, as a Kafka client with its
/// principal would: a super user (or the bearer token) may; a principal needs the ACL; with
/// no principal (the admin API does not authenticate), only when Kafka requests are not
/// authorized either.
pub(super) fn may_use_topic(
    node: &Node,
    principal: Option<&AdminPrincipal>,
    operation: Operation,
    topic: &str,
) -> Result<(), String> {
    match principal {
        Some(AdminPrincipal {
            super_user: true, ..
        }) => Ok(()),
        Some(AdminPrincipal { name, .. }) => {
            let caller = node.security.caller(
                || node.cluster.controller.state(),
                Arc::from(name.as_str()),
                Arc::from(""),
                Arc::from("admin"),
            );
            if caller.topic(operation, topic) {
                Ok(())
            } else {
                Err(format!(
                    "{name} may not {} topic '{topic}'",
                    operation.name().to_lowercase()
                ))
            }
        }
        None if node.security.authorizes => Err(
            "Kafka requests are authorized but the admin API does not authenticate: topics are not served over it"
                .into(),
        ),
        None => Ok(()),
    }
}

/// The admin API's caller as a Kafka [`Caller`](crate::security::Caller), for routes that act
/// through the same checks a Kafka request goes through: a super user (or the bearer token) is
/// unrestricted; a principal has its ACLs; with no principal, unrestricted only when Kafka
/// requests are not authorized either.
///
/// # Errors
///
/// The admin API does not authenticate while Kafka requests are authorized.
pub(super) fn admin_caller(
    node: &Node,
    principal: Option<&AdminPrincipal>,
) -> Result<crate::security::Caller, String> {
    match principal {
        Some(AdminPrincipal {
            super_user: true, ..
        }) => Ok(crate::security::Caller::unrestricted("admin")),
        Some(AdminPrincipal { name, .. }) => Ok(node.security.caller(
            || node.cluster.controller.state(),
            Arc::from(name.as_str()),
            Arc::from(""),
            Arc::from("admin"),
        )),
        None if node.security.authorizes => Err(
            "Kafka requests are authorized but the admin API does not authenticate: it acts for no one"
                .into(),
        ),
        None => Ok(crate::security::Caller::unrestricted("admin")),
    }
}

pub(super) async fn find(
    State(node): State<Arc<Node>>,
    principal: Option<axum::Extension<AdminPrincipal>>,
    Query(params): Query<FindParams>,
) -> (StatusCode, Json<Value>) {
    let key = match key_of(&params) {
        Ok(key) => key,
        Err(why) => return refuse(StatusCode::BAD_REQUEST, why),
    };
    let Some(tiering) = node.tiering.clone() else {
        return refuse(StatusCode::NOT_FOUND, "this node has no archive");
    };
    let Some(topic) = node.topics.get(&params.topic) else {
        return refuse(
            StatusCode::NOT_FOUND,
            format!("topic '{}' does not exist", params.topic),
        );
    };
    if let Err(why) = may_use_topic(
        &node,
        principal.as_ref().map(|p| &p.0),
        Operation::Read,
        &topic.name,
    ) {
        return refuse(StatusCode::FORBIDDEN, why);
    }
    let count = topic.partition_count();
    let partitions: Vec<(i32, String)> = match params.partition {
        Some(p) if !(0..count).contains(&p) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!(
                    "topic '{}' has partitions 0 to {}, not {p}",
                    topic.name,
                    count - 1
                ),
            );
        }
        Some(p) => vec![(p, "asked for".into())],
        None if params.all_partitions => (0..count).map(|p| (p, "all partitions".into())).collect(),
        None => keys::default_partitions(&key, count)
            .into_iter()
            .map(|(p, why)| (p, why.to_string()))
            .collect(),
    };
    let query = KeyQuery {
        key,
        from_ms: params.from,
        to_ms: params.to,
    };
    let limit = params.limit.unwrap_or(LIMIT_DEFAULT).max(1);
    let worker = tiering.clone();
    let search = tiering.spawn(async move {
        let mut records: Vec<Value> = Vec::new();
        let mut searched = Vec::new();
        for (partition, why) in partitions {
            let manifest = worker.manifest_of(&topic, partition)?;
            let stats = keys::find(
                worker.reader(),
                &manifest,
                &query,
                &mut |found| {
                    // One past the limit says there is more; the search stops there.
                    records.push(found.to_json());
                    if records.len() > limit {
                        std::ops::ControlFlow::Break(())
                    } else {
                        std::ops::ControlFlow::Continue(())
                    }
                },
                &mut |_, _| {},
            )
            .await?;
            searched.push(json!({
                "partition": partition,
                "why": why,
                "found": stats.found,
                "segments": stats.segments,
                "indexed": stats.indexed,
                "in_filters": stats.filtered,
                "indexes_read": stats.indexes_read,
                "unindexed_read_whole": stats.unindexed,
                "stopped_at_limit": stats.stopped,
            }));
            if stats.stopped {
                break;
            }
        }
        Ok::<_, silt_archiver::ArchiveError>((records, searched))
    });
    match search.await {
        Ok(Ok((mut records, searched))) => {
            let truncated = records.len() > limit;
            records.truncate(limit);
            (
                StatusCode::OK,
                Json(json!({
                    "topic": params.topic,
                    "tier": "archive",
                    "partitions": searched,
                    "records": records,
                    "truncated": truncated,
                })),
            )
        }
        Ok(Err(e)) => refuse(StatusCode::SERVICE_UNAVAILABLE, format!("archive: {e}")),
        Err(e) => refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("search task: {e}"),
        ),
    }
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct VerifyParams {
    topic: Option<String>,
}

/// Verifying reads every object of the archive: for a super user (or the bearer token), or a
/// principal with Alter on the cluster; with no principal, only when Kafka requests are not
/// authorized either.
fn may_verify(node: &Node, principal: Option<&AdminPrincipal>) -> Result<(), String> {
    let caller = admin_caller(node, principal)?;
    if caller.cluster(Operation::Alter) {
        Ok(())
    } else {
        Err(format!(
            "{} may not alter the cluster (verifying the archive needs it)",
            principal.map_or("the caller", |p| p.name.as_str())
        ))
    }
}

/// `POST /v1/archive/verify[?topic=T]`: starts checking the archive (every manifest, segment
/// and sidecar) on the archive's threads; `GET` shows how it goes.
pub(super) async fn start_verify(
    State(node): State<Arc<Node>>,
    principal: Option<axum::Extension<AdminPrincipal>>,
    Query(params): Query<VerifyParams>,
) -> (StatusCode, Json<Value>) {
    if let Err(why) = may_verify(&node, principal.as_ref().map(|p| &p.0)) {
        return refuse(StatusCode::FORBIDDEN, why);
    }
    let Some(tiering) = node.tiering.as_ref() else {
        return refuse(StatusCode::NOT_FOUND, "this node has no archive");
    };
    match tiering.verify(params.topic) {
        Ok(run) => (StatusCode::ACCEPTED, Json(verify_json(&run))),
        Err(why) => refuse(StatusCode::CONFLICT, why),
    }
}

/// `GET /v1/archive/verify`: the latest verification, running or done.
pub(super) async fn verify_status(State(node): State<Arc<Node>>) -> (StatusCode, Json<Value>) {
    match node.tiering.as_ref() {
        Some(tiering) => (
            StatusCode::OK,
            Json(verify_json(&tiering.verifier.snapshot())),
        ),
        None => refuse(StatusCode::NOT_FOUND, "this node has no archive"),
    }
}

/// A verification as the API shows it: the run and a one-word state.
pub(super) fn verify_json(run: &crate::archive_verify::VerifyRun) -> Value {
    let mut value = serde_json::to_value(run).unwrap_or_else(|_| json!({}));
    let state = match (run.running, run.runs, &run.error, run.faults_total) {
        (true, _, _, _) => "running",
        (false, 0, _, _) => "never_run",
        (false, _, Some(_), _) => "failed",
        (false, _, None, 0) => "ok",
        (false, _, None, _) => "faults",
    };
    value["state"] = json!(state);
    value
}
