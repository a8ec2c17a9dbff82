//! The partition log through its public API, on the real disk and on the power-cut simulator.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use silt_broker::log::sim::SimStorage;
use silt_broker::log::{
    AppendError, Clock, DiskStorage, Durability, LogConfig, LogError, PartitionLog, Storage,
};
use silt_config::TimestampType;
use silt_index::batch::{BatchHeader, Codec};
use silt_index::record::{NewRecord, ProducerStamp, decode_records, encode_batch};
use silt_index::segment::SegmentFile;

#[derive(Debug)]
struct ManualClock(AtomicI64);

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

const T0: i64 = 1_700_000_000_000;

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock(AtomicI64::new(T0)))
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 16 * 1024,
        index_interval_bytes: 512,
        preallocate_bytes: 4 * 1024,
        flush_interval_ms: 5,
        ..LogConfig::default()
    }
}

/// A batch of `count` records whose values name `tag` and their index.
fn batch(tag: &str, count: usize, timestamp: i64, codec: Codec) -> Bytes {
    let records: Vec<NewRecord> = (0..count)
        .map(|i| NewRecord {
            key: Some(Bytes::from(format!("{tag}-key"))),
            value: Some(Bytes::from(format!("{tag}-{i}-{}", "v".repeat(100)))),
            headers: vec![],
            timestamp: timestamp + i as i64,
        })
        .collect();
    Bytes::from(encode_batch(0, &records, codec, None))
}

fn idempotent(producer_id: i64, epoch: i16, sequence: i32, count: usize) -> Bytes {
    let records = vec![
        NewRecord {
            value: Some(Bytes::from_static(b"x")),
            timestamp: T0,
            ..Default::default()
        };
        count
    ];
    let stamp = ProducerStamp {
        producer_id,
        producer_epoch: epoch,
        base_sequence: sequence,
    };
    Bytes::from(encode_batch(0, &records, Codec::None, Some(stamp)))
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

/// Every record value readable from `from`, in order.
fn read_values(log: &PartitionLog, from: i64) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut offset = from;
    while offset < log.high_watermark() {
        let slice = log.read(offset, 10_000).unwrap();
        let scan = silt_index::batch::scan(&slice.records, u32::MAX, true);
        assert!(
            scan.stop.is_none(),
            "reads return whole, valid batches: {:?}",
            scan.stop
        );
        for (header, range) in scan.batches {
            for record in decode_records(&slice.records[range], 1 << 20).unwrap() {
                if record.offset >= offset {
                    out.push((
                        record.offset,
                        String::from_utf8(record.value.unwrap().to_vec()).unwrap(),
                    ));
                }
            }
            offset = header.next_offset();
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_get_consecutive_offsets_and_read_back_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(Arc::new(DiskStorage), dir.path(), clock());
    let mut expected = Vec::new();
    for i in 0..100 {
        let appended = log
            .append(
                batch(&format!("b{i}"), 5, T0, Codec::None),
                Durability::Durable,
            )
            .await
            .unwrap();
        assert_eq!(
            (appended.base_offset, appended.last_offset),
            (i * 5, i * 5 + 4)
        );
        for r in 0..5 {
            expected.push((i * 5 + r, format!("b{i}-{r}-{}", "v".repeat(100))));
        }
    }
    assert_eq!(log.high_watermark(), 500);
    let segments = log.segments();
    assert!(segments.len() > 3, "16 KiB segments roll: {segments:?}");
    assert!(
        segments[..segments.len() - 1]
            .iter()
            .all(|s| s.sealed && s.size_bytes <= 16 * 1024)
    );
    assert_eq!(read_values(&log, 0), expected);
    // A read in the middle of a batch starts at that batch; one past the end is out of range.
    let slice = log.read(7, 1).unwrap();
    let first = BatchHeader::parse(&slice.records, u32::MAX)
        .unwrap()
        .unwrap();
    assert_eq!(
        first.base_offset, 5,
        "the whole batch holding offset 7, even past max_bytes"
    );
    assert!(log.read(500, 100).unwrap().records.is_empty());
    assert!(matches!(
        log.read(501, 100),
        Err(LogError::OffsetOutOfRange { requested: 501, .. })
    ));
    log.close().await.unwrap();
    // Sealed segment files are cut to their size; the indexes are on disk.
    let sealed = &segments[0];
    let path = dir.path().join(silt_index::segment::segment_file_name(
        sealed.base_offset,
        SegmentFile::Log,
    ));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), sealed.size_bytes);
}

