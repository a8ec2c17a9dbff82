//! The write side of the REST Proxy v3 API: create and delete topics, change their configs,
//! produce records. Each acts through the Kafka handler of the same operation (CreateTopics,
//! DeleteTopics, IncrementalAlterConfigs) or the partition's produce seam, as the admin API's
//! caller, so the checks, ACLs and errors are a Kafka client's.
//!
//! ```text
//! POST   /v3/clusters/{cluster_id}/topics                               {"topic_name", "partitions_count", "replication_factor", "configs": [{"name","value"}]}
//! DELETE /v3/clusters/{cluster_id}/topics/{topic_name}
//! PUT    /v3/clusters/{cluster_id}/topics/{topic_name}/configs/{name}   {"value"}
//! DELETE /v3/clusters/{cluster_id}/topics/{topic_name}/configs/{name}   back to the default
//! POST   /v3/clusters/{cluster_id}/topics/{topic_name}/configs:alter    {"data": [{"name","value","operation"}]}
//! POST   /v3/clusters/{cluster_id}/topics/{topic_name}/records          {"partition_id","key","value","headers","timestamp"}
//! ```

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes as Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    CreateTopicsRequest, DeleteTopicsRequest, IncrementalAlterConfigsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::{Value, json};
use silt_index::batch::Codec;
use silt_index::record::{NewRecord, encode_batch};

use super::admin_archive::{AdminPrincipal, admin_caller};
use super::rest_v3::{Answer, Urls, check_cluster, error, topic_data, topic_in};
use crate::log::Durability;
use crate::node::Node;
use crate::partition::PartitionView;
use crate::protocol::ErrorCode;
use crate::security::Caller;

fn now_ms() -> i64 {
    use crate::log::Clock;
    crate::log::SystemClock.now_ms()
}

/// IncrementalAlterConfigs' operations and resource type.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const RESOURCE_TOPIC: i8 = 2;

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// The HTTP answer to a Kafka error code (none when the code is 0).
fn kafka_error(code: i16, message: Option<&StrBytes>) -> Option<Answer> {
    if code == 0 {
        return None;
    }
    let error = ErrorCode::try_from_code(code);
    let status = match error {
        Some(
            ErrorCode::TopicAuthorizationFailed
            | ErrorCode::ClusterAuthorizationFailed
            | ErrorCode::GroupAuthorizationFailed,
        ) => StatusCode::FORBIDDEN,
        Some(ErrorCode::UnknownTopicOrPartition | ErrorCode::UnknownTopicId) => {
            StatusCode::NOT_FOUND
        }
        Some(ErrorCode::TopicAlreadyExists) => StatusCode::CONFLICT,
        Some(
            ErrorCode::NotLeaderOrFollower
            | ErrorCode::NotController
            | ErrorCode::KafkaStorageError
            | ErrorCode::RequestTimedOut
            | ErrorCode::NotEnoughReplicas
            | ErrorCode::NotEnoughReplicasAfterAppend,
        ) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    let name = error.map_or_else(|| format!("error {code}"), |e| format!("{e:?}"));
    let message = message.map_or_else(|| name.clone(), |m| format!("{name}: {m}"));
    Some(super::rest_v3::error(status, message))
}

/// The Kafka caller the admin API's caller acts as, or 403.
fn caller_of(
    node: &Node,
    principal: Option<&axum::Extension<AdminPrincipal>>,
) -> Result<Caller, Answer> {
    admin_caller(node, principal.map(|p| &p.0)).map_err(|why| error(StatusCode::FORBIDDEN, why))
}

/// A JSON body, or 400 naming what is wrong with it.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Answer> {
    serde_json::from_slice(body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("request body: {e}")))
}

