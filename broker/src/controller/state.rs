//! The cluster's metadata and the commands that change it, sans-io.
//!
//! [`ClusterState`] is what the controller's Raft group agrees on: the brokers, the topics with
//! each partition's replicas and Raft group, topic properties, and the producer ids handed out.
//! A [`Command`] is applied on every node in log order by [`ClusterState::apply`], which is
//! deterministic: the same commands give the same state everywhere. A command that does not
//! fit the state when it is applied (a topic created twice by two racing requests) changes
//! nothing and answers why.
//!
//! Where replicas go is decided before proposing ([`place_replicas`]), by the controller's
//! leader, from the brokers it knows then; the command carries the decision.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::raft::GroupId;
use crate::security::acl::AclBinding;
use crate::security::scram::{Credential, Mechanism};

/// Format version of the state (in snapshots).
pub const STATE_FORMAT: u32 = 1;

/// Producer ids handed to a node at a time.
pub const PRODUCER_ID_BLOCK: i64 = 1000;

/// A broker as registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Broker {
    /// Broker id (Raft node id).
    pub id: i32,
    /// `host:port` clients connect to.
    pub kafka_addr: String,
    /// `host:port` other nodes connect to.
    pub rpc_addr: String,
    /// The admin HTTP address.
    pub admin_addr: String,
    /// Taken out of service (`silt cluster remove`): no new replicas, its replicas move away.
    #[serde(default)]
    pub draining: bool,
    /// `host:port` clients of each named listener connect to (Kafka's advertised.listeners);
    /// empty for a broker from before listeners had names: `kafka_addr` serves them all.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub listeners: BTreeMap<String, String>,
}

impl Broker {
    /// Where a client that came in on `listener` reaches this broker, if it has that listener.
    pub fn endpoint(&self, listener: &str) -> Option<&str> {
        if self.listeners.is_empty() {
            return Some(&self.kafka_addr);
        }
        self.listeners.get(listener).map(String::as_str)
    }
}

/// A user's SCRAM credentials, one per mechanism.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCredentials {
    /// SCRAM-SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Credential>,
    /// SCRAM-SHA-512.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha512: Option<Credential>,
}

impl UserCredentials {
    /// The credential for `mechanism`.
    pub fn get(&self, mechanism: Mechanism) -> Option<&Credential> {
        match mechanism {
            Mechanism::Sha256 => self.sha256.as_ref(),
            Mechanism::Sha512 => self.sha512.as_ref(),
        }
    }

    fn slot(&mut self, mechanism: Mechanism) -> &mut Option<Credential> {
        match mechanism {
            Mechanism::Sha256 => &mut self.sha256,
            Mechanism::Sha512 => &mut self.sha512,
        }
    }

    /// Mechanisms with a credential, with their iterations.
    pub fn mechanisms(&self) -> Vec<(Mechanism, u32)> {
        Mechanism::ALL
            .into_iter()
            .filter_map(|m| self.get(m).map(|c| (m, c.iterations)))
            .collect()
    }
}

/// A partition's placement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMeta {
    /// Its Raft group.
    pub group: GroupId,
    /// Replica brokers; the first is the preferred leader.
    pub replicas: Vec<i32>,
    /// While a reassignment is under way: the replicas it moves to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Vec<i32>>,
}

/// A topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    /// Name.
    pub name: String,
    /// Id (KIP-516); also names the topic in the archive.
    pub id: Uuid,
    /// Property overrides, canonical name -> value.
    pub configs: BTreeMap<String, String>,
    /// Partitions in index order.
    pub partitions: Vec<PartitionMeta>,
    /// A topic of silt's own (the group log): not listed to clients as theirs.
    #[serde(default)]
    pub internal: bool,
    /// For a topic restored from an archive: where each partition's log starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts: Option<Vec<i64>>,
    /// For a topic restored from an archive: each partition's leader epochs in the archive,
    /// as (epoch, first offset). Its local log continues in a newer epoch, and answers
    /// OffsetForLeaderEpoch below its start with these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<Vec<Vec<(i32, i64)>>>,
}

