//! Operator actions on a cluster, as the admin HTTP API exposes them: move a partition,
//! hand a partition's leadership to another replica, decommission a broker and forget it.
//!
//! Any node takes them: a move or a decommission is a controller proposal (the partitions'
//! leaders then carry the moves out, see [`super::reassign`]); a leadership transfer goes to
//! the partition's current leader.

use std::collections::BTreeMap;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use serde::Serialize;

use super::leaders;
use crate::controller::{Command, NodeRequest, NodeResponse, Refusal, Reply};
use crate::node::Node;
use crate::raft::NodeId;

/// How long a leadership transfer waits for the new leader.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an operation was refused, for the HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// No such topic, partition or broker.
    #[error("{0}")]
    NotFound(String),
    /// The request cannot be done as asked (named).
    #[error("{0}")]
    Invalid(String),
    /// The cluster could not do it now (no leader, the controller did not answer).
    #[error("{0}")]
    Unavailable(String),
}

fn unavailable(e: impl std::fmt::Display) -> OpError {
    OpError::Unavailable(e.to_string())
}

/// Turns a controller reply into the operation's outcome.
fn done(reply: Reply) -> Result<(), OpError> {
    match reply {
        Reply::Done => Ok(()),
        Reply::Refused {
            refusal: Refusal::Unknown,
            message,
        } => Err(OpError::NotFound(message)),
        Reply::Refused { message, .. } => Err(OpError::Invalid(message)),
        other => Err(OpError::Unavailable(format!(
            "unexpected controller reply {other:?}"
        ))),
    }
}

/// Starts moving `topic`/`partition` to the brokers `replicas` (the first is the preferred
/// leader).
///
/// # Errors
///
/// [`OpError`] naming what is wrong: no such partition, a partition of one replica (a plain
/// log, not a Raft group, so it cannot move), a move already under way, an unknown broker.
pub async fn reassign(
    node: &Node,
    topic: &str,
    partition: i32,
    replicas: Vec<i32>,
) -> Result<(), OpError> {
    let state = node.cluster.controller.state();
    let meta = state
        .topics
        .get(topic)
        .ok_or_else(|| OpError::NotFound(format!("no topic '{topic}'")))?;
    let placement = meta
        .partitions
        .get(usize::try_from(partition).unwrap_or(usize::MAX))
        .ok_or_else(|| OpError::NotFound(format!("'{topic}' has no partition {partition}")))?;
    if placement.replicas.len() == 1 {
        return Err(OpError::Invalid(format!(
            "{topic}/{partition} has one replica: it is a plain log, not a Raft group, and cannot move (create topics with a replication factor of 2 or more to move them)"
        )));
    }
    if let Some(draining) = replicas
        .iter()
        .find(|b| state.brokers.get(b).is_some_and(|b| b.draining))
    {
        return Err(OpError::Invalid(format!(
            "broker {draining} is being decommissioned"
        )));
    }
    let reply = node
        .cluster
        .propose(Command::Reassign {
            name: topic.to_string(),
            partition,
            replicas,
        })
        .await
        .map_err(unavailable)?;
    done(reply)
}

