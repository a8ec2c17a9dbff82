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
use axum::routing::{MethodRouter, get};
use axum::{Json, Router};
use serde_json::{Value, json};
use silt_config::TOPIC_PROPERTIES;

use super::admin_archive::{AdminPrincipal, may_use_topic};
use crate::handlers::metadata::{brokers_of, describe_topic};
use crate::node::Node;
use crate::security::acl::Operation;
use crate::topics::Topic;

/// One route of the API: its path (axum's syntax, which is OpenAPI's), what it answers, and
/// the schema of its answer.
struct Endpoint {
    path: &'static str,
    summary: &'static str,
    schema: &'static str,
}

/// Every route, in the order the OpenAPI document lists them.
const ENDPOINTS: [Endpoint; 11] = [
    Endpoint {
        path: "/v3/clusters",
        summary: "The cluster (one: the one this broker is in)",
        schema: "ClusterDataList",
    },
    Endpoint {
        path: "/v3/clusters/{cluster_id}",
        summary: "The cluster",
        schema: "ClusterData",
    },
    Endpoint {
        path: "/v3/clusters/{cluster_id}/brokers",
        summary: "Its brokers",
        schema: "BrokerDataList",
    },
    Endpoint {
        path: "/v3/clusters/{cluster_id}/brokers/{broker_id}",
        summary: "One broker",
        schema: "BrokerData",
    },
    Endpoint {
        path: "/v3/clusters/{cluster_id}/topics",
        summary: "Its topics (those the caller may describe)",
        schema: "TopicDataList",
    },
    Endpoint {
        path: "/v3/clusters/{cluster_id}/topics/{topic_name}",
        summary: "One topic",
        schema: "TopicData",
    },
    Endpoint {
        path: "/v3/clusters/{cluster_id}/topics/{topic_name}/partitions",
        summary: "A topic's partitions, with their leaders and replicas",
        schema: "PartitionDataList",
    },
    Endpoint {
        path: "/v3/clusters/{cluster_id}/topics/{topic_name}/partitions/{partition_id}",
        summary: "One partition",
        schema: "PartitionData",
    },
    Endpoint {
        path: "/v3/clusters/{cluster_id}/topics/{topic_name}/configs",
        summary: "A topic's configs: every property, its value and where it comes from",
        schema: "TopicConfigDataList",
    },
    Endpoint {
        path: "/v3/clusters/{cluster_id}/topics/{topic_name}/configs/{name}",
        summary: "One of a topic's configs",
        schema: "TopicConfigData",
    },
    Endpoint {
        path: "/v3/openapi.json",
        summary: "This document",
        schema: "OpenApi",
    },
];

/// The handler of an endpoint's path.
fn handler(path: &str) -> Option<MethodRouter<Arc<Node>>> {
    Some(match path {
        "/v3/clusters" => get(clusters),
        "/v3/clusters/{cluster_id}" => get(cluster),
        "/v3/clusters/{cluster_id}/brokers" => get(brokers),
        "/v3/clusters/{cluster_id}/brokers/{broker_id}" => get(broker),
        "/v3/clusters/{cluster_id}/topics" => get(topics),
        "/v3/clusters/{cluster_id}/topics/{topic_name}" => get(topic),
        "/v3/clusters/{cluster_id}/topics/{topic_name}/partitions" => get(partitions),
        "/v3/clusters/{cluster_id}/topics/{topic_name}/partitions/{partition_id}" => get(partition),
        "/v3/clusters/{cluster_id}/topics/{topic_name}/configs" => get(configs),
        "/v3/clusters/{cluster_id}/topics/{topic_name}/configs/{name}" => get(config),
        "/v3/openapi.json" => get(openapi),
        _ => return None,
    })
}

/// The routes, for the admin server's router.
pub(super) fn routes() -> Router<Arc<Node>> {
    ENDPOINTS
        .iter()
        .filter_map(|e| Some((e.path, handler(e.path)?)))
        .fold(Router::new(), |router, (path, method)| {
            router.route(path, method)
        })
}

type Answer = (StatusCode, Json<Value>);

/// An error in the REST Proxy's shape.
fn error(status: StatusCode, message: impl Into<String>) -> Answer {
    (
        status,
        Json(json!({ "error_code": status.as_u16(), "message": message.into() })),
    )
}

fn ok(body: Value) -> Answer {
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
struct Urls {
    cluster: String,
    crn: String,
}

impl Urls {
    fn new(node: &Node, headers: &HeaderMap) -> Urls {
        Urls {
            cluster: format!("{}/v3/clusters/{}", base(node, headers), node.cluster_id),
            crn: format!("crn:///kafka={}", node.cluster_id),
        }
    }

    fn related(&self, tail: &str) -> Value {
        json!({ "related": format!("{}{tail}", self.cluster) })
    }

    fn metadata(&self, tail: &str, crn_tail: &str) -> Value {
        json!({ "self": format!("{}{tail}", self.cluster), "resource_name": format!("{}{crn_tail}", self.crn) })
    }
}

fn list(kind: &str, url: String, data: Vec<Value>) -> Value {
    json!({ "kind": kind, "metadata": { "self": url, "next": null }, "data": data })
}

/// The cluster named in the path, or 404.
fn check_cluster(node: &Node, cluster_id: &str) -> Result<(), Answer> {
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
fn topic_in(
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

fn topic_data(node: &Node, urls: &Urls, topic: &Topic) -> Value {
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
    let parameter = |name: &str, kind: &str| json!({ "name": name, "in": "path", "required": true, "schema": { "type": kind } });
    let paths: serde_json::Map<String, Value> = ENDPOINTS
        .iter()
        .map(|e| {
            let parameters: Vec<Value> = e
                .path
                .split('/')
                .filter_map(|part| part.strip_prefix('{')?.strip_suffix('}'))
                .map(|name| {
                    let kind = if name.ends_with("_id") && name != "cluster_id" {
                        "integer"
                    } else {
                        "string"
                    };
                    parameter(name, kind)
                })
                .collect();
            let operation = json!({
                "summary": e.summary,
                "parameters": parameters,
                "responses": {
                    "200": {
                        "description": e.summary,
                        "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{}", e.schema) } } },
                    },
                    "404": {
                        "description": "No such cluster, broker, topic or partition",
                        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } },
                    },
                },
            });
            (e.path.to_string(), json!({ "get": operation }))
        })
        .collect();
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "silt REST API (Confluent REST Proxy v3, read side)",
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
        "Error": { "type": "object", "required": ["error_code", "message"] },
        "OpenApi": { "type": "object", "required": ["openapi", "paths"] },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_has_a_handler_and_a_schema() {
        let doc = document();
        for e in &ENDPOINTS {
            assert!(handler(e.path).is_some(), "{} has no handler", e.path);
            assert!(
                doc["components"]["schemas"].get(e.schema).is_some(),
                "{} answers {}, which has no schema",
                e.path,
                e.schema
            );
            assert!(doc["paths"].get(e.path).is_some());
        }
        assert_eq!(
            doc["paths"].as_object().map(serde_json::Map::len),
            Some(ENDPOINTS.len())
        );
    }
}
