//! Consumer groups over HTTP: the REST Proxy v3's consumer-group routes (the group, its
//! consumers and what each is assigned, lag per partition and in sum), and silt's offset
//! reset for an empty group (what `kafka-consumer-groups --reset-offsets` does).
//!
//! ```text
//! GET  /v3/clusters/{cluster_id}/consumer-groups
//! GET  /v3/clusters/{cluster_id}/consumer-groups/{consumer_group_id}
//! GET  /v3/clusters/{cluster_id}/consumer-groups/{consumer_group_id}/consumers
//! GET  /v3/clusters/{cluster_id}/consumer-groups/{consumer_group_id}/lags
//! GET  /v3/clusters/{cluster_id}/consumer-groups/{consumer_group_id}/lag-summary
//! POST /v1/groups/{group_id}/reset   {"to": "earliest"|"latest"|"timestamp"|"offset", "timestamp", "offset", "topic", "partitions"}
//! ```
//!
//! A broker answers for the groups it coordinates (in a cluster, each group lives on the
//! leader of its `__consumer_offsets` partition); asked for another, it says which broker
//! coordinates it. Lag is the partition's high watermark less the committed offset, as
//! `kafka-consumer-groups --describe` shows it.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes as Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::admin_archive::{AdminPrincipal, admin_caller};
use super::rest_v3::{Answer, Urls, check_cluster, error, list, ok};
use crate::group::OffsetCommit;
use crate::group::consumer::Partitions;
use crate::group::state::{CommittedOffset, Group};
use crate::node::Node;
use crate::partition::{OffsetSpec, PartitionView};
use crate::security::Caller;
use crate::security::acl::Operation;

/// A member of a group, whichever protocol it speaks.
struct Member {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    host: String,
    assigned: Partitions,
}

fn members_of(group: &Group) -> Vec<Member> {
    match &group.consumer {
        Some(consumer) => consumer
            .members
            .values()
            .map(|m| Member {
                id: m.member_id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                host: m.client_host.clone(),
                assigned: m.assigned.clone(),
            })
            .collect(),
        None => group
            .members
            .values()
            .map(|m| Member {
                id: m.member_id.clone(),
                instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                host: m.client_host.clone(),
                assigned: if group.protocol_type.as_deref() == Some("consumer") {
                    crate::group::migration::partitions_of_assignment(&m.assignment)
                } else {
                    Partitions::new()
                },
            })
            .collect(),
    }
}

/// The group named in a path, if this broker coordinates it and the caller may describe it.
fn group_in(
    node: &Node,
    cluster_id: &str,
    principal: Option<&axum::Extension<AdminPrincipal>>,
    group_id: &str,
    operation: Operation,
) -> Result<(Group, Caller), Answer> {
    check_cluster(node, cluster_id)?;
    let caller = admin_caller(node, principal.map(|p| &p.0))
        .map_err(|why| error(StatusCode::FORBIDDEN, why))?;
    let missing = || {
        error(
            StatusCode::NOT_FOUND,
            format!("consumer group '{group_id}' does not exist"),
        )
    };
    if !caller.group(operation, group_id) {
        return Err(missing());
    }
    if let Err(code) = node.groups.coordinates(group_id) {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!(
                "{code:?}: consumer group '{group_id}' is not coordinated by broker {}; its coordinator (FindCoordinator) answers for it",
                node.config.node_id
            ),
        ));
    }
    node.groups
        .describe(group_id)
        .map(|g| (g, caller))
        .ok_or_else(missing)
}

fn group_data(node: &Node, urls: &Urls, group: &Group) -> Value {
    let id = &group.id;
    let assignor = match &group.consumer {
        Some(c) => Some(c.assignor.name().to_string()),
        None => group.protocol_name.clone(),
    };
    json!({
        "kind": "KafkaConsumerGroup",
        "metadata": urls.metadata(&format!("/consumer-groups/{id}"), &format!("/consumer-group={id}")),
        "cluster_id": node.cluster_id,
        "consumer_group_id": id,
        "is_simple": group.protocol_type.is_none() && group.consumer.is_none(),
        "partition_assignor": assignor,
        "state": group.state_name(),
        "type": group.group_type(),
        "members": members_of(group).len(),
        "coordinator": urls.related(&format!("/brokers/{}", node.config.node_id)),
        "consumers": urls.related(&format!("/consumer-groups/{id}/consumers")),
        "lag_summary": urls.related(&format!("/consumer-groups/{id}/lag-summary")),
    })
}

