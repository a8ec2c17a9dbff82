//! Records inside a v2 batch: decompression, decoding, and encoding.
//!
//! The broker never needs this on the produce or fetch path (batches travel as the producer's
//! bytes). It is for the few places that must see records: timestamp lookups inside a batch,
//! the CLI's consumer and producer, tests and benchmarks. Headers are kept as a list, in order,
//! duplicates included (KIP-82), which is why this is not `kafka-protocol`'s `Record`.
//!
//! # Record layout (varints are zig-zag, as in Kafka)
//!
//! ```text
//! length: varint            bytes after this field
//! attributes: int8          unused, 0
//! timestamp delta: varlong  from the batch's base timestamp
//! offset delta: varint      from the batch's base offset
//! key length: varint, key   -1 for null
//! value length: varint, value
//! header count: varint, then per header: key length, key, value length (-1 null), value
//! ```

use std::io::Read;

use bytes::{BufMut, Bytes, BytesMut};

use crate::batch::{ATTR_CODEC_MASK, BATCH_HEADER_BYTES, BatchError, BatchHeader, Codec};

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Absolute offset.
    pub offset: i64,
    /// Absolute timestamp (the batch's for LogAppendTime batches).
    pub timestamp: i64,
    /// Key, `None` when null.
    pub key: Option<Bytes>,
    /// Value, `None` when null (a tombstone).
    pub value: Option<Bytes>,
    /// Headers in order, duplicates kept.
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

