//! A replica of a replicated partition: openraft over the partition's segment files.
//!
//! The leader checks each batch before it is replicated (Raft cannot refuse an entry once it
//! has an index): its size and CRC, its timestamps, and its idempotent producer's sequence,
//! counting the batches it accepted that are not appended yet (the "gate"). It stamps
//! LogAppendTime batches, so every replica stores the same bytes. Then the batch goes to
//! openraft; acks=1 is answered once the leader's copy is written, acks=-1 once a quorum has
//! fsynced it and the high watermark has moved past it.
//!
//! `min.insync.replicas` counts the leader and the followers that are alive and held its
//! whole log within the replica lag time (Kafka's `replica.lag.time.max.ms`). A leader that
//! hears from no majority of its replicas refuses writes: it is likely deposed already.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use openraft::Instant as _;
use openraft::ServerState;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::ClientWriteError;
use openraft::impls::ProgressResponder;
use silt_config::TimestampType;
use silt_index::batch::{self, BATCH_HEADER_BYTES, BatchHeader};
use tokio::sync::oneshot;

use super::{Acks, Leadership, Replica};
use crate::cluster::pulse::{Liveness, Pulse};
use crate::log::appender::check_timestamps;
use crate::log::producer_state::{Check, InFlightBatch};
use crate::log::{AppendError, AppendTicket, Appended, LogError, PartitionLog};
use crate::raft::group::GroupHandle;
use crate::raft::network::Groups;
use crate::raft::{GroupId, LogData, NodeId, RaftMetrics};

/// How long a retried batch waits for its first copy (to be appended, or committed).
const DUPLICATE_WAIT: Duration = Duration::from_secs(30);

/// What a replicated partition is asked to honour (from its topic's properties).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaSettings {
    /// `min.insync.replicas`.
    pub min_insync_replicas: usize,
    /// How long a follower may go without acknowledging the leader and still count as in
    /// sync.
    pub replica_lag_max: Duration,
    /// openraft's leader lease (the longest election timeout): a leader takes writes only
    /// while a quorum acknowledged it within this time.
    pub leader_lease: Duration,
}

/// Batches the leader accepted and has not appended yet, per producer, for one term.
#[derive(Debug, Default)]
struct Gate {
    term: u64,
    in_flight: HashMap<i64, Vec<InFlightBatch>>,
}

/// When each follower last held the whole log of this node's leadership (`term`).
///
/// A new leader starts by counting every live follower as caught up, as a Kafka leader
/// inherits the ISR it was elected from: a follower drops out if it does not catch up within
/// the replica lag time. Otherwise a new leader would refuse acks=all writes with
/// NOT_ENOUGH_REPLICAS until its first round of replication came back, and clients that
/// pipeline (librdkafka's idempotent producer) answer that refusal, followed by the
/// out-of-sequence refusals of the batches behind it, by renumbering their unacknowledged
/// batches, which duplicates the ones an earlier leader had committed.
#[derive(Debug, Default)]
struct CaughtUp {
    term: u64,
    at: HashMap<NodeId, Instant>,
    /// The leader's last log index at its previous look.
    previous_end: Option<u64>,
}

/// Where a replica is registered on its node, to be let go of when it closes.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The node's groups (for the network).
    pub groups: Arc<Groups>,
    /// The node's pulse (elections, liveness).
    pub pulse: Arc<Pulse>,
}

/// This node's replica of a replicated partition.
pub struct RaftReplica {
    node: NodeId,
    group: GroupId,
    handle: GroupHandle,
    settings: RwLock<ReplicaSettings>,
    gate: tokio::sync::Mutex<Gate>,
    liveness: Arc<Liveness>,
    /// When each follower last held the leader's whole log, in the term it is kept for.
    caught_up: Mutex<CaughtUp>,
    /// The last leader known here and its term (what Metadata names while an election or a
    /// hand-over leaves none).
    last_leader: Mutex<Option<(i32, i32)>>,
    /// (term, Raft index): the log's last entry when this node was first seen leading in
    /// that term, in this process (see `high_watermark_settled`).
    leading_from: Mutex<(u64, u64)>,
    /// The archive pointer last forgotten up to (see `forget_archived`), and whether that is
    /// under way.
    forgotten: Mutex<(i64, bool)>,
    registration: Option<Registration>,
}

