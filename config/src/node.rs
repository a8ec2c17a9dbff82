//! The settings of one `silt serve` process.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::error::{ConfigError, Source, suggest};
use crate::security::{SECURITY_KEYS, SecurityConfig};
use crate::topic::{TimestampType, TopicDefaults};

/// Every node setting: its key (TOML key; `SILT_<KEY>` upper-cased in the environment) and
/// what it does. [`NodeConfig::set`] accepts exactly these.
pub const NODE_KEYS: &[(&str, &str)] = &[
    (
        "data_dir",
        "directory holding the partitions' logs and node metadata",
    ),
    ("kafka_addr", "address the Kafka API listens on"),
    (
        "advertised_kafka_addr",
        "host:port given to clients in Metadata (default: kafka_addr)",
    ),
    (
        "admin_addr",
        "address of the admin HTTP server (/metrics, /v1/status)",
    ),
    (
        "node_id",
        "this broker's id, unique in its cluster (Kafka's broker.id)",
    ),
    (
        "rpc_addr",
        "address of the listener other nodes of the cluster reach this one on (Raft, metadata)",
    ),
    (
        "advertised_rpc_addr",
        "host:port other nodes are told to reach this one on (default: rpc_addr)",
    ),
    (
        "seeds",
        "the cluster's founding nodes and controller voters, id@host:port,...; empty: a cluster of one",
    ),
    (
        "default_replication_factor",
        "replicas of a topic created without one (Kafka's default.replication.factor)",
    ),
    (
        "default_min_insync_replicas",
        "default min.insync.replicas of topics",
    ),
    (
        "raft_heartbeat_interval_ms",
        "how often a partition leader tells its followers it is alive",
    ),
    (
        "raft_election_timeout_ms",
        "shortest silence from a leader before a follower stands for election (the longest is twice it)",
    ),
    (
        "archive",
        "where sealed segments go: a directory, file:///dir, s3://bucket/prefix, or none",
    ),
    (
        "archive_upload_interval_ms",
        "longest time data waits in an active segment before it is rolled and archived",
    ),
    (
        "archive_metadata_interval_ms",
        "longest time a change to consumer groups' committed offsets waits before it is written to the bucket",
    ),
    (
        "archive_uploads_in_flight_max",
        "segment uploads running at once, across partitions",
    ),
    (
        "archive_check_interval_ms",
        "how often the archiver looks for sealed segments to upload",
    ),
    (
        "archive_node_cache_bytes",
        "memory for manifest nodes, for all partitions together",
    ),
    (
        "archive_cache_dir",
        "directory of the cache of archive chunks (default: <data_dir>/cache)",
    ),
    (
        "archive_cache_bytes",
        "bound on the cache of archive chunks, least recently used evicted first",
    ),
    (
        "archive_chunk_bytes",
        "size of the byte ranges fetched from archived segments (one GET each)",
    ),
    (
        "archive_prefetch_chunks",
        "chunks fetched ahead of a consumer reading the archive sequentially, at first (the window doubles while the consumer waits for the store)",
    ),
    (
        "archive_get_bytes",
        "bytes of one read-ahead GET (several run side by side); archived objects no larger come whole in one GET",
    ),
    (
        "archive_read_timeout_ms",
        "longest wait for one archive read before the fetch gets a retriable error",
    ),
    (
        "archive_gets_in_flight_max",
        "archive chunk GETs running at once, across partitions",
    ),
    (
        "archive_read_bytes_per_sec",
        "cap on bytes read from the archive per second, so replays cannot starve produce (0: none)",
    ),
    (
        "archive_thread_nice",
        "CPU niceness (0-19) of the threads that upload and read the archive, below the request threads",
    ),
    (
        "archive_startup_check_ms",
        "at startup, how long the archive's bucket and endpoint have to answer before silt refuses to start naming what is wrong (0: no check; an outage after startup is retried, never fatal)",
    ),
    (
        "archive_compaction_grace_ms",
        "how long archived segments replaced by compaction stay readable before they are deleted",
    ),
    (
        "compaction_check_interval_ms",
        "how often the compactor looks for compacted topics' partitions to clean (Kafka's log.cleaner.backoff.ms)",
    ),
    (
        "compaction_key_map_bytes",
        "memory for the compactor's map of keys to their newest offsets; a partition with more keys is compacted in passes (Kafka's log.cleaner.dedupe.buffer.size)",
    ),
    (
        "compaction_bytes_per_sec",
        "cap on bytes the compactor reads per second (0: none; Kafka's log.cleaner.io.max.bytes.per.second)",
    ),
    (
        "compaction_thread_nice",
        "CPU niceness (0-19) of the compactor's thread, below the request threads",
    ),
    (
        "auto_create_topics",
        "create a topic on first Metadata or Produce naming it (Kafka's auto.create.topics.enable)",
    ),
    (
        "default_partitions",
        "partitions of an auto-created topic (Kafka's num.partitions)",
    ),
    (
        "request_bytes_max",
        "largest request frame accepted (Kafka's socket.request.max.bytes)",
    ),
    ("connections_max", "most client connections served at once"),
    (
        "requests_in_flight_max",
        "most requests of one connection being worked on at once",
    ),
    (
        "fetch_bytes_max",
        "cap on the bytes of one Fetch response, whatever the client asks",
    ),
    (
        "flush_interval_ms",
        "how soon data acknowledged with acks=0/1 is fsynced",
    ),
    (
        "append_group_bytes_max",
        "most bytes one group commit writes before its fdatasync",
    ),
    (
        "segment_preallocate_bytes",
        "how far ahead a segment file is preallocated with fallocate",
    ),
    (
        "group_min_session_timeout_ms",
        "shortest session.timeout.ms a consumer may ask for (Kafka's group.min.session.timeout.ms)",
    ),
    (
        "group_max_session_timeout_ms",
        "longest session.timeout.ms a consumer may ask for (Kafka's group.max.session.timeout.ms)",
    ),
    (
        "group_initial_rebalance_delay_ms",
        "wait for more members before a new group's first rebalance (Kafka's group.initial.rebalance.delay.ms)",
    ),
    (
        "group_consumer_heartbeat_interval_ms",
        "how often KIP-848 consumer group members heartbeat (Kafka's group.consumer.heartbeat.interval.ms)",
    ),
    (
        "group_consumer_session_timeout_ms",
        "how long a KIP-848 consumer group member may go without a heartbeat (Kafka's group.consumer.session.timeout.ms)",
    ),
    (
        "group_consumer_assignors",
        "the broker's assignors for KIP-848 consumer groups, the first the default: uniform, range (Kafka's group.consumer.assignors)",
    ),
    (
        "group_consumer_migration_policy",
        "whether an empty group may switch between the classic and the consumer protocol: disabled, upgrade, downgrade, bidirectional (Kafka's group.consumer.migration.policy)",
    ),
    (
        "transactional_id_expiration_ms",
        "how long a transactional id with no transaction open is kept without use (Kafka's transactional.id.expiration.ms)",
    ),
    (
        "transaction_max_timeout_ms",
        "longest transaction.timeout.ms a transactional producer may ask for (Kafka's transaction.max.timeout.ms)",
    ),
    (
        "group_log_compaction_bytes",
        "size at which a partition of the group log is compacted",
    ),
    (
        "retention_check_interval_ms",
        "how often retention is applied (Kafka's log.retention.check.interval.ms)",
    ),
    ("log_segment_bytes", "default segment.bytes of topics"),
    ("log_segment_ms", "default segment.ms of topics"),
    (
        "log_retention_ms",
        "default retention.ms of topics (-1: forever)",
    ),
    (
        "log_retention_bytes",
        "default retention.bytes of topics (-1: no limit)",
    ),
    (
        "log_local_retention_ms",
        "default local.retention.ms of topics (-2: same as retention.ms)",
    ),
    (
        "log_local_retention_bytes",
        "default local.retention.bytes of topics (-2: same as retention.bytes)",
    ),
    (
        "log_index_interval_bytes",
        "default index.interval.bytes of topics",
    ),
    ("message_max_bytes", "default max.message.bytes of topics"),
    (
        "log_message_timestamp_type",
        "default message.timestamp.type of topics",
    ),
];

