//! The writer's Raft operations on a replicated log (truncation, purging, snapshot
//! installation), finding entries by Raft index, and recovering the Raft side at start-up.
//!
//! See [`super::raft`] for the layout. Every operation here runs on the partition's writer, in
//! the order Raft asked for it, so the file follows the log Raft sees.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use silt_index::batch::BatchHeader;
use silt_index::segment::SegmentFile;

use super::appender::Writer;
use super::raft::{
    CHECKPOINT_INTERVAL_BYTES, EpochCache, RaftLogId, RaftShared, RaftSpan, RaftState, ResetTo,
    raft_file_name, read_raft_file, write_raft_file,
};
use super::recovery::{self, Recovered};
use super::segment::Segment;
use super::storage::Storage;
use super::{LogConfig, LogError};

/// Finds Raft entry `index` among `segments` (offset order): its segment, file position and
/// batch header; `None` if the file does not hold it.
pub(crate) fn locate(
    segments: &[Arc<Segment>],
    index: u64,
) -> Result<Option<(Arc<Segment>, u64, BatchHeader)>, LogError> {
    // The last segment whose first entry is at or before `index`.
    let found = segments.iter().rev().find(|s| {
        s.raft()
            .as_ref()
            .is_some_and(|span| span.base_index <= index)
    });
    let Some(segment) = found else {
        return Ok(None);
    };
    let (at, position) = {
        let span = segment.raft();
        span.as_ref()
            .expect("found by its span")
            .checkpoint_before(index)
    };
    let mut found = None;
    walk(segment, at, position, |at, position, header| {
        if at == index {
            found = Some((position, *header));
            false
        } else {
            true
        }
    })?;
    Ok(found.map(|(position, header)| (segment.clone(), position, header)))
}

