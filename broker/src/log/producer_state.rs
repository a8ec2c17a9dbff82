//! Idempotent-producer state of one partition: the sans-io core of exactly-once appends.
//!
//! For every producer id the table keeps its epoch and the last [`BATCHES_PER_PRODUCER_MAX`]
//! batches (sequence range and the offsets they got), which is what Kafka keeps: a producer has
//! at most five requests in flight, so a retried batch is always among them.
//!
//! The checks, in Kafka's order (`ProducerStateManager` / `ProducerAppendInfo`):
//!
//! 1. epoch older than the producer's: `InvalidProducerEpoch` (it was fenced);
//! 2. same epoch and a batch with the same first and last sequence is remembered: a duplicate,
//!    answered with the offsets it got the first time, nothing appended;
//! 3. newer epoch: the sequence must restart at 0;
//! 4. same epoch: the sequence must follow the last one (wrapping at `i32::MAX`);
//! 5. a producer the table does not know (its state expired or was never seen) may start at any
//!    sequence, as Kafka allows after retention removed its batches.
//!
//! Transactions (KIP-98): a producer's first transactional batch opens its transaction here,
//! at that batch's offset; the coordinator's marker (a control batch of the producer, COMMIT
//! or ABORT) closes it. The earliest open transaction is the partition's first unstable
//! offset: read_committed consumers read below it (the last stable offset). An aborted
//! transaction is remembered as its offset range, for read_committed fetches to list, until
//! retention removes it from the log.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use silt_index::batch::{BatchHeader, wrapping_sequence};

/// Batches remembered per producer (Kafka's `NUM_BATCHES_TO_RETAIN`).
pub const BATCHES_PER_PRODUCER_MAX: usize = 5;

/// A batch of a producer, as remembered for duplicate detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchMeta {
    /// First sequence.
    pub first_sequence: i32,
    /// Last sequence.
    pub last_sequence: i32,
    /// Offset the batch was given.
    pub base_offset: i64,
    /// Offset of its last record.
    pub last_offset: i64,
    /// Its max timestamp (LogAppendTime if stamped).
    pub timestamp: i64,
}

/// The state of one producer id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerEntry {
    /// Current epoch.
    pub epoch: i16,
    /// Last batches, oldest first.
    pub batches: VecDeque<BatchMeta>,
    /// Wall-clock time of the last append, for expiry.
    pub last_append_ms: i64,
    /// The first offset of the producer's open transaction in this partition, if one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn_first_offset: Option<i64>,
}

/// The control record that ends a transaction in a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnMarker {
    /// The transaction's records count.
    Commit,
    /// The transaction's records are skipped by read_committed consumers.
    Abort,
}

impl TxnMarker {
    /// The marker a control record of `control_type` is (Kafka's 0 = ABORT, 1 = COMMIT).
    pub fn of(control_type: i16) -> Option<TxnMarker> {
        match control_type {
            0 => Some(TxnMarker::Abort),
            1 => Some(TxnMarker::Commit),
            _ => None,
        }
    }

    /// Its control type.
    pub fn control_type(self) -> i16 {
        match self {
            TxnMarker::Abort => 0,
            TxnMarker::Commit => 1,
        }
    }
}

/// An aborted transaction of a partition: its producer and offsets, from its first record to
/// its ABORT marker (what a read_committed fetch lists, so the client skips its records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortedTxn {
    /// The producer.
    pub producer_id: i64,
    /// Its first record's offset.
    pub first_offset: i64,
    /// The ABORT marker's offset.
    pub last_offset: i64,
}

/// Result of checking a batch against the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Not idempotent, or the next batch in sequence: append it.
    Append,
    /// Already appended: answer with these offsets, append nothing.
    Duplicate(BatchMeta),
}

