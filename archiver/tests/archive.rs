//! The archiver on in-memory and local-directory stores: uploads, the manifest tree at scale,
//! fencing, crash leftovers, retention.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Hooked, Hooks};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use silt_archiver::manifest::Manifest;
use silt_archiver::{Archive, ArchiveConfig, ArchiveError, PartitionId, Remote, SealedSegment};
use silt_index::batch::Codec;
use silt_index::manifest::SegmentEntry;
use silt_index::record::{NewRecord, encode_batch};
use silt_index::segment::SegmentMeta;
use silt_index::sidecar::Sidecar;

fn pid() -> PartitionId {
    PartitionId {
        topic: "t".into(),
        topic_id: uuid::Uuid::from_u128(7),
        partition: 0,
    }
}

fn archive(store: Arc<dyn ObjectStore>, writer: &str) -> Archive {
    Archive::with_remote(
        Remote::with_store(store, Path::from("pre"), "test".into()),
        writer.into(),
        ArchiveConfig::default(),
    )
}

fn entry(i: i64) -> SegmentEntry {
    SegmentEntry {
        meta: SegmentMeta {
            base_offset: i * 10,
            last_offset: i * 10 + 9,
            first_timestamp: 1_000 + i * 5,
            max_timestamp: 1_000 + i * 5 + 4,
            record_count: 10,
            size_bytes: 1000,
            leader_epoch: 0,
            crc32c: i as u32,
        },
        uploaded_ms: 1,
        object_id: i as u64,
    }
}

/// Writes a segment file of `batches` batches of 3 records from `base`; returns it described.
fn segment_file(
    dir: &std::path::Path,
    base: i64,
    batches: usize,
    value_len: usize,
) -> SealedSegment {
    let mut bytes = Vec::new();
    let mut offset = base;
    for b in 0..batches {
        let records: Vec<NewRecord> = (0..3)
            .map(|r| NewRecord {
                value: Some(Bytes::from(vec![b as u8; value_len])),
                timestamp: 1_700_000_000_000 + (b * 3 + r) as i64,
                ..Default::default()
            })
            .collect();
        bytes.extend(encode_batch(offset, &records, Codec::None, None));
        offset += 3;
    }
    let path = dir.join(format!("{base:020}.log"));
    std::fs::write(&path, &bytes).unwrap();
    SealedSegment {
        base_offset: base,
        next_offset: offset,
        size_bytes: bytes.len() as u64,
        path,
        start_position: 0,
        aborted: Vec::new(),
    }
}

