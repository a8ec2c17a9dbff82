//! One partition as clients see it: its bounds and its reads, whichever tier holds the data.
//!
//! A [`PartitionView`] answers for a partition of a topic on this node. Behind it are three
//! cases that no handler needs to tell apart:
//!
//! - **local**: a partition log on this node, nothing archived (or the archive is kept out of
//!   reads with `remote.read=false`);
//! - **tiered**: the local log plus the archive, which holds what local retention deleted; a
//!   read below the local log goes to the archive;
//! - **read replica**: a topic that serves another cluster's bucket (`remote.readreplica`); it
//!   has no local data at all, its bounds are those of the source manifest as followed.
//!
//! # Offsets
//!
//! [`Bounds`] names every offset a client asks about, each with one meaning:
//!
//! ```text
//!   log_start        local_start                         high_watermark     log_end
//!   |  archive only  |  local log (also archived, maybe)  |  written, not yet |
//!   |<-------------- readable by consumers -------------->|  durable (or not  |
//!                                                         |  yet replicated)  |
//! ```
//!
//! `log_start` is the first offset any tier serves (the archive's start, or DeleteRecords'
//! start when that is later); `last_stable` is where the earliest open transaction begins
//! (the high watermark when none is): read_committed consumers read below it.

use std::sync::Arc;

use bytes::Bytes;
use silt_archiver::Root;
use tokio::sync::watch;

use crate::log::{
    AppendError, AppendTicket, Durability, Isolation, LogError, PartitionLog, ReadSlice,
};
use crate::node::Node;
use crate::protocol::error_code::{ErrorCode, for_archive, for_log};
use crate::replica::{Acks, LOCAL_EPOCH, Replica};
use crate::tiering::{PartitionTier, ReadFailure, Tiering};
use crate::topics::{Partition, Topic};

/// The offsets of a partition (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// First offset any tier serves.
    pub log_start: i64,
    /// First offset in this node's local log (`log_start` without an archive).
    pub local_start: i64,
    /// Offset after the last record consumers may read.
    pub high_watermark: i64,
    /// Offset below which no transaction is open (the high watermark when none is).
    pub last_stable: i64,
    /// Offset the next append gets.
    pub log_end: i64,
}

impl Bounds {
    /// Bounds of a partition that serves `[start, end)` with nothing in flight.
    fn closed(start: i64, end: i64) -> Bounds {
        Bounds {
            log_start: start,
            local_start: start,
            high_watermark: end,
            last_stable: end,
            log_end: end,
        }
    }
}

/// What ListOffsets asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The high watermark.
    Latest,
    /// The last stable offset (latest, for a read_committed consumer).
    LatestStable,
    /// The first readable offset, across tiers.
    Earliest,
    /// The record with the largest timestamp (KIP-734).
    MaxTimestamp,
    /// The first offset of the local log (KIP-405).
    EarliestLocal,
    /// The last archived offset (KIP-1005).
    LatestTiered,
    /// The first record at or after this timestamp.
    Timestamp(i64),
}

/// An offset and its record's timestamp (-1 when the lookup is not by time).
pub type OffsetAndTimestamp = (i64, i64);

/// Where a read at an offset goes.
#[derive(Debug)]
pub enum Located {
    /// The local log holds it (or answers OffsetOutOfRange). `tiered`: the archive is read as
    /// well, so if local retention moves the local start past the offset before the read, the
    /// read comes back empty instead of out of range and the next fetch goes to the archive.
    Local {
        /// See above.
        tiered: bool,
    },
    /// The archive holds it.
    Archive(ArchiveRead),
    /// A read replica caught up with its source: nothing to read until the watch moves.
    Wait(Bounds, watch::Receiver<i64>),
    /// Nothing to read; answer now with this error (none: an empty answer).
    Answer(Option<ErrorCode>, Bounds),
}

/// A read from the archive, as located.
#[derive(Debug)]
pub struct ArchiveRead {
    /// The partition's tier.
    pub tier: Arc<PartitionTier>,
    /// The manifest root to read through.
    pub root: Arc<Root>,
    /// The partition's bounds.
    pub bounds: Bounds,
}