impl TopicMeta {
    /// Replicas per partition.
    pub fn replication_factor(&self) -> usize {
        self.partitions.first().map_or(0, |p| p.replicas.len())
    }
}

/// The cluster as the controller knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Format version.
    pub format: u32,
    /// The cluster's id (set once, by the first node to bootstrap it).
    pub cluster_id: Option<String>,
    /// Registered brokers, by id.
    pub brokers: BTreeMap<i32, Broker>,
    /// Brokers decommissioned and forgotten (a node that registers again under the id is
    /// a new broker and leaves this set).
    #[serde(default)]
    pub removed: BTreeSet<i32>,
    /// Topics, by name.
    pub topics: BTreeMap<String, TopicMeta>,
    /// The next Raft group id to give a partition (0 is the controller's).
    pub next_group: GroupId,
    /// The first producer id not handed out yet.
    pub next_producer_id: i64,
    /// Bumped by every command that changed something.
    pub version: u64,
    /// SASL/SCRAM users, by name.
    #[serde(default)]
    pub users: BTreeMap<String, UserCredentials>,
    /// ACLs.
    #[serde(default)]
    pub acls: BTreeSet<AclBinding>,
    /// Bumped by every command that changed the ACLs (so nodes re-index only then).
    #[serde(default)]
    pub acl_version: u64,
}

/// A change to the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Names the cluster (only the first one counts).
    InitCluster {
        /// The id.
        cluster_id: String,
        /// Producer ids already handed out by this node before it was part of a cluster.
        next_producer_id: i64,
    },
    /// A broker announces itself (again, at every start: its addresses may change).
    RegisterBroker(Broker),
    /// Sets a user's SCRAM credential for one mechanism (creating the user).
    SetScram {
        /// User name.
        user: String,
        /// Mechanism.
        mechanism: Mechanism,
        /// Salt, stored key, server key, iterations.
        credential: Credential,
    },
    /// Removes a user's credential for one mechanism (the user goes with its last one).
    DeleteScram {
        /// User name.
        user: String,
        /// Mechanism.
        mechanism: Mechanism,
    },
    /// Adds ACLs (those present already change nothing).
    CreateAcls {
        /// The bindings, checked by the proposer.
        acls: Vec<AclBinding>,
    },
    /// Removes exactly these ACLs (the proposer matched its filters against the state).
    DeleteAcls {
        /// The bindings.
        acls: Vec<AclBinding>,
    },
    /// Creates a topic with replicas already placed.
    CreateTopic {
        /// The topic; its partitions' groups are given at apply.
        name: String,
        /// Its id.
        id: Uuid,
        /// Replicas of each partition.
        replicas: Vec<Vec<i32>>,
        /// Property overrides.
        configs: BTreeMap<String, String>,
        /// One of silt's own.
        internal: bool,
        /// For a topic restored from an archive: where each partition's log starts.
        starts: Option<Vec<i64>>,
        /// For a topic restored from an archive: each partition's leader epochs there.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epochs: Option<Vec<Vec<(i32, i64)>>>,
    },
    /// Deletes a topic.
    DeleteTopic {
        /// The topic.
        name: String,
    },
    /// Replaces a topic's property overrides.
    SetConfigs {
        /// The topic.
        name: String,
        /// The new overrides (all of them).
        configs: BTreeMap<String, String>,
    },
    /// Adds partitions with replicas already placed.
    AddPartitions {
        /// The topic.
        name: String,
        /// Replicas of each new partition.
        replicas: Vec<Vec<i32>>,
    },
    /// Hands out a block of producer ids.
    AllocateProducerIds {
        /// How many.
        count: i64,
    },
    /// Starts moving a partition to other replicas.
    Reassign {
        /// The topic.
        name: String,
        /// The partition.
        partition: i32,
        /// Where it goes.
        replicas: Vec<i32>,
    },
    /// A reassignment is done: the partition's replicas are its target.
    FinishReassign {
        /// The topic.
        name: String,
        /// The partition.
        partition: i32,
    },
    /// Takes a broker out of service (or back in).
    SetDraining {
        /// The broker.
        id: i32,
        /// Draining or not.
        draining: bool,
    },
    /// Forgets a broker that holds no replica any more.
    RemoveBroker {
        /// The broker.
        id: i32,
    },
}

