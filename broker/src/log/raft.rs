//! A partition log that is also a Raft log: one Raft entry per record batch.
//!
//! A replicated partition keeps no second copy of its data for Raft: its segment files *are*
//! the Raft log. Each entry is one v2 batch in the segment, in Raft index order:
//!
//! - a normal entry is a client's batch, with the base offset it got and the Raft term written
//!   into its partition leader epoch (so Kafka's leader epoch *is* the Raft term: one leader
//!   per term, one epoch per leadership);
//! - an entry Raft makes itself (a new leader's blank entry, a membership change) is a control
//!   batch of one record ([`CONTROL_BLANK`], [`CONTROL_MEMBERSHIP`]), which clients skip like
//!   transaction markers; it takes one offset.
//!
//! The Raft index is not in the batch (there is no room outside the CRC), so each segment
//! names the index of its first batch in a small file beside it, and indexes within a segment
//! are counted batch by batch from sparse checkpoints kept in memory ([`RaftSpan`]).
//!
//! # Files in a replicated partition's directory
//!
//! ```text
//! <base>.raft               22 bytes: "SILTRAFT", u16 version, u64 Raft index of the
//!                           segment's first batch, u32 CRC-32C of the 18 bytes before it
//! raft_state                {"format":1,"purged":[index,term]|null,"applied":[index,term]|null}
//! raft_vote                 the vote, written by the Raft log store (see crate::raft)
//! leader-epoch-checkpoint   Kafka's text format: "0", the count, then "<epoch> <start offset>"
//!                           per line
//! ```
//!
//! Writes happen on the partition's writer ([`super::appender`]); entries handed to it are
//! kept in memory ([`RaftShared::pending`]) until they are in the file, so a reader always
//! finds an appended entry.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::LogError;
use super::appender::Appended;
use super::storage::{Storage, read_all, write_atomic};

/// Control type of a Raft entry with no data (a new leader's first entry).
pub const CONTROL_BLANK: i16 = 0x5301;
/// Control type of a Raft membership entry; its value is the membership's encoding.
pub const CONTROL_MEMBERSHIP: i16 = 0x5302;
/// Control type of a replicated DeleteRecords: a normal entry (the leader proposes it like
/// data), applied by every replica at commit; its value is the new start offset (i64, big
/// endian).
pub const CONTROL_DELETE_RECORDS: i16 = 0x5303;

/// Control type of the archive pointer: after writing a manifest root, the leader proposes
/// "archived up to offset X, root version V" as a normal entry; every replica applies it at
/// commit, so its local retention knows what the bucket holds without reading the bucket.
/// Its value is X (i64) then V (u64), big endian.
pub const CONTROL_ARCHIVED: i16 = 0x5304;

/// True for the control entries that are proposed as data (and read back as data): every
/// control batch but Raft's own (a new leader's blank entry, a membership), so DeleteRecords,
/// the archive pointer and transaction markers (COMMIT 1, ABORT 0).
pub fn is_proposed_control(control_type: i16) -> bool {
    !matches!(control_type, CONTROL_BLANK | CONTROL_MEMBERSHIP)
}

/// (archived next offset, root version), if `batch` is an archive pointer entry.
pub fn archived_of(batch: &[u8]) -> Option<(i64, u64)> {
    let header = silt_index::batch::BatchHeader::parse(batch, u32::MAX).ok()??;
    if !header.is_control() {
        return None;
    }
    match silt_index::record::decode_control_batch(batch).ok()? {
        (CONTROL_ARCHIVED, value) if value.len() == 16 => Some((
            i64::from_be_bytes(value[..8].try_into().ok()?),
            u64::from_be_bytes(value[8..].try_into().ok()?),
        )),
        _ => None,
    }
}

/// An archive pointer entry: the archive holds every offset below `next`, in root `version`.
pub fn archived_entry(next: i64, version: u64, now_ms: i64) -> Bytes {
    let mut value = [0u8; 16];
    value[..8].copy_from_slice(&next.to_be_bytes());
    value[8..].copy_from_slice(&version.to_be_bytes());
    Bytes::from(silt_index::record::encode_control_batch(
        0,
        0,
        now_ms,
        CONTROL_ARCHIVED,
        &value,
    ))
}

/// The new start offset, if `batch` is a replicated DeleteRecords entry.
pub fn delete_records_of(batch: &[u8]) -> Option<i64> {
    let header = silt_index::batch::BatchHeader::parse(batch, u32::MAX).ok()??;
    if !header.is_control() {
        return None;
    }
    match silt_index::record::decode_control_batch(batch).ok()? {
        (CONTROL_DELETE_RECORDS, value) => {
            Some(i64::from_be_bytes(value.as_ref().try_into().ok()?))
        }
        _ => None,
    }
}

/// A replicated DeleteRecords entry moving the start of the records to `offset`.
pub fn delete_records_entry(offset: i64, now_ms: i64) -> Bytes {
    Bytes::from(silt_index::record::encode_control_batch(
        0,
        0,
        now_ms,
        CONTROL_DELETE_RECORDS,
        &offset.to_be_bytes(),
    ))
}

