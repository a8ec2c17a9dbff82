//! The replicated-log seam: a partition's log as its replicas agree on it.
//!
//! A [`Replica`] is this node's copy of a partition. It owns the local segment log
//! ([`PartitionLog`]: reads, retention, tiering) and decides three things the layers above
//! must not guess at:
//!
//! - who leads, in which leader epoch ([`Leadership`]): only the leader takes produce;
//! - when an append counts ([`Acks`]): acks=1 once the leader wrote it, acks=-1 once it is
//!   durable where it must be (this node's disk for a single replica, a quorum's disks for a
//!   replicated one);
//! - what consumers may read: the high watermark, which never runs ahead of durability.
//!
//! [`LocalReplica`] is the single-replica implementation: the partition log alone, whose high
//! watermark follows its `fdatasync`s and whose leader epoch is always 0. [`raft::RaftReplica`]
//! replicates through openraft: its high watermark is the commit point, its epoch the term.

pub mod raft;

use std::fmt::Debug;

use bytes::Bytes;

use crate::log::{AppendError, AppendTicket, Durability, LogError, PartitionLog};

/// When a produce is answered (Kafka's `acks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// acks=0 and acks=1: once the leader has written it.
    Leader,
    /// acks=-1: once it is durable on every replica that must have it.
    All,
}

/// Who leads a partition, as this node knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leadership {
    /// The current leader epoch.
    pub epoch: i32,
    /// The leader's node id, if there is one now.
    pub leader: Option<i32>,
    /// True when this node is the leader.
    pub is_leader: bool,
    /// When no leader is known now (an election or a hand-over under way): the last one
    /// this replica knew, with its epoch.
    pub previous: Option<(i32, i32)>,
}

/// This node's replica of a partition.
#[async_trait::async_trait]
pub trait Replica: Debug + Send + Sync + 'static {
    /// The local segment log (reads up to the high watermark, retention, the archiver).
    fn log(&self) -> &PartitionLog;

    /// Who leads, in which epoch.
    fn leadership(&self) -> Leadership;

    /// Queues one record batch (the client's bytes, exactly one v2 batch) on the leader and
    /// returns once it is queued, so that batches submitted in order are appended in order,
    /// with a ticket that resolves as `acks` asks.
    ///
    /// # Errors
    ///
    /// The batch is refused before it is queued (not the leader, not a valid batch, the log
    /// is closed).
    async fn submit(&self, batch: Bytes, acks: Acks) -> Result<AppendTicket, AppendError>;

    /// Queues a transaction marker of the coordinator's (see
    /// [`crate::log::PartitionLog::submit_marker`]), acknowledged once durable; only the
    /// leader takes it.
    ///
    /// # Errors
    ///
    /// As [`Replica::submit`]; `Corrupt` for a batch that is not a marker.
    async fn submit_marker(&self, batch: Bytes) -> Result<AppendTicket, AppendError>;

    /// DeleteRecords: the records before `offset` (-1: the high watermark) are gone for
    /// readers, in every tier; returns once that holds on this replica.
    ///
    /// # Errors
    ///
    /// `OffsetOutOfRange` above the high watermark; `Closed` when this replica is not the
    /// leader (the client asks the leader), I/O errors.
    async fn delete_records(&self, offset: i64) -> Result<(), LogError> {
        let log = self.log().clone();
        tokio::task::spawn_blocking(move || log.delete_records(offset))
            .await
            .map_err(|_| LogError::Closed)??;
        Ok(())
    }

    /// Tells every replica, through the partition's log, that the archive holds every offset
    /// below `next` (in root `version`); returns once that is committed. Nothing to do for a
    /// partition of one replica.
    ///
    /// # Errors
    ///
    /// `Closed` when this replica is not the leader or the entry was not committed.
    async fn replicate_archived(&self, next: i64, version: u64) -> Result<(), LogError> {
        let _ = (next, version);
        Ok(())
    }

    /// True when the archive moved past what this replica's Raft log last forgot (and no
    /// forgetting is under way). A partition of one replica has no Raft log to forget.
    fn has_archive_to_forget(&self) -> bool {
        false
    }

    /// Lets the replica's Raft log forget what the archive holds: a snapshot at the archive
    /// pointer and the log purged up to it. The segments stay for reads until local
    /// retention drops them; a replica that needs older entries (new, or far behind) gets the
    /// snapshot and copies only the tail the archive does not hold yet. Returns whether it
    /// moved.
    ///
    /// # Errors
    ///
    /// The group stopped, or the log could not be read.
    async fn forget_archived(&self) -> Result<bool, LogError> {
        Ok(false)
    }

    /// False on a leader that has not yet committed an entry of its own term: its high
    /// watermark may still trail what an earlier leader showed (after a full restart it
    /// starts from what this node knew committed). Kafka answers offset queries then with
    /// OFFSET_NOT_AVAILABLE, so that what clients see never goes back.
    fn high_watermark_settled(&self) -> bool {
        true
    }

    /// The replicas in sync with the leader, the leader included (Kafka's ISR). A follower
    /// knows only itself.
    fn in_sync(&self) -> Vec<i32> {
        self.leadership().leader.into_iter().collect()
    }

    /// What this replica is doing, for status pages: `leader`, `follower`, `candidate` or
    /// `learner`.
    fn role(&self) -> &'static str {
        if self.leadership().is_leader {
            "leader"
        } else {
            "follower"
        }
    }

    /// The Raft replica, if this is one.
    fn as_raft(&self) -> Option<&raft::RaftReplica> {
        None
    }

    /// All replicas of the partition (voters), this one included.
    fn replicas(&self) -> Vec<i32> {
        self.leadership().leader.into_iter().collect()
    }

    /// Applies a topic's changed properties.
    fn reconfigure(&self, log_config: crate::log::LogConfig, _topic: &silt_config::TopicConfig) {
        self.log().set_config(log_config);
    }

    /// OffsetForLeaderEpoch: the largest epoch at or below `epoch` this replica knows, with
    /// the offset where it ended (the log end for the current epoch); `None` when there is
    /// none.
    fn epoch_end_offset(&self, epoch: i32) -> Option<(i32, i64)>;

    /// Deletes this replica's local segments that end at or before `keep_from`, a segment
    /// boundary (retention). Returns how many went.
    ///
    /// # Errors
    ///
    /// The deletion failed (what went stays gone).
    async fn trim(&self, keep_from: i64) -> Result<usize, LogError>;

    /// Flushes and stops the replica; appends after this fail with `Closed`.
    ///
    /// # Errors
    ///
    /// As [`PartitionLog::close`].
    async fn close(&self) -> Result<(), LogError>;
}

