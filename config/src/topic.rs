//! Topic properties, under Kafka's names, with Redpanda's aliases.
//!
//! A topic stores only the properties set on it (its overrides, canonical name -> value, as
//! Kafka's dynamic topic configs do); [`TopicConfig::resolve`] fills the rest from the node's
//! [`TopicDefaults`]. Every value goes through [`TopicProperty::validate`] on the way in, so a
//! stored override always parses.

use std::collections::BTreeMap;

use crate::error::{ConfigError, Source, suggest};
use crate::node::{parse_bool, parse_in};

/// How a record's timestamp is set (Kafka's `message.timestamp.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// The producer's timestamp is kept.
    CreateTime,
    /// The broker stamps each batch with its append time.
    LogAppendTime,
}

/// Kafka's `compression.type` of a topic: how its batches are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionType {
    /// As the producer compressed them (no work on the produce path).
    Producer,
    /// Uncompressed.
    Uncompressed,
    /// gzip.
    Gzip,
    /// snappy.
    Snappy,
    /// LZ4.
    Lz4,
    /// zstd.
    Zstd,
}

impl CompressionType {
    /// Every type, as Kafka names them.
    pub const ALL: [CompressionType; 6] = [
        CompressionType::Producer,
        CompressionType::Uncompressed,
        CompressionType::Gzip,
        CompressionType::Snappy,
        CompressionType::Lz4,
        CompressionType::Zstd,
    ];

    /// Kafka's name.
    pub fn as_str(self) -> &'static str {
        match self {
            CompressionType::Producer => "producer",
            CompressionType::Uncompressed => "uncompressed",
            CompressionType::Gzip => "gzip",
            CompressionType::Snappy => "snappy",
            CompressionType::Lz4 => "lz4",
            CompressionType::Zstd => "zstd",
        }
    }

    /// From Kafka's name (any case; `none` is taken as `uncompressed`, as clients call it).
    pub fn parse(value: &str) -> Option<CompressionType> {
        let value = value.trim().to_ascii_lowercase();
        let value = if value == "none" {
            "uncompressed"
        } else {
            value.as_str()
        };
        CompressionType::ALL
            .into_iter()
            .find(|c| c.as_str() == value)
    }
}

/// Kafka's `cleanup.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupPolicy {
    /// Segments are deleted by retention.
    Delete,
    /// The newest record of each key is kept; retention by time and size does not apply.
    Compact,
    /// Both: compacted, and segments past retention deleted.
    CompactDelete,
}

impl CleanupPolicy {
    /// Parses Kafka's list forms: `delete`, `compact`, `compact,delete` in either order, with
    /// spaces or brackets (`[compact, delete]`) as some clients send them; Redpanda's
    /// `compact_delete` too.
    pub fn parse(value: &str) -> Option<CleanupPolicy> {
        let inner = value.trim();
        let inner = inner
            .strip_prefix('[')
            .and_then(|v| v.strip_suffix(']'))
            .unwrap_or(inner);
        let (mut compact, mut delete) = (false, false);
        for item in inner.split([',', ' ']).filter(|s| !s.is_empty()) {
            match item {
                "compact" => compact = true,
                "delete" => delete = true,
                "compact_delete" => (compact, delete) = (true, true),
                _ => return None,
            }
        }
        match (compact, delete) {
            (true, true) => Some(CleanupPolicy::CompactDelete),
            (true, false) => Some(CleanupPolicy::Compact),
            (false, true) => Some(CleanupPolicy::Delete),
            (false, false) => None,
        }
    }

    /// Kafka's canonical text.
    pub fn as_str(self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        }
    }

    /// True when the topic is compacted.
    pub fn compacts(self) -> bool {
        self != CleanupPolicy::Delete
    }

    /// True when retention by time and size deletes segments.
    pub fn deletes(self) -> bool {
        self != CleanupPolicy::Compact
    }
}

/// The type of a property, as DescribeConfigs reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyKind {
    /// true/false.
    Boolean,
    /// A 32-bit integer.
    Int,
    /// A 64-bit integer.
    Long,
    /// Free text.
    String,
    /// One of a few words.
    Enum,
}

/// One topic property.
#[derive(Debug)]
pub struct TopicProperty {
    /// Kafka's name (or silt's, where Kafka has none).
    pub name: &'static str,
    /// Other names accepted on the way in (Redpanda's).
    pub aliases: &'static [&'static str],
    /// Its type.
    pub kind: PropertyKind,
    /// Settable only when the topic is created.
    pub create_only: bool,
    /// What it does.
    pub doc: &'static str,
}

