//! `silt archive export`: archived segments as Parquet files in Hive-style paths
//! (`topic=T/partition=P/date=YYYY-MM-DD/<base>-<last>.parquet`), one file per segment, so an
//! export is incremental (segments already exported are skipped) and DuckDB, Spark or Trino
//! read the prefix as one table.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use object_store::path::Path;
use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use silt_archiver::keys;
use silt_archiver::remote::Remote;
use silt_archiver::{Archive, ArchiveError, ReaderConfig, RemoteReader};
use silt_index::manifest::SegmentEntry;
use silt_index::record::Record;

use crate::archive::{pid, topics, when};
use crate::archive_find::parse_time;

/// Parquet columns of a Kafka record; headers a list of (key, value) in order.
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

/// A row group is written once this many bytes of keys, values and headers are buffered.
const ROW_GROUP_BYTES: usize = 128 << 20;
/// Files up to this size go up in one PUT; larger ones in parts.
const SINGLE_PUT_BYTES: u64 = 64 << 20;

/// Formats `silt archive export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ExportFormat {
    /// Apache Parquet, Snappy-compressed.
    Parquet,
}

/// What `silt archive export` was asked.
#[derive(Debug, clap::Args)]
pub(crate) struct ExportArgs {
    /// The topic.
    topic: String,
    /// The file format.
    #[arg(long, value_enum, default_value = "parquet")]
    format: ExportFormat,
    /// Where the files go: a directory, file:///dir, s3://bucket/prefix (AWS_* variables
    /// apply), ...
    #[arg(long)]
    to: String,
    /// Only this partition.
    #[arg(long)]
    partition: Option<i32>,
    /// Only segments with records at or after this time: milliseconds since the epoch, or
    /// YYYY-MM-DD[THH:MM:SS[Z]] in UTC (segments are exported whole).
    #[arg(long)]
    since: Option<String>,
    /// Only segments with records before this time (same forms as --since).
    #[arg(long)]
    until: Option<String>,
    /// Only segments with offsets at or after this one.
    #[arg(long)]
    from_offset: Option<i64>,
    /// Only segments with offsets before this one.
    #[arg(long)]
    to_offset: Option<i64>,
}

/// What an export did.
#[derive(Debug, Default)]
struct Tally {
    files: u64,
    skipped: u64,
    records: u64,
    segment_bytes: u64,
    parquet_bytes: u64,
}

