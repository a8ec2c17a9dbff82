//! Segment files: their names, the indexing rule shared by the appender and recovery, and the
//! metadata a sealed segment carries into the archive.
//!
//! # Naming
//!
//! A segment whose first offset is `B` is three files in its partition's directory, `B` written
//! as 20 zero-padded decimal digits (as Kafka does, so names sort as offsets do):
//!
//! ```text
//! 00000000000000001234.log         the record batches, back to back
//! 00000000000000001234.index       sparse offset index (see offset_index)
//! 00000000000000001234.timeindex   sparse time index (see time_index)
//! ```

use crate::batch::BatchHeader;
use crate::offset_index::{FilePosition, OffsetEntry, OffsetIndex, RelativeOffset};
use crate::time_index::{TimeEntry, TimeIndex};

/// Which of a segment's files a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentFile {
    /// `.log`
    Log,
    /// `.index`
    OffsetIndex,
    /// `.timeindex`
    TimeIndex,
}

impl SegmentFile {
    fn extension(self) -> &'static str {
        match self {
            SegmentFile::Log => "log",
            SegmentFile::OffsetIndex => "index",
            SegmentFile::TimeIndex => "timeindex",
        }
    }
}

/// The file name of a segment's file.
///
/// # Panics
///
/// On a negative base offset, which no segment has.
pub fn segment_file_name(base_offset: i64, kind: SegmentFile) -> String {
    assert!(
        base_offset >= 0,
        "negative segment base offset {base_offset}"
    );
    format!("{base_offset:020}.{}", kind.extension())
}

/// Parses a segment file name into its base offset and kind; `None` for any other name.
pub fn parse_segment_file_name(name: &str) -> Option<(i64, SegmentFile)> {
    let (stem, extension) = name.split_once('.')?;
    let kind = match extension {
        "log" => SegmentFile::Log,
        "index" => SegmentFile::OffsetIndex,
        "timeindex" => SegmentFile::TimeIndex,
        _ => return None,
    };
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, kind))
}

/// Builds a segment's two indexes as its batches are appended (or re-read by recovery), so the
/// appender and recovery cannot disagree about where entries go.
///
/// Rule: the first batch of a segment is always indexed; after that, a batch is indexed when at
/// least `interval_bytes` were written since the last offset entry. The time index gets an entry
/// at the same moments, if the running max timestamp grew since its last entry.
#[derive(Debug, Clone)]
pub struct SegmentIndexer {
    base_offset: i64,
    interval_bytes: u32,
    bytes_since_entry: u64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    stats: SegmentStats,
}

/// What is known about a segment's contents after indexing its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentStats {
    /// Offset after the last record (the base offset when empty).
    pub next_offset: i64,
    /// Bytes of whole batches.
    pub size_bytes: u64,
    /// Timestamp of the first record (base timestamp of the first batch), -1 when empty.
    pub first_timestamp: i64,
    /// Largest record timestamp, -1 when empty.
    pub max_timestamp: i64,
    /// Base offset of the last batch, -1 when empty.
    pub last_batch_offset: i64,
}

impl SegmentIndexer {
    /// An indexer for an empty segment starting at `base_offset`.
    pub fn new(base_offset: i64, interval_bytes: u32) -> SegmentIndexer {
        SegmentIndexer {
            base_offset,
            interval_bytes,
            bytes_since_entry: 0,
            offset_index: OffsetIndex::new(),
            time_index: TimeIndex::new(),
            stats: SegmentStats {
                next_offset: base_offset,
                size_bytes: 0,
                first_timestamp: -1,
                max_timestamp: -1,
                last_batch_offset: -1,
            },
        }
    }

    /// Records a batch written at the end of the segment. Returns the index entries it produced,
    /// so the caller can append them to the index files.
    ///
    /// # Panics
    ///
    /// If the batch does not start at the segment's next offset and next byte, or lies beyond
    /// what 32-bit relative offsets and positions can index: the log core must roll first.
    pub fn on_batch(&mut self, header: &BatchHeader) -> (Option<OffsetEntry>, Option<TimeEntry>) {
        assert!(
            header.base_offset >= self.stats.next_offset,
            "batch offset {} below segment's next offset {}",
            header.base_offset,
            self.stats.next_offset
        );
        let relative = relative_offset(self.base_offset, header.base_offset);
        let position = FilePosition(
            u32::try_from(self.stats.size_bytes).expect("segment position exceeds 32 bits"),
        );
        let mut entries = (None, None);
        let due = self.offset_index.is_empty()
            || self.bytes_since_entry >= u64::from(self.interval_bytes);
        self.stats.max_timestamp = self.stats.max_timestamp.max(header.max_timestamp);
        if due {
            let entry = OffsetEntry {
                offset: relative,
                position,
            };
            self.offset_index.push(entry);
            entries.0 = Some(entry);
            self.bytes_since_entry = 0;
            if self.stats.max_timestamp >= 0 {
                let time = TimeEntry {
                    timestamp: self.stats.max_timestamp,
                    offset: relative,
                };
                if self.time_index.push_if_newer(time) {
                    entries.1 = Some(time);
                }
            }
        }
        if self.stats.size_bytes == 0 {
            self.stats.first_timestamp = header.base_timestamp;
        }
        self.bytes_since_entry += u64::from(header.size());
        self.stats.size_bytes += u64::from(header.size());
        self.stats.next_offset = header.next_offset();
        self.stats.last_batch_offset = header.base_offset;
        entries
    }

