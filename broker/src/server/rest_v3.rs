//! The read side of the Confluent REST Proxy v3 API on the admin listener, in the shapes the
//! tools that speak it expect (`kind`, `metadata.self`, `related` links): clusters, brokers,
//! topics, partitions and topic configs, for scripts and services without a Kafka client.
//! Described by the OpenAPI document at `/v3/openapi.json`, made from the same table the
//! routes are ([`ENDPOINTS`]).
//!
//! ```text
//! GET /v3/clusters
//! GET /v3/clusters/{cluster_id}
//! GET /v3/clusters/{cluster_id}/brokers
//! GET /v3/clusters/{cluster_id}/brokers/{broker_id}
//! GET /v3/clusters/{cluster_id}/topics
//! GET /v3/clusters/{cluster_id}/topics/{topic_name}
//! GET /v3/clusters/{cluster_id}/topics/{topic_name}/partitions
//! GET /v3/clusters/{cluster_id}/topics/{topic_name}/partitions/{partition_id}
//! GET /v3/clusters/{cluster_id}/topics/{topic_name}/configs
//! GET /v3/clusters/{cluster_id}/topics/{topic_name}/configs/{name}
//! GET /v3/openapi.json
//! ```
//!
//! Links name only routes that exist here. Partitions carry silt's `leader_id`, `replica_ids`
//! and `isr_ids` beside the standard fields. With authentication on, a caller sees the
//! topics it may describe, as a Kafka client would.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{MethodRouter, get as get_route};
use axum::{Json, Router};
use serde_json::{Value, json};
use silt_config::TOPIC_PROPERTIES;

use super::admin_archive::{AdminPrincipal, may_use_topic};
use crate::handlers::metadata::{brokers_of, describe_topic};
use crate::node::Node;
use crate::security::acl::Operation;
use crate::topics::Topic;

/// An HTTP method of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
            Method::Put => "put",
            Method::Delete => "delete",
        }
    }
}

/// One route of the admin API: its method and path (axum's syntax, which is OpenAPI's),
/// what it does, its query parameters (name, type, required), the schema of its request
/// body, its success status and the schema of its answer (`Text` for plain text, `None` for
/// an empty answer).
struct Endpoint {
    method: Method,
    path: &'static str,
    summary: &'static str,
    query: &'static [(&'static str, &'static str, bool)],
    body: Option<&'static str>,
    status: u16,
    schema: &'static str,
}

const fn get(path: &'static str, summary: &'static str, schema: &'static str) -> Endpoint {
    Endpoint {
        method: Method::Get,
        path,
        summary,
        query: &[],
        body: None,
        status: 200,
        schema,
    }
}

const fn write(
    method: Method,
    path: &'static str,
    summary: &'static str,
    body: Option<&'static str>,
    status: u16,
    schema: &'static str,
) -> Endpoint {
    Endpoint {
        method,
        path,
        summary,
        query: &[],
        body,
        status,
        schema,
    }
}

const CLUSTER: &str = "/v3/clusters/{cluster_id}";

