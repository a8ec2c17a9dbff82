//! Raft on openraft: one group per replicated partition, one for the controller.
//!
//! openraft (pinned at 0.10.0-alpha.37, see docs/design-notes.md) runs the protocol; this
//! module gives it what it needs:
//!
//! - [`TypeConfig`]: node ids are broker ids; one leader per term
//!   ([`openraft::vote::leader_id_std`]), so a term is a Kafka leader epoch; an entry's data
//!   is one record batch ([`LogData`]);
//! - [`store`]: the log store over a replicated [`PartitionLog`](crate::log::PartitionLog)
//!   (the segment files are the Raft log) and the state machine that moves the high watermark
//!   on commit, keeps snapshots and feeds committed entries to an [`store::Application`];
//! - [`runtime`]: tokio with a random-number source a simulation can seed.
//!
//! Groups are numbered by a [`GroupId`]: 0 is the controller, the controller numbers the rest.

pub mod codec;
pub mod group;
pub mod mem;
pub mod network;
pub mod runtime;
pub mod store;
pub mod transport;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use openraft::vote::leader_id_std;
use openraft::{EmptyNode, EntryPayload, Membership};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::log::Appended;
use crate::log::raft::{CONTROL_BLANK, CONTROL_MEMBERSHIP, EntryBody, EntryRead, EntryWrite};

/// A broker id, as Raft knows it.
pub type NodeId = u64;

/// A Raft group: 0 is the controller; partitions get theirs from the controller.
pub type GroupId = u64;

/// The controller's group.
pub const CONTROLLER_GROUP: GroupId = 0;

/// One leader per term: Kafka's leader epoch is the term.
pub type LeaderId = leader_id_std::LeaderId<u64, NodeId>;
/// A committed leader id: the term.
pub type CommittedLeaderId = leader_id_std::CommittedLeaderId<u64>;
/// A Raft log id.
pub type LogId = openraft::LogId<CommittedLeaderId>;
/// A vote.
pub type Vote = openraft::impls::Vote<LeaderId>;
/// An entry's payload.
pub type Payload = EntryPayload<LogData, NodeId, EmptyNode>;
/// A Raft log entry.
pub type Entry = openraft::Entry<CommittedLeaderId, Payload>;
/// A membership config.
pub type RaftMembership = Membership<NodeId, EmptyNode>;
/// A membership config and the entry that set it.
pub type StoredMembership = openraft::StoredMembership<CommittedLeaderId, NodeId, EmptyNode>;
/// A snapshot's metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<CommittedLeaderId, NodeId, EmptyNode>;
/// A snapshot: its metadata and its bytes.
pub type Snapshot = openraft::Snapshot<CommittedLeaderId, NodeId, EmptyNode, Bytes>;
/// An openraft node.
pub type Raft = openraft::Raft<TypeConfig, store::StateMachine>;
/// What an openraft node reports about itself.
pub type RaftMetrics = openraft::RaftMetrics<TypeConfig>;

openraft::declare_raft_types!(
    /// silt's Raft types.
    pub TypeConfig:
        D = LogData,
        R = Applied,
        NodeId = NodeId,
        Node = EmptyNode,
        Term = u64,
        LeaderId = LeaderId,
        Vote = Vote,
        Payload = Payload,
        Entry = Entry,
        AsyncRuntime = runtime::SiltRuntime,
);

/// Where the leader hears that its own copy of a batch is written (acks=1); not replicated.
pub type WrittenNotice = Arc<Mutex<Option<oneshot::Sender<Appended>>>>;

/// The data of a normal entry: one record batch, as the leader checked it.
#[derive(Clone)]
pub struct LogData {
    /// The batch.
    pub batch: Bytes,
    /// On the leader: told the batch's offsets once its copy here is written.
    pub written: Option<WrittenNotice>,
}

impl LogData {
    /// A batch with no one waiting for its write.
    pub fn new(batch: Bytes) -> LogData {
        LogData {
            batch,
            written: None,
        }
    }
}

impl PartialEq for LogData {
    fn eq(&self, other: &Self) -> bool {
        self.batch == other.batch
    }
}

impl fmt::Debug for LogData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LogData({} bytes)", self.batch.len())
    }
}

impl fmt::Display for LogData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "batch of {} bytes", self.batch.len())
    }
}

