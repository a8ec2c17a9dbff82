//! `silt archive ...`: look at and check an archive directly in its bucket (no broker needed).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use silt_archiver::{Archive, ArchiveConfig, PartitionId, Root, TopicCatalog};
use silt_index::manifest::SegmentEntry;
use silt_index::sidecar::Sidecar;

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
    }
}

async fn topics(archive: &Archive, only: Option<&str>) -> Result<Vec<TopicCatalog>> {
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

fn pid(topic: &TopicCatalog, partition: i32) -> PartitionId {
    PartitionId {
        topic: topic.name.clone(),
        topic_id: topic.id,
        partition,
    }
}

fn when(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days since the epoch to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
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
        "{:<24} {:>4} {:>9} {:>14} {:>14} {:>14} {:<21} {:<21} LAST-UPLOAD",
        "TOPIC", "PART", "SEGMENTS", "START", "END", "BYTES", "FIRST-TIME", "LAST-TIME"
    );
    for topic in topics(archive, only).await? {
        for partition in 0..topic.partitions {
            let reader = archive.reader(pid(&topic, partition));
            let root = reader
                .latest_root()
                .await
                .with_context(|| format!("manifest of {}/{partition}", topic.name))?;
            let (first_time, last_upload) = summary(&reader, &root).await?;
            println!(
                "{:<24} {:>4} {:>9} {:>14} {:>14} {:>14} {:<21} {:<21} {}",
                topic.name,
                partition,
                root.segments,
                root.start_offset,
                root.next_offset,
                root.bytes,
                when(first_time),
                when(root.max_timestamp),
                when(last_upload)
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
    let mut faults: Vec<String> = Vec::new();
    // First pass: read every manifest, to know how much there is to check.
    let mut plan: Vec<(PartitionId, Root, Vec<SegmentEntry>)> = Vec::new();
    for topic in topics(archive, only).await? {
        for partition in 0..topic.partitions {
            let id = pid(&topic, partition);
            let reader = archive.reader(id.clone());
            let root = match reader.latest_root().await {
                Ok(root) => root,
                Err(e) => {
                    faults.push(format!("{id}: manifest root: {e}"));
                    continue;
                }
            };
            let mut entries = Vec::new();
            if let Err(e) = reader
                .walk(
                    &root,
                    &mut |e| {
                        entries.push(*e);
                        true
                    },
                    &mut |_| {},
                )
                .await
            {
                faults.push(format!("{id}: manifest nodes: {e}"));
                continue;
            }
            check_manifest(&id, &root, &entries, &mut faults);
            plan.push((id, root, entries));
        }
    }
    let total: u64 = plan
        .iter()
        .flat_map(|(_, _, entries)| entries.iter().map(|e| e.meta.size_bytes))
        .sum();
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {bytes}/{total_bytes} ({bytes_per_sec}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut segments = 0u64;
    for (id, _, entries) in &plan {
        let reader = archive.reader(id.clone());
        for entry in entries {
            bar.set_message(format!("{id} @{}", entry.meta.base_offset));
            check_segment(archive, &reader, id, entry, &mut faults).await;
            segments += 1;
            bar.inc(entry.meta.size_bytes);
        }
    }
    bar.finish_and_clear();
    if faults.is_empty() {
        println!(
            "archive {}: {} partitions, {segments} segments, {total} bytes: all good",
            archive.remote().description(),
            plan.len()
        );
        return Ok(());
    }
    for fault in &faults {
        println!("FAULT {fault}");
    }
    bail!(
        "{} fault(s) in the archive {}",
        faults.len(),
        archive.remote().description()
    )
}

fn check_manifest(
    id: &PartitionId,
    root: &Root,
    entries: &[SegmentEntry],
    faults: &mut Vec<String>,
) {
    if entries.len() as u64 != root.segments {
        faults.push(format!(
            "{id}: the root says {} segments, the tree holds {}",
            root.segments,
            entries.len()
        ));
    }
    let bytes: u64 = entries.iter().map(|e| e.meta.size_bytes).sum();
    if bytes != root.bytes {
        faults.push(format!(
            "{id}: the root says {} bytes, the tree holds {bytes}",
            root.bytes
        ));
    }
    let mut expected: Option<i64> = None;
    for entry in entries {
        if let Some(next) = expected
            && entry.meta.base_offset != next
        {
            faults.push(format!(
                "{id}: segment at {} does not follow the previous one ending at {}",
                entry.meta.base_offset,
                next - 1
            ));
        }
        expected = Some(entry.meta.last_offset + 1);
    }
    if let Some(first) = entries.first()
        && (first.meta.base_offset > root.start_offset
            || first.meta.last_offset < root.start_offset)
    {
        faults.push(format!(
            "{id}: the first segment [{}, {}] does not hold the start offset {}",
            first.meta.base_offset, first.meta.last_offset, root.start_offset
        ));
    }
    if let Some(end) = expected
        && end != root.next_offset
    {
        faults.push(format!(
            "{id}: the last segment ends at {} but the root says the archive ends at {}",
            end - 1,
            root.next_offset
        ));
    }
}

async fn check_segment(
    archive: &Archive,
    reader: &silt_archiver::ManifestReader,
    id: &PartitionId,
    entry: &SegmentEntry,
    faults: &mut Vec<String>,
) {
    let key = reader.segment_key(entry);
    match archive.remote().get(&key).await {
        Err(e) => faults.push(format!("{id}: segment {key}: {e}")),
        Ok(bytes) => {
            if bytes.len() as u64 != entry.meta.size_bytes {
                faults.push(format!(
                    "{id}: segment {key} is {} bytes, the manifest says {}",
                    bytes.len(),
                    entry.meta.size_bytes
                ));
            }
            let crc = crc32c::crc32c(&bytes);
            if crc != entry.meta.crc32c {
                faults.push(format!(
                    "{id}: segment {key} has CRC-32C {crc:08x}, the manifest says {:08x}",
                    entry.meta.crc32c
                ));
            }
            let scan = silt_index::batch::scan(&bytes, u32::MAX, true);
            if scan.stop.is_some() {
                faults.push(format!(
                    "{id}: segment {key} holds an invalid batch at byte {}: {:?}",
                    scan.valid_bytes, scan.stop
                ));
            }
        }
    }
    let key = reader.sidecar_key(entry);
    match archive.remote().get(&key).await {
        Err(e) => faults.push(format!("{id}: sidecar {key}: {e}")),
        Ok(bytes) => match Sidecar::decode(&bytes) {
            Err(e) => faults.push(format!("{id}: sidecar {key}: {e}")),
            Ok(sidecar) if sidecar.meta != entry.meta => {
                faults.push(format!(
                    "{id}: sidecar {key} describes {:?}, the manifest {:?}",
                    sidecar.meta, entry.meta
                ));
            }
            Ok(_) => {}
        },
    }
}
