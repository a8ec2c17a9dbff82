//! DescribeCluster: this one broker.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use crate::node::Node;

pub(super) fn describe(node: &Node, _request: DescribeClusterRequest) -> DescribeClusterResponse {
    let (host, port) = advertised(node);
    DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(&node.cluster_id))
        .with_controller_id(BrokerId(node.config.node_id))
        .with_endpoint_type(1)
        .with_cluster_authorized_operations(i32::MIN)
        .with_brokers(vec![
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(node.config.node_id))
                .with_host(str_bytes(&host))
                .with_port(port),
        ])
}

/// The host and port clients are told to use.
pub(super) fn advertised(node: &Node) -> (String, i32) {
    let addr = node.config.advertised_addr();
    match addr.rsplit_once(':') {
        Some((host, port)) => (
            host.trim_matches(['[', ']']).to_string(),
            port.parse().unwrap_or(9092),
        ),
        None => (addr, 9092),
    }
}
