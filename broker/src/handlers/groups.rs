//! The group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
//! OffsetFetch, ListGroups, DescribeGroups, DeleteGroups, OffsetDelete. The work is done by
//! [`crate::group`]; this file translates requests and responses.

use std::collections::BTreeMap;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;

use super::metadata::split_host_port;
use super::str_bytes;
use crate::cluster::leaders;
use crate::group::state::{CommittedOffset, JoinRequest, JoinResult};
use crate::group::store::{GROUP_TOPIC, GroupStore};
use crate::group::{GroupState, OffsetCommit};
use crate::node::Node;
use crate::protocol::error_code::{ErrorCode, code};
use crate::security::acl::{Operation, ResourceType};
use crate::security::{CLUSTER, Caller};

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// Per partition of a topic: its index and its own error, if any.
type PartitionErrors = Vec<(i32, Option<ErrorCode>)>;

fn group_id_valid(id: &str) -> bool {
    !id.is_empty()
}

/// Where group `key`'s coordinator is, or transactional id `key`'s: the broker leading its
/// group-log partition.
async fn coordinator_of(
    node: &Node,
    key_type: i8,
    key: &str,
    listener: &str,
) -> Result<(i32, String, i32), (ErrorCode, Option<String>)> {
    match key_type {
        KEY_TYPE_GROUP if !group_id_valid(key) => {
            return Err((
                ErrorCode::InvalidGroupId,
                Some("the group id is empty".into()),
            ));
        }
        KEY_TYPE_TRANSACTION if key.is_empty() => {
            return Err((
                ErrorCode::InvalidRequest,
                Some("the transactional id is empty".into()),
            ));
        }
        KEY_TYPE_GROUP | KEY_TYPE_TRANSACTION => {}
        other => {
            return Err((
                ErrorCode::InvalidRequest,
                Some(format!("unknown coordinator key type {other}")),
            ));
        }
    }
    if let Err(e) = node.ensure_group_topic().await {
        return Err((ErrorCode::CoordinatorNotAvailable, Some(e.to_string())));
    }
    let not_available = || (ErrorCode::CoordinatorNotAvailable, None);
    let p = GroupStore::partition_of(key);
    let topic = node.topics.get(GROUP_TOPIC).ok_or_else(not_available)?;
    let partition = topic.partition(p as i32).ok_or_else(not_available)?;
    let state = node.cluster.controller.state();
    let raft_group = state
        .topics
        .get(GROUP_TOPIC)
        .and_then(|meta| meta.partitions.get(p))
        .map(|placement| placement.group);
    let leader = leaders::current(node, &partition, raft_group)
        .map(|claim| claim.leader)
        .ok_or_else(not_available)?;
    let broker = state.brokers.get(&leader).ok_or_else(not_available)?;
    let (host, port) = split_host_port(broker.endpoint(listener).ok_or_else(not_available)?);
    Ok((leader, host, port))
}

