//! Disaster recovery through the bucket: topics rebuilt from an archive (`remote.recovery`),
//! and read replicas that serve another cluster's archive (`remote.readreplica`).
//!
//! A recovered topic takes the id its objects are named by, its partition count and its
//! properties from the archive's catalog; each partition's local log starts, empty, at the
//! archive's next offset, so every archived offset reads through the archive at once and new
//! produces continue after it. This node's archiver then becomes the manifest's writer: a
//! cluster still writing the same bucket is fenced by the conditional root writes.
//!
//! A read replica's partitions have no local data: fetches and ListOffsets go to the source
//! archive's manifests, which [`crate::tiering::Tiering::follow`] keeps current.

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};

use silt_archiver::{Archive, TopicCatalog};

use crate::cluster::admin::{Created, NewTopic, Restored};
use crate::node::Node;
use crate::topics::TopicError;

/// Property names that say how a topic is created, not what it is.
const RECOVERY: &str = "remote.recovery";

/// Creates a topic: plainly, recovered from this node's archive (`remote.recovery=true`), or
/// as a read replica of another archive (`remote.readreplica=<bucket or URL>`).
/// `partitions` is `None` when the request left the count to the broker.
///
/// # Errors
///
/// [`TopicError`] naming what is wrong: the usual checks, no archive, the topic not in the
/// archive, a partition count that differs from the archive's.
pub async fn create_topic(
    node: &Node,
    name: &str,
    partitions: Option<i32>,
    replication: i16,
    configs: &[(String, String)],
    validate_only: bool,
) -> Result<Created, TopicError> {
    let count = partitions.unwrap_or(node.config.default_partitions);
    let (config, overrides) = node.topics.validate_create(name, count, configs)?;
    let replica = config.remote_readreplica.clone();
    if !config.remote_recovery && replica.is_none() {
        let new = NewTopic {
            name: name.to_string(),
            partitions: count,
            replication_factor: replication,
            configs: configs.to_vec(),
            restored: None,
        };
        return node.create_topic(new, validate_only).await;
    }
    if config.remote_recovery && replica.is_some() {
        return Err(TopicError::Archive(
            "remote.recovery and remote.readreplica exclude each other: a topic is either recovered (and written) here or read from another cluster".into(),
        ));
    }
    let Some(tiering) = &node.tiering else {
        return Err(TopicError::Archive(format!(
            "'{name}': remote.recovery and remote.readreplica need this node to have an archive, and its archive is disabled"
        )));
    };
    let source = match &replica {
        Some(value) => tiering
            .replica_source(value)
            .map_err(|e| TopicError::Archive(format!("remote.readreplica={value}: {e}")))?,
        None => tiering.archive().clone(),
    };
    let catalog = find(&source, name).await?;
    if partitions.is_some_and(|p| p != catalog.partitions) {
        return Err(TopicError::InvalidPartitions(format!(
            "'{name}' has {} partitions in the archive at {}: ask for that many, or leave the count out",
            catalog.partitions,
            source.remote().description()
        )));
    }
    // The archive's properties, then the request's; never the creation-only ones of the source.
    let mut merged: BTreeMap<String, String> = catalog.configs.clone();
    merged.remove(RECOVERY);
    merged.remove("remote.readreplica");
    merged.extend(overrides.clone());
    merged.remove(RECOVERY);
    if replica.is_some() {
        // A replica never archives: its archive is the source's.
        merged.remove("remote.storage.enable");
    }
    let (starts, epochs) = if replica.is_some() {
        let count = catalog.partitions as usize;
        (vec![0; count], vec![Vec::new(); count])
    } else {
        archived_ends(&source, &catalog).await?.into_iter().unzip()
    };
    let merged_list: Vec<(String, String)> = merged.into_iter().collect();
    let new = NewTopic {
        name: name.to_string(),
        partitions: catalog.partitions,
        replication_factor: replication,
        configs: merged_list,
        restored: Some(Restored {
            id: catalog.id,
            starts: starts.clone(),
            epochs,
        }),
    };
    let mut created = node.create_topic(new, validate_only).await?;
    if validate_only {
        created.id = catalog.id;
        return Ok(created);
    }
    match &replica {
        Some(value) => {
            tracing::info!(topic = name, id = %catalog.id, source = value, partitions = catalog.partitions, "created read replica")
        }
        None => {
            tracing::info!(topic = name, id = %catalog.id, partitions = catalog.partitions, next_offsets = ?starts, "recovered topic from the archive")
        }
    }
    Ok(created)
}

/// The newest incarnation of `name` in an archive's catalog.
async fn find(archive: &Archive, name: &str) -> Result<TopicCatalog, TopicError> {
    let topics = archive.topics().await.map_err(|e| {
        TopicError::Archive(format!(
            "could not read the topic catalog at {}: {e}",
            archive.remote().description()
        ))
    })?;
    topics
        .into_iter()
        .filter(|t| t.name == name)
        .max_by_key(|t| t.updated_ms)
        .ok_or_else(|| {
            TopicError::Archive(format!(
                "no topic '{name}' in the archive at {}",
                archive.remote().description()
            ))
        })
}

/// Each partition's next offset in the archive (where its local log starts), with the
/// leader epochs of its archived records (its local log continues in a newer one).
async fn archived_ends(
    archive: &Archive,
    catalog: &TopicCatalog,
) -> Result<Vec<(i64, Vec<(i32, i64)>)>, TopicError> {
    let ends = catalog.partition_ids().map(|id| {
        let reader = archive.reader(id);
        async move {
            let root = reader.latest_root().await?;
            let epochs = reader.epochs(&root).await?;
            Ok::<_, silt_archiver::ArchiveError>((root.next_offset, epochs))
        }
    });
    futures::stream::iter(ends)
        .buffered(8)
        .try_collect()
        .await
        .map_err(|e| {
            TopicError::Archive(format!(
                "could not read the manifests of '{}' at {}: {e}",
                catalog.name,
                archive.remote().description()
            ))
        })
}
