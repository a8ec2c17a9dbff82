//! The manifest at a million segments: how many objects a lookup reads, and that memory stays
//! bounded while it is built and searched.
//!
//! Envelope: with 1024 entries per node, a million segments are 1024 leaves under one root of
//! 1024 children: depth 2, so a lookup by offset or by time reads at most 2 nodes of ~74 KB
//! (one, when the root is cached). The writer keeps one node per level; readers share a cache of
//! fixed size. Neither depends on the segment count.
//!
//! Run: `cargo bench -p silt-archiver --bench manifest` (local directory store under target/).
#![allow(clippy::unwrap_used)] // a benchmark: any failure should stop it loudly

use std::time::Instant;

use silt_archiver::manifest::Manifest;
use silt_archiver::remote::RemoteMetrics;
use silt_archiver::{Archive, ArchiveConfig, PartitionId};
use silt_index::manifest::SegmentEntry;
use silt_index::segment::SegmentMeta;

const SEGMENTS: i64 = 1_000_000;
const CACHE_BYTES: u64 = 4 << 20;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn entry(i: i64) -> SegmentEntry {
    SegmentEntry {
        meta: SegmentMeta {
            base_offset: i * 1000,
            last_offset: i * 1000 + 999,
            first_timestamp: 1_700_000_000_000 + i * 60_000,
            max_timestamp: 1_700_000_000_000 + i * 60_000 + 59_999,
            record_count: 1000,
            size_bytes: 1 << 30,
            leader_epoch: 0,
            crc32c: i as u32,
        },
        uploaded_ms: 1,
        object_id: i as u64,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-tmp/manifest-bench");
    let _ = std::fs::remove_dir_all(&dir);
    let target = dir.display().to_string();
    let id = PartitionId {
        topic: "bench".into(),
        topic_id: uuid::Uuid::from_u128(1),
        partition: 0,
    };
    let archive = Archive::open(
        &target,
        "writer".into(),
        ArchiveConfig {
            node_cache_bytes: CACHE_BYTES,
            ..ArchiveConfig::default()
        },
    )
    .unwrap();
    let rss_start = rss_kib();
    let start = Instant::now();
    let mut manifest = Manifest::load(archive.reader(id.clone()), "writer".into())
        .await
        .unwrap();
    let mut i = 0;
    let mut rss_peak = 0;
    while i < SEGMENTS {
        // Commits of 10,000 segments: a busy partition's backlog, or a restore.
        for _ in 0..10_000 {
            manifest.append(entry(i));
            i += 1;
        }
        manifest.commit(1).await.unwrap();
        rss_peak = rss_peak.max(rss_kib());
    }
    let root = manifest.root().clone();
    println!(
        "built a manifest of {} segments ({} internal level(s) above the leaves) in {:.1}s; process RSS {} MiB -> peak {} MiB while building",
        root.segments,
        root.depth,
        start.elapsed().as_secs_f64(),
        rss_start / 1024,
        rss_peak / 1024
    );
    drop(manifest);

    // A fresh reader with a small cache: what a broker serving reads would see.
    let reader_archive = Archive::open(
        &target,
        "reader".into(),
        ArchiveConfig {
            node_cache_bytes: CACHE_BYTES,
            ..ArchiveConfig::default()
        },
    )
    .unwrap();
    let reader = reader_archive.reader(id);
    let gets = |a: &Archive| RemoteMetrics::get(&a.remote().metrics().gets);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let lookups = 2_000;
    let (mut max_gets, mut total_gets) = (0, 0);
    let start = Instant::now();
    for _ in 0..lookups {
        let offset = (next() % (SEGMENTS as u64 * 1000)) as i64;
        let before = gets(&reader_archive);
        let found = reader.find_offset(&root, offset).await.unwrap().unwrap();
        assert_eq!(found.meta.base_offset, offset / 1000 * 1000);
        let used = gets(&reader_archive) - before;
        max_gets = max_gets.max(used);
        total_gets += used;
    }
    let by_offset = start.elapsed().as_secs_f64() / lookups as f64;
    let (mut max_ts_gets, mut total_ts_gets) = (0, 0);
    for _ in 0..lookups {
        let segment = (next() % SEGMENTS as u64) as i64;
        let timestamp = 1_700_000_000_000 + segment * 60_000 + 30_000;
        let before = gets(&reader_archive);
        let found = reader
            .find_timestamp(&root, timestamp)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.meta.base_offset, segment * 1000);
        let used = gets(&reader_archive) - before;
        max_ts_gets = max_ts_gets.max(used);
        total_ts_gets += used;
    }
    println!(
        "{lookups} random lookups by offset: at most {max_gets} GETs each, {:.2} on average, {:.2} ms each",
        total_gets as f64 / lookups as f64,
        by_offset * 1000.0
    );
    println!(
        "{lookups} random lookups by timestamp: at most {max_ts_gets} GETs each, {:.2} on average",
        total_ts_gets as f64 / lookups as f64
    );
    println!(
        "node cache {} KiB (bound {} KiB); process RSS {} MiB",
        reader_archive.cache().bytes() / 1024,
        CACHE_BYTES / 1024,
        rss_kib() / 1024
    );
    let _ = std::fs::remove_dir_all(&dir);
}
