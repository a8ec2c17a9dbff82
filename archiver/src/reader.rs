//! Reads of archived offsets: the manifest names the segment, its sidecar's offset index names
//! a byte position, and the bytes come from fixed-size, aligned chunks of the segment object,
//! each fetched with one ranged GET and kept in the on-disk [`ChunkCache`].
//!
//! - **Shared GETs.** A chunk being fetched is in the `inflight` map as a shared future; every
//!   reader that needs it waits on the same GET. The GET runs in its own task, so a reader that
//!   gives up (its fetch request's wait ran out) does not cancel it: the chunk still lands in
//!   the cache for the next request.
//! - **Prefetch.** A partition read where one of its recent reads ended is a sequential
//!   reader (several readers of a partition are told apart by where each left off): its next
//!   chunks (crossing into the next segment) are fetched in the background, in GETs of
//!   `get_bytes` (16 MiB: 64 GETs per GiB, each long enough that the store's time to first
//!   byte is a small part of it) side by side; an object no larger than that comes whole. The
//!   window starts at `prefetch_chunks` and doubles each time the reader still had to wait
//!   for the store, so on a store with 30 ms to first byte and a bandwidth cap per connection
//!   it grows until enough GETs are in flight to keep up.
//! - **First byte.** A read answers with the batches at hand: once it holds one, it stops
//!   before a chunk that is neither cached nor on its way, so a cold lookup costs a manifest
//!   node, the sidecar and one chunk, not every chunk the fetch's `max_bytes` spans.
//! - **Throttling.** GETs are bounded in number (`gets_in_flight_max`) and, optionally, in
//!   bytes per second (`read_bytes_per_sec`), so a replay cannot take the disk and network
//!   the write path needs.
//! - **Faults.** Every manifest, sidecar and chunk read is bounded by `read_timeout`. Every
//!   batch is checked (header, CRC-32C, offsets within the segment and ascending) before it is
//!   served: a bad batch read from the cache drops the cached chunks of that segment and is
//!   fetched again; a bad batch from the store is [`ArchiveError::Corrupt`], never served.

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use object_store::path::Path;
use silt_index::batch::{self, BatchHeader};
use silt_index::manifest::SegmentEntry;
use silt_index::offset_index::RelativeOffset;
use silt_index::record::decode_records;
use silt_index::sidecar::Sidecar;
use tokio::sync::Semaphore;

use crate::cache::{ChunkCache, ChunkId};
use crate::error::ArchiveError;
use crate::lru::WeightedLru;
use crate::manifest::{ManifestReader, Root};
use crate::remote::Remote;
use crate::{Archive, PartitionId};

/// Bytes read past `max_bytes`, so the batch at the sparse index's position and a batch
/// straddling the limit are usually in the first window.
const WINDOW_SLACK: u64 = 64 * 1024;
/// Window of a scan by timestamp.
const TIMESTAMP_WINDOW: u64 = 256 * 1024;
/// Decompressed bytes a timestamp lookup may inflate one batch to.
const LOOKUP_DECOMPRESSED_MAX: usize = 64 << 20;
/// The widest a reader's read-ahead window grows.
const PREFETCH_BYTES_MAX: u64 = 256 << 20;
/// Readers of one partition told apart for prefetch (two consumers replaying one partition
/// from different offsets each get their own read-ahead).
const READERS_PER_PARTITION: usize = 8;

/// Settings of remote reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderConfig {
    /// Directory of the chunk cache.
    pub cache_dir: PathBuf,
    /// Bound on the chunk cache, in bytes.
    pub cache_bytes: u64,
    /// Size of a chunk: the unit of GETs and of caching.
    pub chunk_bytes: u64,
    /// Chunks fetched ahead of a sequential reader (the window's start: it widens while the
    /// reader waits).
    pub prefetch_chunks: u32,
    /// Bytes of one prefetch GET, and the size up to which an object is fetched whole.
    pub get_bytes: u64,
    /// Longest wait for one object-store read.
    pub read_timeout: Duration,
    /// Chunk GETs running at once, for all partitions together.
    pub gets_in_flight_max: usize,
    /// Bytes per second fetched from the store, for all partitions together; 0: unbounded.
    pub read_bytes_per_sec: u64,
    /// Bytes of decoded sidecars kept in memory.
    pub sidecar_cache_bytes: u64,
}

impl Default for ReaderConfig {
    fn default() -> Self {
        ReaderConfig {
            cache_dir: PathBuf::from("silt-data/cache"),
            cache_bytes: 2 << 30,
            chunk_bytes: 4 << 20,
            prefetch_chunks: 8,
            get_bytes: 16 << 20,
            read_timeout: Duration::from_secs(10),
            gets_in_flight_max: 8,
            read_bytes_per_sec: 0,
            sidecar_cache_bytes: 32 << 20,
        }
    }
}

/// A histogram with fixed buckets (milliseconds), for Prometheus.
#[derive(Debug)]
pub struct Histogram {
    counts: Vec<AtomicU64>,
    sum_us: AtomicU64,
}