pub(super) async fn find_coordinator(
    node: &Node,
    request: FindCoordinatorRequest,
    version: i16,
    caller: &Caller,
) -> FindCoordinatorResponse {
    let listener = caller.listener();
    let authorized = |key: &str| -> Result<(), (ErrorCode, Option<String>)> {
        match request.key_type {
            KEY_TYPE_TRANSACTION if !caller.txn(Operation::Describe, key) => {
                Err((ErrorCode::TransactionalIdAuthorizationFailed, None))
            }
            KEY_TYPE_GROUP if !caller.group(Operation::Describe, key) => {
                Err((ErrorCode::GroupAuthorizationFailed, None))
            }
            _ => Ok(()),
        }
    };
    if version >= 4 {
        let mut coordinators = Vec::with_capacity(request.coordinator_keys.len());
        for key in &request.coordinator_keys {
            let coordinator = Coordinator::default().with_key(key.clone());
            let found = match authorized(key) {
                Ok(()) => coordinator_of(node, request.key_type, key, listener).await,
                Err(e) => Err(e),
            };
            coordinators.push(match found {
                Ok((id, host, port)) => coordinator
                    .with_node_id(BrokerId(id))
                    .with_host(str_bytes(&host))
                    .with_port(port),
                Err((error, message)) => coordinator
                    .with_error_code(error.code())
                    .with_error_message(message.map(|m| str_bytes(&m)))
                    .with_node_id(BrokerId(-1))
                    .with_port(-1),
            });
        }
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let found = match authorized(&request.key) {
        Ok(()) => coordinator_of(node, request.key_type, &request.key, listener).await,
        Err(e) => Err(e),
    };
    match found {
        Ok((id, host, port)) => FindCoordinatorResponse::default()
            .with_node_id(BrokerId(id))
            .with_host(str_bytes(&host))
            .with_port(port),
        Err((error, message)) => {
            let response = FindCoordinatorResponse::default()
                .with_error_code(error.code())
                .with_node_id(BrokerId(-1))
                .with_port(-1);
            if version >= 1 {
                response.with_error_message(message.map(|m| str_bytes(&m)))
            } else {
                response
            }
        }
    }
}

fn join_response(result: JoinResult, version: i16) -> JoinGroupResponse {
    let members = result
        .members
        .into_iter()
        .map(|(member_id, instance, metadata)| {
            JoinGroupResponseMember::default()
                .with_member_id(str_bytes(&member_id))
                .with_group_instance_id(if version >= 5 {
                    instance.map(|i| str_bytes(&i))
                } else {
                    None
                })
                .with_metadata(metadata)
        })
        .collect();
    let response = JoinGroupResponse::default()
        .with_error_code(code(result.error))
        .with_generation_id(result.generation)
        .with_protocol_name(result.protocol_name.map(|p| str_bytes(&p)))
        .with_leader(str_bytes(&result.leader))
        .with_member_id(str_bytes(&result.member_id))
        .with_members(members);
    if version >= 7 {
        response.with_protocol_type(result.protocol_type.map(|p| str_bytes(&p)))
    } else {
        response
    }
}

pub(super) async fn join(
    node: &Node,
    request: JoinGroupRequest,
    version: i16,
    client_id: String,
    client_host: String,
    caller: &Caller,
) -> JoinGroupResponse {
    let group_id = request.group_id.0.to_string();
    let refused = if !group_id_valid(&group_id) {
        Some(ErrorCode::InvalidGroupId)
    } else if !caller.group(Operation::Read, &group_id) {
        Some(ErrorCode::GroupAuthorizationFailed)
    } else {
        None
    };
    if let Some(error) = refused {
        return join_response(
            JoinResult {
                error: Some(error),
                generation: -1,
                protocol_type: None,
                protocol_name: None,
                leader: String::new(),
                member_id: String::new(),
                members: vec![],
            },
            version,
        );
    }
    let rebalance_timeout_ms = if version >= 1 {
        request.rebalance_timeout_ms
    } else {
        request.session_timeout_ms
    };
    let join = JoinRequest {
        version,
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.map(|i| i.to_string()),
        client_id,
        client_host,
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms,
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
    };
    join_response(node.groups.join(&group_id, join).await, version)
}

pub(super) async fn sync(
    node: &Node,
    request: SyncGroupRequest,
    version: i16,
    caller: &Caller,
) -> SyncGroupResponse {
    if !caller.group(Operation::Read, &request.group_id.0) {
        return SyncGroupResponse::default()
            .with_error_code(ErrorCode::GroupAuthorizationFailed.code());
    }
    let assignments = request
        .assignments
        .into_iter()
        .map(|a| (a.member_id.to_string(), a.assignment))
        .collect();
    let protocol_type = request.protocol_type.as_ref().map(|p| p.to_string());
    let protocol_name = request.protocol_name.as_ref().map(|p| p.to_string());
    let result = node
        .groups
        .sync(
            request.group_id.0.as_str(),
            request.member_id.as_str(),
            request.group_instance_id.as_deref(),
            request.generation_id,
            (protocol_type.as_deref(), protocol_name.as_deref()),
            assignments,
        )
        .await;
    let response = SyncGroupResponse::default()
        .with_error_code(code(result.error))
        .with_assignment(result.assignment);
    if version >= 5 {
        response
            .with_protocol_type(result.protocol_type.map(|p| str_bytes(&p)))
            .with_protocol_name(result.protocol_name.map(|p| str_bytes(&p)))
    } else {
        response
    }
}

pub(super) fn heartbeat(
    node: &Node,
    request: HeartbeatRequest,
    caller: &Caller,
) -> HeartbeatResponse {
    if !caller.group(Operation::Read, &request.group_id.0) {
        return HeartbeatResponse::default()
            .with_error_code(ErrorCode::GroupAuthorizationFailed.code());
    }
    let result = node.groups.heartbeat(
        request.group_id.0.as_str(),
        request.member_id.as_str(),
        request.group_instance_id.as_deref(),
        request.generation_id,
    );
    HeartbeatResponse::default().with_error_code(code(result.err()))
}

pub(super) async fn leave(
    node: &Node,
    request: LeaveGroupRequest,
    version: i16,
    caller: &Caller,
) -> LeaveGroupResponse {
    if !caller.group(Operation::Read, &request.group_id.0) {
        return LeaveGroupResponse::default()
            .with_error_code(ErrorCode::GroupAuthorizationFailed.code());
    }
    // v0-2 name one member; v3+ a list (which may be static members by instance id).
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|i| i.to_string()),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    match node
        .groups
        .leave(request.group_id.0.as_str(), &members)
        .await
    {
        Err(error) => LeaveGroupResponse::default().with_error_code(error.code()),
        Ok(results) if version >= 3 => LeaveGroupResponse::default().with_members(
            members
                .iter()
                .zip(results)
                .map(|((member_id, instance), error)| {
                    MemberResponse::default()
                        .with_member_id(str_bytes(member_id))
                        .with_group_instance_id(instance.as_deref().map(str_bytes))
                        .with_error_code(code(error))
                })
                .collect(),
        ),
        Ok(results) => LeaveGroupResponse::default()
            .with_error_code(code(results.into_iter().next().flatten())),
    }
}

