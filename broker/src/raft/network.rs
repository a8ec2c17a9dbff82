//! How a Raft group reaches the same group on other nodes, and how this node answers.
//!
//! Every group on a node shares one [`Router`]: it carries [`RaftRequest`]s to a node and
//! brings the [`RaftResponse`] back. Over TCP that is one connection per node pair, on which
//! the requests of all groups travel together ([`super::transport`]); a test or a simulation
//! routes them in memory instead. [`GroupNetwork`] adapts a router to openraft's
//! [`RaftNetworkV2`] for one (group, target) pair, and [`Groups`] hands requests that arrive
//! to the group they are for.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{EmptyNode, RaftNetworkV2};

use super::codec::{RaftRequest, RaftResponse};
use super::{GroupId, NodeId, Raft, Snapshot, TypeConfig, Vote};
use crate::log::PartitionLog;

/// Why a request got no answer.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The node cannot be reached now (no connection, refused, cut): back off.
    #[error("node {node} unreachable: {reason}")]
    Unreachable {
        /// The node.
        node: NodeId,
        /// Why.
        reason: String,
    },
    /// No answer within the time allowed.
    #[error("node {node} did not answer within {after:?}")]
    Timeout {
        /// The node.
        node: NodeId,
        /// The time allowed.
        after: Duration,
    },
}

/// Carries requests to nodes.
#[async_trait::async_trait]
pub trait Router: Send + Sync + 'static {
    /// Sends `request` to node `target` and waits at most `timeout` for its answer.
    ///
    /// # Errors
    ///
    /// [`NetError`] when no answer came.
    async fn call(
        &self,
        target: NodeId,
        request: RaftRequest,
        timeout: Duration,
    ) -> Result<RaftResponse, NetError>;
}

/// The network of one group: a client per target, all over one router.
#[derive(Clone)]
pub struct NetworkFactory {
    router: Arc<dyn Router>,
    group: GroupId,
    source: NodeId,
}

