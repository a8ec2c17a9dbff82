//! A partition's manifest in the bucket: a root pointer and a B+-tree of immutable nodes
//! (formats in [`silt_index::manifest`]).
//!
//! # Writes, fencing, crash safety
//!
//! A change writes new nodes (fresh ids, never overwritten), then the next root pointer
//! `roots/<version + 1>.json` with a create-only PUT (`If-None-Match: *`). If that version
//! exists, another writer advanced the manifest: this one is fenced and stops. Stores without
//! conditional writes get the weaker check of reading the root back and comparing the writer.
//!
//! Nothing a root names is ever deleted before a newer root stops naming it. Replaced nodes and
//! segments dropped by retention are listed in the new root's garbage and deleted after it is
//! written; until deleted they stay listed, so a crash leaks nothing. Nodes written for a root
//! that never got written have ids at or above the root's `next_node_id`; segments uploaded for
//! it start at or after `next_offset`: [`Manifest::sweep_orphans`] finds both by listing from
//! there. The previous root is kept one version, so a reader that just listed it can still
//! fetch it.
//!
//! # Memory
//!
//! The writer keeps the root and the right-hand path of the tree (one node per level). Lookups
//! go through a shared, size-bounded [`NodeCache`]. Neither grows with the number of segments.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use silt_index::manifest::{self, Child, FANOUT, Node, SegmentEntry};
use silt_index::sidecar::Sidecar;
use uuid::Uuid;

use crate::error::ArchiveError;
use crate::layout::{Layout, PartitionId, parse_node_id, parse_root_version, parse_segment_name};
use crate::lru::WeightedLru;
use crate::remote::{Created, Remote};

const ROOT_FORMAT: u32 = 1;

/// The root pointer of a partition manifest (JSON, small).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Root {
    /// Format of this object.
    pub format: u32,
    /// Version; `roots/<version>.json` is this object.
    pub version: u64,
    /// Who wrote it (cluster, node, incarnation).
    pub writer: String,
    /// The writer's leader term (the partition's leader epoch; 0 outside a replicated
    /// cluster). Within a cluster, a writer yields only to a root of a higher term.
    #[serde(default)]
    pub term: u64,
    /// Topic name.
    pub topic: String,
    /// Topic id.
    pub topic_id: Uuid,
    /// Partition.
    pub partition: i32,
    /// First offset readable from the archive.
    pub start_offset: i64,
    /// Offset after the last archived record (where the next segment must start).
    pub next_offset: i64,
    /// Levels above the leaves.
    pub depth: u16,
    /// The tree's root node, if any segment was ever archived.
    pub root_node: Option<u64>,
    /// The next node id to hand out; ids at or above it are orphans.
    pub next_node_id: u64,
    /// Segments in the tree.
    pub segments: u64,
    /// Bytes of those segments.
    pub bytes: u64,
    /// Largest timestamp archived.
    pub max_timestamp: i64,
    /// Nodes replaced by this version, to delete.
    pub garbage_nodes: Vec<u64>,
    /// Segments (base, last, object id) dropped by this version, to delete.
    pub garbage_segments: Vec<(i64, i64, u64)>,
    /// When written.
    pub updated_ms: i64,
    /// For a compacted topic: the offset below which the archive has been compacted.
    #[serde(default)]
    pub compacted_to: i64,
    /// For a compacted topic: when the oldest tombstone the archive keeps may go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tombstones_due_ms: Option<i64>,
    /// Segments (base, last, object id, delete after ms) replaced by compaction and kept for
    /// a grace period: a reader that resolved one just before the swap can still fetch it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deferred_segments: Vec<(i64, i64, u64, i64)>,
}

/// True when two writer names (`cluster/node/incarnation`) are of the same cluster.
fn same_cluster(a: &str, b: &str) -> bool {
    a.split('/').next() == b.split('/').next()
}

impl Root {
    fn empty(id: &PartitionId) -> Root {
        Root {
            format: ROOT_FORMAT,
            version: 0,
            writer: String::new(),
            term: 0,
            topic: id.topic.clone(),
            topic_id: id.topic_id,
            partition: id.partition,
            start_offset: 0,
            next_offset: 0,
            depth: 0,
            root_node: None,
            next_node_id: 0,
            segments: 0,
            bytes: 0,
            max_timestamp: -1,
            garbage_nodes: Vec::new(),
            garbage_segments: Vec::new(),
            updated_ms: 0,
            compacted_to: 0,
            tombstones_due_ms: None,
            deferred_segments: Vec::new(),
        }
    }

    /// True when nothing was ever archived (or everything was dropped).
    pub fn is_empty(&self) -> bool {
        self.root_node.is_none() || self.segments == 0
    }
}

/// A bounded cache of decoded nodes, shared by every partition (nodes are immutable, so an
/// entry is valid forever; eviction is least-recently-used by size).
#[derive(Debug)]
pub struct NodeCache {
    inner: Mutex<WeightedLru<String, Arc<Node>>>,
}