/// What a local read gave.
#[derive(Debug)]
pub struct LocalRead {
    /// Why nothing was read, if something went wrong.
    pub error: Option<ErrorCode>,
    /// The partition's bounds as of the read.
    pub bounds: Bounds,
    /// Whole batches.
    pub records: Bytes,
    /// For a read_committed read: the aborted transactions among `records`.
    pub aborted: Vec<crate::log::producer_state::AbortedTxn>,
}

/// Why a produce was refused before it was queued.
#[derive(Debug)]
pub struct Refused {
    /// The code to answer with.
    pub code: ErrorCode,
    /// The message, if there is more to say than the code.
    pub message: Option<String>,
}

/// One partition of a topic on this node, as clients see it.
#[derive(Debug, Clone)]
pub struct PartitionView {
    topic: Arc<Topic>,
    partition: Arc<Partition>,
    tiering: Option<Arc<Tiering>>,
}

impl PartitionView {
    /// The online partition `index` of `topic`, or the code to answer with.
    ///
    /// # Errors
    ///
    /// `UNKNOWN_TOPIC_OR_PARTITION`, or `KAFKA_STORAGE_ERROR` for a partition whose log is
    /// offline.
    pub fn find(node: &Node, topic: &str, index: i32) -> Result<PartitionView, ErrorCode> {
        let topic = node
            .topics
            .get(topic)
            .ok_or(ErrorCode::UnknownTopicOrPartition)?;
        let partition = topic
            .partition(index)
            .ok_or(ErrorCode::UnknownTopicOrPartition)?;
        if !partition.hosted {
            // Another broker's: the client's metadata is stale.
            return Err(ErrorCode::NotLeaderOrFollower);
        }
        if partition.replica.is_err() {
            return Err(ErrorCode::KafkaStorageError);
        }
        Ok(PartitionView::of(node, topic, partition))
    }

    /// The online partition `index` of `topic`, which this node must lead (what produce,
    /// fetch, ListOffsets and OffsetForLeaderEpoch ask of it).
    ///
    /// # Errors
    ///
    /// As [`Self::find`], and `NOT_LEADER_OR_FOLLOWER` on a follower (the client refreshes
    /// its metadata and goes to the leader).
    pub fn find_leader(node: &Node, topic: &str, index: i32) -> Result<PartitionView, ErrorCode> {
        let view = PartitionView::find(node, topic, index)?;
        if view.is_replica() || view.replica().leadership().is_leader {
            Ok(view)
        } else {
            Err(ErrorCode::NotLeaderOrFollower)
        }
    }

    /// The current leader of the partition, as this replica knows (for KIP-951 hints).
    pub fn leader(&self) -> Option<i32> {
        self.partition
            .replica
            .as_ref()
            .ok()
            .and_then(|r| r.leadership().leader)
    }

    /// The view of a partition already looked up (it may be offline: see [`Self::offline`]).
    pub fn of(node: &Node, topic: Arc<Topic>, partition: Arc<Partition>) -> PartitionView {
        PartitionView {
            topic,
            partition,
            tiering: node.tiering.clone(),
        }
    }

    /// The topic.
    pub fn topic(&self) -> &Arc<Topic> {
        &self.topic
    }

    /// The partition index.
    pub fn index(&self) -> i32 {
        self.partition.index
    }

    /// Why the partition's log is offline, if it is.
    pub fn offline(&self) -> Option<&str> {
        self.partition.replica.as_ref().err().map(String::as_str)
    }

    /// The local log (never consulted for a read replica's data).
    ///
    /// # Panics
    ///
    /// For an offline partition: [`Self::find`] only returns online ones.
    fn log(&self) -> &PartitionLog {
        self.replica().log()
    }

    /// This node's replica.
    ///
    /// # Panics
    ///
    /// For an offline partition, as [`Self::log`].
    fn replica(&self) -> &dyn Replica {
        self.partition
            .replica
            .as_ref()
            .expect("views of offline partitions are not read")
            .as_ref()
    }

    fn is_replica(&self) -> bool {
        self.topic.read_replica_of.is_some()
    }

    /// The archive tier of the partition, if the archive was looked at already.
    pub fn tier(&self) -> Option<Arc<PartitionTier>> {
        self.tiering
            .as_ref()
            .and_then(|t| t.get(self.topic.id, self.partition.index))
    }