/// Why an idempotent batch is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    /// The producer's epoch is older than the one the partition has seen.
    #[error("producer {producer_id} epoch {epoch} is older than the current epoch {current}")]
    InvalidProducerEpoch {
        /// Producer id.
        producer_id: i64,
        /// Epoch in the batch.
        epoch: i16,
        /// Epoch the partition knows.
        current: i16,
    },
    /// The batch's first sequence does not follow the producer's last one.
    #[error("producer {producer_id}: sequence {first_sequence} does not follow {last_sequence}")]
    OutOfOrderSequence {
        /// Producer id.
        producer_id: i64,
        /// First sequence of the batch.
        first_sequence: i32,
        /// Last sequence appended (-1 for a new epoch).
        last_sequence: i32,
    },
}

/// The producer table of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "TableRecord", into = "TableRecord")]
pub struct ProducerStateTable {
    producers: HashMap<i64, ProducerEntry>,
    /// Aborted transactions still in the log, by marker offset.
    aborted: Vec<AbortedTxn>,
    /// (first offset, producer) of every open transaction: the first is the partition's
    /// first unstable offset, which every fetch asks for (kept beside the entries, never
    /// written: rebuilt from them when a table is read).
    open: std::collections::BTreeSet<(i64, i64)>,
}

/// A producer table as written (snapshots, Raft snapshots).
#[derive(Serialize, Deserialize)]
struct TableRecord {
    producers: HashMap<i64, ProducerEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    aborted: Vec<AbortedTxn>,
}

impl From<TableRecord> for ProducerStateTable {
    fn from(record: TableRecord) -> ProducerStateTable {
        let open = record
            .producers
            .iter()
            .filter_map(|(id, e)| e.txn_first_offset.map(|first| (first, *id)))
            .collect();
        ProducerStateTable {
            producers: record.producers,
            aborted: record.aborted,
            open,
        }
    }
}

impl From<ProducerStateTable> for TableRecord {
    fn from(table: ProducerStateTable) -> TableRecord {
        TableRecord {
            producers: table.producers,
            aborted: table.aborted,
        }
    }
}

impl ProducerStateTable {
    /// Base offsets of the batches the table remembers (each producer's last few): compaction
    /// keeps their envelopes, so the table read back from the log is the same.
    pub fn remembered_batches(&self) -> std::collections::HashSet<i64> {
        self.producers
            .values()
            .flat_map(|entry| entry.batches.iter().map(|b| b.base_offset))
            .collect()
    }

    /// An empty table.
    pub fn new() -> ProducerStateTable {
        ProducerStateTable::default()
    }

    /// Checks a batch without changing the table.
    ///
    /// # Errors
    ///
    /// [`SequenceError`] when the batch must be refused.
    pub fn check(&self, header: &BatchHeader) -> Result<Check, SequenceError> {
        if !header.has_producer_id() {
            return Ok(Check::Append);
        }
        if header.is_control() {
            return self.check_marker(header).map(|()| Check::Append);
        }
        check_entry(self.producers.get(&header.producer_id), header)
    }

    /// Checks a batch as if `in_flight` (batches of the same producer accepted by a leader and
    /// not appended yet, oldest first) had been appended. A duplicate of one of those comes
    /// back as a [`Check::Duplicate`] whose offsets are -1: it has none yet.
    ///
    /// # Errors
    ///
    /// [`SequenceError`] when the batch must be refused.
    pub fn check_with(
        &self,
        header: &BatchHeader,
        in_flight: &[InFlightBatch],
    ) -> Result<Check, SequenceError> {
        if !header.has_producer_id() {
            return Ok(Check::Append);
        }
        if header.is_control() {
            return self.check_marker(header).map(|()| Check::Append);
        }
        let mut entry = self.producers.get(&header.producer_id).cloned();
        for batch in in_flight {
            let e = entry.get_or_insert_with(|| ProducerEntry {
                epoch: batch.epoch,
                batches: VecDeque::new(),
                last_append_ms: 0,
                txn_first_offset: None,
            });
            if batch.epoch != e.epoch {
                e.epoch = batch.epoch;
                e.batches.clear();
            }
            if e.batches.len() == BATCHES_PER_PRODUCER_MAX {
                e.batches.pop_front();
            }
            e.batches.push_back(BatchMeta {
                first_sequence: batch.first_sequence,
                last_sequence: batch.last_sequence,
                base_offset: -1,
                last_offset: -1,
                timestamp: -1,
            });
        }
        check_entry(entry.as_ref(), header)
    }