/// Extension of a segment's Raft file.
pub(crate) const RAFT_EXTENSION: &str = "raft";
/// Name of the file with the purged and applied Raft log ids.
pub(crate) const RAFT_STATE: &str = "raft_state";
/// Name of the leader epoch checkpoint (as Kafka names it).
pub(crate) const EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";
/// Name of the file with the last applied membership (written by the Raft state machine).
pub const RAFT_MEMBERSHIP: &str = "raft_membership";
/// Name of the file with the last Raft snapshot (written by the Raft state machine).
pub const RAFT_SNAPSHOT: &str = "raft_snapshot";

const RAFT_FILE_MAGIC: &[u8; 8] = b"SILTRAFT";
const RAFT_FILE_VERSION: u16 = 1;
const RAFT_FILE_BYTES: usize = 22;
const _: () = assert!(RAFT_FILE_BYTES == 8 + 2 + 8 + 4);

/// Bytes of log between two checkpoints of a segment's Raft span.
pub(crate) const CHECKPOINT_INTERVAL_BYTES: u64 = 64 * 1024;
/// Entries whose offsets are remembered after they are written (for the high watermark).
const RECENT_MAX: usize = 8192;

/// A Raft log id: (index, term).
pub type RaftLogId = (u64, u64);

/// The name of a segment's Raft file.
pub(crate) fn raft_file_name(base_offset: i64) -> String {
    format!("{base_offset:020}.{RAFT_EXTENSION}")
}

/// Parses a segment's Raft file name into its base offset.
pub(crate) fn parse_raft_file_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".raft")?;
    (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit())).then(|| stem.parse().ok())?
}

/// Writes (durably) the Raft index of the first batch of the segment at `base_offset`.
pub(crate) fn write_raft_file(
    storage: &dyn Storage,
    dir: &Path,
    base_offset: i64,
    base_index: u64,
) -> Result<(), LogError> {
    let mut bytes = Vec::with_capacity(RAFT_FILE_BYTES);
    bytes.extend_from_slice(RAFT_FILE_MAGIC);
    bytes.extend_from_slice(&RAFT_FILE_VERSION.to_be_bytes());
    bytes.extend_from_slice(&base_index.to_be_bytes());
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_be_bytes());
    assert_eq!(bytes.len(), RAFT_FILE_BYTES, "raft file size");
    let path = dir.join(raft_file_name(base_offset));
    write_atomic(storage, &path, &bytes).map_err(|e| LogError::io("write", path, e))
}

/// Reads a segment's Raft file: the index of its first batch.
///
/// # Errors
///
/// I/O errors, or [`LogError::Corrupt`] for a file that is not one.
pub(crate) fn read_raft_file(storage: &dyn Storage, path: &Path) -> Result<u64, LogError> {
    let bytes = storage
        .open(path, false)
        .and_then(|f| read_all(f.as_ref()))
        .map_err(|e| LogError::io("read", path.to_path_buf(), e))?;
    let corrupt = |reason: &str| LogError::corrupt(path.to_path_buf(), 0, reason.to_string());
    if bytes.len() != RAFT_FILE_BYTES || &bytes[..8] != RAFT_FILE_MAGIC {
        return Err(corrupt("not a silt Raft segment file"));
    }
    let version = u16::from_be_bytes([bytes[8], bytes[9]]);
    if version != RAFT_FILE_VERSION {
        return Err(corrupt("unknown Raft segment file version"));
    }
    let crc = u32::from_be_bytes(bytes[18..22].try_into().expect("4 bytes"));
    if crc != crc32c::crc32c(&bytes[..18]) {
        return Err(corrupt("Raft segment file fails its CRC"));
    }
    Ok(u64::from_be_bytes(
        bytes[10..18].try_into().expect("8 bytes"),
    ))
}

/// The purged and applied Raft log ids of a partition, as kept in [`RAFT_STATE`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftState {
    /// Format version.
    #[serde(default)]
    pub format: u32,
    /// Every entry up to this one is gone from the log (a snapshot covers it).
    pub purged: Option<RaftLogId>,
    /// The state machine had applied up to this entry (a lower bound; never ahead of what
    /// this node has fsynced).
    pub applied: Option<RaftLogId>,
    /// Committed up to this entry, for groups that keep it (the controller's).
    #[serde(default)]
    pub committed: Option<RaftLogId>,
}

impl RaftState {
    pub(crate) fn read(storage: &dyn Storage, dir: &Path) -> Result<RaftState, LogError> {
        let path = dir.join(RAFT_STATE);
        if !storage.exists(&path) {
            return Ok(RaftState::default());
        }
        let bytes = storage
            .open(&path, false)
            .and_then(|f| read_all(f.as_ref()))
            .map_err(|e| LogError::io("read", path.clone(), e))?;
        serde_json::from_slice(&bytes).map_err(|e| LogError::corrupt(path, 0, e.to_string()))
    }

    pub(crate) fn write(&self, storage: &dyn Storage, dir: &Path) -> Result<(), LogError> {
        let path = dir.join(RAFT_STATE);
        let state = RaftState { format: 1, ..*self };
        let bytes = serde_json::to_vec(&state).expect("raft state serialises");
        write_atomic(storage, &path, &bytes).map_err(|e| LogError::io("write", path, e))
    }
}

/// Where each leader epoch starts in the log (Kafka's `LeaderEpochFileCache`), sans-io.
///
/// Epochs increase along the log; each entry is (epoch, offset of its first batch).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochCache {
    entries: Vec<(i32, i64)>,
}