impl NodeCache {
    /// A cache holding at most `capacity_bytes` of encoded nodes.
    pub fn new(capacity_bytes: u64) -> NodeCache {
        NodeCache {
            inner: Mutex::new(WeightedLru::new(capacity_bytes)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WeightedLru<String, Arc<Node>>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, key: &str) -> Option<Arc<Node>> {
        self.lock().get(&key.to_string())
    }

    fn insert(&self, key: String, node: Arc<Node>, size: u64) {
        self.lock().insert(key, node, size);
    }

    /// Bytes of nodes held.
    pub fn bytes(&self) -> u64 {
        self.lock().weight()
    }
}

/// One level of the tree's right-hand path. An internal node's `children` leave out the
/// current (rightmost) child, whose summary is added when the node is written.
#[derive(Debug, Clone)]
struct SpineNode {
    id: Option<u64>,
    node: Node,
    dirty: bool,
}

/// Reads a partition manifest: the latest root and lookups through the node cache.
#[derive(Debug, Clone)]
pub struct ManifestReader {
    remote: Remote,
    layout: Layout,
    id: PartitionId,
    cache: Arc<NodeCache>,
}

impl ManifestReader {
    /// A reader of `id`'s manifest.
    pub fn new(
        remote: Remote,
        layout: Layout,
        id: PartitionId,
        cache: Arc<NodeCache>,
    ) -> ManifestReader {
        ManifestReader {
            remote,
            layout,
            id,
            cache,
        }
    }

    /// The partition.
    pub fn id(&self) -> &PartitionId {
        &self.id
    }

    /// The newest root (an empty one if the partition was never archived).
    ///
    /// # Errors
    ///
    /// Store failures; [`ArchiveError::Corrupt`] for a root that does not parse.
    pub async fn latest_root(&self) -> Result<Root, ArchiveError> {
        let roots = self
            .remote
            .list(&self.layout.roots_dir(&self.id), None)
            .await?;
        let Some(newest) = roots
            .iter()
            .filter_map(|m| parse_root_version(&m.location).map(|v| (v, &m.location)))
            .max()
        else {
            return Ok(Root::empty(&self.id));
        };
        match self.read_root(newest.1).await {
            // Listed, then deleted by the writer before we read it: the next one is there.
            Err(ArchiveError::NotFound(_)) => Box::pin(self.latest_root()).await,
            other => other,
        }
    }

    async fn read_root(&self, key: &Path) -> Result<Root, ArchiveError> {
        let bytes = self.remote.get(key).await?;
        let root: Root = serde_json::from_slice(&bytes).map_err(|e| ArchiveError::Corrupt {
            key: key.to_string(),
            reason: e.to_string(),
        })?;
        if root.topic_id != self.id.topic_id || root.partition != self.id.partition {
            return Err(ArchiveError::Corrupt {
                key: key.to_string(),
                reason: "root of another partition".into(),
            });
        }
        Ok(root)
    }

    /// A node, from the cache or the store.
    ///
    /// # Errors
    ///
    /// Store failures, or [`ArchiveError::Corrupt`] for a node that fails its checks.
    pub async fn node(&self, node: u64) -> Result<Arc<Node>, ArchiveError> {
        let key = self.layout.node(&self.id, node);
        if let Some(found) = self.cache.get(key.as_ref()) {
            return Ok(found);
        }
        let bytes = self.remote.get(&key).await?;
        let decoded = Arc::new(Node::decode(&bytes).map_err(|e| ArchiveError::Corrupt {
            key: key.to_string(),
            reason: e.to_string(),
        })?);
        self.cache
            .insert(key.to_string(), decoded.clone(), bytes.len() as u64);
        Ok(decoded)
    }

    /// The archived segment holding `offset` under `root`.
    ///
    /// # Errors
    ///
    /// Store failures or corrupt nodes.
    pub async fn find_offset(
        &self,
        root: &Root,
        offset: i64,
    ) -> Result<Option<SegmentEntry>, ArchiveError> {
        if offset < root.start_offset || offset >= root.next_offset {
            return Ok(None);
        }
        let Some(mut current) = root.root_node else {
            return Ok(None);
        };
        loop {
            match self.node(current).await?.as_ref() {
                Node::Leaf(entries) => {
                    return Ok(manifest::entry_for_offset(entries, offset).copied());
                }
                Node::Internal { children, .. } => {
                    match manifest::child_for_offset(children, offset) {
                        Some(child) => current = child.node,
                        None => return Ok(None),
                    }
                }
            }
        }
    }

    /// The first archived segment (at or after the archive start) holding a record with a
    /// timestamp `>= timestamp`.
    ///
    /// # Errors
    ///
    /// Store failures or corrupt nodes.
    pub async fn find_timestamp(
        &self,
        root: &Root,
        timestamp: i64,
    ) -> Result<Option<SegmentEntry>, ArchiveError> {
        let Some(node) = root.root_node else {
            return Ok(None);
        };
        self.find_timestamp_under(node, timestamp, root.start_offset)
            .await
    }

    async fn find_timestamp_under(
        &self,
        node: u64,
        timestamp: i64,
        min_offset: i64,
    ) -> Result<Option<SegmentEntry>, ArchiveError> {
        match self.node(node).await?.as_ref() {
            Node::Leaf(entries) => {
                Ok(manifest::entry_for_timestamp(entries, timestamp, min_offset).copied())
            }
            Node::Internal { children, .. } => {
                // The first child whose subtree reaches the timestamp holds the answer.
                match manifest::child_for_timestamp(children, timestamp, min_offset) {
                    Some(child) => {
                        Box::pin(self.find_timestamp_under(child.node, timestamp, min_offset)).await
                    }
                    None => Ok(None),
                }
            }
        }
    }

    /// Every entry of the tree, in offset order.
    ///
    /// # Errors
    ///
    /// Store failures or corrupt nodes.
    pub async fn entries(&self, root: &Root) -> Result<Vec<SegmentEntry>, ArchiveError> {
        let mut entries = Vec::new();
        self.walk(
            root,
            &mut |entry| {
                entries.push(*entry);
                true
            },
            &mut |_| {},
        )
        .await?;
        Ok(entries)
    }

    /// Every entry of the tree in order, to `visit` (for verification and retention planning);
    /// stops early when `visit` returns false. Also reports every node id.
    ///
    /// # Errors
    ///
    /// Store failures or corrupt nodes.
    pub async fn walk(
        &self,
        root: &Root,
        visit: &mut (dyn FnMut(&SegmentEntry) -> bool + Send),
        nodes: &mut (dyn FnMut(u64) + Send),
    ) -> Result<(), ArchiveError> {
        let Some(node) = root.root_node else {
            return Ok(());
        };
        self.walk_under(node, visit, nodes).await.map(|_| ())
    }

    async fn walk_under(
        &self,
        node: u64,
        visit: &mut (dyn FnMut(&SegmentEntry) -> bool + Send),
        nodes: &mut (dyn FnMut(u64) + Send),
    ) -> Result<bool, ArchiveError> {
        nodes(node);
        match self.node(node).await?.as_ref() {
            Node::Leaf(entries) => {
                for entry in entries {
                    if !visit(entry) {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Node::Internal { children, .. } => {
                for child in children {
                    if !Box::pin(self.walk_under(child.node, visit, nodes)).await? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
        }
    }

    /// The leader epochs of the archived log under `root`, as (epoch, first offset), epochs
    /// and offsets increasing: what a log restored from the archive answers
    /// OffsetForLeaderEpoch with below its local start. Walks every leaf once and reads the
    /// sidecar of each segment where a newer epoch appears. A version-1 sidecar does not say
    /// where inside its segment an epoch starts: the segment's base stands for it (earlier
    /// than the truth, so a client that validates its position there reads a few records
    /// again rather than skipping any).
    ///
    /// # Errors
    ///
    /// Store failures, corrupt nodes or sidecars.
    pub async fn epochs(&self, root: &Root) -> Result<Vec<(i32, i64)>, ArchiveError> {
        self.epochs_until(root, root.next_offset).await
    }

    /// [`Self::epochs`] of the segments that start before `until` (a read replica's visible
    /// end: the sidecars of later ones may not have arrived).
    ///
    /// # Errors
    ///
    /// As [`Self::epochs`].
    pub async fn epochs_until(
        &self,
        root: &Root,
        until: i64,
    ) -> Result<Vec<(i32, i64)>, ArchiveError> {
        let mut changes: Vec<SegmentEntry> = Vec::new();
        let mut newest = i32::MIN;
        self.walk(
            root,
            &mut |entry| {
                if entry.meta.base_offset >= until {
                    return false;
                }
                if entry.meta.leader_epoch > newest {
                    newest = entry.meta.leader_epoch;
                    changes.push(*entry);
                }
                true
            },
            &mut |_| {},
        )
        .await?;
        let mut epochs: Vec<(i32, i64)> = Vec::new();
        for entry in changes {
            let starts = self.epoch_starts(&entry).await?;
            extend_epochs(&mut epochs, starts, root.start_offset);
        }
        Ok(epochs)
    }

    /// Where each leader epoch starts in an archived segment, from its sidecar: (epoch,
    /// first offset); a version-1 sidecar says only the newest, which stands at the base.
    ///
    /// # Errors
    ///
    /// Store failures, a corrupt sidecar.
    pub async fn epoch_starts(
        &self,
        entry: &SegmentEntry,
    ) -> Result<Vec<(i32, i64)>, ArchiveError> {
        let key = self.sidecar_key(entry);
        let bytes = self.remote.get(&key).await?;
        let sidecar = Sidecar::decode(&bytes).map_err(|e| ArchiveError::Corrupt {
            key: key.to_string(),
            reason: e.to_string(),
        })?;
        Ok(sidecar
            .epochs
            .unwrap_or_else(|| vec![(entry.meta.leader_epoch, entry.meta.base_offset)]))
    }

    /// The segment object key of an entry.
    pub fn segment_key(&self, entry: &SegmentEntry) -> Path {
        self.layout.segment(
            &self.id,
            entry.meta.base_offset,
            entry.meta.last_offset,
            entry.object_id,
        )
    }

    /// The sidecar key of an entry.
    pub fn sidecar_key(&self, entry: &SegmentEntry) -> Path {
        self.layout.sidecar(
            &self.id,
            entry.meta.base_offset,
            entry.meta.last_offset,
            entry.object_id,
        )
    }

    /// The store.
    pub fn remote(&self) -> &Remote {
        &self.remote
    }

    /// The layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }
}

/// Adds a segment's epoch starts to a partition's epochs: only epochs newer than the last,
/// never before `start` (the archive may start inside a segment, after DeleteRecords).
pub fn extend_epochs(epochs: &mut Vec<(i32, i64)>, starts: Vec<(i32, i64)>, start: i64) {
    for (epoch, offset) in starts {
        let offset = offset.max(start);
        if epochs.last().is_none_or(|&(last, _)| epoch > last) {
            if epochs.last().is_some_and(|&(_, at)| at >= offset) {
                epochs.pop();
            }
            epochs.push((epoch, offset));
        }
    }
}

/// The single writer of a partition's manifest.
#[derive(Debug)]
pub struct Manifest {
    reader: ManifestReader,
    writer: String,
    term: u64,
    root: Root,
    spine: Option<Vec<SpineNode>>,
    /// Appended entries not yet in a written root.
    pending: Vec<SegmentEntry>,
    /// Garbage whose deletion failed, carried into the next root.
    leftover_nodes: Vec<u64>,
    leftover_segments: Vec<(i64, i64, u64)>,
    fenced: bool,
    /// The lowest node id this writer may use: ids found taken by another writer are never
    /// written again.
    node_floor: u64,
}

impl Manifest {
    /// Loads the manifest (the latest root) for writing, as `writer`.
    ///
    /// # Errors
    ///
    /// Store failures, or a corrupt root.
    pub async fn load(reader: ManifestReader, writer: String) -> Result<Manifest, ArchiveError> {
        Manifest::load_at(reader, writer, 0, i64::MAX).await
    }

    /// Loads the manifest for writing as `writer` at leader term `term`, over a local log
    /// that starts at `local_start`.
    ///
    /// A root another cluster wrote is adopted only if it ends at or before `local_start`:
    /// this log then begins where that archive ends (a partition restored from it, which has
    /// written nothing to the archive yet). One that ends past it holds records this log does
    /// not: the other cluster wrote on after this one lost the bucket to it (an original
    /// cluster restarted after a fail-over, or a restored one whose original kept writing).
    /// Adopting it would take this log's unarchived records for archived ones; fenced.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Fenced`] when a writer of this cluster with a higher term wrote the
    /// latest root (this one is a deposed leader), or another cluster's root ends past
    /// `local_start`; store failures, or a corrupt root.
    pub async fn load_at(
        reader: ManifestReader,
        writer: String,
        term: u64,
        local_start: i64,
    ) -> Result<Manifest, ArchiveError> {
        let root = reader.latest_root().await?;
        if root.version > 0
            && !same_cluster(&root.writer, &writer)
            && root.next_offset > local_start
        {
            tracing::error!(partition = %reader.id, writer = %root.writer, archived_to = root.next_offset, local_start, "another cluster archived this partition past where the local log starts: this cluster's writer is fenced");
            return Err(ArchiveError::Fenced {
                partition: reader.id.to_string(),
                found: root.version,
                expected: root.version + 1,
            });
        }
        if same_cluster(&root.writer, &writer) && root.term > term {
            tracing::warn!(partition = %reader.id, writer = %root.writer, term = root.term, own_term = term, "the manifest was written at a higher term: this writer is fenced");
            return Err(ArchiveError::Fenced {
                partition: reader.id.to_string(),
                found: root.version,
                expected: root.version + 1,
            });
        }
        let leftover_nodes = root.garbage_nodes.clone();
        let leftover_segments = root.garbage_segments.clone();
        Ok(Manifest {
            reader,
            writer,
            term,
            root,
            spine: None,
            pending: Vec::new(),
            leftover_nodes,
            leftover_segments,
            fenced: false,
            node_floor: 0,
        })
    }

    /// The current (written) root.
    pub fn root(&self) -> &Root {
        &self.root
    }

    /// The reader side.
    pub fn reader(&self) -> &ManifestReader {
        &self.reader
    }

    /// True once another writer took over.
    pub fn is_fenced(&self) -> bool {
        self.fenced
    }

    /// Where the next archived segment must start: the end of the committed and pending ones.
    pub fn next_offset(&self) -> i64 {
        self.pending
            .last()
            .map_or(self.root.next_offset, |e| e.meta.last_offset + 1)
    }

    /// Queues a segment entry; [`Manifest::commit`] makes it visible.
    ///
    /// # Panics
    ///
    /// If the entry does not start where the archive ends (the caller plans contiguity).
    pub fn append(&mut self, entry: SegmentEntry) {
        let expected = self.next_offset();
        assert!(
            self.root.is_empty() && self.pending.is_empty() || entry.meta.base_offset == expected,
            "segment at {} does not follow the archive end {expected}",
            entry.meta.base_offset
        );
        self.pending.push(entry);
    }

    async fn load_spine(&mut self) -> Result<Vec<SpineNode>, ArchiveError> {
        let mut levels = Vec::new();
        let Some(mut current) = self.root.root_node else {
            return Ok(levels);
        };
        loop {
            let node = self.reader.node(current).await?;
            match node.as_ref() {
                Node::Leaf(_) => {
                    levels.push(SpineNode {
                        id: Some(current),
                        node: node.as_ref().clone(),
                        dirty: false,
                    });
                    break;
                }
                Node::Internal { level, children } => {
                    let mut children = children.clone();
                    let last = children.pop().ok_or_else(|| ArchiveError::Corrupt {
                        key: self
                            .reader
                            .layout
                            .node(&self.reader.id, current)
                            .to_string(),
                        reason: "internal node without children".into(),
                    })?;
                    levels.push(SpineNode {
                        id: Some(current),
                        node: Node::Internal {
                            level: *level,
                            children,
                        },
                        dirty: false,
                    });
                    current = last.node;
                }
            }
        }
        levels.reverse();
        Ok(levels)
    }

    /// Writes pending appends (and whatever else changed) as the next root. A no-op when
    /// nothing changed.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Fenced`] when another writer advanced the manifest (this writer must
    /// stop); store failures (the pending entries stay queued for the next attempt).
    pub async fn commit(&mut self, now_ms: i64) -> Result<(), ArchiveError> {
        if self.fenced {
            return Err(ArchiveError::Fenced {
                partition: self.reader.id.to_string(),
                found: self.root.version,
                expected: self.root.version + 1,
            });
        }
        let deferred_due = self.root.deferred_segments.iter().any(|d| d.3 <= now_ms);
        if self.pending.is_empty()
            && self.leftover_nodes.is_empty()
            && self.leftover_segments.is_empty()
            && !deferred_due
        {
            return Ok(());
        }
        let version_before = self.root.version;
        let mut root = self.root.clone();
        root.next_node_id = root.next_node_id.max(self.node_floor);
        let mut spine = match self.spine.take() {
            Some(spine) => spine,
            None => match self.load_spine().await {
                Ok(spine) => spine,
                Err(e) if e.is_not_found() => return Err(self.moved_under_us(e).await),
                Err(e) => return Err(e),
            },
        };
        let saved_spine = spine.clone();
        let mut writes: Vec<(u64, Node)> = Vec::new();
        let mut garbage: Vec<u64> = Vec::new();
        if root.is_empty()
            && let Some(first) = self.pending.first()
        {
            root.start_offset = first.meta.base_offset;
        }
        for entry in &self.pending {
            push_entry(&mut spine, *entry, &mut root, &mut writes, &mut garbage);
            root.segments += 1;
            root.bytes += entry.meta.size_bytes;
            root.next_offset = entry.meta.last_offset + 1;
            root.max_timestamp = root.max_timestamp.max(entry.meta.max_timestamp);
        }
        flush(&mut spine, &mut root, &mut writes, &mut garbage);
        garbage.extend(self.leftover_nodes.iter().copied());
        root.garbage_nodes = garbage;
        root.garbage_segments = self.leftover_segments.clone();
        release_deferred(&mut root, now_ms);
        match self.write_root(root, &writes, now_ms).await {
            Ok(()) => {
                self.pending.clear();
                self.spine = Some(spine);
                self.collect_garbage().await;
                Ok(())
            }
            Err(e) => {
                // Nothing of this attempt is visible; its nodes are orphans for the sweep. (If an
                // earlier attempt of ours landed, the root moved and the path is reloaded.)
                self.spine = (self.root.version == version_before).then_some(saved_spine);
                Err(e)
            }
        }
    }

    /// Replaces the whole list of segments by `entries` (the same offsets, contiguous: a
    /// compaction's rewrite of some of them), in one new root: readers see the old tree or
    /// the new one. The objects of `replaced` stay until `delete_after_ms` (a reader that
    /// resolved one just before can still fetch it), then go with a later commit. The tree is
    /// written afresh (a compacted archive is small); every old node is garbage.
    ///
    /// # Errors
    ///
    /// Store failures or fencing; nothing changes then.
    pub async fn rewrite(
        &mut self,
        entries: &[SegmentEntry],
        replaced: &[SegmentEntry],
        delete_after_ms: i64,
        compacted_to: i64,
        tombstones_due_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<(), ArchiveError> {
        self.commit(now_ms).await?;
        let current = self.root.clone();
        let mut old_nodes = Vec::new();
        self.reader
            .walk(&current, &mut |_| true, &mut |node| old_nodes.push(node))
            .await?;
        let mut root = current;
        root.next_node_id = root.next_node_id.max(self.node_floor);
        root.root_node = None;
        root.depth = 0;
        root.segments = 0;
        root.bytes = 0;
        let mut spine = Vec::new();
        let mut writes = Vec::new();
        let mut garbage = Vec::new();
        for entry in entries {
            push_entry(&mut spine, *entry, &mut root, &mut writes, &mut garbage);
            root.segments += 1;
            root.bytes += entry.meta.size_bytes;
        }
        flush(&mut spine, &mut root, &mut writes, &mut garbage);
        garbage.extend(old_nodes);
        garbage.extend(self.leftover_nodes.iter().copied());
        root.garbage_nodes = garbage;
        root.garbage_segments = self.leftover_segments.clone();
        release_deferred(&mut root, now_ms);
        root.deferred_segments.extend(replaced.iter().map(|e| {
            (
                e.meta.base_offset,
                e.meta.last_offset,
                e.object_id,
                delete_after_ms,
            )
        }));
        root.compacted_to = compacted_to;
        root.tombstones_due_ms = tombstones_due_ms;
        self.write_root(root, &writes, now_ms).await?;
        self.spine = Some(spine);
        self.collect_garbage().await;
        Ok(())
    }

    /// A node of the root this writer holds is gone: another writer advanced the manifest and
    /// collected it. Fenced, unless the newer root is this writer's own (adopted then).
    async fn moved_under_us(&mut self, error: ArchiveError) -> ArchiveError {
        let latest = match self.reader.latest_root().await {
            Ok(latest) => latest,
            Err(e) => return e,
        };
        if latest.version == self.root.version {
            return error;
        }
        if latest.writer == self.writer {
            let next = latest.next_offset;
            self.root = latest;
            self.pending.retain(|e| e.meta.base_offset >= next);
            return error;
        }
        self.other_writer(&latest)
    }

    /// Another writer wrote `other`: this one is fenced (a writer of another cluster, or of
    /// a higher term: a newer leader), or superseded (a deposed leader of this cluster got a
    /// root in first; its data was committed, so this writer reloads and carries on).
    fn other_writer(&mut self, other: &Root) -> ArchiveError {
        let partition = self.reader.id.to_string();
        if same_cluster(&other.writer, &self.writer) && other.term <= self.term {
            tracing::info!(%partition, writer = %other.writer, term = other.term, own_term = self.term, version = other.version, "a writer of an older term advanced the manifest: reloading it");
            self.spine = None;
            return ArchiveError::Superseded {
                partition,
                writer: other.writer.clone(),
                term: other.term,
                found: other.version,
            };
        }
        tracing::error!(%partition, writer = %other.writer, term = other.term, own_term = self.term, version = other.version, "another writer advanced this partition's manifest: fenced");
        self.fenced = true;
        ArchiveError::Fenced {
            partition,
            found: other.version,
            expected: self.root.version + 1,
        }
    }

    /// Writes `writes` then the root as version + 1, fenced.
    async fn write_root(
        &mut self,
        mut root: Root,
        writes: &[(u64, Node)],
        now_ms: i64,
    ) -> Result<(), ArchiveError> {
        let remote = self.reader.remote.clone();
        let layout = self.reader.layout.clone();
        let id = self.reader.id.clone();
        // Nodes are immutable and created only where nothing is: a writer racing this one (a
        // cluster that recovered the partition, say) may have taken the same ids, and
        // overwriting its node would corrupt the tree its root names, whichever root wins.
        let uploads = writes.iter().map(|(node, content)| {
            let key = layout.node(&id, *node);
            let bytes = Bytes::from(content.encode());
            let remote = remote.clone();
            async move {
                match remote.put_if_absent(&key, bytes.clone()).await? {
                    Created::Yes => Ok(true),
                    // The same bytes: this writer's own earlier attempt, which no root names.
                    Created::AlreadyExists => Ok(remote.get(&key).await? == bytes),
                    // No conditional writes here: the root's check below is the only fence.
                    Created::Unsupported => remote.put(&key, bytes).await.map(|()| true),
                }
            }
        });
        let created = futures::future::try_join_all(uploads).await?;
        if created.contains(&false) {
            // Taken: never use these ids again. Fenced if another writer has committed.
            let taken = remote
                .list(
                    &layout.nodes_dir(&id),
                    // From the first id this attempt used: the taken ones are at or above it.
                    writes
                        .iter()
                        .map(|(node, _)| layout.node(&id, node.saturating_sub(1)))
                        .min()
                        .as_ref(),
                )
                .await?
                .iter()
                .filter_map(|meta| parse_node_id(&meta.location))
                .chain(writes.iter().map(|(node, _)| *node))
                .max()
                .unwrap_or(0);
            self.node_floor = self.node_floor.max(taken + 1);
            let taken_error = ArchiveError::Unavailable {
                op: "commit",
                key: layout.nodes_dir(&id).to_string(),
                source: object_store::Error::Generic {
                    store: "silt",
                    source: "manifest node ids taken by another writer; retrying with fresh ones"
                        .into(),
                },
            };
            // Fenced if that writer has committed meanwhile; otherwise retried.
            return Err(self.moved_under_us(taken_error).await);
        }
        root.version = self.root.version + 1;
        root.writer = self.writer.clone();
        root.term = self.term;
        root.updated_ms = now_ms;
        let key = layout.root(&id, root.version);
        let body = Bytes::from(serde_json::to_vec_pretty(&root).expect("roots serialise"));
        match remote.put_if_absent(&key, body.clone()).await? {
            Created::Yes => {}
            Created::AlreadyExists => {
                // Our own earlier attempt may have landed without our hearing back: adopt it.
                let existing: Root =
                    serde_json::from_slice(&remote.get(&key).await?).map_err(|e| {
                        ArchiveError::Corrupt {
                            key: key.to_string(),
                            reason: e.to_string(),
                        }
                    })?;
                if existing.writer == self.writer {
                    let next = existing.next_offset;
                    self.root = existing;
                    self.pending.retain(|e| e.meta.base_offset >= next);
                    self.spine = None;
                    return Err(ArchiveError::Unavailable {
                        op: "commit (retry)",
                        key: key.to_string(),
                        source: object_store::Error::Generic {
                            store: "silt",
                            source: "an earlier attempt of this commit landed; retrying".into(),
                        },
                    });
                }
                return Err(self.other_writer(&existing));
            }
            Created::Unsupported => {
                // No conditional writes: write, then check that what is there is ours.
                remote.put(&key, body).await?;
                let back: Root = serde_json::from_slice(&remote.get(&key).await?).map_err(|e| {
                    ArchiveError::Corrupt {
                        key: key.to_string(),
                        reason: e.to_string(),
                    }
                })?;
                if back.writer != self.writer {
                    return Err(self.other_writer(&back));
                }
            }
        }
        let previous = self.root.version;
        self.root = root;
        // Keep the previous root one more version for readers that just listed it.
        if previous >= 1 {
            let _ = remote.delete(&layout.root(&id, previous - 1)).await;
        }
        Ok(())
    }

    /// Deletes the garbage the current root lists; what fails is carried to the next root.
    async fn collect_garbage(&mut self) {
        let remote = self.reader.remote.clone();
        let layout = self.reader.layout.clone();
        let id = self.reader.id.clone();
        let mut nodes_left = Vec::new();
        for node in self.root.garbage_nodes.clone() {
            if remote.delete(&layout.node(&id, node)).await.is_err() {
                nodes_left.push(node);
            }
        }
        let mut segments_left = Vec::new();
        for (base, last, object) in self.root.garbage_segments.clone() {
            let a = remote
                .delete(&layout.segment(&id, base, last, object))
                .await;
            let b = remote
                .delete(&layout.sidecar(&id, base, last, object))
                .await;
            // The key index, when the topic has one (a missing object deletes fine).
            let c = remote
                .delete(&layout.key_index(&id, base, last, object))
                .await;
            if a.is_err() || b.is_err() || c.is_err() {
                segments_left.push((base, last, object));
            }
        }
        self.leftover_nodes = nodes_left;
        self.leftover_segments = segments_left;
    }

    /// Deletes what a crashed writer left behind: nodes at or above `next_node_id` and segment
    /// objects at or after `next_offset`, which no root names. Returns how many objects went.
    ///
    /// # Errors
    ///
    /// Store failures.
    pub async fn sweep_orphans(&mut self) -> Result<usize, ArchiveError> {
        let remote = self.reader.remote.clone();
        let layout = self.reader.layout.clone();
        let id = self.reader.id.clone();
        let mut removed = 0;
        let from = self
            .root
            .next_node_id
            .checked_sub(1)
            .map(|n| layout.node(&id, n));
        for meta in remote.list(&layout.nodes_dir(&id), from.as_ref()).await? {
            if parse_node_id(&meta.location).is_some_and(|n| n >= self.root.next_node_id) {
                remote.delete(&meta.location).await?;
                removed += 1;
            }
        }
        let from = (self.root.next_offset > 0)
            .then(|| layout.segment(&id, self.root.next_offset - 1, 0, 0));
        for meta in remote
            .list(&layout.segments_dir(&id), from.as_ref())
            .await?
        {
            let Some((base, _, object)) = parse_segment_name(&meta.location) else {
                continue;
            };
            let queued = self
                .pending
                .iter()
                .any(|e| e.meta.base_offset == base && e.object_id == object);
            if base >= self.root.next_offset && !queued {
                remote.delete(&meta.location).await?;
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(partition = %id, removed, "deleted objects left by an interrupted upload");
        }
        Ok(removed)
    }

    /// Drops every segment that ends before `offset` from the manifest (retention,
    /// DeleteRecords): the archive then starts at `offset` (or at the start of the segment
    /// holding it, for reads; [`Root::start_offset`] records `offset` exactly). Returns the
    /// dropped entries; their objects are deleted once the new root is written.
    ///
    /// # Errors
    ///
    /// Store failures or fencing; nothing changes then.
    pub async fn drop_before(
        &mut self,
        offset: i64,
        now_ms: i64,
    ) -> Result<Vec<SegmentEntry>, ArchiveError> {
        self.commit(now_ms).await?;
        let offset = offset.min(self.root.next_offset);
        if offset <= self.root.start_offset {
            return Ok(Vec::new());
        }
        let mut root = self.root.clone();
        let mut dropped = Vec::new();
        let mut garbage = Vec::new();
        let mut writes = Vec::new();
        if let Some(node) = root.root_node {
            let summary = self
                .trim(
                    node,
                    offset,
                    &mut root,
                    &mut dropped,
                    &mut garbage,
                    &mut writes,
                )
                .await?;
            root.root_node = summary.map(|c| c.node);
            if root.root_node.is_none() {
                root.depth = 0;
            }
        }
        root.start_offset = offset;
        root.segments -= dropped.len() as u64;
        root.bytes -= dropped.iter().map(|e| e.meta.size_bytes).sum::<u64>();
        garbage.extend(self.leftover_nodes.iter().copied());
        root.garbage_nodes = garbage;
        let mut segments: Vec<(i64, i64, u64)> = self.leftover_segments.clone();
        segments.extend(
            dropped
                .iter()
                .map(|e| (e.meta.base_offset, e.meta.last_offset, e.object_id)),
        );
        root.garbage_segments = segments;
        self.write_root(root, &writes, now_ms).await?;
        // The left edge changed: the right-hand path may share nodes with it; reload lazily.
        self.spine = None;
        self.collect_garbage().await;
        Ok(dropped)
    }

    /// As [`Manifest::drop_before`], but removing at most `max_segments` segments: the start
    /// moves to `offset` or to the end of the last segment within the budget, whichever comes
    /// first. A cut over millions of segments goes in passes, each a bounded manifest change
    /// and a bounded number of deletes; call again until the start reaches `offset`.
    ///
    /// # Errors
    ///
    /// As [`Manifest::drop_before`].
    pub async fn drop_before_at_most(
        &mut self,
        offset: i64,
        max_segments: usize,
        now_ms: i64,
    ) -> Result<Vec<SegmentEntry>, ArchiveError> {
        self.commit(now_ms).await?;
        let root = self.root.clone();
        let offset = offset.min(root.next_offset);
        if root.is_empty() || offset <= root.start_offset {
            return self.drop_before(offset, now_ms).await;
        }
        let mut counted = 0usize;
        let mut cut = offset;
        self.reader
            .walk(
                &root,
                &mut |entry| {
                    if entry.meta.last_offset < root.start_offset {
                        return true;
                    }
                    if entry.meta.last_offset + 1 > offset {
                        return false;
                    }
                    counted += 1;
                    if counted == max_segments {
                        cut = entry.meta.last_offset + 1;
                        return false;
                    }
                    true
                },
                &mut |_| {},
            )
            .await?;
        self.drop_before(cut, now_ms).await
    }

    /// Rewrites the subtree under `node` without the entries ending before `offset`.
    async fn trim(
        &self,
        node: u64,
        offset: i64,
        root: &mut Root,
        dropped: &mut Vec<SegmentEntry>,
        garbage: &mut Vec<u64>,
        writes: &mut Vec<(u64, Node)>,
    ) -> Result<Option<Child>, ArchiveError> {
        let content = self.reader.node(node).await?;
        let new = match content.as_ref() {
            Node::Leaf(entries) => {
                let (gone, kept): (Vec<SegmentEntry>, Vec<SegmentEntry>) =
                    entries.iter().partition(|e| e.meta.last_offset < offset);
                if gone.is_empty() {
                    return Ok(content.summary(node));
                }
                dropped.extend(gone);
                Node::Leaf(kept)
            }
            Node::Internal { level, children } => {
                let mut kept = Vec::new();
                let mut changed = false;
                for child in children {
                    if child.last_offset < offset {
                        // The whole subtree goes: list its segments and nodes.
                        let mut entries = Vec::new();
                        let mut ids = Vec::new();
                        let sub = Root {
                            root_node: Some(child.node),
                            ..root.clone()
                        };
                        self.reader
                            .walk(
                                &sub,
                                &mut |e| {
                                    entries.push(*e);
                                    true
                                },
                                &mut |n| ids.push(n),
                            )
                            .await?;
                        dropped.extend(entries);
                        garbage.extend(ids);
                        changed = true;
                    } else if child.first_base < offset {
                        match Box::pin(
                            self.trim(child.node, offset, root, dropped, garbage, writes),
                        )
                        .await?
                        {
                            Some(summary) => {
                                changed |= summary != *child;
                                kept.push(summary);
                            }
                            None => changed = true,
                        }
                    } else {
                        kept.push(*child);
                    }
                }
                if !changed {
                    return Ok(content.summary(node));
                }
                Node::Internal {
                    level: *level,
                    children: kept,
                }
            }
        };
        garbage.push(node);
        if new.summary(0).is_none() {
            return Ok(None);
        }
        let id = root.next_node_id;
        root.next_node_id += 1;
        let summary = new.summary(id);
        writes.push((id, new));
        Ok(summary)
    }
}

/// Moves the deferred segments whose grace period ended to the root's garbage.
fn release_deferred(root: &mut Root, now_ms: i64) {
    let (due, kept): (Vec<_>, Vec<_>) = root.deferred_segments.iter().partition(|d| d.3 <= now_ms);
    root.deferred_segments = kept;
    root.garbage_segments.extend(
        due.into_iter()
            .map(|(base, last, object, _)| (base, last, object)),
    );
}

/// Appends an entry to the right-hand path, sealing full nodes.
fn push_entry(
    spine: &mut Vec<SpineNode>,
    entry: SegmentEntry,
    root: &mut Root,
    writes: &mut Vec<(u64, Node)>,
    garbage: &mut Vec<u64>,
) {
    if spine.is_empty() {
        spine.push(SpineNode {
            id: None,
            node: Node::Leaf(vec![entry]),
            dirty: true,
        });
        return;
    }
    if let Node::Leaf(entries) = &mut spine[0].node
        && entries.len() < FANOUT
    {
        entries.push(entry);
        spine[0].dirty = true;
        return;
    }
    let sealed = seal(spine, 0, root, writes, garbage);
    spine[0] = SpineNode {
        id: None,
        node: Node::Leaf(vec![entry]),
        dirty: true,
    };
    add_child(spine, 1, sealed, root, writes, garbage);
}

/// Writes the node at `level` if it changed and returns its summary.
fn seal(
    spine: &mut [SpineNode],
    level: usize,
    root: &mut Root,
    writes: &mut Vec<(u64, Node)>,
    garbage: &mut Vec<u64>,
) -> Child {
    let node = &mut spine[level];
    if node.dirty || node.id.is_none() {
        let id = root.next_node_id;
        root.next_node_id += 1;
        if let Some(old) = node.id {
            garbage.push(old);
        }
        node.id = Some(id);
        node.dirty = false;
        writes.push((id, node.node.clone()));
    }
    node.node
        .summary(node.id.expect("set above"))
        .expect("a sealed node is never empty")
}

/// Adds a sealed child to the node at `level`, growing the tree when the root fills.
fn add_child(
    spine: &mut Vec<SpineNode>,
    level: usize,
    child: Child,
    root: &mut Root,
    writes: &mut Vec<(u64, Node)>,
    garbage: &mut Vec<u64>,
) {
    if level == spine.len() {
        spine.push(SpineNode {
            id: None,
            node: Node::Internal {
                level: level as u16,
                children: vec![child],
            },
            dirty: true,
        });
        return;
    }
    let full = {
        let Node::Internal { children, .. } = &mut spine[level].node else {
            unreachable!("levels above 0 are internal nodes");
        };
        children.push(child);
        children.len() == FANOUT
    };
    spine[level].dirty = true;
    if full {
        let sealed = seal(spine, level, root, writes, garbage);
        spine[level] = SpineNode {
            id: None,
            node: Node::Internal {
                level: level as u16,
                children: Vec::new(),
            },
            dirty: true,
        };
        add_child(spine, level + 1, sealed, root, writes, garbage);
    }
}

/// Writes every changed level of the right-hand path, bottom up, and points the root at it.
fn flush(
    spine: &mut [SpineNode],
    root: &mut Root,
    writes: &mut Vec<(u64, Node)>,
    garbage: &mut Vec<u64>,
) {
    let mut current: Option<Child> = None;
    let mut child_changed = false;
    for level in spine.iter_mut() {
        let mut node = level.node.clone();
        if let (Some(child), Node::Internal { children, .. }) = (current, &mut node) {
            children.push(child);
        }
        let changed = level.dirty || child_changed || level.id.is_none();
        if changed {
            let id = root.next_node_id;
            root.next_node_id += 1;
            if let Some(old) = level.id {
                garbage.push(old);
            }
            level.id = Some(id);
            level.dirty = false;
            writes.push((id, node.clone()));
        }
        current = node.summary(level.id.expect("set above"));
        child_changed = changed;
    }
    if let Some(top) = spine.last() {
        root.root_node = top.id;
        root.depth = (spine.len() - 1) as u16;
    }
}
