//! Archived records as Apache Parquet: one file per archived segment under Hive-style paths,
//!
//! ```text
//! <prefix>/topic=<topic>/partition=<p>/date=<YYYY-MM-DD>/<base:020>-<last:020>-<object-id:016x>.parquet
//! ```
//!
//! so DuckDB (`read_parquet('<prefix>/**/*.parquet', hive_partitioning = true)`), Spark or
//! Trino read a prefix as one table. A file is named after the segment object it was made
//! from, so an export is incremental and idempotent (a file there is a segment done), and a
//! topic deleted and created again under the same name never overwrites its predecessor's
//! files. `date` is the UTC day of the segment's first record.
//!
//! Written two ways: by `silt archive export` from the bucket, and by the archiver as it
//! uploads a segment of a topic with `archive.parquet=true` (under `<archive>/parquet`).
//!
//! The columns are those of a Kafka record; committed data records only (control records and
//! records of aborted transactions are left out):
//!
//! | column      | type                                                     |
//! |-------------|----------------------------------------------------------|
//! | `partition` | int32                                                    |
//! | `offset`    | int64                                                    |
//! | `timestamp` | int64, TIMESTAMP(MILLIS, UTC)                            |
//! | `key`       | binary, null for a record without a key                  |
//! | `value`     | binary, null for a tombstone                             |
//! | `headers`   | LIST of {`key`: string, `value`: binary or null}, in order |

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, Int32Type, Int64Type};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use silt_index::record::Record;

use crate::error::ArchiveError;
use crate::remote::Remote;

/// The Parquet schema of a Kafka record.
const SCHEMA: &str = "
message kafka_record {
  required int32 partition;
  required int64 offset;
  required int64 timestamp (TIMESTAMP(MILLIS,true));
  optional binary key;
  optional binary value;
  required group headers (LIST) {
    repeated group list {
      required group element {
        required binary key (STRING);
        optional binary value;
      }
    }
  }
}
";

/// A row group is written once this many bytes of keys, values and headers are buffered:
/// the memory one writer holds.
const ROW_GROUP_BYTES: usize = 64 << 20;
/// Files up to this size go up in one PUT; larger ones in parts.
const SINGLE_PUT_BYTES: u64 = 64 << 20;

/// The directory Hive-style tables of archived topics go under, beside the archive's own
/// objects (whose top-level directories are 8 hex digits and `_silt`).
pub const ARCHIVE_DIR: &str = "parquet";

/// Where the Parquet file of one archived segment goes under `prefix`.
pub fn file_key(
    prefix: &Path,
    topic: &str,
    partition: i32,
    first_timestamp: i64,
    (base, last, object_id): (i64, i64, u64),
) -> Path {
    let (year, month, day) = civil_date(first_timestamp.max(0));
    let mut key = prefix.clone();
    for part in [
        format!("topic={topic}"),
        format!("partition={partition}"),
        format!("date={year:04}-{month:02}-{day:02}"),
        format!("{base:020}-{last:020}-{object_id:016x}.parquet"),
    ] {
        key = key.join(part);
    }
    key
}

/// The UTC calendar day of a time in milliseconds since the epoch, as (year, month, day)
/// (Howard Hinnant's days-to-civil algorithm).
pub fn civil_date(ms: i64) -> (i64, i64, i64) {
    let days = ms.div_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Records of one partition written, column by column, into a Parquet file.
pub struct ParquetWriter {
    writer: SerializedFileWriter<File>,
    partition: i32,
    columns: Columns,
    records: u64,
}

impl std::fmt::Debug for ParquetWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetWriter")
            .field("partition", &self.partition)
            .field("records", &self.records)
            .finish_non_exhaustive()
    }
}

