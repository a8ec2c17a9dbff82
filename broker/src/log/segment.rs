//! One segment of a partition log: its file, how many of its bytes are readable, and its
//! indexes.
//!
//! The appender is the only writer. It writes batches past `committed`, then publishes them by
//! raising `committed` (release) after updating the indexes; readers load `committed` (acquire)
//! and never read past it, so they only ever see whole, written batches.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use silt_index::batch::{BATCH_HEADER_BYTES, BatchHeader};
use silt_index::segment::{SegmentFile, relative_offset, segment_file_name};
use silt_index::{SegmentIndexer, SegmentStats};

use super::LogError;
use super::storage::{StorageFile, read_exact_at};

/// A segment and its readable extent.
#[derive(Debug)]
pub struct Segment {
    base_offset: i64,
    dir: PathBuf,
    file: Arc<dyn StorageFile>,
    committed: AtomicU64,
    indexer: Mutex<SegmentIndexer>,
    sealed: AtomicBool,
    /// Wall-clock time of the first append (or of opening, for a recovered segment); drives
    /// `segment.ms`. -1 while empty.
    first_append_ms: AtomicI64,
    /// For a replicated log: where the segment's Raft entries are (see [`super::raft`]).
    raft: Mutex<Option<super::raft::RaftSpan>>,
}

/// A snapshot of what a segment holds, for retention, the archiver and status pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo {
    /// First offset.
    pub base_offset: i64,
    /// Offset after its last record.
    pub next_offset: i64,
    /// Bytes of whole batches.
    pub size_bytes: u64,
    /// Timestamp of its first record (-1 when empty).
    pub first_timestamp: i64,
    /// Largest record timestamp (-1 when empty).
    pub max_timestamp: i64,
    /// True once it no longer takes appends.
    pub sealed: bool,
}

impl Segment {
    pub(crate) fn new(
        base_offset: i64,
        dir: &Path,
        file: Arc<dyn StorageFile>,
        indexer: SegmentIndexer,
        sealed: bool,
        first_append_ms: i64,
    ) -> Segment {
        assert_eq!(
            indexer.base_offset(),
            base_offset,
            "indexer of another segment"
        );
        Segment {
            base_offset,
            dir: dir.to_path_buf(),
            file,
            committed: AtomicU64::new(indexer.stats().size_bytes),
            indexer: Mutex::new(indexer),
            sealed: AtomicBool::new(sealed),
            first_append_ms: AtomicI64::new(first_append_ms),
            raft: Mutex::new(None),
        }
    }

    /// The Raft entries of the segment (`None` for a log that is not replicated).
    pub(crate) fn raft(&self) -> MutexGuard<'_, Option<super::raft::RaftSpan>> {
        self.raft.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// First offset of the segment.
    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// Path of one of the segment's files.
    pub fn path(&self, kind: SegmentFile) -> PathBuf {
        self.dir.join(segment_file_name(self.base_offset, kind))
    }

    pub(crate) fn file(&self) -> &Arc<dyn StorageFile> {
        &self.file
    }

    /// Bytes readers may read.
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    pub(crate) fn is_sealed(&self) -> bool {
        self.sealed.load(Ordering::Acquire)
    }

    pub(crate) fn mark_sealed(&self) {
        self.sealed.store(true, Ordering::Release);
    }

    pub(crate) fn first_append_ms(&self) -> i64 {
        self.first_append_ms.load(Ordering::Relaxed)
    }

    pub(crate) fn indexer(&self) -> MutexGuard<'_, SegmentIndexer> {
        self.indexer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Publishes batches the appender has written: indexes first, then the readable extent.
    pub(crate) fn publish(&self, headers: &[BatchHeader], now_ms: i64) {
        if headers.is_empty() {
            return;
        }
        let mut indexer = self.indexer();
        for header in headers {
            indexer.on_batch(header);
        }
        let size = indexer.stats().size_bytes;
        drop(indexer);
        let _ =
            self.first_append_ms
                .compare_exchange(-1, now_ms, Ordering::Relaxed, Ordering::Relaxed);
        let previous = self.committed.swap(size, Ordering::AcqRel);
        assert!(
            size > previous,
            "committed size did not grow: {size} <= {previous}"
        );
    }

    /// What the segment holds now.
    pub fn info(&self) -> SegmentInfo {
        let stats: SegmentStats = self.indexer().stats();
        SegmentInfo {
            base_offset: self.base_offset,
            next_offset: stats.next_offset,
            size_bytes: stats.size_bytes,
            first_timestamp: stats.first_timestamp,
            max_timestamp: stats.max_timestamp,
            sealed: self.is_sealed(),
        }
    }

    /// Reads the header of the batch at `position`.
    pub(crate) fn read_header(&self, position: u64) -> Result<BatchHeader, LogError> {
        let mut buf = [0u8; BATCH_HEADER_BYTES];
        read_exact_at(self.file.as_ref(), &mut buf, position)
            .map_err(|e| LogError::io("read", self.path(SegmentFile::Log), e))?;
        BatchHeader::parse(&buf, u32::MAX)
            .map_err(|e| LogError::corrupt(self.path(SegmentFile::Log), position, e.to_string()))?
            .ok_or_else(|| {
                LogError::corrupt(self.path(SegmentFile::Log), position, "short header".into())
            })
    }

    /// Finds the batch holding `offset`: its position and header, or `None` if `offset` is past
    /// the segment's readable end. Starts at the offset index's hint and walks headers, at most
    /// one index interval's worth.
    pub(crate) fn locate(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>, LogError> {
        let committed = self.committed();
        let mut position = if offset <= self.base_offset {
            0
        } else {
            let relative = relative_offset(
                self.base_offset,
                offset.min(self.base_offset + i64::from(u32::MAX)),
            );
            self.indexer()
                .offset_index()
                .lookup(relative)
                .map_or(0, |e| u64::from(e.position.0))
        };
        while position < committed {
            let header = self.read_header(position)?;
            if header.last_offset() >= offset {
                return Ok(Some((position, header)));
            }
            position += u64::from(header.size());
        }
        Ok(None)
    }

    /// Reads `len` bytes at `position` (within the committed extent).
    pub(crate) fn read_bytes(&self, position: u64, len: u64) -> Result<Vec<u8>, LogError> {
        assert!(
            position + len <= self.committed(),
            "read past committed: {position}+{len}"
        );
        let mut buf = vec![0u8; len as usize];
        read_exact_at(self.file.as_ref(), &mut buf, position)
            .map_err(|e| LogError::io("read", self.path(SegmentFile::Log), e))?;
        Ok(buf)
    }
}
