//! Remote reads: byte-identical batches from chunked ranged GETs, the disk cache across a
//! restart, shared GETs, prefetch, timestamps, and faults (corrupt objects and cache files, a
//! store that does not answer).
#![allow(clippy::unwrap_used)]

mod common;

use common::{Hooked, Hooks};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use silt_archiver::{
    Archive, ArchiveConfig, PartitionId, ReaderConfig, Remote, RemoteReader, Root, SealedSegment,
};
use silt_index::batch::{self, Codec};
use silt_index::record::{NewRecord, decode_records, encode_batch};
use silt_index::sidecar::AbortedRange;
use tokio::sync::Semaphore;

/// Hooks that count segment GETs, can hold them at a gate, and can make them never answer.
#[derive(Debug)]
struct Gated {
    segment_gets: AtomicU64,
    gate: Semaphore,
    gated: AtomicBool,
    down: AtomicBool,
    /// Milliseconds each segment GET takes to answer (a store's time to first byte).
    latency_ms: AtomicU64,
}

impl Gated {
    fn new() -> Arc<Hooked<Gated>> {
        Arc::new(Hooked::new(Gated {
            segment_gets: AtomicU64::new(0),
            gate: Semaphore::new(0),
            gated: AtomicBool::new(false),
            down: AtomicBool::new(false),
            latency_ms: AtomicU64::new(0),
        }))
    }
}

#[async_trait::async_trait]
impl Hooks for Gated {
    async fn get(&self, location: &Path) {
        if location.as_ref().ends_with(".log") {
            self.segment_gets.fetch_add(1, Ordering::SeqCst);
            let latency = self.latency_ms.load(Ordering::SeqCst);
            if latency > 0 {
                tokio::time::sleep(Duration::from_millis(latency)).await;
            }
            if self.gated.load(Ordering::SeqCst) {
                self.gate.acquire().await.unwrap().forget();
            }
        }
        if self.down.load(Ordering::SeqCst) {
            // Never answers, like a bucket behind a dead network path.
            std::future::pending::<()>().await;
        }
    }
}

fn pid() -> PartitionId {
    PartitionId {
        topic: "t".into(),
        topic_id: uuid::Uuid::from_u128(9),
        partition: 2,
    }
}

/// Three archived segments of batches of varied sizes (some larger than a chunk), and the
/// bytes of each segment file.
struct Fixture {
    store: Arc<Hooked<Gated>>,
    archive: Archive,
    root: Root,
    files: Vec<Vec<u8>>,
    _dir: tempfile::TempDir,
    cache_dir: tempfile::TempDir,
}

/// Record `i` of the fixture has timestamp `TS0 + 2 * i` (so odd targets fall between records).
const TS0: i64 = 1_700_000_000_000;

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Gated::new();
    let archive = Archive::with_remote(
        Remote::with_store(store.clone(), Path::from("pre"), "gated".into()),
        "writer".into(),
        ArchiveConfig {
            index_interval_bytes: 512,
            ..ArchiveConfig::default()
        },
    );
    let mut partition = archive.partition(pid()).await.unwrap();
    let mut offset = 0i64;
    let mut files = Vec::new();
    for s in 0..3 {
        let base = offset;
        let mut bytes = Vec::new();
        for b in 0..40usize {
            let count = 1 + (b % 4);
            let value_len = if b % 13 == 5 { 5000 } else { 40 + b * 7 };
            let records: Vec<NewRecord> = (0..count)
                .map(|r| NewRecord {
                    key: Some(Bytes::from(format!("k{s}-{b}-{r}"))),
                    value: Some(Bytes::from(vec![(b + r) as u8; value_len])),
                    timestamp: TS0 + 2 * (offset + r as i64),
                    ..Default::default()
                })
                .collect();
            bytes.extend(encode_batch(offset, &records, Codec::None, None));
            offset += count as i64;
        }
        let path = dir.path().join(format!("{base:020}.log"));
        std::fs::write(&path, &bytes).unwrap();
        partition
            .upload(
                &SealedSegment {
                    base_offset: base,
                    next_offset: offset,
                    size_bytes: bytes.len() as u64,
                    path,
                    start_position: 0,
                    aborted: aborted_in(s),
                },
                1,
            )
            .await
            .unwrap();
        files.push(bytes);
    }
    let root = partition.root().clone();
    Fixture {
        store,
        archive,
        root,
        files,
        _dir: dir,
        cache_dir: tempfile::tempdir().unwrap(),
    }
}

