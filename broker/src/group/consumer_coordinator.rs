//! KIP-848 consumer groups in the coordinator: ConsumerGroupHeartbeat and ConsumerGroupDescribe
//! over [`ConsumerGroup`] state machines, kept in the same [`Group`] entries as classic groups
//! (their committed offsets, deletion, listing and persistence are shared). A heartbeat that
//! changed the group answers only once the group's record is durable in the group log.
//!
//! A group changes protocol only while it has no members (`group_consumer_migration_policy`):
//! an empty classic group becomes a consumer group at the first heartbeat (`upgrade`), an
//! empty consumer group a classic one at the first JoinGroup (`downgrade`); its committed
//! offsets stay.

use super::consumer::{ConsumerGroup, Heartbeat, HeartbeatAnswer, MigrationPolicy, TopicsView};
use super::coordinator::GroupCoordinator;
use super::state::GroupState;
use crate::protocol::error_code::ErrorCode;

/// The protocol type of a consumer group, as listed and described.
const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

impl GroupCoordinator {
    /// ConsumerGroupHeartbeat.
    pub async fn consumer_heartbeat(
        &self,
        group_id: &str,
        request: Heartbeat,
        topics: &TopicsView,
    ) -> HeartbeatAnswer {
        let fail = |error: ErrorCode, message: String| HeartbeatAnswer {
            error: Some((error, message)),
            member_id: request.member_id.clone(),
            member_epoch: request.member_epoch,
            heartbeat_interval_ms: 0,
            assignment: None,
        };
        if let Err(error) = self.coordinates(group_id) {
            return fail(
                error,
                format!("this node does not coordinate group {group_id}"),
            );
        }
        let config = self.config().consumer;
        let now = self.clock().now_ms();
        let mut persist = false;
        let answer = {
            let mut groups = self.lock();
            let existed = groups.contains_key(group_id);
            let entry = self.entry(&mut groups, group_id);
            let group = &mut entry.group;
            let may_upgrade = matches!(
                config.migration,
                MigrationPolicy::Upgrade | MigrationPolicy::Bidirectional
            );
            if group.consumer.is_none() && !group.members.is_empty() {
                // Online: a stable group of consumers becomes a consumer group as it is; its
                // classic members carry on with their protocol (see `migration`).
                let consumers = group.protocol_type.as_deref() == Some(CONSUMER_PROTOCOL_TYPE);
                if !may_upgrade || !consumers || group.state != GroupState::Stable {
                    return fail(
                        ErrorCode::GroupIdNotFound,
                        format!(
                            "group {group_id} is a classic group with members that cannot be \
                             upgraded now (it must be a stable group of consumers, and \
                             group_consumer_migration_policy must allow upgrades)"
                        ),
                    );
                }
                tracing::info!(group = %group_id, members = group.members.len(), "classic group upgraded to the consumer protocol");
                let upgraded = ConsumerGroup::upgrade(group, topics, &config);
                group.consumer = Some(upgraded);
                group.members.clear();
                group.static_members.clear();
                group.pending_members.clear();
                group.state = GroupState::Empty;
                persist = true;
            }
            if group.consumer.is_none() {
                if !may_upgrade && group.protocol_type.is_some() {
                    return fail(
                        ErrorCode::GroupIdNotFound,
                        format!(
                            "group {group_id} is a classic group and group_consumer_migration_policy \
                             does not allow upgrades"
                        ),
                    );
                }
                group.consumer = Some(ConsumerGroup::new(config.default_assignor));
                group.protocol_type = Some(CONSUMER_PROTOCOL_TYPE.to_string());
                group.protocol_name = None;
                group.state = GroupState::Empty;
                persist = true;
            }
            let consumer = group.consumer.as_mut().expect("set above");
            let answer = consumer.heartbeat(&request, topics, &config, now, &mut persist);
            if answer.error.is_some() && !existed {
                // A refused first heartbeat leaves no group behind.
                groups.remove(group_id);
            }
            answer
        };
        if persist && answer.error.is_none() && !self.persist_group(group_id).await {
            return fail(
                ErrorCode::CoordinatorLoadInProgress,
                "the group's state could not be made durable; retry".into(),
            );
        }
        answer
    }

    /// A classic member's Heartbeat in a consumer group; `None` when the group is classic.
    pub(super) fn classic_heartbeat_in_consumer_group(
        &self,
        group_id: &str,
        member_id: &str,
        generation: i32,
    ) -> Option<Result<(), ErrorCode>> {
        let now = self.clock().now_ms();
        let mut groups = self.lock();
        let consumer = groups.get_mut(group_id)?.group.consumer.as_mut()?;
        Some(consumer.classic_heartbeat(member_id, generation, now))
    }