/// What applying a committed entry answers to the client that wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Nothing to say (a partition's batch: its offsets came when it was written).
    Done,
    /// The application's answer (a controller command's result), as JSON.
    Reply(Bytes),
}

/// A membership as stored in a control batch: the voter sets (two while joint) and every
/// node, learners included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipRecord {
    /// Voter sets.
    pub configs: Vec<BTreeSet<NodeId>>,
    /// Every member, voters and learners.
    pub nodes: BTreeSet<NodeId>,
}

impl MembershipRecord {
    /// The record of a membership.
    pub fn of(membership: &RaftMembership) -> MembershipRecord {
        MembershipRecord {
            configs: membership.get_joint_config().clone(),
            nodes: membership.nodes().map(|(id, _)| *id).collect(),
        }
    }

    /// Back to a membership.
    ///
    /// # Errors
    ///
    /// A voter that is not among the nodes, or no voter set.
    pub fn to_membership(&self) -> Result<RaftMembership, String> {
        let nodes: BTreeMap<NodeId, EmptyNode> =
            self.nodes.iter().map(|id| (*id, EmptyNode {})).collect();
        Membership::new(self.configs.clone(), nodes).map_err(|e| e.to_string())
    }
}

/// An entry as the log writes it.
pub(crate) fn to_write(entry: Entry) -> EntryWrite {
    let index = entry.log_id.index;
    let term = entry.log_id.leader_id.term;
    let (body, written) = match entry.payload {
        EntryPayload::Blank => (
            EntryBody::Control {
                control_type: CONTROL_BLANK,
                value: Bytes::new(),
            },
            None,
        ),
        EntryPayload::Normal(data) => {
            let written = data
                .written
                .and_then(|notice| notice.lock().unwrap_or_else(|p| p.into_inner()).take());
            (EntryBody::Batch(data.batch), written)
        }
        EntryPayload::Membership(membership) => (
            EntryBody::Control {
                control_type: CONTROL_MEMBERSHIP,
                value: Bytes::from(
                    serde_json::to_vec(&MembershipRecord::of(&membership))
                        .expect("memberships serialise"),
                ),
            },
            None,
        ),
    };
    EntryWrite {
        index,
        term,
        body,
        written,
    }
}

/// An entry read from the log, as openraft knows it.
///
/// # Errors
///
/// A control batch that is not one of Raft's, or a membership that does not decode.
pub(crate) fn from_read(read: EntryRead) -> Result<Entry, String> {
    let payload = match read.body {
        EntryBody::Batch(batch) => EntryPayload::Normal(LogData::new(batch)),
        EntryBody::Control {
            control_type: CONTROL_BLANK,
            ..
        } => EntryPayload::Blank,
        EntryBody::Control {
            control_type: CONTROL_MEMBERSHIP,
            value,
        } => {
            let record: MembershipRecord = serde_json::from_slice(&value)
                .map_err(|e| format!("membership entry {}: {e}", read.index))?;
            EntryPayload::Membership(record.to_membership()?)
        }
        EntryBody::Control { control_type, .. } => {
            return Err(format!(
                "entry {} is a control batch of unknown type {control_type:#x}",
                read.index
            ));
        }
    };
    Ok(Entry {
        log_id: log_id(read.term, read.index),
        payload,
    })
}

/// The log id of entry `index` in `term`.
pub fn log_id(term: u64, index: u64) -> LogId {
    openraft::LogId::new(CommittedLeaderId::new(term), index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_the_trip_through_the_log() {
        let membership = Membership::new(
            vec![BTreeSet::from([1, 2, 3])],
            BTreeMap::from([
                (1, EmptyNode {}),
                (2, EmptyNode {}),
                (3, EmptyNode {}),
                (4, EmptyNode {}),
            ]),
        )
        .unwrap();
        for payload in [
            EntryPayload::Blank,
            EntryPayload::Normal(LogData::new(Bytes::from_static(b"batch"))),
            EntryPayload::Membership(membership),
        ] {
            let entry = Entry {
                log_id: log_id(7, 42),
                payload,
            };
            let write = to_write(entry.clone());
            let read = EntryRead {
                index: write.index,
                term: write.term,
                body: write.body,
            };
            let back = from_read(read).unwrap();
            assert_eq!(back.log_id, entry.log_id);
            assert_eq!(back.payload, entry.payload);
        }
    }
}
