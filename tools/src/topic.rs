//! `silt topic ...`: rpk-style topic commands over the Kafka API.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest, FetchRequest,
    FetchResponse, IncrementalAlterConfigsRequest, ListOffsetsRequest, ProduceRequest, TopicName,
};
use silt_index::batch::{self, Codec};
use silt_index::record::{NewRecord, Record, decode_records, encode_batch};

use kafka_protocol::ResponseError;
use kafka_protocol::protocol::StrBytes;

use crate::brokers::{Brokers, Retry, retriable};
use crate::client::{Client, check, describe as describe_error, str_bytes};

/// Where to find a broker.
#[derive(Debug, Args, Clone)]
pub(crate) struct BrokerArgs {
    /// Kafka API address of a broker of the cluster (or several, comma-separated).
    #[arg(
        long,
        short = 'X',
        default_value = "127.0.0.1:9092",
        env = "SILT_BROKERS",
        global = true
    )]
    pub(crate) brokers: String,
}

/// Topic commands.
#[derive(Debug, Subcommand)]
pub(crate) enum TopicCommand {
    /// Create a topic.
    Create {
        /// Topic name(s).
        #[arg(required = true)]
        names: Vec<String>,
        /// Partitions (-1: the broker's default).
        #[arg(short = 'p', long, default_value_t = -1)]
        partitions: i32,
        /// Replication factor (-1: the broker's default).
        #[arg(short = 'r', long, default_value_t = -1)]
        replicas: i16,
        /// Topic property, key=value (repeatable).
        #[arg(short = 'c', long = "topic-config", value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
        /// Only check that the broker would accept it.
        #[arg(long)]
        dry: bool,
        /// Recover the topic from the broker's archive (remote.recovery=true): its id,
        /// partitions and properties come from the bucket, its offsets continue the archive's.
        #[arg(long, conflicts_with = "read_replica")]
        recover: bool,
        /// Create a read-only replica of the topic in another cluster's bucket (a bucket name
        /// on the broker's S3 endpoint, or an archive URL): remote.readreplica=SOURCE.
        #[arg(long, value_name = "SOURCE")]
        read_replica: Option<String>,
    },
    /// List topics.
    #[command(alias = "ls")]
    List,
    /// Show a topic's partitions, offsets and properties (and, for a compacted topic, where
    /// compaction stands, from a node's admin API).
    Describe {
        /// Topic name.
        name: String,
        /// A node's admin HTTP address, for compaction status.
        #[arg(long, env = "SILT_ADMIN", default_value = "127.0.0.1:9644")]
        admin: String,
    },
    /// Change a topic's properties.
    AlterConfig {
        /// Topic name.
        name: String,
        /// Set key=value (repeatable).
        #[arg(long, value_parser = parse_key_value)]
        set: Vec<(String, String)>,
        /// Remove an override, back to the default (repeatable).
        #[arg(long)]
        delete: Vec<String>,
    },
    /// Delete topics.
    Delete {
        /// Topic name(s).
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Produce lines from stdin, one record each.
    Produce {
        /// Topic name.
        name: String,
        /// Split each line into key and value at the first occurrence of this string.
        #[arg(short = 'k', long)]
        key_separator: Option<String>,
        /// Send every record to this partition (default: by key hash, else round-robin).
        #[arg(short = 'p', long)]
        partition: Option<i32>,
        /// Acknowledgements: -1 (all, fsynced), 1 or 0.
        #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
        acks: i16,
        /// Compression: none, gzip, snappy, lz4, zstd.
        #[arg(long, default_value = "none", value_parser = parse_codec)]
        compression: Codec,
        /// Print the partition and offset of every record.
        #[arg(long)]
        print_offsets: bool,
    },
    /// Consume records and print them.
    Consume {
        /// Topic name.
        name: String,
        /// Where to start: start, end, an offset, or @timestamp-ms.
        #[arg(short = 'o', long, default_value = "start")]
        offset: String,
        /// Stop after this many records.
        #[arg(short = 'n', long)]
        num: Option<u64>,
        /// Only these partitions (repeatable).
        #[arg(short = 'p', long = "partition")]
        partitions: Vec<i32>,
        /// Output format: %t topic, %p partition, %o offset, %k key, %v value, %T timestamp,
        /// %h headers, %% percent; \n, \t escapes. Or "json".
        #[arg(short = 'f', long, default_value = "%v\\n")]
        format: String,
        /// Stop once every partition is read up to where it ended when consuming began.
        #[arg(long)]
        exit_at_end: bool,
    },
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

fn parse_codec(s: &str) -> Result<Codec, String> {
    Ok(match s {
        "none" => Codec::None,
        "gzip" => Codec::Gzip,
        "snappy" => Codec::Snappy,
        "lz4" => Codec::Lz4,
        "zstd" => Codec::Zstd,
        other => {
            return Err(format!(
                "unknown compression {other:?}; use none, gzip, snappy, lz4 or zstd"
            ));
        }
    })
}

fn topic_name(s: &str) -> TopicName {
    TopicName(str_bytes(s))
}

/// Runs a topic command.
pub(crate) async fn run(command: TopicCommand, brokers: &BrokerArgs) -> Result<()> {
    let mut brokers = Brokers::connect(&brokers.brokers).await?;
    let client = &mut brokers;
    match command {
        TopicCommand::Create {
            names,
            partitions,
            replicas,
            mut configs,
            dry,
            recover,
            read_replica,
        } => {
            if recover {
                configs.push(("remote.recovery".into(), "true".into()));
            }
            if let Some(source) = read_replica {
                configs.push(("remote.readreplica".into(), source));
            }
            create(client.any(), &names, partitions, replicas, &configs, dry).await
        }
        TopicCommand::List => list(client).await,
        TopicCommand::Describe { name, admin } => describe(client, &name, &admin).await,
        TopicCommand::AlterConfig { name, set, delete } => {
            alter_config(client.any(), &name, &set, &delete).await
        }
        TopicCommand::Delete { names } => delete_topics(client.any(), &names).await,
        TopicCommand::Produce {
            name,
            key_separator,
            partition,
            acks,
            compression,
            print_offsets,
        } => {
            produce(
                client,
                &name,
                key_separator.as_deref(),
                partition,
                acks,
                compression,
                print_offsets,
            )
            .await
        }
        TopicCommand::Consume {
            name,
            offset,
            num,
            partitions,
            format,
            exit_at_end,
        } => {
            consume(
                client,
                &name,
                &offset,
                num,
                &partitions,
                &format,
                exit_at_end,
            )
            .await
        }
    }
}

async fn create(
    client: &mut Client,
    names: &[String],
    partitions: i32,
    replicas: i16,
    configs: &[(String, String)],
    dry: bool,
) -> Result<()> {
    let topics = names
        .iter()
        .map(|name| {
            CreatableTopic::default()
                .with_name(topic_name(name))
                .with_num_partitions(partitions)
                .with_replication_factor(replicas)
                .with_configs(
                    configs
                        .iter()
                        .map(|(k, v)| {
                            CreatableTopicConfig::default()
                                .with_name(str_bytes(k))
                                .with_value(Some(str_bytes(v)))
                        })
                        .collect(),
                )
        })
        .collect();
    let request = CreateTopicsRequest::default()
        .with_topics(topics)
        .with_timeout_ms(30_000)
        .with_validate_only(dry);
    let (response, _) = client.send(request, 7).await?;
    let mut failed = false;
    println!("{:<40} STATUS", "TOPIC");
    for topic in &response.topics {
        let status = match check(topic.error_code, topic.error_message.as_ref(), "") {
            Ok(()) if dry => "OK (dry run)".to_string(),
            Ok(()) => "OK".to_string(),
            Err(e) => {
                failed = true;
                e.to_string().trim_start_matches(": ").to_string()
            }
        };
        println!("{:<40} {status}", topic.name.0.as_str());
    }
    if failed {
        bail!("some topics were not created");
    }
    Ok(())
}

async fn list(brokers: &mut Brokers) -> Result<()> {
    let topics = brokers.metadata(None).await?;
    println!("{:<40} {:>10} {:>8}", "NAME", "PARTITIONS", "REPLICAS");
    for topic in topics {
        let replicas = topic
            .partitions
            .first()
            .map_or(0, |p| p.replica_nodes.len());
        let name = topic
            .name
            .as_ref()
            .map(|n| n.0.to_string())
            .unwrap_or_default();
        println!("{name:<40} {:>10} {replicas:>8}", topic.partitions.len());
    }
    Ok(())
}

/// Looks up one topic's partitions, failing with a readable error.
pub(crate) async fn partitions_of(
    brokers: &mut Brokers,
    name: &str,
) -> Result<(MetadataResponseTopic, Vec<i32>)> {
    let topic = brokers.topic(name).await?;
    let mut partitions: Vec<i32> = topic.partitions.iter().map(|p| p.partition_index).collect();
    partitions.sort_unstable();
    Ok((topic, partitions))
}

/// `partitions` grouped by their leaders; those whose leader is unknown come back apart,
/// with why.
async fn by_leader(
    brokers: &mut Brokers,
    name: &str,
    partitions: impl IntoIterator<Item = i32>,
) -> Result<(BTreeMap<i32, Vec<i32>>, Vec<i32>, Option<String>)> {
    let mut grouped: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    let mut unknown = Vec::new();
    let mut why = None;
    for p in partitions {
        match brokers.leader(name, p).await {
            Ok(leader) => grouped.entry(leader).or_default().push(p),
            Err(e) => {
                if let Some(error) = brokers.broken(name, p) {
                    bail!("{name}/{p}: {}", describe_error(error));
                }
                unknown.push(p);
                why = Some(e.to_string());
            }
        }
    }
    Ok((grouped, unknown, why))
}

/// ListOffsets for each partition at `timestamp` (-1 latest, -2 earliest): partition -> offset.
/// Asks each partition's leader, following leadership as it moves.
pub(crate) async fn list_offsets(
    brokers: &mut Brokers,
    name: &str,
    partitions: &[i32],
    timestamp: i64,
) -> Result<BTreeMap<i32, i64>> {
    let mut offsets = BTreeMap::new();
    let mut todo = partitions.to_vec();
    let mut retry = Retry::new();
    while !todo.is_empty() {
        let (grouped, mut again, mut why) = by_leader(brokers, name, todo).await?;
        for (leader, group) in grouped {
            let request = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![
                    ListOffsetsTopic::default()
                        .with_name(topic_name(name))
                        .with_partitions(
                            group
                                .iter()
                                .map(|p| {
                                    ListOffsetsPartition::default()
                                        .with_partition_index(*p)
                                        .with_timestamp(timestamp)
                                })
                                .collect(),
                        ),
                ]);
            let sent = match brokers.broker(leader).await {
                Ok(client) => client.send(request, 7).await.map(|(r, _)| r),
                Err(e) => Err(e),
            };
            let response = match sent {
                Ok(response) => response,
                Err(e) => {
                    brokers.drop_broker(leader);
                    again.extend(group);
                    why = Some(e.to_string());
                    continue;
                }
            };
            for topic in response.topics {
                for p in topic.partitions {
                    match ResponseError::try_from_code(p.error_code) {
                        None => {
                            offsets.insert(p.partition_index, p.offset);
                        }
                        Some(error) if retriable(error) => {
                            again.push(p.partition_index);
                            why = Some(describe_error(error));
                        }
                        Some(_) => check(
                            p.error_code,
                            None,
                            &format!("offsets of {name}/{}", p.partition_index),
                        )?,
                    }
                }
            }
        }
        if !again.is_empty() {
            brokers.forget(name);
            retry
                .wait(|| format!("offsets of {name}: {}", why.unwrap_or_default()))
                .await?;
        }
        todo = again;
    }
    Ok(offsets)
}

async fn describe(brokers: &mut Brokers, name: &str, admin: &str) -> Result<()> {
    let (topic, partitions) = partitions_of(brokers, name).await?;
    println!("SUMMARY\n=======");
    println!("NAME        {name}");
    println!("ID          {}", topic.topic_id);
    println!("PARTITIONS  {}", partitions.len());
    println!(
        "REPLICAS    {}",
        topic
            .partitions
            .first()
            .map_or(0, |p| p.replica_nodes.len())
    );
    let request = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(str_bytes(name))
            .with_configuration_keys(None),
    ]);
    let (response, _) = brokers.any().send(request, 4).await?;
    let mut compacted = false;
    println!("\nCONFIGS\n=======");
    println!("{:<36} {:<24} SOURCE", "KEY", "VALUE");
    for result in response.results {
        check(
            result.error_code,
            result.error_message.as_ref(),
            "describe configs",
        )?;
        for config in result.configs {
            let source = match config.config_source {
                1 => "DYNAMIC_TOPIC_CONFIG",
                4 => "STATIC_BROKER_CONFIG",
                5 => "DEFAULT_CONFIG",
                _ => "OTHER",
            };
            let value = config.value.map(|v| v.to_string()).unwrap_or_default();
            if config.name.as_str() == "cleanup.policy" {
                compacted = value.contains("compact");
            }
            println!("{:<36} {value:<24} {source}", config.name.as_str());
        }
    }
    let earliest = list_offsets(brokers, name, &partitions, -2).await?;
    let latest = list_offsets(brokers, name, &partitions, -1).await?;
    println!("\nPARTITIONS\n==========");
    println!(
        "{:>9} {:>6} {:>6} {:<12} {:<12} {:>16} {:>16}",
        "PARTITION", "LEADER", "EPOCH", "REPLICAS", "IN-SYNC", "LOG-START-OFFSET", "HIGH-WATERMARK"
    );
    let ids = |ids: &[BrokerId]| {
        ids.iter()
            .map(|b| b.0.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut rows: Vec<_> = topic.partitions.iter().collect();
    rows.sort_by_key(|p| p.partition_index);
    for p in rows {
        println!(
            "{:>9} {:>6} {:>6} {:<12} {:<12} {:>16} {:>16}",
            p.partition_index,
            p.leader_id.0,
            p.leader_epoch,
            ids(&p.replica_nodes),
            ids(&p.isr_nodes),
            earliest.get(&p.partition_index).copied().unwrap_or(-1),
            latest.get(&p.partition_index).copied().unwrap_or(-1)
        );
    }
    if compacted {
        print_compaction(name, admin).await;
    }
    Ok(())
}

/// Where compaction of each partition stands, as the node at `admin` reports it.
async fn print_compaction(name: &str, admin: &str) {
    println!("\nCOMPACTION (as node {admin} sees it)\n==========");
    let status = match crate::cluster::local::get_json(admin, "/v1/status").await {
        Ok(status) => status,
        Err(e) => {
            println!("unavailable: {e:#} (give a node's admin address with --admin)");
            return;
        }
    };
    let Some(topic) = status["topics"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["name"] == name)
    else {
        println!("unavailable: that node does not hold {name}");
        return;
    };
    println!(
        "{:>9} {:>14} {:>11} {:>24} {:>15} {:>20}",
        "PARTITION",
        "CLEANED-TO",
        "DIRTY-RATIO",
        "LAST-COMPACTION",
        "RECLAIMED-BYTES",
        "ARCHIVE-COMPACTED-TO"
    );
    for p in topic["partitions"].as_array().into_iter().flatten() {
        let c = &p["compaction"];
        let last = c["last_compaction_ms"].as_i64().unwrap_or(-1);
        let last = if last < 0 {
            "-".to_string()
        } else {
            format!("{}", last / 1000)
        };
        println!(
            "{:>9} {:>14} {:>11.3} {:>24} {:>15} {:>20}",
            p["partition"],
            c["cleaned_to"],
            c["dirty_ratio"].as_f64().unwrap_or(0.0),
            last,
            c["bytes_reclaimed"],
            p["archive"]["compacted_to"]
        );
    }
}

async fn alter_config(
    client: &mut Client,
    name: &str,
    set: &[(String, String)],
    delete: &[String],
) -> Result<()> {
    if set.is_empty() && delete.is_empty() {
        bail!("nothing to change: give --set key=value or --delete key");
    }
    let mut configs: Vec<AlterableConfig> = set
        .iter()
        .map(|(k, v)| {
            AlterableConfig::default()
                .with_name(str_bytes(k))
                .with_config_operation(0)
                .with_value(Some(str_bytes(v)))
        })
        .collect();
    configs.extend(delete.iter().map(|k| {
        AlterableConfig::default()
            .with_name(str_bytes(k))
            .with_config_operation(1)
    }));
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(str_bytes(name))
            .with_configs(configs),
    ]);
    let (response, _) = client.send(request, 1).await?;
    for r in response.responses {
        check(
            r.error_code,
            r.error_message.as_ref(),
            &format!("altering {name}"),
        )?;
    }
    println!("altered {name}");
    Ok(())
}

