//! Compaction of record batches, pure: which records of a batch a compacted topic keeps.
//!
//! The broker (local segments) and the archiver (archived segments) both compact the same
//! way, in two steps over a partition's batches in offset order:
//!
//! 1. [`KeyMap::add_batch`] over the *dirty* batches (those not compacted yet) maps each key's
//!    hash to its newest offset. The map has a fixed capacity: when a batch would not fit, the
//!    pass ends before it ([`KeyMap::end`]), and the next pass starts there.
//! 2. [`clean_batch`] over every batch from the start of the log to the end of the map: a
//!    record survives when it is the newest of its key (or beyond the map), and is not a
//!    tombstone past its horizon, nor part of an aborted transaction, nor keyless.
//!
//! Offsets never change: a batch keeps its base offset, last offset delta, producer id, epoch
//! and sequences, so consumers see gaps (as Kafka's do) and the idempotent-producer state read
//! back from the log is the same. A batch left with no record is dropped, or kept as an empty
//! batch when the caller needs its envelope (the last batch of a segment, so segments keep
//! their offset ranges; a producer's newest batch; every batch of a Raft log, whose entries
//! are counted batch by batch). Control batches (transaction markers, silt's own) are kept
//! whole.

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};

use crate::batch::{BATCH_HEADER_BYTES, BatchHeader, Codec};
use crate::record::{Record, RecordError, compress, decode_records, put_record};

/// The 128-bit hash a key is known by in the map (xxh3): two keys sharing one would merge,
/// which at 128 bits does not happen in practice (Kafka's cleaner uses MD5 the same way).
pub type KeyHash = u128;

/// Memory one map entry is counted for (hash, offset, and the hash table's overhead).
pub const KEY_MAP_ENTRY_BYTES: u64 = 40;

/// The hash of a key.
pub fn key_hash(key: &[u8]) -> KeyHash {
    twox_hash::XxHash3_128::oneshot(key)
}

/// Newest offset of each key among the dirty batches of one compaction pass.
#[derive(Debug)]
pub struct KeyMap {
    newest: HashMap<KeyHash, i64>,
    capacity: usize,
    /// Offset after the last batch mapped: records from here on are outside this pass.
    end: i64,
    full: bool,
}

/// What [`KeyMap::add_batch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapped {
    /// The batch's keys are in the map (or it had none to add).
    Added,
    /// The map cannot take the batch's records: the pass ends before it.
    Full,
}

impl KeyMap {
    /// A map of at most `memory_bytes` (at least one entry), starting at offset `start`.
    pub fn with_memory(memory_bytes: u64, start: i64) -> KeyMap {
        let capacity = (memory_bytes / KEY_MAP_ENTRY_BYTES).max(1) as usize;
        KeyMap {
            newest: HashMap::with_capacity(capacity.min(1 << 16)),
            capacity,
            end: start,
            full: false,
        }
    }

    /// Offset after the last batch mapped.
    pub fn end(&self) -> i64 {
        self.end
    }

    /// Keys mapped.
    pub fn len(&self) -> usize {
        self.newest.len()
    }

    /// True when no key is mapped.
    pub fn is_empty(&self) -> bool {
        self.newest.is_empty()
    }

    /// True once a batch did not fit.
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// The newest offset mapped for a key hash.
    pub fn newest(&self, hash: KeyHash) -> Option<i64> {
        self.newest.get(&hash).copied()
    }

