//! SCRAM-SHA-256/512 (RFC 5802, RFC 7677) and PLAIN checked against SCRAM credentials, sans-io.
//!
//! No well-kept crate serves SCRAM-SHA-512 (the `scram` crate does SHA-256 only, on an old
//! `ring`; `scram-rs` is not open source), so the exchange is written here on aws-lc-rs's
//! PBKDF2, HMAC and digests, which rustls already links. Only the stored key and the server key
//! are kept (RFC 5802 section 3): a leaked credential does not log anyone in, and the password is
//! never seen except by PLAIN, which derives the same keys from it and compares.

use std::num::NonZeroU32;

use aws_lc_rs::rand::SecureRandom;
use aws_lc_rs::{constant_time, digest, hmac, pbkdf2};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

/// Kafka's bounds on SCRAM iterations (KIP-554).
pub const MIN_ITERATIONS: i32 = 4096;
/// Upper bound, as Kafka's.
pub const MAX_ITERATIONS: i32 = 16384;
/// Longest SCRAM message accepted (a username plus nonces and a proof fit easily).
const MESSAGE_BYTES_MAX: usize = 4096;

/// A SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Mechanism {
    /// SCRAM-SHA-256 (Kafka's mechanism type 1).
    #[serde(rename = "SCRAM-SHA-256")]
    Sha256,
    /// SCRAM-SHA-512 (type 2).
    #[serde(rename = "SCRAM-SHA-512")]
    Sha512,
}

impl Mechanism {
    /// Every mechanism.
    pub const ALL: [Mechanism; 2] = [Mechanism::Sha256, Mechanism::Sha512];

    /// SASL name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// From the SASL name.
    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Kafka's `ScramMechanism` code.
    pub fn code(self) -> i8 {
        match self {
            Mechanism::Sha256 => 1,
            Mechanism::Sha512 => 2,
        }
    }

    /// From Kafka's code.
    pub fn from_code(code: i8) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.code() == code)
    }

    fn hmac_algorithm(self) -> hmac::Algorithm {
        match self {
            Mechanism::Sha256 => hmac::HMAC_SHA256,
            Mechanism::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest_algorithm(self) -> &'static digest::Algorithm {
        match self {
            Mechanism::Sha256 => &digest::SHA256,
            Mechanism::Sha512 => &digest::SHA512,
        }
    }

    fn pbkdf2_algorithm(self) -> pbkdf2::Algorithm {
        match self {
            Mechanism::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Mechanism::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    /// Bytes of the hash.
    pub fn hash_len(self) -> usize {
        self.digest_algorithm().output_len()
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(self.hmac_algorithm(), key), data)
            .as_ref()
            .to_vec()
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.digest_algorithm(), data)
            .as_ref()
            .to_vec()
    }

    /// `Hi(password, salt, iterations)`: PBKDF2 with this mechanism's HMAC.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0; self.hash_len()];
        let iterations = NonZeroU32::new(iterations.max(1)).unwrap_or(NonZeroU32::MIN);
        pbkdf2::derive(
            self.pbkdf2_algorithm(),
            iterations,
            salt,
            password,
            &mut out,
        );
        out
    }

    /// The client's proof for `auth_message` (for clients: the CLI and tests).
    pub fn client_proof(self, salted_password: &[u8], auth_message: &[u8]) -> Vec<u8> {
        let client_key = self.hmac(salted_password, b"Client Key");
        let stored_key = self.hash(&client_key);
        let signature = self.hmac(&stored_key, auth_message);
        client_key
            .iter()
            .zip(signature)
            .map(|(k, s)| k ^ s)
            .collect()
    }

    /// The server's signature over `auth_message`, which a client checks.
    pub fn server_signature(self, salted_password: &[u8], auth_message: &[u8]) -> Vec<u8> {
        self.hmac(&self.hmac(salted_password, b"Server Key"), auth_message)
    }
}

/// What is stored for one user and mechanism: never the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// Salt.
    pub salt: Vec<u8>,
    /// `H(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: u32,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// The credential of a salted password (what AlterUserScramCredentials carries).
    pub fn from_salted(
        mechanism: Mechanism,
        salt: &[u8],
        salted_password: &[u8],
        iterations: u32,
    ) -> Credential {
        Credential {
            salt: salt.to_vec(),
            stored_key: mechanism.hash(&mechanism.hmac(salted_password, b"Client Key")),
            server_key: mechanism.hmac(salted_password, b"Server Key"),
            iterations,
        }
    }

    /// A credential for `password` with a fresh random salt.
    pub fn new(mechanism: Mechanism, password: &str, iterations: u32) -> Credential {
        let salt = random_bytes(24);
        let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations);
        Credential::from_salted(mechanism, &salt, &salted, iterations)
    }

    /// True when `password` is this credential's (PLAIN, basic auth). Costs one PBKDF2.
    pub fn verify_password(&self, mechanism: Mechanism, password: &str) -> bool {
        let salted = mechanism.salted_password(password.as_bytes(), &self.salt, self.iterations);
        let stored = mechanism.hash(&mechanism.hmac(&salted, b"Client Key"));
        constant_time::verify_slices_are_equal(&stored, &self.stored_key).is_ok()
    }
}

