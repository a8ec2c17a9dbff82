//! One silt node: its settings, identity, topics and counters, shared by every connection.
//!
//! # Files
//!
//! ```text
//! <data>/node.json           {"format":1,"cluster_id":"..."}: made on first start
//! <data>/producer_ids.json   {"next":N}: first producer id not yet handed out
//! ```

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use silt_config::NodeConfig;

use crate::group::{GroupConfig, GroupCoordinator};
use crate::log::storage::{read_all, write_atomic};
use crate::log::{Clock, LogError, Storage};
use crate::metrics::Metrics;
use crate::tiering::Tiering;
use crate::topics::{TopicEvent, TopicRegistry};

/// Producer ids are reserved on disk this many at a time.
pub const PRODUCER_ID_BLOCK: i64 = 1000;

#[derive(Debug, Serialize, Deserialize)]
struct NodeRecord {
    format: u32,
    cluster_id: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct ProducerIdRecord {
    next: i64,
}

/// The node.
#[derive(Debug)]
pub struct Node {
    /// Settings.
    pub config: NodeConfig,
    /// Cluster id, made on first start and kept in `node.json`.
    pub cluster_id: String,
    /// Topics.
    pub topics: Arc<TopicRegistry>,
    /// Consumer groups and their committed offsets.
    pub groups: Arc<GroupCoordinator>,
    /// The archive side, when the node has an archive.
    pub tiering: Option<Arc<Tiering>>,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    storage: Arc<dyn Storage>,
    producer_ids: Mutex<ProducerIds>,
    started: Instant,
}

#[derive(Debug)]
struct ProducerIds {
    next: i64,
    reserved_until: i64,
}

impl Node {
    /// Opens the node's data directory (creating it), loads its identity and its topics.
    /// Blocking: it recovers every partition log.
    ///
    /// # Errors
    ///
    /// [`LogError`] naming the path when the data directory cannot be created, read or
    /// written.
    pub fn open(
        mut config: NodeConfig,
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
        runtime: tokio::runtime::Handle,
    ) -> Result<Arc<Node>, LogError> {
        let data = config.data_dir.clone();
        storage
            .create_dir_all(&data)
            .map_err(|e| LogError::io("create data directory", data.clone(), e))?;
        let node_file = data.join("node.json");
        let cluster_id = if storage.exists(&node_file) {
            let record: NodeRecord = read_json(storage.as_ref(), &node_file)?;
            record.cluster_id
        } else {
            let record = NodeRecord {
                format: 1,
                cluster_id: new_cluster_id(),
            };
            write_json(storage.as_ref(), &node_file, &record)?;
            record.cluster_id
        };
        let archive_target = match &config.archive {
            silt_config::ArchiveTarget::Disabled => None,
            silt_config::ArchiveTarget::Default => Some(data.join("archive").display().to_string()),
            silt_config::ArchiveTarget::Url(url) => Some(url.clone()),
        };
        // Topics archive by default when there is an archive (remote.storage.enable).
        config.topic_defaults.remote_storage_enable = archive_target.is_some();
        let tiering = match &archive_target {
            Some(target) => Some(Arc::new(
                Tiering::open(target, &config, &cluster_id).map_err(|e| LogError::Foreign {
                    path: std::path::PathBuf::from(target),
                    reason: e.to_string(),
                })?,
            )),
            None => None,
        };
        let ids_file = data.join("producer_ids.json");
        let next = if storage.exists(&ids_file) {
            read_json::<ProducerIdRecord>(storage.as_ref(), &ids_file)?.next
        } else {
            0
        };
        let topics = Arc::new(TopicRegistry::open(
            storage.clone(),
            clock.clone(),
            &config,
            runtime.clone(),
        )?);
        let group_config = GroupConfig {
            session_timeout_min_ms: config.group_min_session_timeout_ms,
            session_timeout_max_ms: config.group_max_session_timeout_ms,
            initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms,
            log_compaction_bytes: config.group_log_compaction_bytes,
        };
        let groups = Arc::new(GroupCoordinator::open(
            storage.clone(),
            &config,
            group_config,
            clock.clone(),
            &runtime,
        )?);
        let node = Arc::new(Node {
            config,
            cluster_id,
            topics,
            groups,
            tiering,
            metrics: Metrics::default(),
            clock,
            storage,
            producer_ids: Mutex::new(ProducerIds {
                next,
                reserved_until: next,
            }),
            started: Instant::now(),
        });
        if let Some(tiering) = node.tiering.clone() {
            let clock = node.clock.clone();
            let runtime = runtime.clone();
            node.topics.set_listener(Arc::new(move |event| {
                let tiering = tiering.clone();
                let now = clock.now_ms();
                match event {
                    TopicEvent::Changed(topic) => {
                        runtime.spawn(async move { tiering.put_catalog(&topic, now).await });
                    }
                    TopicEvent::Deleted { replica: true, .. } => {}
                    TopicEvent::Deleted {
                        name,
                        id,
                        partitions,
                        ..
                    } => {
                        let _guard = runtime.enter();
                        tiering.forget_topic(name, id, partitions);
                    }
                }
            }));
        }
        Ok(node)
    }

