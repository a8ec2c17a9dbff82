//! The one writer of a partition: group commit.
//!
//! Appends arrive on a bounded channel. The writer takes the first, then every other append
//! already waiting (up to `group_bytes_max` bytes), and handles the group in one blocking call:
//!
//! 1. each batch is checked (size, timestamps, producer sequence), given its offsets (base
//!    offset and leader epoch patched into a copy of its 61-byte header; for `LogAppendTime`
//!    topics the time is stamped and the CRC recomputed), and its producer state recorded;
//! 2. all accepted batches go to the file in one `pwritev` (header copies and the client's
//!    bytes interleaved; nothing else is copied), after preallocating if needed;
//! 3. indexes and the written extent are published, and buffered appends (acks=0/1) are
//!    answered;
//! 4. if any append in the group asked for durability (acks=-1), one `fdatasync`, then those
//!    are answered. Otherwise the data is fsynced within `flush_interval_ms`.
//!
//! The high watermark (what consumers may read) moves only after an `fdatasync` succeeds:
//! nothing a consumer reads can be taken back by a power cut, and an offset a consumer saw is
//! never given to another record. Buffered appends therefore become readable at the latest
//! `flush_interval_ms` after they are answered.
//!
//! A segment that would outgrow `segment.bytes` (or `segment.ms`) is sealed in the middle of a
//! group: what was accepted so far is written, the segment is fsynced, truncated to its size and
//! its indexes written, and a new segment is created.
//!
//! A failed write leaves the partition as it was before the group (offsets and producer state
//! are rolled back; the next write goes to the same position). A failed fsync stops the
//! partition: after one, the kernel may have dropped the dirty pages, and nothing after them
//! can be trusted (PostgreSQL's "fsyncgate").

use std::io::IoSlice;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use silt_config::TimestampType;
use silt_index::batch::{self, BATCH_HEADER_BYTES, BatchHeader};
use tokio::sync::{mpsc, oneshot};

use super::LogError;
use super::partition_log::LogShared;
use super::producer_state::{Check, ProducerEntry, ProducerStateTable, SequenceError};
use super::recovery::{self, CleanShutdown};
use super::segment::Segment;

/// Most appends handled in one group (bounds the `pwritev` vector and the group's latency).
pub const GROUP_APPENDS_MAX: usize = 512;
/// Capacity of a partition's command channel.
pub const COMMANDS_QUEUED_MAX: usize = 1024;

/// When an append may be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// After `fdatasync` (acks=-1).
    Durable,
    /// After the write; fsynced within the flush interval (acks=0/1).
    Buffered,
}

/// A successful append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Offset of the batch's first record.
    pub base_offset: i64,
    /// Offset of its last record.
    pub last_offset: i64,
    /// The broker's timestamp for LogAppendTime topics, -1 otherwise.
    pub log_append_time: i64,
    /// First offset of the log after the append.
    pub log_start_offset: i64,
    /// True when the batch had been appended before (an idempotent retry).
    pub duplicate: bool,
}

/// Why an append was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// The bytes are not exactly one valid v2 batch.
    #[error("corrupt record batch: {0}")]
    Corrupt(String),
    /// The batch is larger than `max.message.bytes`.
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    TooLarge {
        /// Batch size.
        size: u64,
        /// The topic's limit.
        max: u32,
    },
    /// A CreateTime timestamp is too far from the broker's clock.
    #[error("timestamp {timestamp} is out of range for the topic ({reason})")]
    InvalidTimestamp {
        /// The batch's max timestamp.
        timestamp: i64,
        /// Which limit it broke.
        reason: &'static str,
    },
    /// An idempotent producer's sequence or epoch does not fit.
    #[error(transparent)]
    Sequence(#[from] SequenceError),
    /// Transactional and control batches need the transaction coordinator, which silt does not
    /// have yet.
    #[error("transactional batches are not supported")]
    Transactional,
    /// Writing or syncing failed.
    #[error("storage failure: {0}")]
    Storage(String),
    /// The log is closed or stopped.
    #[error("partition log is closed")]
    Closed,
}

/// An append on its way to the writer.
#[derive(Debug)]
pub(crate) struct AppendRequest {
    pub batch: Bytes,
    pub header: BatchHeader,
    pub durability: Durability,
    pub reply: oneshot::Sender<Result<Appended, AppendError>>,
}