#[tokio::test]
async fn uploaded_segments_and_sidecars_match_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let archive = archive(store.clone(), "w1");
    let mut partition = archive.partition(pid()).await.unwrap();
    let small = segment_file(dir.path(), 0, 20, 100);
    let large = segment_file(dir.path(), small.next_offset, 400, 60_000); // ~72 MB: multipart
    for segment in [&small, &large] {
        let entry = partition.upload(segment, 5).await.unwrap();
        let reader = archive.reader(pid());
        let object = store
            .get(&reader.segment_key(&entry))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(
            object,
            std::fs::read(&segment.path).unwrap(),
            "the segment goes up unchanged"
        );
        assert_eq!(entry.meta.crc32c, crc32c::crc32c(&object));
        let sidecar = Sidecar::decode(
            &store
                .get(&reader.sidecar_key(&entry))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(sidecar.meta, entry.meta);
        assert_eq!(
            sidecar.meta.record_count,
            (segment.next_offset - segment.base_offset) as u64
        );
        assert!(!sidecar.offset_index.is_empty());
    }
    // A segment that does not follow the archive is refused.
    let stray = segment_file(dir.path(), 5_000, 1, 10);
    assert!(matches!(
        partition.upload(&stray, 5).await,
        Err(ArchiveError::Local { .. })
    ));
    // After a restart the manifest knows both, and lookups find them.
    let partition = archive.partition(pid()).await.unwrap();
    assert_eq!(partition.archived_next_offset(), large.next_offset);
    let root = partition.root().clone();
    let reader = archive.reader(pid());
    assert_eq!(
        reader
            .find_offset(&root, 61)
            .await
            .unwrap()
            .unwrap()
            .meta
            .base_offset,
        small.next_offset
    );
    assert_eq!(
        reader
            .find_offset(&root, 59)
            .await
            .unwrap()
            .unwrap()
            .meta
            .base_offset,
        0
    );
    assert!(
        reader
            .find_offset(&root, large.next_offset)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_million_segments_stay_two_levels_deep_and_lookups_match_a_model() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let archive = archive(store.clone(), "w1");
    let mut manifest = Manifest::load(archive.reader(pid()), "w1".into())
        .await
        .unwrap();
    let total = 1024 * 1024 + 3000;
    let mut i = 0i64;
    while i < total {
        for _ in 0..50_000.min(total - i) {
            manifest.append(entry(i));
            i += 1;
        }
        manifest.commit(1).await.unwrap();
    }
    let root = manifest.root().clone();
    assert_eq!(
        (root.segments, root.next_offset, root.depth),
        (total as u64, total * 10, 2)
    );
    // Reload from the bucket and keep appending: the right-hand path is rebuilt.
    let mut manifest = Manifest::load(archive.reader(pid()), "w1".into())
        .await
        .unwrap();
    manifest.append(entry(total));
    manifest.commit(2).await.unwrap();
    let root = manifest.root().clone();
    let fresh = Archive::with_remote(
        Remote::with_store(store.clone(), Path::from("pre"), "t".into()),
        "reader".into(),
        ArchiveConfig::default(),
    );
    let reader = fresh.reader(pid());
    let gets_before = silt_archiver::remote::RemoteMetrics::get(&fresh.remote().metrics().gets);
    for probe in [
        0,
        7,
        10_239,
        10_240,
        5_000_003,
        total * 10 - 1,
        total * 10 + 9,
    ] {
        let found = reader.find_offset(&root, probe).await.unwrap().unwrap();
        assert_eq!(found.meta.base_offset, probe / 10 * 10, "offset {probe}");
    }
    let gets =
        silt_archiver::remote::RemoteMetrics::get(&fresh.remote().metrics().gets) - gets_before;
    assert!(
        gets <= 7 * 3,
        "a lookup reads one node per level: {gets} GETs for 7 lookups"
    );
    for (ts, expected) in [
        (0, 0),
        (1_004, 0),
        (1_005, 1),
        (1_000 + 5 * 777_777 + 2, 777_777),
    ] {
        assert_eq!(
            reader
                .find_timestamp(&root, ts)
                .await
                .unwrap()
                .unwrap()
                .meta
                .base_offset,
            expected * 10,
            "timestamp {ts}"
        );
    }
    assert!(fresh.cache().bytes() <= ArchiveConfig::default().node_cache_bytes);
}

#[tokio::test]
async fn a_second_writer_is_fenced() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let first = archive(store.clone(), "writer-a");
    let second = archive(store.clone(), "writer-b");
    let mut a = Manifest::load(first.reader(pid()), "writer-a".into())
        .await
        .unwrap();
    let mut b = Manifest::load(second.reader(pid()), "writer-b".into())
        .await
        .unwrap();
    a.append(entry(0));
    a.commit(1).await.unwrap();
    b.append(entry(0));
    assert!(matches!(
        b.commit(1).await,
        Err(ArchiveError::Fenced { .. })
    ));
    assert!(b.is_fenced());
    a.append(entry(1));
    a.commit(2).await.unwrap();
    let root = first.reader(pid()).latest_root().await.unwrap();
    assert_eq!((root.writer.as_str(), root.next_offset), ("writer-a", 20));
}

