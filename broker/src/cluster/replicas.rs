//! Opening this node's replica of a partition: a local log alone for a partition of one
//! replica, a Raft group for a replicated one.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::errors::{InitializeError, RaftError};
use silt_config::{NodeConfig, TopicConfig};

use crate::controller::TopicMeta;
use crate::group::store::{GROUP_TOPIC, GroupLogApp};
use crate::log::{Clock, LogConfig, PartitionLog, Storage};
use crate::raft::NodeId;
use crate::raft::group::{self, GroupSpec, Timing};
use crate::raft::network::Groups;
use crate::raft::store::PartitionApplication;
use crate::raft::transport::Transport;
use crate::replica::raft::{RaftReplica, Registration, ReplicaSettings};

use super::pulse::Pulse;
use crate::replica::{LocalReplica, Replica};
use crate::topics::ReplicaFactory;

/// How long a follower may go without acknowledging its leader and still count as in sync
/// (Kafka's `replica.lag.time.max.ms` is 30 s; a Raft follower acknowledges every heartbeat).
pub(crate) const REPLICA_LAG_MAX: Duration = Duration::from_secs(10);

/// Opens replicas for this node.
pub struct Replicas {
    node: i32,
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    transport: Arc<Transport>,
    groups: Arc<Groups>,
    pulse: Arc<Pulse>,
    timing: Timing,
}

impl std::fmt::Debug for Replicas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicas")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Replicas {
    /// The factory of node `config.node_id`.
    pub fn new(
        config: &NodeConfig,
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
        transport: Arc<Transport>,
        groups: Arc<Groups>,
        pulse: Arc<Pulse>,
        timing: Timing,
    ) -> Replicas {
        Replicas {
            node: config.node_id,
            storage,
            clock,
            transport,
            groups,
            pulse,
            timing: Timing {
                driven: true,
                ..timing
            },
        }
    }
}

/// For a first replica of a partition restored from an archive that recorded leader epochs:
/// where its Raft log begins (see [`crate::raft::store::seed`]).
fn restored_seed(
    topic: &TopicMeta,
    index: i32,
    replicas: &[i32],
    me: i32,
) -> Option<crate::raft::store::Seed> {
    let at = usize::try_from(index).ok()?;
    let next_offset = *topic.starts.as_ref()?.get(at)?;
    let epochs = topic.epochs.as_ref()?.get(at)?;
    if epochs.is_empty() || !replicas.contains(&me) {
        return None;
    }
    Some(crate::raft::store::Seed {
        voters: replicas.iter().map(|r| *r as NodeId).collect(),
        next_offset,
        epochs: crate::log::raft::EpochCache::checked(epochs.clone())?,
    })
}

#[async_trait::async_trait]
impl ReplicaFactory for Replicas {
    async fn open(
        &self,
        topic: &TopicMeta,
        index: i32,
        dir: PathBuf,
        log_config: LogConfig,
        config: &TopicConfig,
    ) -> Result<Arc<dyn Replica>, String> {
        let placement = topic
            .partitions
            .get(index as usize)
            .ok_or_else(|| format!("no partition {index} of '{}'", topic.name))?;
        let single = placement.replicas == [self.node] && placement.target.is_none();
        if single {
            // One replica: no Raft, the log alone (and its high watermark follows fsync).
            let (storage, clock, node) = (self.storage.clone(), self.clock.clone(), self.node);
            let runtime = tokio::runtime::Handle::current();
            let opened = tokio::task::spawn_blocking(move || {
                PartitionLog::open(storage, &dir, log_config, clock, &runtime)
            })
            .await
            .map_err(|e| format!("opening the log panicked: {e}"))?;
            return opened
                .map(|log| Arc::new(LocalReplica::new(log, node)) as Arc<dyn Replica>)
                .map_err(|e| e.to_string());
        }
        let me = self.node as NodeId;
        let spec = GroupSpec {
            node: me,
            group: placement.group,
            dir,
            log_config,
            timing: self.timing,
            // The group log's replicas keep its live records (see `group::store`).
            application: if topic.name == GROUP_TOPIC {
                Arc::new(GroupLogApp::default())
            } else {
                Arc::new(PartitionApplication)
            },
            keep_committed: false,
            seed: restored_seed(topic, index, &placement.replicas, self.node),
        };
        let handle = group::start(
            spec,
            self.storage.clone(),
            self.clock.clone(),
            self.transport.clone(),
        )
        .await
        .map_err(|e| e.to_string())?;
        self.groups
            .insert(placement.group, handle.raft.clone(), handle.log.clone());
        let preferred: Vec<NodeId> = placement.replicas.iter().map(|r| *r as NodeId).collect();
        if placement.replicas.contains(&self.node) {
            let voters: BTreeSet<NodeId> = preferred.iter().copied().collect();
            match handle.raft.initialize(voters).await {
                // Every replica initializes with the same voters: safe, and none waits for
                // another. The preferred leader stands at once, so a new partition has a
                // leader without waiting out an election timeout.
                Ok(()) => {
                    if preferred.first() == Some(&me) {
                        let _ = handle.raft.trigger().elect(false).await;
                    }
                }
                // One that heard from an initialized peer first is in already; one seeded
                // after an archive is too, and its preferred leader stands at once as well.
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
                    if handle.seeded && preferred.first() == Some(&me) {
                        let _ = handle.raft.trigger().elect(false).await;
                    }
                }
                Err(e) => return Err(format!("Raft group {}: {e}", placement.group)),
            }
        }
        let settings = ReplicaSettings {
            min_insync_replicas: config.min_insync_replicas as usize,
            replica_lag_max: REPLICA_LAG_MAX,
            // openraft's lease for a driven group (see `raft::group::config`).
            leader_lease: Duration::from_millis(self.timing.election_min_ms),
        };
        let replica = Arc::new(RaftReplica::new(
            me,
            placement.group,
            handle,
            settings,
            self.pulse.liveness.clone(),
            Some(Registration {
                groups: self.groups.clone(),
                pulse: self.pulse.clone(),
            }),
        ));
        self.pulse.watch(placement.group, &replica, preferred);
        Ok(replica)
    }
}
