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
//! `topic.json` is written atomically (temporary file, fsync, rename, fsync of the directory)
//! before any partition directory exists, so a topic is either fully known after a crash or
//! not at all. A deleted topic's directory is renamed into `trash/` first (atomic), then
//! removed, so a topic created again under the same name starts clean.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use silt_config::{ConfigError, NodeConfig, TopicConfig, TopicProperty};
use uuid::Uuid;

use crate::log::storage::{read_all, write_atomic};
use crate::log::{Clock, LogConfig, LogError, PartitionLog, Storage};
use crate::replica::{LocalReplica, Replica};

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
    /// A replication factor this node cannot provide.
    #[error("replication factor {0} is larger than the 1 broker available")]
    InvalidReplicationFactor(i16),
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

/// What a topic restored from an archive keeps of its former life.
#[derive(Debug, Clone)]
pub struct Restored {
    /// The topic's id in the archive (its objects are named by it).
    pub id: Uuid,
    /// Per partition, the offset its local log starts at: the archive's next offset.
    pub starts: Vec<i64>,
}

/// A partition: this node's replica of it, or why it is offline.
#[derive(Debug)]
pub struct Partition {
    /// Partition index.
    pub index: i32,
    /// The replica, or the error that keeps it offline.
    pub replica: Result<Arc<dyn Replica>, String>,
}