    /// Maps the keys of `batch` (a whole batch at or after [`KeyMap::end`]), unless its records
    /// might not fit. Control batches, batches of aborted transactions (`aborted`) and keyless
    /// records add nothing; the map's end moves past them all the same.
    ///
    /// # Errors
    ///
    /// [`RecordError`] for a batch whose records do not decode.
    pub fn add_batch(
        &mut self,
        batch: &[u8],
        aborted: bool,
        decompressed_max: usize,
    ) -> Result<Mapped, RecordError> {
        let header = parse(batch)?;
        if self.full {
            return Ok(Mapped::Full);
        }
        if !header.is_control() && !aborted {
            let count = usize::try_from(header.record_count).unwrap_or(0);
            if !self.newest.is_empty() && self.newest.len() + count > self.capacity {
                self.full = true;
                return Ok(Mapped::Full);
            }
            for record in decode_records(batch, decompressed_max)? {
                if let Some(key) = &record.key {
                    self.newest.insert(key_hash(key), record.offset);
                }
            }
        }
        self.end = self.end.max(header.next_offset());
        Ok(Mapped::Added)
    }
}

/// The rules of one cleaning pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanRules {
    /// Tombstones below this offset (in batches compacted before) may be dropped...
    pub tombstones_below: i64,
    /// ...when their batch's largest timestamp is older than this (now minus
    /// `delete.retention.ms`).
    pub tombstone_horizon_ms: i64,
}

/// What cleaning kept of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanedBatch {
    /// The records kept.
    pub cleaned: Cleaned,
    /// Tombstones among them (a later pass may drop them once past their horizon).
    pub tombstones: u32,
}

/// The records cleaning kept of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleaned {
    /// Every record: the batch as it was.
    Whole,
    /// Some records: the batch rebuilt around them (same offsets, producer, epoch).
    Rewritten(Vec<u8>),
    /// No record; the batch as an empty envelope, if the caller asked for one.
    Empty(Option<Vec<u8>>),
}

/// Cleans one whole batch against `map`: see the module documentation. `aborted` says the
/// batch belongs to an aborted transaction; `keep_envelope` asks for an empty batch rather
/// than nothing when no record survives.
///
/// # Errors
///
/// [`RecordError`] for a batch whose records do not decode.
pub fn clean_batch(
    batch: &[u8],
    map: &KeyMap,
    rules: &CleanRules,
    aborted: bool,
    keep_envelope: bool,
    decompressed_max: usize,
) -> Result<CleanedBatch, RecordError> {
    let header = parse(batch)?;
    let whole = CleanedBatch {
        cleaned: Cleaned::Whole,
        tombstones: 0,
    };
    if header.is_control() || header.base_offset >= map.end() {
        return Ok(whole);
    }
    let records = if aborted {
        Vec::new()
    } else {
        decode_records(batch, decompressed_max)?
    };
    let total = records.len();
    let kept: Vec<Record> = records
        .into_iter()
        .filter(|record| survives(record, &header, map, rules))
        .collect();
    let tombstones = kept.iter().filter(|r| r.value.is_none()).count() as u32;
    let cleaned = if kept.len() == total && !aborted {
        Cleaned::Whole
    } else if kept.is_empty() {
        Cleaned::Empty(keep_envelope.then(|| rebuild(batch, &header, &[])))
    } else {
        Cleaned::Rewritten(rebuild(batch, &header, &kept))
    };
    Ok(CleanedBatch {
        cleaned,
        tombstones,
    })
}

fn survives(record: &Record, header: &BatchHeader, map: &KeyMap, rules: &CleanRules) -> bool {
    let Some(key) = &record.key else {
        // A compacted topic has no place for a keyless record (Kafka's cleaner drops them too).
        return false;
    };
    if record.offset >= map.end() {
        return true;
    }
    if map
        .newest(key_hash(key))
        .is_some_and(|newest| record.offset < newest)
    {
        return false;
    }
    let expired_tombstone = record.value.is_none()
        && record.offset < rules.tombstones_below
        && header.max_timestamp < rules.tombstone_horizon_ms;
    !expired_tombstone
}

fn parse(batch: &[u8]) -> Result<BatchHeader, RecordError> {
    Ok(
        BatchHeader::parse(batch, u32::MAX)?.ok_or(crate::batch::BatchError::Header(
            "shorter than a batch header",
        ))?,
    )
}