/// The fixture's aborted transactions, as each segment's sidecar lists them: producer 7's
/// runs from segment 0 (offset 90) into segment 1 (its marker at 120), producer 8's lies in
/// segment 1.
fn aborted_in(segment: usize) -> Vec<AbortedRange> {
    let seven = AbortedRange {
        producer_id: 7,
        first_offset: 90,
        last_offset: 120,
    };
    let eight = AbortedRange {
        producer_id: 8,
        first_offset: 150,
        last_offset: 160,
    };
    match segment {
        0 => vec![seven],
        1 => vec![seven, eight],
        _ => Vec::new(),
    }
}

impl Fixture {
    fn reader(&self, chunk_bytes: u64, prefetch_chunks: u32) -> Arc<RemoteReader> {
        RemoteReader::new(
            self.archive.clone(),
            ReaderConfig {
                cache_dir: self.cache_dir.path().to_path_buf(),
                cache_bytes: 64 << 20,
                chunk_bytes,
                prefetch_chunks,
                // GETs of a few chunks, all smaller than a segment: none comes whole.
                get_bytes: 2 * chunk_bytes,
                read_timeout: Duration::from_secs(5),
                ..ReaderConfig::default()
            },
        )
        .unwrap()
    }

    fn next_offset(&self) -> i64 {
        self.root.next_offset
    }

    async fn segment_key(&self, index: usize) -> Path {
        let reader = self.archive.reader(pid());
        let entries = reader.entries(&self.root).await.unwrap();
        reader.segment_key(&entries[index])
    }

    fn gets(&self) -> u64 {
        self.store.segment_gets.load(Ordering::SeqCst)
    }
}

/// Reads the whole partition from offset 0, `max_bytes` at a time.
async fn replay(reader: &Arc<RemoteReader>, f: &Fixture, max_bytes: u32) -> Vec<u8> {
    let manifest = reader.manifest(pid());
    let mut offset = 0;
    let mut out = Vec::new();
    while offset < f.next_offset() {
        let slice = reader
            .read(&manifest, &f.root, offset, max_bytes, true)
            .await
            .unwrap()
            .unwrap();
        assert!(!slice.records.is_empty(), "progress at offset {offset}");
        assert!(slice.next_offset > offset);
        out.extend_from_slice(&slice.records);
        offset = slice.next_offset;
    }
    out
}

#[tokio::test]
async fn a_replay_is_byte_identical_and_the_cache_survives_a_restart() {
    let f = fixture().await;
    let whole: Vec<u8> = f.files.concat();
    for max_bytes in [1, 700, 4096, 1 << 20] {
        // Chunks smaller than some batches: batches straddle chunk boundaries.
        let reader = f.reader(1500, 0);
        assert_eq!(
            replay(&reader, &f, max_bytes).await,
            whole,
            "max_bytes {max_bytes}"
        );
        let m = reader.metrics();
        assert!(m.chunk_hits.load(Ordering::Relaxed) > 0);
        assert!(m.bytes_served.load(Ordering::Relaxed) >= whole.len() as u64);
    }
    // A new reader on the same cache directory (a restart): nothing is fetched again.
    let before = f.gets();
    let reader = f.reader(1500, 0);
    assert!(reader.cache().chunks() > 0);
    assert_eq!(replay(&reader, &f, 4096).await, whole);
    assert_eq!(f.gets(), before, "every chunk came from the reopened cache");
}