    /// The bounds as known now, without waiting for the bucket: the archive's start counts if
    /// its manifest is loaded already.
    pub fn bounds_now(&self) -> Bounds {
        // The archive counts only while reads may go to it (`remote.read`).
        let root = self
            .tier()
            .filter(|_| self.topic.remote_read())
            .and_then(|t| t.root());
        self.bounds_with(root.as_deref())
    }

    fn bounds_with(&self, root: Option<&Root>) -> Bounds {
        if self.is_replica() {
            return root.map_or(Bounds::closed(0, 0), |r| {
                Bounds::closed(r.start_offset, r.next_offset)
            });
        }
        let log = self.log();
        let local_start = log.log_start_offset();
        let log_start = match root {
            Some(root) if !root.is_empty() && root.next_offset >= local_start => {
                root.start_offset.max(log.records_start()).min(local_start)
            }
            _ => local_start,
        };
        let high_watermark = log.high_watermark();
        Bounds {
            log_start,
            local_start,
            high_watermark,
            last_stable: log.last_stable_offset().min(high_watermark),
            log_end: log.log_end_offset(),
        }
    }

    /// The archive root reads go through, loaded if needed; `None` when nothing is archived or
    /// the archive is kept out of reads.
    async fn readable_root(&self) -> Result<Option<(Arc<PartitionTier>, Arc<Root>)>, ReadFailure> {
        let Some(tiering) = &self.tiering else {
            return Ok(None);
        };
        tiering
            .readable_root(&self.topic, self.partition.index)
            .await
            .map_err(|e| {
                tracing::warn!(topic = %self.topic.name, partition = self.partition.index, error = %e, "archive manifest unavailable");
                ReadFailure::of(&e)
            })
    }

    /// The bounds across tiers, loading the archive's manifest if needed.
    ///
    /// # Errors
    ///
    /// The bucket did not answer.
    pub async fn bounds(&self) -> Result<Bounds, ErrorCode> {
        match self.readable_root().await {
            Ok(found) => Ok(self.bounds_with(found.as_ref().map(|(_, r)| r.as_ref()))),
            Err(failure) => Err(for_archive(failure)),
        }
    }

