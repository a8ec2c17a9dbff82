//! Compaction of a compacted topic's archived segments.
//!
//! The same two steps as the local log's (see [`silt_index::compact`]), over objects: the
//! keys of the archived segments not compacted yet ([`Root::compacted_to`] on) are mapped to
//! their newest offsets, then the segments from the archive's start to the end of the map
//! are rewritten in groups that together fit `segment.bytes`, each group uploaded as one new
//! segment object with its sidecar (fresh object ids: nothing a root names is overwritten).
//! One new root then names the new list ([`crate::manifest::Manifest::rewrite`]): a reader
//! sees the old segments or the new ones, never a mix or a hole, and the replaced objects
//! stay for a grace period before they are deleted.
//!
//! Offsets do not change, so the archive still joins the local log exactly where it did.
//! Records the local log holds and the archive does not never take part: the archive is
//! compacted against itself.

use bytes::Bytes;
use silt_index::SegmentIndexer;
use silt_index::batch::BatchHeader;
use silt_index::compact::{CleanRules, Cleaned, KeyMap, Mapped, clean_batch, cleaned_bytes};
use silt_index::manifest::SegmentEntry;
use silt_index::record::decode_records;
use silt_index::segment::SegmentMeta;
use silt_index::sidecar::{AbortedRange, Sidecar};

use crate::error::ArchiveError;
use crate::manifest::ManifestReader;
use crate::partition::PartitionArchiver;

/// Decompressed bytes one batch may expand to while compacting.
const DECOMPRESSED_MAX: usize = 256 << 20;

/// How a partition's archive is compacted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArchiveCompaction {
    /// Memory of the key map.
    pub key_map_bytes: u64,
    /// Most bytes of input merged into one new segment (the topic's `segment.bytes`).
    pub segment_bytes: u64,
    /// Bytes between offset index entries of the new segments.
    pub index_interval_bytes: u32,
    /// `min.cleanable.dirty.ratio`.
    pub min_dirty_ratio: f64,
    /// `delete.retention.ms`.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: segments holding records younger than this are left alone.
    pub min_lag_ms: i64,
    /// How long replaced objects stay readable.
    pub grace_ms: i64,
    /// Compact whatever the dirty ratio.
    pub force: bool,
    /// Write a key index beside each new segment (the topic's `archive.key.index`).
    pub key_index: bool,
}

/// What an archive compaction pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ArchiveCompactionReport {
    /// Archived segments rewritten.
    pub segments_in: usize,
    /// New segments they became.
    pub segments_out: usize,
    /// Their bytes before.
    pub bytes_before: u64,
    /// Their bytes after.
    pub bytes_after: u64,
    /// Keys mapped.
    pub keys: usize,
    /// GETs made (segments and sidecars).
    pub gets: u64,
    /// PUTs made (segments and sidecars; the root and nodes not counted).
    pub puts: u64,
    /// The archive's compaction point after the pass.
    pub compacted_to: i64,
}

