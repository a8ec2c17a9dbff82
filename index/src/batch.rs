//! A read-only view of Kafka record-batch headers (magic v2), and the few in-place patches a
//! broker makes to a batch without touching its records.
//!
//! # Layout (all integers big-endian)
//!
//! ```text
//! offset  size  field
//!      0     8  base offset                  <- patched by the broker on append
//!      8     4  batch length (bytes after this field)
//!     12     4  partition leader epoch       <- patched by the broker on append
//!     16     1  magic (2)
//!     17     4  CRC-32C of bytes 21..end
//!     21     2  attributes: bits 0-2 codec, 3 timestamp type, 4 transactional, 5 control
//!     23     4  last offset delta
//!     27     8  base timestamp
//!     35     8  max timestamp                <- patched for LogAppendTime (CRC recomputed)
//!     43     8  producer id
//!     51     2  producer epoch
//!     53     4  base sequence
//!     57     4  record count
//!     61     .  records (possibly compressed)
//! ```
//!
//! Base offset and leader epoch sit before the CRC'd range, so assigning offsets costs no CRC.

use std::ops::Range;

/// Bytes of the header, up to the first record.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Bytes before the `batch length` field's count starts: base offset + batch length.
pub const BATCH_LENGTH_PREFIX_BYTES: usize = 12;
/// Smallest valid value of the `batch length` field.
pub const BATCH_LENGTH_MIN: u32 = (BATCH_HEADER_BYTES - BATCH_LENGTH_PREFIX_BYTES) as u32;
/// The only magic silt accepts.
pub const MAGIC_V2: i8 = 2;
/// Producer id of a non-idempotent batch.
pub const NO_PRODUCER_ID: i64 = -1;
/// Sequence of a non-idempotent batch.
pub const NO_SEQUENCE: i32 = -1;

const CRC_START: usize = 21;
const OFFSET_LEADER_EPOCH: usize = 12;
const OFFSET_MAGIC: usize = 16;
const OFFSET_CRC: usize = 17;
const OFFSET_ATTRIBUTES: usize = 21;
const OFFSET_MAX_TIMESTAMP: usize = 35;

const _: () = assert!(BATCH_LENGTH_MIN == 49);
const _: () = assert!(OFFSET_CRC + 4 == CRC_START);

pub(crate) const ATTR_CODEC_MASK: i16 = 0x07;
const ATTR_LOG_APPEND_TIME: i16 = 0x08;
/// The attribute bit of a transactional batch.
pub const ATTR_TRANSACTIONAL: i16 = 0x10;
/// The control bit of a batch's attributes: its records are markers, not data.
pub const ATTR_CONTROL: i16 = 0x20;

/// Compression codec of a batch (attributes bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Records are stored as is.
    None,
    /// gzip.
    Gzip,
    /// snappy, in the xerial framing Kafka's Java client writes, or raw.
    Snappy,
    /// LZ4 frame format.
    Lz4,
    /// zstd.
    Zstd,
}

impl Codec {
    fn from_attributes(attributes: i16) -> Option<Codec> {
        match attributes & ATTR_CODEC_MASK {
            0 => Some(Codec::None),
            1 => Some(Codec::Gzip),
            2 => Some(Codec::Snappy),
            3 => Some(Codec::Lz4),
            4 => Some(Codec::Zstd),
            _ => None,
        }
    }

    /// The codec's number in the batch attributes.
    pub fn id(self) -> i16 {
        match self {
            Codec::None => 0,
            Codec::Gzip => 1,
            Codec::Snappy => 2,
            Codec::Lz4 => 3,
            Codec::Zstd => 4,
        }
    }
}

/// Why bytes are not a valid record batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// The batch length field is below the header size or above the caller's limit.
    #[error("batch length {length} is outside [{min}, {max}]")]
    Length {
        /// The field's value.
        length: i64,
        /// Smallest valid value.
        min: u32,
        /// Largest accepted value.
        max: u32,
    },
    /// Magic byte other than 2: a pre-0.11 message set or garbage.
    #[error("unsupported record batch magic {0}; only v2 batches are accepted")]
    Magic(i8),
    /// The stored CRC-32C does not match the bytes.
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc {
        /// CRC in the header.
        stored: u32,
        /// CRC of the bytes.
        computed: u32,
    },
    /// A header field is out of its valid range (negative count, unknown codec, ...).
    #[error("invalid record batch header: {0}")]
    Header(&'static str),
}

/// The fixed fields of a v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after the length field; the whole batch is `12 + batch_length` bytes.
    pub batch_length: u32,
    /// Epoch of the leader that appended it.
    pub partition_leader_epoch: i32,
    /// CRC-32C stored in the header.
    pub crc: u32,
    /// Attribute bits.
    pub attributes: i16,
    /// Offset of the last record minus the base offset.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp of any record.
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Idempotent producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records.
    pub record_count: i32,
}