/// Where the archive of sealed segments lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveTarget {
    /// `<data_dir>/archive`, a local directory: tiering works with no set-up.
    Default,
    /// No archive: segments are only deleted by local retention.
    Disabled,
    /// A URL (`s3://bucket/prefix`, `file:///dir`) or a plain directory path.
    Url(String),
}

/// The settings of one node. Build it with [`NodeConfig::default`] and then apply each layer.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// Directory holding the partitions' logs and node metadata.
    pub data_dir: PathBuf,
    /// Address the Kafka API listens on.
    pub kafka_addr: SocketAddr,
    /// `host:port` advertised to clients; `None` means `kafka_addr`.
    pub advertised_kafka_addr: Option<String>,
    /// Address of the admin HTTP server.
    pub admin_addr: SocketAddr,
    /// Broker id in Metadata.
    pub node_id: i32,
    /// Listener for the other nodes of the cluster.
    pub rpc_addr: SocketAddr,
    /// `host:port` other nodes use; `None` means `rpc_addr`.
    pub advertised_rpc_addr: Option<String>,
    /// The founding nodes (controller voters): (id, `host:port`); empty for a cluster of one.
    pub seeds: Vec<(i32, String)>,
    /// Kafka's `default.replication.factor`.
    pub default_replication_factor: i16,
    /// Raft heartbeat period.
    pub raft_heartbeat_interval_ms: u64,
    /// Shortest Raft election timeout (the longest is twice it).
    pub raft_election_timeout_ms: u64,
    /// Archive destination.
    pub archive: ArchiveTarget,
    /// Longest wait before an unsealed segment's data is rolled and archived.
    pub archive_upload_interval_ms: u64,
    /// Longest wait before committed group offsets are written to the bucket.
    pub archive_metadata_interval_ms: u64,
    /// Uploads at once.
    pub archive_uploads_in_flight_max: u32,
    /// Period of the archiver's check.
    pub archive_check_interval_ms: u64,
    /// Memory for manifest nodes.
    pub archive_node_cache_bytes: u64,
    /// Directory of the chunk cache; `None` means `<data_dir>/cache`.
    pub archive_cache_dir: Option<PathBuf>,
    /// Bound on the chunk cache.
    pub archive_cache_bytes: u64,
    /// Size of one chunk GET.
    pub archive_chunk_bytes: u64,
    /// Chunks prefetched for sequential readers, at first.
    pub archive_prefetch_chunks: u32,
    /// Bytes of one read-ahead GET.
    pub archive_get_bytes: u64,
    /// Longest wait for one archive read.
    pub archive_read_timeout_ms: u64,
    /// Chunk GETs at once.
    pub archive_gets_in_flight_max: u32,
    /// Cap on archive read bandwidth; 0: none.
    pub archive_read_bytes_per_sec: u64,
    /// Niceness of the archive's threads (uploads, remote reads).
    pub archive_thread_nice: u32,
    /// Grace period of archived segments replaced by compaction.
    pub archive_compaction_grace_ms: u64,
    /// Time the archive has to answer at startup (0: not checked).
    pub archive_startup_check_ms: u64,
    /// How often the compactor looks for work.
    pub compaction_check_interval_ms: u64,
    /// Memory of the compactor's key map.
    pub compaction_key_map_bytes: u64,
    /// Cap on the compactor's reads; 0: none.
    pub compaction_bytes_per_sec: u64,
    /// Niceness of the compactor's thread.
    pub compaction_thread_nice: u32,
    /// Kafka's `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// Kafka's `num.partitions`.
    pub default_partitions: i32,
    /// Kafka's `socket.request.max.bytes`.
    pub request_bytes_max: u32,
    /// Most client connections at once.
    pub connections_max: u32,
    /// Most requests of one connection being worked on at once (pipelining depth).
    pub requests_in_flight_max: u32,
    /// Cap on one Fetch response's bytes.
    pub fetch_bytes_max: u32,
    /// How soon acks=0/1 data is fsynced.
    pub flush_interval_ms: u64,
    /// Most bytes in one group commit.
    pub append_group_bytes_max: u64,
    /// Preallocation step of segment files.
    pub segment_preallocate_bytes: u64,
    /// Period of the retention pass.
    pub retention_check_interval_ms: u64,
    /// Kafka's `group.min.session.timeout.ms`.
    pub group_min_session_timeout_ms: i32,
    /// Kafka's `group.max.session.timeout.ms`.
    pub group_max_session_timeout_ms: i32,
    /// Kafka's `group.initial.rebalance.delay.ms`.
    pub group_initial_rebalance_delay_ms: i32,
    /// Kafka's `group.consumer.heartbeat.interval.ms`.
    pub group_consumer_heartbeat_interval_ms: i32,
    /// Kafka's `group.consumer.session.timeout.ms`.
    pub group_consumer_session_timeout_ms: i32,
    /// Kafka's `group.consumer.assignors` (validated names, the first the default).
    pub group_consumer_assignors: Vec<String>,
    /// Kafka's `group.consumer.migration.policy`.
    pub group_consumer_migration_policy: String,
    /// Kafka's `transaction.max.timeout.ms`.
    pub transaction_max_timeout_ms: i32,
    /// Kafka's `transactional.id.expiration.ms`.
    pub transactional_id_expiration_ms: i64,
    /// Size at which a group-log partition is compacted.
    pub group_log_compaction_bytes: u64,
    /// Defaults of topic properties.
    pub topic_defaults: TopicDefaults,
    /// Listeners, TLS, SASL and authorization.
    pub security: SecurityConfig,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            data_dir: PathBuf::from("./silt-data"),
            kafka_addr: SocketAddr::from(([127, 0, 0, 1], 9092)),
            advertised_kafka_addr: None,
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 9644)),
            node_id: 0,
            rpc_addr: SocketAddr::from(([127, 0, 0, 1], 33145)),
            advertised_rpc_addr: None,
            seeds: Vec::new(),
            default_replication_factor: 1,
            raft_heartbeat_interval_ms: 150,
            raft_election_timeout_ms: 1000,
            archive: ArchiveTarget::Default,
            archive_upload_interval_ms: 3_600_000,
            archive_metadata_interval_ms: 60_000,
            archive_uploads_in_flight_max: 4,
            archive_check_interval_ms: 1_000,
            archive_node_cache_bytes: 64 << 20,
            archive_cache_dir: None,
            archive_cache_bytes: 2 << 30,
            archive_chunk_bytes: 4 << 20,
            archive_prefetch_chunks: 8,
            archive_get_bytes: 16 << 20,
            archive_read_timeout_ms: 10_000,
            archive_gets_in_flight_max: 8,
            archive_read_bytes_per_sec: 0,
            archive_thread_nice: 10,
            archive_compaction_grace_ms: 10 * 60 * 1000,
            archive_startup_check_ms: 15_000,
            compaction_check_interval_ms: 15_000,
            compaction_key_map_bytes: 64 << 20,
            compaction_bytes_per_sec: 0,
            compaction_thread_nice: 10,
            auto_create_topics: true,
            default_partitions: 1,
            request_bytes_max: 100 * 1024 * 1024,
            connections_max: 10_000,
            requests_in_flight_max: 64,
            fetch_bytes_max: 55 * 1024 * 1024,
            flush_interval_ms: 100,
            append_group_bytes_max: 4 * 1024 * 1024,
            segment_preallocate_bytes: 32 * 1024 * 1024,
            retention_check_interval_ms: 5 * 60 * 1000,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            transaction_max_timeout_ms: 900_000,
            transactional_id_expiration_ms: 7 * 24 * 3_600_000,
            group_initial_rebalance_delay_ms: 3_000,
            group_consumer_heartbeat_interval_ms: 5_000,
            group_consumer_session_timeout_ms: 45_000,
            group_consumer_assignors: vec!["uniform".to_string(), "range".to_string()],
            group_consumer_migration_policy: "bidirectional".to_string(),
            group_log_compaction_bytes: 64 << 20,
            topic_defaults: TopicDefaults::default(),
            security: SecurityConfig::default(),
        }
    }
}

