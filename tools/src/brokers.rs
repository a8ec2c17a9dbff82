//! The CLI's view of a cluster: which broker leads each partition and coordinates each
//! group, a connection per broker, and retries when leadership moves.
//!
//! A Kafka client learns leaders from Metadata and sends each partition's requests to its
//! leader; a broker that is not (or no longer) the leader answers NOT_LEADER_OR_FOLLOWER,
//! and the client refreshes its metadata and tries again. This does the same for `silt topic`
//! and `silt group`, so they work against any broker of a cluster, through a leader change.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::{MetadataRequest, TopicName};

use crate::client::{Client, check, describe, str_bytes};

/// How long a request is retried while leadership settles.
pub(crate) const RETRY_FOR: Duration = Duration::from_secs(30);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Error codes after which a refreshed leader, or a moment, may succeed.
pub(crate) fn retriable(error: ResponseError) -> bool {
    matches!(
        error,
        ResponseError::NotLeaderOrFollower
            | ResponseError::LeaderNotAvailable
            | ResponseError::NotEnoughReplicas
            | ResponseError::UnknownTopicOrPartition
            | ResponseError::FencedLeaderEpoch
            | ResponseError::UnknownLeaderEpoch
            | ResponseError::NotCoordinator
            | ResponseError::CoordinatorNotAvailable
            | ResponseError::CoordinatorLoadInProgress
            | ResponseError::RequestTimedOut
    )
}

/// Doubling sleeps between retries, until a deadline.
pub(crate) struct Retry {
    deadline: Instant,
    next: Duration,
}

impl Retry {
    pub(crate) fn new() -> Retry {
        Retry {
            deadline: Instant::now() + RETRY_FOR,
            next: BACKOFF_MIN,
        }
    }

    /// Sleeps before the next attempt, or fails with `why` once the time is up.
    pub(crate) async fn wait(&mut self, why: impl FnOnce() -> String) -> Result<()> {
        if Instant::now() + self.next > self.deadline {
            bail!("{} (gave up after {}s)", why(), RETRY_FOR.as_secs());
        }
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        Ok(())
    }
}

/// Connections to a cluster's brokers and what it said about leaders.
pub(crate) struct Brokers {
    bootstrap: Vec<String>,
    /// The first broker reached; answers whatever any broker may answer.
    first: Client,
    addresses: HashMap<i32, String>,
    connections: HashMap<i32, Client>,
    leaders: HashMap<(String, i32), i32>,
    /// Partitions whose metadata came with an error that waiting will not cure.
    broken: HashMap<(String, i32), ResponseError>,
}

