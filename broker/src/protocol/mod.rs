//! The Kafka wire protocol, without I/O: framing, request parsing, the versions silt speaks,
//! and the one place Kafka error codes are chosen. Message types come from `kafka-protocol`.

pub mod error_code;
pub mod frame;
pub mod request;
pub mod versions;

pub use error_code::ErrorCode;
pub use frame::{FrameError, check_frame};
pub use request::{ParseError, Request, encode_response, parse_request};