/// Makes `raft` forget what the archive holds below `pointer` (an archive pointer its log
/// applied): a snapshot at the last entry ending there, and a purge up to it (see
/// [`RaftReplica::forget_archived`]).
///
/// # Errors
///
/// The group stopped, or the log could not be read.
pub async fn forget_archived(
    raft: &crate::raft::Raft,
    log: &PartitionLog,
    pointer: i64,
) -> Result<bool, LogError> {
    match crate::raft::store::blocking(|| log.entry_ending_by(pointer))? {
        Some(((index, _), _)) => forget_upto(raft, index, "the archive").await,
        None => Ok(false),
    }
}

/// Makes Raft forget entries up to `upto`: a snapshot covering them (the state machine
/// takes it where the log may be forgotten), then a purge. True once purged that far;
/// false when not applied that far yet or openraft did not get there in time (the next
/// round tries again).
///
/// # Errors
///
/// The group stopped.
pub async fn forget_upto(
    raft: &crate::raft::Raft,
    upto: u64,
    why: &'static str,
) -> Result<bool, LogError> {
    let (applied, snapshot, purged) = {
        let metrics = raft.metrics();
        let metrics = metrics.borrow_watched();
        (
            metrics.last_applied.as_ref().map(|a| a.index),
            metrics.snapshot.as_ref().map(|s| s.index),
            metrics.purged.as_ref().map(|p| p.index),
        )
    };
    if purged.is_some_and(|p| p >= upto) {
        return Ok(true);
    }
    if applied.is_none_or(|a| a < upto) {
        return Ok(false);
    }
    let timeout = Some(Duration::from_secs(10));
    if snapshot.is_none_or(|s| s < upto) {
        raft.trigger()
            .snapshot()
            .await
            .map_err(|_| LogError::Closed)?;
        let covered = |m: &RaftMetrics| m.snapshot.as_ref().is_some_and(|s| s.index >= upto);
        if raft.wait(timeout).metrics(covered, why).await.is_err() {
            return Ok(false);
        }
    }
    raft.trigger()
        .purge_log(upto)
        .await
        .map_err(|_| LogError::Closed)?;
    let purged = |m: &RaftMetrics| m.purged.as_ref().is_some_and(|p| p.index >= upto);
    Ok(raft.wait(timeout).metrics(purged, why).await.is_ok())
}

