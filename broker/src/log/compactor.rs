//! Compaction of a partition's local log (`cleanup.policy` with `compact`).
//!
//! A pass ([`PartitionLog::compact_once`]) works on the sealed segments below the last stable
//! offset and older than `min.compaction.lag.ms` (never the active segment, never an open
//! transaction):
//!
//! 1. it maps each key of the *dirty* part (from the checkpoint on) to its newest offset, in a
//!    map of bounded memory; a partition with more keys is compacted in several passes;
//! 2. it rewrites the segments from the start of the log to the end of the map, in groups of
//!    consecutive segments that together fit `segment.bytes` (small compacted segments
//!    merge), keeping what [`silt_index::compact::clean_batch`] keeps;
//! 3. it swaps each group for its rewrite, and moves the checkpoint to the end of the map.
//!
//! # Crash safety
//!
//! A group's rewrite is written to `<base>.log.cleaned` and fsynced. Renaming it to
//! `<base>.log.swap` commits the swap: from then on a restart finishes it (recovery removes the
//! group's old files and renames the swap file into place); before it, recovery removes the
//! `.cleaned` file and the old segments stand. So a kill at any point leaves either the old or
//! the new segment set. The checkpoint is written after the swaps: a crash in between only
//! means compacting the same range again.
//!
//! # Logs that are Raft logs
//!
//! A replicated partition's segments are its Raft log, whose entries are counted batch by
//! batch: there every batch keeps its envelope (an empty batch when no record survives), so
//! the count holds.

use std::collections::HashSet;
use std::io::IoSlice;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use silt_index::SegmentIndexer;
use silt_index::batch::BatchHeader;
use silt_index::compact::{CleanRules, Cleaned, KeyMap, Mapped, clean_batch, cleaned_bytes};
use silt_index::segment::{SegmentFile, segment_file_name};

use super::partition_log::LogShared;
use super::segment::Segment;
use super::storage::{Storage, read_all, read_exact_at, write_atomic};
use super::{LogError, PartitionLog};

/// The file holding the offset below which the log has been compacted.
pub(crate) const CHECKPOINT: &str = "compaction_checkpoint";
/// Suffix of a rewrite being written.
pub(crate) const CLEANED_SUFFIX: &str = ".log.cleaned";
/// Suffix of a rewrite committed but not yet in place.
pub(crate) const SWAP_SUFFIX: &str = ".log.swap";

/// Decompressed bytes one batch may expand to while compacting.
const DECOMPRESSED_MAX: usize = 256 << 20;
/// Bytes read from a segment at a time.
const READ_CHUNK_BYTES: u64 = 1 << 20;
/// Bytes of rewritten batches buffered before a write.
const WRITE_CHUNK_BYTES: usize = 1 << 20;

