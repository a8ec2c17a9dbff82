//! A small Kafka client for the CLI: one connection, version negotiation, typed requests.
//!
//! It speaks the plain Kafka API (so `silt topic ...` works against any Kafka-compatible
//! broker) and turns error codes into sentences.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client_auth::{ClientSecurity, Stream};

/// Largest response the CLI accepts.
const RESPONSE_BYTES_MAX: usize = 256 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to one broker.
pub(crate) struct Client {
    stream: Box<dyn Stream>,
    correlation_id: i32,
    versions: HashMap<i16, (i16, i16)>,
    address: String,
}

impl Client {
    /// Connects and asks the broker which API versions it speaks.
    pub(crate) async fn connect(address: &str) -> Result<Client> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
            .await
            .with_context(|| format!("timed out connecting to {address}"))?
            .with_context(|| {
                format!("cannot connect to {address}; is silt running? (silt serve)")
            })?;
        stream.set_nodelay(true)?;
        let security = ClientSecurity::from_env()?;
        let stream = security.wrap(stream, address).await?;
        let mut client = Client {
            stream,
            correlation_id: 0,
            versions: HashMap::new(),
            address: address.to_string(),
        };
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("silt-cli"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let response: ApiVersionsResponse = client.send_at(request, 3).await?;
        if let Some(error) = ResponseError::try_from_code(response.error_code) {
            bail!("{address} refused ApiVersions: {}", describe(error));
        }
        client.versions = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        security.authenticate(&mut client).await?;
        Ok(client)
    }

    /// The highest version both sides speak, at most `preferred`.
    fn version_of<R: Request>(&self, preferred: i16) -> Result<i16> {
        let api =
            ApiKey::try_from(R::KEY).map_err(|_| anyhow::anyhow!("unknown API key {}", R::KEY))?;
        let Some(&(min, max)) = self.versions.get(&R::KEY) else {
            bail!("{} does not support {api:?}", self.address);
        };
        let version = preferred.min(max).min(R::VERSIONS.max);
        if version < min || version < R::VERSIONS.min {
            bail!(
                "{} speaks {api:?} v{min}-{max}, which this client does not",
                self.address
            );
        }
        Ok(version)
    }

    /// Sends a request at the best common version (at most `preferred`) and decodes the answer.
    pub(crate) async fn send<R: Request>(
        &mut self,
        request: R,
        preferred: i16,
    ) -> Result<(R::Response, i16)> {
        let version = self.version_of::<R>(preferred)?;
        Ok((self.send_at(request, version).await?, version))
    }

    /// Sends a request without waiting for an answer (Produce with acks=0 has none).
    pub(crate) async fn send_only<R: Request>(&mut self, request: R, preferred: i16) -> Result<()> {
        let version = self.version_of::<R>(preferred)?;
        self.write_request(&request, version).await.map(|_| ())
    }

    async fn write_request<R: Request>(&mut self, request: &R, version: i16) -> Result<i32> {
        self.correlation_id += 1;
        let api =
            ApiKey::try_from(R::KEY).map_err(|_| anyhow::anyhow!("unknown API key {}", R::KEY))?;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("silt-cli")));
        let mut frame = BytesMut::new();
        frame.put_i32(0);
        header.encode(&mut frame, api.request_header_version(version))?;
        request.encode(&mut frame, version)?;
        let size = i32::try_from(frame.len() - 4).context("request too large")?;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        self.stream
            .write_all(&frame)
            .await
            .with_context(|| format!("sending to {}", self.address))?;
        Ok(self.correlation_id)
    }

    async fn send_at<R: Request>(&mut self, request: R, version: i16) -> Result<R::Response> {
        let correlation_id = self.write_request(&request, version).await?;
        let api =
            ApiKey::try_from(R::KEY).map_err(|_| anyhow::anyhow!("unknown API key {}", R::KEY))?;
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).await.with_context(|| {
            format!(
                "{} closed the connection instead of answering {api:?}",
                self.address
            )
        })?;
        let size = usize::try_from(i32::from_be_bytes(size)).context("negative response size")?;
        if size > RESPONSE_BYTES_MAX {
            bail!("{} sent a {size}-byte response", self.address);
        }
        let mut body = vec![0u8; size];
        self.stream
            .read_exact(&mut body)
            .await
            .context("reading response")?;
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, api.response_header_version(version))?;
        if header.correlation_id != correlation_id {
            bail!(
                "response correlation id {} does not match {correlation_id}",
                header.correlation_id
            );
        }
        let response = R::Response::decode(&mut body, version)
            .with_context(|| format!("decoding {api:?} v{version} response"))?;
        if body.has_remaining() {
            tracing::debug!(remaining = body.remaining(), "response had trailing bytes");
        }
        Ok(response)
    }
}

/// A Kafka error code as a sentence, with its name for searching.
pub(crate) fn describe(error: ResponseError) -> String {
    let sentence = match error {
        ResponseError::UnknownTopicOrPartition => "the topic or partition does not exist",
        ResponseError::TopicAlreadyExists => "the topic already exists",
        ResponseError::InvalidTopicException => "the topic name is not valid",
        ResponseError::InvalidPartitions => "the partition count is not valid",
        ResponseError::InvalidReplicationFactor => {
            "the replication factor is larger than the number of brokers"
        }
        ResponseError::InvalidConfig => "a topic property or its value is not accepted",
        ResponseError::PolicyViolation => "the request breaks a broker policy",
        ResponseError::OffsetOutOfRange => "the offset is outside the partition's range",
        ResponseError::MessageTooLarge => "the batch is larger than the topic's max.message.bytes",
        ResponseError::CorruptMessage => "the batch is corrupt",
        ResponseError::NotLeaderOrFollower => "the broker is not the leader (retry)",
        ResponseError::KafkaStorageError => "the broker's storage failed for this partition",
        ResponseError::InvalidRequest => "the broker refused the request as invalid",
        ResponseError::UnsupportedVersion => "the broker does not support this request version",
        ResponseError::UnknownTopicId => "no topic has that id",
        ResponseError::GroupIdNotFound => "the group does not exist",
        ResponseError::NonEmptyGroup => "the group still has active members",
        ResponseError::UnknownMemberId => "the group has active members (or the member is unknown)",
        ResponseError::CoordinatorNotAvailable => "the coordinator is not available",
        ResponseError::InvalidGroupId => "the group id is not valid",
        _ => "",
    };
    let name = format!("{error:?}");
    if sentence.is_empty() {
        name
    } else {
        format!("{sentence} ({name})")
    }
}

/// Turns a response's error code and message into a `Result`.
pub(crate) fn check(code: i16, message: Option<&StrBytes>, what: &str) -> Result<()> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(error) => match message.map(|m| m.as_str()).filter(|m| !m.is_empty()) {
            Some(message) => bail!("{what}: {} ({error:?})", message),
            None => bail!("{what}: {}", describe(error)),
        },
    }
}

/// A protocol string from a Rust one.
pub(crate) fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}
