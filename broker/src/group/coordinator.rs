//! The group coordinator's shell: groups in memory behind one lock, waiting requests, the
//! group log, and the clock that expires sessions.
//!
//! Each call locks the groups, runs the [`Group`] state machine, and hands the replies it
//! produced to the requests waiting for them. Changes worth keeping (committed offsets, a new
//! generation, an assignment) are appended to the group log; commits are answered only once
//! their append is fsynced. A task ticks every group every [`TICK`].
//!
//! Committed offsets, and the deletions of groups and offsets, change the coordinator's memory
//! only once their records are durable, and in the order the records are in the log (an
//! [`ApplyQueue`] per group-log partition): what OffsetFetch returns can never be taken back
//! by a crash, and the same apply step serves when the group log is replicated and "durable"
//! means "committed by a quorum".

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{oneshot, watch};

use super::state::{
    CommittedOffset, Effects, Group, GroupConfig, GroupState, JoinOutcome, JoinRequest, JoinResult,
    Reply, Saved, SyncOutcome, SyncResult,
};
use super::store::{
    self, GroupLogApp, GroupLogSource, GroupStore, Key, PendingOffsets, Value, durable,
};
use crate::log::{AppendError, Clock, LogError};
use crate::protocol::error_code::ErrorCode;
use crate::txn::state::TxnMeta;

/// How often sessions and rebalance deadlines are checked.
pub const TICK: Duration = Duration::from_millis(100);
/// Longest committed metadata string (Kafka's `offset.metadata.max.bytes`).
pub const OFFSET_METADATA_BYTES_MAX: usize = 4096;

#[derive(Debug)]
pub(super) struct Entry {
    pub(super) group: Group,
    joins: HashMap<String, oneshot::Sender<JoinResult>>,
    syncs: HashMap<String, oneshot::Sender<SyncResult>>,
}

/// The coordinator of every group on this node.
#[derive(Debug)]
pub struct GroupCoordinator {
    config: GroupConfig,
    clock: Arc<dyn Clock>,
    store: GroupStore,
    groups: Mutex<HashMap<String, Entry>>,
    /// Per group-log partition: changes waiting for their records to be durable.
    applies: Vec<Mutex<ApplyQueue>>,
    /// Per group-log partition: signalled when its apply queue empties.
    applies_drained: Vec<tokio::sync::Notify>,
    compact_bytes: u64,
    /// Per group-log partition: whether this node coordinates its groups.
    owned: Mutex<Vec<Ownership>>,
    /// The transactional ids of the partitions this node coordinates (see [`crate::txn`]).
    /// Lock order: `groups`, then `txns`.
    pub(super) txns: Mutex<HashMap<String, TxnMeta>>,
    /// Offsets committed in open transactions (TxnOffsetCommit), by group and producer;
    /// they become the group's committed offsets at their transaction's COMMIT. Lock order:
    /// `groups`, then `pending`.
    pub(super) pending: Mutex<HashMap<String, PendingOffsets>>,
}

/// A change to the groups, applied once its records are durable.
pub(super) type Apply = Box<dyn FnOnce(&mut HashMap<String, Entry>) + Send>;

/// Committed offsets by (topic, partition).
pub(super) type Offsets = std::collections::BTreeMap<(String, i32), CommittedOffset>;

/// A group-log partition's groups, transactional ids and pending transactional offsets, as
/// loaded.
type Loaded = (
    HashMap<String, Entry>,
    HashMap<String, TxnMeta>,
    HashMap<String, PendingOffsets>,
);

/// Changes of one group-log partition in the order their records were submitted (the order of
/// the log: submissions hold the partition's lock). Each waits until its records are durable;
/// then it and every ready change after it are applied, so memory follows the log in order
/// even when appends complete out of order.
#[derive(Default)]
struct ApplyQueue {
    next: u64,
    /// Submission number -> the change (`None`: records not durable yet; `Some(None)`: the
    /// append failed, nothing to apply).
    pending: std::collections::BTreeMap<u64, Option<Option<Apply>>>,
}

impl std::fmt::Debug for ApplyQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplyQueue")
            .field("next", &self.next)
            .field("pending", &self.pending.len())
            .finish()
    }
}

/// A commit of one partition's offset.
#[derive(Debug, Clone)]
pub struct OffsetCommit {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// What to store.
    pub committed: CommittedOffset,
}

