//! `silt cluster restore`: an empty cluster takes over every topic and every group's committed
//! offsets from a bucket (its own archive, typically a replica of another region's bucket).
//!
//! It reads the bucket's catalog and groups snapshot directly, then speaks the Kafka API to
//! the broker like any admin client: CreateTopics with `remote.recovery=true` per topic (the
//! broker rebuilds each from its archive, which must be this bucket), then OffsetCommit per
//! group (simple commits, as an admin tool's offset reset makes them).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    CreateTopicsRequest, GroupId, MetadataRequest, OffsetCommitRequest, TopicName,
};
use silt_archiver::{Archive, ArchiveConfig};

use crate::brokers::Brokers;
use crate::client::{Client, check, str_bytes};
use crate::topic::BrokerArgs;

/// `silt cluster restore` options.
#[derive(Debug, Args)]
pub(crate) struct RestoreArgs {
    /// The bucket to restore from, as the broker's archive names it: a directory,
    /// s3://bucket/prefix (AWS_* variables apply), ...
    #[arg(long)]
    from: String,
    /// Restore only these topics (repeatable); every topic in the bucket by default.
    #[arg(long = "topic")]
    topics: Vec<String>,
    /// Leave groups' committed offsets alone.
    #[arg(long)]
    skip_groups: bool,
}

/// The names of every topic the cluster has.
async fn topic_names(client: &mut Client) -> Result<HashSet<String>> {
    let request = MetadataRequest::default()
        .with_topics(None)
        .with_allow_auto_topic_creation(false);
    let (metadata, _) = client.send(request, 12).await?;
    Ok(metadata
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
        .collect())
}

pub(crate) async fn restore(args: &RestoreArgs, brokers: &BrokerArgs) -> Result<()> {
    let started = Instant::now();
    let archive = Archive::open(
        &args.from,
        format!("silt-cli/{}", uuid::Uuid::new_v4()),
        ArchiveConfig::default(),
    )
    .with_context(|| format!("opening the bucket {}", args.from))?;
    let mut topics = archive
        .topics()
        .await
        .with_context(|| format!("reading the topic catalog at {}", args.from))?;
    if !args.topics.is_empty() {
        let wanted: HashSet<&str> = args.topics.iter().map(String::as_str).collect();
        let missing: Vec<&str> = wanted
            .iter()
            .filter(|w| !topics.iter().any(|t| t.name == **w))
            .copied()
            .collect();
        if !missing.is_empty() {
            bail!("not in the bucket's catalog: {}", missing.join(", "));
        }
        topics.retain(|t| wanted.contains(t.name.as_str()));
    }
    // Several incarnations of one name: the newest.
    topics.sort_by(|a, b| a.name.cmp(&b.name).then(b.updated_ms.cmp(&a.updated_ms)));
    topics.dedup_by(|a, b| a.name == b.name);
    let groups = if args.skip_groups {
        None
    } else {
        archive
            .groups()
            .await
            .with_context(|| format!("reading the groups snapshot at {}", args.from))?
    };
    let group_count = groups.as_ref().map_or(0, |g| g.groups.len());

    let mut brokers = Brokers::connect(&brokers.brokers).await?;
    let existing = topic_names(brokers.any()).await?;

    let bar = ProgressBar::new((topics.len() + group_count) as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut restored = 0;
    let mut skipped = Vec::new();
    let mut failed = Vec::new();
    let mut first_serving: Option<Duration> = None;
    for topic in &topics {
        bar.set_message(format!("topic {}", topic.name));
        if existing.contains(&topic.name) {
            skipped.push(topic.name.clone());
            bar.inc(1);
            continue;
        }
        let request = CreateTopicsRequest::default()
            .with_topics(vec![
                CreatableTopic::default()
                    .with_name(TopicName(str_bytes(&topic.name)))
                    .with_num_partitions(topic.partitions)
                    .with_replication_factor(-1)
                    .with_configs(vec![
                        CreatableTopicConfig::default()
                            .with_name(str_bytes("remote.recovery"))
                            .with_value(Some(str_bytes("true"))),
                    ]),
            ])
            .with_timeout_ms(60_000);
        let (response, _) = brokers.any().send(request, 7).await?;
        for result in &response.topics {
            match check(
                result.error_code,
                result.error_message.as_ref(),
                &topic.name,
            ) {
                Ok(()) => {
                    restored += 1;
                    first_serving.get_or_insert(started.elapsed());
                    bar.println(format!(
                        "restored {} ({} partitions) at {:.2} s",
                        topic.name,
                        topic.partitions,
                        started.elapsed().as_secs_f64()
                    ));
                }
                Err(e) => {
                    bar.println(format!("failed   {e:#}"));
                    failed.push(topic.name.clone());
                }
            }
        }
        bar.inc(1);
    }
    let topics_done = started.elapsed();

    let mut offsets = 0;
    if let Some(snapshot) = &groups {
        let present = topic_names(brokers.any()).await?;
        for (group, group_topics) in &snapshot.groups {
            bar.set_message(format!("group {group}"));
            let request = OffsetCommitRequest::default()
                .with_group_id(GroupId(str_bytes(group)))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(
                    group_topics
                        .iter()
                        .filter(|(t, _)| present.contains(*t))
                        .map(|(topic, partitions)| {
                            OffsetCommitRequestTopic::default()
                                .with_name(TopicName(str_bytes(topic)))
                                .with_partitions(
                                    partitions
                                        .iter()
                                        .map(|(p, o)| {
                                            OffsetCommitRequestPartition::default()
                                                .with_partition_index(*p)
                                                .with_committed_offset(o.offset)
                                                .with_committed_leader_epoch(o.leader_epoch)
                                                .with_committed_metadata(Some(str_bytes(
                                                    &o.metadata,
                                                )))
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                );
            let (response, _) = brokers.coordinator(group).await?.send(request, 8).await?;
            let mut ok = true;
            for t in &response.topics {
                for p in &t.partitions {
                    let what = format!("group {group}: {}/{}", t.name.0, p.partition_index);
                    match check(p.error_code, None, &what) {
                        Ok(()) => offsets += 1,
                        Err(e) => {
                            ok = false;
                            bar.println(format!("failed   {e:#}"));
                        }
                    }
                }
            }
            if !ok {
                failed.push(format!("group {group}"));
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    println!(
        "restored {restored} topics (first serving after {:.2} s, all after {:.2} s), {} existed already; {offsets} committed offsets of {group_count} groups; {:.2} s in all",
        first_serving.unwrap_or_default().as_secs_f64(),
        topics_done.as_secs_f64(),
        skipped.len(),
        started.elapsed().as_secs_f64()
    );
    if let Some(snapshot) = &groups {
        println!(
            "group offsets as of {} ms since the epoch, written by cluster {}",
            snapshot.updated_ms, snapshot.cluster_id
        );
    }
    if !skipped.is_empty() {
        println!("left alone (already here): {}", skipped.join(", "));
    }
    if !failed.is_empty() {
        bail!("not restored: {}", failed.join(", "));
    }
    Ok(())
}
