//! The transaction coordinator's shell: each request reads a transactional id's state, runs
//! a transition of [`super::state`], records the new state in the group log (answered once
//! durable), and, when a transaction ends, writes its markers.
//!
//! Markers go to each partition's leader: here through [`PartitionView::write_marker`], on
//! another node through a [`NodeRequest::WriteMarkers`]. A `Prepare*` state is durable before
//! the first marker is written, so whoever coordinates the id next (after a restart or a
//! leader change) finds it and writes them again; a partition that already has its marker
//! gets a second one, which changes nothing (the producer's transaction there is closed).
//! Only once every partition has one is `Complete*` recorded.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::state::{self, EndOutcome, InitOutcome, InitRequest, TxnMeta, TxnStatus};
use crate::controller::{NodeRequest, NodeResponse};
use crate::group::store::{GROUP_TOPIC, GroupStore};
use crate::log::AppendError;
use crate::node::Node;
use crate::partition::PartitionView;
use crate::protocol::error_code::ErrorCode;

/// How long a failed marker write waits before the next attempt.
const MARKER_RETRY: Duration = Duration::from_millis(200);
/// How long one marker request to another node may take.
const MARKER_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the coordinator looks over its ids (timeouts, expiry, markers a previous
/// coordinator left): seconds matter here, not the group coordinator's 100 ms.
const TICK: Duration = Duration::from_secs(1);

/// One marker to write: the partition, the producer, the outcome.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MarkerRequest {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The producer whose transaction ends.
    pub producer_id: i64,
    /// Its epoch (the coordinator's, which may have fenced the producer).
    pub producer_epoch: i16,
    /// COMMIT (true) or ABORT.
    pub commit: bool,
    /// The coordinator's epoch.
    pub coordinator_epoch: i32,
}

/// The transaction coordinator of a node.
#[derive(Debug, Default)]
pub struct TxnCoordinator {
    /// Serialises the read-decide-record steps of every transactional id here.
    changes: tokio::sync::Mutex<()>,
    /// Transactional ids whose markers a task is writing.
    writing: Mutex<HashSet<String>>,
}

/// InitProducerId with a transactional id: its producer id and the epoch to use.
///
/// # Errors
///
/// The code to answer with (see [`state::init_producer_id`]; `INVALID_TRANSACTION_TIMEOUT`
/// for a timeout outside (0, `transaction_max_timeout_ms`]; `NOT_COORDINATOR` /
/// `COORDINATOR_LOAD_IN_PROGRESS` while another node coordinates the id or this one loads it).
pub async fn init_producer_id(
    node: &Arc<Node>,
    transactional_id: &str,
    request: InitRequest,
) -> Result<(i64, i16), ErrorCode> {
    if request.timeout_ms <= 0 || request.timeout_ms > node.config.transaction_max_timeout_ms {
        return Err(ErrorCode::InvalidTransactionTimeout);
    }
    node.groups.coordinates(transactional_id)?;
    let _change = node.txns.changes.lock().await;
    let current = node.groups.txn(transactional_id);
    // A producer id is reserved only when one is needed (a new id, or epochs run out).
    let mut spare = match &current {
        Some(meta) if meta.producer_epoch < i16::MAX - 1 => None,
        _ => Some(node.allocate_producer_id().await.map_err(|e| {
            tracing::warn!(error = %e, "could not reserve a producer id");
            ErrorCode::CoordinatorNotAvailable
        })?),
    };
    let now = node.clock.now_ms();
    let outcome = state::init_producer_id(current.as_ref(), request, now, &mut || spare.take())?;
    match outcome {
        InitOutcome::Ready(meta) => {
            let answer = (meta.producer_id, meta.producer_epoch);
            node.groups.save_txn(transactional_id, meta).await?;
            tracing::debug!(
                transactional_id,
                producer_id = answer.0,
                epoch = answer.1,
                "transactional producer initialized"
            );
            Ok(answer)
        }
        InitOutcome::AbortFirst(meta) => {
            tracing::info!(
                transactional_id,
                producer_id = meta.producer_id,
                epoch = meta.producer_epoch,
                "a new producer instance fences the old one: aborting its open transaction"
            );
            node.groups.save_txn(transactional_id, meta).await?;
            spawn_markers(node, transactional_id);
            Err(ErrorCode::ConcurrentTransactions)
        }
    }
}

/// The state of a transactional id this node coordinates, read under the lock that
/// serialises changes (held while the caller decides and records the next state).
///
/// # Errors
///
/// `NOT_COORDINATOR` / `COORDINATOR_LOAD_IN_PROGRESS`; `INVALID_PRODUCER_ID_MAPPING` for an
/// id InitProducerId never set up.
async fn known<'a>(
    node: &'a Node,
    transactional_id: &str,
) -> Result<(tokio::sync::MutexGuard<'a, ()>, TxnMeta), ErrorCode> {
    node.groups.coordinates(transactional_id)?;
    let guard = node.txns.changes.lock().await;
    let current = node
        .groups
        .txn(transactional_id)
        .ok_or(ErrorCode::InvalidProducerIdMapping)?;
    Ok((guard, current))
}