/// Every topic property silt accepts.
pub const TOPIC_PROPERTIES: &[TopicProperty] = &[
    prop(
        "cleanup.policy",
        &[],
        PropertyKind::Enum,
        "delete, compact, or compact,delete",
    ),
    prop(
        "delete.retention.ms",
        &[],
        PropertyKind::Long,
        "how long a compacted topic keeps a tombstone once it is the newest of its key",
    ),
    prop(
        "min.compaction.lag.ms",
        &[],
        PropertyKind::Long,
        "records younger than this are never compacted",
    ),
    prop(
        "max.compaction.lag.ms",
        &[],
        PropertyKind::Long,
        "records older than this are compacted whatever the dirty ratio",
    ),
    prop(
        "min.cleanable.dirty.ratio",
        &[],
        PropertyKind::String,
        "share of a compacted log not yet compacted at which compaction runs (0 to 1)",
    ),
    prop(
        "compression.type",
        &[],
        PropertyKind::Enum,
        "how batches are stored: producer (as produced), uncompressed, gzip, snappy, lz4 or zstd (recompressed on produce when the producer's codec differs)",
    ),
    prop(
        "retention.ms",
        &[],
        PropertyKind::Long,
        "total retention by age, local and archive; -1 keeps forever",
    ),
    prop(
        "retention.bytes",
        &[],
        PropertyKind::Long,
        "total retention by partition size; -1 for no limit",
    ),
    prop(
        "segment.bytes",
        &[],
        PropertyKind::Int,
        "segment size at which the active segment rolls",
    ),
    prop(
        "segment.ms",
        &[],
        PropertyKind::Long,
        "segment age at which the active segment rolls",
    ),
    prop(
        "max.message.bytes",
        &[],
        PropertyKind::Int,
        "largest record batch accepted",
    ),
    prop(
        "message.timestamp.type",
        &[],
        PropertyKind::Enum,
        "CreateTime or LogAppendTime",
    ),
    prop(
        "message.timestamp.before.max.ms",
        &[],
        PropertyKind::Long,
        "how far in the past a CreateTime timestamp may be",
    ),
    prop(
        "message.timestamp.after.max.ms",
        &[],
        PropertyKind::Long,
        "how far in the future a CreateTime timestamp may be",
    ),
    prop(
        "index.interval.bytes",
        &[],
        PropertyKind::Int,
        "bytes between offset index entries",
    ),
    prop(
        "local.retention.ms",
        &["retention.local.target.ms"],
        PropertyKind::Long,
        "local retention by age once archived; -2: retention.ms",
    ),
    prop(
        "local.retention.bytes",
        &["retention.local.target.bytes"],
        PropertyKind::Long,
        "local retention by size once archived; -2: retention.bytes",
    ),
    prop(
        "remote.storage.enable",
        &["redpanda.remote.write"],
        PropertyKind::Boolean,
        "archive sealed segments to object storage",
    ),
    prop(
        "remote.read",
        &["redpanda.remote.read"],
        PropertyKind::Boolean,
        "serve offsets below the local log from the archive",
    ),
    prop(
        "archive.key.index",
        &["redpanda.archive.key.index"],
        PropertyKind::Boolean,
        "write a key index beside each archived segment, for `silt archive find`",
    ),
    prop(
        "archive.parquet",
        &[],
        PropertyKind::Boolean,
        "write each archived segment as a Parquet file under the archive's parquet/ prefix",
    ),
    TopicProperty {
        name: "remote.recovery",
        aliases: &["redpanda.remote.recovery"],
        kind: PropertyKind::Boolean,
        create_only: true,
        doc: "rebuild the topic from the archive when it is created",
    },
    TopicProperty {
        name: "remote.readreplica",
        aliases: &["redpanda.remote.readreplica"],
        kind: PropertyKind::String,
        create_only: true,
        doc: "serve this topic read-only from another cluster's bucket",
    },
    prop(
        "min.insync.replicas",
        &[],
        PropertyKind::Int,
        "in-sync replicas (the leader included) a partition needs to take acks=all",
    ),
    prop(
        "unclean.leader.election.enable",
        &[],
        PropertyKind::Boolean,
        "accepted for compatibility: only in-sync replicas (a Raft quorum) can lead",
    ),
    ignored("message.format.version"),
    ignored("message.downconversion.enable"),
    ignored("message.timestamp.difference.max.ms"),
    ignored("file.delete.delay.ms"),
    ignored("flush.messages"),
    ignored("flush.ms"),
    ignored("preallocate"),
    ignored("segment.index.bytes"),
    ignored("segment.jitter.ms"),
    ignored("leader.replication.throttled.replicas"),
    ignored("follower.replication.throttled.replicas"),
];

