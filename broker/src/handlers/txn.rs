//! The transaction APIs a producer calls on its coordinator: AddPartitionsToTxn (v0-3, one
//! transaction per request) and EndTxn; and the operators': ListTransactions (of this
//! coordinator, as Kafka's brokers answer) and DescribeTransactions. InitProducerId with a
//! transactional id is in `producer_id`; the state machine and the markers are in
//! [`crate::txn`].

use std::sync::Arc;

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::{self, TopicData};
use kafka_protocol::messages::list_transactions_response;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, DescribeTransactionsRequest, DescribeTransactionsResponse,
    EndTxnRequest, EndTxnResponse, ListTransactionsRequest, ListTransactionsResponse, ProducerId,
    TransactionalId, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};

use super::{str_bytes, topic_name};

use crate::node::Node;
use crate::protocol::error_code::ErrorCode;
use crate::security::Caller;
use crate::security::acl::{Operation, ResourceType};
use crate::txn::coordinator;

pub(super) async fn add_partitions(
    node: &Arc<Node>,
    request: AddPartitionsToTxnRequest,
    caller: &Caller,
) -> AddPartitionsToTxnResponse {
    let id = request.v3_and_below_transactional_id.0.to_string();
    let txn_denied = !caller.txn(Operation::Write, &id);
    let mut wanted = Vec::new();
    let mut unknown = Vec::new();
    let mut denied = Vec::new();
    for topic in &request.v3_and_below_topics {
        let name = topic.name.0.to_string();
        if !txn_denied && !caller.topic(Operation::Write, &name) {
            denied.push(name);
            continue;
        }
        let count = node.topics.get(&name).map_or(0, |t| t.partition_count());
        for &partition in &topic.partitions {
            if partition < 0 || partition >= count {
                unknown.push((name.clone(), partition));
            } else {
                wanted.push((name.clone(), partition));
            }
        }
    }
    // As Kafka answers: the unknown or forbidden partitions fail, the others were not
    // attempted.
    let outcome = if txn_denied {
        Err(ErrorCode::TransactionalIdAuthorizationFailed)
    } else if unknown.is_empty() && denied.is_empty() {
        coordinator::add_partitions(
            node,
            &id,
            request.v3_and_below_producer_id.0,
            request.v3_and_below_producer_epoch,
            &wanted,
        )
        .await
    } else {
        Err(ErrorCode::OperationNotAttempted)
    };
    let code_of = |topic: &str, partition: i32| -> i16 {
        if denied.iter().any(|t| t == topic) {
            return ErrorCode::TopicAuthorizationFailed.code();
        }
        if unknown.iter().any(|(t, p)| t == topic && *p == partition) {
            return ErrorCode::UnknownTopicOrPartition.code();
        }
        outcome.err().map_or(0, |e| e.code())
    };
    let results = request
        .v3_and_below_topics
        .iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            AddPartitionsToTxnTopicResult::default()
                .with_name(topic.name.clone())
                .with_results_by_partition(
                    topic
                        .partitions
                        .iter()
                        .map(|&p| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(p)
                                .with_partition_error_code(code_of(&name, p))
                        })
                        .collect(),
                )
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
}

pub(super) async fn add_offsets(
    node: &Arc<Node>,
    request: AddOffsetsToTxnRequest,
    caller: &Caller,
) -> AddOffsetsToTxnResponse {
    if !caller.txn(Operation::Write, &request.transactional_id.0) {
        return AddOffsetsToTxnResponse::default()
            .with_error_code(ErrorCode::TransactionalIdAuthorizationFailed.code());
    }
    if !caller.group(Operation::Read, &request.group_id.0) {
        return AddOffsetsToTxnResponse::default()
            .with_error_code(ErrorCode::GroupAuthorizationFailed.code());
    }
    let outcome = coordinator::add_offsets(
        node,
        &request.transactional_id.0,
        request.producer_id.0,
        request.producer_epoch,
        &request.group_id.0,
    )
    .await;
    AddOffsetsToTxnResponse::default().with_error_code(outcome.err().map_or(0, |e| e.code()))
}

