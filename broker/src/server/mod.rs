//! The tokio shell: listeners, connections, the admin HTTP server, background tasks, and a
//! clean shutdown.

mod admin;
mod connection;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use silt_config::NodeConfig;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::log::{Clock, DiskStorage, LogError, Storage, SystemClock};
use crate::node::Node;
use crate::retention;

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
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// A bound, loaded node, ready to serve.
#[derive(Debug)]
pub struct Server {
    node: Arc<Node>,
    kafka: TcpListener,
    admin: TcpListener,
}

impl Server {
    /// Opens the data directory (recovering every partition) and binds both listeners.
    ///
    /// # Errors
    ///
    /// [`ServerError`] naming the path or address at fault.
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
        let kafka_addr = config.kafka_addr;
        let admin_addr = config.admin_addr;
        let kafka = TcpListener::bind(kafka_addr)
            .await
            .map_err(|source| ServerError::Bind {
                what: "Kafka API",
                addr: kafka_addr,
                source,
            })?;
        let admin = TcpListener::bind(admin_addr)
            .await
            .map_err(|source| ServerError::Bind {
                what: "admin HTTP",
                addr: admin_addr,
                source,
            })?;
        // Port 0 asks the OS for a free port: from here on the node knows the real ones.
        if let Ok(bound) = kafka.local_addr() {
            config.kafka_addr = bound;
        }
        if let Ok(bound) = admin.local_addr() {
            config.admin_addr = bound;
        }
        let runtime = tokio::runtime::Handle::current();
        let node = tokio::task::spawn_blocking(move || Node::open(config, storage, clock, runtime))
            .await
            .map_err(|e| LogError::Corrupt {
                path: "<data dir>".into(),
                position: 0,
                reason: e.to_string(),
            })??;
        Ok(Server { node, kafka, admin })
    }

    /// The address the Kafka API listens on.
    pub fn kafka_addr(&self) -> SocketAddr {
        self.kafka
            .local_addr()
            .unwrap_or(self.node.config.kafka_addr)
    }

    /// The address of the admin HTTP server.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .unwrap_or(self.node.config.admin_addr)
    }

    /// The node.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Serves until `shutdown` completes, then stops accepting, lets open connections finish
    /// their responses, and closes every partition log (flush, indexes, clean-shutdown marker).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server { node, kafka, admin } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut background = JoinSet::new();
        background.spawn(admin::serve(node.clone(), admin, stop_rx.clone()));
        background.spawn(retention::run(node.clone(), stop_rx.clone()));
        background.spawn(crate::group::coordinator::run(
            node.groups.clone(),
            stop_rx.clone(),
        ));
        if let Some(tiering) = node.tiering.clone() {
            background.spawn(tiering.run(node.clone(), stop_rx.clone()));
        }
        let connections = accept_loop(node.clone(), kafka, stop_rx.clone(), shutdown).await;
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
    listener: TcpListener,
    stop: watch::Receiver<bool>,
    shutdown: impl Future<Output = ()>,
) -> JoinSet<()> {
    let limit = Arc::new(Semaphore::new(node.config.connections_max as usize));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        // Reap finished connection tasks so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
        match accepted {
            Ok((socket, peer)) => {
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
                    connection::serve(node, socket, peer, stop).await;
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