/// Documentation of the properties Kafka 3.x still takes (deprecated, or tuning that silt does
/// its own way) and silt accepts without effect.
const IGNORED_DOC: &str = "accepted for compatibility with Kafka; silt ignores it";

const fn ignored(name: &'static str) -> TopicProperty {
    TopicProperty {
        name,
        aliases: &[],
        kind: PropertyKind::String,
        create_only: false,
        doc: IGNORED_DOC,
    }
}

const fn prop(
    name: &'static str,
    aliases: &'static [&'static str],
    kind: PropertyKind,
    doc: &'static str,
) -> TopicProperty {
    TopicProperty {
        name,
        aliases,
        kind,
        create_only: false,
        doc,
    }
}

impl TopicProperty {
    /// True for a property accepted for compatibility that changes nothing.
    pub fn is_ignored(&self) -> bool {
        self.doc == IGNORED_DOC
    }

    /// Finds a property by its name or one of its aliases.
    pub fn find(name: &str) -> Option<&'static TopicProperty> {
        TOPIC_PROPERTIES
            .iter()
            .find(|p| p.name == name || p.aliases.contains(&name))
    }

    /// Checks `value` for the property called `name` (or an alias), returning the canonical
    /// name and the normalised value to store.
    ///
    /// # Errors
    ///
    /// [`ConfigError::UnknownKey`] for a name silt does not know, [`ConfigError::InvalidValue`]
    /// for a value it does not accept, each with what would have been accepted.
    pub fn validate(name: &str, value: &str) -> Result<(&'static str, String), ConfigError> {
        let Some(property) = TopicProperty::find(name) else {
            return Err(ConfigError::UnknownKey {
                what: "topic property",
                key: name.to_string(),
                origin: Source::Request,
                known: suggest(name, TOPIC_PROPERTIES.iter().map(|p| p.name)),
            });
        };
        let key = property.name;
        let invalid = |expected: &str| ConfigError::InvalidValue {
            key: key.to_string(),
            value: value.to_string(),
            origin: Source::Request,
            expected: expected.to_string(),
        };
        let int = |min: i64, max: i64, expected: &str| {
            parse_in(value, min, max)
                .map(|n| n.to_string())
                .ok_or_else(|| invalid(expected))
        };
        let normalised = match key {
            "cleanup.policy" => match CleanupPolicy::parse(value) {
                Some(policy) => policy.as_str().to_string(),
                None => return Err(invalid("delete, compact, or compact,delete")),
            },
            "delete.retention.ms" | "min.compaction.lag.ms" => {
                int(0, i64::MAX, "a non-negative number of milliseconds")?
            }
            "max.compaction.lag.ms" => int(1, i64::MAX, "a positive number of milliseconds")?,
            "min.cleanable.dirty.ratio" => match value.trim().parse::<f64>() {
                Ok(ratio) if (0.0..=1.0).contains(&ratio) => ratio.to_string(),
                _ => return Err(invalid("a number from 0 to 1")),
            },
            _ if property.is_ignored() => value.to_string(),
            "compression.type" => match CompressionType::parse(value) {
                Some(c) => c.as_str().to_string(),
                None => {
                    return Err(invalid("producer, uncompressed, gzip, snappy, lz4 or zstd"));
                }
            },
            "retention.ms" | "retention.bytes" => {
                int(-1, i64::MAX, "-1 (no limit) or a non-negative integer")?
            }
            "local.retention.ms" | "local.retention.bytes" => int(
                -2,
                i64::MAX,
                "-2 (same as total retention), -1 (no limit) or a non-negative integer",
            )?,
            "segment.bytes" => int(1024, i32::MAX as i64, "an integer from 1024 to 2147483647")?,
            "segment.ms" => int(1, i64::MAX, "a positive number of milliseconds")?,
            "max.message.bytes" | "index.interval.bytes" => {
                int(0, i32::MAX as i64, "an integer from 0 to 2147483647")?
            }
            "message.timestamp.before.max.ms" | "message.timestamp.after.max.ms" => {
                int(0, i64::MAX, "a non-negative number of milliseconds")?
            }
            "message.timestamp.type" => match value {
                "CreateTime" | "LogAppendTime" => value.to_string(),
                _ => return Err(invalid("CreateTime or LogAppendTime")),
            },
            "min.insync.replicas" => int(1, 5, "an integer from 1 to 5")?,
            "remote.readreplica" => {
                if value.is_empty() {
                    return Err(invalid("a bucket name or archive URL"));
                }
                value.to_string()
            }
            _ => {
                assert_eq!(
                    property.kind,
                    PropertyKind::Boolean,
                    "unhandled property {key}"
                );
                parse_bool(value)
                    .ok_or_else(|| invalid("true or false"))?
                    .to_string()
            }
        };
        Ok((key, normalised))
    }
}

