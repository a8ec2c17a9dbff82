//! One file per Kafka API: a decoded request and the node in, a response out. No sockets here.
//!
//! [`handle`] returns a [`Handled`]: most handlers do all their work in the returned future,
//! which the connection awaits in request order. Produce does its ordering-sensitive part (queuing
//! batches to the partition writers) before returning, so requests pipelined on one connection
//! are appended in the order they were sent.

mod api_versions;
mod cluster;
pub(crate) mod configs;
mod consumer_groups;
pub(crate) mod fetch;
mod groups;
mod leader_epoch;
pub(crate) mod leader_hint;
mod list_offsets;
pub(crate) mod metadata;
mod produce;
mod producer_id;
mod records;
mod security;
pub(crate) mod topics;
mod txn;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use kafka_protocol::messages::{RequestKind, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::node::Node;
use crate::protocol::{ErrorCode, Request};
use crate::security::Caller;

pub use api_versions::unsupported_version_response;

/// A response still being worked out.
pub type ResponseFuture = Pin<Box<dyn Future<Output = ResponseKind> + Send>>;

/// What the connection does with a request.
pub enum Handled {
    /// Send this response when it is ready, in request order.
    Respond(ResponseFuture),
    /// Send nothing (Produce with acks=0).
    NoResponse,
    /// Close the connection, as Kafka does when an acks=0 produce fails.
    Close(String),
}

impl std::fmt::Debug for Handled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Handled::Respond(_) => write!(f, "Respond"),
            Handled::NoResponse => write!(f, "NoResponse"),
            Handled::Close(reason) => write!(f, "Close({reason})"),
        }
    }
}

fn respond<F>(future: F) -> Handled
where
    F: Future<Output = ResponseKind> + Send + 'static,
{
    Handled::Respond(Box::pin(future))
}

