//! A classic group upgraded to the consumer protocol while it has members (Kafka 4's online
//! migration, `group_consumer_migration_policy` upgrade or bidirectional).
//!
//! When the first member of the new protocol joins a stable classic group of consumers, the
//! group becomes a consumer group *as it is*: each classic member becomes a member whose epoch
//! is the generation, whose subscription is its JoinGroup metadata and whose assignment (and
//! target) is what it holds. The broker's assignor then computes the next target, and the
//! classic members keep speaking their protocol, member by member, until they are replaced:
//!
//! - Heartbeat answers REBALANCE_IN_PROGRESS while the member's assignment must change, so it
//!   rejoins;
//! - JoinGroup answers at once (the member is never the leader: the broker assigns): the
//!   member's new assignment is what it holds of its target plus the target partitions no one
//!   else holds, and what it holds outside its target is to be revoked: no one else gets those
//!   until the member joins again (a cooperative client revokes and rejoins; an eager one
//!   revoked everything before joining);
//! - SyncGroup hands the assignment over, encoded as the consumer protocol's assignment.
//!
//! So the rule of the consumer protocol holds across both kinds of members: a partition is
//! given up before anyone else gets it.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use serde::{Deserialize, Serialize};

use super::consumer::{ConsumerConfig, ConsumerGroup, ConsumerMember, Partitions, TopicsView};
use super::state::Group;
use crate::protocol::error_code::ErrorCode;

/// What a member still on the classic protocol keeps beside its consumer-protocol state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassicMember {
    /// Its JoinGroup protocols (assignor names) with their metadata, in its order.
    pub protocols: Vec<(String, Vec<u8>)>,
    /// Its `session.timeout.ms`.
    pub session_timeout_ms: i32,
}

impl ClassicMember {
    /// The protocol the member is answered with: the first it offers.
    fn protocol(&self) -> Option<&str> {
        self.protocols.first().map(|(name, _)| name.as_str())
    }
}

/// A classic JoinGroup's answer for a member of an upgraded group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicJoin {
    /// The member's epoch, as its generation.
    pub generation: i32,
    /// The protocol (assignor) name it is told.
    pub protocol_name: Option<String>,
}

fn topics_of_metadata(metadata: &[u8]) -> Vec<String> {
    let mut bytes = Bytes::copy_from_slice(metadata);
    if bytes.len() < 2 {
        return Vec::new();
    }
    let version = bytes.get_i16().clamp(0, 3);
    ConsumerProtocolSubscription::decode(&mut bytes, version)
        .map(|s| s.topics.iter().map(|t| t.to_string()).collect())
        .unwrap_or_default()
}

pub(crate) fn partitions_of_assignment(assignment: &[u8]) -> Partitions {
    let mut bytes = Bytes::copy_from_slice(assignment);
    let mut out = Partitions::new();
    if bytes.len() < 2 {
        return out;
    }
    let version = bytes.get_i16().clamp(0, 3);
    if let Ok(decoded) = ConsumerProtocolAssignment::decode(&mut bytes, version) {
        for tp in decoded.assigned_partitions {
            out.entry(tp.topic.0.to_string())
                .or_default()
                .extend(tp.partitions);
        }
    }
    out
}

/// The consumer protocol's assignment of `partitions`, as SyncGroup carries it (version 0).
pub fn encode_assignment(partitions: &Partitions) -> Bytes {
    let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
        partitions
            .iter()
            .map(|(topic, ps)| {
                AssignedTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.clone())))
                    .with_partitions(ps.iter().copied().collect())
            })
            .collect(),
    );
    let mut out = BytesMut::new();
    out.put_i16(0);
    assignment
        .encode(&mut out, 0)
        .expect("an assignment of valid topic names encodes");
    out.freeze()
}