    /// A receiver that changes whenever the readable end moves (for long polls).
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        if self.is_replica()
            && let Some(tier) = self.tier()
        {
            return tier.subscribe();
        }
        self.log().subscribe()
    }

    /// Where a fetch at `offset` reads from.
    pub async fn locate(&self, offset: i64) -> Located {
        let replica = self.is_replica();
        if !replica && offset >= self.log().log_start_offset() {
            let config = self.topic.config();
            let tiered =
                self.tiering.is_some() && config.remote_read && config.remote_storage_enable;
            return Located::Local { tiered };
        }
        if self.tiering.is_none() {
            return Located::Local { tiered: false };
        }
        let (tier, root) = match self.readable_root().await {
            Ok(Some(found)) => found,
            Ok(None) if replica => {
                // Nothing archived at the source yet (or remote.read is off): at offset 0,
                // wait for the follower like a caught-up reader.
                let bounds = Bounds::closed(0, 0);
                return match self.tier() {
                    Some(tier) if offset == 0 => Located::Wait(bounds, tier.subscribe()),
                    _ => replica_answer(offset, bounds),
                };
            }
            // Not archived either: the local read answers OffsetOutOfRange.
            Ok(None) => return Located::Local { tiered: false },
            Err(failure) => {
                let bounds = if replica {
                    Bounds::closed(0, 0)
                } else {
                    self.bounds_with(None)
                };
                return Located::Answer(Some(for_archive(failure)), bounds);
            }
        };
        let bounds = self.bounds_with(Some(&root));
        if replica && offset == root.next_offset {
            // Caught up with the source: wait for the follower to see more.
            return Located::Wait(bounds, tier.subscribe());
        }
        if replica && (offset < bounds.log_start || offset > root.next_offset) {
            return replica_answer(offset, bounds);
        }
        if offset < bounds.log_start || offset >= root.next_offset {
            // Out of range everywhere: the local read says so.
            return Located::Local { tiered: false };
        }
        if let Some(failure) = tier.take_read_failure() {
            // An earlier read failed after its fetch stopped waiting: say so now, once.
            return Located::Answer(Some(for_archive(failure)), bounds);
        }
        Located::Archive(ArchiveRead { tier, root, bounds })
    }

    /// Reads whole batches from the local log (blocking: call it on the blocking pool).
    pub fn read_local(
        &self,
        offset: i64,
        max_bytes: u32,
        tiered: bool,
        isolation: Isolation,
    ) -> LocalRead {
        let log = self.log();
        let mut read = LocalRead {
            error: None,
            bounds: self.bounds_now(),
            records: Bytes::new(),
            aborted: Vec::new(),
        };
        match log.read_as(offset, max_bytes, isolation) {
            Ok(ReadSlice {
                records,
                high_watermark,
                log_start_offset,
                last_stable_offset,
                aborted,
            }) => {
                read.bounds.high_watermark = high_watermark;
                read.bounds.last_stable = last_stable_offset;
                read.bounds.local_start = log_start_offset;
                read.bounds.log_start = read.bounds.log_start.min(log_start_offset);
                read.records = records;
                read.aborted = aborted;
            }
            Err(LogError::OffsetOutOfRange { log_start, .. }) if tiered && offset < log_start => {
                // Local retention won the race; the archive has it (see `Located::Local`).
            }
            Err(e) => read.error = Some(for_log(&e)),
        }
        read
    }

    /// ListOffsets: the offset (and timestamp, for lookups by time) that `spec` names, or
    /// `None` when there is none (a lookup by time past every record). Lookups that need the
    /// archive consult it; latest and earliest-local never wait for the bucket.
    ///
    /// # Errors
    ///
    /// The code to answer with: the bucket did not answer, a local read failed, or the spec is
    /// not one this request version may ask for (`INVALID_REQUEST`).
    pub async fn list_offset(
        &self,
        spec: OffsetSpec,
        version: i16,
    ) -> Result<Option<OffsetAndTimestamp>, ErrorCode> {
        let archive = match spec {
            OffsetSpec::Latest | OffsetSpec::LatestStable | OffsetSpec::EarliestLocal
                if !self.is_replica() =>
            {
                None
            }
            _ => self.readable_root().await.map_err(for_archive)?,
        };
        let bounds = self.bounds_with(archive.as_ref().map(|(_, r)| r.as_ref()));
        // The archive answers for what lies before the local log (a read replica: for all).
        let archived = archive
            .as_ref()
            .filter(|_| self.is_replica() || bounds.log_start < bounds.local_start);
        let search = |timestamp: i64| async move {
            match (&self.tiering, archived) {
                (Some(tiering), Some((tier, root))) => tiering
                    .offset_for_timestamp(tier, root, bounds.log_start, timestamp)
                    .await
                    .map_err(|e| for_archive(ReadFailure::of(&e))),
                _ => Ok(None),
            }
        };
        match spec {
            OffsetSpec::Latest => Ok(Some((bounds.high_watermark, -1))),
            OffsetSpec::LatestStable => Ok(Some((bounds.last_stable, -1))),
            OffsetSpec::Earliest => Ok(Some((bounds.log_start, -1))),
            OffsetSpec::EarliestLocal => Ok(Some((bounds.local_start, -1))),
            OffsetSpec::LatestTiered if version >= 9 => Ok(archive
                .as_ref()
                .filter(|(_, root)| root.next_offset > root.start_offset)
                .map(|(_, root)| (root.next_offset - 1, -1))),
            OffsetSpec::MaxTimestamp if version >= 7 => {
                if self.is_replica() {
                    let max = archive.as_ref().map_or(-1, |(_, r)| r.max_timestamp);
                    return if max < 0 { Ok(None) } else { search(max).await };
                }
                let local = self.local_lookup(|log| log.max_timestamp()).await?;
                match archived {
                    Some((_, root)) if local.is_none_or(|(_, ts)| root.max_timestamp > ts) => {
                        Ok(search(root.max_timestamp).await?.or(local))
                    }
                    _ => Ok(local),
                }
            }
            OffsetSpec::Timestamp(t) if t >= 0 => {
                // The oldest match wins: the archive's records come before the local ones.
                let remote = search(t).await?;
                match remote {
                    Some(found) if self.is_replica() || found.0 < bounds.local_start => {
                        Ok(Some(found))
                    }
                    _ if self.is_replica() => Ok(None),
                    _ => {
                        self.local_lookup(move |log| log.offset_for_timestamp(t))
                            .await
                    }
                }
            }
            _ => Err(ErrorCode::InvalidRequest),
        }
    }

    /// A lookup in the local log, on the blocking pool (it reads segment files).
    async fn local_lookup(
        &self,
        lookup: impl FnOnce(&PartitionLog) -> Result<Option<OffsetAndTimestamp>, LogError>
        + Send
        + 'static,
    ) -> Result<Option<OffsetAndTimestamp>, ErrorCode> {
        let view = self.clone();
        let answer = tokio::task::spawn_blocking(move || {
            lookup(view.log()).map_err(|e| {
                tracing::warn!(error = %e, "offset lookup failed");
                for_log(&e)
            })
        })
        .await;
        answer.unwrap_or(Err(ErrorCode::UnknownServerError))
    }

    /// The end offset of leader epoch `epoch` (OffsetForLeaderEpoch): the largest epoch at or
    /// below it and where that epoch ended, or `(-1, -1)` (UNDEFINED_EPOCH) when there is none.
    pub fn epoch_end_offset(&self, epoch: i32) -> (i32, i64) {
        if self.is_replica() {
            // A read replica serves its source in one epoch of its own, which ends where it
            // serves; the epochs its records were written in are the source's.
            if epoch == LOCAL_EPOCH {
                return (LOCAL_EPOCH, self.bounds_now().high_watermark);
            }
            return self
                .tier()
                .and_then(|t| t.replica_epoch_end_offset(epoch))
                .unwrap_or((-1, -1));
        }
        self.replica().epoch_end_offset(epoch).unwrap_or((-1, -1))
    }

    /// False while a new leader's high watermark may trail an earlier leader's (see
    /// [`Replica::high_watermark_settled`]).
    pub fn high_watermark_settled(&self) -> bool {
        self.partition
            .replica
            .as_ref()
            .is_ok_and(|r| r.high_watermark_settled())
    }

    /// The leader epoch clients must name (-1 while the partition is offline).
    pub fn leader_epoch(&self) -> i32 {
        self.partition
            .replica
            .as_ref()
            .map_or(-1, |r| r.leadership().epoch)
    }

    /// DeleteRecords: moves the start of the partition to `offset` (-1: the high watermark)
    /// in every tier, and returns the new low watermark across tiers.
    ///
    /// # Errors
    ///
    /// `POLICY_VIOLATION` for a read replica (its records belong to its source), or the log's
    /// refusal (`OFFSET_OUT_OF_RANGE` above the high watermark).
    pub async fn delete_records(&self, offset: i64) -> Result<i64, ErrorCode> {
        if self.is_replica() {
            return Err(ErrorCode::PolicyViolation);
        }
        let replica = self
            .partition
            .replica
            .as_ref()
            .map_err(|_| ErrorCode::KafkaStorageError)?;
        replica
            .delete_records(offset)
            .await
            .map_err(|e| for_log(&e))?;
        // The archiver moves the archive's start to the same offset on its next pass, and
        // reads honour it already. A bucket that does not answer leaves the local start.
        let root = self.readable_root().await.ok().flatten();
        Ok(self
            .bounds_with(root.as_ref().map(|(_, r)| r.as_ref()))
            .log_start)
    }

    /// Produce: checks that the partition takes writes and queues `batch` (one v2 batch) for
    /// its writer, returning once it is queued (so that callers that submit in order are
    /// appended in that order) with a ticket for the outcome.
    ///
    /// # Errors
    ///
    /// Why it was refused before it was queued.
    pub async fn submit(
        &self,
        batch: Bytes,
        durability: Durability,
    ) -> Result<AppendTicket, Refused> {
        if let Some(source) = &self.topic.read_replica_of {
            return Err(Refused {
                code: ErrorCode::InvalidTopicException,
                message: Some(format!(
                    "topic '{}' is a read replica of {source}: it is read-only; produce to the source cluster",
                    self.topic.name
                )),
            });
        }
        let batch = self.stored_form(batch).await?;
        let acks = match durability {
            Durability::Durable => Acks::All,
            Durability::Buffered => Acks::Leader,
        };
        self.replica()
            .submit(batch, acks)
            .await
            .map_err(|e: AppendError| Refused {
                code: crate::protocol::error_code::for_append(&e),
                message: Some(e.to_string()),
            })
    }
}