    /// A classic member's JoinGroup in a consumer group (answered at once, after its record
    /// is durable); `None` when the group is classic or does not hold the member.
    pub(super) async fn classic_join_in_consumer_group(
        &self,
        group_id: &str,
        request: &super::state::JoinRequest,
    ) -> Option<super::state::JoinResult> {
        // Only a member a consumer group holds as a classic one (the common case, a classic
        // group, returns here without looking at the topics).
        let classic_member =
            |groups: &mut std::collections::HashMap<String, super::coordinator::Entry>| {
                let consumer = groups.get_mut(group_id)?.group.consumer.as_mut()?;
                consumer.members.get(&request.member_id)?.classic.as_ref()?;
                Some(())
            };
        classic_member(&mut self.lock())?;
        let topics = self.topics();
        let topics = &topics;
        let now = self.clock().now_ms();
        let mut persist = false;
        let joined = {
            let mut groups = self.lock();
            // (Checked again: the group may have changed while the topics were read.)
            classic_member(&mut groups)?;
            let consumer = groups.get_mut(group_id)?.group.consumer.as_mut()?;
            consumer.classic_join(
                &request.member_id,
                &request.protocols,
                request.session_timeout_ms,
                request.rebalance_timeout_ms,
                topics,
                now,
                &mut persist,
            )
        };
        let error = |e: ErrorCode| super::state::JoinResult {
            error: Some(e),
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: request.member_id.clone(),
            members: Vec::new(),
        };
        Some(match joined {
            Err(e) => error(e),
            Ok(_) if persist && !self.persist_group(group_id).await => {
                error(ErrorCode::CoordinatorLoadInProgress)
            }
            Ok(joined) => super::state::JoinResult {
                error: None,
                generation: joined.generation,
                protocol_type: Some(CONSUMER_PROTOCOL_TYPE.to_string()),
                protocol_name: joined.protocol_name,
                // Never the leader: the broker assigns.
                leader: String::new(),
                member_id: request.member_id.clone(),
                members: Vec::new(),
            },
        })
    }

    /// A classic member's SyncGroup in a consumer group; `None` when the group is classic.
    pub(super) fn classic_sync_in_consumer_group(
        &self,
        group_id: &str,
        member_id: &str,
        generation: i32,
    ) -> Option<super::state::SyncResult> {
        let mut groups = self.lock();
        let consumer = groups.get_mut(group_id)?.group.consumer.as_mut()?;
        let protocol_name = consumer
            .members
            .get(member_id)
            .and_then(|m| m.classic.as_ref())
            .and_then(|c| c.protocols.first())
            .map(|(name, _)| name.clone());
        Some(match consumer.classic_sync(member_id, generation) {
            Ok(assignment) => super::state::SyncResult {
                error: None,
                protocol_type: Some(CONSUMER_PROTOCOL_TYPE.to_string()),
                protocol_name,
                assignment,
            },
            Err(e) => super::state::SyncResult {
                error: Some(e),
                protocol_type: None,
                protocol_name: None,
                assignment: bytes::Bytes::new(),
            },
        })
    }

    /// Classic members leaving a consumer group; `None` when the group is classic.
    pub(super) async fn classic_leave_in_consumer_group(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Option<Vec<Option<ErrorCode>>> {
        let results: Vec<Option<ErrorCode>> = {
            let mut groups = self.lock();
            let consumer = groups.get_mut(group_id)?.group.consumer.as_mut()?;
            members
                .iter()
                .map(|(member_id, instance)| {
                    let id = match instance {
                        Some(instance) if member_id.is_empty() => consumer
                            .members
                            .values()
                            .find(|m| m.instance_id.as_deref() == Some(instance.as_str()))
                            .map(|m| m.member_id.clone())
                            .unwrap_or_default(),
                        _ => member_id.clone(),
                    };
                    consumer.classic_leave(&id).err()
                })
                .collect()
        };
        self.persist_group(group_id).await;
        Some(results)
    }

    /// A copy of a consumer group (ConsumerGroupDescribe); `Err` with why not.
    ///
    /// # Errors
    ///
    /// NOT_COORDINATOR and the like, or GROUP_ID_NOT_FOUND for an unknown group or a classic
    /// one.
    pub fn consumer_describe(&self, group_id: &str) -> Result<ConsumerGroup, (ErrorCode, String)> {
        self.coordinates(group_id)
            .map_err(|e| (e, format!("this node does not coordinate group {group_id}")))?;
        let groups = self.lock();
        match groups.get(group_id).map(|e| &e.group) {
            None => Err((
                ErrorCode::GroupIdNotFound,
                format!("group {group_id} does not exist"),
            )),
            Some(group) => group.consumer.clone().ok_or_else(|| {
                (
                    ErrorCode::GroupIdNotFound,
                    format!("group {group_id} is not a consumer group"),
                )
            }),
        }
    }

    /// OffsetFetch v9's member check: a consumer group's member fetching offsets must be at
    /// its current epoch (an admin fetch names no member).
    ///
    /// # Errors
    ///
    /// UNKNOWN_MEMBER_ID or STALE_MEMBER_EPOCH.
    pub fn check_fetch_member(
        &self,
        group_id: &str,
        member_id: &str,
        member_epoch: i32,
    ) -> Result<(), ErrorCode> {
        if member_id.is_empty() {
            return Ok(());
        }
        let groups = self.lock();
        let Some(consumer) = groups.get(group_id).and_then(|e| e.group.consumer.as_ref()) else {
            return Ok(());
        };
        match consumer.members.get(member_id) {
            None => Err(ErrorCode::UnknownMemberId),
            Some(m) if member_epoch >= 0 && member_epoch != m.member_epoch => {
                Err(ErrorCode::StaleMemberEpoch)
            }
            Some(_) => Ok(()),
        }
    }

    /// Expires consumer-group members past their session or rebalance timeout.
    pub(super) async fn tick_consumer_groups(&self) {
        let now = self.clock().now_ms();
        let changed: Vec<String> = {
            let mut groups = self.lock();
            groups
                .iter_mut()
                .filter_map(|(id, e)| {
                    let consumer = e.group.consumer.as_mut()?;
                    let expired = consumer.tick(now);
                    if expired.is_empty() {
                        return None;
                    }
                    tracing::info!(group = %id, members = ?expired, "consumer group members expired");
                    Some(id.clone())
                })
                .collect()
        };
        for group_id in changed {
            self.persist_group(&group_id).await;
        }
    }
}
