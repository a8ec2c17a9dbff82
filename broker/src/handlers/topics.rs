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
use crate::node::Node;
use crate::protocol::error_code::{ErrorCode, for_topic};
use crate::topics::{Topic, TopicError};

/// DescribeConfigs' source values.
pub(super) const SOURCE_TOPIC: i8 = 1;
pub(super) const SOURCE_STATIC_BROKER: i8 = 4;
pub(super) const SOURCE_DEFAULT: i8 = 5;

pub(super) async fn create(
    node: &Node,
    request: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
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
        let partitions = if topic.num_partitions == -1 {
            node.config.default_partitions
        } else {
            topic.num_partitions
        };
        let replication = if topic.replication_factor == -1 {
            1
        } else {
            topic.replication_factor
        };
        let assignments_ok = topic
            .assignments
            .iter()
            .all(|a| a.broker_ids.len() == 1 && a.broker_ids[0].0 == node.config.node_id);
        if !assignments_ok {
            results.push(
                result
                    .with_error_code(ErrorCode::InvalidReplicaAssignment.code())
                    .with_error_message(Some(str_bytes(&format!(
                        "replica assignments may only name broker {}, once per partition",
                        node.config.node_id
                    )))),
            );
            continue;
        }
        let (partitions, replication) = if topic.assignments.is_empty() {
            (partitions, replication)
        } else {
            (topic.assignments.len() as i32, 1)
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
            Ok(crate::dr::Created {
                id,
                partitions,
                config,
                overrides,
            }) => {
                let described = (version >= 5).then(|| describe_for_create(&config, &overrides));
                result
                    .with_topic_id(id)
                    .with_num_partitions(partitions)
                    .with_replication_factor(replication)
                    .with_configs(described)
            }
            Err(e) => result
                .with_error_code(for_topic(&e).code())
                .with_error_message(Some(str_bytes(&e.to_string()))),
        });
    }
    CreateTopicsResponse::default().with_topics(results)
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

pub(super) async fn delete(node: &Node, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
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
        responses.push(match node.topics.delete(&topic.name).await {
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
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        let outcome = match &topic.assignments {
            Some(assignments)
                if !assignments.iter().all(|a| {
                    a.broker_ids.len() == 1 && a.broker_ids[0].0 == node.config.node_id
                }) =>
            {
                Err(TopicError::InvalidReplicaAssignment(format!(
                    "replica assignments may only name broker {}",
                    node.config.node_id
                )))
            }
            _ => {
                node.topics
                    .add_partitions(topic.name.0.as_str(), topic.count, request.validate_only)
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
