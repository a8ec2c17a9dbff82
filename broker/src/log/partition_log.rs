//! [`PartitionLog`]: the handle to one partition's local log.
//!
//! Appends go to the partition's writer task ([`super::appender`]); reads, timestamp lookups
//! and segment deletion run on the caller's thread against shared state. Reads and lookups do
//! blocking file I/O: async callers run them on tokio's blocking pool.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::Bytes;
use silt_index::batch::{self, BatchHeader};
use silt_index::record::decode_records;
use silt_index::segment::SegmentFile;
use tokio::sync::{mpsc, oneshot, watch};

use super::appender::{
    AppendError, AppendRequest, Appended, COMMANDS_QUEUED_MAX, Command, Durability, Writer,
};
use super::producer_state::ProducerStateTable;
use super::raft::RaftShared;
use super::recovery;
use super::segment::{Segment, SegmentInfo};
use super::storage::Storage;
use super::{Clock, LogConfig, LogError};

/// Decompressed bytes allowed when a timestamp lookup must look inside a batch.
const LOOKUP_DECOMPRESSED_MAX: usize = 256 << 20;

/// State shared by the handle, its readers and the writer task.
#[derive(Debug)]
pub(crate) struct LogShared {
    pub dir: PathBuf,
    pub storage: Arc<dyn Storage>,
    pub clock: Arc<dyn Clock>,
    /// The epoch an unreplicated log stamps its batches with: the newest in its
    /// [`EpochCache`] checkpoint, 0 without one (a replicated log takes Raft's term instead).
    pub leader_epoch: i32,
    /// An unreplicated log's epochs: those of the archive it was restored from, then its own
    /// (empty unless restored; a replicated log keeps its epochs in its Raft side).
    pub local_epochs: super::raft::EpochCache,
    segments: RwLock<BTreeMap<i64, Arc<Segment>>>,
    high_watermark: watch::Sender<i64>,
    log_start_offset: AtomicI64,
    /// DeleteRecords' start offset, persisted; may be below the local segments.
    records_start: AtomicI64,
    /// What the archive holds as the partition's Raft log last said (-1: not heard here
    /// since this node started; see `log::raft::CONTROL_ARCHIVED`).
    archived_pointer: AtomicI64,
    /// Offset below which retention wants the Raft log forgotten (-1: nothing asked).
    forget_before: AtomicI64,
    pub flushed_offset: AtomicI64,
    /// Offset after the last written batch (durable or not): the next append's offset.
    pub log_end: AtomicI64,
    config: RwLock<LogConfig>,
    pub closed: AtomicBool,
    /// Idempotent producers, as of the log end (kept by the writer).
    producers: Mutex<ProducerStateTable>,
    /// The Raft side of a replicated log; `None` for a single replica.
    pub raft: Option<RaftShared>,
    /// Where compaction stands (see [`super::compactor`]).
    compaction: Mutex<super::compactor::CompactionStatus>,
}

impl LogShared {
    pub(crate) fn config(&self) -> LogConfig {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn log_start_offset(&self) -> i64 {
        self.log_start_offset.load(Ordering::Acquire)
    }

    pub(crate) fn producers(&self) -> MutexGuard<'_, ProducerStateTable> {
        self.producers.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn compaction(&self) -> MutexGuard<'_, super::compactor::CompactionStatus> {
        self.compaction.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the segments `old` (consecutive) by the one `make` returns, if they are all
    /// still the log's; `make` runs under the segments' lock, so retention and truncation
    /// wait for it. `Ok(false)`, with `make` not run, if the log changed.
    pub(crate) fn swap_segments(
        &self,
        old: &[Arc<Segment>],
        make: impl FnOnce() -> Result<Arc<Segment>, LogError>,
    ) -> Result<bool, LogError> {
        let mut map = self.segments.write().unwrap_or_else(|p| p.into_inner());
        let current = old
            .iter()
            .all(|s| map.get(&s.base_offset()).is_some_and(|m| Arc::ptr_eq(m, s)));
        if !current {
            return Ok(false);
        }
        let new = make()?;
        for s in old {
            map.remove(&s.base_offset());
        }
        map.insert(new.base_offset(), new);
        Ok(true)
    }

    pub(crate) fn set_log_start_offset(&self, offset: i64) {
        self.log_start_offset.store(offset, Ordering::Release);
        // Aborted transactions whose markers went with the segments are no one's to skip.
        self.producers().forget_aborted_before(offset);
    }

    /// A replicated log's high watermark: the offset after the last entry that is both
    /// committed (by a quorum) and fsynced here. Moves forward only.
    pub(crate) fn refresh_high_watermark(&self) {
        let Some(raft) = &self.raft else { return };
        let readable_next =
            RaftShared::load(&raft.commit_next).min(RaftShared::load(&raft.flushed_next));
        let Some(readable) = readable_next.checked_sub(1) else {
            return;
        };
        let offset = match raft.recent_next_offset(readable) {
            Some(offset) => offset,
            None => match self.next_offset_after(readable) {
                Ok(Some(offset)) => offset,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(dir = %self.dir.display(), error = %e, "cannot place the commit point");
                    return;
                }
            },
        };
        self.advance_high_watermark(offset);
    }