impl PartitionArchiver {
    /// Runs one compaction pass over the partition's archive if it is due (or `force`).
    ///
    /// # Errors
    ///
    /// Store failures, fencing, or an archived object that does not decode (nothing changes
    /// then; objects uploaded for the pass are orphans a later sweep removes).
    pub async fn compact(
        &mut self,
        rules: &ArchiveCompaction,
        now_ms: i64,
    ) -> Result<Option<ArchiveCompactionReport>, ArchiveError> {
        self.commit(now_ms).await?;
        let root = self.root().clone();
        if root.is_empty() {
            return Ok(None);
        }
        let reader = self.manifest().reader().clone();
        let entries = reader.entries(&root).await?;
        let Some(first) = entries.first().copied() else {
            return Ok(None);
        };
        // Records younger than min.compaction.lag.ms stay as they are, and what follows them.
        let lag_limit = now_ms.saturating_sub(rules.min_lag_ms);
        let eligible = entries
            .iter()
            .take_while(|e| rules.min_lag_ms == 0 || e.meta.max_timestamp <= lag_limit)
            .count();
        let (entries, untouched) = entries.split_at(eligible);
        if entries.is_empty() {
            return Ok(None);
        }
        let cleaned_to = root.compacted_to.max(first.meta.base_offset);
        let total: u64 = entries.iter().map(|e| e.meta.size_bytes).sum();
        let dirty: Vec<SegmentEntry> = entries
            .iter()
            .filter(|e| e.meta.last_offset >= cleaned_to)
            .copied()
            .collect();
        let dirty_bytes: u64 = dirty.iter().map(|e| e.meta.size_bytes).sum();
        let tombstones_due = root.tombstones_due_ms.is_some_and(|due| due <= now_ms);
        if dirty.is_empty() && !(tombstones_due && cleaned_to > first.meta.base_offset) {
            return Ok(None);
        }
        let ratio = dirty_bytes as f64 / total.max(1) as f64;
        if !rules.force && !tombstones_due && ratio < rules.min_dirty_ratio {
            return Ok(None);
        }

        let mut report = ArchiveCompactionReport::default();
        let mut map = KeyMap::with_memory(rules.key_map_bytes, cleaned_to);
        'map: for entry in &dirty {
            let segment = fetch(&reader, entry, &mut report).await?;
            for (header, range) in &segment.batches {
                if header.next_offset() <= cleaned_to {
                    continue;
                }
                let mapped = map
                    .add_batch(
                        &segment.bytes[range.clone()],
                        segment.is_aborted(header),
                        DECOMPRESSED_MAX,
                    )
                    .map_err(|e| corrupt(&reader, entry, e))?;
                if mapped == Mapped::Full {
                    break 'map;
                }
            }
        }
        report.keys = map.len();
        if map.end() < cleaned_to || (map.end() == cleaned_to && !tombstones_due) {
            return Ok(None);
        }
        let to_clean: Vec<SegmentEntry> = entries
            .iter()
            .take_while(|e| e.meta.base_offset < map.end())
            .copied()
            .collect();
        let Some(last) = to_clean.last() else {
            return Ok(None);
        };
        let compacted_to = map.end().min(last.meta.last_offset + 1);
        let clean = CleanRules {
            tombstones_below: cleaned_to,
            tombstone_horizon_ms: now_ms.saturating_sub(rules.delete_retention_ms),
        };
        let mut rewritten: Vec<SegmentEntry> = Vec::with_capacity(entries.len());
        let mut replaced: Vec<SegmentEntry> = Vec::new();
        let mut tombstones_due_ms: Option<i64> = None;
        for group in groups(&to_clean, rules.segment_bytes) {
            let pass = GroupPass {
                reader: &reader,
                map: &map,
                clean: &clean,
                rules,
                now_ms,
            };
            let outcome = pass.rewrite(group, &mut report).await?;
            if let Some(oldest) = outcome.oldest_tombstone_ms {
                let due = oldest.saturating_add(rules.delete_retention_ms);
                tombstones_due_ms = Some(tombstones_due_ms.map_or(due, |d| d.min(due)));
            }
            match outcome.entry {
                Some(entry) => {
                    report.segments_in += group.len();
                    report.segments_out += 1;
                    report.bytes_before += group.iter().map(|e| e.meta.size_bytes).sum::<u64>();
                    report.bytes_after += entry.meta.size_bytes;
                    replaced.extend_from_slice(group);
                    rewritten.push(entry);
                }
                None => rewritten.extend_from_slice(group),
            }
        }
        rewritten.extend(entries.iter().skip(to_clean.len()).copied());
        rewritten.extend_from_slice(untouched);
        report.compacted_to = compacted_to;
        if replaced.is_empty() && compacted_to == root.compacted_to {
            return Ok(Some(report));
        }
        self.manifest_mut()
            .rewrite(
                &rewritten,
                &replaced,
                now_ms.saturating_add(rules.grace_ms),
                compacted_to,
                tombstones_due_ms,
                now_ms,
            )
            .await?;
        if rules.key_index {
            // Derived data, as after an upload: a failure only slows lookups.
            let (reader, root) = (self.manifest().reader(), self.root());
            if let Err(e) = crate::keys::refresh_filters(reader, root, false).await {
                tracing::warn!(partition = ?reader.id(), error = %e, "key filters not refreshed after compaction; tried again after the next upload");
            }
        }
        Ok(Some(report))
    }
}

