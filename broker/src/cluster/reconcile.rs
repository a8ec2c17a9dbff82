//! Keeping this node's topics and replicas in line with the controller's state.

use std::sync::Arc;

use tokio::sync::watch;

use crate::controller::{Command, Reply};
use crate::node::Node;

/// Materializes the controller's state now (see [`crate::topics::TopicRegistry::reconcile`]).
pub async fn once(node: &Node) {
    let cluster = &node.cluster;
    cluster.learn_addresses();
    let state = cluster.controller.state();
    node.topics
        .reconcile(&state, cluster.node_id, node.replicas.as_ref())
        .await;
}

/// Reconciles whenever the controller's state changes, until `stop`.
pub async fn run(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    let mut changes = node.cluster.controller.changes();
    loop {
        changes.borrow_and_update();
        once(&node).await;
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            changed = changes.changed() => if changed.is_err() { return },
        }
    }
}

/// Brings the topics found on disk into the controller when it has none: a node from before
/// clusters keeps its topics (same ids, one replica here). Runs once, at start.
pub async fn adopt_found(node: &Node) {
    let cluster = &node.cluster;
    if !cluster.controller.state().topics.is_empty() {
        return;
    }
    for record in node.topics.found_on_disk() {
        let command = Command::CreateTopic {
            name: record.name.clone(),
            id: record.id,
            replicas: vec![vec![cluster.node_id]; record.partitions.max(0) as usize],
            configs: record.configs.clone(),
            internal: false,
            starts: None,
            epochs: None,
        };
        match cluster.propose(command).await {
            Ok(Reply::Done) => {
                tracing::info!(topic = %record.name, id = %record.id, "brought a topic found on disk into the controller")
            }
            Ok(reply) => {
                tracing::warn!(topic = %record.name, ?reply, "topic found on disk not taken")
            }
            Err(e) => {
                tracing::warn!(topic = %record.name, error = %e, "topic found on disk not taken")
            }
        }
    }
}
