//! `silt archive export`: archived segments as Parquet files in Hive-style paths
//! (`topic=T/partition=P/date=YYYY-MM-DD/<base>-<last>-<object>.parquet`, see
//! [`silt_archiver::parquet`]), one file per segment, so an export is incremental (segments
//! already exported, by this command or by the archiver of a topic with `archive.parquet`, are
//! skipped) and DuckDB, Spark or Trino read the prefix as one table.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use object_store::path::Path;
use silt_archiver::parquet::{self, JsonColumns, ParquetWriter};
use silt_archiver::remote::Remote;
use silt_archiver::{
    Archive, ArchiveError, ManifestReader, ReaderConfig, RemoteReader, Root, keys,
};
use silt_index::manifest::SegmentEntry;

use crate::archive::topics;
use crate::archive_find::parse_time;

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
    /// A JSON Schema of the values (`{"properties": {"amount": {"type": "number"}, ...}}`):
    /// each top-level property becomes a typed column beside `value`.
    #[arg(long)]
    json_schema: Option<PathBuf>,
    /// Segments exported at once.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
}

/// What an export did.
#[derive(Debug, Default)]
struct Tally {
    files: u64,
    skipped: u64,
    records: u64,
    not_json: u64,
    /// Bytes of the segments exported (not those skipped).
    segment_bytes: u64,
    parquet_bytes: u64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.files += other.files;
        self.skipped += other.skipped;
        self.records += other.records;
        self.not_json += other.not_json;
        self.segment_bytes += other.segment_bytes;
        self.parquet_bytes += other.parquet_bytes;
    }
}

/// One segment to export.
struct Job {
    reader: Arc<RemoteReader>,
    manifest: ManifestReader,
    root: Root,
    target: Remote,
    key: Path,
    entry: SegmentEntry,
    json: JsonColumns,
    scratch: PathBuf,
}

impl Job {
    /// Writes the segment's file; what it did.
    async fn run(self) -> Result<Tally> {
        let segment_bytes = self.entry.meta.size_bytes;
        let scratch = tempfile::tempfile_in(&self.scratch).context("a scratch file")?;
        let id = self.manifest.id();
        let mut sink = ParquetWriter::with_json(scratch, id.partition, self.json)?;
        let mut failed = None;
        keys::each_record(
            &self.reader,
            &self.manifest,
            &self.root,
            &self.entry,
            &mut |record| {
                if failed.is_none()
                    && let Err(e) = sink.push(&record)
                {
                    failed = Some(e);
                }
            },
        )
        .await
        .with_context(|| format!("reading {id} at {}", self.entry.meta.base_offset))?;
        if let Some(e) = failed {
            return Err(e.into());
        }
        let (records, not_json) = (sink.records(), sink.not_json());
        let parquet_bytes = parquet::upload(&self.target, &self.key, sink.finish()?).await?;
        Ok(Tally {
            files: 1,
            records,
            not_json,
            segment_bytes,
            parquet_bytes,
            ..Tally::default()
        })
    }
}

/// Runs `silt archive export`.
pub(crate) async fn export(archive: &Archive, args: ExportArgs) -> Result<()> {
    let ExportFormat::Parquet = args.format;
    let since = args.since.as_deref().map(parse_time).transpose()?;
    let until = args.until.as_deref().map(parse_time).transpose()?;
    let target = Remote::open(&args.to).with_context(|| format!("opening {}", args.to))?;
    let json = match &args.json_schema {
        Some(path) => {
            let text =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let schema: serde_json::Value = serde_json::from_slice(&text)
                .with_context(|| format!("{} is not JSON", path.display()))?;
            JsonColumns::from_schema(&schema).with_context(|| path.display().to_string())?
        }
        None => JsonColumns::default(),
    };
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
    let mut roots = HashMap::new();
    for partition in (0..topic.partitions).filter(|p| args.partition.is_none_or(|only| only == *p))
    {
        let manifest = reader.manifest(topic.partition_id(partition));
        let root = manifest.latest_root().await?;
        roots.insert(partition, root.clone());
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
    // The files already there, in one listing rather than a HEAD per segment.
    let topic_dir = target
        .prefix()
        .clone()
        .join(format!("topic={}", topic.name));
    let exported: HashSet<Path> = match target.list(&topic_dir, None).await {
        Ok(found) => found.into_iter().map(|m| m.location).collect(),
        Err(ArchiveError::NotFound(_)) => HashSet::new(),
        Err(e) => return Err(e).with_context(|| format!("listing {topic_dir}")),
    };
    // Segments side by side: each one's GETs wait on the store while another's records are
    // encoded.
    let mut plan = plan.into_iter();
    let mut running = tokio::task::JoinSet::new();
    loop {
        while running.len() < args.parallel.max(1)
            && let Some((partition, entry)) = plan.next()
        {
            let key = parquet::file_key(
                target.prefix(),
                &topic.name,
                partition,
                entry.meta.first_timestamp,
                (
                    entry.meta.base_offset,
                    entry.meta.last_offset,
                    entry.object_id,
                ),
            );
            if exported.contains(&key) {
                tally.skipped += 1;
                bar.inc(entry.meta.size_bytes);
                continue;
            }
            let job = Job {
                reader: reader.clone(),
                manifest: reader.manifest(topic.partition_id(partition)),
                root: roots[&partition].clone(),
                target: target.clone(),
                key,
                entry,
                json: json.clone(),
                scratch: cache.path().to_path_buf(),
            };
            running.spawn(job.run());
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        let done = done.context("an export task failed")??;
        tally.add(&done);
        bar.inc(done.segment_bytes);
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
    if !json.fields().is_empty() {
        println!(
            "{} of {} values were not JSON objects: their decoded columns are null",
            tally.not_json, tally.records
        );
    }
    Ok(())
}