/// AddPartitionsToTxn: the partitions join the producer's open transaction.
///
/// # Errors
///
/// The code for every partition (see [`state::add_partitions`]).
pub async fn add_partitions(
    node: &Arc<Node>,
    transactional_id: &str,
    producer_id: i64,
    epoch: i16,
    partitions: &[(String, i32)],
) -> Result<(), ErrorCode> {
    let (_change, current) = known(node, transactional_id).await?;
    let now = node.clock.now_ms();
    if let Some(next) = state::add_partitions(&current, producer_id, epoch, partitions, now)? {
        node.groups.save_txn(transactional_id, next).await?;
    }
    Ok(())
}

/// AddOffsetsToTxn: the group's offsets committed in this transaction (TxnOffsetCommit, to
/// the group's coordinator) take effect with it. The group's group-log partition joins the
/// transaction like a data partition, and gets its marker: the group coordinator then makes
/// the pending offsets committed, or drops them.
///
/// # Errors
///
/// As [`add_partitions`]; `INVALID_GROUP_ID` for an empty group id.
pub async fn add_offsets(
    node: &Arc<Node>,
    transactional_id: &str,
    producer_id: i64,
    epoch: i16,
    group_id: &str,
) -> Result<(), ErrorCode> {
    if group_id.is_empty() {
        return Err(ErrorCode::InvalidGroupId);
    }
    let partition = i32::try_from(GroupStore::partition_of(group_id)).unwrap_or(0);
    let offsets = [(GROUP_TOPIC.to_string(), partition)];
    add_partitions(node, transactional_id, producer_id, epoch, &offsets).await
}

/// EndTxn: the open transaction commits or aborts. Answered once the decision is durable;
/// the markers follow (calls that would start something new wait for them).
///
/// # Errors
///
/// See [`state::end_txn`].
pub async fn end_txn(
    node: &Arc<Node>,
    transactional_id: &str,
    producer_id: i64,
    epoch: i16,
    commit: bool,
) -> Result<(), ErrorCode> {
    let (_change, current) = known(node, transactional_id).await?;
    let now = node.clock.now_ms();
    match state::end_txn(&current, producer_id, epoch, commit, now)? {
        EndOutcome::Done => Ok(()),
        EndOutcome::Prepare(next) => {
            node.groups.save_txn(transactional_id, next).await?;
            spawn_markers(node, transactional_id);
            Ok(())
        }
    }
}

/// One round over the transactional ids this node coordinates: markers for every decided
/// transaction without a task writing them (a new coordinator finds those), and an abort for
/// every transaction open longer than its timeout.
pub async fn tick(node: &Arc<Node>) {
    let now = node.clock.now_ms();
    let expiration = node.config.transactional_id_expiration_ms;
    for (id, meta) in node.groups.owned_txns() {
        if meta.status.preparing() {
            spawn_markers(node, &id);
            continue;
        }
        if state::expired(&meta, now, expiration) {
            let _change = node.txns.changes.lock().await;
            let still = node
                .groups
                .txn(&id)
                .is_some_and(|m| state::expired(&m, node.clock.now_ms(), expiration));
            if still && node.groups.forget_txn(&id).await.is_ok() {
                tracing::info!(transactional_id = %id, producer_id = meta.producer_id, "transactional id expired: forgotten");
            }
            continue;
        }
        if state::timed_out(&meta, now).is_none() {
            continue;
        }
        let _change = node.txns.changes.lock().await;
        // Decided again under the lock: the producer may have ended it meanwhile.
        let Some(current) = node.groups.txn(&id) else {
            continue;
        };
        let Some(aborting) = state::timed_out(&current, node.clock.now_ms()) else {
            continue;
        };
        tracing::info!(transactional_id = %id, producer_id = current.producer_id, timeout_ms = current.timeout_ms, "transaction timed out: aborting it");
        if node.groups.save_txn(&id, aborting).await.is_ok() {
            spawn_markers(node, &id);
        }
    }
}

/// Starts writing the markers of `transactional_id`'s decided transaction, unless a task
/// already is.
fn spawn_markers(node: &Arc<Node>, transactional_id: &str) {
    if !node
        .txns
        .writing
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(transactional_id.to_string())
    {
        return;
    }
    let (node, id) = (node.clone(), transactional_id.to_string());
    tokio::spawn(async move {
        complete(&node, &id).await;
        node.txns
            .writing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    });
}