impl BatchHeader {
    /// Parses the header at the start of `bytes`.
    ///
    /// Returns `Ok(None)` when fewer than [`BATCH_HEADER_BYTES`] are available (need more, not
    /// an error). Checks magic, length bounds (`length_max` is the largest whole batch in bytes
    /// the caller accepts), codec and record count, but not the CRC: see [`verify_crc`].
    ///
    /// # Errors
    ///
    /// [`BatchError`] saying which field is wrong.
    pub fn parse(bytes: &[u8], length_max: u32) -> Result<Option<BatchHeader>, BatchError> {
        if bytes.len() < BATCH_HEADER_BYTES {
            return Ok(None);
        }
        let batch_length = be_i32(bytes, 8);
        let max = length_max.saturating_sub(BATCH_LENGTH_PREFIX_BYTES as u32);
        if batch_length < BATCH_LENGTH_MIN as i32 || batch_length as u32 > max {
            return Err(BatchError::Length {
                length: i64::from(batch_length),
                min: BATCH_LENGTH_MIN,
                max,
            });
        }
        let magic = bytes[OFFSET_MAGIC] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::Magic(magic));
        }
        let header = BatchHeader {
            base_offset: be_i64(bytes, 0),
            batch_length: batch_length as u32,
            partition_leader_epoch: be_i32(bytes, OFFSET_LEADER_EPOCH),
            crc: be_u32(bytes, OFFSET_CRC),
            attributes: be_i16(bytes, OFFSET_ATTRIBUTES),
            last_offset_delta: be_i32(bytes, 23),
            base_timestamp: be_i64(bytes, 27),
            max_timestamp: be_i64(bytes, OFFSET_MAX_TIMESTAMP),
            producer_id: be_i64(bytes, 43),
            producer_epoch: be_i16(bytes, 51),
            base_sequence: be_i32(bytes, 53),
            record_count: be_i32(bytes, 57),
        };
        if Codec::from_attributes(header.attributes).is_none() {
            return Err(BatchError::Header("unknown compression codec"));
        }
        if header.last_offset_delta < 0 {
            return Err(BatchError::Header("negative last offset delta"));
        }
        if header.record_count < 0 {
            return Err(BatchError::Header("negative record count"));
        }
        Ok(Some(header))
    }

    /// Total bytes of the batch, header included.
    pub fn size(&self) -> u32 {
        self.batch_length + BATCH_LENGTH_PREFIX_BYTES as u32
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Offset after the last record.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// The compression codec.
    pub fn codec(&self) -> Codec {
        Codec::from_attributes(self.attributes).expect("codec checked by parse")
    }

    /// True when timestamps were set by the broker at append.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_LOG_APPEND_TIME != 0
    }

    /// True for a batch of a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    /// True for a control batch (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    /// True when the batch comes from an idempotent producer.
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    /// Sequence of the last record (wrapping at `i32::MAX` as Kafka does).
    pub fn last_sequence(&self) -> i32 {
        wrapping_sequence(self.base_sequence, self.last_offset_delta)
    }
}

/// `base + delta` on Kafka's sequence numbers, which wrap from `i32::MAX` to 0.
pub fn wrapping_sequence(base: i32, delta: i32) -> i32 {
    let sum = i64::from(base) + i64::from(delta);
    if sum > i64::from(i32::MAX) {
        (sum - i64::from(i32::MAX) - 1) as i32
    } else {
        sum as i32
    }
}

/// Checks the CRC-32C of one whole batch (`batch.len()` must equal the header's size).
///
/// # Errors
///
/// [`BatchError::Crc`] with both values when they differ.
pub fn verify_crc(batch: &[u8]) -> Result<(), BatchError> {
    assert!(
        batch.len() >= BATCH_HEADER_BYTES,
        "batch shorter than its header: {}",
        batch.len()
    );
    let stored = be_u32(batch, OFFSET_CRC);
    let computed = crc32c::crc32c(&batch[CRC_START..]);
    if stored == computed {
        Ok(())
    } else {
        Err(BatchError::Crc { stored, computed })
    }
}