/// A cluster restored from another's bucket adopts its root only where its own log starts
/// (it holds nothing the archive does not); a cluster whose log starts before another
/// cluster's archived end (the original, restarted after a fail-over) is fenced on loading.
#[tokio::test]
async fn another_clusters_root_is_adopted_only_where_the_local_log_starts() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let original = archive(store.clone(), "a/0/x");
    let mut a = Manifest::load_at(original.reader(pid()), "a/0/x".into(), 3, 0)
        .await
        .unwrap();
    for i in 0..5 {
        a.append(entry(i));
    }
    a.commit(1).await.unwrap();
    // B restores: its log starts at the archive's end, 50. It adopts A's root and goes on.
    let restored = archive(store.clone(), "b/0/y");
    let mut b = Manifest::load_at(restored.reader(pid()), "b/0/y".into(), 1, 50)
        .await
        .unwrap();
    assert_eq!(b.next_offset(), 50);
    b.append(entry(5));
    b.commit(2).await.unwrap();
    // A restarts with a log that starts at 30 (records 30..50 archived, and its own after):
    // B's root ends at 60, past 30; A is fenced rather than take B's 50..60 for its own.
    assert!(matches!(
        Manifest::load_at(original.reader(pid()), "a/0/x".into(), 4, 30).await,
        Err(ArchiveError::Fenced { .. })
    ));
    // B, restarting, loads its own root at any start.
    let again = Manifest::load_at(restored.reader(pid()), "b/0/y".into(), 2, 55)
        .await
        .unwrap();
    assert_eq!(again.next_offset(), 60);
    // A cluster restored at 50 after B wrote on to 60 is fenced as well.
    assert!(matches!(
        Manifest::load_at(archive(store, "c/0/z").reader(pid()), "c/0/z".into(), 1, 50).await,
        Err(ArchiveError::Fenced { .. })
    ));
}

#[tokio::test]
async fn within_a_cluster_the_higher_term_wins_whoever_writes_first() {
    // Two leaders of one partition, one deposed (term 5, paused, then woken) and its
    // successor (term 6), both loaded the same root.
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let archive = archive(store.clone(), "c/0/x");
    let mut base = Manifest::load_at(archive.reader(pid()), "c/0/x".into(), 4, i64::MAX)
        .await
        .unwrap();
    base.append(entry(0));
    base.commit(1).await.unwrap();
    let mut old = Manifest::load_at(archive.reader(pid()), "c/1/y".into(), 5, i64::MAX)
        .await
        .unwrap();
    let mut new = Manifest::load_at(archive.reader(pid()), "c/2/z".into(), 6, i64::MAX)
        .await
        .unwrap();
    // The deposed leader gets its (committed, so correct) segment in first: the new leader
    // is not fenced by it, it reloads and carries on from there.
    old.append(entry(1));
    old.commit(2).await.unwrap();
    new.append(entry(1));
    let error = new.commit(2).await.unwrap_err();
    assert!(
        matches!(error, ArchiveError::Superseded { term: 5, .. }),
        "{error}"
    );
    assert!(!new.is_fenced());
    let mut new = Manifest::load_at(archive.reader(pid()), "c/2/z".into(), 6, i64::MAX)
        .await
        .unwrap();
    assert_eq!(new.next_offset(), 20);
    new.append(entry(2));
    new.commit(3).await.unwrap();
    // Now the deposed leader is fenced, on its next write and on any reload.
    old.append(entry(2));
    let error = old.commit(3).await.unwrap_err();
    assert!(matches!(error, ArchiveError::Fenced { .. }), "{error}");
    assert!(old.is_fenced());
    let reload = Manifest::load_at(archive.reader(pid()), "c/1/y".into(), 5, i64::MAX).await;
    assert!(matches!(reload, Err(ArchiveError::Fenced { .. })));
    let root = archive.reader(pid()).latest_root().await.unwrap();
    assert_eq!(
        (root.writer.as_str(), root.term, root.next_offset),
        ("c/2/z", 6, 30)
    );
}

#[tokio::test]
async fn a_root_without_a_term_reads_as_term_zero() {
    // Roots written before terms were recorded.
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let archive = archive(store.clone(), "c/0/x");
    let mut m = Manifest::load(archive.reader(pid()), "c/0/x".into())
        .await
        .unwrap();
    m.append(entry(0));
    m.commit(1).await.unwrap();
    let key = Path::from("pre");
    let roots: Vec<ObjectMeta> = {
        use futures::TryStreamExt;
        store.list(Some(&key)).try_collect().await.unwrap()
    };
    let root_key = roots
        .iter()
        .map(|m| m.location.clone())
        .find(|l| l.as_ref().contains("roots/"))
        .unwrap();
    let mut json: serde_json::Value =
        serde_json::from_slice(&store.get(&root_key).await.unwrap().bytes().await.unwrap())
            .unwrap();
    json.as_object_mut().unwrap().remove("term");
    store
        .put(
            &root_key,
            PutPayload::from(serde_json::to_vec(&json).unwrap()),
        )
        .await
        .unwrap();
    let next = Manifest::load_at(archive.reader(pid()), "c/1/y".into(), 1, i64::MAX)
        .await
        .unwrap();
    assert_eq!((next.root().term, next.next_offset()), (0, 10));
}

