//! openraft's storage over a replicated partition log: the log store ([`LogStore`]) and the
//! state machine ([`StateMachine`]).
//!
//! The log store is a thin adapter: entries go to the partition's writer as record batches
//! (see [`crate::log::raft`]) and come back from the segment files. The vote is kept beside
//! the log, written atomically before `save_vote` returns.
//!
//! The state machine's state is mostly the log itself: applying a committed entry moves the
//! partition's high watermark, so consumers read exactly what a quorum holds. An
//! [`Application`] sees each committed batch too (the controller's metadata lives there). A
//! snapshot is small: the point it was taken at, the offset after it, the producer state and
//! leader epochs there, the archive pointer, and the application's state; installing one
//! replaces the local log by an empty one that continues after that point. A partition's
//! snapshot sits where its log may be forgotten (what the archive holds, or what retention
//! deletes), not where it applied: a replica installing it copies only what follows.
//!
//! # Files beside the segments
//!
//! ```text
//! raft_vote         {"term":T,"node":N,"committed":bool}
//! raft_membership   {"log_id":[index,term]|null,"configs":[[ids]],"nodes":[ids]}
//! raft_snapshot     {"meta":{...},"body":{...}} (the last snapshot built or installed)
//! ```

use std::io;
use std::ops::RangeBounds;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use openraft::storage::{EntryResponder, IOFlushed, LogState, RaftLogStorage, RaftStateMachine};
use openraft::{RaftLogReader, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};

use super::{
    Applied, Entry, LogData, LogId, MembershipRecord, NodeId, RaftMembership, Snapshot,
    SnapshotMeta, StoredMembership, TypeConfig, Vote, from_read, log_id, to_write,
};
use crate::log::producer_state::ProducerStateTable;
use crate::log::raft::{EpochCache, RaftLogId, ResetTo, SnapshotPoint};
use crate::log::storage::{read_all, write_atomic};
use crate::log::{LogError, PartitionLog, Storage};

/// Name of the vote file.
pub const VOTE_FILE: &str = crate::log::recovery::RAFT_VOTE;
/// Name of the membership file.
pub const MEMBERSHIP_FILE: &str = crate::log::raft::RAFT_MEMBERSHIP;
/// Name of the snapshot file.
pub const SNAPSHOT_FILE: &str = crate::log::raft::RAFT_SNAPSHOT;

/// Most bytes of entries one read hands to replication (a follower far behind catches up in
/// steps of this size).
pub const READ_BYTES_MAX: u64 = 4 << 20;

/// How often the applied point is written down for the next start.
const APPLIED_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(2);

/// Runs blocking file work where async code called it: on a multi-threaded runtime the worker
/// hands its other tasks over while it waits; elsewhere (simulations, on in-memory storage) it
/// runs in place.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

fn io_error(e: LogError) -> io::Error {
    io::Error::other(e.to_string())
}

/// What committed entries mean beyond the log: nothing for a partition, the cluster's
/// metadata for the controller.
pub trait Application: Send + Sync + 'static {
    /// Applies one committed batch; the result answers the client that wrote it.
    fn apply(&self, log_id: &LogId, data: &LogData) -> Applied;
    /// The application's state as of the last entry applied, for a snapshot.
    fn snapshot(&self) -> serde_json::Value;
    /// Replaces the application's state with a snapshot's.
    ///
    /// # Errors
    ///
    /// A state that does not decode.
    fn restore(&self, state: &serde_json::Value) -> Result<(), String>;
    /// True when the application keeps no state of its own: after a restart, applying may
    /// resume after the last checkpoint instead of after the snapshot.
    fn stateless(&self) -> bool;
    /// The application as `Any`, for its owner to reach its concrete type.
    fn as_any(&self) -> &dyn std::any::Any;
}

/// A partition's application: its state is its log.
#[derive(Debug, Default, Clone, Copy)]
pub struct PartitionApplication;

impl Application for PartitionApplication {
    fn apply(&self, _log_id: &LogId, _data: &LogData) -> Applied {
        Applied::Done
    }

