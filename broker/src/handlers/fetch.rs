//! Fetch: whole batches from each partition, long-polling until `min_bytes` or `max_wait_ms`.
//!
//! Limits, as Kafka applies them: each partition gives at most `partition_max_bytes`, the
//! response at most `max_bytes` (capped by the node's `fetch_bytes_max`), except that the first
//! batch of the first partition with data is returned whole even if larger, so a consumer never
//! sticks on a big batch (KIP-74). Fetch sessions (KIP-227) are answered sessionless: session id
//! 0 tells the client to send full requests, which librdkafka and the Java client accept.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, ProducerId, TopicName};
use silt_archiver::{ArchiveError, RemoteSlice};
use uuid::Uuid;

use super::{leader_hint, str_bytes, topic_name};
use crate::log::Isolation;
use crate::log::producer_state::AbortedTxn;
use crate::metrics::Metrics;
use crate::node::Node;
use crate::partition::{Bounds, Located, PartitionView, check_leader_epoch};
use crate::protocol::error_code::{ErrorCode, for_archive};
use crate::security::Caller;
use crate::security::acl::Operation;
use crate::tiering::{PartitionTier, ReadFailure};

/// Once local data can answer a fetch, how long archive reads of the same request still get
/// to finish (a read from the chunk cache takes well under this).
const REMOTE_GRACE: Duration = Duration::from_millis(20);

/// One partition of the request, resolved.
struct Target {
    topic: TopicName,
    topic_id: Uuid,
    partition_index: i32,
    fetch_offset: i64,
    partition_max_bytes: i32,
    found: Result<PartitionView, ErrorCode>,
    /// Where the read goes (set for every partition that was found).
    plan: Plan,
}

/// Where a target's data comes from.
enum Plan {
    /// The local log; see [`Located::Local`] for `tiered`.
    Local { tiered: bool },
    /// The archive: a read running in its own task.
    Remote {
        tier: Arc<PartitionTier>,
        bounds: Bounds,
    },
    /// Nothing to read: answered with this outcome.
    Early,
}

/// What a read gave for one partition.
struct Outcome {
    error: Option<ErrorCode>,
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
    records: Bytes,
    /// For read_committed: the aborted transactions among `records`.
    aborted: Vec<AbortedTxn>,
}

impl Outcome {
    fn empty() -> Outcome {
        Outcome {
            error: None,
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            records: Bytes::new(),
            aborted: Vec::new(),
        }
    }

    fn of(error: Option<ErrorCode>, bounds: Bounds) -> Outcome {
        Outcome {
            error,
            high_watermark: bounds.high_watermark,
            last_stable_offset: bounds.last_stable,
            log_start_offset: bounds.log_start,
            records: Bytes::new(),
            aborted: Vec::new(),
        }
    }
}

type RemoteResult = Result<Option<RemoteSlice>, ArchiveError>;

