//! ConsumerGroupHeartbeat and ConsumerGroupDescribe: the KIP-848 consumer group protocol
//! (`group.protocol=consumer`), over the coordinator's [`crate::group::consumer`] groups.

use std::collections::BTreeMap;

use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment as DescribedAssignment, DescribedGroup, Member as DescribedMember,
    TopicPartitions as DescribedTopicPartitions,
};
use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse, TopicName,
};
use uuid::Uuid;

use super::str_bytes;
use crate::group::consumer::{Heartbeat, Partitions, TopicsView};
use crate::node::Node;
use crate::protocol::error_code::ErrorCode;
use crate::security::Caller;
use crate::security::acl::Operation;

/// The cluster's topics as a consumer group sees them: partition counts by name, and ids both
/// ways (internal topics left out, as Kafka leaves them out of regular expressions).
struct Topics {
    view: TopicsView,
    by_id: BTreeMap<Uuid, String>,
    ids: BTreeMap<String, Uuid>,
}

impl Topics {
    fn of(node: &Node) -> Topics {
        let mut topics = Topics {
            view: TopicsView::new(),
            by_id: BTreeMap::new(),
            ids: BTreeMap::new(),
        };
        let all = node.topics.all();
        topics.view = crate::group::consumer::topics_view(
            all.iter()
                .map(|t| (t.name.as_str(), t.partitions().len() as i32)),
        );
        for topic in all.iter().filter(|t| topics.view.contains_key(&t.name)) {
            topics.by_id.insert(topic.id, topic.name.clone());
            topics.ids.insert(topic.name.clone(), topic.id);
        }
        topics
    }

    fn assignment(&self, partitions: &Partitions) -> Vec<(Uuid, String, Vec<i32>)> {
        partitions
            .iter()
            .filter_map(|(name, ps)| {
                let id = self.ids.get(name)?;
                Some((*id, name.clone(), ps.iter().copied().collect()))
            })
            .collect()
    }
}

fn group_id_valid(id: &str) -> bool {
    !id.is_empty()
}

pub(super) async fn heartbeat(
    node: &Node,
    request: ConsumerGroupHeartbeatRequest,
    version: i16,
    client_id: String,
    client_host: String,
    caller: &Caller,
) -> ConsumerGroupHeartbeatResponse {
    let failed = |error: ErrorCode, message: &str| {
        ConsumerGroupHeartbeatResponse::default()
            .with_error_code(error.code())
            .with_error_message(Some(str_bytes(message)))
            .with_member_epoch(-1)
    };
    let group_id = request.group_id.0.to_string();
    if !group_id_valid(&group_id) {
        return failed(ErrorCode::InvalidGroupId, "the group id is empty");
    }
    if !caller.group(Operation::Read, &group_id) {
        return failed(
            ErrorCode::GroupAuthorizationFailed,
            "joining a group takes READ on it",
        );
    }
    // Kafka: every topic named in a subscription must be describable.
    if let Some(names) = &request.subscribed_topic_names
        && let Some(name) = names
            .iter()
            .find(|n| !caller.topic(Operation::Describe, n.as_str()))
    {
        return failed(
            ErrorCode::TopicAuthorizationFailed,
            &format!("DESCRIBE on topic '{}' is not allowed", name.0),
        );
    }
    let mut member_id = request.member_id.to_string();
    if member_id.is_empty() {
        if version >= 1 || request.member_epoch != 0 {
            return failed(
                ErrorCode::InvalidRequest,
                "ConsumerGroupHeartbeat v1 and later: the member chooses its id",
            );
        }
        member_id = Uuid::new_v4().to_string();
    }
    let topics = Topics::of(node);
    let owned = request.topic_partitions.map(|owned| {
        owned
            .into_iter()
            .filter_map(|tp| {
                let name = topics.by_id.get(&tp.topic_id)?;
                Some((name.clone(), tp.partitions.into_iter().collect()))
            })
            .collect::<Partitions>()
    });
    let heartbeat = Heartbeat {
        member_id,
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.map(|s| s.to_string()),
        rack_id: request.rack_id.map(|s| s.to_string()),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        subscribed_topics: request
            .subscribed_topic_names
            .map(|names| names.into_iter().map(|n| n.0.to_string()).collect()),
        subscribed_regex: request.subscribed_topic_regex.map(|s| s.to_string()),
        assignor: request.server_assignor.map(|s| s.to_string()),
        owned,
        client_id,
        client_host,
    };
    let answer = node
        .groups
        .consumer_heartbeat(&group_id, heartbeat, &topics.view)
        .await;
    let mut response = ConsumerGroupHeartbeatResponse::default()
        .with_member_id(Some(str_bytes(&answer.member_id)))
        .with_member_epoch(answer.member_epoch)
        .with_heartbeat_interval_ms(answer.heartbeat_interval_ms);
    if let Some((error, message)) = answer.error {
        tracing::debug!(group = %group_id, ?error, %message, "consumer group heartbeat refused");
        return response
            .with_error_code(error.code())
            .with_error_message(Some(str_bytes(&message)));
    }
    if let Some(assigned) = answer.assignment {
        let partitions = topics
            .assignment(&assigned)
            .into_iter()
            .map(|(id, _, partitions)| {
                TopicPartitions::default()
                    .with_topic_id(id)
                    .with_partitions(partitions)
            })
            .collect();
        response = response.with_assignment(Some(
            Assignment::default().with_topic_partitions(partitions),
        ));
    }
    response
}