/// Random bytes from the system's generator.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0; n];
    // The system RNG only fails when the OS has none; a zero salt is still a valid (weak)
    // salt, and a zero nonce part is still combined with the client's.
    let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes);
    bytes
}

/// `n` random letters and digits: the server's part of the nonce, as Kafka makes it (some
/// clients, librdkafka 2.0 among them, mishandle `+` and `/` in a nonce).
pub fn alphanumeric(n: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    random_bytes(n)
        .into_iter()
        .map(|b| ALPHABET[b as usize % ALPHABET.len()] as char)
        .collect()
}

/// Why an exchange failed. The text goes to the client: it never says whether the user exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// Wrong password, unknown user, or a proof that does not verify.
    #[error("authentication failed: invalid credentials with SASL mechanism {0}")]
    Failed(&'static str),
    /// A message that does not parse, or comes out of turn.
    #[error("malformed {mechanism} message: {reason}")]
    Malformed {
        /// The mechanism.
        mechanism: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Where a SCRAM exchange is.
#[derive(Debug)]
enum Step {
    First,
    Final {
        user: String,
        nonce: String,
        gs2_header: String,
        client_first_bare: String,
        server_first: String,
        credential: Credential,
    },
    Done,
}

/// The server side of one SCRAM exchange.
#[derive(Debug)]
pub struct ScramServer {
    mechanism: Mechanism,
    step: Step,
}

/// What the server answers a client message with.
#[derive(Debug, PartialEq, Eq)]
pub enum ScramReply {
    /// Send this and wait for the client's next message.
    Continue(Vec<u8>),
    /// Authenticated as this user: send the last message.
    Authenticated {
        /// The user.
        user: String,
        /// server-final-message.
        message: Vec<u8>,
    },
}

impl ScramServer {
    /// A new exchange.
    pub fn new(mechanism: Mechanism) -> ScramServer {
        ScramServer {
            mechanism,
            step: Step::First,
        }
    }

    /// The mechanism of this exchange.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    fn malformed(&self, reason: impl Into<String>) -> SaslError {
        SaslError::Malformed {
            mechanism: self.mechanism.name(),
            reason: reason.into(),
        }
    }

    /// Takes the client's next message; `lookup` finds a user's credential.
    ///
    /// # Errors
    ///
    /// [`SaslError`]; the exchange is over after one.
    pub fn step(
        &mut self,
        message: &[u8],
        lookup: impl FnOnce(&str) -> Option<Credential>,
    ) -> Result<ScramReply, SaslError> {
        if message.len() > MESSAGE_BYTES_MAX {
            self.step = Step::Done;
            return Err(self.malformed(format!(
                "{} bytes, more than {MESSAGE_BYTES_MAX}",
                message.len()
            )));
        }
        let text = std::str::from_utf8(message).map_err(|_| self.malformed("not UTF-8"))?;
        match std::mem::replace(&mut self.step, Step::Done) {
            Step::First => self.client_first(text, lookup),
            Step::Final {
                user,
                nonce,
                gs2_header,
                client_first_bare,
                server_first,
                credential,
            } => {
                let auth = FinalCheck {
                    nonce: &nonce,
                    gs2_header: &gs2_header,
                    client_first_bare: &client_first_bare,
                    server_first: &server_first,
                    credential: &credential,
                };
                let message = self.client_final(text, &auth)?;
                Ok(ScramReply::Authenticated { user, message })
            }
            Step::Done => Err(self.malformed("the exchange is over")),
        }
    }

    fn client_first(
        &mut self,
        text: &str,
        lookup: impl FnOnce(&str) -> Option<Credential>,
    ) -> Result<ScramReply, SaslError> {
        // gs2-header: cbind-flag "," [authzid] ","
        let mut parts = text.splitn(3, ',');
        let (Some(cbind), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(self.malformed("no GS2 header"));
        };
        match cbind {
            "n" | "y" => {}
            c if c.starts_with("p=") => {
                return Err(self.malformed("channel binding is not supported"));
            }
            _ => return Err(self.malformed("bad channel-binding flag")),
        }
        let mut user = None;
        let mut client_nonce = None;
        for attribute in bare.split(',') {
            match attribute.split_once('=') {
                Some(("n", name)) => {
                    user = Some(
                        decode_saslname(name)
                            .ok_or_else(|| self.malformed("bad username encoding"))?,
                    )
                }
                Some(("r", nonce)) => client_nonce = Some(nonce.to_string()),
                Some(("m", _)) => return Err(self.malformed("mandatory extension not supported")),
                Some(("tokenauth", _)) => {
                    return Err(self.malformed("delegation tokens are not supported"));
                }
                Some(_) => {} // Kafka's optional extensions
                None => return Err(self.malformed("attribute without '='")),
            }
        }
        let (Some(user), Some(client_nonce)) = (user, client_nonce) else {
            return Err(self.malformed("client-first-message needs n= and r="));
        };
        if user.is_empty() || client_nonce.is_empty() {
            return Err(self.malformed("empty username or nonce"));
        }
        if let Some(authzid) = authzid.strip_prefix("a=")
            && decode_saslname(authzid).as_deref() != Some(user.as_str())
        {
            return Err(SaslError::Failed(self.mechanism.name()));
        }
        let credential = lookup(&user).ok_or(SaslError::Failed(self.mechanism.name()))?;
        let nonce = format!("{client_nonce}{}", alphanumeric(24));
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credential.salt),
            credential.iterations
        );
        let reply = server_first.clone().into_bytes();
        self.step = Step::Final {
            user,
            nonce,
            gs2_header: format!("{cbind},{authzid},"),
            client_first_bare: bare.to_string(),
            server_first,
            credential,
        };
        Ok(ScramReply::Continue(reply))
    }

    fn client_final(&self, text: &str, auth: &FinalCheck<'_>) -> Result<Vec<u8>, SaslError> {
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or_else(|| self.malformed("client-final-message has no proof"))?;
        let mut channel = None;
        let mut nonce = None;
        for attribute in without_proof.split(',') {
            match attribute.split_once('=') {
                Some(("c", c)) => channel = Some(c),
                Some(("r", r)) => nonce = Some(r),
                Some(_) => {}
                None => return Err(self.malformed("attribute without '='")),
            }
        }
        let expected_channel = B64.encode(auth.gs2_header);
        if channel != Some(expected_channel.as_str()) {
            return Err(self.malformed("channel binding does not match the GS2 header"));
        }
        // Kafka accepts a final nonce that ends with the one it sent (librdkafka 2.0 sends its
        // own nonce twice); the server's fresh part must be there either way.
        if !nonce.is_some_and(|n| n.ends_with(auth.nonce)) {
            return Err(self.malformed("nonce does not match"));
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| self.malformed("proof is not base64"))?;
        let m = self.mechanism;
        if proof.len() != m.hash_len() {
            return Err(SaslError::Failed(m.name()));
        }
        let auth_message = format!(
            "{},{},{without_proof}",
            auth.client_first_bare, auth.server_first
        );
        let signature = m.hmac(&auth.credential.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        if constant_time::verify_slices_are_equal(&m.hash(&client_key), &auth.credential.stored_key)
            .is_err()
        {
            return Err(SaslError::Failed(m.name()));
        }
        let server_signature = m.hmac(&auth.credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

struct FinalCheck<'a> {
    nonce: &'a str,
    gs2_header: &'a str,
    client_first_bare: &'a str,
    server_first: &'a str,
    credential: &'a Credential,
}

/// RFC 5802 saslname: `=2C` is `,` and `=3D` is `=`; any other `=` is malformed.
fn decode_saslname(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return None,
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// RFC 5802 saslname encoding (for clients).
pub fn encode_saslname(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd` into (user, password).
///
/// # Errors
///
/// [`SaslError::Malformed`] when the message is not three NUL-separated UTF-8 parts, or the
/// authorization id names someone else ([`SaslError::Failed`]).
pub fn parse_plain(message: &[u8]) -> Result<(String, String), SaslError> {
    let malformed = |reason: &str| SaslError::Malformed {
        mechanism: "PLAIN",
        reason: reason.to_string(),
    };
    if message.len() > MESSAGE_BYTES_MAX {
        return Err(malformed("message too long"));
    }
    let text = std::str::from_utf8(message).map_err(|_| malformed("not UTF-8"))?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("expected authzid NUL user NUL password"));
    };
    if user.is_empty() || password.is_empty() {
        return Err(malformed("empty user or password"));
    }
    if !authzid.is_empty() && authzid != user {
        return Err(SaslError::Failed("PLAIN"));
    }
    Ok((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client side of the exchange, as RFC 5802 describes it.
    fn client_exchange(
        m: Mechanism,
        server: &mut ScramServer,
        user: &str,
        password: &str,
        stored: &Credential,
    ) -> Result<String, SaslError> {
        let client_nonce = "fyko+d2lbbFgONRv9qkxdawL";
        let bare = format!("n={},r={client_nonce}", encode_saslname(user));
        let first = format!("n,,{bare}");
        let ScramReply::Continue(server_first) =
            server.step(first.as_bytes(), |_| Some(stored.clone()))?
        else {
            panic!("expected server-first");
        };
        let server_first = String::from_utf8(server_first).expect("utf8");
        let mut nonce = "";
        let mut salt = Vec::new();
        let mut iterations = 0;
        for a in server_first.split(',') {
            match a.split_once('=').expect("attr") {
                ("r", r) => nonce = r,
                ("s", s) => salt = B64.decode(s).expect("salt"),
                ("i", i) => iterations = i.parse().expect("iterations"),
                _ => {}
            }
        }
        assert!(nonce.starts_with(client_nonce));
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{bare},{server_first},{without_proof}");
        let salted = m.salted_password(password.as_bytes(), &salt, iterations);
        let proof = m.client_proof(&salted, auth_message.as_bytes());
        let last = format!("{without_proof},p={}", B64.encode(proof));
        match server.step(last.as_bytes(), |_| None)? {
            ScramReply::Authenticated { user, message } => {
                let expected = format!(
                    "v={}",
                    B64.encode(m.server_signature(&salted, auth_message.as_bytes()))
                );
                assert_eq!(String::from_utf8(message).expect("utf8"), expected);
                Ok(user)
            }
            ScramReply::Continue(_) => panic!("expected the end"),
        }
    }

    #[test]
    fn exchange_authenticates_the_right_password_only() {
        for m in Mechanism::ALL {
            let stored = Credential::new(m, "pencil", 4096);
            let mut server = ScramServer::new(m);
            assert_eq!(
                client_exchange(m, &mut server, "us,er=", "pencil", &stored),
                Ok("us,er=".to_string())
            );
            let mut server = ScramServer::new(m);
            assert_eq!(
                client_exchange(m, &mut server, "user", "pen", &stored),
                Err(SaslError::Failed(m.name()))
            );
            // A finished exchange takes nothing more.
            assert!(server.step(b"n,,n=a,r=b", |_| None).is_err());
        }
    }

    #[test]
    fn rfc7677_test_vector_verifies() {
        // RFC 7677 section 3: user "user", password "pencil".
        let m = Mechanism::Sha256;
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
        let salted = m.salted_password(b"pencil", &salt, 4096);
        let auth = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        assert_eq!(
            B64.encode(m.client_proof(&salted, auth.as_bytes())),
            "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert_eq!(
            B64.encode(m.server_signature(&salted, auth.as_bytes())),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn unknown_users_and_malformed_messages_fail_cleanly() {
        let mut server = ScramServer::new(Mechanism::Sha512);
        assert_eq!(
            server.step(b"n,,n=ghost,r=abc", |_| None),
            Err(SaslError::Failed("SCRAM-SHA-512"))
        );
        for bad in [
            &b""[..],
            b"n,,",
            b"p=tls-unique,,n=a,r=b",
            b"x,,n=a,r=b",
            b"n,,n=a",
            b"n,,n=a=ZZ,r=b",
            b"n,,n=a,r=b,tokenauth=true",
            &[0xff, 0xfe],
            &[b'n'; 5000],
        ] {
            let mut server = ScramServer::new(Mechanism::Sha256);
            let stored = Credential::new(Mechanism::Sha256, "x", 4096);
            assert!(
                server.step(bad, |_| Some(stored.clone())).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn plain_parses_and_checks_against_scram_credentials() {
        assert_eq!(
            parse_plain(b"\0alice\0secret"),
            Ok(("alice".to_string(), "secret".to_string()))
        );
        assert!(parse_plain(b"bob\0alice\0secret").is_err());
        assert!(parse_plain(b"alice\0secret").is_err());
        let c = Credential::new(Mechanism::Sha512, "secret", 4096);
        assert!(c.verify_password(Mechanism::Sha512, "secret"));
        assert!(!c.verify_password(Mechanism::Sha512, "Secret"));
    }
}