impl NodeConfig {
    /// Sets one key from its textual value.
    ///
    /// # Errors
    ///
    /// [`ConfigError::UnknownKey`] names the closest known keys; [`ConfigError::InvalidValue`]
    /// names the key and what it accepts.
    pub fn set(&mut self, key: &str, value: &str, source: Source) -> Result<(), ConfigError> {
        let invalid = |expected: &str| ConfigError::InvalidValue {
            key: key.to_string(),
            value: value.to_string(),
            origin: source.clone(),
            expected: expected.to_string(),
        };
        let defaults = &mut self.topic_defaults;
        match key {
            "data_dir" => {
                if value.is_empty() {
                    return Err(invalid("a directory path"));
                }
                self.data_dir = PathBuf::from(value);
            }
            "kafka_addr" => self.kafka_addr = parse_addr(value).ok_or_else(|| invalid(ADDR))?,
            "admin_addr" => self.admin_addr = parse_addr(value).ok_or_else(|| invalid(ADDR))?,
            "advertised_kafka_addr" => {
                self.advertised_kafka_addr = if value.is_empty() {
                    None
                } else {
                    let (host, port) =
                        value.rsplit_once(':').ok_or_else(|| invalid("host:port"))?;
                    if host.is_empty() || port.parse::<u16>().is_err() {
                        return Err(invalid("host:port"));
                    }
                    Some(value.to_string())
                }
            }
            "node_id" => {
                self.node_id = parse_in(value, 0, i32::MAX as i64)
                    .ok_or_else(|| invalid("an integer from 0 to 2147483647"))?
                    as i32
            }
            "rpc_addr" => self.rpc_addr = parse_addr(value).ok_or_else(|| invalid(ADDR))?,
            "advertised_rpc_addr" => {
                self.advertised_rpc_addr = if value.is_empty() {
                    None
                } else {
                    Some(parse_host_port(value).ok_or_else(|| invalid("host:port"))?)
                }
            }
            "seeds" => {
                self.seeds = parse_seeds(value).map_err(|reason| ConfigError::InvalidValue {
                    key: key.to_string(),
                    value: value.to_string(),
                    origin: source.clone(),
                    expected: format!(
                        "id@host:port,... with distinct ids and addresses, such as 1@127.0.0.1:33145,2@127.0.0.1:33146,3@127.0.0.1:33147 ({reason})"
                    ),
                })?
            }
            "default_replication_factor" => {
                self.default_replication_factor = parse_in(value, 1, 5)
                    .ok_or_else(|| invalid("an integer from 1 to 5"))?
                    as i16
            }
            "default_min_insync_replicas" => {
                defaults.min_insync_replicas = parse_in(value, 1, 5)
                    .ok_or_else(|| invalid("an integer from 1 to 5"))?
                    as u32
            }
            "raft_heartbeat_interval_ms" => {
                self.raft_heartbeat_interval_ms = parse_in(value, 10, 10_000)
                    .ok_or_else(|| invalid("milliseconds from 10 to 10000"))?
                    as u64
            }
            "raft_election_timeout_ms" => {
                self.raft_election_timeout_ms = parse_in(value, 50, 60_000)
                    .ok_or_else(|| invalid("milliseconds from 50 to 60000"))?
                    as u64
            }
            "archive" => {
                self.archive = match value {
                    "" | "default" => ArchiveTarget::Default,
                    "none" | "off" | "disabled" => ArchiveTarget::Disabled,
                    url if url.contains("://") => {
                        let scheme = url.split("://").next().unwrap_or_default();
                        if !ARCHIVE_SCHEMES.contains(&scheme) {
                            return Err(invalid(
                                "a directory, file:///dir, s3://bucket/prefix, gs://bucket, az://container, or none",
                            ));
                        }
                        ArchiveTarget::Url(url.to_string())
                    }
                    path => ArchiveTarget::Url(path.to_string()),
                }
            }
            "archive_metadata_interval_ms" => {
                self.archive_metadata_interval_ms = parse_in(value, 100, 86_400_000)
                    .ok_or_else(|| invalid("milliseconds from 100 to 86400000"))?
                    as u64
            }
            "archive_upload_interval_ms" => {
                self.archive_upload_interval_ms = parse_in(value, 100, 86_400_000 * 7)
                    .ok_or_else(|| invalid("milliseconds from 100 to 604800000"))?
                    as u64
            }
            "archive_uploads_in_flight_max" => {
                self.archive_uploads_in_flight_max = parse_in(value, 1, 256)
                    .ok_or_else(|| invalid("an integer from 1 to 256"))?
                    as u32
            }
            "archive_check_interval_ms" => {
                self.archive_check_interval_ms = parse_in(value, 10, 3_600_000)
                    .ok_or_else(|| invalid("milliseconds from 10 to 3600000"))?
                    as u64
            }
            "archive_node_cache_bytes" => {
                self.archive_node_cache_bytes = parse_in(value, 1 << 20, i64::MAX)
                    .ok_or_else(|| invalid("a byte count of at least 1048576"))?
                    as u64
            }
            "archive_cache_dir" => {
                if value.trim().is_empty() {
                    return Err(invalid("a directory path"));
                }
                self.archive_cache_dir = Some(PathBuf::from(value))
            }
            "archive_cache_bytes" => {
                self.archive_cache_bytes = parse_in(value, 1 << 20, i64::MAX)
                    .ok_or_else(|| invalid("a byte count of at least 1048576"))?
                    as u64
            }
            "archive_chunk_bytes" => {
                self.archive_chunk_bytes = parse_in(value, 64 << 10, 256 << 20)
                    .ok_or_else(|| invalid("a byte count from 65536 to 268435456"))?
                    as u64
            }
            "archive_get_bytes" => {
                self.archive_get_bytes = parse_in(value, 64 << 10, 1 << 30)
                    .ok_or_else(|| invalid("a byte count from 65536 to 1073741824"))?
                    as u64
            }
            "archive_prefetch_chunks" => {
                self.archive_prefetch_chunks =
                    parse_in(value, 0, 64).ok_or_else(|| invalid("an integer from 0 to 64"))? as u32
            }
            "archive_read_timeout_ms" => {
                self.archive_read_timeout_ms = parse_in(value, 100, 600_000)
                    .ok_or_else(|| invalid("milliseconds from 100 to 600000"))?
                    as u64
            }
            "archive_gets_in_flight_max" => {
                self.archive_gets_in_flight_max = parse_in(value, 1, 256)
                    .ok_or_else(|| invalid("an integer from 1 to 256"))?
                    as u32
            }
            "archive_thread_nice" => {
                self.archive_thread_nice = parse_in(value, 0, 19)
                    .ok_or_else(|| invalid("an integer from 0 (as the request threads) to 19"))?
                    as u32
            }
            "archive_read_bytes_per_sec" => {
                self.archive_read_bytes_per_sec = parse_in(value, 0, i64::MAX)
                    .ok_or_else(|| invalid("bytes per second, 0 for no cap"))?
                    as u64
            }
            "archive_startup_check_ms" => {
                self.archive_startup_check_ms = parse_in(value, 0, i64::MAX)
                    .ok_or_else(|| invalid("a non-negative number of milliseconds"))?
                    as u64
            }
            "archive_compaction_grace_ms" => {
                self.archive_compaction_grace_ms = parse_in(value, 0, i64::MAX)
                    .ok_or_else(|| invalid("a non-negative number of milliseconds"))?
                    as u64
            }
            "compaction_check_interval_ms" => {
                self.compaction_check_interval_ms = parse_in(value, 10, 86_400_000)
                    .ok_or_else(|| invalid("milliseconds from 10 to 86400000"))?
                    as u64
            }
            "compaction_key_map_bytes" => {
                self.compaction_key_map_bytes = parse_in(value, 1 << 10, 1 << 40)
                    .ok_or_else(|| invalid("bytes from 1024 to 2^40"))?
                    as u64
            }
            "compaction_bytes_per_sec" => {
                self.compaction_bytes_per_sec = parse_in(value, 0, i64::MAX)
                    .ok_or_else(|| invalid("bytes per second, 0 for no cap"))?
                    as u64
            }
            "compaction_thread_nice" => {
                self.compaction_thread_nice = parse_in(value, 0, 19)
                    .ok_or_else(|| invalid("an integer from 0 (as the request threads) to 19"))?
                    as u32
            }
            "auto_create_topics" => {
                self.auto_create_topics = parse_bool(value).ok_or_else(|| invalid(BOOL))?
            }
            "default_partitions" => {
                self.default_partitions = parse_in(value, 1, 100_000)
                    .ok_or_else(|| invalid("an integer from 1 to 100000"))?
                    as i32
            }
            "request_bytes_max" => {
                self.request_bytes_max = parse_in(value, 1024, i32::MAX as i64)
                    .ok_or_else(|| invalid("a byte count from 1024 to 2147483647"))?
                    as u32
            }
            "connections_max" => {
                self.connections_max = parse_in(value, 1, 1_000_000)
                    .ok_or_else(|| invalid("an integer from 1 to 1000000"))?
                    as u32
            }
            "requests_in_flight_max" => {
                self.requests_in_flight_max = parse_in(value, 1, 1024)
                    .ok_or_else(|| invalid("an integer from 1 to 1024"))?
                    as u32
            }
            "fetch_bytes_max" => {
                self.fetch_bytes_max = parse_in(value, 1024, i32::MAX as i64)
                    .ok_or_else(|| invalid("a byte count from 1024 to 2147483647"))?
                    as u32
            }
            "flush_interval_ms" => {
                self.flush_interval_ms = parse_in(value, 1, 3_600_000)
                    .ok_or_else(|| invalid("milliseconds from 1 to 3600000"))?
                    as u64
            }
            "append_group_bytes_max" => {
                self.append_group_bytes_max = parse_in(value, 4096, 1 << 30)
                    .ok_or_else(|| invalid("a byte count from 4096 to 1073741824"))?
                    as u64
            }
            "segment_preallocate_bytes" => {
                self.segment_preallocate_bytes = parse_in(value, 0, 1 << 30)
                    .ok_or_else(|| invalid("a byte count from 0 (off) to 1073741824"))?
                    as u64
            }
            "retention_check_interval_ms" => {
                self.retention_check_interval_ms = parse_in(value, 10, 86_400_000)
                    .ok_or_else(|| invalid("milliseconds from 10 to 86400000"))?
                    as u64
            }
            "group_min_session_timeout_ms" => {
                self.group_min_session_timeout_ms = parse_in(value, 1, i32::MAX as i64)
                    .ok_or_else(|| invalid("milliseconds from 1 to 2147483647"))?
                    as i32
            }
            "group_max_session_timeout_ms" => {
                self.group_max_session_timeout_ms = parse_in(value, 1, i32::MAX as i64)
                    .ok_or_else(|| invalid("milliseconds from 1 to 2147483647"))?
                    as i32
            }
            "transactional_id_expiration_ms" => {
                self.transactional_id_expiration_ms = parse_in(value, 1, i64::MAX)
                    .ok_or_else(|| invalid("milliseconds, at least 1"))?
            }
            "transaction_max_timeout_ms" => {
                self.transaction_max_timeout_ms = parse_in(value, 1, i32::MAX as i64)
                    .ok_or_else(|| invalid("milliseconds from 1 to 2147483647"))?
                    as i32
            }
            "group_log_compaction_bytes" => {
                self.group_log_compaction_bytes = parse_in(value, 0, i64::MAX)
                    .ok_or_else(|| invalid("a byte count, 0 for never"))?
                    as u64
            }
            "group_initial_rebalance_delay_ms" => {
                self.group_initial_rebalance_delay_ms = parse_in(value, 0, 300_000)
                    .ok_or_else(|| invalid("milliseconds from 0 to 300000"))?
                    as i32
            }
            "group_consumer_heartbeat_interval_ms" => {
                self.group_consumer_heartbeat_interval_ms = parse_in(value, 100, 300_000)
                    .ok_or_else(|| invalid("milliseconds from 100 to 300000"))?
                    as i32
            }
            "group_consumer_session_timeout_ms" => {
                self.group_consumer_session_timeout_ms = parse_in(value, 1_000, 1_800_000)
                    .ok_or_else(|| invalid("milliseconds from 1000 to 1800000"))?
                    as i32
            }
            "group_consumer_assignors" => {
                let names: Vec<String> = value
                    .split(',')
                    .map(|n| n.trim().to_string())
                    .filter(|n| !n.is_empty())
                    .collect();
                if names.is_empty() || names.iter().any(|n| n != "uniform" && n != "range") {
                    return Err(invalid("a comma-separated list of uniform and range"));
                }
                self.group_consumer_assignors = names;
            }
            "group_consumer_migration_policy" => {
                if !["disabled", "upgrade", "downgrade", "bidirectional"].contains(&value) {
                    return Err(invalid("disabled, upgrade, downgrade or bidirectional"));
                }
                self.group_consumer_migration_policy = value.to_string();
            }
            "log_segment_bytes" => {
                defaults.segment_bytes = parse_in(value, 1024, i32::MAX as i64)
                    .ok_or_else(|| invalid("a byte count from 1024 to 2147483647"))?
                    as u64
            }
            "log_segment_ms" => {
                defaults.segment_ms =
                    parse_in(value, 1, i64::MAX).ok_or_else(|| invalid("a positive integer"))?
            }
            "log_retention_ms" => {
                defaults.retention_ms =
                    parse_in(value, -1, i64::MAX).ok_or_else(|| invalid("-1 or milliseconds"))?
            }
            "log_retention_bytes" => {
                defaults.retention_bytes =
                    parse_in(value, -1, i64::MAX).ok_or_else(|| invalid("-1 or a byte count"))?
            }
            "log_local_retention_ms" => {
                defaults.local_retention_ms = parse_in(value, -2, i64::MAX)
                    .ok_or_else(|| invalid("-2, -1 or milliseconds"))?
            }
            "log_local_retention_bytes" => {
                defaults.local_retention_bytes = parse_in(value, -2, i64::MAX)
                    .ok_or_else(|| invalid("-2, -1 or a byte count"))?
            }
            "log_index_interval_bytes" => {
                defaults.index_interval_bytes = parse_in(value, 0, i32::MAX as i64)
                    .ok_or_else(|| invalid("a byte count from 0 to 2147483647"))?
                    as u32
            }
            "message_max_bytes" => {
                defaults.max_message_bytes = parse_in(value, 0, i32::MAX as i64)
                    .ok_or_else(|| invalid("a byte count from 0 to 2147483647"))?
                    as u32
            }
            "log_message_timestamp_type" => {
                defaults.message_timestamp_type = match value {
                    "CreateTime" => TimestampType::CreateTime,
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    _ => return Err(invalid("CreateTime or LogAppendTime")),
                }
            }
            _ => match self.security.set(key, value) {
                Some(result) => return result.map_err(|expected| invalid(&expected)),
                None => {
                    return Err(ConfigError::UnknownKey {
                        what: "setting",
                        key: key.to_string(),
                        origin: source,
                        known: suggest(key, all_keys().map(|(k, _)| k)),
                    });
                }
            },
        }
        Ok(())
    }

