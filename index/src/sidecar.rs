//! The index sidecar uploaded next to every archived segment: its metadata and its two
//! indexes, so a reader can turn an offset or a time into a byte range of the segment object
//! without fetching the segment.
//!
//! # Layout (big-endian)
//!
//! ```text
//! offset  size  field
//!      0     8  magic "SILTSIDE"
//!      8     2  format version (2; version 1 ends after the time index)
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
//! 74+N+M     4  K: leader epochs that start in the segment (version 2 on)
//! 78+N+M  12*K  K x (leader epoch i32, first offset i64), epochs and offsets increasing; the
//!               first names the epoch of the segment's first batch, at its base offset
//!      E     4  A: aborted transactions with records in the segment (version 2 on)
//!    E+4  24*A  A x (producer id i64, first offset i64, ABORT marker offset i64), by marker
//!      …     4  CRC-32C of every byte before it
//! ```
//!
//! Version 1 sidecars (written before these sections existed) still decode, with
//! [`Sidecar::epochs`] and [`Sidecar::aborted`] `None`: no epochs known, no aborted
//! transactions (none could be archived then).

use crate::IndexError;
use crate::offset_index::OffsetIndex;
use crate::segment::SegmentMeta;
use crate::time_index::TimeIndex;

const MAGIC: &[u8; 8] = b"SILTSIDE";
const VERSION: u16 = 2;
/// The version before the epoch section.
const VERSION_1: u16 = 1;
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
    /// The leader epochs that start in the segment, as (epoch, first offset), the first at
    /// the base offset; `None` for a version-1 sidecar, which did not record them.
    pub epochs: Option<Vec<(i32, i64)>>,
    /// The aborted transactions with records in the segment (their markers may be in a later
    /// one), by marker offset: what a read_committed fetch of the segment lists. `None` for a
    /// version-1 sidecar.
    pub aborted: Option<Vec<AbortedRange>>,
}

/// (leader epoch, first offset) of each epoch that starts in a segment.
type EpochStarts = Vec<(i32, i64)>;

/// An aborted transaction of a partition: its producer, first offset and ABORT marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedRange {
    /// The producer.
    pub producer_id: i64,
    /// Its first record's offset.
    pub first_offset: i64,
    /// The ABORT marker's offset.
    pub last_offset: i64,
}