/// Writes every marker of the decided transaction (retrying until each partition has one,
/// while this node coordinates the id), then records the transaction complete.
async fn complete(node: &Arc<Node>, transactional_id: &str) {
    loop {
        let Some(epoch) = node.groups.coordinator_epoch(transactional_id) else {
            return; // The next coordinator writes them.
        };
        let Some(meta) = node.groups.txn(transactional_id) else {
            return;
        };
        if !meta.status.preparing() {
            return;
        }
        let commit = meta.status == TxnStatus::PrepareCommit;
        let markers: Vec<MarkerRequest> = meta
            .partitions
            .iter()
            .map(|(topic, partition)| MarkerRequest {
                topic: topic.clone(),
                partition: *partition,
                producer_id: meta.producer_id,
                producer_epoch: meta.producer_epoch,
                commit,
                coordinator_epoch: epoch,
            })
            .collect();
        let results =
            futures::future::join_all(markers.iter().map(|m| write_marker(node, m))).await;
        let failed: Vec<String> = results.into_iter().filter_map(Result::err).collect();
        if failed.is_empty() {
            let _change = node.txns.changes.lock().await;
            let current = node.groups.txn(transactional_id);
            if current.as_ref() != Some(&meta) {
                continue; // Changed meanwhile (a fail-over and back): look again.
            }
            let done = state::completed(&meta, node.clock.now_ms());
            match node.groups.save_txn(transactional_id, done).await {
                Ok(()) => {
                    tracing::debug!(
                        transactional_id,
                        commit,
                        partitions = markers.len(),
                        "transaction complete"
                    );
                    return;
                }
                Err(e) => {
                    tracing::warn!(transactional_id, error = %e, "could not record a complete transaction; retrying")
                }
            }
        } else {
            tracing::debug!(transactional_id, failed = ?failed, "transaction markers not written yet; retrying");
        }
        tokio::time::sleep(MARKER_RETRY).await;
    }
}

/// Writes one marker on the partition's leader: this node, or the one the claims name.
async fn write_marker(node: &Arc<Node>, marker: &MarkerRequest) -> Result<(), String> {
    match write_local(node, marker).await {
        Err(LocalMarker::Elsewhere) => {}
        other => return other.map_err(|e| e.to_string()),
    }
    let leader = crate::handlers::leader_hint::leader_of(node, &marker.topic, marker.partition)
        .ok_or_else(|| format!("{}/{}: no leader known", marker.topic, marker.partition))?;
    let request = NodeRequest::WriteMarkers {
        markers: vec![marker.clone()],
    };
    let bytes = serde_json::to_vec(&request).expect("requests serialise");
    let answer = node
        .cluster
        .transport
        .node_request(leader.leader as u64, &bytes, MARKER_TIMEOUT)
        .await
        .map_err(|e| format!("node {}: {e}", leader.leader))?;
    match serde_json::from_slice::<NodeResponse>(&answer) {
        Ok(NodeResponse::Done { .. }) => Ok(()),
        Ok(NodeResponse::Error { message }) => Err(message),
        Ok(other) => Err(format!("unexpected answer {other:?}")),
        Err(e) => Err(format!("undecodable answer: {e}")),
    }
}

/// Why a marker was not written here.
#[derive(Debug, thiserror::Error)]
pub enum LocalMarker {
    /// This node does not lead the partition.
    #[error("not the partition's leader here")]
    Elsewhere,
    /// The append failed.
    #[error("{0}")]
    Failed(String),
}

/// Writes a marker on a partition this node leads. A partition that no longer exists (its
/// topic deleted) needs none.
///
/// # Errors
///
/// [`LocalMarker::Elsewhere`] when this node does not lead it; the append's failure.
pub async fn write_local(node: &Node, marker: &MarkerRequest) -> Result<(), LocalMarker> {
    if marker.topic == GROUP_TOPIC {
        // Offsets committed in the transaction: the group coordinator settles them.
        let p = usize::try_from(marker.partition).unwrap_or(usize::MAX);
        return match node
            .groups
            .end_txn_offsets(p, marker.producer_id, marker.commit)
            .await
        {
            Ok(()) => Ok(()),
            Err(ErrorCode::NotCoordinator) => Err(LocalMarker::Elsewhere),
            Err(e) => Err(LocalMarker::Failed(format!("group log {p}: {e}"))),
        };
    }
    let view = match PartitionView::find_leader(node, &marker.topic, marker.partition) {
        Ok(view) => view,
        Err(ErrorCode::UnknownTopicOrPartition) => return Ok(()),
        Err(e) => {
            tracing::debug!(topic = %marker.topic, partition = marker.partition, error = %e, "marker: not written here");
            return Err(LocalMarker::Elsewhere);
        }
    };
    let batch = Bytes::from(silt_index::record::encode_txn_marker(
        0,
        marker.producer_id,
        marker.producer_epoch,
        marker.coordinator_epoch,
        crate::log::producer_state::TxnMarker::of(i16::from(marker.commit))
            .map_or(0, |m| m.control_type()),
        node.clock.now_ms(),
    ));
    match view.write_marker(batch).await {
        Ok(()) => Ok(()),
        Err(AppendError::NotLeader { leader }) => {
            tracing::debug!(topic = %marker.topic, partition = marker.partition, ?leader, "marker: the partition's leader moved");
            Err(LocalMarker::Elsewhere)
        }
        Err(e) => Err(LocalMarker::Failed(format!(
            "{}/{}: {e}",
            marker.topic, marker.partition
        ))),
    }
}

/// The transactional ids this node coordinates, for ListTransactions and the CLI.
pub fn list(node: &Node) -> Vec<(String, TxnMeta)> {
    let mut out = node.groups.owned_txns();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Runs the coordinator's ticks until `stop`.
pub(crate) async fn run(node: Arc<Node>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(TICK) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        tick(&node).await;
    }
}
