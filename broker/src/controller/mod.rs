//! The controller: the Raft group (0) that holds the cluster's metadata.
//!
//! Its voters are the seeds (or this node alone, in a cluster of one); every other node
//! follows it as a learner, so every node has the whole [`ClusterState`] and reconciles its
//! own replicas from it. Changes are [`Command`]s: any node may propose one; it goes to the
//! controller's leader (over the node network when that is another node) and is answered once
//! it is committed and applied.
//!
//! - [`state`]: the state and commands, sans-io;
//! - this file: the Raft application that applies them, and the [`Controller`] handle.

pub mod state;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::ClientWriteError;
use openraft::impls::ProgressResponder;
use serde::{Deserialize, Serialize};
use silt_index::batch::Codec;
use silt_index::record::{NewRecord, decode_records, encode_batch};
use tokio::sync::watch;

pub use state::{Broker, ClusterState, Command, PartitionMeta, Refusal, Reply, TopicMeta};

use crate::raft::group::GroupHandle;
use crate::raft::store::Application;
use crate::raft::transport::Transport;
use crate::raft::{Applied, LogData, LogId, NodeId, RaftMembership};

/// Key of the one record of a controller command's batch.
const COMMAND_KEY: &[u8] = b"silt.controller";

/// Encodes a command as the record batch that carries it in the controller's log.
pub fn encode_command(command: &Command) -> Bytes {
    let value = serde_json::to_vec(command).expect("commands serialise");
    Bytes::from(encode_batch(
        0,
        &[NewRecord {
            key: Some(Bytes::from_static(COMMAND_KEY)),
            value: Some(Bytes::from(value)),
            headers: Vec::new(),
            timestamp: 0,
        }],
        Codec::None,
        None,
    ))
}

/// The command a batch of the controller's log carries.
///
/// # Errors
///
/// A batch that is not one.
pub fn decode_command(batch: &[u8]) -> Result<Command, String> {
    let records = decode_records(batch, 64 << 20).map_err(|e| e.to_string())?;
    let [record] = records.as_slice() else {
        return Err(format!("{} records in a controller batch", records.len()));
    };
    let value = record
        .value
        .as_deref()
        .ok_or("a controller record without value")?;
    serde_json::from_slice(value).map_err(|e| e.to_string())
}

/// The controller's Raft application: the state, and who watches it change.
pub struct ControllerApp {
    state: RwLock<Arc<ClusterState>>,
    changes: watch::Sender<u64>,
}

impl std::fmt::Debug for ControllerApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerApp").finish_non_exhaustive()
    }
}

impl Default for ControllerApp {
    fn default() -> Self {
        ControllerApp {
            state: RwLock::new(Arc::new(ClusterState::new())),
            changes: watch::Sender::new(0),
        }
    }
}

