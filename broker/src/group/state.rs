//! The classic consumer-group protocol, as a sans-io state machine (one [`Group`]).
//!
//! It follows Kafka's `GroupCoordinator`/`GroupMetadata`: states Empty, PreparingRebalance,
//! CompletingRebalance, Stable (Dead for a deleted group). Calls take the request and `now_ms`
//! and return what to answer; answers to requests that wait (a join during a rebalance, a
//! follower's sync before the leader's) come back later as [`Reply`] values, which the shell
//! delivers to the waiting connections. Nothing here sleeps, reads a clock or does I/O.
//!
//! The rules, briefly:
//!
//! - A member joining with no id gets one. From JoinGroup v4 a dynamic member is first told
//!   MEMBER_ID_REQUIRED with its new id and must join again with it (KIP-394), so a client that
//!   dies before learning its id leaves no ghost member behind.
//! - A join of a new member, a changed subscription, or the leader rejoining starts a rebalance:
//!   every member must rejoin within the rebalance timeout; those who do not are dropped. The
//!   first rebalance of an empty group waits `initial_rebalance_delay_ms` for more members
//!   (Kafka's `group.initial.rebalance.delay.ms`).
//! - When all have joined, the generation goes up, the protocol is chosen by vote, the leader
//!   gets everyone's subscriptions; then the leader's SyncGroup hands out the assignments.
//! - Static members (`group.instance.id`, KIP-345) keep their place across restarts: one that
//!   rejoins while the group is stable takes over its old member id's assignment without a
//!   rebalance; the old id is fenced (FENCED_INSTANCE_ID).
//! - A member that neither heartbeats nor waits on a join or sync for its session timeout is
//!   removed, which starts a rebalance.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use crate::protocol::error_code::ErrorCode;

/// Settings of the coordinator (Kafka's `group.*` broker settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`.
    pub session_timeout_min_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub session_timeout_max_ms: i32,
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay_ms: i32,
    /// Size at which a partition of the group log is compacted (0: never).
    pub log_compaction_bytes: u64,
    /// Settings of KIP-848 consumer groups.
    pub consumer: super::consumer::ConsumerConfig,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            session_timeout_min_ms: 6_000,
            session_timeout_max_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            log_compaction_bytes: 64 << 20,
            consumer: super::consumer::ConsumerConfig::default(),
        }
    }
}

/// Where a group is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members (offsets may remain).
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Assigned and running.
    Stable,
    /// Deleted.
    Dead,
}

impl GroupState {
    /// Kafka's name for the state (DescribeGroups, ListGroups).
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// One member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Id given by the coordinator.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
    /// The client's id.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Supported protocols (assignors) with their metadata, in preference order.
    pub protocols: Vec<(String, Bytes)>,
    /// Assignment from the last sync.
    pub assignment: Bytes,
    /// A join request of this member waits for the rebalance to complete.
    pub awaiting_join: bool,
    /// A sync request of this member waits for the leader's.
    pub awaiting_sync: bool,
    /// Removed if not heard from by then (unless waiting on a join or sync).
    pub expires_at_ms: i64,
    /// Order of joining (the first is leader when one must be chosen).
    pub joined_seq: u64,
}

impl Member {
    /// Metadata of the given protocol.
    pub fn metadata(&self, protocol: &str) -> Option<&Bytes> {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m)
    }
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The offset (the next record to read).
    pub offset: i64,
    /// Leader epoch of the record before it, or -1.
    pub leader_epoch: i32,
    /// Client metadata.
    pub metadata: String,
    /// When committed.
    pub commit_timestamp_ms: i64,
}

/// A JoinGroup request.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// JoinGroup version (v4+: MEMBER_ID_REQUIRED).
    pub version: i16,
    /// Member id, empty for a new member.
    pub member_id: String,
    /// Static membership.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout (v0: the session timeout).
    pub rebalance_timeout_ms: i32,
    /// Protocol type ("consumer").
    pub protocol_type: String,
    /// Protocols with metadata.
    pub protocols: Vec<(String, Bytes)>,
}

/// The answer to a join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResult {
    /// Error, if any.
    pub error: Option<ErrorCode>,
    /// Generation.
    pub generation: i32,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol_name: Option<String>,
    /// Leader's member id.
    pub leader: String,
    /// The member's id.
    pub member_id: String,
    /// For the leader: every member's id, instance id and metadata of the chosen protocol.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinResult {
    fn error(error: ErrorCode, member_id: &str) -> JoinResult {
        JoinResult {
            error: Some(error),
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

/// The answer to a sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResult {
    /// Error, if any.
    pub error: Option<ErrorCode>,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol_name: Option<String>,
    /// The member's assignment.
    pub assignment: Bytes,
}

impl SyncResult {
    fn error(error: ErrorCode) -> SyncResult {
        SyncResult {
            error: Some(error),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// An answer to a request that waited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// To the waiting join of `member_id`.
    Join {
        /// Whose.
        member_id: String,
        /// The answer.
        result: JoinResult,
    },
    /// To the waiting sync of `member_id`.
    Sync {
        /// Whose.
        member_id: String,
        /// The answer.
        result: SyncResult,
    },
}

/// What a join did right away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinOutcome {
    /// Answer now.
    Now(JoinResult),
    /// The answer comes later as a [`Reply::Join`] for this member id.
    Wait(String),
}

/// What a sync did right away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncOutcome {
    /// Answer now.
    Now(SyncResult),
    /// The answer comes later as a [`Reply::Sync`] for this member id.
    Wait(String),
}

/// Everything a call asks of the shell besides its own answer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Effects {
    /// Answers to deliver to waiting requests.
    pub replies: Vec<Reply>,
    /// The group's membership or generation changed in a way worth persisting.
    pub persist: bool,
}

