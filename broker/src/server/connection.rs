//! One client connection: read frames, hand requests to the handlers, write responses in
//! request order.
//!
//! The read side parses and dispatches requests one after another (so a produce's batches are
//! queued in the order the client sent them) and hands each response future to the write side
//! through a bounded channel: `requests_in_flight_max` requests of one connection may be in the
//! works at once; beyond that the reader waits, which pushes back on the client through TCP.
//! The write side awaits the futures in order and writes each response.
//!
//! A frame larger than `request_bytes_max`, a length prefix that cannot be, an unknown API key
//! or version (other than ApiVersions, which gets the v0 fallback), or bytes that do not decode:
//! one log line and the connection is closed, as Kafka does. Other connections never notice.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, ResponseKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, watch};

use crate::handlers::{self, Handled, ResponseFuture};
use crate::metrics::Metrics;
use crate::node::Node;
use crate::protocol::frame::LENGTH_PREFIX_BYTES;
use crate::protocol::{ParseError, check_frame, encode_response, parse_request};

/// Bytes asked of the socket per read.
const READ_CHUNK_BYTES: usize = 64 * 1024;

struct Pending {
    correlation_id: i32,
    api: ApiKey,
    version: i16,
    response: ResponseFuture,
}

/// Serves one connection until the client leaves, it breaks the protocol, or `shutdown` fires.
pub(crate) async fn serve(
    node: Arc<Node>,
    socket: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = socket.set_nodelay(true);
    let (mut reader, writer) = socket.into_split();
    let in_flight = node.config.requests_in_flight_max as usize;
    let (pending_tx, pending_rx) = mpsc::channel::<Pending>(in_flight);
    let write_side = tokio::spawn(write_responses(node.clone(), writer, pending_rx, peer));
    let max = node.config.request_bytes_max;
    let mut buffer = BytesMut::with_capacity(READ_CHUNK_BYTES);
    loop {
        let payload = match check_frame(&buffer, max) {
            Ok(Some(size)) => {
                let mut frame = buffer.split_to(LENGTH_PREFIX_BYTES + size);
                let _ = frame.split_to(LENGTH_PREFIX_BYTES);
                Metrics::add(
                    &node.metrics.bytes_received,
                    (LENGTH_PREFIX_BYTES + size) as u64,
                );
                frame.freeze()
            }
            Ok(None) => {
                buffer.reserve(READ_CHUNK_BYTES);
                let read = tokio::select! {
                    read = reader.read_buf(&mut buffer) => read,
                    _ = shutdown.changed() => break,
                };
                match read {
                    Ok(0) => break,
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "read failed; closing connection");
                        break;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection");
                Metrics::add(&node.metrics.requests_rejected, 1);
                break;
            }
        };
        let pending = match parse_request(payload) {
            Ok(request) => {
                let correlation_id = request.header.correlation_id;
                let (api, version) = (request.api, request.version);
                match handlers::handle(&node, request, Some(peer)).await {
                    Handled::Respond(response) => Pending {
                        correlation_id,
                        api,
                        version,
                        response,
                    },
                    Handled::NoResponse => continue,
                    Handled::Close(reason) => {
                        tracing::warn!(%peer, reason, "closing connection");
                        break;
                    }
                }
            }
            Err(ParseError::UnsupportedVersion {
                api: ApiKey::ApiVersions,
                version,
                correlation_id,
            }) => {
                tracing::debug!(%peer, version, "ApiVersions version unknown; answering with v0 (KIP-511)");
                let response = ResponseKind::ApiVersions(handlers::unsupported_version_response());
                Pending {
                    correlation_id,
                    api: ApiKey::ApiVersions,
                    version: 0,
                    response: Box::pin(async { response }),
                }
            }
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection");
                Metrics::add(&node.metrics.requests_rejected, 1);
                break;
            }
        };
        if pending_tx.send(pending).await.is_err() {
            break; // the write side stopped: the client went away
        }
    }
    drop(pending_tx);
    let _ = write_side.await;
}

async fn write_responses(
    node: Arc<Node>,
    mut writer: OwnedWriteHalf,
    mut pending: mpsc::Receiver<Pending>,
    peer: SocketAddr,
) {
    while let Some(Pending {
        correlation_id,
        api,
        version,
        response,
    }) = pending.recv().await
    {
        let response = response.await;
        let frame = match encode_response(correlation_id, api, version, &response) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::error!(%peer, ?api, version, error = %e, "cannot encode response; closing connection");
                break;
            }
        };
        if let Err(e) = writer.write_all(&frame).await {
            tracing::debug!(%peer, error = %e, "write failed; closing connection");
            break;
        }
        Metrics::add(&node.metrics.bytes_sent, frame.len() as u64);
    }
    let _ = writer.shutdown().await;
    node.metrics
        .connections_open
        .fetch_sub(1, Ordering::Relaxed);
}
