//! This node's part in its cluster: the controller it follows (or leads), the network to its
//! peers, the Raft groups it runs, and the replicas it opens for the controller's topics.
//!
//! # Starting
//!
//! 1. The controller's group opens from `<data>/controller`. A fresh node that is a seed (or
//!    the only node, with no seeds) initializes it with the seeds as voters; every seed does
//!    the same, which is safe (identical memberships). A fresh node that is not a seed asks
//!    the seeds to add it as a learner, until one says yes.
//! 2. It waits for the controller to have a leader (a quorum of seeds must be up).
//! 3. It registers itself (its addresses may have changed since last time) and, the first
//!    time, names the cluster.
//!
//! Then [`reconcile`] keeps this node's replicas in line with the controller's state.

pub mod admin;
pub mod leaders;
pub mod ops;
pub mod pulse;
pub mod reassign;
pub mod reconcile;
mod replicas;
pub mod uploads;
pub mod voters;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use openraft::EmptyNode;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{InitializeError, RaftError};
use silt_config::NodeConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use replicas::Replicas;

use crate::controller::{
    Broker, Command, Controller, ControllerApp, ControllerError, NodeRequest, NodeResponse, Reply,
};
use crate::log::{Clock, LogConfig, LogError, Storage};
use crate::raft::codec::{RaftRequest, RaftResponse};
use crate::raft::group::{self, GroupError, GroupSpec, Timing};
use crate::raft::network::Groups;
use crate::raft::transport::{self, Service, Transport};
use crate::raft::{CONTROLLER_GROUP, NodeId};

/// How long a proposal may wait for the controller before the caller is told it is away.
pub const PROPOSAL_TIMEOUT: Duration = Duration::from_secs(15);