pub(super) async fn groups(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    principal: Option<axum::Extension<AdminPrincipal>>,
    Path(cluster_id): Path<String>,
) -> Answer {
    if let Err(e) = check_cluster(&node, &cluster_id) {
        return e;
    }
    let caller = match admin_caller(&node, principal.as_ref().map(|p| &p.0)) {
        Ok(caller) => caller,
        Err(why) => return error(StatusCode::FORBIDDEN, why),
    };
    let urls = Urls::new(&node, &headers);
    let data = node
        .groups
        .list()
        .into_iter()
        .filter(|(id, ..)| caller.group(Operation::Describe, id))
        .filter_map(|(id, ..)| node.groups.describe(&id))
        .map(|g| group_data(&node, &urls, &g))
        .collect();
    ok(list(
        "KafkaConsumerGroupList",
        format!("{}/consumer-groups", urls.cluster),
        data,
    ))
}

pub(super) async fn group(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    principal: Option<axum::Extension<AdminPrincipal>>,
    Path((cluster_id, group_id)): Path<(String, String)>,
) -> Answer {
    match group_in(
        &node,
        &cluster_id,
        principal.as_ref(),
        &group_id,
        Operation::Describe,
    ) {
        Ok((group, _)) => ok(group_data(&node, &Urls::new(&node, &headers), &group)),
        Err(e) => e,
    }
}

pub(super) async fn consumers(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    principal: Option<axum::Extension<AdminPrincipal>>,
    Path((cluster_id, group_id)): Path<(String, String)>,
) -> Answer {
    let group = match group_in(
        &node,
        &cluster_id,
        principal.as_ref(),
        &group_id,
        Operation::Describe,
    ) {
        Ok((group, _)) => group,
        Err(e) => return e,
    };
    let urls = Urls::new(&node, &headers);
    let data = members_of(&group)
        .into_iter()
        .map(|m| {
            let assignments: Vec<Value> = m
                .assigned
                .iter()
                .flat_map(|(t, ps)| {
                    ps.iter()
                        .map(move |p| json!({ "topic_name": t, "partition_id": p }))
                })
                .collect();
            json!({
                "kind": "KafkaConsumer",
                "metadata": urls.metadata(
                    &format!("/consumer-groups/{group_id}/consumers/{}", m.id),
                    &format!("/consumer-group={group_id}/consumer={}", m.id),
                ),
                "cluster_id": node.cluster_id,
                "consumer_group_id": group_id,
                "consumer_id": m.id,
                "instance_id": m.instance_id,
                "client_id": m.client_id,
                "host": m.host,
                "assignments": assignments,
            })
        })
        .collect();
    ok(list(
        "KafkaConsumerList",
        format!("{}/consumer-groups/{group_id}/consumers", urls.cluster),
        data,
    ))
}

/// One partition's lag: committed offset (-1 for none), high watermark, lag, and who owns it.
struct Lag {
    topic: String,
    partition: i32,
    current: i64,
    end: i64,
    owner: Option<(String, Option<String>, String)>,
}

impl Lag {
    fn lag(&self) -> i64 {
        if self.current < 0 {
            self.end.max(0)
        } else {
            (self.end - self.current).max(0)
        }
    }
}

