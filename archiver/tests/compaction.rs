//! Compaction of archived segments on an in-memory store: what survives, the swap by one
//! root, the grace period of replaced objects, and a writer stopped at any PUT of a pass.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Hooked, Hooks};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use silt_archiver::compaction::ArchiveCompaction;
use silt_archiver::{Archive, ArchiveConfig, PartitionId, Remote, SealedSegment};
use silt_index::batch::Codec;
use silt_index::manifest::SegmentEntry;
use silt_index::record::{NewRecord, decode_records, encode_batch};

fn pid() -> PartitionId {
    PartitionId {
        topic: "table".into(),
        topic_id: uuid::Uuid::from_u128(9),
        partition: 0,
    }
}

type Table = BTreeMap<i64, (String, Option<String>)>;

/// Writes segments of keyed updates (`keys` keys, `rounds` rounds, two records a batch, the
/// last round deleting every fourth key); returns them and what they hold.
fn segments(
    dir: &std::path::Path,
    keys: usize,
    rounds: usize,
    per_segment: usize,
) -> (Vec<SealedSegment>, Table) {
    let mut written = Table::new();
    let mut batches: Vec<Vec<u8>> = Vec::new();
    let mut offset = 0i64;
    for round in 0..rounds {
        for pair in (0..keys).collect::<Vec<_>>().chunks(2) {
            let records: Vec<NewRecord> = pair
                .iter()
                .map(|k| {
                    let value = (round + 1 < rounds || k % 4 != 0).then(|| format!("k{k}@{round}"));
                    written.insert(offset + (k % 2) as i64, (format!("k{k}"), value.clone()));
                    NewRecord {
                        key: Some(Bytes::from(format!("k{k}"))),
                        value: value.map(Bytes::from),
                        headers: vec![],
                        timestamp: 1_000 + offset,
                    }
                })
                .collect();
            let count = records.len() as i64;
            batches.push(encode_batch(offset, &records, Codec::Lz4, None));
            offset += count;
        }
    }
    let mut out = Vec::new();
    for chunk in batches.chunks(per_segment) {
        let bytes: Vec<u8> = chunk.concat();
        let base = i64::from_be_bytes(chunk[0][..8].try_into().unwrap());
        let last = chunk.last().unwrap();
        let header = silt_index::BatchHeader::parse(last, u32::MAX)
            .unwrap()
            .unwrap();
        let path = dir.join(format!("{base:020}.log"));
        std::fs::write(&path, &bytes).unwrap();
        out.push(SealedSegment {
            base_offset: base,
            next_offset: header.next_offset(),
            size_bytes: bytes.len() as u64,
            path,
            start_position: 0,
            aborted: Vec::new(),
        });
    }
    (out, written)
}

fn newest(written: &Table) -> Table {
    let mut by_key: BTreeMap<&str, i64> = BTreeMap::new();
    for (offset, (key, _)) in written {
        by_key.insert(key, *offset);
    }
    by_key.values().map(|o| (*o, written[o].clone())).collect()
}

fn rules(force: bool, key_map_bytes: u64) -> ArchiveCompaction {
    ArchiveCompaction {
        key_map_bytes,
        segment_bytes: 4096,
        index_interval_bytes: 256,
        min_dirty_ratio: 0.5,
        delete_retention_ms: 1_000_000,
        min_lag_ms: 0,
        grace_ms: 60_000,
        force,
        key_index: false,
    }
}

/// Every record the archive's current root names, and its entries.
async fn read_archive(archive: &Archive) -> (Table, Vec<SegmentEntry>) {
    let reader = archive.reader(pid());
    let root = reader.latest_root().await.unwrap();
    let entries = reader.entries(&root).await.unwrap();
    let mut table = Table::new();
    let mut expected_base = root.start_offset;
    for entry in &entries {
        assert_eq!(
            entry.meta.base_offset, expected_base,
            "entries stay contiguous"
        );
        expected_base = entry.meta.last_offset + 1;
        let bytes = archive
            .remote()
            .get(&reader.segment_key(entry))
            .await
            .unwrap();
        assert_eq!(entry.meta.crc32c, crc32c::crc32c(&bytes));
        let scan = silt_index::batch::scan(&bytes, u32::MAX, true);
        assert!(scan.stop.is_none());
        assert_eq!(
            scan.batches.last().unwrap().0.next_offset(),
            entry.meta.last_offset + 1,
            "a segment's last batch ends where its entry says"
        );
        for (_, range) in scan.batches {
            for record in decode_records(&bytes[range], 1 << 20).unwrap() {
                let key = String::from_utf8(record.key.unwrap().to_vec()).unwrap();
                let value = record.value.map(|v| String::from_utf8(v.to_vec()).unwrap());
                table.insert(record.offset, (key, value));
            }
        }
    }
    assert_eq!(expected_base, root.next_offset);
    (table, entries)
}