/// One group as a status page shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GroupSummary {
    /// Group id.
    pub id: String,
    /// "classic" or "consumer".
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Kafka's name of its state.
    pub state: &'static str,
    /// Members.
    pub members: usize,
    /// Generation (classic) or group epoch (consumer).
    pub epoch: i32,
}

/// Whether this node coordinates the groups of a group-log partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ownership {
    /// Another node leads the partition (or none does yet).
    Elsewhere,
    /// This node leads it and waits for its log to be applied before it loads the groups.
    Loading,
    /// This node coordinates its groups, loaded in this leader epoch.
    Owned(i32),
}

/// Builds groups from group-log records (in log order, or the live records of a partition).
fn build_groups(
    records: Vec<(Key, Value)>,
    config: GroupConfig,
    now: i64,
) -> HashMap<String, Entry> {
    let mut groups: HashMap<String, Entry> = HashMap::new();
    let mut metadata: HashMap<String, Option<store::GroupValue>> = HashMap::new();
    for (key, value) in records {
        let id = key.group_id().to_string();
        let entry = groups.entry(id.clone()).or_insert_with(|| Entry {
            group: Group::new(&id, config),
            joins: HashMap::new(),
            syncs: HashMap::new(),
        });
        match (key, value) {
            (Key::Offset(_, _, topic, partition), Value::Offset(v)) => {
                entry.group.offsets.insert((topic, partition), v.into());
            }
            (Key::Offset(_, _, topic, partition), Value::Tombstone) => {
                entry.group.offsets.remove(&(topic, partition));
            }
            (Key::Group(..), Value::Group(v)) => {
                metadata.insert(id, Some(v));
            }
            (Key::Group(..), Value::Tombstone) => {
                metadata.insert(id.clone(), None);
                entry.group.offsets.clear();
            }
            (key, value) => tracing::warn!(?key, ?value, "mismatched group-log record skipped"),
        }
    }
    for (id, value) in metadata {
        let Some(entry) = groups.get_mut(&id) else {
            continue;
        };
        match value {
            Some(v) => {
                let offsets = std::mem::take(&mut entry.group.offsets);
                entry.group = Group::restore(
                    &id,
                    config,
                    Saved {
                        generation: v.generation,
                        protocol_type: v.protocol_type,
                        protocol_name: v.protocol,
                        leader: v.leader,
                        members: v
                            .members
                            .into_iter()
                            .map(store::MemberValue::into_member)
                            .collect(),
                        consumer: v.consumer,
                    },
                    now,
                );
                entry.group.offsets = offsets;
            }
            None if entry.group.offsets.is_empty() => {
                groups.remove(&id);
            }
            None => {}
        }
    }
    groups
}

impl GroupCoordinator {
    /// A coordinator over the group log at `source`. It coordinates no group until
    /// [`Self::refresh_ownership`] finds this node leading a partition of the log.
    pub fn new(
        source: Arc<dyn GroupLogSource>,
        config: GroupConfig,
        clock: Arc<dyn Clock>,
    ) -> GroupCoordinator {
        GroupCoordinator {
            config,
            store: GroupStore::new(source, clock.clone()),
            clock,
            groups: Mutex::new(HashMap::new()),
            applies: (0..store::GROUP_LOG_PARTITIONS)
                .map(|_| Mutex::new(ApplyQueue::default()))
                .collect(),
            applies_drained: (0..store::GROUP_LOG_PARTITIONS)
                .map(|_| tokio::sync::Notify::new())
                .collect(),
            compact_bytes: config.log_compaction_bytes,
            owned: Mutex::new(vec![Ownership::Elsewhere; store::GROUP_LOG_PARTITIONS]),
            txns: Mutex::default(),
            pending: Mutex::default(),
        }
    }

    pub(super) fn ownership(&self, p: usize) -> Ownership {
        self.owned.lock().unwrap_or_else(|e| e.into_inner())[p]
    }

    fn set_ownership(&self, p: usize, ownership: Ownership) {
        self.owned.lock().unwrap_or_else(|e| e.into_inner())[p] = ownership;
    }

    /// Whether this node coordinates `group_id`: `NOT_COORDINATOR` if another node does,
    /// `COORDINATOR_LOAD_IN_PROGRESS` while it is loading the group's partition.
    ///
    /// # Errors
    ///
    /// The error code to answer with.
    pub fn coordinates(&self, group_id: &str) -> Result<(), ErrorCode> {
        match self.ownership(GroupStore::partition_of(group_id)) {
            Ownership::Owned(_) => Ok(()),
            Ownership::Loading => Err(ErrorCode::CoordinatorLoadInProgress),
            Ownership::Elsewhere => Err(ErrorCode::NotCoordinator),
        }
    }