/// Every partition the group has committed or is assigned, with its lag.
fn lags_of(node: &Node, group: &Group) -> Vec<Lag> {
    let mut owners: BTreeMap<(String, i32), (String, Option<String>, String)> = BTreeMap::new();
    for m in members_of(group) {
        for (topic, partitions) in &m.assigned {
            for p in partitions {
                owners.insert(
                    (topic.clone(), *p),
                    (m.id.clone(), m.instance_id.clone(), m.client_id.clone()),
                );
            }
        }
    }
    let mut keys: Vec<(String, i32)> = group.offsets.keys().cloned().collect();
    keys.extend(owners.keys().cloned());
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|(topic, _)| node.topics.get(topic).is_some())
        .map(|(topic, partition)| {
            let end = PartitionView::find(node, &topic, partition)
                .map_or(-1, |v| v.bounds_now().high_watermark);
            let current = group
                .offsets
                .get(&(topic.clone(), partition))
                .map_or(-1, |c| c.offset);
            let owner = owners.get(&(topic.clone(), partition)).cloned();
            Lag {
                topic,
                partition,
                current,
                end,
                owner,
            }
        })
        .collect()
}

fn lag_data(node: &Node, urls: &Urls, group_id: &str, lag: &Lag) -> Value {
    let (topic, partition) = (&lag.topic, lag.partition);
    json!({
        "kind": "KafkaConsumerLag",
        "metadata": urls.metadata(
            &format!("/consumer-groups/{group_id}/lags/{topic}/partitions/{partition}"),
            &format!("/consumer-group={group_id}/lag={topic}/partition={partition}"),
        ),
        "cluster_id": node.cluster_id,
        "consumer_group_id": group_id,
        "topic_name": topic,
        "partition_id": partition,
        "current_offset": lag.current,
        "log_end_offset": lag.end,
        "lag": lag.lag(),
        "consumer_id": lag.owner.as_ref().map_or("", |o| o.0.as_str()),
        "instance_id": lag.owner.as_ref().and_then(|o| o.1.clone()),
        "client_id": lag.owner.as_ref().map_or("", |o| o.2.as_str()),
    })
}

pub(super) async fn lags(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    principal: Option<axum::Extension<AdminPrincipal>>,
    Path((cluster_id, group_id)): Path<(String, String)>,
) -> Answer {
    let group = match group_in(
        &node,
        &cluster_id,
        principal.as_ref(),
        &group_id,
        Operation::Describe,
    ) {
        Ok((group, _)) => group,
        Err(e) => return e,
    };
    let urls = Urls::new(&node, &headers);
    let data = lags_of(&node, &group)
        .iter()
        .map(|l| lag_data(&node, &urls, &group_id, l))
        .collect();
    ok(list(
        "KafkaConsumerLagList",
        format!("{}/consumer-groups/{group_id}/lags", urls.cluster),
        data,
    ))
}

pub(super) async fn lag_summary(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    principal: Option<axum::Extension<AdminPrincipal>>,
    Path((cluster_id, group_id)): Path<(String, String)>,
) -> Answer {
    let group = match group_in(
        &node,
        &cluster_id,
        principal.as_ref(),
        &group_id,
        Operation::Describe,
    ) {
        Ok((group, _)) => group,
        Err(e) => return e,
    };
    let urls = Urls::new(&node, &headers);
    let lags = lags_of(&node, &group);
    let total: i64 = lags.iter().map(Lag::lag).sum();
    let max = lags.iter().max_by_key(|l| l.lag());
    ok(json!({
        "kind": "KafkaConsumerGroupLagSummary",
        "metadata": urls.metadata(
            &format!("/consumer-groups/{group_id}/lag-summary"),
            &format!("/consumer-group={group_id}/lag-summary"),
        ),
        "cluster_id": node.cluster_id,
        "consumer_group_id": group_id,
        "max_lag": max.map_or(0, Lag::lag),
        "total_lag": total,
        "max_lag_topic_name": max.map(|l| l.topic.clone()),
        "max_lag_partition_id": max.map(|l| l.partition),
        "max_lag_consumer_id": max.and_then(|l| l.owner.as_ref().map(|o| o.0.clone())),
        "partitions": lags.len(),
    }))
}

#[derive(Debug, serde::Deserialize)]
struct Reset {
    /// `earliest`, `latest`, `timestamp` or `offset`.
    to: String,
    timestamp: Option<i64>,
    offset: Option<i64>,
    /// Only this topic's partitions (all the group has committed, otherwise).
    topic: Option<String>,
    /// Only these partitions of `topic`.
    partitions: Option<Vec<i32>>,
}