/// Hands the leadership of `topic`/`partition` to replica `to` and waits until it leads.
///
/// # Errors
///
/// [`OpError`]: no such partition, `to` is not one of its replicas, or the leader did not
/// change in time.
pub async fn transfer_leadership(
    node: &Node,
    topic: &str,
    partition: i32,
    to: i32,
) -> Result<(), OpError> {
    let state = node.cluster.controller.state();
    let placement = state
        .topics
        .get(topic)
        .and_then(|t| t.partitions.get(usize::try_from(partition).ok()?))
        .ok_or_else(|| OpError::NotFound(format!("no partition {topic}/{partition}")))?;
    if !placement.replicas.contains(&to) {
        return Err(OpError::Invalid(format!(
            "broker {to} holds no replica of {topic}/{partition} (its replicas: {:?})",
            placement.replicas
        )));
    }
    let group = placement.group;
    let current = || {
        let local = node.topics.get(topic)?;
        let p = local.partition(partition)?;
        leaders::current(node, &p, Some(group))
    };
    if current().is_some_and(|c| c.leader == to) {
        return Ok(());
    }
    let leader = current()
        .map(|c| c.leader)
        .ok_or_else(|| OpError::Unavailable(format!("{topic}/{partition} has no leader now")))?;
    if leader == node.config.node_id {
        transfer_here(&node.cluster, group, to).await?;
    } else {
        let request = serde_json::to_vec(&NodeRequest::TransferLeadership { group, to })
            .expect("requests serialise");
        let answer = node
            .cluster
            .transport
            .node_request(leader as NodeId, &request, TRANSFER_TIMEOUT)
            .await
            .map_err(unavailable)?;
        match serde_json::from_slice::<NodeResponse>(&answer) {
            Ok(NodeResponse::Done { .. }) => {}
            Ok(NodeResponse::Error { message }) => return Err(OpError::Invalid(message)),
            Ok(other) => return Err(OpError::Unavailable(format!("{other:?}"))),
            Err(e) => return Err(unavailable(e)),
        }
    }
    let deadline = tokio::time::Instant::now() + TRANSFER_TIMEOUT;
    while current().is_none_or(|c| c.leader != to) {
        if tokio::time::Instant::now() >= deadline {
            return Err(OpError::Unavailable(format!(
                "{topic}/{partition}: broker {to} did not take the leadership in {}s",
                TRANSFER_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Hands the leadership of Raft group `group`, which this node leads, to `to`.
///
/// # Errors
///
/// [`OpError`] when this node does not lead it.
pub async fn transfer_here(cluster: &super::Cluster, group: u64, to: i32) -> Result<(), OpError> {
    let raft = cluster
        .groups
        .get(group)
        .ok_or_else(|| OpError::NotFound(format!("no Raft group {group} on this node")))?;
    if raft.metrics().borrow_watched().state != openraft::ServerState::Leader {
        return Err(OpError::Invalid(format!(
            "node {} does not lead Raft group {group}",
            cluster.node_id
        )));
    }
    // An upload in flight finishes first (bounded).
    let _hand_over = cluster
        .pulse
        .uploads
        .hand_over(group, super::uploads::HAND_OVER_WAIT)
        .await;
    raft.trigger()
        .transfer_leader(to as NodeId)
        .await
        .map_err(unavailable)
}

/// What a decommission started.
#[derive(Debug, Serialize)]
pub struct Decommission {
    /// The broker.
    pub broker: i32,
    /// Partitions being moved off it: "topic/partition" -> new replicas.
    pub moving: BTreeMap<String, Vec<i32>>,
}

/// Takes broker `id` out of service: no new replicas go to it, and every partition it holds
/// moves to another broker (the one holding fewest replicas that the partition lacks).
///
/// # Errors
///
/// [`OpError`]: no such broker, or too few other brokers to hold its partitions' replicas.
pub async fn decommission(node: &Node, id: i32) -> Result<Decommission, OpError> {
    let state = node.cluster.controller.state();
    if !state.brokers.contains_key(&id) {
        return Err(OpError::NotFound(format!("no broker {id}")));
    }
    let mut load: BTreeMap<i32, usize> = state
        .serving_brokers()
        .into_iter()
        .filter(|b| *b != id)
        .map(|b| (b, state.partitions_of(b).len()))
        .collect();
    let mut plan = Vec::new();
    for (topic, index) in state.partitions_of(id) {
        let Some(placement) = topic.partitions.get(index as usize) else {
            continue;
        };
        if placement.target.is_some() {
            return Err(OpError::Invalid(format!(
                "{}/{index} is being moved already; try again when it is done",
                topic.name
            )));
        }
        if placement.replicas.len() == 1 {
            return Err(OpError::Invalid(format!(
                "{}/{index} has its only replica on broker {id}: a partition of one replica cannot move",
                topic.name
            )));
        }
        let spare = load
            .iter()
            .filter(|(b, _)| !placement.replicas.contains(b))
            .min_by_key(|(b, n)| (**n, **b))
            .map(|(b, _)| *b)
            .ok_or_else(|| {
                OpError::Invalid(format!(
                    "no broker can take {}/{index} from broker {id}: its other replicas are on {:?} and no other broker serves",
                    topic.name, placement.replicas
                ))
            })?;
        *load.entry(spare).or_default() += 1;
        let replicas: Vec<i32> = placement
            .replicas
            .iter()
            .map(|r| if *r == id { spare } else { *r })
            .collect();
        plan.push((topic.name.clone(), index, replicas));
    }
    done(
        node.cluster
            .propose(Command::SetDraining { id, draining: true })
            .await
            .map_err(unavailable)?,
    )?;
    let mut moving = BTreeMap::new();
    for (topic, index, replicas) in plan {
        done(
            node.cluster
                .propose(Command::Reassign {
                    name: topic.clone(),
                    partition: index,
                    replicas: replicas.clone(),
                })
                .await
                .map_err(unavailable)?,
        )?;
        moving.insert(format!("{topic}/{index}"), replicas);
    }
    tracing::info!(
        broker = id,
        partitions = moving.len(),
        "decommissioning broker"
    );
    Ok(Decommission { broker: id, moving })
}

/// Forgets broker `id`, which must hold no replica any more (after a decommission).
///
/// # Errors
///
/// [`OpError`] naming the partitions it still holds.
pub async fn remove_broker(node: &Node, id: i32) -> Result<(), OpError> {
    done(
        node.cluster
            .propose(Command::RemoveBroker { id })
            .await
            .map_err(unavailable)?,
    )
}
