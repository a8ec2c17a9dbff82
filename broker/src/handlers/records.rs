//! DeleteRecords: move partitions' start offsets forward, in the local log and the archive.

use std::sync::Arc;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use crate::node::Node;
use crate::partition::PartitionView;
use crate::protocol::ErrorCode;
use crate::security::Caller;
use crate::security::acl::Operation;

pub(super) async fn delete(
    node: Arc<Node>,
    request: DeleteRecordsRequest,
    caller: &Caller,
) -> DeleteRecordsResponse {
    let mut topics = Vec::new();
    for topic in request.topics {
        let mut partitions = Vec::new();
        let denied = !caller.topic(Operation::Delete, &topic.name.0);
        for p in &topic.partitions {
            let result = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            let deleted =
                match PartitionView::find_leader(&node, topic.name.0.as_str(), p.partition_index) {
                    _ if denied => Err(ErrorCode::TopicAuthorizationFailed),
                    Ok(view) => view.delete_records(p.offset).await,
                    Err(code) => Err(code),
                };
            partitions.push(match deleted {
                Ok(low_watermark) => result.with_low_watermark(low_watermark),
                Err(code) => result.with_error_code(code.code()),
            });
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
