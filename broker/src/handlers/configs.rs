//! DescribeConfigs, AlterConfigs, IncrementalAlterConfigs, for topics (read-write) and this
//! broker (read-only: node settings come from the file, `SILT_*` and flags).

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, alter_configs_response,
    incremental_alter_configs_response,
};
use kafka_protocol::protocol::StrBytes;
use silt_config::{PropertyKind, TOPIC_PROPERTIES, TopicProperty, all_keys};

use super::str_bytes;
use super::topics::{SOURCE_DEFAULT, SOURCE_STATIC_BROKER, SOURCE_TOPIC};
use crate::node::Node;
use crate::protocol::error_code::{ErrorCode, for_topic};
use crate::security::Caller;
use crate::security::acl::Operation;
use crate::topics::TopicError;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// Config types of DescribeConfigs v3+.
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_LIST: i8 = 7;

/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

const BROKER_STATIC: &str = "broker settings are static in silt: set them in the config file, SILT_* variables or flags, and restart";

pub(super) fn describe(
    node: &Node,
    request: DescribeConfigsRequest,
    version: i16,
    caller: &Caller,
) -> DescribeConfigsResponse {
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let wanted = |name: &str| {
                resource
                    .configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
            };
            if let Err((code, message)) = authorize(
                caller,
                resource.resource_type,
                &resource.resource_name,
                Operation::DescribeConfigs,
            ) {
                return result.with_error_code(code).with_error_message(message);
            }
            match resource.resource_type {
                RESOURCE_TOPIC => {
                    let Some(topic) = node.topics.get(resource.resource_name.as_str()) else {
                        return result
                            .with_error_code(ErrorCode::UnknownTopicOrPartition.code())
                            .with_error_message(Some(str_bytes(&format!(
                                "topic '{}' does not exist",
                                resource.resource_name
                            ))));
                    };
                    let config = topic.config();
                    let overrides = topic.overrides();
                    let configs = TOPIC_PROPERTIES
                        .iter()
                        .filter(|p| wanted(p.name))
                        .map(|p| {
                            let value = config.value_of(p.name).map(|v| str_bytes(&v));
                            let source = if overrides.contains_key(p.name) {
                                SOURCE_TOPIC
                            } else {
                                SOURCE_DEFAULT
                            };
                            let mut entry = DescribeConfigsResourceResult::default()
                                .with_name(str_bytes(p.name))
                                .with_value(value.clone())
                                .with_read_only(p.create_only)
                                .with_config_source(source)
                                .with_is_sensitive(false)
                                .with_config_type(config_type(p));
                            if request.include_synonyms {
                                entry.synonyms = vec![
                                    DescribeConfigsSynonym::default()
                                        .with_name(str_bytes(p.name))
                                        .with_value(value)
                                        .with_source(source),
                                ];
                            }
                            if request.include_documentation && version >= 3 {
                                entry.documentation = Some(str_bytes(p.doc));
                            }
                            entry
                        })
                        .collect();
                    result.with_configs(configs)
                }
                RESOURCE_BROKER => {
                    let name = resource.resource_name.as_str();
                    if !name.is_empty() && name != node.config.node_id.to_string() {
                        return result
                            .with_error_code(ErrorCode::InvalidRequest.code())
                            .with_error_message(Some(str_bytes(&format!(
                                "this is broker {}, not {name}",
                                node.config.node_id
                            ))));
                    }
                    let configs = all_keys()
                        .filter(|(key, _)| wanted(key))
                        .map(|(key, doc)| {
                            let sensitive = SECRET_KEYS.contains(&key);
                            let value = if sensitive {
                                None
                            } else {
                                node.config.value_of(key).map(|v| str_bytes(&v))
                            };
                            let mut entry = DescribeConfigsResourceResult::default()
                                .with_name(str_bytes(key))
                                .with_value(value)
                                .with_is_sensitive(sensitive)
                                .with_read_only(true)
                                .with_config_source(SOURCE_STATIC_BROKER)
                                .with_config_type(TYPE_STRING);
                            if request.include_documentation && version >= 3 {
                                entry.documentation = Some(str_bytes(doc));
                            }
                            entry
                        })
                        .collect();
                    result.with_configs(configs)
                }
                other => result
                    .with_error_code(ErrorCode::InvalidRequest.code())
                    .with_error_message(Some(str_bytes(&format!(
                        "resource type {other} is not supported"
                    )))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn config_type(property: &TopicProperty) -> i8 {
    match (property.name, property.kind) {
        ("cleanup.policy", _) => TYPE_LIST,
        (_, PropertyKind::Boolean) => TYPE_BOOLEAN,
        (_, PropertyKind::Int) => TYPE_INT,
        (_, PropertyKind::Long) => TYPE_LONG,
        _ => TYPE_STRING,
    }
}

/// The outcome of altering one resource: error code and message.
type Outcome = (i16, Option<StrBytes>);

fn failed(error: &TopicError) -> Outcome {
    (for_topic(error).code(), Some(str_bytes(&error.to_string())))
}

/// Node settings whose values DescribeConfigs never shows (Kafka's sensitive configs).
const SECRET_KEYS: &[&str] = &["bootstrap_user", "admin_api_token"];

/// DESCRIBE_CONFIGS or ALTER_CONFIGS on the topic, or on the cluster for a broker.
fn authorize(
    caller: &Caller,
    resource_type: i8,
    name: &StrBytes,
    operation: Operation,
) -> Result<(), Outcome> {
    match resource_type {
        RESOURCE_TOPIC if !caller.topic(operation, name.as_str()) => Err((
            ErrorCode::TopicAuthorizationFailed.code(),
            Some(str_bytes(&format!(
                "{} on topic '{name}' is not allowed",
                operation.name()
            ))),
        )),
        RESOURCE_BROKER if !caller.cluster(operation) => Err((
            ErrorCode::ClusterAuthorizationFailed.code(),
            Some(str_bytes(&format!(
                "{} on the cluster is not allowed",
                operation.name()
            ))),
        )),
        _ => Ok(()),
    }
}

fn check_resource(
    node: &Node,
    caller: &Caller,
    resource_type: i8,
    name: &StrBytes,
) -> Result<(), Outcome> {
    authorize(caller, resource_type, name, Operation::AlterConfigs)?;
    match resource_type {
        RESOURCE_TOPIC if node.topics.get(name.as_str()).is_some() => Ok(()),
        RESOURCE_TOPIC => Err((
            ErrorCode::UnknownTopicOrPartition.code(),
            Some(str_bytes(&format!("topic '{name}' does not exist"))),
        )),
        RESOURCE_BROKER => Err((
            ErrorCode::InvalidRequest.code(),
            Some(str_bytes(BROKER_STATIC)),
        )),
        other => Err((
            ErrorCode::InvalidRequest.code(),
            Some(str_bytes(&format!(
                "resource type {other} is not supported"
            ))),
        )),
    }
}

/// AlterConfigs: the given properties replace all of the topic's overrides.
pub(super) async fn alter(
    node: &Node,
    request: AlterConfigsRequest,
    caller: &Caller,
) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let outcome = match check_resource(
            node,
            caller,
            resource.resource_type,
            &resource.resource_name,
        ) {
            Err(outcome) => outcome,
            Ok(()) => {
                let overrides: BTreeMap<String, String> = resource
                    .configs
                    .iter()
                    .filter_map(|c| {
                        c.value
                            .as_ref()
                            .map(|v| (c.name.to_string(), v.to_string()))
                    })
                    .collect();
                let name = resource.resource_name.as_str();
                match node
                    .set_topic_overrides(name, overrides, request.validate_only)
                    .await
                {
                    Ok(()) => (0, None),
                    Err(e) => failed(&e),
                }
            }
        };
        responses.push(
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name)
                .with_error_code(outcome.0)
                .with_error_message(outcome.1),
        );
    }
    AlterConfigsResponse::default().with_responses(responses)
}

