//! A replicated partition log: Raft entries as record batches in the segment files, read back
//! by index, truncated, purged and reset, across restarts and power cuts.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use silt_broker::log::raft::{
    CONTROL_BLANK, CONTROL_MEMBERSHIP, EntryBody, EntryRead, EntryWrite, EpochCache, ResetTo,
};
use silt_broker::log::sim::SimStorage;
use silt_broker::log::{LogConfig, PartitionLog, Storage, SystemClock};
use silt_index::batch::{BatchHeader, Codec};
use silt_index::record::{NewRecord, ProducerStamp, decode_records, encode_batch};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 8 * 1024,
        index_interval_bytes: 512,
        preallocate_bytes: 4 * 1024,
        flush_interval_ms: 5,
        ..LogConfig::default()
    }
}

fn open(storage: &SimStorage, dir: &Path) -> PartitionLog {
    PartitionLog::open_replicated(
        Arc::new(storage.clone()),
        dir,
        config(),
        Arc::new(SystemClock),
        &tokio::runtime::Handle::current(),
    )
    .unwrap()
}

fn data(tag: &str, count: usize, producer: Option<(i64, i32)>) -> Bytes {
    let records: Vec<NewRecord> = (0..count)
        .map(|i| NewRecord {
            value: Some(Bytes::from(format!("{tag}-{i}-{}", "x".repeat(200)))),
            timestamp: 1_700_000_000_000,
            ..Default::default()
        })
        .collect();
    let stamp = producer.map(|(producer_id, base_sequence)| ProducerStamp {
        producer_id,
        producer_epoch: 0,
        base_sequence,
    });
    Bytes::from(encode_batch(0, &records, Codec::None, stamp))
}

fn entry(index: u64, term: u64, body: EntryBody) -> EntryWrite {
    EntryWrite {
        index,
        term,
        body,
        written: None,
    }
}

fn blank() -> EntryBody {
    EntryBody::Control {
        control_type: CONTROL_BLANK,
        value: Bytes::new(),
    }
}

/// Appends and waits until fsynced.
async fn append(log: &PartitionLog, entries: Vec<EntryWrite>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    log.append_entries(
        entries,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    )
    .await
    .unwrap();
    rx.await.unwrap().unwrap();
}

fn read_all(log: &PartitionLog, from: u64) -> Vec<EntryRead> {
    let end = log.raft_last().map_or(0, |(i, _)| i + 1);
    let mut out = Vec::new();
    let mut index = from;
    while index < end {
        let run = log.read_entries(index, end, 4096).unwrap();
        assert!(
            !run.is_empty(),
            "entry {index} below {end} must be readable"
        );
        index = run.last().unwrap().index + 1;
        out.extend(run);
    }
    out
}

/// The (offset, value) of every data record in the entries, and the offsets of the control
/// batches.
fn offsets(entries: &[EntryRead]) -> (Vec<(i64, String)>, Vec<i64>) {
    let mut records = Vec::new();
    let mut controls = Vec::new();
    for e in entries {
        if let EntryBody::Batch(bytes) = &e.body {
            let header = BatchHeader::parse(bytes, u32::MAX).unwrap().unwrap();
            assert_eq!(
                header.partition_leader_epoch as u64, e.term,
                "term is the epoch"
            );
            for r in decode_records(bytes, 1 << 20).unwrap() {
                records.push((
                    r.offset,
                    String::from_utf8(r.value.unwrap().to_vec()).unwrap(),
                ));
            }
        } else {
            // A control entry read back: its offset is the gap between data records.
            controls.push(e.index as i64);
        }
    }
    (records, controls)
}

