//! Every API silt advertises, at every version it advertises: the request is encoded by
//! kafka-protocol, parsed by silt, handled, and the response must encode at that version (a
//! field set that the version lacks is an encoding error, which would close the client's
//! connection).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use silt_broker::handlers::{self, Handled};
use silt_broker::log::DiskStorage;
use silt_broker::protocol::versions::SUPPORTED;
use silt_broker::protocol::{encode_response, parse_request};
use silt_broker::security::Caller;
use silt_config::NodeConfig;
use silt_index::batch::Codec;
use silt_index::record::{NewRecord, encode_batch};

mod common;

use common::frame;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn batch() -> Bytes {
    let record = NewRecord {
        value: Some(Bytes::from_static(b"v")),
        timestamp: 1_700_000_000_000,
        ..Default::default()
    };
    Bytes::from(encode_batch(0, &[record], Codec::None, None))
}

/// A plausible request of `api` naming topic `t` (and, for creation, `fresh`).
fn request(
    api: ApiKey,
    version: i16,
    topic_id: uuid::Uuid,
    fresh: &str,
    partitions: i32,
) -> RequestKind {
    use kafka_protocol::messages::*;
    match api {
        ApiKey::Produce => RequestKind::Produce(
            ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(1000)
                .with_topic_data(vec![
                    produce_request::TopicProduceData::default()
                        .with_name(name("t"))
                        .with_partition_data(vec![
                            produce_request::PartitionProduceData::default()
                                .with_index(0)
                                .with_records(Some(batch())),
                        ]),
                ]),
        ),
        ApiKey::Fetch => RequestKind::Fetch(
            FetchRequest::default()
                .with_max_wait_ms(0)
                .with_topics(vec![
                    fetch_request::FetchTopic::default()
                        .with_topic(name("t"))
                        .with_topic_id(topic_id)
                        .with_partitions(vec![
                            fetch_request::FetchPartition::default()
                                .with_partition(0)
                                .with_partition_max_bytes(1 << 20),
                            fetch_request::FetchPartition::default()
                                .with_partition(1)
                                .with_fetch_offset(99),
                        ]),
                ]),
        ),
        ApiKey::ListOffsets => RequestKind::ListOffsets(
            ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![
                    list_offsets_request::ListOffsetsTopic::default()
                        .with_name(name("t"))
                        .with_partitions(
                            [-1i64, -2, 0]
                                .iter()
                                .enumerate()
                                .map(|(i, ts)| {
                                    list_offsets_request::ListOffsetsPartition::default()
                                        .with_partition_index(i as i32 % 2)
                                        .with_timestamp(*ts)
                                })
                                .collect(),
                        ),
                ]),
        ),
        ApiKey::Metadata => {
            RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default().with_name(Some(name("t"))),
                metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(name("missing-topic"))),
            ])))
        }
        ApiKey::ApiVersions => RequestKind::ApiVersions(ApiVersionsRequest::default()),
        ApiKey::CreateTopics => {
            RequestKind::CreateTopics(CreateTopicsRequest::default().with_topics(vec![
                create_topics_request::CreatableTopic::default()
                    .with_name(name(fresh))
                    .with_num_partitions(2)
                    .with_replication_factor(1)
                    .with_configs(vec![
                        create_topics_request::CreatableTopicConfig::default()
                            .with_name(s("retention.ms"))
                            .with_value(Some(s("1000"))),
                    ]),
                create_topics_request::CreatableTopic::default()
                    .with_name(name("t"))
                    .with_num_partitions(1)
                    .with_replication_factor(3),
            ]))
        }
        ApiKey::DeleteTopics if version < 6 => RequestKind::DeleteTopics(
            DeleteTopicsRequest::default()
                .with_topic_names(vec![name(fresh), name("never-existed")]),
        ),
        ApiKey::DeleteTopics => {
            RequestKind::DeleteTopics(DeleteTopicsRequest::default().with_topics(vec![
            delete_topics_request::DeleteTopicState::default().with_name(Some(name(fresh))),
            delete_topics_request::DeleteTopicState::default().with_topic_id(uuid::Uuid::new_v4()),
        ]))
        }
        ApiKey::DeleteRecords => {
            RequestKind::DeleteRecords(DeleteRecordsRequest::default().with_topics(vec![
                delete_records_request::DeleteRecordsTopic::default()
                    .with_name(name("t"))
                    .with_partitions(vec![
                        delete_records_request::DeleteRecordsPartition::default()
                            .with_partition_index(0)
                            .with_offset(0),
                        delete_records_request::DeleteRecordsPartition::default()
                            .with_partition_index(1)
                            .with_offset(50),
                    ]),
            ]))
        }
        ApiKey::InitProducerId => RequestKind::InitProducerId(InitProducerIdRequest::default()),
        ApiKey::OffsetForLeaderEpoch => RequestKind::OffsetForLeaderEpoch(
            OffsetForLeaderEpochRequest::default().with_topics(vec![
                offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                    .with_topic(name("t"))
                    .with_partitions(vec![
                        offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                            .with_partition(0)
                            .with_leader_epoch(0),
                    ]),
            ]),
        ),
        ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(
            DescribeConfigsRequest::default()
                .with_include_synonyms(version >= 1)
                .with_include_documentation(version >= 3)
                .with_resources(vec![
                    describe_configs_request::DescribeConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(s("t")),
                    describe_configs_request::DescribeConfigsResource::default()
                        .with_resource_type(4)
                        .with_resource_name(s("0")),
                ]),
        ),
        ApiKey::AlterConfigs => {
            RequestKind::AlterConfigs(AlterConfigsRequest::default().with_resources(vec![
                alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("t"))
                    .with_configs(vec![
                        alter_configs_request::AlterableConfig::default()
                            .with_name(s("retention.ms"))
                            .with_value(Some(s("5000"))),
                    ]),
                alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(s("0")),
            ]))
        }
        ApiKey::IncrementalAlterConfigs => RequestKind::IncrementalAlterConfigs(
            IncrementalAlterConfigsRequest::default().with_resources(vec![
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("t"))
                    .with_configs(vec![
                        incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(s("segment.bytes"))
                            .with_config_operation(0)
                            .with_value(Some(s("1048576"))),
                    ]),
            ]),
        ),
        ApiKey::CreatePartitions => {
            RequestKind::CreatePartitions(CreatePartitionsRequest::default().with_topics(vec![
                create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(name("t"))
                    .with_count(partitions),
            ]))
        }
        ApiKey::DescribeCluster => RequestKind::DescribeCluster(DescribeClusterRequest::default()),
        // A transactional id the coordinator does not know, and a producer it never gave.
        ApiKey::AddPartitionsToTxn => RequestKind::AddPartitionsToTxn(
            AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(TransactionalId(s("tx")))
                .with_v3_and_below_producer_id(ProducerId(77))
                .with_v3_and_below_topics(vec![
                    add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                        .with_name(name("t"))
                        .with_partitions(vec![0, 9]),
                ]),
        ),
        ApiKey::AddOffsetsToTxn => RequestKind::AddOffsetsToTxn(
            AddOffsetsToTxnRequest::default()
                .with_transactional_id(TransactionalId(s("tx")))
                .with_producer_id(ProducerId(77))
                .with_group_id(GroupId(s("g"))),
        ),
        ApiKey::TxnOffsetCommit => RequestKind::TxnOffsetCommit(
            TxnOffsetCommitRequest::default()
                .with_transactional_id(TransactionalId(s("tx")))
                .with_group_id(GroupId(s("g")))
                .with_producer_id(ProducerId(77))
                .with_topics(vec![
                    txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                        .with_name(name("t"))
                        .with_partitions(vec![
                            txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(3),
                        ]),
                ]),
        ),
        ApiKey::EndTxn => RequestKind::EndTxn(
            EndTxnRequest::default()
                .with_transactional_id(TransactionalId(s("tx")))
                .with_producer_id(ProducerId(77))
                .with_committed(true),
        ),
        ApiKey::FindCoordinator if version >= 4 => RequestKind::FindCoordinator(
            FindCoordinatorRequest::default().with_coordinator_keys(vec![s("g"), s("")]),
        ),
        ApiKey::FindCoordinator => {
            RequestKind::FindCoordinator(FindCoordinatorRequest::default().with_key(s("g")))
        }
        ApiKey::JoinGroup => RequestKind::JoinGroup(
            JoinGroupRequest::default()
                // A group per version: a second member would wait for the first to rejoin.
                .with_group_id(GroupId(s(&format!("join-{version}"))))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(if version >= 1 { 10_000 } else { -1 })
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![
                    join_group_request::JoinGroupRequestProtocol::default()
                        .with_name(s("range"))
                        .with_metadata(Bytes::from_static(&[
                            0, 0, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 0,
                        ])),
                ]),
        ),
        ApiKey::SyncGroup => RequestKind::SyncGroup(
            SyncGroupRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_generation_id(1)
                .with_member_id(s("nobody")),
        ),
        ApiKey::Heartbeat => RequestKind::Heartbeat(
            HeartbeatRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_generation_id(1)
                .with_member_id(s("nobody")),
        ),
        ApiKey::LeaveGroup if version >= 3 => RequestKind::LeaveGroup(
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_members(vec![
                    leave_group_request::MemberIdentity::default().with_member_id(s("nobody")),
                ]),
        ),
        ApiKey::LeaveGroup => RequestKind::LeaveGroup(
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_member_id(s("nobody")),
        ),
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(s("g2")))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(name("t"))
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(5),
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(99)
                                .with_committed_offset(5),
                        ]),
                ]),
        ),
        ApiKey::OffsetFetch if version >= 8 => {
            RequestKind::OffsetFetch(OffsetFetchRequest::default().with_groups(vec![
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s("g2")))
                    .with_topics(None),
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s("g2")))
                    .with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopics::default()
                            .with_name(name("t"))
                            .with_partition_indexes(vec![0, 1]),
                    ])),
            ]))
        }
        ApiKey::OffsetFetch => RequestKind::OffsetFetch(
            OffsetFetchRequest::default()
                .with_group_id(GroupId(s("g2")))
                .with_topics(Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopic::default()
                        .with_name(name("t"))
                        .with_partition_indexes(vec![0, 1]),
                ])),
        ),
        ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
        ApiKey::ListTransactions => RequestKind::ListTransactions(
            ListTransactionsRequest::default().with_state_filters(vec![s("Ongoing"), s("Bogus")]),
        ),
        ApiKey::DescribeTransactions => RequestKind::DescribeTransactions(
            DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![TransactionalId(s("tx"))]),
        ),
        ApiKey::DescribeGroups => {
            RequestKind::DescribeGroups(DescribeGroupsRequest::default().with_groups(vec![
                GroupId(s("g")),
                GroupId(s("g2")),
                GroupId(s("nope")),
            ]))
        }
        ApiKey::DeleteGroups => RequestKind::DeleteGroups(
            DeleteGroupsRequest::default()
                .with_groups_names(vec![GroupId(s("nope")), GroupId(s("g"))]),
        ),
        ApiKey::OffsetDelete => RequestKind::OffsetDelete(
            OffsetDeleteRequest::default()
                .with_group_id(GroupId(s("g2")))
                .with_topics(vec![
                    offset_delete_request::OffsetDeleteRequestTopic::default()
                        .with_name(name("t"))
                        .with_partitions(vec![
                            offset_delete_request::OffsetDeleteRequestPartition::default()
                                .with_partition_index(1),
                        ]),
                ]),
        ),
        ApiKey::ConsumerGroupHeartbeat => RequestKind::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(s("kip848")))
                .with_member_id(s(&format!("member-{version}")))
                .with_member_epoch(0)
                .with_rebalance_timeout_ms(30_000)
                .with_subscribed_topic_names(Some(vec![name("t")]))
                .with_topic_partitions(Some(Vec::new())),
        ),
        ApiKey::ConsumerGroupDescribe => RequestKind::ConsumerGroupDescribe(
            ConsumerGroupDescribeRequest::default().with_group_ids(vec![
                GroupId(s("kip848")),
                GroupId(s("g")),
                GroupId(s("nope")),
            ]),
        ),
        ApiKey::SaslHandshake => RequestKind::SaslHandshake(
            SaslHandshakeRequest::default().with_mechanism(s("SCRAM-SHA-512")),
        ),
        ApiKey::SaslAuthenticate => RequestKind::SaslAuthenticate(
            SaslAuthenticateRequest::default()
                .with_auth_bytes(Bytes::from_static(b"n,,n=alice,r=abc")),
        ),
        ApiKey::CreateAcls => {
            RequestKind::CreateAcls(CreateAclsRequest::default().with_creations(vec![
                AclCreation::default()
                    .with_resource_type(2)
                    .with_resource_name(s(&format!("acl-{version}")))
                    .with_resource_pattern_type(3)
                    .with_principal(s("User:alice"))
                    .with_host(s("*"))
                    .with_operation(3)
                    .with_permission_type(3),
                // Invalid: pattern type MATCH is for filters.
                AclCreation::default()
                    .with_resource_type(2)
                    .with_resource_name(s("x"))
                    .with_resource_pattern_type(2)
                    .with_principal(s("User:alice"))
                    .with_host(s("*"))
                    .with_operation(3)
                    .with_permission_type(3),
            ]))
        }
        ApiKey::DescribeAcls => RequestKind::DescribeAcls(
            DescribeAclsRequest::default()
                .with_resource_type_filter(1)
                .with_resource_name_filter(None)
                .with_pattern_type_filter(1)
                .with_principal_filter(None)
                .with_host_filter(None)
                .with_operation(1)
                .with_permission_type(1),
        ),
        ApiKey::DeleteAcls => {
            RequestKind::DeleteAcls(DeleteAclsRequest::default().with_filters(vec![
                DeleteAclsFilter::default()
                    .with_resource_type_filter(2)
                    .with_resource_name_filter(Some(s(&format!("acl-{version}"))))
                    .with_pattern_type_filter(3)
                    .with_principal_filter(None)
                    .with_host_filter(None)
                    .with_operation(1)
                    .with_permission_type(1),
            ]))
        }
        ApiKey::DescribeUserScramCredentials => RequestKind::DescribeUserScramCredentials(
            DescribeUserScramCredentialsRequest::default().with_users(None),
        ),
        ApiKey::AlterUserScramCredentials => RequestKind::AlterUserScramCredentials(
            AlterUserScramCredentialsRequest::default()
                .with_upsertions(vec![
                    ScramCredentialUpsertion::default()
                        .with_name(s("alice"))
                        .with_mechanism(2)
                        .with_iterations(4096)
                        .with_salt(Bytes::from_static(b"salt"))
                        .with_salted_password(Bytes::from(vec![7u8; 64])),
                    // Too few iterations.
                    ScramCredentialUpsertion::default()
                        .with_name(s("bob"))
                        .with_mechanism(1)
                        .with_iterations(1)
                        .with_salt(Bytes::from_static(b"salt"))
                        .with_salted_password(Bytes::from(vec![7u8; 32])),
                ])
                .with_deletions(vec![
                    ScramCredentialDeletion::default()
                        .with_name(s("nobody"))
                        .with_mechanism(1),
                ]),
        ),
        other => panic!("no sample request for {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_advertised_version_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let config = NodeConfig {
        data_dir: dir.path().to_path_buf(),
        group_initial_rebalance_delay_ms: 0,
        ..NodeConfig::default()
    };
    let node = common::open_node(config, Arc::new(DiskStorage)).await;
    let topic = node
        .create_topic(common::new_topic("t", 2), false)
        .await
        .unwrap();
    let mut partitions = 2;
    for (api, min, max) in SUPPORTED {
        for version in *min..=*max {
            if *api == ApiKey::CreatePartitions {
                partitions += 1;
            }
            let fresh = format!("fresh-{}-{version}", *api as i16);
            let body = request(*api, version, topic.id, &fresh, partitions);
            let parsed = parse_request(frame(*api, version, &body))
                .unwrap_or_else(|e| panic!("{api:?} v{version} does not parse: {e}"));
            let response =
                match handlers::handle(&node, parsed, &Caller::unrestricted("PLAINTEXT"), None)
                    .await
                {
                    Handled::Respond(future) => future.await,
                    other => panic!("{api:?} v{version}: {other:?}"),
                };
            encode_response(7, *api, version, &response).unwrap_or_else(|e| {
                panic!("{api:?} v{version} response does not encode: {e}\n{response:?}")
            });
        }
    }
    node.shutdown().await;
}