#[tokio::test]
async fn the_archive_compacts_in_passes_and_swaps_by_one_root() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let archive = Archive::with_remote(
        Remote::with_store(store.clone(), Path::from("pre"), "test".into()),
        "w1".into(),
        ArchiveConfig::default(),
    );
    let mut partition = archive.partition(pid()).await.unwrap();
    let (segments, written) = segments(dir.path(), 40, 10, 8);
    for segment in &segments {
        partition.upload(segment, 5).await.unwrap();
    }
    let before = partition.root().clone();
    let (table, old_entries) = read_archive(&archive).await;
    assert_eq!(table, written);

    // A key map of 16 keys: several passes.
    let mut now = 10_000;
    let mut passes = 0;
    while let Some(report) = partition.compact(&rules(true, 16 * 40), now).await.unwrap() {
        passes += 1;
        now += 1;
        if report.compacted_to >= before.next_offset {
            break;
        }
        assert!(passes < 40);
    }
    assert!(passes > 1, "{passes} passes");
    let (table, entries) = read_archive(&archive).await;
    assert_eq!(
        table,
        newest(&written),
        "the newest of every key, at its offset"
    );
    let root = partition.root().clone();
    assert!(entries.len() < old_entries.len(), "small segments merged");
    assert!(
        root.bytes * 3 < before.bytes,
        "{} of {}",
        root.bytes,
        before.bytes
    );
    assert_eq!(
        (root.start_offset, root.next_offset),
        (before.start_offset, before.next_offset)
    );

    // The replaced objects stay for the grace period, then go with a later commit.
    let reader = archive.reader(pid());
    let old_key = reader.segment_key(&old_entries[0]);
    assert!(!root.deferred_segments.is_empty());
    assert!(
        store.head(&old_key).await.is_ok(),
        "kept during the grace period"
    );
    partition.commit(now + 120_000).await.unwrap();
    assert!(store.head(&old_key).await.is_err(), "deleted after it");
    assert!(partition.root().deferred_segments.is_empty());

    // Tombstones go once past delete.retention.ms (and compacted once before).
    partition
        .compact(&rules(false, 1 << 20), now + 2_000_000)
        .await
        .unwrap();
    let live: Table = newest(&written)
        .into_iter()
        .filter(|(_, (_, v))| v.is_some())
        .collect();
    assert_eq!(read_archive(&archive).await.0, live);
}