    /// Resumes indexing a segment whose indexes were loaded from disk and checked, and whose
    /// stats were read off its tail.
    pub fn resume(
        base_offset: i64,
        interval_bytes: u32,
        offset_index: OffsetIndex,
        time_index: TimeIndex,
        stats: SegmentStats,
    ) -> SegmentIndexer {
        let last_position = offset_index.last().map_or(0, |e| u64::from(e.position.0));
        SegmentIndexer {
            base_offset,
            interval_bytes,
            bytes_since_entry: stats.size_bytes.saturating_sub(last_position),
            offset_index,
            time_index,
            stats,
        }
    }

    /// Adds the time index entry a segment gets when it stops being active: the segment's max
    /// timestamp at its last batch, so the max survives a restart (as Kafka does on roll).
    /// Returns the entry if one was added.
    pub fn seal(&mut self) -> Option<TimeEntry> {
        if self.stats.last_batch_offset < 0 || self.stats.max_timestamp < 0 {
            return None;
        }
        let entry = TimeEntry {
            timestamp: self.stats.max_timestamp,
            offset: relative_offset(self.base_offset, self.stats.last_batch_offset),
        };
        let last = self.time_index.last();
        if last.is_some_and(|l| l.offset >= entry.offset) {
            return None;
        }
        self.time_index.push_if_newer(entry).then_some(entry)
    }

    /// Replaces the built indexes with ones loaded from disk that were checked against the log.
    pub fn adopt(&mut self, offset_index: OffsetIndex, time_index: TimeIndex) {
        self.offset_index = offset_index;
        self.time_index = time_index;
    }

    /// The offset index so far.
    pub fn offset_index(&self) -> &OffsetIndex {
        &self.offset_index
    }

    /// The time index so far.
    pub fn time_index(&self) -> &TimeIndex {
        &self.time_index
    }

    /// What the indexed batches add up to.
    pub fn stats(&self) -> SegmentStats {
        self.stats
    }

    /// The segment's base offset.
    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }
}

/// `offset - base` as a [`RelativeOffset`].
///
/// # Panics
///
/// If the difference is negative or needs more than 32 bits.
pub fn relative_offset(base: i64, offset: i64) -> RelativeOffset {
    let delta = offset - base;
    RelativeOffset(
        u32::try_from(delta)
            .unwrap_or_else(|_| panic!("offset {offset} not within 32 bits of base {base}")),
    )
}

/// What the archive records about one sealed segment (also written into its index sidecar).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentMeta {
    /// First offset.
    pub base_offset: i64,
    /// Last offset (inclusive).
    pub last_offset: i64,
    /// Timestamp of the first record.
    pub first_timestamp: i64,
    /// Largest timestamp.
    pub max_timestamp: i64,
    /// Records in the segment.
    pub record_count: u64,
    /// Bytes of the segment file (whole batches only).
    pub size_bytes: u64,
    /// Leader epoch of the segment's batches (the largest, if several).
    pub leader_epoch: i32,
    /// CRC-32C of the whole segment file.
    pub crc32c: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Codec;
    use crate::record::{NewRecord, encode_batch};

    #[test]
    fn names_round_trip_and_sort_like_offsets() {
        let name = segment_file_name(1234, SegmentFile::TimeIndex);
        assert_eq!(name, "00000000000000001234.timeindex");
        assert_eq!(
            parse_segment_file_name(&name),
            Some((1234, SegmentFile::TimeIndex))
        );
        assert!(segment_file_name(9, SegmentFile::Log) < segment_file_name(10, SegmentFile::Log));
        assert_eq!(parse_segment_file_name("1234.log"), None);
        assert_eq!(parse_segment_file_name("0000000000000000123x.log"), None);
        assert_eq!(
            parse_segment_file_name("00000000000000001234.snapshot"),
            None
        );
    }

    #[test]
    fn indexer_follows_the_interval_rule() {
        let mut indexer = SegmentIndexer::new(100, 200);
        let mut offset = 100;
        let mut produced = 0;
        for i in 0..20 {
            let record = NewRecord {
                value: Some(vec![b'x'; 50].into()),
                timestamp: 1000 + i,
                ..Default::default()
            };
            let bytes = encode_batch(offset, &[record], Codec::None, None);
            let header = crate::BatchHeader::parse(&bytes, u32::MAX)
                .unwrap()
                .unwrap();
            let (o, t) = indexer.on_batch(&header);
            produced += usize::from(o.is_some());
            assert_eq!(
                o.is_some(),
                t.is_some(),
                "timestamps increase, so both indexes move"
            );
            offset = header.next_offset();
        }
        // 20 batches of ~120 bytes with an entry every >= 200 bytes: one entry per 2 batches.
        assert_eq!(produced, 10);
        assert_eq!(indexer.offset_index().len(), 10);
        let stats = indexer.stats();
        assert_eq!(
            (
                stats.next_offset,
                stats.last_batch_offset,
                stats.max_timestamp
            ),
            (120, 119, 1019)
        );
        // Sealing records the final max, which the last index point (batch 18) had not seen.
        assert_eq!(indexer.time_index().last().unwrap().timestamp, 1018);
        let sealed = indexer.seal().unwrap();
        assert_eq!(
            (sealed.timestamp, sealed.offset),
            (1019, RelativeOffset(19))
        );
    }
}
