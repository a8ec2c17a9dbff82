//! One silt node: its settings, identity, topics and counters, shared by every connection.
//!
//! # Files
//!
//! ```text
//! <data>/node.json           {"format":1,"cluster_id":"..."}: made on first start
//! <data>/producer_ids.json   {"next":N}: producer ids handed out before the node was part of a
//!                            cluster (the controller hands out blocks now)
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use silt_config::NodeConfig;

use crate::cluster::{Cluster, Replicas};
use crate::controller::state::PRODUCER_ID_BLOCK;
use crate::controller::{Command, ControllerError, Reply};
use crate::group::store::{GROUP_TOPIC, GroupLogSource};
use crate::group::{GroupConfig, GroupCoordinator};
use crate::log::storage::{read_all, write_atomic};
use crate::log::{Clock, LogError, Storage};
use crate::metrics::Metrics;
use crate::replica::Replica;
use crate::tiering::Tiering;
use crate::topics::{ReplicaFactory, TopicEvent, TopicRegistry};

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
    /// The cluster's id (the controller's; kept in `node.json` too).
    pub cluster_id: String,
    /// Topics.
    pub topics: Arc<TopicRegistry>,
    /// Consumer groups and their committed offsets.
    pub groups: Arc<GroupCoordinator>,
    /// Transactions (their state lives beside the groups').
    pub txns: crate::txn::coordinator::TxnCoordinator,
    /// The archive side, when the node has an archive.
    pub tiering: Option<Arc<Tiering>>,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// This node's part in the cluster: controller, peers, Raft groups.
    pub cluster: Arc<Cluster>,
    /// Opens this node's replicas.
    pub replicas: Arc<dyn ReplicaFactory>,
    /// Listeners, TLS, users and ACLs as this node applies them.
    pub security: Arc<crate::security::Security>,
    producer_ids: tokio::sync::Mutex<ProducerIds>,
    started: Instant,
}

#[derive(Debug)]
struct ProducerIds {
    next: i64,
    reserved_until: i64,
}

/// What a data directory says about the node before it joins its cluster.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The cluster id it was made with (the cluster's, once the controller named it).
    pub cluster_id: String,
    /// Producer ids it handed out before it was part of a cluster.
    pub next_producer_id: i64,
    /// True when the data directory held no `node.json`: this start made it.
    pub fresh: bool,
}

impl Node {
    /// Reads (creating the data directory and `node.json`) what the node is. Blocking.
    ///
    /// # Errors
    ///
    /// [`LogError`] naming the path when the data directory cannot be created, read or
    /// written.
    pub fn identity(config: &NodeConfig, storage: &dyn Storage) -> Result<Identity, LogError> {
        let data = config.data_dir.clone();
        storage
            .create_dir_all(&data)
            .map_err(|e| LogError::io("create data directory", data.clone(), e))?;
        let node_file = data.join("node.json");
        let fresh = !storage.exists(&node_file);
        let cluster_id = if !fresh {
            let record: NodeRecord = read_json(storage, &node_file)?;
            record.cluster_id
        } else {
            let record = NodeRecord {
                format: 1,
                cluster_id: new_cluster_id(),
            };
            write_json(storage, &node_file, &record)?;
            record.cluster_id
        };
        let ids_file = data.join("producer_ids.json");
        let next_producer_id = if storage.exists(&ids_file) {
            read_json::<ProducerIdRecord>(storage, &ids_file)?.next
        } else {
            0
        };
        Ok(Identity {
            cluster_id,
            next_producer_id,
            fresh,
        })
    }

