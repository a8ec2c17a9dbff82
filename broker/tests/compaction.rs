//! Compaction of a partition's local log, through its public API, on the power-cut simulator:
//! what survives a pass, and that a power cut at any write of a pass loses nothing.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use bytes::Bytes;
use silt_broker::log::compactor::{CompactOptions, CompactionConfig, PassReport};
use silt_broker::log::sim::SimStorage;
use silt_broker::log::{Clock, Durability, LogConfig, PartitionLog, Storage};
use silt_index::batch::Codec;
use silt_index::record::{NewRecord, ProducerStamp, decode_records, encode_batch};

#[derive(Debug)]
struct ManualClock(AtomicI64);

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

const T0: i64 = 1_700_000_000_000;
const DAY: i64 = 24 * 3600 * 1000;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 2 * 1024,
        index_interval_bytes: 256,
        preallocate_bytes: 0,
        flush_interval_ms: 5,
        compaction: Some(CompactionConfig {
            delete_retention_ms: DAY,
            min_lag_ms: 0,
            max_lag_ms: i64::MAX,
            min_dirty_ratio: 0.5,
        }),
        ..LogConfig::default()
    }
}

fn open(storage: Arc<dyn Storage>, dir: &Path, clock: Arc<ManualClock>) -> PartitionLog {
    PartitionLog::open(
        storage,
        dir,
        config(),
        clock,
        &tokio::runtime::Handle::current(),
    )
    .unwrap()
}

/// One batch of (key, value) records, `None` values being tombstones.
fn batch(
    records: &[(String, Option<String>)],
    codec: Codec,
    producer: Option<ProducerStamp>,
) -> Bytes {
    let records: Vec<NewRecord> = records
        .iter()
        .map(|(k, v)| NewRecord {
            key: Some(Bytes::from(k.clone())),
            value: v.clone().map(Bytes::from),
            headers: vec![],
            timestamp: T0,
        })
        .collect();
    Bytes::from(encode_batch(0, &records, codec, producer))
}

/// Every record readable from the start: offset -> (key, value).
fn read_all(log: &PartitionLog) -> BTreeMap<i64, (String, Option<String>)> {
    let mut out = BTreeMap::new();
    let mut offset = log.log_start_offset();
    while offset < log.high_watermark() {
        let slice = log.read(offset, 64 * 1024).unwrap();
        let scan = silt_index::batch::scan(&slice.records, u32::MAX, true);
        assert!(scan.stop.is_none(), "whole, valid batches: {:?}", scan.stop);
        assert!(
            !scan.batches.is_empty(),
            "a read at {offset} returned nothing"
        );
        for (header, range) in scan.batches {
            if !header.is_control() {
                for record in decode_records(&slice.records[range], 1 << 20).unwrap() {
                    let key = String::from_utf8(record.key.unwrap().to_vec()).unwrap();
                    let value = record.value.map(|v| String::from_utf8(v.to_vec()).unwrap());
                    out.insert(record.offset, (key, value));
                }
            }
            offset = header.next_offset();
        }
    }
    out
}

/// Appends `updates` rounds of updates to `keys` keys (every fifth key deleted in the last
/// round), a few records per batch, mixed codecs; then seals everything. Returns what was
/// written: offset -> (key, value).
async fn fill(
    log: &PartitionLog,
    keys: usize,
    updates: usize,
) -> BTreeMap<i64, (String, Option<String>)> {
    let mut written = BTreeMap::new();
    let codecs = [
        Codec::None,
        Codec::Lz4,
        Codec::Zstd,
        Codec::Gzip,
        Codec::Snappy,
    ];
    let mut n = 0;
    for round in 0..updates {
        for chunk in (0..keys).collect::<Vec<_>>().chunks(3) {
            let records: Vec<(String, Option<String>)> = chunk
                .iter()
                .map(|k| {
                    let value = (round + 1 < updates || k % 5 != 0)
                        .then(|| format!("k{k}-r{round}-{}", "x".repeat(40)));
                    (format!("k{k}"), value)
                })
                .collect();
            let appended = log
                .append(
                    batch(&records, codecs[n % codecs.len()], None),
                    Durability::Durable,
                )
                .await
                .unwrap();
            for (i, record) in records.into_iter().enumerate() {
                written.insert(appended.base_offset + i as i64, record);
            }
            n += 1;
        }
    }
    log.roll_if_older(0).await.unwrap();
    written
}

/// The newest record of every key in `written`: offset -> (key, value).
fn newest(
    written: &BTreeMap<i64, (String, Option<String>)>,
) -> BTreeMap<i64, (String, Option<String>)> {
    let mut by_key: BTreeMap<&str, i64> = BTreeMap::new();
    for (offset, (key, _)) in written {
        by_key.insert(key, *offset);
    }
    by_key.values().map(|o| (*o, written[o].clone())).collect()
}

