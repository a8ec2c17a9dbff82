//! Archiving one partition: upload a sealed segment and its sidecar, then add it to the
//! manifest; drop segments for retention.
//!
//! The broker hands over a [`SealedSegment`] (where the file is and what the log knows of it);
//! the archiver reads the file itself: one pass over the batch headers (positional reads of 61
//! bytes, from the page cache) for the record count and the indexes, one sequential pass
//! uploading the bytes and computing their CRC-32C. Memory stays bounded by the multipart window
//! whatever the segment size, except for a topic with a key index: its first pass decodes the
//! records too and keeps 12 bytes per keyed record until the index is written.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use bytes::Bytes;
use silt_index::SegmentIndexer;
use silt_index::batch::{BATCH_HEADER_BYTES, BatchHeader};
use silt_index::keys::KeyIndexBuilder;
use silt_index::manifest::SegmentEntry;
use silt_index::record::decode_records;
use silt_index::segment::SegmentMeta;
use silt_index::sidecar::Sidecar;

use crate::error::ArchiveError;
use crate::manifest::{Manifest, Root};
use crate::remote::MULTIPART_BYTES_MIN;

/// Largest decompressed batch decoded for a key index.
const DECOMPRESSED_MAX: usize = 256 << 20;

/// Most archived segments one pass of retention or DeleteRecords removes (the archive's
/// start moves on in the next pass): each pass is one bounded manifest change, a root that
/// names at most this many objects to delete, and that many deletes.
pub const DROP_BUDGET: usize = 1024;

/// A sealed local segment, as the broker describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSegment {
    /// First offset.
    pub base_offset: i64,
    /// Offset after its last record.
    pub next_offset: i64,
    /// Bytes of whole batches to upload, from `start_position`.
    pub size_bytes: u64,
    /// The `.log` file.
    pub path: PathBuf,
    /// Where in the file the first batch to upload starts (0 for the whole file; past 0 when
    /// the archive already holds the file's first batches, as after a leader change).
    pub start_position: u64,
    /// The aborted transactions with records in it (whose markers may come later), by marker
    /// offset: the segment is uploaded only once every transaction in it ended.
    pub aborted: Vec<silt_index::sidecar::AbortedRange>,
}

/// The writer of one partition's archive.
#[derive(Debug)]
pub struct PartitionArchiver {
    manifest: Manifest,
    index_interval_bytes: u32,
    /// Object ids of uploads not yet in a root, by base offset: a retry reuses the id, so a
    /// failed attempt's objects are overwritten rather than left behind.
    object_ids: HashMap<i64, u64>,
    /// Write a key index beside each segment (the topic's `archive.key.index`).
    key_index: bool,
    /// Write each segment's records as Parquet too (the topic's `archive.parquet`).
    parquet: bool,
    /// Bytes of the Parquet file the last upload wrote, if it wrote one.
    last_parquet_bytes: Option<u64>,
}

impl PartitionArchiver {
    pub(crate) fn new(manifest: Manifest, index_interval_bytes: u32) -> PartitionArchiver {
        PartitionArchiver {
            manifest,
            index_interval_bytes,
            object_ids: HashMap::new(),
            key_index: false,
            parquet: false,
            last_parquet_bytes: None,
        }
    }

    /// Whether segments uploaded from now on get a key index (and key filters every
    /// [`crate::keys::FILTER_MEMBERS`] of them).
    pub fn set_key_index(&mut self, on: bool) {
        self.key_index = on;
    }

    /// Writes a Parquet file of each segment uploaded from now on under the archive's
    /// [`crate::layout::Layout::parquet_dir`] (the topic's `archive.parquet`).
    pub fn set_parquet(&mut self, on: bool) {
        self.parquet = on;
    }

    /// The size of the Parquet file the last successful upload wrote, if it wrote one.
    pub fn last_parquet_bytes(&self) -> Option<u64> {
        self.last_parquet_bytes
    }

    /// The manifest's current root.
    pub fn root(&self) -> &Root {
        self.manifest.root()
    }

    /// Offset after the last archived record: local segments ending at or before it may go.
    pub fn archived_next_offset(&self) -> i64 {
        self.manifest.root().next_offset
    }

