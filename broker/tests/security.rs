//! Authorization through the real handlers, and the SASL front door of a real listener under
//! malformed and hostile input.
#![allow(clippy::unwrap_used)]

mod common;

use common::frame;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use proptest::prelude::*;
use silt_broker::handlers::{self, Handled};
use silt_broker::log::DiskStorage;
use silt_broker::node::Node;
use silt_broker::protocol::parse_request;
use silt_broker::security::Caller;
use silt_broker::server::Server;
use silt_config::{NodeConfig, Source};
use silt_index::batch::Codec;
use silt_index::record::{NewRecord, encode_batch};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

async fn call(
    node: &Arc<Node>,
    caller: &Caller,
    api: ApiKey,
    version: i16,
    body: RequestKind,
) -> ResponseKind {
    let parsed = parse_request(frame(api, version, &body)).unwrap();
    match handlers::handle(node, parsed, caller, None).await {
        Handled::Respond(future) => future.await,
        other => panic!("{api:?}: {other:?}"),
    }
}

fn caller(node: &Arc<Node>, principal: &str) -> Caller {
    node.security.caller(
        || node.cluster.controller.state(),
        Arc::from(principal),
        Arc::from("10.0.0.7"),
        Arc::from("PLAINTEXT"),
    )
}

fn acl(resource_type: i8, name: &str, pattern: i8, principal: &str, op: i8) -> AclCreation {
    AclCreation::default()
        .with_resource_type(resource_type)
        .with_resource_name(s(name))
        .with_resource_pattern_type(pattern)
        .with_principal(s(principal))
        .with_host(s("*"))
        .with_operation(op)
        .with_permission_type(3)
}

fn batch() -> Bytes {
    let record = NewRecord {
        value: Some(Bytes::from_static(b"v")),
        timestamp: 1_700_000_000_000,
        ..Default::default()
    };
    Bytes::from(encode_batch(0, &[record], Codec::None, None))
}

fn produce(topic: &str) -> RequestKind {
    RequestKind::Produce(
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5_000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(TopicName(s(topic)))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(batch())),
                    ]),
            ]),
    )
}

fn produce_error(response: ResponseKind) -> i16 {
    let ResponseKind::Produce(r) = response else {
        panic!("not a produce response")
    };
    r.responses[0].partition_responses[0].error_code
}