pub(super) fn describe(
    node: &Node,
    request: ConsumerGroupDescribeRequest,
    caller: &Caller,
) -> ConsumerGroupDescribeResponse {
    let topics = Topics::of(node);
    let described = |partitions: &Partitions| {
        DescribedAssignment::default().with_topic_partitions(
            topics
                .assignment(partitions)
                .into_iter()
                .map(|(id, name, partitions)| {
                    DescribedTopicPartitions::default()
                        .with_topic_id(id)
                        .with_topic_name(TopicName(str_bytes(&name)))
                        .with_partitions(partitions)
                })
                .collect(),
        )
    };
    let groups = request
        .group_ids
        .into_iter()
        .map(|id| {
            let group = DescribedGroup::default()
                .with_group_id(id.clone())
                .with_authorized_operations(i32::MIN);
            if !caller.group(Operation::Describe, &id.0) {
                return group.with_error_code(ErrorCode::GroupAuthorizationFailed.code());
            }
            match node.groups.consumer_describe(id.0.as_str()) {
                Err((error, message)) => group
                    .with_error_code(error.code())
                    .with_error_message(Some(str_bytes(&message))),
                Ok(consumer) => {
                    let members = consumer
                        .members
                        .values()
                        .map(|m| {
                            DescribedMember::default()
                                .with_member_id(str_bytes(&m.member_id))
                                .with_instance_id(m.instance_id.as_deref().map(str_bytes))
                                .with_rack_id(m.rack_id.as_deref().map(str_bytes))
                                .with_member_epoch(m.member_epoch)
                                .with_client_id(str_bytes(&m.client_id))
                                .with_client_host(str_bytes(&m.client_host))
                                .with_subscribed_topic_names(
                                    m.subscribed_topics
                                        .iter()
                                        .map(|t| TopicName(str_bytes(t)))
                                        .collect(),
                                )
                                .with_subscribed_topic_regex(
                                    m.subscribed_regex.as_deref().map(str_bytes),
                                )
                                .with_assignment(described(&m.assigned))
                                .with_target_assignment(described(
                                    &consumer
                                        .target
                                        .get(&m.member_id)
                                        .cloned()
                                        .unwrap_or_default(),
                                ))
                                .with_member_type(1)
                        })
                        .collect();
                    group
                        .with_group_state(str_bytes(consumer.state_name()))
                        .with_group_epoch(consumer.group_epoch)
                        .with_assignment_epoch(consumer.assignment_epoch)
                        .with_assignor_name(str_bytes(consumer.assignor.name()))
                        .with_members(members)
                }
            }
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}
