//! Listeners, TLS, SASL, authorization and the secrets they need.
//!
//! Names follow Kafka's where Kafka has one (`listeners`, `advertised_listeners`,
//! `listener_security_protocol_map`, `connections_max_reauth_ms`, `super_users`,
//! `allow_everyone_if_no_acl_found`, `ssl_principal_mapping_rules`), with `.` written `_` as
//! every node setting is.
//!
//! A secret (the bootstrap user's password, the admin API token) may be written in place or as
//! a reference, `${env:NAME}` or `${file:/path}`, resolved once at startup by
//! [`SecurityConfig::resolve_secrets`] with the lookups the binary gives it: this crate never
//! reads the environment or files itself. A secret's value is never shown: `value_of` and
//! `Debug` print `[hidden]`.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Keys of the security settings, with what they do (part of the node's settings).
pub const SECURITY_KEYS: &[(&str, &str)] = &[
    (
        "listeners",
        "Kafka listeners, NAME://ip:port,... (Kafka's listeners); the name is the security protocol unless listener_security_protocol_map maps it (default: PLAINTEXT://<kafka_addr>)",
    ),
    (
        "advertised_listeners",
        "host:port given to clients per listener, NAME://host:port,... (default: each listener's address)",
    ),
    (
        "listener_security_protocol_map",
        "listener name -> PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, NAME:PROTOCOL,...",
    ),
    ("tls_cert_file", "PEM certificate chain of TLS listeners"),
    ("tls_key_file", "PEM private key of TLS listeners"),
    (
        "tls_ca_file",
        "PEM CA bundle client certificates are checked against (mutual TLS)",
    ),
    (
        "tls_client_auth",
        "client certificates on TLS listeners: none, requested or required (Kafka's ssl.client.auth)",
    ),
    (
        "tls_reload_interval_ms",
        "how often the certificate files are checked for changes and reloaded (0: never)",
    ),
    (
        "ssl_principal_mapping_rules",
        "how a client certificate's subject becomes a principal: DEFAULT (the whole DN) or RULE:pattern/replacement/[LU], ... (Kafka's ssl.principal.mapping.rules)",
    ),
    (
        "sasl_mechanisms",
        "SASL mechanisms offered: SCRAM-SHA-256, SCRAM-SHA-512, PLAIN (Kafka's sasl.enabled.mechanisms)",
    ),
    (
        "sasl_handshake_timeout_ms",
        "time a client on an authenticating listener has to finish TLS and SASL before it is closed",
    ),
    (
        "connections_max_reauth_ms",
        "lifetime of a SASL session; the client re-authenticates before it ends (KIP-368; 0: forever)",
    ),
    (
        "auth_failure_delay_ms",
        "wait before a failed authentication is answered and the connection closed (Kafka's connection.failed.authentication.delay.ms)",
    ),
    (
        "super_users",
        "principals allowed everything, User:NAME,... (Kafka's super.users)",
    ),
    (
        "bootstrap_user",
        "NAME:PASSWORD of a super user created at startup if missing, so a new cluster can be administered (secret; ${env:X} or ${file:/path} accepted)",
    ),
    (
        "authorization",
        "check ACLs on every request: auto (when a listener authenticates), true or false",
    ),
    (
        "allow_everyone_if_no_acl_found",
        "a resource with no ACL at all is open to everyone (Kafka's setting of that name)",
    ),
    (
        "admin_tls",
        "serve the admin HTTP API over TLS with the listeners' certificate",
    ),
    (
        "admin_auth",
        "require authentication on the admin HTTP API (basic auth with a SCRAM user, or the bearer token): auto (when authorization is on), true or false",
    ),
    (
        "admin_api_token",
        "bearer token accepted by the admin HTTP API as a super user (secret; ${env:X} or ${file:/path} accepted)",
    ),
];

