//! silt's archive: sealed segments and their index sidecars in object storage, found through
//! fenced, tree-shaped partition manifests.
//!
//! - [`remote`]: the only object-store caller ([`Remote`]): S3 and S3-compatible stores, GCS,
//!   Azure, a local directory, in memory; request counters.
//! - [`layout`]: object keys.
//! - [`manifest`]: a partition's manifest: root pointers, the B+-tree of nodes, fenced commits,
//!   lookups by offset and time, retention, crash leftovers.
//! - [`partition`]: uploading a sealed segment and its sidecar ([`PartitionArchiver`]).
//! - [`compaction`]: compaction of a compacted topic's archived segments, swapped in by one
//!   root.
//! - [`keys`]: key indexes beside segments, key filters over them, and lookups by key.
//! - [`catalog`]: one object per topic, so an archive can be read without its cluster.
//! - [`reader`]: reads of archived offsets ([`RemoteReader`]): ranged GETs of chunks, shared
//!   between readers, prefetched for sequential ones, kept in the on-disk [`cache`].
//!
//! It never sees broker types: the broker describes a sealed segment as a file path and its
//! offsets ([`SealedSegment`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), silt_archiver::ArchiveError> {
//! use silt_archiver::{Archive, ArchiveConfig, PartitionId, SealedSegment};
//! let archive = Archive::open("./silt-data/archive", "cluster/0/run".into(), ArchiveConfig::default())?;
//! let id = PartitionId { topic: "orders".into(), topic_id: uuid::Uuid::new_v4(), partition: 0 };
//! let mut partition = archive.partition(id).await?;
//! let segment = SealedSegment { base_offset: 0, next_offset: 100, size_bytes: 4096, path: "00000000000000000000.log".into(), start_position: 0, aborted: vec![] };
//! partition.upload(&segment, 1_700_000_000_000).await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod cache;
pub mod catalog;
pub mod compaction;
mod error;
pub mod keys;
pub mod layout;
mod lru;
pub mod manifest;
pub mod parquet;
pub mod partition;
pub mod reader;
pub mod remote;
pub mod verify;

use std::sync::Arc;

pub use catalog::{GroupOffset, GroupsSnapshot, TopicCatalog};
pub use error::ArchiveError;
pub use layout::{Layout, PartitionId};
pub use manifest::{Manifest, ManifestReader, NodeCache, Root};
pub use partition::{PartitionArchiver, SealedSegment};
pub use reader::{ReadMetrics, ReaderConfig, RemoteReader, RemoteSlice};
pub use remote::Remote;

/// Settings of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveConfig {
    /// Bytes of manifest nodes cached in memory, for all partitions together.
    pub node_cache_bytes: u64,
    /// Bytes between entries of the sidecars' offset indexes.
    pub index_interval_bytes: u32,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            node_cache_bytes: 64 << 20,
            index_interval_bytes: 4096,
        }
    }
}

/// An archive: a store, its layout, and the node cache shared by its partitions.
#[derive(Debug, Clone)]
pub struct Archive {
    remote: Remote,
    layout: Layout,
    cache: Arc<NodeCache>,
    writer: String,
    config: ArchiveConfig,
}