    /// Moves the high watermark to `offset` if that is ahead: atomically, as the writer (on
    /// fsync) and the state machine (on commit) both move it.
    fn advance_high_watermark(&self, offset: i64) {
        self.high_watermark.send_if_modified(|hw| {
            if offset > *hw {
                *hw = offset;
                true
            } else {
                false
            }
        });
    }

    /// The offset after Raft entry `index`, if the file holds it.
    pub(crate) fn next_offset_after(&self, index: u64) -> Result<Option<i64>, LogError> {
        Ok(self
            .locate_index(index)?
            .map(|(_, _, header)| header.next_offset()))
    }

    /// Finds Raft entry `index` in the file: its segment, position and header.
    pub(crate) fn locate_index(
        &self,
        index: u64,
    ) -> Result<Option<(Arc<Segment>, u64, BatchHeader)>, LogError> {
        super::raft_writer::locate(&self.all_segments(), index)
    }

    /// Moves a replicated log's high watermark to `offset` if it is behind (a snapshot was
    /// installed: everything before it is committed).
    pub(crate) fn refresh_high_watermark_to(&self, offset: i64) {
        self.advance_high_watermark(offset);
    }

    pub(crate) fn publish_high_watermark(&self, offset: i64) {
        let previous = self.high_watermark.send_replace(offset);
        assert!(
            offset >= previous,
            "high watermark regressed: {offset} < {previous}"
        );
    }

    pub(crate) fn add_segment(&self, segment: Arc<Segment>) {
        let mut segments = self.segments.write().unwrap_or_else(|p| p.into_inner());
        let previous = segments.insert(segment.base_offset(), segment);
        assert!(previous.is_none(), "segment base offset reused");
    }

    fn segments_from(&self, offset: i64) -> Vec<Arc<Segment>> {
        let segments = self.segments.read().unwrap_or_else(|p| p.into_inner());
        let start = segments
            .range(..=offset)
            .next_back()
            .map_or(i64::MIN, |(base, _)| *base);
        segments.range(start..).map(|(_, s)| s.clone()).collect()
    }

    pub(crate) fn all_segments(&self) -> Vec<Arc<Segment>> {
        let segments = self.segments.read().unwrap_or_else(|p| p.into_inner());
        segments.values().cloned().collect()
    }

    /// Replaces the segment set (truncation, snapshot installation).
    pub(crate) fn set_segments(&self, segments: Vec<Arc<Segment>>) {
        let mut map = self.segments.write().unwrap_or_else(|p| p.into_inner());
        *map = segments.into_iter().map(|s| (s.base_offset(), s)).collect();
    }
}

/// Whole batches read from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadSlice {
    /// Record batches, back to back (empty when there is nothing at the offset yet).
    pub records: Bytes,
    /// Offset after the last readable record.
    pub high_watermark: i64,
    /// First offset held.
    pub log_start_offset: i64,
    /// Offset below which no transaction is open (the high watermark without one).
    pub last_stable_offset: i64,
    /// For a read_committed read: the aborted transactions among the records returned.
    pub aborted: Vec<super::producer_state::AbortedTxn>,
}

/// Which records a read may return (Kafka's isolation level).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Up to the high watermark.
    ReadUncommitted,
    /// Up to the last stable offset, with the aborted transactions listed.
    ReadCommitted,
}

impl Isolation {
    /// The isolation a request's `isolation_level` (0 or 1) names.
    pub fn of(level: i8) -> Isolation {
        if level == 1 {
            Isolation::ReadCommitted
        } else {
            Isolation::ReadUncommitted
        }
    }
}

/// The outcome of a queued append, to wait for.
pub struct AppendTicket(futures::future::BoxFuture<'static, Result<Appended, AppendError>>);

impl std::fmt::Debug for AppendTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppendTicket")
    }
}

impl AppendTicket {
    /// A ticket for whatever `outcome` resolves to.
    pub fn new(
        outcome: impl std::future::Future<Output = Result<Appended, AppendError>> + Send + 'static,
    ) -> AppendTicket {
        AppendTicket(Box::pin(outcome))
    }

    /// Waits until the append is done as asked: written (buffered), fsynced (durable) or, on
    /// a replicated partition, acknowledged by a quorum.
    ///
    /// # Errors
    ///
    /// Why it was refused, or [`AppendError::Closed`] if the log stopped first.
    pub async fn wait(self) -> Result<Appended, AppendError> {
        self.0.await
    }
}