/// Why a command changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// The topic exists already.
    TopicExists,
    /// No such topic, partition or broker.
    Unknown,
    /// The command does not fit the state (named in the message).
    Invalid,
}

/// What applying a command answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// Done.
    Done,
    /// Done: the first of the producer ids handed out.
    ProducerIds {
        /// First id of the block.
        first: i64,
        /// How many.
        count: i64,
    },
    /// Nothing changed, because.
    Refused {
        /// Kind.
        refusal: Refusal,
        /// Explanation.
        message: String,
    },
}

fn refused(refusal: Refusal, message: impl Into<String>) -> Reply {
    Reply::Refused {
        refusal,
        message: message.into(),
    }
}

impl ClusterState {
    /// The state of a cluster that has applied nothing yet.
    pub fn new() -> ClusterState {
        ClusterState {
            format: STATE_FORMAT,
            next_group: 1,
            ..ClusterState::default()
        }
    }

    /// Applies a command; deterministic.
    pub fn apply(&mut self, command: &Command) -> Reply {
        let reply = self.apply_inner(command);
        if !matches!(reply, Reply::Refused { .. }) {
            self.version += 1;
        }
        reply
    }

    fn apply_inner(&mut self, command: &Command) -> Reply {
        match command {
            Command::InitCluster {
                cluster_id,
                next_producer_id,
            } => {
                if self.cluster_id.is_none() {
                    self.cluster_id = Some(cluster_id.clone());
                    self.next_producer_id = self.next_producer_id.max(*next_producer_id);
                    Reply::Done
                } else {
                    refused(Refusal::Invalid, "the cluster has an id already")
                }
            }
            Command::RegisterBroker(broker) => {
                let draining = self.brokers.get(&broker.id).is_some_and(|b| b.draining);
                self.removed.remove(&broker.id);
                self.brokers.insert(
                    broker.id,
                    Broker {
                        draining,
                        ..broker.clone()
                    },
                );
                Reply::Done
            }
            Command::CreateTopic {
                name,
                id,
                replicas,
                configs,
                internal,
                starts,
                epochs,
            } => {
                if self.topics.contains_key(name) {
                    return refused(
                        Refusal::TopicExists,
                        format!("topic '{name}' already exists"),
                    );
                }
                if self.topics.values().any(|t| t.id == *id) {
                    return refused(Refusal::Invalid, format!("topic id {id} is in use"));
                }
                if let Some(message) = self.check_placement(replicas) {
                    return refused(Refusal::Invalid, message);
                }
                let partitions = self.new_partitions(replicas);
                self.topics.insert(
                    name.clone(),
                    TopicMeta {
                        name: name.clone(),
                        id: *id,
                        configs: configs.clone(),
                        partitions,
                        internal: *internal,
                        starts: starts.clone(),
                        epochs: epochs.clone(),
                    },
                );
                Reply::Done
            }
            Command::SetScram {
                user,
                mechanism,
                credential,
            } => {
                *self.users.entry(user.clone()).or_default().slot(*mechanism) =
                    Some(credential.clone());
                Reply::Done
            }
            Command::DeleteScram { user, mechanism } => {
                let Some(credentials) = self.users.get_mut(user) else {
                    return refused(Refusal::Unknown, format!("no user '{user}'"));
                };
                if credentials.slot(*mechanism).take().is_none() {
                    return refused(
                        Refusal::Unknown,
                        format!("user '{user}' has no {} credential", mechanism.name()),
                    );
                }
                if credentials.mechanisms().is_empty() {
                    self.users.remove(user);
                }
                Reply::Done
            }
            Command::CreateAcls { acls } => {
                if let Some((binding, why)) =
                    acls.iter().find_map(|b| b.invalid().map(|why| (b, why)))
                {
                    return refused(Refusal::Invalid, format!("{binding:?}: {why}"));
                }
                self.acls.extend(acls.iter().cloned());
                self.acl_version += 1;
                Reply::Done
            }
            Command::DeleteAcls { acls } => {
                for binding in acls {
                    self.acls.remove(binding);
                }
                self.acl_version += 1;
                Reply::Done
            }
            Command::DeleteTopic { name } => match self.topics.remove(name) {
                Some(_) => Reply::Done,
                None => refused(Refusal::Unknown, format!("topic '{name}' does not exist")),
            },
            Command::SetConfigs { name, configs } => match self.topics.get_mut(name) {
                Some(topic) => {
                    topic.configs = configs.clone();
                    Reply::Done
                }
                None => refused(Refusal::Unknown, format!("topic '{name}' does not exist")),
            },
            Command::AddPartitions { name, replicas } => {
                if !self.topics.contains_key(name) {
                    return refused(Refusal::Unknown, format!("topic '{name}' does not exist"));
                }
                if let Some(message) = self.check_placement(replicas) {
                    return refused(Refusal::Invalid, message);
                }
                let added = self.new_partitions(replicas);
                self.topics
                    .get_mut(name)
                    .expect("checked above")
                    .partitions
                    .extend(added);
                Reply::Done
            }
            Command::AllocateProducerIds { count } => {
                if *count <= 0 {
                    return refused(Refusal::Invalid, "a block of no producer ids");
                }
                let first = self.next_producer_id;
                self.next_producer_id += count;
                Reply::ProducerIds {
                    first,
                    count: *count,
                }
            }
            Command::Reassign {
                name,
                partition,
                replicas,
            } => {
                if let Some(message) = self.check_placement(std::slice::from_ref(replicas)) {
                    return refused(Refusal::Invalid, message);
                }
                match self.partition_mut(name, *partition) {
                    Some(meta) if meta.target.is_some() => refused(
                        Refusal::Invalid,
                        format!("{name}/{partition} is already being moved"),
                    ),
                    Some(meta) if meta.replicas == *replicas => Reply::Done,
                    Some(meta) => {
                        meta.target = Some(replicas.clone());
                        Reply::Done
                    }
                    None => refused(Refusal::Unknown, format!("no partition {name}/{partition}")),
                }
            }
            Command::FinishReassign { name, partition } => {
                match self.partition_mut(name, *partition) {
                    Some(meta) => match meta.target.take() {
                        Some(target) => {
                            meta.replicas = target;
                            Reply::Done
                        }
                        None => refused(Refusal::Invalid, "no reassignment under way"),
                    },
                    None => refused(Refusal::Unknown, format!("no partition {name}/{partition}")),
                }
            }
            Command::SetDraining { id, draining } => match self.brokers.get_mut(id) {
                Some(broker) => {
                    broker.draining = *draining;
                    Reply::Done
                }
                None => refused(Refusal::Unknown, format!("no broker {id}")),
            },
            Command::RemoveBroker { id } => {
                if !self.brokers.contains_key(id) {
                    return refused(Refusal::Unknown, format!("no broker {id}"));
                }
                let holding: Vec<String> = self
                    .topics
                    .values()
                    .flat_map(|t| {
                        t.partitions.iter().enumerate().filter_map(move |(i, p)| {
                            let held = p.replicas.contains(id)
                                || p.target.as_ref().is_some_and(|r| r.contains(id));
                            held.then(|| format!("{}/{i}", t.name))
                        })
                    })
                    .take(5)
                    .collect();
                if !holding.is_empty() {
                    return refused(
                        Refusal::Invalid,
                        format!(
                            "broker {id} still holds replicas ({}{}); drain it first",
                            holding.join(", "),
                            if holding.len() == 5 { ", ..." } else { "" }
                        ),
                    );
                }
                self.brokers.remove(id);
                self.removed.insert(*id);
                Reply::Done
            }
        }
    }

