//! Opening a partition directory.
//!
//! Sealed segments were fsynced whole before the next segment was created, so they are trusted
//! after a cheap check: their index files must parse, their last offset entry must point at a
//! batch header with the right offset, and the headers from there must end exactly at the end
//! of the file. If not, the indexes are rebuilt from a full scan, and a sealed segment whose
//! batches do not check out stops the partition ([`LogError::Corrupt`]).
//!
//! The last segment was being appended to. After a clean close (`clean_shutdown` names it and
//! its size) it gets the same cheap check. Otherwise it is scanned batch by batch with CRCs,
//! and cut at the end of the last whole, valid batch: a torn write, a bad CRC and the zeros of
//! preallocation all end the log there.
//!
//! Idempotent-producer state is loaded from the newest snapshot at or below the log end and
//! brought up to date from the batch headers after it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use silt_index::batch::{BATCH_HEADER_BYTES, BatchHeader, ScanStop};
use silt_index::segment::{SegmentFile, parse_segment_file_name, segment_file_name};
use silt_index::{OffsetIndex, SegmentIndexer, SegmentStats, TimeIndex};

use super::producer_state::ProducerStateTable;
use super::segment::Segment;
use super::storage::{Storage, StorageFile, read_all, read_exact_at, write_atomic};
use super::{LogConfig, LogError};

/// Name of the clean-shutdown marker.
pub(crate) const CLEAN_SHUTDOWN: &str = "clean_shutdown";
/// Name of the file DeleteRecords leaves when it moves the start inside a segment.
pub(crate) const LOG_START_OFFSET: &str = "log_start_offset";
/// Name of a replicated partition's Raft vote (written by the Raft log store).
pub const RAFT_VOTE: &str = "raft_vote";
const SNAPSHOT_EXTENSION: &str = "snapshot";
/// Largest batch recovery believes in; a length field above it is garbage.
const BATCH_LENGTH_SANE_MAX: u32 = i32::MAX as u32;
/// Bytes read at a time while scanning.
const SCAN_CHUNK_BYTES: u64 = 4 << 20;

/// What the clean-shutdown marker records about the last segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CleanShutdown {
    pub base_offset: i64,
    pub size_bytes: u64,
    pub next_offset: i64,
    /// For a replicated log: the Raft index the next entry gets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_index: Option<u64>,
}

/// A recovered partition, ready for its appender.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// Segments in offset order; the last is the active one.
    pub segments: Vec<Arc<Segment>>,
    pub log_start_offset: i64,
    /// The start set by DeleteRecords (persisted), 0 if none: below the local segments too,
    /// for a partition whose older records are in the archive.
    pub records_start: i64,
    pub next_offset: i64,
    pub producers: ProducerStateTable,
    /// The clean-shutdown marker's next Raft index, when the marker was trusted.
    pub clean_next_index: Option<u64>,
}

/// Name of a producer-state snapshot taken at `offset`.
pub(crate) fn snapshot_file_name(offset: i64) -> String {
    format!("{offset:020}.{SNAPSHOT_EXTENSION}")
}

pub(crate) fn parse_snapshot_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".snapshot")?;
    (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit())).then(|| stem.parse().ok())?
}

