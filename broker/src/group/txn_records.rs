//! What the group log keeps for transactions, beside the groups: each transactional id's
//! state (the transaction coordinator's, see [`crate::txn`]) and the offsets committed in
//! open transactions (TxnOffsetCommit), pending until their transaction's marker. Both load
//! and unload with their group-log partition and are compacted with it.

use std::collections::HashMap;
use std::sync::{Arc, MutexGuard};

use super::coordinator::{Apply, GroupCoordinator, OffsetCommit, Offsets, Ownership};
use super::store::{GroupStore, Key, PendingOffsets, Value};
use crate::protocol::error_code::ErrorCode;
use crate::txn::state::TxnMeta;

/// Takes the pending transactional offsets out of `records`: the last of each, in log order.
pub(super) fn take_pending(records: &mut Vec<(Key, Value)>) -> HashMap<String, PendingOffsets> {
    let mut pending: HashMap<String, PendingOffsets> = HashMap::new();
    records.retain(|(key, value)| {
        let Key::TxnOffset(_, group, producer, topic, partition) = key else {
            return true;
        };
        let offsets = pending
            .entry(group.clone())
            .or_default()
            .entry(*producer)
            .or_default();
        match value {
            Value::Offset(v) => {
                offsets.insert((topic.clone(), *partition), v.clone().into());
            }
            _ => {
                offsets.remove(&(topic.clone(), *partition));
            }
        }
        false
    });
    for by_producer in pending.values_mut() {
        by_producer.retain(|_, offsets| !offsets.is_empty());
    }
    pending.retain(|_, by_producer| !by_producer.is_empty());
    pending
}

/// Takes the transactional ids' records out of `records`: their last states, in log order.
pub(super) fn take_txns(records: &mut Vec<(Key, Value)>) -> HashMap<String, TxnMeta> {
    let mut txns = HashMap::new();
    records.retain(|(key, value)| {
        let Key::Txn(_, id) = key else { return true };
        match value {
            Value::Txn(meta) => {
                txns.insert(id.clone(), meta.clone());
            }
            _ => {
                txns.remove(id);
            }
        }
        false
    });
    txns
}

impl GroupCoordinator {
    pub(super) fn pending(&self) -> MutexGuard<'_, HashMap<String, PendingOffsets>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// TxnOffsetCommit: offsets committed in producer `producer_id`'s open transaction,
    /// recorded (durable before answered) and pending until the transaction's marker.
    ///
    /// # Errors
    ///
    /// `NOT_COORDINATOR` and the like, `KAFKA_STORAGE_ERROR` when the append failed.
    pub async fn commit_in_txn(
        self: &Arc<Self>,
        group_id: &str,
        producer_id: i64,
        offsets: Vec<OffsetCommit>,
    ) -> Result<(), ErrorCode> {
        self.coordinates(group_id)?;
        if offsets.is_empty() {
            return Ok(());
        }
        let records = offsets
            .iter()
            .map(|o| {
                (
                    Key::txn_offset(group_id, producer_id, &o.topic, o.partition),
                    Value::Offset((&o.committed).into()),
                )
            })
            .collect();
        let (this, group) = (self.clone(), group_id.to_string());
        let apply: Apply = Box::new(move |_groups| {
            let mut pending = this.pending();
            let mine = pending
                .entry(group)
                .or_default()
                .entry(producer_id)
                .or_default();
            for o in offsets {
                mine.insert((o.topic, o.partition), o.committed);
            }
        });
        self.submit_and_apply(group_id, records, apply).await
    }

