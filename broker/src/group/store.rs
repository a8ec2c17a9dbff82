//! Where groups and committed offsets live: silt's own partition logs, like Kafka's
//! `__consumer_offsets`, kept compact by snapshots.
//!
//! # Layout
//!
//! ```text
//! <data>/groups/<p>/   p = 0..GROUP_LOG_PARTITIONS; a group lives in hash(group) % N
//! ```
//!
//! Each partition is an ordinary [`PartitionLog`] of v2 batches, appended with durability
//! (an OffsetCommit is acknowledged only after its fdatasync). Records are key/value, the last
//! value of a key wins, and a null value deletes the key:
//!
//! ```text
//! key ["offset", group, topic, partition]  value {"offset":..,"leader_epoch":..,"metadata":..,"commit_timestamp":..}
//! key ["group", group]                     value {"generation":..,"protocol_type":..,"protocol":..,"leader":..,"members":[..]}
//! ```
//!
//! Keys and values are JSON, so a partition can be read with any Kafka tool that can read the
//! files. On start every partition is replayed in order.
//!
//! Compaction: when a partition outgrows its threshold, the active segment is rolled, a
//! snapshot of every live key of that partition is appended after it, and once the snapshot is
//! durable the segments before it are deleted. A crash at any point leaves either the old
//! segments (plus maybe a partial snapshot, which replays to the same state) or the snapshot.
//! The number of partitions is fixed: changing it would move groups between partitions.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use silt_config::NodeConfig;
use silt_index::batch::{self, Codec};
use silt_index::record::{NewRecord, decode_records, encode_batch};

use super::state::{CommittedOffset, Member};
use crate::log::{
    AppendError, AppendTicket, Clock, Durability, LogConfig, LogError, PartitionLog, Storage,
};

/// Partitions of the group log. Never change it (see the module docs).
pub const GROUP_LOG_PARTITIONS: usize = 4;
/// Records per batch when writing a snapshot.
const SNAPSHOT_BATCH_RECORDS: usize = 1000;

/// A key of the group log.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Key {
    /// `["offset", group, topic, partition]`
    Offset(String, String, String, i32),
    /// `["group", group]`
    Group(String, String),
}

impl Key {
    /// The key of a committed offset.
    pub fn offset(group: &str, topic: &str, partition: i32) -> Key {
        Key::Offset("offset".into(), group.into(), topic.into(), partition)
    }

    /// The key of a group's metadata.
    pub fn group(group: &str) -> Key {
        Key::Group("group".into(), group.into())
    }

    /// The group the key belongs to.
    pub fn group_id(&self) -> &str {
        match self {
            Key::Offset(_, group, _, _) | Key::Group(_, group) => group,
        }
    }
}

/// A committed offset as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetValue {
    /// The offset.
    pub offset: i64,
    /// Leader epoch, or -1.
    pub leader_epoch: i32,
    /// Client metadata.
    pub metadata: String,
    /// When committed.
    pub commit_timestamp: i64,
}

impl From<&CommittedOffset> for OffsetValue {
    fn from(c: &CommittedOffset) -> Self {
        OffsetValue {
            offset: c.offset,
            leader_epoch: c.leader_epoch,
            metadata: c.metadata.clone(),
            commit_timestamp: c.commit_timestamp_ms,
        }
    }
}

impl From<OffsetValue> for CommittedOffset {
    fn from(v: OffsetValue) -> Self {
        CommittedOffset {
            offset: v.offset,
            leader_epoch: v.leader_epoch,
            metadata: v.metadata,
            commit_timestamp_ms: v.commit_timestamp,
        }
    }
}

/// A member as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberValue {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Protocols and hex metadata.
    pub protocols: Vec<(String, String)>,
    /// Hex assignment.
    pub assignment: String,
}