fn compact(log: &PartitionLog, key_map_bytes: u64) -> Option<PassReport> {
    let mut throttle = |_| {};
    log.compact_once(&mut CompactOptions {
        key_map_bytes,
        rewrite_below: i64::MAX,
        force: true,
        throttle: &mut throttle,
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_the_newest_of_every_key_at_its_offset_and_survives_a_restart() {
    let storage = SimStorage::new(1);
    let dir = PathBuf::from("/data/t/0");
    let clock = Arc::new(ManualClock(AtomicI64::new(T0)));
    let log = open(Arc::new(storage.clone()), &dir, clock.clone());
    let written = fill(&log, 30, 12).await;
    let segments_before = log.segments().len();
    let bytes_before = log.size_bytes();
    let end = log.high_watermark();

    // A map too small for every key: passes until the log is covered.
    let mut passes = 0;
    while let Some(report) = compact(&log, 40 * 12) {
        passes += 1;
        assert!(
            report.keys <= 12 || passes == 1,
            "the map holds what it was given"
        );
        if report.cleaned_to >= end {
            break;
        }
        assert!(passes < 50, "compaction makes progress");
    }
    assert!(passes > 1, "a small map takes several passes ({passes})");
    let expected = newest(&written);
    assert_eq!(
        read_all(&log),
        expected,
        "newest per key, tombstones kept for now"
    );
    assert!(
        log.segments().len() < segments_before,
        "small segments merged"
    );
    assert!(
        log.size_bytes() * 4 < bytes_before,
        "{} of {bytes_before}",
        log.size_bytes()
    );
    assert_eq!(log.high_watermark(), end, "offsets unchanged");
    let status = log.compaction_status();
    assert!(
        status.cleaned_to >= end && status.bytes_reclaimed > 0,
        "{status:?}"
    );

    // Tombstones go once older than delete.retention.ms (and compacted once before).
    clock.0.fetch_add(2 * DAY, Ordering::Relaxed);
    compact(&log, 1 << 20);
    let live: BTreeMap<_, _> = expected
        .iter()
        .filter(|(_, (_, v))| v.is_some())
        .map(|(o, r)| (*o, r.clone()))
        .collect();
    assert_eq!(
        read_all(&log),
        live,
        "tombstones past their lifetime are gone"
    );

    // The compacted log reads the same after a restart, and takes appends after its end.
    log.close().await.unwrap();
    let log = open(Arc::new(storage.clone()), &dir, clock.clone());
    assert_eq!(read_all(&log), live);
    let next = log
        .append(
            batch(&[("k1".into(), Some("after".into()))], Codec::None, None),
            Durability::Durable,
        )
        .await
        .unwrap();
    assert_eq!(next.base_offset, end);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_retry_is_still_a_duplicate_after_compaction_and_a_restart() {
    let storage = SimStorage::new(2);
    let dir = PathBuf::from("/data/t/0");
    let clock = Arc::new(ManualClock(AtomicI64::new(T0)));
    let log = open(Arc::new(storage.clone()), &dir, clock.clone());
    let stamp = ProducerStamp {
        producer_id: 42,
        producer_epoch: 0,
        base_sequence: 0,
    };
    let first = batch(&[("k0".into(), Some("1".into()))], Codec::None, Some(stamp));
    let appended = log
        .append(first.clone(), Durability::Durable)
        .await
        .unwrap();
    // Newer values of the same key make the producer's batch empty once compacted.
    fill(&log, 3, 20).await;
    while compact(&log, 1 << 20).is_some() {}
    assert!(!read_all(&log).contains_key(&appended.base_offset));
    log.close().await.unwrap();
    // After a restart that rebuilds the producer table from the log (no snapshot).
    for name in storage.list_dir(&dir).unwrap() {
        if name.ends_with(".snapshot") {
            storage.remove_file(&dir.join(name)).unwrap();
        }
    }
    let log = open(Arc::new(storage.clone()), &dir, clock.clone());
    let retry = log.append(first, Durability::Durable).await.unwrap();
    assert!(retry.duplicate, "the retry is recognised");
    assert_eq!(retry.base_offset, appended.base_offset);
}

/// Issue #13: a compactor killed at any point of a rewrite loses nothing: the power is cut at
/// each mutating operation of a pass in turn; the log reopened afterwards holds, for every
/// key, its newest record at its offset, and every record it holds is one that was written
/// there; a pass then finishes the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_at_any_write_of_a_pass_loses_nothing() {
    let dir = PathBuf::from("/data/t/0");
    let clock = Arc::new(ManualClock(AtomicI64::new(T0)));
    let build = |seed| {
        let clock = clock.clone();
        let dir = dir.clone();
        async move {
            let storage = SimStorage::new(seed);
            let log = open(Arc::new(storage.clone()), &dir, clock);
            let written = fill(&log, 12, 8).await;
            log.flush().await.unwrap();
            (storage, log, written)
        }
    };
    // A dry run counts a pass's mutating operations.
    let (storage, log, _) = build(3).await;
    let before = storage.mutations();
    compact(&log, 1 << 20).unwrap();
    let operations = storage.mutations() - before;
    assert!(operations > 10, "{operations}");
    println!("a pass makes {operations} mutating operations");

    for cut in 1..=operations {
        let (storage, log, written) = build(3 + cut).await;
        let expected = newest(&written);
        storage.cut_power_at_mutation(cut);
        let mut throttle = |_| {};
        let _ = log.compact_once(&mut CompactOptions {
            key_map_bytes: 1 << 20,
            rewrite_below: i64::MAX,
            force: true,
            throttle: &mut throttle,
        });
        drop(log);
        let storage = storage.after_reboot();
        let log = open(Arc::new(storage.clone()), &dir, clock.clone());
        let found = read_all(&log);
        for (offset, record) in &expected {
            assert_eq!(
                found.get(offset),
                Some(record),
                "cut {cut}: newest at {offset}"
            );
        }
        for (offset, record) in &found {
            assert_eq!(
                written.get(offset),
                Some(record),
                "cut {cut}: what is at {offset}"
            );
        }
        while compact(&log, 1 << 20).is_some() {}
        assert_eq!(
            read_all(&log),
            expected,
            "cut {cut}: a pass after the restart finishes"
        );
        log.close().await.unwrap();
    }
}