    /// Group-log partitions this node coordinates.
    pub fn owned_partitions(&self) -> Vec<usize> {
        (0..store::GROUP_LOG_PARTITIONS)
            .filter(|p| matches!(self.ownership(*p), Ownership::Owned(_)))
            .collect()
    }

    /// Takes up the groups of every group-log partition this node has come to lead, and lets
    /// go of those of partitions it no longer leads.
    pub async fn refresh_ownership(&self) {
        for p in 0..store::GROUP_LOG_PARTITIONS {
            let replica = self.store.replica(p);
            let leading = replica
                .as_ref()
                .map(|r| r.leadership())
                .filter(|l| l.is_leader);
            let current = self.ownership(p);
            match (leading, current) {
                (None, Ownership::Elsewhere) => {}
                (None, _) => self.unload(p),
                (Some(l), Ownership::Owned(epoch)) if epoch == l.epoch => {}
                (Some(l), _) => {
                    let Some(replica) = replica else { continue };
                    if matches!(current, Ownership::Owned(_)) {
                        self.unload(p);
                    }
                    match self.load(replica.as_ref()).await {
                        Ok(Some((groups, txns, pending_offsets))) => {
                            let count = groups.len();
                            {
                                let mut map = self.lock();
                                map.retain(|id, _| GroupStore::partition_of(id) != p);
                                map.extend(groups);
                                let mut owned = self.txns();
                                owned.retain(|id, _| GroupStore::partition_of(id) != p);
                                owned.extend(txns);
                                let mut pending = self.pending();
                                pending.retain(|g, _| GroupStore::partition_of(g) != p);
                                pending.extend(pending_offsets);
                            }
                            self.set_ownership(p, Ownership::Owned(l.epoch));
                            tracing::info!(
                                partition = p,
                                epoch = l.epoch,
                                groups = count,
                                "coordinating the groups of a group-log partition"
                            );
                        }
                        Ok(None) => self.set_ownership(p, Ownership::Loading),
                        Err(e) => {
                            tracing::error!(partition = p, error = %e, "could not load the groups of a group-log partition");
                            self.set_ownership(p, Ownership::Loading);
                        }
                    }
                }
            }
        }
    }

    /// The groups of partition `p` as its log holds them, or `None` while a new Raft leader
    /// has not applied its whole log yet.
    async fn load(
        &self,
        replica: &dyn crate::replica::Replica,
    ) -> Result<Option<Loaded>, LogError> {
        let now = self.clock.now_ms();
        let mut records = match replica.as_raft() {
            Some(raft) => {
                if !raft.caught_up() {
                    return Ok(None);
                }
                match raft.application().as_any().downcast_ref::<GroupLogApp>() {
                    Some(app) => app.records(),
                    None => {
                        return Err(LogError::Foreign {
                            path: replica.log().dir().to_path_buf(),
                            reason: "a group-log partition without the group-log application"
                                .into(),
                        });
                    }
                }
            }
            None => {
                let log = replica.log().clone();
                tokio::task::spawn_blocking(move || {
                    let mut records = Vec::new();
                    store::replay(&log, &mut records).map(|()| records)
                })
                .await
                .map_err(|e| LogError::Corrupt {
                    path: replica.log().dir().to_path_buf(),
                    position: 0,
                    reason: format!("replay task failed: {e}"),
                })??
            }
        };
        let txns = super::txn_records::take_txns(&mut records);
        let pending = super::txn_records::take_pending(&mut records);
        Ok(Some((
            build_groups(records, self.config, now),
            txns,
            pending,
        )))
    }

    /// Lets go of partition `p`'s groups: their waiting requests hear NOT_COORDINATOR and
    /// go to the new coordinator.
    fn unload(&self, p: usize) {
        self.set_ownership(p, Ownership::Elsewhere);
        self.txns()
            .retain(|id, _| GroupStore::partition_of(id) != p);
        self.pending()
            .retain(|g, _| GroupStore::partition_of(g) != p);
        let mut groups = self.lock();
        let gone: Vec<String> = groups
            .keys()
            .filter(|id| GroupStore::partition_of(id) == p)
            .cloned()
            .collect();
        for id in &gone {
            if let Some(entry) = groups.remove(id) {
                for (member_id, waiter) in entry.joins {
                    let _ = waiter.send(JoinResult {
                        error: Some(ErrorCode::NotCoordinator),
                        generation: -1,
                        protocol_type: None,
                        protocol_name: None,
                        leader: String::new(),
                        member_id,
                        members: Vec::new(),
                    });
                }
                for (_, waiter) in entry.syncs {
                    let _ = waiter.send(SyncResult {
                        error: Some(ErrorCode::NotCoordinator),
                        protocol_type: None,
                        protocol_name: None,
                        assignment: Bytes::new(),
                    });
                }
            }
        }
        tracing::info!(
            partition = p,
            groups = gone.len(),
            "no longer coordinating the groups of a group-log partition"
        );
    }