    /// Applies a TOML document whose top-level keys are [`NODE_KEYS`].
    ///
    /// # Errors
    ///
    /// [`ConfigError::File`] when the text is not TOML or holds a table or array; otherwise
    /// whatever [`NodeConfig::set`] says about a key.
    pub fn apply_toml(&mut self, text: &str, file_name: &str) -> Result<(), ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::File {
                file: file_name.to_string(),
                message: e.to_string(),
            })?;
        for (key, value) in table {
            let value = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(ConfigError::File {
                        file: file_name.to_string(),
                        message: format!(
                            "key `{key}` holds a {}; silt's settings are strings, integers or booleans",
                            other.type_str()
                        ),
                    });
                }
            };
            self.set(&key, &value, Source::File(file_name.to_string()))?;
        }
        Ok(())
    }

    /// Applies every `SILT_<KEY>` variable among `vars` (others are ignored).
    ///
    /// # Errors
    ///
    /// An unknown `SILT_*` variable is an error naming it, so a typo is not silently ignored.
    pub fn apply_env<I, K, V>(&mut self, vars: I) -> Result<(), ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        for (name, value) in vars {
            let Some(key) = name.as_ref().strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let key = key.to_ascii_lowercase();
            self.set(&key, value.as_ref(), Source::Env)
                .map_err(|e| match e {
                    ConfigError::UnknownKey { origin, known, .. } => ConfigError::UnknownKey {
                        what: "setting",
                        key: name.as_ref().to_string(),
                        origin,
                        known,
                    },
                    other => other,
                })?;
        }
        Ok(())
    }

    /// Directory of the archive chunk cache.
    pub fn cache_dir(&self) -> PathBuf {
        self.archive_cache_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("cache"))
    }

    /// The current value of a setting, as text (for DescribeConfigs and status pages).
    pub fn value_of(&self, key: &str) -> Option<String> {
        let d = &self.topic_defaults;
        Some(match key {
            "data_dir" => self.data_dir.display().to_string(),
            "kafka_addr" => self.kafka_addr.to_string(),
            "advertised_kafka_addr" => self.advertised_addr(),
            "admin_addr" => self.admin_addr.to_string(),
            "node_id" => self.node_id.to_string(),
            "rpc_addr" => self.rpc_addr.to_string(),
            "advertised_rpc_addr" => self.advertised_rpc(),
            "seeds" => self
                .seeds
                .iter()
                .map(|(id, addr)| format!("{id}@{addr}"))
                .collect::<Vec<_>>()
                .join(","),
            "default_replication_factor" => self.default_replication_factor.to_string(),
            "default_min_insync_replicas" => d.min_insync_replicas.to_string(),
            "raft_heartbeat_interval_ms" => self.raft_heartbeat_interval_ms.to_string(),
            "raft_election_timeout_ms" => self.raft_election_timeout_ms.to_string(),
            "archive" => match &self.archive {
                ArchiveTarget::Default => self.data_dir.join("archive").display().to_string(),
                ArchiveTarget::Disabled => "none".to_string(),
                ArchiveTarget::Url(url) => crate::security::redact_url(url),
            },
            "archive_upload_interval_ms" => self.archive_upload_interval_ms.to_string(),
            "archive_metadata_interval_ms" => self.archive_metadata_interval_ms.to_string(),
            "archive_uploads_in_flight_max" => self.archive_uploads_in_flight_max.to_string(),
            "archive_check_interval_ms" => self.archive_check_interval_ms.to_string(),
            "archive_node_cache_bytes" => self.archive_node_cache_bytes.to_string(),
            "archive_cache_dir" => self.cache_dir().display().to_string(),
            "archive_cache_bytes" => self.archive_cache_bytes.to_string(),
            "archive_chunk_bytes" => self.archive_chunk_bytes.to_string(),
            "archive_prefetch_chunks" => self.archive_prefetch_chunks.to_string(),
            "archive_get_bytes" => self.archive_get_bytes.to_string(),
            "archive_read_timeout_ms" => self.archive_read_timeout_ms.to_string(),
            "archive_gets_in_flight_max" => self.archive_gets_in_flight_max.to_string(),
            "archive_read_bytes_per_sec" => self.archive_read_bytes_per_sec.to_string(),
            "archive_thread_nice" => self.archive_thread_nice.to_string(),
            "archive_compaction_grace_ms" => self.archive_compaction_grace_ms.to_string(),
            "archive_startup_check_ms" => self.archive_startup_check_ms.to_string(),
            "compaction_check_interval_ms" => self.compaction_check_interval_ms.to_string(),
            "compaction_key_map_bytes" => self.compaction_key_map_bytes.to_string(),
            "compaction_bytes_per_sec" => self.compaction_bytes_per_sec.to_string(),
            "compaction_thread_nice" => self.compaction_thread_nice.to_string(),
            "auto_create_topics" => self.auto_create_topics.to_string(),
            "default_partitions" => self.default_partitions.to_string(),
            "request_bytes_max" => self.request_bytes_max.to_string(),
            "connections_max" => self.connections_max.to_string(),
            "requests_in_flight_max" => self.requests_in_flight_max.to_string(),
            "fetch_bytes_max" => self.fetch_bytes_max.to_string(),
            "flush_interval_ms" => self.flush_interval_ms.to_string(),
            "append_group_bytes_max" => self.append_group_bytes_max.to_string(),
            "segment_preallocate_bytes" => self.segment_preallocate_bytes.to_string(),
            "retention_check_interval_ms" => self.retention_check_interval_ms.to_string(),
            "group_min_session_timeout_ms" => self.group_min_session_timeout_ms.to_string(),
            "group_max_session_timeout_ms" => self.group_max_session_timeout_ms.to_string(),
            "transaction_max_timeout_ms" => self.transaction_max_timeout_ms.to_string(),
            "transactional_id_expiration_ms" => self.transactional_id_expiration_ms.to_string(),
            "group_initial_rebalance_delay_ms" => self.group_initial_rebalance_delay_ms.to_string(),
            "group_consumer_heartbeat_interval_ms" => {
                self.group_consumer_heartbeat_interval_ms.to_string()
            }
            "group_consumer_session_timeout_ms" => {
                self.group_consumer_session_timeout_ms.to_string()
            }
            "group_consumer_assignors" => self.group_consumer_assignors.join(","),
            "group_consumer_migration_policy" => self.group_consumer_migration_policy.clone(),
            "group_log_compaction_bytes" => self.group_log_compaction_bytes.to_string(),
            "log_segment_bytes" => d.segment_bytes.to_string(),
            "log_segment_ms" => d.segment_ms.to_string(),
            "log_retention_ms" => d.retention_ms.to_string(),
            "log_retention_bytes" => d.retention_bytes.to_string(),
            "log_local_retention_ms" => d.local_retention_ms.to_string(),
            "log_local_retention_bytes" => d.local_retention_bytes.to_string(),
            "log_index_interval_bytes" => d.index_interval_bytes.to_string(),
            "message_max_bytes" => d.max_message_bytes.to_string(),
            "log_message_timestamp_type" => match d.message_timestamp_type {
                TimestampType::CreateTime => "CreateTime".to_string(),
                TimestampType::LogAppendTime => "LogAppendTime".to_string(),
            },
            _ => return self.security.value_of(key),
        })
    }

    /// The `host:port` other nodes are told to reach this one on.
    pub fn advertised_rpc(&self) -> String {
        match &self.advertised_rpc_addr {
            Some(addr) => addr.clone(),
            None => self.rpc_addr.to_string(),
        }
    }

    /// Checks settings against each other (after every layer is applied).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Conflict`] naming the settings that disagree.
    pub fn check(&self) -> Result<(), ConfigError> {
        if !self.seeds.is_empty() && !self.seeds.iter().any(|(id, _)| *id == self.node_id) {
            // A node joining a running cluster is not a seed: fine, it asks the seeds to join.
            return Ok(());
        }
        if let Some((_, addr)) = self.seeds.iter().find(|(id, _)| *id == self.node_id)
            && *addr != self.advertised_rpc()
            && addr.parse::<SocketAddr>().ok() != Some(self.rpc_addr)
        {
            return Err(ConfigError::Conflict(format!(
                "seeds name node {} at {addr}, but this node listens on {} (rpc_addr) and advertises {} (advertised_rpc_addr)",
                self.node_id,
                self.rpc_addr,
                self.advertised_rpc()
            )));
        }
        if self.raft_heartbeat_interval_ms >= self.raft_election_timeout_ms {
            return Err(ConfigError::Conflict(format!(
                "raft_heartbeat_interval_ms ({}) must be below raft_election_timeout_ms ({})",
                self.raft_heartbeat_interval_ms, self.raft_election_timeout_ms
            )));
        }
        Ok(())
    }

    /// The `host:port` clients are told to connect to.
    pub fn advertised_addr(&self) -> String {
        match &self.advertised_kafka_addr {
            Some(addr) => addr.clone(),
            None => self.kafka_addr.to_string(),
        }
    }
}

