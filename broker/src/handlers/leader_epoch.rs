//! OffsetForLeaderEpoch: with one node there is one epoch, 0, which ends at the log end.

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::{LEADER_EPOCH, check_leader_epoch, find_partition};
use crate::node::Node;
use crate::protocol::error_code::code;

pub(super) fn handle(
    node: &Node,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let result = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    let (topic_ref, log) =
                        match find_partition(node, topic.topic.0.as_str(), p.partition) {
                            Ok(found) => found,
                            Err(e) => return result.with_error_code(e.code()),
                        };
                    if let Some(e) = check_leader_epoch(p.current_leader_epoch) {
                        return result.with_error_code(code(Some(e)));
                    }
                    let log = log
                        .log
                        .as_ref()
                        .expect("find_partition returns online partitions");
                    if p.leader_epoch == LEADER_EPOCH {
                        // The epoch asked for is the current one: it ends at the log end (a
                        // read replica's: the end it serves of its source's archive).
                        let end = if topic_ref.read_replica_of.is_some() {
                            node.tiering
                                .as_ref()
                                .and_then(|t| t.get(topic_ref.id, p.partition))
                                .and_then(|tier| tier.root())
                                .map_or(0, |root| root.next_offset)
                        } else {
                            log.high_watermark()
                        };
                        result.with_leader_epoch(LEADER_EPOCH).with_end_offset(end)
                    } else {
                        // Later epochs are unknown; earlier ones never existed. Kafka answers
                        // both with UNDEFINED_EPOCH and UNDEFINED_EPOCH_OFFSET.
                        result
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