/// Every route of the admin API, in the order the OpenAPI document lists them.
const ENDPOINTS: &[Endpoint] = &[
    get(
        "/v3/clusters",
        "The cluster (one: the one this broker is in)",
        "ClusterDataList",
    ),
    get("/v3/clusters/{cluster_id}", "The cluster", "ClusterData"),
    get(
        "/v3/clusters/{cluster_id}/brokers",
        "Its brokers",
        "BrokerDataList",
    ),
    get(
        "/v3/clusters/{cluster_id}/brokers/{broker_id}",
        "One broker",
        "BrokerData",
    ),
    get(
        "/v3/clusters/{cluster_id}/topics",
        "Its topics (those the caller may describe)",
        "TopicDataList",
    ),
    write(
        Method::Post,
        "/v3/clusters/{cluster_id}/topics",
        "Creates a topic",
        Some("CreateTopicRequest"),
        201,
        "TopicData",
    ),
    get(
        "/v3/clusters/{cluster_id}/topics/{topic_name}",
        "One topic",
        "TopicData",
    ),
    write(
        Method::Delete,
        "/v3/clusters/{cluster_id}/topics/{topic_name}",
        "Deletes a topic",
        None,
        204,
        "None",
    ),
    get(
        "/v3/clusters/{cluster_id}/topics/{topic_name}/partitions",
        "A topic's partitions, with their leaders and replicas",
        "PartitionDataList",
    ),
    get(
        "/v3/clusters/{cluster_id}/topics/{topic_name}/partitions/{partition_id}",
        "One partition",
        "PartitionData",
    ),
    get(
        "/v3/clusters/{cluster_id}/topics/{topic_name}/configs",
        "A topic's configs: every property, its value and where it comes from",
        "TopicConfigDataList",
    ),
    write(
        Method::Post,
        "/v3/clusters/{cluster_id}/topics/{topic_name}/configs:alter",
        "Sets or deletes several of a topic's configs at once",
        Some("AlterConfigBatchRequest"),
        204,
        "None",
    ),
    get(
        "/v3/clusters/{cluster_id}/topics/{topic_name}/configs/{name}",
        "One of a topic's configs",
        "TopicConfigData",
    ),
    write(
        Method::Put,
        "/v3/clusters/{cluster_id}/topics/{topic_name}/configs/{name}",
        "Sets one of a topic's configs",
        Some("UpdateConfigRequest"),
        204,
        "None",
    ),
    write(
        Method::Delete,
        "/v3/clusters/{cluster_id}/topics/{topic_name}/configs/{name}",
        "Resets one of a topic's configs to its default",
        None,
        204,
        "None",
    ),
    write(
        Method::Post,
        "/v3/clusters/{cluster_id}/topics/{topic_name}/records",
        "Produces records (JSON, STRING or base64 BINARY keys and values), each acknowledged once durable",
        Some("ProduceRequest"),
        200,
        "ProduceResponse",
    ),
    get(
        "/v3/clusters/{cluster_id}/consumer-groups",
        "The consumer groups this broker coordinates",
        "ConsumerGroupDataList",
    ),
    get(
        "/v3/clusters/{cluster_id}/consumer-groups/{consumer_group_id}",
        "One consumer group",
        "ConsumerGroupData",
    ),
    get(
        "/v3/clusters/{cluster_id}/consumer-groups/{consumer_group_id}/consumers",
        "A group's consumers and what each is assigned",
        "ConsumerDataList",
    ),
    get(
        "/v3/clusters/{cluster_id}/consumer-groups/{consumer_group_id}/lags",
        "A group's lag per partition",
        "ConsumerLagDataList",
    ),
    get(
        "/v3/clusters/{cluster_id}/consumer-groups/{consumer_group_id}/lag-summary",
        "A group's total and largest lag",
        "ConsumerGroupLagSummaryData",
    ),
    get("/v3/openapi.json", "This document", "OpenApi"),
    get(
        "/v1/status",
        "This node: its cluster, topics with their tiers, groups, security",
        "Object",
    ),
    get(
        "/v1/brokers",
        "Brokers, what each holds, and partitions moving",
        "Object",
    ),
    write(
        Method::Post,
        "/v1/brokers/{broker_id}/decommission",
        "Moves every replica off a broker",
        None,
        200,
        "Object",
    ),
    write(
        Method::Delete,
        "/v1/brokers/{broker_id}",
        "Forgets an emptied broker",
        None,
        200,
        "Object",
    ),
    write(
        Method::Post,
        "/v1/partitions/{topic_name}/{partition_id}/reassign",
        "Moves a partition's replicas",
        Some("ReassignRequest"),
        200,
        "Object",
    ),
    write(
        Method::Post,
        "/v1/partitions/{topic_name}/{partition_id}/transfer_leadership",
        "Hands a partition's leadership to another replica",
        Some("TransferRequest"),
        200,
        "Object",
    ),
    get(
        "/v1/topics/{topic_name}/tiering",
        "A topic's partitions across the tiers (local and archived ranges, bytes, upload backlog) and the archive cache",
        "Object",
    ),
    Endpoint {
        query: &[
            ("offset", "integer", false),
            ("timestamp", "integer", false),
            ("newest", "boolean", false),
            ("limit", "integer", false),
        ],
        ..get(
            "/v1/topics/{topic_name}/partitions/{partition_id}/records",
            "Records of a partition from an offset, a timestamp or the newest, through whichever tier holds them (the answer says which)",
            "RecordsData",
        )
    },
    write(
        Method::Post,
        "/v1/groups/{consumer_group_id}/reset",
        "Resets an empty group's committed offsets to the earliest, the latest, a timestamp or an offset",
        Some("ResetRequest"),
        200,
        "Object",
    ),
    Endpoint {
        query: &[
            ("topic", "string", true),
            ("key", "string", false),
            ("key_hex", "string", false),
            ("partition", "integer", false),
            ("all_partitions", "boolean", false),
            ("from", "integer", false),
            ("to", "integer", false),
            ("limit", "integer", false),
        ],
        ..get(
            "/v1/archive/find",
            "Archived records by key, through the key indexes",
            "Object",
        )
    },
    get(
        "/v1/read-replicas",
        "Topics served from another cluster's archive (disaster recovery), each partition with how far behind its source it is",
        "ReadReplicas",
    ),
    get(
        "/v1/archive/verify",
        "The latest verification of the archive, running or done: progress and faults",
        "ArchiveVerify",
    ),
    Endpoint {
        query: &[("topic", "string", false)],
        ..write(
            Method::Post,
            "/v1/archive/verify",
            "Starts verifying the archive (one topic, or all of it): every manifest, segment and sidecar read and checked",
            None,
            202,
            "ArchiveVerify",
        )
    },
    get("/metrics", "Prometheus metrics", "Text"),
];

