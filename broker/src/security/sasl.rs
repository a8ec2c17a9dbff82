//! One connection's SASL state: SaslHandshake, then SaslAuthenticate rounds, then requests;
//! again when the client re-authenticates before its session ends (KIP-368).
//!
//! The connection hands these two APIs here, in request order, before anything else is
//! dispatched, because they change who the following requests come from.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::scram::{Mechanism, SaslError, ScramReply, ScramServer, parse_plain};
use super::{ANONYMOUS, Security};
use crate::controller::state::UserCredentials;
use crate::protocol::ErrorCode;

#[derive(Debug)]
enum Step {
    /// Waiting for SaslHandshake.
    Handshake,
    /// SaslHandshake chose PLAIN.
    Plain,
    /// SaslHandshake chose a SCRAM mechanism; the exchange so far.
    Scram(Box<ScramServer>),
}

/// What the connection does after a SASL request.
#[derive(Debug)]
pub enum Outcome<R> {
    /// Send the response and carry on.
    Reply(R),
    /// Send the response after the failure delay, then close the connection.
    Fail(R),
}

/// One connection's authentication.
#[derive(Debug)]
pub struct Session {
    sasl: bool,
    principal: Arc<str>,
    authenticated: bool,
    step: Step,
    expires: Option<Instant>,
    lifetime: Duration,
    raw: bool,
}

impl Session {
    /// A connection on a listener that does (`sasl`) or does not use SASL; `principal` is
    /// what TLS made of the client (its certificate's) or ANONYMOUS.
    pub fn new(sasl: bool, principal: Option<String>, lifetime: Duration) -> Session {
        Session {
            sasl,
            principal: Arc::from(principal.as_deref().unwrap_or(ANONYMOUS)),
            authenticated: false,
            step: Step::Handshake,
            expires: None,
            lifetime,
            raw: false,
        }
    }

    /// True while the client, after a SaslHandshake v0, sends bare SASL tokens (a length
    /// prefix and the token, no Kafka header) instead of SaslAuthenticate requests.
    pub fn expects_raw_token(&self) -> bool {
        self.raw && !matches!(self.step, Step::Handshake)
    }

    /// The principal requests are made as.
    pub fn principal(&self) -> &Arc<str> {
        &self.principal
    }

    /// True when ordinary requests may be served: not a SASL listener, or authenticated.
    pub fn ready(&self) -> bool {
        !self.sasl || self.authenticated
    }