    pub(super) fn config(&self) -> GroupConfig {
        self.config
    }

    pub(super) fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The cluster's topics as consumer groups see them.
    pub(super) fn topics(&self) -> super::consumer::TopicsView {
        self.store.topics()
    }

    /// Persists a group's metadata as it is now; true once it is durable.
    pub(super) async fn persist_group(&self, group_id: &str) -> bool {
        self.persist_then_deliver(group_id, Vec::new()).await
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Submits `records` to group-log partition `p` and applies `apply` to memory once they
    /// are durable, in log order; returns when that is done (or the append failed).
    ///
    /// The wait runs in its own task: a request dropped halfway (its client went away) must
    /// not leave the records durable and unapplied, nor stall the changes after them.
    ///
    /// # Errors
    ///
    /// `KAFKA_STORAGE_ERROR` when the append was refused or did not become durable.
    pub(super) async fn submit_and_apply(
        self: &Arc<Self>,
        group_id: &str,
        records: Vec<(Key, Value)>,
        apply: Apply,
    ) -> Result<(), ErrorCode> {
        let p = GroupStore::partition_of(group_id);
        let Ownership::Owned(epoch) = self.ownership(p) else {
            return Err(ErrorCode::NotCoordinator);
        };
        let guard = self.store.lock(p).await;
        let seq = {
            let mut queue = self.applies[p].lock().unwrap_or_else(|e| e.into_inner());
            let seq = queue.next;
            queue.next += 1;
            queue.pending.insert(seq, None);
            seq
        };
        let submitted = self.store.submit(p, &records).await;
        drop(guard);
        let (done, outcome) = oneshot::channel();
        let this = self.clone();
        let group = group_id.to_string();
        tokio::spawn(async move {
            let result = match submitted {
                Ok(tickets) => durable(tickets).await,
                Err(e) => Err(e),
            };
            match &result {
                Err(AppendError::NotLeader { .. } | AppendError::Closed) => {
                    tracing::debug!(group, "group log moved to another coordinator; not applied");
                }
                Err(e) => {
                    tracing::error!(group, error = %e, "group log append failed; not applied")
                }
                Ok(()) => {}
            }
            this.applied(p, seq, epoch, result.is_ok().then_some(apply));
            let _ = done.send(result);
        });
        match outcome.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(AppendError::NotLeader { .. } | AppendError::Closed)) => {
                Err(ErrorCode::NotCoordinator)
            }
            _ => Err(ErrorCode::KafkaStorageError),
        }
    }

    /// Marks submission `seq` of partition `p` durable (or failed: `None`) and applies every
    /// change that is now ready, in order; none of them if this node no longer coordinates
    /// the partition as of `epoch` (the next coordinator loads them from the log).
    fn applied(&self, p: usize, seq: u64, epoch: i32, apply: Option<Apply>) {
        let mut queue = self.applies[p].lock().unwrap_or_else(|e| e.into_inner());
        let slot = queue
            .pending
            .get_mut(&seq)
            .expect("a submission is completed once");
        assert!(slot.is_none(), "submission {seq} completed twice");
        *slot = Some(apply);
        while let Some(entry) = queue.pending.first_entry() {
            if entry.get().is_none() {
                break; // an earlier submission is not durable yet
            }
            if let Some(Some(apply)) = entry.remove()
                && self.ownership(p) == Ownership::Owned(epoch)
            {
                apply(&mut self.lock());
            }
        }
        if queue.pending.is_empty() {
            self.applies_drained[p].notify_waiters();
        }
    }

    pub(super) fn entry<'a>(
        &self,
        groups: &'a mut HashMap<String, Entry>,
        id: &str,
    ) -> &'a mut Entry {
        groups.entry(id.to_string()).or_insert_with(|| Entry {
            group: Group::new(id, self.config),
            joins: HashMap::new(),
            syncs: HashMap::new(),
        })
    }

    /// Delivers replies to the requests waiting for them.
    fn deliver(entry: &mut Entry, replies: Vec<Reply>) {
        for reply in replies {
            match reply {
                Reply::Join { member_id, result } => {
                    if let Some(waiter) = entry.joins.remove(&member_id) {
                        let _ = waiter.send(result);
                    }
                }
                Reply::Sync { member_id, result } => {
                    if let Some(waiter) = entry.syncs.remove(&member_id) {
                        let _ = waiter.send(result);
                    }
                }
            }
        }
    }

    /// Persists a group's metadata as it is now (its latest state, under the partition lock so
    /// that records land in the order the state changed), then delivers `replies`.
    async fn persist_then_deliver(&self, group_id: &str, replies: Vec<Reply>) -> bool {
        let p = GroupStore::partition_of(group_id);
        let guard = self.store.lock(p).await;
        let record = {
            let groups = self.lock();
            groups.get(group_id).map(|e| {
                (
                    Key::group(group_id),
                    Value::Group(store::group_value(&e.group)),
                )
            })
        };
        let tickets = match record {
            Some(record) => self.store.submit(p, &[record]).await,
            None => Ok(Vec::new()),
        };
        drop(guard);
        let mut durable = true;
        match tickets {
            Ok(tickets) => {
                for ticket in tickets {
                    if let Err(e) = ticket.wait().await {
                        tracing::error!(group = group_id, error = %e, "group metadata not persisted");
                        durable = false;
                    }
                }
            }
            Err(e) => {
                tracing::error!(group = group_id, error = %e, "group metadata not persisted");
                durable = false;
            }
        }
        let mut groups = self.lock();
        if let Some(entry) = groups.get_mut(group_id) {
            Self::deliver(entry, replies);
        }
        durable
    }

    async fn finish(&self, group_id: &str, effects: Effects) {
        if effects.persist {
            self.persist_then_deliver(group_id, effects.replies).await;
        } else if !effects.replies.is_empty() {
            let mut groups = self.lock();
            if let Some(entry) = groups.get_mut(group_id) {
                Self::deliver(entry, effects.replies);
            }
        }
    }

    /// JoinGroup.
    pub async fn join(&self, group_id: &str, request: JoinRequest) -> JoinResult {
        if let Err(error) = self.coordinates(group_id) {
            return JoinResult {
                error: Some(error),
                generation: -1,
                protocol_type: None,
                protocol_name: None,
                leader: String::new(),
                member_id: request.member_id.clone(),
                members: Vec::new(),
            };
        }
        // A classic member of a group upgraded to the consumer protocol while it was there.
        if let Some(result) = self
            .classic_join_in_consumer_group(group_id, &request)
            .await
        {
            return result;
        }
        let now = self.clock.now_ms();
        let (outcome, effects, waiter) = {
            let mut groups = self.lock();
            let entry = self.entry(&mut groups, group_id);
            if let Some(consumer) = &entry.group.consumer {
                use super::consumer::MigrationPolicy;
                let may_downgrade = matches!(
                    self.config.consumer.migration,
                    MigrationPolicy::Downgrade | MigrationPolicy::Bidirectional
                );
                if !consumer.is_empty() || !may_downgrade {
                    // A classic member cannot join a consumer group with members.
                    return JoinResult {
                        error: Some(ErrorCode::InconsistentGroupProtocol),
                        generation: -1,
                        protocol_type: None,
                        protocol_name: None,
                        leader: String::new(),
                        member_id: request.member_id.clone(),
                        members: Vec::new(),
                    };
                }
                // An empty consumer group becomes a classic one; its offsets stay.
                entry.group.consumer = None;
                entry.group.protocol_type = None;
            }
            let (outcome, effects) = entry.group.join(request, now, |prefix| {
                format!("{prefix}-{}", uuid::Uuid::new_v4())
            });
            let waiter = match &outcome {
                JoinOutcome::Wait(member_id) => {
                    let (tx, rx) = oneshot::channel();
                    // A newer join of the same member replaces an older one still waiting.
                    if let Some(old) = entry.joins.insert(member_id.clone(), tx) {
                        let _ = old.send(JoinResult {
                            error: Some(ErrorCode::RebalanceInProgress),
                            generation: -1,
                            protocol_type: None,
                            protocol_name: None,
                            leader: String::new(),
                            member_id: member_id.clone(),
                            members: Vec::new(),
                        });
                    }
                    Some((member_id.clone(), rx))
                }
                JoinOutcome::Now(_) => None,
            };
            if entry.group.is_empty()
                && entry.group.pending_members.is_empty()
                && entry.group.offsets.is_empty()
                && entry.group.generation == 0
                && matches!(outcome, JoinOutcome::Now(_))
            {
                // A refused first join leaves no trace of the group.
                groups.remove(group_id);
            }
            (outcome, effects, waiter)
        };
        self.finish(group_id, effects).await;
        match (outcome, waiter) {
            (JoinOutcome::Now(result), _) => result,
            (JoinOutcome::Wait(member_id), Some((_, rx))) => {
                rx.await.unwrap_or_else(|_| JoinResult {
                    error: Some(ErrorCode::UnknownMemberId),
                    generation: -1,
                    protocol_type: None,
                    protocol_name: None,
                    leader: String::new(),
                    member_id,
                    members: Vec::new(),
                })
            }
            (JoinOutcome::Wait(_), None) => unreachable!("a waiter is made for every wait"),
        }
    }

    /// SyncGroup.
    pub async fn sync(
        &self,
        group_id: &str,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
        protocol: (Option<&str>, Option<&str>),
        assignments: Vec<(String, Bytes)>,
    ) -> SyncResult {
        if let Err(error) = self.coordinates(group_id) {
            return SyncResult {
                error: Some(error),
                protocol_type: None,
                protocol_name: None,
                assignment: Bytes::new(),
            };
        }
        if let Some(result) = self.classic_sync_in_consumer_group(group_id, member_id, generation) {
            return result;
        }
        let now = self.clock.now_ms();
        let (outcome, effects, waiter) = {
            let mut groups = self.lock();
            let Some(entry) = groups.get_mut(group_id) else {
                return SyncResult {
                    error: Some(ErrorCode::UnknownMemberId),
                    protocol_type: None,
                    protocol_name: None,
                    assignment: Bytes::new(),
                };
            };
            let (outcome, effects) =
                entry
                    .group
                    .sync(member_id, instance, generation, protocol, assignments, now);
            let waiter = match &outcome {
                SyncOutcome::Wait(member_id) => {
                    let (tx, rx) = oneshot::channel();
                    entry.syncs.insert(member_id.clone(), tx);
                    Some(rx)
                }
                SyncOutcome::Now(_) => None,
            };
            (outcome, effects, waiter)
        };
        match (outcome, waiter) {
            (SyncOutcome::Now(result), _) => {
                // The leader's answer waits for the assignment to be persisted, like the others.
                self.finish(group_id, effects).await;
                result
            }
            (SyncOutcome::Wait(_), Some(rx)) => {
                self.finish(group_id, effects).await;
                rx.await.unwrap_or(SyncResult {
                    error: Some(ErrorCode::RebalanceInProgress),
                    protocol_type: None,
                    protocol_name: None,
                    assignment: Bytes::new(),
                })
            }
            (SyncOutcome::Wait(_), None) => unreachable!("a waiter is made for every wait"),
        }
    }

    /// Heartbeat.
    ///
    /// # Errors
    ///
    /// The error code to answer with.
    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> Result<(), ErrorCode> {
        self.coordinates(group_id)?;
        if let Some(result) =
            self.classic_heartbeat_in_consumer_group(group_id, member_id, generation)
        {
            return result;
        }
        let now = self.clock.now_ms();
        let mut groups = self.lock();
        let entry = groups.get_mut(group_id).ok_or(ErrorCode::UnknownMemberId)?;
        entry.group.heartbeat(member_id, instance, generation, now)
    }

    /// LeaveGroup for each (member id, instance id); an error code per member.
    pub async fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Option<ErrorCode>>, ErrorCode> {
        self.coordinates(group_id)?;
        if let Some(results) = self
            .classic_leave_in_consumer_group(group_id, members)
            .await
        {
            return Ok(results);
        }
        let now = self.clock.now_ms();
        let (results, effects) = {
            let mut groups = self.lock();
            let entry = groups.get_mut(group_id).ok_or(ErrorCode::UnknownMemberId)?;
            let mut effects = Effects::default();
            let results = members
                .iter()
                .map(|(member_id, instance)| {
                    entry
                        .group
                        .leave(member_id, instance.as_deref(), now, &mut effects)
                        .err()
                })
                .collect();
            (results, effects)
        };
        self.finish(group_id, effects).await;
        Ok(results)
    }

    /// OffsetCommit: checks membership, then appends the offsets and answers once they are
    /// durable; OffsetFetch sees them from then on.
    ///
    /// # Errors
    ///
    /// The error code for every partition of the request.
    pub async fn commit(
        self: &Arc<Self>,
        group_id: &str,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
        offsets: Vec<OffsetCommit>,
    ) -> Result<(), ErrorCode> {
        self.coordinates(group_id)?;
        {
            let mut groups = self.lock();
            match groups.get(group_id) {
                Some(entry) => entry.group.check_commit(member_id, instance, generation)?,
                None if generation < 0 => {
                    self.entry(&mut groups, group_id);
                }
                None => return Err(ErrorCode::IllegalGeneration),
            }
        }
        if offsets.is_empty() {
            return Ok(());
        }
        let records: Vec<(Key, Value)> = offsets
            .iter()
            .map(|o| {
                (
                    Key::offset(group_id, &o.topic, o.partition),
                    Value::Offset((&o.committed).into()),
                )
            })
            .collect();
        let (this, id) = (self.clone(), group_id.to_string());
        let apply: Apply = Box::new(move |groups| {
            let entry = this.entry(groups, &id);
            for o in offsets {
                entry
                    .group
                    .offsets
                    .insert((o.topic, o.partition), o.committed);
            }
        });
        self.submit_and_apply(group_id, records, apply).await
    }

    /// Committed offsets of a group: all, or those of the given topics' partitions.
    pub fn offsets(
        &self,
        group_id: &str,
    ) -> Option<std::collections::BTreeMap<(String, i32), CommittedOffset>> {
        self.lock().get(group_id).map(|e| e.group.offsets.clone())
    }

    /// A copy of a group's state (DescribeGroups, status pages).
    pub fn describe(&self, group_id: &str) -> Option<Group> {
        self.lock().get(group_id).map(|e| e.group.clone())
    }

    /// Every group: id, protocol type, Kafka's name of its state, and its type ("classic" or
    /// "consumer").
    pub fn list(&self) -> Vec<(String, Option<String>, &'static str, &'static str)> {
        let mut out: Vec<_> = self
            .lock()
            .values()
            .map(|e| {
                (
                    e.group.id.clone(),
                    e.group.protocol_type.clone(),
                    e.group.state_name(),
                    e.group.group_type(),
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// For status pages: per group, its type, state, members and epoch (generation, or a
    /// consumer group's group epoch).
    pub fn summaries(&self) -> Vec<GroupSummary> {
        let mut out: Vec<GroupSummary> = self
            .lock()
            .values()
            .map(|e| GroupSummary {
                id: e.group.id.clone(),
                kind: e.group.group_type(),
                state: e.group.state_name(),
                members: e
                    .group
                    .consumer
                    .as_ref()
                    .map_or(e.group.members.len(), |c| c.members.len()),
                epoch: e
                    .group
                    .consumer
                    .as_ref()
                    .map_or(e.group.generation, |c| c.group_epoch),
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// DeleteGroups for one group: only an empty one. Its offsets and the group go once the
    /// tombstones are durable.
    ///
    /// # Errors
    ///
    /// GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP, or a storage failure.
    pub async fn delete_group(self: &Arc<Self>, group_id: &str) -> Result<(), ErrorCode> {
        self.coordinates(group_id)?;
        let records = {
            let groups = self.lock();
            let entry = groups.get(group_id).ok_or(ErrorCode::GroupIdNotFound)?;
            if !entry.group.is_empty() {
                return Err(ErrorCode::NonEmptyGroup);
            }
            let mut records: Vec<(Key, Value)> = entry
                .group
                .offsets
                .keys()
                .map(|(t, p)| (Key::offset(group_id, t, *p), Value::Tombstone))
                .collect();
            records.push((Key::group(group_id), Value::Tombstone));
            records
        };
        let id = group_id.to_string();
        let apply: Apply = Box::new(move |groups| {
            // As replay does: the group's offsets and metadata are gone. A member that joined
            // meanwhile (its record follows these in the log) keeps the group alive.
            if let Some(entry) = groups.get_mut(&id) {
                entry.group.offsets.clear();
                if entry.group.is_empty() && entry.group.pending_members.is_empty() {
                    entry.group.state = GroupState::Dead;
                    groups.remove(&id);
                }
            }
        });
        self.submit_and_apply(group_id, records, apply).await
    }

    /// OffsetDelete: removes committed offsets of topics the group does not subscribe to, once
    /// the tombstones are durable.
    ///
    /// # Errors
    ///
    /// GROUP_ID_NOT_FOUND for the whole request; per partition, GROUP_SUBSCRIBED_TO_TOPIC.
    pub async fn delete_offsets(
        self: &Arc<Self>,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<Option<ErrorCode>>, ErrorCode> {
        self.coordinates(group_id)?;
        let (results, deleted) = {
            let groups = self.lock();
            let entry = groups.get(group_id).ok_or(ErrorCode::GroupIdNotFound)?;
            let subscribed = entry.group.subscribed_topics();
            let mut deleted = Vec::new();
            let results = partitions
                .iter()
                .map(|(topic, partition)| {
                    if subscribed.contains(topic) {
                        return Some(ErrorCode::GroupSubscribedToTopic);
                    }
                    if entry
                        .group
                        .offsets
                        .contains_key(&(topic.clone(), *partition))
                    {
                        deleted.push((topic.clone(), *partition));
                    }
                    None
                })
                .collect();
            (results, deleted)
        };
        if deleted.is_empty() {
            return Ok(results);
        }
        let records = deleted
            .iter()
            .map(|(topic, partition)| (Key::offset(group_id, topic, *partition), Value::Tombstone))
            .collect();
        let id = group_id.to_string();
        let apply: Apply = Box::new(move |groups| {
            if let Some(entry) = groups.get_mut(&id) {
                for key in deleted {
                    entry.group.offsets.remove(&key);
                }
            }
        });
        self.submit_and_apply(group_id, records, apply).await?;
        Ok(results)
    }

    /// Expires sessions and completes overdue rebalances.
    pub async fn tick(&self) {
        let now = self.clock.now_ms();
        let changed: Vec<(String, Effects)> = {
            let mut groups = self.lock();
            groups
                .iter_mut()
                .filter(|(_, e)| {
                    !matches!(e.group.state, GroupState::Empty | GroupState::Dead)
                        || !e.group.pending_members.is_empty()
                })
                .map(|(id, e)| (id.clone(), e.group.tick(now)))
                .filter(|(_, effects)| effects.persist || !effects.replies.is_empty())
                .collect()
        };
        for (group_id, effects) in changed {
            self.finish(&group_id, effects).await;
        }
        self.tick_consumer_groups().await;
    }

    /// Compacts partitions of the group log that outgrew the threshold.
    pub async fn compact_if_needed(&self) {
        if self.compact_bytes == 0 {
            return;
        }
        for p in 0..store::GROUP_LOG_PARTITIONS {
            if self.store.size_bytes(p) < self.compact_bytes {
                continue;
            }
            let Some(replica) = self.store.replica(p) else {
                continue;
            };
            if let Some(raft) = replica.as_raft() {
                // Every replica snapshots its live records and purges its own log.
                match raft.compact_log(1).await {
                    Ok(true) => {
                        tracing::info!(partition = p, "compacted group log (Raft snapshot)")
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(partition = p, error = %e, "group log compaction failed; it will be retried")
                    }
                }
                continue;
            }
            if !matches!(self.ownership(p), Ownership::Owned(_)) {
                continue;
            }
            let guard = self.store.lock(p).await;
            // The snapshot is taken from memory, which must hold every record before it: wait
            // for the submissions still on their way to be applied (no new ones can start
            // while the partition is locked).
            loop {
                let drained = self.applies_drained[p].notified();
                let empty = self.applies[p]
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pending
                    .is_empty();
                if empty {
                    break;
                }
                drained.await;
            }
            let live = {
                let groups = self.lock();
                let txns = self.txns();
                let pending = self.pending();
                store::live_records(
                    p,
                    groups.iter().map(|(id, e)| (id, &e.group)),
                    txns.iter(),
                    pending.iter(),
                )
            };
            if let Err(e) = self.store.compact(p, &live).await {
                tracing::warn!(partition = p, error = %e, "group log compaction failed; it will be retried");
            }
            drop(guard);
        }
    }

    /// Bytes of records in the group log (what compaction bounds).
    pub fn log_bytes(&self) -> u64 {
        (0..store::GROUP_LOG_PARTITIONS)
            .map(|p| self.store.size_bytes(p))
            .sum()
    }
}

/// Ticks the coordinator until `stop` (taking up and letting go of group-log partitions as
/// their leadership moves), compacting the log about once a minute.
pub(crate) async fn run(coordinator: Arc<GroupCoordinator>, mut stop: watch::Receiver<bool>) {
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            () = tokio::time::sleep(TICK) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        coordinator.refresh_ownership().await;
        coordinator.tick().await;
        ticks += 1;
        if ticks.is_multiple_of(600) {
            coordinator.compact_if_needed().await;
        }
    }
}