#[tokio::test]
async fn a_writer_whose_tree_was_collected_by_another_is_fenced() {
    // Cluster B recovered the partition from the root cluster A still writes; A commits first
    // and collects the nodes B's view of the tree still points at.
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let first = archive(store.clone(), "a/0/x");
    let mut a = Manifest::load(first.reader(pid()), "a/0/x".into())
        .await
        .unwrap();
    a.append(entry(0));
    a.commit(1).await.unwrap();
    let second = archive(store.clone(), "b/0/y");
    let mut b = Manifest::load(second.reader(pid()), "b/0/y".into())
        .await
        .unwrap();
    a.append(entry(1));
    a.commit(2).await.unwrap();
    b.append(entry(1));
    let error = b.commit(2).await.unwrap_err();
    assert!(matches!(error, ArchiveError::Fenced { .. }), "{error}");
    assert!(b.is_fenced());
    let root = first.reader(pid()).latest_root().await.unwrap();
    assert_eq!((root.writer.as_str(), root.next_offset), ("a/0/x", 20));
}

#[tokio::test]
async fn a_losing_writer_never_overwrites_the_winners_nodes() {
    // Two writers from one root (the original cluster and one that recovered the partition)
    // each commit a different segment at the same offset: they allocate the same node ids.
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let first = archive(store.clone(), "a/0/x");
    let mut a = Manifest::load(first.reader(pid()), "a/0/x".into())
        .await
        .unwrap();
    a.append(entry(0));
    a.commit(1).await.unwrap();
    let second = archive(store.clone(), "b/0/y");
    let mut b = Manifest::load(second.reader(pid()), "b/0/y".into())
        .await
        .unwrap();
    b.append(entry(1));
    b.commit(2).await.unwrap();
    let mut theirs = entry(1);
    theirs.object_id = 99;
    theirs.meta.crc32c = 99;
    a.append(theirs);
    let error = a.commit(2).await.unwrap_err();
    assert!(matches!(error, ArchiveError::Fenced { .. }), "{error}");
    // The winner's tree is intact: its root and its nodes agree.
    let reader = second.reader(pid());
    let root = reader.latest_root().await.unwrap();
    assert_eq!((root.writer.as_str(), root.next_offset), ("b/0/y", 20));
    assert_eq!(reader.find_offset(&root, 15).await.unwrap(), Some(entry(1)));
}

#[tokio::test]
async fn retention_drops_the_oldest_segments_and_their_objects() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let archive = archive(store.clone(), "w");
    let mut manifest = Manifest::load(archive.reader(pid()), "w".into())
        .await
        .unwrap();
    for i in 0..3000 {
        manifest.append(entry(i));
    }
    manifest.commit(1).await.unwrap();
    let dropped = manifest.drop_before(12_345, 2).await.unwrap();
    assert_eq!(dropped.len(), 1234, "segments ending before 12345");
    let root = manifest.root().clone();
    assert_eq!((root.start_offset, root.segments), (12_345, 3000 - 1234));
    let reader = archive.reader(pid());
    assert!(reader.find_offset(&root, 12_339).await.unwrap().is_none());
    assert_eq!(
        reader
            .find_offset(&root, 12_345)
            .await
            .unwrap()
            .unwrap()
            .meta
            .base_offset,
        12_340
    );
    // The tree still appends, and its replaced nodes are gone from the bucket.
    manifest.append(entry(3000));
    manifest.commit(3).await.unwrap();
    let nodes = store
        .list(Some(&archive.layout().nodes_dir(&pid())))
        .count()
        .await;
    assert!(nodes <= 4, "only live nodes remain: {nodes}");
    let mut seen = 0;
    reader
        .walk(
            manifest.root(),
            &mut |_| {
                seen += 1;
                true
            },
            &mut |_| {},
        )
        .await
        .unwrap();
    assert_eq!(seen, 3000 - 1234 + 1);
}

