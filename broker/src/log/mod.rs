//! The local log of a partition: segments on disk, group commit, recovery, retention.
//!
//! # Layout of a partition directory
//!
//! ```text
//! <data>/topics/<topic>/<partition>/
//!   00000000000000000000.log         record batches, as produced, offsets patched
//!   00000000000000000000.index       sparse offset index (silt_index::offset_index)
//!   00000000000000000000.timeindex   sparse time index (silt_index::time_index)
//!   00000000000000052000.log         the active segment, preallocated with fallocate
//!   00000000000000052000.snapshot    idempotent-producer state as of offset 52000 (JSON)
//!   log_start_offset                 set by DeleteRecords when it cuts inside a segment
//!   clean_shutdown                   written on clean close; lets the next open skip a scan
//!   compaction_checkpoint            offset below which a compacted topic's log is compacted
//!   00000000000000000000.log.cleaned a compaction rewrite being written (removed on open)
//!   00000000000000000000.log.swap    a compaction rewrite committed (put in place on open)
//!   00000000000000000000.log.deleted a segment compaction replaced, being deleted
//! ```
//!
//! # Pieces
//!
//! - [`storage`]: the file-system seam ([`DiskStorage`], and [`sim::SimStorage`] for power-cut
//!   tests).
//! - [`segment`]: one segment's file, readable extent and indexes.
//! - [`recovery`]: opening a directory: indexes checked or rebuilt, torn tails truncated.
//! - [`appender`]: the one writer per partition; group commit.
//! - [`partition_log`]: [`PartitionLog`], the handle everything else uses: append, read,
//!   timestamp lookup, retention, DeleteRecords.
//! - [`compactor`]: compaction of a compacted topic's sealed segments, crash-safe swaps.
//! - [`producer_state`]: the sans-io idempotent-producer table.
//! - [`raft`]: a replicated log, whose segments are its Raft log (one entry per batch).

pub mod appender;
pub mod compactor;
pub mod partition_log;
pub mod producer_state;
pub mod raft;
mod raft_writer;
pub mod recovery;
pub mod segment;
pub mod sim;
pub mod storage;

use std::path::PathBuf;

use silt_config::{NodeConfig, TimestampType, TopicConfig};

pub use appender::{AppendError, Appended, Durability};
pub use partition_log::{AppendTicket, Isolation, PartitionLog, ReadSlice};
pub use segment::SegmentInfo;
pub use storage::{DiskStorage, Storage, StorageFile};

/// A source of wall-clock time in milliseconds; tests substitute their own.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }
}

/// What the log needs to know of its topic's properties and the node's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`.
    pub segment_bytes: u64,
    /// `segment.ms`.
    pub segment_ms: i64,
    /// `index.interval.bytes`.
    pub index_interval_bytes: u32,
    /// `max.message.bytes`.
    pub max_message_bytes: u32,
    /// `message.timestamp.type`.
    pub timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms`.
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`.
    pub timestamp_after_max_ms: i64,
    /// Preallocation step of segment files (0: none).
    pub preallocate_bytes: u64,
    /// Most bytes in one group commit.
    pub group_bytes_max: u64,
    /// Delay before acks=0/1 data is fsynced.
    pub flush_interval_ms: u64,
    /// How the log is compacted; `None` unless `cleanup.policy` has `compact`.
    pub compaction: Option<compactor::CompactionConfig>,
}

impl LogConfig {
    /// The log settings of a topic on this node.
    pub fn new(topic: &TopicConfig, node: &NodeConfig) -> LogConfig {
        LogConfig {
            segment_bytes: topic.segment_bytes,
            segment_ms: topic.segment_ms,
            index_interval_bytes: topic.index_interval_bytes,
            max_message_bytes: topic.max_message_bytes,
            timestamp_type: topic.message_timestamp_type,
            timestamp_before_max_ms: topic.timestamp_before_max_ms,
            timestamp_after_max_ms: topic.timestamp_after_max_ms,
            preallocate_bytes: node.segment_preallocate_bytes,
            group_bytes_max: node.append_group_bytes_max,
            flush_interval_ms: node.flush_interval_ms,
            compaction: topic
                .cleanup_policy
                .compacts()
                .then_some(compactor::CompactionConfig {
                    delete_retention_ms: topic.delete_retention_ms,
                    min_lag_ms: topic.min_compaction_lag_ms,
                    max_lag_ms: topic.max_compaction_lag_ms,
                    min_dirty_ratio: topic.min_cleanable_dirty_ratio,
                }),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig::new(
            &TopicConfig::resolve(&Default::default(), &Default::default())
                .expect("defaults are valid"),
            &NodeConfig::default(),
        )
    }
}

/// A failure of the log (other than refusing an append; see [`AppendError`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// A file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file holds bytes that cannot be ours as they are: the partition stops rather than
    /// serve them.
    #[error("corrupt {} at byte {position}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where the bad bytes start.
        position: u64,
        /// What is wrong.
        reason: String,
    },
    /// A file in the partition directory was not written by silt.
    #[error("{} is not a silt log file: {reason}", path.display())]
    Foreign {
        /// The file.
        path: PathBuf,
        /// Why it is not ours.
        reason: String,
    },
    /// The offset is outside `[log_start, high_watermark]`.
    #[error("offset {requested} is out of range [{log_start}, {high_watermark}]")]
    OffsetOutOfRange {
        /// Offset asked for.
        requested: i64,
        /// First offset held.
        log_start: i64,
        /// Offset after the last readable record.
        high_watermark: i64,
    },
    /// The log was closed, or stopped after a storage failure.
    #[error("partition log is closed")]
    Closed,
}

impl LogError {
    pub(crate) fn io(op: &'static str, path: PathBuf, source: std::io::Error) -> LogError {
        LogError::Io { op, path, source }
    }

    pub(crate) fn corrupt(path: PathBuf, position: u64, reason: String) -> LogError {
        LogError::Corrupt {
            path,
            position,
            reason,
        }
    }
}