    /// True once another writer took over this partition's manifest.
    pub fn is_fenced(&self) -> bool {
        self.manifest.is_fenced()
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub(crate) fn manifest_mut(&mut self) -> &mut Manifest {
        &mut self.manifest
    }

    /// Uploads a sealed segment with its sidecar and commits it to the manifest. A segment
    /// that does not start where the archive ends is refused, unless the archive is empty.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Local`] when the file is not the segment the log described; store
    /// failures and fencing from the upload or the commit.
    pub async fn upload(
        &mut self,
        segment: &SealedSegment,
        now_ms: i64,
    ) -> Result<SegmentEntry, ArchiveError> {
        self.last_parquet_bytes = None;
        let expected = self.manifest.next_offset();
        if !self.manifest.root().is_empty() && segment.base_offset != expected {
            return Err(ArchiveError::Local {
                path: segment.path.clone(),
                reason: format!(
                    "segment starts at {} but the archive ends at {expected}",
                    segment.base_offset
                ),
            });
        }
        let Scanned {
            indexer,
            records: record_count,
            epochs,
            keys,
            parquet,
        } = scan(
            segment,
            self.index_interval_bytes,
            Derived {
                keys: self.key_index,
                parquet: self
                    .parquet
                    .then_some(self.manifest.reader().id().partition),
            },
        )
        .await?;
        let leader_epoch = epochs.last().map_or(0, |&(epoch, _)| epoch.max(0));
        let object_id = *self
            .object_ids
            .entry(segment.base_offset)
            .or_insert_with(rand_u64);
        let reader = self.manifest.reader();
        let last_offset = segment.next_offset - 1;
        let key = reader
            .layout()
            .segment(reader.id(), segment.base_offset, last_offset, object_id);
        let crc = upload_file(reader.remote(), &key, segment).await?;
        let stats = indexer.stats();
        let meta = SegmentMeta {
            base_offset: segment.base_offset,
            last_offset,
            first_timestamp: stats.first_timestamp,
            max_timestamp: stats.max_timestamp,
            record_count,
            size_bytes: segment.size_bytes,
            leader_epoch,
            crc32c: crc,
        };
        let sidecar = Sidecar {
            meta,
            offset_index: indexer.offset_index().clone(),
            time_index: indexer.time_index().clone(),
            epochs: Some(epochs),
            aborted: Some(segment.aborted.clone()),
        };
        let sidecar_key =
            reader
                .layout()
                .sidecar(reader.id(), segment.base_offset, last_offset, object_id);
        reader
            .remote()
            .put(&sidecar_key, Bytes::from(sidecar.encode()))
            .await?;
        if let Some(keys) = keys {
            let key =
                reader
                    .layout()
                    .key_index(reader.id(), segment.base_offset, last_offset, object_id);
            reader
                .remote()
                .put(&key, Bytes::from(keys.finish(last_offset)))
                .await?;
        }
        let mut parquet_bytes = None;
        if let Some(file) = parquet {
            // Before the commit, like the sidecars: a segment in the manifest has its file.
            let key = crate::parquet::file_key(
                &reader.layout().parquet_dir(),
                &reader.id().topic,
                reader.id().partition,
                meta.first_timestamp,
                (segment.base_offset, last_offset, object_id),
            );
            parquet_bytes = Some(crate::parquet::upload(reader.remote(), &key, file).await?);
        }
        let entry = SegmentEntry {
            meta,
            uploaded_ms: now_ms,
            object_id,
        };
        self.manifest.append(entry);
        self.manifest.commit(now_ms).await?;
        self.object_ids.remove(&segment.base_offset);
        self.last_parquet_bytes = parquet_bytes;
        if self.key_index {
            // Derived data: a failure here costs lookups a little time, never an answer
            // (segments in no filter are checked through their own index).
            let (reader, root) = (self.manifest.reader(), self.manifest.root());
            if let Err(e) = crate::keys::refresh_filters(reader, root, false).await {
                tracing::warn!(partition = ?reader.id(), error = %e, "key filters not refreshed; tried again after the next upload");
            }
        }
        Ok(entry)
    }

    /// Commits whatever is pending (after a failed commit).
    ///
    /// # Errors
    ///
    /// As [`Manifest::commit`].
    pub async fn commit(&mut self, now_ms: i64) -> Result<(), ArchiveError> {
        self.manifest.commit(now_ms).await
    }

    /// Drops archived segments ending before `offset` (retention, DeleteRecords), at most
    /// [`DROP_BUDGET`] of them: the archive's start moves towards `offset` pass by pass (see
    /// [`Manifest::drop_before_at_most`]). Returns how many went.
    ///
    /// # Errors
    ///
    /// As [`Manifest::drop_before`].
    pub async fn drop_before(&mut self, offset: i64, now_ms: i64) -> Result<usize, ArchiveError> {
        Ok(self
            .manifest
            .drop_before_at_most(offset, DROP_BUDGET, now_ms)
            .await?
            .len())
    }

    /// The offset before which archived segments are past `retention_ms` / `retention_bytes`
    /// (with `local_bytes` of the partition not archived counting towards the size), walking
    /// from the oldest segment; `None` when nothing expires.
    ///
    /// # Errors
    ///
    /// Store failures reading the manifest.
    pub async fn retention_cut(
        &self,
        now_ms: i64,
        retention_ms: i64,
        retention_bytes: i64,
        local_bytes: u64,
    ) -> Result<Option<i64>, ArchiveError> {
        let root = self.manifest.root().clone();
        if root.is_empty() || (retention_ms < 0 && retention_bytes < 0) {
            return Ok(None);
        }
        let mut total = root.bytes + local_bytes;
        let mut cut = None;
        let reader = self.manifest.reader();
        // At most a bounded number of segments per pass, so one pass stays short.
        let mut budget = 4096;
        reader
            .walk(
                &root,
                &mut |entry| {
                    if entry.meta.last_offset < root.start_offset {
                        return true;
                    }
                    budget -= 1;
                    let by_time = retention_ms >= 0
                        && entry.meta.max_timestamp < now_ms.saturating_sub(retention_ms);
                    let by_size = retention_bytes >= 0 && total > retention_bytes as u64;
                    if (by_time || by_size) && budget > 0 {
                        total = total.saturating_sub(entry.meta.size_bytes);
                        cut = Some(entry.meta.last_offset + 1);
                        true
                    } else {
                        false
                    }
                },
                &mut |_| {},
            )
            .await?;
        Ok(cut)
    }
}

pub(crate) fn rand_u64() -> u64 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"))
}