/// The last Raft entry among `segments` (offset order) whose records all lie below `offset`:
/// its log id and the offset after it; `None` if the file holds no such entry.
pub(crate) fn entry_ending_by(
    segments: &[Arc<Segment>],
    offset: i64,
) -> Result<Option<(RaftLogId, i64)>, LogError> {
    for segment in segments.iter().rev() {
        if segment.base_offset() >= offset {
            continue;
        }
        // The nearest checkpoint at or before the batch holding `offset - 1`.
        let hint = segment
            .locate(offset - 1)?
            .map_or(segment.committed(), |(position, _)| position);
        let (at, position) = {
            let span = segment.raft();
            let Some(span) = span.as_ref() else {
                return Ok(None);
            };
            let i = span.checkpoints.partition_point(|&(_, p)| p <= hint);
            span.checkpoints[i.saturating_sub(1)]
        };
        let mut found = None;
        walk(segment, at, position, |index, _, header| {
            if header.next_offset() > offset {
                return false;
            }
            let term = u64::try_from(header.partition_leader_epoch).unwrap_or(0);
            found = Some(((index, term), header.next_offset()));
            true
        })?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// Walks the batch headers of `segment` from entry `at` at `position` to its end (or until
/// `visit` returns false), noting checkpoints in its span on the way. Returns the index after
/// the last entry visited.
fn walk(
    segment: &Segment,
    mut at: u64,
    mut position: u64,
    mut visit: impl FnMut(u64, u64, &BatchHeader) -> bool,
) -> Result<u64, LogError> {
    let end = segment.committed();
    while position < end {
        let header = segment.read_header(position)?;
        if !visit(at, position, &header) {
            return Ok(at);
        }
        position += u64::from(header.size());
        at += 1;
        if position < end {
            let mut span = segment.raft();
            let span = span.as_mut().expect("a replicated segment");
            let &(_, last) = span.checkpoints.last().expect("the base checkpoint");
            if position >= last + CHECKPOINT_INTERVAL_BYTES {
                span.checkpoints.push((at, position));
            }
        }
    }
    Ok(at)
}

/// Counts the entries of a segment found at start-up, once (walking its headers).
pub(crate) fn count_entries(segment: &Segment) -> Result<u64, LogError> {
    let (base, at, position) = {
        let span = segment.raft();
        let span = span.as_ref().expect("a replicated segment");
        if let Some(count) = span.count {
            return Ok(count);
        }
        let &(at, position) = span.checkpoints.last().expect("the base checkpoint");
        (span.base_index, at, position)
    };
    let next = walk(segment, at, position, |_, _, _| true)?;
    let count = next - base;
    segment.raft().as_mut().expect("a replicated segment").count = Some(count);
    Ok(count)
}

/// The leader epoch of the last batch of a segment, if it holds any.
fn last_epoch(segment: &Segment) -> Result<Option<u64>, LogError> {
    let info = segment.info();
    if info.size_bytes == 0 {
        return Ok(None);
    }
    let last_offset = segment.indexer().stats().last_batch_offset;
    let located = segment.locate(last_offset)?;
    Ok(located.map(|(_, header)| u64::try_from(header.partition_leader_epoch).unwrap_or(0)))
}

/// Builds the Raft side of a log just recovered: each segment's first index (from its Raft
/// file), the last entry, the purged and applied ids, the leader epochs. Also returns the
/// first high watermark: the offset after what was applied before the restart (committed),
/// or the log start.
pub(crate) fn recover_raft(
    storage: &dyn Storage,
    dir: &Path,
    recovered: &Recovered,
) -> Result<(RaftShared, i64), LogError> {
    let state = RaftState::read(storage, dir)?;
    let segments = &recovered.segments;
    let last_at = segments.len() - 1;
    for (at, segment) in segments.iter().enumerate() {
        let path = dir.join(raft_file_name(segment.base_offset()));
        let base_index = if storage.exists(&path) {
            read_raft_file(storage, &path)?
        } else if at == 0 {
            // A log made before it was replicated, or whose first Raft file was lost before
            // anything was written: it starts after what was purged.
            let base = state.purged.map_or(0, |(i, _)| i + 1);
            write_raft_file(storage, dir, segment.base_offset(), base)?;
            base
        } else {
            // The Raft file is written before its segment exists: a segment without one
            // cannot be ours.
            return Err(LogError::corrupt(
                dir.join(silt_index::segment::segment_file_name(
                    segment.base_offset(),
                    SegmentFile::Log,
                )),
                0,
                "segment of a replicated log without its Raft file".into(),
            ));
        };
        *segment.raft() = Some(RaftSpan::uncounted(base_index));
        if at == last_at
            && let Some(next) = recovered.clean_next_index
        {
            let span = &mut *segment.raft();
            let span = span.as_mut().expect("set above");
            span.count = Some(next.checked_sub(base_index).ok_or_else(|| {
                LogError::corrupt(
                    path.clone(),
                    0,
                    format!("clean shutdown names index {next} below the segment's {base_index}"),
                )
            })?);
        }
    }
    let active = &segments[last_at];
    let count = count_entries(active)?;
    let active_base = active.raft().as_ref().expect("set above").base_index;
    let last = if count > 0 {
        let term = last_epoch(active)?.expect("a segment with entries has a last batch");
        Some((active_base + count - 1, term))
    } else if last_at > 0 {
        let term = last_epoch(&segments[last_at - 1])?.ok_or_else(|| {
            LogError::corrupt(dir.to_path_buf(), 0, "an empty sealed segment".into())
        })?;
        let index = active_base.checked_sub(1).ok_or_else(|| {
            LogError::corrupt(dir.to_path_buf(), 0, "entries before index 0".into())
        })?;
        Some((index, term))
    } else {
        state.purged.filter(|(i, _)| i + 1 == active_base)
    };
    let epochs = match EpochCache::read(storage, dir) {
        Some(cache) => cache.until(recovered.next_offset),
        None => {
            let cache = rebuild_epochs(segments)?;
            cache.write(storage, dir)?;
            cache
        }
    };
    let first_readable = match state.applied {
        Some((index, _)) if last.is_some_and(|(l, _)| index <= l) => locate(segments, index)?
            .map_or(recovered.log_start_offset, |(_, _, header)| {
                header.next_offset()
            }),
        _ => recovered.log_start_offset,
    };
    Ok((RaftShared::new(last, state, epochs), first_readable))
}

/// The leader epochs of a log, from its batches (when the checkpoint is missing).
fn rebuild_epochs(segments: &[Arc<Segment>]) -> Result<EpochCache, LogError> {
    let mut cache = EpochCache::default();
    for segment in segments {
        let end = segment.committed();
        let mut position = 0;
        while position < end {
            let header = segment.read_header(position)?;
            cache.assign(header.partition_leader_epoch, header.base_offset);
            position += u64::from(header.size());
        }
    }
    Ok(cache)
}

impl Writer {
    fn raft(&self) -> &RaftShared {
        self.shared
            .raft
            .as_ref()
            .expect("Raft operations on a replicated log")
    }

    /// Notes that entry `index` of `term` was written at `position` of the active segment.
    pub(super) fn entry_written(&mut self, index: u64, term: u64, position: u64, next_offset: i64) {
        if let Some(span) = self.active.raft().as_mut() {
            span.on_entry(index, position);
        }
        let raft = self.raft();
        raft.written_next.store(index + 1, Ordering::Release);
        raft.remember(index, next_offset);
        let mut pending = raft.pending.lock().unwrap_or_else(|p| p.into_inner());
        // The same index may have been truncated and appended again meanwhile (another term).
        if pending.get(&index).is_some_and(|(t, _)| *t == term) {
            pending.remove(&index);
        }
    }

    /// Makes an empty log (no entry written, nothing purged) start at `index`. Anything else
    /// is a hole, which Raft never makes.
    pub(super) fn start_empty_log_at(&mut self, index: u64) {
        let empty = self.active.committed() == 0
            && self.shared.all_segments().len() == 1
            && self.raft().raft_state().purged.is_none();
        assert!(
            empty,
            "Raft entry {index} appended where {} was due",
            self.next_index
        );
        if let Err(e) = write_raft_file(
            self.shared.storage.as_ref(),
            &self.shared.dir,
            self.active.base_offset(),
            index,
        ) {
            tracing::error!(error = %e, "cannot name the first Raft index; partition stopped");
            self.shared.closed.store(true, Ordering::Release);
            return;
        }
        *self.active.raft() = Some(RaftSpan::empty(index));
        self.next_index = index;
        self.raft().written_next.store(index, Ordering::Release);
        self.raft().flushed_next.store(index, Ordering::Release);
    }

    /// Drops every entry after `after` from the file (`None`: all of them): the log ends there,
    /// with its producer state and leader epochs as of that point.
    ///
    /// # Panics
    ///
    /// If that would drop a committed entry (Raft never asks for it).
    pub(super) fn truncate_after(&mut self, after: Option<u64>) -> Result<(), LogError> {
        let first_dropped = after.map_or(0, |a| a + 1);
        if first_dropped >= self.next_index {
            return Ok(()); // only entries that never reached the writer
        }
        let segments = self.shared.all_segments();
        let Some((segment, position, header)) = locate(&segments, first_dropped)? else {
            return Err(LogError::corrupt(
                self.shared.dir.clone(),
                0,
                format!("entry {first_dropped} to truncate from is not in the log"),
            ));
        };
        let offset = header.base_offset;
        let committed = RaftShared::load(&self.raft().commit_next);
        assert!(
            first_dropped >= committed,
            "truncating committed entry {first_dropped} (committed up to {committed})"
        );
        let storage = self.shared.storage.clone();
        let dir = self.shared.dir.clone();
        // Later segments go entirely; this one is cut at the batch.
        let mut kept: Vec<Arc<Segment>> = Vec::new();
        for s in &segments {
            if s.base_offset() > segment.base_offset() {
                remove_segment_files(storage.as_ref(), &dir, s)?;
            } else if s.base_offset() < segment.base_offset() {
                kept.push(s.clone());
            }
        }
        let path = segment.path(SegmentFile::Log);
        let file = segment.file().clone();
        file.set_len(position)
            .map_err(|e| LogError::io("truncate", path.clone(), e))?;
        file.sync_data()
            .map_err(|e| LogError::io("sync", path.clone(), e))?;
        for kind in [SegmentFile::OffsetIndex, SegmentFile::TimeIndex] {
            let stale = segment.path(kind);
            if storage.exists(&stale) {
                storage
                    .remove_file(&stale)
                    .map_err(|e| LogError::io("remove", stale.clone(), e))?;
            }
        }
        storage
            .sync_dir(&dir)
            .map_err(|e| LogError::io("sync directory", dir.clone(), e))?;
        let config: LogConfig = self.shared.config();
        let (indexer, stop) =
            recovery::scan_segment(&path, segment.base_offset(), &file, position, &config)?;
        assert!(stop.is_none(), "the kept part of the segment scans whole");
        let base_index = segment.raft().as_ref().expect("replicated").base_index;
        let active = Arc::new(Segment::new(
            segment.base_offset(),
            &dir,
            file,
            indexer,
            false,
            self.shared.clock.now_ms(),
        ));
        *active.raft() = Some(RaftSpan::uncounted(base_index));
        count_entries(&active)?;
        kept.push(active.clone());
        self.shared.set_segments(kept.clone());
        self.active = active;
        self.allocated = position;
        self.next_offset = offset;
        self.next_index = first_dropped;
        self.unflushed = false;
        // Producers and epochs as of the new end.
        let snapshots = snapshot_files(storage.as_ref(), &dir)?;
        let producers = recovery::recover_producers(
            storage.as_ref(),
            &kept,
            &snapshots,
            offset,
            self.shared.clock.now_ms(),
        )?;
        *self.shared.producers() = producers;
        let raft = self.raft();
        let epochs = {
            let mut epochs = raft.epochs.lock().unwrap_or_else(|p| p.into_inner());
            epochs.truncate_from_end(offset);
            epochs.clone()
        };
        epochs.write(storage.as_ref(), &dir)?;
        raft.written_next.store(first_dropped, Ordering::Release);
        raft.flushed_next.fetch_min(first_dropped, Ordering::AcqRel);
        raft.forget_recent_from(first_dropped);
        self.shared.log_end.store(offset, Ordering::Release);
        self.shared
            .flushed_offset
            .fetch_min(offset, Ordering::AcqRel);
        tracing::info!(dir = %dir.display(), from_index = first_dropped, offset, "truncated the replicated log");
        Ok(())
    }

    /// Records `upto` as purged: Raft reads nothing at or before it again. The segments stay
    /// (they serve reads until retention drops them, see [`Writer::drop_purged`]).
    pub(super) fn purge(&mut self, upto: RaftLogId) -> Result<(), LogError> {
        let storage = self.shared.storage.clone();
        let dir = self.shared.dir.clone();
        if upto.0 >= self.next_index {
            // Everything goes, and the log continues after `upto`: seal what the active
            // segment holds, and name the new first index.
            if self.active.committed() > 0 {
                self.roll()?;
            }
            let next = upto.0 + 1;
            write_raft_file(storage.as_ref(), &dir, self.active.base_offset(), next)?;
            *self.active.raft() = Some(RaftSpan::empty(next));
            self.next_index = next;
            let raft = self.raft();
            raft.written_next.store(next, Ordering::Release);
            raft.flushed_next.store(next, Ordering::Release);
        }
        self.raft().update_state(storage.as_ref(), &dir, |state| {
            if state.purged.is_none_or(|p| p.0 < upto.0) {
                state.purged = Some(upto);
                true
            } else {
                false
            }
        })
    }

    /// What a snapshot after entry `index` holds (see `PartitionLog::snapshot_point`).
    pub(super) fn snapshot_point(
        &mut self,
        index: u64,
    ) -> Result<Option<super::raft::SnapshotPoint>, LogError> {
        let Some(next_offset) = self.shared.next_offset_after(index)? else {
            return Ok(None);
        };
        let epochs = self
            .raft()
            .epochs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .until(next_offset);
        Ok(Some(super::raft::SnapshotPoint {
            next_offset,
            producers: super::raft::producers_at(&self.shared, next_offset)?,
            epochs,
        }))
    }

    /// Drops whole sealed segments from the oldest while all their entries are purged and
    /// they end at or before `keep_from` (never the active one). Returns how many went.
    pub(super) fn drop_purged(&mut self, keep_from: i64) -> Result<usize, LogError> {
        let storage = self.shared.storage.clone();
        let dir = self.shared.dir.clone();
        let purged_next = self.raft().raft_state().purged.map_or(0, |(i, _)| i + 1);
        let segments = self.shared.all_segments();
        let mut dropped = 0;
        for pair in segments.windows(2) {
            let (segment, next) = (&pair[0], &pair[1]);
            // A sealed segment ends where the next begins.
            let next_base = next.raft().as_ref().map(|s| s.base_index);
            if next_base.is_none_or(|b| b > purged_next) || next.base_offset() > keep_from {
                break;
            }
            remove_segment_files(storage.as_ref(), &dir, segment)?;
            self.shared.set_log_start_offset(next.base_offset());
            dropped += 1;
        }
        if dropped > 0 {
            storage
                .sync_dir(&dir)
                .map_err(|e| LogError::io("sync directory", dir.clone(), e))?;
            self.shared.set_segments(segments[dropped..].to_vec());
        }
        Ok(dropped)
    }

    /// Replaces the whole log with an empty one that continues after `to.last` at
    /// `to.next_offset` (a snapshot was installed).
    pub(super) fn reset(&mut self, to: ResetTo) -> Result<(), LogError> {
        let storage = self.shared.storage.clone();
        let dir = self.shared.dir.clone();
        for segment in self.shared.all_segments() {
            remove_segment_files(storage.as_ref(), &dir, &segment)?;
        }
        for (_, path) in snapshot_files(storage.as_ref(), &dir)? {
            storage
                .remove_file(&path)
                .map_err(|e| LogError::io("remove", path.clone(), e))?;
        }
        let next_index = to.last.0 + 1;
        write_raft_file(storage.as_ref(), &dir, to.next_offset, next_index)?;
        let config = self.shared.config();
        let active = recovery::create_segment(storage.as_ref(), &dir, to.next_offset, &config)?;
        *active.raft() = Some(RaftSpan::empty(next_index));
        recovery::write_snapshot(storage.as_ref(), &dir, to.next_offset, &to.producers)?;
        to.epochs.write(storage.as_ref(), &dir)?;
        let raft = self.raft();
        raft.update_state(storage.as_ref(), &dir, |state| {
            state.purged = Some(to.last);
            state.applied = Some(to.last);
            true
        })?;
        *raft.epochs.lock().unwrap_or_else(|p| p.into_inner()) = to.epochs.clone();
        *raft.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(to.last);
        raft.written_next.store(next_index, Ordering::Release);
        raft.flushed_next.store(next_index, Ordering::Release);
        raft.commit_next.fetch_max(next_index, Ordering::AcqRel);
        raft.forget_recent_from(0);
        raft.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        *self.shared.producers() = to.producers;
        self.allocated = active
            .file()
            .len()
            .map_err(|e| LogError::io("stat", active.path(SegmentFile::Log), e))?;
        self.shared.set_segments(vec![active.clone()]);
        self.active = active;
        self.next_offset = to.next_offset;
        self.next_index = next_index;
        self.unflushed = false;
        self.shared.set_log_start_offset(to.next_offset);
        self.shared.log_end.store(to.next_offset, Ordering::Release);
        self.shared
            .flushed_offset
            .store(to.next_offset, Ordering::Release);
        self.shared.refresh_high_watermark_to(to.next_offset);
        tracing::info!(dir = %dir.display(), next_index, next_offset = to.next_offset, "replicated log reset to a snapshot");
        Ok(())
    }
}

/// Removes a segment's files (log, indexes, Raft file).
fn remove_segment_files(
    storage: &dyn Storage,
    dir: &Path,
    segment: &Segment,
) -> Result<(), LogError> {
    let base = segment.base_offset();
    let mut paths: Vec<std::path::PathBuf> = [
        SegmentFile::Log,
        SegmentFile::OffsetIndex,
        SegmentFile::TimeIndex,
    ]
    .into_iter()
    .map(|kind| segment.path(kind))
    .collect();
    paths.push(dir.join(raft_file_name(base)));
    for path in paths {
        if storage.exists(&path) {
            storage
                .remove_file(&path)
                .map_err(|e| LogError::io("remove", path.clone(), e))?;
        }
    }
    Ok(())
}

/// The producer snapshot files of a partition directory, by offset.
fn snapshot_files(
    storage: &dyn Storage,
    dir: &Path,
) -> Result<std::collections::BTreeMap<i64, std::path::PathBuf>, LogError> {
    let names = storage
        .list_dir(dir)
        .map_err(|e| LogError::io("list directory", dir.to_path_buf(), e))?;
    Ok(names
        .iter()
        .filter_map(|n| recovery::parse_snapshot_name(n).map(|o| (o, dir.join(n))))
        .collect())
}