impl ConsumerGroup {
    /// A consumer group made of a stable classic group's members as they are.
    pub fn upgrade(classic: &Group, topics: &TopicsView, config: &ConsumerConfig) -> ConsumerGroup {
        let mut group = ConsumerGroup::new(config.default_assignor);
        let generation = classic.generation;
        let protocol = classic.protocol_name.clone().unwrap_or_default();
        for m in classic.members.values() {
            let subscribed = m
                .metadata(&protocol)
                .map(|meta| topics_of_metadata(meta))
                .unwrap_or_default();
            let assigned = partitions_of_assignment(&m.assignment);
            // The group's chosen protocol first: the member is answered with it.
            let mut protocols: Vec<(String, Vec<u8>)> = m
                .protocols
                .iter()
                .map(|(n, b)| (n.clone(), b.to_vec()))
                .collect();
            protocols.sort_by_key(|(n, _)| *n != protocol);
            let member = ConsumerMember {
                member_id: m.member_id.clone(),
                instance_id: m.group_instance_id.clone(),
                rack_id: None,
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                member_epoch: generation,
                previous_epoch: generation,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                subscribed_topics: subscribed,
                subscribed_regex: None,
                assignor: None,
                assigned: assigned.clone(),
                revoking: Partitions::new(),
                departed: false,
                classic: Some(ClassicMember {
                    protocols,
                    session_timeout_ms: m.session_timeout_ms,
                }),
                expires_at_ms: m.expires_at_ms,
                revoke_deadline_ms: None,
                unsent: false,
            };
            group.target.insert(m.member_id.clone(), assigned);
            group.members.insert(m.member_id.clone(), member);
        }
        group.group_epoch = generation;
        group.assignment_epoch = generation;
        group.subscribed = group
            .subscribed_topics(topics)
            .into_iter()
            .filter_map(|t| topics.get(&t).map(|n| (t, *n)))
            .collect();
        group
    }

    fn classic_member(&mut self, member_id: &str) -> Result<&mut ConsumerMember, ErrorCode> {
        self.members
            .get_mut(member_id)
            .filter(|m| m.classic.is_some())
            .ok_or(ErrorCode::UnknownMemberId)
    }

    /// True when a classic member must rejoin: its epoch or assignment is behind, or it has
    /// partitions to give up.
    fn classic_must_rejoin(&self, member_id: &str) -> bool {
        let Some(member) = self.members.get(member_id) else {
            return false;
        };
        member.member_epoch != self.assignment_epoch
            || !member.revoking.is_empty()
            || self.target.get(member_id).cloned().unwrap_or_default() != member.assigned
    }

    /// A classic member's Heartbeat.
    ///
    /// # Errors
    ///
    /// UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, or REBALANCE_IN_PROGRESS when it must rejoin.
    pub fn classic_heartbeat(
        &mut self,
        member_id: &str,
        generation: i32,
        now_ms: i64,
    ) -> Result<(), ErrorCode> {
        let member = self.classic_member(member_id)?;
        if generation != member.member_epoch {
            return Err(ErrorCode::IllegalGeneration);
        }
        let session = member.classic.as_ref().map_or(0, |c| c.session_timeout_ms);
        member.expires_at_ms = now_ms + i64::from(session);
        if self.classic_must_rejoin(member_id) {
            return Err(ErrorCode::RebalanceInProgress);
        }
        Ok(())
    }