/// The handler of an endpoint.
fn handler(method: Method, path: &str) -> Option<MethodRouter<Arc<Node>>> {
    use super::{admin, admin_archive, rest_groups, rest_records, rest_v3_write as w};
    use axum::routing::{delete, post, put};
    let tail = path.strip_prefix(CLUSTER);
    Some(match (method, tail, path) {
        (Method::Get, _, "/v3/clusters") => get_route(clusters),
        (Method::Get, Some(""), _) => get_route(cluster),
        (Method::Get, Some("/brokers"), _) => get_route(brokers),
        (Method::Get, Some("/brokers/{broker_id}"), _) => get_route(broker),
        (Method::Get, Some("/topics"), _) => get_route(topics),
        (Method::Post, Some("/topics"), _) => post(w::create_topic),
        (Method::Get, Some("/topics/{topic_name}"), _) => get_route(topic),
        (Method::Delete, Some("/topics/{topic_name}"), _) => delete(w::delete_topic),
        (Method::Get, Some("/topics/{topic_name}/partitions"), _) => get_route(partitions),
        (Method::Get, Some("/topics/{topic_name}/partitions/{partition_id}"), _) => {
            get_route(partition)
        }
        (Method::Get, Some("/topics/{topic_name}/configs"), _) => get_route(configs),
        (Method::Post, Some("/topics/{topic_name}/configs:alter"), _) => post(w::alter_configs),
        (Method::Get, Some("/topics/{topic_name}/configs/{name}"), _) => get_route(config),
        (Method::Put, Some("/topics/{topic_name}/configs/{name}"), _) => put(w::set_config),
        (Method::Delete, Some("/topics/{topic_name}/configs/{name}"), _) => delete(w::reset_config),
        (Method::Post, Some("/topics/{topic_name}/records"), _) => post(w::produce),
        (Method::Get, Some("/consumer-groups"), _) => get_route(rest_groups::groups),
        (Method::Get, Some("/consumer-groups/{consumer_group_id}"), _) => {
            get_route(rest_groups::group)
        }
        (Method::Get, Some("/consumer-groups/{consumer_group_id}/consumers"), _) => {
            get_route(rest_groups::consumers)
        }
        (Method::Get, Some("/consumer-groups/{consumer_group_id}/lags"), _) => {
            get_route(rest_groups::lags)
        }
        (Method::Get, Some("/consumer-groups/{consumer_group_id}/lag-summary"), _) => {
            get_route(rest_groups::lag_summary)
        }
        (Method::Get, _, "/v3/openapi.json") => get_route(openapi),
        (Method::Get, _, "/v1/status") => get_route(admin::status),
        (Method::Get, _, "/v1/brokers") => get_route(admin::brokers),
        (Method::Post, _, "/v1/brokers/{broker_id}/decommission") => post(admin::decommission),
        (Method::Delete, _, "/v1/brokers/{broker_id}") => delete(admin::remove_broker),
        (Method::Post, _, "/v1/partitions/{topic_name}/{partition_id}/reassign") => {
            post(admin::reassign)
        }
        (Method::Post, _, "/v1/partitions/{topic_name}/{partition_id}/transfer_leadership") => {
            post(admin::transfer_leadership)
        }
        (Method::Get, _, "/v1/topics/{topic_name}/tiering") => get_route(admin::tiering),
        (Method::Get, _, "/v1/topics/{topic_name}/partitions/{partition_id}/records") => {
            get_route(rest_records::records)
        }
        (Method::Post, _, "/v1/groups/{consumer_group_id}/reset") => post(rest_groups::reset),
        (Method::Get, _, "/v1/archive/find") => get_route(admin_archive::find),
        (Method::Get, _, "/v1/read-replicas") => get_route(super::admin_status::read_replicas),
        (Method::Get, _, "/v1/archive/verify") => get_route(admin_archive::verify_status),
        (Method::Post, _, "/v1/archive/verify") => post(admin_archive::start_verify),
        (Method::Get, _, "/metrics") => get_route(admin::metrics_text),
        _ => return None,
    })
}