async fn delete_topics(client: &mut Client, names: &[String]) -> Result<()> {
    let request = DeleteTopicsRequest::default()
        .with_topics(
            names
                .iter()
                .map(|n| DeleteTopicState::default().with_name(Some(topic_name(n))))
                .collect(),
        )
        .with_topic_names(names.iter().map(|n| topic_name(n)).collect())
        .with_timeout_ms(30_000);
    let (response, _) = client.send(request, 6).await?;
    let mut failed = false;
    println!("{:<40} STATUS", "TOPIC");
    for r in response.responses {
        let name = r
            .name
            .as_ref()
            .map(|n| n.0.to_string())
            .unwrap_or_else(|| r.topic_id.to_string());
        let status = match check(r.error_code, r.error_message.as_ref(), "") {
            Ok(()) => "OK".to_string(),
            Err(e) => {
                failed = true;
                e.to_string().trim_start_matches(": ").to_string()
            }
        };
        println!("{name:<40} {status}");
    }
    if failed {
        bail!("some topics were not deleted");
    }
    Ok(())
}

/// Records gathered per partition before a produce request goes out.
const PRODUCE_BATCH_RECORDS: usize = 500;
const PRODUCE_BATCH_BYTES: usize = 512 * 1024;

async fn produce(
    brokers: &mut Brokers,
    name: &str,
    key_separator: Option<&str>,
    fixed_partition: Option<i32>,
    acks: i16,
    codec: Codec,
    print_offsets: bool,
) -> Result<()> {
    let (_, partitions) = partitions_of(brokers, name).await?;
    if let Some(p) = fixed_partition
        && !partitions.contains(&p)
    {
        bail!(
            "topic '{name}' has no partition {p} (it has {})",
            partitions.len()
        );
    }
    let count = partitions.len() as i32;
    let mut pending: BTreeMap<i32, Vec<NewRecord>> = BTreeMap::new();
    let mut pending_bytes = 0usize;
    let mut round_robin = 0i32;
    let mut produced = 0u64;
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        let line = lines.next().transpose().context("reading stdin")?;
        if let Some(line) = &line {
            let (key, value) = match key_separator.and_then(|sep| line.split_once(sep)) {
                Some((k, v)) => (Some(Bytes::from(k.to_string())), Bytes::from(v.to_string())),
                None => (None, Bytes::from(line.clone())),
            };
            let partition = match (fixed_partition, &key) {
                (Some(p), _) => p,
                (None, Some(k)) => silt_index::keys::murmur2_partition(k, count),
                (None, None) => {
                    round_robin = (round_robin + 1) % count;
                    round_robin
                }
            };
            pending_bytes += value.len() + key.as_ref().map_or(0, |k| k.len());
            let timestamp = now_ms();
            pending.entry(partition).or_default().push(NewRecord {
                key,
                value: Some(value),
                headers: vec![],
                timestamp,
            });
        }
        let full = pending.values().any(|r| r.len() >= PRODUCE_BATCH_RECORDS)
            || pending_bytes >= PRODUCE_BATCH_BYTES;
        if (full || line.is_none()) && !pending.is_empty() {
            produced += send_batches(
                brokers,
                name,
                std::mem::take(&mut pending),
                acks,
                codec,
                print_offsets,
            )
            .await?;
            pending_bytes = 0;
        }
        if line.is_none() {
            break;
        }
    }
    eprintln!("produced {produced} records to {name}");
    Ok(())
}