/// How a listener secures its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    /// Neither TLS nor SASL: every client is `User:ANONYMOUS`.
    Plaintext,
    /// TLS; the principal comes from the client certificate, if any.
    Ssl,
    /// SASL over plain TCP.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// Kafka's name of the protocol.
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    fn parse(name: &str) -> Option<SecurityProtocol> {
        Some(match name.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => SecurityProtocol::Plaintext,
            "SSL" => SecurityProtocol::Ssl,
            "SASL_PLAINTEXT" => SecurityProtocol::SaslPlaintext,
            "SASL_SSL" => SecurityProtocol::SaslSsl,
            _ => return None,
        })
    }

    /// True when connections are wrapped in TLS.
    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// True when clients must authenticate with SASL before anything else.
    pub fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// One Kafka listener, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Its name (`PLAINTEXT`, `SASL_SSL`, `INTERNAL`, ...).
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// How it secures connections.
    pub protocol: SecurityProtocol,
    /// `host:port` given to clients that connected to it.
    pub advertised: Option<String>,
}

/// Client certificates on TLS listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Not asked for.
    None,
    /// Asked for; a client without one is `User:ANONYMOUS` (or authenticates with SASL).
    Requested,
    /// A client without a certificate signed by `tls_ca_file` is refused.
    Required,
}

/// Whether a check is on, off, or follows the rest of the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toggle {
    /// On when a listener authenticates its clients.
    Auto,
    /// Always on.
    On,
    /// Always off.
    Off,
}

impl Toggle {
    fn parse(value: &str) -> Option<Toggle> {
        match value {
            "auto" => Some(Toggle::Auto),
            _ => crate::node::parse_bool(value).map(|on| if on { Toggle::On } else { Toggle::Off }),
        }
    }

    fn text(self) -> &'static str {
        match self {
            Toggle::Auto => "auto",
            Toggle::On => "true",
            Toggle::Off => "false",
        }
    }
}

/// A secret setting: never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value (after [`SecurityConfig::resolve_secrets`]).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when unset.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "" } else { "[hidden]" })
    }
}

/// One `ssl_principal_mapping_rules` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalRule {
    /// The distinguished name as it is.
    Default,
    /// A regular expression over the DN and its replacement (`$1`...), optionally lower- or
    /// upper-cased.
    Rule {
        /// The pattern (whole DN).
        pattern: String,
        /// The replacement.
        replacement: String,
        /// `L` or `U`, if given.
        case: Option<char>,
    },
}

/// The security settings of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityConfig {
    /// Listener specs as written (`NAME://ip:port`); empty: one PLAINTEXT on `kafka_addr`.
    pub listeners: Vec<(String, SocketAddr)>,
    /// Advertised addresses by listener name.
    pub advertised_listeners: Vec<(String, String)>,
    /// Listener name -> protocol, for names that are not protocols.
    pub protocol_map: Vec<(String, SecurityProtocol)>,
    /// PEM certificate chain.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key.
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA bundle for client certificates.
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificates.
    pub tls_client_auth: ClientAuth,
    /// Certificate reload check interval (0: never).
    pub tls_reload_interval_ms: u64,
    /// Certificate subject -> principal.
    pub principal_rules: Vec<PrincipalRule>,
    /// SASL mechanisms offered.
    pub sasl_mechanisms: Vec<String>,
    /// Time to finish TLS and SASL.
    pub sasl_handshake_timeout_ms: u64,
    /// SASL session lifetime (0: forever).
    pub connections_max_reauth_ms: u64,
    /// Delay before a failed authentication is answered.
    pub auth_failure_delay_ms: u64,
    /// Principals allowed everything (`User:NAME`).
    pub super_users: Vec<String>,
    /// `NAME:PASSWORD` created at startup.
    pub bootstrap_user: Secret,
    /// ACL checks.
    pub authorization: Toggle,
    /// Open resources with no ACL.
    pub allow_everyone_if_no_acl_found: bool,
    /// Admin HTTP over TLS.
    pub admin_tls: bool,
    /// Admin HTTP authentication.
    pub admin_auth: Toggle,
    /// Admin bearer token.
    pub admin_api_token: Secret,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            listeners: Vec::new(),
            advertised_listeners: Vec::new(),
            protocol_map: Vec::new(),
            tls_cert_file: None,
            tls_key_file: None,
            tls_ca_file: None,
            tls_client_auth: ClientAuth::None,
            tls_reload_interval_ms: 10_000,
            principal_rules: vec![PrincipalRule::Default],
            sasl_mechanisms: MECHANISMS.iter().map(|m| m.to_string()).collect(),
            sasl_handshake_timeout_ms: 10_000,
            connections_max_reauth_ms: 0,
            auth_failure_delay_ms: 100,
            super_users: Vec::new(),
            bootstrap_user: Secret::default(),
            authorization: Toggle::Auto,
            allow_everyone_if_no_acl_found: false,
            admin_tls: false,
            admin_auth: Toggle::Auto,
            admin_api_token: Secret::default(),
        }
    }
}