/// Opens (creating if needed) the partition log in `dir`.
///
/// # Errors
///
/// [`LogError::Io`] when the directory cannot be read or written, [`LogError::Foreign`] for a
/// segment file silt did not write, [`LogError::Corrupt`] for a sealed segment that fails its
/// checks.
pub(crate) fn recover(
    storage: &dyn Storage,
    dir: &Path,
    config: &LogConfig,
    now_ms: i64,
) -> Result<Recovered, LogError> {
    storage
        .create_dir_all(dir)
        .map_err(|e| LogError::io("create directory", dir.to_path_buf(), e))?;
    let list = || {
        storage
            .list_dir(dir)
            .map_err(|e| LogError::io("list directory", dir.to_path_buf(), e))
    };
    let names = list()?;
    let names = if finish_compaction(storage, dir, &names, config)? {
        list()?
    } else {
        names
    };

    let mut logs = BTreeMap::new();
    let mut index_files = Vec::new();
    let mut raft_files = Vec::new();
    let mut snapshots = BTreeMap::new();
    for name in &names {
        let path = dir.join(name);
        if let Some((base, kind)) = parse_segment_file_name(name) {
            match kind {
                SegmentFile::Log => {
                    logs.insert(base, path);
                }
                _ => index_files.push((base, path)),
            }
        } else if let Some(offset) = parse_snapshot_name(name) {
            snapshots.insert(offset, path);
        } else if name.ends_with(".log") || name.ends_with(".index") || name.ends_with(".timeindex")
        {
            return Err(LogError::Foreign {
                path,
                reason: "segment files are named by their base offset in 20 digits".into(),
            });
        } else if name.ends_with(".tmp") {
            remove(storage, &path)?;
        } else if let Some(base) = super::raft::parse_raft_file_name(name) {
            raft_files.push((base, path));
        } else if ![
            CLEAN_SHUTDOWN,
            LOG_START_OFFSET,
            super::raft::RAFT_STATE,
            super::raft::EPOCH_CHECKPOINT,
            super::raft::RAFT_MEMBERSHIP,
            super::raft::RAFT_SNAPSHOT,
            RAFT_VOTE,
            super::compactor::CHECKPOINT,
        ]
        .contains(&name.as_str())
        {
            tracing::warn!(path = %path.display(), "ignoring a file silt did not write");
        }
    }
    // Index and Raft files whose log is gone (a crash while deleting or creating a segment)
    // are leftovers.
    for (base, path) in index_files.into_iter().chain(raft_files) {
        if !logs.contains_key(&base) {
            remove(storage, &path)?;
        }
    }

    let clean = read_clean_marker(storage, dir)?;
    let mut log_start_offset = read_log_start(storage, dir)?;

    let mut segments: Vec<Arc<Segment>> = Vec::with_capacity(logs.len() + 1);
    let mut clean_next_index = None;
    let last_base = logs.keys().next_back().copied();
    for (&base, path) in &logs {
        let file = storage
            .open(path, false)
            .map_err(|e| LogError::io("open", path.clone(), e))?;
        let is_last = Some(base) == last_base;
        let indexer = match (is_last, clean) {
            (false, _) => open_sealed(storage, dir, base, &file, None, config)?,
            // A clean close leaves the segment's bytes, then preallocated zeros. Anything else
            // past the recorded size means the file changed since: distrust the marker.
            (true, Some(marker)) if marker.base_offset == base && marker_fits(&file, marker) => {
                let indexer = open_sealed(storage, dir, base, &file, Some(marker), config)?;
                let stats = indexer.stats();
                if stats.next_offset == marker.next_offset && stats.size_bytes == marker.size_bytes
                {
                    // The segment is as the marker describes it: its Raft count holds too.
                    clean_next_index = marker.next_index;
                }
                indexer
            }
            (true, _) => scan_active(dir, base, &file, config)?,
        };
        if let Some(previous) = segments.last() {
            let expected = previous.info().next_offset;
            if base != expected {
                return Err(LogError::corrupt(
                    path.clone(),
                    0,
                    format!(
                        "segment starts at offset {base} but the previous one ends at {expected}"
                    ),
                ));
            }
        }
        let first_append_ms = if indexer.stats().size_bytes == 0 {
            -1
        } else {
            now_ms
        };
        segments.push(Arc::new(Segment::new(
            base,
            dir,
            file,
            indexer,
            !is_last,
            first_append_ms,
        )));
    }

    if segments.is_empty() {
        let base = log_start_offset.unwrap_or(0).max(0);
        segments.push(create_segment(storage, dir, base, config)?);
    }
    let next_offset = segments
        .last()
        .expect("at least one segment")
        .info()
        .next_offset;
    let first_base = segments[0].base_offset();
    let records_start = log_start_offset.unwrap_or(0).max(0);
    let start = log_start_offset.get_or_insert(first_base);
    *start = (*start).max(first_base).min(next_offset);
    let log_start_offset = *start;

    let producers = recover_producers(storage, &segments, &snapshots, next_offset, now_ms)?;
    Ok(Recovered {
        segments,
        log_start_offset,
        records_start,
        next_offset,
        producers,
        clean_next_index,
    })
}

