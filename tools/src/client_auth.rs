//! How the CLI reaches a secured listener: TLS and SASL settings from `SILT_CLI_*` variables,
//! named as librdkafka's properties are (`security.protocol` is `SILT_CLI_SECURITY_PROTOCOL`):
//!
//! ```text
//! SILT_CLI_SECURITY_PROTOCOL          PLAINTEXT (default), SSL, SASL_PLAINTEXT, SASL_SSL
//! SILT_CLI_SASL_MECHANISM             SCRAM-SHA-512 (default), SCRAM-SHA-256, PLAIN
//! SILT_CLI_SASL_USERNAME / _PASSWORD  the user
//! SILT_CLI_SSL_CA_LOCATION            PEM CA bundle the broker's certificate is checked with
//! SILT_CLI_SSL_CERTIFICATE_LOCATION   PEM client certificate (mutual TLS)
//! SILT_CLI_SSL_KEY_LOCATION           PEM client key
//! ```

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use silt_broker::security::scram::{Mechanism, alphanumeric, encode_saslname};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::client::{Client, check, str_bytes};

/// A byte stream to a broker: TCP or TLS over TCP.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// The CLI's client security settings.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientSecurity {
    tls: bool,
    sasl: Option<(String, String, String)>,
    ca: Option<String>,
    cert: Option<(String, String)>,
}

impl ClientSecurity {
    /// From the `SILT_CLI_*` variables.
    pub(crate) fn from_env() -> Result<ClientSecurity> {
        let var = |name: &str| std::env::var(format!("SILT_CLI_{name}")).ok();
        let protocol = var("SECURITY_PROTOCOL").unwrap_or_else(|| "PLAINTEXT".into());
        let (tls, sasl) = match protocol.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => (false, false),
            "SSL" => (true, false),
            "SASL_PLAINTEXT" => (false, true),
            "SASL_SSL" => (true, true),
            other => bail!(
                "SILT_CLI_SECURITY_PROTOCOL={other}: expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
            ),
        };
        let sasl = if sasl {
            let mechanism = var("SASL_MECHANISM").unwrap_or_else(|| "SCRAM-SHA-512".into());
            let user = var("SASL_USERNAME").context("SASL needs SILT_CLI_SASL_USERNAME")?;
            let password = var("SASL_PASSWORD").context("SASL needs SILT_CLI_SASL_PASSWORD")?;
            Some((mechanism.to_ascii_uppercase(), user, password))
        } else {
            None
        };
        let cert = match (var("SSL_CERTIFICATE_LOCATION"), var("SSL_KEY_LOCATION")) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => bail!(
                "mutual TLS needs both SILT_CLI_SSL_CERTIFICATE_LOCATION and SILT_CLI_SSL_KEY_LOCATION"
            ),
        };
        Ok(ClientSecurity {
            tls,
            sasl,
            ca: var("SSL_CA_LOCATION"),
            cert,
        })
    }

    /// Wraps a connected socket in TLS if asked for.
    pub(crate) async fn wrap(&self, socket: TcpStream, address: &str) -> Result<Box<dyn Stream>> {
        if !self.tls {
            return Ok(Box::new(socket));
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        let ca = self.ca.as_ref().context(
            "TLS needs SILT_CLI_SSL_CA_LOCATION (the CA that signed the broker's certificate)",
        )?;
        for cert in CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {ca}"))? {
            roots
                .add(cert.with_context(|| format!("reading {ca}"))?)
                .with_context(|| format!("{ca}: not a CA certificate"))?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let config = match &self.cert {
            Some((cert, key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .with_context(|| format!("reading {cert}"))?
                    .collect::<Result<Vec<_>, _>>()
                    .with_context(|| format!("reading {cert}"))?;
                let key =
                    PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading {key}"))?;
                builder.with_client_auth_cert(chain, key)?
            }
            None => builder.with_no_client_auth(),
        };
        let host = address
            .rsplit_once(':')
            .map_or(address, |(host, _)| host)
            .trim_matches(['[', ']']);
        let name = ServerName::try_from(host.to_string())
            .with_context(|| format!("{host} is not a server name"))?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, socket)
            .await
            .with_context(|| format!("TLS handshake with {address}"))?;
        Ok(Box::new(stream))
    }

    /// Authenticates `client` with SASL if asked for.
    pub(crate) async fn authenticate(&self, client: &mut Client) -> Result<()> {
        let Some((mechanism, user, password)) = &self.sasl else {
            return Ok(());
        };
        let (handshake, _) = client
            .send(
                SaslHandshakeRequest::default().with_mechanism(str_bytes(mechanism)),
                1,
            )
            .await?;
        check(handshake.error_code, None, &format!("SASL {mechanism}"))?;
        if mechanism == "PLAIN" {
            let token = format!("\0{user}\0{password}");
            round(client, token.into_bytes()).await?;
            return Ok(());
        }
        let scram = Mechanism::from_name(mechanism)
            .with_context(|| format!("unknown SASL mechanism {mechanism}"))?;
        let nonce = alphanumeric(24);
        let bare = format!("n={},r={nonce}", encode_saslname(user));
        let server_first = round(client, format!("n,,{bare}").into_bytes()).await?;
        let server_first = String::from_utf8(server_first.to_vec())?;
        let (mut server_nonce, mut salt, mut iterations) = ("", Vec::new(), 0u32);
        for attribute in server_first.split(',') {
            match attribute.split_once('=') {
                Some(("r", r)) => server_nonce = r,
                Some(("s", s)) => salt = B64.decode(s).context("salt is not base64")?,
                Some(("i", i)) => iterations = i.parse().context("iterations")?,
                _ => {}
            }
        }
        if !server_nonce.starts_with(&nonce) || salt.is_empty() || iterations == 0 {
            bail!("the broker's SCRAM reply is malformed");
        }
        let without_proof = format!("c=biws,r={server_nonce}");
        let auth_message = format!("{bare},{server_first},{without_proof}");
        let salted = scram.salted_password(password.as_bytes(), &salt, iterations);
        let proof = B64.encode(scram.client_proof(&salted, auth_message.as_bytes()));
        let server_final = round(client, format!("{without_proof},p={proof}").into_bytes()).await?;
        let expected = format!(
            "v={}",
            B64.encode(scram.server_signature(&salted, auth_message.as_bytes()))
        );
        if server_final.as_ref() != expected.as_bytes() {
            bail!(
                "the broker's SCRAM signature does not verify: not the broker that holds this user"
            );
        }
        Ok(())
    }
}

async fn round(client: &mut Client, token: Vec<u8>) -> Result<Bytes> {
    let (response, _): (SaslAuthenticateResponse, _) = client
        .send(
            SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token)),
            2,
        )
        .await?;
    check(
        response.error_code,
        response.error_message.as_ref(),
        "SASL authentication",
    )?;
    Ok(response.auth_bytes)
}