impl std::fmt::Debug for RaftReplica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftReplica")
            .field("node", &self.node)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl RaftReplica {
    /// The replica of group `group` on node `node`.
    pub fn new(
        node: NodeId,
        group: GroupId,
        handle: GroupHandle,
        settings: ReplicaSettings,
        liveness: Arc<Liveness>,
        registration: Option<Registration>,
    ) -> RaftReplica {
        RaftReplica {
            node,
            group,
            handle,
            settings: RwLock::new(settings),
            gate: tokio::sync::Mutex::new(Gate::default()),
            liveness,
            caught_up: Mutex::default(),
            last_leader: Mutex::default(),
            leading_from: Mutex::default(),
            forgotten: Mutex::new((-1, false)),
            registration,
        }
    }

    /// What this group's committed entries mean.
    pub fn application(&self) -> &Arc<dyn crate::raft::store::Application> {
        &self.handle.application
    }

    /// True once this node's state machine has applied its whole log (a new leader: its
    /// first entry of the term is committed and applied, so it has everything committed).
    pub fn caught_up(&self) -> bool {
        let metrics = self.handle.raft.metrics();
        let metrics = metrics.borrow_watched();
        metrics.last_applied.as_ref().map(|a| a.index) >= metrics.last_log_index
    }

    /// Snapshots the state machine where it is and purges the log up to there, if at least
    /// `min_entries` were applied since the last snapshot. Returns whether it purged.
    ///
    /// # Errors
    ///
    /// The group stopped.
    pub async fn compact_log(&self, min_entries: u64) -> Result<bool, LogError> {
        let (snapshot, _, _) = self.snapshot_progress();
        let metrics = self.handle.raft.metrics();
        let applied = metrics
            .borrow_watched()
            .last_applied
            .as_ref()
            .map(|a| a.index);
        let Some(applied) = applied else {
            return Ok(false);
        };
        if snapshot.is_some_and(|s| s + min_entries > applied) {
            return Ok(false);
        }
        if !self.forget_upto(applied, "compaction").await? {
            return Ok(false);
        }
        self.log().drop_purged(i64::MAX).await?;
        Ok(true)
    }

    /// The last entry this replica's snapshot covers, the last its log forgot and the last
    /// it holds (Raft indexes), for status pages.
    pub fn snapshot_progress(&self) -> (Option<u64>, Option<u64>, Option<u64>) {
        let metrics = self.handle.raft.metrics();
        let metrics = metrics.borrow_watched();
        (
            metrics.snapshot.as_ref().map(|s| s.index),
            metrics.purged.as_ref().map(|p| p.index),
            metrics.last_log_index,
        )
    }

    async fn forget_upto(&self, upto: u64, why: &'static str) -> Result<bool, LogError> {
        forget_upto(&self.handle.raft, upto, why).await
    }

    /// While leading: how many entries each other replica (followers and learners) lacks,
    /// `None` where unknown yet.
    pub fn lags(&self) -> Vec<(NodeId, Option<u64>)> {
        let metrics = self.handle.raft.metrics();
        let metrics = metrics.borrow_watched();
        let Some(replication) = &metrics.replication else {
            return Vec::new();
        };
        let last = metrics.last_log_index.unwrap_or(0);
        replication
            .iter()
            .filter(|(n, _)| **n != self.node)
            .map(|(n, m)| (*n, m.as_ref().map(|m| last.saturating_sub(m.index))))
            .collect()
    }

    /// Notes, while leading, which followers are caught up: as Kafka's leader does, a
    /// follower is caught up when it holds everything this leader held at its previous look
    /// (one pulse ago), so that a follower keeping pace under steady writes, never quite at
    /// the log's end at the instant of a look, stays in sync.
    pub fn observe_followers(&self, metrics: &RaftMetrics, liveness: &Liveness) {
        let Some(replication) = &metrics.replication else {
            return;
        };
        let last = metrics.last_log_index;
        let now = Instant::now();
        let mut caught_up = self.tenure(metrics);
        let bar = caught_up.previous_end.min(last);
        for (follower, matched) in replication {
            let holds = match (bar, matched) {
                (None, _) => true,
                (Some(bar), Some(m)) => m.index >= bar,
                (Some(_), None) => false,
            };
            if holds && liveness.alive(*follower) {
                caught_up.at.insert(*follower, now);
            }
        }
        caught_up.previous_end = last;
    }

    /// The group's Raft and log.
    pub fn handle(&self) -> &GroupHandle {
        &self.handle
    }

    /// The partition's Raft group.
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// Replaces the settings (after AlterConfigs).
    pub fn set_settings(&self, settings: ReplicaSettings) {
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = settings;
    }

    fn settings(&self) -> ReplicaSettings {
        *self.settings.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The replicas in sync with this leader, itself included (just itself on a follower):
    /// alive, and holding the whole log within the replica lag time.
    pub fn in_sync_nodes(&self) -> Vec<NodeId> {
        let metrics = self.handle.raft.metrics();
        let metrics = metrics.borrow_watched();
        self.in_sync_of(&metrics)
    }

    /// [`RaftReplica::in_sync_nodes`] as of `metrics` (this group's, borrowed by the caller).
    pub fn in_sync_of(&self, metrics: &RaftMetrics) -> Vec<NodeId> {
        let lag = self.settings().replica_lag_max;
        let mut in_sync = vec![self.node];
        if metrics.state != ServerState::Leader {
            return in_sync;
        }
        let caught_up = self.tenure(metrics);
        for follower in metrics.membership_config.membership().voter_ids() {
            if follower == self.node || !self.liveness.alive(follower) {
                continue;
            }
            let current = caught_up
                .at
                .get(&follower)
                .is_some_and(|at| at.elapsed() <= lag)
                || metrics
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&follower))
                    .is_some_and(|m| m.as_ref().map(|m| m.index) >= metrics.last_log_index);
            if current {
                in_sync.push(follower);
            }
        }
        in_sync.sort_unstable();
        in_sync
    }

    /// The followers' catch-up times for the term in `metrics`, started afresh (every live
    /// voter counted as caught up now, see [`CaughtUp`]) when this node leads a new term.
    fn tenure(&self, metrics: &RaftMetrics) -> std::sync::MutexGuard<'_, CaughtUp> {
        let mut caught_up = self.caught_up.lock().unwrap_or_else(|p| p.into_inner());
        if metrics.state == ServerState::Leader && caught_up.term != metrics.current_term {
            let now = Instant::now();
            caught_up.term = metrics.current_term;
            caught_up.previous_end = None;
            caught_up.at = metrics
                .membership_config
                .membership()
                .voter_ids()
                .filter(|v| *v != self.node && self.liveness.alive(*v))
                .map(|v| (v, now))
                .collect();
        }
        caught_up
    }

    /// Notes, the first time this node is seen leading in `metrics`' term (in this
    /// process), where its log ends; returns that index (see `high_watermark_settled`).
    /// Takes the caller's metrics so that it never borrows them a second time.
    pub fn note_leading(&self, metrics: &RaftMetrics) -> u64 {
        let mut from = self.leading_from.lock().unwrap_or_else(|p| p.into_inner());
        if from.0 != metrics.current_term {
            *from = (metrics.current_term, metrics.last_log_index.unwrap_or(0));
        }
        from.1
    }

    /// True if this node heard lately from a majority of the group's voters (itself
    /// included).
    fn in_contact_with_majority(&self) -> bool {
        let metrics = self.handle.raft.metrics();
        let metrics = metrics.borrow_watched();
        self.majority_alive(&metrics)
    }

    /// True if a majority of the voters in `metrics` (this node included) is alive.
    fn majority_alive(&self, metrics: &RaftMetrics) -> bool {
        let voters: Vec<NodeId> = metrics.membership_config.membership().voter_ids().collect();
        let alive = voters.iter().filter(|v| self.liveness.alive(**v)).count();
        alive * 2 > voters.len()
    }

    /// The voters of the group (its replicas).
    pub fn voters(&self) -> Vec<NodeId> {
        let metrics = self.handle.raft.metrics().borrow_watched().clone();
        metrics.membership_config.membership().voter_ids().collect()
    }

    /// A client's batch, or (`marker`) a transaction marker of the coordinator's: checked,
    /// passed through the producer gate, and proposed.
    async fn submit_as(
        &self,
        batch: Bytes,
        acks: Acks,
        marker: bool,
    ) -> Result<AppendTicket, AppendError> {
        let log = self.log();
        let config = log.config();
        // Leadership first, as Kafka checks it: a follower refuses anything with
        // NOT_LEADER_OR_FOLLOWER, which sends the client to the leader.
        let term = self.leading_term()?;
        let header = if marker {
            crate::log::partition_log::check_marker_batch(&batch)?
        } else {
            crate::log::partition_log::check_batch(&batch, &config)?
        };
        if marker {
            log.producers().check_marker(&header)?;
        }
        self.renew_lease().await?;
        if acks == Acks::All {
            let required = self.settings().min_insync_replicas;
            let in_sync_nodes = self.in_sync_nodes();
            let in_sync = in_sync_nodes.len();
            if in_sync < required {
                tracing::debug!(group = self.group, in_sync = ?in_sync_nodes, required, "refusing an acks=all write: too few replicas in sync");
                return Err(AppendError::NotEnoughReplicas { in_sync, required });
            }
        }
        let now = log.clock_now_ms();
        check_timestamps(&header, &config, now)?;
        let batch = if config.timestamp_type == TimestampType::LogAppendTime {
            stamp_append_time(&batch, now)
        } else {
            batch
        };
        let (written_tx, written_rx) = oneshot::channel();
        let (responder, complete) = ProgressResponder::complete_only();
        {
            // Batches enter Raft in the order they pass the gate.
            let mut gate = self.gate.lock().await;
            if gate.term != term {
                *gate = Gate {
                    term,
                    ..Gate::default()
                };
            }
            if header.has_producer_id() && !marker {
                let table = log.producers();
                let in_flight = gate.in_flight.entry(header.producer_id).or_default();
                // What the table holds already is not in flight any more.
                if let Some(entry) = table.entry(header.producer_id) {
                    in_flight.retain(|f| {
                        !(entry.epoch == f.epoch
                            && entry.batches.iter().any(|b| {
                                b.first_sequence == f.first_sequence
                                    && b.last_sequence == f.last_sequence
                            }))
                    });
                }
                match table.check_with(&header, in_flight)? {
                    Check::Duplicate(meta) if meta.base_offset >= 0 => {
                        let log = self.handle.log.clone();
                        let appended = Appended {
                            base_offset: meta.base_offset,
                            last_offset: meta.last_offset,
                            log_append_time: if config.timestamp_type
                                == TimestampType::LogAppendTime
                            {
                                meta.timestamp
                            } else {
                                -1
                            },
                            log_start_offset: log.log_start_offset(),
                            duplicate: true,
                        };
                        // The first copy may not be committed yet (an earlier leader
                        // wrote it): acks=all is answered once it is.
                        return Ok(AppendTicket::new(async move {
                            if acks == Acks::All {
                                RaftReplica::committed(&log, appended.last_offset).await?;
                            }
                            Ok(appended)
                        }));
                    }
                    Check::Duplicate(_) => {
                        drop(table);
                        let log = self.handle.log.clone();
                        return Ok(AppendTicket::new(async move {
                            let appended =
                                RaftReplica::duplicate_of_in_flight(&log, header).await?;
                            if acks == Acks::All {
                                RaftReplica::committed(&log, appended.last_offset).await?;
                            }
                            Ok(appended)
                        }));
                    }
                    Check::Append => {}
                }
                in_flight.push(InFlightBatch {
                    epoch: header.producer_epoch,
                    first_sequence: header.base_sequence,
                    last_sequence: header.last_sequence(),
                });
                if in_flight.len() > 64 {
                    // Never more than a producer's pipeline; an old one was lost with a term.
                    in_flight.remove(0);
                }
            }
            let data = LogData {
                batch,
                written: Some(Arc::new(Mutex::new(Some(written_tx)))),
            };
            self.handle
                .raft
                .client_write_ff(data, Some(responder))
                .await
                .map_err(|e| {
                    tracing::debug!(group = self.group, error = %e, "Raft refused a write");
                    AppendError::Closed
                })?;
        }
        Ok(AppendTicket::new(async move {
            let not_leader = |leader: Option<u64>| AppendError::NotLeader {
                leader: leader.and_then(|l| i32::try_from(l).ok()),
            };
            match acks {
                Acks::Leader => match written_rx.await {
                    Ok(appended) => Ok(appended),
                    // Never written: openraft refused it; its answer says why.
                    Err(_) => match complete.await {
                        Ok(Err(
                            ClientWriteError::ForwardToLeader(f)
                            | ClientWriteError::LogEntryDiscarded(f),
                        )) => Err(not_leader(f.leader_id)),
                        Ok(Err(e)) => Err(AppendError::Storage(e.to_string())),
                        _ => Err(not_leader(None)),
                    },
                },
                Acks::All => match complete.await {
                    Ok(Ok(_)) => written_rx.await.map_err(|_| not_leader(None)),
                    Ok(Err(
                        ClientWriteError::ForwardToLeader(f)
                        | ClientWriteError::LogEntryDiscarded(f),
                    )) => Err(not_leader(f.leader_id)),
                    Ok(Err(e)) => Err(AppendError::Storage(e.to_string())),
                    Err(_) => Err(not_leader(None)),
                },
            }
        }))
    }

    /// Refuses with `NotLeader` unless this node leads and hears from a majority; returns
    /// the term.
    fn leading_term(&self) -> Result<u64, AppendError> {
        let metrics = self.handle.raft.metrics().borrow_watched().clone();
        if metrics.state == ServerState::Leader
            && metrics.current_leader == Some(self.node)
            && self.in_contact_with_majority()
        {
            Ok(metrics.current_term)
        } else {
            tracing::debug!(
                group = self.group,
                state = ?metrics.state,
                leader = ?metrics.current_leader,
                majority = self.in_contact_with_majority(),
                "refusing a write: not the leader"
            );
            Err(AppendError::NotLeader {
                leader: metrics.current_leader.and_then(|l| i32::try_from(l).ok()),
            })
        }
    }

    /// Makes sure a quorum acknowledged this leader lately, as openraft requires before it
    /// takes a write: the groups send no heartbeats of their own (see `cluster::pulse`), so
    /// after a quiet spell the leader sends one and waits for a quorum to answer.
    pub(crate) async fn renew_lease(&self) -> Result<(), AppendError> {
        let lease = self.settings().leader_lease;
        let fresh = |m: &RaftMetrics| {
            m.membership_config.membership().voter_ids().count() == 1
                || m.last_quorum_acked
                    .as_ref()
                    .is_some_and(|at| at.elapsed() < lease / 2)
        };
        if fresh(&self.handle.raft.metrics().borrow_watched()) {
            return Ok(());
        }
        self.handle
            .raft
            .trigger()
            .heartbeat()
            .await
            .map_err(|_| AppendError::Closed)?;
        let renewed = self
            .handle
            .raft
            .wait(Some(lease))
            .metrics(
                |m| fresh(m) || m.state != ServerState::Leader,
                "leader lease",
            )
            .await;
        match renewed {
            Ok(m) if m.state == ServerState::Leader => Ok(()),
            Ok(m) => Err(AppendError::NotLeader {
                leader: m.current_leader.and_then(|l| i32::try_from(l).ok()),
            }),
            Err(_) => Err(AppendError::NotLeader { leader: None }),
        }
    }

    /// Waits until the high watermark passes `last_offset`; `NotLeader` if it does not
    /// within the time a client waits for a produce (the leadership moved, or the entry was
    /// truncated: the client retries).
    async fn committed(log: &PartitionLog, last_offset: i64) -> Result<(), AppendError> {
        let mut watch = log.subscribe();
        let wait = watch.wait_for(|hw| *hw > last_offset);
        match tokio::time::timeout(DUPLICATE_WAIT, wait).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(AppendError::NotLeader { leader: None }),
        }
    }

    /// Waits until the producer table holds a batch a retry duplicated while it was in
    /// flight, and answers with its offsets.
    async fn duplicate_of_in_flight(
        log: &PartitionLog,
        header: BatchHeader,
    ) -> Result<Appended, AppendError> {
        let mut watch = log.subscribe();
        let deadline = tokio::time::Instant::now() + DUPLICATE_WAIT;
        loop {
            let found = log.producers().entry(header.producer_id).and_then(|e| {
                e.batches
                    .iter()
                    .find(|b| {
                        e.epoch == header.producer_epoch
                            && b.first_sequence == header.base_sequence
                            && b.last_sequence == header.last_sequence()
                    })
                    .copied()
            });
            if let Some(meta) = found {
                return Ok(Appended {
                    base_offset: meta.base_offset,
                    last_offset: meta.last_offset,
                    log_append_time: -1,
                    log_start_offset: log.log_start_offset(),
                    duplicate: true,
                });
            }
            let changed = tokio::time::timeout(Duration::from_millis(50), watch.changed()).await;
            if tokio::time::Instant::now() >= deadline || matches!(changed, Ok(Err(_))) {
                return Err(AppendError::NotLeader { leader: None });
            }
        }
    }
}