impl Histogram {
    /// Upper bounds of the buckets, in milliseconds (the last bucket is +Inf).
    pub const BOUNDS_MS: [u64; 13] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];

    fn new() -> Histogram {
        Histogram {
            counts: (0..=Self::BOUNDS_MS.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            sum_us: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        let ms = elapsed.as_secs_f64() * 1000.0;
        let bucket = Self::BOUNDS_MS
            .iter()
            .position(|b| ms <= *b as f64)
            .unwrap_or(Self::BOUNDS_MS.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// Cumulative counts per bound (the last is the total), and the sum in seconds.
    pub fn snapshot(&self) -> (Vec<u64>, f64) {
        let mut total = 0;
        let cumulative = self
            .counts
            .iter()
            .map(|c| {
                total += c.load(Ordering::Relaxed);
                total
            })
            .collect();
        (cumulative, self.sum_us.load(Ordering::Relaxed) as f64 / 1e6)
    }
}

/// Counters of remote reads (for `/metrics`).
#[derive(Debug)]
pub struct ReadMetrics {
    /// Reads served (fetches and timestamp lookups that reached the archive).
    pub reads: AtomicU64,
    /// Reads that failed (store unavailable, timed out, corrupt).
    pub read_failures: AtomicU64,
    /// Chunk reads answered by the cache.
    pub chunk_hits: AtomicU64,
    /// Chunk reads that had to wait for the store (their own GET or a shared one).
    pub chunk_misses: AtomicU64,
    /// Chunk GETs issued (demand and prefetch).
    pub chunk_gets: AtomicU64,
    /// Chunk GETs issued ahead of a sequential reader.
    pub prefetches: AtomicU64,
    /// Bytes of chunks fetched from the store.
    pub bytes_fetched: AtomicU64,
    /// Bytes of record batches served from the archive.
    pub bytes_served: AtomicU64,
    /// Batches that failed their checks.
    pub corrupt_batches: AtomicU64,
    /// Time from a read's start to its bytes.
    pub time_to_first_byte: Histogram,
}

impl Default for ReadMetrics {
    fn default() -> Self {
        ReadMetrics {
            reads: AtomicU64::new(0),
            read_failures: AtomicU64::new(0),
            chunk_hits: AtomicU64::new(0),
            chunk_misses: AtomicU64::new(0),
            chunk_gets: AtomicU64::new(0),
            prefetches: AtomicU64::new(0),
            bytes_fetched: AtomicU64::new(0),
            bytes_served: AtomicU64::new(0),
            corrupt_batches: AtomicU64::new(0),
            time_to_first_byte: Histogram::new(),
        }
    }
}

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Whole batches read from the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSlice {
    /// The batches, as produced.
    pub records: Bytes,
    /// Offset after the last batch (the requested offset when `records` is empty).
    pub next_offset: i64,
    /// The aborted transactions with records among `records` (from the segment's sidecar;
    /// none for a version-1 sidecar, archived before transactions were): what a
    /// read_committed fetch lists for the client to skip.
    pub aborted: Vec<silt_index::sidecar::AbortedRange>,
}

/// Spaces out byte reservations to a rate (a virtual clock: each reservation takes the next
/// free slot).
#[derive(Debug)]
struct RateLimiter {
    bytes_per_sec: u64,
    next_free: Mutex<Instant>,
}

impl RateLimiter {
    async fn acquire(&self, bytes: u64) {
        if self.bytes_per_sec == 0 {
            return;
        }
        let start = {
            let mut next = self.next_free.lock().unwrap_or_else(|p| p.into_inner());
            let start = (*next).max(Instant::now());
            *next = start + Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec as f64);
            start
        };
        tokio::time::sleep_until(start.into()).await;
    }
}

type SharedChunk = Shared<BoxFuture<'static, Result<Bytes, Arc<ArchiveError>>>>;

/// A read's result with what prefetch needs to know of it.
struct Pass {
    slice: RemoteSlice,
    located: Located,
    /// Byte position after the last batch taken.
    end: u64,
    /// True if the read waited for the store.
    waited: bool,
}

/// Bytes of a segment object, and where they came from.
struct Fetched {
    bytes: Bytes,
    /// Some came from the cache.
    from_cache: bool,
    /// Some had to be waited for (the reader's own GET or one already running).
    waited: bool,
}

/// Where one reader of a partition left off, and its read-ahead window in chunks.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    end: i64,
    window: u64,
}

/// A segment found for a read: its entry, object key and sidecar.
#[derive(Debug, Clone)]
struct Located {
    entry: SegmentEntry,
    /// The store that holds the object (a node may read from more than one archive).
    remote: Remote,
    key: Path,
    sidecar: Arc<Sidecar>,
}

/// Why a pass over a segment failed.
enum Fault {
    Archive(ArchiveError),
    Corrupt { reason: String, from_cache: bool },
}

impl From<ArchiveError> for Fault {
    fn from(e: ArchiveError) -> Fault {
        Fault::Archive(e)
    }
}

/// The remote reader of a node: one per archive, shared by every partition.
#[derive(Debug)]
pub struct RemoteReader {
    archive: Archive,
    cache: Arc<ChunkCache>,
    config: ReaderConfig,
    inflight: Mutex<HashMap<ChunkId, SharedChunk>>,
    sidecars: Mutex<WeightedLru<String, Arc<Sidecar>>>,
    gets: Arc<Semaphore>,
    limiter: RateLimiter,
    metrics: Arc<ReadMetrics>,
    /// Per partition, where its last reads ended (one per reader, the most recent last, at
    /// most [`READERS_PER_PARTITION`]): a read starting at one is sequential.
    cursors: Mutex<HashMap<(uuid::Uuid, i32), Vec<Cursor>>>,
    /// Partitions with a [`RemoteReader::warm`] under way.
    warming: Mutex<std::collections::HashSet<(uuid::Uuid, i32)>>,
}

impl RemoteReader {
    /// A reader of `archive`, with its chunk cache in `config.cache_dir` (reopened if it exists).
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Config`] when the cache directory cannot be created or read.
    pub fn new(archive: Archive, config: ReaderConfig) -> Result<Arc<RemoteReader>, ArchiveError> {
        let cache = ChunkCache::open(&config.cache_dir, config.cache_bytes).map_err(|e| {
            ArchiveError::Config(format!(
                "archive cache directory {}: {e}",
                config.cache_dir.display()
            ))
        })?;
        Ok(Arc::new(RemoteReader {
            archive,
            cache: Arc::new(cache),
            inflight: Mutex::new(HashMap::new()),
            sidecars: Mutex::new(WeightedLru::new(config.sidecar_cache_bytes)),
            gets: Arc::new(Semaphore::new(config.gets_in_flight_max.max(1))),
            limiter: RateLimiter {
                bytes_per_sec: config.read_bytes_per_sec,
                next_free: Mutex::new(Instant::now()),
            },
            metrics: Arc::default(),
            cursors: Mutex::new(HashMap::new()),
            warming: Mutex::new(std::collections::HashSet::new()),
            config,
        }))
    }

    /// Counters.
    pub fn metrics(&self) -> &Arc<ReadMetrics> {
        &self.metrics
    }

    /// The widest read-ahead window of any sequential reader now, in bytes.
    pub fn widest_prefetch_window(&self) -> u64 {
        let cursors = self.cursors.lock().unwrap_or_else(|p| p.into_inner());
        let widest = cursors.values().flatten().map(|c| c.window).max();
        widest.unwrap_or(0) * self.config.chunk_bytes
    }

    /// The chunk cache.
    pub fn cache(&self) -> &ChunkCache {
        &self.cache
    }

    /// A manifest reader for a partition.
    pub fn manifest(&self, id: PartitionId) -> ManifestReader {
        self.archive.reader(id)
    }

    async fn timed<T>(
        &self,
        op: &'static str,
        key: &(dyn std::fmt::Display + Sync),
        work: impl Future<Output = Result<T, ArchiveError>>,
    ) -> Result<T, ArchiveError> {
        match tokio::time::timeout(self.config.read_timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(ArchiveError::TimedOut {
                op,
                key: key.to_string(),
                after_ms: self.config.read_timeout.as_millis() as u64,
            }),
        }
    }

    /// Whole batches from `offset` (the batch holding it first), at most `max_bytes` of them,
    /// except that with `min_one` the first batch comes whole even if larger (KIP-74). `None`
    /// when `root` does not hold `offset`.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::TimedOut`] / [`ArchiveError::Unavailable`] when the store does not
    /// answer; [`ArchiveError::NotFound`] when retention removed the segment meanwhile;
    /// [`ArchiveError::Corrupt`] for an object that fails its checks.
    pub async fn read(
        self: &Arc<Self>,
        manifest: &ManifestReader,
        root: &Root,
        offset: i64,
        max_bytes: u32,
        min_one: bool,
    ) -> Result<Option<RemoteSlice>, ArchiveError> {
        let started = Instant::now();
        let result = self
            .read_inner(manifest, root, offset, max_bytes, min_one)
            .await;
        match &result {
            Ok(Some(Pass { slice, .. })) => {
                bump(&self.metrics.reads, 1);
                bump(&self.metrics.bytes_served, slice.records.len() as u64);
                self.metrics.time_to_first_byte.observe(started.elapsed());
            }
            Ok(None) => {}
            Err(_) => bump(&self.metrics.read_failures, 1),
        }
        let Some(Pass {
            slice,
            located,
            end,
            waited,
        }) = result?
        else {
            return Ok(None);
        };
        // Sequential readers get the next chunks fetched ahead.
        let id = manifest.id();
        let window = {
            let mut cursors = self.cursors.lock().unwrap_or_else(|p| p.into_inner());
            let readers = cursors.entry((id.topic_id, id.partition)).or_default();
            let found = readers.iter().position(|r| r.end == offset);
            let window = match found {
                Some(i) => {
                    let reader = readers.remove(i);
                    // A sequential reader that still waited for the store outran its
                    // read-ahead: twice the window, until it stops waiting (then the GETs in
                    // flight carry as many bytes as the store's latency and bandwidth ask).
                    Some(if waited {
                        (reader.window * 2).min(self.window_max())
                    } else {
                        reader.window
                    })
                }
                None => {
                    if readers.len() >= READERS_PER_PARTITION {
                        readers.remove(0);
                    }
                    None
                }
            };
            readers.push(Cursor {
                end: slice.next_offset,
                window: window.unwrap_or(u64::from(self.config.prefetch_chunks)),
            });
            window
        };
        if let Some(window) = window
            && window > 0
            && !slice.records.is_empty()
        {
            self.prefetch(manifest.clone(), root.clone(), located, end, window);
        }
        Ok(Some(slice))
    }

    /// Starts the GET of what a read at `offset` needs first (the chunk the sidecar's index
    /// names for it, and for a small object all of it) unless it is cached or on its way, and
    /// returns without waiting for it: for the archived partitions of a fetch whose response
    /// is already full, so the next fetch finds them at hand.
    ///
    /// # Errors
    ///
    /// As [`RemoteReader::read`], for the manifest and sidecar lookups.
    pub async fn warm(
        self: &Arc<Self>,
        manifest: &ManifestReader,
        root: &Root,
        offset: i64,
    ) -> Result<(), ArchiveError> {
        // One warm-up per partition at a time: a consumer asking again and again while the
        // first is under way adds nothing but tasks.
        let id = manifest.id();
        let key = (id.topic_id, id.partition);
        if !self
            .warming
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key)
        {
            return Ok(());
        }
        let result = self.warm_inner(manifest, root, offset).await;
        self.warming
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        result
    }

    async fn warm_inner(
        self: &Arc<Self>,
        manifest: &ManifestReader,
        root: &Root,
        offset: i64,
    ) -> Result<(), ArchiveError> {
        let Some(located) = self.locate(manifest, root, offset).await? else {
            return Ok(());
        };
        let position = BatchCursor::at_offset(&located, offset, 0, false).position;
        let id = ChunkId {
            key: located.key.as_ref().into(),
            index: position / self.config.chunk_bytes.max(1),
        };
        // The GET runs in its own task: dropping our handle on it does not stop it.
        drop(self.chunk(
            &located.remote,
            &located.key,
            id,
            located.entry.meta.size_bytes,
            false,
        ));
        Ok(())
    }

    async fn read_inner(
        self: &Arc<Self>,
        manifest: &ManifestReader,
        root: &Root,
        offset: i64,
        max_bytes: u32,
        min_one: bool,
    ) -> Result<Option<Pass>, ArchiveError> {
        let Some(located) = self.locate(manifest, root, offset).await? else {
            return Ok(None);
        };
        let mut fresh = false;
        loop {
            match self
                .read_batches(&located, offset, max_bytes, min_one, fresh)
                .await
            {
                Ok((slice, end, waited)) => {
                    return Ok(Some(Pass {
                        slice,
                        located,
                        end,
                        waited,
                    }));
                }
                Err(fault) => self.fault(&located, fault, &mut fresh)?,
            }
        }
    }

    /// Turns a failed pass into an error, or into a second pass from the store when the bad
    /// bytes came from the cache.
    fn fault(&self, located: &Located, fault: Fault, fresh: &mut bool) -> Result<(), ArchiveError> {
        match fault {
            Fault::Archive(e) => Err(e),
            Fault::Corrupt {
                reason,
                from_cache: true,
            } if !*fresh => {
                tracing::warn!(key = %located.key, reason, "cached chunk failed its checks; fetching it again");
                let chunks = located
                    .entry
                    .meta
                    .size_bytes
                    .div_ceil(self.config.chunk_bytes);
                let key: Arc<str> = located.key.as_ref().into();
                for index in 0..chunks {
                    self.cache.remove(&ChunkId {
                        key: key.clone(),
                        index,
                    });
                }
                *fresh = true;
                Ok(())
            }
            Fault::Corrupt { reason, .. } => {
                bump(&self.metrics.corrupt_batches, 1);
                tracing::error!(key = %located.key, reason, "archived segment failed its checks; not served");
                Err(ArchiveError::Corrupt {
                    key: located.key.to_string(),
                    reason,
                })
            }
        }
    }

    async fn locate(
        &self,
        manifest: &ManifestReader,
        root: &Root,
        offset: i64,
    ) -> Result<Option<Located>, ArchiveError> {
        let found = self
            .timed(
                "manifest lookup",
                manifest.id(),
                manifest.find_offset(root, offset),
            )
            .await?;
        match found {
            Some(entry) => Ok(Some(self.located(manifest, entry).await?)),
            None => Ok(None),
        }
    }

    async fn located(
        &self,
        manifest: &ManifestReader,
        entry: SegmentEntry,
    ) -> Result<Located, ArchiveError> {
        let sidecar = self.sidecar(manifest, &entry).await?;
        Ok(Located {
            remote: manifest.remote().clone(),
            key: manifest.segment_key(&entry),
            entry,
            sidecar,
        })
    }

    async fn sidecar(
        &self,
        manifest: &ManifestReader,
        entry: &SegmentEntry,
    ) -> Result<Arc<Sidecar>, ArchiveError> {
        let key = manifest.sidecar_key(entry);
        let name = key.to_string();
        if let Some(found) = self
            .sidecars
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&name)
        {
            return Ok(found);
        }
        let bytes = self
            .timed("get sidecar", &key, manifest.remote().get(&key))
            .await?;
        let corrupt = |reason: String| ArchiveError::Corrupt {
            key: name.clone(),
            reason,
        };
        let sidecar = Sidecar::decode(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let (want, got) = (&entry.meta, &sidecar.meta);
        if (want.base_offset, want.last_offset, want.size_bytes)
            != (got.base_offset, got.last_offset, got.size_bytes)
        {
            return Err(corrupt(format!(
                "describes offsets {}..={} in {} bytes, the manifest {}..={} in {} bytes",
                got.base_offset,
                got.last_offset,
                got.size_bytes,
                want.base_offset,
                want.last_offset,
                want.size_bytes
            )));
        }
        let sidecar = Arc::new(sidecar);
        self.sidecars
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, sidecar.clone(), bytes.len() as u64);
        Ok(sidecar)
    }

    /// One pass over a segment for [`RemoteReader::read`]; also returns the byte position
    /// after the last batch taken.
    async fn read_batches(
        self: &Arc<Self>,
        located: &Located,
        offset: i64,
        max_bytes: u32,
        min_one: bool,
        fresh: bool,
    ) -> Result<(RemoteSlice, u64, bool), Fault> {
        let max_bytes = u64::from(max_bytes);
        let mut cursor = BatchCursor::at_offset(located, offset, max_bytes + WINDOW_SLACK, fresh);
        let mut out = BytesMut::new();
        let mut next_offset = offset;
        let mut end = cursor.position;
        loop {
            // With a batch in hand, answer rather than wait for a GET nobody started: the
            // client asks again at once, and a sequential reader's prefetch is on its way by
            // then (a cold read costs one chunk, not every chunk `max_bytes` spans).
            if !out.is_empty() && !cursor.next_at_hand(self) {
                break;
            }
            let Some((header, bytes)) = cursor.next(self).await? else {
                break;
            };
            if header.last_offset() < offset {
                continue;
            }
            let fits = (out.len() + bytes.len()) as u64 <= max_bytes;
            // Past the limit only for the first batch, and only with `min_one`.
            let first_anyway = out.is_empty() && min_one;
            if !fits && !first_anyway {
                break;
            }
            out.extend_from_slice(&bytes);
            next_offset = header.next_offset();
            end = cursor.position;
            if !fits || out.len() as u64 >= max_bytes {
                break;
            }
        }
        let aborted = located
            .sidecar
            .aborted
            .iter()
            .flatten()
            .filter(|a| a.last_offset >= offset && a.first_offset < next_offset)
            .copied()
            .collect();
        let slice = RemoteSlice {
            records: out.freeze(),
            next_offset,
            aborted,
        };
        Ok((slice, end, cursor.waited))
    }

    /// The first record at or after `timestamp` in the archive under `root` (at or after its
    /// start offset): its offset and timestamp, or `None` if every archived record is older.
    ///
    /// # Errors
    ///
    /// As [`RemoteReader::read`].
    pub async fn offset_for_timestamp(
        self: &Arc<Self>,
        manifest: &ManifestReader,
        root: &Root,
        timestamp: i64,
    ) -> Result<Option<(i64, i64)>, ArchiveError> {
        let mut view = root.clone();
        loop {
            let found = self
                .timed(
                    "manifest lookup",
                    manifest.id(),
                    manifest.find_timestamp(&view, timestamp),
                )
                .await?;
            let Some(entry) = found else {
                return Ok(None);
            };
            let located = self.located(manifest, entry).await?;
            let mut fresh = false;
            let found = loop {
                match self
                    .scan_for_timestamp(&located, timestamp, view.start_offset, fresh)
                    .await
                {
                    Ok(found) => break found,
                    Err(fault) => self.fault(&located, fault, &mut fresh)?,
                }
            };
            if found.is_some() {
                bump(&self.metrics.reads, 1);
                return Ok(found);
            }
            // Every record of this segment at or after the timestamp is before the start: go on.
            view.start_offset = located.entry.meta.last_offset + 1;
            if view.start_offset >= view.next_offset {
                return Ok(None);
            }
        }
    }

    async fn scan_for_timestamp(
        self: &Arc<Self>,
        located: &Located,
        timestamp: i64,
        min_offset: i64,
        fresh: bool,
    ) -> Result<Option<(i64, i64)>, Fault> {
        let meta = &located.entry.meta;
        // The time index's entry is a batch whose running maximum is still below the target:
        // every batch before it is older too.
        let hint = located
            .sidecar
            .time_index
            .lookup_before(timestamp)
            .map_or(meta.base_offset, |e| {
                meta.base_offset + i64::from(e.offset.0)
            });
        let mut cursor =
            BatchCursor::at_offset(located, hint.max(min_offset), TIMESTAMP_WINDOW, fresh);
        while let Some((header, bytes)) = cursor.next(self).await? {
            if header.last_offset() < min_offset || header.max_timestamp < timestamp {
                continue;
            }
            let records =
                decode_records(&bytes, LOOKUP_DECOMPRESSED_MAX).map_err(|e| Fault::Corrupt {
                    reason: format!("batch at offset {}: {e}", header.base_offset),
                    from_cache: cursor.from_cache,
                })?;
            if let Some(record) = records
                .iter()
                .find(|r| r.offset >= min_offset && r.timestamp >= timestamp)
            {
                return Ok(Some((record.offset, record.timestamp)));
            }
        }
        Ok(None)
    }

    /// Bytes `range` of a segment object: from the cache where it has them, else from the
    /// chunks' GETs (shared with concurrent readers).
    async fn bytes(
        self: &Arc<Self>,
        remote: &Remote,
        key: &Path,
        object_len: u64,
        range: Range<u64>,
        fresh: bool,
    ) -> Result<Fetched, ArchiveError> {
        let chunk = self.config.chunk_bytes.max(1);
        let name: Arc<str> = key.as_ref().into();
        let mut pieces = Vec::new();
        let mut from_cache = false;
        let mut waited = false;
        let mut index = range.start / chunk;
        while index * chunk < range.end {
            let chunk_start = index * chunk;
            let chunk_range = chunk_start..(chunk_start + chunk).min(object_len);
            let wanted = range.start.max(chunk_start) - chunk_start
                ..range.end.min(chunk_range.end) - chunk_start;
            let id = ChunkId {
                key: name.clone(),
                index,
            };
            let cached = if fresh {
                None
            } else {
                let (cache, id, wanted) = (self.cache.clone(), id.clone(), wanted.clone());
                tokio::task::spawn_blocking(move || cache.read(&id, wanted))
                    .await
                    .ok()
                    .flatten()
            };
            match cached {
                Some(bytes) => {
                    bump(&self.metrics.chunk_hits, 1);
                    from_cache = true;
                    pieces.push(bytes);
                }
                None => {
                    let Some(running) = self.chunk(remote, key, id, object_len, fresh) else {
                        // Cached since we looked: read it from there.
                        continue;
                    };
                    bump(&self.metrics.chunk_misses, 1);
                    waited = true;
                    let whole = running.await.map_err(ArchiveError::Shared)?;
                    let end = (wanted.end as usize).min(whole.len());
                    pieces.push(whole.slice((wanted.start as usize).min(end)..end));
                }
            }
            index += 1;
        }
        let bytes = if pieces.len() == 1 {
            pieces.pop().unwrap_or_default()
        } else {
            let mut joined = BytesMut::with_capacity(pieces.iter().map(Bytes::len).sum());
            for piece in pieces {
                joined.extend_from_slice(&piece);
            }
            joined.freeze()
        };
        Ok(Fetched {
            bytes,
            from_cache,
            waited,
        })
    }

    /// The largest read-ahead window, in chunks: [`PREFETCH_BYTES_MAX`], or a quarter of the
    /// cache if smaller, and never below the configured window.
    fn window_max(&self) -> u64 {
        let bytes = PREFETCH_BYTES_MAX.min(self.config.cache_bytes / 4);
        (bytes / self.config.chunk_bytes.max(1)).max(u64::from(self.config.prefetch_chunks))
    }

    /// Chunks in one prefetch GET: `get_bytes` of them (at least one). A window wider than
    /// that goes out as several GETs side by side: real stores give bandwidth per connection.
    fn get_chunks(&self) -> u64 {
        (self.config.get_bytes / self.config.chunk_bytes.max(1)).max(1)
    }

    /// True when chunk `index` of object `name` is cached or being fetched.
    fn at_hand(&self, name: &Arc<str>, index: u64) -> bool {
        let inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        self.on_hand(
            &inflight,
            &ChunkId {
                key: name.clone(),
                index,
            },
        )
    }

    /// [`RemoteReader::at_hand`] for a caller holding the `inflight` lock.
    fn on_hand(&self, inflight: &HashMap<ChunkId, SharedChunk>, id: &ChunkId) -> bool {
        inflight.contains_key(id) || self.cache.contains(id)
    }

    /// The GET of a whole chunk (and the chunks after it, for a small object), joined if
    /// already running, started otherwise; `None` when the
    /// chunk is in the cache after all (unless `fresh`: then it is fetched regardless). A GET
    /// stores its chunks in the cache before they leave `inflight`, so checking both under the
    /// `inflight` lock never misses a chunk that is on its way.
    fn chunk(
        self: &Arc<Self>,
        remote: &Remote,
        key: &Path,
        id: ChunkId,
        object_len: u64,
        fresh: bool,
    ) -> Option<SharedChunk> {
        let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(running) = inflight.get(&id) {
            return Some(running.clone());
        }
        if !fresh && self.cache.contains(&id) {
            return None;
        }
        // An object no larger than one prefetch GET comes whole (what of it is not cached or
        // on its way already): a small segment costs one GET, not one per chunk.
        let chunk = self.config.chunk_bytes.max(1);
        let mut count = 1;
        if object_len <= self.config.get_bytes {
            let chunks = object_len.div_ceil(chunk);
            while id.index + count < chunks {
                let next = ChunkId {
                    key: id.key.clone(),
                    index: id.index + count,
                };
                if self.on_hand(&inflight, &next) {
                    break;
                }
                count += 1;
            }
        }
        self.start_run(
            &mut inflight,
            remote,
            key,
            &id.key,
            object_len,
            id.index,
            count,
            false,
        );
        inflight.get(&id).cloned()
    }

    /// Starts one ranged GET for chunks `first..first + count` of an object; each chunk is in
    /// `inflight` (a slice of the GET's result) until the GET has stored it in the cache.
    #[allow(clippy::too_many_arguments)]
    fn start_run(
        self: &Arc<Self>,
        inflight: &mut HashMap<ChunkId, SharedChunk>,
        remote: &Remote,
        key: &Path,
        name: &Arc<str>,
        object_len: u64,
        first: u64,
        count: u64,
        prefetch: bool,
    ) {
        let chunk = self.config.chunk_bytes.max(1);
        let range = first * chunk..((first + count) * chunk).min(object_len);
        let (this, task_remote, task_key, task_name) =
            (self.clone(), remote.clone(), key.clone(), name.clone());
        let task = tokio::spawn(async move {
            let result = this
                .get_run(&task_remote, &task_key, &task_name, first, range, prefetch)
                .await;
            let mut inflight = this.inflight.lock().unwrap_or_else(|p| p.into_inner());
            for index in first..first + count {
                inflight.remove(&ChunkId {
                    key: task_name.clone(),
                    index,
                });
            }
            result.map_err(Arc::new)
        });
        let run: SharedChunk = task
            .map(|joined| {
                joined.unwrap_or_else(|e| {
                    Err(Arc::new(ArchiveError::Config(format!(
                        "chunk read task failed: {e}"
                    ))))
                })
            })
            .boxed()
            .shared();
        for index in first..first + count {
            let start = ((index - first) * chunk) as usize;
            let end = (((index - first + 1) * chunk).min(object_len - first * chunk)) as usize;
            let part = run
                .clone()
                .map(move |r| {
                    r.map(|bytes| bytes.slice(start.min(bytes.len())..end.min(bytes.len())))
                })
                .boxed()
                .shared();
            inflight.insert(
                ChunkId {
                    key: name.clone(),
                    index,
                },
                part,
            );
        }
    }

    /// One ranged GET of whole chunks, each stored in the cache.
    async fn get_run(
        &self,
        remote: &Remote,
        key: &Path,
        name: &Arc<str>,
        first: u64,
        range: Range<u64>,
        prefetch: bool,
    ) -> Result<Bytes, ArchiveError> {
        let Ok(_permit) = self.gets.acquire().await else {
            return Err(ArchiveError::Config("reader shut down".into()));
        };
        let len = range.end - range.start;
        self.limiter.acquire(len).await;
        bump(&self.metrics.chunk_gets, 1);
        if prefetch {
            bump(&self.metrics.prefetches, 1);
        }
        let bytes = self
            .timed("get chunk", key, remote.get_range(key, range.clone()))
            .await?;
        if bytes.len() as u64 != len {
            return Err(ArchiveError::Corrupt {
                key: key.to_string(),
                reason: format!(
                    "bytes {}..{} came back as {} bytes: the object is shorter than the manifest says",
                    range.start,
                    range.end,
                    bytes.len()
                ),
            });
        }
        bump(&self.metrics.bytes_fetched, len);
        let chunk = self.config.chunk_bytes.max(1) as usize;
        let (cache, name, data) = (self.cache.clone(), name.clone(), bytes.clone());
        let stored = tokio::task::spawn_blocking(move || {
            for (i, piece) in data.chunks(chunk).enumerate() {
                let id = ChunkId {
                    key: name.clone(),
                    index: first + i as u64,
                };
                cache.insert(&id, piece)?;
            }
            Ok::<(), std::io::Error>(())
        })
        .await;
        if let Ok(Err(e)) = stored {
            tracing::warn!(key = %key, error = %e, "archive chunk not cached");
        }
        Ok(bytes)
    }

    /// Keeps a sequential reader's next `window` chunks (from byte `end` of `located`, crossing
    /// into the next segments) cached or on their way. Nothing happens while at least half of
    /// them are; then every missing one is fetched, with one GET per run of consecutive chunks
    /// of an object, at most `get_bytes` per GET (fewer, larger GETs than one per chunk,
    /// several at once). A reader streaming through segments no larger than four configured
    /// windows has the whole next segment on its way from the moment it enters one.
    fn prefetch(
        self: &Arc<Self>,
        manifest: ManifestReader,
        root: Root,
        located: Located,
        end: u64,
        window: u64,
    ) {
        let this = self.clone();
        tokio::spawn(async move {
            let chunk = this.config.chunk_bytes.max(1);
            let get_chunks = this.get_chunks();
            // The window: (object, its length, chunk index) of each chunk ahead.
            let mut ahead: Vec<(Path, Arc<str>, u64, u64)> = Vec::new();
            let whole_max = 4 * u64::from(this.config.prefetch_chunks) * chunk;
            // Streaming through small segments: from the moment the reader is in one, the next
            // is on its way whole, so its GET has a whole segment's reading time to finish.
            let next = located.entry.meta.last_offset + 1;
            if located.entry.meta.size_bytes <= whole_max
                && next < root.next_offset
                && let Ok(Some(following)) = this.locate(&manifest, &root, next).await
                && following.entry.meta.size_bytes <= whole_max
            {
                let size = following.entry.meta.size_bytes;
                let name: Arc<str> = following.key.as_ref().into();
                let first = ChunkId {
                    key: name.clone(),
                    index: 0,
                };
                let mut inflight = this.inflight.lock().unwrap_or_else(|p| p.into_inner());
                if !this.on_hand(&inflight, &first) {
                    // In GETs of a window each, side by side: one stream per object is slow on
                    // real stores, which give bandwidth per connection.
                    let count = size.div_ceil(chunk);
                    for first in (0..count).step_by(get_chunks as usize) {
                        this.start_run(
                            &mut inflight,
                            manifest.remote(),
                            &following.key,
                            &name,
                            size,
                            first,
                            get_chunks.min(count - first),
                            true,
                        );
                    }
                }
            }
            let mut located = located;
            let mut index = end / chunk + 1;
            let mut following = false;
            loop {
                let size = located.entry.meta.size_bytes;
                let name: Arc<str> = located.key.as_ref().into();
                let whole = following && size <= whole_max;
                while (whole || (ahead.len() as u64) < window) && index * chunk < size {
                    ahead.push((located.key.clone(), name.clone(), size, index));
                    index += 1;
                }
                let next = located.entry.meta.last_offset + 1;
                if ahead.len() as u64 >= window || next >= root.next_offset {
                    break;
                }
                match this.locate(&manifest, &root, next).await {
                    Ok(Some(found)) => located = found,
                    _ => break,
                }
                index = 0;
                following = true;
            }
            let mut inflight = this.inflight.lock().unwrap_or_else(|p| p.into_inner());
            let ready = |(_, name, _, index): &(Path, Arc<str>, u64, u64)| {
                let id = ChunkId {
                    key: name.clone(),
                    index: *index,
                };
                this.on_hand(&inflight, &id)
            };
            let in_hand = ahead.iter().take_while(|c| ready(c)).count() as u64;
            if in_hand * 2 >= window.max(1) {
                return;
            }
            let missing: Vec<_> = ahead.iter().filter(|c| !ready(c)).cloned().collect();
            let mut runs: Vec<(Path, Arc<str>, u64, u64, u64)> = Vec::new();
            for (key, name, size, index) in missing {
                match runs.last_mut() {
                    Some(run) if run.1 == name && run.3 + run.4 == index && run.4 < get_chunks => {
                        run.4 += 1
                    }
                    _ => runs.push((key, name, size, index, 1)),
                }
            }
            for (key, name, size, first, count) in runs {
                // Detached: the GET fills the cache whether or not anyone waits.
                this.start_run(
                    &mut inflight,
                    manifest.remote(),
                    &key,
                    &name,
                    size,
                    first,
                    count,
                    true,
                );
            }
        });
    }
}