/// The routes, for the admin server's router: one method router per path.
pub(super) fn routes() -> Router<Arc<Node>> {
    let mut by_path: Vec<(&str, MethodRouter<Arc<Node>>)> = Vec::new();
    for e in ENDPOINTS {
        let Some(method) = handler(e.method, e.path) else {
            continue;
        };
        match by_path.iter_mut().find(|(path, _)| *path == e.path) {
            Some((_, router)) => *router = std::mem::take(router).merge(method),
            None => by_path.push((e.path, method)),
        }
    }
    by_path
        .into_iter()
        .fold(Router::new(), |router, (path, method)| {
            router.route(path, method)
        })
}

pub(super) type Answer = (StatusCode, Json<Value>);

/// An error in the REST Proxy's shape.
pub(super) fn error(status: StatusCode, message: impl Into<String>) -> Answer {
    (
        status,
        Json(json!({ "error_code": status.as_u16(), "message": message.into() })),
    )
}

pub(super) fn ok(body: Value) -> Answer {
    (StatusCode::OK, Json(body))
}

/// What links start with: the scheme and host the caller used.
fn base(node: &Node, headers: &HeaderMap) -> String {
    let scheme = if node.config.security.admin_tls {
        "https"
    } else {
        "http"
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map_or_else(|| node.config.admin_addr.to_string(), str::to_string);
    format!("{scheme}://{host}")
}

/// The links and names of one cluster's resources.
pub(super) struct Urls {
    pub(super) cluster: String,
    crn: String,
}

impl Urls {
    pub(super) fn new(node: &Node, headers: &HeaderMap) -> Urls {
        Urls {
            cluster: format!("{}/v3/clusters/{}", base(node, headers), node.cluster_id),
            crn: format!("crn:///kafka={}", node.cluster_id),
        }
    }

    pub(super) fn related(&self, tail: &str) -> Value {
        json!({ "related": format!("{}{tail}", self.cluster) })
    }

    pub(super) fn metadata(&self, tail: &str, crn_tail: &str) -> Value {
        json!({ "self": format!("{}{tail}", self.cluster), "resource_name": format!("{}{crn_tail}", self.crn) })
    }
}

pub(super) fn list(kind: &str, url: String, data: Vec<Value>) -> Value {
    json!({ "kind": kind, "metadata": { "self": url, "next": null }, "data": data })
}

/// The cluster named in the path, or 404.
pub(super) fn check_cluster(node: &Node, cluster_id: &str) -> Result<(), Answer> {
    if cluster_id == node.cluster_id {
        Ok(())
    } else {
        Err(error(
            StatusCode::NOT_FOUND,
            format!(
                "cluster '{cluster_id}' is not this one ('{}')",
                node.cluster_id
            ),
        ))
    }
}

/// The topic named in the path, if the caller may describe it, or 404 (also when it may not,
/// so that a topic's existence does not leak).
fn visible_topic(
    node: &Node,
    principal: Option<&AdminPrincipal>,
    name: &str,
) -> Result<Arc<Topic>, Answer> {
    node.topics
        .get(name)
        .filter(|t| {
            !t.internal && may_use_topic(node, principal, Operation::Describe, &t.name).is_ok()
        })
        .ok_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                format!("topic '{name}' does not exist"),
            )
        })
}

/// The topic of a path under `/v3/clusters/{cluster_id}/topics/{topic_name}`, or the 404.
pub(super) fn topic_in(
    node: &Node,
    cluster_id: &str,
    principal: Option<&axum::Extension<AdminPrincipal>>,
    name: &str,
) -> Result<Arc<Topic>, Answer> {
    check_cluster(node, cluster_id)?;
    visible_topic(node, principal.map(|p| &p.0), name)
}