/// Sends each partition's records to its leader, retrying partitions whose leader moved
/// (the broker refused them before writing anything).
async fn send_batches(
    brokers: &mut Brokers,
    name: &str,
    mut batches: BTreeMap<i32, Vec<NewRecord>>,
    acks: i16,
    codec: Codec,
    print_offsets: bool,
) -> Result<u64> {
    let total = batches.values().map(Vec::len).sum::<usize>() as u64;
    let mut retry = Retry::new();
    while !batches.is_empty() {
        let (grouped, unknown, mut why) = by_leader(brokers, name, batches.keys().copied()).await?;
        let mut again: BTreeMap<i32, Vec<NewRecord>> = unknown
            .into_iter()
            .filter_map(|p| batches.remove_entry(&p))
            .collect();
        for (leader, group) in grouped {
            let sending: BTreeMap<i32, Vec<NewRecord>> = group
                .into_iter()
                .filter_map(|p| batches.remove_entry(&p))
                .collect();
            match produce_to(brokers, leader, name, &sending, acks, codec).await {
                Err(e) => {
                    brokers.drop_broker(leader);
                    why = Some(e.to_string());
                    again.extend(sending);
                }
                Ok(answers) => {
                    for (p, code, base_offset, message) in answers {
                        match ResponseError::try_from_code(code) {
                            None if print_offsets => {
                                for i in 0..sending.get(&p).map_or(0, Vec::len) {
                                    println!(
                                        "Produced to partition {p} at offset {}",
                                        base_offset + i as i64
                                    );
                                }
                            }
                            None => {}
                            Some(error) if retriable(error) => {
                                why = Some(describe_error(error));
                                if let Some(records) = sending.get(&p) {
                                    again.insert(p, records.clone());
                                }
                            }
                            Some(_) => {
                                check(code, message.as_ref(), &format!("producing to {name}/{p}"))?
                            }
                        }
                    }
                }
            }
        }
        if !again.is_empty() {
            brokers.forget(name);
            retry
                .wait(|| format!("producing to {name}: {}", why.unwrap_or_default()))
                .await?;
        }
        batches = again;
    }
    Ok(total)
}

