//! Bad input on the Kafka port: each case ends in an error code or a closed connection with one
//! log line, never a panic or a hang, and other clients never notice.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::time::Duration;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use silt_tests::{Raw, Silt, encode_request, wait_until};

fn metadata_works(silt: &Silt) {
    let mut raw = Raw::connect(&silt.kafka);
    raw.send(&MetadataRequest::default().with_topics(None), 12, 1);
    let (correlation, response) = raw.receive::<MetadataRequest>(12);
    assert_eq!(correlation, 1);
    assert_eq!(response.brokers.len(), 1);
}

#[test]
fn bad_frames_close_only_their_own_connection() {
    let mut silt = Silt::start(&["--set", "request_bytes_max=1048576"]);
    // A client idling mid-frame must not hold anyone up.
    let mut slow = Raw::connect(&silt.kafka);
    slow.send_bytes(&[0, 0, 0, 50, 0, 3]);

    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "frame over request_bytes_max",
            (2i32 << 20).to_be_bytes().to_vec(),
        ),
        ("negative length", (-5i32).to_be_bytes().to_vec()),
        (
            "length too small for a header",
            [0, 0, 0, 3, 1, 2, 3].to_vec(),
        ),
        ("unknown API key", {
            let mut frame = encode_request(&ApiVersionsRequest::default(), 0, 9);
            frame[4..6].copy_from_slice(&2000i16.to_be_bytes());
            frame
        }),
        ("unsupported Metadata version", {
            let mut frame = encode_request(&MetadataRequest::default(), 1, 9);
            frame[6..8].copy_from_slice(&99i16.to_be_bytes());
            frame
        }),
        (
            "an API silt does not serve",
            encode_request(&DescribeLogDirsRequest::default(), 1, 9),
        ),
        ("garbage Produce body", {
            let mut frame = encode_request(&ApiVersionsRequest::default(), 0, 9);
            frame[4..6].copy_from_slice(&0i16.to_be_bytes());
            frame[6..8].copy_from_slice(&9i16.to_be_bytes());
            frame.extend_from_slice(&[0xff; 40]);
            let size = (frame.len() - 4) as i32;
            frame[..4].copy_from_slice(&size.to_be_bytes());
            frame
        }),
        ("array count far past the frame (allocation attack)", {
            let mut frame =
                encode_request(&MetadataRequest::default().with_topics(Some(vec![])), 1, 9);
            // Metadata v1 body is the topics array: replace its count with i32::MAX.
            let at = frame.len() - 4;
            frame[at..].copy_from_slice(&i32::MAX.to_be_bytes());
            frame
        }),
    ];
    for (case, bytes) in cases {
        let mut raw = Raw::connect(&silt.kafka);
        raw.send_bytes(&bytes);
        assert!(
            raw.is_closed_by_server(),
            "{case}: connection should be closed"
        );
        metadata_works(&silt);
    }
    // A frame cut short by the client going away.
    {
        let mut raw = Raw::connect(&silt.kafka);
        let frame = encode_request(&MetadataRequest::default(), 12, 3);
        raw.stream.write_all(&frame[..frame.len() / 2]).unwrap();
    }
    metadata_works(&silt);
    assert!(silt.is_running());
    // The log line of the last refused frame may land after the client saw the close.
    wait_until(Duration::from_secs(10), || {
        silt.log().contains("Array length")
    });
    let log = silt.log();
    assert!(log.contains("exceeds request_bytes_max"), "{log}");
    assert!(log.contains("unknown API key 2000"), "{log}");
    assert!(
        log.contains("Array length"),
        "the allocation attack is refused by the decoder:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    drop(slow);
    assert_eq!(silt.terminate(), Some(0));
}