/// What is kept of a group across restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// Generation.
    pub generation: i32,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol_name: Option<String>,
    /// Leader.
    pub leader: Option<String>,
    /// Members (their timers restart).
    pub members: Vec<Member>,
    /// A KIP-848 consumer group's state.
    pub consumer: Option<super::consumer::ConsumerGroup>,
}

/// One consumer group.
#[derive(Debug, Clone)]
pub struct Group {
    /// Group id.
    pub id: String,
    /// State.
    pub state: GroupState,
    /// Protocol type of the members ("consumer").
    pub protocol_type: Option<String>,
    /// Protocol chosen at the last rebalance.
    pub protocol_name: Option<String>,
    /// Generation.
    pub generation: i32,
    /// Leader's member id.
    pub leader: Option<String>,
    /// Members by id.
    pub members: BTreeMap<String, Member>,
    /// Members told MEMBER_ID_REQUIRED, with when their id expires.
    pub pending_members: BTreeMap<String, i64>,
    /// Static members: instance id -> member id.
    pub static_members: HashMap<String, String>,
    /// Committed offsets by (topic, partition).
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
    /// Set for a group of the KIP-848 consumer protocol, whose members and assignment live
    /// here (the classic fields above stay empty).
    pub consumer: Option<super::consumer::ConsumerGroup>,
    rebalance_deadline_ms: Option<i64>,
    /// Start and end of the initial delay of a first rebalance.
    initial_delay: Option<(i64, i64)>,
    next_seq: u64,
    config: GroupConfig,
}