/// IncrementalAlterConfigs: SET, DELETE, APPEND and SUBTRACT on the topic's overrides.
pub(crate) async fn incremental_alter(
    node: &Node,
    request: IncrementalAlterConfigsRequest,
    caller: &Caller,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let outcome = match check_resource(
            node,
            caller,
            resource.resource_type,
            &resource.resource_name,
        ) {
            Err(outcome) => outcome,
            Ok(()) => {
                let name = resource.resource_name.as_str();
                let topic = node.topics.get(name).expect("checked above");
                let mut overrides = topic.overrides();
                let mut error = None;
                for change in &resource.configs {
                    if let Err(e) = apply(
                        &mut overrides,
                        change.name.as_str(),
                        change.config_operation,
                        change.value.as_deref(),
                    ) {
                        error = Some(e);
                        break;
                    }
                }
                match error {
                    Some(e) => failed(&e),
                    None => match node
                        .set_topic_overrides(name, overrides, request.validate_only)
                        .await
                    {
                        Ok(()) => (0, None),
                        Err(e) => failed(&e),
                    },
                }
            }
        };
        responses.push(
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name)
                .with_error_code(outcome.0)
                .with_error_message(outcome.1),
        );
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

fn apply(
    overrides: &mut BTreeMap<String, String>,
    name: &str,
    operation: i8,
    value: Option<&str>,
) -> Result<(), TopicError> {
    let property = TopicProperty::find(name).ok_or_else(|| {
        TopicError::Config(TopicProperty::validate(name, "").expect_err("unknown property"))
    })?;
    let key = property.name.to_string();
    match operation {
        OP_SET => {
            let value = value
                .ok_or_else(|| TopicError::Unsupported(format!("SET of {key} needs a value")))?;
            let (_, value) = TopicProperty::validate(name, value)?;
            overrides.insert(key, value);
        }
        OP_DELETE => {
            overrides.remove(&key);
        }
        OP_APPEND | OP_SUBTRACT => {
            if key != "cleanup.policy" {
                return Err(TopicError::Unsupported(format!(
                    "{key} is not a list; APPEND and SUBTRACT need one"
                )));
            }
            let current = overrides
                .get(&key)
                .cloned()
                .unwrap_or_else(|| "delete".to_string());
            let mut items: Vec<String> = current
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            let given: Vec<&str> = value
                .unwrap_or_default()
                .split(',')
                .filter(|s| !s.is_empty())
                .collect();
            if operation == OP_APPEND {
                for item in given {
                    if !items.iter().any(|i| i == item) {
                        items.push(item.to_string());
                    }
                }
            } else {
                items.retain(|i| !given.contains(&i.as_str()));
            }
            let (_, value) = TopicProperty::validate(name, &items.join(","))?;
            overrides.insert(key, value);
        }
        other => {
            return Err(TopicError::Unsupported(format!(
                "unknown config operation {other}"
            )));
        }
    }
    Ok(())
}