    /// Hands out a producer id never given before, reserving a block on disk when the
    /// current one runs out (so a restart never reuses an id). Blocking.
    ///
    /// # Errors
    ///
    /// The I/O error of reserving a block.
    pub fn allocate_producer_id(&self) -> Result<i64, LogError> {
        let mut ids = self.producer_ids.lock().unwrap_or_else(|p| p.into_inner());
        if ids.next == ids.reserved_until {
            let until = ids.next + PRODUCER_ID_BLOCK;
            let path = self.config.data_dir.join("producer_ids.json");
            write_json(
                self.storage.as_ref(),
                &path,
                &ProducerIdRecord { next: until },
            )?;
            ids.reserved_until = until;
        }
        let id = ids.next;
        ids.next += 1;
        assert!(
            ids.next <= ids.reserved_until,
            "producer id {id} handed out beyond its reserved block"
        );
        Ok(id)
    }

    /// Seconds since the node started.
    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.config.data_dir.clone()
    }

    /// Closes every partition log cleanly.
    pub async fn shutdown(&self) {
        self.topics.close_all().await;
        self.groups.close().await;
    }
}

/// A cluster id in Kafka's style: 16 random bytes, URL-safe base64 without padding.
fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let mut bits: u128 = u128::from_be_bytes(bytes);
    let mut out = String::with_capacity(22);
    for _ in 0..22 {
        out.push(ALPHABET[(bits >> 122) as usize & 63] as char);
        bits <<= 6;
    }
    out
}

fn read_json<T: for<'de> Deserialize<'de>>(
    storage: &dyn Storage,
    path: &std::path::Path,
) -> Result<T, LogError> {
    let bytes = storage
        .open(path, false)
        .and_then(|f| read_all(f.as_ref()))
        .map_err(|e| LogError::io("read", path.to_path_buf(), e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| LogError::corrupt(path.to_path_buf(), 0, e.to_string()))
}

fn write_json<T: Serialize>(
    storage: &dyn Storage,
    path: &std::path::Path,
    value: &T,
) -> Result<(), LogError> {
    let bytes = serde_json::to_vec_pretty(value).expect("node records serialise");
    write_atomic(storage, path, &bytes).map_err(|e| LogError::io("write", path.to_path_buf(), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{DiskStorage, SystemClock};

    #[tokio::test]
    async fn producer_ids_are_never_reused_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let config = NodeConfig {
            data_dir: dir.path().to_path_buf(),
            ..NodeConfig::default()
        };
        let open = || {
            Node::open(
                config.clone(),
                Arc::new(DiskStorage),
                Arc::new(SystemClock),
                tokio::runtime::Handle::current(),
            )
            .unwrap()
        };
        let node = open();
        let first: Vec<i64> = (0..3)
            .map(|_| node.allocate_producer_id().unwrap())
            .collect();
        assert_eq!(first, vec![0, 1, 2]);
        let cluster_id = node.cluster_id.clone();
        assert_eq!(cluster_id.len(), 22);
        drop(node);
        let node = open();
        assert_eq!(node.cluster_id, cluster_id);
        assert_eq!(node.allocate_producer_id().unwrap(), PRODUCER_ID_BLOCK);
    }
}