impl Brokers {
    /// Connects to the first reachable of `bootstrap` (comma-separated host:port).
    pub(crate) async fn connect(bootstrap: &str) -> Result<Brokers> {
        let list: Vec<String> = bootstrap
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        if list.is_empty() {
            bail!("--brokers is empty: give host:port[,host:port...]");
        }
        let mut last = None;
        for address in &list {
            match Client::connect(address).await {
                Ok(first) => {
                    return Ok(Brokers {
                        bootstrap: list,
                        first,
                        addresses: HashMap::new(),
                        connections: HashMap::new(),
                        leaders: HashMap::new(),
                        broken: HashMap::new(),
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("no broker to connect to")))
    }

    /// A connection to any broker, for requests every broker answers.
    pub(crate) fn any(&mut self) -> &mut Client {
        &mut self.first
    }

    /// Metadata for `topics` (all when `None`), remembering brokers and leaders.
    pub(crate) async fn metadata(
        &mut self,
        topics: Option<&[&str]>,
    ) -> Result<Vec<MetadataResponseTopic>> {
        let request = MetadataRequest::default()
            .with_topics(topics.map(|t| {
                t.iter()
                    .map(|n| {
                        MetadataRequestTopic::default().with_name(Some(TopicName(str_bytes(n))))
                    })
                    .collect()
            }))
            .with_allow_auto_topic_creation(false);
        let response = match self.first.send(request.clone(), 12).await {
            Ok((response, _)) => response,
            Err(e) => {
                // The broker we knew went away: try the others.
                self.reconnect_first().await.context(e)?;
                self.first.send(request, 12).await?.0
            }
        };
        for broker in &response.brokers {
            self.addresses.insert(
                broker.node_id.0,
                format!("{}:{}", broker.host.as_str(), broker.port),
            );
        }
        for topic in &response.topics {
            let Some(name) = &topic.name else { continue };
            for p in &topic.partitions {
                let key = (name.0.to_string(), p.partition_index);
                match ResponseError::try_from_code(p.error_code) {
                    Some(error) if !retriable(error) => {
                        self.broken.insert(key.clone(), error);
                    }
                    _ => {
                        self.broken.remove(&key);
                    }
                }
                if p.leader_id.0 >= 0 {
                    self.leaders.insert(key, p.leader_id.0);
                } else {
                    self.leaders.remove(&key);
                }
            }
        }
        Ok(response.topics)
    }

    async fn reconnect_first(&mut self) -> Result<()> {
        let mut candidates: Vec<String> = self.addresses.values().cloned().collect();
        candidates.extend(self.bootstrap.iter().cloned());
        for address in candidates {
            if let Ok(client) = Client::connect(&address).await {
                self.first = client;
                return Ok(());
            }
        }
        bail!("no broker of {} answers", self.bootstrap.join(","))
    }

    /// The ids of every broker in the cluster.
    pub(crate) async fn broker_ids(&mut self) -> Result<Vec<i32>> {
        self.metadata(Some(&[])).await?;
        let mut ids: Vec<i32> = self.addresses.keys().copied().collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// One topic's metadata, failing with a readable error if it has none.
    pub(crate) async fn topic(&mut self, name: &str) -> Result<MetadataResponseTopic> {
        let topics = self.metadata(Some(&[name])).await?;
        let topic = topics
            .into_iter()
            .next()
            .context("empty metadata response")?;
        check(topic.error_code, None, &format!("topic '{name}'"))?;
        Ok(topic)
    }

    /// The leader of `topic`/`partition`, asking for metadata if it is not known.
    pub(crate) async fn leader(&mut self, topic: &str, partition: i32) -> Result<i32> {
        let key = (topic.to_string(), partition);
        if let Some(leader) = self.leaders.get(&key) {
            return Ok(*leader);
        }
        self.metadata(Some(&[topic])).await?;
        self.leaders
            .get(&key)
            .copied()
            .ok_or_else(|| anyhow!("{topic}/{partition} has no leader right now"))
    }

    /// The error the cluster reported for `topic`/`partition` that retrying will not cure
    /// (its storage failed, say), if any.
    pub(crate) fn broken(&self, topic: &str, partition: i32) -> Option<ResponseError> {
        self.broken.get(&(topic.to_string(), partition)).copied()
    }

    /// Forgets what was learned about `topic`'s leaders (after a broker said it moved).
    pub(crate) fn forget(&mut self, topic: &str) {
        self.leaders.retain(|(t, _), _| t != topic);
    }

    /// A connection to broker `id`.
    pub(crate) async fn broker(&mut self, id: i32) -> Result<&mut Client> {
        if !self.connections.contains_key(&id) {
            let address = self
                .addresses
                .get(&id)
                .cloned()
                .ok_or_else(|| anyhow!("broker {id} is not in the cluster's metadata"))?;
            let client = Client::connect(&address).await?;
            self.connections.insert(id, client);
        }
        Ok(self.connections.get_mut(&id).expect("just connected"))
    }

    /// Drops the connection to broker `id` (it failed; the next use reconnects).
    pub(crate) fn drop_broker(&mut self, id: i32) {
        self.connections.remove(&id);
    }

    /// A connection to the coordinator of `group`, found with FindCoordinator.
    pub(crate) async fn coordinator(&mut self, group: &str) -> Result<&mut Client> {
        self.coordinator_of(group, 0).await
    }

    /// A connection to the coordinator of `key`: a group (`key_type` 0) or a transactional
    /// id (1).
    pub(crate) async fn coordinator_of(
        &mut self,
        group: &str,
        key_type: i8,
    ) -> Result<&mut Client> {
        let mut retry = Retry::new();
        loop {
            // v3: one key per request, which every broker since Kafka 2.0 speaks.
            let request = FindCoordinatorRequest::default()
                .with_key(str_bytes(group))
                .with_key_type(key_type);
            let (response, _) = self.first.send(request, 3).await?;
            match ResponseError::try_from_code(response.error_code) {
                None => {
                    let id = response.node_id.0;
                    self.addresses
                        .insert(id, format!("{}:{}", response.host.as_str(), response.port));
                    return self.broker(id).await;
                }
                Some(error) if retriable(error) => {
                    retry
                        .wait(|| format!("coordinator of {group}: {}", describe(error)))
                        .await?;
                }
                Some(_) => {
                    check(
                        response.error_code,
                        response.error_message.as_ref(),
                        &format!("coordinator of {group}"),
                    )?;
                }
            }
        }
    }
}