#[tokio::test]
async fn a_large_cut_goes_in_bounded_passes() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let archive = archive(store.clone(), "w");
    let mut manifest = Manifest::load(archive.reader(pid()), "w".into())
        .await
        .unwrap();
    let layout = archive.layout().clone();
    for i in 0..3000 {
        let e = entry(i);
        let (base, last, object) = (e.meta.base_offset, e.meta.last_offset, e.object_id);
        for path in [
            layout.segment(&pid(), base, last, object),
            layout.sidecar(&pid(), base, last, object),
        ] {
            store
                .put(&path, PutPayload::from_static(b"x"))
                .await
                .unwrap();
        }
        manifest.append(e);
    }
    manifest.commit(1).await.unwrap();
    let segment_objects = || async {
        store
            .list(Some(&archive.layout().segments_dir(&pid())))
            .count()
            .await
    };
    let before = segment_objects().await;
    assert_eq!(before, 6000);
    // A cut over 2,234 segments: 1,000, then 1,000, then the 234 left, then nothing.
    let mut passes = Vec::new();
    loop {
        let dropped = manifest.drop_before_at_most(22_345, 1000, 2).await.unwrap();
        if dropped.is_empty() {
            break;
        }
        passes.push((dropped.len(), manifest.root().start_offset));
        assert!(
            manifest.root().garbage_segments.len() <= 1000,
            "a root names at most one pass of objects to delete"
        );
    }
    assert_eq!(passes, vec![(1000, 10_000), (1000, 20_000), (234, 22_345)]);
    assert_eq!(manifest.root().segments, 3000 - 2234);
    // Each dropped segment's objects (data and sidecar) went from the bucket.
    assert_eq!(segment_objects().await, before - 2 * 2234);
}

use futures::StreamExt;

/// Hooks that fail writes under "/roots/" while `fail_roots` is set, like a crash between
/// uploading a segment and committing the manifest.
#[derive(Debug)]
struct Faulty {
    fail_roots: AtomicBool,
}

impl Hooks for Faulty {
    fn put(&self, location: &Path) -> Result<(), &'static str> {
        if self.fail_roots.load(Ordering::SeqCst) && location.as_ref().contains("/roots/") {
            return Err("injected failure");
        }
        Ok(())
    }
}

#[tokio::test]
async fn an_interrupted_upload_leaves_nothing_behind_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let faulty = Arc::new(Hooked::new(Faulty {
        fail_roots: AtomicBool::new(false),
    }));
    let store: Arc<dyn ObjectStore> = faulty.clone();
    let first = segment_file(dir.path(), 0, 10, 100);
    let second = segment_file(dir.path(), first.next_offset, 10, 100);
    {
        let archive = archive(store.clone(), "cluster-a/0/run-1");
        let mut partition = archive.partition(pid()).await.unwrap();
        partition.upload(&first, 1).await.unwrap();
        faulty.fail_roots.store(true, Ordering::SeqCst);
        assert!(
            partition.upload(&second, 2).await.is_err(),
            "the commit fails: the process dies here"
        );
    }
    let segments_dir = archive(store.clone(), "x").layout().segments_dir(&pid());
    assert_eq!(
        store.list(Some(&segments_dir)).count().await,
        4,
        "two segments and two sidecars, one pair orphaned"
    );
    faulty.fail_roots.store(false, Ordering::SeqCst);
    // Another cluster (one that recovered the topic from a replica of this bucket) must not
    // take objects it did not write for orphans: they may be in flight or not replicated yet.
    archive(store.clone(), "cluster-b/0/restored")
        .partition(pid())
        .await
        .unwrap();
    assert_eq!(
        store.list(Some(&segments_dir)).count().await,
        4,
        "another cluster left the objects alone"
    );
    let archive = archive(store.clone(), "cluster-a/0/run-2");
    let mut partition = archive.partition(pid()).await.unwrap();
    assert_eq!(
        store.list(Some(&segments_dir)).count().await,
        2,
        "the sweep removed the orphans"
    );
    assert_eq!(partition.archived_next_offset(), first.next_offset);
    partition.upload(&second, 3).await.unwrap();
    let root = partition.root().clone();
    assert_eq!((root.segments, root.next_offset), (2, second.next_offset));
    assert_eq!(
        store.list(Some(&segments_dir)).count().await,
        4,
        "no duplicates"
    );
    let nodes_dir = archive.layout().nodes_dir(&pid());
    let nodes: Vec<ObjectMeta> = store
        .list(Some(&nodes_dir))
        .map(|m| m.unwrap())
        .collect()
        .await;
    assert_eq!(
        nodes.len(),
        1,
        "one leaf: replaced and orphaned nodes are gone: {nodes:?}"
    );
}

