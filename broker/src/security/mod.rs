//! Who a client is and what it may do: listeners with TLS and SASL, SCRAM users, ACLs.
//!
//! - [`scram`]: the SCRAM exchange and PLAIN, checked against stored SCRAM credentials.
//! - [`sasl`]: one connection's SaslHandshake/SaslAuthenticate state, re-authentication.
//! - [`acl`]: bindings, filters and the index that authorizes a request.
//! - [`tls`]: rustls from PEM files, reloaded when they change; principals from certificates.
//!
//! Users and ACLs live in the controller's state ([`crate::controller::ClusterState`]), so
//! they are durable and the same on every node. [`Security`] is the node's view: its
//! listeners, whether requests are authorized, and an index of the ACLs rebuilt only when the
//! controller's ACLs change. Each request carries a [`Caller`], which handlers ask before
//! they act.

pub mod acl;
pub mod sasl;
pub mod scram;
pub mod tls;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use silt_config::{Listener, NodeConfig};

use crate::controller::ClusterState;
use acl::{AclIndex, Operation, ResourceType};

pub use tls::{PrincipalMapper, Tls, TlsError};

/// The principal of a client that did not authenticate.
pub const ANONYMOUS: &str = "User:ANONYMOUS";
/// The cluster resource's name.
pub const CLUSTER: &str = "kafka-cluster";

/// Counters of authentication and authorization, for `/metrics` and `/v1/status`.
#[derive(Debug, Default)]
pub struct SecurityStats {
    /// SASL authentications that succeeded (re-authentications included).
    pub auth_succeeded: AtomicU64,
    /// SASL authentications that failed (wrong password, unknown user, bad messages).
    pub auth_failed: AtomicU64,
    /// Re-authentications (KIP-368).
    pub reauthenticated: AtomicU64,
    /// TLS handshakes that failed.
    pub tls_failed: AtomicU64,
    /// Connections closed for not authenticating in time, or for a session that expired.
    pub auth_timeouts: AtomicU64,
    /// Requests (or parts of requests) refused by the ACLs.
    pub denied: AtomicU64,
}

/// The node's security: listeners, TLS, whether ACLs are checked, and the ACL index.
#[derive(Debug)]
pub struct Security {
    /// The Kafka listeners, with the addresses they are bound to.
    pub listeners: Vec<Listener>,
    /// ACLs are checked on every request.
    pub authorizes: bool,
    /// The admin HTTP API asks for credentials.
    pub admin_authenticates: bool,
    /// TLS, when configured.
    pub tls: Option<Arc<Tls>>,
    /// Certificate subject -> principal.
    pub mapper: PrincipalMapper,
    /// SASL mechanisms offered.
    pub mechanisms: Vec<String>,
    /// Counters.
    pub stats: SecurityStats,
    super_users: HashSet<String>,
    allow_if_no_acl: bool,
    index: RwLock<(u64, Arc<AclIndex>)>,
    refusals: Mutex<(Option<std::time::Instant>, u64)>,
    failures: Mutex<std::collections::HashMap<std::net::IpAddr, (std::time::Instant, u32)>>,
}

/// Failed logins from one address are remembered this long ...
pub const FAILURE_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);
/// ... and each `FAILURES_PER_STEP` of them in the window adds `auth_failure_delay_ms` to the
/// next refusal's wait, up to `FAILURE_DELAY_STEPS_MAX` times it.
pub const FAILURES_PER_STEP: u32 = 20;
/// See [`FAILURES_PER_STEP`].
pub const FAILURE_DELAY_STEPS_MAX: u32 = 10;
/// Addresses whose failures are tracked at most (the oldest are forgotten first).
const FAILURE_HOSTS_MAX: usize = 10_000;

/// At most one log line per this long about refused connections.
pub const REFUSAL_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

