//! The consumer group protocol of KIP-848 (`group.protocol=consumer`), as a sans-io state
//! machine: one [`ConsumerGroup`], driven by ConsumerGroupHeartbeat and the clock.
//!
//! The broker computes the assignment. Three epochs move it along:
//!
//! - the **group epoch** goes up whenever what the assignment depends on changes: a member
//!   joins or leaves, a subscription changes, a subscribed topic appears, goes or grows;
//! - the **assignment epoch** catches up with it when the assignor ([`Assignor::Uniform`] or
//!   [`Assignor::Range`]) computes a new *target* assignment for every member;
//! - each **member epoch** catches up with the assignment epoch as the member reconciles, one
//!   heartbeat at a time: first it gives up what its target no longer holds (it is told its
//!   smaller assignment and must heartbeat again without those partitions), and only then does
//!   it get its new epoch and the partitions it gains, and only those no other member still
//!   owns. So a partition is never owned by two members at once, and members whose targets
//!   did not change keep consuming through a rebalance.
//!
//! A member that misses heartbeats for the session timeout is removed; one that does not give
//! up its partitions within its rebalance timeout is removed too. A static member
//! (`group.instance.id`) leaving with epoch -2 keeps its place for the session timeout, and
//! the member that comes back with the same instance id takes over its assignment and epoch.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::protocol::error_code::ErrorCode;

/// Partitions by topic name.
pub type Partitions = BTreeMap<String, BTreeSet<i32>>;

/// What the group needs to know of the cluster's topics: partition counts by name (internal
/// topics left out), for subscriptions and regular expressions.
pub type TopicsView = BTreeMap<String, i32>;

/// The view of `topics` (name, partition count) a consumer group works with: internal
/// topics (`__*`) are left out, as Kafka leaves them out of regular expressions.
pub fn topics_view<'a>(topics: impl IntoIterator<Item = (&'a str, i32)>) -> TopicsView {
    topics
        .into_iter()
        .filter(|(name, _)| !name.starts_with("__"))
        .map(|(name, n)| (name.to_string(), n))
        .collect()
}

/// A server-side assignor (`group.consumer.assignors`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Assignor {
    /// Balanced, sticky: each member keeps what it can of its target, the rest goes to the
    /// members with the fewest partitions.
    Uniform,
    /// Per topic, consecutive ranges of partitions to the topic's subscribers in member-id
    /// order (Kafka's range assignor, server side).
    Range,
}

impl Assignor {
    /// By name.
    pub fn parse(name: &str) -> Option<Assignor> {
        match name {
            "uniform" => Some(Assignor::Uniform),
            "range" => Some(Assignor::Range),
            _ => None,
        }
    }

    /// Kafka's name.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Uniform => "uniform",
            Assignor::Range => "range",
        }
    }
}

/// When a group may change protocol (Kafka's `group.consumer.migration.policy`); silt changes
/// a group's protocol only while it has no members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationPolicy {
    /// Never.
    Disabled,
    /// An empty classic group may become a consumer group.
    Upgrade,
    /// An empty consumer group may become a classic group.
    Downgrade,
    /// Both.
    Bidirectional,
}

impl MigrationPolicy {
    /// By Kafka's name.
    pub fn parse(name: &str) -> Option<MigrationPolicy> {
        match name {
            "disabled" => Some(MigrationPolicy::Disabled),
            "upgrade" => Some(MigrationPolicy::Upgrade),
            "downgrade" => Some(MigrationPolicy::Downgrade),
            "bidirectional" => Some(MigrationPolicy::Bidirectional),
            _ => None,
        }
    }
}

/// Settings of consumer groups (Kafka's `group.consumer.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// `group.consumer.heartbeat.interval.ms`.
    pub heartbeat_interval_ms: i32,
    /// `group.consumer.session.timeout.ms`.
    pub session_timeout_ms: i32,
    /// The first of `group.consumer.assignors`: used when a member names none.
    pub default_assignor: Assignor,
    /// `group.consumer.migration.policy`.
    pub migration: MigrationPolicy,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            heartbeat_interval_ms: 5_000,
            session_timeout_ms: 45_000,
            default_assignor: Assignor::Uniform,
            migration: MigrationPolicy::Bidirectional,
        }
    }
}

