//! DescribeCluster: the cluster's brokers and its controller.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::metadata::{controller_id, split_host_port};
use super::str_bytes;
use crate::node::Node;
use crate::protocol::ErrorCode;
use crate::security::Caller;
use crate::security::acl::Operation;

pub(super) fn describe(
    node: &Node,
    _request: DescribeClusterRequest,
    caller: &Caller,
) -> DescribeClusterResponse {
    if !caller.cluster(Operation::Describe) {
        return DescribeClusterResponse::default()
            .with_error_code(ErrorCode::ClusterAuthorizationFailed.code())
            .with_error_message(Some(str_bytes(
                "describing the cluster takes DESCRIBE on it",
            )));
    }
    let state = node.cluster.controller.state();
    let brokers = state
        .brokers
        .values()
        .filter_map(|b| Some((b, b.endpoint(caller.listener())?)))
        .map(|(b, endpoint)| {
            let (host, port) = split_host_port(endpoint);
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