impl Archive {
    /// Opens the archive at `target` (see [`Remote::open`]) for writer `writer` (unique per
    /// process incarnation: it is how fencing tells writers apart).
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Config`] for a target that cannot be used.
    pub fn open(
        target: &str,
        writer: String,
        config: ArchiveConfig,
    ) -> Result<Archive, ArchiveError> {
        Ok(Archive::with_remote(Remote::open(target)?, writer, config))
    }

    /// An archive over an already opened store.
    pub fn with_remote(remote: Remote, writer: String, config: ArchiveConfig) -> Archive {
        let layout = Layout::new(remote.prefix().clone());
        let cache = Arc::new(NodeCache::new(config.node_cache_bytes));
        Archive {
            remote,
            layout,
            cache,
            writer,
            config,
        }
    }

    /// The cluster part of this archive's writer name (`cluster/node/incarnation`).
    pub fn cluster(&self) -> &str {
        self.writer.split('/').next().unwrap_or_default()
    }

    /// The store.
    pub fn remote(&self) -> &Remote {
        &self.remote
    }

    /// The key layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The node cache.
    pub fn cache(&self) -> &Arc<NodeCache> {
        &self.cache
    }

    /// A reader of a partition's manifest.
    pub fn reader(&self, id: PartitionId) -> ManifestReader {
        ManifestReader::new(
            self.remote.clone(),
            self.layout.clone(),
            id,
            self.cache.clone(),
        )
    }

    /// Opens a partition for archiving: loads its manifest and deletes what an interrupted
    /// upload left behind.
    ///
    /// # Errors
    ///
    /// Store failures, or a corrupt root.
    pub async fn partition(&self, id: PartitionId) -> Result<PartitionArchiver, ArchiveError> {
        self.partition_at(id, 0, i64::MAX).await
    }

    /// [`Archive::partition`] for the partition's leader at term `term`, over a local log
    /// starting at `local_start`: a root written at a higher term by this cluster fences it;
    /// one of a lower term is adopted; one of another cluster is adopted only if it ends at
    /// or before `local_start` (see [`Manifest::load_at`]).
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Fenced`], store failures, or a corrupt root.
    pub async fn partition_at(
        &self,
        id: PartitionId,
        term: u64,
        local_start: i64,
    ) -> Result<PartitionArchiver, ArchiveError> {
        let mut manifest =
            Manifest::load_at(self.reader(id), self.writer.clone(), term, local_start).await?;
        // Objects past the root are orphans only if this cluster's own writer left them. Under
        // another cluster's root (a topic recovered from a replicated bucket) they may be that
        // cluster's uploads in flight, or objects whose root has not replicated yet.
        let root_cluster = manifest.root().writer.split('/').next().unwrap_or_default();
        if !manifest.root().is_empty() && root_cluster == self.cluster() {
            manifest.sweep_orphans().await?;
        } else if !manifest.root().is_empty() {
            tracing::info!(partition = %manifest.reader().id(), writer = %manifest.root().writer, "manifest written by another cluster: orphaned objects left in place");
        }
        Ok(PartitionArchiver::new(
            manifest,
            self.config.index_interval_bytes,
        ))
    }

    /// Writes a topic's catalog object.
    ///
    /// # Errors
    ///
    /// Store failures.
    pub async fn put_topic(&self, topic: &TopicCatalog) -> Result<(), ArchiveError> {
        catalog::put(&self.remote, &self.layout, topic).await
    }

    /// Writes this cluster's snapshot of consumer groups' committed offsets.
    ///
    /// # Errors
    ///
    /// Store failures.
    pub async fn put_groups(&self, snapshot: &GroupsSnapshot) -> Result<(), ArchiveError> {
        catalog::put_groups(&self.remote, &self.layout, snapshot).await
    }

    /// The newest groups snapshot in the bucket, if any.
    ///
    /// # Errors
    ///
    /// Store failures or an unreadable snapshot.
    pub async fn groups(&self) -> Result<Option<GroupsSnapshot>, ArchiveError> {
        catalog::latest_groups(&self.remote, &self.layout).await
    }

    /// Every topic in the catalog.
    ///
    /// # Errors
    ///
    /// Store failures or unreadable catalog objects.
    pub async fn topics(&self) -> Result<Vec<TopicCatalog>, ArchiveError> {
        catalog::list(&self.remote, &self.layout).await
    }

    /// Every topic in the catalog, those being deleted too.
    ///
    /// # Errors
    ///
    /// Store failures or unreadable catalog objects.
    pub async fn all_topics(&self) -> Result<Vec<TopicCatalog>, ArchiveError> {
        catalog::list_all(&self.remote, &self.layout).await
    }

    /// Deletes up to `budget` objects of a deleted topic incarnation's archive, partition
    /// by partition, and its catalog object once nothing else is left. Returns how many
    /// objects went and whether the topic is gone; call again until it is (deleting a topic
    /// with millions of archived objects goes in bounded passes, and resumes where it
    /// stopped after a restart: what is left is what it finds).
    ///
    /// # Errors
    ///
    /// Store failures (what was deleted stays deleted).
    pub async fn sweep_topic(
        &self,
        topic: &TopicCatalog,
        budget: usize,
    ) -> Result<(usize, bool), ArchiveError> {
        use futures::StreamExt;
        let mut removed = 0;
        for partition in 0..topic.partitions {
            let dir = self.layout.partition_dir(&PartitionId {
                topic: topic.name.clone(),
                topic_id: topic.id,
                partition,
            });
            loop {
                let left = budget - removed;
                if left == 0 {
                    return Ok((removed, false));
                }
                let found = self.remote.list_some(&dir, left).await?;
                if found.is_empty() {
                    break;
                }
                let deletes = futures::stream::iter(found)
                    .map(|meta| async move { self.remote.delete(&meta.location).await })
                    .buffer_unordered(16)
                    .collect::<Vec<_>>()
                    .await;
                for result in deletes {
                    result?;
                    removed += 1;
                }
            }
        }
        catalog::delete(&self.remote, &self.layout, &topic.name, topic.id).await?;
        Ok((removed, true))
    }
}
