//! Who leads the partitions this node holds no replica of.
//!
//! Every replica of a partition knows its leader from Raft; a node that holds none does not,
//! yet it must answer Metadata for it. So each node tells every peer, once a second, which
//! partitions it leads (group, epoch, in-sync replicas); a peer keeps the newest claim per
//! partition (the higher epoch wins) and forgets claims it has not heard again within
//! [`CLAIM_TTL`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::controller::NodeRequest;
use crate::node::Node;
use crate::raft::GroupId;

/// How often a node tells its peers what it leads.
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(1);
/// How long a claim counts without being repeated.
pub const CLAIM_TTL: Duration = Duration::from_secs(5);

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
    /// Records what node `from` says it leads.
    pub fn heard(&self, from: i32, leads: &[(u64, u64, Vec<i32>)]) {
        let now = Instant::now();
        let mut claims = self.claims.write().unwrap_or_else(|p| p.into_inner());
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

/// What this node leads: (group, epoch, in-sync replicas) of each replicated partition.
pub fn leads(node: &Node) -> Vec<(u64, u64, Vec<i32>)> {
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

/// Tells every peer what this node leads, every [`ANNOUNCE_INTERVAL`], until `stop`.
pub async fn announce(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(ANNOUNCE_INTERVAL) => {}
        }
        let state = node.cluster.controller.state();
        let peers: Vec<i32> = state
            .brokers
            .keys()
            .copied()
            .filter(|id| *id != node.cluster.node_id)
            .collect();
        if peers.is_empty() {
            continue;
        }
        let request = NodeRequest::Leaders {
            leads: leads(&node),
        };
        let bytes = serde_json::to_vec(&request).expect("requests serialise");
        for peer in peers {
            let transport = node.cluster.transport.clone();
            let bytes = bytes.clone();
            tokio::spawn(async move {
                let _ = transport
                    .node_request(peer as u64, &bytes, ANNOUNCE_INTERVAL)
                    .await;
            });
        }
    }
}
