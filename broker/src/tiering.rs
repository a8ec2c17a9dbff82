//! Tiering: sealed segments go to the archive, the archive's retention is applied, and local
//! retention learns what it may delete.
//!
//! A task looks at every partition of every topic with `remote.storage.enable` each
//! `archive_check_interval_ms`. For a partition with sealed segments past its archived offset it
//! starts one upload job (at most `archive_uploads_in_flight_max` jobs run at once, across
//! partitions), which uploads them in offset order. A partition whose active segment has held
//! unarchived data for `archive_upload_interval_ms` is rolled first, so recent data does not
//! live only on one disk. A failed upload (the bucket is away, throttling that outlasted the
//! store client's retries) backs off exponentially, with jitter, up to a minute; meanwhile the
//! local log keeps taking appends and keeps every segment not yet archived.
//!
//! What is archived is known from the manifest, per partition: [`Tiering::archived_next`].
//! Local retention deletes only segments that end at or before it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use silt_archiver::compaction::ArchiveCompaction;
use silt_archiver::{
    Archive, ArchiveConfig, ArchiveError, GroupOffset, GroupsSnapshot, ManifestReader,
    PartitionArchiver, PartitionId, ReaderConfig, Remote, RemoteReader, RemoteSlice, Root,
    SealedSegment, TopicCatalog,
};
use silt_index::segment::SegmentFile;
use tokio::sync::{Semaphore, watch};
use uuid::Uuid;

use crate::group::store::GroupStore;
use crate::node::Node;
use crate::topics::{Partition, Topic};

/// group -> topic -> partition -> committed offset.
pub type GroupsMap = BTreeMap<String, BTreeMap<String, BTreeMap<i32, GroupOffset>>>;

/// Read replica partitions followed at once.
const REPLICA_FOLLOW_CONCURRENCY: usize = 16;

/// How many of its newest segments a read replica checks are there when it first loads a root.
const REPLICA_FIRST_CHECK: usize = 16;

/// Longest wait after failures before a partition is tried again.
const BACKOFF_MAX_MS: i64 = 60_000;

/// Counters of the tiering task (for `/metrics`).
#[derive(Debug, Default)]
pub struct TieringMetrics {
    /// Segments uploaded and committed.
    pub uploads: AtomicU64,
    /// Upload attempts that failed.
    pub upload_failures: AtomicU64,
    /// Bytes of segments uploaded.
    pub uploaded_bytes: AtomicU64,
    /// Segments dropped from the archive by retention.
    pub archive_segments_deleted: AtomicU64,
    /// Objects of deleted topics removed from the bucket.
    pub topic_objects_deleted: AtomicU64,
    /// Archive compaction passes that replaced segments.
    pub compaction_passes: AtomicU64,
    /// Bytes of archived segments those passes replaced, and what replaced them.
    pub compaction_bytes_before: AtomicU64,
    /// See `compaction_bytes_before`.
    pub compaction_bytes_after: AtomicU64,
    /// GETs archive compaction made.
    pub compaction_gets: AtomicU64,
    /// Bytes of archived batches sent to clients (not those of reads a fetch stopped waiting
    /// for, which only fill the cache).
    pub archive_sent_bytes: AtomicU64,
    /// Parquet files written as segments were archived (topics with `archive.parquet`).
    pub parquet_files: AtomicU64,
    /// Their bytes.
    pub parquet_bytes: AtomicU64,
}

/// The tiering state of one partition.
#[derive(Debug)]
pub struct PartitionTier {
    id: PartitionId,
    /// The manifest's writer, with the leader term it writes at.
    archiver: tokio::sync::Mutex<Option<(u64, PartitionArchiver)>>,
    /// Offset after the last archived record; -1 until the manifest is loaded.
    archived_next: AtomicI64,
    /// First offset readable from the archive; -1 until loaded.
    archive_start: AtomicI64,
    busy: AtomicBool,
    failures: AtomicU32,
    retry_at_ms: AtomicI64,
    /// The leader term at which this node was fenced (a newer leader wrote the manifest);
    /// -1 when not. A later leadership of this node (a higher term) writes again.
    fenced_term: AtomicI64,
    /// The manifest root reads go through: the writer's latest, or one loaded for reads.
    root: Mutex<Option<Arc<Root>>>,
    /// A remote read that failed with nobody left waiting for it, kept for the next fetch.
    read_failure: Mutex<Option<ReadFailure>>,
    /// For a read replica: the archive it follows (another cluster's bucket).
    source: Option<Archive>,
    /// The `next_offset` of the root reads go through, for fetches waiting on a read replica.
    visible: watch::Sender<i64>,
    /// When a follower replica last read the archive's root (what its leader archived).
    followed_ms: AtomicI64,
    /// For a read replica: the leader epochs of the source's records it serves, once read.
    epochs: Mutex<Option<crate::log::raft::EpochCache>>,
    /// When this node last tried to compact the partition's archive (-1: never).
    compacted_ms: AtomicI64,
    /// For a read replica: how far behind its source it is.
    following: Mutex<Following>,
}

/// How far a read replica partition is behind its source archive, as of its last look.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Following {
    /// Offset after the last record the source's newest root names (-1: never read).
    pub source_next_offset: i64,
    /// Offset after the last record this replica serves (its published view, read with the
    /// rest): segments the root names whose objects have not replicated into the bucket yet
    /// are not served.
    pub served_next_offset: i64,
    /// When the source last wrote its root (ms since the epoch; its newest upload).
    pub source_updated_ms: i64,
    /// Newest record timestamp the source's root names.
    pub source_max_timestamp: i64,
    /// When this replica last read the source's root successfully.
    pub followed_ms: i64,
    /// Why the last look failed, if it did.
    pub error: Option<String>,
}

impl Following {
    /// Offsets the source names that this replica does not serve yet; `None` before the
    /// source's root was first read.
    pub fn lag_offsets(&self) -> Option<i64> {
        (self.source_next_offset >= 0)
            .then(|| (self.source_next_offset - self.served_next_offset).max(0))
    }
}

/// Why a remote read failed, as the next fetch is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFailure {
    /// The store did not answer in time, or refused: retriable.
    Unavailable,
    /// An archived object failed its checks.
    Corrupt,
}

impl ReadFailure {
    pub(crate) fn of(error: &ArchiveError) -> ReadFailure {
        if error.is_corrupt() {
            ReadFailure::Corrupt
        } else {
            ReadFailure::Unavailable
        }
    }
}

impl PartitionTier {
    /// For a read replica: how far behind its source it is, as of its last look.
    pub fn following(&self) -> Following {
        Following {
            served_next_offset: self.archived_next.load(Ordering::Acquire),
            ..self
                .following
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        }
    }