/// The item of `items` whose `field` is the number `wanted` (a path's id), or a 404 saying
/// `missing`.
fn one_of(items: Vec<Value>, field: &str, wanted: &str, missing: String) -> Answer {
    let wanted = wanted.parse::<i64>().ok();
    items
        .into_iter()
        .find(|item| wanted.is_some() && item[field].as_i64() == wanted)
        .map_or_else(|| error(StatusCode::NOT_FOUND, missing), ok)
}

fn cluster_data(node: &Node, urls: &Urls) -> Value {
    let controller = crate::handlers::metadata::controller_id(node);
    json!({
        "kind": "KafkaCluster",
        "metadata": urls.metadata("", ""),
        "cluster_id": node.cluster_id,
        "controller": urls.related(&format!("/brokers/{controller}")),
        "brokers": urls.related("/brokers"),
        "topics": urls.related("/topics"),
    })
}

async fn clusters(State(node): State<Arc<Node>>, headers: HeaderMap) -> Answer {
    let urls = Urls::new(&node, &headers);
    ok(list(
        "KafkaClusterList",
        format!("{}/v3/clusters", base(&node, &headers)),
        vec![cluster_data(&node, &urls)],
    ))
}

async fn cluster(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    Path(cluster_id): Path<String>,
) -> Answer {
    if let Err(e) = check_cluster(&node, &cluster_id) {
        return e;
    }
    ok(cluster_data(&node, &Urls::new(&node, &headers)))
}

fn broker_list(node: &Node, urls: &Urls) -> Vec<Value> {
    brokers_of(node)
        .into_iter()
        .map(|(id, host, port)| {
            json!({
                "kind": "KafkaBroker",
                "metadata": urls.metadata(&format!("/brokers/{id}"), &format!("/broker={id}")),
                "cluster_id": node.cluster_id,
                "broker_id": id,
                "host": host,
                "port": port,
                "rack": null,
            })
        })
        .collect()
}

async fn brokers(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    Path(cluster_id): Path<String>,
) -> Answer {
    if let Err(e) = check_cluster(&node, &cluster_id) {
        return e;
    }
    let urls = Urls::new(&node, &headers);
    ok(list(
        "KafkaBrokerList",
        format!("{}/brokers", urls.cluster),
        broker_list(&node, &urls),
    ))
}

async fn broker(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    Path((cluster_id, broker_id)): Path<(String, String)>,
) -> Answer {
    if let Err(e) = check_cluster(&node, &cluster_id) {
        return e;
    }
    let urls = Urls::new(&node, &headers);
    one_of(
        broker_list(&node, &urls),
        "broker_id",
        &broker_id,
        format!("broker '{broker_id}' is not in the cluster"),
    )
}

pub(super) fn topic_data(node: &Node, urls: &Urls, topic: &Topic) -> Value {
    let described = describe_topic(node, topic);
    let replication = described
        .partitions
        .first()
        .map_or(0, |p| p.replica_nodes.len());
    let name = &topic.name;
    json!({
        "kind": "KafkaTopic",
        "metadata": urls.metadata(&format!("/topics/{name}"), &format!("/topic={name}")),
        "cluster_id": node.cluster_id,
        "topic_name": name,
        "topic_id": topic.id.to_string(),
        "is_internal": topic.internal,
        "replication_factor": replication,
        "partitions_count": topic.partition_count(),
        "partitions": urls.related(&format!("/topics/{name}/partitions")),
        "configs": urls.related(&format!("/topics/{name}/configs")),
        "authorized_operations": [],
    })
}

async fn topics(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    principal: Option<axum::Extension<AdminPrincipal>>,
    Path(cluster_id): Path<String>,
) -> Answer {
    if let Err(e) = check_cluster(&node, &cluster_id) {
        return e;
    }
    let urls = Urls::new(&node, &headers);
    let principal = principal.as_ref().map(|p| &p.0);
    let mut all = node.topics.all();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    let data = all
        .iter()
        .filter(|t| {
            !t.internal && may_use_topic(&node, principal, Operation::Describe, &t.name).is_ok()
        })
        .map(|t| topic_data(&node, &urls, t))
        .collect();
    ok(list(
        "KafkaTopicList",
        format!("{}/topics", urls.cluster),
        data,
    ))
}

async fn topic(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    principal: Option<axum::Extension<AdminPrincipal>>,
    Path((cluster_id, name)): Path<(String, String)>,
) -> Answer {
    match topic_in(&node, &cluster_id, principal.as_ref(), &name) {
        Ok(topic) => ok(topic_data(&node, &Urls::new(&node, &headers), &topic)),
        Err(e) => e,
    }
}

