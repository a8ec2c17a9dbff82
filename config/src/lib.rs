//! silt's typed configuration.
//!
//! Two kinds of settings live here:
//!
//! - [`NodeConfig`]: how one `silt serve` process runs (addresses, data directory, archive,
//!   limits). It is assembled from layers, lowest precedence first: built-in defaults, a TOML
//!   file, `SILT_*` environment variables, command-line flags. Every layer goes through the same
//!   [`NodeConfig::set`], so a bad value is reported the same way wherever it came from.
//! - [`TopicConfig`]: the properties of one topic, under Kafka's names (`retention.ms`,
//!   `segment.bytes`, ...) with Redpanda's aliases accepted (`retention.local.target.ms`,
//!   `redpanda.remote.write`, ...).
//!
//! This crate parses and validates values. It never reads files or the environment itself:
//! the binary hands it the file's text and the variables, which keeps it testable and keeps the
//! one place that touches the process environment in the binary.
//!
//! ```
//! use silt_config::{NodeConfig, Source};
//!
//! let mut config = NodeConfig::default();
//! config.apply_toml("kafka_addr = \"127.0.0.1:19092\"", "silt.toml").unwrap();
//! config.set("node_id", "3", Source::Env).unwrap();
//! assert_eq!(config.node_id, 3);
//! let err = config.set("kafka_adr", "x", Source::Flag).unwrap_err();
//! assert!(err.to_string().contains("kafka_addr"), "{err}");
//! ```
#![warn(missing_docs)]

mod error;
mod node;
mod security;
mod topic;

pub use error::{ConfigError, Source};
pub use node::{ArchiveTarget, ENV_PREFIX, NODE_KEYS, NodeConfig, all_keys};
pub use security::{
    ClientAuth, HIDDEN, Listener, MECHANISMS, PrincipalRule, SECURITY_KEYS, Secret, SecurityConfig,
    SecurityProtocol, Toggle, redact_url,
};
pub use topic::{
    CleanupPolicy, CompressionType, PropertyKind, TOPIC_PROPERTIES, TimestampType, TopicConfig,
    TopicDefaults, TopicProperty,
};