impl EpochCache {
    /// A cache of these (epoch, start offset) entries, epochs and offsets increasing.
    ///
    /// # Panics
    ///
    /// If they do not increase.
    pub fn from_entries(entries: Vec<(i32, i64)>) -> EpochCache {
        for pair in entries.windows(2) {
            assert!(pair[1].0 > pair[0].0, "epochs must increase: {entries:?}");
            assert!(
                pair[1].1 >= pair[0].1,
                "offsets must not decrease: {entries:?}"
            );
        }
        EpochCache { entries }
    }

    /// A cache of these entries, or `None` unless epochs increase and offsets do not
    /// decrease (entries from outside, such as an archive's).
    pub fn checked(entries: Vec<(i32, i64)>) -> Option<EpochCache> {
        entries
            .windows(2)
            .all(|pair| pair[1].0 > pair[0].0 && pair[1].1 >= pair[0].1)
            .then_some(EpochCache { entries })
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    /// Notes that a batch of `epoch` starts at `offset`; true when that starts a new epoch.
    ///
    /// # Panics
    ///
    /// If `epoch` is older than the latest one: a Raft log's terms never decrease.
    pub fn assign(&mut self, epoch: i32, offset: i64) -> bool {
        if let Some(&(latest, start)) = self.entries.last() {
            assert!(
                epoch >= latest,
                "epoch regressed: {epoch} after {latest} (at offset {offset})"
            );
            if epoch == latest {
                return false;
            }
            assert!(offset >= start, "epoch {epoch} starts before {latest}");
        }
        self.entries.push((epoch, offset));
        true
    }

    /// The latest epoch and where it starts.
    pub fn latest(&self) -> Option<(i32, i64)> {
        self.entries.last().copied()
    }

    /// Forgets epochs that start at or after `end` (the log was truncated to end there).
    pub fn truncate_from_end(&mut self, end: i64) {
        self.entries.retain(|&(_, start)| start < end);
    }

    /// The epochs of a log that ends at `end`.
    pub fn until(&self, end: i64) -> EpochCache {
        let mut copy = self.clone();
        copy.truncate_from_end(end);
        copy
    }

    /// OffsetForLeaderEpoch, as Kafka answers it: for the latest epoch, `log_end`; for an
    /// older one, the start of the next epoch after it (with the largest epoch at or below
    /// the one asked for, or the one asked for if it is older than every epoch known); `None`
    /// (UNDEFINED_EPOCH) for an epoch newer than every one known.
    pub fn end_offset_for(&self, requested: i32, log_end: i64) -> Option<(i32, i64)> {
        if requested < 0 {
            return None;
        }
        let (latest, _) = self.latest()?;
        if requested == latest {
            return Some((latest, log_end));
        }
        let higher = self.entries.iter().find(|(epoch, _)| *epoch > requested)?;
        match self
            .entries
            .iter()
            .rev()
            .find(|(epoch, _)| *epoch <= requested)
        {
            Some(&(floor, _)) => Some((floor, higher.1)),
            None => Some((requested, higher.1)),
        }
    }

    /// Kafka's `leader-epoch-checkpoint` text.
    pub fn encode(&self) -> String {
        let mut out = format!("0\n{}\n", self.entries.len());
        for (epoch, offset) in &self.entries {
            out.push_str(&format!("{epoch} {offset}\n"));
        }
        out
    }

    /// Parses [`Self::encode`]'s text.
    ///
    /// # Errors
    ///
    /// A description of what does not parse.
    pub fn decode(text: &str) -> Result<EpochCache, String> {
        let mut lines = text.lines();
        if lines.next() != Some("0") {
            return Err("unknown leader-epoch-checkpoint version".into());
        }
        let count: usize = lines
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or("no entry count")?;
        let mut entries = Vec::with_capacity(count.min(1 << 16));
        for line in lines.take(count) {
            let (epoch, offset) = line
                .split_once(' ')
                .ok_or("an entry is not 'epoch offset'")?;
            let epoch = epoch.parse().map_err(|_| "bad epoch")?;
            let offset = offset.trim().parse().map_err(|_| "bad offset")?;
            entries.push((epoch, offset));
        }
        if entries.len() != count {
            return Err(format!(
                "{count} entries announced, {} found",
                entries.len()
            ));
        }
        for pair in entries.windows(2) {
            if pair[1].0 <= pair[0].0 || pair[1].1 < pair[0].1 {
                return Err("entries out of order".into());
            }
        }
        Ok(EpochCache { entries })
    }

    pub(crate) fn read(storage: &dyn Storage, dir: &Path) -> Option<EpochCache> {
        let path = dir.join(EPOCH_CHECKPOINT);
        let bytes = storage
            .open(&path, false)
            .and_then(|f| read_all(f.as_ref()))
            .ok()?;
        match EpochCache::decode(&String::from_utf8_lossy(&bytes)) {
            Ok(cache) => Some(cache),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = e, "unreadable leader epoch checkpoint; rebuilding it from the log");
                None
            }
        }
    }

    pub(crate) fn write(&self, storage: &dyn Storage, dir: &Path) -> Result<(), LogError> {
        let path = dir.join(EPOCH_CHECKPOINT);
        write_atomic(storage, &path, self.encode().as_bytes())
            .map_err(|e| LogError::io("write", path, e))
    }
}