    fn partition_mut(&mut self, name: &str, partition: i32) -> Option<&mut PartitionMeta> {
        self.topics
            .get_mut(name)?
            .partitions
            .get_mut(usize::try_from(partition).ok()?)
    }

    /// What is wrong with a placement, if anything: unknown brokers, a broker twice in one
    /// partition, a partition without replicas.
    fn check_placement(&self, replicas: &[Vec<i32>]) -> Option<String> {
        for set in replicas {
            if set.is_empty() {
                return Some("a partition needs at least one replica".into());
            }
            let distinct: BTreeSet<i32> = set.iter().copied().collect();
            if distinct.len() != set.len() {
                return Some(format!("replicas {set:?} name a broker twice"));
            }
            if let Some(unknown) = set.iter().find(|b| !self.brokers.contains_key(b)) {
                return Some(format!("broker {unknown} is not registered"));
            }
        }
        None
    }

    fn new_partitions(&mut self, replicas: &[Vec<i32>]) -> Vec<PartitionMeta> {
        replicas
            .iter()
            .map(|set| {
                let group = self.next_group;
                self.next_group += 1;
                PartitionMeta {
                    group,
                    replicas: set.clone(),
                    target: None,
                }
            })
            .collect()
    }

    /// The brokers that take new replicas.
    pub fn serving_brokers(&self) -> Vec<i32> {
        self.brokers
            .values()
            .filter(|b| !b.draining)
            .map(|b| b.id)
            .collect()
    }

