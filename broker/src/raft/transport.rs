//! TCP between the nodes of a cluster.
//!
//! Each node dials every peer it must talk to once: one connection per direction of a node
//! pair, whatever the number of Raft groups they share. Requests of every group travel on it,
//! each tagged with an id, and are answered on the same connection in any order. A writer task
//! per connection coalesces whatever is queued into one `write`, so the AppendEntries and
//! heartbeats of many groups cost one system call.
//!
//! # Wire format
//!
//! ```text
//! hello  = "SILTRPC1", u64 node id of the dialer          (first bytes of a connection)
//! frame  = u32 length (of what follows), u8 type, u64 request id, payload
//!   type 1 Raft request    payload: raft::codec request
//!   type 2 Raft response   payload: raft::codec response
//!   type 3 node request    payload: JSON (see crate::cluster)
//!   type 4 node response   payload: JSON
//! ```
//!
//! A frame longer than [`FRAME_BYTES_MAX`] ends the connection. A connection that fails fails
//! every request waiting on it (the caller sees "unreachable" and backs off); the next request
//! dials again, at most every [`REDIAL_INTERVAL`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

use super::NodeId;
use super::codec::{
    RaftRequest, RaftResponse, decode_request, decode_response, encode_request, encode_response,
};
use super::network::{NetError, Router};

/// First bytes of a connection.
pub const MAGIC: &[u8; 8] = b"SILTRPC1";
/// Largest frame accepted (a snapshot or a run of large batches).
pub const FRAME_BYTES_MAX: u32 = 256 << 20;
/// Least time between two dials of one peer after a failure.
pub const REDIAL_INTERVAL: Duration = Duration::from_millis(200);
/// Longest wait for a connection to a peer to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Frames queued on one connection before callers wait.
const QUEUED_FRAMES_MAX: usize = 4096;
/// Bytes one coalesced write gathers at most.
const WRITE_BYTES_MAX: usize = 8 << 20;

const FRAME_HEADER: usize = 1 + 8;
const RAFT_REQUEST: u8 = 1;
const RAFT_RESPONSE: u8 = 2;
const NODE_REQUEST: u8 = 3;
const NODE_RESPONSE: u8 = 4;

/// What a node answers to requests from its peers.
#[async_trait::async_trait]
pub trait Service: Send + Sync + 'static {
    /// A Raft request for one of this node's groups.
    async fn raft(&self, request: RaftRequest) -> RaftResponse;
    /// A node request (JSON in, JSON out).
    async fn node(&self, from: NodeId, request: Bytes) -> Bytes;
}

/// Where a node is, as this node knows it (the controller's registry, the seeds).
pub type Resolver = Arc<dyn Fn(NodeId) -> Option<String> + Send + Sync>;

/// Counters of the transport (for `/metrics`).
#[derive(Debug, Default)]
pub struct TransportMetrics {
    /// Frames sent.
    pub frames_sent: AtomicU64,
    /// Writes made (each carries one or more frames).
    pub writes: AtomicU64,
    /// Bytes sent.
    pub bytes_sent: AtomicU64,
    /// Frames received.
    pub frames_received: AtomicU64,
    /// Bytes received (frame payloads).
    pub bytes_received: AtomicU64,
    /// Connections dialed.
    pub dials: AtomicU64,
    /// Dials or connections that failed.
    pub failures: AtomicU64,
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<(u8, Bytes)>>>>;

/// An open connection to a peer.
struct Conn {
    frames: mpsc::Sender<Bytes>,
    pending: Pending,
    closed: watch::Receiver<bool>,
}

#[derive(Default)]
struct Peer {
    conn: Option<Arc<Conn>>,
    failed_at: Option<tokio::time::Instant>,
}

/// This node's side of the cluster network: its dialed connections.
pub struct Transport {
    node: NodeId,
    resolve: Resolver,
    peers: Mutex<HashMap<NodeId, Arc<tokio::sync::Mutex<Peer>>>>,
    next_id: AtomicU64,
    /// Counters.
    pub metrics: Arc<TransportMetrics>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

fn frame(kind: u8, id: u64, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + FRAME_HEADER + payload.len());
    out.put_u32(u32::try_from(FRAME_HEADER + payload.len()).expect("frames stay below 4 GiB"));
    out.put_u8(kind);
    out.put_u64(id);
    out.put_slice(payload);
    out.freeze()
}

/// Reads one frame: (type, id, payload); `None` at a clean end of stream.
async fn read_frame(
    stream: &mut (impl AsyncReadExt + Unpin),
) -> std::io::Result<Option<(u8, u64, Bytes)>> {
    let mut length = [0u8; 4];
    match stream.read_exact(&mut length).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let length = u32::from_be_bytes(length);
    if !(FRAME_HEADER as u32..=FRAME_BYTES_MAX).contains(&length) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {length} bytes (at most {FRAME_BYTES_MAX})"),
        ));
    }
    let mut body = vec![0u8; length as usize];
    stream.read_exact(&mut body).await?;
    let mut body = Bytes::from(body);
    let kind = body.get_u8();
    let id = body.get_u64();
    Ok(Some((kind, id, body)))
}