/// The batch of `original` holding only `kept` (a subset of its records, in order): the
/// header's fields are kept but for length, CRC and count; an empty batch is uncompressed.
fn rebuild(original: &[u8], header: &BatchHeader, kept: &[Record]) -> Vec<u8> {
    let mut body = BytesMut::new();
    for record in kept {
        put_record(
            &mut body,
            record.timestamp.wrapping_sub(header.base_timestamp),
            record.offset - header.base_offset,
            record.key.as_deref(),
            record.value.as_deref(),
            &record.headers,
        );
    }
    let codec = if kept.is_empty() {
        Codec::None
    } else {
        header.codec()
    };
    let body = compress(codec, &body);
    let mut out = Vec::with_capacity(BATCH_HEADER_BYTES + body.len());
    out.extend_from_slice(&original[..BATCH_HEADER_BYTES]);
    out.put_slice(&body);
    let length = (out.len() - crate::batch::BATCH_LENGTH_PREFIX_BYTES) as i32;
    out[8..12].copy_from_slice(&length.to_be_bytes());
    let attributes = (header.attributes & !0x07) | codec.id();
    out[21..23].copy_from_slice(&attributes.to_be_bytes());
    out[57..61].copy_from_slice(&(kept.len() as i32).to_be_bytes());
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

/// The bytes of a batch as [`Cleaned`] leaves them, if any.
pub fn cleaned_bytes(batch: &[u8], cleaned: Cleaned) -> Option<Bytes> {
    match cleaned {
        Cleaned::Whole => Some(Bytes::copy_from_slice(batch)),
        Cleaned::Rewritten(bytes) | Cleaned::Empty(Some(bytes)) => Some(Bytes::from(bytes)),
        Cleaned::Empty(None) => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::batch::verify_crc;
    use crate::record::{NewRecord, ProducerStamp, encode_batch, encode_txn_marker};

    const MAX: usize = 1 << 20;

    fn batch_at(base: i64, records: &[(Option<&str>, Option<&str>)], codec: Codec) -> Vec<u8> {
        let records: Vec<NewRecord> = records
            .iter()
            .enumerate()
            .map(|(i, (k, v))| NewRecord {
                key: k.map(|k| Bytes::copy_from_slice(k.as_bytes())),
                value: v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
                headers: vec![(Bytes::from_static(b"h"), None)],
                timestamp: 1_000 + base + i as i64,
            })
            .collect();
        encode_batch(base, &records, codec, None)
    }

    fn no_tombstone_expiry() -> CleanRules {
        CleanRules {
            tombstones_below: 0,
            tombstone_horizon_ms: i64::MIN,
        }
    }

    #[test]
    fn rewritten_batches_keep_offsets_producer_and_crc() {
        let stamp = ProducerStamp {
            producer_id: 7,
            producer_epoch: 2,
            base_sequence: 40,
        };
        let records: Vec<NewRecord> = ["a", "b", "a"]
            .iter()
            .map(|k| NewRecord {
                key: Some(Bytes::copy_from_slice(k.as_bytes())),
                value: Some(Bytes::from_static(b"v")),
                headers: Vec::new(),
                timestamp: 5,
            })
            .collect();
        let batch = encode_batch(100, &records, Codec::Zstd, Some(stamp));
        let mut map = KeyMap::with_memory(1 << 20, 100);
        map.add_batch(&batch, false, MAX).unwrap();
        let Cleaned::Rewritten(out) =
            clean_batch(&batch, &map, &no_tombstone_expiry(), false, false, MAX)
                .unwrap()
                .cleaned
        else {
            panic!("one record should go");
        };
        verify_crc(&out).unwrap();
        let before = BatchHeader::parse(&batch, u32::MAX).unwrap().unwrap();
        let after = BatchHeader::parse(&out, u32::MAX).unwrap().unwrap();
        assert_eq!(after.base_offset, before.base_offset);
        assert_eq!(after.last_offset_delta, before.last_offset_delta);
        assert_eq!(
            (after.producer_id, after.producer_epoch, after.base_sequence),
            (7, 2, 40)
        );
        assert_eq!(after.codec(), Codec::Zstd);
        let offsets: Vec<i64> = decode_records(&out, MAX)
            .unwrap()
            .iter()
            .map(|r| r.offset)
            .collect();
        assert_eq!(offsets, vec![101, 102]);
    }

    #[test]
    fn empty_envelopes_and_markers() {
        let batch = batch_at(0, &[(Some("k"), Some("1"))], Codec::Lz4);
        let newer = batch_at(1, &[(Some("k"), Some("2"))], Codec::None);
        let marker = encode_txn_marker(2, 9, 0, 0, 1, 5);
        let mut map = KeyMap::with_memory(1 << 20, 0);
        for b in [&batch, &newer, &marker] {
            map.add_batch(b, false, MAX).unwrap();
        }
        let rules = no_tombstone_expiry();
        assert_eq!(
            clean_batch(&batch, &map, &rules, false, false, MAX)
                .unwrap()
                .cleaned,
            Cleaned::Empty(None)
        );
        let Cleaned::Empty(Some(envelope)) = clean_batch(&batch, &map, &rules, false, true, MAX)
            .unwrap()
            .cleaned
        else {
            panic!("envelope asked for");
        };
        verify_crc(&envelope).unwrap();
        let header = BatchHeader::parse(&envelope, u32::MAX).unwrap().unwrap();
        assert_eq!((header.record_count, header.base_offset), (0, 0));
        assert_eq!(
            clean_batch(&marker, &map, &rules, false, false, MAX)
                .unwrap()
                .cleaned,
            Cleaned::Whole
        );
    }

    #[test]
    fn a_full_map_ends_the_pass_before_the_batch() {
        let mut map = KeyMap::with_memory(2 * KEY_MAP_ENTRY_BYTES, 0);
        let first = batch_at(
            0,
            &[(Some("a"), Some("1")), (Some("b"), Some("1"))],
            Codec::None,
        );
        let second = batch_at(2, &[(Some("c"), Some("1"))], Codec::None);
        assert_eq!(map.add_batch(&first, false, MAX).unwrap(), Mapped::Added);
        assert_eq!(map.add_batch(&second, false, MAX).unwrap(), Mapped::Full);
        assert_eq!(map.end(), 2);
        // Beyond the map, nothing is touched.
        assert_eq!(
            clean_batch(&second, &map, &no_tombstone_expiry(), false, false, MAX)
                .unwrap()
                .cleaned,
            Cleaned::Whole
        );
    }

    /// One operation of the model: a record (key index, value or tombstone) in its own batch
    /// or appended to the previous one, or a marker, or an aborted transaction's record.
    #[derive(Debug, Clone)]
    enum Op {
        Put(u8, Option<u8>, bool),
        Aborted(u8),
        Marker,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u8..12, proptest::option::weighted(0.8, any::<u8>()), any::<bool>())
                .prop_map(|(k, v, same)| Op::Put(k, v, same)),
            1 => (0u8..12).prop_map(Op::Aborted),
            1 => Just(Op::Marker),
        ]
    }

    proptest! {
        /// Against the model "newest value of every key, tombstones gone once expired, markers
        /// kept, aborted records gone", compacting in passes of any map size.
        #[test]
        fn compaction_matches_the_model(
            ops in proptest::collection::vec(op(), 1..60),
            capacity in 1u64..8,
            expire in any::<bool>(),
        ) {
            // Build the log: (batch bytes, aborted).
            let mut log: Vec<(Vec<u8>, bool)> = Vec::new();
            let mut pending: Vec<(Option<String>, Option<String>)> = Vec::new();
            let mut offset = 0i64;
            let flush = |pending: &mut Vec<(Option<String>, Option<String>)>, log: &mut Vec<(Vec<u8>, bool)>, offset: &mut i64| {
                if pending.is_empty() { return; }
                let records: Vec<(Option<&str>, Option<&str>)> = pending.iter().map(|(k, v)| (k.as_deref(), v.as_deref())).collect();
                log.push((batch_at(*offset, &records, Codec::Gzip), false));
                *offset += pending.len() as i64;
                pending.clear();
            };
            let mut model: BTreeMap<u8, (i64, Option<u8>)> = BTreeMap::new();
            let mut markers = Vec::new();
            for op in &ops {
                match op {
                    Op::Put(k, v, same) => {
                        if !same { flush(&mut pending, &mut log, &mut offset); }
                        let at = offset + pending.len() as i64;
                        model.insert(*k, (at, *v));
                        pending.push((Some(format!("k{k}")), v.map(|v| v.to_string())));
                    }
                    Op::Aborted(k) => {
                        flush(&mut pending, &mut log, &mut offset);
                        log.push((batch_at(offset, &[(Some(&format!("k{k}")), Some("aborted"))], Codec::None), true));
                        offset += 1;
                    }
                    Op::Marker => {
                        flush(&mut pending, &mut log, &mut offset);
                        markers.push(offset);
                        log.push((encode_txn_marker(offset, 1, 0, 0, 0, 1), false));
                        offset += 1;
                    }
                }
            }
            flush(&mut pending, &mut log, &mut offset);

            // Compact in passes until the map covers the whole log; each pass starts where
            // the previous map ended and cleans from the start.
            let mut dirty_from = 0i64;
            let mut passes = 0;
            loop {
                let mut map = KeyMap::with_memory(capacity * KEY_MAP_ENTRY_BYTES * 2, dirty_from);
                for (batch, aborted) in &log {
                    let header = BatchHeader::parse(batch, u32::MAX).unwrap().unwrap();
                    if header.base_offset < dirty_from { continue; }
                    if map.add_batch(batch, *aborted, MAX).unwrap() == Mapped::Full { break; }
                }
                let rules = CleanRules {
                    tombstones_below: if expire { dirty_from } else { i64::MIN },
                    tombstone_horizon_ms: i64::MAX,
                };
                let mut next = Vec::new();
                for (batch, aborted) in &log {
                    let cleaned = clean_batch(batch, &map, &rules, *aborted, false, MAX).unwrap().cleaned;
                    if let Some(bytes) = cleaned_bytes(batch, cleaned) {
                        verify_crc(&bytes).unwrap();
                        next.push((bytes.to_vec(), *aborted));
                    }
                }
                log = next;
                passes += 1;
                // Once the map covers the log, one more pass when tombstones expire, so those
                // compacted once are droppable.
                if map.end() >= offset && (!expire || passes > 1) {
                    break;
                }
                dirty_from = map.end();
                prop_assert!(passes < 200, "no progress");
            }

            // Every surviving data record is the newest of its key; every key's newest value
            // survives (unless an expired tombstone); markers all stay; nothing aborted.
            let mut seen: BTreeMap<u8, (i64, Option<u8>)> = BTreeMap::new();
            let mut seen_markers = Vec::new();
            for (batch, _) in &log {
                let header = BatchHeader::parse(batch, u32::MAX).unwrap().unwrap();
                if header.is_control() { seen_markers.push(header.base_offset); continue; }
                for record in decode_records(batch, MAX).unwrap() {
                    let key: u8 = std::str::from_utf8(&record.key.unwrap()[1..]).unwrap().parse().unwrap();
                    let value = record.value.map(|v| std::str::from_utf8(&v).unwrap().to_string());
                    prop_assert_ne!(value.as_deref(), Some("aborted"));
                    let value = value.map(|v| v.parse::<u8>().unwrap());
                    prop_assert!(seen.insert(key, (record.offset, value)).is_none(), "key {} twice", key);
                }
            }
            prop_assert_eq!(seen_markers, markers);
            for (key, (at, value)) in &model {
                match (seen.get(key), value) {
                    (Some(found), _) => prop_assert_eq!(found, &(*at, *value)),
                    (None, None) if expire => {}
                    (None, _) => prop_assert!(false, "key {} lost", key),
                }
            }
        }
    }
}
