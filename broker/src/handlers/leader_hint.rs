//! KIP-951 leader hints: a Produce (v10+) or Fetch (v16+) answered NOT_LEADER_OR_FOLLOWER or
//! FENCED_LEADER_EPOCH names the partition's current leader and epoch, and the response lists
//! that broker's endpoint, so a client goes straight there instead of asking for Metadata
//! first (the leader is the newest this node knows, as Metadata would say).

use std::collections::BTreeMap;

use crate::cluster::leaders::{self, Claim};
use crate::node::Node;
use crate::protocol::error_code::ErrorCode;

/// Whether `error` is one a hint goes with.
pub(super) fn wants_hint(error: i16) -> bool {
    error == ErrorCode::NotLeaderOrFollower.code() || error == ErrorCode::FencedLeaderEpoch.code()
}

/// The leader of `topic`/`partition` as this node knows it, when that is another broker.
pub(crate) fn leader_of(node: &Node, topic: &str, partition: i32) -> Option<Claim> {
    let group = {
        let state = node.cluster.controller.state();
        state
            .topics
            .get(topic)
            .and_then(|t| t.partitions.get(usize::try_from(partition).ok()?))
            .map(|p| p.group)
    };
    let local = node.topics.get(topic)?;
    let p = local.partition(partition)?;
    leaders::current(node, &p, group).filter(|c| c.leader != node.config.node_id)
}

/// The Kafka endpoints (host, port) of `brokers` on `listener`, from the controller's state;
/// brokers without that listener, or whose address does not parse, are left out.
pub(super) fn endpoints(
    node: &Node,
    brokers: impl IntoIterator<Item = i32>,
    listener: &str,
) -> BTreeMap<i32, (String, i32)> {
    let state = node.cluster.controller.state();
    brokers
        .into_iter()
        .filter_map(|id| {
            let addr = state.brokers.get(&id)?.endpoint(listener)?;
            let (host, port) = addr.rsplit_once(':')?;
            Some((id, (host.to_string(), port.parse().ok()?)))
        })
        .collect()
}
