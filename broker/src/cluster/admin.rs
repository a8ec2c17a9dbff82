//! Changing topics through the controller: creating them (replicas placed here), deleting
//! them, adding partitions, setting properties.
//!
//! Each change is checked on this node first, so the client hears what is wrong at once;
//! then it is proposed to the controller, and answered once this node has materialized it
//! (the topic exists here, with its partitions open), so a client that creates a topic and
//! then asks for metadata finds it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use silt_config::TopicConfig;
use uuid::Uuid;

use crate::controller::state::{name_spread, place_replicas};
use crate::controller::{Command, ControllerError, Refusal, Reply};
use crate::group::store::{GROUP_LOG_PARTITIONS, GROUP_TOPIC};
use crate::node::Node;
use crate::topics::{Topic, TopicError};

/// How long a change waits to be materialized here after the controller applied it.
const MATERIALIZE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a topic creation waits for its partitions' leaders before it answers.
const LEADERS_TIMEOUT: Duration = Duration::from_secs(5);

/// Most replicas a partition may have.
pub const REPLICATION_FACTOR_MAX: i16 = 5;

/// A topic to create.
#[derive(Debug, Clone)]
pub struct NewTopic {
    /// Name.
    pub name: String,
    /// Partitions.
    pub partitions: i32,
    /// Replicas per partition; -1 for the node's `default_replication_factor`.
    pub replication_factor: i16,
    /// Properties as given.
    pub configs: Vec<(String, String)>,
    /// For a topic restored from an archive: its id there and where each partition starts.
    pub restored: Option<Restored>,
}

/// What a topic restored from an archive keeps of its former life.
#[derive(Debug, Clone)]
pub struct Restored {
    /// The topic's id in the archive (its objects are named by it).
    pub id: Uuid,
    /// Per partition, the offset its local log starts at: the archive's next offset.
    pub starts: Vec<i64>,
    /// Per partition, the leader epochs in the archive, as (epoch, first offset).
    pub epochs: Vec<Vec<(i32, i64)>>,
}

/// A topic as created (or as it would be, for validate-only requests).
#[derive(Debug)]
pub struct Created {
    /// Topic id.
    pub id: Uuid,
    /// Partitions.
    pub partitions: i32,
    /// Replicas per partition.
    pub replication_factor: i16,
    /// Resolved properties.
    pub config: TopicConfig,
    /// Overrides as stored.
    pub overrides: BTreeMap<String, String>,
}

fn unavailable(e: ControllerError) -> TopicError {
    TopicError::Unavailable(e.to_string())
}

fn refused(refusal: Refusal, message: String, name: &str) -> TopicError {
    match refusal {
        Refusal::TopicExists => TopicError::AlreadyExists(name.to_string()),
        Refusal::Unknown => TopicError::Unknown(name.to_string()),
        Refusal::Invalid => TopicError::InvalidReplicaAssignment(message),
    }
}

impl Node {
    /// Places `count` partitions of `factor` replicas for topic `name` over the brokers that
    /// take replicas.
    fn place(&self, name: &str, count: usize, factor: i16) -> Result<Vec<Vec<i32>>, TopicError> {
        if !(1..=REPLICATION_FACTOR_MAX).contains(&factor) {
            return Err(TopicError::InvalidReplicationFactor(format!(
                "replication factor must be between 1 and {REPLICATION_FACTOR_MAX}, not {factor}"
            )));
        }
        let state = self.cluster.controller.state();
        let brokers = state.serving_brokers();
        place_replicas(
            &brokers,
            name_spread(name, brokers.len()),
            count,
            factor as usize,
        )
        .map_err(TopicError::InvalidReplicationFactor)
    }

    /// Materializes the controller's state as of now on this node, if the background
    /// reconciler has not yet, so the change is visible here when the client hears back.
    async fn materialized(&self) {
        let version = self.cluster.controller.state().version;
        super::reconcile::once(self).await;
        if !self
            .topics
            .wait_reconciled(version, MATERIALIZE_TIMEOUT)
            .await
        {
            tracing::warn!(version, "a controller change is not materialized here yet");
        }
    }