/// One member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerMember {
    /// Member id (the client's own, from ConsumerGroupHeartbeat v1).
    pub member_id: String,
    /// `group.instance.id`, for a static member.
    pub instance_id: Option<String>,
    /// `client.rack`.
    pub rack_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Its epoch.
    pub member_epoch: i32,
    /// Its epoch before the last change (a heartbeat whose answer was lost still counts).
    pub previous_epoch: i32,
    /// `max.poll.interval.ms`: how long it has to give partitions up.
    pub rebalance_timeout_ms: i32,
    /// Topics subscribed by name.
    pub subscribed_topics: Vec<String>,
    /// Topics subscribed by regular expression (RE2 syntax).
    pub subscribed_regex: Option<String>,
    /// The assignor it asked for.
    pub assignor: Option<Assignor>,
    /// What it owns.
    pub assigned: Partitions,
    /// What it was told to give up and has not yet.
    pub revoking: Partitions,
    /// A static member that left with epoch -2: kept until its session ends.
    #[serde(default)]
    pub departed: bool,
    /// For a member still on the classic protocol (the group was upgraded while it had
    /// members; see [`super::migration`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classic: Option<super::migration::ClassicMember>,
    #[serde(skip)]
    pub(super) expires_at_ms: i64,
    #[serde(skip)]
    pub(super) revoke_deadline_ms: Option<i64>,
    /// Its assignment changed since it was last told.
    #[serde(skip)]
    pub(super) unsent: bool,
}

/// A heartbeat, decoded (topic ids already turned into names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Heartbeat {
    /// Member id.
    pub member_id: String,
    /// 0 to join, -1 to leave, -2 for a static member leaving for a while.
    pub member_epoch: i32,
    /// `group.instance.id`.
    pub instance_id: Option<String>,
    /// `client.rack` (null: unchanged).
    pub rack_id: Option<String>,
    /// -1: unchanged.
    pub rebalance_timeout_ms: i32,
    /// `None`: unchanged.
    pub subscribed_topics: Option<Vec<String>>,
    /// `None`: unchanged.
    pub subscribed_regex: Option<String>,
    /// `None`: unchanged.
    pub assignor: Option<String>,
    /// What the member owns now; `None`: unchanged.
    pub owned: Option<Partitions>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatAnswer {
    /// The error, with a message, or `None`.
    pub error: Option<(ErrorCode, String)>,
    /// The member's id.
    pub member_id: String,
    /// Its epoch now.
    pub member_epoch: i32,
    /// How often to heartbeat.
    pub heartbeat_interval_ms: i32,
    /// Its assignment, when it changed since the last answer.
    pub assignment: Option<Partitions>,
}

impl HeartbeatAnswer {
    fn error(error: ErrorCode, message: String, request: &Heartbeat) -> HeartbeatAnswer {
        HeartbeatAnswer {
            error: Some((error, message)),
            member_id: request.member_id.clone(),
            member_epoch: request.member_epoch,
            heartbeat_interval_ms: 0,
            assignment: None,
        }
    }
}

/// A consumer group's state: what is persisted, plus the members' timers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerGroup {
    /// Group epoch.
    pub group_epoch: i32,
    /// Epoch of the target assignment.
    pub assignment_epoch: i32,
    /// The assignor that computed the target.
    pub assignor: Assignor,
    /// Members by id.
    pub members: BTreeMap<String, ConsumerMember>,
    /// The target assignment, by member.
    pub target: BTreeMap<String, Partitions>,
    /// Partition counts of the subscribed topics when the group epoch last moved.
    pub subscribed: TopicsView,
}

impl ConsumerGroup {
    /// A new, empty group.
    pub fn new(assignor: Assignor) -> ConsumerGroup {
        ConsumerGroup {
            group_epoch: 0,
            assignment_epoch: 0,
            assignor,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            subscribed: TopicsView::new(),
        }
    }

    /// A group read back from the log: sessions restart now.
    pub fn restore(mut self, config: &ConsumerConfig, now_ms: i64) -> ConsumerGroup {
        for member in self.members.values_mut() {
            let session = member
                .classic
                .as_ref()
                .map_or(config.session_timeout_ms, |c| c.session_timeout_ms);
            member.expires_at_ms = now_ms + i64::from(session);
            member.revoke_deadline_ms = (!member.revoking.is_empty())
                .then(|| now_ms + i64::from(member.rebalance_timeout_ms));
            member.unsent = true;
        }
        self
    }

