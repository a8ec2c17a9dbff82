//! The tokio shell: listeners, connections, the admin HTTP server, background tasks, and a
//! clean shutdown.

mod admin;
mod admin_archive;
mod admin_auth;
mod admin_status;
mod connection;
mod console;
mod rest_groups;
mod rest_records;
mod rest_v3;
mod rest_v3_write;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use silt_config::NodeConfig;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::cluster::{Cluster, ClusterError, reconcile};
use crate::log::{Clock, DiskStorage, LogError, Storage, SystemClock};
use crate::node::Node;
use crate::retention;

/// Time given to a node of a cluster to hand its leaderships over at shutdown.
const LEADERSHIP_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Time given to open connections to finish their responses at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The data directory could not be opened.
    #[error(transparent)]
    Data(#[from] LogError),
    /// A listener could not bind.
    #[error("cannot listen on {addr} ({what})")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Settings that disagree with each other.
    #[error(transparent)]
    Config(#[from] silt_config::ConfigError),
    /// The node could not take its place in its cluster.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// TLS certificates or principal rules that do not load.
    #[error(transparent)]
    Tls(#[from] crate::security::TlsError),
    /// The archive's bucket or endpoint did not answer as a bucket should, at startup.
    #[error(transparent)]
    Archive(#[from] silt_archiver::ArchiveError),
}

/// Checks, before anything is opened, that an archive in an object store answers: a wrong
/// bucket, wrong credentials or a dead endpoint is named at once instead of surfacing later
/// as KAFKA_STORAGE_ERROR. A local directory needs no check.
async fn check_archive(config: &NodeConfig) -> Result<(), ServerError> {
    let silt_config::ArchiveTarget::Url(target) = &config.archive else {
        return Ok(());
    };
    if config.archive_startup_check_ms == 0
        || !target.contains("://")
        || target.starts_with("file:")
    {
        return Ok(());
    }
    let remote = silt_archiver::Remote::open(target)?;
    remote
        .check(Duration::from_millis(config.archive_startup_check_ms))
        .await?;
    Ok(())
}

/// A bound, loaded node, ready to serve.
#[derive(Debug)]
pub struct Server {
    node: Arc<Node>,
    kafka: Vec<TcpListener>,
    admin: TcpListener,
    stop: (watch::Sender<bool>, watch::Receiver<bool>),
}

async fn listen(what: &'static str, addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { what, addr, source })
}

impl Server {
    /// Opens the data directory, binds the listeners, takes this node's place in its cluster
    /// (founding it, as a cluster of one, when there are no seeds) and opens the replicas the
    /// controller gives it.
    ///
    /// # Errors
    ///
    /// [`ServerError`] naming the path, address or setting at fault.
    pub async fn bind(config: NodeConfig) -> Result<Server, ServerError> {
        Server::bind_with(config, Arc::new(DiskStorage), Arc::new(SystemClock)).await
    }

    /// [`Server::bind`] over a given storage and clock.
    ///
    /// # Errors
    ///
    /// As [`Server::bind`].
    pub async fn bind_with(
        mut config: NodeConfig,
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
    ) -> Result<Server, ServerError> {
        let mut listeners = config
            .security
            .resolve_listeners(config.kafka_addr, config.advertised_kafka_addr.as_deref())
            .map_err(silt_config::ConfigError::Conflict)?;
        let mut kafka = Vec::new();
        for listener in &mut listeners {
            let socket = listen("Kafka API", listener.addr).await?;
            // Port 0 asks the OS for a free port: from here on the node knows the real ones.
            if let Ok(bound) = socket.local_addr() {
                listener.addr = bound;
            }
            kafka.push(socket);
        }
        config.kafka_addr = listeners[0].addr;
        if !config.security.listeners.is_empty() {
            config.security.listeners =
                listeners.iter().map(|l| (l.name.clone(), l.addr)).collect();
        }
        let admin = listen("admin HTTP", config.admin_addr).await?;
        let rpc = listen("node RPC", config.rpc_addr).await?;
        if let Ok(bound) = admin.local_addr() {
            config.admin_addr = bound;
        }
        if let Ok(bound) = rpc.local_addr() {
            config.rpc_addr = bound;
        }
        config.check()?;
        check_archive(&config).await?;
        let security = Arc::new(crate::security::Security::new(&config, listeners)?);
        let identity = {
            let (config, storage) = (config.clone(), storage.clone());
            tokio::task::spawn_blocking(move || Node::identity(&config, storage.as_ref()))
                .await
                .map_err(|e| LogError::Corrupt {
                    path: "<data dir>".into(),
                    position: 0,
                    reason: e.to_string(),
                })??
        };
        let stop = watch::channel(false);
        let cluster = Cluster::start(
            &config,
            storage.clone(),
            clock.clone(),
            rpc,
            (identity.cluster_id, identity.next_producer_id),
            identity.fresh,
            stop.1.clone(),
        )
        .await?;
        let runtime = tokio::runtime::Handle::current();
        let node = tokio::task::spawn_blocking(move || {
            Node::open(config, storage, clock, runtime, cluster, security)
        })
        .await
        .map_err(|e| LogError::Corrupt {
            path: "<data dir>".into(),
            position: 0,
            reason: e.to_string(),
        })??;
        crate::security::Security::bootstrap(&node).await;
        reconcile::adopt_found(&node).await;
        reconcile::once(&node).await;
        // A node on its own makes its group log at once (taking over one from before
        // clusters); in a cluster it waits for the first group request and enough brokers.
        if let Err(e) = node.ensure_group_topic().await {
            tracing::debug!(error = %e, "the group log waits");
        }
        node.groups.refresh_ownership().await;
        Ok(Server {
            node,
            kafka,
            admin,
            stop,
        })
    }

    /// The address the Kafka API listens on (its first listener's).
    pub fn kafka_addr(&self) -> SocketAddr {
        self.node.config.kafka_addr
    }

    /// Every Kafka listener with its bound address.
    pub fn listeners(&self) -> &[silt_config::Listener] {
        &self.node.security.listeners
    }

    /// The address of the admin HTTP server.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .unwrap_or(self.node.config.admin_addr)
    }

    /// The address other nodes reach this one on.
    pub fn rpc_addr(&self) -> SocketAddr {
        self.node.config.rpc_addr
    }

    /// The node.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Serves until `shutdown` completes, then stops accepting, lets open connections finish
    /// their responses, and closes every partition log (flush, indexes, clean-shutdown marker).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server {
            node,
            kafka,
            admin,
            stop: (stop_tx, stop_rx),
        } = self;
        let mut background = JoinSet::new();
        background.spawn(reconcile::run(node.clone(), stop_rx.clone()));
        background.spawn(crate::cluster::pulse::run(node.clone(), stop_rx.clone()));
        background.spawn(crate::cluster::voters::run(node.clone(), stop_rx.clone()));
        background.spawn(admin::serve(node.clone(), admin, stop_rx.clone()));
        background.spawn(retention::run(node.clone(), stop_rx.clone()));
        background.spawn(crate::compaction::run(node.clone(), stop_rx.clone()));
        background.spawn(crate::group::coordinator::run(
            node.groups.clone(),
            stop_rx.clone(),
        ));
        background.spawn(crate::txn::coordinator::run(node.clone(), stop_rx.clone()));
        if let Some(tiering) = node.tiering.clone() {
            background.spawn(tiering.run(node.clone(), stop_rx.clone()));
        }
        if let Some(tls) = node.security.tls.clone() {
            let interval = Duration::from_millis(node.config.security.tls_reload_interval_ms);
            background.spawn(tls.watch(interval, stop_rx.clone()));
        }
        let connections = accept_loop(node.clone(), kafka, stop_rx.clone(), shutdown).await;
        // In a cluster, leaders move before the node goes: clients are told NOT_LEADER and
        // carry on with the new leaders instead of waiting out an election timeout.
        if node.cluster.controller.state().brokers.len() > 1 {
            crate::cluster::pulse::drain(&node, LEADERSHIP_DRAIN_TIMEOUT).await;
        }
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            let mut connections = connections;
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing logs anyway");
        }
        while background.join_next().await.is_some() {}
        node.shutdown().await;
        tracing::info!("stopped");
    }
}

async fn accept_loop(
    node: Arc<Node>,
    listeners: Vec<TcpListener>,
    stop: watch::Receiver<bool>,
    shutdown: impl Future<Output = ()>,
) -> JoinSet<()> {
    let limit = Arc::new(Semaphore::new(node.config.connections_max as usize));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let any = futures::future::select_all(
            listeners
                .iter()
                .enumerate()
                .map(|(i, l)| Box::pin(async move { l.accept().await.map(|(s, p)| (s, p, i)) })),
        );
        let accepted = tokio::select! {
            (accepted, _, _) = any => accepted,
            () = &mut shutdown => break,
        };
        // Reap finished connection tasks so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
        match accepted {
            Ok((socket, peer, listener)) => {
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, max = node.config.connections_max, "connection limit reached; refusing");
                    drop(socket);
                    continue;
                };
                node.metrics
                    .connections_accepted
                    .fetch_add(1, Ordering::Relaxed);
                node.metrics
                    .connections_open
                    .fetch_add(1, Ordering::Relaxed);
                let node = node.clone();
                let stop = stop.clone();
                connections.spawn(async move {
                    connection::accept(node, socket, peer, listener, stop).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    connections
}
