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
//!
//! Given a JSON Schema of the values ([`JsonColumns`]), each top-level property becomes one
//! more optional column after these, typed from the schema, null when a value is not a JSON
//! object, lacks the property or holds another type there; `value` keeps the bytes.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use parquet::basic::{Compression, LogicalType, Repetition, Type as PhysicalType};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int32Type, Int64Type};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::Type;
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

/// The type of a column decoded from JSON values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonType {
    /// `"type": "string"`: a UTF-8 string column.
    String,
    /// `"type": "integer"`: int64.
    Integer,
    /// `"type": "number"`: double (integers in the value are widened).
    Number,
    /// `"type": "boolean"`.
    Boolean,
    /// `"type": "object"` or `"array"`, or no single type: the property's JSON text, as a
    /// string column with Parquet's JSON logical type.
    Json,
}

/// Columns decoded from JSON record values: the top-level properties of a JSON Schema.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonColumns {
    fields: Vec<(String, JsonType)>,
}

/// The names the record's own columns take.
const RECORD_COLUMNS: [&str; 6] = [
    "partition",
    "offset",
    "timestamp",
    "key",
    "value",
    "headers",
];

impl JsonColumns {
    /// The columns of a JSON Schema: `{"type": "object", "properties": {"amount": {"type":
    /// "number"}, ...}}`, in the order the properties are written. A property's `"type"` may
    /// be a list with `"null"` in it (`["string", "null"]`).
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Config`] naming what is wrong: not an object schema, no properties, a
    /// property named like a record column.
    pub fn from_schema(schema: &serde_json::Value) -> Result<JsonColumns, ArchiveError> {
        let bad = |why: String| ArchiveError::Config(format!("JSON schema: {why}"));
        let properties = schema
            .get("properties")
            .and_then(serde_json::Value::as_object)
            .ok_or_else(|| bad("no \"properties\" object at the top level".into()))?;
        if let Some(kind) = schema.get("type")
            && kind != "object"
        {
            return Err(bad(format!("the values' type is {kind}, not \"object\"")));
        }
        let mut fields = Vec::new();
        for (name, property) in properties {
            if RECORD_COLUMNS.contains(&name.as_str()) {
                return Err(bad(format!(
                    "property \"{name}\" has the name of a record column ({})",
                    RECORD_COLUMNS.join(", ")
                )));
            }
            let types: Vec<&str> = match property.get("type") {
                Some(serde_json::Value::String(t)) => vec![t.as_str()],
                Some(serde_json::Value::Array(ts)) => ts
                    .iter()
                    .filter_map(serde_json::Value::as_str)
                    .filter(|t| *t != "null")
                    .collect(),
                _ => Vec::new(),
            };
            let kind = match types.as_slice() {
                ["string"] => JsonType::String,
                ["integer"] => JsonType::Integer,
                ["number"] | ["integer", "number"] | ["number", "integer"] => JsonType::Number,
                ["boolean"] => JsonType::Boolean,
                _ => JsonType::Json,
            };
            fields.push((name.clone(), kind));
        }
        if fields.is_empty() {
            return Err(bad("\"properties\" is empty".into()));
        }
        Ok(JsonColumns { fields })
    }

    /// The columns, in order.
    pub fn fields(&self) -> &[(String, JsonType)] {
        &self.fields
    }

    fn parquet_fields(&self) -> Result<Vec<Arc<Type>>, ParquetError> {
        self.fields
            .iter()
            .map(|(name, kind)| {
                let (physical, logical) = match kind {
                    JsonType::String => (PhysicalType::BYTE_ARRAY, Some(LogicalType::String)),
                    JsonType::Integer => (PhysicalType::INT64, None),
                    JsonType::Number => (PhysicalType::DOUBLE, None),
                    JsonType::Boolean => (PhysicalType::BOOLEAN, None),
                    JsonType::Json => (PhysicalType::BYTE_ARRAY, Some(LogicalType::Json)),
                };
                Type::primitive_type_builder(name, physical)
                    .with_repetition(Repetition::OPTIONAL)
                    .with_logical_type(logical)
                    .build()
                    .map(Arc::new)
            })
            .collect()
    }
}

/// A decoded column's values (nulls only in its definition levels).
#[derive(Debug)]
enum JsonData {
    Bytes(Vec<ByteArray>),
    Integer(Vec<i64>),
    Number(Vec<f64>),
    Boolean(Vec<bool>),
}

impl JsonData {
    fn of(kind: JsonType) -> JsonData {
        match kind {
            JsonType::String | JsonType::Json => JsonData::Bytes(Vec::new()),
            JsonType::Integer => JsonData::Integer(Vec::new()),
            JsonType::Number => JsonData::Number(Vec::new()),
            JsonType::Boolean => JsonData::Boolean(Vec::new()),
        }
    }

    /// Appends `value` if it has the column's type; true if it did.
    fn push(&mut self, kind: JsonType, value: &serde_json::Value) -> bool {
        match (self, kind) {
            (JsonData::Bytes(out), JsonType::String) => value
                .as_str()
                .map(|s| out.push(ByteArray::from(s.as_bytes().to_vec())))
                .is_some(),
            (JsonData::Bytes(out), _) => {
                out.push(ByteArray::from(value.to_string().into_bytes()));
                true
            }
            (JsonData::Integer(out), _) => value.as_i64().map(|v| out.push(v)).is_some(),
            (JsonData::Number(out), _) => value.as_f64().map(|v| out.push(v)).is_some(),
            (JsonData::Boolean(out), _) => value.as_bool().map(|v| out.push(v)).is_some(),
        }
    }
}

/// Records of one partition written, column by column, into a Parquet file.
pub struct ParquetWriter {
    writer: SerializedFileWriter<File>,
    partition: i32,
    json: JsonColumns,
    columns: Columns,
    records: u64,
    /// Values that were not JSON objects (their decoded columns null).
    not_json: u64,
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
    /// The decoded JSON columns, with their definition levels.
    json: Vec<(JsonData, Vec<i16>)>,
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
        ParquetWriter::with_json(file, partition, JsonColumns::default())
    }

    /// A writer that also decodes values as JSON into `json`'s columns.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Export`] when the file cannot be written.
    pub fn with_json(
        file: File,
        partition: i32,
        json: JsonColumns,
    ) -> Result<ParquetWriter, ArchiveError> {
        let record = parse_message_type(SCHEMA).map_err(failed)?;
        let mut fields = record.get_fields().to_vec();
        fields.extend(json.parquet_fields().map_err(failed)?);
        let schema = Arc::new(
            Type::group_type_builder(record.name())
                .with_fields(fields)
                .build()
                .map_err(failed)?,
        );
        let properties = Arc::new(
            WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_created_by(format!("silt {}", env!("CARGO_PKG_VERSION")))
                .build(),
        );
        Ok(ParquetWriter {
            writer: SerializedFileWriter::new(file, schema, properties).map_err(failed)?,
            partition,
            columns: Columns::for_json(&json),
            json,
            records: 0,
            not_json: 0,
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
        if !self.json.fields.is_empty() {
            let object = record
                .value
                .as_ref()
                .and_then(|v| serde_json::from_slice::<serde_json::Value>(v).ok())
                .filter(serde_json::Value::is_object);
            self.not_json += u64::from(object.is_none());
            for ((name, kind), (data, defs)) in self.json.fields.iter().zip(&mut c.json) {
                let present = object
                    .as_ref()
                    .and_then(|o| o.get(name))
                    .is_some_and(|v| data.push(*kind, v));
                defs.push(i16::from(present));
            }
        }
        self.records += 1;
        if c.bytes >= ROW_GROUP_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the buffered rows as one row group.
    fn flush(&mut self) -> Result<(), ArchiveError> {
        let mut c = std::mem::replace(&mut self.columns, Columns::for_json(&self.json));
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
                json => {
                    match c.json.get_mut(json - 7) {
                        Some((JsonData::Bytes(v), defs)) => column
                            .typed::<ByteArrayType>()
                            .write_batch(v, Some(defs), None),
                        Some((JsonData::Integer(v), defs)) => {
                            column.typed::<Int64Type>().write_batch(v, Some(defs), None)
                        }
                        Some((JsonData::Number(v), defs)) => column
                            .typed::<DoubleType>()
                            .write_batch(v, Some(defs), None),
                        Some((JsonData::Boolean(v), defs)) => {
                            column.typed::<BoolType>().write_batch(v, Some(defs), None)
                        }
                        None => {
                            return Err(ArchiveError::Export(format!(
                                "the schema has a column {json} the writer does not know"
                            )));
                        }
                    }
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

    /// Records pushed whose value was not a JSON object, when JSON columns were asked for.
    pub fn not_json(&self) -> u64 {
        self.not_json
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

impl Columns {
    fn for_json(json: &JsonColumns) -> Columns {
        Columns {
            json: json
                .fields
                .iter()
                .map(|(_, kind)| (JsonData::of(*kind), Vec::new()))
                .collect(),
            ..Columns::default()
        }
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
    fn json_schemas_name_their_columns_or_what_is_wrong() {
        let schema = serde_json::json!({"type": "object", "properties": {
            "amount": {"type": "number"}, "id": {"type": "integer"}, "name": {"type": ["string", "null"]},
            "ok": {"type": "boolean"}, "items": {"type": "array"}, "any": {}}});
        let columns = JsonColumns::from_schema(&schema).unwrap();
        let kinds: Vec<(&str, JsonType)> = columns
            .fields()
            .iter()
            .map(|(n, k)| (n.as_str(), *k))
            .collect();
        assert!(kinds.contains(&("amount", JsonType::Number)));
        assert!(kinds.contains(&("id", JsonType::Integer)));
        assert!(kinds.contains(&("name", JsonType::String)));
        assert!(kinds.contains(&("ok", JsonType::Boolean)));
        assert!(kinds.contains(&("items", JsonType::Json)));
        assert!(kinds.contains(&("any", JsonType::Json)));
        for (schema, why) in [
            (serde_json::json!({"type": "array"}), "properties"),
            (
                serde_json::json!({"type": "array", "properties": {"a": {}}}),
                "not \"object\"",
            ),
            (serde_json::json!({"properties": {"offset": {}}}), "offset"),
            (serde_json::json!({"properties": {}}), "empty"),
        ] {
            let e = JsonColumns::from_schema(&schema).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn json_values_fill_their_columns_and_the_rest_are_null() {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        use parquet::record::RowAccessor;
        let schema = serde_json::json!({"properties": {
            "amount": {"type": "number"}, "sku": {"type": "string"}, "tags": {"type": "array"}}});
        let json = JsonColumns::from_schema(&schema).unwrap();
        let mut writer = ParquetWriter::with_json(tempfile::tempfile().unwrap(), 0, json).unwrap();
        let values = [
            &br#"{"amount": 12, "sku": "A-1", "tags": ["x", 1]}"#[..],
            br#"{"amount": "twelve", "sku": 7}"#,
            b"not json",
        ];
        for (offset, value) in values.iter().enumerate() {
            writer
                .push(&Record {
                    offset: offset as i64,
                    timestamp: 0,
                    key: None,
                    value: Some(Bytes::copy_from_slice(value)),
                    headers: Vec::new(),
                })
                .unwrap();
        }
        assert_eq!(writer.not_json(), 1);
        let reader = SerializedFileReader::new(writer.finish().unwrap()).unwrap();
        let rows: Vec<_> = reader
            .get_row_iter(None)
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(rows[0].get_double(6).unwrap(), 12.0);
        assert_eq!(rows[0].get_string(7).unwrap(), "A-1");
        assert_eq!(rows[0].get_string(8).unwrap(), r#"["x",1]"#);
        // Wrong types and values that are not JSON objects: null, the bytes kept in `value`.
        assert!(rows[1].get_double(6).is_err() && rows[1].get_string(7).is_err());
        assert!(rows[2].get_double(6).is_err());
        assert_eq!(rows[2].get_bytes(4).unwrap().data(), b"not json");
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