/// Finishes what a compaction left: a rewrite committed as `<base>.log.swap` replaces the
/// segments it covers; one still `.cleaned` is dropped. True if a file was touched.
fn finish_compaction(
    storage: &dyn Storage,
    dir: &Path,
    names: &[String],
    config: &LogConfig,
) -> Result<bool, LogError> {
    let mut touched = false;
    for name in names {
        let path = dir.join(name);
        if name.ends_with(super::compactor::CLEANED_SUFFIX)
            || name.ends_with(super::compactor::DELETED_SUFFIX)
        {
            // (A swap finished above may have removed it already.)
            if storage.exists(&path) {
                remove(storage, &path)?;
            }
            touched = true;
        } else if let Some(stem) = name.strip_suffix(super::compactor::SWAP_SUFFIX) {
            let Some(base) = stem.parse::<i64>().ok().filter(|_| stem.len() == 20) else {
                continue;
            };
            let file = storage
                .open(&path, false)
                .map_err(|e| LogError::io("open", path.clone(), e))?;
            let len = file
                .len()
                .map_err(|e| LogError::io("stat", path.clone(), e))?;
            let (indexer, stop) = scan_segment(&path, base, &file, len, config)?;
            if stop.is_some() || indexer.stats().size_bytes != len {
                // It was fsynced whole before it got this name.
                return Err(LogError::corrupt(
                    path,
                    indexer.stats().size_bytes,
                    format!("compaction rewrite is not whole: {}", describe(&stop)),
                ));
            }
            drop(file);
            tracing::info!(path = %path.display(), "finishing a compaction swap");
            for old in super::compactor::finish_swap(
                storage,
                dir,
                base,
                indexer.stats().next_offset,
                &path,
            )? {
                remove(storage, &old)?;
            }
            touched = true;
        }
    }
    Ok(touched)
}

/// Creates a new, empty active segment file and makes its name durable. Nothing is allocated
/// until the first append (a step of `preallocate_bytes` at a time): an empty partition, or an
/// idle one whose segment rolled, holds no disk (10,000 topics no longer take 320 GB).
pub(crate) fn create_segment(
    storage: &dyn Storage,
    dir: &Path,
    base: i64,
    config: &LogConfig,
) -> Result<Arc<Segment>, LogError> {
    let path = dir.join(segment_file_name(base, SegmentFile::Log));
    let file = storage
        .open(&path, true)
        .map_err(|e| LogError::io("create", path.clone(), e))?;
    storage
        .sync_dir(dir)
        .map_err(|e| LogError::io("sync directory", dir.to_path_buf(), e))?;
    let indexer = SegmentIndexer::new(base, config.index_interval_bytes);
    Ok(Arc::new(Segment::new(base, dir, file, indexer, false, -1)))
}

fn remove(storage: &dyn Storage, path: &Path) -> Result<(), LogError> {
    storage
        .remove_file(path)
        .map_err(|e| LogError::io("remove", path.to_path_buf(), e))
}

fn read_clean_marker(storage: &dyn Storage, dir: &Path) -> Result<Option<CleanShutdown>, LogError> {
    let path = dir.join(CLEAN_SHUTDOWN);
    if !storage.exists(&path) {
        return Ok(None);
    }
    let file = storage
        .open(&path, false)
        .map_err(|e| LogError::io("open", path.clone(), e))?;
    let bytes = read_all(file.as_ref()).map_err(|e| LogError::io("read", path.clone(), e))?;
    drop(file);
    // The marker is only good for this one open: remove it before anything is appended, so a
    // crash from here on is recovered by a scan.
    remove(storage, &path)?;
    storage
        .sync_dir(dir)
        .map_err(|e| LogError::io("sync directory", dir.to_path_buf(), e))?;
    match serde_json::from_slice(&bytes) {
        Ok(marker) => Ok(Some(marker)),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "unreadable clean-shutdown marker; scanning instead");
            Ok(None)
        }
    }
}

fn read_log_start(storage: &dyn Storage, dir: &Path) -> Result<Option<i64>, LogError> {
    let path = dir.join(LOG_START_OFFSET);
    if !storage.exists(&path) {
        return Ok(None);
    }
    let file = storage
        .open(&path, false)
        .map_err(|e| LogError::io("open", path.clone(), e))?;
    let bytes = read_all(file.as_ref()).map_err(|e| LogError::io("read", path.clone(), e))?;
    let text = String::from_utf8_lossy(&bytes);
    text.trim()
        .parse::<i64>()
        .map(Some)
        .map_err(|_| LogError::corrupt(path, 0, format!("expected an offset, found {text:?}")))
}