impl ControllerApp {
    /// The state as applied so far.
    pub fn state(&self) -> Arc<ClusterState> {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Changes whenever a command changed the state (carries its version).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

impl Application for ControllerApp {
    fn apply(&self, log_id: &LogId, data: &LogData) -> Applied {
        let reply = match decode_command(&data.batch) {
            Ok(command) => {
                let mut guard = self.state.write().unwrap_or_else(|p| p.into_inner());
                let reply = Arc::make_mut(&mut guard).apply(&command);
                let version = guard.version;
                drop(guard);
                if !matches!(reply, Reply::Refused { .. }) {
                    tracing::debug!(index = log_id.index, ?command, "controller applied");
                }
                self.changes.send_replace(version);
                reply
            }
            Err(e) => {
                tracing::error!(index = log_id.index, error = %e, "a controller entry that is not a command; skipped");
                Reply::Refused {
                    refusal: Refusal::Invalid,
                    message: e,
                }
            }
        };
        Applied::Reply(Bytes::from(
            serde_json::to_vec(&reply).expect("replies serialise"),
        ))
    }

    fn snapshot(&self) -> serde_json::Value {
        serde_json::to_value(&*self.state()).expect("the cluster state serialises")
    }

    fn restore(&self, state: &serde_json::Value) -> Result<(), String> {
        let restored: ClusterState = if state.is_null() {
            ClusterState::new()
        } else {
            serde_json::from_value(state.clone()).map_err(|e| e.to_string())?
        };
        let version = restored.version;
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(restored);
        self.changes.send_replace(version);
        Ok(())
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn stateless(&self) -> bool {
        false
    }
}

/// A request from one node to another (JSON on the node network).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum NodeRequest {
    /// Propose a controller command (to the controller's leader).
    Propose {
        /// The command.
        command: Command,
    },
    /// Add this node to the controller's group as a learner (a node that is not a seed).
    Join {
        /// The joining node.
        node: i32,
        /// Where the joining node listens for its peers (the leader must reach it before it
        /// has registered).
        #[serde(default)]
        rpc_addr: Option<String>,
    },
    /// The sender's heartbeat; now and then with every partition it leads.
    Pulse {
        /// (group, term, in-sync replicas) of each partition the sender leads, when sent.
        leads: Option<Vec<(u64, u64, Vec<i32>)>>,
        /// The sender is shutting down: it hands its leaderships over and takes none.
        #[serde(default)]
        draining: bool,
        /// Now and then: (group, local log start) of each replicated partition the sender
        /// holds, so a leader can show where each of its replicas starts.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        starts: Option<Vec<(u64, i64)>>,
    },
    /// Whether the cluster, as the receiver knows it, counts this node among its brokers (a
    /// node starting on an empty data directory asks before it takes part).
    Known {
        /// The asking node.
        node: i32,
    },
    /// Write these transaction markers on partitions this node leads (from a transaction
    /// coordinator on another node).
    WriteMarkers {
        /// The markers.
        markers: Vec<crate::txn::coordinator::MarkerRequest>,
    },
    /// Hand the leadership of a Raft group this node leads to another replica.
    TransferLeadership {
        /// The group.
        group: u64,
        /// The replica to lead.
        to: i32,
    },
}

/// The answer to a [`NodeRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "snake_case")]
pub enum NodeResponse {
    /// Done; for a proposal, with its reply and the index of its entry.
    Done {
        /// The command's reply, for a proposal.
        reply: Option<Reply>,
        /// The index of the command's entry in the controller's log.
        #[serde(default)]
        index: u64,
    },
    /// The answer to [`NodeRequest::Known`].
    Known {
        /// The cluster the receiver belongs to, if named yet.
        cluster_id: Option<String>,
        /// True when that cluster counts the asking node among its brokers.
        known: bool,
    },
    /// This node is not the controller's leader; try that one.
    NotLeader {
        /// The leader, if known.
        leader: Option<NodeId>,
    },
    /// It failed.
    Error {
        /// Why.
        message: String,
    },
}

/// Why a proposal got no reply.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ControllerError {
    /// No controller leader answered in time (no quorum, or all of them away).
    #[error("the controller did not answer within {0:?} (is a majority of its voters up?)")]
    Unavailable(Duration),
    /// The controller's Raft stopped on this node.
    #[error("the controller stopped: {0}")]
    Stopped(String),
}

/// This node's view of the controller, and the way to change the cluster.
pub struct Controller {
    node: NodeId,
    group: GroupHandle,
    app: Arc<ControllerApp>,
    transport: Arc<Transport>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// How long one hop of a proposal waits.
const HOP_TIMEOUT: Duration = Duration::from_secs(5);

impl Controller {
    /// The controller of node `node`, over a started group and its application.
    pub fn new(
        node: NodeId,
        group: GroupHandle,
        app: Arc<ControllerApp>,
        transport: Arc<Transport>,
    ) -> Controller {
        Controller {
            node,
            group,
            app,
            transport,
        }
    }

    /// The cluster as applied here.
    pub fn state(&self) -> Arc<ClusterState> {
        self.app.state()
    }

    /// Changes whenever the state does.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.app.changes()
    }

    /// The controller's group.
    pub fn group(&self) -> &GroupHandle {
        &self.group
    }

    /// The controller's leader, as this node knows.
    pub fn leader(&self) -> Option<NodeId> {
        self.group.raft.metrics().borrow_watched().current_leader
    }

    /// Reads the controller's membership as this node last applied it (one borrow of the
    /// metrics, released on return).
    pub(crate) fn with_membership<T>(&self, read: impl FnOnce(&RaftMembership) -> T) -> T {
        read(
            self.group
                .raft
                .metrics()
                .borrow_watched()
                .membership_config
                .membership(),
        )
    }

    /// The controller's voters.
    pub fn voters(&self) -> Vec<NodeId> {
        self.with_membership(|m| m.voter_ids().collect())
    }

    /// True while a change of the controller's voters is under way (joint consensus: a
    /// majority of the old voters and of the new must both agree; [`Controller::voters`]
    /// names both sets until it is done).
    pub fn voters_changing(&self) -> bool {
        self.with_membership(|m| m.get_joint_config().len() > 1)
    }

