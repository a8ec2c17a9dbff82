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
//!
//! On a TLS listener the handshake comes first; on a SASL listener only ApiVersions,
//! SaslHandshake and SaslAuthenticate are served until the client has authenticated, within
//! `sasl_handshake_timeout_ms`, in frames of at most 512 KiB (Kafka's
//! `sasl.server.max.receive.size`). A failed authentication is answered after
//! `auth_failure_delay_ms` (longer for an address that keeps failing) and the connection closed; a session past its lifetime (KIP-368) is
//! closed at its next request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::handlers::{self, Handled, ResponseFuture};
use crate::metrics::Metrics;
use crate::node::Node;
use crate::protocol::frame::LENGTH_PREFIX_BYTES;
use crate::protocol::{ParseError, Request, check_frame, encode_response, parse_request};
use crate::security::sasl::{Outcome, Session};

/// Bytes asked of the socket per read.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Largest frame from a client that has not authenticated yet.
const UNAUTHENTICATED_BYTES_MAX: u32 = 512 * 1024;

struct Pending {
    correlation_id: i32,
    api: ApiKey,
    version: i16,
    response: ResponseFuture,
    /// A bare SASL token after SaslHandshake v0: written with only a length prefix.
    raw: bool,
}

/// Takes a connection accepted on listener `listener`: TLS first if the listener has it
/// (within `sasl_handshake_timeout_ms`), then [`serve`].
pub(crate) async fn accept(
    node: Arc<Node>,
    socket: TcpStream,
    peer: SocketAddr,
    listener: usize,
    shutdown: watch::Receiver<bool>,
) {
    let _ = socket.set_nodelay(true);
    let security = &node.security;
    let spec = &security.listeners[listener];
    let settings = &node.config.security;
    let lifetime = Duration::from_millis(settings.connections_max_reauth_ms);
    let handshake = Duration::from_millis(settings.sasl_handshake_timeout_ms);
    let name: Arc<str> = Arc::from(spec.name.as_str());
    let sasl = spec.protocol.sasl();
    match (spec.protocol.tls(), security.tls.clone()) {
        (false, _) => {
            let (reader, writer) = socket.into_split();
            let session = Session::new(sasl, None, lifetime);
            serve(node.clone(), reader, writer, peer, name, session, shutdown).await;
        }
        (true, Some(tls)) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config());
            match tokio::time::timeout(handshake, acceptor.accept(socket)).await {
                Ok(Ok(stream)) => {
                    let principal = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|certs| certs.first())
                        .and_then(|cert| security.mapper.principal(cert));
                    let session = Session::new(sasl, principal, lifetime);
                    let (reader, writer) = tokio::io::split(stream);
                    serve(node.clone(), reader, writer, peer, name, session, shutdown).await;
                }
                Ok(Err(e)) => {
                    security.stats.tls_failed.fetch_add(1, Ordering::Relaxed);
                    security.log_refusal(peer, "TLS handshake failed", &e.to_string());
                }
                Err(_) => {
                    security.stats.auth_timeouts.fetch_add(1, Ordering::Relaxed);
                    security.log_refusal(peer, "TLS handshake timed out", "");
                }
            }
        }
        (true, None) => tracing::error!(listener = %spec.name, "TLS listener without certificates"),
    }
    node.metrics
        .connections_open
        .fetch_sub(1, Ordering::Relaxed);
}