/// Where a segment's Raft entries are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RaftSpan {
    /// Raft index of the segment's first batch.
    pub base_index: u64,
    /// (index, file position) of some batches, in order; the first is (base_index, 0). Walking
    /// batch headers from the nearest one finds any entry.
    pub checkpoints: Vec<(u64, u64)>,
    /// Batches known to be in the segment; `None` until counted (a segment found at start-up
    /// that nothing has read yet).
    pub count: Option<u64>,
}

impl RaftSpan {
    /// The span of an empty segment whose first entry will be `base_index`.
    pub(crate) fn empty(base_index: u64) -> RaftSpan {
        RaftSpan {
            base_index,
            checkpoints: vec![(base_index, 0)],
            count: Some(0),
        }
    }

    /// A segment found on disk whose batches are not counted yet.
    pub(crate) fn uncounted(base_index: u64) -> RaftSpan {
        RaftSpan {
            count: None,
            ..RaftSpan::empty(base_index)
        }
    }

    /// Notes a batch written at `position` as entry `index`.
    pub(crate) fn on_entry(&mut self, index: u64, position: u64) {
        let count = self.count.expect("a segment appended to is counted");
        assert_eq!(
            index,
            self.base_index + count,
            "entry {index} out of order in a segment starting at {}",
            self.base_index
        );
        let &(_, last) = self.checkpoints.last().expect("the base checkpoint");
        if position >= last + CHECKPOINT_INTERVAL_BYTES {
            self.checkpoints.push((index, position));
        }
        self.count = Some(count + 1);
    }

    /// The nearest checkpoint at or before `index`.
    pub(crate) fn checkpoint_before(&self, index: u64) -> (u64, u64) {
        let at = self.checkpoints.partition_point(|&(i, _)| i <= index);
        self.checkpoints[at.saturating_sub(1)]
    }

    /// Offset-free bound: the index after the last counted entry.
    pub(crate) fn next_index(&self) -> Option<u64> {
        self.count.map(|c| self.base_index + c)
    }
}

/// What an entry holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryBody {
    /// A client's record batch (as the leader accepted it; the base offset and epoch are
    /// written when it is appended).
    Batch(Bytes),
    /// A marker of Raft's own: a control batch of this type with this value.
    Control {
        /// [`CONTROL_BLANK`] or [`CONTROL_MEMBERSHIP`].
        control_type: i16,
        /// Its value.
        value: Bytes,
    },
}

/// An entry to append.
#[derive(Debug)]
pub struct EntryWrite {
    /// Raft index.
    pub index: u64,
    /// Raft term (becomes the batch's partition leader epoch).
    pub term: u64,
    /// What it holds.
    pub body: EntryBody,
    /// Told the offsets once the batch is written, before it is fsynced (acks=1).
    pub written: Option<oneshot::Sender<Appended>>,
}

/// An entry read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRead {
    /// Raft index.
    pub index: u64,
    /// Raft term.
    pub term: u64,
    /// What it holds; a batch as stored (with its offsets and epoch).
    pub body: EntryBody,
}

/// What a replicated log is reset to when a snapshot is installed.
#[derive(Debug, Clone)]
pub struct ResetTo {
    /// The last entry the snapshot covers: the log starts right after it.
    pub last: RaftLogId,
    /// Offset of the first record after it.
    pub next_offset: i64,
    /// Idempotent producers as of that offset.
    pub producers: super::producer_state::ProducerStateTable,
    /// Leader epochs up to that offset.
    pub epochs: EpochCache,
}

/// Called once appended entries are fsynced (or failed to be).
pub type Flushed = Box<dyn FnOnce(Result<(), LogError>) + Send>;

/// The Raft side of a replicated log, shared by the handle, its readers and its writer.
///
/// The three progress counters are "next" indexes: the index after the last entry that is in
/// the file, fsynced, and known committed (0: none yet; Raft's first index is 0).
#[derive(Debug)]
pub(crate) struct RaftShared {
    /// Entries handed to the writer and not yet in the file, by index.
    pub pending: Mutex<BTreeMap<u64, (u64, EntryBody)>>,
    /// The log's last entry, as appended (written or pending) and truncated.
    pub last: Mutex<Option<RaftLogId>>,
    /// Purged and applied ids, as persisted.
    pub state: Mutex<RaftState>,
    /// Held while [`RAFT_STATE`] is rewritten, so writers from different threads neither
    /// share its temporary file nor put an older state over a newer one.
    state_file: Mutex<()>,
    /// Leader epochs (kept by the writer).
    pub epochs: Mutex<EpochCache>,
    /// (index, offset after it) of entries written lately, oldest first.
    pub recent: Mutex<VecDeque<(u64, i64)>>,
    /// Index after the last entry in the file.
    pub written_next: AtomicU64,
    /// Index after the last entry fsynced.
    pub flushed_next: AtomicU64,
    /// Index after the last entry known committed.
    pub commit_next: AtomicU64,
}

