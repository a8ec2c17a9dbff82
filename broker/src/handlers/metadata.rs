//! Metadata: the cluster's brokers, and the topics asked for (auto-creating unknown ones when
//! allowed), each partition with its leader, leader epoch, replicas and in-sync replicas.
//!
//! A partition this node holds a replica of is described from its Raft group (the leader and
//! term every replica knows); one it does not hold, from the leadership its peers reported
//! (see [`crate::cluster::leaders`]).

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use uuid::Uuid;

use super::{str_bytes, topic_name};
use crate::cluster::admin::NewTopic;
use crate::cluster::leaders;
use crate::controller::ClusterState;
use crate::node::Node;
use crate::protocol::error_code::{ErrorCode, for_topic};
use crate::security::acl::{Operation, ResourceType};
use crate::security::{CLUSTER, Caller};
use crate::topics::{Partition, Topic};

pub(super) async fn handle(
    node: &Node,
    request: MetadataRequest,
    version: i16,
    caller: &Caller,
) -> MetadataResponse {
    // Before v4 a client could not say no to auto-creation; Kafka then creates.
    let may_create =
        node.config.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    // Listing all topics leaves out those the caller may not describe, as Kafka does.
    let all = |node: &Node| -> Vec<MetadataResponseTopic> {
        let state = node.cluster.controller.state();
        node.topics
            .all()
            .iter()
            .filter(|t| !t.internal)
            .filter(|t| caller.sees(Operation::Describe, ResourceType::Topic, &t.name))
            .map(|t| describe(node, &state, t))
            .collect()
    };
    let topics = match request.topics {
        // v0 used an empty list for "all topics"; later versions use null.
        None => all(node),
        Some(list) if list.is_empty() && version == 0 => all(node),
        Some(list) => {
            let mut topics = Vec::with_capacity(list.len());
            for wanted in list {
                topics.push(match (wanted.name, wanted.topic_id) {
                    (Some(name), _) => by_name(node, name.0.as_str(), may_create, caller).await,
                    (None, id) if id != Uuid::nil() => match node.topics.get_by_id(id) {
                        Some(topic) if !caller.topic(Operation::Describe, &topic.name) => {
                            MetadataResponseTopic::default()
                                .with_topic_id(id)
                                .with_error_code(ErrorCode::TopicAuthorizationFailed.code())
                        }
                        Some(topic) => describe(node, &node.cluster.controller.state(), &topic),
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
    let state = node.cluster.controller.state();
    MetadataResponse::default()
        .with_brokers(brokers(node, &state, caller.listener()))
        .with_cluster_id(Some(str_bytes(&node.cluster_id)))
        .with_controller_id(BrokerId(controller_id(node)))
        .with_cluster_authorized_operations(i32::MIN)
        .with_topics(topics)
}

/// The broker clients are told is the controller: the controller's leader while it is
/// alive, else this broker (any broker takes controller requests and forwards them, so, as
/// KRaft brokers do, name a live one: kafkajs sends InitProducerId there and gives up on a
/// dead one).
pub(crate) fn controller_id(node: &Node) -> i32 {
    node.cluster
        .controller
        .leader()
        .filter(|l| node.cluster.pulse.liveness.alive(*l))
        .and_then(|l| i32::try_from(l).ok())
        .unwrap_or(node.config.node_id)
}

/// How long a broker may go unheard and still be listed (Kafka's `broker.session.timeout.ms`).
const BROKER_SESSION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(9);

/// Every registered broker with the address clients use, but those unheard for longer than
/// the session timeout (down: clients need not try them; replica lists still name them).
pub(super) fn brokers(
    node: &Node,
    state: &ClusterState,
    listener: &str,
) -> Vec<MetadataResponseBroker> {
    let unheard: std::collections::HashMap<u64, std::time::Duration> =
        node.cluster.pulse.liveness.peers().into_iter().collect();
    let mut brokers: Vec<MetadataResponseBroker> = state
        .brokers
        .values()
        .filter(|b| {
            b.id == node.config.node_id
                || unheard
                    .get(&(b.id as u64))
                    .is_none_or(|ago| *ago <= BROKER_SESSION_TIMEOUT)
        })
        .filter_map(|b| Some((b, b.endpoint(listener)?)))
        .map(|(b, endpoint)| {
            let (host, port) = split_host_port(endpoint);
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id))
                .with_host(str_bytes(&host))
                .with_port(port)
        })
        .collect();
    if brokers.is_empty() {
        // Not registered yet (a node still starting): at least this one.
        let own = node
            .security
            .listeners
            .iter()
            .find(|l| l.name == listener)
            .map(|l| l.advertised.clone().unwrap_or_else(|| l.addr.to_string()))
            .unwrap_or_else(|| node.config.advertised_addr());
        let (host, port) = split_host_port(&own);
        brokers.push(
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(node.config.node_id))
                .with_host(str_bytes(&host))
                .with_port(port),
        );
    }
    brokers
}

/// A topic's partitions as Metadata describes them (leaders, replicas, in-sync replicas),
/// for the admin API.
pub(crate) fn describe_topic(node: &Node, topic: &Topic) -> MetadataResponseTopic {
    describe(node, &node.cluster.controller.state(), topic)
}

/// The brokers Metadata lists on the first listener, as (id, host, port), for the admin API.
pub(crate) fn brokers_of(node: &Node) -> Vec<(i32, String, i32)> {
    let listener = node
        .security
        .listeners
        .first()
        .map(|l| l.name.clone())
        .unwrap_or_default();
    brokers(node, &node.cluster.controller.state(), &listener)
        .into_iter()
        .map(|b| (b.node_id.0, b.host.to_string(), b.port))
        .collect()
}

/// `host:port` split, IPv6 brackets removed.
pub(super) fn split_host_port(addr: &str) -> (String, i32) {
    match addr.rsplit_once(':') {
        Some((host, port)) => (
            host.trim_matches(['[', ']']).to_string(),
            port.parse().unwrap_or(9092),
        ),
        None => (addr.to_string(), 9092),
    }
}

async fn by_name(
    node: &Node,
    name: &str,
    may_create: bool,
    caller: &Caller,
) -> MetadataResponseTopic {
    let unknown = |error: ErrorCode| {
        MetadataResponseTopic::default()
            .with_name(Some(topic_name(name)))
            .with_error_code(error.code())
    };
    // A topic the caller may not describe is refused whether or not it exists, so its
    // existence does not leak.
    if !caller.topic(Operation::Describe, name) {
        return unknown(ErrorCode::TopicAuthorizationFailed);
    }
    if let Some(topic) = node.topics.get(name) {
        return describe(node, &node.cluster.controller.state(), &topic);
    }
    if !may_create {
        return unknown(ErrorCode::UnknownTopicOrPartition);
    }
    // Auto-creation takes CREATE on the cluster or the topic.
    if !caller.sees(Operation::Create, ResourceType::Cluster, CLUSTER)
        && !caller.topic(Operation::Create, name)
    {
        return unknown(ErrorCode::TopicAuthorizationFailed);
    }
    let new = NewTopic {
        name: name.to_string(),
        partitions: node.config.default_partitions,
        replication_factor: -1,
        configs: Vec::new(),
        restored: None,
    };
    match node.create_topic(new, false).await {
        Ok(_) => match node.topics.get(name) {
            Some(topic) => describe(node, &node.cluster.controller.state(), &topic),
            None => unknown(ErrorCode::LeaderNotAvailable),
        },
        // Another request created it meanwhile.
        Err(crate::topics::TopicError::AlreadyExists(_)) => match node.topics.get(name) {
            Some(topic) => describe(node, &node.cluster.controller.state(), &topic),
            None => unknown(ErrorCode::LeaderNotAvailable),
        },
        Err(e) => {
            tracing::info!(topic = name, error = %e, "auto-creation refused");
            unknown(for_topic(&e))
        }
    }
}

fn describe(node: &Node, state: &ClusterState, topic: &Topic) -> MetadataResponseTopic {
    let meta = state.topics.get(&topic.name).filter(|m| m.id == topic.id);
    let partitions = topic
        .partitions()
        .iter()
        .map(|p| {
            let placement = meta.and_then(|m| m.partitions.get(p.index as usize));
            let replicas =
                placement.map_or_else(|| vec![node.config.node_id], |pm| pm.replicas.clone());
            describe_partition(node, p, &replicas, placement.map(|pm| pm.group))
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&topic.name)))
        .with_topic_id(topic.id)
        .with_is_internal(topic.internal)
        .with_partitions(partitions)
        .with_topic_authorized_operations(i32::MIN)
}

fn describe_partition(
    node: &Node,
    partition: &Partition,
    replicas: &[i32],
    group: Option<u64>,
) -> MetadataResponsePartition {
    let described = MetadataResponsePartition::default()
        .with_partition_index(partition.index)
        .with_replica_nodes(replicas.iter().map(|r| BrokerId(*r)).collect());
    if partition.hosted && partition.replica.is_err() {
        return described
            .with_leader_id(BrokerId(-1))
            .with_leader_epoch(-1)
            .with_error_code(ErrorCode::KafkaStorageError.code())
            .with_offline_replicas(vec![BrokerId(node.config.node_id)]);
    }
    let ids = |ids: &[i32]| ids.iter().map(|r| BrokerId(*r)).collect::<Vec<_>>();
    match leaders::current(node, partition, group) {
        Some(claim) => described
            .with_leader_id(BrokerId(claim.leader))
            .with_leader_epoch(claim.epoch)
            .with_isr_nodes(ids(&claim.in_sync)),
        // Held elsewhere and not heard of yet: its preferred leader, for a start.
        None if !partition.hosted => described
            .with_leader_id(BrokerId(replicas.first().copied().unwrap_or(-1)))
            .with_leader_epoch(-1)
            .with_isr_nodes(ids(replicas)),
        // An election is under way (or this node is cut off from the others): the client
        // asks again. The epoch this replica knows goes with it, so that a client which
        // already heard of a newer leader keeps it (librdkafka applies a leader of -1 with
        // an epoch of -1 over what it knows, and would wait on this node).
        None => described
            .with_leader_id(BrokerId(-1))
            .with_leader_epoch(
                partition
                    .replica
                    .as_ref()
                    .map_or(-1, |r| r.leadership().epoch),
            )
            .with_isr_nodes(ids(replicas))
            .with_error_code(ErrorCode::LeaderNotAvailable.code()),
    }
}
