//! Moving a partition's replicas, driven by the partition's leader.
//!
//! The controller records where a partition goes (`Reassign`: its placement gets a
//! `target`). Every node in the target opens a replica of it, empty and outside the group.
//! The leader then adds each new replica as a Raft learner, waits until every one holds the
//! whole log (a learner far behind a purged log gets a snapshot), changes the group's voters
//! to the target (joint consensus, so a majority of the old and of the new agree on every
//! step), and tells the controller the move is done (`FinishReassign`), after which the
//! nodes left out delete their copies. A leader that is moved out steps down once the new
//! voters take over. If leadership changes midway, the next leader picks the move up where
//! it is: every step is idempotent.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;
use openraft::{EmptyNode, ServerState};

use crate::controller::Command;
use crate::node::Node;
use crate::raft::{GroupId, NodeId, Raft};
use crate::replica::raft::RaftReplica;

/// How often a mover says how far its learners are.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The moves this node's leaders are driving.
#[derive(Debug, Default)]
pub struct Movers {
    running: Mutex<HashSet<GroupId>>,
}

/// Starts a mover for every partition this node leads that the controller wants moved.
pub fn tick(node: &Arc<Node>) {
    let state = node.cluster.controller.state();
    for topic in node.topics.all() {
        let Some(meta) = state.topics.get(&topic.name).filter(|m| m.id == topic.id) else {
            continue;
        };
        for partition in topic.partitions() {
            let Some(placement) = meta.partitions.get(partition.index as usize) else {
                continue;
            };
            let Some(target) = placement.target.clone() else {
                continue;
            };
            let Ok(replica) = &partition.replica else {
                continue;
            };
            if replica.as_raft().is_none() {
                continue;
            }
            if !replica.leadership().is_leader {
                continue;
            }
            let group = placement.group;
            let movers = &node.cluster.movers;
            if !movers
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(group)
            {
                continue;
            }
            let (node, replica, name, index) = (
                node.clone(),
                replica.clone(),
                topic.name.clone(),
                partition.index,
            );
            tokio::spawn(async move {
                let Some(raft) = replica.as_raft() else {
                    return;
                };
                if let Err(e) = move_partition(&node, raft, &name, index, &target).await {
                    tracing::warn!(topic = %name, partition = index, error = %e, "moving the partition paused; retried by its leader");
                }
                node.cluster
                    .movers
                    .running
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&group);
            });
        }
    }
}

/// How many entries each of `nodes` lacks of the leader's log (`None`: unknown yet).
fn lags(raft: &Raft, nodes: &BTreeSet<NodeId>) -> Vec<(NodeId, Option<u64>)> {
    let metrics = raft.metrics();
    let metrics = metrics.borrow_watched();
    let last = metrics.last_log_index.unwrap_or(0);
    nodes
        .iter()
        .map(|n| {
            let matched = metrics
                .replication
                .as_ref()
                .and_then(|r| r.get(n))
                .and_then(|m| m.as_ref().map(|m| m.index));
            (*n, matched.map(|m| last.saturating_sub(m)))
        })
        .collect()
}

/// Drives one move to its end (see the module docs).
async fn move_partition(
    node: &Node,
    replica: &RaftReplica,
    name: &str,
    index: i32,
    target: &[i32],
) -> Result<(), String> {
    let raft = &replica.handle().raft;
    // Membership changes are writes: openraft takes them only within the leader's lease,
    // which an idle group lets lapse (see `cluster::pulse`).
    let renew = || async {
        replica
            .renew_lease()
            .await
            .map_err(|e| format!("renewing the leader's lease: {e}"))
    };
    let target: BTreeSet<NodeId> = target.iter().map(|n| *n as NodeId).collect();
    let voters: BTreeSet<NodeId> = raft
        .metrics()
        .borrow_watched()
        .membership_config
        .membership()
        .voter_ids()
        .collect();
    let joining: BTreeSet<NodeId> = target.difference(&voters).copied().collect();
    tracing::info!(topic = name, partition = index, from = ?voters, to = ?target, "moving partition");
    for learner in &joining {
        renew().await?;
        raft.add_learner(*learner, EmptyNode {}, false)
            .await
            .map_err(|e| format!("adding learner {learner}: {e}"))?;
    }
    // Wait until every new replica holds the whole log.
    let started = Instant::now();
    let mut said = Instant::now();
    loop {
        let leading = raft.metrics().borrow_watched().state == ServerState::Leader;
        if !leading {
            return Err("no longer the leader".into());
        }
        let lags = lags(raft, &joining);
        if lags.iter().all(|(_, lag)| *lag == Some(0)) {
            break;
        }
        if said.elapsed() >= PROGRESS_EVERY {
            said = Instant::now();
            tracing::info!(topic = name, partition = index, lags = ?lags, waited_secs = started.elapsed().as_secs(), "new replicas catching up");
        }
        let mut changes = raft.metrics();
        let _ = tokio::time::timeout(Duration::from_millis(500), changes.changed()).await;
    }
    renew().await?;
    raft.change_membership(target.clone(), false)
        .await
        .map_err(|e| format!("changing the voters to {target:?}: {e}"))?;
    node.cluster
        .propose(Command::FinishReassign {
            name: name.to_string(),
            partition: index,
        })
        .await
        .map_err(|e| format!("recording the move: {e}"))?;
    tracing::info!(topic = name, partition = index, to = ?target, took_ms = started.elapsed().as_millis() as u64, "moved partition");
    Ok(())
}