pub(crate) async fn handle(
    node: Arc<Node>,
    request: FetchRequest,
    version: i16,
    caller: &Caller,
) -> FetchResponse {
    if request.session_id != 0 {
        // We never hand out sessions, so an incremental fetch names one we do not have.
        return FetchResponse::default().with_error_code(ErrorCode::FetchSessionIdNotFound.code());
    }
    let uses_ids = version >= 13;
    let isolation = Isolation::of(request.isolation_level);
    let mut targets = Vec::new();
    for topic in &request.topics {
        let by_id = uses_ids.then(|| node.topics.get_by_id(topic.topic_id));
        let name = match &by_id {
            Some(Some(t)) => topic_name(&t.name),
            Some(None) => TopicName::default(),
            None => topic.topic.clone(),
        };
        let denied = !matches!(by_id, Some(None)) && !caller.topic(Operation::Read, &name.0);
        for p in &topic.partitions {
            let found = match &by_id {
                _ if denied => Err(ErrorCode::TopicAuthorizationFailed),
                Some(None) => Err(ErrorCode::UnknownTopicId),
                _ => PartitionView::find_leader(&node, name.0.as_str(), p.partition),
            };
            let found = found.and_then(|view| {
                match check_leader_epoch(p.current_leader_epoch, view.leader_epoch()) {
                    Some(e) => Err(e),
                    None => Ok(view),
                }
            });
            targets.push(Target {
                topic: name.clone(),
                topic_id: topic.topic_id,
                partition_index: p.partition,
                fetch_offset: p.fetch_offset,
                partition_max_bytes: p.partition_max_bytes,
                found,
                plan: Plan::Early,
            });
        }
    }
    let max_bytes = (request.max_bytes.max(0) as u32).min(node.config.fetch_bytes_max);
    let min_bytes = request.min_bytes.max(0) as u64;
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);

    // Offsets below the local log go to the archive, all of them at once, each in its own
    // task: a slow archive holds up neither the local partitions of this request nor anyone
    // else, and a read the request stops waiting for still fills the cache for the next one.
    let mut early: HashMap<usize, Outcome> = HashMap::new();
    let mut replica_watches = Vec::new();
    let mut pending: FuturesUnordered<BoxFuture<'static, (usize, RemoteResult)>> =
        FuturesUnordered::new();
    let mut first = true;
    // What the archive reads of one request may bring in all: the response's budget. Reads
    // past it would be read from the cache, checked and thrown away (a fetch of 32 archived
    // partitions at 8 MiB each reads 256 MiB to send 64); the partitions past it are answered
    // empty now and their first chunk fetched for the next request.
    let mut archive_budget = max_bytes;
    for (i, target) in targets.iter_mut().enumerate() {
        let Ok(view) = &target.found else {
            continue;
        };
        target.plan = match view.locate(target.fetch_offset).await {
            Located::Local { tiered } => {
                first = false;
                Plan::Local { tiered }
            }
            Located::Answer(error, bounds) => {
                early.insert(i, Outcome::of(error, bounds));
                Plan::Early
            }
            Located::Wait(bounds, mut watch) => {
                watch.borrow_and_update();
                replica_watches.push(watch);
                early.insert(i, Outcome::of(None, bounds));
                Plan::Early
            }
            Located::Archive(read) => {
                let Some(tiering) = node.tiering.clone() else {
                    // Only a node with an archive locates reads in it.
                    early.insert(
                        i,
                        Outcome::of(Some(ErrorCode::KafkaStorageError), read.bounds),
                    );
                    continue;
                };
                let (tier, root, offset) = (read.tier.clone(), read.root, target.fetch_offset);
                if archive_budget == 0 && !first {
                    let warming = tiering.clone();
                    tiering.spawn(async move { warming.warm(&tier, root, offset).await });
                    early.insert(i, Outcome::of(None, read.bounds));
                    continue;
                }
                let limit = (target.partition_max_bytes.max(0) as u32).min(archive_budget);
                archive_budget = archive_budget.saturating_sub(limit);
                // Only the first partition of a request may exceed its limit (KIP-74).
                let min_one = std::mem::replace(&mut first, false);
                let task = tiering
                    .clone()
                    .spawn(async move { tiering.read(&tier, root, offset, limit, min_one).await });
                pending.push(
                    async move {
                        let result = task.await.unwrap_or_else(|e| {
                            Err(ArchiveError::Config(format!(
                                "archive read task failed: {e}"
                            )))
                        });
                        (i, result)
                    }
                    .boxed(),
                );
                Plan::Remote {
                    tier: read.tier,
                    bounds: read.bounds,
                }
            }
        };
    }
    let remote_count = pending.len();
    let mut remote_done: HashMap<usize, RemoteResult> = HashMap::new();

    let targets = Arc::new(targets);
    let mut outcomes = loop {
        // Subscribe before reading, so an append between the read and the wait still wakes us.
        let mut watches: Vec<_> = targets
            .iter()
            .filter(|t| matches!(t.plan, Plan::Local { .. }))
            .filter_map(|t| t.found.as_ref().ok().map(PartitionView::subscribe))
            .collect();
        for watch in &mut watches {
            watch.borrow_and_update();
        }
        let reading = targets.clone();
        let outcomes =
            match tokio::task::spawn_blocking(move || read_local(&reading, max_bytes, isolation))
                .await
            {
                Ok(outcomes) => outcomes,
                Err(_) => {
                    return FetchResponse::default()
                        .with_error_code(ErrorCode::UnknownServerError.code());
                }
            };
        while let Some(Some((i, result))) = pending.next().now_or_never() {
            remote_done.insert(i, result);
        }
        let local_bytes: u64 = outcomes.iter().map(|o| o.records.len() as u64).sum();
        let remote_bytes: u64 = remote_done
            .values()
            .filter_map(|r| r.as_ref().ok().and_then(|s| s.as_ref()))
            .map(|s| s.records.len() as u64)
            .sum();
        // An early answer without an error (nothing to read there yet, or left for the next
        // request) is not a reason to answer now.
        let errors = outcomes.iter().any(|o| o.error.is_some())
            || early.values().any(|o| o.error.is_some())
            || remote_done.values().any(|r| r.is_err());
        let satisfied = local_bytes + remote_bytes >= min_bytes.max(1) || errors;
        let now = tokio::time::Instant::now();
        if now >= deadline {
            break outcomes;
        }
        let nothing_to_watch = watches.is_empty() && replica_watches.is_empty();
        if pending.is_empty() {
            if satisfied || min_bytes == 0 || (nothing_to_watch && remote_count == 0) {
                break outcomes;
            }
            if nothing_to_watch {
                // Only archive partitions, all answered, and still short of min_bytes: their
                // data is all there is; more would need another round trip anyway.
                break outcomes;
            }
        } else if satisfied {
            // Local data is ready; give the archive reads a moment, then answer without them.
            let grace = (now + REMOTE_GRACE).min(deadline);
            while let Ok(Some((i, result))) = tokio::time::timeout_at(grace, pending.next()).await {
                remote_done.insert(i, result);
            }
            break outcomes;
        }
        let changed = async {
            if watches.is_empty() {
                std::future::pending::<()>().await;
            } else {
                let _ =
                    futures::future::select_all(watches.iter_mut().map(|w| Box::pin(w.changed())))
                        .await;
            }
        };
        let replica_changed = async {
            if replica_watches.is_empty() {
                std::future::pending::<()>().await;
            } else {
                let _ = futures::future::select_all(
                    replica_watches.iter_mut().map(|w| Box::pin(w.changed())),
                )
                .await;
            }
        };
        tokio::select! {
            () = changed => {}
            // A replica saw new uploads: answer now; the client's next fetch reads them.
            () = replica_changed => break outcomes,
            Some((i, result)) = pending.next(), if !pending.is_empty() => {
                remote_done.insert(i, result);
            }
            () = tokio::time::sleep_until(deadline) => {}
        }
    };

    // Archive results into their places, in request order, within the response budget.
    let mut budget = max_bytes as u64;
    let mut first_with_data = true;
    for (i, outcome) in outcomes.iter_mut().enumerate() {
        if let Some(early) = early.remove(&i) {
            *outcome = early;
        } else if let (Plan::Remote { tier, bounds }, Ok(view)) =
            (&targets[i].plan, &targets[i].found)
        {
            *outcome = Outcome::of(None, *bounds);
            let now = view.bounds_now();
            outcome.high_watermark = now.high_watermark;
            outcome.last_stable_offset = now.last_stable;
            match remote_done.remove(&i) {
                // Still running: nothing this time, no error; it lands in the cache.
                None => {}
                Some(Ok(Some(slice))) => {
                    let len = slice.records.len() as u64;
                    if len <= budget || first_with_data {
                        if let Some(tiering) = &node.tiering {
                            tiering
                                .metrics
                                .archive_sent_bytes
                                .fetch_add(len, std::sync::atomic::Ordering::Relaxed);
                        }
                        outcome.records = slice.records;
                        outcome.aborted = slice
                            .aborted
                            .iter()
                            .map(|a| AbortedTxn {
                                producer_id: a.producer_id,
                                first_offset: a.first_offset,
                                last_offset: a.last_offset,
                            })
                            .collect();
                    }
                }
                // Retention removed it meanwhile: it is gone for every tier.
                Some(Ok(None)) => outcome.error = Some(ErrorCode::OffsetOutOfRange),
                Some(Err(e)) => {
                    // This fetch reports it; the next one need not.
                    tier.take_read_failure();
                    outcome.error = Some(for_archive(ReadFailure::of(&e)));
                }
            }
        }
        if !outcome.records.is_empty() {
            first_with_data = false;
            budget = budget.saturating_sub(outcome.records.len() as u64);
        }
    }
    let sent: u64 = outcomes.iter().map(|o| o.records.len() as u64).sum();
    Metrics::add(&node.metrics.fetch_bytes, sent);
    let mut response = build(&targets, outcomes, uses_ids, isolation);
    if version >= 16 {
        add_leader_hints(&node, &targets, &mut response, caller.listener());
    }
    response
}

