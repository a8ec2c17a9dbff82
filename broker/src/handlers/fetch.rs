//! Fetch: whole batches from each partition, long-polling until `min_bytes` or `max_wait_ms`.
//!
//! Limits, as Kafka applies them: each partition gives at most `partition_max_bytes`, the
//! response at most `max_bytes` (capped by the node's `fetch_bytes_max`), except that the first
//! batch of the first partition with data is returned whole even if larger, so a consumer never
//! sticks on a big batch (KIP-74). Fetch sessions (KIP-227) are answered sessionless: session id
//! 0 tells the client to send full requests, which librdkafka and the Java client accept.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use uuid::Uuid;

use super::{check_leader_epoch, find_partition, topic_name};
use crate::metrics::Metrics;
use crate::node::Node;
use crate::protocol::error_code::{ErrorCode, for_log};
use crate::topics::Partition;

/// One partition of the request, resolved.
struct Target {
    topic: TopicName,
    topic_id: Uuid,
    partition_index: i32,
    fetch_offset: i64,
    partition_max_bytes: i32,
    found: Result<Arc<Partition>, ErrorCode>,
}

/// What a read gave for one partition.
struct Outcome {
    error: Option<ErrorCode>,
    high_watermark: i64,
    log_start_offset: i64,
    records: Bytes,
}

pub(super) async fn handle(node: Arc<Node>, request: FetchRequest, version: i16) -> FetchResponse {
    if request.session_id != 0 {
        // We never hand out sessions, so an incremental fetch names one we do not have.
        return FetchResponse::default().with_error_code(ErrorCode::FetchSessionIdNotFound.code());
    }
    let uses_ids = version >= 13;
    let mut targets = Vec::new();
    for topic in &request.topics {
        let by_id = uses_ids.then(|| node.topics.get_by_id(topic.topic_id));
        let name = match &by_id {
            Some(Some(t)) => topic_name(&t.name),
            Some(None) => TopicName::default(),
            None => topic.topic.clone(),
        };
        for p in &topic.partitions {
            let found = match &by_id {
                Some(None) => Err(ErrorCode::UnknownTopicId),
                _ => find_partition(&node, name.0.as_str(), p.partition)
                    .map(|(_, partition)| partition),
            };
            let found = match check_leader_epoch(p.current_leader_epoch) {
                Some(e) => Err(e),
                None => found,
            };
            targets.push(Target {
                topic: name.clone(),
                topic_id: topic.topic_id,
                partition_index: p.partition,
                fetch_offset: p.fetch_offset,
                partition_max_bytes: p.partition_max_bytes,
                found,
            });
        }
    }
    let max_bytes = (request.max_bytes.max(0) as u32).min(node.config.fetch_bytes_max);
    let min_bytes = request.min_bytes.max(0) as u64;
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let targets = Arc::new(targets);
    let outcomes = loop {
        // Subscribe before reading, so an append between the read and the wait still wakes us.
        let mut watches: Vec<_> = targets
            .iter()
            .filter_map(|t| t.found.as_ref().ok())
            .filter_map(|p| p.log.as_ref().ok().map(|log| log.subscribe()))
            .collect();
        for watch in &mut watches {
            watch.borrow_and_update();
        }
        let reading = targets.clone();
        let outcomes =
            match tokio::task::spawn_blocking(move || read_all(&reading, max_bytes)).await {
                Ok(outcomes) => outcomes,
                Err(_) => {
                    return FetchResponse::default()
                        .with_error_code(ErrorCode::UnknownServerError.code());
                }
            };
        let bytes: u64 = outcomes.iter().map(|o| o.records.len() as u64).sum();
        let errors = outcomes.iter().any(|o| o.error.is_some());
        if bytes >= min_bytes
            || errors
            || watches.is_empty()
            || tokio::time::Instant::now() >= deadline
        {
            break outcomes;
        }
        let changed =
            futures::future::select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            // Timed out with nothing new: answer with what we read (the empty partitions).
            break outcomes;
        }
    };
    let sent: u64 = outcomes.iter().map(|o| o.records.len() as u64).sum();
    Metrics::add(&node.metrics.fetch_bytes, sent);
    build(&targets, outcomes, uses_ids)
}

/// Reads every target (blocking), honouring the byte limits.
fn read_all(targets: &[Target], max_bytes: u32) -> Vec<Outcome> {
    let mut budget = max_bytes;
    let mut first_with_data = true;
    targets
        .iter()
        .map(|target| {
            let mut outcome = Outcome {
                error: None,
                high_watermark: -1,
                log_start_offset: -1,
                records: Bytes::new(),
            };
            let partition = match &target.found {
                Ok(partition) => partition,
                Err(code) => {
                    outcome.error = Some(*code);
                    return outcome;
                }
            };
            let log = partition
                .log
                .as_ref()
                .expect("find_partition returns online partitions");
            outcome.high_watermark = log.high_watermark();
            outcome.log_start_offset = log.log_start_offset();
            if budget == 0 && !first_with_data {
                return outcome;
            }
            let limit = (target.partition_max_bytes.max(0) as u32).min(budget);
            match log.read(target.fetch_offset, limit) {
                Ok(slice) => {
                    outcome.high_watermark = slice.high_watermark;
                    outcome.log_start_offset = slice.log_start_offset;
                    let len = slice.records.len() as u32;
                    if len > budget && !first_with_data {
                        // Only the first partition with data may exceed the budget.
                        return outcome;
                    }
                    if len > 0 {
                        first_with_data = false;
                    }
                    budget = budget.saturating_sub(len);
                    outcome.records = slice.records;
                }
                Err(e) => outcome.error = Some(for_log(&e)),
            }
            outcome
        })
        .collect()
}

fn build(targets: &[Target], outcomes: Vec<Outcome>, uses_ids: bool) -> FetchResponse {
    let mut responses: Vec<FetchableTopicResponse> = Vec::new();
    for (target, outcome) in targets.iter().zip(outcomes) {
        let partition = PartitionData::default()
            .with_partition_index(target.partition_index)
            .with_error_code(outcome.error.map_or(0, |e| e.code()))
            .with_high_watermark(outcome.high_watermark)
            .with_last_stable_offset(outcome.high_watermark)
            .with_log_start_offset(outcome.log_start_offset)
            .with_preferred_read_replica(kafka_protocol::messages::BrokerId(-1))
            .with_records(Some(outcome.records));
        let same_topic = responses.last().is_some_and(|last| {
            if uses_ids {
                last.topic_id == target.topic_id
            } else {
                last.topic == target.topic
            }
        });
        if !same_topic {
            let mut topic = FetchableTopicResponse::default();
            if uses_ids {
                topic.topic_id = target.topic_id;
            } else {
                topic.topic = target.topic.clone();
            }
            responses.push(topic);
        }
        responses
            .last_mut()
            .expect("pushed above")
            .partitions
            .push(partition);
    }
    FetchResponse::default().with_responses(responses)
}