/// One Produce request to broker `leader`: per partition, (partition, error code, base
/// offset, message). With acks=0 there is no answer, and every partition counts as sent.
async fn produce_to(
    brokers: &mut Brokers,
    leader: i32,
    name: &str,
    batches: &BTreeMap<i32, Vec<NewRecord>>,
    acks: i16,
    codec: Codec,
) -> Result<Vec<(i32, i16, i64, Option<StrBytes>)>> {
    let partition_data = batches
        .iter()
        .map(|(p, records)| {
            PartitionProduceData::default()
                .with_index(*p)
                .with_records(Some(Bytes::from(encode_batch(0, records, codec, None))))
        })
        .collect();
    let request = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(topic_name(name))
                .with_partition_data(partition_data),
        ]);
    let client = brokers.broker(leader).await?;
    if acks == 0 {
        client.send_only(request, 9).await?;
        return Ok(batches.keys().map(|p| (*p, 0, -1, None)).collect());
    }
    let (response, _) = client.send(request, 9).await?;
    Ok(response
        .responses
        .into_iter()
        .flat_map(|t| t.partition_responses)
        .map(|p| (p.index, p.error_code, p.base_offset, p.error_message))
        .collect())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

async fn consume(
    brokers: &mut Brokers,
    name: &str,
    start: &str,
    num: Option<u64>,
    only: &[i32],
    format: &str,
    exit_at_end: bool,
) -> Result<()> {
    let (topic, mut partitions) = partitions_of(brokers, name).await?;
    if !only.is_empty() {
        for p in only {
            if !partitions.contains(p) {
                bail!("topic '{name}' has no partition {p}");
            }
        }
        partitions.retain(|p| only.contains(p));
    }
    let mut positions: BTreeMap<i32, i64> = match start {
        "start" | "oldest" => list_offsets(brokers, name, &partitions, -2).await?,
        "end" | "newest" => list_offsets(brokers, name, &partitions, -1).await?,
        at if at.starts_with('@') => {
            let timestamp: i64 = at[1..]
                .parse()
                .with_context(|| format!("bad timestamp in {at:?}"))?;
            let found = list_offsets(brokers, name, &partitions, timestamp).await?;
            let ends = list_offsets(brokers, name, &partitions, -1).await?;
            found
                .into_iter()
                .map(|(p, o)| (p, if o < 0 { ends[&p] } else { o }))
                .collect()
        }
        offset => {
            let offset: i64 = offset.parse().with_context(|| {
                format!("--offset takes start, end, a number or @timestamp, not {offset:?}")
            })?;
            partitions.iter().map(|p| (*p, offset)).collect()
        }
    };
    let ends = if exit_at_end {
        Some(list_offsets(brokers, name, &partitions, -1).await?)
    } else {
        None
    };
    let mut reader = Reader {
        name,
        topic_id: topic.topic_id,
        format,
        num,
        printed: 0,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut retry = Retry::new();
    loop {
        if num.is_some_and(|n| reader.printed >= n) {
            break;
        }
        if let Some(ends) = &ends
            && positions.iter().all(|(p, o)| *o >= ends[p])
        {
            break;
        }
        let wanted: Vec<i32> = positions
            .iter()
            .filter(|(p, o)| ends.as_ref().is_none_or(|e| **o < e[*p]))
            .map(|(p, _)| *p)
            .collect();
        let (grouped, unknown, mut why) = by_leader(brokers, name, wanted).await?;
        let mut failed = !unknown.is_empty();
        // Each leader's long poll shares the half second one broker would get.
        let wait_ms = (500 / grouped.len().max(1) as i32).max(50);
        for (leader, group) in grouped {
            let response = match reader
                .fetch(brokers, leader, &group, &positions, wait_ms)
                .await
            {
                Ok(response) => response,
                Err(e) => {
                    brokers.drop_broker(leader);
                    failed = true;
                    why = Some(e.to_string());
                    continue;
                }
            };
            if let Some(error) = reader.print(response, &mut positions, &mut out)? {
                failed = true;
                why = Some(error);
            }
        }
        out.flush()?;
        if failed {
            brokers.forget(name);
            retry
                .wait(|| format!("fetching {name}: {}", why.unwrap_or_default()))
                .await?;
        } else {
            retry = Retry::new();
        }
    }
    out.flush()?;
    Ok(())
}

/// What `silt topic consume` prints, and how much of it.
struct Reader<'a> {
    name: &'a str,
    topic_id: uuid::Uuid,
    format: &'a str,
    num: Option<u64>,
    printed: u64,
}