    /// Records an appended data batch (its header carries the assigned base offset); a
    /// transactional one opens its producer's transaction if none is open. A control batch
    /// is recorded with [`Self::record_marker`] (or not at all, for Raft's own).
    pub fn record(&mut self, header: &BatchHeader, now_ms: i64) {
        if !header.has_producer_id() || header.is_control() {
            return;
        }
        let entry = self.entry_of(header, now_ms);
        if header.producer_epoch != entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        let opens = header.is_transactional() && entry.txn_first_offset.is_none();
        if opens {
            entry.txn_first_offset = Some(header.base_offset);
        }
        if entry.batches.len() == BATCHES_PER_PRODUCER_MAX {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchMeta {
            first_sequence: header.base_sequence,
            last_sequence: header.last_sequence(),
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
            timestamp: header.max_timestamp,
        });
        entry.last_append_ms = now_ms;
        assert!(
            entry.batches.len() <= BATCHES_PER_PRODUCER_MAX,
            "too many batches remembered"
        );
        if opens {
            self.open.insert((header.base_offset, header.producer_id));
        }
    }

    /// Records an appended transaction marker of the producer in `header` (a control batch of
    /// one record, at the header's base offset): it closes the producer's open transaction.
    /// Returns the transaction if it was aborted. A marker of a newer epoch (the coordinator
    /// fenced the producer) moves the producer to it.
    pub fn record_marker(
        &mut self,
        header: &BatchHeader,
        marker: TxnMarker,
        now_ms: i64,
    ) -> Option<AbortedTxn> {
        let entry = self.entry_of(header, now_ms);
        if header.producer_epoch > entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        entry.last_append_ms = now_ms;
        let first_offset = entry.txn_first_offset.take()?;
        self.open.remove(&(first_offset, header.producer_id));
        if marker == TxnMarker::Commit {
            return None;
        }
        let aborted = AbortedTxn {
            producer_id: header.producer_id,
            first_offset,
            last_offset: header.base_offset,
        };
        self.aborted.push(aborted);
        Some(aborted)
    }

    /// The entry of the producer in `header`, new (at its epoch) if the table has none.
    fn entry_of(&mut self, header: &BatchHeader, now_ms: i64) -> &mut ProducerEntry {
        self.producers
            .entry(header.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: header.producer_epoch,
                batches: VecDeque::new(),
                last_append_ms: now_ms,
                txn_first_offset: None,
            })
    }

    /// Checks a transaction marker of the producer in `header` before it is appended: the
    /// coordinator's epoch for the producer may not be older than the partition's.
    ///
    /// # Errors
    ///
    /// [`SequenceError::InvalidProducerEpoch`] for a marker of an older epoch.
    pub fn check_marker(&self, header: &BatchHeader) -> Result<(), SequenceError> {
        match self.producers.get(&header.producer_id) {
            Some(entry) if header.producer_epoch < entry.epoch => {
                Err(SequenceError::InvalidProducerEpoch {
                    producer_id: header.producer_id,
                    epoch: header.producer_epoch,
                    current: entry.epoch,
                })
            }
            _ => Ok(()),
        }
    }

    /// The first offset of the earliest open transaction: read_committed consumers read below
    /// it. `None` when no transaction is open.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.open.first().map(|&(first, _)| first)
    }

    /// The aborted transactions whose records may lie in `[from, to)`, oldest marker first
    /// (what a read_committed fetch of that range lists).
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        self.aborted
            .iter()
            .filter(|a| a.last_offset >= from && a.first_offset < to)
            .copied()
            .collect()
    }

    /// Forgets aborted transactions whose markers are before `offset` (retention removed
    /// them from the log).
    pub fn forget_aborted_before(&mut self, offset: i64) {
        self.aborted.retain(|a| a.last_offset >= offset);
    }

    /// The entry of a producer, to restore it if an append fails after `record`.
    pub fn entry(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Puts back an entry saved with [`ProducerStateTable::entry`] (`None`: forget it), and
    /// forgets an aborted transaction recorded at or after `from` (the undone marker's).
    pub fn restore(&mut self, producer_id: i64, entry: Option<ProducerEntry>, from: i64) {
        let now_open = entry.as_ref().and_then(|e| e.txn_first_offset);
        let was = match entry {
            Some(entry) => self.producers.insert(producer_id, entry),
            None => self.producers.remove(&producer_id),
        };
        if let Some(first) = was.and_then(|e| e.txn_first_offset) {
            self.open.remove(&(first, producer_id));
        }
        if let Some(first) = now_open {
            self.open.insert((first, producer_id));
        }
        self.aborted.retain(|a| a.last_offset < from);
    }

    /// Forgets producers idle since before `cutoff_ms` (Kafka's `producer.id.expiration.ms`),
    /// but never one with an open transaction.
    pub fn expire(&mut self, cutoff_ms: i64) {
        self.producers.retain(|_, entry| {
            entry.last_append_ms >= cutoff_ms || entry.txn_first_offset.is_some()
        });
    }

    /// Number of producers known.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// True when no producer is known.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
}