    /// A classic member's JoinGroup: its new epoch and assignment, at once (see the module
    /// documentation).
    ///
    /// # Errors
    ///
    /// UNKNOWN_MEMBER_ID for a member the group does not hold as a classic one.
    #[allow(clippy::too_many_arguments)]
    pub fn classic_join(
        &mut self,
        member_id: &str,
        protocols: &[(String, Bytes)],
        session_timeout_ms: i32,
        rebalance_timeout_ms: i32,
        topics: &TopicsView,
        now_ms: i64,
        persist: &mut bool,
    ) -> Result<ClassicJoin, ErrorCode> {
        let epoch_before = self.group_epoch;
        let member = self.classic_member(member_id)?;
        let classic = member.classic.get_or_insert(ClassicMember {
            protocols: Vec::new(),
            session_timeout_ms,
        });
        classic.protocols = protocols
            .iter()
            .map(|(n, b)| (n.clone(), b.to_vec()))
            .collect();
        classic.session_timeout_ms = session_timeout_ms;
        member.rebalance_timeout_ms = rebalance_timeout_ms;
        member.expires_at_ms = now_ms + i64::from(session_timeout_ms);
        let subscribed = protocols
            .first()
            .map(|(_, meta)| topics_of_metadata(meta))
            .unwrap_or_default();
        // Joining again, it has given up what it was told to.
        if !member.revoking.is_empty() {
            member.revoking.clear();
            *persist = true;
        }
        if subscribed != member.subscribed_topics {
            member.subscribed_topics = subscribed;
            self.group_epoch += 1;
            *persist = true;
        }
        self.refresh_metadata(topics, self.group_epoch != epoch_before, persist);
        if self.group_epoch > self.assignment_epoch {
            self.compute_target(topics);
            *persist = true;
        }
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let held_elsewhere = self.held_by_others(member_id);
        let assignment_epoch = self.assignment_epoch;
        let member = self.classic_member(member_id)?;
        let mut keep = Partitions::new();
        let mut revoke = Partitions::new();
        for (topic, partitions) in &member.assigned {
            for p in partitions {
                let in_target = target.get(topic).is_some_and(|t| t.contains(p));
                let side = if in_target { &mut keep } else { &mut revoke };
                side.entry(topic.clone()).or_default().insert(*p);
            }
        }
        for (topic, partitions) in &target {
            for p in partitions {
                if !held_elsewhere.contains(&(topic.clone(), *p)) {
                    keep.entry(topic.clone()).or_default().insert(*p);
                }
            }
        }
        if keep != member.assigned || revoke != member.revoking {
            *persist = true;
        }
        member.assigned = keep;
        member.revoking = revoke;
        if member.member_epoch != assignment_epoch {
            member.previous_epoch = member.member_epoch;
            member.member_epoch = assignment_epoch;
            *persist = true;
        }
        Ok(ClassicJoin {
            generation: member.member_epoch,
            protocol_name: member
                .classic
                .as_ref()
                .and_then(|c| c.protocol())
                .map(str::to_string),
        })
    }

    /// A classic member's SyncGroup: its assignment.
    ///
    /// # Errors
    ///
    /// UNKNOWN_MEMBER_ID or ILLEGAL_GENERATION.
    pub fn classic_sync(&mut self, member_id: &str, generation: i32) -> Result<Bytes, ErrorCode> {
        let member = self.classic_member(member_id)?;
        if generation != member.member_epoch {
            return Err(ErrorCode::IllegalGeneration);
        }
        Ok(encode_assignment(&member.assigned))
    }

    /// A classic member's LeaveGroup.
    ///
    /// # Errors
    ///
    /// UNKNOWN_MEMBER_ID.
    pub fn classic_leave(&mut self, member_id: &str) -> Result<(), ErrorCode> {
        self.classic_member(member_id)?;
        self.remove_member(member_id);
        Ok(())
    }

