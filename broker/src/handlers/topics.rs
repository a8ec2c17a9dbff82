//! CreateTopics, DeleteTopics, CreatePartitions.

use std::collections::HashSet;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse,
};
use silt_config::{TOPIC_PROPERTIES, TopicConfig};
use uuid::Uuid;

use super::{str_bytes, topic_name};
use crate::cluster::admin::Created;
use crate::node::Node;
use crate::protocol::error_code::{ErrorCode, for_topic};
use crate::security::acl::{Operation, ResourceType};
use crate::security::{CLUSTER, Caller};
use crate::topics::{Topic, TopicError};

/// DescribeConfigs' source values.
pub(super) const SOURCE_TOPIC: i8 = 1;
pub(super) const SOURCE_STATIC_BROKER: i8 = 4;
pub(super) const SOURCE_DEFAULT: i8 = 5;

pub(crate) async fn create(
    node: &Node,
    request: CreateTopicsRequest,
    version: i16,
    caller: &Caller,
) -> CreateTopicsResponse {
    let cluster_create = caller.sees(Operation::Create, ResourceType::Cluster, CLUSTER);
    let mut seen = HashSet::new();
    let duplicates: HashSet<String> = request
        .topics
        .iter()
        .filter(|t| !seen.insert(t.name.0.to_string()))
        .map(|t| t.name.0.to_string())
        .collect();
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let result = CreatableTopicResult::default()
            .with_name(topic.name.clone())
            .with_num_partitions(-1)
            .with_replication_factor(-1);
        if duplicates.contains(&name) {
            results.push(
                result
                    .with_error_code(ErrorCode::InvalidRequest.code())
                    .with_error_message(Some(str_bytes(&format!(
                        "topic '{name}' appears more than once in the request"
                    )))),
            );
            continue;
        }
        if !cluster_create && !caller.topic(Operation::Create, &name) {
            results.push(
                result
                    .with_error_code(ErrorCode::TopicAuthorizationFailed.code())
                    .with_error_message(Some(str_bytes(
                        "creating a topic takes CREATE on the cluster or the topic",
                    ))),
            );
            continue;
        }
        let partitions = if topic.num_partitions == -1 {
            node.config.default_partitions
        } else {
            topic.num_partitions
        };
        let state = node.cluster.controller.state();
        let assignments: Vec<Vec<i32>> = topic
            .assignments
            .iter()
            .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
            .collect();
        if let Some(message) = check_assignments(&assignments, &state) {
            results.push(
                result
                    .with_error_code(ErrorCode::InvalidReplicaAssignment.code())
                    .with_error_message(Some(str_bytes(&message))),
            );
            continue;
        }
        // Explicit assignments fix the count and the factor; placement stays silt's.
        let (partitions, replication) = if assignments.is_empty() {
            (partitions, topic.replication_factor)
        } else {
            (assignments.len() as i32, assignments[0].len() as i16)
        };
        let configs: Vec<(String, String)> = topic
            .configs
            .iter()
            .filter_map(|c| {
                c.value
                    .as_ref()
                    .map(|v| (c.name.to_string(), v.to_string()))
            })
            .collect();
        // Left to the broker: the default, or what the archive holds for a recovered topic.
        let asked =
            (topic.num_partitions != -1 || !topic.assignments.is_empty()).then_some(partitions);
        let outcome = crate::dr::create_topic(
            node,
            &name,
            asked,
            replication,
            &configs,
            request.validate_only,
        )
        .await;
        results.push(match outcome {
            Ok(Created {
                id,
                partitions,
                replication_factor,
                config,
                overrides,
            }) => {
                let described = (version >= 5).then(|| describe_for_create(&config, &overrides));
                result
                    .with_topic_id(id)
                    .with_num_partitions(partitions)
                    .with_replication_factor(replication_factor)
                    .with_configs(described)
            }
            Err(e) => result
                .with_error_code(for_topic(&e).code())
                .with_error_message(Some(str_bytes(&e.to_string()))),
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}

/// What is wrong with explicit replica assignments, if anything: silt places replicas itself,
/// but accepts assignments that name registered brokers, once per partition, with the same
/// number of replicas everywhere.
fn check_assignments(
    assignments: &[Vec<i32>],
    state: &crate::controller::ClusterState,
) -> Option<String> {
    let factor = assignments.first()?.len();
    for replicas in assignments {
        if replicas.len() != factor {
            return Some("every partition must have the same number of replicas".into());
        }
        let distinct: HashSet<&i32> = replicas.iter().collect();
        if distinct.len() != replicas.len() {
            return Some(format!("replicas {replicas:?} name a broker twice"));
        }
        if let Some(unknown) = replicas.iter().find(|b| !state.brokers.contains_key(b)) {
            return Some(format!("broker {unknown} is not in the cluster"));
        }
    }
    None
}

fn describe_for_create(
    config: &TopicConfig,
    overrides: &std::collections::BTreeMap<String, String>,
) -> Vec<CreatableTopicConfigs> {
    TOPIC_PROPERTIES
        .iter()
        .map(|p| {
            CreatableTopicConfigs::default()
                .with_name(str_bytes(p.name))
                .with_value(config.value_of(p.name).map(|v| str_bytes(&v)))
                .with_read_only(p.create_only)
                .with_config_source(if overrides.contains_key(p.name) {
                    SOURCE_TOPIC
                } else {
                    SOURCE_DEFAULT
                })
        })
        .collect()
}

pub(crate) async fn delete(
    node: &Node,
    request: DeleteTopicsRequest,
    caller: &Caller,
) -> DeleteTopicsResponse {
    // v0-5 name topics in `topic_names`; v6 in `topics`, by name or id.
    let mut wanted: Vec<(Option<String>, Uuid)> = request
        .topic_names
        .iter()
        .map(|n| (Some(n.0.to_string()), Uuid::nil()))
        .collect();
    wanted.extend(
        request
            .topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)),
    );
    let mut responses = Vec::with_capacity(wanted.len());
    for (name, id) in wanted {
        let topic: Option<std::sync::Arc<Topic>> = match &name {
            Some(name) => node.topics.get(name),
            None => node.topics.get_by_id(id),
        };
        let result = DeletableTopicResult::default()
            .with_name(name.as_deref().map(topic_name))
            .with_topic_id(id);
        let denied = match (&topic, &name) {
            (Some(t), _) => !caller.topic(Operation::Delete, &t.name),
            (None, Some(name)) => !caller.topic(Operation::Delete, name),
            (None, None) => false,
        };
        if denied {
            responses.push(result.with_error_code(ErrorCode::TopicAuthorizationFailed.code()));
            continue;
        }
        let Some(topic) = topic else {
            let code = if name.is_some() {
                ErrorCode::UnknownTopicOrPartition
            } else {
                ErrorCode::UnknownTopicId
            };
            responses.push(result.with_error_code(code.code()));
            continue;
        };
        let result = result
            .with_name(Some(topic_name(&topic.name)))
            .with_topic_id(topic.id);
        responses.push(match node.delete_topic(&topic.name).await {
            Ok(()) => result,
            Err(e) => result
                .with_error_code(for_topic(&e).code())
                .with_error_message(Some(str_bytes(&e.to_string()))),
        });
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

pub(super) async fn create_partitions(
    node: &Node,
    request: CreatePartitionsRequest,
    caller: &Caller,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        if !caller.topic(Operation::Alter, &topic.name.0) {
            results.push(result.with_error_code(ErrorCode::TopicAuthorizationFailed.code()));
            continue;
        }
        let state = node.cluster.controller.state();
        let assignments: Vec<Vec<i32>> = topic
            .assignments
            .iter()
            .flatten()
            .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
            .collect();
        let outcome = match check_assignments(&assignments, &state) {
            Some(message) => Err(TopicError::InvalidReplicaAssignment(message)),
            None => {
                node.add_partitions(topic.name.0.as_str(), topic.count, request.validate_only)
                    .await
            }
        };
        results.push(match outcome {
            Ok(()) => result,
            Err(e) => result
                .with_error_code(for_topic(&e).code())
                .with_error_message(Some(str_bytes(&e.to_string()))),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}
