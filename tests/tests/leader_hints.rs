//! KIP-951 on a three-node cluster of real `silt` processes: a Produce (v11) or Fetch (v16)
//! sent to a follower is refused with NOT_LEADER_OR_FOLLOWER naming the current leader, its
//! epoch and its endpoint; older versions get the plain error.
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::time::Duration;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use silt_tests::{Raw, Silt, wait_until};

/// A free port below the kernel's ephemeral range (32768 and up): the nodes started beside
/// it bind their Kafka and admin listeners to port 0, which could otherwise hand one of them
/// the port chosen here before its own node binds it (seen: "Address already in use").
fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let base = 20_000 + std::process::id() % 10_000;
    loop {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        assert!(n < 10_000, "no free port below the ephemeral range");
        let port = (20_000 + (base - 20_000 + n) % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Three nodes, all controller voters; started side by side (each serves once a majority is
/// up).
fn cluster(dirs: &[tempfile::TempDir]) -> Vec<Silt> {
    let ports: Vec<u16> = dirs.iter().map(|_| free_port()).collect();
    let seeds = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{i}@127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let handles: Vec<_> = dirs
        .iter()
        .enumerate()
        .map(|(i, dir)| {
            let (data, seeds, rpc) = (
                dir.path().join("data"),
                seeds.clone(),
                format!("127.0.0.1:{}", ports[i]),
            );
            std::thread::spawn(move || {
                let id = i.to_string();
                Silt::start_in(
                    &data,
                    &[
                        "--node-id",
                        &id,
                        "--seeds",
                        &seeds,
                        "--rpc-addr",
                        &rpc,
                        "--set",
                        "default_replication_factor=3",
                    ],
                )
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn topic_name(name: &'static str) -> TopicName {
    TopicName(StrBytes::from_static_str(name))
}

#[test]
fn a_follower_names_the_leader_in_its_refusals() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = cluster(&dirs);
    let (code, _, err) = nodes[0].cli(&["topic", "create", "hints", "-p", "1", "-r", "3"], None);
    assert_eq!(code, 0, "{err}");
    // Who leads partition 0, and where each broker listens (from Metadata).
    let mut raw = Raw::connect(&nodes[0].kafka);
    let mut leader = -1;
    let mut epoch = -1;
    let mut brokers = Vec::new();
    assert!(wait_until(Duration::from_secs(30), || {
        let request = MetadataRequest::default().with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(topic_name("hints"))),
        ]));
        raw.send(&request, 12, 1);
        let (_, response) = raw.receive::<MetadataRequest>(12);
        let p = &response.topics[0].partitions[0];
        leader = p.leader_id.0;
        epoch = p.leader_epoch;
        brokers = response
            .brokers
            .iter()
            .map(|b| (b.node_id.0, b.host.to_string(), b.port))
            .collect();
        leader >= 0 && brokers.len() == 3
    }));
    let (_, leader_host, leader_port) = brokers.iter().find(|b| b.0 == leader).unwrap().clone();
    let (follower, _, _) = brokers.iter().find(|b| b.0 != leader).unwrap().clone();
    let mut raw = Raw::connect(&nodes[follower as usize].kafka);

    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            produce_request::TopicProduceData::default()
                .with_name(topic_name("hints"))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(bytes::Bytes::new())),
                ]),
        ]);
    raw.send(&produce, 11, 2);
    let (_, response) = raw.receive::<ProduceRequest>(11);
    let p = &response.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 6, "NOT_LEADER_OR_FOLLOWER");
    assert_eq!(p.current_leader.leader_id.0, leader);
    assert_eq!(p.current_leader.leader_epoch, epoch);
    let endpoint = &response.node_endpoints[0];
    assert_eq!(
        (endpoint.node_id.0, endpoint.host.to_string(), endpoint.port),
        (leader, leader_host.clone(), leader_port)
    );
    // Before v10 the field does not exist: the plain error.
    raw.send(&produce, 9, 3);
    let (_, response) = raw.receive::<ProduceRequest>(9);
    assert_eq!(response.responses[0].partition_responses[0].error_code, 6);

    let fetch = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            fetch_request::FetchTopic::default()
                .with_topic(topic_name("hints"))
                .with_partitions(vec![
                    fetch_request::FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    // v12 (names, not ids) is enough to show the plain error; v16 needs the topic id.
    raw.send(&fetch, 12, 4);
    let (_, response) = raw.receive::<FetchRequest>(12);
    assert_eq!(response.responses[0].partitions[0].error_code, 6);
    let mut by_id = fetch.clone();
    let mut meta = Raw::connect(&nodes[0].kafka);
    meta.send(
        &MetadataRequest::default().with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(topic_name("hints"))),
        ])),
        12,
        5,
    );
    let (_, metadata) = meta.receive::<MetadataRequest>(12);
    by_id.topics[0].topic_id = metadata.topics[0].topic_id;
    raw.send(&by_id, 16, 6);
    let (_, response) = raw.receive::<FetchRequest>(16);
    let p = &response.responses[0].partitions[0];
    assert_eq!(p.error_code, 6, "NOT_LEADER_OR_FOLLOWER");
    assert_eq!(p.current_leader.leader_id.0, leader);
    assert_eq!(p.current_leader.leader_epoch, epoch);
    assert_eq!(response.node_endpoints[0].port, leader_port);
}
