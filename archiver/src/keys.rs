//! Finding records by key in the archive without replaying it.
//!
//! Beside each archived segment of a topic with `archive.key.index=true` sits its key index
//! (`keys/<segment>.keys`, format in [`silt_index::keys`]). Every [`FILTER_MEMBERS`] indexed
//! segments, the partition's writer folds their indexes into one key filter
//! (`keys/filter-<first>-<last>-<id>.kf`): a Bloom filter per segment laid out so that one
//! ranged GET answers "which of these segments may hold this key". A lookup of one partition
//! is then:
//!
//! 1. the manifest's segments (root and nodes, cached) and one LIST of `keys/`;
//! 2. per filter, its member table (cached) and one row: the segments that may hold the key;
//! 3. per segment not in a filter yet, its index's header and fence (cached) and the block of
//!    entries for the key's hash; the same for each candidate a filter named;
//! 4. per offset found, the batch holding it, through the [`RemoteReader`] (a sidecar and one
//!    chunk), where the key itself is compared: a hash collision costs a read, never a wrong
//!    record. Aborted transactional records are left out.
//!
//! Segments with no key index (archived before the topic turned it on, or rewritten by
//! archive compaction since) are read whole and their records compared, and the caller is
//! told how many there were, so an answer is never silently incomplete.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use silt_index::batch::{BATCH_HEADER_BYTES, BatchHeader};
use silt_index::keys::{
    FILTER_HEADER_BYTES, FilterBuilder, FilterHead, FilterMember, KEYS_HEADER_BYTES, KeyIndexHead,
    MEMBER_BYTES, key_hash,
};
use silt_index::manifest::SegmentEntry;
use silt_index::record::{Record, decode_records};

use crate::error::ArchiveError;
use crate::layout::{KeyObject, parse_key_object};
use crate::manifest::{ManifestReader, Root};
use crate::partition::rand_u64;
use crate::reader::RemoteReader;

/// Indexed segments folded into one key filter.
pub const FILTER_MEMBERS: usize = 32;
/// Bytes read for a key index's header and fence at first (more if the fence is longer).
const HEAD_READ_BYTES: u64 = 64 << 10;
/// Largest decompressed batch decoded while looking for a key.
const DECOMPRESSED_MAX: usize = 256 << 20;

/// A segment by the names of its objects.
type SegmentName = (i64, i64, u64);

fn name_of(entry: &SegmentEntry) -> SegmentName {
    (
        entry.meta.base_offset,
        entry.meta.last_offset,
        entry.object_id,
    )
}

fn corrupt(key: &Path, e: impl std::fmt::Display) -> ArchiveError {
    ArchiveError::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    }
}

/// What a partition's `keys/` directory holds.
#[derive(Debug, Clone, Default)]
pub struct KeyObjects {
    /// Key indexes by segment, with their sizes.
    pub indexes: BTreeMap<SegmentName, u64>,
    /// Key filters: (key, first base, last base, size).
    pub filters: Vec<(Path, i64, i64, u64)>,
}

impl KeyObjects {
    /// True when `base` falls in a filter's range.
    fn filtered(&self, base: i64) -> bool {
        self.filters
            .iter()
            .any(|(_, first, last, _)| (*first..=*last).contains(&base))
    }
}

/// Lists a partition's key indexes and filters (one LIST).
///
/// # Errors
///
/// Store failures.
pub async fn list(manifest: &ManifestReader) -> Result<KeyObjects, ArchiveError> {
    let dir = manifest.layout().keys_dir(manifest.id());
    let mut found = KeyObjects::default();
    for object in manifest.remote().list(&dir, None).await? {
        match parse_key_object(&object.location) {
            Some(KeyObject::Index(base, last, id)) => {
                found.indexes.insert((base, last, id), object.size);
            }
            Some(KeyObject::Filter { first, last }) => {
                found
                    .filters
                    .push((object.location, first, last, object.size));
            }
            None => {}
        }
    }
    Ok(found)
}

/// The segments under `root`, in offset order.
///
/// # Errors
///
/// Store failures reading manifest nodes.
pub async fn segments(
    manifest: &ManifestReader,
    root: &Root,
) -> Result<Vec<SegmentEntry>, ArchiveError> {
    let mut entries = manifest.entries(root).await?;
    entries.retain(|entry| entry.meta.last_offset >= root.start_offset);
    Ok(entries)
}

