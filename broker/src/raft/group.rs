//! Starting one Raft group on this node: its replicated log, log store, state machine and
//! openraft instance.

use std::sync::Arc;

use openraft::{Config, SnapshotPolicy};

use super::network::{NetworkFactory, Router};
use super::store::{Application, LogStore, StateMachine};
use super::{GroupId, NodeId, Raft};
use crate::log::{Clock, LogConfig, LogError, PartitionLog, Storage};

/// Timing of a group's elections and heartbeats, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How often a leader tells its followers it is there.
    pub heartbeat_ms: u64,
    /// Shortest wait without a leader before a follower stands for election.
    pub election_min_ms: u64,
    /// Longest such wait (each follower picks one in between).
    pub election_max_ms: u64,
    /// Heartbeats and elections are driven by the node (see `cluster::pulse`), not by
    /// timers of the group's own.
    pub driven: bool,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            heartbeat_ms: 200,
            election_min_ms: 1000,
            election_max_ms: 2000,
            driven: false,
        }
    }
}

/// openraft's settings for a silt group.
///
/// # Errors
///
/// Timings openraft refuses (an election timeout not above the heartbeat, ...), named.
pub fn config(group: GroupId, timing: Timing) -> Result<Arc<Config>, String> {
    // A group the node drives runs no election timer; openraft uses the longest timeout
    // only as the leader lease, which a follower honours by refusing votes. It must end
    // when the node's failure detector gives up on the leader (the shortest timeout), or
    // an election it starts could not win before then.
    let (election_min, election_max) = if timing.driven {
        let max = timing.election_min_ms.max(timing.heartbeat_ms + 2);
        ((max - max / 10).max(timing.heartbeat_ms + 1), max)
    } else {
        (timing.election_min_ms, timing.election_max_ms)
    };
    let config = Config {
        cluster_name: format!("silt-group-{group}"),
        heartbeat_interval: timing.heartbeat_ms,
        election_timeout_min: election_min,
        election_timeout_max: election_max,
        // A node that was cut off asks first whether it could win before it bumps the term, so
        // it does not depose a healthy leader when it comes back.
        enable_pre_vote: Some(true),
        // Snapshots are taken when retention wants to purge, never by count: a partition's
        // state is its log.
        snapshot_policy: SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: u64::MAX,
        purge_batch_size: 1,
        // Entries are record batches: a request carries at most this many (and the log store
        // caps it by bytes).
        max_payload_entries: 256,
        enable_tick: !timing.driven,
        enable_heartbeat: !timing.driven,
        enable_elect: !timing.driven,
        ..Config::default()
    };
    config
        .validate()
        .map(Arc::new)
        .map_err(|e| format!("Raft settings of group {group}: {e}"))
}

/// A group running on this node.
#[derive(Clone)]
pub struct GroupHandle {
    /// Its Raft.
    pub raft: Raft,
    /// Its log (the segment files).
    pub log: Arc<PartitionLog>,
    /// What its committed entries mean.
    pub application: Arc<dyn Application>,
    /// Its log was seeded after an archive as it started (see [`super::store::seed`]).
    pub seeded: bool,
}

impl std::fmt::Debug for GroupHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupHandle")
            .field("dir", &self.log.dir())
            .finish_non_exhaustive()
    }
}

/// What a group needs to start.
pub struct GroupSpec {
    /// This node.
    pub node: NodeId,
    /// The group.
    pub group: GroupId,
    /// Where its log lives.
    pub dir: std::path::PathBuf,
    /// Its log's settings.
    pub log_config: LogConfig,
    /// Elections and heartbeats.
    pub timing: Timing,
    /// What committed entries mean.
    pub application: Arc<dyn Application>,
    /// Keep the commit point on disk (see [`LogStore::keeping_committed`]).
    pub keep_committed: bool,
    /// For a partition restored from an archive: where its new log begins (see
    /// [`super::store::seed`]).
    pub seed: Option<super::store::Seed>,
}

/// Why a group did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// Its log did not open.
    #[error(transparent)]
    Log(#[from] LogError),
    /// openraft refused to start it.
    #[error("Raft group {group}: {reason}")]
    Raft {
        /// The group.
        group: GroupId,
        /// Why.
        reason: String,
    },
}

/// Opens a group's log (blocking recovery on the blocking pool) and starts its Raft.
///
/// # Errors
///
/// [`GroupError`]: the log did not open, or openraft refused to start.
pub async fn start(
    spec: GroupSpec,
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    router: Arc<dyn Router>,
) -> Result<GroupHandle, GroupError> {
    let GroupSpec {
        node,
        group,
        dir,
        log_config,
        timing,
        application,
        keep_committed,
        seed,
    } = spec;
    let config = config(group, timing).map_err(|reason| GroupError::Raft { group, reason })?;
    let runtime = tokio::runtime::Handle::current();
    let log = {
        let storage = storage.clone();
        let dir = dir.clone();
        open_blocking(dir.clone(), move || {
            PartitionLog::open_replicated(storage, &dir, log_config, clock, &runtime).map(Arc::new)
        })
        .await?
    };
    let seeded = match seed {
        Some(seed) => super::store::seed(&log, &storage, node, seed).await?,
        None => false,
    };
    let state_machine = {
        let (log, storage, application) = (log.clone(), storage.clone(), application.clone());
        open_blocking(dir.clone(), move || {
            StateMachine::open(log, storage, application)
        })
        .await?
    };
    let mut store = LogStore::new(log.clone(), storage);
    if keep_committed {
        store = store.keeping_committed();
    }
    let network = NetworkFactory::new(router, group, node);
    let raft = Raft::new(node, config, network, store, state_machine)
        .await
        .map_err(|e| GroupError::Raft {
            group,
            reason: e.to_string(),
        })?;
    Ok(GroupHandle {
        raft,
        log,
        application,
        seeded,
    })
}

/// Runs blocking start-up work (log recovery of `dir`) off the async threads where there
/// are any.
async fn open_blocking<T: Send + 'static>(
    dir: std::path::PathBuf,
    f: impl FnOnce() -> Result<T, LogError> + Send + 'static,
) -> Result<T, LogError> {
    match tokio::runtime::Handle::current().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
                Err(LogError::Io {
                    op: "open",
                    path: dir,
                    source: std::io::Error::other(e.to_string()),
                })
            })
        }
        _ => f(),
    }
}
