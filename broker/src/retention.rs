//! Retention: which segments to delete (a pure policy), and the task that applies it.
//!
//! Kafka's rules: a segment is past `retention.ms` when its largest timestamp is older than
//! that; `retention.bytes` caps the partition's size. Segments go oldest first and only while
//! the next one also qualifies, so the log stays contiguous. The active segment is rolled when
//! all of it is past `retention.ms`, so an idle topic does shrink.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::log::SegmentInfo;
use crate::node::Node;

/// How many of the oldest sealed segments retention deletes.
///
/// `segments` are oldest first, the last being the active one (never counted).
pub fn expired_segments(
    segments: &[SegmentInfo],
    now_ms: i64,
    retention_ms: i64,
    retention_bytes: i64,
) -> usize {
    let sealed = segments.iter().filter(|s| s.sealed).count();
    let mut total: i64 = segments.iter().map(|s| s.size_bytes as i64).sum();
    let mut count = 0;
    for segment in segments.iter().take(sealed) {
        let by_time =
            retention_ms >= 0 && segment.max_timestamp < now_ms.saturating_sub(retention_ms);
        let by_size = retention_bytes >= 0 && total > retention_bytes;
        if !(by_time || by_size) {
            break;
        }
        total -= segment.size_bytes as i64;
        count += 1;
    }
    count
}

/// How many of the oldest sealed segments local retention (`local.retention.*`) deletes:
/// only those ending at or before `archived_next` (their upload and manifest are confirmed).
pub fn local_expired(
    segments: &[SegmentInfo],
    now_ms: i64,
    local_retention_ms: i64,
    local_retention_bytes: i64,
    archived_next: i64,
) -> usize {
    let archived = segments
        .iter()
        .take_while(|s| s.sealed && s.next_offset <= archived_next)
        .count();
    expired_segments(segments, now_ms, local_retention_ms, local_retention_bytes).min(archived)
}

/// True when the active segment holds data and all of it is past `retention.ms`.
pub fn active_expired(segments: &[SegmentInfo], now_ms: i64, retention_ms: i64) -> bool {
    segments.last().is_some_and(|active| {
        !active.sealed
            && active.size_bytes > 0
            && retention_ms >= 0
            && active.max_timestamp < now_ms.saturating_sub(retention_ms)
    })
}

/// Applies retention to every partition every `retention_check_interval_ms`, until `stop`.
pub(crate) async fn run(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    let interval = Duration::from_millis(node.config.retention_check_interval_ms);
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        apply(&node).await;
    }
}

async fn apply(node: &Node) {
    let now = node.clock.now_ms();
    for topic in node.topics.all() {
        let config = topic.config();
        // A topic that only compacts keeps every key's newest record whatever its age or the
        // partition's size; local retention (of what the archive holds) still applies.
        let deletes = config.cleanup_policy.deletes();
        let (retention_ms, retention_bytes) = if deletes {
            (config.retention_ms, config.retention_bytes)
        } else {
            (-1, -1)
        };
        for partition in topic.partitions() {
            let Some(log) = partition.log() else { continue };
            if active_expired(&log.segments(), now, retention_ms)
                && let Err(e) = log.roll_if_older(0).await
            {
                tracing::warn!(topic = %topic.name, partition = partition.index, error = %e, "retention roll failed");
            }
            let segments = log.segments();
            let mut count = expired_segments(&segments, now, retention_ms, retention_bytes);
            let tiering = node
                .tiering
                .as_ref()
                .filter(|_| config.remote_storage_enable);
            if let Some(tiering) = tiering {
                // Local retention may only delete what the archive holds (confirmed uploads).
                // On a follower, tiering keeps this from the archive pointer the partition's
                // log carries.
                let archived = tiering
                    .archived_next(topic.id, partition.index)
                    .unwrap_or(i64::MIN);
                count = count.max(local_expired(
                    &segments,
                    now,
                    config.local_retention_ms,
                    config.local_retention_bytes,
                    archived,
                ));
            }
            if count == 0 {
                continue;
            }
            let keep_from = segments[count - 1].next_offset;
            let Ok(replica) = &partition.replica else {
                continue;
            };
            match replica.trim(keep_from).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(
                    topic = %topic.name,
                    partition = partition.index,
                    segments = deleted,
                    log_start = log.log_start_offset(),
                    "retention deleted segments"
                ),
                Err(e) => {
                    tracing::warn!(topic = %topic.name, partition = partition.index, error = %e, "retention failed")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(base: i64, size: u64, max_timestamp: i64, sealed: bool) -> SegmentInfo {
        SegmentInfo {
            base_offset: base,
            next_offset: base + 10,
            size_bytes: size,
            first_timestamp: 0,
            max_timestamp,
            sealed,
        }
    }

    #[test]
    fn time_retention_stops_at_the_first_young_segment() {
        let segments = [
            segment(0, 100, 10, true),
            segment(10, 100, 500, true),
            segment(20, 100, 20, true),
            segment(30, 100, 900, false),
        ];
        assert_eq!(
            expired_segments(&segments, 1000, 900, -1),
            1,
            "the third is old but the second is not"
        );
        assert_eq!(
            expired_segments(&segments, 10_000, 900, -1),
            3,
            "the active one is never counted"
        );
        assert_eq!(
            expired_segments(&segments, 1000, -1, -1),
            0,
            "-1 keeps forever"
        );
    }

    #[test]
    fn size_retention_deletes_until_under_the_limit() {
        let segments = [
            segment(0, 100, 0, true),
            segment(10, 100, 0, true),
            segment(20, 100, 0, true),
            segment(30, 50, 0, false),
        ];
        assert_eq!(expired_segments(&segments, 0, -1, 200), 2);
        assert_eq!(expired_segments(&segments, 0, -1, 350), 0);
        assert_eq!(expired_segments(&segments, 0, -1, 0), 3);
    }

    #[test]
    fn local_retention_stops_at_what_is_archived() {
        let segments = [
            segment(0, 100, 0, true),
            segment(10, 100, 0, true),
            segment(20, 100, 0, true),
            segment(30, 50, 0, false),
        ];
        assert_eq!(
            local_expired(&segments, 1000, 10, -1, 20),
            2,
            "only the two archived ones"
        );
        assert_eq!(
            local_expired(&segments, 1000, 10, -1, i64::MIN),
            0,
            "nothing archived, nothing deleted"
        );
        assert_eq!(local_expired(&segments, 1000, -1, 120, 40), 3);
    }

    #[test]
    fn an_idle_expired_active_segment_is_rolled() {
        let segments = [segment(0, 100, 10, false)];
        assert!(active_expired(&segments, 1000, 100));
        assert!(!active_expired(&segments, 1000, -1));
        assert!(!active_expired(&[segment(0, 0, -1, false)], 1000, 100));
    }
}