#[derive(Debug, serde::Deserialize)]
struct NameValue {
    name: String,
    value: Option<String>,
    /// `SET` (the default) or `DELETE`, for `configs:alter`.
    operation: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
struct CreateTopic {
    topic_name: String,
    partitions_count: Option<i32>,
    replication_factor: Option<i16>,
    #[serde(default)]
    configs: Vec<NameValue>,
    #[serde(default)]
    validate_only: bool,
}

pub(super) async fn create_topic(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    principal: Option<axum::Extension<AdminPrincipal>>,
    Path(cluster_id): Path<String>,
    body: Body,
) -> Answer {
    let run = async {
        check_cluster(&node, &cluster_id)?;
        let caller = caller_of(&node, principal.as_ref())?;
        let asked: CreateTopic = parse(&body)?;
        let topic = CreatableTopic::default()
            .with_name(TopicName(s(&asked.topic_name)))
            .with_num_partitions(asked.partitions_count.unwrap_or(-1))
            .with_replication_factor(asked.replication_factor.unwrap_or(-1))
            .with_configs(
                asked
                    .configs
                    .iter()
                    .map(|c| {
                        CreatableTopicConfig::default()
                            .with_name(s(&c.name))
                            .with_value(c.value.as_deref().map(s))
                    })
                    .collect(),
            );
        let request = CreateTopicsRequest::default()
            .with_topics(vec![topic])
            .with_validate_only(asked.validate_only);
        let response = crate::handlers::topics::create(&node, request, 7, &caller).await;
        if let Some(result) = response.topics.first()
            && let Some(failed) = kafka_error(result.error_code, result.error_message.as_ref())
        {
            return Err(failed);
        }
        if asked.validate_only {
            return Ok((
                StatusCode::OK,
                Json(json!({ "validated": asked.topic_name })),
            ));
        }
        let created = node.topics.get(&asked.topic_name).ok_or_else(|| {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "topic '{}' was created but is not known here yet",
                    asked.topic_name
                ),
            )
        })?;
        Ok((
            StatusCode::CREATED,
            Json(topic_data(&node, &Urls::new(&node, &headers), &created)),
        ))
    };
    run.await.unwrap_or_else(|e| e)
}

pub(super) async fn delete_topic(
    State(node): State<Arc<Node>>,
    principal: Option<axum::Extension<AdminPrincipal>>,
    Path((cluster_id, name)): Path<(String, String)>,
) -> Answer {
    let run = async {
        topic_in(&node, &cluster_id, principal.as_ref(), &name)?;
        let caller = caller_of(&node, principal.as_ref())?;
        let request = DeleteTopicsRequest::default().with_topics(vec![
            DeleteTopicState::default().with_name(Some(TopicName(s(&name)))),
        ]);
        let response = crate::handlers::topics::delete(&node, request, &caller).await;
        if let Some(result) = response.responses.first()
            && let Some(failed) = kafka_error(result.error_code, result.error_message.as_ref())
        {
            return Err(failed);
        }
        Ok(no_content())
    };
    run.await.unwrap_or_else(|e| e)
}

fn no_content() -> Answer {
    (StatusCode::NO_CONTENT, Json(Value::Null))
}

/// Applies config changes to one topic through IncrementalAlterConfigs.
async fn alter(
    node: &Node,
    caller: &Caller,
    topic: &str,
    changes: Vec<AlterableConfig>,
    validate_only: bool,
) -> Result<(), Answer> {
    let request = IncrementalAlterConfigsRequest::default()
        .with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(s(topic))
                .with_configs(changes),
        ])
        .with_validate_only(validate_only);
    let response = crate::handlers::configs::incremental_alter(node, request, caller).await;
    match response.responses.first() {
        Some(result) => match kafka_error(result.error_code, result.error_message.as_ref()) {
            Some(failed) => Err(failed),
            None => Ok(()),
        },
        None => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "IncrementalAlterConfigs answered nothing",
        )),
    }
}

#[derive(Debug, serde::Deserialize)]
struct ConfigValue {
    value: String,
}

pub(super) async fn set_config(
    State(node): State<Arc<Node>>,
    principal: Option<axum::Extension<AdminPrincipal>>,
    Path((cluster_id, name, config)): Path<(String, String, String)>,
    body: Body,
) -> Answer {
    let run = async {
        topic_in(&node, &cluster_id, principal.as_ref(), &name)?;
        let caller = caller_of(&node, principal.as_ref())?;
        let asked: ConfigValue = parse(&body)?;
        let change = AlterableConfig::default()
            .with_name(s(&config))
            .with_config_operation(OP_SET)
            .with_value(Some(s(&asked.value)));
        alter(&node, &caller, &name, vec![change], false).await?;
        Ok(no_content())
    };
    run.await.unwrap_or_else(|e| e)
}