/// What reading a segment's batch headers found.
struct Scanned {
    indexer: SegmentIndexer,
    records: u64,
    /// The leader epochs that start in the segment, as (epoch, first offset).
    epochs: Vec<(i32, i64)>,
    /// Its keyed records, when a key index was asked for.
    keys: Option<KeyIndexBuilder>,
    /// Its committed records as a Parquet file, when asked for.
    parquet: Option<std::fs::File>,
}

/// What [`scan`] makes of a segment's records besides its offset and time indexes.
#[derive(Debug, Clone, Copy)]
struct Derived {
    /// A key index.
    keys: bool,
    /// A Parquet file of this partition's records.
    parquet: Option<i32>,
}

/// Reads every batch header of the segment: builds its indexes, counts records, notes where
/// each leader epoch starts, checks that the batches are contiguous from the base offset and
/// end exactly at the size. With a key index or a Parquet file asked for, reads the records
/// too.
async fn scan(
    segment: &SealedSegment,
    interval: u32,
    derived: Derived,
) -> Result<Scanned, ArchiveError> {
    let segment = segment.clone();
    tokio::task::spawn_blocking(move || {
        let local = |reason: String| ArchiveError::Local {
            path: segment.path.clone(),
            reason,
        };
        let file = std::fs::File::open(&segment.path).map_err(|e| local(e.to_string()))?;
        let mut indexer = SegmentIndexer::new(segment.base_offset, interval);
        let end = segment.start_position + segment.size_bytes;
        let mut position = segment.start_position;
        let mut records = 0u64;
        let mut epochs: Vec<(i32, i64)> = Vec::new();
        let mut expected = segment.base_offset;
        let mut buf = [0u8; BATCH_HEADER_BYTES];
        let mut keys = derived
            .keys
            .then(|| KeyIndexBuilder::new(segment.base_offset));
        let mut parquet = match derived.parquet {
            Some(partition) => {
                // Scratch space on the data disk, beside the segment, gone when dropped.
                let dir = segment.path.parent().unwrap_or(std::path::Path::new("."));
                let file = tempfile::tempfile_in(dir)
                    .map_err(|e| local(format!("a scratch file for Parquet: {e}")))?;
                Some(crate::parquet::ParquetWriter::new(file, partition)?)
            }
            None => None,
        };
        let mut batch = Vec::new();
        while position < end {
            file.read_exact_at(&mut buf, position)
                .map_err(|e| local(format!("reading at {position}: {e}")))?;
            let header = BatchHeader::parse(&buf, u32::MAX)
                .map_err(|e| local(format!("bad batch at {position}: {e}")))?
                .ok_or_else(|| local(format!("short batch header at {position}")))?;
            // A compacted segment has gaps between batches; offsets only go forward.
            if header.base_offset < expected {
                return Err(local(format!(
                    "batch at {position} has offset {}, expected {expected}",
                    header.base_offset
                )));
            }
            indexer.on_batch(&header);
            records += u64::try_from(header.record_count).unwrap_or(0);
            if (keys.is_some() || parquet.is_some()) && !header.is_control() {
                batch.resize(header.size() as usize, 0);
                file.read_exact_at(&mut batch, position)
                    .map_err(|e| local(format!("reading at {position}: {e}")))?;
                let decoded = decode_records(&batch, DECOMPRESSED_MAX)
                    .map_err(|e| local(format!("records of the batch at {position}: {e}")))?;
                for record in decoded {
                    let aborted = header.is_transactional()
                        && segment
                            .aborted
                            .iter()
                            .any(|a| a.covers(header.producer_id, record.offset));
                    if aborted {
                        continue;
                    }
                    if let (Some(keys), Some(key)) = (keys.as_mut(), &record.key) {
                        keys.add(key, record.offset);
                    }
                    if let Some(parquet) = parquet.as_mut() {
                        parquet.push(&record)?;
                    }
                }
            }
            // Epochs only grow along a log; a batch stamped lower (a client's -1 on a log
            // that never stamped) stays in the epoch before it.
            if epochs
                .last()
                .is_none_or(|&(last, _)| header.partition_leader_epoch > last)
            {
                epochs.push((header.partition_leader_epoch, header.base_offset));
            }
            expected = header.next_offset();
            position += u64::from(header.size());
        }
        if position != end || expected != segment.next_offset {
            return Err(local(format!(
                "batches end at byte {position} and offset {expected}, not {end} and {}",
                segment.next_offset
            )));
        }
        indexer.seal();
        Ok(Scanned {
            indexer,
            records,
            epochs,
            keys,
            parquet: parquet
                .map(crate::parquet::ParquetWriter::finish)
                .transpose()?,
        })
    })
    .await
    .map_err(|e| ArchiveError::Local {
        path: PathBuf::new(),
        reason: format!("scan task failed: {e}"),
    })?
}

