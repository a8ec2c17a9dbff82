//! The transaction coordinator's state machine, sans-io: one [`TxnMeta`] per transactional
//! id and the transitions Kafka's `TransactionCoordinator` makes (KIP-98, KIP-360).
//!
//! ```text
//!            InitProducerId            AddPartitionsToTxn          EndTxn(commit)
//!   (none) ----------------> Empty ----------------------> Ongoing ------------> PrepareCommit
//!                              ^                             |  EndTxn(abort),      | markers
//!                              |        InitProducerId       |  timeout            v written
//!  CompleteCommit/Abort -------+  (epoch + 1)                +-----------> PrepareAbort ---> CompleteAbort
//! ```
//!
//! A `Prepare*` state is durable before EndTxn is answered: from then on the outcome is
//! decided and the coordinator (this one, or the next after a fail-over) writes the markers
//! until every partition has one, then records `Complete*`. While markers are pending, calls
//! that would start something new get `CONCURRENT_TRANSACTIONS` (retriable). InitProducerId on
//! an open transaction fences its producer (epoch + 1) and aborts it. A transaction open for
//! longer than its timeout is aborted the same way.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::protocol::error_code::ErrorCode;

/// Where a transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnStatus {
    /// A producer id and epoch, no transaction open.
    Empty,
    /// Partitions added: records may be written.
    Ongoing,
    /// Commit decided; markers being written.
    PrepareCommit,
    /// Abort decided; markers being written.
    PrepareAbort,
    /// Committed: every partition has its marker.
    CompleteCommit,
    /// Aborted: every partition has its marker.
    CompleteAbort,
}

impl TxnStatus {
    /// The name Kafka's DescribeTransactions and ListTransactions use.
    pub fn kafka_name(self) -> &'static str {
        match self {
            TxnStatus::Empty => "Empty",
            TxnStatus::Ongoing => "Ongoing",
            TxnStatus::PrepareCommit => "PrepareCommit",
            TxnStatus::PrepareAbort => "PrepareAbort",
            TxnStatus::CompleteCommit => "CompleteCommit",
            TxnStatus::CompleteAbort => "CompleteAbort",
        }
    }

    /// True while markers are being written.
    pub fn preparing(self) -> bool {
        matches!(self, TxnStatus::PrepareCommit | TxnStatus::PrepareAbort)
    }
}

/// One transactional id's state, as the coordinator keeps it (and writes to its log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMeta {
    /// The producer id the transactional id maps to.
    pub producer_id: i64,
    /// Its current epoch: a producer of an older one is fenced.
    pub producer_epoch: i16,
    /// `transaction.timeout.ms` as the producer asked (capped).
    pub timeout_ms: i32,
    /// Where the transaction stands.
    pub status: TxnStatus,
    /// The partitions of the open (or ending) transaction.
    pub partitions: BTreeSet<(String, i32)>,
    /// When the open transaction started (ms), -1 without one.
    pub started_ms: i64,
    /// When the state last changed (ms).
    pub updated_ms: i64,
}

/// What an InitProducerId asks of an existing transactional id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitRequest {
    /// The producer id the client holds, or -1 (KIP-360).
    pub producer_id: i64,
    /// Its epoch, or -1.
    pub producer_epoch: i16,
    /// The transaction timeout asked for.
    pub timeout_ms: i32,
}

/// What InitProducerId does to a transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitOutcome {
    /// Record this state and answer with its producer id and epoch.
    Ready(TxnMeta),
    /// An open transaction is aborted first (this state is `PrepareAbort` under a bumped
    /// epoch, which fences the old producer): record it, write the markers, and answer
    /// `CONCURRENT_TRANSACTIONS` so the client asks again once they are written.
    AbortFirst(TxnMeta),
}

/// The epoch after `epoch`, or `None` when the producer id has used them all (a new one is
/// then allocated, as Kafka does).
fn bump(epoch: i16) -> Option<i16> {
    (epoch < i16::MAX - 1).then_some(epoch + 1)
}