pub(super) async fn reset_config(
    State(node): State<Arc<Node>>,
    principal: Option<axum::Extension<AdminPrincipal>>,
    Path((cluster_id, name, config)): Path<(String, String, String)>,
) -> Answer {
    let run = async {
        topic_in(&node, &cluster_id, principal.as_ref(), &name)?;
        let caller = caller_of(&node, principal.as_ref())?;
        let change = AlterableConfig::default()
            .with_name(s(&config))
            .with_config_operation(OP_DELETE);
        alter(&node, &caller, &name, vec![change], false).await?;
        Ok(no_content())
    };
    run.await.unwrap_or_else(|e| e)
}

#[derive(Debug, serde::Deserialize)]
struct AlterBatch {
    data: Vec<NameValue>,
    #[serde(default)]
    validate_only: bool,
}

pub(super) async fn alter_configs(
    State(node): State<Arc<Node>>,
    principal: Option<axum::Extension<AdminPrincipal>>,
    Path((cluster_id, name)): Path<(String, String)>,
    body: Body,
) -> Answer {
    let run = async {
        topic_in(&node, &cluster_id, principal.as_ref(), &name)?;
        let caller = caller_of(&node, principal.as_ref())?;
        let asked: AlterBatch = parse(&body)?;
        let changes = asked
            .data
            .iter()
            .map(|c| {
                let operation = match c.operation.as_deref().map(str::to_ascii_uppercase) {
                    None => OP_SET,
                    Some(op) if op == "SET" => OP_SET,
                    Some(op) if op == "DELETE" => OP_DELETE,
                    Some(op) => {
                        return Err(error(
                            StatusCode::BAD_REQUEST,
                            format!("config '{}': operation '{op}' is not SET or DELETE", c.name),
                        ));
                    }
                };
                if operation == OP_SET && c.value.is_none() {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        format!("config '{}': SET needs a value", c.name),
                    ));
                }
                Ok(AlterableConfig::default()
                    .with_name(s(&c.name))
                    .with_config_operation(operation)
                    .with_value(c.value.as_deref().map(s)))
            })
            .collect::<Result<Vec<_>, Answer>>()?;
        alter(&node, &caller, &name, changes, asked.validate_only).await?;
        Ok(no_content())
    };
    run.await.unwrap_or_else(|e| e)
}

/// A key or value of a produce request: `{"type": "JSON"|"STRING"|"BINARY", "data": ...}`
/// (BINARY data is base64). Without a type, JSON.
#[derive(Debug, serde::Deserialize)]
struct Data {
    #[serde(rename = "type")]
    kind: Option<String>,
    data: Value,
}

impl Data {
    /// The bytes, and the type named in the answer.
    fn bytes(&self, what: &str) -> Result<(Bytes, &'static str), String> {
        match self.kind.as_deref().map(str::to_ascii_uppercase).as_deref() {
            None | Some("JSON") => serde_json::to_vec(&self.data)
                .map(|b| (Bytes::from(b), "JSON"))
                .map_err(|e| format!("{what}: {e}")),
            Some("STRING") => match &self.data {
                Value::String(text) => Ok((Bytes::from(text.clone().into_bytes()), "STRING")),
                _ => Err(format!("{what}: STRING data must be a JSON string")),
            },
            Some("BINARY") => match &self.data {
                Value::String(text) => base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map(|b| (Bytes::from(b), "BINARY"))
                    .map_err(|e| format!("{what}: BINARY data is not base64: {e}")),
                _ => Err(format!("{what}: BINARY data must be a base64 string")),
            },
            Some(other) => Err(format!(
                "{what}: type '{other}' is not JSON, STRING or BINARY (schema registry types are not served)"
            )),
        }
    }
}

