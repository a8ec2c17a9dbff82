//! The topic catalog in the bucket: one small JSON object per topic incarnation, so that the
//! archive can be listed, verified and restored without the cluster that wrote it.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ArchiveError;
use crate::layout::Layout;
use crate::remote::Remote;

/// What the bucket records about a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicCatalog {
    /// Format of this object.
    pub format: u32,
    /// Topic name.
    pub name: String,
    /// Topic id.
    pub id: Uuid,
    /// Partition count.
    pub partitions: i32,
    /// Property overrides (canonical names).
    pub configs: BTreeMap<String, String>,
    /// Cluster that wrote it.
    pub cluster_id: String,
    /// When written.
    pub updated_ms: i64,
    /// When the topic was found deleted: its objects are on their way out, and readers
    /// (restores, listings) no longer see it. The object goes last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_ms: Option<i64>,
}

impl TopicCatalog {
    /// The id of one of its partitions, as the archive names it.
    pub fn partition_id(&self, partition: i32) -> crate::PartitionId {
        crate::PartitionId {
            topic: self.name.clone(),
            topic_id: self.id,
            partition,
        }
    }

    /// The ids of all its partitions.
    pub fn partition_ids(&self) -> impl Iterator<Item = crate::PartitionId> + '_ {
        (0..self.partitions).map(|partition| self.partition_id(partition))
    }
}

/// Writes (replaces) a topic's catalog object.
///
/// # Errors
///
/// Store failures.
pub async fn put(
    remote: &Remote,
    layout: &Layout,
    topic: &TopicCatalog,
) -> Result<(), ArchiveError> {
    let body = Bytes::from(serde_json::to_vec_pretty(topic).expect("catalog serialises"));
    remote
        .put(&layout.catalog(&topic.name, topic.id), body)
        .await
}

/// Removes a topic's catalog object.
///
/// # Errors
///
/// Store failures.
pub async fn delete(
    remote: &Remote,
    layout: &Layout,
    name: &str,
    id: Uuid,
) -> Result<(), ArchiveError> {
    remote.delete(&layout.catalog(name, id)).await
}

/// Every topic in the catalog that is not being deleted, by name.
///
/// # Errors
///
/// Store failures, or a catalog object that does not parse.
pub async fn list(remote: &Remote, layout: &Layout) -> Result<Vec<TopicCatalog>, ArchiveError> {
    let mut topics = list_all(remote, layout).await?;
    topics.retain(|t| t.deleted_ms.is_none());
    Ok(topics)
}

/// Every topic in the catalog, those being deleted too, by name.
///
/// # Errors
///
/// Store failures, or a catalog object that does not parse.
pub async fn list_all(remote: &Remote, layout: &Layout) -> Result<Vec<TopicCatalog>, ArchiveError> {
    let mut topics = Vec::new();
    for meta in remote.list(&layout.catalog_dir(), None).await? {
        topics.push(get_json::<TopicCatalog>(remote, &meta.location).await?);
    }
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(topics)
}

/// One committed offset, as the bucket keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupOffset {
    /// The next offset the group reads.
    pub offset: i64,
    /// Leader epoch of the record before it, or -1.
    pub leader_epoch: i32,
    /// Client metadata.
    pub metadata: String,
}

/// Every consumer group's committed offsets, as one cluster last wrote them:
/// group -> topic -> partition -> offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupsSnapshot {
    /// Format of this object.
    pub format: u32,
    /// Cluster that wrote it.
    pub cluster_id: String,
    /// When written.
    pub updated_ms: i64,
    /// The offsets.
    pub groups: BTreeMap<String, BTreeMap<String, BTreeMap<i32, GroupOffset>>>,
    /// The group-log partition whose groups these are, when each coordinator of a cluster
    /// writes its own (absent: every group of the cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<u32>,
}

/// Writes (replaces) a cluster's groups snapshot.
///
/// # Errors
///
/// Store failures.
pub async fn put_groups(
    remote: &Remote,
    layout: &Layout,
    snapshot: &GroupsSnapshot,
) -> Result<(), ArchiveError> {
    let body = Bytes::from(serde_json::to_vec_pretty(snapshot).expect("snapshot serialises"));
    let key = match snapshot.partition {
        Some(p) => layout.groups_partition(&snapshot.cluster_id, p),
        None => layout.groups(&snapshot.cluster_id),
    };
    remote.put(&key, body).await
}

/// The newest groups snapshot in the bucket (of whichever cluster wrote last), if any.
///
/// # Errors
///
/// Store failures, or a snapshot that does not parse.
pub async fn latest_groups(
    remote: &Remote,
    layout: &Layout,
) -> Result<Option<GroupsSnapshot>, ArchiveError> {
    let mut by_cluster: BTreeMap<String, Vec<GroupsSnapshot>> = BTreeMap::new();
    for meta in remote.list(&layout.groups_dir(), None).await? {
        let snapshot: GroupsSnapshot = get_json(remote, &meta.location).await?;
        by_cluster
            .entry(snapshot.cluster_id.clone())
            .or_default()
            .push(snapshot);
    }
    // The cluster that wrote last; its coordinators' snapshots merged, newer over older.
    let Some(mut parts) = by_cluster
        .into_values()
        .max_by_key(|parts| parts.iter().map(|p| p.updated_ms).max())
    else {
        return Ok(None);
    };
    parts.sort_by_key(|p| p.updated_ms);
    let mut merged = parts.last().cloned().expect("a cluster has a snapshot");
    merged.partition = None;
    merged.groups = BTreeMap::new();
    for part in parts {
        merged.groups.extend(part.groups);
    }
    Ok(Some(merged))
}

/// Reads a JSON object of the bucket; one that does not parse is corrupt.
async fn get_json<T: serde::de::DeserializeOwned>(
    remote: &Remote,
    key: &object_store::path::Path,
) -> Result<T, ArchiveError> {
    let bytes = remote.get(key).await?;
    serde_json::from_slice(&bytes).map_err(|e| ArchiveError::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    })
}