/// Writes the log start offset file (after DeleteRecords).
pub(crate) fn write_log_start(
    storage: &dyn Storage,
    dir: &Path,
    offset: i64,
) -> Result<(), LogError> {
    let path = dir.join(LOG_START_OFFSET);
    write_atomic(storage, &path, offset.to_string().as_bytes())
        .map_err(|e| LogError::io("write", path, e))
}

/// Writes the clean-shutdown marker for the active segment.
pub(crate) fn write_clean_marker(
    storage: &dyn Storage,
    dir: &Path,
    marker: CleanShutdown,
) -> Result<(), LogError> {
    let path = dir.join(CLEAN_SHUTDOWN);
    let bytes = serde_json::to_vec(&marker).expect("marker serialises");
    write_atomic(storage, &path, &bytes).map_err(|e| LogError::io("write", path, e))
}

/// Writes a segment's index files and fsyncs them.
pub(crate) fn write_indexes(
    storage: &dyn Storage,
    dir: &Path,
    indexer: &SegmentIndexer,
) -> Result<(), LogError> {
    let base = indexer.base_offset();
    for (kind, bytes) in [
        (SegmentFile::OffsetIndex, indexer.offset_index().encode()),
        (SegmentFile::TimeIndex, indexer.time_index().encode()),
    ] {
        let path = dir.join(segment_file_name(base, kind));
        write_atomic(storage, &path, &bytes).map_err(|e| LogError::io("write", path.clone(), e))?;
    }
    Ok(())
}

/// Writes the producer table as of `offset`, and drops snapshots older than the previous one.
pub(crate) fn write_snapshot(
    storage: &dyn Storage,
    dir: &Path,
    offset: i64,
    producers: &ProducerStateTable,
) -> Result<(), LogError> {
    let path = dir.join(snapshot_file_name(offset));
    let bytes = serde_json::to_vec(producers).expect("producer table serialises");
    write_atomic(storage, &path, &bytes).map_err(|e| LogError::io("write", path.clone(), e))?;
    let names = storage
        .list_dir(dir)
        .map_err(|e| LogError::io("list directory", dir.to_path_buf(), e))?;
    let mut older: Vec<i64> = names
        .iter()
        .filter_map(|n| parse_snapshot_name(n))
        .filter(|&o| o < offset)
        .collect();
    older.sort_unstable();
    // Keep one older snapshot in case the newest is ahead of a log truncated by a crash.
    older.pop();
    for stale in older {
        remove(storage, &dir.join(snapshot_file_name(stale)))?;
    }
    Ok(())
}

/// Opens a segment that should be whole: trusts its index files if they agree with its tail,
/// otherwise rebuilds them.
fn open_sealed(
    storage: &dyn Storage,
    dir: &Path,
    base: i64,
    file: &Arc<dyn StorageFile>,
    clean: Option<CleanShutdown>,
    config: &LogConfig,
) -> Result<SegmentIndexer, LogError> {
    let path = dir.join(segment_file_name(base, SegmentFile::Log));
    let file_len = file
        .len()
        .map_err(|e| LogError::io("stat", path.clone(), e))?;
    let size = clean.map_or(file_len, |m| m.size_bytes);
    if let Some(indexer) = check_indexes(storage, dir, base, file, size, config)?
        && clean.is_none_or(|m| m.next_offset == indexer.stats().next_offset)
    {
        if clean.is_some() && size < file_len {
            // Drop the preallocated tail; the appender preallocates again as it goes.
            file.set_len(size)
                .map_err(|e| LogError::io("truncate", path.clone(), e))?;
        }
        return Ok(indexer);
    }
    tracing::info!(path = %path.display(), "rebuilding segment indexes");
    let (indexer, stop) = scan_segment(&path, base, file, size, config)?;
    let valid = indexer.stats().size_bytes;
    if valid != size {
        if clean.is_some() {
            // A marker that disagrees with the log: treat the segment as active after a crash.
            if valid == 0 && size > 0 {
                check_not_foreign(&path, base, file)?;
            }
            return truncate_active(&path, file, indexer, stop, size);
        }
        return Err(LogError::corrupt(
            path,
            valid,
            format!("sealed segment holds an invalid batch: {}", describe(&stop)),
        ));
    }
    write_indexes(storage, dir, &indexer)?;
    Ok(indexer)
}

