//! Checking an archive end to end: every partition's manifest tree against its root (segment
//! count, bytes, offsets contiguous from the start offset to the end), then every segment it
//! names (present, its size and CRC-32C as the manifest says, every batch valid) and every
//! sidecar (decodes, describes the same segment, leader epochs agreeing). Faults are collected,
//! never fatal: one bad object does not hide the others. Used by `silt archive verify` and the
//! admin API's `/v1/archive/verify`.

use silt_index::manifest::SegmentEntry;
use silt_index::sidecar::Sidecar;

use crate::{Archive, ManifestReader, PartitionId, Root, TopicCatalog};

/// How much a verification has checked, of how much.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Partitions whose manifests were read.
    pub partitions: u64,
    /// Segments checked so far.
    pub segments: u64,
    /// Segments to check in all.
    pub segments_total: u64,
    /// Segment bytes checked so far.
    pub bytes: u64,
    /// Segment bytes to check in all (known once every manifest is read).
    pub bytes_total: u64,
}

/// Where a verification is, for progress bars and the admin API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// How much is checked.
    pub counts: Counts,
    /// The partition and segment being checked.
    pub at: String,
    /// Faults found so far.
    pub faults: Vec<String>,
}

/// Checks the archived partitions of `topics`, calling `progress` as it goes (after the
/// manifests are read, then after each segment). Returns the final progress: its `faults`
/// are empty when all is well.
pub async fn verify(
    archive: &Archive,
    topics: &[TopicCatalog],
    progress: &mut (dyn FnMut(&Progress) + Send),
) -> Progress {
    let mut state = Progress::default();
    // First pass: every manifest, to know how much there is to check.
    let mut plan: Vec<(PartitionId, Vec<SegmentEntry>)> = Vec::new();
    for id in topics.iter().flat_map(TopicCatalog::partition_ids) {
        let reader = archive.reader(id.clone());
        let root = match reader.latest_root().await {
            Ok(root) => root,
            Err(e) => {
                state.faults.push(format!("{id}: manifest root: {e}"));
                continue;
            }
        };
        let entries = match reader.entries(&root).await {
            Ok(entries) => entries,
            Err(e) => {
                state.faults.push(format!("{id}: manifest nodes: {e}"));
                continue;
            }
        };
        check_manifest(&id, &root, &entries, &mut state.faults);
        state.counts.partitions += 1;
        state.counts.segments_total += entries.len() as u64;
        state.counts.bytes_total += entries.iter().map(|e| e.meta.size_bytes).sum::<u64>();
        plan.push((id, entries));
    }
    progress(&state);
    for (id, entries) in &plan {
        let reader = archive.reader(id.clone());
        for entry in entries {
            state.at = format!("{id} @{}", entry.meta.base_offset);
            check_segment(archive, &reader, id, entry, &mut state.faults).await;
            state.counts.segments += 1;
            state.counts.bytes += entry.meta.size_bytes;
            progress(&state);
        }
    }
    state.at.clear();
    state
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
    reader: &ManifestReader,
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
            Ok(sidecar)
                if sidecar.epochs.as_ref().is_some_and(|epochs| {
                    epochs.last().map(|&(epoch, _)| epoch.max(0)) != Some(entry.meta.leader_epoch)
                }) =>
            {
                faults.push(format!(
                    "{id}: sidecar {key} has leader epochs {:?}, but the manifest says the newest is {}",
                    sidecar.epochs.unwrap_or_default(),
                    entry.meta.leader_epoch
                ));
            }
            Ok(_) => {}
        },
    }
}