    /// Opens the node's data directory now that it is part of its cluster: its topics (their
    /// partitions open as the controller's state is reconciled), groups and archive.
    /// Blocking.
    ///
    /// # Errors
    ///
    /// [`LogError`] naming the path when the data directory cannot be read or written.
    pub fn open(
        mut config: NodeConfig,
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
        runtime: tokio::runtime::Handle,
        cluster: Arc<Cluster>,
        security: Arc<crate::security::Security>,
    ) -> Result<Arc<Node>, LogError> {
        let data = config.data_dir.clone();
        let own = Node::identity(&config, storage.as_ref())?;
        let cluster_id = cluster.cluster_id().unwrap_or(own.cluster_id.clone());
        if cluster_id != own.cluster_id {
            // Joined a cluster founded elsewhere: this node is part of it now.
            write_json(
                storage.as_ref(),
                &data.join("node.json"),
                &NodeRecord {
                    format: 1,
                    cluster_id: cluster_id.clone(),
                },
            )?;
        }
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
                    path: std::path::PathBuf::from(silt_config::redact_url(target)),
                    reason: e.to_string(),
                })?,
            )),
            None => None,
        };
        let topics = Arc::new(TopicRegistry::open(storage.clone(), &config)?);
        let group_config = GroupConfig {
            session_timeout_min_ms: config.group_min_session_timeout_ms,
            session_timeout_max_ms: config.group_max_session_timeout_ms,
            initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms,
            log_compaction_bytes: config.group_log_compaction_bytes,
            consumer: crate::group::consumer::ConsumerConfig {
                heartbeat_interval_ms: config.group_consumer_heartbeat_interval_ms,
                session_timeout_ms: config.group_consumer_session_timeout_ms,
                default_assignor: config
                    .group_consumer_assignors
                    .first()
                    .and_then(|name| crate::group::consumer::Assignor::parse(name))
                    .unwrap_or(crate::group::consumer::Assignor::Uniform),
                migration: crate::group::consumer::MigrationPolicy::parse(
                    &config.group_consumer_migration_policy,
                )
                .unwrap_or(crate::group::consumer::MigrationPolicy::Bidirectional),
            },
        };
        let groups = Arc::new(GroupCoordinator::new(
            Arc::new(TopicGroupLog {
                topics: topics.clone(),
            }),
            group_config,
            clock.clone(),
        ));
        let replicas = Arc::new(Replicas::new(
            &config,
            storage.clone(),
            clock.clone(),
            cluster.transport.clone(),
            cluster.groups.clone(),
            cluster.pulse.clone(),
            cluster.timing,
        ));
        let node = Arc::new(Node {
            config,
            cluster_id,
            topics,
            groups,
            txns: crate::txn::coordinator::TxnCoordinator::default(),
            tiering,
            metrics: Metrics::default(),
            clock,
            cluster,
            replicas,
            producer_ids: tokio::sync::Mutex::new(ProducerIds {
                next: 0,
                reserved_until: 0,
            }),
            started: Instant::now(),
            security,
        });
        node.cluster.attach(&node);
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
                    TopicEvent::Deleted { id, .. } => tiering.forget_topic(id),
                }
            }));
        }
        Ok(node)
    }

    /// Hands out a producer id never given before anywhere in the cluster: from a block the
    /// controller reserved for this node, reserving another when it runs out.
    ///
    /// # Errors
    ///
    /// The controller did not answer, or refused.
    pub async fn allocate_producer_id(&self) -> Result<i64, ControllerError> {
        let mut ids = self.producer_ids.lock().await;
        if ids.next == ids.reserved_until {
            let command = Command::AllocateProducerIds {
                count: PRODUCER_ID_BLOCK,
            };
            match self.cluster.propose(command).await? {
                Reply::ProducerIds { first, count } => {
                    ids.next = first;
                    ids.reserved_until = first + count;
                }
                other => {
                    return Err(ControllerError::Stopped(format!(
                        "producer ids refused: {other:?}"
                    )));
                }
            }
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

    /// Closes every replica cleanly, then stops the Raft groups.
    pub async fn shutdown(&self) {
        self.topics.close_all().await;
        self.cluster.shutdown().await;
    }
}

/// The group log's partitions: this node's replicas of the internal group topic.
#[derive(Debug)]
struct TopicGroupLog {
    topics: Arc<TopicRegistry>,
}

impl GroupLogSource for TopicGroupLog {
    fn replica(&self, p: usize) -> Option<Arc<dyn Replica>> {
        let topic = self.topics.get(GROUP_TOPIC)?;
        let partition = topic.partition(i32::try_from(p).ok()?)?;
        if !partition.hosted {
            return None;
        }
        partition.replica.as_ref().ok().cloned()
    }

    fn topics(&self) -> crate::group::consumer::TopicsView {
        let all = self.topics.all();
        crate::group::consumer::topics_view(
            all.iter()
                .map(|t| (t.name.as_str(), t.partitions().len() as i32)),
        )
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