    fn snapshot(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    fn restore(&self, _state: &serde_json::Value) -> Result<(), String> {
        Ok(())
    }

    fn stateless(&self) -> bool {
        true
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct VoteRecord {
    term: u64,
    node: NodeId,
    committed: bool,
}

/// The log store of one group.
#[derive(Clone)]
pub struct LogStore {
    log: Arc<PartitionLog>,
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    /// Keep the commit point on disk (the controller's group: a restart applies its
    /// metadata at once, before any leader speaks).
    keep_committed: bool,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl LogStore {
    /// The log store of the replicated `log` in `dir`.
    pub fn new(log: Arc<PartitionLog>, storage: Arc<dyn Storage>) -> LogStore {
        let dir = log.dir().to_path_buf();
        LogStore {
            log,
            storage,
            dir,
            keep_committed: false,
        }
    }

    /// Makes the store keep the commit point on disk.
    pub fn keeping_committed(mut self) -> LogStore {
        self.keep_committed = true;
        self
    }

    /// The log.
    pub fn log(&self) -> &Arc<PartitionLog> {
        &self.log
    }

    fn read_vote_file(&self) -> io::Result<Option<Vote>> {
        let path = self.dir.join(VOTE_FILE);
        if !self.storage.exists(&path) {
            return Ok(None);
        }
        let bytes = read_all(self.storage.open(&path, false)?.as_ref())?;
        let record: VoteRecord = serde_json::from_slice(&bytes)
            .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?;
        Ok(Some(if record.committed {
            Vote::new_committed(record.term, record.node)
        } else {
            Vote::new(record.term, record.node)
        }))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        use std::ops::Bound;
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e + 1,
            Bound::Excluded(&e) => e,
            Bound::Unbounded => self.log.raft_last().map_or(0, |(i, _)| i + 1),
        };
        let mut out = Vec::new();
        let mut index = start;
        while index < end {
            let run =
                blocking(|| self.log.read_entries(index, end, READ_BYTES_MAX)).map_err(io_error)?;
            if run.is_empty() {
                break;
            }
            for read in run {
                index = read.index + 1;
                out.push(from_read(read).map_err(io::Error::other)?);
            }
        }
        Ok(out)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        blocking(|| self.read_vote_file())
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, io::Error> {
        // One read's worth: a follower far behind is not sent gigabytes in one request.
        let run =
            blocking(|| self.log.read_entries(start, end, READ_BYTES_MAX)).map_err(io_error)?;
        run.into_iter()
            .map(|read| from_read(read).map_err(io::Error::other))
            .collect()
    }
}

fn to_log_id(id: RaftLogId) -> LogId {
    log_id(id.1, id.0)
}

fn from_log_id(id: &LogId) -> RaftLogId {
    (id.index, id.leader_id.term)
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let purged = self.log.raft_state().purged.map(to_log_id);
        let last = self.log.raft_last().map(to_log_id).max(purged);
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let record = VoteRecord {
            term: vote.leader_id.term,
            node: vote.leader_id.voted_for,
            committed: vote.committed,
        };
        assert!(
            record.term < i32::MAX as u64,
            "Raft term {} does not fit a Kafka leader epoch",
            record.term
        );
        let bytes = serde_json::to_vec(&record).expect("votes serialise");
        let path = self.dir.join(VOTE_FILE);
        blocking(|| write_atomic(self.storage.as_ref(), &path, &bytes))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let writes: Vec<_> = entries.into_iter().map(to_write).collect();
        self.log
            .append_entries(
                writes,
                Box::new(move |result| callback.io_completed(result.map_err(io_error))),
            )
            .await
            .map_err(io_error)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        if !self.keep_committed {
            return Ok(());
        }
        let committed = committed.as_ref().map(from_log_id);
        blocking(|| self.log.save_committed(committed)).map_err(io_error)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        if !self.keep_committed {
            return Ok(None);
        }
        Ok(self.log.raft_state().committed.map(to_log_id))
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        self.log
            .truncate_after(last_log_id.as_ref().map(from_log_id))
            .await
            .map_err(io_error)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        self.log
            .purge_upto(from_log_id(&log_id))
            .await
            .map_err(io_error)
    }
}

/// Where the group of a partition restored from an archive begins (see [`seed`]).
#[derive(Debug, Clone)]
pub struct Seed {
    /// The partition's first replicas, every one seeded alike.
    pub voters: std::collections::BTreeSet<NodeId>,
    /// The archive's next offset: where the local log starts.
    pub next_offset: i64,
    /// The leader epochs of the archived records.
    pub epochs: EpochCache,
}

/// Makes a new group over a partition restored from an archive begin as if its Raft log had
/// written the archive: its log starts after entry 0 of the archive's newest epoch, purged,
/// with `seed.voters` as its configuration there, and this node's vote in that term. Its
/// first election is then in the epoch after the archive's newest, so clients that read
/// the archive never see the leader epoch go back. Every first replica seeds the same, as
/// every one initializes with the same voters otherwise. A log that holds anything is left
/// alone; returns whether this one was seeded.
///
/// The vote and the configuration are written before the log is reset, and the reset marks
/// the log as begun last: a crash in between seeds again at the next start.
///
/// # Errors
///
/// I/O errors; epochs newer than a Raft term can say.
pub async fn seed(
    log: &PartitionLog,
    storage: &Arc<dyn Storage>,
    me: NodeId,
    seed: Seed,
) -> Result<bool, LogError> {
    let Some((newest, _)) = seed.epochs.latest() else {
        return Ok(false);
    };
    if log.raft_state().purged.is_some() || log.raft_last().is_some() {
        return Ok(false);
    }
    let term = u64::try_from(newest.max(0)).unwrap_or(0);
    let dir = log.dir().to_path_buf();
    let nodes: std::collections::BTreeMap<NodeId, openraft::EmptyNode> = seed
        .voters
        .iter()
        .map(|id| (*id, openraft::EmptyNode {}))
        .collect();
    let membership = RaftMembership::new(vec![seed.voters.clone()], nodes)
        .map_err(|e| LogError::corrupt(dir.clone(), 0, format!("seed voters: {e}")))?;
    let last: RaftLogId = (0, term);
    let file = MembershipFile {
        log_id: Some(last),
        membership: MembershipRecord::of(&membership),
        earlier: Vec::new(),
    };
    let vote = VoteRecord {
        term,
        node: me,
        committed: false,
    };
    {
        let (storage, dir) = (storage.clone(), dir.clone());
        let membership = serde_json::to_vec(&file).expect("memberships serialise");
        let vote = serde_json::to_vec(&vote).expect("votes serialise");
        blocking(move || {
            for (name, bytes) in [(MEMBERSHIP_FILE, membership), (VOTE_FILE, vote)] {
                let path = dir.join(name);
                write_atomic(storage.as_ref(), &path, &bytes)
                    .map_err(|e| LogError::io("write", path, e))?;
            }
            Ok::<_, LogError>(())
        })?;
    }
    log.reset_to(ResetTo {
        last,
        next_offset: seed.next_offset,
        producers: ProducerStateTable::default(),
        epochs: seed.epochs,
    })
    .await?;
    tracing::info!(dir = %dir.display(), term, next_offset = seed.next_offset, "seeded a restored partition's Raft log after the archive's newest epoch");
    Ok(true)
}

/// The membership file's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MembershipFile {
    log_id: Option<RaftLogId>,
    #[serde(flatten)]
    membership: MembershipRecord,
    /// The configurations before it, oldest first (a snapshot taken behind the last one
    /// names the one in force at its point).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    earlier: Vec<MembershipFile>,
}

fn membership_file(stored: &StoredMembership) -> MembershipFile {
    MembershipFile {
        log_id: stored.log_id().as_ref().map(from_log_id),
        membership: MembershipRecord::of(stored.membership()),
        earlier: Vec::new(),
    }
}

/// How many configurations a state machine remembers.
const MEMBERSHIPS_KEPT: usize = 4;

fn stored_membership(file: &MembershipFile) -> Result<StoredMembership, String> {
    Ok(StoredMembership::new(
        file.log_id.map(to_log_id),
        file.membership.to_membership()?,
    ))
}

/// The body of a snapshot: where the log continues, and the application's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SnapshotBody {
    format: u32,
    /// Offset of the first record after the snapshot's last entry.
    next_offset: i64,
    producers: ProducerStateTable,
    epochs: EpochCache,
    application: serde_json::Value,
    /// The archive pointer applied when it was taken: the archive holds every offset below
    /// it (at least up to `next_offset` when the snapshot was taken for the archive).
    #[serde(default)]
    archived: Option<i64>,
}

/// A snapshot as written to [`SNAPSHOT_FILE`].
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SnapshotFile {
    last: Option<RaftLogId>,
    membership: MembershipFile,
    body: SnapshotBody,
}

impl SnapshotFile {
    fn meta(&self) -> Result<SnapshotMeta, String> {
        Ok(SnapshotMeta {
            last_log_id: self.last.map(to_log_id),
            last_membership: stored_membership(&self.membership)?,
        })
    }

