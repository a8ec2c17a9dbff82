//! Archive throughput beside the raw PUT bandwidth of the same store with the same client
//! library (object_store), in one run; and object-store requests per GB archived.
//!
//! Envelope: archiving a segment is its bytes (multipart PUTs), a sidecar PUT, one or two node
//! PUTs and a root PUT, plus deletes of the replaced nodes and the root two versions back: a
//! handful of small requests per segment, so with 64 MiB segments the bytes dominate and the
//! archive should run close to raw PUT speed (the bar is 80%).
//!
//! Run: `bench/archive.sh` (starts moto's S3 server), or set SILT_BENCH_ARCHIVE to any archive
//! target (a directory, s3://bucket/prefix with AWS_* variables).
#![allow(clippy::unwrap_used)] // a benchmark: any failure should stop it loudly

use std::path::Path as FsPath;
use std::time::Instant;

use bytes::Bytes;
use silt_archiver::remote::RemoteMetrics;
use silt_archiver::{Archive, ArchiveConfig, PartitionId, SealedSegment};
use silt_index::batch::Codec;
use silt_index::record::{NewRecord, encode_batch};

const SEGMENT_BYTES: usize = 64 << 20;
const SEGMENTS_PER_ROUND: usize = 2;
const PARTITIONS: usize = 4;
const ROUNDS: usize = 3;

/// A segment file of about `SEGMENT_BYTES` of 64 KiB batches of incompressible data.
fn write_segment(path: &FsPath, base: i64) -> SealedSegment {
    let mut bytes = Vec::with_capacity(SEGMENT_BYTES + (1 << 20));
    let mut offset = base;
    let mut seed = base as u64 | 1;
    while bytes.len() < SEGMENT_BYTES {
        let value: Vec<u8> = (0..64 * 1024)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let record = NewRecord {
            value: Some(Bytes::from(value)),
            timestamp: 1_700_000_000_000,
            ..Default::default()
        };
        bytes.extend(encode_batch(offset, &[record], Codec::None, None));
        offset += 1;
    }
    std::fs::write(path, &bytes).unwrap();
    SealedSegment {
        base_offset: base,
        next_offset: offset,
        size_bytes: bytes.len() as u64,
        path: path.to_path_buf(),
        start_position: 0,
        aborted: Vec::new(),
    }
}

fn mb(rate: f64) -> String {
    format!("{:8.1} MB/s", rate / 1e6)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let target = std::env::var("SILT_BENCH_ARCHIVE").unwrap_or_else(|_| {
        let dir = FsPath::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-tmp/archive-bench");
        let _ = std::fs::remove_dir_all(&dir);
        dir.display().to_string()
    });
    let work =
        tempfile::tempdir_in(FsPath::new(env!("CARGO_MANIFEST_DIR")).join("../target")).unwrap();
    let archive = Archive::open(&target, "bench".into(), ArchiveConfig::default()).unwrap();
    let remote = archive.remote().clone();
    println!(
        "archive benchmark against {} ({PARTITIONS} partitions, {} MiB segments, {ROUNDS} alternating rounds)",
        remote.description(),
        SEGMENT_BYTES >> 20
    );
    // Segment files, written once and uploaded round after round (each round as new offsets of
    // a new topic, so every round is a fresh archive).
    let mut files = Vec::new();
    for p in 0..PARTITIONS {
        let mut base = 0;
        let mut segments = Vec::new();
        for s in 0..SEGMENTS_PER_ROUND {
            let segment = write_segment(&work.path().join(format!("p{p}-s{s}.log")), base);
            base = segment.next_offset;
            segments.push(segment);
        }
        files.push(segments);
    }
    let bytes_per_round: u64 = files.iter().flatten().map(|s| s.size_bytes).sum();
    let (mut raw_rates, mut archive_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut requests = 0u64;
    let mut archived_bytes = 0u64;
    let contents: Vec<Vec<Bytes>> = files
        .iter()
        .map(|segments| {
            segments
                .iter()
                .map(|s| Bytes::from(std::fs::read(&s.path).unwrap()))
                .collect()
        })
        .collect();
    for round in 0..ROUNDS {
        // Raw: the same bytes (already in memory, so the raw side reads no disk), the same
        // client, multipart PUTs of the same part size, the same concurrency.
        let raw_round = |round: usize| {
            let remote = remote.clone();
            let contents = contents.clone();
            async move {
                let start = Instant::now();
                let mut tasks = Vec::new();
                for (p, segments) in contents.iter().enumerate() {
                    let remote = remote.clone();
                    let segments = segments.clone();
                    tasks.push(tokio::spawn(async move {
                        for (s, data) in segments.iter().enumerate() {
                            let key =
                                object_store::path::Path::from(format!("raw/r{round}/p{p}/s{s}"));
                            let mut upload =
                                remote.multipart(&key, data.len() as u64).await.unwrap();
                            let mut at = 0;
                            while at < data.len() {
                                let end = (at + upload.part_bytes()).min(data.len());
                                upload.write(data.slice(at..end)).await.unwrap();
                                at = end;
                            }
                            upload.finish().await.unwrap();
                        }
                    }));
                }
                for task in tasks {
                    task.await.unwrap();
                }
                bytes_per_round as f64 / start.elapsed().as_secs_f64()
            }
        };
        // Archive: upload + sidecar + manifest commit, per partition in offset order.
        let archive_round = |round: usize| {
            let archive = archive.clone();
            let files = files.clone();
            async move {
                let count = || {
                    let m = archive.remote().metrics();
                    [&m.gets, &m.puts, &m.deletes, &m.lists, &m.heads]
                        .map(RemoteMetrics::get)
                        .iter()
                        .sum::<u64>()
                };
                let requests_before = count();
                let start = Instant::now();
                let mut tasks = Vec::new();
                for (p, segments) in files.iter().enumerate() {
                    let archive = archive.clone();
                    let segments = segments.clone();
                    tasks.push(tokio::spawn(async move {
                        let id = PartitionId {
                            topic: format!("bench-{round}"),
                            topic_id: uuid::Uuid::new_v4(),
                            partition: p as i32,
                        };
                        let mut partition = archive.partition(id).await.unwrap();
                        for segment in &segments {
                            partition.upload(segment, 1).await.unwrap();
                        }
                    }));
                }
                for task in tasks {
                    task.await.unwrap();
                }
                (
                    bytes_per_round as f64 / start.elapsed().as_secs_f64(),
                    count() - requests_before,
                )
            }
        };
        // Alternate which side goes first, so a store that slows (or warms) as it fills does
        // not favour one side.
        let ((rate, used), raw) = if round % 2 == 0 {
            let raw = raw_round(round).await;
            (archive_round(round).await, raw)
        } else {
            let archived = archive_round(round).await;
            (archived, raw_round(round).await)
        };
        requests += used;
        archived_bytes += bytes_per_round;
        println!("  round {round}: raw PUT {} archive {}", mb(raw), mb(rate));
        raw_rates.push(raw);
        archive_rates.push(rate);
        ratios.push(rate / raw);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    println!(
        "raw PUT (multipart, 16 MiB parts)   {}",
        mb(median(raw_rates))
    );
    println!(
        "archive (segment + sidecar + manifest) {}   {:.0}% of raw",
        mb(median(archive_rates)),
        100.0 * median(ratios)
    );
    println!(
        "object-store requests per GB archived: {:.0}",
        requests as f64 / (archived_bytes as f64 / 1e9)
    );
}