/// What the writer can be asked to do.
#[derive(Debug)]
pub(crate) enum Command {
    Append(AppendRequest),
    /// Seal the active segment if it holds data appended at least `age_ms` ago.
    RollIfOlder {
        age_ms: i64,
        reply: oneshot::Sender<Result<bool, LogError>>,
    },
    /// fdatasync whatever is unflushed.
    Flush(oneshot::Sender<Result<(), LogError>>),
    /// Flush, write the active segment's indexes and the clean-shutdown marker, and stop.
    Close(oneshot::Sender<Result<(), LogError>>),
}

/// An accepted batch waiting to be written.
struct Pending {
    request: AppendRequest,
    header_bytes: [u8; BATCH_HEADER_BYTES],
    header: BatchHeader,
    log_append_time: i64,
    /// Producer entry before this batch was recorded, to roll back a failed write.
    undo: Option<(i64, Option<ProducerEntry>)>,
}

/// The writer's state; moved into a blocking thread for each group and back.
pub(crate) struct Writer {
    shared: Arc<LogShared>,
    active: Arc<Segment>,
    allocated: u64,
    next_offset: i64,
    producers: ProducerStateTable,
    unflushed: bool,
    /// Durable appends written but waiting for the group's fsync.
    waiting: Vec<(oneshot::Sender<Result<Appended, AppendError>>, Appended)>,
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<LogShared>,
        active: Arc<Segment>,
        next_offset: i64,
        producers: ProducerStateTable,
    ) -> Result<Writer, LogError> {
        let path = active.path(silt_index::segment::SegmentFile::Log);
        let allocated = active
            .file()
            .len()
            .map_err(|e| LogError::io("stat", path, e))?;
        Ok(Writer {
            shared,
            active,
            allocated,
            next_offset,
            producers,
            unflushed: false,
            waiting: Vec::new(),
        })
    }

    /// The writer's loop; returns when closed or when every handle is gone.
    pub(crate) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let shared = self.shared.clone();
        let mut flush_deadline: Option<tokio::time::Instant> = None;
        loop {
            let command = tokio::select! {
                command = commands.recv() => command,
                () = sleep_until(flush_deadline), if flush_deadline.is_some() => {
                    flush_deadline = None;
                    match self.blocking(|w| w.flush()).await {
                        Some((writer, result)) => {
                            self = writer;
                            if let Err(e) = result {
                                tracing::error!(error = %e, "background flush failed; partition stopped");
                            }
                            continue;
                        }
                        None => break,
                    }
                }
            };
            let Some(command) = command else {
                // Every handle dropped without a close: flush what we have.
                let _ = self.blocking(|w| w.flush()).await;
                break;
            };
            match command {
                Command::Append(first) => {
                    let mut group = vec![first];
                    let mut bytes = group[0].batch.len() as u64;
                    let group_bytes_max = self.shared.config().group_bytes_max;
                    let mut deferred = None;
                    while bytes < group_bytes_max && group.len() < GROUP_APPENDS_MAX {
                        match commands.try_recv() {
                            Ok(Command::Append(request)) => {
                                bytes += request.batch.len() as u64;
                                group.push(request);
                            }
                            Ok(other) => {
                                deferred = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    match self.blocking(move |w| w.append_group(group)).await {
                        Some((writer, ())) => self = writer,
                        None => break,
                    }
                    if self.unflushed && flush_deadline.is_none() {
                        let interval =
                            Duration::from_millis(self.shared.config().flush_interval_ms);
                        flush_deadline = Some(tokio::time::Instant::now() + interval);
                    }
                    // Under a steady stream of appends the select above may keep choosing the
                    // channel; the flush interval is a promise, so check it here as well.
                    if self.unflushed
                        && flush_deadline.is_some_and(|d| tokio::time::Instant::now() >= d)
                    {
                        flush_deadline = None;
                        match self.blocking(|w| w.flush()).await {
                            Some((writer, result)) => {
                                self = writer;
                                if let Err(e) = result {
                                    tracing::error!(error = %e, "flush failed; partition stopped");
                                }
                            }
                            None => break,
                        }
                    }
                    if let Some(command) = deferred {
                        match self.control(command).await {
                            Some(writer) => self = writer,
                            None => break,
                        }
                    }
                }
                other => match self.control(other).await {
                    Some(writer) => self = writer,
                    None => break,
                },
            }
            if !self.unflushed {
                flush_deadline = None;
            }
        }
        shared.closed.store(true, Ordering::Release);
        // Refuse what is still queued rather than leave callers waiting.
        commands.close();
        while let Ok(command) = commands.try_recv() {
            refuse(command);
        }
    }

    /// Runs a control command; `None` when the writer stopped.
    async fn control(self, command: Command) -> Option<Writer> {
        match command {
            Command::Append(_) => unreachable!("appends are grouped by run"),
            Command::RollIfOlder { age_ms, reply } => {
                let (writer, result) = self.blocking(move |w| w.roll_if_older(age_ms)).await?;
                let _ = reply.send(result);
                Some(writer)
            }
            Command::Flush(reply) => {
                let (writer, result) = self.blocking(|w| w.flush()).await?;
                let _ = reply.send(result);
                Some(writer)
            }
            Command::Close(reply) => {
                let result = self
                    .blocking(|w| w.close())
                    .await
                    .map_or(Err(LogError::Closed), |(_, r)| r);
                let _ = reply.send(result);
                None
            }
        }
    }

    /// Runs `f` on a blocking thread, handing the writer there and back. `None` if it panicked,
    /// which stops the partition (its callers see `Closed`).
    async fn blocking<R: Send + 'static>(
        mut self,
        f: impl FnOnce(&mut Writer) -> R + Send + 'static,
    ) -> Option<(Writer, R)> {
        let shared = self.shared.clone();
        // On the multi-threaded runtime the I/O runs right here, with the worker handed over
        // to the blocking pool for its duration (no thread hop: a 16 KiB durable append saves
        // tens of microseconds). Elsewhere (current-thread runtimes in tests) it moves to the
        // blocking pool.
        let outcome = if tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::MultiThread
        {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                tokio::task::block_in_place(|| {
                    let result = f(&mut self);
                    (self, result)
                })
            }))
            .map_err(|_| "panicked".to_string())
        } else {
            tokio::task::spawn_blocking(move || {
                let result = f(&mut self);
                (self, result)
            })
            .await
            .map_err(|e| e.to_string())
        };
        match outcome {
            Ok(pair) => Some(pair),
            Err(e) => {
                tracing::error!(dir = %shared.dir.display(), error = %e, "partition writer panicked; partition stopped");
                shared.closed.store(true, Ordering::Release);
                None
            }
        }
    }

    fn append_group(&mut self, group: Vec<AppendRequest>) {
        if self.shared.closed.load(Ordering::Acquire) {
            group.into_iter().for_each(|r| refuse(Command::Append(r)));
            return;
        }
        let now = self.shared.clock.now_ms();
        let config = self.shared.config();
        let mut pending: Vec<Pending> = Vec::with_capacity(group.len());
        let mut pending_bytes = 0u64;
        for request in group {
            let header = request.header;
            if let Err(e) = check_timestamps(&header, &config, now) {
                let _ = request.reply.send(Err(e));
                continue;
            }
            match self.producers.check(&header) {
                Err(e) => {
                    let _ = request.reply.send(Err(e.into()));
                    continue;
                }
                Ok(Check::Duplicate(meta)) => {
                    let log_append_time = if config.timestamp_type == TimestampType::LogAppendTime {
                        meta.timestamp
                    } else {
                        -1
                    };
                    let _ = request.reply.send(Ok(Appended {
                        base_offset: meta.base_offset,
                        last_offset: meta.last_offset,
                        log_append_time,
                        log_start_offset: self.shared.log_start_offset(),
                        duplicate: true,
                    }));
                    continue;
                }
                Ok(Check::Append) => {}
            }
            let size = request.batch.len() as u64;
            let filled = self.active.committed() + pending_bytes;
            let offsets_needed = i64::from(header.last_offset_delta) + 1;
            let relative_end = self.next_offset + offsets_needed - self.active.base_offset();
            let first_append = self.active.first_append_ms();
            let roll = filled > 0
                && (filled + size > config.segment_bytes
                    || (first_append >= 0 && now - first_append >= config.segment_ms)
                    || relative_end > i64::from(i32::MAX));
            if roll {
                if !self.commit(&mut pending, &mut pending_bytes, now) {
                    let _ = request
                        .reply
                        .send(Err(AppendError::Storage("write failed".into())));
                    continue;
                }
                if let Err(e) = self.roll() {
                    tracing::error!(error = %e, "segment roll failed");
                    let _ = request.reply.send(Err(AppendError::Storage(e.to_string())));
                    continue;
                }
            }
            let mut header_bytes = [0u8; BATCH_HEADER_BYTES];
            header_bytes.copy_from_slice(&request.batch[..BATCH_HEADER_BYTES]);
            batch::set_base_offset(&mut header_bytes, self.next_offset);
            batch::set_leader_epoch(&mut header_bytes, self.shared.leader_epoch);
            let log_append_time = if config.timestamp_type == TimestampType::LogAppendTime {
                batch::set_log_append_time(
                    &mut header_bytes,
                    &request.batch[BATCH_HEADER_BYTES..],
                    now,
                );
                now
            } else {
                -1
            };
            let patched = BatchHeader::parse(&header_bytes, u32::MAX)
                .expect("header was valid before patching")
                .expect("whole header");
            assert_eq!(patched.base_offset, self.next_offset, "patched base offset");
            let undo = patched.has_producer_id().then(|| {
                (
                    patched.producer_id,
                    self.producers.entry(patched.producer_id).cloned(),
                )
            });
            self.producers.record(&patched, now);
            self.next_offset = patched.next_offset();
            pending_bytes += size;
            pending.push(Pending {
                request,
                header_bytes,
                header: patched,
                log_append_time,
                undo,
            });
        }
        if !self.commit(&mut pending, &mut pending_bytes, now) {
            return;
        }
        self.finish_durable();
    }

    /// Writes and publishes `pending`, answering buffered appends and queueing durable ones
    /// for the next fsync. Returns false if the write failed (everything is then rolled back
    /// and answered with an error).
    fn commit(&mut self, pending: &mut Vec<Pending>, pending_bytes: &mut u64, now: i64) -> bool {
        if pending.is_empty() {
            return true;
        }
        let position = self.active.committed();
        let end = position + *pending_bytes;
        let path = self.active.path(silt_index::segment::SegmentFile::Log);
        let result = self.preallocate(end).and_then(|()| {
            let mut slices = Vec::with_capacity(pending.len() * 2);
            for p in pending.iter() {
                slices.push(IoSlice::new(&p.header_bytes));
                slices.push(IoSlice::new(&p.request.batch[BATCH_HEADER_BYTES..]));
            }
            self.active.file().write_all_at(&slices, position)
        });
        if let Err(e) = result {
            tracing::error!(path = %path.display(), error = %e, "append write failed");
            // Undo in reverse so each producer ends where it was before the group.
            for p in pending.iter().rev() {
                if let Some((producer_id, entry)) = p.undo.clone() {
                    self.producers.restore(producer_id, entry);
                }
            }
            self.next_offset = pending[0].header.base_offset;
            for p in pending.drain(..) {
                let _ = p
                    .request
                    .reply
                    .send(Err(AppendError::Storage(e.to_string())));
            }
            *pending_bytes = 0;
            return false;
        }
        let headers: Vec<BatchHeader> = pending.iter().map(|p| p.header).collect();
        self.active.publish(&headers, now);
        assert_eq!(self.active.committed(), end, "published extent");
        // Written, not yet durable: the high watermark waits for the fsync (see `flush`).
        self.shared
            .log_end
            .store(self.next_offset, Ordering::Release);
        self.unflushed = true;
        let log_start_offset = self.shared.log_start_offset();
        for p in pending.drain(..) {
            let appended = Appended {
                base_offset: p.header.base_offset,
                last_offset: p.header.last_offset(),
                log_append_time: p.log_append_time,
                log_start_offset,
                duplicate: false,
            };
            match p.request.durability {
                Durability::Buffered => {
                    let _ = p.request.reply.send(Ok(appended));
                }
                Durability::Durable => self.waiting.push((p.request.reply, appended)),
            }
        }
        *pending_bytes = 0;
        true
    }

    /// Fsyncs if durable appends are waiting, then answers them.
    fn finish_durable(&mut self) {
        if self.waiting.is_empty() {
            return;
        }
        let result = self.flush();
        for (reply, appended) in self.waiting.drain(..) {
            let _ = reply.send(match &result {
                Ok(()) => Ok(appended),
                Err(e) => Err(AppendError::Storage(e.to_string())),
            });
        }
    }

    /// Makes sure the file is allocated up to `end`, a preallocation step at a time.
    fn preallocate(&mut self, end: u64) -> std::io::Result<()> {
        if end <= self.allocated {
            return Ok(());
        }
        let config = self.shared.config();
        let target = if config.preallocate_bytes == 0 {
            return Ok(());
        } else {
            end.max(self.allocated + config.preallocate_bytes)
        };
        self.active.file().allocate(target)?;
        self.allocated = target;
        Ok(())
    }

    /// fdatasync of the active segment. A failure stops the partition.
    fn flush(&mut self) -> Result<(), LogError> {
        if !self.unflushed {
            return Ok(());
        }
        let path = self.active.path(silt_index::segment::SegmentFile::Log);
        match self.active.file().sync_data() {
            Ok(()) => {
                self.unflushed = false;
                self.shared
                    .flushed_offset
                    .store(self.next_offset, Ordering::Release);
                // Durable now: consumers may read it.
                self.shared.publish_high_watermark(self.next_offset);
                Ok(())
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "fdatasync failed; partition stopped");
                self.shared.closed.store(true, Ordering::Release);
                Err(LogError::io("fdatasync", path, e))
            }
        }
    }

    /// Seals the active segment and starts a new one at the next offset.
    fn roll(&mut self) -> Result<(), LogError> {
        let old = self.active.clone();
        let dir = self.shared.dir.clone();
        let storage = self.shared.storage.clone();
        let path = old.path(silt_index::segment::SegmentFile::Log);
        {
            let mut indexer = old.indexer();
            indexer.seal();
            recovery::write_indexes(storage.as_ref(), &dir, &indexer)?;
        }
        let size = old.committed();
        old.file()
            .set_len(size)
            .map_err(|e| LogError::io("truncate", path.clone(), e))?;
        self.allocated = size;
        // Sync even if the data was synced already: the new length must be durable before the
        // next segment exists, or recovery would find preallocated zeros inside a sealed one.
        self.unflushed = true;
        self.flush()?;
        // The sealed segment is whole on disk; durable appends written to it can be answered.
        self.finish_durable();
        let config = self.shared.config();
        let new = recovery::create_segment(storage.as_ref(), &dir, self.next_offset, &config)?;
        recovery::write_snapshot(storage.as_ref(), &dir, self.next_offset, &self.producers)?;
        old.mark_sealed();
        self.allocated = new.file().len().map_err(|e| {
            LogError::io("stat", new.path(silt_index::segment::SegmentFile::Log), e)
        })?;
        self.shared.add_segment(new.clone());
        self.active = new;
        tracing::debug!(dir = %dir.display(), base = self.next_offset, "rolled segment");
        Ok(())
    }

    fn roll_if_older(&mut self, age_ms: i64) -> Result<bool, LogError> {
        let first = self.active.first_append_ms();
        let now = self.shared.clock.now_ms();
        if self.active.committed() == 0 || first < 0 || now - first < age_ms {
            return Ok(false);
        }
        self.roll()?;
        Ok(true)
    }

    fn close(&mut self) -> Result<(), LogError> {
        self.flush()?;
        let dir = self.shared.dir.clone();
        let storage = self.shared.storage.clone();
        recovery::write_indexes(storage.as_ref(), &dir, &self.active.indexer())?;
        recovery::write_snapshot(storage.as_ref(), &dir, self.next_offset, &self.producers)?;
        recovery::write_clean_marker(
            storage.as_ref(),
            &dir,
            CleanShutdown {
                base_offset: self.active.base_offset(),
                size_bytes: self.active.committed(),
                next_offset: self.next_offset,
            },
        )?;
        self.shared.closed.store(true, Ordering::Release);
        Ok(())
    }
}

fn check_timestamps(
    header: &BatchHeader,
    config: &super::LogConfig,
    now: i64,
) -> Result<(), AppendError> {
    if config.timestamp_type != TimestampType::CreateTime {
        return Ok(());
    }
    let timestamp = header.max_timestamp;
    if now.saturating_sub(timestamp) > config.timestamp_before_max_ms {
        return Err(AppendError::InvalidTimestamp {
            timestamp,
            reason: "older than message.timestamp.before.max.ms",
        });
    }
    if timestamp.saturating_sub(now) > config.timestamp_after_max_ms {
        return Err(AppendError::InvalidTimestamp {
            timestamp,
            reason: "newer than message.timestamp.after.max.ms",
        });
    }
    Ok(())
}

fn refuse(command: Command) {
    match command {
        Command::Append(request) => {
            let _ = request.reply.send(Err(AppendError::Closed));
        }
        Command::RollIfOlder { reply, .. } => {
            let _ = reply.send(Err(LogError::Closed));
        }
        Command::Flush(reply) | Command::Close(reply) => {
            let _ = reply.send(Err(LogError::Closed));
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