    fn snapshot(&self) -> Result<Snapshot, String> {
        Ok(Snapshot {
            meta: self.meta()?,
            snapshot: Bytes::from(serde_json::to_vec(&self.body).expect("snapshots serialise")),
        })
    }
}

/// Adds a configuration to those remembered (oldest first), if it is newer than the last.
fn remember_membership(memberships: &mut Vec<StoredMembership>, stored: StoredMembership) {
    if memberships
        .last()
        .is_some_and(|m| m.log_id() >= stored.log_id())
    {
        return;
    }
    memberships.push(stored);
    let excess = memberships.len().saturating_sub(MEMBERSHIPS_KEPT);
    memberships.drain(..excess);
}

/// The state machine of one group.
pub struct StateMachine {
    log: Arc<PartitionLog>,
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    application: Arc<dyn Application>,
    applied: Option<LogId>,
    /// The configurations applied, oldest first; the last is in force.
    memberships: Vec<StoredMembership>,
    /// The last entry the current snapshot covers (shared with the builders that move it).
    snapshot_last: Arc<std::sync::Mutex<Option<LogId>>>,
    checkpointed_at: Instant,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine")
            .field("dir", &self.dir)
            .field("applied", &self.applied)
            .finish_non_exhaustive()
    }
}

impl StateMachine {
    /// The state machine of `log`, resuming from what its files say (blocking).
    ///
    /// # Errors
    ///
    /// A membership or snapshot file that does not decode, or an application that refuses
    /// the snapshot's state.
    pub fn open(
        log: Arc<PartitionLog>,
        storage: Arc<dyn Storage>,
        application: Arc<dyn Application>,
    ) -> Result<StateMachine, LogError> {
        let dir = log.dir().to_path_buf();
        let read_json = |name: &str| -> Result<Option<Vec<u8>>, LogError> {
            let path = dir.join(name);
            if !storage.exists(&path) {
                return Ok(None);
            }
            storage
                .open(&path, false)
                .and_then(|f| read_all(f.as_ref()))
                .map(Some)
                .map_err(|e| LogError::io("read", path, e))
        };
        let corrupt = |name: &str, e: String| LogError::corrupt(dir.join(name), 0, e);
        let snapshot: Option<SnapshotFile> = read_json(SNAPSHOT_FILE)?
            .map(|b| serde_json::from_slice(&b))
            .transpose()
            .map_err(|e| corrupt(SNAPSHOT_FILE, e.to_string()))?;
        let mut memberships = vec![StoredMembership::default()];
        let mut applied = None;
        if let Some(snapshot) = &snapshot {
            memberships = vec![
                stored_membership(&snapshot.membership).map_err(|e| corrupt(SNAPSHOT_FILE, e))?,
            ];
            application
                .restore(&snapshot.body.application)
                .map_err(|e| corrupt(SNAPSHOT_FILE, e))?;
            if let Some(archived) = snapshot.body.archived {
                log.note_archived(archived);
            }
            applied = snapshot.last.map(to_log_id);
        }
        if let Some(bytes) = read_json(MEMBERSHIP_FILE)? {
            let file: MembershipFile = serde_json::from_slice(&bytes)
                .map_err(|e| corrupt(MEMBERSHIP_FILE, e.to_string()))?;
            for earlier in file.earlier.iter().chain([&file]) {
                let stored = stored_membership(earlier).map_err(|e| corrupt(MEMBERSHIP_FILE, e))?;
                remember_membership(&mut memberships, stored);
            }
        }
        if application.stateless()
            && let Some(checkpoint) = log.raft_state().applied
        {
            // Entries up to the checkpoint were applied and need nothing applied again.
            applied = applied.max(Some(to_log_id(checkpoint)));
        }
        if let Some(applied) = applied {
            // What was applied was committed: readable again at once (openraft applies
            // nothing up to there again, and a leader resuming its vote after a restart
            // commits nothing new until it is written to).
            log.set_commit_next(applied.index + 1);
        }
        Ok(StateMachine {
            log,
            storage,
            dir,
            application,
            applied,
            memberships,
            snapshot_last: Arc::new(std::sync::Mutex::new(
                snapshot.and_then(|s| s.last).map(to_log_id),
            )),
            checkpointed_at: Instant::now(),
        })
    }

