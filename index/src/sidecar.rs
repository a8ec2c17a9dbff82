//! The index sidecar uploaded next to every archived segment: its metadata and its two
//! indexes, so a reader can turn an offset or a time into a byte range of the segment object
//! without fetching the segment.
//!
//! # Layout (big-endian)
//!
//! ```text
//! offset  size  field
//!      0     8  magic "SILTSIDE"
//!      8     2  format version (1)
//!     10     8  base offset
//!     18     8  last offset
//!     26     8  first timestamp
//!     34     8  max timestamp
//!     42     8  record count
//!     50     8  segment size in bytes
//!     58     4  leader epoch
//!     62     4  CRC-32C of the segment object
//!     66     4  N: bytes of the offset index
//!     70     4  M: bytes of the time index
//!     74     N  offset index (offset_index format)
//!   74+N     M  time index (time_index format)
//! 74+N+M     4  CRC-32C of every byte before it
//! ```

use crate::IndexError;
use crate::offset_index::OffsetIndex;
use crate::segment::SegmentMeta;
use crate::time_index::TimeIndex;

const MAGIC: &[u8; 8] = b"SILTSIDE";
const VERSION: u16 = 1;
const FIXED_BYTES: usize = 74;
const _: () = assert!(FIXED_BYTES == 8 + 2 + 8 * 6 + 4 * 4);

/// A decoded sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sidecar {
    /// The segment's metadata.
    pub meta: SegmentMeta,
    /// Its offset index.
    pub offset_index: OffsetIndex,
    /// Its time index.
    pub time_index: TimeIndex,
}

impl Sidecar {
    /// The sidecar's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let offsets = self.offset_index.encode();
        let times = self.time_index.encode();
        let mut out = Vec::with_capacity(FIXED_BYTES + offsets.len() + times.len() + 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        let m = &self.meta;
        for v in [
            m.base_offset,
            m.last_offset,
            m.first_timestamp,
            m.max_timestamp,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&m.record_count.to_be_bytes());
        out.extend_from_slice(&m.size_bytes.to_be_bytes());
        out.extend_from_slice(&m.leader_epoch.to_be_bytes());
        out.extend_from_slice(&m.crc32c.to_be_bytes());
        out.extend_from_slice(&(offsets.len() as u32).to_be_bytes());
        out.extend_from_slice(&(times.len() as u32).to_be_bytes());
        out.extend_from_slice(&offsets);
        out.extend_from_slice(&times);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Parses and checks a sidecar.
    ///
    /// # Errors
    ///
    /// [`IndexError::Corrupt`] for a wrong magic or version, bad lengths, a CRC mismatch, or
    /// indexes that do not parse.
    pub fn decode(bytes: &[u8]) -> Result<Sidecar, IndexError> {
        let corrupt = |position: usize, reason| IndexError::Corrupt {
            position: position as u64,
            reason,
        };
        if bytes.len() < FIXED_BYTES + 4 {
            return Err(corrupt(bytes.len(), "shorter than a sidecar"));
        }
        if &bytes[..8] != MAGIC {
            return Err(corrupt(0, "not a sidecar (bad magic)"));
        }
        if u16::from_be_bytes([bytes[8], bytes[9]]) != VERSION {
            return Err(corrupt(8, "unknown sidecar version"));
        }
        let (body, stored) = bytes.split_at(bytes.len() - 4);
        if crc32c::crc32c(body) != u32::from_be_bytes(stored.try_into().expect("4 bytes")) {
            return Err(corrupt(bytes.len() - 4, "sidecar CRC mismatch"));
        }
        let i64_at = |at: usize| i64::from_be_bytes(body[at..at + 8].try_into().expect("8 bytes"));
        let u64_at = |at: usize| u64::from_be_bytes(body[at..at + 8].try_into().expect("8 bytes"));
        let u32_at = |at: usize| u32::from_be_bytes(body[at..at + 4].try_into().expect("4 bytes"));
        let meta = SegmentMeta {
            base_offset: i64_at(10),
            last_offset: i64_at(18),
            first_timestamp: i64_at(26),
            max_timestamp: i64_at(34),
            record_count: u64_at(42),
            size_bytes: u64_at(50),
            leader_epoch: u32_at(58) as i32,
            crc32c: u32_at(62),
        };
        let offsets_len = u32_at(66) as usize;
        let times_len = u32_at(70) as usize;
        if FIXED_BYTES + offsets_len + times_len != body.len() {
            return Err(corrupt(66, "index lengths do not match the sidecar size"));
        }
        let offset_index = OffsetIndex::decode(&body[FIXED_BYTES..FIXED_BYTES + offsets_len])?;
        let time_index = TimeIndex::decode(&body[FIXED_BYTES + offsets_len..])?;
        if meta.last_offset < meta.base_offset {
            return Err(corrupt(18, "last offset before base offset"));
        }
        Ok(Sidecar {
            meta,
            offset_index,
            time_index,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offset_index::{FilePosition, OffsetEntry, RelativeOffset};
    use crate::time_index::TimeEntry;
    use proptest::prelude::*;

    fn sample() -> Sidecar {
        let mut offset_index = OffsetIndex::new();
        offset_index.push(OffsetEntry {
            offset: RelativeOffset(0),
            position: FilePosition(0),
        });
        offset_index.push(OffsetEntry {
            offset: RelativeOffset(40),
            position: FilePosition(4100),
        });
        let mut time_index = TimeIndex::new();
        time_index.push_if_newer(TimeEntry {
            timestamp: 1_000,
            offset: RelativeOffset(0),
        });
        Sidecar {
            meta: SegmentMeta {
                base_offset: 100,
                last_offset: 199,
                first_timestamp: 1_000,
                max_timestamp: 2_000,
                record_count: 100,
                size_bytes: 9_000,
                leader_epoch: 3,
                crc32c: 0xdead_beef,
            },
            offset_index,
            time_index,
        }
    }

    #[test]
    fn round_trips() {
        let sidecar = sample();
        assert_eq!(Sidecar::decode(&sidecar.encode()).unwrap(), sidecar);
    }

    #[test]
    fn any_flipped_bit_is_caught() {
        let bytes = sample().encode();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x04;
            assert!(
                Sidecar::decode(&bad).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Sidecar::decode(&bytes);
        }
    }
}