/// Uploads the segment's bytes, in parts when large; returns their CRC-32C.
async fn upload_file(
    remote: &crate::remote::Remote,
    key: &object_store::path::Path,
    segment: &SealedSegment,
) -> Result<u32, ArchiveError> {
    let path = segment.path.clone();
    let size = segment.size_bytes;
    let start = segment.start_position;
    let local = |reason: String| ArchiveError::Local {
        path: path.clone(),
        reason,
    };
    let file = std::sync::Arc::new(std::fs::File::open(&path).map_err(|e| local(e.to_string()))?);
    let read = |position: u64, len: usize| {
        let file = file.clone();
        let path = path.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; len];
                file.read_exact_at(&mut buf, start + position)
                    .map(|()| Bytes::from(buf))
                    .map_err(|e| ArchiveError::Local {
                        path,
                        reason: format!("reading at {position}: {e}"),
                    })
            })
            .await
            .map_err(|e| ArchiveError::Local {
                path: PathBuf::new(),
                reason: format!("read task failed: {e}"),
            })?
        }
    };
    if size < MULTIPART_BYTES_MIN as u64 {
        let bytes = read(0, size as usize).await?;
        let crc = crc32c::crc32c(&bytes);
        remote.put(key, bytes).await?;
        return Ok(crc);
    }
    let mut upload = remote.multipart(key, size).await?;
    let part = upload.part_bytes() as u64;
    let mut crc = 0u32;
    let mut position = 0u64;
    while position < size {
        let len = (size - position).min(part) as usize;
        let chunk = match read(position, len).await {
            Ok(chunk) => chunk,
            Err(e) => {
                upload.abort().await;
                return Err(e);
            }
        };
        crc = crc32c::crc32c_append(crc, &chunk);
        if let Err(e) = upload.write(chunk).await {
            upload.abort().await;
            return Err(e);
        }
        position += len as u64;
    }
    upload.finish().await?;
    Ok(crc)
}
