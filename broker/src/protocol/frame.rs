//! Kafka framing: a 4-byte big-endian length, then that many bytes of request.

/// Bytes of the length prefix.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// A frame that cannot be accepted; the connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix exceeds the node's `request_bytes_max`.
    #[error("request of {size} bytes exceeds request_bytes_max {max}")]
    TooLarge {
        /// Declared size.
        size: i64,
        /// The limit.
        max: u32,
    },
    /// The length prefix is negative or too small to hold a request header.
    #[error("invalid request length {0}")]
    InvalidLength(i32),
}

/// Smallest request: api key, api version, correlation id, client id length.
pub const REQUEST_BYTES_MIN: i32 = 10;

/// Looks at the start of `buffer`: `Ok(Some(n))` when a whole frame is there, whose payload is
/// `n` bytes after the prefix; `Ok(None)` when more bytes are needed.
///
/// # Errors
///
/// [`FrameError`] as soon as the prefix is known to be unacceptable, before the payload is
/// read, so a huge declared size never makes the server buffer it.
pub fn check_frame(buffer: &[u8], max: u32) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buffer.get(..LENGTH_PREFIX_BYTES) else {
        return Ok(None);
    };
    let size = i32::from_be_bytes(prefix.try_into().expect("4 bytes"));
    if size < REQUEST_BYTES_MIN {
        return Err(FrameError::InvalidLength(size));
    }
    if size as u32 > max {
        return Err(FrameError::TooLarge {
            size: i64::from(size),
            max,
        });
    }
    let size = size as usize;
    Ok((buffer.len() >= LENGTH_PREFIX_BYTES + size).then_some(size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_are_complete_incomplete_or_refused() {
        assert_eq!(check_frame(&[0, 0], 100), Ok(None));
        let mut frame = 12i32.to_be_bytes().to_vec();
        frame.extend([7u8; 11]);
        assert_eq!(check_frame(&frame, 100), Ok(None));
        frame.push(7);
        assert_eq!(check_frame(&frame, 100), Ok(Some(12)));
        assert_eq!(
            check_frame(&1000i32.to_be_bytes(), 100),
            Err(FrameError::TooLarge {
                size: 1000,
                max: 100
            })
        );
        assert_eq!(
            check_frame(&(-1i32).to_be_bytes(), 100),
            Err(FrameError::InvalidLength(-1))
        );
    }

    proptest! {
        #[test]
        fn any_bytes_give_an_answer_within_bounds(bytes in proptest::collection::vec(any::<u8>(), 0..64), max in 10u32..1000) {
            if let Ok(Some(n)) = check_frame(&bytes, max) {
                prop_assert!(n as u32 <= max && LENGTH_PREFIX_BYTES + n <= bytes.len());
            }
        }
    }
}