/// Serves one connection until the client leaves, it breaks the protocol, or `shutdown` fires.
async fn serve<R, W>(
    node: Arc<Node>,
    mut reader: R,
    writer: W,
    peer: SocketAddr,
    listener: Arc<str>,
    mut session: Session,
    mut shutdown: watch::Receiver<bool>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let in_flight = node.config.requests_in_flight_max as usize;
    let (pending_tx, pending_rx) = mpsc::channel::<Pending>(in_flight);
    let write_side = tokio::spawn(write_responses(node.clone(), writer, pending_rx, peer));
    let max = node.config.request_bytes_max;
    let settings = &node.config.security;
    let auth_deadline = Instant::now() + Duration::from_millis(settings.sasl_handshake_timeout_ms);
    let ctx = Context {
        peer,
        host: Arc::from(peer.ip().to_string()),
        listener,
        failure_delay: Duration::from_millis(settings.auth_failure_delay_ms),
    };
    let mut buffer = BytesMut::with_capacity(READ_CHUNK_BYTES);
    loop {
        let limit = if session.ready() {
            max
        } else {
            max.min(UNAUTHENTICATED_BYTES_MAX)
        };
        let payload = match check_frame(&buffer, limit) {
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
                let ready = session.ready();
                let read = tokio::select! {
                    read = reader.read_buf(&mut buffer) => read,
                    _ = shutdown.changed() => break,
                    () = tokio::time::sleep_until(auth_deadline), if !ready => {
                        node.security.stats.auth_timeouts.fetch_add(1, Ordering::Relaxed);
                        node.security.log_refusal(peer, "did not authenticate in time", "");
                        break;
                    }
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
        let next = if session.expects_raw_token() {
            raw_token(&node, &mut session, payload, peer)
        } else {
            dispatch(&node, &mut session, payload, &ctx).await
        };
        match next {
            Next::Send(pending) => {
                if pending_tx.send(pending).await.is_err() {
                    break; // the write side stopped: the client went away
                }
            }
            Next::SendAndClose(pending) => {
                let _ = pending_tx.send(pending).await;
                break;
            }
            Next::Nothing => {}
            Next::Close => break,
        }
    }
    drop(pending_tx);
    let _ = write_side.await;
}

/// What the read loop does after a frame.
enum Next {
    /// Queue this response.
    Send(Pending),
    /// Queue this response, then close (a failed authentication).
    SendAndClose(Pending),
    /// Nothing to send (acks=0 produce).
    Nothing,
    /// Close now.
    Close,
}

/// What every request of a connection shares.
struct Context {
    peer: SocketAddr,
    host: Arc<str>,
    listener: Arc<str>,
    failure_delay: Duration,
}

/// One request frame: SASL requests change the session, anything else is authorized and
/// handed to the handlers as the session's principal.
async fn dispatch(
    node: &Arc<Node>,
    session: &mut Session,
    payload: bytes::Bytes,
    ctx: &Context,
) -> Next {
    let peer = ctx.peer;
    let request = match parse_request(payload) {
        Ok(request) => request,
        Err(ParseError::UnsupportedVersion {
            api: ApiKey::ApiVersions,
            version,
            correlation_id,
        }) => {
            tracing::debug!(%peer, version, "ApiVersions version unknown; answering with v0 (KIP-511)");
            let response = ResponseKind::ApiVersions(handlers::unsupported_version_response());
            return Next::Send(Pending {
                correlation_id,
                api: ApiKey::ApiVersions,
                version: 0,
                response: Box::pin(async { response }),
                raw: false,
            });
        }
        Err(e) => {
            tracing::warn!(%peer, error = %e, "closing connection");
            Metrics::add(&node.metrics.requests_rejected, 1);
            return Next::Close;
        }
    };
    let (correlation_id, api, version) =
        (request.header.correlation_id, request.api, request.version);
    let pending = |response: ResponseFuture| Pending {
        correlation_id,
        api,
        version,
        response,
        raw: false,
    };
    if matches!(
        request.body,
        RequestKind::SaslHandshake(_) | RequestKind::SaslAuthenticate(_)
    ) {
        let (response, close) = authenticate(node, session, &request, ctx.failure_delay, peer);
        return if close {
            node.security.log_refusal(peer, "authentication failed", "");
            Next::SendAndClose(pending(response))
        } else {
            Next::Send(pending(response))
        };
    }
    if let Some(reason) = refuse(session, api) {
        node.security.log_refusal(peer, reason, session.principal());
        Metrics::add(&node.metrics.requests_rejected, 1);
        return Next::Close;
    }
    let caller = node.security.caller(
        || node.cluster.controller.state(),
        session.principal().clone(),
        ctx.host.clone(),
        ctx.listener.clone(),
    );
    match handlers::handle(node, request, &caller, Some(peer)).await {
        Handled::Respond(response) => Next::Send(pending(response)),
        Handled::NoResponse => Next::Nothing,
        Handled::Close(reason) => {
            tracing::warn!(%peer, reason, "closing connection");
            Next::Close
        }
    }
}

/// A bare SASL token (after SaslHandshake v0): the exchange's next step.
fn raw_token(
    node: &Arc<Node>,
    session: &mut Session,
    token: bytes::Bytes,
    peer: SocketAddr,
) -> Next {
    let request =
        kafka_protocol::messages::SaslAuthenticateRequest::default().with_auth_bytes(token);
    let lookup = |user: &str| node.cluster.controller.state().users.get(user).cloned();
    let (response, failed) =
        match session.authenticate(&node.security, &request, lookup, std::time::Instant::now()) {
            Outcome::Reply(r) => (r, false),
            Outcome::Fail(r) => (r, true),
        };
    if failed {
        node.security.log_refusal(peer, "authentication failed", "");
        return Next::Close; // SaslHandshake v0: a failed exchange just closes the connection
    }
    Next::Send(Pending {
        correlation_id: 0,
        api: ApiKey::SaslAuthenticate,
        version: 0,
        response: Box::pin(async move { ResponseKind::SaslAuthenticate(response) }),
        raw: true,
    })
}

/// Why an ordinary request may not be served on this connection now, if it may not.
fn refuse(session: &Session, api: ApiKey) -> Option<&'static str> {
    if api == ApiKey::ApiVersions {
        return None;
    }
    if !session.ready() {
        return Some("request before SASL authentication; closing (ILLEGAL_SASL_STATE)");
    }
    if session.expired(std::time::Instant::now()) {
        return Some("SASL session expired without re-authentication; closing (KIP-368)");
    }
    None
}

/// SaslHandshake and SaslAuthenticate change the session here, in request order. The
/// response, and whether to close after it (a failed authentication, whose response waits
/// `failure_delay` first).
fn authenticate(
    node: &Arc<Node>,
    session: &mut Session,
    request: &Request,
    failure_delay: Duration,
    peer: SocketAddr,
) -> (ResponseFuture, bool) {
    let security = &node.security;
    let (response, failed) = match &request.body {
        RequestKind::SaslHandshake(body) => {
            match session.handshake(security, body, request.version) {
                Outcome::Reply(r) => (ResponseKind::SaslHandshake(r), false),
                Outcome::Fail(r) => (ResponseKind::SaslHandshake(r), true),
            }
        }
        RequestKind::SaslAuthenticate(body) => {
            let lookup = |user: &str| node.cluster.controller.state().users.get(user).cloned();
            match session.authenticate(security, body, lookup, std::time::Instant::now()) {
                Outcome::Reply(r) => (ResponseKind::SaslAuthenticate(r), false),
                Outcome::Fail(r) => (ResponseKind::SaslAuthenticate(r), true),
            }
        }
        // Only the two SASL requests are handed here; anything else closes the connection.
        _ => (
            ResponseKind::SaslHandshake(
                kafka_protocol::messages::SaslHandshakeResponse::default()
                    .with_error_code(crate::protocol::ErrorCode::IllegalSaslState.code()),
            ),
            true,
        ),
    };
    node.metrics.count_request(request.api as i16);
    let response: ResponseFuture = if failed {
        let wait = security.failure_delay(peer.ip(), failure_delay);
        Box::pin(async move {
            tokio::time::sleep(wait).await;
            response
        })
    } else {
        Box::pin(async move { response })
    };
    (response, failed)
}

async fn write_responses<W: AsyncWrite + Unpin>(
    node: Arc<Node>,
    mut writer: W,
    mut pending: mpsc::Receiver<Pending>,
    peer: SocketAddr,
) {
    while let Some(Pending {
        correlation_id,
        api,
        version,
        response,
        raw,
    }) = pending.recv().await
    {
        let response = response.await;
        let encoded = match (&response, raw) {
            (ResponseKind::SaslAuthenticate(r), true) => {
                let mut frame = bytes::BytesMut::with_capacity(4 + r.auth_bytes.len());
                frame.extend_from_slice(&(r.auth_bytes.len() as i32).to_be_bytes());
                frame.extend_from_slice(&r.auth_bytes);
                Ok(frame)
            }
            _ => encode_response(correlation_id, api, version, &response),
        };
        let frame = match encoded {
            Ok(frame) => frame,
            Err(e) => {
                tracing::error!(%peer, ?api, version, error = %e, "cannot encode response; closing connection");
                break;
            }
        };
        // Flushed every time: TLS keeps the tail of a record until flushed, and the client
        // is waiting for this response (a no-op on plain TCP).
        let written = match writer.write_all(&frame).await {
            Ok(()) => writer.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            tracing::debug!(%peer, error = %e, "write failed; closing connection");
            break;
        }
        Metrics::add(&node.metrics.bytes_sent, frame.len() as u64);
    }
    let _ = writer.shutdown().await;
}