pub(super) async fn offset_commit(
    node: &Node,
    request: OffsetCommitRequest,
    version: i16,
    caller: &Caller,
) -> OffsetCommitResponse {
    let group_id = request.group_id.0.to_string();
    let group_denied = !caller.group(Operation::Read, &group_id);
    let now = node.clock.now_ms();
    // Per partition: an error of its own, or an offset to commit.
    let mut outcome: Vec<(TopicName, PartitionErrors)> = Vec::new();
    let mut commits = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let known = node.topics.get(&name);
        let topic_denied = !group_denied && !caller.topic(Operation::Read, &name);
        let mut partitions = Vec::new();
        for p in &topic.partitions {
            let metadata = p
                .committed_metadata
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default();
            let error = match &known {
                _ if group_denied => Some(ErrorCode::GroupAuthorizationFailed),
                _ if topic_denied => Some(ErrorCode::TopicAuthorizationFailed),
                None => Some(ErrorCode::UnknownTopicOrPartition),
                Some(t) if t.partition(p.partition_index).is_none() => {
                    Some(ErrorCode::UnknownTopicOrPartition)
                }
                _ if metadata.len() > crate::group::coordinator::OFFSET_METADATA_BYTES_MAX => {
                    Some(ErrorCode::OffsetMetadataTooLarge)
                }
                _ => None,
            };
            if error.is_none() {
                commits.push(OffsetCommit {
                    topic: name.clone(),
                    partition: p.partition_index,
                    committed: CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: if version >= 6 {
                            p.committed_leader_epoch
                        } else {
                            -1
                        },
                        metadata,
                        commit_timestamp_ms: now,
                    },
                });
            }
            partitions.push((p.partition_index, error));
        }
        outcome.push((topic.name.clone(), partitions));
    }
    let whole = if !group_id_valid(&group_id) {
        Some(ErrorCode::InvalidGroupId)
    } else if group_denied {
        Some(ErrorCode::GroupAuthorizationFailed)
    } else {
        node.groups
            .commit(
                &group_id,
                request.member_id.as_str(),
                request.group_instance_id.as_deref(),
                request.generation_id_or_member_epoch,
                commits,
            )
            .await
            .err()
    };
    let topics = outcome
        .into_iter()
        .map(|(name, partitions)| {
            OffsetCommitResponseTopic::default()
                .with_name(name)
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|(index, error)| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(index)
                                .with_error_code(code(error.or(whole)))
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// The committed offsets asked for: (topic, refusal, [(partition, committed)]).
type Fetched = Vec<(
    String,
    Option<ErrorCode>,
    Vec<(i32, Option<CommittedOffset>)>,
)>;

/// Topics the caller may not describe are left out of "all", and refused when named.
fn fetch_offsets(
    node: &Node,
    group_id: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
    caller: &Caller,
) -> Fetched {
    let offsets = node.groups.offsets(group_id).unwrap_or_default();
    match topics {
        Some(topics) => topics
            .into_iter()
            .map(|(topic, partitions)| {
                if !caller.topic(Operation::Describe, &topic) {
                    let none = partitions.into_iter().map(|p| (p, None)).collect();
                    return (topic, Some(ErrorCode::TopicAuthorizationFailed), none);
                }
                let found = partitions
                    .into_iter()
                    .map(|p| (p, offsets.get(&(topic.clone(), p)).cloned()))
                    .collect();
                (topic, None, found)
            })
            .collect(),
        None => {
            let mut by_topic: BTreeMap<String, Vec<(i32, Option<CommittedOffset>)>> =
                BTreeMap::new();
            for ((topic, partition), committed) in offsets {
                if !caller.sees(Operation::Describe, ResourceType::Topic, &topic) {
                    continue;
                }
                by_topic
                    .entry(topic)
                    .or_default()
                    .push((partition, Some(committed)));
            }
            by_topic.into_iter().map(|(t, p)| (t, None, p)).collect()
        }
    }
}

pub(super) fn offset_fetch(
    node: &Node,
    request: OffsetFetchRequest,
    version: i16,
    caller: &Caller,
) -> OffsetFetchResponse {
    let epoch = |c: &Option<CommittedOffset>| {
        if version >= 5 {
            c.as_ref().map_or(-1, |c| c.leader_epoch)
        } else {
            -1
        }
    };
    // KIP-447: a consumer that asks for stable offsets waits while a transaction that
    // committed one of them is still open.
    let require_stable = version >= 7 && request.require_stable;
    let unstable = |group: &str, topic: &str, partition: i32| -> i16 {
        if require_stable && node.groups.has_pending_offset(group, topic, partition) {
            ErrorCode::UnstableOffsetCommit.code()
        } else {
            0
        }
    };
    if version >= 8 {
        let groups = request
            .groups
            .into_iter()
            .map(|g| {
                let topics = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes))
                        .collect()
                });
                if !caller.group(Operation::Describe, &g.group_id.0) {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(ErrorCode::GroupAuthorizationFailed.code());
                }
                if let Err(error) = node
                    .groups
                    .coordinates(g.group_id.0.as_str())
                    .and_then(|()| {
                        node.groups.check_fetch_member(
                            g.group_id.0.as_str(),
                            g.member_id.as_deref().unwrap_or(""),
                            g.member_epoch,
                        )
                    })
                {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(error.code());
                }
                let fetched = fetch_offsets(node, g.group_id.0.as_str(), topics, caller);
                let group = g.group_id.0.to_string();
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_topics(
                        fetched
                            .into_iter()
                            .map(|(topic, refused, partitions)| {
                                let error = |p| match refused {
                                    Some(e) => e.code(),
                                    None => unstable(&group, &topic, p),
                                };
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(str_bytes(&topic)))
                                    .with_partitions(
                                        partitions
                                            .into_iter()
                                            .map(|(p, c)| {
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(p)
                                                    .with_error_code(error(p))
                                                    .with_committed_offset(
                                                        c.as_ref().map_or(-1, |c| c.offset),
                                                    )
                                                    .with_committed_leader_epoch(epoch(&c))
                                                    .with_metadata(Some(str_bytes(
                                                        c.as_ref()
                                                            .map_or("", |c| c.metadata.as_str()),
                                                    )))
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    )
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let topics = request.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    if !caller.group(Operation::Describe, &request.group_id.0) {
        return OffsetFetchResponse::default()
            .with_error_code(ErrorCode::GroupAuthorizationFailed.code());
    }
    if let Err(error) = node.groups.coordinates(request.group_id.0.as_str()) {
        return OffsetFetchResponse::default().with_error_code(error.code());
    }
    let fetched = fetch_offsets(node, request.group_id.0.as_str(), topics, caller);
    OffsetFetchResponse::default().with_topics(
        fetched
            .into_iter()
            .map(|(topic, refused, partitions)| {
                let error = |p| match refused {
                    Some(e) => e.code(),
                    None => unstable(&request.group_id.0, &topic, p),
                };
                OffsetFetchResponseTopic::default()
                    .with_name(TopicName(str_bytes(&topic)))
                    .with_partitions(
                        partitions
                            .into_iter()
                            .map(|(p, c)| {
                                OffsetFetchResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_error_code(error(p))
                                    .with_committed_offset(c.as_ref().map_or(-1, |c| c.offset))
                                    .with_committed_leader_epoch(epoch(&c))
                                    .with_metadata(Some(str_bytes(
                                        c.as_ref().map_or("", |c| c.metadata.as_str()),
                                    )))
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

pub(super) fn list_groups(
    node: &Node,
    request: ListGroupsRequest,
    version: i16,
    caller: &Caller,
) -> ListGroupsResponse {
    // Kafka: DESCRIBE on the cluster lists every group, else those the caller may describe.
    let all = caller.sees(Operation::Describe, ResourceType::Cluster, CLUSTER);
    let states: Vec<String> = request
        .states_filter
        .iter()
        .map(|s| s.to_lowercase())
        .collect();
    let types: Vec<String> = request
        .types_filter
        .iter()
        .map(|s| s.to_lowercase())
        .collect();
    let groups = node
        .groups
        .list()
        .into_iter()
        .filter(|(id, _, _, _)| all || caller.sees(Operation::Describe, ResourceType::Group, id))
        .filter(|(_, _, state, _)| states.is_empty() || states.contains(&state.to_lowercase()))
        .filter(|(_, _, _, kind)| types.is_empty() || types.iter().any(|t| t == kind))
        .map(|(id, protocol_type, state, kind)| {
            let group = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(&id)))
                .with_protocol_type(str_bytes(protocol_type.as_deref().unwrap_or("")));
            let group = if version >= 4 {
                group.with_group_state(str_bytes(state))
            } else {
                group
            };
            if version >= 5 {
                group.with_group_type(str_bytes(kind))
            } else {
                group
            }
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

pub(super) fn describe_groups(
    node: &Node,
    request: DescribeGroupsRequest,
    version: i16,
    caller: &Caller,
) -> DescribeGroupsResponse {
    let groups = request
        .groups
        .into_iter()
        .map(|id| {
            let described = DescribedGroup::default()
                .with_group_id(id.clone())
                .with_authorized_operations(i32::MIN);
            if !caller.group(Operation::Describe, &id.0) {
                return described.with_error_code(ErrorCode::GroupAuthorizationFailed.code());
            }
            if let Err(error) = node.groups.coordinates(id.0.as_str()) {
                return described.with_error_code(error.code());
            }
            let Some(group) = node.groups.describe(id.0.as_str()) else {
                return described.with_group_state(str_bytes(GroupState::Dead.name()));
            };
            let protocol = group.protocol_name.clone().unwrap_or_default();
            let mut members: Vec<_> = group.members.values().collect();
            members.sort_by_key(|m| m.joined_seq);
            let members = members
                .into_iter()
                .map(|m| {
                    DescribedGroupMember::default()
                        .with_member_id(str_bytes(&m.member_id))
                        .with_group_instance_id(if version >= 4 {
                            m.group_instance_id.as_deref().map(str_bytes)
                        } else {
                            None
                        })
                        .with_client_id(str_bytes(&m.client_id))
                        .with_client_host(str_bytes(&m.client_host))
                        .with_member_metadata(m.metadata(&protocol).cloned().unwrap_or_default())
                        .with_member_assignment(m.assignment.clone())
                })
                .collect();
            described
                .with_group_state(str_bytes(group.state_name()))
                .with_protocol_type(str_bytes(group.protocol_type.as_deref().unwrap_or("")))
                .with_protocol_data(str_bytes(&protocol))
                .with_members(members)
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

pub(super) async fn delete_groups(
    node: &Node,
    request: DeleteGroupsRequest,
    caller: &Caller,
) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(request.groups_names.len());
    for id in request.groups_names {
        let error = if caller.group(Operation::Delete, &id.0) {
            node.groups.delete_group(id.0.as_str()).await.err()
        } else {
            Some(ErrorCode::GroupAuthorizationFailed)
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(code(error)),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}

pub(super) async fn offset_delete(
    node: &Node,
    request: OffsetDeleteRequest,
    caller: &Caller,
) -> OffsetDeleteResponse {
    if !caller.group(Operation::Delete, &request.group_id.0) {
        return OffsetDeleteResponse::default()
            .with_error_code(ErrorCode::GroupAuthorizationFailed.code());
    }
    let denied: Vec<String> = request
        .topics
        .iter()
        .filter(|t| !caller.topic(Operation::Read, &t.name.0))
        .map(|t| t.name.0.to_string())
        .collect();
    let partitions: Vec<(String, i32)> = request
        .topics
        .iter()
        .filter(|t| !denied.iter().any(|d| *d == *t.name.0))
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.0.to_string(), p.partition_index))
        })
        .collect();
    match node
        .groups
        .delete_offsets(request.group_id.0.as_str(), &partitions)
        .await
    {
        Err(error) => OffsetDeleteResponse::default().with_error_code(error.code()),
        Ok(errors) => {
            let mut errors = errors.into_iter();
            let topics = request
                .topics
                .into_iter()
                .map(|t| {
                    let refused = denied.iter().any(|d| *d == *t.name.0);
                    let partitions = t
                        .partitions
                        .iter()
                        .map(|p| {
                            let error = if refused {
                                Some(ErrorCode::TopicAuthorizationFailed)
                            } else {
                                errors.next().flatten()
                            };
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code(error))
                        })
                        .collect();
                    OffsetDeleteResponseTopic::default()
                        .with_name(t.name)
                        .with_partitions(partitions)
                })
                .collect();
            OffsetDeleteResponse::default().with_topics(topics)
        }
    }
}