impl RaftShared {
    pub(crate) fn new(last: Option<RaftLogId>, state: RaftState, epochs: EpochCache) -> RaftShared {
        let next = last.map_or(0, |(i, _)| i + 1);
        let committed = state.applied.map_or(0, |(i, _)| i + 1).min(next);
        RaftShared {
            pending: Mutex::new(BTreeMap::new()),
            last: Mutex::new(last),
            state: Mutex::new(state),
            state_file: Mutex::new(()),
            epochs: Mutex::new(epochs),
            recent: Mutex::new(VecDeque::new()),
            written_next: AtomicU64::new(next),
            flushed_next: AtomicU64::new(next),
            commit_next: AtomicU64::new(committed),
        }
    }

    pub(crate) fn remember(&self, index: u64, next_offset: i64) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == RECENT_MAX {
            recent.pop_front();
        }
        recent.push_back((index, next_offset));
    }

    /// The offset after entry `index`, if it was written lately.
    pub(crate) fn recent_next_offset(&self, index: u64) -> Option<i64> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let first = recent.front()?.0;
        let at = index.checked_sub(first)?;
        recent
            .get(usize::try_from(at).ok()?)
            .filter(|(i, _)| *i == index)
            .map(|(_, next)| *next)
    }

    pub(crate) fn forget_recent_from(&self, index: u64) {
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(i, _)| *i < index);
    }

    pub(crate) fn load(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Acquire)
    }

    pub(crate) fn last(&self) -> Option<RaftLogId> {
        *self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn raft_state(&self) -> RaftState {
        *self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the state with `change` and persists it, if `change` says it changed. Blocking.
    pub(crate) fn update_state(
        &self,
        storage: &dyn Storage,
        dir: &Path,
        change: impl FnOnce(&mut RaftState) -> bool,
    ) -> Result<(), LogError> {
        let _file = self.state_file.lock().unwrap_or_else(|p| p.into_inner());
        let state = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if !change(&mut state) {
                return Ok(());
            }
            *state
        };
        state.write(storage, dir)
    }
}

impl super::PartitionLog {
    fn raft_shared(&self) -> &RaftShared {
        self.shared
            .raft
            .as_ref()
            .expect("a replicated log (opened with open_replicated)")
    }

    /// True for a log opened with [`super::PartitionLog::open_replicated`].
    pub fn is_replicated(&self) -> bool {
        self.shared.raft.is_some()
    }

    /// The last Raft entry (appended: maybe not written yet), or the last purged one for a
    /// log that holds none.
    pub fn raft_last(&self) -> Option<RaftLogId> {
        self.raft_shared().last()
    }

    /// The index of the first entry the log holds (where a read can start).
    pub fn raft_first_index(&self) -> u64 {
        let raft = self.raft_shared();
        let on_disk = self
            .shared
            .all_segments()
            .first()
            .and_then(|s| s.raft().as_ref().map(|span| span.base_index));
        let pending = raft
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .next()
            .copied();
        let purged_next = raft.raft_state().purged.map_or(0, |(i, _)| i + 1);
        on_disk
            .into_iter()
            .chain(pending)
            .min()
            .unwrap_or(0)
            .max(purged_next)
    }

    /// The purged and applied log ids as persisted.
    pub fn raft_state(&self) -> RaftState {
        self.raft_shared().raft_state()
    }

    /// Hands Raft entries to the writer. They are readable when this returns; `flushed` is
    /// called once they are fsynced (or could not be).
    ///
    /// # Errors
    ///
    /// [`LogError::Closed`]: the writer stopped.
    ///
    /// # Panics
    ///
    /// If the entries do not continue the log (Raft never leaves a hole).
    pub async fn append_entries(
        &self,
        entries: Vec<EntryWrite>,
        flushed: Flushed,
    ) -> Result<(), LogError> {
        if entries.is_empty() {
            flushed(Ok(()));
            return Ok(());
        }
        {
            let raft = self.raft_shared();
            let mut pending = raft.pending.lock().unwrap_or_else(|p| p.into_inner());
            let mut last = raft.last.lock().unwrap_or_else(|p| p.into_inner());
            for entry in &entries {
                // An empty log (nothing in it, nothing purged) starts wherever its first
                // entry says; after that, no holes.
                if let Some((previous, _)) = *last {
                    assert_eq!(
                        entry.index,
                        previous + 1,
                        "Raft entry {} does not follow {previous}",
                        entry.index
                    );
                }
                pending.insert(entry.index, (entry.term, entry.body.clone()));
                *last = Some((entry.index, entry.term));
            }
        }
        self.commands
            .send(super::appender::Command::AppendEntries(
                super::appender::EntriesRequest { entries, flushed },
            ))
            .await
            .map_err(|_| LogError::Closed)
    }