/// One partition's local log. Clones are handles to the same log.
#[derive(Debug, Clone)]
pub struct PartitionLog {
    pub(super) shared: Arc<LogShared>,
    pub(super) commands: mpsc::Sender<Command>,
}

impl PartitionLog {
    /// Opens (or creates) the log in `dir`, recovering it, and starts its writer on `runtime`.
    /// Blocking: call it from a blocking context.
    ///
    /// # Errors
    ///
    /// See [`recovery`]: an unwritable directory, a foreign or corrupt segment file.
    pub fn open(
        storage: Arc<dyn Storage>,
        dir: &Path,
        config: LogConfig,
        clock: Arc<dyn Clock>,
        runtime: &tokio::runtime::Handle,
    ) -> Result<PartitionLog, LogError> {
        PartitionLog::open_as(storage, dir, config, clock, runtime, false)
    }

    /// Opens (or creates) a replicated log in `dir`: a Raft log in its segment files (see
    /// [`super::raft`]). Blocking.
    ///
    /// # Errors
    ///
    /// As [`PartitionLog::open`], and a Raft file that is not whole.
    pub fn open_replicated(
        storage: Arc<dyn Storage>,
        dir: &Path,
        config: LogConfig,
        clock: Arc<dyn Clock>,
        runtime: &tokio::runtime::Handle,
    ) -> Result<PartitionLog, LogError> {
        PartitionLog::open_as(storage, dir, config, clock, runtime, true)
    }

    fn open_as(
        storage: Arc<dyn Storage>,
        dir: &Path,
        config: LogConfig,
        clock: Arc<dyn Clock>,
        runtime: &tokio::runtime::Handle,
        replicated: bool,
    ) -> Result<PartitionLog, LogError> {
        let now = clock.now_ms();
        let recovered = recovery::recover(storage.as_ref(), dir, &config, now)?;
        let active = recovered
            .segments
            .last()
            .expect("recovery leaves an active segment")
            .clone();
        let raft = if replicated {
            Some(super::raft_writer::recover_raft(
                storage.as_ref(),
                dir,
                &recovered,
            )?)
        } else {
            None
        };
        // A replicated log's high watermark is the commit point: unknown until Raft says, but
        // what was applied before the restart is committed.
        let high_watermark = match &raft {
            None => recovered.next_offset,
            Some((_, first_readable)) => *first_readable,
        };
        let (high_watermark, _) = watch::channel(high_watermark);
        let local_epochs = if replicated {
            super::raft::EpochCache::default()
        } else {
            super::raft::EpochCache::read(storage.as_ref(), dir).unwrap_or_default()
        };
        // The index the next entry gets: right after the active segment's entries.
        let next_index = active
            .raft()
            .as_ref()
            .and_then(|span| span.next_index())
            .unwrap_or(0);
        let storage_for_status = storage.clone();
        let shared = Arc::new(LogShared {
            dir: dir.to_path_buf(),
            storage,
            clock,
            leader_epoch: local_epochs.latest().map_or(0, |(epoch, _)| epoch.max(0)),
            local_epochs,
            segments: RwLock::new(
                recovered
                    .segments
                    .iter()
                    .map(|s| (s.base_offset(), s.clone()))
                    .collect(),
            ),
            high_watermark,
            log_start_offset: AtomicI64::new(recovered.log_start_offset),
            records_start: AtomicI64::new(recovered.records_start),
            archived_pointer: AtomicI64::new(-1),
            forget_before: AtomicI64::new(-1),
            flushed_offset: AtomicI64::new(recovered.next_offset),
            log_end: AtomicI64::new(recovered.next_offset),
            config: RwLock::new(config),
            closed: AtomicBool::new(false),
            producers: Mutex::new(recovered.producers),
            raft: raft.map(|(r, _)| r),
            compaction: Mutex::new(super::compactor::CompactionStatus::load(
                storage_for_status.as_ref(),
                dir,
            )),
        });
        let writer = Writer::new(shared.clone(), active, recovered.next_offset, next_index)?;
        let (commands, receiver) = mpsc::channel(COMMANDS_QUEUED_MAX);
        runtime.spawn(writer.run(receiver));
        Ok(PartitionLog { shared, commands })
    }

    /// Appends one record batch (the client's bytes, exactly one v2 batch) and returns the
    /// offsets it got, once it is written (`Buffered`) or fsynced (`Durable`).
    ///
    /// # Errors
    ///
    /// [`AppendError`] saying why the batch was refused.
    pub async fn append(
        &self,
        batch: Bytes,
        durability: Durability,
    ) -> Result<Appended, AppendError> {
        self.submit(batch, durability).await?.wait().await
    }

