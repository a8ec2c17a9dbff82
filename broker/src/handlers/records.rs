//! DeleteRecords: move partitions' start offsets forward.

use std::sync::Arc;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::find_partition;
use crate::node::Node;
use crate::protocol::error_code::for_log;

pub(super) async fn delete(
    node: Arc<Node>,
    request: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let answer = tokio::task::spawn_blocking(move || {
        let topics = request
            .topics
            .into_iter()
            .map(|topic| {
                let partitions = topic
                    .partitions
                    .iter()
                    .map(|p| {
                        let result = DeleteRecordsPartitionResult::default()
                            .with_partition_index(p.partition_index)
                            .with_low_watermark(-1);
                        let partition =
                            match find_partition(&node, topic.name.0.as_str(), p.partition_index) {
                                Ok((_, partition)) => partition,
                                Err(code) => return result.with_error_code(code.code()),
                            };
                        let log = partition
                            .log
                            .as_ref()
                            .expect("find_partition returns online partitions");
                        match log.delete_records(p.offset) {
                            Ok(start) => result.with_low_watermark(start),
                            Err(e) => result.with_error_code(for_log(&e).code()),
                        }
                    })
                    .collect();
                DeleteRecordsTopicResult::default()
                    .with_name(topic.name)
                    .with_partitions(partitions)
            })
            .collect();
        DeleteRecordsResponse::default().with_topics(topics)
    })
    .await;
    answer.unwrap_or_else(|_| DeleteRecordsResponse::default())
}
