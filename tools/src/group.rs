//! `silt group ...`: consumer groups over the Kafka API, like `rpk group`.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use bytes::{Buf, Bytes};
use clap::Subcommand;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerProtocolAssignment, DeleteGroupsRequest,
    DescribeGroupsRequest, GroupId, ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest,
    TopicName,
};
use kafka_protocol::protocol::Decodable;

use crate::brokers::Brokers;
use crate::client::{Client, check, str_bytes};
use crate::topic::{BrokerArgs, list_offsets, partitions_of};

/// Group commands.
#[derive(Debug, Subcommand)]
pub(crate) enum GroupCommand {
    /// List groups.
    #[command(alias = "ls")]
    List,
    /// Show a group's members, assignments, committed offsets and lag.
    Describe {
        /// Group id.
        name: String,
    },
    /// Move a group's committed offsets (the group must have no active members).
    Seek {
        /// Group id.
        name: String,
        /// Topic whose partitions to move.
        #[arg(long)]
        topic: String,
        /// start, end, an offset, or @timestamp-ms.
        #[arg(long)]
        to: String,
    },
    /// Delete groups (only those without active members).
    Delete {
        /// Group id(s).
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// Runs a group command.
pub(crate) async fn run(command: GroupCommand, brokers: &BrokerArgs) -> Result<()> {
    let mut brokers = Brokers::connect(&brokers.brokers).await?;
    match command {
        GroupCommand::List => list(&mut brokers).await,
        GroupCommand::Describe { name } => describe(&mut brokers, &name).await,
        GroupCommand::Seek { name, topic, to } => seek(&mut brokers, &name, &topic, &to).await,
        GroupCommand::Delete { names } => delete(&mut brokers, &names).await,
    }
}

/// Every group of the cluster: each broker lists the groups it coordinates.
async fn list(brokers: &mut Brokers) -> Result<()> {
    let ids = brokers.broker_ids().await?;
    let mut groups = BTreeMap::new();
    for id in ids {
        let (response, _) = brokers
            .broker(id)
            .await?
            .send(ListGroupsRequest::default(), 5)
            .await?;
        check(
            response.error_code,
            None,
            &format!("list groups on broker {id}"),
        )?;
        for group in response.groups {
            groups.insert(
                group.group_id.0.to_string(),
                (
                    group.group_state.to_string(),
                    group.group_type.to_string(),
                    group.protocol_type.to_string(),
                ),
            );
        }
    }
    println!(
        "{:<40} {:<20} {:<10} PROTOCOL-TYPE",
        "GROUP", "STATE", "TYPE"
    );
    for (id, (state, kind, protocol_type)) in groups {
        println!("{id:<40} {state:<20} {kind:<10} {protocol_type}");
    }
    Ok(())
}

/// A KIP-848 consumer group (ConsumerGroupDescribe): epochs, members, assignments.
async fn describe_consumer(
    brokers: &mut Brokers,
    group: &str,
) -> Result<Option<BTreeMap<(String, i32), String>>> {
    let (response, _) = brokers
        .coordinator(group)
        .await?
        .send(
            ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(str_bytes(group))]),
            0,
        )
        .await?;
    let Some(described) = response.groups.into_iter().next() else {
        return Ok(None);
    };
    if described.error_code != 0 {
        // A classic group (or none): DescribeGroups says which.
        return Ok(None);
    }
    println!("GROUP        {group}");
    println!("TYPE         consumer (KIP-848)");
    println!("STATE        {}", described.group_state.as_str());
    println!(
        "EPOCH        group {} / assignment {} ({} assignor)",
        described.group_epoch,
        described.assignment_epoch,
        described.assignor_name.as_str()
    );
    println!("MEMBERS      {}", described.members.len());
    let mut owner = BTreeMap::new();
    for member in &described.members {
        let subscription = match &member.subscribed_topic_regex {
            Some(regex) => format!("regex {}", regex.as_str()),
            None => member
                .subscribed_topic_names
                .iter()
                .map(|t| t.0.to_string())
                .collect::<Vec<_>>()
                .join(","),
        };
        println!(
            "  {} epoch {} ({}{}{}) subscribed to {subscription}",
            member.member_id.as_str(),
            member.member_epoch,
            member.client_id.as_str(),
            member.client_host.as_str(),
            member
                .instance_id
                .as_ref()
                .map_or(String::new(), |i| format!(", instance {}", i.as_str())),
        );
        for tp in &member.assignment.topic_partitions {
            for p in &tp.partitions {
                owner.insert(
                    (tp.topic_name.0.to_string(), *p),
                    format!(
                        "{} (epoch {})",
                        member.member_id.as_str(),
                        member.member_epoch
                    ),
                );
            }
        }
    }
    Ok(Some(owner))
}