/// Node-wide defaults of topic properties (Kafka's `log.*` broker settings).
#[derive(Debug, Clone, PartialEq)]
pub struct TopicDefaults {
    /// `segment.bytes`.
    pub segment_bytes: u64,
    /// `segment.ms`.
    pub segment_ms: i64,
    /// `retention.ms`.
    pub retention_ms: i64,
    /// `retention.bytes`.
    pub retention_bytes: i64,
    /// `local.retention.ms`.
    pub local_retention_ms: i64,
    /// `local.retention.bytes`.
    pub local_retention_bytes: i64,
    /// `index.interval.bytes`.
    pub index_interval_bytes: u32,
    /// `max.message.bytes`.
    pub max_message_bytes: u32,
    /// `message.timestamp.type`.
    pub message_timestamp_type: TimestampType,
    /// `remote.storage.enable`: true when the node has an archive.
    pub remote_storage_enable: bool,
    /// `min.insync.replicas`.
    pub min_insync_replicas: u32,
}

impl Default for TopicDefaults {
    fn default() -> Self {
        TopicDefaults {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            local_retention_ms: -2,
            local_retention_bytes: -2,
            index_interval_bytes: 4096,
            // Kafka's default: 1 MiB of records plus the batch overhead.
            max_message_bytes: 1_048_588,
            message_timestamp_type: TimestampType::CreateTime,
            remote_storage_enable: true,
            min_insync_replicas: 1,
        }
    }
}