/// Stamps a batch with the leader's clock (LogAppendTime topics), on a copy.
fn stamp_append_time(batch: &Bytes, now: i64) -> Bytes {
    let mut copy = BytesMut::from(batch.as_ref());
    let (header, records) = copy.split_at_mut(BATCH_HEADER_BYTES);
    batch::set_log_append_time(header, records, now);
    copy.freeze()
}

#[async_trait::async_trait]
impl Replica for RaftReplica {
    fn log(&self) -> &PartitionLog {
        &self.handle.log
    }

    /// A leader that hears from no majority of its replicas does not count as one: it is
    /// likely deposed already, and clients are better sent to look elsewhere.
    fn leadership(&self) -> Leadership {
        // One borrow of the metrics, released before anything else is locked (openraft
        // waits on readers to publish, so a reader must never wait while it holds one).
        let (state, leader, term, in_contact) = {
            let metrics = self.handle.raft.metrics();
            let metrics = metrics.borrow_watched();
            (
                metrics.state,
                metrics.current_leader,
                metrics.current_term,
                self.majority_alive(&metrics),
            )
        };
        let epoch = i32::try_from(term).unwrap_or(i32::MAX);
        let mut leader = leader.and_then(|l| i32::try_from(l).ok());
        let mut is_leader = state == ServerState::Leader && leader == i32::try_from(self.node).ok();
        let mut last = self.last_leader.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(known) = leader {
            *last = Some((known, epoch));
        }
        if is_leader && !in_contact {
            is_leader = false;
            leader = None;
        }
        Leadership {
            epoch,
            leader,
            is_leader,
            previous: if leader.is_none() { *last } else { None },
        }
    }