impl From<&Member> for MemberValue {
    fn from(m: &Member) -> Self {
        MemberValue {
            member_id: m.member_id.clone(),
            group_instance_id: m.group_instance_id.clone(),
            client_id: m.client_id.clone(),
            client_host: m.client_host.clone(),
            session_timeout_ms: m.session_timeout_ms,
            rebalance_timeout_ms: m.rebalance_timeout_ms,
            protocols: m
                .protocols
                .iter()
                .map(|(n, b)| (n.clone(), hex(b)))
                .collect(),
            assignment: hex(&m.assignment),
        }
    }
}

impl MemberValue {
    /// Back to a member (its timers are set by `Group::restore`).
    pub fn into_member(self) -> Member {
        Member {
            member_id: self.member_id,
            group_instance_id: self.group_instance_id,
            client_id: self.client_id,
            client_host: self.client_host,
            session_timeout_ms: self.session_timeout_ms,
            rebalance_timeout_ms: self.rebalance_timeout_ms,
            protocols: self
                .protocols
                .into_iter()
                .map(|(n, h)| (n, unhex(&h)))
                .collect(),
            assignment: unhex(&self.assignment),
            awaiting_join: false,
            awaiting_sync: false,
            expires_at_ms: 0,
            joined_seq: 0,
        }
    }
}

/// A group's metadata as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupValue {
    /// Generation.
    pub generation: i32,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol: Option<String>,
    /// Leader.
    pub leader: Option<String>,
    /// Members.
    pub members: Vec<MemberValue>,
}

/// A record's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A committed offset.
    Offset(OffsetValue),
    /// A group's metadata.
    Group(GroupValue),
    /// The key is deleted.
    Tombstone,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Bytes {
    let bytes: Vec<u8> = (0..text.len() / 2)
        .filter_map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    Bytes::from(bytes)
}

/// Encodes one record as (key, value) bytes.
pub fn encode_record(key: &Key, value: &Value) -> (Bytes, Option<Bytes>) {
    let key_bytes = Bytes::from(serde_json::to_vec(key).expect("keys serialise"));
    let value_bytes = match value {
        Value::Offset(v) => Some(serde_json::to_vec(v).expect("offsets serialise")),
        Value::Group(v) => Some(serde_json::to_vec(v).expect("groups serialise")),
        Value::Tombstone => None,
    };
    (key_bytes, value_bytes.map(Bytes::from))
}

/// Decodes one record; `None` for bytes that are not a group-log record (logged and skipped).
pub fn decode_record(key: &[u8], value: Option<&[u8]>) -> Option<(Key, Value)> {
    let key: Key = serde_json::from_slice(key).ok()?;
    let tagged = match &key {
        Key::Offset(tag, ..) => tag == "offset",
        Key::Group(tag, _) => tag == "group",
    };
    if !tagged {
        return None;
    }
    let value = match (&key, value) {
        (_, None) => Value::Tombstone,
        (Key::Offset(..), Some(v)) => Value::Offset(serde_json::from_slice(v).ok()?),
        (Key::Group(..), Some(v)) => Value::Group(serde_json::from_slice(v).ok()?),
    };
    Some((key, value))
}

/// The group log: its partitions and the locks that keep appends and in-memory state in order.
#[derive(Debug)]
pub struct GroupStore {
    partitions: Vec<(PartitionLog, tokio::sync::Mutex<()>)>,
    clock: Arc<dyn Clock>,
}

impl GroupStore {
    /// Opens (creating) every partition under `<data>/groups` and replays it. Blocking.
    /// Returns the store and the live records, in log order per partition.
    ///
    /// # Errors
    ///
    /// A partition that does not open: groups cannot be served without their offsets.
    pub fn open(
        storage: Arc<dyn Storage>,
        node: &NodeConfig,
        clock: Arc<dyn Clock>,
        runtime: &tokio::runtime::Handle,
    ) -> Result<(GroupStore, Vec<(Key, Value)>), LogError> {
        let root = node.data_dir.join("groups");
        let config = LogConfig {
            segment_bytes: 16 << 20,
            max_message_bytes: 16 << 20,
            preallocate_bytes: node.segment_preallocate_bytes.min(4 << 20),
            ..LogConfig::new(
                &silt_config::TopicConfig::resolve(&Default::default(), &node.topic_defaults)
                    .expect("defaults are valid"),
                node,
            )
        };
        let mut partitions = Vec::with_capacity(GROUP_LOG_PARTITIONS);
        let mut records = Vec::new();
        for p in 0..GROUP_LOG_PARTITIONS {
            let log = PartitionLog::open(
                storage.clone(),
                &root.join(p.to_string()),
                config.clone(),
                clock.clone(),
                runtime,
            )?;
            replay(&log, &mut records)?;
            partitions.push((log, tokio::sync::Mutex::new(())));
        }
        Ok((GroupStore { partitions, clock }, records))
    }