fn partition_list(node: &Node, urls: &Urls, topic: &Topic) -> Vec<Value> {
    let name = &topic.name;
    describe_topic(node, topic)
        .partitions
        .iter()
        .map(|p| {
            let index = p.partition_index;
            let leader = p.leader_id.0;
            let ids = |brokers: &[kafka_protocol::messages::BrokerId]| {
                brokers.iter().map(|b| b.0).collect::<Vec<i32>>()
            };
            json!({
                "kind": "KafkaPartition",
                "metadata": urls.metadata(
                    &format!("/topics/{name}/partitions/{index}"),
                    &format!("/topic={name}/partition={index}"),
                ),
                "cluster_id": node.cluster_id,
                "topic_name": name,
                "partition_id": index,
                "leader": (leader >= 0).then(|| urls.related(&format!("/brokers/{leader}"))),
                "leader_id": (leader >= 0).then_some(leader),
                "replica_ids": ids(&p.replica_nodes),
                "isr_ids": ids(&p.isr_nodes),
            })
        })
        .collect()
}

async fn partitions(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    principal: Option<axum::Extension<AdminPrincipal>>,
    Path((cluster_id, name)): Path<(String, String)>,
) -> Answer {
    let topic = match topic_in(&node, &cluster_id, principal.as_ref(), &name) {
        Ok(topic) => topic,
        Err(e) => return e,
    };
    let urls = Urls::new(&node, &headers);
    ok(list(
        "KafkaPartitionList",
        format!("{}/topics/{name}/partitions", urls.cluster),
        partition_list(&node, &urls, &topic),
    ))
}

async fn partition(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    principal: Option<axum::Extension<AdminPrincipal>>,
    Path((cluster_id, name, index)): Path<(String, String, String)>,
) -> Answer {
    let topic = match topic_in(&node, &cluster_id, principal.as_ref(), &name) {
        Ok(topic) => topic,
        Err(e) => return e,
    };
    one_of(
        partition_list(&node, &Urls::new(&node, &headers), &topic),
        "partition_id",
        &index,
        format!("topic '{name}' has no partition '{index}'"),
    )
}

fn config_list(node: &Node, urls: &Urls, topic: &Topic) -> Vec<Value> {
    let name = &topic.name;
    let config = topic.config();
    let overrides = topic.overrides();
    TOPIC_PROPERTIES
        .iter()
        .filter_map(|p| Some((p, config.value_of(p.name)?)))
        .map(|(p, value)| {
            let set = overrides.contains_key(p.name);
            let config_name = p.name;
            json!({
                "kind": "KafkaTopicConfig",
                "metadata": urls.metadata(
                    &format!("/topics/{name}/configs/{config_name}"),
                    &format!("/topic={name}/config={config_name}"),
                ),
                "cluster_id": node.cluster_id,
                "topic_name": name,
                "name": config_name,
                "value": value,
                "is_default": !set,
                "is_read_only": p.create_only,
                "is_sensitive": false,
                "source": if set { "DYNAMIC_TOPIC_CONFIG" } else { "DEFAULT_CONFIG" },
                "synonyms": [],
            })
        })
        .collect()
}

async fn configs(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    principal: Option<axum::Extension<AdminPrincipal>>,
    Path((cluster_id, name)): Path<(String, String)>,
) -> Answer {
    let topic = match topic_in(&node, &cluster_id, principal.as_ref(), &name) {
        Ok(topic) => topic,
        Err(e) => return e,
    };
    let urls = Urls::new(&node, &headers);
    ok(list(
        "KafkaTopicConfigList",
        format!("{}/topics/{name}/configs", urls.cluster),
        config_list(&node, &urls, &topic),
    ))
}

async fn config(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    principal: Option<axum::Extension<AdminPrincipal>>,
    Path((cluster_id, name, config)): Path<(String, String, String)>,
) -> Answer {
    let topic = match topic_in(&node, &cluster_id, principal.as_ref(), &name) {
        Ok(topic) => topic,
        Err(e) => return e,
    };
    config_list(&node, &Urls::new(&node, &headers), &topic)
        .into_iter()
        .find(|c| c["name"] == config.as_str())
        .map_or_else(
            || {
                error(
                    StatusCode::NOT_FOUND,
                    format!("topic '{name}' has no config '{config}'"),
                )
            },
            ok,
        )
}

