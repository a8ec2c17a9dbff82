//! Key indexes of archived segments (`SILTKEYS` v1) and the per-partition filters over them
//! (`SILTKFLT` v1), both pure: the archiver does the GETs and PUTs.
//!
//! A **key index** lists, for every record of a segment that has a key, the xxh3-64 hash of
//! the key and the record's offset (relative to the segment's base), sorted by hash and then
//! offset: 12 bytes per keyed record. Before the entries sits a fence, the first hash of every
//! block of [`BLOCK_ENTRIES`] entries, so a lookup reads the header and the fence (one small
//! ranged GET, cached) and then only the block, or the few blocks, that may hold the hash.
//! Hashes, not keys, are kept: the index stays small whatever the keys' size, and a lookup
//! checks the key itself on the record it reads, so a hash collision costs a read, never a
//! wrong answer.
//!
//! A **filter** covers a set of segments of one partition (see the archiver's `keys` module
//! for when one is written): a blocked Bloom filter per segment, all with the same number of
//! 512-bit blocks, stored row by row (block `b` of every segment side by side). "Which of these
//! segments may hold this key?" is then one ranged GET of one row, whatever the number of
//! segments; a key absent from the topic is answered without touching a segment or its index.
//! A filter is built from the hashes in the key indexes, so it can be rebuilt at any size.
//!
//! Layouts (big-endian):
//!
//! ```text
//! SILTKEYS v1                            SILTKFLT v1
//!  0 magic "SILTKEYS"                     0 magic "SILTKFLT"
//!  8 version u16 = 1                      8 version u16 = 1
//! 10 reserved u16                        10 bits set per key u16
//! 12 entries per fence block u32         12 members u32
//! 16 base offset i64                     16 blocks per member u32 (a power of two)
//! 24 last offset i64                     20 CRC-32C of bytes 0..20 and the member table
//! 32 entries u64                         24 reserved (8)
//! 40 fence hashes u32                    32 members: (base i64, last i64, object id u64)...
//! 44 reserved u32                        .. rows: blocks x members x 64 bytes
//! 48 distinct keys u64
//! 56 reserved u32
//! 60 CRC-32C of bytes 0..60 and fence
//! 64 fence: u64 per block
//! .. entries: (hash u64, offset - base u32)...
//! ```

use std::ops::Range;

use crate::IndexError;

/// Entries per fence block: a 4 KiB read at most per block.
pub const BLOCK_ENTRIES: u32 = 341;
/// Bytes of one entry.
pub const ENTRY_BYTES: u64 = 12;
/// Bytes of a key index's fixed header.
pub const KEYS_HEADER_BYTES: u64 = 64;
/// Bytes of a filter's fixed header.
pub const FILTER_HEADER_BYTES: u64 = 32;
/// Bytes of one member in a filter's member table.
pub const MEMBER_BYTES: u64 = 24;
/// Bytes of one Bloom block (512 bits).
pub const BLOOM_BLOCK_BYTES: u64 = 64;
/// Bits of filter per distinct key: with [`BLOOM_BITS_PER_KEY`] set bits, about 1% false
/// positives per segment.
pub const BLOOM_BITS_PER_KEY: u64 = 10;
/// Bits set per key.
pub const BLOOM_BITS_PER_KEY_SET: u16 = 7;

const KEYS_MAGIC: &[u8; 8] = b"SILTKEYS";
const FILTER_MAGIC: &[u8; 8] = b"SILTKFLT";
const VERSION: u16 = 1;

/// The hash of a key in key indexes and filters: xxh3-64, seed 0 (stable across versions).
pub fn key_hash(key: &[u8]) -> u64 {
    twox_hash::XxHash3_64::oneshot(key)
}

/// Kafka's default partitioner for keyed records: murmur2 of the key, positive, modulo the
/// partition count (the Java client, and librdkafka's `murmur2_random`).
pub fn murmur2_partition(key: &[u8], partitions: i32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) % partitions.max(1) as u32) as i32
}

/// librdkafka's default partitioner (`consistent_random`) for keyed records: CRC-32 of the key
/// modulo the partition count.
pub fn crc32_partition(key: &[u8], partitions: i32) -> i32 {
    (crc32fast::hash(key) % partitions.max(1) as u32) as i32
}

/// Kafka's murmur2 hash (the Java client's `Utils.murmur2`), as partitioners use it.
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

fn corrupt(position: u64, reason: &'static str) -> IndexError {
    IndexError::Corrupt { position, reason }
}

fn be_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(word)
}

/// Collects a segment's keyed records and writes its key index.
#[derive(Debug, Clone)]
pub struct KeyIndexBuilder {
    base_offset: i64,
    entries: Vec<(u64, u32)>,
}

