//! Where groups and committed offsets live: silt's own partition logs, like Kafka's
//! `__consumer_offsets`, kept compact by snapshots.
//!
//! # Layout
//!
//! The group log is the internal topic [`GROUP_TOPIC`], of [`GROUP_LOG_PARTITIONS`]
//! partitions (a group lives in hash(group) % N), placed and replicated like any topic: on a
//! node of its own, partitions of one replica (`<data>/topics/__silt_groups/<p>/`; a data
//! directory from before clusters had them at `<data>/groups/<p>/` and they move there);
//! in a cluster, `default_replication_factor` replicas on Raft. The leader of a partition
//! is the coordinator of its groups (FindCoordinator answers it).
//!
//! Appends are acknowledged once durable (fsynced; on Raft, committed by a quorum): an
//! OffsetCommit is answered, and seen by OffsetFetch, only then. Records are key/value, the
//! last value of a key wins, and a null value deletes the key:
//!
//! ```text
//! key ["offset", group, topic, partition]  value {"offset":..,"leader_epoch":..,"metadata":..,"commit_timestamp":..}
//! key ["group", group]                     value {"generation":..,"protocol_type":..,"protocol":..,"leader":..,"members":[..]}
//! key ["txn", transactional id]            value {"producer_id":..,"producer_epoch":..,"status":..,"partitions":[..],..}
//! key ["txnoffset", group, producer id, topic, partition]  value as "offset" (pending until
//!                                          the producer's transaction ends)
//! ```
//!
//! A transactional id lives where a group of the same name would: the transaction
//! coordinator is the group coordinator's partition leader (see [`crate::txn`]).
//!
//! Keys and values are JSON, so a partition can be read with any Kafka tool that can read the
//! files. A partition of one replica is replayed in order when its node takes it; on Raft,
//! every replica keeps the live records as entries apply ([`GroupLogApp`]) and a new leader
//! loads them from there.
//!
//! Compaction: on Raft, a snapshot of the live records lets each replica purge its log. With
//! one replica, when a partition outgrows its threshold, the active segment is rolled, a
//! snapshot of every live key of that partition is appended after it, and once the snapshot is
//! durable the segments before it are deleted. A crash at any point leaves either the old
//! segments (plus maybe a partial snapshot, which replays to the same state) or the snapshot.
//! The number of partitions is fixed: changing it would move groups between partitions.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use silt_index::batch::{self, Codec};
use silt_index::record::{NewRecord, decode_records, encode_batch};

use super::state::{CommittedOffset, Member};
use crate::log::{AppendError, AppendTicket, Clock, LogError, PartitionLog};
use crate::raft::Applied;
use crate::raft::store::Application;
use crate::replica::{Acks, Replica};

/// Partitions of the group log. Never change it (see the module docs).
pub const GROUP_LOG_PARTITIONS: usize = 4;
/// The internal topic whose partitions are the group log.
pub const GROUP_TOPIC: &str = "__silt_groups";
/// Records per batch when writing a snapshot.
const SNAPSHOT_BATCH_RECORDS: usize = 1000;