    /// Reads Raft entries `[start, end)` as stored, at most about `bytes_max` bytes of them
    /// (at least one). Blocking: it reads segment files.
    ///
    /// # Errors
    ///
    /// I/O errors; [`LogError::Corrupt`] for a batch that is not an entry.
    pub fn read_entries(
        &self,
        start: u64,
        end: u64,
        bytes_max: u64,
    ) -> Result<Vec<EntryRead>, LogError> {
        let raft = self.raft_shared();
        let mut out = Vec::new();
        let mut bytes = 0u64;
        // Nothing is held before the first entry: a read from before it starts there.
        let mut index = start.max(self.raft_first_index());
        while index < end {
            let pending = raft
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&index)
                .cloned();
            let entry = match pending {
                Some((term, body)) => EntryRead { index, term, body },
                None => match self.read_entry_run(index, end, bytes_max.saturating_sub(bytes))? {
                    run if !run.is_empty() => {
                        for entry in run {
                            bytes += entry_bytes(&entry.body);
                            index = entry.index + 1;
                            out.push(entry);
                        }
                        if bytes >= bytes_max {
                            break;
                        }
                        continue;
                    }
                    _ => break,
                },
            };
            bytes += entry_bytes(&entry.body);
            out.push(entry);
            index += 1;
            if bytes >= bytes_max {
                break;
            }
        }
        Ok(out)
    }

    /// Entries from `start` read from the file, in one segment, until `end`, a pending entry,
    /// or about `bytes_max` bytes (at least one entry).
    fn read_entry_run(
        &self,
        start: u64,
        end: u64,
        bytes_max: u64,
    ) -> Result<Vec<EntryRead>, LogError> {
        let raft = self.raft_shared();
        let written = RaftShared::load(&raft.written_next);
        let Some((segment, mut position, mut header)) = self.shared.locate_index(start)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut bytes = 0u64;
        let mut index = start;
        let committed = segment.committed();
        loop {
            let raw = segment.read_bytes(position, u64::from(header.size()))?;
            let path = segment.path(silt_index::segment::SegmentFile::Log);
            let body = if header.is_control() {
                let (control_type, value) = silt_index::record::decode_control_batch(&raw)
                    .map_err(|e| LogError::corrupt(path.clone(), position, e.to_string()))?;
                if is_proposed_control(control_type) {
                    // Proposed as data: read back as data.
                    EntryBody::Batch(Bytes::from(raw))
                } else {
                    EntryBody::Control {
                        control_type,
                        value,
                    }
                }
            } else {
                EntryBody::Batch(Bytes::from(raw))
            };
            let term = u64::try_from(header.partition_leader_epoch).map_err(|_| {
                LogError::corrupt(path, position, "negative leader epoch in a Raft log".into())
            })?;
            bytes += u64::from(header.size());
            out.push(EntryRead { index, term, body });
            index += 1;
            position += u64::from(header.size());
            if index >= end || index >= written || bytes >= bytes_max || position >= committed {
                return Ok(out);
            }
            let pending = raft.pending.lock().unwrap_or_else(|p| p.into_inner());
            if pending.contains_key(&index) {
                return Ok(out);
            }
            drop(pending);
            header = segment.read_header(position)?;
        }
    }

    /// Drops every entry after `after` (`None`: all), in memory at once and in the file on
    /// the writer. Returns when the file is truncated.
    ///
    /// # Errors
    ///
    /// I/O errors (the partition then stops), [`LogError::Closed`].
    pub async fn truncate_after(&self, after: Option<RaftLogId>) -> Result<(), LogError> {
        {
            let raft = self.raft_shared();
            let first_dropped = after.map_or(0, |(i, _)| i + 1);
            raft.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|i, _| *i < first_dropped);
            let purged = raft.raft_state().purged;
            let mut last = raft.last.lock().unwrap_or_else(|p| p.into_inner());
            // Truncating after the end changes nothing.
            if last.is_some_and(|(l, _)| l >= first_dropped) {
                *last = after.or(purged);
            }
        }
        self.ask(|reply| super::appender::Command::Truncate {
            after: after.map(|(i, _)| i),
            reply,
        })
        .await
    }

    /// Drops whole segments whose entries are all purged and that end at or before
    /// `keep_from` (retention, once Raft has forgotten them). Returns how many went.
    ///
    /// # Errors
    ///
    /// I/O errors, [`LogError::Closed`].
    pub async fn drop_purged(&self, keep_from: i64) -> Result<usize, LogError> {
        self.ask(|reply| super::appender::Command::DropPurged { keep_from, reply })
            .await
    }

    /// The term of entry `index`, if the log holds it (appended, maybe not written yet).
    /// Blocking.
    ///
    /// # Errors
    ///
    /// I/O errors reading its batch header.
    pub fn term_of(&self, index: u64) -> Result<Option<u64>, LogError> {
        let pending = self
            .raft_shared()
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&index)
            .map(|(term, _)| *term);
        if pending.is_some() {
            return Ok(pending);
        }
        Ok(self
            .shared
            .locate_index(index)?
            .map(|(_, _, header)| u64::try_from(header.partition_leader_epoch).unwrap_or(0)))
    }

    /// The last entry whose records all lie below `offset`: its log id and the offset after
    /// it (`None` if the file holds none). Blocking.
    ///
    /// # Errors
    ///
    /// I/O errors reading batch headers.
    pub fn entry_ending_by(&self, offset: i64) -> Result<Option<(RaftLogId, i64)>, LogError> {
        super::raft_writer::entry_ending_by(&self.shared.all_segments(), offset)
    }

    /// Purges entries up to `upto`: Raft reads nothing at or before it again (the segments
    /// stay until [`PartitionLog::drop_purged`]).
    ///
    /// # Errors
    ///
    /// I/O errors, [`LogError::Closed`].
    pub async fn purge_upto(&self, upto: RaftLogId) -> Result<(), LogError> {
        {
            let raft = self.raft_shared();
            raft.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|i, _| *i > upto.0);
            let mut last = raft.last.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_none_or(|(i, _)| i < upto.0) {
                // Purged past its end: the log is empty and continues after `upto`.
                *last = Some(upto);
            }
        }
        self.ask(|reply| super::appender::Command::Purge { upto, reply })
            .await
    }

    /// Replaces the log with an empty one after an installed snapshot.
    ///
    /// # Errors
    ///
    /// I/O errors, [`LogError::Closed`].
    pub async fn reset_to(&self, to: ResetTo) -> Result<(), LogError> {
        self.ask(|reply| super::appender::Command::Reset {
            to: Box::new(to),
            reply,
        })
        .await
    }

    /// Raft says entries before index `next` are committed: the high watermark may move
    /// (up to what this node has fsynced). Reads a batch header if the entry is not recent.
    pub fn set_commit_next(&self, next: u64) {
        let raft = self.raft_shared();
        raft.commit_next.fetch_max(next, Ordering::AcqRel);
        self.shared.refresh_high_watermark();
    }

    /// The offset after Raft entry `index`, if the file holds it. Blocking.
    ///
    /// # Errors
    ///
    /// I/O errors reading batch headers.
    pub fn locate_next_offset(&self, index: u64) -> Result<Option<i64>, LogError> {
        self.shared.next_offset_after(index)
    }

    /// The index after the last entry fsynced here.
    pub fn flushed_next_index(&self) -> u64 {
        RaftShared::load(&self.raft_shared().flushed_next)
    }

    /// Records what the state machine applied (a restart starts from there). Blocking.
    ///
    /// # Errors
    ///
    /// The write failed.
    pub fn save_applied(&self, applied: RaftLogId) -> Result<(), LogError> {
        self.raft_shared()
            .update_state(self.shared.storage.as_ref(), &self.shared.dir, |state| {
                if state.applied.is_some_and(|a| a.0 >= applied.0) {
                    return false;
                }
                state.applied = Some(applied);
                true
            })
    }

    /// Records the commit point (blocking; only groups that need it at start-up call it).
    ///
    /// # Errors
    ///
    /// The write failed.
    pub fn save_committed(&self, committed: Option<RaftLogId>) -> Result<(), LogError> {
        self.raft_shared()
            .update_state(self.shared.storage.as_ref(), &self.shared.dir, |state| {
                if state.committed >= committed {
                    return false;
                }
                state.committed = committed;
                true
            })
    }

    /// The leader epochs of the log.
    pub fn epochs(&self) -> EpochCache {
        self.raft_shared()
            .epochs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// OffsetForLeaderEpoch on this replica (see [`EpochCache::end_offset_for`]).
    pub fn epoch_end_offset(&self, epoch: i32) -> Option<(i32, i64)> {
        let log_end = self.log_end_offset();
        self.raft_shared()
            .epochs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .end_offset_for(epoch, log_end)
    }

    /// The idempotent-producer table as of the log end (what the leader checks batches
    /// against, with the batches it has in flight).
    pub fn producers(
        &self,
    ) -> std::sync::MutexGuard<'_, super::producer_state::ProducerStateTable> {
        self.shared.producers()
    }

    /// The idempotent-producer table as of `offset` (at or below the log end): the newest
    /// snapshot before it, brought forward from the batch headers. Blocking.
    ///
    /// # Errors
    ///
    /// I/O errors reading the snapshots or segments.
    pub fn producers_at(
        &self,
        offset: i64,
    ) -> Result<super::producer_state::ProducerStateTable, LogError> {
        producers_at(&self.shared, offset)
    }

    /// What a snapshot after entry `index` holds: the offset after it, the producers and
    /// leader epochs there; `None` when the log no longer holds that entry (a snapshot
    /// installed meanwhile). Read on the writer, so no truncation, reset or segment deletion
    /// runs under it.
    ///
    /// # Errors
    ///
    /// I/O errors, [`LogError::Closed`].
    pub async fn snapshot_point(&self, index: u64) -> Result<Option<SnapshotPoint>, LogError> {
        self.ask(|reply| super::appender::Command::SnapshotPoint { index, reply })
            .await
    }
}