/// The SASL mechanisms silt implements.
pub const MECHANISMS: &[&str] = &["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"];

/// Shown instead of a secret.
pub const HIDDEN: &str = "[hidden]";

impl SecurityConfig {
    /// Sets one security key; `None` when `key` is not one of [`SECURITY_KEYS`]. The error is
    /// what is expected of the value.
    pub(crate) fn set(&mut self, key: &str, value: &str) -> Option<Result<(), String>> {
        let result = match key {
            "listeners" => parse_listeners(value).map(|l| self.listeners = l),
            "advertised_listeners" => {
                parse_advertised(value).map(|a| self.advertised_listeners = a)
            }
            "listener_security_protocol_map" => {
                parse_protocol_map(value).map(|m| self.protocol_map = m)
            }
            "tls_cert_file" => {
                self.tls_cert_file = path(value);
                Ok(())
            }
            "tls_key_file" => {
                self.tls_key_file = path(value);
                Ok(())
            }
            "tls_ca_file" => {
                self.tls_ca_file = path(value);
                Ok(())
            }
            "tls_client_auth" => match value {
                "none" => {
                    self.tls_client_auth = ClientAuth::None;
                    Ok(())
                }
                "requested" => {
                    self.tls_client_auth = ClientAuth::Requested;
                    Ok(())
                }
                "required" => {
                    self.tls_client_auth = ClientAuth::Required;
                    Ok(())
                }
                _ => Err("none, requested or required".to_string()),
            },
            "tls_reload_interval_ms" => millis(value).map(|v| self.tls_reload_interval_ms = v),
            "ssl_principal_mapping_rules" => {
                parse_principal_rules(value).map(|r| self.principal_rules = r)
            }
            "sasl_mechanisms" => {
                let mechanisms: Vec<String> = list(value).map(|m| m.to_ascii_uppercase()).collect();
                match mechanisms
                    .iter()
                    .find(|m| !MECHANISMS.contains(&m.as_str()))
                {
                    Some(m) => Err(format!(
                        "a list of {} ({m} is not one)",
                        MECHANISMS.join(", ")
                    )),
                    None => {
                        self.sasl_mechanisms = mechanisms;
                        Ok(())
                    }
                }
            }
            "sasl_handshake_timeout_ms" => millis(value)
                .and_then(|v| {
                    if v == 0 {
                        Err("a positive number of milliseconds".to_string())
                    } else {
                        Ok(v)
                    }
                })
                .map(|v| self.sasl_handshake_timeout_ms = v),
            "connections_max_reauth_ms" => {
                millis(value).map(|v| self.connections_max_reauth_ms = v)
            }
            "auth_failure_delay_ms" => millis(value).map(|v| self.auth_failure_delay_ms = v),
            "super_users" => {
                let mut users = Vec::new();
                for item in list(value) {
                    match principal(item) {
                        Some(p) => users.push(p),
                        None => return Some(Err(format!("User:NAME,... ({item:?} is not one)"))),
                    }
                }
                {
                    self.super_users = users;
                    Ok(())
                }
            }
            "bootstrap_user" => {
                if value.is_empty() || value.starts_with("${") || value.contains(':') {
                    {
                        self.bootstrap_user = Secret(value.to_string());
                        Ok(())
                    }
                } else {
                    Err("NAME:PASSWORD, or ${env:VAR} or ${file:/path} holding it".to_string())
                }
            }
            "authorization" => Toggle::parse(value)
                .map(|t| self.authorization = t)
                .ok_or_else(|| "auto, true or false".to_string()),
            "allow_everyone_if_no_acl_found" => crate::node::parse_bool(value)
                .map(|b| self.allow_everyone_if_no_acl_found = b)
                .ok_or_else(|| "true or false".to_string()),
            "admin_tls" => crate::node::parse_bool(value)
                .map(|b| self.admin_tls = b)
                .ok_or_else(|| "true or false".to_string()),
            "admin_auth" => Toggle::parse(value)
                .map(|t| self.admin_auth = t)
                .ok_or_else(|| "auto, true or false".to_string()),
            "admin_api_token" => {
                self.admin_api_token = Secret(value.to_string());
                Ok(())
            }
            _ => return None,
        };
        Some(result)
    }

