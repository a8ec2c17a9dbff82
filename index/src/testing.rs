//! Helpers for this crate's tests.

use crate::batch::Codec;
use crate::record::{NewRecord, encode_batch};

/// A test record: key, value, timestamp.
pub(crate) type TestRecord<'a> = (Option<&'a [u8]>, Option<&'a [u8]>, i64);

/// One batch of `(key, value, timestamp)` records at `base_offset`.
pub(crate) fn batch(base_offset: i64, records: &[TestRecord<'_>], codec: Codec) -> Vec<u8> {
    let records: Vec<NewRecord> = records
        .iter()
        .map(|(key, value, timestamp)| NewRecord {
            key: key.map(|k| k.to_vec().into()),
            value: value.map(|v| v.to_vec().into()),
            headers: Vec::new(),
            timestamp: *timestamp,
        })
        .collect();
    encode_batch(base_offset, &records, codec, None)
}
