//! Metadata: this broker, and the topics asked for (auto-creating unknown ones when allowed).

use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use uuid::Uuid;

use super::cluster::advertised;
use super::{str_bytes, topic_name};
use crate::node::Node;
use crate::partition::PartitionView;
use crate::protocol::error_code::{ErrorCode, for_topic};
use crate::topics::Topic;

pub(super) async fn handle(
    node: &Node,
    request: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    let (host, port) = advertised(node);
    let node_id = BrokerId(node.config.node_id);
    // Before v4 a client could not say no to auto-creation; Kafka then creates.
    let may_create =
        node.config.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    let topics = match request.topics {
        // v0 used an empty list for "all topics"; later versions use null.
        None => node
            .topics
            .all()
            .iter()
            .map(|t| describe(node, t, node_id))
            .collect(),
        Some(list) if list.is_empty() && version == 0 => node
            .topics
            .all()
            .iter()
            .map(|t| describe(node, t, node_id))
            .collect(),
        Some(list) => {
            let mut topics = Vec::with_capacity(list.len());
            for wanted in list {
                topics.push(match (wanted.name, wanted.topic_id) {
                    (Some(name), _) => by_name(node, name.0.as_str(), may_create, node_id).await,
                    (None, id) if id != Uuid::nil() => match node.topics.get_by_id(id) {
                        Some(topic) => describe(node, &topic, node_id),
                        None => MetadataResponseTopic::default()
                            .with_topic_id(id)
                            .with_error_code(ErrorCode::UnknownTopicId.code()),
                    },
                    (None, _) => MetadataResponseTopic::default()
                        .with_error_code(ErrorCode::InvalidRequest.code()),
                });
            }
            topics
        }
    };
    MetadataResponse::default()
        .with_brokers(vec![
            MetadataResponseBroker::default()
                .with_node_id(node_id)
                .with_host(str_bytes(&host))
                .with_port(port),
        ])
        .with_cluster_id(Some(str_bytes(&node.cluster_id)))
        .with_controller_id(node_id)
        .with_cluster_authorized_operations(i32::MIN)
        .with_topics(topics)
}

async fn by_name(
    node: &Node,
    name: &str,
    may_create: bool,
    node_id: BrokerId,
) -> MetadataResponseTopic {
    if let Some(topic) = node.topics.get(name) {
        return describe(node, &topic, node_id);
    }
    let unknown = |error: ErrorCode| {
        MetadataResponseTopic::default()
            .with_name(Some(topic_name(name)))
            .with_error_code(error.code())
    };
    if !may_create {
        return unknown(ErrorCode::UnknownTopicOrPartition);
    }
    let partitions = node.config.default_partitions;
    match node.topics.create(name, partitions, 1, &[]).await {
        Ok(topic) => describe(node, &topic, node_id),
        // Another request created it meanwhile.
        Err(crate::topics::TopicError::AlreadyExists(_)) => match node.topics.get(name) {
            Some(topic) => describe(node, &topic, node_id),
            None => unknown(ErrorCode::LeaderNotAvailable),
        },
        Err(e) => {
            tracing::info!(topic = name, error = %e, "auto-creation refused");
            unknown(for_topic(&e))
        }
    }
}

fn describe(node: &Node, topic: &Arc<Topic>, node_id: BrokerId) -> MetadataResponseTopic {
    let partitions = topic
        .partitions()
        .iter()
        .map(|p| {
            let view = PartitionView::of(node, topic.clone(), p.clone());
            let partition = MetadataResponsePartition::default()
                .with_partition_index(p.index)
                .with_leader_epoch(view.leader_epoch())
                .with_replica_nodes(vec![node_id])
                .with_isr_nodes(vec![node_id]);
            match &p.replica {
                Ok(_) => partition.with_leader_id(node_id),
                Err(_) => partition
                    .with_leader_id(BrokerId(-1))
                    .with_error_code(ErrorCode::KafkaStorageError.code())
                    .with_offline_replicas(vec![node_id]),
            }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&topic.name)))
        .with_topic_id(topic.id)
        .with_partitions(partitions)
        .with_topic_authorized_operations(i32::MIN)
}