/// Every node setting with what it does: [`NODE_KEYS`] and then [`SECURITY_KEYS`].
pub fn all_keys() -> impl Iterator<Item = (&'static str, &'static str)> {
    NODE_KEYS.iter().chain(SECURITY_KEYS).copied()
}

/// Environment variables with this prefix are node settings.
pub const ENV_PREFIX: &str = "SILT_";

const ADDR: &str = "ip:port, such as 127.0.0.1:9092";
const BOOL: &str = "true or false";
const ARCHIVE_SCHEMES: &[&str] = &["file", "s3", "s3a", "gs", "az", "azure", "abfs", "memory"];

fn parse_addr(value: &str) -> Option<SocketAddr> {
    value.parse().ok()
}

fn parse_host_port(value: &str) -> Option<String> {
    let (host, port) = value.rsplit_once(':')?;
    (!host.is_empty() && port.parse::<u16>().is_ok()).then(|| value.to_string())
}

/// Parses `id@host:port,...` into distinct (id, address) pairs.
fn parse_seeds(value: &str) -> Result<Vec<(i32, String)>, String> {
    let mut seeds: Vec<(i32, String)> = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('@')
            .ok_or_else(|| format!("{item:?} has no '@'"))?;
        let id: i32 = id
            .trim()
            .parse()
            .ok()
            .filter(|id| *id >= 0)
            .ok_or_else(|| format!("{id:?} is not a node id"))?;
        let addr =
            parse_host_port(addr.trim()).ok_or_else(|| format!("{addr:?} is not host:port"))?;
        if seeds.iter().any(|(i, _)| *i == id) {
            return Err(format!("node {id} is named twice"));
        }
        if seeds.iter().any(|(_, a)| *a == addr) {
            return Err(format!("{addr} is named twice"));
        }
        seeds.push((id, addr));
    }
    Ok(seeds)
}