    /// Checks a batch and queues it for the writer, returning once it is queued (so callers
    /// that submit in order are appended in that order) with a ticket for the outcome.
    ///
    /// # Errors
    ///
    /// [`AppendError::Corrupt`], [`AppendError::TooLarge`] or [`AppendError::Control`]
    /// for a batch refused before it is queued; [`AppendError::Closed`].
    pub async fn submit(
        &self,
        batch: Bytes,
        durability: Durability,
    ) -> Result<AppendTicket, AppendError> {
        let header = check_batch(&batch, &self.shared.config())?;
        self.queue_append(batch, header, durability).await
    }

    /// Queues a transaction marker (`silt_index::record::encode_txn_marker`) the way
    /// [`Self::submit`] queues a client's batch: it closes its producer's open transaction.
    ///
    /// # Errors
    ///
    /// [`AppendError::Corrupt`] for a batch that is not a transaction marker; as
    /// [`Self::submit`].
    pub async fn submit_marker(
        &self,
        batch: Bytes,
        durability: Durability,
    ) -> Result<AppendTicket, AppendError> {
        let header = check_marker_batch(&batch)?;
        self.queue_append(batch, header, durability).await
    }

    async fn queue_append(
        &self,
        batch: Bytes,
        header: BatchHeader,
        durability: Durability,
    ) -> Result<AppendTicket, AppendError> {
        let (reply, response) = oneshot::channel();
        let request = AppendRequest {
            batch,
            header,
            durability,
            reply,
        };
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(AppendError::Closed);
        }
        self.commands
            .send(Command::Append(request))
            .await
            .map_err(|_| AppendError::Closed)?;
        Ok(AppendTicket::new(async move {
            response.await.map_err(|_| AppendError::Closed)?
        }))
    }

    /// Reads whole batches starting with the one that holds `offset`, up to `max_bytes` (but at
    /// least one whole batch, so a consumer always makes progress, as KIP-74 specifies).
    ///
    /// # Errors
    ///
    /// [`LogError::OffsetOutOfRange`] outside `[log start, high watermark]`; I/O or corruption.
    pub fn read(&self, offset: i64, max_bytes: u32) -> Result<ReadSlice, LogError> {
        self.read_as(offset, max_bytes, Isolation::ReadUncommitted)
    }

    /// The last stable offset: below it no transaction is open (read_committed consumers read
    /// up to it); the high watermark when none is.
    pub fn last_stable_offset(&self) -> i64 {
        let high_watermark = self.high_watermark();
        self.shared
            .producers()
            .first_unstable_offset()
            .map_or(high_watermark, |first| first.min(high_watermark))
    }

    /// The aborted transactions with records in `[from, to)`, by marker offset.
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<super::producer_state::AbortedTxn> {
        self.shared.producers().aborted_between(from, to)
    }

    /// [`Self::read`] at an isolation level: read_committed stops at the last stable offset
    /// and lists the aborted transactions among what it returns.
    ///
    /// # Errors
    ///
    /// As [`Self::read`].
    pub fn read_as(
        &self,
        offset: i64,
        max_bytes: u32,
        isolation: Isolation,
    ) -> Result<ReadSlice, LogError> {
        let high_watermark = self.high_watermark();
        let last_stable_offset = self.last_stable_offset();
        let log_start_offset = self.log_start_offset();
        let limit = match isolation {
            Isolation::ReadUncommitted => high_watermark,
            Isolation::ReadCommitted => last_stable_offset,
        };
        let empty = |hw| ReadSlice {
            records: Bytes::new(),
            high_watermark: hw,
            log_start_offset,
            last_stable_offset,
            aborted: Vec::new(),
        };
        // Between the high watermark and the log end is not out of range: it is written and
        // not yet readable (not yet durable, or not yet committed by a quorum; a new leader's
        // high watermark can trail what the old one showed). The reader waits, as in Kafka.
        if offset < log_start_offset || offset > high_watermark.max(self.log_end_offset()) {
            return Err(LogError::OffsetOutOfRange {
                requested: offset,
                log_start: log_start_offset,
                high_watermark,
            });
        }
        if offset >= limit {
            return Ok(empty(high_watermark));
        }
        for segment in self.shared.segments_from(offset) {
            let Some((position, first)) = segment.locate(offset)? else {
                continue;
            };
            if first.base_offset >= limit {
                return Ok(empty(high_watermark));
            }
            let available = segment.committed() - position;
            let want = u64::from(max_bytes)
                .max(u64::from(first.size()))
                .min(available);
            let mut bytes = segment.read_bytes(position, want)?;
            // Keep whole batches below the high watermark (or the last stable offset).
            let scanned = batch::scan(&bytes, u32::MAX, false);
            let kept = scanned
                .batches
                .iter()
                .take_while(|(h, _)| h.base_offset < limit)
                .last();
            let keep = kept.map_or(0, |(_, range)| range.end);
            let end = kept.map_or(offset, |(h, _)| h.next_offset());
            assert!(
                keep > 0,
                "the first batch {} fits in {want} bytes",
                first.size()
            );
            bytes.truncate(keep);
            let aborted = match isolation {
                Isolation::ReadUncommitted => Vec::new(),
                Isolation::ReadCommitted => self
                    .shared
                    .producers()
                    .aborted_between(first.base_offset, end),
            };
            return Ok(ReadSlice {
                records: Bytes::from(bytes),
                high_watermark,
                log_start_offset,
                last_stable_offset,
                aborted,
            });
        }
        Ok(empty(high_watermark))
    }

    /// The first record at or after `timestamp` (ListOffsets by time): its offset and
    /// timestamp, or `None` if every record is older.
    ///
    /// # Errors
    ///
    /// I/O errors, or a batch whose records do not decode.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>, LogError> {
        let log_start = self.log_start_offset();
        let high_watermark = self.high_watermark();
        for segment in self.shared.all_segments() {
            let info = segment.info();
            if info.next_offset <= log_start || info.max_timestamp < timestamp {
                continue;
            }
            let hint = segment
                .indexer()
                .time_index()
                .lookup_before(timestamp)
                .map_or(segment.base_offset(), |e| {
                    segment.base_offset() + i64::from(e.offset.0)
                });
            let Some((mut position, _)) = segment.locate(hint.max(log_start))? else {
                continue;
            };
            let end = segment.committed();
            while position < end {
                let header: BatchHeader = segment.read_header(position)?;
                if header.base_offset >= high_watermark {
                    return Ok(None);
                }
                if header.max_timestamp >= timestamp && header.last_offset() >= log_start {
                    let bytes = segment.read_bytes(position, u64::from(header.size()))?;
                    let records = decode_records(&bytes, LOOKUP_DECOMPRESSED_MAX).map_err(|e| {
                        LogError::corrupt(segment.path(SegmentFile::Log), position, e.to_string())
                    })?;
                    let found = records
                        .iter()
                        .find(|r| r.offset >= log_start && r.timestamp >= timestamp);
                    if let Some(record) = found {
                        return Ok(Some((record.offset, record.timestamp)));
                    }
                }
                position += u64::from(header.size());
            }
        }
        Ok(None)
    }

    /// The record with the largest timestamp (ListOffsets MAX_TIMESTAMP, KIP-734): its offset
    /// and timestamp, or `None` for an empty log.
    ///
    /// # Errors
    ///
    /// As [`PartitionLog::offset_for_timestamp`].
    pub fn max_timestamp(&self) -> Result<Option<(i64, i64)>, LogError> {
        let log_start = self.log_start_offset();
        let max = self
            .shared
            .all_segments()
            .iter()
            .map(|s| s.info())
            .filter(|i| i.next_offset > log_start)
            .map(|i| i.max_timestamp)
            .max()
            .unwrap_or(-1);
        if max < 0 {
            return Ok(None);
        }
        self.offset_for_timestamp(max)
    }

    /// The epoch an unreplicated log stamps its batches with (see [`LogShared`]).
    pub fn local_epoch(&self) -> i32 {
        self.shared.leader_epoch
    }

    /// OffsetForLeaderEpoch on an unreplicated log: its own epoch ends at the high watermark;
    /// the epochs before it are those of the archive it was restored from, if any.
    pub fn local_epoch_end_offset(&self, epoch: i32) -> Option<(i32, i64)> {
        if epoch == self.shared.leader_epoch {
            return Some((epoch, self.high_watermark()));
        }
        if epoch > self.shared.leader_epoch {
            return None;
        }
        self.shared
            .local_epochs
            .end_offset_for(epoch, self.high_watermark())
    }

    /// Offset after the last readable record (the log end: one node has no replicas to wait
    /// for).
    pub fn high_watermark(&self) -> i64 {
        *self.shared.high_watermark.borrow()
    }

    /// A receiver that changes whenever the high watermark moves (for long polls).
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.shared.high_watermark.subscribe()
    }

    /// The log's clock, in milliseconds since the Unix epoch.
    pub fn clock_now_ms(&self) -> i64 {
        self.shared.clock.now_ms()
    }

    /// First offset held locally.
    pub fn log_start_offset(&self) -> i64 {
        self.shared.log_start_offset()
    }

    /// Offset after the last written batch: what the next append gets. Above the high
    /// watermark while a write waits for its fsync.
    pub fn log_end_offset(&self) -> i64 {
        self.shared.log_end.load(Ordering::Acquire)
    }

    /// Everything below this offset is fsynced.
    pub fn flushed_offset(&self) -> i64 {
        self.shared.flushed_offset.load(Ordering::Acquire)
    }

    /// The partition's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The segments, oldest first; the last is the active one.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.shared
            .all_segments()
            .iter()
            .map(|s| s.info())
            .collect()
    }

    /// Bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.shared
            .all_segments()
            .iter()
            .map(|s| s.committed())
            .sum()
    }

    /// The path of a sealed segment's file, for the archiver.
    pub fn segment_path(&self, base_offset: i64, kind: SegmentFile) -> PathBuf {
        self.shared
            .dir
            .join(silt_index::segment::segment_file_name(base_offset, kind))
    }

    /// True once closed or stopped by a storage failure.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Replaces the log's settings (after AlterConfigs); takes effect with the next append.
    pub fn set_config(&self, config: LogConfig) {
        *self
            .shared
            .config
            .write()
            .unwrap_or_else(|p| p.into_inner()) = config;
    }

    /// The log's settings.
    pub fn config(&self) -> LogConfig {
        self.shared.config()
    }

    /// Makes `dir` a new, empty partition log whose first offset will be `base` (a partition
    /// whose older offsets live in the archive). Offsets below `base` are not deleted records:
    /// the archive may serve them. Blocking.
    ///
    /// # Errors
    ///
    /// I/O errors creating the directory or the segment.
    pub fn create_empty_at(
        storage: &dyn Storage,
        dir: &Path,
        base: i64,
        config: &LogConfig,
    ) -> Result<(), LogError> {
        storage
            .create_dir_all(dir)
            .map_err(|e| LogError::io("create directory", dir.to_path_buf(), e))?;
        recovery::create_segment(storage, dir, base.max(0), config)?;
        Ok(())
    }

    /// Creates `dir` as the empty log of a partition restored from an archive whose records
    /// below `base` were written in leader epochs `archived` (epoch, first offset): the log
    /// continues in the epoch after the archive's newest, so no client sees epochs go back.
    /// Blocking.
    ///
    /// # Errors
    ///
    /// I/O errors.
    pub fn create_restored(
        storage: &dyn Storage,
        dir: &Path,
        base: i64,
        archived: &[(i32, i64)],
        config: &LogConfig,
    ) -> Result<(), LogError> {
        PartitionLog::create_empty_at(storage, dir, base, config)?;
        let Some(&(newest, last_start)) = archived.last() else {
            return Ok(());
        };
        let mut entries = archived.to_vec();
        entries.push((newest.max(0) + 1, base.max(last_start)));
        let epochs = super::raft::EpochCache::checked(entries).ok_or_else(|| {
            LogError::corrupt(
                dir.to_path_buf(),
                0,
                format!("the archive's leader epochs do not increase: {archived:?}"),
            )
        })?;
        epochs.write(storage, dir)
    }

    /// Where the batch starting at `offset` is in the segment based at `base_offset`, if it
    /// is there.
    ///
    /// # Errors
    ///
    /// I/O errors reading the segment.
    pub fn batch_position(&self, base_offset: i64, offset: i64) -> Result<Option<u64>, LogError> {
        let Some(segment) = self
            .shared
            .all_segments()
            .into_iter()
            .find(|s| s.base_offset() == base_offset)
        else {
            return Ok(None);
        };
        Ok(segment
            .locate(offset)?
            .filter(|(_, header)| header.base_offset == offset)
            .map(|(position, _)| position))
    }

    /// The Raft index of the first entry of the segment based at `base_offset`, for a
    /// replicated log.
    pub fn segment_base_index(&self, base_offset: i64) -> Option<u64> {
        self.shared
            .all_segments()
            .into_iter()
            .find(|s| s.base_offset() == base_offset)
            .and_then(|s| s.raft().as_ref().map(|span| span.base_index))
    }

    /// Applies a committed archive pointer: the archive holds every offset below `next`.
    pub fn note_archived(&self, next: i64) {
        self.shared
            .archived_pointer
            .fetch_max(next, Ordering::AcqRel);
    }

    /// The archive pointer the partition's log last applied here, if any since this node
    /// started.
    pub fn archived_pointer(&self) -> Option<i64> {
        let next = self.shared.archived_pointer.load(Ordering::Acquire);
        (next >= 0).then_some(next)
    }

    /// Lets Raft forget the entries below `offset` (retention deletes them).
    pub fn allow_forget_before(&self, offset: i64) {
        self.shared
            .forget_before
            .fetch_max(offset, Ordering::AcqRel);
    }

    /// The offset below which a replicated log's Raft side may forget entries: what the
    /// archive holds, or what retention deletes. A snapshot there is all a new replica needs
    /// (older reads go through the archive, or are gone).
    pub fn forget_point(&self) -> Option<i64> {
        let allowed = self.shared.forget_before.load(Ordering::Acquire);
        let point = self.archived_pointer().unwrap_or(-1).max(allowed);
        (point >= 0).then_some(point)
    }

    /// True when nothing but control batches lies from `offset` to the log end (an archive
    /// pointer entry, a new leader's first entry): nothing there for the archive to wait for.
    ///
    /// # Errors
    ///
    /// I/O errors reading batch headers.
    pub fn only_control_from(&self, offset: i64) -> Result<bool, LogError> {
        for segment in self.shared.all_segments() {
            let mut position = if segment.base_offset() >= offset {
                0
            } else {
                match segment.locate(offset)? {
                    Some((position, _)) => position,
                    None => continue,
                }
            };
            let end = segment.committed();
            while position < end {
                let header = segment.read_header(position)?;
                if !header.is_control() {
                    return Ok(false);
                }
                position += u64::from(header.size());
            }
        }
        Ok(true)
    }

    /// The start offset DeleteRecords asked for (0 if never): the first offset any tier may
    /// serve.
    pub fn records_start(&self) -> i64 {
        self.shared.records_start.load(Ordering::Acquire)
    }

    /// Moves the log start to `offset` (DeleteRecords); `-1` means the high watermark.
    /// Segments wholly below it are deleted. Returns the new local log start. Blocking.
    ///
    /// # Errors
    ///
    /// [`LogError::OffsetOutOfRange`] above the high watermark; I/O errors.
    pub fn delete_records(&self, offset: i64) -> Result<i64, LogError> {
        let high_watermark = self.high_watermark();
        let offset = if offset == -1 { high_watermark } else { offset };
        if offset < 0 || offset > high_watermark {
            return Err(LogError::OffsetOutOfRange {
                requested: offset,
                log_start: self.log_start_offset(),
                high_watermark,
            });
        }
        // Persisted even below the local start: the archive holds what is older, and its
        // start moves too (the archiver reads `records_start`).
        if offset > self.records_start() {
            recovery::write_log_start(self.shared.storage.as_ref(), &self.shared.dir, offset)?;
            self.shared
                .records_start
                .fetch_max(offset, Ordering::AcqRel);
        }
        if offset <= self.log_start_offset() {
            return Ok(self.log_start_offset());
        }
        self.shared
            .log_start_offset
            .fetch_max(offset, Ordering::AcqRel);
        self.delete_oldest_segments(|info| info.next_offset <= offset)?;
        Ok(self.log_start_offset())
    }

    /// A replicated DeleteRecords, applied at commit: the records before `offset` are gone
    /// for readers (persisted, so it holds after a restart), while the segments stay until
    /// Raft has snapshotted past them (they are its log) and retention removes them. Never
    /// moves the start back. Blocking.
    ///
    /// # Errors
    ///
    /// I/O errors persisting the start.
    pub fn move_records_start(&self, offset: i64) -> Result<(), LogError> {
        if offset > self.records_start() {
            recovery::write_log_start(self.shared.storage.as_ref(), &self.shared.dir, offset)?;
            self.shared
                .records_start
                .fetch_max(offset, Ordering::AcqRel);
        }
        // Readers start there (as after a restart, when the persisted start is read back).
        self.shared
            .log_start_offset
            .fetch_max(offset, Ordering::AcqRel);
        Ok(())
    }

    /// Deletes sealed segments from the oldest, while `delete` says so; stops at the first it
    /// refuses or at the active segment. The log start moves past them. Blocking.
    ///
    /// # Errors
    ///
    /// I/O errors removing files; segments already dropped from the log stay dropped.
    pub fn delete_oldest_segments(
        &self,
        mut delete: impl FnMut(&SegmentInfo) -> bool,
    ) -> Result<Vec<SegmentInfo>, LogError> {
        let mut removed = Vec::new();
        {
            let mut segments = self
                .shared
                .segments
                .write()
                .unwrap_or_else(|p| p.into_inner());
            while let Some((_, segment)) = segments.first_key_value() {
                let info = segment.info();
                if !info.sealed || segments.len() == 1 || !delete(&info) {
                    break;
                }
                let (_, segment) = segments.pop_first().expect("checked non-empty");
                self.shared
                    .log_start_offset
                    .fetch_max(info.next_offset, Ordering::AcqRel);
                removed.push((info, segment));
            }
        }
        let storage = self.shared.storage.as_ref();
        for (info, segment) in &removed {
            let raft_file = self
                .shared
                .dir
                .join(super::raft::raft_file_name(info.base_offset));
            for path in [
                segment.path(SegmentFile::Log),
                segment.path(SegmentFile::OffsetIndex),
                segment.path(SegmentFile::TimeIndex),
                raft_file,
            ] {
                if storage.exists(&path) {
                    storage
                        .remove_file(&path)
                        .map_err(|e| LogError::io("remove", path.clone(), e))?;
                }
            }
            tracing::debug!(dir = %self.shared.dir.display(), base = info.base_offset, "deleted segment");
        }
        if !removed.is_empty() {
            storage
                .sync_dir(&self.shared.dir)
                .map_err(|e| LogError::io("sync directory", self.shared.dir.clone(), e))?;
        }
        Ok(removed.into_iter().map(|(info, _)| info).collect())
    }

    /// Sends the writer a command that answers on a channel, and waits for the answer.
    pub(crate) async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, LogError>>) -> Command,
    ) -> Result<T, LogError> {
        let (reply, response) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| LogError::Closed)?;
        response.await.map_err(|_| LogError::Closed)?
    }

    /// Seals the active segment if it holds data appended `age_ms` ago or earlier (idle rolls
    /// for the archiver, time retention of the active segment). Returns whether it rolled.
    ///
    /// # Errors
    ///
    /// [`LogError::Closed`], or the roll's I/O error.
    pub async fn roll_if_older(&self, age_ms: i64) -> Result<bool, LogError> {
        self.ask(|reply| Command::RollIfOlder { age_ms, reply })
            .await
    }

    /// Fsyncs whatever was written and not yet fsynced.
    ///
    /// # Errors
    ///
    /// [`LogError::Closed`] or the fsync's error.
    pub async fn flush(&self) -> Result<(), LogError> {
        self.ask(Command::Flush).await
    }

    /// Flushes, writes the active segment's indexes and a clean-shutdown marker, and stops the
    /// writer. Appends after this fail with `Closed`.
    ///
    /// # Errors
    ///
    /// [`LogError::Closed`] if already closed, or an I/O error (the next open then scans).
    pub async fn close(&self) -> Result<(), LogError> {
        self.ask(Command::Close).await
    }
}