impl PartitionView {
    /// A client's batch in its topic's `compression.type` (Kafka's broker-side compression):
    /// as sent when the topic keeps the producer's codec or the codecs agree (the common case:
    /// no copy, one read lock); otherwise checked (a corrupt batch must not get a fresh CRC),
    /// decompressed and compressed again on a blocking thread, off the request threads.
    /// Offsets, sequences and timestamps do not change, so idempotence and transactions see
    /// the same batch. Bytes the log's own checks refuse pass through to be refused there.
    async fn stored_form(&self, batch: Bytes) -> Result<Bytes, Refused> {
        use silt_config::CompressionType;
        use silt_index::batch::{BatchHeader, Codec, verify_crc};
        let codec = match self.topic.compression_type() {
            CompressionType::Producer => return Ok(batch),
            CompressionType::Uncompressed => Codec::None,
            CompressionType::Gzip => Codec::Gzip,
            CompressionType::Snappy => Codec::Snappy,
            CompressionType::Lz4 => Codec::Lz4,
            CompressionType::Zstd => Codec::Zstd,
        };
        match BatchHeader::parse(&batch, u32::MAX) {
            Ok(Some(header)) if header.codec() != codec && !header.is_control() => {}
            _ => return Ok(batch),
        }
        let refused = |code: ErrorCode, e: &dyn std::fmt::Display| Refused {
            code,
            message: Some(e.to_string()),
        };
        verify_crc(&batch).map_err(|e| refused(ErrorCode::CorruptMessage, &e))?;
        // Decompressed records are bounded as a fetch would bound them.
        let limit = (self.topic.config().max_message_bytes as usize)
            .saturating_mul(64)
            .max(64 << 20);
        let sent = batch.len() as u64;
        let (batch, changed) = tokio::task::spawn_blocking(move || {
            let changed = silt_index::record::recompress_batch(&batch, codec, limit);
            (batch, changed)
        })
        .await
        .map_err(|e| refused(ErrorCode::UnknownServerError, &e))?;
        let Some(changed) = changed.map_err(|e| refused(ErrorCode::CorruptMessage, &e))? else {
            return Ok(batch);
        };
        let counters = &self.topic.recompressed;
        counters
            .batches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        counters
            .bytes_in
            .fetch_add(sent, std::sync::atomic::Ordering::Relaxed);
        counters
            .bytes_out
            .fetch_add(changed.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(Bytes::from(changed))
    }

    /// Writes a transaction marker (see [`Replica::submit_marker`]) and waits until it is
    /// durable.
    ///
    /// # Errors
    ///
    /// The append's refusal (`NotLeader` when this node does not lead the partition).
    pub async fn write_marker(&self, batch: Bytes) -> Result<(), AppendError> {
        self.replica().submit_marker(batch).await?.wait().await?;
        Ok(())
    }
}

/// The answer for a read replica partition that has nothing at `offset`: empty at its end,
/// OffsetOutOfRange elsewhere.
fn replica_answer(offset: i64, bounds: Bounds) -> Located {
    let error = (offset != bounds.high_watermark).then_some(ErrorCode::OffsetOutOfRange);
    Located::Answer(error, bounds)
}

/// Checks a client's view of the leader epoch against the partition's.
pub fn check_leader_epoch(current_leader_epoch: i32, ours: i32) -> Option<ErrorCode> {
    if current_leader_epoch < 0 {
        return None; // -1: the client does not know the epoch, nothing to check
    }
    match current_leader_epoch.cmp(&ours) {
        std::cmp::Ordering::Greater => Some(ErrorCode::UnknownLeaderEpoch),
        std::cmp::Ordering::Less => Some(ErrorCode::FencedLeaderEpoch),
        std::cmp::Ordering::Equal => None,
    }
}