    /// True while classic members remain.
    pub fn has_classic_members(&self) -> bool {
        self.members.values().any(|m| m.classic.is_some())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::group::consumer::{Heartbeat, TopicsView};
    use crate::group::state::{GroupConfig, Member, Saved};

    fn subscription(topics: &[&str]) -> Bytes {
        let mut out = BytesMut::new();
        out.put_i16(0);
        ConsumerProtocolSubscription::default()
            .with_topics(
                topics
                    .iter()
                    .map(|t| StrBytes::from_string(t.to_string()))
                    .collect(),
            )
            .encode(&mut out, 0)
            .unwrap();
        out.freeze()
    }

    fn classic_member(id: &str, partitions: &[i32]) -> Member {
        let assigned: Partitions =
            BTreeMap::from([("t".to_string(), partitions.iter().copied().collect())]);
        Member {
            member_id: id.into(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/h".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocols: vec![("cooperative-sticky".into(), subscription(&["t"]))],
            assignment: encode_assignment(&assigned),
            awaiting_join: false,
            awaiting_sync: false,
            expires_at_ms: 0,
            joined_seq: 0,
        }
    }

    #[test]
    fn classic_members_give_up_partitions_before_a_new_member_gets_them() {
        let topics: TopicsView = BTreeMap::from([("t".to_string(), 4)]);
        let config = ConsumerConfig::default();
        let classic = Group::restore(
            "g",
            GroupConfig::default(),
            Saved {
                generation: 5,
                protocol_type: Some("consumer".into()),
                protocol_name: Some("cooperative-sticky".into()),
                leader: Some("a".into()),
                members: vec![classic_member("a", &[0, 1]), classic_member("b", &[2, 3])],
                consumer: None,
            },
            0,
        );
        let mut group = ConsumerGroup::upgrade(&classic, &topics, &config);
        assert_eq!(group.members["a"].member_epoch, 5);
        assert_eq!(group.members["b"].assigned["t"], BTreeSet::from([2, 3]));
        // A member of the new protocol joins: nothing is free yet.
        let answer = group.heartbeat(
            &Heartbeat {
                member_id: "c".into(),
                member_epoch: 0,
                rebalance_timeout_ms: 30_000,
                subscribed_topics: Some(vec!["t".into()]),
                owned: Some(Partitions::new()),
                ..Heartbeat::default()
            },
            &topics,
            &config,
            1,
            &mut false,
        );
        assert!(
            answer
                .assignment
                .unwrap_or_default()
                .values()
                .all(BTreeSet::is_empty)
        );
        // The classic members are told to rejoin; the one that loses a partition keeps it as
        // "revoking" until it joins again.
        assert_eq!(
            group.classic_heartbeat("a", 5, 2),
            Err(ErrorCode::RebalanceInProgress)
        );
        let protocols = vec![("cooperative-sticky".to_string(), subscription(&["t"]))];
        let joined = group
            .classic_join("a", &protocols, 10_000, 30_000, &topics, 3, &mut false)
            .unwrap();
        let synced = partitions_of_assignment(&group.classic_sync("a", joined.generation).unwrap());
        let given_up: usize = group.members["a"]
            .revoking
            .values()
            .map(BTreeSet::len)
            .sum();
        assert_eq!(synced["t"].len() + given_up, 2);
        let c_target: usize = group.target["c"].values().map(BTreeSet::len).sum();
        assert!(c_target >= 1);
        // c gets nothing a still holds or is giving up, until a joins again.
        let mut beat = Heartbeat {
            member_id: "c".into(),
            member_epoch: group.members["c"].member_epoch,
            rebalance_timeout_ms: -1,
            owned: Some(Partitions::new()),
            ..Heartbeat::default()
        };
        group.heartbeat(&beat, &topics, &config, 4, &mut false);
        let a_holds: BTreeSet<i32> = group.members["a"]
            .assigned
            .values()
            .chain(group.members["a"].revoking.values())
            .flatten()
            .copied()
            .collect();
        let c_holds: BTreeSet<i32> = group.members["c"]
            .assigned
            .values()
            .flatten()
            .copied()
            .collect();
        assert!(a_holds.is_disjoint(&c_holds), "{a_holds:?} {c_holds:?}");
        // Once both classic members have joined twice (given up, then joined again), c holds
        // its whole target.
        for member in ["b", "a", "b"] {
            group
                .classic_join(member, &protocols, 10_000, 30_000, &topics, 5, &mut false)
                .unwrap();
        }
        assert!(group.members["a"].revoking.is_empty() && group.members["b"].revoking.is_empty());
        beat.member_epoch = group.members["c"].member_epoch;
        group.heartbeat(&beat, &topics, &config, 6, &mut false);
        assert_eq!(
            group.members["c"].assigned, group.target["c"],
            "c got what was given up"
        );
    }
}