#[test]
fn api_versions_of_an_unknown_version_gets_the_v0_fallback() {
    let silt = Silt::start(&[]);
    let mut raw = Raw::connect(&silt.kafka);
    let mut frame = encode_request(&ApiVersionsRequest::default(), 3, 77);
    frame[6..8].copy_from_slice(&42i16.to_be_bytes());
    raw.send_bytes(&frame);
    let (correlation, response) = raw.receive::<ApiVersionsRequest>(0);
    assert_eq!(correlation, 77);
    assert_eq!(response.error_code, 35, "UNSUPPORTED_VERSION");
    let api_versions = response
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::ApiVersions as i16)
        .unwrap();
    assert_eq!((api_versions.min_version, api_versions.max_version), (0, 4));
    // The client then asks again with a version it found, on the same connection.
    raw.send(
        &ApiVersionsRequest::default().with_client_software_name(StrBytes::from_static_str("x")),
        3,
        78,
    );
    let (correlation, response) = raw.receive::<ApiVersionsRequest>(3);
    assert_eq!((correlation, response.error_code), (78, 0));
    // ApiVersions lists exactly what silt serves: no API it lacks (DescribeLogDirs as yet).
    let keys: Vec<i16> = response.api_keys.iter().map(|k| k.api_key).collect();
    assert!(keys.contains(&(ApiKey::Produce as i16)));
    assert!(keys.contains(&(ApiKey::TxnOffsetCommit as i16)));
    assert!(keys.contains(&(ApiKey::SaslHandshake as i16)));
    assert!(!keys.contains(&(ApiKey::DescribeLogDirs as i16)));
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let silt = Silt::start(&[]);
    let mut raw = Raw::connect(&silt.kafka);
    let mut burst = Vec::new();
    for i in 0..50 {
        // Interleave two APIs so out-of-order completion would show.
        if i % 2 == 0 {
            burst.extend(encode_request(
                &MetadataRequest::default().with_topics(None),
                12,
                i,
            ));
        } else {
            burst.extend(encode_request(&ApiVersionsRequest::default(), 3, i));
        }
    }
    raw.send_bytes(&burst);
    for i in 0..50 {
        let (correlation, _) = if i % 2 == 0 {
            raw.read_frame(ApiKey::Metadata, 12).unwrap()
        } else {
            raw.read_frame(ApiKey::ApiVersions, 3).unwrap()
        };
        assert_eq!(correlation, i);
    }
}

#[test]
fn produce_errors_are_kafka_codes() {
    let silt = Silt::start(&["--set", "auto_create_topics=false"]);
    let mut raw = Raw::connect(&silt.kafka);
    let batch = |bytes: Vec<u8>| {
        ProduceRequest::default()
            .with_acks(-1)
            .with_topic_data(vec![
                produce_request::TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_static_str("nope")))
                    .with_partition_data(vec![
                        produce_request::PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(bytes.into())),
                    ]),
            ])
    };
    raw.send(&batch(vec![1, 2, 3]), 9, 1);
    let (_, response) = raw.receive::<ProduceRequest>(9);
    assert_eq!(
        response.responses[0].partition_responses[0].error_code, 3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
    let mut bad_acks = batch(vec![]);
    bad_acks.acks = 5;
    raw.send(&bad_acks, 9, 2);
    let (_, response) = raw.receive::<ProduceRequest>(9);
    assert_eq!(
        response.responses[0].partition_responses[0].error_code, 21,
        "INVALID_REQUIRED_ACKS"
    );
    // Fetch with a session id we never gave out.
    raw.send(
        &FetchRequest::default()
            .with_session_id(12345)
            .with_session_epoch(1),
        12,
        3,
    );
    let (_, response) = raw.receive::<FetchRequest>(12);
    assert_eq!(response.error_code, 70, "FETCH_SESSION_ID_NOT_FOUND");
    std::thread::sleep(Duration::from_millis(10));
}