/// `POST /v1/groups/{group_id}/reset`: moves an empty group's committed offsets.
pub(super) async fn reset(
    State(node): State<Arc<Node>>,
    principal: Option<axum::Extension<AdminPrincipal>>,
    Path(group_id): Path<String>,
    body: Body,
) -> Answer {
    let asked: Reset = match serde_json::from_slice(&body) {
        Ok(asked) => asked,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("request body: {e}")),
    };
    let cluster_id = node.cluster_id.clone();
    let (group, caller) = match group_in(
        &node,
        &cluster_id,
        principal.as_ref(),
        &group_id,
        Operation::Read,
    ) {
        Ok(found) => found,
        Err(e) => return e,
    };
    if !group.is_empty() {
        return error(
            StatusCode::CONFLICT,
            format!(
                "consumer group '{group_id}' has {} member(s): offsets are reset only while it is empty (stop its consumers first)",
                members_of(&group).len()
            ),
        );
    }
    let spec = match (asked.to.as_str(), asked.timestamp, asked.offset) {
        ("earliest", ..) => Some(OffsetSpec::Earliest),
        ("latest", ..) => Some(OffsetSpec::Latest),
        ("timestamp", Some(t), _) => Some(OffsetSpec::Timestamp(t)),
        ("offset", _, Some(_)) => None,
        (other, ..) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "'to' is '{other}': give earliest, latest, timestamp (with 'timestamp' in ms) or offset (with 'offset')"
                ),
            );
        }
    };
    let targets: Vec<(String, i32)> = match &asked.topic {
        Some(topic) => {
            let Some(t) = node.topics.get(topic) else {
                return error(
                    StatusCode::NOT_FOUND,
                    format!("topic '{topic}' does not exist"),
                );
            };
            let all: Vec<i32> = (0..t.partition_count()).collect();
            asked
                .partitions
                .clone()
                .unwrap_or(all)
                .into_iter()
                .map(|p| (topic.clone(), p))
                .collect()
        }
        None => group.offsets.keys().cloned().collect(),
    };
    if targets.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            format!("consumer group '{group_id}' has no committed offsets: name a topic"),
        );
    }
    let mut commits = Vec::with_capacity(targets.len());
    for (topic, partition) in targets {
        if !caller.topic(Operation::Read, &topic) {
            return error(
                StatusCode::FORBIDDEN,
                format!("{} may not read topic '{topic}'", caller.principal()),
            );
        }
        let offset = match spec {
            None => asked.offset.unwrap_or(0),
            Some(spec) => match resolve(&node, &topic, partition, spec).await {
                Ok(offset) => offset,
                Err(e) => return e,
            },
        };
        commits.push(OffsetCommit {
            topic,
            partition,
            committed: CommittedOffset {
                offset,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp_ms: {
                    use crate::log::Clock;
                    crate::log::SystemClock.now_ms()
                },
            },
        });
    }
    let answer: Vec<Value> = commits
        .iter()
        .map(
            |c| json!({ "topic": c.topic, "partition": c.partition, "offset": c.committed.offset }),
        )
        .collect();
    match node.groups.commit(&group_id, "", None, -1, commits).await {
        Ok(()) => {
            tracing::info!(group = %group_id, to = %asked.to, partitions = answer.len(), "consumer group offsets reset over the admin API");
            ok(json!({ "group_id": group_id, "reset": answer }))
        }
        Err(code) => error(
            StatusCode::CONFLICT,
            format!("{code:?}: the group's offsets were not reset"),
        ),
    }
}

/// The offset `spec` names in a partition (for `timestamp`, the end when no record is as new).
async fn resolve(
    node: &Node,
    topic: &str,
    partition: i32,
    spec: OffsetSpec,
) -> Result<i64, Answer> {
    let view = PartitionView::find_leader(node, topic, partition).map_err(|code| {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{code:?}: {topic}/{partition} is not readable on this broker"),
        )
    })?;
    match view.list_offset(spec, 8).await {
        Ok(Some((offset, _))) => Ok(offset),
        Ok(None) => Ok(view.bounds_now().high_watermark),
        Err(code) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{code:?}: looking up {topic}/{partition}"),
        )),
    }
}