    /// The configuration in force.
    fn membership(&self) -> &StoredMembership {
        self.memberships.last().expect("at least the initial one")
    }

    /// The configuration in force at entry `index`, if still remembered.
    fn membership_at(&self, index: u64) -> Option<&StoredMembership> {
        self.memberships
            .iter()
            .rev()
            .find(|m| m.log_id().as_ref().is_none_or(|id| id.index <= index))
    }

    fn save_membership(&self) -> Result<(), io::Error> {
        let (last, earlier) = self
            .memberships
            .split_last()
            .expect("at least the initial one");
        let file = MembershipFile {
            earlier: earlier.iter().map(membership_file).collect(),
            ..membership_file(last)
        };
        let bytes = serde_json::to_vec(&file).expect("memberships serialise");
        let path = self.dir.join(MEMBERSHIP_FILE);
        blocking(|| write_atomic(self.storage.as_ref(), &path, &bytes))
    }

    /// Writes down what was applied, when it is fsynced here too (a restart must not believe
    /// in entries its log lost).
    fn checkpoint(&mut self, force: bool) -> Result<(), io::Error> {
        if !force && self.checkpointed_at.elapsed() < APPLIED_CHECKPOINT_INTERVAL {
            return Ok(());
        }
        let Some(applied) = self.applied else {
            return Ok(());
        };
        if applied.index >= self.log.flushed_next_index() {
            return Ok(());
        }
        self.checkpointed_at = Instant::now();
        blocking(|| self.log.save_applied(from_log_id(&applied))).map_err(io_error)
    }