/// InitProducerId for a transactional id: a new id (`allocate` gives a producer id) at epoch
/// 0, or the existing one under the next epoch, aborting an open transaction first.
///
/// # Errors
///
/// `CONCURRENT_TRANSACTIONS` while markers are being written; `PRODUCER_FENCED` when the
/// client names an epoch older than the current one, `INVALID_PRODUCER_ID_MAPPING` when it
/// names another producer id (KIP-360 retries name the id and epoch they hold).
pub fn init_producer_id(
    current: Option<&TxnMeta>,
    request: InitRequest,
    now_ms: i64,
    allocate: &mut dyn FnMut() -> Option<i64>,
) -> Result<InitOutcome, ErrorCode> {
    let fresh = |producer_id: i64| TxnMeta {
        producer_id,
        producer_epoch: 0,
        timeout_ms: request.timeout_ms,
        status: TxnStatus::Empty,
        partitions: BTreeSet::new(),
        started_ms: -1,
        updated_ms: now_ms,
    };
    let Some(current) = current else {
        let id = allocate().ok_or(ErrorCode::CoordinatorNotAvailable)?;
        return Ok(InitOutcome::Ready(fresh(id)));
    };
    if current.status.preparing() {
        return Err(ErrorCode::ConcurrentTransactions);
    }
    if request.producer_id >= 0 {
        if request.producer_id != current.producer_id {
            return Err(ErrorCode::InvalidProducerIdMapping);
        }
        if request.producer_epoch < current.producer_epoch {
            return Err(ErrorCode::ProducerFenced);
        }
    }
    let Some(epoch) = bump(current.producer_epoch) else {
        let id = allocate().ok_or(ErrorCode::CoordinatorNotAvailable)?;
        return Ok(InitOutcome::Ready(fresh(id)));
    };
    if current.status == TxnStatus::Ongoing {
        return Ok(InitOutcome::AbortFirst(TxnMeta {
            producer_epoch: epoch,
            status: TxnStatus::PrepareAbort,
            updated_ms: now_ms,
            ..current.clone()
        }));
    }
    Ok(InitOutcome::Ready(TxnMeta {
        producer_epoch: epoch,
        timeout_ms: request.timeout_ms,
        status: TxnStatus::Empty,
        partitions: BTreeSet::new(),
        started_ms: -1,
        updated_ms: now_ms,
        ..current.clone()
    }))
}

