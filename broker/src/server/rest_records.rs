//! `GET /v1/topics/{topic}/partitions/{partition}/records`: records of a partition for the
//! console's message browser and for scripts, read through the Kafka Fetch handler (as a
//! read_committed consumer with the admin API's caller would read them), so records older
//! than the local log come from the archive like any fetch; the answer says which tier
//! answered.
//!
//! ```text
//! GET /v1/topics/{topic}/partitions/{partition}/records?offset=N | timestamp=MS | newest=true [&limit=N]
//! ```
//!
//! Keys, values and header values are base64 (null stays null); the console shows them as
//! text, JSON or hex.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use base64::Engine;
use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use serde_json::{Value, json};
use silt_index::batch::{BATCH_HEADER_BYTES, BatchHeader};
use silt_index::record::decode_records;

use super::admin_archive::{AdminPrincipal, admin_caller, may_use_topic};
use crate::node::Node;
use crate::partition::{OffsetSpec, PartitionView};
use crate::security::acl::Operation;

/// Records in one answer unless `limit` says otherwise, and at most.
const LIMIT_DEFAULT: usize = 50;
const LIMIT_MAX: usize = 1000;
/// Bytes one fetch of the walk asks for.
const FETCH_BYTES: i32 = 1 << 20;
/// Fetches one answer makes at most (a partition of tiny batches still answers quickly).
const FETCHES_MAX: usize = 16;
/// How long one fetch of the walk waits for data (an archive read, typically).
const FETCH_WAIT_MS: i32 = 10_000;
/// Decompressed bytes of one batch, at most.
const DECOMPRESSED_MAX: usize = 64 << 20;

type Answer = (StatusCode, Json<Value>);

fn refuse(status: StatusCode, why: impl Into<String>) -> Answer {
    (status, Json(json!({ "error": why.into() })))
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct Params {
    offset: Option<i64>,
    timestamp: Option<i64>,
    #[serde(default)]
    newest: bool,
    limit: Option<usize>,
}

fn b64(bytes: &Bytes) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub(super) async fn records(
    State(node): State<Arc<Node>>,
    principal: Option<axum::Extension<AdminPrincipal>>,
    Path((topic, partition)): Path<(String, i32)>,
    Query(params): Query<Params>,
) -> Answer {
    let principal = principal.as_ref().map(|p| &p.0);
    let missing = || {
        refuse(
            StatusCode::NOT_FOUND,
            format!("topic '{topic}' does not exist"),
        )
    };
    if node.topics.get(&topic).is_none()
        || may_use_topic(&node, principal, Operation::Describe, &topic).is_err()
    {
        return missing();
    }
    let caller = match admin_caller(&node, principal) {
        Ok(caller) => caller,
        Err(why) => return refuse(StatusCode::FORBIDDEN, why),
    };
    if let Err(why) = may_use_topic(&node, principal, Operation::Read, &topic) {
        return refuse(StatusCode::FORBIDDEN, why);
    }
    let chosen = [
        params.offset.is_some(),
        params.timestamp.is_some(),
        params.newest,
    ];
    if chosen.iter().filter(|c| **c).count() > 1 {
        return refuse(
            StatusCode::BAD_REQUEST,
            "give at most one of offset, timestamp and newest",
        );
    }
    let limit = params.limit.unwrap_or(LIMIT_DEFAULT).clamp(1, LIMIT_MAX);
    let view = match PartitionView::find_leader(&node, &topic, partition) {
        Ok(view) => view,
        Err(code) => {
            let leader = PartitionView::find(&node, &topic, partition)
                .ok()
                .and_then(|v| v.leader());
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{code:?}: this broker does not serve {topic}/{partition}{}",
                    leader.map_or_else(String::new, |l| format!(" (broker {l} leads it)"))
                ),
            );
        }
    };
    let bounds = match view.bounds().await {
        Ok(bounds) => bounds,
        Err(code) => {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{code:?}: the archive did not answer"),
            );
        }
    };
    let start = match (params.offset, params.timestamp) {
        (Some(offset), _) => offset,
        (_, Some(t)) => match view.list_offset(OffsetSpec::Timestamp(t), 8).await {
            Ok(Some((offset, _))) => offset,
            Ok(None) => bounds.high_watermark,
            Err(code) => {
                return refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{code:?}: looking up timestamp {t}"),
                );
            }
        },
        _ if params.newest => (bounds.last_stable - limit as i64).max(bounds.log_start),
        _ => bounds.log_start,
    };
    if start < bounds.log_start || start > bounds.high_watermark {
        return refuse(
            StatusCode::RANGE_NOT_SATISFIABLE,
            format!(
                "offset {start} is outside {topic}/{partition}'s range {}..{}",
                bounds.log_start, bounds.high_watermark
            ),
        );
    }
    let tier = if start < bounds.local_start {
        "archive"
    } else {
        "local"
    };
    let mut out = Vec::new();
    let mut next = start;
    for _ in 0..FETCHES_MAX {
        if out.len() >= limit || next >= bounds.last_stable {
            break;
        }
        match fetch_once(&node, &caller, &topic, partition, next).await {
            Ok((bytes, aborted)) => {
                let before = next;
                decode_into(&bytes, &aborted, next, limit, &mut out, &mut next);
                if next == before {
                    break;
                }
            }
            Err(why) => return refuse(StatusCode::SERVICE_UNAVAILABLE, why),
        }
    }
    let records: Vec<Value> = out
        .iter()
        .map(|r| {
            json!({
                "offset": r.offset,
                "timestamp": r.timestamp,
                "key": r.key.as_ref().map(b64),
                "value": r.value.as_ref().map(b64),
                "headers": r.headers.iter().map(|(k, v)| json!({
                    "name": String::from_utf8_lossy(k),
                    "value": v.as_ref().map(b64),
                })).collect::<Vec<Value>>(),
            })
        })
        .collect();
    (
        StatusCode::OK,
        Json(json!({
            "topic": topic,
            "partition": partition,
            "tier": tier,
            "start_offset": start,
            "next_offset": next,
            "log_start_offset": bounds.log_start,
            "local_start_offset": bounds.local_start,
            "high_watermark": bounds.high_watermark,
            "records": records,
        })),
    )
}

