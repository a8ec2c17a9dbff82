//! Raft nodes of one partition group in one process, over the in-memory network, each on its
//! own simulated disk: what `raft_cluster` and `raft_sim` share.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use silt_broker::log::raft::EntryBody;
use silt_broker::log::sim::SimStorage;
use silt_broker::log::{Appended, LogConfig, Storage, SystemClock};
use silt_broker::raft::group::{GroupHandle, GroupSpec, Timing, start};
use silt_broker::raft::mem::MemNetwork;
use silt_broker::raft::network::Groups;
use silt_broker::raft::store::PartitionApplication;
use silt_broker::raft::{LogData, NodeId};
use silt_index::batch::{BatchHeader, Codec};
use silt_index::record::{NewRecord, encode_batch};

/// The one group the nodes replicate.
pub(crate) const GROUP: u64 = 1;

/// A record batch of one record whose value is `tag`.
pub(crate) fn batch(tag: &str) -> Bytes {
    Bytes::from(encode_batch(
        0,
        &[NewRecord {
            value: Some(Bytes::from(tag.to_string())),
            timestamp: 1_700_000_000_000,
            ..Default::default()
        }],
        Codec::None,
        None,
    ))
}

/// One node: its disk and its replica of the group.
pub(crate) struct Node {
    pub(crate) id: NodeId,
    pub(crate) storage: SimStorage,
    pub(crate) handle: GroupHandle,
}

/// Starts node `id` on `storage` and attaches it to `net`.
pub(crate) async fn start_node(
    net: &Arc<MemNetwork>,
    id: NodeId,
    storage: SimStorage,
    timing: Timing,
) -> Node {
    start_seeded(net, id, storage, timing, None).await
}

/// [`start_node`], with its log seeded after an archive when it is new.
pub(crate) async fn start_seeded(
    net: &Arc<MemNetwork>,
    id: NodeId,
    storage: SimStorage,
    timing: Timing,
    seed: Option<silt_broker::raft::store::Seed>,
) -> Node {
    let spec = GroupSpec {
        node: id,
        group: GROUP,
        dir: PathBuf::from(format!("/n{id}/g{GROUP}")),
        log_config: LogConfig {
            segment_bytes: 16 * 1024,
            // Preallocated like on a disk, but small: the simulated disk holds it in memory.
            preallocate_bytes: 64 * 1024,
            ..LogConfig::default()
        },
        timing,
        application: Arc::new(PartitionApplication),
        keep_committed: false,
        seed,
    };
    let storage_dyn: Arc<dyn Storage> = Arc::new(storage.clone());
    let handle = start(spec, storage_dyn, Arc::new(SystemClock), net.router(id))
        .await
        .unwrap();
    let groups = Arc::new(Groups::default());
    groups.insert(GROUP, handle.raft.clone(), handle.log.clone());
    net.attach(id, groups);
    Node {
        id,
        storage,
        handle,
    }
}

/// One entry of a node's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) index: u64,
    pub(crate) term: u64,
    /// Base offset of a data batch (control entries are read back without theirs).
    pub(crate) offset: Option<i64>,
    /// The record's value, for a data batch.
    pub(crate) value: Option<String>,
}

/// Every entry of a node's log, in order.
pub(crate) fn entries(node: &Node) -> Vec<Entry> {
    let log = &node.handle.log;
    let end = log.raft_last().map_or(0, |(i, _)| i + 1);
    log.read_entries(0, end, u64::MAX)
        .unwrap()
        .into_iter()
        .map(|e| {
            let (offset, value) = match e.body {
                EntryBody::Batch(bytes) => {
                    let header = BatchHeader::parse(&bytes, u32::MAX).unwrap().unwrap();
                    let records = silt_index::record::decode_records(&bytes, 1 << 20).unwrap();
                    let value =
                        String::from_utf8(records[0].value.clone().unwrap().to_vec()).unwrap();
                    (Some(header.base_offset), Some(value))
                }
                _ => (None, None),
            };
            Entry {
                index: e.index,
                term: e.term,
                offset,
                value,
            }
        })
        .collect()
}

/// The values of the data batches of a node's log, in order.
pub(crate) fn values(node: &Node) -> Vec<String> {
    entries(node).into_iter().filter_map(|e| e.value).collect()
}

/// The entry for a batch of `tag`, and a receiver of where it was written.
pub(crate) fn write_data(tag: &str) -> (LogData, tokio::sync::oneshot::Receiver<Appended>) {
    let (written_tx, written_rx) = tokio::sync::oneshot::channel();
    (
        LogData {
            batch: batch(tag),
            written: Some(Arc::new(Mutex::new(Some(written_tx)))),
        },
        written_rx,
    )
}