/// One row group's columns, with the definition and repetition levels of the nullable and
/// repeated ones.
#[derive(Default)]
struct Columns {
    offset: Vec<i64>,
    timestamp: Vec<i64>,
    key: Vec<ByteArray>,
    key_def: Vec<i16>,
    value: Vec<ByteArray>,
    value_def: Vec<i16>,
    header_key: Vec<ByteArray>,
    header_key_def: Vec<i16>,
    header_value: Vec<ByteArray>,
    header_value_def: Vec<i16>,
    header_rep: Vec<i16>,
    bytes: usize,
}

fn failed(e: ParquetError) -> ArchiveError {
    ArchiveError::Export(e.to_string())
}

impl ParquetWriter {
    /// A writer into `file` (a scratch file: it is read back for the upload).
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Export`] when the file cannot be written.
    pub fn new(file: File, partition: i32) -> Result<ParquetWriter, ArchiveError> {
        let schema = Arc::new(parse_message_type(SCHEMA).map_err(failed)?);
        let properties = Arc::new(
            WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_created_by(format!("silt {}", env!("CARGO_PKG_VERSION")))
                .build(),
        );
        Ok(ParquetWriter {
            writer: SerializedFileWriter::new(file, schema, properties).map_err(failed)?,
            partition,
            columns: Columns::default(),
            records: 0,
        })
    }

    /// Adds a record (the caller leaves out control and aborted records).
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Export`] when a row group cannot be written.
    pub fn push(&mut self, record: &Record) -> Result<(), ArchiveError> {
        let c = &mut self.columns;
        c.offset.push(record.offset);
        c.timestamp.push(record.timestamp);
        optional(&mut c.key, &mut c.key_def, record.key.as_ref(), 1);
        optional(&mut c.value, &mut c.value_def, record.value.as_ref(), 1);
        c.bytes +=
            record.key.as_ref().map_or(0, Bytes::len) + record.value.as_ref().map_or(0, Bytes::len);
        if record.headers.is_empty() {
            // An empty list: defined down to `headers`, nothing below it.
            c.header_rep.push(0);
            c.header_key_def.push(0);
            c.header_value_def.push(0);
        }
        for (i, (key, value)) in record.headers.iter().enumerate() {
            c.header_rep.push(i16::from(i > 0));
            c.header_key_def.push(1);
            // Kafka header keys are strings; bytes that are not UTF-8 are shown replaced.
            let text = String::from_utf8_lossy(key).into_owned();
            c.header_key.push(ByteArray::from(text.into_bytes()));
            optional(
                &mut c.header_value,
                &mut c.header_value_def,
                value.as_ref(),
                2,
            );
            c.bytes += key.len() + value.as_ref().map_or(0, Bytes::len);
        }
        self.records += 1;
        if c.bytes >= ROW_GROUP_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the buffered rows as one row group.
    fn flush(&mut self) -> Result<(), ArchiveError> {
        let c = std::mem::take(&mut self.columns);
        if c.offset.is_empty() {
            return Ok(());
        }
        let partitions = vec![self.partition; c.offset.len()];
        let mut group = self.writer.next_row_group().map_err(failed)?;
        let mut index = 0;
        while let Some(mut column) = group.next_column().map_err(failed)? {
            let written = match index {
                0 => column
                    .typed::<Int32Type>()
                    .write_batch(&partitions, None, None),
                1 => column
                    .typed::<Int64Type>()
                    .write_batch(&c.offset, None, None),
                2 => column
                    .typed::<Int64Type>()
                    .write_batch(&c.timestamp, None, None),
                3 => column
                    .typed::<ByteArrayType>()
                    .write_batch(&c.key, Some(&c.key_def), None),
                4 => {
                    column
                        .typed::<ByteArrayType>()
                        .write_batch(&c.value, Some(&c.value_def), None)
                }
                5 => column.typed::<ByteArrayType>().write_batch(
                    &c.header_key,
                    Some(&c.header_key_def),
                    Some(&c.header_rep),
                ),
                6 => column.typed::<ByteArrayType>().write_batch(
                    &c.header_value,
                    Some(&c.header_value_def),
                    Some(&c.header_rep),
                ),
                other => {
                    return Err(ArchiveError::Export(format!(
                        "the schema has a column {other} the writer does not know"
                    )));
                }
            };
            written.map_err(failed)?;
            column.close().map_err(failed)?;
            index += 1;
        }
        group.close().map_err(failed)?;
        Ok(())
    }

    /// Records pushed so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Writes what is left and the footer; returns the file.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Export`].
    pub fn finish(mut self) -> Result<File, ArchiveError> {
        self.flush()?;
        self.writer.into_inner().map_err(failed)
    }
}

