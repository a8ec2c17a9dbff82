//! ListOffsets: earliest, latest, max timestamp, earliest local, latest tiered, or the first
//! offset at or after a timestamp.

use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::{LEADER_EPOCH, check_leader_epoch, find_partition};
use crate::node::Node;
use crate::protocol::error_code::{ErrorCode, for_log};

/// Kafka's special timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

pub(super) async fn handle(
    node: Arc<Node>,
    request: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    // Timestamp lookups read segment files: do the whole request on the blocking pool.
    let answer = tokio::task::spawn_blocking(move || {
        let topics = request
            .topics
            .into_iter()
            .map(|topic| {
                let partitions = topic
                    .partitions
                    .iter()
                    .map(|p| {
                        lookup(
                            &node,
                            topic.name.0.as_str(),
                            p.partition_index,
                            p.current_leader_epoch,
                            p.timestamp,
                            version,
                        )
                    })
                    .collect();
                ListOffsetsTopicResponse::default()
                    .with_name(topic.name)
                    .with_partitions(partitions)
            })
            .collect();
        ListOffsetsResponse::default().with_topics(topics)
    })
    .await;
    answer.unwrap_or_else(|_| ListOffsetsResponse::default())
}

fn lookup(
    node: &Node,
    topic: &str,
    index: i32,
    current_leader_epoch: i32,
    timestamp: i64,
    version: i16,
) -> ListOffsetsPartitionResponse {
    let response = ListOffsetsPartitionResponse::default()
        .with_partition_index(index)
        .with_timestamp(-1)
        .with_offset(-1)
        .with_leader_epoch(-1);
    let partition = match find_partition(node, topic, index) {
        Ok((_, partition)) => partition,
        Err(code) => return response.with_error_code(code.code()),
    };
    if let Some(code) = check_leader_epoch(current_leader_epoch) {
        return response.with_error_code(code.code());
    }
    let log = partition
        .log
        .as_ref()
        .expect("find_partition returns online partitions");
    let found = match timestamp {
        LATEST => Ok(Some((log.high_watermark(), -1))),
        EARLIEST | EARLIEST_LOCAL => Ok(Some((log.log_start_offset(), -1))),
        MAX_TIMESTAMP if version >= 7 => log.max_timestamp(),
        // Nothing is tiered without an archive.
        LATEST_TIERED if version >= 9 => Ok(None),
        t if t >= 0 => log.offset_for_timestamp(t),
        _ => return response.with_error_code(ErrorCode::InvalidRequest.code()),
    };
    match found {
        Ok(Some((offset, timestamp))) => {
            // The leader epoch field exists from v4; older versions must leave it unset.
            let epoch = if version >= 4 { LEADER_EPOCH } else { -1 };
            response
                .with_offset(offset)
                .with_timestamp(timestamp)
                .with_leader_epoch(epoch)
        }
        Ok(None) => response,
        Err(e) => {
            tracing::warn!(topic, partition = index, error = %e, "offset lookup failed");
            response.with_error_code(for_log(&e).code())
        }
    }
}