/// Loads the index files and checks them against the log's tail; `None` if they do not agree.
fn check_indexes(
    storage: &dyn Storage,
    dir: &Path,
    base: i64,
    file: &Arc<dyn StorageFile>,
    size: u64,
    config: &LogConfig,
) -> Result<Option<SegmentIndexer>, LogError> {
    let load = |kind| -> Option<Vec<u8>> {
        let path = dir.join(segment_file_name(base, kind));
        let file = storage.open(&path, false).ok()?;
        read_all(file.as_ref()).ok()
    };
    let (Some(offset_bytes), Some(time_bytes)) =
        (load(SegmentFile::OffsetIndex), load(SegmentFile::TimeIndex))
    else {
        return Ok(None);
    };
    let (Ok(offset_index), Ok(time_index)) = (
        OffsetIndex::decode(&offset_bytes),
        TimeIndex::decode(&time_bytes),
    ) else {
        return Ok(None);
    };
    if size == 0 {
        return Ok(offset_index
            .is_empty()
            .then(|| SegmentIndexer::new(base, config.index_interval_bytes)));
    }
    let Some(last) = offset_index.last() else {
        return Ok(None);
    };
    let first = offset_index.entries()[0];
    if first.offset.0 != 0 || first.position.0 != 0 || u64::from(last.position.0) >= size {
        return Ok(None);
    }
    // Walk the headers from the last indexed batch to the end of the file.
    let read_header = |position: u64| -> Option<BatchHeader> {
        let mut buf = [0u8; BATCH_HEADER_BYTES];
        read_exact_at(file.as_ref(), &mut buf, position).ok()?;
        BatchHeader::parse(&buf, BATCH_LENGTH_SANE_MAX)
            .ok()
            .flatten()
    };
    let Some(first_header) = read_header(0) else {
        return Ok(None);
    };
    if first_header.base_offset != base {
        return Ok(None);
    }
    let mut position = u64::from(last.position.0);
    let mut expected_offset = base + i64::from(last.offset.0);
    let mut max_timestamp = time_index.last().map_or(-1, |e| e.timestamp);
    let mut last_batch_offset = -1;
    while position < size {
        let Some(header) = read_header(position) else {
            return Ok(None);
        };
        if header.base_offset != expected_offset {
            return Ok(None);
        }
        max_timestamp = max_timestamp.max(header.max_timestamp);
        last_batch_offset = header.base_offset;
        expected_offset = header.next_offset();
        position += u64::from(header.size());
    }
    if position != size {
        return Ok(None);
    }
    let stats = SegmentStats {
        next_offset: expected_offset,
        size_bytes: size,
        first_timestamp: first_header.base_timestamp,
        max_timestamp,
        last_batch_offset,
    };
    Ok(Some(SegmentIndexer::resume(
        base,
        config.index_interval_bytes,
        offset_index,
        time_index,
        stats,
    )))
}

/// Scans the last segment after a crash and truncates it after its last valid batch.
fn scan_active(
    dir: &Path,
    base: i64,
    file: &Arc<dyn StorageFile>,
    config: &LogConfig,
) -> Result<SegmentIndexer, LogError> {
    let path = dir.join(segment_file_name(base, SegmentFile::Log));
    let len = file
        .len()
        .map_err(|e| LogError::io("stat", path.clone(), e))?;
    let (indexer, stop) = scan_segment(&path, base, file, len, config)?;
    if indexer.stats().size_bytes == 0 && len > 0 {
        check_not_foreign(&path, base, file)?;
    }
    truncate_active(&path, file, indexer, stop, len)
}