    fn followed(&self, latest: &Root) {
        let mut following = self.following.lock().unwrap_or_else(|p| p.into_inner());
        *following = Following {
            source_next_offset: latest.next_offset,
            served_next_offset: -1,
            source_updated_ms: latest.updated_ms,
            source_max_timestamp: latest.max_timestamp,
            followed_ms: wall_ms(),
            error: None,
        };
    }

    fn follow_failed(&self, error: &ArchiveError) {
        self.following
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .error = Some(error.to_string());
    }

    /// Offset after the last archived record, if known.
    pub fn archived_next(&self) -> Option<i64> {
        let v = self.archived_next.load(Ordering::Acquire);
        (v >= 0).then_some(v)
    }

    /// First offset readable from the archive, if known.
    pub fn archive_start(&self) -> Option<i64> {
        let v = self.archive_start.load(Ordering::Acquire);
        (v >= 0).then_some(v)
    }

    /// True when another writer owns this partition's manifest (since this node was fenced,
    /// it has not led the partition in a later term).
    pub fn is_fenced(&self) -> bool {
        self.fenced_term.load(Ordering::Acquire) >= 0
    }

    /// True when this node may not write the manifest as leader at `term`.
    fn fenced_at(&self, term: u64) -> bool {
        self.fenced_term.load(Ordering::Acquire) >= i64::try_from(term).unwrap_or(i64::MAX)
    }

    fn fence(&self, term: u64) {
        self.fenced_term
            .store(i64::try_from(term).unwrap_or(i64::MAX), Ordering::Release);
    }

    /// The partition.
    pub fn id(&self) -> &PartitionId {
        &self.id
    }

    /// The root reads use, if loaded.
    pub fn root(&self) -> Option<Arc<Root>> {
        self.root.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Wakes when a read replica's visible end moves.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.visible.subscribe()
    }

    /// For a read replica: OffsetForLeaderEpoch over the source's records it serves (see
    /// [`crate::log::raft::EpochCache::end_offset_for`]); `None` when the epoch is unknown or
    /// the source's epochs were not read yet.
    pub fn replica_epoch_end_offset(&self, epoch: i32) -> Option<(i32, i64)> {
        let visible = *self.visible.borrow();
        self.epochs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()?
            .end_offset_for(epoch, visible)
    }

    /// True for a read replica's partition.
    pub fn is_replica(&self) -> bool {
        self.source.is_some()
    }

    /// Publishes the root a read replica serves from.
    fn publish_view(&self, root: Root) {
        let next = root.next_offset;
        self.archive_start
            .store(root.start_offset, Ordering::Release);
        self.archived_next.store(next, Ordering::Release);
        *self.root.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(root));
        self.visible.send_replace(next);
    }

    /// Publishes the writer's state after a load or a commit.
    fn publish(&self, archiver: &PartitionArchiver) {
        self.archived_next
            .store(archiver.archived_next_offset(), Ordering::Release);
        self.archive_start
            .store(archiver.root().start_offset, Ordering::Release);
        *self.root.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Arc::new(archiver.root().clone()));
    }

    /// The failure of a remote read nobody was waiting for, once.
    pub fn take_read_failure(&self) -> Option<ReadFailure> {
        self.read_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

/// The threads archive work runs on: uploads and remote reads, off the request threads and
/// below them in CPU priority (`archive_thread_nice`), so that when both want a core, the
/// threads that take produce requests get it first.
struct ArchiveRuntime(Option<tokio::runtime::Runtime>);

impl ArchiveRuntime {
    fn start(threads: usize, nice: u32) -> std::io::Result<ArchiveRuntime> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("silt-archive")
            .on_thread_start(move || {
                // Linux keeps a niceness per thread: this lowers only the archive's threads.
                if nice > 0
                    && let Err(e) = rustix::process::setpriority_process(None, nice as i32)
                {
                    tracing::debug!(error = %e, "archive thread keeps the default priority");
                }
            })
            .enable_all()
            .build()?;
        Ok(ArchiveRuntime(Some(runtime)))
    }

    fn handle(&self) -> tokio::runtime::Handle {
        self.0
            .as_ref()
            .expect("present until dropped")
            .handle()
            .clone()
    }
}

impl Drop for ArchiveRuntime {
    fn drop(&mut self) {
        // May be dropped on a runtime thread, where a blocking shutdown is not allowed.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for ArchiveRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ArchiveRuntime")
    }
}

/// The archive side of the node.
#[derive(Debug)]
pub struct Tiering {
    /// Owns the archive's threads (`handle` spawns on them).
    _threads: ArchiveRuntime,
    handle: tokio::runtime::Handle,
    archive: Archive,
    reader: Arc<RemoteReader>,
    read_timeout: Duration,
    partitions: Mutex<HashMap<(Uuid, i32), Arc<PartitionTier>>>,
    uploads: Arc<Semaphore>,
    /// Counters.
    pub metrics: TieringMetrics,
    upload_interval_ms: i64,
    check_interval: Duration,
    cluster_id: String,
    node_config: silt_config::NodeConfig,
    /// The archives read replicas follow, by the target they resolve to.
    sources: Mutex<HashMap<String, Archive>>,
    /// A round of following read replicas is running (a slow source must not pile them up).
    following: Arc<AtomicBool>,
    /// Deleted topics may have objects left in the bucket (set at start and by every
    /// deletion; the controller's leader sweeps them, see `sweep_deleted_topics`).
    sweep_due: Arc<AtomicBool>,
    /// A sweep is running.
    sweeping: Arc<AtomicBool>,
    /// When the last sweep started.
    swept_ms: AtomicI64,
    /// Topics this node saw deleted (swept without waiting out the grace).
    deleted_here: Mutex<std::collections::HashSet<Uuid>>,
    /// Verifications of the archive asked for over the admin API.
    pub verifier: crate::archive_verify::Verifier,
}

/// Most objects one pass of deleting topics removes from the bucket.
const SWEEP_BUDGET: usize = 1000;
/// Catalog entries this recent whose topic the controller does not have are left alone for
/// a while (unless this node saw the topic deleted): a state that does not show a topic
/// yet must not cost it its archive.
const SWEEP_GRACE_MS: i64 = 10_000;
/// Least time between two sweeps.
const SWEEP_INTERVAL_MS: i64 = 5_000;

