//! OffsetForLeaderEpoch: where a leader epoch ends, so a client can tell whether its position
//! is still on the log after a leader change.

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use crate::node::Node;
use crate::partition::{PartitionView, check_leader_epoch};
use crate::protocol::ErrorCode;
use crate::security::Caller;
use crate::security::acl::Operation;

pub(super) fn handle(
    node: &Node,
    request: OffsetForLeaderEpochRequest,
    caller: &Caller,
) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let denied = !caller.topic(Operation::Describe, &topic.topic.0);
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let result = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    if denied {
                        return result.with_error_code(ErrorCode::TopicAuthorizationFailed.code());
                    }
                    let view =
                        match PartitionView::find_leader(node, topic.topic.0.as_str(), p.partition)
                        {
                            Ok(view) => view,
                            Err(e) => return result.with_error_code(e.code()),
                        };
                    if let Some(e) = check_leader_epoch(p.current_leader_epoch, view.leader_epoch())
                    {
                        return result.with_error_code(e.code());
                    }
                    let (epoch, end) = view.epoch_end_offset(p.leader_epoch);
                    result.with_leader_epoch(epoch).with_end_offset(end)
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