/// What a snapshot of a replicated log holds at its point (see
/// [`PartitionLog::snapshot_point`]).
#[derive(Debug, Clone)]
pub struct SnapshotPoint {
    /// Offset after the snapshot's last entry.
    pub next_offset: i64,
    /// Idempotent producers there.
    pub producers: super::producer_state::ProducerStateTable,
    /// Leader epochs up to there.
    pub epochs: EpochCache,
}

/// The producer table of a log as of `offset`, from its snapshots and batch headers.
pub(crate) fn producers_at(
    shared: &super::partition_log::LogShared,
    offset: i64,
) -> Result<super::producer_state::ProducerStateTable, LogError> {
    let storage = shared.storage.as_ref();
    let names = storage
        .list_dir(&shared.dir)
        .map_err(|e| LogError::io("list directory", shared.dir.clone(), e))?;
    let snapshots = names
        .iter()
        .filter_map(|n| {
            super::recovery::parse_snapshot_name(n)
                .filter(|&o| o <= offset)
                .map(|o| (o, shared.dir.join(n)))
        })
        .collect();
    let segments: Vec<_> = shared
        .all_segments()
        .into_iter()
        .filter(|s| s.base_offset() < offset)
        .collect();
    if segments.is_empty() {
        return Ok(shared.producers().clone());
    }
    super::recovery::recover_producers_until(
        storage,
        &segments,
        &snapshots,
        offset,
        shared.clock.now_ms(),
    )
}

