//! Lookups by key in the archive: key indexes written with segments, key filters every 32 of
//! them, exact answers (no miss, no false record, aborted records left out), absent keys
//! answered from the filters, segments without an index read whole and indexed afterwards,
//! and key objects deleted with their segments.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Hooked, Hooks};

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path;
use silt_archiver::keys::{self, Found, KeyQuery};
use silt_archiver::{
    Archive, ArchiveConfig, PartitionArchiver, PartitionId, ReaderConfig, Remote, RemoteReader,
    SealedSegment,
};
use silt_index::batch::Codec;
use silt_index::record::{NewRecord, ProducerStamp, encode_batch};
use silt_index::sidecar::AbortedRange;

/// Hooks that note every GET by the kind of object.
#[derive(Debug, Default)]
struct Counted {
    gets: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl Hooks for Counted {
    async fn get(&self, location: &Path) {
        self.gets.lock().unwrap().push(location.to_string());
    }
}

impl Counted {
    /// GETs since the last call whose key ends with `suffix`, and clears the record.
    fn take(&self, suffix: &str) -> usize {
        let mut gets = self.gets.lock().unwrap();
        let n = gets.iter().filter(|k| k.ends_with(suffix)).count();
        gets.clear();
        n
    }
}

fn pid() -> PartitionId {
    PartitionId {
        topic: "customers".into(),
        topic_id: uuid::Uuid::from_u128(42),
        partition: 0,
    }
}

const SEGMENTS: i64 = 40;
const PER_SEGMENT: i64 = 50;
/// Segment holding an aborted transaction of producer 7 (records keyed `customer-5`).
const ABORTED_SEGMENT: i64 = 3;

fn key_of(offset: i64) -> String {
    format!("customer-{}", offset % 97)
}

fn value_of(offset: i64) -> Bytes {
    Bytes::from(format!("order {offset}"))
}

/// Batches of one segment: 5 of 10 records, plain, except in [`ABORTED_SEGMENT`] where the
/// last batch is producer 7's transaction, aborted.
fn segment_bytes(base: i64) -> Vec<u8> {
    let mut bytes = Vec::new();
    for b in 0..5 {
        let first = base + b * 10;
        let records: Vec<NewRecord> = (first..first + 10)
            .map(|o| NewRecord {
                key: Some(Bytes::from(key_of(o))),
                value: Some(value_of(o)),
                timestamp: 1_700_000_000_000 + o,
                ..Default::default()
            })
            .collect();
        if base == ABORTED_SEGMENT * PER_SEGMENT && b == 4 {
            let mut batch = encode_batch(
                first,
                &records,
                Codec::None,
                Some(ProducerStamp {
                    producer_id: 7,
                    producer_epoch: 0,
                    base_sequence: 0,
                }),
            );
            // Transactional: attribute bit 4, and the CRC again.
            batch[22] |= 0x10;
            let crc = crc32c::crc32c(&batch[21..]);
            batch[17..21].copy_from_slice(&crc.to_be_bytes());
            bytes.extend(batch);
        } else {
            bytes.extend(encode_batch(first, &records, Codec::Lz4, None));
        }
    }
    bytes
}

fn aborted(segment: i64) -> Vec<AbortedRange> {
    if segment == ABORTED_SEGMENT {
        let first = segment * PER_SEGMENT + 40;
        vec![AbortedRange {
            producer_id: 7,
            first_offset: first,
            last_offset: first + 9,
        }]
    } else {
        Vec::new()
    }
}

struct Fixture {
    store: Arc<Hooked<Counted>>,
    archive: Archive,
    partition: PartitionArchiver,
    dir: tempfile::TempDir,
    cache: tempfile::TempDir,
}

/// `SEGMENTS` segments archived, the first `unindexed` before the key index was turned on.
async fn fixture(unindexed: i64) -> Fixture {
    let store = Arc::new(Hooked::new(Counted::default()));
    let archive = Archive::with_remote(
        Remote::with_store(store.clone(), Path::from("pre"), "counted".into()),
        "writer".into(),
        ArchiveConfig::default(),
    );
    let mut partition = archive.partition(pid()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    for s in 0..SEGMENTS {
        partition.set_key_index(s >= unindexed);
        let base = s * PER_SEGMENT;
        let bytes = segment_bytes(base);
        let path = dir.path().join(format!("{base:020}.log"));
        std::fs::write(&path, &bytes).unwrap();
        let segment = SealedSegment {
            base_offset: base,
            next_offset: base + PER_SEGMENT,
            size_bytes: bytes.len() as u64,
            path,
            start_position: 0,
            aborted: aborted(s),
        };
        partition.upload(&segment, 1).await.unwrap();
    }
    Fixture {
        store,
        archive,
        partition,
        dir,
        cache: tempfile::tempdir().unwrap(),
    }
}

impl Fixture {
    fn reader(&self) -> Arc<RemoteReader> {
        RemoteReader::new(
            self.archive.clone(),
            ReaderConfig {
                cache_dir: self.cache.path().to_path_buf(),
                cache_bytes: 64 << 20,
                prefetch_chunks: 0,
                read_timeout: Duration::from_secs(5),
                ..ReaderConfig::default()
            },
        )
        .unwrap()
    }

    async fn find(&self, key: &str) -> (Vec<Found>, keys::FindStats) {
        let reader = self.reader();
        let manifest = reader.manifest(pid());
        let mut found = Vec::new();
        let query = KeyQuery {
            key: Bytes::from(key.to_string()),
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
        (found, stats)
    }
}

/// Every committed record with key `customer-{k}`, by offset.
fn expected(k: i64) -> Vec<(i64, Bytes)> {
    (0..SEGMENTS * PER_SEGMENT)
        .filter(|o| o % 97 == k)
        .filter(|o| {
            !(ABORTED_SEGMENT * PER_SEGMENT + 40..ABORTED_SEGMENT * PER_SEGMENT + 50).contains(o)
        })
        .map(|o| (o, value_of(o)))
        .collect()
}

fn got(found: &[Found]) -> Vec<(i64, Bytes)> {
    found
        .iter()
        .map(|f| (f.offset, f.value.clone().unwrap()))
        .collect()
}

#[tokio::test]
async fn every_record_of_a_key_is_found_across_segments_and_no_other() {
    let f = fixture(0).await;
    for k in [0, 5, 41, 96] {
        f.store.take("");
        let (found, stats) = f.find(&format!("customer-{k}")).await;
        assert_eq!(got(&found), expected(k), "key customer-{k}");
        assert!(
            found
                .iter()
                .all(|r| r.key == format!("customer-{k}").as_bytes())
        );
        assert_eq!(
            (stats.segments, stats.indexed, stats.unindexed),
            (40, 40, 0)
        );
        // 32 segments in the filter written at the 32nd upload; the last 8 checked one by one.
        assert_eq!(stats.filtered, 32);
        // Segment GETs only where the key is: ~21 records over 40 segments.
        let segment_gets = f.store.take(".log");
        assert!(
            segment_gets <= found.len() + 1,
            "{segment_gets} segment GETs for {} records",
            found.len()
        );
    }
    // The aborted transaction's records (key customer-5 among them) never appear.
    let (found, _) = f.find("customer-5").await;
    assert!(found.iter().all(|r| !(190..200).contains(&r.offset)));
    assert!(expected(5).len() < (0..SEGMENTS * PER_SEGMENT).filter(|o| o % 97 == 5).count());
}

#[tokio::test]
async fn an_absent_key_is_answered_from_the_filter_without_reading_segments() {
    let f = fixture(0).await;
    f.store.take("");
    let (found, stats) = f.find("nobody-at-all").await;
    assert!(found.is_empty());
    let gets = f.store.gets.lock().unwrap().clone();
    assert_eq!(
        gets.iter().filter(|k| k.ends_with(".log")).count(),
        0,
        "{gets:?}"
    );
    // The filter's table and one row; the 8 segments after it through their own index
    // (header and fence; no entry block can hold a hash that is not there, or one at most).
    assert_eq!(
        gets.iter().filter(|k| k.ends_with(".kf")).count(),
        2,
        "{gets:?}"
    );
    let index_gets = gets.iter().filter(|k| k.ends_with(".keys")).count();
    assert!(index_gets <= 8 * 2, "{index_gets} key index GETs: {gets:?}");
    // A filter's false positive reads one more index, rarely: far fewer than 32.
    assert!(stats.indexes_read <= 8 + 3, "{stats:?}");
}

#[tokio::test]
async fn segments_without_an_index_are_read_whole_then_indexed() {
    let f = fixture(10).await;
    let (found, stats) = f.find("customer-41").await;
    assert_eq!(got(&found), expected(41));
    assert_eq!((stats.indexed, stats.unindexed), (30, 10));
    // Indexing them: the next lookup reads no segment whole.
    let reader = f.reader();
    let manifest = reader.manifest(pid());
    let root = manifest.latest_root().await.unwrap();
    let present = keys::list(&manifest).await.unwrap();
    for entry in keys::segments(&manifest, &root).await.unwrap() {
        let name = (
            entry.meta.base_offset,
            entry.meta.last_offset,
            entry.object_id,
        );
        if !present.indexes.contains_key(&name) {
            let n = keys::index_segment(&reader, &manifest, &root, &entry)
                .await
                .unwrap();
            // Every record has a key; those of the aborted transaction are left out.
            let aborted_records = if name.0 == ABORTED_SEGMENT * PER_SEGMENT {
                10
            } else {
                0
            };
            assert_eq!(
                n,
                PER_SEGMENT as u64 - aborted_records,
                "records indexed in segment {name:?}"
            );
        }
    }
    // 30 were indexed on upload, fewer than a filter's 32: none yet. Now all 40 are, in a
    // filter of 32 and, asked for all, one of the last 8.
    assert_eq!(
        keys::refresh_filters(&manifest, &root, true).await.unwrap(),
        2
    );
    let (found, stats) = f.find("customer-41").await;
    assert_eq!(got(&found), expected(41));
    assert_eq!(
        (stats.indexed, stats.unindexed, stats.filtered),
        (40, 0, 40)
    );
}

#[tokio::test]
async fn key_objects_go_with_their_segments() {
    let mut f = fixture(0).await;
    let before = keys::list(f.partition.manifest().reader()).await.unwrap();
    assert_eq!((before.indexes.len(), before.filters.len()), (40, 1));
    // Retention drops the first 35 segments: their indexes go with them; the filter over the
    // first 32 goes at the next refresh.
    f.partition.drop_before(35 * PER_SEGMENT, 2).await.unwrap();
    f.partition.commit(3).await.unwrap();
    let bytes = segment_bytes(SEGMENTS * PER_SEGMENT);
    let path = f.dir.path().join("next.log");
    std::fs::write(&path, &bytes).unwrap();
    f.partition.set_key_index(true);
    f.partition
        .upload(
            &SealedSegment {
                base_offset: SEGMENTS * PER_SEGMENT,
                next_offset: (SEGMENTS + 1) * PER_SEGMENT,
                size_bytes: bytes.len() as u64,
                path,
                start_position: 0,
                aborted: Vec::new(),
            },
            4,
        )
        .await
        .unwrap();
    let after = keys::list(f.partition.manifest().reader()).await.unwrap();
    assert_eq!(after.indexes.len(), 6, "{:?}", after.indexes.keys());
    assert!(after.filters.is_empty());
    let (found, _) = f.find("customer-41").await;
    let live: Vec<(i64, Bytes)> = (35 * PER_SEGMENT..(SEGMENTS + 1) * PER_SEGMENT)
        .filter(|o| o % 97 == 41)
        .map(|o| (o, value_of(o)))
        .collect();
    assert_eq!(got(&found), live);
}
