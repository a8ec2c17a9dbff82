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

/// A partition restored from an archive whose records were written in epochs up to 7: its
/// replicas begin their logs after the archive, elect in a later epoch, and answer
/// OffsetForLeaderEpoch for the archive's epochs; a restart does not seed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_seeded_after_an_archive_continues_in_a_newer_epoch() {
    let net = MemNetwork::new(11);
    let archived = vec![(0, 0), (4, 50), (7, 90)];
    let seed = silt_broker::raft::store::Seed {
        voters: BTreeSet::from([1, 2, 3]),
        next_offset: 120,
        epochs: silt_broker::log::raft::EpochCache::checked(archived.clone()).unwrap(),
    };
    let mut nodes = Vec::new();
    for id in 1..=3 {
        let node =
            raft_nodes::start_seeded(&net, id, SimStorage::new(id), TIMING, Some(seed.clone()))
                .await;
        assert!(node.handle.seeded, "a new log is seeded");
        // Seeded is initialized: the configuration is there already.
        assert!(matches!(
            node.handle.raft.initialize(seed.voters.clone()).await,
            Err(RaftError::APIError(InitializeError::NotAllowed(_)))
        ));
        nodes.push(node);
    }
    let leader = leader_of(&nodes).await;
    let term = nodes[leader]
        .handle
        .raft
        .metrics()
        .borrow_watched()
        .current_term;
    assert!(
        term > 7,
        "elected in term {term}, not after the archive's epoch 7"
    );
    let first = write(&nodes[leader], "after-the-archive").await;
    // (The new leader's first entry, which holds an offset of its own, may come first.)
    assert!(
        (120..=121).contains(&first),
        "the log continues at the archive's end, not at {first}"
    );
    converge(&nodes, 1).await;
    for node in &nodes {
        let log = &node.handle.log;
        assert_eq!(log.epoch_end_offset(4), Some((4, 90)));
        assert_eq!(log.epoch_end_offset(5), Some((4, 90)));
        assert_eq!(log.epoch_end_offset(7), Some((7, 120)));
        assert_eq!(&log.epochs().entries()[..3], archived.as_slice());
    }
    // A restarted replica keeps its log: nothing is seeded again.
    let restarted = nodes.remove(0);
    net.detach(restarted.id);
    restarted.handle.raft.shutdown().await.unwrap();
    let storage = restarted.storage.after_reboot();
    let again =
        raft_nodes::start_seeded(&net, restarted.id, storage, TIMING, Some(seed.clone())).await;
    assert!(!again.handle.seeded);
    nodes.push(again);
    converge(&nodes, 1).await;
    for node in &nodes {
        node.handle.raft.shutdown().await.unwrap();
    }
}