pub(crate) fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// Parses an integer inside `[min, max]`.
pub(crate) fn parse_in(value: &str, min: i64, max: i64) -> Option<i64> {
    let n: i64 = value.trim().parse().ok()?;
    (min..=max).contains(&n).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order_file_env_flag() {
        let mut config = NodeConfig::default();
        config
            .apply_toml("node_id = 1\nkafka_addr = \"127.0.0.1:1000\"", "a.toml")
            .unwrap();
        config
            .apply_env([("SILT_NODE_ID", "2"), ("PATH", "/bin")])
            .unwrap();
        assert_eq!(config.node_id, 2);
        config.set("node_id", "3", Source::Flag).unwrap();
        assert_eq!(config.node_id, 3);
        assert_eq!(config.kafka_addr.port(), 1000);
    }

    #[test]
    fn unknown_key_names_the_key_and_suggests() {
        let mut config = NodeConfig::default();
        let err = config
            .apply_toml("data_dri = \"x\"", "silt.toml")
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("data_dri"), "{msg}");
        assert!(msg.contains("config file silt.toml"), "{msg}");
        assert!(msg.contains("known keys: data_dir"), "{msg}");
    }

    #[test]
    fn unknown_env_variable_is_named_in_full() {
        let err = NodeConfig::default()
            .apply_env([("SILT_NODEID", "1")])
            .unwrap_err();
        assert!(err.to_string().contains("SILT_NODEID"), "{err}");
    }

    #[test]
    fn bad_values_name_what_is_accepted() {
        let mut config = NodeConfig::default();
        let err = config
            .set("auto_create_topics", "yes", Source::Flag)
            .unwrap_err();
        assert!(err.to_string().contains("true or false"), "{err}");
        let err = config
            .set("kafka_addr", "localhost", Source::Flag)
            .unwrap_err();
        assert!(err.to_string().contains("ip:port"), "{err}");
        let err = config.set("archive", "ftp://x", Source::Flag).unwrap_err();
        assert!(err.to_string().contains("s3://bucket/prefix"), "{err}");
        let err = config.apply_toml("node_id = [1]", "f").unwrap_err();
        assert!(err.to_string().contains("node_id"), "{err}");
        let err = config.apply_toml("node_id = ", "f").unwrap_err();
        assert!(matches!(err, ConfigError::File { .. }), "{err}");
    }

    #[test]
    fn seeds_parse_and_bad_ones_are_named() {
        let mut config = NodeConfig::default();
        config
            .set("seeds", "1@127.0.0.1:33145, 2@10.0.0.2:33145", Source::Flag)
            .unwrap();
        assert_eq!(
            config.seeds,
            vec![
                (1, "127.0.0.1:33145".to_string()),
                (2, "10.0.0.2:33145".to_string())
            ]
        );
        for (bad, why) in [
            ("1@a:1,1@b:2", "named twice"),
            ("1@a:1,2@a:1", "named twice"),
            ("x@a:1", "not a node id"),
            ("1@nowhere", "not host:port"),
            ("1:2", "no '@'"),
        ] {
            let e = config
                .set("seeds", bad, Source::Flag)
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        // A seed list that puts this node elsewhere than it listens is refused at start.
        let mut config = NodeConfig {
            node_id: 1,
            ..NodeConfig::default()
        };
        config
            .set("seeds", "1@127.0.0.1:40000,2@127.0.0.1:40001", Source::Flag)
            .unwrap();
        let e = config.check().unwrap_err().to_string();
        assert!(e.contains("seeds name node 1 at 127.0.0.1:40000"), "{e}");
        config
            .set("rpc_addr", "127.0.0.1:40000", Source::Flag)
            .unwrap();
        config.check().unwrap();
    }

    #[test]
    fn every_documented_key_is_accepted() {
        // Each key must round-trip through `set` with a plausible value, so NODE_KEYS and the
        // match in `set` cannot drift apart.
        for (key, _) in all_keys() {
            let value = match key {
                "data_dir" => "/tmp/x",
                "kafka_addr" | "admin_addr" => "127.0.0.1:1",
                "advertised_kafka_addr" => "example.com:9092",
                "archive" => "s3://bucket/prefix",
                "auto_create_topics" => "false",
                "log_message_timestamp_type" => "LogAppendTime",
                "log_retention_ms" | "log_retention_bytes" => "-1",
                "requests_in_flight_max"
                | "archive_uploads_in_flight_max"
                | "archive_gets_in_flight_max" => "16",
                "archive_node_cache_bytes" | "archive_cache_bytes" => "10485760",
                "archive_cache_dir" => "/tmp/cache",
                "archive_chunk_bytes" | "archive_get_bytes" => "1048576",
                "archive_prefetch_chunks" => "2",
                "archive_read_bytes_per_sec" => "0",
                "archive_thread_nice" | "compaction_thread_nice" => "5",
                "compaction_check_interval_ms" => "1000",
                "group_min_session_timeout_ms" => "6000",
                "group_max_session_timeout_ms" => "300000",
                "transaction_max_timeout_ms" => "60000",
                "transactional_id_expiration_ms" => "86400000",
                "group_initial_rebalance_delay_ms" => "0",
                "group_consumer_heartbeat_interval_ms" => "500",
                "group_consumer_session_timeout_ms" => "6000",
                "group_consumer_assignors" => "range,uniform",
                "group_consumer_migration_policy" => "upgrade",
                "rpc_addr" => "127.0.0.1:33145",
                "advertised_rpc_addr" => "node-1:33145",
                "seeds" => "1@127.0.0.1:33145,2@127.0.0.1:33146",
                "default_replication_factor" | "default_min_insync_replicas" => "3",
                "raft_heartbeat_interval_ms" => "100",
                "raft_election_timeout_ms" => "1000",
                "listeners" => "PLAINTEXT://127.0.0.1:9092,SASL_SSL://127.0.0.1:9093",
                "advertised_listeners" => "SASL_SSL://broker.example.com:9093",
                "listener_security_protocol_map" => "EXTERNAL:SASL_SSL",
                "tls_cert_file" | "tls_key_file" | "tls_ca_file" => "/etc/silt/tls.pem",
                "tls_client_auth" => "required",
                "ssl_principal_mapping_rules" => "RULE:^CN=([^,]+).*$/$1/L,DEFAULT",
                "sasl_mechanisms" => "SCRAM-SHA-512,PLAIN",
                "super_users" => "User:admin",
                "bootstrap_user" => "admin:secret",
                "authorization" | "admin_auth" => "auto",
                "allow_everyone_if_no_acl_found" | "admin_tls" => "true",
                "admin_api_token" => "token",
                _ => "4096",
            };
            let mut config = NodeConfig::default();
            config
                .set(key, value, Source::Flag)
                .unwrap_or_else(|e| panic!("{key}: {e}"));
            assert!(config.value_of(key).is_some(), "{key} has no value_of");
        }
    }
}