    fn load_snapshot(&self) -> Result<Option<SnapshotFile>, io::Error> {
        blocking(|| read_snapshot_file(self.storage.as_ref(), &self.dir))
    }
}

/// The snapshot file in `dir`, if there is one (blocking).
fn read_snapshot_file(
    storage: &dyn Storage,
    dir: &std::path::Path,
) -> Result<Option<SnapshotFile>, io::Error> {
    let path = dir.join(SNAPSHOT_FILE);
    if !storage.exists(&path) {
        return Ok(None);
    }
    let bytes = read_all(storage.open(&path, false)?.as_ref())?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))
}

/// Builds a snapshot of a group at the point chosen when it was asked for.
pub struct SnapshotBuilder {
    log: Arc<PartitionLog>,
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    last: Option<LogId>,
    membership: StoredMembership,
    application: serde_json::Value,
    snapshot_last: Arc<std::sync::Mutex<Option<LogId>>>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = Bytes;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        // Entries up to the snapshot's point are durable here first: a partition's state is
        // its log, and a power cut must not take entries a snapshot says are held.
        self.log.flush().await.map_err(io_error)?;
        let point = match self.last {
            Some(id) => self.log.snapshot_point(id.index).await.map_err(io_error)?,
            None => None,
        };
        let point = match point {
            Some(point) => point,
            None => {
                let current = blocking(|| read_snapshot_file(self.storage.as_ref(), &self.dir))?;
                if let Some(current) = current
                    && current.last.map(to_log_id) >= self.last
                {
                    // A snapshot was installed while this one was asked for, and the log
                    // no longer holds this point: the installed one stands, and is newer.
                    return current.snapshot().map_err(io::Error::other);
                }
                // Nothing in the log at this point (an empty log): it starts where it does.
                let log = self.log.clone();
                blocking(move || -> Result<_, LogError> {
                    let next_offset = log.log_start_offset();
                    Ok(SnapshotPoint {
                        next_offset,
                        producers: log.producers_at(next_offset)?,
                        epochs: log.epochs().until(next_offset),
                    })
                })
                .map_err(io_error)?
            }
        };
        let body = SnapshotBody {
            format: 1,
            next_offset: point.next_offset,
            producers: point.producers,
            epochs: point.epochs,
            application: serde_json::Value::Null,
            archived: self.log.archived_pointer(),
        };
        let file = SnapshotFile {
            last: self.last.as_ref().map(from_log_id),
            membership: membership_file(&self.membership),
            body: SnapshotBody {
                application: self.application.clone(),
                ..body
            },
        };
        let bytes = serde_json::to_vec(&file).expect("snapshots serialise");
        {
            // One writer of the file at a time, and never an older snapshot over a newer one
            // (one installed while this was built: the log was reset past this point).
            let mut current = self.snapshot_last.lock().unwrap_or_else(|p| p.into_inner());
            if *current > self.last {
                let installed = blocking(|| read_snapshot_file(self.storage.as_ref(), &self.dir))?
                    .ok_or_else(|| io::Error::other("an installed snapshot's file is gone"))?;
                return installed.snapshot().map_err(io::Error::other);
            }
            write_snapshot_file(self.storage.as_ref(), &self.dir, &bytes)?;
            *current = self.last;
        }
        tracing::debug!(dir = %self.dir.display(), last = ?self.last, next_offset = file.body.next_offset, "snapshot written");
        file.snapshot().map_err(io::Error::other)
    }
}