/// A key of the group log.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Key {
    /// `["offset", group, topic, partition]`
    Offset(String, String, String, i32),
    /// `["group", group]` (and, as parsed, `["txn", id]` until [`decode_record`] tells it)
    Group(String, String),
    /// `["txn", transactional id]`
    Txn(String, String),
    /// `["txnoffset", group, producer id, topic, partition]`: an offset committed in a
    /// transaction, pending until the transaction's marker.
    TxnOffset(String, String, i64, String, i32),
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

    /// The key of an offset committed in producer `producer_id`'s open transaction.
    pub fn txn_offset(group: &str, producer_id: i64, topic: &str, partition: i32) -> Key {
        Key::TxnOffset(
            "txnoffset".into(),
            group.into(),
            producer_id,
            topic.into(),
            partition,
        )
    }

    /// The key of a transactional id's state.
    pub fn txn(transactional_id: &str) -> Key {
        Key::Txn("txn".into(), transactional_id.into())
    }

    /// The group the key belongs to (for a transactional id: the id, which is placed the
    /// same way).
    pub fn group_id(&self) -> &str {
        match self {
            Key::Offset(_, group, _, _)
            | Key::Group(_, group)
            | Key::Txn(_, group)
            | Key::TxnOffset(_, group, ..) => group,
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
    /// A KIP-848 consumer group's state (its members, epochs and assignments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<super::consumer::ConsumerGroup>,
}

/// A record's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A committed offset.
    Offset(OffsetValue),
    /// A group's metadata.
    Group(GroupValue),
    /// A transactional id's state.
    Txn(crate::txn::state::TxnMeta),
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

/// A group's offsets committed in open transactions, by producer id.
pub type PendingOffsets =
    std::collections::HashMap<i64, std::collections::BTreeMap<(String, i32), CommittedOffset>>;

/// Encodes one record as (key, value) bytes.
pub fn encode_record(key: &Key, value: &Value) -> (Bytes, Option<Bytes>) {
    let key_bytes = Bytes::from(serde_json::to_vec(key).expect("keys serialise"));
    let value_bytes = match value {
        Value::Offset(v) => Some(serde_json::to_vec(v).expect("offsets serialise")),
        Value::Group(v) => Some(serde_json::to_vec(v).expect("groups serialise")),
        Value::Txn(v) => Some(serde_json::to_vec(v).expect("transactions serialise")),
        Value::Tombstone => None,
    };
    (key_bytes, value_bytes.map(Bytes::from))
}

/// Decodes one record; `None` for bytes that are not a group-log record (logged and skipped).
pub fn decode_record(key: &[u8], value: Option<&[u8]>) -> Option<(Key, Value)> {
    let key = match serde_json::from_slice(key).ok()? {
        Key::Offset(tag, ..) if tag != "offset" => return None,
        Key::TxnOffset(tag, ..) if tag != "txnoffset" => return None,
        Key::Group(tag, id) if tag == "txn" => Key::Txn(tag, id),
        Key::Group(tag, _) if tag != "group" => return None,
        key => key,
    };
    let value = match (&key, value) {
        (_, None) => Value::Tombstone,
        (Key::Offset(..) | Key::TxnOffset(..), Some(v)) => {
            Value::Offset(serde_json::from_slice(v).ok()?)
        }
        (Key::Group(..), Some(v)) => Value::Group(serde_json::from_slice(v).ok()?),
        (Key::Txn(..), Some(v)) => Value::Txn(serde_json::from_slice(v).ok()?),
    };
    Some((key, value))
}

/// Where the group log's partitions are: the replicas this node holds of the internal
/// group topic ([`GROUP_TOPIC`]).
pub trait GroupLogSource: Send + Sync + std::fmt::Debug + 'static {
    /// This node's replica of group-log partition `p`, if it holds one and it is online.
    fn replica(&self, p: usize) -> Option<Arc<dyn Replica>>;

    /// The cluster's topics as consumer groups see them (KIP-848 subscriptions and
    /// assignments); none by default.
    fn topics(&self) -> super::consumer::TopicsView {
        super::consumer::TopicsView::new()
    }
}

/// The group log: its partitions and the locks that keep appends and in-memory state in order.
#[derive(Debug)]
pub struct GroupStore {
    source: Arc<dyn GroupLogSource>,
    locks: Vec<tokio::sync::Mutex<()>>,
    clock: Arc<dyn Clock>,
}

impl GroupStore {
    /// The cluster's topics, from the source.
    pub fn topics(&self) -> super::consumer::TopicsView {
        self.source.topics()
    }

    /// The group log over `source`'s replicas.
    pub fn new(source: Arc<dyn GroupLogSource>, clock: Arc<dyn Clock>) -> GroupStore {
        GroupStore {
            source,
            locks: (0..GROUP_LOG_PARTITIONS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            clock,
        }
    }

    /// This node's replica of partition `p`, if any.
    pub fn replica(&self, p: usize) -> Option<Arc<dyn Replica>> {
        self.source.replica(p)
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
        self.locks[p].lock().await
    }

    /// Queues `records` (as one or more batches) on partition `p`, to be acknowledged once
    /// durable (fsynced here; on a replicated partition, committed by a quorum). Call with
    /// the partition's lock held; wait on the tickets after releasing it.
    ///
    /// # Errors
    ///
    /// The append's refusal (`NotLeader` when this node does not lead the partition).
    pub async fn submit(
        &self,
        p: usize,
        records: &[(Key, Value)],
    ) -> Result<Vec<AppendTicket>, AppendError> {
        let replica = self
            .source
            .replica(p)
            .ok_or(AppendError::NotLeader { leader: None })?;
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
            tickets.push(replica.submit(bytes, Acks::All).await?);
        }
        Ok(tickets)
    }

    /// Bytes in partition `p` here.
    pub fn size_bytes(&self, p: usize) -> u64 {
        self.source.replica(p).map_or(0, |r| r.log().size_bytes())
    }