/// One Fetch at `offset`: the batches and the aborted transactions among them.
async fn fetch_once(
    node: &Arc<Node>,
    caller: &crate::security::Caller,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<(Bytes, Vec<(i64, i64)>), String> {
    let request = FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        // Waits for the archive's answer (a fetch with nothing to wait for answers at once;
        // the walk never asks past the last stable offset).
        .with_max_wait_ms(FETCH_WAIT_MS)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_BYTES)
        .with_isolation_level(1)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(partition)
                        .with_current_leader_epoch(-1)
                        .with_fetch_offset(offset)
                        .with_log_start_offset(-1)
                        .with_partition_max_bytes(FETCH_BYTES),
                ]),
        ]);
    let response = crate::handlers::fetch::handle(node.clone(), request, 12, caller).await;
    let Some(data) = response
        .responses
        .first()
        .and_then(|t| t.partitions.first())
    else {
        return Err("the fetch answered nothing".into());
    };
    if data.error_code != 0 {
        return Err(format!(
            "fetch at {offset}: {:?}",
            crate::protocol::ErrorCode::try_from_code(data.error_code)
        ));
    }
    let aborted = data
        .aborted_transactions
        .iter()
        .flatten()
        .map(|a| (a.producer_id.0, a.first_offset))
        .collect();
    Ok((data.records.clone().unwrap_or_default(), aborted))
}

/// Decodes the data records at or after `from` in `bytes` into `out` (up to `limit` in all),
/// leaving out records of aborted transactions as a read_committed consumer does; `next`
/// moves past every whole batch read.
fn decode_into(
    bytes: &Bytes,
    aborted: &[(i64, i64)],
    from: i64,
    limit: usize,
    out: &mut Vec<silt_index::record::Record>,
    next: &mut i64,
) {
    // Producer ids whose aborted transaction has begun, until their abort marker.
    let mut starts: HashMap<i64, Vec<i64>> =
        aborted.iter().fold(HashMap::new(), |mut m, (p, o)| {
            m.entry(*p).or_insert_with(Vec::new).push(*o);
            m
        });
    let mut open: HashSet<i64> = HashSet::new();
    let mut at = 0usize;
    while at + BATCH_HEADER_BYTES <= bytes.len() && out.len() < limit {
        let Ok(Some(header)) = BatchHeader::parse(&bytes[at..], u32::MAX) else {
            break;
        };
        let end = at + header.size() as usize;
        if end > bytes.len() {
            break;
        }
        let pid = header.producer_id;
        if header.is_transactional()
            && let Some(first) = starts.get_mut(&pid)
        {
            // Each aborted transaction opens once, at its first batch.
            let before = first.len();
            first.retain(|o| *o > header.last_offset());
            if first.len() < before {
                open.insert(pid);
            }
        }
        if header.is_control() {
            open.remove(&pid);
        } else if !(header.is_transactional() && open.contains(&pid))
            && let Ok(records) = decode_records(&bytes[at..end], DECOMPRESSED_MAX)
        {
            for record in records {
                if record.offset >= from && out.len() < limit {
                    *next = record.offset + 1;
                    out.push(record);
                }
            }
        }
        if out.len() < limit {
            *next = (*next).max(header.next_offset());
        }
        at = end;
    }
}