fn entry_bytes(body: &EntryBody) -> u64 {
    match body {
        EntryBody::Batch(bytes) => bytes.len() as u64,
        EntryBody::Control { value, .. } => value.len() as u64 + 80,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn proposed_control_entries_are_told_apart() {
        let pointer = archived_entry(4242, 17, 1);
        assert_eq!(archived_of(&pointer), Some((4242, 17)));
        assert_eq!(delete_records_of(&pointer), None);
        let delete = delete_records_entry(99, 1);
        assert_eq!(delete_records_of(&delete), Some(99));
        assert_eq!(archived_of(&delete), None);
        assert!(is_proposed_control(CONTROL_ARCHIVED));
        assert!(is_proposed_control(CONTROL_DELETE_RECORDS));
        assert!(
            is_proposed_control(0) && is_proposed_control(1),
            "transaction markers"
        );
        assert!(!is_proposed_control(CONTROL_BLANK));
        assert!(!is_proposed_control(CONTROL_MEMBERSHIP));
    }

    #[test]
    fn raft_files_round_trip_and_refuse_damage() {
        let storage = super::super::sim::SimStorage::new(1);
        let dir = Path::new("/d");
        storage.create_dir_all(dir).unwrap();
        write_raft_file(&storage, dir, 4200, 77).unwrap();
        let path = dir.join(raft_file_name(4200));
        assert_eq!(read_raft_file(&storage, &path).unwrap(), 77);
        assert_eq!(
            parse_raft_file_name("00000000000000004200.raft"),
            Some(4200)
        );
        assert_eq!(parse_raft_file_name("4200.raft"), None);
        let mut bytes = storage.contents(&path).unwrap();
        bytes[12] ^= 1;
        write_atomic(&storage, &path, &bytes).unwrap();
        assert!(read_raft_file(&storage, &path).is_err());
    }

    #[test]
    fn epoch_cache_answers_as_kafka_does() {
        let cache = EpochCache::from_entries(vec![(2, 10), (5, 40), (6, 90)]);
        // The latest epoch ends at the log end.
        assert_eq!(cache.end_offset_for(6, 120), Some((6, 120)));
        // An older epoch ends where the next one starts.
        assert_eq!(cache.end_offset_for(5, 120), Some((5, 90)));
        assert_eq!(cache.end_offset_for(2, 120), Some((2, 40)));
        // An epoch between two known ones: the floor epoch, ending at the next start.
        assert_eq!(cache.end_offset_for(3, 120), Some((2, 40)));
        // Older than every epoch: the one asked for, ending where the first starts.
        assert_eq!(cache.end_offset_for(1, 120), Some((1, 10)));
        // Newer than every epoch, or undefined: UNDEFINED_EPOCH.
        assert_eq!(cache.end_offset_for(7, 120), None);
        assert_eq!(cache.end_offset_for(-1, 120), None);
        assert_eq!(EpochCache::default().end_offset_for(0, 5), None);
    }

    #[test]
    fn epoch_cache_truncates_and_assigns() {
        let mut cache = EpochCache::default();
        assert!(cache.assign(1, 0));
        assert!(!cache.assign(1, 5));
        assert!(cache.assign(3, 9));
        assert_eq!(cache.until(9).entries(), &[(1, 0)]);
        cache.truncate_from_end(9);
        assert_eq!(cache.latest(), Some((1, 0)));
        assert!(cache.assign(4, 9));
        assert_eq!(cache.entries(), &[(1, 0), (4, 9)]);
    }

    #[test]
    #[should_panic(expected = "epoch regressed")]
    fn epoch_cache_refuses_an_older_epoch() {
        let mut cache = EpochCache::from_entries(vec![(3, 0)]);
        cache.assign(2, 10);
    }

    #[test]
    fn spans_find_the_nearest_checkpoint() {
        let mut span = RaftSpan::empty(100);
        for i in 0..1000u64 {
            span.on_entry(100 + i, i * 1000);
        }
        assert_eq!(span.next_index(), Some(1100));
        assert!(span.checkpoints.len() > 10);
        for index in [100, 101, 500, 1099] {
            let (at, position) = span.checkpoint_before(index);
            assert!(at <= index);
            assert_eq!(position, (at - 100) * 1000);
            assert!(index - at < 100, "checkpoints are dense enough");
        }
    }

    proptest! {
        #[test]
        fn epoch_checkpoints_round_trip(steps in proptest::collection::vec((1i32..5, 0i64..100), 0..30)) {
            let mut cache = EpochCache::default();
            let (mut epoch, mut offset) = (0, 0);
            for (de, doff) in steps {
                epoch += de;
                offset += doff;
                cache.assign(epoch, offset);
            }
            prop_assert_eq!(EpochCache::decode(&cache.encode()).unwrap(), cache);
        }

        #[test]
        fn epoch_checkpoint_decode_never_panics(text in ".{0,200}") {
            let _ = EpochCache::decode(&text);
        }
    }
}