/// A log of 3 terms: term 1 (blank, membership, 40 data), term 2 (blank, 40 data).
async fn three_terms(log: &PartitionLog) -> Vec<u64> {
    let mut index = 0;
    let mut terms = Vec::new();
    let mut next = |term: u64, body: EntryBody| {
        let e = entry(index, term, body);
        index += 1;
        terms.push(term);
        e
    };
    let mut first = vec![
        next(1, blank()),
        next(
            1,
            EntryBody::Control {
                control_type: CONTROL_MEMBERSHIP,
                value: Bytes::from_static(b"{\"voters\":[1,2,3]}"),
            },
        ),
    ];
    for i in 0..40 {
        first.push(next(1, EntryBody::Batch(data(&format!("t1b{i}"), 3, None))));
    }
    let mut second = vec![next(2, blank())];
    for i in 0..40 {
        second.push(next(2, EntryBody::Batch(data(&format!("t2b{i}"), 2, None))));
    }
    append(log, first).await;
    append(log, second).await;
    terms
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_are_batches_with_offsets_terms_and_read_back_by_index() {
    let storage = SimStorage::new(1);
    let dir = PathBuf::from("/data/t/0");
    let log = open(&storage, &dir);
    assert_eq!(log.raft_last(), None);
    let terms = three_terms(&log).await;
    assert_eq!(log.raft_last(), Some((82, 2)));
    assert!(log.segments().len() > 3, "8 KiB segments rolled");
    let entries = read_all(&log, 0);
    assert_eq!(entries.len(), 83);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.index, i as u64);
        assert_eq!(e.term, terms[i]);
    }
    assert!(
        matches!(&entries[1].body, EntryBody::Control { control_type, value }
        if *control_type == CONTROL_MEMBERSHIP && value.as_ref() == b"{\"voters\":[1,2,3]}")
    );
    // Offsets: blank 0, membership 1, then 40 batches of 3 (2..=121), blank 122, 40 of 2.
    let (records, _) = offsets(&entries);
    assert_eq!(records.len(), 120 + 80);
    assert_eq!(records[0].0, 2);
    assert_eq!(records[119].0, 121);
    assert_eq!(records[120].0, 123);
    assert_eq!(records.last().unwrap().0, 202);
    assert_eq!(log.log_end_offset(), 203);
    // Leader epochs: term 1 from offset 0, term 2 from 122 (its blank entry).
    assert_eq!(log.epochs().entries(), &[(1, 0), (2, 122)]);
    assert_eq!(log.epoch_end_offset(1), Some((1, 122)));
    assert_eq!(log.epoch_end_offset(2), Some((2, 203)));
    // Nothing is committed: consumers see nothing. Committing moves the high watermark.
    assert_eq!(log.high_watermark(), 0);
    log.set_commit_next(42);
    assert_eq!(log.high_watermark(), 122, "offset after entry 41");
    log.set_commit_next(83);
    assert_eq!(log.high_watermark(), 203);
    let slice = log.read(0, 1 << 20).unwrap();
    assert!(!slice.records.is_empty());
    // A byte limit still returns at least one entry, and runs stop where asked.
    assert_eq!(log.read_entries(10, 11, 1).unwrap().len(), 1);
    assert_eq!(log.read_entries(10, 20, 1 << 20).unwrap().len(), 10);

    // A clean restart and a crash both keep everything, with its Raft ids and epochs.
    log.close().await.unwrap();
    let log = open(&storage, &dir);
    assert_eq!(log.raft_last(), Some((82, 2)));
    assert_eq!(read_all(&log, 0), entries);
    assert_eq!(log.epochs().entries(), &[(1, 0), (2, 122)]);
    drop(log);
    storage.power_cut();
    let storage = storage.after_reboot();
    let log = open(&storage, &dir);
    assert_eq!(log.raft_last(), Some((82, 2)));
    assert_eq!(read_all(&log, 0), entries);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appended_entries_are_readable_before_they_are_written() {
    let storage = SimStorage::new(2);
    storage.set_sync_latency(Duration::from_millis(30));
    let dir = PathBuf::from("/data/t/1");
    let log = open(&storage, &dir);
    let (tx, rx) = tokio::sync::oneshot::channel();
    log.append_entries(
        vec![
            entry(0, 1, blank()),
            entry(1, 1, EntryBody::Batch(data("a", 1, None))),
        ],
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    )
    .await
    .unwrap();
    // Raft reads what it appended at once, whether or not the writer got to it.
    let read = log.read_entries(0, 2, 1 << 20).unwrap();
    assert_eq!(read.len(), 2);
    rx.await.unwrap().unwrap();
    assert_eq!(log.read_entries(0, 2, 1 << 20).unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_drops_entries_producer_state_and_epochs_after_the_point() {
    let storage = SimStorage::new(3);
    let dir = PathBuf::from("/data/t/2");
    let log = open(&storage, &dir);
    let mut entries = vec![entry(0, 1, blank())];
    for i in 0..30u64 {
        entries.push(entry(
            1 + i,
            1,
            EntryBody::Batch(data(&format!("p{i}"), 1, Some((7, i as i32)))),
        ));
    }
    append(&log, entries).await;
    append(&log, vec![entry(31, 2, blank())]).await;
    for i in 0..20u64 {
        append(
            &log,
            vec![entry(
                32 + i,
                2,
                EntryBody::Batch(data(&format!("q{i}"), 1, Some((7, 30 + i as i32)))),
            )],
        )
        .await;
    }
    let segments_before = log.segments().len();
    assert!(segments_before > 1);
    log.set_commit_next(11);
    // A new leader of term 3 disagrees from entry 11 on.
    log.truncate_after(Some((10, 1))).await.unwrap();
    assert_eq!(log.raft_last(), Some((10, 1)));
    assert_eq!(log.log_end_offset(), 11);
    assert!(log.segments().len() < segments_before);
    assert_eq!(log.epochs().entries(), &[(1, 0)]);
    let last_sequence = |log: &PartitionLog| {
        log.producers()
            .entry(7)
            .and_then(|e| e.batches.back().map(|b| b.last_sequence))
    };
    assert_eq!(
        last_sequence(&log),
        Some(9),
        "producer state as of entry 10"
    );
    // The log continues at 11 in term 3, with new offsets.
    append(&log, vec![entry(11, 3, blank())]).await;
    append(
        &log,
        vec![entry(12, 3, EntryBody::Batch(data("r", 2, Some((7, 10)))))],
    )
    .await;
    assert_eq!(log.epochs().entries(), &[(1, 0), (3, 11)]);
    assert_eq!(last_sequence(&log), Some(11));
    let all = read_all(&log, 0);
    assert_eq!(all.len(), 13);
    let (records, _) = offsets(&all);
    assert_eq!(
        records.last().unwrap(),
        &(13, format!("r-1-{}", "x".repeat(200)))
    );
    // Truncating everything leaves an empty log that starts again at 0.
    log.truncate_after(None).await.unwrap_err();
    // (The committed entries 0..=10 cannot be truncated: the writer refuses and stops.)
    drop(log);
    let log = open(&storage.after_reboot(), &dir);
    assert_eq!(log.raft_last(), Some((12, 3)));
    assert_eq!(log.epochs().entries(), &[(1, 0), (3, 11)]);
    assert_eq!(read_all(&log, 0), all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_forgets_entries_retention_drops_them_and_reset_starts_after_a_snapshot() {
    let storage = SimStorage::new(4);
    let dir = PathBuf::from("/data/t/3");
    let log = open(&storage, &dir);
    three_terms(&log).await;
    log.set_commit_next(83);
    let segments = log.segments();
    // The entry ending by an offset: the last whose records all lie below it.
    let ((index, term), next) = log.entry_ending_by(60).unwrap().unwrap();
    assert!(next <= 60, "{next}");
    let ((after, _), _) = log.entry_ending_by(next + 1).unwrap().unwrap();
    assert!(after == index || after == index + 1);
    assert_eq!(log.locate_next_offset(index).unwrap(), Some(next));
    assert!(term >= 1);
    assert_eq!(log.entry_ending_by(0).unwrap(), None);
    // Purge up to entry 50: Raft forgets it, the segments stay readable until dropped.
    log.purge_upto((50, 1)).await.unwrap();
    assert_eq!(log.raft_state().purged, Some((50, 1)));
    assert_eq!(log.segments(), segments);
    assert_eq!(log.log_start_offset(), 0);
    // Dropping purged segments stops at `keep_from`, then at the first holding entry 51.
    assert_eq!(log.drop_purged(0).await.unwrap(), 0);
    assert!(log.drop_purged(i64::MAX).await.unwrap() > 0);
    let left = log.segments();
    assert!(left.len() < segments.len());
    assert!(log.log_start_offset() > 0);
    assert_eq!(log.drop_purged(i64::MAX).await.unwrap(), 0);
    assert_eq!(read_all(&log, 51).len(), 32);
    drop(log);
    let log = open(&storage.after_reboot(), &dir);
    assert_eq!(log.raft_state().purged, Some((50, 1)));
    assert_eq!(log.raft_last(), Some((82, 2)));

    // A snapshot up to entry 500 (offset 900) replaces the whole log.
    log.reset_to(ResetTo {
        last: (500, 4),
        next_offset: 900,
        producers: Default::default(),
        epochs: EpochCache::from_entries(vec![(1, 0), (4, 800)]),
    })
    .await
    .unwrap();
    assert_eq!(log.raft_last(), Some((500, 4)));
    assert_eq!(log.high_watermark(), 900);
    assert_eq!(log.log_start_offset(), 900);
    append(&log, vec![entry(501, 5, blank())]).await;
    assert_eq!(log.log_end_offset(), 901);
    assert_eq!(log.epochs().entries(), &[(1, 0), (4, 800), (5, 900)]);
    drop(log);
    let log = open(&storage.after_reboot(), &dir);
    assert_eq!(log.raft_last(), Some((501, 5)));
    assert_eq!(log.raft_state().purged, Some((500, 4)));
    assert_eq!(read_all(&log, 501).len(), 1);
    assert!(
        !storage
            .after_reboot()
            .list_dir(&dir)
            .unwrap()
            .iter()
            .any(|n| n.starts_with("00000000000000000000")),
        "the old segments are gone"
    );
}
