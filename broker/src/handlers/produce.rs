//! Produce: one batch per partition, appended as the client sent it.
//!
//! The batches of a request are queued to their partitions' writers before this returns, so
//! requests pipelined on a connection are appended in order (an idempotent producer with five
//! requests in flight relies on that). The response future then waits for each append: after
//! the write for acks=1, after the fsync for acks=-1. acks=0 gets no response at all. A
//! partition refused for want of leadership names its leader (KIP-951, v10+).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse, ResponseKind};
use silt_index::batch::BatchHeader;

use super::{Handled, leader_hint, respond, str_bytes};
use crate::log::{AppendError, AppendTicket, Appended, Durability};
use crate::metrics::Metrics;
use crate::node::Node;
use crate::partition::PartitionView;
use crate::protocol::error_code::{ErrorCode, for_append};
use crate::security::Caller;
use crate::security::acl::Operation;

/// The wait for acknowledgements when a request names no timeout.
const DEFAULT_PRODUCE_TIMEOUT: Duration = Duration::from_secs(30);

/// What became of one partition's batch at queueing time.
enum Queued {
    Ticket(AppendTicket, u64),
    Failed(ErrorCode, Option<String>),
}

pub(super) async fn handle(
    node: &Arc<Node>,
    request: ProduceRequest,
    version: i16,
    caller: &Caller,
) -> Handled {
    let acks = request.acks;
    // Kafka's rules: WRITE on the transactional id (if any), then WRITE on each topic.
    let txn_denied = request
        .transactional_id
        .as_ref()
        .is_some_and(|id| !caller.txn(Operation::Write, id.as_str()));
    let durability = match acks {
        -1 => Some(Durability::Durable),
        0 | 1 => Some(Durability::Buffered),
        _ => None,
    };
    let mut queued: Vec<(kafka_protocol::messages::TopicName, Vec<(i32, Queued)>)> = Vec::new();
    for topic in request.topic_data {
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        let topic_denied = !txn_denied && !caller.topic(Operation::Write, topic.name.0.as_str());
        for data in topic.partition_data {
            let outcome = match durability {
                _ if txn_denied => {
                    Queued::Failed(ErrorCode::TransactionalIdAuthorizationFailed, None)
                }
                _ if topic_denied => Queued::Failed(ErrorCode::TopicAuthorizationFailed, None),
                None => Queued::Failed(
                    ErrorCode::InvalidRequiredAcks,
                    Some(format!("acks must be -1, 0 or 1, not {acks}")),
                ),
                Some(durability) => {
                    queue(
                        node,
                        topic.name.0.as_str(),
                        data.index,
                        data.records,
                        durability,
                        request.transactional_id.is_some(),
                    )
                    .await
                }
            };
            partitions.push((data.index, outcome));
        }
        queued.push((topic.name, partitions));
    }
    if acks == 0 {
        let failed = queued
            .iter()
            .flat_map(|(_, p)| p)
            .find_map(|(_, q)| match q {
                Queued::Failed(code, message) => {
                    Some(format!("{code}: {}", message.clone().unwrap_or_default()))
                }
                Queued::Ticket(..) => None,
            });
        // With acks=0 the only way to tell the client something failed is to close the
        // connection, as Kafka does.
        return match failed {
            Some(reason) => Handled::Close(format!("acks=0 produce failed: {reason}")),
            None => Handled::NoResponse,
        };
    }
    let node = node.clone();
    let listener = caller.listener().to_string();
    // Kafka's DelayedProduce: what is not acknowledged within the request's timeout is
    // answered REQUEST_TIMED_OUT (the client retries it, as possibly written), never held
    // until the client gives up on the connection (a leader cut off from its followers
    // cannot commit, and a client waits for such answers before it turns to a new leader).
    let timeout = match request.timeout_ms {
        t if t > 0 => Duration::from_millis(t as u64),
        _ => DEFAULT_PRODUCE_TIMEOUT,
    };
    let deadline = tokio::time::Instant::now() + timeout;
    respond(async move {
        let mut responses = Vec::with_capacity(queued.len());
        let mut hinted = Vec::new();
        for (name, partitions) in queued {
            let mut partition_responses = Vec::with_capacity(partitions.len());
            for (index, outcome) in partitions {
                let response = PartitionProduceResponse::default()
                    .with_index(index)
                    .with_base_offset(-1)
                    .with_log_append_time_ms(-1)
                    .with_log_start_offset(-1);
                let mut response = match outcome {
                    Queued::Failed(code, message) => response
                        .with_error_code(code.code())
                        .with_error_message(message.map(|m| str_bytes(&m))),
                    Queued::Ticket(ticket, bytes) => {
                        match tokio::time::timeout_at(deadline, ticket.wait()).await {
                            Ok(Ok(appended)) => {
                                if !appended.duplicate {
                                    Metrics::add(&node.metrics.produce_batches, 1);
                                    Metrics::add(&node.metrics.produce_bytes, bytes);
                                }
                                success(response, appended)
                            }
                            Ok(Err(e)) => failure(response, &e),
                            Err(_) => response
                                .with_error_code(ErrorCode::RequestTimedOut.code())
                                .with_error_message(Some(str_bytes(&format!(
                                    "not acknowledged within the request's timeout ({} ms)",
                                    timeout.as_millis()
                                )))),
                        }
                    }
                };
                if version >= 10
                    && leader_hint::wants_hint(response.error_code)
                    && let Some(claim) = leader_hint::leader_of(&node, name.0.as_str(), index)
                {
                    response.current_leader = LeaderIdAndEpoch::default()
                        .with_leader_id(BrokerId(claim.leader))
                        .with_leader_epoch(claim.epoch);
                    hinted.push(claim.leader);
                }
                partition_responses.push(response);
            }
            responses.push(
                TopicProduceResponse::default()
                    .with_name(name)
                    .with_partition_responses(partition_responses),
            );
        }
        let node_endpoints = leader_hint::endpoints(&node, hinted, &listener)
            .into_iter()
            .map(|(id, (host, port))| {
                NodeEndpoint::default()
                    .with_node_id(BrokerId(id))
                    .with_host(str_bytes(&host))
                    .with_port(port)
            })
            .collect();
        ResponseKind::Produce(
            ProduceResponse::default()
                .with_responses(responses)
                .with_node_endpoints(node_endpoints),
        )
    })
}

