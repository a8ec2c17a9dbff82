//! DeleteRecords: move partitions' start offsets forward, in the local log and the archive.

use std::sync::Arc;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::find_partition;
use crate::node::Node;
use crate::protocol::error_code::{ErrorCode, for_log};
use crate::tiering::start_offset;

pub(super) async fn delete(
    node: Arc<Node>,
    request: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let mut topics = Vec::new();
    for topic in request.topics {
        let mut partitions = Vec::new();
        for p in &topic.partitions {
            let result = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            let (topic_ref, partition) =
                match find_partition(&node, topic.name.0.as_str(), p.partition_index) {
                    Ok(found) => found,
                    Err(code) => {
                        partitions.push(result.with_error_code(code.code()));
                        continue;
                    }
                };
            if topic_ref.read_replica_of.is_some() {
                // A read replica's records belong to its source cluster.
                partitions.push(result.with_error_code(ErrorCode::PolicyViolation.code()));
                continue;
            }
            let (offset, deleting) = (p.offset, partition.clone());
            let deleted = tokio::task::spawn_blocking(move || {
                deleting
                    .log
                    .as_ref()
                    .expect("find_partition returns online partitions")
                    .delete_records(offset)
            })
            .await;
            let result = match deleted {
                Ok(Ok(_)) => {
                    // The low watermark across tiers: the archiver moves the archive's start
                    // to the same offset on its next pass, and reads honour it already.
                    let root = match &node.tiering {
                        Some(tiering) => tiering
                            .readable_root(&topic_ref, p.partition_index)
                            .await
                            .ok()
                            .flatten()
                            .map(|(_, root)| root),
                        None => None,
                    };
                    let log = partition
                        .log
                        .as_ref()
                        .expect("find_partition returns online partitions");
                    result.with_low_watermark(start_offset(root.as_deref(), log))
                }
                Ok(Err(e)) => result.with_error_code(for_log(&e).code()),
                Err(_) => result.with_error_code(ErrorCode::UnknownServerError.code()),
            };
            partitions.push(result);
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
