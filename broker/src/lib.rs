//! silt's broker.
//!
//! # Layout
//!
//! - [`log`]: one partition's local log: segments, group commit, recovery, retention.
#![warn(missing_docs)]

pub mod log;
