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
            let entry = self.entry(&mut groups, group_id);
            let group = &mut entry.group;
            if group.consumer.is_none() {
                if !group.members.is_empty() {
                    return fail(
                        ErrorCode::GroupIdNotFound,
                        format!(
                            "group {group_id} is a classic group with members; it can become a \
                             consumer group once they have left"
                        ),
                    );
                }
                if !matches!(
                    config.migration,
                    MigrationPolicy::Upgrade | MigrationPolicy::Bidirectional
                ) && group.protocol_type.is_some()
                {
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
            consumer.heartbeat(&request, topics, &config, now, &mut persist)
        };
        if persist && answer.error.is_none() && !self.persist_group(group_id).await {
            return fail(
                ErrorCode::CoordinatorLoadInProgress,
                "the group's state could not be made durable; retry".into(),
            );
        }
        answer
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