    /// Waits (a little) until every partition of `topic` has a leader this node knows of, so
    /// a client that creates a topic and asks for metadata finds leaders; the election of
    /// each partition's preferred replica is usually done by then.
    async fn wait_for_leaders(&self, topic: &str) {
        let deadline = tokio::time::Instant::now() + LEADERS_TIMEOUT;
        loop {
            let state = self.cluster.controller.state();
            let led = match (self.topics.get(topic), state.topics.get(topic)) {
                (Some(local), Some(meta)) => local.partitions().iter().all(|p| {
                    let group = meta.partitions.get(p.index as usize).map(|pm| pm.group);
                    super::leaders::current(self, p, group).is_some()
                }),
                _ => true,
            };
            if led || tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Creates the internal group topic (the group log) if the controller has none yet, with
    /// `default_replication_factor` replicas (at most 3): as Kafka creates
    /// `__consumer_offsets`, at the first need, once enough brokers are there.
    ///
    /// # Errors
    ///
    /// [`TopicError::Unavailable`] while fewer brokers are registered than the replicas it
    /// needs, or when the controller does not answer.
    pub async fn ensure_group_topic(&self) -> Result<(), TopicError> {
        let state = self.cluster.controller.state();
        if state.topics.contains_key(GROUP_TOPIC) {
            return Ok(());
        }
        let factor = self.config.default_replication_factor.clamp(1, 3);
        let brokers = state.serving_brokers().len();
        if brokers < factor as usize {
            return Err(TopicError::Unavailable(format!(
                "the group log needs {factor} brokers and {brokers} are registered"
            )));
        }
        let replicas = self.place(GROUP_TOPIC, GROUP_LOG_PARTITIONS, factor)?;
        let configs = BTreeMap::from([
            // Never deleted by retention, never archived: it compacts itself.
            ("retention.ms".to_string(), "-1".to_string()),
            ("retention.bytes".to_string(), "-1".to_string()),
            ("remote.storage.enable".to_string(), "false".to_string()),
            ("segment.bytes".to_string(), (16u64 << 20).to_string()),
        ]);
        let command = Command::CreateTopic {
            name: GROUP_TOPIC.to_string(),
            id: Uuid::new_v4(),
            replicas,
            configs,
            internal: true,
            starts: None,
            epochs: None,
        };
        match self.cluster.propose(command).await.map_err(unavailable)? {
            Reply::Done
            | Reply::Refused {
                refusal: Refusal::TopicExists,
                ..
            } => {}
            other => {
                return Err(TopicError::Unsupported(format!(
                    "unexpected controller reply {other:?}"
                )));
            }
        }
        tracing::info!(replication_factor = factor, "created the group log topic");
        self.materialized().await;
        Ok(())
    }

    /// Creates a topic.
    ///
    /// # Errors
    ///
    /// [`TopicError`] naming what is wrong (the name, counts, properties, not enough brokers,
    /// the topic exists), or the controller did not answer.
    pub async fn create_topic(
        &self,
        new: NewTopic,
        validate_only: bool,
    ) -> Result<Created, TopicError> {
        let (config, overrides) =
            self.topics
                .validate_create(&new.name, new.partitions, &new.configs)?;
        let state = self.cluster.controller.state();
        if state.topics.contains_key(&new.name) {
            return Err(TopicError::AlreadyExists(new.name));
        }
        if let Some(restored) = &new.restored {
            if let Some(holder) = state.topics.values().find(|t| t.id == restored.id) {
                return Err(TopicError::Archive(format!(
                    "cannot restore '{}': its id {} belongs to topic '{}' here already",
                    new.name, restored.id, holder.name
                )));
            }
            if restored.starts.len() != new.partitions as usize
                || restored.epochs.len() != new.partitions as usize
            {
                return Err(TopicError::Archive(format!(
                    "cannot restore '{}': {} start offsets and {} epoch lists for {} partitions",
                    new.name,
                    restored.starts.len(),
                    restored.epochs.len(),
                    new.partitions
                )));
            }
        }
        let factor = if new.replication_factor == -1 {
            self.config.default_replication_factor
        } else {
            new.replication_factor
        };
        let replicas = self.place(&new.name, new.partitions as usize, factor)?;
        let id = new.restored.as_ref().map_or_else(Uuid::new_v4, |r| r.id);
        if validate_only {
            return Ok(Created {
                id: Uuid::nil(),
                partitions: new.partitions,
                replication_factor: factor,
                config,
                overrides,
            });
        }
        let command = Command::CreateTopic {
            name: new.name.clone(),
            id,
            replicas,
            configs: overrides.clone(),
            internal: false,
            starts: new.restored.as_ref().map(|r| r.starts.clone()),
            epochs: new.restored.map(|r| r.epochs),
        };
        match self.cluster.propose(command).await.map_err(unavailable)? {
            Reply::Done => {}
            Reply::Refused {
                refusal: Refusal::TopicExists,
                ..
            } if self
                .cluster
                .controller
                .state()
                .topics
                .get(&new.name)
                .is_some_and(|t| t.id == id) =>
            {
                // Our own proposal, retried after a leader change: it is there.
            }
            Reply::Refused { refusal, message } => {
                return Err(refused(refusal, message, &new.name));
            }
            other => {
                return Err(TopicError::Unsupported(format!(
                    "unexpected controller reply {other:?}"
                )));
            }
        }
        self.materialized().await;
        self.wait_for_leaders(&new.name).await;
        Ok(Created {
            id,
            partitions: new.partitions,
            replication_factor: factor,
            config,
            overrides,
        })
    }

    /// Deletes a topic.
    ///
    /// # Errors
    ///
    /// [`TopicError::Unknown`], or the controller did not answer.
    pub async fn delete_topic(&self, name: &str) -> Result<(), TopicError> {
        match self.cluster.controller.state().topics.get(name) {
            None => return Err(TopicError::Unknown(name.to_string())),
            Some(meta) if meta.internal => {
                return Err(TopicError::Unsupported(format!(
                    "'{name}' is one of silt's internal topics; it cannot be deleted"
                )));
            }
            Some(_) => {}
        }
        let command = Command::DeleteTopic {
            name: name.to_string(),
        };
        match self.cluster.propose(command).await.map_err(unavailable)? {
            Reply::Done => {}
            // Deleted meanwhile (or by our own retried proposal): gone either way.
            Reply::Refused {
                refusal: Refusal::Unknown,
                ..
            } => {}
            Reply::Refused { refusal, message } => return Err(refused(refusal, message, name)),
            other => {
                return Err(TopicError::Unsupported(format!(
                    "unexpected controller reply {other:?}"
                )));
            }
        }
        self.materialized().await;
        Ok(())
    }

    /// Grows a topic to `count` partitions, with as many replicas as its others.
    ///
    /// # Errors
    ///
    /// [`TopicError::InvalidPartitions`] unless `count` is larger than today's count and within
    /// the limit; the controller did not answer.
    pub async fn add_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let state = self.cluster.controller.state();
        let topic = state
            .topics
            .get(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        let current = topic.partitions.len() as i32;
        if count <= current {
            return Err(TopicError::InvalidPartitions(format!(
                "topic currently has {current} partitions, {count} would not be an increase"
            )));
        }
        if count > crate::topics::PARTITIONS_MAX {
            return Err(TopicError::InvalidPartitions(format!(
                "at most {} partitions",
                crate::topics::PARTITIONS_MAX
            )));
        }
        let factor = topic.replication_factor().max(1) as i16;
        let mut placed = self.place(name, count as usize, factor)?;
        let replicas = placed.split_off(current as usize);
        if validate_only {
            return Ok(());
        }
        let command = Command::AddPartitions {
            name: name.to_string(),
            replicas,
        };
        match self.cluster.propose(command).await.map_err(unavailable)? {
            Reply::Done => {}
            Reply::Refused { refusal, message } => return Err(refused(refusal, message, name)),
            other => {
                return Err(TopicError::Unsupported(format!(
                    "unexpected controller reply {other:?}"
                )));
            }
        }
        self.materialized().await;
        Ok(())
    }

    /// Replaces a topic's property overrides.
    ///
    /// # Errors
    ///
    /// [`TopicError::Config`] or [`TopicError::CreateOnly`]; the controller did not answer.
    pub async fn set_topic_overrides(
        &self,
        name: &str,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let state = self.cluster.controller.state();
        let topic = state
            .topics
            .get(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        let canonical = self.topics.validate_overrides(&topic.configs, &overrides)?;
        if validate_only {
            return Ok(());
        }
        let command = Command::SetConfigs {
            name: name.to_string(),
            configs: canonical,
        };
        match self.cluster.propose(command).await.map_err(unavailable)? {
            Reply::Done => {}
            Reply::Refused { refusal, message } => return Err(refused(refusal, message, name)),
            other => {
                return Err(TopicError::Unsupported(format!(
                    "unexpected controller reply {other:?}"
                )));
            }
        }
        self.materialized().await;
        Ok(())
    }

    /// A topic as materialized here (after a change through the controller).
    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.get(name)
    }
}