/// Blocks of disk the partition's segment files hold.
fn allocated_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap())
        .filter(|m| m.is_file())
        .map(|m| m.blocks() * 512)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_partition_holds_no_disk_until_its_first_append() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(Arc::new(DiskStorage), dir.path(), clock());
    // 10,000 empty topics must not take 10,000 preallocation steps of disk.
    assert!(
        allocated_bytes(dir.path()) < 4 * 1024,
        "{} bytes allocated",
        allocated_bytes(dir.path())
    );
    log.append(batch("first", 1, T0, Codec::None), Durability::Durable)
        .await
        .unwrap();
    // Then one step (4 KiB here) at a time, as before.
    assert!(allocated_bytes(dir.path()) >= 4 * 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_after_clean_close_and_after_crash_keeps_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let log = open(Arc::new(DiskStorage), dir.path(), clock.clone());
    for i in 0..60 {
        log.append(
            batch(&format!("a{i}"), 3, T0 + i, Codec::Lz4),
            Durability::Durable,
        )
        .await
        .unwrap();
    }
    let before = read_values(&log, 0);
    log.close().await.unwrap();
    assert!(matches!(
        log.append(batch("late", 1, T0, Codec::None), Durability::Durable)
            .await,
        Err(AppendError::Closed)
    ));
    assert!(dir.path().join("clean_shutdown").exists());

    let log = open(Arc::new(DiskStorage), dir.path(), clock.clone());
    assert!(
        !dir.path().join("clean_shutdown").exists(),
        "the marker is used once"
    );
    assert_eq!(read_values(&log, 0), before);
    log.append(
        batch("after-clean", 2, T0, Codec::None),
        Durability::Durable,
    )
    .await
    .unwrap();
    // No close: the next open must scan the active segment.
    drop(log);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let log = open(Arc::new(DiskStorage), dir.path(), clock);
    assert_eq!(log.high_watermark(), 182);
    let values = read_values(&log, 0);
    assert_eq!(&values[..180], &before[..]);
    assert_eq!(values[181].1, format!("after-clean-1-{}", "v".repeat(100)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_cuts_a_torn_last_batch_at_every_byte() {
    let template = tempfile::tempdir().unwrap();
    {
        let log = open(Arc::new(DiskStorage), template.path(), clock());
        for i in 0..3 {
            log.append(
                batch(&format!("t{i}"), 2, T0, Codec::Zstd),
                Durability::Durable,
            )
            .await
            .unwrap();
        }
        log.close().await.unwrap();
    }
    std::fs::remove_file(template.path().join("clean_shutdown")).unwrap();
    let log_name = silt_index::segment::segment_file_name(0, SegmentFile::Log);
    let mut whole = std::fs::read(template.path().join(&log_name)).unwrap();
    let scan = silt_index::batch::scan(&whole, u32::MAX, true);
    let last = scan.batches.last().unwrap().1.clone();
    assert_eq!(scan.batches.len(), 3);
    whole.truncate(last.end); // drop the preallocated tail
    for cut in last.start..last.end {
        let dir = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(template.path()).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
        // Cut the last batch at `cut`, and leave preallocated zeros after it.
        let mut bytes = whole[..cut].to_vec();
        bytes.resize(whole.len() + 4096, 0);
        std::fs::write(dir.path().join(&log_name), &bytes).unwrap();
        let log = open(Arc::new(DiskStorage), dir.path(), clock());
        assert_eq!(
            log.high_watermark(),
            4,
            "cut at byte {cut}: two whole batches remain"
        );
        assert_eq!(
            std::fs::metadata(dir.path().join(&log_name)).unwrap().len(),
            last.start as u64
        );
        let appended = log
            .append(batch("again", 1, T0, Codec::None), Durability::Durable)
            .await
            .unwrap();
        assert_eq!(appended.base_offset, 4, "cut at byte {cut}");
        assert_eq!(read_values(&log, 0).len(), 5);
        log.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_stops_at_a_bad_crc_and_refuses_a_foreign_file() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(Arc::new(DiskStorage), dir.path(), clock());
        for i in 0..4 {
            log.append(
                batch(&format!("c{i}"), 1, T0, Codec::None),
                Durability::Durable,
            )
            .await
            .unwrap();
        }
        drop(log);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let path = dir
        .path()
        .join(silt_index::segment::segment_file_name(0, SegmentFile::Log));
    let mut bytes = std::fs::read(&path).unwrap();
    let scan = silt_index::batch::scan(&bytes, u32::MAX, true);
    let third = scan.batches[2].1.clone();
    bytes[third.end - 3] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let log = open(Arc::new(DiskStorage), dir.path(), clock());
    assert_eq!(
        log.high_watermark(),
        2,
        "the batch with the bad CRC and everything after is cut"
    );
    log.close().await.unwrap();

    let foreign = tempfile::tempdir().unwrap();
    let foreign_path = foreign
        .path()
        .join(silt_index::segment::segment_file_name(0, SegmentFile::Log));
    let notes = b"these are my holiday notes, not a kafka log\n".repeat(20);
    std::fs::write(&foreign_path, &notes).unwrap();
    let err = PartitionLog::open(
        Arc::new(DiskStorage),
        foreign.path(),
        config(),
        clock(),
        &tokio::runtime::Handle::current(),
    )
    .unwrap_err();
    assert!(matches!(err, LogError::Foreign { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&foreign_path.display().to_string()),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&foreign_path).unwrap(),
        notes,
        "a foreign file is left alone"
    );

    let badly_named = tempfile::tempdir().unwrap();
    std::fs::write(badly_named.path().join("notes.log"), b"x").unwrap();
    let err = PartitionLog::open(
        Arc::new(DiskStorage),
        badly_named.path(),
        config(),
        clock(),
        &tokio::runtime::Handle::current(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("notes.log"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_that_cannot_be_created_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let err = PartitionLog::open(
        Arc::new(DiskStorage),
        &file.join("p0"),
        config(),
        clock(),
        &tokio::runtime::Handle::current(),
    )
    .unwrap_err();
    assert!(matches!(err, LogError::Io { .. }), "{err}");
    assert!(err.to_string().contains("a-file/p0"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_find_the_first_record_at_or_after_across_segments_and_codecs() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(Arc::new(DiskStorage), dir.path(), clock());
    log.set_config(LogConfig {
        segment_bytes: 2048,
        ..config()
    });
    // 40 batches of 10 records; record r of batch b has timestamp T0 + 100*b + r.
    for b in 0..40i64 {
        let codec = [
            Codec::None,
            Codec::Gzip,
            Codec::Snappy,
            Codec::Lz4,
            Codec::Zstd,
        ][b as usize % 5];
        log.append(
            batch(&format!("t{b}"), 10, T0 + 100 * b, codec),
            Durability::Buffered,
        )
        .await
        .unwrap();
    }
    // Buffered appends are readable once fsynced.
    log.flush().await.unwrap();
    assert!(log.segments().len() > 1);
    for (target, expected) in [
        (0, Some((0, T0))),
        (T0 + 5, Some((5, T0 + 5))),
        (T0 + 2_050, Some((210, T0 + 2_100))),
        (T0 + 3_909, Some((399, T0 + 3_909))),
        (T0 + 3_910, None),
    ] {
        assert_eq!(
            log.offset_for_timestamp(target).unwrap(),
            expected,
            "target {target}"
        );
    }
    assert_eq!(log.max_timestamp().unwrap(), Some((399, T0 + 3_909)));
    // After a restart the sealed segments' max timestamps come from their time indexes.
    log.close().await.unwrap();
    let log = open(Arc::new(DiskStorage), dir.path(), clock());
    assert_eq!(
        log.offset_for_timestamp(T0 + 2_050).unwrap(),
        Some((210, T0 + 2_100))
    );
    assert_eq!(log.max_timestamp().unwrap(), Some((399, T0 + 3_909)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_append_time_topics_are_stamped_by_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(Arc::new(DiskStorage), dir.path(), clock());
    log.set_config(LogConfig {
        timestamp_type: TimestampType::LogAppendTime,
        ..config()
    });
    let appended = log
        .append(batch("lat", 3, 42, Codec::Gzip), Durability::Durable)
        .await
        .unwrap();
    assert_eq!(appended.log_append_time, T0);
    let slice = log.read(0, 1 << 20).unwrap();
    silt_index::batch::verify_crc(&slice.records).unwrap();
    let records = decode_records(&slice.records, 1 << 20).unwrap();
    assert!(records.iter().all(|r| r.timestamp == T0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_outside_the_topic_limits_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(Arc::new(DiskStorage), dir.path(), clock());
    log.set_config(LogConfig {
        timestamp_before_max_ms: 1000,
        timestamp_after_max_ms: 1000,
        ..config()
    });
    assert!(
        log.append(batch("ok", 1, T0 - 500, Codec::None), Durability::Durable)
            .await
            .is_ok()
    );
    let err = log
        .append(batch("old", 1, T0 - 5000, Codec::None), Durability::Durable)
        .await
        .unwrap_err();
    assert!(matches!(err, AppendError::InvalidTimestamp { .. }), "{err}");
    let err = log
        .append(
            batch("future", 1, T0 + 5000, Codec::None),
            Durability::Durable,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, AppendError::InvalidTimestamp { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_batches_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(Arc::new(DiskStorage), dir.path(), clock());
    let good = batch("g", 2, T0, Codec::None);
    let mut flipped = good.to_vec();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let cases: Vec<(Bytes, &str)> = vec![
        (Bytes::from(flipped), "CRC"),
        (good.slice(..good.len() - 1), "batch length"),
        (
            Bytes::from([good.to_vec(), good.to_vec()].concat()),
            "batch length",
        ),
        (Bytes::from_static(&[0u8; 10]), "shorter"),
    ];
    for (bytes, reason) in cases {
        let err = log.append(bytes, Durability::Durable).await.unwrap_err();
        assert!(matches!(err, AppendError::Corrupt(_)), "{err}");
        assert!(
            err.to_string().contains(reason),
            "{err} should mention {reason}"
        );
    }
    log.set_config(LogConfig {
        max_message_bytes: 100,
        ..config()
    });
    assert!(matches!(
        log.append(good, Durability::Durable).await,
        Err(AppendError::TooLarge { max: 100, .. })
    ));
    assert_eq!(log.high_watermark(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_retries_get_their_first_offsets_even_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(Arc::new(DiskStorage), dir.path(), clock());
    let a = log
        .append(idempotent(9, 0, 0, 3), Durability::Durable)
        .await
        .unwrap();
    let b = log
        .append(idempotent(9, 0, 3, 2), Durability::Durable)
        .await
        .unwrap();
    let retry = log
        .append(idempotent(9, 0, 0, 3), Durability::Durable)
        .await
        .unwrap();
    assert_eq!(
        (retry.base_offset, retry.last_offset, retry.duplicate),
        (a.base_offset, a.last_offset, true)
    );
    let gap = log
        .append(idempotent(9, 0, 7, 1), Durability::Durable)
        .await
        .unwrap_err();
    assert!(matches!(gap, AppendError::Sequence(_)), "{gap}");
    assert_eq!(
        log.high_watermark(),
        5,
        "duplicates and gaps append nothing"
    );
    drop(log); // crash: no snapshot at the log end, the state is replayed from the log
    tokio::time::sleep(Duration::from_millis(50)).await;
    let log = open(Arc::new(DiskStorage), dir.path(), clock());
    let retry = log
        .append(idempotent(9, 0, 3, 2), Durability::Durable)
        .await
        .unwrap();
    assert_eq!((retry.base_offset, retry.duplicate), (b.base_offset, true));
    let next = log
        .append(idempotent(9, 0, 5, 1), Durability::Durable)
        .await
        .unwrap();
    assert_eq!((next.base_offset, next.duplicate), (5, false));
    let fenced = log
        .append(idempotent(9, -1, 6, 1), Durability::Durable)
        .await;
    assert!(fenced.is_ok() || matches!(fenced, Err(AppendError::Sequence(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_and_delete_records_move_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(Arc::new(DiskStorage), dir.path(), clock());
    for i in 0..100 {
        log.append(
            batch(&format!("r{i}"), 4, T0 + i, Codec::None),
            Durability::Buffered,
        )
        .await
        .unwrap();
    }
    let segments = log.segments();
    assert!(segments.len() >= 4);
    // A gate that refuses the second segment stops deletion there (contiguity).
    let second = segments[1].base_offset;
    let deleted = log
        .delete_oldest_segments(|s| s.base_offset < second)
        .unwrap();
    assert_eq!(deleted.len(), 1);
    assert_eq!(log.log_start_offset(), second);
    assert!(
        matches!(log.read(0, 100), Err(LogError::OffsetOutOfRange { log_start, .. }) if log_start == second)
    );
    assert!(
        !dir.path()
            .join(silt_index::segment::segment_file_name(0, SegmentFile::Log))
            .exists()
    );
    // DeleteRecords inside a segment: the start moves exactly; reads below it fail.
    let cut = segments[2].base_offset + 3;
    assert_eq!(log.delete_records(cut).unwrap(), cut);
    assert!(log.read(cut - 1, 100).is_err());
    assert_eq!(read_values(&log, cut)[0].0, cut);
    assert!(matches!(
        log.delete_records(10_000),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    log.close().await.unwrap();
    let log = open(Arc::new(DiskStorage), dir.path(), clock());
    assert_eq!(
        log.log_start_offset(),
        cut,
        "the log start survives a restart"
    );
    // The active segment is never deleted, whatever the gate says.
    log.delete_oldest_segments(|_| true).unwrap();
    assert_eq!(log.segments().len(), 1);
    assert_eq!(log.high_watermark(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_fsyncs() {
    let storage = SimStorage::new(1);
    storage.set_sync_latency(Duration::from_millis(2));
    let log = Arc::new(open(
        Arc::new(storage.clone()),
        Path::new("/data/t/0"),
        clock(),
    ));
    let before = storage.syncs();
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move {
                log.append(
                    batch(&format!("g{i}"), 1, T0, Codec::None),
                    Durability::Durable,
                )
                .await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let syncs = storage.syncs() - before;
    assert!(
        syncs <= 16,
        "64 concurrent durable appends took {syncs} fsyncs"
    );
    assert_eq!(log.high_watermark(), 64);
}

/// The simulated power cut: appenders run until the power fails at a random moment; after the
/// restart every append that was acknowledged as durable is there, with its offset, and the log
/// holds nothing but whole, valid batches with consecutive offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_durable_append_survives_a_power_cut() {
    let seed: u64 = std::env::var("SILT_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("seed {seed} (rerun with SILT_TEST_SEED={seed})");
    for round in 0..20u64 {
        let storage = SimStorage::new(seed.wrapping_add(round));
        let dir = PathBuf::from("/data/topic/0");
        let log = Arc::new(open(Arc::new(storage.clone()), &dir, clock()));
        let acknowledged = Arc::new(std::sync::Mutex::new(Vec::new()));
        // The power fails after a seed-chosen number of appends, whatever the timing.
        let cut_after = 20 + (seed.wrapping_add(round) % 400) as usize;
        let appended = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let appenders: Vec<_> = (0..4)
            .map(|writer| {
                let log = log.clone();
                let acknowledged = acknowledged.clone();
                let appended = appended.clone();
                let storage = storage.clone();
                tokio::spawn(async move {
                    for i in 0.. {
                        let tag = format!("w{writer}-{i}");
                        let durability = if i % 3 == 0 {
                            Durability::Buffered
                        } else {
                            Durability::Durable
                        };
                        match log
                            .append(batch(&tag, 1 + i % 4, T0, Codec::None), durability)
                            .await
                        {
                            Ok(done) => {
                                if durability == Durability::Durable {
                                    acknowledged.lock().unwrap().push((done.base_offset, tag));
                                }
                                if appended.fetch_add(1, Ordering::SeqCst) + 1 == cut_after {
                                    storage.power_cut();
                                }
                            }
                            Err(_) => break,
                        }
                    }
                })
            })
            .collect();
        for appender in appenders {
            appender.await.unwrap();
        }
        drop(log);
        let acknowledged = acknowledged.lock().unwrap().clone();
        let log = open(Arc::new(storage.after_reboot()), &dir, clock());
        let values = read_values(&log, 0);
        println!(
            "round {round}: {} durable appends acknowledged, {} records survived",
            acknowledged.len(),
            values.len()
        );
        for (offset, _) in values.iter().enumerate() {
            assert_eq!(
                values[offset].0, offset as i64,
                "seed {seed} round {round}: offsets are consecutive"
            );
        }
        for (offset, tag) in &acknowledged {
            let (found, value) = &values.get(*offset as usize).unwrap_or_else(|| {
                panic!("seed {seed} round {round}: acknowledged offset {offset} lost")
            });
            assert_eq!(found, offset);
            assert!(
                value.starts_with(&format!("{tag}-0-")),
                "seed {seed} round {round}: offset {offset} holds {value}, not {tag}"
            );
        }
        // The log takes appends again, right after what survived.
        let next = log
            .append(batch("after", 1, T0, Codec::None), Durability::Durable)
            .await
            .unwrap();
        assert_eq!(next.base_offset, values.len() as i64);
    }
}

/// Issue #10: the high watermark moves only once the data is durable. A consumer that reads
/// while an acks=-1 append waits for its fsync must see nothing of it; whatever it did read
/// survives a power cut at that very moment, and no offset it saw is given to another record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r10_nothing_is_readable_before_it_is_durable() {
    for seed in 1..=16u64 {
        let storage = SimStorage::new(seed);
        storage.set_sync_latency(Duration::from_millis(30));
        let dir = PathBuf::from("/data/t/0");
        let log = Arc::new(open(Arc::new(storage.clone()), &dir, clock()));
        let mut watch = log.subscribe();
        watch.borrow_and_update();
        let appending = {
            let log = log.clone();
            tokio::spawn(async move {
                log.append(batch("durable", 3, T0, Codec::None), Durability::Durable)
                    .await
            })
        };
        // The moment anything becomes readable, a consumer reads it and the power fails.
        watch.changed().await.unwrap();
        let seen = read_values(&log, 0);
        assert_eq!(
            seen.len(),
            3,
            "seed {seed}: the whole batch became readable"
        );
        storage.power_cut();
        let _ = appending.await.unwrap();
        drop(log);
        let log = open(Arc::new(storage.after_reboot()), &dir, clock());
        let survived = read_values(&log, 0);
        assert_eq!(
            survived, seen,
            "seed {seed}: a consumer read records that the power cut took back"
        );
        let next = log
            .append(batch("after", 1, T0, Codec::None), Durability::Durable)
            .await
            .unwrap();
        assert_eq!(
            next.base_offset, 3,
            "seed {seed}: no offset a consumer saw is reused"
        );
    }
}

/// Issue #10: an acks=0/1 append is answered once written, but consumers see it only after the
/// background flush has made it durable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r10_buffered_appends_become_readable_when_flushed() {
    let storage = SimStorage::new(3);
    storage.set_sync_latency(Duration::from_millis(20));
    let log = open(Arc::new(storage.clone()), Path::new("/data/t/0"), clock());
    let mut watch = log.subscribe();
    watch.borrow_and_update();
    let before = storage.syncs();
    let appended = log
        .append(batch("buffered", 2, T0, Codec::None), Durability::Buffered)
        .await
        .unwrap();
    assert_eq!((appended.base_offset, appended.last_offset), (0, 1));
    if storage.syncs() == before {
        // Answered before any fsync: not readable yet.
        assert_eq!(log.high_watermark(), 0);
        assert!(log.read(0, 1 << 20).unwrap().records.is_empty());
    }
    watch.wait_for(|hw| *hw == 2).await.unwrap();
    assert!(storage.syncs() > before, "readable only after an fsync");
    assert_eq!(read_values(&log, 0).len(), 2);
}

/// A transactional batch of `count` records of an idempotent producer.
fn transactional(producer_id: i64, epoch: i16, sequence: i32, count: usize) -> Bytes {
    let mut bytes = idempotent(producer_id, epoch, sequence, count).to_vec();
    let attributes =
        i16::from_be_bytes([bytes[21], bytes[22]]) | silt_index::batch::ATTR_TRANSACTIONAL;
    bytes[21..23].copy_from_slice(&attributes.to_be_bytes());
    // The attributes are inside the CRC's range.
    let crc = crc32c::crc32c(&bytes[21..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(bytes)
}

fn marker(producer_id: i64, epoch: i16, commit: bool) -> Bytes {
    Bytes::from(silt_index::record::encode_txn_marker(
        0,
        producer_id,
        epoch,
        0,
        i16::from(commit),
        T0,
    ))
}

async fn append_marker(log: &PartitionLog, producer_id: i64, epoch: i16, commit: bool) -> i64 {
    log.submit_marker(marker(producer_id, epoch, commit), Durability::Durable)
        .await
        .unwrap()
        .wait()
        .await
        .unwrap()
        .base_offset
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_bound_read_committed_reads_and_survive_recovery() {
    use silt_broker::log::Isolation;
    use silt_broker::log::producer_state::AbortedTxn;

    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let log = open(Arc::new(DiskStorage), dir.path(), clock.clone());
    log.append(batch("plain", 2, T0, Codec::None), Durability::Durable)
        .await
        .unwrap(); // 0..=1
    // Producer 1 writes 2..=4 and commits at 5; producer 2 writes 6..=7, stays open.
    log.append(transactional(1, 0, 0, 3), Durability::Durable)
        .await
        .unwrap();
    log.append(transactional(2, 0, 0, 2), Durability::Durable)
        .await
        .unwrap();
    assert_eq!(log.last_stable_offset(), 2);
    let committed = log.read_as(0, 1 << 20, Isolation::ReadCommitted).unwrap();
    assert_eq!(committed.last_stable_offset, 2);
    let offsets = |records: &Bytes| -> Vec<i64> {
        silt_index::batch::scan(records, u32::MAX, false)
            .batches
            .iter()
            .map(|(h, _)| h.base_offset)
            .collect()
    };
    assert_eq!(
        offsets(&committed.records),
        [0],
        "read_committed stops at the LSO"
    );
    let uncommitted = log.read_as(0, 1 << 20, Isolation::ReadUncommitted).unwrap();
    assert_eq!(offsets(&uncommitted.records), [0, 2, 5]);
    assert_eq!(append_marker(&log, 1, 0, true).await, 7);
    assert_eq!(log.last_stable_offset(), 5, "producer 2 still holds it");
    // Producer 2 aborts at 8: everything is stable, and its range is listed to skip.
    assert_eq!(append_marker(&log, 2, 0, false).await, 8);
    assert_eq!(log.last_stable_offset(), log.high_watermark());
    let aborted = AbortedTxn {
        producer_id: 2,
        first_offset: 5,
        last_offset: 8,
    };
    let read = log.read_as(0, 1 << 20, Isolation::ReadCommitted).unwrap();
    assert_eq!(offsets(&read.records), [0, 2, 5, 7, 8]);
    assert_eq!(read.aborted, [aborted]);
    assert!(
        log.read_as(9, 1 << 20, Isolation::ReadCommitted)
            .unwrap()
            .aborted
            .is_empty()
    );
    // A marker of an older epoch is refused; a client may not write a control batch.
    log.append(transactional(3, 5, 0, 1), Durability::Durable)
        .await
        .unwrap(); // 9, opens producer 3's transaction
    assert!(matches!(
        log.submit_marker(marker(3, 4, false), Durability::Durable)
            .await
            .unwrap()
            .wait()
            .await,
        Err(AppendError::Sequence(_))
    ));
    assert!(matches!(
        log.append(marker(3, 5, false), Durability::Durable).await,
        Err(AppendError::Control)
    ));
    assert!(matches!(
        log.submit_marker(batch("data", 1, T0, Codec::None), Durability::Durable)
            .await,
        Err(AppendError::Corrupt(_))
    ));
    assert_eq!(log.last_stable_offset(), 9);

    // After a crash (no clean close) the open transaction and the aborted one are rebuilt.
    drop(log);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let log = open(Arc::new(DiskStorage), dir.path(), clock.clone());
    assert_eq!(log.last_stable_offset(), 9);
    let read = log.read_as(0, 1 << 20, Isolation::ReadCommitted).unwrap();
    assert_eq!(read.aborted, [aborted]);
    assert_eq!(append_marker(&log, 3, 5, true).await, 10);
    // And after a clean close (from the producer snapshot).
    log.close().await.unwrap();
    let log = open(Arc::new(DiskStorage), dir.path(), clock);
    assert_eq!(log.last_stable_offset(), log.high_watermark());
    let read = log.read_as(0, 1 << 20, Isolation::ReadCommitted).unwrap();
    assert_eq!(read.aborted, [aborted]);
}