/// Handles one decoded request from `peer`, made by `caller`: every handler asks the caller
/// whether it may do what the request asks before it acts.
pub async fn handle(
    node: &Arc<Node>,
    request: Request,
    caller: &Caller,
    peer: Option<std::net::SocketAddr>,
) -> Handled {
    node.metrics.count_request(request.api as i16);
    let version = request.version;
    let node = node.clone();
    let c = caller.clone();
    let client_id = request
        .header
        .client_id
        .as_ref()
        .map(|c| c.to_string())
        .unwrap_or_default();
    // Kafka reports client hosts as "/address".
    let client_host = peer.map(|p| format!("/{}", p.ip())).unwrap_or_default();
    match request.body {
        RequestKind::Produce(body) => produce::handle(&node, body, version, &c).await,
        RequestKind::ApiVersions(_) => {
            respond(async move { ResponseKind::ApiVersions(api_versions::handle()) })
        }
        // The connection answers these itself; here there is no session to change.
        RequestKind::SaslHandshake(_) => respond(async move {
            ResponseKind::SaslHandshake(
                kafka_protocol::messages::SaslHandshakeResponse::default()
                    .with_error_code(ErrorCode::IllegalSaslState.code()),
            )
        }),
        RequestKind::SaslAuthenticate(_) => respond(async move {
            ResponseKind::SaslAuthenticate(
                kafka_protocol::messages::SaslAuthenticateResponse::default()
                    .with_error_code(ErrorCode::IllegalSaslState.code()),
            )
        }),
        RequestKind::Metadata(body) => {
            if node.cluster.cut_off() {
                // It knows no current leader, and librdkafka keeps asking the broker it
                // is connected to: closing sends the client to another broker, as Kafka's
                // fenced brokers drop out of the cluster.
                return Handled::Close(
                    "this node is cut off from the cluster's majority: ask another broker".into(),
                );
            }
            respond(async move {
                ResponseKind::Metadata(metadata::handle(&node, body, version, &c).await)
            })
        }
        RequestKind::Fetch(body) => {
            respond(
                async move { ResponseKind::Fetch(fetch::handle(node, body, version, &c).await) },
            )
        }
        RequestKind::ListOffsets(body) => respond(async move {
            ResponseKind::ListOffsets(list_offsets::handle(node, body, version, &c).await)
        }),
        RequestKind::OffsetForLeaderEpoch(body) => respond(async move {
            ResponseKind::OffsetForLeaderEpoch(leader_epoch::handle(&node, body, &c))
        }),
        RequestKind::CreateTopics(body) => respond(async move {
            ResponseKind::CreateTopics(topics::create(&node, body, version, &c).await)
        }),
        RequestKind::DeleteTopics(body) => {
            respond(
                async move { ResponseKind::DeleteTopics(topics::delete(&node, body, &c).await) },
            )
        }
        RequestKind::CreatePartitions(body) => respond(async move {
            ResponseKind::CreatePartitions(topics::create_partitions(&node, body, &c).await)
        }),
        RequestKind::DescribeConfigs(body) => respond(async move {
            ResponseKind::DescribeConfigs(configs::describe(&node, body, version, &c))
        }),
        RequestKind::AlterConfigs(body) => {
            respond(
                async move { ResponseKind::AlterConfigs(configs::alter(&node, body, &c).await) },
            )
        }
        RequestKind::IncrementalAlterConfigs(body) => respond(async move {
            ResponseKind::IncrementalAlterConfigs(configs::incremental_alter(&node, body, &c).await)
        }),
        RequestKind::DeleteRecords(body) => {
            respond(
                async move { ResponseKind::DeleteRecords(records::delete(node, body, &c).await) },
            )
        }
        RequestKind::InitProducerId(body) => respond(async move {
            ResponseKind::InitProducerId(producer_id::handle(node, body, &c).await)
        }),
        RequestKind::FindCoordinator(body) => respond(async move {
            ResponseKind::FindCoordinator(groups::find_coordinator(&node, body, version, &c).await)
        }),
        RequestKind::ConsumerGroupHeartbeat(body) => respond(async move {
            ResponseKind::ConsumerGroupHeartbeat(
                consumer_groups::heartbeat(&node, body, version, client_id, client_host, &c).await,
            )
        }),
        RequestKind::ConsumerGroupDescribe(body) => respond(async move {
            ResponseKind::ConsumerGroupDescribe(consumer_groups::describe(&node, body, &c))
        }),
        RequestKind::JoinGroup(body) => respond(async move {
            ResponseKind::JoinGroup(
                groups::join(&node, body, version, client_id, client_host, &c).await,
            )
        }),
        RequestKind::SyncGroup(body) => {
            respond(
                async move { ResponseKind::SyncGroup(groups::sync(&node, body, version, &c).await) },
            )
        }
        RequestKind::Heartbeat(body) => {
            respond(async move { ResponseKind::Heartbeat(groups::heartbeat(&node, body, &c)) })
        }
        RequestKind::LeaveGroup(body) => respond(async move {
            ResponseKind::LeaveGroup(groups::leave(&node, body, version, &c).await)
        }),
        RequestKind::OffsetCommit(body) => respond(async move {
            ResponseKind::OffsetCommit(groups::offset_commit(&node, body, version, &c).await)
        }),
        RequestKind::OffsetFetch(body) => respond(async move {
            ResponseKind::OffsetFetch(groups::offset_fetch(&node, body, version, &c))
        }),
        RequestKind::ListGroups(body) => respond(async move {
            ResponseKind::ListGroups(groups::list_groups(&node, body, version, &c))
        }),
        RequestKind::DescribeGroups(body) => respond(async move {
            ResponseKind::DescribeGroups(groups::describe_groups(&node, body, version, &c))
        }),
        RequestKind::DeleteGroups(body) => respond(async move {
            ResponseKind::DeleteGroups(groups::delete_groups(&node, body, &c).await)
        }),
        RequestKind::OffsetDelete(body) => respond(async move {
            ResponseKind::OffsetDelete(groups::offset_delete(&node, body, &c).await)
        }),
        RequestKind::AddPartitionsToTxn(body) => respond(async move {
            ResponseKind::AddPartitionsToTxn(txn::add_partitions(&node, body, &c).await)
        }),
        RequestKind::AddOffsetsToTxn(body) => respond(async move {
            ResponseKind::AddOffsetsToTxn(txn::add_offsets(&node, body, &c).await)
        }),
        RequestKind::TxnOffsetCommit(body) => respond(async move {
            ResponseKind::TxnOffsetCommit(txn::offset_commit(&node, body, &c).await)
        }),
        RequestKind::ListTransactions(body) => {
            respond(async move { ResponseKind::ListTransactions(txn::list(&node, body, &c)) })
        }
        RequestKind::DescribeTransactions(body) => {
            respond(
                async move { ResponseKind::DescribeTransactions(txn::describe(&node, body, &c)) },
            )
        }
        RequestKind::EndTxn(body) => {
            respond(async move { ResponseKind::EndTxn(txn::end(&node, body, &c).await) })
        }
        RequestKind::DescribeCluster(body) => {
            respond(
                async move { ResponseKind::DescribeCluster(cluster::describe(&node, body, &c)) },
            )
        }
        RequestKind::CreateAcls(body) => respond(async move {
            ResponseKind::CreateAcls(security::create_acls(&node, body, &c).await)
        }),
        RequestKind::DescribeAcls(body) => {
            respond(
                async move { ResponseKind::DescribeAcls(security::describe_acls(&node, body, &c)) },
            )
        }
        RequestKind::DeleteAcls(body) => respond(async move {
            ResponseKind::DeleteAcls(security::delete_acls(&node, body, &c).await)
        }),
        RequestKind::AlterUserScramCredentials(body) => respond(async move {
            ResponseKind::AlterUserScramCredentials(security::alter_scram(&node, body, &c).await)
        }),
        RequestKind::DescribeUserScramCredentials(body) => respond(async move {
            ResponseKind::DescribeUserScramCredentials(security::describe_scram(&node, body, &c))
        }),
        other => {
            // parse_request only lets advertised APIs through, and each has an arm above.
            Handled::Close(format!(
                "no handler for {:?}",
                std::mem::discriminant(&other)
            ))
        }
    }
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn topic_name(s: &str) -> TopicName {
    TopicName(str_bytes(s))
}