impl Security {
    /// The node's security from its settings; `listeners` are the bound ones.
    ///
    /// # Errors
    ///
    /// [`TlsError`] when the certificate files or a principal rule do not load.
    pub fn new(config: &NodeConfig, listeners: Vec<Listener>) -> Result<Security, TlsError> {
        let s = &config.security;
        Ok(Security {
            authorizes: s.authorizes(&listeners),
            admin_authenticates: s.admin_authenticates(&listeners),
            tls: Tls::load(s)?,
            mapper: PrincipalMapper::new(&s.principal_rules)?,
            mechanisms: s.sasl_mechanisms.clone(),
            stats: SecurityStats::default(),
            // The bootstrap user administers a new cluster: it is a super user.
            super_users: s
                .super_users
                .iter()
                .cloned()
                .chain(s.bootstrap().map(|(name, _)| format!("User:{name}")))
                .collect(),
            allow_if_no_acl: s.allow_everyone_if_no_acl_found,
            index: RwLock::new((0, Arc::new(AclIndex::default()))),
            refusals: Mutex::new((None, 0)),
            failures: Mutex::new(Default::default()),
            listeners,
        })
    }

    /// Creates the bootstrap user (`bootstrap_user`) with SCRAM-SHA-256 and -512 credentials
    /// if the controller has no such user yet. Its password is never logged.
    pub async fn bootstrap(node: &crate::node::Node) {
        let Some((name, password)) = node.config.security.bootstrap() else {
            return;
        };
        if node.cluster.controller.state().users.contains_key(name) {
            return;
        }
        for mechanism in scram::Mechanism::ALL {
            let credential =
                scram::Credential::new(mechanism, password, scram::MIN_ITERATIONS as u32);
            let command = crate::controller::Command::SetScram {
                user: name.to_string(),
                mechanism,
                credential,
            };
            if let Err(e) = node.cluster.propose(command).await {
                tracing::warn!(user = name, error = %e, "could not create the bootstrap user");
                return;
            }
        }
        tracing::info!(user = name, "bootstrap user created");
    }

    /// True when `principal` may do anything.
    pub fn is_super_user(&self, principal: &str) -> bool {
        self.super_users.contains(principal)
    }

    /// The ACL index for `state`, rebuilt when its ACLs changed since the last call.
    pub fn acls(&self, state: &ClusterState) -> Arc<AclIndex> {
        if let Ok(current) = self.index.read()
            && current.0 == state.acl_version
        {
            return current.1.clone();
        }
        let index = Arc::new(AclIndex::new(&state.acls));
        if let Ok(mut current) = self.index.write()
            && current.0 < state.acl_version
        {
            *current = (state.acl_version, index.clone());
        }
        index
    }

    /// The caller of one request; `state` is asked for only when ACLs are checked.
    pub fn caller(
        self: &Arc<Self>,
        state: impl FnOnce() -> Arc<ClusterState>,
        principal: Arc<str>,
        host: Arc<str>,
        listener: Arc<str>,
    ) -> Caller {
        let check = (self.authorizes && !self.is_super_user(&principal)).then(|| Check {
            index: self.acls(&state()),
            security: self.clone(),
        });
        Caller {
            principal,
            host,
            listener,
            check,
        }
    }