/// Walks the batches of a segment object from a position, window by window, checking each.
struct BatchCursor<'a> {
    located: &'a Located,
    position: u64,
    window: u64,
    /// Bytes the next refill must bring at least (a header, or the batch it announced).
    need: u64,
    buffer: Bytes,
    /// Where `buffer` starts in the object.
    buffer_at: u64,
    fresh: bool,
    from_cache: bool,
    /// True once a refill waited for the store.
    waited: bool,
    /// Offset the first batch must start at (the index's entry), then after the last batch.
    expect_base: Option<i64>,
    previous_next: i64,
}

impl<'a> BatchCursor<'a> {
    /// A cursor at the batch the sidecar's offset index names for `offset`.
    fn at_offset(located: &'a Located, offset: i64, window: u64, fresh: bool) -> BatchCursor<'a> {
        let meta = &located.entry.meta;
        let rel = (offset - meta.base_offset).clamp(0, i64::from(u32::MAX)) as u32;
        let entry = located.sidecar.offset_index.lookup(RelativeOffset(rel));
        // Before the first entry: the first batch, which starts at the segment's base unless
        // compaction left gaps (then its records are fewer than its offsets, and the first
        // batch may start later).
        let dense = i64::try_from(meta.record_count)
            .is_ok_and(|n| n == meta.last_offset - meta.base_offset + 1);
        let (position, expect_base) = match entry {
            Some(e) => (
                u64::from(e.position.0),
                Some(meta.base_offset + i64::from(e.offset.0)),
            ),
            None => (0, dense.then_some(meta.base_offset)),
        };
        BatchCursor {
            located,
            position,
            window,
            need: batch::BATCH_HEADER_BYTES as u64,
            buffer: Bytes::new(),
            buffer_at: position,
            fresh,
            from_cache: false,
            waited: false,
            expect_base,
            previous_next: meta.base_offset,
        }
    }

    /// True when the next batch comes without starting a GET: it is in the buffer, or the
    /// chunks it lies in are cached or on their way (a fresh pass never counts the cache).
    fn next_at_hand(&self, reader: &RemoteReader) -> bool {
        let size = self.located.entry.meta.size_bytes;
        if self.position >= size {
            return true;
        }
        let at = ((self.position - self.buffer_at) as usize).min(self.buffer.len());
        let rest = &self.buffer[at..];
        let batch_end = match BatchHeader::parse(rest, u32::MAX) {
            Ok(Some(header)) if rest.len() >= header.size() as usize => return true,
            Ok(Some(header)) => self.position + u64::from(header.size()),
            _ => self.position + batch::BATCH_HEADER_BYTES as u64,
        };
        if self.fresh {
            return false;
        }
        let chunk = reader.config.chunk_bytes.max(1);
        let name: Arc<str> = self.located.key.as_ref().into();
        let last = (batch_end.min(size).max(self.position + 1) - 1) / chunk;
        (self.position / chunk..=last).all(|index| reader.at_hand(&name, index))
    }

    fn corrupt(&self, reason: String) -> Fault {
        Fault::Corrupt {
            reason,
            from_cache: self.from_cache,
        }
    }

    /// The next whole, checked batch, or `None` at the end of the segment.
    async fn next(
        &mut self,
        reader: &Arc<RemoteReader>,
    ) -> Result<Option<(BatchHeader, Bytes)>, Fault> {
        let meta = &self.located.entry.meta;
        let size = meta.size_bytes;
        loop {
            if self.position >= size {
                return Ok(None);
            }
            let at = (self.position - self.buffer_at) as usize;
            let rest = self.buffer.slice(at.min(self.buffer.len())..);
            match BatchHeader::parse(&rest, u32::MAX) {
                Ok(Some(header)) if rest.len() >= header.size() as usize => {
                    let bytes = rest.slice(..header.size() as usize);
                    self.check(&header, &bytes)?;
                    self.position += u64::from(header.size());
                    return Ok(Some((header, bytes)));
                }
                Ok(Some(header)) => {
                    // The batch goes past the buffer: refill from it, wide enough to hold it.
                    if self.position + u64::from(header.size()) > size {
                        return Err(self.corrupt(format!(
                            "batch at byte {} runs past the end of the segment",
                            self.position
                        )));
                    }
                    self.need = u64::from(header.size());
                }
                Ok(None) if self.position + rest.len() as u64 >= size && !rest.is_empty() => {
                    return Err(self.corrupt(format!(
                        "the segment ends inside a batch header at byte {}",
                        self.position
                    )));
                }
                Ok(None) => self.need = batch::BATCH_HEADER_BYTES as u64,
                Err(e) => {
                    return Err(self.corrupt(format!("at byte {}: {e}", self.position)));
                }
            }
            // Up to the window, but not past the chunk the position is in (a read need not
            // GET chunks it may never use), unless the batch there needs more.
            let chunk = reader.config.chunk_bytes.max(1);
            let chunk_end = (self.position / chunk + 1) * chunk;
            let end = (self.position + self.window)
                .min(chunk_end)
                .max(self.position + self.need)
                .min(size);
            let Fetched {
                bytes,
                from_cache,
                waited,
            } = reader
                .bytes(
                    &self.located.remote,
                    &self.located.key,
                    size,
                    self.position..end,
                    self.fresh,
                )
                .await?;
            self.from_cache |= from_cache;
            self.waited |= waited;
            if (bytes.len() as u64) < end - self.position {
                return Err(self.corrupt(format!(
                    "read {} bytes at {} where {} were expected",
                    bytes.len(),
                    self.position,
                    end - self.position
                )));
            }
            self.buffer = bytes;
            self.buffer_at = self.position;
        }
    }

    fn check(&mut self, header: &BatchHeader, bytes: &[u8]) -> Result<(), Fault> {
        let meta = &self.located.entry.meta;
        if let Err(e) = batch::verify_crc(bytes) {
            return Err(self.corrupt(format!(
                "batch at byte {} (offset {}): {e}",
                self.position, header.base_offset
            )));
        }
        let expected = self.expect_base.take();
        if expected.is_some_and(|base| base != header.base_offset)
            || header.base_offset < self.previous_next
            || header.last_offset() > meta.last_offset
        {
            return Err(self.corrupt(format!(
                "batch at byte {} has offsets {}..={}, out of place in a segment of {}..={}",
                self.position,
                header.base_offset,
                header.last_offset(),
                meta.base_offset,
                meta.last_offset
            )));
        }
        self.previous_next = header.next_offset();
        Ok(())
    }
}