/// Why records could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The batch header is invalid.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// The compressed records could not be decompressed.
    #[error("cannot decompress {codec:?} records: {message}")]
    Decompress {
        /// The batch's codec.
        codec: Codec,
        /// What the decompressor said.
        message: String,
    },
    /// Decompressed records would exceed the caller's limit.
    #[error("decompressed records exceed {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// A record's fields do not fit the bytes.
    #[error("malformed record {index}: {reason}")]
    Malformed {
        /// Index of the record in its batch.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A control batch is not what [`encode_control_batch`] writes.
    #[error("not a control batch of silt's form: {0}")]
    Control(&'static str),
}

/// Decodes every record of one whole batch, decompressing at most `decompressed_max` bytes.
///
/// # Errors
///
/// [`RecordError`] for a bad header, a failed decompression or malformed records.
pub fn decode_records(batch: &[u8], decompressed_max: usize) -> Result<Vec<Record>, RecordError> {
    let header = BatchHeader::parse(batch, u32::MAX)?
        .ok_or(BatchError::Header("shorter than a batch header"))?;
    let end = (header.size() as usize).min(batch.len());
    let body = decompress(
        header.codec(),
        &batch[BATCH_HEADER_BYTES..end],
        decompressed_max,
    )?;
    let mut cursor = Cursor {
        bytes: &body,
        position: 0,
    };
    let count = usize::try_from(header.record_count).unwrap_or(0);
    let mut records = Vec::with_capacity(count.min(body.len()));
    for index in 0..count {
        let malformed = |reason| RecordError::Malformed { index, reason };
        let length = cursor.varint().ok_or(malformed("truncated length"))?;
        let length = usize::try_from(length).map_err(|_| malformed("negative length"))?;
        let record_end = cursor
            .position
            .checked_add(length)
            .ok_or(malformed("length"))?;
        if record_end > body.len() {
            return Err(malformed("length past the end of the batch"));
        }
        let _attributes = cursor.take(1).ok_or(malformed("truncated attributes"))?;
        let timestamp_delta = cursor.varlong().ok_or(malformed("truncated timestamp"))?;
        let offset_delta = cursor.varint().ok_or(malformed("truncated offset delta"))?;
        let key = cursor.nullable(&body).ok_or(malformed("truncated key"))?;
        let value = cursor.nullable(&body).ok_or(malformed("truncated value"))?;
        let header_count = cursor.varint().ok_or(malformed("truncated header count"))?;
        let header_count = usize::try_from(header_count).map_err(|_| malformed("header count"))?;
        let mut headers = Vec::with_capacity(header_count.min(length));
        for _ in 0..header_count {
            let key = cursor
                .nullable(&body)
                .ok_or(malformed("truncated header key"))?
                .ok_or(malformed("null header key"))?;
            let value = cursor
                .nullable(&body)
                .ok_or(malformed("truncated header value"))?;
            headers.push((key, value));
        }
        if cursor.position != record_end {
            return Err(malformed("fields do not add up to the record length"));
        }
        let timestamp = if header.is_log_append_time() {
            header.max_timestamp
        } else {
            header.base_timestamp.wrapping_add(timestamp_delta)
        };
        records.push(Record {
            offset: header.base_offset + i64::from(offset_delta),
            timestamp,
            key,
            value,
            headers,
        });
    }
    Ok(records)
}

/// Decompresses a batch's record section.
///
/// # Errors
///
/// [`RecordError::Decompress`] or [`RecordError::TooLarge`].
pub fn decompress(
    codec: Codec,
    data: &[u8],
    decompressed_max: usize,
) -> Result<Bytes, RecordError> {
    let failed = |e: &dyn std::fmt::Display| RecordError::Decompress {
        codec,
        message: e.to_string(),
    };
    let limit = decompressed_max as u64 + 1;
    let mut out = Vec::new();
    match codec {
        Codec::None => return Ok(Bytes::copy_from_slice(data)),
        Codec::Gzip => {
            flate2::read::GzDecoder::new(data)
                .take(limit)
                .read_to_end(&mut out)
                .map_err(|e| failed(&e))?;
        }
        Codec::Lz4 => {
            lz4_flex::frame::FrameDecoder::new(data)
                .take(limit)
                .read_to_end(&mut out)
                .map_err(|e| failed(&e))?;
        }
        Codec::Zstd => {
            zstd::stream::read::Decoder::new(data)
                .map_err(|e| failed(&e))?
                .take(limit)
                .read_to_end(&mut out)
                .map_err(|e| failed(&e))?;
        }
        Codec::Snappy => out = snappy_decompress(data, decompressed_max).map_err(|e| failed(&e))?,
    }
    if out.len() > decompressed_max {
        return Err(RecordError::TooLarge {
            limit: decompressed_max,
        });
    }
    Ok(Bytes::from(out))
}

/// Header of xerial's snappy-java framing, which Kafka's Java client and librdkafka write.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_BYTES: usize = 16;

fn snappy_decompress(data: &[u8], decompressed_max: usize) -> Result<Vec<u8>, String> {
    let mut decoder = snap::raw::Decoder::new();
    let mut block = |bytes: &[u8], out: &mut Vec<u8>| -> Result<(), String> {
        let size = snap::raw::decompress_len(bytes).map_err(|e| e.to_string())?;
        if out.len() + size > decompressed_max {
            return Err(format!("more than {decompressed_max} bytes"));
        }
        let start = out.len();
        out.resize(start + size, 0);
        decoder
            .decompress(bytes, &mut out[start..])
            .map_err(|e| e.to_string())?;
        Ok(())
    };
    let mut out = Vec::new();
    if !data.starts_with(XERIAL_MAGIC) {
        block(data, &mut out)?;
        return Ok(out);
    }
    // Xerial framing: 16-byte header, then blocks of (u32 big-endian length, raw snappy).
    let mut rest = data
        .get(XERIAL_HEADER_BYTES..)
        .ok_or("truncated xerial header")?;
    while !rest.is_empty() {
        let length = rest.get(..4).ok_or("truncated xerial block length")?;
        let length = u32::from_be_bytes(length.try_into().expect("4 bytes")) as usize;
        let chunk = rest.get(4..4 + length).ok_or("truncated xerial block")?;
        block(chunk, &mut out)?;
        rest = &rest[4 + length..];
    }
    Ok(out)
}

struct Cursor<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.position.checked_add(n)?;
        let slice = self.bytes.get(self.position..end)?;
        self.position = end;
        Some(slice)
    }

    fn varlong(&mut self) -> Option<i64> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = *self.bytes.get(self.position)?;
            self.position += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        None
    }

    fn varint(&mut self) -> Option<i32> {
        i32::try_from(self.varlong()?).ok()
    }

    /// A varint length then that many bytes; -1 is null. Slices `whole` to share its storage.
    fn nullable(&mut self, whole: &Bytes) -> Option<Option<Bytes>> {
        let length = self.varint()?;
        if length == -1 {
            return Some(None);
        }
        let length = usize::try_from(length).ok()?;
        let start = self.position;
        self.take(length)?;
        Some(Some(whole.slice(start..start + length)))
    }
}