/// TxnOffsetCommit, on the group's coordinator: the offsets are pending until the
/// transaction's marker reaches the group (see [`coordinator::add_offsets`]).
pub(super) async fn offset_commit(
    node: &Arc<Node>,
    request: TxnOffsetCommitRequest,
    caller: &Caller,
) -> TxnOffsetCommitResponse {
    let now = node.clock.now_ms();
    let refused = if !caller.txn(Operation::Write, &request.transactional_id.0) {
        Some(ErrorCode::TransactionalIdAuthorizationFailed)
    } else if !caller.group(Operation::Read, &request.group_id.0) {
        Some(ErrorCode::GroupAuthorizationFailed)
    } else {
        None
    };
    let denied: Vec<&str> = request
        .topics
        .iter()
        .filter(|t| refused.is_none() && !caller.topic(Operation::Read, &t.name.0))
        .map(|t| t.name.0.as_str())
        .collect();
    let mut offsets = Vec::new();
    for topic in &request.topics {
        if denied.contains(&topic.name.0.as_str()) {
            continue;
        }
        for p in &topic.partitions {
            offsets.push(crate::group::OffsetCommit {
                topic: topic.name.0.to_string(),
                partition: p.partition_index,
                committed: crate::group::state::CommittedOffset {
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p
                        .committed_metadata
                        .as_ref()
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                    commit_timestamp_ms: now,
                },
            });
        }
    }
    let outcome = match refused {
        Some(code) => Err(code),
        None if offsets.is_empty() => Ok(()),
        None => {
            node.groups
                .commit_in_txn(&request.group_id.0, request.producer_id.0, offsets)
                .await
        }
    };
    let code = outcome.err().map_or(0, |e| e.code());
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let code = if denied.contains(&topic.name.0.as_str()) {
                ErrorCode::TopicAuthorizationFailed.code()
            } else {
                code
            };
            TxnOffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(
                    topic
                        .partitions
                        .iter()
                        .map(|p| {
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

pub(super) async fn end(
    node: &Arc<Node>,
    request: EndTxnRequest,
    caller: &Caller,
) -> EndTxnResponse {
    if !caller.txn(Operation::Write, &request.transactional_id.0) {
        return EndTxnResponse::default()
            .with_error_code(ErrorCode::TransactionalIdAuthorizationFailed.code())
            .with_producer_id(request.producer_id)
            .with_producer_epoch(request.producer_epoch);
    }
    let outcome = coordinator::end_txn(
        node,
        &request.transactional_id.0,
        request.producer_id.0,
        request.producer_epoch,
        request.committed,
    )
    .await;
    EndTxnResponse::default()
        .with_error_code(outcome.err().map_or(0, |e| e.code()))
        .with_producer_id(request.producer_id)
        .with_producer_epoch(request.producer_epoch)
}

pub(super) fn list(
    node: &Node,
    request: ListTransactionsRequest,
    caller: &Caller,
) -> ListTransactionsResponse {
    let states: Vec<String> = request
        .state_filters
        .iter()
        .map(|s| s.to_string())
        .collect();
    let known = [
        "Empty",
        "Ongoing",
        "PrepareCommit",
        "PrepareAbort",
        "CompleteCommit",
        "CompleteAbort",
    ];
    let unknown: Vec<_> = request
        .state_filters
        .iter()
        .filter(|s| !known.contains(&s.as_str()))
        .cloned()
        .collect();
    let now = node.clock.now_ms();
    let transactions = coordinator::list(node)
        .into_iter()
        .filter(|(id, _)| caller.sees(Operation::Describe, ResourceType::TransactionalId, id))
        .filter(|(_, meta)| {
            states.is_empty() || states.iter().any(|s| s == meta.status.kafka_name())
        })
        .filter(|(_, meta)| {
            request.producer_id_filters.is_empty()
                || request
                    .producer_id_filters
                    .contains(&ProducerId(meta.producer_id))
        })
        // KIP-994: only transactions running longer than this (ms), when set.
        .filter(|(_, meta)| {
            request.duration_filter < 0
                || (meta.started_ms >= 0 && now - meta.started_ms > request.duration_filter)
        })
        .map(|(id, meta)| {
            list_transactions_response::TransactionState::default()
                .with_transactional_id(TransactionalId(str_bytes(&id)))
                .with_producer_id(ProducerId(meta.producer_id))
                .with_transaction_state(str_bytes(meta.status.kafka_name()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(transactions)
}

pub(super) fn describe(
    node: &Node,
    request: DescribeTransactionsRequest,
    caller: &Caller,
) -> DescribeTransactionsResponse {
    let states = request
        .transactional_ids
        .iter()
        .map(|id| {
            let state = describe_transactions_response::TransactionState::default()
                .with_transactional_id(id.clone())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
                .with_transaction_start_time_ms(-1);
            if !caller.txn(Operation::Describe, &id.0) {
                return state.with_error_code(ErrorCode::TransactionalIdAuthorizationFailed.code());
            }
            if let Err(code) = node.groups.coordinates(&id.0) {
                return state.with_error_code(code.code());
            }
            let Some(meta) = node.groups.txn(&id.0) else {
                return state.with_error_code(ErrorCode::TransactionalIdNotFound.code());
            };
            let mut topics: Vec<TopicData> = Vec::new();
            for (topic, partition) in &meta.partitions {
                match topics.last_mut() {
                    Some(last) if last.topic.0.as_str() == topic => {
                        last.partitions.push(*partition)
                    }
                    _ => topics.push(
                        TopicData::default()
                            .with_topic(topic_name(topic))
                            .with_partitions(vec![*partition]),
                    ),
                }
            }
            state
                .with_transaction_state(str_bytes(meta.status.kafka_name()))
                .with_transaction_timeout_ms(meta.timeout_ms)
                .with_transaction_start_time_ms(meta.started_ms)
                .with_producer_id(ProducerId(meta.producer_id))
                .with_producer_epoch(meta.producer_epoch)
                .with_topics(topics)
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}