/// Writes the snapshot file in `dir` (blocking); the caller holds the state machine's
/// `snapshot_last` lock, so writes never race.
fn write_snapshot_file(
    storage: &dyn Storage,
    dir: &std::path::Path,
    bytes: &[u8],
) -> io::Result<()> {
    let path = dir.join(SNAPSHOT_FILE);
    blocking(|| write_atomic(storage, &path, bytes))
}

impl StateMachine {
    fn builder_at(&self, last: Option<LogId>, membership: StoredMembership) -> SnapshotBuilder {
        SnapshotBuilder {
            log: self.log.clone(),
            storage: self.storage.clone(),
            dir: self.dir.clone(),
            last,
            membership,
            application: self.application.snapshot(),
            snapshot_last: self.snapshot_last.clone(),
        }
    }

    /// A builder for a snapshot of a partition where its log may be forgotten (what the
    /// archive holds, or what retention deletes), if that is past the current snapshot. A new
    /// replica installing it starts its log there and copies only what follows.
    fn builder_at_forget_point(&self) -> Option<SnapshotBuilder> {
        let point = self.log.forget_point()?;
        let applied = self.applied?;
        let ((index, term), _) = match blocking(|| self.log.entry_ending_by(point)) {
            Ok(found) => found?,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "could not find where to snapshot");
                return None;
            }
        };
        let last = if index >= applied.index {
            applied
        } else {
            to_log_id((index, term))
        };
        let current = *self.snapshot_last.lock().unwrap_or_else(|p| p.into_inner());
        if current.is_some_and(|c| c.index >= last.index) {
            return None;
        }
        let membership = self.membership_at(last.index)?.clone();
        Some(self.builder_at(Some(last), membership))
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = Bytes;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((self.applied, self.membership().clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + Send,
    {
        let mut membership_changed = false;
        let mut replies = Vec::new();
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let reply = match &entry.payload {
                openraft::EntryPayload::Normal(data) => {
                    if let Some(offset) = crate::log::raft::delete_records_of(&data.batch) {
                        let log = self.log.clone();
                        blocking(move || log.move_records_start(offset)).map_err(io_error)?;
                        Applied::Done
                    } else if let Some((next, _)) = crate::log::raft::archived_of(&data.batch) {
                        self.log.note_archived(next);
                        Applied::Done
                    } else {
                        self.application.apply(&entry.log_id, data)
                    }
                }
                openraft::EntryPayload::Membership(membership) => {
                    remember_membership(
                        &mut self.memberships,
                        StoredMembership::new(Some(entry.log_id), membership.clone()),
                    );
                    membership_changed = true;
                    Applied::Done
                }
                openraft::EntryPayload::Blank => Applied::Done,
            };
            self.applied = Some(entry.log_id);
            if let Some(responder) = responder {
                replies.push((responder, reply));
            }
        }
        if let Some(applied) = self.applied {
            // Committed: consumers may read it (once it is fsynced here).
            self.log.set_commit_next(applied.index + 1);
        }
        // Writers hear only now, so what they were told is committed is readable.
        for (responder, reply) in replies {
            responder.send(reply);
        }
        if membership_changed {
            self.save_membership()?;
        }
        self.checkpoint(membership_changed)
    }

    /// A partition's snapshot sits where its log may be forgotten and is deferred until that
    /// moves; any other group's is taken where it has applied.
    async fn try_create_snapshot_builder(&mut self, force: bool) -> Option<Self::SnapshotBuilder> {
        if self.application.stateless() {
            if let Some(builder) = self.builder_at_forget_point() {
                return Some(builder);
            }
            if !force {
                return None;
            }
        }
        Some(self.builder_at(self.applied, self.membership().clone()))
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.builder_at(self.applied, self.membership().clone())
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Bytes,
    ) -> Result<(), io::Error> {
        let body: SnapshotBody = serde_json::from_slice(&snapshot)
            .map_err(|e| io::Error::other(format!("snapshot does not decode: {e}")))?;
        let Some(last) = meta.last_log_id else {
            return Err(io::Error::other(
                "a snapshot of nothing cannot be installed",
            ));
        };
        let held = {
            let log = self.log.clone();
            blocking(move || log.term_of(last.index)).map_err(io_error)?
        };
        if held == Some(last.leader_id.term) {
            // The log holds the snapshot's last entry (so, by log matching, all before it),
            // and openraft keeps what follows it: the log stays (durable first), Raft forgets
            // up to there.
            self.log.flush().await.map_err(io_error)?;
            self.log
                .purge_upto(from_log_id(&last))
                .await
                .map_err(io_error)?;
            self.log.set_commit_next(last.index + 1);
        } else {
            self.log
                .reset_to(ResetTo {
                    last: from_log_id(&last),
                    next_offset: body.next_offset,
                    producers: body.producers.clone(),
                    epochs: body.epochs.clone(),
                })
                .await
                .map_err(io_error)?;
        }
        self.application
            .restore(&body.application)
            .map_err(io::Error::other)?;
        if let Some(archived) = body.archived {
            self.log.note_archived(archived);
        }
        self.applied = Some(last);
        self.memberships = vec![meta.last_membership.clone()];
        let file = SnapshotFile {
            last: Some(from_log_id(&last)),
            membership: membership_file(self.membership()),
            body,
        };
        let bytes = serde_json::to_vec(&file).expect("snapshots serialise");
        {
            let mut current = self.snapshot_last.lock().unwrap_or_else(|p| p.into_inner());
            write_snapshot_file(self.storage.as_ref(), &self.dir, &bytes)?;
            *current = Some(last);
        }
        self.save_membership()?;
        tracing::info!(dir = %self.dir.display(), last = %last, "installed a snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        match self.load_snapshot()? {
            Some(file) => file.snapshot().map(Some).map_err(io::Error::other),
            None => Ok(None),
        }
    }
}