/// Runs `silt archive export`.
pub(crate) async fn export(archive: &Archive, args: ExportArgs) -> Result<()> {
    let ExportFormat::Parquet = args.format;
    let since = args.since.as_deref().map(parse_time).transpose()?;
    let until = args.until.as_deref().map(parse_time).transpose()?;
    let target = Remote::open(&args.to).with_context(|| format!("opening {}", args.to))?;
    let topic = topics(archive, Some(&args.topic))
        .await?
        .into_iter()
        .max_by_key(|t| t.updated_ms)
        .context("topic not in the archive")?;
    if let Some(p) = args.partition
        && !(0..topic.partitions).contains(&p)
    {
        bail!(
            "topic '{}' has partitions 0..{}, not {p}",
            topic.name,
            topic.partitions
        );
    }
    let cache = tempfile::tempdir().context("a scratch directory")?;
    let reader = RemoteReader::new(
        archive.clone(),
        ReaderConfig {
            cache_dir: cache.path().join("cache"),
            cache_bytes: 256 << 20,
            ..ReaderConfig::default()
        },
    )?;
    // The plan first: every segment in range, so progress is over bytes known up front.
    let mut plan = Vec::new();
    for partition in (0..topic.partitions).filter(|p| args.partition.is_none_or(|only| only == *p))
    {
        let manifest = reader.manifest(pid(&topic, partition));
        let root = manifest.latest_root().await?;
        for entry in keys::segments(&manifest, &root).await? {
            let m = &entry.meta;
            if since.is_some_and(|s| m.max_timestamp < s)
                || until.is_some_and(|u| m.first_timestamp >= u)
                || args.from_offset.is_some_and(|o| m.last_offset < o)
                || args.to_offset.is_some_and(|o| m.base_offset >= o)
            {
                continue;
            }
            plan.push((partition, entry));
        }
    }
    let total: u64 = plan.iter().map(|(_, e)| e.meta.size_bytes).sum();
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} of segments ({bytes_per_sec}, {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(format!("{} -> {}", topic.name, target.description()));
    let started = Instant::now();
    let mut tally = Tally::default();
    for (partition, entry) in plan {
        let key = file_key(target.prefix(), &topic.name, partition, &entry);
        match target.head(&key).await {
            Ok(_) => {
                tally.skipped += 1;
                bar.inc(entry.meta.size_bytes);
                continue;
            }
            Err(ArchiveError::NotFound(_)) => {}
            Err(e) => return Err(e).with_context(|| format!("checking for {key}")),
        }
        let manifest = reader.manifest(pid(&topic, partition));
        let root = manifest.latest_root().await?;
        let scratch = tempfile::tempfile_in(cache.path()).context("a scratch file")?;
        let mut sink = ParquetSink::new(scratch, partition)?;
        let mut failed = None;
        keys::each_record(&reader, &manifest, &root, &entry, &mut |record| {
            if failed.is_none()
                && let Err(e) = sink.push(&record)
            {
                failed = Some(e);
            }
        })
        .await
        .with_context(|| format!("reading {}/{partition} at {}", topic.name, entry.meta.base_offset))?;
        if let Some(e) = failed {
            return Err(e);
        }
        let (file, records) = sink.finish()?;
        let bytes = upload(&target, &key, file).await?;
        tally.files += 1;
        tally.records += records;
        tally.segment_bytes += entry.meta.size_bytes;
        tally.parquet_bytes += bytes;
        bar.inc(entry.meta.size_bytes);
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64().max(1e-3);
    println!(
        "{} files written ({} records; {:.1} MB of segments as {:.1} MB of Parquet, {:.0}%), {} already there; {:.1} MB/s of segments",
        tally.files,
        tally.records,
        tally.segment_bytes as f64 / 1e6,
        tally.parquet_bytes as f64 / 1e6,
        if tally.segment_bytes == 0 {
            0.0
        } else {
            100.0 * tally.parquet_bytes as f64 / tally.segment_bytes as f64
        },
        tally.skipped,
        tally.segment_bytes as f64 / 1e6 / seconds,
    );
    Ok(())
}

/// Where a segment's file goes: Hive-style partition directories, the date of its first
/// record (UTC).
fn file_key(prefix: &Path, topic: &str, partition: i32, entry: &SegmentEntry) -> Path {
    let m = &entry.meta;
    let date = if m.first_timestamp > 0 {
        when(m.first_timestamp)[..10].to_string()
    } else {
        "1970-01-01".to_string()
    };
    let mut key = prefix.clone();
    for part in [
        format!("topic={topic}"),
        format!("partition={partition}"),
        format!("date={date}"),
        format!("{:020}-{:020}.parquet", m.base_offset, m.last_offset),
    ] {
        key = key.join(part);
    }
    key
}

/// Uploads a finished file; returns its size.
async fn upload(target: &Remote, key: &Path, mut file: File) -> Result<u64> {
    let size = file.seek(SeekFrom::End(0)).context("the scratch file")?;
    file.seek(SeekFrom::Start(0)).context("the scratch file")?;
    if size <= SINGLE_PUT_BYTES {
        let mut bytes = Vec::with_capacity(size as usize);
        file.read_to_end(&mut bytes).context("the scratch file")?;
        target.put(key, Bytes::from(bytes)).await?;
        return Ok(size);
    }
    let mut upload = target.multipart(key, size).await?;
    let mut left = size;
    while left > 0 {
        let mut part = vec![0u8; (upload.part_bytes() as u64).min(left) as usize];
        if let Err(e) = file.read_exact(&mut part) {
            upload.abort().await;
            return Err(e).context("the scratch file");
        }
        left -= part.len() as u64;
        if let Err(e) = upload.write(Bytes::from(part)).await {
            upload.abort().await;
            return Err(e.into());
        }
    }
    upload.finish().await?;
    Ok(size)
}

/// Records buffered column by column, written out as row groups.
struct ParquetSink {
    writer: SerializedFileWriter<File>,
    partition: i32,
    columns: Columns,
    records: u64,
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

impl ParquetSink {
    fn new(file: File, partition: i32) -> Result<ParquetSink> {
        let schema = Arc::new(parse_message_type(SCHEMA).context("the Parquet schema")?);
        let properties = Arc::new(
            WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_created_by(format!("silt {}", env!("CARGO_PKG_VERSION")))
                .build(),
        );
        Ok(ParquetSink {
            writer: SerializedFileWriter::new(file, schema, properties)?,
            partition,
            columns: Columns::default(),
            records: 0,
        })
    }

    fn push(&mut self, record: &Record) -> Result<()> {
        let c = &mut self.columns;
        c.offset.push(record.offset);
        c.timestamp.push(record.timestamp);
        optional(&mut c.key, &mut c.key_def, record.key.as_ref(), 1);
        optional(&mut c.value, &mut c.value_def, record.value.as_ref(), 1);
        c.bytes += record.key.as_ref().map_or(0, Bytes::len)
            + record.value.as_ref().map_or(0, Bytes::len);
        if record.headers.is_empty() {
            // An empty list: defined up to `headers`, nothing below.
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
            optional(&mut c.header_value, &mut c.header_value_def, value.as_ref(), 2);
            c.bytes += key.len() + value.as_ref().map_or(0, Bytes::len);
        }
        self.records += 1;
        if c.bytes >= ROW_GROUP_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the buffered rows as one row group.
    fn flush(&mut self) -> Result<()> {
        let c = std::mem::take(&mut self.columns);
        if c.offset.is_empty() {
            return Ok(());
        }
        let partitions = vec![self.partition; c.offset.len()];
        let mut group = self.writer.next_row_group()?;
        let mut index = 0;
        while let Some(mut column) = group.next_column()? {
            match index {
                0 => column
                    .typed::<Int32Type>()
                    .write_batch(&partitions, None, None)?,
                1 => column
                    .typed::<Int64Type>()
                    .write_batch(&c.offset, None, None)?,
                2 => column
                    .typed::<Int64Type>()
                    .write_batch(&c.timestamp, None, None)?,
                3 => column
                    .typed::<ByteArrayType>()
                    .write_batch(&c.key, Some(&c.key_def), None)?,
                4 => column
                    .typed::<ByteArrayType>()
                    .write_batch(&c.value, Some(&c.value_def), None)?,
                5 => column.typed::<ByteArrayType>().write_batch(
                    &c.header_key,
                    Some(&c.header_key_def),
                    Some(&c.header_rep),
                )?,
                6 => column.typed::<ByteArrayType>().write_batch(
                    &c.header_value,
                    Some(&c.header_value_def),
                    Some(&c.header_rep),
                )?,
                other => bail!("the Parquet schema has a column {other} the writer does not know"),
            };
            column.close()?;
            index += 1;
        }
        group.close()?;
        Ok(())
    }

    /// Writes what is left and the footer; the file and the records written.
    fn finish(mut self) -> Result<(File, u64)> {
        self.flush()?;
        let file = self.writer.into_inner()?;
        Ok((file, self.records))
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