fn truncate_active(
    path: &Path,
    file: &Arc<dyn StorageFile>,
    indexer: SegmentIndexer,
    stop: Option<ScanStop>,
    len: u64,
) -> Result<SegmentIndexer, LogError> {
    let valid = indexer.stats().size_bytes;
    if valid < len {
        if stop.as_ref().is_some_and(|s| !is_zeros(s)) {
            tracing::warn!(
                path = %path.display(),
                position = valid,
                reason = describe(&stop),
                "truncating the log after its last whole batch"
            );
        }
        file.set_len(valid)
            .map_err(|e| LogError::io("truncate", path.to_path_buf(), e))?;
    }
    // What the scan kept may have reached only the page cache before the crash: it becomes
    // the high watermark, so it must be durable first.
    file.sync_data()
        .map_err(|e| LogError::io("sync", path.to_path_buf(), e))?;
    Ok(indexer)
}

/// A first batch that is neither valid nor the start of a torn write of this segment's first
/// batch means the file is not ours. A torn write leaves a prefix of the intended bytes and
/// zeros after it (preallocated space), so its first 8 bytes are a prefix of the base offset.
fn check_not_foreign(path: &Path, base: i64, file: &Arc<dyn StorageFile>) -> Result<(), LogError> {
    let mut head = [0u8; 8];
    let n = file
        .read_at(&mut head, 0)
        .map_err(|e| LogError::io("read", path.to_path_buf(), e))?;
    let expected = base.to_be_bytes();
    let written = head[..n].iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    if head[..written] != expected[..written] {
        return Err(LogError::Foreign {
            path: path.to_path_buf(),
            reason: format!("it does not start with a record batch at offset {base}"),
        });
    }
    Ok(())
}

/// True when the file is at least the marker's size and the first bytes after it (up to 4 KiB)
/// are zeros, as preallocation leaves them.
fn marker_fits(file: &Arc<dyn StorageFile>, marker: CleanShutdown) -> bool {
    let Ok(len) = file.len() else { return false };
    if len < marker.size_bytes {
        return false;
    }
    let mut buf = vec![0u8; (len - marker.size_bytes).min(4096) as usize];
    read_exact_at(file.as_ref(), &mut buf, marker.size_bytes).is_ok() && buf.iter().all(|&b| b == 0)
}

fn is_zeros(stop: &ScanStop) -> bool {
    matches!(
        stop,
        ScanStop::Invalid(silt_index::BatchError::Length { length: 0, .. })
    )
}

fn describe(stop: &Option<ScanStop>) -> String {
    match stop {
        None => "no error".into(),
        Some(ScanStop::Incomplete) => "the last batch is incomplete".into(),
        Some(ScanStop::Invalid(e)) => e.to_string(),
    }
}

/// Scans `[0, len)` of a segment with CRC checks, indexing every valid batch, in chunks.
/// Returns the indexer (its stats end at the last valid batch) and why the scan stopped early.
pub(crate) fn scan_segment(
    path: &Path,
    base: i64,
    file: &Arc<dyn StorageFile>,
    len: u64,
    config: &LogConfig,
) -> Result<(SegmentIndexer, Option<ScanStop>), LogError> {
    let mut indexer = SegmentIndexer::new(base, config.index_interval_bytes);
    let mut position = 0u64;
    let mut chunk = SCAN_CHUNK_BYTES;
    let mut expected_offset = base;
    while position < len {
        let want = chunk.min(len - position);
        let mut buf = vec![0u8; want as usize];
        read_exact_at(file.as_ref(), &mut buf, position)
            .map_err(|e| LogError::io("read", path.to_path_buf(), e))?;
        let scan = silt_index::batch::scan(&buf, BATCH_LENGTH_SANE_MAX, true);
        for (header, _) in &scan.batches {
            // Compaction leaves gaps between batches; offsets only ever go forward.
            if header.base_offset < expected_offset {
                let stop = ScanStop::Invalid(silt_index::BatchError::Header(
                    "batch offset out of sequence",
                ));
                return Ok((indexer, Some(stop)));
            }
            indexer.on_batch(header);
            expected_offset = header.next_offset();
        }
        position += scan.valid_bytes as u64;
        match scan.stop {
            None => {}
            Some(ScanStop::Invalid(e)) => return Ok((indexer, Some(ScanStop::Invalid(e)))),
            Some(ScanStop::Incomplete) => {
                let rest = &buf[scan.valid_bytes..];
                if position + rest.len() as u64 >= len {
                    // The file itself ends inside this batch: a torn write.
                    return Ok((indexer, Some(ScanStop::Incomplete)));
                }
                if scan.valid_bytes == 0 {
                    // A batch larger than the chunk: read it whole next time round.
                    let header = BatchHeader::parse(rest, BATCH_LENGTH_SANE_MAX)
                        .ok()
                        .flatten();
                    match header {
                        Some(h) => chunk = u64::from(h.size()).max(SCAN_CHUNK_BYTES),
                        None => return Ok((indexer, Some(ScanStop::Incomplete))),
                    }
                }
            }
        }
    }
    Ok((indexer, None))
}