async fn queue(
    node: &Node,
    topic: &str,
    partition: i32,
    records: Option<Bytes>,
    durability: Durability,
    transactional: bool,
) -> Queued {
    let view = match PartitionView::find(node, topic, partition) {
        Ok(view) => view,
        Err(code) => return Queued::Failed(code, None),
    };
    let records = records.unwrap_or_default();
    if let Ok(Some(header)) = BatchHeader::parse(&records, u32::MAX) {
        // Produce v3 and later carry exactly one batch per partition.
        if (header.size() as usize) < records.len() {
            return Queued::Failed(
                ErrorCode::InvalidRecord,
                Some(
                    "produce requests v3 and later must hold exactly one record batch per partition"
                        .into(),
                ),
            );
        }
        // A transactional producer's request names its transactional id, and its batches
        // are transactional (what closes them is the coordinator's marker).
        if header.is_transactional() != transactional {
            return Queued::Failed(
                ErrorCode::InvalidRequest,
                Some(if transactional {
                    "a produce request with a transactional id holds a non-transactional batch"
                        .into()
                } else {
                    "a transactional batch in a produce request without a transactional id".into()
                }),
            );
        }
    }
    let bytes = records.len() as u64;
    match view.submit(records, durability).await {
        Ok(ticket) => Queued::Ticket(ticket, bytes),
        Err(refused) => Queued::Failed(refused.code, refused.message),
    }
}

fn success(response: PartitionProduceResponse, appended: Appended) -> PartitionProduceResponse {
    response
        .with_base_offset(appended.base_offset)
        .with_log_append_time_ms(appended.log_append_time)
        .with_log_start_offset(appended.log_start_offset)
}

fn failure(response: PartitionProduceResponse, error: &AppendError) -> PartitionProduceResponse {
    let code = for_append(error);
    tracing::debug!(%error, "produce refused");
    response
        .with_error_code(code.code())
        .with_error_message(Some(str_bytes(&error.to_string())))
}