/// Issue #18: a topic with key indexes keeps one beside every segment compaction writes, and a
/// lookup finds the key's surviving record through it, reading no segment whole; the record
/// walk Parquet exports use reads the compacted segments exactly.
#[tokio::test]
async fn compacted_segments_keep_a_key_index() {
    use silt_archiver::keys::{self, KeyQuery};
    use silt_archiver::{ReaderConfig, RemoteReader};

    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let archive = Archive::with_remote(
        Remote::with_store(store.clone(), Path::from("pre"), "test".into()),
        "w1".into(),
        ArchiveConfig::default(),
    );
    let mut partition = archive.partition(pid()).await.unwrap();
    partition.set_key_index(true);
    let (segments, written) = segments(dir.path(), 40, 10, 8);
    for segment in &segments {
        partition.upload(segment, 5).await.unwrap();
    }
    let rules = ArchiveCompaction {
        key_index: true,
        ..rules(true, 1 << 20)
    };
    partition.compact(&rules, 10_000).await.unwrap();
    let (table, entries) = read_archive(&archive).await;
    assert_eq!(table, newest(&written));

    let reader = RemoteReader::new(
        archive.clone(),
        ReaderConfig {
            cache_dir: dir.path().join("cache"),
            ..ReaderConfig::default()
        },
    )
    .unwrap();
    let manifest = reader.manifest(pid());
    // What an export reads of the compacted segments, gaps and all, is what they hold.
    let root = manifest.latest_root().await.unwrap();
    let mut walked = Table::new();
    for e in &entries {
        keys::each_record(&reader, &manifest, &root, e, &mut |r| {
            let key = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
            let value = r.value.map(|v| String::from_utf8(v.to_vec()).unwrap());
            walked.insert(r.offset, (key, value));
        })
        .await
        .unwrap();
    }
    assert_eq!(walked, table);
    let indexes = keys::list(&manifest).await.unwrap().indexes;
    for e in &entries {
        let name = (e.meta.base_offset, e.meta.last_offset, e.object_id);
        assert!(indexes.contains_key(&name), "{name:?} has a key index");
    }
    for (offset, (key, value)) in table.iter().take(5) {
        let mut found = Vec::new();
        let query = KeyQuery {
            key: Bytes::from(key.clone()),
            from_ms: None,
            to_ms: None,
        };
        let stats = keys::find(
            &reader,
            &manifest,
            &query,
            &mut |f| {
                found.push(f);
                std::ops::ControlFlow::Continue(())
            },
            &mut |_, _| {},
        )
        .await
        .unwrap();
        assert_eq!(stats.unindexed, 0, "{stats:?}");
        let got: Vec<(i64, Option<String>)> = found
            .iter()
            .map(|f| {
                let value = f
                    .value
                    .as_ref()
                    .map(|v| String::from_utf8(v.to_vec()).unwrap());
                (f.offset, value)
            })
            .collect();
        assert_eq!(got, vec![(*offset, value.clone())], "key {key}");
    }
}

/// Hooks whose PUTs fail from the `n`th on (a writer killed there).
#[derive(Debug)]
struct DiesAtPut {
    puts: AtomicU64,
    dies_at: AtomicU64,
}

impl Hooks for DiesAtPut {
    fn put(&self, _location: &Path) -> Result<(), &'static str> {
        let n = self.puts.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= self.dies_at.load(Ordering::SeqCst) {
            return Err("the writer is gone");
        }
        Ok(())
    }
}

/// Issue #13: a compaction pass stopped at any of its PUTs leaves the archive as it was (the
/// old root, every object it names), and the next writer compacts it whole.
#[tokio::test]
async fn a_pass_stopped_at_any_put_leaves_the_old_archive_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (segments, written) = segments(dir.path(), 12, 6, 4);
    let mut cut = 1;
    loop {
        let store = Arc::new(Hooked::new(DiesAtPut {
            puts: AtomicU64::new(0),
            dies_at: AtomicU64::new(u64::MAX),
        }));
        let dyn_store: Arc<dyn ObjectStore> = store.clone();
        let archive = Archive::with_remote(
            Remote::with_store(dyn_store, Path::from("pre"), "test".into()),
            "w1".into(),
            ArchiveConfig::default(),
        );
        let mut partition = archive.partition(pid()).await.unwrap();
        for segment in &segments {
            partition.upload(segment, 5).await.unwrap();
        }
        let puts_before = store.puts.load(Ordering::SeqCst);
        store.dies_at.store(puts_before + cut, Ordering::SeqCst);
        let outcome = partition.compact(&rules(true, 1 << 20), 10_000).await;
        store.dies_at.store(u64::MAX, Ordering::SeqCst);
        let (table, _) = read_archive(&archive).await;
        if outcome.is_ok() {
            assert_eq!(table, newest(&written));
            assert!(cut > 2, "a pass makes PUTs");
            break;
        }
        assert_eq!(table, written, "cut at PUT {cut}: the old archive, whole");
        // A new writer (after the crash) compacts it.
        let mut partition = archive.partition(pid()).await.unwrap();
        partition
            .compact(&rules(true, 1 << 20), 20_000)
            .await
            .unwrap();
        assert_eq!(
            read_archive(&archive).await.0,
            newest(&written),
            "cut at PUT {cut}"
        );
        cut += 1;
        assert!(cut < 100);
    }
}
