//! Topics and their partitions on this node, and how they are kept on disk.
//!
//! # Layout
//!
//! ```text
//! <data>/topics/<topic>/topic.json      {"format":1,"name":..,"id":..,"partitions":N,"configs":{..}}
//! <data>/topics/<topic>/<partition>/    one partition log each (see crate::log)
//! <data>/trash/                         deleted topics on their way out
//! ```
//!
//! The controller's state says which topics exist and which partitions this node holds a
//! replica of; [`TopicRegistry::reconcile`] makes the directory agree with it. `topic.json`
//! is written atomically (temporary file, fsync, rename, fsync of the directory) before any
//! partition directory exists, so a topic is either fully known after a crash or not at all.
//! A topic whose id matches the controller's keeps its data; any other is renamed into
//! `trash/` first (atomic), then removed, so a topic created again under the same name starts
//! clean.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use silt_config::{ConfigError, NodeConfig, TopicConfig, TopicProperty};
use tokio::sync::watch;
use uuid::Uuid;

use crate::controller::{ClusterState, TopicMeta};
use crate::group::store::GROUP_TOPIC;
use crate::log::storage::{read_all, write_atomic};
use crate::log::{LogConfig, LogError, PartitionLog, Storage};
use crate::replica::Replica;

/// Longest topic name Kafka accepts.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// Most partitions one topic may have.
pub const PARTITIONS_MAX: i32 = 10_000;
const TOPIC_FILE: &str = "topic.json";
const FORMAT_VERSION: u32 = 1;

