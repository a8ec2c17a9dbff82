//! DescribeCluster: the cluster's brokers and its controller.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::metadata::{controller_id, split_host_port};
use super::str_bytes;
use crate::node::Node;

pub(super) fn describe(node: &Node, _request: DescribeClusterRequest) -> DescribeClusterResponse {
    let state = node.cluster.controller.state();
    let brokers = state
        .brokers
        .values()
        .map(|b| {
            let (host, port) = split_host_port(&b.kafka_addr);
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.id))
                .with_host(str_bytes(&host))
                .with_port(port)
        })
        .collect();
    DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(&node.cluster_id))
        .with_controller_id(BrokerId(controller_id(node)))
        .with_endpoint_type(1)
        .with_cluster_authorized_operations(i32::MIN)
        .with_brokers(brokers)
}
