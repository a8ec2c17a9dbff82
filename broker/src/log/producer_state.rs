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
pub struct ProducerStateTable {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerStateTable {
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
        let mut entry = self.producers.get(&header.producer_id).cloned();
        for batch in in_flight {
            let e = entry.get_or_insert_with(|| ProducerEntry {
                epoch: batch.epoch,
                batches: VecDeque::new(),
                last_append_ms: 0,
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

    /// Records an appended batch (its header carries the assigned base offset).
    pub fn record(&mut self, header: &BatchHeader, now_ms: i64) {
        if !header.has_producer_id() {
            return;
        }
        let entry = self
            .producers
            .entry(header.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: header.producer_epoch,
                batches: VecDeque::new(),
                last_append_ms: now_ms,
            });
        if header.producer_epoch != entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
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
    }

    /// The entry of a producer, to restore it if an append fails after `record`.
    pub fn entry(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Puts back an entry saved with [`ProducerStateTable::entry`] (`None`: forget it).
    pub fn restore(&mut self, producer_id: i64, entry: Option<ProducerEntry>) {
        match entry {
            Some(entry) => self.producers.insert(producer_id, entry),
            None => self.producers.remove(&producer_id),
        };
    }

    /// Forgets producers idle since before `cutoff_ms` (Kafka's `producer.id.expiration.ms`).
    pub fn expire(&mut self, cutoff_ms: i64) {
        self.producers
            .retain(|_, entry| entry.last_append_ms >= cutoff_ms);
    }

    /// Forgets what was appended at or after `offset` (the log was truncated there).
    pub fn truncate(&mut self, offset: i64) {
        for entry in self.producers.values_mut() {
            entry.batches.retain(|b| b.last_offset < offset);
        }
        self.producers.retain(|_, entry| !entry.batches.is_empty());
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

    #[test]
    fn sequence_wraps_at_i32_max() {
        let mut table = ProducerStateTable::new();
        table.record(&header(0, 0, i32::MAX - 1, 2), 0);
        assert_eq!(table.check(&header(2, 0, 0, 1)), Ok(Check::Append));
    }
}