    /// True without members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Kafka's name of the group's state.
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.group_epoch > self.assignment_epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|m| m.member_epoch != self.assignment_epoch || !m.revoking.is_empty())
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// Topics subscribed by some member (names and regular expressions resolved).
    pub fn subscribed_topics(&self, topics: &TopicsView) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for member in self.members.values() {
            out.extend(resolve(member, topics));
        }
        out
    }

    /// Checks an offset commit's member and epoch (OffsetCommit v9: the member epoch in the
    /// generation field). An empty member id and epoch -1 is an admin's commit: only to an
    /// empty group.
    pub fn check_commit(&self, member_id: &str, epoch: i32) -> Result<(), ErrorCode> {
        if member_id.is_empty() && epoch < 0 {
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(ErrorCode::UnknownMemberId)
            };
        }
        let Some(member) = self.members.get(member_id) else {
            return Err(ErrorCode::UnknownMemberId);
        };
        if member.classic.is_some() {
            // A classic member's generation is its epoch; it knows only this error.
            return if epoch == member.member_epoch {
                Ok(())
            } else {
                Err(ErrorCode::IllegalGeneration)
            };
        }
        match epoch.cmp(&member.member_epoch) {
            std::cmp::Ordering::Equal => Ok(()),
            std::cmp::Ordering::Less => Err(ErrorCode::StaleMemberEpoch),
            std::cmp::Ordering::Greater => Err(ErrorCode::FencedMemberEpoch),
        }
    }

    /// One heartbeat. `topics` is the cluster's topics now; `persist` is set when the group's
    /// persisted state changed (the answer must wait for it to be durable).
    pub fn heartbeat(
        &mut self,
        request: &Heartbeat,
        topics: &TopicsView,
        config: &ConsumerConfig,
        now_ms: i64,
        persist: &mut bool,
    ) -> HeartbeatAnswer {
        if let Some(regex) = &request.subscribed_regex
            && let Err(e) = regex::Regex::new(regex)
        {
            return HeartbeatAnswer::error(
                ErrorCode::InvalidRegularExpression,
                format!("subscription regular expression {regex:?}: {e}"),
                request,
            );
        }
        let assignor = match request.assignor.as_deref() {
            None | Some("") => None,
            Some(name) => match Assignor::parse(name) {
                Some(a) => Some(a),
                None => {
                    return HeartbeatAnswer::error(
                        ErrorCode::UnsupportedAssignor,
                        format!("assignor {name:?} is not one of uniform, range"),
                        request,
                    );
                }
            },
        };
        let member_id = request.member_id.clone();
        let epoch_before = self.group_epoch;
        match request.member_epoch {
            0 => {
                if let Err(answer) = self.join(request, assignor, config, now_ms, persist) {
                    return *answer;
                }
            }
            -1 | -2 => return self.leave(request, config, now_ms, persist),
            epoch => {
                let Some(member) = self.members.get(&member_id).filter(|m| m.classic.is_none())
                else {
                    return HeartbeatAnswer::error(
                        ErrorCode::UnknownMemberId,
                        format!("member {member_id} is not in the group"),
                        request,
                    );
                };
                let lost_answer = epoch == member.previous_epoch
                    && request.owned.as_ref().is_some_and(|owned| {
                        owned.iter().all(|(t, ps)| {
                            ps.iter()
                                .all(|p| member.assigned.get(t).is_some_and(|a| a.contains(p)))
                        })
                    });
                if epoch != member.member_epoch && !lost_answer {
                    return HeartbeatAnswer::error(
                        ErrorCode::FencedMemberEpoch,
                        format!(
                            "member {member_id} is at epoch {}, not {epoch}",
                            member.member_epoch
                        ),
                        request,
                    );
                }
                if lost_answer {
                    // Tell it again.
                    if let Some(m) = self.members.get_mut(&member_id) {
                        m.unsent = true;
                    }
                }
                self.update_subscription(&member_id, request, assignor, persist);
            }
        }
        let Some(member) = self.members.get_mut(&member_id) else {
            return HeartbeatAnswer::error(
                ErrorCode::UnknownMemberId,
                format!("member {member_id} is not in the group"),
                request,
            );
        };
        member.expires_at_ms = now_ms + i64::from(config.session_timeout_ms);
        if request.rebalance_timeout_ms > 0 {
            member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        }
        if request.rack_id.is_some() {
            member.rack_id = request.rack_id.clone();
        }
        // The member acknowledges a revocation by no longer listing those partitions.
        if let Some(owned) = &request.owned
            && !member.revoking.is_empty()
        {
            let still: Partitions = member
                .revoking
                .iter()
                .map(|(t, ps)| {
                    let kept: BTreeSet<i32> = ps
                        .iter()
                        .filter(|p| owned.get(t).is_some_and(|o| o.contains(p)))
                        .copied()
                        .collect();
                    (t.clone(), kept)
                })
                .filter(|(_, ps)| !ps.is_empty())
                .collect();
            if still != member.revoking {
                member.revoking = still;
                *persist = true;
                if member.revoking.is_empty() {
                    member.revoke_deadline_ms = None;
                }
            }
        }
        self.refresh_metadata(topics, self.group_epoch != epoch_before, persist);
        if self.group_epoch > self.assignment_epoch {
            self.compute_target(topics);
            *persist = true;
        }
        self.reconcile(&member_id, now_ms, persist);
        let member = self.members.get_mut(&member_id).expect("reconciled above");
        let assignment = std::mem::take(&mut member.unsent).then(|| member.assigned.clone());
        HeartbeatAnswer {
            error: None,
            member_id,
            member_epoch: member.member_epoch,
            heartbeat_interval_ms: config.heartbeat_interval_ms,
            assignment,
        }
    }

    fn join(
        &mut self,
        request: &Heartbeat,
        assignor: Option<Assignor>,
        config: &ConsumerConfig,
        now_ms: i64,
        persist: &mut bool,
    ) -> Result<(), Box<HeartbeatAnswer>> {
        let fail =
            |code, message: String| Err(Box::new(HeartbeatAnswer::error(code, message, request)));
        if request.member_id.is_empty() {
            return fail(
                ErrorCode::InvalidRequest,
                "a joining member needs a member id".into(),
            );
        }
        if request.subscribed_topics.is_none() && request.subscribed_regex.is_none() {
            return fail(
                ErrorCode::InvalidRequest,
                "a joining member subscribes to topics or a regular expression".into(),
            );
        }
        if request.rebalance_timeout_ms <= 0 {
            return fail(
                ErrorCode::InvalidRequest,
                "a joining member gives its rebalance timeout".into(),
            );
        }
        // A member joining again under its id (fenced, or its join's answer lost) starts over:
        // what it owned is released.
        self.remove_member(&request.member_id);
        let mut member = ConsumerMember {
            member_id: request.member_id.clone(),
            instance_id: request.instance_id.clone(),
            rack_id: request.rack_id.clone(),
            client_id: request.client_id.clone(),
            client_host: request.client_host.clone(),
            member_epoch: 0,
            previous_epoch: 0,
            rebalance_timeout_ms: request.rebalance_timeout_ms,
            subscribed_topics: request.subscribed_topics.clone().unwrap_or_default(),
            subscribed_regex: request.subscribed_regex.clone().filter(|r| !r.is_empty()),
            assignor,
            assigned: Partitions::new(),
            revoking: Partitions::new(),
            departed: false,
            classic: None,
            expires_at_ms: now_ms + i64::from(config.session_timeout_ms),
            revoke_deadline_ms: None,
            unsent: true,
        };
        if let Some(instance) = &request.instance_id
            && let Some(old_id) = self
                .members
                .values()
                .find(|m| {
                    m.instance_id.as_ref() == Some(instance) && m.member_id != request.member_id
                })
                .map(|m| m.member_id.clone())
        {
            let old = &self.members[&old_id];
            if !old.departed {
                return fail(
                    ErrorCode::UnreleasedInstanceId,
                    format!("instance {instance} is still held by member {old_id}"),
                );
            }
            // The static member is back under a new id: it takes over its place.
            let old = self.members.remove(&old_id).expect("found above");
            member.member_epoch = old.member_epoch;
            member.previous_epoch = old.previous_epoch;
            member.assigned = old.assigned;
            member.revoking = old.revoking;
            if let Some(target) = self.target.remove(&old_id) {
                self.target.insert(member.member_id.clone(), target);
            }
            let same_subscription = member.subscribed_topics == old.subscribed_topics
                && member.subscribed_regex == old.subscribed_regex;
            self.members.insert(member.member_id.clone(), member);
            *persist = true;
            if !same_subscription {
                self.group_epoch += 1;
            }
            return Ok(());
        }
        self.members.insert(member.member_id.clone(), member);
        self.group_epoch += 1;
        *persist = true;
        Ok(())
    }

    fn leave(
        &mut self,
        request: &Heartbeat,
        config: &ConsumerConfig,
        now_ms: i64,
        persist: &mut bool,
    ) -> HeartbeatAnswer {
        let answer = HeartbeatAnswer {
            error: None,
            member_id: request.member_id.clone(),
            member_epoch: request.member_epoch,
            heartbeat_interval_ms: 0,
            assignment: None,
        };
        let Some(member) = self.members.get_mut(&request.member_id) else {
            // Leaving twice is fine; an unknown member leaving is told so.
            return if request.member_epoch == -1 {
                answer
            } else {
                HeartbeatAnswer::error(
                    ErrorCode::UnknownMemberId,
                    format!("member {} is not in the group", request.member_id),
                    request,
                )
            };
        };
        if request.member_epoch == -2 && member.instance_id.is_some() {
            // A static member going for a while keeps its partitions until its session ends.
            member.departed = true;
            member.expires_at_ms = now_ms + i64::from(config.session_timeout_ms);
            *persist = true;
            return answer;
        }
        self.remove_member(&request.member_id);
        *persist = true;
        answer
    }

    pub(super) fn remove_member(&mut self, member_id: &str) {
        if self.members.remove(member_id).is_some() {
            self.target.remove(member_id);
            self.group_epoch += 1;
        }
    }

    fn update_subscription(
        &mut self,
        member_id: &str,
        request: &Heartbeat,
        assignor: Option<Assignor>,
        persist: &mut bool,
    ) {
        let Some(member) = self.members.get_mut(member_id) else {
            return;
        };
        let mut changed = false;
        if let Some(topics) = &request.subscribed_topics
            && *topics != member.subscribed_topics
        {
            member.subscribed_topics = topics.clone();
            changed = true;
        }
        if let Some(regex) = &request.subscribed_regex {
            let regex = Some(regex.clone()).filter(|r| !r.is_empty());
            if regex != member.subscribed_regex {
                member.subscribed_regex = regex;
                changed = true;
            }
        }
        if assignor.is_some() && assignor != member.assignor {
            member.assignor = assignor;
            changed = true;
        }
        if member.departed {
            member.departed = false;
            *persist = true;
        }
        if changed {
            self.group_epoch += 1;
            *persist = true;
        }
    }

    /// Moves the group epoch when a subscribed topic appeared, went, or grew (or a regular
    /// expression matches a new topic), unless this heartbeat moved it already.
    pub(super) fn refresh_metadata(
        &mut self,
        topics: &TopicsView,
        moved: bool,
        persist: &mut bool,
    ) {
        let now: TopicsView = self
            .subscribed_topics(topics)
            .into_iter()
            .filter_map(|t| topics.get(&t).map(|n| (t, *n)))
            .collect();
        if now != self.subscribed {
            self.subscribed = now;
            if !moved {
                self.group_epoch += 1;
            }
            *persist = true;
        }
    }

    /// The assignor the members ask for most (ties: the configured default).
    fn chosen_assignor(&self) -> Assignor {
        let mut votes: BTreeMap<&'static str, (usize, Assignor)> = BTreeMap::new();
        for member in self.members.values() {
            if let Some(a) = member.assignor {
                votes.entry(a.name()).or_insert((0, a)).0 += 1;
            }
        }
        votes
            .values()
            .max_by_key(|(n, a)| (*n, *a == self.assignor))
            .map_or(self.assignor, |(_, a)| *a)
    }

    pub(super) fn compute_target(&mut self, topics: &TopicsView) {
        let assignor = self.chosen_assignor();
        let subscriptions: BTreeMap<String, BTreeSet<String>> = self
            .members
            .values()
            .map(|m| (m.member_id.clone(), resolve(m, topics)))
            .collect();
        self.target = match assignor {
            Assignor::Uniform => uniform(&subscriptions, topics, &self.target),
            Assignor::Range => range(&subscriptions, topics),
        };
        self.assignor = assignor;
        self.assignment_epoch = self.group_epoch;
    }

    /// The partitions the other members own or are still giving up: not to be given to
    /// `member_id` yet.
    pub(super) fn held_by_others(&self, member_id: &str) -> BTreeSet<(String, i32)> {
        self.members
            .values()
            .filter(|m| m.member_id != member_id)
            .flat_map(|m| {
                m.assigned
                    .iter()
                    .chain(m.revoking.iter())
                    .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
            })
            .collect()
    }

    /// Moves a member towards its target (see the module documentation).
    fn reconcile(&mut self, member_id: &str, now_ms: i64, persist: &mut bool) {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let owned_elsewhere = self.held_by_others(member_id);
        let assignment_epoch = self.assignment_epoch;
        let Some(member) = self.members.get_mut(member_id) else {
            return;
        };
        if !member.revoking.is_empty() {
            return;
        }
        // First give up what the target no longer holds.
        let mut revoke = Partitions::new();
        for (topic, partitions) in &member.assigned {
            let gone: BTreeSet<i32> = partitions
                .iter()
                .filter(|p| !target.get(topic).is_some_and(|t| t.contains(p)))
                .copied()
                .collect();
            if !gone.is_empty() {
                revoke.insert(topic.clone(), gone);
            }
        }
        if !revoke.is_empty() {
            for (topic, gone) in &revoke {
                if let Some(partitions) = member.assigned.get_mut(topic) {
                    partitions.retain(|p| !gone.contains(p));
                }
            }
            member.assigned.retain(|_, ps| !ps.is_empty());
            member.revoking = revoke;
            member.revoke_deadline_ms = Some(now_ms + i64::from(member.rebalance_timeout_ms));
            member.unsent = true;
            *persist = true;
            return;
        }
        // Then take what is free of the target, and the new epoch.
        let mut gained = false;
        for (topic, partitions) in &target {
            for p in partitions {
                if owned_elsewhere.contains(&(topic.clone(), *p)) {
                    continue;
                }
                if member.assigned.entry(topic.clone()).or_default().insert(*p) {
                    gained = true;
                }
            }
        }
        member.assigned.retain(|_, ps| !ps.is_empty());
        if gained {
            member.unsent = true;
            *persist = true;
        }
        if member.member_epoch != assignment_epoch {
            member.previous_epoch = member.member_epoch;
            member.member_epoch = assignment_epoch;
            member.unsent = true;
            *persist = true;
        }
    }

    /// Expires members whose session ended or who did not give up partitions in time; true
    /// when the group changed.
    pub fn tick(&mut self, now_ms: i64) -> Vec<String> {
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.expires_at_ms <= now_ms || m.revoke_deadline_ms.is_some_and(|d| d <= now_ms)
            })
            .map(|m| m.member_id.clone())
            .collect();
        for member in &expired {
            self.remove_member(member);
        }
        expired
    }
}