#[test]
fn out_of_date_and_malformed_group_requests_get_kafka_codes() {
    let silt = Silt::start(&["--set", "group_initial_rebalance_delay_ms=0"]);
    let mut raw = Raw::connect(&silt.kafka);
    let s = StrBytes::from_static_str;
    let join = |member: &'static str, session: i32| {
        JoinGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_member_id(s(member))
            .with_session_timeout_ms(session)
            .with_rebalance_timeout_ms(10_000)
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![
                join_group_request::JoinGroupRequestProtocol::default().with_name(s("range")),
            ])
    };
    raw.send(&join("", 10), 5, 1);
    assert_eq!(
        raw.receive::<JoinGroupRequest>(5).1.error_code,
        26,
        "INVALID_SESSION_TIMEOUT"
    );
    raw.send(&join("", 10_000).with_group_id(GroupId(s(""))), 5, 2);
    assert_eq!(
        raw.receive::<JoinGroupRequest>(5).1.error_code,
        24,
        "INVALID_GROUP_ID"
    );
    raw.send(&join("who-am-i", 10_000), 5, 3);
    assert_eq!(
        raw.receive::<JoinGroupRequest>(5).1.error_code,
        25,
        "UNKNOWN_MEMBER_ID"
    );
    // A real member: MEMBER_ID_REQUIRED, then the join with that id.
    raw.send(&join("", 10_000), 5, 4);
    let (_, first) = raw.receive::<JoinGroupRequest>(5);
    assert_eq!(first.error_code, 79, "MEMBER_ID_REQUIRED");
    let member = first.member_id.clone();
    raw.send(&join("", 10_000).with_member_id(member.clone()), 5, 5);
    let (_, joined) = raw.receive::<JoinGroupRequest>(5);
    assert_eq!((joined.error_code, joined.generation_id), (0, 1));
    let sync = |generation: i32| {
        SyncGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_member_id(member.clone())
            .with_generation_id(generation)
    };
    raw.send(&sync(7), 3, 6);
    assert_eq!(
        raw.receive::<SyncGroupRequest>(3).1.error_code,
        22,
        "ILLEGAL_GENERATION"
    );
    raw.send(&sync(1), 3, 7);
    assert_eq!(raw.receive::<SyncGroupRequest>(3).1.error_code, 0);
    let heartbeat = HeartbeatRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_member_id(s("ghost"))
        .with_generation_id(1);
    raw.send(&heartbeat, 3, 8);
    assert_eq!(
        raw.receive::<HeartbeatRequest>(3).1.error_code,
        25,
        "UNKNOWN_MEMBER_ID"
    );
    // An admin-style commit (generation -1) to a group with members is refused.
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_generation_id_or_member_epoch(-1);
    raw.send(
        &commit.with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default(),
                ]),
        ]),
        8,
        9,
    );
    let (_, committed) = raw.receive::<OffsetCommitRequest>(8);
    assert_eq!(
        committed.topics[0].partitions[0].error_code, 3,
        "unknown topic first"
    );
    // A transactional id's coordinator is found like a group's; an unknown key type is not.
    raw.send(
        &FindCoordinatorRequest::default()
            .with_key(s("tx"))
            .with_key_type(1),
        3,
        10,
    );
    assert_eq!(raw.receive::<FindCoordinatorRequest>(3).1.error_code, 0);
    raw.send(
        &FindCoordinatorRequest::default()
            .with_key(s("tx"))
            .with_key_type(7),
        3,
        10,
    );
    assert_eq!(
        raw.receive::<FindCoordinatorRequest>(3).1.error_code,
        42,
        "INVALID_REQUEST"
    );
    // Deleting a group with members.
    raw.send(
        &DeleteGroupsRequest::default()
            .with_groups_names(vec![GroupId(s("g")), GroupId(s("none"))]),
        2,
        11,
    );
    let (_, deleted) = raw.receive::<DeleteGroupsRequest>(2);
    assert_eq!(
        deleted
            .results
            .iter()
            .map(|r| r.error_code)
            .collect::<Vec<_>>(),
        vec![68, 69],
        "NON_EMPTY_GROUP, GROUP_ID_NOT_FOUND"
    );
}
