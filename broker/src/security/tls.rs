//! TLS for the Kafka listeners and the admin API: rustls (TLS 1.2 and 1.3 only) from PEM
//! files, reloaded when they change, and the principal a client certificate names.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use regex::Regex;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use silt_config::{ClientAuth, PrincipalRule, SecurityConfig};
use tokio::sync::watch;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the certificate, key or CA.
    #[error("TLS setup: {0}")]
    Rustls(String),
    /// A principal mapping rule's pattern is not a regular expression.
    #[error("ssl_principal_mapping_rules: {0}")]
    Rule(String),
}

fn file_error(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

#[derive(Debug, Clone)]
struct Files {
    cert: PathBuf,
    key: PathBuf,
    ca: Option<PathBuf>,
    client_auth: ClientAuth,
}

impl Files {
    fn modified(&self) -> Vec<Option<SystemTime>> {
        [Some(&self.cert), Some(&self.key), self.ca.as_ref()]
            .into_iter()
            .flatten()
            .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .collect()
    }

    fn load(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .map_err(|e| file_error(&self.cert, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| file_error(&self.cert, e))?;
        if certs.is_empty() {
            return Err(file_error(&self.cert, "no CERTIFICATE in the file"));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| file_error(&self.key, e))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        let builder = match (&self.ca, self.client_auth) {
            (Some(ca), ClientAuth::Requested | ClientAuth::Required) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(ca).map_err(|e| file_error(ca, e))? {
                    roots
                        .add(cert.map_err(|e| file_error(ca, e))?)
                        .map_err(|e| file_error(ca, e))?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider);
                let verifier = if self.client_auth == ClientAuth::Requested {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                builder.with_client_cert_verifier(
                    verifier
                        .build()
                        .map_err(|e| TlsError::Rustls(e.to_string()))?,
                )
            }
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        config.alpn_protocols.clear();
        Ok(Arc::new(config))
    }
}

/// The current TLS configuration, swapped when the files change.
#[derive(Debug)]
pub struct Tls {
    files: Files,
    current: RwLock<(Vec<Option<SystemTime>>, Arc<ServerConfig>)>,
    reloads: std::sync::atomic::AtomicU64,
}

impl Tls {
    /// Loads the files named by `config`, if TLS is configured at all.
    ///
    /// # Errors
    ///
    /// [`TlsError`] naming the file at fault.
    pub fn load(config: &SecurityConfig) -> Result<Option<Arc<Tls>>, TlsError> {
        let (Some(cert), Some(key)) = (&config.tls_cert_file, &config.tls_key_file) else {
            return Ok(None);
        };
        let files = Files {
            cert: cert.clone(),
            key: key.clone(),
            ca: config.tls_ca_file.clone(),
            client_auth: config.tls_client_auth,
        };
        let stamp = files.modified();
        let server = files.load()?;
        Ok(Some(Arc::new(Tls {
            files,
            current: RwLock::new((stamp, server)),
            reloads: Default::default(),
        })))
    }

    /// The configuration new connections use.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        match self.current.read() {
            Ok(current) => current.1.clone(),
            Err(poisoned) => poisoned.into_inner().1.clone(),
        }
    }

    /// Times the files were reloaded.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Reloads when a file changed since the last load. A change that does not load (a key
    /// written before its certificate) keeps the old configuration and is tried again.
    pub fn reload_if_changed(&self) {
        let stamp = self.files.modified();
        let unchanged = match self.current.read() {
            Ok(current) => current.0 == stamp,
            Err(_) => false,
        };
        if unchanged {
            return;
        }
        match self.files.load() {
            Ok(server) => {
                if let Ok(mut current) = self.current.write() {
                    *current = (stamp, server);
                }
                self.reloads
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS files changed but do not load; keeping the previous ones");
            }
        }
    }

    /// Checks the files every `interval` until `stop`.
    pub async fn watch(self: Arc<Tls>, interval: Duration, mut stop: watch::Receiver<bool>) {
        if interval.is_zero() {
            return;
        }
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                _ = stop.changed() => return,
            }
            let tls = self.clone();
            let _ = tokio::task::spawn_blocking(move || tls.reload_if_changed()).await;
        }
    }
}

/// Turns a certificate's subject into a principal name, by Kafka's mapping rules.
#[derive(Debug)]
pub struct PrincipalMapper {
    rules: Vec<Option<(Regex, String, Option<char>)>>,
}

impl PrincipalMapper {
    /// Compiles the rules.
    ///
    /// # Errors
    ///
    /// [`TlsError::Rule`] naming a pattern that is not a regular expression.
    pub fn new(rules: &[PrincipalRule]) -> Result<PrincipalMapper, TlsError> {
        let mut compiled = Vec::new();
        for rule in rules {
            compiled.push(match rule {
                PrincipalRule::Default => None,
                PrincipalRule::Rule {
                    pattern,
                    replacement,
                    case,
                } => Some((
                    Regex::new(pattern).map_err(|e| TlsError::Rule(format!("{pattern}: {e}")))?,
                    replacement.clone(),
                    *case,
                )),
            });
        }
        Ok(PrincipalMapper { rules: compiled })
    }

    /// The principal (`User:...`) for the certificate `der`, or `None` when it does not parse.
    pub fn principal(&self, der: &[u8]) -> Option<String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let dn = distinguished_name(cert.subject());
        for rule in &self.rules {
            match rule {
                None => return Some(format!("User:{dn}")),
                Some((regex, replacement, case)) => {
                    if let Some(found) = regex.captures(&dn) {
                        let mut name = String::new();
                        found.expand(replacement, &mut name);
                        let name = match case {
                            Some('L') => name.to_lowercase(),
                            Some('U') => name.to_uppercase(),
                            _ => name,
                        };
                        return Some(format!("User:{name}"));
                    }
                }
            }
        }
        Some(format!("User:{dn}"))
    }
}

/// The subject as Kafka prints it (RFC 2253: most specific first, `CN=a,OU=b,O=c`).
fn distinguished_name(name: &x509_parser::x509::X509Name<'_>) -> String {
    let mut parts: Vec<String> = Vec::new();
    for rdn in name.iter_rdn() {
        for attr in rdn.iter() {
            let key = match attr.attr_type().to_id_string().as_str() {
                "2.5.4.3" => "CN".to_string(),
                "2.5.4.11" => "OU".to_string(),
                "2.5.4.10" => "O".to_string(),
                "2.5.4.7" => "L".to_string(),
                "2.5.4.8" => "ST".to_string(),
                "2.5.4.6" => "C".to_string(),
                "0.9.2342.19200300.100.1.25" => "DC".to_string(),
                "0.9.2342.19200300.100.1.1" => "UID".to_string(),
                other => other.to_string(),
            };
            let value = attr.as_str().unwrap_or("").replace(',', "\\,");
            parts.push(format!("{key}={value}"));
        }
    }
    parts.reverse();
    parts.join(",")
}