impl Reader<'_> {
    /// Fetches `partitions` from their leader once.
    async fn fetch(
        &self,
        brokers: &mut Brokers,
        leader: i32,
        partitions: &[i32],
        positions: &BTreeMap<i32, i64>,
        wait_ms: i32,
    ) -> Result<FetchResponse> {
        let name = self.name;
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(16 << 20)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(topic_name(name))
                    .with_topic_id(self.topic_id)
                    .with_partitions(
                        partitions
                            .iter()
                            .map(|p| {
                                FetchPartition::default()
                                    .with_partition(*p)
                                    .with_fetch_offset(positions[p])
                                    .with_partition_max_bytes(4 << 20)
                            })
                            .collect(),
                    ),
            ]);
        Ok(brokers.broker(leader).await?.send(request, 12).await?.0)
    }

    /// Prints what a fetch returned and moves `positions` past it. Returns a retriable
    /// error's description, if a partition had one; fails on any other error.
    fn print(
        &mut self,
        response: FetchResponse,
        positions: &mut BTreeMap<i32, i64>,
        out: &mut impl Write,
    ) -> Result<Option<String>> {
        let name = self.name;
        check(response.error_code, None, "fetch")?;
        let mut retriable_error = None;
        for topic in response.responses {
            for p in topic.partitions {
                match ResponseError::try_from_code(p.error_code) {
                    None => {}
                    Some(error) if retriable(error) => {
                        retriable_error = Some(describe_error(error));
                        continue;
                    }
                    Some(_) => check(
                        p.error_code,
                        None,
                        &format!("fetching {name}/{}", p.partition_index),
                    )?,
                }
                let Some(position) = positions.get_mut(&p.partition_index) else {
                    continue;
                };
                let records = p.records.unwrap_or_default();
                let scan = batch::scan(&records, u32::MAX, true);
                for (header, range) in scan.batches {
                    // Control batches (Raft's own entries, transaction markers) are not data.
                    if !header.is_control() {
                        for record in decode_records(&records[range], 256 << 20)? {
                            if record.offset < *position {
                                continue;
                            }
                            if self.num.is_some_and(|n| self.printed >= n) {
                                break;
                            }
                            write_record(out, self.format, name, p.partition_index, &record)?;
                            self.printed += 1;
                        }
                    }
                    *position = (*position).max(header.next_offset());
                }
            }
        }
        Ok(retriable_error)
    }
}