/// Appends a nullable value: defined at `level` when present.
fn optional(values: &mut Vec<ByteArray>, defs: &mut Vec<i16>, value: Option<&Bytes>, level: i16) {
    match value {
        Some(v) => {
            values.push(ByteArray::from(v.clone()));
            defs.push(level);
        }
        None => defs.push(level - 1),
    }
}

/// Uploads a finished file under `key`; returns its size.
///
/// # Errors
///
/// [`ArchiveError::Export`] for the scratch file; store failures.
pub async fn upload(remote: &Remote, key: &Path, mut file: File) -> Result<u64, ArchiveError> {
    let scratch = |e: std::io::Error| ArchiveError::Export(format!("the scratch file: {e}"));
    let size = file.seek(SeekFrom::End(0)).map_err(scratch)?;
    file.seek(SeekFrom::Start(0)).map_err(scratch)?;
    if size <= SINGLE_PUT_BYTES {
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        file.read_to_end(&mut bytes).map_err(scratch)?;
        remote.put(key, Bytes::from(bytes)).await?;
        return Ok(size);
    }
    let mut upload = remote.multipart(key, size).await?;
    let mut left = size;
    while left > 0 {
        let len = usize::try_from((upload.part_bytes() as u64).min(left)).unwrap_or(usize::MAX);
        let mut part = vec![0u8; len];
        if let Err(e) = file.read_exact(&mut part) {
            upload.abort().await;
            return Err(scratch(e));
        }
        left -= part.len() as u64;
        if let Err(e) = upload.write(Bytes::from(part)).await {
            upload.abort().await;
            return Err(e);
        }
    }
    upload.finish().await?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_match_known_days() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(951_782_400_000), (2000, 2, 29));
        assert_eq!(civil_date(1_796_083_199_999), (2026, 11, 30));
        assert_eq!(civil_date(1_796_083_200_000), (2026, 12, 1));
    }

    #[test]
    fn file_keys_are_hive_paths_named_after_the_segment_object() {
        let key = file_key(
            &Path::from("exports"),
            "orders",
            3,
            1_796_083_200_000,
            (100, 199, 0xabc),
        );
        assert_eq!(
            key.as_ref(),
            "exports/topic=orders/partition=3/date=2026-12-01/00000000000000000100-00000000000000000199-0000000000000abc.parquet"
        );
    }

    #[test]
    fn a_written_file_has_the_rows_pushed() {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let mut writer = ParquetWriter::new(tempfile::tempfile().unwrap(), 7).unwrap();
        for offset in 0..1000i64 {
            writer
                .push(&Record {
                    offset,
                    timestamp: 1_000 + offset,
                    key: (offset % 2 == 0).then(|| Bytes::from(format!("k{offset}"))),
                    value: Some(Bytes::from(vec![b'v'; 10])),
                    headers: (0..offset % 3)
                        .map(|i| (Bytes::from(format!("h{i}")), None))
                        .collect(),
                })
                .unwrap();
        }
        assert_eq!(writer.records(), 1000);
        let file = writer.finish().unwrap();
        let reader = SerializedFileReader::new(file).unwrap();
        let meta = reader.metadata();
        assert_eq!(meta.file_metadata().num_rows(), 1000);
        assert_eq!(meta.file_metadata().schema_descr().num_columns(), 7);
    }
}