    /// Records a failed login from `ip` and says how long to wait before answering it:
    /// `base` times one more step per [`FAILURES_PER_STEP`] failures from that address in the
    /// last [`FAILURE_WINDOW`], at most [`FAILURE_DELAY_STEPS_MAX`] times `base`. A guessing
    /// client slows down; one typo costs `base`.
    pub fn failure_delay(
        &self,
        ip: std::net::IpAddr,
        base: std::time::Duration,
    ) -> std::time::Duration {
        let Ok(mut failures) = self.failures.lock() else {
            return base;
        };
        let now = std::time::Instant::now();
        if failures.len() >= FAILURE_HOSTS_MAX {
            failures.retain(|_, (since, _)| now.duration_since(*since) < FAILURE_WINDOW);
            if failures.len() >= FAILURE_HOSTS_MAX {
                failures.clear();
            }
        }
        let entry = failures.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= FAILURE_WINDOW {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        let steps = (1 + entry.1 / FAILURES_PER_STEP).min(FAILURE_DELAY_STEPS_MAX);
        base * steps
    }

    /// Logs a refused connection (failed TLS or SASL, a timeout, a request out of turn): the
    /// first at once, then at most one line per [`REFUSAL_LOG_INTERVAL`] with how many were
    /// not logged, so a storm of failed logins does not flood the log.
    pub fn log_refusal(&self, peer: std::net::SocketAddr, what: &str, detail: &str) {
        let Ok(mut throttle) = self.refusals.lock() else {
            return;
        };
        let now = std::time::Instant::now();
        if throttle
            .0
            .is_some_and(|last| now.duration_since(last) < REFUSAL_LOG_INTERVAL)
        {
            throttle.1 += 1;
            return;
        }
        let suppressed = std::mem::take(&mut throttle.1);
        throttle.0 = Some(now);
        tracing::warn!(%peer, detail, suppressed, "{what}");
    }

    /// What `/v1/status` shows: listeners, whether requests are authorized, users and ACLs
    /// counted (never a credential), TLS reloads, and the counters.
    pub fn status(&self, state: &ClusterState) -> serde_json::Value {
        let mut status = serde_json::json!({
            "listeners": self.listeners.iter().map(|l| serde_json::json!({
                "name": l.name,
                "address": l.addr.to_string(),
                "advertised": l.advertised.clone().unwrap_or_else(|| l.addr.to_string()),
                "protocol": l.protocol.name(),
            })).collect::<Vec<_>>(),
            "authorization": self.authorizes,
            "admin_authentication": self.admin_authenticates,
            "sasl_mechanisms": self.mechanisms,
            "super_users": self.super_users.iter().collect::<std::collections::BTreeSet<_>>(),
            "users": state.users.len(),
            "acls": state.acls.len(),
            "tls": self.tls.as_ref().map(|t| serde_json::json!({ "reloads": t.reloads() })),
        });
        if let Some(map) = status.as_object_mut() {
            for (key, _, _, value) in self.counters() {
                map.insert(key.to_string(), value.into());
            }
        }
        status
    }

    /// The counters: (`/v1/status` key, metric name, help, value); one table for both.
    fn counters(&self) -> [(&'static str, &'static str, &'static str, u64); 7] {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let s = &self.stats;
        [
            (
                "authentications",
                "silt_sasl_authentications_total",
                "SASL authentications that succeeded (re-authentications not counted).",
                load(&s.auth_succeeded),
            ),
            (
                "authentication_failures",
                "silt_sasl_authentication_failures_total",
                "Failed authentications: SASL (wrong password, unknown user, malformed exchange) and admin API logins.",
                load(&s.auth_failed),
            ),
            (
                "reauthentications",
                "silt_sasl_reauthentications_total",
                "SASL re-authentications of open connections (KIP-368).",
                load(&s.reauthenticated),
            ),
            (
                "tls_handshake_failures",
                "silt_tls_handshake_failures_total",
                "TLS handshakes that failed on Kafka listeners.",
                load(&s.tls_failed),
            ),
            (
                "authentication_timeouts",
                "silt_authentication_timeouts_total",
                "Connections closed for not finishing TLS and SASL within sasl_handshake_timeout_ms.",
                load(&s.auth_timeouts),
            ),
            (
                "authorization_denials",
                "silt_authorization_denials_total",
                "Operations refused by the ACLs.",
                load(&s.denied),
            ),
            (
                "tls_reloads",
                "silt_tls_reloads_total",
                "Times the TLS certificate files were reloaded after a change.",
                self.tls.as_ref().map_or(0, |t| t.reloads()),
            ),
        ]
    }

    /// Prometheus text of the counters and gauges.
    pub fn render(&self, state: &ClusterState, out: &mut String) {
        use std::fmt::Write;
        for (_, name, help, value) in self.counters() {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP silt_users SCRAM users.\n# TYPE silt_users gauge\nsilt_users {}\n# HELP silt_acls ACL bindings.\n# TYPE silt_acls gauge\nsilt_acls {}",
            state.users.len(),
            state.acls.len()
        );
    }

    /// Counts a refusal and logs it at debug.
    fn denied(&self, caller: &Caller, op: Operation, rt: ResourceType, name: &str) {
        self.stats.denied.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            principal = %caller.principal,
            host = %caller.host,
            operation = op.name(),
            resource = %format_args!("{}:{name}", rt.name()),
            "denied"
        );
    }
}

#[derive(Debug, Clone)]
struct Check {
    index: Arc<AclIndex>,
    security: Arc<Security>,
}

/// Who sent a request, and what they may do.
#[derive(Debug, Clone)]
pub struct Caller {
    principal: Arc<str>,
    host: Arc<str>,
    listener: Arc<str>,
    check: Option<Check>,
}

impl Caller {
    /// A caller allowed everything, on the first listener (internal requests, tests).
    pub fn unrestricted(listener: &str) -> Caller {
        Caller {
            principal: Arc::from(ANONYMOUS),
            host: Arc::from(""),
            listener: Arc::from(listener),
            check: None,
        }
    }