#[tokio::test]
async fn a_local_directory_archive_works_and_fences() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("archive");
    let a = Archive::open(
        target.to_str().unwrap(),
        "a".into(),
        ArchiveConfig::default(),
    )
    .unwrap();
    let b = Archive::open(
        target.to_str().unwrap(),
        "b".into(),
        ArchiveConfig::default(),
    )
    .unwrap();
    let mut ma = Manifest::load(a.reader(pid()), "a".into()).await.unwrap();
    let mut mb = Manifest::load(b.reader(pid()), "b".into()).await.unwrap();
    ma.append(entry(0));
    ma.commit(1).await.unwrap();
    mb.append(entry(0));
    assert!(
        matches!(mb.commit(1).await, Err(ArchiveError::Fenced { .. })),
        "create-only PUT fences on a directory too"
    );
    let root = b.reader(pid()).latest_root().await.unwrap();
    assert_eq!(root.next_offset, 10);
    let _: Bytes = Bytes::new();
}

/// Writes a segment of one-record batches from `base`, the batch `i` stamped with leader
/// epoch `epochs[i]`.
fn segment_in_epochs(dir: &std::path::Path, base: i64, epochs: &[i32]) -> SealedSegment {
    let mut bytes = Vec::new();
    for (i, epoch) in epochs.iter().enumerate() {
        let record = NewRecord {
            value: Some(Bytes::from_static(b"v")),
            timestamp: 1_700_000_000_000 + i as i64,
            ..Default::default()
        };
        let mut batch = encode_batch(base + i as i64, &[record], Codec::None, None).to_vec();
        silt_index::batch::set_leader_epoch(&mut batch, *epoch);
        bytes.extend(batch);
    }
    let path = dir.join(format!("{base:020}.log"));
    std::fs::write(&path, &bytes).unwrap();
    SealedSegment {
        base_offset: base,
        next_offset: base + epochs.len() as i64,
        size_bytes: bytes.len() as u64,
        path,
        start_position: 0,
        aborted: Vec::new(),
    }
}

/// A sidecar as version 1 wrote it: no epoch section.
fn as_version_1(sidecar: &[u8]) -> Bytes {
    let decoded = Sidecar::decode(sidecar).unwrap();
    let epochs = 4 + 12 * decoded.epochs.map_or(0, |e| e.len());
    let aborted = 4 + 24 * decoded.aborted.map_or(0, |a| a.len());
    let mut bytes = sidecar[..sidecar.len() - 4 - epochs - aborted].to_vec();
    bytes[8..10].copy_from_slice(&1u16.to_be_bytes());
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_be_bytes());
    Bytes::from(bytes)
}

#[tokio::test]
async fn the_archive_knows_where_each_leader_epoch_starts() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let archive = archive(store.clone(), "w1");
    let mut partition = archive.partition(pid()).await.unwrap();
    let segments = [
        segment_in_epochs(dir.path(), 0, &[1, 1, 2]),
        segment_in_epochs(dir.path(), 3, &[2, 2]),
        segment_in_epochs(dir.path(), 5, &[2, 5, 7, 7]),
        segment_in_epochs(dir.path(), 9, &[8, 9]),
    ];
    let mut entries = Vec::new();
    for segment in &segments {
        entries.push(partition.upload(segment, 5).await.unwrap());
    }
    assert_eq!(
        entries
            .iter()
            .map(|e| e.meta.leader_epoch)
            .collect::<Vec<_>>(),
        [2, 2, 7, 9],
        "a leaf names each segment's newest epoch"
    );
    let reader = archive.reader(pid());
    let root = partition.root().clone();
    assert_eq!(
        reader.epochs(&root).await.unwrap(),
        [(1, 0), (2, 2), (5, 6), (7, 7), (8, 9), (9, 10)]
    );
    // The last segment's sidecar as an older silt wrote it: its newer epoch stands at its base.
    let key = reader.sidecar_key(&entries[3]);
    let current = store.get(&key).await.unwrap().bytes().await.unwrap();
    store
        .put(&key, as_version_1(&current).into())
        .await
        .unwrap();
    assert_eq!(
        reader.epochs(&root).await.unwrap(),
        [(1, 0), (2, 2), (5, 6), (7, 7), (9, 9)]
    );
}