#[tokio::test]
async fn reads_start_at_the_batch_holding_the_offset_and_honour_max_bytes() {
    let f = fixture().await;
    let reader = f.reader(4096, 0);
    let manifest = reader.manifest(pid());
    for offset in (0..f.next_offset()).step_by(7) {
        let slice = reader
            .read(&manifest, &f.root, offset, 2000, false)
            .await
            .unwrap()
            .unwrap();
        let scan = batch::scan(&slice.records, u32::MAX, true);
        assert_eq!(scan.valid_bytes, slice.records.len(), "whole batches only");
        if let Some((first, _)) = scan.batches.first() {
            assert!(first.base_offset <= offset && offset <= first.last_offset());
            assert!(slice.records.len() <= 2000);
        } else {
            // Only a batch larger than the limit, and no min_one: nothing.
            assert_eq!(slice.next_offset, offset);
        }
        // With min_one, a large first batch comes whole.
        let one = reader
            .read(&manifest, &f.root, offset, 1, true)
            .await
            .unwrap()
            .unwrap();
        let scan = batch::scan(&one.records, u32::MAX, true);
        assert_eq!(scan.batches.len(), 1);
    }
    // Outside the archive: None.
    assert!(
        reader
            .read(&manifest, &f.root, f.next_offset(), 100, true)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn concurrent_readers_of_one_chunk_share_one_get() {
    let f = fixture().await;
    let reader = f.reader(1 << 20, 0);
    f.store.gated.store(true, Ordering::SeqCst);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (reader, root) = (reader.clone(), f.root.clone());
        tasks.push(tokio::spawn(async move {
            reader
                .read(&reader.manifest(pid()), &root, 3, 1000, true)
                .await
                .unwrap()
                .unwrap()
        }));
    }
    // Every reader is waiting when the one GET is let through.
    tokio::time::timeout(Duration::from_secs(10), async {
        while f.gets() == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    f.store.gate.add_permits(1);
    let mut first = None;
    for task in tasks {
        let slice = task.await.unwrap();
        assert_eq!(*first.get_or_insert(slice.clone()), slice);
    }
    assert_eq!(f.gets(), 1, "one GET for sixteen readers");
}

#[tokio::test]
async fn a_sequential_reader_gets_the_next_chunks_prefetched() {
    let f = fixture().await;
    // Chunks of 8 KiB, 4 ahead: the window holds the largest batch (15 KB) twice over.
    let chunk = 8192u64;
    let reader = f.reader(chunk, 4);
    // A consumer that spends a moment on each batch it gets (an in-memory store answers at
    // once, so without it the reader would overtake any prefetch).
    let manifest = reader.manifest(pid());
    let (mut offset, mut replayed) = (0, Vec::new());
    while offset < f.next_offset() {
        let slice = reader
            .read(&manifest, &f.root, offset, 1000, true)
            .await
            .unwrap()
            .unwrap();
        replayed.extend_from_slice(&slice.records);
        offset = slice.next_offset;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(replayed, f.files.concat());
    let chunks: u64 = f
        .files
        .iter()
        .map(|b| (b.len() as u64).div_ceil(chunk))
        .sum();
    let m = reader.metrics();
    let (gets, prefetches) = (
        m.chunk_gets.load(Ordering::Relaxed),
        m.prefetches.load(Ordering::Relaxed),
    );
    // Each chunk is fetched once, most of them ahead of the reader, several per GET.
    let total: u64 = f.files.iter().map(|b| b.len() as u64).sum();
    assert_eq!(m.bytes_fetched.load(Ordering::Relaxed), total);
    assert!(gets < chunks, "{gets} GETs for {chunks} chunks");
    assert!(
        prefetches * 2 > gets,
        "{prefetches} of {gets} GETs were prefetches"
    );
    assert_eq!(f.gets(), gets);
    // A random reader (not where the last read ended) triggers no prefetch.
    let cache = tempfile::tempdir().unwrap();
    let reader = RemoteReader::new(
        f.archive.clone(),
        ReaderConfig {
            cache_dir: cache.path().to_path_buf(),
            chunk_bytes: chunk,
            prefetch_chunks: 3,
            ..ReaderConfig::default()
        },
    )
    .unwrap();
    let manifest = reader.manifest(pid());
    for offset in [200, 3, 100, 7] {
        reader
            .read(&manifest, &f.root, offset, 100, true)
            .await
            .unwrap();
    }
    assert_eq!(reader.metrics().prefetches.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn timestamps_resolve_to_the_first_record_at_or_after_them() {
    let f = fixture().await;
    let reader = f.reader(4096, 0);
    let manifest = reader.manifest(pid());
    // A model: every record's offset and timestamp.
    let mut records = Vec::new();
    for file in &f.files {
        for (_, range) in batch::scan(file, u32::MAX, true).batches {
            for r in decode_records(&file[range], 1 << 20).unwrap() {
                records.push((r.offset, r.timestamp));
            }
        }
    }
    for target in [
        TS0 - 5,
        TS0,
        TS0 + 1,
        TS0 + 77,
        TS0 + 2 * 150 + 1,
        TS0 + 2 * (f.next_offset() - 1),
    ] {
        let expected = records.iter().find(|(_, ts)| *ts >= target).copied();
        let found = reader
            .offset_for_timestamp(&manifest, &f.root, target)
            .await
            .unwrap();
        assert_eq!(found, expected, "target {target}");
    }
    assert_eq!(
        reader
            .offset_for_timestamp(&manifest, &f.root, TS0 + 2 * f.next_offset())
            .await
            .unwrap(),
        None
    );
    // A start offset inside the archive hides what is before it.
    let mut root = f.root.clone();
    root.start_offset = 100;
    assert_eq!(
        reader
            .offset_for_timestamp(&manifest, &root, TS0)
            .await
            .unwrap(),
        Some((100, TS0 + 200))
    );
}

#[tokio::test]
async fn a_corrupted_object_is_reported_and_never_served() {
    let f = fixture().await;
    let key = f.segment_key(1).await;
    let mut bytes = f
        .store
        .inner
        .get(&key)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    f.store.inner.put(&key, bytes.into()).await.unwrap();
    let reader = f.reader(1 << 20, 0);
    let manifest = reader.manifest(pid());
    // Segment 0 reads fine; reading through segment 1 hits the flipped byte.
    let mut offset = 0;
    let error = loop {
        match reader.read(&manifest, &f.root, offset, 4096, true).await {
            Ok(Some(slice)) => offset = slice.next_offset,
            Ok(None) => panic!("read past the corrupted segment"),
            Err(e) => break e,
        }
    };
    assert!(error.is_corrupt(), "{error}");
    assert!(error.to_string().contains(key.as_ref()), "{error}");
    assert!(reader.metrics().corrupt_batches.load(Ordering::Relaxed) >= 1);
}

#[tokio::test]
async fn a_damaged_cache_file_is_dropped_and_fetched_again() {
    let f = fixture().await;
    let reader = f.reader(1 << 20, 0);
    let whole = f.files.concat();
    assert_eq!(replay(&reader, &f, 1 << 20).await, whole);
    // Flip a byte in the middle of every cached chunk (past its header).
    for item in std::fs::read_dir(f.cache_dir.path()).unwrap() {
        let path = item.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() - 100;
        bytes[at] ^= 0x01;
        std::fs::write(&path, bytes).unwrap();
    }
    let before = f.gets();
    let reader = f.reader(1 << 20, 0);
    assert_eq!(replay(&reader, &f, 1 << 20).await, whole);
    assert!(f.gets() > before, "bad chunks came from the store again");
}

#[tokio::test]
async fn a_store_that_does_not_answer_times_out() {
    let f = fixture().await;
    let reader = RemoteReader::new(
        f.archive.clone(),
        ReaderConfig {
            cache_dir: f.cache_dir.path().to_path_buf(),
            read_timeout: Duration::from_millis(300),
            ..ReaderConfig::default()
        },
    )
    .unwrap();
    let manifest = reader.manifest(pid());
    // Warm the sidecar and nodes, then take the store away.
    reader.read(&manifest, &f.root, 0, 10, true).await.unwrap();
    f.store.down.store(true, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let error = reader
        .read(&manifest, &f.root, f.next_offset() - 1, 10, true)
        .await
        .unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(reader.metrics().read_failures.load(Ordering::Relaxed), 1);
    // Back again: reads resume.
    f.store.down.store(false, Ordering::SeqCst);
    assert!(
        reader
            .read(&manifest, &f.root, f.next_offset() - 1, 10, true)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn slices_carry_the_aborted_transactions_among_their_records() {
    let f = fixture().await;
    let reader = f.reader(64 << 10, 0);
    let manifest = f.archive.reader(pid());
    let producers = |offset: i64, max_bytes: u32| {
        let (reader, manifest, root) = (reader.clone(), manifest.clone(), f.root.clone());
        async move {
            let slice = reader
                .read(&manifest, &root, offset, max_bytes, true)
                .await
                .unwrap()
                .unwrap();
            let ids: Vec<i64> = slice.aborted.iter().map(|a| a.producer_id).collect();
            (slice.next_offset, ids)
        }
    };
    assert_eq!(producers(0, 1 << 20).await, (100, vec![7]));
    let (next, ids) = producers(100, 300).await;
    assert!(next <= 150, "a short read ends at {next}");
    assert_eq!(ids, [7]);
    assert_eq!(producers(130, 1 << 20).await, (200, vec![8]));
    assert_eq!(producers(200, 1 << 20).await, (300, vec![]));
}

#[tokio::test]
async fn a_cold_lookup_costs_a_manifest_node_a_sidecar_and_one_chunk() {
    let f = fixture().await;
    // Another node's view of the bucket: nothing cached, not even manifest nodes.
    let archive = Archive::with_remote(
        Remote::with_store(f.store.clone(), Path::from("pre"), "gated".into()),
        "reader".into(),
        ArchiveConfig::default(),
    );
    let cache = tempfile::tempdir().unwrap();
    let reader = RemoteReader::new(
        archive.clone(),
        ReaderConfig {
            cache_dir: cache.path().to_path_buf(),
            chunk_bytes: 4096,
            prefetch_chunks: 8,
            // Smaller than a segment: no segment of the fixture comes whole.
            get_bytes: 4096,
            ..ReaderConfig::default()
        },
    )
    .unwrap();
    let gets = || archive.remote().metrics().gets.load(Ordering::SeqCst);
    let manifest = reader.manifest(pid());
    // Segment 1 starts at offset 100; a consumer's usual 1 MiB limit spans all its chunks.
    let (before, segment_before) = (gets(), f.gets());
    let slice = reader
        .read(&manifest, &f.root, 100, 1 << 20, true)
        .await
        .unwrap()
        .unwrap();
    assert!(!slice.records.is_empty());
    assert_eq!(f.gets() - segment_before, 1, "one data range");
    let first = gets() - before;
    assert!(
        first <= 3,
        "{first} GETs: a manifest node, a sidecar, one chunk at most"
    );
    // A second lookup in the same segment, further on: one GET (sidecar and node cached).
    let (before, segment_before) = (gets(), f.gets());
    let far = reader
        .read(&manifest, &f.root, 190, 1 << 20, true)
        .await
        .unwrap()
        .unwrap();
    let scan = batch::scan(&far.records, u32::MAX, true);
    assert!(scan.batches[0].0.base_offset <= 190 && 190 <= scan.batches[0].0.last_offset());
    assert_eq!(gets() - before, 1);
    assert_eq!(f.gets() - segment_before, 1);
}

#[tokio::test]
async fn two_readers_of_one_partition_at_different_offsets_each_get_prefetch() {
    let f = fixture().await;
    let chunk = 4096u64;
    let reader = f.reader(chunk, 4);
    let manifest = reader.manifest(pid());
    // Interleaved: one reader from the start, one from segment 1 (offset 100).
    let mut cursors = [
        (0i64, Vec::new(), 100i64),
        (100, Vec::new(), f.next_offset()),
    ];
    while cursors.iter().any(|(offset, _, end)| offset < end) {
        for (offset, out, end) in cursors.iter_mut() {
            if *offset >= *end {
                continue;
            }
            let slice = reader
                .read(&manifest, &f.root, *offset, 1000, true)
                .await
                .unwrap()
                .unwrap();
            out.extend_from_slice(&slice.records);
            *offset = slice.next_offset;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let whole = f.files.concat();
    let first_len = f.files[0].len();
    // The first reader read past offset 100 only by whole batches; compare what each covered.
    assert!(whole.starts_with(&cursors[0].1));
    assert!(cursors[0].1.len() >= first_len);
    assert_eq!(cursors[1].1, whole[first_len..].to_vec());
    let m = reader.metrics();
    let (gets, prefetches) = (
        m.chunk_gets.load(Ordering::Relaxed),
        m.prefetches.load(Ordering::Relaxed),
    );
    assert!(
        prefetches * 2 > gets,
        "{prefetches} of {gets} GETs were prefetches: each reader kept its own read-ahead"
    );
}

#[tokio::test]
async fn the_read_ahead_window_widens_while_a_reader_waits_for_a_slow_store() {
    let f = fixture().await;
    f.store.latency_ms.store(20, Ordering::SeqCst);
    let chunk = 4096u64;
    let reader = f.reader(chunk, 2);
    // A reader that never pauses: with 20 ms per GET it outruns two chunks of read-ahead.
    assert_eq!(replay(&reader, &f, 1000).await, f.files.concat());
    let widest = reader.widest_prefetch_window();
    assert!(
        widest > 2 * chunk,
        "the window stayed at {widest} bytes for a reader that kept waiting"
    );
    let m = reader.metrics();
    assert!(m.prefetches.load(Ordering::Relaxed) > 0);
}

#[tokio::test]
async fn a_segment_no_larger_than_one_get_comes_whole() {
    let f = fixture().await;
    let cache = tempfile::tempdir().unwrap();
    let reader = RemoteReader::new(
        f.archive.clone(),
        ReaderConfig {
            cache_dir: cache.path().to_path_buf(),
            chunk_bytes: 4096,
            prefetch_chunks: 0,
            ..ReaderConfig::default()
        },
    )
    .unwrap();
    let manifest = reader.manifest(pid());
    let before = f.gets();
    // Segment 1 (offsets 100..200) spans several 4 KiB chunks; prefetch is off.
    let mut offset = 100;
    while offset < 200 {
        let slice = reader
            .read(&manifest, &f.root, offset, 1000, true)
            .await
            .unwrap()
            .unwrap();
        offset = slice.next_offset;
    }
    assert_eq!(f.gets() - before, 1, "one GET for the whole segment");
    assert!(f.files[1].len() as u64 > 4 * 4096);
}