impl KeyIndexBuilder {
    /// A builder for the segment starting at `base_offset`.
    pub fn new(base_offset: i64) -> KeyIndexBuilder {
        KeyIndexBuilder {
            base_offset,
            entries: Vec::new(),
        }
    }

    /// Notes the record at `offset` with `key`. Offsets more than `u32::MAX` past the base
    /// (a segment of four billion records) are not indexed.
    pub fn add(&mut self, key: &[u8], offset: i64) {
        if let Ok(delta) = u32::try_from(offset - self.base_offset) {
            self.entries.push((key_hash(key), delta));
        }
    }

    /// Keyed records noted so far.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no keyed record was noted.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The key index of the segment ending at `last_offset`.
    pub fn finish(mut self, last_offset: i64) -> Vec<u8> {
        self.entries.sort_unstable();
        let fence: Vec<u64> = self
            .entries
            .chunks(BLOCK_ENTRIES as usize)
            .map(|block| block[0].0)
            .collect();
        let mut out = Vec::with_capacity(
            KEYS_HEADER_BYTES as usize
                + fence.len() * 8
                + self.entries.len() * ENTRY_BYTES as usize,
        );
        out.extend_from_slice(KEYS_MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(&BLOCK_ENTRIES.to_be_bytes());
        out.extend_from_slice(&self.base_offset.to_be_bytes());
        out.extend_from_slice(&last_offset.to_be_bytes());
        out.extend_from_slice(&(self.entries.len() as u64).to_be_bytes());
        out.extend_from_slice(&(fence.len() as u32).to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        let mut distinct = 0u64;
        let mut previous = None;
        for &(hash, _) in &self.entries {
            if previous != Some(hash) {
                distinct += 1;
                previous = Some(hash);
            }
        }
        out.extend_from_slice(&distinct.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        let mut fence_bytes = Vec::with_capacity(fence.len() * 8);
        for hash in &fence {
            fence_bytes.extend_from_slice(&hash.to_be_bytes());
        }
        let crc = crc32c::crc32c_append(crc32c::crc32c(&out), &fence_bytes);
        out.extend_from_slice(&crc.to_be_bytes());
        out.extend_from_slice(&fence_bytes);
        for (hash, delta) in &self.entries {
            out.extend_from_slice(&hash.to_be_bytes());
            out.extend_from_slice(&delta.to_be_bytes());
        }
        out
    }
}

/// The header and fence of a key index: what a lookup reads first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyIndexHead {
    /// The segment's first offset.
    pub base_offset: i64,
    /// The segment's last offset.
    pub last_offset: i64,
    /// Keyed records indexed.
    pub entries: u64,
    /// Distinct key hashes among them.
    pub distinct_keys: u64,
    block_entries: u32,
    fence: Vec<u64>,
}

impl KeyIndexHead {
    /// Bytes of header and fence, from the fixed header's first [`KEYS_HEADER_BYTES`].
    ///
    /// # Errors
    ///
    /// [`IndexError::Corrupt`] when the bytes are not a key index of a known version.
    pub fn head_bytes(header: &[u8]) -> Result<u64, IndexError> {
        if header.len() < KEYS_HEADER_BYTES as usize {
            return Err(corrupt(header.len() as u64, "key index header cut short"));
        }
        if &header[..8] != KEYS_MAGIC {
            return Err(corrupt(0, "not a key index (magic)"));
        }
        if be_u16(header, 8) != VERSION {
            return Err(corrupt(8, "key index version unknown"));
        }
        Ok(KEYS_HEADER_BYTES + u64::from(be_u32(header, 40)) * 8)
    }

    /// Distinct keys of the index, from its fixed header alone.
    ///
    /// # Errors
    ///
    /// As [`KeyIndexHead::head_bytes`].
    pub fn distinct_keys_in(header: &[u8]) -> Result<u64, IndexError> {
        KeyIndexHead::head_bytes(header)?;
        Ok(be_u64(header, 48))
    }

    /// Decodes header and fence from the object's first bytes (at least
    /// [`KeyIndexHead::head_bytes`] of them).
    ///
    /// # Errors
    ///
    /// [`IndexError::Corrupt`] for a bad header, a short read or a failed CRC.
    pub fn decode(bytes: &[u8]) -> Result<KeyIndexHead, IndexError> {
        let head = KeyIndexHead::head_bytes(bytes)? as usize;
        if bytes.len() < head {
            return Err(corrupt(bytes.len() as u64, "key index fence cut short"));
        }
        let fence_bytes = &bytes[KEYS_HEADER_BYTES as usize..head];
        let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[..60]), fence_bytes);
        if crc != be_u32(bytes, 60) {
            return Err(corrupt(60, "key index header CRC mismatch"));
        }
        let block_entries = be_u32(bytes, 12);
        let entries = be_u64(bytes, 32);
        let fence: Vec<u64> = fence_bytes.chunks_exact(8).map(|w| be_u64(w, 0)).collect();
        if block_entries == 0 || entries.div_ceil(u64::from(block_entries)) != fence.len() as u64 {
            return Err(corrupt(12, "key index fence does not match its entries"));
        }
        Ok(KeyIndexHead {
            base_offset: be_u64(bytes, 16) as i64,
            last_offset: be_u64(bytes, 24) as i64,
            entries,
            distinct_keys: be_u64(bytes, 48),
            block_entries,
            fence,
        })
    }

