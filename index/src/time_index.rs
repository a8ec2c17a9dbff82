//! The sparse time index of one segment: by which offset a timestamp has been reached.
//!
//! # File format (`<base-offset>.timeindex`)
//!
//! A flat array of 12-byte entries, no header:
//!
//! ```text
//! timestamp:       i64 big-endian   the largest timestamp in the segment up to this batch
//! relative offset: u32 big-endian   base offset of that batch, relative to the segment
//! ```
//!
//! Both columns strictly increase: an entry is only added when the running maximum timestamp
//! grows (and an index interval has passed). An entry `(t, o)` promises that every record before
//! offset `o`'s batch has a timestamp `<= t`, so to find the first record at or after a target
//! time `T`, start scanning at the last entry with `t < T` (see [`TimeIndex::lookup_before`]).

use crate::IndexError;
use crate::offset_index::RelativeOffset;

/// Bytes of one entry.
pub const TIME_INDEX_ENTRY_BYTES: usize = 12;

/// One time index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    /// Running maximum timestamp, in milliseconds.
    pub timestamp: i64,
    /// Base offset of the batch that reached it, relative to the segment.
    pub offset: RelativeOffset,
}

impl TimeEntry {
    /// The entry's 12 bytes on disk.
    pub fn encode(&self) -> [u8; TIME_INDEX_ENTRY_BYTES] {
        let mut out = [0u8; TIME_INDEX_ENTRY_BYTES];
        out[..8].copy_from_slice(&self.timestamp.to_be_bytes());
        out[8..].copy_from_slice(&self.offset.0.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> TimeEntry {
        assert_eq!(bytes.len(), TIME_INDEX_ENTRY_BYTES, "time index entry size");
        TimeEntry {
            timestamp: i64::from_be_bytes(bytes[..8].try_into().expect("8 bytes")),
            offset: RelativeOffset(u32::from_be_bytes(bytes[8..].try_into().expect("4 bytes"))),
        }
    }
}

/// The time index of one segment, in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeIndex {
    entries: Vec<TimeEntry>,
}

impl TimeIndex {
    /// An empty index.
    pub fn new() -> TimeIndex {
        TimeIndex::default()
    }

    /// Parses a time index file's bytes.
    ///
    /// # Errors
    ///
    /// [`IndexError::Corrupt`] if the length is not a whole number of entries or a column does
    /// not strictly increase.
    pub fn decode(bytes: &[u8]) -> Result<TimeIndex, IndexError> {
        if !bytes.len().is_multiple_of(TIME_INDEX_ENTRY_BYTES) {
            return Err(IndexError::Corrupt {
                position: (bytes.len() - bytes.len() % TIME_INDEX_ENTRY_BYTES) as u64,
                reason: "partial entry at the end",
            });
        }
        let mut index = TimeIndex::new();
        for (i, chunk) in bytes.chunks_exact(TIME_INDEX_ENTRY_BYTES).enumerate() {
            let entry = TimeEntry::decode(chunk);
            if let Some(last) = index.entries.last()
                && (entry.timestamp <= last.timestamp || entry.offset <= last.offset)
            {
                return Err(IndexError::Corrupt {
                    position: (i * TIME_INDEX_ENTRY_BYTES) as u64,
                    reason: "entries do not increase",
                });
            }
            index.entries.push(entry);
        }
        Ok(index)
    }

    /// The whole index as file bytes.
    pub fn encode(&self) -> Vec<u8> {
        self.entries.iter().flat_map(|e| e.encode()).collect()
    }

    /// Appends an entry if its timestamp is larger than the last one's; returns whether it did.
    ///
    /// # Panics
    ///
    /// If the offset does not increase while the timestamp does: entries come from batches
    /// appended in order.
    pub fn push_if_newer(&mut self, entry: TimeEntry) -> bool {
        if let Some(last) = self.entries.last() {
            if entry.timestamp <= last.timestamp {
                return false;
            }
            assert!(
                entry.offset > last.offset,
                "time index offset regressed: {:?} <= {:?}",
                entry.offset,
                last.offset
            );
        }
        self.entries.push(entry);
        true
    }

    /// The last entry with a timestamp `< target`; scanning from its offset finds the first
    /// record with a timestamp `>= target`. `None` means scan from the segment's start.
    pub fn lookup_before(&self, target: i64) -> Option<TimeEntry> {
        let after = self.entries.partition_point(|e| e.timestamp < target);
        after.checked_sub(1).map(|i| self.entries[i])
    }

    /// Drops entries whose offset is `>= offset` (after the log is truncated there).
    pub fn truncate_to_offset(&mut self, offset: RelativeOffset) {
        let keep = self.entries.partition_point(|e| e.offset < offset);
        self.entries.truncate(keep);
    }

    /// The entries, in order.
    pub fn entries(&self) -> &[TimeEntry] {
        &self.entries
    }

    /// The last entry.
    pub fn last(&self) -> Option<TimeEntry> {
        self.entries.last().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_index() -> impl Strategy<Value = Vec<TimeEntry>> {
        proptest::collection::vec((1i64..10_000, 1u32..1000), 0..200).prop_map(|steps| {
            let (mut timestamp, mut offset) = (1_600_000_000_000i64, 0u32);
            steps
                .into_iter()
                .map(|(d_time, d_offset)| {
                    timestamp += d_time;
                    offset += d_offset;
                    TimeEntry {
                        timestamp,
                        offset: RelativeOffset(offset),
                    }
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn decode_of_encode_is_identity(entries in arb_index()) {
            let mut index = TimeIndex::new();
            entries.iter().for_each(|e| { index.push_if_newer(*e); });
            prop_assert_eq!(index.entries(), &entries[..]);
            prop_assert_eq!(TimeIndex::decode(&index.encode()).unwrap(), index);
        }

        #[test]
        fn lookup_agrees_with_linear_scan(entries in arb_index(), target in 1_600_000_000_000i64..1_600_003_000_000) {
            let mut index = TimeIndex::new();
            entries.iter().for_each(|e| { index.push_if_newer(*e); });
            let model = entries.iter().rev().find(|e| e.timestamp < target).copied();
            prop_assert_eq!(index.lookup_before(target), model);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = TimeIndex::decode(&bytes);
        }
    }

    #[test]
    fn older_timestamps_are_not_indexed() {
        let mut index = TimeIndex::new();
        assert!(index.push_if_newer(TimeEntry {
            timestamp: 10,
            offset: RelativeOffset(0)
        }));
        assert!(!index.push_if_newer(TimeEntry {
            timestamp: 9,
            offset: RelativeOffset(5)
        }));
        assert!(!index.push_if_newer(TimeEntry {
            timestamp: 10,
            offset: RelativeOffset(6)
        }));
        assert_eq!(index.entries().len(), 1);
    }
}