/// Writes key filters over indexed segments of the manifest that no filter covers yet, each
/// over [`FILTER_MEMBERS`] of them; with `all`, the last, smaller group too. Deletes filters
/// whose segments are all gone. Returns the filters written.
///
/// # Errors
///
/// Store failures; [`ArchiveError::Corrupt`] for a key index that does not parse.
pub async fn refresh_filters(
    manifest: &ManifestReader,
    root: &Root,
    all: bool,
) -> Result<usize, ArchiveError> {
    let objects = list(manifest).await?;
    let live = segments(manifest, root).await?;
    let first_live = live
        .first()
        .map_or(root.next_offset, |e| e.meta.base_offset);
    for (key, _, last, _) in &objects.filters {
        if *last < first_live {
            manifest.remote().delete(key).await?;
        }
    }
    let loose: Vec<(SegmentName, u64)> = live
        .iter()
        .map(name_of)
        .filter(|name| !objects.filtered(name.0))
        .filter_map(|name| objects.indexes.get(&name).map(|&size| (name, size)))
        .collect();
    let mut written = 0;
    for group in loose.chunks(FILTER_MEMBERS) {
        if group.len() < FILTER_MEMBERS && !all {
            break;
        }
        write_filter(manifest, group).await?;
        written += 1;
    }
    Ok(written)
}

/// Builds and uploads the filter over `group` (segments with their key index sizes).
async fn write_filter(
    manifest: &ManifestReader,
    group: &[(SegmentName, u64)],
) -> Result<(), ArchiveError> {
    let (remote, layout, id) = (manifest.remote(), manifest.layout(), manifest.id());
    // Sized for the member with the most distinct keys: read every header first.
    let mut keys_max = 0;
    for &((base, last, object), _) in group {
        let key = layout.key_index(id, base, last, object);
        let header = remote.get_range(&key, 0..KEYS_HEADER_BYTES).await?;
        let keys = KeyIndexHead::distinct_keys_in(&header).map_err(|e| corrupt(&key, e))?;
        keys_max = keys_max.max(keys);
    }
    let members: Vec<FilterMember> = group
        .iter()
        .map(|&((base_offset, last_offset, object_id), _)| FilterMember {
            base_offset,
            last_offset,
            object_id,
        })
        .collect();
    let mut builder = FilterBuilder::new(members, keys_max);
    for (column, &((base, last, object), _)) in group.iter().enumerate() {
        let key = layout.key_index(id, base, last, object);
        let bytes = remote.get(&key).await?;
        let head = KeyIndexHead::decode(&bytes).map_err(|e| corrupt(&key, e))?;
        for hash in head.hashes(&bytes) {
            builder.add(column, hash);
        }
    }
    let first = group.first().map_or(0, |g| g.0.0);
    let last = group.last().map_or(0, |g| g.0.0);
    let key = layout.key_filter(id, first, last, rand_u64());
    remote.put(&key, Bytes::from(builder.finish())).await?;
    tracing::debug!(partition = ?id, first, last, members = group.len(), "key filter written");
    Ok(())
}

/// Reads a key index's header and fence.
async fn index_head(
    manifest: &ManifestReader,
    key: &Path,
    size: u64,
) -> Result<KeyIndexHead, ArchiveError> {
    let remote = manifest.remote();
    let mut bytes = remote.get_range(key, 0..HEAD_READ_BYTES.min(size)).await?;
    let want = KeyIndexHead::head_bytes(&bytes).map_err(|e| corrupt(key, e))?;
    if want > bytes.len() as u64 {
        bytes = remote.get_range(key, 0..want.min(size)).await?;
    }
    KeyIndexHead::decode(&bytes).map_err(|e| corrupt(key, e))
}

/// A record found by key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its timestamp.
    pub timestamp: i64,
    /// The key.
    pub key: Bytes,
    /// The value (`None`: a tombstone).
    pub value: Option<Bytes>,
    /// Headers in order.
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