/// A record to encode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewRecord {
    /// Key, `None` for null.
    pub key: Option<Bytes>,
    /// Value, `None` for null.
    pub value: Option<Bytes>,
    /// Headers in order.
    pub headers: Vec<(Bytes, Option<Bytes>)>,
    /// Timestamp in milliseconds.
    pub timestamp: i64,
}

/// Producer identity of an idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerStamp {
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Sequence of the first record.
    pub base_sequence: i32,
}

/// Version of the key of a control record (Kafka's `ControlRecordType` key schema).
pub const CONTROL_KEY_VERSION: i16 = 0;

/// Encodes a control batch: one record whose key is Kafka's control key (version, type) and
/// whose value is `value`, with no producer id, at `base_offset` in leader epoch `epoch`.
///
/// Consumers skip control batches whatever their type (librdkafka ignores types it does not
/// know, the Java client, kafka-python and kafkajs skip every control batch), so a broker can
/// keep its own markers in a partition's log. The control record's offset is a gap to them.
pub fn encode_control_batch(
    base_offset: i64,
    epoch: i32,
    timestamp: i64,
    control_type: i16,
    value: &[u8],
) -> Vec<u8> {
    control_batch(base_offset, epoch, timestamp, control_type, value, None)
}

/// Kafka's transaction marker: the control batch a transaction coordinator writes to each
/// partition of a transaction to end it there, in the producer's id and epoch, transactional,
/// of one record whose key is the marker type (0 ABORT, 1 COMMIT) and whose value is the
/// marker version (0) and the coordinator's epoch.
pub fn encode_txn_marker(
    base_offset: i64,
    producer_id: i64,
    producer_epoch: i16,
    coordinator_epoch: i32,
    control_type: i16,
    timestamp: i64,
) -> Vec<u8> {
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let stamp = ProducerStamp {
        producer_id,
        producer_epoch,
        base_sequence: -1,
    };
    control_batch(
        base_offset,
        -1,
        timestamp,
        control_type,
        &value,
        Some(stamp),
    )
}