    /// Bytes of header and fence.
    pub fn len_bytes(&self) -> u64 {
        KEYS_HEADER_BYTES + self.fence.len() as u64 * 8
    }

    /// The byte range of the object holding every entry that may have `hash` (empty when
    /// none can).
    pub fn entries_for(&self, hash: u64) -> Range<u64> {
        // Blocks whose first hash is <= hash, from the last one starting below it (equal
        // hashes may run across a block boundary).
        let first = self.fence.partition_point(|&h| h < hash).saturating_sub(1);
        let end = self.fence.partition_point(|&h| h <= hash);
        if end <= first {
            return 0..0;
        }
        let block = u64::from(self.block_entries);
        let from = first as u64 * block;
        let to = (end as u64 * block).min(self.entries);
        let start = self.len_bytes();
        start + from * ENTRY_BYTES..start + to * ENTRY_BYTES
    }

    /// The offsets of entries with `hash` in `bytes`, the range [`KeyIndexHead::entries_for`]
    /// named.
    pub fn offsets_in(&self, bytes: &[u8], hash: u64) -> Vec<i64> {
        entries(bytes)
            .filter(|&(h, _)| h == hash)
            .map(|(_, delta)| self.base_offset + i64::from(delta))
            .collect()
    }

    /// Every entry's hash, from the whole object's bytes (to build a filter).
    pub fn hashes<'a>(&self, object: &'a [u8]) -> impl Iterator<Item = u64> + 'a {
        let start = (self.len_bytes() as usize).min(object.len());
        entries(&object[start..]).map(|(h, _)| h)
    }
}

fn entries(bytes: &[u8]) -> impl Iterator<Item = (u64, u32)> + '_ {
    bytes
        .chunks_exact(ENTRY_BYTES as usize)
        .map(|e| (be_u64(e, 0), be_u32(e, 8)))
}

/// A segment covered by a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FilterMember {
    /// Its first offset.
    pub base_offset: i64,
    /// Its last offset.
    pub last_offset: i64,
    /// The object id in its objects' names.
    pub object_id: u64,
}

/// Bloom blocks per member for a filter whose largest member has `keys` distinct keys.
pub fn filter_blocks(keys: u64) -> u32 {
    let bits = keys.max(1) * BLOOM_BITS_PER_KEY;
    let blocks = bits.div_ceil(BLOOM_BLOCK_BYTES * 8);
    blocks.next_power_of_two().min(1 << 24) as u32
}

/// Block of `hash` among `blocks` (a power of two): its top bits.
fn block_of(hash: u64, blocks: u32) -> u64 {
    if blocks <= 1 {
        0
    } else {
        hash >> (64 - blocks.trailing_zeros())
    }
}

/// Bits of `hash` in a 512-bit block.
fn bits_of(hash: u64) -> impl Iterator<Item = usize> {
    let a = hash as u32;
    let b = ((hash >> 32) as u32) | 1;
    (0..u32::from(BLOOM_BITS_PER_KEY_SET))
        .map(move |i| (a.wrapping_add(i.wrapping_mul(b)) & 511) as usize)
}

/// Writes a filter over some segments.
#[derive(Debug, Clone)]
pub struct FilterBuilder {
    members: Vec<FilterMember>,
    blocks: u32,
    rows: Vec<u8>,
}

impl FilterBuilder {
    /// A filter over `members`, sized for `keys_max` keys in the largest.
    pub fn new(members: Vec<FilterMember>, keys_max: u64) -> FilterBuilder {
        let blocks = filter_blocks(keys_max);
        let rows = vec![0u8; blocks as usize * members.len() * BLOOM_BLOCK_BYTES as usize];
        FilterBuilder {
            members,
            blocks,
            rows,
        }
    }