impl Found {
    /// As JSON: key, value and header parts as text when UTF-8, else base64 under
    /// `<name>_base64`; null when absent.
    pub fn to_json(&self) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        object.insert("partition".into(), self.partition.into());
        object.insert("offset".into(), self.offset.into());
        object.insert("timestamp".into(), self.timestamp.into());
        put_bytes(&mut object, "key", Some(&self.key));
        put_bytes(&mut object, "value", self.value.as_ref());
        let headers: Vec<serde_json::Value> = self
            .headers
            .iter()
            .map(|(k, v)| {
                let mut header = serde_json::Map::new();
                put_bytes(&mut header, "key", Some(k));
                put_bytes(&mut header, "value", v.as_ref());
                serde_json::Value::Object(header)
            })
            .collect();
        object.insert("headers".into(), headers.into());
        serde_json::Value::Object(object)
    }
}

fn put_bytes(
    object: &mut serde_json::Map<String, serde_json::Value>,
    name: &str,
    bytes: Option<&Bytes>,
) {
    use base64::Engine;
    let value = match bytes.map(|b| std::str::from_utf8(b).map_err(|_| b)) {
        None => serde_json::Value::Null,
        Some(Ok(text)) => text.into(),
        Some(Err(b)) => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(b);
            object.insert(format!("{name}_base64"), encoded.into());
            return;
        }
    };
    object.insert(name.into(), value);
}

/// What a lookup asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyQuery {
    /// The key, byte for byte.
    pub key: Bytes,
    /// Records with a timestamp at or after this (ms), if set.
    pub from_ms: Option<i64>,
    /// Records with a timestamp before this (ms), if set.
    pub to_ms: Option<i64>,
}

impl KeyQuery {
    fn in_time(&self, timestamp: i64) -> bool {
        self.from_ms.is_none_or(|from| timestamp >= from)
            && self.to_ms.is_none_or(|to| timestamp < to)
    }
}

/// What a lookup of one partition cost and saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FindStats {
    /// Segments in the time range.
    pub segments: u64,
    /// Of those, with a key index.
    pub indexed: u64,
    /// Of those, covered by a filter.
    pub filtered: u64,
    /// Key indexes read (candidates of a filter, and indexed segments in none).
    pub indexes_read: u64,
    /// Segments with no key index, read whole.
    pub unindexed: u64,
    /// Records found.
    pub found: u64,
    /// The caller stopped the search before its end.
    pub stopped: bool,
}