fn control_batch(
    base_offset: i64,
    epoch: i32,
    timestamp: i64,
    control_type: i16,
    value: &[u8],
    producer: Option<ProducerStamp>,
) -> Vec<u8> {
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&CONTROL_KEY_VERSION.to_be_bytes());
    key.extend_from_slice(&control_type.to_be_bytes());
    let record = NewRecord {
        key: Some(Bytes::from(key)),
        value: Some(Bytes::copy_from_slice(value)),
        headers: Vec::new(),
        timestamp,
    };
    let transactional = if producer.is_some() {
        crate::batch::ATTR_TRANSACTIONAL
    } else {
        0
    };
    let mut out = encode_batch(base_offset, &[record], Codec::None, producer);
    out[12..16].copy_from_slice(&epoch.to_be_bytes());
    let attributes =
        i16::from_be_bytes([out[21], out[22]]) | crate::batch::ATTR_CONTROL | transactional;
    out[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

/// The type and value of a control batch's record (see [`encode_control_batch`]).
///
/// # Errors
///
/// The batch is not a control batch of one record with a control key.
pub fn decode_control_batch(batch: &[u8]) -> Result<(i16, Bytes), RecordError> {
    let header =
        crate::BatchHeader::parse(batch, u32::MAX)?.ok_or(RecordError::Control("short batch"))?;
    if !header.is_control() {
        return Err(RecordError::Control("the control bit is not set"));
    }
    let records = decode_records(batch, 1 << 20)?;
    let [record] = records.as_slice() else {
        return Err(RecordError::Control("it does not hold exactly one record"));
    };
    let key = record
        .key
        .as_deref()
        .ok_or(RecordError::Control("its record has no key"))?;
    let [v0, v1, t0, t1] = *key else {
        return Err(RecordError::Control("its key is not 4 bytes"));
    };
    if i16::from_be_bytes([v0, v1]) != CONTROL_KEY_VERSION {
        return Err(RecordError::Control("unknown control key version"));
    }
    Ok((
        i16::from_be_bytes([t0, t1]),
        record.value.clone().unwrap_or_default(),
    ))
}

/// The batch `batch` (one whole v2 batch) with its records compressed with `codec` instead,
/// or `None` when there is nothing to change: it already uses `codec`, or it is a control
/// batch. Every header field but the attributes' codec bits, the length and the CRC stays as
/// it was (offsets, sequences, timestamps, producer), so the batch is the same batch to every
/// reader. Records decompress to at most `decompressed_max` bytes.
///
/// # Errors
///
/// [`RecordError`] for a header that does not parse or records that do not decompress.
pub fn recompress_batch(
    batch: &[u8],
    codec: Codec,
    decompressed_max: usize,
) -> Result<Option<Vec<u8>>, RecordError> {
    let Some(header) = BatchHeader::parse(batch, u32::MAX)? else {
        return Err(RecordError::Malformed {
            index: 0,
            reason: "shorter than a batch header",
        });
    };
    if header.is_control() || header.codec() == codec {
        return Ok(None);
    }
    let end = (header.size() as usize).min(batch.len());
    let records = decompress(
        header.codec(),
        &batch[BATCH_HEADER_BYTES..end],
        decompressed_max,
    )?;
    let body = compress(codec, &records);
    let mut out = Vec::with_capacity(BATCH_HEADER_BYTES + body.len());
    out.extend_from_slice(&batch[..BATCH_HEADER_BYTES]);
    out.extend_from_slice(&body);
    let length = (BATCH_HEADER_BYTES - 12 + body.len()) as i32;
    out[8..12].copy_from_slice(&length.to_be_bytes());
    let attributes = i16::from_be_bytes([out[21], out[22]]);
    let attributes = (attributes & !ATTR_CODEC_MASK) | codec.id();
    out[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(Some(out))
}

/// Encodes `records` as one v2 batch at `base_offset`, compressed with `codec`.
///
/// # Panics
///
/// If `records` is empty: a batch holds at least one record.
pub fn encode_batch(
    base_offset: i64,
    records: &[NewRecord],
    codec: Codec,
    producer: Option<ProducerStamp>,
) -> Vec<u8> {
    assert!(!records.is_empty(), "a batch needs at least one record");
    let base_timestamp = records
        .iter()
        .map(|r| r.timestamp)
        .min()
        .expect("non-empty");
    let max_timestamp = records
        .iter()
        .map(|r| r.timestamp)
        .max()
        .expect("non-empty");
    let mut body = BytesMut::new();
    for (delta, record) in records.iter().enumerate() {
        put_record(
            &mut body,
            record.timestamp - base_timestamp,
            delta as i64,
            record.key.as_deref(),
            record.value.as_deref(),
            &record.headers,
        );
    }
    let body = compress(codec, &body);
    let stamp = producer.unwrap_or(ProducerStamp {
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
    });
    let mut out = Vec::with_capacity(BATCH_HEADER_BYTES + body.len());
    out.put_i64(base_offset);
    out.put_i32((BATCH_HEADER_BYTES - 12 + body.len()) as i32);
    out.put_i32(0); // partition leader epoch
    out.put_i8(2);
    out.put_u32(0); // CRC, filled below
    out.put_i16(codec.id());
    out.put_i32(records.len() as i32 - 1);
    out.put_i64(base_timestamp);
    out.put_i64(max_timestamp);
    out.put_i64(stamp.producer_id);
    out.put_i16(stamp.producer_epoch);
    out.put_i32(stamp.base_sequence);
    out.put_i32(records.len() as i32);
    out.put_slice(&body);
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Appends one record (length-prefixed) to a batch's record section.
pub(crate) fn put_record(
    body: &mut BytesMut,
    timestamp_delta: i64,
    offset_delta: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[(Bytes, Option<Bytes>)],
) {
    let mut fields = BytesMut::new();
    fields.put_u8(0);
    put_varlong(&mut fields, timestamp_delta);
    put_varlong(&mut fields, offset_delta);
    put_nullable(&mut fields, key);
    put_nullable(&mut fields, value);
    put_varlong(&mut fields, headers.len() as i64);
    for (key, value) in headers {
        put_nullable(&mut fields, Some(key));
        put_nullable(&mut fields, value.as_deref());
    }
    put_varlong(body, fields.len() as i64);
    body.put_slice(&fields);
}

pub(crate) fn compress(codec: Codec, data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    match codec {
        Codec::None => data.to_vec(),
        Codec::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder
                .write_all(data)
                .expect("writing to a Vec cannot fail");
            encoder.finish().expect("writing to a Vec cannot fail")
        }
        Codec::Lz4 => {
            let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
            encoder
                .write_all(data)
                .expect("writing to a Vec cannot fail");
            encoder.finish().expect("writing to a Vec cannot fail")
        }
        Codec::Zstd => zstd::bulk::compress(data, 3).expect("zstd of an in-memory buffer"),
        Codec::Snappy => snap::raw::Encoder::new()
            .compress_vec(data)
            .expect("snappy of an in-memory buffer"),
    }
}

pub(crate) fn put_varlong(out: &mut impl BufMut, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.put_u8((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    out.put_u8(zigzag as u8);
}

pub(crate) fn put_nullable(out: &mut impl BufMut, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varlong(out, -1),
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.put_slice(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::verify_crc;
    use proptest::prelude::*;

    fn arb_record() -> impl Strategy<Value = NewRecord> {
        let bytes = || {
            proptest::option::of(
                proptest::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from),
            )
        };
        (
            bytes(),
            bytes(),
            proptest::collection::vec(
                (
                    proptest::collection::vec(any::<u8>(), 0..8).prop_map(Bytes::from),
                    bytes(),
                ),
                0..4,
            ),
            0i64..1 << 42,
        )
            .prop_map(|(key, value, headers, timestamp)| NewRecord {
                key,
                value,
                headers,
                timestamp,
            })
    }

    fn codec() -> impl Strategy<Value = Codec> {
        prop_oneof![
            Just(Codec::None),
            Just(Codec::Gzip),
            Just(Codec::Snappy),
            Just(Codec::Lz4),
            Just(Codec::Zstd)
        ]
    }

    proptest! {
        #[test]
        fn control_batches_round_trip(
            base in 0i64..1 << 40,
            epoch in 0i32..i32::MAX,
            control_type in any::<i16>(),
            value in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let batch = encode_control_batch(base, epoch, 1_700_000_000_000, control_type, &value);
            verify_crc(&batch).unwrap();
            let header = crate::BatchHeader::parse(&batch, u32::MAX).unwrap().unwrap();
            prop_assert!(header.is_control());
            prop_assert!(!header.has_producer_id());
            prop_assert_eq!(header.base_offset, base);
            prop_assert_eq!(header.partition_leader_epoch, epoch);
            prop_assert_eq!(header.record_count, 1);
            let (t, v) = decode_control_batch(&batch).unwrap();
            prop_assert_eq!(t, control_type);
            prop_assert_eq!(v.as_ref(), value.as_slice());
            // A data batch is not a control batch.
            let data = encode_batch(base, &[NewRecord::default()], Codec::None, None);
            prop_assert!(decode_control_batch(&data).is_err());
        }

        #[test]
        fn decode_of_encode_is_identity(
            records in proptest::collection::vec(arb_record(), 1..20),
            codec in codec(),
            base in 0i64..1 << 40,
        ) {
            let batch = encode_batch(base, &records, codec, None);
            verify_crc(&batch).unwrap();
            let decoded = decode_records(&batch, 1 << 24).unwrap();
            prop_assert_eq!(decoded.len(), records.len());
            for (i, (d, r)) in decoded.iter().zip(&records).enumerate() {
                prop_assert_eq!(d.offset, base + i as i64);
                prop_assert_eq!(d.timestamp, r.timestamp);
                prop_assert_eq!(&d.key, &r.key);
                prop_assert_eq!(&d.value, &r.value);
                prop_assert_eq!(&d.headers, &r.headers);
            }
        }

        #[test]
        fn arbitrary_record_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..200), codec in codec()) {
            let mut batch = encode_batch(0, &[NewRecord::default()], Codec::None, None);
            batch.truncate(BATCH_HEADER_BYTES);
            batch[21..23].copy_from_slice(&codec.id().to_be_bytes());
            batch.extend_from_slice(&body);
            let length = (batch.len() - 12) as i32;
            batch[8..12].copy_from_slice(&length.to_be_bytes());
            let _ = decode_records(&batch, 1 << 16);
        }
    }

    /// Cross-check against an independent encoder: kafka-protocol's.
    #[test]
    fn decodes_batches_encoded_by_kafka_protocol() {
        use kafka_protocol::protocol::StrBytes;
        use kafka_protocol::records::{
            Compression, Record as KRecord, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
        };
        let mut headers = kafka_protocol::indexmap::IndexMap::new();
        headers.insert(
            StrBytes::from_static_str("trace"),
            Some(Bytes::from_static(b"abc")),
        );
        let records: Vec<KRecord> = (0..3)
            .map(|i| KRecord {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: 7,
                producer_epoch: 1,
                timestamp_type: TimestampType::Creation,
                offset: 500 + i,
                sequence: 10 + i as i32,
                timestamp: 1_700_000_000_000 + i,
                key: (i != 1).then(|| Bytes::from(format!("key-{i}"))),
                value: Some(Bytes::from(vec![i as u8; 100])),
                headers: headers.clone(),
            })
            .collect();
        let mut buf = bytes::BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
        verify_crc(&buf).unwrap();
        let header = BatchHeader::parse(&buf, u32::MAX).unwrap().unwrap();
        assert_eq!(
            (
                header.producer_id,
                header.producer_epoch,
                header.base_sequence
            ),
            (7, 1, 10)
        );
        assert_eq!(header.last_sequence(), 12);
        let decoded = decode_records(&buf, 1 << 20).unwrap();
        for (d, r) in decoded.iter().zip(&records) {
            assert_eq!((d.offset, d.timestamp), (r.offset, r.timestamp));
            assert_eq!((&d.key, &d.value), (&r.key, &r.value));
            assert_eq!(
                d.headers,
                vec![(
                    Bytes::from_static(b"trace"),
                    Some(Bytes::from_static(b"abc"))
                )]
            );
        }
    }

    #[test]
    fn duplicate_header_keys_are_kept_in_order() {
        let record = NewRecord {
            headers: vec![
                (Bytes::from_static(b"h"), Some(Bytes::from_static(b"1"))),
                (Bytes::from_static(b"h"), None),
                (Bytes::from_static(b"h"), Some(Bytes::from_static(b"3"))),
            ],
            ..NewRecord::default()
        };
        let batch = encode_batch(0, std::slice::from_ref(&record), Codec::Zstd, None);
        assert_eq!(
            decode_records(&batch, 1 << 20).unwrap()[0].headers,
            record.headers
        );
    }

    #[test]
    fn xerial_framed_snappy_decodes() {
        let data = b"hello hello hello hello".repeat(100);
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        let mut framed = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
        framed.extend_from_slice(&(raw.len() as u32).to_be_bytes());
        framed.extend_from_slice(&raw);
        assert_eq!(
            &decompress(Codec::Snappy, &framed, 1 << 20).unwrap()[..],
            &data[..]
        );
    }

    #[test]
    fn recompressed_batches_keep_every_record_and_header_field() {
        let records: Vec<NewRecord> = (0..50)
            .map(|i| NewRecord {
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(vec![b'v'; 100 + i])),
                timestamp: 1_700_000_000_000 + i as i64,
                headers: vec![(Bytes::from_static(b"h"), Some(Bytes::from_static(b"x")))],
            })
            .collect();
        let stamp = ProducerStamp {
            producer_id: 7,
            producer_epoch: 2,
            base_sequence: 40,
        };
        let original = encode_batch(100, &records, Codec::None, Some(stamp));
        let expected = decode_records(&original, 1 << 20).expect("decodes");
        for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            let changed = recompress_batch(&original, codec, 1 << 20)
                .expect("recompresses")
                .expect("a different codec changes the batch");
            crate::batch::verify_crc(&changed).expect("CRC of the new batch");
            let header = BatchHeader::parse(&changed, u32::MAX)
                .expect("parses")
                .expect("whole");
            let before = BatchHeader::parse(&original, u32::MAX)
                .expect("parses")
                .expect("whole");
            assert_eq!(header.codec(), codec);
            assert_eq!(header.size() as usize, changed.len());
            assert!(changed.len() < original.len(), "{codec:?} compresses");
            assert_eq!(
                (
                    header.base_offset,
                    header.producer_id,
                    header.base_sequence,
                    header.record_count
                ),
                (
                    before.base_offset,
                    before.producer_id,
                    before.base_sequence,
                    before.record_count
                )
            );
            assert_eq!(
                decode_records(&changed, 1 << 20).expect("decodes"),
                expected
            );
            // And back, from each codec to another.
            let back = recompress_batch(&changed, Codec::None, 1 << 20)
                .expect("recompresses")
                .expect("changes");
            assert_eq!(back, original);
        }
        assert_eq!(
            recompress_batch(&original, Codec::None, 1 << 20).expect("same"),
            None
        );
    }

    #[test]
    fn decompression_bomb_is_refused() {
        let data = vec![0u8; 1 << 20];
        let compressed = compress(Codec::Zstd, &data);
        assert_eq!(
            decompress(Codec::Zstd, &compressed, 1000),
            Err(RecordError::TooLarge { limit: 1000 })
        );
    }
}
