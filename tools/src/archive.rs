//! `silt archive ...`: look at and check an archive directly in its bucket (no broker needed).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use silt_archiver::{Archive, ArchiveConfig, Root, TopicCatalog};

/// Archive commands.
#[derive(Debug, Subcommand)]
pub(crate) enum ArchiveCommand {
    /// Per partition: segments, offset and time ranges, bytes, last upload.
    #[command(alias = "list")]
    Ls {
        /// Only this topic.
        topic: Option<String>,
    },
    /// Check every object: present, sizes and CRCs as the manifest says, sidecars consistent,
    /// offsets contiguous. Exits non-zero on any fault.
    Verify {
        /// Only this topic.
        topic: Option<String>,
    },
    /// Records with a key, straight from the bucket through the key indexes beside archived
    /// segments (topics with archive.key.index=true; segments without one are read whole).
    Find(crate::archive_find::FindArgs),
    /// Write archived segments as Parquet files (columns partition, offset, timestamp, key,
    /// value, headers) under Hive-style paths, one file per segment: incremental, and read
    /// as one table by DuckDB, Spark or Trino. Aborted transactional records are left out.
    Export(crate::archive_export::ExportArgs),
    /// Write key indexes for archived segments that have none (archived before the topic
    /// turned archive.key.index on), and key filters over them.
    Index {
        /// The topic.
        topic: String,
        /// Only this partition.
        #[arg(long)]
        partition: Option<i32>,
    },
    /// Measure the store's raw bandwidth with the client silt uses (multipart PUTs, whole and
    /// ranged GETs) on scratch objects under `<prefix>/_silt/bench/`, deleted afterwards: the
    /// limit that archive uploads and reads are compared against.
    Bench {
        /// Objects to write and read.
        #[arg(long, default_value_t = 8)]
        objects: usize,
        /// Size of each object, in MiB.
        #[arg(long, default_value_t = 64)]
        object_mib: u64,
        /// Size of ranged GETs, in MiB (silt's archive_chunk_bytes).
        #[arg(long, default_value_t = 4)]
        chunk_mib: u64,
        /// Requests at once.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Where the archive is.
#[derive(Debug, clap::Args)]
pub(crate) struct ArchiveArgs {
    /// The archive: a directory, file:///dir, s3://bucket/prefix (AWS_* variables apply), ...
    #[arg(
        long,
        default_value = "./silt-data/archive",
        env = "SILT_ARCHIVE",
        global = true
    )]
    archive: String,
}

/// Runs an archive command.
pub(crate) async fn run(command: ArchiveCommand, args: &ArchiveArgs) -> Result<()> {
    let archive = Archive::open(
        &args.archive,
        format!("silt-cli/{}", uuid::Uuid::new_v4()),
        ArchiveConfig::default(),
    )
    .with_context(|| format!("opening the archive {}", args.archive))?;
    match command {
        ArchiveCommand::Ls { topic } => ls(&archive, topic.as_deref()).await,
        ArchiveCommand::Verify { topic } => verify(&archive, topic.as_deref()).await,
        ArchiveCommand::Find(args) => crate::archive_find::find(&archive, args).await,
        ArchiveCommand::Export(args) => crate::archive_export::export(&archive, args).await,
        ArchiveCommand::Index { topic, partition } => {
            crate::archive_find::index(&archive, &topic, partition).await
        }
        ArchiveCommand::Bench {
            objects,
            object_mib,
            chunk_mib,
            concurrency,
            json,
        } => {
            let plan = BenchPlan {
                objects: objects.max(1),
                object_bytes: (object_mib.max(1)) << 20,
                chunk_bytes: (chunk_mib.max(1)) << 20,
                concurrency: concurrency.max(1),
            };
            bench(&archive, &plan, json).await
        }
    }
}

pub(crate) async fn topics(archive: &Archive, only: Option<&str>) -> Result<Vec<TopicCatalog>> {
    let topics: Vec<TopicCatalog> = archive
        .topics()
        .await
        .context("reading the topic catalog")?
        .into_iter()
        .filter(|t| only.is_none_or(|name| t.name == name))
        .collect();
    if let Some(name) = only
        && topics.is_empty()
    {
        bail!("topic '{name}' is not in the archive");
    }
    Ok(topics)
}