/// Finds every record of `query.key` in one archived partition, in offset order, and hands
/// each to `on_found`, which may stop the search (the reads under way are dropped).
/// `progress` hears of each segment done, with the total.
///
/// # Errors
///
/// Store failures, and [`ArchiveError::Corrupt`] for an index or batch that fails its checks.
pub async fn find(
    reader: &Arc<RemoteReader>,
    manifest: &ManifestReader,
    query: &KeyQuery,
    on_found: &mut (dyn FnMut(Found) -> ControlFlow<()> + Send),
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<FindStats, ArchiveError> {
    let mut stats = FindStats::default();
    let root = manifest.latest_root().await?;
    if root.is_empty() {
        return Ok(stats);
    }
    let hash = key_hash(&query.key);
    let entries: Vec<SegmentEntry> = segments(manifest, &root)
        .await?
        .into_iter()
        .filter(|e| {
            query
                .from_ms
                .is_none_or(|from| e.meta.max_timestamp >= from)
        })
        .collect();
    stats.segments = entries.len() as u64;
    let wanted: BTreeSet<SegmentName> = entries.iter().map(name_of).collect();
    let objects = list(manifest).await?;

    // Filters first, side by side: the members that may hold the key, and those that surely
    // do not.
    let covering = objects
        .filters
        .iter()
        .filter(|(_, first, last, _)| wanted.iter().any(|n| (*first..=*last).contains(&n.0)));
    // (Futures made up front: a stream mapping through a closure makes the future not Send
    // for the compiler, rust-lang/rust#102211.)
    let asks: Vec<_> = covering
        .map(|(key, _, _, size)| ask_filter(manifest, key, *size, hash))
        .collect();
    let mut answers = futures::stream::iter(asks).buffered(LOOKUP_GETS_IN_FLIGHT);
    let mut ruled_out: BTreeSet<SegmentName> = BTreeSet::new();
    let mut candidates: BTreeSet<SegmentName> = BTreeSet::new();
    while let Some(answer) = answers.next().await {
        let (maybe, members) = answer?;
        for name in members {
            if maybe.contains(&name) {
                candidates.insert(name);
            } else {
                ruled_out.insert(name);
            }
        }
    }

    // Then the segments, several at once (each its index and then its records), their
    // records handed over in offset order.
    let total = entries.len() as u64;
    let mut plan = Vec::with_capacity(entries.len());
    for entry in &entries {
        let name = name_of(entry);
        let index = objects.indexes.get(&name).copied();
        stats.indexed += u64::from(index.is_some());
        let filtered = ruled_out.contains(&name) || candidates.contains(&name);
        stats.filtered += u64::from(filtered);
        let how = if ruled_out.contains(&name) && !candidates.contains(&name) {
            Lookup::RuledOut
        } else if let Some(size) = index {
            stats.indexes_read += 1;
            Lookup::Index(size)
        } else {
            stats.unindexed += 1;
            Lookup::Scan
        };
        plan.push((entry, how));
    }
    let mut done = 0;
    let reads: Vec<_> = plan
        .into_iter()
        .map(|(entry, how)| segment_matches(reader, manifest, &root, entry, how, query, hash))
        .collect();
    let mut results = futures::stream::iter(reads).buffered(LOOKUP_GETS_IN_FLIGHT);
    while let Some(found) = results.next().await {
        for record in found? {
            stats.found += 1;
            if on_found(record).is_break() {
                stats.stopped = true;
                return Ok(stats);
            }
        }
        done += 1;
        progress(done, total);
    }
    Ok(stats)
}

/// Segments (or filters) a lookup reads at once: enough to hide the store's latency behind
/// each other, few enough to stay polite to it.
const LOOKUP_GETS_IN_FLIGHT: usize = 8;

/// How [`find`] reads one segment.
#[derive(Debug, Clone, Copy)]
enum Lookup {
    /// A key filter says the key is not in it.
    RuledOut,
    /// Through its key index, of this size.
    Index(u64),
    /// Whole: it has no key index.
    Scan,
}

/// Asks a key filter about `hash`: the members that may hold it, and all its members.
async fn ask_filter(
    manifest: &ManifestReader,
    key: &Path,
    size: u64,
    hash: u64,
) -> Result<(BTreeSet<SegmentName>, Vec<SegmentName>), ArchiveError> {
    // Header and member table: one GET for a filter of the usual size.
    let usual = FILTER_HEADER_BYTES + MEMBER_BYTES * FILTER_MEMBERS as u64;
    let mut table = manifest.remote().get_range(key, 0..usual.min(size)).await?;
    let head_bytes = FilterHead::head_bytes(&table).map_err(|e| corrupt(key, e))?;
    if head_bytes > table.len() as u64 {
        table = manifest.remote().get_range(key, 0..head_bytes).await?;
    }
    let head = FilterHead::decode(&table).map_err(|e| corrupt(key, e))?;
    let row = manifest.remote().get_range(key, head.row_for(hash)).await?;
    let maybe = head
        .candidates(&row, hash)
        .into_iter()
        .map(|m| (m.base_offset, m.last_offset, m.object_id))
        .collect();
    let members = head
        .members
        .iter()
        .map(|m| (m.base_offset, m.last_offset, m.object_id))
        .collect();
    Ok((maybe, members))
}

/// The records of `query.key` in one segment, in offset order.
async fn segment_matches(
    reader: &Arc<RemoteReader>,
    manifest: &ManifestReader,
    root: &Root,
    entry: &SegmentEntry,
    how: Lookup,
    query: &KeyQuery,
    hash: u64,
) -> Result<Vec<Found>, ArchiveError> {
    let mut found = Vec::new();
    let mut records = RecordReader::new(reader, manifest, root);
    let offsets = match how {
        Lookup::RuledOut => return Ok(found),
        Lookup::Scan => {
            records
                .scan(entry, query, &mut |record| found.push(record))
                .await?;
            return Ok(found);
        }
        Lookup::Index(size) => {
            let name = name_of(entry);
            let key = manifest
                .layout()
                .key_index(manifest.id(), name.0, name.1, name.2);
            let head = index_head(manifest, &key, size).await?;
            let range = head.entries_for(hash);
            if range.is_empty() {
                return Ok(found);
            }
            let block = manifest.remote().get_range(&key, range).await?;
            head.offsets_in(&block, hash)
        }
    };
    for offset in offsets {
        if offset < root.start_offset {
            continue;
        }
        if let Some(record) = records.at(offset, query).await? {
            found.push(record);
        }
    }
    Ok(found)
}

/// Reads records at offsets for [`find`], a batch decoded once for all its matches.
struct RecordReader<'a> {
    reader: &'a Arc<RemoteReader>,
    manifest: &'a ManifestReader,
    root: &'a Root,
    /// The last batch read: its records and whether each is aborted.
    batch: Option<DecodedBatch>,
}