async fn openapi() -> Json<Value> {
    Json(document())
}

/// The OpenAPI 3.0 document of [`ENDPOINTS`].
fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for e in ENDPOINTS {
        let mut parameters: Vec<Value> = e
            .path
            .split('/')
            .filter_map(|part| part.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| {
                let kind =
                    if name.ends_with("_id") && name != "cluster_id" && name != "consumer_group_id"
                    {
                        "integer"
                    } else {
                        "string"
                    };
                json!({ "name": name, "in": "path", "required": true, "schema": { "type": kind } })
            })
            .collect();
        parameters.extend(e.query.iter().map(|(name, kind, required)| {
            json!({ "name": name, "in": "query", "required": required, "schema": { "type": kind } })
        }));
        let content = |schema: &str| match schema {
            "Text" => json!({ "text/plain": { "schema": { "type": "string" } } }),
            _ => {
                json!({ "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } })
            }
        };
        let mut success = json!({ "description": e.summary });
        if e.schema != "None" {
            success["content"] = content(e.schema);
        }
        let error = json!({ "description": "What is wrong, named", "content": content("Error") });
        let mut operation = json!({
            "summary": e.summary,
            "parameters": parameters,
            "responses": {
                e.status.to_string(): success,
                "400": error.clone(),
                "403": error.clone(),
                "404": error,
            },
        });
        if let Some(body) = e.body {
            operation["requestBody"] = json!({ "required": true, "content": content(body) });
        }
        let item = paths.entry(e.path.to_string()).or_insert_with(|| json!({}));
        item[e.method.name()] = operation;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "silt admin API: Confluent REST Proxy v3 shapes, and silt's own routes",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "paths": paths,
        "components": { "schemas": schemas() },
    })
}