    /// Replaces partition `p`'s history with `live` (its current records): roll, append the
    /// snapshot, delete what came before once it is durable. Call with the lock held, on a
    /// partition of one replica (a replicated one compacts through Raft snapshots).
    ///
    /// # Errors
    ///
    /// Append or delete failures; the log then still holds everything it held.
    pub async fn compact(&self, p: usize, live: &[(Key, Value)]) -> Result<(), String> {
        let replica = self
            .source
            .replica(p)
            .ok_or_else(|| format!("no replica of group-log partition {p} here"))?;
        let log = replica.log();
        log.roll_if_older(0).await.map_err(|e| e.to_string())?;
        let start = log.high_watermark();
        let tickets = self.submit(p, live).await.map_err(|e| e.to_string())?;
        for ticket in tickets {
            ticket.wait().await.map_err(|e| e.to_string())?;
        }
        let deleted = replica.trim(start).await.map_err(|e| e.to_string())?;
        tracing::info!(
            partition = p,
            segments = deleted,
            live = live.len(),
            "compacted group log"
        );
        Ok(())
    }
}

/// The live records of a replicated group-log partition, kept by every replica as Raft
/// applies its entries: the last value of each key. A new leader loads its groups from it,
/// and Raft snapshots it, so each replica compacts its log on its own.
#[derive(Debug, Default)]
pub struct GroupLogApp {
    live: std::sync::Mutex<std::collections::BTreeMap<Key, Value>>,
}

impl GroupLogApp {
    /// The live records, in key order.
    pub fn records(&self) -> Vec<(Key, Value)> {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn put(live: &mut std::collections::BTreeMap<Key, Value>, key: Key, value: Value) {
        match (&key, value) {
            (Key::Group(_, group), Value::Tombstone) => {
                // As replay does: a deleted group takes its offsets with it.
                let group = group.clone();
                live.retain(|k, _| !matches!(k, Key::Offset(_, g, _, _) if *g == group));
                live.remove(&key);
            }
            (_, Value::Tombstone) => {
                live.remove(&key);
            }
            (_, value) => {
                live.insert(key, value);
            }
        }
    }
}

impl Application for GroupLogApp {
    fn apply(&self, _log_id: &crate::raft::LogId, data: &crate::raft::LogData) -> Applied {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        match decode_records(&data.batch, 64 << 20) {
            Ok(records) => {
                for record in records {
                    if let Some((key, value)) = record
                        .key
                        .as_deref()
                        .and_then(|k| decode_record(k, record.value.as_deref()))
                    {
                        GroupLogApp::put(&mut live, key, value);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "a group-log batch that does not decode; skipped"),
        }
        Applied::Done
    }

    fn snapshot(&self) -> serde_json::Value {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let records: Vec<(String, Option<String>)> = live
            .iter()
            .map(|(key, value)| {
                let (k, v) = encode_record(key, value);
                (
                    String::from_utf8_lossy(&k).into_owned(),
                    v.map(|v| String::from_utf8_lossy(&v).into_owned()),
                )
            })
            .collect();
        serde_json::json!({ "records": records })
    }

    fn restore(&self, state: &serde_json::Value) -> Result<(), String> {
        let records: Vec<(String, Option<String>)> = match state.get("records") {
            Some(records) => serde_json::from_value(records.clone()).map_err(|e| e.to_string())?,
            None => Vec::new(),
        };
        let mut live = std::collections::BTreeMap::new();
        for (key, value) in records {
            let (key, value) = decode_record(key.as_bytes(), value.as_deref().map(str::as_bytes))
                .ok_or_else(|| format!("not a group-log record: {key}"))?;
            GroupLogApp::put(&mut live, key, value);
        }
        *self.live.lock().unwrap_or_else(|p| p.into_inner()) = live;
        Ok(())
    }

    fn stateless(&self) -> bool {
        false
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Reads a partition from its start, appending decoded records to `out` (for a partition of
/// one replica, whose log is all there is).
///
/// # Errors
///
/// I/O errors or a batch that does not decode.
pub fn replay(log: &PartitionLog, out: &mut Vec<(Key, Value)>) -> Result<(), LogError> {
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

/// Live records of the groups and transactional ids in partition `p`, from memory (for
/// compaction).
pub fn live_records<'a>(
    p: usize,
    groups: impl Iterator<Item = (&'a String, &'a super::state::Group)>,
    txns: impl Iterator<Item = (&'a String, &'a crate::txn::state::TxnMeta)>,
    pending: impl Iterator<Item = (&'a String, &'a PendingOffsets)>,
) -> Vec<(Key, Value)> {
    let mut out: Vec<(Key, Value)> = txns
        .filter(|(id, _)| GroupStore::partition_of(id) == p)
        .map(|(id, meta)| (Key::txn(id), Value::Txn(meta.clone())))
        .collect();
    for (group, by_producer) in pending.filter(|(g, _)| GroupStore::partition_of(g) == p) {
        for (producer_id, offsets) in by_producer {
            for ((topic, partition), committed) in offsets {
                out.push((
                    Key::txn_offset(group, *producer_id, topic, *partition),
                    Value::Offset(committed.into()),
                ));
            }
        }
    }
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
        consumer: group.consumer.clone(),
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
                consumer: None,
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