    /// The value of a security key as text; secrets as [`HIDDEN`].
    pub(crate) fn value_of(&self, key: &str) -> Option<String> {
        let show_path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        Some(match key {
            "listeners" => self
                .listeners
                .iter()
                .map(|(name, addr)| format!("{name}://{addr}"))
                .collect::<Vec<_>>()
                .join(","),
            "advertised_listeners" => self
                .advertised_listeners
                .iter()
                .map(|(name, addr)| format!("{name}://{addr}"))
                .collect::<Vec<_>>()
                .join(","),
            "listener_security_protocol_map" => self
                .protocol_map
                .iter()
                .map(|(name, p)| format!("{name}:{}", p.name()))
                .collect::<Vec<_>>()
                .join(","),
            "tls_cert_file" => show_path(&self.tls_cert_file).unwrap_or_default(),
            "tls_key_file" => show_path(&self.tls_key_file).unwrap_or_default(),
            "tls_ca_file" => show_path(&self.tls_ca_file).unwrap_or_default(),
            "tls_client_auth" => match self.tls_client_auth {
                ClientAuth::None => "none",
                ClientAuth::Requested => "requested",
                ClientAuth::Required => "required",
            }
            .to_string(),
            "tls_reload_interval_ms" => self.tls_reload_interval_ms.to_string(),
            "ssl_principal_mapping_rules" => self
                .principal_rules
                .iter()
                .map(|r| match r {
                    PrincipalRule::Default => "DEFAULT".to_string(),
                    PrincipalRule::Rule {
                        pattern,
                        replacement,
                        case,
                    } => format!(
                        "RULE:{pattern}/{replacement}/{}",
                        case.map(String::from).unwrap_or_default()
                    ),
                })
                .collect::<Vec<_>>()
                .join(","),
            "sasl_mechanisms" => self.sasl_mechanisms.join(","),
            "sasl_handshake_timeout_ms" => self.sasl_handshake_timeout_ms.to_string(),
            "connections_max_reauth_ms" => self.connections_max_reauth_ms.to_string(),
            "auth_failure_delay_ms" => self.auth_failure_delay_ms.to_string(),
            "super_users" => self.super_users.join(","),
            "bootstrap_user" => hidden(&self.bootstrap_user),
            "authorization" => self.authorization.text().to_string(),
            "allow_everyone_if_no_acl_found" => self.allow_everyone_if_no_acl_found.to_string(),
            "admin_tls" => self.admin_tls.to_string(),
            "admin_auth" => self.admin_auth.text().to_string(),
            "admin_api_token" => hidden(&self.admin_api_token),
            _ => return None,
        })
    }