    /// Every partition a broker holds a replica of (or will, while a move is under way):
    /// (topic, partition index).
    pub fn partitions_of(&self, broker: i32) -> Vec<(&TopicMeta, i32)> {
        self.topics
            .values()
            .flat_map(|t| {
                t.partitions.iter().enumerate().filter_map(move |(i, p)| {
                    let held = p.replicas.contains(&broker)
                        || p.target.as_ref().is_some_and(|r| r.contains(&broker));
                    held.then_some((t, i as i32))
                })
            })
            .collect()
    }
}

/// Places `count` partitions of `factor` replicas each over `brokers`, spreading replicas
/// and preferred leaders evenly: partition `i` starts at broker `(first + i) % n` and takes
/// the next `factor - 1` in order. `first` varies by topic so that small topics do not all
/// lead on the same broker.
///
/// # Errors
///
/// A message when there are fewer brokers than `factor`.
pub fn place_replicas(
    brokers: &[i32],
    first: usize,
    count: usize,
    factor: usize,
) -> Result<Vec<Vec<i32>>, String> {
    if factor == 0 {
        return Err("replication factor must be at least 1".into());
    }
    if brokers.len() < factor {
        return Err(format!(
            "replication factor {factor} is larger than the {} broker{} available",
            brokers.len(),
            if brokers.len() == 1 { "" } else { "s" }
        ));
    }
    let mut sorted = brokers.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    Ok((0..count)
        .map(|i| (0..factor).map(|r| sorted[(first + i + r) % n]).collect())
        .collect())
}