const TOPIC: i8 = 2;
const GROUP: i8 = 3;
const LITERAL: i8 = 3;
const PREFIXED: i8 = 4;
const WRITE: i8 = 4;
const READ: i8 = 3;
const AUTHZ_FAILED: i16 = 29;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_authorized_by_kafka_acl_rules() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = NodeConfig {
        data_dir: dir.path().to_path_buf(),
        group_initial_rebalance_delay_ms: 0,
        ..NodeConfig::default()
    };
    config.set("authorization", "true", Source::Flag).unwrap();
    config
        .set("super_users", "User:root", Source::Flag)
        .unwrap();
    let node = common::open_node(config, Arc::new(DiskStorage)).await;
    for name in ["orders", "pay-eu", "secret"] {
        node.create_topic(common::new_topic(name, 1), false)
            .await
            .unwrap();
    }
    let root = caller(&node, "User:root");
    let alice = caller(&node, "User:alice");

    // Alice may do nothing yet: no binding names any resource.
    assert_eq!(
        produce_error(call(&node, &alice, ApiKey::Produce, 9, produce("orders")).await),
        AUTHZ_FAILED
    );
    // Only ALTER on the cluster creates ACLs.
    let creations = vec![
        acl(TOPIC, "orders", LITERAL, "User:alice", WRITE),
        acl(TOPIC, "pay-", PREFIXED, "User:alice", READ),
        acl(GROUP, "g", LITERAL, "User:alice", READ),
    ];
    let ResponseKind::CreateAcls(refused) = call(
        &node,
        &alice,
        ApiKey::CreateAcls,
        3,
        RequestKind::CreateAcls(CreateAclsRequest::default().with_creations(creations.clone())),
    )
    .await
    else {
        panic!()
    };
    assert!(
        refused.results.iter().all(|r| r.error_code == 31),
        "{refused:?}"
    );
    let ResponseKind::CreateAcls(created) = call(
        &node,
        &root,
        ApiKey::CreateAcls,
        3,
        RequestKind::CreateAcls(CreateAclsRequest::default().with_creations(creations)),
    )
    .await
    else {
        panic!()
    };
    assert!(
        created.results.iter().all(|r| r.error_code == 0),
        "{created:?}"
    );

    let alice = caller(&node, "User:alice");
    assert_eq!(
        produce_error(call(&node, &alice, ApiKey::Produce, 9, produce("orders")).await),
        0
    );
    assert_eq!(
        produce_error(call(&node, &alice, ApiKey::Produce, 9, produce("secret")).await),
        AUTHZ_FAILED
    );
    // READ on pay- (prefixed) does not allow writing to it.
    assert_eq!(
        produce_error(call(&node, &alice, ApiKey::Produce, 9, produce("pay-eu")).await),
        AUTHZ_FAILED
    );

    // Metadata of all topics lists only what alice may describe (WRITE and READ imply it).
    let ResponseKind::Metadata(all) = call(
        &node,
        &alice,
        ApiKey::Metadata,
        12,
        RequestKind::Metadata(MetadataRequest::default().with_topics(None)),
    )
    .await
    else {
        panic!()
    };
    let mut names: Vec<String> = all
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
        .collect();
    names.sort();
    assert_eq!(names, vec!["orders", "pay-eu"]);
    // Named explicitly, a topic alice may not describe is refused, existing or not.
    let ResponseKind::Metadata(named) = call(
        &node,
        &alice,
        ApiKey::Metadata,
        12,
        RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(TopicName(s("secret")))),
                metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(TopicName(s("nowhere")))),
            ]))),
    )
    .await
    else {
        panic!()
    };
    assert!(
        named.topics.iter().all(|t| t.error_code == AUTHZ_FAILED),
        "{named:?}"
    );
    assert!(
        node.topics.get("nowhere").is_none(),
        "no auto-creation without CREATE"
    );

    // Groups: READ on g allows joining g only.
    let join = |group: &str| {
        RequestKind::JoinGroup(
            JoinGroupRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(10_000)
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![
                    join_group_request::JoinGroupRequestProtocol::default()
                        .with_name(s("range"))
                        .with_metadata(Bytes::new()),
                ]),
        )
    };
    let ResponseKind::JoinGroup(other) = call(&node, &alice, ApiKey::JoinGroup, 4, join("h")).await
    else {
        panic!()
    };
    assert_eq!(other.error_code, 30, "GROUP_AUTHORIZATION_FAILED");
    let ResponseKind::JoinGroup(own) = call(&node, &alice, ApiKey::JoinGroup, 4, join("g")).await
    else {
        panic!()
    };
    assert_ne!(own.error_code, 30, "{own:?}");

    // Deleting the ACLs closes the topic again (the index follows the controller's state).
    let ResponseKind::DeleteAcls(deleted) = call(
        &node,
        &root,
        ApiKey::DeleteAcls,
        3,
        RequestKind::DeleteAcls(DeleteAclsRequest::default().with_filters(vec![
            delete_acls_request::DeleteAclsFilter::default()
                .with_resource_type_filter(TOPIC)
                .with_resource_name_filter(Some(s("orders")))
                .with_pattern_type_filter(LITERAL)
                .with_principal_filter(None)
                .with_host_filter(None)
                .with_operation(1)
                .with_permission_type(1),
        ])),
    )
    .await
    else {
        panic!()
    };
    assert_eq!(deleted.filter_results[0].matching_acls.len(), 1);
    let alice = caller(&node, "User:alice");
    assert_eq!(
        produce_error(call(&node, &alice, ApiKey::Produce, 9, produce("orders")).await),
        AUTHZ_FAILED
    );
    node.shutdown().await;
}

/// One request-response on a raw socket; `None` when the broker closed the connection.
fn exchange(socket: &mut TcpStream, payload: &[u8]) -> Option<Bytes> {
    let mut out = BytesMut::new();
    out.put_i32(payload.len() as i32);
    out.put_slice(payload);
    socket.write_all(&out).ok()?;
    let mut size = [0u8; 4];
    socket.read_exact(&mut size).ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(size).max(0) as usize];
    socket.read_exact(&mut body).ok()?;
    Some(Bytes::from(body))
}