impl Group {
    /// An empty group.
    pub fn new(id: &str, config: GroupConfig) -> Group {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            protocol_type: None,
            protocol_name: None,
            generation: 0,
            leader: None,
            members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            static_members: HashMap::new(),
            offsets: BTreeMap::new(),
            consumer: None,
            rebalance_deadline_ms: None,
            initial_delay: None,
            next_seq: 0,
            config,
        }
    }

    /// A group restored from its persisted record: stable if it had members (their sessions
    /// restart now), else empty.
    pub fn restore(id: &str, config: GroupConfig, saved: Saved, now_ms: i64) -> Group {
        let Saved {
            generation,
            protocol_type,
            protocol_name,
            leader,
            members,
            consumer,
        } = saved;
        let mut group = Group::new(id, config);
        group.consumer = consumer.map(|c| c.restore(&config.consumer, now_ms));
        group.generation = generation;
        group.protocol_type = protocol_type;
        group.protocol_name = protocol_name;
        for mut member in members {
            member.awaiting_join = false;
            member.awaiting_sync = false;
            member.expires_at_ms = now_ms + i64::from(member.session_timeout_ms);
            member.joined_seq = group.next_seq;
            group.next_seq += 1;
            if let Some(instance) = &member.group_instance_id {
                group
                    .static_members
                    .insert(instance.clone(), member.member_id.clone());
            }
            group.members.insert(member.member_id.clone(), member);
        }
        if group.members.is_empty() {
            group.protocol_name = None;
        } else {
            group.state = GroupState::Stable;
            group.leader = leader
                .filter(|l| group.members.contains_key(l))
                .or_else(|| group.first_member());
        }
        group
    }

    fn first_member(&self) -> Option<String> {
        self.members
            .values()
            .min_by_key(|m| m.joined_seq)
            .map(|m| m.member_id.clone())
    }

    /// True when the group has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.consumer.as_ref().is_none_or(|c| c.is_empty())
    }

    /// Kafka's name of the group's state (a consumer group's own for KIP-848 groups).
    pub fn state_name(&self) -> &'static str {
        match &self.consumer {
            Some(consumer) if self.state != GroupState::Dead => consumer.state_name(),
            _ => self.state.name(),
        }
    }

    /// "consumer" for a KIP-848 group, "classic" otherwise (ListGroups' group type).
    pub fn group_type(&self) -> &'static str {
        if self.consumer.is_some() {
            "consumer"
        } else {
            "classic"
        }
    }

    /// The protocols every member supports, in the first member's order.
    fn common_protocols(&self, extra: Option<&[(String, Bytes)]>) -> Vec<String> {
        let mut lists: Vec<Vec<&String>> = self
            .members
            .values()
            .map(|m| m.protocols.iter().map(|(n, _)| n).collect())
            .collect();
        if let Some(extra) = extra {
            lists.push(extra.iter().map(|(n, _)| n).collect());
        }
        let Some(first) = lists.first() else {
            return Vec::new();
        };
        first
            .iter()
            .filter(|name| lists.iter().all(|l| l.contains(name)))
            .map(|n| (*n).clone())
            .collect()
    }

    /// Each member votes for its most preferred protocol among those all support (Kafka's
    /// `selectProtocol`); the most votes win, ties to the first in the leader's preference.
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.common_protocols(None);
        let mut votes: HashMap<&String, usize> = HashMap::new();
        for member in self.members.values() {
            if let Some((name, _)) = member
                .protocols
                .iter()
                .find(|(n, _)| candidates.contains(n))
            {
                *votes.entry(name).or_default() += 1;
            }
        }
        candidates
            .iter()
            .max_by_key(|c| {
                (
                    votes.get(c).copied().unwrap_or(0),
                    std::cmp::Reverse(candidates.iter().position(|x| x == *c)),
                )
            })
            .cloned()
    }

    fn max_rebalance_timeout(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    /// Handles a JoinGroup. `new_member_id` makes ids (the shell adds randomness).
    pub fn join(
        &mut self,
        request: JoinRequest,
        now_ms: i64,
        new_member_id: impl FnOnce(&str) -> String,
    ) -> (JoinOutcome, Effects) {
        let mut effects = Effects::default();
        let fail = |error, member_id: &str| {
            (
                JoinOutcome::Now(JoinResult::error(error, member_id)),
                Effects::default(),
            )
        };
        let session = request.session_timeout_ms;
        if session < self.config.session_timeout_min_ms
            || session > self.config.session_timeout_max_ms
        {
            return fail(ErrorCode::InvalidSessionTimeout, &request.member_id);
        }
        if request.protocol_type.is_empty() || request.protocols.is_empty() {
            return fail(ErrorCode::InconsistentGroupProtocol, &request.member_id);
        }
        if self.state == GroupState::Dead {
            return fail(ErrorCode::CoordinatorNotAvailable, &request.member_id);
        }
        let others_only = |g: &Group| {
            // The joining member's own earlier protocols do not count against it.
            g.members.len() > usize::from(g.members.contains_key(&request.member_id))
        };
        if others_only(self)
            && (self.protocol_type.as_deref() != Some(request.protocol_type.as_str())
                || self.common_protocols(Some(&request.protocols)).is_empty())
        {
            return fail(ErrorCode::InconsistentGroupProtocol, &request.member_id);
        }

        if request.member_id.is_empty() {
            let member_id = new_member_id(
                request
                    .group_instance_id
                    .as_deref()
                    .unwrap_or(&request.client_id),
            );
            if let Some(instance) = request.group_instance_id.clone() {
                if let Some(old_id) = self.static_members.get(&instance).cloned() {
                    return self.replace_static_member(&old_id, &member_id, request, now_ms);
                }
                self.static_members.insert(instance, member_id.clone());
            } else if request.version >= 4 {
                self.pending_members
                    .insert(member_id.clone(), now_ms + i64::from(session));
                return (
                    JoinOutcome::Now(JoinResult::error(ErrorCode::MemberIdRequired, &member_id)),
                    effects,
                );
            }
            self.add_member(member_id.clone(), request, now_ms);
            self.start_or_extend_rebalance(now_ms, &mut effects);
            self.try_complete_join(now_ms, &mut effects);
            return (self.outcome_for(&member_id, &mut effects), effects);
        }

        let member_id = request.member_id.clone();
        if self.pending_members.remove(&member_id).is_some() {
            self.add_member(member_id.clone(), request, now_ms);
            self.start_or_extend_rebalance(now_ms, &mut effects);
            self.try_complete_join(now_ms, &mut effects);
            return (self.outcome_for(&member_id, &mut effects), effects);
        }
        let Some(member) = self.members.get(&member_id) else {
            return fail(ErrorCode::UnknownMemberId, &member_id);
        };
        if let Some(error) = self.fenced(&member_id, request.group_instance_id.as_deref()) {
            return fail(error, &member_id);
        }
        let unchanged = member.protocols == request.protocols;
        let is_leader = self.leader.as_deref() == Some(member_id.as_str());
        match self.state {
            GroupState::Empty | GroupState::Dead => fail(ErrorCode::UnknownMemberId, &member_id),
            GroupState::PreparingRebalance => {
                self.update_member(&member_id, request, now_ms);
                self.try_complete_join(now_ms, &mut effects);
                (self.outcome_for(&member_id, &mut effects), effects)
            }
            GroupState::CompletingRebalance | GroupState::Stable
                if unchanged && !(self.state == GroupState::Stable && is_leader) =>
            {
                // Nothing changed: the member missed its join answer; give it the current one.
                let member = self.members.get_mut(&member_id).expect("checked above");
                member.expires_at_ms = now_ms + i64::from(member.session_timeout_ms);
                (JoinOutcome::Now(self.join_result(&member_id)), effects)
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.update_member(&member_id, request, now_ms);
                self.prepare_rebalance(now_ms, &mut effects);
                self.try_complete_join(now_ms, &mut effects);
                (self.outcome_for(&member_id, &mut effects), effects)
            }
        }
    }

    /// A static member came back under a new member id: it takes the old one's place.
    fn replace_static_member(
        &mut self,
        old_id: &str,
        new_id: &str,
        request: JoinRequest,
        now_ms: i64,
    ) -> (JoinOutcome, Effects) {
        let mut effects = Effects::default();
        let instance = request.group_instance_id.clone().expect("static member");
        let Some(mut member) = self.members.remove(old_id) else {
            // Known instance whose member is gone: join as new.
            self.static_members.insert(instance, new_id.to_string());
            self.add_member(new_id.to_string(), request, now_ms);
            self.start_or_extend_rebalance(now_ms, &mut effects);
            self.try_complete_join(now_ms, &mut effects);
            return (self.outcome_for(new_id, &mut effects), effects);
        };
        // The old incarnation's waiting requests are fenced.
        if member.awaiting_join {
            effects.replies.push(Reply::Join {
                member_id: old_id.to_string(),
                result: JoinResult::error(ErrorCode::FencedInstanceId, old_id),
            });
        }
        if member.awaiting_sync {
            effects.replies.push(Reply::Sync {
                member_id: old_id.to_string(),
                result: SyncResult::error(ErrorCode::FencedInstanceId),
            });
        }
        let unchanged = member.protocols == request.protocols;
        member.member_id = new_id.to_string();
        member.client_id = request.client_id.clone();
        member.client_host = request.client_host.clone();
        member.awaiting_join = false;
        member.awaiting_sync = false;
        self.members.insert(new_id.to_string(), member);
        self.static_members.insert(instance, new_id.to_string());
        let was_leader = self.leader.as_deref() == Some(old_id);
        if was_leader {
            self.leader = Some(new_id.to_string());
        }
        effects.persist = true;
        if self.state == GroupState::Stable && unchanged {
            // KIP-345: the same member is back; no rebalance, it keeps its assignment. Even a
            // returning leader is told the old leader id (as Kafka does), so it does not take
            // itself for the leader and compute an assignment a stable group would not hand out.
            let member = self.members.get_mut(new_id).expect("just inserted");
            member.session_timeout_ms = request.session_timeout_ms;
            member.rebalance_timeout_ms = request.rebalance_timeout_ms;
            member.expires_at_ms = now_ms + i64::from(request.session_timeout_ms);
            let mut result = self.join_result(new_id);
            if was_leader {
                result.leader = old_id.to_string();
                result.members.clear();
            }
            return (JoinOutcome::Now(result), effects);
        }
        self.update_member(new_id, request, now_ms);
        match self.state {
            GroupState::PreparingRebalance => {}
            _ => self.prepare_rebalance(now_ms, &mut effects),
        }
        self.try_complete_join(now_ms, &mut effects);
        (self.outcome_for(new_id, &mut effects), effects)
    }

    /// Takes the member's own reply out of `effects` if the join completed at once.
    fn outcome_for(&self, member_id: &str, effects: &mut Effects) -> JoinOutcome {
        let position = effects
            .replies
            .iter()
            .position(|r| matches!(r, Reply::Join { member_id: m, .. } if m == member_id));
        match position {
            Some(i) => match effects.replies.remove(i) {
                Reply::Join { result, .. } => JoinOutcome::Now(result),
                Reply::Sync { .. } => unreachable!("matched a join above"),
            },
            None => JoinOutcome::Wait(member_id.to_string()),
        }
    }

    fn add_member(&mut self, member_id: String, request: JoinRequest, now_ms: i64) {
        let member = Member {
            member_id: member_id.clone(),
            group_instance_id: request.group_instance_id,
            client_id: request.client_id,
            client_host: request.client_host,
            session_timeout_ms: request.session_timeout_ms,
            rebalance_timeout_ms: request.rebalance_timeout_ms,
            protocols: request.protocols,
            assignment: Bytes::new(),
            awaiting_join: true,
            awaiting_sync: false,
            expires_at_ms: now_ms + i64::from(request.session_timeout_ms),
            joined_seq: self.next_seq,
        };
        self.next_seq += 1;
        if self.members.is_empty() {
            self.protocol_type = Some(request.protocol_type);
        }
        let previous = self.members.insert(member_id, member);
        assert!(previous.is_none(), "member id reused");
    }

    fn update_member(&mut self, member_id: &str, request: JoinRequest, now_ms: i64) {
        let member = self
            .members
            .get_mut(member_id)
            .expect("caller checked membership");
        member.protocols = request.protocols;
        member.session_timeout_ms = request.session_timeout_ms;
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        member.client_id = request.client_id;
        member.client_host = request.client_host;
        member.awaiting_join = true;
        member.expires_at_ms = now_ms + i64::from(request.session_timeout_ms);
    }

    /// A new member arrived: start a rebalance, or (in the initial delay) push its end out.
    fn start_or_extend_rebalance(&mut self, now_ms: i64, effects: &mut Effects) {
        match self.state {
            GroupState::PreparingRebalance => {
                if let Some((start, _)) = self.initial_delay {
                    let cap = start + self.max_rebalance_timeout();
                    let end = (now_ms + i64::from(self.config.initial_rebalance_delay_ms)).min(cap);
                    self.initial_delay = Some((start, end));
                    self.rebalance_deadline_ms = Some(end);
                }
            }
            _ => self.prepare_rebalance(now_ms, effects),
        }
    }

    /// Moves to PreparingRebalance: every member must rejoin.
    fn prepare_rebalance(&mut self, now_ms: i64, effects: &mut Effects) {
        if self.state == GroupState::CompletingRebalance {
            // Syncs waiting on an assignment that will not come: tell them to rejoin.
            for member in self.members.values_mut() {
                if member.awaiting_sync {
                    member.awaiting_sync = false;
                    effects.replies.push(Reply::Sync {
                        member_id: member.member_id.clone(),
                        result: SyncResult::error(ErrorCode::RebalanceInProgress),
                    });
                }
            }
        }
        let initial = self.state == GroupState::Empty;
        self.state = GroupState::PreparingRebalance;
        let timeout = self.max_rebalance_timeout();
        if initial && self.config.initial_rebalance_delay_ms > 0 {
            let end = now_ms + i64::from(self.config.initial_rebalance_delay_ms).min(timeout);
            self.initial_delay = Some((now_ms, end));
            self.rebalance_deadline_ms = Some(end);
        } else {
            self.initial_delay = None;
            self.rebalance_deadline_ms = Some(now_ms + timeout);
        }
    }

    /// Completes the rebalance if everyone has rejoined (outside an initial delay) or its
    /// deadline has passed.
    fn try_complete_join(&mut self, now_ms: i64, effects: &mut Effects) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let deadline_passed = self.rebalance_deadline_ms.is_some_and(|d| now_ms >= d);
        let all_joined =
            self.members.values().all(|m| m.awaiting_join) && self.pending_members.is_empty();
        let in_initial_delay = self.initial_delay.is_some() && !deadline_passed;
        if !(deadline_passed || (all_joined && !in_initial_delay)) {
            return;
        }
        // Drop whoever did not rejoin in time.
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.awaiting_join)
            .map(|m| m.member_id.clone())
            .collect();
        for member_id in gone {
            self.remove_member(&member_id, effects);
        }
        self.initial_delay = None;
        self.generation += 1;
        effects.persist = true;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol_name = None;
            self.leader = None;
            self.rebalance_deadline_ms = None;
            return;
        }
        self.protocol_name = self.select_protocol();
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self.first_member();
        }
        self.state = GroupState::CompletingRebalance;
        self.rebalance_deadline_ms = Some(now_ms + self.max_rebalance_timeout());
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for member_id in ids {
            let result = self.join_result(&member_id);
            let member = self.members.get_mut(&member_id).expect("listed above");
            member.awaiting_join = false;
            member.expires_at_ms = now_ms + i64::from(member.session_timeout_ms);
            effects.replies.push(Reply::Join { member_id, result });
        }
    }

    /// The current generation's join answer for `member_id` (the member list only for the
    /// leader).
    fn join_result(&self, member_id: &str) -> JoinResult {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let is_leader = self.leader.as_deref() == Some(member_id);
        let members = if is_leader {
            let mut members: Vec<&Member> = self.members.values().collect();
            members.sort_by_key(|m| m.joined_seq);
            members
                .into_iter()
                .map(|m| {
                    (
                        m.member_id.clone(),
                        m.group_instance_id.clone(),
                        m.metadata(&protocol).cloned().unwrap_or_default(),
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResult {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members,
        }
    }

    /// FENCED_INSTANCE_ID when `instance` belongs to another member id.
    fn fenced(&self, member_id: &str, instance: Option<&str>) -> Option<ErrorCode> {
        let instance = instance?;
        match self.static_members.get(instance) {
            Some(current) if current != member_id => Some(ErrorCode::FencedInstanceId),
            _ => None,
        }
    }

    /// Checks a member and generation as Heartbeat, SyncGroup and OffsetCommit do.
    fn check_member(
        &self,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> Option<ErrorCode> {
        if let Some(error) = self.fenced(member_id, instance) {
            return Some(error);
        }
        if !self.members.contains_key(member_id) {
            return Some(ErrorCode::UnknownMemberId);
        }
        if generation != self.generation {
            return Some(ErrorCode::IllegalGeneration);
        }
        None
    }

    /// Handles a SyncGroup. The leader's assignments (member id, bytes) complete the
    /// rebalance for everyone.
    pub fn sync(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
        protocol: (Option<&str>, Option<&str>),
        assignments: Vec<(String, Bytes)>,
        now_ms: i64,
    ) -> (SyncOutcome, Effects) {
        let mut effects = Effects::default();
        let now = |e| (SyncOutcome::Now(SyncResult::error(e)), Effects::default());
        if matches!(self.state, GroupState::Empty | GroupState::Dead) {
            return now(ErrorCode::UnknownMemberId);
        }
        if let Some(error) = self.check_member(member_id, instance, generation) {
            return now(error);
        }
        let (protocol_type, protocol_name) = protocol;
        if protocol_type.is_some_and(|t| Some(t) != self.protocol_type.as_deref())
            || protocol_name.is_some_and(|n| Some(n) != self.protocol_name.as_deref())
        {
            return now(ErrorCode::InconsistentGroupProtocol);
        }
        match self.state {
            GroupState::PreparingRebalance => now(ErrorCode::RebalanceInProgress),
            GroupState::Stable => {
                let member = self.members.get_mut(member_id).expect("checked above");
                member.expires_at_ms = now_ms + i64::from(member.session_timeout_ms);
                (SyncOutcome::Now(self.sync_result(member_id)), effects)
            }
            GroupState::CompletingRebalance => {
                let member = self.members.get_mut(member_id).expect("checked above");
                member.awaiting_sync = true;
                member.expires_at_ms = now_ms + i64::from(member.session_timeout_ms);
                if self.leader.as_deref() == Some(member_id) {
                    let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for member in self.members.values_mut() {
                        member.assignment = given.remove(&member.member_id).unwrap_or_default();
                    }
                    self.state = GroupState::Stable;
                    self.rebalance_deadline_ms = None;
                    effects.persist = true;
                    let ids: Vec<String> = self
                        .members
                        .values()
                        .filter(|m| m.awaiting_sync)
                        .map(|m| m.member_id.clone())
                        .collect();
                    for id in ids {
                        self.members.get_mut(&id).expect("listed").awaiting_sync = false;
                        effects.replies.push(Reply::Sync {
                            member_id: id.clone(),
                            result: self.sync_result(&id),
                        });
                    }
                    let own = effects
                        .replies
                        .iter()
                        .position(
                            |r| matches!(r, Reply::Sync { member_id: m, .. } if m == member_id),
                        )
                        .expect("the leader was awaiting sync");
                    match effects.replies.remove(own) {
                        Reply::Sync { result, .. } => (SyncOutcome::Now(result), effects),
                        Reply::Join { .. } => unreachable!("matched a sync above"),
                    }
                } else {
                    (SyncOutcome::Wait(member_id.to_string()), effects)
                }
            }
            GroupState::Empty | GroupState::Dead => unreachable!("handled above"),
        }
    }

    fn sync_result(&self, member_id: &str) -> SyncResult {
        SyncResult {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment: self
                .members
                .get(member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default(),
        }
    }

    /// Handles a Heartbeat.
    ///
    /// # Errors
    ///
    /// The Kafka error code to answer with (REBALANCE_IN_PROGRESS tells the member to rejoin).
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
        now_ms: i64,
    ) -> Result<(), ErrorCode> {
        match self.state {
            GroupState::Empty => return Err(ErrorCode::UnknownMemberId),
            GroupState::Dead => return Err(ErrorCode::CoordinatorNotAvailable),
            _ => {}
        }
        if let Some(error) = self.check_member(member_id, instance, generation) {
            return Err(error);
        }
        let member = self.members.get_mut(member_id).expect("checked above");
        member.expires_at_ms = now_ms + i64::from(member.session_timeout_ms);
        match self.state {
            GroupState::PreparingRebalance => Err(ErrorCode::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// Handles a LeaveGroup of one member (by id, or by instance id with an empty id).
    ///
    /// # Errors
    ///
    /// UNKNOWN_MEMBER_ID or FENCED_INSTANCE_ID.
    pub fn leave(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        now_ms: i64,
        effects: &mut Effects,
    ) -> Result<(), ErrorCode> {
        let member_id = match (member_id.is_empty(), instance) {
            (true, Some(instance)) => self
                .static_members
                .get(instance)
                .cloned()
                .ok_or(ErrorCode::UnknownMemberId)?,
            _ => member_id.to_string(),
        };
        if let Some(error) = self.fenced(&member_id, instance) {
            return Err(error);
        }
        if self.pending_members.remove(&member_id).is_some() {
            return Ok(());
        }
        if !self.members.contains_key(&member_id) {
            return Err(ErrorCode::UnknownMemberId);
        }
        self.remove_member(&member_id, effects);
        self.after_departure(now_ms, effects);
        Ok(())
    }

    fn remove_member(&mut self, member_id: &str, effects: &mut Effects) {
        let Some(member) = self.members.remove(member_id) else {
            return;
        };
        if let Some(instance) = &member.group_instance_id
            && self.static_members.get(instance).map(String::as_str) == Some(member_id)
        {
            self.static_members.remove(instance);
        }
        if member.awaiting_join {
            effects.replies.push(Reply::Join {
                member_id: member_id.to_string(),
                result: JoinResult::error(ErrorCode::UnknownMemberId, member_id),
            });
        }
        if member.awaiting_sync {
            effects.replies.push(Reply::Sync {
                member_id: member_id.to_string(),
                result: SyncResult::error(ErrorCode::UnknownMemberId),
            });
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = None;
        }
        effects.persist = true;
    }

    fn after_departure(&mut self, now_ms: i64, effects: &mut Effects) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now_ms, effects);
                self.try_complete_join(now_ms, effects);
            }
            GroupState::PreparingRebalance => self.try_complete_join(now_ms, effects),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Advances time: expires silent members and pending ids, completes overdue rebalances.
    pub fn tick(&mut self, now_ms: i64) -> Effects {
        let mut effects = Effects::default();
        self.pending_members.retain(|_, expires| *expires > now_ms);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.awaiting_join && !m.awaiting_sync && m.expires_at_ms <= now_ms)
            .map(|m| m.member_id.clone())
            .collect();
        if !expired.is_empty() {
            for member_id in &expired {
                self.remove_member(member_id, &mut effects);
            }
            self.after_departure(now_ms, &mut effects);
        }
        match self.state {
            GroupState::PreparingRebalance => self.try_complete_join(now_ms, &mut effects),
            GroupState::CompletingRebalance
                if self.rebalance_deadline_ms.is_some_and(|d| now_ms >= d) =>
            {
                // The leader never sent the assignment: start over without whoever did not
                // sync (the leader among them).
                let silent: Vec<String> = self
                    .members
                    .values()
                    .filter(|m| !m.awaiting_sync)
                    .map(|m| m.member_id.clone())
                    .collect();
                for member_id in silent {
                    self.remove_member(&member_id, &mut effects);
                }
                self.prepare_rebalance(now_ms, &mut effects);
                self.try_complete_join(now_ms, &mut effects);
            }
            _ => {}
        }
        effects
    }

    /// Checks an OffsetCommit's membership (Kafka's rules): an empty group takes commits with
    /// generation -1 (admin tools, `assign()` consumers); otherwise the member and generation
    /// must match, and not while the assignment is being handed out.
    ///
    /// # Errors
    ///
    /// The Kafka error code for the whole commit.
    pub fn check_commit(
        &self,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> Result<(), ErrorCode> {
        if self.state == GroupState::Dead {
            return Err(ErrorCode::CoordinatorNotAvailable);
        }
        if let Some(consumer) = &self.consumer {
            // OffsetCommit v9's generation is the member epoch.
            return consumer.check_commit(member_id, generation);
        }
        if generation < 0 && member_id.is_empty() {
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(ErrorCode::UnknownMemberId)
            };
        }
        if let Some(error) = self.check_member(member_id, instance, generation) {
            return Err(error);
        }
        match self.state {
            GroupState::CompletingRebalance => Err(ErrorCode::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// The topics the members subscribe to, from their "consumer" protocol metadata.
    pub fn subscribed_topics(&self) -> std::collections::BTreeSet<String> {
        use kafka_protocol::messages::ConsumerProtocolSubscription;
        use kafka_protocol::protocol::Decodable;
        let mut topics = std::collections::BTreeSet::new();
        if let Some(consumer) = &self.consumer {
            // The topics its members' subscriptions resolved to at the last group epoch, and
            // those named (which may not exist yet).
            topics.extend(consumer.subscribed.keys().cloned());
            for member in consumer.members.values() {
                topics.extend(member.subscribed_topics.iter().cloned());
            }
            return topics;
        }
        let Some(protocol) = &self.protocol_name else {
            return topics;
        };
        for member in self.members.values() {
            let Some(mut metadata) = member.metadata(protocol).cloned() else {
                continue;
            };
            if metadata.len() < 2 {
                continue;
            }
            let version = i16::from_be_bytes([metadata[0], metadata[1]]);
            let _ = bytes::Buf::get_i16(&mut metadata);
            if let Ok(subscription) =
                ConsumerProtocolSubscription::decode(&mut metadata, version.clamp(0, 3))
            {
                topics.extend(subscription.topics.iter().map(|t| t.to_string()));
            }
        }
        topics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_000_000;

    fn config() -> GroupConfig {
        GroupConfig {
            session_timeout_min_ms: 1_000,
            session_timeout_max_ms: 60_000,
            initial_rebalance_delay_ms: 0,
            ..GroupConfig::default()
        }
    }

    fn join_request(member_id: &str, instance: Option<&str>, protocols: &[&str]) -> JoinRequest {
        JoinRequest {
            version: 5,
            member_id: member_id.to_string(),
            group_instance_id: instance.map(str::to_string),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), Bytes::from(p.to_string())))
                .collect(),
        }
    }

    fn counter() -> impl FnMut(&str) -> String {
        let mut n = 0;
        move |prefix: &str| {
            n += 1;
            format!("{prefix}-{n}")
        }
    }

    /// Joins a new dynamic member through MEMBER_ID_REQUIRED; returns its id and outcome.
    fn join_new(
        group: &mut Group,
        now: i64,
        ids: &mut impl FnMut(&str) -> String,
    ) -> (String, JoinOutcome, Effects) {
        let (first, _) = group.join(
            join_request("", None, &["range", "roundrobin"]),
            now,
            &mut *ids,
        );
        let JoinOutcome::Now(JoinResult {
            error: Some(ErrorCode::MemberIdRequired),
            member_id,
            ..
        }) = first
        else {
            panic!("expected MEMBER_ID_REQUIRED, got {first:?}");
        };
        let (outcome, effects) = group.join(
            join_request(&member_id, None, &["range", "roundrobin"]),
            now,
            &mut *ids,
        );
        (member_id, outcome, effects)
    }

    #[test]
    fn two_members_join_elect_a_leader_and_sync() {
        let mut ids = counter();
        let mut group = Group::new("g", config());
        let (a, outcome, _) = join_new(&mut group, T, &mut ids);
        // Alone and no initial delay: the rebalance completes at once.
        let JoinOutcome::Now(result) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(
            (
                result.generation,
                result.leader.as_str(),
                result.members.len()
            ),
            (1, a.as_str(), 1)
        );
        let (sync, _) = group.sync(
            &a,
            None,
            1,
            (None, None),
            vec![(a.clone(), Bytes::from_static(b"A1"))],
            T,
        );
        assert_eq!(
            sync,
            SyncOutcome::Now(SyncResult {
                error: None,
                protocol_type: Some("consumer".into()),
                protocol_name: Some("range".into()),
                assignment: Bytes::from_static(b"A1")
            })
        );
        assert_eq!(group.state, GroupState::Stable);

        // A second member: a rebalance; the first hears about it at its heartbeat.
        let (b, outcome, _) = join_new(&mut group, T + 10, &mut ids);
        assert_eq!(outcome, JoinOutcome::Wait(b.clone()));
        assert_eq!(
            group.heartbeat(&a, None, 1, T + 20),
            Err(ErrorCode::RebalanceInProgress)
        );
        let (outcome, effects) = group.join(
            join_request(&a, None, &["range", "roundrobin"]),
            T + 30,
            &mut ids,
        );
        let JoinOutcome::Now(leader) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(
            (leader.generation, leader.members.len()),
            (2, 2),
            "the leader sees both members"
        );
        assert!(
            matches!(&effects.replies[..], [Reply::Join { member_id, result }] if *member_id == b && result.members.is_empty())
        );

        // The follower's sync waits for the leader's.
        let (follower, _) = group.sync(
            &b,
            None,
            2,
            (Some("consumer"), Some("range")),
            vec![],
            T + 40,
        );
        assert_eq!(follower, SyncOutcome::Wait(b.clone()));
        let (leader_sync, effects) = group.sync(
            &a,
            None,
            2,
            (None, None),
            vec![
                (a.clone(), Bytes::from_static(b"A2")),
                (b.clone(), Bytes::from_static(b"B2")),
            ],
            T + 50,
        );
        assert!(
            matches!(leader_sync, SyncOutcome::Now(SyncResult { ref assignment, .. }) if assignment == "A2")
        );
        assert!(
            matches!(&effects.replies[..], [Reply::Sync { member_id, result }] if *member_id == b && result.assignment == "B2")
        );
        assert!(effects.persist);
        assert_eq!(group.heartbeat(&b, None, 2, T + 60), Ok(()));
        assert_eq!(
            group.heartbeat(&b, None, 1, T + 60),
            Err(ErrorCode::IllegalGeneration)
        );
        assert_eq!(
            group.heartbeat("ghost", None, 2, T + 60),
            Err(ErrorCode::UnknownMemberId)
        );
    }

    #[test]
    fn a_silent_member_is_evicted_after_its_session_timeout() {
        let mut ids = counter();
        let mut group = Group::new("g", config());
        let (a, _, _) = join_new(&mut group, T, &mut ids);
        group.sync(&a, None, 1, (None, None), vec![], T);
        let (b, _, _) = join_new(&mut group, T, &mut ids);
        group.join(join_request(&a, None, &["range"]), T, &mut ids);
        group.sync(&a, None, 2, (None, None), vec![], T);
        group.sync(&b, None, 2, (None, None), vec![], T);
        assert_eq!(group.state, GroupState::Stable);
        // a heartbeats, b goes quiet.
        assert_eq!(group.heartbeat(&a, None, 2, T + 8_000), Ok(()));
        assert!(group.tick(T + 9_999).replies.is_empty());
        let effects = group.tick(T + 10_000);
        assert!(effects.persist);
        assert!(!group.members.contains_key(&b));
        // a is alone, but must rejoin for the new generation.
        assert_eq!(group.state, GroupState::PreparingRebalance);
        let (outcome, _) = group.join(join_request(&a, None, &["range"]), T + 10_100, &mut ids);
        assert!(matches!(
            outcome,
            JoinOutcome::Now(JoinResult { generation: 3, .. })
        ));
    }

    #[test]
    fn members_that_do_not_rejoin_are_dropped_at_the_rebalance_timeout() {
        let mut ids = counter();
        let mut group = Group::new("g", config());
        let (a, _, _) = join_new(&mut group, T, &mut ids);
        group.sync(&a, None, 1, (None, None), vec![], T);
        let (b, outcome, _) = join_new(&mut group, T, &mut ids);
        assert_eq!(outcome, JoinOutcome::Wait(b.clone()));
        // a keeps heartbeating (and is told to rejoin) but never does: after the rebalance
        // timeout (30 s) b goes on alone.
        for t in [8_000, 16_000, 24_000] {
            assert_eq!(
                group.heartbeat(&a, None, 1, T + t),
                Err(ErrorCode::RebalanceInProgress)
            );
            assert!(group.tick(T + t).replies.is_empty());
        }
        assert!(group.tick(T + 29_999).replies.is_empty());
        let effects = group.tick(T + 30_000);
        let [Reply::Join { member_id, result }] = &effects.replies[..] else {
            panic!("{effects:?}")
        };
        assert_eq!(
            (member_id, result.leader.as_str(), result.generation),
            (&b, b.as_str(), 2)
        );
        assert!(!group.members.contains_key(&a));
    }

    #[test]
    fn a_static_member_rejoining_keeps_its_assignment_without_a_rebalance() {
        let mut ids = counter();
        let mut group = Group::new("g", config());
        let (lead, _, _) = join_new(&mut group, T, &mut ids);
        group.sync(&lead, None, 1, (None, None), vec![], T);
        let (JoinOutcome::Wait(s1), _) =
            group.join(join_request("", Some("i-1"), &["range"]), T, &mut ids)
        else {
            panic!()
        };
        group.join(join_request(&lead, None, &["range"]), T, &mut ids);
        group.sync(&s1, Some("i-1"), 2, (None, None), vec![], T);
        group.sync(
            &lead,
            None,
            2,
            (None, None),
            vec![(s1.clone(), Bytes::from_static(b"S"))],
            T,
        );
        assert_eq!(group.state, GroupState::Stable);
        let generation = group.generation;
        // The static member restarts (no LeaveGroup) and comes back with no member id.
        let (outcome, effects) =
            group.join(join_request("", Some("i-1"), &["range"]), T + 100, &mut ids);
        let JoinOutcome::Now(result) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(result.generation, generation, "no rebalance");
        assert_eq!(group.state, GroupState::Stable);
        assert!(effects.persist);
        let s2 = result.member_id;
        let (sync, _) = group.sync(&s2, Some("i-1"), generation, (None, None), vec![], T + 100);
        assert!(
            matches!(sync, SyncOutcome::Now(SyncResult { ref assignment, .. }) if assignment == "S")
        );
        // The old incarnation is fenced.
        assert_eq!(
            group.heartbeat(&s1, Some("i-1"), generation, T + 100),
            Err(ErrorCode::FencedInstanceId)
        );

        // A static leader coming back is not a rebalance either; it is told the old leader id.
        let mut leader_group = Group::new("g2", config());
        let (JoinOutcome::Now(first), _) =
            leader_group.join(join_request("", Some("boss"), &["range"]), T, &mut ids)
        else {
            panic!()
        };
        leader_group.sync(&first.member_id, Some("boss"), 1, (None, None), vec![], T);
        let (JoinOutcome::Now(again), _) =
            leader_group.join(join_request("", Some("boss"), &["range"]), T + 5, &mut ids)
        else {
            panic!()
        };
        assert_eq!(
            (again.generation, again.leader.as_str()),
            (1, first.member_id.as_str())
        );
        assert_ne!(again.member_id, first.member_id);
        assert_eq!(leader_group.state, GroupState::Stable);
        assert_eq!(
            leader_group.leader.as_deref(),
            Some(again.member_id.as_str())
        );
    }

    #[test]
    fn commits_follow_kafka_membership_rules() {
        let mut ids = counter();
        let mut group = Group::new("g", config());
        assert_eq!(
            group.check_commit("", None, -1),
            Ok(()),
            "admin commit to an empty group"
        );
        let (a, _, _) = join_new(&mut group, T, &mut ids);
        assert_eq!(
            group.check_commit("", None, -1),
            Err(ErrorCode::UnknownMemberId)
        );
        assert_eq!(
            group.check_commit(&a, None, 1),
            Err(ErrorCode::RebalanceInProgress)
        );
        group.sync(&a, None, 1, (None, None), vec![], T);
        assert_eq!(group.check_commit(&a, None, 1), Ok(()));
        assert_eq!(
            group.check_commit(&a, None, 0),
            Err(ErrorCode::IllegalGeneration)
        );
    }

    #[test]
    fn the_initial_delay_gathers_members_before_the_first_generation() {
        let mut ids = counter();
        let mut group = Group::new(
            "g",
            GroupConfig {
                initial_rebalance_delay_ms: 3_000,
                ..config()
            },
        );
        let (a, outcome, _) = join_new(&mut group, T, &mut ids);
        assert_eq!(outcome, JoinOutcome::Wait(a.clone()));
        let (b, outcome, _) = join_new(&mut group, T + 1_000, &mut ids);
        assert_eq!(outcome, JoinOutcome::Wait(b));
        assert!(
            group.tick(T + 3_999).replies.is_empty(),
            "the delay restarted with the second member"
        );
        let effects = group.tick(T + 4_000);
        assert_eq!(effects.replies.len(), 2);
        assert_eq!(group.generation, 1);
    }

    #[test]
    fn protocol_mismatches_and_bad_timeouts_are_refused() {
        let mut ids = counter();
        let mut group = Group::new("g", config());
        let (a, _, _) = join_new(&mut group, T, &mut ids);
        group.sync(&a, None, 1, (None, None), vec![], T);
        let (outcome, _) = group.join(join_request("", None, &["sticky-only"]), T, &mut ids);
        assert!(matches!(
            outcome,
            JoinOutcome::Now(JoinResult {
                error: Some(ErrorCode::InconsistentGroupProtocol),
                ..
            })
        ));
        let mut slow = join_request("", None, &["range"]);
        slow.session_timeout_ms = 999;
        let (outcome, _) = group.join(slow, T, &mut ids);
        assert!(matches!(
            outcome,
            JoinOutcome::Now(JoinResult {
                error: Some(ErrorCode::InvalidSessionTimeout),
                ..
            })
        ));
        let (outcome, _) = group.join(join_request("who", None, &["range"]), T, &mut ids);
        assert!(matches!(
            outcome,
            JoinOutcome::Now(JoinResult {
                error: Some(ErrorCode::UnknownMemberId),
                ..
            })
        ));
    }
}
