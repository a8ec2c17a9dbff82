//! ConsumerGroupHeartbeat and ConsumerGroupDescribe against the real binary, on the wire: the
//! error codes of KIP-848 for what a client can get wrong.
#![allow(clippy::unwrap_used)]

use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use silt_tests::{Raw, Silt};

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

fn heartbeat(group: &str, member: &str, epoch: i32) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_member_epoch(epoch)
        .with_rebalance_timeout_ms(if epoch == 0 { 30_000 } else { -1 })
        .with_subscribed_topic_names(if epoch == 0 {
            Some(vec![TopicName(s("t"))])
        } else {
            None
        })
        .with_topic_partitions(if epoch == 0 {
            Some(Vec::<TopicPartitions>::new())
        } else {
            None
        })
}

/// Sends a heartbeat at v1 and returns the answer.
fn send(
    raw: &mut Raw,
    request: &ConsumerGroupHeartbeatRequest,
    correlation: i32,
) -> ConsumerGroupHeartbeatResponse {
    raw.send(request, 1, correlation);
    let (got, response) = raw.receive::<ConsumerGroupHeartbeatRequest>(1);
    assert_eq!(got, correlation);
    response
}

fn code(response: &ConsumerGroupHeartbeatResponse) -> i16 {
    response.error_code
}

#[test]
fn heartbeat_errors_are_kafkas() {
    let silt = Silt::start(&[]);
    let (status, _, err) = silt.cli(&["topic", "create", "t", "-p", "4"], None);
    assert_eq!(status, 0, "{err}");
    let mut raw = Raw::connect(&silt.kafka);

    // Joining: epoch 1, the whole topic.
    let joined = send(&mut raw, &heartbeat("g", "m1", 0), 1);
    assert_eq!(code(&joined), 0, "{:?}", joined.error_message);
    assert_eq!(joined.member_epoch, 1);
    let assigned: usize = joined
        .assignment
        .as_ref()
        .unwrap()
        .topic_partitions
        .iter()
        .map(|t| t.partitions.len())
        .sum();
    assert_eq!(assigned, 4);
    assert!(joined.heartbeat_interval_ms > 0);

    // An epoch ahead of the member's is fenced; an unknown member is told so.
    assert_eq!(
        code(&send(&mut raw, &heartbeat("g", "m1", 7), 2)),
        110,
        "FENCED_MEMBER_EPOCH"
    );
    assert_eq!(
        code(&send(&mut raw, &heartbeat("g", "ghost", 3), 3)),
        25,
        "UNKNOWN_MEMBER_ID"
    );
    // A bad regular expression, and an assignor the broker does not have.
    let regex = heartbeat("g2", "m", 0)
        .with_subscribed_topic_names(None)
        .with_subscribed_topic_regex(Some(s("orders-(")));
    assert_eq!(
        code(&send(&mut raw, &regex, 4)),
        128,
        "INVALID_REGULAR_EXPRESSION"
    );
    let assignor = heartbeat("g3", "m", 0).with_server_assignor(Some(s("sticky-ish")));
    assert_eq!(
        code(&send(&mut raw, &assignor, 5)),
        112,
        "UNSUPPORTED_ASSIGNOR"
    );
    // A static member's instance id held by another live member.
    let first = heartbeat("g4", "a", 0).with_instance_id(Some(s("i-1")));
    assert_eq!(code(&send(&mut raw, &first, 6)), 0);
    let second = heartbeat("g4", "b", 0).with_instance_id(Some(s("i-1")));
    assert_eq!(
        code(&send(&mut raw, &second, 7)),
        111,
        "UNRELEASED_INSTANCE_ID"
    );
    // A heartbeat from the current epoch is fine and says nothing new.
    let again = send(&mut raw, &heartbeat("g", "m1", 1), 8);
    assert_eq!((code(&again), again.member_epoch), (0, 1));
    assert!(again.assignment.is_none());

    // OffsetCommit v9 carries the member epoch: the current one commits, an older one is
    // stale, a newer one fenced; OffsetFetch v9 checks it too.
    let commit = |epoch: i32| {
        OffsetCommitRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_member_id(s("m1"))
            .with_generation_id_or_member_epoch(epoch)
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(5),
                    ]),
            ])
    };
    for (epoch, expected, correlation) in [(1, 0, 20), (0, 113, 21), (4, 110, 22)] {
        raw.send(&commit(epoch), 9, correlation);
        let (_, response) = raw.receive::<OffsetCommitRequest>(9);
        assert_eq!(
            response.topics[0].partitions[0].error_code, expected,
            "commit at epoch {epoch}"
        );
    }
    let fetch = |epoch: i32| {
        OffsetFetchRequest::default().with_groups(vec![
            offset_fetch_request::OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s("g")))
                .with_member_id(Some(s("m1")))
                .with_member_epoch(epoch)
                .with_topics(None),
        ])
    };
    raw.send(&fetch(1), 9, 23);
    let (_, fetched) = raw.receive::<OffsetFetchRequest>(9);
    assert_eq!(fetched.groups[0].error_code, 0);
    assert_eq!(
        fetched.groups[0].topics[0].partitions[0].committed_offset,
        5
    );
    raw.send(&fetch(0), 9, 24);
    let (_, fetched) = raw.receive::<OffsetFetchRequest>(9);
    assert_eq!(fetched.groups[0].error_code, 113, "STALE_MEMBER_EPOCH");
    // Leaving.
    let left = send(&mut raw, &heartbeat("g", "m1", -1), 9);
    assert_eq!((code(&left), left.member_epoch), (0, -1));

    // ConsumerGroupDescribe: the consumer groups, and GROUP_ID_NOT_FOUND for the rest.
    raw.send(
        &ConsumerGroupDescribeRequest::default()
            .with_group_ids(vec![GroupId(s("g4")), GroupId(s("nope"))]),
        0,
        10,
    );
    let (_, described) = raw.receive::<ConsumerGroupDescribeRequest>(0);
    assert_eq!(described.groups[0].error_code, 0);
    assert_eq!(described.groups[0].members.len(), 1);
    assert_eq!(
        described.groups[0].members[0].instance_id.as_deref(),
        Some("i-1")
    );
    assert_eq!(described.groups[1].error_code, 69, "GROUP_ID_NOT_FOUND");
}