/// Checks that `bytes` is exactly one whole v2 data batch with a good CRC, within `max`
/// bytes, as a client may send it: never a control batch, a transactional one only of an
/// idempotent producer, and on a compacted log only records with keys.
pub(crate) fn check_batch(bytes: &[u8], config: &LogConfig) -> Result<BatchHeader, AppendError> {
    let header = check_whole(bytes, config.max_message_bytes)?;
    if header.is_control() {
        return Err(AppendError::Control);
    }
    if header.is_transactional() && !header.has_producer_id() {
        return Err(AppendError::Corrupt(
            "a transactional batch without a producer id".into(),
        ));
    }
    if config.compaction.is_some() {
        check_keys(bytes, &header)?;
    }
    Ok(header)
}

/// Decompressed bytes a produce may make the broker look at to check keys.
const KEY_CHECK_DECOMPRESSED_MAX: usize = 256 << 20;

/// Compaction keeps the newest record of each key, so a record without one has no place in a
/// compacted log (Kafka refuses it the same way). The only check that reads records: compacted
/// topics pay for it, others never do.
fn check_keys(bytes: &[u8], header: &BatchHeader) -> Result<(), AppendError> {
    let records = decode_records(bytes, KEY_CHECK_DECOMPRESSED_MAX)
        .map_err(|e| AppendError::Corrupt(format!("cannot read the batch's records: {e}")))?;
    match records.iter().find(|r| r.key.is_none()) {
        Some(keyless) => Err(AppendError::KeyRequired {
            offset_delta: keyless.offset - header.base_offset,
        }),
        None => Ok(()),
    }
}