/// Loads the newest usable snapshot and replays the batch headers after it.
pub(crate) fn recover_producers(
    storage: &dyn Storage,
    segments: &[Arc<Segment>],
    snapshots: &BTreeMap<i64, PathBuf>,
    next_offset: i64,
    now_ms: i64,
) -> Result<ProducerStateTable, LogError> {
    let mut table = ProducerStateTable::new();
    let mut replay_from = segments[0].base_offset();
    for (&offset, path) in snapshots.iter().rev() {
        if offset > next_offset {
            // Taken ahead of a log that a crash cut shorter: useless now.
            remove(storage, path)?;
            continue;
        }
        let loaded = storage
            .open(path, false)
            .and_then(|f| read_all(f.as_ref()))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<ProducerStateTable>(&bytes).ok());
        match loaded {
            Some(snapshot) => {
                table = snapshot;
                replay_from = offset;
                break;
            }
            None => {
                tracing::warn!(path = %path.display(), "unreadable producer snapshot; trying an older one")
            }
        }
    }
    for segment in segments {
        if segment.info().next_offset <= replay_from {
            continue;
        }
        let Some((mut position, _)) = segment.locate(replay_from)? else {
            continue;
        };
        let end = segment.committed();
        while position < end {
            let header = segment.read_header(position)?;
            if header.base_offset >= replay_from {
                replay(&mut table, segment, position, &header, now_ms)?;
            }
            position += u64::from(header.size());
        }
    }
    Ok(table)
}

/// Records the batch at `position` of `segment` in `table`: a data batch by its header, a
/// transaction marker by its record too.
fn replay(
    table: &mut ProducerStateTable,
    segment: &Segment,
    position: u64,
    header: &silt_index::batch::BatchHeader,
    now_ms: i64,
) -> Result<(), LogError> {
    if !header.is_control() {
        table.record(header, now_ms);
        return Ok(());
    }
    if header.has_producer_id() {
        let batch = segment.read_bytes(position, u64::from(header.size()))?;
        if let Some(marker) = super::producer_state::txn_marker_of(header, &batch) {
            table.record_marker(header, marker, now_ms);
        }
    }
    Ok(())
}

/// The producer table as of `until` (read-only): the newest loadable snapshot at or before it,
/// brought forward by the batch headers before `until`.
pub(crate) fn recover_producers_until(
    storage: &dyn Storage,
    segments: &[Arc<Segment>],
    snapshots: &BTreeMap<i64, PathBuf>,
    until: i64,
    now_ms: i64,
) -> Result<ProducerStateTable, LogError> {
    let mut table = ProducerStateTable::new();
    let mut replay_from = segments.first().map_or(until, |s| s.base_offset());
    for (&offset, path) in snapshots.range(..=until).rev() {
        let loaded = storage
            .open(path, false)
            .and_then(|f| read_all(f.as_ref()))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<ProducerStateTable>(&bytes).ok());
        if let Some(snapshot) = loaded {
            table = snapshot;
            replay_from = offset;
            break;
        }
    }
    for segment in segments {
        if segment.info().next_offset <= replay_from || segment.base_offset() >= until {
            continue;
        }
        let Some((mut position, _)) = segment.locate(replay_from)? else {
            continue;
        };
        let end = segment.committed();
        while position < end {
            let header = segment.read_header(position)?;
            if header.base_offset >= until {
                break;
            }
            if header.base_offset >= replay_from {
                replay(&mut table, segment, position, &header, now_ms)?;
            }
            position += u64::from(header.size());
        }
    }
    Ok(table)
}