/// The transaction marker a batch is, if it is one: a control batch of a producer whose
/// record is a COMMIT or an ABORT (`batch` is the whole batch).
pub fn txn_marker_of(header: &BatchHeader, batch: &[u8]) -> Option<TxnMarker> {
    if !header.is_control() || !header.has_producer_id() {
        return None;
    }
    let (control_type, _) = silt_index::record::decode_control_batch(batch).ok()?;
    TxnMarker::of(control_type)
}

/// A batch a leader accepted and has not appended yet (see [`ProducerStateTable::check_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlightBatch {
    /// Producer epoch.
    pub epoch: i16,
    /// First sequence.
    pub first_sequence: i32,
    /// Last sequence.
    pub last_sequence: i32,
}

/// Kafka's checks (see the module docs) of a batch against one producer's entry.
fn check_entry(
    entry: Option<&ProducerEntry>,
    header: &BatchHeader,
) -> Result<Check, SequenceError> {
    let producer_id = header.producer_id;
    let Some(entry) = entry else {
        return Ok(Check::Append);
    };
    let first_sequence = header.base_sequence;
    if header.producer_epoch < entry.epoch {
        return Err(SequenceError::InvalidProducerEpoch {
            producer_id,
            epoch: header.producer_epoch,
            current: entry.epoch,
        });
    }
    if header.producer_epoch > entry.epoch {
        return if first_sequence == 0 {
            Ok(Check::Append)
        } else {
            Err(SequenceError::OutOfOrderSequence {
                producer_id,
                first_sequence,
                last_sequence: -1,
            })
        };
    }
    let last_sequence = header.last_sequence();
    if let Some(duplicate) = entry
        .batches
        .iter()
        .find(|b| b.first_sequence == first_sequence && b.last_sequence == last_sequence)
    {
        return Ok(Check::Duplicate(*duplicate));
    }
    let Some(last) = entry.batches.back() else {
        return Ok(Check::Append);
    };
    if first_sequence == wrapping_sequence(last.last_sequence, 1) {
        Ok(Check::Append)
    } else {
        Err(SequenceError::OutOfOrderSequence {
            producer_id,
            first_sequence,
            last_sequence: last.last_sequence,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use silt_index::batch::{BatchHeader, Codec};
    use silt_index::record::{NewRecord, ProducerStamp, encode_batch};

    fn header(offset: i64, epoch: i16, sequence: i32, records: usize) -> BatchHeader {
        let stamp = ProducerStamp {
            producer_id: 1,
            producer_epoch: epoch,
            base_sequence: sequence,
        };
        let bytes = encode_batch(
            offset,
            &vec![NewRecord::default(); records],
            Codec::None,
            Some(stamp),
        );
        BatchHeader::parse(&bytes, u32::MAX).unwrap().unwrap()
    }

    #[test]
    fn in_sequence_appends_then_duplicate_then_gap() {
        let mut table = ProducerStateTable::new();
        let first = header(0, 0, 0, 3);
        assert_eq!(table.check(&first), Ok(Check::Append));
        table.record(&first, 0);
        let second = header(3, 0, 3, 2);
        assert_eq!(table.check(&second), Ok(Check::Append));
        table.record(&second, 0);
        // A retry of the first batch (whatever offset the client thinks it has).
        match table.check(&header(0, 0, 0, 3)) {
            Ok(Check::Duplicate(meta)) => assert_eq!((meta.base_offset, meta.last_offset), (0, 2)),
            other => panic!("expected duplicate, got {other:?}"),
        }
        assert!(matches!(
            table.check(&header(0, 0, 6, 1)),
            Err(SequenceError::OutOfOrderSequence {
                first_sequence: 6,
                last_sequence: 4,
                ..
            })
        ));
    }

    #[test]
    fn epochs_fence_and_restart_sequences() {
        let mut table = ProducerStateTable::new();
        table.record(&header(0, 5, 0, 1), 0);
        assert!(matches!(
            table.check(&header(1, 4, 1, 1)),
            Err(SequenceError::InvalidProducerEpoch { .. })
        ));
        assert!(matches!(
            table.check(&header(1, 6, 3, 1)),
            Err(SequenceError::OutOfOrderSequence { .. })
        ));
        assert_eq!(table.check(&header(1, 6, 0, 1)), Ok(Check::Append));
    }

    #[test]
    fn unknown_producer_may_start_anywhere_and_only_five_batches_are_kept() {
        let mut table = ProducerStateTable::new();
        for offset in 0..7 {
            let h = header(offset, 0, 100 + offset as i32, 1);
            assert_eq!(table.check(&h), Ok(Check::Append));
            table.record(&h, 0);
        }
        assert_eq!(
            table.entry(1).unwrap().batches.len(),
            BATCHES_PER_PRODUCER_MAX
        );
        // The oldest two are forgotten: a retry of them is now out of order, as in Kafka.
        assert!(table.check(&header(0, 0, 100, 1)).is_err());
        assert!(matches!(
            table.check(&header(0, 0, 103, 1)),
            Ok(Check::Duplicate(_))
        ));
    }

    #[test]
    fn in_flight_batches_count_as_appended() {
        let mut table = ProducerStateTable::new();
        table.record(&header(0, 0, 0, 2), 0);
        let in_flight = [
            InFlightBatch {
                epoch: 0,
                first_sequence: 2,
                last_sequence: 3,
            },
            InFlightBatch {
                epoch: 0,
                first_sequence: 4,
                last_sequence: 4,
            },
        ];
        // Next in line after the in-flight ones, not after what is appended.
        assert_eq!(
            table.check_with(&header(0, 0, 5, 1), &in_flight),
            Ok(Check::Append)
        );
        assert!(table.check_with(&header(0, 0, 2, 1), &in_flight).is_err());
        // A retry of an in-flight batch is a duplicate without offsets yet.
        match table.check_with(&header(0, 0, 2, 2), &in_flight) {
            Ok(Check::Duplicate(meta)) => assert_eq!(meta.base_offset, -1),
            other => panic!("{other:?}"),
        }
        // A retry of an appended one has its offsets.
        match table.check_with(&header(0, 0, 0, 2), &in_flight) {
            Ok(Check::Duplicate(meta)) => assert_eq!(meta.base_offset, 0),
            other => panic!("{other:?}"),
        }
    }

    fn txn_header(offset: i64, producer_id: i64, epoch: i16, sequence: i32) -> BatchHeader {
        let stamp = ProducerStamp {
            producer_id,
            producer_epoch: epoch,
            base_sequence: sequence,
        };
        let mut bytes = encode_batch(offset, &[NewRecord::default()], Codec::None, Some(stamp));
        let attributes =
            i16::from_be_bytes([bytes[21], bytes[22]]) | silt_index::batch::ATTR_TRANSACTIONAL;
        bytes[21..23].copy_from_slice(&attributes.to_be_bytes());
        BatchHeader::parse(&bytes, u32::MAX).unwrap().unwrap()
    }

    fn marker(
        offset: i64,
        producer_id: i64,
        epoch: i16,
        kind: TxnMarker,
    ) -> (BatchHeader, Vec<u8>) {
        let bytes = silt_index::record::encode_txn_marker(
            offset,
            producer_id,
            epoch,
            0,
            kind.control_type(),
            0,
        );
        (
            BatchHeader::parse(&bytes, u32::MAX).unwrap().unwrap(),
            bytes,
        )
    }

    #[test]
    fn transactions_hold_the_stable_offset_and_aborts_are_listed() {
        let mut table = ProducerStateTable::new();
        // Producer 1 opens at 10, producer 2 at 12; both stay open.
        table.record(&txn_header(10, 1, 0, 0), 0);
        table.record(&txn_header(11, 1, 0, 1), 0);
        table.record(&txn_header(12, 2, 0, 0), 0);
        assert_eq!(table.first_unstable_offset(), Some(10));
        // Producer 1 commits at 13: producer 2's transaction is the earliest open one.
        let (header, bytes) = marker(13, 1, 0, TxnMarker::Commit);
        assert_eq!(txn_marker_of(&header, &bytes), Some(TxnMarker::Commit));
        assert_eq!(table.record_marker(&header, TxnMarker::Commit, 0), None);
        assert_eq!(table.first_unstable_offset(), Some(12));
        // Producer 2 aborts at 14: nothing is open, and its range is listed for fetches.
        let (header, _) = marker(14, 2, 0, TxnMarker::Abort);
        let aborted = table.record_marker(&header, TxnMarker::Abort, 0);
        let expected = AbortedTxn {
            producer_id: 2,
            first_offset: 12,
            last_offset: 14,
        };
        assert_eq!(aborted, Some(expected));
        assert_eq!(table.first_unstable_offset(), None);
        assert_eq!(table.aborted_between(0, 100), vec![expected]);
        assert_eq!(table.aborted_between(15, 100), vec![]);
        assert_eq!(table.aborted_between(0, 12), vec![]);
        // A marker of an older epoch than the producer's is refused; the table survives JSON.
        table.record(&txn_header(15, 2, 3, 0), 0);
        assert!(
            table
                .check_marker(&marker(16, 2, 2, TxnMarker::Abort).0)
                .is_err()
        );
        assert!(
            table
                .check_marker(&marker(16, 2, 3, TxnMarker::Abort).0)
                .is_ok()
        );
        let json = serde_json::to_vec(&table).unwrap();
        assert_eq!(
            serde_json::from_slice::<ProducerStateTable>(&json).unwrap(),
            table
        );
        // Retention forgets aborted ranges before the log start; expiry keeps open ones.
        table.forget_aborted_before(15);
        assert_eq!(table.aborted_between(0, 100), vec![]);
        table.expire(i64::MAX);
        assert_eq!(table.first_unstable_offset(), Some(15));
    }

    #[test]
    fn an_undone_marker_reopens_the_transaction() {
        let mut table = ProducerStateTable::new();
        table.record(&txn_header(0, 7, 0, 0), 0);
        let saved = table.entry(7).cloned();
        let (header, _) = marker(1, 7, 0, TxnMarker::Abort);
        table.record_marker(&header, TxnMarker::Abort, 0);
        table.restore(7, saved, 1);
        assert_eq!(table.first_unstable_offset(), Some(0));
        assert_eq!(table.aborted_between(0, 10), vec![]);
    }

    #[test]
    fn sequence_wraps_at_i32_max() {
        let mut table = ProducerStateTable::new();
        table.record(&header(0, 0, i32::MAX - 1, 2), 0);
        assert_eq!(table.check(&header(2, 0, 0, 1)), Ok(Check::Append));
    }
}