/// The answers' schemas: the fields every answer of a kind has.
fn schemas() -> Value {
    let object = |kind: &str, required: &[&str]| {
        let mut properties = serde_json::Map::new();
        properties.insert("kind".into(), json!({ "type": "string", "enum": [kind] }));
        for field in required {
            properties.entry(*field).or_insert(json!({}));
        }
        let all: Vec<&str> = ["kind", "metadata"]
            .iter()
            .chain(required)
            .copied()
            .collect();
        json!({ "type": "object", "required": all, "properties": properties })
    };
    let list = |kind: &str, item: &str| {
        json!({
            "type": "object",
            "required": ["kind", "metadata", "data"],
            "properties": {
                "kind": { "type": "string", "enum": [kind] },
                "data": { "type": "array", "items": { "$ref": format!("#/components/schemas/{item}") } },
            },
        })
    };
    json!({
        "ClusterData": object("KafkaCluster", &["cluster_id", "controller", "brokers", "topics"]),
        "ClusterDataList": list("KafkaClusterList", "ClusterData"),
        "BrokerData": object("KafkaBroker", &["cluster_id", "broker_id", "host", "port"]),
        "BrokerDataList": list("KafkaBrokerList", "BrokerData"),
        "TopicData": object("KafkaTopic", &["cluster_id", "topic_name", "is_internal", "replication_factor", "partitions_count", "partitions", "configs"]),
        "TopicDataList": list("KafkaTopicList", "TopicData"),
        "PartitionData": object("KafkaPartition", &["cluster_id", "topic_name", "partition_id", "leader", "replica_ids", "isr_ids"]),
        "PartitionDataList": list("KafkaPartitionList", "PartitionData"),
        "TopicConfigData": object("KafkaTopicConfig", &["cluster_id", "topic_name", "name", "value", "is_default", "is_read_only", "is_sensitive", "source"]),
        "TopicConfigDataList": list("KafkaTopicConfigList", "TopicConfigData"),
        "ConsumerGroupData": object("KafkaConsumerGroup", &["cluster_id", "consumer_group_id", "is_simple", "partition_assignor", "state", "coordinator", "consumers", "lag_summary"]),
        "ConsumerGroupDataList": list("KafkaConsumerGroupList", "ConsumerGroupData"),
        "ConsumerData": object("KafkaConsumer", &["cluster_id", "consumer_group_id", "consumer_id", "instance_id", "client_id", "assignments"]),
        "ConsumerDataList": list("KafkaConsumerList", "ConsumerData"),
        "ConsumerLagData": object("KafkaConsumerLag", &["cluster_id", "consumer_group_id", "topic_name", "partition_id", "current_offset", "log_end_offset", "lag", "consumer_id", "client_id"]),
        "ConsumerLagDataList": list("KafkaConsumerLagList", "ConsumerLagData"),
        "ConsumerGroupLagSummaryData": object("KafkaConsumerGroupLagSummary", &["cluster_id", "consumer_group_id", "max_lag", "total_lag", "max_lag_topic_name", "max_lag_partition_id"]),
        "CreateTopicRequest": { "type": "object", "required": ["topic_name"], "properties": {
            "topic_name": { "type": "string" }, "partitions_count": { "type": "integer" },
            "replication_factor": { "type": "integer" }, "validate_only": { "type": "boolean" },
            "configs": { "type": "array", "items": { "type": "object", "required": ["name", "value"] } } } },
        "UpdateConfigRequest": { "type": "object", "required": ["value"], "properties": { "value": { "type": "string" } } },
        "AlterConfigBatchRequest": { "type": "object", "required": ["data"], "properties": {
            "data": { "type": "array", "items": { "type": "object", "required": ["name"], "properties": {
                "name": { "type": "string" }, "value": { "type": "string" },
                "operation": { "type": "string", "enum": ["SET", "DELETE"] } } } },
            "validate_only": { "type": "boolean" } } },
        "ProduceRequest": { "type": "object", "properties": {
            "partition_id": { "type": "integer" },
            "key": { "$ref": "#/components/schemas/ProduceData" },
            "value": { "$ref": "#/components/schemas/ProduceData" },
            "headers": { "type": "array", "items": { "type": "object", "required": ["name"] } },
            "timestamp": { "description": "milliseconds since the epoch, or an RFC 3339 time" } } },
        "ProduceData": { "type": "object", "required": ["data"], "properties": {
            "type": { "type": "string", "enum": ["JSON", "STRING", "BINARY"] }, "data": {} } },
        "ProduceResponse": { "type": "object", "required": ["error_code", "cluster_id", "topic_name", "partition_id", "offset", "timestamp"] },
        "ReassignRequest": { "type": "object", "required": ["replicas"] },
        "TransferRequest": { "type": "object", "required": ["to"] },
        "ResetRequest": { "type": "object", "required": ["to"], "properties": {
            "to": { "type": "string", "enum": ["earliest", "latest", "timestamp", "offset"] },
            "timestamp": { "type": "integer" }, "offset": { "type": "integer" },
            "topic": { "type": "string" }, "partitions": { "type": "array", "items": { "type": "integer" } } } },
        "RecordsData": { "type": "object", "required": ["topic", "partition", "tier", "start_offset", "next_offset", "log_start_offset", "local_start_offset", "high_watermark", "records"], "properties": {
            "tier": { "type": "string", "enum": ["local", "archive"] },
            "records": { "type": "array", "items": { "type": "object", "required": ["offset", "timestamp", "key", "value", "headers"] } } } },
        "ArchiveVerify": { "type": "object", "required": ["state", "running", "runs", "partitions", "segments", "segments_total", "bytes", "bytes_total", "faults", "faults_total"], "properties": {
            "state": { "type": "string", "enum": ["never_run", "running", "ok", "faults", "failed"] },
            "faults": { "type": "array", "items": { "type": "string" } } } },
        "ReadReplicas": { "type": "object", "required": ["read_replicas"], "properties": {
            "read_replicas": { "type": "array", "items": { "type": "object", "required": ["topic", "source", "source_target", "lag_offsets", "partitions"] } } } },
        "Object": { "type": "object" },
        "Error": { "type": "object" },
        "OpenApi": { "type": "object", "required": ["openapi", "paths"] },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_has_a_handler_and_its_schemas() {
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        for e in ENDPOINTS {
            assert!(
                handler(e.method, e.path).is_some(),
                "{:?} {} has no handler",
                e.method,
                e.path
            );
            for schema in std::iter::once(e.schema).chain(e.body) {
                assert!(
                    matches!(schema, "Text" | "None") || schemas.get(schema).is_some(),
                    "{} names {schema}, which has no schema",
                    e.path
                );
            }
            assert!(doc["paths"][e.path].get(e.method.name()).is_some());
        }
        let operations: usize = doc["paths"].as_object().map_or(0, |paths| {
            paths
                .values()
                .filter_map(Value::as_object)
                .map(serde_json::Map::len)
                .sum()
        });
        assert_eq!(
            operations,
            ENDPOINTS.len(),
            "a method and path listed twice"
        );
    }
}