#[derive(Debug, serde::Deserialize)]
struct Header {
    name: String,
    /// base64, as the REST Proxy has it; absent for a null value.
    value: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
struct ProduceRecord {
    partition_id: Option<i32>,
    #[serde(default)]
    headers: Vec<Header>,
    key: Option<Data>,
    value: Option<Data>,
    /// Milliseconds since the epoch, or an RFC 3339 time.
    timestamp: Option<Value>,
}

pub(super) async fn produce(
    State(node): State<Arc<Node>>,
    principal: Option<axum::Extension<AdminPrincipal>>,
    Path((cluster_id, name)): Path<(String, String)>,
    body: Body,
) -> Answer {
    let topic = match topic_in(&node, &cluster_id, principal.as_ref(), &name) {
        Ok(topic) => topic,
        Err(e) => return e,
    };
    let caller = match caller_of(&node, principal.as_ref()) {
        Ok(caller) => caller,
        Err(e) => return e,
    };
    if !caller.topic(crate::security::acl::Operation::Write, &name) {
        return error(
            StatusCode::FORBIDDEN,
            format!("{} may not write to topic '{name}'", caller.principal()),
        );
    }
    // One record, or several one after another (the REST Proxy's streaming mode): an answer
    // per record, in order.
    let mut answers = Vec::new();
    for record in serde_json::Deserializer::from_slice(&body).into_iter::<ProduceRecord>() {
        let answer = match record {
            Ok(record) => produce_one(&node, &topic, &cluster_id, record).await,
            Err(e) => json!({ "error_code": 400, "message": format!("request body: {e}") }),
        };
        answers.push(answer);
    }
    match answers.len() {
        0 => error(StatusCode::BAD_REQUEST, "request body: no record"),
        1 => {
            let answer = answers.remove(0);
            let status = answer["error_code"]
                .as_u64()
                .and_then(|c| StatusCode::from_u16(c as u16).ok())
                .unwrap_or(StatusCode::OK);
            (status, Json(answer))
        }
        _ => (StatusCode::OK, Json(Value::Array(answers))),
    }
}

/// Appends one record, durably (as acks=all would), and says where it went.
async fn produce_one(
    node: &Node,
    topic: &crate::topics::Topic,
    cluster_id: &str,
    record: ProduceRecord,
) -> Value {
    let failed = |status: StatusCode, message: String| json!({ "error_code": status.as_u16(), "message": message });
    let key = match record.key.as_ref().map(|k| k.bytes("key")).transpose() {
        Ok(key) => key,
        Err(why) => return failed(StatusCode::BAD_REQUEST, why),
    };
    let value = match record.value.as_ref().map(|v| v.bytes("value")).transpose() {
        Ok(value) => value,
        Err(why) => return failed(StatusCode::BAD_REQUEST, why),
    };
    let timestamp = match record.timestamp.as_ref().map(timestamp_ms).transpose() {
        Ok(t) => t.unwrap_or_else(now_ms),
        Err(why) => return failed(StatusCode::BAD_REQUEST, why),
    };
    let mut headers = Vec::with_capacity(record.headers.len());
    for h in &record.headers {
        let value = match h
            .value
            .as_deref()
            .map(|v| base64::engine::general_purpose::STANDARD.decode(v))
        {
            None => None,
            Some(Ok(v)) => Some(Bytes::from(v)),
            Some(Err(e)) => {
                return failed(
                    StatusCode::BAD_REQUEST,
                    format!("header '{}': value is not base64: {e}", h.name),
                );
            }
        };
        headers.push((Bytes::from(h.name.clone().into_bytes()), value));
    }
    let partitions = topic.partition_count();
    let partition = match (record.partition_id, &key) {
        (Some(p), _) if !(0..partitions).contains(&p) => {
            return failed(
                StatusCode::NOT_FOUND,
                format!("topic '{}' has no partition {p}", topic.name),
            );
        }
        (Some(p), _) => p,
        // Where the Java client's default partitioner puts the key.
        (None, Some((key, _))) => silt_index::keys::murmur2_partition(key, partitions),
        (None, None) => (now_ms().rem_euclid(i64::from(partitions.max(1)))) as i32,
    };
    let new = NewRecord {
        key: key.as_ref().map(|(k, _)| k.clone()),
        value: value.as_ref().map(|(v, _)| v.clone()),
        headers,
        timestamp,
    };
    let batch = Bytes::from(encode_batch(0, &[new], Codec::None, None));
    let view = match PartitionView::find_leader(node, &topic.name, partition) {
        Ok(view) => view,
        Err(code) => {
            let leader = PartitionView::find(node, &topic.name, partition)
                .ok()
                .and_then(|v| v.leader());
            return failed(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{code:?}: this broker does not lead {}/{partition}{}",
                    topic.name,
                    leader.map_or_else(String::new, |l| format!(" (broker {l} does)"))
                ),
            );
        }
    };
    let appended = match view.submit(batch, Durability::Durable).await {
        Ok(ticket) => ticket.wait().await.map_err(|e| {
            (
                crate::protocol::error_code::for_append(&e),
                Some(e.to_string()),
            )
        }),
        Err(refused) => Err((refused.code, refused.message)),
    };
    match appended {
        Ok(appended) => json!({
            "error_code": 200,
            "cluster_id": cluster_id,
            "topic_name": topic.name,
            "partition_id": partition,
            "offset": appended.base_offset,
            "timestamp": rfc3339(if appended.log_append_time >= 0 { appended.log_append_time } else { timestamp }),
            "key": key.map(|(k, kind)| json!({ "type": kind, "size": k.len() })),
            "value": value.map(|(v, kind)| json!({ "type": kind, "size": v.len() })),
        }),
        Err((code, message)) => {
            let answer = kafka_error(code.code(), message.map(|m| s(&m)).as_ref());
            answer.map_or_else(
                || failed(StatusCode::INTERNAL_SERVER_ERROR, format!("{code:?}")),
                |(_, Json(body))| body,
            )
        }
    }
}