    /// The listeners, resolved: protocols from names or the map, advertised addresses matched.
    /// `kafka_addr` and `advertised_kafka_addr` make the one PLAINTEXT listener when
    /// `listeners` is not set.
    ///
    /// # Errors
    ///
    /// A sentence naming the listener or setting at fault.
    pub fn resolve_listeners(
        &self,
        kafka_addr: SocketAddr,
        advertised_kafka_addr: Option<&str>,
    ) -> Result<Vec<Listener>, String> {
        if self.listeners.is_empty() {
            let advertised = self
                .advertised_listeners
                .iter()
                .find(|(name, _)| name == "PLAINTEXT")
                .map(|(_, a)| a.clone())
                .or_else(|| advertised_kafka_addr.map(str::to_string));
            return Ok(vec![Listener {
                name: "PLAINTEXT".to_string(),
                addr: kafka_addr,
                protocol: SecurityProtocol::Plaintext,
                advertised,
            }]);
        }
        let mut listeners: Vec<Listener> = Vec::new();
        for (name, addr) in &self.listeners {
            let protocol = self
                .protocol_map
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, p)| *p)
                .or_else(|| SecurityProtocol::parse(name))
                .ok_or_else(|| {
                    format!(
                        "listener {name} is not a security protocol and listener_security_protocol_map does not map it"
                    )
                })?;
            if listeners.iter().any(|l| l.name == *name) {
                return Err(format!("listener {name} is named twice in listeners"));
            }
            if listeners
                .iter()
                .any(|l| l.addr == *addr && addr.port() != 0)
            {
                return Err(format!("two listeners on {addr}"));
            }
            let advertised = self
                .advertised_listeners
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, a)| a.clone())
                .or_else(|| {
                    (listeners.is_empty())
                        .then(|| advertised_kafka_addr.map(str::to_string))
                        .flatten()
                });
            listeners.push(Listener {
                name: name.clone(),
                addr: *addr,
                protocol,
                advertised,
            });
        }
        if let Some((name, _)) = self
            .advertised_listeners
            .iter()
            .find(|(n, _)| !listeners.iter().any(|l| l.name == *n))
        {
            return Err(format!(
                "advertised_listeners names {name}, which is not in listeners"
            ));
        }
        let tls = listeners.iter().any(|l| l.protocol.tls()) || self.admin_tls;
        if tls && (self.tls_cert_file.is_none() || self.tls_key_file.is_none()) {
            return Err(
                "a TLS listener (SSL, SASL_SSL or admin_tls) needs tls_cert_file and tls_key_file"
                    .to_string(),
            );
        }
        if self.tls_client_auth != ClientAuth::None && self.tls_ca_file.is_none() {
            return Err("tls_client_auth needs tls_ca_file to check certificates with".to_string());
        }
        Ok(listeners)
    }

    /// True when ACLs are checked, given the resolved listeners.
    pub fn authorizes(&self, listeners: &[Listener]) -> bool {
        match self.authorization {
            Toggle::On => true,
            Toggle::Off => false,
            Toggle::Auto => listeners.iter().any(|l| {
                l.protocol.sasl()
                    || (l.protocol.tls() && self.tls_client_auth == ClientAuth::Required)
            }),
        }
    }

    /// True when the admin HTTP API asks for credentials.
    pub fn admin_authenticates(&self, listeners: &[Listener]) -> bool {
        match self.admin_auth {
            Toggle::On => true,
            Toggle::Off => false,
            Toggle::Auto => self.authorizes(listeners),
        }
    }

    /// Replaces `${env:NAME}` and `${file:/path}` references in secrets with what `env` and
    /// `file` give.
    ///
    /// # Errors
    ///
    /// A sentence naming the setting and the variable or file that could not be read (never
    /// the secret).
    pub fn resolve_secrets(
        &mut self,
        env: impl Fn(&str) -> Option<String>,
        file: impl Fn(&str) -> std::io::Result<String>,
    ) -> Result<(), String> {
        for (key, secret) in [
            ("bootstrap_user", &mut self.bootstrap_user),
            ("admin_api_token", &mut self.admin_api_token),
        ] {
            let raw = secret.0.trim();
            let Some(reference) = raw.strip_prefix("${").and_then(|r| r.strip_suffix('}')) else {
                continue;
            };
            let value = if let Some(name) = reference.strip_prefix("env:") {
                env(name).ok_or_else(|| format!("{key}: environment variable {name} is not set"))?
            } else if let Some(path) = reference.strip_prefix("file:") {
                file(path)
                    .map_err(|e| format!("{key}: cannot read {path}: {e}"))?
                    .trim_end_matches(['\n', '\r'])
                    .to_string()
            } else {
                return Err(format!(
                    "{key}: {raw:?} is not ${{env:NAME}} or ${{file:/path}}"
                ));
            };
            secret.0 = value;
        }
        if !self.bootstrap_user.is_empty() && !self.bootstrap_user.0.contains(':') {
            return Err("bootstrap_user must be NAME:PASSWORD".to_string());
        }
        Ok(())
    }

    /// The bootstrap user as (name, password), if set.
    pub fn bootstrap(&self) -> Option<(&str, &str)> {
        self.bootstrap_user
            .0
            .split_once(':')
            .filter(|(name, password)| !name.is_empty() && !password.is_empty())
    }
}

/// A URL as it may be shown: any `user:password@` in it replaced by `***@`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => url.to_string(),
    }
}