impl AbortedRange {
    /// True when a record at `offset` of a transactional batch of `producer_id` is one of
    /// this transaction's.
    pub fn covers(&self, producer_id: i64, offset: i64) -> bool {
        self.producer_id == producer_id && (self.first_offset..=self.last_offset).contains(&offset)
    }
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
        let epochs = self.epochs.as_deref().unwrap_or_default();
        out.extend_from_slice(&(epochs.len() as u32).to_be_bytes());
        for (epoch, offset) in epochs {
            out.extend_from_slice(&epoch.to_be_bytes());
            out.extend_from_slice(&offset.to_be_bytes());
        }
        let aborted = self.aborted.as_deref().unwrap_or_default();
        out.extend_from_slice(&(aborted.len() as u32).to_be_bytes());
        for a in aborted {
            for v in [a.producer_id, a.first_offset, a.last_offset] {
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
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
        let version = u16::from_be_bytes([bytes[8], bytes[9]]);
        if version != VERSION && version != VERSION_1 {
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
        let indexes_end = FIXED_BYTES
            .checked_add(offsets_len)
            .and_then(|n| n.checked_add(times_len))
            .filter(|&end| end <= body.len())
            .ok_or_else(|| corrupt(66, "index lengths overrun the sidecar"))?;
        let (epochs, aborted) = if version == VERSION_1 {
            if indexes_end != body.len() {
                return Err(corrupt(66, "index lengths do not match the sidecar size"));
            }
            (None, None)
        } else {
            let (epochs, used) = decode_epochs(&body[indexes_end..], &meta)
                .map_err(|reason| corrupt(indexes_end, reason))?;
            let aborted = decode_aborted(&body[indexes_end + used..], &meta)
                .map_err(|reason| corrupt(indexes_end + used, reason))?;
            (Some(epochs), Some(aborted))
        };
        let offset_index = OffsetIndex::decode(&body[FIXED_BYTES..FIXED_BYTES + offsets_len])?;
        let time_index = TimeIndex::decode(&body[FIXED_BYTES + offsets_len..indexes_end])?;
        if meta.last_offset < meta.base_offset {
            return Err(corrupt(18, "last offset before base offset"));
        }
        Ok(Sidecar {
            meta,
            offset_index,
            time_index,
            epochs,
            aborted,
        })
    }
}

/// The aborted section: a count, then (producer, first offset, marker offset) triples that
/// overlap the segment, by marker offset; nothing may follow.
fn decode_aborted(bytes: &[u8], meta: &SegmentMeta) -> Result<Vec<AbortedRange>, &'static str> {
    if bytes.len() < 4 {
        return Err("no aborted-transaction count");
    }
    let count = u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
    let rest = &bytes[4..];
    if count.checked_mul(24) != Some(rest.len()) {
        return Err("aborted-transaction count does not match the sidecar size");
    }
    let i64_at = |c: &[u8], at: usize| i64::from_be_bytes(c[at..at + 8].try_into().expect("8"));
    let aborted: Vec<AbortedRange> = rest
        .chunks_exact(24)
        .map(|c| AbortedRange {
            producer_id: i64_at(c, 0),
            first_offset: i64_at(c, 8),
            last_offset: i64_at(c, 16),
        })
        .collect();
    if aborted.iter().any(|a| {
        a.first_offset > a.last_offset
            || a.first_offset > meta.last_offset
            || a.last_offset < meta.base_offset
    }) {
        return Err("an aborted transaction does not overlap the segment");
    }
    if aborted
        .windows(2)
        .any(|w| w[1].last_offset <= w[0].last_offset)
    {
        return Err("aborted transactions are not in marker order");
    }
    Ok(aborted)
}

/// The epoch section: a count, then (epoch, first offset) pairs, both increasing, inside the
/// segment, the first at its base. Returns them with the bytes the section took.
fn decode_epochs(bytes: &[u8], meta: &SegmentMeta) -> Result<(EpochStarts, usize), &'static str> {
    if bytes.len() < 4 {
        return Err("no epoch count");
    }
    let count = u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
    let used = count
        .checked_mul(12)
        .and_then(|n| n.checked_add(4))
        .filter(|&n| n <= bytes.len())
        .ok_or("epoch count overruns the sidecar")?;
    let rest = &bytes[4..used];
    let epochs: Vec<(i32, i64)> = rest
        .chunks_exact(12)
        .map(|c| {
            (
                i32::from_be_bytes(c[..4].try_into().expect("4 bytes")),
                i64::from_be_bytes(c[4..].try_into().expect("8 bytes")),
            )
        })
        .collect();
    if epochs
        .first()
        .is_some_and(|&(_, at)| at != meta.base_offset)
    {
        return Err("the first epoch does not start at the base offset");
    }
    if epochs
        .windows(2)
        .any(|w| w[1].0 <= w[0].0 || w[1].1 <= w[0].1)
    {
        return Err("epochs or their offsets do not increase");
    }
    if epochs.last().is_some_and(|&(_, at)| at > meta.last_offset) {
        return Err("an epoch starts after the segment's last offset");
    }
    Ok((epochs, used))
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
            epochs: Some(vec![(2, 100), (3, 150)]),
            aborted: Some(vec![
                AbortedRange {
                    producer_id: 9,
                    first_offset: 90,
                    last_offset: 120,
                },
                AbortedRange {
                    producer_id: 4,
                    first_offset: 150,
                    last_offset: 260,
                },
            ]),
        }
    }

    #[test]
    fn round_trips() {
        let sidecar = sample();
        assert_eq!(Sidecar::decode(&sidecar.encode()).unwrap(), sidecar);
    }

    /// A version-1 sidecar as the archiver wrote it before epochs were recorded: the same
    /// fields without the epoch section.
    fn version_1(sidecar: &Sidecar) -> Vec<u8> {
        let mut bytes = sidecar.encode();
        let epochs = 4 + 12 * sidecar.epochs.as_ref().map_or(0, Vec::len);
        let aborted = 4 + 24 * sidecar.aborted.as_ref().map_or(0, Vec::len);
        bytes.truncate(bytes.len() - 4 - epochs - aborted);
        bytes[8..10].copy_from_slice(&1u16.to_be_bytes());
        let crc = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&crc.to_be_bytes());
        bytes
    }

    #[test]
    fn version_1_still_decodes_without_epochs() {
        let sidecar = sample();
        let decoded = Sidecar::decode(&version_1(&sidecar)).unwrap();
        assert_eq!(
            (decoded.epochs.as_ref(), decoded.aborted.as_ref()),
            (None, None)
        );
        assert_eq!(
            Sidecar {
                epochs: sidecar.epochs.clone(),
                aborted: sidecar.aborted.clone(),
                ..decoded
            },
            sidecar
        );
    }

    #[test]
    fn epochs_out_of_order_or_outside_the_segment_are_refused() {
        for epochs in [
            vec![(2, 101)],
            vec![(3, 100), (2, 150)],
            vec![(2, 100), (3, 100)],
            vec![(2, 100), (3, 200)],
        ] {
            let bad = Sidecar {
                epochs: Some(epochs.clone()),
                ..sample()
            };
            assert!(
                Sidecar::decode(&bad.encode()).is_err(),
                "{epochs:?} accepted"
            );
        }
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

    #[test]
    fn aborted_transactions_outside_the_segment_or_out_of_order_are_refused() {
        let range = |first, last| AbortedRange {
            producer_id: 1,
            first_offset: first,
            last_offset: last,
        };
        for aborted in [
            vec![range(10, 99)],
            vec![range(200, 210)],
            vec![range(150, 140)],
            vec![range(120, 160), range(110, 150)],
        ] {
            let bad = Sidecar {
                aborted: Some(aborted.clone()),
                ..sample()
            };
            assert!(
                Sidecar::decode(&bad.encode()).is_err(),
                "{aborted:?} accepted"
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
