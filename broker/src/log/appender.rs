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
//!
//! A replicated log ([`super::raft`]) takes Raft entries instead ([`Command::AppendEntries`]):
//! the leader checked them before they were replicated, so the writer never refuses one; it
//! gives each its offsets, writes the term as its leader epoch, records its producer state,
//! and reports when the group is fsynced. Its high watermark is the commit point, not the
//! flush point. Truncation, purging and snapshot installation are in [`super::raft_writer`].

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
use super::producer_state::{Check, ProducerEntry, SequenceError};
use super::raft::{EntryBody, EntryWrite, Flushed, ResetTo};
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
    /// A client sent a control batch: only the broker writes those (transaction markers,
    /// Raft's own entries).
    #[error("control batches are written by the broker, not by clients")]
    Control,
    /// A record without a key, to a compacted topic.
    #[error(
        "a compacted topic requires a key on every record; the record at offset delta {offset_delta} has none"
    )]
    KeyRequired {
        /// Its offset delta in the batch.
        offset_delta: i64,
    },
    /// Writing or syncing failed.
    #[error("storage failure: {0}")]
    Storage(String),
    /// The log is closed or stopped.
    #[error("partition log is closed")]
    Closed,
    /// This replica does not lead the partition (or stopped leading before the append was
    /// committed: its outcome is unknown, an idempotent producer's retry is safe).
    #[error("not the partition's leader (the leader is {})", leader.map_or("unknown".to_string(), |l| format!("broker {l}")))]
    NotLeader {
        /// The leader, if known.
        leader: Option<i32>,
    },
    /// Fewer replicas are in sync than the topic's `min.insync.replicas`.
    #[error("{in_sync} replica(s) in sync, min.insync.replicas is {required}")]
    NotEnoughReplicas {
        /// In-sync replicas, the leader included.
        in_sync: usize,
        /// What the topic requires.
        required: usize,
    },
}

/// An append on its way to the writer.
#[derive(Debug)]
pub(crate) struct AppendRequest {
    pub batch: Bytes,
    pub header: BatchHeader,
    pub durability: Durability,
    pub reply: oneshot::Sender<Result<Appended, AppendError>>,
}

/// Raft entries on their way to the writer, and who to tell when they are fsynced.
pub(crate) struct EntriesRequest {
    pub entries: Vec<EntryWrite>,
    pub flushed: Flushed,
}

impl std::fmt::Debug for EntriesRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntriesRequest")
            .field("entries", &self.entries.len())
            .finish_non_exhaustive()
    }
}