fn write_record(
    out: &mut impl Write,
    format: &str,
    topic: &str,
    partition: i32,
    record: &Record,
) -> Result<()> {
    let text = |b: &Option<Bytes>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
    if format == "json" {
        let headers: Vec<serde_json::Value> = record
            .headers
            .iter()
            .map(|(k, v)| serde_json::json!({"key": String::from_utf8_lossy(k), "value": text(v)}))
            .collect();
        let line = serde_json::json!({
            "topic": topic, "partition": partition, "offset": record.offset, "timestamp": record.timestamp,
            "key": text(&record.key), "value": text(&record.value), "headers": headers,
        });
        writeln!(out, "{line}")?;
        return Ok(());
    }
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek().copied()) {
            ('%', Some(spec)) => {
                chars.next();
                match spec {
                    't' => write!(out, "{topic}")?,
                    'p' => write!(out, "{partition}")?,
                    'o' => write!(out, "{}", record.offset)?,
                    'T' => write!(out, "{}", record.timestamp)?,
                    'k' => out.write_all(record.key.as_deref().unwrap_or_default())?,
                    'v' => out.write_all(record.value.as_deref().unwrap_or_default())?,
                    'h' => {
                        let headers: Vec<String> = record
                            .headers
                            .iter()
                            .map(|(k, v)| {
                                format!(
                                    "{}={}",
                                    String::from_utf8_lossy(k),
                                    text(v).unwrap_or_default()
                                )
                            })
                            .collect();
                        write!(out, "{}", headers.join(","))?
                    }
                    '%' => write!(out, "%")?,
                    other => write!(out, "%{other}")?,
                }
            }
            ('\\', Some('n')) => {
                chars.next();
                writeln!(out)?
            }
            ('\\', Some('t')) => {
                chars.next();
                write!(out, "\t")?
            }
            (c, _) => write!(out, "{c}")?,
        }
    }
    Ok(())
}