fn hidden(secret: &Secret) -> String {
    if secret.is_empty() {
        String::new()
    } else {
        HIDDEN.to_string()
    }
}

fn path(value: &str) -> Option<PathBuf> {
    (!value.is_empty()).then(|| PathBuf::from(value))
}

fn millis(value: &str) -> Result<u64, String> {
    value
        .parse::<u64>()
        .map_err(|_| "a number of milliseconds".to_string())
}

fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// `User:NAME` (a bare `NAME` is a user).
fn principal(item: &str) -> Option<String> {
    match item.split_once(':') {
        Some((kind, name)) if !kind.is_empty() && !name.is_empty() => Some(item.to_string()),
        Some(_) => None,
        None => Some(format!("User:{item}")),
    }
}

fn listener_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn parse_listeners(value: &str) -> Result<Vec<(String, SocketAddr)>, String> {
    const EXPECTED: &str =
        "NAME://ip:port,..., such as PLAINTEXT://127.0.0.1:9092,SASL_SSL://0.0.0.0:9093";
    let mut out = Vec::new();
    for item in list(value) {
        let (name, addr) = item
            .split_once("://")
            .ok_or_else(|| format!("{EXPECTED} ({item:?} has no ://)"))?;
        if !listener_name_ok(name) {
            return Err(format!("{EXPECTED} ({name:?} is not a listener name)"));
        }
        let addr: SocketAddr = addr
            .parse()
            .map_err(|_| format!("{EXPECTED} ({addr:?} is not ip:port)"))?;
        out.push((name.to_ascii_uppercase(), addr));
    }
    Ok(out)
}

fn parse_advertised(value: &str) -> Result<Vec<(String, String)>, String> {
    const EXPECTED: &str = "NAME://host:port,..., such as SASL_SSL://broker1.example.com:9093";
    let mut out = Vec::new();
    for item in list(value) {
        let (name, addr) = item
            .split_once("://")
            .ok_or_else(|| format!("{EXPECTED} ({item:?} has no ://)"))?;
        let ok = addr
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !listener_name_ok(name) || !ok {
            return Err(format!("{EXPECTED} ({item:?} is not one)"));
        }
        out.push((name.to_ascii_uppercase(), addr.to_string()));
    }
    Ok(out)
}

fn parse_protocol_map(value: &str) -> Result<Vec<(String, SecurityProtocol)>, String> {
    let mut out = Vec::new();
    for item in list(value) {
        let parsed = item.split_once(':').and_then(|(name, protocol)| {
            Some((
                name.to_ascii_uppercase(),
                SecurityProtocol::parse(protocol)?,
            ))
        });
        match parsed {
            Some(pair) if listener_name_ok(&pair.0) => out.push(pair),
            _ => {
                return Err(format!(
                    "NAME:PROTOCOL,... with PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL ({item:?} is not one)"
                ));
            }
        }
    }
    Ok(out)
}

