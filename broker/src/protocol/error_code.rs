//! Kafka error codes, chosen in this one file.
//!
//! The codes themselves are `kafka-protocol`'s [`ResponseError`] (re-exported as
//! [`ErrorCode`]); handlers never write a number, they call one of the functions below.

pub use kafka_protocol::ResponseError as ErrorCode;

use crate::log::producer_state::SequenceError;
use crate::log::{AppendError, LogError};
use crate::tiering::ReadFailure;
use crate::topics::TopicError;

/// The wire value of an optional error: 0 for none.
pub fn code(error: Option<ErrorCode>) -> i16 {
    error.map_or(0, |e| e.code())
}

/// The code for a refused append.
pub fn for_append(error: &AppendError) -> ErrorCode {
    match error {
        AppendError::Corrupt(_) => ErrorCode::CorruptMessage,
        AppendError::TooLarge { .. } => ErrorCode::MessageTooLarge,
        AppendError::InvalidTimestamp { .. } => ErrorCode::InvalidTimestamp,
        AppendError::Sequence(SequenceError::OutOfOrderSequence { .. }) => {
            ErrorCode::OutOfOrderSequenceNumber
        }
        AppendError::Sequence(SequenceError::InvalidProducerEpoch { .. }) => {
            ErrorCode::InvalidProducerEpoch
        }
        AppendError::Control | AppendError::KeyRequired { .. } => ErrorCode::InvalidRecord,
        AppendError::Storage(_) => ErrorCode::KafkaStorageError,
        // The partition is closing (deleted or shutting down): retriable, the client refreshes
        // its metadata.
        AppendError::Closed | AppendError::NotLeader { .. } => ErrorCode::NotLeaderOrFollower,
        AppendError::NotEnoughReplicas { .. } => ErrorCode::NotEnoughReplicas,
    }
}

/// The code for a failed read or log operation.
pub fn for_log(error: &LogError) -> ErrorCode {
    match error {
        LogError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        LogError::Closed => ErrorCode::NotLeaderOrFollower,
        LogError::Io { .. } | LogError::Corrupt { .. } | LogError::Foreign { .. } => {
            ErrorCode::KafkaStorageError
        }
    }
}

/// The code for a failed archive read: retriable `KAFKA_STORAGE_ERROR` while the store is
/// away (the client backs off and fetches again), `CORRUPT_MESSAGE` for an object that failed
/// its checks.
pub fn for_archive(failure: ReadFailure) -> ErrorCode {
    match failure {
        ReadFailure::Unavailable => ErrorCode::KafkaStorageError,
        ReadFailure::Corrupt => ErrorCode::CorruptMessage,
    }
}

/// The code for a failed topic operation.
pub fn for_topic(error: &TopicError) -> ErrorCode {
    match error {
        TopicError::InvalidName { .. } => ErrorCode::InvalidTopicException,
        TopicError::AlreadyExists(_) => ErrorCode::TopicAlreadyExists,
        TopicError::Unknown(_) => ErrorCode::UnknownTopicOrPartition,
        TopicError::InvalidPartitions(_) => ErrorCode::InvalidPartitions,
        TopicError::InvalidReplicationFactor(_) => ErrorCode::InvalidReplicationFactor,
        TopicError::InvalidReplicaAssignment(_) => ErrorCode::InvalidReplicaAssignment,
        TopicError::Config(_)
        | TopicError::CreateOnly(_)
        | TopicError::Unsupported(_)
        | TopicError::Archive(_) => ErrorCode::InvalidConfig,
        TopicError::Log(e) => for_log(e),
        // No controller quorum now: retriable.
        TopicError::Unavailable(_) => ErrorCode::RequestTimedOut,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips() {
        for wire in -1i16..=130 {
            if let Some(error) = ErrorCode::try_from_code(wire) {
                assert_eq!(error.code(), wire);
                assert_eq!(ErrorCode::try_from_code(error.code()), Some(error));
            }
        }
        assert_eq!(code(None), 0);
        assert_eq!(code(Some(ErrorCode::OffsetOutOfRange)), 1);
    }

    #[test]
    fn retriable_where_a_client_should_retry() {
        assert!(for_append(&AppendError::Closed).is_retriable());
        assert!(for_append(&AppendError::Storage("x".into())).is_retriable());
        assert!(!for_append(&AppendError::TooLarge { size: 2, max: 1 }).is_retriable());
    }
}