/// A stable spread of a topic name over `n` (FNV-1a).
pub fn name_spread(name: &str, n: usize) -> usize {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in name.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash as usize % n.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(id: i32) -> Command {
        Command::RegisterBroker(Broker {
            id,
            kafka_addr: format!("127.0.0.1:{}", 9092 + id),
            rpc_addr: format!("127.0.0.1:{}", 33145 + id),
            admin_addr: format!("127.0.0.1:{}", 9644 + id),
            draining: false,
            listeners: Default::default(),
        })
    }

    fn create(name: &str, replicas: Vec<Vec<i32>>) -> Command {
        Command::CreateTopic {
            name: name.into(),
            id: Uuid::new_v4(),
            replicas,
            configs: BTreeMap::new(),
            internal: false,
            starts: None,
            epochs: None,
        }
    }

    #[test]
    fn commands_apply_deterministically_and_refuse_what_does_not_fit() {
        let commands = vec![
            Command::InitCluster {
                cluster_id: "c1".into(),
                next_producer_id: 1000,
            },
            broker(1),
            broker(2),
            broker(3),
            create("orders", vec![vec![1, 2, 3], vec![2, 3, 1]]),
            create("orders", vec![vec![1]]),
            create("bad", vec![vec![1, 9]]),
            Command::AllocateProducerIds { count: 1000 },
            Command::AddPartitions {
                name: "orders".into(),
                replicas: vec![vec![3, 1, 2]],
            },
            Command::InitCluster {
                cluster_id: "c2".into(),
                next_producer_id: 0,
            },
        ];
        let run = || {
            let mut state = ClusterState::new();
            let replies: Vec<Reply> = commands.iter().map(|c| state.apply(c)).collect();
            (state, replies)
        };
        let (a, replies) = run();
        let (b, _) = run();
        assert_eq!(a, b, "same commands, same state");
        assert!(
            matches!(
                &replies[5],
                Reply::Refused {
                    refusal: Refusal::TopicExists,
                    ..
                }
            ),
            "{:?}",
            replies[5]
        );
        assert!(
            matches!(&replies[6], Reply::Refused { refusal: Refusal::Invalid, message } if message.contains("broker 9")),
            "{:?}",
            replies[6]
        );
        assert_eq!(
            replies[7],
            Reply::ProducerIds {
                first: 1000,
                count: 1000
            }
        );
        assert!(matches!(replies[9], Reply::Refused { .. }));
        assert_eq!(a.cluster_id.as_deref(), Some("c1"));
        let orders = &a.topics["orders"];
        let groups: Vec<GroupId> = orders.partitions.iter().map(|p| p.group).collect();
        assert_eq!(
            groups,
            vec![1, 2, 3],
            "groups numbered in order of creation"
        );
        assert_eq!(a.next_producer_id, 2000);
        assert_eq!(a.partitions_of(3).len(), 3);
        // Version counts changes only.
        assert_eq!(a.version, 7);
    }

    #[test]
    fn reassignment_and_removal() {
        let mut state = ClusterState::new();
        for id in 1..=4 {
            state.apply(&broker(id));
        }
        state.apply(&create("t", vec![vec![1, 2, 3]]));
        let removal = state.apply(&Command::RemoveBroker { id: 3 });
        assert!(
            matches!(&removal, Reply::Refused { message, .. } if message.contains("t/0")),
            "{removal:?}"
        );
        assert_eq!(
            state.apply(&Command::Reassign {
                name: "t".into(),
                partition: 0,
                replicas: vec![1, 2, 4],
            }),
            Reply::Done
        );
        assert_eq!(state.partitions_of(4).len(), 1, "the target holds it too");
        state.apply(&Command::FinishReassign {
            name: "t".into(),
            partition: 0,
        });
        assert_eq!(state.topics["t"].partitions[0].replicas, vec![1, 2, 4]);
        assert_eq!(state.apply(&Command::RemoveBroker { id: 3 }), Reply::Done);
        assert!(!state.brokers.contains_key(&3));
    }

    #[test]
    fn placement_spreads_replicas_and_leaders() {
        let placed = place_replicas(&[3, 1, 2], 0, 6, 3).unwrap();
        let leaders: Vec<i32> = placed.iter().map(|r| r[0]).collect();
        assert_eq!(leaders, vec![1, 2, 3, 1, 2, 3]);
        assert!(placed.iter().all(|r| {
            let set: BTreeSet<_> = r.iter().collect();
            set.len() == 3
        }));
        let e = place_replicas(&[1, 2], 0, 1, 3).unwrap_err();
        assert!(e.contains("larger than the 2 brokers"), "{e}");
        assert_eq!(place_replicas(&[1, 2, 3], 1, 1, 1).unwrap(), vec![vec![2]]);
    }
}