    /// A transaction's marker for group-log partition `p`: producer `producer_id`'s pending
    /// offsets there become committed (COMMIT) or are dropped (ABORT), durably.
    ///
    /// # Errors
    ///
    /// `NOT_COORDINATOR` when this node does not coordinate `p`; `KAFKA_STORAGE_ERROR`.
    pub async fn end_txn_offsets(
        self: &Arc<Self>,
        p: usize,
        producer_id: i64,
        commit: bool,
    ) -> Result<(), ErrorCode> {
        if !matches!(self.ownership(p), Ownership::Owned(_)) {
            return Err(ErrorCode::NotCoordinator);
        }
        let ending: Vec<(String, Offsets)> = self
            .pending()
            .iter()
            .filter(|(group, _)| GroupStore::partition_of(group) == p)
            .filter_map(|(group, by_producer)| {
                by_producer
                    .get(&producer_id)
                    .map(|offsets| (group.clone(), offsets.clone()))
            })
            .collect();
        for (group, offsets) in ending {
            let mut records = Vec::new();
            for ((topic, partition), committed) in &offsets {
                if commit {
                    records.push((
                        Key::offset(&group, topic, *partition),
                        Value::Offset(committed.into()),
                    ));
                }
                records.push((
                    Key::txn_offset(&group, producer_id, topic, *partition),
                    Value::Tombstone,
                ));
            }
            let (this, id) = (self.clone(), group.clone());
            let apply: Apply = Box::new(move |groups| {
                if commit {
                    let entry = this.entry(groups, &id);
                    for (tp, committed) in &offsets {
                        entry.group.offsets.insert(tp.clone(), committed.clone());
                    }
                }
                let mut pending = this.pending();
                if let Some(by_producer) = pending.get_mut(&id) {
                    by_producer.remove(&producer_id);
                    if by_producer.is_empty() {
                        pending.remove(&id);
                    }
                }
            });
            self.submit_and_apply(&group, records, apply).await?;
        }
        Ok(())
    }

    /// True when `group_id` has an offset of `topic`/`partition` committed in a transaction
    /// still open (OffsetFetch with `require_stable` answers UNSTABLE_OFFSET_COMMIT, KIP-447).
    pub fn has_pending_offset(&self, group_id: &str, topic: &str, partition: i32) -> bool {
        self.pending().get(group_id).is_some_and(|by_producer| {
            by_producer
                .values()
                .any(|offsets| offsets.contains_key(&(topic.to_string(), partition)))
        })
    }

    pub(super) fn txns(&self) -> MutexGuard<'_, HashMap<String, TxnMeta>> {
        self.txns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A transactional id's state, if this node coordinates it and knows it.
    pub fn txn(&self, transactional_id: &str) -> Option<TxnMeta> {
        self.txns().get(transactional_id).cloned()
    }

    /// Every transactional id this node coordinates, with its state.
    pub fn owned_txns(&self) -> Vec<(String, TxnMeta)> {
        self.txns()
            .iter()
            .map(|(id, meta)| (id.clone(), meta.clone()))
            .collect()
    }

    /// The leader epoch at which this node coordinates `id`'s partition (the coordinator
    /// epoch transaction markers carry), if it does.
    pub fn coordinator_epoch(&self, id: &str) -> Option<i32> {
        match self.ownership(GroupStore::partition_of(id)) {
            Ownership::Owned(epoch) => Some(epoch),
            _ => None,
        }
    }

    /// Forgets a transactional id (it expired): a tombstone in the group log, then memory.
    ///
    /// # Errors
    ///
    /// As [`Self::save_txn`].
    pub async fn forget_txn(self: &Arc<Self>, transactional_id: &str) -> Result<(), ErrorCode> {
        let records = vec![(Key::txn(transactional_id), Value::Tombstone)];
        let (this, id) = (self.clone(), transactional_id.to_string());
        let apply: Apply = Box::new(move |_groups| {
            this.txns().remove(&id);
        });
        self.submit_and_apply(transactional_id, records, apply)
            .await
    }

    /// Records a transactional id's new state in the group log; it is the state in memory
    /// once durable (answered only then).
    ///
    /// # Errors
    ///
    /// `NOT_COORDINATOR` when this node no longer coordinates it, `KAFKA_STORAGE_ERROR`
    /// when the append failed.
    pub async fn save_txn(
        self: &Arc<Self>,
        transactional_id: &str,
        meta: TxnMeta,
    ) -> Result<(), ErrorCode> {
        let records = vec![(Key::txn(transactional_id), Value::Txn(meta.clone()))];
        let (this, id) = (self.clone(), transactional_id.to_string());
        let apply: Apply = Box::new(move |_groups| {
            this.txns().insert(id, meta);
        });
        self.submit_and_apply(transactional_id, records, apply)
            .await
    }
}