/// Writes frames from `frames` to `stream`, as many as are queued in one write.
async fn write_frames(
    mut stream: impl AsyncWriteExt + Unpin,
    mut frames: mpsc::Receiver<Bytes>,
    metrics: Arc<TransportMetrics>,
) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    while let Some(first) = frames.recv().await {
        out.clear();
        out.extend_from_slice(&first);
        let mut count = 1u64;
        while out.len() < WRITE_BYTES_MAX {
            match frames.try_recv() {
                Ok(more) => {
                    out.extend_from_slice(&more);
                    count += 1;
                }
                Err(_) => break,
            }
        }
        stream.write_all(&out).await?;
        metrics.frames_sent.fetch_add(count, Ordering::Relaxed);
        metrics.writes.fetch_add(1, Ordering::Relaxed);
        metrics
            .bytes_sent
            .fetch_add(out.len() as u64, Ordering::Relaxed);
    }
    Ok(())
}

impl Transport {
    /// The transport of node `node`, finding peers through `resolve`.
    pub fn new(node: NodeId, resolve: Resolver) -> Arc<Transport> {
        Arc::new(Transport {
            node,
            resolve,
            peers: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            metrics: Arc::default(),
        })
    }

    fn peer(&self, target: NodeId) -> Arc<tokio::sync::Mutex<Peer>> {
        self.peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(target)
            .or_default()
            .clone()
    }

    /// The open connection to `target`, dialing it if needed.
    async fn conn(&self, target: NodeId) -> Result<Arc<Conn>, NetError> {
        let unreachable = |reason: String| NetError::Unreachable {
            node: target,
            reason,
        };
        let peer = self.peer(target);
        let mut peer = peer.lock().await;
        if let Some(conn) = &peer.conn {
            if !*conn.closed.borrow() {
                return Ok(conn.clone());
            }
            peer.conn = None;
        }
        if let Some(failed_at) = peer.failed_at
            && failed_at.elapsed() < REDIAL_INTERVAL
        {
            return Err(unreachable("failed a moment ago".into()));
        }
        let Some(addr) = (self.resolve)(target) else {
            return Err(unreachable("address unknown".into()));
        };
        self.metrics.dials.fetch_add(1, Ordering::Relaxed);
        let dialed = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr)).await;
        let stream = match dialed {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                peer.failed_at = Some(tokio::time::Instant::now());
                self.metrics.failures.fetch_add(1, Ordering::Relaxed);
                return Err(unreachable(format!("{addr}: {e}")));
            }
            Err(_) => {
                peer.failed_at = Some(tokio::time::Instant::now());
                self.metrics.failures.fetch_add(1, Ordering::Relaxed);
                return Err(unreachable(format!("{addr}: connect timed out")));
            }
        };
        let _ = stream.set_nodelay(true);
        let (mut read, mut write) = stream.into_split();
        let mut hello = Vec::with_capacity(16);
        hello.extend_from_slice(MAGIC);
        hello.extend_from_slice(&self.node.to_be_bytes());
        if let Err(e) = write.write_all(&hello).await {
            peer.failed_at = Some(tokio::time::Instant::now());
            return Err(unreachable(format!("{addr}: {e}")));
        }
        let (frames_tx, frames_rx) = mpsc::channel(QUEUED_FRAMES_MAX);
        let pending: Pending = Arc::default();
        let (closed_tx, closed_rx) = watch::channel(false);
        let closed_tx = Arc::new(closed_tx);
        {
            let closed = closed_tx.clone();
            let metrics = self.metrics.clone();
            tokio::spawn(async move {
                if let Err(e) = write_frames(write, frames_rx, metrics).await {
                    tracing::debug!(target, error = %e, "connection to a peer failed (writing)");
                }
                let _ = closed.send(true);
            });
        }
        {
            let pending = pending.clone();
            let metrics = self.metrics.clone();
            tokio::spawn(async move {
                loop {
                    match read_frame(&mut read).await {
                        Ok(Some((kind, id, payload))) => {
                            metrics.frames_received.fetch_add(1, Ordering::Relaxed);
                            metrics
                                .bytes_received
                                .fetch_add(payload.len() as u64, Ordering::Relaxed);
                            let waiter = pending
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .remove(&id);
                            if let Some(waiter) = waiter {
                                let _ = waiter.send((kind, payload));
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::debug!(target, error = %e, "connection to a peer failed (reading)");
                            break;
                        }
                    }
                }
                let _ = closed_tx.send(true);
                // Everyone still waiting hears "unreachable" now, not at their timeout.
                pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
            });
        }
        let conn = Arc::new(Conn {
            frames: frames_tx,
            pending,
            closed: closed_rx,
        });
        peer.conn = Some(conn.clone());
        peer.failed_at = None;
        tracing::debug!(from = self.node, to = target, %addr, "connected to a peer");
        Ok(conn)
    }

    /// Sends one request frame to `target` and waits for its answer.
    async fn exchange(
        &self,
        target: NodeId,
        kind: u8,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<(u8, Bytes), NetError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let conn = match tokio::time::timeout_at(deadline, self.conn(target)).await {
            Ok(conn) => conn?,
            Err(_) => {
                return Err(NetError::Timeout {
                    node: target,
                    after: timeout,
                });
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        conn.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        let sent = conn.frames.send(frame(kind, id, payload)).await;
        if sent.is_err() {
            conn.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            return Err(NetError::Unreachable {
                node: target,
                reason: "connection closed".into(),
            });
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(NetError::Unreachable {
                node: target,
                reason: "connection closed".into(),
            }),
            Err(_) => {
                conn.pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                Err(NetError::Timeout {
                    node: target,
                    after: timeout,
                })
            }
        }
    }

    /// Sends a node request (JSON) to `target` and returns its answer.
    ///
    /// # Errors
    ///
    /// [`NetError`] when no answer came.
    pub async fn node_request(
        &self,
        target: NodeId,
        request: &[u8],
        timeout: Duration,
    ) -> Result<Bytes, NetError> {
        let (kind, payload) = self
            .exchange(target, NODE_REQUEST, request, timeout)
            .await?;
        if kind != NODE_RESPONSE {
            return Err(NetError::Unreachable {
                node: target,
                reason: format!("answered with frame type {kind}"),
            });
        }
        Ok(payload)
    }

    /// Forgets the connection to `target` (it left the cluster).
    pub fn forget(&self, target: NodeId) {
        self.peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&target);
    }
}