    /// True when the SASL session has ended without re-authentication.
    pub fn expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|at| now >= at)
    }

    /// SaslHandshake.
    pub fn handshake(
        &mut self,
        security: &Security,
        request: &SaslHandshakeRequest,
        version: i16,
    ) -> Outcome<SaslHandshakeResponse> {
        let offered: Vec<StrBytes> = security
            .mechanisms
            .iter()
            .map(|m| StrBytes::from_string(m.clone()))
            .collect();
        let response = SaslHandshakeResponse::default().with_mechanisms(offered);
        if !self.sasl {
            return Outcome::Fail(response.with_error_code(ErrorCode::IllegalSaslState.code()));
        }
        if !matches!(self.step, Step::Handshake) {
            return Outcome::Fail(response.with_error_code(ErrorCode::IllegalSaslState.code()));
        }
        let name = request.mechanism.as_str();
        if !security.mechanisms.iter().any(|m| m == name) {
            return Outcome::Fail(
                response.with_error_code(ErrorCode::UnsupportedSaslMechanism.code()),
            );
        }
        self.step = match Mechanism::from_name(name) {
            Some(m) => Step::Scram(Box::new(ScramServer::new(m))),
            None => Step::Plain,
        };
        self.raw = version == 0;
        Outcome::Reply(response)
    }

    /// SaslAuthenticate. `lookup` finds a user's credentials; `now` stamps the session.
    pub fn authenticate(
        &mut self,
        security: &Security,
        request: &SaslAuthenticateRequest,
        lookup: impl Fn(&str) -> Option<UserCredentials>,
        now: Instant,
    ) -> Outcome<SaslAuthenticateResponse> {
        let step = std::mem::replace(&mut self.step, Step::Handshake);
        let result = match step {
            Step::Handshake => {
                return Outcome::Fail(
                    SaslAuthenticateResponse::default()
                        .with_error_code(ErrorCode::IllegalSaslState.code())
                        .with_error_message(Some(StrBytes::from_static_str(
                            "SaslAuthenticate before SaslHandshake",
                        ))),
                );
            }
            Step::Plain => parse_plain(&request.auth_bytes).and_then(|(user, password)| {
                let credentials = lookup(&user).ok_or(SaslError::Failed("PLAIN"))?;
                let verified = Mechanism::ALL.into_iter().rev().any(|m| {
                    credentials
                        .get(m)
                        .is_some_and(|c| c.verify_password(m, &password))
                });
                if verified {
                    Ok((user, Vec::new()))
                } else {
                    Err(SaslError::Failed("PLAIN"))
                }
            }),
            Step::Scram(mut server) => {
                let mechanism = server.mechanism();
                match server.step(&request.auth_bytes, |user| {
                    lookup(user).and_then(|c| c.get(mechanism).cloned())
                }) {
                    Ok(ScramReply::Continue(reply)) => {
                        self.step = Step::Scram(server);
                        return Outcome::Reply(
                            SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(reply)),
                        );
                    }
                    Ok(ScramReply::Authenticated { user, message }) => Ok((user, message)),
                    Err(e) => Err(e),
                }
            }
        };
        match result {
            Ok((user, reply)) => {
                let principal = format!("User:{user}");
                if self.authenticated && *self.principal != *principal {
                    security
                        .stats
                        .auth_failed
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Outcome::Fail(
                        SaslAuthenticateResponse::default()
                            .with_error_code(ErrorCode::SaslAuthenticationFailed.code())
                            .with_error_message(Some(StrBytes::from_static_str(
                                "re-authentication must keep the same principal",
                            ))),
                    );
                }
                let counter = if self.authenticated {
                    &security.stats.reauthenticated
                } else {
                    &security.stats.auth_succeeded
                };
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.principal = Arc::from(principal);
                self.authenticated = true;
                let lifetime_ms = if self.lifetime.is_zero() {
                    self.expires = None;
                    0
                } else {
                    self.expires = Some(now + self.lifetime);
                    self.lifetime.as_millis() as i64
                };
                Outcome::Reply(
                    SaslAuthenticateResponse::default()
                        .with_auth_bytes(Bytes::from(reply))
                        .with_session_lifetime_ms(lifetime_ms),
                )
            }
            Err(e) => {
                security
                    .stats
                    .auth_failed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Outcome::Fail(
                    SaslAuthenticateResponse::default()
                        .with_error_code(ErrorCode::SaslAuthenticationFailed.code())
                        .with_error_message(Some(StrBytes::from_string(e.to_string()))),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::scram::Credential;
    use silt_config::NodeConfig;

    fn security() -> Security {
        Security::new(&NodeConfig::default(), Vec::new()).expect("security")
    }

    fn users(name: &str) -> Option<UserCredentials> {
        let password = match name {
            "alice" => "a-pw",
            "bob" => "b-pw",
            _ => return None,
        };
        Some(UserCredentials {
            sha256: None,
            sha512: Some(Credential::new(Mechanism::Sha512, password, 4096)),
        })
    }

    fn plain(
        session: &mut Session,
        security: &Security,
        user: &str,
        pw: &str,
        now: Instant,
    ) -> bool {
        let handshake =
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
        if !matches!(
            session.handshake(security, &handshake, 1),
            Outcome::Reply(_)
        ) {
            return false;
        }
        let token = format!("\0{user}\0{pw}");
        let request =
            SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token.into_bytes()));
        matches!(
            session.authenticate(security, &request, users, now),
            Outcome::Reply(_)
        )
    }

    #[test]
    fn sessions_authenticate_expire_and_reauthenticate_as_the_same_principal_only() {
        let security = security();
        let start = Instant::now();
        let mut session = Session::new(true, None, Duration::from_secs(60));
        assert!(!session.ready());
        assert!(!plain(&mut session, &security, "alice", "wrong", start));
        assert!(plain(&mut session, &security, "alice", "a-pw", start));
        assert!(session.ready());
        assert_eq!(&**session.principal(), "User:alice");
        assert!(!session.expired(start + Duration::from_secs(59)));
        assert!(session.expired(start + Duration::from_secs(61)));
        // KIP-368: re-authenticating renews the session, as the same principal only.
        assert!(plain(
            &mut session,
            &security,
            "alice",
            "a-pw",
            start + Duration::from_secs(50)
        ));
        assert!(!session.expired(start + Duration::from_secs(100)));
        assert!(!plain(&mut session, &security, "bob", "b-pw", start));
        assert_eq!(&**session.principal(), "User:alice");
    }

    #[test]
    fn out_of_turn_and_unknown_mechanisms_are_refused() {
        let security = security();
        let mut session = Session::new(true, None, Duration::ZERO);
        let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"x"));
        let Outcome::Fail(r) = session.authenticate(&security, &request, users, Instant::now())
        else {
            panic!("authenticate before handshake must fail");
        };
        assert_eq!(r.error_code, ErrorCode::IllegalSaslState.code());
        let gssapi =
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("GSSAPI"));
        let Outcome::Fail(r) = session.handshake(&security, &gssapi, 1) else {
            panic!("GSSAPI is not offered");
        };
        assert_eq!(r.error_code, ErrorCode::UnsupportedSaslMechanism.code());
        assert!(r.mechanisms.iter().any(|m| m.as_str() == "SCRAM-SHA-512"));
        // A listener without SASL refuses the handshake.
        let mut plaintext = Session::new(false, None, Duration::ZERO);
        assert!(plaintext.ready());
        let scram = SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_static_str("SCRAM-SHA-512"));
        assert!(matches!(
            plaintext.handshake(&security, &scram, 1),
            Outcome::Fail(_)
        ));
    }
}