/// Fuzzing the whole request path, structure-aware: valid requests of every API and version,
/// with random bytes overwritten, go through parsing, the handlers and response encoding. No
/// input may panic, hang, or produce a response that does not encode.
#[test]
fn mutated_requests_never_panic() {
    use proptest::prelude::*;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = NodeConfig {
        data_dir: dir.path().to_path_buf(),
        group_initial_rebalance_delay_ms: 0,
        ..NodeConfig::default()
    };
    let node = runtime.block_on(common::open_node(config, Arc::new(DiskStorage)));
    let topic_id = runtime
        .block_on(node.create_topic(common::new_topic("t", 2), false))
        .unwrap()
        .id;
    let apis: Vec<(ApiKey, i16)> = SUPPORTED
        .iter()
        .flat_map(|(api, min, max)| (*min..=*max).map(move |v| (*api, v)))
        .collect();
    let cases = std::env::var("SILT_FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(3000);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(cases));
    let strategy = (
        0..apis.len(),
        proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..6),
        any::<bool>(),
    );
    runner
        .run(&strategy, |(which, mutations, truncate)| {
            let (api, version) = apis[which];
            let body = request(api, version, topic_id, "fuzzed", 3);
            let mut bytes = frame(api, version, &body).to_vec();
            for (index, value) in &mutations {
                // Keep the API key and version: mutate what follows them.
                let at = 4 + index.index(bytes.len().saturating_sub(4).max(1));
                if at < bytes.len() {
                    bytes[at] = *value;
                }
            }
            if truncate {
                let cut = mutations[0].0.index(bytes.len().max(1));
                bytes.truncate(cut.max(8));
            }
            if let Ok(parsed) = parse_request(Bytes::from(bytes)) {
                // A request may rightly wait (a join in a rebalance, a long poll): give it a
                // moment, and count a timeout as an answer not yet due.
                let response = runtime.block_on(async {
                    match handlers::handle(&node, parsed, &Caller::unrestricted("PLAINTEXT"), None)
                        .await
                    {
                        Handled::Respond(future) => {
                            tokio::time::timeout(std::time::Duration::from_millis(300), future)
                                .await
                                .ok()
                        }
                        _ => None,
                    }
                });
                if let Some(response) = response {
                    prop_assert!(
                        encode_response(1, api, version, &response).is_ok(),
                        "{api:?} v{version}: response does not encode: {response:?}"
                    );
                }
            }
            Ok(())
        })
        .unwrap();
    runtime.block_on(node.shutdown());
}
