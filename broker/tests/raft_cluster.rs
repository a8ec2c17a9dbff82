//! Three Raft nodes in one process, over the in-memory network, each on its own simulated
//! disk: elections, replication into the segment files, commit moving the high watermark,
//! a leader's crash, and its return with a log that must be truncated.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{InitializeError, RaftError};
use silt_broker::log::sim::SimStorage;
use silt_broker::raft::NodeId;
use silt_broker::raft::group::Timing;
use silt_broker::raft::mem::MemNetwork;

mod raft_nodes;
use raft_nodes::{Node, values, write_data};

const TIMING: Timing = Timing {
    heartbeat_ms: 50,
    election_min_ms: 300,
    election_max_ms: 600,
    driven: false,
};

async fn start_node(net: &Arc<MemNetwork>, id: NodeId, storage: SimStorage) -> Node {
    raft_nodes::start_node(net, id, storage, TIMING).await
}

/// The index of the node that leads, once every node agrees on it and its first entry of
/// the term is committed (so a write is not raced by the election settling).
async fn leader_of(nodes: &[Node]) -> usize {
    for _ in 0..400 {
        let metrics: Vec<_> = nodes
            .iter()
            .map(|n| n.handle.raft.metrics().borrow_watched().clone())
            .collect();
        let leader = metrics
            .iter()
            .position(|m| m.state == ServerState::Leader && m.current_leader == Some(m.id));
        if let Some(at) = leader {
            let term = metrics[at].current_term;
            let agreed = metrics
                .iter()
                .all(|m| m.current_leader == metrics[at].current_leader && m.current_term == term);
            let settled = metrics[at]
                .cluster_committed
                .is_some_and(|c| c.leader_id.term == term);
            if agreed && settled {
                return at;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no leader elected");
}

/// Writes a batch through the leader; returns its base offset once a quorum has it and it is
/// readable.
async fn write(node: &Node, tag: &str) -> i64 {
    let (data, written_rx) = write_data(tag);
    let (responder, complete_rx) = openraft::impls::ProgressResponder::complete_only();
    node.handle
        .raft
        .client_write_ff(data, Some(responder))
        .await
        .unwrap();
    let appended = written_rx.await.unwrap();
    // Applied: committed by a quorum, and the high watermark has moved past it.
    complete_rx.await.unwrap().unwrap();
    assert!(node.handle.log.high_watermark() > appended.last_offset);
    appended.base_offset
}

async fn converge(nodes: &[Node], count: usize) {
    for _ in 0..400 {
        if nodes.iter().all(|n| values(n).len() == count) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let lens: Vec<usize> = nodes.iter().map(|n| values(n).len()).collect();
    panic!("logs did not converge to {count} batches: {lens:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_elect_replicate_and_survive_a_leader_crash() {
    let net = MemNetwork::new(7);
    let mut nodes = Vec::new();
    for id in 1..=3 {
        nodes.push(start_node(&net, id, SimStorage::new(id)).await);
    }
    let members: BTreeSet<NodeId> = BTreeSet::from([1, 2, 3]);
    // Every replica is initialized with the same membership, as the controller's assignment
    // makes them: safe, and no node waits for another.
    for node in &nodes {
        // A node that already heard from an initialized peer refuses (NotAllowed): it is in
        // the group already.
        match node.handle.raft.initialize(members.clone()).await {
            Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
            Err(e) => panic!("initialize: {e}"),
        }
    }
    let leader = leader_of(&nodes).await;
    let mut expected = Vec::new();
    let mut last_offset = -1;
    for i in 0..50 {
        let tag = format!("first-{i}");
        let offset = write(&nodes[leader], &tag).await;
        assert!(offset > last_offset, "offsets grow");
        last_offset = offset;
        expected.push(tag);
    }
    // The leader's high watermark covers every acknowledged batch; epochs are terms.
    let hw = nodes[leader].handle.log.high_watermark();
    assert!(hw > last_offset, "hw {hw} after {last_offset}");
    let term = nodes[leader]
        .handle
        .raft
        .metrics()
        .borrow_watched()
        .current_term;
    assert_eq!(
        nodes[leader]
            .handle
            .log
            .epochs()
            .latest()
            .map(|(e, _)| e as u64),
        Some(term)
    );
    converge(&nodes, 50).await;
    for node in &nodes {
        assert_eq!(
            values(node),
            expected,
            "node {} holds the same log",
            node.id
        );
    }

    // The leader crashes (power cut: what it did not fsync is gone).
    let crashed = nodes.remove(leader);
    net.detach(crashed.id);
    crashed.handle.raft.shutdown().await.unwrap();
    crashed.storage.power_cut();
    let leader = leader_of(&nodes).await;
    let new_term = nodes[leader]
        .handle
        .raft
        .metrics()
        .borrow_watched()
        .current_term;
    assert!(new_term > term, "a new term: {new_term} > {term}");
    for i in 0..20 {
        let tag = format!("second-{i}");
        write(&nodes[leader], &tag).await;
        expected.push(tag);
    }
    // It comes back from its disk and catches up; the new epoch starts after the old data.
    let storage = crashed.storage.after_reboot();
    nodes.push(start_node(&net, crashed.id, storage).await);
    converge(&nodes, 70).await;
    for node in &nodes {
        assert_eq!(
            values(node),
            expected,
            "node {} holds the same log",
            node.id
        );
        let epochs = node.handle.log.epochs();
        assert!(epochs.entries().iter().any(|(e, _)| *e as u64 == new_term));
    }
    // Offsets are dense per batch and identical on every replica.
    let offsets = |node: &Node| -> Vec<i64> {
        raft_nodes::entries(node)
            .iter()
            .filter_map(|e| e.offset)
            .collect()
    };
    let reference = offsets(&nodes[0]);
    for node in &nodes[1..] {
        assert_eq!(offsets(node), reference);
    }
    for node in &nodes {
        node.handle.raft.shutdown().await.unwrap();
    }
}