    /// The controller's learners (nodes that follow it without a vote).
    pub fn learners(&self) -> Vec<NodeId> {
        self.with_membership(|m| m.learner_ids().collect())
    }

    /// True when this node leads the controller.
    pub fn is_leader(&self) -> bool {
        self.leader() == Some(self.node)
    }

    /// True when this node has applied its whole controller log (a leader: everything
    /// committed before its term too, so its state names every topic that exists).
    pub fn caught_up(&self) -> bool {
        let metrics = self.group.raft.metrics();
        let metrics = metrics.borrow_watched();
        metrics.last_log_index.is_some()
            && metrics.last_applied.as_ref().map(|a| a.index) >= metrics.last_log_index
    }

    /// Proposes `command` on this node, which must lead: its reply and its entry's index, or
    /// `Ok(None)` when this node does not lead.
    ///
    /// # Errors
    ///
    /// The controller's Raft stopped.
    pub async fn propose_here(
        &self,
        command: &Command,
    ) -> Result<Option<(Reply, u64)>, ControllerError> {
        let (responder, complete) = ProgressResponder::complete_only();
        self.group
            .raft
            .client_write_ff(LogData::new(encode_command(command)), Some(responder))
            .await
            .map_err(|e| ControllerError::Stopped(e.to_string()))?;
        match complete.await {
            Ok(Ok(response)) => {
                let index = response.log_id.index;
                match response.data {
                    Applied::Reply(bytes) => serde_json::from_slice(&bytes)
                        .map(|reply| Some((reply, index)))
                        .map_err(|e| ControllerError::Stopped(format!("undecodable reply: {e}"))),
                    Applied::Done => Ok(Some((Reply::Done, index))),
                }
            }
            Ok(Err(
                ClientWriteError::ForwardToLeader(_) | ClientWriteError::LogEntryDiscarded(_),
            )) => Ok(None),
            Ok(Err(e)) => Err(ControllerError::Stopped(e.to_string())),
            Err(_) => Ok(None),
        }
    }

    /// Proposes `command` wherever the controller's leader is, and waits for its reply (and
    /// for this node to have applied it), trying for at most `timeout`.
    ///
    /// A command retried after a leader change may have been applied already: commands are
    /// written so that applying one twice is harmless (a second CreateTopic of the same id is
    /// refused as existing, which callers take as done).
    ///
    /// # Errors
    ///
    /// [`ControllerError::Unavailable`] when no leader answered in time.
    pub async fn propose(
        &self,
        command: Command,
        timeout: Duration,
    ) -> Result<Reply, ControllerError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = Duration::from_millis(20);
        loop {
            let attempt = async {
                match self.leader() {
                    Some(leader) if leader == self.node => self.propose_here(&command).await,
                    Some(leader) => Ok(self.forward(leader, &command).await),
                    None => Ok(None),
                }
            };
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(remaining.min(HOP_TIMEOUT), attempt).await {
                Ok(Ok(Some((reply, index)))) => {
                    self.wait_applied(index).await;
                    return Ok(reply);
                }
                Ok(Ok(None)) | Err(_) => {}
                Ok(Err(e)) => return Err(e),
            }
            if tokio::time::Instant::now() + pause >= deadline {
                return Err(ControllerError::Unavailable(timeout));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    async fn forward(&self, leader: NodeId, command: &Command) -> Option<(Reply, u64)> {
        let request = NodeRequest::Propose {
            command: command.clone(),
        };
        let bytes = serde_json::to_vec(&request).expect("requests serialise");
        let answer = self
            .transport
            .node_request(leader, &bytes, HOP_TIMEOUT)
            .await
            .ok()?;
        match serde_json::from_slice(&answer).ok()? {
            NodeResponse::Done { reply, index } => reply.map(|r| (r, index)),
            _ => None,
        }
    }

    /// Waits (briefly) until this node has applied the controller's entry `index`, so the
    /// caller sees the change it made.
    pub async fn wait_applied(&self, index: u64) {
        let mut metrics = self.group.raft.metrics();
        let wait = async {
            loop {
                let applied = metrics.borrow_watched().last_applied;
                if applied.is_some_and(|a| a.index >= index) {
                    return;
                }
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        };
        if tokio::time::timeout(HOP_TIMEOUT, wait).await.is_err() {
            tracing::warn!(index, "controller entry not applied here yet");
        }
    }
}