/// A timestamp given as milliseconds or as an RFC 3339 time (`2026-12-02T06:00:00Z`, with
/// optional fractional seconds and offset).
fn timestamp_ms(value: &Value) -> Result<i64, String> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("timestamp {n} is not a whole number of milliseconds")),
        Value::String(text) => {
            parse_rfc3339(text).ok_or_else(|| format!("timestamp '{text}' is not an RFC 3339 time"))
        }
        other => Err(format!("timestamp {other} is not a number or a string")),
    }
}

/// Milliseconds since the epoch of an RFC 3339 time.
pub(super) fn parse_rfc3339(text: &str) -> Option<i64> {
    let (date, time) = text.split_once(['T', 't', ' '])?;
    let mut d = date.splitn(3, '-');
    let (y, m, day): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    let (clock, offset_min) = if let Some(clock) = time.strip_suffix(['Z', 'z']) {
        (clock, 0)
    } else {
        let at = time.rfind(['+', '-'])?;
        let (clock, zone) = time.split_at(at);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let (h, mi) = zone[1..].split_once(':')?;
        (
            clock,
            sign * (h.parse::<i64>().ok()? * 60 + mi.parse::<i64>().ok()?),
        )
    };
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut t = hms.splitn(3, ':');
    let (h, mi, sec): (i64, i64, i64) = (
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let millis: i64 = format!("{fraction:0<3}").get(..3)?.parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let yy = if m <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((((days * 24 + h) * 60 + mi - offset_min) * 60 + sec) * 1000 + millis)
}

/// An RFC 3339 UTC time with milliseconds.
pub(super) fn rfc3339(ms: i64) -> String {
    let (y, m, d) = silt_archiver::parquet::civil_date(ms);
    let in_day = ms.rem_euclid(86_400_000);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        for ms in [0, 1_764_655_200_123, 951_782_400_000, -86_400_000 + 5] {
            assert_eq!(parse_rfc3339(&rfc3339(ms)), Some(ms), "{}", rfc3339(ms));
        }
        assert_eq!(
            parse_rfc3339("2026-12-02T08:00:00+02:00"),
            parse_rfc3339("2026-12-02T06:00:00Z")
        );
        assert_eq!(
            parse_rfc3339("2026-12-02T06:00:00.5Z").map(|t| t % 1000),
            Some(500)
        );
        for bad in [
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-12-02",
            "2026-12-02T06:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