impl Tiering {
    /// Opens the archive at `target` for this node.
    ///
    /// # Errors
    ///
    /// An archive URL or directory that cannot be used.
    pub fn open(
        target: &str,
        node: &silt_config::NodeConfig,
        cluster_id: &str,
    ) -> Result<Tiering, ArchiveError> {
        let writer = format!("{cluster_id}/{}/{}", node.node_id, Uuid::new_v4());
        let config = ArchiveConfig {
            node_cache_bytes: node.archive_node_cache_bytes,
            index_interval_bytes: node.topic_defaults.index_interval_bytes,
        };
        let archive = Archive::open(target, writer, config)?;
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4));
        let runtime = ArchiveRuntime::start(threads, node.archive_thread_nice).map_err(|e| {
            ArchiveError::Config(format!("cannot start the archive's threads: {e}"))
        })?;
        let read_timeout = Duration::from_millis(node.archive_read_timeout_ms);
        let reader = RemoteReader::new(
            archive.clone(),
            ReaderConfig {
                cache_dir: node.cache_dir(),
                cache_bytes: node.archive_cache_bytes,
                chunk_bytes: node.archive_chunk_bytes,
                prefetch_chunks: node.archive_prefetch_chunks,
                get_bytes: node.archive_get_bytes,
                read_timeout,
                gets_in_flight_max: node.archive_gets_in_flight_max as usize,
                read_bytes_per_sec: node.archive_read_bytes_per_sec,
                sidecar_cache_bytes: (node.archive_node_cache_bytes / 2).max(1 << 20),
            },
        )?;
        Ok(Tiering {
            handle: runtime.handle(),
            _threads: runtime,
            archive,
            reader,
            read_timeout,
            partitions: Mutex::new(HashMap::new()),
            uploads: Arc::new(Semaphore::new(node.archive_uploads_in_flight_max as usize)),
            metrics: TieringMetrics::default(),
            upload_interval_ms: node.archive_upload_interval_ms as i64,
            check_interval: Duration::from_millis(node.archive_check_interval_ms),
            cluster_id: cluster_id.to_string(),
            node_config: node.clone(),
            sources: Mutex::new(HashMap::new()),
            following: Arc::new(AtomicBool::new(false)),
            sweep_due: Arc::new(AtomicBool::new(true)),
            sweeping: Arc::new(AtomicBool::new(false)),
            swept_ms: AtomicI64::new(0),
            verifier: crate::archive_verify::Verifier::default(),
            deleted_here: Mutex::default(),
        })
    }

    /// Where a read replica's `remote.readreplica` value points: a URL or directory as given,
    /// or, for a bare bucket name, that bucket on this node's S3 endpoint under this node's
    /// archive prefix.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Config`] for a bare name when this node's archive is not on S3.
    pub fn replica_target(&self, value: &str) -> Result<String, ArchiveError> {
        if value.contains("://") || value.starts_with('/') || value.starts_with('.') {
            return Ok(value.to_string());
        }
        let own = self.archive.remote().description();
        if !own.starts_with("s3://") {
            return Err(ArchiveError::Config(format!(
                "remote.readreplica={value:?} names a bucket, but this node's archive ({own}) is not on S3: give a URL such as s3://{value}/prefix or a directory"
            )));
        }
        let prefix = self.archive.remote().prefix().as_ref();
        Ok(if prefix.is_empty() {
            format!("s3://{value}")
        } else {
            format!("s3://{value}/{prefix}")
        })
    }

    /// The archive a read replica follows (opened once per target).
    ///
    /// # Errors
    ///
    /// As [`Tiering::replica_target`], or a target that cannot be opened.
    pub fn replica_source(&self, value: &str) -> Result<Archive, ArchiveError> {
        let target = self.replica_target(value)?;
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(archive) = sources.get(&target) {
            return Ok(archive.clone());
        }
        // Never written through: the writer name only marks it as this cluster's reader.
        let writer = format!("{}/replica/{}", self.cluster_id, Uuid::new_v4());
        let config = ArchiveConfig {
            node_cache_bytes: self.node_config.archive_node_cache_bytes,
            index_interval_bytes: self.node_config.topic_defaults.index_interval_bytes,
        };
        // Its requests count with the node's own archive's in /metrics.
        let remote = Remote::open(&target)?.counting_in(self.archive.remote().metrics().clone());
        let archive = Archive::with_remote(remote, writer, config);
        sources.insert(target, archive.clone());
        Ok(archive)
    }

    /// A manifest reader of a topic's partition, in the archive it is read from (another
    /// cluster's bucket for a read replica).
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Config`] for a read replica whose source does not open.
    pub fn manifest_of(
        &self,
        topic: &Topic,
        partition: i32,
    ) -> Result<ManifestReader, ArchiveError> {
        let tier = self.tier(topic, partition)?;
        Ok(self.manifest(&tier))
    }

    /// A manifest reader of a partition, in the archive it is read from.
    fn manifest(&self, tier: &PartitionTier) -> ManifestReader {
        tier.source
            .as_ref()
            .unwrap_or(&self.archive)
            .reader(tier.id.clone())
    }

    /// Runs archive work on the archive's threads.
    pub fn spawn<F>(&self, future: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(future)
    }

    /// Starts verifying this node's archive (one topic, or all of it) on the archive's
    /// threads; [`Tiering::verifier`] shows how it goes.
    ///
    /// # Errors
    ///
    /// A verification is already running.
    pub fn verify(
        &self,
        topic: Option<String>,
    ) -> Result<crate::archive_verify::VerifyRun, String> {
        self.verifier
            .start(self.archive.clone(), &self.handle, topic)
    }

    /// The archive.
    pub fn archive(&self) -> &Archive {
        &self.archive
    }

    /// The remote reader.
    pub fn reader(&self) -> &Arc<RemoteReader> {
        &self.reader
    }

    /// The archive root that reads of a partition go through, loaded on first use; `None`
    /// when the topic's archive is kept out of reads (`remote.read=false`) or holds nothing.
    ///
    /// # Errors
    ///
    /// The store did not answer while loading the root.
    pub async fn readable_root(
        &self,
        topic: &Topic,
        partition: i32,
    ) -> Result<Option<(Arc<PartitionTier>, Arc<Root>)>, ArchiveError> {
        if !topic.remote_read() {
            return Ok(None);
        }
        let tier = self.tier(topic, partition)?;
        let root = match tier.root() {
            Some(root) => root,
            None => {
                let loaded = self.load_root(&tier).await?;
                let mut slot = tier.root.lock().unwrap_or_else(|p| p.into_inner());
                // The writer may have published a newer one meanwhile.
                slot.get_or_insert(loaded).clone()
            }
        };
        Ok((!root.is_empty()).then_some((tier, root)))
    }

    async fn load_root(&self, tier: &PartitionTier) -> Result<Arc<Root>, ArchiveError> {
        if tier.is_replica() {
            // A replica serves only what it checked is there; the follower keeps it current.
            return Ok(Arc::new(self.follow_partition(tier).await?));
        }
        let reader = self.manifest(tier);
        match tokio::time::timeout(self.read_timeout, reader.latest_root()).await {
            Ok(root) => Ok(Arc::new(root?)),
            Err(_) => Err(ArchiveError::TimedOut {
                op: "load manifest root",
                key: tier.id.to_string(),
                after_ms: self.read_timeout.as_millis() as u64,
            }),
        }
    }

    /// Reads archived batches of a partition from `offset` (see [`RemoteReader::read`]). When
    /// retention removed the segment meanwhile, the read is tried once more on the latest
    /// root; `Ok(None)` then means `offset` is no longer archived. A failure is also kept on
    /// the tier for the next fetch, in case the fetch that asked has stopped waiting.
    ///
    /// # Errors
    ///
    /// As [`RemoteReader::read`].
    pub async fn read(
        &self,
        tier: &PartitionTier,
        root: Arc<Root>,
        offset: i64,
        max_bytes: u32,
        min_one: bool,
    ) -> Result<Option<RemoteSlice>, ArchiveError> {
        let manifest = self.manifest(tier);
        let mut result = self
            .reader
            .read(&manifest, &root, offset, max_bytes, min_one)
            .await;
        if result.as_ref().is_err_and(ArchiveError::is_not_found) {
            let latest = match tier.root() {
                Some(newer) if newer.version > root.version => newer,
                _ => self.load_root(tier).await?,
            };
            result = self
                .reader
                .read(&manifest, &latest, offset, max_bytes, min_one)
                .await;
        }
        let mut failure = tier.read_failure.lock().unwrap_or_else(|p| p.into_inner());
        match &result {
            Ok(_) => *failure = None,
            Err(e) => {
                tracing::warn!(partition = %tier.id, offset, error = %e, "archive read failed");
                *failure = Some(ReadFailure::of(e));
            }
        }
        result
    }

    /// Starts fetching what a read of `tier` at `offset` needs first, without waiting for it
    /// (see [`silt_archiver::RemoteReader::warm`]); a failure is left for the read to meet.
    pub async fn warm(&self, tier: &PartitionTier, root: Arc<Root>, offset: i64) {
        let manifest = self.manifest(tier);
        if let Err(e) = self.reader.warm(&manifest, &root, offset).await {
            tracing::debug!(partition = %tier.id, offset, error = %e, "archive read-ahead failed");
        }
    }

    /// The first archived record at or after `timestamp` at or after `start`.
    ///
    /// # Errors
    ///
    /// As [`RemoteReader::offset_for_timestamp`].
    pub async fn offset_for_timestamp(
        &self,
        tier: &PartitionTier,
        root: &Root,
        start: i64,
        timestamp: i64,
    ) -> Result<Option<(i64, i64)>, ArchiveError> {
        let mut view = root.clone();
        view.start_offset = view.start_offset.max(start);
        let manifest = self.manifest(tier);
        self.reader
            .offset_for_timestamp(&manifest, &view, timestamp)
            .await
    }

    fn tier(&self, topic: &Topic, partition: i32) -> Result<Arc<PartitionTier>, ArchiveError> {
        if let Some(tier) = self.get(topic.id, partition) {
            return Ok(tier);
        }
        // First look at this partition: a read replica's source is resolved once, here.
        let source = match &topic.read_replica_of {
            Some(value) => Some(self.replica_source(value)?),
            None => None,
        };
        let mut partitions = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        Ok(partitions
            .entry((topic.id, partition))
            .or_insert_with(|| {
                Arc::new(PartitionTier {
                    id: PartitionId {
                        topic: topic.name.clone(),
                        topic_id: topic.id,
                        partition,
                    },
                    archiver: tokio::sync::Mutex::new(None),
                    archived_next: AtomicI64::new(-1),
                    archive_start: AtomicI64::new(-1),
                    busy: AtomicBool::new(false),
                    failures: AtomicU32::new(0),
                    retry_at_ms: AtomicI64::new(0),
                    fenced_term: AtomicI64::new(-1),
                    root: Mutex::new(None),
                    read_failure: Mutex::new(None),
                    source,
                    visible: watch::Sender::new(-1),
                    followed_ms: AtomicI64::new(i64::MIN / 2),
                    compacted_ms: AtomicI64::new(i64::MIN / 2),
                    epochs: Mutex::new(None),
                    following: Mutex::new(Following {
                        source_next_offset: -1,
                        ..Following::default()
                    }),
                })
            })
            .clone())
    }

    /// The tiering state of a partition, if it was ever looked at.
    pub fn get(&self, topic_id: Uuid, partition: i32) -> Option<Arc<PartitionTier>> {
        self.partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(topic_id, partition))
            .cloned()
    }

    /// Offset after the last archived record of a partition, if known.
    pub fn archived_next(&self, topic_id: Uuid, partition: i32) -> Option<i64> {
        self.get(topic_id, partition)
            .and_then(|t| t.archived_next())
    }

    /// Records a topic in the bucket's catalog (not a read replica: its catalog is its
    /// source's).
    pub async fn put_catalog(&self, topic: &Topic, now_ms: i64) {
        // Read replicas belong to another cluster's catalog; internal topics to no catalog
        // (the group log reaches the bucket as the groups snapshot).
        if topic.read_replica_of.is_some() || topic.internal {
            return;
        }
        let catalog = TopicCatalog {
            format: 1,
            name: topic.name.clone(),
            id: topic.id,
            partitions: topic.partition_count(),
            configs: topic.overrides(),
            cluster_id: self.cluster_id.clone(),
            updated_ms: now_ms,
            deleted_ms: None,
        };
        if let Err(e) = self.archive.put_topic(&catalog).await {
            tracing::warn!(topic = %topic.name, error = %e, "topic catalog not written; retried at the next change or restart");
        }
    }

    /// Forgets a deleted topic here; its objects leave the bucket by the controller's leader
    /// (see [`Tiering::sweep_deleted_topics`]).
    pub fn forget_topic(&self, id: Uuid) {
        self.partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(topic, _), _| *topic != id);
        self.deleted_here
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id);
        self.sweep_due.store(true, Ordering::Release);
    }

    /// On the controller's leader only, so one node deletes each object: removes from the
    /// bucket, a bounded number of objects per pass, the topics of this cluster that the
    /// catalog still lists and the controller no longer has (deleted; a restart resumes
    /// where the last pass stopped, as what is left is what it finds).
    pub async fn sweep_deleted_topics(self: &Arc<Self>, node: &Arc<Node>) {
        let now = node.clock.now_ms();
        if !self.sweep_due.load(Ordering::Acquire)
            || !node.cluster.controller.is_leader()
            || !node.cluster.controller.caught_up()
            || now < self.swept_ms.load(Ordering::Acquire) + SWEEP_INTERVAL_MS
            || self.sweeping.swap(true, Ordering::AcqRel)
        {
            return;
        }
        self.swept_ms.store(now, Ordering::Release);
        let (this, node) = (self.clone(), node.clone());
        self.spawn(async move {
            let more = match this.sweep_pass(&node, now).await {
                Ok(more) => more,
                Err(e) => {
                    tracing::warn!(error = %e, "could not delete the archive of deleted topics; retried");
                    true
                }
            };
            if !more {
                this.sweep_due.store(false, Ordering::Release);
            }
            this.sweeping.store(false, Ordering::Release);
        });
    }

    /// One pass: true when objects are left for the next.
    async fn sweep_pass(&self, node: &Node, now: i64) -> Result<bool, ArchiveError> {
        let live: std::collections::HashSet<Uuid> = node
            .cluster
            .controller
            .state()
            .topics
            .values()
            .map(|t| t.id)
            .chain(node.topics.all().iter().map(|t| t.id))
            .collect();
        let mut budget = SWEEP_BUDGET;
        let mut more = false;
        for mut topic in self.archive.all_topics().await? {
            if topic.cluster_id != self.cluster_id || live.contains(&topic.id) {
                continue;
            }
            if topic.deleted_ms.is_none() {
                let seen_deleted = self
                    .deleted_here
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains(&topic.id);
                if !seen_deleted && topic.updated_ms > now - SWEEP_GRACE_MS {
                    more = true;
                    continue;
                }
                // Marked first: restores and listings stop seeing it before objects go.
                topic.deleted_ms = Some(now);
                self.archive.put_topic(&topic).await?;
            }
            let (removed, done) = self.archive.sweep_topic(&topic, budget).await?;
            self.metrics
                .topic_objects_deleted
                .fetch_add(removed as u64, Ordering::Relaxed);
            tracing::info!(topic = topic.name, id = %topic.id, removed, done, "deleting a deleted topic's archive");
            budget -= removed;
            if !done {
                return Ok(true);
            }
            self.deleted_here
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&topic.id);
        }
        Ok(more)
    }

    /// Looks at every partition once, starting upload jobs where there is work.
    pub async fn tick(self: &Arc<Self>, node: &Arc<Node>) {
        let now = node.clock.now_ms();
        for topic in node.topics.all() {
            let config = topic.config();
            if !config.remote_storage_enable || topic.read_replica_of.is_some() {
                continue;
            }
            for partition in topic.partitions() {
                let Ok(replica) = &partition.replica else {
                    continue;
                };
                let Ok(tier) = self.tier(&topic, partition.index) else {
                    continue;
                };
                if replica.has_archive_to_forget() {
                    // Raft forgets what the archive holds, on every replica: a replica that
                    // needs it later starts from the archive instead.
                    let replica = replica.clone();
                    tokio::spawn(async move {
                        if let Err(e) = replica.forget_archived().await {
                            tracing::debug!(error = %e, "could not forget what the archive holds");
                        }
                    });
                }
                let leadership = replica.leadership();
                if !leadership.is_leader {
                    // Only a partition's leader archives it. A replica that led before
                    // forgets what it knew of the archive: the next leader moves it on. A
                    // follower learns what the archive holds from the archive pointer its
                    // leader replicates through the log; until it has applied one (a
                    // partition archived before it had one, or just after a restart), it
                    // reads the archive's root now and then instead.
                    if let Ok(mut archiver) = tier.archiver.try_lock() {
                        *archiver = None;
                    }
                    if let Some(next) = partition.log().and_then(|log| log.archived_pointer()) {
                        tier.archived_next.fetch_max(next, Ordering::AcqRel);
                        continue;
                    }
                    let due = tier.followed_ms.load(Ordering::Acquire) + self.upload_interval_ms;
                    if now >= due && !tier.busy.swap(true, Ordering::AcqRel) {
                        tier.followed_ms.store(now, Ordering::Release);
                        let this = self.clone();
                        self.spawn(async move {
                            match this.load_root(&tier).await {
                                Ok(root) => tier.publish_view(root.as_ref().clone()),
                                Err(e) => tracing::debug!(partition = %tier.id, error = %e, "follower could not read the archive root"),
                            }
                            tier.busy.store(false, Ordering::Release);
                        });
                    }
                    continue;
                }
                let term = u64::try_from(leadership.epoch).unwrap_or(0);
                if tier.fenced_at(term) || tier.retry_at_ms.load(Ordering::Acquire) > now {
                    continue;
                }
                if tier.busy.swap(true, Ordering::AcqRel) {
                    continue;
                }
                let this = self.clone();
                let node = node.clone();
                let topic = topic.clone();
                self.spawn(async move {
                    this.work(&node, &topic, &partition, &tier, term).await;
                    tier.busy.store(false, Ordering::Release);
                });
            }
        }
    }

    /// One round of work on a partition this node leads at `term`: load, roll if idle,
    /// upload, apply retention.
    async fn work(
        &self,
        node: &Node,
        topic: &Topic,
        partition: &Partition,
        tier: &PartitionTier,
        term: u64,
    ) {
        let Some(log) = partition.log() else { return };
        let now = node.clock.now_ms();
        let mut guard = tier.archiver.lock().await;
        if guard.as_ref().is_some_and(|(at, _)| *at != term) {
            // Led before, in another term: what it knew of the bucket may be stale.
            *guard = None;
        }
        if guard.is_none() {
            // The bucket's latest root first: a leader that died between writing a root and
            // anything else left the bucket as the truth.
            match self
                .archive
                .partition_at(tier.id.clone(), term, log.log_start_offset())
                .await
            {
                Ok(archiver) => {
                    // Writing again, in a later term than any it was fenced in.
                    tier.fenced_term.store(-1, Ordering::Release);
                    tier.publish(&archiver);
                    *guard = Some((term, archiver));
                }
                Err(e) => {
                    let _ = self.writer_failed(tier, term, now, &e, "loading the manifest");
                    return;
                }
            }
        }
        let Some((_, archiver)) = guard.as_mut() else {
            return;
        };
        archiver.set_key_index(topic.config().archive_key_index);
        archiver.set_parquet(topic.config().archive_parquet);
        // Still the leader of this term: the upload loop stops at a term change.
        let leading = || {
            partition.replica.as_ref().is_ok_and(|r| {
                let l = r.leadership();
                l.is_leader && u64::try_from(l.epoch).unwrap_or(0) == term
            })
        };
        // A graceful hand-over of the leadership waits for the upload under way; none starts
        // while it waits.
        let group = partition
            .replica
            .as_ref()
            .ok()
            .and_then(|r| r.as_raft().map(|raft| raft.group()));
        let uploads = &node.cluster.pulse.uploads;
        let archived = archiver.archived_next_offset();
        // An idle partition's data must not wait forever in the active segment.
        let segments = log.segments();
        if let Some(active) = segments.last()
            && !active.sealed
            && active.size_bytes > 0
            && active.next_offset > archived
            // Only control batches since (the archive pointer replicated last round): rolling
            // for them would archive a pointer to archive a pointer, forever.
            && !log
                .only_control_from(archived.max(active.base_offset))
                .unwrap_or(false)
            && let Err(e) = log.roll_if_older(self.upload_interval_ms).await
        {
            tracing::warn!(partition = %tier.id, error = %e, "idle roll failed");
        }
        // Only what is committed (a replicated log may hold entries a new leader truncates),
        // and only below every open transaction: an archived segment is whole, its aborted
        // transactions known.
        let committed = log.last_stable_offset();
        let pending: Vec<_> = log
            .segments()
            .into_iter()
            .filter(|s| s.sealed && s.next_offset > archived && s.next_offset <= committed)
            .collect();
        for info in pending {
            if !leading() {
                tracing::info!(partition = %tier.id, term, "no longer the leader of this term: uploads stop here");
                return;
            }
            let archived = archiver.archived_next_offset();
            if info.next_offset <= archived {
                continue;
            }
            // The archive may already hold the first batches of this segment: replicas roll
            // their segments at different offsets, and the previous leader archived its own.
            // Upload the rest, from the batch where the archive ends.
            let mut start_position = 0;
            let mut base_offset = info.base_offset;
            if info.base_offset < archived {
                match log.batch_position(info.base_offset, archived) {
                    Ok(Some(position)) => {
                        start_position = position;
                        base_offset = archived;
                    }
                    _ => {
                        tracing::error!(partition = %tier.id, base = info.base_offset, archived, term, "local segment overlaps the archive and has no batch where the archive ends; archiving stopped for this partition until another leadership");
                        tier.fence(term);
                        return;
                    }
                }
            }
            if info.base_offset > archived && !archiver.root().is_empty() {
                // Local data was deleted before it was archived (the topic was not tiered then):
                // the archive cannot be contiguous with it. Start it again from here.
                tracing::warn!(partition = %tier.id, from = archived, to = info.base_offset, "gap between the archive and the local log; the archive restarts at the local log");
                if let Err(e) = archiver.drop_before(archiver.root().next_offset, now).await {
                    if self.writer_failed(tier, term, now, &e, "resetting the archive") {
                        *guard = None;
                    }
                    return;
                }
                tier.publish(archiver);
                if !archiver.root().is_empty() {
                    // A bounded pass (see `DROP_BUDGET`): the next round goes on.
                    return;
                }
            }
            let _upload = match group.map(|group| uploads.begin(group)) {
                Some(None) => {
                    tracing::info!(partition = %tier.id, term, "leadership being handed over: uploads stop here");
                    return;
                }
                upload => upload.flatten(),
            };
            let Ok(_permit) = self.uploads.clone().acquire_owned().await else {
                return;
            };
            let segment = SealedSegment {
                base_offset,
                next_offset: info.next_offset,
                size_bytes: info.size_bytes - start_position,
                path: log.segment_path(info.base_offset, SegmentFile::Log),
                start_position,
                // Below the last stable offset: every transaction in it has ended.
                aborted: log
                    .aborted_between(base_offset, info.next_offset)
                    .into_iter()
                    .map(|a| silt_index::sidecar::AbortedRange {
                        producer_id: a.producer_id,
                        first_offset: a.first_offset,
                        last_offset: a.last_offset,
                    })
                    .collect(),
            };
            match archiver.upload(&segment, node.clock.now_ms()).await {
                Ok(entry) => {
                    self.metrics.uploads.fetch_add(1, Ordering::Relaxed);
                    self.metrics
                        .uploaded_bytes
                        .fetch_add(entry.meta.size_bytes, Ordering::Relaxed);
                    if let Some(bytes) = archiver.last_parquet_bytes() {
                        self.metrics.parquet_files.fetch_add(1, Ordering::Relaxed);
                        self.metrics
                            .parquet_bytes
                            .fetch_add(bytes, Ordering::Relaxed);
                    }
                    tier.publish(archiver);
                    tier.failures.store(0, Ordering::Release);
                    tracing::debug!(partition = %tier.id, base = segment.base_offset, bytes = segment.size_bytes, "archived segment");
                }
                Err(e) => {
                    if self.writer_failed(tier, term, now, &e, "uploading a segment") {
                        *guard = None;
                    }
                    return;
                }
            }
        }
        // Tell the followers what the archive holds, through the partition's own log (after
        // the root is written: they may then delete local copies of it).
        let next = archiver.archived_next_offset();
        if !archiver.root().is_empty()
            && log.archived_pointer().is_none_or(|known| known < next)
            && let Ok(replica) = &partition.replica
            && let Err(e) = replica
                .replicate_archived(next, archiver.root().version)
                .await
        {
            tracing::debug!(partition = %tier.id, next, error = %e, "archive pointer not replicated; retried next round");
        }
        // DeleteRecords moves the archive's start too.
        let requested = log.records_start();
        if requested > archiver.root().start_offset && !archiver.root().is_empty() {
            match archiver.drop_before(requested, now).await {
                Ok(dropped) => {
                    self.metrics
                        .archive_segments_deleted
                        .fetch_add(dropped as u64, Ordering::Relaxed);
                    tier.publish(archiver);
                    tracing::info!(partition = %tier.id, dropped, start = archiver.root().start_offset, requested, "archive start moved by DeleteRecords");
                }
                Err(e) => {
                    if self.writer_failed(tier, term, now, &e, "moving the archive start") {
                        *guard = None;
                    }
                    return;
                }
            }
        }
        let config = topic.config();
        let interval = node.config.compaction_check_interval_ms as i64;
        if config.cleanup_policy.compacts()
            && now.saturating_sub(tier.compacted_ms.load(Ordering::Acquire)) >= interval
        {
            tier.compacted_ms.store(now, Ordering::Release);
            let rules = ArchiveCompaction {
                key_map_bytes: node.config.compaction_key_map_bytes,
                segment_bytes: config.segment_bytes,
                index_interval_bytes: config.index_interval_bytes,
                min_dirty_ratio: config.min_cleanable_dirty_ratio,
                delete_retention_ms: config.delete_retention_ms,
                min_lag_ms: config.min_compaction_lag_ms,
                grace_ms: node.config.archive_compaction_grace_ms as i64,
                force: false,
                key_index: config.archive_key_index,
            };
            match archiver.compact(&rules, now).await {
                Ok(Some(report)) => {
                    // Its commit may have released replaced objects past their grace.
                    tier.publish(archiver);
                    self.metrics
                        .compaction_gets
                        .fetch_add(report.gets, Ordering::Relaxed);
                    if report.segments_in > 0 {
                        self.metrics
                            .compaction_passes
                            .fetch_add(1, Ordering::Relaxed);
                        self.metrics
                            .compaction_bytes_before
                            .fetch_add(report.bytes_before, Ordering::Relaxed);
                        self.metrics
                            .compaction_bytes_after
                            .fetch_add(report.bytes_after, Ordering::Relaxed);
                        tracing::info!(partition = %tier.id, segments_in = report.segments_in, segments_out = report.segments_out, bytes_before = report.bytes_before, bytes_after = report.bytes_after, keys = report.keys, compacted_to = report.compacted_to, "compacted the archive");
                    }
                }
                Ok(None) => tier.publish(archiver),
                Err(e) => {
                    if self.writer_failed(tier, term, now, &e, "compacting the archive") {
                        *guard = None;
                    }
                    return;
                }
            }
        }
        // Total retention applies to the archive too (not to a topic that only compacts).
        if !config.cleanup_policy.deletes() {
            return;
        }
        let unarchived: u64 = log
            .segments()
            .iter()
            .filter(|s| s.next_offset > archiver.archived_next_offset())
            .map(|s| s.size_bytes)
            .sum();
        match archiver
            .retention_cut(now, config.retention_ms, config.retention_bytes, unarchived)
            .await
        {
            Ok(Some(cut)) => match archiver.drop_before(cut, now).await {
                Ok(dropped) => {
                    self.metrics
                        .archive_segments_deleted
                        .fetch_add(dropped as u64, Ordering::Relaxed);
                    tier.publish(archiver);
                    tracing::info!(partition = %tier.id, dropped, start = cut, "archive retention");
                }
                Err(e) => {
                    if self.writer_failed(tier, term, now, &e, "applying archive retention") {
                        *guard = None;
                    }
                }
            },
            Ok(None) => {}
            Err(e) => self.failed(tier, now, &e, "planning archive retention"),
        }
    }

    /// A write to the manifest failed: fenced (a newer leader writes it: stop until this node
    /// leads again, in a later term), superseded (an older leader got a root in first: the
    /// caller drops its writer and the next round reloads the bucket, at once), or anything
    /// else (backed off, the writer kept with what it has queued). True when the writer
    /// must go.
    fn writer_failed(
        &self,
        tier: &PartitionTier,
        term: u64,
        now: i64,
        error: &ArchiveError,
        what: &str,
    ) -> bool {
        match error {
            ArchiveError::Fenced { .. } => {
                tier.fence(term);
                tracing::warn!(partition = %tier.id, term, error = %error, "archive: {what}: fenced by a newer leader; this node writes again only when it leads in a later term");
                true
            }
            ArchiveError::Superseded { .. } => {
                tracing::info!(partition = %tier.id, term, error = %error, "archive: {what}: reloading the manifest");
                true
            }
            _ => {
                self.failed(tier, now, error, what);
                false
            }
        }
    }

    fn failed(&self, tier: &PartitionTier, now: i64, error: &ArchiveError, what: &str) {
        self.metrics.upload_failures.fetch_add(1, Ordering::Relaxed);
        let failures = tier.failures.fetch_add(1, Ordering::AcqRel) + 1;
        let base = (500i64 << failures.min(7)).min(BACKOFF_MAX_MS);
        // Jitter: up to half the backoff, so partitions do not retry in lockstep.
        let jitter = (Uuid::new_v4().as_u128() % (base as u128 / 2 + 1)) as i64;
        tier.retry_at_ms
            .store(now + base / 2 + jitter, Ordering::Release);
        tracing::warn!(partition = %tier.id, failures, retry_in_ms = base / 2 + jitter, error = %error, "archive: {what} failed");
    }

    /// Backlog: (segments, bytes) sealed but not archived, and the archive lag in offsets, of
    /// one partition.
    pub fn backlog(&self, topic: &Topic, partition: &Partition) -> Option<(u64, u64, i64)> {
        let log = partition.log()?;
        let archived = self.archived_next(topic.id, partition.index).unwrap_or(0);
        let sealed: Vec<_> = log
            .segments()
            .into_iter()
            .filter(|s| s.sealed && s.next_offset > archived)
            .collect();
        let bytes = sealed.iter().map(|s| s.size_bytes).sum();
        Some((
            sealed.len() as u64,
            bytes,
            (log.high_watermark() - archived).max(0),
        ))
    }

    /// Writes every topic to the catalog, then checks partitions until `stop`.
    pub(crate) async fn run(self: Arc<Self>, node: Arc<Node>, mut stop: watch::Receiver<bool>) {
        let now = node.clock.now_ms();
        for topic in node.topics.all() {
            self.put_catalog(&topic, now).await;
        }
        let mut groups_written = HashMap::new();
        let mut groups_due = now;
        loop {
            let stopped = tokio::select! {
                () = tokio::time::sleep(self.check_interval) => false,
                _ = stop.wait_for(|stopped| *stopped) => true,
            };
            if stopped {
                // A clean stop leaves the bucket with the last committed offsets.
                self.put_groups(&node, &mut groups_written).await;
                return;
            }
            self.tick(&node).await;
            self.sweep_deleted_topics(&node).await;
            // In the background: a source bucket that does not answer must not hold up uploads.
            if !self.following.swap(true, Ordering::AcqRel) {
                let (this, node) = (self.clone(), node.clone());
                self.spawn(async move {
                    this.follow(&node).await;
                    this.following.store(false, Ordering::Release);
                });
            }
            let now = node.clock.now_ms();
            if now >= groups_due {
                self.put_groups(&node, &mut groups_written).await;
                groups_due = now + self.node_config.archive_metadata_interval_ms as i64;
            }
        }
    }

    /// Writes the committed offsets of the groups this node coordinates to the bucket, one
    /// object per group-log partition, when they changed since `written` (what was last
    /// written of each).
    pub async fn put_groups(&self, node: &Node, written: &mut HashMap<usize, GroupsMap>) {
        for p in node.groups.owned_partitions() {
            let mut groups = GroupsMap::new();
            for (group, ..) in node.groups.list() {
                if GroupStore::partition_of(&group) != p {
                    continue;
                }
                let Some(offsets) = node.groups.offsets(&group) else {
                    continue;
                };
                let mut topics: BTreeMap<String, BTreeMap<i32, GroupOffset>> = BTreeMap::new();
                for ((topic, partition), committed) in offsets {
                    topics.entry(topic).or_default().insert(
                        partition,
                        GroupOffset {
                            offset: committed.offset,
                            leader_epoch: committed.leader_epoch,
                            metadata: committed.metadata,
                        },
                    );
                }
                if !topics.is_empty() {
                    groups.insert(group, topics);
                }
            }
            // Nothing to say yet (a new cluster must not shadow the snapshot it may restore
            // from).
            let last = written.get(&p);
            if last == Some(&groups) || (last.is_none() && groups.is_empty()) {
                continue;
            }
            let snapshot = GroupsSnapshot {
                format: 1,
                cluster_id: self.cluster_id.clone(),
                updated_ms: node.clock.now_ms(),
                groups,
                partition: u32::try_from(p).ok(),
            };
            match self.archive.put_groups(&snapshot).await {
                Ok(()) => {
                    tracing::debug!(
                        partition = p,
                        groups = snapshot.groups.len(),
                        "wrote committed offsets to the bucket"
                    );
                    written.insert(p, snapshot.groups);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "committed offsets not written to the bucket; retried next round")
                }
            }
        }
    }

    /// Brings every read replica's partitions up to their source's latest uploads.
    pub async fn follow(&self, node: &Node) {
        let mut rounds = Vec::new();
        for topic in node.topics.all() {
            if topic.read_replica_of.is_none() || !topic.remote_read() {
                continue;
            }
            for partition in 0..topic.partition_count() {
                match self.tier(&topic, partition) {
                    Ok(tier) => rounds.push(async move {
                        if let Err(e) = self.follow_partition(&tier).await {
                            tier.follow_failed(&e);
                            tracing::warn!(partition = %tier.id, error = %e, "read replica: could not follow the source");
                        }
                    }),
                    Err(e) => {
                        tracing::warn!(topic = %topic.name, error = %e, "read replica: source unusable");
                        break;
                    }
                }
            }
        }
        // A few partitions at a time: each is a LIST and a GET (more when it moved).
        futures::stream::iter(rounds)
            .buffer_unordered(REPLICA_FOLLOW_CONCURRENCY)
            .collect::<Vec<()>>()
            .await;
    }

    /// Loads a read replica partition's latest root from its source and publishes as much of
    /// it as has arrived. Bucket replication is asynchronous and unordered: a root may name
    /// segments whose objects are not there yet. Those are 'not replicated yet', not faults:
    /// the replica serves up to the last segment before the first one missing, and looks
    /// again next round.
    async fn follow_partition(&self, tier: &PartitionTier) -> Result<Root, ArchiveError> {
        let reader = self.manifest(tier);
        let latest = match tokio::time::timeout(self.read_timeout, reader.latest_root()).await {
            Ok(root) => root?,
            Err(_) => {
                return Err(ArchiveError::TimedOut {
                    op: "load manifest root",
                    key: tier.id.to_string(),
                    after_ms: self.read_timeout.as_millis() as u64,
                });
            }
        };
        let current = tier.root();
        let seen = current
            .as_ref()
            .filter(|c| c.version <= latest.version && c.next_offset <= latest.next_offset);
        if let Some(current) = seen
            && current.version == latest.version
            && current.next_offset == latest.next_offset
        {
            tier.followed(&latest);
            return Ok((**current).clone());
        }
        // Check the segments added since what is served; the first time, the newest few (older
        // ones replicated long ago; one that did not yet gives a retriable read error).
        let mut offset = match seen {
            Some(current) => current.next_offset.max(latest.start_offset),
            None => {
                let mut from = latest.next_offset;
                for _ in 0..REPLICA_FIRST_CHECK {
                    if from <= latest.start_offset {
                        break;
                    }
                    match reader.find_offset(&latest, from - 1).await? {
                        Some(entry) => from = entry.meta.base_offset,
                        None => break,
                    }
                }
                from
            }
        };
        let mut visible = offset;
        // Segments that bring a newer epoch than the last known: their sidecars say where.
        let mut newest = tier
            .epochs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(|e| e.latest())
            .map(|(epoch, _)| epoch);
        let mut epoch_changes = Vec::new();
        while offset < latest.next_offset {
            let entry = match reader.find_offset(&latest, offset).await {
                Ok(Some(entry)) => entry,
                Ok(None) => break,
                Err(e) if e.is_not_found() => break, // a manifest node not replicated yet
                Err(e) => return Err(e),
            };
            let mut present = true;
            for key in [reader.segment_key(&entry), reader.sidecar_key(&entry)] {
                match reader.remote().head(&key).await {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => present = false,
                    Err(e) => return Err(e),
                }
            }
            if !present {
                tracing::debug!(partition = %tier.id, base = entry.meta.base_offset, "read replica: segment not replicated yet");
                break;
            }
            if newest.is_some_and(|n| entry.meta.leader_epoch > n) {
                newest = Some(entry.meta.leader_epoch);
                epoch_changes.push(entry);
            }
            offset = entry.meta.last_offset + 1;
            visible = offset;
        }
        tier.followed(&latest);
        let mut view = latest;
        if visible < view.next_offset {
            view.next_offset = visible;
        }
        if let Err(e) = self
            .follow_epochs(tier, &reader, &view, epoch_changes)
            .await
        {
            // Read again from the whole manifest next round.
            tracing::warn!(partition = %tier.id, error = %e, "read replica: could not read the source's leader epochs");
            *tier.epochs.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        if seen.is_none_or(|c| view.next_offset > c.next_offset || view.version > c.version) {
            tracing::debug!(partition = %tier.id, version = view.version, next = view.next_offset, "read replica: following");
            tier.publish_view(view.clone());
        }
        Ok(view)
    }

    /// Brings a read replica's copy of the source's leader epochs up to `view`: the first
    /// time from the whole manifest, then from the segments that brought a newer epoch.
    async fn follow_epochs(
        &self,
        tier: &PartitionTier,
        reader: &ManifestReader,
        view: &Root,
        changes: Vec<silt_index::manifest::SegmentEntry>,
    ) -> Result<(), ArchiveError> {
        let known = tier
            .epochs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|e| e.entries().to_vec())
            .filter(|entries| !entries.is_empty());
        if known.is_some() && changes.is_empty() {
            return Ok(()); // Nothing newer arrived.
        }
        // (Until a first epoch is known, each round reads the whole manifest: it is small.)
        let mut epochs = match known {
            Some(known) => known,
            None => reader.epochs_until(view, view.next_offset).await?,
        };
        for entry in changes {
            let starts = reader.epoch_starts(&entry).await?;
            silt_archiver::manifest::extend_epochs(&mut epochs, starts, view.start_offset);
        }
        let cache =
            crate::log::raft::EpochCache::checked(epochs).ok_or_else(|| ArchiveError::Corrupt {
                key: tier.id.to_string(),
                reason: "the source's leader epochs do not increase".into(),
            })?;
        *tier.epochs.lock().unwrap_or_else(|p| p.into_inner()) = Some(cache);
        Ok(())
    }
}

/// Wall-clock milliseconds since the epoch, for what is compared with the times a source
/// cluster wrote into its bucket.
fn wall_ms() -> i64 {
    use crate::log::Clock;
    crate::log::SystemClock.now_ms()
}