    /// Settled once this leader has applied everything its log held when it took the lead
    /// here: after an election that is its term's first entry; after a restart that kept
    /// the leadership (openraft resumes a committed vote) it is the whole log it came back
    /// with, whose commit point it knows again only once a quorum has acknowledged it.
    fn high_watermark_settled(&self) -> bool {
        let metrics = self.handle.raft.metrics();
        let metrics = metrics.borrow_watched();
        if metrics.state != ServerState::Leader {
            return true;
        }
        let from = self.note_leading(&metrics);
        metrics.last_applied.as_ref().is_some_and(|applied| {
            applied.leader_id.term == metrics.current_term && applied.index >= from
        })
    }

    async fn submit(&self, batch: Bytes, acks: Acks) -> Result<AppendTicket, AppendError> {
        self.submit_as(batch, acks, false).await
    }

    async fn submit_marker(&self, batch: Bytes) -> Result<AppendTicket, AppendError> {
        self.submit_as(batch, Acks::All, true).await
    }
    /// Through Raft: the leader proposes the new start as an entry, and every replica
    /// applies it at commit (so it survives a change of leader); answered once committed.
    async fn delete_records(&self, offset: i64) -> Result<(), LogError> {
        self.leading_term().map_err(|_| LogError::Closed)?;
        self.renew_lease().await.map_err(|_| LogError::Closed)?;
        let log = self.log();
        let high_watermark = log.high_watermark();
        let offset = if offset == -1 { high_watermark } else { offset };
        if offset < 0 || offset > high_watermark {
            return Err(LogError::OffsetOutOfRange {
                requested: offset,
                log_start: log.log_start_offset(),
                high_watermark,
            });
        }
        if offset <= log.records_start() {
            return Ok(());
        }
        let entry = crate::log::raft::delete_records_entry(offset, log.clock_now_ms());
        match self.handle.raft.client_write(LogData::new(entry)).await {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::debug!(group = self.group, error = %e, "DeleteRecords not committed");
                Err(LogError::Closed)
            }
        }
    }

    fn has_archive_to_forget(&self) -> bool {
        let Some(pointer) = self.log().archived_pointer() else {
            return false;
        };
        let forgotten = self.forgotten.lock().unwrap_or_else(|p| p.into_inner());
        !forgotten.1 && forgotten.0 < pointer
    }

    async fn forget_archived(&self) -> Result<bool, LogError> {
        let log = self.log();
        let Some(pointer) = log.archived_pointer() else {
            return Ok(false);
        };
        {
            let mut forgotten = self.forgotten.lock().unwrap_or_else(|p| p.into_inner());
            if forgotten.1 || forgotten.0 >= pointer {
                return Ok(false);
            }
            forgotten.1 = true;
        }
        let result = forget_archived(&self.handle.raft, log, pointer).await;
        let mut forgotten = self.forgotten.lock().unwrap_or_else(|p| p.into_inner());
        forgotten.1 = false;
        if matches!(result, Ok(true)) {
            forgotten.0 = forgotten.0.max(pointer);
        }
        result
    }

    async fn replicate_archived(&self, next: i64, version: u64) -> Result<(), LogError> {
        self.leading_term().map_err(|_| LogError::Closed)?;
        self.renew_lease().await.map_err(|_| LogError::Closed)?;
        let log = self.log();
        if log.archived_pointer().is_some_and(|known| known >= next) {
            return Ok(());
        }
        let entry = crate::log::raft::archived_entry(next, version, log.clock_now_ms());
        match self.handle.raft.client_write(LogData::new(entry)).await {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::debug!(group = self.group, error = %e, "archive pointer not committed");
                Err(LogError::Closed)
            }
        }
    }

    fn as_raft(&self) -> Option<&RaftReplica> {
        Some(self)
    }

    fn role(&self) -> &'static str {
        match self.handle.raft.metrics().borrow_watched().state {
            ServerState::Leader => "leader",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Follower => "follower",
            ServerState::Shutdown => "stopped",
        }
    }

    fn replicas(&self) -> Vec<i32> {
        self.voters().iter().map(|v| *v as i32).collect()
    }

    fn in_sync(&self) -> Vec<i32> {
        if !self.leadership().is_leader {
            return self.voters().iter().map(|v| *v as i32).collect();
        }
        self.in_sync_nodes().iter().map(|v| *v as i32).collect()
    }

    fn reconfigure(&self, log_config: crate::log::LogConfig, topic: &silt_config::TopicConfig) {
        self.log().set_config(log_config);
        let mut settings = self.settings();
        settings.min_insync_replicas = topic.min_insync_replicas as usize;
        self.set_settings(settings);
    }

    fn epoch_end_offset(&self, epoch: i32) -> Option<(i32, i64)> {
        self.log().epoch_end_offset(epoch)
    }

    /// Retention on a Raft log goes through Raft: a snapshot covering the segments and the
    /// entries they hold purged (a follower that needs them later gets the snapshot), then
    /// the files go.
    async fn trim(&self, keep_from: i64) -> Result<usize, LogError> {
        let log = self.log();
        let Some(base_index) = log.segment_base_index(keep_from) else {
            return Ok(0);
        };
        let Some(upto) = base_index.checked_sub(1) else {
            return Ok(0);
        };
        log.allow_forget_before(keep_from);
        if !self.forget_upto(upto, "retention").await? {
            return Ok(0);
        }
        log.drop_purged(keep_from).await
    }

    async fn close(&self) -> Result<(), LogError> {
        if let Some(registration) = &self.registration {
            registration.pulse.unwatch(self.group);
            registration.groups.remove(self.group);
        }
        if let Err(e) = self.handle.raft.shutdown().await {
            tracing::warn!(group = self.group, error = %e, "Raft did not stop cleanly");
        }
        self.log().close().await
    }
}