    /// The partition holding `group`.
    pub fn partition_of(group: &str) -> usize {
        // FNV-1a: stable across versions and platforms, unlike std's hasher.
        let mut hash: u32 = 0x811c_9dc5;
        for byte in group.bytes() {
            hash ^= u32::from(byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
        (hash % GROUP_LOG_PARTITIONS as u32) as usize
    }

    /// Locks partition `p` for an append whose effect on memory must follow log order.
    pub async fn lock(&self, p: usize) -> tokio::sync::MutexGuard<'_, ()> {
        self.partitions[p].1.lock().await
    }

    /// Queues `records` (as one or more batches) on partition `p`, durably. Call with the
    /// partition's lock held; wait on the tickets after releasing it.
    ///
    /// # Errors
    ///
    /// The append's refusal.
    pub async fn submit(
        &self,
        p: usize,
        records: &[(Key, Value)],
    ) -> Result<Vec<AppendTicket>, AppendError> {
        let now = self.clock.now_ms();
        let mut tickets = Vec::new();
        for chunk in records.chunks(SNAPSHOT_BATCH_RECORDS) {
            let batch: Vec<NewRecord> = chunk
                .iter()
                .map(|(key, value)| {
                    let (key, value) = encode_record(key, value);
                    NewRecord {
                        key: Some(key),
                        value,
                        headers: Vec::new(),
                        timestamp: now,
                    }
                })
                .collect();
            let bytes = Bytes::from(encode_batch(0, &batch, Codec::None, None));
            tickets.push(
                self.partitions[p]
                    .0
                    .submit(bytes, Durability::Durable)
                    .await?,
            );
        }
        Ok(tickets)
    }

    /// Bytes in partition `p`.
    pub fn size_bytes(&self, p: usize) -> u64 {
        self.partitions[p].0.size_bytes()
    }

    /// Replaces partition `p`'s history with `live` (its current records): roll, append the
    /// snapshot, delete what came before once it is durable. Call with the lock held.
    ///
    /// # Errors
    ///
    /// Append or delete failures; the log then still holds everything it held.
    pub async fn compact(&self, p: usize, live: &[(Key, Value)]) -> Result<(), String> {
        let log = &self.partitions[p].0;
        log.roll_if_older(0).await.map_err(|e| e.to_string())?;
        let start = log.high_watermark();
        let tickets = self.submit(p, live).await.map_err(|e| e.to_string())?;
        for ticket in tickets {
            ticket.wait().await.map_err(|e| e.to_string())?;
        }
        // Deleting a few files: brief enough to do in place.
        let deleted = log
            .delete_oldest_segments(|s| s.next_offset <= start)
            .map_err(|e| e.to_string())?;
        tracing::info!(
            partition = p,
            segments = deleted.len(),
            live = live.len(),
            "compacted group log"
        );
        Ok(())
    }

    /// Flushes and closes every partition.
    pub async fn close(&self) {
        for (log, _) in &self.partitions {
            if let Err(e) = log.close().await {
                tracing::warn!(dir = %log.dir().display(), error = %e, "group log close failed");
            }
        }
    }
}

/// Reads a partition from its start, appending decoded records to `out`.
fn replay(log: &PartitionLog, out: &mut Vec<(Key, Value)>) -> Result<(), LogError> {
    let mut offset = log.log_start_offset();
    while offset < log.high_watermark() {
        let slice = log.read(offset, 4 << 20)?;
        let scan = batch::scan(&slice.records, u32::MAX, true);
        if scan.batches.is_empty() {
            break;
        }
        for (header, range) in scan.batches {
            let records =
                decode_records(&slice.records[range], 64 << 20).map_err(|e| LogError::Corrupt {
                    path: log.dir().to_path_buf(),
                    position: 0,
                    reason: e.to_string(),
                })?;
            for record in records {
                match record
                    .key
                    .as_deref()
                    .and_then(|k| decode_record(k, record.value.as_deref()))
                {
                    Some(decoded) => out.push(decoded),
                    None => {
                        tracing::warn!(dir = %log.dir().display(), offset = record.offset, "skipping a record that is not a group-log record")
                    }
                }
            }
            offset = header.next_offset();
        }
    }
    Ok(())
}

/// Live records of the groups in partition `p`, from memory (for compaction).
pub fn live_records<'a>(
    p: usize,
    groups: impl Iterator<Item = (&'a String, &'a super::state::Group)>,
) -> Vec<(Key, Value)> {
    let mut out = Vec::new();
    for (id, group) in groups {
        if GroupStore::partition_of(id) != p {
            continue;
        }
        out.push((Key::group(id), Value::Group(group_value(group))));
        for ((topic, partition), committed) in &group.offsets {
            out.push((
                Key::offset(id, topic, *partition),
                Value::Offset(committed.into()),
            ));
        }
    }
    out
}