/// Partitions assigned, from a "consumer" protocol assignment.
fn assigned(assignment: &Bytes) -> Vec<(String, i32)> {
    let mut bytes = assignment.clone();
    if bytes.len() < 2 {
        return Vec::new();
    }
    let version = bytes.get_i16().clamp(0, 3);
    ConsumerProtocolAssignment::decode(&mut bytes, version)
        .map(|a| {
            a.assigned_partitions
                .into_iter()
                .flat_map(|tp| {
                    tp.partitions
                        .into_iter()
                        .map(move |p| (tp.topic.0.to_string(), p))
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn committed(client: &mut Client, group: &str) -> Result<BTreeMap<(String, i32), i64>> {
    let (response, _) = client
        .send(
            OffsetFetchRequest::default()
                .with_group_id(GroupId(str_bytes(group)))
                .with_topics(None),
            7,
        )
        .await?;
    check(
        response.error_code,
        None,
        &format!("committed offsets of {group}"),
    )?;
    let mut out = BTreeMap::new();
    for topic in response.topics {
        for p in topic.partitions {
            if p.committed_offset >= 0 {
                out.insert(
                    (topic.name.0.to_string(), p.partition_index),
                    p.committed_offset,
                );
            }
        }
    }
    Ok(out)
}

async fn describe(brokers: &mut Brokers, group: &str) -> Result<()> {
    let owner = match describe_consumer(brokers, group).await? {
        Some(owner) => owner,
        None => describe_classic(brokers, group).await?,
    };
    print_offsets(brokers, group, &owner).await
}

/// A classic group (DescribeGroups): members and their assignments.
async fn describe_classic(
    brokers: &mut Brokers,
    group: &str,
) -> Result<BTreeMap<(String, i32), String>> {
    let (response, _) = brokers
        .coordinator(group)
        .await?
        .send(
            DescribeGroupsRequest::default().with_groups(vec![GroupId(str_bytes(group))]),
            5,
        )
        .await?;
    let described = response
        .groups
        .into_iter()
        .next()
        .context("empty DescribeGroups response")?;
    check(
        described.error_code,
        described.error_message.as_ref(),
        &format!("group {group}"),
    )?;
    if described.group_state.as_str() == "Dead" {
        bail!("group {group} does not exist");
    }
    println!("GROUP        {group}");
    println!("STATE        {}", described.group_state.as_str());
    println!(
        "PROTOCOL     {} {}",
        described.protocol_type.as_str(),
        described.protocol_data.as_str()
    );
    println!("MEMBERS      {}", described.members.len());
    let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
    for member in &described.members {
        for tp in assigned(&member.member_assignment) {
            owner.insert(
                tp,
                format!(
                    "{} ({}{})",
                    member.member_id.as_str(),
                    member.client_id.as_str(),
                    member.client_host.as_str()
                ),
            );
        }
    }
    Ok(owner)
}

/// Committed offsets, log ends and lag of every partition the group owns or committed.
async fn print_offsets(
    brokers: &mut Brokers,
    group: &str,
    owner: &BTreeMap<(String, i32), String>,
) -> Result<()> {
    let committed = committed(brokers.coordinator(group).await?, group).await?;
    let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in committed.keys().chain(owner.keys()) {
        let partitions = topics.entry(topic.clone()).or_default();
        if !partitions.contains(partition) {
            partitions.push(*partition);
        }
    }
    println!(
        "\n{:<24} {:>9} {:>16} {:>16} {:>8}  MEMBER",
        "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG"
    );
    for (topic, mut partitions) in topics {
        partitions.sort_unstable();
        let ends = list_offsets(brokers, &topic, &partitions, -1)
            .await
            .unwrap_or_default();
        for partition in partitions {
            let current = committed.get(&(topic.clone(), partition)).copied();
            let end = ends.get(&partition).copied();
            let lag = match (current, end) {
                (Some(c), Some(e)) => (e - c).max(0).to_string(),
                (None, Some(_)) => "-".to_string(),
                _ => "?".to_string(),
            };
            println!(
                "{:<24} {:>9} {:>16} {:>16} {:>8}  {}",
                topic,
                partition,
                current.map_or("-".to_string(), |c| c.to_string()),
                end.map_or("?".to_string(), |e| e.to_string()),
                lag,
                owner
                    .get(&(topic.clone(), partition))
                    .map_or("-", String::as_str)
            );
        }
    }
    Ok(())
}

async fn seek(brokers: &mut Brokers, group: &str, topic: &str, to: &str) -> Result<()> {
    let (_, partitions) = partitions_of(brokers, topic).await?;
    let targets: BTreeMap<i32, i64> = match to {
        "start" | "earliest" => list_offsets(brokers, topic, &partitions, -2).await?,
        "end" | "latest" => list_offsets(brokers, topic, &partitions, -1).await?,
        at if at.starts_with('@') => {
            let timestamp: i64 = at[1..]
                .parse()
                .with_context(|| format!("bad timestamp in {at:?}"))?;
            let found = list_offsets(brokers, topic, &partitions, timestamp).await?;
            let ends = list_offsets(brokers, topic, &partitions, -1).await?;
            found
                .into_iter()
                .map(|(p, o)| (p, if o < 0 { ends[&p] } else { o }))
                .collect()
        }
        offset => {
            let offset: i64 = offset.parse().with_context(|| {
                format!("--to takes start, end, an offset or @timestamp, not {offset:?}")
            })?;
            partitions.iter().map(|p| (*p, offset)).collect()
        }
    };
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(str_bytes(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(str_bytes(topic)))
                .with_partitions(
                    targets
                        .iter()
                        .map(|(p, o)| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(*p)
                                .with_committed_offset(*o)
                        })
                        .collect(),
                ),
        ]);
    let (response, _) = brokers.coordinator(group).await?.send(request, 8).await?;
    for t in response.topics {
        for p in t.partitions {
            check(
                p.error_code,
                None,
                &format!(
                    "moving {group} on {topic}/{} (a group with active members cannot be moved)",
                    p.partition_index
                ),
            )?;
        }
    }
    println!("{:<24} {:>9} {:>16}", "TOPIC", "PARTITION", "NEW-OFFSET");
    for (p, o) in targets {
        println!("{topic:<24} {p:>9} {o:>16}");
    }
    Ok(())
}

async fn delete(brokers: &mut Brokers, names: &[String]) -> Result<()> {
    let mut results = Vec::new();
    for name in names {
        let (response, _) = brokers
            .coordinator(name)
            .await?
            .send(
                DeleteGroupsRequest::default().with_groups_names(vec![GroupId(str_bytes(name))]),
                2,
            )
            .await?;
        results.extend(response.results);
    }
    let mut failed = false;
    println!("{:<40} STATUS", "GROUP");
    for result in results {
        let status = match check(result.error_code, None, "") {
            Ok(()) => "OK".to_string(),
            Err(e) => {
                failed = true;
                e.to_string().trim_start_matches(": ").to_string()
            }
        };
        println!("{:<40} {status}", result.group_id.0.as_str());
    }
    if failed {
        bail!("some groups were not deleted");
    }
    Ok(())
}