    /// Notes that member `member` holds a key with `hash`.
    pub fn add(&mut self, member: usize, hash: u64) {
        let block = block_of(hash, self.blocks) as usize;
        let at = (block * self.members.len() + member) * BLOOM_BLOCK_BYTES as usize;
        for bit in bits_of(hash) {
            self.rows[at + bit / 8] |= 1 << (bit % 8);
        }
    }

    /// The filter's bytes.
    pub fn finish(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            FILTER_HEADER_BYTES as usize
                + self.members.len() * MEMBER_BYTES as usize
                + self.rows.len(),
        );
        out.extend_from_slice(FILTER_MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&BLOOM_BITS_PER_KEY_SET.to_be_bytes());
        out.extend_from_slice(&(self.members.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.blocks.to_be_bytes());
        let mut table = Vec::with_capacity(self.members.len() * MEMBER_BYTES as usize);
        for m in &self.members {
            table.extend_from_slice(&m.base_offset.to_be_bytes());
            table.extend_from_slice(&m.last_offset.to_be_bytes());
            table.extend_from_slice(&m.object_id.to_be_bytes());
        }
        let crc = crc32c::crc32c_append(crc32c::crc32c(&out), &table);
        out.extend_from_slice(&crc.to_be_bytes());
        out.resize(FILTER_HEADER_BYTES as usize, 0);
        out.extend_from_slice(&table);
        out.extend_from_slice(&self.rows);
        out
    }
}

/// The header and member table of a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterHead {
    /// The segments it covers, in column order.
    pub members: Vec<FilterMember>,
    /// Bloom blocks per member.
    pub blocks: u32,
    bits_set: u16,
}

impl FilterHead {
    /// Bytes of header and member table, from the first [`FILTER_HEADER_BYTES`].
    ///
    /// # Errors
    ///
    /// [`IndexError::Corrupt`] when the bytes are not a filter of a known version.
    pub fn head_bytes(header: &[u8]) -> Result<u64, IndexError> {
        if header.len() < FILTER_HEADER_BYTES as usize {
            return Err(corrupt(header.len() as u64, "key filter header cut short"));
        }
        if &header[..8] != FILTER_MAGIC {
            return Err(corrupt(0, "not a key filter (magic)"));
        }
        if be_u16(header, 8) != VERSION {
            return Err(corrupt(8, "key filter version unknown"));
        }
        Ok(FILTER_HEADER_BYTES + u64::from(be_u32(header, 12)) * MEMBER_BYTES)
    }

    /// Decodes header and member table.
    ///
    /// # Errors
    ///
    /// [`IndexError::Corrupt`] for a bad header, a short read or a failed CRC.
    pub fn decode(bytes: &[u8]) -> Result<FilterHead, IndexError> {
        let head = FilterHead::head_bytes(bytes)? as usize;
        if bytes.len() < head {
            return Err(corrupt(bytes.len() as u64, "key filter members cut short"));
        }
        let table = &bytes[FILTER_HEADER_BYTES as usize..head];
        if crc32c::crc32c_append(crc32c::crc32c(&bytes[..20]), table) != be_u32(bytes, 20) {
            return Err(corrupt(20, "key filter header CRC mismatch"));
        }
        let blocks = be_u32(bytes, 16);
        if !blocks.is_power_of_two() {
            return Err(corrupt(16, "key filter blocks not a power of two"));
        }
        let members = table
            .chunks_exact(MEMBER_BYTES as usize)
            .map(|m| FilterMember {
                base_offset: be_u64(m, 0) as i64,
                last_offset: be_u64(m, 8) as i64,
                object_id: be_u64(m, 16),
            })
            .collect();
        Ok(FilterHead {
            members,
            blocks,
            bits_set: be_u16(bytes, 10),
        })
    }

    /// The byte range of the row `hash` falls in.
    pub fn row_for(&self, hash: u64) -> Range<u64> {
        let row = self.members.len() as u64 * BLOOM_BLOCK_BYTES;
        let start = FILTER_HEADER_BYTES
            + self.members.len() as u64 * MEMBER_BYTES
            + block_of(hash, self.blocks) * row;
        start..start + row
    }