/// The topics a member's subscription names that exist, and those its expression matches.
fn resolve(member: &ConsumerMember, topics: &TopicsView) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = member
        .subscribed_topics
        .iter()
        .filter(|t| topics.contains_key(*t))
        .cloned()
        .collect();
    if let Some(pattern) = &member.subscribed_regex
        && let Ok(regex) = regex::Regex::new(&format!("^(?:{pattern})$"))
    {
        out.extend(topics.keys().filter(|t| regex.is_match(t)).cloned());
    }
    out
}

/// The uniform assignor: every subscribed partition to one of its subscribers, counts within
/// one of each other where subscriptions allow, each member keeping what it can of its
/// previous target.
fn uniform(
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
    topics: &TopicsView,
    previous: &BTreeMap<String, Partitions>,
) -> BTreeMap<String, Partitions> {
    let mut all: Vec<(String, i32)> = subscriptions
        .values()
        .flatten()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .flat_map(|t| (0..topics.get(t).copied().unwrap_or(0)).map(move |p| (t.clone(), p)))
        .collect();
    all.sort();
    let members: Vec<&String> = subscriptions.keys().collect();
    let mut out: BTreeMap<String, Partitions> = members
        .iter()
        .map(|m| ((*m).clone(), Partitions::new()))
        .collect();
    if members.is_empty() {
        return out;
    }
    // Counts within one of each other: `floor`, and `extra` members one more.
    let floor = all.len() / members.len();
    let extra = all.len() % members.len();
    let mut over = 0usize;
    let mut count: BTreeMap<String, usize> = members.iter().map(|m| ((*m).clone(), 0)).collect();
    let mut taken: BTreeSet<(String, i32)> = BTreeSet::new();
    // Keep what each member had, within its share.
    for member in &members {
        let Some(had) = previous.get(*member) else {
            continue;
        };
        let subscribed = &subscriptions[*member];
        for (topic, partitions) in had {
            if !subscribed.contains(topic) {
                continue;
            }
            for p in partitions {
                let n = count[*member];
                let allowed = n < floor || (n == floor && over < extra);
                if *p >= topics.get(topic).copied().unwrap_or(0) || !allowed {
                    continue;
                }
                if taken.insert((topic.clone(), *p)) {
                    if n == floor {
                        over += 1;
                    }
                    out.get_mut(*member)
                        .expect("listed")
                        .entry(topic.clone())
                        .or_default()
                        .insert(*p);
                    *count.get_mut(*member).expect("listed") += 1;
                }
            }
        }
    }
    // The rest to the eligible member with the fewest.
    for (topic, p) in all {
        if taken.contains(&(topic.clone(), p)) {
            continue;
        }
        let Some(member) = members
            .iter()
            .filter(|m| subscriptions[**m].contains(&topic))
            .min_by_key(|m| (count[**m], (**m).clone()))
        else {
            continue;
        };
        out.get_mut(*member)
            .expect("listed")
            .entry(topic.clone())
            .or_default()
            .insert(p);
        *count.get_mut(*member).expect("listed") += 1;
    }
    out
}

