//! The sparse offset index of one segment: which file position holds which offset.
//!
//! # File format (`<base-offset>.index`)
//!
//! A flat array of 8-byte entries, no header:
//!
//! ```text
//! relative offset: u32 big-endian   offset - segment base offset, of a batch's base offset
//! file position:   u32 big-endian   where that batch starts in the .log file
//! ```
//!
//! Both columns strictly increase. An entry is added when at least `index.interval.bytes` of
//! log were written since the last one, so a lookup lands at most one interval before the batch
//! it wants; the reader scans forward from there. Segments are capped at 2 GiB and 2^32 offsets,
//! which is what makes the 32-bit columns enough.

use crate::IndexError;

/// Bytes of one entry.
pub const OFFSET_INDEX_ENTRY_BYTES: usize = 8;

/// An offset relative to its segment's base offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelativeOffset(pub u32);

/// A byte position inside a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FilePosition(pub u32);

/// One index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    /// Base offset of a batch, relative to the segment.
    pub offset: RelativeOffset,
    /// Where that batch starts in the segment file.
    pub position: FilePosition,
}

impl OffsetEntry {
    /// The entry's 8 bytes on disk.
    pub fn encode(&self) -> [u8; OFFSET_INDEX_ENTRY_BYTES] {
        let mut out = [0u8; OFFSET_INDEX_ENTRY_BYTES];
        out[..4].copy_from_slice(&self.offset.0.to_be_bytes());
        out[4..].copy_from_slice(&self.position.0.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> OffsetEntry {
        assert_eq!(
            bytes.len(),
            OFFSET_INDEX_ENTRY_BYTES,
            "offset index entry size"
        );
        OffsetEntry {
            offset: RelativeOffset(u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes"))),
            position: FilePosition(u32::from_be_bytes(bytes[4..].try_into().expect("4 bytes"))),
        }
    }
}

/// The offset index of one segment, in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetIndex {
    entries: Vec<OffsetEntry>,
}

impl OffsetIndex {
    /// An empty index.
    pub fn new() -> OffsetIndex {
        OffsetIndex::default()
    }

    /// Parses an index file's bytes.
    ///
    /// # Errors
    ///
    /// [`IndexError::Corrupt`] if the length is not a whole number of entries or a column does
    /// not strictly increase.
    pub fn decode(bytes: &[u8]) -> Result<OffsetIndex, IndexError> {
        if !bytes.len().is_multiple_of(OFFSET_INDEX_ENTRY_BYTES) {
            return Err(IndexError::Corrupt {
                position: (bytes.len() - bytes.len() % OFFSET_INDEX_ENTRY_BYTES) as u64,
                reason: "partial entry at the end",
            });
        }
        let mut index = OffsetIndex::new();
        for (i, chunk) in bytes.chunks_exact(OFFSET_INDEX_ENTRY_BYTES).enumerate() {
            let entry = OffsetEntry::decode(chunk);
            if let Some(last) = index.entries.last()
                && (entry.offset <= last.offset || entry.position <= last.position)
            {
                return Err(IndexError::Corrupt {
                    position: (i * OFFSET_INDEX_ENTRY_BYTES) as u64,
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

    /// Appends an entry.
    ///
    /// # Panics
    ///
    /// If the entry does not come strictly after the last one: the appender must only add
    /// entries for batches it writes, in order.
    pub fn push(&mut self, entry: OffsetEntry) {
        if let Some(last) = self.entries.last() {
            assert!(
                entry.offset > last.offset,
                "index offset regressed: {:?} <= {:?}",
                entry.offset,
                last.offset
            );
            assert!(
                entry.position > last.position,
                "index position regressed: {:?} <= {:?}",
                entry.position,
                last.position
            );
        }
        self.entries.push(entry);
    }

    /// The last entry whose offset is `<= target`: where to start scanning for `target`.
    pub fn lookup(&self, target: RelativeOffset) -> Option<OffsetEntry> {
        let after = self.entries.partition_point(|e| e.offset <= target);
        after.checked_sub(1).map(|i| self.entries[i])
    }

    /// Drops the entries at or past `position` (after the log is truncated there).
    pub fn truncate_to_position(&mut self, position: FilePosition) {
        let keep = self.entries.partition_point(|e| e.position < position);
        self.entries.truncate(keep);
    }

    /// The entries, in order.
    pub fn entries(&self) -> &[OffsetEntry] {
        &self.entries
    }

    /// The last entry.
    pub fn last(&self) -> Option<OffsetEntry> {
        self.entries.last().copied()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_index() -> impl Strategy<Value = Vec<OffsetEntry>> {
        proptest::collection::vec((1u32..1000, 1u32..100_000), 0..200).prop_map(|steps| {
            let (mut offset, mut position) = (0u32, 0u32);
            steps
                .into_iter()
                .map(|(d_offset, d_position)| {
                    offset += d_offset;
                    position += d_position;
                    OffsetEntry {
                        offset: RelativeOffset(offset),
                        position: FilePosition(position),
                    }
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn decode_of_encode_is_identity(entries in arb_index()) {
            let mut index = OffsetIndex::new();
            entries.iter().for_each(|e| index.push(*e));
            prop_assert_eq!(OffsetIndex::decode(&index.encode()).unwrap(), index);
        }

        #[test]
        fn lookup_agrees_with_linear_scan(entries in arb_index(), target in 0u32..300_000) {
            let mut index = OffsetIndex::new();
            entries.iter().for_each(|e| index.push(*e));
            let model = entries.iter().rev().find(|e| e.offset.0 <= target).copied();
            prop_assert_eq!(index.lookup(RelativeOffset(target)), model);
        }

        #[test]
        fn truncate_agrees_with_filter(entries in arb_index(), cut in 0u32..20_000_000) {
            let mut index = OffsetIndex::new();
            entries.iter().for_each(|e| index.push(*e));
            index.truncate_to_position(FilePosition(cut));
            let model: Vec<_> = entries.iter().filter(|e| e.position.0 < cut).copied().collect();
            prop_assert_eq!(index.entries(), &model[..]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = OffsetIndex::decode(&bytes);
        }
    }

    #[test]
    fn decode_rejects_partial_and_unordered() {
        assert!(OffsetIndex::decode(&[0u8; 7]).is_err());
        let a = OffsetEntry {
            offset: RelativeOffset(5),
            position: FilePosition(100),
        };
        let b = OffsetEntry {
            offset: RelativeOffset(4),
            position: FilePosition(200),
        };
        assert!(OffsetIndex::decode(&[a.encode(), b.encode()].concat()).is_err());
    }
}
