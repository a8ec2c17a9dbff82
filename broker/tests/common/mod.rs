//! Starting a node in-process the way `silt serve` does, on free ports.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::{Encodable, StrBytes};

use silt_broker::cluster::admin::NewTopic;
use silt_broker::log::{Storage, SystemClock};
use silt_broker::node::Node;
use silt_broker::server::Server;
use silt_config::NodeConfig;

/// Opens a node (a cluster of one) over `storage`, with every listener on a free port.
/// Nothing is served; the caller drives the node directly and shuts it down.
pub(crate) async fn open_node(mut config: NodeConfig, storage: Arc<dyn Storage>) -> Arc<Node> {
    let any = "127.0.0.1:0".parse().unwrap();
    config.kafka_addr = any;
    config.admin_addr = any;
    config.rpc_addr = any;
    let server = Server::bind_with(config, storage, Arc::new(SystemClock))
        .await
        .unwrap();
    server.node().clone()
}

/// A topic of `partitions` partitions, one replica, default properties.
pub(crate) fn new_topic(name: &str, partitions: i32) -> NewTopic {
    NewTopic {
        name: name.into(),
        partitions,
        replication_factor: 1,
        configs: Vec::new(),
        restored: None,
    }
}

/// A request frame's payload (header and body, no length prefix) as a client would send it.
pub(crate) fn frame(api: ApiKey, version: i16, body: &RequestKind) -> Bytes {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("silt-tests")))
        .encode(&mut buf, api.request_header_version(version))
        .unwrap();
    body.encode(&mut buf, version).unwrap();
    buf.freeze()
}