fn sasl_server(runtime: &tokio::runtime::Runtime) -> (Arc<Node>, u16, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = NodeConfig {
        data_dir: dir.path().to_path_buf(),
        ..NodeConfig::default()
    };
    config
        .set("listeners", "SASL_PLAINTEXT://127.0.0.1:0", Source::Flag)
        .unwrap();
    config
        .set("bootstrap_user", "admin:pw-123", Source::Flag)
        .unwrap();
    config
        .set("auth_failure_delay_ms", "0", Source::Flag)
        .unwrap();
    config
        .set("sasl_handshake_timeout_ms", "2000", Source::Flag)
        .unwrap();
    config.admin_addr = "127.0.0.1:0".parse().unwrap();
    config.rpc_addr = "127.0.0.1:0".parse().unwrap();
    let (node, port) = runtime.block_on(async {
        let server = Server::bind_with(
            config,
            Arc::new(DiskStorage),
            Arc::new(silt_broker::log::SystemClock),
        )
        .await
        .unwrap();
        let node = server.node().clone();
        let port = server.kafka_addr().port();
        tokio::spawn(server.run(std::future::pending()));
        (node, port)
    });
    (node, port, dir)
}

fn plain_login(port: u16, password: &str) -> Option<i16> {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let handshake =
        RequestKind::SaslHandshake(SaslHandshakeRequest::default().with_mechanism(s("PLAIN")));
    exchange(&mut socket, &frame(ApiKey::SaslHandshake, 1, &handshake))?;
    let token = format!("\0admin\0{password}");
    let authenticate = RequestKind::SaslAuthenticate(
        SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token.into_bytes())),
    );
    let mut answer = exchange(
        &mut socket,
        &frame(ApiKey::SaslAuthenticate, 2, &authenticate),
    )?;
    let _correlation = answer.get_i32();
    let _tagged = answer.get_u8();
    let response = SaslAuthenticateResponse::decode(&mut answer, 2).ok()?;
    Some(response.error_code)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    /// Whatever an unauthenticated client sends (SASL requests with garbage tokens, other
    /// requests, raw garbage), the broker answers or closes, never panics, and still logs in
    /// the next client with the right password and refuses a wrong one.
    #[test]
    fn hostile_sasl_input_never_breaks_the_front_door(
        mechanism in prop::sample::select(vec!["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", ""]),
        tokens in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..4),
        garbage in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let (node, port, _dir) = sasl_server(&runtime);
        {
            let mut socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
            socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let handshake = RequestKind::SaslHandshake(SaslHandshakeRequest::default().with_mechanism(s(mechanism)));
            if exchange(&mut socket, &frame(ApiKey::SaslHandshake, 1, &handshake)).is_some() {
                for token in &tokens {
                    let authenticate = RequestKind::SaslAuthenticate(
                        SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token.clone())),
                    );
                    if exchange(&mut socket, &frame(ApiKey::SaslAuthenticate, 1, &authenticate)).is_none() {
                        break;
                    }
                }
            }
            // A request out of turn, or garbage: answered with a close, not a panic.
            let _ = exchange(&mut socket, &garbage);
            let metadata = RequestKind::Metadata(MetadataRequest::default());
            prop_assert!(exchange(&mut socket, &frame(ApiKey::Metadata, 12, &metadata)).is_none()
                || mechanism == "PLAIN" && tokens.first().is_some_and(|t| t == b"\0admin\0pw-123"));
        }
        prop_assert_eq!(plain_login(port, "pw-123"), Some(0));
        prop_assert_eq!(plain_login(port, "wrong"), Some(58));
        prop_assert!(node.security.stats.auth_failed.load(std::sync::atomic::Ordering::Relaxed) >= 1);
        runtime.shutdown_timeout(Duration::from_secs(5));
    }
}

#[test]
fn a_client_that_never_authenticates_is_closed_on_time() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (node, port, _dir) = sasl_server(&runtime);
    let mut socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = [0u8; 16];
    // The broker closes it (sasl_handshake_timeout_ms = 2 s): read sees the end, not a timeout.
    assert_eq!(socket.read(&mut buf).unwrap(), 0);
    assert_eq!(
        node.security
            .stats
            .auth_timeouts
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    runtime.shutdown_timeout(Duration::from_secs(5));
}