/// A group's metadata record.
pub fn group_value(group: &super::state::Group) -> GroupValue {
    let mut members: Vec<&Member> = group.members.values().collect();
    members.sort_by_key(|m| m.joined_seq);
    GroupValue {
        generation: group.generation,
        protocol_type: group.protocol_type.clone(),
        protocol: group.protocol_name.clone(),
        leader: group.leader.clone(),
        members: members.into_iter().map(MemberValue::from).collect(),
    }
}

/// Waits until every ticket's records are durable.
///
/// # Errors
///
/// The first append that failed.
pub async fn durable(tickets: Vec<AppendTicket>) -> Result<(), AppendError> {
    for ticket in tickets {
        ticket.wait().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let offset = (
            Key::offset("g", "t", 3),
            Value::Offset(OffsetValue {
                offset: 42,
                leader_epoch: 0,
                metadata: "m".into(),
                commit_timestamp: 7,
            }),
        );
        let group = (
            Key::group("g"),
            Value::Group(GroupValue {
                generation: 5,
                protocol_type: Some("consumer".into()),
                protocol: Some("range".into()),
                leader: Some("a".into()),
                members: vec![MemberValue {
                    member_id: "a".into(),
                    group_instance_id: None,
                    client_id: "c".into(),
                    client_host: "/h".into(),
                    session_timeout_ms: 10_000,
                    rebalance_timeout_ms: 30_000,
                    protocols: vec![("range".into(), hex(&[0, 1, 255]))],
                    assignment: hex(b"xy"),
                }],
            }),
        );
        for (key, value) in [offset, group, (Key::offset("g", "t", 0), Value::Tombstone)] {
            let (k, v) = encode_record(&key, &value);
            assert_eq!(decode_record(&k, v.as_deref()), Some((key, value)));
        }
        assert_eq!(unhex(&hex(&[0, 1, 255])), Bytes::from_static(&[0, 1, 255]));
        assert_eq!(decode_record(b"not json", None), None);
    }

    #[test]
    fn groups_spread_over_partitions_stably() {
        let spread: std::collections::BTreeSet<usize> = (0..100)
            .map(|i| GroupStore::partition_of(&format!("group-{i}")))
            .collect();
        assert_eq!(spread.len(), GROUP_LOG_PARTITIONS);
        assert_eq!(
            GroupStore::partition_of("orders"),
            GroupStore::partition_of("orders")
        );
    }
}