/// Writes the base offset of a batch in place. Outside the CRC'd range.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Writes the partition leader epoch of a batch in place. Outside the CRC'd range.
pub fn set_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[OFFSET_LEADER_EPOCH..OFFSET_LEADER_EPOCH + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Stamps a batch with the broker's append time, as Kafka does for `LogAppendTime` topics:
/// sets the timestamp-type bit and the max timestamp in `header` (the batch's first
/// [`BATCH_HEADER_BYTES`] bytes) and recomputes the CRC over it and `records` (the rest of the
/// batch), which stay untouched: readers take every record's timestamp from the header.
pub fn set_log_append_time(header: &mut [u8], records: &[u8], now_ms: i64) {
    assert_eq!(header.len(), BATCH_HEADER_BYTES, "header slice size");
    let attributes = be_i16(header, OFFSET_ATTRIBUTES) | ATTR_LOG_APPEND_TIME;
    header[OFFSET_ATTRIBUTES..OFFSET_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    header[OFFSET_MAX_TIMESTAMP..OFFSET_MAX_TIMESTAMP + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&header[CRC_START..]), records);
    header[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Outcome of [`scan`]: the batches found and why the scan stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Each whole, valid batch with its byte range in the scanned buffer.
    pub batches: Vec<(BatchHeader, Range<usize>)>,
    /// Bytes covered by `batches` (the valid prefix).
    pub valid_bytes: usize,
    /// Why the scan stopped before the end of the buffer, if it did.
    pub stop: Option<ScanStop>,
}

/// Why [`scan`] stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanStop {
    /// The buffer ends inside a batch (a torn write, or a read that cut it).
    Incomplete,
    /// The bytes at `valid_bytes` are not a valid batch.
    Invalid(BatchError),
}

/// Walks whole batches from the start of `bytes`, checking each header and (when
/// `check_crc`) each CRC, until the end or the first bad or partial batch.
pub fn scan(bytes: &[u8], length_max: u32, check_crc: bool) -> Scan {
    let mut batches = Vec::new();
    let mut position = 0usize;
    let stop = loop {
        if position == bytes.len() {
            break None;
        }
        let rest = &bytes[position..];
        let header = match BatchHeader::parse(rest, length_max) {
            Ok(Some(header)) => header,
            Ok(None) => break Some(ScanStop::Incomplete),
            Err(e) => break Some(ScanStop::Invalid(e)),
        };
        let size = header.size() as usize;
        if rest.len() < size {
            break Some(ScanStop::Incomplete);
        }
        if check_crc && let Err(e) = verify_crc(&rest[..size]) {
            break Some(ScanStop::Invalid(e));
        }
        batches.push((header, position..position + size));
        position += size;
    };
    Scan {
        batches,
        valid_bytes: position,
        stop,
    }
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::batch;
    use proptest::prelude::*;

    #[test]
    fn parses_a_batch_header() {
        let bytes = batch(
            10,
            &[(Some(b"k".as_ref()), Some(b"v".as_ref()), 1000)],
            Codec::None,
        );
        let header = BatchHeader::parse(&bytes, u32::MAX).unwrap().unwrap();
        assert_eq!(header.base_offset, 10);
        assert_eq!(header.size() as usize, bytes.len());
        assert_eq!(header.record_count, 1);
        assert_eq!(header.max_timestamp, 1000);
        verify_crc(&bytes).unwrap();
    }

    #[test]
    fn base_offset_patch_keeps_crc_and_append_time_patch_recomputes_it() {
        let mut bytes = batch(0, &[(None, Some(b"v".as_ref()), 5)], Codec::None);
        set_base_offset(&mut bytes, 77);
        set_leader_epoch(&mut bytes, 3);
        verify_crc(&bytes).unwrap();
        let (header, records) = bytes.split_at_mut(BATCH_HEADER_BYTES);
        set_log_append_time(header, records, 123_456);
        verify_crc(&bytes).unwrap();
        let header = BatchHeader::parse(&bytes, u32::MAX).unwrap().unwrap();
        assert_eq!((header.base_offset, header.partition_leader_epoch), (77, 3));
        assert!(header.is_log_append_time());
        assert_eq!(header.max_timestamp, 123_456);
    }

    #[test]
    fn scan_stops_at_torn_tail_and_zeros() {
        let one = batch(0, &[(None, Some(b"a".as_ref()), 1)], Codec::None);
        let two = batch(1, &[(None, Some(b"b".as_ref()), 2)], Codec::None);
        let mut log = [one.clone(), two.clone()].concat();
        let full = scan(&log, u32::MAX, true);
        assert_eq!(full.batches.len(), 2);
        assert_eq!(full.stop, None);
        log.truncate(log.len() - 1);
        let torn = scan(&log, u32::MAX, true);
        assert_eq!(torn.valid_bytes, one.len());
        assert_eq!(torn.stop, Some(ScanStop::Incomplete));
        let zeros = [one.clone(), vec![0u8; 4096]].concat();
        let scanned = scan(&zeros, u32::MAX, true);
        assert_eq!(scanned.valid_bytes, one.len());
        assert!(matches!(
            scanned.stop,
            Some(ScanStop::Invalid(BatchError::Length { .. }))
        ));
    }

    #[test]
    fn flipped_bit_fails_crc() {
        let mut bytes = batch(0, &[(None, Some(b"value".as_ref()), 1)], Codec::None);
        let last = bytes.len() - 2;
        bytes[last] ^= 0x10;
        assert!(matches!(verify_crc(&bytes), Err(BatchError::Crc { .. })));
    }

    #[test]
    fn sequences_wrap_like_kafka() {
        assert_eq!(wrapping_sequence(i32::MAX, 1), 0);
        assert_eq!(wrapping_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(wrapping_sequence(5, 4), 9);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = BatchHeader::parse(&bytes, 1 << 20);
            let scanned = scan(&bytes, 1 << 20, true);
            prop_assert!(scanned.valid_bytes <= bytes.len());
        }
    }
}