/// The range assignor: per topic, its partitions in consecutive ranges to its subscribers in
/// member-id order (the first ones get one more when they do not divide evenly).
fn range(
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
    topics: &TopicsView,
) -> BTreeMap<String, Partitions> {
    let mut out: BTreeMap<String, Partitions> = subscriptions
        .keys()
        .map(|m| (m.clone(), Partitions::new()))
        .collect();
    let all_topics: BTreeSet<&String> = subscriptions.values().flatten().collect();
    for topic in all_topics {
        let count = topics.get(topic).copied().unwrap_or(0).max(0) as usize;
        let subscribers: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, s)| s.contains(topic))
            .map(|(m, _)| m)
            .collect();
        if subscribers.is_empty() {
            continue;
        }
        let per = count / subscribers.len();
        let extra = count % subscribers.len();
        let mut next = 0usize;
        for (i, member) in subscribers.iter().enumerate() {
            let n = per + usize::from(i < extra);
            if n > 0 {
                out.get_mut(*member)
                    .expect("listed")
                    .insert(topic.clone(), (next..next + n).map(|p| p as i32).collect());
            }
            next += n;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(list: &[(&str, i32)]) -> TopicsView {
        list.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    fn join(member: &str, subscription: &[&str]) -> Heartbeat {
        Heartbeat {
            member_id: member.into(),
            member_epoch: 0,
            rebalance_timeout_ms: 30_000,
            subscribed_topics: Some(subscription.iter().map(|s| s.to_string()).collect()),
            owned: Some(Partitions::new()),
            ..Heartbeat::default()
        }
    }

    /// A simulated client: what it owns, its epoch, and the heartbeat it sends.
    #[derive(Debug, Default)]
    struct Client {
        epoch: i32,
        owned: Partitions,
    }

    impl Client {
        fn beat(&mut self, group: &mut ConsumerGroup, id: &str, topics: &TopicsView, now: i64) {
            let request = Heartbeat {
                member_id: id.into(),
                member_epoch: self.epoch,
                rebalance_timeout_ms: -1,
                owned: Some(self.owned.clone()),
                ..Heartbeat::default()
            };
            let answer = group.heartbeat(
                &request,
                topics,
                &ConsumerConfig::default(),
                now,
                &mut false,
            );
            assert!(answer.error.is_none(), "{answer:?}");
            self.epoch = answer.member_epoch;
            if let Some(assigned) = answer.assignment {
                self.owned = assigned;
            }
        }
    }

    fn owners(clients: &BTreeMap<String, Client>) -> BTreeMap<(String, i32), Vec<String>> {
        let mut out: BTreeMap<(String, i32), Vec<String>> = BTreeMap::new();
        for (id, c) in clients {
            for (t, ps) in &c.owned {
                for p in ps {
                    out.entry((t.clone(), *p)).or_default().push(id.clone());
                }
            }
        }
        out
    }

    #[test]
    fn members_converge_without_ever_sharing_a_partition() {
        let view = topics(&[("a", 7), ("b", 5)]);
        let config = ConsumerConfig::default();
        let mut group = ConsumerGroup::new(Assignor::Uniform);
        let mut clients: BTreeMap<String, Client> = BTreeMap::new();
        let mut now = 0;
        let mut rng = 7u64;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        for step in 0..400 {
            now += 10;
            let action = next(10);
            if action == 0 && clients.len() < 6 {
                let id = format!("m{step}");
                let answer =
                    group.heartbeat(&join(&id, &["a", "b"]), &view, &config, now, &mut false);
                assert!(answer.error.is_none());
                clients.insert(
                    id,
                    Client {
                        epoch: answer.member_epoch,
                        owned: answer.assignment.unwrap_or_default(),
                    },
                );
            } else if action == 1 && clients.len() > 1 {
                let id = clients
                    .keys()
                    .nth(next(clients.len() as u64) as usize)
                    .unwrap()
                    .clone();
                let mut leave = join(&id, &[]);
                leave.member_epoch = -1;
                group.heartbeat(&leave, &view, &config, now, &mut false);
                clients.remove(&id);
            } else if let Some(id) = clients
                .keys()
                .nth(next(clients.len().max(1) as u64) as usize)
                .cloned()
            {
                clients
                    .get_mut(&id)
                    .unwrap()
                    .beat(&mut group, &id, &view, now);
            }
            for (partition, holders) in owners(&clients) {
                assert!(
                    holders.len() <= 1,
                    "step {step}: {partition:?} owned by {holders:?}"
                );
            }
        }
        // Quiet heartbeats: everyone reaches the assignment epoch; all 12 partitions owned,
        // counts within one.
        for _ in 0..10 {
            now += 10;
            let ids: Vec<String> = clients.keys().cloned().collect();
            for id in ids {
                clients
                    .get_mut(&id)
                    .unwrap()
                    .beat(&mut group, &id, &view, now);
            }
        }
        let owned = owners(&clients);
        assert_eq!(owned.len(), 12, "{owned:?}");
        let counts: Vec<usize> = clients
            .values()
            .map(|c| c.owned.values().map(BTreeSet::len).sum())
            .collect();
        assert!(
            counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1,
            "{counts:?}"
        );
        assert_eq!(group.state_name(), "Stable");
        assert!(clients.values().all(|c| c.epoch == group.assignment_epoch));
    }

    #[test]
    fn a_revocation_comes_before_the_partition_moves() {
        let view = topics(&[("t", 4)]);
        let config = ConsumerConfig::default();
        let mut group = ConsumerGroup::new(Assignor::Uniform);
        let mut a = Client::default();
        let answer = group.heartbeat(&join("a", &["t"]), &view, &config, 0, &mut false);
        a.epoch = answer.member_epoch;
        a.owned = answer.assignment.unwrap();
        assert_eq!(a.owned["t"].len(), 4);
        // b joins: it gets nothing until a gave up two.
        let answer = group.heartbeat(&join("b", &["t"]), &view, &config, 1, &mut false);
        let mut b = Client {
            epoch: answer.member_epoch,
            owned: answer.assignment.unwrap_or_default(),
        };
        assert!(b.owned.values().all(BTreeSet::is_empty));
        b.beat(&mut group, "b", &view, 2);
        assert!(
            b.owned.values().all(BTreeSet::is_empty),
            "not before a revoked"
        );
        a.beat(&mut group, "a", &view, 3);
        assert_eq!(a.owned["t"].len(), 2, "a is told to keep two");
        // a's next heartbeat says it gave them up; then b gets them.
        a.beat(&mut group, "a", &view, 4);
        b.beat(&mut group, "b", &view, 5);
        assert_eq!(b.owned["t"].len(), 2);
        assert_eq!(a.epoch, b.epoch);
    }

    #[test]
    fn range_gives_consecutive_partitions_per_topic() {
        let subscriptions: BTreeMap<String, BTreeSet<String>> = [("m1", ["t"]), ("m2", ["t"])]
            .iter()
            .map(|(m, ts)| (m.to_string(), ts.iter().map(|t| t.to_string()).collect()))
            .collect();
        let out = range(&subscriptions, &topics(&[("t", 5)]));
        assert_eq!(out["m1"]["t"], BTreeSet::from([0, 1, 2]));
        assert_eq!(out["m2"]["t"], BTreeSet::from([3, 4]));
    }

    #[test]
    fn a_static_member_back_under_a_new_id_takes_its_place_without_a_rebalance() {
        let view = topics(&[("t", 4)]);
        let config = ConsumerConfig::default();
        let mut group = ConsumerGroup::new(Assignor::Uniform);
        let mut first = join("a-1", &["t"]);
        first.instance_id = Some("i".into());
        let answer = group.heartbeat(&first, &view, &config, 0, &mut false);
        let owned = answer.assignment.unwrap();
        let epoch = group.group_epoch;
        // It goes for a while (epoch -2): it keeps its partitions.
        let mut away = first.clone();
        away.member_epoch = -2;
        group.heartbeat(&away, &view, &config, 1, &mut false);
        assert!(group.members["a-1"].departed);
        // Back as a new process with a new member id: same partitions, same epoch.
        let mut back = join("a-2", &["t"]);
        back.instance_id = Some("i".into());
        let answer = group.heartbeat(&back, &view, &config, 2, &mut false);
        assert!(answer.error.is_none(), "{answer:?}");
        assert_eq!(answer.assignment.unwrap(), owned);
        assert_eq!(group.group_epoch, epoch, "no rebalance");
        assert!(!group.members.contains_key("a-1"));
        // While it is there, nobody else takes the instance id.
        let mut other = join("b", &["t"]);
        other.instance_id = Some("i".into());
        let answer = group.heartbeat(&other, &view, &config, 3, &mut false);
        assert_eq!(
            answer.error.map(|e| e.0),
            Some(ErrorCode::UnreleasedInstanceId)
        );
    }

    #[test]
    fn a_session_that_ends_removes_the_member() {
        let view = topics(&[("t", 2)]);
        let config = ConsumerConfig::default();
        let mut group = ConsumerGroup::new(Assignor::Uniform);
        group.heartbeat(&join("a", &["t"]), &view, &config, 0, &mut false);
        assert!(
            group
                .tick(i64::from(config.session_timeout_ms) - 1)
                .is_empty()
        );
        assert_eq!(
            group.tick(i64::from(config.session_timeout_ms)),
            vec!["a".to_string()]
        );
        assert!(group.is_empty());
    }
}
