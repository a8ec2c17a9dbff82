//! Who leads each partition, as the leaders claim it.
//!
//! Every replica of a partition learns its leader from Raft, but only when the leader
//! writes to it; a node that holds no replica does not learn it at all, yet it must answer
//! Metadata for it. So each node's pulse (see [`super::pulse`]) carries the partitions it
//! leads (group, epoch, in-sync replicas); a peer keeps the newest claim per partition (the
//! higher epoch wins), replaces all of a sender's claims with each list it sends, and
//! forgets claims it has not heard again within [`CLAIM_TTL`].

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use crate::node::Node;
use crate::raft::GroupId;
use crate::topics::Partition;

/// How long a claim counts without being repeated.
pub const CLAIM_TTL: Duration = Duration::from_secs(5);

/// A claim as sent: (group, term, in-sync replicas).
pub type Lead = (u64, u64, Vec<i32>);

/// A partition's leader as claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The leader.
    pub leader: i32,
    /// Its leader epoch.
    pub epoch: i32,
    /// Its in-sync replicas.
    pub in_sync: Vec<i32>,
}

/// The claims heard from peers.
#[derive(Debug, Default)]
pub struct Leaders {
    claims: RwLock<HashMap<GroupId, (Claim, Instant)>>,
}

impl Leaders {
    /// Records what node `from` says it leads: all it leads, so any older claim of its that
    /// is not in `leads` is withdrawn.
    pub fn heard_all(&self, from: i32, leads: &[Lead]) {
        let now = Instant::now();
        let mut claims = self.claims.write().unwrap_or_else(|p| p.into_inner());
        let current: HashSet<u64> = leads.iter().map(|(g, _, _)| *g).collect();
        claims.retain(|group, (claim, _)| claim.leader != from || current.contains(group));
        for (group, epoch, in_sync) in leads {
            let epoch = i32::try_from(*epoch).unwrap_or(i32::MAX);
            let newer = claims
                .get(group)
                .is_none_or(|(c, at)| c.epoch <= epoch || at.elapsed() > CLAIM_TTL);
            if newer {
                claims.insert(
                    *group,
                    (
                        Claim {
                            leader: from,
                            epoch,
                            in_sync: in_sync.clone(),
                        },
                        now,
                    ),
                );
            }
        }
    }

    /// The leader claimed for `group`, if heard lately.
    pub fn get(&self, group: GroupId) -> Option<Claim> {
        let claims = self.claims.read().unwrap_or_else(|p| p.into_inner());
        claims
            .get(&group)
            .filter(|(_, at)| at.elapsed() <= CLAIM_TTL)
            .map(|(c, _)| c.clone())
    }
}

/// The leader of `partition` (of Raft group `group`) as best known here: this node when it
/// leads; otherwise the newer of what the local replica last heard and what the leaders
/// claim (a replica of an idle partition hears from its leader only when it writes); while
/// neither knows one, the last leader if it is alive.
pub fn current(node: &Node, partition: &Partition, group: Option<GroupId>) -> Option<Claim> {
    let claimed = group.and_then(|g| node.cluster.leaders.get(g));
    let Some(replica) = partition.replica.as_ref().ok().filter(|_| partition.hosted) else {
        return claimed;
    };
    let local = replica.leadership();
    if local.is_leader {
        return Some(Claim {
            leader: node.config.node_id,
            epoch: local.epoch,
            in_sync: replica.in_sync(),
        });
    }
    match (local.leader, claimed) {
        (_, Some(claim)) if claim.epoch >= local.epoch => Some(claim),
        (Some(leader), _) if leader != node.config.node_id => Some(Claim {
            leader,
            epoch: local.epoch,
            in_sync: replica.in_sync(),
        }),
        // None now, but the last one is alive (a hand-over under way): name it with its own
        // epoch, as a Kafka broker's metadata would until the
        // change reaches it. A client asking it is sent on (NOT_LEADER_OR_FOLLOWER, with the
        // new leader once known); a client that knows a newer epoch keeps what it knows.
        // Some clients (librdkafka's admin requests) take a leader of -1 as final.
        // This node too, when it just handed over (its cache is as stale as a Kafka
        // broker's until the change reaches it) or briefly cannot hear its majority (a node
        // cut off for longer stops answering Metadata, see `Cluster::cut_off`).
        _ => local
            .previous
            .filter(|(leader, _)| {
                u64::try_from(*leader).is_ok_and(|l| node.cluster.pulse.liveness.alive(l))
            })
            .map(|(leader, epoch)| Claim {
                leader,
                epoch,
                in_sync: replica.in_sync(),
            }),
    }
}

/// Where this node's replica of each replicated partition starts: (group, local log start).
pub fn local_starts(node: &Node) -> Vec<(u64, i64)> {
    let mut out = Vec::new();
    for topic in node.topics.all() {
        for partition in topic.partitions() {
            let Ok(replica) = &partition.replica else {
                continue;
            };
            if let Some(raft) = replica.as_raft() {
                out.push((raft.group(), replica.log().log_start_offset()));
            }
        }
    }
    out
}

/// What this node leads: (group, epoch, in-sync replicas) of each replicated partition.
pub fn leads(node: &Node) -> Vec<Lead> {
    let state = node.cluster.controller.state();
    let mut out = Vec::new();
    for topic in node.topics.all() {
        let Some(meta) = state.topics.get(&topic.name).filter(|m| m.id == topic.id) else {
            continue;
        };
        for partition in topic.partitions() {
            let Ok(replica) = &partition.replica else {
                continue;
            };
            let leadership = replica.leadership();
            if !leadership.is_leader {
                continue;
            }
            if let Some(placement) = meta.partitions.get(partition.index as usize) {
                out.push((
                    placement.group,
                    leadership.epoch.max(0) as u64,
                    replica.in_sync(),
                ));
            }
        }
    }
    out
}