/// Why this node could not take its place in the cluster.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The controller's group did not start.
    #[error(transparent)]
    Group(#[from] GroupError),
    /// Its log did not open.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The controller did not answer.
    #[error(transparent)]
    Controller(#[from] ControllerError),
    /// The settings do not describe a cluster this node can be in (named in the message).
    #[error("{0}")]
    Config(String),
}

/// Who is where: broker id -> `host:port` of its node listener.
type AddressBook = Arc<RwLock<HashMap<NodeId, String>>>;

/// This node's part in the cluster.
pub struct Cluster {
    /// This node.
    pub node_id: i32,
    /// Connections to the peers.
    pub transport: Arc<Transport>,
    /// The Raft groups running here, by id.
    pub groups: Arc<Groups>,
    /// The controller.
    pub controller: Controller,
    /// Elections and heartbeats of partition groups.
    pub timing: Timing,
    /// Who leads each partition, as the leaders say.
    pub leaders: leaders::Leaders,
    /// Node heartbeats, liveness and partition elections.
    pub pulse: Arc<pulse::Pulse>,
    /// Partition moves this node's leaders drive.
    pub movers: reassign::Movers,
    addresses: AddressBook,
    advertised_rpc: String,
    seeds: Vec<(i32, String)>,
    stop: watch::Receiver<bool>,
    /// False while a node on an empty data directory asks whether the cluster knows it:
    /// until then its groups take no Raft request (its controller would otherwise be
    /// drawn into a group it may not rejoin).
    taking_raft: std::sync::atomic::AtomicBool,
    /// The node this cluster part belongs to, once it exists (requests from peers that act
    /// on partitions, such as transaction markers, need it).
    node: std::sync::OnceLock<std::sync::Weak<crate::node::Node>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// The settings of this node's partition and controller groups.
pub fn timing(config: &NodeConfig) -> Timing {
    Timing {
        heartbeat_ms: config.raft_heartbeat_interval_ms,
        election_min_ms: config.raft_election_timeout_ms,
        election_max_ms: config.raft_election_timeout_ms * 2,
        driven: false,
    }
}

/// The controller's log settings: small segments, its entries are small.
fn controller_log_config(config: &NodeConfig) -> LogConfig {
    LogConfig {
        segment_bytes: 16 << 20,
        preallocate_bytes: config.segment_preallocate_bytes.min(1 << 20),
        ..LogConfig::new(
            &silt_config::TopicConfig::resolve(&Default::default(), &config.topic_defaults)
                .expect("defaults are valid"),
            config,
        )
    }
}

impl Cluster {
    /// True when this node has heard from no majority of the controller's voters for twice
    /// the failure-detection time: it is cut off from the cluster, knows no current leader,
    /// and clients are better served by another broker (see the Metadata handler).
    pub fn cut_off(&self) -> bool {
        let voters = self.controller.voters();
        voters.len() > 1
            && self
                .pulse
                .liveness
                .majority_heard_ago(&voters)
                .is_some_and(|ago| ago > self.pulse.liveness.timeout() * 2)
    }

    /// Starts this node's part: the controller's group and the peer listener, joins or
    /// founds the cluster, waits for the controller, registers this broker.
    ///
    /// `identity` is this node's cluster id from its data directory and the producer ids it
    /// handed out before it was part of a cluster (the first node to bootstrap names the
    /// cluster with them).
    ///
    /// # Errors
    ///
    /// [`ClusterError`]: the controller's log or group did not start, or it never answered.
    pub async fn start(
        config: &NodeConfig,
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
        listener: TcpListener,
        identity: (String, i64),
        fresh: bool,
        stop: watch::Receiver<bool>,
    ) -> Result<Arc<Cluster>, ClusterError> {
        let me = config.node_id;
        let node = NodeId::try_from(me)
            .map_err(|_| ClusterError::Config(format!("node id {me} is negative")))?;
        let addresses: AddressBook = Arc::default();
        {
            let mut book = addresses.write().unwrap_or_else(|p| p.into_inner());
            for (id, addr) in &config.seeds {
                book.insert(*id as NodeId, addr.clone());
            }
            book.insert(node, config.advertised_rpc());
        }
        let resolver = {
            let addresses = addresses.clone();
            Arc::new(move |id: NodeId| {
                addresses
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&id)
                    .cloned()
            })
        };
        let transport = Transport::new(node, resolver);
        let groups = Arc::new(Groups::default());
        let app = Arc::new(ControllerApp::default());
        let timing = timing(config);
        let spec = GroupSpec {
            node,
            group: CONTROLLER_GROUP,
            dir: config.data_dir.join("controller"),
            log_config: controller_log_config(config),
            timing,
            application: app.clone(),
            keep_committed: true,
            seed: None,
        };
        let handle = group::start(spec, storage, clock, transport.clone()).await?;
        groups.insert(CONTROLLER_GROUP, handle.raft.clone(), handle.log.clone());
        let controller = Controller::new(node, handle, app, transport.clone());
        let cluster = Arc::new(Cluster {
            node_id: me,
            transport,
            groups,
            controller,
            timing,
            leaders: leaders::Leaders::default(),
            pulse: Arc::new(pulse::Pulse::new(node, timing)),
            movers: reassign::Movers::default(),
            addresses,
            advertised_rpc: config.advertised_rpc(),
            seeds: config.seeds.clone(),
            stop: stop.clone(),
            taking_raft: std::sync::atomic::AtomicBool::new(!fresh),
            node: std::sync::OnceLock::new(),
        });
        tokio::spawn(transport::serve(
            listener,
            cluster.clone(),
            cluster.transport.metrics.clone(),
            stop,
        ));
        if fresh {
            cluster.refuse_if_forgotten(&config.data_dir).await?;
            cluster
                .taking_raft
                .store(true, std::sync::atomic::Ordering::Release);
        }
        cluster.bootstrap().await?;
        cluster.wait_for_controller().await;
        cluster.register(config, identity).await?;
        Ok(cluster)
    }

    /// A node starting on an empty data directory asks its seeds whether their cluster
    /// already counts it: if so, its disk was wiped or replaced, and the votes and log
    /// entries its Raft groups counted on are gone. Rejoining under the same id could let a
    /// replica without committed records win an election (it would vote as if it never had),
    /// so it refuses, naming the way out. Seeds that do not answer are not waited for.
    async fn refuse_if_forgotten(&self, data_dir: &std::path::Path) -> Result<(), ClusterError> {
        let request =
            serde_json::to_vec(&NodeRequest::Known { node: self.node_id }).expect("serialises");
        let me = self.node_id as NodeId;
        let seeds: Vec<NodeId> = self
            .seeds
            .iter()
            .map(|(seed, _)| *seed as NodeId)
            .filter(|seed| *seed != me)
            .collect();
        let answers = futures::future::join_all(seeds.iter().map(|seed| {
            self.transport
                .node_request(*seed, &request, Duration::from_secs(3))
        }))
        .await;
        for (seed, answer) in seeds.into_iter().zip(answers) {
            let Ok(bytes) = answer else {
                continue;
            };
            if let Ok(NodeResponse::Known {
                cluster_id,
                known: true,
            }) = serde_json::from_slice(&bytes)
            {
                let cluster = cluster_id.unwrap_or_default();
                return Err(ClusterError::Config(format!(
                    "node {me}'s data directory {} is empty, but cluster {cluster} (as node {seed} \
                     knows it) still counts node {me} among its brokers: the Raft votes and \
                     logs of its replicas are gone, and rejoining under the same id could lose \
                     acknowledged data. Start the replacement with a new --node-id, then move \
                     node {me}'s partitions to it with `silt cluster decommission {me}` (a new \
                     replica copies only what the archive does not hold)",
                    data_dir.display()
                )));
            }
        }
        Ok(())
    }

    /// Founds the controller's group (seeds) or joins it (others), the first time.
    async fn bootstrap(&self) -> Result<(), ClusterError> {
        let raft = &self.controller.group().raft;
        let me = self.node_id as NodeId;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| ClusterError::Config(format!("controller: {e}")))?;
        let voters: BTreeSet<NodeId> = if self.seeds.is_empty() {
            BTreeSet::from([me])
        } else {
            self.seeds.iter().map(|(id, _)| *id as NodeId).collect()
        };
        if !initialized {
            if voters.contains(&me) {
                match raft.initialize(voters.clone()).await {
                    Ok(()) => tracing::info!(voters = ?voters, "founded the cluster's controller"),
                    // A peer initialized first and reached us: we are in already.
                    Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                    Err(e) => return Err(ClusterError::Config(format!("controller: {e}"))),
                }
            } else {
                self.join(&voters).await;
            }
        }
        let metrics = raft.metrics().borrow_watched().clone();
        let members: Vec<NodeId> = metrics.membership_config.membership().voter_ids().collect();
        if members == [me] && metrics.current_leader.is_none() {
            // A cluster of one: no one to wait for.
            let _ = raft.trigger().elect(false).await;
        }
        Ok(())
    }

    /// Asks the seeds to add this node to the controller's group, until one does.
    async fn join(&self, seeds: &BTreeSet<NodeId>) {
        let request = serde_json::to_vec(&NodeRequest::Join {
            node: self.node_id,
            rpc_addr: Some(self.advertised_rpc.clone()),
        })
        .expect("serialises");
        let mut attempt = 0u64;
        loop {
            for seed in seeds {
                let answer = self
                    .transport
                    .node_request(*seed, &request, Duration::from_secs(5))
                    .await;
                if let Ok(bytes) = answer
                    && let Ok(NodeResponse::Done { .. }) = serde_json::from_slice(&bytes)
                {
                    tracing::info!(seed, "joined the cluster");
                    return;
                }
            }
            attempt += 1;
            if attempt.is_multiple_of(10) {
                tracing::warn!(seeds = ?seeds, "still asking the seeds to let this node join; are they up?");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits until the controller has a leader, saying so now and then.
    async fn wait_for_controller(&self) {
        let mut metrics = self.controller.group().raft.metrics();
        let mut waited = Duration::ZERO;
        loop {
            if metrics.borrow_watched().current_leader.is_some() {
                return;
            }
            let step = Duration::from_secs(5);
            if tokio::time::timeout(step, metrics.changed()).await.is_err() {
                waited += step;
                tracing::warn!(waited_secs = waited.as_secs(), seeds = ?self.seeds, "waiting for the controller to elect a leader (a majority of the seeds must be up)");
                let me = self.node_id as NodeId;
                let voters: BTreeSet<NodeId> =
                    self.seeds.iter().map(|(id, _)| *id as NodeId).collect();
                if !voters.contains(&me) && !voters.is_empty() {
                    // A learner the leader cannot reach (it changed since we joined, and
                    // does not know our address): join again, which tells it.
                    self.join(&voters).await;
                }
            }
        }
    }

    /// Registers this broker and, if nobody has yet, names the cluster.
    async fn register(
        &self,
        config: &NodeConfig,
        identity: (String, i64),
    ) -> Result<(), ClusterError> {
        let (cluster_id, next_producer_id) = identity;
        if self.controller.state().cluster_id.is_none() {
            self.controller
                .propose(
                    Command::InitCluster {
                        cluster_id,
                        next_producer_id,
                    },
                    PROPOSAL_TIMEOUT,
                )
                .await?;
        }
        let broker = Broker {
            id: self.node_id,
            kafka_addr: config.advertised_addr(),
            rpc_addr: config.advertised_rpc(),
            admin_addr: config.admin_addr.to_string(),
            draining: false,
            listeners: config
                .security
                .resolve_listeners(config.kafka_addr, config.advertised_kafka_addr.as_deref())
                .unwrap_or_default()
                .into_iter()
                .map(|l| (l.name, l.advertised.unwrap_or_else(|| l.addr.to_string())))
                .collect(),
        };
        if self.controller.state().brokers.get(&self.node_id) != Some(&broker) {
            self.controller
                .propose(Command::RegisterBroker(broker), PROPOSAL_TIMEOUT)
                .await?;
        }
        Ok(())
    }

    /// Proposes a controller command from this node.
    ///
    /// # Errors
    ///
    /// The controller did not answer in time.
    pub async fn propose(&self, command: Command) -> Result<Reply, ControllerError> {
        self.controller.propose(command, PROPOSAL_TIMEOUT).await
    }

    /// Learns the addresses the controller has for every broker.
    pub fn learn_addresses(&self) {
        let state = self.controller.state();
        let mut book = self.addresses.write().unwrap_or_else(|p| p.into_inner());
        for broker in state.brokers.values() {
            book.insert(broker.id as NodeId, broker.rpc_addr.clone());
        }
    }

    /// The cluster's id (as the controller has it).
    pub fn cluster_id(&self) -> Option<String> {
        self.controller.state().cluster_id.clone()
    }

    /// Stops every Raft group here (after their replicas closed).
    pub async fn shutdown(&self) {
        for (group, raft) in self.groups.all() {
            if let Err(e) = raft.shutdown().await {
                tracing::debug!(group, error = %e, "Raft group did not stop cleanly");
            }
        }
    }

    /// True once the node is stopping.
    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    async fn handle_node(&self, from: NodeId, request: NodeRequest) -> NodeResponse {
        let not_leader = || NodeResponse::NotLeader {
            leader: self.controller.leader(),
        };
        match request {
            NodeRequest::Propose { command } => {
                if !self.controller.is_leader() {
                    return not_leader();
                }
                match self.controller.propose_here(&command).await {
                    Ok(Some((reply, index))) => NodeResponse::Done {
                        reply: Some(reply),
                        index,
                    },
                    Ok(None) => not_leader(),
                    Err(e) => NodeResponse::Error {
                        message: e.to_string(),
                    },
                }
            }
            NodeRequest::Join { node, rpc_addr } => {
                if let Some(addr) = rpc_addr {
                    self.addresses
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(node as NodeId, addr);
                }
                if !self.controller.is_leader() {
                    return not_leader();
                }
                let raft = &self.controller.group().raft;
                match raft.add_learner(node as NodeId, EmptyNode {}, false).await {
                    Ok(_) => {
                        tracing::info!(node, from, "node joined the controller as a learner");
                        NodeResponse::Done {
                            reply: None,
                            index: 0,
                        }
                    }
                    Err(e) => NodeResponse::Error {
                        message: e.to_string(),
                    },
                }
            }
            NodeRequest::Known { node } => {
                let state = self.controller.state();
                NodeResponse::Known {
                    cluster_id: state.cluster_id.clone(),
                    known: state.brokers.contains_key(&node) && !state.removed.contains(&node),
                }
            }
            NodeRequest::Pulse {
                leads,
                draining,
                starts,
            } => {
                self.pulse
                    .heard(from, leads.as_deref(), draining, &self.leaders);
                if let Some(starts) = starts {
                    self.pulse.heard_starts(from, &starts);
                }
                NodeResponse::Done {
                    reply: None,
                    index: 0,
                }
            }
            NodeRequest::WriteMarkers { markers } => {
                let Some(node) = self.node() else {
                    return NodeResponse::Error {
                        message: "this node is still starting".into(),
                    };
                };
                for marker in &markers {
                    if let Err(e) = crate::txn::coordinator::write_local(&node, marker).await {
                        return NodeResponse::Error {
                            message: format!("{}/{}: {e}", marker.topic, marker.partition),
                        };
                    }
                }
                NodeResponse::Done {
                    reply: None,
                    index: 0,
                }
            }
            NodeRequest::TransferLeadership { group, to } => {
                match ops::transfer_here(self, group, to).await {
                    Ok(()) => NodeResponse::Done {
                        reply: None,
                        index: 0,
                    },
                    Err(e) => NodeResponse::Error {
                        message: e.to_string(),
                    },
                }
            }
        }
    }

    /// Ties this cluster part to its node (once, as the node is made).
    pub fn attach(&self, node: &Arc<crate::node::Node>) {
        let _ = self.node.set(Arc::downgrade(node));
    }

    fn node(&self) -> Option<Arc<crate::node::Node>> {
        self.node.get().and_then(std::sync::Weak::upgrade)
    }

    /// The directory of the controller's log.
    pub fn controller_dir(config: &NodeConfig) -> PathBuf {
        config.data_dir.join("controller")
    }
}

#[async_trait::async_trait]
impl Service for Cluster {
    async fn raft(&self, request: RaftRequest) -> RaftResponse {
        if !self.taking_raft.load(std::sync::atomic::Ordering::Acquire) {
            return RaftResponse::Error(format!(
                "node {} is starting on an empty data directory",
                self.node_id
            ));
        }
        self.groups.handle(request).await
    }

    async fn node(&self, from: NodeId, request: Bytes) -> Bytes {
        let response = match serde_json::from_slice::<NodeRequest>(&request) {
            Ok(request) => self.handle_node(from, request).await,
            Err(e) => NodeResponse::Error {
                message: format!("not a node request: {e}"),
            },
        };
        Bytes::from(serde_json::to_vec(&response).expect("responses serialise"))
    }
}