    /// The members whose block in `row` (the bytes [`FilterHead::row_for`] named) may hold
    /// `hash`.
    pub fn candidates(&self, row: &[u8], hash: u64) -> Vec<FilterMember> {
        let bits: Vec<usize> = bits_of(hash)
            .take(usize::from(self.bits_set.max(1)))
            .collect();
        self.members
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                let at = i * BLOOM_BLOCK_BYTES as usize;
                row.get(at..at + BLOOM_BLOCK_BYTES as usize)
                    .is_none_or(|block| bits.iter().all(|&b| block[b / 8] & (1 << (b % 8)) != 0))
            })
            .map(|(_, m)| *m)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index_of(keys: &[(&[u8], i64)], base: i64, last: i64) -> Vec<u8> {
        let mut builder = KeyIndexBuilder::new(base);
        for (key, offset) in keys {
            builder.add(key, *offset);
        }
        builder.finish(last)
    }

    fn lookup(object: &[u8], key: &[u8]) -> Vec<i64> {
        let head = KeyIndexHead::decode(object).unwrap();
        let range = head.entries_for(key_hash(key));
        head.offsets_in(
            &object[range.start as usize..range.end as usize],
            key_hash(key),
        )
    }

    #[test]
    fn every_offset_of_a_key_is_found_across_blocks() {
        // 2,000 records over 50 keys: each key's entries span blocks of 341.
        let keys: Vec<Vec<u8>> = (0..50)
            .map(|k| format!("customer-{k}").into_bytes())
            .collect();
        let records: Vec<(&[u8], i64)> = (0..2000)
            .map(|i| (keys[i % 50].as_slice(), 1000 + i as i64))
            .collect();
        let object = index_of(&records, 1000, 2999);
        for (k, key) in keys.iter().enumerate() {
            let expected: Vec<i64> = (0..2000)
                .filter(|i| i % 50 == k)
                .map(|i| 1000 + i as i64)
                .collect();
            assert_eq!(lookup(&object, key), expected, "key {k}");
        }
        assert!(lookup(&object, b"nobody").is_empty());
    }

    #[test]
    fn one_key_repeated_past_a_block_is_read_from_every_block_it_spans() {
        let records: Vec<(&[u8], i64)> = (0..1000).map(|i| (&b"same"[..], i)).collect();
        let object = index_of(&records, 0, 999);
        assert_eq!(lookup(&object, b"same"), (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn an_empty_index_answers_nothing() {
        let object = index_of(&[], 5, 9);
        let head = KeyIndexHead::decode(&object).unwrap();
        assert_eq!(
            (head.entries, head.base_offset, head.last_offset),
            (0, 5, 9)
        );
        assert!(head.entries_for(key_hash(b"k")).is_empty());
    }

    #[test]
    fn a_damaged_head_is_refused() {
        let mut object = index_of(&[(&b"a"[..], 0)], 0, 0);
        object[70] ^= 1;
        assert!(KeyIndexHead::decode(&object).is_err());
        assert!(KeyIndexHead::decode(b"SILTKEYS").is_err());
        assert!(KeyIndexHead::decode(&[0u8; 64]).is_err());
    }

    #[test]
    fn a_filter_keeps_every_member_holding_a_key_and_few_others() {
        let members: Vec<FilterMember> = (0..32)
            .map(|i| FilterMember {
                base_offset: i * 1000,
                last_offset: i * 1000 + 999,
                object_id: i as u64,
            })
            .collect();
        let mut builder = FilterBuilder::new(members.clone(), 1000);
        for m in 0..32 {
            for k in 0..1000 {
                builder.add(m, key_hash(format!("m{m}-k{k}").as_bytes()));
            }
        }
        let bytes = builder.finish();
        let head = FilterHead::decode(&bytes).unwrap();
        assert_eq!(head.members, members);
        let row = |key: &[u8]| {
            let r = head.row_for(key_hash(key));
            head.candidates(&bytes[r.start as usize..r.end as usize], key_hash(key))
        };
        for (m, member) in members.iter().enumerate() {
            for k in (0..1000).step_by(97) {
                assert!(row(format!("m{m}-k{k}").as_bytes()).contains(member));
            }
        }
        // Absent keys: about 1% of 32 members each, far from all of them.
        let false_hits: usize = (0..1000)
            .map(|k| row(format!("absent-{k}").as_bytes()).len())
            .sum();
        assert!(false_hits < 1000 * 32 / 20, "{false_hits} false candidates");
    }

    #[test]
    fn default_partitioners_match_the_clients() {
        // Values from the Java client's Utils.murmur2 tests, and zlib's CRC-32.
        assert_eq!(murmur2(b"21") as i32, -973932308);
        assert_eq!(murmur2(b"foobar") as i32, -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string") as i32, -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32,
            -58897971
        );
        assert_eq!(murmur2(b"abc") as i32, 479470107);
        assert_eq!(crc32fast::hash(b"123456789"), 0xcbf4_3926);
        assert_eq!(
            crc32_partition(b"123456789", 7),
            (0xcbf4_3926u32 % 7) as i32
        );
    }
}