#[async_trait::async_trait]
impl Router for Transport {
    async fn call(
        &self,
        target: NodeId,
        request: RaftRequest,
        timeout: Duration,
    ) -> Result<RaftResponse, NetError> {
        let payload = encode_request(&request);
        let (kind, answer) = self
            .exchange(target, RAFT_REQUEST, &payload, timeout)
            .await?;
        if kind != RAFT_RESPONSE {
            return Err(NetError::Unreachable {
                node: target,
                reason: format!("answered with frame type {kind}"),
            });
        }
        decode_response(answer).map_err(|e| NetError::Unreachable {
            node: target,
            reason: e.to_string(),
        })
    }
}

/// Serves the connections peers dial to this node until `stop`.
pub async fn serve(
    listener: TcpListener,
    service: Arc<dyn Service>,
    metrics: Arc<TransportMetrics>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let service = service.clone();
                let metrics = metrics.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_connection(stream, service, metrics, stop).await {
                        tracing::debug!(%peer, error = %e, "peer connection ended");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accepting a peer connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    service: Arc<dyn Service>,
    metrics: Arc<TransportMetrics>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let (mut read, write) = stream.into_split();
    let mut hello = [0u8; 16];
    read.read_exact(&mut hello).await?;
    if &hello[..8] != MAGIC {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a silt node (bad hello)",
        ));
    }
    let from = u64::from_be_bytes(hello[8..16].try_into().expect("8 bytes"));
    let (frames_tx, frames_rx) = mpsc::channel(QUEUED_FRAMES_MAX);
    let writer = tokio::spawn(write_frames(write, frames_rx, metrics.clone()));
    loop {
        let next = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            next = read_frame(&mut read) => next,
        };
        let Some((kind, id, payload)) = next? else {
            break;
        };
        metrics.frames_received.fetch_add(1, Ordering::Relaxed);
        metrics
            .bytes_received
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        let service = service.clone();
        let frames = frames_tx.clone();
        tokio::spawn(async move {
            let answer = match kind {
                RAFT_REQUEST => {
                    let response = match decode_request(payload) {
                        Ok(request) => service.raft(request).await,
                        Err(e) => RaftResponse::Error(e.to_string()),
                    };
                    frame(RAFT_RESPONSE, id, &encode_response(&response))
                }
                NODE_REQUEST => frame(NODE_RESPONSE, id, &service.node(from, payload).await),
                other => {
                    let response = RaftResponse::Error(format!("unknown frame type {other}"));
                    frame(RAFT_RESPONSE, id, &encode_response(&response))
                }
            };
            let _ = frames.send(answer).await;
        });
    }
    drop(frames_tx);
    let _ = writer.await;
    Ok(())
}