/// The resolved properties of one topic.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    /// `cleanup.policy`.
    pub cleanup_policy: CleanupPolicy,
    /// `compression.type`.
    pub compression_type: CompressionType,
    /// `delete.retention.ms`.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`.
    pub max_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`.
    pub min_cleanable_dirty_ratio: f64,
    /// Properties set on the topic that silt accepts and ignores, as set.
    pub ignored: BTreeMap<String, String>,
    /// `retention.ms`; -1 keeps forever.
    pub retention_ms: i64,
    /// `retention.bytes`; -1 for no limit.
    pub retention_bytes: i64,
    /// `segment.bytes`.
    pub segment_bytes: u64,
    /// `segment.ms`.
    pub segment_ms: i64,
    /// `max.message.bytes`.
    pub max_message_bytes: u32,
    /// `message.timestamp.type`.
    pub message_timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms`.
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`.
    pub timestamp_after_max_ms: i64,
    /// `index.interval.bytes`.
    pub index_interval_bytes: u32,
    /// `local.retention.ms`, already resolved: -2 has become `retention_ms`.
    pub local_retention_ms: i64,
    /// `local.retention.bytes`, already resolved: -2 has become `retention_bytes`.
    pub local_retention_bytes: i64,
    /// `remote.storage.enable`.
    pub remote_storage_enable: bool,
    /// `remote.read`.
    pub remote_read: bool,
    /// `archive.key.index`: a key index beside each archived segment.
    pub archive_key_index: bool,
    /// `archive.parquet`: a Parquet file of each archived segment.
    pub archive_parquet: bool,
    /// `remote.recovery`.
    pub remote_recovery: bool,
    /// `remote.readreplica`.
    pub remote_readreplica: Option<String>,
    /// `min.insync.replicas`.
    pub min_insync_replicas: u32,
}

impl TopicConfig {
    /// Resolves a topic's overrides (canonical name -> validated value) over `defaults`.
    ///
    /// # Errors
    ///
    /// Only if an override does not validate, which means it was stored without validation.
    pub fn resolve(
        overrides: &BTreeMap<String, String>,
        defaults: &TopicDefaults,
    ) -> Result<TopicConfig, ConfigError> {
        let mut config = TopicConfig {
            cleanup_policy: CleanupPolicy::Delete,
            compression_type: CompressionType::Producer,
            delete_retention_ms: 24 * 3600 * 1000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: 0.5,
            ignored: BTreeMap::new(),
            retention_ms: defaults.retention_ms,
            retention_bytes: defaults.retention_bytes,
            segment_bytes: defaults.segment_bytes,
            segment_ms: defaults.segment_ms,
            max_message_bytes: defaults.max_message_bytes,
            message_timestamp_type: defaults.message_timestamp_type,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: i64::MAX,
            index_interval_bytes: defaults.index_interval_bytes,
            local_retention_ms: defaults.local_retention_ms,
            local_retention_bytes: defaults.local_retention_bytes,
            remote_storage_enable: defaults.remote_storage_enable,
            remote_read: true,
            archive_key_index: false,
            archive_parquet: false,
            remote_recovery: false,
            remote_readreplica: None,
            min_insync_replicas: defaults.min_insync_replicas,
        };
        for (name, raw) in overrides {
            let (key, value) = TopicProperty::validate(name, raw)?;
            let long = || value.parse::<i64>().expect("validated integer");
            match key {
                "retention.ms" => config.retention_ms = long(),
                "retention.bytes" => config.retention_bytes = long(),
                "segment.bytes" => config.segment_bytes = long() as u64,
                "segment.ms" => config.segment_ms = long(),
                "max.message.bytes" => config.max_message_bytes = long() as u32,
                "index.interval.bytes" => config.index_interval_bytes = long() as u32,
                "message.timestamp.before.max.ms" => config.timestamp_before_max_ms = long(),
                "message.timestamp.after.max.ms" => config.timestamp_after_max_ms = long(),
                "local.retention.ms" => config.local_retention_ms = long(),
                "local.retention.bytes" => config.local_retention_bytes = long(),
                "message.timestamp.type" => {
                    config.message_timestamp_type = if value == "LogAppendTime" {
                        TimestampType::LogAppendTime
                    } else {
                        TimestampType::CreateTime
                    }
                }
                "remote.storage.enable" => config.remote_storage_enable = value == "true",
                "remote.read" => config.remote_read = value == "true",
                "archive.key.index" => config.archive_key_index = value == "true",
                "archive.parquet" => config.archive_parquet = value == "true",
                "remote.recovery" => config.remote_recovery = value == "true",
                "remote.readreplica" => config.remote_readreplica = Some(value),
                "min.insync.replicas" => config.min_insync_replicas = long() as u32,
                "cleanup.policy" => {
                    config.cleanup_policy =
                        CleanupPolicy::parse(&value).expect("validated cleanup.policy")
                }
                "delete.retention.ms" => config.delete_retention_ms = long(),
                "min.compaction.lag.ms" => config.min_compaction_lag_ms = long(),
                "max.compaction.lag.ms" => config.max_compaction_lag_ms = long(),
                "min.cleanable.dirty.ratio" => {
                    config.min_cleanable_dirty_ratio = value.parse().expect("validated dirty ratio")
                }
                // Accepted for compatibility; one value only, nothing to resolve.
                "compression.type" => {
                    config.compression_type =
                        CompressionType::parse(&value).expect("validated compression type")
                }
                "unclean.leader.election.enable" => {}
                other if TopicProperty::find(other).is_some_and(TopicProperty::is_ignored) => {
                    config.ignored.insert(other.to_string(), value);
                }
                other => unreachable!("validated property {other} has no field"),
            }
        }
        if config.local_retention_ms == -2 {
            config.local_retention_ms = config.retention_ms;
        }
        if config.local_retention_bytes == -2 {
            config.local_retention_bytes = config.retention_bytes;
        }
        Ok(config)
    }

    /// The value of property `name` as DescribeConfigs shows it.
    pub fn value_of(&self, name: &str) -> Option<String> {
        Some(match name {
            "cleanup.policy" => self.cleanup_policy.as_str().to_string(),
            "delete.retention.ms" => self.delete_retention_ms.to_string(),
            "min.compaction.lag.ms" => self.min_compaction_lag_ms.to_string(),
            "max.compaction.lag.ms" => self.max_compaction_lag_ms.to_string(),
            "min.cleanable.dirty.ratio" => self.min_cleanable_dirty_ratio.to_string(),
            "compression.type" => self.compression_type.as_str().to_string(),
            "retention.ms" => self.retention_ms.to_string(),
            "retention.bytes" => self.retention_bytes.to_string(),
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "message.timestamp.type" => match self.message_timestamp_type {
                TimestampType::CreateTime => "CreateTime".to_string(),
                TimestampType::LogAppendTime => "LogAppendTime".to_string(),
            },
            "message.timestamp.before.max.ms" => self.timestamp_before_max_ms.to_string(),
            "message.timestamp.after.max.ms" => self.timestamp_after_max_ms.to_string(),
            "index.interval.bytes" => self.index_interval_bytes.to_string(),
            "local.retention.ms" => self.local_retention_ms.to_string(),
            "local.retention.bytes" => self.local_retention_bytes.to_string(),
            "remote.storage.enable" => self.remote_storage_enable.to_string(),
            "remote.read" => self.remote_read.to_string(),
            "archive.key.index" => self.archive_key_index.to_string(),
            "archive.parquet" => self.archive_parquet.to_string(),
            "remote.recovery" => self.remote_recovery.to_string(),
            "remote.readreplica" => self.remote_readreplica.clone().unwrap_or_default(),
            "min.insync.replicas" => self.min_insync_replicas.to_string(),
            "unclean.leader.election.enable" => "false".to_string(),
            other if TopicProperty::find(other).is_some_and(TopicProperty::is_ignored) => {
                self.ignored.get(other).cloned().unwrap_or_default()
            }
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redpanda_aliases_map_to_kafka_names() {
        let (key, value) = TopicProperty::validate("retention.local.target.ms", "1000").unwrap();
        assert_eq!((key, value.as_str()), ("local.retention.ms", "1000"));
        let (key, _) = TopicProperty::validate("redpanda.remote.write", "false").unwrap();
        assert_eq!(key, "remote.storage.enable");
    }

    #[test]
    fn invalid_values_say_what_is_accepted() {
        let err = TopicProperty::validate("retention.ms", "-5").unwrap_err();
        assert!(err.to_string().contains("-1 (no limit)"), "{err}");
        let err = TopicProperty::validate("cleanup.policy", "shrink").unwrap_err();
        assert!(err.to_string().contains("compact,delete"), "{err}");
        let err = TopicProperty::validate("min.cleanable.dirty.ratio", "1.5").unwrap_err();
        assert!(err.to_string().contains("from 0 to 1"), "{err}");
        let err = TopicProperty::validate("retention.msx", "1").unwrap_err();
        assert!(
            err.to_string().contains("known keys: retention.ms"),
            "{err}"
        );
        let err = TopicProperty::validate("remote.read", "yes").unwrap_err();
        assert!(err.to_string().contains("true or false"), "{err}");
    }

    #[test]
    fn cleanup_policy_takes_every_list_form() {
        for (given, stored) in [
            ("delete", "delete"),
            ("compact", "compact"),
            ("compact,delete", "compact,delete"),
            ("delete,compact", "compact,delete"),
            ("[compact, delete]", "compact,delete"),
            ("[compact]", "compact"),
            ("compact_delete", "compact,delete"),
        ] {
            let (_, value) = TopicProperty::validate("cleanup.policy", given).unwrap();
            assert_eq!(value, stored, "{given}");
        }
        assert!(TopicProperty::validate("cleanup.policy", "").is_err());
        assert!(TopicProperty::validate("cleanup.policy", "[]").is_err());
    }

    #[test]
    fn deprecated_kafka_properties_are_accepted_and_shown() {
        let (key, value) = TopicProperty::validate("message.format.version", "2.8-IV1").unwrap();
        let mut overrides = BTreeMap::new();
        overrides.insert(key.to_string(), value);
        let config = TopicConfig::resolve(&overrides, &TopicDefaults::default()).unwrap();
        assert_eq!(
            config.value_of("message.format.version").as_deref(),
            Some("2.8-IV1")
        );
        assert!(
            TopicProperty::find("message.downconversion.enable")
                .is_some_and(TopicProperty::is_ignored)
        );
        assert!(TopicProperty::validate("message.format.versionx", "1").is_err());
    }

    #[test]
    fn local_retention_defaults_to_total_retention() {
        let mut overrides = BTreeMap::new();
        overrides.insert("retention.ms".to_string(), "5000".to_string());
        let config = TopicConfig::resolve(&overrides, &TopicDefaults::default()).unwrap();
        assert_eq!(config.local_retention_ms, 5000);
        assert_eq!(config.local_retention_bytes, -1);
    }

    #[test]
    fn every_property_has_a_described_value() {
        let config = TopicConfig::resolve(&BTreeMap::new(), &TopicDefaults::default()).unwrap();
        for property in TOPIC_PROPERTIES {
            assert!(
                config.value_of(property.name).is_some(),
                "{}",
                property.name
            );
        }
    }
}