/// Why a topic operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// The name breaks Kafka's rules.
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Which rule.
        reason: &'static str,
    },
    /// A topic with that name exists.
    #[error("topic '{0}' already exists")]
    AlreadyExists(String),
    /// No topic with that name (or id).
    #[error("topic '{0}' does not exist")]
    Unknown(String),
    /// A partition count that cannot be.
    #[error("{0}")]
    InvalidPartitions(String),
    /// Replica assignments naming brokers other than this one.
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    /// A replication factor the cluster cannot provide (named in the message).
    #[error("{0}")]
    InvalidReplicationFactor(String),
    /// The controller did not answer (no quorum): retriable.
    #[error("{0}")]
    Unavailable(String),
    /// A property or value that is not accepted.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A property that can only be set when the topic is created.
    #[error("{0} can only be set when the topic is created")]
    CreateOnly(&'static str),
    /// Something the node cannot do yet (named in the message).
    #[error("{0}")]
    Unsupported(String),
    /// A topic could not be recovered or followed from an archive (named in the message).
    #[error("{0}")]
    Archive(String),
    /// A log could not be opened, closed or written.
    #[error(transparent)]
    Log(#[from] LogError),
}

/// Checks a topic name against Kafka's rules.
///
/// # Errors
///
/// [`TopicError::InvalidName`] naming the rule broken.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    let invalid = |reason| {
        Err(TopicError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("it is empty");
    }
    if name == "." || name == ".." {
        return invalid("'.' and '..' are not allowed");
    }
    if name.starts_with("__silt") {
        return invalid("names starting with '__silt' are silt's own internal topics");
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return invalid("it is longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return invalid("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// What `topic.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    /// Format version of this file.
    pub format: u32,
    /// Topic name.
    pub name: String,
    /// Topic id (Kafka's KIP-516 UUID); also names the topic in the archive.
    pub id: Uuid,
    /// Partition count.
    pub partitions: i32,
    /// Property overrides, canonical name -> value.
    pub configs: BTreeMap<String, String>,
}

/// A partition: this node's replica of it, or why there is none here.
#[derive(Debug)]
pub struct Partition {
    /// Partition index.
    pub index: i32,
    /// The replica, or why there is none: it is offline here, or hosted by other brokers.
    pub replica: Result<Arc<dyn Replica>, String>,
    /// True when this node holds a replica (online or not).
    pub hosted: bool,
}

impl Partition {
    /// The local log, if the partition is online here.
    pub fn log(&self) -> Option<&PartitionLog> {
        self.replica.as_ref().ok().map(|r| r.log())
    }

    fn elsewhere(index: i32, replicas: &[i32]) -> Partition {
        Partition {
            index,
            replica: Err(format!("hosted on brokers {replicas:?}")),
            hosted: false,
        }
    }
}

/// Opens this node's replica of a partition (a local log alone, or a Raft group).
#[async_trait::async_trait]
pub trait ReplicaFactory: std::fmt::Debug + Send + Sync + 'static {
    /// Opens the replica of partition `index` of `topic` in `dir`.
    ///
    /// # Errors
    ///
    /// Why it cannot serve (its log does not open, its group does not start).
    async fn open(
        &self,
        topic: &TopicMeta,
        index: i32,
        dir: PathBuf,
        log_config: LogConfig,
        config: &TopicConfig,
    ) -> Result<Arc<dyn Replica>, String>;
}

/// A topic on this node.
#[derive(Debug)]
pub struct Topic {
    /// Name.
    pub name: String,
    /// Id.
    pub id: Uuid,
    /// For a read replica, the archive it serves (`remote.readreplica`, fixed at creation).
    pub read_replica_of: Option<String>,
    /// silt's own (the group log): not listed as a client's topic.
    pub internal: bool,
    /// Batches recompressed on their way in to this topic's `compression.type`.
    pub recompressed: Recompressed,
    dir: PathBuf,
    state: RwLock<TopicState>,
}

/// Counters of broker-side compression for one topic (summed in `/metrics`).
#[derive(Debug, Default)]
pub struct Recompressed {
    /// Batches recompressed.
    pub batches: std::sync::atomic::AtomicU64,
    /// Their bytes as the producers sent them.
    pub bytes_in: std::sync::atomic::AtomicU64,
    /// Their bytes as stored.
    pub bytes_out: std::sync::atomic::AtomicU64,
}

#[derive(Debug)]
struct TopicState {
    overrides: BTreeMap<String, String>,
    config: TopicConfig,
    partitions: Vec<Arc<Partition>>,
}

impl Topic {
    /// The resolved properties.
    pub fn config(&self) -> TopicConfig {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .config
            .clone()
    }

    /// `compression.type`, without copying the config (asked on every produce).
    pub fn compression_type(&self) -> silt_config::CompressionType {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .config
            .compression_type
    }

    /// True when reads may go to the archive (`remote.read`), without copying the config.
    pub fn remote_read(&self) -> bool {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .config
            .remote_read
    }

    /// The properties set on the topic (canonical name -> value).
    pub fn overrides(&self) -> BTreeMap<String, String> {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .overrides
            .clone()
    }

    /// The partitions, in index order.
    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .partitions
            .clone()
    }

    /// One partition.
    pub fn partition(&self, index: i32) -> Option<Arc<Partition>> {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        usize::try_from(index)
            .ok()
            .and_then(|i| state.partitions.get(i).cloned())
    }

    /// Number of partitions.
    pub fn partition_count(&self) -> i32 {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .partitions
            .len() as i32
    }

    /// The topic's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn record(&self) -> TopicRecord {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        TopicRecord {
            format: FORMAT_VERSION,
            name: self.name.clone(),
            id: self.id,
            partitions: state.partitions.len() as i32,
            configs: state.overrides.clone(),
        }
    }
}

/// A change to the set of topics, for whoever mirrors it (the archive's catalog).
#[derive(Debug, Clone)]
pub enum TopicEvent {
    /// Created, or its partitions or properties changed.
    Changed(Arc<Topic>),
    /// Deleted.
    Deleted {
        /// Name.
        name: String,
        /// Id.
        id: Uuid,
        /// Partitions it had.
        partitions: i32,
        /// It was a read replica: its archive is another cluster's, not to be touched.
        replica: bool,
    },
}

/// Receives [`TopicEvent`]s.
pub type TopicListener = Arc<dyn Fn(TopicEvent) + Send + Sync>;