struct DecodedBatch {
    base: i64,
    last: i64,
    records: Vec<(Record, bool)>,
}

impl<'a> RecordReader<'a> {
    fn new(
        reader: &'a Arc<RemoteReader>,
        manifest: &'a ManifestReader,
        root: &'a Root,
    ) -> RecordReader<'a> {
        RecordReader {
            reader,
            manifest,
            root,
            batch: None,
        }
    }

    /// The record at `offset`, if its key is the query's and it is committed and in time.
    async fn at(&mut self, offset: i64, query: &KeyQuery) -> Result<Option<Found>, ArchiveError> {
        if !self
            .batch
            .as_ref()
            .is_some_and(|b| (b.base..=b.last).contains(&offset))
        {
            let Some(slice) = self
                .reader
                .read(self.manifest, self.root, offset, 1, true)
                .await?
            else {
                return Ok(None);
            };
            let batches = decode_slice(&slice.records, &slice.aborted, self.manifest)?;
            self.batch = batches
                .into_iter()
                .find(|b| (b.base..=b.last).contains(&offset));
        }
        let partition = self.manifest.id().partition;
        Ok(self.batch.as_ref().and_then(|b| {
            b.records
                .iter()
                .find(|(r, _)| r.offset == offset)
                .and_then(|(r, aborted)| matching(r, *aborted, query, partition))
        }))
    }

    /// Every record of `entry` with the query's key: the segment read whole, in order.
    async fn scan(
        &mut self,
        entry: &SegmentEntry,
        query: &KeyQuery,
        on_found: &mut (dyn FnMut(Found) + Send),
    ) -> Result<(), ArchiveError> {
        let partition = self.manifest.id().partition;
        each_record(
            self.reader,
            self.manifest,
            self.root,
            entry,
            &mut |record| {
                if let Some(found) = matching(&record, false, query, partition) {
                    on_found(found);
                }
            },
        )
        .await
    }
}

/// Hands `on_record` every committed data record of `entry` at or above the partition's
/// start, in offset order: control records and records of aborted transactions are left out.
/// The segment is read whole, a few MiB per GET, through `reader` (and its cache).
///
/// # Errors
///
/// Store failures; [`ArchiveError::Corrupt`] for batches that do not decode.
pub async fn each_record(
    reader: &Arc<RemoteReader>,
    manifest: &ManifestReader,
    root: &Root,
    entry: &SegmentEntry,
    on_record: &mut (dyn FnMut(Record) + Send),
) -> Result<(), ArchiveError> {
    let from = entry.meta.base_offset.max(root.start_offset);
    walk(
        reader,
        manifest,
        root,
        from..=entry.meta.last_offset,
        &mut |record, aborted| {
            if !aborted {
                on_record(record);
            }
        },
    )
    .await
}

/// Reads `offsets` of a partition through `reader` and hands over each data record in them,
/// with whether its transaction was aborted.
async fn walk(
    reader: &Arc<RemoteReader>,
    manifest: &ManifestReader,
    root: &Root,
    offsets: std::ops::RangeInclusive<i64>,
    on_record: &mut (dyn FnMut(Record, bool) + Send),
) -> Result<(), ArchiveError> {
    let (mut offset, last) = offsets.into_inner();
    while offset <= last {
        let Some(slice) = reader.read(manifest, root, offset, 4 << 20, true).await? else {
            break;
        };
        if slice.next_offset <= offset {
            break;
        }
        for batch in decode_slice(&slice.records, &slice.aborted, manifest)? {
            for (record, aborted) in batch.records {
                if (offset..=last).contains(&record.offset) {
                    on_record(record, aborted);
                }
            }
        }
        offset = slice.next_offset;
    }
    Ok(())
}

