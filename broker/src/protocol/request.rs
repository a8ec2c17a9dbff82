//! Turning a frame into a request, and a response into a frame.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::versions;

/// A decoded request.
#[derive(Debug)]
pub struct Request {
    /// Its header (correlation id, client id).
    pub header: RequestHeader,
    /// The API.
    pub api: ApiKey,
    /// The API version.
    pub version: i16,
    /// The decoded body.
    pub body: RequestKind,
}

/// Why a frame is not a request silt answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// An API key Kafka does not define.
    #[error("unknown API key {api_key}")]
    UnknownApi {
        /// The key.
        api_key: i16,
        /// Correlation id of the request.
        correlation_id: i32,
    },
    /// An API silt does not serve, or a version of it outside the advertised range.
    #[error("unsupported {api:?} version {version}")]
    UnsupportedVersion {
        /// The API.
        api: ApiKey,
        /// The version asked for.
        version: i16,
        /// Correlation id of the request.
        correlation_id: i32,
    },
    /// The bytes do not decode as the API and version they claim.
    #[error("malformed {api:?} v{version} request: {reason}")]
    Malformed {
        /// The API.
        api: ApiKey,
        /// The version.
        version: i16,
        /// Correlation id of the request.
        correlation_id: i32,
        /// What the decoder said.
        reason: String,
    },
}

/// Parses a frame's payload (without the length prefix).
///
/// # Errors
///
/// [`ParseError`]; the caller answers an unsupported ApiVersions with the v0 fallback
/// (KIP-511) and closes the connection for everything else, as Kafka does.
pub fn parse_request(mut payload: Bytes) -> Result<Request, ParseError> {
    assert!(payload.len() >= 8, "frame check guarantees a header prefix");
    let api_key = i16::from_be_bytes([payload[0], payload[1]]);
    let version = i16::from_be_bytes([payload[2], payload[3]]);
    let correlation_id = i32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
    let api = ApiKey::try_from(api_key).map_err(|_| ParseError::UnknownApi {
        api_key,
        correlation_id,
    })?;
    if !versions::is_supported(api, version) {
        return Err(ParseError::UnsupportedVersion {
            api,
            version,
            correlation_id,
        });
    }
    let malformed = |e: anyhow::Error| ParseError::Malformed {
        api,
        version,
        correlation_id,
        reason: format!("{e:#}"),
    };
    let header = RequestHeader::decode(&mut payload, api.request_header_version(version))
        .map_err(malformed)?;
    let body = RequestKind::decode(api, &mut payload, version).map_err(malformed)?;
    Ok(Request {
        header,
        api,
        version,
        body,
    })
}

/// Encodes a response as a whole frame, length prefix included.
///
/// # Errors
///
/// When a field does not fit the version (a bug, reported as such by the caller).
pub fn encode_response(
    correlation_id: i32,
    api: ApiKey,
    version: i16,
    response: &ResponseKind,
) -> anyhow::Result<BytesMut> {
    let mut frame = BytesMut::with_capacity(256);
    frame.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header.encode(&mut frame, api.response_header_version(version))?;
    response.encode(&mut frame, version)?;
    let size = i32::try_from(frame.len() - 4)?;
    frame[..4].copy_from_slice(&size.to_be_bytes());
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
    use kafka_protocol::protocol::StrBytes;
    use proptest::prelude::*;

    fn frame_of(api: ApiKey, version: i16, body: &impl Encodable) -> Bytes {
        let mut buf = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(42)
            .with_client_id(Some(StrBytes::from_static_str("test")));
        header
            .encode(&mut buf, api.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn parses_a_flexible_request() {
        let request = parse_request(frame_of(
            ApiKey::ApiVersions,
            3,
            &ApiVersionsRequest::default(),
        ))
        .unwrap();
        assert_eq!(
            (request.api, request.version, request.header.correlation_id),
            (ApiKey::ApiVersions, 3, 42)
        );
    }

    #[test]
    fn unknown_and_unsupported_are_told_apart() {
        let mut frame = frame_of(ApiKey::Metadata, 1, &MetadataRequest::default()).to_vec();
        frame[0..2].copy_from_slice(&999i16.to_be_bytes());
        assert_eq!(
            parse_request(Bytes::from(frame)).unwrap_err(),
            ParseError::UnknownApi {
                api_key: 999,
                correlation_id: 42
            }
        );
        let err = parse_request(
            frame_of(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()).slice(..),
        )
        .map(|_| ());
        assert!(err.is_ok());
        let mut frame = frame_of(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()).to_vec();
        frame[2..4].copy_from_slice(&77i16.to_be_bytes());
        assert!(matches!(
            parse_request(Bytes::from(frame)),
            Err(ParseError::UnsupportedVersion { version: 77, .. })
        ));
    }

    proptest! {
        /// The request path never panics, whatever follows a valid header prefix.
        #[test]
        fn arbitrary_bodies_never_panic(api in 0i16..70, version in 0i16..20, body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut frame = Vec::new();
            frame.extend(api.to_be_bytes());
            frame.extend(version.to_be_bytes());
            frame.extend(7i32.to_be_bytes());
            frame.extend(body);
            let _ = parse_request(Bytes::from(frame));
        }
    }
}
