//! Who votes in the controller, kept in line with the brokers that serve.
//!
//! The controller's voters start as the seeds (or the one node of a cluster of one); every
//! other node follows it as a learner. Its leader then keeps the voters healthy as brokers
//! come and go:
//!
//! - a voter being decommissioned (draining) or removed gives its vote to a serving
//!   learner that is alive, or, when there is none, the voters shrink without it (a
//!   decommissioned seed must not stay a voter that a majority has to count);
//! - while fewer vote than [`WANTED`] (a cluster founded as one node and grown with
//!   `add-node`), serving learners are promoted, keeping the count odd (a second voter adds
//!   no tolerance, only a second node to wait for);
//! - a learner whose broker was removed is dropped from the group (one that joined but has
//!   not registered yet is not: it is about to).
//!
//! Every change goes through openraft's joint consensus: a majority of the old and of the new
//! voters agree on each step. A healthy voter is never replaced (a node that is down may come
//! back; taking it out is a decommission).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use openraft::ChangeMembers;
use tokio::sync::watch;

use crate::controller::ClusterState;
use crate::node::Node;
use crate::raft::NodeId;

/// How many voters the controller keeps when enough brokers serve.
pub const WANTED: usize = 3;

/// A change of the controller's membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The voters become these (the others stay learners until they are forgotten).
    Voters(BTreeSet<NodeId>),
    /// These learners' brokers were removed: they leave the group.
    Drop(BTreeSet<NodeId>),
}

/// What the controller's membership should become, if anything (sans-io: from the current
/// voters and learners, the cluster's state and who is alive).
pub fn plan(
    voters: &BTreeSet<NodeId>,
    learners: &BTreeSet<NodeId>,
    state: &ClusterState,
    alive: impl Fn(NodeId) -> bool,
) -> Option<Change> {
    let id = |n: NodeId| i32::try_from(n).unwrap_or(i32::MAX);
    let removed = |n: NodeId| state.removed.contains(&id(n));
    let draining = |n: NodeId| state.brokers.get(&id(n)).is_some_and(|b| b.draining);
    // Registered and not on its way out (a seed that has not registered yet still votes).
    let serving = |n: NodeId| state.brokers.get(&id(n)).is_some_and(|b| !b.draining);
    let staying: BTreeSet<NodeId> = voters
        .iter()
        .copied()
        .filter(|v| !removed(*v) && !draining(*v))
        .collect();
    let want = if staying.len() < voters.len() {
        // Replace each leaver, one for one.
        voters.len()
    } else {
        WANTED
    };
    let mut next = staying.clone();
    for learner in learners {
        if next.len() >= want {
            break;
        }
        if serving(*learner) && alive(*learner) {
            next.insert(*learner);
        }
    }
    if next.len() > staying.len() && next.len() < want && next.len().is_multiple_of(2) {
        // Growing to an even count: wait until one more can join.
        let last = next.difference(&staying).last().copied()?;
        next.remove(&last);
    }
    if next.is_empty() {
        return None;
    }
    if next != *voters {
        return Some(Change::Voters(next));
    }
    let gone: BTreeSet<NodeId> = learners.iter().copied().filter(|l| removed(*l)).collect();
    (!gone.is_empty()).then_some(Change::Drop(gone))
}

/// How often the controller's leader looks (and after each change of the cluster's state).
const EVERY: Duration = Duration::from_secs(1);

/// Keeps the controller's voters in line (see the module docs) until `stop`.
pub async fn run(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    let mut changes = node.cluster.controller.changes();
    loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            changed = changes.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(EVERY) => {}
        }
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            () = tick(&node) => {}
        }
    }
}