/// Checks that a request names the transactional id's current producer id and epoch.
///
/// # Errors
///
/// `INVALID_PRODUCER_ID_MAPPING` for another producer id, `PRODUCER_FENCED` for an older
/// epoch, `INVALID_PRODUCER_EPOCH` for a newer one.
pub fn check_producer(meta: &TxnMeta, producer_id: i64, epoch: i16) -> Result<(), ErrorCode> {
    if producer_id != meta.producer_id {
        return Err(ErrorCode::InvalidProducerIdMapping);
    }
    match epoch.cmp(&meta.producer_epoch) {
        std::cmp::Ordering::Less => Err(ErrorCode::ProducerFenced),
        std::cmp::Ordering::Greater => Err(ErrorCode::InvalidProducerEpoch),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

/// AddPartitionsToTxn: the transaction is open with these partitions added. `None` when
/// nothing changes (every partition is in already).
///
/// # Errors
///
/// As [`check_producer`]; `CONCURRENT_TRANSACTIONS` while markers are being written.
pub fn add_partitions(
    meta: &TxnMeta,
    producer_id: i64,
    epoch: i16,
    partitions: &[(String, i32)],
    now_ms: i64,
) -> Result<Option<TxnMeta>, ErrorCode> {
    check_producer(meta, producer_id, epoch)?;
    if meta.status.preparing() {
        return Err(ErrorCode::ConcurrentTransactions);
    }
    let ongoing = meta.status == TxnStatus::Ongoing;
    if ongoing && partitions.iter().all(|p| meta.partitions.contains(p)) {
        return Ok(None);
    }
    let mut next = meta.clone();
    if !ongoing {
        next.status = TxnStatus::Ongoing;
        next.partitions.clear();
        next.started_ms = now_ms;
    }
    next.partitions.extend(partitions.iter().cloned());
    next.updated_ms = now_ms;
    Ok(Some(next))
}

/// What EndTxn does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndOutcome {
    /// Record this `Prepare*` state, answer, and write the markers.
    Prepare(TxnMeta),
    /// Already decided this way (a retried EndTxn): answer success.
    Done,
}

/// EndTxn: commit or abort the open transaction.
///
/// # Errors
///
/// As [`check_producer`]; `CONCURRENT_TRANSACTIONS` while markers of the same outcome are
/// being written; `INVALID_TXN_STATE` with no transaction open or against the outcome
/// already decided.
pub fn end_txn(
    meta: &TxnMeta,
    producer_id: i64,
    epoch: i16,
    commit: bool,
    now_ms: i64,
) -> Result<EndOutcome, ErrorCode> {
    check_producer(meta, producer_id, epoch)?;
    let (preparing, complete) = if commit {
        (TxnStatus::PrepareCommit, TxnStatus::CompleteCommit)
    } else {
        (TxnStatus::PrepareAbort, TxnStatus::CompleteAbort)
    };
    match meta.status {
        TxnStatus::Ongoing => Ok(EndOutcome::Prepare(TxnMeta {
            status: preparing,
            updated_ms: now_ms,
            ..meta.clone()
        })),
        s if s == preparing => Err(ErrorCode::ConcurrentTransactions),
        s if s == complete => Ok(EndOutcome::Done),
        // Ending a transaction that added no partition: nothing to write (as librdkafka
        // and the Java client do not send it, a retry after a restart may).
        TxnStatus::Empty => Ok(EndOutcome::Done),
        _ => Err(ErrorCode::InvalidTxnState),
    }
}

/// The abort of a transaction open longer than its timeout: `PrepareAbort` under the next
/// epoch (the producer is fenced, as Kafka does), or `None` when it has time left.
pub fn timed_out(meta: &TxnMeta, now_ms: i64) -> Option<TxnMeta> {
    if meta.status != TxnStatus::Ongoing
        || now_ms - meta.started_ms <= i64::from(meta.timeout_ms.max(0))
    {
        return None;
    }
    Some(TxnMeta {
        producer_epoch: bump(meta.producer_epoch).unwrap_or(meta.producer_epoch),
        status: TxnStatus::PrepareAbort,
        updated_ms: now_ms,
        ..meta.clone()
    })
}

/// True when a transactional id has had no transaction open and no use for longer than
/// `expiration_ms` (Kafka's `transactional.id.expiration.ms`): it is forgotten, and the id
/// starts afresh (a new producer id) the next time it is used.
pub fn expired(meta: &TxnMeta, now_ms: i64, expiration_ms: i64) -> bool {
    matches!(
        meta.status,
        TxnStatus::Empty | TxnStatus::CompleteCommit | TxnStatus::CompleteAbort
    ) && now_ms.saturating_sub(meta.updated_ms) > expiration_ms
}

/// The state once every partition has its marker.
pub fn completed(meta: &TxnMeta, now_ms: i64) -> TxnMeta {
    let status = match meta.status {
        TxnStatus::PrepareCommit => TxnStatus::CompleteCommit,
        TxnStatus::PrepareAbort => TxnStatus::CompleteAbort,
        other => other,
    };
    TxnMeta {
        status,
        partitions: BTreeSet::new(),
        started_ms: -1,
        updated_ms: now_ms,
        ..meta.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> InitRequest {
        InitRequest {
            producer_id: -1,
            producer_epoch: -1,
            timeout_ms: 60_000,
        }
    }

    fn ready(outcome: Result<InitOutcome, ErrorCode>) -> TxnMeta {
        match outcome {
            Ok(InitOutcome::Ready(meta)) => meta,
            other => panic!("not ready: {other:?}"),
        }
    }

    fn p(topic: &str, partition: i32) -> (String, i32) {
        (topic.to_string(), partition)
    }

    #[test]
    fn a_transaction_commits_and_the_next_starts_clean() {
        let mut ids = 41..;
        let meta = ready(init_producer_id(None, request(), 0, &mut || ids.next()));
        assert_eq!((meta.producer_id, meta.producer_epoch), (41, 0));
        let open = add_partitions(&meta, 41, 0, &[p("a", 0)], 5)
            .unwrap()
            .unwrap();
        assert_eq!((open.status, open.started_ms), (TxnStatus::Ongoing, 5));
        // Adding what is in already changes nothing; adding more widens it.
        assert_eq!(add_partitions(&open, 41, 0, &[p("a", 0)], 6), Ok(None));
        let open = add_partitions(&open, 41, 0, &[p("b", 1)], 7)
            .unwrap()
            .unwrap();
        assert_eq!(open.partitions.len(), 2);
        let EndOutcome::Prepare(preparing) = end_txn(&open, 41, 0, true, 8).unwrap() else {
            panic!("not prepared");
        };
        assert_eq!(preparing.status, TxnStatus::PrepareCommit);
        // Until the markers are written, the client waits.
        assert_eq!(
            end_txn(&preparing, 41, 0, true, 9),
            Err(ErrorCode::ConcurrentTransactions)
        );
        assert_eq!(
            add_partitions(&preparing, 41, 0, &[p("a", 0)], 9),
            Err(ErrorCode::ConcurrentTransactions)
        );
        let done = completed(&preparing, 10);
        assert_eq!(
            (done.status, done.partitions.len()),
            (TxnStatus::CompleteCommit, 0)
        );
        // A retried EndTxn succeeds; the opposite one is refused.
        assert_eq!(end_txn(&done, 41, 0, true, 11), Ok(EndOutcome::Done));
        assert_eq!(
            end_txn(&done, 41, 0, false, 11),
            Err(ErrorCode::InvalidTxnState)
        );
        let next = add_partitions(&done, 41, 0, &[p("c", 2)], 12)
            .unwrap()
            .unwrap();
        assert_eq!(next.partitions, BTreeSet::from([p("c", 2)]));
    }

    #[test]
    fn a_new_producer_fences_the_old_one_and_aborts_its_transaction() {
        let mut ids = 7..;
        let meta = ready(init_producer_id(None, request(), 0, &mut || ids.next()));
        let open = add_partitions(&meta, 7, 0, &[p("a", 0)], 1)
            .unwrap()
            .unwrap();
        let Ok(InitOutcome::AbortFirst(aborting)) =
            init_producer_id(Some(&open), request(), 2, &mut || ids.next())
        else {
            panic!("the open transaction must be aborted first");
        };
        assert_eq!(
            (aborting.status, aborting.producer_epoch),
            (TxnStatus::PrepareAbort, 1)
        );
        assert_eq!(aborting.partitions, open.partitions);
        // The zombie (epoch 0) is fenced everywhere.
        assert_eq!(
            add_partitions(&aborting, 7, 0, &[p("a", 0)], 3),
            Err(ErrorCode::ProducerFenced)
        );
        assert_eq!(
            end_txn(&aborting, 7, 0, true, 3),
            Err(ErrorCode::ProducerFenced)
        );
        // While the markers are written the new producer waits; then it gets epoch 2.
        assert_eq!(
            init_producer_id(Some(&aborting), request(), 3, &mut || ids.next()),
            Err(ErrorCode::ConcurrentTransactions)
        );
        let again = ready(init_producer_id(
            Some(&completed(&aborting, 4)),
            request(),
            5,
            &mut || ids.next(),
        ));
        assert_eq!((again.producer_id, again.producer_epoch), (7, 2));
    }

    #[test]
    fn kip_360_retries_name_their_producer_and_epochs_run_out_into_a_new_id() {
        let mut ids = 100..;
        let meta = ready(init_producer_id(None, request(), 0, &mut || ids.next()));
        let named = |id, epoch| InitRequest {
            producer_id: id,
            producer_epoch: epoch,
            timeout_ms: 1000,
        };
        assert_eq!(
            init_producer_id(Some(&meta), named(99, 0), 1, &mut || ids.next()),
            Err(ErrorCode::InvalidProducerIdMapping)
        );
        let bumped = ready(init_producer_id(Some(&meta), named(100, 0), 1, &mut || {
            ids.next()
        }));
        assert_eq!(bumped.producer_epoch, 1);
        assert_eq!(
            init_producer_id(Some(&bumped), named(100, 0), 2, &mut || ids.next()),
            Err(ErrorCode::ProducerFenced)
        );
        let worn = TxnMeta {
            producer_epoch: i16::MAX - 1,
            ..bumped
        };
        let renewed = ready(init_producer_id(Some(&worn), request(), 3, &mut || {
            ids.next()
        }));
        assert_eq!((renewed.producer_id, renewed.producer_epoch), (101, 0));
    }

    #[test]
    fn an_abandoned_transaction_times_out_into_an_abort_that_fences() {
        let mut ids = 1..;
        let meta = ready(init_producer_id(
            None,
            InitRequest {
                timeout_ms: 100,
                ..request()
            },
            0,
            &mut || ids.next(),
        ));
        let open = add_partitions(&meta, 1, 0, &[p("a", 0)], 1000)
            .unwrap()
            .unwrap();
        assert_eq!(timed_out(&open, 1100), None);
        let aborting = timed_out(&open, 1101).unwrap();
        assert_eq!(
            (aborting.status, aborting.producer_epoch),
            (TxnStatus::PrepareAbort, 1)
        );
        assert_eq!(
            timed_out(&meta, 1_000_000),
            None,
            "nothing open, nothing to abort"
        );
        // An idle id expires; one with a transaction open or ending never does.
        assert!(expired(&meta, 1_000_000, 1000));
        assert!(!expired(&meta, 500, 1000));
        assert!(!expired(&open, 1_000_000, 1000));
        assert!(!expired(&aborting, 1_000_000, 1000));
        // State survives its JSON form.
        let json = serde_json::to_string(&aborting).unwrap();
        assert_eq!(serde_json::from_str::<TxnMeta>(&json).unwrap(), aborting);
    }
}
