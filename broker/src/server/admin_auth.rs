//! The admin API's front door: TLS (with the listeners' certificate) and authentication.
//!
//! With `admin_auth` on, every request carries `Authorization: Basic` with a SCRAM user's
//! name and password (checked against the stored credential, as PLAIN is) or `Authorization:
//! Bearer` with `admin_api_token`. Reading (GET) takes any authenticated user; changing state
//! (any other method) takes a super user, as Redpanda's admin API does. A verified password is
//! remembered for [`VERIFIED_FOR`], so a dashboard polling `/v1/status` does not cost a PBKDF2
//! per request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::{constant_time, digest};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

use crate::node::Node;
use crate::security::Tls;
use crate::security::scram::Mechanism;

/// How long a verified basic-auth password is remembered.
pub(super) const VERIFIED_FOR: Duration = Duration::from_secs(60);
/// Passwords remembered at most (the oldest half is dropped beyond it).
const VERIFIED_MAX: usize = 1024;

/// Basic-auth passwords verified lately: hash of (user, password) -> (user, when).
#[derive(Debug, Default)]
pub(super) struct Verified(Mutex<HashMap<Vec<u8>, (String, Instant)>>);

impl Verified {
    fn key(user: &str, password: &str) -> Vec<u8> {
        let mut material = Vec::with_capacity(user.len() + password.len() + 1);
        material.extend_from_slice(user.as_bytes());
        material.push(0);
        material.extend_from_slice(password.as_bytes());
        digest::digest(&digest::SHA256, &material).as_ref().to_vec()
    }

    fn get(&self, key: &[u8]) -> Option<String> {
        let map = self.0.lock().ok()?;
        map.get(key)
            .filter(|(_, at)| at.elapsed() < VERIFIED_FOR)
            .map(|(user, _)| user.clone())
    }

    fn put(&self, key: Vec<u8>, user: String) {
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= VERIFIED_MAX {
                map.retain(|_, (_, at)| at.elapsed() < VERIFIED_FOR / 2);
            }
            map.insert(key, (user, Instant::now()));
        }
    }
}

/// The admin server's state for the middleware.
#[derive(Debug, Clone)]
pub(super) struct Gate {
    pub(super) node: Arc<Node>,
    pub(super) verified: Arc<Verified>,
}

fn unauthorized(why: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"silt\"")],
        axum::Json(serde_json::json!({ "error": why })),
    )
        .into_response()
}

/// Who the request comes from: `User:NAME`, or `None` with the refusal to send.
async fn principal(gate: &Gate, authorization: Option<String>) -> Result<String, Response> {
    let Some(value) = authorization else {
        return Err(unauthorized(
            "credentials needed (basic auth or a bearer token)",
        ));
    };
    let security = &gate.node.config.security;
    if let Some(token) = value.strip_prefix("Bearer ") {
        let expected = security.admin_api_token.expose();
        if !expected.is_empty()
            && constant_time::verify_slices_are_equal(token.trim().as_bytes(), expected.as_bytes())
                .is_ok()
        {
            return Ok("admin-api-token".to_string());
        }
        return Err(unauthorized("invalid bearer token"));
    }
    let Some(encoded) = value.strip_prefix("Basic ") else {
        return Err(unauthorized("unsupported authorization scheme"));
    };
    let decoded = B64
        .decode(encoded.trim())
        .ok()
        .and_then(|d| String::from_utf8(d).ok());
    let Some((user, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
        return Err(unauthorized("malformed basic credentials"));
    };
    let key = Verified::key(user, password);
    if let Some(user) = gate.verified.get(&key) {
        return Ok(format!("User:{user}"));
    }
    let credentials = gate
        .node
        .cluster
        .controller
        .state()
        .users
        .get(user)
        .cloned();
    let (user, password) = (user.to_string(), password.to_string());
    let verified = tokio::task::spawn_blocking(move || {
        let ok = credentials.is_some_and(|c| {
            Mechanism::ALL
                .into_iter()
                .rev()
                .any(|m| c.get(m).is_some_and(|c| c.verify_password(m, &password)))
        });
        ok.then_some(user)
    })
    .await
    .ok()
    .flatten();
    match verified {
        Some(user) => {
            gate.verified.put(key, user.clone());
            Ok(format!("User:{user}"))
        }
        None => {
            gate.node
                .security
                .stats
                .auth_failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err(unauthorized("invalid user or password"))
        }
    }
}

/// The middleware: authenticate, then let reads through and changes only for super users.
pub(super) async fn authenticate(
    State(gate): State<Gate>,
    mut request: Request,
    next: Next,
) -> Response {
    if !gate.node.security.admin_authenticates {
        return next.run(request).await;
    }
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let principal = match principal(&gate, authorization).await {
        Ok(p) => p,
        Err(refusal) => return refusal,
    };
    let reads = matches!(*request.method(), Method::GET | Method::HEAD);
    let super_user = principal == "admin-api-token" || gate.node.security.is_super_user(&principal);
    if !reads && !super_user {
        return (
            StatusCode::FORBIDDEN,
            axum::Json(serde_json::json!({
                "error": format!("{principal} is not a super user; changes take one")
            })),
        )
            .into_response();
    }
    // Reads of records (the archive's key lookups) check the caller's ACLs themselves.
    request
        .extensions_mut()
        .insert(super::admin_archive::AdminPrincipal {
            name: principal,
            super_user,
        });
    next.run(request).await
}

/// A TCP listener whose connections are TLS: handshakes run in their own tasks (a client that
/// stalls its handshake holds up nobody) and finished ones are handed to axum.
pub(super) struct TlsListener {
    local: SocketAddr,
    accepted: mpsc::Receiver<(TlsStream<tokio::net::TcpStream>, SocketAddr)>,
}

impl TlsListener {
    pub(super) fn new(listener: TcpListener, tls: Arc<Tls>, handshake: Duration) -> TlsListener {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let (tx, accepted) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (socket, peer) = match listener.accept().await {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "admin accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config());
                let handed = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(handshake, acceptor.accept(socket)).await {
                        Ok(Ok(stream)) => {
                            let _ = handed.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "admin TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "admin TLS handshake timed out"),
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        TlsListener { local, accepted }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(pair) => pair,
            // The accept task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