/// One round on the controller's leader (other nodes do nothing): applies [`plan`].
pub async fn tick(node: &Node) {
    let controller = &node.cluster.controller;
    if !controller.is_leader() {
        return;
    }
    let raft = &controller.group().raft;
    if controller.voters_changing() {
        return;
    }
    let (voters, learners) = controller.with_membership(|m| {
        (
            m.voter_ids().collect::<BTreeSet<NodeId>>(),
            m.learner_ids().collect::<BTreeSet<NodeId>>(),
        )
    });
    let state = controller.state();
    let liveness = &node.cluster.pulse.liveness;
    let Some(change) = plan(&voters, &learners, &state, |n| liveness.alive(n)) else {
        return;
    };
    tracing::info!(from = ?voters, change = ?change, "changing the controller's voters");
    let result = match &change {
        Change::Voters(next) => raft.change_membership(next.clone(), true).await,
        Change::Drop(gone) => {
            raft.change_membership(ChangeMembers::RemoveNodes(gone.clone()), false)
                .await
        }
    };
    match result {
        Ok(_) => tracing::info!(voters = ?controller.voters(), "the controller's voters changed"),
        Err(e) => {
            tracing::warn!(error = %e, change = ?change, "the controller's voters did not change; tried again later")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::Broker;

    fn state(brokers: &[(i32, bool)]) -> ClusterState {
        let mut state = ClusterState {
            removed: [0, 1, 2, 3, 4]
                .into_iter()
                .filter(|id| !brokers.iter().any(|(b, _)| b == id))
                .collect(),
            ..ClusterState::default()
        };
        for (id, draining) in brokers {
            state.brokers.insert(
                *id,
                Broker {
                    id: *id,
                    kafka_addr: format!("127.0.0.1:{}", 9092 + id),
                    rpc_addr: format!("127.0.0.1:{}", 9192 + id),
                    admin_addr: format!("127.0.0.1:{}", 9292 + id),
                    draining: *draining,
                    listeners: Default::default(),
                },
            );
        }
        state
    }

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    #[test]
    fn a_draining_seed_gives_its_vote_to_a_serving_learner() {
        let state = state(&[(0, true), (1, false), (2, false), (3, false)]);
        let change = plan(&set(&[0, 1, 2]), &set(&[3]), &state, |_| true);
        assert_eq!(change, Some(Change::Voters(set(&[1, 2, 3]))));
    }

    #[test]
    fn a_learner_that_is_down_is_not_promoted_and_the_voters_shrink() {
        let state = state(&[(0, true), (1, false), (2, false), (3, false)]);
        let change = plan(&set(&[0, 1, 2]), &set(&[3]), &state, |n| n != 3);
        assert_eq!(change, Some(Change::Voters(set(&[1, 2]))));
    }

    #[test]
    fn a_forgotten_voter_leaves_and_a_forgotten_learner_is_dropped() {
        let state = state(&[(1, false), (2, false), (3, false)]);
        assert_eq!(
            plan(&set(&[0, 1, 2, 3]), &set(&[]), &state, |_| true),
            Some(Change::Voters(set(&[1, 2, 3])))
        );
        assert_eq!(
            plan(&set(&[1, 2, 3]), &set(&[0]), &state, |_| true),
            Some(Change::Drop(set(&[0])))
        );
    }

    #[test]
    fn a_cluster_of_one_grows_to_three_voters_never_two() {
        let two = state(&[(0, false), (1, false)]);
        assert_eq!(plan(&set(&[0]), &set(&[1]), &two, |_| true), None);
        let three = state(&[(0, false), (1, false), (2, false)]);
        assert_eq!(
            plan(&set(&[0]), &set(&[1, 2]), &three, |_| true),
            Some(Change::Voters(set(&[0, 1, 2])))
        );
        // A third that is down: still one voter.
        assert_eq!(plan(&set(&[0]), &set(&[1, 2]), &three, |n| n != 2), None);
    }

    #[test]
    fn voters_and_learners_not_registered_yet_are_left_alone() {
        let mut state = state(&[(0, false)]);
        state.removed.clear();
        assert_eq!(plan(&set(&[0, 1, 2]), &set(&[3]), &state, |_| true), None);
    }

    #[test]
    fn healthy_voters_are_left_alone_even_when_down_or_many() {
        let state = state(&[(0, false), (1, false), (2, false), (3, false)]);
        assert_eq!(plan(&set(&[0, 1, 2, 3]), &set(&[]), &state, |_| true), None);
        assert_eq!(plan(&set(&[0, 1, 2]), &set(&[3]), &state, |n| n != 0), None);
    }
}