impl Partition {
    /// The local log, if the partition is online.
    pub fn log(&self) -> Option<&PartitionLog> {
        self.replica.as_ref().ok().map(|r| r.log())
    }
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
    dir: PathBuf,
    state: RwLock<TopicState>,
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

/// All topics of the node.
pub struct TopicRegistry {
    root: PathBuf,
    trash: PathBuf,
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    node: NodeConfig,
    runtime: tokio::runtime::Handle,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    /// Serialises create, delete and alter so two admin requests cannot interleave on one name.
    admin: tokio::sync::Mutex<()>,
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
    /// Loads every topic under `<data>/topics`, opening its partition logs (blocking).
    /// A partition whose log does not open stays offline with the error; the others serve.
    ///
    /// # Errors
    ///
    /// When the topics directory cannot be created or listed, or a `topic.json` is unreadable.
    pub fn open(
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
        node: &NodeConfig,
        runtime: tokio::runtime::Handle,
    ) -> Result<TopicRegistry, LogError> {
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
        let registry = TopicRegistry {
            root: root.clone(),
            trash,
            storage: storage.clone(),
            clock,
            node: node.clone(),
            runtime,
            topics: RwLock::new(HashMap::new()),
            admin: tokio::sync::Mutex::new(()),
            listener: Mutex::new(None),
        };
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
            let topic = registry.load(record, dir);
            registry
                .topics
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name, topic);
        }
        Ok(registry)
    }

    fn load(&self, record: TopicRecord, dir: PathBuf) -> Arc<Topic> {
        let config = match TopicConfig::resolve(&record.configs, &self.node.topic_defaults) {
            Ok(config) => config,
            Err(e) => {
                tracing::error!(topic = %record.name, error = %e, "stored topic config no longer validates; using defaults");
                TopicConfig::resolve(&BTreeMap::new(), &self.node.topic_defaults)
                    .expect("defaults are valid")
            }
        };
        let partitions = (0..record.partitions)
            .map(|i| self.open_partition(&dir, i, &config))
            .collect();
        Arc::new(Topic {
            name: record.name,
            id: record.id,
            read_replica_of: config.remote_readreplica.clone(),
            dir,
            state: RwLock::new(TopicState {
                overrides: record.configs,
                config,
                partitions,
            }),
        })
    }

    fn open_partition(&self, topic_dir: &Path, index: i32, config: &TopicConfig) -> Arc<Partition> {
        let dir = topic_dir.join(index.to_string());
        let log_config = LogConfig::new(config, &self.node);
        let replica = PartitionLog::open(
            self.storage.clone(),
            &dir,
            log_config,
            self.clock.clone(),
            &self.runtime,
        )
        .map(|log| Arc::new(LocalReplica::new(log, self.node.node_id)) as Arc<dyn Replica>)
        .map_err(|e| {
            tracing::error!(dir = %dir.display(), error = %e, "partition offline");
            e.to_string()
        });
        Arc::new(Partition { index, replica })
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

    /// Checks a creation without doing it; returns the resolved config and overrides.
    ///
    /// # Errors
    ///
    /// [`TopicError`] naming what is wrong.
    pub fn validate_create(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(String, String)],
    ) -> Result<(TopicConfig, BTreeMap<String, String>), TopicError> {
        validate_topic_name(name)?;
        if self.get(name).is_some() {
            return Err(TopicError::AlreadyExists(name.to_string()));
        }
        if !(1..=PARTITIONS_MAX).contains(&partitions) {
            return Err(TopicError::InvalidPartitions(format!(
                "number of partitions must be between 1 and {PARTITIONS_MAX}, not {partitions}"
            )));
        }
        if replication_factor != 1 {
            return Err(TopicError::InvalidReplicationFactor(replication_factor));
        }
        let mut overrides = BTreeMap::new();
        for (key, value) in configs {
            let (canonical, value) = TopicProperty::validate(key, value)?;
            overrides.insert(canonical.to_string(), value);
        }
        let config = TopicConfig::resolve(&overrides, &self.node.topic_defaults)?;
        Ok((config, overrides))
    }

    /// Creates a topic: writes `topic.json`, then opens its partition logs.
    ///
    /// # Errors
    ///
    /// As [`TopicRegistry::validate_create`], or an I/O error writing the topic.
    pub async fn create(
        self: &Arc<Self>,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(String, String)],
    ) -> Result<Arc<Topic>, TopicError> {
        self.create_as(name, partitions, replication_factor, configs, None)
            .await
    }

    /// Creates a topic, as [`TopicRegistry::create`]; with `restored`, under a given id and
    /// with each partition's log starting (empty) at a given offset: a topic recovered from
    /// an archive, whose older offsets the archive serves.
    ///
    /// # Errors
    ///
    /// As [`TopicRegistry::create`].
    pub async fn create_as(
        self: &Arc<Self>,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(String, String)],
        restored: Option<Restored>,
    ) -> Result<Arc<Topic>, TopicError> {
        let _admin = self.admin.lock().await;
        let (config, overrides) =
            self.validate_create(name, partitions, replication_factor, configs)?;
        if let Some(restored) = &restored {
            if let Some(holder) = self.get_by_id(restored.id) {
                return Err(TopicError::Archive(format!(
                    "cannot restore '{name}': its id {} belongs to topic '{}' here already",
                    restored.id, holder.name
                )));
            }
            if restored.starts.len() != partitions as usize {
                return Err(TopicError::Archive(format!(
                    "cannot restore '{name}': {} start offsets for {partitions} partitions",
                    restored.starts.len()
                )));
            }
        }
        let record = TopicRecord {
            format: FORMAT_VERSION,
            name: name.to_string(),
            id: restored.as_ref().map_or_else(Uuid::new_v4, |r| r.id),
            partitions,
            configs: overrides,
        };
        let log_config = LogConfig::new(&config, &self.node);
        let this = self.clone();
        let topic = self
            .blocking(move || {
                let dir = this.root.join(&record.name);
                if this.storage.exists(&dir) {
                    // A directory without topic.json (skipped at start): never adopt its data.
                    let stale = this
                        .trash
                        .join(format!("{}-stale-{}", record.name, record.id));
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
                this.write_record(&dir, &record)?;
                for (index, &start) in restored.iter().flat_map(|r| r.starts.iter().enumerate()) {
                    PartitionLog::create_empty_at(
                        this.storage.as_ref(),
                        &dir.join(index.to_string()),
                        start,
                        &log_config,
                    )?;
                }
                this.storage
                    .sync_dir(&this.root)
                    .map_err(|e| LogError::io("sync directory", this.root.clone(), e))?;
                Ok::<_, TopicError>(this.load(record, dir))
            })
            .await?;
        tracing::info!(topic = name, partitions, id = %topic.id, configs = ?topic.overrides(), "created topic");
        self.topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), topic.clone());
        self.notify(TopicEvent::Changed(topic.clone()));
        Ok(topic)
    }

    /// Deletes a topic: closes its logs, renames its directory into the trash, removes it.
    ///
    /// # Errors
    ///
    /// [`TopicError::Unknown`], or an I/O error (the topic is then already gone from service).
    pub async fn delete(self: &Arc<Self>, name: &str) -> Result<(), TopicError> {
        let _admin = self.admin.lock().await;
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

    /// Grows a topic to `count` partitions.
    ///
    /// # Errors
    ///
    /// [`TopicError::InvalidPartitions`] unless `count` is larger than today's count and within
    /// the limit; I/O errors.
    pub async fn add_partitions(
        self: &Arc<Self>,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let _admin = self.admin.lock().await;
        let topic = self
            .get(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        let current = topic.partition_count();
        if count <= current {
            return Err(TopicError::InvalidPartitions(format!(
                "topic currently has {current} partitions, {count} would not be an increase"
            )));
        }
        if count > PARTITIONS_MAX {
            return Err(TopicError::InvalidPartitions(format!(
                "at most {PARTITIONS_MAX} partitions"
            )));
        }
        if validate_only {
            return Ok(());
        }
        let this = self.clone();
        let topic_for_io = topic.clone();
        self.blocking(move || {
            let config = topic_for_io.config();
            let mut record = topic_for_io.record();
            record.partitions = count;
            this.write_record(&topic_for_io.dir, &record)?;
            let added: Vec<Arc<Partition>> = (current..count)
                .map(|i| this.open_partition(&topic_for_io.dir, i, &config))
                .collect();
            topic_for_io
                .state
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .partitions
                .extend(added);
            Ok::<_, TopicError>(())
        })
        .await?;
        tracing::info!(topic = name, from = current, to = count, "added partitions");
        self.notify(TopicEvent::Changed(topic));
        Ok(())
    }

    /// Replaces a topic's overrides (after validating each) and applies them to its logs.
    ///
    /// # Errors
    ///
    /// [`TopicError::Config`] or [`TopicError::CreateOnly`]; I/O errors.
    pub async fn set_overrides(
        self: &Arc<Self>,
        name: &str,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let _admin = self.admin.lock().await;
        let topic = self
            .get(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        let mut canonical = BTreeMap::new();
        for (key, value) in &overrides {
            let (key, value) = TopicProperty::validate(key, value)?;
            canonical.insert(key.to_string(), value);
        }
        let current = topic.overrides();
        for property in silt_config::TOPIC_PROPERTIES
            .iter()
            .filter(|p| p.create_only)
        {
            if canonical.get(property.name) != current.get(property.name) {
                return Err(TopicError::CreateOnly(property.name));
            }
        }
        let config = TopicConfig::resolve(&canonical, &self.node.topic_defaults)?;
        if validate_only {
            return Ok(());
        }
        let this = self.clone();
        let topic_for_io = topic.clone();
        let config_for_io = config.clone();
        self.blocking(move || {
            let mut record = topic_for_io.record();
            record.configs = canonical.clone();
            this.write_record(&topic_for_io.dir, &record)?;
            let mut state = topic_for_io
                .state
                .write()
                .unwrap_or_else(|p| p.into_inner());
            state.overrides = canonical;
            state.config = config_for_io.clone();
            for partition in &state.partitions {
                if let Some(log) = partition.log() {
                    log.set_config(LogConfig::new(&config_for_io, &this.node));
                }
            }
            Ok::<_, TopicError>(())
        })
        .await?;
        tracing::info!(topic = name, configs = ?topic.overrides(), "altered topic config");
        self.notify(TopicEvent::Changed(topic));
        Ok(())
    }

    /// Closes every partition log (clean shutdown).
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