/// Consecutive entries that together fit `segment_bytes` (each alone always forms a group).
fn groups(entries: &[SegmentEntry], segment_bytes: u64) -> Vec<&[SegmentEntry]> {
    let mut groups = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (i, entry) in entries.iter().enumerate() {
        let span = entry.meta.last_offset + 1 - entries[start].meta.base_offset;
        if i > start
            && (bytes + entry.meta.size_bytes > segment_bytes || span > i64::from(i32::MAX))
        {
            groups.push(&entries[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += entry.meta.size_bytes;
    }
    if start < entries.len() {
        groups.push(&entries[start..]);
    }
    groups
}

/// An archived segment, fetched: its bytes, batches and sidecar.
struct Fetched {
    bytes: Bytes,
    batches: Vec<(BatchHeader, std::ops::Range<usize>)>,
    sidecar: Sidecar,
}

impl Fetched {
    fn is_aborted(&self, header: &BatchHeader) -> bool {
        header.is_transactional()
            && !header.is_control()
            && self.sidecar.aborted.as_ref().is_some_and(|aborted| {
                aborted.iter().any(|a| {
                    a.producer_id == header.producer_id
                        && (a.first_offset..a.last_offset).contains(&header.base_offset)
                })
            })
    }
}

async fn fetch(
    reader: &ManifestReader,
    entry: &SegmentEntry,
    report: &mut ArchiveCompactionReport,
) -> Result<Fetched, ArchiveError> {
    let key = reader.segment_key(entry);
    let bytes = reader.remote().get(&key).await?;
    let sidecar_key = reader.sidecar_key(entry);
    let sidecar_bytes = reader.remote().get(&sidecar_key).await?;
    report.gets += 2;
    let sidecar = Sidecar::decode(&sidecar_bytes).map_err(|e| ArchiveError::Corrupt {
        key: sidecar_key.to_string(),
        reason: e.to_string(),
    })?;
    let scan = silt_index::batch::scan(&bytes, u32::MAX, true);
    if let Some(stop) = scan.stop {
        return Err(ArchiveError::Corrupt {
            key: key.to_string(),
            reason: format!("batches stop at byte {}: {stop:?}", scan.valid_bytes),
        });
    }
    Ok(Fetched {
        bytes,
        batches: scan.batches,
        sidecar,
    })
}

fn corrupt(
    reader: &ManifestReader,
    entry: &SegmentEntry,
    e: impl std::fmt::Display,
) -> ArchiveError {
    ArchiveError::Corrupt {
        key: reader.segment_key(entry).to_string(),
        reason: format!("cannot compact: {e}"),
    }
}

struct GroupPass<'a> {
    reader: &'a ManifestReader,
    map: &'a KeyMap,
    clean: &'a CleanRules,
    rules: &'a ArchiveCompaction,
    now_ms: i64,
}

struct GroupOutcome {
    /// The new entry, uploaded; `None` when the group stays as it is.
    entry: Option<SegmentEntry>,
    oldest_tombstone_ms: Option<i64>,
}

impl GroupPass<'_> {
    async fn rewrite(
        &self,
        group: &[SegmentEntry],
        report: &mut ArchiveCompactionReport,
    ) -> Result<GroupOutcome, ArchiveError> {
        let base = group[0].meta.base_offset;
        let last_offset = group.last().map_or(base, |e| e.meta.last_offset);
        let mut indexer = SegmentIndexer::new(base, self.rules.index_interval_bytes);
        let mut out: Vec<u8> = Vec::new();
        let mut records = 0u64;
        let mut changed = group.len() > 1;
        let mut epochs: Vec<(i32, i64)> = Vec::new();
        let mut epochs_known = true;
        let mut aborted: Vec<AbortedRange> = Vec::new();
        let mut oldest_tombstone_ms: Option<i64> = None;
        let mut keys = self
            .rules
            .key_index
            .then(|| silt_index::keys::KeyIndexBuilder::new(base));
        for entry in group {
            let segment = fetch(self.reader, entry, report).await?;
            match &segment.sidecar.epochs {
                Some(starts) => {
                    for &(epoch, start) in starts {
                        if epochs.last().is_none_or(|&(last, _)| epoch > last) {
                            epochs.push((epoch, start));
                        }
                    }
                }
                None => epochs_known = false,
            }
            for range in segment.sidecar.aborted.iter().flatten() {
                if !aborted.contains(range) {
                    aborted.push(*range);
                }
            }
            for (header, range) in &segment.batches {
                let envelope = header.next_offset() == last_offset + 1;
                let batch = &segment.bytes[range.clone()];
                let cleaned = clean_batch(
                    batch,
                    self.map,
                    self.clean,
                    segment.is_aborted(header),
                    envelope,
                    DECOMPRESSED_MAX,
                )
                .map_err(|e| corrupt(self.reader, entry, e))?;
                if cleaned.tombstones > 0 {
                    oldest_tombstone_ms = Some(
                        oldest_tombstone_ms
                            .map_or(header.max_timestamp, |t| t.min(header.max_timestamp)),
                    );
                }
                if cleaned.cleaned != Cleaned::Whole {
                    changed = true;
                }
                let Some(bytes) = cleaned_bytes(batch, cleaned.cleaned) else {
                    continue;
                };
                let kept = BatchHeader::parse(&bytes, u32::MAX)
                    .ok()
                    .flatten()
                    .ok_or_else(|| corrupt(self.reader, entry, "rewritten batch"))?;
                indexer.on_batch(&kept);
                records += u64::try_from(kept.record_count).unwrap_or(0);
                if let Some(keys) = keys.as_mut()
                    && !kept.is_control()
                    && !segment.is_aborted(header)
                {
                    for record in decode_records(&bytes, DECOMPRESSED_MAX)
                        .map_err(|e| corrupt(self.reader, entry, e))?
                    {
                        if let Some(key) = &record.key {
                            keys.add(key, record.offset);
                        }
                    }
                }
                if !epochs_known
                    && epochs
                        .last()
                        .is_none_or(|&(last, _)| kept.partition_leader_epoch > last)
                {
                    epochs.push((kept.partition_leader_epoch, kept.base_offset));
                }
                out.extend_from_slice(&bytes);
            }
        }
        if !changed {
            return Ok(GroupOutcome {
                entry: None,
                oldest_tombstone_ms,
            });
        }
        indexer.seal();
        let stats = indexer.stats();
        let meta = SegmentMeta {
            base_offset: base,
            last_offset,
            first_timestamp: stats.first_timestamp,
            max_timestamp: stats.max_timestamp,
            record_count: records,
            size_bytes: out.len() as u64,
            leader_epoch: epochs.last().map_or(0, |&(epoch, _)| epoch.max(0)),
            crc32c: crc32c::crc32c(&out),
        };
        let object_id = crate::partition::rand_u64();
        let layout = self.reader.layout();
        let id = self.reader.id();
        let remote = self.reader.remote();
        remote
            .put(
                &layout.segment(id, base, last_offset, object_id),
                Bytes::from(out),
            )
            .await?;
        let sidecar = Sidecar {
            meta,
            offset_index: indexer.offset_index().clone(),
            time_index: indexer.time_index().clone(),
            epochs: Some(epochs),
            aborted: Some(aborted),
        };
        remote
            .put(
                &layout.sidecar(id, base, last_offset, object_id),
                Bytes::from(sidecar.encode()),
            )
            .await?;
        report.puts += 2;
        if let Some(keys) = keys {
            remote
                .put(
                    &layout.key_index(id, base, last_offset, object_id),
                    Bytes::from(keys.finish(last_offset)),
                )
                .await?;
            report.puts += 1;
        }
        Ok(GroupOutcome {
            entry: Some(SegmentEntry {
                meta,
                uploaded_ms: self.now_ms,
                object_id,
            }),
            oldest_tombstone_ms,
        })
    }
}
