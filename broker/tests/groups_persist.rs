//! Committed offsets and group metadata survive restarts and compaction of the group log.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use silt_broker::group::state::{CommittedOffset, JoinRequest};
use silt_broker::group::{GroupState, OffsetCommit};
use silt_broker::log::DiskStorage;
use silt_broker::node::Node;
use silt_config::NodeConfig;

mod common;

async fn open(dir: &std::path::Path) -> Arc<Node> {
    let config = NodeConfig {
        data_dir: dir.to_path_buf(),
        group_initial_rebalance_delay_ms: 0,
        group_log_compaction_bytes: 64 * 1024,
        ..NodeConfig::default()
    };
    common::open_node(config, Arc::new(DiskStorage)).await
}

fn commit(topic: &str, partition: i32, offset: i64) -> OffsetCommit {
    OffsetCommit {
        topic: topic.into(),
        partition,
        committed: CommittedOffset {
            offset,
            leader_epoch: 0,
            metadata: format!("m{offset}"),
            commit_timestamp_ms: 1,
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_and_members_survive_restart_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    node.create_topic(common::new_topic("t", 4), false)
        .await
        .unwrap();
    // An admin-style group: many commits of the same partitions.
    for round in 0..500 {
        let offsets = (0..4)
            .map(|p| commit("t", p, round * 10 + i64::from(p)))
            .collect();
        node.groups
            .commit("admin-group", "", None, -1, offsets)
            .await
            .unwrap();
    }
    // A group with a member, stable.
    let join = JoinRequest {
        version: 3,
        member_id: String::new(),
        group_instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 30_000,
        rebalance_timeout_ms: 30_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), bytes::Bytes::from_static(b"meta"))],
    };
    let joined = node.groups.join("live-group", join).await;
    assert_eq!(joined.generation, 1);
    let synced = node
        .groups
        .sync(
            "live-group",
            &joined.member_id,
            None,
            1,
            (None, None),
            vec![(
                joined.member_id.clone(),
                bytes::Bytes::from_static(b"assigned"),
            )],
        )
        .await;
    assert_eq!(synced.assignment, bytes::Bytes::from_static(b"assigned"));
    node.groups
        .commit(
            "live-group",
            &joined.member_id,
            None,
            1,
            vec![commit("t", 2, 77)],
        )
        .await
        .unwrap();
    // A deleted group leaves nothing behind.
    node.groups
        .commit("gone-group", "", None, -1, vec![commit("t", 0, 5)])
        .await
        .unwrap();
    node.groups.delete_group("gone-group").await.unwrap();

    let before = node.groups.log_bytes();
    assert!(before > 64 * 1024, "the log grew to {before} bytes");
    node.groups.compact_if_needed().await;
    let after = node.groups.log_bytes();
    assert!(
        after < before / 4,
        "compaction shrank {before} to {after} bytes"
    );
    node.shutdown().await;
    drop(node);

    let node = open(dir.path()).await;
    let offsets = node.groups.offsets("admin-group").unwrap();
    for p in 0..4 {
        let committed = &offsets[&("t".to_string(), p)];
        assert_eq!(
            (committed.offset, committed.metadata.as_str()),
            (4990 + i64::from(p), format!("m{}", 4990 + p).as_str())
        );
    }
    let live = node.groups.describe("live-group").unwrap();
    assert_eq!(
        live.state,
        GroupState::Stable,
        "members are restored; they keep heartbeating"
    );
    assert_eq!(live.generation, 1);
    assert_eq!(
        live.members[&joined.member_id].assignment,
        bytes::Bytes::from_static(b"assigned")
    );
    assert_eq!(
        node.groups.offsets("live-group").unwrap()[&("t".to_string(), 2)].offset,
        77
    );
    assert!(node.groups.describe("gone-group").is_none());
    // The restored member carries on without rejoining.
    node.groups
        .heartbeat("live-group", &joined.member_id, None, 1)
        .unwrap();
    node.shutdown().await;
}

async fn open_sim(storage: &silt_broker::log::sim::SimStorage) -> Arc<Node> {
    let config = NodeConfig {
        data_dir: "/sim/data".into(),
        archive: silt_config::ArchiveTarget::Disabled,
        ..NodeConfig::default()
    };
    common::open_node(config, Arc::new(storage.clone())).await
}

/// Issue #10: a committed offset reaches OffsetFetch only once its record is durable, so a
/// power cut never takes back an offset a consumer was shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r10_committed_offsets_are_visible_only_once_durable() {
    let storage = silt_broker::log::sim::SimStorage::new(11);
    let node = open_sim(&storage).await;
    let committed = |node: &Node| {
        node.groups
            .offsets("g")
            .and_then(|o| o.get(&("t".to_string(), 0)).map(|c| c.offset))
    };
    node.groups
        .commit("g", "", None, -1, vec![commit("t", 0, 41)])
        .await
        .unwrap();
    assert_eq!(committed(&node), Some(41));
    storage.set_sync_latency(std::time::Duration::from_millis(40));
    let syncs_before = storage.syncs();
    let committing = {
        let node = node.clone();
        tokio::spawn(async move {
            node.groups
                .commit("g", "", None, -1, vec![commit("t", 0, 42)])
                .await
        })
    };
    // While the fsync runs, OffsetFetch still answers with the durable offset: the new one
    // shows only once an fsync has completed.
    let mut looks = 0;
    while !committing.is_finished() {
        let shown = committed(&node);
        if shown == Some(42) {
            assert!(
                storage.syncs() > syncs_before,
                "visible before it was durable"
            );
        } else {
            assert_eq!(shown, Some(41));
        }
        looks += 1;
        tokio::task::yield_now().await;
    }
    assert!(looks > 0);
    committing.await.unwrap().unwrap();
    assert_eq!(committed(&node), Some(42));

    // A commit in flight when the power fails: whatever OffsetFetch showed survives.
    let committing = {
        let node = node.clone();
        tokio::spawn(async move {
            node.groups
                .commit("g", "", None, -1, vec![commit("t", 0, 43)])
                .await
        })
    };
    tokio::task::yield_now().await;
    let shown = committed(&node);
    storage.power_cut();
    let _ = committing.await.unwrap();
    drop(node);
    storage.set_sync_latency(std::time::Duration::ZERO);
    let node = open_sim(&storage.after_reboot()).await;
    let after = committed(&node);
    assert!(
        after >= shown,
        "shown {shown:?} before the power cut, {after:?} after"
    );
}