/// Checks that `bytes` is a transaction marker: a whole control batch of a producer whose one
/// record is a COMMIT or an ABORT.
pub(crate) fn check_marker_batch(bytes: &[u8]) -> Result<BatchHeader, AppendError> {
    let header = check_whole(bytes, u32::MAX)?;
    if super::producer_state::txn_marker_of(&header, bytes).is_none() {
        return Err(AppendError::Corrupt(
            "not a transaction marker (a producer's control batch, COMMIT or ABORT)".into(),
        ));
    }
    Ok(header)
}

/// Checks that `bytes` is exactly one whole v2 batch with a good CRC, within `max` bytes.
fn check_whole(bytes: &[u8], max: u32) -> Result<BatchHeader, AppendError> {
    let header = BatchHeader::parse(bytes, u32::MAX)
        .map_err(|e| AppendError::Corrupt(e.to_string()))?
        .ok_or_else(|| {
            AppendError::Corrupt(format!(
                "{} bytes is shorter than a batch header",
                bytes.len()
            ))
        })?;
    if header.size() as usize != bytes.len() {
        return Err(AppendError::Corrupt(format!(
            "batch length says {} bytes but {} were sent",
            header.size(),
            bytes.len()
        )));
    }
    if bytes.len() as u64 > u64::from(max) {
        return Err(AppendError::TooLarge {
            size: bytes.len() as u64,
            max,
        });
    }
    batch::verify_crc(bytes).map_err(|e| AppendError::Corrupt(e.to_string()))?;
    if header.record_count == 0 {
        return Err(AppendError::Corrupt("batch holds no records".into()));
    }
    if i64::from(header.record_count) != i64::from(header.last_offset_delta) + 1 {
        return Err(AppendError::Corrupt(format!(
            "record count {} does not match last offset delta {}",
            header.record_count, header.last_offset_delta
        )));
    }
    Ok(header)
}