/// Kafka's `ssl.principal.mapping.rules`: `DEFAULT` or `RULE:pattern/replacement/[LU]`, comma
/// separated (a comma inside a rule's pattern belongs to the rule).
fn parse_principal_rules(value: &str) -> Result<Vec<PrincipalRule>, String> {
    const EXPECTED: &str = "DEFAULT or RULE:pattern/replacement/[L|U], ...";
    let mut rules = Vec::new();
    let mut rest = value.trim();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("DEFAULT") {
            rules.push(PrincipalRule::Default);
            rest = after.trim_start_matches([',', ' ']);
            continue;
        }
        let Some(body) = rest.strip_prefix("RULE:") else {
            return Err(format!("{EXPECTED} (at {rest:?})"));
        };
        let (pattern, after) = body
            .split_once('/')
            .ok_or_else(|| format!("{EXPECTED} (rule {body:?} has no /)"))?;
        let (replacement, after) = after
            .split_once('/')
            .ok_or_else(|| format!("{EXPECTED} (rule {body:?} has no closing /)"))?;
        let (case, after) = match after.chars().next() {
            Some(c @ ('L' | 'U')) => (Some(c), &after[1..]),
            _ => (None, after),
        };
        // The pattern is compiled by the broker (this crate has no regex engine).
        if pattern.is_empty() {
            return Err(format!("{EXPECTED} (a rule's pattern is empty)"));
        }
        rules.push(PrincipalRule::Rule {
            pattern: pattern.to_string(),
            replacement: replacement.to_string(),
            case,
        });
        rest = after.trim_start_matches([',', ' ']);
    }
    if rules.is_empty() {
        return Err(EXPECTED.to_string());
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    #[test]
    fn listeners_resolve_with_kafka_names_and_maps() {
        let mut c = SecurityConfig::default();
        c.set(
            "listeners",
            "PLAINTEXT://127.0.0.1:9092,EXTERNAL://0.0.0.0:9093",
        )
        .expect("key")
        .expect("value");
        let err = c
            .resolve_listeners(addr("127.0.0.1:9092"), None)
            .unwrap_err();
        assert!(err.contains("EXTERNAL"), "{err}");
        c.set("listener_security_protocol_map", "EXTERNAL:SASL_PLAINTEXT")
            .expect("key")
            .expect("value");
        c.set("advertised_listeners", "EXTERNAL://broker.example.com:9093")
            .expect("key")
            .expect("value");
        let listeners = c
            .resolve_listeners(addr("127.0.0.1:9092"), None)
            .expect("listeners");
        assert_eq!(listeners[0].protocol, SecurityProtocol::Plaintext);
        assert_eq!(listeners[1].protocol, SecurityProtocol::SaslPlaintext);
        assert_eq!(
            listeners[1].advertised.as_deref(),
            Some("broker.example.com:9093")
        );
        assert!(c.authorizes(&listeners));
    }

    #[test]
    fn tls_listener_needs_its_files() {
        let mut c = SecurityConfig::default();
        c.set("listeners", "SSL://127.0.0.1:0")
            .expect("key")
            .expect("value");
        let err = c
            .resolve_listeners(addr("127.0.0.1:9092"), None)
            .unwrap_err();
        assert!(err.contains("tls_cert_file"), "{err}");
    }

    #[test]
    fn secrets_resolve_from_references_and_never_show() {
        let mut c = SecurityConfig::default();
        c.set("bootstrap_user", "${env:BOOT}")
            .expect("key")
            .expect("value");
        c.set("admin_api_token", "${file:/run/token}")
            .expect("key")
            .expect("value");
        let err = c
            .clone()
            .resolve_secrets(|_| None, |_| Ok(String::new()))
            .unwrap_err();
        assert!(err.contains("BOOT"), "{err}");
        c.resolve_secrets(
            |name| (name == "BOOT").then(|| "admin:s3cret".to_string()),
            |path| {
                assert_eq!(path, "/run/token");
                Ok("tok-123\n".to_string())
            },
        )
        .expect("resolved");
        assert_eq!(c.bootstrap(), Some(("admin", "s3cret")));
        assert_eq!(c.admin_api_token.expose(), "tok-123");
        assert_eq!(c.value_of("bootstrap_user").as_deref(), Some(HIDDEN));
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(!format!("{c:?}").contains("tok-123"));
    }

    #[test]
    fn principal_rules_parse_kafka_syntax() {
        let rules = parse_principal_rules("RULE:^CN=([^,]+),OU=.*$/$1/L,DEFAULT").expect("rules");
        assert_eq!(
            rules,
            vec![
                PrincipalRule::Rule {
                    pattern: "^CN=([^,]+),OU=.*$".to_string(),
                    replacement: "$1".to_string(),
                    case: Some('L'),
                },
                PrincipalRule::Default
            ]
        );
        assert!(parse_principal_rules("RULE:x").is_err());
        assert!(parse_principal_rules("NOPE").is_err());
    }

    #[test]
    fn urls_lose_their_credentials_when_shown() {
        assert_eq!(
            redact_url("s3://AKIA:s3cret@bucket/prefix"),
            "s3://***@bucket/prefix"
        );
        assert_eq!(redact_url("s3://bucket/a@b"), "s3://bucket/a@b");
        assert_eq!(redact_url("/plain/dir"), "/plain/dir");
    }

    #[test]
    fn super_users_take_bare_names_as_users() {
        let mut c = SecurityConfig::default();
        c.set("super_users", "admin, User:ops")
            .expect("key")
            .expect("value");
        assert_eq!(c.super_users, vec!["User:admin", "User:ops"]);
    }
}