/// What the writer can be asked to do.
#[derive(Debug)]
pub(crate) enum Command {
    Append(AppendRequest),
    /// Append Raft entries (a replicated log).
    AppendEntries(EntriesRequest),
    /// Drop every entry after index `after` (`None`: every entry).
    Truncate {
        after: Option<u64>,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    /// Record this log id purged (Raft reads nothing at or before it again).
    Purge {
        upto: super::raft::RaftLogId,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    /// Read what a snapshot after a Raft entry holds.
    SnapshotPoint {
        index: u64,
        reply: oneshot::Sender<Result<Option<super::raft::SnapshotPoint>, LogError>>,
    },
    /// Drop whole segments whose entries are all purged and that end at or before an offset.
    DropPurged {
        keep_from: i64,
        reply: oneshot::Sender<Result<usize, LogError>>,
    },
    /// Replace the whole log with an empty one after an installed snapshot.
    Reset {
        to: Box<ResetTo>,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
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
pub(super) struct Pending {
    /// The batch after its header.
    pub body: Bytes,
    pub header_bytes: [u8; BATCH_HEADER_BYTES],
    pub header: BatchHeader,
    pub log_append_time: i64,
    /// Producer entry before this batch was recorded, to roll back a failed write.
    pub undo: Option<(i64, Option<ProducerEntry>)>,
    pub origin: Origin,
}

/// Who a pending batch is answered to.
pub(super) enum Origin {
    /// A client append (single replica).
    Client {
        reply: oneshot::Sender<Result<Appended, AppendError>>,
        durability: Durability,
    },
    /// A Raft entry.
    Entry {
        index: u64,
        term: u64,
        written: Option<oneshot::Sender<Appended>>,
    },
}

/// A piece of work of a group: a client append or a request of Raft entries.
enum Incoming {
    Client(AppendRequest),
    Entries(EntriesRequest),
}

impl Incoming {
    fn bytes(&self) -> u64 {
        match self {
            Incoming::Client(r) => r.batch.len() as u64,
            Incoming::Entries(r) => r
                .entries
                .iter()
                .map(|e| match &e.body {
                    EntryBody::Batch(b) => b.len() as u64,
                    EntryBody::Control { value, .. } => value.len() as u64 + 80,
                })
                .sum(),
        }
    }
}

/// The writer's state; moved into a blocking thread for each group and back.
pub(crate) struct Writer {
    pub(super) shared: Arc<LogShared>,
    pub(super) active: Arc<Segment>,
    pub(super) allocated: u64,
    pub(super) next_offset: i64,
    pub(super) unflushed: bool,
    /// Durable appends written but waiting for the group's fsync.
    waiting: Vec<(oneshot::Sender<Result<Appended, AppendError>>, Appended)>,
    /// For a replicated log: the index the next entry must have.
    pub(super) next_index: u64,
    /// Raft entries written and waiting for the group's fsync.
    flush_waiters: Vec<Flushed>,
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<LogShared>,
        active: Arc<Segment>,
        next_offset: i64,
        next_index: u64,
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
            unflushed: false,
            waiting: Vec::new(),
            next_index,
            flush_waiters: Vec::new(),
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
                Command::Append(_) | Command::AppendEntries(_) => {
                    let first = match command {
                        Command::Append(request) => Incoming::Client(request),
                        Command::AppendEntries(request) => Incoming::Entries(request),
                        _ => unreachable!("matched above"),
                    };
                    let mut bytes = first.bytes();
                    let mut group = vec![first];
                    let group_bytes_max = self.shared.config().group_bytes_max;
                    let mut deferred = None;
                    while bytes < group_bytes_max && group.len() < GROUP_APPENDS_MAX {
                        let incoming = match commands.try_recv() {
                            Ok(Command::Append(request)) => Incoming::Client(request),
                            Ok(Command::AppendEntries(request)) => Incoming::Entries(request),
                            Ok(other) => {
                                deferred = Some(other);
                                break;
                            }
                            Err(_) => break,
                        };
                        bytes += incoming.bytes();
                        group.push(incoming);
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
            Command::Append(_) | Command::AppendEntries(_) => {
                unreachable!("appends are grouped by run")
            }
            Command::Truncate { after, reply } => {
                let (writer, result) = self.blocking(move |w| w.truncate_after(after)).await?;
                let _ = reply.send(result);
                Some(writer)
            }
            Command::Purge { upto, reply } => {
                let (writer, result) = self.blocking(move |w| w.purge(upto)).await?;
                let _ = reply.send(result);
                Some(writer)
            }
            Command::SnapshotPoint { index, reply } => {
                let (writer, result) = self.blocking(move |w| w.snapshot_point(index)).await?;
                let _ = reply.send(result);
                Some(writer)
            }
            Command::DropPurged { keep_from, reply } => {
                let (writer, result) = self.blocking(move |w| w.drop_purged(keep_from)).await?;
                let _ = reply.send(result);
                Some(writer)
            }
            Command::Reset { to, reply } => {
                let (writer, result) = self.blocking(move |w| w.reset(*to)).await?;
                let _ = reply.send(result);
                Some(writer)
            }
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
        // tens of microseconds). In a simulation it runs in place too; elsewhere
        // (current-thread runtimes in tests) it moves to the blocking pool.
        let flavor = tokio::runtime::Handle::current().runtime_flavor();
        let outcome = if flavor == tokio::runtime::RuntimeFlavor::MultiThread
            || crate::raft::runtime::simulated()
        {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let work = || {
                    let result = f(&mut self);
                    (self, result)
                };
                if flavor == tokio::runtime::RuntimeFlavor::MultiThread {
                    tokio::task::block_in_place(work)
                } else {
                    // A simulation on simulated storage: in place (see `runtime::simulated`).
                    work()
                }
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

    fn append_group(&mut self, group: Vec<Incoming>) {
        if self.shared.closed.load(Ordering::Acquire) {
            for incoming in group {
                match incoming {
                    Incoming::Client(r) => refuse(Command::Append(r)),
                    Incoming::Entries(r) => refuse(Command::AppendEntries(r)),
                }
            }
            return;
        }
        let now = self.shared.clock.now_ms();
        let config = self.shared.config();
        let mut pending: Vec<Pending> = Vec::with_capacity(group.len());
        let mut pending_bytes = 0u64;
        let mut flushed: Vec<Flushed> = Vec::new();
        for incoming in group {
            match incoming {
                Incoming::Client(request) => {
                    self.accept_client(request, &config, now, &mut pending, &mut pending_bytes)
                }
                Incoming::Entries(request) => {
                    for entry in request.entries {
                        if !self.accept_entry(entry, &config, now, &mut pending, &mut pending_bytes)
                        {
                            break;
                        }
                    }
                    flushed.push(request.flushed);
                }
            }
        }
        if !self.commit(&mut pending, &mut pending_bytes, now) {
            for callback in flushed {
                callback(Err(LogError::Closed));
            }
            return;
        }
        if self.shared.closed.load(Ordering::Acquire) {
            // A Raft entry could not be written: its callers must not hear it is durable.
            for callback in flushed {
                callback(Err(LogError::Closed));
            }
        } else {
            self.flush_waiters.extend(flushed);
        }
        self.finish_durable();
    }

    /// Checks a client's batch (single replica), gives it its offsets and queues it in
    /// `pending`, or answers it with the reason it is refused.
    fn accept_client(
        &mut self,
        request: AppendRequest,
        config: &super::LogConfig,
        now: i64,
        pending: &mut Vec<Pending>,
        pending_bytes: &mut u64,
    ) {
        let header = request.header;
        if let Err(e) = check_timestamps(&header, config, now) {
            let _ = request.reply.send(Err(e));
            return;
        }
        let check = self.shared.producers().check(&header);
        match check {
            Err(e) => {
                let _ = request.reply.send(Err(e.into()));
                return;
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
                return;
            }
            Ok(Check::Append) => {}
        }
        if let Err(e) = self.roll_before(
            u64::from(header.size()),
            i64::from(header.last_offset_delta) + 1,
            config,
            now,
            pending,
            pending_bytes,
        ) {
            let _ = request.reply.send(Err(e));
            return;
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
        let body = request.batch.slice(BATCH_HEADER_BYTES..);
        self.queue(
            header_bytes,
            body,
            log_append_time,
            Origin::Client {
                reply: request.reply,
                durability: request.durability,
            },
            now,
            pending,
            pending_bytes,
        );
    }

    /// Gives a Raft entry its offsets and queues it in `pending`. The leader checked it before
    /// it was replicated: it is never refused. Returns false if the log stopped.
    fn accept_entry(
        &mut self,
        entry: EntryWrite,
        config: &super::LogConfig,
        now: i64,
        pending: &mut Vec<Pending>,
        pending_bytes: &mut u64,
    ) -> bool {
        if entry.index != self.next_index {
            self.start_empty_log_at(entry.index);
        }
        assert_eq!(
            entry.index, self.next_index,
            "Raft entry {} appended where {} was due",
            entry.index, self.next_index
        );
        let epoch = i32::try_from(entry.term).expect("Raft terms stay below 2^31");
        let bytes = match &entry.body {
            EntryBody::Batch(bytes) => bytes.clone(),
            EntryBody::Control {
                control_type,
                value,
            } => Bytes::from(silt_index::record::encode_control_batch(
                self.next_offset,
                epoch,
                now,
                *control_type,
                value,
            )),
        };
        let header = BatchHeader::parse(&bytes, u32::MAX)
            .expect("the leader checked the batch")
            .expect("a whole batch");
        if let Err(e) = self.roll_before(
            u64::from(header.size()),
            i64::from(header.last_offset_delta) + 1,
            config,
            now,
            pending,
            pending_bytes,
        ) {
            tracing::error!(dir = %self.shared.dir.display(), error = %e, "cannot roll a replicated log; partition stopped");
            self.shared.closed.store(true, Ordering::Release);
            return false;
        }
        let mut header_bytes = [0u8; BATCH_HEADER_BYTES];
        header_bytes.copy_from_slice(&bytes[..BATCH_HEADER_BYTES]);
        batch::set_base_offset(&mut header_bytes, self.next_offset);
        batch::set_leader_epoch(&mut header_bytes, epoch);
        let log_append_time = if header.is_log_append_time() {
            header.max_timestamp
        } else {
            -1
        };
        if let Some(raft) = &self.shared.raft {
            let new_epoch = raft
                .epochs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .assign(epoch, self.next_offset);
            if new_epoch {
                let cache = raft
                    .epochs
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                if let Err(e) = cache.write(self.shared.storage.as_ref(), &self.shared.dir) {
                    tracing::warn!(error = %e, "leader epoch checkpoint not written; rebuilt at the next start");
                }
            }
        }
        self.next_index += 1;
        self.queue(
            header_bytes,
            bytes.slice(BATCH_HEADER_BYTES..),
            log_append_time,
            Origin::Entry {
                index: entry.index,
                term: entry.term,
                written: entry.written,
            },
            now,
            pending,
            pending_bytes,
        );
        true
    }

    /// Rolls the active segment first if a batch of `size` bytes taking `offsets` offsets
    /// must not go into it (`segment.bytes`, `segment.ms`, relative offsets), writing what is
    /// pending before.
    fn roll_before(
        &mut self,
        size: u64,
        offsets: i64,
        config: &super::LogConfig,
        now: i64,
        pending: &mut Vec<Pending>,
        pending_bytes: &mut u64,
    ) -> Result<(), AppendError> {
        let filled = self.active.committed() + *pending_bytes;
        let relative_end = self.next_offset + offsets - self.active.base_offset();
        let first_append = self.active.first_append_ms();
        let roll = filled > 0
            && (filled + size > config.segment_bytes
                || (first_append >= 0 && now - first_append >= config.segment_ms)
                || relative_end > i64::from(i32::MAX));
        if !roll {
            return Ok(());
        }
        if !self.commit(pending, pending_bytes, now) {
            return Err(AppendError::Storage("write failed".into()));
        }
        self.roll().map_err(|e| {
            tracing::error!(error = %e, "segment roll failed");
            AppendError::Storage(e.to_string())
        })
    }

    /// Records a batch with its offsets in the producer table and queues it for the write.
    #[allow(clippy::too_many_arguments)]
    fn queue(
        &mut self,
        header_bytes: [u8; BATCH_HEADER_BYTES],
        body: Bytes,
        log_append_time: i64,
        origin: Origin,
        now: i64,
        pending: &mut Vec<Pending>,
        pending_bytes: &mut u64,
    ) {
        let patched = BatchHeader::parse(&header_bytes, u32::MAX)
            .expect("header was valid before patching")
            .expect("whole header");
        assert_eq!(patched.base_offset, self.next_offset, "patched base offset");
        let mut producers = self.shared.producers();
        let undo = patched.has_producer_id().then(|| {
            (
                patched.producer_id,
                producers.entry(patched.producer_id).cloned(),
            )
        });
        if patched.is_control() {
            // Only a producer's control batch can be a transaction marker (Raft's own and
            // the archive pointer have none): the batch is read only for those.
            if patched.has_producer_id() {
                let mut whole = Vec::with_capacity(BATCH_HEADER_BYTES + body.len());
                whole.extend_from_slice(&header_bytes);
                whole.extend_from_slice(&body);
                if let Some(marker) = super::producer_state::txn_marker_of(&patched, &whole) {
                    producers.record_marker(&patched, marker, now);
                }
            }
        } else {
            producers.record(&patched, now);
        }
        drop(producers);
        self.next_offset = patched.next_offset();
        *pending_bytes += u64::from(patched.size());
        pending.push(Pending {
            body,
            header_bytes,
            header: patched,
            log_append_time,
            undo,
            origin,
        });
    }

    /// Writes and publishes `pending`, answering buffered appends and queueing durable ones
    /// for the next fsync. Returns false if the write failed (everything is then rolled back
    /// and answered with an error; a replicated log stops, since the entries were promised).
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
                slices.push(IoSlice::new(&p.body));
            }
            self.active.file().write_all_at(&slices, position)
        });
        if let Err(e) = result {
            tracing::error!(path = %path.display(), error = %e, "append write failed");
            // Undo in reverse so each producer ends where it was before the group.
            {
                let mut producers = self.shared.producers();
                for p in pending.iter().rev() {
                    if let Some((producer_id, entry)) = p.undo.clone() {
                        producers.restore(producer_id, entry, p.header.base_offset);
                    }
                }
            }
            self.next_offset = pending[0].header.base_offset;
            for p in pending.drain(..) {
                match p.origin {
                    Origin::Client { reply, .. } => {
                        let _ = reply.send(Err(AppendError::Storage(e.to_string())));
                    }
                    Origin::Entry { .. } => {
                        // Openraft was told the entry is appended: it cannot be taken back.
                        self.shared.closed.store(true, Ordering::Release);
                    }
                }
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
        let mut entry_position = position;
        for p in pending.drain(..) {
            let appended = Appended {
                base_offset: p.header.base_offset,
                last_offset: p.header.last_offset(),
                log_append_time: p.log_append_time,
                log_start_offset,
                duplicate: false,
            };
            match p.origin {
                Origin::Client { reply, durability } => match durability {
                    Durability::Buffered => {
                        let _ = reply.send(Ok(appended));
                    }
                    Durability::Durable => self.waiting.push((reply, appended)),
                },
                Origin::Entry {
                    index,
                    term,
                    written,
                } => {
                    self.entry_written(index, term, entry_position, p.header.next_offset());
                    if let Some(written) = written {
                        let _ = written.send(appended);
                    }
                }
            }
            entry_position += u64::from(p.header.size());
        }
        *pending_bytes = 0;
        true
    }

    /// Fsyncs if durable appends or Raft entries are waiting, then answers them.
    fn finish_durable(&mut self) {
        if self.waiting.is_empty() && self.flush_waiters.is_empty() {
            return;
        }
        let result = self.flush();
        for (reply, appended) in self.waiting.drain(..) {
            let _ = reply.send(match &result {
                Ok(()) => Ok(appended),
                Err(e) => Err(AppendError::Storage(e.to_string())),
            });
        }
        for callback in self.flush_waiters.drain(..) {
            callback(match &result {
                Ok(()) => Ok(()),
                Err(_) => Err(LogError::Closed),
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
            // A step at a time, never past where the segment rolls (unless a batch goes there).
            end.max((self.allocated + config.preallocate_bytes).min(config.segment_bytes))
        };
        self.active.file().allocate(target)?;
        self.allocated = target;
        Ok(())
    }

    /// fdatasync of the active segment. A failure stops the partition.
    pub(super) fn flush(&mut self) -> Result<(), LogError> {
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
                match &self.shared.raft {
                    // Durable now: consumers may read it.
                    None => self.shared.publish_high_watermark(self.next_offset),
                    // Durable here; readable once committed too.
                    Some(raft) => {
                        raft.flushed_next.store(self.next_index, Ordering::Release);
                        self.shared.refresh_high_watermark();
                    }
                }
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
    pub(super) fn roll(&mut self) -> Result<(), LogError> {
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
        if self.shared.raft.is_some() {
            // Its first entry's index is named before the segment exists.
            super::raft::write_raft_file(
                storage.as_ref(),
                &dir,
                self.next_offset,
                self.next_index,
            )?;
        }
        let new = recovery::create_segment(storage.as_ref(), &dir, self.next_offset, &config)?;
        if self.shared.raft.is_some() {
            *new.raft() = Some(super::raft::RaftSpan::empty(self.next_index));
        }
        let producers = self.shared.producers().clone();
        recovery::write_snapshot(storage.as_ref(), &dir, self.next_offset, &producers)?;
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
        let producers = self.shared.producers().clone();
        recovery::write_snapshot(storage.as_ref(), &dir, self.next_offset, &producers)?;
        recovery::write_clean_marker(
            storage.as_ref(),
            &dir,
            CleanShutdown {
                base_offset: self.active.base_offset(),
                size_bytes: self.active.committed(),
                next_offset: self.next_offset,
                next_index: self.shared.raft.as_ref().map(|_| self.next_index),
            },
        )?;
        self.shared.closed.store(true, Ordering::Release);
        Ok(())
    }
}

pub(crate) fn check_timestamps(
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
        Command::AppendEntries(request) => (request.flushed)(Err(LogError::Closed)),
        Command::RollIfOlder { reply, .. } => {
            let _ = reply.send(Err(LogError::Closed));
        }
        Command::DropPurged { reply, .. } => {
            let _ = reply.send(Err(LogError::Closed));
        }
        Command::SnapshotPoint { reply, .. } => {
            let _ = reply.send(Err(LogError::Closed));
        }
        Command::Flush(reply)
        | Command::Close(reply)
        | Command::Truncate { reply, .. }
        | Command::Purge { reply, .. }
        | Command::Reset { reply, .. } => {
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