pub(crate) fn when(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    let rest = (ms / 1000) % 86_400;
    let (year, month, day) = silt_archiver::parquet::civil_date(ms);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

async fn ls(archive: &Archive, only: Option<&str>) -> Result<()> {
    println!("archive {}", archive.remote().description());
    println!(
        "{:<24} {:>4} {:>9} {:>14} {:>14} {:>14} {:<21} {:<21} {:<21} {:>6} WRITER",
        "TOPIC",
        "PART",
        "SEGMENTS",
        "START",
        "END",
        "BYTES",
        "FIRST-TIME",
        "LAST-TIME",
        "LAST-UPLOAD",
        "TERM"
    );
    for topic in topics(archive, only).await? {
        for partition in 0..topic.partitions {
            let reader = archive.reader(topic.partition_id(partition));
            let root = reader
                .latest_root()
                .await
                .with_context(|| format!("manifest of {}/{partition}", topic.name))?;
            let (first_time, last_upload) = summary(&reader, &root).await?;
            // The writer as `cluster/node/incarnation`: the node is the partition's leader that
            // wrote the last root, at that term.
            let writer = root.writer.split('/').take(2).collect::<Vec<_>>().join("/");
            println!(
                "{:<24} {:>4} {:>9} {:>14} {:>14} {:>14} {:<21} {:<21} {:<21} {:>6} {}",
                topic.name,
                partition,
                root.segments,
                root.start_offset,
                root.next_offset,
                root.bytes,
                when(first_time),
                when(root.max_timestamp),
                when(last_upload),
                root.term,
                if writer.is_empty() { "-" } else { &writer }
            );
        }
    }
    Ok(())
}

/// First timestamp (of the first segment) and time of the last upload (of the last).
async fn summary(reader: &silt_archiver::ManifestReader, root: &Root) -> Result<(i64, i64)> {
    if root.is_empty() {
        return Ok((-1, -1));
    }
    let first = reader.find_offset(root, root.start_offset).await?;
    let last = reader.find_offset(root, root.next_offset - 1).await?;
    Ok((
        first.map_or(-1, |e| e.meta.first_timestamp),
        last.map_or(-1, |e| e.uploaded_ms),
    ))
}

async fn verify(archive: &Archive, only: Option<&str>) -> Result<()> {
    let topics = topics(archive, only).await?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {bytes}/{total_bytes} ({bytes_per_sec}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let done = silt_archiver::verify::verify(archive, &topics, &mut |p| {
        bar.set_length(p.counts.bytes_total);
        bar.set_position(p.counts.bytes);
        bar.set_message(p.at.clone());
    })
    .await;
    bar.finish_and_clear();
    if done.faults.is_empty() {
        println!(
            "archive {}: {} partitions, {} segments, {} bytes: all good",
            archive.remote().description(),
            done.counts.partitions,
            done.counts.segments,
            done.counts.bytes
        );
        return Ok(());
    }
    for fault in &done.faults {
        println!("FAULT {fault}");
    }
    bail!(
        "{} fault(s) in the archive {}",
        done.faults.len(),
        archive.remote().description()
    )
}

struct BenchPlan {
    objects: usize,
    object_bytes: u64,
    chunk_bytes: u64,
    concurrency: usize,
}

/// Raw PUT and GET bandwidth of the store.
async fn bench(archive: &Archive, plan: &BenchPlan, json: bool) -> Result<()> {
    use futures::StreamExt;
    use object_store::path::Path;

    let remote = archive.remote().clone();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let base = archive.layout().bench_dir(&run);
    let keys: Vec<Path> = (0..plan.objects)
        .map(|i| base.clone().join(format!("{i}")))
        .collect();
    // Incompressible bytes (a store or proxy that compresses must not flatter the figure).
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let data: bytes::Bytes = (0..plan.object_bytes)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect::<Vec<u8>>()
        .into();
    let total = plan.object_bytes * plan.objects as u64;
    let bar = |what: &str| {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {msg} {bar:40} {bytes}/{total_bytes} ({bytes_per_sec})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(what.to_string());
        bar
    };

    let progress = bar("PUT (multipart)");
    let started = std::time::Instant::now();
    let puts = futures::stream::iter(keys.iter().cloned().map(|key| {
        let (remote, data, progress) = (remote.clone(), data.clone(), progress.clone());
        async move {
            let mut upload = remote.multipart(&key, data.len() as u64).await?;
            let mut at = 0;
            while at < data.len() {
                let end = (at + upload.part_bytes()).min(data.len());
                upload.write(data.slice(at..end)).await?;
                progress.inc((end - at) as u64);
                at = end;
            }
            upload.finish().await
        }
    }))
    .buffer_unordered(plan.concurrency)
    .collect::<Vec<_>>()
    .await;
    let put_rate = total as f64 / started.elapsed().as_secs_f64();
    progress.finish_and_clear();
    let outcome = async {
        for put in puts {
            put.context("PUT of a scratch object")?;
        }
        let progress = bar("GET (whole objects, one at a time)");
        let started = std::time::Instant::now();
        for key in &keys {
            let got = remote.get(key).await.context("GET of a scratch object")?;
            if got != data {
                bail!("the store returned different bytes for {key}");
            }
            progress.inc(got.len() as u64);
        }
        let get_rate = total as f64 / started.elapsed().as_secs_f64();
        progress.finish_and_clear();

        let progress = bar("GET (ranged chunks)");
        let ranges: Vec<(Path, std::ops::Range<u64>)> = keys
            .iter()
            .flat_map(|key| {
                (0..plan.object_bytes.div_ceil(plan.chunk_bytes)).map(move |c| {
                    let start = c * plan.chunk_bytes;
                    (
                        key.clone(),
                        start..(start + plan.chunk_bytes).min(plan.object_bytes),
                    )
                })
            })
            .collect();
        let started = std::time::Instant::now();
        let gets = futures::stream::iter(ranges.into_iter().map(|(key, range)| {
            let (remote, progress) = (remote.clone(), progress.clone());
            async move {
                let got = remote.get_range(&key, range).await?;
                progress.inc(got.len() as u64);
                Ok::<u64, silt_archiver::ArchiveError>(got.len() as u64)
            }
        }))
        .buffer_unordered(plan.concurrency)
        .collect::<Vec<_>>()
        .await;
        let mut fetched = 0;
        for got in gets {
            fetched += got.context("ranged GET of a scratch object")?;
        }
        if fetched != total {
            bail!("ranged GETs returned {fetched} bytes of {total}");
        }
        let ranged_rate = total as f64 / started.elapsed().as_secs_f64();
        progress.finish_and_clear();
        Ok((get_rate, ranged_rate))
    }
    .await;
    for key in &keys {
        let _ = remote.delete(key).await;
    }
    let (get_rate, ranged_rate) = outcome?;
    let mb = |rate: f64| rate / 1e6;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "store": remote.description(),
                "bytes": total,
                "put_mb_s": mb(put_rate),
                "get_mb_s": mb(get_rate),
                "ranged_get_mb_s": mb(ranged_rate),
                "chunk_bytes": plan.chunk_bytes,
                "concurrency": plan.concurrency,
            })
        );
    } else {
        println!(
            "store {} ({} objects of {} MiB)",
            remote.description(),
            plan.objects,
            plan.object_bytes >> 20
        );
        println!(
            "PUT, multipart, {} at once      {:8.1} MB/s",
            plan.concurrency,
            mb(put_rate)
        );
        println!(
            "GET, whole objects, one at a time {:8.1} MB/s",
            mb(get_rate)
        );
        println!(
            "GET, {} MiB ranges, {} at once    {:8.1} MB/s",
            plan.chunk_bytes >> 20,
            plan.concurrency,
            mb(ranged_rate)
        );
    }
    Ok(())
}