/// Reads every local target (blocking), honouring the byte limits; other targets are left
/// empty here.
fn read_local(targets: &[Target], max_bytes: u32, isolation: Isolation) -> Vec<Outcome> {
    let mut budget = max_bytes;
    let mut first_with_data = true;
    targets
        .iter()
        .map(|target| {
            let view = match &target.found {
                Ok(view) => view,
                Err(code) => {
                    return Outcome {
                        error: Some(*code),
                        ..Outcome::empty()
                    };
                }
            };
            let Plan::Local { tiered } = target.plan else {
                return Outcome::empty();
            };
            if budget == 0 && !first_with_data {
                return Outcome::of(None, view.bounds_now());
            }
            let limit = (target.partition_max_bytes.max(0) as u32).min(budget);
            let read = view.read_local(target.fetch_offset, limit, tiered, isolation);
            let mut outcome = Outcome::of(read.error, read.bounds);
            outcome.aborted = read.aborted;
            let len = read.records.len() as u32;
            if len > budget && !first_with_data {
                // Only the first partition with data may exceed the budget.
                return outcome;
            }
            if len > 0 {
                first_with_data = false;
            }
            budget = budget.saturating_sub(len);
            outcome.records = read.records;
            outcome
        })
        .collect()
}

/// KIP-951: each partition refused for want of leadership names its leader, and the
/// response lists those leaders' endpoints.
fn add_leader_hints(node: &Node, targets: &[Target], response: &mut FetchResponse, listener: &str) {
    let mut hinted = Vec::new();
    let partitions = response
        .responses
        .iter_mut()
        .flat_map(|t| t.partitions.iter_mut());
    // `build` keeps the targets' order.
    for (target, partition) in targets.iter().zip(partitions) {
        if !leader_hint::wants_hint(partition.error_code) {
            continue;
        }
        if let Some(claim) =
            leader_hint::leader_of(node, target.topic.0.as_str(), target.partition_index)
        {
            partition.current_leader = LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(claim.leader))
                .with_leader_epoch(claim.epoch);
            hinted.push(claim.leader);
        }
    }
    response.node_endpoints = leader_hint::endpoints(node, hinted, listener)
        .into_iter()
        .map(|(id, (host, port))| {
            NodeEndpoint::default()
                .with_node_id(BrokerId(id))
                .with_host(str_bytes(&host))
                .with_port(port)
        })
        .collect();
}

