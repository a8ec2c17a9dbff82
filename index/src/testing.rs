//! Helpers for this crate's tests.

use crate::batch::Codec;
use crate::record::{NewRecord, encode_batch};

/// One batch of `(key, value, timestamp)` records at `base_offset`.
pub(crate) fn batch(
    base_offset: i64,
    records: &[(Option<&[u8]>, Option<&[u8]>, i64)],
    codec: Codec,
) -> Vec<u8> {
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