fn matching(record: &Record, aborted: bool, query: &KeyQuery, partition: i32) -> Option<Found> {
    let key = record.key.as_ref()?;
    if aborted || *key != query.key || !query.in_time(record.timestamp) {
        return None;
    }
    Some(Found {
        partition,
        offset: record.offset,
        timestamp: record.timestamp,
        key: key.clone(),
        value: record.value.clone(),
        headers: record.headers.clone(),
    })
}

/// Decodes the data batches of a slice, each record marked aborted or not.
fn decode_slice(
    bytes: &Bytes,
    aborted: &[silt_index::sidecar::AbortedRange],
    manifest: &ManifestReader,
) -> Result<Vec<DecodedBatch>, ArchiveError> {
    let bad = |e: String| ArchiveError::Corrupt {
        key: manifest.layout().segments_dir(manifest.id()).to_string(),
        reason: e,
    };
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + BATCH_HEADER_BYTES <= bytes.len() {
        let header = BatchHeader::parse(&bytes[at..], u32::MAX)
            .map_err(|e| bad(e.to_string()))?
            .ok_or_else(|| bad("batch header cut short".into()))?;
        let end = at + header.size() as usize;
        if end > bytes.len() {
            break;
        }
        if !header.is_control() {
            let records = decode_records(&bytes[at..end], DECOMPRESSED_MAX)
                .map_err(|e| bad(e.to_string()))?;
            out.push(DecodedBatch {
                base: header.base_offset,
                last: header.last_offset(),
                records: records
                    .into_iter()
                    .map(|r| {
                        let aborted = header.is_transactional()
                            && aborted
                                .iter()
                                .any(|a| a.covers(header.producer_id, r.offset));
                        (r, aborted)
                    })
                    .collect(),
            });
        }
        at = end;
    }
    Ok(out)
}

/// Writes the key index of an archived segment that has none, from the segment read back
/// through `reader` (for segments archived before the topic turned key indexes on). Returns
/// the keyed records indexed.
///
/// # Errors
///
/// Store failures; [`ArchiveError::Corrupt`] for batches that do not decode.
pub async fn index_segment(
    reader: &Arc<RemoteReader>,
    manifest: &ManifestReader,
    root: &Root,
    entry: &SegmentEntry,
) -> Result<u64, ArchiveError> {
    let (base, last) = (entry.meta.base_offset, entry.meta.last_offset);
    let mut builder = silt_index::keys::KeyIndexBuilder::new(base);
    // From the segment's base even when retention moved the start into it: the index
    // describes the object, and lookups skip offsets below the start.
    let whole = Root {
        start_offset: root.start_offset.min(base),
        ..root.clone()
    };
    walk(
        reader,
        manifest,
        &whole,
        base..=last,
        &mut |record, aborted| {
            if let (false, Some(key)) = (aborted, &record.key) {
                builder.add(key, record.offset);
            }
        },
    )
    .await?;
    let indexed = builder.len() as u64;
    let key = manifest
        .layout()
        .key_index(manifest.id(), base, last, entry.object_id);
    manifest
        .remote()
        .put(&key, Bytes::from(builder.finish(last)))
        .await?;
    Ok(indexed)
}

/// The partitions Kafka clients' default partitioners put `key` in, among `partitions`, each
/// with the partitioner that does: murmur2 (the Java client, librdkafka's `murmur2_random`)
/// and CRC-32 (librdkafka's default, `consistent_random`).
pub fn default_partitions(key: &[u8], partitions: i32) -> Vec<(i32, &'static str)> {
    let murmur = silt_index::keys::murmur2_partition(key, partitions);
    let crc = silt_index::keys::crc32_partition(key, partitions);
    if crc == murmur {
        return vec![(
            murmur,
            "murmur2 and crc32 agree: the Java client's default partitioner and librdkafka's (consistent_random, murmur2_random)",
        )];
    }
    vec![
        (
            murmur,
            "murmur2: the Java client's default partitioner, librdkafka's murmur2_random",
        ),
        (
            crc,
            "crc32: librdkafka's default partitioner (consistent_random)",
        ),
    ]
}