/// A partition with a single replica, on this node: it always leads, in one epoch (0, or the
/// one after the archive's newest for a partition restored from an archive), and what it has
/// fsynced is committed.
#[derive(Debug)]
pub struct LocalReplica {
    log: PartitionLog,
    node_id: i32,
}

/// The leader epoch of a single-replica partition (unless restored from an archive): it
/// never has elections.
pub const LOCAL_EPOCH: i32 = 0;

impl LocalReplica {
    /// The single replica over `log`, led by `node_id`.
    pub fn new(log: PartitionLog, node_id: i32) -> LocalReplica {
        LocalReplica { log, node_id }
    }
}

#[async_trait::async_trait]
impl Replica for LocalReplica {
    fn log(&self) -> &PartitionLog {
        &self.log
    }

    fn leadership(&self) -> Leadership {
        Leadership {
            epoch: self.log.local_epoch(),
            leader: Some(self.node_id),
            is_leader: true,
            previous: None,
        }
    }

    async fn submit(&self, batch: Bytes, acks: Acks) -> Result<AppendTicket, AppendError> {
        let durability = match acks {
            Acks::Leader => Durability::Buffered,
            Acks::All => Durability::Durable,
        };
        self.log.submit(batch, durability).await
    }

    async fn submit_marker(&self, batch: Bytes) -> Result<AppendTicket, AppendError> {
        self.log.submit_marker(batch, Durability::Durable).await
    }

    fn epoch_end_offset(&self, epoch: i32) -> Option<(i32, i64)> {
        // One epoch, which ends at the high watermark, after those of the archive it was
        // restored from. Earlier epochs never existed, later ones are unknown: Kafka answers
        // both with UNDEFINED_EPOCH.
        self.log.local_epoch_end_offset(epoch)
    }

    async fn trim(&self, keep_from: i64) -> Result<usize, LogError> {
        let log = self.log.clone();
        // Deleting files: off the async threads.
        tokio::task::spawn_blocking(move || {
            log.delete_oldest_segments(|s| s.next_offset <= keep_from)
                .map(|deleted| deleted.len())
        })
        .await
        .map_err(|e| LogError::Corrupt {
            path: self.log.dir().to_path_buf(),
            position: 0,
            reason: format!("retention task failed: {e}"),
        })?
    }

    async fn close(&self) -> Result<(), LogError> {
        self.log.close().await
    }
}
