//! The transaction APIs a producer calls on its coordinator: AddPartitionsToTxn (v0-3, one
//! transaction per request) and EndTxn. InitProducerId with a transactional id is in
//! `producer_id`; the state machine and the markers are in [`crate::txn`].

use std::sync::Arc;

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, EndTxnRequest, EndTxnResponse,
};

use crate::node::Node;
use crate::protocol::error_code::ErrorCode;
use crate::txn::coordinator;

pub(super) async fn add_partitions(
    node: &Arc<Node>,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let id = request.v3_and_below_transactional_id.0.to_string();
    let mut wanted = Vec::new();
    let mut unknown = Vec::new();
    for topic in &request.v3_and_below_topics {
        let name = topic.name.0.to_string();
        let count = node.topics.get(&name).map_or(0, |t| t.partition_count());
        for &partition in &topic.partitions {
            if partition < 0 || partition >= count {
                unknown.push((name.clone(), partition));
            } else {
                wanted.push((name.clone(), partition));
            }
        }
    }
    // As Kafka answers: the unknown partitions fail, the others were not attempted.
    let outcome = if unknown.is_empty() {
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

pub(super) async fn end(node: &Arc<Node>, request: EndTxnRequest) -> EndTxnResponse {
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
