//! ListOffsets: earliest, latest, max timestamp, earliest local, latest tiered, or the first
//! offset at or after a timestamp; the partition's view answers across tiers.

use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::node::Node;
use crate::partition::{OffsetSpec, PartitionView, check_leader_epoch};
use crate::protocol::error_code::ErrorCode;
use crate::security::Caller;
use crate::security::acl::Operation;

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
    caller: &Caller,
) -> ListOffsetsResponse {
    let mut topics = Vec::new();
    for topic in request.topics {
        let mut partitions = Vec::new();
        let denied = !caller.topic(Operation::Describe, &topic.name.0);
        for p in &topic.partitions {
            if denied {
                partitions.push(
                    ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1)
                        .with_leader_epoch(-1)
                        .with_error_code(ErrorCode::TopicAuthorizationFailed.code()),
                );
                continue;
            }
            partitions.push(
                lookup(
                    &node,
                    topic.name.0.as_str(),
                    p.partition_index,
                    p.current_leader_epoch,
                    p.timestamp,
                    version,
                    request.isolation_level,
                )
                .await,
            );
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

async fn lookup(
    node: &Arc<Node>,
    topic: &str,
    index: i32,
    current_leader_epoch: i32,
    timestamp: i64,
    version: i16,
    isolation_level: i8,
) -> ListOffsetsPartitionResponse {
    let response = ListOffsetsPartitionResponse::default()
        .with_partition_index(index)
        .with_timestamp(-1)
        .with_offset(-1)
        .with_leader_epoch(-1);
    let view = match PartitionView::find_leader(node, topic, index) {
        Ok(view) => view,
        Err(code) => return response.with_error_code(code.code()),
    };
    if let Some(code) = check_leader_epoch(current_leader_epoch, view.leader_epoch()) {
        return response.with_error_code(code.code());
    }
    if !view.high_watermark_settled() {
        // KIP-207: the client asks again in a moment, rather than see offsets go back.
        return response.with_error_code(ErrorCode::OffsetNotAvailable.code());
    }
    let spec = match timestamp {
        LATEST if isolation_level == 1 => OffsetSpec::LatestStable,
        LATEST => OffsetSpec::Latest,
        EARLIEST => OffsetSpec::Earliest,
        MAX_TIMESTAMP => OffsetSpec::MaxTimestamp,
        EARLIEST_LOCAL => OffsetSpec::EarliestLocal,
        LATEST_TIERED => OffsetSpec::LatestTiered,
        t => OffsetSpec::Timestamp(t),
    };
    match view.list_offset(spec, version).await {
        Ok(Some((offset, timestamp))) => {
            // The leader epoch field exists from v4; older versions must leave it unset.
            let epoch = if version >= 4 {
                view.leader_epoch()
            } else {
                -1
            };
            response
                .with_offset(offset)
                .with_timestamp(timestamp)
                .with_leader_epoch(epoch)
        }
        Ok(None) => response,
        Err(code) => response.with_error_code(code.code()),
    }
}