/// How a compacted topic's log is compacted (from its properties).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompactionConfig {
    /// `delete.retention.ms`.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`.
    pub min_lag_ms: i64,
    /// `max.compaction.lag.ms`.
    pub max_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`.
    pub min_dirty_ratio: f64,
}

/// What a status page shows of a partition's compaction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CompactionStatus {
    /// Offset below which the log has been compacted (the checkpoint).
    pub cleaned_to: i64,
    /// Share of the compactable bytes not compacted yet, as last measured.
    pub dirty_ratio: f64,
    /// When the last pass ended (-1: none since start).
    pub last_compaction_ms: i64,
    /// Bytes the passes since start removed.
    pub bytes_reclaimed: u64,
    /// Passes since start.
    pub passes: u64,
    /// Bytes the last pass read, and how long it took (its throughput).
    pub last_pass_read_bytes: u64,
    /// See `last_pass_read_bytes`.
    pub last_pass_duration_ms: u64,
    /// When the oldest tombstone the log keeps may go (a pass then runs even with nothing
    /// dirty); `None` when it keeps none. Unknown after a restart: due at once.
    pub tombstones_due_ms: Option<i64>,
}

impl CompactionStatus {
    pub(crate) fn load(storage: &dyn Storage, dir: &std::path::Path) -> CompactionStatus {
        let cleaned_to = read_checkpoint(storage, &dir.join(CHECKPOINT)).unwrap_or(0);
        CompactionStatus {
            cleaned_to,
            dirty_ratio: 0.0,
            last_compaction_ms: -1,
            bytes_reclaimed: 0,
            passes: 0,
            last_pass_read_bytes: 0,
            last_pass_duration_ms: 0,
            tombstones_due_ms: Some(i64::MIN),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Checkpoint {
    cleaned_to: i64,
}

fn read_checkpoint(storage: &dyn Storage, path: &std::path::Path) -> Option<i64> {
    if !storage.exists(path) {
        return None;
    }
    let file = storage.open(path, false).ok()?;
    let bytes = read_all(file.as_ref()).ok()?;
    match serde_json::from_slice::<Checkpoint>(&bytes) {
        Ok(c) => Some(c.cleaned_to),
        Err(e) => {
            // Losing it only means compacting again from the start.
            tracing::warn!(path = %path.display(), error = %e, "unreadable compaction checkpoint; starting over");
            None
        }
    }
}

/// What one pass is allowed to do.
pub struct CompactOptions<'a> {
    /// Memory of the key map.
    pub key_map_bytes: u64,
    /// Segments ending after this offset are read but not rewritten (the archive has not
    /// taken them yet: it uploads segments as they were sealed).
    pub rewrite_below: i64,
    /// Compact whatever the dirty ratio.
    pub force: bool,
    /// Called with the bytes read, to pace the pass (a byte-rate limit).
    pub throttle: &'a mut dyn FnMut(u64),
}

impl std::fmt::Debug for CompactOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompactOptions")
            .field("key_map_bytes", &self.key_map_bytes)
            .field("rewrite_below", &self.rewrite_below)
            .field("force", &self.force)
            .finish_non_exhaustive()
    }
}

/// What a pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PassReport {
    /// Segments rewritten.
    pub segments_in: usize,
    /// Segments they became.
    pub segments_out: usize,
    /// Bytes read (mapping and rewriting).
    pub bytes_read: u64,
    /// Bytes of the rewritten segments before.
    pub bytes_before: u64,
    /// Their bytes after.
    pub bytes_after: u64,
    /// Keys in the map.
    pub keys: usize,
    /// The checkpoint after the pass.
    pub cleaned_to: i64,
}

impl PartitionLog {
    /// The partition's compaction status.
    pub fn compaction_status(&self) -> CompactionStatus {
        *self.shared.compaction()
    }

    /// Runs one compaction pass if the log is compacted and due (dirty ratio at or above
    /// `min.cleanable.dirty.ratio`, or dirty data older than `max.compaction.lag.ms`, or
    /// `force`). Blocking: run it on a thread of its own.
    ///
    /// # Errors
    ///
    /// I/O errors, or a batch that does not decode ([`LogError::Corrupt`]). A failure after a
    /// swap was committed closes the log (the next open finishes the swap).
    pub fn compact_once(
        &self,
        options: &mut CompactOptions<'_>,
    ) -> Result<Option<PassReport>, LogError> {
        let shared = &self.shared;
        let config = shared.config();
        let Some(compaction) = config.compaction else {
            return Ok(None);
        };
        if self.is_closed() {
            return Err(LogError::Closed);
        }
        let now = shared.clock.now_ms();
        let stable = self.last_stable_offset();
        let lag_limit = now.saturating_sub(compaction.min_lag_ms);
        let eligible: Vec<Arc<Segment>> = shared
            .all_segments()
            .into_iter()
            .take_while(|s| {
                let info = s.info();
                info.sealed
                    && info.size_bytes > 0
                    && info.next_offset <= stable
                    && (compaction.min_lag_ms == 0 || info.max_timestamp <= lag_limit)
            })
            .collect();
        let Some(first) = eligible.first() else {
            shared.compaction().dirty_ratio = 0.0;
            return Ok(None);
        };
        let cleaned_to = shared.compaction().cleaned_to.max(first.base_offset());
        let total: u64 = eligible.iter().map(|s| s.committed()).sum();
        let dirty_segments: Vec<&Arc<Segment>> = eligible
            .iter()
            .filter(|s| s.info().next_offset > cleaned_to)
            .collect();
        let dirty: u64 = dirty_segments.iter().map(|s| s.committed()).sum();
        let ratio = if total == 0 {
            0.0
        } else {
            dirty as f64 / total as f64
        };
        shared.compaction().dirty_ratio = ratio;
        let tombstones_due = shared
            .compaction()
            .tombstones_due_ms
            .is_some_and(|due| due <= now);
        match dirty_segments.first() {
            // Nothing dirty: a pass only to drop tombstones past their lifetime.
            None if tombstones_due && cleaned_to > first.base_offset() => {}
            None => return Ok(None),
            Some(first_dirty) => {
                let overdue = compaction.max_lag_ms < i64::MAX
                    && first_dirty.info().first_timestamp
                        < now.saturating_sub(compaction.max_lag_ms);
                if !options.force
                    && ratio < compaction.min_dirty_ratio
                    && !overdue
                    && !tombstones_due
                {
                    return Ok(None);
                }
            }
        }

        let started = std::time::Instant::now();
        let mut report = PassReport::default();
        let aborted = shared
            .producers()
            .aborted_between(first.base_offset(), stable);
        let is_aborted = |header: &BatchHeader| {
            header.is_transactional()
                && !header.is_control()
                && aborted.iter().any(|a| {
                    a.producer_id == header.producer_id
                        && (a.first_offset..a.last_offset).contains(&header.base_offset)
                })
        };

        // 1. The key map over the dirty segments.
        let mut map = KeyMap::with_memory(options.key_map_bytes, cleaned_to);
        'map: for segment in &dirty_segments {
            let mut reader = BatchReader::new(segment);
            while let Some((header, batch)) = reader.next()? {
                if header.next_offset() <= cleaned_to {
                    continue;
                }
                let mapped = map
                    .add_batch(&batch, is_aborted(&header), DECOMPRESSED_MAX)
                    .map_err(|e| corrupt(segment, reader.position, e))?;
                if mapped == Mapped::Full {
                    break 'map;
                }
            }
            report.bytes_read += reader.read;
            (options.throttle)(reader.read);
        }
        report.keys = map.len();
        if map.end() < cleaned_to || (map.end() == cleaned_to && !tombstones_due) {
            return Ok(None);
        }

        // 2 and 3. Rewrite and swap, group by group.
        let to_clean: Vec<Arc<Segment>> = eligible
            .iter()
            .take_while(|s| {
                s.base_offset() < map.end() && s.info().next_offset <= options.rewrite_below
            })
            .cloned()
            .collect();
        let Some(last) = to_clean.last() else {
            return Ok(None);
        };
        let new_cleaned_to = map.end().min(last.info().next_offset);
        let rules = CleanRules {
            tombstones_below: cleaned_to,
            tombstone_horizon_ms: now.saturating_sub(compaction.delete_retention_ms),
        };
        let remembered = shared.producers().remembered_batches();
        let keep_every_envelope = shared.raft.is_some();
        let mut tombstones_due_ms: Option<i64> = None;
        for group in groups(&to_clean, config.segment_bytes) {
            let before: u64 = group.iter().map(|s| s.committed()).sum();
            let rewrite = Rewrite {
                shared,
                map: &map,
                rules: &rules,
                remembered: &remembered,
                keep_every_envelope,
                is_aborted: &is_aborted,
                index_interval_bytes: config.index_interval_bytes,
            };
            let outcome = rewrite.group(group, options.throttle)?;
            report.bytes_read += outcome.read;
            if let Some(oldest) = outcome.oldest_tombstone_ms {
                let due = oldest.saturating_add(compaction.delete_retention_ms);
                tombstones_due_ms = Some(tombstones_due_ms.map_or(due, |d| d.min(due)));
            }
            let Some((path, indexer)) = outcome.written else {
                continue;
            };
            let after = indexer.stats().size_bytes;
            match swap(shared, group, path, indexer) {
                Ok(true) => {
                    report.segments_in += group.len();
                    report.segments_out += 1;
                    report.bytes_before += before;
                    report.bytes_after += after;
                }
                // The segments changed under the pass (retention, truncation): try later.
                Ok(false) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        report.cleaned_to = new_cleaned_to;
        let path = shared.dir.join(CHECKPOINT);
        let bytes = serde_json::to_vec(&Checkpoint {
            cleaned_to: new_cleaned_to,
        })
        .expect("checkpoint serialises");
        write_atomic(shared.storage.as_ref(), &path, &bytes)
            .map_err(|e| LogError::io("write", path, e))?;
        let mut status = shared.compaction();
        status.cleaned_to = new_cleaned_to;
        status.last_compaction_ms = shared.clock.now_ms();
        status.bytes_reclaimed += report.bytes_before.saturating_sub(report.bytes_after);
        status.passes += 1;
        status.last_pass_read_bytes = report.bytes_read;
        status.last_pass_duration_ms = started.elapsed().as_millis() as u64;
        // Segments past the pass keep theirs: they will be seen by the pass that reaches them.
        status.tombstones_due_ms = tombstones_due_ms;
        Ok(Some(report))
    }
}

/// Consecutive segments that together fit `segment_bytes` (each alone always forms a group),
/// whose offsets a 32-bit relative index can still cover.
fn groups(segments: &[Arc<Segment>], segment_bytes: u64) -> Vec<&[Arc<Segment>]> {
    let mut groups = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (i, segment) in segments.iter().enumerate() {
        let size = segment.committed();
        let span = segment.info().next_offset - segments[start].base_offset();
        if i > start && (bytes + size > segment_bytes || span > i64::from(i32::MAX)) {
            groups.push(&segments[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < segments.len() {
        groups.push(&segments[start..]);
    }
    groups
}

struct Rewrite<'a> {
    shared: &'a LogShared,
    map: &'a KeyMap,
    rules: &'a CleanRules,
    remembered: &'a HashSet<i64>,
    keep_every_envelope: bool,
    is_aborted: &'a dyn Fn(&BatchHeader) -> bool,
    index_interval_bytes: u32,
}

struct Rewritten {
    read: u64,
    /// The largest timestamp of the oldest batch that kept a tombstone.
    oldest_tombstone_ms: Option<i64>,
    /// The `.cleaned` file and its indexes, unless nothing changed.
    written: Option<(PathBuf, SegmentIndexer)>,
}

impl Rewrite<'_> {
    /// Writes the rewrite of `group` to `<base>.log.cleaned`, fsynced; `None` when it would
    /// be the group as it is.
    fn group(
        &self,
        group: &[Arc<Segment>],
        throttle: &mut dyn FnMut(u64),
    ) -> Result<Rewritten, LogError> {
        let storage = self.shared.storage.as_ref();
        let base = group[0].base_offset();
        let path = self.shared.dir.join(format!("{base:020}{CLEANED_SUFFIX}"));
        if storage.exists(&path) {
            storage
                .remove_file(&path)
                .map_err(|e| LogError::io("remove", path.clone(), e))?;
        }
        let file = storage
            .open(&path, true)
            .map_err(|e| LogError::io("create", path.clone(), e))?;
        let mut indexer = SegmentIndexer::new(base, self.index_interval_bytes);
        let mut changed = group.len() > 1;
        let mut pending: Vec<Bytes> = Vec::new();
        let mut pending_bytes = 0usize;
        let mut written = 0u64;
        let mut read = 0u64;
        let mut oldest_tombstone_ms: Option<i64> = None;
        let group_next = group.last().map_or(base, |s| s.info().next_offset);
        let flush = |pending: &mut Vec<Bytes>, pending_bytes: &mut usize, written: &mut u64| {
            if pending.is_empty() {
                return Ok(());
            }
            let slices: Vec<IoSlice<'_>> = pending.iter().map(|b| IoSlice::new(b)).collect();
            file.write_all_at(&slices, *written)
                .map_err(|e| LogError::io("write", path.clone(), e))?;
            *written += *pending_bytes as u64;
            pending.clear();
            *pending_bytes = 0;
            Ok::<(), LogError>(())
        };
        for segment in group {
            let mut reader = BatchReader::new(segment);
            while let Some((header, batch)) = reader.next()? {
                let envelope = self.keep_every_envelope
                    || header.next_offset() == group_next
                    || (header.has_producer_id() && self.remembered.contains(&header.base_offset));
                let cleaned = clean_batch(
                    &batch,
                    self.map,
                    self.rules,
                    (self.is_aborted)(&header),
                    envelope,
                    DECOMPRESSED_MAX,
                )
                .map_err(|e| corrupt(segment, reader.position, e))?;
                if cleaned.tombstones > 0 {
                    oldest_tombstone_ms = Some(
                        oldest_tombstone_ms
                            .map_or(header.max_timestamp, |t| t.min(header.max_timestamp)),
                    );
                }
                let cleaned = cleaned.cleaned;
                if cleaned != Cleaned::Whole {
                    changed = true;
                }
                let Some(bytes) = cleaned_bytes(&batch, cleaned) else {
                    continue;
                };
                let out = BatchHeader::parse(&bytes, u32::MAX)
                    .ok()
                    .flatten()
                    .ok_or_else(|| corrupt(segment, reader.position, "rewritten batch"))?;
                indexer.on_batch(&out);
                pending_bytes += bytes.len();
                pending.push(bytes);
                if pending_bytes >= WRITE_CHUNK_BYTES {
                    flush(&mut pending, &mut pending_bytes, &mut written)?;
                }
            }
            read += reader.read;
            throttle(reader.read);
        }
        if !changed {
            drop(file);
            storage
                .remove_file(&path)
                .map_err(|e| LogError::io("remove", path.clone(), e))?;
            return Ok(Rewritten {
                read,
                oldest_tombstone_ms,
                written: None,
            });
        }
        flush(&mut pending, &mut pending_bytes, &mut written)?;
        file.sync_data()
            .map_err(|e| LogError::io("fsync", path.clone(), e))?;
        indexer.seal();
        Ok(Rewritten {
            read,
            oldest_tombstone_ms,
            written: Some((path, indexer)),
        })
    }
}

/// Puts the rewrite of `group` in its place, if the group is still the log's (else removes
/// the rewrite and says `false`).
fn swap(
    shared: &LogShared,
    group: &[Arc<Segment>],
    cleaned: PathBuf,
    indexer: SegmentIndexer,
) -> Result<bool, LogError> {
    let storage = shared.storage.as_ref();
    let dir = &shared.dir;
    let base = group[0].base_offset();
    let first_append_ms = group[0].first_append_ms();
    let raft_base = group[0].raft().as_ref().map(|span| span.base_index);
    let replaced_files = std::cell::RefCell::new(Vec::new());
    let swapped = shared.swap_segments(group, || {
        let swap_path = dir.join(format!("{base:020}{SWAP_SUFFIX}"));
        let io = |op, path: &std::path::Path| {
            let path = path.to_path_buf();
            move |e| LogError::io(op, path, e)
        };
        storage
            .rename(&cleaned, &swap_path)
            .map_err(io("rename", &cleaned))?;
        storage.sync_dir(dir).map_err(io("sync directory", dir))?;
        // Committed: a failure from here on is finished by the next open.
        let replace = || -> Result<Arc<Segment>, LogError> {
            *replaced_files.borrow_mut() =
                finish_swap(storage, dir, base, group_next_offset(group), &swap_path)?;
            super::recovery::write_indexes(storage, dir, &indexer)?;
            let log_path = dir.join(segment_file_name(base, SegmentFile::Log));
            let file = storage.open(&log_path, false).map_err(io("open", &log_path))?;
            let segment = Arc::new(Segment::new(
                base,
                dir,
                file,
                indexer,
                true,
                first_append_ms,
            ));
            if let Some(base_index) = raft_base {
                *segment.raft() = Some(super::raft::RaftSpan::uncounted(base_index));
            }
            Ok(segment)
        };
        replace().inspect_err(|e| {
            tracing::error!(dir = %dir.display(), error = %e, "compaction swap failed after it was committed; the partition stops until restarted");
            shared.closed.store(true, std::sync::atomic::Ordering::Release);
        })
    });
    // Out of the segments' lock: readers holding the old segments keep their open files.
    delete_gradually(storage, &replaced_files.into_inner());
    match swapped {
        Ok(true) => Ok(true),
        Ok(false) => {
            if storage.exists(&cleaned) {
                storage
                    .remove_file(&cleaned)
                    .map_err(|e| LogError::io("remove", cleaned.clone(), e))?;
            }
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

fn group_next_offset(group: &[Arc<Segment>]) -> i64 {
    group.last().map_or(0, |s| s.info().next_offset)
}

/// Suffix of a replaced segment file waiting to be deleted.
pub(crate) const DELETED_SUFFIX: &str = ".deleted";
/// Bytes a replaced segment file is cut by at a time before it is unlinked.
const DELETE_STEP_BYTES: u64 = 8 << 20;

/// Deletes replaced segment files a step at a time: freeing a gigabyte of extents at once
/// fills the file system's journal, and every fsync of every partition waits behind it (Kafka
/// deletes after `file.delete.delay.ms` for the same reason).
fn delete_gradually(storage: &dyn Storage, paths: &[PathBuf]) {
    for path in paths {
        if let Ok(file) = storage.open(path, false) {
            let mut len = file.len().unwrap_or(0);
            while len > DELETE_STEP_BYTES {
                len -= DELETE_STEP_BYTES;
                if file.set_len(len).is_err() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
        if let Err(e) = storage.remove_file(path) {
            // Recovery removes what is left.
            tracing::warn!(path = %path.display(), error = %e, "cannot delete a replaced segment file");
        }
    }
}

/// The second half of a committed swap (also run by recovery): moves the files of the
/// segments in `[base, next)` (but `base`'s log and Raft file) out of the way, then renames
/// the swap file to `base`'s log. The old logs are renamed `*.deleted` (deleted by the caller,
/// or by recovery); their indexes and Raft files are removed.
pub(crate) fn finish_swap(
    storage: &dyn Storage,
    dir: &std::path::Path,
    base: i64,
    next: i64,
    swap_path: &std::path::Path,
) -> Result<Vec<PathBuf>, LogError> {
    let names = storage
        .list_dir(dir)
        .map_err(|e| LogError::io("list directory", dir.to_path_buf(), e))?;
    let mut deleted = Vec::new();
    for name in names {
        let doomed = if let Some((b, kind)) = silt_index::segment::parse_segment_file_name(&name) {
            (base..next).contains(&b) && (kind != SegmentFile::Log || b != base)
        } else if let Some(b) = super::raft::parse_raft_file_name(&name) {
            b > base && b < next
        } else {
            false
        };
        if doomed {
            let path = dir.join(&name);
            if name.ends_with(".log") {
                let to = dir.join(format!("{name}{DELETED_SUFFIX}"));
                storage
                    .rename(&path, &to)
                    .map_err(|e| LogError::io("rename", path.clone(), e))?;
                deleted.push(to);
            } else {
                storage
                    .remove_file(&path)
                    .map_err(|e| LogError::io("remove", path.clone(), e))?;
            }
        }
    }
    let log_path = dir.join(segment_file_name(base, SegmentFile::Log));
    // The base's own old log is replaced by the rename: unlinked there, all at once. Its
    // bytes go gradually too: a hard link would keep them, but Storage has none; so it is
    // first renamed aside like the others.
    if storage.exists(&log_path) {
        let aside = dir.join(format!(
            "{}{DELETED_SUFFIX}",
            segment_file_name(base, SegmentFile::Log)
        ));
        storage
            .rename(&log_path, &aside)
            .map_err(|e| LogError::io("rename", log_path.clone(), e))?;
        deleted.push(aside);
    }
    storage
        .rename(swap_path, &log_path)
        .map_err(|e| LogError::io("rename", swap_path.to_path_buf(), e))?;
    storage
        .sync_dir(dir)
        .map_err(|e| LogError::io("sync directory", dir.to_path_buf(), e))?;
    Ok(deleted)
}

fn corrupt(segment: &Segment, position: u64, e: impl std::fmt::Display) -> LogError {
    LogError::corrupt(
        segment.path(SegmentFile::Log),
        position,
        format!("cannot compact: {e}"),
    )
}

/// Whole batches of a sealed segment, read a chunk at a time into one reused buffer (a fresh
/// megabyte per chunk would be mapped and unmapped each time, and every unmap stalls the
/// process's other threads, the request threads among them).
struct BatchReader<'a> {
    segment: &'a Segment,
    /// Position of the next batch.
    position: u64,
    end: u64,
    chunk: Vec<u8>,
    chunk_start: u64,
    /// Bytes read from the file.
    read: u64,
}

impl<'a> BatchReader<'a> {
    fn new(segment: &'a Segment) -> BatchReader<'a> {
        BatchReader {
            segment,
            position: 0,
            end: segment.committed(),
            chunk: Vec::with_capacity(READ_CHUNK_BYTES as usize),
            chunk_start: 0,
            read: 0,
        }
    }

    fn next(&mut self) -> Result<Option<(BatchHeader, Bytes)>, LogError> {
        if self.position >= self.end {
            return Ok(None);
        }
        let header = self.header_at(self.position)?;
        let size = u64::from(header.size());
        if self.position + size > self.end {
            return Err(corrupt(
                self.segment,
                self.position,
                "batch past the segment's end",
            ));
        }
        let chunk_end = self.chunk_start + self.chunk.len() as u64;
        if self.position < self.chunk_start || self.position + size > chunk_end {
            self.fill(size)?;
        }
        let from = (self.position - self.chunk_start) as usize;
        let batch = Bytes::copy_from_slice(&self.chunk[from..from + size as usize]);
        self.position += size;
        Ok(Some((header, batch)))
    }

    fn header_at(&mut self, position: u64) -> Result<BatchHeader, LogError> {
        let chunk_end = self.chunk_start + self.chunk.len() as u64;
        let header_end = position + silt_index::batch::BATCH_HEADER_BYTES as u64;
        if position < self.chunk_start || header_end > chunk_end {
            self.fill(silt_index::batch::BATCH_HEADER_BYTES as u64)?;
        }
        let from = (position - self.chunk_start) as usize;
        BatchHeader::parse(&self.chunk[from..], u32::MAX)
            .map_err(|e| corrupt(self.segment, position, e))?
            .ok_or_else(|| corrupt(self.segment, position, "short batch header"))
    }

    /// Reads from the current position at least `at_least` bytes (a chunk, within the end).
    fn fill(&mut self, at_least: u64) -> Result<(), LogError> {
        let len = at_least.max(READ_CHUNK_BYTES).min(self.end - self.position);
        self.chunk.resize(len as usize, 0);
        read_exact_at(self.segment.file().as_ref(), &mut self.chunk, self.position)
            .map_err(|e| LogError::io("read", self.segment.path(SegmentFile::Log), e))?;
        self.read += len;
        self.chunk_start = self.position;
        Ok(())
    }
}