impl NetworkFactory {
    /// The network of `group` on node `source`.
    pub fn new(router: Arc<dyn Router>, group: GroupId, source: NodeId) -> NetworkFactory {
        NetworkFactory {
            router,
            group,
            source,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = GroupNetwork;

    async fn new_client(&mut self, target: NodeId, _node: &EmptyNode) -> GroupNetwork {
        GroupNetwork {
            router: self.router.clone(),
            group: self.group,
            source: self.source,
            target,
        }
    }
}

/// openraft's client for one (group, target) pair.
pub struct GroupNetwork {
    router: Arc<dyn Router>,
    group: GroupId,
    source: NodeId,
    target: NodeId,
}

fn rpc_error(e: NetError) -> RPCError<TypeConfig> {
    // Both mean "not now": openraft backs off before it tries that node again.
    RPCError::Unreachable(Unreachable::new(&e))
}

fn unexpected(response: RaftResponse) -> RPCError<TypeConfig> {
    let message = match response {
        RaftResponse::Error(message) => message,
        other => format!("unexpected answer {other:?}"),
    };
    // The other side is up but cannot serve the group (not created yet, stopping): back off.
    RPCError::Unreachable(Unreachable::new(&std::io::Error::other(message)))
}

impl GroupNetwork {
    async fn call(
        &self,
        request: RaftRequest,
        option: &RPCOption,
    ) -> Result<RaftResponse, RPCError<TypeConfig>> {
        self.router
            .call(self.target, request, option.hard_ttl())
            .await
            .map_err(rpc_error)
    }
}

impl RaftNetworkV2<TypeConfig> for GroupNetwork {
    type SnapshotData = Bytes;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(RaftRequest::Append(self.group, rpc), &option)
            .await?
        {
            RaftResponse::Append(response) => Ok(response),
            other => Err(unexpected(other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(RaftRequest::Vote(self.group, rpc), &option)
            .await?
        {
            RaftResponse::Vote(response) => Ok(response),
            other => Err(unexpected(other)),
        }
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(RaftRequest::PreVote(self.group, rpc), &option)
            .await?
        {
            RaftResponse::Vote(response) => Ok(response),
            other => Err(unexpected(other)),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let request = RaftRequest::Snapshot(self.group, vote, snapshot.meta, snapshot.snapshot);
        tracing::info!(
            group = self.group,
            from = self.source,
            to = self.target,
            "sending a snapshot"
        );
        tokio::select! {
            biased;
            closed = cancel => Err(StreamingError::Closed(closed)),
            response = self.call(request, &option) => match response? {
                RaftResponse::Snapshot(response) => Ok(response),
                other => Err(StreamingError::from(unexpected(other))),
            },
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(RaftRequest::TransferLeader(self.group, req), &option)
            .await?
        {
            RaftResponse::TransferLeader(response) => Ok(response),
            RaftResponse::Error(message) => Err(RPCError::Network(NetworkError::new(
                &std::io::Error::other(message),
            ))),
            other => Err(unexpected(other)),
        }
    }
}

/// The groups of this node, by id: where arriving requests go.
#[derive(Default)]
pub struct Groups {
    groups: RwLock<HashMap<GroupId, (Raft, Arc<PartitionLog>)>>,
}

impl std::fmt::Debug for Groups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.groups.read().unwrap_or_else(|p| p.into_inner()).len();
        f.debug_struct("Groups").field("count", &count).finish()
    }
}

impl Groups {
    /// Registers a group's Raft and the log under it.
    pub fn insert(&self, group: GroupId, raft: Raft, log: Arc<PartitionLog>) {
        self.groups
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(group, (raft, log));
    }

    /// Forgets a group (it left this node).
    pub fn remove(&self, group: GroupId) -> Option<Raft> {
        self.groups
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&group)
            .map(|(raft, _)| raft)
    }

    /// A group's Raft.
    pub fn get(&self, group: GroupId) -> Option<Raft> {
        self.entry(group).map(|(raft, _)| raft)
    }

    fn entry(&self, group: GroupId) -> Option<(Raft, Arc<PartitionLog>)> {
        self.groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&group)
            .cloned()
    }

    /// Every group, by id.
    pub fn all(&self) -> Vec<(GroupId, Raft)> {
        let mut all: Vec<_> = self
            .groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(g, (r, _))| (*g, r.clone()))
            .collect();
        all.sort_by_key(|(g, _)| *g);
        all
    }

    /// Hands a request that arrived to its group and returns the answer.
    pub async fn handle(&self, request: RaftRequest) -> RaftResponse {
        let group = request.group();
        let Some((raft, log)) = self.entry(group) else {
            return RaftResponse::Error(format!("no Raft group {group} on this node"));
        };
        let fatal = |e: &dyn std::fmt::Display| RaftResponse::Error(format!("group {group}: {e}"));
        match request {
            RaftRequest::Append(_, req) => match raft.append_entries(req).await {
                Ok(response) => RaftResponse::Append(response),
                Err(e) => fatal(&e),
            },
            RaftRequest::Vote(_, req) => match raft.vote(req).await {
                Ok(response) => RaftResponse::Vote(response),
                Err(e) => fatal(&e),
            },
            RaftRequest::PreVote(_, req) => match raft.pre_vote(req).await {
                Ok(response) => RaftResponse::Vote(response),
                Err(e) => fatal(&e),
            },
            RaftRequest::Snapshot(_, vote, meta, data) => {
                if holds_snapshot_point(&raft, &log, &vote, &meta).await {
                    return RaftResponse::Snapshot(SnapshotResponse::new(vote));
                }
                let snapshot = Snapshot {
                    meta,
                    snapshot: data,
                };
                match raft.install_full_snapshot(vote, snapshot).await {
                    Ok(response) => RaftResponse::Snapshot(response),
                    Err(e) => fatal(&e),
                }
            }
            RaftRequest::TransferLeader(_, req) => match raft.handle_transfer_leader(req).await {
                Ok(response) => RaftResponse::TransferLeader(response),
                Err(e) => fatal(&e),
            },
        }
    }
}

/// True when this follower of the leader that sent a snapshot already holds the snapshot's
/// last entry and more after it, durably: the answer is then as if it installed it. A leader
/// that lost track of a follower (an answer that timed out) may send a snapshot older than
/// what it had just appended; openraft would take its log's progress back and lose its way,
/// while the log already holds what the snapshot stands for (by log matching, everything up
/// to an entry of the same term).
async fn holds_snapshot_point(
    raft: &Raft,
    log: &PartitionLog,
    vote: &Vote,
    meta: &super::SnapshotMeta,
) -> bool {
    let Some(last) = meta.last_log_id else {
        return false;
    };
    let following = {
        let metrics = raft.metrics();
        let metrics = metrics.borrow_watched();
        metrics.vote == *vote
    };
    if !following || log.raft_last().is_none_or(|(index, _)| index <= last.index) {
        return false;
    }
    let held = super::store::blocking(|| log.term_of(last.index));
    if !matches!(held, Ok(Some(term)) if term == last.leader_id.term) {
        return false;
    }
    log.flush().await.is_ok()
}
