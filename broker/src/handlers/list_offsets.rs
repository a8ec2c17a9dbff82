//! ListOffsets: earliest, latest, max timestamp, earliest local, latest tiered, or the first
//! offset at or after a timestamp. Earliest is the archive's start when the archive reaches the
//! local log; lookups by time search the archive's segments before the local ones.

use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::{LEADER_EPOCH, check_leader_epoch, find_partition};
use crate::log::{LogError, PartitionLog};
use crate::node::Node;
use crate::protocol::error_code::{ErrorCode, for_archive, for_log};
use crate::tiering::{ReadFailure, start_offset};
use crate::topics::Partition;

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
    let mut topics = Vec::new();
    for topic in request.topics {
        let mut partitions = Vec::new();
        for p in &topic.partitions {
            partitions.push(
                lookup(
                    &node,
                    topic.name.0.as_str(),
                    p.partition_index,
                    p.current_leader_epoch,
                    p.timestamp,
                    version,
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

/// What a lookup found: an offset and its timestamp (-1 when not a timestamp lookup).
type Found = Option<(i64, i64)>;

async fn lookup(
    node: &Arc<Node>,
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
    let (topic_ref, partition) = match find_partition(node, topic, index) {
        Ok(found) => found,
        Err(code) => return response.with_error_code(code.code()),
    };
    if let Some(code) = check_leader_epoch(current_leader_epoch) {
        return response.with_error_code(code.code());
    }
    if topic_ref.read_replica_of.is_some() {
        let found = replica_lookup(node, &topic_ref, index, timestamp, version).await;
        return answer(response, found, version);
    }
    let log = partition
        .log
        .as_ref()
        .expect("find_partition returns online partitions");
    // The archive, when it is readable and reaches the local log; only the lookups that can
    // answer from it consult it (latest and earliest-local never wait for the bucket).
    let wants_archive = !matches!(timestamp, LATEST | EARLIEST_LOCAL);
    let archive = match node.tiering.as_ref().filter(|_| wants_archive) {
        Some(tiering) => match tiering.readable_root(&topic_ref, index).await {
            Ok(found) => found.map(|(tier, root)| (tiering.clone(), tier, root)),
            Err(e) => {
                tracing::warn!(topic, partition = index, error = %e, "archive manifest unavailable");
                return response.with_error_code(for_archive(ReadFailure::of(&e)).code());
            }
        },
        None => None,
    };
    let start = start_offset(archive.as_ref().map(|(_, _, root)| root.as_ref()), log);
    let archived = archive.as_ref().filter(|_| start < log.log_start_offset());
    let found: Result<Found, ErrorCode> = match timestamp {
        LATEST => Ok(Some((log.high_watermark(), -1))),
        EARLIEST => Ok(Some((start, -1))),
        EARLIEST_LOCAL => Ok(Some((log.log_start_offset(), -1))),
        LATEST_TIERED if version >= 9 => Ok(archive
            .as_ref()
            .map(|(_, _, root)| (root.next_offset - 1, -1))),
        MAX_TIMESTAMP if version >= 7 => {
            let local = local(&partition, |log| log.max_timestamp()).await;
            match (archived, local) {
                (Some((tiering, tier, root)), Ok(local))
                    if local.is_none_or(|(_, ts)| root.max_timestamp > ts) =>
                {
                    tiering
                        .offset_for_timestamp(tier, root, start, root.max_timestamp)
                        .await
                        .map_err(|e| for_archive(ReadFailure::of(&e)))
                        .map(|found| found.or(local))
                }
                (_, local) => local,
            }
        }
        t if t >= 0 => {
            // The oldest match wins: the archive's records come before the local ones.
            let remote = match archived {
                Some((tiering, tier, root)) => tiering
                    .offset_for_timestamp(tier, root, start, t)
                    .await
                    .map_err(|e| for_archive(ReadFailure::of(&e))),
                None => Ok(None),
            };
            match remote {
                Ok(Some(found)) if found.0 < log.log_start_offset() => Ok(Some(found)),
                Ok(_) => local(&partition, move |log| log.offset_for_timestamp(t)).await,
                Err(e) => Err(e),
            }
        }
        _ => Err(ErrorCode::InvalidRequest),
    };
    answer(response, found, version)
}

fn answer(
    response: ListOffsetsPartitionResponse,
    found: Result<Found, ErrorCode>,
    version: i16,
) -> ListOffsetsPartitionResponse {
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
        Err(code) => response.with_error_code(code.code()),
    }
}

/// A lookup on a read replica: everything comes from the source's manifest as followed
/// (timestamps through its time indexes, never a scan).
async fn replica_lookup(
    node: &Arc<Node>,
    topic: &crate::topics::Topic,
    index: i32,
    timestamp: i64,
    version: i16,
) -> Result<Found, ErrorCode> {
    let Some(tiering) = &node.tiering else {
        return Err(ErrorCode::KafkaStorageError);
    };
    let (tier, root) = match tiering.readable_root(topic, index).await {
        Ok(Some((tier, root))) => (Some(tier), Some(root)),
        Ok(None) => (None, None),
        Err(e) => {
            tracing::warn!(topic = %topic.name, partition = index, error = %e, "read replica: source manifest unavailable");
            return Err(for_archive(ReadFailure::of(&e)));
        }
    };
    let (start, end) = root
        .as_ref()
        .map_or((0, 0), |r| (r.start_offset, r.next_offset));
    let max = root.as_ref().map_or(-1, |r| r.max_timestamp);
    let search = |t: i64| async move {
        match (tier.as_ref(), root.as_ref()) {
            (Some(tier), Some(root)) => tiering
                .offset_for_timestamp(tier, root, start, t)
                .await
                .map_err(|e| for_archive(ReadFailure::of(&e))),
            _ => Ok(None),
        }
    };
    match timestamp {
        LATEST => Ok(Some((end, -1))),
        EARLIEST | EARLIEST_LOCAL => Ok(Some((start, -1))),
        LATEST_TIERED if version >= 9 => Ok((end > start).then_some((end - 1, -1))),
        MAX_TIMESTAMP if version >= 7 => {
            if max < 0 {
                Ok(None)
            } else {
                search(max).await
            }
        }
        t if t >= 0 => search(t).await,
        _ => Err(ErrorCode::InvalidRequest),
    }
}

/// A lookup in the local log, on the blocking pool (it reads segment files).
async fn local(
    partition: &Arc<Partition>,
    lookup: impl FnOnce(&PartitionLog) -> Result<Found, LogError> + Send + 'static,
) -> Result<Found, ErrorCode> {
    let partition = partition.clone();
    let answer = tokio::task::spawn_blocking(move || {
        let log = partition
            .log
            .as_ref()
            .expect("find_partition returns online partitions");
        lookup(log).map_err(|e| {
            tracing::warn!(error = %e, "offset lookup failed");
            for_log(&e)
        })
    })
    .await;
    answer.unwrap_or(Err(ErrorCode::UnknownServerError))
}