fn build(
    targets: &[Target],
    outcomes: Vec<Outcome>,
    uses_ids: bool,
    isolation: Isolation,
) -> FetchResponse {
    let mut responses: Vec<FetchableTopicResponse> = Vec::new();
    for (target, outcome) in targets.iter().zip(outcomes) {
        // read_uncommitted gets no list (null), read_committed the aborted transactions
        // among its records, for the client to skip.
        let aborted = (isolation == Isolation::ReadCommitted).then(|| {
            outcome
                .aborted
                .iter()
                .map(|a| {
                    AbortedTransaction::default()
                        .with_producer_id(ProducerId(a.producer_id))
                        .with_first_offset(a.first_offset)
                })
                .collect()
        });
        let partition = PartitionData::default()
            .with_partition_index(target.partition_index)
            .with_error_code(outcome.error.map_or(0, |e| e.code()))
            .with_high_watermark(outcome.high_watermark)
            .with_last_stable_offset(outcome.last_stable_offset)
            .with_aborted_transactions(aborted)
            .with_log_start_offset(outcome.log_start_offset)
            .with_preferred_read_replica(kafka_protocol::messages::BrokerId(-1))
            .with_records(Some(outcome.records));
        let same_topic = responses.last().is_some_and(|last| {
            if uses_ids {
                last.topic_id == target.topic_id
            } else {
                last.topic == target.topic
            }
        });
        if !same_topic {
            let mut topic = FetchableTopicResponse::default();
            if uses_ids {
                topic.topic_id = target.topic_id;
            } else {
                topic.topic = target.topic.clone();
            }
            responses.push(topic);
        }
        responses
            .last_mut()
            .expect("pushed above")
            .partitions
            .push(partition);
    }
    FetchResponse::default().with_responses(responses)
}