/// The topics of this node: what the controller's state says this node holds, materialized
/// in `<data>/topics` (see [`TopicRegistry::reconcile`]).
pub struct TopicRegistry {
    root: PathBuf,
    trash: PathBuf,
    storage: Arc<dyn Storage>,
    node: NodeConfig,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    /// Topics found on disk at start and not reconciled yet.
    found: Mutex<HashMap<String, TopicRecord>>,
    /// One reconciliation at a time.
    reconciling: tokio::sync::Mutex<()>,
    /// The controller state version last materialized.
    reconciled: watch::Sender<u64>,
    listener: Mutex<Option<TopicListener>>,
}

impl std::fmt::Debug for TopicRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicRegistry")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl TopicRegistry {
    /// Reads what topics `<data>/topics` holds (blocking); their partitions open when the
    /// controller's state is reconciled.
    ///
    /// # Errors
    ///
    /// When the topics directory cannot be created or listed, or a `topic.json` is unreadable.
    pub fn open(storage: Arc<dyn Storage>, node: &NodeConfig) -> Result<TopicRegistry, LogError> {
        let root = node.data_dir.join("topics");
        let trash = node.data_dir.join("trash");
        for dir in [&root, &trash] {
            storage
                .create_dir_all(dir)
                .map_err(|e| LogError::io("create directory", dir.clone(), e))?;
        }
        // Finish deletions a crash interrupted.
        for name in storage
            .list_dir(&trash)
            .map_err(|e| LogError::io("list directory", trash.clone(), e))?
        {
            let path = trash.join(&name);
            storage
                .remove_dir_all(&path)
                .map_err(|e| LogError::io("remove", path.clone(), e))?;
        }
        let mut found = HashMap::new();
        let mut names = storage
            .list_dir(&root)
            .map_err(|e| LogError::io("list directory", root.clone(), e))?;
        names.sort();
        for name in names {
            let dir = root.join(&name);
            let file = dir.join(TOPIC_FILE);
            if !storage.exists(&file) {
                tracing::warn!(dir = %dir.display(), "no topic.json: not a topic, skipped");
                continue;
            }
            let bytes = storage
                .open(&file, false)
                .and_then(|f| read_all(f.as_ref()))
                .map_err(|e| LogError::io("read", file.clone(), e))?;
            let record: TopicRecord = serde_json::from_slice(&bytes)
                .map_err(|e| LogError::corrupt(file.clone(), 0, e.to_string()))?;
            found.insert(record.name.clone(), record);
        }
        Ok(TopicRegistry {
            root,
            trash,
            storage,
            node: node.clone(),
            topics: RwLock::new(HashMap::new()),
            found: Mutex::new(found),
            reconciling: tokio::sync::Mutex::new(()),
            reconciled: watch::Sender::new(0),
            listener: Mutex::new(None),
        })
    }

    /// Topics found on disk at start (a node from before clusters brings its topics into the
    /// controller from these).
    pub fn found_on_disk(&self) -> Vec<TopicRecord> {
        let mut records: Vec<TopicRecord> = self
            .found
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        records.sort_by(|a, b| a.name.cmp(&b.name));
        records
    }

    /// Sets who hears about topic changes.
    pub fn set_listener(&self, listener: TopicListener) {
        *self.listener.lock().unwrap_or_else(|p| p.into_inner()) = Some(listener);
    }

    fn notify(&self, event: TopicEvent) {
        let listener = self
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(listener) = listener {
            listener(event);
        }
    }

    /// A topic by name.
    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// A topic by id.
    pub fn get_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .find(|t| t.id == id)
            .cloned()
    }

    /// All topics, sorted by name.
    pub fn all(&self) -> Vec<Arc<Topic>> {
        let mut topics: Vec<Arc<Topic>> = self
            .topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        topics
    }

    /// Checks the parts of a creation that do not depend on the cluster: the name, the
    /// partition count and the properties. Returns the resolved config and the overrides.
    ///
    /// # Errors
    ///
    /// [`TopicError`] naming what is wrong.
    pub fn validate_create(
        &self,
        name: &str,
        partitions: i32,
        configs: &[(String, String)],
    ) -> Result<(TopicConfig, BTreeMap<String, String>), TopicError> {
        validate_topic_name(name)?;
        if !(1..=PARTITIONS_MAX).contains(&partitions) {
            return Err(TopicError::InvalidPartitions(format!(
                "number of partitions must be between 1 and {PARTITIONS_MAX}, not {partitions}"
            )));
        }
        let mut overrides = BTreeMap::new();
        for (key, value) in configs {
            let (canonical, value) = TopicProperty::validate(key, value)?;
            overrides.insert(canonical.to_string(), value);
        }
        let config = TopicConfig::resolve(&overrides, &self.node.topic_defaults)?;
        Ok((config, overrides))
    }

    /// Validates a replacement of a topic's overrides: each property, and that no
    /// creation-only one changes. Returns the canonical overrides.
    ///
    /// # Errors
    ///
    /// [`TopicError::Config`] or [`TopicError::CreateOnly`].
    pub fn validate_overrides(
        &self,
        current: &BTreeMap<String, String>,
        overrides: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, TopicError> {
        let mut canonical = BTreeMap::new();
        for (key, value) in overrides {
            let (key, value) = TopicProperty::validate(key, value)?;
            canonical.insert(key.to_string(), value);
        }
        for property in silt_config::TOPIC_PROPERTIES
            .iter()
            .filter(|p| p.create_only)
        {
            if canonical.get(property.name) != current.get(property.name) {
                return Err(TopicError::CreateOnly(property.name));
            }
        }
        TopicConfig::resolve(&canonical, &self.node.topic_defaults)?;
        Ok(canonical)
    }

    /// The controller state version last materialized here.
    pub fn reconciled(&self) -> watch::Receiver<u64> {
        self.reconciled.subscribe()
    }

    /// Waits until the controller state `version` is materialized here (at most `timeout`).
    pub async fn wait_reconciled(&self, version: u64, timeout: std::time::Duration) -> bool {
        let mut watch = self.reconciled.subscribe();
        tokio::time::timeout(timeout, watch.wait_for(|v| *v >= version))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Makes this node hold what `state` says node `me` holds: topics created, deleted or
    /// changed, this node's partitions opened (through `factory`) and the ones moved away
    /// closed and removed. Topics keep their data when their id matches.
    pub async fn reconcile(
        self: &Arc<Self>,
        state: &ClusterState,
        me: i32,
        factory: &dyn ReplicaFactory,
    ) {
        let _one_at_a_time = self.reconciling.lock().await;
        // Gone from the controller (or replaced by a new incarnation): delete here.
        for topic in self.all() {
            let keep = state
                .topics
                .get(&topic.name)
                .is_some_and(|meta| meta.id == topic.id);
            if !keep && let Err(e) = self.remove_topic(&topic.name).await {
                tracing::error!(topic = %topic.name, error = %e, "could not delete the topic here");
            }
        }
        for meta in state.topics.values() {
            if let Err(e) = self.materialize(meta, me, factory).await {
                tracing::error!(topic = %meta.name, error = %e, "could not materialize the topic here");
            }
        }
        self.reconciled.send_replace(state.version);
    }

    /// Brings one topic here in line with `meta`.
    async fn materialize(
        self: &Arc<Self>,
        meta: &TopicMeta,
        me: i32,
        factory: &dyn ReplicaFactory,
    ) -> Result<(), TopicError> {
        let config = match TopicConfig::resolve(&meta.configs, &self.node.topic_defaults) {
            Ok(config) => config,
            Err(e) => {
                tracing::error!(topic = %meta.name, error = %e, "topic config no longer validates; using defaults");
                TopicConfig::resolve(&BTreeMap::new(), &self.node.topic_defaults)
                    .expect("defaults are valid")
            }
        };
        let topic = match self.get(&meta.name) {
            Some(topic) => topic,
            None => self.create_local(meta, &config).await?,
        };
        let mut changed = false;
        let old_overrides = topic.overrides();
        if old_overrides != meta.configs {
            let this = self.clone();
            let (topic_io, configs) = (topic.clone(), meta.configs.clone());
            self.blocking(move || {
                let mut record = topic_io.record();
                record.configs = configs;
                this.write_record(&topic_io.dir, &record)
                    .map_err(TopicError::from)
            })
            .await?;
            let mut state = topic.state.write().unwrap_or_else(|p| p.into_inner());
            state.overrides = meta.configs.clone();
            state.config = config.clone();
            for partition in &state.partitions {
                if let Ok(replica) = &partition.replica {
                    replica.reconfigure(LogConfig::new(&config, &self.node), &config);
                }
            }
            changed = true;
            tracing::info!(topic = %meta.name, configs = ?meta.configs, "topic config changed");
        }
        let current = topic.partitions();
        let mut partitions = Vec::with_capacity(meta.partitions.len());
        for (index, placement) in meta.partitions.iter().enumerate() {
            let index = index as i32;
            let assigned = placement.replicas.contains(&me)
                || placement.target.as_ref().is_some_and(|t| t.contains(&me));
            let existing = current.get(index as usize).cloned();
            let partition = match existing {
                Some(p) if p.hosted == assigned => p,
                Some(p) if p.hosted => {
                    // Moved away: this node's copy goes.
                    if let Ok(replica) = &p.replica {
                        let _ = replica.close().await;
                    }
                    self.remove_partition_dir(&topic, index).await?;
                    tracing::info!(topic = %meta.name, partition = index, "replica moved away; removed here");
                    Arc::new(Partition::elsewhere(index, &placement.replicas))
                }
                _ if assigned => {
                    let dir = topic.dir.join(index.to_string());
                    if meta.name == GROUP_TOPIC {
                        let single = placement.replicas == [me] && placement.target.is_none();
                        self.adopt_legacy_group_log(&dir, index, single).await?;
                    }
                    if let Some(start) = meta.starts.as_ref().and_then(|s| s.get(index as usize)) {
                        let epochs = meta
                            .epochs
                            .as_ref()
                            .and_then(|e| e.get(index as usize))
                            .cloned()
                            .unwrap_or_default();
                        self.prepare_restored(&dir, *start, epochs).await?;
                    }
                    let log_config = LogConfig::new(&config, &self.node);
                    let replica = factory
                        .open(meta, index, dir.clone(), log_config, &config)
                        .await;
                    if let Err(e) = &replica {
                        tracing::error!(dir = %dir.display(), error = %e, "partition offline");
                    }
                    Arc::new(Partition {
                        index,
                        replica,
                        hosted: true,
                    })
                }
                _ => Arc::new(Partition::elsewhere(index, &placement.replicas)),
            };
            partitions.push(partition);
        }
        if partitions.len() != current.len()
            || partitions
                .iter()
                .zip(&current)
                .any(|(a, b)| !Arc::ptr_eq(a, b))
        {
            if partitions.len() != current.len() {
                let this = self.clone();
                let topic_io = topic.clone();
                let count = partitions.len() as i32;
                self.blocking(move || {
                    let mut record = topic_io.record();
                    record.partitions = count;
                    this.write_record(&topic_io.dir, &record)
                        .map_err(TopicError::from)
                })
                .await?;
                changed = true;
            }
            topic
                .state
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .partitions = partitions;
        }
        if changed {
            self.notify(TopicEvent::Changed(topic));
        }
        Ok(())
    }

    /// Moves group-log partition `index` from where a node from before clusters kept it
    /// (`<data>/groups/<index>`) into the group topic's directory, when this node is its only
    /// replica (the files are the same format). A replicated group log cannot take it over.
    async fn adopt_legacy_group_log(
        self: &Arc<Self>,
        dir: &Path,
        index: i32,
        single: bool,
    ) -> Result<(), TopicError> {
        let legacy = self.node.data_dir.join("groups").join(index.to_string());
        let (this, dir) = (self.clone(), dir.to_path_buf());
        self.blocking(move || {
            let storage = this.storage.as_ref();
            if !storage.exists(&legacy) {
                return Ok(());
            }
            if !single {
                tracing::warn!(legacy = %legacy.display(), "a group log from before this node was in a cluster is left in place: the replicated group log does not take it over");
                return Ok(());
            }
            if storage.exists(&dir) {
                if !storage
                    .list_dir(&dir)
                    .map_err(|e| LogError::io("list", dir.clone(), e))?
                    .is_empty()
                {
                    return Ok(());
                }
                storage
                    .remove_dir_all(&dir)
                    .map_err(|e| LogError::io("remove", dir.clone(), e))?;
            }
            storage
                .rename(&legacy, &dir)
                .map_err(|e| LogError::io("rename", legacy.clone(), e))?;
            if let Some(parent) = dir.parent() {
                storage
                    .sync_dir(parent)
                    .map_err(|e| LogError::io("sync directory", parent.to_path_buf(), e))?;
            }
            tracing::info!(from = %legacy.display(), to = %dir.display(), "moved a group-log partition into the group topic");
            Ok::<_, TopicError>(())
        })
        .await
    }

    /// Creates a topic's directory and record here (keeping what is there if it is the same
    /// incarnation), with no partition open yet.
    async fn create_local(
        self: &Arc<Self>,
        meta: &TopicMeta,
        config: &TopicConfig,
    ) -> Result<Arc<Topic>, TopicError> {
        let record = TopicRecord {
            format: FORMAT_VERSION,
            name: meta.name.clone(),
            id: meta.id,
            partitions: meta.partitions.len() as i32,
            configs: meta.configs.clone(),
        };
        let found = self
            .found
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&meta.name);
        let adopt = found.as_ref().is_some_and(|r| r.id == meta.id);
        let this = self.clone();
        let record_io = record.clone();
        let dir = self
            .blocking(move || {
                let dir = this.root.join(&record_io.name);
                if this.storage.exists(&dir) && !adopt {
                    // Another incarnation (or a directory without topic.json): never adopt
                    // its data.
                    let stale = this
                        .trash
                        .join(format!("{}-stale-{}", record_io.name, record_io.id));
                    this.storage
                        .rename(&dir, &stale)
                        .map_err(|e| LogError::io("rename", dir.clone(), e))?;
                    this.storage
                        .remove_dir_all(&stale)
                        .map_err(|e| LogError::io("remove", stale.clone(), e))?;
                }
                this.storage
                    .create_dir_all(&dir)
                    .map_err(|e| LogError::io("create directory", dir.clone(), e))?;
                this.write_record(&dir, &record_io)?;
                this.storage
                    .sync_dir(&this.root)
                    .map_err(|e| LogError::io("sync directory", this.root.clone(), e))?;
                Ok::<_, TopicError>(dir)
            })
            .await?;
        let topic = Arc::new(Topic {
            name: meta.name.clone(),
            id: meta.id,
            read_replica_of: config.remote_readreplica.clone(),
            internal: meta.internal,
            recompressed: Recompressed::default(),
            dir,
            state: RwLock::new(TopicState {
                overrides: meta.configs.clone(),
                config: config.clone(),
                partitions: Vec::new(),
            }),
        });
        self.topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(meta.name.clone(), topic.clone());
        if adopt {
            tracing::debug!(topic = %meta.name, id = %meta.id, "opened topic");
        } else {
            tracing::info!(topic = %meta.name, partitions = meta.partitions.len(), id = %meta.id, configs = ?meta.configs, "created topic");
        }
        Ok(topic)
    }

    /// Makes `dir` an empty log starting at `start` in the epoch after the archive's `epochs`,
    /// unless it exists (a restored partition).
    async fn prepare_restored(
        &self,
        dir: &Path,
        start: i64,
        epochs: Vec<(i32, i64)>,
    ) -> Result<(), TopicError> {
        if self.storage.exists(dir) {
            return Ok(());
        }
        let storage = self.storage.clone();
        let dir = dir.to_path_buf();
        let config = LogConfig::new(
            &TopicConfig::resolve(&BTreeMap::new(), &self.node.topic_defaults)
                .expect("defaults are valid"),
            &self.node,
        );
        self.blocking(move || {
            PartitionLog::create_restored(storage.as_ref(), &dir, start, &epochs, &config)
                .map_err(TopicError::from)
        })
        .await
    }

    async fn remove_partition_dir(&self, topic: &Topic, index: i32) -> Result<(), TopicError> {
        let storage = self.storage.clone();
        let dir = topic.dir.join(index.to_string());
        let target = self
            .trash
            .join(format!("{}-{}-{index}", topic.name, topic.id));
        let root = topic.dir.clone();
        self.blocking(move || {
            if storage.exists(&dir) {
                storage
                    .rename(&dir, &target)
                    .map_err(|e| LogError::io("rename", dir.clone(), e))?;
                storage
                    .sync_dir(&root)
                    .map_err(|e| LogError::io("sync directory", root.clone(), e))?;
                storage
                    .remove_dir_all(&target)
                    .map_err(|e| LogError::io("remove", target.clone(), e))?;
            }
            Ok::<_, TopicError>(())
        })
        .await
    }

    /// Deletes a topic here: closes its replicas, renames its directory into the trash,
    /// removes it.
    async fn remove_topic(self: &Arc<Self>, name: &str) -> Result<(), TopicError> {
        let topic = self
            .topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        for partition in topic.partitions() {
            if let Ok(replica) = &partition.replica {
                // Closing flushes; the files go anyway, but no writer is left running.
                let _ = replica.close().await;
            }
        }
        let this = self.clone();
        let id = topic.id;
        let dir = topic.dir.clone();
        self.blocking(move || {
            let target = this.trash.join(format!(
                "{}-{}",
                dir.file_name().unwrap_or_default().to_string_lossy(),
                id
            ));
            this.storage
                .rename(&dir, &target)
                .map_err(|e| LogError::io("rename", dir.clone(), e))?;
            this.storage
                .sync_dir(&this.root)
                .map_err(|e| LogError::io("sync directory", this.root.clone(), e))?;
            this.storage
                .remove_dir_all(&target)
                .map_err(|e| LogError::io("remove", target.clone(), e))?;
            Ok::<_, TopicError>(())
        })
        .await?;
        tracing::info!(topic = name, id = %id, "deleted topic");
        self.notify(TopicEvent::Deleted {
            name: name.to_string(),
            id,
            partitions: topic.partition_count(),
            replica: topic.read_replica_of.is_some(),
        });
        Ok(())
    }

    /// Closes every replica (clean shutdown).
    pub async fn close_all(&self) {
        for topic in self.all() {
            for partition in topic.partitions() {
                if let Ok(replica) = &partition.replica
                    && let Err(e) = replica.close().await
                {
                    tracing::warn!(topic = %topic.name, partition = partition.index, error = %e, "close failed; next start will scan");
                }
            }
        }
    }

    fn write_record(&self, dir: &Path, record: &TopicRecord) -> Result<(), LogError> {
        let path = dir.join(TOPIC_FILE);
        let bytes = serde_json::to_vec_pretty(record).expect("topic record serialises");
        write_atomic(self.storage.as_ref(), &path, &bytes)
            .map_err(|e| LogError::io("write", path, e))
    }

    async fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<R, TopicError> + Send + 'static,
    ) -> Result<R, TopicError> {
        tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
            Err(TopicError::Unsupported(format!(
                "topic operation panicked: {e}"
            )))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        for good in ["orders", "a.b_c-d", "__consumer_offsets", &"x".repeat(249)] {
            validate_topic_name(good).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            "has space",
            "slash/y",
            "ünicode",
            &"x".repeat(250),
        ] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
    }
}