    /// The principal (`User:NAME`).
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// The listener the request came in on.
    pub fn listener(&self) -> &str {
        &self.listener
    }

    /// May the caller do `op` on the resource? Counts and logs a refusal.
    pub fn can(&self, op: Operation, rt: ResourceType, name: &str) -> bool {
        let Some(check) = &self.check else {
            return true;
        };
        let decision = check.index.authorize(
            &self.principal,
            &self.host,
            op,
            rt,
            name,
            check.security.allow_if_no_acl,
        );
        if !decision.allowed() {
            check.security.denied(self, op, rt, name);
        }
        decision.allowed()
    }

    /// As [`Caller::can`], without counting a refusal: for listings that leave out what the
    /// caller may not see.
    pub fn sees(&self, op: Operation, rt: ResourceType, name: &str) -> bool {
        self.check.as_ref().is_none_or(|check| {
            check
                .index
                .authorize(
                    &self.principal,
                    &self.host,
                    op,
                    rt,
                    name,
                    check.security.allow_if_no_acl,
                )
                .allowed()
        })
    }

    /// May the caller do `op` on a topic?
    pub fn topic(&self, op: Operation, name: &str) -> bool {
        self.can(op, ResourceType::Topic, name)
    }

    /// May the caller do `op` on a group?
    pub fn group(&self, op: Operation, name: &str) -> bool {
        self.can(op, ResourceType::Group, name)
    }

    /// May the caller do `op` on a transactional id?
    pub fn txn(&self, op: Operation, name: &str) -> bool {
        self.can(op, ResourceType::TransactionalId, name)
    }

    /// May the caller do `op` on the cluster?
    pub fn cluster(&self, op: Operation) -> bool {
        self.can(op, ResourceType::Cluster, CLUSTER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_address_that_keeps_failing_waits_longer_up_to_a_cap() {
        let security = Security::new(&NodeConfig::default(), Vec::new()).expect("security");
        let base = Duration::from_millis(100);
        let guesser: std::net::IpAddr = "10.0.0.1".parse().expect("ip");
        let other: std::net::IpAddr = "10.0.0.2".parse().expect("ip");
        assert_eq!(security.failure_delay(guesser, base), base);
        let mut last = base;
        for _ in 0..(FAILURES_PER_STEP * FAILURE_DELAY_STEPS_MAX * 2) {
            last = security.failure_delay(guesser, base);
        }
        assert_eq!(last, base * FAILURE_DELAY_STEPS_MAX);
        // Another address is not slowed by the guesser.
        assert_eq!(security.failure_delay(other, base), base);
    }
}
